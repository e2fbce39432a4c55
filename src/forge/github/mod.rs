//! The GitHub driver (github.com and GitHub Enterprise Server): pull requests, comments, labels,
//! reviewers, access levels and branches over the REST API, auto-merge over GraphQL.
//!
//! octocrab carries the requests and the auth header; every call goes through its raw methods
//! with our own small serde structs, because several typed calls are wrong for us (GHES GraphQL
//! URL, `get_contributor_permission`, `request_reviews`) and the typed ones hide the rate-limit
//! headers. GitHub's JSON never leaves this module. A GitHub App's JWT is signed in `app_jwt.rs`,
//! the only code that holds the App's private key (docs/security.md says why its `rsa`
//! dependency's advisory does not reach the bot).
//!
//! Rate limits are waited out (primary: `X-RateLimit-Remaining: 0` until `X-RateLimit-Reset`;
//! secondary: `Retry-After`), up to a cap beyond which the call fails as `RateLimited`.
//! The octocrab clients are built on first use and belong to the tokio runtime that was current
//! then: use one `GithubForge` per runtime.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use octocrab::Octocrab;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::http::{self, StatusKind};
use crate::ports::{
    AccessLevel, Comment, Forge, ForgeError, ForgeErrorKind, MergeMethod, NewPullRequest, PrState, PrUpdate, PullRequest,
    PushTarget, Reaction, RepoRef, Reviewer,
};

mod app_jwt;

use app_jwt::AppKey;

const FORGE: &str = "github";

/// How the bot proves who it is to GitHub.
#[derive(Clone)]
pub enum GithubAuth {
    /// A personal access token (classic or fine-grained) or any token GitHub takes as Bearer.
    Token(String),
    /// A GitHub App: its id and RSA private key (PEM). The bot signs a JWT, finds the
    /// installation of each repository and mints installation tokens, refreshed before expiry.
    App { app_id: u64, private_key_pem: String },
}

impl fmt::Debug for GithubAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GithubAuth::Token(_) => f.write_str("Token(<redacted>)"),
            GithubAuth::App { app_id, .. } => {
                f.debug_struct("App").field("app_id", app_id).field("private_key_pem", &"<redacted>").finish()
            }
        }
    }
}

/// Everything the driver needs; `Default`-like values come from [`GithubSettings::new`].
#[derive(Debug, Clone)]
pub struct GithubSettings {
    /// `None` for github.com; the server's URL (`https://ghe.example.com`) for GitHub Enterprise
    /// Server, whose API is at `/api/v3` and GraphQL at `/api/graphql`.
    pub github_url: Option<String>,
    pub auth: GithubAuth,
    /// The longest rate-limit wait the driver sits out; a longer one fails the call.
    pub max_rate_limit_wait: Duration,
    /// An installation token is replaced when it has less than this left.
    pub token_refresh_margin: Duration,
    /// Pages of 100 pull requests `list_pull_requests` reads at most (newest updated first): the
    /// listing is complete, or an error naming the repository — never a part of it, where a bot
    /// PR beyond the last page read would be opened again or its holds forgotten.
    pub max_pr_pages: usize,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// Accept an `http://` server that is not on a loopback address.
    pub allow_http: bool,
}

impl GithubSettings {
    pub fn new(github_url: Option<String>, auth: GithubAuth) -> Self {
        GithubSettings {
            github_url,
            auth,
            max_rate_limit_wait: Duration::from_secs(15 * 60),
            token_refresh_margin: Duration::from_secs(5 * 60),
            max_pr_pages: 200,
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            allow_http: false,
        }
    }
}

/// Counters for benchmarks and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GithubStats {
    /// HTTP requests sent (retries included).
    pub requests: u64,
    /// Rate-limited answers that were waited out.
    pub rate_limit_waits: u64,
    /// Installation tokens minted.
    pub tokens_minted: u64,
}

/// Where the server answers.
#[derive(Debug, Clone)]
struct Endpoints {
    /// REST base, no trailing slash: `https://api.github.com`, `https://ghe/api/v3`.
    api: String,
    /// octocrab base for GraphQL and the path under it: (`https://api.github.com`, `/graphql`),
    /// (`https://ghe/api`, `/graphql`).
    graphql_base: String,
    /// Git base for `https://host/o/r.git`.
    git: String,
}

impl Endpoints {
    /// `github_url` is the server (`https://ghe.example.com`) or its REST base
    /// (`https://ghe.example.com/api/v3`): both name the same server.
    fn new(github_url: Option<&str>, allow_http: bool) -> Result<Endpoints, String> {
        let url = github_url.map(|u| u.trim().trim_end_matches('/')).filter(|u| !u.is_empty());
        let url = url.map(|u| u.strip_suffix("/api/v3").or_else(|| u.strip_suffix("/api")).unwrap_or(u));
        match url {
            None | Some("https://github.com") | Some("https://api.github.com") => Ok(Endpoints {
                api: "https://api.github.com".into(),
                graphql_base: "https://api.github.com".into(),
                git: "https://github.com".into(),
            }),
            Some(u) => {
                let parsed = url::Url::parse(u).map_err(|e| format!("GitHub URL {u:?}: {e}"))?;
                if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                    return Err(format!("GitHub URL {u:?}: expected http(s)://host"));
                }
                let loopback = crate::domain::is_loopback(parsed.host_str().unwrap_or(""));
                if parsed.scheme() == "http" && !loopback && !allow_http {
                    return Err(format!(
                        "GitHub URL {u:?}: plain http would send the token unencrypted; use https, or pass \
                         --github-allow-http for a server reached only over a trusted network"
                    ));
                }
                Ok(Endpoints { api: format!("{u}/api/v3"), graphql_base: format!("{u}/api"), git: u.to_string() })
            }
        }
    }
}

