//! Finding where an image version lives in the manifests of a source (`find_current`);
//! `edit` rewrites it in place, and both follow the places `layout` names. Works on text held
//! in memory; no I/O. Pure.

use std::collections::HashSet;
use std::sync::Arc;

use crate::annotations::{HelmValue, ImageSpec};
use crate::discovery::{AppSource, Application};
use crate::domain::ImageName;
use crate::files::{normalize_path, FileSet};
use crate::yaml::{Node, Seg, Value, YamlFile};

pub mod edit;
pub mod layout;

/// Which kind of place the version was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocationKind {
    /// AIU's `.argocd-source-<app>.yaml` override file.
    ArgocdSource,
    /// `spec.source.kustomize.images` of the Application.
    AppKustomizeImages,
    /// `spec.source.helm.parameters` of the Application.
    AppHelmParameters,
    /// `spec.source.helm.valuesObject` of the Application.
    AppHelmValuesObject,
    /// `images:` of a kustomization file.
    Kustomization,
    /// A Helm values file.
    HelmValues,
    /// `image:` of a container in a workload manifest.
    Workload,
}

/// The version an image has according to git, and where that was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentImage {
    pub tag: Option<String>,
    pub digest: Option<String>,
    pub kind: LocationKind,
    /// Path relative to the repository root (for the Application manifest: its path in the apps tree).
    pub file: String,
    /// 1-based line of the value.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("{file}:{line}: invalid YAML: {message}")]
    Yaml { file: String, line: usize, message: String },
    #[error("{file}:{line}: {message}")]
    Unsupported { file: String, line: usize, message: String },
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
}

/// Reads the current version of `image` for `app` from one of its sources.
/// `Ok(None)` when the image does not appear in that source.
///
/// Looks where Argo CD would take the version from, first hit wins: AIU's
/// `.argocd-source-<app>.yaml`, the Application's own `kustomize.images` / `helm.parameters`,
/// then the source itself as Argo CD renders it (Kustomize, Helm or a plain directory).
pub fn find_current(
    files: &FileSet,
    app: &Application,
    source: &AppSource,
    image: &ImageSpec,
) -> Result<Option<CurrentImage>, ManifestError> {
    let Some(raw_path) = &source.path else {
        // A `ref` source (`{repoURL, ref: values}`) holds the values files other sources name
        // as `$values/...`, typically for a chart from a Helm repository, which is never read.
        if source.ref_name.is_some() {
            return Finder::new(files, app, source, image).ref_values();
        }
        return Ok(None);
    };
    let dir = normalize_path(raw_path).ok_or_else(|| ManifestError::Invalid {
        file: app.file.clone(),
        message: format!("source path {raw_path:?} leaves the repository"),
    })?;
    if let Some(link) = files.escaping_symlink(&dir) {
        return Err(symlink_out_of_repo(&dir, &link));
    }
    let finder = Finder::new(files, app, source, image);

    if let Some(hit) = finder.argocd_source(&dir)? {
        return Ok(Some(hit));
    }
    if let Some(hit) = finder.app_overrides()? {
        return Ok(Some(hit));
    }
    match finder.layout(&dir) {
        Layout::Kustomize(kfile) => {
            let mut visited = HashSet::new();
            finder.kustomization(&kfile, &finder.kustomize_names(), &mut visited)
        }
        Layout::Helm => finder.helm_values(&dir),
        Layout::Directory => finder.directory(&dir),
    }
}

/// The error for a path whose reading would follow a link out of the repository.
pub fn symlink_out_of_repo(path: &str, link: &str) -> ManifestError {
    ManifestError::Invalid {
        file: path.to_string(),
        message: format!("{link} is a symlink pointing outside the repository; not following it"),
    }
}

/// `rel` taken relative to the directory `dir`; `None` when the result leaves the repository.
fn join(dir: &str, rel: &str) -> Option<String> {
    if rel.starts_with('/') {
        // Absolute paths point outside the checkout as far as Argo CD is concerned.
        return None;
    }
    normalize_path(&format!("{dir}/{rel}"))
}

/// `name[:tag][@digest]` split into its parts without judging the name.
fn split_reference(s: &str) -> (&str, Option<&str>, Option<&str>) {
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (s, None),
    };
    let (name, tag) = crate::domain::split_tag(rest);
    (name, tag, digest)
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.filter(|s| !s.is_empty()).map(str::to_string)
}

enum Layout {
    Kustomize(String),
    Helm,
    Directory,
}

/// Where a walk through a YAML tree had to stop because the way goes through an alias, an
/// anchored node or a merge key (`<<`): the byte offset of that node.
struct Blocked(usize);

/// Follows `path` from `node`. A value reached through (or being) an alias or anchor is
/// `Blocked`: editing it would change other places too, and reading it would be a guess.
fn walk<'n>(node: &'n Node, path: &[Seg]) -> Result<Option<&'n Node>, Blocked> {
    let mut cur = node;
    for seg in path {
        if cur.is_alias() || cur.anchored {
            return Err(Blocked(cur.span.start));
        }
        match cur.child(seg) {
            Some(n) => cur = n,
            None => {
                if let Seg::Key(_) = seg
                    && let Some((k, _)) = cur.entry("<<")
                {
                    return Err(Blocked(k.span.start));
                }
                return Ok(None);
            }
        }
    }
    if cur.is_alias() || cur.anchored {
        return Err(Blocked(cur.span.start));
    }
    Ok(Some(cur))
}

struct Finder<'a> {
    files: &'a FileSet,
    app: &'a Application,
    source: &'a AppSource,
    image: &'a ImageSpec,
}

impl<'a> Finder<'a> {
    fn new(files: &'a FileSet, app: &'a Application, source: &'a AppSource, image: &'a ImageSpec) -> Self {
        Finder { files, app, source, image }
    }

