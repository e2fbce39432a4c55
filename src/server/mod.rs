//! The daemon's HTTP side: `POST /webhooks/github` and `POST /webhooks/gitlab` (authenticated
//! deliveries become [`WebhookEvent`]s on a channel the engine loop reads), `GET /healthz`,
//! `GET /metrics`. It decides nothing about pull requests: it authenticates, converts and hands
//! over.
//!
//! Each forge has its route and its module (`github.rs`, `gitlab.rs`), a [`Dialect`]: how its
//! deliveries are verified and named, and how its payloads become [`WebhookEvent`]s. The handling
//! around that — body limit, content type, replays, the queue, the answers — is one path for
//! every forge.
//!
//! Responses to the forge (docs/webhooks.md has the table for operators):
//! - 404 when no secret is configured: the bot then takes no webhooks at all.
//! - 413 when the body is larger than [`MAX_BODY_BYTES`].
//! - 401 when `X-Hub-Signature-256` is missing, malformed or wrong (GitLab: `X-Gitlab-Token`
//!   missing or not the secret). Nothing else is looked at before that.
//! - 400 without `X-GitHub-Event` (`X-Gitlab-Event`), or when a payload we act on does not
//!   parse; 415 when the webhook sends form data instead of JSON.
//! - 200 for GitHub's `ping`, for deliveries the bot has nothing to do with (the body says why),
//!   and for a delivery id already queued among the last 1,024 (a replay or a redelivery).
//! - 202 when an event was queued for the engine; 503 when the queue is full or closed (the
//!   next cycle finds the change anyway; the forge shows the failed delivery, which can be
//!   redelivered).

mod event;
mod github;
mod gitlab;
mod limits;
mod metrics;
mod signature;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub use event::{CommentAction, CommentEvent, PrAction, PullRequestEvent, WebhookEvent, WebhookRepo};
pub use limits::ServerLimits;
pub use metrics::Metrics;
pub use signature::{SecretError, WebhookSecret, sign};

use event::Conversion;

/// Largest webhook body taken, all of it read before the signature can be checked. GitHub caps
/// payloads at 25 MB, but the events the bot reads are a few kB to a few hundred kB (a comment
/// and a pull request body are at most 65,536 characters each). With [`ServerLimits`]'s
/// connection cap this bounds what unauthenticated clients can make the bot hold.
pub const MAX_BODY_BYTES: usize = 512 * 1024;

/// Where the secret is configured from: `--webhook-secret-file` or `ARGOCD_IMAGE_PR_WEBHOOK_SECRET`.
pub const SECRET_ENV: &str = "ARGOCD_IMAGE_PR_WEBHOOK_SECRET";

/// The server's command-line options, for `run` to flatten into its own.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Address to serve webhooks, /healthz and /metrics on.
    #[arg(long, env = "ARGOCD_IMAGE_PR_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// File holding the webhook secret (a mounted Secret): GitHub signs its deliveries with it,
    /// GitLab sends it as the webhook's secret token. The environment variable
    /// ARGOCD_IMAGE_PR_WEBHOOK_SECRET may hold the secret itself instead. Without either, webhooks
    /// are refused (404) and the bot relies on its cycle alone.
    #[arg(long, env = "ARGOCD_IMAGE_PR_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,
}

impl ServerArgs {
    /// The configured secret, if any, from the file or from [`SECRET_ENV`] (not both).
    pub fn webhook_secret(&self) -> Result<Option<WebhookSecret>, SecretError> {
        secret_from(self.webhook_secret_file.as_deref(), std::env::var_os(SECRET_ENV))
    }
}

fn secret_from(
    file: Option<&std::path::Path>,
    env: Option<std::ffi::OsString>,
) -> Result<Option<WebhookSecret>, SecretError> {
    match (file, env) {
        (Some(_), Some(_)) => Err(SecretError::Ambiguous),
        (Some(path), None) => WebhookSecret::from_file(path).map(Some),
        (None, Some(value)) => WebhookSecret::new(value.into_encoded_bytes())
            .map(Some)
            .map_err(|_| SecretError::Empty { origin: SECRET_ENV.to_string() }),
        (None, None) => Ok(None),
    }
}

/// What the handlers share: the secret, the engine's queue, the counters.
#[derive(Clone)]
pub struct ServerState {
    inner: Arc<Inner>,
}

struct Inner {
    secret: Option<WebhookSecret>,
    events: mpsc::Sender<WebhookEvent>,
    metrics: Arc<Metrics>,
    /// Ids of the last deliveries queued (GitHub: `X-GitHub-Delivery`): a replayed or
    /// redelivered one is not queued twice.
    recent: std::sync::Mutex<std::collections::VecDeque<String>>,
    /// When the server started, and how long it may go without a finished cycle before
    /// `/healthz` says so (`None`: always healthy).
    health: Option<(std::time::Instant, std::time::Duration)>,
}

/// Delivery ids remembered.
const RECENT_DELIVERIES: usize = 1024;

