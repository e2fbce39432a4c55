//! A stateful fake GitLab on loopback, for driver and scenario tests: REST at `/api/v4/...`, git
//! smart HTTP at `/<full path>.git/...` through `git http-backend`, with `PRIVATE-TOKEN` auth.
//!
//! It follows GitLab's REST API v4 as GitLab documents it (docs.gitlab.com/api, and the Grape
//! parameter declarations behind those pages): projects addressed by numeric id or URL-encoded
//! full path (nested groups), merge requests with per-project IIDs, notes (user and system),
//! award emoji on notes, project events, members with access levels inherited from groups,
//! users by username, branch deletion, offset pagination (`page`, `per_page`, the `x-*` headers
//! and `Link`). Its answers use GitLab's field names and types; `tests/gitlab_contract.rs`
//! drives it with python-gitlab, an independent, well-kept client, to keep those answers honest.
//!
//! Strict where GitLab is lenient: GitLab ignores parameters it does not declare, the fake
//! records them; an unknown route, a parameter GitLab does not document for the route, one the
//! fake does not implement, a date given where GitLab takes `YYYY-MM-DD`, or an unencoded path
//! is a violation, and [`FakeGitlab::finish`] (or dropping the fake) fails the test.
//!
//! Model choices where GitLab depends on its configuration, stated once:
//! - every project is private; its default branch is protected (push and merge: Maintainer),
//!   as GitLab protects a new project's default branch; the bot is a Developer unless told;
//! - every merge request head has a pipeline that is still running, so `auto_merge` /
//!   `merge_when_pipeline_succeeds` is accepted and stays pending, and an immediate merge of a
//!   non-draft merge request merges (a real merge commit through git);
//! - GitLab's side effects are kept: system notes for state, title, description, label,
//!   assignee, reviewer and push changes; `commented on` events for user notes only (GitLab
//!   records none for system notes); `opened`/`closed`/`reopened`/`accepted` and push events.
//!
//! Test controls are plain methods: create projects, add users and members, push as someone
//! else, open/merge/close/reopen merge requests as people, post notes (and system notes), inject
//! faults and rate limits, read every request made.

mod api;
pub mod git;
mod json;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde_json::Value;

/// The personal access token every fake accepts, and whose user it is.
pub const TOKEN: &str = "glpat-fake-bot-token-0123456789";
pub const BOT_USER: &str = "image-bot";

/// A member's role, with GitLab's numeric access levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Access {
    Guest = 10,
    Planner = 15,
    Reporter = 20,
    Developer = 30,
    Maintainer = 40,
    Owner = 50,
}

impl Access {
    pub fn level(self) -> u64 {
        self as u64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MrState {
    Opened,
    Closed,
    Merged,
}

impl MrState {
    pub fn as_str(self) -> &'static str {
        match self {
            MrState::Opened => "opened",
            MrState::Closed => "closed",
            MrState::Merged => "merged",
        }
    }
}

/// A merge request as the fake holds it (for assertions).
#[derive(Debug, Clone)]
pub struct MergeRequest {
    /// Instance-wide id.
    pub id: u64,
    /// Per-project id (`!iid`).
    pub iid: u64,
    /// The project's full path, as created.
    pub project: String,
    pub author: String,
    pub title: String,
    pub description: Option<String>,
    pub source_branch: String,
    pub target_branch: String,
    pub state: MrState,
    /// As set; answers sort them by title, as GitLab does.
    pub labels: Vec<String>,
    pub assignees: Vec<String>,
    pub reviewers: Vec<String>,
    /// Auto-merge is set (`auto_merge` / `merge_when_pipeline_succeeds`), and by whom.
    pub merge_when_pipeline_succeeds: bool,
    pub merge_user: Option<String>,
    pub squash: bool,
    pub force_remove_source_branch: bool,
    pub merged_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub closed_by: Option<String>,
    pub merge_commit_sha: Option<String>,
    pub squash_commit_sha: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The source branch's head when last seen (GitLab keeps it when the branch goes).
    pub sha: String,
}

impl MergeRequest {
    /// GitLab derives `draft` from the title: `Draft:`, `[Draft]` or `(Draft)` at its start,
    /// in any case.
    pub fn draft(&self) -> bool {
        is_draft_title(&self.title)
    }

