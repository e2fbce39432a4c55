//! Argo CD Applications from a tree of YAML files: every document with
//! `apiVersion: argoproj.io/v1alpha1` and `kind: Application`. Everything else is ignored.

use std::collections::BTreeMap;

use std::fmt;

use crate::domain::AppId;
use crate::files::{normalize_path, FileSet};
use crate::image_updater::ImageUpdater;
use crate::yaml::{Node, YamlFile};

mod locations;
pub use locations::Locations;

/// Namespace of an Application without `metadata.namespace`.
pub const DEFAULT_NAMESPACE: &str = "argocd";

/// A Helm parameter from `spec.source.helm.parameters`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelmParameter {
    pub name: String,
    pub value: String,
}

/// One `spec.source` or `spec.sources[]` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppSource {
    pub repo_url: String,
    /// `targetRevision`, `HEAD` when absent.
    pub target_revision: String,
    /// Directory inside the repository, normalized without leading/trailing `/` ("" = root).
    pub path: Option<String>,
    /// Helm chart name for chart repositories (nothing to read in git then).
    pub chart: Option<String>,
    /// `ref` name of a multi-source values source (`$values/...`).
    pub ref_name: Option<String>,
    pub helm_value_files: Vec<String>,
    pub helm_parameters: Vec<HelmParameter>,
    /// `helm.valuesObject`, as parsed.
    pub helm_values_object: Option<ValuesObject>,
    pub has_helm: bool,
    pub kustomize_images: Vec<String>,
    pub has_kustomize: bool,
    pub directory_recurse: bool,
}

/// An Application's `helm.valuesObject` mapping. Compared by identity: two sources hold the
/// same object only when they were read from the same place.
#[derive(Debug, Clone)]
pub struct ValuesObject(pub std::sync::Arc<Node>);

impl PartialEq for ValuesObject {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ValuesObject {}

/// An Application as found in the apps tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    pub id: AppId,
    /// File that holds it, relative to the apps tree root.
    pub file: String,
    /// Index of the YAML document in that file (0-based).
    pub document: usize,
    pub annotations: BTreeMap<String, String>,
    /// `metadata.labels` (an ImageUpdater's `labelSelectors` read them).
    pub labels: BTreeMap<String, String>,
    /// The ImageUpdater (and its ref) whose settings replaced the annotations, for messages.
    pub configured_by: Option<String>,
    pub sources: Vec<AppSource>,
    /// `spec.project`; `None` when absent (Argo CD's `default`).
    pub project: Option<String>,
    /// `spec.destination`, for the people reviewing a proposal.
    pub destination: Destination,
    /// What Argo CD reports running (`status`), when the Application was read with its status
    /// (from the cluster).
    pub live: Option<LiveState>,
}

/// An Application's `status` as far as reviewers need it: what runs now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveState {
    /// `status.summary.images`: the images of the running workloads.
    pub images: Vec<String>,
    /// `status.sync.status`: `Synced`, `OutOfSync`, `Unknown`.
    pub sync: Option<String>,
    /// `status.health.status`: `Healthy`, `Progressing`, `Degraded`, `Suspended`, `Missing`, `Unknown`.
    pub health: Option<String>,
    /// `status.sync.revision`, or the `status.sync.revisions` of a multi-source Application
    /// (comma-separated).
    pub revision: Option<String>,
}

/// `spec.destination`: a cluster by URL (`server`) or by `name`, and a namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Destination {
    pub server: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
}

/// A file that could not be read as YAML, or an Application in it that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FileError {
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// All Applications in `files` (any `.yaml`/`.yml`, multi-document files included), sorted by
/// namespace and name, plus the files that could not be parsed.
pub fn find_applications(files: &FileSet) -> (Vec<Application>, Vec<FileError>) {
    let mut apps = Vec::new();
    let mut errors = Vec::new();
    for path in files.files.keys() {
        if !(path.ends_with(".yaml") || path.ends_with(".yml")) {
            continue;
        }
        if !files.get(path).is_some_and(may_hold_application) {
            continue;
        }
        let Some(parsed) = files.yaml(path) else { continue };
        match parsed {
            Ok(yaml) => read_file(path, &yaml, &mut apps, &mut errors),
            Err(e) => errors.push(FileError {
                file: path.clone(),
                line: Some(e.line),
                message: format!("invalid YAML: {}", e.message),
            }),
        }
    }
    apps.sort_by(|a: &Application, b| {
        (&a.id, &a.file, a.document).cmp(&(&b.id, &b.file, b.document))
    });
    (apps, errors)
}

/// An ImageUpdater that could not be read: where, its namespace when that much was readable
/// (its Applications are then not planned: what it would say of them is not known), and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenUpdater {
    pub place: String,
    pub namespace: Option<String>,
    pub message: String,
}

