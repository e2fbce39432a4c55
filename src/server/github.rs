//! GitHub's webhooks (`POST /webhooks/github`): a delivery is verified by its
//! `X-Hub-Signature-256`, named by `X-GitHub-Event` and `X-GitHub-Delivery`, and its payload is
//! converted into the bot's own [`WebhookEvent`] here, at the edge: nothing past this file sees
//! GitHub's JSON. Pure.

use super::header_text as header;
use axum::http::HeaderMap;
use serde::Deserialize;
use serde::de::IgnoredAny;

use super::event::{CommentAction, CommentEvent, Conversion, PrAction, PullRequestEvent, WebhookEvent, WebhookRepo};
use super::{Dialect, WebhookSecret, signature};

/// GitHub and GitHub Enterprise Server deliveries.
pub(super) struct Github;

impl Dialect for Github {
    fn event_label(headers: &HeaderMap) -> &'static str {
        match header(headers, "x-github-event") {
            Some("issue_comment") => "issue_comment",
            Some("pull_request") => "pull_request",
            Some("ping") => "ping",
            Some(_) => "other",
            None => "none",
        }
    }

    fn delivery_id(headers: &HeaderMap) -> Option<&str> {
        header(headers, "x-github-delivery")
    }

    fn verify(secret: &WebhookSecret, headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
        let signature = headers.get("x-hub-signature-256").map(|v| v.as_bytes());
        signature::verify(secret, signature, body).map_err(|e| e.to_string())
    }

    fn event(headers: &HeaderMap) -> Result<&str, String> {
        header(headers, "x-github-event").ok_or_else(|| "no X-GitHub-Event header".to_string())
    }

    fn is_ping(event: &str) -> bool {
        event == "ping"
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
        "issue_comment" => {
            let action = action(event, body)?;
            let action = match action.as_deref() {
                Some("created") => CommentAction::Created,
                Some("edited") => CommentAction::Edited,
                other => return Ok(ignored(event, other)),
            };
            let p: IssueCommentPayload = parse(event, body)?;
            if p.issue.pull_request.is_none() {
                return Ok(Conversion::Ignored(format!(
                    "issue_comment on issue #{}, not a pull request",
                    p.issue.number
                )));
            }
            if p.comment.user.kind.as_deref() == Some("Bot") {
                return Ok(Conversion::Ignored(format!("issue_comment by bot {}", p.comment.user.login)));
            }
            let body = p.comment.body.unwrap_or_default();
            if crate::commands::parse_comment(&body).is_empty() {
                return Ok(Conversion::Ignored("issue_comment without a command".to_string()));
            }
            Ok(Conversion::Event(WebhookEvent::Comment(CommentEvent {
                delivery,
                repo: p.repository.into(),
                pr: p.issue.number,
                action,
                comment_id: p.comment.id,
                body,
                author: p.comment.user.login,
            })))
        }
        "pull_request" => {
            let action = action(event, body)?;
            let action = match action.as_deref() {
                Some("closed") => PrAction::Closed,
                Some("reopened") => PrAction::Reopened,
                Some("synchronize") => PrAction::Synchronize,
                other => return Ok(ignored(event, other)),
            };
            let p: PullRequestPayload = parse(event, body)?;
            Ok(Conversion::Event(WebhookEvent::PullRequest(PullRequestEvent {
                delivery,
                repo: p.repository.into(),
                pr: p.number,
                action,
                head_ref: p.pull_request.head.name,
                base_ref: p.pull_request.base.name,
                merged: p.pull_request.merged.unwrap_or(false),
                merge_commit_sha: p.pull_request.merge_commit_sha.filter(|_| p.pull_request.merged == Some(true)),
            })))
        }
        other => Ok(Conversion::Ignored(format!("event {other:?} is not one the bot acts on"))),
    }
}

fn ignored(event: &str, action: Option<&str>) -> Conversion {
    Conversion::Ignored(format!("{event} action {:?} is not one the bot acts on", action.unwrap_or("")))
}

/// The `action` alone, so that an action we ignore never fails on fields we do not need.
fn action(event: &str, body: &[u8]) -> Result<Option<String>, String> {
    #[derive(Deserialize)]
    struct Action {
        action: Option<String>,
    }
    Ok(parse::<Action>(event, body)?.action)
}

fn parse<'a, T: Deserialize<'a>>(event: &str, body: &'a [u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("{event} payload does not parse: {e}"))
}

#[derive(Deserialize)]
struct IssueCommentPayload {
    issue: Issue,
    comment: GhComment,
    repository: GhRepository,
}

#[derive(Deserialize)]
struct Issue {
    number: u64,
    /// Present (an object of links) only when the issue is a pull request.
    #[serde(default)]
    pull_request: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct GhComment {
    id: u64,
    #[serde(default)]
    body: Option<String>,
    user: GhUser,
}

#[derive(Deserialize)]
struct GhUser {
    login: String,
    /// `User`, `Bot` or `Organization`.
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct GhRepository {
    full_name: String,
    clone_url: String,
}

impl From<GhRepository> for WebhookRepo {
    fn from(r: GhRepository) -> Self {
        WebhookRepo { full_name: r.full_name, clone_url: r.clone_url }
    }
}

#[derive(Deserialize)]
struct PullRequestPayload {
    number: u64,
    pull_request: GhPull,
    repository: GhRepository,
}

#[derive(Deserialize)]
struct GhPull {
    head: GhRef,
    base: GhRef,
    #[serde(default)]
    merged: Option<bool>,
    #[serde(default)]
    merge_commit_sha: Option<String>,
}

#[derive(Deserialize)]
struct GhRef {
    #[serde(rename = "ref")]
    name: String,
}
