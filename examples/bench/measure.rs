//! Runs `plan` as a child process and measures its wall time and peak RSS (wait4 rusage).

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

pub struct Run {
    pub wall_s: f64,
    pub peak_mb: f64,
    /// Exit code, or None when killed by a signal.
    pub exit: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

pub fn run_plan(bin: &Path, apps_url: &str, cache_dir: &Path, scratch: &Path) -> Result<Run> {
    fs::create_dir_all(scratch)?;
    let out_path = scratch.join("plan.json");
    let err_path = scratch.join("plan.stderr");
    let out = fs::File::create(&out_path)?;
    let err = fs::File::create(&err_path)?;
    let started = Instant::now();
    let mut cmd = Command::new(bin);
    cmd.args(["plan", "--apps", apps_url, "--output", "json", "--cache-dir"]).arg(cache_dir);
    // Only the command line configures the run: no settings or logging from the environment.
    cmd.env_remove("RUST_LOG");
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("ARGOCD_IMAGE_PR_") {
            cmd.env_remove(k);
        }
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data; wait4 fills it for exactly this child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = loop {
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break r;
    };
    let wall_s = started.elapsed().as_secs_f64();
    // The child is reaped; std's handle must not wait for it again.
    std::mem::forget(child);
    if r != pid {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    let exit = if libc::WIFEXITED(status) { Some(libc::WEXITSTATUS(status)) } else { None };
    Ok(Run {
        wall_s,
        // ru_maxrss is in KiB on Linux; MB here are 10^6 bytes.
        peak_mb: usage.ru_maxrss as f64 * 1024.0 / 1e6,
        exit,
        stdout: fs::read(&out_path)?,
        stderr: fs::read_to_string(&err_path).unwrap_or_default(),
    })
}
