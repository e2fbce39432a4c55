//! The HTTP side of the fake Kubernetes API server: authentication, authorization, routing,
//! query parameters, get, list (selectors, pagination), watch, and the `Status` errors, each as
//! kube-apiserver answers it.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use base64::Engine;
use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::{ANONYMOUS, Change, Recorded, Resource, RESOURCES, Scope, Shared, State, new_uid};

// ---- Status errors ----

/// kube-apiserver's error body: a `v1` `Status` (`metadata` always present, `details` when the
/// error is about a resource).
pub(super) fn status(code: u16, reason: &str, message: &str, details: Option<Value>) -> Value {
    let mut s = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    if let Some(d) = details {
        s["details"] = d;
    }
    s
}

/// `details` naming a resource: `group` left out for the core group, `kind` is the plural (the
/// apiserver puts the resource there, not the kind).
fn details(r: &Resource, name: Option<&str>) -> Value {
    let mut d = json!({"kind": r.plural});
    if !r.group.is_empty() {
        d["group"] = json!(r.group);
    }
    if let Some(n) = name {
        d["name"] = json!(n);
    }
    d
}

fn unauthorized() -> Value {
    status(401, "Unauthorized", "Unauthorized", None)
}

/// As RBAC denies: `secrets "regcred" is forbidden: User "..." cannot get resource "secrets" in
/// API group "" in the namespace "argocd"` (`at the cluster scope` across namespaces).
fn forbidden(r: &Resource, name: Option<&str>, user: &str, verb: &str, namespace: Option<&str>) -> Value {
    let what = match name {
        Some(n) => format!("{} \"{n}\" is forbidden", r.qualified()),
        None => format!("{} is forbidden", r.qualified()),
    };
    let scope = match namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_string(),
    };
    let message = format!("{what}: User \"{user}\" cannot {verb} resource \"{}\" in API group \"{}\" {scope}", r.plural, r.group);
    status(403, "Forbidden", &message, Some(details(r, name)))
}

fn not_found(r: &Resource, name: &str) -> Value {
    status(404, "NotFound", &format!("{} \"{name}\" not found", r.qualified()), Some(details(r, Some(name))))
}

/// What the apiserver answers for a path it serves nothing at.
fn no_route() -> Value {
    status(404, "NotFound", "the server could not find the requested resource", Some(json!({})))
}

fn bad_request(message: &str) -> Value {
    status(400, "BadRequest", message, None)
}

/// etcd3 store's `inconsistentContinue`: the token's revision was compacted. The Status carries
/// a token (revision -1) that continues at the latest revision.
const CONTINUE_EXPIRED: &str = "The provided continue parameter is too old to display a consistent list result. \
You can start a new list without the continue parameter, or use the continue token in this response to retrieve \
the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that \
were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

/// etcd3 store's `expiredList`: an exact list at a compacted revision.
const LIST_EXPIRED: &str = "The resourceVersion for the provided list is too old.";

fn expired(message: &str, continue_token: Option<String>) -> Value {
    let mut s = status(410, "Expired", message, None);
    if let Some(t) = continue_token {
        s["metadata"] = json!({"continue": t});
    }
    s
}

/// `storage.NewTooLargeResourceVersionError`: a resourceVersion the server has not reached (it
/// waits 3 s for it first; the fake does not).
fn too_large(wanted: u64, current: u64) -> Value {
    status(
        504,
        "Timeout",
        &format!("Timeout: Too large resource version: {wanted}, current: {current}"),
        Some(json!({
            "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
            "retryAfterSeconds": 1,
        })),
    )
}

/// The Status a fault answers with, per code, as the apiserver's constructors make them.
fn fault(code: u16) -> Value {
    match code {
        400 => bad_request("the server rejected our request for an unknown reason"),
        401 => unauthorized(),
        409 => status(409, "Conflict", "the server reported a conflict", None),
        429 => status(429, "TooManyRequests", "Too many requests, please try again later.", Some(json!({"retryAfterSeconds": 1}))),
        500 => status(500, "InternalError", "Internal error occurred: injected fault", Some(json!({"causes": [{"message": "injected fault"}]}))),
        503 => status(503, "ServiceUnavailable", "the server is currently unable to handle the request", None),
        504 => status(504, "Timeout", "Timeout: request did not complete within the allotted timeout", Some(json!({"retryAfterSeconds": 1}))),
        _ => status(code, "InternalError", &format!("injected fault {code}"), None),
    }
}

