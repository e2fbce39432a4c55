//! Registry credentials: AIU credential references (`env:`, `ext:`, `pullsecret:`, `secret:`,
//! the last two read through the cluster port) and docker `config.json` / `.dockerconfigjson`
//! files. Secrets never reach a log or an error:
//! [`Credentials`] redacts itself in `Debug`, and errors name only the reference.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use tokio::time::Instant;

use crate::domain::normalize_registry_host;
use crate::ports::Cluster;

/// A username and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).field("password", &"<redacted>").finish()
    }
}

impl Credentials {
    /// Splits `user:pass` at the FIRST colon: passwords such as GCR `_json_key` service-account
    /// keys hold colons and newlines. A trailing newline (script output) is dropped.
    pub fn from_user_pass(s: &str) -> Option<Self> {
        let s = s.strip_suffix('\n').unwrap_or(s);
        let s = s.strip_suffix('\r').unwrap_or(s);
        let (user, pass) = s.split_once(':')?;
        if user.is_empty() {
            return None;
        }
        Some(Credentials { username: user.to_string(), password: pass.to_string() })
    }

    pub fn basic_header(&self) -> String {
        format!("Basic {}", BASE64.encode(format!("{}:{}", self.username, self.password)))
    }
}

/// A parsed credential reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CredentialRef {
    /// `env:VAR`, value `user:pass`.
    Env(String),
    /// `ext:/path/to/script`, stdout `user:pass`.
    Ext(PathBuf),
    /// `pullsecret:ns/name`: a `kubernetes.io/dockerconfigjson` Secret; the entry for the
    /// image's registry is used.
    PullSecret { namespace: String, name: String },
    /// `secret:ns/name#field`: a Secret whose `field` holds `user:password`.
    Secret { namespace: String, name: String, field: String },
    /// `gcp:` (or `gcp:<service account>`): an access token of the GKE/GCE metadata server for
    /// the pod's (or instance's) service account, user `oauth2accesstoken` (Artifact Registry,
    /// Container Registry).
    Gcp { account: String },
}

impl CredentialRef {
    pub fn parse(reference: &str) -> Result<Self, String> {
        let r = reference.trim();
        if let Some(var) = r.strip_prefix("env:") {
            if var.is_empty() {
                return Err(format!("credential reference {r:?} names no environment variable"));
            }
            return Ok(CredentialRef::Env(var.to_string()));
        }
        if let Some(path) = r.strip_prefix("ext:") {
            if path.is_empty() {
                return Err(format!("credential reference {r:?} names no script"));
            }
            return Ok(CredentialRef::Ext(PathBuf::from(path)));
        }
        if let Some(account) = r.strip_prefix("gcp:") {
            let account = if account.is_empty() { "default" } else { account };
            if !account.chars().all(|c| c.is_ascii_alphanumeric() || "@.-_".contains(c)) {
                return Err(format!("credential reference {r:?}: expected gcp: or gcp:<service account email>"));
            }
            return Ok(CredentialRef::Gcp { account: account.to_string() });
        }
        if let Some(rest) = r.strip_prefix("pullsecret:") {
            let (namespace, name) = secret_name(rest).ok_or_else(|| format!("credential reference {r:?}: expected pullsecret:<namespace>/<name>"))?;
            return Ok(CredentialRef::PullSecret { namespace, name });
        }
        if let Some(rest) = r.strip_prefix("secret:") {
            let bad = || format!("credential reference {r:?}: expected secret:<namespace>/<name>#<field>");
            let (secret, field) = rest.split_once('#').ok_or_else(bad)?;
            let (namespace, name) = secret_name(secret).ok_or_else(bad)?;
            if field.is_empty() {
                return Err(bad());
            }
            return Ok(CredentialRef::Secret { namespace, name, field: field.to_string() });
        }
        Err(format!("unknown credential reference {r:?}: use env:VAR, ext:/path, pullsecret:ns/name, secret:ns/name#field or gcp:"))
    }
}

