//! A stateful fake GitHub Enterprise Server on loopback, for driver and scenario tests:
//! REST at `/api/v3/...`, GraphQL at `/api/graphql` (only `enablePullRequestAutoMerge`), git
//! smart HTTP at `/{owner}/{repo}.git/...` through `git http-backend`, with token and GitHub App
//! auth and rate-limit headers on every answer.
//!
//! Every REST request and every answer is checked against GitHub's OpenAPI description
//! ([`contract`]); an unknown route, an undeclared query parameter, a body off the schema or an
//! answer off the schema is a violation, and [`FakeGithub::finish`] (or dropping the fake) fails
//! the test. GraphQL has no OpenAPI: its mutation name and variables are checked by hand here.
//!
//! Answers are built from the description's own examples (real GitHub bodies), with the fields
//! the bot reads set from the fake's state and example URLs moved to the fake's host.
//!
//! Test controls are plain methods: create repositories, push as someone else, merge, close,
//! comment, set permissions, inject faults and rate limits, read every request made.

pub mod contract;
pub mod git;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use base64::Engine;
use chrono::{DateTime, SubsecRound, Utc};
use serde_json::{Value, json};

use contract::{Contract, Operation};

/// The personal access token every fake accepts, and whose user it is.
pub const TOKEN: &str = "ghp_fake_bot_token_0123456789";
pub const BOT_USER: &str = "image-bot";

/// A role on a repository, as GitHub's collaborator roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    None,
    Read,
    Triage,
    Write,
    Maintain,
    Admin,
}

impl Role {
    /// (`permission`, `role_name`) as `GET .../collaborators/{user}/permission` answers.
    fn answer(self) -> (&'static str, &'static str) {
        match self {
            Role::None => ("none", "none"),
            Role::Read => ("read", "read"),
            Role::Triage => ("read", "triage"),
            Role::Write => ("write", "write"),
            Role::Maintain => ("write", "maintain"),
            Role::Admin => ("admin", "admin"),
        }
    }
}

/// A rate limit to answer with instead of serving a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimit {
    /// 403 with `Retry-After: N`.
    Secondary { retry_after: u64 },
    /// 403 with `X-RateLimit-Remaining: 0` and a reset N seconds ahead.
    Primary { reset_in: u64 },
    /// 429 with `Retry-After: N`.
    TooMany { retry_after: u64 },
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Without the `/api/v3` prefix for REST; `/api/graphql`; git paths as they are.
    pub path: String,
    pub query: String,
    pub body: Option<Value>,
    /// The contract's operation id (`pulls/create`), `graphql`, or `git`.
    pub operation: String,
    pub status: u16,
}

impl Recorded {
    /// A REST or GraphQL request that changes something.
    pub fn is_write(&self) -> bool {
        self.operation != "git" && self.method != "GET"
    }
}

/// A pull request as the fake holds it (for assertions).
#[derive(Debug, Clone)]
pub struct Pull {
    pub number: u64,
    pub id: u64,
    pub node_id: String,
    pub repo: String,
    pub user: String,
    pub title: String,
    pub body: Option<String>,
    pub head: String,
    pub base: String,
    pub open: bool,
    pub draft: bool,
    pub merged_at: Option<DateTime<Utc>>,
    pub merged_by: Option<String>,
    pub merge_commit_sha: Option<String>,
    pub labels: Vec<String>,
    pub requested_reviewers: Vec<String>,
    pub requested_teams: Vec<String>,
    pub assignees: Vec<String>,
    /// (merge method, enabled by).
    pub auto_merge: Option<(String, String)>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    /// Head commit last seen (kept when the branch is deleted).
    pub last_head_sha: String,
}