struct CachedToken {
    token: String,
    expires_at: DateTime<Utc>,
}

struct AppAuth {
    app_id: u64,
    key: AppKey,
    /// `owner/name` (lowercase) → installation id.
    installations: Mutex<HashMap<String, u64>>,
    /// installation id → token.
    tokens: Mutex<HashMap<u64, CachedToken>>,
    /// One mint at a time, so concurrent calls share a fresh token.
    minting: tokio::sync::Mutex<()>,
}

enum Auth {
    Token(String),
    App(AppAuth),
}

/// The GitHub forge driver.
pub struct GithubForge {
    settings: GithubSettings,
    endpoints: Endpoints,
    auth: Auth,
    clients: Mutex<Option<Clients>>,
    /// `owner/name#number` → GraphQL node id, learnt from every pull request read.
    node_ids: Mutex<HashMap<String, String>>,
    requests: AtomicU64,
    rate_limit_waits: AtomicU64,
    tokens_minted: AtomicU64,
}

impl fmt::Debug for GithubForge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GithubForge")
            .field("api", &self.endpoints.api)
            .field("auth", &self.settings.auth)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct Clients {
    rest: Octocrab,
    graphql: Octocrab,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Post,
    Patch,
    Delete,
}

#[derive(Clone, Copy)]
enum Api {
    Rest,
    Graphql,
}

#[derive(Clone, Copy)]
enum Credential {
    /// The token for the repository (PAT, or the installation token of its App installation).
    Repo,
    /// The App's own JWT (installation lookup and token minting).
    AppJwt,
}

/// An answer, with the headers the driver reads.
struct Reply {
    status: u16,
    body: String,
    link: Option<String>,
}

impl Reply {
    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl GithubForge {
    pub fn new(settings: GithubSettings) -> Result<GithubForge, ForgeError> {
        let config_error = |message: String| ForgeError {
            forge: FORGE,
            repo: String::new(),
            kind: ForgeErrorKind::Unauthorized,
            message,
        };
        let endpoints = Endpoints::new(settings.github_url.as_deref(), settings.allow_http).map_err(config_error)?;
        let auth = match &settings.auth {
            GithubAuth::Token(t) if t.trim().is_empty() => return Err(config_error("the GitHub token is empty".into())),
            GithubAuth::Token(t) => Auth::Token(t.trim().to_string()),
            GithubAuth::App { app_id, private_key_pem } => {
                let key = AppKey::from_pem(private_key_pem).map_err(|e| {
                    config_error(format!("GitHub App {app_id}: the private key is not an RSA key in PEM form: {e}"))
                })?;
                Auth::App(AppAuth {
                    app_id: *app_id,
                    key,
                    installations: Mutex::new(HashMap::new()),
                    tokens: Mutex::new(HashMap::new()),
                    minting: tokio::sync::Mutex::new(()),
                })
            }
        };
        Ok(GithubForge {
            settings,
            endpoints,
            auth,
            clients: Mutex::new(None),
            node_ids: Mutex::new(HashMap::new()),
            requests: AtomicU64::new(0),
            rate_limit_waits: AtomicU64::new(0),
            tokens_minted: AtomicU64::new(0),
        })
    }

    pub fn stats(&self) -> GithubStats {
        GithubStats {
            requests: self.requests.load(Ordering::Relaxed),
            rate_limit_waits: self.rate_limit_waits.load(Ordering::Relaxed),
            tokens_minted: self.tokens_minted.load(Ordering::Relaxed),
        }
    }

    /// REST API base URL (`https://api.github.com`, `https://ghe.example.com/api/v3`).
    pub fn api_url(&self) -> &str {
        &self.endpoints.api
    }

    fn clients(&self, repo: &RepoRef) -> Result<Clients, ForgeError> {
        let mut guard = self.clients.lock().unwrap();
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let build = |base: &str| {
            Octocrab::builder()
                .base_uri(base)
                .and_then(|b| {
                    b.set_connect_timeout(Some(self.settings.connect_timeout))
                        .set_read_timeout(Some(self.settings.read_timeout))
                        .build()
                })
                .map_err(|e| err(repo, ForgeErrorKind::Network, format!("building the HTTP client for {base}: {e}")))
        };
        let clients = Clients { rest: build(&self.endpoints.api)?, graphql: build(&self.endpoints.graphql_base)? };
        *guard = Some(clients.clone());
        Ok(clients)
    }

    fn owner_name<'r>(&self, repo: &'r RepoRef) -> Result<(&'r str, &'r str), ForgeError> {
        // A repository on another server must not be mapped onto a namesake on this one.
        let own_host = url::Url::parse(&self.endpoints.git).ok().and_then(|u| u.host_str().map(str::to_ascii_lowercase));
        if own_host.as_deref() != Some(repo.host.to_ascii_lowercase().as_str()) {
            return Err(err(
                repo,
                ForgeErrorKind::NotFound,
                format!("{} is not on this GitHub server ({}); it cannot get pull requests here", repo.url, self.endpoints.git),
            ));
        }
        repo.owner_name().ok_or_else(|| {
            err(repo, ForgeErrorKind::NotFound, format!("{:?} is not an owner/name GitHub repository", repo.slug))
        })
    }

    fn repo_path(&self, repo: &RepoRef) -> Result<String, ForgeError> {
        let (owner, name) = self.owner_name(repo)?;
        Ok(format!("/repos/{}/{}", http::path_segment(owner), http::path_segment(name)))
    }

