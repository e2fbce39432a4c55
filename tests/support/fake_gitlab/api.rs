//! The HTTP side of the fake GitLab: routing, parameters, auth, rate limits, faults, the
//! operations themselves, offset pagination, and git's smart HTTP.
//!
//! Each route lists the parameters GitLab declares for it (the Grape `params` blocks behind the
//! REST docs) and the subset the fake implements. A parameter outside the first list is one
//! GitLab would silently ignore: a violation. One outside the second is one the fake would
//! silently get wrong: a violation too.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use base64::Engine;
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Value, json};

use super::json::View;
use super::{Access, Award, MergeRequest, MrState, Recorded, Shared, State, Target, git, is_draft_title};

// ---- routes ----

/// Pagination parameters of every paginated route.
const PAGINATION: &[&str] = &["page", "per_page"];

struct Route {
    method: &'static str,
    /// Path segments after `/api/v4`; `:name` is one URL-encoded segment.
    pattern: &'static [&'static str],
    op: &'static str,
    /// What GitLab declares for the route (path parameters aside).
    documented: &'static [&'static str],
    /// What the fake does something with.
    implemented: &'static [&'static str],
    paginated: bool,
}

const MR_LIST_DOCUMENTED: &[&str] = &[
    "iids",
    "state",
    "order_by",
    "sort",
    "milestone",
    "view",
    "labels",
    "with_labels_details",
    "with_merge_status_recheck",
    "created_after",
    "created_before",
    "updated_after",
    "updated_before",
    "merged_after",
    "merged_before",
    "scope",
    "author_id",
    "author_username",
    "assignee_id",
    "assignee_username",
    "reviewer_id",
    "reviewer_username",
    "my_reaction_emoji",
    "source_branch",
    "source_project_id",
    "target_branch",
    "search",
    "in",
    "wip",
    "draft",
    "not",
    "environment",
    "deployed_before",
    "deployed_after",
    "merge_user_id",
    "merge_user_username",
    "approver_ids",
    "approved_by_ids",
    "approved_by_usernames",
    "approved",
];

const MR_WRITE_DOCUMENTED: &[&str] = &[
    "assignee_id",
    "assignee_ids",
    "reviewer_ids",
    "description",
    "labels",
    "add_labels",
    "remove_labels",
    "milestone_id",
    "remove_source_branch",
    "allow_collaboration",
    "allow_maintainer_to_push",
    "squash",
    "merge_after",
    "approvals_before_merge",
];

const ROUTES: &[Route] = &[
    Route {
        method: "GET",
        pattern: &["projects", ":id"],
        op: "projects/get",
        documented: &["statistics", "license", "with_custom_attributes"],
        implemented: &[],
        paginated: false,
    },
    Route {
        method: "GET",
        pattern: &["projects", ":id", "merge_requests"],
        op: "merge_requests/list",
        documented: MR_LIST_DOCUMENTED,
        implemented: &[
            "iids",
            "state",
            "order_by",
            "sort",
            "with_merge_status_recheck",
            "created_after",
            "created_before",
            "updated_after",
            "updated_before",
            "author_id",
            "author_username",
            "source_branch",
            "target_branch",
            "wip",
            "draft",
            "labels",
        ],
        paginated: true,
    },
    Route {
        method: "POST",
        pattern: &["projects", ":id", "merge_requests"],
        op: "merge_requests/create",
        documented: &[
            "title",
            "source_branch",
            "target_branch",
            "target_project_id",
            "assignee_id",
            "assignee_ids",
            "reviewer_ids",
            "description",
            "labels",
            "add_labels",
            "remove_labels",
            "milestone_id",
            "remove_source_branch",
            "allow_collaboration",
            "allow_maintainer_to_push",
            "squash",
            "merge_after",
            "approvals_before_merge",
        ],
        implemented: &[
            "title",
            "source_branch",
            "target_branch",
            "assignee_id",
            "assignee_ids",
            "reviewer_ids",
            "description",
            "labels",
            "add_labels",
            "remove_source_branch",
            "squash",
        ],
        paginated: false,
    },
    Route {
        method: "GET",
        pattern: &["projects", ":id", "merge_requests", ":merge_request_iid"],
        op: "merge_requests/get",
        documented: &["render_html", "include_diverged_commits_count", "include_rebase_in_progress"],
        implemented: &[],
        paginated: false,
    },
    Route {
        method: "PUT",
        pattern: &["projects", ":id", "merge_requests", ":merge_request_iid"],
        op: "merge_requests/update",
        documented: &[], // title, target_branch, state_event, discussion_locked + MR_WRITE_DOCUMENTED
        implemented: &[
            "title",
            "state_event",
            "description",
            "labels",
            "add_labels",
            "remove_labels",
            "assignee_id",
            "assignee_ids",
            "reviewer_ids",
            "remove_source_branch",
            "squash",
        ],
        paginated: false,
    },
    Route {
        method: "PUT",
        pattern: &["projects", ":id", "merge_requests", ":merge_request_iid", "merge"],
        op: "merge_requests/merge",
        documented: &[
            "merge_commit_message",
            "squash_commit_message",
            "should_remove_source_branch",
            "merge_when_pipeline_succeeds",
            "auto_merge",
            "sha",
            "squash",
        ],
        implemented: &[
            "merge_commit_message",
            "squash_commit_message",
            "should_remove_source_branch",
            "merge_when_pipeline_succeeds",
            "auto_merge",
            "sha",
            "squash",
        ],
        paginated: false,
    },
    Route {
        method: "GET",
        pattern: &["projects", ":id", "merge_requests", ":merge_request_iid", "notes"],
        op: "notes/list",
        documented: &["sort", "order_by", "activity_filter"],
        implemented: &["sort", "order_by"],
        paginated: true,
    },
    Route {
        method: "POST",
        pattern: &["projects", ":id", "merge_requests", ":merge_request_iid", "notes"],
        op: "notes/create",
        documented: &["body", "confidential", "internal", "created_at", "merge_request_diff_head_sha"],
        implemented: &["body"],
        paginated: false,
    },
    Route {
        method: "GET",
        pattern: &["projects", ":id", "merge_requests", ":merge_request_iid", "notes", ":note_id"],
        op: "notes/get",
        documented: &[],
        implemented: &[],
        paginated: false,
    },
    Route {
        method: "GET",
        pattern: &["projects", ":id", "merge_requests", ":merge_request_iid", "notes", ":note_id", "award_emoji"],
        op: "award_emoji/list",
        documented: &[],
        implemented: &[],
        paginated: true,
    },
    Route {
        method: "POST",
        pattern: &["projects", ":id", "merge_requests", ":merge_request_iid", "notes", ":note_id", "award_emoji"],
        op: "award_emoji/create",
        documented: &["name"],
        implemented: &["name"],
        paginated: false,
    },
    Route {
        method: "GET",
        pattern: &["projects", ":id", "members", "all", ":user_id"],
        op: "members/all/get",
        documented: &[],
        implemented: &[],
        paginated: false,
    },
    Route {
        method: "GET",
        pattern: &["users"],
        op: "users/list",
        documented: &[
            "username",
            "public_email",
            "extern_uid",
            "provider",
            "search",
            "active",
            "blocked",
            "external",
            "exclude_active",
            "exclude_external",
            "exclude_internal",
            "exclude_humans",
            "without_project_bots",
            "created_before",
            "created_after",
            "order_by",
            "sort",
            "two_factor",
            "without_projects",
            "admins",
            "auditors",
            "humans",
            "saml_provider_id",
            "skip_ldap",
            "with_custom_attributes",
            "custom_attributes",
        ],
        implemented: &["username"],
        paginated: true,
    },
    Route {
        method: "DELETE",
        pattern: &["projects", ":id", "repository", "branches", ":branch"],
        op: "branches/delete",
        documented: &[],
        implemented: &[],
        paginated: false,
    },
    Route {
        method: "GET",
        pattern: &["projects", ":id", "events"],
        op: "events/list",
        documented: &["action", "target_type", "before", "after", "sort"],
        implemented: &["action", "target_type", "before", "after", "sort"],
        paginated: true,
    },
];

