//! The production drivers behind the engine's ports, built once by `main`: the OCI registry
//! client, libgit2 clones under the cache directory, directories, git URLs and the cluster as
//! `--apps`, the Kubernetes API (made at its first use), the system clock. The daemon keeps them across cycles. Also the one file read the templates
//! need: the override directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cluster::{ClusterRepoCredentials, ClusterSettings, KubeCluster};
use crate::discovery::Locations;
use crate::engine::Drivers;
use crate::git::GitDriver;
use crate::ports::SystemClock;
use crate::registry::{RegistryDriver, RegistrySettings};
use crate::templates::{OverrideFile, TemplateError, Templates};

impl Drivers {
    /// `cache_dir`: where clones are kept between runs; a fresh temporary directory (removed
    /// when the drivers are dropped) when `None`. Registry settings are read at the start of
    /// each cycle, so their errors belong to the cycle's report.
    pub fn standard(registry: RegistrySettings, cache_dir: Option<PathBuf>, cluster: ClusterSettings) -> Result<Drivers, String> {
        let git = Arc::new(GitDriver::new(cache_dir).map_err(|e| format!("cache: {e}"))?);
        let cluster: Arc<dyn crate::ports::Cluster> = Arc::new(KubeCluster::new(cluster));
        Ok(Drivers {
            registry: Arc::new(RegistryDriver::new(registry, Some(cluster.clone()))),
            apps: Arc::new(Locations::new(git.clone(), cluster.clone())),
            repo_credentials: Arc::new(ClusterRepoCredentials::new(cluster)),
            git,
            clock: Arc::new(SystemClock),
        })
    }
}

impl Templates {
    /// The defaults, with every file of `dir` replacing the default of the same name. Hidden
    /// entries and directories are skipped (a mounted ConfigMap has `..data`).
    pub fn from_dir(dir: &Path) -> Result<Templates, TemplateError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TemplateError::Io { path, source }
        };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') || path.is_dir() {
                continue;
            }
            paths.push(path);
        }
        paths.sort();
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            let source = std::fs::read_to_string(&path).map_err(io(&path))?;
            files.push(OverrideFile { path, source });
        }
        Templates::with_overrides(files)
    }
}
