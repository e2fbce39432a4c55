//! The traits the engine talks to the world through — [`Forge`], [`Registry`], [`GitRepos`],
//! [`ApplicationSource`], [`Cluster`], [`Clock`] — and their vocabulary: pull requests, comments, access
//! levels, reactions, reviewers, merge methods, snapshots, tag metadata. Drivers
//! (`forge::github`, `forge::local`, ...) implement [`Forge`] and
//! convert their vendor JSON into these types at their edge.

use crate::error::{Error, ErrorKind};
use std::fmt;

use chrono::{DateTime, Utc};

mod apps;
mod clock;
mod cluster;
mod git;
mod registry;

pub use apps::{ApplicationSource, AppsError, AppsOrigin, LocationApps};
pub use clock::{Clock, SystemClock};
pub use cluster::{Cluster, ClusterError, ClusterErrorKind, ClusterKind, ClusterObject, GitCredentialRef, RepoCredential, RepoCredentials, SecretData};
pub use git::{CommitInfo, GitError, GitRepos, Identity, Lease, PushError, RemoteHeads, Snapshot};
pub use registry::{Registry, RegistryError, RegistryErrorKind, TagMetadata};
pub use crate::domain::{MergeMethod, PrState};

/// A repository on a forge, derived from an Application's `repoURL`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoRef {
    /// The URL exactly as the Application names it (what git fetches).
    pub url: String,
    /// Host of the forge (`github.com`, `ghe.example.com`); empty for local paths.
    pub host: String,
    /// `owner/name` on the forge (GitLab: the full group path); for local repositories the path.
    pub slug: String,
}

impl RepoRef {
    /// Derives host and `owner/name` from https, ssh (`ssh://git@host/o/r.git`), scp-like
    /// (`git@host:o/r.git`) and `file://` URLs. `None` when the URL has no path.
    pub fn from_url(url: &str) -> Option<RepoRef> {
        let trimmed = url.trim().trim_end_matches('/');
        let (host, path) = if let Some(rest) = trimmed.strip_prefix("file://") {
            (String::new(), rest.to_string())
        } else if let Some((_, rest)) = trimmed.split_once("://") {
            let (authority, path) = rest.split_once('/')?;
            let host = authority.rsplit_once('@').map(|(_, h)| h).unwrap_or(authority);
            let host = host.split(':').next().unwrap_or(host).to_string();
            (host, path.to_string())
        } else if let Some((left, path)) = trimmed.split_once(':').filter(|(l, _)| !l.contains('/')) {
            let host = left.rsplit_once('@').map(|(_, h)| h).unwrap_or(left).to_string();
            (host, path.to_string())
        } else if trimmed.starts_with('/') {
            (String::new(), trimmed.to_string())
        } else {
            return None;
        };
        let slug = if host.is_empty() {
            path
        } else {
            path.trim_start_matches('/').trim_end_matches(".git").to_string()
        };
        if slug.is_empty() {
            return None;
        }
        Some(RepoRef { url: url.to_string(), host, slug })
    }

    /// `owner` and `name` of a two-part slug (GitHub).
    pub fn owner_name(&self) -> Option<(&str, &str)> {
        let (owner, name) = self.slug.split_once('/')?;
        if owner.is_empty() || name.is_empty() || name.contains('/') {
            return None;
        }
        Some((owner, name))
    }
}

impl fmt::Display for RepoRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.is_empty() { write!(f, "{}", self.slug) } else { write!(f, "{}/{}", self.host, self.slug) }
    }
}