/// `ns/name` of a Secret (both parts, as Kubernetes names them).
fn secret_name(s: &str) -> Option<(String, String)> {
    let (namespace, name) = s.split_once('/')?;
    let valid = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    (valid(namespace) && valid(name)).then(|| (namespace.to_string(), name.to_string()))
}

/// Last credentials read for one reference (and registry) and when they expire (`None`: at the
/// end of the cycle, see [`CredentialResolver::begin_cycle`]).
type Slot = Arc<tokio::sync::Mutex<Option<(Credentials, Option<Instant>)>>>;

/// Resolves credential references. What `ext:` scripts print and what Secrets hold is read once
/// per cycle, or kept until `credsexpire` when registries.conf sets it.
#[derive(Default)]
pub(crate) struct CredentialResolver {
    cached: Mutex<HashMap<String, Slot>>,
    /// The cluster `pullsecret:` and `secret:` are read from.
    cluster: Option<Arc<dyn Cluster>>,
    /// `http://<GCE_METADATA_HOST, else metadata.google.internal>`, for `gcp:`.
    gcp_metadata: String,
    http: std::sync::OnceLock<reqwest::Client>,
}

/// A token is taken for this much less than its `expires_in`, so it never expires mid-cycle.
const TOKEN_MARGIN: Duration = Duration::from_secs(300);

/// How long an `ext:` script may run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

