//! GitHub's REST contract, from its official OpenAPI description (npm `@octokit/openapi`,
//! `generated/api.github.com.json`): routes are matched to operations, and request query names,
//! request bodies and response bodies are validated against the operation's schemas.
//!
//! The description is OpenAPI 3.0: `nullable: true` is rewritten into JSON-schema type unions
//! and the whole document is registered once per test binary, so `$ref`s into `components`
//! resolve in place. Validators are compiled per operation and status, then cached.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use jsonschema::{Draft, Registry, Validator};
use serde_json::{Value, json};

const BASE: &str = "https://contract.invalid/api.github.com.json";

/// A matched operation.
#[derive(Debug, Clone)]
pub struct Operation {
    /// `pulls/create`, `issues/add-labels`...
    pub id: String,
    /// Values of the path template's `{params}`, by name.
    pub params: HashMap<String, String>,
    /// JSON pointer of the operation object in the document.
    pointer: String,
}

struct Route {
    method: String,
    segments: Vec<String>,
    id: String,
    pointer: String,
}

pub struct Contract {
    doc: &'static Value,
    examples: Value,
    registry: &'static Registry<'static>,
    routes: Vec<Route>,
    validators: Mutex<HashMap<String, Arc<Validator>>>,
    pub source: PathBuf,
}

/// Where the description is: `GITHUB_OPENAPI_SPEC`, else under `ARGOCD_IMAGE_PR_NPM` (default
/// `/var/tmp/argocd-image-pr-npm`), where scripts/test.sh installs it.
pub fn spec_path() -> PathBuf {
    if let Ok(p) = std::env::var("GITHUB_OPENAPI_SPEC") {
        return PathBuf::from(p);
    }
    let npm = std::env::var("ARGOCD_IMAGE_PR_NPM").unwrap_or_else(|_| "/var/tmp/argocd-image-pr-npm".into());
    PathBuf::from(npm).join("node_modules/@octokit/openapi/generated/api.github.com.json")
}

/// The contract, loaded once per test binary. Panics (failing the test) when the description is
/// missing: it is never skipped.
pub fn contract() -> &'static Contract {
    static CONTRACT: OnceLock<Contract> = OnceLock::new();
    CONTRACT.get_or_init(|| {
        let path = spec_path();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "GitHub's OpenAPI description is missing at {} ({e}): run scripts/test.sh, which installs \
                 the npm package @octokit/openapi, or set GITHUB_OPENAPI_SPEC to its generated/api.github.com.json",
                path.display()
            )
        });
        let mut doc: Value = serde_json::from_str(&text).expect("the OpenAPI description is not JSON");
        // Examples are not schemas: kept aside (the fake builds its answers from these real
        // bodies), and out of the registry.
        let examples = doc
            .get_mut("components")
            .and_then(Value::as_object_mut)
            .and_then(|c| c.remove("examples"))
            .unwrap_or(Value::Null);
        nullable_to_union(&mut doc);
        let doc: &'static Value = Box::leak(Box::new(doc));
        let registry = Registry::new()
            .draft(Draft::Draft4)
            .add(BASE, doc)
            .and_then(|b| b.prepare())
            .expect("the OpenAPI description does not load as a JSON-schema registry");
        let registry: &'static Registry<'static> = Box::leak(Box::new(registry));
        let mut routes = Vec::new();
        for (template, item) in doc["paths"].as_object().expect("paths").iter() {
            for (method, op) in item.as_object().into_iter().flatten() {
                let Some(id) = op.get("operationId").and_then(Value::as_str) else { continue };
                routes.push(Route {
                    method: method.to_ascii_uppercase(),
                    segments: template.trim_start_matches('/').split('/').map(str::to_string).collect(),
                    id: id.to_string(),
                    pointer: format!("/paths/{}/{method}", escape(template)),
                });
            }
        }
        Contract { doc, examples, registry, routes, validators: Mutex::new(HashMap::new()), source: path }
    })
}