/// Every `ImageUpdater` (argocd-image-updater.argoproj.io/v1alpha1) in `files`, each document
/// read on its own.
pub fn find_image_updaters(files: &FileSet) -> Vec<Result<ImageUpdater, BrokenUpdater>> {
    let mut found = Vec::new();
    for path in files.files.keys() {
        if !(path.ends_with(".yaml") || path.ends_with(".yml")) {
            continue;
        }
        let Some(text) = files.get(path).and_then(|b| std::str::from_utf8(b).ok()) else { continue };
        if !text.contains("argocd-image-updater.argoproj.io/v1alpha1") {
            continue;
        }
        let Some(Ok(yaml)) = files.yaml(path) else { continue };
        for doc in &yaml.documents {
            let Some(root) = &doc.root else { continue };
            let kind = |key: &str| root.get(key).and_then(Node::as_str);
            if !crate::image_updater::is_image_updater(kind("apiVersion"), kind("kind")) {
                continue;
            }
            let place = if yaml.documents.len() > 1 { format!("{path} (document {})", doc.index) } else { path.clone() };
            found.push(read_image_updater(&place, &text[doc.span.clone()], root));
        }
    }
    found
}

/// The ImageUpdaters among objects read from a cluster, named `k8s:<namespace>/<name>`.
pub fn image_updaters_from_objects<'o>(objects: impl IntoIterator<Item = (&'o str, &'o str)>) -> Vec<Result<ImageUpdater, BrokenUpdater>> {
    let mut found = Vec::new();
    for (place, json) in objects {
        match crate::yaml::parse(json) {
            Ok(yaml) => {
                if let Some(root) = yaml.documents.first().and_then(|d| d.root.as_ref()) {
                    found.push(read_image_updater(place, json, root));
                }
            }
            Err(e) => found.push(Err(BrokenUpdater { place: place.to_string(), namespace: None, message: e.message })),
        }
    }
    found
}

fn read_image_updater(place: &str, text: &str, root: &Node) -> Result<ImageUpdater, BrokenUpdater> {
    crate::image_updater::parse(place, text).map_err(|message| BrokenUpdater {
        place: place.to_string(),
        namespace: Some(
            root.get("metadata").and_then(|m| m.get("namespace")).and_then(Node::as_str).unwrap_or(DEFAULT_NAMESPACE).to_string(),
        ),
        message,
    })
}

/// The Applications among objects read from a cluster (`--apps k8s`), by the same rules as
/// manifests in git: each object is a document of its own (JSON is YAML), named
/// `k8s:<namespace>/<name>` in errors and as the Application's `file`.
pub fn applications_from_objects<'o>(objects: impl IntoIterator<Item = (&'o str, &'o str)>) -> (Vec<Application>, Vec<FileError>) {
    let mut apps = Vec::new();
    let mut errors = Vec::new();
    for (place, json) in objects {
        match crate::yaml::parse(json) {
            Ok(yaml) => read_file(place, &yaml, &mut apps, &mut errors),
            Err(e) => errors.push(FileError { file: place.to_string(), line: Some(e.line), message: format!("invalid object: {}", e.message) }),
        }
    }
    apps.sort_by(|a: &Application, b| (&a.id, &a.file, a.document).cmp(&(&b.id, &b.file, b.document)));
    (apps, errors)
}

/// Only a file whose text names the `argoproj.io` API group can hold an Application; the
/// others (workload manifests, Helm chart templates, which are not YAML at all) are not parsed,
/// so they cost nothing and are never reported. Text that is not UTF-8 is parsed (and reported).
fn may_hold_application(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).map_or(true, |text| text.contains("argoproj.io"))
}

