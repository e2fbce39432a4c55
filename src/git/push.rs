//! The write side of the git driver: build the bot's single commit from blobs and trees on top
//! of a base commit, push it to a branch with a lease, list the remote's branches, and read
//! what a branch holds beyond its base. All in the same bare clone that [`super::snapshot`]
//! keeps under the cache directory (no working tree, no git CLI).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use git2::{
    Cred, CredentialType, Direction, FetchOptions, FileMode, ObjectType, Oid, PushOptions, Remote, RemoteCallbacks,
    Repository, Signature, Sort, Tree,
};

use super::{GitError, cache_name, remote_url};
pub use crate::ports::{CommitInfo, Identity, Lease, PushError, RemoteHeads};
use crate::ports::PushTarget;

/// Lists the remote's branches under `prefix` (e.g. `argocd-image-pr/`) and its default
/// branch, with one ref advertisement (`git ls-remote`). Talks to `auth.url` when given (the
/// forge's push URL, with its credentials), else to `url`.
pub fn remote_heads(url: &str, prefix: &str, auth: Option<&PushTarget>) -> Result<RemoteHeads, GitError> {
    let target = auth.map_or(url, |t| t.url.as_str());
    let err = |e: git2::Error| super::remote_error(target, "ls-remote failed", &e);
    let mut remote = Remote::create_detached(remote_url(target)).map_err(err)?;
    let connection = remote.connect_auth(Direction::Fetch, Some(callbacks(auth)), None).map_err(err)?;
    let mut heads = RemoteHeads::default();
    let mut head_target = None;
    for head in connection.list().map_err(err)? {
        if head.name() == "HEAD" {
            head_target = head.symref_target().map(str::to_string);
        }
    }
    let default = connection.default_branch().ok().and_then(|b| b.as_str().ok().map(str::to_string)).or(head_target);
    for head in connection.list().map_err(err)? {
        let Some(branch) = head.name().strip_prefix("refs/heads/") else { continue };
        if default.as_deref() == Some(head.name()) {
            heads.default_branch = Some((branch.to_string(), head.oid().to_string()));
        }
        if branch.starts_with(prefix) {
            heads.branches.insert(branch.to_string(), head.oid().to_string());
        }
    }
    Ok(heads)
}

/// Opens the bare clone of `url` under `cache_dir` that [`super::snapshot`] made.
pub fn open_clone(cache_dir: &Path, url: &str) -> Result<Repository, GitError> {
    let dir = cache_dir.join(cache_name(url));
    Repository::open_bare(&dir).map_err(|e| GitError::Repo {
        url: url.to_string(),
        message: format!("no clone in {} (snapshot first): {}", dir.display(), e.message()),
    })
}

/// Fetches one branch of `url` (from `auth.url` when given) into the clone and returns its
/// commit, `None` when the remote has no such branch.
#[cfg(test)]
pub fn fetch_branch(cache_dir: &Path, url: &str, branch: &str, auth: Option<&PushTarget>) -> Result<Option<String>, GitError> {
    let repo = open_clone(cache_dir, url)?;
    let target = auth.map_or(url, |t| t.url.as_str());
    let err = |e: git2::Error| GitError::Repo { url: target.to_string(), message: format!("fetch failed: {}", e.message()) };
    let mut remote = repo.remote_anonymous(&remote_url(target)).map_err(err)?;
    let mut options = FetchOptions::new();
    options.remote_callbacks(callbacks(auth));
    let tracking = format!("refs/remotes/origin/{branch}");
    // A missing branch is not an error for fetch; the tracking ref then stays as it was, so
    // drop it first and read it back afterwards.
    let refspec = format!("+refs/heads/{branch}:{tracking}");
    let previous = repo.find_reference(&tracking).ok().and_then(|r| r.target());
    if let Ok(mut r) = repo.find_reference(&tracking) {
        r.delete().map_err(err)?;
    }
    if let Err(e) = remote.fetch(&[&refspec], Some(&mut options), None) {
        if let Some(oid) = previous {
            let _ = repo.reference(&tracking, oid, true, "restore after failed fetch");
        }
        return Err(err(e));
    }
    Ok(repo.find_reference(&tracking).ok().and_then(|r| r.target()).map(|o| o.to_string()))
}

/// Builds the tree of `base_commit` with `changes` (path, new content) written in, and creates
/// exactly one commit on top of it by `identity`. No ref is moved. Returns the commit id.
pub fn commit_on_base(
    cache_dir: &Path,
    url: &str,
    base_commit: &str,
    changes: &[(String, Vec<u8>)],
    message: &str,
    identity: &Identity,
) -> Result<String, GitError> {
    let repo = open_clone(cache_dir, url)?;
    let err = |message: String| GitError::Repo { url: url.to_string(), message };
    let base = find_commit(&repo, url, base_commit)?;
    let tree = build_tree(&repo, &base.tree().map_err(|e| err(e.message().to_string()))?, changes).map_err(err)?;
    let tree = repo.find_tree(tree).map_err(|e| err(e.message().to_string()))?;
    let sig = Signature::now(&identity.name, &identity.email).map_err(|e| err(format!("bad identity: {}", e.message())))?;
    let oid = repo
        .commit(None, &sig, &sig, message, &tree, &[&base])
        .map_err(|e| err(format!("cannot create commit: {}", e.message())))?;
    Ok(oid.to_string())
}

