//! Sending one registry request: per-registry concurrency and rate limit, 429/503 Retry-After
//! back-off, and the 401 → Basic / Bearer-token dance with a token cache per
//! (registry, repository, credential set).

use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use url::Url;

use super::headers::parse_www_authenticate;
use super::{RegistryClient, RegistryError, RegistryErrorKind, Target};
use crate::http;

/// Requests in flight per registry: enough to hide the round trips to a remote registry and to
/// keep a busy one answering on all its cores (on the benchmark fleet, 32 instead of 16 took
/// about 0.1 s off `plan`'s 3.2 s); `limit` caps the rate on top.
pub(crate) const MAX_IN_FLIGHT: usize = 32;
/// Retries of one request answered 429 (or 503 with Retry-After).
const MAX_THROTTLE_RETRIES: u32 = 5;
/// Wait when a 429 carries no usable Retry-After.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Longest wait we accept from a Retry-After.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Token lifetime when the token server does not say (distribution spec: 60 s).
const DEFAULT_TOKEN_TTL: u64 = 60;

/// What a registry asked for in its `WWW-Authenticate` challenge; remembered per registry so
/// later requests (other repositories too) authenticate up front.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthScheme {
    Basic,
    Bearer { realm: Url, service: Option<String> },
}

/// Per-registry state shared by every request to it.
pub(crate) struct HostState {
    permits: Semaphore,
    limiter: Option<RateLimiter>,
    scheme: Mutex<Option<AuthScheme>>,
    /// The registry's last `RateLimit-Remaining` (Docker Hub: pulls left, and the window in
    /// seconds): at zero, manifest `GET`s (what Docker Hub counts) wait for the next cycle.
    pulls_left: Mutex<Option<(u64, Option<u64>)>>,
}

impl HostState {
    pub fn new(limit_per_second: Option<u32>) -> Self {
        HostState {
            permits: Semaphore::new(MAX_IN_FLIGHT),
            limiter: limit_per_second.filter(|l| *l > 0).map(RateLimiter::new),
            scheme: Mutex::new(None),
            pulls_left: Mutex::new(None),
        }
    }

    /// A new cycle may try again: the window may have passed.
    pub fn forget_pull_limit(&self) {
        *self.pulls_left.lock().unwrap() = None;
    }
}

/// `RateLimit-Remaining: 76;w=21600` (Docker Hub), or a bare number.
fn remaining_pulls(value: &str) -> Option<(u64, Option<u64>)> {
    let mut parts = value.split(';').map(str::trim);
    let left = parts.next()?.parse().ok()?;
    let window = parts.find_map(|p| p.strip_prefix("w=")).and_then(|w| w.parse().ok());
    Some((left, window))
}

/// Evenly spaced requests, `per_second` at most (AIU's `limit`; a leaky bucket without burst).
struct RateLimiter {
    interval: Duration,
    next: tokio::sync::Mutex<Instant>,
}

impl RateLimiter {
    fn new(per_second: u32) -> Self {
        RateLimiter { interval: Duration::from_secs(1) / per_second, next: tokio::sync::Mutex::new(Instant::now()) }
    }

