//! `argocd-image-pr run --once --forge local` end to end: the real binary, a real registry, a
//! real git repository that the bot pushes its branches to, pull requests as JSON files. Each
//! test is one story of the pull-request lifecycle (docs/lifecycle.md).

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use support::cli::{Plan, PlanOutput};
use support::gitops::{App, GitRepo, deployment, kustomization};
use support::registry::{Auth, TestRegistry};

const BRANCH: &str = "argocd-image-pr/argocd/api";

/// A registry with `team/api`, a GitOps repository with the Application `api` (Kustomize,
/// `^1.0`) and a local forge directory. People work in `git` and push to `origin`, a bare
/// repository: the Applications' `repoURL`, where the bot pushes its branches.
struct World {
    reg: TestRegistry,
    git: GitRepo,
    origin: tempfile::TempDir,
    forge: tempfile::TempDir,
    image: String,
}

impl World {
    fn new(tags: &[&str], running: &str) -> World {
        let reg = TestRegistry::start(Auth::Anonymous);
        reg.push_tags("team/api", tags);
        let image = reg.image("team/api");
        let git = GitRepo::new();
        let origin = tempfile::Builder::new().prefix("aipr-origin-").tempdir().unwrap();
        git.git(&["init", "-q", "--bare", "-b", "main", &origin.path().display().to_string()]);
        git.git(&["remote", "add", "origin", &origin.path().display().to_string()]);
        let world = World { reg, git, origin, forge: tempfile::tempdir().unwrap(), image };
        world.add_app("api", running, &[]);
        world.commit("api runs it");
        world
    }

    fn url(&self) -> String {
        format!("file://{}", self.origin.path().display())
    }

    /// Commits everything written and pushes `main`; returns the commit.
    fn commit(&self, message: &str) -> String {
        let sha = self.git.commit(message);
        self.git.git(&["push", "-q", "origin", "main"]);
        sha
    }

    fn app(&self, name: &str) -> App {
        App::new(name, &self.url(), &format!("envs/{name}")).image_list(&format!("api={}:^1.0", self.image))
    }

    /// git in the origin repository.
    fn origin_git(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("git").args(args).current_dir(self.origin.path()).output().unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Writes the Application `name` (with our own annotations `ours`) and its Kustomize source.
    fn add_app(&self, name: &str, running: &str, ours: &[(&str, &str)]) {
        self.git.write(&format!("envs/{name}/kustomization.yaml"), &kustomization(&self.image, running));
        self.git.write(&format!("envs/{name}/deployment.yaml"), &deployment(name, &self.image));
        self.git.write(&format!("apps/{name}.yaml"), &with_our_annotations(&self.app(name).to_yaml(), ours));
    }

    fn run(&self) -> PlanOutput {
        let apps = self.git.path().join("apps");
        Plan::command(&["run", "--once", "--forge", "local"])
            .arg("--local-forge-dir")
            .arg(self.forge.path())
            .apps(&apps)
            .json()
    }

    /// `argocd-image-pr local --local-forge-dir ... --repo <origin> <args>`: its stdout.
    fn local(&self, args: &[&str]) -> String {
        let out = std::process::Command::new(support::cli::BIN)
            .arg("local")
            .arg("--local-forge-dir")
            .arg(self.forge.path())
            .arg("--repo")
            .arg(self.url())
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "local {args:?}: {text}{}", String::from_utf8_lossy(&out.stderr));
        text
    }

    /// The stored record of pull request `n`.
    fn pr(&self, n: u64) -> Value {
        let file = find_file(self.forge.path(), &format!("{n}.json")).unwrap_or_else(|| panic!("no record of PR #{n}"));
        serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap()
    }

    fn pr_count(&self) -> usize {
        files(self.forge.path()).keys().filter(|p| p.contains("/pulls/")).count()
    }

    fn rev(&self, rev: &str) -> Option<String> {
        let out = std::process::Command::new("git")
            .args(["rev-parse", "--verify", "-q", rev])
            .current_dir(self.origin.path())
            .output()
            .unwrap();
        out.status.success().then(|| String::from_utf8(out.stdout).unwrap().trim().to_string())
    }
}

/// Adds `argocd-image-pr.io/` annotations to an Application manifest.
fn with_our_annotations(yaml: &str, ours: &[(&str, &str)]) -> String {
    let lines: String = ours.iter().map(|(k, v)| format!("    argocd-image-pr.io/{k}: {}\n", serde_json::to_string(v).unwrap())).collect();
    yaml.replacen("  annotations:\n", &format!("  annotations:\n{lines}"), 1)
}

/// Every file under `dir`, path → bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if !p.ends_with(".lock") {
                out.insert(p.display().to_string(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    files(dir).keys().find(|p| p.ends_with(&format!("/pulls/{name}"))).map(PathBuf::from)
}

fn app_of<'a>(out: &'a PlanOutput, name: &str) -> &'a Value {
    out.app(name)
}

fn assert_action(out: &PlanOutput, name: &str, action: &str) {
    assert_eq!(app_of(out, name)["action"], action, "{name}: action{out}");
}

