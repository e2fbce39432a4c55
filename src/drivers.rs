//! The production drivers behind the engine's ports, built once by `main`: the OCI registry
//! client, libgit2 clones under the cache directory, directories and git URLs as `--apps`, the
//! system clock. The daemon keeps them across cycles.

use std::path::PathBuf;
use std::sync::Arc;

use crate::discovery::Locations;
use crate::engine::Drivers;
use crate::git::GitDriver;
use crate::ports::SystemClock;
use crate::registry::{RegistryDriver, RegistrySettings};

impl Drivers {
    /// `cache_dir`: where clones are kept between runs; a fresh temporary directory (removed
    /// when the drivers are dropped) when `None`. Registry settings are read at the start of
    /// each cycle, so their errors belong to the cycle's report.
    pub fn standard(registry: RegistrySettings, cache_dir: Option<PathBuf>) -> Result<Drivers, String> {
        let git = Arc::new(GitDriver::new(cache_dir).map_err(|e| format!("cache: {e}"))?);
        Ok(Drivers {
            registry: Arc::new(RegistryDriver::new(registry)),
            apps: Arc::new(Locations::new(git.clone())),
            git,
            clock: Arc::new(SystemClock),
        })
    }
}
