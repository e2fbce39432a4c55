//! `argocd-image-pr run --once --forge github` end to end: the real binary against the fake
//! GitHub Enterprise (REST, GraphQL and git smart HTTP, every request and answer checked against
//! GitHub's OpenAPI description) and a real registry. The Applications point at the fake's git
//! URL; the bot clones, pushes and calls the API with the same token (or GitHub App). Each test
//! is one story of the pull-request lifecycle (docs/lifecycle.md).

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::cli::{Plan, PlanOutput};
use support::fake_github::{self, FakeGithub, RateLimit, Recorded, Role};
use support::gitops::{App, deployment, kustomization};
use support::registry::{Auth, TestRegistry};

const REPO: &str = "org/gitops";
const BRANCH: &str = "argocd-image-pr/argocd/api";
const METADATA: &str = "<!-- argocd-image-pr:metadata {";

/// How the bot signs in.
enum Login {
    Token,
    /// App id and the private key's file; the server named by its REST base (`.../api/v3`).
    App(u64, tempfile::NamedTempFile),
}

/// A registry with `team/api`; the fake GitHub with `org/gitops`, where the Application `api`
/// (Kustomize, `^1.0`) has its manifests; a directory with the Application manifests (`--apps`).
/// People change `org/gitops` by pushing as `alice`.
struct World {
    reg: TestRegistry,
    gh: FakeGithub,
    apps: tempfile::TempDir,
    image: String,
    login: Login,
}

impl World {
    fn new(tags: &[&str], running: &str) -> World {
        World::with_app(tags, running, &[])
    }

    /// As [`World::new`], with our own annotations on `api`.
    fn with_app(tags: &[&str], running: &str, ours: &[(&str, &str)]) -> World {
        let reg = TestRegistry::start(Auth::Anonymous);
        reg.push_tags("team/api", tags);
        let image = reg.image("team/api");
        let gh = FakeGithub::start();
        gh.create_repo(REPO, &[("README.md", "GitOps\n")]);
        for person in ["alice", "bob"] {
            gh.set_permission(REPO, person, Role::Write);
        }
        let world = World { reg, gh, apps: tempfile::tempdir().unwrap(), image, login: Login::Token };
        world.add_app("api", running, ours);
        world
    }

    fn url(&self) -> String {
        self.gh.git_url(REPO)
    }

    fn app(&self, name: &str) -> App {
        App::new(name, &self.url(), &format!("envs/{name}")).image_list(&format!("api={}:^1.0", self.image))
    }

    /// Pushes `api`'s manifests running `running` to `main` (as alice) and writes its Application.
    fn add_app(&self, name: &str, running: &str, ours: &[(&str, &str)]) {
        self.set_running(name, running);
        self.gh.push_commit(REPO, "main", &[(&format!("envs/{name}/deployment.yaml"), Some(&deployment(name, &self.image)))], "alice");
        self.write_app(name, &with_our_annotations(&self.app(name).to_yaml(), ours));
    }

    /// A person changes the version on `main` by hand; returns the commit.
    fn set_running(&self, name: &str, tag: &str) -> String {
        let k = kustomization(&self.image, tag);
        self.gh.push_commit(REPO, "main", &[(&format!("envs/{name}/kustomization.yaml"), Some(&k))], "alice")
    }

    fn write_app(&self, name: &str, yaml: &str) {
        let dir = self.apps.path().join("apps");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.yaml")), yaml).unwrap();
    }

    /// `run --once --forge github` against the fake; the fake's request log starts afresh.
    fn run(&self) -> PlanOutput {
        self.run_apps(&self.apps.path().join("apps").display().to_string())
    }

    /// [`World::run`] reading the Applications from `apps` (a directory or a git URL).
    fn run_apps(&self, apps: &str) -> PlanOutput {
        self.gh.clear_requests();
        let cmd = Plan::command(&["run", "--once", "--forge", "github"]).arg("--github-url");
        let cmd = match &self.login {
            Login::Token => cmd.arg(self.gh.url()).env("GITHUB_TOKEN", fake_github::TOKEN),
            Login::App(id, key) => cmd
                .arg(self.gh.api_url())
                .arg("--github-app-id")
                .arg(id.to_string())
                .arg("--github-app-key")
                .arg(key.path()),
        };
        cmd.apps(apps).json()
    }