#[derive(Debug, Clone)]
pub struct IssueComment {
    pub id: u64,
    pub repo: String,
    pub number: u64,
    pub user: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Reaction {
    pub id: u64,
    pub comment_id: u64,
    pub user: String,
    pub content: String,
}

struct Repo {
    owner: String,
    name: String,
    id: u64,
    default_branch: String,
    collaborators: HashMap<String, Role>,
    installation: Option<u64>,
    next_number: u64,
}

struct Token {
    user: String,
    expires_at: Option<DateTime<Utc>>,
}

struct App {
    id: u64,
    slug: String,
    public_key_pem: Vec<u8>,
    token_ttl: Duration,
}

struct Fault {
    operation: String,
    nth: usize,
    status: u16,
}

#[derive(Default)]
struct State {
    repos: BTreeMap<String, Repo>,
    next_id: u64,
    pulls: Vec<Pull>,
    comments: Vec<IssueComment>,
    reactions: Vec<Reaction>,
    tokens: HashMap<String, Token>,
    app: Option<App>,
    tokens_issued: usize,
    requests: Vec<Recorded>,
    violations: Vec<String>,
    faults: Vec<Fault>,
    /// Calls that take effect but whose answer is replaced by a 502 (operation, nth).
    lost: Vec<(String, usize)>,
    /// The next `pulls/list` answers leave out every pull request.
    hidden_listings: usize,
    calls: HashMap<String, usize>,
    rate_limits: VecDeque<RateLimit>,
    rate_limited: usize,
    corrupt: Vec<String>,
    remaining: u64,
    pushes: usize,
}

impl State {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

struct Shared {
    state: Mutex<State>,
    root: PathBuf,
    contract: &'static Contract,
    /// `http://127.0.0.1:PORT`
    web: Mutex<String>,
    reset_at: i64,
}

/// The fake server; stops when dropped.
pub struct FakeGithub {
    shared: Arc<Shared>,
    addr: SocketAddr,
    finished: AtomicBool,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _root: tempfile::TempDir,
}

impl FakeGithub {
    /// Starts the fake on a free loopback port (its own thread and runtime). Loads the OpenAPI
    /// contract first: a missing description fails here with what to run.
    pub fn start() -> FakeGithub {
        let contract = contract::contract();
        let root = tempfile::Builder::new().prefix("fake-github-").tempdir().unwrap();
        let mut state = State { remaining: 5000, next_id: 1000, ..State::default() };
        state.tokens.insert(TOKEN.into(), Token { user: BOT_USER.into(), expires_at: None });
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            root: root.path().to_path_buf(),
            contract,
            web: Mutex::new(String::new()),
            reset_at: Utc::now().timestamp() + 3600,
        });
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let server_shared = shared.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let app = axum::Router::new().fallback(serve).with_state(server_shared);
                tokio::select! {
                    _ = axum::serve(listener, app) => {}
                    _ = shutdown_rx => {}
                }
            });
        });
        let addr = addr_rx.recv().expect("the fake GitHub did not start");
        *shared.web.lock().unwrap() = format!("http://{addr}");
        FakeGithub { shared, addr, finished: AtomicBool::new(false), shutdown: Some(shutdown), thread: Some(thread), _root: root }
    }

    /// The server URL, as `--github-url` takes it (GHES-shaped: API at `/api/v3`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn api_url(&self) -> String {
        format!("http://{}/api/v3", self.addr)
    }

    /// `http://127.0.0.1:PORT/owner/name.git`
    pub fn git_url(&self, repo: &str) -> String {
        format!("http://{}/{repo}.git", self.addr)
    }

    /// The bare repository behind `owner/name`.
    pub fn bare_path(&self, repo: &str) -> PathBuf {
        self.shared.root.join(format!("{repo}.git"))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap()
    }

    // ---- repositories and git ----

    /// Creates `owner/name` with one commit of `files` on `main` (the default branch).
    pub fn create_repo(&self, repo: &str, files: &[(&str, &str)]) -> String {
        let (owner, name) = repo.split_once('/').expect("owner/name");
        let bare = self.bare_path(repo);
        std::fs::create_dir_all(&bare).unwrap();
        git::git(&bare, &["init", "-q", "--bare", "-b", "main"], "fake");
        let files: Vec<(&str, Option<&str>)> = files.iter().map(|(p, c)| (*p, Some(*c))).collect();
        let sha = git::commit_files(&bare, "main", None, &files, "Initial commit", "octo-admin");
        let mut st = self.state();
        let id = st.id();
        st.repos.insert(
            repo.to_ascii_lowercase(),
            Repo {
                owner: owner.into(),
                name: name.into(),
                id,
                default_branch: "main".into(),
                collaborators: HashMap::from([(BOT_USER.to_string(), Role::Write)]),
                installation: None,
                next_number: 1,
            },
        );
        sha
    }

    /// Makes `branch` (which must exist) the default branch, for the API and for git's `HEAD`.
    pub fn set_default_branch(&self, repo: &str, branch: &str) {
        git::git(&self.bare_path(repo), &["symbolic-ref", "HEAD", &format!("refs/heads/{branch}")], "fake");
        self.state().repos.get_mut(&repo.to_ascii_lowercase()).expect("no such repo").default_branch = branch.into();
    }

    /// Commits `files` (`None` deletes) on `branch` as `author`, as a person pushing would
    /// (the branch is created from the default branch when missing). Returns the commit.
    pub fn push_commit(&self, repo: &str, branch: &str, files: &[(&str, Option<&str>)], author: &str) -> String {
        let default = self.state().repos[&repo.to_ascii_lowercase()].default_branch.clone();
        let sha = git::commit_files(&self.bare_path(repo), branch, Some(&default), files, &format!("Change by {author}"), author);
        synchronize(&mut self.state(), &repo.to_ascii_lowercase(), &self.bare_path(repo));
        sha
    }

    /// The commit `branch` points to, if it exists.
    pub fn branch_sha(&self, repo: &str, branch: &str) -> Option<String> {
        git::branch_sha(&self.bare_path(repo), branch)
    }

    /// The content of `path` at the tip of `branch`.
    pub fn file_at(&self, repo: &str, branch: &str, path: &str) -> Option<String> {
        let out = std::process::Command::new("git")
            .args(["show", &format!("refs/heads/{branch}:{path}")])
            .current_dir(self.bare_path(repo))
            .output()
            .unwrap();
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Points `branch` at `sha` (a quick way to make many branches).
    pub fn create_branch(&self, repo: &str, branch: &str, sha: &str) {
        git::git(&self.bare_path(repo), &["update-ref", &format!("refs/heads/{branch}"), sha], "fake");
    }

    /// Successful `git push`es received over smart HTTP.
    pub fn pushes(&self) -> usize {
        self.state().pushes
    }

    // ---- people and apps ----

    pub fn add_token(&self, token: &str, user: &str) {
        self.state().tokens.insert(token.into(), Token { user: user.into(), expires_at: None });
    }

    pub fn set_permission(&self, repo: &str, user: &str, role: Role) {
        self.state().repos.get_mut(&repo.to_ascii_lowercase()).expect("no such repo").collaborators.insert(user.into(), role);
    }

    /// Registers the GitHub App (JWTs are verified with `public_key_pem`); installation tokens
    /// live `token_ttl`.
    pub fn register_app(&self, app_id: u64, slug: &str, public_key_pem: &[u8], token_ttl: Duration) {
        self.state().app = Some(App { id: app_id, slug: slug.into(), public_key_pem: public_key_pem.to_vec(), token_ttl });
    }

    /// Installs the App on `repo`; returns the installation id.
    pub fn install_app(&self, repo: &str) -> u64 {
        let mut st = self.state();
        let id = st.id();
        st.repos.get_mut(&repo.to_ascii_lowercase()).expect("no such repo").installation = Some(id);
        id
    }

    /// Revokes every installation token issued so far (calls with them get 401).
    pub fn revoke_installation_tokens(&self) {
        self.state().tokens.retain(|_, t| t.expires_at.is_none());
    }

    /// Installation tokens minted so far.
    pub fn tokens_issued(&self) -> usize {
        self.state().tokens_issued
    }

    /// The App's bot user login (`slug[bot]`).
    pub fn app_user(&self) -> String {
        format!("{}[bot]", self.state().app.as_ref().expect("no app").slug)
    }

    // ---- pull requests and conversation ----

    pub fn pulls(&self, repo: &str) -> Vec<Pull> {
        let key = repo.to_ascii_lowercase();
        self.state().pulls.iter().filter(|p| p.repo == key).cloned().collect()
    }

    pub fn pull(&self, repo: &str, number: u64) -> Pull {
        self.pulls(repo).into_iter().find(|p| p.number == number).unwrap_or_else(|| panic!("no pull request #{number} in {repo}"))
    }

    /// Opens a pull request directly (as `user`), e.g. a person's or a fork's.
    pub fn open_pull(&self, repo: &str, user: &str, head: &str, base: &str, title: &str) -> u64 {
        let sha = self.branch_sha(repo, head).unwrap_or_else(|| panic!("no branch {head} in {repo}"));
        let mut st = self.state();
        new_pull(&mut st, repo, user, title, None, head, base, false, sha).number
    }

    /// Takes the next number (issues and pull requests share the sequence).
    pub fn open_issue(&self, repo: &str) -> u64 {
        let mut st = self.state();
        let r = st.repos.get_mut(&repo.to_ascii_lowercase()).expect("no such repo");
        r.next_number += 1;
        r.next_number - 1
    }

    /// Merges the pull request with a real merge commit in the bare repository.
    pub fn merge_pull(&self, repo: &str, number: u64, by: &str) -> String {
        let p = self.pull(repo, number);
        assert!(p.open, "pull request #{number} is not open");
        let sha = git::merge(&self.bare_path(repo), &p.base, &p.head, &format!("Merge pull request #{number} from {}", p.head), by);
        let head_sha = self.branch_sha(repo, &p.head).unwrap_or(p.last_head_sha.clone());
        let mut st = self.state();
        let now = Utc::now();
        let pull = pull_mut(&mut st, repo, number);
        pull.open = false;
        pull.merged_at = Some(now);
        pull.merged_by = Some(by.into());
        pull.merge_commit_sha = Some(sha.clone());
        pull.closed_at = Some(now);
        pull.updated_at = now;
        pull.last_head_sha = head_sha;
        sha
    }

    /// Closes (`open = false`) or reopens a pull request as `by`.
    pub fn set_pull_open(&self, repo: &str, number: u64, open: bool, _by: &str) {
        let mut st = self.state();
        let now = Utc::now();
        let pull = pull_mut(&mut st, repo, number);
        assert!(pull.merged_at.is_none(), "pull request #{number} is merged");
        pull.open = open;
        pull.closed_at = if open { None } else { Some(now) };
        pull.updated_at = now;
    }

    /// Posts a comment as `user`; returns its id.
    pub fn comment(&self, repo: &str, number: u64, user: &str, body: &str) -> u64 {
        let mut st = self.state();
        let id = st.id();
        let now = Utc::now();
        st.comments.push(IssueComment { id, repo: repo.to_ascii_lowercase(), number, user: user.into(), body: body.into(), created_at: now });
        if let Some(p) = st.pulls.iter_mut().find(|p| p.repo == repo.to_ascii_lowercase() && p.number == number) {
            p.updated_at = now;
        }
        id
    }

    pub fn comments(&self, repo: &str, number: u64) -> Vec<IssueComment> {
        let key = repo.to_ascii_lowercase();
        self.state().comments.iter().filter(|c| c.repo == key && c.number == number).cloned().collect()
    }

    pub fn reactions(&self, comment_id: u64) -> Vec<Reaction> {
        self.state().reactions.iter().filter(|r| r.comment_id == comment_id).cloned().collect()
    }

    // ---- faults, rate limits, inspection ----

    /// Fails the `nth` (1-based, counted from now) call of `operation` (`pulls/create`) with `status`.
    pub fn fail(&self, operation: &str, nth: usize, status: u16) {
        let mut st = self.state();
        let done = st.calls.get(operation).copied().unwrap_or(0);
        st.faults.push(Fault { operation: operation.into(), nth: done + nth, status });
    }

    /// The `nth` (1-based, counted from now) call of `operation` takes effect, but its answer is
    /// lost: the caller gets a 502 from a proxy in between.
    pub fn lose_response(&self, operation: &str, nth: usize) {
        let mut st = self.state();
        let done = st.calls.get(operation).copied().unwrap_or(0);
        st.lost.push((operation.into(), done + nth));
    }

    /// The next listing of pull requests answers an empty page (a stale replica).
    pub fn hide_from_next_listing(&self, _repo: &str) {
        self.state().hidden_listings += 1;
    }

    /// The next `count` API requests are answered with this rate limit.
    pub fn rate_limit_next(&self, count: usize, limit: RateLimit) {
        let mut st = self.state();
        for _ in 0..count {
            st.rate_limits.push_back(limit);
        }
    }

    /// Rate-limited answers given so far.
    pub fn rate_limited(&self) -> usize {
        self.state().rate_limited
    }

    /// The next answer of `operation` gets a body off the contract (to prove the checks bite).
    pub fn corrupt_next_response(&self, operation: &str) {
        self.state().corrupt.push(operation.into());
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }

    /// REST and GraphQL requests that change something (git pushes are counted by [`Self::pushes`]).
    pub fn writes(&self) -> usize {
        self.state().requests.iter().filter(|r| r.is_write()).count()
    }

    /// Forgets the requests seen so far (violations stay).
    pub fn clear_requests(&self) {
        self.state().requests.clear();
    }

    pub fn violations(&self) -> Vec<String> {
        self.state().violations.clone()
    }

    /// Fails the test when any request or answer broke the contract.
    pub fn finish(&self) {
        self.finished.store(true, Ordering::SeqCst);
        let violations = self.violations();
        assert!(
            violations.is_empty(),
            "the fake GitHub saw {} contract violation(s) (checked against {}):\n  {}",
            violations.len(),
            self.shared.contract.source.display(),
            violations.join("\n  ")
        );
    }
}

