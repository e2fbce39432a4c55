//! The Kubernetes API driver behind [`Cluster`], on kube-rs: a kubeconfig (`--kubeconfig`,
//! `--context`, else `KUBECONFIG` or `~/.kube/config`) or the in-cluster service account, with
//! TLS verified against the CA the configuration names. The client is made at its first use, so
//! a run that reads nothing from the cluster needs no cluster.
//!
//! Listings are read in pages of 500 (`limit`/`continue`); a continue token the API server has
//! expired (`410 Gone`) restarts the listing once, as client-go's pager does. Every error names
//! the resource, the namespace or Secret, and the API server.

use std::path::PathBuf;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, TypeMeta};
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::sync::OnceCell;

use crate::ports::{Cluster, ClusterError, ClusterErrorKind, ClusterKind, ClusterObject, GitCredentialRef, RepoCredential, RepoCredentials, SecretData};

/// Where the cluster's configuration comes from.
#[derive(Debug, Clone, Default)]
pub struct ClusterSettings {
    /// `--kubeconfig`; else `KUBECONFIG`, `~/.kube/config`, then the in-cluster service account.
    pub kubeconfig: Option<PathBuf>,
    /// `--context`: a context of the kubeconfig other than its current one.
    pub context: Option<String>,
    pub connect_timeout: Option<Duration>,
    /// Deadline of one request.
    pub read_timeout: Option<Duration>,
}

/// Objects per page of a listing.
const PAGE: u32 = 500;

/// The Kubernetes API of one cluster.
pub struct KubeCluster {
    settings: ClusterSettings,
    client: OnceCell<(kube::Client, String)>,
}

impl KubeCluster {
    pub fn new(settings: ClusterSettings) -> KubeCluster {
        KubeCluster { settings, client: OnceCell::new() }
    }

    /// The client and the API server's URL; made once, at the first call that needs it (a
    /// configuration error is reported by every call until it is fixed).
    async fn client(&self) -> Result<&(kube::Client, String), ClusterError> {
        self.client.get_or_try_init(|| async { self.connect().await }).await
    }

    async fn connect(&self) -> Result<(kube::Client, String), ClusterError> {
        let config_error = |message: String| ClusterError { kind: ClusterErrorKind::Config, message };
        let options = KubeConfigOptions { context: self.settings.context.clone(), ..Default::default() };
        let mut config = match (&self.settings.kubeconfig, &self.settings.context) {
            (Some(path), _) => {
                let file = Kubeconfig::read_from(path).map_err(|e| config_error(format!("--kubeconfig {}: {}", path.display(), crate::error::chain(&e))))?;
                kube::Config::from_custom_kubeconfig(file, &options)
                    .await
                    .map_err(|e| config_error(format!("--kubeconfig {}: {}", path.display(), crate::error::chain(&e))))?
            }
            (None, Some(context)) => kube::Config::from_kubeconfig(&options)
                .await
                .map_err(|e| config_error(format!("--context {context}: {}", crate::error::chain(&e))))?,
            (None, None) => kube::Config::infer().await.map_err(|e| {
                config_error(format!(
                    "no Kubernetes configuration: not in a cluster, and no kubeconfig (--kubeconfig, KUBECONFIG, ~/.kube/config): {}",
                    crate::error::chain(&e)
                ))
            })?,
        };
        if let Some(t) = self.settings.connect_timeout {
            config.connect_timeout = Some(t);
        }
        if let Some(t) = self.settings.read_timeout {
            config.read_timeout = Some(t);
        }
        let server = config.cluster_url.to_string().trim_end_matches('/').to_string();
        let client = kube::Client::try_from(config)
            .map_err(|e| config_error(format!("Kubernetes API {server}: cannot make a client: {}", crate::error::chain(&e))))?;
        Ok((client, server))
    }

    async fn list_objects(&self, kind: ClusterKind, namespace: Option<&str>) -> Result<Vec<ClusterObject>, ClusterError> {
        let (client, server) = self.client().await?;
        let resource = api_resource(kind);
        let api: Api<DynamicObject> = match namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        let what = match namespace {
            Some(ns) => format!("listing {} in namespace {ns}", kind.resource()),
            None => format!("listing {} in all namespaces", kind.resource()),
        };
        let mut restarted = false;
        'listing: loop {
            let mut objects = Vec::new();
            let mut params = ListParams::default().limit(PAGE);
            loop {
                let page = match api.list(&params).await {
                    Ok(page) => page,
                    // The continue token expired mid-listing: start over, once.
                    Err(kube::Error::Api(status)) if status.code == 410 && params.continue_token.is_some() && !restarted => {
                        tracing::debug!("{what}: continue token expired; listing again");
                        restarted = true;
                        continue 'listing;
                    }
                    Err(e) => return Err(api_error(server, &what, e)),
                };
                for mut object in page.items {
                    object.types.get_or_insert_with(|| TypeMeta {
                        api_version: resource.api_version.clone(),
                        kind: resource.kind.clone(),
                    });
                    let json = serde_json::to_string_pretty(&object).map_err(|e| ClusterError {
                        kind: ClusterErrorKind::Protocol,
                        message: format!("Kubernetes API {server}: {what}: {e}"),
                    })?;
                    objects.push(ClusterObject {
                        namespace: object.metadata.namespace.clone().unwrap_or_default(),
                        name: object.metadata.name.clone().unwrap_or_default(),
                        json,
                    });
                }
                match page.metadata.continue_.filter(|c| !c.is_empty()) {
                    Some(token) => params = ListParams::default().limit(PAGE).continue_token(&token),
                    None => return Ok(objects),
                }
            }
        }
    }

    async fn read_secret(&self, namespace: &str, name: &str) -> Result<SecretData, ClusterError> {
        let (client, server) = self.client().await?;
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let secret = api.get(name).await.map_err(|e| api_error(server, &format!("reading Secret {namespace}/{name}"), e))?;
        Ok(secret_data(secret))
    }
}