    /// git in the fake's bare repository.
    fn git(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("git").args(args).current_dir(self.gh.bare_path(REPO)).output().unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn sha(&self, branch: &str) -> Option<String> {
        self.gh.branch_sha(REPO, branch)
    }

    /// The API operations of the last run, in order (git's smart HTTP left out).
    fn api_calls(&self) -> Vec<String> {
        self.gh.requests().iter().filter(|r| r.operation != "git").map(|r| r.operation.clone()).collect()
    }

    /// The git smart-HTTP requests of the last run: service, ref advertisement or pack, status.
    fn git_calls(&self) -> Vec<String> {
        self.gh.requests().iter().filter(|r| r.operation == "git").map(git_call).collect()
    }

    fn open_pulls(&self) -> Vec<fake_github::Pull> {
        self.gh.pulls(REPO).into_iter().filter(|p| p.open).collect()
    }

    /// The branch is exactly one commit of the bot's on `main`'s tip, changing `api` from
    /// `from` to `to` and nothing else.
    fn assert_branch_is_one_commit(&self, branch: &str, from: &str, to: &str) {
        assert_eq!(self.git(&["rev-list", "--count", &format!("main..{branch}")]).trim(), "1", "exactly one commit");
        assert_eq!(self.git(&["rev-parse", &format!("{branch}^")]).trim(), self.sha("main").unwrap(), "on top of the current base");
        let diff = self.git(&["diff", "main", branch]);
        let name = branch.rsplit('/').next().unwrap();
        assert_eq!(diff.matches("diff --git").count(), 1, "one file changes:\n{diff}");
        assert!(diff.contains(&format!("+++ b/envs/{name}/kustomization.yaml")), "{diff}");
        assert!(diff.contains(&format!("-    newTag: {from}\n+    newTag: {to}\n")), "the exact edit:\n{diff}");
        assert_eq!(diff.lines().filter(|l| l.starts_with('+') || l.starts_with('-')).count(), 4, "{diff}");
        let who = self.git(&["log", "-1", "--format=%cn <%ce>", branch]);
        assert_eq!(who.trim(), "argocd-image-pr <argocd-image-pr@users.noreply.local>");
    }
}

fn git_call(r: &Recorded) -> String {
    let service = if r.path.ends_with("/git-receive-pack") || r.query.contains("git-receive-pack") {
        "receive-pack"
    } else {
        "upload-pack"
    };
    let kind = if r.path.ends_with("/info/refs") { "refs" } else { "pack" };
    format!("{service} {kind} {}", r.status)
}

/// Adds `argocd-image-pr.io/` annotations to an Application manifest.
fn with_our_annotations(yaml: &str, ours: &[(&str, &str)]) -> String {
    let lines: String =
        ours.iter().map(|(k, v)| format!("    argocd-image-pr.io/{k}: {}\n", serde_json::to_string(v).unwrap())).collect();
    yaml.replacen("  annotations:\n", &format!("  annotations:\n{lines}"), 1)
}

fn assert_action(out: &PlanOutput, name: &str, action: &str) {
    assert_eq!(out.app(name)["action"], action, "{name}: action{out}");
}

fn stat(out: &PlanOutput, key: &str) -> u64 {
    out.plan()["stats"][key].as_u64().unwrap_or_else(|| panic!("no stats.{key}{out}"))
}

/// The hidden metadata block of a PR body, parsed.
fn metadata(body: &str) -> Value {
    let start = body.rfind(METADATA).unwrap_or_else(|| panic!("no metadata block in:\n{body}")) + METADATA.len() - 1;
    let end = body[start..].find(" -->").unwrap() + start;
    serde_json::from_str(&body[start..end]).unwrap()
}

#[test]
fn opens_one_pr_with_its_settings_then_writes_nothing_then_updates_it_in_place() {
    let ours = [
        ("labels", "deps, env/dev"),
        ("reviewers", "alice"),
        ("team-reviewers", "platform"),
        ("assignees", "bob"),
        ("draft", "true"),
        ("auto-merge", "squash"),
    ];
    let w = World::with_app(&["1.0.0", "1.1.0"], "1.0.0", &ours);

    // Open
    let out = w.run();
    out.assert_exit(0);
    assert_action(&out, "api", "opened");
    let pulls = w.gh.pulls(REPO);
    assert_eq!(pulls.len(), 1, "one PR");
    let pr = &pulls[0];
    assert_eq!(out.app("api")["pr"], pr.number, "{out}");
    assert_eq!(out.app("api")["url"], format!("{}/{REPO}/pull/{}", w.gh.url(), pr.number), "{out}");
    assert_eq!((pr.head.as_str(), pr.base.as_str(), pr.user.as_str()), (BRANCH, "main", fake_github::BOT_USER));
    w.assert_branch_is_one_commit(BRANCH, "1.0.0", "1.1.0");
    let head1 = w.sha(BRANCH).unwrap();
    assert_eq!(pr.title, "chore(deploy): update api to 1.1.0 in api");
    let body = pr.body.clone().unwrap();
    assert!(body.starts_with("### Deploy review: `api`"), "{body}");
    assert!(
        body.contains("cluster `https://kubernetes.default.svc`, namespace `api`"),
        "the destination from the Application:\n{body}"
    );
    // semver chooses from the tag list alone: no manifest read, so no build date or digest.
    assert!(body.contains("| `api` | `1.0.0` → `1.1.0` | minor | unknown | unknown |"), "{body}");
    let meta = metadata(&body);
    assert_eq!(meta["application"], "argocd/api");
    assert_eq!(meta["commit"], head1, "the metadata records the bot's commit");
    assert_eq!(meta["images"][0]["to"]["tag"], "1.1.0");
    assert_eq!(pr.labels, ["deps", "env/dev"]);
    assert_eq!(pr.requested_reviewers, ["alice"]);
    assert_eq!(pr.requested_teams, ["platform"]);
    assert_eq!(pr.assignees, ["bob"]);
    assert!(pr.draft);
    assert_eq!(pr.auto_merge, Some(("squash".into(), fake_github::BOT_USER.into())), "auto-merge over GraphQL");
    assert_eq!(
        w.api_calls(),
        [
            "pulls/list",
            "pulls/create",
            "issues/add-labels",
            "issues/add-assignees",
            "pulls/request-reviewers",
            "graphql"
        ],
        "list once, then open and dress the PR"
    );
    assert_eq!(w.gh.pushes(), 1);
    assert_eq!((stat(&out, "forge_writes"), stat(&out, "git_pushes")), (5, 1), "{out}");

    // No-op: zero writes, one listing
    let out = w.run();
    out.assert_exit(0);
    assert_action(&out, "api", "unchanged");
    assert_eq!(w.gh.writes(), 0, "zero writes: {:?}", w.api_calls());
    assert_eq!(w.api_calls(), ["pulls/list", "issues/list-comments-for-repo"], "one PR listing and one comment listing per repository");
    // libgit2 sends credentials only after a 401, so each connection starts with one.
    assert_eq!(
        w.git_calls(),
        ["upload-pack refs 401", "upload-pack refs 200", "upload-pack refs 401", "upload-pack refs 200", "upload-pack pack 200"],
        "ls-remote, then one fetch of the base"
    );
    assert_eq!(w.gh.pushes(), 1, "no push");
    assert_eq!(w.sha(BRANCH).unwrap(), head1);
    assert_eq!((stat(&out, "forge_calls"), stat(&out, "forge_writes"), stat(&out, "git_pushes")), (2, 0, 0), "{out}");

    // A newer version, and the base moved meanwhile
    w.reg.push_tags("team/api", &["1.2.0"]);
    w.gh.push_commit(REPO, "main", &[("README.md", Some("GitOps, moved on\n"))], "alice");
    let out = w.run();
    out.assert_exit(0);
    assert_action(&out, "api", "updated");
    assert_eq!(out.app("api")["pr"], pr.number, "same PR number{out}");
    assert_eq!(w.gh.pulls(REPO).len(), 1, "no second PR");
    w.assert_branch_is_one_commit(BRANCH, "1.0.0", "1.2.0");
    let head2 = w.sha(BRANCH).unwrap();
    assert_ne!(head2, head1, "force-pushed");
    let updated = w.gh.pull(REPO, pr.number);
    assert_eq!(updated.title, "chore(deploy): update api to 1.2.0 in api");
    assert_eq!(metadata(updated.body.as_deref().unwrap())["commit"], head2);
    assert_eq!(w.api_calls(), ["pulls/list", "issues/list-comments-for-repo", "pulls/update", "pulls/request-reviewers"], "one change: list, rewrite, ask again");
    assert_eq!(
        w.git_calls(),
        [
            "upload-pack refs 401",
            "upload-pack refs 200",
            "upload-pack refs 401",
            "upload-pack refs 200",
            "upload-pack pack 200",
            "receive-pack refs 401",
            "receive-pack refs 200",
            "receive-pack pack 200"
        ],
        "ls-remote, fetch of the base, push"
    );
    assert_eq!(w.gh.pushes(), 2);

    // And quiet again.
    let out = w.run();
    assert_action(&out, "api", "unchanged");
    assert_eq!((w.gh.writes(), w.api_calls().len()), (0, 2), "{:?}", w.api_calls());
    w.gh.finish();
}

#[test]
fn closes_the_pr_with_a_comment_when_the_base_already_has_the_version() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.run().assert_exit(0);
    let number = w.gh.pulls(REPO)[0].number;
    w.set_running("api", "1.1.0");