    /// The token to use for `repo` right now, minting an installation token when needed.
    async fn token(&self, repo: &RepoRef, credential: Credential) -> Result<String, ForgeError> {
        match (&self.auth, credential) {
            (Auth::Token(t), _) => Ok(t.clone()),
            (Auth::App(app), Credential::AppJwt) => app
                .key
                .sign(app.app_id)
                .map_err(|e| err(repo, ForgeErrorKind::Unauthorized, format!("signing the GitHub App JWT: {e}"))),
            (Auth::App(app), Credential::Repo) => {
                let installation = self.installation_id(repo, app).await?;
                if let Some(t) = self.cached_token(app, installation) {
                    return Ok(t);
                }
                let _minting = app.minting.lock().await;
                if let Some(t) = self.cached_token(app, installation) {
                    return Ok(t);
                }
                self.mint_token(repo, app, installation).await
            }
        }
    }

    fn cached_token(&self, app: &AppAuth, installation: u64) -> Option<String> {
        let margin = chrono::Duration::from_std(self.settings.token_refresh_margin).unwrap_or_default();
        let tokens = app.tokens.lock().unwrap();
        tokens.get(&installation).filter(|t| t.expires_at - margin > Utc::now()).map(|t| t.token.clone())
    }

    async fn installation_id(&self, repo: &RepoRef, app: &AppAuth) -> Result<u64, ForgeError> {
        let key = repo.slug.to_ascii_lowercase();
        if let Some(id) = app.installations.lock().unwrap().get(&key) {
            return Ok(*id);
        }
        let action = format!("finding the installation of GitHub App {}", app.app_id);
        let path = format!("{}/installation", self.repo_path(repo)?);
        let reply = self.send(repo, &action, Method::Get, Api::Rest, &path, None, Credential::AppJwt).await?;
        #[derive(Deserialize)]
        struct Installation {
            id: u64,
        }
        let installation: Installation = self.expect_json(repo, &action, reply)?;
        app.installations.lock().unwrap().insert(key, installation.id);
        Ok(installation.id)
    }

    async fn mint_token(&self, repo: &RepoRef, app: &AppAuth, installation: u64) -> Result<String, ForgeError> {
        let action = format!("creating an installation token for GitHub App {} (installation {installation})", app.app_id);
        let path = format!("/app/installations/{installation}/access_tokens");
        let reply = self.send(repo, &action, Method::Post, Api::Rest, &path, Some(&json!({})), Credential::AppJwt).await?;
        #[derive(Deserialize)]
        struct Token {
            token: String,
            expires_at: DateTime<Utc>,
        }
        let token: Token = self.expect_json(repo, &action, reply)?;
        self.tokens_minted.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(installation, expires_at = %token.expires_at, "minted a GitHub App installation token");
        app.tokens
            .lock()
            .unwrap()
            .insert(installation, CachedToken { token: token.token.clone(), expires_at: token.expires_at });
        Ok(token.token)
    }

    fn forget_token(&self, repo: &RepoRef) {
        if let Auth::App(app) = &self.auth {
            let key = repo.slug.to_ascii_lowercase();
            if let Some(id) = app.installations.lock().unwrap().get(&key).copied() {
                app.tokens.lock().unwrap().remove(&id);
            }
        }
    }

