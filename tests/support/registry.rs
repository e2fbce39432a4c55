//! A real CNCF Distribution registry (`/usr/bin/docker-registry`, Debian's package) on a free
//! loopback port, with its storage in a temp dir, in one of three auth modes. One process per
//! `TestRegistry`, killed by PID when it is dropped, so tests run in parallel without sharing.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::oci_push::{ImageSpec, PushAuth, PushedManifest, Pusher};
use super::token_server::TokenServer;

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// How clients must authenticate.
#[derive(Clone, Debug)]
pub enum Auth {
    Anonymous,
    /// `auth.htpasswd` with a bcrypt file made by `htpasswd -Bbc`.
    Htpasswd { user: String, pass: String },
    /// `auth.token`: a token server of our own checks these basic credentials at its realm and
    /// signs RS256 JWTs that the registry trusts through `rootcertbundle`.
    Token { user: String, pass: String },
}

impl Auth {
    pub fn htpasswd(user: &str, pass: &str) -> Self {
        Auth::Htpasswd { user: user.into(), pass: pass.into() }
    }
    pub fn token(user: &str, pass: &str) -> Self {
        Auth::Token { user: user.into(), pass: pass.into() }
    }
}

pub struct TestRegistry {
    child: Child,
    host: String,
    auth: Auth,
    token_server: Option<TokenServer>,
    runtime: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
}