impl CredentialResolver {
    pub fn new(cluster: Option<Arc<dyn Cluster>>) -> Self {
        // The variable Google's own client libraries read to reach the metadata server elsewhere.
        let host = std::env::var("GCE_METADATA_HOST").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "metadata.google.internal".into());
        Self::with_metadata(cluster, format!("http://{host}"))
    }

    fn with_metadata(cluster: Option<Arc<dyn Cluster>>, gcp_metadata: String) -> Self {
        CredentialResolver { cached: Mutex::default(), cluster, gcp_metadata, http: std::sync::OnceLock::new() }
    }

    /// Credentials for `reference` and the registry `host` (which entry of a pull secret is
    /// used); errors name the reference and the Secret, never a secret value.
    pub async fn resolve(&self, reference: &str, host: &str, expire: Option<Duration>) -> Result<Credentials, String> {
        match CredentialRef::parse(reference)? {
            CredentialRef::Env(var) => {
                let value = std::env::var(&var).map_err(|_| format!("credential reference {reference:?}: environment variable {var} is not set"))?;
                Credentials::from_user_pass(&value).ok_or_else(|| format!("credential reference {reference:?}: value of {var} is not user:password"))
            }
            CredentialRef::Ext(path) => {
                let key = format!("ext:{}", path.display());
                self.cached(key, expire, || run_script(reference, &path)).await
            }
            CredentialRef::PullSecret { namespace, name } => {
                let key = format!("pullsecret:{namespace}/{name}@{}", normalize_auth_key(host));
                self.cached(key, expire, || self.pull_secret(reference, &namespace, &name, host)).await
            }
            CredentialRef::Secret { namespace, name, field } => {
                let key = format!("secret:{namespace}/{name}#{field}");
                self.cached(key, expire, || self.secret_field(reference, &namespace, &name, &field)).await
            }
            CredentialRef::Gcp { account } => self.gcp_token(reference, &account).await,
        }
    }

    /// The metadata server's token for `account`, kept until shortly before it expires.
    async fn gcp_token(&self, reference: &str, account: &str) -> Result<Credentials, String> {
        let fail = |what: String| format!("credential reference {reference:?}: {what}");
        let slot = self.cached.lock().unwrap().entry(format!("gcp:{account}")).or_default().clone();
        let mut slot = slot.lock().await;
        if let Some((creds, Some(until))) = slot.as_ref()
            && Instant::now() < *until
        {
            return Ok(creds.clone());
        }
        let http = self.http.get_or_init(|| {
            reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default()
        });
        let url = format!("{}/computeMetadata/v1/instance/service-accounts/{account}/token", self.gcp_metadata);
        let reply = http
            .get(&url)
            .header("Metadata-Flavor", "Google")
            .send()
            .await
            .map_err(|e| fail(format!("the metadata server ({url}) does not answer: {}", crate::error::chain(&e))))?;
        let status = reply.status();
        let body = reply.text().await.map_err(|e| fail(format!("reading the metadata server's answer: {e}")))?;
        if !status.is_success() {
            let first: String = body.lines().next().unwrap_or("").chars().take(200).collect();
            return Err(fail(format!("the metadata server answered {status} for {url}: {first}")));
        }
        #[derive(Deserialize)]
        struct Token {
            access_token: String,
            expires_in: u64,
        }
        let token: Token = serde_json::from_str(&body).map_err(|e| fail(format!("the metadata server's answer is not a token ({e})")))?;
        let creds = Credentials { username: "oauth2accesstoken".into(), password: token.access_token };
        let lifetime = Duration::from_secs(token.expires_in).saturating_sub(TOKEN_MARGIN);
        *slot = Some((creds.clone(), Some(Instant::now() + lifetime)));
        Ok(creds)
    }

    fn cluster(&self, reference: &str) -> Result<&Arc<dyn Cluster>, String> {
        self.cluster.as_ref().ok_or_else(|| format!("credential reference {reference:?} needs the Kubernetes API, and no cluster is configured"))
    }

    /// The entry for `host` in the `.dockerconfigjson` of Secret `namespace/name`.
    async fn pull_secret(&self, reference: &str, namespace: &str, name: &str, host: &str) -> Result<Credentials, String> {
        let fail = |what: String| format!("credential reference {reference:?}: {what}");
        let data = self.cluster(reference)?.secret(namespace, name).await.map_err(|e| fail(e.message))?;
        let (key, bytes) = [".dockerconfigjson", ".dockercfg"]
            .iter()
            .find_map(|k| data.get(*k).map(|b| (*k, b)))
            .ok_or_else(|| fail(format!("Secret {namespace}/{name} has no .dockerconfigjson (it is not a kubernetes.io/dockerconfigjson Secret)")))?;
        let text = std::str::from_utf8(bytes).map_err(|_| fail(format!("Secret {namespace}/{name}: {key} is not UTF-8")))?;
        let auths = DockerAuths::parse(text).map_err(|e| fail(format!("Secret {namespace}/{name}: {key}: {e}")))?;
        auths.get(host).cloned().ok_or_else(|| fail(format!("Secret {namespace}/{name} has no credentials for registry {host}")))
    }

    /// `user:password` in `field` of Secret `namespace/name`.
    async fn secret_field(&self, reference: &str, namespace: &str, name: &str, field: &str) -> Result<Credentials, String> {
        let fail = |what: String| format!("credential reference {reference:?}: {what}");
        let data = self.cluster(reference)?.secret(namespace, name).await.map_err(|e| fail(e.message))?;
        let value = data.get(field).ok_or_else(|| fail(format!("Secret {namespace}/{name} has no key {field:?}")))?;
        let text = std::str::from_utf8(value).map_err(|_| fail(format!("Secret {namespace}/{name}: {field} is not UTF-8")))?;
        Credentials::from_user_pass(text).ok_or_else(|| fail(format!("Secret {namespace}/{name}: {field} is not user:password")))
    }

    /// A new cycle: script output without `credsexpire` was valid "for the run", and a daemon's
    /// run is one cycle, so such scripts run again (with `credsexpire`, the expiry decides).
    pub fn begin_cycle(&self) {
        self.cached.lock().unwrap().retain(|_, slot| match slot.try_lock() {
            Ok(cached) => cached.as_ref().is_some_and(|(_, until)| until.is_some()),
            // A script still running for another caller keeps its slot.
            Err(_) => true,
        });
    }

    /// `read` once per `key` until the slot expires; concurrent callers wait and reuse it.
    async fn cached<F, Fut>(&self, key: String, expire: Option<Duration>, read: F) -> Result<Credentials, String>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Credentials, String>>,
    {
        let slot = self.cached.lock().unwrap().entry(key).or_default().clone();
        let mut slot = slot.lock().await;
        if let Some((creds, until)) = slot.as_ref()
            && until.is_none_or(|t| Instant::now() < t)
        {
            return Ok(creds.clone());
        }
        let creds = read().await?;
        *slot = Some((creds.clone(), expire.map(|d| Instant::now() + d)));
        Ok(creds)
    }
}

