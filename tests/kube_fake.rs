//! The fake Kubernetes API server's own checks. Every kind of answer it gives (an object, the
//! lists of each resource, each error, watch events, `/version`) goes through k8s-openapi's
//! types and back, and must come out unchanged: a field the real type lacks, a misspelt one or
//! a wrong type fails here. Then the bot's client library, kube-rs, drives it as it drives a
//! real cluster: from a kubeconfig, over verified TLS, paging, failing, watching.

mod support;

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, ObjectMeta, Status, WatchEvent};
use k8s_openapi::apimachinery::pkg::version::Info;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use support::fake_kube::{self, BOT_USER, FakeKube, TOKEN, UNKNOWN_TOKEN};

// ---- helpers ----

/// Deserializes `value` into `T`, serializes it back, and requires the same JSON: what the real
/// type does not know (or names differently) does not survive the trip.
#[track_caller]
fn round_trip<T: DeserializeOwned + Serialize>(what: &str, value: &Value) -> T {
    let typed: T = serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("{what}: not a {}: {e}\n{value:#}", std::any::type_name::<T>()));
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(back, *value, "{what}: the round trip through {} changed the answer", std::any::type_name::<T>());
    typed
}

/// A custom resource (no k8s-openapi type): its metadata through `ObjectMeta`, its type fields.
#[track_caller]
fn check_custom_object(what: &str, object: &Value, api_version: &str, kind: &str) -> ObjectMeta {
    assert_eq!(object["apiVersion"], api_version, "{what}: apiVersion");
    assert_eq!(object["kind"], kind, "{what}: kind");
    round_trip::<ObjectMeta>(&format!("{what}: metadata"), &object["metadata"])
}

/// A custom resource list: the envelope's keys, its metadata through `ListMeta`, each item.
#[track_caller]
fn check_custom_list(what: &str, list: &Value, api_version: &str, kind: &str) -> Vec<ObjectMeta> {
    let keys: Vec<&String> = list.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["apiVersion", "items", "kind", "metadata"], "{what}: the list's fields");
    assert_eq!(list["apiVersion"], api_version, "{what}: apiVersion");
    assert_eq!(list["kind"], format!("{kind}List"), "{what}: kind");
    round_trip::<ListMeta>(&format!("{what}: metadata"), &list["metadata"]);
    list["items"].as_array().unwrap().iter().map(|item| check_custom_object(what, item, api_version, kind)).collect()
}

/// A core list: items come without `apiVersion`/`kind`, as kube-apiserver sends them
/// (kubernetes/kubernetes#3030); k8s-openapi writes them back, so they are added before the
/// comparison and everything else must survive the trip.
#[track_caller]
fn check_secret_list(what: &str, list: &Value) -> k8s_openapi::List<Secret> {
    let mut expected = list.clone();
    for item in expected["items"].as_array_mut().unwrap() {
        assert!(item.get("apiVersion").is_none() && item.get("kind").is_none(), "{what}: a list item with type fields: {item:#}");
        item["apiVersion"] = json!("v1");
        item["kind"] = json!("Secret");
    }
    let typed: k8s_openapi::List<Secret> = serde_json::from_value(list.clone()).unwrap_or_else(|e| panic!("{what}: not a SecretList: {e}"));
    assert_eq!(serde_json::to_value(&typed).unwrap(), expected, "{what}: the round trip through List<Secret> changed the answer");
    typed
}

#[track_caller]
fn check_status(what: &str, body: &Value, code: u16, reason: &str) -> Status {
    let s = round_trip::<Status>(what, body);
    assert_eq!(s.code, Some(i32::from(code)), "{what}: code");
    assert_eq!(s.reason.as_deref(), Some(reason), "{what}: reason");
    assert_eq!(s.status.as_deref(), Some("Failure"), "{what}: status");
    s
}

/// A raw HTTPS client that trusts the fake's CA, to see exactly what it sends.
struct Raw {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Raw {
    fn new(kube: &FakeKube, token: Option<&str>) -> Raw {
        let ca = reqwest::Certificate::from_pem(&kube.ca_pem()).unwrap();
        let http = reqwest::Client::builder().add_root_certificate(ca).build().unwrap();
        Raw { base: kube.url(), token: token.map(str::to_string), http }
    }

    fn request(&self, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.get(format!("{}{path}", self.base));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self.request(path).send().await.unwrap();
        let status = resp.status().as_u16();
        assert_eq!(resp.headers()["content-type"], "application/json", "GET {path}: content type");
        (status, resp.json().await.unwrap())
    }

    async fn ok(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "GET {path}: {body:#}");
        body
    }

    async fn watch(&self, path: &str) -> Lines {
        let resp = self.request(path).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "GET {path}");
        Lines { resp, buf: Vec::new() }
    }
}

/// A watch stream's newline-delimited events.
struct Lines {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

impl Lines {
    /// The next event, or `None` when the server ended the stream.
    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Some(serde_json::from_slice(&line).unwrap());
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.resp.chunk()).await.expect("no watch event within 10 s");
            match chunk.unwrap() {
                Some(c) => self.buf.extend_from_slice(&c),
                None => {
                    assert!(self.buf.is_empty(), "the watch ended inside an event");
                    return None;
                }
            }
        }
    }

    async fn event(&mut self) -> Value {
        self.next().await.expect("the watch ended")
    }
}

