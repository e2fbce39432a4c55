//! Behaviour tests of the client against a small fake registry on loopback that follows the
//! distribution spec where the real `docker-registry` cannot be used: `n`/`last` pagination
//! with `Link`, 429 with Retry-After, and a Bearer token server. Everything else is tested
//! end to end against the real registry elsewhere.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use super::*;

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

#[derive(Clone, Copy, PartialEq)]
enum AuthMode {
    Anonymous,
    /// Bearer tokens from `/token`; the token server wants these Basic credentials.
    Bearer { user: &'static str, pass: &'static str },
    /// Basic auth on every registry request.
    Basic { user: &'static str, pass: &'static str },
}

fn basic(user: &str, pass: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}")))
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
struct Hit {
    method: String,
    path: String,
    query: String,
    status: u16,
}

struct Fake {
    auth: AuthMode,
    page_size: usize,
    /// repo → tag → manifest digest (`None` tags = `"tags": null`).
    tags: HashMap<String, Option<BTreeMap<String, String>>>,
    /// digest → (media type, body), manifests and blobs alike.
    content: HashMap<String, (String, Vec<u8>)>,
    throttle: AtomicU32,
    retry_after: &'static str,
    tokens_issued: AtomicU32,
    hits: Mutex<Vec<Hit>>,
    /// (repository, tag) → digest, over `tags`: a tag pushed again while the fake serves.
    moved: Mutex<HashMap<(String, String), String>>,
    /// Sent as `RateLimit-Remaining` with manifests, as Docker Hub does.
    remaining: Mutex<Option<String>>,
}

fn sha(body: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}

impl Fake {
    fn new(auth: AuthMode) -> Self {
        Fake {
            auth,
            page_size: 3,
            tags: HashMap::new(),
            content: HashMap::new(),
            throttle: AtomicU32::new(0),
            retry_after: "1",
            tokens_issued: AtomicU32::new(0),
            hits: Mutex::default(),
            moved: Mutex::default(),
            remaining: Mutex::default(),
        }
    }

    fn put(&mut self, media_type: &str, body: Vec<u8>) -> String {
        let d = sha(&body);
        self.content.insert(d.clone(), (media_type.to_string(), body));
        d
    }

    fn tag(&mut self, repo: &str, tag: &str, digest: &str) {
        self.tags.entry(repo.into()).or_insert_with(|| Some(BTreeMap::new())).as_mut().unwrap().insert(tag.into(), digest.into());
    }

    /// An image manifest with a config blob; returns the manifest digest.
    fn image(&mut self, os: &str, arch: &str, variant: Option<&str>, created: &str) -> String {
        let mut cfg = serde_json::json!({"created": created, "os": os, "architecture": arch, "rootfs": {"type": "layers", "diff_ids": []}});
        if let Some(v) = variant {
            cfg["variant"] = v.into();
        }
        let cfg = serde_json::to_vec(&cfg).unwrap();
        let cfg_len = cfg.len();
        let cfg_digest = self.put("application/vnd.oci.image.config.v1+json", cfg);
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_digest, "size": cfg_len},
            "layers": []
        });
        self.put(OCI_MANIFEST, serde_json::to_vec(&manifest).unwrap())
    }

    fn index(&mut self, entries: &[(&str, &str, &str, Option<&str>)]) -> String {
        let manifests: Vec<_> = entries
            .iter()
            .map(|(digest, os, arch, variant)| {
                let mut p = serde_json::json!({"os": os, "architecture": arch});
                if let Some(v) = variant {
                    p["variant"] = (*v).into();
                }
                serde_json::json!({"mediaType": OCI_MANIFEST, "digest": digest, "size": 1, "platform": p})
            })
            .collect();
        let body = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
        self.put(OCI_INDEX, serde_json::to_vec(&body).unwrap())
    }

    fn hits(&self, pred: impl Fn(&Hit) -> bool) -> usize {
        self.hits.lock().unwrap().iter().filter(|h| pred(h)).count()
    }

    fn authorized(&self, headers: &HeaderMap, repo: &str) -> bool {
        match self.auth {
            AuthMode::Anonymous => true,
            AuthMode::Basic { user, pass } => {
                headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) == Some(basic(user, pass).as_str())
            }
            AuthMode::Bearer { .. } => headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .is_some_and(|tok| tok.ends_with(&format!("|repository:{repo}:pull"))),
        }
    }
}