    /// Sends one request, waiting out rate limits; the reply may still be an error status.
    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        repo: &RepoRef,
        action: &str,
        method: Method,
        api: Api,
        path: &str,
        body: Option<&Value>,
        credential: Credential,
    ) -> Result<Reply, ForgeError> {
        let clients = self.clients(repo)?;
        let base = match api {
            Api::Rest => &clients.rest,
            Api::Graphql => &clients.graphql,
        };
        let mut reauthorized = false;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            // Boxed: minting a token sends a request itself.
            let token = Box::pin(self.token(repo, credential)).await?;
            let crab = base
                .user_access_token(token)
                .map_err(|e| err(repo, ForgeErrorKind::Network, format!("{action}: {e}")))?;
            self.requests.fetch_add(1, Ordering::Relaxed);
            let uri = path.to_string();
            let response = match method {
                Method::Get => crab._get(uri).await,
                Method::Post => crab._post(uri, body).await,
                Method::Patch => crab._patch(uri, body).await,
                Method::Delete => crab._delete(uri, body).await,
            }
            .map_err(|e| err(repo, ForgeErrorKind::Network, format!("{action}: {}", describe_octocrab(&e))))?;
            let status = response.status().as_u16();
            let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
            let link = header("link");
            let retry_after = header("retry-after");
            let remaining = header("x-ratelimit-remaining");
            let reset = header("x-ratelimit-reset");
            let body_text = crab
                .body_to_string(response)
                .await
                .map_err(|e| err(repo, ForgeErrorKind::Network, format!("{action}: reading the answer: {e}")))?;
            let limited = rate_limit_wait(
                status,
                retry_after.as_deref(),
                remaining.as_deref(),
                reset.as_deref(),
                &body_text,
                Utc::now(),
            );
            if let Some(wait) = limited {
                if wait > self.settings.max_rate_limit_wait {
                    return Err(err(
                        repo,
                        ForgeErrorKind::RateLimited,
                        format!(
                            "{action}: rate limited by GitHub for {}s, longer than the {}s the bot waits",
                            wait.as_secs(),
                            self.settings.max_rate_limit_wait.as_secs()
                        ),
                    ));
                }
                if attempt >= 10 {
                    return Err(err(repo, ForgeErrorKind::RateLimited, format!("{action}: still rate limited after {attempt} attempts")));
                }
                self.rate_limit_waits.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(repo = %repo, action, wait_secs = wait.as_secs_f64(), "GitHub rate limit: waiting");
                tokio::time::sleep(wait).await;
                continue;
            }
            if status == 401 && matches!((&self.auth, credential), (Auth::App(_), Credential::Repo)) && !reauthorized {
                // The installation token was revoked or expired early: mint a new one once.
                reauthorized = true;
                self.forget_token(repo);
                continue;
            }
            return Ok(Reply { status, body: body_text, link });
        }
    }

    /// Turns an error status into a `ForgeError`, parses a success body.
    fn expect_json<T: for<'de> Deserialize<'de>>(&self, repo: &RepoRef, action: &str, reply: Reply) -> Result<T, ForgeError> {
        if !reply.ok() {
            return Err(status_error(repo, action, &reply));
        }
        serde_json::from_str(&reply.body).map_err(|e| {
            err(repo, ForgeErrorKind::Protocol, format!("{action}: unexpected answer from GitHub ({e}): {}", excerpt(&reply.body)))
        })
    }

    fn expect_ok(&self, repo: &RepoRef, action: &str, reply: Reply) -> Result<(), ForgeError> {
        if reply.ok() { Ok(()) } else { Err(status_error(repo, action, &reply)) }
    }

    /// Follows `Link: <...>; rel="next"` for at most `max_pages` pages; more pages than that are
    /// an error: a listing read in part would hide pull requests or comments.
    async fn get_pages<T: for<'de> Deserialize<'de>>(
        &self,
        repo: &RepoRef,
        action: &str,
        first: String,
        max_pages: usize,
    ) -> Result<Vec<T>, ForgeError> {
        let mut items = Vec::new();
        let mut next = Some(first);
        let mut pages = 0;
        while let Some(path) = next.take() {
            if pages >= max_pages {
                return Err(err(repo, ForgeErrorKind::Protocol, format!("{action}: more than {max_pages} pages of 100; refusing to read only a part")));
            }
            pages += 1;
            let reply = self.send(repo, action, Method::Get, Api::Rest, &path, None, Credential::Repo).await?;
            let link = reply.link.clone();
            let page: Vec<T> = self.expect_json(repo, action, reply)?;
            items.extend(page);
            if let Some(url) = link.as_deref().and_then(http::next_link) {
                let relative = url.strip_prefix(&self.endpoints.api).filter(|r| r.starts_with('/')).ok_or_else(|| {
                    err(repo, ForgeErrorKind::Protocol, format!("{action}: next page {url} is outside {}", self.endpoints.api))
                })?;
                next = Some(relative.to_string());
            }
        }
        Ok(items)
    }

    fn remember(&self, repo: &RepoRef, pull: &GhPull) {
        self.node_ids.lock().unwrap().insert(format!("{}#{}", repo.slug.to_ascii_lowercase(), pull.number), pull.node_id.clone());
    }

    fn to_pull(&self, repo: &RepoRef, pull: GhPull) -> PullRequest {
        self.remember(repo, &pull);
        pull.into_port()
    }

    async fn node_id(&self, repo: &RepoRef, number: u64) -> Result<String, ForgeError> {
        let key = format!("{}#{number}", repo.slug.to_ascii_lowercase());
        if let Some(id) = self.node_ids.lock().unwrap().get(&key) {
            return Ok(id.clone());
        }
        let action = format!("reading pull request #{number}");
        let path = format!("{}/pulls/{number}", self.repo_path(repo)?);
        let reply = self.send(repo, &action, Method::Get, Api::Rest, &path, None, Credential::Repo).await?;
        let pull: GhPull = self.expect_json(repo, &action, reply)?;
        self.remember(repo, &pull);
        Ok(pull.node_id)
    }

    fn git_url(&self, repo: &RepoRef) -> String {
        match repo.owner_name() {
            Some((owner, name)) => format!("{}/{owner}/{name}.git", self.endpoints.git),
            None => repo.url.clone(),
        }
    }
}

