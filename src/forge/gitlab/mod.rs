//! The GitLab driver (gitlab.com and self-managed GitLab): merge requests, notes, labels,
//! reviewers, assignees, auto-merge, emoji reactions, access levels and branches over the REST
//! API v4 (`<server>/api/v4`), with a personal, project or group access token in
//! `PRIVATE-TOKEN`.
//!
//! A small client of our own on reqwest (`client.rs`: rate limits, retries, pages, size caps,
//! error messages); GitLab's JSON and its conversion into the ports' types stay in `json.rs`.
//! A project is named by its URL-encoded full path (`group%2Fsub%2Fproject`), so nothing needs
//! the numeric id. Where GitLab differs from what [`Forge`] promises, the method says so:
//!
//! - **Drafts** are a title prefix on GitLab (`Draft: `): the bot's titles are compared and
//!   written without it, and an update keeps a draft a draft.
//! - **Comments of a project** (`list_repo_comments`): GitLab lists no project's notes, so the
//!   driver reads the project's `commented on` events (one listing, filtered by day) and keeps
//!   the notes on merge requests made at or after `since`; and it skips that listing when the
//!   cycle's merge request listing shows that no note can be new since the last one (`memo.rs`),
//!   so a quiet cycle is one call per project. A note edited later is not listed
//!   again, where GitHub's listing returns an edited comment again (the engine handles a
//!   comment once by its id on both, so this changes what is listed, not what is done).
//! - **Reviewers and assignees** are user ids: each login is looked up (`/users?username=`),
//!   and the merge request's current ones are kept. GitLab has no team reviewers.
//! - **Auto-merge** is GitLab's "merge when checks pass" (formerly "when pipeline succeeds");
//!   the merge method is the project's setting, so `rebase` is not ours to choose.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::http;
use crate::ports::{
    AccessLevel, Comment, Forge, ForgeError, ForgeErrorKind, ForgeWords, MergeMethod, NewPullRequest, PrState, PrUpdate, PullRequest,
    PushTarget, Reaction, RepoRef, Reviewer,
};

mod client;
mod json;
mod memo;
#[cfg(test)]
mod scripted_tests;

use client::{Client, Endpoints, FORGE, Method, Patience, err, status_error};
use json::{GlEvent, GlMember, GlMergeRequest, GlNote, GlProject, GlUser};

/// Everything the driver needs; the usual values come from [`GitlabSettings::new`].
#[derive(Clone)]
pub struct GitlabSettings {
    /// The server, `https://gitlab.example.com` (or its API base `.../api/v4`); gitlab.com when
    /// `None`.
    pub gitlab_url: Option<String>,
    /// A personal, project or group access token with the `api` scope (and `write_repository`
    /// for git over HTTPS). Sent as `PRIVATE-TOKEN`; the git password for user `oauth2`.
    pub token: String,
    /// The longest rate-limit wait the driver sits out; a longer one fails the call.
    pub max_rate_limit_wait: Duration,
    /// Retries of a `GET`, `PUT` or `DELETE` answered 5xx or lost on the network.
    pub server_error_retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub retry_backoff: Duration,
    /// Pages of 100 merge requests `list_pull_requests` reads at most: the listing is
    /// complete, or an error naming the project, never a part of it.
    pub max_mr_pages: usize,
    pub connect_timeout: Duration,
    /// Deadline of one request, its answer included.
    pub read_timeout: Duration,
    /// Accept an `http://` server that is not on a loopback address.
    pub allow_http: bool,
    /// `--cache-dir`: where what the last comment listing of each project saw is kept between
    /// runs (`gitlab/<server URL, `_` for punctuation>/notes.json`), so that a quiet `--once` run skips it too. Without
    /// one it is kept for the life of the process (the daemon's cycles).
    pub cache_dir: Option<PathBuf>,
}

impl GitlabSettings {
    pub fn new(gitlab_url: Option<String>, token: String) -> Self {
        GitlabSettings {
            gitlab_url,
            token,
            max_rate_limit_wait: Duration::from_secs(5 * 60),
            server_error_retries: 2,
            retry_backoff: Duration::from_millis(500),
            max_mr_pages: 200,
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            allow_http: false,
            cache_dir: None,
        }
    }
}

