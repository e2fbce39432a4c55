//! Issue 5 on the local forge, end to end: rollback by revert, close = ignore, reopen, comment
//! commands, the pin annotation and `status`. Every step runs the real binary afresh: whatever
//! the bot knows between steps, it reads back from the forge (the PR files) and git.

mod support;

use serde_json::Value;
use support::cli::PlanOutput;
use support::gitops::App;
use support::local_world::{BRANCH, World};

fn action(out: &PlanOutput, app: &str) -> String {
    out.app(app)["action"].as_str().unwrap_or("").to_string()
}

fn stat(out: &PlanOutput, key: &str) -> u64 {
    out.plan()["stats"][key].as_u64().unwrap_or_else(|| panic!("no stats.{key}{out}"))
}

/// The tag the kustomization on `rev` (in origin) sets for the image.
fn tag_at(w: &World, rev: &str) -> String {
    let file = w.origin_git(&["show", &format!("{rev}:envs/api/kustomization.yaml")]);
    file.lines().find_map(|l| l.trim().strip_prefix("newTag: ")).unwrap_or("").to_string()
}

#[test]
fn merge_revert_then_a_newer_release() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    let out = w.run();
    assert_eq!(action(&out, "api"), "opened", "{out}");
    w.local(&["merge", "1"]);
    assert_eq!(tag_at(&w, "main"), "1.1.0");
    w.run().assert_exit(0);

    // 1.1.0 is bad: someone reverts the merged PR.
    w.local(&["revert", "1"]);
    assert_eq!(tag_at(&w, "main"), "1.0.0");
    let out = w.run();
    out.assert_exit(0);
    assert_eq!(action(&out, "api"), "held", "1.1.0 is not proposed again{out}");
    assert_eq!(w.pr_count(), 1, "no new PR");
    let notices = w.bot_comments(1);
    assert_eq!(notices.len(), 1, "said once, on the reverted PR: {notices:?}");
    assert!(notices[0].contains("noticed a rollback") && notices[0].contains("1.1.0"), "{}", notices[0]);
    let reason = out.app("api")["reason"].as_str().unwrap_or("");
    assert!(reason.contains("rolled back") && reason.contains("#1"), "names the rollback: {reason}");

    // A restarted bot sees the same and says nothing more.
    let out = w.run();
    assert_eq!(action(&out, "api"), "held", "{out}");
    assert_eq!(stat(&out, "forge_writes"), 0, "{out}");
    assert_eq!(w.bot_comments(1).len(), 1);

    // A strictly newer release is proposed.
    w.reg.push_tags("team/api", &["1.1.1"]);
    let out = w.run();
    out.assert_exit(0);
    assert_eq!(action(&out, "api"), "opened", "{out}");
    let n = out.app("api")["pr"].as_u64().unwrap();
    assert_eq!(n, 2);
    assert_eq!(tag_at(&w, BRANCH), "1.1.1");
    assert_eq!(w.bot_comments(1).len(), 1, "no second notice");

    // status names the hold and its origin.
    let status = w.status();
    status.assert_exit(0);
    let image = &status.app("api")["images"][0];
    assert_eq!(image["git"]["tag"], "1.0.0", "{status}");
    assert_eq!(image["newest"], "1.1.1", "{status}");
    assert_eq!(status.app("api")["pr"]["number"], 2, "{status}");
    let holds = image["holds"].as_array().unwrap();
    assert!(
        holds.iter().any(|h| h["kind"] == "rollback" && h["version"]["tag"] == "1.1.0" && h["origin"]["type"] == "rollback" && h["origin"]["pr"] == 1),
        "{status}"
    );
}

#[test]
fn close_ignores_its_versions_a_newer_one_reopens_it() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.run().assert_exit(0);
    w.local(&["close", "1"]);

    let out = w.run();
    out.assert_exit(0);
    assert_eq!(action(&out, "api"), "held", "{out}");
    assert_eq!(w.pr_count(), 1);
    let said = w.bot_comments(1);
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(said[0].contains("closed without merging") && said[0].contains("1.1.0"), "{}", said[0]);
    let out = w.run();
    assert_eq!(stat(&out, "forge_writes"), 0, "said once{out}");

    w.reg.push_tags("team/api", &["1.2.0"]);
    let out = w.run();
    out.assert_exit(0);
    assert_eq!(action(&out, "api"), "reopened", "{out}");
    assert_eq!(out.app("api")["pr"], 1, "the same PR, its conversation kept{out}");
    assert_eq!(w.pr_count(), 1);
    assert_eq!(w.pr(1)["state"], "open");
    assert_eq!(tag_at(&w, BRANCH), "1.2.0");
    assert!(w.pr(1)["title"].as_str().unwrap().contains("1.2.0"));
    let out = w.run();
    assert_eq!((action(&out, "api"), stat(&out, "forge_writes")), ("unchanged".to_string(), 0), "{out}");
}

