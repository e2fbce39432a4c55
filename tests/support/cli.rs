//! Runs the real `argocd-image-pr` binary the way a user does, in a clean environment of its
//! own (HOME, docker config and cache in a temp dir, no proxy or credential variables leaking
//! in from the machine), and gives its output back with helpers to read the JSON plan.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_argocd-image-pr");

/// A guard against a hung binary, not a timing assertion: generous for a loaded machine.
const HANG_GUARD: Duration = Duration::from_secs(300);

/// `argocd-image-pr plan ...`, built up and then run.
pub struct Plan {
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    home: tempfile::TempDir,
}

impl Default for Plan {
    fn default() -> Self {
        Self::new()
    }
}

impl Plan {
    pub fn new() -> Self {
        Self::command(&["plan"])
    }

    /// Another subcommand with the same clean environment, e.g. `&["run", "--once"]`.
    pub fn command(args: &[&str]) -> Self {
        let home = tempfile::Builder::new().prefix("aipr-home-").tempdir().unwrap();
        let mut plan = Plan { args: args.iter().map(Into::into).collect(), envs: Vec::new(), home };
        let cache = plan.home.path().join("cache");
        plan.args.push("--cache-dir".into());
        plan.args.push(cache.into());
        plan
    }

    /// Keeps the cache in `dir` instead of this run's own (for runs that share one).
    pub fn cache_dir(mut self, dir: impl AsRef<Path>) -> Self {
        let at = self.args.iter().position(|a| a == "--cache-dir").expect("command sets --cache-dir");
        self.args[at + 1] = dir.as_ref().into();
        self
    }

    /// `--apps <DIR or git URL>` (repeatable).
    pub fn apps(mut self, apps: impl AsRef<OsStr>) -> Self {
        self.args.push("--apps".into());
        self.args.push(apps.as_ref().into());
        self
    }

    pub fn registries_conf(mut self, path: impl AsRef<Path>) -> Self {
        self.args.push("--registries-conf".into());
        self.args.push(path.as_ref().into());
        self
    }

    pub fn docker_config(mut self, path: impl AsRef<Path>) -> Self {
        self.args.push("--docker-config".into());
        self.args.push(path.as_ref().into());
        self
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().into());
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Self {
        self.envs.push((key.into(), value.as_ref().into()));
        self
    }

    /// The temp dir standing in for the user's home (for files a test wants to place there).
    pub fn home(&self) -> PathBuf {
        self.home.path().to_path_buf()
    }

    /// Runs with `--output json` and parses stdout as the plan.
    pub fn json(self) -> PlanOutput {
        let mut out = self.arg("--output").arg("json").run();
        out.json = serde_json::from_str(&out.stdout).ok();
        out
    }

    /// Runs with `--output table`.
    pub fn table(self) -> PlanOutput {
        self.arg("--output").arg("table").run()
    }

    /// Runs the binary as built up, without an `--output` flag of its own.
    pub fn run(self) -> PlanOutput {
        let mut cmd = Command::new(BIN);
        cmd.args(&self.args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()))
            .env("HOME", self.home.path())
            .env("DOCKER_CONFIG", self.home.path().join(".docker"))
            .env("XDG_CACHE_HOME", self.home.path().join(".cache"))
            .env("XDG_CONFIG_HOME", self.home.path().join(".config"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"));
        let mut stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let out_reader = std::thread::spawn(move || {
            let mut s = String::new();
            stdout.read_to_string(&mut s).ok();
            s
        });
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            stderr.read_to_string(&mut s).ok();
            s
        });
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > HANG_GUARD {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "argocd-image-pr {:?} did not finish within {HANG_GUARD:?} (hung?)\nstderr:\n{}",
                    self.args,
                    err_reader.join().unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        PlanOutput {
            args: self.args.iter().map(|a| a.to_string_lossy().into_owned()).collect(),
            code: status.code().unwrap_or(-1),
            stdout: out_reader.join().unwrap(),
            stderr: err_reader.join().unwrap(),
            json: None,
        }
    }
}

