//! A hostile registry on loopback (issue 15): what it may not get from the bot — credentials on
//! another origin or over plain http — and what it may not make the bot hold — endless bodies,
//! endless pages, tags that are not tags.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

use super::*;

/// What a server saw: path and query, and the `Authorization` header if any.
#[derive(Default)]
struct Seen {
    requests: Mutex<Vec<(String, Option<String>)>>,
}

impl Seen {
    fn authorizations(&self) -> Vec<String> {
        self.requests.lock().unwrap().iter().filter_map(|(_, a)| a.clone()).collect()
    }
    fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

type Handler = Arc<dyn Fn(&str, &HeaderMap) -> Response + Send + Sync>;

/// Serves `handler` on `bind_host` (an IP), recording every request.
async fn hostile(bind_host: &str, handler: Handler) -> (Arc<Seen>, String) {
    let seen = Arc::new(Seen::default());
    let (s, h) = (seen.clone(), handler.clone());
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
        let (s, h) = (s.clone(), h.clone());
        async move {
            let path = uri.path_and_query().map(|p| p.to_string()).unwrap_or_default();
            let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_string);
            s.requests.lock().unwrap().push((path.clone(), auth));
            h(&path, &headers)
        }
    });
    let listener = tokio::net::TcpListener::bind(format!("{bind_host}:0")).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (seen, format!("{bind_host}:{port}"))
}

/// A client whose docker config holds `robot:s3cret` for `host`.
fn client_with_credentials(host: &str) -> (RegistryClient, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.json");
    let auth = base64::engine::general_purpose::STANDARD.encode("robot:s3cret");
    std::fs::write(&cfg, format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#)).unwrap();
    (RegistryClient::new(&RegistrySettings { docker_configs: vec![cfg], ..Default::default() }, None).unwrap(), dir)
}

fn image(host: &str) -> ImageName {
    ImageName::parse(&format!("{host}/team/app")).unwrap()
}

fn tags_page(tags: &[&str]) -> Response {
    axum::Json(serde_json::json!({"name": "team/app", "tags": tags})).into_response()
}

#[tokio::test]
async fn credentials_do_not_follow_a_link_to_another_origin() {
    let (collector, collector_host) = hostile("127.0.0.1", Arc::new(|_, _| tags_page(&["9.9.9"]))).await;
    let next = format!("http://{collector_host}/v2/team/app/tags/list?last=1.0.0");
    let (registry, host) = hostile(
        "127.0.0.1",
        Arc::new(move |_, headers| {
            if !headers.contains_key(header::AUTHORIZATION) {
                return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, r#"Basic realm="r""#)], "").into_response();
            }
            ([(header::LINK, format!("<{next}>; rel=\"next\""))], tags_page(&["1.0.0"])).into_response()
        }),
    )
    .await;
    let (c, _dir) = client_with_credentials(&host);

    let err = c.list_tags(&image(&host), None).await.unwrap_err();

    assert_eq!(err.kind, RegistryErrorKind::Protocol, "{err}");
    assert!(err.to_string().contains("another origin") && err.to_string().contains(&host), "{err}");
    assert_eq!(collector.count(), 0, "the other origin was never contacted");
    assert!(registry.authorizations().iter().all(|a| a.starts_with("Basic")), "credentials went to the registry only");
}

#[tokio::test]
async fn a_redirect_to_another_host_carries_no_credentials() {
    let (collector, collector_host) = hostile("127.0.0.2", Arc::new(|_, _| tags_page(&["1.0.0"]))).await;
    let target = format!("http://{collector_host}/v2/team/app/tags/list");
    let (_registry, host) = hostile(
        "127.0.0.1",
        Arc::new(move |_, headers| {
            if !headers.contains_key(header::AUTHORIZATION) {
                return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, r#"Basic realm="r""#)], "").into_response();
            }
            (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, target.clone())], "").into_response()
        }),
    )
    .await;
    let (c, _dir) = client_with_credentials(&host);

    let tags = c.list_tags(&image(&host), None).await.unwrap();

    assert_eq!(tags.to_vec(), ["1.0.0"], "the redirect is followed (blob stores work this way)");
    assert_eq!(collector.count(), 1);
    assert!(collector.authorizations().is_empty(), "the other host got no credentials: {:?}", collector.authorizations());
}

#[tokio::test]
async fn a_token_realm_on_another_host_gets_no_credentials() {
    // The registry is 127.0.0.1; its challenge names a realm on 127.0.0.2 (another host).
    let (realm, realm_host) = hostile(
        "127.0.0.2",
        Arc::new(|_, _| axum::Json(serde_json::json!({"token": "anonymous-token"})).into_response()),
    )
    .await;
    let challenge = format!(r#"Bearer realm="http://{realm_host}/token",service="hostile""#);
    let (_registry, host) = hostile(
        "127.0.0.1",
        Arc::new(move |_, headers| {
            match headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
                Some("Bearer anonymous-token") => tags_page(&["1.0.0"]),
                _ => (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, challenge.clone())], "").into_response(),
            }
        }),
    )
    .await;
    let (c, _dir) = client_with_credentials(&host);

    let tags = c.list_tags(&image(&host), None).await.unwrap();

    assert_eq!(tags.to_vec(), ["1.0.0"], "public content still works with an anonymous token");
    assert_eq!(realm.count(), 1);
    assert!(realm.authorizations().is_empty(), "the realm on another host got no credentials: {:?}", realm.authorizations());
}