    async fn acquire(&self) {
        let slot = {
            let mut next = self.next.lock().await;
            let slot = (*next).max(Instant::now());
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

/// A bearer token and when to stop using it.
#[derive(Clone)]
pub(crate) struct Token {
    value: String,
    expires: Instant,
}

/// A registry answer, body read in full up to [`body_limit`].
pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// Final URL after redirects; relative `Link`s resolve against it.
    pub url: Url,
}

impl Reply {
    pub fn header(&self, name: impl reqwest::header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl RegistryClient {
    /// One HTTP exchange: waits for a permit and the rate limiter, counts the request.
    async fn send_once(
        &self,
        t: &Target,
        method: &Method,
        url: &Url,
        accept: Option<&str>,
        auth: Option<&str>,
        tag: Option<&str>,
    ) -> Result<Reply, RegistryError> {
        let _permit = t.host.permits.acquire().await.expect("registry semaphore is never closed");
        if let Some(limiter) = &t.host.limiter {
            limiter.acquire().await;
        }
        let pull = *method == Method::GET && url.path().contains("/manifests/");
        if pull && let Some((0, window)) = *t.host.pulls_left.lock().unwrap() {
            let window = window.map(|w| format!(" in a window of {w} s")).unwrap_or_default();
            return Err(t.err(
                RegistryErrorKind::RateLimited,
                tag,
                format!("the registry's pull limit is used up (RateLimit-Remaining 0{window}): manifests are read again next cycle"),
            ));
        }
        let client = self.http_for(&t.endpoint).map_err(|e| t.err(RegistryErrorKind::Config, tag, e.message))?;
        let mut req = client.request(method.clone(), url.clone());
        if let Some(a) = accept {
            req = req.header(ACCEPT, a);
        }
        if let Some(a) = auth {
            req = req.header(AUTHORIZATION, a);
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        *self.by_registry.lock().unwrap().entry(t.endpoint.host.clone()).or_default() += 1;
        let network = |e: reqwest::Error| {
            t.err(RegistryErrorKind::Network, tag, format!("{method} {}: {}", redact_query(url), crate::error::chain(&e)))
        };
        let mut resp = req.send().await.map_err(network)?;
        let status = resp.status();
        tracing::debug!(registry = %t.endpoint.host, %method, url = %redact_query(url), %status, "registry request");
        let headers = resp.headers().clone();
        if let Some(left) = headers.get("ratelimit-remaining").and_then(|v| v.to_str().ok()).and_then(remaining_pulls) {
            *t.host.pulls_left.lock().unwrap() = Some(left);
        }
        let final_url = resp.url().clone();
        let limit = body_limit(url);
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_large(t, tag, url, limit));
        }
        // Read chunk by chunk so that an endless or oversized answer stops at the cap.
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(network)? {
            if body.len() + chunk.len() > limit {
                return Err(too_large(t, tag, url, limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Reply { status, headers, body, url: final_url })
    }

    /// [`Self::send_once`], waiting out 429 (and 503 with Retry-After) up to 5 times.
    pub(crate) async fn send_throttled(
        &self,
        t: &Target,
        method: &Method,
        url: &Url,
        accept: Option<&str>,
        auth: Option<&str>,
        tag: Option<&str>,
    ) -> Result<Reply, RegistryError> {
        let mut retries = 0;
        loop {
            let reply = self.send_once(t, method, url, accept, auth, tag).await?;
            let retry_after = reply.header(RETRY_AFTER).and_then(|v| http::retry_after(v, Utc::now()));
            let throttled = reply.status == StatusCode::TOO_MANY_REQUESTS
                || (reply.status == StatusCode::SERVICE_UNAVAILABLE && retry_after.is_some());
            if !throttled {
                return Ok(reply);
            }
            if retries == MAX_THROTTLE_RETRIES {
                return Err(t.err(
                    RegistryErrorKind::RateLimited,
                    tag,
                    format!("still rate limited (HTTP {}) after {retries} retries", reply.status.as_u16()),
                ));
            }
            retries += 1;
            let wait = retry_after.unwrap_or(DEFAULT_RETRY_AFTER).min(MAX_RETRY_AFTER);
            tracing::info!(registry = %t.endpoint.host, wait_ms = wait.as_millis() as u64, status = reply.status.as_u16(), "registry asks to slow down; waiting");
            tokio::time::sleep(wait).await;
        }
    }

    /// A request with authentication: reuses what the registry asked for before, and on 401
    /// follows its challenge once (Basic, or a Bearer token for this repository).
    pub(crate) async fn send(
        &self,
        t: &Target,
        method: Method,
        url: Url,
        accept: Option<&str>,
        tag: Option<&str>,
    ) -> Result<Reply, RegistryError> {
        let known = t.host.scheme.lock().unwrap().clone();
        let mut auth = match known {
            Some(scheme) => self.authorization(t, &scheme, None, tag).await?,
            None => None,
        };
        let mut challenged = false;
        loop {
            let reply = self.send_throttled(t, &method, &url, accept, auth.as_deref(), tag).await?;
            if reply.status != StatusCode::UNAUTHORIZED {
                return Ok(reply);
            }
            if challenged {
                return Err(t.err(RegistryErrorKind::Unauthorized, tag, format!(
                    "authentication failed (HTTP 401) with {}; some registries also answer 401 for a repository that does not exist",
                    t.creds_source
                )));
            }
            challenged = true;
            let scheme = pick_scheme(&reply, &t.endpoint.api_url).ok_or_else(|| {
                t.err(RegistryErrorKind::Unauthorized, tag, format!("HTTP 401 without a Basic or Bearer challenge, with {}", t.creds_source))
            })?;
            check_realm(&t.endpoint.api_url, &scheme).map_err(|m| t.err(RegistryErrorKind::Protocol, tag, m))?;
            *t.host.scheme.lock().unwrap() = Some(scheme.clone());
            auth = self.authorization(t, &scheme, auth.as_deref(), tag).await?;
            if auth.is_none() {
                return Err(t.err(RegistryErrorKind::Unauthorized, tag, "the registry requires credentials (Basic auth) and none are configured".into()));
            }
        }
    }

    /// The `Authorization` value for `scheme`; `rejected` is a value the registry just refused.
    async fn authorization(
        &self,
        t: &Target,
        scheme: &AuthScheme,
        rejected: Option<&str>,
        tag: Option<&str>,
    ) -> Result<Option<String>, RegistryError> {
        match scheme {
            AuthScheme::Basic => Ok(t.creds.as_ref().map(|c| c.basic_header())),
            AuthScheme::Bearer { realm, service } => {
                let rejected = rejected.and_then(|r| r.strip_prefix("Bearer "));
                let token = self.token(t, realm, service.as_deref(), rejected, tag).await?;
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    /// A pull token for the target's repository: cached until expiry; one token request at a
    /// time per (registry, repository, credential set).
    async fn token(
        &self,
        t: &Target,
        realm: &Url,
        service: Option<&str>,
        rejected: Option<&str>,
        tag: Option<&str>,
    ) -> Result<String, RegistryError> {
        let slot = self.tokens.lock().unwrap().entry(t.cache_key()).or_default().clone();
        let mut slot = slot.lock().await;
        if let Some(tok) = slot.as_ref()
            && Instant::now() < tok.expires
            && rejected != Some(tok.value.as_str())
        {
            return Ok(tok.value.clone());
        }
        let mut url = realm.clone();
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            q.append_pair("scope", &format!("repository:{}:pull", t.endpoint.repository));
        }
        let basic = match &t.creds {
            Some(c) if realm_may_receive_credentials(&t.endpoint.api_url, realm) => Some(c.basic_header()),
            Some(_) => {
                tracing::warn!(registry = %t.endpoint.host, realm = %redact_query(realm), "token realm is on another domain; asking for an anonymous token");
                None
            }
            None => None,
        };
        let reply = self.send_throttled(t, &Method::GET, &url, Some("application/json"), basic.as_deref(), tag).await?;
        if !reply.status.is_success() {
            return Err(t.err(
                RegistryErrorKind::Unauthorized,
                tag,
                format!("token server {} refused a pull token (HTTP {}) with {}", redact_query(realm), reply.status.as_u16(), t.creds_source),
            ));
        }
        #[derive(Deserialize)]
        struct TokenReply {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let parsed: TokenReply = serde_json::from_slice(&reply.body).map_err(|e| {
            t.err(RegistryErrorKind::Protocol, tag, format!("token server {} answered no JSON token: {e}", redact_query(realm)))
        })?;
        let value = parsed.token.filter(|s| !s.is_empty()).or(parsed.access_token.filter(|s| !s.is_empty())).ok_or_else(|| {
            t.err(RegistryErrorKind::Protocol, tag, format!("token server {} answered without token", redact_query(realm)))
        })?;
        let ttl = parsed.expires_in.unwrap_or(DEFAULT_TOKEN_TTL).max(1);
        // Renew a little early so a token does not expire between check and use.
        let margin = (ttl / 10).min(30);
        *slot = Some(Token { value: value.clone(), expires: Instant::now() + Duration::from_secs(ttl - margin) });
        Ok(value)
    }
}

/// Bearer (with a realm) if offered, else Basic.
fn pick_scheme(reply: &Reply, api_url: &str) -> Option<AuthScheme> {
    let challenges: Vec<_> = reply
        .headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(parse_www_authenticate)
        .collect();
    let bearer = challenges.iter().find(|c| c.scheme == "bearer").and_then(|c| {
        // A relative realm is resolved against the registry.
        let realm = Url::parse(api_url).ok()?.join(c.param("realm")?).ok()?;
        Some(AuthScheme::Bearer { realm, service: c.param("service").map(str::to_string) })
    });
    bearer.or_else(|| challenges.iter().any(|c| c.scheme == "basic").then_some(AuthScheme::Basic))
}

/// Largest answer taken: tag lists may be long (Docker Hub's biggest repositories list tens of
/// thousands of tags, under 2 MB), manifests, config blobs and tokens are a few kB.
pub(crate) const MAX_TAG_LIST_BYTES: usize = 10 * 1024 * 1024;
pub(crate) const MAX_DOCUMENT_BYTES: usize = 4 * 1024 * 1024;

fn body_limit(url: &Url) -> usize {
    if url.path().ends_with("/tags/list") { MAX_TAG_LIST_BYTES } else { MAX_DOCUMENT_BYTES }
}

fn too_large(t: &Target, tag: Option<&str>, url: &Url, limit: usize) -> RegistryError {
    t.err(RegistryErrorKind::Protocol, tag, format!("answer to {} is larger than {} MB; refused", redact_query(url), limit / (1024 * 1024)))
}

/// A challenge the bot may follow: no plain http token realm for an https registry (the
/// credentials and the token would cross the network in clear).
pub(crate) fn check_realm(api_url: &str, scheme: &AuthScheme) -> Result<(), String> {
    match scheme {
        AuthScheme::Bearer { realm, .. } if realm.scheme() == "http" && api_url.starts_with("https:") => {
            Err(format!("the registry names a plain http token realm {}; refused for an https registry", redact_query(realm)))
        }
        _ => Ok(()),
    }
}

/// Whether the registry's credentials may go to its token realm: a host of the registry's own
/// domain (its host, or one sharing the last two labels: `auth.docker.io` for
/// `registry-1.docker.io`). A realm elsewhere is asked for an anonymous token instead, so a
/// hostile `WWW-Authenticate` cannot collect the credentials.
pub(crate) fn realm_may_receive_credentials(api_url: &str, realm: &Url) -> bool {
    let Some(registry) = Url::parse(api_url).ok().and_then(|u| u.host_str().map(str::to_ascii_lowercase)) else {
        return false;
    };
    let Some(realm_host) = realm.host_str().map(str::to_ascii_lowercase) else { return false };
    if registry == realm_host {
        return true;
    }
    let is_name = |h: &str| h.parse::<std::net::IpAddr>().is_err() && !h.starts_with('[');
    let domain = |h: &str| {
        let labels: Vec<&str> = h.rsplitn(3, '.').collect();
        (labels.len() >= 2).then(|| format!("{}.{}", labels[1], labels[0]))
    };
    is_name(&registry) && is_name(&realm_host) && domain(&registry).is_some() && domain(&registry) == domain(&realm_host)
}

/// `url` without its query, which may carry pagination cursors or token-server parameters.
pub(crate) fn redact_query(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.to_string()
}