fn application(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": namespace, "labels": {"team": "platform"}},
        "spec": {
            "project": "default",
            "source": {"repoURL": "https://git.example.com/gitops.git", "path": format!("apps/{name}"), "targetRevision": "main"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": name},
        },
    })
}

const IMAGE_UPDATER: &str = r#"
apiVersion: argocd-image-updater.argoproj.io/v1alpha1
kind: ImageUpdater
metadata:
  name: default
  namespace: argocd
spec:
  namespace: argocd
  applicationRefs:
    - namePattern: "*"
      images:
        - alias: web
          imageName: registry.example.com/web
---
apiVersion: argocd-image-updater.argoproj.io/v1alpha1
kind: ImageUpdater
metadata:
  name: team-a
  namespace: team-a
spec:
  applicationRefs:
    - namePattern: billing
"#;

/// Secrets in `argocd` (a pull secret, a repository credential) and `team-a`; four
/// Applications across both namespaces; two ImageUpdaters.
fn world() -> FakeKube {
    let kube = FakeKube::start();
    let docker = br#"{"auths":{"registry.example.com":{"auth":"Ym90OnNlY3JldA=="}}}"#;
    kube.secret("argocd", "regcred", "kubernetes.io/dockerconfigjson", &[(".dockerconfigjson", docker)]);
    kube.apply(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "git-creds", "namespace": "argocd", "labels": {"argocd.argoproj.io/secret-type": "repository"}},
        "stringData": {"url": "https://git.example.com/gitops.git", "password": "s3cret"},
    }));
    kube.secret("team-a", "token", "Opaque", &[("token", b"abc")]);
    for (ns, name) in [("argocd", "web"), ("argocd", "api"), ("team-a", "billing"), ("argocd", "guestbook")] {
        kube.apply(application(ns, name));
    }
    kube.apply_yaml(IMAGE_UPDATER);
    kube
}

async fn connect(kubeconfig: &Path, context: &str) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).unwrap();
    let options = KubeConfigOptions { context: Some(context.into()), ..Default::default() };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await.unwrap();
    kube::Client::try_from(config).unwrap()
}

fn applications_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application"), "applications")
}

