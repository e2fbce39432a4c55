//! Issue 5 against the fake GitHub, end to end: rollback by revert, close = ignore, reopen, comment
//! commands and `status`, with the real binary (`run --once --forge github`) started afresh at
//! every step — whatever the bot knows between steps it reads back from the fake GitHub (the PRs,
//! their bodies' ledgers, comments) and git. A real registry; every request and answer checked
//! against GitHub's OpenAPI description (`finish()` at the end of each test).
//!
//! People act through the fake's controls: merge, close and reopen as a user, comment as a user,
//! push to `main` or to the bot's branch as someone else, set permissions.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::cli::{Plan, PlanOutput};
use support::fake_github::{self, FakeGithub, Role};
use support::gitops::{App, deployment, kustomization};
use support::registry::{Auth, TestRegistry};

const REPO: &str = "org/gitops";
const BRANCH: &str = "argocd-image-pr/argocd/api";

/// A registry with `team/api`; the fake GitHub with `org/gitops`, where the Application `api`
/// (Kustomize, `^1.0`) runs `running`; the Application manifests in a directory (`--apps`).
/// `alice` and `bob` may write to the repository.
struct World {
    reg: TestRegistry,
    gh: FakeGithub,
    apps: tempfile::TempDir,
    image: String,
}

impl World {
    fn new(tags: &[&str], running: &str) -> World {
        let reg = TestRegistry::start(Auth::Anonymous);
        reg.push_tags("team/api", tags);
        let image = reg.image("team/api");
        let gh = FakeGithub::start();
        gh.create_repo(REPO, &[("README.md", "GitOps\n")]);
        for person in ["alice", "bob"] {
            gh.set_permission(REPO, person, Role::Write);
        }
        let w = World { reg, gh, apps: tempfile::tempdir().unwrap(), image };
        let files = [
            ("envs/api/kustomization.yaml", kustomization(&w.image, running)),
            ("envs/api/deployment.yaml", deployment("api", &w.image)),
        ];
        w.push_main(&files);
        w.write_app(&w.app().image_list(&format!("api={}:^1.0", w.image)));
        w
    }

    fn app(&self) -> App {
        App::new("api", &self.gh.git_url(REPO), "envs/api")
    }

    fn write_app(&self, app: &App) {
        std::fs::write(self.apps.path().join("api.yaml"), app.to_yaml()).unwrap();
    }

    /// alice pushes `files` to `main`.
    fn push_main(&self, files: &[(&str, String)]) -> String {
        let files: Vec<(&str, Option<&str>)> = files.iter().map(|(p, c)| (*p, Some(c.as_str()))).collect();
        self.gh.push_commit(REPO, "main", &files, "alice")
    }

    /// Flags shared by `run` and `status`: the fake GitHub, the token, the Applications.
    fn command(&self, args: &[&str]) -> Plan {
        self.gh.clear_requests();
        Plan::command(args)
            .arg("--github-url")
            .arg(self.gh.url())
            .env("GITHUB_TOKEN", fake_github::TOKEN)
            .apps(self.apps.path())
    }

    /// `run --once --forge github`, a fresh process; the fake's request log starts afresh.
    fn run(&self) -> PlanOutput {
        let out = self.command(&["run", "--once", "--forge", "github"]).json();
        eprintln!("run: {} → API {:?}", actions(&out), self.api_calls());
        out
    }

    /// `status --forge github --output json`.
    fn status(&self) -> PlanOutput {
        let out = self.command(&["status", "--forge", "github"]).json();
        assert_eq!(self.gh.writes(), 0, "status writes nothing: {:?}", self.api_calls());
        out
    }

    /// The API operations of the last command, in order (git's smart HTTP left out).
    fn api_calls(&self) -> Vec<String> {
        self.gh.requests().iter().filter(|r| r.operation != "git").map(|r| r.operation.clone()).collect()
    }

    /// A person comments on PR `n` at once, as people do seconds after the bot wrote it;
    /// returns the comment's id.
    fn comment(&self, n: u64, who: &str, body: &str) -> u64 {
        self.gh.comment(REPO, n, who, body)
    }

    /// A person closes (`open: false`) or reopens PR `n`, right after the bot's last write.
    fn set_open(&self, n: u64, open: bool) {
        self.gh.set_pull_open(REPO, n, open, "alice");
    }

    /// What the bot said on PR `n`.
    fn bot_comments(&self, n: u64) -> Vec<String> {
        self.gh.comments(REPO, n).into_iter().filter(|c| c.user == fake_github::BOT_USER).map(|c| c.body).collect()
    }

    /// The bot's reactions to comment `id`.
    fn reactions(&self, id: u64) -> Vec<String> {
        self.gh.reactions(id).into_iter().filter(|r| r.user == fake_github::BOT_USER).map(|r| r.content).collect()
    }

