//! The fake's git side: bare repositories on disk, written by the test controls with the git
//! CLI, and served over smart HTTP by `git http-backend` (CGI).

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

/// Runs `git http-backend` for one request; returns status, headers and body.
#[allow(clippy::too_many_arguments)]
pub async fn http_backend(
    root: &Path,
    method: &str,
    path: &str,
    query: &str,
    content_type: &str,
    content_encoding: &str,
    git_protocol: &str,
    remote_user: &str,
    body: Vec<u8>,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("git")
        .arg("http-backend")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("REQUEST_METHOD", method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_TYPE", content_type)
        .env("HTTP_CONTENT_ENCODING", content_encoding)
        .env("GIT_PROTOCOL", git_protocol)
        .env("REMOTE_USER", remote_user)
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("git http-backend");
    let mut stdin = child.stdin.take().unwrap();
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
    });
    let out = child.wait_with_output().await.expect("git http-backend output");
    let _ = writer.await;
    let raw = out.stdout;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, 4));
    let split = split.or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((end, sep)) = split else {
        return (500, vec![], out.stderr);
    };
    let mut status = 200;
    let mut headers = Vec::new();
    for line in String::from_utf8_lossy(&raw[..end]).lines() {
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("status") {
                status = v.split_whitespace().next().and_then(|c| c.parse().ok()).unwrap_or(status);
            } else {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
    }
    (status, headers, raw[end + sep..].to_vec())
}