async fn serve(fake: Fake) -> (Arc<Fake>, String) {
    let fake = Arc::new(fake);
    let app = axum::Router::new().fallback(handle).with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (fake, format!("127.0.0.1:{}", addr.port()))
}

fn query_param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

async fn handle(State(f): State<Arc<Fake>>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("").to_string();
    let resp = route(&f, &method, &path, &query, &headers);
    f.hits.lock().unwrap().push(Hit { method: method.to_string(), path, query, status: resp.status().as_u16() });
    resp
}

fn route(f: &Fake, method: &Method, path: &str, query: &str, headers: &HeaderMap) -> Response {
    if f.throttle.load(Ordering::SeqCst) > 0 {
        f.throttle.fetch_sub(1, Ordering::SeqCst);
        return (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, f.retry_after)], "slow down").into_response();
    }
    let not_found = |code: &str| (StatusCode::NOT_FOUND, format!(r#"{{"errors":[{{"code":"{code}","message":"unknown"}}]}}"#)).into_response();
    if path == "/token" {
        let AuthMode::Bearer { user, pass } = f.auth else { return not_found("UNSUPPORTED") };
        let want = basic(user, pass);
        if headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some(want.as_str()) {
            return (StatusCode::UNAUTHORIZED, "bad credentials").into_response();
        }
        let n = f.tokens_issued.fetch_add(1, Ordering::SeqCst);
        let scope = query_param(query, "scope").unwrap_or_default();
        assert_eq!(query_param(query, "service").as_deref(), Some("fake-registry"));
        return axum::Json(serde_json::json!({"token": format!("tok{n}|{scope}"), "expires_in": 300})).into_response();
    }
    let Some(rest) = path.strip_prefix("/v2/") else { return not_found("UNSUPPORTED") };
    let (repo, kind, reference) = if let Some(repo) = rest.strip_suffix("/tags/list") {
        (repo, "tags", "")
    } else if let Some((repo, r)) = rest.split_once("/manifests/") {
        (repo, "manifests", r)
    } else if let Some((repo, r)) = rest.split_once("/blobs/") {
        (repo, "blobs", r)
    } else {
        return not_found("UNSUPPORTED");
    };
    if !f.authorized(headers, repo) {
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
        let challenge = match f.auth {
            AuthMode::Basic { .. } => r#"Basic realm="Registry Realm, fake""#.to_string(),
            _ => format!(r#"Bearer realm="http://{host}/token",service="fake-registry",scope="repository:{repo}:pull""#),
        };
        return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, challenge)], r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#).into_response();
    }
    let Some(tags) = f.tags.get(repo) else { return not_found("NAME_UNKNOWN") };
    match kind {
        "tags" => {
            let Some(tags) = tags else {
                return axum::Json(serde_json::json!({"name": repo, "tags": null})).into_response();
            };
            // Spec: the server may return fewer than `n`; it caps pages at `page_size`.
            let n = query_param(query, "n").and_then(|n| n.parse().ok()).unwrap_or(usize::MAX).min(f.page_size);
            let last = query_param(query, "last");
            let page: Vec<&String> = tags.keys().filter(|t| last.as_ref().is_none_or(|l| *t > l)).take(n).collect();
            let body = axum::Json(serde_json::json!({"name": repo, "tags": page}));
            match page.last() {
                Some(l) if tags.keys().next_back() != Some(*l) => {
                    // Alternate relative and absolute targets: both are allowed.
                    let target = format!("/v2/{repo}/tags/list?n={n}&last={l}");
                    let target = if l.ends_with(['1', '3', '5', '7', '9']) {
                        let host = headers.get(header::HOST).unwrap().to_str().unwrap();
                        format!("http://{host}{target}")
                    } else {
                        target
                    };
                    ([(header::LINK, format!("<{target}>; rel=\"next\""))], body).into_response()
                }
                _ => body.into_response(),
            }
        }
        "manifests" => {
            let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
            let moved = f.moved.lock().unwrap().get(&(repo.to_string(), reference.to_string())).cloned();
            let digest = moved.as_deref().or(tags.as_ref().and_then(|t| t.get(reference)).map(String::as_str)).unwrap_or(reference);
            let Some((media_type, body)) = f.content.get(digest) else { return not_found("MANIFEST_UNKNOWN") };
            // Like distribution: no acceptable media type → 404.
            if !accept.contains(media_type.as_str()) {
                return not_found("MANIFEST_UNKNOWN");
            }
            let body = if method == Method::HEAD { Body::empty() } else { Body::from(body.clone()) };
            let mut reply =
                ([(header::CONTENT_TYPE, media_type.clone()), (header::HeaderName::from_static("docker-content-digest"), digest.to_string())], body)
                    .into_response();
            if let Some(left) = f.remaining.lock().unwrap().clone() {
                reply.headers_mut().insert("ratelimit-remaining", left.parse().unwrap());
            }
            reply
        }
        _ => match f.content.get(reference) {
            Some((_, body)) => body.clone().into_response(),
            None => not_found("BLOB_UNKNOWN"),
        },
    }
}