    pub fn is_open(&self) -> bool {
        self.state == MrState::Opened
    }
}

pub fn is_draft_title(title: &str) -> bool {
    let t = title.trim_start().to_ascii_lowercase();
    t.starts_with("draft:") || t.starts_with("[draft]") || t.starts_with("(draft)")
}

/// A note on a merge request.
#[derive(Debug, Clone)]
pub struct Note {
    pub id: u64,
    pub project: String,
    pub mr_iid: u64,
    pub author: String,
    pub body: String,
    /// A note GitLab writes itself (`closed`, `added 1 commit`...).
    pub system: bool,
    /// Written as a thread (`type: "DiscussionNote"`) rather than a plain comment.
    pub discussion: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct Award {
    pub id: u64,
    pub note_id: u64,
    pub user: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// What an event is about.
#[derive(Debug, Clone)]
enum Target {
    Note { id: u64, discussion: bool },
    MergeRequest { iid: u64 },
    Push { branch: String, from: String, to: String, kind: PushKind, commits: usize, title: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PushKind {
    New,
    To,
    Deleted,
}

#[derive(Debug, Clone)]
struct Event {
    id: u64,
    project: String,
    author: String,
    /// GitLab's action key (`commented`, `created`, `closed`, `reopened`, `merged`, `pushed`).
    action: &'static str,
    target: Target,
    created_at: DateTime<Utc>,
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Without the `/api/v4` prefix for REST (`/projects/platform%2Fgitops/merge_requests`);
    /// git paths as they are.
    pub path: String,
    pub query: String,
    /// The parameters as GitLab reads them: query string and body (JSON or form) together.
    pub params: Value,
    /// `merge_requests/list`, `notes/create`..., `git`, or `unknown`.
    pub operation: String,
    pub status: u16,
}

impl Recorded {
    /// A REST request that changes something.
    pub fn is_write(&self) -> bool {
        self.operation != "git" && self.method != "GET"
    }
}

struct Project {
    id: u64,
    /// Full path as created (`platform/apps/gitops`).
    path: String,
    default_branch: String,
    /// Protected branches: the lowest level allowed to push and merge.
    protected: BTreeMap<String, Access>,
    next_iid: u64,
    created_at: DateTime<Utc>,
}

struct Group {
    id: u64,
    path: String,
}

#[derive(Clone)]
struct User {
    id: u64,
    username: String,
}

struct Fault {
    operation: String,
    nth: usize,
    status: u16,
}

#[derive(Default)]
struct Counters {
    project: u64,
    group: u64,
    user: u64,
    mr: u64,
    note: u64,
    award: u64,
    event: u64,
}

#[derive(Default)]
struct State {
    /// By lowercase full path.
    projects: BTreeMap<String, Project>,
    groups: BTreeMap<String, Group>,
    users: Vec<User>,
    /// By lowercase project or group path, then username.
    members: HashMap<String, BTreeMap<String, Access>>,
    tokens: HashMap<String, String>,
    mrs: Vec<MergeRequest>,
    notes: Vec<Note>,
    awards: Vec<Award>,
    events: Vec<Event>,
    ids: Counters,
    requests: Vec<Recorded>,
    violations: Vec<String>,
    faults: Vec<Fault>,
    lost: Vec<(String, usize)>,
    calls: HashMap<String, usize>,
    rate_limits: Vec<u64>,
    rate_limited: usize,
    pushes: usize,
    /// Every timestamp the fake hands out is later than the one before (GitLab's are in
    /// milliseconds; two writes in the same millisecond would tie).
    last_stamp: Option<DateTime<Utc>>,
    /// How far the fake's clock is ahead of the machine's ([`FakeGitlab::advance_clock`]).
    clock_offset: chrono::Duration,
    /// The next merge request listings answer an empty page (a stale replica).
    hidden_listings: usize,
}

/// GitLab's `ThrottledTouch::TOUCH_INTERVAL`: a note touches its merge request only when the
/// merge request's `updated_at` is older than this.
const TOUCH_INTERVAL: chrono::Duration = chrono::Duration::seconds(60);

impl State {
    /// The fake's time (the machine's, moved on by [`FakeGitlab::advance_clock`]).
    pub(super) fn clock(&self) -> DateTime<Utc> {
        Utc::now() + self.clock_offset
    }

    fn now(&mut self) -> DateTime<Utc> {
        let mut now = self.clock();
        now = DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap();
        if let Some(last) = self.last_stamp
            && now <= last
        {
            now = last + chrono::Duration::milliseconds(1);
        }
        self.last_stamp = Some(now);
        now
    }

    fn project(&self, path: &str) -> &Project {
        self.projects.get(&path.to_ascii_lowercase()).unwrap_or_else(|| panic!("no project {path}"))
    }

    fn user_id(&self, username: &str) -> Option<u64> {
        self.users.iter().find(|u| u.username.eq_ignore_ascii_case(username)).map(|u| u.id)
    }

    fn ensure_user(&mut self, username: &str) -> u64 {
        if let Some(id) = self.user_id(username) {
            return id;
        }
        self.ids.user += 1;
        let id = self.ids.user;
        self.users.push(User { id, username: username.to_string() });
        id
    }

    /// The user's access to a project: the highest of its own membership and its groups'.
    fn access(&self, project: &str, username: &str) -> Option<Access> {
        let key = project.to_ascii_lowercase();
        let mut best: Option<Access> = None;
        let mut scope = key.as_str();
        loop {
            if let Some(level) = self.members.get(scope).and_then(|m| m.get(&username.to_ascii_lowercase())) {
                best = best.max(Some(*level));
            }
            match scope.rsplit_once('/') {
                Some((parent, _)) => scope = parent,
                None => break,
            }
        }
        best
    }

    fn mr_index(&self, project: &str, iid: u64) -> Option<usize> {
        let key = project.to_ascii_lowercase();
        self.mrs.iter().position(|m| m.project.to_ascii_lowercase() == key && m.iid == iid)
    }

    fn event(&mut self, project: &str, author: &str, action: &'static str, target: Target, at: DateTime<Utc>) {
        self.ids.event += 1;
        let id = self.ids.event;
        self.events.push(Event { id, project: project.to_string(), author: author.to_string(), action, target, created_at: at });
    }

    /// A note on merge request `iid`; touches the merge request as GitLab's notes do, through
    /// `ThrottledTouch`: not when the merge request was updated less than a minute ago. User
    /// notes also leave a `commented on` event (a few milliseconds later: GitLab writes it
    /// after the note).
    fn add_note(&mut self, project: &str, iid: u64, author: &str, body: &str, system: bool, discussion: bool) -> Note {
        let at = self.now();
        self.ids.note += 1;
        let note = Note {
            id: self.ids.note,
            project: project.to_string(),
            mr_iid: iid,
            author: author.to_string(),
            body: body.to_string(),
            system,
            discussion,
            created_at: at,
            updated_at: at,
        };
        self.notes.push(note.clone());
        if let Some(i) = self.mr_index(project, iid)
            && at - self.mrs[i].updated_at > TOUCH_INTERVAL
        {
            self.mrs[i].updated_at = at;
        }
        if !system {
            let later = self.now();
            self.event(project, author, "commented", Target::Note { id: note.id, discussion }, later);
        }
        note
    }

    /// Rewrites the pre-receive hook's list of who may push to each protected branch.
    fn write_protection(&self, root: &Path, project: &str) {
        let p = self.project(project);
        let dir = root.join(format!("{}.git", p.path)).join("fake-gitlab-protected");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut people: Vec<&String> = Vec::new();
        let mut scope = p.path.to_ascii_lowercase();
        loop {
            if let Some(m) = self.members.get(&scope) {
                people.extend(m.keys());
            }
            match scope.rsplit_once('/') {
                Some((parent, _)) => scope = parent.to_string(),
                None => break,
            }
        }
        for (branch, level) in &p.protected {
            let allowed: Vec<String> = people
                .iter()
                .filter(|u| self.access(&p.path, u).is_some_and(|a| a >= *level))
                .map(|u| u.to_string())
                .collect();
            let name = branch.replace('%', "%25").replace('/', "%2F");
            std::fs::write(dir.join(name), allowed.join("\n") + "\n").unwrap();
        }
    }

    /// After the heads of a project moved (a push over HTTP or a test control): push events,
    /// and every open merge request whose source branch moved takes the new head, is touched
    /// and gets GitLab's `added N commits` system note.
    fn pushed(&mut self, bare: &Path, project: &str, before: &BTreeMap<String, String>, after: &BTreeMap<String, String>, who: &str) {
        let mut changed: Vec<(String, Option<String>, Option<String>)> = Vec::new();
        for (branch, sha) in after {
            if before.get(branch) != Some(sha) {
                changed.push((branch.clone(), before.get(branch).cloned(), Some(sha.clone())));
            }
        }
        for (branch, sha) in before {
            if !after.contains_key(branch) {
                changed.push((branch.clone(), Some(sha.clone()), None));
            }
        }
        for (branch, from, to) in changed {
            let zero = "0".repeat(40);
            let kind = match (&from, &to) {
                (None, _) => PushKind::New,
                (_, None) => PushKind::Deleted,
                _ => PushKind::To,
            };
            let (commits, title) = match &to {
                Some(to) => {
                    let range = match &from {
                        Some(from) if git::is_ancestor(bare, from, to) => format!("{from}..{to}"),
                        _ => to.clone(),
                    };
                    (git::count(bare, &range).min(20), git::subject(bare, to))
                }
                None => (0, String::new()),
            };
            let at = self.now();
            let target = Target::Push {
                branch: branch.clone(),
                from: from.clone().unwrap_or_else(|| zero.clone()),
                to: to.clone().unwrap_or_else(|| zero.clone()),
                kind,
                commits,
                title,
            };
            self.event(project, who, "pushed", target, at);
            let Some(to) = to else { continue };
            let key = project.to_ascii_lowercase();
            let moved: Vec<u64> = self
                .mrs
                .iter()
                .filter(|m| m.project.to_ascii_lowercase() == key && m.is_open() && m.source_branch == branch && m.sha != to)
                .map(|m| m.iid)
                .collect();
            for iid in moved {
                let i = self.mr_index(project, iid).unwrap();
                let old = self.mrs[i].sha.clone();
                let n = if git::is_ancestor(bare, &old, &to) { git::count(bare, &format!("{old}..{to}")) } else { 1 };
                self.mrs[i].sha = to.clone();
                let body = format!("added {n} commit{}\n\n<ul><li>{} - {}</li></ul>", if n == 1 { "" } else { "s" }, &to[..8], git::subject(bare, &to));
                self.add_note(project, iid, who, &body, true, false);
                let at = self.now();
                self.mrs[i].updated_at = at;
            }
        }
    }
}

struct Shared {
    state: Mutex<State>,
    root: PathBuf,
    /// `http://127.0.0.1:PORT`
    web: Mutex<String>,
}

impl Shared {
    fn bare(&self, path: &str) -> PathBuf {
        self.root.join(format!("{path}.git"))
    }
}

/// The fake server; stops when dropped.
pub struct FakeGitlab {
    shared: Arc<Shared>,
    addr: SocketAddr,
    finished: AtomicBool,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _root: tempfile::TempDir,
}

impl Default for FakeGitlab {
    fn default() -> Self {
        Self::start()
    }
}

impl FakeGitlab {
    /// Starts the fake on a free loopback port (its own thread and runtime), with the bot's
    /// user and token.
    pub fn start() -> FakeGitlab {
        let root = tempfile::Builder::new().prefix("fake-gitlab-").tempdir().unwrap();
        let mut state = State {
            ids: Counters { project: 100, group: 20, user: 0, mr: 1000, note: 5000, award: 9000, event: 20000 },
            ..State::default()
        };
        // The instance's administrator (id 1, as on every GitLab), then the bot.
        state.ensure_user("root");
        state.ensure_user(BOT_USER);
        state.tokens.insert(TOKEN.into(), BOT_USER.into());
        let shared = Arc::new(Shared { state: Mutex::new(state), root: root.path().to_path_buf(), web: Mutex::new(String::new()) });
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let server_shared = shared.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let app = axum::Router::new().fallback(api::serve).with_state(server_shared);
                tokio::select! {
                    _ = axum::serve(listener, app) => {}
                    _ = shutdown_rx => {}
                }
            });
        });
        let addr = addr_rx.recv().expect("the fake GitLab did not start");
        *shared.web.lock().unwrap() = format!("http://{addr}");
        FakeGitlab { shared, addr, finished: AtomicBool::new(false), shutdown: Some(shutdown), thread: Some(thread), _root: root }
    }

