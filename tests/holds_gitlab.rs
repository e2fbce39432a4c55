//! Holds on GitLab, end to end: rollback by revert, close = ignore, reopen, note commands and
//! `status`, with the real binary (`run --once --forge gitlab`) started afresh at every step —
//! whatever the bot knows between steps it reads back from the fake GitLab (merge requests,
//! their descriptions' ledgers, notes, events) and git. The GitLab twin of tests/holds_github.rs.
//!
//! People act through the fake's controls: merge, close and reopen as a user, write notes (and
//! threads) as a user, push to `main` or to the bot's branch, set access levels. GitLab writes
//! its own system notes all along (`closed`, `added 1 commit`, `changed the description`...):
//! the bot must read past them.

mod support;

use serde_json::Value;
use support::cli::{Plan, PlanOutput};
use support::fake_gitlab::{self, Access, FakeGitlab, MrState};
use support::gitops::{App, deployment, kustomization};
use support::registry::{Auth, TestRegistry};

const PROJECT: &str = "platform/apps/gitops";
const BRANCH: &str = "argocd-image-pr/argocd/api";

/// A registry with `team/api`; the fake GitLab with `platform/apps/gitops`, where the
/// Application `api` (Kustomize, `^1.0`) runs `running`; the Application manifests in a
/// directory (`--apps`). alice and bob are Developers of the `platform` group; rita is a
/// Reporter of the project.
struct World {
    reg: TestRegistry,
    gl: FakeGitlab,
    apps: tempfile::TempDir,
    image: String,
}

impl World {
    fn new(tags: &[&str], running: &str) -> World {
        let reg = TestRegistry::start(Auth::Anonymous);
        reg.push_tags("team/api", tags);
        let image = reg.image("team/api");
        let gl = FakeGitlab::start();
        gl.create_project(PROJECT, &[("README.md", "GitOps\n")]);
        for person in ["alice", "bob"] {
            gl.add_member("platform", person, Access::Developer);
        }
        gl.add_member(PROJECT, "rita", Access::Reporter);
        let w = World { reg, gl, apps: tempfile::tempdir().unwrap(), image };
        let files = [
            ("envs/api/kustomization.yaml", kustomization(&w.image, running)),
            ("envs/api/deployment.yaml", deployment("api", &w.image)),
        ];
        w.push_main(&files);
        w.write_app(&w.app().image_list(&format!("api={}:^1.0", w.image)));
        w
    }

    fn app(&self) -> App {
        App::new("api", &self.gl.git_url(PROJECT), "envs/api")
    }

    fn write_app(&self, app: &App) {
        std::fs::write(self.apps.path().join("api.yaml"), app.to_yaml()).unwrap();
    }

    /// alice pushes `files` to `main`.
    fn push_main(&self, files: &[(&str, String)]) -> String {
        let files: Vec<(&str, Option<&str>)> = files.iter().map(|(p, c)| (*p, Some(c.as_str()))).collect();
        self.gl.push_commit(PROJECT, "main", &files, "alice")
    }

    /// Flags shared by `run` and `status`: the fake GitLab, the token, the Applications.
    fn command(&self, args: &[&str]) -> Plan {
        self.gl.clear_requests();
        Plan::command(args).arg("--gitlab-url").arg(self.gl.url()).env("GITLAB_TOKEN", fake_gitlab::TOKEN).apps(self.apps.path())
    }

    /// `run --once --forge gitlab`, a fresh process; the fake's request log starts afresh.
    fn run(&self) -> PlanOutput {
        let out = self.command(&["run", "--once", "--forge", "gitlab"]).json();
        eprintln!("run: {} → API {:?}", actions(&out), self.gl.calls());
        out
    }

    /// `status --forge gitlab --output json`.
    fn status(&self) -> PlanOutput {
        let out = self.command(&["status", "--forge", "gitlab"]).json();
        assert_eq!(self.gl.writes(), 0, "status writes nothing: {:?}", self.gl.calls());
        out
    }

    fn api_calls(&self) -> Vec<String> {
        self.gl.calls()
    }

    /// A person writes a note on merge request `iid` at once, as people do seconds after the
    /// bot wrote it; returns the note's id.
    fn note(&self, iid: u64, who: &str, body: &str) -> u64 {
        self.gl.note(PROJECT, iid, who, body)
    }

    /// What the bot said on merge request `iid` (its notes, GitLab's system notes aside).
    fn bot_notes(&self, iid: u64) -> Vec<String> {
        self.gl.notes(PROJECT, iid).into_iter().filter(|n| !n.system && n.author == fake_gitlab::BOT_USER).map(|n| n.body).collect()
    }