// ---- replies ----

pub(super) enum Reply {
    Json(u16, Value),
    /// A watch: newline-delimited events until the sender goes or the deadline passes.
    Watch { rx: UnboundedReceiver<String>, deadline: Option<tokio::time::Instant> },
}

impl Reply {
    fn status(&self) -> u16 {
        match self {
            Reply::Json(code, _) => *code,
            Reply::Watch { .. } => 200,
        }
    }
}

fn respond(reply: Reply) -> Response {
    let builder = Response::builder()
        .header("content-type", "application/json")
        .header("cache-control", "no-cache, private")
        .header("audit-id", new_uid());
    match reply {
        Reply::Json(code, body) => {
            let builder = if code == 429 { builder.header("retry-after", "1") } else { builder };
            builder.status(code).body(Body::from(serde_json::to_vec(&body).unwrap())).unwrap()
        }
        Reply::Watch { rx, deadline } => {
            let stream = futures::stream::unfold((rx, deadline), |(mut rx, deadline)| async move {
                let next = match deadline {
                    Some(d) => tokio::time::timeout_at(d, rx.recv()).await.ok().flatten(),
                    None => rx.recv().await,
                };
                next.map(|line| (Ok::<_, Infallible>(Bytes::from(line)), (rx, deadline)))
            });
            builder.status(200).body(Body::from_stream(stream)).unwrap()
        }
    }
}

// ---- watches ----

/// An open watch.
pub(super) struct Watcher {
    resource: usize,
    /// `namespace/` or `""` for all namespaces.
    prefix: String,
    labels: Selector,
    fields: Fields,
    bookmarks: bool,
    tx: UnboundedSender<String>,
}

impl Watcher {
    fn passes(&self, object: &Value) -> bool {
        self.labels.matches(object) && self.fields.matches(object)
    }

    /// The event this watcher sees for `change`, by the watch cache's rule
    /// (`cacheWatcher.convertToWatchEvent`): `ADDED` when the object starts to pass the
    /// selectors, `MODIFIED` while it passes, `DELETED` (the previous object, at the change's
    /// resourceVersion) when it stops passing or goes.
    fn event(&self, change: &Change) -> Option<String> {
        if change.resource != self.resource || !change.key.starts_with(&self.prefix) {
            return None;
        }
        let now = change.current.as_ref().is_some_and(|o| self.passes(o));
        let before = change.previous.as_ref().is_some_and(|o| self.passes(o));
        match (before, now) {
            (false, true) => Some(event_line("ADDED", change.current.as_ref().unwrap())),
            (true, true) => Some(event_line("MODIFIED", change.current.as_ref().unwrap())),
            (true, false) => {
                let mut gone = change.previous.clone().unwrap();
                gone["metadata"]["resourceVersion"] = json!(change.rv.to_string());
                Some(event_line("DELETED", &gone))
            }
            (false, false) => None,
        }
    }

