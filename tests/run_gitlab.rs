//! `argocd-image-pr run --once --forge gitlab` end to end: the real binary against the fake
//! GitLab (REST v4 as GitLab documents it, checked by python-gitlab in tests/gitlab_contract.rs;
//! git smart HTTP through `git http-backend`) and a real registry. The Applications point at
//! the fake's git URL of a project in nested groups; the bot clones and pushes as `oauth2` with
//! its token and calls the API with the same token (`GITLAB_TOKEN`). Each test is one story of
//! the merge-request lifecycle (docs/lifecycle.md), the GitLab twin of tests/run_github.rs.

mod support;

use serde_json::Value;
use support::cli::{Plan, PlanOutput};
use support::fake_gitlab::{self, Access, FakeGitlab, MrState, Recorded};
use support::gitops::{App, deployment, kustomization};
use support::registry::{Auth, TestRegistry};

const PROJECT: &str = "platform/apps/gitops";
const BRANCH: &str = "argocd-image-pr/argocd/api";
const METADATA: &str = "<!-- argocd-image-pr:metadata {";

/// A registry with `team/api`; the fake GitLab with `platform/apps/gitops`, where the
/// Application `api` (Kustomize, `^1.0`) has its manifests; a directory with the Application
/// manifests (`--apps`). alice and bob are Developers of the `platform` group; people change
/// the project by pushing as alice (a Maintainer's push, past the protected `main`).
struct World {
    reg: TestRegistry,
    gl: FakeGitlab,
    apps: tempfile::TempDir,
    image: String,
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
        let gl = FakeGitlab::start();
        gl.create_project(PROJECT, &[("README.md", "GitOps\n")]);
        for person in ["alice", "bob"] {
            gl.add_member("platform", person, Access::Developer);
        }
        let world = World { reg, gl, apps: tempfile::tempdir().unwrap(), image };
        world.add_app("api", running, ours);
        world
    }

    fn url(&self) -> String {
        self.gl.git_url(PROJECT)
    }

    fn app(&self, name: &str) -> App {
        App::new(name, &self.url(), &format!("envs/{name}")).image_list(&format!("api={}:^1.0", self.image))
    }

    /// Pushes `name`'s manifests running `running` to `main` (as alice) and writes its Application.
    fn add_app(&self, name: &str, running: &str, ours: &[(&str, &str)]) {
        self.set_running(name, running);
        self.gl.push_commit(PROJECT, "main", &[(&format!("envs/{name}/deployment.yaml"), Some(&deployment(name, &self.image)))], "alice");
        self.write_app(name, &with_our_annotations(&self.app(name).to_yaml(), ours));
    }

    /// A person changes the version on `main` by hand; returns the commit.
    fn set_running(&self, name: &str, tag: &str) -> String {
        let k = kustomization(&self.image, tag);
        self.gl.push_commit(PROJECT, "main", &[(&format!("envs/{name}/kustomization.yaml"), Some(&k))], "alice")
    }

    fn write_app(&self, name: &str, yaml: &str) {
        let dir = self.apps.path().join("apps");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.yaml")), yaml).unwrap();
    }

    /// `run --once --forge gitlab` against the fake; the fake's request log starts afresh.
    fn run(&self) -> PlanOutput {
        self.run_apps(&self.apps.path().join("apps").display().to_string())
    }

    fn run_apps(&self, apps: &str) -> PlanOutput {
        self.gl.clear_requests();
        let out = Plan::command(&["run", "--once", "--forge", "gitlab"])
            .arg("--gitlab-url")
            .arg(self.gl.url())
            .env("GITLAB_TOKEN", fake_gitlab::TOKEN)
            .apps(apps)
            .json();
        eprintln!("run: API {:?}", self.gl.calls());
        out
    }

    /// git in the fake's bare repository.
    fn git(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("git").args(args).current_dir(self.gl.bare_path(PROJECT)).output().unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn sha(&self, branch: &str) -> Option<String> {
        self.gl.branch_sha(PROJECT, branch)
    }

    /// The API operations of the last run, in order (git's smart HTTP left out).
    fn api_calls(&self) -> Vec<String> {
        self.gl.calls()
    }

    /// The git smart-HTTP requests of the last run: service, ref advertisement or pack, status.
    fn git_calls(&self) -> Vec<String> {
        self.gl.requests().iter().filter(|r| r.operation == "git").map(git_call).collect()
    }

    fn open_mrs(&self) -> Vec<fake_gitlab::MergeRequest> {
        self.gl.mrs(PROJECT).into_iter().filter(|m| m.is_open()).collect()
    }

    /// What the bot said on merge request `iid` (its user notes; GitLab's system notes aside).
    fn bot_notes(&self, iid: u64) -> Vec<String> {
        self.gl.notes(PROJECT, iid).into_iter().filter(|n| !n.system && n.author == fake_gitlab::BOT_USER).map(|n| n.body).collect()
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

/// The hidden metadata block of a merge request description, parsed.
fn metadata(body: &str) -> Value {
    let start = body.rfind(METADATA).unwrap_or_else(|| panic!("no metadata block in:\n{body}")) + METADATA.len() - 1;
    let end = body[start..].find(" -->").unwrap() + start;
    serde_json::from_str(&body[start..end]).unwrap()
}

#[test]
fn opens_one_mr_with_its_settings_then_writes_nothing_then_updates_it_in_place() {
    let ours = [("labels", "deps, env/dev"), ("reviewers", "alice"), ("assignees", "bob"), ("draft", "true"), ("auto-merge", "squash")];
    let w = World::with_app(&["1.0.0", "1.1.0"], "1.0.0", &ours);
    // Auto-merge into the protected `main` is a Maintainer's right.
    w.gl.add_member(PROJECT, fake_gitlab::BOT_USER, Access::Maintainer);

    // Open
    let out = w.run();
    out.assert_exit(0);
    assert_action(&out, "api", "opened");
    let mrs = w.gl.mrs(PROJECT);
    assert_eq!(mrs.len(), 1, "one merge request");
    let mr = &mrs[0];
    assert_eq!(out.app("api")["pr"], mr.iid, "{out}");
    assert_eq!(out.app("api")["url"], format!("{}/-/merge_requests/{}", w.gl.web_url(PROJECT), mr.iid), "{out}");
    assert_eq!((mr.source_branch.as_str(), mr.target_branch.as_str(), mr.author.as_str()), (BRANCH, "main", fake_gitlab::BOT_USER));
    w.assert_branch_is_one_commit(BRANCH, "1.0.0", "1.1.0");
    let head1 = w.sha(BRANCH).unwrap();
    assert_eq!(mr.sha, head1);
    assert_eq!(mr.title, "Draft: chore(deploy): update api to 1.1.0 in api", "a draft is GitLab's title prefix");
    assert!(mr.draft());
    let body = mr.description.clone().unwrap();
    assert!(body.starts_with("### Deploy review: `api`"), "{body}");
    assert!(body.contains("Merging this merge request deploys") && !body.contains("pull request"), "GitLab's words:\n{body}");
    assert!(body.contains("(the Developer role or higher in the project is needed)"), "{body}");
    assert!(body.contains("| `api` | `1.0.0` → `1.1.0` | minor | unknown | unknown |"), "{body}");
    let meta = metadata(&body);
    assert_eq!(meta["application"], "argocd/api");
    assert_eq!(meta["commit"], head1, "the metadata records the bot's commit");
    assert_eq!(meta["images"][0]["to"]["tag"], "1.1.0");
    let mut labels = mr.labels.clone();
    labels.sort();
    assert_eq!(labels, ["deps", "env/dev"]);
    assert_eq!(mr.reviewers, ["alice"]);
    assert_eq!(mr.assignees, ["bob"]);
    assert!(mr.merge_when_pipeline_succeeds && mr.squash, "auto-merge, squashing");
    assert_eq!(mr.merge_user.as_deref(), Some(fake_gitlab::BOT_USER));
    assert!(!mr.force_remove_source_branch, "the bot deletes its branch itself");
    assert_eq!(
        w.api_calls(),
        [
            "merge_requests/list",
            "merge_requests/create",
            "merge_requests/update",
            "users/list",
            "merge_requests/get",
            "merge_requests/update",
            "users/list",
            "merge_requests/get",
            "merge_requests/update",
            "merge_requests/merge"
        ],
        "list once, open, then labels, reviewers and assignees (user ids; GitLab replaces the lists, so read them first), auto-merge"
    );
    assert_eq!(w.gl.pushes(), 1);
    let writes = stat(&out, "forge_writes");
    assert_eq!(writes as usize, w.gl.writes(), "the report counts what reached GitLab{out}");

    // No-op: zero writes, one listing of merge requests and one of comment events.
    let out = w.run();
    out.assert_exit(0);
    assert_action(&out, "api", "unchanged");
    assert_eq!(w.gl.writes(), 0, "zero writes: {:?}", w.api_calls());
    assert_eq!(w.api_calls(), ["merge_requests/list", "events/list"], "one listing of merge requests and one of comments per project");
    assert_eq!(
        w.git_calls(),
        ["upload-pack refs 401", "upload-pack refs 200", "upload-pack refs 401", "upload-pack refs 200", "upload-pack pack 200"],
        "ls-remote, then one fetch of the base"
    );
    assert_eq!(w.gl.pushes(), 1, "no push");
    assert_eq!((stat(&out, "forge_calls"), stat(&out, "forge_writes"), stat(&out, "git_pushes")), (2, 0, 0), "{out}");

    // A newer version, and the base moved meanwhile: the same merge request, updated.
    w.reg.push_tags("team/api", &["1.2.0"]);
    w.gl.push_commit(PROJECT, "main", &[("README.md", Some("GitOps, moved on\n"))], "alice");
    let out = w.run();
    out.assert_exit(0);
    assert_action(&out, "api", "updated");
    assert_eq!(out.app("api")["pr"], mr.iid, "same IID{out}");
    assert_eq!(w.gl.mrs(PROJECT).len(), 1, "no second merge request");
    w.assert_branch_is_one_commit(BRANCH, "1.0.0", "1.2.0");
    let head2 = w.sha(BRANCH).unwrap();
    assert_ne!(head2, head1, "force-pushed");
    let updated = w.gl.mr(PROJECT, mr.iid);
    assert_eq!(updated.title, "Draft: chore(deploy): update api to 1.2.0 in api", "still a draft");
    assert_eq!(updated.sha, head2, "GitLab follows the force-push");
    assert_eq!(metadata(updated.description.as_deref().unwrap())["commit"], head2);
    assert_eq!(
        w.api_calls(),
        ["merge_requests/list", "events/list", "merge_requests/update", "users/list", "merge_requests/get"],
        "one change: list, rewrite, ask for the review again (alice is asked already: no write)"
    );
    assert_eq!(w.gl.writes(), 1);
    assert_eq!(w.gl.pushes(), 2);

    // And quiet again.
    let out = w.run();
    assert_action(&out, "api", "unchanged");
    assert_eq!((w.gl.writes(), w.api_calls().len()), (0, 2), "{:?}", w.api_calls());
    w.gl.finish();
}

#[test]
fn closes_the_mr_with_a_note_when_the_base_already_has_the_version() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.run().assert_exit(0);
    let iid = w.gl.mrs(PROJECT)[0].iid;
    w.set_running("api", "1.1.0");

    let out = w.run();
    out.assert_exit(0);
    assert_action(&out, "api", "closed");
    let mr = w.gl.mr(PROJECT, iid);
    assert_eq!(mr.state, MrState::Closed, "closed, not merged");
    let said = w.bot_notes(iid);
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(said[0].contains("already has the versions"), "{}", said[0]);
    assert_eq!(w.sha(BRANCH), None, "branch deleted");
    assert_eq!(w.api_calls(), ["merge_requests/list", "events/list", "notes/create", "merge_requests/update", "branches/delete"]);

    let out = w.run();
    out.assert_exit(0);
    assert_eq!(w.gl.writes(), 0, "{out}");
    assert_eq!(w.api_calls(), ["merge_requests/list", "events/list"], "the listings (closed merge requests are holds), nothing else");
    w.gl.finish();
}

#[test]
fn closes_the_mr_when_the_application_loses_its_annotations() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.run().assert_exit(0);
    let iid = w.gl.mrs(PROJECT)[0].iid;
    let mut bare = App::new("api", &w.url(), "envs/api");
    bare.annotations.clear();
    w.write_app("api", &bare.to_yaml());

    let out = w.run();
    out.assert_exit(0);
    assert_action(&out, "api", "closed");
    assert_eq!(w.gl.mr(PROJECT, iid).state, MrState::Closed);
    let said = w.bot_notes(iid);
    assert_eq!(said.len(), 1);
    assert!(said[0].contains("no longer has the annotations"), "{}", said[0]);
    assert_eq!(w.sha(BRANCH), None, "branch deleted");

    let out = w.run();
    assert_eq!(w.gl.writes(), 0, "{out}");
    w.gl.finish();
}