    /// The bot's award emoji on note `id`.
    fn awards(&self, id: u64) -> Vec<String> {
        self.gl.awards(id).into_iter().filter(|a| a.user == fake_gitlab::BOT_USER).map(|a| a.name).collect()
    }

    fn state(&self, iid: u64) -> MrState {
        self.gl.mr(PROJECT, iid).state
    }

    /// The tag `api` runs on `branch`.
    fn tag_on(&self, branch: &str) -> String {
        let file = self.gl.file_at(PROJECT, branch, "envs/api/kustomization.yaml").unwrap_or_else(|| panic!("no {branch}"));
        file.lines().find_map(|l| l.trim().strip_prefix("newTag: ")).unwrap_or("").to_string()
    }

    /// git in the fake's bare repository.
    fn git(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("git").args(args).current_dir(self.gl.bare_path(PROJECT)).output().unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// A person reverts merge commit `sha` on `main` (`git revert -m 1`, as GitLab's Revert
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
        git(&["clone", "-q", "-b", "main", &self.gl.bare_path(PROJECT).display().to_string(), "."]);
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
    let merge = w.gl.merge_mr(PROJECT, 1, "alice");
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
    let url = format!("{}/-/merge_requests/1", w.gl.web_url(PROJECT));
    assert!(reason.contains("rolled back") && reason.contains(&url), "names the rollback and its merge request: {reason}");
    assert_eq!(w.gl.mrs(PROJECT).len(), 1, "no new merge request");
    let notices = w.bot_notes(1);
    assert_eq!(notices.len(), 1, "said once, on the reverted merge request: {notices:?}");
    assert!(notices[0].contains("noticed a rollback") && notices[0].contains("1.1.0"), "{}", notices[0]);
    assert_eq!(
        w.api_calls(),
        ["merge_requests/list", "events/list", "merge_requests/update", "notes/create"],
        "the listings, the ledger, then the notice"
    );

    // Restarted, the bot sees the same and says nothing more.
    for _ in 0..2 {
        let out = w.run();
        assert_eq!(action(&out), "held", "{out}");
        assert_eq!(w.gl.writes(), 0, "{:?}", w.api_calls());
    }
    assert_eq!(w.bot_notes(1).len(), 1);

    // A strictly newer release is proposed, on a new merge request (the merged one is done).
    w.reg.push_tags("team/api", &["1.1.1"]);
    let out = w.run();
    out.assert_exit(0);
    assert_eq!(action(&out), "opened", "{out}");
    assert_eq!(out.app("api")["pr"], 2, "{out}");
    assert_eq!(w.tag_on(BRANCH), "1.1.1");
    assert_eq!(w.state(2), MrState::Opened);
    assert_eq!(w.bot_notes(1).len(), 1, "no second notice");
    let out = w.run();
    assert_eq!((action(&out), w.gl.writes()), ("unchanged".to_string(), 0), "{:?}", w.api_calls());

    let status = w.status();
    status.assert_exit(0);
    let image = &status.app("api")["images"][0];
    assert_eq!(image["git"]["tag"], "1.0.0", "{status}");
    assert_eq!(image["newest"], "1.1.1", "{status}");
    assert_eq!(status.app("api")["pr"]["number"], 2, "{status}");
    let holds = image["holds"].as_array().unwrap();
    let rollback = holds.iter().find(|h| h["kind"] == "rollback").unwrap_or_else(|| panic!("{status}"));
    assert_eq!((&rollback["version"]["tag"], &rollback["origin"]["pr"]), (&Value::from("1.1.0"), &Value::from(1)), "{status}");
    assert_eq!(rollback["origin"]["url"], format!("{}/-/merge_requests/1", w.gl.web_url(PROJECT)), "{status}");
    w.gl.finish();
}

#[test]
fn close_ignores_its_versions_and_a_newer_one_reopens_the_same_mr() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.run().assert_exit(0);
    w.gl.close_mr(PROJECT, 1, "alice");

    let out = w.run();
    out.assert_exit(0);
    assert_eq!(action(&out), "held", "{out}");
    assert_eq!(w.gl.mrs(PROJECT).len(), 1);
    assert_eq!(w.state(1), MrState::Closed, "left closed");
    assert!(w.gl.branch_sha(PROJECT, BRANCH).is_some(), "the branch is kept, for a reopen");
    let said = w.bot_notes(1);
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(said[0].contains("closed without merging") && said[0].contains("1.1.0"), "{}", said[0]);
    assert_eq!(w.api_calls(), ["merge_requests/list", "events/list", "merge_requests/update", "notes/create"]);
    for _ in 0..2 {
        w.run().assert_exit(0);
        assert_eq!(w.gl.writes(), 0, "said once: {:?}", w.api_calls());
    }