impl fmt::Debug for GitlabSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitlabSettings")
            .field("gitlab_url", &self.gitlab_url)
            .field("token", &"<redacted>")
            .field("max_rate_limit_wait", &self.max_rate_limit_wait)
            .field("server_error_retries", &self.server_error_retries)
            .field("max_mr_pages", &self.max_mr_pages)
            .field("allow_http", &self.allow_http)
            .finish_non_exhaustive()
    }
}

/// Counters for benchmarks and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GitlabStats {
    /// HTTP requests sent (retries included).
    pub requests: u64,
    /// Rate-limited answers that were waited out.
    pub rate_limit_waits: u64,
    /// Requests sent again after a server error or a network failure.
    pub retries: u64,
}

/// Pages of 100 notes of one merge request read at most.
const MAX_NOTE_PAGES: usize = 50;
/// Pages of 100 events of one project's comment listing read at most: it starts the day before
/// the last cycle that wrote a ledger, so it is one page unless the project is very busy.
const MAX_EVENT_PAGES: usize = 100;

/// The GitLab forge driver.
pub struct GitlabForge {
    settings: GitlabSettings,
    client: Client,
    /// `group/project!iid` → whether GitLab has it as a draft, learnt from every merge request
    /// read, so that a new title keeps its `Draft: ` prefix.
    drafts: Mutex<HashMap<String, bool>>,
    /// Per project (`group/project`, lower case): the bot's merge requests (iid → `updated_at`)
    /// in the latest listing.
    listings: Mutex<HashMap<String, memo::Listing>>,
    /// Per project: what its last comment listing saw ([`memo::NotesMemo`]).
    notes: Mutex<HashMap<String, memo::NotesMemo>>,
    /// Where `notes` is kept between runs.
    notes_file: Option<PathBuf>,
}

impl fmt::Debug for GitlabForge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitlabForge").field("api", &self.client.endpoints.api).finish_non_exhaustive()
    }
}

impl GitlabForge {
    pub fn new(mut settings: GitlabSettings) -> Result<GitlabForge, ForgeError> {
        let config_error =
            |message: String| ForgeError { forge: FORGE, repo: String::new(), kind: ForgeErrorKind::Unauthorized, message };
        let endpoints = Endpoints::new(settings.gitlab_url.as_deref(), settings.allow_http).map_err(config_error)?;
        settings.token = settings.token.trim().to_string();
        if settings.token.is_empty() {
            return Err(config_error("the GitLab token is empty".into()));
        }
        let patience = Patience {
            max_rate_limit_wait: settings.max_rate_limit_wait,
            server_error_retries: settings.server_error_retries,
            retry_backoff: settings.retry_backoff,
        };
        let client = Client::new(endpoints, settings.token.clone(), patience, settings.connect_timeout, settings.read_timeout)
            .map_err(config_error)?;
        // One file per server (`https___gitlab_example_com`): a cache directory may serve two.
        let server: String =
            client.endpoints.web.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' }).collect();
        let notes_file = settings.cache_dir.as_ref().map(|d| d.join("gitlab").join(server).join("notes.json"));
        let notes = notes_file.as_deref().and_then(|f| crate::cache_file::load(f, "GitLab comment memo")).unwrap_or_default();
        Ok(GitlabForge {
            settings,
            client,
            drafts: Mutex::new(HashMap::new()),
            listings: Mutex::new(HashMap::new()),
            notes: Mutex::new(notes),
            notes_file,
        })
    }

    pub fn stats(&self) -> GitlabStats {
        GitlabStats {
            requests: self.client.requests.load(Ordering::Relaxed),
            rate_limit_waits: self.client.rate_limit_waits.load(Ordering::Relaxed),
            retries: self.client.retries.load(Ordering::Relaxed),
        }
    }

    /// REST API base URL (`https://gitlab.com/api/v4`).
    pub fn api_url(&self) -> &str {
        &self.client.endpoints.api
    }