/// A pull request (GitLab: merge request) as the bot sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PullRequest {
    pub number: u64,
    /// Login of who opened it: for the bot's pull requests, the bot itself. Its comments on the
    /// PR are the bot's; a marker in a body proves nothing (anyone can write one).
    #[serde(default)]
    pub author: String,
    /// Link for people.
    pub url: String,
    pub title: String,
    pub body: String,
    /// Branch the changes are on.
    pub head: String,
    /// Commit the head branch pointed to when the forge answered.
    pub head_sha: String,
    /// Branch the PR merges into.
    pub base: String,
    pub state: PrState,
    pub draft: bool,
    pub labels: Vec<String>,
    pub requested_reviewers: Vec<String>,
    pub requested_teams: Vec<String>,
    pub assignees: Vec<String>,
    pub auto_merge: bool,
    /// For merged PRs: the commit that landed on the base.
    pub merge_commit_sha: Option<String>,
    pub updated_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
}

/// What the bot asks for when it opens a pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPullRequest {
    pub title: String,
    pub body: String,
    pub head: String,
    pub base: String,
    pub draft: bool,
}

/// Fields to change on an existing pull request; `None` leaves a field alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrUpdate {
    pub title: Option<String>,
    pub body: Option<String>,
    /// `Open` reopens, `Closed` closes (never `Merged`).
    pub state: Option<PrState>,
}

/// What people call the bot's change requests on a forge, and the access its commands need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForgeWords {
    /// `pull request`; GitLab: `merge request`.
    pub request: &'static str,
    /// Who may command the bot: `write access to the repository`.
    pub access: &'static str,
}

impl Default for ForgeWords {
    fn default() -> Self {
        ForgeWords { request: "pull request", access: "write access to the repository" }
    }
}

/// A comment on a pull request's conversation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Comment {
    pub id: u64,
    /// The pull request (GitHub: issue) it is on.
    #[serde(default)]
    pub pr: u64,
    pub author: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub url: String,
}

/// A person's access to a repository, as a ladder of the bot's own: each driver maps its
/// forge's roles onto it (GitHub: `triage` is [`AccessLevel::Read`], it cannot push; the local
/// forge: the same names as GitHub's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AccessLevel {
    /// No access, or not a member at all.
    None,
    /// May read and discuss, not change the code.
    Read,
    /// May push to branches of the repository.
    Write,
    /// May also manage the repository's settings short of the destructive ones.
    Maintain,
    Admin,
}

impl AccessLevel {
    /// Whether comment commands from this person are obeyed.
    pub fn can_write(self) -> bool {
        self >= AccessLevel::Write
    }
}

/// How the bot acknowledges a comment command it read. Each driver names them in its forge's
/// terms (GitHub: `+1`, `confused`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaction {
    /// Every command of the comment was understood and allowed.
    ThumbsUp,
    /// Something in the comment was not (a typo, no permission, a closed pull request...).
    Confused,
}

/// Someone on the forge a review can be asked of, by their handle there.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reviewer {
    /// A person's login.
    User(String),
    /// A team (GitHub: its slug in the repository's organisation).
    Team(String),
}

impl Reviewer {
    /// Users first, then teams, in the order given.
    pub fn users_and_teams(users: &[String], teams: &[String]) -> Vec<Reviewer> {
        users.iter().cloned().map(Reviewer::User).chain(teams.iter().cloned().map(Reviewer::Team)).collect()
    }
}

/// Where and how to push the bot's branches for a repository.
#[derive(Clone, PartialEq, Eq)]
pub struct PushTarget {
    pub url: String,
    /// HTTP basic credentials for https remotes (`x-access-token` + token on GitHub).
    pub username: Option<String>,
    pub password: Option<String>,
}

impl fmt::Debug for PushTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushTarget")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForgeErrorKind {
    NotFound,
    /// The request conflicts with the current state (PR already exists, branch moved...).
    Conflict,
    Unauthorized,
    /// Rate limited and the wait would be too long.
    RateLimited,
    Network,
    /// The forge answered something we do not understand.
    Protocol,
    /// The forge's server lacks the feature (auto-merge, team reviewers...). Like any forge
    /// error of a step, the engine reports it with the Application and the run goes on.
    Unsupported,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{forge} {repo}: {message}")]
pub struct ForgeError {
    pub forge: &'static str,
    pub repo: String,
    pub kind: ForgeErrorKind,
    pub message: String,
}