    /// The parsed file, `None` when absent; a parse error names the file and line.
    fn load(&self, path: &str) -> Result<Option<Arc<YamlFile>>, ManifestError> {
        if let Some(link) = self.files.escaping_symlink(path) {
            return Err(symlink_out_of_repo(path, &link));
        }
        match self.files.yaml(path) {
            None => Ok(None),
            Some(Ok(y)) => Ok(Some(y)),
            Some(Err(e)) => Err(ManifestError::Yaml { file: path.to_string(), line: e.line, message: e.message }),
        }
    }

    fn unsupported(&self, file: &str, yaml: &YamlFile, offset: usize, what: &str) -> ManifestError {
        ManifestError::Unsupported {
            file: file.to_string(),
            line: yaml.line_of(offset),
            message: format!(
                "{what} of image {} goes through a YAML anchor or alias; edit it by hand or remove the alias",
                self.image.alias
            ),
        }
    }

    fn found(&self, kind: LocationKind, file: &str, line: usize, reference: &str) -> CurrentImage {
        let (_, tag, digest) = split_reference(reference);
        CurrentImage { tag: non_empty(tag), digest: non_empty(digest), kind, file: file.to_string(), line }
    }

    fn is_image(&self, name: &str) -> bool {
        self.image.parse_name(name).is_ok_and(|n| n == self.image.name)
    }

    /// Names a kustomize `images:` entry is matched against.
    fn kustomize_names(&self) -> Vec<ImageName> {
        match &self.image.kustomize_image_name {
            Some(n) => self.image.parse_name(n).into_iter().collect(),
            None => vec![self.image.name.clone()],
        }
    }

    fn layout(&self, dir: &str) -> Layout {
        let kfile = layout::kustomization_file(self.files, dir);
        let chart = self.files.contains(&layout::in_dir(dir, layout::CHART_FILE));
        match (self.source.has_helm, self.source.has_kustomize, kfile) {
            (true, false, _) => Layout::Helm,
            (_, _, Some(k)) => Layout::Kustomize(k),
            _ if chart || self.source.has_helm => Layout::Helm,
            _ => Layout::Directory,
        }
    }

    /// A kustomize image override `[old=]name[:tag][@digest]` that applies to our image.
    fn kustomize_override(&self, entry: &str) -> bool {
        let (old, new) = match entry.split_once('=') {
            Some((o, n)) => (Some(o), n),
            None => (None, entry),
        };
        let (name, _, _) = split_reference(new);
        let names = self.kustomize_names();
        let matches = |n: &str| self.image.parse_name(n).is_ok_and(|n| names.contains(&n));
        matches(old.unwrap_or(name)) || (old.is_some() && self.is_image(name))
    }

    /// (a) AIU's override files next to the source, the app's own first.
    fn argocd_source(&self, dir: &str) -> Result<Option<CurrentImage>, ManifestError> {
        for file in layout::argocd_source_files(dir, &self.app.id.name) {
            if let Some(hit) = self.argocd_source_file(&file)? {
                return Ok(Some(hit));
            }
        }
        Ok(None)
    }

    fn argocd_source_file(&self, file: &str) -> Result<Option<CurrentImage>, ManifestError> {
        let file = file.to_string();
        let Some(yaml) = self.load(&file)? else { return Ok(None) };
        for doc in &yaml.documents {
            let Some(root) = &doc.root else { continue };
            let images = walk(root, &Seg::keys(&layout::KUSTOMIZE_IMAGES))
                .map_err(|Blocked(o)| self.unsupported(&file, &yaml, o, "the override file"))?;
            for entry in images.and_then(Node::as_sequence).unwrap_or_default() {
                if let Some(s) = entry.as_str()
                    && self.kustomize_override(s)
                {
                    if entry.anchored {
                        return Err(self.unsupported(&file, &yaml, entry.span.start, "the override"));
                    }
                    let new = s.split_once('=').map_or(s, |(_, n)| n);
                    return Ok(Some(self.found(LocationKind::ArgocdSource, &file, yaml.line_of(entry.span.start), new)));
                }
            }
            let params = walk(root, &Seg::keys(&layout::HELM_PARAMETERS))
                .map_err(|Blocked(o)| self.unsupported(&file, &yaml, o, "the override file"))?;
            for p in params.and_then(Node::as_sequence).unwrap_or_default() {
                let name = p.get("name").and_then(Node::as_str);
                let Some(value) = p.get("value") else { continue };
                if let Some(hit) = self.helm_param(name, value.as_scalar().map(|s| s.value.as_str())) {
                    if value.is_alias() || value.anchored {
                        return Err(self.unsupported(&file, &yaml, value.span.start, "the override"));
                    }
                    return Ok(Some(CurrentImage {
                        kind: LocationKind::ArgocdSource,
                        file: file.clone(),
                        line: yaml.line_of(value.span.start),
                        ..hit
                    }));
                }
            }
        }
        Ok(None)
    }

    /// A Helm parameter `name=value` that holds our image's spec or tag.
    fn helm_param(&self, name: Option<&str>, value: Option<&str>) -> Option<CurrentImage> {
        let (name, value) = (name?, value?);
        let hit = CurrentImage {
            tag: None,
            digest: None,
            kind: LocationKind::AppHelmParameters,
            file: self.app.file.clone(),
            line: 0,
        };
        let (key, holds) = self.image.helm.version_key();
        (key == name).then(|| hit.with_helm_value(holds, value))
    }

    /// (b) The Application's own `kustomize.images`, `helm.parameters` and `helm.valuesObject`.
    /// Their line in the Application manifest is not tracked yet (0).
    fn app_overrides(&self) -> Result<Option<CurrentImage>, ManifestError> {
        for entry in &self.source.kustomize_images {
            if self.kustomize_override(entry) {
                let new = entry.split_once('=').map_or(entry.as_str(), |(_, n)| n);
                return Ok(Some(self.found(LocationKind::AppKustomizeImages, &self.app.file, 0, new)));
            }
        }
        // Later parameters win in Helm (`--set a=1 --set a=2`); parameters win over valuesObject.
        self.source
            .helm_parameters
            .iter()
            .rev()
            .find_map(|p| self.helm_param(Some(&p.name), Some(&p.value)))
            .map(Ok)
            .or_else(|| self.values_object().transpose())
            .transpose()
    }

