//! The `local` forge: pull requests without a server, for the demo and air-gapped previews.
//!
//! Branches are pushed to the source repository itself (the push target is the Application's
//! `repoURL`, a local path or `file://` URL, no credentials). Pull requests are JSON files:
//!
//! ```text
//! <state-dir>/
//!   permissions.json              optional: {"alice": "read", "*": "write"} (default: write for everyone)
//!                                 levels as GitHub names them; triage is read
//!   <repo-key>/                   repo slug made filesystem-safe + a short hash, e.g. srv-git-gitops-1a2b3c4d
//!     next.json                   counters: {"pull": 3, "comment": 7}
//!     pulls/<number>.json         one pull request (see [`LocalPullRequest`])
//!     .lock                       flock(2) lock taken by every writer
//! ```
//!
//! Every write goes to a temporary file renamed into place, so a crash never leaves half-written
//! JSON; writers of one repository are serialised with `flock`, across threads and processes.
//! A PR's `head_sha` is read from the branch in the repository; `merge`, `close`, `reopen`,
//! `comment` and `revert` act on local pull requests the way a person would on GitHub (the CLI
//! exposes them as `argocd-image-pr local ...`).

use std::fmt;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use git2::{Oid, Repository, Signature};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ports::{
    AccessLevel, Comment, Forge, ForgeError, ForgeErrorKind, MergeMethod, NewPullRequest, PrState, PrUpdate, PullRequest,
    PushTarget, Reaction, RepoRef, Reviewer,
};

const KIND: &str = "local";