/// What one run printed. `Display` shows everything, for assertion messages.
pub struct PlanOutput {
    pub args: Vec<String>,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    json: Option<Value>,
}

impl fmt::Display for PlanOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "\n--- argocd-image-pr {} -> exit {}\n--- stdout:\n{}\n--- stderr:\n{}\n---",
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        )
    }
}

impl PlanOutput {
    pub fn assert_exit(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit status{self}");
        self
    }

    /// The parsed JSON plan.
    pub fn plan(&self) -> &Value {
        self.json.as_ref().unwrap_or_else(|| panic!("stdout is not a JSON plan{self}"))
    }

    pub fn applications(&self) -> &Vec<Value> {
        self.plan()["applications"].as_array().unwrap_or_else(|| panic!("no applications array{self}"))
    }

    /// The Application called `name` (in any namespace); panics if it is missing or repeated.
    pub fn app(&self, name: &str) -> &Value {
        let found: Vec<&Value> = self.applications().iter().filter(|a| a["name"] == name).collect();
        assert_eq!(found.len(), 1, "expected exactly one Application {name:?}{self}");
        found[0]
    }

    /// The image `alias` of Application `app`.
    pub fn image(&self, app: &str, alias: &str) -> &Value {
        let images = self.app(app)["images"]
            .as_array()
            .unwrap_or_else(|| panic!("Application {app:?} has no images array{self}"));
        let found: Vec<&Value> = images.iter().filter(|i| i["alias"] == alias).collect();
        assert_eq!(found.len(), 1, "expected exactly one image {alias:?} in {app:?}{self}");
        found[0]
    }

    /// The plan-level `errors` (files that could not be read).
    pub fn errors(&self) -> &Vec<Value> {
        self.plan()["errors"].as_array().unwrap_or_else(|| panic!("no errors array{self}"))
    }

    /// Asserts the plan proposes `tag` for the image, without any error.
    pub fn assert_proposes(&self, app: &str, alias: &str, current: &str, tag: &str) -> &Self {
        let img = self.image(app, alias);
        assert_eq!(img["error"], Value::Null, "{app}/{alias}: unexpected error{self}");
        assert_eq!(img["current"], current, "{app}/{alias}: current{self}");
        assert_eq!(img["proposed"], tag, "{app}/{alias}: proposed{self}");
        self
    }

    /// Asserts nothing is proposed, without an error, and a reason says why.
    pub fn assert_no_update(&self, app: &str, alias: &str) -> &Self {
        let img = self.image(app, alias);
        assert_eq!(img["error"], Value::Null, "{app}/{alias}: unexpected error{self}");
        assert_eq!(img["proposed"], Value::Null, "{app}/{alias}: expected no proposal{self}");
        let reason = img["reason"].as_str().unwrap_or("");
        assert!(!reason.trim().is_empty(), "{app}/{alias}: no reason given for no update{self}");
        self
    }

    /// Asserts the image failed with an error and nothing is proposed; returns the error text.
    pub fn assert_image_error(&self, app: &str, alias: &str) -> String {
        let img = self.image(app, alias);
        assert_eq!(img["proposed"], Value::Null, "{app}/{alias}: proposal despite error{self}");
        let err = img["error"].as_str().unwrap_or("");
        assert!(!err.trim().is_empty(), "{app}/{alias}: expected an error{self}");
        err.to_string()
    }

    /// `digest` may be left out (null) by strategies that need no manifest, but when given it
    /// must be the proposed tag's manifest digest.
    pub fn assert_digest_if_given(&self, app: &str, alias: &str, digest: &str) -> &Self {
        let got = &self.image(app, alias)["digest"];
        assert!(got.is_null() || got == digest, "{app}/{alias}: digest {got}, want null or {digest}{self}");
        self
    }

    pub fn assert_no_file_errors(&self) -> &Self {
        assert!(self.errors().is_empty(), "unexpected file errors{self}");
        self
    }
}