impl Drop for FakeGithub {
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

/// After a push: an open pull request whose head branch moved is updated (`updated_at`), as
/// GitHub's `synchronize` does.
fn synchronize(st: &mut State, key: &str, bare: &Path) {
    let now = Utc::now();
    for p in st.pulls.iter_mut().filter(|p| p.repo == key && p.open) {
        if let Some(sha) = git::branch_sha(bare, &p.head).filter(|s| *s != p.last_head_sha) {
            p.last_head_sha = sha;
            p.updated_at = now;
        }
    }
}

fn pull_mut<'s>(st: &'s mut State, repo: &str, number: u64) -> &'s mut Pull {
    let key = repo.to_ascii_lowercase();
    st.pulls.iter_mut().find(|p| p.repo == key && p.number == number).unwrap_or_else(|| panic!("no pull request #{number} in {repo}"))
}

#[allow(clippy::too_many_arguments)]
fn new_pull<'s>(
    st: &'s mut State,
    repo: &str,
    user: &str,
    title: &str,
    body: Option<String>,
    head: &str,
    base: &str,
    draft: bool,
    head_sha: String,
) -> &'s Pull {
    let key = repo.to_ascii_lowercase();
    let id = st.id();
    let r = st.repos.get_mut(&key).expect("no such repo");
    let number = r.next_number;
    r.next_number += 1;
    let now = Utc::now();
    st.pulls.push(Pull {
        number,
        id,
        node_id: base64::engine::general_purpose::STANDARD.encode(format!("PullRequest:{id}")),
        repo: key,
        user: user.into(),
        title: title.into(),
        body,
        head: head.into(),
        base: base.into(),
        open: true,
        draft,
        merged_at: None,
        merged_by: None,
        merge_commit_sha: None,
        labels: vec![],
        requested_reviewers: vec![],
        requested_teams: vec![],
        assignees: vec![],
        auto_merge: None,
        created_at: now,
        updated_at: now,
        closed_at: None,
        last_head_sha: head_sha,
    });
    st.pulls.last().unwrap()
}

// ---- the HTTP side ----

type Reply = (u16, Option<Value>, Vec<(String, String)>);

fn error_body(message: &str) -> Value {
    json!({"message": message, "documentation_url": "https://docs.github.com/rest"})
}

fn reply_error(status: u16, message: &str) -> Reply {
    (status, Some(error_body(message)), vec![])
}

fn validation_failed(errors: Value) -> Reply {
    (422, Some(json!({"message": "Validation Failed", "errors": errors, "documentation_url": "https://docs.github.com/rest"})), vec![])
}

async fn serve(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("").to_string();
    if let Some(rest) = path.strip_prefix("/api/v3") {
        let rest = if rest.is_empty() { "/" } else { rest };
        return rest_call(&shared, &method, rest, &query, &headers, &body);
    }
    if path == "/api/graphql" {
        return graphql_call(&shared, &method, &headers, &body);
    }
    if path.contains(".git/") {
        return git_call(&shared, &method, &path, &query, &headers, body).await;
    }
    let mut st = shared.state.lock().unwrap();
    st.violations.push(format!("{method} {path}: not a GitHub Enterprise route (REST is under /api/v3)"));
    st.requests.push(Recorded { method: method.to_string(), path, query, body: None, operation: "unknown".into(), status: 404 });
    respond(&shared, &st, 404, Some(error_body("Not Found")), vec![], "core")
}

fn respond(shared: &Shared, st: &State, status: u16, body: Option<Value>, extra: Vec<(String, String)>, resource: &str) -> Response {
    let mut b = Response::builder().status(StatusCode::from_u16(status).unwrap());
    let limited = extra.iter().any(|(k, _)| k.eq_ignore_ascii_case("x-ratelimit-remaining"));
    if !limited {
        b = b
            .header("X-RateLimit-Limit", "5000")
            .header("X-RateLimit-Remaining", st.remaining.to_string())
            .header("X-RateLimit-Reset", shared.reset_at.to_string())
            .header("X-RateLimit-Used", (5000 - st.remaining).to_string())
            .header("X-RateLimit-Resource", resource);
    }
    for (k, v) in extra {
        b = b.header(k, v);
    }
    match body {
        Some(v) => b.header("Content-Type", "application/json; charset=utf-8").body(Body::from(v.to_string())).unwrap(),
        None => b.body(Body::empty()).unwrap(),
    }
}

/// Who the `Authorization` header says the caller is.
enum Caller {
    Nobody,
    User(String),
    /// A valid App JWT.
    App,
    Invalid(String),
}

fn caller(st: &State, headers: &HeaderMap) -> Caller {
    let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else { return Caller::Nobody };
    let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("token ")).unwrap_or("").trim();
    if token.matches('.').count() == 2 {
        return match verify_jwt(st, token) {
            Ok(()) => Caller::App,
            Err(e) => Caller::Invalid(e),
        };
    }
    token_user(st, token).map(Caller::User).unwrap_or_else(Caller::Invalid)
}

fn token_user(st: &State, token: &str) -> Result<String, String> {
    match st.tokens.get(token) {
        None => Err("Bad credentials".into()),
        Some(t) if t.expires_at.is_some_and(|e| e <= Utc::now()) => Err("Bad credentials (token expired)".into()),
        Some(t) => Ok(t.user.clone()),
    }
}

