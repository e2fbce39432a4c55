//! A fake Kubernetes API server on loopback, for the bot's Kubernetes client (kube-rs): HTTPS
//! with a test CA, bearer-token auth, RBAC-shaped denials, and reads of the three resources the
//! bot needs: core `v1` Secrets, Argo CD's `applications.argoproj.io` and
//! `imageupdaters.argocd-image-updater.argoproj.io` (both `v1alpha1`, namespaced), plus
//! `/version`.
//!
//! It follows kube-apiserver (1.33) where it serves: the request paths, `Status` errors with
//! their real reasons and messages, lists with `limit`/`continue` pagination over one consistent
//! snapshot (continue tokens shaped as the apiserver's: base64url of `{"v","rv","start"}`), a
//! global `resourceVersion` counter (etcd's revision), label and field selectors, watches
//! from a `resourceVersion` with the watch cache's event rules, and `410 Expired` once history
//! is gone. `tests/kube_fake.rs` checks every kind of answer against k8s-openapi's types, so the
//! fake cannot drift from the Kubernetes API's shapes.
//!
//! Strict where the apiserver is lenient: it ignores query parameters it does not know, the fake
//! records them; an unknown route, a parameter kube-apiserver does not take for the request, one
//! the fake does not implement, or a write (the bot only reads) is a violation, and
//! [`FakeKube::finish`] (or dropping the fake) fails the test.
//!
//! Model choices, stated once:
//! - the bot is the service account `argocd:argocd-image-pr` ([`BOT_USER`], token [`TOKEN`]);
//!   every authenticated user may get, list and watch everything unless [`FakeKube::deny`]
//!   says otherwise, and may write nothing; a request without credentials is
//!   `system:anonymous`, which may read `/version` only (as `system:public-info-viewer`);
//! - test controls write objects directly (as another client would): [`FakeKube::apply`]
//!   creates or replaces, a replace that changes nothing is no write (as the apiserver skips
//!   it), no `managedFields` are kept;
//! - the watch history is kept from start until [`FakeKube::compact`].

mod api;
pub mod tls;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use serde_json::{Value, json};

/// The bot's service-account token (a JWT in a real cluster; the fake only compares it).
pub const TOKEN: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImZha2Uta3ViZSJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6YXJnb2NkOmFyZ29jZC1pbWFnZS1wciJ9.ZmFrZQ";
/// Who [`TOKEN`] authenticates as.
pub const BOT_USER: &str = "system:serviceaccount:argocd:argocd-image-pr";
/// The token of the kubeconfig's `other` context: no one's, so every request answers 401.
pub const UNKNOWN_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJub2JvZHkifQ.bm9ib2R5";
/// Who a request without credentials is (kube-apiserver's `--anonymous-auth` default).
pub const ANONYMOUS: &str = "system:anonymous";

/// A resource the fake serves.
pub(super) struct Resource {
    /// `""` for the core group.
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
}

impl Resource {
    /// `v1`, `argoproj.io/v1alpha1`.
    fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_string() } else { format!("{}/{}", self.group, self.version) }
    }

    /// As the apiserver names it in messages: `secrets`, `applications.argoproj.io`.
    fn qualified(&self) -> String {
        if self.group.is_empty() { self.plural.to_string() } else { format!("{}.{}", self.plural, self.group) }
    }

    fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// Built-in types are served from Go structs: list items carry no `apiVersion`/`kind`
    /// (kubernetes/kubernetes#3030). Custom resources are served as stored JSON: they do.
    fn builtin(&self) -> bool {
        self.group.is_empty()
    }
}

pub(super) const RESOURCES: &[Resource] = &[
    Resource { group: "", version: "v1", plural: "secrets", kind: "Secret" },
    Resource { group: "argoproj.io", version: "v1alpha1", plural: "applications", kind: "Application" },
    Resource { group: "argocd-image-updater.argoproj.io", version: "v1alpha1", plural: "imageupdaters", kind: "ImageUpdater" },
];

const SECRETS: usize = 0;

