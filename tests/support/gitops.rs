//! Real git repositories for the tests: a GitOps repository in a temp dir, written and committed
//! with the git CLI on `main`, reachable as a `file://` URL — or over smart HTTP through
//! `git http-backend` behind a loopback server that counts fetches. Plus Argo CD Application
//! manifests carrying argocd-image-updater annotations.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

pub const ANNOTATION_PREFIX: &str = "argocd-image-updater.argoproj.io/";

/// A git working repository on branch `main`.
pub struct GitRepo {
    dir: tempfile::TempDir,
}

impl GitRepo {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("aipr-gitops-").tempdir().expect("temp dir");
        let repo = GitRepo { dir };
        repo.git(&["init", "-q", "-b", "main"]);
        repo
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `file:///tmp/aipr-gitops-xxxx`
    pub fn url(&self) -> String {
        format!("file://{}", self.path().display())
    }

    /// Writes (or overwrites) a file, creating its directories.
    pub fn write(&self, rel: &str, content: &str) -> &Self {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
        self
    }

    /// Stages everything and commits on `main`; returns the commit id.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self.git(&["rev-parse", "HEAD"]).trim().to_string()
    }

    /// Runs git in the repository with a fixed identity and no user or system config.
    pub fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(["-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"])
            .args(args)
            .current_dir(self.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z")
            .env("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z")
            .output()
            .expect("git is missing");
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Default for GitRepo {
    fn default() -> Self {
        Self::new()
    }
}

/// An Argo CD Application manifest with argocd-image-updater annotations.
#[derive(Clone, Debug)]
pub struct App {
    pub name: String,
    pub namespace: String,
    pub repo_url: String,
    pub revision: String,
    pub path: String,
    /// Keys without the `argocd-image-updater.argoproj.io/` prefix.
    pub annotations: Vec<(String, String)>,
    /// Raw YAML lines placed under `spec.source` (already indented by 4 spaces), e.g. `helm:`.
    pub source_extra: String,
}

impl App {
    pub fn new(name: &str, repo_url: &str, path: &str) -> Self {
        App {
            name: name.into(),
            namespace: "argocd".into(),
            repo_url: repo_url.into(),
            revision: "main".into(),
            path: path.into(),
            annotations: Vec::new(),
            source_extra: String::new(),
        }
    }

    /// `argocd-image-updater.argoproj.io/image-list`
    pub fn image_list(self, value: &str) -> Self {
        self.annotate("image-list", value)
    }

    /// Any argocd-image-updater annotation, e.g. `annotate("api.update-strategy", "digest")`.
    pub fn annotate(mut self, key: &str, value: &str) -> Self {
        self.annotations.push((key.into(), value.into()));
        self
    }

    pub fn namespace(mut self, ns: &str) -> Self {
        self.namespace = ns.into();
        self
    }

    pub fn to_yaml(&self) -> String {
        // JSON strings are valid YAML double-quoted scalars: safe for `^1.0`, `regexp:...`, `*`.
        let q = |s: &str| serde_json::to_string(s).unwrap();
        let mut y = String::new();
        y.push_str("apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata:\n");
        y.push_str(&format!("  name: {}\n  namespace: {}\n", self.name, self.namespace));
        if !self.annotations.is_empty() {
            y.push_str("  annotations:\n");
            for (k, v) in &self.annotations {
                y.push_str(&format!("    {ANNOTATION_PREFIX}{k}: {}\n", q(v)));
            }
        }
        y.push_str("spec:\n  project: default\n  source:\n");
        y.push_str(&format!(
            "    repoURL: {}\n    targetRevision: {}\n    path: {}\n",
            q(&self.repo_url),
            q(&self.revision),
            q(&self.path)
        ));
        y.push_str(&self.source_extra);
        y.push_str(&format!(
            "  destination:\n    server: https://kubernetes.default.svc\n    namespace: {}\n",
            self.name
        ));
        y
    }
}

/// A Kustomization with one `images:` entry.
pub fn kustomization(image: &str, new_tag: &str) -> String {
    format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - deployment.yaml\n\
         images:\n  - name: {image}\n    newTag: {new_tag}\n"
    )
}

/// A Deployment running `image` (`name[:tag][@digest]`), plus an unrelated sidecar.
pub fn deployment(name: &str, image: &str) -> String {
    r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: NAME
spec:
  replicas: 1
  selector:
    matchLabels:
      app: NAME
  template:
    metadata:
      labels:
        app: NAME
    spec:
      containers:
        - name: NAME
          image: IMAGE
          ports:
            - containerPort: 8080
        - name: log-shipper
          image: docker.io/fluent/fluent-bit:3.0.0
"#
    .replace("NAME", name)
    .replace("IMAGE", image)
}

/// A git HTTP server on loopback (`git http-backend` as CGI) that counts what clients fetch,
/// serving every repository below `root` as `http://127.0.0.1:PORT/<dir name>`.
pub struct GitHttpServer {
    addr: std::net::SocketAddr,
    counts: Arc<Counts>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct Counts {
    /// `GET .../info/refs?service=git-upload-pack`: one per clone or fetch.
    ref_advertisements: AtomicUsize,
    /// `POST .../git-upload-pack`: pack negotiations.
    upload_packs: AtomicUsize,
}

impl GitHttpServer {
    pub fn start(root: &Path) -> Self {
        let root: PathBuf = root.to_path_buf();
        let counts = Arc::new(Counts::default());
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let state = (root, counts.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let app = axum::Router::new().fallback(cgi).with_state(Arc::new(state));
                tokio::select! {
                    _ = axum::serve(listener, app) => {}
                    _ = shutdown_rx => {}
                }
            });
        });
        let addr = addr_rx.recv().expect("git http server did not start");
        GitHttpServer { addr, counts, shutdown: Some(shutdown), thread: Some(thread) }
    }

    /// `http://127.0.0.1:PORT/<name>` for the repository in `<root>/<name>`.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}", self.addr)
    }

    /// How many times a client asked for the refs of a repository (once per clone or fetch).
    pub fn ref_advertisements(&self) -> usize {
        self.counts.ref_advertisements.load(Ordering::SeqCst)
    }

    pub fn upload_packs(&self) -> usize {
        self.counts.upload_packs.load(Ordering::SeqCst)
    }
}

impl Drop for GitHttpServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn cgi(
    axum::extract::State(state): axum::extract::State<Arc<(PathBuf, Arc<Counts>)>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let (root, counts) = (&state.0, &state.1);
    let query = uri.query().unwrap_or("");
    if uri.path().ends_with("/info/refs") && query.contains("service=git-upload-pack") {
        counts.ref_advertisements.fetch_add(1, Ordering::SeqCst);
    }
    if uri.path().ends_with("/git-upload-pack") && method == axum::http::Method::POST {
        counts.upload_packs.fetch_add(1, Ordering::SeqCst);
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let (status, out_headers, out) = super::git_http::http_backend(
        root,
        method.as_str(),
        uri.path(),
        query,
        &header("content-type"),
        &header("content-encoding"),
        &header("git-protocol"),
        None,
        body.to_vec(),
    )
    .await;
    let mut builder = axum::http::Response::builder()
        .status(axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR));
    for (k, v) in out_headers {
        builder = builder.header(k, v);
    }
    builder.body(axum::body::Body::from(out)).unwrap()
}