/// A pull request as stored in `pulls/<number>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalPullRequest {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub head: String,
    /// Last commit of the head branch seen (kept for when the branch is deleted).
    #[serde(default)]
    pub head_sha: String,
    pub base: String,
    pub state: PrState,
    #[serde(default)]
    pub draft: bool,
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub reviewers: Vec<String>,
    #[serde(default)]
    pub teams: Vec<String>,
    #[serde(default)]
    pub assignees: Vec<String>,
    /// Merge method when auto-merge is on.
    #[serde(default)]
    pub auto_merge: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default)]
    pub closed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub merged_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub merge_commit_sha: Option<String>,
    #[serde(default)]
    pub comments: Vec<LocalComment>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalComment {
    /// Unique within the repository, as on GitHub.
    pub id: u64,
    pub author: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub reactions: Vec<LocalReaction>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalReaction {
    pub user: String,
    /// GitHub's names: `+1`, `confused`.
    pub content: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Counters {
    pull: u64,
    comment: u64,
}

/// A pull request with its conversation and changes, for `argocd-image-pr local show`.
#[derive(Debug, Clone)]
pub struct LocalPrView {
    pub pr: PullRequest,
    pub comments: Vec<Comment>,
    /// Unified diff of the branch against its base (the merge base), or of the merge commit
    /// once the branch is gone.
    pub diff: String,
}

impl fmt::Display for LocalPrView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pr = &self.pr;
        let state = match pr.state {
            PrState::Open if pr.draft => "draft",
            PrState::Open => "open",
            PrState::Closed => "closed",
            PrState::Merged => "merged",
        };
        writeln!(f, "#{} {} [{state}]", pr.number, pr.title)?;
        writeln!(f, "{} -> {} ({})", pr.head, pr.base, short(&pr.head_sha))?;
        if let Some(sha) = &pr.merge_commit_sha {
            writeln!(f, "merge commit: {sha}")?;
        }
        for (name, list) in [("labels", &pr.labels), ("reviewers", &pr.requested_reviewers), ("assignees", &pr.assignees)] {
            if !list.is_empty() {
                writeln!(f, "{name}: {}", list.join(", "))?;
            }
        }
        writeln!(f, "\n{}\n", pr.body.trim_end())?;
        for c in &self.comments {
            writeln!(f, "--- comment {} by {} at {}\n{}\n", c.id, c.author, c.created_at.to_rfc3339(), c.body.trim_end())?;
        }
        write!(f, "{}", self.diff)
    }
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// Pull requests as JSON files next to a local git repository. See the module documentation.
#[derive(Debug, Clone)]
pub struct LocalForge {
    state_dir: PathBuf,
    /// Who the bot's comments and reactions are by.
    user: String,
}

impl LocalForge {
    pub fn new(state_dir: impl Into<PathBuf>, user: impl Into<String>) -> Self {
        LocalForge { state_dir: state_dir.into(), user: user.into() }
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Where the pull requests of `repo` live: `<state-dir>/<repo-key>`.
    pub fn repo_dir(&self, repo: &RepoRef) -> PathBuf {
        self.state_dir.join(repo_key(repo))
    }

    /// Every pull request of the repository, newest first.
    pub fn list(&self, repo: &RepoRef) -> Result<Vec<PullRequest>, ForgeError> {
        let git = self.open(repo)?;
        let mut records = self.records(repo)?;
        records.sort_by_key(|r| std::cmp::Reverse(r.number));
        Ok(records.iter().map(|r| self.to_pr(repo, &git, r)).collect())
    }

    /// One pull request with its comments and its diff.
    pub fn show(&self, repo: &RepoRef, number: u64) -> Result<LocalPrView, ForgeError> {
        let git = self.open(repo)?;
        let record = self.load(repo, number)?;
        let diff = self.diff(repo, &git, &record)?;
        Ok(LocalPrView { pr: self.to_pr(repo, &git, &record), comments: self.comments(repo, &record), diff })
    }

    /// Merges an open pull request the way GitHub's merge button does: a merge commit on the
    /// base branch (with the base and the head as parents), then the PR is `merged`.
    pub fn merge(&self, repo: &RepoRef, number: u64) -> Result<PullRequest, ForgeError> {
        self.write(repo, |git| {
            let mut record = self.load(repo, number)?;
            if record.state != PrState::Open {
                return Err(self.error(repo, ForgeErrorKind::Conflict, format!("pull request #{number} is not open")));
            }
            let head = self.branch_commit(repo, git, &record.head)?;
            let base = self.branch_commit(repo, git, &record.base)?;
            let g = |e: git2::Error| self.git_error(repo, e);
            let mut index = git.merge_commits(&base, &head, None).map_err(g)?;
            if index.has_conflicts() {
                return Err(self.error(
                    repo,
                    ForgeErrorKind::Conflict,
                    format!("pull request #{number} conflicts with {}: {}", record.base, conflict_paths(&index)),
                ));
            }
            let tree = git.find_tree(index.write_tree_to(git).map_err(g)?).map_err(g)?;
            let sig = signature(git);
            let message = format!("Merge pull request #{number} from {}\n\n{}", record.head, record.title);
            let merge = git.commit(None, &sig, &sig, &message, &tree, &[&base, &head]).map_err(g)?;
            self.advance_branch(repo, git, &record.base, base.id(), merge)?;
            let now = Utc::now();
            record.state = PrState::Merged;
            record.head_sha = head.id().to_string();
            record.merge_commit_sha = Some(merge.to_string());
            record.merged_at = Some(now);
            record.closed_at = Some(now);
            record.updated_at = now;
            self.save(repo, &record)?;
            Ok(self.to_pr(repo, git, &record))
        })
    }

    /// Reverts a merged pull request directly on its base branch (GitHub's Revert button, minus
    /// the pull request): one commit undoing the merge. Returns the revert commit.
    pub fn revert(&self, repo: &RepoRef, number: u64) -> Result<String, ForgeError> {
        self.write(repo, |git| {
            let record = self.load(repo, number)?;
            let Some(merged) = record.merge_commit_sha.as_deref().filter(|_| record.state == PrState::Merged) else {
                return Err(self.error(repo, ForgeErrorKind::Conflict, format!("pull request #{number} is not merged")));
            };
            let g = |e: git2::Error| self.git_error(repo, e);
            let merged = git.find_commit(Oid::from_str(merged).map_err(g)?).map_err(g)?;
            let base = self.branch_commit(repo, git, &record.base)?;
            let mainline = if merged.parent_count() > 1 { 1 } else { 0 };
            let mut index = git.revert_commit(&merged, &base, mainline, None).map_err(g)?;
            if index.has_conflicts() {
                return Err(self.error(
                    repo,
                    ForgeErrorKind::Conflict,
                    format!("reverting #{number} conflicts with {}: {}", record.base, conflict_paths(&index)),
                ));
            }
            let tree = git.find_tree(index.write_tree_to(git).map_err(g)?).map_err(g)?;
            let sig = signature(git);
            let message = format!(
                "Revert \"{}\"\n\nThis reverts commit {}, pull request #{number}.",
                record.title,
                merged.id()
            );
            let revert = git.commit(None, &sig, &sig, &message, &tree, &[&base]).map_err(g)?;
            self.advance_branch(repo, git, &record.base, base.id(), revert)?;
            Ok(revert.to_string())
        })
    }

    pub fn close(&self, repo: &RepoRef, number: u64) -> Result<PullRequest, ForgeError> {
        self.update(repo, number, &PrUpdate { state: Some(PrState::Closed), ..PrUpdate::default() })
    }

    pub fn reopen(&self, repo: &RepoRef, number: u64) -> Result<PullRequest, ForgeError> {
        self.update(repo, number, &PrUpdate { state: Some(PrState::Open), ..PrUpdate::default() })
    }

    /// Adds a comment by `author` (a person, for trying comment commands).
    pub fn comment(&self, repo: &RepoRef, number: u64, author: &str, body: &str) -> Result<Comment, ForgeError> {
        self.write(repo, |_| {
            let mut record = self.load(repo, number)?;
            let mut counters = self.counters(repo)?;
            counters.comment += 1;
            let now = Utc::now();
            let comment =
                LocalComment { id: counters.comment, author: author.to_string(), body: body.to_string(), created_at: now, reactions: vec![] };
            record.comments.push(comment.clone());
            record.updated_at = now;
            // Counter first: a crash in between skips an id, never reuses one.
            self.save_counters(repo, &counters)?;
            self.save(repo, &record)?;
            Ok(self.to_comment(repo, &record, &comment))
        })
    }

    fn update(&self, repo: &RepoRef, number: u64, update: &PrUpdate) -> Result<PullRequest, ForgeError> {
        self.write(repo, |git| {
            let mut record = self.load(repo, number)?;
            let before = record.clone();
            if let Some(title) = &update.title {
                record.title = title.clone();
            }
            if let Some(body) = &update.body {
                record.body = body.clone();
            }
            match (update.state, record.state) {
                (None, _) | (Some(PrState::Open), PrState::Open) | (Some(PrState::Closed), PrState::Closed) => {}
                (Some(PrState::Merged), _) => {
                    return Err(self.error(repo, ForgeErrorKind::Protocol, "a pull request is merged with merge, not by update".into()));
                }
                (Some(_), PrState::Merged) => {
                    return Err(self.error(repo, ForgeErrorKind::Conflict, format!("pull request #{number} is already merged")));
                }
                (Some(PrState::Closed), PrState::Open) => {
                    record.state = PrState::Closed;
                    record.closed_at = Some(Utc::now());
                }
                (Some(PrState::Open), PrState::Closed) => {
                    // As on GitHub: a pull request whose branch is gone cannot be reopened.
                    self.branch_commit(repo, git, &record.head)?;
                    if let Some(open) = self.records(repo)?.iter().find(|r| {
                        r.state == PrState::Open && r.head == record.head && r.base == record.base && r.number != number
                    }) {
                        return Err(self.error(
                            repo,
                            ForgeErrorKind::Conflict,
                            format!("pull request #{} is already open for {}", open.number, record.head),
                        ));
                    }
                    record.state = PrState::Open;
                    record.closed_at = None;
                }
            }
            if record != before {
                record.updated_at = Utc::now();
                self.save(repo, &record)?;
            }
            Ok(self.to_pr(repo, git, &record))
        })
    }

    /// Runs `f` holding the repository's lock.
    fn write<T>(&self, repo: &RepoRef, f: impl FnOnce(&Repository) -> Result<T, ForgeError>) -> Result<T, ForgeError> {
        let git = self.open(repo)?;
        let dir = self.repo_dir(repo);
        let io = |e: std::io::Error, what: &Path| self.error(repo, ForgeErrorKind::Protocol, format!("{}: {e}", what.display()));
        std::fs::create_dir_all(dir.join("pulls")).map_err(|e| io(e, &dir))?;
        let lock_path = dir.join(".lock");
        let lock = File::options().create(true).truncate(false).write(true).open(&lock_path).map_err(|e| io(e, &lock_path))?;
        // An advisory exclusive lock (flock(2) on Linux), released when `lock` is closed.
        lock.lock().map_err(|e| io(e, &lock_path))?;
        let result = f(&git);
        drop(lock);
        result
    }

    fn open(&self, repo: &RepoRef) -> Result<Repository, ForgeError> {
        let path = repo_path(repo);
        Repository::open(&path).map_err(|e| {
            self.error(repo, ForgeErrorKind::NotFound, format!("no git repository at {}: {}", path.display(), e.message()))
        })
    }

    fn pull_path(&self, repo: &RepoRef, number: u64) -> PathBuf {
        self.repo_dir(repo).join("pulls").join(format!("{number}.json"))
    }

    fn load(&self, repo: &RepoRef, number: u64) -> Result<LocalPullRequest, ForgeError> {
        let path = self.pull_path(repo, number);
        match std::fs::read(&path) {
            Ok(bytes) => self.parse(repo, &path, &bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(self.error(repo, ForgeErrorKind::NotFound, format!("no pull request #{number} ({})", path.display())))
            }
            Err(e) => Err(self.error(repo, ForgeErrorKind::Protocol, format!("{}: {e}", path.display()))),
        }
    }

    fn parse(&self, repo: &RepoRef, path: &Path, bytes: &[u8]) -> Result<LocalPullRequest, ForgeError> {
        serde_json::from_slice(bytes)
            .map_err(|e| self.error(repo, ForgeErrorKind::Protocol, format!("corrupt pull request file {}: {e}", path.display())))
    }

    fn records(&self, repo: &RepoRef) -> Result<Vec<LocalPullRequest>, ForgeError> {
        let dir = self.repo_dir(repo).join("pulls");
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(self.error(repo, ForgeErrorKind::Protocol, format!("{}: {e}", dir.display()))),
        };
        let mut out = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| self.error(repo, ForgeErrorKind::Protocol, format!("{}: {e}", dir.display())))?.path();
            let is_pull = path.extension().is_some_and(|x| x == "json")
                && path.file_stem().and_then(|s| s.to_str()).is_some_and(|s| s.parse::<u64>().is_ok());
            if !is_pull {
                continue; // temporary files of an interrupted write, or anything else
            }
            let bytes = std::fs::read(&path)
                .map_err(|e| self.error(repo, ForgeErrorKind::Protocol, format!("{}: {e}", path.display())))?;
            out.push(self.parse(repo, &path, &bytes)?);
        }
        Ok(out)
    }

    fn save(&self, repo: &RepoRef, record: &LocalPullRequest) -> Result<(), ForgeError> {
        let json = serde_json::to_vec_pretty(record).expect("pull request serialises");
        self.write_atomic(repo, &self.pull_path(repo, record.number), &json, false)
    }

    /// Writes through a temporary file renamed into place; `exclusive` fails if `path` exists.
    fn write_atomic(&self, repo: &RepoRef, path: &Path, bytes: &[u8], exclusive: bool) -> Result<(), ForgeError> {
        let io = |e: std::io::Error| self.error(repo, ForgeErrorKind::Protocol, format!("writing {}: {e}", path.display()));
        let dir = path.parent().expect("file in a directory");
        let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir).map_err(io)?;
        tmp.write_all(bytes).map_err(io)?;
        tmp.write_all(b"\n").map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        if exclusive {
            tmp.persist_noclobber(path).map_err(|e| io(e.error))?;
        } else {
            tmp.persist(path).map_err(|e| io(e.error))?;
        }
        Ok(())
    }

    fn counters(&self, repo: &RepoRef) -> Result<Counters, ForgeError> {
        let path = self.repo_dir(repo).join("next.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| self.error(repo, ForgeErrorKind::Protocol, format!("corrupt counter file {}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // First use, or the file was lost: continue after what exists.
                let records = self.records(repo)?;
                Ok(Counters {
                    pull: records.iter().map(|r| r.number).max().unwrap_or(0),
                    comment: records.iter().flat_map(|r| r.comments.iter().map(|c| c.id)).max().unwrap_or(0),
                })
            }
            Err(e) => Err(self.error(repo, ForgeErrorKind::Protocol, format!("{}: {e}", path.display()))),
        }
    }

    fn save_counters(&self, repo: &RepoRef, counters: &Counters) -> Result<(), ForgeError> {
        let json = serde_json::to_vec(counters).expect("counters serialise");
        self.write_atomic(repo, &self.repo_dir(repo).join("next.json"), &json, false)
    }

    fn branch_commit<'r>(&self, repo: &RepoRef, git: &'r Repository, branch: &str) -> Result<git2::Commit<'r>, ForgeError> {
        git.find_reference(&format!("refs/heads/{branch}"))
            .and_then(|r| r.peel_to_commit())
            .map_err(|_| self.error(repo, ForgeErrorKind::NotFound, format!("no branch {branch:?}")))
    }

    /// Moves `branch` from `old` to `new` (compare-and-swap); when the branch is checked out in
    /// a working tree, that tree must be clean and is updated to match.
    fn advance_branch(&self, repo: &RepoRef, git: &Repository, branch: &str, old: Oid, new: Oid) -> Result<(), ForgeError> {
        let refname = format!("refs/heads/{branch}");
        let checked_out = !git.is_bare() && git.head().ok().and_then(|h| h.name().ok().map(str::to_string)).as_deref() == Some(&refname);
        if checked_out {
            let mut options = git2::StatusOptions::new();
            options.include_untracked(false).include_ignored(false);
            let dirty = git.statuses(Some(&mut options)).map_err(|e| self.git_error(repo, e))?.len();
            if dirty > 0 {
                return Err(self.error(
                    repo,
                    ForgeErrorKind::Conflict,
                    format!("{branch} is checked out with {dirty} uncommitted change(s); commit or stash them first"),
                ));
            }
        }
        git.reference_matching(&refname, new, true, old, "argocd-image-pr local")
            .map_err(|e| self.error(repo, ForgeErrorKind::Conflict, format!("{branch} moved meanwhile: {}", e.message())))?;
        if checked_out {
            git.checkout_head(Some(git2::build::CheckoutBuilder::new().force())).map_err(|e| self.git_error(repo, e))?;
        }
        Ok(())
    }

    fn diff(&self, repo: &RepoRef, git: &Repository, record: &LocalPullRequest) -> Result<String, ForgeError> {
        let g = |e: git2::Error| self.git_error(repo, e);
        let head = git.find_reference(&format!("refs/heads/{}", record.head)).and_then(|r| r.peel_to_commit()).ok();
        let base = git.find_reference(&format!("refs/heads/{}", record.base)).and_then(|r| r.peel_to_commit()).ok();
        let merged = record.merge_commit_sha.as_deref().and_then(|s| Oid::from_str(s).ok()).and_then(|o| git.find_commit(o).ok());
        let (old, new) = match (record.state, merged, head, base) {
            (PrState::Merged, Some(m), _, _) => (m.parent(0).ok(), m),
            (_, _, Some(h), Some(b)) => {
                let mb = git.merge_base(h.id(), b.id()).map_err(g)?;
                (Some(git.find_commit(mb).map_err(g)?), h)
            }
            _ => return Ok(format!("(branch {} is gone: no diff)\n", record.head)),
        };
        let old_tree = old.map(|c| c.tree()).transpose().map_err(g)?;
        let diff = git.diff_tree_to_tree(old_tree.as_ref(), Some(&new.tree().map_err(g)?), None).map_err(g)?;
        let mut out = String::new();
        diff.print(git2::DiffFormat::Patch, |_, _, line| {
            if matches!(line.origin(), '+' | '-' | ' ') {
                out.push(line.origin());
            }
            out.push_str(&String::from_utf8_lossy(line.content()));
            true
        })
        .map_err(g)?;
        Ok(out)
    }

    fn to_pr(&self, repo: &RepoRef, git: &Repository, r: &LocalPullRequest) -> PullRequest {
        let live = git.find_reference(&format!("refs/heads/{}", r.head)).ok().and_then(|x| x.target());
        PullRequest {
            number: r.number,
            author: self.user.clone(),
            url: format!("local://{}/pulls/{}", repo_key(repo), r.number),
            title: r.title.clone(),
            body: r.body.clone(),
            head: r.head.clone(),
            head_sha: live.map_or_else(|| r.head_sha.clone(), |o| o.to_string()),
            base: r.base.clone(),
            state: r.state,
            draft: r.draft,
            labels: r.labels.clone(),
            requested_reviewers: r.reviewers.clone(),
            requested_teams: r.teams.clone(),
            assignees: r.assignees.clone(),
            auto_merge: r.auto_merge.is_some(),
            merge_commit_sha: r.merge_commit_sha.clone(),
            updated_at: Some(r.updated_at),
            closed_at: r.closed_at,
        }
    }

    fn comments(&self, repo: &RepoRef, r: &LocalPullRequest) -> Vec<Comment> {
        r.comments.iter().map(|c| self.to_comment(repo, r, c)).collect()
    }

    fn to_comment(&self, repo: &RepoRef, r: &LocalPullRequest, c: &LocalComment) -> Comment {
        Comment {
            id: c.id,
            pr: r.number,
            author: c.author.clone(),
            body: c.body.clone(),
            created_at: c.created_at,
            url: format!("local://{}/pulls/{}#comment-{}", repo_key(repo), r.number, c.id),
        }
    }

    /// Applies `f` to pull request `number` under the lock and saves it if it changed.
    fn modify(
        &self,
        repo: &RepoRef,
        number: u64,
        f: impl FnOnce(&mut LocalPullRequest) -> Result<(), ForgeError>,
    ) -> Result<(), ForgeError> {
        self.write(repo, |_| {
            let mut record = self.load(repo, number)?;
            let before = record.clone();
            f(&mut record)?;
            if record != before {
                record.updated_at = Utc::now();
                self.save(repo, &record)?;
            }
            Ok(())
        })
    }

    fn error(&self, repo: &RepoRef, kind: ForgeErrorKind, message: String) -> ForgeError {
        ForgeError { forge: KIND, repo: repo.to_string(), kind, message }
    }

    fn git_error(&self, repo: &RepoRef, e: git2::Error) -> ForgeError {
        self.error(repo, ForgeErrorKind::Protocol, format!("git: {}", e.message()))
    }
}