    /// The tag `api` runs on `branch`.
    fn tag_on(&self, branch: &str) -> String {
        let file = self.gh.file_at(REPO, branch, "envs/api/kustomization.yaml").unwrap_or_else(|| panic!("no {branch}"));
        file.lines().find_map(|l| l.trim().strip_prefix("newTag: ")).unwrap_or("").to_string()
    }

    /// git in the fake's bare repository.
    fn git(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("git").args(args).current_dir(self.gh.bare_path(REPO)).output().unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// A person reverts merge commit `sha` on `main` (`git revert -m 1`, as GitHub's Revert
    /// button does) and pushes it.
    fn revert(&self, sha: &str) {
        let work = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .args(["-c", "user.name=alice", "-c", "user.email=alice@users.noreply.example.com", "-c", "commit.gpgsign=false"])
                .args(args)
                .current_dir(work.path())
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .output()
                .unwrap();
            assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        git(&["clone", "-q", "-b", "main", &self.gh.bare_path(REPO).display().to_string(), "."]);
        git(&["revert", "--no-edit", "-m", "1", sha]);
        git(&["push", "-q", "origin", "main"]);
    }
}

fn actions(out: &PlanOutput) -> String {
    let Some(apps) = out.plan().get("applications").and_then(Value::as_array) else { return format!("{out}") };
    apps.iter().map(|a| format!("{}={}", a["name"].as_str().unwrap_or(""), a["action"].as_str().unwrap_or(""))).collect::<Vec<_>>().join(",")
}

fn action(out: &PlanOutput) -> String {
    out.app("api")["action"].as_str().unwrap_or("").to_string()
}

#[test]
fn merge_revert_then_a_newer_release() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    let out = w.run();
    out.assert_exit(0);
    assert_eq!(action(&out), "opened", "{out}");
    let merge = w.gh.merge_pull(REPO, 1, "alice");
    assert_eq!(w.tag_on("main"), "1.1.0");
    let out = w.run();
    out.assert_exit(0);
    assert_eq!(action(&out), "unchanged", "{out}");

    // 1.1.0 is bad: alice reverts the merge on main.
    w.revert(&merge);
    assert_eq!(w.tag_on("main"), "1.0.0");
    let out = w.run();
    out.assert_exit(0);
    assert_eq!(action(&out), "held", "1.1.0 is not proposed again{out}");
    let reason = out.app("api")["reason"].as_str().unwrap_or("");
    assert!(reason.contains("rolled back") && reason.contains("#1"), "names the rollback: {reason}");
    assert_eq!(w.gh.pulls(REPO).len(), 1, "no new PR");
    let notices = w.bot_comments(1);
    assert_eq!(notices.len(), 1, "said once, on the reverted PR: {notices:?}");
    assert!(notices[0].contains("noticed a rollback") && notices[0].contains("1.1.0"), "{}", notices[0]);
    assert_eq!(
        w.api_calls(),
        ["pulls/list", "issues/list-comments-for-repo", "pulls/update", "issues/create-comment"],
        "the listings, the ledger, then the notice"
    );

    // Restarted, the bot sees the same and says nothing more.
    for _ in 0..2 {
        let out = w.run();
        assert_eq!(action(&out), "held", "{out}");
        assert_eq!(w.gh.writes(), 0, "{:?}", w.api_calls());
    }
    assert_eq!(w.bot_comments(1).len(), 1);

    // A strictly newer release is proposed, on a new PR (the merged one is done).
    w.reg.push_tags("team/api", &["1.1.1"]);
    let out = w.run();
    out.assert_exit(0);
    assert_eq!(action(&out), "opened", "{out}");
    assert_eq!(out.app("api")["pr"], 2, "{out}");
    assert_eq!(w.tag_on(BRANCH), "1.1.1");
    assert!(w.gh.pull(REPO, 2).open);
    assert_eq!(w.bot_comments(1).len(), 1, "no second notice");
    let out = w.run();
    assert_eq!((action(&out), w.gh.writes()), ("unchanged".to_string(), 0), "{:?}", w.api_calls());

    let status = w.status();
    status.assert_exit(0);
    let image = &status.app("api")["images"][0];
    assert_eq!(image["git"]["tag"], "1.0.0", "{status}");
    assert_eq!(image["newest"], "1.1.1", "{status}");
    assert_eq!(status.app("api")["pr"]["number"], 2, "{status}");
    let holds = image["holds"].as_array().unwrap();
    let rollback = holds.iter().find(|h| h["kind"] == "rollback").unwrap_or_else(|| panic!("{status}"));
    assert_eq!((&rollback["version"]["tag"], &rollback["origin"]["pr"]), (&Value::from("1.1.0"), &Value::from(1)), "{status}");
    assert_eq!(rollback["origin"]["url"], format!("{}/{REPO}/pull/1", w.gh.url()), "{status}");
    w.gh.finish();
}