fn documented(route: &Route) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = route.documented.to_vec();
    if route.op == "merge_requests/update" {
        names.extend(["title", "target_branch", "state_event", "discussion_locked"]);
        names.extend(MR_WRITE_DOCUMENTED);
    }
    if route.paginated {
        names.extend(PAGINATION);
    }
    names
}

/// The route for `method` and the raw (still URL-encoded) path segments, with its path
/// parameters decoded.
fn route(method: &str, segments: &[&str]) -> Option<(&'static Route, BTreeMap<&'static str, String>)> {
    'routes: for r in ROUTES.iter().filter(|r| r.method == method) {
        if r.pattern.len() != segments.len() {
            continue;
        }
        let mut params = BTreeMap::new();
        for (p, s) in r.pattern.iter().zip(segments) {
            if let Some(name) = p.strip_prefix(':') {
                if s.is_empty() {
                    continue 'routes;
                }
                params.insert(name, percent_decode(s));
            } else if p != s {
                continue 'routes;
            }
        }
        return Some((r, params));
    }
    None
}

pub fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

// ---- replies ----

pub enum Payload {
    Json(Value),
    Text(String),
    Empty,
}

pub struct Reply {
    status: u16,
    body: Payload,
    headers: Vec<(String, String)>,
}

impl Reply {
    fn json(status: u16, v: Value) -> Reply {
        Reply { status, body: Payload::Json(v), headers: vec![] }
    }
    fn message(status: u16, m: &str) -> Reply {
        Reply::json(status, json!({"message": m}))
    }
    /// GitLab's `not_found!(what)`.
    fn not_found(what: &str) -> Reply {
        Reply::message(404, &format!("404 {what} Not Found"))
    }
    /// Grape's parameter errors: `{"error": "title is missing"}`.
    fn bad(e: &str) -> Reply {
        Reply::json(400, json!({"error": e}))
    }
    fn forbidden() -> Reply {
        Reply::message(403, "403 Forbidden")
    }
    fn unauthorized() -> Reply {
        Reply::message(401, "401 Unauthorized")
    }
}

fn respond(r: Reply) -> Response {
    let mut b = Response::builder().status(StatusCode::from_u16(r.status).unwrap());
    for (k, v) in r.headers {
        b = b.header(k, v);
    }
    match r.body {
        Payload::Json(v) => b.header("Content-Type", "application/json").body(Body::from(v.to_string())).unwrap(),
        Payload::Text(t) => b.header("Content-Type", "text/plain").body(Body::from(t)).unwrap(),
        Payload::Empty => b.body(Body::empty()).unwrap(),
    }
}

// ---- parameters ----

/// GitLab reads parameters from the query string and from the body (JSON or form) alike.
struct Params {
    values: BTreeMap<String, Value>,
    /// The query string's pairs as sent (for pagination links).
    query_pairs: Vec<(String, String)>,
}

fn add_param(values: &mut BTreeMap<String, Value>, raw_name: &str, value: Value) {
    // `labels[]=a` is an array; `not[labels]=a` is a hash named `not`.
    let (name, array) = match raw_name.strip_suffix("[]") {
        Some(n) => (n, true),
        None => (raw_name, false),
    };
    let name = name.split('[').next().unwrap_or(name).to_string();
    if array {
        match values.entry(name).or_insert_with(|| json!([])) {
            Value::Array(a) => a.push(value),
            other => *other = json!([other.clone(), value]),
        }
    } else {
        values.insert(name, value);
    }
}

fn parse_params(query: &str, headers: &HeaderMap, body: &[u8]) -> Result<Params, String> {
    let mut values = BTreeMap::new();
    let query_pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    for (k, v) in &query_pairs {
        add_param(&mut values, k, Value::String(v.clone()));
    }
    if !body.is_empty() {
        let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
        if content_type.starts_with("application/json") {
            match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(map)) => {
                    for (k, v) in map {
                        add_param(&mut values, &k, v);
                    }
                }
                Ok(other) => return Err(format!("the JSON body is not an object: {other}")),
                Err(e) => return Err(format!("the body is not JSON: {e}")),
            }
        } else if content_type.starts_with("application/x-www-form-urlencoded") || content_type.is_empty() {
            for (k, v) in url::form_urlencoded::parse(body) {
                add_param(&mut values, &k, Value::String(v.into_owned()));
            }
        } else {
            return Err(format!("a body of type {content_type:?}, which GitLab's API does not read"));
        }
    }
    Ok(Params { values, query_pairs })
}

impl Params {
    fn has(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    fn str(&self, name: &str) -> Option<String> {
        match self.values.get(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        }
    }

    fn bool(&self, name: &str) -> Result<Option<bool>, Reply> {
        match self.values.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => match v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()).to_ascii_lowercase().as_str() {
                "true" | "1" => Ok(Some(true)),
                "false" | "0" => Ok(Some(false)),
                _ => Err(Reply::bad(&format!("{name} is invalid"))),
            },
        }
    }

    fn int(&self, name: &str) -> Result<Option<i64>, Reply> {
        match self.values.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| Reply::bad(&format!("{name} is invalid"))),
            Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| Reply::bad(&format!("{name} is invalid"))),
            Some(_) => Err(Reply::bad(&format!("{name} is invalid"))),
        }
    }

    /// An integer array: a JSON array, `name[]=1&name[]=2`, or `1,2` (GitLab's
    /// `CommaSeparatedToIntegerArray`).
    fn ints(&self, name: &str) -> Result<Option<Vec<i64>>, Reply> {
        let bad = || Reply::bad(&format!("{name} is invalid"));
        let one = |v: &Value| -> Result<Vec<i64>, Reply> {
            match v {
                Value::Number(n) => n.as_i64().map(|i| vec![i]).ok_or_else(bad),
                Value::String(s) => s
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse::<i64>().map_err(|_| bad()))
                    .collect(),
                _ => Err(bad()),
            }
        };
        match self.values.get(name) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(vec![])),
            Some(Value::Array(items)) => {
                let mut out = vec![];
                for i in items {
                    out.extend(one(i)?);
                }
                Ok(Some(out))
            }
            Some(v) => one(v).map(Some),
        }
    }

    /// A string array: a JSON array, `name[]=a`, or `a,b` (GitLab's `CommaSeparatedToArray`).
    fn strs(&self, name: &str) -> Option<Vec<String>> {
        let split = |s: &str| s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect::<Vec<_>>();
        match self.values.get(name)? {
            Value::Null => Some(vec![]),
            Value::String(s) => Some(split(s)),
            Value::Array(items) => Some(items.iter().flat_map(|i| split(i.as_str().unwrap_or(&i.to_string()))).collect()),
            other => Some(split(&other.to_string())),
        }
    }

    fn datetime(&self, name: &str) -> Result<Option<DateTime<Utc>>, Reply> {
        let Some(s) = self.str(name) else { return Ok(None) };
        if let Ok(t) = DateTime::parse_from_rfc3339(&s) {
            return Ok(Some(t.with_timezone(&Utc)));
        }
        if let Ok(d) = NaiveDate::parse_from_str(&s, "%Y-%m-%d") {
            return Ok(Some(d.and_hms_opt(0, 0, 0).unwrap().and_utc()));
        }
        Err(Reply::bad(&format!("{name} is invalid")))
    }

    fn one_of(&self, name: &str, values: &[&str]) -> Result<Option<String>, Reply> {
        match self.str(name) {
            None => Ok(None),
            Some(v) if values.contains(&v.as_str()) => Ok(Some(v)),
            Some(_) => Err(Reply::bad(&format!("{name} does not have a valid value"))),
        }
    }

    fn as_json(&self) -> Value {
        Value::Object(self.values.clone().into_iter().collect())
    }
}

