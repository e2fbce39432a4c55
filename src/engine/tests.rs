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
    Cluster, ClusterError, ClusterErrorKind, ClusterKind, ClusterObject, Comment, CommitInfo, Forge, ForgeError, ForgeErrorKind,
    GitError, Identity, Lease, NewPullRequest, PrState, PrUpdate, PullRequest, PushError, RegistryError, RegistryErrorKind,
    RemoteHeads, RepoRef, SecretData, TagMetadata,
};

/// A cluster's objects by kind; it has no Secrets.
#[derive(Default)]
pub(crate) struct MemoryCluster {
    objects: Mutex<Vec<(ClusterKind, ClusterObject)>>,
}

impl MemoryCluster {
    /// Adds an object given as YAML (kept as the JSON the API server would send).
    pub fn apply(&self, kind: ClusterKind, yaml: &str) {
        let value: serde_json::Value = serde_saphyr::from_str(yaml).unwrap();
        let meta = &value["metadata"];
        let object = ClusterObject {
            namespace: meta["namespace"].as_str().unwrap_or_default().to_string(),
            name: meta["name"].as_str().unwrap_or_default().to_string(),
            json: serde_json::to_string_pretty(&value).unwrap(),
        };
        self.objects.lock().unwrap().push((kind, object));
    }
}

impl Cluster for MemoryCluster {
    fn list<'a>(&'a self, kind: ClusterKind, namespace: Option<&'a str>) -> BoxFuture<'a, Result<Vec<ClusterObject>, ClusterError>> {
        let found = self
            .objects
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, o)| *k == kind && namespace.is_none_or(|ns| ns == o.namespace))
            .map(|(_, o)| o.clone())
            .collect();
        Box::pin(async move { Ok(found) })
    }

    fn labelled_secrets<'a>(&'a self, _: &'a str, _: &'a str, _: &'a str) -> BoxFuture<'a, Result<Vec<(String, SecretData)>, ClusterError>> {
        Box::pin(async move { Ok(Vec::new()) })
    }

    fn secret<'a>(&'a self, _: &'a str, name: &'a str) -> BoxFuture<'a, Result<SecretData, ClusterError>> {
        Box::pin(async move { Err(ClusterError { kind: ClusterErrorKind::NotFound, message: format!("secrets \"{name}\" not found") }) })
    }

}

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

/// One repository: commits by id, branches, the default branch.
#[derive(Default)]
struct MemoryRepo {
    /// id -> (parent, files, author email, summary)
    commits: HashMap<String, (Option<String>, FileSet, String, String)>,
    branches: std::collections::BTreeMap<String, String>,
    default: String,
}

impl MemoryRepo {
    fn resolve(&self, revision: &str) -> Option<&str> {
        let revision = if revision == "HEAD" { self.default.as_str() } else { revision };
        self.branches.get(revision).map(String::as_str).or_else(|| self.commits.get_key_value(revision).map(|(k, _)| k.as_str()))
    }

    fn add(&mut self, parent: Option<String>, files: FileSet, email: &str, summary: &str) -> String {
        let id = format!("{:040x}", self.commits.len() + 1);
        self.commits.insert(id.clone(), (parent, files, email.to_string(), summary.to_string()));
        id
    }
}

/// Repositories by URL, with just enough of git for the lifecycle: trees per commit, branches,
/// commits built on a base, pushes with a lease.
#[derive(Default)]
pub(crate) struct MemoryGit {
    repos: Mutex<HashMap<String, MemoryRepo>>,
    /// URLs that never answer (a hung server after `--git-timeout`).
    silent: Mutex<Vec<String>>,
}

impl MemoryGit {
    /// Someone commits `files` (path, content) as the whole tree of `branch` of `url`.
    pub(crate) fn commit(&self, url: &str, branch: &str, files: &[(&str, &str)]) {
        let mut set = FileSet::default();
        for (path, content) in files {
            set.insert(*path, content.as_bytes().to_vec());
        }
        let mut repos = self.repos.lock().unwrap();
        let repo = repos.entry(url.to_string()).or_default();
        if repo.default.is_empty() {
            repo.default = branch.to_string();
        }
        let parent = repo.branches.get(branch).cloned();
        let id = repo.add(parent, set, "someone@example.com", "by hand");
        repo.branches.insert(branch.to_string(), id);
    }

    pub(crate) fn silence(&self, url: &str) {
        self.silent.lock().unwrap().push(url.to_string());
    }