#[track_caller]
fn api_status(result: Result<impl std::fmt::Debug, kube::Error>) -> Box<kube::core::Status> {
    match result {
        Err(kube::Error::Api(status)) => status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

// ---- answers against k8s-openapi ----

#[tokio::test]
async fn a_secret_is_a_k8s_openapi_secret() {
    let kube = world();
    let raw = Raw::new(&kube, Some(TOKEN));
    let body = raw.ok("/api/v1/namespaces/argocd/secrets/regcred").await;
    let secret: Secret = round_trip("GET secret", &body);
    assert_eq!(body["kind"], "Secret");
    assert_eq!(body["apiVersion"], "v1");
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/dockerconfigjson"));
    let meta = &secret.metadata;
    assert_eq!(meta.name.as_deref(), Some("regcred"));
    assert_eq!(meta.namespace.as_deref(), Some("argocd"));
    assert_eq!(meta.uid.as_ref().unwrap().len(), 36, "a UUID");
    assert!(meta.creation_timestamp.is_some());
    assert_eq!(meta.resource_version.as_deref(), Some("1"));
    assert_eq!(meta.generation, None, "Secrets have no generation");
    assert!(String::from_utf8_lossy(&secret.data.unwrap()[".dockerconfigjson"].0).contains("registry.example.com"));

    // stringData became data, and the type defaulted.
    let creds: Secret = round_trip("GET secret", &raw.ok("/api/v1/namespaces/argocd/secrets/git-creds").await);
    assert_eq!(creds.type_.as_deref(), Some("Opaque"));
    assert_eq!(creds.data.unwrap()["password"].0, b"s3cret");
    assert!(creds.string_data.is_none());
    kube.finish();
}

#[tokio::test]
async fn lists_of_each_resource_round_trip() {
    let kube = world();
    let raw = Raw::new(&kube, Some(TOKEN));
    let rv = kube.resource_version().to_string();

    let list = raw.ok("/api/v1/namespaces/argocd/secrets").await;
    let secrets = check_secret_list("SecretList in argocd", &list);
    let names: Vec<_> = secrets.items.iter().map(|s| s.metadata.name.clone().unwrap()).collect();
    assert_eq!(names, ["git-creds", "regcred"]);
    assert_eq!(secrets.metadata.resource_version.as_deref(), Some(rv.as_str()));
    assert_eq!(list["kind"], "SecretList");

    let all = check_secret_list("SecretList", &raw.ok("/api/v1/secrets").await);
    let keys: Vec<_> = all.items.iter().map(|s| format!("{}/{}", s.metadata.namespace.as_ref().unwrap(), s.metadata.name.as_ref().unwrap())).collect();
    assert_eq!(keys, ["argocd/git-creds", "argocd/regcred", "team-a/token"], "sorted by namespace, then name");

    for (path, api_version, kind, expected) in [
        ("/apis/argoproj.io/v1alpha1/applications", "argoproj.io/v1alpha1", "Application", &["argocd/api", "argocd/guestbook", "argocd/web", "team-a/billing"][..]),
        ("/apis/argoproj.io/v1alpha1/namespaces/argocd/applications", "argoproj.io/v1alpha1", "Application", &["argocd/api", "argocd/guestbook", "argocd/web"][..]),
        ("/apis/argocd-image-updater.argoproj.io/v1alpha1/imageupdaters", "argocd-image-updater.argoproj.io/v1alpha1", "ImageUpdater", &["argocd/default", "team-a/team-a"][..]),
        ("/apis/argocd-image-updater.argoproj.io/v1alpha1/namespaces/team-a/imageupdaters", "argocd-image-updater.argoproj.io/v1alpha1", "ImageUpdater", &["team-a/team-a"][..]),
    ] {
        let list = raw.ok(path).await;
        let metas = check_custom_list(path, &list, api_version, kind);
        let keys: Vec<String> = metas.iter().map(|m| format!("{}/{}", m.namespace.as_ref().unwrap(), m.name.as_ref().unwrap())).collect();
        assert_eq!(keys, expected, "{path}");
        assert_eq!(list["metadata"], json!({"resourceVersion": rv}), "{path}: no continue without limit");
    }

    let app = raw.ok("/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/guestbook").await;
    let meta = check_custom_object("GET application", &app, "argoproj.io/v1alpha1", "Application");
    assert_eq!(meta.generation, Some(1));
    assert_eq!(app["spec"]["source"]["path"], "apps/guestbook");
    let updater = raw.ok("/apis/argocd-image-updater.argoproj.io/v1alpha1/namespaces/argocd/imageupdaters/default").await;
    check_custom_object("GET imageupdater", &updater, "argocd-image-updater.argoproj.io/v1alpha1", "ImageUpdater");
    assert_eq!(updater["spec"]["applicationRefs"][0]["images"][0]["alias"], "web");

    // An empty list is still a list, with `items: []`.
    let empty = raw.ok("/apis/argoproj.io/v1alpha1/namespaces/nowhere/applications").await;
    assert!(check_custom_list("empty list", &empty, "argoproj.io/v1alpha1", "Application").is_empty());
    assert_eq!(empty["items"], json!([]));
    kube.finish();
}

#[tokio::test]
async fn version_is_a_version_info() {
    let kube = FakeKube::start();
    let (status, body) = Raw::new(&kube, Some(TOKEN)).get("/version").await;
    assert_eq!(status, 200);
    let info: Info = round_trip("GET /version", &body);
    assert_eq!((info.major.as_str(), info.minor.as_str()), ("1", "33"));
    // Anyone may read it, credentials or not (system:public-info-viewer).
    assert_eq!(Raw::new(&kube, None).get("/version").await.0, 200);
    kube.finish();
}

#[tokio::test]
async fn errors_are_status_objects_with_the_apiservers_reasons() {
    let kube = world();
    let raw = Raw::new(&kube, Some(TOKEN));

    let (code, body) = Raw::new(&kube, Some(UNKNOWN_TOKEN)).get("/api/v1/namespaces/argocd/secrets/regcred").await;
    assert_eq!(code, 401);
    let s = check_status("401", &body, 401, "Unauthorized");
    assert_eq!(s.message.as_deref(), Some("Unauthorized"));
    assert!(s.details.is_none());
    assert_eq!(kube.requests().last().unwrap().user, None);

    kube.deny(BOT_USER, "get", "secrets", Some("argocd"), Some("regcred"));
    let (code, body) = raw.get("/api/v1/namespaces/argocd/secrets/regcred").await;
    assert_eq!(code, 403);
    let s = check_status("403 get", &body, 403, "Forbidden");
    assert_eq!(
        s.message.as_deref(),
        Some(r#"secrets "regcred" is forbidden: User "system:serviceaccount:argocd:argocd-image-pr" cannot get resource "secrets" in API group "" in the namespace "argocd""#)
    );
    assert_eq!(body["details"], json!({"name": "regcred", "kind": "secrets"}));
    // A named rule leaves the other secrets, and the list, alone (as RBAC's resourceNames).
    assert_eq!(raw.get("/api/v1/namespaces/argocd/secrets/git-creds").await.0, 200);
    assert_eq!(raw.get("/api/v1/namespaces/argocd/secrets").await.0, 200);

    kube.deny_cluster_wide(BOT_USER, "list", "applications");
    let (code, body) = raw.get("/apis/argoproj.io/v1alpha1/applications").await;
    assert_eq!(code, 403);
    let s = check_status("403 list", &body, 403, "Forbidden");
    assert_eq!(
        s.message.as_deref(),
        Some(r#"applications.argoproj.io is forbidden: User "system:serviceaccount:argocd:argocd-image-pr" cannot list resource "applications" in API group "argoproj.io" at the cluster scope"#)
    );
    assert_eq!(body["details"], json!({"group": "argoproj.io", "kind": "applications"}));
    assert_eq!(raw.get("/apis/argoproj.io/v1alpha1/namespaces/argocd/applications").await.0, 200);

    let (code, body) = Raw::new(&kube, None).get("/api/v1/namespaces/argocd/secrets").await;
    assert_eq!(code, 403);
    let s = check_status("403 anonymous", &body, 403, "Forbidden");
    assert!(s.message.unwrap().contains(r#"User "system:anonymous" cannot list resource "secrets""#));

    let (code, body) = raw.get("/api/v1/namespaces/argocd/secrets/missing").await;
    assert_eq!(code, 404);
    let s = check_status("404 secret", &body, 404, "NotFound");
    assert_eq!(s.message.as_deref(), Some(r#"secrets "missing" not found"#));
    assert_eq!(body["details"], json!({"name": "missing", "kind": "secrets"}));
    let (code, body) = raw.get("/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/x").await;
    assert_eq!(code, 404);
    let s = check_status("404 application", &body, 404, "NotFound");
    assert_eq!(s.message.as_deref(), Some(r#"applications.argoproj.io "x" not found"#));
    assert_eq!(body["details"], json!({"name": "x", "group": "argoproj.io", "kind": "applications"}));

    let (code, body) = raw.get("/apis/argoproj.io/v1alpha1/namespaces/argocd/appprojects").await;
    assert_eq!(code, 404);
    check_status("404 route", &body, 404, "NotFound");
    let violations = kube.take_violations();
    assert!(violations.len() == 1 && violations[0].contains("appprojects"), "{violations:?}");

    let (code, body) = raw.get("/api/v1/secrets?labelSelector=a%3D%3D%3Db").await;
    assert_eq!(code, 400);
    check_status("400 selector", &body, 400, "BadRequest");

    // 410: a continue token whose snapshot is gone; the Status offers one to go on with.
    let page = raw.ok("/apis/argoproj.io/v1alpha1/namespaces/argocd/applications?limit=1").await;
    let token = page["metadata"]["continue"].as_str().unwrap().to_string();
    kube.expire_continue_tokens();
    let (code, body) = raw.get(&format!("/apis/argoproj.io/v1alpha1/namespaces/argocd/applications?limit=1&continue={token}")).await;
    assert_eq!(code, 410);
    let s = check_status("410 continue", &body, 410, "Expired");
    assert_eq!(
        s.message.as_deref(),
        Some(
            "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list."
        )
    );
    let fresh = s.metadata.continue_.expect("a token to continue inconsistently");
    let decoded: Value = serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&fresh).unwrap()).unwrap();
    assert_eq!(decoded, json!({"v": "meta.k8s.io/v1", "rv": -1, "start": "api\u{0}"}));
    let rest = raw.ok(&format!("/apis/argoproj.io/v1alpha1/namespaces/argocd/applications?limit=5&continue={fresh}")).await;
    let names: Vec<_> = check_custom_list("after 410", &rest, "argoproj.io/v1alpha1", "Application").into_iter().map(|m| m.name.unwrap()).collect();
    assert_eq!(names, ["guestbook", "web"]);
    kube.finish();
}

// ---- lists ----

#[tokio::test]
async fn pages_are_one_consistent_snapshot_in_key_order() {
    let kube = world();
    let raw = Raw::new(&kube, Some(TOKEN));
    let path = "/apis/argoproj.io/v1alpha1/applications";
    let first = raw.ok(&format!("{path}?limit=2")).await;
    check_custom_list("page 1", &first, "argoproj.io/v1alpha1", "Application");
    let meta: ListMeta = serde_json::from_value(first["metadata"].clone()).unwrap();
    assert_eq!(meta.remaining_item_count, Some(2));
    let token = meta.continue_.unwrap();
    let decoded: Value = serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&token).unwrap()).unwrap();
    let rv = kube.resource_version();
    assert_eq!(decoded, json!({"v": "meta.k8s.io/v1", "rv": rv, "start": "argocd/guestbook\u{0}"}));

    // Changes after the first page do not show in the rest of it.
    kube.apply(application("team-a", "zzz"));
    kube.delete("argoproj.io/v1alpha1", "Application", "team-a", "billing");
    let second = raw.ok(&format!("{path}?limit=2&continue={token}")).await;
    let names: Vec<_> = check_custom_list("page 2", &second, "argoproj.io/v1alpha1", "Application").into_iter().map(|m| m.name.unwrap()).collect();
    assert_eq!(names, ["web", "billing"]);
    assert_eq!(second["metadata"], json!({"resourceVersion": rv.to_string()}), "the last page: no continue");

    let now = raw.ok(path).await;
    let names: Vec<_> = check_custom_list("after", &now, "argoproj.io/v1alpha1", "Application").into_iter().map(|m| m.name.unwrap()).collect();
    assert_eq!(names, ["api", "guestbook", "web", "zzz"]);
    assert_eq!(now["metadata"]["resourceVersion"], (rv + 2).to_string());

    // With a selector etcd cannot count what is left: no remainingItemCount.
    let selected = raw.ok(&format!("{path}?limit=1&labelSelector=team%3Dplatform")).await;
    assert!(selected["metadata"]["continue"].is_string());
    assert!(selected["metadata"].get("remainingItemCount").is_none());

    // An exact list at an old resourceVersion, then after compaction.
    let old = raw.ok(&format!("{path}?limit=10&resourceVersion={rv}")).await;
    assert_eq!(old["items"].as_array().unwrap().len(), 4, "billing still there at {rv}");
    kube.compact();
    let (code, body) = raw.get(&format!("{path}?limit=10&resourceVersion={rv}")).await;
    assert_eq!(code, 410);
    let s = check_status("410 exact list", &body, 410, "Expired");
    assert_eq!(s.message.as_deref(), Some("The resourceVersion for the provided list is too old."));
    let (code, body) = raw.get(&format!("{path}?resourceVersion={}", rv + 100)).await;
    assert_eq!(code, 504);
    check_status("504 too large", &body, 504, "Timeout");
    kube.finish();
}

#[tokio::test]
async fn label_and_field_selectors_select_like_the_apiserver() {
    let kube = world();
    let raw = Raw::new(&kube, Some(TOKEN));
    kube.apply(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "helm-repo", "namespace": "argocd", "labels": {"argocd.argoproj.io/secret-type": "repo-creds", "tier": "b"}},
        "data": {},
    }));
    let cases: &[(&str, &[&str])] = &[
        ("argocd.argoproj.io/secret-type=repository", &["git-creds"]),
        ("argocd.argoproj.io/secret-type==repository", &["git-creds"]),
        ("argocd.argoproj.io/secret-type!=repository", &["helm-repo", "regcred"]),
        ("argocd.argoproj.io/secret-type", &["git-creds", "helm-repo"]),
        ("!argocd.argoproj.io/secret-type", &["regcred"]),
        ("argocd.argoproj.io/secret-type in (repository, repo-creds)", &["git-creds", "helm-repo"]),
        ("argocd.argoproj.io/secret-type notin (repository)", &["helm-repo", "regcred"]),
        ("argocd.argoproj.io/secret-type,tier=b", &["helm-repo"]),
    ];
    for (selector, expected) in cases {
        let q: String = url::form_urlencoded::byte_serialize(selector.as_bytes()).collect();
        let list = check_secret_list(selector, &raw.ok(&format!("/api/v1/namespaces/argocd/secrets?labelSelector={q}")).await);
        let names: Vec<_> = list.items.iter().map(|s| s.metadata.name.clone().unwrap()).collect();
        assert_eq!(names, *expected, "labelSelector {selector}");
    }
    let fields: &[(&str, &[&str])] = &[
        ("metadata.name=regcred", &["argocd/regcred"]),
        ("metadata.namespace!=argocd", &["team-a/token"]),
        ("type=kubernetes.io/dockerconfigjson", &["argocd/regcred"]),
    ];
    for (selector, expected) in fields {
        let q: String = url::form_urlencoded::byte_serialize(selector.as_bytes()).collect();
        let list = check_secret_list(selector, &raw.ok(&format!("/api/v1/secrets?fieldSelector={q}")).await);
        let keys: Vec<_> = list.items.iter().map(|s| format!("{}/{}", s.metadata.namespace.clone().unwrap(), s.metadata.name.clone().unwrap())).collect();
        assert_eq!(keys, *expected, "fieldSelector {selector}");
    }
    let (code, body) = raw.get("/api/v1/secrets?fieldSelector=spec.x%3Dy").await;
    assert_eq!(code, 400);
    assert_eq!(check_status("400 field", &body, 400, "BadRequest").message.as_deref(), Some("field label not supported: spec.x"));
    let (code, body) = raw.get("/apis/argoproj.io/v1alpha1/applications?fieldSelector=spec.project%3Ddefault").await;
    assert_eq!(code, 400);
    assert_eq!(
        check_status("400 field", &body, 400, "BadRequest").message.as_deref(),
        Some(r#""spec.project" is not a known field selector: only "metadata.name", "metadata.namespace""#)
    );
    kube.finish();
}

// ---- watches ----

#[tokio::test]
async fn watch_events_round_trip_through_watch_event() {
    let kube = world();
    let raw = Raw::new(&kube, Some(TOKEN));
    let rv = kube.resource_version();

    // From "now": only later changes, each as a WatchEvent<Secret>.
    let mut all = raw.watch(&format!("/api/v1/namespaces/argocd/secrets?watch=true&resourceVersion={rv}&allowWatchBookmarks=true")).await;
    // A label-selected watch sees objects come into and leave its selection.
    let mut repos = raw
        .watch(&format!("/api/v1/namespaces/argocd/secrets?watch=1&resourceVersion={rv}&labelSelector=argocd.argoproj.io%2Fsecret-type%3Drepository"))
        .await;
    let added = kube.apply(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "new", "namespace": "argocd", "labels": {"argocd.argoproj.io/secret-type": "repository"}},
        "data": {"url": "aHR0cHM6Ly9leGFtcGxlLmNvbQ=="},
    }));
    kube.secret("team-a", "elsewhere", "Opaque", &[]); // another namespace: not seen
    let mut changed = added.clone();
    changed["metadata"]["labels"] = json!({"argocd.argoproj.io/secret-type": "repo-creds"});
    let changed = kube.apply(changed);
    kube.delete("v1", "Secret", "argocd", "new");
    kube.bookmark();

    let e = all.event().await;
    assert!(matches!(round_trip::<WatchEvent<Secret>>("ADDED", &e), WatchEvent::Added(_)));
    assert_eq!(e["object"], added);
    let e = all.event().await;
    assert!(matches!(round_trip::<WatchEvent<Secret>>("MODIFIED", &e), WatchEvent::Modified(_)));
    assert_eq!(e["object"], changed);
    let e = all.event().await;
    assert!(matches!(round_trip::<WatchEvent<Secret>>("DELETED", &e), WatchEvent::Deleted(_)));
    assert_eq!(e["object"]["metadata"]["resourceVersion"], (rv + 4).to_string(), "the deletion's resourceVersion");
    let e = all.event().await;
    assert_eq!(e["type"], "BOOKMARK");
    assert_eq!(e["object"], json!({"kind": "Secret", "apiVersion": "v1", "metadata": {"resourceVersion": (rv + 4).to_string(), "creationTimestamp": null}}));
    match serde_json::from_value::<WatchEvent<Secret>>(e.clone()).unwrap() {
        WatchEvent::Bookmark { resource_version, .. } => assert_eq!(resource_version, (rv + 4).to_string()),
        other => panic!("not a bookmark: {other:?}"),
    }

    let e = repos.event().await;
    assert_eq!((e["type"].as_str(), e["object"]["metadata"]["resourceVersion"].as_str()), (Some("ADDED"), Some(&*(rv + 1).to_string())));
    // Relabelled out of the selection: DELETED, with the object as it was, at the change's version.
    let e = repos.event().await;
    round_trip::<WatchEvent<Secret>>("DELETED by selector", &e);
    assert_eq!(e["type"], "DELETED");
    assert_eq!(e["object"]["metadata"]["labels"], json!({"argocd.argoproj.io/secret-type": "repository"}));
    assert_eq!(e["object"]["metadata"]["resourceVersion"], (rv + 3).to_string());

    // From the start (no resourceVersion): the current state as ADDED events first; a
    // timeoutSeconds ends the stream cleanly.
    let mut from_start = raw.watch("/apis/argoproj.io/v1alpha1/namespaces/argocd/applications?watch=true&timeoutSeconds=1").await;
    let mut names = Vec::new();
    for _ in 0..3 {
        let e = from_start.event().await;
        assert_eq!(e["type"], "ADDED");
        names.push(check_custom_object("initial event", &e["object"], "argoproj.io/v1alpha1", "Application").name.unwrap());
    }
    assert_eq!(names, ["api", "guestbook", "web"]);
    assert!(from_start.next().await.is_none(), "timeoutSeconds=1 ends the watch");
    kube.finish();
}

#[tokio::test]
async fn a_watch_from_lost_history_ends_in_an_error_event() {
    let kube = world();
    let raw = Raw::new(&kube, Some(TOKEN));
    kube.secret("argocd", "later", "Opaque", &[]);
    kube.compact();
    let now = kube.resource_version();
    // The watch cache answers 200 and one ERROR event carrying the 410, then ends the stream.
    let mut w = raw.watch("/api/v1/namespaces/argocd/secrets?watch=true&resourceVersion=3").await;
    let e = w.event().await;
    match round_trip::<WatchEvent<Secret>>("ERROR", &e) {
        WatchEvent::ErrorStatus(s) => {
            assert_eq!((s.code, s.reason.as_deref()), (Some(410), Some("Expired")));
            assert_eq!(s.message, Some(format!("too old resource version: 3 ({now})")));
        }
        other => panic!("not an error status: {other:?}"),
    }
    assert!(w.next().await.is_none());
    // From the compaction point itself: fine.
    let mut ok = raw.watch(&format!("/api/v1/namespaces/argocd/secrets?watch=true&resourceVersion={now}")).await;
    kube.secret("argocd", "after", "Opaque", &[]);
    assert_eq!(ok.event().await["type"], "ADDED");
    // A version the server has not reached.
    let mut ahead = raw.watch(&format!("/api/v1/secrets?watch=true&resourceVersion={}", now + 50)).await;
    match round_trip::<WatchEvent<Secret>>("ERROR", &ahead.event().await) {
        WatchEvent::ErrorStatus(s) => assert_eq!((s.code, s.reason.as_deref()), (Some(504), Some("Timeout"))),
        other => panic!("not an error status: {other:?}"),
    }
    kube.finish();
}

// ---- the bot's client library against it ----

#[test]
fn the_kubeconfig_has_both_contexts() {
    let kube = FakeKube::start();
    let dir = tempfile::tempdir().unwrap();
    let config = Kubeconfig::read_from(kube.kubeconfig(dir.path())).unwrap();
    assert_eq!(config.current_context.as_deref(), Some("fake"));
    let contexts: Vec<_> = config.contexts.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(contexts, ["fake", "other"]);
    let cluster = config.clusters[0].cluster.as_ref().unwrap();
    assert_eq!(cluster.server.as_deref(), Some(kube.url().as_str()));
    assert!(cluster.certificate_authority_data.is_some());
    kube.finish();
}

#[tokio::test]
async fn kube_rs_reads_a_secret_and_pages_applications() {
    let kube = world();
    let dir = tempfile::tempdir().unwrap();
    let client = connect(&kube.kubeconfig(dir.path()), "fake").await;

    let secret = Api::<Secret>::namespaced(client.clone(), "argocd").get("regcred").await.unwrap();
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/dockerconfigjson"));

    let apps: Api<DynamicObject> = Api::all_with(client.clone(), &applications_resource());
    let mut names = Vec::new();
    let mut params = ListParams::default().limit(2);
    let mut pages = 0;
    loop {
        let page = apps.list(&params).await.unwrap();
        pages += 1;
        names.extend(page.items.iter().map(|o| format!("{}/{}", o.metadata.namespace.clone().unwrap(), o.metadata.name.clone().unwrap())));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = ListParams::default().limit(2).continue_token(&token),
            _ => break,
        }
    }
    assert_eq!(pages, 2);
    assert_eq!(names, ["argocd/api", "argocd/guestbook", "argocd/web", "team-a/billing"]);
    let lists: Vec<_> = kube.requests().into_iter().filter(|r| r.verb == "list").collect();
    assert_eq!(lists.len(), 2);
    assert!(lists.iter().all(|r| r.user.as_deref() == Some(BOT_USER) && r.status == 200 && r.query.contains("limit=2")));

    // An expired token surfaces as the API's 410.
    let page = apps.list(&ListParams::default().limit(2)).await.unwrap();
    kube.expire_continue_tokens();
    let token = page.metadata.continue_.unwrap();
    let status = api_status(apps.list(&ListParams::default().limit(2).continue_token(&token)).await);
    assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
    assert!(status.metadata.and_then(|m| m.continue_).is_some());
    kube.finish();
}