// ---- the entry point ----

pub async fn serve(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("").to_string();
    if let Some(rest) = path.strip_prefix("/api/v4/") {
        return respond(rest_call(&shared, &method, rest, &query, &headers, &body));
    }
    if path.contains(".git/") {
        return git_call(&shared, &method, &path, &query, &headers, body).await;
    }
    let mut st = shared.state.lock().unwrap();
    st.violations.push(format!("{method} {path}: not a GitLab route (the REST API is under /api/v4)"));
    st.requests.push(Recorded { method: method.to_string(), path, query, params: Value::Null, operation: "unknown".into(), status: 404 });
    respond(Reply::json(404, json!({"error": "404 Not Found"})))
}

fn caller(st: &State, headers: &HeaderMap) -> Result<Option<String>, ()> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let token = match (header("private-token"), header("authorization")) {
        (Some(t), _) => t.to_string(),
        // GitLab also takes personal access tokens as OAuth-style bearer tokens.
        (None, Some(a)) => match a.strip_prefix("Bearer ") {
            Some(t) => t.trim().to_string(),
            None => return Err(()),
        },
        (None, None) => return Ok(None),
    };
    st.tokens.get(&token).cloned().map(Some).ok_or(())
}

fn rest_call(shared: &Shared, method: &Method, rest: &str, query: &str, headers: &HeaderMap, raw: &[u8]) -> Reply {
    let mut st = shared.state.lock().unwrap();
    let web = shared.web.lock().unwrap().clone();
    let path = format!("/{rest}");
    let mut record = Recorded {
        method: method.to_string(),
        path: path.clone(),
        query: query.to_string(),
        params: Value::Null,
        operation: "unknown".into(),
        status: 0,
    };
    let params = match parse_params(query, headers, raw) {
        Ok(p) => p,
        Err(e) => {
            st.violations.push(format!("{method} /api/v4{path}: {e}"));
            record.status = 400;
            st.requests.push(record);
            return Reply::bad(&e);
        }
    };
    record.params = params.as_json();
    let segments: Vec<&str> = rest.split('/').collect();
    let Some((route, path_params)) = route(method.as_str(), &segments) else {
        let mut why = format!("{method} /api/v4{path}: no such route in GitLab's REST API (or one the fake does not serve)");
        let raw = rest.to_ascii_lowercase();
        if let Some(p) = st.projects.values().find(|p| raw.contains(&format!("projects/{}", p.path.to_ascii_lowercase())))
        {
            why.push_str(&format!("; a project path in a URL is one URL-encoded segment: {}", p.path.replace('/', "%2F")));
        }
        st.violations.push(why);
        record.status = 404;
        st.requests.push(record);
        return Reply::json(404, json!({"error": "404 Not Found"}));
    };
    record.operation = route.op.to_string();
    let allowed = documented(route);
    for name in params.values.keys() {
        if !allowed.contains(&name.as_str()) {
            st.violations.push(format!(
                "{method} /api/v4{path} ({}): {name:?} is not a parameter GitLab documents for this route (GitLab ignores it)",
                route.op
            ));
        } else if !route.implemented.contains(&name.as_str()) && !PAGINATION.contains(&name.as_str()) {
            st.violations.push(format!("{method} /api/v4{path} ({}): the fake does not implement the parameter {name:?}", route.op));
        }
    }
    let mut reply = answer(shared, &mut st, &web, route, &path, &path_params, &params, headers);
    // As GitLab's front end sends it, by the fake's clock.
    reply.headers.push(("Date".into(), st.clock().format("%a, %d %b %Y %H:%M:%S GMT").to_string()));
    record.status = reply.status;
    st.requests.push(record);
    reply
}

/// Rate limits, auth and faults, then the operation itself.
#[allow(clippy::too_many_arguments)]
fn answer(
    shared: &Shared,
    st: &mut State,
    web: &str,
    route: &'static Route,
    path: &str,
    path_params: &BTreeMap<&'static str, String>,
    params: &Params,
    headers: &HeaderMap,
) -> Reply {
    if !st.rate_limits.is_empty() {
        let retry_after = st.rate_limits.remove(0);
        st.rate_limited += 1;
        let reset = Utc::now() + chrono::Duration::seconds(retry_after as i64);
        return Reply {
            status: 429,
            body: Payload::Text("Retry later\n".into()),
            headers: vec![
                ("Retry-After".into(), retry_after.to_string()),
                ("RateLimit-Name".into(), "throttle_authenticated_api".into()),
                ("RateLimit-Limit".into(), "2000".into()),
                ("RateLimit-Observed".into(), "2001".into()),
                ("RateLimit-Remaining".into(), "0".into()),
                ("RateLimit-Reset".into(), reset.timestamp().to_string()),
                ("RateLimit-ResetTime".into(), reset.format("%a, %d %b %Y %H:%M:%S GMT").to_string()),
            ],
        };
    }
    let user = match caller(st, headers) {
        Ok(Some(u)) => u,
        Ok(None) | Err(()) => return Reply::unauthorized(),
    };
    let calls = st.calls.entry(route.op.to_string()).or_insert(0);
    *calls += 1;
    let n = *calls;
    if let Some(i) = st.faults.iter().position(|f| f.operation == route.op && f.nth == n) {
        let fault = st.faults.remove(i);
        let reason = StatusCode::from_u16(fault.status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Error");
        return Reply::message(fault.status, &format!("{} {reason}", fault.status));
    }
    let mut ctx = Ctx { st, root: &shared.root, web, user: &user, route, path, params };
    let reply = match ctx.handle(path_params) {
        Ok(r) | Err(r) => r,
    };
    if let Some(i) = ctx.st.lost.iter().position(|(o, nth)| o == route.op && *nth == n) {
        ctx.st.lost.remove(i);
        return Reply { status: 502, body: Payload::Text("502 Bad Gateway\n".into()), headers: vec![] };
    }
    reply
}

struct Ctx<'a> {
    st: &'a mut State,
    root: &'a Path,
    web: &'a str,
    user: &'a str,
    route: &'static Route,
    path: &'a str,
    params: &'a Params,
}

type Res = Result<Reply, Reply>;

