//! OCI distribution client: tag lists, manifests, image indexes and config blobs, with
//! anonymous, basic and Bearer-token auth, `registries.conf` and docker `config.json`
//! credentials, one tag list per repository per run, and bounded concurrency per registry.
//!
//! Written on reqwest rather than `oci-client` (checked against oras-project/rust-oci-client
//! 0.17): its `list_tags(image, auth, n, last)` returns a single page and never follows the
//! `Link` header; it has no 429 / `Retry-After` handling, so a throttled request is just an
//! error; and it keeps the `RegistryAuth` of the first call per registry inside the `Client`
//! (`store_auth_if_needed`), so later calls with another credential set silently reuse the
//! first one. One shared client here serves images with different credentials.
//!
//! Registry resolution is described in [`config`]; credential order per image: the image's
//! pull-secret reference, else the `registries.conf` entry's `credentials`, else docker config
//! files. AIU's `ping` (GET `/v2/` first) is not done: the first real request answers the same
//! question and its 401 challenge is remembered per registry.

mod cache;
mod kept;
mod config;
mod credentials;
mod driver;
mod headers;
mod transport;

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod tests;

pub(crate) use config::parse_go_duration;
pub use driver::RegistryDriver;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, LINK};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use url::Url;

use crate::domain::{DefaultRegistry, ImageName, Platform};
use crate::http::{StatusKind, next_link};
use crate::ports::Cluster;
pub use crate::ports::{RegistryError, RegistryErrorKind, TagMetadata};

use cache::SingleFlight;
use config::{Endpoint, RegistriesConf};
use credentials::{CredentialResolver, Credentials, DockerAuths};
use transport::{HostState, Reply, Token, redact_query};

impl RegistryError {
    fn setup(message: String) -> Self {
        RegistryError { registry: String::new(), repository: None, tag: None, kind: RegistryErrorKind::Config, message }
    }
}

/// Settings of the registry client for one run.
#[derive(Debug, Clone, Default)]
pub struct RegistrySettings {
    /// Path of an argocd-image-updater `registries.conf`.
    pub registries_conf: Option<std::path::PathBuf>,
    /// docker `config.json` / `.dockerconfigjson` files to take credentials from.
    pub docker_configs: Vec<std::path::PathBuf>,
    /// The same, from Secrets that may be absent: an absent file is skipped with a log line.
    pub optional_docker_configs: Vec<std::path::PathBuf>,
    /// Connecting to a registry (10 s when not set).
    pub connect_timeout: Option<Duration>,
    /// One whole request (60 s when not set).
    pub request_timeout: Option<Duration>,
    /// `--cache-dir`: manifests and configs by digest and tags' last digests are kept there
    /// (`registry/kept.json`) between runs, so a `--once` run revalidates with `HEAD` too.
    pub cache_dir: Option<std::path::PathBuf>,
}

/// How long what a registry said of a tag is used without asking again, for tags whose answer
/// cannot change the proposal (newest-build candidates older than the running build): a tag
/// pushed again under an old name is noticed within this time.
pub(crate) const REVALIDATE_AFTER: chrono::Duration = chrono::Duration::minutes(10);

/// Pages of one tag list the bot follows, and tags it takes per repository: far above any real
/// repository, low enough that an endless `Link` chain or tag list ends with an error.
const MAX_TAG_PAGES: usize = 1000;
const MAX_TAGS: usize = 200_000;

/// The OCI distribution grammar of a tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub(crate) fn is_valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..].iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// Media types a tag may resolve to; distribution answers 404 to a manifest GET without them.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Registry API base, repository, credential set: the identity of tag lists and tokens.
type CacheKey = (String, String, Option<Credentials>);