    /// The Application's `helm.valuesObject`, which Argo CD lays over every values file.
    fn values_object(&self) -> Result<Option<CurrentImage>, ManifestError> {
        let Some(object) = &self.source.helm_values_object else { return Ok(None) };
        let (key, holds) = self.image.helm.version_key();
        let blocked = |Blocked(_)| ManifestError::Unsupported {
            file: self.app.file.clone(),
            line: 0,
            message: format!("helm.valuesObject: {key} of image {} sits behind a YAML alias or anchor", self.image.alias),
        };
        let Some(node) = walk(&object.0, &layout::helm_key(key)).map_err(blocked)? else { return Ok(None) };
        let Some(scalar) = node.as_scalar().filter(|s| !s.is_null()) else { return Ok(None) };
        let hit = CurrentImage { tag: None, digest: None, kind: LocationKind::AppHelmValuesObject, file: self.app.file.clone(), line: 0 };
        Ok(Some(hit.with_helm_value(holds, &scalar.value)))
    }

    /// (c) A kustomization: its `images:` entry for our image, else the workloads among its
    /// resources, recursively through nested kustomizations (an outer entry wins, as the
    /// outermost images transformer runs last).
    fn kustomization(
        &self,
        kfile: &str,
        names: &[ImageName],
        visited: &mut HashSet<String>,
    ) -> Result<Option<CurrentImage>, ManifestError> {
        if !visited.insert(kfile.to_string()) {
            return Ok(None);
        }
        let Some(yaml) = self.load(kfile)? else { return Ok(None) };
        let Some(root) = yaml.documents.iter().find_map(|d| d.root.as_ref()) else { return Ok(None) };
        let dir = kfile.rsplit_once('/').map_or("", |(d, _)| d);
        let mut names = names.to_vec();

        let images = walk(root, &Seg::keys(&[layout::KUSTOMIZATION_IMAGES]))
            .map_err(|Blocked(o)| self.unsupported(kfile, &yaml, o, "the images list"))?;
        for entry in images.and_then(Node::as_sequence).unwrap_or_default() {
            let field = |k: &str| entry.get(k).and_then(Node::as_str);
            if entry.is_alias() {
                return Err(self.unsupported(kfile, &yaml, entry.span.start, "an images entry"));
            }
            let parses_to_ours = |n: Option<&str>| {
                n.and_then(|n| self.image.parse_name(n).ok()).is_some_and(|n| names.contains(&n))
            };
            let by_name = parses_to_ours(field("name"));
            let by_new_name = self.image.kustomize_image_name.is_none()
                && field("newName").is_some_and(|n| self.is_image(n));
            if !(by_name || by_new_name) {
                continue;
            }
            let tag = walk(entry, &[Seg::Key("newTag".into())]);
            let digest = walk(entry, &[Seg::Key("digest".into())]);
            let (tag, digest) = match (tag, digest) {
                (Ok(t), Ok(d)) => (t, d),
                (Err(Blocked(o)), _) | (_, Err(Blocked(o))) => {
                    return Err(self.unsupported(kfile, &yaml, o, "the images entry"));
                }
            };
            let Some(at) = tag.or(digest) else {
                // Only `newName`: the version still comes from the resources, under the old name.
                if let Some(old) = field("name").and_then(|n| self.image.parse_name(n).ok()) {
                    names.push(old);
                }
                continue;
            };
            return Ok(Some(CurrentImage {
                tag: non_empty(tag.and_then(Node::as_str)),
                digest: non_empty(digest.and_then(Node::as_str)),
                kind: LocationKind::Kustomization,
                file: kfile.to_string(),
                line: yaml.line_of(at.span.start),
            }));
        }

        for key in layout::KUSTOMIZATION_RESOURCES {
            for res in root.get(key).and_then(Node::as_sequence).unwrap_or_default() {
                let Some(res) = res.as_str() else { continue };
                if res.contains("://") || res.starts_with("github.com/") || res.starts_with("git@") {
                    continue; // remote bases are not in this repository
                }
                let target = join(dir, res).ok_or_else(|| ManifestError::Invalid {
                    file: kfile.to_string(),
                    message: format!("resource {res:?} leaves the repository"),
                })?;
                let hit = if self.files.contains(&target) {
                    self.workloads_in(&target, &names)?
                } else if let Some(nested) = layout::kustomization_file(self.files, &target) {
                    self.kustomization(&nested, &names, visited)?
                } else {
                    None
                };
                if hit.is_some() {
                    return Ok(hit);
                }
            }
        }
        Ok(None)
    }

    /// (d) Helm values files: the Application's `valueFiles` (the last one wins) over the
    /// chart's `values.yaml`.
    fn helm_values(&self, dir: &str) -> Result<Option<CurrentImage>, ManifestError> {
        let mut order: Vec<String> = Vec::new();
        for vf in self.source.helm_value_files.iter().rev() {
            if vf.starts_with('$') || vf.contains("://") {
                continue;
            }
            let path = join(dir, vf).ok_or_else(|| ManifestError::Invalid {
                file: self.app.file.clone(),
                message: format!("values file {vf:?} leaves the repository"),
            })?;
            if !order.contains(&path) {
                order.push(path);
            }
        }
        let default = layout::in_dir(dir, layout::CHART_VALUES);
        if !order.contains(&default) {
            order.push(default);
        }
        // Values files of another source (`$values/...`) are read with that source.
        self.values_in(&order)
    }