impl Ctx<'_> {
    fn view(&self) -> View<'_> {
        View { st: &*self.st, web: self.web }
    }

    fn violation(&mut self, what: String) {
        let line = format!("{} /api/v4{} ({}): {what}", self.route.method, self.path, self.route.op);
        self.st.violations.push(line);
    }

    /// The project of `:id` (a numeric id or a URL-encoded full path, in any case), if the
    /// caller can see it: GitLab answers 404 for a private project to a non-member.
    fn project(&self, id: &str) -> Result<String, Reply> {
        let key = match id.parse::<u64>() {
            Ok(n) => self.st.projects.iter().find(|(_, p)| p.id == n).map(|(k, _)| k.clone()),
            Err(_) => Some(id.to_ascii_lowercase()).filter(|k| self.st.projects.contains_key(k)),
        };
        match key {
            Some(k) if self.st.access(&k, self.user).is_some() => Ok(k),
            _ => Err(Reply::not_found("Project")),
        }
    }

    fn require(&self, key: &str, level: Access) -> Result<(), Reply> {
        if self.st.access(key, self.user).is_some_and(|a| a >= level) { Ok(()) } else { Err(Reply::forbidden()) }
    }

    fn mr(&self, key: &str, iid: &str) -> Result<usize, Reply> {
        let iid: u64 = iid.parse().map_err(|_| Reply::bad("merge_request_iid is invalid"))?;
        self.st.mr_index(key, iid).ok_or_else(|| Reply::not_found("Merge Request"))
    }

    fn bare(&self, key: &str) -> std::path::PathBuf {
        self.root.join(format!("{}.git", self.st.projects[key].path))
    }

    fn mr_json(&self, i: usize) -> Value {
        let mr = &self.st.mrs[i];
        let base = git::branch_sha(&self.bare(&mr.project.to_ascii_lowercase()), &mr.target_branch);
        self.view().mr(mr, self.user, base)
    }

    fn handle(&mut self, pp: &BTreeMap<&'static str, String>) -> Res {
        let key = match pp.get("id") {
            Some(id) => Some(self.project(id)?),
            None => None,
        };
        let key = key.as_deref().unwrap_or("");
        match self.route.op {
            "projects/get" => Ok(Reply::json(200, self.view().project(key, self.user))),
            "merge_requests/list" => self.list_mrs(key),
            "merge_requests/create" => self.create_mr(key),
            "merge_requests/get" => {
                self.require(key, Access::Reporter)?;
                let i = self.mr(key, &pp["merge_request_iid"])?;
                Ok(Reply::json(200, self.mr_json(i)))
            }
            "merge_requests/update" => {
                let i = self.mr(key, &pp["merge_request_iid"])?;
                self.update_mr(key, i)
            }
            "merge_requests/merge" => {
                let i = self.mr(key, &pp["merge_request_iid"])?;
                self.merge_mr(key, i)
            }
            "notes/list" => {
                self.require(key, Access::Reporter)?;
                let i = self.mr(key, &pp["merge_request_iid"])?;
                self.list_notes(key, i)
            }
            "notes/get" => {
                self.require(key, Access::Reporter)?;
                let i = self.mr(key, &pp["merge_request_iid"])?;
                let n = self.note_of(i, &pp["note_id"])?;
                Ok(Reply::json(200, self.view().note(&self.st.notes[n])))
            }
            "notes/create" => {
                let i = self.mr(key, &pp["merge_request_iid"])?;
                self.create_note(key, i)
            }
            "award_emoji/list" => {
                self.require(key, Access::Reporter)?;
                let i = self.mr(key, &pp["merge_request_iid"])?;
                let n = self.note_of(i, &pp["note_id"])?;
                let note_id = self.st.notes[n].id;
                let items: Vec<Value> =
                    self.st.awards.iter().filter(|a| a.note_id == note_id).map(|a| self.view().award(a)).collect();
                self.paginate(items)
            }
            "award_emoji/create" => {
                let i = self.mr(key, &pp["merge_request_iid"])?;
                let n = self.note_of(i, &pp["note_id"])?;
                self.award(key, n)
            }
            "members/all/get" => {
                let user_id: u64 = pp["user_id"].parse().map_err(|_| Reply::bad("user_id is invalid"))?;
                let member = self.st.users.iter().find(|u| u.id == user_id).cloned();
                match member.and_then(|u| self.st.access(key, &u.username).map(|a| (u.username, a))) {
                    Some((name, level)) => Ok(Reply::json(200, self.view().member(&name, level))),
                    None => Err(Reply::message(404, "404 Not found")),
                }
            }
            "users/list" => {
                let wanted = self.params.str("username");
                let items: Vec<Value> = self
                    .st
                    .users
                    .iter()
                    .filter(|u| wanted.as_ref().is_none_or(|w| u.username.eq_ignore_ascii_case(w)))
                    .map(|u| self.view().user(&u.username))
                    .collect();
                self.paginate(items)
            }
            "branches/delete" => self.delete_branch(key, &pp["branch"]),
            "events/list" => self.list_events(key),
            other => unreachable!("route {other} has no handler"),
        }
    }

    // ---- pagination ----

    /// One page of `items`, with GitLab's offset-pagination headers: `x-page`, `x-per-page`,
    /// `x-next-page`, `x-prev-page`, `x-total`, `x-total-pages`, and `Link` (prev, next,
    /// first, last) to the same URL with `page` (and `per_page`) set.
    fn paginate(&self, items: Vec<Value>) -> Res {
        let per_page = match self.params.int("per_page")? {
            None => 20,
            Some(n) if n < 1 => return Err(Reply::bad("per_page does not have a valid value")),
            Some(n) => n.min(100) as usize,
        };
        let page = self.params.int("page")?.unwrap_or(1).max(1) as usize;
        let total = items.len();
        let pages = total.div_ceil(per_page).max(1);
        let body: Vec<Value> = items.into_iter().skip((page - 1) * per_page).take(per_page).collect();
        let link = |n: usize| {
            let mut pairs: Vec<(String, String)> =
                self.params.query_pairs.iter().filter(|(k, _)| k != "page" && k != "per_page").cloned().collect();
            pairs.push(("page".into(), n.to_string()));
            pairs.push(("per_page".into(), per_page.to_string()));
            pairs.sort();
            let qs = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
            format!("<{}/api/v4{}?{qs}>", self.web, self.path)
        };
        let mut links = vec![];
        if page > 1 {
            links.push(format!("{}; rel=\"prev\"", link(page - 1)));
        }
        if page < pages {
            links.push(format!("{}; rel=\"next\"", link(page + 1)));
        }
        links.push(format!("{}; rel=\"first\"", link(1)));
        links.push(format!("{}; rel=\"last\"", link(pages)));
        let next = if page < pages { (page + 1).to_string() } else { String::new() };
        let prev = if page > 1 { (page - 1).to_string() } else { String::new() };
        Ok(Reply {
            status: 200,
            body: Payload::Json(Value::Array(body)),
            headers: vec![
                ("Link".into(), links.join(", ")),
                ("x-next-page".into(), next),
                ("x-page".into(), page.to_string()),
                ("x-per-page".into(), per_page.to_string()),
                ("x-prev-page".into(), prev),
                ("x-total".into(), total.to_string()),
                ("x-total-pages".into(), pages.to_string()),
            ],
        })
    }

    // ---- merge requests ----

    fn list_mrs(&mut self, key: &str) -> Res {
        self.require(key, Access::Reporter)?;
        let p = self.params;
        let state = p.one_of("state", &["opened", "closed", "locked", "merged", "all"])?.unwrap_or_else(|| "all".into());
        let order_by = p
            .one_of("order_by", &["created_at", "label_priority", "milestone_due", "popularity", "priority", "title", "updated_at", "merged_at"])?
            .unwrap_or_else(|| "created_at".into());
        if !["created_at", "updated_at"].contains(&order_by.as_str()) {
            self.violation(format!("the fake orders merge requests only by created_at or updated_at, not {order_by}"));
        }
        let sort = p.one_of("sort", &["asc", "desc"])?.unwrap_or_else(|| "desc".into());
        let (created_after, created_before) = (p.datetime("created_after")?, p.datetime("created_before")?);
        let (updated_after, updated_before) = (p.datetime("updated_after")?, p.datetime("updated_before")?);
        let author_id = p.int("author_id")?;
        let author = p.str("author_username");
        let source = p.str("source_branch");
        let target = p.str("target_branch");
        let iids = p.ints("iids")?;
        let draft = match (p.bool("draft")?, p.one_of("wip", &["yes", "no"])?) {
            (Some(d), _) => Some(d),
            (None, Some(w)) => Some(w == "yes"),
            (None, None) => None,
        };
        let labels = p.strs("labels");
        let hide = self.st.hidden_listings > 0;
        self.st.hidden_listings = self.st.hidden_listings.saturating_sub(1);
        let mut mrs: Vec<&MergeRequest> = self
            .st
            .mrs
            .iter()
            .filter(|_| !hide)
            .filter(|m| m.project.eq_ignore_ascii_case(key))
            .filter(|m| state == "all" || m.state.as_str() == state)
            .filter(|m| created_after.is_none_or(|t| m.created_at >= t) && created_before.is_none_or(|t| m.created_at <= t))
            .filter(|m| updated_after.is_none_or(|t| m.updated_at >= t) && updated_before.is_none_or(|t| m.updated_at <= t))
            .filter(|m| author.as_ref().is_none_or(|a| m.author.eq_ignore_ascii_case(a)))
            .filter(|m| author_id.is_none_or(|id| self.st.user_id(&m.author) == Some(id as u64)))
            .filter(|m| source.as_ref().is_none_or(|s| &m.source_branch == s))
            .filter(|m| target.as_ref().is_none_or(|t| &m.target_branch == t))
            .filter(|m| iids.as_ref().is_none_or(|ids| ids.contains(&(m.iid as i64))))
            .filter(|m| draft.is_none_or(|d| m.draft() == d))
            .filter(|m| labels.as_ref().is_none_or(|ls| ls.iter().all(|l| m.labels.iter().any(|x| x.eq_ignore_ascii_case(l)))))
            .collect();
        match order_by.as_str() {
            "updated_at" => mrs.sort_by_key(|m| (m.updated_at, m.id)),
            _ => mrs.sort_by_key(|m| (m.created_at, m.id)),
        }
        if sort == "desc" {
            mrs.reverse();
        }
        let items = mrs.iter().map(|m| self.view().mr_basic(m)).collect();
        self.paginate(items)
    }

    /// Users by id, keeping those who may be assigned or asked for a review (members of the
    /// project); GitLab drops the others without a word.
    fn people(&self, key: &str, ids: &[i64]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for id in ids.iter().filter(|i| **i > 0) {
            if let Some(u) = self.st.users.iter().find(|u| u.id as i64 == *id)
                && self.st.access(key, &u.username).is_some()
                && !out.contains(&u.username)
            {
                out.push(u.username.clone());
            }
        }
        out
    }

    fn assignee_param(&self) -> Result<Option<Vec<i64>>, Reply> {
        match self.params.ints("assignee_ids")? {
            Some(ids) => Ok(Some(ids)),
            None => Ok(self.params.int("assignee_id")?.map(|id| vec![id])),
        }
    }

    fn create_mr(&mut self, key: &str) -> Res {
        let p = self.params;
        let missing: Vec<&str> = ["title", "source_branch", "target_branch"].into_iter().filter(|n| !p.has(n)).collect();
        if !missing.is_empty() {
            return Err(Reply::bad(&missing.iter().map(|n| format!("{n} is missing")).collect::<Vec<_>>().join(", ")));
        }
        self.require(key, Access::Developer)?;
        let (title, source, target) = (p.str("title").unwrap(), p.str("source_branch").unwrap(), p.str("target_branch").unwrap());
        let assignees = self.assignee_param()?;
        let reviewers = p.ints("reviewer_ids")?;
        let remove_source = p.bool("remove_source_branch")?;
        let squash = p.bool("squash")?;
        let bare = self.bare(key);
        if source == target {
            return Err(Reply::json(422, json!({"message": ["You can't use same project/branch for source and target"]})));
        }
        let Some(sha) = git::branch_sha(&bare, &source) else {
            return Err(Reply::json(422, json!({"message": [format!("Source branch \"{source}\" does not exist")]})));
        };
        if git::branch_sha(&bare, &target).is_none() {
            return Err(Reply::json(422, json!({"message": [format!("Target branch \"{target}\" does not exist")]})));
        }
        if let Some(other) = self.st.mrs.iter().find(|m| m.project.eq_ignore_ascii_case(key) && m.is_open() && m.source_branch == source) {
            return Err(Reply::json(
                409,
                json!({"message": [format!("Another open merge request already exists for this source branch: !{}", other.iid)]}),
            ));
        }
        let path = self.st.projects[key].path.clone();
        let description = p.str("description");
        let iid = new_mr(self.st, &path, self.user, &title, description, &source, &target, sha).iid;
        let i = self.st.mr_index(key, iid).unwrap();
        let mut labels = p.strs("labels").unwrap_or_default();
        labels.extend(p.strs("add_labels").unwrap_or_default());
        let assignees = assignees.map(|ids| self.people(key, &ids)).unwrap_or_default();
        let reviewers = reviewers.map(|ids| self.people(key, &ids)).unwrap_or_default();
        let user = self.user.to_string();
        set_labels(self.st, &path, i, labels, &user);
        set_people(self.st, &path, i, assignees, false, &user);
        set_people(self.st, &path, i, reviewers, true, &user);
        let m = &mut self.st.mrs[i];
        m.force_remove_source_branch = remove_source.unwrap_or(false);
        m.squash = squash.unwrap_or(false);
        Ok(Reply::json(201, self.mr_json(i)))
    }

    fn update_mr(&mut self, key: &str, i: usize) -> Res {
        let p = self.params;
        let mut one_of: Vec<&str> = vec!["assignee_id", "assignee_ids", "reviewer_ids", "description", "labels", "add_labels", "remove_labels"];
        one_of.extend(["milestone_id", "remove_source_branch", "allow_collaboration", "allow_maintainer_to_push", "squash"]);
        one_of.extend(["target_branch", "title", "state_event", "discussion_locked", "merge_after"]);
        if !one_of.iter().any(|n| p.has(n)) {
            return Err(Reply::bad(&format!("{} are missing, at least one parameter must be provided", one_of.join(", "))));
        }
        let is_author = self.st.mrs[i].author.eq_ignore_ascii_case(self.user);
        if !is_author {
            self.require(key, Access::Developer)?;
        } else {
            self.require(key, Access::Reporter)?;
        }
        if p.str("title").is_some_and(|t| t.trim().is_empty()) {
            return Err(Reply::bad("title is empty"));
        }
        let state_event = p.one_of("state_event", &["close", "reopen"])?;
        let assignees = self.assignee_param()?;
        let reviewers = p.ints("reviewer_ids")?;
        let remove_source = p.bool("remove_source_branch")?;
        let squash = p.bool("squash")?;
        let path = self.st.projects[key].path.clone();
        let iid = self.st.mrs[i].iid;
        let user = self.user.to_string();
        let before = self.st.mrs[i].updated_at;
        if let Some(title) = p.str("title")
            && title != self.st.mrs[i].title
        {
            let old = std::mem::replace(&mut self.st.mrs[i].title, title.clone());
            let body = match (is_draft_title(&old), is_draft_title(&title)) {
                (false, true) => "marked this merge request as **draft**".to_string(),
                (true, false) => "marked this merge request as **ready**".to_string(),
                _ => format!("changed title from **{old}** to **{title}**"),
            };
            self.st.add_note(&path, iid, &user, &body, true, false);
        }
        if p.has("description") {
            let description = p.str("description");
            if description != self.st.mrs[i].description {
                self.st.mrs[i].description = description;
                self.st.add_note(&path, iid, &user, "changed the description", true, false);
            }
        }
        if p.has("labels") || p.has("add_labels") || p.has("remove_labels") {
            let mut labels = p.strs("labels").unwrap_or_else(|| self.st.mrs[i].labels.clone());
            for l in p.strs("add_labels").unwrap_or_default() {
                if !labels.iter().any(|x| x.eq_ignore_ascii_case(&l)) {
                    labels.push(l);
                }
            }
            let remove = p.strs("remove_labels").unwrap_or_default();
            labels.retain(|l| !remove.iter().any(|r| r.eq_ignore_ascii_case(l)));
            set_labels(self.st, &path, i, labels, &user);
        }
        if let Some(ids) = assignees {
            let people = self.people(key, &ids);
            set_people(self.st, &path, i, people, false, &user);
        }
        if let Some(ids) = reviewers {
            let people = self.people(key, &ids);
            set_people(self.st, &path, i, people, true, &user);
        }
        if let Some(r) = remove_source {
            self.st.mrs[i].force_remove_source_branch = r;
        }
        if let Some(s) = squash {
            self.st.mrs[i].squash = s;
        }
        match state_event.as_deref() {
            Some("close") => {
                close(self.st, &path, iid, &user);
            }
            Some("reopen") => {
                // GitLab reopens only while the source branch exists; otherwise it answers 200
                // with the merge request still closed.
                let bare = self.bare(key);
                reopen(self.st, &bare, &path, iid, &user);
            }
            _ => {}
        }
        if self.st.mrs[i].updated_at == before && (remove_source.is_some() || squash.is_some()) {
            let now = self.st.now();
            self.st.mrs[i].updated_at = now;
        }
        Ok(Reply::json(200, self.mr_json(i)))
    }

    fn merge_mr(&mut self, key: &str, i: usize) -> Res {
        let p = self.params;
        let auto = p.bool("auto_merge")?.unwrap_or(false) || p.bool("merge_when_pipeline_succeeds")?.unwrap_or(false);
        // `auto_merge` since GitLab 17.11; `merge_when_pipeline_succeeds` before (deprecated, still
        // read). A server older than 17.11 ignores `auto_merge` and merges at once.
        let squash = p.bool("squash")?;
        let remove = p.bool("should_remove_source_branch")?;
        let sha = p.str("sha");
        let mr = self.st.mrs[i].clone();
        let project = &self.st.projects[key];
        let needed = project.protected.get(&mr.target_branch).copied().unwrap_or(Access::Developer);
        if self.st.access(key, self.user).is_none_or(|a| a < needed) {
            return Err(Reply::unauthorized());
        }
        if !mr.is_open() {
            return Err(Reply::message(405, "405 Method Not Allowed"));
        }
        if !auto && mr.draft() {
            return Err(Reply::message(405, "405 Method Not Allowed"));
        }
        if let Some(s) = &sha
            && s != &mr.sha
        {
            return Err(Reply::message(409, &format!("SHA does not match HEAD of source branch: {}", mr.sha)));
        }
        let path = project.path.clone();
        let user = self.user.to_string();
        if let Some(s) = squash {
            self.st.mrs[i].squash = s;
        }
        if let Some(r) = remove {
            self.st.mrs[i].force_remove_source_branch = r;
        }
        if auto {
            // The head's pipeline is still running: GitLab sets the merge to happen when the
            // checks pass, and says so.
            let now = self.st.now();
            let m = &mut self.st.mrs[i];
            let first = !m.merge_when_pipeline_succeeds;
            m.merge_when_pipeline_succeeds = true;
            m.merge_user = Some(user.clone());
            m.updated_at = now;
            if first {
                let body = format!("enabled an automatic merge when all merge checks for {} pass", &mr.sha[..8.min(mr.sha.len())]);
                self.st.add_note(&path, mr.iid, &user, &body, true, false);
            }
            return Ok(Reply::json(200, self.mr_json(i)));
        }
        let bare = self.bare(key);
        let before = git::heads(&bare);
        let mr = self.st.mrs[i].clone();
        let message = p.str("merge_commit_message").unwrap_or_else(|| git::merge_message(&mr, &path));
        let merged = if mr.squash {
            let squash_message = p.str("squash_commit_message").unwrap_or_else(|| mr.title.clone());
            git::squash_merge(&bare, &mr.target_branch, &mr.source_branch, &squash_message, &message, &user).map(|(m, s)| (m, Some(s)))
        } else {
            git::merge(&bare, &mr.target_branch, &mr.source_branch, &message, &user).map(|m| (m, None))
        };
        let Ok((merge_sha, squash_sha)) = merged else {
            return Err(Reply::message(422, "Branch cannot be merged"));
        };
        if mr.force_remove_source_branch {
            git::git(&bare, &["update-ref", "-d", &format!("refs/heads/{}", mr.source_branch)], "fake");
        }
        mark_merged(self.st, &path, mr.iid, &user, merge_sha, squash_sha);
        let after = git::heads(&bare);
        self.st.pushed(&bare, &path, &before, &after, &user);
        Ok(Reply::json(200, self.mr_json(i)))
    }

    // ---- notes and award emoji ----

    fn note_of(&self, i: usize, note_id: &str) -> Result<usize, Reply> {
        let id: u64 = note_id.parse().map_err(|_| Reply::bad("note_id is invalid"))?;
        let mr = &self.st.mrs[i];
        self.st
            .notes
            .iter()
            .position(|n| n.id == id && n.mr_iid == mr.iid && n.project.eq_ignore_ascii_case(&mr.project))
            .ok_or_else(|| Reply::not_found("Note"))
    }

    fn list_notes(&mut self, key: &str, i: usize) -> Res {
        let order_by = self.params.one_of("order_by", &["created_at", "updated_at"])?.unwrap_or_else(|| "created_at".into());
        let sort = self.params.one_of("sort", &["asc", "desc"])?.unwrap_or_else(|| "desc".into());
        let iid = self.st.mrs[i].iid;
        let mut notes: Vec<&super::Note> =
            self.st.notes.iter().filter(|n| n.project.eq_ignore_ascii_case(key) && n.mr_iid == iid).collect();
        match order_by.as_str() {
            "updated_at" => notes.sort_by_key(|n| (n.updated_at, n.id)),
            _ => notes.sort_by_key(|n| (n.created_at, n.id)),
        }
        if sort == "desc" {
            notes.reverse();
        }
        let items = notes.iter().map(|n| self.view().note(n)).collect();
        self.paginate(items)
    }

    fn create_note(&mut self, key: &str, i: usize) -> Res {
        let Some(body) = self.params.str("body") else { return Err(Reply::bad("body is missing")) };
        self.require(key, Access::Reporter)?;
        if body.trim().is_empty() {
            return Err(Reply::json(400, json!({"message": {"note": ["can't be blank"]}})));
        }
        let (path, iid) = (self.st.projects[key].path.clone(), self.st.mrs[i].iid);
        let user = self.user.to_string();
        let note = self.st.add_note(&path, iid, &user, &body, false, false);
        Ok(Reply::json(201, self.view().note(&note)))
    }

    fn award(&mut self, key: &str, n: usize) -> Res {
        let Some(name) = self.params.str("name") else { return Err(Reply::bad("name is missing")) };
        self.require(key, Access::Reporter)?;
        let note = self.st.notes[n].clone();
        if note.system {
            return Err(Reply::not_found("Award Emoji"));
        }
        if !EMOJI.contains(&name.as_str()) {
            return Err(Reply::not_found("Award Emoji Name is not a valid emoji name"));
        }
        if self.st.awards.iter().any(|a| a.note_id == note.id && a.user == self.user && a.name == name) {
            return Err(Reply::not_found("Award Emoji Name has already been taken"));
        }
        self.st.ids.award += 1;
        let at = self.st.now();
        let award = Award { id: self.st.ids.award, note_id: note.id, user: self.user.to_string(), name, created_at: at };
        self.st.awards.push(award.clone());
        Ok(Reply::json(201, self.view().award(&award)))
    }

    // ---- branches, events ----

    fn delete_branch(&mut self, key: &str, branch: &str) -> Res {
        self.require(key, Access::Developer)?;
        let bare = self.bare(key);
        let project = &self.st.projects[key];
        if git::branch_sha(&bare, branch).is_none() {
            return Err(Reply::not_found("Branch"));
        }
        if project.default_branch == branch {
            return Err(Reply::message(405, "The default branch of a project cannot be deleted."));
        }
        if let Some(level) = project.protected.get(branch)
            && self.st.access(key, self.user).is_none_or(|a| a < *level)
        {
            return Err(Reply::message(405, "Protected branch cant be removed"));
        }
        let path = project.path.clone();
        let before = git::heads(&bare);
        git::git(&bare, &["update-ref", "-d", &format!("refs/heads/{branch}")], "fake");
        let after = git::heads(&bare);
        let user = self.user.to_string();
        // Merge requests from the branch stay as they are (GitLab does not close them).
        self.st.pushed(&bare, &path, &before, &after, &user);
        Ok(Reply { status: 204, body: Payload::Empty, headers: vec![] })
    }

    fn list_events(&mut self, key: &str) -> Res {
        let p = self.params;
        let actions = ["approved", "closed", "commented", "created", "destroyed", "expired", "joined", "left", "merged", "pushed", "reopened", "updated"];
        let action = p.one_of("action", &actions)?;
        let target_types = ["issue", "milestone", "merge_request", "note", "project", "snippet", "user", "wiki", "design"];
        let target_type = p.one_of("target_type", &target_types)?;
        let sort = p.one_of("sort", &["asc", "desc"])?.unwrap_or_else(|| "desc".into());
        // `after` and `before` are dates: events created after the end of `after`, and before
        // the start of `before` (GitLab's EventsFinder).
        let mut date = |name: &str| -> Result<Option<NaiveDate>, Reply> {
            let Some(s) = p.str(name) else { return Ok(None) };
            if let Ok(d) = NaiveDate::parse_from_str(&s, "%Y-%m-%d") {
                return Ok(Some(d));
            }
            match DateTime::parse_from_rfc3339(&s) {
                Ok(t) => {
                    let d = t.with_timezone(&Utc).date_naive();
                    self.violation(format!(
                        "{name}={s}: GitLab documents a date (YYYY-MM-DD) here and reads only its day, {d}; \
                         `after` keeps events from the day after it"
                    ));
                    Ok(Some(d))
                }
                Err(_) => Err(Reply::bad(&format!("{name} is invalid"))),
            }
        };
        let after = date("after")?;
        let before = date("before")?;
        let mut events: Vec<&super::Event> = self
            .st
            .events
            .iter()
            .filter(|e| e.project.eq_ignore_ascii_case(key))
            .filter(|e| action.as_ref().is_none_or(|a| e.action == a.as_str()))
            .filter(|e| match target_type.as_deref() {
                None => true,
                Some("note") => matches!(e.target, Target::Note { discussion: false, .. }),
                Some("merge_request") => matches!(e.target, Target::MergeRequest { .. }),
                Some(_) => false,
            })
            .filter(|e| after.is_none_or(|d| e.created_at.date_naive() > d))
            .filter(|e| before.is_none_or(|d| e.created_at.date_naive() < d))
            .collect();
        events.sort_by_key(|e| e.id);
        if sort == "desc" {
            events.reverse();
        }
        let items = events.iter().map(|e| self.view().event(e)).collect();
        self.paginate(items)
    }
}