fn read_file(path: &str, yaml: &YamlFile, apps: &mut Vec<Application>, errors: &mut Vec<FileError>) {
    for doc in &yaml.documents {
        let Some(root) = &doc.root else { continue };
        let is_app = root.get("apiVersion").and_then(Node::as_str) == Some("argoproj.io/v1alpha1")
            && root.get("kind").and_then(Node::as_str) == Some("Application");
        if !is_app {
            continue;
        }
        let metadata = root.get("metadata");
        let name = metadata.and_then(|m| m.get("name")).and_then(Node::as_str);
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            errors.push(FileError {
                file: path.to_string(),
                line: Some(yaml.line_of(root.span.start)),
                message: format!("document {}: Application has no metadata.name", doc.index),
            });
            continue;
        };
        let namespace = metadata
            .and_then(|m| m.get("namespace"))
            .and_then(Node::as_str)
            .filter(|n| !n.is_empty())
            .unwrap_or(DEFAULT_NAMESPACE);
        let string_map = |key: &str| -> BTreeMap<String, String> {
            metadata
                .and_then(|m| m.get(key))
                .and_then(Node::as_mapping)
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
                .collect()
        };
        let annotations = string_map("annotations");
        let labels = string_map("labels");
        let spec = root.get("spec");
        let mut sources: Vec<AppSource> = Vec::new();
        if let Some(source) = spec.and_then(|s| s.get("source")).filter(|s| s.as_mapping().is_some()) {
            sources.push(read_source(source));
        }
        if let Some(list) = spec.and_then(|s| s.get("sources")).and_then(Node::as_sequence) {
            sources.extend(list.iter().filter(|s| s.as_mapping().is_some()).map(read_source));
        }
        apps.push(Application {
            id: AppId { namespace: namespace.to_string(), name: name.to_string() },
            file: path.to_string(),
            document: doc.index,
            annotations,
            labels,
            configured_by: None,
            sources,
            project: spec.and_then(|s| string(s, "project")).filter(|p| !p.is_empty()),
            destination: spec
                .and_then(|s| s.get("destination"))
                .map(|d| Destination {
                    server: string(d, "server").filter(|v| !v.is_empty()),
                    name: string(d, "name").filter(|v| !v.is_empty()),
                    namespace: string(d, "namespace").filter(|v| !v.is_empty()),
                })
                .unwrap_or_default(),
            live: root.get("status").filter(|s| s.as_mapping().is_some()).map(live_state),
        });
    }
}

fn live_state(status: &Node) -> LiveState {
    let sync = status.get("sync");
    let revision = sync.and_then(|s| string(s, "revision")).filter(|r| !r.is_empty()).or_else(|| {
        let all = strings(sync.and_then(|s| s.get("revisions")));
        (!all.is_empty()).then(|| all.join(", "))
    });
    LiveState {
        images: strings(status.get("summary").and_then(|s| s.get("images"))),
        sync: sync.and_then(|s| string(s, "status")).filter(|v| !v.is_empty()),
        health: status.get("health").and_then(|h| string(h, "status")).filter(|v| !v.is_empty()),
        revision,
    }
}

fn string(node: &Node, key: &str) -> Option<String> {
    node.get(key).and_then(Node::as_str).map(str::to_string)
}