    pub(super) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

fn event_line(kind: &str, object: &Value) -> String {
    let mut line = serde_json::to_string(&json!({"type": kind, "object": object})).unwrap();
    line.push('\n');
    line
}

/// Tells every open watch about `change`; forgets watches whose client went.
pub(super) fn publish(st: &mut State, change: &Change) {
    st.watchers.retain(|w| match w.event(change) {
        Some(line) => w.tx.send(line).is_ok(),
        None => !w.is_closed(),
    });
}

/// A `BOOKMARK` on each watch that allowed them: an object of the watched kind holding only the
/// current resourceVersion. Built-in kinds come from Go structs, whose zero
/// `creationTimestamp` encodes as `null`; custom resources are plain JSON and carry none.
pub(super) fn bookmark(st: &mut State) {
    let rv = st.rv.to_string();
    st.watchers.retain(|w| {
        if !w.bookmarks {
            return !w.is_closed();
        }
        let r = &RESOURCES[w.resource];
        let mut meta = json!({"resourceVersion": rv});
        if r.builtin() {
            meta["creationTimestamp"] = Value::Null;
        }
        let object = json!({"kind": r.kind, "apiVersion": r.api_version(), "metadata": meta});
        w.tx.send(event_line("BOOKMARK", &object)).is_ok()
    });
}

// ---- selectors ----

#[derive(Debug, Clone)]
enum Op {
    Eq(String),
    Ne(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    NotExists,
}

/// A label selector (`labels.Parse`): `a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`,
/// `a notin (x,y)`, comma-separated, all of which must hold.
#[derive(Debug, Clone, Default)]
struct Selector(Vec<(String, Op)>);

impl Selector {
    fn parse(text: &str) -> Result<Selector, String> {
        let mut parts = Vec::new();
        let (mut depth, mut current) = (0i32, String::new());
        for c in text.chars() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(std::mem::take(&mut current));
                    continue;
                }
                _ => {}
            }
            current.push(c);
        }
        parts.push(current);
        if text.trim().is_empty() {
            return Ok(Selector::default());
        }
        let bad = |p: &str| format!("unable to parse requirement: found '{}', expected: identifier", p.trim());
        let mut reqs = Vec::new();
        for part in parts {
            let p = part.trim();
            let (key, op) = if let Some(key) = p.strip_prefix('!') {
                (key.trim(), Op::NotExists)
            } else if let Some(open) = p.find('(') {
                let inner = p[open + 1..].strip_suffix(')').ok_or_else(|| bad(p))?;
                let values: Vec<String> = inner.split(',').map(|v| v.trim().to_string()).collect();
                let head: Vec<&str> = p[..open].split_whitespace().collect();
                match head.as_slice() {
                    [key, "in"] => (*key, Op::In(values)),
                    [key, "notin"] => (*key, Op::NotIn(values)),
                    _ => return Err(bad(p)),
                }
            } else if let Some((k, v)) = p.split_once("!=") {
                (k.trim(), Op::Ne(v.trim().to_string()))
            } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
                (k.trim(), Op::Eq(v.trim().to_string()))
            } else {
                (p, Op::Exists)
            };
            let valid_key = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
            let valid_value = |v: &str| v.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            let values_ok = match &op {
                Op::Eq(v) | Op::Ne(v) => valid_value(v),
                Op::In(vs) | Op::NotIn(vs) => vs.iter().all(|v| valid_value(v)),
                _ => true,
            };
            if !valid_key || !values_ok {
                return Err(bad(p));
            }
            reqs.push((key.to_string(), op));
        }
        Ok(Selector(reqs))
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        self.0.iter().all(|(key, op)| {
            let value = labels.get(key).and_then(Value::as_str);
            match op {
                Op::Eq(v) => value == Some(v.as_str()),
                Op::Ne(v) => value != Some(v.as_str()),
                Op::In(vs) => value.is_some_and(|x| vs.iter().any(|v| v == x)),
                Op::NotIn(vs) => !value.is_some_and(|x| vs.iter().any(|v| v == x)),
                Op::Exists => value.is_some(),
                Op::NotExists => value.is_none(),
            }
        })
    }
}

/// A field selector: `field=value`, `field==value`, `field!=value`, comma-separated, over the
/// fields the apiserver indexes for the resource (`metadata.name`, `metadata.namespace`, and a
/// Secret's `type`).
#[derive(Debug, Clone, Default)]
struct Fields(Vec<(String, bool, String)>);

impl Fields {
    fn parse(text: &str, r: &Resource) -> Result<Fields, String> {
        let mut reqs = Vec::new();
        if text.trim().is_empty() {
            return Ok(Fields::default());
        }
        for part in text.split(',') {
            let (field, equal, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (f, true, v)
            } else {
                return Err(format!("invalid selector: '{text}'; can't understand '{part}'"));
            };
            let field = field.trim();
            let known = ["metadata.name", "metadata.namespace"].contains(&field) || (r.builtin() && r.kind == "Secret" && field == "type");
            if !known {
                return Err(if r.builtin() {
                    format!("field label not supported: {field}")
                } else {
                    format!("\"{field}\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\"")
                });
            }
            reqs.push((field.to_string(), equal, value.trim().to_string()));
        }
        Ok(Fields(reqs))
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(field, equal, value)| {
            let actual = match field.as_str() {
                "metadata.name" => object["metadata"]["name"].as_str(),
                "metadata.namespace" => object["metadata"]["namespace"].as_str(),
                _ => object["type"].as_str(),
            };
            (actual == Some(value.as_str())) == *equal
        })
    }
}

// ---- continue tokens ----

