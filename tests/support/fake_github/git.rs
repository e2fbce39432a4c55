//! The fake's git side: bare repositories on disk, written by the test controls with the git
//! CLI, and served over smart HTTP by `git http-backend` (CGI, see `support::git_http`).

use std::path::Path;
use std::process::Command;

/// Runs git with a fixed identity and no user or system config; panics on failure.
pub fn git(dir: &Path, args: &[&str], author: &str) -> String {
    let out = Command::new("git")
        .args(["-c", &format!("user.name={author}"), "-c", &format!("user.email={author}@users.noreply.example.com")])
        .args(["-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env_remove("GIT_DIR")
        .output()
        .expect("git is missing");
    assert!(out.status.success(), "git {args:?} in {} failed: {}", dir.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The commit a branch points to in a bare repository, if the branch exists.
pub fn branch_sha(bare: &Path, branch: &str) -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--verify", "-q", &format!("refs/heads/{branch}^{{commit}}")])
        .current_dir(bare)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("git is missing");
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Commits `files` (path, content; `None` deletes) on top of `branch` (created from `from` when
/// missing) as `author`, pushing straight into the bare repository. Returns the new commit.
pub fn commit_files(bare: &Path, branch: &str, from: Option<&str>, files: &[(&str, Option<&str>)], message: &str, author: &str) -> String {
    let work = tempfile::Builder::new().prefix("fake-github-work-").tempdir().unwrap();
    let w = work.path();
    git(w, &["init", "-q"], author);
    git(w, &["remote", "add", "origin", &bare.display().to_string()], author);
    let start = branch_sha(bare, branch).or_else(|| from.and_then(|f| branch_sha(bare, f)));
    if let Some(start) = &start {
        git(w, &["fetch", "-q", "origin", start], author);
        git(w, &["checkout", "-q", "-b", "work", start], author);
    } else {
        git(w, &["checkout", "-q", "-b", "work"], author);
    }
    for (path, content) in files {
        let p = w.join(path);
        match content {
            Some(c) => {
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(&p, c).unwrap();
            }
            None => {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
    git(w, &["add", "-A"], author);
    git(w, &["commit", "-q", "--allow-empty", "-m", message], author);
    git(w, &["push", "-q", "origin", &format!("work:refs/heads/{branch}")], author);
    git(w, &["rev-parse", "HEAD"], author).trim().to_string()
}

/// A real merge commit of `head` into `base` in the bare repository. Returns its id.
pub fn merge(bare: &Path, base: &str, head: &str, message: &str, author: &str) -> String {
    let work = tempfile::Builder::new().prefix("fake-github-merge-").tempdir().unwrap();
    let w = work.path();
    git(w, &["init", "-q"], author);
    git(w, &["remote", "add", "origin", &bare.display().to_string()], author);
    git(w, &["fetch", "-q", "origin", &format!("refs/heads/{base}:refs/remotes/origin/{base}")], author);
    git(w, &["fetch", "-q", "origin", &format!("refs/heads/{head}:refs/remotes/origin/{head}")], author);
    git(w, &["checkout", "-q", "-b", "work", &format!("origin/{base}")], author);
    git(w, &["merge", "-q", "--no-ff", "-m", message, &format!("origin/{head}")], author);
    git(w, &["push", "-q", "origin", &format!("work:refs/heads/{base}")], author);
    git(w, &["rev-parse", "HEAD"], author).trim().to_string()
}
