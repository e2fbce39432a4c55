//! The engine on in-memory drivers: no disk, no process, no socket. Each port is a small model
//! of the outside system (tags per repository, files per repository and revision), so a test
//! states the world and reads the plan.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeZone, Utc};
use futures::future::BoxFuture;

use super::*;
use crate::discovery::Locations;
use crate::domain::ImageName;
use crate::files::FileSet;
use crate::ports::{
    CommitInfo, GitError, Identity, Lease, PushError, RegistryError, RegistryErrorKind, RemoteHeads, TagMetadata,
};

/// Tags per repository (`registry/repository`), with each tag's digest and build time.
#[derive(Default)]
pub(crate) struct MemoryRegistry {
    repos: Mutex<HashMap<String, Vec<(String, TagMetadata)>>>,
    /// Repositories whose registry answers every request with an error.
    failing: Mutex<Vec<String>>,
    /// Repositories listed this cycle: like the OCI client, one listing per repository per cycle.
    listed: Mutex<std::collections::HashSet<String>>,
    requests: AtomicU64,
    cycles: AtomicU64,
}

impl MemoryRegistry {
    pub(crate) fn push(&self, repo: &str, tag: &str) {
        let meta = TagMetadata { digest: format!("sha256:{:0>64}", tag.len()), created: None, platform_found: true };
        self.repos.lock().unwrap().entry(repo.to_string()).or_default().push((tag.to_string(), meta));
    }

    pub(crate) fn fail(&self, repo: &str) {
        self.failing.lock().unwrap().push(repo.to_string());
    }

    fn answer<T>(&self, image: &ImageName, f: impl FnOnce(&[(String, TagMetadata)]) -> Option<T>) -> Result<T, RegistryError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.answer_uncounted(image, f)
    }

    fn answer_uncounted<T>(&self, image: &ImageName, f: impl FnOnce(&[(String, TagMetadata)]) -> Option<T>) -> Result<T, RegistryError> {
        let key = image.to_string();
        let err = |kind, message: &str| RegistryError {
            registry: image.registry.to_string(),
            repository: Some(image.repository.to_string()),
            tag: None,
            kind,
            message: message.to_string(),
        };
        if self.failing.lock().unwrap().contains(&key) {
            return Err(err(RegistryErrorKind::Unauthorized, "401 Unauthorized"));
        }
        let repos = self.repos.lock().unwrap();
        let tags = repos.get(&key).map(Vec::as_slice).unwrap_or_default();
        f(tags).ok_or_else(|| err(RegistryErrorKind::NotFound, "404 Not Found"))
    }
}

impl Registry for MemoryRegistry {
    fn begin_cycle(&self) -> Result<(), RegistryError> {
        self.cycles.fetch_add(1, Ordering::Relaxed);
        self.requests.store(0, Ordering::Relaxed);
        self.listed.lock().unwrap().clear();
        Ok(())
    }

    fn default_registry(&self) -> DefaultRegistry {
        DefaultRegistry::default()
    }

    fn list_tags<'a>(&'a self, image: &'a ImageName, _: Option<&'a str>) -> BoxFuture<'a, Result<Arc<[String]>, RegistryError>> {
        let first = self.listed.lock().unwrap().insert(image.to_string());
        let list = |tags: &[(String, TagMetadata)]| Some(tags.iter().map(|(t, _)| t.clone()).collect());
        let r = if first { self.answer(image, list) } else { self.answer_uncounted(image, list) };
        Box::pin(async move { r })
    }

    fn tag_metadata<'a>(
        &'a self,
        image: &'a ImageName,
        tag: &'a str,
        _: &'a [Platform],
        _: Option<&'a str>,
    ) -> BoxFuture<'a, Result<TagMetadata, RegistryError>> {
        let r = self.answer(image, |tags| tags.iter().find(|(t, _)| t == tag).map(|(_, m)| m.clone()));
        Box::pin(async move { r })
    }

    fn tag_digest<'a>(&'a self, image: &'a ImageName, tag: &'a str, _: Option<&'a str>) -> BoxFuture<'a, Result<String, RegistryError>> {
        let r = self.answer(image, |tags| tags.iter().find(|(t, _)| t == tag).map(|(_, m)| m.digest.clone()));
        Box::pin(async move { r })
    }

    fn request_count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

/// Revision -> (commit id, files).
type Revisions = HashMap<String, (String, FileSet)>;

/// Repositories by URL: files per revision (branch names and commit ids alike).
#[derive(Default)]
pub(crate) struct MemoryGit {
    repos: Mutex<HashMap<String, Revisions>>,
    /// URLs that never answer (a hung server after `--git-timeout`).
    silent: Mutex<Vec<String>>,
}