/// A readable, filesystem-safe name for a repository: its slug's characters that are safe,
/// others as `-`, plus a short hash of the slug so that different slugs never collide.
pub fn repo_key(repo: &RepoRef) -> String {
    let hash = hex::encode(&Sha256::digest(repo.to_string().as_bytes())[..4]);
    let mut readable: String =
        repo.to_string().chars().map(|c| if c.is_ascii_alphanumeric() || "._".contains(c) { c } else { '-' }).collect();
    readable = readable.trim_matches(|c| c == '-' || c == '.').to_string();
    if readable.len() > 60 {
        readable = readable[readable.len() - 60..].trim_start_matches(['-', '.']).to_string();
    }
    if readable.is_empty() { hash } else { format!("{readable}-{hash}") }
}

fn repo_path(repo: &RepoRef) -> PathBuf {
    PathBuf::from(repo.url.trim().strip_prefix("file://").unwrap_or(repo.url.trim()))
}

/// The repository's configured identity, or a fixed one when git has none.
fn signature(git: &Repository) -> Signature<'static> {
    git.signature()
        .map(|s| s.to_owned())
        .or_else(|_| Signature::now("argocd-image-pr local forge", "local-forge@argocd-image-pr.invalid"))
        .expect("a fixed signature is valid")
}