#[test]
fn close_ignores_its_versions_and_a_newer_one_reopens_the_same_pr() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.run().assert_exit(0);
    w.set_open(1, false);

    let out = w.run();
    out.assert_exit(0);
    assert_eq!(action(&out), "held", "{out}");
    assert_eq!(w.gh.pulls(REPO).len(), 1);
    assert!(!w.gh.pull(REPO, 1).open, "left closed");
    assert!(w.gh.branch_sha(REPO, BRANCH).is_some(), "the branch is kept, for a reopen");
    let said = w.bot_comments(1);
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(said[0].contains("closed without merging") && said[0].contains("1.1.0"), "{}", said[0]);
    assert_eq!(w.api_calls(), ["pulls/list", "issues/list-comments-for-repo", "pulls/update", "issues/create-comment"]);
    for _ in 0..2 {
        w.run().assert_exit(0);
        assert_eq!(w.gh.writes(), 0, "said once: {:?}", w.api_calls());
    }

    let status = w.status();
    let hold = &status.app("api")["images"][0]["holds"][0];
    assert_eq!((hold["kind"].as_str(), hold["origin"]["type"].as_str()), (Some("closed"), Some("closed-pr")), "{status}");
    assert!(hold["origin"]["closed_at"].is_string(), "{status}");

    // A strictly newer version: the same PR comes back, with its conversation.
    w.reg.push_tags("team/api", &["1.2.0"]);
    let out = w.run();
    out.assert_exit(0);
    assert_eq!(action(&out), "reopened", "{out}");
    assert_eq!(out.app("api")["pr"], 1, "{out}");
    assert_eq!(w.gh.pulls(REPO).len(), 1);
    let pr = w.gh.pull(REPO, 1);
    assert!(pr.open);
    assert!(pr.title.contains("1.2.0"), "{}", pr.title);
    assert_eq!(w.tag_on(BRANCH), "1.2.0");
    assert_eq!(w.git(&["rev-list", "--count", &format!("main..{BRANCH}")]).trim(), "1");
    let out = w.run();
    assert_eq!((action(&out), w.gh.writes()), ("unchanged".to_string(), 0), "{:?}", w.api_calls());
    w.gh.finish();
}

#[test]
fn a_person_reopening_the_closed_pr_undoes_the_ignore() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.run().assert_exit(0);
    w.set_open(1, false);
    assert_eq!(action(&w.run()), "held");
    w.set_open(1, true);

    let out = w.run();
    out.assert_exit(0);
    assert!(["unchanged", "updated"].contains(&action(&out).as_str()), "its open PR again{out}");
    assert_eq!(out.app("api")["pr"], 1, "{out}");
    assert!(w.gh.pull(REPO, 1).open);
    assert_eq!(w.gh.pulls(REPO).len(), 1);
    assert_eq!(w.tag_on(BRANCH), "1.1.0");

    // Nothing holds it any more: a newer version updates it in place.
    w.reg.push_tags("team/api", &["1.2.0"]);
    let out = w.run();
    assert_eq!(action(&out), "updated", "{out}");
    assert_eq!(w.tag_on(BRANCH), "1.2.0");
    let status = w.status();
    assert_eq!(status.app("api")["images"][0]["holds"], Value::Array(vec![]), "{status}");
    w.gh.finish();
}

#[test]
fn pin_closes_the_pr_and_holds_until_unpin() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.run().assert_exit(0);
    let pin = w.comment(1, "alice", "1.1.0 needs a migration first.\n\n/pin");
    let out = w.run();
    out.assert_exit(0);
    assert_eq!(action(&out), "closed", "{out}");
    assert!(!w.gh.pull(REPO, 1).open);
    assert_eq!(w.reactions(pin), ["+1"], "acknowledged with a reaction");
    let said = w.bot_comments(1);
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(said[0].contains("@alice") && said[0].contains("held") && said[0].contains("stays closed"), "{}", said[0]);
    assert_eq!(
        w.api_calls(),
        [
            "pulls/list",
            "issues/list-comments-for-repo",
            "repos/get-collaborator-permission-level",
            "pulls/update",
            "issues/create-comment",
            "reactions/create-for-issue-comment",
            "pulls/update"
        ],
        "read, check, record, reply, react, close"
    );

    // A newer version, a restart: still held, and the close by the bot ignores nothing.
    w.reg.push_tags("team/api", &["1.2.0"]);
    for _ in 0..2 {
        let out = w.run();
        assert_eq!(action(&out), "held", "{out}");
        assert_eq!(w.gh.writes(), 0, "{:?}", w.api_calls());
    }
    assert!(!w.gh.pull(REPO, 1).open);
    assert_eq!(w.bot_comments(1).len(), 1, "no closed-ignored notice for a close by the bot");

    let status = w.status();
    status.assert_exit(0);
    let hold = &status.app("api")["images"][0]["holds"][0];
    assert_eq!(hold["kind"], "pin", "{status}");
    assert_eq!(hold["origin"]["type"], "comment", "{status}");
    assert_eq!(hold["origin"]["by"], "alice", "{status}");
    assert_eq!(hold["origin"]["pr"], 1, "{status}");
    assert_eq!(hold["origin"]["url"], format!("{}/{REPO}/pull/1#issuecomment-{pin}", w.gh.url()), "{status}");
    let at = hold["origin"]["at"].as_str().unwrap_or_else(|| panic!("{status}"));
    assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{status}");
    assert_eq!(status.app("api")["pr"], Value::Null, "{status}");

    // /unpin on the closed PR: the next cycle proposes again, on the same PR.
    let unpin = w.comment(1, "bob", "/unpin");
    let out = w.run();
    out.assert_exit(0);
    assert_eq!(action(&out), "reopened", "{out}");
    assert_eq!(out.app("api")["pr"], 1, "{out}");
    assert!(w.gh.pull(REPO, 1).open);
    assert_eq!(w.tag_on(BRANCH), "1.2.0");
    assert_eq!(w.reactions(unpin), ["+1"]);
    assert_eq!(w.bot_comments(1).len(), 2, "one reply per comment");
    let out = w.run();
    assert_eq!((action(&out), w.gh.writes()), ("unchanged".to_string(), 0), "{:?}", w.api_calls());
    w.gh.finish();
}