impl MemoryGit {
    /// Commits `files` (path, content) as the whole tree of `revision` of `url`.
    pub(crate) fn commit(&self, url: &str, revision: &str, files: &[(&str, &str)]) {
        let mut set = FileSet::default();
        for (path, content) in files {
            set.insert(*path, content.as_bytes().to_vec());
        }
        let mut repos = self.repos.lock().unwrap();
        let revisions = repos.entry(url.to_string()).or_default();
        let commit = format!("{:040x}", revisions.len() + 1);
        revisions.insert(revision.to_string(), (commit, set));
    }

    pub(crate) fn silence(&self, url: &str) {
        self.silent.lock().unwrap().push(url.to_string());
    }
}

fn unsupported<T>(what: &str) -> BoxFuture<'static, Result<T, GitError>>
where
    T: Send + 'static,
{
    let e = GitError::Repo { url: "memory".into(), message: format!("{what} is not modelled by the in-memory git") };
    Box::pin(async move { Err(e) })
}

impl GitRepos for MemoryGit {
    fn snapshots<'a>(
        &'a self,
        url: &'a str,
        revisions: &'a [String],
        _: Option<&'a PushTarget>,
    ) -> BoxFuture<'a, Result<Vec<Result<Snapshot, GitError>>, GitError>> {
        let r = if self.silent.lock().unwrap().iter().any(|u| u == url) {
            Err(GitError::Timeout { what: format!("git repository {url}"), secs: 300 })
        } else {
            let repos = self.repos.lock().unwrap();
            Ok(revisions
                .iter()
                .map(|rev| match repos.get(url).and_then(|r| r.get(rev)) {
                    Some((commit, files)) => Ok(Snapshot {
                        url: url.to_string(),
                        revision: rev.clone(),
                        commit: commit.clone(),
                        files: files.clone(),
                    }),
                    None => Err(GitError::Revision { url: url.to_string(), revision: rev.clone() }),
                })
                .collect())
        };
        Box::pin(async move { r })
    }

    fn remote_heads<'a>(&'a self, _: &'a str, _: &'a str, _: Option<&'a PushTarget>) -> BoxFuture<'a, Result<RemoteHeads, GitError>> {
        unsupported("ls-remote")
    }

    fn branch_commits<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: &'a str,
        _: Option<&'a PushTarget>,
    ) -> BoxFuture<'a, Result<Vec<CommitInfo>, GitError>> {
        unsupported("branch history")
    }

    fn commit_tree_equals<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: &'a str,
        _: &'a [(String, Vec<u8>)],
    ) -> BoxFuture<'a, Result<bool, GitError>> {
        unsupported("tree comparison")
    }

    fn commit_on_base<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: &'a [(String, Vec<u8>)],
        _: &'a str,
        _: &'a Identity,
    ) -> BoxFuture<'a, Result<String, GitError>> {
        unsupported("committing")
    }

    fn push_branch<'a>(
        &'a self,
        _: &'a str,
        _: &'a PushTarget,
        _: &'a str,
        _: &'a str,
        _: &'a Lease,
    ) -> BoxFuture<'a, Result<(), PushError>> {
        Box::pin(async { Err(PushError::Rejected { branch: String::new(), reason: "not modelled".into() }) })
    }
}

pub(crate) struct FixedClock(pub DateTime<Utc>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

pub(crate) struct World {
    pub registry: Arc<MemoryRegistry>,
    pub git: Arc<MemoryGit>,
    pub drivers: Drivers,
}

impl World {
    pub(crate) fn new() -> World {
        let registry = Arc::new(MemoryRegistry::default());
        let git = Arc::new(MemoryGit::default());
        let drivers = Drivers {
            registry: registry.clone(),
            git: git.clone(),
            // The production reader of `--apps`, on the in-memory git: a git URL location.
            apps: Arc::new(Locations::new(git.clone())),
            clock: Arc::new(FixedClock(Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap())),
        };
        World { registry, git, drivers }
    }

    async fn plan(&self) -> PlanReport {
        plan(&self.drivers, PlanOptions { apps: vec![APPS.to_string()] }).await
    }
}

const APPS: &str = "https://git.example.com/org/apps.git";
const DEPLOY: &str = "https://git.example.com/org/deploy.git";

fn application(name: &str, path: &str, image: &str) -> String {
    format!(
        "apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: {name}
  namespace: argocd
  annotations:
    argocd-image-updater.argoproj.io/image-list: app={image}
spec:
  source:
    repoURL: {DEPLOY}
    targetRevision: main
    path: {path}
  destination:
    server: https://kubernetes.default.svc
    namespace: {name}
"
    )
}

fn deployment(image: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
spec:
  template:
    spec:
      containers:
        - name: app
          image: {image} # pinned by the bot
"
    )
}