    let out = w.run();
    out.assert_exit(0);
    assert_action(&out, "api", "closed");
    let pr = w.gh.pull(REPO, number);
    assert!(!pr.open && pr.merged_at.is_none(), "closed, not merged");
    let comments = w.gh.comments(REPO, number);
    assert_eq!(comments.len(), 1);
    assert!(comments[0].body.contains("already has the versions"), "{}", comments[0].body);
    assert_eq!(comments[0].user, fake_github::BOT_USER);
    assert_eq!(w.sha(BRANCH), None, "branch deleted");
    assert_eq!(w.api_calls(), ["pulls/list", "issues/list-comments-for-repo", "issues/create-comment", "pulls/update", "git/delete-ref"]);

    let out = w.run();
    out.assert_exit(0);
    assert_eq!(w.gh.writes(), 0, "{out}");
    assert_eq!(w.api_calls(), ["pulls/list", "issues/list-comments-for-repo"], "the listing (closed PRs are holds), nothing else");
    w.gh.finish();
}

#[test]
fn closes_the_pr_when_the_application_loses_its_annotations() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.run().assert_exit(0);
    let number = w.gh.pulls(REPO)[0].number;
    let mut bare = App::new("api", &w.url(), "envs/api");
    bare.annotations.clear();
    w.write_app("api", &bare.to_yaml());

    let out = w.run();
    out.assert_exit(0);
    assert_action(&out, "api", "closed");
    assert!(!w.gh.pull(REPO, number).open);
    let comments = w.gh.comments(REPO, number);
    assert_eq!(comments.len(), 1);
    assert!(comments[0].body.contains("no longer has the annotations"), "{}", comments[0].body);
    assert_eq!(w.sha(BRANCH), None, "branch deleted");

    let out = w.run();
    assert_eq!(w.gh.writes(), 0, "{out}");
    w.gh.finish();
}