#[test]
fn a_foreign_commit_is_noted_once_and_the_branch_left_alone() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.run().assert_exit(0);
    let iid = w.gl.mrs(PROJECT)[0].iid;
    let theirs = w.gl.push_commit(PROJECT, BRANCH, &[("envs/api/notes.yaml", Some("note: mine\n"))], "bob");
    w.reg.push_tags("team/api", &["1.2.0"]);

    let out = w.run();
    out.assert_exit(0);
    assert_action(&out, "api", "skipped");
    assert_eq!(w.sha(BRANCH).unwrap(), theirs, "not pushed over");
    let said = w.bot_notes(iid);
    assert_eq!(said.len(), 1, "said once: {said:?}");
    assert!(said[0].contains("Someone else pushed"), "{}", said[0]);
    let pushed: Vec<String> = w.gl.notes(PROJECT, iid).into_iter().filter(|n| n.system && n.body.starts_with("added 1 commit")).map(|n| n.author).collect();
    assert_eq!(pushed, ["bob"], "GitLab's system note for bob's push (the bot pushed before opening)");

    for _ in 0..2 {
        let out = w.run();
        assert_action(&out, "api", "skipped");
        assert_eq!(w.gl.writes(), 0, "not said again{out}");
    }
    assert_eq!(w.bot_notes(iid).len(), 1);
    assert_eq!(w.sha(BRANCH).unwrap(), theirs);
    assert_eq!(w.gl.mr(PROJECT, iid).title, "chore(deploy): update api to 1.1.0 in api", "the merge request is left alone too");
    w.gl.finish();
}

