//! The GitLab driver's HTTP side: where the server answers, one request with its rate-limit
//! waits and server-error retries, answers read with a size cap, pages followed, and GitLab's
//! error bodies turned into messages that name the project and the call.
//!
//! - Rate limits: a `429` (or a `503` with `Retry-After`) waits `Retry-After`, else until
//!   `RateLimit-Reset` (+1 s), else a minute (GitLab's windows are a minute long); a wait longer
//!   than the configured cap, or a tenth limited answer in a row, fails the call `RateLimited`.
//! - Server errors (`5xx`) and network failures are retried with a doubling back-off, a bounded
//!   number of times, for `GET`, `PUT` and `DELETE` only: the bot's `PUT`s set values (a title, a
//!   state, labels to add) and its `DELETE` removes a branch, so a repeat changes nothing a
//!   first success did not; a `POST` (a merge request, a note, an emoji) whose answer was lost
//!   may have been made, and is left to the engine, which lists before it creates again.
//!   A connection that could not be made at all is retried for every method.
//! - No redirects are followed: the token travels in a header of our own (`PRIVATE-TOKEN`),
//!   which an HTTP client would carry to wherever a redirect points.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::http::{self, StatusKind};
use crate::ports::{ForgeError, ForgeErrorKind, RepoRef};

pub(super) const FORGE: &str = "gitlab";

/// Largest answer read: a page of 100 merge requests with long descriptions is a few MB.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Rate-limited answers in a row after which a call fails.
const MAX_THROTTLED_ATTEMPTS: u32 = 10;
/// Wait on a `429` that says nothing about how long.
const DEFAULT_THROTTLE_WAIT: Duration = Duration::from_secs(60);

/// Where the server answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Endpoints {
    /// The server's URL as people and git use it, no trailing slash: `https://gitlab.com`,
    /// `https://gitlab.example.com`, `https://example.com/gitlab` (a relative URL root).
    pub web: String,
    /// REST base: `<web>/api/v4`.
    pub api: String,
    /// The server's host name, lowercase: repositories elsewhere are not on this server.
    pub host: String,
}

