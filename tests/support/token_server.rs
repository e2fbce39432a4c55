//! A tiny token server for a registry in `auth.token` mode, the realm handshake Docker Hub,
//! GHCR and GCR use: `GET /token?service=..&scope=repository:<name>:pull[,push]` with basic
//! credentials answers `{"token": <JWT>}`. JWTs are RS256, with an `x5c` header holding a
//! self-signed certificate that the registry trusts through `auth.token.rootcertbundle`.
//!
//! It runs on a thread and runtime of its own, so a test that blocks on the binary under test
//! never starves it. It counts the tokens it issued, so a test can tell it was really used.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use openssl::x509::extension::{BasicConstraints, KeyUsage};
use openssl::x509::X509;

pub struct TokenServer {
    addr: std::net::SocketAddr,
    cert_path: PathBuf,
    state: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    user: String,
    pass: String,
    key: PKey<Private>,
    cert_der: Vec<u8>,
    issued: AtomicUsize,
    refused: AtomicUsize,
}

impl TokenServer {
    pub const SERVICE: &'static str = "aipr-test-registry";
    pub const ISSUER: &'static str = "aipr-test-token-issuer";

    /// Starts on `127.0.0.1:<any port>`; writes the signing certificate to `dir/token-root.pem`.
    pub fn start(user: &str, pass: &str, dir: &Path) -> Self {
        let (key, cert) = self_signed();
        let cert_path = dir.join("token-root.pem");
        std::fs::write(&cert_path, cert.to_pem().unwrap()).expect("write token root cert");
        let state = Arc::new(Shared {
            user: user.into(),
            pass: pass.into(),
            key,
            cert_der: cert.to_der().unwrap(),
            issued: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
        });
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let app_state = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let app = axum::Router::new()
                    .route("/token", axum::routing::get(token))
                    .with_state(app_state);
                tokio::select! {
                    _ = axum::serve(listener, app) => {}
                    _ = shutdown_rx => {}
                }
            });
        });
        let addr = addr_rx.recv().expect("token server did not start");
        TokenServer { addr, cert_path, state, shutdown: Some(shutdown), thread: Some(thread) }
    }

    /// The `realm` the registry sends clients to.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// Tokens issued so far.
    pub fn issued(&self) -> usize {
        self.state.issued.load(Ordering::SeqCst)
    }

    /// Requests refused for missing or wrong credentials.
    pub fn refused(&self) -> usize {
        self.state.refused.load(Ordering::SeqCst)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn token(State(state): State<Arc<Shared>>, RawQuery(query): RawQuery, headers: HeaderMap) -> Response {
    let authorized = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
        .map(|raw| raw == format!("{}:{}", state.user, state.pass).into_bytes())
        .unwrap_or(false);
    if !authorized {
        state.refused.fetch_add(1, Ordering::SeqCst);
        let body = serde_json::json!({"errors": [{"code": "UNAUTHORIZED", "message": "wrong credentials"}]});
        return (
            StatusCode::UNAUTHORIZED,
            [(axum::http::header::WWW_AUTHENTICATE, "Basic realm=\"token\"")],
            axum::Json(body),
        )
            .into_response();
    }
    let mut service = String::new();
    let mut access = Vec::new();
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "service" => service = v.into_owned(),
            "scope" => {
                for scope in v.split(' ') {
                    // repository:<name>:<actions>; a name never holds ':'.
                    let parts: Vec<&str> = scope.splitn(3, ':').collect();
                    if let [kind, name, actions] = parts[..] {
                        let actions: Vec<&str> = actions.split(',').filter(|a| *a == "pull" || *a == "push").collect();
                        access.push(serde_json::json!({"type": kind, "name": name, "actions": actions}));
                    }
                }
            }
            _ => {}
        }
    }
    if service.is_empty() {
        service = TokenServer::SERVICE.to_string();
    }
    let now = chrono::Utc::now().timestamp();
    let n = state.issued.fetch_add(1, Ordering::SeqCst);
    let claims = serde_json::json!({
        "iss": TokenServer::ISSUER,
        "sub": state.user,
        "aud": service,
        "exp": now + 600,
        "nbf": now - 60,
        "iat": now,
        "jti": format!("aipr-test-{n}-{now}"),
        "access": access,
    });
    let jwt = sign_jwt(&state.key, &state.cert_der, &claims);
    let issued_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    axum::Json(serde_json::json!({
        "token": jwt, "access_token": jwt, "expires_in": 600, "issued_at": issued_at,
    }))
    .into_response()
}

fn sign_jwt(key: &PKey<Private>, cert_der: &[u8], claims: &serde_json::Value) -> String {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let header = serde_json::json!({
        "typ": "JWT",
        "alg": "RS256",
        "x5c": [base64::engine::general_purpose::STANDARD.encode(cert_der)],
    });
    let signing_input = format!(
        "{}.{}",
        b64(&serde_json::to_vec(&header).unwrap()),
        b64(&serde_json::to_vec(claims).unwrap())
    );
    let mut signer = Signer::new(MessageDigest::sha256(), key).unwrap();
    signer.update(signing_input.as_bytes()).unwrap();
    let signature = signer.sign_to_vec().unwrap();
    format!("{signing_input}.{}", b64(&signature))
}

fn self_signed() -> (PKey<Private>, X509) {
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut b = super::tls::builder(TokenServer::ISSUER, None, &key);
    b.append_extension(BasicConstraints::new().critical().ca().build().unwrap()).unwrap();
    b.append_extension(KeyUsage::new().critical().digital_signature().key_cert_sign().build().unwrap())
        .unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    (key, b.build())
}
