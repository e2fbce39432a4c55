//! `argocd-image-pr run` without `--once`, end to end: the real binary as a daemon on a loopback
//! port with the local forge, a real registry and a real GitOps repository. The interval is an
//! hour, so every cycle after the first is one a webhook delivery started. Deliveries are shaped
//! from GitHub's own example payloads (npm `@octokit/webhooks-examples`, installed by
//! scripts/test.sh) and signed as GitHub signs them.
//!
//! Waits poll with generous limits (guards against a hang, not timing assertions); the process is
//! killed by its PID whatever happens.

mod support;

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argocd_image_pr::server::{WebhookSecret, sign};
use serde_json::{Value, json};
use support::gitops::{App, GitRepo, deployment, kustomization};
use support::registry::{Auth, TestRegistry, free_port};

const SECRET: &str = "It's a Secret to Everybody";
const BRANCH: &str = "argocd-image-pr/argocd/api";
/// Against a hung daemon on a loaded machine, not a timing assertion.
const PATIENCE: Duration = Duration::from_secs(180);

/// A registry with `team/api`, a GitOps repository whose Application `api` runs `1.0.0`
/// (Kustomize, `^1.0`), pushed to a bare `origin` (the Application's repoURL, where the bot
/// pushes its branch), and a local forge directory.
struct World {
    reg: TestRegistry,
    git: GitRepo,
    origin: tempfile::TempDir,
    forge: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let reg = TestRegistry::start(Auth::Anonymous);
        reg.push_tags("team/api", &["1.0.0", "1.1.0"]);
        let image = reg.image("team/api");
        let git = GitRepo::new();
        let origin = tempfile::Builder::new().prefix("aipr-origin-").tempdir().unwrap();
        git.git(&["init", "-q", "--bare", "-b", "main", &origin.path().display().to_string()]);
        git.git(&["remote", "add", "origin", &origin.path().display().to_string()]);
        let url = format!("file://{}", origin.path().display());
        git.write("envs/api/kustomization.yaml", &kustomization(&image, "1.0.0"));
        git.write("envs/api/deployment.yaml", &deployment("api", &image));
        git.write("apps/api.yaml", &App::new("api", &url, "envs/api").image_list(&format!("api={image}:^1.0")).to_yaml());
        git.commit("api runs 1.0.0");
        git.git(&["push", "-q", "origin", "main"]);
        World { reg, git, origin, forge: tempfile::tempdir().unwrap() }
    }

    fn url(&self) -> String {
        format!("file://{}", self.origin.path().display())
    }

    /// The stored record of pull request `n`, once it exists.
    fn pr(&self, n: u64) -> Option<Value> {
        let file = find(self.forge.path(), &format!("{n}.json"))?;
        serde_json::from_slice(&std::fs::read(file).ok()?).ok()
    }
}

/// The file called `name` in a `pulls` directory under `dir`.
fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).ok()?.flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.ends_with(Path::new("pulls").join(name)) {
                return Some(p);
            }
        }
    }
    None
}

/// The daemon process. Dropping it kills the process (by its PID) if it is still running.
struct Daemon {
    child: Child,
    addr: String,
    stderr: Arc<Mutex<String>>,
    _home: tempfile::TempDir,
}

impl Daemon {
    /// `run --forge local --interval 1h --listen 127.0.0.1:<free port>` in a clean environment,
    /// with the webhook secret in `ARGOCD_IMAGE_PR_WEBHOOK_SECRET`, on `world`'s Applications.
    fn start(world: &World) -> Daemon {
        let apps = world.git.path().join("apps");
        Daemon::spawn(world.forge.path(), &[OsStr::new("--apps"), apps.as_os_str()])
    }