    /// The content of `path` on `branch`, if both exist.
    pub(crate) fn file(&self, url: &str, branch: &str, path: &str) -> Option<String> {
        let repos = self.repos.lock().unwrap();
        let repo = repos.get(url)?;
        let (_, files, _, _) = &repo.commits[repo.branches.get(branch)?];
        files.get(path).map(|b| String::from_utf8_lossy(b).into_owned())
    }

    pub(crate) fn has_branch(&self, url: &str, branch: &str) -> bool {
        self.repos.lock().unwrap().get(url).is_some_and(|r| r.branches.contains_key(branch))
    }

    fn delete_branch(&self, url: &str, branch: &str) {
        if let Some(r) = self.repos.lock().unwrap().get_mut(url) {
            r.branches.remove(branch);
        }
    }

    fn branch_tip(&self, url: &str, branch: &str) -> Option<String> {
        self.repos.lock().unwrap().get(url)?.branches.get(branch).cloned()
    }

    fn with_repo<T>(&self, url: &str, f: impl FnOnce(&mut MemoryRepo) -> Result<T, GitError>) -> Result<T, GitError> {
        let mut repos = self.repos.lock().unwrap();
        let repo = repos.get_mut(url).ok_or_else(|| GitError::Repo { url: url.into(), message: "no such repository".into() })?;
        f(repo)
    }
}

fn ready<'a, T: Send + 'a>(value: T) -> BoxFuture<'a, T> {
    Box::pin(async move { value })
}

fn with_changes(files: &FileSet, changes: &[(String, Vec<u8>)]) -> FileSet {
    let mut files = files.clone();
    for (path, content) in changes {
        files.insert(path.clone(), content.clone());
    }
    files
}

impl GitRepos for MemoryGit {
    fn snapshots<'a>(
        &'a self,
        url: &'a str,
        revisions: &'a [String],
        _: Option<&'a PushTarget>,
    ) -> BoxFuture<'a, Result<Vec<Result<Snapshot, GitError>>, GitError>> {
        if self.silent.lock().unwrap().iter().any(|u| u == url) {
            return ready(Err(GitError::Timeout { what: format!("git repository {url}"), secs: 300 }));
        }
        let repos = self.repos.lock().unwrap();
        let read = revisions
            .iter()
            .map(|rev| {
                let repo = repos.get(url);
                match repo.and_then(|r| r.resolve(rev).map(|id| (id, &r.commits[id].1))) {
                    Some((id, files)) => {
                        Ok(Snapshot { url: url.to_string(), revision: rev.clone(), commit: id.to_string(), files: files.clone() })
                    }
                    None => Err(GitError::Revision { url: url.to_string(), revision: rev.clone() }),
                }
            })
            .collect();
        ready(Ok(read))
    }

    fn remote_heads<'a>(&'a self, url: &'a str, prefix: &'a str, _: Option<&'a PushTarget>) -> BoxFuture<'a, Result<RemoteHeads, GitError>> {
        ready(self.with_repo(url, |r| {
            Ok(RemoteHeads {
                default_branch: r.branches.get(&r.default).map(|tip| (r.default.clone(), tip.clone())),
                branches: r.branches.iter().filter(|(b, _)| b.starts_with(prefix)).map(|(b, c)| (b.clone(), c.clone())).collect(),
            })
        }))
    }

    fn branch_commits<'a>(
        &'a self,
        url: &'a str,
        head: &'a str,
        base: &'a str,
        _: Option<&'a PushTarget>,
    ) -> BoxFuture<'a, Result<Vec<CommitInfo>, GitError>> {
        ready(self.with_repo(url, |r| {
            // As `git log base..head`: every commit of head that base cannot reach.
            let mut reachable = std::collections::HashSet::new();
            let mut at = Some(base.to_string());
            while let Some(id) = at {
                at = r.commits.get(&id).and_then(|c| c.0.clone());
                reachable.insert(id);
            }
            let mut out = Vec::new();
            let mut at = Some(head.to_string());
            while let Some(id) = at.filter(|id| !reachable.contains(id)) {
                let (parent, _, email, summary) = &r.commits[&id];
                out.push(CommitInfo {
                    sha: id.clone(),
                    parents: parent.iter().cloned().collect(),
                    author_name: email.clone(),
                    author_email: email.clone(),
                    committer_email: email.clone(),
                    summary: summary.clone(),
                });
                at = parent.clone();
            }
            Ok(out)
        }))
    }

    fn commit_tree_equals<'a>(
        &'a self,
        url: &'a str,
        head: &'a str,
        base: &'a str,
        changes: &'a [(String, Vec<u8>)],
    ) -> BoxFuture<'a, Result<bool, GitError>> {
        ready(self.with_repo(url, |r| {
            let want = with_changes(&r.commits[base].1, changes);
            Ok(r.commits[head].1.files == want.files)
        }))
    }

    fn commit_on_base<'a>(
        &'a self,
        url: &'a str,
        base: &'a str,
        changes: &'a [(String, Vec<u8>)],
        message: &'a str,
        identity: &'a Identity,
    ) -> BoxFuture<'a, Result<String, GitError>> {
        ready(self.with_repo(url, |r| {
            let files = with_changes(&r.commits[base].1, changes);
            Ok(r.add(Some(base.to_string()), files, &identity.email, message.lines().next().unwrap_or("")))
        }))
    }

    fn push_branch<'a>(
        &'a self,
        url: &'a str,
        _: &'a PushTarget,
        branch: &'a str,
        commit: &'a str,
        lease: &'a Lease,
    ) -> BoxFuture<'a, Result<(), PushError>> {
        let mut repos = self.repos.lock().unwrap();
        let Some(repo) = repos.get_mut(url) else {
            return ready(Err(PushError::Rejected { branch: branch.into(), reason: "no such repository".into() }));
        };
        let found = repo.branches.get(branch).cloned();
        let expected = match lease {
            Lease::MustNotExist => None,
            Lease::Expect(sha) => Some(sha.clone()),
        };
        // As git: a branch already at the commit is a push that changes nothing.
        if found != expected && found.as_deref() != Some(commit) {
            return ready(Err(PushError::LeaseFailed { branch: branch.into(), expected, found }));
        }
        repo.branches.insert(branch.to_string(), commit.to_string());
        ready(Ok(()))
    }
}