impl Endpoints {
    /// `url` is the server (`https://gitlab.example.com`) or its API base (`.../api/v4`); both
    /// name the same server. `None`: gitlab.com.
    pub fn new(url: Option<&str>, allow_http: bool) -> Result<Endpoints, String> {
        let url = url.map(|u| u.trim().trim_end_matches('/')).filter(|u| !u.is_empty()).unwrap_or("https://gitlab.com");
        let url = url.strip_suffix("/api/v4").unwrap_or(url).trim_end_matches('/');
        let parsed = url::Url::parse(url).map_err(|e| format!("--gitlab-url {url:?}: {e}"))?;
        let host = match parsed.host_str() {
            Some(h) if matches!(parsed.scheme(), "http" | "https") => h.to_ascii_lowercase(),
            _ => return Err(format!("--gitlab-url {url:?}: expected http(s)://host")),
        };
        if parsed.query().is_some() || parsed.fragment().is_some() || !parsed.username().is_empty() {
            return Err(format!("--gitlab-url {url:?}: expected http(s)://host[/path], without credentials, query or fragment"));
        }
        let loopback = crate::domain::is_loopback(parsed.host_str().unwrap_or(""));
        if parsed.scheme() == "http" && !loopback && !allow_http {
            return Err(format!(
                "--gitlab-url {url:?}: plain http would send the token unencrypted; use https, or pass \
                 --gitlab-allow-http for a server reached only over a trusted network"
            ));
        }
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        Ok(Endpoints { web: url.to_string(), api: format!("{url}/api/v4"), host })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Method {
    Get,
    Post,
    Put,
    Delete,
}

impl Method {
    /// Safe to send again when the answer was lost (see the module doc).
    fn repeatable(self) -> bool {
        !matches!(self, Method::Post)
    }

    fn reqwest(self) -> reqwest::Method {
        match self {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Delete => reqwest::Method::DELETE,
        }
    }
}

/// How long and how often the client waits and retries.
#[derive(Debug, Clone, Copy)]
pub(super) struct Patience {
    pub max_rate_limit_wait: Duration,
    pub server_error_retries: u32,
    pub retry_backoff: Duration,
}

/// An answer, with the headers the driver reads.
#[derive(Debug)]
pub(super) struct Reply {
    pub status: u16,
    pub body: String,
    link: Option<String>,
    next_page: Option<String>,
    location: Option<String>,
    /// `Date`: when GitLab answered, by its own clock (whole seconds).
    date: Option<String>,
}

impl Reply {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// The HTTP client of one GitLab server and token.
pub(super) struct Client {
    http: reqwest::Client,
    pub endpoints: Endpoints,
    token: String,
    patience: Patience,
    pub requests: AtomicU64,
    pub rate_limit_waits: AtomicU64,
    pub retries: AtomicU64,
}

impl Client {
    pub fn new(
        endpoints: Endpoints,
        token: String,
        patience: Patience,
        connect_timeout: Duration,
        read_timeout: Duration,
    ) -> Result<Client, String> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("argocd-image-pr/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(connect_timeout)
            .read_timeout(read_timeout)
            .timeout(read_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot create the HTTP client for {}: {e}", endpoints.api))?;
        Ok(Client {
            http,
            endpoints,
            token,
            patience,
            requests: AtomicU64::new(0),
            rate_limit_waits: AtomicU64::new(0),
            retries: AtomicU64::new(0),
        })
    }

    /// Sends one request (`path` under the API base, with its query), waiting out rate limits
    /// and retrying what may be retried; the reply may still be an error status.
    pub async fn send(
        &self,
        repo: &RepoRef,
        action: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Reply, ForgeError> {
        let url = format!("{}{path}", self.endpoints.api);
        let mut throttled = 0u32;
        let mut retried = 0u32;
        loop {
            let mut request = self
                .http
                .request(method.reqwest(), &url)
                .header("PRIVATE-TOKEN", &self.token)
                .header(reqwest::header::ACCEPT, "application/json");
            if let Some(b) = body {
                request = request.json(b);
            }
            self.requests.fetch_add(1, Ordering::Relaxed);
            let outcome = match request.send().await {
                Ok(response) => read(response).await,
                Err(e) => Err(Failure::Network(e)),
            };
            let reply = match outcome {
                Ok(reply) => reply,
                Err(Failure::TooLarge) => {
                    return Err(err(repo, ForgeErrorKind::Protocol, format!("{action}: an answer larger than {} MiB", MAX_BODY_BYTES >> 20)));
                }
                Err(Failure::Network(e)) => {
                    if (method.repeatable() || e.is_connect()) && retried < self.patience.server_error_retries {
                        retried += 1;
                        self.back_off(repo, action, retried, &crate::error::chain(&e)).await;
                        continue;
                    }
                    return Err(err(repo, ForgeErrorKind::Network, format!("{action}: {}", crate::error::chain(&e))));
                }
            };
            let (retry_after, reset) = (reply.retry_after.as_deref(), reply.reset.as_deref());
            if let Some(wait) = throttle_wait(reply.reply.status, retry_after, reset, Utc::now()) {
                if wait > self.patience.max_rate_limit_wait {
                    return Err(err(
                        repo,
                        ForgeErrorKind::RateLimited,
                        format!(
                            "{action}: rate limited by GitLab for {}s, longer than the {}s the bot waits",
                            wait.as_secs(),
                            self.patience.max_rate_limit_wait.as_secs()
                        ),
                    ));
                }
                throttled += 1;
                if throttled >= MAX_THROTTLED_ATTEMPTS {
                    return Err(err(repo, ForgeErrorKind::RateLimited, format!("{action}: still rate limited after {throttled} attempts")));
                }
                self.rate_limit_waits.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(repo = %repo, action, wait_secs = wait.as_secs_f64(), "GitLab rate limit: waiting");
                tokio::time::sleep(wait).await;
                continue;
            }
            if reply.reply.status >= 500 && method.repeatable() && retried < self.patience.server_error_retries {
                retried += 1;
                self.back_off(repo, action, retried, &format!("HTTP {}", reply.reply.status)).await;
                continue;
            }
            return Ok(reply.reply);
        }
    }

    async fn back_off(&self, repo: &RepoRef, action: &str, retry: u32, why: &str) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        let wait = self.patience.retry_backoff.saturating_mul(1 << (retry - 1).min(6));
        tracing::warn!(repo = %repo, action, retry, wait_secs = wait.as_secs_f64(), "GitLab: {why}; trying again");
        tokio::time::sleep(wait).await;
    }

    /// A success body parsed, or the error status as a `ForgeError`.
    pub fn expect_json<T: DeserializeOwned>(&self, repo: &RepoRef, action: &str, reply: Reply) -> Result<T, ForgeError> {
        if !reply.ok() {
            return Err(status_error(repo, action, &reply));
        }
        serde_json::from_str(&reply.body).map_err(|e| {
            err(repo, ForgeErrorKind::Protocol, format!("{action}: unexpected answer from GitLab ({e}): {}", excerpt(&reply.body)))
        })
    }

    pub fn expect_ok(&self, repo: &RepoRef, action: &str, reply: Reply) -> Result<(), ForgeError> {
        if reply.ok() { Ok(()) } else { Err(status_error(repo, action, &reply)) }
    }

    /// Every page of a listing, `first` being the first page's path with its query (which has
    /// `per_page`). The next page is `Link: <...>; rel="next"` when it points under the API
    /// base, else `X-Next-Page`. More than `max_pages` is an error: a listing read in part would
    /// hide merge requests or comments.
    pub async fn get_pages<T: DeserializeOwned>(
        &self,
        repo: &RepoRef,
        action: &str,
        first: &str,
        max_pages: usize,
    ) -> Result<Vec<T>, ForgeError> {
        Ok(self.get_pages_dated(repo, action, first, max_pages).await?.0)
    }

    /// As [`Client::get_pages`], with when GitLab answered the first page (its `Date`, by
    /// GitLab's clock; `None` without one): whatever the listing holds was made before that.
    pub async fn get_pages_dated<T: DeserializeOwned>(
        &self,
        repo: &RepoRef,
        action: &str,
        first: &str,
        max_pages: usize,
    ) -> Result<(Vec<T>, Option<DateTime<Utc>>), ForgeError> {
        let mut items = Vec::new();
        let mut next = Some(first.to_string());
        let mut pages = 0;
        let mut answered_at = None;
        while let Some(path) = next.take() {
            if pages >= max_pages {
                return Err(err(
                    repo,
                    ForgeErrorKind::Protocol,
                    format!("{action}: more than {max_pages} pages of 100; refusing to read only a part"),
                ));
            }
            pages += 1;
            let reply = self.send(repo, action, Method::Get, &path, None).await?;
            if pages == 1 {
                answered_at = reply.date.as_deref().and_then(|d| DateTime::parse_from_rfc2822(d).ok()).map(|d| d.to_utc());
            }
            let following = next_page(&self.endpoints.api, first, reply.link.as_deref(), reply.next_page.as_deref());
            let page: Vec<T> = self.expect_json(repo, action, reply)?;
            items.extend(page);
            next = following.map_err(|m| err(repo, ForgeErrorKind::Protocol, format!("{action}: {m}")))?;
        }
        Ok((items, answered_at))
    }
}

/// What reading an answer can end in besides an answer.
enum Failure {
    Network(reqwest::Error),
    TooLarge,
}

impl From<reqwest::Error> for Failure {
    fn from(e: reqwest::Error) -> Self {
        Failure::Network(e)
    }
}

/// An answer with the rate-limit headers the retry loop reads.
struct Read {
    reply: Reply,
    retry_after: Option<String>,
    reset: Option<String>,
}

async fn read(mut response: reqwest::Response) -> Result<Read, Failure> {
    let status = response.status().as_u16();
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (link, next_page, location, date) = (header("link"), header("x-next-page"), header("location"), header("date"));
    let (retry_after, reset) = (header("retry-after"), header("ratelimit-reset"));
    if response.content_length().is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(Failure::TooLarge);
    }
    // Chunk by chunk, so that an endless or oversized answer stops at the cap.
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(Failure::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    let body = String::from_utf8_lossy(&body).into_owned();
    Ok(Read { reply: Reply { status, body, link, next_page, location, date }, retry_after, reset })
}


pub(super) fn err(repo: &RepoRef, kind: ForgeErrorKind, message: String) -> ForgeError {
    ForgeError { forge: FORGE, repo: repo.slug.clone(), kind, message }
}

/// An error status as the error of the call `action`: `creating merge request ...: 403 Forbidden`.
pub(super) fn status_error(repo: &RepoRef, action: &str, reply: &Reply) -> ForgeError {
    let kind = ForgeErrorKind::from(StatusKind::of(reply.status));
    let message = gitlab_message(&reply.body);
    let status = reply.status.to_string();
    // GitLab's messages often start with the status already ("404 Project Not Found").
    let mut text = if message.starts_with(&status) {
        format!("{action}: {message}")
    } else if message.is_empty() {
        format!("{action}: HTTP {status}")
    } else {
        format!("{action}: {status} {message}")
    };
    match reply.status {
        401 => text.push_str(" (the token is wrong, expired or revoked, or lacks the api scope)"),
        300..=399 => text.push_str(&format!(
            " (redirected to {}: give --gitlab-url as the URL GitLab answers on itself)",
            reply.location.as_deref().unwrap_or("somewhere else")
        )),
        _ => {}
    }
    ForgeError { forge: FORGE, repo: repo.slug.clone(), kind, message: text }
}

/// GitLab's error body as text: `{"message": "..."}`, `{"message": ["...", ...]}`,
/// `{"message": {"field": ["...", ...]}}`, `{"error": "...", "error_description": "..."}`; else
/// the start of the body.
pub(super) fn gitlab_message(body: &str) -> String {
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        message: Option<Value>,
        #[serde(default)]
        error: Option<Value>,
        #[serde(default)]
        error_description: Option<String>,
    }
    fn text(v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join("; "),
            Value::Object(fields) => {
                fields.iter().map(|(k, v)| format!("{k}: {}", text(v))).collect::<Vec<_>>().join("; ")
            }
            Value::Null => String::new(),
            other => other.to_string(),
        }
    }
    match serde_json::from_str::<Body>(body) {
        Ok(b) if b.message.is_some() || b.error.is_some() => {
            let mut out = b.message.as_ref().or(b.error.as_ref()).map(text).unwrap_or_default();
            if let Some(d) = b.error_description.filter(|d| !d.is_empty()) {
                out = format!("{out}: {d}");
            }
            out
        }
        _ => excerpt(body),
    }
}

pub(super) fn excerpt(body: &str) -> String {
    let trimmed = body.trim();
    match trimmed.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &trimmed[..i]),
        None => trimmed.to_string(),
    }
}