/// After the push, creating the merge request fails: the next run opens it on the branch as pushed.
#[test]
fn a_failed_mr_create_after_the_push_converges_on_one_mr() {
    let w = World::with_app(&["1.0.0", "1.1.0"], "1.0.0", &[("labels", "deps")]);
    w.gl.fail("merge_requests/create", 1, 500);
    let out = w.run();
    out.assert_exit(1);
    assert_action(&out, "api", "error");
    assert!(out.app("api")["errors"][0].as_str().unwrap().contains("500"), "{out}");
    let head = w.sha(BRANCH).expect("the branch was pushed");
    assert!(w.gl.mrs(PROJECT).is_empty());

    let out = w.run();
    out.assert_exit(0);
    assert_action(&out, "api", "opened");
    assert_eq!(stat(&out, "git_pushes"), 0, "the branch already carries the change{out}");
    assert_eq!(w.sha(BRANCH).unwrap(), head);
    let mrs = w.gl.mrs(PROJECT);
    assert_eq!(mrs.len(), 1, "exactly one merge request");
    assert_eq!(mrs[0].labels, ["deps"]);
    assert_eq!(metadata(mrs[0].description.as_deref().unwrap())["commit"], head);

    w.run();
    assert_eq!(w.gl.writes(), 0);
    w.gl.finish();
}