/// `storage.EncodeContinue`: base64url (no padding) of `{"v":"meta.k8s.io/v1","rv":N,"start":K}`
/// where `K` is the key after the last one returned (`last + "\0"`), relative to the list's
/// key prefix.
fn encode_continue(rv: i64, start: &str) -> String {
    let json = serde_json::to_vec(&json!({"v": "meta.k8s.io/v1", "rv": rv, "start": start})).unwrap();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

fn decode_continue(token: &str) -> Result<(i64, String), String> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|e| format!("continue key is not valid: {e}"))?;
    let v: Value = serde_json::from_slice(&raw).map_err(|e| format!("continue key is not valid: {e}"))?;
    if v["v"] != "meta.k8s.io/v1" {
        return Err("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)".into());
    }
    let rv = v["rv"].as_i64().ok_or("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")?;
    let start = v["start"].as_str().filter(|s| !s.is_empty()).ok_or("continue key is not valid: encoded start key empty")?;
    if start.contains("..") || start.starts_with('/') {
        return Err("continue key is not valid: key path traversal".into());
    }
    Ok((rv, start.to_string()))
}

// ---- routing ----

enum Route {
    Version,
    Resource { r: usize, namespace: Option<String>, name: Option<String> },
    Unknown,
}

/// kube-apiserver's paths: `/api/v1/...` for the core group, `/apis/{group}/{version}/...`
/// otherwise; then `{plural}`, `namespaces/{ns}/{plural}` or `namespaces/{ns}/{plural}/{name}`.
fn route(path: &str) -> Route {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if segments == ["version"] {
        return Route::Version;
    }
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Route::Unknown,
    };
    let find = |plural: &str| RESOURCES.iter().position(|r| r.group == group && r.version == version && r.plural == plural);
    let valid = |s: &&str| !s.is_empty();
    match rest {
        [plural] => find(plural).map_or(Route::Unknown, |r| Route::Resource { r, namespace: None, name: None }),
        ["namespaces", ns, plural] if valid(ns) => {
            find(plural).map_or(Route::Unknown, |r| Route::Resource { r, namespace: Some(ns.to_string()), name: None })
        }
        ["namespaces", ns, plural, name] if valid(ns) && valid(name) => {
            find(plural).map_or(Route::Unknown, |r| Route::Resource { r, namespace: Some(ns.to_string()), name: Some(name.to_string()) })
        }
        _ => Route::Unknown,
    }
}

/// `metav1.ListOptions` as query parameters (and the generic `pretty`, `timeout`).
const LIST_OPTIONS: &[&str] = &[
    "labelSelector",
    "fieldSelector",
    "watch",
    "allowWatchBookmarks",
    "resourceVersion",
    "resourceVersionMatch",
    "timeoutSeconds",
    "limit",
    "continue",
    "sendInitialEvents",
    "pretty",
    "timeout",
];
/// `metav1.GetOptions`.
const GET_OPTIONS: &[&str] = &["resourceVersion", "pretty", "timeout"];
/// What the fake leaves undone, per verb.
const LIST_UNIMPLEMENTED: &[&str] = &["sendInitialEvents"];
const WATCH_UNIMPLEMENTED: &[&str] = &["sendInitialEvents", "resourceVersionMatch"];
/// What kube-apiserver takes but ignores for a watch.
const WATCH_IGNORED: &[&str] = &["limit", "continue"];

/// Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

pub(super) async fn serve(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("").to_string();
    let mut st = shared.state.lock().unwrap();
    let mut record = Recorded { method: method.to_string(), path: path.clone(), query: query.clone(), user: None, verb: String::new(), status: 0 };
    let reply = call(&mut st, &mut record, &method, &path, &query, &headers);
    record.status = reply.status();
    st.requests.push(record);
    drop(st);
    respond(reply)
}

