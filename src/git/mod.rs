//! Git driver: clone or fetch a repository once per (URL, revision) and read its files at
//! that revision straight from the object database (no working tree).

use std::path::Path;

use crate::manifest::FileSet;

/// The files of one repository at one resolved commit.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub url: String,
    pub revision: String,
    pub commit: String,
    pub files: FileSet,
}

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("git repository {url}: {message}")]
    Repo { url: String, message: String },
    #[error("git repository {url}: revision {revision:?} not found")]
    Revision { url: String, revision: String },
}

/// Clones (or fetches into an existing clone under `cache_dir`) and reads every file that can
/// hold manifests (`*.yaml`, `*.yml`, `Kustomization`) at `revision` (branch, tag, commit, `HEAD`).
pub fn snapshot(url: &str, revision: &str, cache_dir: &Path) -> Result<Snapshot, GitError> {
    let _ = (url, revision, cache_dir);
    todo!()
}

/// Reads the same files from a plain directory.
pub fn read_dir(dir: &Path) -> Result<FileSet, GitError> {
    let _ = dir;
    todo!()
}
