//! Process configuration: a YAML file (`--config`) whose values flags and environment override.

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use crate::planner::RepoSettings;

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
    /// The same, mounted from Secrets marked optional: a file that is absent is skipped.
    #[serde(default)]
    pub optional_docker_configs: Vec<PathBuf>,
    /// Where git clones are kept between runs.
    pub cache_dir: Option<PathBuf>,
    /// The kubeconfig for `k8s` locations and `pullsecret:`/`secret:` credentials.
    pub kubeconfig: Option<PathBuf>,
    /// A context of that kubeconfig other than its current one.
    pub context: Option<String>,
    /// `run`: the forge, `github`, `gitlab` or `local`.
    pub forge: Option<String>,
    /// `run`: the bot's branch per Application; `{{namespace}}` and `{{name}}` are replaced.
    pub branch_template: Option<String>,
    /// `run`: who the bot's commits are by.
    pub identity: Option<Identity>,
    /// `run`: a directory of templates replacing the defaults (see docs/templates.md).
    pub templates_dir: Option<PathBuf>,
    /// `run --forge local`: where pull-request records are kept.
    pub local_forge_dir: Option<PathBuf>,
    /// `run --forge github`: the API base URL (GitHub Enterprise: `https://ghe.example.com/api/v3`).
    pub github_url: Option<String>,
    /// `run --forge gitlab`: the server (`https://gitlab.example.com`); gitlab.com when not given.
    pub gitlab_url: Option<String>,
    /// `run`: per-repository pull-request settings.
    #[serde(default)]
    pub repositories: Vec<RepoSettings>,
    /// `run`: the forge of each git host, for a run across GitHub and GitLab.
    #[serde(default)]
    pub forges: Vec<ForgeEntry>,
}

/// One git host's forge (`forges:`): repositories whose URL names `host` go to it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ForgeEntry {
    /// The git host as the Applications' `repoURL`s name it (`gitlab.example.com`).
    pub host: String,
    /// `github` or `gitlab`.
    pub kind: String,
    /// The server (`https://gitlab.example.com`, GitHub Enterprise `https://ghe.example.com`);
    /// `https://<host>` when not given (github.com and gitlab.com for those hosts).
    pub url: Option<String>,
    /// A file holding this forge's token; else the kind's token flags and variables
    /// (`GITHUB_TOKEN`, `GITLAB_TOKEN`).
    pub token_file: Option<PathBuf>,
}

/// The git identity of the bot's commits.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    pub name: String,
    pub email: String,
}

impl Default for Identity {
    fn default() -> Self {
        Identity { name: "argocd-image-pr".into(), email: "argocd-image-pr@users.noreply.local".into() }
    }
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
    fn reads_the_run_keys() {
        let c = ConfigFile::parse(
            "forge: local\nbranchTemplate: bot/{{name}}\nidentity: {name: Bot, email: bot@example.com}\ntemplatesDir: /t\nlocalForgeDir: /prs\ngithubUrl: https://ghe.example.com/api/v3\ngitlabUrl: https://gitlab.example.com\nrepositories:\n  - url: https://github.com/o/r.git\n    labels: [deps]\n    reviewers: [alice]\n    teamReviewers: [platform]\n    assignees: [bob]\n    draft: true\n    autoMerge: squash\n    base: main\n",
        )
        .unwrap();
        assert_eq!(c.forge.as_deref(), Some("local"));
        assert_eq!(c.branch_template.as_deref(), Some("bot/{{name}}"));
        assert_eq!(c.identity, Some(Identity { name: "Bot".into(), email: "bot@example.com".into() }));
        assert_eq!(c.templates_dir.as_deref(), Some(Path::new("/t")));
        assert_eq!(c.local_forge_dir.as_deref(), Some(Path::new("/prs")));
        assert_eq!(c.github_url.as_deref(), Some("https://ghe.example.com/api/v3"));
        assert_eq!(c.gitlab_url.as_deref(), Some("https://gitlab.example.com"));
        assert_eq!(ConfigFile::parse("forge: gitlab\n").unwrap().forge.as_deref(), Some("gitlab"));
        let r = &c.repositories[0];
        assert_eq!(
            (r.url.as_str(), &r.labels[..], &r.reviewers[..], &r.team_reviewers[..], &r.assignees[..], r.draft),
            ("https://github.com/o/r.git", &["deps".to_string()][..], &["alice".to_string()][..], &["platform".to_string()][..], &["bob".to_string()][..], true)
        );
        assert_eq!((r.auto_merge.as_deref(), r.base.as_deref()), (Some("squash"), Some("main")));
        assert!(ConfigFile::parse("repositories: [{url: x, lables: [a]}]\n").unwrap_err().contains("lables"));
    }

    #[test]
    fn unknown_keys_and_bad_types_are_errors() {
        assert!(ConfigFile::parse("appz: [x]\n").unwrap_err().contains("appz"));
        assert!(ConfigFile::parse("apps: 3\n").is_err());
        assert_eq!(ConfigFile::parse("").unwrap(), ConfigFile::default());
    }
}