/// GitLab creates the merge request but the answer never arrives: the next run finds it in
/// its listing and adopts it — never a second one.
#[test]
fn a_lost_answer_to_mr_create_converges_without_a_duplicate() {
    let w = World::with_app(&["1.0.0", "1.1.0"], "1.0.0", &[("assignees", "bob")]);
    w.gl.lose_response("merge_requests/create", 1);
    let out = w.run();
    out.assert_exit(1);
    assert_eq!(w.open_mrs().len(), 1, "GitLab did create it");
    let iid = w.open_mrs()[0].iid;
    assert!(w.open_mrs()[0].assignees.is_empty());

    let out = w.run();
    out.assert_exit(0);
    assert_eq!(out.app("api")["pr"], iid, "{out}");
    assert_eq!(w.gl.mrs(PROJECT).len(), 1, "no duplicate");
    assert_eq!(w.open_mrs()[0].assignees, ["bob"]);
    assert_eq!(w.gl.pushes(), 1);

    w.run();
    assert_eq!(w.gl.writes(), 0, "{:?}", w.api_calls());
    w.gl.finish();
}

#[test]
fn a_rate_limit_is_waited_out_and_the_run_succeeds() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.gl.rate_limit_next(2, 1);
    let started = std::time::Instant::now();
    let out = w.run();
    out.assert_exit(0);
    assert_action(&out, "api", "opened");
    assert_eq!(w.gl.rate_limited(), 2);
    assert!(started.elapsed() >= std::time::Duration::from_secs(2), "Retry-After was waited out, twice");
    assert_eq!(w.gl.mrs(PROJECT).len(), 1);
    w.gl.finish();
}