    let status = w.status();
    let hold = &status.app("api")["images"][0]["holds"][0];
    assert_eq!((hold["kind"].as_str(), hold["origin"]["type"].as_str()), (Some("closed"), Some("closed-pr")), "{status}");
    assert!(hold["origin"]["closed_at"].is_string(), "{status}");

    // A strictly newer version: the same merge request comes back, with its conversation.
    w.reg.push_tags("team/api", &["1.2.0"]);
    let out = w.run();
    out.assert_exit(0);
    assert_eq!(action(&out), "reopened", "{out}");
    assert_eq!(out.app("api")["pr"], 1, "{out}");
    assert_eq!(w.gl.mrs(PROJECT).len(), 1);
    let mr = w.gl.mr(PROJECT, 1);
    assert_eq!(mr.state, MrState::Opened);
    assert!(mr.title.contains("1.2.0"), "{}", mr.title);
    assert_eq!(mr.sha, w.gl.branch_sha(PROJECT, BRANCH).unwrap(), "GitLab follows the new head");
    assert_eq!(w.tag_on(BRANCH), "1.2.0");
    assert_eq!(w.git(&["rev-list", "--count", &format!("main..{BRANCH}")]).trim(), "1");
    let out = w.run();
    assert_eq!((action(&out), w.gl.writes()), ("unchanged".to_string(), 0), "{:?}", w.api_calls());
    w.gl.finish();
}

#[test]
fn a_person_reopening_the_closed_mr_undoes_the_ignore() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.run().assert_exit(0);
    w.gl.close_mr(PROJECT, 1, "alice");
    assert_eq!(action(&w.run()), "held");
    w.gl.reopen_mr(PROJECT, 1, "alice");

    let out = w.run();
    out.assert_exit(0);
    assert!(["unchanged", "updated"].contains(&action(&out).as_str()), "its open merge request again{out}");
    assert_eq!(out.app("api")["pr"], 1, "{out}");
    assert_eq!(w.state(1), MrState::Opened);
    assert_eq!(w.gl.mrs(PROJECT).len(), 1);
    assert_eq!(w.tag_on(BRANCH), "1.1.0");

    w.reg.push_tags("team/api", &["1.2.0"]);
    let out = w.run();
    assert_eq!(action(&out), "updated", "{out}");
    assert_eq!(w.tag_on(BRANCH), "1.2.0");
    let status = w.status();
    assert_eq!(status.app("api")["images"][0]["holds"], Value::Array(vec![]), "{status}");
    w.gl.finish();
}

#[test]
fn pin_closes_the_mr_and_holds_until_unpin() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.run().assert_exit(0);
    let pin = w.note(1, "alice", "1.1.0 needs a migration first.\n\n/pin");
    let out = w.run();
    out.assert_exit(0);
    assert_eq!(action(&out), "closed", "{out}");
    assert_eq!(w.state(1), MrState::Closed);
    assert_eq!(w.awards(pin), ["thumbsup"], "acknowledged with an award emoji");
    let said = w.bot_notes(1);
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(said[0].contains("@alice") && said[0].contains("held") && said[0].contains("stays closed"), "{}", said[0]);
    assert_eq!(
        w.api_calls(),
        [
            "merge_requests/list",
            "events/list",
            "users/list",
            "members/all/get",
            "merge_requests/update",
            "notes/create",
            "award_emoji/create",
            "merge_requests/update"
        ],
        "read, check (user id, then access level), record, reply, award, close"
    );

    // A newer version, a restart: still held, and the close by the bot ignores nothing.
    w.reg.push_tags("team/api", &["1.2.0"]);
    for _ in 0..2 {
        let out = w.run();
        assert_eq!(action(&out), "held", "{out}");
        assert_eq!(w.gl.writes(), 0, "{:?}", w.api_calls());
    }
    assert_eq!(w.state(1), MrState::Closed);
    assert_eq!(w.bot_notes(1).len(), 1, "no closed-ignored notice for a close by the bot");

    let status = w.status();
    status.assert_exit(0);
    let hold = &status.app("api")["images"][0]["holds"][0];
    assert_eq!(hold["kind"], "pin", "{status}");
    assert_eq!(hold["origin"]["type"], "comment", "{status}");
    assert_eq!(hold["origin"]["by"], "alice", "{status}");
    assert_eq!(hold["origin"]["pr"], 1, "{status}");
    assert_eq!(hold["origin"]["url"], format!("{}/-/merge_requests/1#note_{pin}", w.gl.web_url(PROJECT)), "{status}");
    let at = hold["origin"]["at"].as_str().unwrap_or_else(|| panic!("{status}"));
    assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{status}");
    assert_eq!(status.app("api")["pr"], Value::Null, "{status}");
    // People read `!1` (GitLab's `#1` is an issue).
    let tree = w.command(&["status", "--forge", "gitlab"]).run();
    assert!(tree.stdout.contains("comment by alice on !1 at"), "{}", tree.stdout);

    // /unpin on the closed merge request: the next cycle proposes again, on the same one.
    let unpin = w.note(1, "bob", "/unpin");
    let out = w.run();
    out.assert_exit(0);
    assert_eq!(action(&out), "reopened", "{out}");
    assert_eq!(out.app("api")["pr"], 1, "{out}");
    assert_eq!(w.state(1), MrState::Opened);
    assert_eq!(w.tag_on(BRANCH), "1.2.0");
    assert_eq!(w.awards(unpin), ["thumbsup"]);
    assert_eq!(w.bot_notes(1).len(), 2, "one reply per note");
    let out = w.run();
    assert_eq!((action(&out), w.gl.writes()), ("unchanged".to_string(), 0), "{:?}", w.api_calls());
    w.gl.finish();
}