#[test]
fn pin_at_a_version_updates_the_pr_to_exactly_it_then_unpin_and_ignore_one() {
    let w = World::new(&["1.0.0", "1.1.0", "1.2.0"], "1.0.0");
    w.run().assert_exit(0);
    assert_eq!(w.tag_on(BRANCH), "1.2.0");
    let pin = w.comment(1, "alice", "/pin `api` `1.1.0`");
    let out = w.run();
    out.assert_exit(0);
    assert_eq!(action(&out), "updated", "{out}");
    assert_eq!(w.tag_on(BRANCH), "1.1.0", "exactly the pinned version");
    assert!(w.gh.pull(REPO, 1).title.contains("1.1.0"));
    assert_eq!(w.reactions(pin), ["+1"]);
    assert!(w.bot_comments(1)[0].contains("`1.1.0`"), "{:?}", w.bot_comments(1));

    w.reg.push_tags("team/api", &["1.3.0"]);
    let out = w.run();
    assert_eq!((action(&out), w.gh.writes()), ("unchanged".to_string(), 0), "pinned: 1.3.0 is not proposed{out}");
    assert_eq!(w.tag_on(BRANCH), "1.1.0");

    // Two commands in one comment, in order: unpin, then skip 1.3.0.
    let both = w.comment(1, "alice", "/unpin api\n/ignore 1.3.0");
    let out = w.run();
    out.assert_exit(0);
    assert_eq!(action(&out), "updated", "{out}");
    assert_eq!(w.tag_on(BRANCH), "1.2.0", "1.3.0 skipped, 1.2.0 still proposed");
    assert_eq!(w.bot_comments(1).len(), 2, "one reply per comment");
    assert_eq!(w.reactions(both), ["+1"]);
    let status = w.status();
    let holds = status.app("api")["images"][0]["holds"].as_array().unwrap().clone();
    assert_eq!(holds.len(), 1, "{status}");
    assert_eq!((holds[0]["kind"].as_str(), holds[0]["version"]["tag"].as_str()), (Some("ignore"), Some("1.3.0")), "{status}");
    assert_eq!(holds[0]["origin"]["by"], "alice", "{status}");

    w.reg.push_tags("team/api", &["1.3.1"]);
    w.run().assert_exit(0);
    assert_eq!(w.tag_on(BRANCH), "1.3.1", "newer than the ignored version is proposed");
    w.gh.finish();
}

#[test]
fn pin_and_unpin_one_alias_of_two() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.reg.push_tags("team/worker", &["2.0.0", "2.1.0"]);
    let worker = w.reg.image("team/worker");
    let k = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - deployment.yaml\n\
         images:\n  - name: {}\n    newTag: 1.0.0\n  - name: {worker}\n    newTag: 2.0.0\n",
        w.image
    );
    w.push_main(&[("envs/api/kustomization.yaml", k)]);
    w.write_app(&w.app().image_list(&format!("api={}:^1.0,worker={worker}:^2.0", w.image)));

    w.run().assert_exit(0);
    let diff = w.git(&["diff", "main", BRANCH]);
    assert!(diff.contains("newTag: 1.1.0") && diff.contains("newTag: 2.1.0"), "{diff}");

    let pin = w.comment(1, "alice", "/pin worker");
    let out = w.run();
    assert_eq!(action(&out), "updated", "{out}");
    let diff = w.git(&["diff", "main", BRANCH]);
    assert!(diff.contains("newTag: 1.1.0") && !diff.contains("newTag: 2.1.0"), "the PR no longer moves the worker:\n{diff}");
    assert!(w.gh.pull(REPO, 1).open);
    assert_eq!(w.reactions(pin), ["+1"]);
    assert!(w.bot_comments(1)[0].contains("`worker` is held"), "{:?}", w.bot_comments(1));
    let status = w.status();
    let images = status.app("api")["images"].as_array().unwrap();
    let held = |alias: &str| images.iter().find(|i| i["alias"] == alias).unwrap()["holds"].as_array().unwrap().len();
    assert_eq!((held("api"), held("worker")), (0, 1), "{status}");

    let unpin = w.comment(1, "bob", "/unpin worker");
    let out = w.run();
    assert_eq!(action(&out), "updated", "{out}");
    let diff = w.git(&["diff", "main", BRANCH]);
    assert!(diff.contains("newTag: 1.1.0") && diff.contains("newTag: 2.1.0"), "the worker is back:\n{diff}");
    assert_eq!(w.reactions(unpin), ["+1"]);
    let out = w.run();
    assert_eq!((action(&out), w.gh.writes()), ("unchanged".to_string(), 0), "{:?}", w.api_calls());
    w.gh.finish();
}