/// Pull requests and comments kept in memory, branches in the [`MemoryGit`] beside it.
pub(crate) struct MemoryForge {
    git: Arc<MemoryGit>,
    prs: Mutex<Vec<(String, PullRequest)>>,
    comments: Mutex<Vec<(String, Comment)>>,
    now: DateTime<Utc>,
}

impl MemoryForge {
    pub(crate) fn new(git: Arc<MemoryGit>, now: DateTime<Utc>) -> Self {
        MemoryForge { git, prs: Mutex::default(), comments: Mutex::default(), now }
    }

    pub(crate) fn pr(&self, number: u64) -> Option<PullRequest> {
        self.prs.lock().unwrap().iter().find(|(_, p)| p.number == number).map(|(_, p)| p.clone())
    }

    pub(crate) fn comments_on(&self, number: u64) -> Vec<String> {
        self.comments.lock().unwrap().iter().filter(|(_, c)| c.pr == number).map(|(_, c)| c.body.clone()).collect()
    }

    fn refreshed(&self, url: &str, mut pr: PullRequest) -> PullRequest {
        pr.head_sha = self.git.branch_tip(url, &pr.head).unwrap_or_default();
        pr
    }
}

fn not_found(repo: &RepoRef, what: String) -> ForgeError {
    ForgeError { forge: "memory", repo: repo.to_string(), kind: ForgeErrorKind::NotFound, message: what }
}

impl Forge for MemoryForge {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn push_target(&self, repo: &RepoRef) -> PushTarget {
        PushTarget { url: repo.url.clone(), username: None, password: None }
    }

    async fn default_branch(&self, repo: &RepoRef) -> Result<String, ForgeError> {
        Ok(self.git.with_repo(&repo.url, |r| Ok(r.default.clone())).unwrap_or_default())
    }

    async fn list_pull_requests(&self, repo: &RepoRef, head_prefix: &str) -> Result<Vec<PullRequest>, ForgeError> {
        let prs = self.prs.lock().unwrap().clone();
        let mut out: Vec<PullRequest> = prs
            .into_iter()
            .filter(|(u, p)| *u == repo.url && p.head.starts_with(head_prefix))
            .map(|(u, p)| self.refreshed(&u, p))
            .collect();
        out.sort_by_key(|p| std::cmp::Reverse(p.number));
        Ok(out)
    }