impl Forge for GithubForge {
    fn kind(&self) -> &'static str {
        FORGE
    }

    fn push_target(&self, repo: &RepoRef) -> PushTarget {
        let password = match &self.auth {
            Auth::Token(t) => Some(t.clone()),
            Auth::App(app) => app
                .installations
                .lock()
                .unwrap()
                .get(&repo.slug.to_ascii_lowercase())
                .copied()
                .and_then(|id| self.cached_token(app, id)),
        };
        PushTarget { url: self.git_url(repo), username: Some("x-access-token".into()), password }
    }

    async fn authorized_push_target(&self, repo: &RepoRef) -> Result<PushTarget, ForgeError> {
        let token = self.token(repo, Credential::Repo).await?;
        Ok(PushTarget { url: self.git_url(repo), username: Some("x-access-token".into()), password: Some(token) })
    }

    async fn default_branch(&self, repo: &RepoRef) -> Result<String, ForgeError> {
        let action = "reading the repository's default branch";
        let path = self.repo_path(repo)?;
        let reply = self.send(repo, action, Method::Get, Api::Rest, &path, None, Credential::Repo).await?;
        #[derive(Deserialize)]
        struct Repository {
            default_branch: String,
        }
        let r: Repository = self.expect_json(repo, action, reply)?;
        Ok(r.default_branch)
    }

    async fn list_pull_requests(&self, repo: &RepoRef, head_prefix: &str) -> Result<Vec<PullRequest>, ForgeError> {
        let action = format!("listing pull requests of branches {head_prefix}*");
        let path = format!("{}/pulls?state=all&sort=updated&direction=desc&per_page=100", self.repo_path(repo)?);
        let pulls: Vec<GhPull> = self.get_pages(repo, &action, path, self.settings.max_pr_pages.max(1)).await?;
        let full_name = repo.slug.to_ascii_lowercase();
        let mut out = Vec::new();
        for pull in pulls {
            // Same branch name from a fork is somebody else's pull request, never the bot's.
            let same_repo = pull.head.repo.as_ref().is_some_and(|r| r.full_name.to_ascii_lowercase() == full_name);
            if same_repo && pull.head.ref_.starts_with(head_prefix) {
                out.push(self.to_pull(repo, pull));
            }
        }
        Ok(out)
    }

    async fn create_pull_request(&self, repo: &RepoRef, pr: &NewPullRequest) -> Result<PullRequest, ForgeError> {
        let action = format!("creating pull request for branch {} into {}", pr.head, pr.base);
        let path = format!("{}/pulls", self.repo_path(repo)?);
        let body = json!({"title": pr.title, "body": pr.body, "head": pr.head, "base": pr.base, "draft": pr.draft});
        let reply = self.send(repo, &action, Method::Post, Api::Rest, &path, Some(&body), Credential::Repo).await?;
        let pull: GhPull = self.expect_json(repo, &action, reply)?;
        Ok(self.to_pull(repo, pull))
    }

    async fn update_pull_request(&self, repo: &RepoRef, number: u64, update: &PrUpdate) -> Result<PullRequest, ForgeError> {
        let action = format!("updating pull request #{number}");
        let path = format!("{}/pulls/{number}", self.repo_path(repo)?);
        let mut body = serde_json::Map::new();
        if let Some(t) = &update.title {
            body.insert("title".into(), json!(t));
        }
        if let Some(b) = &update.body {
            body.insert("body".into(), json!(b));
        }
        match update.state {
            Some(PrState::Open) => {
                body.insert("state".into(), json!("open"));
            }
            Some(PrState::Closed) => {
                body.insert("state".into(), json!("closed"));
            }
            Some(PrState::Merged) => {
                return Err(err(repo, ForgeErrorKind::Conflict, format!("{action}: a pull request cannot be merged by an update")));
            }
            None => {}
        }
        let body = Value::Object(body);
        let reply = self.send(repo, &action, Method::Patch, Api::Rest, &path, Some(&body), Credential::Repo).await?;
        let pull: GhPull = self.expect_json(repo, &action, reply)?;
        Ok(self.to_pull(repo, pull))
    }

    async fn list_comments(&self, repo: &RepoRef, number: u64) -> Result<Vec<Comment>, ForgeError> {
        let action = format!("listing comments of pull request #{number}");
        let path = format!("{}/issues/{number}/comments?per_page=100", self.repo_path(repo)?);
        let comments: Vec<GhComment> = self.get_pages(repo, &action, path, 50).await?;
        Ok(comments.into_iter().map(GhComment::into_port).collect())
    }

    async fn list_repo_comments(&self, repo: &RepoRef, since: Option<DateTime<Utc>>) -> Result<Vec<Comment>, ForgeError> {
        let action = "listing the repository's comments";
        let mut path = format!("{}/issues/comments?sort=updated&direction=asc&per_page=100", self.repo_path(repo)?);
        if let Some(s) = since {
            path.push_str(&format!("&since={}", s.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)));
        }
        let comments: Vec<GhComment> = self.get_pages(repo, action, path, MAX_COMMENT_PAGES).await?;
        Ok(comments.into_iter().map(GhComment::into_port).collect())
    }

    async fn create_comment(&self, repo: &RepoRef, number: u64, body: &str) -> Result<Comment, ForgeError> {
        let action = format!("commenting on pull request #{number}");
        let path = format!("{}/issues/{number}/comments", self.repo_path(repo)?);
        let reply =
            self.send(repo, &action, Method::Post, Api::Rest, &path, Some(&json!({"body": body})), Credential::Repo).await?;
        let comment: GhComment = self.expect_json(repo, &action, reply)?;
        Ok(comment.into_port())
    }

    async fn add_labels(&self, repo: &RepoRef, number: u64, labels: &[String]) -> Result<(), ForgeError> {
        if labels.is_empty() {
            return Ok(());
        }
        let action = format!("adding labels {} to pull request #{number}", labels.join(", "));
        let path = format!("{}/issues/{number}/labels", self.repo_path(repo)?);
        let reply =
            self.send(repo, &action, Method::Post, Api::Rest, &path, Some(&json!({"labels": labels})), Credential::Repo).await?;
        self.expect_ok(repo, &action, reply)
    }

    async fn request_reviewers(&self, repo: &RepoRef, number: u64, reviewers: &[Reviewer]) -> Result<(), ForgeError> {
        if reviewers.is_empty() {
            return Ok(());
        }
        let (mut users, mut teams) = (Vec::new(), Vec::new());
        for r in reviewers {
            match r {
                Reviewer::User(login) => users.push(login.clone()),
                Reviewer::Team(slug) => teams.push(slug.clone()),
            }
        }
        let who: Vec<String> = users.iter().cloned().chain(teams.iter().map(|t| format!("team {t}"))).collect();
        let action = format!("requesting reviews from {} on pull request #{number}", who.join(", "));
        let path = format!("{}/pulls/{number}/requested_reviewers", self.repo_path(repo)?);
        let body = json!({"reviewers": users, "team_reviewers": teams});
        // The answer is the pull request (octocrab's typed call wrongly parses it as a review).
        let reply = self.send(repo, &action, Method::Post, Api::Rest, &path, Some(&body), Credential::Repo).await?;
        self.expect_ok(repo, &action, reply)
    }

    async fn add_assignees(&self, repo: &RepoRef, number: u64, users: &[String]) -> Result<(), ForgeError> {
        if users.is_empty() {
            return Ok(());
        }
        let action = format!("assigning {} to pull request #{number}", users.join(", "));
        let path = format!("{}/issues/{number}/assignees", self.repo_path(repo)?);
        let reply =
            self.send(repo, &action, Method::Post, Api::Rest, &path, Some(&json!({"assignees": users})), Credential::Repo).await?;
        self.expect_ok(repo, &action, reply)
    }

    async fn enable_auto_merge(&self, repo: &RepoRef, number: u64, method: MergeMethod) -> Result<(), ForgeError> {
        let action = format!("enabling auto-merge ({}) on pull request #{number}", method.as_str());
        // GraphQL's PullRequestMergeMethod.
        let merge_method = match method {
            MergeMethod::Merge => "MERGE",
            MergeMethod::Squash => "SQUASH",
            MergeMethod::Rebase => "REBASE",
        };
        let node_id = self.node_id(repo, number).await?;
        let body = json!({
            "query": ENABLE_AUTO_MERGE,
            "variables": {"pullRequestId": node_id, "mergeMethod": merge_method},
        });
        let reply = self.send(repo, &action, Method::Post, Api::Graphql, "/graphql", Some(&body), Credential::Repo).await?;
        #[derive(Deserialize)]
        struct GraphqlReply {
            #[serde(default)]
            errors: Vec<GraphqlError>,
        }
        #[derive(Deserialize)]
        struct GraphqlError {
            message: String,
        }
        let answer: GraphqlReply = self.expect_json(repo, &action, reply)?;
        if answer.errors.is_empty() {
            Ok(())
        } else {
            let messages: Vec<String> = answer.errors.into_iter().map(|e| e.message).collect();
            Err(err(repo, ForgeErrorKind::Conflict, format!("{action}: {}", messages.join("; "))))
        }
    }

    async fn delete_branch(&self, repo: &RepoRef, branch: &str) -> Result<(), ForgeError> {
        let action = format!("deleting branch {branch}");
        let path = format!("{}/git/refs/heads/{}", self.repo_path(repo)?, http::path_segments(branch));
        let reply = self.send(repo, &action, Method::Delete, Api::Rest, &path, None, Credential::Repo).await?;
        let gone = reply.status == 404 || (reply.status == 422 && reply.body.contains("Reference does not exist"));
        if gone { Ok(()) } else { self.expect_ok(repo, &action, reply) }
    }

    async fn access_level(&self, repo: &RepoRef, user: &str) -> Result<AccessLevel, ForgeError> {
        let action = format!("reading {user}'s permission");
        let path = format!("{}/collaborators/{}/permission", self.repo_path(repo)?, http::path_segment(user));
        let reply = self.send(repo, &action, Method::Get, Api::Rest, &path, None, Credential::Repo).await?;
        if reply.status == 404 {
            // Not a collaborator (or no such user): no access.
            return Ok(AccessLevel::None);
        }
        #[derive(Deserialize)]
        struct Level {
            permission: String,
            #[serde(default)]
            role_name: Option<String>,
        }
        let level: Level = self.expect_json(repo, &action, reply)?;
        Ok(access_level_from(&level.permission, level.role_name.as_deref()))
    }

    async fn add_reaction(&self, repo: &RepoRef, _number: u64, comment_id: u64, reaction: Reaction) -> Result<(), ForgeError> {
        // GitHub reacts to a comment by its id alone, whatever pull request it is on.
        let reaction = match reaction {
            Reaction::ThumbsUp => "+1",
            Reaction::Confused => "confused",
        };
        let action = format!("reacting {reaction} to comment {comment_id}");
        let path = format!("{}/issues/comments/{comment_id}/reactions", self.repo_path(repo)?);
        let reply =
            self.send(repo, &action, Method::Post, Api::Rest, &path, Some(&json!({"content": reaction})), Credential::Repo).await?;
        self.expect_ok(repo, &action, reply)
    }
}