#[test]
fn readers_are_refused_quotes_and_code_are_not_commands_malformed_ones_get_usage() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.run().assert_exit(0);
    w.gh.set_permission(REPO, "mallory", Role::Read);
    let refused = w.comment(1, "mallory", "/pin");
    let quoted = w.gh.comment(REPO, 1, "alice", "> /pin\n\n```\n/pin\n```\n\n    /pin\n\nSee `/pin` in the docs. <!-- /pin -->");
    let malformed = w.gh.comment(REPO, 1, "alice", "/ignore");
    let typo = w.gh.comment(REPO, 1, "bob", "/pinn api");
    let out = w.run();
    out.assert_exit(0);
    assert_eq!(action(&out), "unchanged", "nothing changed{out}");
    assert!(w.gh.pull(REPO, 1).open);
    assert_eq!(w.tag_on(BRANCH), "1.1.0");
    let said = w.bot_comments(1);
    assert_eq!(said.len(), 3, "a refusal and two errors, nothing for the quoted one: {said:?}");
    assert!(said[0].contains("@mallory") && said[0].contains("write access"), "{}", said[0]);
    assert!(said[1].contains("needs &lt;version&gt;") && said[1].contains("`/ignore [<alias>] <version>`"), "{}", said[1]);
    assert!(said[2].contains("did you mean") && said[2].contains("/pin"), "{}", said[2]);
    assert_eq!(w.reactions(refused), ["confused"]);
    assert_eq!(w.reactions(malformed), ["confused"]);
    assert_eq!(w.reactions(typo), ["confused"]);
    assert!(w.reactions(quoted).is_empty(), "quoted commands get nothing");
    let calls = w.api_calls();
    let permissions = calls.iter().filter(|c| *c == "repos/get-collaborator-permission-level").count();
    assert_eq!(permissions, 3, "once per person: {calls:?}");
    assert_eq!(calls.iter().filter(|c| *c == "pulls/update").count(), 1, "one ledger write: {calls:?}");

    // Each comment once, across restarts.
    for _ in 0..2 {
        let out = w.run();
        assert_eq!((action(&out), w.gh.writes()), ("unchanged".to_string(), 0), "{:?}", w.api_calls());
    }
    assert_eq!(w.bot_comments(1).len(), 3);
    let status = w.status();
    assert_eq!(status.app("api")["images"][0]["holds"], Value::Array(vec![]), "the refused /pin holds nothing{status}");
    w.gh.finish();
}

#[test]
fn recreate_takes_the_branch_back_from_a_foreign_commit() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.run().assert_exit(0);
    let theirs = w.gh.push_commit(REPO, BRANCH, &[("envs/api/notes.yaml", Some("note: mine\n"))], "bob");
    let out = w.run();
    assert_eq!(action(&out), "skipped", "{out}");
    assert_eq!(w.gh.branch_sha(REPO, BRANCH).unwrap(), theirs, "left alone");
    assert_eq!(w.bot_comments(1).len(), 1, "the foreign-commit notice");

    let recreate = w.comment(1, "alice", "/recreate");
    let out = w.run();
    out.assert_exit(0);
    assert_eq!(action(&out), "updated", "{out}");
    assert_eq!(w.git(&["rev-list", "--count", &format!("main..{BRANCH}")]).trim(), "1", "one commit again");
    let who = w.git(&["log", "-1", "--format=%ce", BRANCH]);
    assert_eq!(who.trim(), "argocd-image-pr@users.noreply.local");
    assert!(!w.git(&["ls-tree", "-r", "--name-only", BRANCH]).contains("notes.yaml"), "the foreign commit is dropped");
    assert_eq!(w.reactions(recreate), ["+1"]);
    assert_eq!(w.bot_comments(1).len(), 2);

    for _ in 0..2 {
        let out = w.run();
        assert_eq!((action(&out), w.gh.writes()), ("unchanged".to_string(), 0), "{:?}", w.api_calls());
    }
    w.gh.finish();
}