fn resource_of(api_version: &str, kind: &str) -> Option<usize> {
    RESOURCES.iter().position(|r| r.api_version() == api_version && r.kind == kind)
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    /// Who it authenticated as (`None` when the token was refused: 401).
    pub user: Option<String>,
    /// The authorization verb: `get`, `list`, `watch`, `create`...; empty for `/version` and
    /// unknown routes.
    pub verb: String,
    /// The HTTP status (200 for a watch, even one that ends in an `ERROR` event).
    pub status: u16,
}

/// A change to one object, at one resourceVersion: what a watch replays.
#[derive(Debug, Clone)]
pub(super) struct Change {
    rv: u64,
    resource: usize,
    /// `namespace/name`, as the etcd key after the resource's prefix.
    key: String,
    previous: Option<Value>,
    current: Option<Value>,
}

/// Where a denial applies.
#[derive(Debug, Clone, PartialEq)]
enum Scope {
    /// Every namespace and the cluster scope.
    Anywhere,
    /// Requests across all namespaces only (`/apis/argoproj.io/v1alpha1/applications`).
    ClusterWide,
    Namespace(String),
}

#[derive(Debug, Clone)]
struct Denial {
    user: String,
    verb: String,
    resource: String,
    scope: Scope,
    name: Option<String>,
}

#[derive(Default)]
pub(super) struct State {
    /// The last resourceVersion handed out (etcd's revision: one counter for every object).
    rv: u64,
    /// By resource and `namespace/name` (etcd's key order).
    objects: BTreeMap<(usize, String), Value>,
    /// Every change after `compacted`, oldest first.
    history: Vec<Change>,
    /// History before this resourceVersion is gone ([`FakeKube::compact`]).
    compacted: u64,
    watchers: Vec<api::Watcher>,
    tokens: HashMap<String, String>,
    denials: Vec<Denial>,
    /// Continue tokens handed out since the last [`FakeKube::expire_continue_tokens`].
    issued_continues: Vec<String>,
    expired_continues: HashSet<String>,
    /// The next this many lists that continue answer `410 Expired` (their revision compacted
    /// while the client paged).
    expire_next_continues: usize,
    faults: Vec<(String, u16)>,
    requests: Vec<Recorded>,
    violations: Vec<String>,
    failed_handshakes: usize,
}

impl State {
    /// Creates or replaces `object`, as an update through the API would: server-set metadata
    /// kept or made, a new resourceVersion, watchers told. A replace that changes nothing is
    /// no write (no new resourceVersion, no event), as the apiserver skips such updates.
    fn apply(&mut self, mut object: Value) -> Value {
        let api_version = object["apiVersion"].as_str().expect("the object has no apiVersion").to_string();
        let kind = object["kind"].as_str().expect("the object has no kind").to_string();
        let r = resource_of(&api_version, &kind).unwrap_or_else(|| panic!("the fake Kubernetes does not serve {api_version} {kind}"));
        if r == SECRETS {
            normalize_secret(&mut object);
        }
        let meta = object.get_mut("metadata").and_then(Value::as_object_mut).expect("the object has no metadata");
        let name = meta.get("name").and_then(Value::as_str).expect("the object has no metadata.name").to_string();
        let namespace = meta.get("namespace").and_then(Value::as_str).unwrap_or("default").to_string();
        meta.insert("namespace".into(), json!(namespace));
        for server_set in ["uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "selfLink"] {
            meta.remove(server_set);
        }
        let key = format!("{namespace}/{name}");
        let previous = self.objects.get(&(r, key.clone())).cloned();
        if let Some(old) = &previous
            && strip_server_fields(old) == object
        {
            return old.clone();
        }
        let meta = object["metadata"].as_object_mut().unwrap();
        match &previous {
            Some(old) => {
                meta.insert("uid".into(), old["metadata"]["uid"].clone());
                meta.insert("creationTimestamp".into(), old["metadata"]["creationTimestamp"].clone());
            }
            None => {
                meta.insert("uid".into(), json!(new_uid()));
                meta.insert("creationTimestamp".into(), json!(chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()));
            }
        }
        if !RESOURCES[r].builtin() {
            // Custom resources count changes to anything but metadata and status.
            let generation = match &previous {
                Some(old) => {
                    let bump = i64::from(without_meta_status(old) != without_meta_status(&object));
                    old["metadata"]["generation"].as_i64().unwrap_or(1) + bump
                }
                None => 1,
            };
            object["metadata"]["generation"] = json!(generation);
        }
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.objects.insert((r, key.clone()), object.clone());
        let change = Change { rv: self.rv, resource: r, key, previous, current: Some(object.clone()) };
        self.record(change);
        object
    }

