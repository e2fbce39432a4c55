//! The Applications port: where Argo CD Applications are read from (`--apps`): a directory, a
//! git URL, or a cluster's Kubernetes API (`k8s`, `k8s:<namespace>`). The engine sees Applications, never how they were
//! found.

use crate::error::Error;
use futures::future::BoxFuture;

use super::{ClusterError, GitError, PushTarget};
use crate::discovery::{Application, BrokenUpdater, FileError};
use crate::image_updater::ImageUpdater;

/// Reads the `--apps` locations.
pub trait ApplicationSource: Send + Sync {
    /// The Applications of one location, with the files that could not be read as errors. The
    /// error is the location as a whole (no such directory, a git URL that does not answer).
    /// `auth`: the forge's git credentials for a location that is one of its repositories.
    fn read<'a>(&'a self, location: &'a str, auth: Option<&'a PushTarget>) -> BoxFuture<'a, Result<LocationApps, AppsError>>;

    /// The git URL `location` is cloned from, when it is one: `run` lends it the forge's
    /// credentials (Applications kept in a private repository).
    fn git_url<'a>(&self, location: &'a str) -> Option<&'a str>;
}

/// What one location holds.
#[derive(Debug, Clone, Default)]
pub struct LocationApps {
    pub applications: Vec<Application>,
    /// Files that hold Application manifests but could not be read.
    pub errors: Vec<FileError>,
    /// The git repository and commit the manifests were read at (git URLs only).
    pub origin: Option<AppsOrigin>,
    /// Read from a cluster's API (`k8s`): what Argo CD runs, which wins over a manifest of the
    /// same Application in git.
    pub from_cluster: bool,
    /// argocd-image-updater `ImageUpdater` resources found there.
    pub image_updaters: Vec<Result<ImageUpdater, BrokenUpdater>>,
}

/// The git repository and commit an `--apps` location was read from, so that an Application
/// manifest kept in the very repository its source points to can be edited too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppsOrigin {
    pub url: String,
    pub commit: String,
}

/// Why a location could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum AppsError {
    /// Not something the source can read (no such directory, neither a directory nor a URL).
    #[error("{0}")]
    Location(String),
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Cluster(ClusterError),
}

impl From<AppsError> for Error {
    fn from(e: AppsError) -> Error {
        match e {
            AppsError::Location(message) => Error::input(message),
            AppsError::Git(g) => g.into(),
            AppsError::Cluster(c) => c.into(),
        }
    }
}