#[test]
fn reopening_a_closed_pr_undoes_the_ignore() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.run().assert_exit(0);
    w.local(&["close", "1"]);
    assert_eq!(action(&w.run(), "api"), "held");
    w.local(&["reopen", "1"]);
    let out = w.run();
    out.assert_exit(0);
    assert!(["unchanged", "updated"].contains(&action(&out, "api").as_str()), "its open PR again{out}");
    assert_eq!(out.app("api")["pr"], 1, "{out}");
    assert_eq!(w.pr(1)["state"], "open");
    assert_eq!(w.pr_count(), 1);
}

#[test]
fn pin_closes_the_pr_and_holds_until_unpin() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.run().assert_exit(0);
    w.comment(1, "alice", "1.1.0 needs a migration first.\n\n/pin");
    let out = w.run();
    out.assert_exit(0);
    assert_eq!(action(&out, "api"), "closed", "{out}");
    assert_eq!(w.pr(1)["state"], "closed");
    let comments = w.comments(1);
    assert_eq!(comments[0].2, vec!["+1".to_string()], "the command gets a reaction: {comments:?}");
    let said = w.bot_comments(1);
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(said[0].contains("@alice") && said[0].contains("held") && said[0].contains("stays closed"), "{}", said[0]);

    // A newer version, a restart: still held, and the closed PR is not taken for an ignore.
    w.reg.push_tags("team/api", &["1.2.0"]);
    let out = w.run();
    assert_eq!(action(&out, "api"), "held", "{out}");
    assert_eq!(w.pr(1)["state"], "closed");
    assert_eq!(w.bot_comments(1).len(), 1, "no closed-ignored notice for a close by the bot");
    let status = w.status();
    let pin = &status.app("api")["images"][0]["holds"][0];
    assert_eq!(pin["kind"], "pin", "{status}");
    assert_eq!(pin["origin"]["type"], "comment", "{status}");
    assert_eq!(pin["origin"]["by"], "alice", "{status}");
    assert!(pin["origin"]["url"].as_str().unwrap().contains("#comment-"), "{status}");
    assert!(pin["origin"]["at"].as_str().is_some(), "{status}");
    assert_eq!(status.app("api")["pr"], Value::Null, "{status}");

    // /unpin on the closed PR: the next cycle proposes again, on the same PR.
    w.comment(1, "bob", "/unpin");
    let out = w.run();
    out.assert_exit(0);
    assert_eq!(action(&out, "api"), "reopened", "{out}");
    assert_eq!(tag_at(&w, BRANCH), "1.2.0");
    assert_eq!(w.bot_comments(1).len(), 2, "one ack per command");
    let out = w.run();
    assert_eq!(stat(&out, "forge_writes"), 0, "{out}");
}

#[test]
fn pin_at_a_version_updates_the_pr_to_exactly_it_and_ignore_skips_one() {
    let w = World::new(&["1.0.0", "1.1.0", "1.2.0"], "1.0.0");
    w.run().assert_exit(0);
    assert_eq!(tag_at(&w, BRANCH), "1.2.0");
    w.comment(1, "alice", "/pin api 1.1.0");
    let out = w.run();
    assert_eq!(action(&out, "api"), "updated", "{out}");
    assert_eq!(tag_at(&w, BRANCH), "1.1.0", "exactly the pinned version");
    assert!(w.bot_comments(1)[0].contains("`1.1.0`"), "{:?}", w.bot_comments(1));
    w.reg.push_tags("team/api", &["1.3.0"]);
    let out = w.run();
    assert_eq!(stat(&out, "forge_writes"), 0, "pinned: 1.3.0 is not proposed{out}");
    assert_eq!(tag_at(&w, BRANCH), "1.1.0");

    // Unpin, then skip one version: the next newer is proposed.
    w.comment(1, "alice", "/unpin api\n/ignore 1.3.0");
    let out = w.run();
    out.assert_exit(0);
    assert_eq!(tag_at(&w, BRANCH), "1.2.0", "1.3.0 skipped, 1.2.0 still proposed{out}");
    assert_eq!(w.bot_comments(1).len(), 2, "one reply per comment");
    w.reg.push_tags("team/api", &["1.3.1"]);
    w.run().assert_exit(0);
    assert_eq!(tag_at(&w, BRANCH), "1.3.1", "newer than the ignored version is proposed");
}

#[test]
fn readers_are_refused_quotes_and_code_are_not_commands_malformed_get_usage() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.run().assert_exit(0);
    w.permissions(&[("mallory", "read")]);
    w.comment(1, "mallory", "/pin");
    w.comment(1, "alice", "> /pin\n\n```\n/pin\n```\n\nSee `/pin` in the docs.");
    w.comment(1, "alice", "/ignore");
    let out = w.run();
    out.assert_exit(0);
    assert_eq!(action(&out, "api"), "unchanged", "nothing changed{out}");
    assert_eq!(w.pr(1)["state"], "open");
    let said = w.bot_comments(1);
    assert_eq!(said.len(), 2, "a refusal and an error, nothing for the quoted ones: {said:?}");
    assert!(said[0].contains("@mallory") && said[0].contains("write access"), "{}", said[0]);
    assert!(said[1].contains("needs &lt;version&gt;") && said[1].contains("`/ignore [<alias>] <version>`"), "{}", said[1]);
    let comments = w.comments(1);
    assert!(comments[1].2.is_empty(), "quoted commands get no reaction: {comments:?}");

    // Each comment once, across restarts.
    let out = w.run();
    assert_eq!(stat(&out, "forge_writes"), 0, "{out}");
    assert_eq!(w.bot_comments(1).len(), 2);
}