#[tokio::test]
async fn kube_rs_sees_forbidden_and_unauthorized() {
    let kube = world();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kube.kubeconfig(dir.path());
    let client = connect(&kubeconfig, "fake").await;
    kube.deny(BOT_USER, "get", "secrets", Some("argocd"), Some("regcred"));
    kube.deny_cluster_wide(BOT_USER, "list", "applications");

    let status = api_status(Api::<Secret>::namespaced(client.clone(), "argocd").get("regcred").await);
    assert_eq!((status.code, status.reason.as_str()), (403, "Forbidden"));
    assert!(status.message.contains("cannot get resource \"secrets\""));

    let all: Api<DynamicObject> = Api::all_with(client.clone(), &applications_resource());
    assert_eq!(api_status(all.list(&ListParams::default()).await).code, 403);
    let argocd: Api<DynamicObject> = Api::namespaced_with(client.clone(), "argocd", &applications_resource());
    assert_eq!(argocd.list(&ListParams::default()).await.unwrap().items.len(), 3);

    let stranger = connect(&kubeconfig, "other").await;
    let status = api_status(Api::<Secret>::namespaced(stranger, "argocd").get("git-creds").await);
    assert_eq!((status.code, status.reason.as_str(), status.message.as_str()), (401, "Unauthorized", "Unauthorized"));

    // Another token, another user: allowed by default, denied by its own rules only.
    kube.add_token("second-token", "system:serviceaccount:argocd:second");
    let second = connect(&kube.kubeconfig_for(dir.path(), "second-token"), "fake").await;
    assert!(Api::<Secret>::namespaced(second, "argocd").get("regcred").await.is_ok());
    assert_eq!(kube.requests().last().unwrap().user.as_deref(), Some("system:serviceaccount:argocd:second"));
    kube.finish();
}