fn call(st: &mut State, record: &mut Recorded, method: &Method, path: &str, query: &str, headers: &HeaderMap) -> Reply {
    // Authentication comes first: a refused token is 401 whatever the path.
    let user = match headers.get("authorization").map(|v| v.to_str().unwrap_or("")) {
        None => ANONYMOUS.to_string(),
        Some(value) => match value.strip_prefix("Bearer ").and_then(|t| st.tokens.get(t.trim())) {
            Some(user) => user.clone(),
            None => return Reply::Json(401, unauthorized()),
        },
    };
    record.user = Some(user.clone());
    let params: BTreeMap<String, String> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let route = route(path);
    if let Route::Resource { name, .. } = &route {
        let watch = params.get("watch").and_then(|w| parse_bool(w)).unwrap_or(false);
        record.verb = match (method.as_str(), name.is_some(), watch) {
            ("GET", _, true) => "watch",
            ("GET", true, false) => "get",
            ("GET", false, false) => "list",
            ("POST", _, _) => "create",
            ("PUT", _, _) => "update",
            ("PATCH", _, _) => "patch",
            ("DELETE", true, _) => "delete",
            ("DELETE", false, _) => "deletecollection",
            _ => "unknown",
        }
        .to_string();
    }
    if let Some(i) = st.faults.iter().position(|(p, _)| path.contains(p.as_str())) {
        let (_, code) = st.faults.remove(i);
        return Reply::Json(code, fault(code));
    }
    match route {
        Route::Version => {
            if method != Method::GET {
                st.violations.push(format!("{method} {path}: /version is read-only"));
                return Reply::Json(405, status(405, "MethodNotAllowed", "the server does not allow this method on the requested resource", Some(json!({}))));
            }
            check_params(st, method, path, &params, &["pretty", "timeout"], &[]);
            Reply::Json(200, version())
        }
        Route::Unknown => {
            st.violations.push(format!("{method} {path}: not a path the fake Kubernetes API server serves"));
            Reply::Json(404, no_route())
        }
        Route::Resource { r, namespace, name } => {
            let res = &RESOURCES[r];
            let verb = record.verb.clone();
            if !allowed(st, &user, &verb, res, namespace.as_deref(), name.as_deref()) {
                if !["get", "list", "watch"].contains(&verb.as_str()) {
                    st.violations.push(format!("{method} {path}: a write ({verb}); the bot only reads, and the fake serves get, list and watch"));
                }
                return Reply::Json(403, forbidden(res, name.as_deref(), &user, &verb, namespace.as_deref()));
            }
            match verb.as_str() {
                "get" => {
                    check_params(st, method, path, &params, GET_OPTIONS, &[]);
                    get(st, r, namespace.as_deref().unwrap(), name.as_deref().unwrap(), &params)
                }
                "list" => {
                    check_params(st, method, path, &params, LIST_OPTIONS, LIST_UNIMPLEMENTED);
                    list(st, method, path, r, namespace.as_deref(), &params)
                }
                _ => {
                    // "watch"
                    if name.is_some() {
                        st.violations.push(format!(
                            "{method} {path}: a watch on one object's path (deprecated; watch the collection with fieldSelector=metadata.name=...)"
                        ));
                        return Reply::Json(404, no_route());
                    }
                    check_params(st, method, path, &params, LIST_OPTIONS, WATCH_UNIMPLEMENTED);
                    for p in WATCH_IGNORED {
                        if params.contains_key(*p) {
                            st.violations.push(format!("{method} {path}: {p:?} on a watch (kube-apiserver ignores it)"));
                        }
                    }
                    watch(st, r, namespace.as_deref(), &params)
                }
            }
        }
    }
}

/// Records the parameters the apiserver would ignore (not in `documented`) or the fake would
/// get wrong (in `unimplemented`).
fn check_params(st: &mut State, method: &Method, path: &str, params: &BTreeMap<String, String>, documented: &[&str], unimplemented: &[&str]) {
    for name in params.keys() {
        if !documented.contains(&name.as_str()) {
            st.violations.push(format!("{method} {path}: {name:?} is not a parameter kube-apiserver takes here (it ignores it)"));
        } else if unimplemented.contains(&name.as_str()) {
            st.violations.push(format!("{method} {path}: the fake does not implement the parameter {name:?}"));
        }
    }
}

/// RBAC as the fake models it: authenticated users may get, list and watch unless denied;
/// no one may write; `system:anonymous` may read nothing but `/version`.
fn allowed(st: &State, user: &str, verb: &str, r: &Resource, namespace: Option<&str>, name: Option<&str>) -> bool {
    if user == ANONYMOUS || !["get", "list", "watch"].contains(&verb) {
        return false;
    }
    !st.denials.iter().any(|d| {
        d.user == user
            && (d.verb == "*" || d.verb == verb)
            && (d.resource == "*" || d.resource == r.plural)
            && match &d.scope {
                Scope::Anywhere => true,
                Scope::ClusterWide => namespace.is_none(),
                Scope::Namespace(ns) => namespace == Some(ns.as_str()),
            }
            && d.name.as_deref().is_none_or(|n| name == Some(n))
    })
}