/// A forge: pull requests, comments, labels, permissions and branches of one kind of server.
/// Methods take the repository they act on; implementations keep their own auth and clients.
pub trait Forge: Send + Sync {
    /// `github`, `gitlab`, `local`.
    fn kind(&self) -> &'static str;

    /// How this forge names what the bot's texts talk about in `repo` (template variable `forge`).
    fn words(&self, _repo: &RepoRef) -> ForgeWords {
        ForgeWords::default()
    }

    /// Where to push branches of `repo`, with the credentials git needs as far as they are known
    /// without asking the forge (a GitHub App's cached installation token may be missing or old:
    /// use [`Forge::authorized_push_target`] right before a push).
    fn push_target(&self, repo: &RepoRef) -> PushTarget;

    /// Like [`Forge::push_target`], but with credentials that stay valid for the next minutes,
    /// minting or refreshing a token when the forge needs one (GitHub App installation tokens).
    fn authorized_push_target(&self, repo: &RepoRef) -> impl Future<Output = Result<PushTarget, ForgeError>> + Send {
        let target = self.push_target(repo);
        async move { Ok(target) }
    }

    fn default_branch(&self, repo: &RepoRef) -> impl Future<Output = Result<String, ForgeError>> + Send;

    /// The bot's pull requests in `repo` (head branch starting with `head_prefix`), open and
    /// closed, newest first. One listing per repository per cycle.
    fn list_pull_requests(
        &self,
        repo: &RepoRef,
        head_prefix: &str,
    ) -> impl Future<Output = Result<Vec<PullRequest>, ForgeError>> + Send;

    fn create_pull_request(
        &self,
        repo: &RepoRef,
        pr: &NewPullRequest,
    ) -> impl Future<Output = Result<PullRequest, ForgeError>> + Send;

    fn update_pull_request(
        &self,
        repo: &RepoRef,
        number: u64,
        update: &PrUpdate,
    ) -> impl Future<Output = Result<PullRequest, ForgeError>> + Send;

    fn list_comments(&self, repo: &RepoRef, number: u64) -> impl Future<Output = Result<Vec<Comment>, ForgeError>> + Send;

    /// Every comment on any pull request of `repo` created or edited at or after `since`
    /// (all of them with `None`): one listing per repository per cycle, however many PRs.
    fn list_repo_comments(
        &self,
        repo: &RepoRef,
        since: Option<DateTime<Utc>>,
    ) -> impl Future<Output = Result<Vec<Comment>, ForgeError>> + Send;

    fn create_comment(
        &self,
        repo: &RepoRef,
        number: u64,
        body: &str,
    ) -> impl Future<Output = Result<Comment, ForgeError>> + Send;

    fn add_labels(&self, repo: &RepoRef, number: u64, labels: &[String]) -> impl Future<Output = Result<(), ForgeError>> + Send;

    /// Asks people and teams for a review; those already asked stay asked.
    fn request_reviewers(
        &self,
        repo: &RepoRef,
        number: u64,
        reviewers: &[Reviewer],
    ) -> impl Future<Output = Result<(), ForgeError>> + Send;

    fn add_assignees(&self, repo: &RepoRef, number: u64, users: &[String]) -> impl Future<Output = Result<(), ForgeError>> + Send;

    /// Turns on the forge's auto-merge for the pull request.
    fn enable_auto_merge(
        &self,
        repo: &RepoRef,
        number: u64,
        method: MergeMethod,
    ) -> impl Future<Output = Result<(), ForgeError>> + Send;

    /// Deletes a branch; a branch that is already gone is success.
    fn delete_branch(&self, repo: &RepoRef, branch: &str) -> impl Future<Output = Result<(), ForgeError>> + Send;

    /// The person's access to the repository (for comment commands).
    fn access_level(&self, repo: &RepoRef, user: &str) -> impl Future<Output = Result<AccessLevel, ForgeError>> + Send;