#[test]
fn recreate_takes_the_branch_back_from_a_foreign_commit() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.run().assert_exit(0);
    w.git.git(&["fetch", "-q", "origin", BRANCH]);
    w.git.git(&["checkout", "-q", "-b", "mine", "FETCH_HEAD"]);
    w.git.write("envs/api/notes.yaml", "note: mine\n");
    w.git.commit("my fix");
    w.git.git(&["push", "-q", "origin", &format!("mine:{BRANCH}")]);
    w.git.git(&["checkout", "-q", "main"]);
    assert_eq!(action(&w.run(), "api"), "skipped");

    w.comment(1, "alice", "/recreate");
    let out = w.run();
    out.assert_exit(0);
    assert_eq!(action(&out, "api"), "updated", "{out}");
    assert_eq!(w.origin_git(&["rev-list", "--count", &format!("main..{BRANCH}")]).trim(), "1", "one commit again");
    let author = w.origin_git(&["log", "-1", "--format=%ce", BRANCH]);
    assert_eq!(author.trim(), "argocd-image-pr@users.noreply.local");
    assert!(!w.origin_git(&["ls-tree", "-r", "--name-only", BRANCH]).contains("notes.yaml"), "the foreign commit is dropped");
    let out = w.run();
    assert_eq!(stat(&out, "forge_writes"), 0, "{out}");
}

#[test]
fn the_pin_annotation_holds_an_image_in_git() {
    let w = World::new(&["1.0.0", "1.1.0", "1.2.0"], "1.0.0");
    w.add_app("api", "1.0.0", &[("pin", "api=1.1.0")]);
    w.commit("pin api at 1.1.0");
    let out = w.run();
    out.assert_exit(0);
    assert_eq!(action(&out, "api"), "opened", "{out}");
    assert_eq!(tag_at(&w, BRANCH), "1.1.0", "exactly the pinned version");
    w.local(&["merge", "1"]);
    let out = w.run();
    out.assert_exit(0);
    assert_eq!(w.pr_count(), 1, "nothing else is proposed{out}");
    let status = w.status();
    let hold = &status.app("api")["images"][0]["holds"][0];
    assert_eq!((hold["kind"].as_str(), hold["origin"]["type"].as_str()), (Some("pin"), Some("annotation")), "{status}");
    assert_eq!(hold["origin"]["key"], "argocd-image-pr.io/pin", "{status}");

    w.git.git(&["pull", "-q", "--ff-only", "origin", "main"]);
    w.add_app("api", "1.1.0", &[("pin", "api")]);
    w.commit("a broken pin");
    let out = w.run();
    out.assert_exit(1);
    assert!(out.app("api")["errors"][0].as_str().unwrap().contains("argocd-image-pr.io/pin"), "{out}");
}

#[test]
fn pin_one_alias_updates_the_pr_without_it() {
    let w = World::new(&["1.0.0", "1.1.0"], "1.0.0");
    w.reg.push_tags("team/worker", &["2.0.0", "2.1.0"]);
    let worker = w.reg.image("team/worker");
    let kustomization = format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - deployment.yaml\n\
         images:\n  - name: {}\n    newTag: 1.0.0\n  - name: {worker}\n    newTag: 2.0.0\n",
        w.image
    );
    w.git.write("envs/api/kustomization.yaml", &kustomization);
    let app = App::new("api", &w.url(), "envs/api").image_list(&format!("api={}:^1.0,worker={worker}:^2.0", w.image));
    w.git.write("apps/api.yaml", &app.to_yaml());
    w.commit("api with a worker");

    w.run().assert_exit(0);
    let diff = w.origin_git(&["diff", "main", BRANCH]);
    assert!(diff.contains("newTag: 1.1.0") && diff.contains("newTag: 2.1.0"), "{diff}");
    w.comment(1, "alice", "/pin worker");
    let out = w.run();
    assert_eq!(action(&out, "api"), "updated", "{out}");
    let diff = w.origin_git(&["diff", "main", BRANCH]);
    assert!(diff.contains("newTag: 1.1.0") && !diff.contains("newTag: 2.1.0"), "the PR no longer moves the worker:\n{diff}");
    assert_eq!(w.pr(1)["state"], "open");
    assert!(w.bot_comments(1)[0].contains("`worker` is held"), "{:?}", w.bot_comments(1));

    w.comment(1, "alice", "/pin api");
    let out = w.run();
    assert_eq!(action(&out, "api"), "closed", "nothing left to propose{out}");
    let status = w.status();
    let images = status.app("api")["images"].as_array().unwrap();
    assert!(images.iter().all(|i| i["holds"][0]["kind"] == "pin" && i["proposed"].is_null()), "{status}");
}