fn client() -> RegistryClient {
    RegistryClient::new(&RegistrySettings::default(), None).unwrap()
}

fn image(host: &str, repo: &str) -> ImageName {
    ImageName::parse(&format!("{host}/{repo}")).unwrap()
}

#[tokio::test]
async fn tag_list_follows_every_link_page() {
    let mut fake = Fake::new(AuthMode::Anonymous);
    let d = fake.image("linux", "amd64", None, "2024-01-01T00:00:00Z");
    let want: Vec<String> = (0..10).map(|i| format!("1.{i}")).collect();
    for t in &want {
        fake.tag("team/app", t, &d);
    }
    fake.tags.insert("empty".into(), None);
    let (fake, host) = serve(fake).await;
    let c = client();

    let tags = c.list_tags(&image(&host, "team/app"), None).await.unwrap();
    assert_eq!(tags.to_vec(), want, "every tag of every page, in order");
    let pages: Vec<String> = fake.hits.lock().unwrap().iter().filter(|h| h.path.ends_with("/tags/list")).map(|h| h.query.clone()).collect();
    assert_eq!(pages, ["n=1000", "n=3&last=1.2", "n=3&last=1.5", "n=3&last=1.8"]);
    assert_eq!(c.request_count(), 4);

    // Cached for the run.
    c.list_tags(&image(&host, "team/app"), None).await.unwrap();
    assert_eq!(c.request_count(), 4);

    // Distribution's `"tags": null` after all tags were deleted.
    assert!(c.list_tags(&image(&host, "empty"), None).await.unwrap().is_empty());

    // A missing repository: the error names registry and repository, and is kept for the run.
    let err = c.list_tags(&image(&host, "nope"), None).await.unwrap_err();
    assert_eq!(err.kind, RegistryErrorKind::NotFound);
    let msg = err.to_string();
    assert!(msg.contains(&host) && msg.contains("repository nope") && msg.contains("NAME_UNKNOWN"), "{msg}");
    let before = c.request_count();
    assert_eq!(c.list_tags(&image(&host, "nope"), None).await.unwrap_err(), err);
    assert_eq!(c.request_count(), before);
}

#[tokio::test]
async fn waits_for_retry_after_on_429() {
    let mut fake = Fake::new(AuthMode::Anonymous);
    let d = fake.image("linux", "amd64", None, "2024-01-01T00:00:00Z");
    fake.tag("app", "v1", &d);
    fake.throttle.store(1, Ordering::SeqCst);
    let (fake, host) = serve(fake).await;
    let c = client();

    let started = std::time::Instant::now();
    let tags = c.list_tags(&image(&host, "app"), None).await.unwrap();
    assert_eq!(tags.to_vec(), ["v1"]);
    assert!(started.elapsed() >= Duration::from_millis(900), "waited Retry-After: {:?}", started.elapsed());
    let statuses: Vec<u16> = fake.hits.lock().unwrap().iter().map(|h| h.status).collect();
    assert_eq!(statuses, [429, 200]);
    assert_eq!(c.request_count(), 2);
}

