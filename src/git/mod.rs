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

use crate::files::FileSet;
pub use crate::ports::{GitError, Snapshot};

mod driver;
pub mod push;

pub use driver::GitDriver;

/// How long a whole git operation (a clone or fetch, an ls-remote, a push) may take; set once
/// at start by [`set_timeouts`].
static OVERALL: std::sync::OnceLock<std::time::Duration> = std::sync::OnceLock::new();

/// Network deadlines of every git operation: `connect` for the TCP connection, `read` for a
/// server that stops sending (libgit2's socket timeouts, process-wide), `overall` for the whole
/// operation (see [`overall_timeout`]).
pub fn set_timeouts(connect: std::time::Duration, read: std::time::Duration, overall: std::time::Duration) -> Result<(), String> {
    let ms = |d: std::time::Duration| i32::try_from(d.as_millis()).unwrap_or(i32::MAX).max(1);
    // SAFETY: libgit2 options are set before any git operation starts (at start, from main).
    unsafe {
        git2::opts::set_server_connect_timeout_in_milliseconds(ms(connect)).map_err(|e| e.message().to_string())?;
        git2::opts::set_server_timeout_in_milliseconds(ms(read)).map_err(|e| e.message().to_string())?;
    }
    let _ = OVERALL.set(overall);
    Ok(())
}

/// The deadline of a whole git operation (10 minutes unless set).
pub fn overall_timeout() -> std::time::Duration {
    *OVERALL.get().unwrap_or(&std::time::Duration::from_secs(600))
}

/// A failure talking to `url`'s server, sorted by what libgit2 says: refused credentials
/// ([`GitError::Denied`]), an absent repository ([`GitError::Missing`]), anything else (a dropped
/// connection, a server error) as [`GitError::Repo`]. libgit2 reports HTTP statuses only in its
/// message (`unexpected http status code: 403`), so that is where they are read.
pub(crate) fn remote_error(url: &str, what: &str, e: &git2::Error) -> GitError {
    let (url, message) = (url.to_string(), format!("{what}: {}", e.message()));
    let text = e.message();
    if e.code() == git2::ErrorCode::Auth || text.contains("status code: 401") || text.contains("status code: 403") {
        GitError::Denied { url, message }
    } else if e.code() == git2::ErrorCode::NotFound || text.contains("status code: 404") || text.contains("failed to resolve path") {
        GitError::Missing { url, message }
    } else {
        GitError::Repo { url, message }
    }
}

/// Runs a blocking git operation off the async threads, bounded by [`overall_timeout`]. A worker
/// past its deadline is left to its socket timeout; the caller goes on.
pub(crate) async fn bounded<T, E>(what: &str, f: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, E>
where
    T: Send + 'static,
    E: From<GitError> + Send + 'static,
{
    let limit = overall_timeout();
    match tokio::time::timeout(limit, tokio::task::spawn_blocking(f)).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => Err(GitError::Worker { what: what.to_string(), message: e.to_string() }.into()),
        Err(_) => Err(GitError::Timeout { what: what.to_string(), secs: limit.as_secs() }.into()),
    }
}

/// Clones (or fetches into an existing clone under `cache_dir`) and reads every file that can
/// hold manifests (`*.yaml`, `*.yml`, `Kustomization`) at `revision` (branch, tag, commit, `HEAD`).
///
/// The clone is bare, in `cache_dir/<last URL segment>-<hash of the URL>.git`, and is fetched
/// again on every call, so a new commit on a branch is seen.
#[cfg_attr(not(test), allow(dead_code))]
pub fn snapshot(url: &str, revision: &str, cache_dir: &Path) -> Result<Snapshot, GitError> {
    snapshot_with(url, revision, cache_dir, None)
}