/// Award emoji names the fake knows (GitLab takes any emoji name it knows; these are the ones
/// people and bots use to acknowledge).
const EMOJI: &[&str] = &[
    "thumbsup", "thumbsdown", "confused", "eyes", "rocket", "tada", "heart", "smile", "white_check_mark", "x", "warning",
    "hourglass", "ok_hand", "slight_smile", "robot",
];

// ---- state changes shared by the API and the test controls ----

#[allow(clippy::too_many_arguments)]
pub(super) fn new_mr<'s>(
    st: &'s mut State,
    project: &str,
    author: &str,
    title: &str,
    description: Option<String>,
    source: &str,
    target: &str,
    sha: String,
) -> &'s MergeRequest {
    let key = project.to_ascii_lowercase();
    let path = st.projects[&key].path.clone();
    let iid = st.projects[&key].next_iid;
    st.projects.get_mut(&key).unwrap().next_iid += 1;
    st.ids.mr += 1;
    let id = st.ids.mr;
    let now = st.now();
    st.mrs.push(MergeRequest {
        id,
        iid,
        project: path.clone(),
        author: author.to_string(),
        title: title.to_string(),
        description,
        source_branch: source.to_string(),
        target_branch: target.to_string(),
        state: MrState::Opened,
        labels: vec![],
        assignees: vec![],
        reviewers: vec![],
        merge_when_pipeline_succeeds: false,
        merge_user: None,
        squash: false,
        force_remove_source_branch: false,
        merged_at: None,
        closed_at: None,
        closed_by: None,
        merge_commit_sha: None,
        squash_commit_sha: None,
        created_at: now,
        updated_at: now,
        sha,
    });
    st.event(&path, author, "created", Target::MergeRequest { iid }, now);
    st.mrs.last().unwrap()
}