#[test]
fn a_foreign_commit_is_noted_once_and_the_branch_left_alone() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.run().assert_exit(0);
    let number = w.gh.pulls(REPO)[0].number;
    let theirs = w.gh.push_commit(REPO, BRANCH, &[("envs/api/notes.yaml", Some("note: mine\n"))], "bob");
    w.reg.push_tags("team/api", &["1.2.0"]);

    let out = w.run();
    out.assert_exit(0);
    assert_action(&out, "api", "skipped");
    assert_eq!(w.sha(BRANCH).unwrap(), theirs, "not pushed over");
    let comments = w.gh.comments(REPO, number);
    assert_eq!(comments.len(), 1, "said once");
    assert!(comments[0].body.contains("Someone else pushed"), "{}", comments[0].body);
    assert_eq!(w.api_calls(), ["pulls/list", "issues/list-comments-for-repo", "issues/list-comments", "issues/create-comment"]);

    for _ in 0..2 {
        let out = w.run();
        assert_action(&out, "api", "skipped");
        assert_eq!(w.gh.writes(), 0, "not said again{out}");
        assert_eq!(w.api_calls(), ["pulls/list", "issues/list-comments-for-repo", "issues/list-comments"]);
    }
    assert_eq!(w.gh.comments(REPO, number).len(), 1);
    assert_eq!(w.sha(BRANCH).unwrap(), theirs);
    assert_eq!(w.gh.pull(REPO, number).title, "chore(deploy): update api to 1.1.0 in api", "the PR is left alone too");
    w.gh.finish();
}