    fn delete(&mut self, r: usize, namespace: &str, name: &str) -> Option<Value> {
        let key = format!("{namespace}/{name}");
        let previous = self.objects.remove(&(r, key.clone()))?;
        self.rv += 1;
        self.record(Change { rv: self.rv, resource: r, key, previous: Some(previous.clone()), current: None });
        Some(previous)
    }

    fn record(&mut self, change: Change) {
        api::publish(self, &change);
        self.history.push(change);
    }

    /// The objects of resource `r` as they were at resourceVersion `rv` (which must not be
    /// older than `compacted`): the current ones with later changes undone.
    fn snapshot(&self, r: usize, rv: u64) -> BTreeMap<String, Value> {
        let mut objects: BTreeMap<String, Value> =
            self.objects.iter().filter(|((res, _), _)| *res == r).map(|((_, key), v)| (key.clone(), v.clone())).collect();
        for change in self.history.iter().rev().take_while(|c| c.rv > rv) {
            if change.resource != r {
                continue;
            }
            match &change.previous {
                Some(prev) => objects.insert(change.key.clone(), prev.clone()),
                None => objects.remove(&change.key),
            };
        }
        objects
    }
}

/// What the apiserver does to a Secret on write: `stringData` merged into `data` (base64),
/// `type` defaulted to `Opaque`.
fn normalize_secret(object: &mut Value) {
    if let Some(Value::Object(plain)) = object.as_object_mut().and_then(|o| o.remove("stringData")) {
        let data = object.as_object_mut().unwrap().entry("data").or_insert_with(|| json!({}));
        for (k, v) in plain {
            let text = v.as_str().expect("stringData values are strings");
            data[k] = json!(base64::engine::general_purpose::STANDARD.encode(text));
        }
    }
    if object.get("type").is_none() {
        object["type"] = json!("Opaque");
    }
}

fn strip_server_fields(object: &Value) -> Value {
    let mut o = object.clone();
    if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        for f in ["uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "selfLink"] {
            meta.remove(f);
        }
    }
    o
}

fn without_meta_status(object: &Value) -> Value {
    let mut o = object.clone();
    if let Some(map) = o.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    o
}