impl TestRegistry {
    /// Starts a registry and waits until `/v2/` answers. Panics with the registry's log if it
    /// cannot start.
    pub fn start(auth: Auth) -> Self {
        if !Path::new(REGISTRY_BIN).exists() {
            panic!(
                "{REGISTRY_BIN} is missing: run scripts/test.sh, it installs docker-registry \
                 (or: apt-get install -y docker-registry apache2-utils)"
            );
        }
        let dir = tempfile::Builder::new().prefix("aipr-registry-").tempdir().expect("temp dir");
        let token_server = match &auth {
            Auth::Token { user, pass } => Some(TokenServer::start(user, pass, dir.path())),
            _ => None,
        };
        let auth_section = match &auth {
            Auth::Anonymous => String::new(),
            Auth::Htpasswd { user, pass } => {
                let file = dir.path().join("htpasswd");
                let status = Command::new("htpasswd")
                    .arg("-Bbc")
                    .arg(&file)
                    .arg(user)
                    .arg(pass)
                    .stderr(Stdio::null())
                    .status()
                    .expect("htpasswd is missing: run scripts/test.sh, it installs apache2-utils");
                assert!(status.success(), "htpasswd -Bbc failed");
                format!("auth:\n  htpasswd:\n    realm: test-realm\n    path: {}\n", file.display())
            }
            Auth::Token { .. } => {
                let ts = token_server.as_ref().unwrap();
                format!(
                    "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                    ts.realm(),
                    TokenServer::SERVICE,
                    TokenServer::ISSUER,
                    ts.cert_path().display()
                )
            }
        };
        // A free port can be taken by someone else between our probe and the registry's bind:
        // try a few ports before giving up.
        let mut last_log = String::new();
        for attempt in 0..5 {
            let port = free_port();
            let host = format!("127.0.0.1:{port}");
            let config = dir.path().join("config.yml");
            let storage = dir.path().join("storage");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
                     storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                     http:\n  addr: {host}\n{auth_section}",
                    storage.display()
                ),
            )
            .expect("write registry config");
            let log_path = dir.path().join(format!("registry-{attempt}.log"));
            let mut child = spawn_registry(&config, &log_path);
            if !wait_ready(&mut child, &host) {
                let _ = child.kill();
                let _ = child.wait();
                last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
                continue;
            }
            return TestRegistry {
                child,
                host,
                auth,
                token_server,
                runtime: tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("tokio runtime"),
                dir,
            };
        }
        panic!("docker-registry did not start; its log:\n{last_log}");
    }

    /// A second registry process serving this one's storage over TLS (anonymous), with a
    /// certificate for `127.0.0.1` from a test CA: push to this registry, read from the twin.
    pub fn tls_twin(&self) -> TlsTwin {
        let dir = tempfile::Builder::new().prefix("aipr-registry-tls-").tempdir().expect("temp dir");
        let ca = super::tls::TestCa::new(dir.path());
        for attempt in 0..5 {
            let host = format!("127.0.0.1:{}", free_port());
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
                     storage:\n  filesystem:\n    rootdirectory: {}\n\
                     http:\n  addr: {host}\n  tls:\n    certificate: {}\n    key: {}\n",
                    self.dir.path().join("storage").display(),
                    ca.cert_pem.display(),
                    ca.key_pem.display()
                ),
            )
            .expect("write registry config");
            let mut child = spawn_registry(&config, &dir.path().join(format!("registry-{attempt}.log")));
            // TLS: wait until the port accepts connections.
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline && TcpStream::connect(&host).is_err() {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if TcpStream::connect(&host).is_ok() {
                return TlsTwin { child, host, ca, _dir: dir };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("docker-registry with TLS did not start; logs in {}", dir.keep().display());
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `127.0.0.1:PORT`, as it appears in image names.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `127.0.0.1:PORT/<repo>`
    pub fn image(&self, repo: &str) -> String {
        format!("{}/{repo}", self.host)
    }

    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    pub fn token_server(&self) -> Option<&TokenServer> {
        self.token_server.as_ref()
    }

    /// The registry process id (gone once this value is dropped).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A pusher holding the registry's own credentials.
    pub fn pusher(&self) -> Pusher {
        let auth = match &self.auth {
            Auth::Anonymous => PushAuth::Anonymous,
            Auth::Htpasswd { user, pass } | Auth::Token { user, pass } => {
                PushAuth::Basic { user: user.clone(), pass: pass.clone() }
            }
        };
        Pusher::new(&self.host, auth)
    }

    /// Runs a future on the registry's own runtime (tests stay synchronous, so a blocking wait
    /// on the binary under test never starves a server).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// Pushes a distinct linux/amd64 image per tag, built a day apart in the order given;
    /// returns the manifest digests in that order.
    pub fn push_tags(&self, repo: &str, tags: &[&str]) -> Vec<String> {
        let pusher = self.pusher();
        tags.iter()
            .enumerate()
            .map(|(i, tag)| {
                let spec = ImageSpec::new(&day(i as i64), &format!("{repo}:{tag}"));
                self.block_on(pusher.push_image(repo, tag, &spec))
                    .unwrap_or_else(|e| panic!("push {repo}:{tag}: {e}"))
            })
            .collect()
    }

    /// Pushes one image as `repo:tag`; returns its manifest digest.
    pub fn push_image(&self, repo: &str, tag: &str, spec: &ImageSpec) -> String {
        self.block_on(self.pusher().push_image(repo, tag, spec))
            .unwrap_or_else(|e| panic!("push {repo}:{tag}: {e}"))
    }

    /// Pushes an image index as `repo:tag`; returns the index digest.
    pub fn push_index(&self, repo: &str, tag: &str, platforms: &[ImageSpec]) -> String {
        self.block_on(self.pusher().push_index(repo, tag, platforms))
            .unwrap_or_else(|e| panic!("push index {repo}:{tag}: {e}"))
            .0
    }

    /// Points every tag at one new image; returns its digest.
    pub fn tag_many(&self, repo: &str, tags: &[String]) -> String {
        let pusher = self.pusher();
        self.block_on(async {
            let m: PushedManifest =
                pusher.push_image_untagged(repo, &ImageSpec::new(&day(0), repo)).await?;
            pusher.tag_many(repo, &m, tags, 16).await?;
            Ok::<_, super::oci_push::Error>(m.digest)
        })
        .unwrap_or_else(|e| panic!("tag many on {repo}: {e}"))
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `2024-01-01T00:00:00Z` moved by `n` days (negative: earlier), as an image's `created`.
pub fn day(n: i64) -> String {
    let date = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap() + chrono::Duration::days(n);
    format!("{date}T00:00:00Z")
}

/// `docker-registry serve CONFIG`, its output to `log`.
fn spawn_registry(config: &Path, log: &Path) -> Child {
    let log = std::fs::File::create(log).expect("registry log");
    Command::new(REGISTRY_BIN)
        .arg("serve")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {REGISTRY_BIN}: {e}"))
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A loopback port that refuses connections for as long as this value lives (for "registry
/// unreachable"): a socket bound to it without listening, so no other test can take it.
pub struct ClosedPort {
    fd: libc::c_int,
    port: u16,
}

impl ClosedPort {
    pub fn new() -> Self {
        // SAFETY: plain socket calls on a zeroed sockaddr_in owned by this frame; the fd is
        // closed exactly once, in Drop.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0, "socket(): {}", std::io::Error::last_os_error());
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as libc::sa_family_t;
            addr.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
            let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let rc = libc::bind(fd, &addr as *const _ as *const libc::sockaddr, len);
            assert_eq!(rc, 0, "bind(): {}", std::io::Error::last_os_error());
            let rc = libc::getsockname(fd, &mut addr as *mut _ as *mut libc::sockaddr, &mut len);
            assert_eq!(rc, 0, "getsockname(): {}", std::io::Error::last_os_error());
            ClosedPort { fd, port: u16::from_be(addr.sin_port) }
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Default for ClosedPort {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for ClosedPort {
    fn drop(&mut self) {
        // SAFETY: fd came from socket() and is closed only here.
        unsafe {
            libc::close(self.fd);
        }
    }
}

/// The status of a plain `GET path` over HTTP/1.0, or None if nothing answers.
pub fn http_status(host: &str, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(host).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    while got.len() < 12 {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&got);
    line.split_whitespace().nth(1)?.parse().ok()
}

/// True when `/v2/` answers with any HTTP status; false when the process exited first.
fn wait_ready(child: &mut Child, host: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if http_status(host, "/v2/").is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

/// See [`TestRegistry::tls_twin`]; killed by PID when dropped.
pub struct TlsTwin {
    child: Child,
    host: String,
    pub ca: super::tls::TestCa,
    _dir: tempfile::TempDir,
}

impl TlsTwin {
    /// `127.0.0.1:PORT`, as it appears in image names.
    pub fn host(&self) -> &str {
        &self.host
    }
}

impl Drop for TlsTwin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
