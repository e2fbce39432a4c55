//! The fake GitLab's git side: bare repositories on disk written with the git CLI (the helpers
//! of the fake GitHub), served over smart HTTP by `git http-backend`, with a pre-receive hook
//! that refuses pushes to protected branches the way GitLab does.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

pub use crate::support::fake_github::git::{branch_sha, commit_files, git};

use super::MergeRequest;

/// GitLab's answer to a push to a protected branch by someone not allowed, as a pre-receive
/// hook: `$GIT_DIR/fake-gitlab-protected/<branch, / as %2F>` lists who may push. Pushes made
/// by the test controls (no `REMOTE_USER`) are a maintainer's and pass.
const PRE_RECEIVE: &str = r#"#!/bin/sh
[ -z "$REMOTE_USER" ] && exit 0
status=0
while read old new ref; do
    branch="${ref#refs/heads/}"
    name=$(printf '%s' "$branch" | sed -e 's/%/%25/g' -e 's|/|%2F|g')
    list="$GIT_DIR/fake-gitlab-protected/$name"
    if [ -f "$list" ] && ! grep -qixF "$REMOTE_USER" "$list"; then
        echo "GitLab: You are not allowed to push code to protected branches on this project."
        status=1
    fi
done
exit $status
"#;

pub fn install_hooks(bare: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let hooks = bare.join("hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    let hook = hooks.join("pre-receive");
    std::fs::write(&hook, PRE_RECEIVE).unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn run(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env_remove("GIT_DIR")
        .output()
        .expect("git is missing")
}

/// Every branch and its commit.
pub fn heads(bare: &Path) -> BTreeMap<String, String> {
    let out = run(bare, &["for-each-ref", "--format=%(refname) %(objectname)", "refs/heads"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(r, s)| r.strip_prefix("refs/heads/").map(|b| (b.to_string(), s.to_string())))
        .collect()
}

pub fn is_ancestor(bare: &Path, a: &str, b: &str) -> bool {
    run(bare, &["merge-base", "--is-ancestor", a, b]).status.success()
}

/// Commits in `range` (`a..b`, or one commit's history).
pub fn count(bare: &Path, range: &str) -> usize {
    String::from_utf8_lossy(&run(bare, &["rev-list", "--count", range]).stdout).trim().parse().unwrap_or(0)
}

/// A commit's subject line.
pub fn subject(bare: &Path, sha: &str) -> String {
    String::from_utf8_lossy(&run(bare, &["log", "-1", "--format=%s", sha]).stdout).trim().to_string()
}

/// GitLab's default merge commit message.
pub fn merge_message(mr: &MergeRequest, project_path: &str) -> String {
    format!(
        "Merge branch '{}' into '{}'\n\n{}\n\nSee merge request {project_path}!{}",
        mr.source_branch, mr.target_branch, mr.title, mr.iid
    )
}

/// A real merge commit of `head` into `base` in the bare repository; the error is git's when
/// the branches conflict.
pub fn merge(bare: &Path, base: &str, head: &str, message: &str, author: &str) -> Result<String, String> {
    let work = tempfile::Builder::new().prefix("fake-gitlab-merge-").tempdir().unwrap();
    let w = work.path();
    git(w, &["init", "-q"], author);
    git(w, &["remote", "add", "origin", &bare.display().to_string()], author);
    git(w, &["fetch", "-q", "origin", &format!("refs/heads/{base}:refs/remotes/origin/{base}")], author);
    git(w, &["fetch", "-q", "origin", &format!("refs/heads/{head}:refs/remotes/origin/{head}")], author);
    git(w, &["checkout", "-q", "-b", "work", &format!("origin/{base}")], author);
    let out = Command::new("git")
        .args(["-c", &format!("user.name={author}"), "-c", &format!("user.email={author}@users.noreply.example.com")])
        .args(["merge", "-q", "--no-ff", "-m", message, &format!("origin/{head}")])
        .current_dir(w)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr));
    }
    git(w, &["push", "-q", "origin", &format!("work:refs/heads/{base}")], author);
    Ok(git(w, &["rev-parse", "HEAD"], author).trim().to_string())
}

/// GitLab's squash-and-merge: one squash commit of the merge request's changes on the base it
/// started from, then a merge commit of it into the base. Returns (merge commit, squash commit).
pub fn squash_merge(bare: &Path, base: &str, head: &str, squash_message: &str, message: &str, author: &str) -> Result<(String, String), String> {
    let work = tempfile::Builder::new().prefix("fake-gitlab-squash-").tempdir().unwrap();
    let w = work.path();
    git(w, &["init", "-q"], author);
    git(w, &["remote", "add", "origin", &bare.display().to_string()], author);
    git(w, &["fetch", "-q", "origin", &format!("refs/heads/{base}:refs/remotes/origin/{base}")], author);
    git(w, &["fetch", "-q", "origin", &format!("refs/heads/{head}:refs/remotes/origin/{head}")], author);
    let fork = git(w, &["merge-base", &format!("origin/{base}"), &format!("origin/{head}")], author).trim().to_string();
    let tree = git(w, &["rev-parse", &format!("origin/{head}^{{tree}}")], author).trim().to_string();
    let squash = git(w, &["commit-tree", &tree, "-p", &fork, "-m", squash_message], author).trim().to_string();
    git(w, &["checkout", "-q", "-b", "work", &format!("origin/{base}")], author);
    let out = Command::new("git")
        .args(["-c", &format!("user.name={author}"), "-c", &format!("user.email={author}@users.noreply.example.com")])
        .args(["merge", "-q", "--no-ff", "-m", message, &squash])
        .current_dir(w)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr));
    }
    git(w, &["push", "-q", "origin", &format!("work:refs/heads/{base}")], author);
    Ok((git(w, &["rev-parse", "HEAD"], author).trim().to_string(), squash))
}
