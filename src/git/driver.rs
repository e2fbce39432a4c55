//! [`GitRepos`] on libgit2: bare clones kept under one cache directory for the life of the
//! process (the daemon fetches into them every cycle), every operation on a blocking thread and
//! bounded by `--git-timeout`.

use std::path::PathBuf;

use futures::future::BoxFuture;

use super::push::{self, CommitInfo, Identity, Lease, PushError, RemoteHeads};
use super::{GitError, Snapshot, bounded, snapshot_with};
use crate::ports::{GitRepos, PushTarget};

pub struct GitDriver {
    dir: PathBuf,
    /// The temporary directory `dir` is, when no `--cache-dir` was given (removed on drop).
    _temp: Option<tempfile::TempDir>,
}

impl GitDriver {
    /// Clones go under `cache_dir`, or under a fresh temporary directory when `None`.
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Self, String> {
        match cache_dir {
            Some(dir) => Ok(GitDriver { dir, _temp: None }),
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("argocd-image-pr-")
                    .tempdir()
                    .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
                Ok(GitDriver { dir: temp.path().to_path_buf(), _temp: Some(temp) })
            }
        }
    }
}

impl GitRepos for GitDriver {
    fn snapshots<'a>(
        &'a self,
        url: &'a str,
        revisions: &'a [String],
        auth: Option<&'a PushTarget>,
    ) -> BoxFuture<'a, Result<Vec<Result<Snapshot, GitError>>, GitError>> {
        // Clones of one URL share a directory in the cache: its revisions are read one after
        // another by one worker, under one deadline.
        let (dir, url_owned, revisions, auth) = (self.dir.clone(), url.to_string(), revisions.to_vec(), auth.cloned());
        Box::pin(async move {
            bounded(&format!("git repository {url}"), move || {
                Ok(revisions.iter().map(|rev| snapshot_with(&url_owned, rev, &dir, auth.as_ref())).collect())
            })
            .await
        })
    }

    fn remote_heads<'a>(
        &'a self,
        url: &'a str,
        prefix: &'a str,
        auth: Option<&'a PushTarget>,
    ) -> BoxFuture<'a, Result<RemoteHeads, GitError>> {
        let (url, prefix, auth) = (url.to_string(), prefix.to_string(), auth.cloned());
        Box::pin(bounded("git", move || push::remote_heads(&url, &prefix, auth.as_ref())))
    }

    fn branch_commits<'a>(
        &'a self,
        url: &'a str,
        head: &'a str,
        base: &'a str,
        auth: Option<&'a PushTarget>,
    ) -> BoxFuture<'a, Result<Vec<CommitInfo>, GitError>> {
        let (dir, url, head, base, auth) = (self.dir.clone(), url.to_string(), head.to_string(), base.to_string(), auth.cloned());
        Box::pin(bounded("git", move || push::branch_commits(&dir, &url, &head, &base, auth.as_ref())))
    }

    fn commit_tree_equals<'a>(
        &'a self,
        url: &'a str,
        head: &'a str,
        base: &'a str,
        changes: &'a [(String, Vec<u8>)],
    ) -> BoxFuture<'a, Result<bool, GitError>> {
        let (dir, url, head, base, changes) =
            (self.dir.clone(), url.to_string(), head.to_string(), base.to_string(), changes.to_vec());
        Box::pin(bounded("git", move || push::commit_tree_equals(&dir, &url, &head, &base, &changes)))
    }

    fn commit_on_base<'a>(
        &'a self,
        url: &'a str,
        base: &'a str,
        changes: &'a [(String, Vec<u8>)],
        message: &'a str,
        identity: &'a Identity,
    ) -> BoxFuture<'a, Result<String, GitError>> {
        let (dir, url, base, changes, message, identity) =
            (self.dir.clone(), url.to_string(), base.to_string(), changes.to_vec(), message.to_string(), identity.clone());
        Box::pin(bounded("git", move || push::commit_on_base(&dir, &url, &base, &changes, &message, &identity)))
    }

    fn push_branch<'a>(
        &'a self,
        url: &'a str,
        target: &'a PushTarget,
        branch: &'a str,
        commit: &'a str,
        lease: &'a Lease,
    ) -> BoxFuture<'a, Result<(), PushError>> {
        let (dir, url, target, branch, commit, lease) =
            (self.dir.clone(), url.to_string(), target.clone(), branch.to_string(), commit.to_string(), lease.clone());
        Box::pin(bounded("git", move || push::push_branch(&dir, &url, &target, &branch, &commit, &lease)))
    }
}