fn set_labels(st: &mut State, project: &str, i: usize, labels: Vec<String>, by: &str) {
    let old = st.mrs[i].labels.clone();
    let added: Vec<&String> = labels.iter().filter(|l| !old.contains(l)).collect();
    let removed: Vec<&String> = old.iter().filter(|l| !labels.contains(l)).collect();
    if added.is_empty() && removed.is_empty() {
        return;
    }
    let refs = |ls: &[&String]| ls.iter().map(|l| format!("~\"{l}\"")).collect::<Vec<_>>().join(" ");
    let mut parts = vec![];
    if !added.is_empty() {
        parts.push(format!("added {} label{}", refs(&added), if added.len() == 1 { "" } else { "s" }));
    }
    if !removed.is_empty() {
        parts.push(format!("removed {} label{}", refs(&removed), if removed.len() == 1 { "" } else { "s" }));
    }
    let body = parts.join(" and ");
    let iid = st.mrs[i].iid;
    st.mrs[i].labels = labels;
    st.add_note(project, iid, by, &body, true, false);
}

fn set_people(st: &mut State, project: &str, i: usize, people: Vec<String>, reviewers: bool, by: &str) {
    let old = if reviewers { st.mrs[i].reviewers.clone() } else { st.mrs[i].assignees.clone() };
    if old == people {
        return;
    }
    let added: Vec<String> = people.iter().filter(|p| !old.contains(p)).map(|p| format!("@{p}")).collect();
    let removed: Vec<String> = old.iter().filter(|p| !people.contains(p)).map(|p| format!("@{p}")).collect();
    let mut parts = vec![];
    match (reviewers, added.is_empty(), removed.is_empty()) {
        (true, false, _) => parts.push(format!("requested review from {}", added.join(" and "))),
        (false, false, _) => parts.push(format!("assigned to {}", added.join(" and "))),
        _ => {}
    }
    match (reviewers, removed.is_empty()) {
        (true, false) => parts.push(format!("removed review request for {}", removed.join(" and "))),
        (false, false) => parts.push(format!("unassigned {}", removed.join(" and "))),
        _ => {}
    }
    let iid = st.mrs[i].iid;
    if reviewers {
        st.mrs[i].reviewers = people;
    } else {
        st.mrs[i].assignees = people;
    }
    if !parts.is_empty() {
        st.add_note(project, iid, by, &parts.join(" and "), true, false);
    }
}