fn conflict_paths(index: &git2::Index) -> String {
    let mut paths: Vec<String> = index
        .conflicts()
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|c| c.our.or(c.their).or(c.ancestor))
        .map(|e| String::from_utf8_lossy(&e.path).into_owned())
        .collect();
    paths.dedup();
    paths.join(", ")
}

/// A level of `permissions.json`, named as on GitHub (`triage` is read there too).
fn parse_access_level(s: &str) -> Option<AccessLevel> {
    Some(match s.to_ascii_lowercase().as_str() {
        "none" => AccessLevel::None,
        "read" | "pull" | "triage" => AccessLevel::Read,
        "write" | "push" => AccessLevel::Write,
        "maintain" => AccessLevel::Maintain,
        "admin" => AccessLevel::Admin,
        _ => return None,
    })
}

/// How a reaction is stored: GitHub's names, which the file format has always used.
fn reaction_name(reaction: Reaction) -> &'static str {
    match reaction {
        Reaction::ThumbsUp => "+1",
        Reaction::Confused => "confused",
    }
}

fn add_missing(list: &mut Vec<String>, items: &[String]) {
    for item in items {
        if !list.contains(item) {
            list.push(item.clone());
        }
    }
}

impl Forge for LocalForge {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn push_target(&self, repo: &RepoRef) -> PushTarget {
        PushTarget { url: repo.url.clone(), username: None, password: None }
    }

    async fn default_branch(&self, repo: &RepoRef) -> Result<String, ForgeError> {
        let git = self.open(repo)?;
        let head = git.find_reference("HEAD").map_err(|e| self.git_error(repo, e))?;
        head.symbolic_target()
            .ok()
            .flatten()
            .and_then(|t| t.strip_prefix("refs/heads/"))
            .map(str::to_string)
            .ok_or_else(|| self.error(repo, ForgeErrorKind::Protocol, "HEAD does not name a branch".into()))
    }

    async fn list_pull_requests(&self, repo: &RepoRef, head_prefix: &str) -> Result<Vec<PullRequest>, ForgeError> {
        Ok(self.list(repo)?.into_iter().filter(|pr| pr.head.starts_with(head_prefix)).collect())
    }

    async fn create_pull_request(&self, repo: &RepoRef, new: &NewPullRequest) -> Result<PullRequest, ForgeError> {
        self.write(repo, |git| {
            let head = self.branch_commit(repo, git, &new.head)?;
            self.branch_commit(repo, git, &new.base)?;
            if let Some(open) =
                self.records(repo)?.iter().find(|r| r.state == PrState::Open && r.head == new.head && r.base == new.base)
            {
                return Err(self.error(
                    repo,
                    ForgeErrorKind::Conflict,
                    format!("a pull request already exists for {}: #{}", new.head, open.number),
                ));
            }
            let mut counters = self.counters(repo)?;
            let now = Utc::now();
            let mut record = LocalPullRequest {
                number: 0,
                title: new.title.clone(),
                body: new.body.clone(),
                head: new.head.clone(),
                head_sha: head.id().to_string(),
                base: new.base.clone(),
                state: PrState::Open,
                draft: new.draft,
                labels: vec![],
                reviewers: vec![],
                teams: vec![],
                assignees: vec![],
                auto_merge: None,
                created_at: now,
                updated_at: now,
                closed_at: None,
                merged_at: None,
                merge_commit_sha: None,
                comments: vec![],
            };
            // Claim the number by creating its file; a stale counter (crash after the file was
            // written) just moves on to the next free number.
            loop {
                counters.pull += 1;
                record.number = counters.pull;
                let json = serde_json::to_vec_pretty(&record).expect("pull request serialises");
                match self.write_atomic(repo, &self.pull_path(repo, record.number), &json, true) {
                    Ok(()) => break,
                    Err(_) if self.pull_path(repo, record.number).exists() => continue,
                    Err(e) => return Err(e),
                }
            }
            self.save_counters(repo, &counters)?;
            Ok(self.to_pr(repo, git, &record))
        })
    }