/// The registry client shared by every Application, kept across the cycles of a daemon
/// ([`RegistryClient::begin_cycle`] forgets what can change).
pub struct RegistryClient {
    conf: RegistriesConf,
    docker_auths: DockerAuths,
    resolver: CredentialResolver,
    /// Built on first use: loading the system's root certificates takes a tenth of a second,
    /// which [`Self::prepare`] moves off the critical path and a run without `insecure:`
    /// registries never pays twice.
    http: OnceLock<Result<reqwest::Client, String>>,
    http_insecure: OnceLock<Result<reqwest::Client, String>>,
    /// Clients that also trust a registries.conf entry's `ca_file`/`ca_data`, by PEM.
    http_with_ca: Mutex<HashMap<Arc<str>, reqwest::Client>>,
    requests: AtomicU64,
    /// Requests since the cycle began, by registry host.
    by_registry: Mutex<std::collections::BTreeMap<String, u64>>,
    /// (connect, whole request)
    timeouts: (Duration, Duration),
    hosts: Mutex<HashMap<String, Arc<HostState>>>,
    tokens: Mutex<HashMap<CacheKey, Arc<tokio::sync::Mutex<Option<Token>>>>>,
    tag_lists: SingleFlight<CacheKey, Result<Arc<[String]>, RegistryError>>,
    /// By (key, tag or digest).
    manifests: SingleFlight<(CacheKey, String), Result<Arc<Manifest>, RegistryError>>,
    /// By (key, tag): digests from HEAD.
    digests: SingleFlight<(CacheKey, String), Result<String, RegistryError>>,
    /// By (registry API base, config digest); failures are not kept.
    configs: SingleFlight<(String, String), Arc<ImageConfig>>,
    /// Kept across cycles: manifests by digest (immutable) and the digest each tag had, so that
    /// a later cycle asks a tag's digest with one `HEAD` (which Docker Hub does not count as a
    /// pull) and reads nothing more while it is the same.
    kept: Mutex<Kept>,
    /// Where [`Self::kept`] is written at the end of a cycle (`--cache-dir`).
    kept_file: Option<std::path::PathBuf>,
}

type RepoRefKey = (String, String, String);

/// Manifests by (registry API base, repository, digest), and tags' last digests by (registry
/// API base, repository, tag). Credentials are no part of the keys: content is addressed by
/// its digest, and a tag is asked again with the current credentials each cycle. Two
/// generations: what the last cycle used and what this one did; an entry no cycle used for a
/// whole cycle is forgotten, so a daemon that runs for months holds what it uses.
#[derive(Default)]
struct Kept {
    manifests: HashMap<RepoRefKey, Arc<Manifest>>,
    /// A tag's digest, and when the registry last said so.
    tags: HashMap<RepoRefKey, (String, DateTime<Utc>)>,
    last_manifests: HashMap<RepoRefKey, Arc<Manifest>>,
    last_tags: HashMap<RepoRefKey, (String, DateTime<Utc>)>,
    /// Config blobs a previous run kept, until the client takes them over.
    last_configs: HashMap<(String, String), Arc<ImageConfig>>,
}

impl Kept {
    fn manifest(&mut self, key: &RepoRefKey) -> Option<Arc<Manifest>> {
        if let Some(m) = self.manifests.get(key) {
            return Some(m.clone());
        }
        let m = self.last_manifests.remove(key)?;
        self.manifests.insert(key.clone(), m.clone());
        Some(m)
    }

    fn tag(&mut self, key: &RepoRefKey) -> Option<(String, DateTime<Utc>)> {
        if let Some(d) = self.tags.get(key) {
            return Some(d.clone());
        }
        let d = self.last_tags.remove(key)?;
        self.tags.insert(key.clone(), d.clone());
        Some(d)
    }

    fn confirm(&mut self, key: RepoRefKey, digest: String) {
        self.tags.insert(key, (digest, Utc::now()));
    }

    fn next_cycle(&mut self) {
        self.last_manifests = std::mem::take(&mut self.manifests);
        self.last_tags = std::mem::take(&mut self.tags);
    }
}

/// Everything one call needs about the image's registry.
pub(crate) struct Target {
    endpoint: Endpoint,
    creds: Option<Credentials>,
    /// Where the credentials came from, for error messages (never the secret itself).
    creds_source: String,
    host: Arc<HostState>,
}

impl Target {
    fn err(&self, kind: RegistryErrorKind, tag: Option<&str>, message: String) -> RegistryError {
        RegistryError {
            registry: self.endpoint.host.clone(),
            repository: Some(self.endpoint.repository.clone()),
            tag: tag.map(str::to_string),
            kind,
            message,
        }
    }

    fn cache_key(&self) -> CacheKey {
        (self.endpoint.api_url.clone(), self.endpoint.repository.clone(), self.creds.clone())
    }