fn verify_jwt(st: &State, jwt: &str) -> Result<(), String> {
    let app = st.app.as_ref().ok_or("no GitHub App is registered")?;
    let parts: Vec<&str> = jwt.split('.').collect();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header: Value = serde_json::from_slice(&b64.decode(parts[0]).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    if header["alg"] != "RS256" {
        return Err(format!("JWT alg {} is not RS256", header["alg"]));
    }
    let signature = b64.decode(parts[2]).map_err(|e| e.to_string())?;
    let key = openssl::pkey::PKey::public_key_from_pem(&app.public_key_pem).map_err(|e| e.to_string())?;
    let mut verifier = openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha256(), &key).map_err(|e| e.to_string())?;
    verifier.update(format!("{}.{}", parts[0], parts[1]).as_bytes()).map_err(|e| e.to_string())?;
    if !verifier.verify(&signature).map_err(|e| e.to_string())? {
        return Err("A JSON web token could not be decoded (bad signature)".into());
    }
    let claims: Value = serde_json::from_slice(&b64.decode(parts[1]).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let iss = claims["iss"].as_u64().or_else(|| claims["iss"].as_str().and_then(|s| s.parse().ok()));
    if iss != Some(app.id) {
        return Err(format!("JWT iss {} is not app {}", claims["iss"], app.id));
    }
    let now = Utc::now().timestamp();
    let (iat, exp) = (claims["iat"].as_i64().unwrap_or(i64::MAX), claims["exp"].as_i64().unwrap_or(0));
    if exp <= now || iat > now + 60 || exp - iat > 660 {
        return Err(format!("JWT times are off (iat {iat}, exp {exp}, now {now}; GitHub takes at most 10 minutes)"));
    }
    Ok(())
}

fn rest_call(shared: &Shared, method: &Method, path: &str, query: &str, headers: &HeaderMap, raw: &[u8]) -> Response {
    let contract = shared.contract;
    let mut st = shared.state.lock().unwrap();
    st.remaining = st.remaining.saturating_sub(1).max(1);
    let body: Option<Value> = if raw.is_empty() {
        None
    } else {
        match serde_json::from_slice(raw) {
            Ok(v) => Some(v),
            Err(e) => {
                st.violations.push(format!("{method} {path}: the request body is not JSON: {e}"));
                None
            }
        }
    };
    let mut record = Recorded {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        body: body.clone(),
        operation: "unknown".into(),
        status: 0,
    };
    let Some(op) = contract.operation(method.as_str(), path) else {
        st.violations.push(format!("{method} /api/v3{path}: no such operation in GitHub's REST API"));
        record.status = 404;
        st.requests.push(record);
        return respond(shared, &st, 404, Some(error_body("Not Found")), vec![], "core");
    };
    record.operation = op.id.clone();
    let names: Vec<String> =
        url::form_urlencoded::parse(query.as_bytes()).map(|(k, _)| k.into_owned()).collect();
    let mut problems = contract.check_query(&op, &names);
    problems.extend(contract.check_request(&op, body.as_ref()));
    st.violations.extend(problems.into_iter().map(|p| format!("request {method} {path}: {p}")));

    let (status, mut out, extra) = answer(shared, &mut st, &op, query, headers, body.as_ref());
    if let Some(i) = st.corrupt.iter().position(|o| *o == op.id) {
        st.corrupt.remove(i);
        out = Some(match out {
            Some(Value::Array(_)) => json!([{"unexpected": true}]),
            _ => json!({"unexpected": true}),
        });
    }
    let problems = contract.check_response(&op, status, out.as_ref());
    st.violations.extend(problems.into_iter().map(|p| format!("answer to {method} {path}: {p}")));
    record.status = status;
    st.requests.push(record);
    respond(shared, &st, status, out, extra, "core")
}

/// Rate limits, auth and faults, then the operation itself.
fn answer(
    shared: &Shared,
    st: &mut State,
    op: &Operation,
    query: &str,
    headers: &HeaderMap,
    body: Option<&Value>,
) -> Reply {
    if let Some(limit) = st.rate_limits.pop_front() {
        st.rate_limited += 1;
        return rate_limited(limit);
    }
    let app_route = op.id.starts_with("apps/");
    let user = match caller(st, headers) {
        Caller::App if app_route => String::new(),
        Caller::App => return reply_error(401, "A JSON web token cannot be used for this request; use an installation token"),
        Caller::User(_) if app_route => return reply_error(401, "A JSON web token is required to access this endpoint"),
        Caller::User(u) => u,
        Caller::Nobody => return reply_error(401, "Requires authentication"),
        Caller::Invalid(e) => return reply_error(401, &e),
    };
    let calls = st.calls.entry(op.id.clone()).or_insert(0);
    *calls += 1;
    let n = *calls;
    if let Some(i) = st.faults.iter().position(|f| f.operation == op.id && f.nth == n) {
        let fault = st.faults.remove(i);
        return reply_error(fault.status, &format!("injected fault on {} call {n}", op.id));
    }
    let reply = handle(shared, st, op, &user, query, body);
    if let Some(i) = st.lost.iter().position(|(o, nth)| *o == op.id && *nth == n) {
        st.lost.remove(i);
        return reply_error(502, "Server Error (the answer was lost on its way)");
    }
    reply
}

fn rate_limited(limit: RateLimit) -> Reply {
    let now = Utc::now().timestamp();
    match limit {
        RateLimit::Secondary { retry_after } => (
            403,
            Some(error_body("You have exceeded a secondary rate limit. Please wait a few minutes before you try again.")),
            vec![("Retry-After".into(), retry_after.to_string())],
        ),
        RateLimit::TooMany { retry_after } => (
            429,
            Some(error_body("You have exceeded a secondary rate limit.")),
            vec![("Retry-After".into(), retry_after.to_string())],
        ),
        RateLimit::Primary { reset_in } => (
            403,
            Some(error_body("API rate limit exceeded for installation.")),
            vec![
                ("X-RateLimit-Limit".into(), "5000".into()),
                ("X-RateLimit-Remaining".into(), "0".into()),
                ("X-RateLimit-Used".into(), "5000".into()),
                ("X-RateLimit-Reset".into(), (now + reset_in as i64).to_string()),
                ("X-RateLimit-Resource".into(), "core".into()),
            ],
        ),
    }
}

fn repo_key(op: &Operation) -> String {
    format!("{}/{}", op.params.get("owner").cloned().unwrap_or_default(), op.params.get("repo").cloned().unwrap_or_default())
        .to_ascii_lowercase()
}

fn param_u64(op: &Operation, name: &str) -> Option<u64> {
    op.params.get(name).and_then(|v| v.parse().ok())
}

fn handle(shared: &Shared, st: &mut State, op: &Operation, user: &str, query: &str, body: Option<&Value>) -> Reply {
    let j = Json { shared, web: shared.web.lock().unwrap().clone() };
    if op.id == "apps/create-installation-access-token" {
        let Some(installation) = param_u64(op, "installation_id") else { return reply_error(404, "Not Found") };
        if !st.repos.values().any(|r| r.installation == Some(installation)) {
            return reply_error(404, "Not Found");
        }
        let app = st.app.as_ref().unwrap();
        let ttl = chrono::Duration::from_std(app.token_ttl).unwrap();
        let login = format!("{}[bot]", app.slug);
        let expires_at = Utc::now() + ttl;
        st.tokens_issued += 1;
        let token = format!("ghs_fake{}x{}", installation, st.tokens_issued);
        st.tokens.insert(token.clone(), Token { user: login, expires_at: Some(expires_at) });
        return (201, Some(j.installation_token(&token, expires_at)), vec![]);
    }
    let key = repo_key(op);
    let Some(repo) = st.repos.get(&key) else { return reply_error(404, "Not Found") };
    if op.id == "apps/get-repo-installation" {
        return match repo.installation {
            Some(id) => {
                let app = st.app.as_ref().unwrap();
                (200, Some(j.installation(id, app.id, &app.slug, &repo.owner)), vec![])
            }
            None => reply_error(404, "Not Found"),
        };
    }
    // A token works on a repository if its user is a collaborator (App tokens: if installed).
    let allowed = repo.collaborators.get(user).is_some_and(|r| *r >= Role::Read)
        || (user.ends_with("[bot]") && repo.installation.is_some());
    if !allowed {
        return reply_error(404, "Not Found");
    }
    let writer = repo.collaborators.get(user).is_some_and(|r| *r >= Role::Write) || user.ends_with("[bot]");
    let bare = shared.root.join(format!("{}/{}.git", repo.owner, repo.name));
    let body = body.cloned().unwrap_or(Value::Null);
    let number = param_u64(op, "pull_number").or_else(|| param_u64(op, "issue_number"));
    let find = |st: &State, n: Option<u64>| st.pulls.iter().position(|p| p.repo == key && Some(p.number) == n);
    let needs_write = !matches!(
        op.id.as_str(),
        "repos/get"
            | "pulls/list"
            | "pulls/get"
            | "issues/list-comments"
            | "issues/list-comments-for-repo"
            | "repos/get-collaborator-permission-level"
    );
    if needs_write && !writer {
        return reply_error(403, "Resource not accessible by integration");
    }
    match op.id.as_str() {
        "repos/get" => (200, Some(j.full_repo(st, &key)), vec![]),
        "pulls/list" => {
            let params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
            let state = params.get("state").map(String::as_str).unwrap_or("open");
            let per_page: usize = params.get("per_page").and_then(|v| v.parse().ok()).unwrap_or(30).clamp(1, 100);
            let page: usize = params.get("page").and_then(|v| v.parse().ok()).unwrap_or(1).max(1);
            let hide = st.hidden_listings > 0;
            st.hidden_listings = st.hidden_listings.saturating_sub(1);
            let mut pulls: Vec<&Pull> = st
                .pulls
                .iter()
                .filter(|p| p.repo == key)
                .filter(|p| match state {
                    "open" => p.open,
                    "closed" => !p.open,
                    _ => true,
                })
                .collect();
            let desc = params.get("direction").map(String::as_str) != Some("asc");
            match params.get("sort").map(String::as_str) {
                Some("updated") => pulls.sort_by_key(|p| (p.updated_at, p.number)),
                _ => pulls.sort_by_key(|p| (p.created_at, p.number)),
            }
            if desc {
                pulls.reverse();
            }
            if hide {
                pulls.clear();
            }
            let total = pulls.len();
            let items: Vec<Value> =
                pulls.iter().skip((page - 1) * per_page).take(per_page).map(|p| j.pull(st, p, &bare, false)).collect();
            let mut extra = vec![];
            let last = total.div_ceil(per_page).max(1);
            if page < last {
                let mut link_params = params.clone();
                let link = |n: usize, rel: &str, lp: &mut HashMap<String, String>| {
                    lp.insert("page".into(), n.to_string());
                    let mut q: Vec<(String, String)> = lp.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                    q.sort();
                    let qs = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(q).finish();
                    format!("<{}/api/v3/repos/{key}/pulls?{qs}>; rel=\"{rel}\"", j.web)
                };
                let next = link(page + 1, "next", &mut link_params);
                let last_link = link(last, "last", &mut link_params);
                extra.push(("Link".into(), format!("{next}, {last_link}")));
            }
            (200, Some(Value::Array(items)), extra)
        }
        "pulls/get" => match find(st, number) {
            Some(i) => (200, Some(j.pull(st, &st.pulls[i], &bare, true)), vec![]),
            None => reply_error(404, "Not Found"),
        },
        "pulls/create" => {
            let head = body["head"].as_str().unwrap_or("");
            let head = head.split_once(':').map(|(_, b)| b).unwrap_or(head).to_string();
            let base = body["base"].as_str().unwrap_or("").to_string();
            let Some(head_sha) = git::branch_sha(&bare, &head) else {
                return validation_failed(json!([{"resource": "PullRequest", "field": "head", "code": "invalid"}]));
            };
            let Some(base_sha) = git::branch_sha(&bare, &base) else {
                return validation_failed(json!([{"resource": "PullRequest", "field": "base", "code": "invalid"}]));
            };
            if st.pulls.iter().any(|p| p.repo == key && p.open && p.head == head && p.base == base) {
                let owner = st.repos[&key].owner.clone();
                return validation_failed(json!([{"resource": "PullRequest", "code": "custom",
                    "message": format!("A pull request already exists for {owner}:{head}.")}]));
            }
            if head_sha == base_sha || is_ancestor(&bare, &head_sha, &base_sha) {
                return validation_failed(json!([{"resource": "PullRequest", "code": "custom",
                    "message": format!("No commits between {base} and {head}")}]));
            }
            let title = body["title"].as_str().unwrap_or("").to_string();
            let text = body["body"].as_str().map(str::to_string);
            let draft = body["draft"].as_bool().unwrap_or(false);
            let number = new_pull(st, &key, user, &title, text, &head, &base, draft, head_sha).number;
            let i = find(st, Some(number)).unwrap();
            let location = format!("{}/api/v3/repos/{key}/pulls/{number}", j.web);
            (201, Some(j.pull(st, &st.pulls[i], &bare, true)), vec![("Location".into(), location)])
        }
        "pulls/update" => {
            let Some(i) = find(st, number) else { return reply_error(404, "Not Found") };
            let now = Utc::now();
            if let Some(state) = body["state"].as_str() {
                let p = &st.pulls[i];
                if state == "open" && !p.open {
                    if p.merged_at.is_some() {
                        return validation_failed(json!([{"resource": "PullRequest", "code": "custom", "message": "Cannot reopen a merged pull request"}]));
                    }
                    if git::branch_sha(&bare, &p.head).is_none() {
                        return validation_failed(json!([{"resource": "PullRequest", "code": "custom", "message": "The head branch was deleted"}]));
                    }
                }
            }
            let head_sha = git::branch_sha(&bare, &st.pulls[i].head);
            let p = &mut st.pulls[i];
            if let Some(t) = body["title"].as_str() {
                p.title = t.into();
            }
            if let Some(b) = body.get("body") {
                p.body = b.as_str().map(str::to_string);
            }
            match body["state"].as_str() {
                Some("closed") if p.open => {
                    p.open = false;
                    p.closed_at = Some(now);
                    if let Some(s) = head_sha {
                        p.last_head_sha = s;
                    }
                }
                Some("open") if !p.open => {
                    p.open = true;
                    p.closed_at = None;
                }
                _ => {}
            }
            p.updated_at = now;
            (200, Some(j.pull(st, &st.pulls[i], &bare, true)), vec![])
        }
        "issues/list-comments" => {
            if find(st, number).is_none() {
                return reply_error(404, "Not Found");
            }
            let params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
            let per_page: usize = params.get("per_page").and_then(|v| v.parse().ok()).unwrap_or(30).clamp(1, 100);
            let page: usize = params.get("page").and_then(|v| v.parse().ok()).unwrap_or(1).max(1);
            let all: Vec<&IssueComment> = st.comments.iter().filter(|c| c.repo == key && Some(c.number) == number).collect();
            let items = all.iter().skip((page - 1) * per_page).take(per_page).map(|c| j.comment(st, c)).collect();
            let mut extra = vec![];
            if page * per_page < all.len() {
                extra.push((
                    "Link".into(),
                    format!("<{}/api/v3/repos/{key}/issues/{}/comments?per_page={per_page}&page={}>; rel=\"next\"", j.web, number.unwrap(), page + 1),
                ));
            }
            (200, Some(Value::Array(items)), extra)
        }
        "issues/list-comments-for-repo" => {
            // Every comment of the repository, `since` (updated at or after, GitHub's
            // whole-second stamps) ordered by `sort`/`direction`.
            let params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
            let per_page: usize = params.get("per_page").and_then(|v| v.parse().ok()).unwrap_or(30).clamp(1, 100);
            let page: usize = params.get("page").and_then(|v| v.parse().ok()).unwrap_or(1).max(1);
            let since = match params.get("since").map(|s| DateTime::parse_from_rfc3339(s)) {
                None => None,
                Some(Ok(t)) => Some(t.with_timezone(&Utc)),
                Some(Err(_)) => return validation_failed(json!([{"resource": "IssueComment", "field": "since", "code": "invalid"}])),
            };
            let mut all: Vec<&IssueComment> = st
                .comments
                .iter()
                .filter(|c| c.repo == key)
                .filter(|c| since.is_none_or(|s| c.created_at.trunc_subsecs(0) >= s))
                .collect();
            all.sort_by_key(|c| (c.created_at.trunc_subsecs(0), c.id));
            if params.get("direction").map(String::as_str) == Some("desc") {
                all.reverse();
            }
            let items = all.iter().skip((page - 1) * per_page).take(per_page).map(|c| j.comment(st, c)).collect();
            let mut extra = vec![];
            if page * per_page < all.len() {
                let mut q: Vec<(String, String)> = params.clone().into_iter().collect();
                q.retain(|(k, _)| k != "page");
                q.push(("page".into(), (page + 1).to_string()));
                q.sort();
                let qs = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(q).finish();
                extra.push(("Link".into(), format!("<{}/api/v3/repos/{key}/issues/comments?{qs}>; rel=\"next\"", j.web)));
            }
            (200, Some(Value::Array(items)), extra)
        }
        "issues/create-comment" => {
            if find(st, number).is_none() {
                return reply_error(404, "Not Found");
            }
            let id = st.id();
            let c = IssueComment { id, repo: key.clone(), number: number.unwrap(), user: user.into(), body: body["body"].as_str().unwrap_or("").into(), created_at: Utc::now() };
            st.comments.push(c.clone());
            let i = find(st, number).unwrap();
            st.pulls[i].updated_at = c.created_at;
            let location = format!("{}/api/v3/repos/{key}/issues/comments/{id}", j.web);
            (201, Some(j.comment(st, &c)), vec![("Location".into(), location)])
        }
        "issues/add-labels" => {
            let Some(i) = find(st, number) else { return reply_error(404, "Not Found") };
            let labels: Vec<String> = match &body {
                Value::Object(o) => o.get("labels").and_then(Value::as_array).into_iter().flatten().filter_map(|l| l.as_str().map(str::to_string)).collect(),
                Value::Array(a) => a.iter().filter_map(|l| l.as_str().map(str::to_string)).collect(),
                _ => vec![],
            };
            let p = &mut st.pulls[i];
            for l in labels {
                if !p.labels.contains(&l) {
                    p.labels.push(l);
                }
            }
            p.updated_at = Utc::now();
            let out = st.pulls[i].labels.iter().map(|l| j.label(&key, l)).collect();
            (200, Some(Value::Array(out)), vec![])
        }
        "pulls/request-reviewers" => {
            let Some(i) = find(st, number) else { return reply_error(404, "Not Found") };
            let strings = |v: &Value| -> Vec<String> { v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_string)).collect() };
            let users = strings(&body["reviewers"]);
            let teams = strings(&body["team_reviewers"]);
            let author = st.pulls[i].user.clone();
            if users.contains(&author) {
                return validation_failed(json!(["Review cannot be requested from pull request author."]));
            }
            let unknown: Vec<&String> = users.iter().filter(|u| !st.repos[&key].collaborators.contains_key(*u)).collect();
            if !unknown.is_empty() {
                return validation_failed(json!([format!("Reviews may only be requested from collaborators. One or more of the users or teams you specified is not a collaborator of the {key} repository.")]));
            }
            let p = &mut st.pulls[i];
            for u in users {
                if !p.requested_reviewers.contains(&u) {
                    p.requested_reviewers.push(u);
                }
            }
            for t in teams {
                if !p.requested_teams.contains(&t) {
                    p.requested_teams.push(t);
                }
            }
            p.updated_at = Utc::now();
            (201, Some(j.pull(st, &st.pulls[i], &bare, false)), vec![])
        }
        "issues/add-assignees" => {
            let Some(i) = find(st, number) else { return reply_error(404, "Not Found") };
            let users: Vec<String> = body["assignees"].as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_string)).collect();
            let p = &mut st.pulls[i];
            for u in users {
                // GitHub silently skips people who cannot be assigned.
                if !p.assignees.contains(&u) {
                    p.assignees.push(u);
                }
            }
            p.updated_at = Utc::now();
            (201, Some(j.issue(st, &st.pulls[i])), vec![])
        }
        "git/delete-ref" => {
            let reference = op.params.get("ref").cloned().unwrap_or_default();
            let Some(branch) = reference.strip_prefix("heads/").map(contract::percent_decode) else {
                return reply_error(422, "Reference does not exist");
            };
            if branch == st.repos[&key].default_branch {
                return reply_error(422, "Cannot delete the default branch");
            }
            let Some(sha) = git::branch_sha(&bare, &branch) else { return reply_error(422, "Reference does not exist") };
            git::git(&bare, &["update-ref", "-d", &format!("refs/heads/{branch}")], "fake");
            // Deleting the head branch closes its open pull requests, as on GitHub.
            let now = Utc::now();
            for p in st.pulls.iter_mut().filter(|p| p.repo == key && p.head == branch) {
                p.last_head_sha = sha.clone();
                if p.open {
                    p.open = false;
                    p.closed_at = Some(now);
                    p.updated_at = now;
                }
            }
            (204, None, vec![])
        }
        "repos/get-collaborator-permission-level" => {
            let who = op.params.get("username").cloned().unwrap_or_default();
            match st.repos[&key].collaborators.get(&who) {
                Some(role) => {
                    (200, Some(j.permission(&who, *role)), vec![])
                }
                None => reply_error(404, &format!("{who} is not a user")),
            }
        }
        "reactions/create-for-issue-comment" => {
            let Some(comment_id) = param_u64(op, "comment_id") else { return reply_error(404, "Not Found") };
            if !st.comments.iter().any(|c| c.id == comment_id && c.repo == key) {
                return reply_error(404, "Not Found");
            }
            let content = body["content"].as_str().unwrap_or("").to_string();
            if let Some(r) = st.reactions.iter().find(|r| r.comment_id == comment_id && r.user == user && r.content == content) {
                let r = r.clone();
                return (200, Some(j.reaction(&r)), vec![]);
            }
            let id = st.id();
            let r = Reaction { id, comment_id, user: user.into(), content };
            st.reactions.push(r.clone());
            (201, Some(j.reaction(&r)), vec![])
        }
        other => {
            st.violations.push(format!("the fake GitHub does not implement {other} (it is in the contract)"));
            reply_error(501, &format!("the fake does not implement {other}"))
        }
    }
}