#[test]
fn pin_at_a_version_updates_the_mr_to_exactly_it_then_unpin_and_ignore_one() {
    let w = World::new(&["1.0.0", "1.1.0", "1.2.0"], "1.0.0");
    w.run().assert_exit(0);
    assert_eq!(w.tag_on(BRANCH), "1.2.0");
    let pin = w.note(1, "alice", "/pin `api` `1.1.0`");
    let out = w.run();
    out.assert_exit(0);
    assert_eq!(action(&out), "updated", "{out}");
    assert_eq!(w.tag_on(BRANCH), "1.1.0", "exactly the pinned version");
    assert!(w.gl.mr(PROJECT, 1).title.contains("1.1.0"));
    assert_eq!(w.awards(pin), ["thumbsup"]);
    assert!(w.bot_notes(1)[0].contains("`1.1.0`"), "{:?}", w.bot_notes(1));

    w.reg.push_tags("team/api", &["1.3.0"]);
    let out = w.run();
    assert_eq!((action(&out), w.gl.writes()), ("unchanged".to_string(), 0), "pinned: 1.3.0 is not proposed{out}");
    assert_eq!(w.tag_on(BRANCH), "1.1.0");

    // Two commands in one note, in order: unpin, then skip 1.3.0.
    let both = w.note(1, "alice", "/unpin api\n/ignore 1.3.0");
    let out = w.run();
    out.assert_exit(0);
    assert_eq!(action(&out), "updated", "{out}");
    assert_eq!(w.tag_on(BRANCH), "1.2.0", "1.3.0 skipped, 1.2.0 still proposed");
    assert_eq!(w.bot_notes(1).len(), 2, "one reply per note");
    assert_eq!(w.awards(both), ["thumbsup"]);
    let status = w.status();
    let holds = status.app("api")["images"][0]["holds"].as_array().unwrap().clone();
    assert_eq!(holds.len(), 1, "{status}");
    assert_eq!((holds[0]["kind"].as_str(), holds[0]["version"]["tag"].as_str()), (Some("ignore"), Some("1.3.0")), "{status}");
    assert_eq!(holds[0]["origin"]["by"], "alice", "{status}");

    w.reg.push_tags("team/api", &["1.3.1"]);
    w.run().assert_exit(0);
    assert_eq!(w.tag_on(BRANCH), "1.3.1", "newer than the ignored version is proposed");
    w.gl.finish();
}