impl ServerState {
    /// `secret: None` disables webhooks (404). Events go to `events`; use a bounded channel.
    pub fn new(secret: Option<WebhookSecret>, events: mpsc::Sender<WebhookEvent>, metrics: Arc<Metrics>) -> Self {
        ServerState { inner: Arc::new(Inner { secret, events, metrics, recent: Default::default(), health: None }) }
    }

    /// `/healthz` answers 503 once no cycle has finished for `allowed` (counted from now until the
    /// first cycle ends): a daemon stuck in a cycle is restarted, a failing one is not.
    pub fn with_health(self, allowed: std::time::Duration) -> Self {
        let inner = Arc::try_unwrap(self.inner).unwrap_or_else(|_| panic!("with_health is called before the state is shared"));
        ServerState { inner: Arc::new(Inner { health: Some((std::time::Instant::now(), allowed)), ..inner }) }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }
}

impl std::fmt::Debug for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerState").field("secret", &self.inner.secret).finish_non_exhaustive()
    }
}

/// The routes, for [`serve`] or for a test.
pub fn router(state: ServerState) -> Router {
    Router::new()
        .route("/webhooks/github", post(webhook::<github::Github>))
        .route("/webhooks/gitlab", post(webhook::<gitlab::Gitlab>))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Listens on `addr` and serves [`router`] until `shutdown` completes.
pub async fn serve(
    addr: SocketAddr,
    state: ServerState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let listener =
        TcpListener::bind(addr).await.map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    serve_on(listener, state, shutdown).await
}

/// [`serve`] on a listener already bound (port 0 in tests), with the default [`ServerLimits`].
pub async fn serve_on(
    listener: TcpListener,
    state: ServerState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_limited(listener, state, ServerLimits::default(), shutdown).await
}

/// [`serve_on`] with other limits.
pub async fn serve_limited(
    listener: TcpListener,
    state: ServerState,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, webhooks = state.inner.secret.is_some(), max_connections = limits.max_connections, "serving /webhooks/github, /webhooks/gitlab, /healthz, /metrics");
    }
    axum::serve(limits::LimitedListener::new(listener, limits), router(state)).with_graceful_shutdown(shutdown).await
}

async fn healthz(State(state): State<ServerState>) -> Response {
    let Some((started, allowed)) = state.inner.health else { return "ok".into_response() };
    let idle = state.inner.metrics.since_last_cycle().unwrap_or_else(|| started.elapsed());
    if idle > allowed {
        let text = format!("unhealthy: no cycle has finished for {}s (allowed: {}s)\n", idle.as_secs(), allowed.as_secs());
        return (StatusCode::SERVICE_UNAVAILABLE, text).into_response();
    }
    "ok".into_response()
}

async fn metrics(State(state): State<ServerState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.inner.metrics.render()).into_response()
}

/// A forge's webhooks: how a delivery is verified, named and converted. Pure; the forge's
/// headers and JSON stay in its module.
/// A request header as text; `None` when absent or not visible ASCII.
fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

trait Dialect {
    /// The delivery's event as a metric label, from a fixed set (never request data).
    fn event_label(headers: &HeaderMap) -> &'static str;

    /// The delivery's id, for logs and to recognise replays and redeliveries.
    fn delivery_id(headers: &HeaderMap) -> Option<&str>;

    /// Whether `body` was sent by the forge with the configured secret; the error says why not,
    /// for the sender.
    fn verify(secret: &WebhookSecret, headers: &HeaderMap, body: &[u8]) -> Result<(), String>;

    /// The delivery's event name; the error is for the sender.
    fn event(headers: &HeaderMap) -> Result<&str, String>;

    /// A delivery that only checks the hook works: answered at once, never queued.
    fn is_ping(event: &str) -> bool;

    /// A verified delivery as the bot's event; `Err` is a payload that does not parse (a
    /// message for the sender).
    fn convert(event: &str, delivery: Option<&str>, body: &[u8]) -> Result<Conversion, String>;
}

async fn webhook<D: Dialect>(
    State(state): State<ServerState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let event_label = D::event_label(&headers);
    let (status, result, message) = handle::<D>(&state, &headers, body);
    state.inner.metrics.delivery(event_label, result);
    let delivery = D::delivery_id(&headers).unwrap_or("");
    if status.is_client_error() || status.is_server_error() {
        tracing::warn!(delivery, event = event_label, status = status.as_u16(), "webhook refused: {message}");
    } else {
        tracing::debug!(delivery, event = event_label, status = status.as_u16(), "webhook: {message}");
    }
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{message}\n")).into_response()
}