    async fn update_pull_request(&self, repo: &RepoRef, number: u64, update: &PrUpdate) -> Result<PullRequest, ForgeError> {
        self.update(repo, number, update)
    }

    async fn list_comments(&self, repo: &RepoRef, number: u64) -> Result<Vec<Comment>, ForgeError> {
        let record = self.load(repo, number)?;
        Ok(self.comments(repo, &record))
    }

    async fn list_repo_comments(&self, repo: &RepoRef, since: Option<DateTime<Utc>>) -> Result<Vec<Comment>, ForgeError> {
        let mut out: Vec<Comment> = Vec::new();
        for record in self.records(repo)? {
            out.extend(self.comments(repo, &record).into_iter().filter(|c| since.is_none_or(|s| c.created_at >= s)));
        }
        out.sort_by_key(|c| c.id);
        Ok(out)
    }

    async fn create_comment(&self, repo: &RepoRef, number: u64, body: &str) -> Result<Comment, ForgeError> {
        self.comment(repo, number, &self.user, body)
    }

    async fn add_labels(&self, repo: &RepoRef, number: u64, labels: &[String]) -> Result<(), ForgeError> {
        self.modify(repo, number, |r| {
            add_missing(&mut r.labels, labels);
            Ok(())
        })
    }

    async fn request_reviewers(&self, repo: &RepoRef, number: u64, reviewers: &[Reviewer]) -> Result<(), ForgeError> {
        self.modify(repo, number, |r| {
            for reviewer in reviewers {
                match reviewer {
                    Reviewer::User(login) => add_missing(&mut r.reviewers, std::slice::from_ref(login)),
                    Reviewer::Team(team) => add_missing(&mut r.teams, std::slice::from_ref(team)),
                }
            }
            Ok(())
        })
    }

    async fn add_assignees(&self, repo: &RepoRef, number: u64, users: &[String]) -> Result<(), ForgeError> {
        self.modify(repo, number, |r| {
            add_missing(&mut r.assignees, users);
            Ok(())
        })
    }

    async fn enable_auto_merge(&self, repo: &RepoRef, number: u64, method: MergeMethod) -> Result<(), ForgeError> {
        self.modify(repo, number, |r| {
            if r.state != PrState::Open {
                return Err(self.error(repo, ForgeErrorKind::Conflict, format!("pull request #{number} is not open")));
            }
            r.auto_merge = Some(method.as_str().to_string());
            Ok(())
        })
    }

    async fn delete_branch(&self, repo: &RepoRef, branch: &str) -> Result<(), ForgeError> {
        let git = self.open(repo)?;
        let refname = format!("refs/heads/{branch}");
        if !git.is_bare() && git.head().ok().and_then(|h| h.name().ok().map(str::to_string)).as_deref() == Some(&refname) {
            return Err(self.error(repo, ForgeErrorKind::Conflict, format!("{branch} is checked out; not deleting it")));
        }
        match git.find_reference(&refname) {
            Ok(mut r) => r.delete().map_err(|e| self.git_error(repo, e)),
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(()),
            Err(e) => Err(self.git_error(repo, e)),
        }
    }