/// A Reporter is refused politely; GitLab's system notes and quoted commands are nothing; a
/// thread (`DiscussionNote`) and `/help` are answered.
#[test]
fn reporters_are_refused_system_notes_and_quotes_are_nothing_threads_and_help_are_answered() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.run().assert_exit(0);
    let refused = w.note(1, "rita", "/pin");
    let system = w.gl.system_note(PROJECT, 1, "alice", "/pin");
    let quoted = w.note(1, "alice", "> /pin\n\n```\n/pin\n```\n\nSee `/pin` in the docs.");
    let help = w.gl.thread_note(PROJECT, 1, "bob", "/help");
    let out = w.run();
    out.assert_exit(0);
    assert_eq!(action(&out), "unchanged", "nothing changed{out}");
    assert_eq!(w.state(1), MrState::Opened);
    assert_eq!(w.tag_on(BRANCH), "1.1.0");
    let said = w.bot_notes(1);
    assert_eq!(said.len(), 2, "a refusal and the help, nothing for the system note or the quotes: {said:?}");
    assert!(said[0].contains("@rita") && said[0].contains("write access"), "{}", said[0]);
    assert!(said[1].contains("/pin") && said[1].contains("/unpin") && said[1].contains("/recreate"), "{}", said[1]);
    assert_eq!(w.awards(refused), ["confused"]);
    assert_eq!(w.awards(help), ["thumbsup"], "the thread's note is a note like any other");
    assert!(w.awards(quoted).is_empty() && w.awards(system).is_empty());
    let calls = w.api_calls();
    assert_eq!(calls.iter().filter(|c| *c == "members/all/get").count(), 1, "rita's access; /help needs none: {calls:?}");

    for _ in 0..2 {
        let out = w.run();
        assert_eq!((action(&out), w.gl.writes()), ("unchanged".to_string(), 0), "{:?}", w.api_calls());
    }
    assert_eq!(w.bot_notes(1).len(), 2);
    let status = w.status();
    assert_eq!(status.app("api")["images"][0]["holds"], Value::Array(vec![]), "the refused /pin holds nothing{status}");
    w.gl.finish();
}

#[test]
fn recreate_takes_the_branch_back_from_a_foreign_commit() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.run().assert_exit(0);
    let theirs = w.gl.push_commit(PROJECT, BRANCH, &[("envs/api/notes.yaml", Some("note: mine\n"))], "bob");
    let out = w.run();
    assert_eq!(action(&out), "skipped", "{out}");
    assert_eq!(w.gl.branch_sha(PROJECT, BRANCH).unwrap(), theirs, "left alone");
    assert_eq!(w.bot_notes(1).len(), 1, "the foreign-commit notice");

    let recreate = w.note(1, "alice", "/recreate");
    let out = w.run();
    out.assert_exit(0);
    assert_eq!(action(&out), "updated", "{out}");
    assert_eq!(w.git(&["rev-list", "--count", &format!("main..{BRANCH}")]).trim(), "1", "one commit again");
    let who = w.git(&["log", "-1", "--format=%ce", BRANCH]);
    assert_eq!(who.trim(), "argocd-image-pr@users.noreply.local");
    assert!(!w.git(&["ls-tree", "-r", "--name-only", BRANCH]).contains("notes.yaml"), "the foreign commit is dropped");
    assert_eq!(w.gl.mr(PROJECT, 1).sha, w.gl.branch_sha(PROJECT, BRANCH).unwrap());
    assert_eq!(w.awards(recreate), ["thumbsup"]);
    assert_eq!(w.bot_notes(1).len(), 2);

    for _ in 0..2 {
        let out = w.run();
        assert_eq!((action(&out), w.gl.writes()), ("unchanged".to_string(), 0), "{:?}", w.api_calls());
    }
    w.gl.finish();
}

/// A note posted the moment the bot wrote the merge request (the same second, GitLab's
/// timestamps being milliseconds) is carried out by the next `run --once` and answered once;
/// a quiet run lists the project's comment events once.
#[test]
fn a_note_posted_right_after_the_bots_write_is_carried_out_next_run_and_answered_once() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.run().assert_exit(0);
    w.reg.push_tags("team/api", &["1.2.0"]);
    let out = w.run();
    assert_eq!(action(&out), "updated", "{out}");
    let written = w.gl.mr(PROJECT, 1).updated_at;
    let pin = w.gl.note(PROJECT, 1, "alice", "/pin");
    let noted = w.gl.notes(PROJECT, 1).into_iter().find(|n| n.id == pin).unwrap().created_at;
    assert!(noted - written < chrono::Duration::seconds(1), "within a second of the bot's write");

    let out = w.run();
    out.assert_exit(0);
    assert_eq!(action(&out), "closed", "the /pin was carried out{out}");
    assert_eq!(w.awards(pin), ["thumbsup"]);
    for _ in 0..2 {
        w.run().assert_exit(0);
        assert_eq!(w.gl.writes(), 0, "{:?}", w.api_calls());
        assert_eq!(w.api_calls(), ["merge_requests/list", "events/list"], "a quiet run: two listings");
    }
    assert_eq!(w.bot_notes(1).len(), 1, "answered once");
    w.gl.finish();
}