    /// The instance URL, as `--gitlab-url` takes it (the API is at `/api/v4`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn api_url(&self) -> String {
        format!("http://{}/api/v4", self.addr)
    }

    /// `http://127.0.0.1:PORT/group/sub/project.git`
    pub fn git_url(&self, project: &str) -> String {
        format!("http://{}/{project}.git", self.addr)
    }

    /// The project's web page, `http://127.0.0.1:PORT/group/sub/project`.
    pub fn web_url(&self, project: &str) -> String {
        format!("http://{}/{project}", self.addr)
    }

    /// The bare repository behind a project.
    pub fn bare_path(&self, project: &str) -> PathBuf {
        let path = self.state().project(project).path.clone();
        self.shared.bare(&path)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap()
    }

    // ---- projects and git ----

    /// Creates the project `group/.../name` (its groups too) with one commit of `files` on
    /// `main`, the default branch, protected for Maintainers. The bot is a Developer of it.
    /// Returns the commit.
    pub fn create_project(&self, path: &str, files: &[(&str, &str)]) -> String {
        assert!(path.contains('/'), "a GitLab project lives in a namespace: group/name");
        let bare = self.shared.bare(path);
        std::fs::create_dir_all(&bare).unwrap();
        git::git(&bare, &["init", "-q", "--bare", "-b", "main"], "fake");
        git::install_hooks(&bare);
        let files: Vec<(&str, Option<&str>)> = files.iter().map(|(p, c)| (*p, Some(*c))).collect();
        let sha = git::commit_files(&bare, "main", None, &files, "Initial commit", "root");
        let mut st = self.state();
        let mut scope = String::new();
        for part in path.split('/').take(path.split('/').count() - 1) {
            scope = if scope.is_empty() { part.to_string() } else { format!("{scope}/{part}") };
            if !st.groups.contains_key(&scope.to_ascii_lowercase()) {
                st.ids.group += 1;
                let id = st.ids.group;
                st.groups.insert(scope.to_ascii_lowercase(), Group { id, path: scope.clone() });
            }
        }
        st.ids.project += 1;
        let id = st.ids.project;
        let now = st.now();
        st.projects.insert(
            path.to_ascii_lowercase(),
            Project {
                id,
                path: path.to_string(),
                default_branch: "main".into(),
                protected: BTreeMap::from([("main".to_string(), Access::Maintainer)]),
                next_iid: 1,
                created_at: now,
            },
        );
        st.ensure_user(BOT_USER);
        st.members.entry(path.to_ascii_lowercase()).or_default().insert(BOT_USER.into(), Access::Developer);
        st.write_protection(&self.shared.root, path);
        sha
    }