/// (status, metric result label, message for the forge's delivery log)
fn handle<D: Dialect>(
    state: &ServerState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> (StatusCode, &'static str, String) {
    let Some(secret) = &state.inner.secret else {
        return (StatusCode::NOT_FOUND, "disabled", "webhooks are not enabled: no webhook secret is configured".into());
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return (StatusCode::PAYLOAD_TOO_LARGE, "too_large", format!("body larger than {MAX_BODY_BYTES} bytes"));
        }
        Err(rejection) => return (StatusCode::BAD_REQUEST, "bad_request", rejection.body_text()),
    };
    if let Err(e) = D::verify(secret, headers, &body) {
        return (StatusCode::UNAUTHORIZED, "unauthorized", format!("signature refused: {e}"));
    }
    let event = match D::event(headers) {
        Ok(event) => event,
        Err(message) => return (StatusCode::BAD_REQUEST, "bad_request", message),
    };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    if !content_type.starts_with("application/json") {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("content type {content_type:?}: set the webhook's content type to application/json"),
        );
    }
    if D::is_ping(event) {
        return (StatusCode::OK, "ping", "pong".into());
    }
    let delivery = D::delivery_id(headers).filter(|d| !d.is_empty());
    // Checked and recorded under one lock, so two copies of a delivery cannot both pass; the
    // id is forgotten again when the delivery is not queued.
    if let Some(id) = delivery {
        let mut recent = state.inner.recent.lock().unwrap();
        if recent.iter().any(|d| d == id) {
            return (StatusCode::OK, "duplicate", format!("delivery {id} was already taken"));
        }
        if recent.len() == RECENT_DELIVERIES {
            recent.pop_front();
        }
        recent.push_back(id.to_string());
    }
    let forget = || {
        if let Some(id) = delivery {
            state.inner.recent.lock().unwrap().retain(|d| d != id);
        }
    };
    let answer = match D::convert(event, delivery, &body) {
        Err(message) => (StatusCode::BAD_REQUEST, "bad_request", message),
        Ok(Conversion::Ignored(reason)) => (StatusCode::OK, "ignored", format!("ignored: {reason}")),
        Ok(Conversion::Event(event)) => match state.inner.events.try_send(event) {
            Ok(()) => (StatusCode::ACCEPTED, "queued", "queued".into()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "busy", "the bot is busy; the next cycle will see this change".into())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "busy", "the bot is shutting down".into())
            }
        },
    };
    if answer.0 != StatusCode::ACCEPTED {
        forget();
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `POST /webhooks/gitlab` as the handler sees it: the token decides before anything else,
    /// and only a verified delivery the bot acts on reaches the queue.
    #[test]
    fn gitlab_deliveries_need_the_secret_as_their_token() {
        let (tx, mut rx) = mpsc::channel(4);
        let state = ServerState::new(Some(WebhookSecret::new("s3cret").unwrap()), tx, Arc::new(Metrics::new()));
        let note = br#"{"object_kind": "note", "user": {"username": "alice"},
            "project": {"path_with_namespace": "group/gitops", "git_http_url": "https://gitlab.example.com/group/gitops.git"},
            "object_attributes": {"id": 77, "note": "/pin api", "noteable_type": "MergeRequest", "system": false, "action": "create"},
            "merge_request": {"iid": 3}}"#;
        let headers = |token: Option<&str>, uuid: &str| {
            let mut h = HeaderMap::new();
            h.insert("x-gitlab-event", "Note Hook".parse().unwrap());
            h.insert("x-gitlab-event-uuid", uuid.parse().unwrap());
            h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
            if let Some(t) = token {
                h.insert("x-gitlab-token", t.parse().unwrap());
            }
            h
        };
        let body = || Ok(Bytes::from_static(note));
        for (name, token) in [("missing", None), ("wrong", Some("s3cre")), ("a signature", Some("sha256=00"))] {
            let (status, result, _) = handle::<gitlab::Gitlab>(&state, &headers(token, "u-1"), body());
            assert_eq!((status, result), (StatusCode::UNAUTHORIZED, "unauthorized"), "case {name}");
            assert!(rx.try_recv().is_err(), "case {name}: nothing queued");
        }
        let (status, result, _) = handle::<gitlab::Gitlab>(&state, &headers(Some("s3cret"), "u-1"), body());
        assert_eq!((status, result), (StatusCode::ACCEPTED, "queued"));
        let WebhookEvent::Comment(c) = rx.try_recv().unwrap() else { panic!("a comment event") };
        assert_eq!((c.repo.full_name.as_str(), c.pr, c.comment_id, c.author.as_str()), ("group/gitops", 3, 77, "alice"));
        let (status, result, _) = handle::<gitlab::Gitlab>(&state, &headers(Some("s3cret"), "u-1"), body());
        assert_eq!((status, result), (StatusCode::OK, "duplicate"), "the same delivery again");
        let mut push = headers(Some("s3cret"), "u-2");
        push.insert("x-gitlab-event", "Push Hook".parse().unwrap());
        let (status, result, _) = handle::<gitlab::Gitlab>(&state, &push, Ok(Bytes::from_static(b"{}")));
        assert_eq!((status, result), (StatusCode::OK, "ignored"));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn secret_from_file_or_environment_not_both() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "from-file\n").unwrap();
        assert!(secret_from(None, None).unwrap().is_none());
        assert!(secret_from(Some(&file), None).unwrap().is_some());
        assert!(secret_from(None, Some("from-env".into())).unwrap().is_some());
        assert!(matches!(secret_from(Some(&file), Some("x".into())), Err(SecretError::Ambiguous)));
        let empty = secret_from(None, Some("".into())).unwrap_err();
        assert_eq!(empty.to_string(), "the webhook secret from ARGOCD_IMAGE_PR_WEBHOOK_SECRET is empty");
    }
}