/// The ledger write of a command fails: nothing is replied (the command would look handled),
/// and the next run carries it out and replies once.
#[test]
fn a_failed_ledger_write_leaves_the_command_for_the_next_run_and_it_is_answered_once() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.run().assert_exit(0);
    let pin = w.comment(1, "alice", "/pin");
    w.gh.fail("pulls/update", 1, 500);
    let out = w.run();
    out.assert_exit(1);
    assert!(w.bot_comments(1).is_empty(), "no reply without the ledger");
    assert!(w.gh.pull(REPO, 1).open);

    let out = w.run();
    out.assert_exit(0);
    assert_eq!(action(&out), "closed", "{out}");
    assert_eq!(w.bot_comments(1).len(), 1);
    assert_eq!(w.reactions(pin), ["+1"]);
    for _ in 0..2 {
        w.run().assert_exit(0);
        assert_eq!(w.gh.writes(), 0, "{:?}", w.api_calls());
    }
    assert_eq!(w.bot_comments(1).len(), 1, "answered once");
    w.gh.finish();
}

/// Issue 9, point 4: a command posted the moment the bot wrote the PR (the same second
/// included) is carried out by the next `run --once` and acknowledged once; a quiet run lists
/// the repository's comments once, however many PRs there are.
#[test]
fn a_command_posted_right_after_the_bots_write_is_carried_out_next_run_and_answered_once() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.run().assert_exit(0);
    w.reg.push_tags("team/api", &["1.2.0"]);
    let out = w.run();
    assert_eq!(action(&out), "updated", "{out}");
    // At once: GitHub stamps it in the same second as the bot's update, or the next one.
    let written = w.gh.pull(REPO, 1).updated_at;
    let pin = w.gh.comment(REPO, 1, "alice", "/pin");
    let commented = w.gh.comments(REPO, 1).into_iter().find(|c| c.id == pin).unwrap().created_at;
    assert!(commented - written < chrono::Duration::seconds(2), "within the window the bot used to skip");

    let out = w.run();
    out.assert_exit(0);
    assert_eq!(action(&out), "closed", "the /pin was carried out{out}");
    assert_eq!(w.reactions(pin), ["+1"]);
    for _ in 0..2 {
        w.run().assert_exit(0);
        assert_eq!(w.gh.writes(), 0, "{:?}", w.api_calls());
        assert_eq!(w.api_calls(), ["pulls/list", "issues/list-comments-for-repo"], "a quiet run: two listings");
    }
    assert_eq!(w.bot_comments(1).len(), 1, "answered once");
    w.gh.finish();
}

/// The `seen_at` of PR `n`'s ledger (where the next comment listing may start).
fn seen_at(w: &World, n: u64) -> Value {
    let body = w.gh.pull(REPO, n).body.unwrap_or_default();
    let start = body.rfind("<!-- argocd-image-pr:metadata ").expect("metadata block") + "<!-- argocd-image-pr:metadata ".len();
    let end = body[start..].find(" -->").unwrap() + start;
    let meta: Value = serde_json::from_str(&body[start..end]).unwrap();
    meta["ledger"]["seen_at"].clone()
}

/// Review of issue 9, point 4: a `/pin` on the PR of an Application that this run does not read
/// (defined twice for a while) must not fall out of later listings because another PR of the
/// repository was written in the meantime: that write keeps the repository's `seen_at`, and
/// once the Application is read again the `/pin` is carried out.
#[test]
fn a_command_on_a_pr_this_run_cannot_handle_keeps_the_listing_start_for_the_repository() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    let files = [
        ("envs/web/kustomization.yaml", kustomization(&w.image, "1.0.0")),
        ("envs/web/deployment.yaml", deployment("web", &w.image)),
    ];
    w.push_main(&files);
    let web = App::new("web", &w.gh.git_url(REPO), "envs/web").image_list(&format!("api={}:^1.0", w.image));
    std::fs::write(w.apps.path().join("web.yaml"), web.to_yaml()).unwrap();
    w.run().assert_exit(0);
    let web_pr = w.gh.pulls(REPO).into_iter().find(|p| p.head.ends_with("/web")).unwrap().number;
    let before = seen_at(&w, web_pr);

    // `api` is defined twice for a while; its PR gets a /pin; web's PR is updated meanwhile.
    let copy = std::fs::read_to_string(w.apps.path().join("api.yaml")).unwrap();
    std::fs::write(w.apps.path().join("api-copy.yaml"), &copy).unwrap();
    let pin = w.comment(1, "alice", "/pin");
    w.reg.push_tags("team/api", &["1.2.0"]);
    let out = w.run();
    assert_eq!(out.app("web")["action"], "updated", "{out}");
    assert!(w.gh.pull(REPO, 1).open, "api is not read this run");
    assert_eq!(seen_at(&w, web_pr), before, "web's write keeps the repository's listing start");

    std::fs::remove_file(w.apps.path().join("api-copy.yaml")).unwrap();
    let out = w.run();
    assert_eq!(out.app("api")["action"], "closed", "the /pin is carried out once api is read again{out}");
    assert_eq!(w.reactions(pin), ["+1"]);
    w.gh.finish();
}

