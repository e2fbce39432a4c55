//! The registry port: what the engine asks of container registries. The OCI client in
//! `crate::registry` implements it; engine tests use an in-memory one.

use crate::error::{Error, ErrorKind};
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use crate::domain::{DefaultRegistry, ImageName, Platform};

/// Container registries: tag lists and the metadata the strategies need. One value serves a
/// whole process (the daemon keeps it across cycles); answers that can change are forgotten at
/// [`Registry::begin_cycle`].
pub trait Registry: Send + Sync {
    /// A cycle begins: settings are (re)loaded when their files changed, answers that can change
    /// (tag lists, manifests, digests by tag) are forgotten, connections and tokens are kept. An error
    /// (a broken registries.conf) means nothing can be asked this cycle.
    fn begin_cycle(&self) -> Result<(), RegistryError>;

    /// The cycle is over: what is worth keeping for the next run may be written down.
    fn end_cycle(&self) {}

    /// Loads what the first requests would wait for (TLS roots); blocking, call it off the async
    /// threads while other work runs.
    fn prepare(&self) {}

    /// Where image names written without registry host belong.
    fn default_registry(&self) -> DefaultRegistry;

    /// Every tag of the image's repository (one listing per repository per cycle).
    fn list_tags<'a>(
        &'a self,
        image: &'a ImageName,
        pull_secret: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Arc<[String]>, RegistryError>>;

    /// What `tag` points to for `platforms` (empty: any platform).
    fn tag_metadata<'a>(
        &'a self,
        image: &'a ImageName,
        tag: &'a str,
        platforms: &'a [Platform],
        pull_secret: Option<&'a str>,
    ) -> BoxFuture<'a, Result<TagMetadata, RegistryError>>;

    /// Only the digest `tag` points to.
    fn tag_digest<'a>(
        &'a self,
        image: &'a ImageName,
        tag: &'a str,
        pull_secret: Option<&'a str>,
    ) -> BoxFuture<'a, Result<String, RegistryError>>;

    /// Requests sent since the cycle began.
    fn request_count(&self) -> u64;

    /// What `tag` pointed to when the registry said so a short while ago, from what the driver
    /// kept, without a request; `None` when it does not know (ask [`Registry::tag_metadata`]).
    fn kept_metadata<'a>(
        &'a self,
        _image: &'a ImageName,
        _tag: &'a str,
        _platforms: &'a [Platform],
        _pull_secret: Option<&'a str>,
    ) -> BoxFuture<'a, Option<TagMetadata>> {
        Box::pin(async { None })
    }

    /// [`Registry::request_count`] by registry host (`docker.io`, `ghcr.io`, `127.0.0.1:5000`).
    fn request_counts(&self) -> std::collections::BTreeMap<String, u64> {
        std::collections::BTreeMap::new()
    }
}

/// What a tag points to, for the platforms asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagMetadata {
    /// Digest of the manifest or image index the tag points to.
    pub digest: String,
    /// `created` of the image config of the newest matching platform image.
    pub created: Option<DateTime<Utc>>,
    /// Whether any of the requested platforms is present.
    pub platform_found: bool,
}

/// Why a registry call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegistryErrorKind {
    /// `registries.conf`, a docker config file or the HTTP client could not be set up.
    Config,
    /// A credential reference could not be resolved (unset variable, failing script, ...).
    Credentials,
    /// The registry or its token server refused the credentials (401/403).
    Unauthorized,
    /// Repository, tag, manifest or blob does not exist (404).
    NotFound,
    /// Still 429 / 503 after the allowed retries.
    RateLimited,
    /// Connection, TLS or timeout failure.
    Network,
    /// An answer that does not follow the distribution spec.
    Protocol,
}

/// A failure, naming the registry host, repository and tag involved (empty `registry` only for
/// set-up errors, whose message names the file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RegistryError {
    pub registry: String,
    pub repository: Option<String>,
    pub tag: Option<String>,
    pub kind: RegistryErrorKind,
    pub message: String,
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.registry.is_empty() {
            return f.write_str(&self.message);
        }
        write!(f, "registry {}", self.registry)?;
        if let Some(r) = &self.repository {
            write!(f, ", repository {r}")?;
        }
        if let Some(t) = &self.tag {
            write!(f, ", tag {t}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl From<RegistryError> for Error {
    fn from(e: RegistryError) -> Error {
        let kind = match e.kind {
            RegistryErrorKind::Config => ErrorKind::Input,
            RegistryErrorKind::Credentials | RegistryErrorKind::Unauthorized => ErrorKind::Auth,
            RegistryErrorKind::NotFound => ErrorKind::NotFound,
            RegistryErrorKind::RateLimited => ErrorKind::RateLimited,
            RegistryErrorKind::Network => ErrorKind::Network,
            RegistryErrorKind::Protocol => ErrorKind::Protocol,
        };
        Error::new(kind, e.to_string())
    }
}