    /// (d') A `ref` source: the files other sources of the Application name as `$<ref>/path`,
    /// the last one named winning as in Helm.
    fn ref_values(&self) -> Result<Option<CurrentImage>, ManifestError> {
        let Some(r) = &self.source.ref_name else { return Ok(None) };
        let prefix = format!("${r}/");
        let mut order = Vec::new();
        for other in &self.app.sources {
            for vf in other.helm_value_files.iter().rev() {
                let Some(rest) = vf.strip_prefix(&prefix) else { continue };
                let path = normalize_path(rest).ok_or_else(|| ManifestError::Invalid {
                    file: self.app.file.clone(),
                    message: format!("values file {vf:?} leaves the repository"),
                })?;
                if !order.contains(&path) {
                    order.push(path);
                }
            }
        }
        self.values_in(&order)
    }

    /// The first of `order` (highest precedence first) that sets the image's Helm key.
    fn values_in(&self, order: &[String]) -> Result<Option<CurrentImage>, ManifestError> {
        let (key, holds) = self.image.helm.version_key();
        let what = match holds {
            HelmValue::Spec => "the image-spec value",
            HelmValue::Tag => "the image-tag value",
        };
        let path = layout::helm_key(key);
        for file in order {
            let Some(yaml) = self.load(file)? else { continue };
            let Some(root) = yaml.documents.iter().find_map(|d| d.root.as_ref()) else { continue };
            let node = walk(root, &path).map_err(|Blocked(o)| self.unsupported(file, &yaml, o, what))?;
            let Some(node) = node else { continue };
            let Some(scalar) = node.as_scalar() else { continue };
            let line = yaml.line_of(node.span.start);
            let value = if scalar.is_null() { "" } else { scalar.value.as_str() };
            let hit = CurrentImage { tag: None, digest: None, kind: LocationKind::HelmValues, file: file.clone(), line };
            return Ok(Some(hit.with_helm_value(holds, value)));
        }
        Ok(None)
    }

    /// (e) A plain directory of manifests (recursive with `directory.recurse`).
    fn directory(&self, dir: &str) -> Result<Option<CurrentImage>, ManifestError> {
        let prefix = if dir.is_empty() { String::new() } else { format!("{dir}/") };
        let names = [self.image.name.clone()];
        for path in self.files.files.range(prefix.clone()..).map(|(p, _)| p) {
            let Some(rest) = path.strip_prefix(&prefix) else { break };
            if !layout::is_manifest(rest) || (!self.source.directory_recurse && rest.contains('/')) {
                continue;
            }
            if rest.rsplit('/').next().is_some_and(layout::is_argocd_source) {
                continue;
            }
            if let Some(hit) = self.workloads_in(path, &names)? {
                return Ok(Some(hit));
            }
        }
        Ok(None)
    }