/// After the push, creating the PR fails: the next run opens it on the branch as pushed.
#[test]
fn a_failed_pr_create_after_the_push_converges_on_one_pr() {
    let w = World::with_app(&["1.0.0", "1.1.0"], "1.0.0", &[("labels", "deps")]);
    w.gh.fail("pulls/create", 1, 500);
    let out = w.run();
    out.assert_exit(1);
    assert_action(&out, "api", "error");
    assert!(out.app("api")["errors"][0].as_str().unwrap().contains("500"), "{out}");
    let head = w.sha(BRANCH).expect("the branch was pushed");
    assert!(w.gh.pulls(REPO).is_empty());

    let out = w.run();
    out.assert_exit(0);
    assert_action(&out, "api", "opened");
    assert_eq!(stat(&out, "git_pushes"), 0, "the branch already carries the change{out}");
    assert_eq!(w.sha(BRANCH).unwrap(), head);
    assert_eq!(w.gh.pulls(REPO).len(), 1, "exactly one PR");
    assert_eq!(w.gh.pulls(REPO)[0].labels, ["deps"]);
    assert_eq!(metadata(w.gh.pulls(REPO)[0].body.as_deref().unwrap())["commit"], head);

    w.run();
    assert_eq!(w.gh.writes(), 0);
    w.gh.finish();
}

/// The PR exists, adding its labels fails: the next run adds only the labels.
#[test]
fn failed_labels_after_the_pr_exists_are_added_next_time() {
    let w = World::with_app(&["1.0.0", "1.1.0"], "1.0.0", &[("labels", "deps")]);
    w.gh.fail("issues/add-labels", 1, 500);
    let out = w.run();
    out.assert_exit(1);
    assert_eq!(w.open_pulls().len(), 1);
    assert!(w.open_pulls()[0].labels.is_empty());
    assert_eq!(out.app("api")["pr"], w.open_pulls()[0].number, "the error names the PR{out}");

    let out = w.run();
    out.assert_exit(0);
    assert_action(&out, "api", "updated");
    assert_eq!(w.api_calls(), ["pulls/list", "issues/list-comments-for-repo", "issues/add-labels"], "only the labels");
    assert_eq!(w.gh.pushes(), 1);
    assert_eq!(w.open_pulls()[0].labels, ["deps"]);

    w.run();
    assert_eq!(w.gh.writes(), 0);
    w.gh.finish();
}

/// GitHub creates the PR but the answer never arrives (a proxy times out): the bot cannot
/// know; the next run finds the PR in its listing and adopts it — never a second one.
#[test]
fn a_lost_answer_to_pr_create_converges_without_a_duplicate() {
    let w = World::with_app(&["1.0.0", "1.1.0"], "1.0.0", &[("assignees", "bob")]);
    w.gh.lose_response("pulls/create", 1);
    let out = w.run();
    out.assert_exit(1);
    assert_eq!(w.open_pulls().len(), 1, "GitHub did create it");
    let number = w.open_pulls()[0].number;
    assert!(w.open_pulls()[0].assignees.is_empty());

    let out = w.run();
    out.assert_exit(0);
    assert_eq!(out.app("api")["pr"], number, "{out}");
    assert_eq!(w.gh.pulls(REPO).len(), 1, "no duplicate");
    assert_eq!(w.open_pulls()[0].assignees, ["bob"]);
    assert_eq!(w.gh.pushes(), 1);

    w.run();
    assert_eq!(w.gh.writes(), 0, "{:?}", w.api_calls());
    w.gh.finish();
}