impl KubeCluster {
    async fn secrets_with_label(&self, namespace: &str, key: &str, value: &str) -> Result<Vec<(String, SecretData)>, ClusterError> {
        let (client, server) = self.client().await?;
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let what = format!("listing Secrets labelled {key}={value} in namespace {namespace}");
        let selector = format!("{key}={value}");
        let mut params = ListParams::default().labels(&selector).limit(PAGE);
        let mut out = Vec::new();
        loop {
            let page = api.list(&params).await.map_err(|e| api_error(server, &what, e))?;
            out.extend(page.items.into_iter().map(|s| (s.metadata.name.clone().unwrap_or_default(), secret_data(s))));
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = ListParams::default().labels(&selector).limit(PAGE).continue_token(&token),
                None => return Ok(out),
            }
        }
    }
}

impl Cluster for KubeCluster {
    fn list<'a>(&'a self, kind: ClusterKind, namespace: Option<&'a str>) -> BoxFuture<'a, Result<Vec<ClusterObject>, ClusterError>> {
        Box::pin(self.list_objects(kind, namespace))
    }

    fn secret<'a>(&'a self, namespace: &'a str, name: &'a str) -> BoxFuture<'a, Result<SecretData, ClusterError>> {
        Box::pin(self.read_secret(namespace, name))
    }

    fn labelled_secrets<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, SecretData)>, ClusterError>> {
        Box::pin(self.secrets_with_label(namespace, key, value))
    }
}

/// Secrets by name, as a label listing returns them.
type Labelled = Vec<(String, SecretData)>;

/// Argo CD's namespace, where its repository credential Secrets are.
pub const ARGOCD_NAMESPACE: &str = "argocd";
/// The label Argo CD marks its credential Secrets with.
const SECRET_TYPE: &str = "argocd.argoproj.io/secret-type";

/// Git credentials from the cluster: a named Secret, or Argo CD's repository credentials as
/// Argo CD matches them: a `repository` Secret for exactly the URL, else the `repo-creds`
/// template with the longest URL prefix.
pub struct ClusterRepoCredentials {
    cluster: std::sync::Arc<dyn Cluster>,
}

impl ClusterRepoCredentials {
    pub fn new(cluster: std::sync::Arc<dyn Cluster>) -> Self {
        ClusterRepoCredentials { cluster }
    }
}

impl RepoCredentials for ClusterRepoCredentials {
    fn lookup<'a>(&'a self, requests: &'a [(String, GitCredentialRef)]) -> BoxFuture<'a, Vec<RepoCredential>> {
        Box::pin(async move {
            // Argo CD's credential Secrets, listed once for all the URLs that ask for them.
            let mut listed: Option<Result<(Labelled, Labelled), ClusterError>> = None;
            let mut named: std::collections::HashMap<(String, String), RepoCredential> = std::collections::HashMap::new();
            let mut out = Vec::with_capacity(requests.len());
            for (url, reference) in requests {
                out.push(match reference {
                    GitCredentialRef::Secret { namespace, name } => {
                        let key = (namespace.clone(), name.clone());
                        if !named.contains_key(&key) {
                            let read = self.cluster.secret(namespace, name).await.and_then(|data| {
                                user_pass(&data).map(Some).ok_or_else(|| ClusterError {
                                    kind: ClusterErrorKind::Config,
                                    message: format!(
                                        "Secret {namespace}/{name} has no username and password (ssh keys are not used: the bot fetches over https)"
                                    ),
                                })
                            });
                            named.insert(key.clone(), read);
                        }
                        named[&key].clone()
                    }
                    GitCredentialRef::RepoCreds => {
                        if listed.is_none() {
                            let exact = self.cluster.labelled_secrets(ARGOCD_NAMESPACE, SECRET_TYPE, "repository").await;
                            let templates = match &exact {
                                Ok(_) => self.cluster.labelled_secrets(ARGOCD_NAMESPACE, SECRET_TYPE, "repo-creds").await,
                                Err(e) => Err(e.clone()),
                            };
                            listed = Some(exact.and_then(|e| Ok((e, templates?))));
                        }
                        match listed.as_ref().expect("listed above") {
                            Ok((exact, templates)) => Ok(match_repo_credentials(url, exact, templates)),
                            Err(e) => Err(e.clone()),
                        }
                    }
                });
            }
            out
        })
    }
}