async fn run_script(reference: &str, path: &Path) -> Result<Credentials, String> {
    let fail = |what: String| format!("credential reference {reference:?}: {what}");
    let mut attempt = 0;
    let out = loop {
        let child = tokio::process::Command::new(path)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        match tokio::time::timeout(SCRIPT_TIMEOUT, child).await {
            Err(_) => return Err(fail(format!("script did not finish within {}s", SCRIPT_TIMEOUT.as_secs()))),
            // A script written a moment ago can still be open in a forking process (ETXTBSY).
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && attempt < 5 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(Err(e)) => return Err(fail(format!("cannot run script: {e}"))),
            Ok(Ok(out)) => break out,
        }
    };
    if !out.status.success() {
        // stderr is diagnostics, not the credential; keep it short.
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first: String = stderr.lines().next().unwrap_or("").chars().take(200).collect();
        return Err(fail(format!("script failed ({}): {first}", out.status)));
    }
    let stdout = String::from_utf8(out.stdout).map_err(|_| fail("script output is not UTF-8".into()))?;
    Credentials::from_user_pass(&stdout).ok_or_else(|| fail("script output is not user:password".into()))
}

/// Credentials from docker config files, by normalized registry host; earlier files win.
#[derive(Debug, Default)]
pub(crate) struct DockerAuths {
    by_host: HashMap<String, Credentials>,
}

#[derive(Deserialize)]
struct DockerConfigFile {
    auths: Option<HashMap<String, DockerAuthEntry>>,
}

#[derive(Deserialize)]
struct DockerAuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

impl DockerAuths {
    /// Reads `paths` (each must exist) and `optional` (files from Secrets that may be absent: an
    /// absent one is skipped with a log line); earlier files win.
    pub fn load(paths: &[PathBuf], optional: &[PathBuf]) -> Result<Self, String> {
        let mut all = DockerAuths::default();
        for path in paths.iter().map(|p| (p, false)).chain(optional.iter().map(|p| (p, true))) {
            let (path, may_be_absent) = path;
            if may_be_absent && !path.exists() {
                tracing::info!("optional docker config {} is absent; skipped", path.display());
                continue;
            }
            let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read docker config {}: {e}", path.display()))?;
            let one = Self::parse(&text).map_err(|e| format!("docker config {}: {e}", path.display()))?;
            for (host, creds) in one.by_host {
                all.by_host.entry(host).or_insert(creds);
            }
        }
        Ok(all)
    }