    fn url(&self, path: &str) -> Result<Url, RegistryError> {
        let full = format!("{}{path}", self.endpoint.api_url);
        Url::parse(&full).map_err(|e| self.err(RegistryErrorKind::Config, None, format!("invalid URL {full}: {e}")))
    }
}

/// A manifest or index as fetched.
#[derive(Debug)]
struct Manifest {
    digest: String,
    kind: ManifestKind,
}

impl Manifest {
    /// The entries of an index that `platforms` accepts (any, when empty); none for an image.
    fn children_for(&self, platforms: &[Platform]) -> Vec<&String> {
        match &self.kind {
            ManifestKind::Index(entries) => {
                entries.iter().filter(|(p, _)| p.as_ref().is_some_and(|p| accepts(platforms, p))).map(|(_, d)| d).collect()
            }
            ManifestKind::Image { .. } => Vec::new(),
        }
    }

    /// A tag's metadata when it points here: an index with the `created` of each child
    /// [`Self::children_for`] gave (none: no platform found), an image with its config.
    fn metadata(&self, platforms: &[Platform], children: Vec<Option<DateTime<Utc>>>, config: Option<&ImageConfig>) -> TagMetadata {
        let digest = self.digest.clone();
        match (&self.kind, config) {
            (ManifestKind::Image { .. }, Some(cfg)) => TagMetadata {
                digest,
                created: cfg.created,
                platform_found: platforms.is_empty() || cfg.platform.as_ref().is_some_and(|p| accepts(platforms, p)),
            },
            _ if children.is_empty() => TagMetadata { digest, created: None, platform_found: false },
            _ => TagMetadata { digest, created: children.into_iter().flatten().max(), platform_found: true },
        }
    }
}

/// Whether `platforms` (any, when empty) accepts `p`.
fn accepts(platforms: &[Platform], p: &Platform) -> bool {
    platforms.is_empty() || platforms.iter().any(|want| want.matches(p))
}

#[derive(Debug)]
enum ManifestKind {
    /// Image index / manifest list: (platform, manifest digest) per entry.
    Index(Vec<(Option<Platform>, String)>),
    /// Single image: its config blob digest.
    Image { config: String },
}

/// The parts of an image config we read.
#[derive(Debug, Default)]
struct ImageConfig {
    created: Option<DateTime<Utc>>,
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct ManifestJson {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    manifests: Option<Vec<DescriptorJson>>,
    config: Option<DescriptorJson>,
}

#[derive(Deserialize)]
struct DescriptorJson {
    digest: String,
    platform: Option<PlatformJson>,
}

#[derive(Deserialize)]
struct PlatformJson {
    os: String,
    architecture: String,
    variant: Option<String>,
}

#[derive(Deserialize)]
struct ConfigJson {
    created: Option<String>,
    os: Option<String>,
    architecture: Option<String>,
    variant: Option<String>,
}

impl RegistryClient {
    /// `cluster`: where `pullsecret:` and `secret:` credentials are read (none: they are errors).
    pub fn new(settings: &RegistrySettings, cluster: Option<Arc<dyn Cluster>>) -> Result<Self, RegistryError> {
        let conf = match &settings.registries_conf {
            Some(path) => RegistriesConf::load(path).map_err(RegistryError::setup)?,
            None => RegistriesConf::default(),
        };
        let docker_auths =
            DockerAuths::load(&settings.docker_configs, &settings.optional_docker_configs).map_err(RegistryError::setup)?;
        let mut kept = settings.cache_dir.as_deref().map(kept::load).unwrap_or_default();
        let configs = SingleFlight::default();
        for (key, config) in kept.last_configs.drain() {
            configs.insert(key, config);
        }
        Ok(RegistryClient {
            conf,
            docker_auths,
            resolver: CredentialResolver::new(cluster),
            http: OnceLock::new(),
            http_insecure: OnceLock::new(),
            http_with_ca: Mutex::default(),
            requests: AtomicU64::new(0),
            by_registry: Mutex::default(),
            timeouts: (
                settings.connect_timeout.unwrap_or(Duration::from_secs(10)),
                settings.request_timeout.unwrap_or(Duration::from_secs(60)),
            ),
            hosts: Mutex::default(),
            tokens: Mutex::default(),
            tag_lists: SingleFlight::default(),
            manifests: SingleFlight::default(),
            digests: SingleFlight::default(),
            configs,
            kept: Mutex::new(kept),
            kept_file: settings.cache_dir.as_ref().map(|d| d.join("registry").join("kept.json")),
        })
    }