    /// The project's full path on this server (`group/sub/project`), or why it has none: a
    /// repository on another server must not be mapped onto a namesake here (nor get the token).
    fn project_slug<'r>(&self, repo: &'r RepoRef) -> Result<&'r str, ForgeError> {
        let endpoints = &self.client.endpoints;
        if !repo.host.eq_ignore_ascii_case(&endpoints.host) {
            return Err(err(
                repo,
                ForgeErrorKind::NotFound,
                format!("{} is not on this GitLab server ({}); it cannot get merge requests here", repo.url, endpoints.web),
            ));
        }
        // `https://example.com/gitlab/group/project.git` on a server with a relative URL root.
        let root = url::Url::parse(&endpoints.web).map(|u| u.path().trim_matches('/').to_string()).unwrap_or_default();
        let slug = repo.slug.as_str();
        let slug = match slug.strip_prefix(root.as_str()).and_then(|s| s.strip_prefix('/')) {
            Some(rest) if !root.is_empty() && repo.url.to_ascii_lowercase().starts_with(&endpoints.web.to_ascii_lowercase()) => rest,
            _ => slug,
        };
        if slug.is_empty() || slug.starts_with('/') || !slug.contains('/') {
            return Err(err(repo, ForgeErrorKind::NotFound, format!("{:?} is not a group/project path of GitLab", repo.slug)));
        }
        Ok(slug)
    }

    /// `/projects/group%2Fsub%2Fproject`.
    fn project(&self, repo: &RepoRef) -> Result<String, ForgeError> {
        Ok(format!("/projects/{}", http::path_segment(self.project_slug(repo)?)))
    }

    fn git_url(&self, repo: &RepoRef) -> Result<String, ForgeError> {
        Ok(format!("{}/{}.git", self.client.endpoints.web, self.project_slug(repo)?))
    }

    /// Where people see a note: `<server>/<project>/-/merge_requests/<iid>#note_<id>`.
    fn note_url(&self, slug: &str, iid: u64, note: u64) -> String {
        format!("{}/{slug}/-/merge_requests/{iid}#note_{note}", self.client.endpoints.web)
    }

    fn remember(&self, repo: &RepoRef, mr: &GlMergeRequest) {
        self.drafts.lock().unwrap().insert(draft_key(repo, mr.iid), mr.is_draft());
    }

    fn to_pull(&self, repo: &RepoRef, mr: GlMergeRequest) -> PullRequest {
        self.remember(repo, &mr);
        mr.into_port()
    }

    async fn merge_request(&self, repo: &RepoRef, iid: u64) -> Result<GlMergeRequest, ForgeError> {
        let action = format!("reading merge request !{iid}");
        let path = format!("{}/merge_requests/{iid}", self.project(repo)?);
        let reply = self.client.send(repo, &action, Method::Get, &path, None).await?;
        let mr: GlMergeRequest = self.client.expect_json(repo, &action, reply)?;
        self.remember(repo, &mr);
        Ok(mr)
    }

    async fn is_draft(&self, repo: &RepoRef, iid: u64) -> Result<bool, ForgeError> {
        if let Some(draft) = self.drafts.lock().unwrap().get(&draft_key(repo, iid)) {
            return Ok(*draft);
        }
        Ok(self.merge_request(repo, iid).await?.is_draft())
    }

    /// A login's user id; `None` when GitLab knows no such user.
    async fn user_id(&self, repo: &RepoRef, username: &str) -> Result<Option<u64>, ForgeError> {
        let action = format!("looking up user {username}");
        let path = format!("/users?username={}", http::path_segment(username));
        let reply = self.client.send(repo, &action, Method::Get, &path, None).await?;
        let users: Vec<GlUser> = self.client.expect_json(repo, &action, reply)?;
        Ok(users.into_iter().find(|u| u.username.eq_ignore_ascii_case(username)).and_then(|u| u.id))
    }

    /// The ids of `usernames`; one GitLab does not know is an error naming it.
    async fn user_ids(&self, repo: &RepoRef, action: &str, usernames: &[String]) -> Result<Vec<u64>, ForgeError> {
        let mut ids = Vec::new();
        for name in usernames {
            match self.user_id(repo, name).await? {
                Some(id) => ids.push(id),
                None => return Err(err(repo, ForgeErrorKind::NotFound, format!("{action}: GitLab has no user {name:?}"))),
            }
        }
        Ok(ids)
    }

    /// Adds users to a merge request's reviewers or assignees (`field`: `reviewer_ids`,
    /// `assignee_ids`), keeping those it has: GitLab's field replaces the whole list.
    async fn add_users(&self, repo: &RepoRef, iid: u64, action: &str, field: &str, usernames: &[String]) -> Result<(), ForgeError> {
        let wanted = self.user_ids(repo, action, usernames).await?;
        let mr = self.merge_request(repo, iid).await?;
        let mut ids = if field == "reviewer_ids" { mr.reviewer_ids() } else { mr.assignee_ids() };
        let before = ids.len();
        for id in wanted {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        if ids.len() == before {
            return Ok(());
        }
        let path = format!("{}/merge_requests/{iid}", self.project(repo)?);
        let mut body = serde_json::Map::new();
        body.insert(field.to_string(), json!(ids));
        let reply = self.client.send(repo, action, Method::Put, &path, Some(&Value::Object(body))).await?;
        let mr: GlMergeRequest = self.client.expect_json(repo, action, reply)?;
        self.remember(repo, &mr);
        Ok(())
    }
}