/// With `--cache-dir` the driver keeps what the last comment listing saw: a quiet run is one
/// listing of merge requests. A note made seconds after the bot wrote the merge request leaves
/// its `updated_at` alone (GitLab touches a merge request at most once a minute), and is still
/// read: the bot's own write moved `updated_at` past what the kept listing saw.
#[test]
fn with_a_cache_dir_a_quiet_run_is_one_listing_and_a_note_right_after_a_write_still_counts() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    let cache = tempfile::tempdir().unwrap();
    let run = || {
        let out = w.command(&["run", "--once", "--forge", "gitlab"]).cache_dir(cache.path()).json();
        eprintln!("run: {} → API {:?}", actions(&out), w.gl.calls());
        out
    };
    assert_eq!(action(&run()), "opened");
    // Two minutes on: one more comment listing, and the next run keeps to the merge requests.
    w.gl.advance_clock(120);
    assert_eq!(action(&run()), "unchanged");
    assert_eq!(w.api_calls(), ["merge_requests/list", "events/list"]);
    assert_eq!(action(&run()), "unchanged");
    assert_eq!((w.api_calls(), w.gl.writes()), (vec!["merge_requests/list".to_string()], 0), "a quiet run: one listing");

    // A newer version: the bot rewrites the merge request, and alice answers at once.
    w.reg.push_tags("team/api", &["1.2.0"]);
    assert_eq!(action(&run()), "updated");
    let written = w.gl.mr(PROJECT, 1).updated_at;
    let pin = w.note(1, "alice", "/pin");
    assert_eq!(w.gl.mr(PROJECT, 1).updated_at, written, "GitLab did not touch the merge request for the note");
    let out = run();
    out.assert_exit(0);
    assert_eq!(action(&out), "closed", "the /pin was read and carried out{out}");
    assert!(w.api_calls().contains(&"events/list".to_string()), "{:?}", w.api_calls());
    assert_eq!(w.awards(pin), ["thumbsup"]);

    // A person's note on a merge request untouched for minutes moves its `updated_at`.
    w.gl.advance_clock(120);
    run().assert_exit(0);
    run().assert_exit(0);
    assert_eq!(w.api_calls(), ["merge_requests/list"], "quiet again");
    w.gl.advance_clock(120);
    let unpin = w.note(1, "alice", "/unpin");
    let out = run();
    out.assert_exit(0);
    assert_eq!(w.awards(unpin), ["thumbsup"], "{:?}", w.api_calls());
    assert_eq!(w.bot_notes(1).len(), 2, "two answers, each once");
    w.gl.finish();
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

    let pin = w.note(1, "alice", "/pin worker");
    let out = w.run();
    assert_eq!(action(&out), "updated", "{out}");
    let diff = w.git(&["diff", "main", BRANCH]);
    assert!(diff.contains("newTag: 1.1.0") && !diff.contains("newTag: 2.1.0"), "the MR no longer moves the worker:\n{diff}");
    assert_eq!(w.state(1), MrState::Opened);
    assert_eq!(w.awards(pin), ["thumbsup"]);
    assert!(w.bot_notes(1)[0].contains("`worker` is held"), "{:?}", w.bot_notes(1));
    let status = w.status();
    let images = status.app("api")["images"].as_array().unwrap();
    let held = |alias: &str| images.iter().find(|i| i["alias"] == alias).unwrap()["holds"].as_array().unwrap().len();
    assert_eq!((held("api"), held("worker")), (0, 1), "{status}");

    let unpin = w.note(1, "bob", "/unpin worker");
    let out = w.run();
    assert_eq!(action(&out), "updated", "{out}");
    let diff = w.git(&["diff", "main", BRANCH]);
    assert!(diff.contains("newTag: 1.1.0") && diff.contains("newTag: 2.1.0"), "the worker is back:\n{diff}");
    assert_eq!(w.awards(unpin), ["thumbsup"]);
    let out = w.run();
    assert_eq!((action(&out), w.gl.writes()), ("unchanged".to_string(), 0), "{:?}", w.api_calls());
    w.gl.finish();
}

fn seen_at(w: &World, iid: u64) -> Value {
    let body = w.gl.mr(PROJECT, iid).description.unwrap_or_default();
    let start = body.rfind("<!-- argocd-image-pr:metadata ").expect("metadata block") + "<!-- argocd-image-pr:metadata ".len();
    let end = body[start..].find(" -->").unwrap() + start;
    let meta: Value = serde_json::from_str(&body[start..end]).unwrap();
    meta["ledger"]["seen_at"].clone()
}

