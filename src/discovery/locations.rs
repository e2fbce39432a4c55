//! [`ApplicationSource`] for `--apps` locations that are directories or git URLs: the files
//! are read (a directory as it is, a git URL cloned at `HEAD` through the git port) and parsed
//! by [`super::find_applications`].

use std::path::Path;
use std::sync::Arc;

use futures::future::BoxFuture;

use super::find_applications;
use crate::ports::{ApplicationSource, AppsError, AppsOrigin, GitError, GitRepos, LocationApps, PushTarget};

pub struct Locations {
    git: Arc<dyn GitRepos>,
}

impl Locations {
    pub fn new(git: Arc<dyn GitRepos>) -> Self {
        Locations { git }
    }
}

impl ApplicationSource for Locations {
    fn read<'a>(&'a self, location: &'a str, auth: Option<&'a PushTarget>) -> BoxFuture<'a, Result<LocationApps, AppsError>> {
        Box::pin(async move {
            let path = Path::new(location);
            let (files, origin) = if path.is_dir() {
                let dir = path.to_path_buf();
                let files = tokio::task::spawn_blocking(move || crate::git::read_dir(&dir))
                    .await
                    .map_err(|e| GitError::Worker { what: "reading the Applications".into(), message: e.to_string() })??;
                (files, None)
            } else if path.exists() {
                return Err(AppsError::Location(
                    "not a directory nor a git URL: give a directory of Application manifests or a git URL".into(),
                ));
            } else if looks_like_a_path(location) {
                return Err(AppsError::Location("no such directory".into()));
            } else {
                let head = ["HEAD".to_string()];
                let mut read = self.git.snapshots(location, &head, auth).await?;
                let snapshot = read
                    .pop()
                    .unwrap_or_else(|| Err(GitError::Revision { url: location.to_string(), revision: "HEAD".into() }))?;
                let origin = AppsOrigin { url: location.to_string(), commit: snapshot.commit };
                (snapshot.files, Some(origin))
            };
            let (applications, errors) = find_applications(&files);
            Ok(LocationApps { applications, errors, origin })
        })
    }

    fn git_url<'a>(&self, location: &'a str) -> Option<&'a str> {
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
