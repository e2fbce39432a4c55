//! Self-tests of the test harness: the registry starts in every auth mode, pushing works, and
//! the token flow really goes through our token server. If these fail, tests/plan.rs cannot
//! tell anything about the bot.
mod support;

use support::oci_push::{ImageSpec, OCI_INDEX, OCI_MANIFEST};
use support::registry::{Auth, ClosedPort, TestRegistry, day, http_status};

/// GET with optional basic or bearer auth; returns status, headers and body.
fn get(
    reg: &TestRegistry,
    path: &str,
    accept: Option<&str>,
    auth: &Cred,
) -> (u16, reqwest::header::HeaderMap, String) {
    let url = format!("http://{}{path}", reg.host());
    reg.block_on(async {
        let mut req = reqwest::Client::new().get(url);
        if let Some(a) = accept {
            req = req.header("Accept", a);
        }
        req = match auth {
            Cred::None => req,
            Cred::Basic(u, p) => req.basic_auth(u, Some(p)),
            Cred::Bearer(t) => req.bearer_auth(t),
        };
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, headers, resp.text().await.unwrap())
    })
}

enum Cred {
    None,
    Basic(&'static str, &'static str),
    Bearer(String),
}

fn sorted_tags(body: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    let mut tags: Vec<String> =
        v["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
    tags.sort();
    tags
}

#[test]
fn anonymous_registry_takes_images_indexes_and_many_tags() {
    let reg = TestRegistry::start(Auth::Anonymous);
    let digests = reg.push_tags("team/api", &["1.0.0", "1.1.0"]);
    assert_ne!(digests[0], digests[1], "each tag is a distinct image");

    let (status, headers, _) = get(&reg, "/v2/team/api/manifests/1.1.0", Some(OCI_MANIFEST), &Cred::None);
    assert_eq!(status, 200);
    assert_eq!(headers["docker-content-digest"].to_str().unwrap(), digests[1]);

    let index = reg.push_index(
        "team/api",
        "multi",
        &[ImageSpec::for_platform(&day(3), "linux/amd64", "a"), ImageSpec::for_platform(&day(3), "linux/arm64/v8", "b")],
    );
    let (status, headers, body) = get(&reg, "/v2/team/api/manifests/multi", Some(OCI_INDEX), &Cred::None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["docker-content-digest"].to_str().unwrap(), index);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["manifests"][1]["platform"]["architecture"], "arm64");
    assert_eq!(v["manifests"][1]["platform"]["variant"], "v8");

    // The config blob carries what newest-build and platforms read.
    let (_, _, body) = get(&reg, "/v2/team/api/manifests/1.0.0", Some(OCI_MANIFEST), &Cred::None);
    let manifest: serde_json::Value = serde_json::from_str(&body).unwrap();
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    let (status, _, body) = get(&reg, &format!("/v2/team/api/blobs/{config_digest}"), None, &Cred::None);
    assert_eq!(status, 200);
    let config: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(config["created"], "2024-01-01T00:00:00Z");
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], "amd64");

    let many: Vec<String> = (0..200).map(|i| format!("build-{i:04}")).collect();
    let digest = reg.tag_many("team/many", &many);
    let (status, _, body) = get(&reg, "/v2/team/many/tags/list", None, &Cred::None);
    assert_eq!(status, 200);
    assert_eq!(sorted_tags(&body), many);
    let (_, headers, _) = get(&reg, "/v2/team/many/manifests/build-0199", Some(OCI_MANIFEST), &Cred::None);
    assert_eq!(headers["docker-content-digest"].to_str().unwrap(), digest);

    let (_, _, body) = get(&reg, "/v2/team/api/tags/list", None, &Cred::None);
    assert_eq!(sorted_tags(&body), ["1.0.0", "1.1.0", "multi"]);
}