#[test]
fn realms_that_may_receive_credentials() {
    let cases = [
        ("same host", "https://ghcr.io", "https://ghcr.io/token", true),
        ("same host other port", "http://127.0.0.1:5000", "http://127.0.0.1:5001/token", true),
        ("docker hub", "https://registry-1.docker.io", "https://auth.docker.io/token", true),
        ("subdomain", "https://registry.example.com", "https://auth.example.com/t", true),
        ("another domain", "https://registry.example.com", "https://collect.evil.example/t", false),
        ("lookalike", "https://registry.example.com", "https://example.com.evil.net/t", false),
        ("other address", "http://127.0.0.1:5000", "http://127.0.0.2:5000/token", false),
    ];
    for (name, api, realm, want) in cases {
        let realm = Url::parse(realm).unwrap();
        assert_eq!(transport::realm_may_receive_credentials(api, &realm), want, "case {name}");
    }
}

#[test]
fn an_http_realm_is_refused_for_an_https_registry() {
    let realm = |r: &str| transport::AuthScheme::Bearer { realm: Url::parse(r).unwrap(), service: None };
    assert!(transport::check_realm("https://r.example", &realm("http://r.example/token")).is_err());
    assert!(transport::check_realm("https://r.example", &realm("https://r.example/token")).is_ok());
    assert!(transport::check_realm("http://127.0.0.1:5000", &realm("http://127.0.0.1:5000/token")).is_ok());
    assert!(transport::check_realm("https://r.example", &transport::AuthScheme::Basic).is_ok());
}

#[tokio::test]
async fn an_endless_body_stops_at_the_cap() {
    let (_registry, host) = hostile(
        "127.0.0.1",
        Arc::new(|_, _| {
            // `{"tags":["` then the same chunk forever, chunked (no Content-Length).
            let chunk = axum::body::Bytes::from(vec![b'a'; 64 * 1024]);
            let start = futures::stream::once(async { Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b"{\"tags\":[\"")) });
            let endless = futures::stream::repeat_with(move || Ok(chunk.clone()));
            Response::new(Body::from_stream(futures::StreamExt::chain(start, endless)))
        }),
    )
    .await;
    let err = client().list_tags(&image(&host), None).await.unwrap_err();
    assert_eq!(err.kind, RegistryErrorKind::Protocol, "{err}");
    assert!(err.to_string().contains("larger than 10 MB") && err.to_string().contains(&host), "{err}");
}

#[tokio::test]
async fn an_oversized_manifest_is_refused_by_its_length() {
    let (_registry, host) = hostile("127.0.0.1", Arc::new(|_, _| vec![b' '; 5 * 1024 * 1024].into_response())).await;
    let err = client().tag_metadata(&image(&host), "1.0.0", &[], None).await.unwrap_err();
    assert!(err.to_string().contains("larger than 4 MB") && err.to_string().contains("tag 1.0.0"), "{err}");
}

#[tokio::test]
async fn endless_pages_end_with_an_error() {
    let served = Arc::new(AtomicUsize::new(0));
    let n = served.clone();
    let (_registry, host) = hostile(
        "127.0.0.1",
        Arc::new(move |_, _| {
            let i = n.fetch_add(1, Ordering::SeqCst);
            let link = format!("</v2/team/app/tags/list?last=t{i}>; rel=\"next\"");
            ([(header::LINK, link)], tags_page(&[&format!("t{i}")])).into_response()
        }),
    )
    .await;
    let err = client().list_tags(&image(&host), None).await.unwrap_err();
    assert!(err.to_string().contains("more than 1000 pages"), "{err}");
    assert_eq!(served.load(Ordering::SeqCst), 1000);
}

#[tokio::test]
async fn tags_outside_the_oci_grammar_are_dropped() {
    let (_registry, host) = hostile(
        "127.0.0.1",
        Arc::new(|_, _| tags_page(&["1.0.0", "1.1.0\n<img src=x>", ".hidden", "-dash", "ok_1.2-b", &"x".repeat(129), ""])),
    )
    .await;
    let tags = client().list_tags(&image(&host), None).await.unwrap();
    assert_eq!(tags.to_vec(), ["1.0.0", "ok_1.2-b"]);
}

fn client() -> RegistryClient {
    RegistryClient::new(&RegistrySettings::default(), None).unwrap()
}