    /// Parses `{"auths": {...}}` (`config.json`, `.dockerconfigjson`) or the legacy
    /// `.dockercfg` map without `auths`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
        let auths: HashMap<String, DockerAuthEntry> = if value.get("auths").is_some() {
            serde_json::from_value::<DockerConfigFile>(value).map_err(|e| format!("invalid auths: {e}"))?.auths.unwrap_or_default()
        } else {
            // Legacy `.dockercfg`: the map itself; other config.json keys (credHelpers...) are skipped.
            serde_json::from_value(value).unwrap_or_default()
        };
        let mut by_host = HashMap::new();
        for (key, entry) in auths {
            let creds = match (&entry.auth, &entry.username, &entry.password) {
                (Some(auth), _, _) if !auth.is_empty() => {
                    let raw = BASE64.decode(auth.trim()).map_err(|_| format!("auth of {key:?} is not base64"))?;
                    let s = String::from_utf8(raw).map_err(|_| format!("auth of {key:?} is not UTF-8"))?;
                    Credentials::from_user_pass(&s).ok_or_else(|| format!("auth of {key:?} is not user:password"))?
                }
                (_, Some(u), Some(p)) => Credentials { username: u.clone(), password: p.clone() },
                _ => continue,
            };
            by_host.insert(normalize_auth_key(&key), creds);
        }
        Ok(DockerAuths { by_host })
    }

    /// Credentials for an image's registry host (`docker.io`, `ghcr.io`, `localhost:5000`).
    pub fn get(&self, host: &str) -> Option<&Credentials> {
        self.by_host.get(&normalize_auth_key(host))
    }
}