#[test]
fn htpasswd_registry_wants_the_right_basic_credentials() {
    let reg = TestRegistry::start(Auth::htpasswd("ci", "s3cret"));
    reg.push_tags("team/private", &["1.0.0"]);
    let (status, headers, _) = get(&reg, "/v2/team/private/tags/list", None, &Cred::None);
    assert_eq!(status, 401);
    assert!(headers["www-authenticate"].to_str().unwrap().starts_with("Basic"));
    let (status, _, _) = get(&reg, "/v2/team/private/tags/list", None, &Cred::Basic("ci", "wrong"));
    assert_eq!(status, 401);
    let (status, _, body) = get(&reg, "/v2/team/private/tags/list", None, &Cred::Basic("ci", "s3cret"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(sorted_tags(&body), ["1.0.0"]);
}

#[test]
fn token_registry_sends_clients_to_our_token_server() {
    let reg = TestRegistry::start(Auth::token("robot", "t0ken-pass"));
    reg.push_tags("team/secure", &["1.0.0", "1.2.0"]);
    let ts = reg.token_server().unwrap();
    assert!(ts.issued() >= 1, "pushing went through the token server");

    let (status, headers, _) = get(&reg, "/v2/team/secure/tags/list", None, &Cred::None);
    assert_eq!(status, 401);
    let challenge = headers["www-authenticate"].to_str().unwrap().to_string();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(challenge.contains(&format!("realm=\"{}\"", ts.realm())), "{challenge}");
    assert!(challenge.contains("scope=\"repository:team/secure:pull\""), "{challenge}");

    // Wrong credentials: the token server refuses.
    let token_url = format!("{}?service={}&scope=repository:team/secure:pull", ts.realm(), support::token_server::TokenServer::SERVICE);
    let refused_before = ts.refused();
    let status = reg.block_on(async {
        reqwest::Client::new().get(&token_url).basic_auth("robot", Some("nope")).send().await.unwrap().status().as_u16()
    });
    assert_eq!(status, 401);
    assert_eq!(ts.refused(), refused_before + 1);

    // Right credentials: a pull token the registry accepts.
    let issued_before = ts.issued();
    let token = reg.block_on(async {
        let v: serde_json::Value = reqwest::Client::new()
            .get(&token_url)
            .basic_auth("robot", Some("t0ken-pass"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["token"].as_str().unwrap().to_string()
    });
    assert_eq!(ts.issued(), issued_before + 1);
    let (status, _, body) = get(&reg, "/v2/team/secure/tags/list", None, &Cred::Bearer(token.clone()));
    assert_eq!(status, 200, "{body}");
    assert_eq!(sorted_tags(&body), ["1.0.0", "1.2.0"]);

    // A pull token for one repository does not open another.
    reg.push_tags("team/other", &["9.9.9"]);
    let (status, _, _) = get(&reg, "/v2/team/other/tags/list", None, &Cred::Bearer(token));
    assert_eq!(status, 401);
}

#[test]
fn registries_are_gone_once_dropped() {
    let pid = {
        let reg = TestRegistry::start(Auth::Anonymous);
        assert_eq!(http_status(reg.host(), "/v2/"), Some(200));
        reg.pid()
    };
    // Killed and reaped: no process, not even a zombie. (The port itself may already serve
    // another test's registry, so it proves nothing.)
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "registry {pid} outlived its Drop");
}

#[test]
fn a_closed_port_refuses_connections() {
    let closed = ClosedPort::new();
    let err = std::net::TcpStream::connect(closed.host()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[test]
fn gitops_repositories_clone_over_file_and_counted_http() {
    use support::gitops::{App, GitHttpServer, GitRepo, deployment};
    let repo = GitRepo::new();
    repo.write("apps/web.yaml", &App::new("web", &repo.url(), "web").image_list("web=nginx:~1.25").to_yaml());
    repo.write("web/deployment.yaml", &deployment("web", "nginx:1.25.0"));
    let commit = repo.commit("web app");
    assert_eq!(commit.len(), 40);

    let dest = tempfile::tempdir().unwrap();
    let cloned = git2::Repository::clone(&repo.url(), dest.path().join("file")).unwrap();
    assert_eq!(cloned.head().unwrap().peel_to_commit().unwrap().id().to_string(), commit);
    let app = std::fs::read_to_string(dest.path().join("file/apps/web.yaml")).unwrap();
    assert!(app.contains("argocd-image-updater.argoproj.io/image-list: \"web=nginx:~1.25\""), "{app}");

    // Serve the repository's parent directory over smart HTTP, and count what a clone asks for.
    let root = repo.path().parent().unwrap();
    let name = repo.path().file_name().unwrap().to_str().unwrap();
    let server = GitHttpServer::start(root);
    let cloned = git2::Repository::clone(&server.url(name), dest.path().join("http")).unwrap();
    assert_eq!(cloned.head().unwrap().peel_to_commit().unwrap().id().to_string(), commit);
    assert_eq!(server.ref_advertisements(), 1);
    assert!(server.upload_packs() >= 1);
}