/// Whether commit `sha` holds exactly the tree that `changes` on top of `base_commit` give
/// (the branch is already what the bot would push).
pub fn commit_tree_equals(
    cache_dir: &Path,
    url: &str,
    sha: &str,
    base_commit: &str,
    changes: &[(String, Vec<u8>)],
) -> Result<bool, GitError> {
    let repo = open_clone(cache_dir, url)?;
    let err = |message: String| GitError::Repo { url: url.to_string(), message };
    let commit = find_commit(&repo, url, sha)?;
    let base = find_commit(&repo, url, base_commit)?;
    let wanted = build_tree(&repo, &base.tree().map_err(|e| err(e.message().to_string()))?, changes).map_err(err)?;
    Ok(commit.tree_id() == wanted)
}

/// Force-pushes `commit` (in the clone of `url`) to `refs/heads/<branch>` of `target.url`, but
/// only if the remote branch is what `lease` says at the moment of the push.
///
/// The lease is checked in libgit2's push negotiation against the remote's advertised ref, and
/// over smart protocols (http, ssh) the server applies the update only if the ref still holds
/// that advertised value. (Local `file://` pushes have no such server-side check: a writer in
/// the instant between advertisement and update can still be overwritten.) When the branch
/// already holds `commit`, the push changes nothing and succeeds whatever the lease says.
pub fn push_branch(
    cache_dir: &Path,
    url: &str,
    target: &PushTarget,
    branch: &str,
    commit: &str,
    lease: &Lease,
) -> Result<(), PushError> {
    let repo = open_clone(cache_dir, url)?;
    let dst = format!("refs/heads/{branch}");
    let err = |e: git2::Error| PushError::Git(super::remote_error(&target.url, &format!("push {branch}"), &e));
    let commit_oid = find_commit(&repo, url, commit)?.id();
    let expected: Option<Oid> = match lease {
        Lease::MustNotExist => None,
        Lease::Expect(sha) => Some(Oid::from_str(sha).map_err(err)?),
    };
    if let Some(worktree_repo) = local_non_bare(&target.url) {
        return push_to_checkout(&repo, &worktree_repo, branch, commit_oid, expected).map_err(|e| match e {
            Local::Push(p) => p,
            Local::Git(e) => err(e),
        });
    }
    // (found on the remote, whether our ref was negotiated at all)
    let lease_broken: RefCell<Option<Option<Oid>>> = RefCell::new(None);
    let rejected: RefCell<Option<String>> = RefCell::new(None);
    {
        let mut cbs = callbacks(Some(target));
        cbs.push_negotiation(|updates| {
            for update in updates {
                if update.dst_refname() != Ok(dst.as_str()) {
                    continue;
                }
                let found = Some(update.src()).filter(|o| !o.is_zero());
                if found != expected && found != Some(commit_oid) {
                    *lease_broken.borrow_mut() = Some(found);
                    return Err(git2::Error::from_str("lease failed"));
                }
            }
            Ok(())
        });
        cbs.push_update_reference(|refname, status| {
            if let Some(status) = status {
                *rejected.borrow_mut() = Some(format!("{refname}: {status}"));
            }
            Ok(())
        });
        let mut options = PushOptions::new();
        options.remote_callbacks(cbs);
        let mut remote = repo.remote_anonymous(&remote_url(&target.url)).map_err(err)?;
        let result = remote.push(&[format!("+{commit_oid}:{dst}")], Some(&mut options));
        if let Some(found) = lease_broken.borrow_mut().take() {
            return Err(PushError::LeaseFailed {
                branch: branch.to_string(),
                expected: expected.map(|o| o.to_string()),
                found: found.map(|o| o.to_string()),
            });
        }
        result.map_err(err)?;
    }
    if let Some(reason) = rejected.into_inner() {
        return Err(PushError::Rejected { branch: branch.to_string(), reason });
    }
    Ok(())
}

/// A local repository with a working tree (libgit2 cannot push into one), e.g. the demo's
/// source repository.
fn local_non_bare(url: &str) -> Option<Repository> {
    let looks_remote = url.contains("://") && !url.starts_with("file://") || (url.contains('@') && url.contains(':'));
    if looks_remote {
        return None;
    }
    let path = url.strip_prefix("file://").unwrap_or(url);
    Repository::open(path).ok().filter(|r| !r.is_bare())
}

enum Local {
    Push(PushError),
    Git(git2::Error),
}

impl From<git2::Error> for Local {
    fn from(e: git2::Error) -> Self {
        Local::Git(e)
    }
}

/// "Pushes" into a local repository with a working tree by copying the missing objects and
/// moving the branch with a compare-and-swap on its old value, which enforces the lease
/// atomically. The checked-out branch is refused, as git's `receive.denyCurrentBranch` does.
fn push_to_checkout(src: &Repository, dst: &Repository, branch: &str, commit: Oid, expected: Option<Oid>) -> Result<(), Local> {
    let refname = format!("refs/heads/{branch}");
    let current = || dst.find_reference(&refname).ok().and_then(|r| r.target());
    let lease_failed = |found: Option<Oid>| {
        Local::Push(PushError::LeaseFailed {
            branch: branch.to_string(),
            expected: expected.map(|o| o.to_string()),
            found: found.map(|o| o.to_string()),
        })
    };
    let found = current();
    if found == Some(commit) {
        return Ok(());
    }
    if found != expected {
        return Err(lease_failed(found));
    }
    if dst.head().ok().and_then(|h| h.name().ok().map(str::to_string)).as_deref() == Some(refname.as_str()) {
        return Err(Local::Push(PushError::Rejected {
            branch: branch.to_string(),
            reason: format!("{branch} is checked out in {}", dst.workdir().unwrap_or(dst.path()).display()),
        }));
    }
    copy_objects(src, dst, commit)?;
    let moved = match expected {
        None => dst.reference(&refname, commit, false, "argocd-image-pr push"),
        Some(old) => dst.reference_matching(&refname, commit, true, old, "argocd-image-pr push"),
    };
    match moved {
        Ok(_) => Ok(()),
        Err(_) if current() != expected => Err(lease_failed(current())),
        Err(e) => Err(Local::Git(e)),
    }
}