    /// The project's numeric id.
    pub fn project_id(&self, path: &str) -> u64 {
        self.state().project(path).id
    }

    /// Makes `branch` (which must exist) the default branch, for the API and for git's `HEAD`.
    pub fn set_default_branch(&self, project: &str, branch: &str) {
        git::git(&self.bare_path(project), &["symbolic-ref", "HEAD", &format!("refs/heads/{branch}")], "fake");
        let mut st = self.state();
        st.projects.get_mut(&project.to_ascii_lowercase()).unwrap().default_branch = branch.into();
    }

    /// Protects `branch` (pushes and merges need `level`), or unprotects it with `None`.
    pub fn protect_branch(&self, project: &str, branch: &str, level: Option<Access>) {
        let mut st = self.state();
        let p = st.projects.get_mut(&project.to_ascii_lowercase()).unwrap();
        match level {
            Some(l) => p.protected.insert(branch.into(), l),
            None => p.protected.remove(branch),
        };
        st.write_protection(&self.shared.root, project);
    }

    /// Commits `files` (`None` deletes) on `branch` as `author`, as a person pushing would
    /// (the branch is created from the default branch when missing). Returns the commit.
    pub fn push_commit(&self, project: &str, branch: &str, files: &[(&str, Option<&str>)], author: &str) -> String {
        let bare = self.bare_path(project);
        let default = self.state().project(project).default_branch.clone();
        let before = git::heads(&bare);
        let sha = git::commit_files(&bare, branch, Some(&default), files, &format!("Change by {author}"), author);
        let after = git::heads(&bare);
        let mut st = self.state();
        st.ensure_user(author);
        st.pushed(&bare, project, &before, &after, author);
        sha
    }

