//! Where an image's version lives, per manifest layout: the file names, keys and paths that
//! both the reader (`find_current`) and the editor (`edit`) follow, written once so that what
//! one reads the other writes. Which places a source has, and in which order they win, is
//! decided by the reader and the editor; the names they look for are here. Pure.
//!
//! The per-image names (`helm.image-*` keys with AIU's defaults, `kustomize.image-name`) and
//! `write-back-target` come from the annotations (`crate::annotations`).

use crate::files::FileSet;
use crate::yaml::{Node, Seg};

// ---- Kustomize ---------------------------------------------------------------------------

/// The names of a kustomization file, in the order kustomize looks for them.
pub const KUSTOMIZATION_FILES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// The keys of a kustomization that list what it renders: manifests and other kustomizations.
pub const KUSTOMIZATION_RESOURCES: [&str; 3] = ["resources", "bases", "components"];

/// The key of a kustomization's image overrides: entries `{name, newName, newTag, digest}`.
pub const KUSTOMIZATION_IMAGES: &str = "images";

/// The kustomization file of `dir` (`""`: the repository root), if it has one.
pub fn kustomization_file(files: &FileSet, dir: &str) -> Option<String> {
    KUSTOMIZATION_FILES.iter().map(|f| in_dir(dir, f)).find(|p| files.contains(p))
}

// ---- Helm --------------------------------------------------------------------------------

/// The file that makes a directory a Helm chart.
pub const CHART_FILE: &str = "Chart.yaml";

/// A chart's own values, which every values file the Application names overrides; also
/// where `write-back-target: helmvalues` without a file writes.
pub const CHART_VALUES: &str = "values.yaml";

/// Splits a Helm key (`helm.image-tag` and friends, a parameter name) at unescaped dots, with
/// `[n]` list indexes: `containers[0].image.tag`, `a\.b.c` (`a.b` is one key).
pub fn helm_key(key: &str) -> Vec<Seg> {
    let mut segs = Vec::new();
    let mut cur = String::new();
    let mut chars = key.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'.') => {
                cur.push('.');
                chars.next();
            }
            '.' => {
                if !cur.is_empty() {
                    segs.push(Seg::Key(std::mem::take(&mut cur)));
                }
            }
            '[' => {
                let digits: String = chars.by_ref().take_while(|&c| c != ']').collect();
                if !cur.is_empty() {
                    segs.push(Seg::Key(std::mem::take(&mut cur)));
                }
                match digits.trim().parse() {
                    Ok(i) => segs.push(Seg::Index(i)),
                    Err(_) => segs.push(Seg::Key(format!("[{digits}]"))),
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        segs.push(Seg::Key(cur));
    }
    segs
}

// ---- Source sections: the Application's `spec.source` (or `spec.sources[i]`), and AIU's
// ---- `.argocd-source` files, which hold the same keys --------------------------------------

/// `helm.parameters`: `[{name, value}]`, Helm's `--set`.
pub const HELM_PARAMETERS: [&str; 2] = ["helm", "parameters"];
/// `helm.valuesObject`: values as a mapping, laid over every values file.
pub const HELM_VALUES_OBJECT: [&str; 2] = ["helm", "valuesObject"];
/// `helm.values`: values as one text block, which is never edited.
pub const HELM_VALUES_TEXT: [&str; 2] = ["helm", "values"];
/// `kustomize.images`: `[old=]name[:tag][@digest]` overrides.
pub const KUSTOMIZE_IMAGES: [&str; 2] = ["kustomize", "images"];

/// AIU's override files in a source path, in the order the version is read from them:
/// Argo CD applies `.argocd-source.yaml`, then `.argocd-source-<app>.yaml`, so the app's own
/// file wins.
pub fn argocd_source_files(dir: &str, app: &str) -> [String; 2] {
    [in_dir(dir, &format!("{ARGOCD_SOURCE}-{app}.yaml")), in_dir(dir, &format!("{ARGOCD_SOURCE}.yaml"))]
}