#[test]
fn two_applications_in_one_project_get_two_mrs_and_one_listing() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.add_app("web", "1.0.0", &[("labels", "web")]);

    let out = w.run();
    out.assert_exit(0);
    assert_action(&out, "api", "opened");
    assert_action(&out, "web", "opened");
    assert_eq!(w.open_mrs().len(), 2);
    assert_eq!(w.open_mrs().iter().map(|m| m.iid).collect::<Vec<_>>(), [1, 2], "IIDs count per project");
    w.assert_branch_is_one_commit(BRANCH, "1.0.0", "1.1.0");
    w.assert_branch_is_one_commit("argocd-image-pr/argocd/web", "1.0.0", "1.1.0");
    let web = w.open_mrs().into_iter().find(|m| m.source_branch == "argocd-image-pr/argocd/web").unwrap();
    assert_eq!(web.labels, ["web"]);

    let out = w.run();
    assert_eq!((stat(&out, "forge_writes"), stat(&out, "forge_calls")), (0, 2), "{out}");
    assert_eq!(w.api_calls(), ["merge_requests/list", "events/list"]);

    w.reg.push_tags("team/api", &["1.1.1"]);
    let out = w.run();
    assert_action(&out, "api", "updated");
    assert_action(&out, "web", "updated");
    assert_eq!(w.api_calls(), ["merge_requests/list", "events/list", "merge_requests/update", "merge_requests/update"]);
    w.gl.finish();
}

#[test]
fn after_a_person_merges_the_mr_the_leftover_branch_goes_and_nothing_else_happens() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.run().assert_exit(0);
    let iid = w.gl.mrs(PROJECT)[0].iid;
    w.gl.merge_mr(PROJECT, iid, "alice");
    assert!(w.sha(BRANCH).is_some(), "the bot asked GitLab to keep the branch");

    let out = w.run();
    out.assert_exit(0);
    assert_action(&out, "api", "unchanged");
    assert_eq!(w.sha(BRANCH), None, "the merged branch is deleted");
    assert_eq!(w.api_calls(), ["merge_requests/list", "events/list", "branches/delete"]);
    assert!(w.bot_notes(iid).is_empty(), "no note on a merged merge request");
    assert_eq!(w.gl.mrs(PROJECT).len(), 1, "no new merge request");

    w.run().assert_exit(0);
    assert_eq!(w.api_calls(), ["merge_requests/list", "events/list"]);
    assert_eq!(w.gl.writes(), 0);
    w.gl.finish();
}

#[test]
fn applications_kept_in_the_private_project_are_read_with_the_token() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    let yaml = w.app("api").to_yaml();
    w.gl.push_commit(PROJECT, "main", &[("apps/api.yaml", Some(&yaml))], "alice");

    let out = w.run_apps(&w.url());
    out.assert_exit(0);
    assert_action(&out, "api", "opened");
    w.assert_branch_is_one_commit(BRANCH, "1.0.0", "1.1.0");
    w.run_apps(&w.url()).assert_exit(0);
    assert_eq!((w.gl.writes(), w.api_calls().len()), (0, 2), "{:?}", w.api_calls());
    w.gl.finish();
}

/// GitLab protects a project's default branch: merging into it, auto-merge included, is a
/// Maintainer's right. A Developer's token opens the merge request and says why auto-merge
/// failed, naming the merge request.
#[test]
fn a_developer_token_opens_the_mr_but_cannot_set_auto_merge_on_the_protected_branch() {
    let w = World::with_app(&["1.0.0", "1.1.0"], "1.0.0", &[("labels", "deps"), ("auto-merge", "merge")]);
    let out = w.run();
    out.assert_exit(1);
    let iid = w.gl.mrs(PROJECT)[0].iid;
    assert_eq!(out.app("api")["pr"], iid, "{out}");
    assert_eq!(w.gl.mr(PROJECT, iid).labels, ["deps"]);
    assert!(!w.gl.mr(PROJECT, iid).merge_when_pipeline_succeeds);
    let error = out.app("api")["errors"][0].as_str().unwrap_or("").to_string();
    assert!(error.contains("auto-merge") && error.contains("401"), "{error}{out}");
    w.gl.finish();
}