fn strings(node: Option<&Node>) -> Vec<String> {
    node.and_then(Node::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect()
}

fn read_source(source: &Node) -> AppSource {
    let helm = source.get("helm").filter(|h| h.as_mapping().is_some());
    let kustomize = source.get("kustomize").filter(|k| k.as_mapping().is_some());
    let helm_parameters = helm
        .and_then(|h| h.get("parameters"))
        .and_then(Node::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some(HelmParameter {
                name: string(p, "name")?,
                value: p.get("value").and_then(|v| v.as_scalar()).map(|s| s.value.clone())?,
            })
        })
        .collect();
    AppSource {
        repo_url: string(source, "repoURL").unwrap_or_default(),
        target_revision: string(source, "targetRevision")
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "HEAD".to_string()),
        // A path that leaves the repository is kept as written; reading from it fails later
        // with a message naming it.
        path: string(source, "path").map(|p| normalize_path(&p).unwrap_or(p)),
        chart: string(source, "chart"),
        ref_name: string(source, "ref"),
        helm_value_files: strings(helm.and_then(|h| h.get("valueFiles"))),
        helm_parameters,
        helm_values_object: helm
            .and_then(|h| h.get("valuesObject"))
            .filter(|v| v.as_mapping().is_some())
            .map(|v| ValuesObject(std::sync::Arc::new(v.clone()))),
        has_helm: helm.is_some(),
        kustomize_images: strings(kustomize.and_then(|k| k.get("images"))),
        has_kustomize: kustomize.is_some(),
        directory_recurse: source
            .get("directory")
            .and_then(|d| d.get("recurse"))
            .and_then(Node::as_str)
            == Some("true"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> FileSet {
        let mut fs = FileSet::default();
        for (path, text) in list {
            fs.insert(*path, text.as_bytes());
        }
        fs
    }

    const WEB: &str = "\
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: web
  annotations:
    argocd-image-updater.argoproj.io/image-list: web=ghcr.io/acme/web:~1.2
    number: 3
spec:
  source:
    repoURL: https://github.com/acme/deploy.git
    path: ./apps/web/
    kustomize:
      images: [\"web=ghcr.io/acme/web:1.2.3\"]
";

    #[test]
    fn finds_applications() {
        struct Case {
            name: &'static str,
            files: Vec<(&'static str, &'static str)>,
            apps: Vec<&'static str>,
            errors: Vec<&'static str>,
        }
        let cases = [
            Case { name: "single app", files: vec![("apps/web.yaml", WEB)], apps: vec!["argocd/web"], errors: vec![] },
            Case {
                name: "multi-doc with other kinds, sorted by namespace and name",
                files: vec![(
                    "all.yml",
                    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n---\n\
                     apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: zeta, namespace: team-a}\n---\n\
                     apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata: {name: p}\n---\n\
                     apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: alpha, namespace: team-b}\n---\n\
                     apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: beta, namespace: team-a}\n",
                )],
                apps: vec!["team-a/beta", "team-a/zeta", "team-b/alpha"],
                errors: vec![],
            },
            Case {
                name: "invalid YAML file naming argoproj.io is reported, the rest continues",
                files: vec![("a/bad.yaml", "apiVersion: argoproj.io/v1alpha1\na: [1, 2\nb: 3\n"), ("b/web.yaml", WEB)],
                apps: vec!["argocd/web"],
                errors: vec!["a/bad.yaml:3: invalid YAML"],
            },
            Case {
                name: "invalid YAML that cannot hold an Application (a Helm template) is ignored",
                files: vec![
                    ("chart/templates/deploy.yaml", "{{- if .Values.enabled }}\nmetadata:\n  ports: [80, 443\n{{- end }}\n"),
                    ("b/web.yaml", WEB),
                ],
                apps: vec!["argocd/web"],
                errors: vec![],
            },
            Case {
                name: "missing name names file and document",
                files: vec![("apps.yaml", "kind: List\n---\napiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  namespace: x\n")],
                apps: vec![],
                errors: vec!["apps.yaml:3: document 1: Application has no metadata.name"],
            },
            Case {
                name: "non-YAML files ignored",
                files: vec![("README.md", "not: [yaml"), ("Kustomization", "x: [")],
                apps: vec![],
                errors: vec![],
            },
        ];
        for c in cases {
            let (apps, errors) = find_applications(&files(&c.files));
            let got: Vec<String> = apps.iter().map(|a| a.id.to_string()).collect();
            assert_eq!(got, c.apps, "case {}", c.name);
            let got: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            assert_eq!(got.len(), c.errors.len(), "case {}: {got:?}", c.name);
            for (g, want) in got.iter().zip(&c.errors) {
                assert!(g.starts_with(want), "case {}: {g:?} should start with {want:?}", c.name);
            }
        }
    }

    #[test]
    fn reads_source_fields() {
        let (apps, errors) = find_applications(&files(&[("web.yaml", WEB)]));
        assert!(errors.is_empty());
        let app = &apps[0];
        assert_eq!((app.file.as_str(), app.document), ("web.yaml", 0));
        assert_eq!(app.annotations["argocd-image-updater.argoproj.io/image-list"], "web=ghcr.io/acme/web:~1.2");
        assert_eq!(app.annotations["number"], "3");
        let src = &app.sources[0];
        assert_eq!(src.path.as_deref(), Some("apps/web"));
        assert_eq!(src.target_revision, "HEAD");
        assert!(src.has_kustomize && !src.has_helm);
        assert_eq!(src.kustomize_images, vec!["web=ghcr.io/acme/web:1.2.3"]);
    }

    #[test]
    fn reads_multiple_sources() {
        let text = "\
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: multi, namespace: apps}
spec:
  sources:
  - repoURL: https://charts.example.com
    chart: web
    targetRevision: 1.4.0
    helm:
      valueFiles: [$values/web/values-prod.yaml]
      parameters:
      - name: image.tag
        value: 1.10
      - {name: replicas, value: \"2\"}
  - repoURL: https://github.com/acme/values.git
    ref: values
  - repoURL: https://github.com/acme/deploy.git
    path: manifests/./web/../api
    directory:
      recurse: true
";
        let (apps, errors) = find_applications(&files(&[("multi.yaml", text)]));
        assert!(errors.is_empty(), "{errors:?}");
        let s = &apps[0].sources;
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].chart.as_deref(), Some("web"));
        assert_eq!(s[0].target_revision, "1.4.0");
        assert_eq!(s[0].helm_value_files, vec!["$values/web/values-prod.yaml"]);
        assert_eq!(
            s[0].helm_parameters,
            vec![
                HelmParameter { name: "image.tag".into(), value: "1.10".into() },
                HelmParameter { name: "replicas".into(), value: "2".into() },
            ]
        );
        assert!(s[0].has_helm);
        assert_eq!(s[1].ref_name.as_deref(), Some("values"));
        assert_eq!(s[1].path, None);
        assert_eq!(s[2].path.as_deref(), Some("manifests/api"));
        assert!(s[2].directory_recurse);
    }
}
