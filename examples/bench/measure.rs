//! Runs `plan` as a child process and measures its wall time and peak RSS (wait4 rusage).

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

pub struct Run {
    pub wall_s: f64,
    pub peak_mb: f64,
    /// User + system CPU seconds of the plan process.
    pub cpu_s: f64,
    /// Exit code, or None when killed by a signal.
    pub exit: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

/// A `/bin/sh` started while the benchmark process is still small, waiting on its stdin for the
/// plan command, which it then `exec`s in place.
///
/// Why: Linux carries a process's RSS high-water mark across `exec` (`signal->maxrss`), and
/// `Command::spawn` (posix_spawn, i.e. vfork) hands the child the parent's high-water mark. A
/// plan spawned directly after seeding would report the benchmark's own peak. Spawned early,
/// the launcher's inherited mark is a few MB, so `ru_maxrss` is the plan's own peak.
pub struct Launcher {
    child: Option<std::process::Child>,
}

const LAUNCH: &str = r#"IFS= read -r bin && IFS= read -r url && IFS= read -r cache && IFS= read -r out && IFS= read -r err || exit 0
exec "$bin" plan --apps "$url" --output json --cache-dir "$cache" <&- >"$out" 2>"$err""#;

impl Launcher {
    pub fn spawn() -> Result<Launcher> {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", LAUNCH]);
        // Only the command line configures the run: no settings or logging from the environment.
        cmd.env_remove("RUST_LOG");
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ARGOCD_IMAGE_PR_") {
                cmd.env_remove(k);
            }
        }
        let child = cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
        Ok(Launcher { child: Some(child) })
    }

    pub fn run_plan(mut self, bin: &Path, apps_url: &str, cache_dir: &Path, scratch: &Path) -> Result<Run> {
        fs::create_dir_all(scratch)?;
        let out_path = scratch.join("plan.json");
        let err_path = scratch.join("plan.stderr");
        let mut lines = String::new();
        for p in [bin, Path::new(apps_url), cache_dir, &out_path, &err_path] {
            let p = p.to_str().context("non-UTF-8 path")?;
            if p.contains('\n') {
                bail!("path with a newline: {p:?}");
            }
            lines.push_str(p);
            lines.push('\n');
        }
        let mut child = self.child.take().expect("unused launcher");
        let started = Instant::now();
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("piped stdin");
            if let Err(e) = stdin.write_all(lines.as_bytes()) {
                let _ = child.kill();
                let _ = child.wait();
                bail!("handing the plan command to /bin/sh: {e}");
            }
        }
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
        if exit == Some(127) || exit == Some(126) {
            bail!("could not exec {}: {}", bin.display(), fs::read_to_string(&err_path).unwrap_or_default());
        }
        Ok(Run {
            wall_s,
            // ru_maxrss is in KiB on Linux; MB here are 10^6 bytes.
            peak_mb: usage.ru_maxrss as f64 * 1024.0 / 1e6,
            cpu_s: tv(usage.ru_utime) + tv(usage.ru_stime),
            exit,
            stdout: fs::read(&out_path)?,
            stderr: fs::read_to_string(&err_path).unwrap_or_default(),
        })
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.stdin.take()); // EOF: the shell exits without running anything
            let _ = child.wait();
        }
    }
}

fn tv(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

/// User + system CPU seconds a process has used so far (from /proc/PID/stat).
pub fn process_cpu_s(pid: i32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz)
}