/// Copies `root` and whatever it reaches that `dst` lacks (a tree `dst` has is complete),
/// children before the objects naming them, so an interruption never leaves an object in
/// `dst` whose contents are missing.
fn copy_objects(src: &Repository, dst: &Repository, root: Oid) -> Result<(), git2::Error> {
    let (from, to) = (src.odb()?, dst.odb()?);
    let mut seen = BTreeSet::new();
    // (object, children already queued)
    let mut stack = vec![(root, false)];
    while let Some((oid, expanded)) = stack.pop() {
        if expanded {
            let object = from.read(oid)?;
            to.write(object.kind(), object.data())?;
            continue;
        }
        if to.exists(oid) || !seen.insert(oid) {
            continue;
        }
        stack.push((oid, true));
        match from.read_header(oid)?.1 {
            ObjectType::Commit => {
                let commit = src.find_commit(oid)?;
                stack.push((commit.tree_id(), false));
                stack.extend(commit.parent_ids().map(|p| (p, false)));
            }
            ObjectType::Tree => {
                let tree = src.find_tree(oid)?;
                stack.extend(tree.iter().filter(|e| e.kind() != Some(ObjectType::Commit)).map(|e| (e.id(), false)));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The commits reachable from `head_sha` but not from `base_sha`, newest first. Fetches the
/// remote's branches (from `auth.url` when given) if `head_sha` is not in the clone yet.
pub fn branch_commits(
    cache_dir: &Path,
    url: &str,
    head_sha: &str,
    base_sha: &str,
    auth: Option<&PushTarget>,
) -> Result<Vec<CommitInfo>, GitError> {
    let repo = open_clone(cache_dir, url)?;
    let err = |e: git2::Error| GitError::Repo { url: url.to_string(), message: e.message().to_string() };
    if find_commit(&repo, url, head_sha).is_err() {
        let target = auth.map_or(url, |t| t.url.as_str());
        let mut remote = repo.remote_anonymous(&remote_url(target)).map_err(err)?;
        let mut options = FetchOptions::new();
        options.remote_callbacks(callbacks(auth));
        remote.fetch(&["+refs/heads/*:refs/remotes/origin/*"], Some(&mut options), None).map_err(err)?;
    }
    let head = find_commit(&repo, url, head_sha)?.id();
    let base = find_commit(&repo, url, base_sha)?.id();
    let mut walk = repo.revwalk().map_err(err)?;
    walk.set_sorting(Sort::TOPOLOGICAL | Sort::TIME).map_err(err)?;
    walk.push(head).map_err(err)?;
    walk.hide(base).map_err(err)?;
    let mut out = Vec::new();
    for oid in walk {
        let commit = repo.find_commit(oid.map_err(err)?).map_err(err)?;
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        out.push(CommitInfo {
            sha: commit.id().to_string(),
            parents: commit.parent_ids().map(|p| p.to_string()).collect(),
            author_name: text(commit.author().name_bytes()),
            author_email: text(commit.author().email_bytes()),
            committer_email: text(commit.committer().email_bytes()),
            summary: text(commit.summary_bytes().unwrap_or_default()),
        });
    }
    Ok(out)
}

fn find_commit<'r>(repo: &'r Repository, url: &str, sha: &str) -> Result<git2::Commit<'r>, GitError> {
    let missing = || GitError::Revision { url: url.to_string(), revision: sha.to_string() };
    let oid = Oid::from_str(sha).map_err(|_| missing())?;
    repo.find_commit(oid).map_err(|_| missing())
}

/// Credentials: the target's user and password for http(s); the SSH agent or the platform's
/// default otherwise (as for fetching). One try per kind, so a wrong password fails fast.
pub(crate) fn callbacks<'a>(auth: Option<&PushTarget>) -> RemoteCallbacks<'a> {
    let userpass = auth.and_then(|t| Some((t.username.clone().unwrap_or_default(), t.password.clone()?)));
    let mut callbacks = RemoteCallbacks::new();
    let mut tried = CredentialType::empty();
    callbacks.credentials(move |_url, username, allowed| {
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT)
            && !tried.contains(CredentialType::USER_PASS_PLAINTEXT)
            && let Some((user, pass)) = &userpass
        {
            tried |= CredentialType::USER_PASS_PLAINTEXT;
            return Cred::userpass_plaintext(user, pass);
        }
        if allowed.contains(CredentialType::SSH_KEY) && !tried.contains(CredentialType::SSH_KEY) {
            tried |= CredentialType::SSH_KEY;
            return Cred::ssh_key_from_agent(username.unwrap_or("git"));
        }
        if allowed.contains(CredentialType::DEFAULT) && !tried.contains(CredentialType::DEFAULT) {
            tried |= CredentialType::DEFAULT;
            return Cred::default();
        }
        Err(git2::Error::from_str("authentication failed (no or wrong credentials for this repository)"))
    });
    callbacks
}

/// Writes `changes` into `base` level by level; returns the new root tree's id. Errors name the
/// offending path: a symlink, submodule or directory where a file should go, a file where a
/// directory should be, an invalid or duplicate path.
fn build_tree(repo: &Repository, base: &Tree<'_>, changes: &[(String, Vec<u8>)]) -> Result<Oid, String> {
    let mut seen = BTreeSet::new();
    let mut split: Changes<'_> = Vec::new();
    for (path, content) in changes {
        let parts: Vec<&str> = path.split('/').collect();
        if parts.iter().any(|p| p.is_empty() || *p == "." || *p == ".." || p.eq_ignore_ascii_case(".git") || p.contains('\0')) {
            return Err(format!("invalid path {path:?}"));
        }
        if !seen.insert(path.as_str()) {
            return Err(format!("path {path:?} is changed twice"));
        }
        split.push((parts, content));
    }
    write_level(repo, Some(base), "", &split)
}

/// Changes below one directory: the remaining path components and the new content.
type Changes<'c> = Vec<(Vec<&'c str>, &'c [u8])>;

fn write_level(repo: &Repository, base: Option<&Tree<'_>>, dir: &str, changes: &[(Vec<&str>, &[u8])]) -> Result<Oid, String> {
    let e = |e: git2::Error| e.message().to_string();
    let mut builder = repo.treebuilder(base).map_err(e)?;
    let mut subdirs: BTreeMap<&str, Changes<'_>> = BTreeMap::new();
    for (parts, content) in changes {
        let name = parts[0];
        let path = format!("{dir}{name}");
        let existing = base.and_then(|t| t.get_name(name)).map(|entry| (entry.filemode(), entry.kind()));
        if parts.len() == 1 {
            if subdirs.contains_key(name) {
                return Err(format!("{path:?} is written both as a file and as a directory"));
            }
            let mode = match existing {
                None => FileMode::Blob,
                Some((m, _)) if m == i32::from(FileMode::BlobExecutable) => FileMode::BlobExecutable,
                Some((m, _)) if m == i32::from(FileMode::Blob) => FileMode::Blob,
                Some((m, _)) if m == i32::from(FileMode::Link) => return Err(format!("refusing to write over symlink {path:?}")),
                Some((_, Some(ObjectType::Tree))) => return Err(format!("{path:?} is a directory")),
                Some(_) => return Err(format!("{path:?} is not a regular file (submodule?)")),
            };
            let blob = repo.blob(content).map_err(e)?;
            builder.insert(name, blob, mode.into()).map_err(e)?;
        } else {
            match existing {
                None | Some((_, Some(ObjectType::Tree))) => {}
                Some((m, _)) if m == i32::from(FileMode::Link) => {
                    return Err(format!("refusing to write through symlink {path:?}"));
                }
                Some(_) => return Err(format!("{path:?} is not a directory")),
            }
            if changes.iter().any(|(p, _)| p.len() == 1 && p[0] == name) {
                return Err(format!("{path:?} is written both as a file and as a directory"));
            }
            subdirs.entry(name).or_default().push((parts[1..].to_vec(), content));
        }
    }
    for (name, sub) in subdirs {
        let existing = base.and_then(|t| t.get_name(name)).map(|entry| entry.id());
        let subtree = existing.map(|id| repo.find_tree(id)).transpose().map_err(e)?;
        let oid = write_level(repo, subtree.as_ref(), &format!("{dir}{name}/"), &sub)?;
        builder.insert(name, oid, FileMode::Tree.into()).map_err(e)?;
    }
    builder.write().map_err(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use git2::Time;

    /// A bare "remote" repository on `main`, written with git2.
    struct Remote {
        dir: tempfile::TempDir,
        repo: Repository,
    }

    impl Remote {
        fn new() -> Self {
            Self::new_in(&std::env::temp_dir())
        }

        fn new_in(parent: &Path) -> Self {
            let dir = tempfile::tempdir_in(parent).unwrap();
            let mut opts = git2::RepositoryInitOptions::new();
            opts.bare(true).initial_head("main");
            let repo = Repository::init_opts(dir.path(), &opts).unwrap();
            Remote { dir, repo }
        }

        fn url(&self) -> String {
            format!("file://{}", self.dir.path().display())
        }

        fn target(&self) -> PushTarget {
            PushTarget { url: self.url(), username: None, password: None }
        }

        /// Commits a tree of (path, mode, content) entries on `main`; `Link` entries hold the
        /// link's target.
        fn commit_main(&self, entries: &[(&str, FileMode, &str)]) -> Oid {
            let mut index = git2::Index::new().unwrap();
            for (path, mode, content) in entries {
                let oid = self.repo.blob(content.as_bytes()).unwrap();
                let mut entry = index_entry(path, oid);
                entry.mode = i32::from(*mode) as u32;
                index.add(&entry).unwrap();
            }
            let tree = self.repo.find_tree(index.write_tree_to(&self.repo).unwrap()).unwrap();
            let sig = Signature::new("human", "human@example.com", &Time::new(1_700_000_000, 0)).unwrap();
            let parent = self.repo.find_reference("refs/heads/main").ok().and_then(|r| r.peel_to_commit().ok());
            let parents: Vec<&git2::Commit> = parent.iter().collect();
            self.repo.commit(Some("refs/heads/main"), &sig, &sig, "base", &tree, &parents).unwrap()
        }

        fn branch(&self, name: &str) -> Option<String> {
            self.repo.find_reference(&format!("refs/heads/{name}")).ok().and_then(|r| r.target()).map(|o| o.to_string())
        }
    }

    fn index_entry(path: &str, id: Oid) -> git2::IndexEntry {
        git2::IndexEntry {
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
        }
    }

    fn bot() -> Identity {
        Identity { name: "argocd-image-pr".into(), email: "bot@example.com".into() }
    }

    fn change(path: &str, content: &str) -> (String, Vec<u8>) {
        (path.to_string(), content.as_bytes().to_vec())
    }

    fn base_files() -> Vec<(&'static str, FileMode, &'static str)> {
        vec![
            ("apps/web/deploy.yaml", FileMode::Blob, "image: web:1.0\n"),
            ("apps/web/run.sh", FileMode::BlobExecutable, "#!/bin/sh\n"),
            ("apps/api/deploy.yaml", FileMode::Blob, "image: api:1.0\n"),
            ("top.yaml", FileMode::Blob, "top: 1\n"),
            ("linked", FileMode::Link, "apps/web"),
            ("linked.yaml", FileMode::Link, "top.yaml"),
        ]
    }

    /// A remote with `base_files` on main and a snapshot clone of it in `cache`.
    fn setup() -> (Remote, tempfile::TempDir, String) {
        let remote = Remote::new();
        let base = remote.commit_main(&base_files()).to_string();
        let cache = tempfile::tempdir().unwrap();
        let snap = super::super::snapshot(&remote.url(), "main", cache.path()).unwrap();
        assert_eq!(snap.commit, base);
        (remote, cache, base)
    }

    fn entry_id(repo: &Repository, commit: &str, path: &str) -> (Oid, i32) {
        let tree = repo.find_commit(Oid::from_str(commit).unwrap()).unwrap().tree().unwrap();
        let entry = tree.get_path(Path::new(path)).unwrap_or_else(|_| panic!("no {path}"));
        (entry.id(), entry.filemode())
    }

    #[test]
    fn commit_on_base_writes_nested_paths_and_keeps_everything_else() {
        let (remote, cache, base) = setup();
        let url = remote.url();
        let changes = vec![
            change("apps/web/deploy.yaml", "image: web:2.0\n"),
            change("apps/web/run.sh", "#!/bin/sh\necho 2\n"),
            change("envs/prod/new/values.yaml", "tag: 2.0\n"),
        ];
        let sha = commit_on_base(cache.path(), &url, &base, &changes, "Update web to 2.0\n\nbody", &bot()).unwrap();
        let repo = open_clone(cache.path(), &url).unwrap();
        let commit = repo.find_commit(Oid::from_str(&sha).unwrap()).unwrap();
        assert_eq!(commit.parent_ids().map(|p| p.to_string()).collect::<Vec<_>>(), std::slice::from_ref(&base));
        assert_eq!((commit.author().name().ok(), commit.author().email().ok()), (Some("argocd-image-pr"), Some("bot@example.com")));
        assert_eq!((commit.committer().name().ok(), commit.committer().email().ok()), (Some("argocd-image-pr"), Some("bot@example.com")));
        assert_eq!(commit.message().ok(), Some("Update web to 2.0\n\nbody"));
        let blob = |path: &str| {
            let (id, _) = entry_id(&repo, &sha, path);
            String::from_utf8(repo.find_blob(id).unwrap().content().to_vec()).unwrap()
        };
        assert_eq!(blob("apps/web/deploy.yaml"), "image: web:2.0\n");
        assert_eq!(blob("envs/prod/new/values.yaml"), "tag: 2.0\n");
        // The executable keeps its mode; new files are regular.
        assert_eq!(entry_id(&repo, &sha, "apps/web/run.sh").1, i32::from(FileMode::BlobExecutable));
        assert_eq!(entry_id(&repo, &sha, "envs/prod/new/values.yaml").1, i32::from(FileMode::Blob));
        // Untouched siblings keep their ids: files, whole directories, symlinks.
        for path in ["apps/api/deploy.yaml", "apps/api", "top.yaml", "linked", "linked.yaml"] {
            assert_eq!(entry_id(&repo, &sha, path), entry_id(&repo, &base, path), "{path}");
        }
        // No ref moved anywhere: not in the clone, not on the remote.
        assert!(repo.references().unwrap().all(|r| r.unwrap().target() != Some(commit.id())));
        assert_eq!(remote.repo.references().unwrap().count(), 1);

        assert!(commit_tree_equals(cache.path(), &url, &sha, &base, &changes).unwrap());
        let mut reordered = changes.clone();
        reordered.reverse();
        assert!(commit_tree_equals(cache.path(), &url, &sha, &base, &reordered).unwrap());
        assert!(!commit_tree_equals(cache.path(), &url, &sha, &base, &changes[..2]).unwrap());
        assert!(!commit_tree_equals(cache.path(), &url, &sha, &base, &[change("apps/web/deploy.yaml", "x")]).unwrap());
        // The same content a second time gives the same tree.
        let again = commit_on_base(cache.path(), &url, &base, &changes, "again", &bot()).unwrap();
        assert_eq!(
            repo.find_commit(Oid::from_str(&again).unwrap()).unwrap().tree_id(),
            commit.tree_id()
        );
    }

    #[test]
    fn commit_on_base_refuses_symlinks_non_trees_and_bad_paths() {
        let (remote, cache, base) = setup();
        let url = remote.url();
        let cases = [
            ("over a symlink", vec![change("linked.yaml", "x")], "symlink"),
            ("through a symlinked directory", vec![change("linked/deploy.yaml", "x")], "symlink"),
            ("through a file", vec![change("top.yaml/x.yaml", "x")], "not a directory"),
            ("over a directory", vec![change("apps/web", "x")], "directory"),
            ("parent component", vec![change("apps/../top.yaml", "x")], "invalid path"),
            ("empty component", vec![change("apps//web.yaml", "x")], "invalid path"),
            ("absolute", vec![change("/etc/x.yaml", "x")], "invalid path"),
            ("into .git", vec![change(".git/config", "x")], "invalid path"),
            ("twice", vec![change("a.yaml", "1"), change("a.yaml", "2")], "twice"),
            ("file and directory", vec![change("n", "1"), change("n/m.yaml", "2")], "both"),
            ("directory and file", vec![change("n/m.yaml", "2"), change("n", "1")], "both"),
        ];
        for (name, changes, needle) in cases {
            let err = commit_on_base(cache.path(), &url, &base, &changes, "m", &bot()).unwrap_err();
            assert!(err.to_string().contains(needle), "case {name}: {err}");
        }
        let err = commit_on_base(cache.path(), &url, &"0".repeat(40), &[], "m", &bot()).unwrap_err();
        assert!(matches!(err, GitError::Revision { .. }), "{err}");
    }

    #[test]
    fn push_with_lease_creates_updates_and_refuses_a_moved_branch() {
        let (remote, cache, base) = setup();
        let url = remote.url();
        let branch = "argocd-image-pr/argocd/web";
        let c1 = commit_on_base(cache.path(), &url, &base, &[change("top.yaml", "top: 2\n")], "v2", &bot()).unwrap();
        push_branch(cache.path(), &url, &remote.target(), branch, &c1, &Lease::MustNotExist).unwrap();
        assert_eq!(remote.branch(branch).as_deref(), Some(c1.as_str()));
        // Pushing the same commit again is a no-op, whatever the lease.
        push_branch(cache.path(), &url, &remote.target(), branch, &c1, &Lease::MustNotExist).unwrap();

        let c2 = commit_on_base(cache.path(), &url, &base, &[change("top.yaml", "top: 3\n")], "v3", &bot()).unwrap();
        let err = push_branch(cache.path(), &url, &remote.target(), branch, &c2, &Lease::MustNotExist).unwrap_err();
        assert!(
            matches!(&err, PushError::LeaseFailed { expected: None, found: Some(f), .. } if *f == c1),
            "{err}"
        );
        // Not a fast-forward of c1: the force-push replaces it.
        push_branch(cache.path(), &url, &remote.target(), branch, &c2, &Lease::Expect(c1.clone())).unwrap();
        assert_eq!(remote.branch(branch).as_deref(), Some(c2.as_str()));

        // Someone else, with a clone of their own, pushes to the branch in between.
        let other_cache = tempfile::tempdir().unwrap();
        super::super::snapshot(&url, "main", other_cache.path()).unwrap();
        let theirs = commit_on_base(
            other_cache.path(),
            &url,
            &base,
            &[change("top.yaml", "top: mine\n")],
            "manual",
            &Identity { name: "someone".into(), email: "someone@example.com".into() },
        )
        .unwrap();
        push_branch(other_cache.path(), &url, &remote.target(), branch, &theirs, &Lease::Expect(c2.clone())).unwrap();

        let c3 = commit_on_base(cache.path(), &url, &base, &[change("top.yaml", "top: 4\n")], "v4", &bot()).unwrap();
        let err = push_branch(cache.path(), &url, &remote.target(), branch, &c3, &Lease::Expect(c2.clone())).unwrap_err();
        match &err {
            PushError::LeaseFailed { branch: b, expected, found } => {
                assert_eq!((b.as_str(), expected.as_deref(), found.as_deref()), (branch, Some(c2.as_str()), Some(theirs.as_str())));
            }
            other => panic!("expected a lease failure, got {other}"),
        }
        assert!(err.to_string().contains(branch) && err.to_string().contains(&theirs), "{err}");
        assert_eq!(remote.branch(branch).as_deref(), Some(theirs.as_str()), "remote unchanged");

        // A branch deleted behind the bot's back fails the lease too.
        remote.repo.find_reference(&format!("refs/heads/{branch}")).unwrap().delete().unwrap();
        let err = push_branch(cache.path(), &url, &remote.target(), branch, &c3, &Lease::Expect(c2.clone())).unwrap_err();
        assert!(matches!(&err, PushError::LeaseFailed { found: None, .. }), "{err}");
        assert_eq!(remote.branch(branch), None);
        // Unknown commit: a plain error, nothing pushed.
        let err = push_branch(cache.path(), &url, &remote.target(), branch, &"1".repeat(40), &Lease::MustNotExist).unwrap_err();
        assert!(matches!(&err, PushError::Git(GitError::Revision { .. })), "{err}");
        assert_eq!(remote.branch(branch), None);
    }

    #[test]
    fn remote_heads_lists_the_prefix_and_the_default_branch() {
        let (remote, cache, base) = setup();
        let url = remote.url();
        let base_oid = Oid::from_str(&base).unwrap();
        for name in ["argocd-image-pr/argocd/web", "argocd-image-pr/team/api", "feature/x", "argocd-image-prx"] {
            remote.repo.reference(&format!("refs/heads/{name}"), base_oid, false, "test").unwrap();
        }
        let c1 = commit_on_base(cache.path(), &url, &base, &[change("top.yaml", "top: 2\n")], "v2", &bot()).unwrap();
        push_branch(cache.path(), &url, &remote.target(), "argocd-image-pr/argocd/web", &c1, &Lease::Expect(base.clone()))
            .unwrap();
        let heads = remote_heads(&url, "argocd-image-pr/", None).unwrap();
        assert_eq!(heads.default_branch, Some(("main".to_string(), base.clone())));
        let listed: Vec<(&str, &str)> = heads.branches.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(listed, [("argocd-image-pr/argocd/web", c1.as_str()), ("argocd-image-pr/team/api", base.as_str())]);
        // A plain path works too, and the push target's URL wins over the source URL.
        let path = remote.dir.path().display().to_string();
        assert_eq!(remote_heads(&path, "feature/", None).unwrap().branches.len(), 1);
        assert_eq!(remote_heads("file:///nonexistent", "feature/", Some(&remote.target())).unwrap().branches.len(), 1);
        let err = remote_heads("file:///nonexistent/repo", "x", None).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/repo"), "{err}");
    }

    #[test]
    fn branch_commits_tell_the_bot_commit_from_foreign_ones() {
        let (remote, cache, base) = setup();
        let url = remote.url();
        let branch = "argocd-image-pr/argocd/web";
        let c1 = commit_on_base(cache.path(), &url, &base, &[change("top.yaml", "top: 2\n")], "Update top\n\nmore", &bot()).unwrap();
        push_branch(cache.path(), &url, &remote.target(), branch, &c1, &Lease::MustNotExist).unwrap();

        // The base moves on: the bot's commit is still the only one the branch adds.
        let base2 = remote
            .commit_main(&[("top.yaml", FileMode::Blob, "top: 1\n"), ("other.yaml", FileMode::Blob, "o: 1\n")])
            .to_string();
        super::super::snapshot(&url, "main", cache.path()).unwrap();
        for b in [&base, &base2] {
            let commits = branch_commits(cache.path(), &url, &c1, b, None).unwrap();
            assert_eq!(
                commits,
                [CommitInfo {
                    sha: c1.clone(),
                    parents: vec![base.clone()],
                    author_name: "argocd-image-pr".into(),
                    author_email: "bot@example.com".into(),
                    committer_email: "bot@example.com".into(),
                    summary: "Update top".into(),
                }]
            );
        }
        assert_eq!(branch_commits(cache.path(), &url, &base, &base2, None).unwrap(), []);

        // Someone adds a commit on top, from a clone of their own: this clone has never seen it.
        let other = remote.repo.find_commit(Oid::from_str(&c1).unwrap()).unwrap();
        let sig = Signature::new("someone", "someone@example.com", &Time::new(1_700_000_100, 0)).unwrap();
        let foreign = remote
            .repo
            .commit(Some(&format!("refs/heads/{branch}")), &sig, &sig, "hotfix", &other.tree().unwrap(), &[&other])
            .unwrap()
            .to_string();
        let commits = branch_commits(cache.path(), &url, &foreign, &base2, None).unwrap();
        let summary: Vec<(&str, &str)> = commits.iter().map(|c| (c.sha.as_str(), c.author_email.as_str())).collect();
        assert_eq!(summary, [(foreign.as_str(), "someone@example.com"), (c1.as_str(), "bot@example.com")]);
        assert_eq!(fetch_branch(cache.path(), &url, branch, None).unwrap(), Some(foreign.clone()));
        assert_eq!(fetch_branch(cache.path(), &url, "no/such/branch", None).unwrap(), None);
        let err = branch_commits(cache.path(), &url, &"2".repeat(40), &base, None).unwrap_err();
        assert!(matches!(err, GitError::Revision { .. }), "{err}");
    }

    #[test]
    fn pushes_into_a_checkout_move_branches_with_a_lease_and_spare_the_checked_out_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = git2::RepositoryInitOptions::new();
        opts.initial_head("main");
        let checkout = Repository::init_opts(dir.path(), &opts).unwrap();
        let remote = Remote { repo: checkout, dir };
        let base = remote.commit_main(&base_files()).to_string();
        let url = remote.dir.path().display().to_string();
        let target = PushTarget { url: url.clone(), username: None, password: None };
        let cache = tempfile::tempdir().unwrap();
        super::super::snapshot(&url, "main", cache.path()).unwrap();
        let branch = "argocd-image-pr/argocd/web";
        let changes = [change("envs/new/deep/a.yaml", "a: 1\n")];
        let c1 = commit_on_base(cache.path(), &url, &base, &changes, "one", &bot()).unwrap();
        push_branch(cache.path(), &url, &target, branch, &c1, &Lease::MustNotExist).unwrap();
        assert_eq!(remote.branch(branch).as_deref(), Some(c1.as_str()));
        // Every object arrived: the checkout can read the new file.
        let tree = remote.repo.find_commit(Oid::from_str(&c1).unwrap()).unwrap().tree().unwrap();
        let blob = tree.get_path(Path::new("envs/new/deep/a.yaml")).unwrap().to_object(&remote.repo).unwrap();
        assert_eq!(blob.peel_to_blob().unwrap().content(), b"a: 1\n");

        let c2 = commit_on_base(cache.path(), &url, &base, &[change("top.yaml", "2")], "two", &bot()).unwrap();
        let err = push_branch(cache.path(), &url, &target, branch, &c2, &Lease::MustNotExist).unwrap_err();
        assert!(matches!(&err, PushError::LeaseFailed { found: Some(f), .. } if *f == c1), "{err}");
        let err = push_branch(cache.path(), &url, &target, branch, &c2, &Lease::Expect(base.clone())).unwrap_err();
        assert!(matches!(&err, PushError::LeaseFailed { found: Some(f), .. } if *f == c1), "{err}");
        push_branch(cache.path(), &url, &target, branch, &c2, &Lease::Expect(c1.clone())).unwrap();
        assert_eq!(remote.branch(branch).as_deref(), Some(c2.as_str()));
        push_branch(cache.path(), &url, &target, branch, &c2, &Lease::Expect(c1.clone())).unwrap();

        let err = push_branch(cache.path(), &url, &target, "main", &c2, &Lease::Expect(base.clone())).unwrap_err();
        assert!(matches!(&err, PushError::Rejected { reason, .. } if reason.contains("checked out")), "{err}");
        assert_eq!(remote.branch("main").as_deref(), Some(base.as_str()));
    }

    /// `git http-backend` behind a loopback server that wants HTTP basic auth
    /// (`x-access-token:secret`), serving the bare repositories below `root`.
    struct HttpGit {
        addr: std::net::SocketAddr,
        _shutdown: tokio::sync::oneshot::Sender<()>,
    }

    impl HttpGit {
        fn start(root: &Path) -> Self {
            let root = root.to_path_buf();
            let (addr_tx, addr_rx) = std::sync::mpsc::channel();
            let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                    addr_tx.send(listener.local_addr().unwrap()).unwrap();
                    let app = axum::Router::new().fallback(cgi).with_state(std::sync::Arc::new(root));
                    tokio::select! {
                        _ = axum::serve(listener, app) => {}
                        _ = shutdown_rx => {}
                    }
                });
            });
            HttpGit { addr: addr_rx.recv().unwrap(), _shutdown: shutdown }
        }
    }

    async fn cgi(
        axum::extract::State(root): axum::extract::State<std::sync::Arc<std::path::PathBuf>>,
        method: axum::http::Method,
        uri: axum::http::Uri,
        headers: axum::http::HeaderMap,
        body: axum::body::Bytes,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        use base64::Engine;
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let wanted = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("x-access-token:secret"));
        if header("authorization") != wanted {
            return (axum::http::StatusCode::UNAUTHORIZED, [("www-authenticate", "Basic realm=\"git\"")], "").into_response();
        }
        let mut child = tokio::process::Command::new("git")
            .arg("http-backend")
            .env("GIT_PROJECT_ROOT", root.as_path())
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("REMOTE_USER", "x-access-token")
            .env("REQUEST_METHOD", method.as_str())
            .env("PATH_INFO", uri.path())
            .env("QUERY_STRING", uri.query().unwrap_or(""))
            .env("CONTENT_TYPE", header("content-type"))
            .env("GIT_PROTOCOL", header("git-protocol"))
            .env("REMOTE_ADDR", "127.0.0.1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("git http-backend");
        let mut stdin = child.stdin.take().unwrap();
        let writer = tokio::spawn(async move { tokio::io::AsyncWriteExt::write_all(&mut stdin, &body).await });
        let out = child.wait_with_output().await.unwrap();
        let _ = writer.await;
        let raw = out.stdout;
        let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, String::from_utf8_lossy(&out.stderr).into_owned())
                .into_response();
        };
        let mut builder = axum::http::Response::builder();
        for line in String::from_utf8_lossy(&raw[..end]).lines() {
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("status") {
                    let code = v.split_whitespace().next().and_then(|c| c.parse().ok()).unwrap_or(200);
                    builder = builder.status(code);
                } else {
                    builder = builder.header(k.trim(), v.trim());
                }
            }
        }
        builder.body(axum::body::Body::from(raw[end + 4..].to_vec())).unwrap()
    }

    #[test]
    fn pushes_over_smart_http_with_credentials_a_lease_and_hooks() {
        if std::process::Command::new("git").arg("--version").output().is_err() {
            eprintln!("skipped: no git CLI for git http-backend");
            return;
        }
        let served = tempfile::tempdir().unwrap();
        let remote = Remote::new_in(served.path());
        let base = remote.commit_main(&base_files()).to_string();
        // A server-side hook that protects one namespace.
        let hook = remote.dir.path().join("hooks/pre-receive");
        std::fs::create_dir_all(hook.parent().unwrap()).unwrap();
        std::fs::write(&hook, "#!/bin/sh\nwhile read old new ref; do case $ref in refs/heads/protected/*) exit 1;; esac; done\n").unwrap();
        std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let server = HttpGit::start(served.path());
        let name = remote.dir.path().file_name().unwrap().to_str().unwrap();
        let url = format!("http://{}/{name}", server.addr);
        let target = PushTarget { url: url.clone(), username: Some("x-access-token".into()), password: Some("secret".into()) };

        // The source URL is the local path (fetching needs no credentials); the push goes to http.
        let source = remote.url();
        let cache = tempfile::tempdir().unwrap();
        super::super::snapshot(&source, "main", cache.path()).unwrap();
        let branch = "argocd-image-pr/argocd/web";
        let c1 = commit_on_base(cache.path(), &source, &base, &[change("top.yaml", "2")], "two", &bot()).unwrap();
        push_branch(cache.path(), &source, &target, branch, &c1, &Lease::MustNotExist).unwrap();
        assert_eq!(remote.branch(branch).as_deref(), Some(c1.as_str()));
        let heads = remote_heads(&source, "argocd-image-pr/", Some(&target)).unwrap();
        assert_eq!(heads.branches.get(branch), Some(&c1));
        assert_eq!(heads.default_branch.map(|(b, _)| b).as_deref(), Some("main"));

        // Someone else moves the branch; the bot's stale lease fails and changes nothing.
        let theirs = remote.repo.find_commit(Oid::from_str(&base).unwrap()).unwrap();
        remote.repo.reference(&format!("refs/heads/{branch}"), theirs.id(), true, "someone").unwrap();
        let c2 = commit_on_base(cache.path(), &source, &base, &[change("top.yaml", "3")], "three", &bot()).unwrap();
        let err = push_branch(cache.path(), &source, &target, branch, &c2, &Lease::Expect(c1.clone())).unwrap_err();
        assert!(matches!(&err, PushError::LeaseFailed { found: Some(f), .. } if *f == base), "{err}");
        assert_eq!(remote.branch(branch).as_deref(), Some(base.as_str()));
        push_branch(cache.path(), &source, &target, branch, &c2, &Lease::Expect(base.clone())).unwrap();
        assert_eq!(remote.branch(branch).as_deref(), Some(c2.as_str()));

        // The server refuses a ref: reported as rejected, not as success.
        let err = push_branch(cache.path(), &source, &target, "protected/x", &c2, &Lease::MustNotExist).unwrap_err();
        assert!(matches!(&err, PushError::Rejected { .. }), "{err}");
        assert_eq!(remote.branch("protected/x"), None);

        // Wrong credentials fail (and do not loop).
        let wrong = PushTarget { password: Some("nope".into()), ..target.clone() };
        let err = push_branch(cache.path(), &source, &wrong, "argocd-image-pr/other", &c2, &Lease::MustNotExist).unwrap_err();
        assert!(matches!(&err, PushError::Git(_)) && err.to_string().contains("auth"), "{err}");
        assert!(remote_heads(&source, "", Some(&wrong)).is_err());
    }
}