/// Pages of 100 comments one repository listing reads: the listing starts where the last run
/// that wrote a ledger started, so it is one page unless the repository is very busy.
const MAX_COMMENT_PAGES: usize = 50;

const ENABLE_AUTO_MERGE: &str = "mutation($pullRequestId: ID!, $mergeMethod: PullRequestMergeMethod!) { \
enablePullRequestAutoMerge(input: {pullRequestId: $pullRequestId, mergeMethod: $mergeMethod}) { \
pullRequest { number autoMergeRequest { enabledAt } } } }";

// ---- GitHub's JSON, as far as the bot reads it ----

#[derive(Deserialize)]
struct GhUser {
    login: String,
}

#[derive(Deserialize)]
struct GhTeam {
    slug: String,
}

#[derive(Deserialize)]
struct GhLabel {
    name: String,
}

#[derive(Deserialize)]
struct GhRepoName {
    full_name: String,
}

#[derive(Deserialize)]
struct GhRef {
    #[serde(rename = "ref")]
    ref_: String,
    sha: String,
    /// `null` when the head repository (a fork) was deleted.
    repo: Option<GhRepoName>,
}

#[derive(Deserialize)]
struct GhPull {
    number: u64,
    /// `null` for a deleted account.
    user: Option<GhUser>,
    node_id: String,
    html_url: String,
    title: String,
    body: Option<String>,
    state: String,
    #[serde(default)]
    draft: Option<bool>,
    merged_at: Option<DateTime<Utc>>,
    merge_commit_sha: Option<String>,
    head: GhRef,
    base: GhRef,
    #[serde(default)]
    labels: Vec<GhLabel>,
    #[serde(default)]
    requested_reviewers: Option<Vec<GhUser>>,
    #[serde(default)]
    requested_teams: Option<Vec<GhTeam>>,
    #[serde(default)]
    assignees: Option<Vec<GhUser>>,
    #[serde(default)]
    auto_merge: Option<Value>,
    updated_at: Option<DateTime<Utc>>,
    closed_at: Option<DateTime<Utc>>,
}

