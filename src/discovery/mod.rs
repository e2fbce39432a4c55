//! Argo CD Applications from a tree of YAML files: every document with
//! `apiVersion: argoproj.io/v1alpha1` and `kind: Application`. Everything else is ignored.

use std::collections::BTreeMap;

use crate::domain::AppId;
use crate::manifest::FileSet;

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
    pub has_helm: bool,
    pub kustomize_images: Vec<String>,
    pub has_kustomize: bool,
    pub directory_recurse: bool,
}

/// An Application as found in the apps tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    pub id: AppId,
    /// File that holds it, relative to the apps tree root.
    pub file: String,
    /// Index of the YAML document in that file (0-based).
    pub document: usize,
    pub annotations: BTreeMap<String, String>,
    pub sources: Vec<AppSource>,
}

/// A file that could not be read as YAML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {message}")]
pub struct FileError {
    pub file: String,
    pub message: String,
}

/// All Applications in `files` (any `.yaml`/`.yml`, multi-document files included), sorted by
/// namespace and name, plus the files that could not be parsed.
pub fn find_applications(files: &FileSet) -> (Vec<Application>, Vec<FileError>) {
    let _ = files;
    todo!()
}