/// `GET /version`: kube-apiserver's `version.Info` (a 1.33 build; the commit is made up).
fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "emulationMajor": "1",
        "emulationMinor": "33",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "32",
        "gitVersion": "v1.33.1",
        "gitCommit": "8adc0f041b8e7ad1d30e29cc59c6ae7a15e19828",
        "gitTreeState": "clean",
        "buildDate": "2025-05-15T08:19:08Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// A resourceVersion parameter: `None` for unset or empty.
fn rv_param(params: &BTreeMap<String, String>) -> Result<Option<u64>, Value> {
    match params.get("resourceVersion").map(String::as_str) {
        None | Some("") => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| bad_request(&format!("invalid resource version: {v}"))),
    }
}

fn get(st: &State, r: usize, namespace: &str, name: &str, params: &BTreeMap<String, String>) -> Reply {
    // Any resourceVersion not newer than the server's is served the latest object (from the
    // watch cache, which is current here).
    match rv_param(params) {
        Err(e) => return Reply::Json(400, e),
        Ok(Some(rv)) if rv > st.rv => return Reply::Json(504, too_large(rv, st.rv)),
        Ok(_) => {}
    }
    match st.objects.get(&(r, format!("{namespace}/{name}"))) {
        Some(object) => Reply::Json(200, object.clone()),
        None => Reply::Json(404, not_found(&RESOURCES[r], name)),
    }
}

fn list(st: &mut State, method: &Method, path: &str, r: usize, namespace: Option<&str>, params: &BTreeMap<String, String>) -> Reply {
    let res = &RESOURCES[r];
    let labels = match Selector::parse(params.get("labelSelector").map_or("", String::as_str)) {
        Ok(s) => s,
        Err(e) => return Reply::Json(400, bad_request(&e)),
    };
    let fields = match Fields::parse(params.get("fieldSelector").map_or("", String::as_str), res) {
        Ok(f) => f,
        Err(e) => return Reply::Json(400, bad_request(&e)),
    };
    let mut limit = params.get("limit").and_then(|l| l.parse::<i64>().ok()).filter(|l| *l > 0).map(|l| l as usize);
    let prefix = namespace.map_or(String::new(), |ns| format!("{ns}/"));
    let rv_match = params.get("resourceVersionMatch").map(String::as_str).filter(|m| !m.is_empty());
    let requested = match rv_param(params) {
        Ok(rv) => rv,
        Err(e) => return Reply::Json(400, e),
    };
    // Where to read (a resourceVersion) and from which key.
    let (at, start) = if let Some(token) = params.get("continue").filter(|t| !t.is_empty()) {
        if requested.is_some() || rv_match.is_some() {
            return Reply::Json(400, bad_request("specifying resource version is not allowed when using continue"));
        }
        let (rv, start) = match decode_continue(token) {
            Ok(t) => t,
            Err(e) => return Reply::Json(400, bad_request(&e)),
        };
        let compacted_meanwhile = st.expire_next_continues > 0;
        st.expire_next_continues = st.expire_next_continues.saturating_sub(1);
        if compacted_meanwhile || st.expired_continues.contains(token) || (rv >= 0 && (rv as u64) < st.compacted) {
            return Reply::Json(410, expired(CONTINUE_EXPIRED, Some(encode_continue(-1, &start))));
        }
        // Revision -1: continue at the latest revision (after an expired token).
        let at = if rv < 0 { st.rv } else { rv as u64 };
        (at, format!("{prefix}{start}"))
    } else {
        let invalid = |m: &str| Reply::Json(422, status(422, "Invalid", &format!("ListOptions.meta.k8s.io \"\" is invalid: {m}"), None));
        let exact = match (rv_match, requested, params.get("resourceVersion").map(String::as_str)) {
            (Some(_), None, None | Some("")) => return invalid("resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided"),
            (Some("Exact"), _, Some("0")) => return invalid("resourceVersionMatch: Forbidden: resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\""),
            (Some("Exact"), _, _) => true,
            (Some("NotOlderThan"), _, _) => false,
            (Some(other), _, _) => return invalid(&format!("resourceVersionMatch: Unsupported value: \"{other}\": supported values: \"Exact\", \"NotOlderThan\"")),
            // Unset: a non-zero resourceVersion with a limit is the legacy exact match.
            (None, Some(rv), _) => rv != 0 && limit.is_some(),
            (None, None, _) => false,
        };
        let at = match requested {
            Some(0) => {
                if limit.is_some() {
                    st.violations.push(format!(
                        "{method} {path}: limit with resourceVersion=0: served from the watch cache, which answers the whole list; the fake answers it whole too"
                    ));
                    limit = None;
                }
                st.rv
            }
            Some(rv) if rv > st.rv => return Reply::Json(504, too_large(rv, st.rv)),
            Some(rv) if exact => {
                if rv < st.compacted {
                    return Reply::Json(410, expired(LIST_EXPIRED, None));
                }
                rv
            }
            _ => st.rv,
        };
        (at, prefix.clone())
    };
    let snapshot = st.snapshot(r, at);
    let mut items = Vec::new();
    let mut last_key = None;
    let mut remaining = 0usize;
    for (key, object) in snapshot.range(start..).take_while(|(k, _)| k.starts_with(&prefix)) {
        if limit.is_some_and(|l| items.len() >= l) {
            remaining += 1;
            continue;
        }
        last_key = Some(key.clone());
        if labels.matches(object) && fields.matches(object) {
            let mut item = object.clone();
            if res.builtin() {
                let map = item.as_object_mut().unwrap();
                map.remove("apiVersion");
                map.remove("kind");
            }
            items.push(item);
        }
    }
    let mut meta = json!({"resourceVersion": at.to_string()});
    if remaining > 0 {
        let relative = format!("{}\0", &last_key.unwrap()[prefix.len()..]);
        let token = encode_continue(at as i64, &relative);
        st.expired_continues.remove(&token);
        st.issued_continues.push(token.clone());
        meta["continue"] = json!(token);
        // Counted only without selectors: etcd counts keys, not matches.
        if labels.is_empty() && fields.is_empty() {
            meta["remainingItemCount"] = json!(remaining);
        }
    }
    Reply::Json(200, json!({"kind": res.list_kind(), "apiVersion": res.api_version(), "metadata": meta, "items": items}))
}