/// `https://index.docker.io/v1/`, `index.docker.io`, `docker.io` → `docker.io`;
/// `https://ghcr.io/v2/` → `ghcr.io`.
fn normalize_auth_key(key: &str) -> String {
    let k = key.trim();
    let k = k.strip_prefix("https://").or_else(|| k.strip_prefix("http://")).unwrap_or(k);
    let host = k.split('/').next().unwrap_or(k).to_ascii_lowercase();
    normalize_registry_host(&host).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON_KEY: &str = "{\n  \"type\": \"service_account\",\n  \"private_key\": \"-----BEGIN PRIVATE KEY-----\\nMIIE:abc\\n\",\n  \"client_email\": \"bot@p.iam.gserviceaccount.com\"\n}";

    #[test]
    fn user_pass_splits_at_first_colon() {
        let c = Credentials::from_user_pass(&format!("_json_key:{JSON_KEY}\n")).unwrap();
        assert_eq!(c.username, "_json_key");
        assert_eq!(c.password, JSON_KEY);
        assert_eq!(Credentials::from_user_pass("a:b:c").unwrap().password, "b:c");
        assert_eq!(Credentials::from_user_pass("a:").unwrap().password, "");
        assert!(Credentials::from_user_pass("nocolon").is_none());
        assert!(Credentials::from_user_pass(":pass").is_none());
        assert!(!format!("{c:?}").contains("PRIVATE"), "Debug must not show the password");
    }

    #[test]
    fn docker_config_forms() {
        let json_key_auth = BASE64.encode(format!("_json_key:{JSON_KEY}"));
        let text = format!(
            r#"{{"auths": {{
                "https://index.docker.io/v1/": {{"auth": "{}"}},
                "ghcr.io": {{"username": "u", "password": "p:w"}},
                "https://gcr.io": {{"auth": "{json_key_auth}"}},
                "localhost:5000": {{"auth": ""}}
            }}, "credHelpers": {{"x": "y"}}}}"#,
            BASE64.encode("hub:secret")
        );
        let auths = DockerAuths::parse(&text).unwrap();
        let cases = [
            ("docker.io", Some(("hub", "secret"))),
            ("ghcr.io", Some(("u", "p:w"))),
            ("gcr.io", Some(("_json_key", JSON_KEY))),
            ("localhost:5000", None),
            ("quay.io", None),
        ];
        for (host, want) in cases {
            let got = auths.get(host).map(|c| (c.username.as_str(), c.password.as_str()));
            assert_eq!(got, want, "case {host}");
        }
        // Legacy .dockercfg, and host keys written with a scheme and /v2/.
        let legacy = DockerAuths::parse(&format!(r#"{{"https://r.example/v2/": {{"auth": "{}"}}}}"#, BASE64.encode("a:b"))).unwrap();
        assert_eq!(legacy.get("r.example").unwrap().username, "a");
        assert!(DockerAuths::parse("{").unwrap_err().contains("invalid JSON"));
        assert!(DockerAuths::parse(r#"{"auths":{"x":{"auth":"***"}}}"#).unwrap_err().contains("\"x\""));
    }

    #[test]
    fn docker_config_files_earlier_wins_and_errors_name_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.json");
        let b = dir.path().join("b.json");
        std::fs::write(&a, r#"{"auths":{"ghcr.io":{"username":"first","password":"1"}}}"#).unwrap();
        std::fs::write(&b, r#"{"auths":{"ghcr.io":{"username":"second","password":"2"},"quay.io":{"username":"q","password":"3"}}}"#).unwrap();
        let auths = DockerAuths::load(&[a.clone(), b.clone()], &[]).unwrap();
        assert_eq!(auths.get("ghcr.io").unwrap().username, "first");
        assert_eq!(auths.get("quay.io").unwrap().username, "q");
        std::fs::write(&b, "nope").unwrap();
        let err = DockerAuths::load(std::slice::from_ref(&b), &[]).unwrap_err();
        assert!(err.contains(&b.display().to_string()), "{err}");
        // An optional file that is absent is skipped; a required one is an error naming it.
        let absent = dir.path().join("absent.json");
        let auths = DockerAuths::load(&[], &[absent.clone(), a.clone()]).unwrap();
        assert_eq!(auths.get("ghcr.io").unwrap().username, "first");
        let err = DockerAuths::load(std::slice::from_ref(&absent), &[]).unwrap_err();
        assert!(err.contains("absent.json"), "{err}");
    }

    #[tokio::test]
    async fn env_references_and_kubernetes_ones_without_a_cluster() {
        let r = CredentialResolver::default();
        // SAFETY: the variable name is unique to this test; no other thread reads it.
        unsafe { std::env::set_var("AIPR_TEST_REGISTRY_CREDS_1", "user:pa:ss") };
        let c = r.resolve("env:AIPR_TEST_REGISTRY_CREDS_1", "ghcr.io", None).await.unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("user", "pa:ss"));
        let err = r.resolve("env:AIPR_TEST_REGISTRY_UNSET_VAR", "ghcr.io", None).await.unwrap_err();
        assert!(err.contains("env:AIPR_TEST_REGISTRY_UNSET_VAR") && err.contains("not set"), "{err}");
        for reference in ["pullsecret:argocd/regcred", "secret:argocd/creds#token"] {
            let err = r.resolve(reference, "ghcr.io", None).await.unwrap_err();
            assert!(err.contains(reference) && err.contains("Kubernetes API"), "{err}");
        }
        assert!(r.resolve("vault:x", "ghcr.io", None).await.unwrap_err().contains("unknown credential reference"));
        for bad in ["pullsecret:regcred", "pullsecret:/x", "secret:argocd/creds", "secret:argocd/creds#", "secret:Argo/x#f"] {
            let err = r.resolve(bad, "ghcr.io", None).await.unwrap_err();
            assert!(err.contains(bad) && err.contains("expected"), "{err}");
        }
    }

    /// Secrets by `namespace/name`, counting reads.
    #[derive(Default)]
    struct Secrets {
        data: HashMap<String, crate::ports::SecretData>,
        reads: std::sync::atomic::AtomicU64,
    }

    impl Cluster for Secrets {
        fn list<'a>(
            &'a self,
            _: crate::ports::ClusterKind,
            _: Option<&'a str>,
        ) -> futures::future::BoxFuture<'a, Result<Vec<crate::ports::ClusterObject>, crate::ports::ClusterError>> {
            Box::pin(async { Ok(Vec::new()) })
        }

        fn labelled_secrets<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
            _: &'a str,
        ) -> futures::future::BoxFuture<'a, Result<Vec<(String, crate::ports::SecretData)>, crate::ports::ClusterError>> {
            Box::pin(async { Ok(Vec::new()) })
        }

        fn secret<'a>(&'a self, ns: &'a str, name: &'a str) -> futures::future::BoxFuture<'a, Result<crate::ports::SecretData, crate::ports::ClusterError>> {
            self.reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let found = self.data.get(&format!("{ns}/{name}")).cloned();
            Box::pin(async move {
                found.ok_or_else(|| crate::ports::ClusterError {
                    kind: crate::ports::ClusterErrorKind::NotFound,
                    message: format!("Kubernetes API https://k: reading Secret {ns}/{name}: 404 NotFound: secrets \"{name}\" not found"),
                })
            })
        }
    }

    #[tokio::test]
    async fn pull_secrets_and_secret_fields_are_read_from_the_cluster_once_per_cycle() {
        let mut secrets = Secrets::default();
        let dockerconfig = format!(r#"{{"auths":{{"ghcr.io":{{"auth":"{}"}},"https://index.docker.io/v1/":{{"username":"hub","password":"h"}}}}}}"#, BASE64.encode("robot:tok"));
        secrets.data.insert("argocd/regcred".into(), [(".dockerconfigjson".to_string(), dockerconfig.into_bytes())].into());
        secrets.data.insert("argocd/creds".into(), [("token".to_string(), b"ci:s3cret\n".to_vec()), ("bad".to_string(), b"nocolon".to_vec())].into());
        secrets.data.insert("argocd/opaque".into(), [("x".to_string(), b"y".to_vec())].into());
        let cluster = Arc::new(secrets);
        let r = CredentialResolver::new(Some(cluster.clone()));

        let c = r.resolve("pullsecret:argocd/regcred", "ghcr.io", None).await.unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("robot", "tok"));
        let hub = r.resolve("pullsecret:argocd/regcred", "docker.io", None).await.unwrap();
        assert_eq!(hub.username, "hub", "Docker Hub's index key names docker.io");
        let c = r.resolve("secret:argocd/creds#token", "ghcr.io", None).await.unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("ci", "s3cret"));
        assert_eq!(cluster.reads.load(std::sync::atomic::Ordering::Relaxed), 3);
        r.resolve("pullsecret:argocd/regcred", "ghcr.io", None).await.unwrap();
        r.resolve("secret:argocd/creds#token", "quay.io", None).await.unwrap();
        assert_eq!(cluster.reads.load(std::sync::atomic::Ordering::Relaxed), 3, "read once per cycle");
        r.begin_cycle();
        r.resolve("secret:argocd/creds#token", "ghcr.io", None).await.unwrap();
        assert_eq!(cluster.reads.load(std::sync::atomic::Ordering::Relaxed), 4, "read again in the next cycle");

        let cases = [
            ("pullsecret:argocd/regcred", "quay.io", "has no credentials for registry quay.io"),
            ("pullsecret:argocd/opaque", "ghcr.io", "Secret argocd/opaque has no .dockerconfigjson"),
            ("pullsecret:argocd/missing", "ghcr.io", "reading Secret argocd/missing: 404"),
            ("secret:argocd/creds#nope", "ghcr.io", "Secret argocd/creds has no key \"nope\""),
            ("secret:argocd/creds#bad", "ghcr.io", "argocd/creds: bad is not user:password"),
        ];
        for (reference, host, want) in cases {
            let err = r.resolve(reference, host, None).await.unwrap_err();
            assert!(err.contains(reference) && err.contains(want), "case {reference}: {err}");
            assert!(!err.contains("s3cret") && !err.contains("tok\""), "{err}");
        }
    }

    #[tokio::test]
    async fn ext_script_cached_until_credsexpire() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let counter = dir.path().join("runs");
        let script = dir.path().join("creds.sh");
        std::fs::write(
            &script,
            format!("#!/bin/sh\necho x >> '{}'\necho \"robot:tok:$(wc -l < '{}' | tr -d ' ')\"\n", counter.display(), counter.display()),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let reference = format!("ext:{}", script.display());

        let r = CredentialResolver::default();
        let expire = Some(Duration::from_millis(300));
        let first = r.resolve(&reference, "r.example", expire).await.unwrap();
        assert_eq!((first.username.as_str(), first.password.as_str()), ("robot", "tok:1"));
        let again = r.resolve(&reference, "r.example", expire).await.unwrap();
        assert_eq!(again.password, "tok:1", "cached before credsexpire");
        tokio::time::sleep(Duration::from_millis(400)).await;
        let renewed = r.resolve(&reference, "r.example", expire).await.unwrap();
        assert_eq!(renewed.password, "tok:2", "script re-run after credsexpire");

        let failing = dir.path().join("fail.sh");
        std::fs::write(&failing, "#!/bin/sh\necho 'no session' >&2\nexit 3\n").unwrap();
        std::fs::set_permissions(&failing, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = r.resolve(&format!("ext:{}", failing.display()), "r.example", None).await.unwrap_err();
        assert!(err.contains("fail.sh") && err.contains("no session"), "{err}");
        let err = r.resolve("ext:/nonexistent/aipr-script", "r.example", None).await.unwrap_err();
        assert!(err.contains("/nonexistent/aipr-script") && err.contains("cannot run"), "{err}");
    }
}