fn is_ancestor(bare: &Path, a: &str, b: &str) -> bool {
    std::process::Command::new("git")
        .args(["merge-base", "--is-ancestor", a, b])
        .current_dir(bare)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn graphql_call(shared: &Shared, method: &Method, headers: &HeaderMap, raw: &[u8]) -> Response {
    let mut st = shared.state.lock().unwrap();
    let body: Value = serde_json::from_slice(raw).unwrap_or(Value::Null);
    let mut record = Recorded {
        method: method.to_string(),
        path: "/api/graphql".into(),
        query: String::new(),
        body: Some(body.clone()),
        operation: "graphql".into(),
        status: 200,
    };
    let (status, out) = graphql(&mut st, method, headers, &body);
    record.status = status;
    st.requests.push(record);
    respond(shared, &st, status, Some(out), vec![], "graphql")
}

/// Only `enablePullRequestAutoMerge`, checked by hand: there is no OpenAPI for GraphQL.
fn graphql(st: &mut State, method: &Method, headers: &HeaderMap, body: &Value) -> (u16, Value) {
    if method != Method::POST {
        st.violations.push(format!("GraphQL takes POST, got {method}"));
        return (404, error_body("Not Found"));
    }
    if let Some(limit) = st.rate_limits.pop_front() {
        st.rate_limited += 1;
        let (status, body, _) = rate_limited(limit);
        return (status, body.unwrap());
    }
    let user = match caller(st, headers) {
        Caller::User(u) => u,
        _ => return (401, error_body("This endpoint requires you to be authenticated.")),
    };
    let query = body["query"].as_str().unwrap_or("");
    let vars = &body["variables"];
    let mutation_ok = query.trim_start().starts_with("mutation")
        && query.contains("enablePullRequestAutoMerge(input:")
        && query.contains("$pullRequestId: ID!")
        && query.contains("$mergeMethod: PullRequestMergeMethod!");
    if !mutation_ok {
        st.violations.push(format!("GraphQL: the fake knows only the enablePullRequestAutoMerge mutation with ID!/PullRequestMergeMethod! variables, got {query:?}"));
        return (200, json!({"errors": [{"message": "unsupported by the fake"}]}));
    }
    let method_name = vars["mergeMethod"].as_str().unwrap_or("");
    if !matches!(method_name, "MERGE" | "SQUASH" | "REBASE") {
        st.violations.push(format!("GraphQL: mergeMethod {method_name:?} is not a PullRequestMergeMethod"));
        return (200, json!({"errors": [{"message": format!("Variable $mergeMethod of type PullRequestMergeMethod! was provided invalid value {method_name}")}]}));
    }
    let node_id = vars["pullRequestId"].as_str().unwrap_or("");
    let Some(pull) = st.pulls.iter_mut().find(|p| p.node_id == node_id) else {
        return (200, json!({"data": {"enablePullRequestAutoMerge": null}, "errors": [{"type": "NOT_FOUND", "message": format!("Could not resolve to a node with the global id of '{node_id}'")}]}));
    };
    if !pull.open {
        return (200, json!({"data": {"enablePullRequestAutoMerge": null}, "errors": [{"type": "UNPROCESSABLE", "message": "Pull request is in closed state"}]}));
    }
    pull.auto_merge = Some((method_name.to_ascii_lowercase(), user));
    pull.updated_at = Utc::now();
    let enabled_at = Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    (200, json!({"data": {"enablePullRequestAutoMerge": {"pullRequest": {"number": pull.number, "autoMergeRequest": {"enabledAt": enabled_at}}}}}))
}

async fn git_call(shared: &Arc<Shared>, method: &Method, path: &str, query: &str, headers: &HeaderMap, body: Bytes) -> Response {
    let (repo_part, _) = path.split_once(".git/").unwrap();
    let key = repo_part.trim_start_matches('/').to_ascii_lowercase();
    let push = path.ends_with("/git-receive-pack") || query.contains("service=git-receive-pack");
    let user = {
        let mut st = shared.state.lock().unwrap();
        let record = |st: &mut State, status: u16| {
            st.requests.push(Recorded {
                method: method.to_string(),
                path: path.to_string(),
                query: query.to_string(),
                body: None,
                operation: "git".into(),
                status,
            })
        };
        if !st.repos.contains_key(&key) {
            record(&mut st, 404);
            return Response::builder().status(404).body(Body::from("Repository not found.")).unwrap();
        }
        let credentials = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.split_once(':').map(|(u, p)| (u.to_string(), p.to_string())));
        let user = credentials.and_then(|(_, password)| token_user(&st, &password).ok());
        let repo = &st.repos[&key];
        let allowed = user.as_ref().is_some_and(|u| {
            let role = repo.collaborators.get(u).copied().unwrap_or(Role::None);
            let app = u.ends_with("[bot]") && repo.installation.is_some();
            app || if push { role >= Role::Write } else { role >= Role::Read }
        });
        if !allowed {
            record(&mut st, 401);
            return Response::builder()
                .status(401)
                .header("WWW-Authenticate", "Basic realm=\"GitHub\"")
                .body(Body::from("Invalid username or token."))
                .unwrap();
        }
        record(&mut st, 200);
        user.unwrap()
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let (status, out_headers, out) = crate::support::git_http::http_backend(
        &shared.root,
        method.as_str(),
        path,
        query,
        &header("content-type"),
        &header("content-encoding"),
        &header("git-protocol"),
        Some(&user),
        body.to_vec(),
    )
    .await;
    if method == Method::POST && path.ends_with("/git-receive-pack") && status == 200 {
        let mut st = shared.state.lock().unwrap();
        st.pushes += 1;
        synchronize(&mut st, &key, &shared.root.join(format!("{key}.git")));
    }
    let mut b = Response::builder().status(status);
    for (k, v) in out_headers {
        b = b.header(k, v);
    }
    b.body(Body::from(out)).unwrap()
}

// ---- answers, built from the contract's examples ----

struct Json<'a> {
    shared: &'a Shared,
    web: String,
}

fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl Json<'_> {
    fn example(&self, name: &str) -> Value {
        self.shared.contract.example(name)
    }

    /// Moves example URLs (`octocat/Hello-World` on github.com) to `repo` on the fake.
    fn rehome(&self, v: &mut Value, repo: &str) {
        match v {
            Value::String(s) => {
                let api = format!("{}/api/v3", self.web);
                *s = s
                    .replace("https://api.github.com/repos/octocat/Hello-World", &format!("{api}/repos/{repo}"))
                    .replace("https://github.com/octocat/Hello-World", &format!("{}/{repo}", self.web))
                    .replace("https://api.github.com", &api)
                    .replace("https://github.com", &self.web);
            }
            Value::Array(items) => items.iter_mut().for_each(|i| self.rehome(i, repo)),
            Value::Object(map) => map.values_mut().for_each(|i| self.rehome(i, repo)),
            _ => {}
        }
    }

    fn user(&self, login: &str) -> Value {
        let mut u = self.example("pull-request")["user"].clone();
        let id = login.bytes().fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64)) % 1_000_000_000;
        self.rehome(&mut u, "");
        let api = format!("{}/api/v3", self.web);
        u["login"] = json!(login);
        // As on GitHub: `dependabot%5Bbot%5D` in URLs.
        let login = &login.replace('[', "%5B").replace(']', "%5D");
        u["id"] = json!(id);
        u["node_id"] = json!(base64::engine::general_purpose::STANDARD.encode(format!("User:{id}")));
        u["type"] = json!(if login.ends_with("[bot]") { "Bot" } else { "User" });
        u["url"] = json!(format!("{api}/users/{login}"));
        u["html_url"] = json!(format!("{}/{login}", self.web));
        for (k, suffix) in [
            ("followers_url", "followers"),
            ("following_url", "following{/other_user}"),
            ("gists_url", "gists{/gist_id}"),
            ("starred_url", "starred{/owner}{/repo}"),
            ("subscriptions_url", "subscriptions"),
            ("organizations_url", "orgs"),
            ("repos_url", "repos"),
            ("events_url", "events{/privacy}"),
            ("received_events_url", "received_events"),
        ] {
            u[k] = json!(format!("{api}/users/{login}/{suffix}"));
        }
        u
    }

    fn patch_repo(&self, r: &mut Value, st: &State, key: &str) {
        let repo = &st.repos[key];
        let full = format!("{}/{}", repo.owner, repo.name);
        self.rehome(r, &full);
        r["id"] = json!(repo.id);
        r["node_id"] = json!(base64::engine::general_purpose::STANDARD.encode(format!("Repository:{}", repo.id)));
        r["name"] = json!(repo.name);
        r["full_name"] = json!(full);
        r["owner"] = self.user(&repo.owner);
        r["private"] = json!(true);
        r["fork"] = json!(false);
        r["default_branch"] = json!(repo.default_branch);
        r["clone_url"] = json!(format!("{}/{full}.git", self.web));
        r["git_url"] = json!(format!("{}/{full}.git", self.web.replacen("http", "git", 1)));
        r["ssh_url"] = json!(format!("git@127.0.0.1:{full}.git"));
        r["svn_url"] = json!(format!("{}/{full}", self.web));
        if let Some(o) = r.as_object_mut() {
            for k in ["parent", "source", "template_repository", "organization"] {
                o.remove(k);
            }
        }
    }

    fn repo(&self, st: &State, key: &str) -> Value {
        let mut r = self.example("pull-request")["head"]["repo"].clone();
        self.patch_repo(&mut r, st, key);
        r
    }

    fn full_repo(&self, st: &State, key: &str) -> Value {
        let mut r = self.example("full-repository-default-response");
        self.patch_repo(&mut r, st, key);
        r["language"] = json!("YAML");
        r
    }

    fn label(&self, key: &str, name: &str) -> Value {
        let id = name.bytes().fold(11u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64)) % 1_000_000_000;
        json!({
            "id": id,
            "node_id": base64::engine::general_purpose::STANDARD.encode(format!("Label:{id}")),
            "url": format!("{}/api/v3/repos/{key}/labels/{}", self.web, name.replace(' ', "%20")),
            "name": name,
            "description": "",
            "color": "ededed",
            "default": false,
        })
    }

    fn team(&self, owner: &str, slug: &str) -> Value {
        let mut t = self.example("pull-request")["requested_teams"][0].clone();
        self.rehome(&mut t, "");
        let id = slug.bytes().fold(13u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64)) % 1_000_000_000;
        t["id"] = json!(id);
        t["node_id"] = json!(base64::engine::general_purpose::STANDARD.encode(format!("Team:{id}")));
        t["slug"] = json!(slug);
        t["name"] = json!(slug);
        t["url"] = json!(format!("{}/api/v3/teams/{id}", self.web));
        t["html_url"] = json!(format!("{}/orgs/{owner}/teams/{slug}", self.web));
        t["members_url"] = json!(format!("{}/api/v3/teams/{id}/members{{/member}}", self.web));
        t["repositories_url"] = json!(format!("{}/api/v3/teams/{id}/repos", self.web));
        t["parent"] = Value::Null;
        t["type"] = json!("organization");
        t
    }

    fn pull(&self, st: &State, p: &Pull, bare: &Path, full: bool) -> Value {
        let mut v = if full { self.example("pull-request") } else { self.example("pull-request-simple-items") };
        let repo = &st.repos[&p.repo];
        let full_name = format!("{}/{}", repo.owner, repo.name);
        self.rehome(&mut v, &full_name);
        let api = format!("{}/api/v3/repos/{full_name}", self.web);
        let n = p.number;
        let head_sha = git::branch_sha(bare, &p.head).unwrap_or_else(|| p.last_head_sha.clone());
        let base_sha = git::branch_sha(bare, &p.base).unwrap_or_default();
        v["url"] = json!(format!("{api}/pulls/{n}"));
        v["id"] = json!(p.id);
        v["node_id"] = json!(p.node_id);
        v["html_url"] = json!(format!("{}/{full_name}/pull/{n}", self.web));
        v["diff_url"] = json!(format!("{}/{full_name}/pull/{n}.diff", self.web));
        v["patch_url"] = json!(format!("{}/{full_name}/pull/{n}.patch", self.web));
        v["issue_url"] = json!(format!("{api}/issues/{n}"));
        v["commits_url"] = json!(format!("{api}/pulls/{n}/commits"));
        v["review_comments_url"] = json!(format!("{api}/pulls/{n}/comments"));
        v["comments_url"] = json!(format!("{api}/issues/{n}/comments"));
        v["statuses_url"] = json!(format!("{api}/statuses/{head_sha}"));
        v["number"] = json!(n);
        v["state"] = json!(if p.open { "open" } else { "closed" });
        v["locked"] = json!(false);
        v["active_lock_reason"] = Value::Null;
        v["title"] = json!(p.title);
        v["user"] = self.user(&p.user);
        v["body"] = json!(p.body);
        v["labels"] = Value::Array(p.labels.iter().map(|l| self.label(&full_name, l)).collect());
        v["milestone"] = Value::Null;
        v["created_at"] = json!(ts(p.created_at));
        v["updated_at"] = json!(ts(p.updated_at));
        v["closed_at"] = json!(p.closed_at.map(ts));
        v["merged_at"] = json!(p.merged_at.map(ts));
        v["merge_commit_sha"] = json!(p.merge_commit_sha);
        v["assignee"] = p.assignees.first().map(|a| self.user(a)).unwrap_or(Value::Null);
        v["assignees"] = Value::Array(p.assignees.iter().map(|a| self.user(a)).collect());
        v["requested_reviewers"] = Value::Array(p.requested_reviewers.iter().map(|a| self.user(a)).collect());
        v["requested_teams"] = Value::Array(p.requested_teams.iter().map(|t| self.team(&repo.owner, t)).collect());
        v["draft"] = json!(p.draft);
        v["author_association"] = json!(if p.user.ends_with("[bot]") { "NONE" } else { "MEMBER" });
        v["auto_merge"] = match &p.auto_merge {
            Some((method, by)) => json!({"enabled_by": self.user(by), "merge_method": method, "commit_title": p.title, "commit_message": ""}),
            None => Value::Null,
        };
        let repo_json = self.repo(st, &p.repo);
        for (side, branch, sha) in [("head", &p.head, &head_sha), ("base", &p.base, &base_sha)] {
            v[side] = json!({
                "label": format!("{}:{branch}", repo.owner),
                "ref": branch,
                "sha": sha,
                "user": self.user(&repo.owner),
                "repo": repo_json,
            });
        }
        if let Some(links) = v.get_mut("_links").and_then(Value::as_object_mut) {
            let html = format!("{}/{full_name}/pull/{n}", self.web);
            for (k, href) in [
                ("self", format!("{api}/pulls/{n}")),
                ("html", html),
                ("issue", format!("{api}/issues/{n}")),
                ("comments", format!("{api}/issues/{n}/comments")),
                ("review_comments", format!("{api}/pulls/{n}/comments")),
                ("review_comment", format!("{api}/pulls/comments{{/number}}")),
                ("commits", format!("{api}/pulls/{n}/commits")),
                ("statuses", format!("{api}/statuses/{head_sha}")),
            ] {
                links.insert(k.into(), json!({"href": href}));
            }
        }
        if full {
            let merged = p.merged_at.is_some();
            v["merged"] = json!(merged);
            v["mergeable"] = if p.open { json!(true) } else { Value::Null };
            v["rebaseable"] = if p.open { json!(true) } else { Value::Null };
            v["mergeable_state"] = json!(if p.open { "clean" } else { "unknown" });
            v["merged_by"] = p.merged_by.as_ref().map(|u| self.user(u)).unwrap_or(Value::Null);
            v["comments"] = json!(st.comments.iter().filter(|c| c.repo == p.repo && c.number == n).count());
            v["review_comments"] = json!(0);
            v["maintainer_can_modify"] = json!(false);
            v["commits"] = json!(1);
            v["additions"] = json!(1);
            v["deletions"] = json!(1);
            v["changed_files"] = json!(1);
        }
        v
    }

    fn issue(&self, st: &State, p: &Pull) -> Value {
        let mut v = self.example("issue");
        let repo = &st.repos[&p.repo];
        let full_name = format!("{}/{}", repo.owner, repo.name);
        self.rehome(&mut v, &full_name);
        let api = format!("{}/api/v3/repos/{full_name}", self.web);
        let n = p.number;
        v["id"] = json!(p.id);
        v["node_id"] = json!(p.node_id);
        v["url"] = json!(format!("{api}/issues/{n}"));
        v["repository_url"] = json!(api);
        v["labels_url"] = json!(format!("{api}/issues/{n}/labels{{/name}}"));
        v["comments_url"] = json!(format!("{api}/issues/{n}/comments"));
        v["events_url"] = json!(format!("{api}/issues/{n}/events"));
        v["html_url"] = json!(format!("{}/{full_name}/pull/{n}", self.web));
        v["number"] = json!(n);
        v["state"] = json!(if p.open { "open" } else { "closed" });
        v["title"] = json!(p.title);
        v["body"] = json!(p.body);
        v["user"] = self.user(&p.user);
        v["labels"] = Value::Array(p.labels.iter().map(|l| self.label(&full_name, l)).collect());
        v["assignee"] = p.assignees.first().map(|a| self.user(a)).unwrap_or(Value::Null);
        v["assignees"] = Value::Array(p.assignees.iter().map(|a| self.user(a)).collect());
        v["milestone"] = Value::Null;
        v["locked"] = json!(false);
        v["comments"] = json!(st.comments.iter().filter(|c| c.repo == p.repo && c.number == n).count());
        v["pull_request"] = json!({
            "url": format!("{api}/pulls/{n}"),
            "html_url": format!("{}/{full_name}/pull/{n}", self.web),
            "diff_url": format!("{}/{full_name}/pull/{n}.diff", self.web),
            "patch_url": format!("{}/{full_name}/pull/{n}.patch", self.web),
            "merged_at": p.merged_at.map(ts),
        });
        v["closed_at"] = json!(p.closed_at.map(ts));
        v["created_at"] = json!(ts(p.created_at));
        v["updated_at"] = json!(ts(p.updated_at));
        v["closed_by"] = Value::Null;
        v["author_association"] = json!("MEMBER");
        if let Some(o) = v.as_object_mut() {
            o.remove("repository");
        }
        v
    }

    fn comment(&self, st: &State, c: &IssueComment) -> Value {
        let mut v = self.example("issue-comment");
        let repo = &st.repos[&c.repo];
        let full_name = format!("{}/{}", repo.owner, repo.name);
        self.rehome(&mut v, &full_name);
        let api = format!("{}/api/v3/repos/{full_name}", self.web);
        v["id"] = json!(c.id);
        v["node_id"] = json!(base64::engine::general_purpose::STANDARD.encode(format!("IssueComment:{}", c.id)));
        v["url"] = json!(format!("{api}/issues/comments/{}", c.id));
        v["html_url"] = json!(format!("{}/{full_name}/pull/{}#issuecomment-{}", self.web, c.number, c.id));
        v["issue_url"] = json!(format!("{api}/issues/{}", c.number));
        v["body"] = json!(c.body);
        v["user"] = self.user(&c.user);
        v["created_at"] = json!(ts(c.created_at));
        v["updated_at"] = json!(ts(c.created_at));
        v["author_association"] = json!(if c.user.ends_with("[bot]") { "NONE" } else { "MEMBER" });
        v
    }

    fn reaction(&self, r: &Reaction) -> Value {
        let mut v = self.example("reaction");
        self.rehome(&mut v, "");
        v["id"] = json!(r.id);
        v["node_id"] = json!(base64::engine::general_purpose::STANDARD.encode(format!("Reaction:{}", r.id)));
        v["user"] = self.user(&r.user);
        v["content"] = json!(r.content);
        v["created_at"] = json!(ts(Utc::now()));
        v
    }

    fn permission(&self, login: &str, role: Role) -> Value {
        let (permission, role_name) = role.answer();
        let mut v = self.example("repository-collaborator-permission-response-if-user-has-admin-permissions");
        self.rehome(&mut v, "");
        let user = self.user(login);
        if let (Some(target), Some(src)) = (v["user"].as_object_mut(), user.as_object()) {
            for (k, val) in src {
                target.insert(k.clone(), val.clone());
            }
        }
        v["user"]["role_name"] = json!(role_name);
        v["user"]["permissions"] = json!({
            "admin": role >= Role::Admin,
            "maintain": role >= Role::Maintain,
            "push": role >= Role::Write,
            "triage": role >= Role::Triage,
            "pull": role >= Role::Read,
        });
        v["permission"] = json!(permission);
        v["role_name"] = json!(role_name);
        v
    }

    fn installation(&self, id: u64, app_id: u64, slug: &str, owner: &str) -> Value {
        let mut v = self.example("installation");
        self.rehome(&mut v, "");
        v["id"] = json!(id);
        v["app_id"] = json!(app_id);
        v["app_slug"] = json!(slug);
        v["account"] = self.user(owner);
        v["target_type"] = json!("Organization");
        v["access_tokens_url"] = json!(format!("{}/api/v3/app/installations/{id}/access_tokens", self.web));
        v["repositories_url"] = json!(format!("{}/api/v3/installation/repositories", self.web));
        v["html_url"] = json!(format!("{}/organizations/{owner}/settings/installations/{id}", self.web));
        v
    }

    fn installation_token(&self, token: &str, expires_at: DateTime<Utc>) -> Value {
        let mut v = self.example("installation-token");
        v["token"] = json!(token);
        v["expires_at"] = json!(ts(expires_at));
        v["repository_selection"] = json!("selected");
        v["permissions"] = json!({"contents": "write", "pull_requests": "write", "issues": "write", "metadata": "read"});
        if let Some(o) = v.as_object_mut() {
            o.remove("repositories");
        }
        v
    }
}