/// The token comes from `GITLAB_TOKEN`, `--gitlab-token-env` or `--gitlab-token-file`, never a
/// flag of its own; nothing reaches GitLab without one.
#[test]
fn the_token_comes_from_the_environment_or_a_file() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    let apps = w.apps.path().join("apps");
    let gitlab = |args: &[&str]| {
        args.iter().fold(Plan::command(&["run", "--once", "--forge", "gitlab", "--gitlab-url", &w.gl.url()]), |cmd, a| cmd.arg(a)).apps(&apps)
    };
    let out = gitlab(&[]).run();
    assert_eq!(out.code, 2, "no token{out}");
    assert!(out.stderr.contains("GITLAB_TOKEN"), "{out}");
    let out = gitlab(&["--gitlab-token", fake_gitlab::TOKEN]).run();
    assert_eq!(out.code, 2, "no flag takes the token itself{out}");
    assert!(w.gl.requests().is_empty(), "nothing reached GitLab");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{}\n", fake_gitlab::TOKEN)).unwrap();
    let out = gitlab(&["--gitlab-token-file", file.to_str().unwrap()]).json();
    out.assert_exit(0);
    assert_action(&out, "api", "opened");
    let out = gitlab(&["--gitlab-token-env", "MY_GITLAB_TOKEN"]).env("MY_GITLAB_TOKEN", fake_gitlab::TOKEN).json();
    out.assert_exit(0);
    assert_action(&out, "api", "unchanged");
    w.gl.finish();
}

/// A person closes the merge request and deletes its branch. GitLab reopens no merge request
/// whose source branch is gone, so a newer version does not bring the closed one back: the bot
/// opens a new one, on the branch pushed afresh, and leaves !1 closed.
#[test]
fn a_closed_mr_whose_branch_is_gone_is_not_reopened_a_newer_version_gets_a_new_one() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.run().assert_exit(0);
    w.gl.close_mr(PROJECT, 1, "alice");
    assert_eq!(w.run().app("api")["action"], "held");
    let out = std::process::Command::new("git").args(["update-ref", "-d", &format!("refs/heads/{BRANCH}")]).current_dir(w.gl.bare_path(PROJECT)).output().unwrap();
    assert!(out.status.success());

    w.reg.push_tags("team/api", &["1.2.0"]);
    let out = w.run();
    out.assert_exit(0);
    assert_eq!(w.gl.mr(PROJECT, 1).state, MrState::Closed, "GitLab kept !1 closed");
    let open = w.open_mrs();
    assert_eq!(open.len(), 1, "one open merge request{out}");
    assert_eq!((open[0].iid, out.app("api")["pr"].as_u64()), (2, Some(2)), "{out}");
    assert_eq!(open[0].sha, w.sha(BRANCH).unwrap());
    w.assert_branch_is_one_commit(BRANCH, "1.0.0", "1.2.0");
    assert!(w.api_calls().contains(&"merge_requests/create".to_string()), "{:?}", w.api_calls());
    let out = w.run();
    assert_eq!((out.app("api")["action"].as_str(), w.gl.writes()), (Some("unchanged"), 0), "{:?}", w.api_calls());
    w.gl.finish();
}

/// The merge request exists, adding its labels fails: the next run adds only the labels.
#[test]
fn failed_labels_after_the_mr_exists_are_added_next_time() {
    let w = World::with_app(&["1.0.0", "1.1.0"], "1.0.0", &[("labels", "deps")]);
    // A PUT is retried twice after a 5xx: all three fail.
    for nth in 1..=3 {
        w.gl.fail("merge_requests/update", nth, 500);
    }
    let out = w.run();
    out.assert_exit(1);
    assert_eq!(w.open_mrs().len(), 1);
    assert!(w.open_mrs()[0].labels.is_empty());
    assert_eq!(out.app("api")["pr"], w.open_mrs()[0].iid, "the error names the merge request{out}");

    let out = w.run();
    out.assert_exit(0);
    assert_action(&out, "api", "updated");
    assert_eq!(w.api_calls(), ["merge_requests/list", "events/list", "merge_requests/update"], "only the labels");
    assert_eq!(w.gl.pushes(), 1);
    assert_eq!(w.open_mrs()[0].labels, ["deps"]);

    w.run();
    assert_eq!(w.gl.writes(), 0, "{:?}", w.api_calls());
    w.gl.finish();
}

