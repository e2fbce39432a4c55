//! [`ApplicationSource`] for `--apps` locations: directories and git URLs (the files read as
//! they are, or cloned at `HEAD` through the git port, and parsed by
//! [`super::find_applications`]), and `k8s` / `k8s:<namespace>`, the Applications of a cluster
//! through the cluster port (parsed by the same rules, [`super::applications_from_objects`]).

use std::path::Path;
use std::sync::Arc;

use futures::future::BoxFuture;

use super::{applications_from_objects, find_applications, find_image_updaters, image_updaters_from_objects};
use crate::ports::{ApplicationSource, AppsError, AppsOrigin, Cluster, ClusterErrorKind, ClusterKind, ClusterObject, GitError, GitRepos, LocationApps, PushTarget};

pub struct Locations {
    git: Arc<dyn GitRepos>,
    cluster: Arc<dyn Cluster>,
}

impl Locations {
    pub fn new(git: Arc<dyn GitRepos>, cluster: Arc<dyn Cluster>) -> Self {
        Locations { git, cluster }
    }

    /// `k8s`: every namespace the bot may list; `k8s:<namespace>`: that one.
    async fn read_cluster(&self, namespace: Option<&str>) -> Result<LocationApps, AppsError> {
        let objects = self.cluster.list(ClusterKind::Application, namespace).await.map_err(AppsError::Cluster)?;
        let places = named(&objects);
        let (applications, errors) = applications_from_objects(places.iter().map(|(p, j)| (p.as_str(), *j)));
        // Without the ImageUpdaters, the Applications they configure would look unmanaged.
        let updaters = match self.cluster.list(ClusterKind::ImageUpdater, namespace).await {
            Ok(u) => u,
            // The resource is not known to this API server: argocd-image-updater 1.x's CRD is
            // not installed, so there are none.
            Err(e) if e.kind == ClusterErrorKind::NotFound => {
                tracing::debug!("no ImageUpdaters: {e}");
                Vec::new()
            }
            Err(e) => return Err(AppsError::Cluster(e)),
        };
        let places = named(&updaters);
        let image_updaters = image_updaters_from_objects(places.iter().map(|(p, j)| (p.as_str(), *j)));
        Ok(LocationApps { applications, errors, origin: None, from_cluster: true, image_updaters })
    }
}

/// Each object with the name errors give it, `k8s:<namespace>/<name>`.
fn named(objects: &[ClusterObject]) -> Vec<(String, &str)> {
    objects.iter().map(|o| (format!("k8s:{}/{}", o.namespace, o.name), o.json.as_str())).collect()
}

/// The namespace of a cluster location: `Some(None)` for `k8s`, `Some(Some(ns))` for
/// `k8s:<ns>`, `None` for any other location.
pub fn cluster_location(location: &str) -> Option<Option<&str>> {
    match location.strip_prefix("k8s") {
        Some("") => Some(None),
        Some(rest) => rest.strip_prefix(':').map(|ns| Some(ns).filter(|n| !n.is_empty())),
        None => None,
    }
}

impl ApplicationSource for Locations {
    fn read<'a>(&'a self, location: &'a str, auth: Option<&'a PushTarget>) -> BoxFuture<'a, Result<LocationApps, AppsError>> {
        Box::pin(async move {
            if let Some(namespace) = cluster_location(location) {
                if Path::new(location).is_dir() {
                    tracing::warn!("--apps {location} reads the cluster; for the directory of that name, write ./{location}");
                }
                return self.read_cluster(namespace).await;
            }
            // Even a directory is read under the git deadline: a hung network mount fails its
            // location, not the cycle.
            let owned = location.to_string();
            let local = crate::git::bounded("reading the Applications", move || {
                let path = Path::new(&owned);
                if path.is_dir() {
                    crate::git::read_dir(path).map(Some).map_err(|e| AppsError::Location(e.to_string()))
                } else if path.exists() {
                    Err(AppsError::Location(
                        "not a directory nor a git URL: give a directory of Application manifests or a git URL".into(),
                    ))
                } else if looks_like_a_path(&owned) {
                    Err(AppsError::Location("no such directory".into()))
                } else {
                    Ok(None)
                }
            })
            .await?;
            let (files, origin) = match local {
                Some(files) => (files, None),
                None => {
                    let head = ["HEAD".to_string()];
                    let mut read = self.git.snapshots(location, &head, auth).await?;
                    let snapshot = read
                        .pop()
                        .unwrap_or_else(|| Err(GitError::Revision { url: location.to_string(), revision: "HEAD".into() }))?;
                    let origin = AppsOrigin { url: location.to_string(), commit: snapshot.commit };
                    (snapshot.files, Some(origin))
                }
            };
            let (applications, errors) = find_applications(&files);
            let image_updaters = find_image_updaters(&files);
            Ok(LocationApps { applications, errors, origin, from_cluster: false, image_updaters })
        })
    }

    fn git_url<'a>(&self, location: &'a str) -> Option<&'a str> {
        if cluster_location(location).is_some() {
            return None;
        }
        (!Path::new(location).is_dir() && !looks_like_a_path(location)).then_some(location)
    }
}

/// `./apps`, `/srv/apps`, `apps`: what is neither a URL (`scheme://`) nor scp-like
/// (`git@host:org/repo.git`).
fn looks_like_a_path(location: &str) -> bool {
    if location.contains("://") {
        return false;
    }
    match location.split_once(':') {
        Some((left, _)) => left.contains('/'),
        None => true,
    }
}