#[tokio::test]
async fn gives_up_after_five_throttled_retries() {
    let mut fake = Fake::new(AuthMode::Anonymous);
    fake.tags.insert("app".into(), None);
    fake.throttle.store(100, Ordering::SeqCst);
    fake.retry_after = "0";
    let (fake, host) = serve(fake).await;
    let err = client().list_tags(&image(&host, "app"), None).await.unwrap_err();
    assert_eq!(err.kind, RegistryErrorKind::RateLimited, "{err}");
    assert!(err.to_string().contains("repository app"), "{err}");
    assert_eq!(fake.hits(|_| true), 6, "first try + 5 retries");
}

#[tokio::test]
async fn bearer_tokens_are_fetched_once_and_reused() {
    let mut fake = Fake::new(AuthMode::Bearer { user: "robot", pass: "s3:cr:et" });
    let d = fake.image("linux", "amd64", None, "2024-01-01T00:00:00Z");
    fake.tag("app", "v1", &d);
    fake.tag("app", "v2", &d);
    fake.tag("other", "v1", &d);
    let (fake, host) = serve(fake).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.json");
    let auth = base64::engine::general_purpose::STANDARD.encode("robot:s3:cr:et");
    std::fs::write(&cfg, format!(r#"{{"auths":{{"http://{host}/v2/":{{"auth":"{auth}"}}}}}}"#)).unwrap();
    let c = Arc::new(RegistryClient::new(&RegistrySettings { docker_configs: vec![cfg], ..Default::default() }, None).unwrap());

    // Ten concurrent callers share one listing.
    let img = image(&host, "app");
    let calls = (0..10).map(|_| {
        let (c, img) = (c.clone(), img.clone());
        tokio::spawn(async move { c.list_tags(&img, None).await })
    });
    for r in futures::future::join_all(calls).await {
        assert_eq!(r.unwrap().unwrap().to_vec(), ["v1", "v2"]);
    }
    let tag_lists = |repo: &str| fake.hits(|h| h.path == format!("/v2/{repo}/tags/list") && h.status == 200);
    assert_eq!(tag_lists("app"), 1, "one tag list per repository");
    assert_eq!(fake.tokens_issued.load(Ordering::SeqCst), 1);
    assert_eq!(fake.hits(|h| h.status == 401), 1, "challenged once");

    // Same repository: the cached token is sent up front.
    let meta = c.tag_metadata(&img, "v1", &[Platform::linux_amd64()], None).await.unwrap();
    assert_eq!(meta.digest, d);
    assert_eq!(fake.tokens_issued.load(Ordering::SeqCst), 1);
    // Another repository: its own token, fetched without another 401 round trip.
    c.list_tags(&image(&host, "other"), None).await.unwrap();
    assert_eq!(tag_lists("other"), 1);
    assert_eq!(fake.tokens_issued.load(Ordering::SeqCst), 2);
    assert_eq!(fake.hits(|h| h.status == 401), 1);
    assert_eq!(c.request_count() as usize, fake.hits(|_| true), "every request counted, token requests too");

    // An annotation may not name an environment variable or a script (issue 15): refused
    // before any request, naming the reference, the registry and the image.
    // SAFETY: the variable name is unique to this test.
    unsafe { std::env::set_var("AIPR_TEST_REGISTRY_WRONG", "robot:wrong") };
    let before = fake.hits(|_| true);
    for reference in ["env:AIPR_TEST_REGISTRY_WRONG", "ext:/usr/bin/env", "secret:argocd/argocd-secret#admin.password"] {
        let err = c.list_tags(&img, Some(reference)).await.unwrap_err();
        assert_eq!(err.kind, RegistryErrorKind::Credentials, "{err}");
        let msg = err.to_string();
        assert!(msg.contains(&host) && msg.contains(reference) && msg.contains("registries.conf"), "{msg}");
    }
    assert_eq!(fake.hits(|_| true), before, "nothing was sent");

    // A pull secret without a cluster: a clear error naming reference and image.
    let err = c.list_tags(&img, Some("pullsecret:argocd/regcred")).await.unwrap_err();
    assert_eq!(err.kind, RegistryErrorKind::Credentials);
    assert!(err.to_string().contains("pullsecret:argocd/regcred") && err.to_string().contains(&format!("{host}/app")), "{err}");
}

#[tokio::test]
async fn index_platforms_and_config_cache() {
    let mut fake = Fake::new(AuthMode::Anonymous);
    let amd = fake.image("linux", "amd64", None, "2024-03-01T10:00:00Z");
    let arm = fake.image("linux", "arm64", Some("v8"), "2024-03-02T10:00:00Z");
    let idx = fake.index(&[(&amd, "linux", "amd64", None), (&arm, "linux", "arm64", Some("v8")), (&amd, "unknown", "unknown", None)]);
    fake.tag("app", "1.0", &idx);
    fake.tag("app", "1.0-again", &idx);
    fake.tag("app", "amd-only", &amd);
    let (fake, host) = serve(fake).await;
    let c = client();
    let img = image(&host, "app");
    let p = |s: &str| Platform::parse(s).unwrap();
    let at = |s: &str| Some(DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc));

    // (case, tag, platforms asked for, created, platform_found)
    type Case<'a> = (&'a str, &'a str, Vec<Platform>, Option<DateTime<Utc>>, bool);
    let cases: &[Case] = &[
        ("amd64 from the index", "1.0", vec![p("linux/amd64")], at("2024-03-01T10:00:00Z"), true),
        ("arm64 without variant matches v8", "1.0", vec![p("linux/arm64")], at("2024-03-02T10:00:00Z"), true),
        ("newest of several", "1.0", vec![p("linux/amd64"), p("linux/arm64/v8")], at("2024-03-02T10:00:00Z"), true),
        ("wrong variant", "1.0", vec![p("linux/arm64/v7")], None, false),
        ("absent platform", "1.0", vec![p("windows/amd64")], None, false),
        ("other tag, same index", "1.0-again", vec![p("linux/amd64")], at("2024-03-01T10:00:00Z"), true),
        ("single manifest, platform from config", "amd-only", vec![p("linux/amd64")], at("2024-03-01T10:00:00Z"), true),
        ("single manifest, other platform", "amd-only", vec![p("linux/arm64")], at("2024-03-01T10:00:00Z"), false),
    ];
    for (name, tag, platforms, created, found) in cases {
        let m = c.tag_metadata(&img, tag, platforms, None).await.unwrap();
        let want_digest = if tag.starts_with("amd") { &amd } else { &idx };
        assert_eq!(&m.digest, want_digest, "case {name}");
        assert_eq!(m.created, *created, "case {name}");
        assert_eq!(m.platform_found, *found, "case {name}");
    }
    // Each config blob fetched once, however many tags and platforms asked for it.
    let blob_gets: Vec<String> = fake.hits.lock().unwrap().iter().filter(|h| h.path.contains("/blobs/")).map(|h| h.path.clone()).collect();
    assert_eq!(blob_gets.len(), 2, "{blob_gets:?}");
    // Manifests cached per (repository, reference): the index once per tag (2), its two
    // matching children by digest, and `amd-only`.
    assert_eq!(fake.hits(|h| h.path.contains("/manifests/")), 5);

    // Digest only: one HEAD for an unknown tag, none for a manifest already fetched.
    let before = c.request_count();
    assert_eq!(c.tag_digest(&img, "1.0", None).await.unwrap(), idx);
    assert_eq!(c.request_count(), before);
    fake.hits.lock().unwrap().clear();
    let d = c.tag_digest(&ImageName::parse(&format!("{host}/app")).unwrap(), "amd-only", Some("")).await.unwrap();
    assert_eq!(d, amd);
    let mut fresh = client();
    let d = fresh.tag_digest(&img, "1.0-again", None).await.unwrap();
    assert_eq!(d, idx);
    assert_eq!(fresh.request_count(), 1);
    assert_eq!(fake.hits(|h| h.method == "HEAD"), 1);
    fresh = client();
    let err = fresh.tag_metadata(&img, "9.9", &[], None).await.unwrap_err();
    assert_eq!(err.kind, RegistryErrorKind::NotFound);
    let msg = err.to_string();
    assert!(msg.contains(&host) && msg.contains("repository app") && msg.contains("tag 9.9"), "{msg}");
}

#[tokio::test]
async fn basic_auth_from_registries_conf_with_rate_limit() {
    let mut fake = Fake::new(AuthMode::Basic { user: "_json_key", pass: "{\n \"k\": \"a:b\"\n}" });
    let d = fake.image("linux", "amd64", None, "2024-01-01T00:00:00Z");
    for t in ["a", "b", "c", "d", "e", "f", "g"] {
        fake.tag("app", t, &d);
    }
    fake.tag("other", "v1", &d);
    let (fake, host) = serve(fake).await;
    // SAFETY: the variable name is unique to this test.
    unsafe { std::env::set_var("AIPR_TEST_REGISTRY_JSON_KEY", "_json_key:{\n \"k\": \"a:b\"\n}") };
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("registries.conf");
    std::fs::write(
        &conf,
        format!("registries:\n- name: Fake\n  prefix: {host}\n  api_url: http://{host}\n  credentials: env:AIPR_TEST_REGISTRY_JSON_KEY\n  limit: 20\n"),
    )
    .unwrap();
    let c = RegistryClient::new(&RegistrySettings { registries_conf: Some(conf), ..Default::default() }, None).unwrap();

    let started = std::time::Instant::now();
    assert_eq!(c.list_tags(&image(&host, "app"), None).await.unwrap().len(), 7);
    c.list_tags(&image(&host, "other"), None).await.unwrap();
    // 401, then 3 pages of `app`, then `other` with Basic sent up front.
    assert_eq!(fake.hits(|h| h.status == 401), 1);
    assert_eq!(fake.hits(|_| true), 5);
    // `limit: 20` spaces 5 requests by 50 ms.
    assert!(started.elapsed() >= Duration::from_millis(190), "rate limited: {:?}", started.elapsed());
}

#[tokio::test]
async fn the_driver_keeps_its_client_across_cycles_and_reloads_changed_settings() {
    use crate::ports::Registry as _;
    let mut fake = Fake::new(AuthMode::Bearer { user: "robot", pass: "s3:cr:et" });
    let d = fake.image("linux", "amd64", None, "2024-01-01T00:00:00Z");
    fake.tag("app", "v1", &d);
    let (fake, host) = serve(fake).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.json");
    let auth = base64::engine::general_purpose::STANDARD.encode("robot:s3:cr:et");
    std::fs::write(&cfg, format!(r#"{{"auths":{{"http://{host}/v2/":{{"auth":"{auth}"}}}}}}"#)).unwrap();
    let conf = dir.path().join("registries.conf");
    std::fs::write(&conf, "registries: []\n").unwrap();
    let driver =
        RegistryDriver::new(RegistrySettings { registries_conf: Some(conf.clone()), docker_configs: vec![cfg], ..Default::default() }, None);
    let img = image(&host, "app");
    let tag_lists = || fake.hits(|h| h.path == "/v2/app/tags/list" && h.status == 200);

    driver.begin_cycle().unwrap();
    assert_eq!(driver.list_tags(&img, None).await.unwrap().to_vec(), ["v1"]);
    driver.list_tags(&img, None).await.unwrap();
    assert_eq!(tag_lists(), 1, "one listing per repository per cycle");
    let first_cycle = driver.request_count();
    assert_eq!(first_cycle, 3, "401, token, tag list");

    // The next cycle lists again (tags move) with the token it already has.
    driver.begin_cycle().unwrap();
    assert_eq!(driver.request_count(), 0, "requests are counted per cycle");
    driver.list_tags(&img, None).await.unwrap();
    assert_eq!(tag_lists(), 2);
    assert_eq!(fake.tokens_issued.load(Ordering::SeqCst), 1, "the token outlives the cycle");
    assert_eq!(driver.request_count(), 1);

    // A broken registries.conf (a ConfigMap edited in place) fails the cycle, naming the file;
    // once fixed, the next cycle works again with a client built anew.
    std::fs::write(&conf, "registries:\n- name: Broken\n  prefix: [\n").unwrap();
    let err = driver.begin_cycle().unwrap_err();
    assert!(err.to_string().contains("registries.conf"), "{err}");
    assert!(driver.list_tags(&img, None).await.is_err(), "nothing is asked with a broken configuration");
    std::fs::write(&conf, "registries: []\n").unwrap();
    driver.begin_cycle().unwrap();
    assert_eq!(driver.list_tags(&img, None).await.unwrap().to_vec(), ["v1"]);
    assert_eq!(fake.tokens_issued.load(Ordering::SeqCst), 2, "a rebuilt client asks for its own token");
}

/// A self-signed certificate, as PEM.
fn self_signed_pem(cn: &str) -> String {
    use openssl::x509::{X509, X509NameBuilder};
    let key = openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap()).unwrap();
    b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(1).unwrap()).unwrap();
    b.sign(&key, openssl::hash::MessageDigest::sha256()).unwrap();
    String::from_utf8(b.build().to_pem().unwrap()).unwrap()
}

#[tokio::test]
async fn a_kept_driver_runs_ext_scripts_again_each_cycle_and_notices_a_changed_ca_file() {
    use crate::ports::Registry as _;
    let mut fake = Fake::new(AuthMode::Basic { user: "robot", pass: "pw" });
    let d = fake.image("linux", "amd64", None, "2024-01-01T00:00:00Z");
    fake.tag("app", "v1", &d);
    let (_fake, host) = serve(fake).await;
    let dir = tempfile::tempdir().unwrap();
    // An `ext:` script without `credsexpire` was "valid for the run": a daemon's run is a cycle.
    let runs = dir.path().join("runs");
    let script = dir.path().join("creds.sh");
    std::fs::write(&script, format!("#!/bin/sh\necho x >> {}\necho robot:pw\n", runs.display())).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, self_signed_pem("first")).unwrap();
    let conf = dir.path().join("registries.conf");
    std::fs::write(
        &conf,
        format!(
            "registries:\n- name: Fake\n  prefix: {host}\n  api_url: http://{host}\n  credentials: ext:{}\n- name: Other\n  prefix: other.example\n  api_url: https://other.example\n  ca_file: {}\n",
            script.display(),
            ca.display()
        ),
    )
    .unwrap();
    let driver = RegistryDriver::new(RegistrySettings { registries_conf: Some(conf), ..Default::default() }, None);
    let img = image(&host, "app");
    let script_runs = || std::fs::read_to_string(&runs).unwrap_or_default().lines().count();

    driver.begin_cycle().unwrap();
    driver.list_tags(&img, None).await.unwrap();
    driver.list_tags(&image(&host, "app"), None).await.unwrap();
    assert_eq!(script_runs(), 1, "once per cycle");
    driver.begin_cycle().unwrap();
    driver.list_tags(&img, None).await.unwrap();
    assert_eq!(script_runs(), 2, "and again the next cycle");

    // The CA file registries.conf names is part of the settings: a rotated one is read again
    // (here: replaced by something that is no certificate, which fails the cycle, naming it).
    std::fs::write(&ca, "not a certificate\n").unwrap();
    let err = driver.begin_cycle().unwrap_err();
    assert!(err.to_string().contains("ca_file") && err.to_string().contains("ca.pem"), "{err}");
    std::fs::write(&ca, self_signed_pem("second")).unwrap();
    driver.begin_cycle().unwrap();
    assert_eq!(driver.list_tags(&img, None).await.unwrap().to_vec(), ["v1"]);
}

