//! GitLab's webhooks (`POST /webhooks/gitlab`): a delivery is authenticated by its
//! `X-Gitlab-Token` (GitLab sends the webhook's secret token as it is; the bot compares it in
//! constant time with its webhook secret), named by `X-Gitlab-Event` and `Idempotency-Key` (or
//! `X-Gitlab-Event-UUID` before GitLab 17.4), and its payload is converted into the bot's own
//! [`WebhookEvent`] here, at the edge: nothing past this file sees GitLab's JSON. Pure.
//!
//! - `Note Hook` on a merge request, created or edited, with a line that is a command → a
//!   comment event (as GitHub's `issue_comment`).
//! - `Merge Request Hook`: `merge` → closed and merged, `close` → closed, `reopen` → reopened,
//!   `update` with new commits (`oldrev`) → synchronize (as GitHub's `pull_request`). An update
//!   of the title, description or labels alone (the bot's own edits among them) starts nothing.
//! - Everything else is acknowledged and ignored. GitLab has no ping: its "Test" button sends a
//!   sample of the chosen event, handled as that event.

use super::header_text as header;
use axum::http::HeaderMap;
use serde::Deserialize;

use super::event::{CommentAction, CommentEvent, Conversion, PrAction, PullRequestEvent, WebhookEvent, WebhookRepo};
use super::{Dialect, WebhookSecret, signature};

/// gitlab.com and self-managed GitLab deliveries.
pub(super) struct Gitlab;

impl Dialect for Gitlab {
    fn event_label(headers: &HeaderMap) -> &'static str {
        match header(headers, "x-gitlab-event") {
            Some("Note Hook") => "note",
            Some("Merge Request Hook") => "merge_request",
            Some(_) => "other",
            None => "none",
        }
    }

    fn delivery_id(headers: &HeaderMap) -> Option<&str> {
        header(headers, "idempotency-key").or_else(|| header(headers, "x-gitlab-event-uuid"))
    }

    fn verify(secret: &WebhookSecret, headers: &HeaderMap, _body: &[u8]) -> Result<(), String> {
        let token = headers.get("x-gitlab-token").map(|v| v.as_bytes());
        signature::verify_token(secret, token).map_err(|e| e.to_string())
    }

    fn event(headers: &HeaderMap) -> Result<&str, String> {
        header(headers, "x-gitlab-event").ok_or_else(|| "no X-Gitlab-Event header".to_string())
    }

    fn is_ping(_event: &str) -> bool {
        false
    }

    fn convert(event: &str, delivery: Option<&str>, body: &[u8]) -> Result<Conversion, String> {
        convert_payload(event, delivery, body)
    }
}


/// Turns a verified delivery into an event. `Err` is a payload that does not parse (a message for
/// the sender).
fn convert_payload(event: &str, delivery: Option<&str>, body: &[u8]) -> Result<Conversion, String> {
    let delivery = delivery.map(str::to_string);
    match event {
        "Note Hook" => {
            let p: NotePayload = parse(event, body)?;
            let note = p.object_attributes;
            if note.noteable_type.as_deref() != Some("MergeRequest") {
                return Ok(Conversion::Ignored(format!(
                    "Note Hook on a {}, not a merge request",
                    note.noteable_type.as_deref().unwrap_or("thing GitLab did not name")
                )));
            }
            if note.system {
                return Ok(Conversion::Ignored("Note Hook for a system note".to_string()));
            }
            // `action` since GitLab 16.11 (edits are delivered since then); before, every
            // delivery was a new note.
            let action = match note.action.as_deref() {
                None | Some("create") => CommentAction::Created,
                Some("update") => CommentAction::Edited,
                Some(other) => return Ok(Conversion::Ignored(format!("Note Hook action {other:?} is not one the bot acts on"))),
            };
            let Some(mr) = p.merge_request else {
                return Err("Note Hook payload on a merge request has no merge_request".to_string());
            };
            let body = note.note.unwrap_or_default();
            if crate::commands::parse_comment(&body).is_empty() {
                return Ok(Conversion::Ignored("Note Hook without a command".to_string()));
            }
            Ok(Conversion::Event(WebhookEvent::Comment(CommentEvent {
                delivery,
                repo: p.project.into(),
                pr: mr.iid,
                action,
                comment_id: note.id,
                body,
                author: p.user.username,
            })))
        }
        "Merge Request Hook" => {
            let p: MergeRequestPayload = parse(event, body)?;
            let mr = p.object_attributes;
            let action = match mr.action.as_deref() {
                Some("merge") => PrAction::Closed,
                Some("close") => PrAction::Closed,
                Some("reopen") => PrAction::Reopened,
                Some("update") if mr.oldrev.as_deref().is_some_and(|r| !r.is_empty()) => PrAction::Synchronize,
                Some("update") => {
                    return Ok(Conversion::Ignored(
                        "Merge Request Hook update without new commits (title, description, labels...)".to_string(),
                    ));
                }
                other => {
                    return Ok(Conversion::Ignored(format!(
                        "Merge Request Hook action {:?} is not one the bot acts on",
                        other.unwrap_or("")
                    )));
                }
            };
            let merged = mr.action.as_deref() == Some("merge") || mr.state.as_deref() == Some("merged");
            Ok(Conversion::Event(WebhookEvent::PullRequest(PullRequestEvent {
                delivery,
                repo: p.project.into(),
                pr: mr.iid,
                action,
                head_ref: mr.source_branch,
                base_ref: mr.target_branch,
                merged,
                merge_commit_sha: mr.merge_commit_sha.filter(|s| merged && !s.is_empty()),
            })))
        }
        other => Ok(Conversion::Ignored(format!("event {other:?} is not one the bot acts on"))),
    }
}