    /// Acknowledges comment `comment_id` on pull request `number` with a reaction.
    fn add_reaction(
        &self,
        repo: &RepoRef,
        number: u64,
        comment_id: u64,
        reaction: Reaction,
    ) -> impl Future<Output = Result<(), ForgeError>> + Send;
}


impl From<ForgeError> for Error {
    fn from(e: ForgeError) -> Error {
        let kind = match e.kind {
            ForgeErrorKind::NotFound => ErrorKind::NotFound,
            // 409/422 that reached the report: the engine already adopted what it could (an
            // existing pull request); what is left is a refusal (auto-merge not allowed,
            // reviewers who are not collaborators).
            ForgeErrorKind::Conflict => ErrorKind::Refused,
            ForgeErrorKind::Unauthorized => ErrorKind::Auth,
            ForgeErrorKind::RateLimited => ErrorKind::RateLimited,
            ForgeErrorKind::Network => ErrorKind::Network,
            ForgeErrorKind::Protocol => ErrorKind::Protocol,
            ForgeErrorKind::Unsupported => ErrorKind::Unsupported,
        };
        Error::new(kind, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_refs_from_every_url_form() {
        let cases = [
            ("https github", "https://github.com/org/gitops.git", "github.com", "org/gitops"),
            ("https no suffix", "https://github.com/org/gitops", "github.com", "org/gitops"),
            ("https trailing slash", "https://github.com/org/gitops/", "github.com", "org/gitops"),
            ("https with user", "https://x-access-token@ghe.example.com/org/gitops.git", "ghe.example.com", "org/gitops"),
            ("https with port", "https://127.0.0.1:8080/org/gitops.git", "127.0.0.1", "org/gitops"),
            ("ssh", "ssh://git@github.com/org/gitops.git", "github.com", "org/gitops"),
            ("ssh with port", "ssh://git@github.com:22/org/gitops.git", "github.com", "org/gitops"),
            ("scp-like", "git@github.com:org/gitops.git", "github.com", "org/gitops"),
            ("gitlab subgroup", "https://gitlab.com/group/sub/gitops.git", "gitlab.com", "group/sub/gitops"),
            ("file", "file:///srv/git/gitops.git", "", "/srv/git/gitops.git"),
            ("local path", "/srv/git/gitops", "", "/srv/git/gitops"),
        ];
        for (name, url, host, slug) in cases {
            let r = RepoRef::from_url(url).unwrap_or_else(|| panic!("case {name}: no RepoRef"));
            assert_eq!((r.host.as_str(), r.slug.as_str()), (host, slug), "case {name}");
        }
        assert!(RepoRef::from_url("https://github.com/").is_none());
        assert!(RepoRef::from_url("gitops").is_none());
        assert_eq!(RepoRef::from_url("git@github.com:org/r.git").unwrap().owner_name(), Some(("org", "r")));
        assert_eq!(RepoRef::from_url("https://gitlab.com/a/b/c").unwrap().owner_name(), None);
    }

    #[test]
    fn write_access_is_write_or_more() {
        assert!(!AccessLevel::None.can_write());
        assert!(!AccessLevel::Read.can_write());
        assert!(AccessLevel::Write.can_write());
        assert!(AccessLevel::Maintain.can_write());
        assert!(AccessLevel::Admin.can_write());
    }

    #[test]
    fn merge_methods_parse_in_any_case_and_round_trip() {
        for m in [MergeMethod::Merge, MergeMethod::Squash, MergeMethod::Rebase] {
            assert_eq!(MergeMethod::parse(m.as_str()), Some(m));
            assert_eq!(MergeMethod::parse(&format!(" {} ", m.as_str().to_uppercase())), Some(m));
        }
        assert_eq!(MergeMethod::parse("yolo"), None);
    }

    #[test]
    fn reviewers_are_users_then_teams() {
        let r = Reviewer::users_and_teams(&["alice".into()], &["sre".into(), "web".into()]);
        assert_eq!(r, [Reviewer::User("alice".into()), Reviewer::Team("sre".into()), Reviewer::Team("web".into())]);
    }
}