/// A lost answer to the second run's create: the create is retried, refused as a duplicate,
/// and the bot adopts the PR in the same run.
#[test]
fn a_create_refused_as_duplicate_is_adopted_in_the_same_run() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.gh.lose_response("pulls/create", 1);
    w.run().assert_exit(1);
    // The listing of the next run misses it (GitHub's list is eventually consistent).
    w.gh.hide_from_next_listing(REPO);
    let out = w.run();
    out.assert_exit(0);
    assert_action(&out, "api", "opened");
    assert_eq!(w.gh.pulls(REPO).len(), 1, "no duplicate");
    assert!(w.api_calls().contains(&"pulls/create".to_string()), "{:?}", w.api_calls());
    w.gh.finish();
}

#[test]
fn rate_limits_are_waited_out_and_the_run_succeeds() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.gh.rate_limit_next(1, RateLimit::Secondary { retry_after: 1 });
    w.gh.rate_limit_next(1, RateLimit::Primary { reset_in: 1 });
    let started = Instant::now();
    let out = w.run();
    out.assert_exit(0);
    assert_action(&out, "api", "opened");
    assert_eq!(w.gh.rate_limited(), 2);
    assert!(started.elapsed() >= Duration::from_secs(2), "both limits were waited out");
    assert_eq!(w.gh.pulls(REPO).len(), 1);
    w.gh.finish();
}

#[test]
fn two_applications_in_one_repository_get_two_prs_and_one_listing() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.add_app("web", "1.0.0", &[("labels", "web")]);

    let out = w.run();
    out.assert_exit(0);
    assert_action(&out, "api", "opened");
    assert_action(&out, "web", "opened");
    assert_eq!(w.open_pulls().len(), 2);
    w.assert_branch_is_one_commit(BRANCH, "1.0.0", "1.1.0");
    w.assert_branch_is_one_commit("argocd-image-pr/argocd/web", "1.0.0", "1.1.0");
    let web = w.open_pulls().into_iter().find(|p| p.head == "argocd-image-pr/argocd/web").unwrap();
    assert_eq!(web.labels, ["web"]);

    let out = w.run();
    assert_eq!((stat(&out, "forge_writes"), stat(&out, "forge_calls")), (0, 2), "{out}");
    assert_eq!(w.api_calls(), ["pulls/list", "issues/list-comments-for-repo"]);

    // One newer version: both PRs change, still one listing.
    w.reg.push_tags("team/api", &["1.1.1"]);
    let out = w.run();
    assert_action(&out, "api", "updated");
    assert_action(&out, "web", "updated");
    assert_eq!(w.api_calls(), ["pulls/list", "issues/list-comments-for-repo", "pulls/update", "pulls/update"]);
    w.gh.finish();
}

#[test]
fn a_github_app_signs_in_and_pushes_with_its_installation_token() {
    let mut w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    let key = openssl::rsa::Rsa::generate(2048).unwrap();
    w.gh.register_app(4242, "argocd-image-pr", &key.public_key_to_pem().unwrap(), Duration::from_secs(3600));
    w.gh.install_app(REPO);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), key.private_key_to_pem().unwrap()).unwrap();
    w.login = Login::App(4242, file);

    let out = w.run();
    out.assert_exit(0);
    assert_action(&out, "api", "opened");
    let pr = &w.gh.pulls(REPO)[0];
    assert_eq!(pr.user, w.gh.app_user(), "the App opened it");
    assert_eq!(w.gh.pushes(), 1, "pushed with the installation token");
    assert_eq!(w.gh.tokens_issued(), 1, "one installation token for the whole run");
    assert_eq!(w.api_calls()[..2], ["apps/get-repo-installation", "apps/create-installation-access-token"]);

    w.run().assert_exit(0);
    assert_eq!(w.api_calls(), ["apps/get-repo-installation", "apps/create-installation-access-token", "pulls/list", "issues/list-comments-for-repo"]);
    assert_eq!(w.gh.writes(), 1, "only the token (a POST), nothing on the repository");
    w.gh.finish();
}