/// Issue 12, point 2: a later cycle asks each tag's digest with one `HEAD` and reads nothing
/// more while it is unchanged (manifests and configs by digest are kept); a tag pushed again is
/// read again; the answers are a cold cycle's.
#[tokio::test]
async fn a_later_cycle_revalidates_tags_with_head_only() {
    let mut fake = Fake::new(AuthMode::Anonymous);
    let amd = fake.image("linux", "amd64", None, "2024-03-01T10:00:00Z");
    let arm = fake.image("linux", "arm64", None, "2024-03-02T10:00:00Z");
    let idx = fake.index(&[(&amd, "linux", "amd64", None), (&arm, "linux", "arm64", None)]);
    let newer = fake.image("linux", "amd64", None, "2024-04-01T10:00:00Z");
    fake.tag("app", "1.0", &idx);
    fake.tag("app", "single", &amd);
    let (fake, host) = serve(fake).await;
    let c = client();
    let img = image(&host, "app");
    let amd64 = [Platform::linux_amd64()];
    let cold: Vec<TagMetadata> = vec![
        c.tag_metadata(&img, "1.0", &amd64, None).await.unwrap(),
        c.tag_metadata(&img, "single", &amd64, None).await.unwrap(),
    ];
    let cold_requests = c.request_count();
    assert_eq!(cold_requests, 4, "the index, its amd64 child and config, the single manifest (same config)");

    for _ in 0..2 {
        c.begin_cycle();
        fake.hits.lock().unwrap().clear();
        let warm = vec![
            c.tag_metadata(&img, "1.0", &amd64, None).await.unwrap(),
            c.tag_metadata(&img, "single", &amd64, None).await.unwrap(),
        ];
        assert_eq!(warm, cold, "the same answers as a cold cycle");
        assert_eq!(c.request_count(), 2, "one HEAD per tag");
        assert_eq!(fake.hits(|h| h.method == "HEAD"), 2);
        assert_eq!(fake.hits(|h| h.method == "GET"), 0, "no manifest or config read again");
    }

    // `single` is pushed again: its new manifest and config are read, `1.0` still costs a HEAD.
    fake.moved.lock().unwrap().insert(("app".into(), "single".into()), newer.clone());
    c.begin_cycle();
    let moved = c.tag_metadata(&img, "single", &amd64, None).await.unwrap();
    assert_eq!(moved.digest, newer);
    assert_eq!(moved.created, Some(DateTime::parse_from_rfc3339("2024-04-01T10:00:00Z").unwrap().with_timezone(&Utc)));
    c.tag_metadata(&img, "1.0", &amd64, None).await.unwrap();
    assert_eq!(c.request_count(), 2 + 2, "two HEADs, the new manifest and its config");
}

