//! Crash convergence: a fault-injecting [`ForgeHook`] over the local forge fails one step of a run
//! (or does it and then reports failure); the next, fault-free run must end with exactly one
//! correct pull request and no needless writes. A tags-only fake registry and real git.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use super::*;
use crate::forge::{ForgeCall, ForgeHook, Layered, LocalForge};
use crate::metadata;
use crate::ports::ForgeError;

const BRANCH: &str = "argocd-image-pr/argocd/api";

/// Which forge step fails, and how.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    /// `create_pull_request` fails without creating anything.
    CreatePr,
    /// `create_pull_request` creates the PR, then the answer is lost.
    CreatePrAnswerLost,
    AddLabels,
    /// `add_labels` answers that the forge has no labels.
    LabelsUnsupported,
    /// `update_pull_request` fails (after the push of a new version).
    UpdatePr,
    /// Someone pushes to the branch right before the bot's push.
    BranchMovesBeforePush,
}

/// Fails the step `fault` names of the forge it is layered over.
struct Faulty<'a> {
    fault: Fault,
    /// Runs when the fault `BranchMovesBeforePush` fires.
    mover: Box<dyn Fn() + Send + Sync + 'a>,
    /// Push targets asked for: the first is for `ls-remote`, the second right before the push.
    targets: std::sync::atomic::AtomicU32,
}

fn injected(repo: &RepoRef) -> ForgeError {
    ForgeError { forge: "local", repo: repo.to_string(), kind: ForgeErrorKind::Network, message: "injected fault".into() }
}

impl ForgeHook for Faulty<'_> {
    fn before(&self, call: ForgeCall, repo: &RepoRef) -> Result<(), ForgeError> {
        if call == ForgeCall::AuthorizedPushTarget {
            let n = self.targets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if self.fault == Fault::BranchMovesBeforePush && n == 1 {
                (self.mover)();
            }
            return Ok(());
        }
        match (self.fault, call) {
            (Fault::CreatePr, ForgeCall::CreatePullRequest)
            | (Fault::UpdatePr, ForgeCall::UpdatePullRequest)
            | (Fault::AddLabels, ForgeCall::AddLabels) => Err(injected(repo)),
            (Fault::LabelsUnsupported, ForgeCall::AddLabels) => Err(ForgeError {
                kind: ForgeErrorKind::Unsupported,
                message: "labels are not supported by this server".into(),
                ..injected(repo)
            }),
            _ => Ok(()),
        }
    }

    fn after(&self, call: ForgeCall, repo: &RepoRef, succeeded: bool) -> Result<(), ForgeError> {
        match (self.fault, call) {
            (Fault::CreatePrAnswerLost, ForgeCall::CreatePullRequest) if succeeded => Err(injected(repo)),
            _ => Ok(()),
        }
    }
}