    async fn access_level(&self, repo: &RepoRef, user: &str) -> Result<AccessLevel, ForgeError> {
        let path = self.state_dir.join("permissions.json");
        let map: std::collections::BTreeMap<String, String> = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                self.error(repo, ForgeErrorKind::Protocol, format!("corrupt permissions file {}: {e}", path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(AccessLevel::Write),
            Err(e) => return Err(self.error(repo, ForgeErrorKind::Protocol, format!("{}: {e}", path.display()))),
        };
        let Some(level) = map.get(user).or_else(|| map.get("*")) else { return Ok(AccessLevel::Write) };
        parse_access_level(level).ok_or_else(|| {
            self.error(
                repo,
                ForgeErrorKind::Protocol,
                format!("{}: unknown permission {level:?} for {user:?} (none, read, triage, write, maintain, admin)", path.display()),
            )
        })
    }

    async fn add_reaction(&self, repo: &RepoRef, number: u64, comment_id: u64, reaction: Reaction) -> Result<(), ForgeError> {
        self.write(repo, |_| {
            let mut record = self.load(repo, number)?;
            let Some(comment) = record.comments.iter_mut().find(|c| c.id == comment_id) else {
                return Err(self.error(repo, ForgeErrorKind::NotFound, format!("no comment {comment_id} on pull request #{number}")));
            };
            let reaction = LocalReaction { user: self.user.clone(), content: reaction_name(reaction).to_string() };
            // As on GitHub, the same reaction twice is one reaction.
            if !comment.reactions.contains(&reaction) {
                comment.reactions.push(reaction);
                self.save(repo, &record)?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::push::{Identity, Lease, commit_on_base, push_branch};

    /// A non-bare repository on `main` (the demo's case: the source repository is a checkout).
    struct Source {
        dir: tempfile::TempDir,
        git: Repository,
    }

    impl Source {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let mut opts = git2::RepositoryInitOptions::new();
            opts.initial_head("main");
            let git = Repository::init_opts(dir.path(), &opts).unwrap();
            let source = Source { dir, git };
            source.commit("main", &[("apps/web.yaml", "image: web:1.0\n"), ("apps/api.yaml", "image: api:1.0\n")]);
            source.git.checkout_head(Some(git2::build::CheckoutBuilder::new().force())).unwrap();
            source
        }

        fn repo(&self) -> RepoRef {
            RepoRef::from_url(&format!("file://{}", self.dir.path().display())).unwrap()
        }

        /// Commits `files` on `branch` (created from main when missing).
        fn commit(&self, branch: &str, files: &[(&str, &str)]) -> Oid {
            let refname = format!("refs/heads/{branch}");
            let parent = self
                .git
                .find_reference(&refname)
                .or_else(|_| self.git.find_reference("refs/heads/main"))
                .ok()
                .and_then(|r| r.peel_to_commit().ok());
            let mut index = git2::Index::new().unwrap();
            if let Some(p) = &parent {
                index.read_tree(&p.tree().unwrap()).unwrap();
            }
            for (path, content) in files {
                let id = self.git.blob(content.as_bytes()).unwrap();
                index
                    .add(&git2::IndexEntry {
                        ctime: git2::IndexTime::new(0, 0),
                        mtime: git2::IndexTime::new(0, 0),
                        dev: 0,
                        ino: 0,
                        mode: 0o100644,
                        uid: 0,
                        gid: 0,
                        file_size: 0,
                        id,
                        flags: 0,
                        flags_extended: 0,
                        path: path.as_bytes().to_vec(),
                    })
                    .unwrap();
            }
            let tree = self.git.find_tree(index.write_tree_to(&self.git).unwrap()).unwrap();
            let sig = Signature::now("someone", "someone@example.com").unwrap();
            let parents: Vec<&git2::Commit> = parent.iter().collect();
            self.git.commit(Some(&refname), &sig, &sig, &format!("change {branch}"), &tree, &parents).unwrap()
        }

        fn tip(&self, branch: &str) -> Option<Oid> {
            self.git.find_reference(&format!("refs/heads/{branch}")).ok().and_then(|r| r.target())
        }

        fn file_at(&self, rev: Oid, path: &str) -> String {
            let tree = self.git.find_commit(rev).unwrap().tree().unwrap();
            let blob = tree.get_path(Path::new(path)).unwrap().to_object(&self.git).unwrap().peel_to_blob().unwrap();
            String::from_utf8(blob.content().to_vec()).unwrap()
        }

        fn worktree(&self, path: &str) -> String {
            std::fs::read_to_string(self.dir.path().join(path)).unwrap()
        }
    }

    const BRANCH: &str = "argocd-image-pr/argocd/web";

    fn new_pr(head: &str, title: &str) -> NewPullRequest {
        NewPullRequest { title: title.into(), body: "body".into(), head: head.into(), base: "main".into(), draft: false }
    }

    fn setup() -> (Source, tempfile::TempDir, LocalForge) {
        let source = Source::new();
        let state = tempfile::tempdir().unwrap();
        let forge = LocalForge::new(state.path().join("local-forge"), "argocd-image-pr[bot]");
        (source, state, forge)
    }

    fn kind<T: fmt::Debug>(r: Result<T, ForgeError>) -> ForgeErrorKind {
        r.unwrap_err().kind
    }

    #[tokio::test]
    async fn the_bot_pushes_opens_and_updates_a_pull_request_through_the_trait() {
        let (source, state, forge) = setup();
        let repo = source.repo();
        assert_eq!(forge.default_branch(&repo).await.unwrap(), "main");

        // The engine's write path: snapshot, commit on the base, push with a lease, open.
        let cache = state.path().join("cache");
        let base = crate::git::snapshot(&repo.url, "main", &cache).unwrap().commit;
        let bot = Identity { name: "argocd-image-pr".into(), email: "bot@example.com".into() };
        let change = vec![("apps/web.yaml".to_string(), b"image: web:2.0\n".to_vec())];
        let c1 = commit_on_base(&cache, &repo.url, &base, &change, "web 2.0", &bot).unwrap();
        let target = forge.push_target(&repo);
        assert_eq!((target.url.as_str(), target.username.as_deref()), (repo.url.as_str(), None));
        push_branch(&cache, &repo.url, &target, BRANCH, &c1, &Lease::MustNotExist).unwrap();
        let pr = forge.create_pull_request(&repo, &new_pr(BRANCH, "Update web to 2.0")).await.unwrap();
        assert_eq!((pr.number, pr.state, pr.head_sha.as_str()), (1, PrState::Open, c1.as_str()));
        assert_eq!(pr.url, format!("local://{}/pulls/1", repo_key(&repo)));

        // A newer version: the branch is regenerated and force-pushed, the PR keeps its number.
        let change = vec![("apps/web.yaml".to_string(), b"image: web:3.0\n".to_vec())];
        let c2 = commit_on_base(&cache, &repo.url, &base, &change, "web 3.0", &bot).unwrap();
        push_branch(&cache, &repo.url, &target, BRANCH, &c2, &Lease::Expect(c1.clone())).unwrap();
        let update = PrUpdate { title: Some("Update web to 3.0".into()), body: Some("new body".into()), state: None };
        let pr = forge.update_pull_request(&repo, 1, &update).await.unwrap();
        assert_eq!((pr.title.as_str(), pr.body.as_str(), pr.head_sha.as_str()), ("Update web to 3.0", "new body", c2.as_str()));
        let listed = forge.list_pull_requests(&repo, "argocd-image-pr/").await.unwrap();
        assert_eq!(listed, std::slice::from_ref(&pr));
        assert_eq!(forge.list_pull_requests(&repo, "other/").await.unwrap(), []);
        // An unchanged update writes nothing.
        let file = forge.repo_dir(&repo).join("pulls/1.json");
        let before = std::fs::read(&file).unwrap();
        forge.update_pull_request(&repo, 1, &update).await.unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), before);

        // The file is the documented JSON.
        let json: serde_json::Value = serde_json::from_slice(&before).unwrap();
        for key in ["number", "title", "body", "head", "base", "state", "draft", "labels", "reviewers", "teams", "assignees",
            "auto_merge", "created_at", "updated_at", "closed_at", "merge_commit_sha", "comments"]
        {
            assert!(json.get(key).is_some(), "{key} missing from {json}");
        }
        assert_eq!(json["state"], "open");
    }

    #[tokio::test]
    async fn trait_round_trips_of_everything_but_the_branch() {
        let (source, _state, forge) = setup();
        let repo = source.repo();
        source.commit(BRANCH, &[("apps/web.yaml", "image: web:2.0\n")]);
        source.commit("argocd-image-pr/argocd/api", &[("apps/api.yaml", "image: api:2.0\n")]);
        let one = forge.create_pull_request(&repo, &new_pr(BRANCH, "web")).await.unwrap();
        let draft = NewPullRequest { draft: true, ..new_pr("argocd-image-pr/argocd/api", "api") };
        let two = forge.create_pull_request(&repo, &draft).await.unwrap();
        assert_eq!((one.number, two.number, two.draft), (1, 2, true));
        // One open pull request per branch; branches must exist.
        assert_eq!(kind(forge.create_pull_request(&repo, &new_pr(BRANCH, "again")).await), ForgeErrorKind::Conflict);
        assert_eq!(kind(forge.create_pull_request(&repo, &new_pr("nope", "x")).await), ForgeErrorKind::NotFound);
        assert_eq!(kind(forge.update_pull_request(&repo, 9, &PrUpdate::default()).await), ForgeErrorKind::NotFound);
        // Newest first.
        let numbers: Vec<u64> = forge.list_pull_requests(&repo, "").await.unwrap().iter().map(|p| p.number).collect();
        assert_eq!(numbers, [2, 1]);

        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        forge.add_labels(&repo, 1, &strings(&["images", "env/prod"])).await.unwrap();
        forge.add_labels(&repo, 1, &strings(&["images"])).await.unwrap();
        let reviewers = [Reviewer::User("alice".into()), Reviewer::Team("org/sre".into()), Reviewer::User("alice".into())];
        forge.request_reviewers(&repo, 1, &reviewers).await.unwrap();
        forge.add_assignees(&repo, 1, &strings(&["bob"])).await.unwrap();
        forge.enable_auto_merge(&repo, 1, MergeMethod::Squash).await.unwrap();
        assert_eq!(forge.load(&repo, 1).unwrap().auto_merge.as_deref(), Some("squash"));
        let pr = &forge.list_pull_requests(&repo, BRANCH).await.unwrap()[0];
        assert_eq!(pr.labels, ["images", "env/prod"]);
        assert_eq!((pr.requested_reviewers.as_slice(), pr.requested_teams.as_slice()), (&strings(&["alice"])[..], &strings(&["org/sre"])[..]));
        assert_eq!((pr.assignees.as_slice(), pr.auto_merge), (&strings(&["bob"])[..], true));

        // Comments: ids unique across the repository; reactions by the bot, once each.
        let c1 = forge.create_comment(&repo, 1, "Proposed web 2.0").await.unwrap();
        let c2 = forge.comment(&repo, 2, "alice", "/pin 1.0").unwrap();
        let c3 = forge.comment(&repo, 1, "bob", "/ignore 2.0").unwrap();
        assert_eq!((c1.id, c2.id, c3.id), (1, 2, 3));
        assert_eq!(c1.author, "argocd-image-pr[bot]");
        forge.add_reaction(&repo, 1, 3, Reaction::ThumbsUp).await.unwrap();
        forge.add_reaction(&repo, 1, 3, Reaction::ThumbsUp).await.unwrap();
        forge.add_reaction(&repo, 2, 2, Reaction::Confused).await.unwrap();
        assert_eq!(kind(forge.add_reaction(&repo, 1, 99, Reaction::ThumbsUp).await), ForgeErrorKind::NotFound);
        assert_eq!(kind(forge.add_reaction(&repo, 2, 3, Reaction::ThumbsUp).await), ForgeErrorKind::NotFound, "comment 3 is on #1");
        let comments = forge.list_comments(&repo, 1).await.unwrap();
        assert_eq!(comments.iter().map(|c| (c.id, c.author.as_str(), c.body.as_str())).collect::<Vec<_>>(),
            [(1, "argocd-image-pr[bot]", "Proposed web 2.0"), (3, "bob", "/ignore 2.0")]);
        let stored = forge.load(&repo, 1).unwrap();
        assert_eq!(stored.comments[1].reactions, [LocalReaction { user: "argocd-image-pr[bot]".into(), content: "+1".into() }]);
        let other = forge.load(&repo, 2).unwrap();
        assert_eq!(other.comments[0].reactions, [LocalReaction { user: "argocd-image-pr[bot]".into(), content: "confused".into() }]);

        // Close, reopen; a branch that is gone cannot be reopened; deleting twice is fine.
        let closed = forge.update_pull_request(&repo, 1, &PrUpdate { state: Some(PrState::Closed), ..Default::default() }).await.unwrap();
        assert_eq!(closed.state, PrState::Closed);
        assert!(closed.closed_at.is_some());
        let reopened = forge.reopen(&repo, 1).unwrap();
        assert_eq!((reopened.state, reopened.closed_at), (PrState::Open, None));
        forge.close(&repo, 1).unwrap();
        let head = source.tip(BRANCH).unwrap().to_string();
        forge.delete_branch(&repo, BRANCH).await.unwrap();
        forge.delete_branch(&repo, BRANCH).await.unwrap();
        assert_eq!(source.tip(BRANCH), None);
        assert_eq!(kind(forge.reopen(&repo, 1)), ForgeErrorKind::NotFound);
        // The last known head stays on record.
        assert_eq!(forge.list_pull_requests(&repo, BRANCH).await.unwrap()[0].head_sha, head);
        assert_eq!(kind(forge.delete_branch(&repo, "main").await), ForgeErrorKind::Conflict);
        assert!(source.tip("main").is_some());
        // No temporary files left behind.
        let names: Vec<String> = std::fs::read_dir(forge.repo_dir(&repo).join("pulls")).unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        let mut names = names;
        names.sort();
        assert_eq!(names, ["1.json", "2.json"]);
    }

    #[tokio::test]
    async fn permissions_default_to_write_and_come_from_permissions_json() {
        let (source, _state, forge) = setup();
        let repo = source.repo();
        assert_eq!(forge.access_level(&repo, "anyone").await.unwrap(), AccessLevel::Write);
        std::fs::create_dir_all(forge.state_dir()).unwrap();
        let path = forge.state_dir().join("permissions.json");
        std::fs::write(&path, r#"{"reader": "read", "boss": "admin", "triager": "triage"}"#).unwrap();
        let cases = [("reader", AccessLevel::Read), ("boss", AccessLevel::Admin), ("other", AccessLevel::Write), ("triager", AccessLevel::Read)];
        for (user, want) in cases {
            assert_eq!(forge.access_level(&repo, user).await.unwrap(), want, "case {user}");
        }
        std::fs::write(&path, r#"{"*": "none", "boss": "maintain"}"#).unwrap();
        assert_eq!(forge.access_level(&repo, "other").await.unwrap(), AccessLevel::None);
        std::fs::write(&path, r#"{"x": "god"}"#).unwrap();
        let err = forge.access_level(&repo, "x").await.unwrap_err();
        assert!(err.message.contains("god") && err.message.contains("permissions.json"), "{err}");
        std::fs::write(&path, "{").unwrap();
        assert!(forge.access_level(&repo, "x").await.unwrap_err().message.contains("permissions.json"));
    }

    #[tokio::test]
    async fn corrupt_files_are_named_and_numbers_survive_a_stale_counter() {
        let (source, _state, forge) = setup();
        let repo = source.repo();
        source.commit(BRANCH, &[("apps/web.yaml", "image: web:2.0\n")]);
        source.commit("argocd-image-pr/b", &[("apps/web.yaml", "image: web:3.0\n")]);
        source.commit("argocd-image-pr/c", &[("apps/web.yaml", "image: web:4.0\n")]);
        forge.create_pull_request(&repo, &new_pr(BRANCH, "one")).await.unwrap();
        // A crash after the PR file was written and before the counter: the number is not reused.
        std::fs::write(forge.repo_dir(&repo).join("next.json"), r#"{"pull":0,"comment":0}"#).unwrap();
        assert_eq!(forge.create_pull_request(&repo, &new_pr("argocd-image-pr/b", "two")).await.unwrap().number, 2);
        // The counter file lost altogether: numbering continues after the files.
        std::fs::remove_file(forge.repo_dir(&repo).join("next.json")).unwrap();
        assert_eq!(forge.create_pull_request(&repo, &new_pr("argocd-image-pr/c", "three")).await.unwrap().number, 3);

        let file = forge.repo_dir(&repo).join("pulls/2.json");
        std::fs::write(&file, "{\"number\": 2, \"tit").unwrap();
        let err = forge.list_pull_requests(&repo, "").await.unwrap_err();
        assert_eq!(err.kind, ForgeErrorKind::Protocol);
        assert!(err.to_string().contains(&file.display().to_string()), "{err}");
        // Interrupted writes leave temporary files that are not pull requests.
        std::fs::write(&file, "").unwrap();
        std::fs::remove_file(&file).unwrap();
        std::fs::write(forge.repo_dir(&repo).join("pulls/.tmp-abc"), "{").unwrap();
        assert_eq!(forge.list_pull_requests(&repo, "").await.unwrap().len(), 2);
    }

    #[test]
    fn concurrent_writers_never_share_a_number() {
        let (source, _state, forge) = setup();
        let repo = source.repo();
        source.commit(BRANCH, &[("apps/web.yaml", "image: web:2.0\n")]);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(forge.create_pull_request(&repo, &new_pr(BRANCH, "one"))).unwrap();
        let ids: Vec<u64> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let (forge, repo) = (forge.clone(), repo.clone());
                    s.spawn(move || (0..5).map(|j| forge.comment(&repo, 1, "x", &format!("{i}-{j}")).unwrap().id).collect::<Vec<_>>())
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(sorted, (1..=40).collect::<Vec<u64>>());
        assert_eq!(forge.load(&repo, 1).unwrap().comments.len(), 40);
    }

    #[test]
    fn show_merge_and_revert_act_on_the_repository() {
        let (source, _state, forge) = setup();
        let repo = source.repo();
        source.commit(BRANCH, &[("apps/web.yaml", "image: web:2.0\n")]);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(forge.create_pull_request(&repo, &new_pr(BRANCH, "Update web to 2.0"))).unwrap();
        // main moves on meanwhile, without conflict.
        source.commit("main", &[("apps/api.yaml", "image: api:1.1\n")]);
        source.git.checkout_head(Some(git2::build::CheckoutBuilder::new().force())).unwrap();

        let view = forge.show(&repo, 1).unwrap();
        assert!(view.diff.contains("-image: web:1.0\n+image: web:2.0\n"), "{}", view.diff);
        assert!(!view.diff.contains("api"), "only the branch's own change: {}", view.diff);
        let text = view.to_string();
        assert!(text.starts_with("#1 Update web to 2.0 [open]\nargocd-image-pr/argocd/web -> main"), "{text}");

        // A dirty checkout of main is not trampled.
        std::fs::write(source.dir.path().join("apps/api.yaml"), "local edit\n").unwrap();
        let main_before = source.tip("main").unwrap();
        assert_eq!(kind(forge.merge(&repo, 1)), ForgeErrorKind::Conflict);
        assert_eq!(source.tip("main"), Some(main_before));
        std::fs::write(source.dir.path().join("apps/api.yaml"), "image: api:1.1\n").unwrap();

        let merged = forge.merge(&repo, 1).unwrap();
        assert_eq!(merged.state, PrState::Merged);
        let merge = source.tip("main").unwrap();
        assert_eq!(merged.merge_commit_sha, Some(merge.to_string()));
        let commit = source.git.find_commit(merge).unwrap();
        assert_eq!(commit.parent_ids().collect::<Vec<_>>(), [main_before, source.tip(BRANCH).unwrap()]);
        assert_eq!(source.file_at(merge, "apps/web.yaml"), "image: web:2.0\n");
        assert_eq!(source.file_at(merge, "apps/api.yaml"), "image: api:1.1\n");
        assert_eq!(source.worktree("apps/web.yaml"), "image: web:2.0\n", "checkout follows main");
        assert_eq!(kind(forge.merge(&repo, 1)), ForgeErrorKind::Conflict);
        assert_eq!(kind(forge.close(&repo, 1)), ForgeErrorKind::Conflict);
        assert_eq!(kind(forge.reopen(&repo, 1)), ForgeErrorKind::Conflict);
        // After the branch is deleted, show still has the merged change.
        rt.block_on(forge.delete_branch(&repo, BRANCH)).unwrap();
        let view = forge.show(&repo, 1).unwrap();
        assert!(view.diff.contains("+image: web:2.0"), "{}", view.diff);
        assert!(view.to_string().contains("[merged]"));

        let revert = forge.revert(&repo, 1).unwrap();
        let revert = Oid::from_str(&revert).unwrap();
        assert_eq!(source.tip("main"), Some(revert));
        let commit = source.git.find_commit(revert).unwrap();
        assert_eq!(commit.parent_ids().collect::<Vec<_>>(), [merge]);
        assert!(commit.message().unwrap().starts_with("Revert \"Update web to 2.0\""));
        assert_eq!(source.file_at(revert, "apps/web.yaml"), "image: web:1.0\n");
        assert_eq!(source.file_at(revert, "apps/api.yaml"), "image: api:1.1\n", "later changes stay");
        assert_eq!(source.worktree("apps/web.yaml"), "image: web:1.0\n");
    }

    #[test]
    fn merging_a_conflict_and_reverting_an_unmerged_pr_are_refused() {
        let (source, _state, forge) = setup();
        let repo = source.repo();
        source.commit(BRANCH, &[("apps/web.yaml", "image: web:2.0\n")]);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(forge.create_pull_request(&repo, &new_pr(BRANCH, "web"))).unwrap();
        assert_eq!(kind(forge.revert(&repo, 1)), ForgeErrorKind::Conflict);
        source.commit("main", &[("apps/web.yaml", "image: web:9.0\n")]);
        source.git.checkout_head(Some(git2::build::CheckoutBuilder::new().force())).unwrap();
        let before = source.tip("main");
        let err = forge.merge(&repo, 1).unwrap_err();
        assert!(err.kind == ForgeErrorKind::Conflict && err.message.contains("apps/web.yaml"), "{err}");
        assert_eq!(source.tip("main"), before);
        assert_eq!(forge.list(&repo).unwrap()[0].state, PrState::Open);
        // Closed pull requests are not merged either.
        forge.close(&repo, 1).unwrap();
        assert_eq!(kind(forge.merge(&repo, 1)), ForgeErrorKind::Conflict);
    }

    #[test]
    fn repo_keys_are_readable_safe_and_distinct() {
        let key = |url: &str| repo_key(&RepoRef::from_url(url).unwrap());
        let a = key("/srv/git/gitops");
        assert!(a.starts_with("srv-git-gitops-") && a.len() == "srv-git-gitops-".len() + 8, "{a}");
        assert_eq!(key("file:///srv/git/gitops"), a);
        assert_ne!(key("/srv/git/gitops.git"), a);
        let b = key("https://github.com/org/gitops.git");
        assert!(b.starts_with("github.com-org-gitops-"), "{b}");
        let long = key(&format!("/{}", "x/".repeat(80)));
        assert!(long.len() <= 69 && !long.contains('/'), "{long}");
        for k in [a, b, long] {
            assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)) && !k.starts_with('.'), "{k}");
        }
    }
}