/// JSON-pointer escaping of one token.
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// OpenAPI 3.0 `nullable: true` → JSON-schema `null` in the type (or an `anyOf` with null).
fn nullable_to_union(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for child in map.values_mut() {
                nullable_to_union(child);
            }
            if map.remove("nullable") == Some(Value::Bool(true)) {
                if let Some(Value::Array(values)) = map.get_mut("enum")
                    && !values.contains(&Value::Null)
                {
                    values.push(Value::Null);
                }
                match map.get("type").cloned() {
                    Some(Value::String(t)) => {
                        map.insert("type".into(), json!([t, "null"]));
                    }
                    Some(Value::Array(mut ts)) => {
                        if !ts.contains(&json!("null")) {
                            ts.push(json!("null"));
                        }
                        map.insert("type".into(), Value::Array(ts));
                    }
                    _ => {
                        let inner = Value::Object(std::mem::take(map));
                        map.insert("anyOf".into(), json!([inner, {"type": "null"}]));
                    }
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(nullable_to_union),
        _ => {}
    }
}

impl Contract {
    /// The real response body of `components.examples[name]` (arrays: their first item).
    pub fn example(&self, name: &str) -> Value {
        let v = self.examples.get(name).and_then(|e| e.get("value")).unwrap_or_else(|| panic!("no example {name:?}"));
        match v {
            Value::Array(items) => items.first().cloned().unwrap_or(Value::Null),
            other => other.clone(),
        }
    }

    /// The operation for `method path` (path without `/api/v3`), preferring literal segments
    /// over `{params}`; a trailing `{ref}`/`{path}` may span several segments, as on GitHub.
    pub fn operation(&self, method: &str, path: &str) -> Option<Operation> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let mut best: Option<(usize, Operation)> = None;
        for route in self.routes.iter().filter(|r| r.method == method) {
            let Some((literals, params)) = match_route(&route.segments, &segments) else { continue };
            if best.as_ref().is_none_or(|(l, _)| literals > *l) {
                best = Some((literals, Operation { id: route.id.clone(), params, pointer: route.pointer.clone() }));
            }
        }
        best.map(|(_, op)| op)
    }

    fn resolve<'v>(&'v self, mut v: &'v Value) -> &'v Value {
        while let Some(r) = v.get("$ref").and_then(Value::as_str) {
            v = self.doc.pointer(r.trim_start_matches('#')).unwrap_or_else(|| panic!("dangling $ref {r}"));
        }
        v
    }

    fn pointer_of(&self, v: &Value) -> Option<String> {
        v.get("$ref").and_then(Value::as_str).map(|r| r.trim_start_matches('#').to_string())
    }

    /// Problems with the query parameter names of a request.
    pub fn check_query(&self, op: &Operation, names: &[String]) -> Vec<String> {
        let operation = self.doc.pointer(&op.pointer).unwrap();
        let declared: Vec<String> = operation
            .get("parameters")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|p| self.resolve(p))
            .filter(|p| p["in"] == "query")
            .filter_map(|p| p["name"].as_str().map(str::to_string))
            .collect();
        names
            .iter()
            .filter(|n| !declared.contains(n))
            .map(|n| format!("{}: query parameter {n:?} is not in the contract (declared: {declared:?})", op.id))
            .collect()
    }

    /// Problems with a request body.
    pub fn check_request(&self, op: &Operation, body: Option<&Value>) -> Vec<String> {
        let operation = self.doc.pointer(&op.pointer).unwrap();
        let Some(request_body) = operation.get("requestBody") else {
            return match body {
                Some(b) if !b.is_null() => vec![format!("{}: the contract has no request body, got {b}", op.id)],
                _ => vec![],
            };
        };
        let mut pointer = format!("{}/requestBody", op.pointer);
        if let Some(p) = self.pointer_of(request_body) {
            pointer = p;
        }
        let request_body = self.resolve(request_body);
        let Some(body) = body else {
            return if request_body["required"] == true {
                vec![format!("{}: the request body is required", op.id)]
            } else {
                vec![]
            };
        };
        if request_body.pointer("/content/application~1json/schema").is_none() {
            return vec![format!("{}: the contract takes no JSON body", op.id)];
        }
        self.validate(&format!("{pointer}/content/application~1json/schema"), body)
            .into_iter()
            .map(|e| format!("{} request body: {e}", op.id))
            .collect()
    }

    /// Problems with a response: its status must be declared (any error status may instead carry
    /// GitHub's `basic-error` shape: rate limits and server errors can answer any call), and a
    /// JSON body must match the declared schema.
    pub fn check_response(&self, op: &Operation, status: u16, body: Option<&Value>) -> Vec<String> {
        let operation = self.doc.pointer(&op.pointer).unwrap();
        let code = status.to_string();
        let Some(response) = operation["responses"].get(&code) else {
            if status >= 400 {
                return self
                    .validate("/components/schemas/basic-error", body.unwrap_or(&Value::Null))
                    .into_iter()
                    .map(|e| format!("{} {status} (undeclared error) body: {e}", op.id))
                    .collect();
            }
            return vec![format!("{}: status {status} is not declared by the contract", op.id)];
        };
        let pointer = self.pointer_of(response).unwrap_or_else(|| format!("{}/responses/{code}", op.pointer));
        let response = self.resolve(response);
        match (response.pointer("/content/application~1json/schema"), body) {
            (Some(_), Some(body)) => self
                .validate(&format!("{pointer}/content/application~1json/schema"), body)
                .into_iter()
                .map(|e| format!("{} {status} response body: {e}", op.id))
                .collect(),
            (Some(_), None) => vec![format!("{} {status}: the contract expects a JSON body, got none", op.id)],
            // GitHub sends its error shape even where the description lists no content
            // (`git/delete-ref` 422 "Reference does not exist").
            (None, Some(b)) if status >= 400 => self
                .validate("/components/schemas/basic-error", b)
                .into_iter()
                .map(|e| format!("{} {status} error body: {e}", op.id))
                .collect(),
            (None, Some(b)) if !b.is_null() => vec![format!("{} {status}: the contract declares no body, got {b}", op.id)],
            (None, _) => vec![],
        }
    }

    /// Validates `instance` against the schema at `pointer`; error strings, at most 10.
    pub fn validate(&self, pointer: &str, instance: &Value) -> Vec<String> {
        let cached = self.validators.lock().unwrap().get(pointer).cloned();
        let validator = match cached {
            Some(v) => v,
            None => {
                // `{owner}` in a pointer must be percent-encoded inside a URI fragment.
                let fragment: String = pointer
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() || "/~-._".contains(c) { c.to_string() } else { format!("%{:02X}", c as u32) })
                    .collect();
                let schema = json!({"$ref": format!("{BASE}#{fragment}")});
                match jsonschema::options().with_draft(Draft::Draft4).with_registry(self.registry).build(&schema) {
                    Ok(v) => {
                        let v = Arc::new(v);
                        self.validators.lock().unwrap().insert(pointer.to_string(), v.clone());
                        v
                    }
                    Err(e) => return vec![format!("the schema at {pointer} does not compile: {e}")],
                }
            }
        };
        validator.iter_errors(instance).take(10).map(|e| format!("{} at {}", e, e.instance_path())).collect()
    }
}

fn match_route(template: &[String], path: &[&str]) -> Option<(usize, HashMap<String, String>)> {
    let mut params = HashMap::new();
    let mut literals = 0;
    for (i, t) in template.iter().enumerate() {
        let is_param = t.starts_with('{') && t.ends_with('}');
        let last = i + 1 == template.len();
        if is_param && last && matches!(t.as_str(), "{ref}" | "{path}") {
            if path.len() <= i {
                return None;
            }
            params.insert(t[1..t.len() - 1].to_string(), path[i..].join("/"));
            return Some((literals, params));
        }
        let segment = path.get(i)?;
        if is_param {
            if segment.is_empty() {
                return None;
            }
            params.insert(t[1..t.len() - 1].to_string(), percent_decode(segment));
        } else if t == segment {
            literals += 1;
        } else {
            return None;
        }
    }
    (template.len() == path.len()).then_some((literals, params))
}

pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