/// A random UUID (version 4), as the apiserver gives every object.
pub(super) fn new_uid() -> String {
    let mut b = [0u8; 16];
    openssl::rand::rand_bytes(&mut b).unwrap();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

pub(super) struct Shared {
    pub(super) state: Mutex<State>,
}

/// The fake server; stops when dropped.
pub struct FakeKube {
    shared: Arc<Shared>,
    addr: SocketAddr,
    ca_pem: Vec<u8>,
    kubeconfigs: AtomicUsize,
    finished: AtomicBool,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Default for FakeKube {
    fn default() -> Self {
        Self::start()
    }
}

impl FakeKube {
    /// Starts the fake on a free loopback port (its own thread and runtime), with a fresh CA
    /// and the bot's token.
    pub fn start() -> FakeKube {
        let ca = tls::Ca::generate("fake-kube CA");
        let acceptor = tls::acceptor(&ca);
        let mut state = State::default();
        state.tokens.insert(TOKEN.into(), BOT_USER.into());
        let shared = Arc::new(Shared { state: Mutex::new(state) });
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let server_shared = shared.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let app = axum::Router::new().fallback(api::serve).with_state(server_shared.clone());
                tokio::select! {
                    _ = tls::serve(listener, acceptor, app, server_shared) => {}
                    _ = shutdown_rx => {}
                }
            });
        });
        let addr = addr_rx.recv().expect("the fake Kubernetes API server did not start");
        FakeKube {
            shared,
            addr,
            ca_pem: ca.pem(),
            kubeconfigs: AtomicUsize::new(0),
            finished: AtomicBool::new(false),
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap()
    }

    /// `https://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The cluster CA (PEM) that signed the serving certificate.
    pub fn ca_pem(&self) -> Vec<u8> {
        self.ca_pem.clone()
    }

    // ---- kubeconfigs ----

    /// Writes `dir/kubeconfig`: cluster `fake` (this server, its CA), user `bot` ([`TOKEN`]),
    /// context `fake` (the current one), and context `other` on the same cluster as a user
    /// whose token the server does not know (every request answers 401).
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(&path, self.kubeconfig_yaml(TOKEN, &self.ca_pem)).unwrap();
        path
    }

    /// Like [`Self::kubeconfig`], with `token` for the `bot` user (one from [`Self::add_token`]).
    pub fn kubeconfig_for(&self, dir: &Path, token: &str) -> PathBuf {
        self.write_numbered(dir, &self.kubeconfig_yaml(token, &self.ca_pem))
    }

    /// Like [`Self::kubeconfig`], but trusting `ca_pem` instead of the server's CA.
    pub fn kubeconfig_trusting(&self, dir: &Path, ca_pem: &[u8]) -> PathBuf {
        self.write_numbered(dir, &self.kubeconfig_yaml(TOKEN, ca_pem))
    }

    fn write_numbered(&self, dir: &Path, yaml: &str) -> PathBuf {
        let n = self.kubeconfigs.fetch_add(1, Ordering::Relaxed) + 1;
        let path = dir.join(format!("kubeconfig-{n}"));
        std::fs::write(&path, yaml).unwrap();
        path
    }

    fn kubeconfig_yaml(&self, token: &str, ca_pem: &[u8]) -> String {
        let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
        let server = self.url();
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: bot
  user:
    token: {token}
- name: stranger
  user:
    token: {UNKNOWN_TOKEN}
contexts:
- name: fake
  context:
    cluster: fake
    user: bot
- name: other
  context:
    cluster: fake
    user: stranger
current-context: fake
preferences: {{}}
"
        )
    }

    // ---- who may do what ----

    /// A token for `user` (allowed what every authenticated user is, see [`Self::deny`]).
    pub fn add_token(&self, token: &str, user: &str) {
        self.state().tokens.insert(token.into(), user.into());
    }

    /// Forbids `user` to `verb` (`get`, `list`, `watch`, or `*`) `resource` (a plural:
    /// `secrets`, `applications`, `imageupdaters`, or `*`) in `namespace` (`None`: everywhere,
    /// the cluster scope included), and only the object `name` when given, as an RBAC rule
    /// with `resourceNames` would: a named denial leaves lists and watches allowed.
    pub fn deny(&self, user: &str, verb: &str, resource: &str, namespace: Option<&str>, name: Option<&str>) {
        let scope = namespace.map_or(Scope::Anywhere, |ns| Scope::Namespace(ns.into()));
        self.push_denial(user, verb, resource, scope, name);
    }

    /// Forbids `user` to `verb` `resource` across all namespaces (`/api/v1/secrets`,
    /// `/apis/argoproj.io/v1alpha1/applications`) while leaving it allowed in each namespace,
    /// as for a service account bound by RoleBindings and no ClusterRoleBinding.
    pub fn deny_cluster_wide(&self, user: &str, verb: &str, resource: &str) {
        self.push_denial(user, verb, resource, Scope::ClusterWide, None);
    }

    fn push_denial(&self, user: &str, verb: &str, resource: &str, scope: Scope, name: Option<&str>) {
        assert!(resource == "*" || RESOURCES.iter().any(|r| r.plural == resource), "the fake serves no resource {resource:?}");
        self.state().denials.push(Denial { user: user.into(), verb: verb.into(), resource: resource.into(), scope, name: name.map(str::to_string) });
    }

    // ---- objects ----

    /// Creates or replaces an object by apiVersion, kind, namespace (default `default`) and
    /// name; sets `uid`, `creationTimestamp`, `resourceVersion` and (custom resources)
    /// `generation` as the apiserver does. Returns the object as stored.
    pub fn apply(&self, object: Value) -> Value {
        self.state().apply(object)
    }

    /// [`Self::apply`] for each document of a multi-document YAML text.
    pub fn apply_yaml(&self, yaml: &str) -> Vec<Value> {
        let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).unwrap_or_else(|e| panic!("invalid YAML: {e}"));
        let mut st = self.state();
        docs.into_iter().filter(|d| !d.is_null()).map(|d| st.apply(d)).collect()
    }

    /// Deletes an object; returns it as it was. Panics when there is none.
    pub fn delete(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> Value {
        let r = resource_of(api_version, kind).unwrap_or_else(|| panic!("the fake Kubernetes does not serve {api_version} {kind}"));
        self.state().delete(r, namespace, name).unwrap_or_else(|| panic!("no {kind} {namespace}/{name}"))
    }

    /// Creates or replaces a Secret of `type_` (`Opaque`, `kubernetes.io/dockerconfigjson`...)
    /// with `data` (stored base64, as the API holds it).
    pub fn secret(&self, namespace: &str, name: &str, type_: &str, data: &[(&str, &[u8])]) -> Value {
        let data: serde_json::Map<String, Value> =
            data.iter().map(|(k, v)| (k.to_string(), json!(base64::engine::general_purpose::STANDARD.encode(v)))).collect();
        self.apply(json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "type": type_,
            "data": data,
        }))
    }

    /// An object as stored, if it exists.
    pub fn get(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let r = resource_of(api_version, kind)?;
        self.state().objects.get(&(r, format!("{namespace}/{name}"))).cloned()
    }

    /// The current resourceVersion (the last one handed out).
    pub fn resource_version(&self) -> u64 {
        self.state().rv
    }

    // ---- history, watches, faults ----

    /// Drops the history before now, as etcd compaction and the watch cache's window do: a
    /// watch from an older resourceVersion, an exact list at one, and a continue token issued
    /// at one answer `410 Expired`.
    pub fn compact(&self) {
        let mut st = self.state();
        st.history.clear();
        st.compacted = st.rv;
    }

    /// Every continue token issued so far answers `410 Expired`, as after etcd compacted
    /// their revision (with the apiserver's token to continue inconsistently).
    pub fn expire_continue_tokens(&self) {
        let mut st = self.state();
        let issued = std::mem::take(&mut st.issued_continues);
        st.expired_continues.extend(issued);
    }

    /// The next list request with a continue token answers `410 Expired`, as when etcd
    /// compacts the list's revision between two of the client's pages.
    pub fn expire_next_continue(&self) {
        self.state().expire_next_continues += 1;
    }

    /// Sends a `BOOKMARK` event (the current resourceVersion) on every open watch that allowed
    /// them, as the apiserver does about once a minute and before a watch times out.
    pub fn bookmark(&self) {
        let mut st = self.state();
        api::bookmark(&mut st);
    }

    /// Ends every open watch (the stream closes cleanly), as when `timeoutSeconds` passes or
    /// the apiserver restarts.
    pub fn close_watches(&self) {
        self.state().watchers.clear();
    }

    /// Open watches.
    pub fn watches(&self) -> usize {
        let mut st = self.state();
        st.watchers.retain(|w| !w.is_closed());
        st.watchers.len()
    }

    /// The next request whose path contains `path_contains` answers `status` with the
    /// apiserver's Status for it (after authentication), once.
    pub fn fail_next(&self, path_contains: &str, status: u16) {
        self.state().faults.push((path_contains.into(), status));
    }

    // ---- inspection ----

    pub fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }

    /// Forgets the requests seen so far (violations stay).
    pub fn clear_requests(&self) {
        self.state().requests.clear();
    }

    /// TLS handshakes that failed (a client that does not trust the CA).
    pub fn failed_handshakes(&self) -> usize {
        self.state().failed_handshakes
    }

    pub fn violations(&self) -> Vec<String> {
        self.state().violations.clone()
    }

    /// Forgets the violations seen so far (for tests that provoke them on purpose).
    pub fn take_violations(&self) -> Vec<String> {
        std::mem::take(&mut self.state().violations)
    }

    /// Fails the test when any request broke the Kubernetes API as the fake serves it.
    pub fn finish(&self) {
        self.finished.store(true, Ordering::SeqCst);
        let violations = self.violations();
        assert!(
            violations.is_empty(),
            "the fake Kubernetes API server saw {} violation(s):\n  {}",
            violations.len(),
            violations.join("\n  ")
        );
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if !self.finished.load(Ordering::SeqCst) && !std::thread::panicking() {
            self.finish();
        }
    }
}