impl GhPull {
    fn into_port(self) -> PullRequest {
        let state = match (self.state.as_str(), self.merged_at.is_some()) {
            (_, true) => PrState::Merged,
            ("open", false) => PrState::Open,
            _ => PrState::Closed,
        };
        let logins = |users: Option<Vec<GhUser>>| users.unwrap_or_default().into_iter().map(|u| u.login).collect();
        PullRequest {
            number: self.number,
            author: self.user.map(|u| u.login).unwrap_or_else(|| "ghost".into()),
            url: self.html_url,
            title: self.title,
            body: self.body.unwrap_or_default(),
            head: self.head.ref_,
            head_sha: self.head.sha,
            base: self.base.ref_,
            state,
            draft: self.draft.unwrap_or(false),
            labels: self.labels.into_iter().map(|l| l.name).collect(),
            requested_reviewers: logins(self.requested_reviewers),
            requested_teams: self.requested_teams.unwrap_or_default().into_iter().map(|t| t.slug).collect(),
            assignees: logins(self.assignees),
            auto_merge: self.auto_merge.is_some_and(|a| !a.is_null()),
            merge_commit_sha: if state == PrState::Merged { self.merge_commit_sha } else { None },
            updated_at: self.updated_at,
            closed_at: self.closed_at,
        }
    }
}

#[derive(Deserialize)]
struct GhComment {
    id: u64,
    /// `.../issues/{number}`: the issue or pull request the comment is on.
    #[serde(default)]
    issue_url: Option<String>,
    user: Option<GhUser>,
    #[serde(default)]
    body: Option<String>,
    created_at: DateTime<Utc>,
    html_url: String,
}

impl GhComment {
    fn into_port(self) -> Comment {
        Comment {
            id: self.id,
            pr: self.issue_url.as_deref().and_then(|u| u.rsplit('/').next()).and_then(|n| n.parse().ok()).unwrap_or(0),
            // A deleted account shows as `ghost` on GitHub.
            author: self.user.map(|u| u.login).unwrap_or_else(|| "ghost".into()),
            body: self.body.unwrap_or_default(),
            created_at: self.created_at,
            url: self.html_url,
        }
    }
}

// ---- pure helpers ----

fn err(repo: &RepoRef, kind: ForgeErrorKind, message: String) -> ForgeError {
    ForgeError { forge: FORGE, repo: repo.slug.clone(), kind, message }
}

fn status_error(repo: &RepoRef, action: &str, reply: &Reply) -> ForgeError {
    let kind = ForgeErrorKind::from(StatusKind::of(reply.status));
    err(repo, kind, format!("{action}: {} {}", reply.status, github_message(&reply.body)))
}

/// GitHub's error message with its validation details (`errors[].message`/`code`).
fn github_message(body: &str) -> String {
    #[derive(Deserialize)]
    struct Error {
        message: Option<String>,
        #[serde(default)]
        errors: Vec<Value>,
    }
    match serde_json::from_str::<Error>(body) {
        Ok(e) => {
            let mut text = e.message.unwrap_or_default();
            let details: Vec<String> = e
                .errors
                .iter()
                .filter_map(|d| match d {
                    Value::String(s) => Some(s.clone()),
                    Value::Object(o) => o
                        .get("message")
                        .or_else(|| o.get("code"))
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    _ => None,
                })
                .collect();
            if !details.is_empty() {
                text = format!("{text} ({})", details.join("; "));
            }
            text
        }
        Err(_) => excerpt(body),
    }
}

fn excerpt(body: &str) -> String {
    let trimmed = body.trim();
    match trimmed.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &trimmed[..i]),
        None => trimmed.to_string(),
    }
}