    async fn create_pull_request(&self, repo: &RepoRef, new: &NewPullRequest) -> Result<PullRequest, ForgeError> {
        let mut prs = self.prs.lock().unwrap();
        if prs.iter().any(|(u, p)| *u == repo.url && p.head == new.head && p.state == PrState::Open) {
            return Err(ForgeError {
                forge: "memory",
                repo: repo.to_string(),
                kind: ForgeErrorKind::Conflict,
                message: format!("a pull request for {} exists", new.head),
            });
        }
        let number = prs.len() as u64 + 1;
        let pr = PullRequest {
            number,
            author: "argocd-image-pr".into(),
            url: format!("memory://{}/pull/{number}", repo.slug),
            title: new.title.clone(),
            body: new.body.clone(),
            head: new.head.clone(),
            head_sha: self.git.branch_tip(&repo.url, &new.head).unwrap_or_default(),
            base: new.base.clone(),
            state: PrState::Open,
            draft: new.draft,
            labels: vec![],
            requested_reviewers: vec![],
            requested_teams: vec![],
            assignees: vec![],
            auto_merge: false,
            merge_commit_sha: None,
            updated_at: Some(self.now),
            closed_at: None,
        };
        prs.push((repo.url.clone(), pr.clone()));
        Ok(pr)
    }

    async fn update_pull_request(&self, repo: &RepoRef, number: u64, update: &PrUpdate) -> Result<PullRequest, ForgeError> {
        let mut prs = self.prs.lock().unwrap();
        let (_, pr) = prs
            .iter_mut()
            .find(|(u, p)| *u == repo.url && p.number == number)
            .ok_or_else(|| not_found(repo, format!("pull request #{number}")))?;
        if let Some(t) = &update.title {
            pr.title = t.clone();
        }
        if let Some(b) = &update.body {
            pr.body = b.clone();
        }
        if let Some(s) = update.state {
            pr.state = s;
            pr.closed_at = (s == PrState::Closed).then_some(self.now);
        }
        pr.updated_at = Some(self.now);
        let pr = pr.clone();
        drop(prs);
        Ok(self.refreshed(&repo.url, pr))
    }

    async fn list_comments(&self, repo: &RepoRef, number: u64) -> Result<Vec<Comment>, ForgeError> {
        Ok(self.comments.lock().unwrap().iter().filter(|(u, c)| *u == repo.url && c.pr == number).map(|(_, c)| c.clone()).collect())
    }

    async fn list_repo_comments(&self, repo: &RepoRef, since: Option<DateTime<Utc>>) -> Result<Vec<Comment>, ForgeError> {
        let all = self.comments.lock().unwrap();
        Ok(all.iter().filter(|(u, c)| *u == repo.url && since.is_none_or(|s| c.created_at >= s)).map(|(_, c)| c.clone()).collect())
    }

    async fn create_comment(&self, repo: &RepoRef, number: u64, body: &str) -> Result<Comment, ForgeError> {
        let mut all = self.comments.lock().unwrap();
        let id = all.len() as u64 + 1;
        let c = Comment {
            id,
            pr: number,
            author: "argocd-image-pr".into(),
            body: body.into(),
            created_at: self.now,
            url: format!("memory://{}/pull/{number}#{id}", repo.slug),
        };
        all.push((repo.url.clone(), c.clone()));
        Ok(c)
    }

    async fn add_labels(&self, _: &RepoRef, _: u64, _: &[String]) -> Result<(), ForgeError> {
        Ok(())
    }

    async fn request_reviewers(&self, _: &RepoRef, _: u64, _: &[crate::ports::Reviewer]) -> Result<(), ForgeError> {
        Ok(())
    }

    async fn add_assignees(&self, _: &RepoRef, _: u64, _: &[String]) -> Result<(), ForgeError> {
        Ok(())
    }

    async fn enable_auto_merge(&self, _: &RepoRef, _: u64, _: crate::ports::MergeMethod) -> Result<(), ForgeError> {
        Ok(())
    }

    async fn delete_branch(&self, repo: &RepoRef, branch: &str) -> Result<(), ForgeError> {
        self.git.delete_branch(&repo.url, branch);
        Ok(())
    }

    async fn access_level(&self, _: &RepoRef, _: &str) -> Result<crate::ports::AccessLevel, ForgeError> {
        Ok(crate::ports::AccessLevel::Write)
    }