/// A `/pin` on the merge request of an Application this run does not read (defined twice for a
/// while) does not fall out of later listings because another merge request of the project was
/// written meanwhile: that write keeps the project's `seen_at`, and once the Application is
/// read again the `/pin` is carried out.
#[test]
fn a_command_on_an_mr_this_run_cannot_handle_keeps_the_listing_start_for_the_project() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    let files = [
        ("envs/web/kustomization.yaml", kustomization(&w.image, "1.0.0")),
        ("envs/web/deployment.yaml", deployment("web", &w.image)),
    ];
    w.push_main(&files);
    let web = App::new("web", &w.gl.git_url(PROJECT), "envs/web").image_list(&format!("api={}:^1.0", w.image));
    std::fs::write(w.apps.path().join("web.yaml"), web.to_yaml()).unwrap();
    w.run().assert_exit(0);
    let web_mr = w.gl.mrs(PROJECT).into_iter().find(|m| m.source_branch.ends_with("/web")).unwrap().iid;
    let api_mr = w.gl.mrs(PROJECT).into_iter().find(|m| m.source_branch == BRANCH).unwrap().iid;
    let before = seen_at(&w, web_mr);

    // `api` is defined twice for a while; its merge request gets a /pin; web's is updated meanwhile.
    let copy = std::fs::read_to_string(w.apps.path().join("api.yaml")).unwrap();
    std::fs::write(w.apps.path().join("api-copy.yaml"), &copy).unwrap();
    let pin = w.note(api_mr, "alice", "/pin");
    w.reg.push_tags("team/api", &["1.2.0"]);
    let out = w.run();
    assert_eq!(out.app("web")["action"], "updated", "{out}");
    assert_eq!(w.state(api_mr), MrState::Opened, "api is not read this run");
    assert_eq!(seen_at(&w, web_mr), before, "web's write keeps the project's listing start");

    std::fs::remove_file(w.apps.path().join("api-copy.yaml")).unwrap();
    let out = w.run();
    assert_eq!(out.app("api")["action"], "closed", "the /pin is carried out once api is read again{out}");
    assert_eq!(w.awards(pin), ["thumbsup"]);
    w.gl.finish();
}

/// A Reporter writes the bot's reply marker naming a Developer's `/pin`. Only notes by the
/// bot's own user are the bot's: the pin is carried out and the Reporter's marker is nothing.
#[test]
fn a_reporters_forged_reply_marker_does_not_cancel_a_developers_command() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.run().assert_exit(0);
    let pin = w.note(1, "alice", "/pin");
    w.note(1, "rita", &format!("thanks!\n<!-- argocd-image-pr:reply-to {pin} -->"));
    let out = w.run();
    out.assert_exit(0);
    assert_eq!(action(&out), "closed", "the Developer's /pin was carried out{out}");
    assert_eq!(w.awards(pin), ["thumbsup"]);
    let said = w.bot_notes(1);
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(said[0].contains(&format!("reply-to {pin}")), "{}", said[0]);
    w.gl.finish();
}

/// The access lookup fails (5xx). The command is neither obeyed nor refused, and the ledger
/// does not move past it: the next run reads the access level and carries it out.
#[test]
fn a_failed_access_lookup_leaves_the_command_for_the_next_run() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.run().assert_exit(0);
    let pin = w.note(1, "alice", "/pin");
    // The call and the driver's two retries of a GET after a 5xx.
    for n in 1..=3 {
        w.gl.fail("members/all/get", n, 502);
    }
    let out = w.run();
    out.assert_exit(1);
    assert_eq!(w.state(1), MrState::Opened, "not obeyed without knowing the access level");
    assert!(w.bot_notes(1).is_empty(), "not refused either");

    let out = w.run();
    out.assert_exit(0);
    assert_eq!(action(&out), "closed", "carried out on the next run{out}");
    assert_eq!(w.awards(pin), ["thumbsup"]);
    w.run().assert_exit(0);
    assert_eq!(w.bot_notes(1).len(), 1, "answered once");
    w.gl.finish();
}

/// The ledger write of a command fails: nothing is replied (the command would look handled),
/// and the next run carries it out and replies once.
#[test]
fn a_failed_ledger_write_leaves_the_command_for_the_next_run_and_it_is_answered_once() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.run().assert_exit(0);
    let pin = w.note(1, "alice", "/pin");
    // The call and the driver's two retries of a PUT after a 5xx.
    for n in 1..=3 {
        w.gl.fail("merge_requests/update", n, 500);
    }
    let out = w.run();
    out.assert_exit(1);
    assert!(w.bot_notes(1).is_empty(), "no reply without the ledger");
    assert_eq!(w.state(1), MrState::Opened);

    let out = w.run();
    out.assert_exit(0);
    assert_eq!(action(&out), "closed", "{out}");
    assert_eq!(w.bot_notes(1).len(), 1);
    assert_eq!(w.awards(pin), ["thumbsup"]);
    for _ in 0..2 {
        w.run().assert_exit(0);
        assert_eq!(w.gl.writes(), 0, "{:?}", w.api_calls());
    }
    assert_eq!(w.bot_notes(1).len(), 1, "answered once");
    w.gl.finish();
}