    /// Writes what this cycle used to the cache directory, when there is one.
    pub fn save_kept(&self) {
        let Some(file) = &self.kept_file else { return };
        let configs = self.configs.snapshot();
        let kept = self.kept.lock().unwrap();
        kept::save(file, &kept, &configs);
    }

    /// Builds the HTTP client for verified TLS now (call it from a blocking thread while other
    /// work runs); requests would otherwise build it on first use.
    pub fn prepare(&self) {
        let _ = self.http(false);
    }

    pub(crate) fn http(&self, insecure: bool) -> Result<&reqwest::Client, RegistryError> {
        let cell = if insecure { &self.http_insecure } else { &self.http };
        cell.get_or_init(|| {
            self.client_builder()
                .tls_danger_accept_invalid_certs(insecure)
                .build()
                .map_err(|e| format!("cannot create the HTTP client: {e}"))
        })
        .as_ref()
        .map_err(|e| RegistryError::setup(e.clone()))
    }

    /// The client for `endpoint`: one that verifies nothing for `insecure:`, one that also
    /// trusts the entry's CA certificates, or the shared verifying one.
    pub(crate) fn http_for(&self, endpoint: &Endpoint) -> Result<reqwest::Client, RegistryError> {
        let Some(pem) = endpoint.ca_pem.as_ref().filter(|_| !endpoint.insecure) else {
            return self.http(endpoint.insecure).cloned();
        };
        let mut clients = self.http_with_ca.lock().unwrap();
        if let Some(c) = clients.get(pem) {
            return Ok(c.clone());
        }
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|e| RegistryError::setup(format!("registry {}: CA certificates: {e}", endpoint.host)))?;
        let client = certs
            .into_iter()
            .fold(self.client_builder(), |b, cert| b.add_root_certificate(cert))
            .build()
            .map_err(|e| RegistryError::setup(format!("registry {}: cannot create the HTTP client: {e}", endpoint.host)))?;
        clients.insert(pem.clone(), client.clone());
        Ok(client)
    }

