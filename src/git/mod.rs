//! Git driver: clone or fetch a repository once per (URL, revision) and read its files at
//! that revision straight from the object database (no working tree).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use git2::{
    AutotagOption, Commit, Cred, CredentialType, FetchOptions, FetchPrune, ObjectType, Oid, RemoteCallbacks,
    Repository, TreeWalkMode, TreeWalkResult,
};
use sha2::{Digest, Sha256};

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
///
/// The clone is bare, in `cache_dir/<last URL segment>-<hash of the URL>.git`, and is fetched
/// again on every call, so a new commit on a branch is seen.
pub fn snapshot(url: &str, revision: &str, cache_dir: &Path) -> Result<Snapshot, GitError> {
    let repo_err = |message: String| GitError::Repo { url: url.to_string(), message };
    let remote_url = remote_url(url);
    let dir = cache_dir.join(cache_name(url));
    let repo = match Repository::open_bare(&dir) {
        Ok(repo) => repo,
        Err(_) => {
            std::fs::create_dir_all(cache_dir)
                .map_err(|e| repo_err(format!("cannot create cache directory {}: {e}", cache_dir.display())))?;
            Repository::init_bare(&dir)
                .map_err(|e| repo_err(format!("cannot create clone in {}: {}", dir.display(), e.message())))?
        }
    };
    let default_branch = fetch(&repo, &remote_url).map_err(|e| repo_err(format!("fetch failed: {}", e.message())))?;
    let commit = resolve(&repo, revision, default_branch.as_deref()).ok_or_else(|| GitError::Revision {
        url: url.to_string(),
        revision: revision.to_string(),
    })?;
    let files = read_tree(&repo, &commit)
        .map_err(|e| repo_err(format!("reading revision {revision:?}: {}", e.message())))?;
    Ok(Snapshot {
        url: url.to_string(),
        revision: revision.to_string(),
        commit: commit.id().to_string(),
        files,
    })
}

/// Reads the same files from a plain directory.
pub fn read_dir(dir: &Path) -> Result<FileSet, GitError> {
    let mut files = FileSet::default();
    let err = |e: std::io::Error, p: &Path| GitError::Repo {
        url: dir.display().to_string(),
        message: format!("{}: {e}", p.display()),
    };
    let mut pending = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, rel)) = pending.pop() {
        for entry in std::fs::read_dir(&path).map_err(|e| err(e, &path))? {
            let entry = entry.map_err(|e| err(e, &path))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let child_rel = if rel.is_empty() { name.to_string() } else { format!("{rel}/{name}") };
            let file_type = entry.file_type().map_err(|e| err(e, &entry.path()))?;
            if file_type.is_dir() {
                if name != ".git" {
                    pending.push((entry.path(), child_rel));
                }
            } else if wanted(name) {
                // Symlinked files are read through; symlinked directories are not followed.
                let is_file = file_type.is_file() || std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file());
                if is_file {
                    let content = std::fs::read(entry.path()).map_err(|e| err(e, &entry.path()))?;
                    files.insert(child_rel, content);
                }
            }
        }
    }
    Ok(files)
}

/// Whether a file name can hold manifests (this includes `.argocd-source-<app>.yaml`).
fn wanted(name: &str) -> bool {
    name.ends_with(".yaml") || name.ends_with(".yml") || name == "Kustomization"
}

/// A readable, collision-free directory name for a URL.
fn cache_name(url: &str) -> String {
    let hash = hex::encode(&Sha256::digest(url.as_bytes())[..10]);
    let last = url.trim_end_matches('/').trim_end_matches(".git").rsplit(['/', ':']).next().unwrap_or("");
    let last: String = last.chars().filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c)).take(40).collect();
    if last.is_empty() { format!("{hash}.git") } else { format!("{last}-{hash}.git") }
}

/// Plain local paths are made absolute, as the clone lives elsewhere.
fn remote_url(url: &str) -> String {
    let looks_remote = url.contains("://") || (url.contains('@') && url.contains(':'));
    if !looks_remote && let Ok(abs) = std::fs::canonicalize(url) {
        return abs.display().to_string();
    }
    url.to_string()
}

/// Fetches all branches and tags; returns the remote's default branch (`refs/heads/main`).
fn fetch(repo: &Repository, url: &str) -> Result<Option<String>, git2::Error> {
    let mut remote = repo.remote_anonymous(url)?;
    let mut callbacks = RemoteCallbacks::new();
    let mut attempts = 0;
    callbacks.credentials(move |_url, username, allowed| {
        // libgit2 asks again after a rejected credential; one try per kind is enough.
        attempts += 1;
        if attempts > 1 {
            return Err(git2::Error::from_str("authentication failed"));
        }
        if allowed.contains(CredentialType::SSH_KEY) {
            return Cred::ssh_key_from_agent(username.unwrap_or("git"));
        }
        if allowed.contains(CredentialType::DEFAULT) {
            return Cred::default();
        }
        Err(git2::Error::from_str("no credentials configured for this repository"))
    });
    let mut options = FetchOptions::new();
    options.remote_callbacks(callbacks).download_tags(AutotagOption::All).prune(FetchPrune::On);
    remote.fetch(
        &["+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"],
        Some(&mut options),
        None,
    )?;
    let default = remote.default_branch().ok().and_then(|b| b.as_str().ok().map(str::to_string));
    Ok(default)
}

/// Branch, tag, `HEAD`, a full ref name, or a full or abbreviated commit id.
fn resolve<'r>(repo: &'r Repository, revision: &str, default_branch: Option<&str>) -> Option<Commit<'r>> {
    let rev = revision.trim();
    let peel = |name: &str| repo.find_reference(name).ok()?.peel_to_commit().ok();
    if rev.is_empty() || rev == "HEAD" {
        let branch = default_branch?.strip_prefix("refs/heads/")?;
        return peel(&format!("refs/remotes/origin/{branch}"));
    }
    let by_ref = if let Some(branch) = rev.strip_prefix("refs/heads/") {
        peel(&format!("refs/remotes/origin/{branch}"))
    } else if rev.starts_with("refs/tags/") {
        peel(rev)
    } else {
        peel(&format!("refs/remotes/origin/{rev}")).or_else(|| peel(&format!("refs/tags/{rev}")))
    };
    if by_ref.is_some() {
        return by_ref;
    }
    let is_hex = rev.len() >= 4 && rev.len() <= 40 && rev.chars().all(|c| c.is_ascii_hexdigit());
    if !is_hex {
        return None;
    }
    let object = repo.revparse_single(rev).ok()?;
    object.peel_to_commit().ok()
}

/// Every manifest-like blob of the commit's tree; identical blobs share one buffer.
fn read_tree(repo: &Repository, commit: &Commit<'_>) -> Result<FileSet, git2::Error> {
    let tree = commit.tree()?;
    let mut wanted_blobs: Vec<(String, Oid)> = Vec::new();
    tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
        if entry.kind() == Some(ObjectType::Blob)
            && let Ok(name) = entry.name()
            && wanted(name)
        {
            wanted_blobs.push((format!("{dir}{name}"), entry.id()));
        }
        TreeWalkResult::Ok
    })?;
    let mut files = FileSet::default();
    let mut seen: HashMap<Oid, Arc<[u8]>> = HashMap::new();
    for (path, oid) in wanted_blobs {
        let content = match seen.get(&oid) {
            Some(c) => c.clone(),
            None => {
                let c: Arc<[u8]> = Arc::from(repo.find_blob(oid)?.content());
                seen.insert(oid, c.clone());
                c
            }
        };
        files.insert(path, content);
    }
    Ok(files)
}
