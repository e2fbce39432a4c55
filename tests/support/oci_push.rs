//! Pushes small OCI images to a registry over the distribution HTTP API, without Docker.
//!
//! Shared by the integration tests (`mod support;`), `examples/seed.rs` and the benchmark
//! (both include this file with `#[path]`), so it depends only on crates the package already
//! has (tokio, reqwest, serde_json, sha2, hex, base64) and never on the crate under test.
//!
//! The upload follows the distribution spec: `HEAD` the blob, else `POST` an upload, read its
//! `Location`, `PUT` the bytes with `digest=`; then `PUT` the manifest with its media type.
//! Registries behind basic auth get the credentials on every request; registries behind token
//! auth are answered the way a client does it: the `401`'s `WWW-Authenticate: Bearer realm=...`
//! challenge is exchanged at the realm (with the basic credentials) for a token, cached per scope.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use reqwest::{Method, StatusCode};
use sha2::{Digest as _, Sha256};

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, Error>;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// How the pusher proves who it is.
#[derive(Clone, Debug)]
pub enum PushAuth {
    Anonymous,
    /// Sent as basic auth to a htpasswd registry, or to the token realm of a token registry.
    Basic { user: String, pass: String },
    /// A token obtained elsewhere, sent as `Authorization: Bearer` on every request.
    Bearer(String),
}

/// What an image is built from: the fields of its config blob, plus content that makes its
/// layer (and so its digest) unique.
#[derive(Clone, Debug)]
pub struct ImageSpec {
    /// RFC 3339, e.g. `2024-01-01T00:00:00Z`; what newest-build sorts by.
    pub created: String,
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
    /// Any text; a different text gives a different image.
    pub content: String,
}

impl ImageSpec {
    /// A linux/amd64 image built at `created`, made unique by `content`.
    pub fn new(created: &str, content: &str) -> Self {
        Self::for_platform(created, "linux/amd64", content)
    }

    /// `platform` is `os/arch[/variant]`.
    pub fn for_platform(created: &str, platform: &str, content: &str) -> Self {
        let mut parts = platform.split('/');
        let os = parts.next().unwrap_or("linux").to_string();
        let architecture = parts.next().unwrap_or("amd64").to_string();
        let variant = parts.next().map(str::to_string);
        ImageSpec { created: created.to_string(), os, architecture, variant, content: content.to_string() }
    }
}

/// A manifest (or index) as stored: pushing the same bytes under another tag makes an alias.
#[derive(Clone, Debug)]
pub struct PushedManifest {
    pub digest: String,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[derive(Clone)]
pub struct Pusher {
    client: reqwest::Client,
    /// `http://127.0.0.1:5000`
    base: String,
    auth: PushAuth,
    /// Bearer tokens by scope, for token registries.
    tokens: Arc<Mutex<HashMap<String, String>>>,
}

impl Pusher {
    /// `registry` is `host:port` (spoken to over plain http) or a full `http(s)://` base URL.
    pub fn new(registry: &str, auth: PushAuth) -> Self {
        let base = if registry.starts_with("http://") || registry.starts_with("https://") {
            registry.trim_end_matches('/').to_string()
        } else {
            format!("http://{registry}")
        };
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .expect("reqwest client");
        Pusher { client, base, auth, tokens: Arc::new(Mutex::new(HashMap::new())) }
    }

    /// Uploads a blob unless the repository already has it; returns its OCI descriptor.
    pub async fn push_blob(&self, repo: &str, media_type: &str, bytes: &[u8]) -> Result<serde_json::Value> {
        let digest = sha256_digest(bytes);
        let descriptor = serde_json::json!({
            "mediaType": media_type, "digest": digest, "size": bytes.len(),
        });
        let head = self
            .send(repo, Method::HEAD, &format!("{}/v2/{repo}/blobs/{digest}", self.base), None, None)
            .await?;
        if head.status() == StatusCode::OK {
            return Ok(descriptor);
        }
        let post = self
            .send(repo, Method::POST, &format!("{}/v2/{repo}/blobs/uploads/", self.base), None, Some(Vec::new()))
            .await?;
        if post.status() != StatusCode::ACCEPTED {
            return Err(failure("start blob upload", post).await);
        }
        let location = post
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or("blob upload answered without a Location header")?
            .to_string();
        let location = if location.starts_with('/') { format!("{}{location}", self.base) } else { location };
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = self
            .send(
                repo,
                Method::PUT,
                &format!("{location}{sep}digest={digest}"),
                Some("application/octet-stream"),
                Some(bytes.to_vec()),
            )
            .await?;
        if put.status() != StatusCode::CREATED {
            return Err(failure("finish blob upload", put).await);
        }
        Ok(descriptor)
    }