fn image<'r>(report: &'r PlanReport, app: &str) -> &'r ImageReport {
    let a = report.applications.iter().find(|a| a.name == app).unwrap_or_else(|| panic!("no Application {app}: {report:#?}"));
    &a.images[0]
}

#[tokio::test]
async fn plan_proposes_the_newest_release_from_memory_alone() {
    let w = World::new();
    w.git.commit(APPS, "HEAD", &[("apps/api.yaml", &application("api", "api", "registry.example.com/team/api"))]);
    w.git.commit(DEPLOY, "main", &[("api/deployment.yaml", &deployment("registry.example.com/team/api:1.0.0"))]);
    for tag in ["1.0.0", "1.1.0", "1.2.0-rc.1", "latest"] {
        w.registry.push("registry.example.com/team/api", tag);
    }
    let report = w.plan().await;
    assert!(report.errors.is_empty(), "{report:#?}");
    let api = image(&report, "api");
    assert_eq!((api.current.as_deref(), api.proposed.as_deref(), api.change), (Some("1.0.0"), Some("1.1.0"), Some("minor")));
    assert_eq!(api.source.as_deref(), Some("api/deployment.yaml:10"));
    let changes = &report.applications[0].changes;
    assert_eq!(changes.len(), 1, "{changes:#?}");
    assert_eq!((changes[0].repo.as_str(), changes[0].file.as_str()), (DEPLOY, "api/deployment.yaml"));
    assert!(
        changes[0].diff.contains("-          image: registry.example.com/team/api:1.0.0 # pinned by the bot\n")
            && changes[0].diff.contains("+          image: registry.example.com/team/api:1.1.0 # pinned by the bot\n"),
        "{}",
        changes[0].diff
    );
    // One tag list, nothing else: semver chooses from names.
    assert_eq!(report.stats.registry_requests, 1);
    assert_eq!(report.stats.git_sources, 1);
}

#[tokio::test]
async fn a_failing_registry_and_a_silent_repository_fail_only_their_own_applications() {
    let w = World::new();
    let other = "https://git.example.com/org/other.git";
    let apps = [
        ("apps/api.yaml", application("api", "api", "registry.example.com/team/api")),
        ("apps/web.yaml", application("web", "web", "registry.example.com/team/web")),
        ("apps/job.yaml", application("job", "job", "registry.example.com/team/job").replace(DEPLOY, other)),
    ];
    let apps: Vec<(&str, &str)> = apps.iter().map(|(p, c)| (*p, c.as_str())).collect();
    w.git.commit(APPS, "HEAD", &apps);
    w.git.commit(
        DEPLOY,
        "main",
        &[
            ("api/deployment.yaml", &deployment("registry.example.com/team/api:1.0.0")),
            ("web/deployment.yaml", &deployment("registry.example.com/team/web:1.0.0")),
        ],
    );
    w.git.silence(other);
    w.registry.push("registry.example.com/team/api", "1.0.1");
    w.registry.fail("registry.example.com/team/web");
    let report = w.plan().await;
    assert_eq!(image(&report, "api").proposed.as_deref(), Some("1.0.1"));
    let web = image(&report, "web").error.as_ref().map(ToString::to_string).unwrap_or_default();
    assert!(
        web.contains("Application argocd/web") && web.contains("registry registry.example.com") && web.contains("401"),
        "{web}"
    );
    let job = image(&report, "job").error.as_ref().map(ToString::to_string).unwrap_or_default();
    assert!(job.contains("Application argocd/job") && job.contains(other) && job.contains("--git-timeout"), "{job}");
    // The kinds reach the report: a refused credential needs a person, a silent server may answer
    // next cycle.
    let kind = |app| image(&report, app).error.as_ref().map(|e| (e.kind(), e.kind().transient()));
    assert_eq!(kind("web"), Some((crate::error::ErrorKind::Auth, false)));
    assert_eq!(kind("job"), Some((crate::error::ErrorKind::Network, true)));
    assert!(report.has_errors());
}

#[tokio::test]
async fn kept_drivers_begin_a_new_cycle_each_plan_and_see_new_tags() {
    let w = World::new();
    w.git.commit(APPS, "HEAD", &[("apps/api.yaml", &application("api", "api", "registry.example.com/team/api"))]);
    w.git.commit(DEPLOY, "main", &[("api/deployment.yaml", &deployment("registry.example.com/team/api:1.0.0"))]);
    w.registry.push("registry.example.com/team/api", "1.0.0");
    let first = w.plan().await;
    assert_eq!(image(&first, "api").proposed, None);
    w.registry.push("registry.example.com/team/api", "1.0.1");
    let second = w.plan().await;
    assert_eq!(image(&second, "api").proposed.as_deref(), Some("1.0.1"));
    assert_eq!(w.registry.cycles.load(Ordering::Relaxed), 2);
    assert_eq!(second.stats.registry_requests, 1, "requests are counted per cycle");
}