fn draft_key(repo: &RepoRef, iid: u64) -> String {
    format!("{}!{iid}", repo.slug.to_ascii_lowercase())
}

impl Forge for GitlabForge {
    fn kind(&self) -> &'static str {
        FORGE
    }

    fn words(&self, _repo: &RepoRef) -> ForgeWords {
        ForgeWords { request: "merge request", access: "the Developer role or higher in the project" }
    }

    /// `https://<server>/<group>/<project>.git` as user `oauth2` with the token as password,
    /// whatever form the `repoURL` has (https, ssh, scp-like); a repository on another server
    /// gets its own URL and no credentials.
    fn push_target(&self, repo: &RepoRef) -> PushTarget {
        match self.git_url(repo) {
            Ok(url) => PushTarget { url, username: Some("oauth2".into()), password: Some(self.settings.token.clone()) },
            Err(_) => PushTarget { url: repo.url.clone(), username: None, password: None },
        }
    }

    async fn default_branch(&self, repo: &RepoRef) -> Result<String, ForgeError> {
        let action = "reading the project's default branch";
        let path = self.project(repo)?;
        let reply = self.client.send(repo, action, Method::Get, &path, None).await?;
        let project: GlProject = self.client.expect_json(repo, action, reply)?;
        project.default_branch.filter(|b| !b.is_empty()).ok_or_else(|| {
            err(repo, ForgeErrorKind::NotFound, format!("{action}: the project has none (its repository is empty)"))
        })
    }

    async fn list_pull_requests(&self, repo: &RepoRef, head_prefix: &str) -> Result<Vec<PullRequest>, ForgeError> {
        let action = format!("listing merge requests of branches {head_prefix}*");
        let path = format!("{}/merge_requests?state=all&order_by=updated_at&sort=desc&per_page=100", self.project(repo)?);
        let mrs: Vec<GlMergeRequest> = self.client.get_pages(repo, &action, &path, self.settings.max_mr_pages.max(1)).await?;
        let pulls: Vec<PullRequest> = mrs
            .into_iter()
            .filter(|m| m.in_same_project() && m.source_branch.starts_with(head_prefix))
            .map(|m| self.to_pull(repo, m))
            .collect();
        let seen = pulls.iter().map(|p| (p.number, p.updated_at)).collect();
        self.listings.lock().unwrap().insert(self.project_slug(repo)?.to_ascii_lowercase(), seen);
        Ok(pulls)
    }

    async fn create_pull_request(&self, repo: &RepoRef, pr: &NewPullRequest) -> Result<PullRequest, ForgeError> {
        let action = format!("creating merge request for branch {} into {}", pr.head, pr.base);
        let path = format!("{}/merge_requests", self.project(repo)?);
        let title = if pr.draft { json::draft_title(&pr.title) } else { pr.title.clone() };
        // The bot deletes its branch itself once the merge request is done with it.
        let body = json!({
            "source_branch": pr.head,
            "target_branch": pr.base,
            "title": title,
            "description": pr.body,
            "remove_source_branch": false,
        });
        // GitLab answers 409 when an open merge request exists for the branch: `Conflict`.
        let reply = self.client.send(repo, &action, Method::Post, &path, Some(&body)).await?;
        let mr: GlMergeRequest = self.client.expect_json(repo, &action, reply)?;
        Ok(self.to_pull(repo, mr))
    }

    async fn update_pull_request(&self, repo: &RepoRef, number: u64, update: &PrUpdate) -> Result<PullRequest, ForgeError> {
        let action = format!("updating merge request !{number}");
        let path = format!("{}/merge_requests/{number}", self.project(repo)?);
        let mut body = serde_json::Map::new();
        if let Some(t) = &update.title {
            // A title without GitLab's prefix would mark a draft ready.
            let title = if self.is_draft(repo, number).await? { json::draft_title(t) } else { t.clone() };
            body.insert("title".into(), json!(title));
        }
        if let Some(b) = &update.body {
            body.insert("description".into(), json!(b));
        }
        match update.state {
            Some(PrState::Open) => {
                body.insert("state_event".into(), json!("reopen"));
            }
            Some(PrState::Closed) => {
                body.insert("state_event".into(), json!("close"));
            }
            Some(PrState::Merged) => {
                return Err(err(repo, ForgeErrorKind::Conflict, format!("{action}: a merge request cannot be merged by an update")));
            }
            None => {}
        }
        if body.is_empty() {
            // GitLab refuses an update without a field; nothing to change is the merge request as it is.
            return Ok(self.merge_request(repo, number).await?.into_port());
        }
        let reply = self.client.send(repo, &action, Method::Put, &path, Some(&Value::Object(body))).await?;
        let mr: GlMergeRequest = self.client.expect_json(repo, &action, reply)?;
        let pull = self.to_pull(repo, mr);
        // GitLab answers 200 and leaves the state as it was when it cannot change it (a merge
        // request whose source branch is gone is not reopened): that is a refusal.
        if let Some(wanted) = update.state
            && pull.state != wanted
        {
            let now = match pull.state {
                PrState::Open => "open",
                PrState::Closed => "closed",
                PrState::Merged => "merged",
            };
            let why = if wanted == PrState::Open {
                " (GitLab reopens a merge request only while its source branch exists and no other one is open for it)"
            } else {
                ""
            };
            return Err(err(repo, ForgeErrorKind::Conflict, format!("{action}: GitLab left it {now}{why}")));
        }
        Ok(pull)
    }

    async fn list_comments(&self, repo: &RepoRef, number: u64) -> Result<Vec<Comment>, ForgeError> {
        let action = format!("listing notes of merge request !{number}");
        let slug = self.project_slug(repo)?;
        let path = format!("{}/merge_requests/{number}/notes?sort=asc&order_by=created_at&per_page=100", self.project(repo)?);
        let notes: Vec<GlNote> = self.client.get_pages(repo, &action, &path, MAX_NOTE_PAGES).await?;
        Ok(json::comments_from_notes(notes, number, |id| self.note_url(slug, number, id)))
    }

    /// The project's `commented on` events (`action=commented`; not narrowed by `target_type`,
    /// which names the type `Note` only and so could miss notes GitLab stores as `DiffNote` or
    /// `DiscussionNote`), from the day before `since` (GitLab's `after` excludes its own day),
    /// filtered to notes on merge requests made at or after `since`; or nothing at all when
    /// this cycle's merge request listing shows that the last one still holds (`memo.rs`). See
    /// the module doc for what this listing cannot see (edited notes).
    async fn list_repo_comments(&self, repo: &RepoRef, since: Option<DateTime<Utc>>) -> Result<Vec<Comment>, ForgeError> {
        let action = "listing the project's comments (events)";
        let slug = self.project_slug(repo)?;
        let key = slug.to_ascii_lowercase();
        let listing = self.listings.lock().unwrap().get(&key).cloned();
        if let Some(listing) = &listing
            && let Some(comments) = self.notes.lock().unwrap().get(&key).and_then(|m| m.reuse(since, listing))
        {
            return Ok(comments);
        }
        let mut path = format!("{}/events?action=commented&sort=asc&per_page=100", self.project(repo)?);
        if let Some(s) = since {
            path.push_str(&format!("&after={}", json::events_after(s)));
        }
        let (events, answered_at): (Vec<GlEvent>, _) = self.client.get_pages_dated(repo, action, &path, MAX_EVENT_PAGES).await?;
        let comments = json::comments_from_events(events, since, |iid, id| self.note_url(slug, iid, id));
        if let (Some(listing), Some(listed_at)) = (listing, answered_at) {
            // Only merge requests with a time can vouch for their notes (`reuse` wants them all).
            let updated = listing.into_iter().filter_map(|(iid, u)| Some((iid, u?))).collect();
            let memo = memo::NotesMemo { listed_at, since, updated, comments: comments.clone() };
            let mut notes = self.notes.lock().unwrap();
            notes.insert(key, memo);
            if let Some(file) = &self.notes_file {
                crate::cache_file::save(file, &*notes, "GitLab comment memo");
            }
        }
        Ok(comments)
    }

    async fn create_comment(&self, repo: &RepoRef, number: u64, body: &str) -> Result<Comment, ForgeError> {
        let action = format!("commenting on merge request !{number}");
        let slug = self.project_slug(repo)?;
        let path = format!("{}/merge_requests/{number}/notes", self.project(repo)?);
        let reply = self.client.send(repo, &action, Method::Post, &path, Some(&json!({"body": body}))).await?;
        let note: GlNote = self.client.expect_json(repo, &action, reply)?;
        let url = self.note_url(slug, number, note.id);
        Ok(note.into_comment(number, url))
    }

    async fn add_labels(&self, repo: &RepoRef, number: u64, labels: &[String]) -> Result<(), ForgeError> {
        if labels.is_empty() {
            return Ok(());
        }
        let action = format!("adding labels {} to merge request !{number}", labels.join(", "));
        let path = format!("{}/merge_requests/{number}", self.project(repo)?);
        let reply = self.client.send(repo, &action, Method::Put, &path, Some(&json!({"add_labels": labels.join(",")}))).await?;
        let mr: GlMergeRequest = self.client.expect_json(repo, &action, reply)?;
        self.remember(repo, &mr);
        Ok(())
    }

    /// People are added to the reviewers; a team cannot be (GitLab has none), which is an
    /// `Unsupported` error after the people were asked.
    async fn request_reviewers(&self, repo: &RepoRef, number: u64, reviewers: &[Reviewer]) -> Result<(), ForgeError> {
        let (mut users, mut teams) = (Vec::new(), Vec::new());
        for r in reviewers {
            match r {
                Reviewer::User(login) => users.push(login.clone()),
                Reviewer::Team(team) => teams.push(team.clone()),
            }
        }
        if !users.is_empty() {
            let action = format!("requesting reviews from {} on merge request !{number}", users.join(", "));
            self.add_users(repo, number, &action, "reviewer_ids", &users).await?;
        }
        if !teams.is_empty() {
            return Err(err(
                repo,
                ForgeErrorKind::Unsupported,
                format!(
                    "requesting reviews from team {} on merge request !{number}: GitLab has no team reviewers; \
                     name the people in reviewers instead of teamReviewers",
                    teams.join(", team ")
                ),
            ));
        }
        Ok(())
    }

    async fn add_assignees(&self, repo: &RepoRef, number: u64, users: &[String]) -> Result<(), ForgeError> {
        if users.is_empty() {
            return Ok(());
        }
        let action = format!("assigning {} to merge request !{number}", users.join(", "));
        self.add_users(repo, number, &action, "assignee_ids", users).await
    }

    /// `PUT .../merge_requests/:iid/merge` with `auto_merge: true` (GitLab 17.11 and later) and
    /// `merge_when_pipeline_succeeds: true` (its older name, deprecated but still read; GitLab
    /// takes either and ignores a parameter it does not know, so one request serves old and new
    /// servers). When the checks have already passed, GitLab merges at once.
    async fn enable_auto_merge(&self, repo: &RepoRef, number: u64, method: MergeMethod) -> Result<(), ForgeError> {
        let action = format!("enabling auto-merge ({}) on merge request !{number}", method.as_str());
        if method == MergeMethod::Rebase {
            return Err(err(
                repo,
                ForgeErrorKind::Unsupported,
                format!(
                    "{action}: GitLab has no rebase merge for one merge request; its merge method (merge commit, \
                     semi-linear, fast-forward) is a project setting: use autoMerge merge or squash"
                ),
            ));
        }
        let path = format!("{}/merge_requests/{number}/merge", self.project(repo)?);
        let body = json!({
            "auto_merge": true,
            "merge_when_pipeline_succeeds": true,
            "squash": method == MergeMethod::Squash,
        });
        let reply = self.client.send(repo, &action, Method::Put, &path, Some(&body)).await?;
        if reply.status == 405 || reply.status == 406 {
            // Not mergeable now and nothing to wait for (no pipeline yet, a conflict, a draft):
            // a later cycle asks again while the merge request lacks auto-merge.
            let mut e = status_error(repo, &action, &reply);
            e.kind = ForgeErrorKind::Conflict;
            e.message.push_str(" (GitLab cannot set auto-merge now: no pipeline to wait for yet, or the merge request cannot be merged)");
            return Err(e);
        }
        let mr: GlMergeRequest = self.client.expect_json(repo, &action, reply)?;
        self.remember(repo, &mr);
        Ok(())
    }

    async fn delete_branch(&self, repo: &RepoRef, branch: &str) -> Result<(), ForgeError> {
        let action = format!("deleting branch {branch}");
        // The branch is one path segment: its slashes are encoded.
        let path = format!("{}/repository/branches/{}", self.project(repo)?, http::path_segment(branch));
        let reply = self.client.send(repo, &action, Method::Delete, &path, None).await?;
        if reply.status == 404 { Ok(()) } else { self.client.expect_ok(repo, &action, reply) }
    }

    /// Developer (30) and up can push: see `json::access_level_from`. Someone GitLab does not
    /// know, or who is not a member of the project (directly or through its groups), has none.
    async fn access_level(&self, repo: &RepoRef, user: &str) -> Result<AccessLevel, ForgeError> {
        let Some(id) = self.user_id(repo, user).await? else { return Ok(AccessLevel::None) };
        let action = format!("reading {user}'s access level");
        let path = format!("{}/members/all/{id}", self.project(repo)?);
        let reply = self.client.send(repo, &action, Method::Get, &path, None).await?;
        if reply.status == 404 {
            return Ok(AccessLevel::None);
        }
        let member: GlMember = self.client.expect_json(repo, &action, reply)?;
        Ok(json::access_level_from(member.access_level))
    }

    async fn add_reaction(&self, repo: &RepoRef, number: u64, comment_id: u64, reaction: Reaction) -> Result<(), ForgeError> {
        let name = match reaction {
            Reaction::ThumbsUp => "thumbsup",
            Reaction::Confused => "confused",
        };
        let action = format!("reacting {name} to note {comment_id} of merge request !{number}");
        let path = format!("{}/merge_requests/{number}/notes/{comment_id}/award_emoji", self.project(repo)?);
        let reply = self.client.send(repo, &action, Method::Post, &path, Some(&json!({"name": name}))).await?;
        if already_awarded(reply.status, &reply.body) {
            return Ok(());
        }
        self.client.expect_ok(repo, &action, reply)
    }
}