    fn spawn(forge: &Path, args: &[&OsStr]) -> Daemon {
        let home = tempfile::Builder::new().prefix("aipr-home-").tempdir().unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        // `--interval 1h` unless the test gives its own.
        let interval: &[&str] = if args.iter().any(|a| *a == "--interval") { &[] } else { &["--interval", "1h"] };
        let mut child = Command::new(support::cli::BIN)
            .args(["run", "--forge", "local", "--listen", &addr])
            .args(interval)
            .arg("--local-forge-dir")
            .arg(forge)
            .args(args)
            .arg("--cache-dir")
            .arg(home.path().join("cache"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()))
            .env("HOME", home.path())
            .env("DOCKER_CONFIG", home.path().join(".docker"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("ARGOCD_IMAGE_PR_LOG", "argocd_image_pr=info")
            .env("ARGOCD_IMAGE_PR_WEBHOOK_SECRET", SECRET)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", support::cli::BIN));
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Daemon { child, addr, stderr, _home: home }
    }

    fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Polls `check` until it gives a value; fails (with the daemon's log) if the daemon exits or
    /// [`PATIENCE`] runs out.
    fn wait_for<T>(&mut self, what: &str, mut check: impl FnMut(&Daemon) -> Option<T>) -> T {
        let started = Instant::now();
        loop {
            if let Some(v) = check(self) {
                return v;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the daemon exited ({status}) while waiting for {what}\nlog:\n{}", self.log());
            }
            assert!(started.elapsed() < PATIENCE, "no {what} after {PATIENCE:?}\nlog:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        http(&self.addr, "GET", path, &[], b"").ok()
    }

    /// One counter or gauge from `/metrics` (0 when absent).
    fn metric(&self, series: &str) -> f64 {
        let (_, text) = self.get("/metrics").expect("/metrics answers");
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
            .map(|v| v.parse().unwrap())
            .unwrap_or(0.0)
    }

    /// POSTs a delivery of `event`; `signed: false` leaves out `X-Hub-Signature-256`.
    fn deliver(&self, event: &str, payload: &Value, signed: bool) -> (u16, String) {
        let body = serde_json::to_vec(payload).unwrap();
        let signature = sign(&WebhookSecret::new(SECRET).unwrap(), &body);
        let id = support::delivery_id();
        let mut headers = vec![
            ("X-GitHub-Event", event),
            ("X-GitHub-Delivery", id.as_str()),
            ("User-Agent", "GitHub-Hookshot/044aadd"),
            ("Content-Type", "application/json"),
        ];
        if signed {
            headers.push(("X-Hub-Signature-256", &signature));
        }
        http(&self.addr, "POST", "/webhooks/github", &headers, &body).expect("the daemon answers")
    }

    /// SIGTERM, then the exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM)
    }

    /// Sends `signal`, then waits for the exit status.
    fn signal(&mut self, signal: libc::c_int) -> std::process::ExitStatus {
        // SAFETY: kill(2) on the PID of a child this value owns and has not reaped.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(started.elapsed() < PATIENCE, "the daemon did not exit on SIGTERM\nlog:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A minimal HTTP/1.1 exchange (`Connection: close`): (status, body).
fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// GitHub's example `pull_request` delivery with `action`, moved to pull request `number` of the
/// bot's branch in `world`'s repository.
fn pull_request_delivery(world: &World, action: &str, number: u64) -> Value {
    let root = std::env::var_os("ARGOCD_IMAGE_PR_NPM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/argocd-image-pr-npm"));
    let path = root.join("node_modules/@octokit/webhooks-examples/api.github.com/index.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read GitHub's webhook examples at {}: {e}\nrun scripts/test.sh, which installs the npm package \
             @octokit/webhooks-examples there (or set ARGOCD_IMAGE_PR_NPM to the --prefix it was installed with)",
            path.display()
        )
    });
    let index: Vec<Value> = serde_json::from_str(&text).unwrap();
    let mut p = index
        .iter()
        .filter(|e| e["name"] == "pull_request")
        .flat_map(|e| e["examples"].as_array().unwrap().iter())
        .find(|x| x["action"] == action)
        .unwrap_or_else(|| panic!("no pull_request example with action {action}"))
        .clone();
    p["number"] = json!(number);
    p["pull_request"]["number"] = json!(number);
    p["pull_request"]["head"]["ref"] = json!(BRANCH);
    p["pull_request"]["base"]["ref"] = json!("main");
    p["repository"]["full_name"] = json!("example-org/gitops");
    p["repository"]["clone_url"] = json!(world.url());
    p
}

fn title(pr: &Value) -> &str {
    pr["title"].as_str().unwrap_or("")
}

#[test]
fn daemon_opens_on_start_updates_on_a_signed_webhook_ignores_an_unsigned_one_and_stops_on_sigterm() {
    let world = World::new();
    let mut daemon = Daemon::start(&world);

    // Started: /healthz answers; the first cycle opens the PR.
    let (status, body) = daemon.wait_for("/healthz", |d| d.get("/healthz"));
    assert_eq!((status, body.as_str()), (200, "ok"));
    let pr = daemon.wait_for("PR #1 for 1.1.0", |_| world.pr(1).filter(|p| title(p).contains("1.1.0")));
    assert_eq!((pr["state"].as_str(), pr["head"].as_str()), (Some("open"), Some(BRANCH)), "{pr}");
    daemon.wait_for("the end of the first cycle", |d| (d.metric("argocd_image_pr_cycles_total") == 1.0).then_some(()));
    assert_eq!(daemon.metric("argocd_image_pr_cycle_triggers_total{trigger=\"interval\"}"), 1.0);
    assert_eq!(daemon.metric("argocd_image_pr_last_cycle_success"), 1.0, "log:\n{}", daemon.log());

    // A newer tag, and a signed delivery: the PR is updated long before the hour is up.
    world.reg.push_tags("team/api", &["1.2.0"]);
    let (status, body) = daemon.deliver("pull_request", &pull_request_delivery(&world, "synchronize", 1), true);
    assert_eq!((status, body.as_str()), (202, "queued\n"));
    let pr = daemon.wait_for("PR #1 updated to 1.2.0", |_| world.pr(1).filter(|p| title(p).contains("1.2.0")));
    assert_eq!(pr["state"], "open", "{pr}");
    assert!(world.pr(2).is_none(), "the same PR, no second one");
    daemon.wait_for("the end of the webhook cycle", |d| (d.metric("argocd_image_pr_cycles_total") == 2.0).then_some(()));
    assert_eq!(daemon.metric("argocd_image_pr_cycle_triggers_total{trigger=\"webhook\"}"), 1.0);

    // An unsigned delivery (with yet another tag to find): 401, and no cycle.
    world.reg.push_tags("team/api", &["1.3.0"]);
    let (status, body) = daemon.deliver("pull_request", &pull_request_delivery(&world, "closed", 1), false);
    assert_eq!(status, 401, "{body}");
    assert!(body.starts_with("signature refused"), "{body}");
    assert_eq!(daemon.metric("argocd_image_pr_webhook_deliveries_total{event=\"pull_request\",result=\"unauthorized\"}"), 1.0);
    // Longer than a burst waits to settle: a cycle the delivery started would have begun by now.
    std::thread::sleep(argocd_image_pr::daemon::MAX_SETTLE + Duration::from_secs(1));
    let log = daemon.log();
    assert_eq!(log.matches("cycle starts").count(), 2, "no cycle after the unsigned delivery\nlog:\n{log}");
    assert!(title(&world.pr(1).unwrap()).contains("1.2.0"), "nothing acted on 1.3.0");

    // SIGTERM: exit 0.
    let status = daemon.terminate();
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log());
    assert!(daemon.log().contains("SIGTERM: stopping"), "log:\n{}", daemon.log());
}

/// A cycle stuck on the network (an `--apps` git server that accepts connections and never
/// answers) does not keep the daemon from stopping: SIGINT waits `--shutdown-timeout`, then the
/// daemon exits 1 (the cycle was cut short) instead of hanging.
#[test]
fn a_stuck_cycle_is_cut_short_after_the_shutdown_timeout() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let apps = format!("http://{}/gitops.git", silent.local_addr().unwrap());
    let forge = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::spawn(
        forge.path(),
        &[OsStr::new("--apps"), OsStr::new(&apps), OsStr::new("--shutdown-timeout"), OsStr::new("1s")],
    );
    daemon.wait_for("/healthz", |d| d.get("/healthz").filter(|(status, _)| *status == 200));
    daemon.wait_for("the first cycle to start", |d| d.log().contains("cycle starts").then_some(()));
    let status = daemon.signal(libc::SIGINT);
    assert_eq!(status.code(), Some(1), "log:\n{}", daemon.log());
    let log = daemon.log();
    assert!(log.contains("SIGINT: stopping") && log.contains("did not finish within --shutdown-timeout 1s"), "log:\n{log}");
    drop(silent);
}

/// Issue 14: an `--apps` git server that accepts and never answers used to hold the first cycle
/// forever (`cycles_total 0`) while the good location was never served. Now it fails alone at
/// `--git-timeout`, by name, and the cycle ends.
#[test]
fn a_git_location_that_never_answers_fails_alone_and_the_cycle_ends() {
    let world = World::new();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hung = format!("http://{}/gitops.git", silent.local_addr().unwrap());
    let apps = world.git.path().join("apps");
    let mut daemon = Daemon::spawn(
        world.forge.path(),
        &[
            OsStr::new("--apps"),
            apps.as_os_str(),
            OsStr::new("--apps"),
            OsStr::new(&hung),
            OsStr::new("--timeout"),
            OsStr::new("2s"),
            OsStr::new("--git-timeout"),
            OsStr::new("4s"),
        ],
    );
    daemon.wait_for("/healthz", |d| d.get("/healthz").filter(|(status, _)| *status == 200));
    daemon.wait_for("a finished cycle", |d| (d.metric("argocd_image_pr_cycles_total") >= 1.0).then_some(()));
    assert!(world.pr(1).is_some(), "the good location was served\nlog:\n{}", daemon.log());
    let log = daemon.log();
    assert!(log.contains(&hung), "the location that failed is named\nlog:\n{log}");
    // Typed to the top: a server that did not answer is a network error the next cycle may not have.
    assert!(
        daemon.metric("argocd_image_pr_error_causes_total{cause=\"network\",transient=\"true\"}") >= 1.0,
        "{}",
        daemon.get("/metrics").map(|(_, body)| body).unwrap_or_default()
    );
    assert_eq!(daemon.get("/healthz").map(|(s, _)| s), Some(200));
    assert_eq!(daemon.terminate().code(), Some(0), "log:\n{}", daemon.log());
    drop(silent);
}

/// Issue 14: `/healthz` said 200 while no cycle ever finished. With `--unhealthy-cycles 1` and a
/// 1 s interval, a cycle stuck longer than that turns it to 503.
#[test]
fn healthz_is_unhealthy_when_no_cycle_finishes_within_the_allowed_intervals() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hung = format!("http://{}/gitops.git", silent.local_addr().unwrap());
    let forge = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::spawn(
        forge.path(),
        &[
            OsStr::new("--apps"),
            OsStr::new(&hung),
            OsStr::new("--interval"),
            OsStr::new("1s"),
            OsStr::new("--unhealthy-cycles"),
            OsStr::new("1"),
            OsStr::new("--git-timeout"),
            OsStr::new("10m"),
            OsStr::new("--shutdown-timeout"),
            OsStr::new("0s"),
        ],
    );
    let (_, body) = daemon.wait_for("/healthz 503", |d| d.get("/healthz").filter(|(status, _)| *status == 503));
    assert!(body.contains("no cycle has finished"), "{body}");
    assert_eq!(daemon.metric("argocd_image_pr_cycles_total"), 0.0);
    drop(silent);
}