/// Closes an open merge request; false if it is not open.
pub(super) fn close(st: &mut State, project: &str, iid: u64, by: &str) -> bool {
    let Some(i) = st.mr_index(project, iid) else { return false };
    if !st.mrs[i].is_open() {
        return false;
    }
    let now = st.now();
    let m = &mut st.mrs[i];
    m.state = MrState::Closed;
    m.closed_at = Some(now);
    m.closed_by = Some(by.to_string());
    m.merge_when_pipeline_succeeds = false;
    m.updated_at = now;
    let path = m.project.clone();
    st.add_note(&path, iid, by, "closed", true, false);
    st.event(&path, by, "closed", Target::MergeRequest { iid }, now);
    true
}

/// Reopens a closed merge request whose source branch exists; false otherwise.
pub(super) fn reopen(st: &mut State, bare: &Path, project: &str, iid: u64, by: &str) -> bool {
    let Some(i) = st.mr_index(project, iid) else { return false };
    if st.mrs[i].state != MrState::Closed {
        return false;
    }
    let Some(sha) = git::branch_sha(bare, &st.mrs[i].source_branch) else { return false };
    let now = st.now();
    let m = &mut st.mrs[i];
    m.state = MrState::Opened;
    m.closed_at = None;
    m.closed_by = None;
    m.updated_at = now;
    m.sha = sha;
    let path = m.project.clone();
    st.add_note(&path, iid, by, "reopened", true, false);
    st.event(&path, by, "reopened", Target::MergeRequest { iid }, now);
    true
}