#[tokio::test]
async fn kube_rs_refuses_a_server_its_ca_did_not_sign() {
    let kube = world();
    let dir = tempfile::tempdir().unwrap();
    let unrelated = fake_kube::tls::Ca::generate("unrelated CA");
    let client = connect(&kube.kubeconfig_trusting(dir.path(), &unrelated.pem()), "fake").await;
    let err = Api::<Secret>::namespaced(client, "argocd").get("regcred").await.unwrap_err();
    assert!(!matches!(err, kube::Error::Api(_)), "{err:?}");
    let mut chain = Vec::new();
    let mut source: Option<&dyn std::error::Error> = Some(&err);
    while let Some(e) = source {
        chain.push(e.to_string());
        source = e.source();
    }
    assert!(chain.iter().any(|m| m.contains("certificate verify failed")), "{chain:#?}");
    assert!(kube.requests().is_empty(), "nothing got past the handshake");
    // The server may read the client's alert after the client has given up.
    for _ in 0..100 {
        if kube.failed_handshakes() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(kube.failed_handshakes() >= 1);
    kube.finish();
}

#[tokio::test]
async fn kube_rs_watch_sees_what_is_applied_after_it_started() {
    let kube = world();
    let dir = tempfile::tempdir().unwrap();
    let client = connect(&kube.kubeconfig(dir.path()), "fake").await;
    let apps: Api<DynamicObject> = Api::namespaced_with(client.clone(), "argocd", &applications_resource());
    let rv = apps.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    let mut events = apps.watch(&WatchParams::default().timeout(30), &rv).await.unwrap().boxed();
    kube.apply(application("argocd", "late"));
    match tokio::time::timeout(Duration::from_secs(10), events.try_next()).await.unwrap().unwrap() {
        Some(kube::api::WatchEvent::Added(o)) => {
            assert_eq!(o.metadata.name.as_deref(), Some("late"));
            assert_eq!(o.data["spec"]["source"]["path"], "apps/late");
        }
        other => panic!("expected ADDED, got {other:?}"),
    }
    let watch = kube.requests().into_iter().find(|r| r.verb == "watch").unwrap();
    assert!(watch.query.contains("allowWatchBookmarks=true") && watch.query.contains("timeoutSeconds=30"), "{}", watch.query);
    kube.bookmark();
    let next = tokio::time::timeout(Duration::from_secs(10), events.try_next()).await.unwrap().unwrap();
    assert!(matches!(next, Some(kube::api::WatchEvent::Bookmark(_))), "{next:?}");
    kube.close_watches();
    assert!(tokio::time::timeout(Duration::from_secs(10), events.try_next()).await.unwrap().unwrap().is_none());

    // From lost history: the ERROR event, as kube-rs hands it over.
    kube.compact();
    let secrets = Api::<Secret>::namespaced(client, "argocd");
    let mut events = secrets.watch(&WatchParams::default(), "1").await.unwrap().boxed();
    match tokio::time::timeout(Duration::from_secs(10), events.try_next()).await.unwrap().unwrap() {
        Some(kube::api::WatchEvent::Error(s)) => assert_eq!((s.code, s.reason.as_str()), (410, "Expired")),
        other => panic!("expected an ERROR event, got {other:?}"),
    }
    kube.finish();
}

// ---- the fake's own controls ----

#[test]
fn apply_sets_server_fields_as_the_apiserver_does() {
    let kube = FakeKube::start();
    let first = kube.apply(application("argocd", "web"));
    assert_eq!(first["metadata"]["resourceVersion"], "1");
    assert_eq!(first["metadata"]["generation"], 1);
    // The same object again is no write.
    assert_eq!(kube.apply(application("argocd", "web")), first);
    assert_eq!(kube.resource_version(), 1);
    // Labels only: a new resourceVersion, the same generation.
    let mut labelled = application("argocd", "web");
    labelled["metadata"]["labels"]["tier"] = json!("front");
    let labelled = kube.apply(labelled);
    assert_eq!((labelled["metadata"]["resourceVersion"].as_str(), labelled["metadata"]["generation"].as_i64()), (Some("2"), Some(1)));
    assert_eq!(labelled["metadata"]["uid"], first["metadata"]["uid"]);
    assert_eq!(labelled["metadata"]["creationTimestamp"], first["metadata"]["creationTimestamp"]);
    // The spec: the generation moves.
    let mut moved = application("argocd", "web");
    moved["spec"]["source"]["targetRevision"] = json!("v2");
    assert_eq!(kube.apply(moved)["metadata"]["generation"], 2);
    assert_eq!(kube.apply_yaml(IMAGE_UPDATER).len(), 2);
    assert!(kube.get("argocd-image-updater.argoproj.io/v1alpha1", "ImageUpdater", "team-a", "team-a").is_some());
    kube.finish();
}

#[tokio::test]
async fn violations_fail_the_test_and_faults_answer_once() {
    let kube = world();
    let raw = Raw::new(&kube, Some(TOKEN));
    kube.fail_next("secrets/regcred", 503);
    let (code, body) = raw.get("/api/v1/namespaces/argocd/secrets/regcred").await;
    assert_eq!(code, 503);
    check_status("503", &body, 503, "ServiceUnavailable");
    assert_eq!(raw.get("/api/v1/namespaces/argocd/secrets/regcred").await.0, 200);
    kube.fail_next("/applications", 429);
    let resp = raw.request("/apis/argoproj.io/v1alpha1/applications").send().await.unwrap();
    assert_eq!((resp.status().as_u16(), resp.headers()["retry-after"].to_str().unwrap()), (429, "1"));
    check_status("429", &resp.json().await.unwrap(), 429, "TooManyRequests");

    // A parameter kube-apiserver does not take, and a write: violations.
    assert_eq!(raw.get("/api/v1/secrets?per_page=5").await.0, 200);
    let dir = tempfile::tempdir().unwrap();
    let client = connect(&kube.kubeconfig(dir.path()), "fake").await;
    let secret: Secret = serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap();
    let status = api_status(Api::<Secret>::namespaced(client, "argocd").create(&PostParams::default(), &secret).await);
    assert_eq!(status.code, 403);
    let violations = kube.violations();
    assert_eq!(violations.len(), 2, "{violations:#?}");
    assert!(violations[0].contains("per_page") && violations[1].contains("create"), "{violations:#?}");
    let finished = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| kube.finish()));
    assert!(finished.is_err(), "finish() fails on violations");
}