/// Issue 15: a reader writes the bot's reply marker naming a writer's `/pin`. Only comments by
/// the bot's own login are the bot's: the pin is carried out and the reader's marker is nothing.
#[test]
fn a_readers_forged_reply_marker_does_not_cancel_a_writers_command() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.run().assert_exit(0);
    w.gh.set_permission(REPO, "mallory", Role::Read);
    let pin = w.comment(1, "alice", "/pin");
    w.gh.comment(REPO, 1, "mallory", &format!("thanks!\n<!-- argocd-image-pr:reply-to {pin} -->"));
    let out = w.run();
    out.assert_exit(0);
    assert_eq!(action(&out), "closed", "the writer's /pin was carried out{out}");
    assert_eq!(w.reactions(pin), ["+1"]);
    let said = w.bot_comments(1);
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(said[0].contains(&format!("reply-to {pin}")), "{}", said[0]);
    w.gh.finish();
}

/// Issue 15: the permission lookup fails (5xx). The command is neither obeyed nor refused, and
/// the ledger does not move past it: the next run reads the permission and carries it out.
#[test]
fn a_failed_permission_lookup_leaves_the_command_for_the_next_run() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.run().assert_exit(0);
    let pin = w.comment(1, "alice", "/pin");
    w.gh.fail("repos/get-collaborator-permission-level", 1, 502);
    let out = w.run();
    out.assert_exit(1);
    assert!(w.gh.pull(REPO, 1).open, "not obeyed without knowing the permission");
    assert!(w.bot_comments(1).is_empty(), "not refused either");

    let out = w.run();
    out.assert_exit(0);
    assert_eq!(action(&out), "closed", "carried out on the next run{out}");
    assert_eq!(w.reactions(pin), ["+1"]);
    w.run().assert_exit(0);
    assert_eq!(w.bot_comments(1).len(), 1, "answered once");
    w.gh.finish();
}

// ---- the daemon, with a webhook ----

const SECRET: &str = "It's a Secret to Everybody";
/// Against a hung daemon on a loaded machine, not a timing assertion.
const PATIENCE: Duration = Duration::from_secs(180);

/// `run --forge github --interval 1h --listen 127.0.0.1:<port>` with a webhook secret; killed by
/// its PID when dropped.
struct Daemon {
    child: std::process::Child,
    addr: String,
    log: std::sync::Arc<std::sync::Mutex<String>>,
    _home: tempfile::TempDir,
}

