//! OCI distribution client: tag lists, manifests, image indexes and config blobs, with
//! anonymous, basic and Bearer-token auth, `registries.conf` and docker `config.json`
//! credentials, one tag list per repository per run, and bounded concurrency per registry.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::domain::{ImageName, Platform};

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

#[derive(Debug, Clone, thiserror::Error)]
#[error("registry {registry}: {message}")]
pub struct RegistryError {
    pub registry: String,
    pub message: String,
}

/// Settings of the registry client for one run.
#[derive(Debug, Clone, Default)]
pub struct RegistrySettings {
    /// Path of an argocd-image-updater `registries.conf`.
    pub registries_conf: Option<std::path::PathBuf>,
    /// docker `config.json` / `.dockerconfigjson` files to take credentials from.
    pub docker_configs: Vec<std::path::PathBuf>,
}

/// The registry client shared by every Application of a run.
pub struct RegistryClient {}

impl RegistryClient {
    pub fn new(settings: &RegistrySettings) -> Result<Self, RegistryError> {
        let _ = settings;
        todo!()
    }

    /// Every tag of the repository (cached: one listing per repository per run).
    pub async fn list_tags(&self, image: &ImageName, pull_secret: Option<&str>) -> Result<Arc<[String]>, RegistryError> {
        let _ = (image, pull_secret);
        todo!()
    }

    /// What `tag` points to; config blobs are fetched only for `created` and cached by digest.
    pub async fn tag_metadata(
        &self,
        image: &ImageName,
        tag: &str,
        platforms: &[Platform],
        pull_secret: Option<&str>,
    ) -> Result<TagMetadata, RegistryError> {
        let _ = (image, tag, platforms, pull_secret);
        todo!()
    }

    /// Number of HTTP requests sent so far.
    pub fn request_count(&self) -> u64 {
        0
    }
}