// ---- the daemon, with a webhook ----

const SECRET: &str = "It's a Secret to Everybody";
/// Against a hung daemon on a loaded machine, not a timing assertion.
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(180);

/// `run --forge gitlab --interval 1h --listen 127.0.0.1:<port>` with a webhook secret; killed by
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
            .args(["run", "--forge", "gitlab", "--interval", "1h", "--listen", &addr, "--gitlab-url", &w.gl.url()])
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
            .env("GITLAB_TOKEN", fake_gitlab::TOKEN)
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
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    fn cycles(&self) -> usize {
        self.log().matches("cycle starts").count()
    }

    /// POSTs a delivery as GitLab sends it (the secret token as it is): (status, body).
    fn deliver(&self, event: &str, token: &str, payload: &Value) -> (u16, String) {
        use std::io::{Read, Write};
        let body = serde_json::to_vec(payload).unwrap();
        let uuid = support::delivery_id();
        let mut stream = std::net::TcpStream::connect(&self.addr).unwrap();
        stream.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
        let head = format!(
            "POST /webhooks/gitlab HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\n\
             User-Agent: GitLab/17.11.0\r\nX-Gitlab-Event: {event}\r\nX-Gitlab-Token: {token}\r\n\
             X-Gitlab-Instance: http://127.0.0.1\r\nX-Gitlab-Webhook-UUID: 6a1f2c9e-0d1b-4d0a-8c55-6d7d1f1e9a77\r\n\
             X-Gitlab-Event-UUID: {uuid}\r\nIdempotency-Key: {uuid}\r\nContent-Length: {}\r\n\r\n",
            self.addr,
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

#[test]
fn daemon_a_pin_note_delivered_by_webhook_closes_the_mr_long_before_the_interval() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    let mut daemon = Daemon::start(&w);
    daemon.wait_for("MR !1", || w.gl.mrs(PROJECT).first().is_some_and(|m| m.is_open() && m.title.contains("1.1.0")));
    let log = daemon.log.clone();
    daemon.wait_for("the end of the first cycle", || log.lock().unwrap().contains("cycle done"));

    let pin = w.note(1, "alice", "Not this week.\n\n/pin");
    let (status, body) = daemon.deliver("Note Hook", "not the secret", &w.gl.note_hook(pin));
    assert_eq!(status, 401, "a wrong X-Gitlab-Token: {body}");
    let (status, body) = daemon.deliver("Note Hook", SECRET, &w.gl.note_hook(pin));
    assert_eq!((status, body.as_str()), (202, "queued\n"));
    daemon.wait_for("MR !1 closed and the /pin acknowledged", || w.state(1) == MrState::Closed && w.awards(pin) == ["thumbsup"]);
    assert_eq!(w.bot_notes(1).len(), 1, "one reply");
    assert_eq!(daemon.cycles(), 2, "the first cycle and the webhook's, none for the refused delivery\nlog:\n{}", daemon.log());

    // bob unpins at once, within the same second as the bot's last write: the delivery names
    // the merge request, so its notes are read anyway, and it comes back.
    daemon.wait_for("the end of the webhook's cycle", || log.lock().unwrap().matches("cycle done").count() == 2);
    let unpin = w.note(1, "bob", "/unpin");
    let (status, _) = daemon.deliver("Note Hook", SECRET, &w.gl.note_hook(unpin));
    assert_eq!(status, 202);
    daemon.wait_for("MR !1 reopened and the /unpin acknowledged", || w.state(1) == MrState::Opened && w.awards(unpin) == ["thumbsup"]);
    assert_eq!(w.bot_notes(1).len(), 2, "one reply per note");

    // SIGTERM: exit 0.
    // SAFETY: kill(2) on the PID of a child this test owns and has not reaped.
    assert_eq!(unsafe { libc::kill(daemon.child.id() as libc::pid_t, libc::SIGTERM) }, 0);
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = daemon.child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < PATIENCE, "the daemon did not exit on SIGTERM\nlog:\n{}", daemon.log());
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
    w.gl.finish();
}