/// How long GitLab asks us to wait, if this answer is a rate limit: `Retry-After` (seconds or a
/// date), else `RateLimit-Reset` (Unix time; +1 s, its clock counts whole seconds), else a
/// minute for a `429`. A `503` without either is a server error, not a limit.
pub(super) fn throttle_wait(status: u16, retry_after: Option<&str>, reset: Option<&str>, now: DateTime<Utc>) -> Option<Duration> {
    if status != 429 && status != 503 {
        return None;
    }
    if let Some(wait) = retry_after.and_then(|v| http::retry_after(v, now)) {
        return Some(wait.max(Duration::from_secs(1)));
    }
    if let Some(at) = reset.and_then(|r| r.trim().parse::<i64>().ok()) {
        return Some(Duration::from_secs((at - now.timestamp()).max(0) as u64 + 1));
    }
    (status == 429).then_some(DEFAULT_THROTTLE_WAIT)
}

/// The path of the page after this one: `Link`'s `rel="next"` when it is under `api`, else
/// `X-Next-Page` on `first`; `None` on the last page. A `Link` elsewhere with no `X-Next-Page`
/// is refused: the token is not sent to another server.
pub(super) fn next_page(api: &str, first: &str, link: Option<&str>, next: Option<&str>) -> Result<Option<String>, String> {
    let linked = link.and_then(http::next_link);
    if let Some(url) = &linked
        && let Some(rest) = url.strip_prefix(api).filter(|r| r.starts_with('/'))
    {
        return Ok(Some(rest.to_string()));
    }
    if let Some(page) = next.map(str::trim).filter(|p| !p.is_empty()) {
        let page: u64 = page.parse().map_err(|_| format!("X-Next-Page {page:?} is not a page number"))?;
        let separator = if first.contains('?') { '&' } else { '?' };
        return Ok(Some(format!("{first}{separator}page={page}")));
    }
    match linked {
        Some(url) => Err(format!("next page {url} is outside {api}")),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> RepoRef {
        RepoRef::from_url("https://gitlab.example.com/group/sub/project.git").unwrap()
    }

    #[test]
    fn endpoints_for_gitlab_com_self_managed_and_a_relative_root() {
        let cases = [
            ("none", None, "https://gitlab.com", "https://gitlab.com/api/v4", "gitlab.com"),
            ("gitlab.com", Some("https://gitlab.com/"), "https://gitlab.com", "https://gitlab.com/api/v4", "gitlab.com"),
            (
                "self-managed",
                Some("https://gitlab.example.com"),
                "https://gitlab.example.com",
                "https://gitlab.example.com/api/v4",
                "gitlab.example.com",
            ),
            (
                "its API base",
                Some("https://GitLab.Example.com/api/v4/"),
                "https://GitLab.Example.com",
                "https://GitLab.Example.com/api/v4",
                "gitlab.example.com",
            ),
            (
                "relative URL root",
                Some("https://example.com/gitlab"),
                "https://example.com/gitlab",
                "https://example.com/gitlab/api/v4",
                "example.com",
            ),
            ("loopback", Some("http://127.0.0.1:8080"), "http://127.0.0.1:8080", "http://127.0.0.1:8080/api/v4", "127.0.0.1"),
            ("ipv6 loopback", Some("http://[::1]:80"), "http://[::1]:80", "http://[::1]:80/api/v4", "::1"),
        ];
        for (name, url, web, api, host) in cases {
            let e = Endpoints::new(url, false).unwrap_or_else(|e| panic!("case {name}: {e}"));
            assert_eq!((e.web.as_str(), e.api.as_str(), e.host.as_str()), (web, api, host), "case {name}");
        }
        for bad in ["gitlab.example.com", "ftp://gitlab.example.com", "https://user:pw@gitlab.example.com", "https://g.example.com/?x=1"] {
            let e = Endpoints::new(Some(bad), false).unwrap_err();
            assert!(e.starts_with("--gitlab-url"), "case {bad}: {e}");
        }
    }

    #[test]
    fn plain_http_only_on_loopback_or_when_allowed() {
        let e = Endpoints::new(Some("http://gitlab.example.com"), false).unwrap_err();
        assert!(e.contains("http://gitlab.example.com") && e.contains("--gitlab-allow-http"), "{e}");
        assert!(Endpoints::new(Some("http://gitlab.example.com"), true).is_ok());
        assert!(Endpoints::new(Some("http://localhost:3000"), false).is_ok());
    }

    #[test]
    fn errors_name_the_project_the_call_and_what_gitlab_said() {
        let reply = |status: u16, body: &str| Reply { status, body: body.into(), link: None, next_page: None, location: None, date: None };
        let cases = [
            (
                "forbidden",
                reply(403, r#"{"message":"403 Forbidden"}"#),
                ForgeErrorKind::Unauthorized,
                "gitlab group/sub/project: creating merge request: 403 Forbidden",
            ),
            (
                "duplicate",
                reply(409, r#"{"message":["Another open merge request already exists for this source branch: !5"]}"#),
                ForgeErrorKind::Conflict,
                "gitlab group/sub/project: creating merge request: 409 Another open merge request already exists for this source branch: !5",
            ),
            (
                "validation",
                reply(400, r#"{"message":{"title":["can't be blank","is too short"]}}"#),
                ForgeErrorKind::Protocol,
                "gitlab group/sub/project: creating merge request: 400 title: can't be blank; is too short",
            ),
            (
                "missing parameter",
                reply(400, r#"{"error":"title is missing"}"#),
                ForgeErrorKind::Protocol,
                "gitlab group/sub/project: creating merge request: 400 title is missing",
            ),
            (
                "bad token",
                reply(401, r#"{"error":"invalid_token","error_description":"Token was revoked. You have to re-authorize from the user."}"#),
                ForgeErrorKind::Unauthorized,
                "gitlab group/sub/project: creating merge request: 401 invalid_token: Token was revoked. You have to re-authorize from the user. (the token is wrong, expired or revoked, or lacks the api scope)",
            ),
            (
                "not found",
                reply(404, r#"{"message":"404 Project Not Found"}"#),
                ForgeErrorKind::NotFound,
                "gitlab group/sub/project: creating merge request: 404 Project Not Found",
            ),
            (
                "proxy page",
                reply(502, "<html>Bad Gateway</html>"),
                ForgeErrorKind::Network,
                "gitlab group/sub/project: creating merge request: 502 <html>Bad Gateway</html>",
            ),
            ("empty", reply(500, ""), ForgeErrorKind::Network, "gitlab group/sub/project: creating merge request: HTTP 500"),
        ];
        for (name, reply, kind, text) in cases {
            let e = status_error(&repo(), "creating merge request", &reply);
            assert_eq!((e.kind, e.to_string().as_str()), (kind, text), "case {name}");
        }
        let moved = Reply { location: Some("https://gitlab.example.com/users/sign_in".into()), ..reply(302, "") };
        let e = status_error(&repo(), "listing merge requests", &moved);
        assert!(e.message.contains("redirected to https://gitlab.example.com/users/sign_in") && e.message.contains("--gitlab-url"), "{e}");
    }

    #[test]
    fn rate_limits_from_retry_after_or_ratelimit_reset() {
        let now = DateTime::from_timestamp(1_000, 0).unwrap();
        let cases = [
            ("429 retry-after", 429, Some("7"), None, Some(Duration::from_secs(7))),
            ("429 retry-after zero", 429, Some("0"), None, Some(Duration::from_secs(1))),
            ("429 reset", 429, None, Some("1010"), Some(Duration::from_secs(11))),
            ("429 reset past", 429, None, Some("900"), Some(Duration::from_secs(1))),
            ("429 nothing", 429, None, None, Some(Duration::from_secs(60))),
            ("503 retry-after", 503, Some("3"), None, Some(Duration::from_secs(3))),
            ("503 nothing", 503, None, None, None),
            ("500", 500, Some("3"), Some("1010"), None),
            ("403", 403, Some("3"), None, None),
        ];
        for (name, status, retry_after, reset, want) in cases {
            assert_eq!(throttle_wait(status, retry_after, reset, now), want, "case {name}");
        }
        let date = (now + chrono::Duration::seconds(30)).to_rfc2822();
        assert_eq!(throttle_wait(429, Some(&date), None, now), Some(Duration::from_secs(30)));
    }

    #[test]
    fn pages_by_link_or_x_next_page_and_never_elsewhere() {
        let api = "https://gitlab.example.com/api/v4";
        let first = "/projects/group%2Fproject/merge_requests?state=all&per_page=100";
        let link = r#"<https://gitlab.example.com/api/v4/projects/8/merge_requests?id=8&page=2&per_page=100&state=all>; rel="next", <https://gitlab.example.com/api/v4/projects/8/merge_requests?id=8&page=1&per_page=100&state=all>; rel="first""#;
        assert_eq!(
            next_page(api, first, Some(link), Some("2")).unwrap().as_deref(),
            Some("/projects/8/merge_requests?id=8&page=2&per_page=100&state=all")
        );
        assert_eq!(next_page(api, first, None, Some("3")).unwrap(), Some(format!("{first}&page=3")));
        assert_eq!(next_page(api, first, None, Some("")).unwrap(), None, "the last page has an empty X-Next-Page");
        let last = r#"<https://gitlab.example.com/api/v4/projects/8/merge_requests?page=1>; rel="first""#;
        assert_eq!(next_page(api, first, Some(last), None).unwrap(), None);
        let elsewhere = r#"<https://evil.example/api/v4/projects/8/merge_requests?page=2>; rel="next""#;
        assert_eq!(next_page(api, first, Some(elsewhere), Some("2")).unwrap(), Some(format!("{first}&page=2")));
        let e = next_page(api, first, Some(elsewhere), None).unwrap_err();
        assert!(e.contains("https://evil.example") && e.contains("outside"), "{e}");
        assert!(next_page(api, first, None, Some("two")).is_err());
    }
}
