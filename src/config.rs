//! Process configuration: a YAML file (`--config`) whose values flags and environment override.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The `--config` file. Every key is optional; see docs/configuration.md.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConfigFile {
    /// Directories or git URLs holding Application manifests.
    #[serde(default)]
    pub apps: Vec<String>,
    /// argocd-image-updater `registries.conf`.
    pub registries_conf: Option<PathBuf>,
    /// docker `config.json` / `.dockerconfigjson` files with registry credentials.
    #[serde(default)]
    pub docker_configs: Vec<PathBuf>,
    /// Where git clones are kept between runs.
    pub cache_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {message}")]
    File { path: String, message: String },
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let err = |message: String| ConfigError::File { path: path.display().to_string(), message };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        Self::parse(&text).map_err(err)
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(ConfigFile::default());
        }
        serde_saphyr::from_str(text).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_key() {
        let c = ConfigFile::parse(
            "apps: [./apps, file:///srv/gitops.git]\nregistriesConf: /etc/aip/registries.conf\ndockerConfigs: [/secrets/config.json]\ncacheDir: /var/cache/aip\n",
        )
        .unwrap();
        assert_eq!(c.apps, vec!["./apps", "file:///srv/gitops.git"]);
        assert_eq!(c.registries_conf.as_deref(), Some(Path::new("/etc/aip/registries.conf")));
        assert_eq!(c.docker_configs, vec![PathBuf::from("/secrets/config.json")]);
        assert_eq!(c.cache_dir.as_deref(), Some(Path::new("/var/cache/aip")));
    }

    #[test]
    fn unknown_keys_and_bad_types_are_errors() {
        assert!(ConfigFile::parse("appz: [x]\n").unwrap_err().contains("appz"));
        assert!(ConfigFile::parse("apps: 3\n").is_err());
        assert_eq!(ConfigFile::parse("").unwrap(), ConfigFile::default());
    }
}