    /// Points `branch` at `sha` (a quick way to make many branches).
    pub fn create_branch(&self, project: &str, branch: &str, sha: &str) {
        let bare = self.bare_path(project);
        let before = git::heads(&bare);
        git::git(&bare, &["update-ref", &format!("refs/heads/{branch}"), sha], "fake");
        let after = git::heads(&bare);
        self.state().pushed(&bare, project, &before, &after, "root");
    }

    /// The commit `branch` points to, if it exists.
    pub fn branch_sha(&self, project: &str, branch: &str) -> Option<String> {
        git::branch_sha(&self.bare_path(project), branch)
    }

    /// The content of `path` at the tip of `branch`.
    pub fn file_at(&self, project: &str, branch: &str, path: &str) -> Option<String> {
        let out = std::process::Command::new("git")
            .args(["show", &format!("refs/heads/{branch}:{path}")])
            .current_dir(self.bare_path(project))
            .output()
            .unwrap();
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Successful `git push`es received over smart HTTP.
    pub fn pushes(&self) -> usize {
        self.state().pushes
    }

    // ---- people ----

    /// Registers a user (if new); returns their id.
    pub fn add_user(&self, username: &str) -> u64 {
        self.state().ensure_user(username)
    }

    pub fn user_id(&self, username: &str) -> Option<u64> {
        self.state().user_id(username)
    }

    /// A token for `username` (registered if new).
    pub fn add_token(&self, token: &str, username: &str) {
        let mut st = self.state();
        st.ensure_user(username);
        st.tokens.insert(token.into(), username.into());
    }

    /// Makes `username` a member of a project or a group (`platform`, `platform/apps`) with
    /// `level`; members of a group are members of every project under it.
    pub fn add_member(&self, path: &str, username: &str, level: Access) {
        let mut st = self.state();
        st.ensure_user(username);
        st.members.entry(path.to_ascii_lowercase()).or_default().insert(username.to_ascii_lowercase(), level);
        let projects: Vec<String> = st
            .projects
            .values()
            .filter(|p| {
                let p = p.path.to_ascii_lowercase();
                p == path.to_ascii_lowercase() || p.starts_with(&format!("{}/", path.to_ascii_lowercase()))
            })
            .map(|p| p.path.clone())
            .collect();
        for p in projects {
            st.write_protection(&self.shared.root, &p);
        }
    }

    // ---- merge requests and notes ----

    pub fn mrs(&self, project: &str) -> Vec<MergeRequest> {
        let key = project.to_ascii_lowercase();
        self.state().mrs.iter().filter(|m| m.project.to_ascii_lowercase() == key).cloned().collect()
    }

    pub fn mr(&self, project: &str, iid: u64) -> MergeRequest {
        self.mrs(project).into_iter().find(|m| m.iid == iid).unwrap_or_else(|| panic!("no merge request !{iid} in {project}"))
    }

    /// Opens a merge request as `author` (a person's), from `source` into `target`.
    pub fn open_mr(&self, project: &str, author: &str, source: &str, target: &str, title: &str) -> u64 {
        let sha = self.branch_sha(project, source).unwrap_or_else(|| panic!("no branch {source} in {project}"));
        let mut st = self.state();
        st.ensure_user(author);
        api::new_mr(&mut st, project, author, title, None, source, target, sha).iid
    }

    /// Merges the merge request as `by`: a real merge commit on the target branch, with
    /// GitLab's message. Returns the merge commit.
    pub fn merge_mr(&self, project: &str, iid: u64, by: &str) -> String {
        let mr = self.mr(project, iid);
        assert!(mr.is_open(), "merge request !{iid} is not open");
        let bare = self.bare_path(project);
        let before = git::heads(&bare);
        let path = self.state().project(project).path.clone();
        let sha = git::merge(&bare, &mr.target_branch, &mr.source_branch, &git::merge_message(&mr, &path), by)
            .unwrap_or_else(|e| panic!("merge request !{iid} does not merge: {e}"));
        let after = git::heads(&bare);
        let mut st = self.state();
        st.ensure_user(by);
        api::mark_merged(&mut st, project, iid, by, sha.clone(), None);
        st.pushed(&bare, project, &before, &after, by);
        sha
    }

    /// Closes a merge request as `by`.
    pub fn close_mr(&self, project: &str, iid: u64, by: &str) {
        let mut st = self.state();
        st.ensure_user(by);
        assert!(api::close(&mut st, project, iid, by), "merge request !{iid} is not open");
    }

    /// Reopens a closed merge request as `by` (GitLab refuses while its source branch is gone).
    pub fn reopen_mr(&self, project: &str, iid: u64, by: &str) {
        let bare = self.bare_path(project);
        let mut st = self.state();
        st.ensure_user(by);
        assert!(api::reopen(&mut st, &bare, project, iid, by), "merge request !{iid} cannot be reopened");
    }

    /// Posts a comment as `user`; returns the note's id.
    pub fn note(&self, project: &str, iid: u64, user: &str, body: &str) -> u64 {
        let mut st = self.state();
        st.ensure_user(user);
        assert!(st.mr_index(project, iid).is_some(), "no merge request !{iid} in {project}");
        st.add_note(project, iid, user, body, false, false).id
    }

    /// Starts a thread as `user` (a `DiscussionNote`, as GitLab's "Start a thread" writes it).
    pub fn thread_note(&self, project: &str, iid: u64, user: &str, body: &str) -> u64 {
        let mut st = self.state();
        st.ensure_user(user);
        assert!(st.mr_index(project, iid).is_some(), "no merge request !{iid} in {project}");
        st.add_note(project, iid, user, body, false, true).id
    }

    /// A system note GitLab writes on behalf of `user` (`changed the description`...).
    pub fn system_note(&self, project: &str, iid: u64, user: &str, body: &str) -> u64 {
        let mut st = self.state();
        st.ensure_user(user);
        st.add_note(project, iid, user, body, true, false).id
    }

    /// Every note of merge request `iid`, oldest first (system notes included).
    pub fn notes(&self, project: &str, iid: u64) -> Vec<Note> {
        let key = project.to_ascii_lowercase();
        self.state().notes.iter().filter(|n| n.project.to_ascii_lowercase() == key && n.mr_iid == iid).cloned().collect()
    }

    /// The `Note Hook` webhook payload GitLab delivers for note `id` (`X-Gitlab-Event: Note Hook`).
    pub fn note_hook(&self, id: u64) -> Value {
        let web = self.shared.web.lock().unwrap().clone();
        let st = self.state();
        let note = st.notes.iter().find(|n| n.id == id).unwrap_or_else(|| panic!("no note {id}"));
        json::View { st: &st, web: &web }.note_hook(note)
    }

    /// Award emoji on a note.
    pub fn awards(&self, note_id: u64) -> Vec<Award> {
        self.state().awards.iter().filter(|a| a.note_id == note_id).cloned().collect()
    }

    // ---- faults, rate limits, inspection ----

    /// Fails the `nth` (1-based, counted from now) call of `operation` (`merge_requests/create`)
    /// with `status`.
    pub fn fail(&self, operation: &str, nth: usize, status: u16) {
        let mut st = self.state();
        let done = st.calls.get(operation).copied().unwrap_or(0);
        st.faults.push(Fault { operation: operation.into(), nth: done + nth, status });
    }

    /// The `nth` call of `operation` takes effect, but its answer is lost (a 502 from a proxy).
    pub fn lose_response(&self, operation: &str, nth: usize) {
        let mut st = self.state();
        let done = st.calls.get(operation).copied().unwrap_or(0);
        st.lost.push((operation.into(), done + nth));
    }

    /// The next `count` API requests are answered `429 Too Many Requests` with
    /// `Retry-After: retry_after`, as GitLab's rate limiter answers.
    pub fn rate_limit_next(&self, count: usize, retry_after: u64) {
        let mut st = self.state();
        for _ in 0..count {
            st.rate_limits.push(retry_after);
        }
    }

    /// The next listing of merge requests answers an empty page (a stale replica).
    pub fn hide_from_next_listing(&self) {
        self.state().hidden_listings += 1;
    }

    /// Moves the fake's clock on by `seconds` (every timestamp it hands out from now on, and its
    /// `Date` header), as if that much time had passed since the last request.
    pub fn advance_clock(&self, seconds: i64) {
        self.state().clock_offset += chrono::Duration::seconds(seconds);
    }

    /// Rate-limited answers given so far.
    pub fn rate_limited(&self) -> usize {
        self.state().rate_limited
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }

    /// The API operations seen, in order (git's smart HTTP left out).
    pub fn calls(&self) -> Vec<String> {
        self.state().requests.iter().filter(|r| r.operation != "git").map(|r| r.operation.clone()).collect()
    }

    /// REST requests that change something (git pushes are counted by [`Self::pushes`]).
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

    /// Forgets the violations seen so far (for tests that provoke them on purpose).
    pub fn take_violations(&self) -> Vec<String> {
        std::mem::take(&mut self.state().violations)
    }

    /// Fails the test when any request broke GitLab's documented API.
    pub fn finish(&self) {
        self.finished.store(true, Ordering::SeqCst);
        let violations = self.violations();
        assert!(
            violations.is_empty(),
            "the fake GitLab saw {} violation(s) of GitLab's documented REST API:\n  {}",
            violations.len(),
            violations.join("\n  ")
        );
    }
}

impl Drop for FakeGitlab {
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

/// GitLab's timestamps: UTC, milliseconds (`2024-05-01T10:20:30.123Z`).
fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}
