//! The Kubernetes API port: Argo CD Applications, argocd-image-updater `ImageUpdater` resources
//! and Secrets, as the bot reads them from a cluster. Read-only: the bot never writes to the
//! cluster (its changes go to git).

use std::collections::BTreeMap;
use std::fmt;

use futures::future::BoxFuture;

use crate::error::{Error, ErrorKind};
pub use crate::annotations::GitCredentialRef;

/// Reads a cluster's API.
pub trait Cluster: Send + Sync {
    /// Every object of `kind` in `namespace` (every namespace the bot may list when `None`),
    /// each whole, as the API server returned it.
    fn list<'a>(&'a self, kind: ClusterKind, namespace: Option<&'a str>) -> BoxFuture<'a, Result<Vec<ClusterObject>, ClusterError>>;

    /// The data of Secret `namespace/name`, each key's bytes decoded.
    fn secret<'a>(&'a self, namespace: &'a str, name: &'a str) -> BoxFuture<'a, Result<SecretData, ClusterError>>;

    /// The Secrets of `namespace` labelled `key=value` (Argo CD's repository credentials), by name.
    fn labelled_secrets<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, SecretData)>, ClusterError>>;
}

/// One URL's git credentials: `(username, password)`, `None` when there are none (the fetch is
/// then anonymous), or why they could not be read.
pub type RepoCredential = Result<Option<(String, String)>, ClusterError>;

/// Git credentials read from the cluster.
pub trait RepoCredentials: Send + Sync {
    /// The credentials for fetching each `(url, reference)`, in order: all of a cycle's at once,
    /// so that each Secret and each listing of Argo CD's credentials is read once.
    fn lookup<'a>(&'a self, requests: &'a [(String, GitCredentialRef)]) -> BoxFuture<'a, Vec<RepoCredential>>;
}

/// The resources the bot reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClusterKind {
    /// `applications.argoproj.io`, v1alpha1.
    Application,
    /// `imageupdaters.argocd-image-updater.argoproj.io`, v1alpha1.
    ImageUpdater,
}

impl ClusterKind {
    /// The resource's plural and group, as `kubectl` names it: `applications.argoproj.io`.
    pub fn resource(self) -> &'static str {
        match self {
            ClusterKind::Application => "applications.argoproj.io",
            ClusterKind::ImageUpdater => "imageupdaters.argocd-image-updater.argoproj.io",
        }
    }
}

/// One object from the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterObject {
    pub namespace: String,
    pub name: String,
    /// The whole object as JSON (`apiVersion` and `kind` included), which is also YAML.
    pub json: String,
}

/// A Secret's `data`, decoded.
pub type SecretData = BTreeMap<String, Vec<u8>>;

/// What went wrong talking to the cluster.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ClusterError {
    pub kind: ClusterErrorKind,
    /// Names the resource and namespace (or Secret) and the cluster.
    pub message: String,
}

impl fmt::Display for ClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterErrorKind {
    /// No usable configuration: no kubeconfig, no such context, not in a cluster.
    Config,
    /// The credentials were refused (401).
    Unauthorized,
    /// RBAC does not allow it (403).
    Forbidden,
    /// No such object (404).
    NotFound,
    /// The API server could not be reached, or answered 5xx or too late.
    Network,
    /// An answer that is not what the Kubernetes API sends.
    Protocol,
}

impl From<ClusterError> for Error {
    fn from(e: ClusterError) -> Error {
        let kind = match e.kind {
            ClusterErrorKind::Config => ErrorKind::Input,
            ClusterErrorKind::Unauthorized | ClusterErrorKind::Forbidden => ErrorKind::Auth,
            ClusterErrorKind::NotFound => ErrorKind::NotFound,
            ClusterErrorKind::Network => ErrorKind::Network,
            ClusterErrorKind::Protocol => ErrorKind::Protocol,
        };
        Error::new(kind, e.message)
    }
}
