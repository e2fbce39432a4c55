//! The bot's own webhook events, whatever forge delivered them: each forge's module
//! (`server/github.rs`, `server/gitlab.rs`) converts its payloads into these at the edge, and
//! nothing past it sees the forge's JSON. Pure.

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
    /// `owner/name` (a forge with nested groups: the full path).
    pub full_name: String,
    /// The https clone URL (GitHub: `https://github.com/owner/name.git`, on GHES the instance's
    /// host; GitLab: the project's `git_http_url`).
    pub clone_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentEvent {
    /// The delivery's id (GitHub: `X-GitHub-Delivery`; GitLab: `Idempotency-Key` or
    /// `X-Gitlab-Event-UUID`), for logs and to recognise redeliveries.
    pub delivery: Option<String>,
    pub repo: WebhookRepo,
    /// The pull request's number. A comment payload need not say its head branch (GitHub's does
    /// not): the engine reads the pull request to know whether it is one of the bot's.
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
    /// The delivery's id.
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
    /// Nothing for the bot; the reason goes back to the forge's delivery log.
    Ignored(String),
}
