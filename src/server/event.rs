//! GitHub webhook payloads → the bot's own [`WebhookEvent`], at the edge: nothing past this file
//! sees GitHub's JSON. Pure.

use serde::Deserialize;
use serde::de::IgnoredAny;

/// Something on a forge the engine should look at now rather than at its next cycle. The engine
/// still reads the pull request from the forge before acting: an event says where to look, the
/// forge says what is true.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookEvent {
    /// A comment on a pull request with at least one line that is (or looks like) a command.
    Comment(CommentEvent),
    /// A pull request was closed (merged or not), reopened, or got new commits.
    PullRequest(PullRequestEvent),
}

impl WebhookEvent {
    pub fn repo(&self) -> &WebhookRepo {
        match self {
            WebhookEvent::Comment(c) => &c.repo,
            WebhookEvent::PullRequest(p) => &p.repo,
        }
    }

    pub fn pr(&self) -> u64 {
        match self {
            WebhookEvent::Comment(c) => c.pr,
            WebhookEvent::PullRequest(p) => p.pr,
        }
    }
}

/// The repository an event happened in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRepo {
    /// `owner/name`.
    pub full_name: String,
    /// `https://github.com/owner/name.git` (on GHES, the instance's host).
    pub clone_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentEvent {
    /// `X-GitHub-Delivery`, for logs and to recognise redeliveries.
    pub delivery: Option<String>,
    pub repo: WebhookRepo,
    /// The pull request's number. GitHub's comment payload does not say its head branch: the
    /// engine reads the pull request to know whether it is one of the bot's.
    pub pr: u64,
    pub action: CommentAction,
    pub comment_id: u64,
    pub body: String,
    /// Login of the commenter; whether they may command the bot is for the engine to ask.
    pub author: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommentAction {
    Created,
    Edited,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequestEvent {
    /// `X-GitHub-Delivery`.
    pub delivery: Option<String>,
    pub repo: WebhookRepo,
    pub pr: u64,
    pub action: PrAction,
    /// Branch the changes are on; the bot's pull requests have its branch prefix.
    pub head_ref: String,
    /// Branch the pull request merges into.
    pub base_ref: String,
    /// For `Closed`: whether it was merged (false: closed without merging).
    pub merged: bool,
    /// For a merged pull request, the commit that landed on the base branch.
    pub merge_commit_sha: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrAction {
    Closed,
    Reopened,
    /// New commits on the head branch (the bot's own pushes, or someone else's).
    Synchronize,
}

/// What a delivery amounts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Conversion {
    Event(WebhookEvent),
    /// Nothing for the bot; the reason goes back to GitHub's delivery log.
    Ignored(String),
}

/// Turns a verified delivery into an event. `Err` is a payload that does not parse (a message for
/// the sender).
pub(super) fn convert(event: &str, delivery: Option<&str>, body: &[u8]) -> Result<Conversion, String> {
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