    /// The first container image among the workloads of one manifest file that is one of `names`.
    fn workloads_in(&self, file: &str, names: &[ImageName]) -> Result<Option<CurrentImage>, ManifestError> {
        let Some(yaml) = self.load(file)? else { return Ok(None) };
        let ours = |s: &str| {
            let (name, _, _) = split_reference(s);
            self.image.parse_name(name).is_ok_and(|n| names.contains(&n))
        };
        for doc in &yaml.documents {
            let Some(root) = &doc.root else { continue };
            let Some(pod) = pod_spec(root) else { continue };
            for list in layout::CONTAINER_LISTS {
                for container in pod.get(list).and_then(Node::as_sequence).unwrap_or_default() {
                    let Some(image) = container.get("image") else { continue };
                    match &image.value {
                        Value::Alias(name) => {
                            let target = doc.anchor_for(name, image.span.start).and_then(|a| a.scalar.as_deref());
                            if target.is_some_and(ours) {
                                return Err(self.unsupported(file, &yaml, image.span.start, "the container image"));
                            }
                        }
                        Value::Scalar(s) if ours(&s.value) => {
                            if image.anchored {
                                return Err(self.unsupported(file, &yaml, image.span.start, "the container image"));
                            }
                            let line = yaml.line_of(image.span.start);
                            return Ok(Some(self.found(LocationKind::Workload, file, line, &s.value)));
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(None)
    }
}

impl CurrentImage {
    /// The version a Helm value holds: `name:tag[@digest]` (a spec) or `tag[@digest]`.
    fn with_helm_value(mut self, holds: HelmValue, value: &str) -> Self {
        let (tag, digest) = match holds {
            HelmValue::Spec => {
                let (_, tag, digest) = split_reference(value);
                (tag, digest)
            }
            HelmValue::Tag => match value.split_once('@') {
                Some((t, d)) => (Some(t), Some(d)),
                None => (Some(value), None),
            },
        };
        self.tag = non_empty(tag);
        self.digest = non_empty(digest);
        self
    }
}

/// The pod spec of a workload manifest, for the kinds whose containers Argo CD deploys.
fn pod_spec(root: &Node) -> Option<&Node> {
    layout::workload(root)?.pod_spec.iter().try_fold(root, |node, key| node.get(key))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::annotations::HelmKeys;
    use crate::discovery::HelmParameter;
    use crate::domain::AppId;

    fn spec(name: &str) -> ImageSpec {
        ImageSpec::new("app", ImageName::parse(name).unwrap())
    }

    /// An image-list entry `name` read under registries.conf's default registry `prefix`.
    fn spec_under(prefix: &str, name: &str) -> ImageSpec {
        let default = crate::domain::DefaultRegistry::from_prefix(prefix).unwrap();
        let image = ImageName::parse_with(name, &default).unwrap();
        ImageSpec { default_registry: Arc::new(default), ..ImageSpec::new("app", image) }
    }

    fn app() -> Application {
        Application {
            id: AppId { namespace: "argocd".into(), name: "web".into() },
            file: "apps/web.yaml".into(),
            document: 0,
            annotations: BTreeMap::new(),
            labels: BTreeMap::new(),
            configured_by: None,
            sources: vec![],
            project: None,
            destination: Default::default(),
            live: None,
        }
    }

    fn source(path: &str) -> AppSource {
        AppSource { path: Some(path.into()), target_revision: "HEAD".into(), ..Default::default() }
    }

    const DEPLOYMENT: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    spec:
      initContainers:
      - name: migrate
        image: ghcr.io/acme/migrate:0.9
      containers:
      - name: sidecar
        image: docker.io/library/nginx:1.25
      - name: web
        image: ghcr.io/acme/web:1.2.3
";

    /// (tag, digest, kind, file, line)
    type Want = (Option<&'static str>, Option<&'static str>, LocationKind, &'static str, usize);

    type Files = Vec<(&'static str, &'static str)>;

    struct Case {
        name: &'static str,
        files: Files,
        source: AppSource,
        image: ImageSpec,
        want: Option<Want>,
    }

    fn with_helm(mut s: ImageSpec, f: impl FnOnce(&mut HelmKeys)) -> ImageSpec {
        f(&mut s.helm);
        s
    }

    fn cases() -> Vec<Case> {
        use LocationKind::*;
        vec![
            Case {
                name: "kustomize images entry",
                files: vec![
                    ("app/kustomization.yaml", "resources:\n- deploy.yaml\nimages:\n- name: ghcr.io/acme/web\n  newTag: \"1.10\"\n"),
                    ("app/deploy.yaml", DEPLOYMENT),
                ],
                source: source("app"),
                image: spec("ghcr.io/acme/web"),
                want: Some((Some("1.10"), None, Kustomization, "app/kustomization.yaml", 5)),
            },
            Case {
                name: "kustomize entry matched after normalization, digest kept",
                files: vec![(
                    "app/kustomization.yml",
                    "images:\n- name: nginx\n  newTag: 1.25.3\n  digest: sha256:abc\n",
                )],
                source: source("app"),
                image: spec("index.docker.io/library/nginx"),
                want: Some((Some("1.25.3"), Some("sha256:abc"), Kustomization, "app/kustomization.yml", 3)),
            },
            Case {
                name: "kustomize image-name option",
                files: vec![("app/Kustomization", "images:\n- name: web-placeholder\n  newName: ghcr.io/acme/web\n  newTag: v2\n")],
                source: source("app"),
                image: ImageSpec { kustomize_image_name: Some("web-placeholder".into()), ..spec("ghcr.io/acme/web") },
                want: Some((Some("v2"), None, Kustomization, "app/Kustomization", 4)),
            },
            Case {
                name: "kustomize without entry falls back to resources through nested bases",
                files: vec![
                    ("overlays/prod/kustomization.yaml", "resources:\n- ../../base\nimages:\n- name: other\n  newTag: x\n"),
                    ("base/kustomization.yaml", "resources:\n  - ./workloads/deploy.yaml\n"),
                    ("base/workloads/deploy.yaml", DEPLOYMENT),
                ],
                source: source("overlays/prod"),
                image: spec("ghcr.io/acme/web"),
                want: Some((Some("1.2.3"), None, Workload, "base/workloads/deploy.yaml", 15)),
            },
            Case {
                name: "overlay entry wins over base entry",
                files: vec![
                    ("o/kustomization.yaml", "resources: [../b]\nimages:\n- {name: ghcr.io/acme/web, newTag: \"2.0\"}\n"),
                    ("b/kustomization.yaml", "images:\n- {name: ghcr.io/acme/web, newTag: \"1.0\"}\n"),
                ],
                source: source("o"),
                image: spec("ghcr.io/acme/web"),
                want: Some((Some("2.0"), None, Kustomization, "o/kustomization.yaml", 3)),
            },
            Case {
                name: "helm default keys image.tag",
                files: vec![
                    ("chart/Chart.yaml", "name: web\nversion: 1.0.0\n"),
                    ("chart/values.yaml", "replicas: 1\nimage:\n  name: ghcr.io/acme/web\n  tag: 1.10 # keep\n"),
                ],
                source: source("chart"),
                image: spec("ghcr.io/acme/web"),
                want: Some((Some("1.10"), None, HelmValues, "chart/values.yaml", 4)),
            },
            Case {
                name: "helm image-spec key",
                files: vec![("chart/Chart.yaml", "name: web\n"), ("chart/values.yaml", "web:\n  image: \"ghcr.io/acme/web:1.4@sha256:def\"\n")],
                source: source("chart"),
                image: with_helm(spec("ghcr.io/acme/web"), |h| h.image_spec = Some("web.image".into())),
                want: Some((Some("1.4"), Some("sha256:def"), HelmValues, "chart/values.yaml", 2)),
            },
            Case {
                name: "helm list index keys, value files override values.yaml",
                files: vec![
                    ("chart/Chart.yaml", "name: web\n"),
                    ("chart/values.yaml", "containers:\n- image: {tag: \"0.1\"}\n- image: {tag: \"0.2\"}\n"),
                    ("chart/values-prod.yaml", "containers:\n- image:\n    tag: \"9.9\"\n- image:\n    tag: \"1.5\"\n"),
                ],
                source: AppSource {
                    helm_value_files: vec!["values-prod.yaml".into()],
                    has_helm: true,
                    ..source("chart")
                },
                image: with_helm(spec("ghcr.io/acme/web"), |h| h.image_tag = Some("containers[1].image.tag".into())),
                want: Some((Some("1.5"), None, HelmValues, "chart/values-prod.yaml", 5)),
            },
            Case {
                name: "helm parameters on the source override values",
                files: vec![("chart/Chart.yaml", "name: web\n"), ("chart/values.yaml", "image:\n  tag: \"1.0\"\n")],
                source: AppSource {
                    helm_parameters: vec![HelmParameter { name: "image.tag".into(), value: "1.1".into() }],
                    has_helm: true,
                    ..source("chart")
                },
                image: spec("ghcr.io/acme/web"),
                want: Some((Some("1.1"), None, AppHelmParameters, "apps/web.yaml", 0)),
            },
            Case {
                name: ".argocd-source override wins",
                files: vec![
                    ("app/kustomization.yaml", "images:\n- {name: ghcr.io/acme/web, newTag: \"1.0\"}\n"),
                    ("app/.argocd-source-web.yaml", "kustomize:\n  images:\n  - ghcr.io/acme/web:1.7\n"),
                ],
                source: source("app"),
                image: spec("ghcr.io/acme/web"),
                want: Some((Some("1.7"), None, ArgocdSource, "app/.argocd-source-web.yaml", 3)),
            },
            Case {
                name: ".argocd-source.yaml without the app name",
                files: vec![
                    ("app/kustomization.yaml", "images:\n- {name: ghcr.io/acme/web, newTag: \"1.0\"}\n"),
                    ("app/.argocd-source.yaml", "kustomize:\n  images:\n  - ghcr.io/acme/web:1.8\n"),
                ],
                source: source("app"),
                image: spec("ghcr.io/acme/web"),
                want: Some((Some("1.8"), None, ArgocdSource, "app/.argocd-source.yaml", 3)),
            },
            Case {
                name: ".argocd-source-<app>.yaml is applied after .argocd-source.yaml",
                files: vec![
                    ("app/.argocd-source.yaml", "kustomize:\n  images:\n  - ghcr.io/acme/web:1.8\n"),
                    ("app/.argocd-source-web.yaml", "kustomize:\n  images:\n  - ghcr.io/acme/web:1.9\n"),
                ],
                source: source("app"),
                image: spec("ghcr.io/acme/web"),
                want: Some((Some("1.9"), None, ArgocdSource, "app/.argocd-source-web.yaml", 3)),
            },
            Case {
                name: ".argocd-source.yaml when the app's own file does not name the image",
                files: vec![
                    ("app/.argocd-source.yaml", "helm:\n  parameters:\n  - {name: image.tag, value: \"3.0\"}\n"),
                    ("app/.argocd-source-web.yaml", "kustomize:\n  images:\n  - other:1\n"),
                    ("app/Chart.yaml", "name: web\n"),
                ],
                source: source("app"),
                image: spec("ghcr.io/acme/web"),
                want: Some((Some("3.0"), None, ArgocdSource, "app/.argocd-source.yaml", 3)),
            },
            Case {
                name: ".argocd-source.yaml in a plain directory is not a manifest",
                files: vec![
                    ("plain/.argocd-source.yaml", "kind: Pod\nspec:\n  containers:\n  - image: nginx:9\n"),
                    ("plain/deploy.yaml", DEPLOYMENT),
                ],
                source: source("plain"),
                image: spec("nginx"),
                want: Some((Some("1.25"), None, Workload, "plain/deploy.yaml", 13)),
            },
            Case {
                name: ".argocd-source helm parameters",
                files: vec![
                    ("chart/Chart.yaml", "name: web\n"),
                    ("chart/.argocd-source-web.yaml", "helm:\n  parameters:\n  - name: image.tag\n    value: \"2.1\"\n    forcestring: true\n"),
                ],
                source: source("chart"),
                image: spec("ghcr.io/acme/web"),
                want: Some((Some("2.1"), None, ArgocdSource, "chart/.argocd-source-web.yaml", 4)),
            },
            Case {
                name: "app kustomize.images",
                files: vec![("app/kustomization.yaml", "images:\n- {name: nginx, newTag: \"1.0\"}\n")],
                source: AppSource { kustomize_images: vec!["nginx=nginx:1.27".into()], has_kustomize: true, ..source("app") },
                image: spec("nginx"),
                want: Some((Some("1.27"), None, AppKustomizeImages, "apps/web.yaml", 0)),
            },
            Case {
                name: "app kustomize.images with digest only",
                files: vec![],
                source: AppSource { kustomize_images: vec!["ghcr.io/acme/web@sha256:123".into()], ..source("app") },
                image: spec("ghcr.io/acme/web"),
                want: Some((None, Some("sha256:123"), AppKustomizeImages, "apps/web.yaml", 0)),
            },
            Case {
                name: "plain Deployment with two containers",
                files: vec![("plain/deploy.yaml", DEPLOYMENT)],
                source: source("plain"),
                image: spec("nginx"),
                want: Some((Some("1.25"), None, Workload, "plain/deploy.yaml", 13)),
            },
            Case {
                name: "plain initContainer",
                files: vec![("plain/deploy.yaml", DEPLOYMENT)],
                source: source("plain"),
                image: spec("ghcr.io/acme/migrate"),
                want: Some((Some("0.9"), None, Workload, "plain/deploy.yaml", 10)),
            },
            Case {
                name: "CronJob",
                files: vec![(
                    "jobs/cron.yaml",
                    "apiVersion: batch/v1\nkind: CronJob\nspec:\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          containers:\n          - image: ghcr.io/acme/backup:3.1@sha256:aa\n",
                )],
                source: source("jobs"),
                image: spec("ghcr.io/acme/backup"),
                want: Some((Some("3.1"), Some("sha256:aa"), Workload, "jobs/cron.yaml", 9)),
            },
            Case {
                name: "Rollout in a second document",
                files: vec![(
                    "r/rollout.yaml",
                    "kind: Service\n---\napiVersion: argoproj.io/v1alpha1\nkind: Rollout\nspec:\n  template:\n    spec:\n      containers: [{name: web, image: \"ghcr.io/acme/web:4.0\"}]\n",
                )],
                source: source("r"),
                image: spec("ghcr.io/acme/web"),
                want: Some((Some("4.0"), None, Workload, "r/rollout.yaml", 8)),
            },
            Case {
                name: "digest-only reference",
                files: vec![("p/pod.yaml", "kind: Pod\nspec:\n  containers:\n  - image: ghcr.io/acme/web@sha256:feed\n")],
                source: source("p"),
                image: spec("ghcr.io/acme/web"),
                want: Some((None, Some("sha256:feed"), Workload, "p/pod.yaml", 4)),
            },
            Case {
                name: "localhost:5000 image",
                files: vec![("p/pod.yaml", "kind: Pod\nspec:\n  containers:\n  - image: localhost:5000/app:0.3\n  - image: localhost:5000/other:9\n")],
                source: source("p"),
                image: spec("localhost:5000/app"),
                want: Some((Some("0.3"), None, Workload, "p/pod.yaml", 4)),
            },
            Case {
                name: "CRLF file",
                files: vec![("p/pod.yaml", "kind: Pod\r\nspec:\r\n  containers:\r\n  - name: a\r\n    image: nginx:1.2\r\n")],
                source: source("p"),
                image: spec("nginx"),
                want: Some((Some("1.2"), None, Workload, "p/pod.yaml", 5)),
            },
            Case {
                name: "subdirectories only with recurse",
                files: vec![("d/sub/pod.yaml", "kind: Pod\nspec:\n  containers:\n  - image: nginx:1.2\n")],
                source: source("d"),
                image: spec("nginx"),
                want: None,
            },
            Case {
                name: "subdirectories with recurse",
                files: vec![("d/sub/pod.yaml", "kind: Pod\nspec:\n  containers:\n  - image: nginx:1.2\n")],
                source: AppSource { directory_recurse: true, ..source("d") },
                image: spec("nginx"),
                want: Some((Some("1.2"), None, Workload, "d/sub/pod.yaml", 4)),
            },
            Case {
                name: "default registry: bare kustomize entry is the bare image-list name",
                files: vec![
                    ("app/kustomization.yaml", "resources:\n- deploy.yaml\nimages:\n- name: argoproj/argocd\n  newTag: v2.1.0\n"),
                    ("app/deploy.yaml", "kind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n      - image: argoproj/argocd\n"),
                ],
                source: source("app"),
                image: spec_under("quay.io", "argoproj/argocd"),
                want: Some((Some("v2.1.0"), None, Kustomization, "app/kustomization.yaml", 5)),
            },
            Case {
                name: "default registry: explicit docker.io entry is another image",
                files: vec![
                    ("app/kustomization.yaml", "resources:\n- deploy.yaml\nimages:\n- name: docker.io/argoproj/argocd\n  newTag: v1.0.0\n"),
                    ("app/deploy.yaml", "kind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n      - image: argoproj/argocd:v2.0.0\n"),
                ],
                source: source("app"),
                image: spec_under("quay.io", "argoproj/argocd"),
                want: Some((Some("v2.0.0"), None, Workload, "app/deploy.yaml", 6)),
            },
            Case {
                name: "default registry: a bare name is not the explicit docker.io image",
                files: vec![("plain/pod.yaml", "kind: Pod\nspec:\n  containers:\n  - image: argoproj/argocd:v2.0.0\n")],
                source: source("plain"),
                image: spec_under("quay.io", "docker.io/argoproj/argocd"),
                want: None,
            },
            Case {
                name: "default registry with a path: single-component workload image",
                files: vec![("plain/pod.yaml", "kind: Pod\nspec:\n  containers:\n  - image: app:1.4\n")],
                source: source("plain"),
                image: spec_under("registry.example.com/team", "registry.example.com/team/app"),
                want: Some((Some("1.4"), None, Workload, "plain/pod.yaml", 4)),
            },
            Case {
                name: "image not in source",
                files: vec![("plain/deploy.yaml", DEPLOYMENT)],
                source: source("plain"),
                image: spec("redis"),
                want: None,
            },
            Case {
                name: "chart source has nothing in git",
                files: vec![],
                source: AppSource { chart: Some("web".into()), ..Default::default() },
                image: spec("redis"),
                want: None,
            },
        ]
    }

    fn fileset(list: &[(&str, &str)]) -> FileSet {
        let mut fs = FileSet::default();
        for (p, t) in list {
            fs.insert(*p, t.as_bytes());
        }
        fs
    }

    #[test]
    fn finds_current_version_per_layout() {
        for c in cases() {
            let got = find_current(&fileset(&c.files), &app(), &c.source, &c.image)
                .unwrap_or_else(|e| panic!("case {}: {e}", c.name));
            let want = c.want.map(|(tag, digest, kind, file, line)| CurrentImage {
                tag: tag.map(str::to_string),
                digest: digest.map(str::to_string),
                kind,
                file: file.to_string(),
                line,
            });
            assert_eq!(got, want, "case {}", c.name);
        }
    }

    #[test]
    fn a_ref_source_is_read_for_the_values_files_a_chart_source_names() {
        // Issue 9: `sources: [{chart: web, helm.valueFiles: [$values/apps/x/values.yaml]}, {ref: values}]`.
        let chart = AppSource {
            repo_url: "https://charts.example.com".into(),
            chart: Some("web".into()),
            helm_value_files: vec!["$values/apps/x/base.yaml".into(), "$values/apps/x/values.yaml".into()],
            has_helm: true,
            ..Default::default()
        };
        let values = AppSource { repo_url: "https://git.example.com/gitops.git".into(), ref_name: Some("values".into()), ..Default::default() };
        let mut application = app();
        application.sources = vec![chart.clone(), values.clone()];
        let files = fileset(&[
            ("apps/x/base.yaml", "image:\n  name: nginx\n  tag: 1.0.0\n"),
            ("apps/x/values.yaml", "image:\n  tag: 1.2.0\n"),
        ]);
        let got = find_current(&files, &application, &values, &spec("nginx")).unwrap().unwrap();
        assert_eq!((got.tag.as_deref(), got.file.as_str(), got.line), (Some("1.2.0"), "apps/x/values.yaml", 2), "the last file wins");
        assert_eq!(find_current(&files, &application, &chart, &spec("nginx")).unwrap(), None, "the chart itself is not in git");
    }

    #[test]
    fn values_object_of_the_application_wins_over_values_files_and_loses_to_parameters() {
        // Issue 9: the chart's values.yaml names the repository without a tag.
        let object = crate::yaml::parse_bytes(b"image:\n  tag: 2.1.0\n").unwrap();
        let object = object.documents[0].root.clone().unwrap();
        let with_object = AppSource {
            helm_values_object: Some(crate::discovery::ValuesObject(std::sync::Arc::new(object))),
            has_helm: true,
            ..source("chart")
        };
        let files = fileset(&[("chart/Chart.yaml", "name: c\n"), ("chart/values.yaml", "image:\n  name: nginx\n")]);
        let got = find_current(&files, &app(), &with_object, &spec("nginx")).unwrap().unwrap();
        assert_eq!((got.tag.as_deref(), got.kind, got.file.as_str()), (Some("2.1.0"), LocationKind::AppHelmValuesObject, "apps/web.yaml"));
        let with_param = AppSource {
            helm_parameters: vec![crate::discovery::HelmParameter { name: "image.tag".into(), value: "3.0.0".into() }],
            ..with_object
        };
        let got = find_current(&files, &app(), &with_param, &spec("nginx")).unwrap().unwrap();
        assert_eq!((got.tag.as_deref(), got.kind), (Some("3.0.0"), LocationKind::AppHelmParameters));
    }

    #[test]
    fn refuses_what_it_cannot_read_safely() {
        // (case, files, source, image, start of the error message)
        let cases: Vec<(&str, Files, AppSource, ImageSpec, &str)> = vec![
            (
                "helm tag behind an anchor",
                vec![("c/Chart.yaml", "name: c\n"), ("c/values.yaml", "defaults:\n  tag: &t \"1.0\"\nimage:\n  tag: *t\n")],
                source("c"),
                spec("ghcr.io/acme/web"),
                "c/values.yaml:4: ",
            ),
            (
                "anchored helm tag",
                vec![("c/Chart.yaml", "name: c\n"), ("c/values.yaml", "image:\n  tag: &t \"1.0\"\nother: *t\n")],
                source("c"),
                spec("ghcr.io/acme/web"),
                "c/values.yaml:2: ",
            ),
            (
                "helm key behind a merge key",
                vec![("c/Chart.yaml", "name: c\n"), ("c/values.yaml", "base: &b {tag: \"1\"}\nimage:\n  <<: *b\n")],
                source("c"),
                spec("ghcr.io/acme/web"),
                "c/values.yaml:3: ",
            ),
            (
                "container image alias",
                vec![("p/pod.yaml", "kind: Pod\nx: &img nginx:1.2\nspec:\n  containers:\n  - image: *img\n")],
                source("p"),
                spec("nginx"),
                "p/pod.yaml:5: ",
            ),
            (
                "invalid YAML names file and line",
                vec![("p/pod.yaml", "kind: Pod\nspec:\n  containers: [\n")],
                source("p"),
                spec("nginx"),
                "p/pod.yaml:3: invalid YAML: unclosed bracket",
            ),
            (
                "path escaping the repository",
                vec![],
                source("../outside"),
                spec("nginx"),
                "apps/web.yaml: source path",
            ),
            (
                "kustomize resource escaping the repository",
                vec![("k/kustomization.yaml", "resources: [../../x]\n")],
                source("k"),
                spec("nginx"),
                "k/kustomization.yaml: resource",
            ),
        ];
        for (name, files, src, image, want) in cases {
            let err = find_current(&fileset(&files), &app(), &src, &image).expect_err(name);
            assert!(err.to_string().starts_with(want), "case {name}: {err}");
        }
        // An unrelated alias in the same file is no obstacle.
        let files = fileset(&[("p/pod.yaml", "kind: Pod\nx: &img redis:7\nspec:\n  containers:\n  - image: *img\n  - image: nginx:1.2\n")]);
        let got = find_current(&files, &app(), &source("p"), &spec("nginx")).unwrap().unwrap();
        assert_eq!(got.tag.as_deref(), Some("1.2"));
    }

    #[test]
    fn symlinks_inside_the_repository_are_read_and_outside_ones_refused() {
        let kustomization = "images:\n- name: nginx\n  newTag: 1.2.3\n";
        let mut files = fileset(&[("base/kustomization.yaml", kustomization), ("c/Chart.yaml", "name: c\n")]);
        files.insert_symlink("app/kustomization.yaml", "../base/kustomization.yaml");
        files.insert_symlink("linked", "base");
        files.insert_symlink("out/kustomization.yaml", "../../elsewhere/kustomization.yaml");
        files.insert_symlink("abs", "/srv/gitops/app");
        files.insert_symlink("c/values.yaml", "/etc/values.yaml");
        let read = |path: &str| find_current(&files, &app(), &source(path), &spec("nginx"));
        for (path, file) in [("app", "app/kustomization.yaml"), ("linked", "linked/kustomization.yaml")] {
            let got = read(path).unwrap_or_else(|e| panic!("{path}: {e}")).unwrap_or_else(|| panic!("{path}: not found"));
            assert_eq!((got.tag.as_deref(), got.file.as_str(), got.line), (Some("1.2.3"), file, 3), "{path}");
        }
        let cases = [
            ("out", "out/kustomization.yaml: out/kustomization.yaml is a symlink pointing outside the repository; not following it"),
            ("abs", "abs: abs is a symlink pointing outside the repository; not following it"),
            ("c", "c/values.yaml: c/values.yaml is a symlink pointing outside the repository; not following it"),
        ];
        for (path, want) in cases {
            let err = read(path).expect_err(path);
            assert_eq!(err.to_string(), want, "{path}");
        }
        // A link loop is refused, not followed forever.
        let mut files = fileset(&[]);
        files.insert_symlink("a", "b");
        files.insert_symlink("b", "a");
        assert!(files.escaping_symlink("a/kustomization.yaml").is_some());
    }
}
