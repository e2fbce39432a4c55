//! The fake GitLab's own checks: it answers as GitLab documents (auth, paths, pagination, the
//! merge request lifecycle and its side effects, events, award emoji, members, protected
//! branches over git, merging, rate limits), and its violation checks bite.

mod support;

use std::process::Command;

use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use support::fake_gitlab::{self, Access, FakeGitlab, MrState};

const PROJECT: &str = "platform/apps/gitops";
const ENCODED: &str = "platform%2Fapps%2Fgitops";

/// A raw REST client, so the tests see exactly what the fake sends.
struct Api {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Api {
    fn new(gl: &FakeGitlab, token: Option<&str>) -> Api {
        Api { base: gl.api_url(), token: token.map(str::to_string), http: reqwest::Client::new() }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, HeaderMap, Value) {
        let mut req = self.http.request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.header("PRIVATE-TOKEN", t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        (status, headers, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn get(&self, path: &str) -> (u16, HeaderMap, Value) {
        self.call("GET", path, None).await
    }
}

fn header(h: &HeaderMap, name: &str) -> String {
    h.get(name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_else(|| panic!("no {name} header"))
}

/// A project with a group Developer (alice), a Reporter (bob), a Maintainer (maria), and
/// `mrs` merge requests by alice from `feature-N`.
fn world(mrs: u64) -> FakeGitlab {
    let gl = FakeGitlab::start();
    gl.create_project(PROJECT, &[("README.md", "GitOps\n")]);
    gl.add_member("platform", "alice", Access::Developer);
    gl.add_member(PROJECT, "bob", Access::Reporter);
    gl.add_member(PROJECT, "maria", Access::Maintainer);
    for (who, token) in [("alice", "glpat-alice"), ("bob", "glpat-bob"), ("maria", "glpat-maria"), ("mallory", "glpat-mallory")] {
        gl.add_token(token, who);
    }
    for n in 1..=mrs {
        let branch = format!("feature-{n}");
        gl.push_commit(PROJECT, &branch, &[(&format!("docs/{n}.md"), Some("x\n"))], "alice");
        gl.open_mr(PROJECT, "alice", &branch, "main", &format!("Feature {n}"));
    }
    gl
}

#[tokio::test]
async fn auth_project_paths_and_the_violation_checks() {
    let gl = world(1);
    let (status, _, body) = Api::new(&gl, None).get(&format!("/projects/{ENCODED}")).await;
    assert_eq!((status, body), (401, json!({"message": "401 Unauthorized"})));
    let (status, _, _) = Api::new(&gl, Some("glpat-wrong")).get(&format!("/projects/{ENCODED}")).await;
    assert_eq!(status, 401);
    let bearer = reqwest::Client::new()
        .get(format!("{}/projects/{ENCODED}", gl.api_url()))
        .bearer_auth(fake_gitlab::TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200, "GitLab takes a personal access token as a bearer token too");

    let bot = Api::new(&gl, Some(fake_gitlab::TOKEN));
    let (status, _, p) = bot.get(&format!("/projects/{}", ENCODED.to_ascii_uppercase().replace("%2F", "%2f"))).await;
    assert_eq!(status, 200, "paths are matched in any case: {p}");
    assert_eq!((p["path_with_namespace"].as_str(), p["namespace"]["full_path"].as_str()), (Some(PROJECT), Some("platform/apps")));
    assert_eq!(p["permissions"]["project_access"]["access_level"], 30, "the bot is a Developer");
    let (status, _, by_id) = bot.get(&format!("/projects/{}", gl.project_id(PROJECT))).await;
    assert_eq!((status, &by_id["id"]), (200, &p["id"]));
    let (status, _, body) = Api::new(&gl, Some("glpat-mallory")).get(&format!("/projects/{ENCODED}")).await;
    assert_eq!((status, body), (404, json!({"message": "404 Project Not Found"})), "a private project hides from strangers");
    assert!(gl.take_violations().is_empty());

    let (status, _, body) = bot.get(&format!("/projects/{PROJECT}/merge_requests")).await;
    assert_eq!((status, body), (404, json!({"error": "404 Not Found"})));
    let (status, _, _) = bot.get(&format!("/projects/{ENCODED}/merge_requests?state=opened&colour=blue&milestone=v1")).await;
    assert_eq!(status, 200, "GitLab ignores what it does not declare");
    let v = gl.take_violations();
    assert_eq!(v.len(), 3, "{v:#?}");
    assert!(v[0].contains("no such route") && v[0].contains(ENCODED), "{}", v[0]);
    assert!(v[1].contains("\"colour\" is not a parameter GitLab documents"), "{}", v[1]);
    assert!(v[2].contains("does not implement the parameter \"milestone\""), "{}", v[2]);
    let (status, _, _) = bot.get("/projects/1/pipelines").await;
    assert_eq!(status, 404);
    assert_eq!(gl.take_violations().len(), 1);
    gl.finish();
}

#[tokio::test]
async fn offset_pagination_has_gitlabs_headers_and_links() {
    let gl = world(25);
    let bot = Api::new(&gl, Some(fake_gitlab::TOKEN));
    let path = format!("/projects/{ENCODED}/merge_requests");
    let (status, h, page) = bot.get(&format!("{path}?state=opened&per_page=10&page=2")).await;
    assert_eq!(status, 200);
    let iids: Vec<u64> = page.as_array().unwrap().iter().map(|m| m["iid"].as_u64().unwrap()).collect();
    assert_eq!(iids, (6..=15).rev().collect::<Vec<_>>(), "newest first, the second ten");
    let got: Vec<String> = ["x-page", "x-per-page", "x-next-page", "x-prev-page", "x-total", "x-total-pages"].iter().map(|n| header(&h, n)).collect();
    assert_eq!(got, ["2", "10", "3", "1", "25", "3"]);
    let url = |n: u32| format!("<{}{path}?page={n}&per_page=10&state=opened>", gl.api_url());
    assert_eq!(
        header(&h, "link"),
        format!("{}; rel=\"prev\", {}; rel=\"next\", {}; rel=\"first\", {}; rel=\"last\"", url(1), url(3), url(1), url(3))
    );
    let (_, h, page) = bot.get(&format!("{path}?state=opened&per_page=10&page=3")).await;
    assert_eq!((page.as_array().unwrap().len(), header(&h, "x-next-page")), (5, String::new()), "the last page");
    let (_, h, page) = bot.get(&format!("{path}?per_page=500")).await;
    assert_eq!((page.as_array().unwrap().len(), header(&h, "x-per-page")), (25, "100".to_string()), "per_page is at most 100");
    let (_, h, page) = bot.get(&path).await;
    assert_eq!((page.as_array().unwrap().len(), header(&h, "x-per-page")), (20, "20".to_string()), "20 by default");
    let (status, _, body) = bot.get(&format!("{path}?state=open")).await;
    assert_eq!((status, body), (400, json!({"error": "state does not have a valid value"})));
    let (_, _, none) = bot.get(&format!("{path}?source_branch=nope")).await;
    assert_eq!(none, json!([]));
    gl.finish();
}

#[tokio::test]
async fn the_merge_request_lifecycle_and_its_side_effects() {
    let gl = world(0);
    let bot = Api::new(&gl, Some(fake_gitlab::TOKEN));
    let sha = gl.push_commit(PROJECT, "argocd-image-pr/argocd/api", &[("a.yaml", Some("a: 1\n"))], fake_gitlab::BOT_USER);
    let alice = gl.user_id("alice").unwrap();
    let stranger = gl.add_user("nobody");
    let create = json!({
        "source_branch": "argocd-image-pr/argocd/api", "target_branch": "main", "title": "Draft: update api",
        "labels": "env/dev,deps", "reviewer_ids": [alice, stranger], "assignee_ids": [alice],
    });
    let (status, _, mr) = bot.call("POST", &format!("/projects/{ENCODED}/merge_requests"), Some(create.clone())).await;
    assert_eq!(status, 201, "{mr}");
    assert_eq!((mr["iid"].as_u64(), mr["draft"].as_bool(), mr["sha"].as_str()), (Some(1), Some(true), Some(sha.as_str())));
    assert_eq!(mr["labels"], json!(["deps", "env/dev"]));
    assert_eq!(mr["reviewers"].as_array().unwrap().len(), 1, "a non-member is dropped");
    assert_eq!(mr["description"], Value::Null);
    let (status, _, body) = bot.call("POST", &format!("/projects/{ENCODED}/merge_requests"), Some(create)).await;
    assert_eq!((status, body), (409, json!({"message": ["Another open merge request already exists for this source branch: !1"]})));
    let mr_path = format!("/projects/{ENCODED}/merge_requests/1");
    let (status, _, body) = bot.call("PUT", &mr_path, Some(json!({}))).await;
    assert_eq!(status, 400, "at least one parameter: {body}");
    let (status, _, mr) = bot.call("PUT", &mr_path, Some(json!({"title": "update api", "description": "Deploy review"}))).await;
    assert_eq!((status, mr["draft"].as_bool()), (200, Some(false)));

    // Closing, then the branch goes: the merge request stays closed, and cannot be reopened.
    let (_, _, mr) = bot.call("PUT", &mr_path, Some(json!({"state_event": "close"}))).await;
    assert_eq!(mr["state"], "closed");
    let (status, _, _) = bot.call("DELETE", &format!("/projects/{ENCODED}/repository/branches/argocd-image-pr%2Fargocd%2Fapi"), None).await;
    assert_eq!(status, 204);
    let (status, _, body) = bot.call("DELETE", &format!("/projects/{ENCODED}/repository/branches/argocd-image-pr%2Fargocd%2Fapi"), None).await;
    assert_eq!((status, body), (404, json!({"message": "404 Branch Not Found"})));
    let (status, _, mr) = bot.call("PUT", &mr_path, Some(json!({"state_event": "reopen"}))).await;
    assert_eq!((status, mr["state"].as_str(), mr["sha"].as_str()), (200, Some("closed"), Some(sha.as_str())), "GitLab keeps it closed");

    let bodies: Vec<String> = gl.notes(PROJECT, 1).into_iter().filter(|n| n.system).map(|n| n.body).collect();
    assert_eq!(
        bodies,
        [
            "added ~\"env/dev\" ~\"deps\" labels",
            "assigned to @alice",
            "requested review from @alice",
            "marked this merge request as **ready**",
            "changed the description",
            "closed"
        ]
    );
    // A note touches the merge request (at most once a minute: GitLab's ThrottledTouch) and
    // leaves an event; system notes leave none.
    let before = gl.mr(PROJECT, 1).updated_at;
    let early = gl.note(PROJECT, 1, "bob", "seconds after the last change");
    assert_eq!(gl.mr(PROJECT, 1).updated_at, before, "within a minute of the last touch: not touched");
    gl.advance_clock(61);
    let note = gl.note(PROJECT, 1, "alice", "/recreate");
    assert!(gl.mr(PROJECT, 1).updated_at > before);
    let (_, _, notes) = bot.get(&format!("{mr_path}/notes")).await;
    assert_eq!(notes[0]["id"], note, "newest first");
    assert_eq!((notes[1]["id"].as_u64(), notes[1]["system"].as_bool()), (Some(early), Some(false)));
    assert_eq!(notes[2]["system"].as_bool(), Some(true));
    let (_, _, events) = bot.get(&format!("/projects/{ENCODED}/events?action=commented")).await;
    assert_eq!(events.as_array().unwrap().len(), 2, "{events}");
    assert_eq!((events[0]["target_type"].as_str(), events[0]["note"]["id"].as_u64()), (Some("Note"), Some(note)), "newest first");
    assert_eq!(events[1]["note"]["id"].as_u64(), Some(early));
    gl.finish();
}

#[tokio::test]
async fn events_take_days_and_target_type_note_leaves_threads_out() {
    let gl = world(1);
    let bot = Api::new(&gl, Some(fake_gitlab::TOKEN));
    let plain = gl.note(PROJECT, 1, "alice", "/pin");
    let thread = gl.thread_note(PROJECT, 1, "alice", "/unpin");
    gl.system_note(PROJECT, 1, "alice", "changed the description");
    let day = gl.notes(PROJECT, 1).iter().find(|n| n.id == plain).unwrap().created_at.date_naive();
    let path = format!("/projects/{ENCODED}/events");
    let ids = |v: &Value| -> Vec<u64> { v.as_array().unwrap().iter().filter_map(|e| e["note"]["id"].as_u64()).collect() };
    let (_, _, all) = bot.get(&format!("{path}?action=commented")).await;
    assert_eq!(ids(&all), [thread, plain], "newest first, no system note");
    assert_eq!(all[0]["target_type"], "DiscussionNote");
    let (_, _, notes) = bot.get(&format!("{path}?action=commented&target_type=note")).await;
    assert_eq!(ids(&notes), [plain], "DiscussionNote is not target_type=note");
    let (_, _, same_day) = bot.get(&format!("{path}?action=commented&after={day}")).await;
    assert_eq!(same_day, json!([]), "after is a day, exclusive");
    let (_, _, day_before) = bot.get(&format!("{path}?action=commented&after={}", day.pred_opt().unwrap())).await;
    assert_eq!(ids(&day_before).len(), 2);
    assert!(gl.take_violations().is_empty());
    let (_, _, stamp) = bot.get(&format!("{path}?action=commented&after={}T00:00:00Z", day.pred_opt().unwrap())).await;
    assert_eq!(ids(&stamp).len(), 2, "GitLab reads the day of a timestamp");
    let v = gl.take_violations();
    assert!(v.len() == 1 && v[0].contains("YYYY-MM-DD"), "{v:#?}");
    let (status, _, body) = bot.get(&format!("{path}?action=commented_on")).await;
    assert_eq!((status, body), (400, json!({"error": "action does not have a valid value"})));
    let (_, _, opened) = bot.get(&format!("{path}?target_type=merge_request")).await;
    assert_eq!((opened[0]["action_name"].as_str(), opened[0]["target_iid"].as_u64()), (Some("opened"), Some(1)));
    let (_, _, pushes) = bot.get(&format!("{path}?action=pushed&sort=asc")).await;
    assert_eq!((pushes[0]["action_name"].as_str(), pushes[0]["push_data"]["ref"].as_str()), (Some("pushed new"), Some("feature-1")));
    assert_eq!(pushes[0]["push_data"]["commit_from"], Value::Null);
    gl.finish();
}

#[tokio::test]
async fn award_emoji_members_and_users() {
    let gl = world(1);
    let bot = Api::new(&gl, Some(fake_gitlab::TOKEN));
    let note = gl.note(PROJECT, 1, "alice", "/pin");
    let system = gl.system_note(PROJECT, 1, "alice", "closed");
    let awards = |id: u64| format!("/projects/{ENCODED}/merge_requests/1/notes/{id}/award_emoji");
    let (status, _, award) = bot.call("POST", &awards(note), Some(json!({"name": "thumbsup"}))).await;
    assert_eq!((status, award["name"].as_str(), award["awardable_type"].as_str()), (201, Some("thumbsup"), Some("Note")));
    let (status, _, body) = bot.call("POST", &awards(note), Some(json!({"name": "thumbsup"}))).await;
    assert_eq!((status, body), (404, json!({"message": "404 Award Emoji Name has already been taken Not Found"})));
    let (status, _, _) = bot.call("POST", &awards(system), Some(json!({"name": "thumbsup"}))).await;
    assert_eq!(status, 404, "no award on a system note");
    let (status, _, _) = bot.call("POST", &awards(note), Some(json!({"name": "+1"}))).await;
    assert_eq!(status, 404, "GitLab's name is thumbsup");
    let (status, _, _) = Api::new(&gl, Some("glpat-bob")).call("POST", &awards(note), Some(json!({"name": "eyes"}))).await;
    assert_eq!(status, 201, "a Reporter may award");
    assert_eq!(gl.awards(note).iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), ["thumbsup", "eyes"]);

    let (_, _, users) = bot.get("/users?username=ALICE").await;
    let alice = users[0]["id"].as_u64().unwrap();
    assert_eq!((users.as_array().unwrap().len(), users[0]["username"].as_str()), (1, Some("alice")));
    let member = |id: u64| format!("/projects/{ENCODED}/members/all/{id}");
    let (_, _, m) = bot.get(&member(alice)).await;
    assert_eq!((m["access_level"].as_u64(), m["username"].as_str()), (Some(30), Some("alice")), "inherited from the group");
    gl.add_member(PROJECT, "alice", Access::Maintainer);
    let (_, _, m) = bot.get(&member(alice)).await;
    assert_eq!(m["access_level"], 40, "the highest of project and group");
    let (status, _, body) = bot.get(&member(gl.user_id("mallory").unwrap())).await;
    assert_eq!((status, body), (404, json!({"message": "404 Not found"})));
    gl.finish();
}

fn git(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "credential.helper="])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .unwrap()
}

#[tokio::test]
async fn git_over_http_with_the_protected_default_branch() {
    let gl = world(1);
    let url = |token: &str| gl.git_url(PROJECT).replacen("http://", &format!("http://oauth2:{token}@"), 1);
    let dir = tempfile::tempdir().unwrap();
    let bad = git(dir.path(), &["clone", "-q", &url("glpat-wrong"), "bad"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("Authentication failed"), "{bad:?}");
    let w = dir.path().join("w");
    assert!(git(dir.path(), &["clone", "-q", &url(fake_gitlab::TOKEN), "w"]).status.success());
    std::fs::write(w.join("README.md"), "changed\n").unwrap();
    assert!(git(&w, &["commit", "-qam", "to main"]).status.success());
    let push = git(&w, &["push", "origin", "HEAD:main"]);
    let said = String::from_utf8_lossy(&push.stderr);
    assert!(!push.status.success() && said.contains("You are not allowed to push code to protected branches"), "{said}");
    let push = git(&w, &["push", "-q", &url("glpat-maria"), "HEAD:main"]);
    assert!(push.status.success(), "a Maintainer may: {}", String::from_utf8_lossy(&push.stderr));

    // A push to a merge request's branch: its sha, a system note, an event.
    assert!(git(&w, &["fetch", "-q", "origin", "feature-1"]).status.success());
    assert!(git(&w, &["checkout", "-q", "-b", "f", "FETCH_HEAD"]).status.success());
    std::fs::write(w.join("more.md"), "more\n").unwrap();
    assert!(git(&w, &["add", "-A"]).status.success() && git(&w, &["commit", "-qm", "more"]).status.success());
    let before = gl.mr(PROJECT, 1).updated_at;
    assert!(git(&w, &["push", "-q", "origin", "f:feature-1"]).status.success());
    let head = gl.branch_sha(PROJECT, "feature-1").unwrap();
    let mr = gl.mr(PROJECT, 1);
    assert_eq!(mr.sha, head);
    assert!(mr.updated_at > before);
    let last = gl.notes(PROJECT, 1).pop().unwrap();
    assert!(last.system && last.author == fake_gitlab::BOT_USER && last.body.starts_with("added 1 commit"), "{last:?}");
    assert_eq!(gl.pushes(), 2);
    let (_, _, pushes) = Api::new(&gl, Some(fake_gitlab::TOKEN)).get(&format!("/projects/{ENCODED}/events?action=pushed")).await;
    assert_eq!((pushes[0]["action_name"].as_str(), pushes[0]["push_data"]["ref"].as_str()), (Some("pushed to"), Some("feature-1")));
    assert_eq!(pushes[0]["push_data"]["commit_to"], head.as_str());
    let git_calls: Vec<u16> = gl.requests().iter().filter(|r| r.operation == "git").map(|r| r.status).collect();
    assert!(git_calls.contains(&401) && git_calls.contains(&200), "{git_calls:?}");
    gl.finish();
}

#[tokio::test]
async fn merging_needs_the_merge_level_and_writes_a_real_merge_commit() {
    let gl = world(2);
    let merge = |n: u64| format!("/projects/{ENCODED}/merge_requests/{n}/merge");
    let bot = Api::new(&gl, Some(fake_gitlab::TOKEN));
    let (status, _, body) = bot.call("PUT", &merge(1), None).await;
    assert_eq!((status, body), (401, json!({"message": "401 Unauthorized"})), "main is protected: Maintainers merge");
    let maria = Api::new(&gl, Some("glpat-maria"));
    let (status, _, body) = maria.call("PUT", &merge(1), Some(json!({"sha": "0".repeat(40)}))).await;
    assert_eq!(status, 409, "{body}");
    let (status, _, mr) = maria.call("PUT", &merge(1), Some(json!({"auto_merge": true, "squash": true}))).await;
    assert_eq!((status, mr["state"].as_str(), mr["merge_when_pipeline_succeeds"].as_bool()), (200, Some("opened"), Some(true)));
    assert_eq!(mr["merge_user"]["username"], "maria");
    let (status, _, mr) = maria.call("PUT", &merge(2), Some(json!({"should_remove_source_branch": true}))).await;
    assert_eq!((status, mr["state"].as_str()), (200, Some("merged")), "{mr}");
    let main = gl.branch_sha(PROJECT, "main").unwrap();
    assert_eq!(mr["merge_commit_sha"], main.as_str());
    let message = String::from_utf8(Command::new("git").args(["log", "-1", "--format=%B", &main]).current_dir(gl.bare_path(PROJECT)).output().unwrap().stdout).unwrap();
    assert_eq!(message.trim(), format!("Merge branch 'feature-2' into 'main'\n\nFeature 2\n\nSee merge request {PROJECT}!2"));
    assert_eq!(gl.branch_sha(PROJECT, "feature-2"), None, "the source branch went");
    assert_eq!(gl.mr(PROJECT, 2).state, MrState::Merged);
    let (status, _, _) = maria.call("PUT", &merge(2), None).await;
    assert_eq!(status, 405, "not open");
    gl.finish();
}

#[tokio::test]
async fn rate_limits_faults_and_lost_answers() {
    let gl = world(0);
    let bot = Api::new(&gl, Some(fake_gitlab::TOKEN));
    gl.rate_limit_next(1, 7);
    let (status, h, body) = bot.get(&format!("/projects/{ENCODED}")).await;
    assert_eq!((status, header(&h, "retry-after"), body), (429, "7".to_string(), Value::String("Retry later\n".into())));
    assert_eq!(header(&h, "ratelimit-remaining"), "0");
    assert_eq!(bot.get(&format!("/projects/{ENCODED}")).await.0, 200);
    assert_eq!(gl.rate_limited(), 1);
    gl.fail("projects/get", 2, 503);
    assert_eq!(bot.get(&format!("/projects/{ENCODED}")).await.0, 200);
    let (status, _, body) = bot.get(&format!("/projects/{ENCODED}")).await;
    assert_eq!((status, body), (503, json!({"message": "503 Service Unavailable"})));
    gl.lose_response("notes/create", 1);
    gl.open_mr(PROJECT, "alice", "main", "main", "odd but allowed for a person");
    let (status, _, _) = bot.call("POST", &format!("/projects/{ENCODED}/merge_requests/1/notes"), Some(json!({"body": "hello"}))).await;
    assert_eq!(status, 502);
    assert_eq!(gl.notes(PROJECT, 1).len(), 1, "the note was made all the same");
    assert_eq!(gl.calls().iter().filter(|c| *c == "projects/get").count(), 4);
    gl.finish();
}