/// Issue 12, point 2: at `RateLimit-Remaining: 0` (Docker Hub's pulls) no manifest is `GET`
/// again this cycle: an error naming the limit, without a request; `HEAD`s and tag lists go on,
/// and the next cycle tries again.
#[tokio::test]
async fn a_used_up_pull_limit_stops_manifest_gets_until_the_next_cycle() {
    let mut fake = Fake::new(AuthMode::Anonymous);
    let one = fake.image("linux", "amd64", None, "2024-03-01T10:00:00Z");
    let two = fake.image("linux", "amd64", None, "2024-03-02T10:00:00Z");
    fake.tag("app", "1", &one);
    fake.tag("app", "2", &two);
    *fake.remaining.lock().unwrap() = Some("0;w=21600".into());
    let (fake, host) = serve(fake).await;
    let c = client();
    let img = image(&host, "app");
    c.tag_metadata(&img, "1", &[], None).await.unwrap();
    let before = c.request_count();
    let err = c.tag_metadata(&img, "2", &[], None).await.unwrap_err();
    assert_eq!(err.kind, RegistryErrorKind::RateLimited, "{err}");
    assert!(err.to_string().contains("RateLimit-Remaining 0 in a window of 21600 s") && err.to_string().contains(&host), "{err}");
    assert_eq!(c.request_count(), before, "nothing sent");
    assert_eq!(c.tag_digest(&img, "2", None).await.unwrap(), two, "a HEAD is no pull");
    c.list_tags(&img, None).await.unwrap();
    *fake.remaining.lock().unwrap() = Some("99;w=21600".into());
    c.begin_cycle();
    assert_eq!(c.tag_metadata(&img, "2", &[], None).await.unwrap().digest, two, "the next cycle reads it");
}