#[test]
fn the_base_is_the_target_revision_branch_or_the_default_branch_for_head() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    // `api` follows `release`; `web` follows HEAD, and the default branch is `trunk`.
    let main = w.sha("main").unwrap();
    w.gh.create_branch(REPO, "release", &main);
    w.gh.create_branch(REPO, "trunk", &main);
    w.gh.set_default_branch(REPO, "trunk");
    let mut api = w.app("api");
    api.revision = "release".into();
    w.write_app("api", &api.to_yaml());
    w.add_app("web", "1.0.0", &[]);
    let web_kustomization = w.git(&["show", "main:envs/web/kustomization.yaml"]);
    let web_deployment = w.git(&["show", "main:envs/web/deployment.yaml"]);
    w.gh.push_commit(
        REPO,
        "trunk",
        &[("envs/web/kustomization.yaml", Some(&web_kustomization)), ("envs/web/deployment.yaml", Some(&web_deployment))],
        "alice",
    );
    let mut web = w.app("web");
    web.revision = "HEAD".into();
    w.write_app("web", &web.to_yaml());

    let out = w.run();
    out.assert_exit(0);
    let base = |head: &str| w.gh.pulls(REPO).into_iter().find(|p| p.head == head).map(|p| p.base);
    assert_eq!(base(BRANCH).as_deref(), Some("release"), "{out}");
    assert_eq!(base("argocd-image-pr/argocd/web").as_deref(), Some("trunk"), "{out}");
    assert_eq!(out.app("web")["base"], "trunk");
    let parent = w.git(&["rev-parse", "argocd-image-pr/argocd/web^"]);
    assert_eq!(parent.trim(), w.sha("trunk").unwrap(), "built on the default branch's tip");
    w.gh.finish();
}

#[test]
fn applications_kept_in_the_private_gitops_repository_are_read_with_the_token() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    let yaml = w.app("api").to_yaml();
    w.gh.push_commit(REPO, "main", &[("apps/api.yaml", Some(&yaml))], "alice");

    let out = w.run_apps(&w.url());
    out.assert_exit(0);
    assert_action(&out, "api", "opened");
    w.assert_branch_is_one_commit(BRANCH, "1.0.0", "1.1.0");
    w.run_apps(&w.url()).assert_exit(0);
    assert_eq!((w.gh.writes(), w.api_calls().len()), (0, 2), "{:?}", w.api_calls());
    w.gh.finish();
}

#[test]
fn after_a_person_merges_the_pr_the_leftover_branch_goes_and_nothing_else_happens() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.run().assert_exit(0);
    let number = w.gh.pulls(REPO)[0].number;
    w.gh.merge_pull(REPO, number, "alice");
    assert!(w.sha(BRANCH).is_some(), "GitHub keeps the branch unless told otherwise");

    let out = w.run();
    out.assert_exit(0);
    assert_action(&out, "api", "unchanged");
    assert_eq!(w.sha(BRANCH), None, "the merged branch is deleted");
    assert_eq!(w.api_calls(), ["pulls/list", "issues/list-comments-for-repo", "git/delete-ref"]);
    assert!(w.gh.comments(REPO, number).is_empty(), "no comment on a merged PR");
    assert_eq!(w.gh.pulls(REPO).len(), 1, "no new PR");

    w.run().assert_exit(0);
    assert_eq!(w.api_calls(), ["pulls/list", "issues/list-comments-for-repo"]);
    assert_eq!(w.gh.writes(), 0);
    w.gh.finish();
}