    fn client_builder(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .user_agent(concat!("argocd-image-pr/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(self.timeouts.0)
            .timeout(self.timeouts.1)
    }

    /// Where image names written without registry host belong, as registries.conf says
    /// (`default: true`), Docker Hub otherwise.
    pub fn default_registry(&self) -> &DefaultRegistry {
        self.conf.default_registry()
    }

    /// Every tag of the repository (cached: one listing per repository per cycle).
    pub async fn list_tags(&self, image: &ImageName, pull_secret: Option<&str>) -> Result<Arc<[String]>, RegistryError> {
        let t = self.target(image, pull_secret).await?;
        self.tag_lists.get_or_init(&t.cache_key(), || self.fetch_tags(&t)).await
    }

    /// What `tag` points to; config blobs are fetched only for `created` and cached by digest.
    /// An empty `platforms` accepts any platform.
    pub async fn tag_metadata(
        &self,
        image: &ImageName,
        tag: &str,
        platforms: &[Platform],
        pull_secret: Option<&str>,
    ) -> Result<TagMetadata, RegistryError> {
        let t = self.target(image, pull_secret).await?;
        let top = self.tag_manifest(&t, tag).await?;
        let (created, config) = match &top.kind {
            ManifestKind::Index(_) => {
                let created = futures::future::try_join_all(top.children_for(platforms).into_iter().map(|digest| async {
                    let child = self.manifest(&t, digest, tag).await?;
                    match &child.kind {
                        ManifestKind::Image { config } => Ok::<_, RegistryError>(self.config(&t, config, tag).await?.created),
                        // Nested indexes do not occur in practice; they carry no `created`.
                        ManifestKind::Index(_) => Ok(None),
                    }
                }))
                .await?;
                (created, None)
            }
            ManifestKind::Image { config } => (Vec::new(), Some(self.config(&t, config, tag).await?)),
        };
        Ok(top.metadata(platforms, created, config.as_deref()))
    }

    /// What `tag` pointed to when the registry last said so, from what is kept alone (no
    /// request), when that was less than [`REVALIDATE_AFTER`] ago and everything it needs is
    /// kept; `None` otherwise. The caller decides which tags cannot change its answer.
    pub async fn kept_metadata(
        &self,
        image: &ImageName,
        tag: &str,
        platforms: &[Platform],
        pull_secret: Option<&str>,
    ) -> Option<TagMetadata> {
        let t = self.target(image, pull_secret).await.ok()?;
        let (api, repository) = (t.endpoint.api_url.clone(), t.endpoint.repository.clone());
        let mut kept = self.kept.lock().unwrap();
        let (digest, confirmed) = kept.tag(&(api.clone(), repository.clone(), tag.to_string()))?;
        if Utc::now() - confirmed > REVALIDATE_AFTER {
            return None;
        }
        let top = kept.manifest(&(api.clone(), repository.clone(), digest))?;
        let config = |digest: &str| self.configs.peek(&(api.clone(), digest.to_string()));
        let (created, cfg) = match &top.kind {
            ManifestKind::Index(_) => {
                let mut created = Vec::new();
                for d in top.children_for(platforms) {
                    match &kept.manifest(&(api.clone(), repository.clone(), d.clone()))?.kind {
                        ManifestKind::Image { config: c } => created.push(config(c)?.created),
                        ManifestKind::Index(_) => created.push(None),
                    }
                }
                (created, None)
            }
            ManifestKind::Image { config: c } => (Vec::new(), Some(config(c)?)),
        };
        Some(top.metadata(platforms, created, cfg.as_deref()))
    }

    /// Only the digest `tag` points to: one HEAD request (or none if the manifest is known).
    pub async fn tag_digest(&self, image: &ImageName, tag: &str, pull_secret: Option<&str>) -> Result<String, RegistryError> {
        let t = self.target(image, pull_secret).await?;
        let key = (t.cache_key(), tag.to_string());
        if let Some(Ok(m)) = self.manifests.peek(&key) {
            return Ok(m.digest.clone());
        }
        self.head_digest(&t, tag).await
    }

    /// The digest `tag` points to now: one `HEAD` per cycle (a `GET` when the registry sends
    /// no digest header).
    async fn head_digest(&self, t: &Target, tag: &str) -> Result<String, RegistryError> {
        let key = (t.cache_key(), tag.to_string());
        self.digests
            .get_or_init(&key, || async {
                let url = t.url(&format!("/v2/{}/manifests/{tag}", t.endpoint.repository))?;
                let reply = self.send(t, Method::HEAD, url, Some(MANIFEST_ACCEPT), Some(tag)).await?;
                let reply = check_status(t, reply, Some(tag), "manifest")?;
                match reply.header("docker-content-digest") {
                    Some(d) if !d.trim().is_empty() => Ok(d.trim().to_string()),
                    // No digest header on HEAD: the GET computes it from the body.
                    _ => Ok(self.manifest(t, tag, tag).await?.digest.clone()),
                }
            })
            .await
    }

    /// A new cycle: tag lists are asked again and tags' digests revalidated with `HEAD` (tags
    /// move), `ext:` scripts without `credsexpire` run again, the request count starts at zero;
    /// manifests and config blobs by digest (immutable), tokens, HTTP clients and per-registry
    /// limits are kept.
    pub fn begin_cycle(&self) {
        self.resolver.begin_cycle();
        self.tag_lists.clear();
        self.manifests.clear();
        self.digests.clear();
        self.kept.lock().unwrap().next_cycle();
        self.requests.store(0, Ordering::Relaxed);
        self.by_registry.lock().unwrap().clear();
        for host in self.hosts.lock().unwrap().values() {
            host.forget_pull_limit();
        }
    }

    /// The files registries.conf names (`ca_file`), read when it was loaded: a change to one of
    /// them is a change of the settings.
    pub(crate) fn referenced_files(&self) -> Vec<std::path::PathBuf> {
        self.conf.referenced_files()
    }

    /// Number of HTTP requests sent since the cycle began.
    pub fn request_count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The same, by registry host.
    pub fn request_counts(&self) -> std::collections::BTreeMap<String, u64> {
        self.by_registry.lock().unwrap().clone()
    }

    async fn target(&self, image: &ImageName, pull_secret: Option<&str>) -> Result<Target, RegistryError> {
        let endpoint = self.conf.resolve(&image.registry, &image.repository);
        let fail = |kind, message| RegistryError {
            registry: image.registry.clone(),
            repository: Some(endpoint.repository.clone()),
            tag: None,
            kind,
            message,
        };
        Url::parse(&endpoint.api_url)
            .map_err(|e| fail(RegistryErrorKind::Config, format!("invalid registry URL {}: {e}", endpoint.api_url)))?;
        let pull_secret = pull_secret.map(str::trim).filter(|s| !s.is_empty());
        if let Some(r) = pull_secret {
            annotation_reference_allowed(r, &endpoint).map_err(|m| fail(RegistryErrorKind::Credentials, format!("{m} (pull secret of image {image})")))?;
        }
        let reference = pull_secret.map(|r| (r, "pull secret"));
        let reference = reference.or(endpoint.credentials.as_deref().map(|r| (r, "registries.conf credentials")));
        let (creds, creds_source) = match reference {
            Some((r, origin)) => {
                let c = self
                    .resolver
                    .resolve(r, &image.registry, endpoint.credsexpire)
                    .await
                    .map_err(|m| fail(RegistryErrorKind::Credentials, format!("{m} ({origin} of image {image})")))?;
                (Some(c), format!("{origin} {r}"))
            }
            None => match self.docker_auths.get(&image.registry) {
                Some(c) => (Some(c.clone()), "credentials from docker config".to_string()),
                None => (None, "no credentials (anonymous)".to_string()),
            },
        };
        let host = self
            .hosts
            .lock()
            .unwrap()
            .entry(endpoint.api_url.clone())
            .or_insert_with(|| Arc::new(HostState::new(endpoint.limit)))
            .clone();
        Ok(Target { endpoint, creds, creds_source, host })
    }

    /// GET tags/list and every page its `Link` headers lead to.
    async fn fetch_tags(&self, t: &Target) -> Result<Arc<[String]>, RegistryError> {
        #[derive(Deserialize)]
        struct TagList {
            tags: Option<Vec<String>>,
        }
        let first = t.url(&format!("/v2/{}/tags/list?n=1000", t.endpoint.repository))?;
        let mut url = first.clone();
        let mut tags = Vec::new();
        let mut seen = std::collections::HashSet::new();
        loop {
            if !seen.insert(url.to_string()) {
                return Err(t.err(RegistryErrorKind::Protocol, None, "tag list pagination loops back to a page already read".into()));
            }
            let reply = self.send(t, Method::GET, url.clone(), Some("application/json"), None).await?;
            let reply = check_status(t, reply, None, "repository")?;
            let page: TagList = serde_json::from_slice(&reply.body)
                .map_err(|e| t.err(RegistryErrorKind::Protocol, None, format!("tag list is not valid JSON: {e}")))?;
            // Distribution answers `"tags": null` when every tag was deleted.
            // Tags outside the OCI grammar cannot be pulled; a hostile registry could send
            // newlines or markup that would end up in a commit or a PR body.
            tags.extend(page.tags.unwrap_or_default().into_iter().filter(|t| is_valid_tag(t)));
            if tags.len() > MAX_TAGS {
                return Err(t.err(RegistryErrorKind::Protocol, None, format!("repository lists more than {MAX_TAGS} tags; refused")));
            }
            let next = reply.headers.get_all(LINK).iter().filter_map(|v| v.to_str().ok()).find_map(next_link);
            match next {
                Some(next) => {
                    let next_url = reply.url.join(&next).map_err(|e| {
                        t.err(RegistryErrorKind::Protocol, None, format!("invalid Link target {next:?}: {e}"))
                    })?;
                    // Credentials go only to the registry they were configured for.
                    if next_url.origin() != first.origin() {
                        return Err(t.err(
                            RegistryErrorKind::Protocol,
                            None,
                            format!("tag list pagination leads to another origin ({}); refused", redact_query(&next_url)),
                        ));
                    }
                    if seen.len() >= MAX_TAG_PAGES {
                        return Err(t.err(RegistryErrorKind::Protocol, None, format!("tag list has more than {MAX_TAG_PAGES} pages; refused")));
                    }
                    url = next_url;
                }
                None => break,
            }
        }
        tracing::debug!(registry = %t.endpoint.host, repository = %t.endpoint.repository, tags = tags.len(), pages = seen.len(), "listed tags");
        Ok(tags.into())
    }

    /// What `tag` points to: this cycle's answer, else the manifest it pointed to last cycle when
    /// a `HEAD` finds the same digest, else a `GET`.
    async fn tag_manifest(&self, t: &Target, tag: &str) -> Result<Arc<Manifest>, RegistryError> {
        if let Some(read) = self.manifests.peek(&(t.cache_key(), tag.to_string())) {
            return read;
        }
        let (api, repository) = (t.endpoint.api_url.clone(), t.endpoint.repository.clone());
        let key = (api.clone(), repository.clone(), tag.to_string());
        let before = {
            let mut kept = self.kept.lock().unwrap();
            kept.tag(&key).and_then(|(d, _)| kept.manifest(&(api.clone(), repository.clone(), d)))
        };
        if let Some(m) = before
            && self.head_digest(t, tag).await? == m.digest
        {
            self.kept.lock().unwrap().confirm(key, m.digest.clone());
            return Ok(m);
        }
        self.manifest(t, tag, tag).await
    }

    /// The manifest or index at `reference` (a tag or digest), cached per repository; one at a
    /// digest is kept across cycles.
    async fn manifest(&self, t: &Target, reference: &str, tag: &str) -> Result<Arc<Manifest>, RegistryError> {
        let (api, repository) = (t.endpoint.api_url.clone(), t.endpoint.repository.clone());
        if reference.starts_with("sha256:")
            && let Some(m) = self.kept.lock().unwrap().manifest(&(api.clone(), repository.clone(), reference.to_string()))
        {
            return Ok(m);
        }
        let read = self
            .manifests
            .get_or_init(&(t.cache_key(), reference.to_string()), || async {
                let url = t.url(&format!("/v2/{}/manifests/{reference}", t.endpoint.repository))?;
                let reply = self.send(t, Method::GET, url, Some(MANIFEST_ACCEPT), Some(tag)).await?;
                let reply = check_status(t, reply, Some(tag), "manifest")?;
                parse_manifest(t, &reply, tag).map(Arc::new)
            })
            .await;
        if let Ok(m) = &read {
            let mut kept = self.kept.lock().unwrap();
            kept.manifests.insert((api.clone(), repository.clone(), m.digest.clone()), m.clone());
            if !reference.starts_with("sha256:") {
                kept.confirm((api, repository, reference.to_string()), m.digest.clone());
            }
        }
        read
    }

    /// An image config blob, cached by digest per registry.
    async fn config(&self, t: &Target, digest: &str, tag: &str) -> Result<Arc<ImageConfig>, RegistryError> {
        self.configs
            .get_or_try_init(&(t.endpoint.api_url.clone(), digest.to_string()), || async {
                let url = t.url(&format!("/v2/{}/blobs/{digest}", t.endpoint.repository))?;
                let reply = self.send(t, Method::GET, url, None, Some(tag)).await?;
                let reply = check_status(t, reply, Some(tag), &format!("config blob {digest}"))?;
                if let Some(hex_want) = digest.strip_prefix("sha256:")
                    && hex::encode(Sha256::digest(&reply.body)) != hex_want
                {
                    return Err(t.err(RegistryErrorKind::Protocol, Some(tag), format!("config blob does not match its digest {digest}")));
                }
                let cfg: ConfigJson = serde_json::from_slice(&reply.body)
                    .map_err(|e| t.err(RegistryErrorKind::Protocol, Some(tag), format!("config blob {digest} is not JSON: {e}")))?;
                let created = cfg.created.as_deref().and_then(|c| DateTime::parse_from_rfc3339(c).ok()).map(|d| d.with_timezone(&Utc));
                let platform = match (cfg.os, cfg.architecture) {
                    (Some(os), Some(arch)) => Some(Platform { os, arch, variant: cfg.variant }),
                    _ => None,
                };
                Ok(Arc::new(ImageConfig { created, platform }))
            })
            .await
    }
}

fn parse_manifest(t: &Target, reply: &Reply, tag: &str) -> Result<Manifest, RegistryError> {
    let digest = match reply.header("docker-content-digest") {
        Some(d) if !d.trim().is_empty() => d.trim().to_string(),
        _ => format!("sha256:{}", hex::encode(Sha256::digest(&reply.body))),
    };
    let json: ManifestJson = serde_json::from_slice(&reply.body)
        .map_err(|e| t.err(RegistryErrorKind::Protocol, Some(tag), format!("manifest is not JSON: {e}")))?;
    let media_type = json
        .media_type
        .clone()
        .or_else(|| reply.header(CONTENT_TYPE).map(|c| c.split(';').next().unwrap_or("").trim().to_string()))
        .unwrap_or_default();
    let kind = if let Some(entries) = json.manifests {
        ManifestKind::Index(
            entries
                .into_iter()
                .map(|d| (d.platform.map(|p| Platform { os: p.os, arch: p.architecture, variant: p.variant }), d.digest))
                .collect(),
        )
    } else if let Some(config) = json.config {
        ManifestKind::Image { config: config.digest }
    } else {
        return Err(t.err(
            RegistryErrorKind::Protocol,
            Some(tag),
            format!("unsupported manifest (media type {media_type:?}): neither an image manifest nor an index"),
        ));
    };
    Ok(Manifest { digest, kind })
}

/// Whether an Application's `pull-secret` annotation may use `reference` for `endpoint`.
///
/// Application authors are not the operator (docs/security.md): an annotation may name only what
/// the operator configured for this very registry (its registries.conf `credentials`), or a pull
/// secret (`pullsecret:`), whose entry for the image's own registry is all that is used. `env:`,
/// `ext:` and `secret:ns/name#field` would let whoever writes an Application read any variable
/// of the bot, run any program, or read any field of any Secret the bot may read, and send the
/// result to a registry of their choice.
fn annotation_reference_allowed(reference: &str, endpoint: &Endpoint) -> Result<(), String> {
    if endpoint.credentials.as_deref().is_some_and(|c| c.trim() == reference) {
        return Ok(());
    }
    if reference.starts_with("pullsecret:") {
        return Ok(());
    }
    Err(format!(
        "credential reference {reference:?} is refused in an annotation: an Application may name only the credentials \
         registries.conf configures for registry {} (or a pullsecret: reference); env:, ext: and secret: references \
         belong in registries.conf, which the operator controls",
        endpoint.host
    ))
}

/// Turns a non-2xx answer into an error that says what was missing or refused.
fn check_status(t: &Target, reply: Reply, tag: Option<&str>, what: &str) -> Result<Reply, RegistryError> {
    let status = reply.status;
    if status.is_success() {
        return Ok(reply);
    }
    let detail = error_detail(&reply.body);
    let (kind, message) = match StatusKind::of(status.as_u16()) {
        StatusKind::NotFound => (RegistryErrorKind::NotFound, format!("{what} not found (HTTP 404){detail}")),
        StatusKind::Unauthorized => (RegistryErrorKind::Unauthorized, format!("access denied (HTTP {}) with {}{detail}", status.as_u16(), t.creds_source)),
        _ => (RegistryErrorKind::Protocol, format!("{what}: unexpected HTTP {}{detail}", status.as_u16())),
    };
    Err(t.err(kind, tag, message))
}

/// `: CODE message` from a distribution error body, or a short excerpt of a text body.
fn error_detail(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<ErrorItem>,
    }
    #[derive(Deserialize)]
    struct ErrorItem {
        code: Option<String>,
        message: Option<String>,
    }
    if let Ok(e) = serde_json::from_slice::<Errors>(body) {
        let parts: Vec<String> = e
            .errors
            .iter()
            .map(|i| format!("{} {}", i.code.as_deref().unwrap_or(""), i.message.as_deref().unwrap_or("")).trim().to_string())
            .collect();
        if !parts.is_empty() {
            return format!(": {}", parts.join("; "));
        }
    }
    let text: String = String::from_utf8_lossy(body).chars().take(200).collect();
    let text = text.trim();
    if text.is_empty() || text.starts_with('<') { String::new() } else { format!(": {text}") }
}