/// GitLab made the merge request but the answer was lost, and the next listing is stale: the
/// create is refused (`409`, one open merge request per branch) and the open one adopted.
#[test]
fn a_create_refused_as_duplicate_is_adopted_in_the_same_run() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.gl.lose_response("merge_requests/create", 1);
    w.run().assert_exit(1);
    w.gl.hide_from_next_listing();
    let out = w.run();
    out.assert_exit(0);
    assert_action(&out, "api", "opened");
    assert_eq!(w.gl.mrs(PROJECT).len(), 1, "no duplicate");
    assert!(w.api_calls().contains(&"merge_requests/create".to_string()), "{:?}", w.api_calls());
    w.gl.finish();
}

#[test]
fn the_base_is_the_target_revision_branch_or_the_default_branch_for_head() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    // `api` follows `release`; `web` follows HEAD, and the default branch is `trunk`.
    let main = w.sha("main").unwrap();
    w.gl.create_branch(PROJECT, "release", &main);
    w.gl.create_branch(PROJECT, "trunk", &main);
    w.gl.set_default_branch(PROJECT, "trunk");
    let mut api = w.app("api");
    api.revision = "release".into();
    w.write_app("api", &api.to_yaml());
    w.add_app("web", "1.0.0", &[]);
    let web_kustomization = w.git(&["show", "main:envs/web/kustomization.yaml"]);
    let web_deployment = w.git(&["show", "main:envs/web/deployment.yaml"]);
    w.gl.push_commit(
        PROJECT,
        "trunk",
        &[("envs/web/kustomization.yaml", Some(&web_kustomization)), ("envs/web/deployment.yaml", Some(&web_deployment))],
        "alice",
    );
    let mut web = w.app("web");
    web.revision = "HEAD".into();
    w.write_app("web", &web.to_yaml());

    let out = w.run();
    out.assert_exit(0);
    let base = |head: &str| w.gl.mrs(PROJECT).into_iter().find(|m| m.source_branch == head).map(|m| m.target_branch);
    assert_eq!(base(BRANCH).as_deref(), Some("release"), "{out}");
    assert_eq!(base("argocd-image-pr/argocd/web").as_deref(), Some("trunk"), "{out}");
    assert_eq!(out.app("web")["base"], "trunk");
    let parent = w.git(&["rev-parse", "argocd-image-pr/argocd/web^"]);
    assert_eq!(parent.trim(), w.sha("trunk").unwrap(), "built on the default branch's tip");
    w.gl.finish();
}

#[test]
fn the_mr_description_shows_the_build_date_and_digest_newest_build_read() {
    let w = World::new(&["1.0.0"], "1.0.0");
    let digests = w.reg.push_tags("team/worker", &["build-1", "build-2"]);
    let image = w.reg.image("team/worker");
    w.gl.push_commit(
        PROJECT,
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
    let mr = w.open_mrs().into_iter().find(|m| m.source_branch == "argocd-image-pr/argocd/worker").unwrap();
    let body = mr.description.unwrap();
    let short = &digests[1]["sha256:".len().."sha256:".len() + 12];
    assert!(
        // Registry text is escaped for Markdown (`\-` renders as `-`).
        body.contains(&format!("| build | 2024\\-01\\-02T00:00:00Z | `sha256:{short}` |")),
        "build date and digest of build-2:\n{body}"
    );
    w.gl.finish();
}

/// An Application on another git server is not mapped onto the namesake project of the
/// configured GitLab.
#[test]
fn a_repository_on_another_server_gets_no_mr_on_this_one() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    // The same project reached under another host name (loopback, so the test stays local).
    let other_host = w.url().replace("127.0.0.1", "localhost");
    let elsewhere = App::new("elsewhere", &other_host, "envs/api").image_list(&format!("api={}:^1.0", w.image));
    w.write_app("elsewhere", &elsewhere.to_yaml());
    let out = w.run();
    assert_action(&out, "api", "opened");
    assert!(w.open_mrs().iter().all(|m| m.source_branch != "argocd-image-pr/argocd/elsewhere"), "no MR for the other server's project");
    let error = out.app("elsewhere").to_string();
    assert!(error.contains("localhost") && error.contains("error"), "the error names the repository{out}");
    w.gl.finish();
}