#[test]
fn the_pr_body_shows_the_build_date_and_digest_newest_build_read() {
    let w = World::new(&["1.0.0"], "1.0.0");
    let digests = w.reg.push_tags("team/worker", &["build-1", "build-2"]);
    let image = w.reg.image("team/worker");
    w.gh.push_commit(
        REPO,
        "main",
        &[
            ("envs/worker/kustomization.yaml", Some(&kustomization(&image, "build-1"))),
            ("envs/worker/deployment.yaml", Some(&deployment("worker", &image))),
        ],
        "alice",
    );
    let app = App::new("worker", &w.url(), "envs/worker")
        .image_list(&format!("worker={image}"))
        .annotate("worker.update-strategy", "newest-build")
        .annotate("worker.allow-tags", "regexp:^build-");
    w.write_app("worker", &app.to_yaml());

    let out = w.run();
    out.assert_exit(0);
    assert_action(&out, "worker", "opened");
    assert_eq!(out.image("worker", "worker")["created"], "2024-01-02T00:00:00Z", "{out}");
    let pr = w.open_pulls().into_iter().find(|p| p.head == "argocd-image-pr/argocd/worker").unwrap();
    let body = pr.body.unwrap();
    let short = &digests[1]["sha256:".len().."sha256:".len() + 12];
    assert!(
        // Registry text is escaped for Markdown (`\-` renders as `-`).
        body.contains(&format!("| build | 2024\\-01\\-02T00:00:00Z | `sha256:{short}` |")),
        "build date and digest of build-2:\n{body}"
    );
    w.gh.finish();
}

/// Issue 15: the token never comes from a flag (visible in `ps`), a variable or file named
/// explicitly must hold it, and it never goes out over plain http to a non-loopback server.
#[test]
fn the_token_comes_from_the_environment_or_a_file_and_never_over_plain_http() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    let apps = w.apps.path().join("apps");
    let github = |args: &[&str]| {
        args.iter().fold(Plan::command(&["run", "--once", "--forge", "github"]), |cmd, a| cmd.arg(a)).apps(&apps)
    };

    let out = github(&["--github-url", &w.gh.url(), "--github-token", fake_github::TOKEN]).run();
    assert_eq!(out.code, 2, "no flag takes the token itself{out}");
    let out = github(&["--github-url", &w.gh.url(), "--github-token-env", "AIPR_UNSET_TOKEN_VAR"])
        .env("GITHUB_TOKEN", fake_github::TOKEN)
        .run();
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("AIPR_UNSET_TOKEN_VAR") && out.stderr.contains("not set"), "no fallback to GITHUB_TOKEN{out}");
    let out = github(&["--github-url", "http://github.example.com"]).env("GITHUB_TOKEN", fake_github::TOKEN).run();
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("http://github.example.com") && out.stderr.contains("--github-allow-http"), "{out}");
    assert!(w.gh.requests().is_empty(), "nothing reached GitHub");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{}\n", fake_github::TOKEN)).unwrap();
    let out = github(&["--github-url", &w.gh.url(), "--github-token-file", file.to_str().unwrap()]).json();
    out.assert_exit(0);
    assert_action(&out, "api", "opened");
    w.gh.finish();
}

/// Issue 15: an Application on another git server is not mapped onto the namesake repository of
/// the configured GitHub.
#[test]
fn a_repository_on_another_server_gets_no_pr_on_this_one() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    // The same repository reached under another host name (loopback, so the test stays local).
    let other_host = w.url().replace("127.0.0.1", "localhost");
    let elsewhere = App::new("elsewhere", &other_host, "envs/api")
        .image_list(&format!("api={}:^1.0", w.image));
    w.write_app("elsewhere", &elsewhere.to_yaml());
    let out = w.run();
    assert_action(&out, "api", "opened");
    assert!(w.open_pulls().iter().all(|p| p.head != "argocd-image-pr/argocd/elsewhere"), "no PR for the other server's repository");
    let error = out.app("elsewhere").to_string();
    assert!(error.contains("localhost") && error.contains("error"), "the error names the repository{out}");
    w.gh.finish();
}
