//! [`Registry`] for a whole process: one [`RegistryClient`] kept across cycles (its TLS
//! clients, tokens, config blobs and per-registry limits live on), rebuilt only when
//! registries.conf, a `ca_file` it names or a docker config file changed (a ConfigMap or Secret
//! updated in place).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use sha2::{Digest as _, Sha256};

use super::{RegistryClient, RegistryError, RegistrySettings, TagMetadata};
use crate::domain::{DefaultRegistry, ImageName, Platform};
use crate::ports::{Cluster, Registry};

pub struct RegistryDriver {
    settings: RegistrySettings,
    /// Where `pullsecret:` and `secret:` credentials are read.
    cluster: Option<Arc<dyn Cluster>>,
    loaded: Mutex<Option<Loaded>>,
}

struct Loaded {
    /// Hash of the paths and contents of the files the client was built from.
    fingerprint: [u8; 32],
    /// The files registries.conf names (`ca_file`), part of the fingerprint.
    referenced: Vec<PathBuf>,
    client: Arc<RegistryClient>,
}

impl RegistryDriver {
    /// Nothing is read before the first [`Registry::begin_cycle`].
    pub fn new(settings: RegistrySettings, cluster: Option<Arc<dyn Cluster>>) -> Self {
        RegistryDriver { settings, cluster, loaded: Mutex::new(None) }
    }

    fn client(&self) -> Result<Arc<RegistryClient>, RegistryError> {
        match &*self.loaded.lock().unwrap() {
            Some(l) => Ok(l.client.clone()),
            None => Err(RegistryError::setup("the registry client was used before a cycle began".into())),
        }
    }

    /// What the client is built from, hashed: the settings files and `referenced` (the
    /// `ca_file`s of registries.conf); a file that changes, appears or goes away changes it.
    /// Secrets never stay in memory beyond the hash.
    fn fingerprint(&self, referenced: &[PathBuf]) -> [u8; 32] {
        let s = &self.settings;
        let mut h = Sha256::new();
        let files = s.registries_conf.iter().chain(&s.docker_configs).chain(&s.optional_docker_configs).chain(referenced);
        for path in files {
            h.update(path.as_os_str().as_encoded_bytes());
            h.update([0]);
            match std::fs::read(path) {
                Ok(bytes) => {
                    h.update([1]);
                    h.update(&bytes);
                }
                Err(e) => h.update(format!("\0{:?}", e.kind()).as_bytes()),
            }
            h.update([0]);
        }
        h.finalize().into()
    }
}

impl Registry for RegistryDriver {
    fn begin_cycle(&self) -> Result<(), RegistryError> {
        let mut loaded = self.loaded.lock().unwrap();
        if let Some(l) = loaded.as_ref().filter(|l| l.fingerprint == self.fingerprint(&l.referenced)) {
            l.client.begin_cycle();
            return Ok(());
        }
        *loaded = None;
        let client = RegistryClient::new(&self.settings, self.cluster.clone())?;
        let referenced = client.referenced_files();
        let fingerprint = self.fingerprint(&referenced);
        *loaded = Some(Loaded { fingerprint, referenced, client: Arc::new(client) });
        Ok(())
    }

    fn prepare(&self) {
        if let Ok(c) = self.client() {
            c.prepare();
        }
    }

    fn end_cycle(&self) {
        if let Ok(c) = self.client() {
            c.save_kept();
        }
    }

    fn default_registry(&self) -> DefaultRegistry {
        self.client().map(|c| c.default_registry().clone()).unwrap_or_default()
    }

    fn list_tags<'a>(
        &'a self,
        image: &'a ImageName,
        pull_secret: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Arc<[String]>, RegistryError>> {
        Box::pin(async move { self.client()?.list_tags(image, pull_secret).await })
    }

    fn tag_metadata<'a>(
        &'a self,
        image: &'a ImageName,
        tag: &'a str,
        platforms: &'a [Platform],
        pull_secret: Option<&'a str>,
    ) -> BoxFuture<'a, Result<TagMetadata, RegistryError>> {
        Box::pin(async move { self.client()?.tag_metadata(image, tag, platforms, pull_secret).await })
    }

    fn tag_digest<'a>(
        &'a self,
        image: &'a ImageName,
        tag: &'a str,
        pull_secret: Option<&'a str>,
    ) -> BoxFuture<'a, Result<String, RegistryError>> {
        Box::pin(async move { self.client()?.tag_digest(image, tag, pull_secret).await })
    }

    fn request_count(&self) -> u64 {
        self.client().map(|c| c.request_count()).unwrap_or(0)
    }

    fn kept_metadata<'a>(
        &'a self,
        image: &'a ImageName,
        tag: &'a str,
        platforms: &'a [Platform],
        pull_secret: Option<&'a str>,
    ) -> BoxFuture<'a, Option<TagMetadata>> {
        Box::pin(async move { self.client().ok()?.kept_metadata(image, tag, platforms, pull_secret).await })
    }

    fn request_counts(&self) -> std::collections::BTreeMap<String, u64> {
        self.client().map(|c| c.request_counts()).unwrap_or_default()
    }
}
