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
