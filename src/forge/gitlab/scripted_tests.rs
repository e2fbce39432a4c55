//! The driver's requests and its handling of answers, against a scripted HTTP server on
//! loopback: which paths and bodies each call sends, pages, retries, rate limits, redirects.
//! The stateful fake GitLab and the stories on it are in `tests/`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method as HttpMethod, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::*;

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    token: Option<String>,
    body: String,
}

/// An answer to send: status, headers, body.
type Answer = (u16, Vec<(&'static str, String)>, String);

#[derive(Default)]
struct Script {
    answers: VecDeque<Answer>,
    seen: Vec<Seen>,
}

struct Server {
    url: String,
    script: Arc<Mutex<Script>>,
}

impl Server {
    async fn start() -> Server {
        let script = Arc::new(Mutex::new(Script::default()));
        let app = Router::new().fallback(answer).with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Server { url, script }
    }

    fn answer(&self, status: u16, headers: &[(&'static str, &str)], body: &str) {
        let headers = headers.iter().map(|(k, v)| (*k, v.to_string())).collect();
        self.script.lock().unwrap().answers.push_back((status, headers, body.to_string()));
    }

    fn seen(&self) -> Vec<Seen> {
        self.script.lock().unwrap().seen.clone()
    }

    fn requests(&self) -> Vec<String> {
        self.seen().iter().map(|s| format!("{} {}", s.method, s.path)).collect()
    }

    fn forge(&self) -> GitlabForge {
        let mut settings = GitlabSettings::new(Some(self.url.clone()), "glpat-test".into());
        settings.retry_backoff = Duration::from_millis(1);
        GitlabForge::new(settings).unwrap()
    }

    fn repo(&self) -> RepoRef {
        RepoRef::from_url(&format!("{}/group/sub/project.git", self.url)).unwrap()
    }
}

async fn answer(State(script): State<Arc<Mutex<Script>>>, method: HttpMethod, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let mut s = script.lock().unwrap();
    s.seen.push(Seen {
        method: method.to_string(),
        path: uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
        token: headers.get("private-token").and_then(|v| v.to_str().ok()).map(str::to_string),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let Some((status, extra, body)) = s.answers.pop_front() else {
        return (StatusCode::IM_A_TEAPOT, "no answer scripted").into_response();
    };
    let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
    response.headers_mut().insert("content-type", "application/json".parse().unwrap());
    for (k, v) in extra {
        response.headers_mut().insert(k, v.parse().unwrap());
    }
    response
}

/// A merge request as GitLab's listing shows one (the fields the bot reads).
fn mr(iid: u64, branch: &str, state: &str, extra: &str) -> String {
    format!(
        r#"{{"iid": {iid}, "project_id": 5, "source_project_id": 5, "target_project_id": 5, "title": "chore: update {iid}",
            "description": "body {iid}", "state": "{state}", "draft": false, "source_branch": "{branch}",
            "target_branch": "main", "sha": "{iid:040}", "author": {{"id": 9, "username": "bot"}},
            "assignees": [], "reviewers": [], "labels": [], "web_url": "https://g/group/sub/project/-/merge_requests/{iid}",
            "merge_when_pipeline_succeeds": false, "updated_at": "2024-05-02T09:30:00Z"{extra}}}"#
    )
}

const PROJECT: &str = "/api/v4/projects/group%2Fsub%2Fproject";

#[tokio::test]
async fn the_listing_reads_every_page_and_keeps_the_bot_s_branches_in_the_project() {
    let gl = Server::start().await;
    let next = format!(r#"<{}{PROJECT}/merge_requests?page=2&per_page=100&state=all>; rel="next""#, gl.url);
    let page1 = format!("[{}, {}]", mr(3, "argocd-image-pr/argocd/web", "opened", ""), mr(2, "feature/x", "merged", ""));
    gl.answer(200, &[("link", &next), ("x-next-page", "2")], &page1);
    let fork = mr(4, "argocd-image-pr/argocd/api", "opened", "").replace(r#""source_project_id": 5"#, r#""source_project_id": 77"#);
    let page2 = format!("[{}, {fork}]", mr(1, "argocd-image-pr/argocd/api", "merged", r#", "merge_commit_sha": "abc""#));
    gl.answer(200, &[("x-next-page", "3")], &page2);
    gl.answer(200, &[("x-next-page", "")], "[]");
    let prs = gl.forge().list_pull_requests(&gl.repo(), "argocd-image-pr/").await.unwrap();
    let got: Vec<(u64, PrState, Option<&str>)> = prs.iter().map(|p| (p.number, p.state, p.merge_commit_sha.as_deref())).collect();
    assert_eq!(got, [(3, PrState::Open, None), (1, PrState::Merged, Some("abc"))], "a fork's branch is never the bot's");
    assert_eq!(
        gl.requests(),
        [
            format!("GET {PROJECT}/merge_requests?state=all&order_by=updated_at&sort=desc&per_page=100"),
            format!("GET {PROJECT}/merge_requests?page=2&per_page=100&state=all"),
            format!("GET {PROJECT}/merge_requests?state=all&order_by=updated_at&sort=desc&per_page=100&page=3"),
        ]
    );
    assert!(gl.seen().iter().all(|s| s.token.as_deref() == Some("glpat-test")), "PRIVATE-TOKEN on every request");
}

#[tokio::test]
async fn a_get_is_retried_after_a_server_error_a_post_is_not() {
    let gl = Server::start().await;
    gl.answer(502, &[], "<html>Bad Gateway</html>");
    gl.answer(200, &[], r#"{"default_branch": "main"}"#);
    let forge = gl.forge();
    assert_eq!(forge.default_branch(&gl.repo()).await.unwrap(), "main");
    assert_eq!(forge.stats().retries, 1);

    gl.answer(502, &[], "<html>Bad Gateway</html>");
    let e = forge.create_comment(&gl.repo(), 3, "hello").await.unwrap_err();
    assert_eq!(e.kind, ForgeErrorKind::Network);
    assert!(e.to_string().starts_with("gitlab group/sub/project: commenting on merge request !3: 502"), "{e}");
    let posts = gl.requests().iter().filter(|r| r.starts_with("POST")).count();
    assert_eq!(posts, 1, "a note whose answer was lost may exist: not sent twice");

    for _ in 0..3 {
        gl.answer(500, &[], "");
    }
    let e = forge.default_branch(&gl.repo()).await.unwrap_err();
    assert_eq!(e.kind, ForgeErrorKind::Network, "{e}");
    assert_eq!(forge.stats().retries, 3, "two retries, then the error");
}

#[tokio::test]
async fn a_rate_limit_is_waited_out() {
    let gl = Server::start().await;
    gl.answer(429, &[("retry-after", "0")], r#"{"message":"Retry later"}"#);
    gl.answer(200, &[], r#"{"default_branch": "trunk"}"#);
    let forge = gl.forge();
    assert_eq!(forge.default_branch(&gl.repo()).await.unwrap(), "trunk");
    assert_eq!(forge.stats().rate_limit_waits, 1);

    gl.answer(429, &[("retry-after", "3600")], "");
    let e = forge.default_branch(&gl.repo()).await.unwrap_err();
    assert_eq!(e.kind, ForgeErrorKind::RateLimited);
    assert!(e.message.contains("3600s"), "{e}");
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let gl = Server::start().await;
    gl.answer(302, &[("location", "https://elsewhere.example/login")], "");
    let e = gl.forge().default_branch(&gl.repo()).await.unwrap_err();
    assert!(e.message.contains("redirected to https://elsewhere.example/login"), "{e}");
    assert_eq!(gl.requests().len(), 1);
}

#[tokio::test]
async fn create_sends_the_branch_draft_title_and_keeps_the_branch() {
    let gl = Server::start().await;
    let created = mr(7, "argocd-image-pr/argocd/web", "opened", "")
        .replace(r#""title": "chore: update 7""#, r#""title": "Draft: chore: update web""#)
        .replace(r#""draft": false"#, r#""draft": true"#);
    gl.answer(201, &[], &created);
    let forge = gl.forge();
    let new = NewPullRequest {
        title: "chore: update web".into(),
        body: "the body".into(),
        head: "argocd-image-pr/argocd/web".into(),
        base: "main".into(),
        draft: true,
    };
    let pr = forge.create_pull_request(&gl.repo(), &new).await.unwrap();
    assert_eq!((pr.number, pr.title.as_str(), pr.draft), (7, "chore: update web", true));
    let sent: Value = serde_json::from_str(&gl.seen()[0].body).unwrap();
    assert_eq!(
        sent,
        json!({"source_branch": "argocd-image-pr/argocd/web", "target_branch": "main", "title": "Draft: chore: update web",
               "description": "the body", "remove_source_branch": false})
    );

    // A new title keeps the draft a draft.
    gl.answer(200, &[], &created);
    let update = PrUpdate { title: Some("chore: update web to 2".into()), body: None, state: None };
    forge.update_pull_request(&gl.repo(), 7, &update).await.unwrap();
    let sent: Value = serde_json::from_str(&gl.seen()[1].body).unwrap();
    assert_eq!(sent, json!({"title": "Draft: chore: update web to 2"}));
    assert_eq!(gl.requests()[1], format!("PUT {PROJECT}/merge_requests/7"));

    gl.answer(409, &[], r#"{"message":["Another open merge request already exists for this source branch: !7"]}"#);
    let e = forge.create_pull_request(&gl.repo(), &new).await.unwrap_err();
    assert_eq!(e.kind, ForgeErrorKind::Conflict, "{e}");
}

#[tokio::test]
async fn a_reopen_gitlab_did_not_make_is_a_refusal() {
    let gl = Server::start().await;
    gl.answer(200, &[], &mr(5, "argocd-image-pr/argocd/web", "closed", ""));
    let reopen = PrUpdate { title: None, body: None, state: Some(PrState::Open) };
    let e = gl.forge().update_pull_request(&gl.repo(), 5, &reopen).await.unwrap_err();
    assert_eq!(e.kind, ForgeErrorKind::Conflict);
    assert!(e.message.contains("left it closed"), "{e}");
    let sent: Value = serde_json::from_str(&gl.seen()[0].body).unwrap();
    assert_eq!(sent, json!({"state_event": "reopen"}));
}

#[tokio::test]
async fn reviewers_are_user_ids_added_to_those_the_merge_request_has() {
    let gl = Server::start().await;
    gl.answer(200, &[], r#"[{"id": 5, "username": "alice", "name": "Alice", "state": "active"}]"#);
    gl.answer(200, &[], &mr(3, "b", "opened", "").replace(r#""reviewers": []"#, r#""reviewers": [{"id": 2, "username": "bob"}]"#));
    gl.answer(200, &[], &mr(3, "b", "opened", ""));
    let forge = gl.forge();
    let reviewers = [Reviewer::User("alice".into()), Reviewer::Team("platform".into())];
    let e = forge.request_reviewers(&gl.repo(), 3, &reviewers).await.unwrap_err();
    assert_eq!(e.kind, ForgeErrorKind::Unsupported);
    assert!(e.message.contains("GitLab has no team reviewers") && e.message.contains("platform"), "{e}");
    assert_eq!(
        gl.requests(),
        ["GET /api/v4/users?username=alice".to_string(), format!("GET {PROJECT}/merge_requests/3"), format!("PUT {PROJECT}/merge_requests/3")]
    );
    let sent: Value = serde_json::from_str(&gl.seen()[2].body).unwrap();
    assert_eq!(sent, json!({"reviewer_ids": [2, 5]}), "bob stays asked");

    gl.answer(200, &[], "[]");
    let e = forge.add_assignees(&gl.repo(), 3, &["nobody".into()]).await.unwrap_err();
    assert_eq!(e.kind, ForgeErrorKind::NotFound);
    assert!(e.message.contains("GitLab has no user \"nobody\""), "{e}");
}

#[tokio::test]
async fn access_levels_through_the_members_of_the_project_and_its_groups() {
    let gl = Server::start().await;
    let forge = gl.forge();
    gl.answer(200, &[], r#"[{"id": 5, "username": "alice"}]"#);
    gl.answer(200, &[], r#"{"id": 5, "username": "alice", "access_level": 30}"#);
    assert_eq!(forge.access_level(&gl.repo(), "alice").await.unwrap(), AccessLevel::Write);
    gl.answer(200, &[], r#"[{"id": 6, "username": "eve"}]"#);
    gl.answer(404, &[], r#"{"message":"404 Not found"}"#);
    assert_eq!(forge.access_level(&gl.repo(), "eve").await.unwrap(), AccessLevel::None);
    gl.answer(200, &[], "[]");
    assert_eq!(forge.access_level(&gl.repo(), "ghost").await.unwrap(), AccessLevel::None);
    assert_eq!(gl.requests()[1], format!("GET {PROJECT}/members/all/5"));
}

#[tokio::test]
async fn comments_of_the_project_come_from_its_events_from_the_day_before() {
    let gl = Server::start().await;
    let events = r#"[{"action_name": "commented on", "target_type": "Note", "created_at": "2024-05-02T09:31:00Z",
        "note": {"id": 90, "body": "/pin", "author": {"id": 5, "username": "alice"}, "created_at": "2024-05-02T09:31:00Z",
                 "system": false, "noteable_type": "MergeRequest", "noteable_iid": 3}},
        {"action_name": "commented on", "target_type": "Note", "created_at": "2024-05-01T23:00:00Z",
        "note": {"id": 80, "body": "/pin", "author": {"id": 5, "username": "alice"}, "created_at": "2024-05-01T23:00:00Z",
                 "system": false, "noteable_type": "MergeRequest", "noteable_iid": 3}}]"#;
    gl.answer(200, &[], events);
    let since = "2024-05-02T09:00:00Z".parse().unwrap();
    let comments = gl.forge().list_repo_comments(&gl.repo(), Some(since)).await.unwrap();
    assert_eq!(comments.iter().map(|c| (c.id, c.pr)).collect::<Vec<_>>(), [(90, 3)]);
    assert_eq!(comments[0].url, format!("{}/group/sub/project/-/merge_requests/3#note_90", gl.url));
    assert_eq!(gl.requests(), [format!("GET {PROJECT}/events?action=commented&sort=asc&per_page=100&after=2024-05-01")]);
}

#[tokio::test]
async fn reactions_auto_merge_labels_and_branches() {
    let gl = Server::start().await;
    let forge = gl.forge();
    let repo = gl.repo();
    gl.answer(404, &[], r#"{"message":"404 Award Emoji Name has already been taken"}"#);
    forge.add_reaction(&repo, 3, 90, Reaction::ThumbsUp).await.unwrap();
    gl.answer(200, &[], &mr(3, "b", "opened", "").replace(r#""merge_when_pipeline_succeeds": false"#, r#""merge_when_pipeline_succeeds": true"#));
    forge.enable_auto_merge(&repo, 3, MergeMethod::Squash).await.unwrap();
    gl.answer(405, &[], r#"{"message":"405 Method Not Allowed"}"#);
    let e = forge.enable_auto_merge(&repo, 3, MergeMethod::Merge).await.unwrap_err();
    assert_eq!(e.kind, ForgeErrorKind::Conflict, "{e}");
    let e = forge.enable_auto_merge(&repo, 3, MergeMethod::Rebase).await.unwrap_err();
    assert_eq!(e.kind, ForgeErrorKind::Unsupported, "{e}");
    gl.answer(200, &[], &mr(3, "b", "opened", ""));
    forge.add_labels(&repo, 3, &["deps".into(), "deploy".into()]).await.unwrap();
    gl.answer(404, &[], r#"{"message":"404 Branch Not Found"}"#);
    forge.delete_branch(&repo, "argocd-image-pr/argocd/web").await.unwrap();
    let seen = gl.seen();
    let line = |i: usize| format!("{} {} {}", seen[i].method, seen[i].path, seen[i].body);
    assert_eq!(line(0), format!(r#"POST {PROJECT}/merge_requests/3/notes/90/award_emoji {{"name":"thumbsup"}}"#));
    let merge: Value = serde_json::from_str(&seen[1].body).unwrap();
    assert_eq!(seen[1].path, format!("{PROJECT}/merge_requests/3/merge"));
    assert_eq!(merge, json!({"auto_merge": true, "merge_when_pipeline_succeeds": true, "squash": true}));
    assert_eq!(line(3), format!(r#"PUT {PROJECT}/merge_requests/3 {{"add_labels":"deps,deploy"}}"#));
    assert_eq!(line(4), format!("DELETE {PROJECT}/repository/branches/argocd-image-pr%2Fargocd%2Fweb "));
    assert_eq!(seen.len(), 5, "rebase asked nothing of GitLab");
}