/// Argo CD's rule: a `repository` Secret whose `url` is the repository (compared without a
/// trailing `/` or `.git`, case-insensitively), else the `repo-creds` whose `url` is the longest
/// prefix of it, among those with a username and password (the bot fetches over https).
pub(crate) fn match_repo_credentials(
    url: &str,
    repositories: &[(String, SecretData)],
    templates: &[(String, SecretData)],
) -> Option<(String, String)> {
    let normal = |u: &str| u.trim().trim_end_matches('/').trim_end_matches(".git").to_ascii_lowercase();
    let wanted = normal(url);
    let url_of = |data: &SecretData| data.get("url").and_then(|u| std::str::from_utf8(u).ok()).map(str::to_string);
    if let Some(found) = repositories.iter().find(|(_, d)| url_of(d).is_some_and(|u| normal(&u) == wanted)).and_then(|(_, d)| user_pass(d)) {
        return Some(found);
    }
    templates
        .iter()
        .filter_map(|(_, d)| Some((url_of(d)?, user_pass(d)?)))
        .filter(|(prefix, _)| wanted.starts_with(&prefix.trim().to_ascii_lowercase()))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, creds)| creds)
}

fn user_pass(data: &SecretData) -> Option<(String, String)> {
    let text = |k: &str| data.get(k).and_then(|v| String::from_utf8(v.clone()).ok()).filter(|v| !v.is_empty());
    Some((text("username")?, text("password")?))
}

fn api_resource(kind: ClusterKind) -> ApiResource {
    match kind {
        ClusterKind::Application => {
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application"), "applications")
        }
        ClusterKind::ImageUpdater => ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("argocd-image-updater.argoproj.io", "v1alpha1", "ImageUpdater"),
            "imageupdaters",
        ),
    }
}

/// `data` decoded (k8s-openapi decodes the base64), with `stringData` never present in a read.
fn secret_data(secret: Secret) -> SecretData {
    secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect()
}

/// A kube error as the bot reports it: the API server, what was being done, and the cause.
fn api_error(server: &str, what: &str, e: kube::Error) -> ClusterError {
    let (kind, cause) = match &e {
        kube::Error::Api(status) => {
            let kind = match status.code {
                401 => ClusterErrorKind::Unauthorized,
                403 => ClusterErrorKind::Forbidden,
                404 => ClusterErrorKind::NotFound,
                500.. => ClusterErrorKind::Network,
                _ => ClusterErrorKind::Protocol,
            };
            let reason = if status.reason.is_empty() { String::new() } else { format!(" {}", status.reason) };
            let message = if status.message.is_empty() { String::new() } else { format!(": {}", status.message) };
            (kind, format!("{}{reason}{message}", status.code))
        }
        kube::Error::SerdeError(_) => (ClusterErrorKind::Protocol, crate::error::chain(&e)),
        _ => (ClusterErrorKind::Network, crate::error::chain(&e)),
    };
    ClusterError { kind, message: format!("Kubernetes API {server}: {what}: {cause}") }
}


#[cfg(test)]
mod tests {
    use super::*;

    fn secret(pairs: &[(&str, &str)]) -> SecretData {
        pairs.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect()
    }

    #[test]
    fn repository_secrets_match_exactly_then_the_longest_template_prefix() {
        let repos = vec![("one".to_string(), secret(&[("url", "https://git.example.com/org/app.git"), ("username", "u1"), ("password", "p1")]))];
        let templates = vec![
            ("org".to_string(), secret(&[("url", "https://git.example.com/org"), ("username", "u2"), ("password", "p2")])),
            ("host".to_string(), secret(&[("url", "https://git.example.com"), ("username", "u3"), ("password", "p3")])),
            ("ssh".to_string(), secret(&[("url", "https://git.example.com/org/team"), ("sshPrivateKey", "k")])),
        ];
        let pick = |url: &str| match_repo_credentials(url, &repos, &templates).map(|(u, _)| u);
        assert_eq!(pick("https://git.example.com/org/app"), Some("u1".into()), "exact, without .git");
        assert_eq!(pick("https://git.example.com/org/other.git"), Some("u2".into()), "the longest prefix");
        assert_eq!(pick("https://git.example.com/another/x.git"), Some("u3".into()));
        assert_eq!(pick("https://git.example.com/org/team/x.git"), Some("u2".into()), "an ssh-only template is not used");
        assert_eq!(pick("https://elsewhere.example.com/org/app.git"), None);
    }
}