/// octocrab's errors print their variant, not the cause; walk the chain.
fn describe_octocrab(e: &octocrab::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// How long GitHub asks us to wait, if this answer is a rate limit.
fn rate_limit_wait(
    status: u16,
    retry_after: Option<&str>,
    remaining: Option<&str>,
    reset: Option<&str>,
    body: &str,
    now: DateTime<Utc>,
) -> Option<Duration> {
    if status != 403 && status != 429 {
        return None;
    }
    if let Some(wait) = retry_after.and_then(|v| http::retry_after(v, now)) {
        return Some(wait.max(Duration::from_secs(1)));
    }
    if remaining.map(str::trim) == Some("0") {
        let now = now.timestamp();
        let reset = reset.and_then(|r| r.trim().parse::<i64>().ok()).unwrap_or(now + 60);
        // One second more than asked: the reset time is whole seconds on GitHub's clock.
        return Some(Duration::from_secs((reset - now).max(0) as u64 + 1));
    }
    if status == 429 || body.to_ascii_lowercase().contains("secondary rate limit") {
        // GitHub's advice when it gives no time: wait at least a minute.
        return Some(Duration::from_secs(60));
    }
    None
}

/// GitHub's role as the bot's access level. `triage` (manage issues and pull requests, no push)
/// is [`AccessLevel::Read`]: its commands are refused, as a reader's.
fn access_level_from(permission: &str, role_name: Option<&str>) -> AccessLevel {
    let from_name = |name: &str| match name {
        "admin" => Some(AccessLevel::Admin),
        "maintain" => Some(AccessLevel::Maintain),
        "write" | "push" => Some(AccessLevel::Write),
        "triage" | "read" | "pull" => Some(AccessLevel::Read),
        "none" => Some(AccessLevel::None),
        _ => None,
    };
    // `role_name` is the finer one (maintain, triage); custom roles fall back to `permission`.
    role_name.and_then(from_name).or_else(|| from_name(permission)).unwrap_or(AccessLevel::None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_for_github_com_and_enterprise() {
        let cases = [
            ("none", None, "https://api.github.com", "https://api.github.com", "https://github.com"),
            ("github.com", Some("https://github.com/"), "https://api.github.com", "https://api.github.com", "https://github.com"),
            (
                "enterprise REST base",
                Some("https://ghe.example.com/api/v3/"),
                "https://ghe.example.com/api/v3",
                "https://ghe.example.com/api",
                "https://ghe.example.com",
            ),
            (
                "enterprise",
                Some("https://ghe.example.com/"),
                "https://ghe.example.com/api/v3",
                "https://ghe.example.com/api",
                "https://ghe.example.com",
            ),
        ];
        for (name, url, api, graphql, git) in cases {
            let e = Endpoints::new(url, false).unwrap();
            assert_eq!((e.api.as_str(), e.graphql_base.as_str(), e.git.as_str()), (api, graphql, git), "case {name}");
        }
        assert!(Endpoints::new(Some("ghe.example.com"), false).is_err());
    }

    #[test]
    fn plain_http_only_on_loopback_or_when_allowed() {
        // Issue 15: the token went out over plain HTTP.
        let err = Endpoints::new(Some("http://ghe.example.com"), false).unwrap_err();
        assert!(err.contains("http://ghe.example.com") && err.contains("--github-allow-http"), "{err}");
        assert!(Endpoints::new(Some("http://ghe.example.com"), true).is_ok());
        for local in ["http://127.0.0.1:8080", "http://localhost:3000", "http://[::1]:80"] {
            assert!(Endpoints::new(Some(local), false).is_ok(), "{local}");
        }
    }

    #[test]
    fn a_repository_on_another_server_is_not_mapped_onto_a_namesake() {
        let forge = GithubForge::new(GithubSettings::new(None, GithubAuth::Token("t".into()))).unwrap();
        let ours = RepoRef::from_url("https://github.com/org/gitops.git").unwrap();
        assert_eq!(forge.repo_path(&ours).unwrap(), "/repos/org/gitops");
        for url in ["https://gitlab.com/org/gitops.git", "git@bitbucket.org:org/gitops.git", "https://github.com.evil.example/org/gitops"] {
            let theirs = RepoRef::from_url(url).unwrap();
            let e = forge.repo_path(&theirs).unwrap_err();
            assert!(e.message.contains(url) && e.message.contains("not on this GitHub server"), "{e}");
        }
    }

    #[test]
    fn rate_limits_primary_secondary_and_plain_forbidden() {
        let now = DateTime::from_timestamp(1_000, 0).unwrap();
        assert_eq!(rate_limit_wait(403, Some("7"), None, None, "", now), Some(Duration::from_secs(7)));
        assert_eq!(rate_limit_wait(429, Some("0"), None, None, "", now), Some(Duration::from_secs(1)));
        // The shared Retry-After parser also takes the HTTP-date form (GitHub sends seconds).
        let date = (now + chrono::Duration::seconds(30)).to_rfc2822();
        assert_eq!(rate_limit_wait(429, Some(&date), None, None, "", now), Some(Duration::from_secs(30)));
        assert_eq!(rate_limit_wait(403, None, Some("0"), Some("1010"), "", now), Some(Duration::from_secs(11)));
        assert_eq!(rate_limit_wait(403, None, Some("0"), Some("900"), "", now), Some(Duration::from_secs(1)));
        assert_eq!(rate_limit_wait(403, None, Some("12"), Some("1010"), "Resource not accessible", now), None);
        assert_eq!(
            rate_limit_wait(403, None, Some("12"), None, "You have exceeded a secondary rate limit", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(rate_limit_wait(404, Some("5"), Some("0"), None, "", now), None);
    }

    #[test]
    fn access_levels_from_permissions_and_roles() {
        let cases = [
            ("admin", Some("admin"), AccessLevel::Admin),
            ("write", Some("maintain"), AccessLevel::Maintain),
            ("write", Some("write"), AccessLevel::Write),
            ("read", Some("triage"), AccessLevel::Read),
            ("read", Some("read"), AccessLevel::Read),
            ("none", None, AccessLevel::None),
            ("write", Some("custom-deployer"), AccessLevel::Write),
            ("bogus", None, AccessLevel::None),
        ];
        for (permission, role, want) in cases {
            assert_eq!(access_level_from(permission, role), want, "case {permission}/{role:?}");
        }
        assert!(!access_level_from("read", Some("triage")).can_write(), "triage never could command the bot");
    }

    #[test]
    fn secrets_are_redacted() {
        let auth = GithubAuth::Token("ghp_secret".into());
        assert!(!format!("{auth:?}").contains("ghp_secret"));
        let app = GithubAuth::App { app_id: 7, private_key_pem: "-----BEGIN PRIVATE KEY-----".into() };
        assert!(!format!("{app:?}").contains("BEGIN"));
    }
}