/// A registry that only lists tags (enough for semver), on loopback.
async fn tags_registry(tags: Arc<Mutex<Vec<String>>>) -> String {
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let tags = tags.clone();
        async move {
            let path = uri.path().to_string();
            let body = match path.strip_prefix("/v2/").and_then(|p| p.strip_suffix("/tags/list")) {
                Some(name) => serde_json::json!({ "name": name, "tags": *tags.lock().unwrap() }),
                None => serde_json::json!({}),
            };
            ([("content-type", "application/json")], body.to_string())
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("127.0.0.1:{}", addr.port())
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=Dev", "-c", "user.email=dev@example.com", "-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A working repository, its bare origin (the Applications' repoURL), a forge dir, a registry.
struct World {
    work: tempfile::TempDir,
    origin: tempfile::TempDir,
    forge_dir: tempfile::TempDir,
    tags: Arc<Mutex<Vec<String>>>,
    image: String,
}

impl World {
    async fn new() -> World {
        let tags = Arc::new(Mutex::new(vec!["1.0.0".to_string(), "1.1.0".to_string()]));
        let host = tags_registry(tags.clone()).await;
        let w = World {
            work: tempfile::tempdir().unwrap(),
            origin: tempfile::tempdir().unwrap(),
            forge_dir: tempfile::tempdir().unwrap(),
            tags,
            image: format!("{host}/team/api"),
        };
        git(w.origin.path(), &["init", "-q", "--bare", "-b", "main"]);
        git(w.work.path(), &["init", "-q", "-b", "main"]);
        git(w.work.path(), &["remote", "add", "origin", &w.origin.path().display().to_string()]);
        let url = format!("file://{}", w.origin.path().display());
        let app = format!(
            "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n  name: api\n  namespace: argocd\n  annotations:\n    argocd-image-updater.argoproj.io/image-list: \"api={}:^1.0\"\n    argocd-image-pr.io/labels: deps\nspec:\n  source:\n    repoURL: {url}\n    targetRevision: main\n    path: envs/api\n",
            w.image
        );
        w.write("apps/api.yaml", &app);
        w.write(
            "envs/api/kustomization.yaml",
            &format!("resources: [deployment.yaml]\nimages:\n  - name: {}\n    newTag: 1.0.0\n", w.image),
        );
        w.write(
            "envs/api/deployment.yaml",
            &format!("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\nspec:\n  template:\n    spec:\n      containers:\n        - name: api\n          image: {}\n", w.image),
        );
        git(w.work.path(), &["add", "-A"]);
        git(w.work.path(), &["commit", "-q", "-m", "api"]);
        git(w.work.path(), &["push", "-q", "origin", "main"]);
        w
    }

    fn write(&self, rel: &str, content: &str) {
        let p = self.work.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    fn forge(&self) -> LocalForge {
        LocalForge::new(self.forge_dir.path(), "argocd-image-pr")
    }

    fn repo(&self) -> RepoRef {
        RepoRef::from_url(&format!("file://{}", self.origin.path().display())).unwrap()
    }

    fn head(&self) -> Option<String> {
        let out = Command::new("git").args(["rev-parse", "-q", "--verify", BRANCH]).current_dir(self.origin.path()).output().unwrap();
        out.status.success().then(|| String::from_utf8(out.stdout).unwrap().trim().to_string())
    }

    /// Someone else commits on the bot's branch and pushes.
    fn foreign_push(&self) {
        git(self.work.path(), &["fetch", "-q", "origin", BRANCH]);
        git(self.work.path(), &["checkout", "-q", "-B", "mine", "FETCH_HEAD"]);
        std::fs::write(self.work.path().join("notes.yaml"), "mine: true\n").unwrap();
        git(self.work.path(), &["add", "-A"]);
        git(self.work.path(), &["commit", "-q", "-m", "mine"]);
        git(self.work.path(), &["push", "-q", "-f", "origin", &format!("mine:{BRANCH}")]);
        git(self.work.path(), &["checkout", "-q", "main"]);
    }

    async fn run(&self, fault: Fault, mover: impl Fn() + Send + Sync) -> RunReport {
        let local = self.forge();
        let forge = Layered::with_hook(&local, Faulty { fault, mover: Box::new(mover), targets: Default::default() });
        let options = RunOptions {
            plan: PlanOptions { apps: vec![self.work.path().join("apps").display().to_string()] },
            branch_template: "argocd-image-pr/{{namespace}}/{{name}}".into(),
            identity: Identity { name: "argocd-image-pr".into(), email: "argocd-image-pr@users.noreply.local".into() },
            repositories: vec![],
            templates: Arc::new(Templates::defaults()),
            mode: Default::default(),
        };
        let drivers = Drivers::standard(Default::default(), None, Default::default()).unwrap();
        run_once(&forge, &drivers, options).await
    }

    fn open_prs(&self) -> Vec<PullRequest> {
        self.forge().list(&self.repo()).unwrap().into_iter().filter(|p| p.state == PrState::Open).collect()
    }
}

fn only(report: &RunReport) -> &RunAppReport {
    assert_eq!(report.applications.len(), 1, "{report:#?}");
    &report.applications[0]
}

/// After a fault-free run: exactly one open PR, labelled, whose metadata names the branch head,
/// and a further run writes nothing.
async fn assert_converged(w: &World, want_tag: &str) {
    let prs = w.open_prs();
    assert_eq!(prs.len(), 1, "exactly one open PR: {prs:#?}");
    let pr = &prs[0];
    assert!(pr.title.contains(want_tag), "title {:?}", pr.title);
    assert_eq!(pr.labels, vec!["deps".to_string()]);
    let meta: PrMetadata = metadata::decode(&pr.body).expect("metadata block");
    assert_eq!(Some(meta.commit.clone()), w.head(), "metadata records the branch head");
    assert_eq!(meta.images[0].to.tag.as_deref(), Some(want_tag));
    let again = w.run(Fault::None, || {}).await;
    assert_eq!((again.stats.forge_writes, again.stats.git_pushes), (0, 0), "{again:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn fault_after_push_before_pr_create() {
    let w = World::new().await;
    let r = w.run(Fault::CreatePr, || {}).await;
    assert_eq!(only(&r).action, RunAction::Error, "{r:#?}");
    assert!(w.head().is_some() && w.open_prs().is_empty());
    let r = w.run(Fault::None, || {}).await;
    assert_eq!((only(&r).action, r.stats.git_pushes), (RunAction::Opened, 0), "adopts the pushed branch: {r:#?}");
    assert_converged(&w, "1.1.0").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fault_pr_created_but_the_answer_lost() {
    let w = World::new().await;
    let r = w.run(Fault::CreatePrAnswerLost, || {}).await;
    // The "already exists" path is the same one a retried create takes: list again and adopt.
    assert_eq!(only(&r).action, RunAction::Error, "{r:#?}");
    assert_eq!(w.open_prs().len(), 1);
    let r = w.run(Fault::None, || {}).await;
    assert_eq!(only(&r).action, RunAction::Updated, "labels added: {r:#?}");
    assert_converged(&w, "1.1.0").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fault_after_pr_create_before_labels() {
    let w = World::new().await;
    let r = w.run(Fault::AddLabels, || {}).await;
    assert_eq!(only(&r).action, RunAction::Error, "{r:#?}");
    assert!(w.open_prs()[0].labels.is_empty());
    let r = w.run(Fault::None, || {}).await;
    assert_eq!((r.stats.forge_writes, r.stats.git_pushes), (1, 0), "only the labels: {r:#?}");
    assert_converged(&w, "1.1.0").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fault_after_push_of_a_new_version_before_the_body_edit() {
    let w = World::new().await;
    w.run(Fault::None, || {}).await;
    w.tags.lock().unwrap().push("1.2.0".into());
    let r = w.run(Fault::UpdatePr, || {}).await;
    assert_eq!(only(&r).action, RunAction::Error, "{r:#?}");
    let pushed = w.head();
    // The branch has the bot's new commit; the body still describes the old one. Not foreign:
    let r = w.run(Fault::None, || {}).await;
    assert_eq!((only(&r).action, r.stats.git_pushes), (RunAction::Updated, 0), "{r:#?}");
    assert_eq!(w.head(), pushed);
    assert_converged(&w, "1.2.0").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn push_lease_fails_when_the_branch_moved() {
    let w = World::new().await;
    w.run(Fault::None, || {}).await;
    w.tags.lock().unwrap().push("1.2.0".into());
    let r = w.run(Fault::BranchMovesBeforePush, || w.foreign_push()).await;
    let app = only(&r);
    assert_eq!(app.action, RunAction::Error, "{r:#?}");
    assert!(app.errors[0].to_string().contains("lease"), "{r:#?}");
    // Typed to the top: a moved branch is a conflict the next run resolves by itself.
    assert_eq!(app.errors[0].kind(), crate::error::ErrorKind::Conflict);
    assert!(app.errors[0].kind().transient());
    let theirs = w.head();
    // Next run: the branch holds someone else's commit now; the bot leaves it and says so.
    let r = w.run(Fault::None, || {}).await;
    assert_eq!(only(&r).action, RunAction::Skipped, "{r:#?}");
    assert_eq!(w.head(), theirs, "their commit survives");
    let prs = w.open_prs();
    assert_eq!(prs.len(), 1);
    let comments = w.forge().list_comments(&w.repo(), prs[0].number).await.unwrap();
    assert_eq!(comments.len(), 1, "{comments:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_feature_the_forge_lacks_is_reported_with_the_application() {
    let w = World::new().await;
    let r = w.run(Fault::LabelsUnsupported, || {}).await;
    let app = only(&r);
    assert_eq!(app.action, RunAction::Error, "{r:#?}");
    let unsupported = app.errors.iter().find(|e| e.to_string().contains("labels are not supported"));
    assert_eq!(unsupported.map(|e| e.kind()), Some(crate::error::ErrorKind::Unsupported), "{r:#?}");
    assert!(r.errors.is_empty(), "not a failure of the whole run: {r:#?}");
    assert_eq!(w.open_prs().len(), 1, "the pull request is opened all the same");
}