/// [`snapshot`] with a forge's credentials: fetches from `auth.url` (the forge's git URL for the
/// repository) with its user and password, as pushes do. `run` reads private repositories so.
pub fn snapshot_with(
    url: &str,
    revision: &str,
    cache_dir: &Path,
    auth: Option<&crate::ports::PushTarget>,
) -> Result<Snapshot, GitError> {
    let repo_err = |message: String| GitError::Repo { url: url.to_string(), message };
    let remote_url = remote_url(auth.map_or(url, |a| a.url.as_str()));
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
    let default_branch = fetch(&repo, &remote_url, auth).map_err(|e| remote_error(url, "fetch failed", &e))?;
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
            // `file_type` does not follow links: a link is recorded with its text, as git
            // would store it, and what it points to is never read from disk.
            let file_type = entry.file_type().map_err(|e| err(e, &entry.path()))?;
            if file_type.is_symlink() {
                let target = std::fs::read_link(entry.path()).map_err(|e| err(e, &entry.path()))?;
                if let Some(target) = target.to_str() {
                    files.insert_symlink(child_rel, target);
                }
            } else if file_type.is_dir() {
                if name != ".git" {
                    pending.push((entry.path(), child_rel));
                }
            } else if file_type.is_file() && wanted(name) {
                let content = std::fs::read(entry.path()).map_err(|e| err(e, &entry.path()))?;
                files.insert(child_rel, content);
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
fn fetch(repo: &Repository, url: &str, auth: Option<&crate::ports::PushTarget>) -> Result<Option<String>, git2::Error> {
    let mut remote = repo.remote_anonymous(url)?;
    let callbacks = match auth {
        Some(_) => push::callbacks(auth),
        None => default_callbacks(),
    };
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

/// The SSH agent or the platform's default credentials (no forge credentials given).
fn default_callbacks<'a>() -> RemoteCallbacks<'a> {
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
    callbacks
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

/// Git's file mode of a symbolic link: the blob holds the link text.
const SYMLINK_MODE: i32 = 0o120000;

/// Every manifest-like blob of the commit's tree, and every symbolic link (with its text);
/// identical blobs share one buffer.
fn read_tree(repo: &Repository, commit: &Commit<'_>) -> Result<FileSet, git2::Error> {
    let tree = commit.tree()?;
    let mut wanted_blobs: Vec<(String, Oid)> = Vec::new();
    let mut links: Vec<(String, Oid)> = Vec::new();
    tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
        if entry.kind() == Some(ObjectType::Blob)
            && let Ok(name) = entry.name()
        {
            if entry.filemode() == SYMLINK_MODE {
                links.push((format!("{dir}{name}"), entry.id()));
            } else if wanted(name) {
                wanted_blobs.push((format!("{dir}{name}"), entry.id()));
            }
        }
        TreeWalkResult::Ok
    })?;
    let mut files = FileSet::default();
    for (path, oid) in links {
        if let Ok(text) = std::str::from_utf8(repo.find_blob(oid)?.content()) {
            files.insert_symlink(path, text);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use git2::{Signature, Time};

    /// A non-bare "origin" repository built with git2, committing whole file lists.
    struct Origin {
        repo: Repository,
        dir: tempfile::TempDir,
    }

    impl Origin {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let mut opts = git2::RepositoryInitOptions::new();
            opts.initial_head("main");
            let repo = Repository::init_opts(dir.path(), &opts).unwrap();
            Origin { repo, dir }
        }

        fn url(&self) -> String {
            format!("file://{}", self.dir.path().display())
        }

        /// Commits `files` (path, content) on `branch`, on top of its current tip.
        fn commit(&self, branch: &str, files: &[(&str, &str)]) -> Oid {
            let entries: Vec<(&str, &str, u32)> = files.iter().map(|&(p, c)| (p, c, 0o100644)).collect();
            self.commit_entries(branch, &entries)
        }

        /// Commits `(path, content, file mode)`: `0o120000` makes a symbolic link whose text
        /// is the content.
        fn commit_entries(&self, branch: &str, files: &[(&str, &str, u32)]) -> Oid {
            let refname = format!("refs/heads/{branch}");
            let parent = self.repo.find_reference(&refname).ok().and_then(|r| r.peel_to_commit().ok());
            let mut index = git2::Index::new().unwrap();
            if let Some(p) = &parent {
                index.read_tree(&p.tree().unwrap()).unwrap();
            }
            for &(path, content, mode) in files {
                let oid = self.repo.blob(content.as_bytes()).unwrap();
                let entry = git2::IndexEntry {
                    ctime: git2::IndexTime::new(0, 0),
                    mtime: git2::IndexTime::new(0, 0),
                    dev: 0,
                    ino: 0,
                    mode,
                    uid: 0,
                    gid: 0,
                    file_size: content.len() as u32,
                    id: oid,
                    flags: 0,
                    flags_extended: 0,
                    path: path.as_bytes().to_vec(),
                };
                index.add(&entry).unwrap();
            }
            let tree = self.repo.find_tree(index.write_tree_to(&self.repo).unwrap()).unwrap();
            let sig = Signature::new("test", "test@example.com", &Time::new(1_700_000_000, 0)).unwrap();
            let parents: Vec<&git2::Commit> = parent.iter().collect();
            self.repo.commit(Some(&refname), &sig, &sig, &format!("update {branch}"), &tree, &parents).unwrap()
        }
    }

    fn text(s: &Snapshot, path: &str) -> String {
        String::from_utf8(s.files.get(path).unwrap_or_else(|| panic!("no {path}")).to_vec()).unwrap()
    }

    #[test]
    fn snapshots_by_branch_tag_sha_and_head() {
        let origin = Origin::new();
        let c1 = origin.commit(
            "main",
            &[
                ("apps/web.yaml", "v: main-1\n"),
                ("apps/k/Kustomization", "resources: []\n"),
                ("apps/k/.argocd-source-web.yaml", "kustomize: {}\n"),
                ("deep/a/b/c.yml", "c: 1\n"),
                ("README.md", "# not a manifest\n"),
                ("scripts/run.sh", "echo\n"),
            ],
        );
        let sig = Signature::new("t", "t@example.com", &Time::new(1_700_000_000, 0)).unwrap();
        origin.repo.tag("v1", &origin.repo.find_object(c1, None).unwrap(), &sig, "release", false).unwrap();
        origin.repo.reference("refs/heads/feature", c1, false, "branch").unwrap();
        let c2 = origin.commit("feature", &[("apps/web.yaml", "v: feature-2\n")]);

        let cache = tempfile::tempdir().unwrap();
        let url = origin.url();
        let c1_hex = c1.to_string();
        let c2_hex = c2.to_string();
        let cases = [
            ("branch", "main", &c1_hex, "v: main-1\n"),
            ("HEAD is the default branch", "HEAD", &c1_hex, "v: main-1\n"),
            ("annotated tag", "v1", &c1_hex, "v: main-1\n"),
            ("full ref of a tag", "refs/tags/v1", &c1_hex, "v: main-1\n"),
            ("second branch", "feature", &c2_hex, "v: feature-2\n"),
            ("full ref of a branch", "refs/heads/feature", &c2_hex, "v: feature-2\n"),
            ("full sha", &c2_hex[..], &c2_hex, "v: feature-2\n"),
            ("short sha", &c2_hex[..8], &c2_hex, "v: feature-2\n"),
        ];
        for (name, rev, commit, web) in cases {
            let snap = snapshot(&url, rev, cache.path()).unwrap_or_else(|e| panic!("case {name}: {e}"));
            assert_eq!(&snap.commit, commit, "case {name}");
            assert_eq!(snap.revision, rev, "case {name}");
            assert_eq!(text(&snap, "apps/web.yaml"), web, "case {name}");
        }
        let snap = snapshot(&url, "main", cache.path()).unwrap();
        let paths: Vec<&str> = snap.files.files.keys().map(String::as_str).collect();
        assert_eq!(paths, ["apps/k/.argocd-source-web.yaml", "apps/k/Kustomization", "apps/web.yaml", "deep/a/b/c.yml"]);
        // One clone for the URL, reused by every call.
        assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 1);
    }

    #[test]
    fn fetches_again_and_sees_new_commits() {
        let origin = Origin::new();
        origin.commit("main", &[("a.yaml", "v: 1\n")]);
        let cache = tempfile::tempdir().unwrap();
        // A plain local path works as a URL too.
        let url = origin.dir.path().display().to_string();
        assert_eq!(text(&snapshot(&url, "main", cache.path()).unwrap(), "a.yaml"), "v: 1\n");
        let c2 = origin.commit("main", &[("a.yaml", "v: 2\n")]);
        let snap = snapshot(&url, "main", cache.path()).unwrap();
        assert_eq!(snap.commit, c2.to_string());
        assert_eq!(text(&snap, "a.yaml"), "v: 2\n");
    }

    #[test]
    fn unknown_revision_and_url_are_named() {
        let origin = Origin::new();
        origin.commit("main", &[("a.yaml", "v: 1\n")]);
        let cache = tempfile::tempdir().unwrap();
        let err = snapshot(&origin.url(), "no-such-branch", cache.path()).unwrap_err();
        assert!(matches!(&err, GitError::Revision { revision, .. } if revision == "no-such-branch"), "{err}");
        assert!(err.to_string().contains("no-such-branch") && err.to_string().contains(&origin.url()));
        let err = snapshot(&origin.url(), "deadbeef", cache.path()).unwrap_err();
        assert!(err.to_string().contains("deadbeef"), "{err}");
        let missing = format!("file://{}/nothing-here", cache.path().display());
        let err = snapshot(&missing, "main", cache.path()).unwrap_err();
        // A repository that is not there is told apart from one that does not answer.
        assert!(matches!(err, GitError::Missing { .. }) && err.to_string().contains(&missing), "{err}");
    }

    #[test]
    fn reads_a_directory_without_dot_git() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (path, content) in [
            ("apps/web.yaml", "a: 1\n"),
            ("apps/x/Kustomization", "b: 2\n"),
            (".git/config.yaml", "no\n"),
            ("notes.txt", "no\n"),
            ("c.yml", "c: 3\n"),
        ] {
            std::fs::create_dir_all(root.join(path).parent().unwrap()).unwrap();
            std::fs::write(root.join(path), content).unwrap();
        }
        let files = read_dir(root).unwrap();
        let paths: Vec<&str> = files.files.keys().map(String::as_str).collect();
        assert_eq!(paths, ["apps/web.yaml", "apps/x/Kustomization", "c.yml"]);
    }

    #[test]
    fn symlinks_are_recorded_with_their_text_and_never_read_as_files() {
        let origin = Origin::new();
        origin.commit_entries(
            "main",
            &[
                ("base/kustomization.yaml", "images: []\n", 0o100644),
                ("apps/web/kustomization.yaml", "../../base/kustomization.yaml", 0o120000),
                ("apps/prod", "../base", 0o120000),
                ("apps/secret.yaml", "/etc/passwd", 0o120000),
                ("apps/notes", "../README.md", 0o120000),
            ],
        );
        let cache = tempfile::tempdir().unwrap();
        let snap = snapshot(&origin.url(), "main", cache.path()).unwrap();
        let paths: Vec<&str> = snap.files.files.keys().map(String::as_str).collect();
        assert_eq!(paths, ["base/kustomization.yaml"], "a link is not a file");
        let links: Vec<(&str, &str)> = snap.files.symlinks.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
        assert_eq!(
            links,
            [
                ("apps/notes", "../README.md"),
                ("apps/prod", "../base"),
                ("apps/secret.yaml", "/etc/passwd"),
                ("apps/web/kustomization.yaml", "../../base/kustomization.yaml"),
            ]
        );
        // Reading follows links that stay inside the repository, from the snapshot.
        assert_eq!(snap.files.get("apps/web/kustomization.yaml"), Some(&b"images: []\n"[..]));
        assert_eq!(snap.files.get("apps/prod/kustomization.yaml"), Some(&b"images: []\n"[..]));
        assert_eq!(snap.files.get("apps/secret.yaml"), None);
        assert_eq!(snap.files.escaping_symlink("apps/secret.yaml").as_deref(), Some("apps/secret.yaml"));
        assert_eq!(snap.files.symlink_of("apps/prod/kustomization.yaml"), Some("apps/prod"));
        assert_eq!(snap.files.symlink_of("base/kustomization.yaml"), None);
    }

    #[cfg(unix)]
    #[test]
    fn read_dir_records_symlinks_without_following_them() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("app.yaml"), "kind: Application\n").unwrap();
        std::fs::create_dir(outside.path().join("more")).unwrap();
        std::fs::write(outside.path().join("more/x.yaml"), "x: 1\n").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("apps")).unwrap();
        std::fs::write(root.join("apps/web.yaml"), "a: 1\n").unwrap();
        let link = |target: &Path, name: &str| std::os::unix::fs::symlink(target, root.join(name)).unwrap();
        link(&outside.path().join("app.yaml"), "apps/outside.yaml");
        link(&outside.path().join("more"), "apps/more");
        link(Path::new("web.yaml"), "apps/copy.yaml");
        let files = read_dir(root).unwrap();
        let paths: Vec<&str> = files.files.keys().map(String::as_str).collect();
        assert_eq!(paths, ["apps/web.yaml"]);
        let links: Vec<&str> = files.symlinks.keys().map(String::as_str).collect();
        assert_eq!(links, ["apps/copy.yaml", "apps/more", "apps/outside.yaml"]);
        assert_eq!(files.get("apps/copy.yaml"), Some(&b"a: 1\n"[..]));
        assert_eq!(files.get("apps/outside.yaml"), None, "never read from outside");
        assert_eq!(files.get("apps/more/x.yaml"), None);
        assert!(files.escaping_symlink("apps/more/x.yaml").is_some());
    }

    /// Not a timed test (machines vary); prints the figures with `--nocapture`.
    #[test]
    fn a_thousand_applications_over_one_repository() {
        use crate::annotations::ImageSpec;
        use crate::domain::ImageName;
        let origin = Origin::new();
        let mut owned: Vec<(String, String)> = Vec::new();
        for i in 0..1000 {
            owned.push((
                format!("apps/app-{i}.yaml"),
                format!(
                    "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: app-{i}\nspec:\n  source:\n    repoURL: x\n    path: envs/app-{i}\n"
                ),
            ));
            owned.push((
                format!("envs/app-{i}/kustomization.yaml"),
                "resources: [deploy.yaml, ../../base]\n".to_string(),
            ));
            owned.push((
                format!("envs/app-{i}/deploy.yaml"),
                format!("kind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n      - image: ghcr.io/acme/app-{i}:1.{i}\n"),
            ));
        }
        owned.push(("base/kustomization.yaml".into(), "resources: [cm.yaml]\n".into()));
        owned.push(("base/cm.yaml".into(), "kind: ConfigMap\n".into()));
        let files: Vec<(&str, &str)> = owned.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
        origin.commit("main", &files);
        let cache = tempfile::tempdir().unwrap();

        let start = std::time::Instant::now();
        let snap = snapshot(&origin.url(), "main", cache.path()).unwrap();
        let loaded = start.elapsed();
        let (apps, errors) = crate::discovery::find_applications(&snap.files);
        assert_eq!((apps.len(), errors.len()), (1000, 0));
        let mut found = 0;
        for app in &apps {
            let image = ImageSpec::new("app", ImageName::parse(&format!("ghcr.io/acme/{}", app.id.name)).unwrap());
            let hit = crate::manifest::find_current(&snap.files, app, &app.sources[0], &image).unwrap();
            found += usize::from(hit.is_some());
        }
        assert_eq!(found, 1000);
        let looked_up = start.elapsed() - loaded;
        let again = std::time::Instant::now();
        snapshot(&origin.url(), "main", cache.path()).unwrap();
        eprintln!(
            "{} files: first snapshot (clone) {loaded:?}, discovery + 1000 lookups {looked_up:?}, snapshot again (fetch) {:?}",
            snap.files.files.len(),
            again.elapsed()
        );
    }
}
