//! A GitOps world for `run --forge local` stories: a registry, a repository people push to
//! (`origin`, a bare repository the Applications name), a local forge directory, and the real
//! binary run fresh for every step (no state carried between steps but the forge and git).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::cli::{Plan, PlanOutput};
use super::gitops::{App, GitRepo, deployment, kustomization};
use super::registry::{Auth, TestRegistry};

pub const BRANCH: &str = "argocd-image-pr/argocd/api";

/// A registry with `team/api`, a GitOps repository with the Application `api` (Kustomize,
/// `^1.0`) and a local forge directory. People work in `git` and push to `origin`, a bare
/// repository: the Applications' `repoURL`, where the bot pushes its branches.
pub struct World {
    pub reg: TestRegistry,
    pub git: GitRepo,
    pub origin: tempfile::TempDir,
    pub forge: tempfile::TempDir,
    pub image: String,
}

impl World {
    pub fn new(tags: &[&str], running: &str) -> World {
        let reg = TestRegistry::start(Auth::Anonymous);
        reg.push_tags("team/api", tags);
        let image = reg.image("team/api");
        let git = GitRepo::new();
        let origin = tempfile::Builder::new().prefix("aipr-origin-").tempdir().unwrap();
        git.git(&["init", "-q", "--bare", "-b", "main", &origin.path().display().to_string()]);
        git.git(&["remote", "add", "origin", &origin.path().display().to_string()]);
        let world = World { reg, git, origin, forge: tempfile::tempdir().unwrap(), image };
        world.add_app("api", running, &[]);
        world.commit("api runs it");
        world
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.origin.path().display())
    }

    /// Commits everything written and pushes `main`; returns the commit.
    pub fn commit(&self, message: &str) -> String {
        let sha = self.git.commit(message);
        self.git.git(&["push", "-q", "origin", "main"]);
        sha
    }

    pub fn app(&self, name: &str) -> App {
        App::new(name, &self.url(), &format!("envs/{name}")).image_list(&format!("api={}:^1.0", self.image))
    }

    /// git in the origin repository.
    pub fn origin_git(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("git").args(args).current_dir(self.origin.path()).output().unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Writes the Application `name` (with our own annotations `ours`) and its Kustomize source.
    pub fn add_app(&self, name: &str, running: &str, ours: &[(&str, &str)]) {
        self.git.write(&format!("envs/{name}/kustomization.yaml"), &kustomization(&self.image, running));
        self.git.write(&format!("envs/{name}/deployment.yaml"), &deployment(name, &self.image));
        self.git.write(&format!("apps/{name}.yaml"), &with_our_annotations(&self.app(name).to_yaml(), ours));
    }

    pub fn run(&self) -> PlanOutput {
        let apps = self.git.path().join("apps");
        Plan::command(&["run", "--once", "--forge", "local"])
            .arg("--local-forge-dir")
            .arg(self.forge.path())
            .apps(&apps)
            .json()
    }

    /// `argocd-image-pr local --local-forge-dir ... --repo <origin> <args>`: its stdout.
    pub fn local(&self, args: &[&str]) -> String {
        let out = std::process::Command::new(super::cli::BIN)
            .arg("local")
            .arg("--local-forge-dir")
            .arg(self.forge.path())
            .arg("--repo")
            .arg(self.url())
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "local {args:?}: {text}{}", String::from_utf8_lossy(&out.stderr));
        text
    }

    /// The stored record of pull request `n`.
    pub fn pr(&self, n: u64) -> Value {
        let file = find_file(self.forge.path(), &format!("{n}.json")).unwrap_or_else(|| panic!("no record of PR #{n}"));
        serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap()
    }

    pub fn pr_count(&self) -> usize {
        files(self.forge.path()).keys().filter(|p| p.contains("/pulls/")).count()
    }

    pub fn rev(&self, rev: &str) -> Option<String> {
        let out = std::process::Command::new("git")
            .args(["rev-parse", "--verify", "-q", rev])
            .current_dir(self.origin.path())
            .output()
            .unwrap();
        out.status.success().then(|| String::from_utf8(out.stdout).unwrap().trim().to_string())
    }
}

/// Adds `argocd-image-pr.io/` annotations to an Application manifest.
pub fn with_our_annotations(yaml: &str, ours: &[(&str, &str)]) -> String {
    let lines: String = ours.iter().map(|(k, v)| format!("    argocd-image-pr.io/{k}: {}\n", serde_json::to_string(v).unwrap())).collect();
    yaml.replacen("  annotations:\n", &format!("  annotations:\n{lines}"), 1)
}

/// Every file under `dir`, path → bytes.
pub fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if !p.ends_with(".lock") {
                out.insert(p.display().to_string(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

pub fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    files(dir).keys().find(|p| p.ends_with(&format!("/pulls/{name}"))).map(PathBuf::from)
}


impl World {
    /// `run --once --forge local --output json` with extra arguments.
    pub fn run_with(&self, args: &[&str]) -> PlanOutput {
        let apps = self.git.path().join("apps");
        let mut cmd = Plan::command(&["run", "--once", "--forge", "local"]).arg("--local-forge-dir").arg(self.forge.path());
        for a in args {
            cmd = cmd.arg(a);
        }
        cmd.apps(&apps).json()
    }

    /// `status --forge local --output json`.
    pub fn status(&self) -> PlanOutput {
        let apps = self.git.path().join("apps");
        Plan::command(&["status", "--forge", "local"]).arg("--local-forge-dir").arg(self.forge.path()).apps(&apps).json()
    }

    /// A person comments on PR `n`, right after the bot's last write.
    pub fn comment(&self, n: u64, author: &str, body: &str) {
        self.local(&["comment", &n.to_string(), body, "--as", author]);
    }

    /// `permissions.json` of the local forge: user → permission.
    pub fn permissions(&self, map: &[(&str, &str)]) {
        let m: BTreeMap<&str, &str> = map.iter().copied().collect();
        std::fs::write(self.forge.path().join("permissions.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    }

    /// The comments of PR `n`: (author, body, reactions).
    pub fn comments(&self, n: u64) -> Vec<(String, String, Vec<String>)> {
        self.pr(n)["comments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let reactions = c["reactions"].as_array().map(|r| r.iter().map(|x| x["content"].as_str().unwrap().to_string()).collect()).unwrap_or_default();
                (c["author"].as_str().unwrap().to_string(), c["body"].as_str().unwrap().to_string(), reactions)
            })
            .collect()
    }

    /// The bot's comments on PR `n`.
    pub fn bot_comments(&self, n: u64) -> Vec<String> {
        self.comments(n).into_iter().filter(|(a, _, _)| a == "argocd-image-pr").map(|(_, b, _)| b).collect()
    }
}