pub(super) fn mark_merged(st: &mut State, project: &str, iid: u64, by: &str, merge_sha: String, squash_sha: Option<String>) {
    let i = st.mr_index(project, iid).unwrap();
    let now = st.now();
    let m = &mut st.mrs[i];
    m.state = MrState::Merged;
    m.merged_at = Some(now);
    m.merge_user = Some(by.to_string());
    m.merge_commit_sha = Some(merge_sha);
    m.squash_commit_sha = squash_sha;
    m.merge_when_pipeline_succeeds = false;
    m.updated_at = now;
    let path = m.project.clone();
    st.add_note(&path, iid, by, "merged", true, false);
    st.event(&path, by, "merged", Target::MergeRequest { iid }, now);
}

// ---- git smart HTTP ----

async fn git_call(shared: &Arc<Shared>, method: &Method, path: &str, query: &str, headers: &HeaderMap, body: Bytes) -> Response {
    let (repo_part, rest) = path.split_once(".git/").unwrap();
    let key = percent_decode(repo_part.trim_start_matches('/')).to_ascii_lowercase();
    let push = path.ends_with("/git-receive-pack") || query.contains("service=git-receive-pack");
    let text = |status: u16, msg: &str| Response::builder().status(status).body(Body::from(msg.to_string())).unwrap();
    let (user, canonical) = {
        let mut st = shared.state.lock().unwrap();
        let record = |st: &mut State, status: u16| {
            st.requests.push(Recorded {
                method: method.to_string(),
                path: path.to_string(),
                query: query.to_string(),
                params: Value::Null,
                operation: "git".into(),
                status,
            })
        };
        let credentials = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.split_once(':').map(|(u, p)| (u.to_string(), p.to_string())));
        let user = credentials.filter(|(u, _)| !u.is_empty()).and_then(|(_, token)| st.tokens.get(&token).cloned());
        let Some(user) = user else {
            record(&mut st, 401);
            return Response::builder()
                .status(401)
                .header("WWW-Authenticate", "Basic realm=\"GitLab\"")
                .body(Body::from("HTTP Basic: Access denied. If a password was provided for Git authentication, the password was incorrect or you're required to use a token instead of a password.\n"))
                .unwrap();
        };
        let access = st.projects.contains_key(&key).then(|| st.access(&key, &user)).flatten();
        match access {
            Some(a) if a >= Access::Reporter && (!push || a >= Access::Developer) => {}
            Some(a) if a >= Access::Reporter => {
                record(&mut st, 403);
                return text(403, "You are not allowed to push code to this project.\n");
            }
            _ => {
                record(&mut st, 404);
                return text(404, "The project you were looking for could not be found or you don't have permission to view it.\n");
            }
        }
        record(&mut st, 200);
        (user, st.projects[&key].path.clone())
    };
    let bare = shared.bare(&canonical);
    let receive = *method == Method::POST && path.ends_with("/git-receive-pack");
    let before = if receive { git::heads(&bare) } else { BTreeMap::new() };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let (status, out_headers, out) = crate::support::git_http::http_backend(
        &shared.root,
        method.as_str(),
        &format!("/{canonical}.git/{rest}"),
        query,
        &header("content-type"),
        &header("content-encoding"),
        &header("git-protocol"),
        Some(&user),
        body.to_vec(),
    )
    .await;
    if receive && status == 200 {
        let after = git::heads(&bare);
        if after != before {
            let mut st = shared.state.lock().unwrap();
            st.pushes += 1;
            st.pushed(&bare, &canonical, &before, &after, &user);
        }
    }
    let mut b = Response::builder().status(status);
    for (k, v) in out_headers {
        b = b.header(k, v);
    }
    b.body(Body::from(out)).unwrap()
}