fn stat(out: &PlanOutput, key: &str) -> u64 {
    out.plan()["stats"][key].as_u64().unwrap_or_else(|| panic!("no stats.{key}{out}"))
}

#[test]
fn opens_one_pr_then_touches_nothing_then_updates_it_in_place() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");

    // Open
    let out = w.run();
    out.assert_exit(0);
    assert_action(&out, "api", "opened");
    assert_eq!(app_of(&out, "api")["pr"], 1, "{out}");
    let main1 = w.rev("main").unwrap();
    let head1 = w.rev(BRANCH).expect("the branch was pushed");
    assert_eq!(w.origin_git(&["rev-list", "--count", &format!("main..{BRANCH}")]).trim(), "1", "exactly one commit");
    assert_eq!(w.rev(&format!("{BRANCH}^")).unwrap(), main1, "on top of the current base");
    let diff = w.origin_git(&["diff", "main", BRANCH]);
    assert!(diff.contains("-    newTag: 1.0.0") && diff.contains("+    newTag: 1.1.0"), "the exact edit:\n{diff}");
    assert_eq!(diff.matches("diff --git").count(), 1, "only the kustomization changes:\n{diff}");
    let author = w.origin_git(&["log", "-1", "--format=%an <%ae>|%cn <%ce>", BRANCH]);
    assert_eq!(author.trim(), "argocd-image-pr <argocd-image-pr@users.noreply.local>|argocd-image-pr <argocd-image-pr@users.noreply.local>");
    let pr = w.pr(1);
    assert_eq!(pr["state"], "open");
    assert_eq!(pr["head"], BRANCH);
    assert_eq!(pr["base"], "main");
    assert!(pr["title"].as_str().unwrap().contains("1.1.0"), "title: {}", pr["title"]);
    let body = pr["body"].as_str().unwrap();
    assert!(body.contains("<!-- argocd-image-pr:metadata {"), "hidden metadata block:\n{body}");
    assert!(body.contains(&head1), "metadata records the commit:\n{body}");
    assert!(stat(&out, "forge_writes") >= 1 && stat(&out, "git_pushes") == 1, "{out}");

    // No-op: zero writes
    let before = files(w.forge.path());
    let out = w.run();
    out.assert_exit(0);
    assert_action(&out, "api", "unchanged");
    assert_eq!((stat(&out, "forge_writes"), stat(&out, "git_pushes")), (0, 0), "{out}");
    assert_eq!(stat(&out, "forge_calls"), 1, "one listing per repository{out}");
    assert_eq!(files(w.forge.path()), before, "the PR record is unchanged byte for byte");
    assert_eq!(w.rev(BRANCH).unwrap(), head1, "the branch is unchanged");

    // A newer version, and the base moved meanwhile
    w.reg.push_tags("team/api", &["1.2.0"]);
    w.git.write("README.md", "unrelated\n");
    let main2 = w.commit("unrelated change on main");
    let out = w.run();
    out.assert_exit(0);
    assert_action(&out, "api", "updated");
    assert_eq!(app_of(&out, "api")["pr"], 1, "same PR number{out}");
    assert_eq!(w.pr_count(), 1, "no second PR");
    let head2 = w.rev(BRANCH).unwrap();
    assert_ne!(head2, head1, "force-pushed");
    assert_eq!(w.rev(&format!("{BRANCH}^")).unwrap(), main2, "regenerated on the latest base");
    assert_eq!(w.origin_git(&["rev-list", "--count", &format!("main..{BRANCH}")]).trim(), "1");
    let diff = w.origin_git(&["diff", "main", BRANCH]);
    assert!(diff.contains("-    newTag: 1.0.0") && diff.contains("+    newTag: 1.2.0"), "{diff}");
    let pr = w.pr(1);
    assert!(pr["title"].as_str().unwrap().contains("1.2.0"), "title updated: {}", pr["title"]);
    assert!(pr["body"].as_str().unwrap().contains(&head2), "metadata updated");

    // `local show` prints the PR for people
    let show = w.local(&["show", "1"]);
    assert!(show.contains("#1 ") && show.contains("+    newTag: 1.2.0"), "{show}");
}

#[test]
fn closes_the_pr_when_the_base_already_has_the_version() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.run().assert_exit(0);
    assert!(w.rev(BRANCH).is_some());
    // Someone does it by hand.
    w.git.write("envs/api/kustomization.yaml", &kustomization(&w.image, "1.1.0"));
    w.commit("api 1.1.0 by hand");

    let out = w.run();
    out.assert_exit(0);
    assert_action(&out, "api", "closed");
    let pr = w.pr(1);
    assert_eq!(pr["state"], "closed", "{pr}");
    let comments = pr["comments"].as_array().unwrap();
    assert_eq!(comments.len(), 1, "{pr}");
    assert!(comments[0]["body"].as_str().unwrap().contains("already has the versions"), "{pr}");
    assert_eq!(w.rev(BRANCH), None, "branch deleted");

    // And nothing more afterwards.
    let out = w.run();
    assert_eq!(stat(&out, "forge_writes"), 0, "{out}");
}

