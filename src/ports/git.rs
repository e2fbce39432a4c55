//! The git port: reading a repository at a revision, and the write side the pull-request
//! lifecycle needs (ref listing, the bot's commit, a push with a lease). The libgit2 driver in
//! `crate::git` implements it; engine tests use an in-memory one.

use crate::error::{Error, ErrorKind};
use std::collections::BTreeMap;

use futures::future::BoxFuture;

use super::PushTarget;
use crate::files::FileSet;

/// Git repositories, by URL. Blocking work happens off the async threads, bounded by the git
/// deadline; clones are kept wherever the driver keeps them.
pub trait GitRepos: Send + Sync {
    /// The files of `url` at each of `revisions` (branch, tag, commit, `HEAD`), fetched once:
    /// the outer error is the repository not answering at all, the inner ones a revision each.
    fn snapshots<'a>(
        &'a self,
        url: &'a str,
        revisions: &'a [String],
        auth: Option<&'a PushTarget>,
    ) -> BoxFuture<'a, Result<Vec<Result<Snapshot, GitError>>, GitError>>;

    /// The remote's default branch and its branches under `prefix`, from one ref advertisement.
    fn remote_heads<'a>(
        &'a self,
        url: &'a str,
        prefix: &'a str,
        auth: Option<&'a PushTarget>,
    ) -> BoxFuture<'a, Result<RemoteHeads, GitError>>;

    /// The commits of `head` that `base` does not have, newest first.
    fn branch_commits<'a>(
        &'a self,
        url: &'a str,
        head: &'a str,
        base: &'a str,
        auth: Option<&'a PushTarget>,
    ) -> BoxFuture<'a, Result<Vec<CommitInfo>, GitError>>;

    /// Whether commit `head`'s tree is `base`'s tree with `changes` applied.
    fn commit_tree_equals<'a>(
        &'a self,
        url: &'a str,
        head: &'a str,
        base: &'a str,
        changes: &'a [(String, Vec<u8>)],
    ) -> BoxFuture<'a, Result<bool, GitError>>;

    /// Builds one commit with `changes` on top of `base` (no checkout); returns its id.
    fn commit_on_base<'a>(
        &'a self,
        url: &'a str,
        base: &'a str,
        changes: &'a [(String, Vec<u8>)],
        message: &'a str,
        identity: &'a Identity,
    ) -> BoxFuture<'a, Result<String, GitError>>;

    /// Points `branch` of the remote at `commit` if the branch is what `lease` says.
    fn push_branch<'a>(
        &'a self,
        url: &'a str,
        target: &'a PushTarget,
        branch: &'a str,
        commit: &'a str,
        lease: &'a Lease,
    ) -> BoxFuture<'a, Result<(), PushError>>;
}

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
    /// The server refused the credentials (or gave none the right): a person has to fix them.
    #[error("git repository {url}: {message}")]
    Denied { url: String, message: String },
    /// The server says the repository is not there.
    #[error("git repository {url}: {message}")]
    Missing { url: String, message: String },
    /// The operation did not finish within `--git-timeout`; its worker is left to its socket
    /// timeout.
    #[error("{what}: no result within {secs}s (--git-timeout)")]
    Timeout { what: String, secs: u64 },
    /// The worker thread died (a panic in git2).
    #[error("{what}: git worker failed: {message}")]
    Worker { what: String, message: String },
}


/// Who the bot's commits are by (author and committer alike).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub email: String,
}

/// What the remote branch must be before a push may replace it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease {
    /// The branch must not exist yet (a new pull request).
    MustNotExist,
    /// The branch must point at exactly this commit (the bot's last push).
    Expect(String),
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The remote branch is not what the lease says: someone else pushed (or deleted) it since
    /// the bot last looked. Nothing was written.
    #[error("branch {branch}: lease failed: expected {}, found {}", show_oid(.expected), show_oid(.found))]
    LeaseFailed { branch: String, expected: Option<String>, found: Option<String> },
    /// The server refused the update (protected branch, hook, ...).
    #[error("branch {branch}: push rejected: {reason}")]
    Rejected { branch: String, reason: String },
    #[error(transparent)]
    Git(#[from] GitError),
}

fn show_oid(oid: &Option<String>) -> String {
    oid.as_deref().map_or_else(|| "no branch".to_string(), str::to_string)
}

/// The branches of a remote that matter to the bot, from one ref advertisement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteHeads {
    /// The remote's default branch (its `HEAD` symref) and the commit it points to.
    pub default_branch: Option<(String, String)>,
    /// Branches (without `refs/heads/`) starting with the prefix, with their commit ids.
    pub branches: BTreeMap<String, String>,
}

/// One commit of a branch, as the engine needs it to tell the bot's commit from others'.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    pub sha: String,
    pub parents: Vec<String>,
    pub author_name: String,
    pub author_email: String,
    pub committer_email: String,
    pub summary: String,
}

impl From<GitError> for Error {
    fn from(e: GitError) -> Error {
        let kind = match &e {
            GitError::Revision { .. } | GitError::Missing { .. } => ErrorKind::NotFound,
            GitError::Denied { .. } => ErrorKind::Auth,
            // A dropped connection, a server error, a deadline: the next cycle may succeed.
            GitError::Repo { .. } | GitError::Timeout { .. } | GitError::Worker { .. } => ErrorKind::Network,
        };
        Error::new(kind, e.to_string())
    }
}

impl From<PushError> for Error {
    fn from(e: PushError) -> Error {
        match e {
            PushError::LeaseFailed { .. } => Error::new(ErrorKind::Conflict, e.to_string()),
            PushError::Rejected { .. } => Error::new(ErrorKind::Auth, e.to_string()),
            PushError::Git(g) => g.into(),
        }
    }
}
