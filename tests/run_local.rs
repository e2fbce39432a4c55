//! `argocd-image-pr run --once --forge local` end to end: the real binary, a real registry, a
//! real git repository that the bot pushes its branches to, pull requests as JSON files. Each
//! test is one story of the pull-request lifecycle (docs/lifecycle.md).

mod support;

use serde_json::Value;
use support::cli::PlanOutput;
use support::gitops::{App, kustomization};
use support::local_world::{BRANCH, World, files, find_file};

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
    assert_eq!(stat(&out, "forge_calls"), 2, "one PR listing and one comment listing per repository{out}");
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
    assert_eq!((stat(&out, "forge_writes"), stat(&out, "forge_calls")), (0, 2), "{out}");
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