/// GitLab refuses an emoji the bot already gave with `404 Award Emoji Name has already been
/// taken` (the emoji API answers every failure 404); a `409` means the same.
fn already_awarded(status: u16, body: &str) -> bool {
    status == 409 || (status == 404 && client::gitlab_message(body).to_ascii_lowercase().contains("already"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forge(url: Option<&str>) -> GitlabForge {
        GitlabForge::new(GitlabSettings::new(url.map(str::to_string), "glpat-secret".into())).unwrap()
    }

    #[test]
    fn projects_are_named_by_their_encoded_full_path() {
        let f = forge(Some("https://gitlab.example.com"));
        let cases = [
            ("https subgroup", "https://gitlab.example.com/group/sub/project.git", "/projects/group%2Fsub%2Fproject"),
            ("https", "https://gitlab.example.com/group/project", "/projects/group%2Fproject"),
            ("ssh", "ssh://git@gitlab.example.com/group/sub/project.git", "/projects/group%2Fsub%2Fproject"),
            ("scp-like", "git@gitlab.example.com:group/project.git", "/projects/group%2Fproject"),
            ("host case", "https://GitLab.Example.com/group/my.project", "/projects/group%2Fmy.project"),
        ];
        for (name, url, want) in cases {
            let repo = RepoRef::from_url(url).unwrap();
            assert_eq!(f.project(&repo).unwrap(), want, "case {name}");
        }
    }

    #[test]
    fn a_repository_elsewhere_gets_neither_api_calls_nor_the_token() {
        let f = forge(Some("https://gitlab.example.com"));
        for url in ["https://github.com/org/gitops.git", "https://gitlab.com/group/project.git", "file:///srv/git/gitops.git"] {
            let repo = RepoRef::from_url(url).unwrap();
            let e = f.project(&repo).unwrap_err();
            assert!(e.message.contains(url) && e.message.contains("not on this GitLab server"), "{e}");
            let target = f.push_target(&repo);
            assert_eq!((target.url.as_str(), target.username, target.password), (url, None, None), "case {url}");
        }
        let single = RepoRef::from_url("https://gitlab.example.com/project").unwrap();
        assert!(f.project(&single).unwrap_err().message.contains("not a group/project path"));
    }

    #[test]
    fn git_goes_over_https_as_oauth2_with_the_token() {
        let f = forge(None);
        let repo = RepoRef::from_url("git@gitlab.com:group/sub/project.git").unwrap();
        let target = f.push_target(&repo);
        assert_eq!(target.url, "https://gitlab.com/group/sub/project.git");
        assert_eq!((target.username.as_deref(), target.password.as_deref()), (Some("oauth2"), Some("glpat-secret")));
        assert!(!format!("{target:?}").contains("glpat-secret"));
    }

    #[test]
    fn a_relative_url_root_is_not_part_of_the_project_path() {
        let f = forge(Some("https://example.com/gitlab"));
        let repo = RepoRef::from_url("https://example.com/gitlab/group/project.git").unwrap();
        assert_eq!(f.project(&repo).unwrap(), "/projects/group%2Fproject");
        assert_eq!(f.push_target(&repo).url, "https://example.com/gitlab/group/project.git");
        assert_eq!(f.note_url("group/project", 4, 9), "https://example.com/gitlab/group/project/-/merge_requests/4#note_9");
        // Over ssh the path has no URL root.
        let ssh = RepoRef::from_url("git@example.com:gitlab/project.git").unwrap();
        assert_eq!(f.project(&ssh).unwrap(), "/projects/gitlab%2Fproject");
    }

    #[test]
    fn the_token_is_required_and_never_printed() {
        let e = GitlabForge::new(GitlabSettings::new(None, " \n".into())).unwrap_err();
        assert!(e.message.contains("token is empty"), "{e}");
        let settings = GitlabSettings::new(None, "glpat-secret".into());
        assert!(!format!("{settings:?}").contains("glpat-secret"));
        assert!(!format!("{:?}", forge(None)).contains("glpat-secret"));
        let e = GitlabForge::new(GitlabSettings::new(Some("http://gitlab.example.com".into()), "t".into())).unwrap_err();
        assert!(e.message.contains("--gitlab-allow-http"), "{e}");
    }

    #[test]
    fn an_emoji_given_before_counts_as_given() {
        assert!(already_awarded(404, r#"{"message":"404 Award Emoji Name has already been taken"}"#));
        assert!(already_awarded(409, ""));
        assert!(!already_awarded(404, r#"{"message":"404 Not found"}"#), "a missing note is an error");
        assert!(!already_awarded(201, "{}"));
    }
}
