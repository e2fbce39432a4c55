//! What the registry client keeps between runs under `--cache-dir` (`registry/kept.json`): the
//! manifests and config blobs a run read, by digest, and the digest each tag had. Nothing
//! secret: credentials are no part of any key, and a tag's digest is asked again (`HEAD`) with
//! the current credentials before anything kept is used. A missing, unreadable or outdated file
//! is an empty one (the run reads what it needs, as a first run does).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{ImageConfig, Kept, Manifest, ManifestKind};
use crate::domain::Platform;

const VERSION: u32 = 2;

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    manifests: Vec<ManifestEntry>,
    tags: Vec<TagEntry>,
    configs: Vec<ConfigEntry>,
}

#[derive(Serialize, Deserialize)]
struct ManifestEntry {
    api: String,
    repository: String,
    digest: String,
    /// An image manifest: its config blob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    config: Option<String>,
    /// An index: (platform `os/arch[/variant]`, manifest digest) per entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    index: Option<Vec<(Option<String>, String)>>,
}

#[derive(Serialize, Deserialize)]
struct TagEntry {
    api: String,
    repository: String,
    tag: String,
    digest: String,
    /// When the registry last said so.
    confirmed: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
struct ConfigEntry {
    api: String,
    digest: String,
    created: Option<DateTime<Utc>>,
    platform: Option<String>,
}

/// What a previous run kept, as the previous generation of [`Kept`], and its config blobs.
pub(super) fn load(dir: &Path) -> Kept {
    let Some(file) = crate::cache_file::load::<File>(&dir.join("registry").join("kept.json"), "registry cache") else {
        return Kept::default();
    };
    if file.version != VERSION {
        return Kept::default();
    }
    let mut kept = Kept::default();
    for m in file.manifests {
        let kind = match (m.config, m.index) {
            (Some(config), None) => ManifestKind::Image { config },
            (None, Some(entries)) => ManifestKind::Index(entries.into_iter().map(|(p, d)| (p.as_deref().and_then(Platform::parse), d)).collect()),
            _ => continue,
        };
        kept.last_manifests.insert((m.api, m.repository, m.digest.clone()), Arc::new(Manifest { digest: m.digest, kind }));
    }
    for t in file.tags {
        kept.last_tags.insert((t.api, t.repository, t.tag), (t.digest, t.confirmed));
    }
    for c in file.configs {
        let platform = c.platform.as_deref().and_then(Platform::parse);
        kept.last_configs.insert((c.api, c.digest), Arc::new(ImageConfig { created: c.created, platform }));
    }
    kept
}

/// Writes what this cycle used.
pub(super) fn save(path: &Path, kept: &Kept, configs: &HashMap<(String, String), Arc<ImageConfig>>) {
    let mut file = File { version: VERSION, manifests: Vec::new(), tags: Vec::new(), configs: Vec::new() };
    for ((api, repository, digest), m) in &kept.manifests {
        let (config, index) = match &m.kind {
            ManifestKind::Image { config } => {
                if let Some(c) = configs.get(&(api.clone(), config.clone())) {
                    file.configs.push(ConfigEntry {
                        api: api.clone(),
                        digest: config.clone(),
                        created: c.created,
                        platform: c.platform.as_ref().map(ToString::to_string),
                    });
                }
                (Some(config.clone()), None)
            }
            ManifestKind::Index(entries) => {
                (None, Some(entries.iter().map(|(p, d)| (p.as_ref().map(ToString::to_string), d.clone())).collect()))
            }
        };
        file.manifests.push(ManifestEntry { api: api.clone(), repository: repository.clone(), digest: digest.clone(), config, index });
    }
    for ((api, repository, tag), (digest, confirmed)) in &kept.tags {
        file.tags.push(TagEntry {
            api: api.clone(),
            repository: repository.clone(),
            tag: tag.clone(),
            digest: digest.clone(),
            confirmed: *confirmed,
        });
    }
    crate::cache_file::save(path, &file, "registry cache");
}