/// Whether a file name is one of AIU's override files (for any Application), which are no
/// manifests.
pub fn is_argocd_source(file_name: &str) -> bool {
    file_name.starts_with(ARGOCD_SOURCE)
}

const ARGOCD_SOURCE: &str = ".argocd-source";

// ---- Plain manifests ---------------------------------------------------------------------

/// A kind whose pods Argo CD deploys, and where its pod spec is.
#[derive(Debug)]
pub struct Workload {
    pub kind: &'static str,
    /// The `apiVersion` prefix the kind needs, for a kind name that others use too.
    pub api: Option<&'static str>,
    /// Keys from the document root to the pod spec.
    pub pod_spec: &'static [&'static str],
}

const POD_TEMPLATE: &[&str] = &["spec", "template", "spec"];

/// The workload kinds whose containers hold image versions.
pub const WORKLOADS: [Workload; 9] = [
    Workload { kind: "Deployment", api: None, pod_spec: POD_TEMPLATE },
    Workload { kind: "StatefulSet", api: None, pod_spec: POD_TEMPLATE },
    Workload { kind: "DaemonSet", api: None, pod_spec: POD_TEMPLATE },
    Workload { kind: "Job", api: None, pod_spec: POD_TEMPLATE },
    Workload { kind: "CronJob", api: None, pod_spec: &["spec", "jobTemplate", "spec", "template", "spec"] },
    Workload { kind: "Pod", api: None, pod_spec: &["spec"] },
    Workload { kind: "ReplicaSet", api: None, pod_spec: POD_TEMPLATE },
    Workload { kind: "ReplicationController", api: None, pod_spec: POD_TEMPLATE },
    Workload { kind: "Rollout", api: Some("argoproj.io/"), pod_spec: POD_TEMPLATE },
];

/// The lists of a pod spec whose entries have an `image:`, in the order the version is read.
pub const CONTAINER_LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];

/// The workload a document's root is (by `kind` and `apiVersion`), if it is one.
pub fn workload(root: &Node) -> Option<&'static Workload> {
    let kind = root.get("kind").and_then(Node::as_str)?;
    let api = root.get("apiVersion").and_then(Node::as_str).unwrap_or("");
    WORKLOADS.iter().find(|w| w.kind == kind && w.api.is_none_or(|prefix| api.starts_with(prefix)))
}

/// Whether a file in a source path is read as manifests.
pub fn is_manifest(path: &str) -> bool {
    path.ends_with(".yaml") || path.ends_with(".yml")
}

/// `file` in the directory `dir` (`""`: the repository root).
pub fn in_dir(dir: &str, file: &str) -> String {
    if dir.is_empty() { file.to_string() } else { format!("{dir}/{file}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helm_keys_split() {
        let key = |k: &str| Seg::Key(k.into());
        let cases: Vec<(&str, Vec<Seg>)> = vec![
            ("containers[0].image.tag", vec![key("containers"), Seg::Index(0), key("image"), key("tag")]),
            ("images[1].tag", vec![key("images"), Seg::Index(1), key("tag")]),
            ("a[0][2]", vec![key("a"), Seg::Index(0), Seg::Index(2)]),
            (r"a\.b.c", vec![key("a.b"), key("c")]),
            ("", vec![]),
        ];
        for (k, want) in cases {
            assert_eq!(helm_key(k), want, "case {k:?}");
        }
    }

    #[test]
    fn workloads_by_kind_and_api() {
        let root = |text: &str| crate::yaml::parse(text).unwrap().documents[0].root.clone().unwrap();
        let cases = [
            ("kind: CronJob\napiVersion: batch/v1\n", Some("CronJob")),
            ("kind: Rollout\napiVersion: argoproj.io/v1alpha1\n", Some("Rollout")),
            ("kind: Rollout\napiVersion: example.com/v1\n", None),
            ("kind: Service\napiVersion: v1\n", None),
        ];
        for (text, want) in cases {
            assert_eq!(workload(&root(text)).map(|w| w.kind), want, "case {text:?}");
        }
    }
}