#[test]
fn closes_the_pr_when_the_application_loses_its_annotations() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.run().assert_exit(0);
    let mut bare = App::new("api", &w.url(), "envs/api");
    bare.annotations.clear();
    w.git.write("apps/api.yaml", &bare.to_yaml());
    w.commit("stop updating api");

    let out = w.run();
    out.assert_exit(0);
    assert_action(&out, "api", "closed");
    let pr = w.pr(1);
    assert_eq!(pr["state"], "closed");
    assert!(pr["comments"][0]["body"].as_str().unwrap().contains("no longer has the annotations"), "{pr}");
    assert_eq!(w.rev(BRANCH), None, "branch deleted");
}

#[test]
fn a_foreign_commit_is_noted_once_and_the_branch_left_alone() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.run().assert_exit(0);
    // A person pushes to the bot's branch.
    w.git.git(&["fetch", "-q", "origin", BRANCH]);
    w.git.git(&["checkout", "-q", "-b", "mine", "FETCH_HEAD"]);
    w.git.write("envs/api/notes.yaml", "note: mine\n");
    w.git.commit("my fix");
    w.git.git(&["push", "-q", "origin", &format!("mine:{BRANCH}")]);
    w.git.git(&["checkout", "-q", "main"]);
    let theirs = w.rev(BRANCH).unwrap();
    w.reg.push_tags("team/api", &["1.2.0"]);

    let out = w.run();
    out.assert_exit(0);
    assert_action(&out, "api", "skipped");
    assert_eq!(w.rev(BRANCH).unwrap(), theirs, "not pushed over");
    let pr = w.pr(1);
    assert_eq!(pr["comments"].as_array().unwrap().len(), 1, "said once{pr}");
    assert!(pr["comments"][0]["body"].as_str().unwrap().contains("Someone else pushed"), "{pr}");

    let out = w.run();
    assert_action(&out, "api", "skipped");
    assert_eq!(stat(&out, "forge_writes"), 0, "not said again{out}");
    assert_eq!(w.pr(1)["comments"].as_array().unwrap().len(), 1);
    assert_eq!(w.rev(BRANCH).unwrap(), theirs);
}

#[test]
fn two_applications_in_one_repository_get_two_prs_and_settings_from_annotations() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.add_app("web", "1.0.0", &[("labels", "deps, web"), ("assignees", "alice"), ("draft", "true")]);
    w.commit("web too");

    let out = w.run();
    out.assert_exit(0);
    assert_action(&out, "api", "opened");
    assert_action(&out, "web", "opened");
    assert_eq!(w.pr_count(), 2);
    assert!(w.rev("argocd-image-pr/argocd/web").is_some() && w.rev(BRANCH).is_some());
    let web = w.pr(app_of(&out, "web")["pr"].as_u64().unwrap());
    assert_eq!(web["labels"], serde_json::json!(["deps", "web"]), "{web}");
    assert_eq!(web["assignees"], serde_json::json!(["alice"]), "{web}");
    assert_eq!(web["draft"], true, "{web}");

    let out = w.run();
    assert_eq!((stat(&out, "forge_writes"), stat(&out, "forge_calls")), (0, 1), "{out}");
}

#[test]
fn a_bad_annotation_is_that_applications_error_only() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.add_app("web", "1.0.0", &[("auto-merge", "sometimes")]);
    w.commit("web with a typo");

    let out = w.run();
    out.assert_exit(1);
    assert_action(&out, "api", "opened");
    assert_action(&out, "web", "error");
    let err = app_of(&out, "web")["errors"][0].as_str().unwrap_or("").to_string();
    assert!(err.contains("argocd-image-pr.io/auto-merge"), "names the key: {err}{out}");
}

#[test]
fn crash_after_push_before_the_pr_converges_without_pushing_again() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.run().assert_exit(0);
    let head = w.rev(BRANCH).unwrap();
    // As if the run had died right after the push: the branch is there, the PR is not.
    std::fs::remove_file(find_file(w.forge.path(), "1.json").unwrap()).unwrap();

    let out = w.run();
    out.assert_exit(0);
    assert_action(&out, "api", "opened");
    assert_eq!(stat(&out, "git_pushes"), 0, "the branch already carries the change{out}");
    assert_eq!(w.rev(BRANCH).unwrap(), head);
    assert_eq!(w.pr_count(), 1, "exactly one PR");
}

#[test]
fn crash_after_the_pr_before_its_labels_converges() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.add_app("web", "1.0.0", &[("labels", "deps")]);
    w.commit("web");
    let out = w.run();
    let n = app_of(&out, "web")["pr"].as_u64().unwrap();
    // As if the run had died between creating the PR and labelling it.
    let file = find_file(w.forge.path(), &format!("{n}.json")).unwrap();
    let mut record: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    record["labels"] = serde_json::json!([]);
    std::fs::write(&file, serde_json::to_vec_pretty(&record).unwrap()).unwrap();

    let out = w.run();
    out.assert_exit(0);
    assert_eq!((stat(&out, "forge_writes"), stat(&out, "git_pushes")), (1, 0), "only the labels{out}");
    assert_eq!(w.pr(n)["labels"], serde_json::json!(["deps"]));
    assert_eq!(w.pr_count(), 2);
}