#[cfg(test)]
mod gcp_tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// The GKE/GCE metadata server as documented: `GET .../service-accounts/<account>/token` with
    /// `Metadata-Flavor: Google` (else 403), `{"access_token", "expires_in", "token_type"}`.
    async fn metadata_server(expires_in: u64) -> (String, Arc<AtomicU32>) {
        use axum::http::HeaderMap;
        let calls = Arc::new(AtomicU32::new(0));
        let counted = calls.clone();
        let app = axum::Router::new().route(
            "/computeMetadata/v1/instance/service-accounts/{account}/token",
            axum::routing::get(move |axum::extract::Path(account): axum::extract::Path<String>, headers: HeaderMap| {
                let counted = counted.clone();
                async move {
                    if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
                        return (axum::http::StatusCode::FORBIDDEN, "Missing Metadata-Flavor:Google header.".to_string());
                    }
                    let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
                    (axum::http::StatusCode::OK, serde_json::json!({"access_token": format!("ya29.{account}.{n}"), "expires_in": expires_in, "token_type": "Bearer"}).to_string())
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, calls)
    }

    #[tokio::test]
    async fn gcp_tokens_come_from_the_metadata_server_and_are_kept_until_shortly_before_expiry() {
        let (url, calls) = metadata_server(3600).await;
        let r = CredentialResolver::with_metadata(None, url.clone());
        let c = r.resolve("gcp:", "europe-docker.pkg.dev", None).await.unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("oauth2accesstoken", "ya29.default.1"));
        r.begin_cycle();
        r.resolve("gcp:", "europe-docker.pkg.dev", None).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1, "kept across cycles while valid");
        let other = r.resolve("gcp:puller@proj.iam.gserviceaccount.com", "gcr.io", None).await.unwrap();
        assert_eq!(other.password, "ya29.puller@proj.iam.gserviceaccount.com.2");

        // A token living less than the margin is asked again each time.
        let (url, calls) = metadata_server(60).await;
        let r = CredentialResolver::with_metadata(None, url);
        r.resolve("gcp:", "gcr.io", None).await.unwrap();
        r.resolve("gcp:", "gcr.io", None).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);

        // No metadata server: an error naming the reference and where it looked.
        let r = CredentialResolver::with_metadata(None, "http://127.0.0.1:9".into());
        let err = r.resolve("gcp:", "gcr.io", None).await.unwrap_err();
        assert!(err.contains("\"gcp:\"") && err.contains("127.0.0.1:9") && err.contains("does not answer"), "{err}");
        assert!(CredentialRef::parse("gcp:bad account").unwrap_err().contains("expected gcp:"));
    }
}