fn watch(st: &mut State, r: usize, namespace: Option<&str>, params: &BTreeMap<String, String>) -> Reply {
    let res = &RESOURCES[r];
    let labels = match Selector::parse(params.get("labelSelector").map_or("", String::as_str)) {
        Ok(s) => s,
        Err(e) => return Reply::Json(400, bad_request(&e)),
    };
    let fields = match Fields::parse(params.get("fieldSelector").map_or("", String::as_str), res) {
        Ok(f) => f,
        Err(e) => return Reply::Json(400, bad_request(&e)),
    };
    let requested = match rv_param(params) {
        Ok(rv) => rv,
        Err(e) => return Reply::Json(400, e),
    };
    let bookmarks = params.get("allowWatchBookmarks").and_then(|b| parse_bool(b)).unwrap_or(false);
    let deadline = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .filter(|t| *t > 0)
        .map(|t| tokio::time::Instant::now() + std::time::Duration::from_secs(t));
    let (tx, rx) = unbounded_channel();
    let watcher = Watcher { resource: r, prefix: namespace.map_or(String::new(), |ns| format!("{ns}/")), labels, fields, bookmarks, tx };
    match requested {
        // Unset or 0: the current state as ADDED events, then changes.
        None | Some(0) => {
            for (key, object) in st.objects.range((r, watcher.prefix.clone())..) {
                if key.0 != r || !key.1.starts_with(&watcher.prefix) {
                    break;
                }
                if watcher.passes(object) {
                    let _ = watcher.tx.send(event_line("ADDED", object));
                }
            }
        }
        // Errors past this point are ERROR events in a 200 stream, not HTTP errors, as the
        // watch cache answers once the request is authorized (`newErrWatcher`).
        Some(rv) if rv > st.rv => {
            let _ = watcher.tx.send(event_line("ERROR", &too_large(rv, st.rv)));
            return Reply::Watch { rx, deadline };
        }
        Some(rv) if rv < st.compacted => {
            let message = format!("too old resource version: {rv} ({})", st.compacted);
            let _ = watcher.tx.send(event_line("ERROR", &expired(&message, None)));
            return Reply::Watch { rx, deadline };
        }
        Some(rv) => {
            for change in st.history.iter().filter(|c| c.rv > rv) {
                if let Some(line) = watcher.event(change) {
                    let _ = watcher.tx.send(line);
                }
            }
        }
    }
    st.watchers.push(watcher);
    Reply::Watch { rx, deadline }
}

