//! The fake GitLab checked by an independent client: python-gitlab (pinned in scripts/test.sh,
//! installed into a venv there) drives it through tests/contract/gitlab_contract.py — projects
//! by path and id, merge requests over pages, create/update/close/reopen, notes, award emoji,
//! members, users, events, auto-merge, branch deletion — asserting the attributes python-gitlab
//! exposes, and the fake must have recorded no violation of GitLab's documented API.

mod support;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::fake_gitlab::{self, Access, FakeGitlab};

const PROJECT: &str = "platform/apps/gitops";

/// The venv's python3: `ARGOCD_IMAGE_PR_PY` (default `/var/tmp/argocd-image-pr-py`, where
/// scripts/test.sh installs python-gitlab). Missing is a failure, never a skip.
fn python() -> PathBuf {
    let venv = std::env::var("ARGOCD_IMAGE_PR_PY").unwrap_or_else(|_| "/var/tmp/argocd-image-pr-py".into());
    let python = PathBuf::from(&venv).join("bin/python3");
    let probe = Command::new(&python).args(["-c", "import gitlab; print(gitlab.__version__)"]).output();
    match probe {
        Ok(out) if out.status.success() => python,
        Ok(out) => panic!(
            "python-gitlab is not importable from {} ({}): run scripts/test.sh, which installs it",
            python.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("no python at {} ({e}): run scripts/test.sh, which creates the venv", python.display()),
    }
}

/// Runs the contract script; a guard against a hang, not a timing assertion.
fn run_script(python: &PathBuf, args: &[String]) -> (bool, String, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/contract/gitlab_contract.py");
    let mut child = Command::new(python)
        .arg(script)
        .args(args)
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env("NO_PROXY", "127.0.0.1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).ok();
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).ok();
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the contract script hung\nstderr:\n{}", err_reader.join().unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.success(), out_reader.join().unwrap(), err_reader.join().unwrap())
}

#[test]
fn python_gitlab_drives_the_fake_within_gitlabs_documented_api() {
    let python = python();
    let gl = FakeGitlab::start();
    let base = gl.create_project(PROJECT, &[("README.md", "GitOps\n")]);
    gl.add_member("platform", "alice", Access::Developer);
    gl.add_member(PROJECT, "bob", Access::Reporter);
    gl.add_member(PROJECT, fake_gitlab::BOT_USER, Access::Maintainer);
    let stranger = gl.add_user("mallory");
    let people_mrs = 23;
    for n in 1..=people_mrs {
        let branch = format!("feature-{n}");
        gl.push_commit(PROJECT, &branch, &[(&format!("docs/{n}.md"), Some("notes\n"))], "alice");
        gl.open_mr(PROJECT, "alice", &branch, "main", &format!("Feature {n}"));
    }
    let bot_branch = "argocd-image-pr/argocd/api";
    let bot_sha = gl.push_commit(PROJECT, bot_branch, &[("envs/api/kustomization.yaml", Some("images: []\n"))], fake_gitlab::BOT_USER);
    let old_branch = "argocd-image-pr/argocd/old";
    gl.create_branch(PROJECT, old_branch, &base);
    let alice_note = "LGTM, ship it";
    let alice_thread = "Should this wait for the freeze?";
    gl.note(PROJECT, 1, "alice", alice_note);
    gl.thread_note(PROJECT, 2, "alice", alice_thread);
    gl.clear_requests();

    let facts = json!({
        "project": PROJECT,
        "people_mrs": people_mrs,
        "bot_branch": bot_branch,
        "bot_sha": bot_sha,
        "old_branch": old_branch,
        "stranger_id": stranger,
        "alice_note": alice_note,
        "alice_thread": alice_thread,
    });
    let (ok, stdout, stderr) = run_script(&python, &[gl.url(), fake_gitlab::TOKEN.to_string(), facts.to_string()]);
    assert!(ok, "python-gitlab found the fake off GitLab's API\nstdout:\n{stdout}\nstderr:\n{stderr}\nviolations: {:#?}", gl.violations());
    assert!(stdout.contains("against the fake GitLab: ok"), "{stdout}");

    let calls = gl.calls();
    let count = |op: &str| calls.iter().filter(|c| *c == op).count();
    // Three pages twice (get_all, the iterator), then the single pages and filters.
    assert!(count("merge_requests/list") > 6, "pages were followed: {calls:?}");
    for op in [
        "projects/get",
        "merge_requests/create",
        "merge_requests/update",
        "merge_requests/get",
        "merge_requests/merge",
        "notes/create",
        "notes/list",
        "notes/get",
        "award_emoji/create",
        "award_emoji/list",
        "members/all/get",
        "users/list",
        "branches/delete",
        "events/list",
    ] {
        assert!(count(op) > 0, "python-gitlab called {op}: {calls:?}");
    }
    let mr = gl.mr(PROJECT, people_mrs as u64 + 1);
    assert!(mr.merge_when_pipeline_succeeds && mr.squash, "auto-merge is set, squashing");
    assert_eq!(gl.branch_sha(PROJECT, old_branch), None, "deleted in git");
    gl.finish();
}