    async fn add_reaction(&self, _: &RepoRef, _: u64, _: u64, _: crate::ports::Reaction) -> Result<(), ForgeError> {
        Ok(())
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
    pub cluster: Arc<MemoryCluster>,
    pub drivers: Drivers,
}

impl World {
    pub(crate) fn new() -> World {
        let registry = Arc::new(MemoryRegistry::default());
        let git = Arc::new(MemoryGit::default());
        let cluster = Arc::new(MemoryCluster::default());
        let drivers = Drivers {
            registry: registry.clone(),
            git: git.clone(),
            // The production reader of `--apps`, on the in-memory git: a git URL location.
            apps: Arc::new(Locations::new(git.clone(), cluster.clone())),
            repo_credentials: Arc::new(crate::cluster::ClusterRepoCredentials::new(cluster.clone())),
            clock: Arc::new(FixedClock(Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap())),
        };
        World { registry, git, cluster, drivers }
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

/// What a plan decided, without where the Applications were read: for comparing two plans.
fn decisions(report: &PlanReport) -> serde_json::Value {
    let apps: Vec<_> = report.applications.iter().map(|a| (a.name.clone(), a.images.clone(), a.changes.clone())).collect();
    serde_json::to_value(apps).unwrap()
}

fn image<'r>(report: &'r PlanReport, app: &str) -> &'r ImageReport {
    let a = report.applications.iter().find(|a| a.name == app).unwrap_or_else(|| panic!("no Application {app}: {report:#?}"));
    &a.images[0]
}

#[tokio::test]
async fn plan_proposes_the_newest_release_from_memory_alone() {
    let w = World::new();
    w.git.commit(APPS, "main", &[("apps/api.yaml", &application("api", "api", "registry.example.com/team/api"))]);
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
    w.git.commit(APPS, "main", &apps);
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

/// `--apps k8s`: the Applications of the cluster are planned exactly as their manifests in git
/// are; one in both is planned once, as the cluster has it; a broken one is an error naming it.
#[tokio::test]
async fn applications_from_the_cluster_plan_as_from_git_and_the_cluster_wins() {
    let w = World::new();
    let api = application("api", "api", "registry.example.com/team/api");
    w.git.commit(APPS, "main", &[("apps/api.yaml", &api)]);
    w.git.commit(
        DEPLOY,
        "main",
        &[
            ("api/deployment.yaml", &deployment("registry.example.com/team/api:1.0.0")),
            ("web/deployment.yaml", &deployment("registry.example.com/team/web:1.0.0")),
        ],
    );
    w.registry.push("registry.example.com/team/api", "1.1.0");
    w.registry.push("registry.example.com/team/web", "1.0.1");
    let from_git = w.plan().await;

    w.cluster.apply(ClusterKind::Application, &api);
    let from_cluster = plan(&w.drivers, PlanOptions { apps: vec!["k8s".into()] }).await;
    assert!(from_cluster.errors.is_empty(), "{from_cluster:#?}");
    assert_eq!(decisions(&from_cluster), decisions(&from_git), "the same plan");
    assert_eq!(from_cluster.applications[0].file, "k8s:argocd/api");

    // In the cluster `api` follows another path than its manifest in git says; web and a broken
    // one are only in the cluster (another namespace).
    w.cluster.objects.lock().unwrap().clear();
    w.cluster.apply(ClusterKind::Application, &api.replace("path: api", "path: web").replace("team/api", "team/web"));
    w.cluster.apply(ClusterKind::Application, "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  namespace: team-b\n");
    let both = plan(&w.drivers, PlanOptions { apps: vec![APPS.to_string(), "k8s".into()] }).await;
    assert_eq!(both.applications.len(), 1, "{both:#?}");
    let proposed = image(&both, "api");
    assert_eq!(proposed.proposed.as_deref(), Some("1.0.1"), "the cluster's spec is the one planned: {proposed:#?}");
    assert!(!both.errors.iter().any(|e| e.error.to_string().contains("defined 2 times")), "{:#?}", both.errors);
    let broken = both.errors.iter().map(|e| format!("{}: {}", e.file, e.error)).collect::<Vec<_>>().join("\n");
    assert!(broken.contains("k8s:team-b/") && broken.contains("no metadata.name"), "{broken}");

    // Only namespace team-b: nothing of argocd's.
    let team_b = plan(&w.drivers, PlanOptions { apps: vec!["k8s:team-b".into()] }).await;
    assert!(team_b.applications.is_empty(), "{team_b:#?}");
}

/// An Application read from the cluster that sets its image in its own spec (`kustomize.images`)
/// cannot be changed by a pull request: an error naming it, not an edit Argo CD would override.
#[tokio::test]
async fn an_image_set_in_a_cluster_applications_own_spec_is_an_error_not_an_edit() {
    let w = World::new();
    w.git.commit(
        DEPLOY,
        "main",
        &[
            ("api/kustomization.yaml", "resources:\n  - deployment.yaml\n"),
            ("api/deployment.yaml", &deployment("registry.example.com/team/api:1.0.0")),
        ],
    );
    w.registry.push("registry.example.com/team/api", "1.1.0");
    let app = application("api", "api", "registry.example.com/team/api")
        .replace("    path: api\n", "    path: api\n    kustomize:\n      images:\n        - registry.example.com/team/api:1.0.0\n");
    w.cluster.apply(ClusterKind::Application, &app);
    let report = plan(&w.drivers, PlanOptions { apps: vec!["k8s".into()] }).await;
    let api = &report.applications[0];
    assert!(api.changes.is_empty(), "{:#?}", api.changes);
    let error = api.images[0].error.as_ref().map(ToString::to_string).unwrap_or_default();
    assert!(error.contains("k8s:argocd/api") && error.contains("kustomize.images") && error.contains("cluster"), "{error}");
}

/// An ImageUpdater (in git beside the Applications, or in the cluster) decides as the equivalent
/// annotations do; a broken one holds back the Applications of its namespace, naming itself.
#[tokio::test]
async fn an_image_updater_decides_as_the_equivalent_annotations() {
    let w = World::new();
    let bare = |name: &str, path: &str| {
        application(name, path, "x").replace("  annotations:\n    argocd-image-updater.argoproj.io/image-list: app=x\n", "  labels:\n    tier: web\n")
    };
    let annotated = application("api", "api", "registry.example.com/team/api")
        .replace("app=registry.example.com/team/api", "app=registry.example.com/team/api:1.x\n    argocd-image-updater.argoproj.io/app.ignore-tags: 1.2.0");
    w.git.commit(
        DEPLOY,
        "main",
        &[("api/deployment.yaml", &deployment("registry.example.com/team/api:1.0.0"))],
    );
    for tag in ["1.1.0", "1.2.0", "2.0.0"] {
        w.registry.push("registry.example.com/team/api", tag);
    }
    w.git.commit(APPS, "main", &[("apps/api.yaml", &annotated)]);
    let by_annotations = w.plan().await;
    assert_eq!(image(&by_annotations, "api").proposed.as_deref(), Some("1.1.0"), "{by_annotations:#?}");

    let updater = "apiVersion: argocd-image-updater.argoproj.io/v1alpha1
kind: ImageUpdater
metadata:
  name: web
  namespace: argocd
spec:
  commonUpdateSettings:
    ignoreTags: [\"1.2.0\"]
  applicationRefs:
    - namePattern: \"a*\"
      labelSelectors: {matchLabels: {tier: web}}
      images:
        - alias: app
          imageName: registry.example.com/team/api:1.x
";
    // In git, next to the Application (which has no annotations of its own).
    w.git.commit(APPS, "main", &[("apps/api.yaml", &bare("api", "api")), ("apps/updater.yaml", updater)]);
    let by_updater = w.plan().await;
    assert!(by_updater.errors.is_empty(), "{:#?}", by_updater.errors);
    assert_eq!(decisions(&by_updater), decisions(&by_annotations), "the same plan");

    // In the cluster: the same.
    w.cluster.apply(ClusterKind::Application, &bare("api", "api"));
    w.cluster.apply(ClusterKind::ImageUpdater, updater);
    let from_cluster = plan(&w.drivers, PlanOptions { apps: vec!["k8s".into()] }).await;
    assert!(from_cluster.errors.is_empty(), "{:#?}", from_cluster.errors);
    assert_eq!(decisions(&from_cluster), decisions(&by_annotations));

    // A broken one: an error naming it, and nothing of its namespace planned.
    w.cluster.apply(ClusterKind::ImageUpdater, &updater.replace("name: web", "name: broken").replace("namePattern", "namePatern"));
    let broken = plan(&w.drivers, PlanOptions { apps: vec!["k8s".into()] }).await;
    assert!(broken.applications.is_empty(), "{:#?}", broken.applications);
    let errors = broken.errors.iter().map(|e| format!("{}: {}", e.file, e.error)).collect::<Vec<_>>().join("\n");
    assert!(errors.contains("k8s:argocd/broken") && errors.contains("namePatern"), "{errors}");
    assert!(errors.contains("Application argocd/api is not planned"), "{errors}");
}

/// Every ImageUpdater example of AIU's documentation, planned both ways on one fleet: the
/// Application with the annotations the documentation gives, and the same Application without
/// them next to the ImageUpdater. The plans are the same.
#[tokio::test]
async fn each_documented_image_updater_example_plans_as_its_annotations() {
    use crate::image_updater::tests::EXAMPLES;
    let tags = ["1.0.0", "1.1.0", "1.1.1", "1.17.10", "1.17.11", "1.20.0", "1.20.1", "1.21.0", "2.0.0", "6.2.0", "6.2.1", "13.1", "13.2",
        "v1.0.1", "v1.0.1-prod", "v1.1.0-prod", "v2.0.1", "latest"];
    let mut proposals = 0;
    for (n, e) in EXAMPLES.iter().enumerate() {
        let w = World::new();
        let updater = crate::image_updater::parse("updater.yaml", e.updater).unwrap();
        let annotations: std::collections::BTreeMap<String, String> =
            e.annotations.iter().map(|(k, v)| (format!("argocd-image-updater.argoproj.io/{k}"), v.to_string())).collect();
        let specs = crate::annotations::parse(&annotations, &Arc::default()).unwrap();
        let mut containers = String::new();
        for spec in specs.images.iter().flatten() {
            for tag in tags {
                w.registry.push(&spec.name.to_string(), tag);
            }
            containers.push_str(&format!("        - name: {}\n          image: {}:1.0.0\n", spec.alias, spec.name));
        }
        let workload = format!("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app\nspec:\n  template:\n    spec:\n      containers:\n{containers}");
        w.git.commit(DEPLOY, "main", &[("app/deployment.yaml", &workload)]);
        let labels: String = e.labels.iter().map(|(k, v)| format!("    {k}: \"{v}\"\n")).collect();
        let manifest = |extra: &str| {
            format!(
                "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: {}\n  namespace: {}\n  labels:\n    demo: \"yes\"\n{labels}  annotations:\n    note: example {n}\n{extra}spec:\n  source:\n    repoURL: {DEPLOY}\n    targetRevision: main\n    path: app\n  destination:\n    namespace: x\n",
                e.app, updater.namespace
            )
        };
        let own: String = annotations.iter().map(|(k, v)| format!("    {k}: {}\n", serde_json::to_string(v).unwrap())).collect();
        w.git.commit(APPS, "main", &[("apps/app.yaml", &manifest(&own))]);
        let by_annotations = w.plan().await;
        w.git.commit(APPS, "main", &[("apps/app.yaml", &manifest("")), ("apps/updater.yaml", e.updater)]);
        let by_updater = w.plan().await;
        assert!(by_updater.errors.is_empty(), "example {n}: {:#?}", by_updater.errors);
        assert_eq!(decisions(&by_updater), decisions(&by_annotations), "example {n} ({}): the same plan", e.app);
        assert_eq!(by_updater.applications.len(), 1, "example {n}");
        proposals += by_updater.applications[0].images.iter().filter(|i| i.proposed.is_some()).count();
    }
    // The plans say something: most examples' images get a proposal.
    assert!(proposals >= 10, "{proposals} proposals");
}

/// Repository credentials that cannot be read: nothing for `git` (AIU's everyday method; the
/// source is read anonymously), an error naming the Secret for `git:secret:`.
#[tokio::test]
async fn git_credentials_the_cluster_cannot_give() {
    struct Refusing;
    impl crate::ports::RepoCredentials for Refusing {
        fn lookup<'a>(
            &'a self,
            requests: &'a [(String, crate::ports::GitCredentialRef)],
        ) -> BoxFuture<'a, Vec<crate::ports::RepoCredential>> {
            let answers = requests
                .iter()
                .map(|(_, reference)| {
                    Err(ClusterError { kind: ClusterErrorKind::Config, message: format!("no Kubernetes configuration ({reference:?})") })
                })
                .collect();
            Box::pin(async move { answers })
        }
    }
    let mut w = World::new();
    w.drivers.repo_credentials = Arc::new(Refusing);
    w.git.commit(DEPLOY, "main", &[("api/deployment.yaml", &deployment("registry.example.com/team/api:1.0.0"))]);
    w.registry.push("registry.example.com/team/api", "1.1.0");
    let with_method = |method: &str| {
        application("api", "api", "registry.example.com/team/api").replace(
            "image-list: app=registry.example.com/team/api\n",
            &format!("image-list: app=registry.example.com/team/api\n    argocd-image-updater.argoproj.io/write-back-method: {method}\n"),
        )
    };
    w.git.commit(APPS, "main", &[("apps/api.yaml", &with_method("git"))]);
    let report = w.plan().await;
    assert_eq!(image(&report, "api").proposed.as_deref(), Some("1.1.0"), "{report:#?}");
    w.git.commit(APPS, "main", &[("apps/api.yaml", &with_method("git:secret:argocd/deploy-creds"))]);
    let report = w.plan().await;
    let error = image(&report, "api").error.as_ref().map(ToString::to_string).unwrap_or_default();
    assert!(error.contains("Secret argocd/deploy-creds") && error.contains(DEPLOY) && error.contains("argocd/api"), "{error}");
}

#[tokio::test]
/// The engine begins a registry cycle per plan (that the OCI client then forgets its tag lists
/// is `registry::tests::the_driver_keeps_its_client_across_cycles_and_reloads_changed_settings`).
async fn kept_drivers_begin_a_registry_cycle_for_each_plan() {
    let w = World::new();
    w.git.commit(APPS, "main", &[("apps/api.yaml", &application("api", "api", "registry.example.com/team/api"))]);
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

fn run_options() -> RunOptions {
    RunOptions {
        plan: PlanOptions { apps: vec![APPS.to_string()] },
        branch_template: crate::planner::DEFAULT_BRANCH_TEMPLATE.into(),
        identity: Identity { name: "argocd-image-pr".into(), email: "argocd-image-pr@users.noreply.local".into() },
        repositories: vec![],
        templates: Arc::new(crate::templates::Templates::defaults()),
        mode: Mode::Run,
    }
}

/// The whole lifecycle through every phase of `run_once`, on in-memory drivers and an
/// in-memory forge: open, a quiet run, a newer version in place, the base catching up.
#[tokio::test]
async fn run_once_keeps_one_living_pr_from_memory_alone() {
    let w = World::new();
    let forge = MemoryForge::new(w.git.clone(), Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap());
    let branch = "argocd-image-pr/argocd/api";
    w.git.commit(APPS, "main", &[("apps/api.yaml", &application("api", "api", "registry.example.com/team/api"))]);
    w.git.commit(DEPLOY, "main", &[("api/deployment.yaml", &deployment("registry.example.com/team/api:1.0.0"))]);
    w.registry.push("registry.example.com/team/api", "1.0.0");
    w.registry.push("registry.example.com/team/api", "1.1.0");
    let run = || run_once(&forge, &w.drivers, run_options());

    let first = run().await;
    assert!(first.errors.is_empty(), "{first:#?}");
    let app = &first.applications[0];
    assert_eq!((app.action, app.pr, app.branch.as_deref()), (RunAction::Opened, Some(1), Some(branch)), "{first:#?}");
    assert_eq!(first.stats.git_pushes, 1);
    let pushed = w.git.file(DEPLOY, branch, "api/deployment.yaml").unwrap_or_default();
    assert!(pushed.contains("image: registry.example.com/team/api:1.1.0 # pinned by the bot"), "{pushed}");
    let pr = forge.pr(1).unwrap();
    assert_eq!((pr.base.as_str(), pr.state), ("main", PrState::Open));
    assert!(pr.title.contains("1.1.0") && pr.body.contains("argocd-image-pr:metadata"), "{pr:#?}");

    let quiet = run().await;
    assert_eq!(quiet.applications[0].action, RunAction::Unchanged, "{quiet:#?}");
    assert_eq!((quiet.stats.forge_writes, quiet.stats.git_pushes), (0, 0), "nothing new, nothing written");

    w.registry.push("registry.example.com/team/api", "1.2.0");
    let newer = run().await;
    assert_eq!((newer.applications[0].action, newer.applications[0].pr), (RunAction::Updated, Some(1)), "{newer:#?}");
    let pushed = w.git.file(DEPLOY, branch, "api/deployment.yaml").unwrap_or_default();
    assert!(pushed.contains("api:1.2.0"), "the branch is regenerated with the newer version: {pushed}");
    assert!(forge.pr(1).unwrap().title.contains("1.2.0"));

    // Someone puts 1.2.0 on the base by hand: the PR is obsolete, closed with a note, its
    // branch deleted.
    w.git.commit(DEPLOY, "main", &[("api/deployment.yaml", &deployment("registry.example.com/team/api:1.2.0"))]);
    let caught_up = run().await;
    assert_eq!(caught_up.applications[0].action, RunAction::Closed, "{caught_up:#?}");
    assert_eq!(forge.pr(1).unwrap().state, PrState::Closed);
    assert!(!w.git.has_branch(DEPLOY, branch), "the branch is deleted");
    assert_eq!(forge.comments_on(1).len(), 1, "{:?}", forge.comments_on(1));
}