impl Daemon {
    fn start(w: &World) -> Daemon {
        use std::io::Read;
        let home = tempfile::Builder::new().prefix("aipr-home-").tempdir().unwrap();
        let addr = format!("127.0.0.1:{}", support::registry::free_port());
        let mut child = std::process::Command::new(support::cli::BIN)
            .args(["run", "--forge", "github", "--interval", "1h", "--listen", &addr, "--github-url", &w.gh.url()])
            .arg("--apps")
            .arg(w.apps.path())
            .arg("--cache-dir")
            .arg(home.path().join("cache"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()))
            .env("HOME", home.path())
            .env("DOCKER_CONFIG", home.path().join(".docker"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GITHUB_TOKEN", fake_github::TOKEN)
            .env("ARGOCD_IMAGE_PR_LOG", "argocd_image_pr=info")
            .env("ARGOCD_IMAGE_PR_WEBHOOK_SECRET", SECRET)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (mut pipe, sink) = (child.stderr.take().unwrap(), log.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Daemon { child, addr, log, _home: home }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Polls `check` until it holds; fails with the daemon's log if the daemon exits or
    /// [`PATIENCE`] runs out.
    fn wait_for(&mut self, what: &str, check: impl Fn() -> bool) {
        let started = std::time::Instant::now();
        while !check() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the daemon exited ({status}) while waiting for {what}\nlog:\n{}", self.log());
            }
            assert!(started.elapsed() < PATIENCE, "no {what} after {PATIENCE:?}\nlog:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn cycles(&self) -> usize {
        self.log().matches("cycle starts").count()
    }

    /// POSTs a delivery signed as GitHub signs it: (status, body).
    fn deliver(&self, event: &str, payload: &Value) -> (u16, String) {
        use std::io::{Read, Write};
        let body = serde_json::to_vec(payload).unwrap();
        let signature = argocd_image_pr::server::sign(&argocd_image_pr::server::WebhookSecret::new(SECRET).unwrap(), &body);
        let mut stream = std::net::TcpStream::connect(&self.addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let head = format!(
            "POST /webhooks/github HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\n\
             X-GitHub-Event: {event}\r\nX-GitHub-Delivery: {}\r\n\
             User-Agent: GitHub-Hookshot/044aadd\r\nX-Hub-Signature-256: {signature}\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            support::delivery_id(),
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(&body).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        (status, response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// GitHub's example `issue_comment` `created` delivery (npm `@octokit/webhooks-examples`), moved
/// to comment `id` by `who` on pull request `n` of the fake's `org/gitops`.
fn issue_comment_delivery(w: &World, n: u64, id: u64, who: &str, body: &str) -> Value {
    let root = std::env::var("ARGOCD_IMAGE_PR_NPM").unwrap_or_else(|_| "/var/tmp/argocd-image-pr-npm".into());
    let path = format!("{root}/node_modules/@octokit/webhooks-examples/api.github.com/index.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read GitHub's webhook examples at {path}: {e} (scripts/test.sh installs them)"));
    let index: Vec<Value> = serde_json::from_str(&text).unwrap();
    let mut p = index
        .iter()
        .filter(|e| e["name"] == "issue_comment")
        .flat_map(|e| e["examples"].as_array().unwrap().iter())
        .find(|x| x["action"] == "created")
        .expect("an issue_comment created example")
        .clone();
    let (web, api) = (w.gh.url(), w.gh.api_url());
    p["repository"]["name"] = "gitops".into();
    p["repository"]["full_name"] = REPO.into();
    p["repository"]["owner"]["login"] = "org".into();
    p["repository"]["html_url"] = format!("{web}/{REPO}").into();
    p["repository"]["url"] = format!("{api}/repos/{REPO}").into();
    p["repository"]["clone_url"] = w.gh.git_url(REPO).into();
    p["issue"]["number"] = n.into();
    p["issue"]["html_url"] = format!("{web}/{REPO}/pull/{n}").into();
    p["issue"]["url"] = format!("{api}/repos/{REPO}/issues/{n}").into();
    // A comment on a pull request: GitHub's issue object then has `pull_request`.
    p["issue"]["pull_request"] = serde_json::json!({
        "url": format!("{api}/repos/{REPO}/pulls/{n}"),
        "html_url": format!("{web}/{REPO}/pull/{n}"),
        "diff_url": format!("{web}/{REPO}/pull/{n}.diff"),
        "patch_url": format!("{web}/{REPO}/pull/{n}.patch"),
        "merged_at": null,
    });
    p["comment"]["id"] = id.into();
    p["comment"]["body"] = body.into();
    p["comment"]["user"]["login"] = who.into();
    p["comment"]["user"]["type"] = "User".into();
    p["comment"]["html_url"] = format!("{web}/{REPO}/pull/{n}#issuecomment-{id}").into();
    p["comment"]["issue_url"] = format!("{api}/repos/{REPO}/issues/{n}").into();
    p
}

#[test]
fn daemon_a_pin_comment_delivered_by_webhook_closes_the_pr_long_before_the_interval() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    let mut daemon = Daemon::start(&w);
    daemon.wait_for("PR #1", || w.gh.pulls(REPO).first().is_some_and(|p| p.open && p.title.contains("1.1.0")));
    let log = daemon.log.clone();
    daemon.wait_for("the end of the first cycle", || log.lock().unwrap().contains("cycle done"));

    let id = w.comment(1, "alice", "Not this week.\n\n/pin");
    let (status, body) = daemon.deliver("issue_comment", &issue_comment_delivery(&w, 1, id, "alice", "Not this week.\n\n/pin"));
    assert_eq!((status, body.as_str()), (202, "queued\n"));
    daemon.wait_for("PR #1 closed and the /pin acknowledged", || !w.gh.pull(REPO, 1).open && w.reactions(id) == ["+1"]);
    assert_eq!(w.bot_comments(1).len(), 1, "one reply");
    assert_eq!(daemon.cycles(), 2, "the first cycle and the webhook's\nlog:\n{}", daemon.log());

    // bob unpins at once, within the two seconds after the bot's last write that a cycle
    // without a webhook would not look at (docs/lifecycle.md): the delivery names the PR, so
    // its comments are read anyway, and the PR comes back.
    daemon.wait_for("the end of the webhook's cycle", || log.lock().unwrap().matches("cycle done").count() == 2);
    let unpin = w.gh.comment(REPO, 1, "bob", "/unpin");
    let (status, _) = daemon.deliver("issue_comment", &issue_comment_delivery(&w, 1, unpin, "bob", "/unpin"));
    assert_eq!(status, 202);
    daemon.wait_for("PR #1 reopened and the /unpin acknowledged", || w.gh.pull(REPO, 1).open && w.reactions(unpin) == ["+1"]);
    assert_eq!(w.bot_comments(1).len(), 2, "one reply per comment");

    // SIGTERM: exit 0.
    // SAFETY: kill(2) on the PID of a child this test owns and has not reaped.
    assert_eq!(unsafe { libc::kill(daemon.child.id() as libc::pid_t, libc::SIGTERM) }, 0);
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = daemon.child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < PATIENCE, "the daemon did not exit on SIGTERM\nlog:\n{}", daemon.log());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
    w.gh.finish();
}
