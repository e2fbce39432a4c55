//! Files the drivers keep under `--cache-dir` to spare later runs some requests (the GitLab
//! comment memo, the registry's manifests by digest): JSON, written whole through a temporary
//! file renamed into place, read back as nothing when missing or unreadable. Losing one costs
//! the next run its requests, never a decision, so failures are warnings naming the file.

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The kept value, or `None` (with a warning when the file exists but cannot be read as `T`).
pub(crate) fn load<T: DeserializeOwned>(path: &Path, what: &str) -> Option<T> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes)
        .map_err(|e| tracing::warn!(file = %path.display(), "{what} unreadable ({e}); asking again"))
        .ok()
}

/// Writes `value` to `path` whole; a failure is a warning.
pub(crate) fn save<T: Serialize>(path: &Path, value: &T, what: &str) {
    let write = || -> std::io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
        serde_json::to_writer(&mut tmp, value).map_err(std::io::Error::other)?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    };
    if let Err(e) = write() {
        tracing::warn!(file = %path.display(), "cannot keep the {what}: {e}");
    }
}