fn parse<'a, T: Deserialize<'a>>(event: &str, body: &'a [u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("{event} payload does not parse: {e}"))
}

#[derive(Deserialize)]
struct GlUser {
    username: String,
}

#[derive(Deserialize)]
struct GlProject {
    path_with_namespace: String,
    git_http_url: String,
}

impl From<GlProject> for WebhookRepo {
    fn from(p: GlProject) -> Self {
        WebhookRepo { full_name: p.path_with_namespace, clone_url: p.git_http_url }
    }
}

#[derive(Deserialize)]
struct NotePayload {
    user: GlUser,
    project: GlProject,
    object_attributes: GlNote,
    /// Present when the note is on a merge request.
    #[serde(default)]
    merge_request: Option<GlNotedMergeRequest>,
}

#[derive(Deserialize)]
struct GlNote {
    id: u64,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    noteable_type: Option<String>,
    #[serde(default)]
    system: bool,
    /// `create` or `update`.
    #[serde(default)]
    action: Option<String>,
}

#[derive(Deserialize)]
struct GlNotedMergeRequest {
    iid: u64,
}

#[derive(Deserialize)]
struct MergeRequestPayload {
    project: GlProject,
    object_attributes: GlMergeRequest,
}

#[derive(Deserialize)]
struct GlMergeRequest {
    iid: u64,
    source_branch: String,
    target_branch: String,
    #[serde(default)]
    state: Option<String>,
    /// `open`, `close`, `reopen`, `update`, `approved`, `unapproved`, `approval`, `unapproval`,
    /// `merge`.
    #[serde(default)]
    action: Option<String>,
    /// The head before this update; present only when commits were added.
    #[serde(default)]
    oldrev: Option<String>,
    #[serde(default)]
    merge_commit_sha: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    // "Comment on a merge request" from GitLab's doc/user/project/integrations/webhook_events.md,
    // abridged (the payload's other fields are not read).
    const NOTE_ON_MR: &str = r#"{
      "object_kind": "note", "event_type": "note",
      "user": {"id": 1, "name": "Administrator", "username": "root",
               "avatar_url": "http://www.gravatar.com/avatar/e64c7d89f26bd1972efa854d13d7dd61?s=40\u0026d=identicon",
               "email": "admin@example.com"},
      "project_id": 5,
      "project": {"id": 5, "name": "Gitlab Test", "description": "Aut reprehenderit ut est.",
                  "web_url": "http://example.com/gitlab-org/gitlab-test", "avatar_url": null,
                  "git_ssh_url": "git@example.com:gitlab-org/gitlab-test.git",
                  "git_http_url": "http://example.com/gitlab-org/gitlab-test.git",
                  "namespace": "Gitlab Org", "visibility_level": 10,
                  "path_with_namespace": "gitlab-org/gitlab-test", "default_branch": "master",
                  "homepage": "http://example.com/gitlab-org/gitlab-test",
                  "url": "http://example.com/gitlab-org/gitlab-test.git",
                  "ssh_url": "git@example.com:gitlab-org/gitlab-test.git",
                  "http_url": "http://example.com/gitlab-org/gitlab-test.git"},
      "repository": {"name": "Gitlab Test", "url": "http://example.com/gitlab-org/gitlab-test.git",
                     "description": "Aut reprehenderit ut est.", "homepage": "http://example.com/gitlab-org/gitlab-test"},
      "object_attributes": {"id": 1244, "note": "This MR needs work.", "noteable_type": "MergeRequest",
                            "author_id": 1, "created_at": "2015-05-17 18:21:36 UTC",
                            "updated_at": "2015-05-17 18:21:36 UTC", "project_id": 5, "attachment": null,
                            "line_code": null, "commit_id": "", "noteable_id": 7, "system": false,
                            "st_diff": null, "action": "create",
                            "url": "http://example.com/gitlab-org/gitlab-test/merge_requests/1#note_1244"},
      "merge_request": {"id": 7, "target_branch": "markdown", "source_branch": "master",
                        "source_project_id": 5, "author_id": 8, "assignee_id": 28,
                        "title": "Tempora et eos debitis quae laborum et.",
                        "created_at": "2015-03-01 20:12:53 UTC", "updated_at": "2015-03-21 18:27:27 UTC",
                        "milestone_id": 11, "state": "opened", "merge_status": "cannot_be_merged",
                        "target_project_id": 5, "iid": 1, "description": "Et voluptas corrupti.",
                        "position": 0, "labels": [], "work_in_progress": false, "draft": false,
                        "detailed_merge_status": "checking"}
    }"#;

    // "Merge request events" from the same page, abridged; `action` and `oldrev` varied below.
    const MR_EVENT: &str = r#"{
      "object_kind": "merge_request", "event_type": "merge_request",
      "user": {"id": 1, "name": "Administrator", "username": "root", "email": "admin@example.com"},
      "project": {"id": 1, "name": "Gitlab Test", "web_url": "http://example.com/gitlabhq/gitlab-test",
                  "git_ssh_url": "git@example.com:gitlabhq/gitlab-test.git",
                  "git_http_url": "http://example.com/gitlabhq/gitlab-test.git",
                  "namespace": "GitlabHQ", "visibility_level": 20,
                  "path_with_namespace": "gitlabhq/gitlab-test", "default_branch": "master"},
      "repository": {"name": "Gitlab Test", "url": "http://example.com/gitlabhq/gitlab-test.git"},
      "object_attributes": {"id": 99, "iid": 1, "target_branch": "master", "source_branch": "ms-viewport",
                            "source_project_id": 14, "author_id": 51, "assignee_ids": [6], "reviewer_ids": [6],
                            "title": "MS-Viewport", "created_at": "2013-12-03T17:23:34Z",
                            "updated_at": "2013-12-03T17:23:34Z", "state_id": 1, "state": "opened",
                            "draft": false, "merge_status": "unchecked", "target_project_id": 14,
                            "description": "", "url": "http://example.com/diaspora/merge_requests/1",
                            "last_commit": {"id": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", "message": "fixed readme"},
                            "labels": [], "action": "open", "detailed_merge_status": "mergeable"},
      "labels": [],
      "changes": {}
    }"#;

    fn comment(body: &str) -> Result<Conversion, String> {
        let payload = NOTE_ON_MR.replace("This MR needs work.", body);
        convert_payload("Note Hook", Some("d-1"), payload.as_bytes())
    }

    fn mr_event(replace: &[(&str, &str)]) -> Result<Conversion, String> {
        let payload = replace.iter().fold(MR_EVENT.to_string(), |p, (from, to)| p.replace(from, to));
        convert_payload("Merge Request Hook", Some("d-2"), payload.as_bytes())
    }

    #[test]
    fn a_command_on_a_merge_request_is_a_comment_event() {
        let got = comment("Thanks.\\n\\n/pin api 1.2.3").unwrap();
        let Conversion::Event(WebhookEvent::Comment(c)) = got else { panic!("{got:?}") };
        assert_eq!(c.delivery.as_deref(), Some("d-1"));
        assert_eq!(c.repo, WebhookRepo { full_name: "gitlab-org/gitlab-test".into(), clone_url: "http://example.com/gitlab-org/gitlab-test.git".into() });
        assert_eq!((c.pr, c.comment_id, c.author.as_str()), (1, 1244, "root"));
        assert_eq!((c.action, c.body.as_str()), (CommentAction::Created, "Thanks.\n\n/pin api 1.2.3"));

        let edited = NOTE_ON_MR.replace("This MR needs work.", "/unpin").replace(r#""action": "create""#, r#""action": "update""#);
        let Ok(Conversion::Event(WebhookEvent::Comment(c))) = convert_payload("Note Hook", None, edited.as_bytes()) else { panic!() };
        assert_eq!((c.action, c.delivery), (CommentAction::Edited, None));
        // Before GitLab 16.11 a note payload had no action: a new note.
        let old = NOTE_ON_MR.replace("This MR needs work.", "/help").replace(r#""action": "create","#, "");
        let Ok(Conversion::Event(WebhookEvent::Comment(c))) = convert_payload("Note Hook", None, old.as_bytes()) else { panic!() };
        assert_eq!(c.action, CommentAction::Created);
    }

    #[test]
    fn notes_the_bot_has_nothing_to_do_with_are_ignored() {
        assert!(matches!(comment("This MR needs work.").unwrap(), Conversion::Ignored(r) if r.contains("without a command")));
        let on_issue = NOTE_ON_MR.replace("This MR needs work.", "/pin").replace(r#""noteable_type": "MergeRequest""#, r#""noteable_type": "Issue""#);
        let got = convert_payload("Note Hook", None, on_issue.as_bytes()).unwrap();
        assert!(matches!(&got, Conversion::Ignored(r) if r.contains("Issue")), "{got:?}");
        let system = NOTE_ON_MR.replace("This MR needs work.", "/pin").replace(r#""system": false"#, r#""system": true"#);
        assert!(matches!(convert_payload("Note Hook", None, system.as_bytes()).unwrap(), Conversion::Ignored(r) if r.contains("system")));
        let got = convert_payload("Push Hook", None, br#"{"object_kind": "push"}"#).unwrap();
        assert!(matches!(&got, Conversion::Ignored(r) if r.contains("Push Hook")), "{got:?}");
        assert!(convert_payload("Note Hook", None, b"{}").unwrap_err().contains("Note Hook payload does not parse"));
    }

    /// (case, replacements in the example, action, merged, merge commit)
    type MrCase<'a> = (&'a str, &'a [(&'a str, &'a str)], PrAction, bool, Option<&'a str>);

    #[test]
    fn merge_request_events_as_the_bot_s_pull_request_events() {
        let cases: &[MrCase] = &[
            (
                "merge",
                &[(r#""action": "open""#, r#""action": "merge""#), (r#""state": "opened""#, r#""state": "merged""#),
                  (r#""labels": [], "action""#, r#""labels": [], "merge_commit_sha": "abc123", "action""#)],
                PrAction::Closed,
                true,
                Some("abc123"),
            ),
            ("close", &[(r#""action": "open""#, r#""action": "close""#), (r#""state": "opened""#, r#""state": "closed""#)], PrAction::Closed, false, None),
            ("reopen", &[(r#""action": "open""#, r#""action": "reopen""#)], PrAction::Reopened, false, None),
            (
                "new commits",
                &[(r#""action": "open""#, r#""action": "update", "oldrev": "0ba0fd1c6b2a3e4e5f6a7b8c9d0e1f2a3b4c5d6e""#)],
                PrAction::Synchronize,
                false,
                None,
            ),
        ];
        for (name, replace, action, merged, sha) in cases {
            let got = mr_event(replace).unwrap();
            let Conversion::Event(WebhookEvent::PullRequest(p)) = got else { panic!("case {name}: {got:?}") };
            assert_eq!((p.pr, p.action, p.merged, p.merge_commit_sha.as_deref()), (1, *action, *merged, *sha), "case {name}");
            assert_eq!((p.head_ref.as_str(), p.base_ref.as_str()), ("ms-viewport", "master"), "case {name}");
            assert_eq!(p.repo.full_name, "gitlabhq/gitlab-test", "case {name}");
            assert_eq!(p.delivery.as_deref(), Some("d-2"));
        }
        for (name, action) in [("open", "open"), ("edit", "update"), ("approval", "approved"), ("unknown", "frobnicate")] {
            let got = mr_event(&[(r#""action": "open""#, &format!(r#""action": "{action}""#))]).unwrap();
            assert!(matches!(got, Conversion::Ignored(_)), "case {name}: {got:?}");
        }
    }
}
