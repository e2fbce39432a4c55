//! The local `docker-registry` process: started on a free loopback port over persistent storage,
//! stopped by PID (on drop, so also on error and panic; Ctrl-C is handled in main).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// PID of the running registry, for the Ctrl-C handler.
pub static REGISTRY_PID: AtomicI32 = AtomicI32::new(0);

pub struct Registry {
    pid: i32,
    child: std::process::Child,
    pub host: String,
    pub log: PathBuf,
}

impl Registry {
    pub fn start(binary: &Path, storage: &Path, work: &Path) -> Result<Registry> {
        fs::create_dir_all(storage)?;
        fs::create_dir_all(work)?;
        let port = free_port()?;
        let host = format!("127.0.0.1:{port}");
        let config = work.join("registry.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\n\
                 log:\n  level: error\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  cache:\n    blobdescriptor: inmemory\n  \
                 maintenance:\n    uploadpurging:\n      enabled: false\n\
                 http:\n  addr: {host}\n",
                storage.display()
            ),
        )?;
        let log = work.join("registry.log");
        let out = fs::File::create(&log)?;
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {} (scripts/bench.sh installs it)", binary.display()))?;
        let pid = child.id() as i32;
        REGISTRY_PID.store(pid, Ordering::SeqCst);
        let mut reg = Registry { pid, child, host, log };
        reg.wait_ready()?;
        Ok(reg)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr: std::net::SocketAddr = self.host.parse()?;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("docker-registry exited ({status}); see {}", self.log.display());
            }
            if let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                use std::io::{Read, Write};
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let req = format!("GET /v2/ HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.host);
                if s.write_all(req.as_bytes()).is_ok() {
                    let mut buf = [0u8; 12];
                    if s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.1 200") {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                bail!("docker-registry did not answer on {} within 20 s; see {}", self.host, self.log.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.host)
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // SAFETY: plain syscall on the PID of our own child.
        unsafe {
            libc::kill(self.pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                REGISTRY_PID.store(0, Ordering::SeqCst);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        REGISTRY_PID.store(0, Ordering::SeqCst);
    }
}

/// A port the kernel just handed out on 127.0.0.1 (released again for the registry to bind).
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}