    /// Stores `manifest` under `reference` (a tag or its digest); returns its digest.
    pub async fn put_manifest(&self, repo: &str, reference: &str, manifest: &PushedManifest) -> Result<String> {
        let resp = self
            .send(
                repo,
                Method::PUT,
                &format!("{}/v2/{repo}/manifests/{reference}", self.base),
                Some(&manifest.media_type),
                Some(manifest.bytes.clone()),
            )
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(failure(&format!("put manifest {repo}:{reference}"), resp).await);
        }
        Ok(manifest.digest.clone())
    }

    /// Pushes the layer and config blobs of one single-platform image and its manifest, without
    /// tagging it (the manifest is stored under its digest).
    pub async fn push_image_untagged(&self, repo: &str, spec: &ImageSpec) -> Result<PushedManifest> {
        let layer = self.push_blob(repo, OCI_LAYER, &tar_with_one_file("content.txt", spec.content.as_bytes())).await?;
        let mut config = serde_json::json!({
            "created": spec.created,
            "architecture": spec.architecture,
            "os": spec.os,
            "config": {},
            "rootfs": { "type": "layers", "diff_ids": [layer["digest"]] },
        });
        if let Some(v) = &spec.variant {
            config["variant"] = serde_json::Value::String(v.clone());
        }
        let config = self.push_blob(repo, OCI_CONFIG, &serde_json::to_vec(&config)?).await?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config,
            "layers": [layer],
        });
        let bytes = serde_json::to_vec(&manifest)?;
        let pushed = PushedManifest { digest: sha256_digest(&bytes), media_type: OCI_MANIFEST.into(), bytes };
        self.put_manifest(repo, &pushed.digest, &pushed).await?;
        Ok(pushed)
    }

    /// Pushes one single-platform image as `repo:tag`; returns the manifest digest.
    pub async fn push_image(&self, repo: &str, tag: &str, spec: &ImageSpec) -> Result<String> {
        let pushed = self.push_image_untagged(repo, spec).await?;
        self.put_manifest(repo, tag, &pushed).await
    }

    /// Pushes one image per platform and an image index over them as `repo:tag`; returns the
    /// index digest and the digests of the platform manifests, in the order given.
    pub async fn push_index(&self, repo: &str, tag: &str, platforms: &[ImageSpec]) -> Result<(String, Vec<String>)> {
        let mut entries = Vec::new();
        let mut children = Vec::new();
        for spec in platforms {
            let child = self.push_image_untagged(repo, spec).await?;
            let mut platform = serde_json::json!({ "architecture": spec.architecture, "os": spec.os });
            if let Some(v) = &spec.variant {
                platform["variant"] = serde_json::Value::String(v.clone());
            }
            entries.push(serde_json::json!({
                "mediaType": OCI_MANIFEST,
                "digest": child.digest,
                "size": child.bytes.len(),
                "platform": platform,
            }));
            children.push(child.digest);
        }
        let index = serde_json::json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries });
        let bytes = serde_json::to_vec(&index)?;
        let pushed = PushedManifest { digest: sha256_digest(&bytes), media_type: OCI_INDEX.into(), bytes };
        let digest = self.put_manifest(repo, tag, &pushed).await?;
        Ok((digest, children))
    }

    /// Points many tags at one manifest, `concurrency` PUTs at a time.
    pub async fn tag_many(&self, repo: &str, manifest: &PushedManifest, tags: &[String], concurrency: usize) -> Result<()> {
        let permits = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        for tag in tags {
            let permit = permits.clone().acquire_owned().await?;
            let (this, repo, tag, manifest) = (self.clone(), repo.to_string(), tag.clone(), manifest.clone());
            tasks.spawn(async move {
                let _permit = permit;
                this.put_manifest(&repo, &tag, &manifest).await
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        Ok(())
    }

    /// Sends one request, answering a Bearer challenge once if the registry makes one.
    async fn send(
        &self,
        repo: &str,
        method: Method,
        url: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<reqwest::Response> {
        let scope = format!("repository:{repo}:pull,push");
        let cached = self.tokens.lock().unwrap().get(&scope).cloned();
        let resp = self.request(method.clone(), url, content_type, body.clone(), cached.as_deref()).send().await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenge = resp
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        if !challenge.to_ascii_lowercase().starts_with("bearer ") {
            return Ok(resp);
        }
        let token = self.fetch_token(&challenge, &scope).await?;
        self.tokens.lock().unwrap().insert(scope, token.clone());
        Ok(self.request(method, url, content_type, body, Some(&token)).send().await?)
    }

    fn request(
        &self,
        method: Method,
        url: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let mut req = self.client.request(method, url);
        req = match (&self.auth, token) {
            (_, Some(token)) => req.bearer_auth(token),
            (PushAuth::Bearer(token), None) => req.bearer_auth(token),
            (PushAuth::Basic { user, pass }, None) => req.basic_auth(user, Some(pass)),
            (PushAuth::Anonymous, None) => req,
        };
        if let Some(ct) = content_type {
            req = req.header(reqwest::header::CONTENT_TYPE, ct);
        }
        if let Some(body) = body {
            req = req.header(reqwest::header::CONTENT_LENGTH, body.len()).body(body);
        }
        req
    }

    /// Exchanges a `Bearer realm="..",service="..",scope=".."` challenge for a token.
    async fn fetch_token(&self, challenge: &str, scope: &str) -> Result<String> {
        let params = parse_challenge(&challenge["bearer ".len()..]);
        let realm = params.get("realm").ok_or("Bearer challenge without realm")?;
        let mut query = vec![("scope", scope.to_string())];
        if let Some(service) = params.get("service") {
            query.push(("service", service.clone()));
        }
        let url = reqwest::Url::parse_with_params(realm, &query)?;
        let mut req = self.client.get(url);
        if let PushAuth::Basic { user, pass } = &self.auth {
            let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            req = req.header(reqwest::header::AUTHORIZATION, format!("Basic {encoded}"));
        }
        let resp = req.send().await?;
        if !resp.status().is_success() {
            return Err(failure("get a token", resp).await);
        }
        let body: serde_json::Value = resp.json().await?;
        body.get("token")
            .or_else(|| body.get("access_token"))
            .and_then(|t| t.as_str())
            .map(str::to_string)
            .ok_or_else(|| "token response without token".into())
    }
}

/// `realm="x",service="y"` → map. Values are quoted and hold no quotes in practice.
fn parse_challenge(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = s.trim();
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = &rest[eq + 1..];
        let (value, tail) = if let Some(stripped) = after.strip_prefix('"') {
            let end = stripped.find('"').unwrap_or(stripped.len());
            (&stripped[..end], stripped.get(end + 1..).unwrap_or(""))
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        out.insert(key, value.to_string());
        rest = tail.trim_start_matches(',').trim();
    }
    out
}

async fn failure(what: &str, resp: reqwest::Response) -> Error {
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    format!("{what}: HTTP {status}: {body}").into()
}

/// A valid POSIX tar archive holding one regular file (so the layer is a real layer).
pub fn tar_with_one_file(name: &str, content: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |field: &mut [u8], value: u64| {
        let s = format!("{:0width$o}\0", value, width = field.len() - 1);
        field.copy_from_slice(s.as_bytes());
    };
    octal(&mut header[100..108], 0o644); // mode
    octal(&mut header[108..116], 0); // uid
    octal(&mut header[116..124], 0); // gid
    octal(&mut header[124..136], content.len() as u64); // size
    octal(&mut header[136..148], 0); // mtime: fixed, so the same content gives the same digest
    header[156] = b'0'; // regular file
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[148..156].copy_from_slice(b"        "); // checksum is computed with spaces here
    let sum: u32 = header.iter().map(|&b| b as u32).sum();
    let s = format!("{sum:06o}\0 ");
    header[148..156].copy_from_slice(s.as_bytes());
    let mut out = header.to_vec();
    out.extend_from_slice(content);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.resize(out.len() + 1024, 0); // two zero blocks end the archive
    out
}
