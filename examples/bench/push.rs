//! Minimal OCI push over the distribution HTTP API (stand-in until tests/support/oci_push.rs lands).

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[derive(Clone)]
pub struct Pusher {
    client: reqwest::Client,
    base: String,
}

impl Pusher {
    pub fn new(base: &str) -> Self {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(128)
            .build()
            .expect("http client");
        Pusher { client, base: base.trim_end_matches('/').to_string() }
    }

    /// Uploads a blob unless the repository has it; returns its digest.
    pub async fn blob(&self, repo: &str, bytes: &[u8]) -> Result<String> {
        let d = digest(bytes);
        let head = self.client.head(format!("{}/v2/{repo}/blobs/{d}", self.base)).send().await?;
        if head.status().is_success() {
            return Ok(d);
        }
        let post = self.client.post(format!("{}/v2/{repo}/blobs/uploads/", self.base)).send().await?;
        if post.status().as_u16() != 202 {
            bail!("POST upload {repo}: {}", post.status());
        }
        let loc = post.headers().get("location").context("upload without Location")?.to_str()?.to_string();
        let loc = if loc.starts_with('/') { format!("{}{loc}", self.base) } else { loc };
        let sep = if loc.contains('?') { '&' } else { '?' };
        let put = self
            .client
            .put(format!("{loc}{sep}digest={d}"))
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await?;
        if put.status().as_u16() != 201 {
            bail!("PUT blob {repo}: {}", put.status());
        }
        Ok(d)
    }

    /// Puts a manifest (or index) under a tag or digest.
    pub async fn manifest(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) -> Result<()> {
        let r = self
            .client
            .put(format!("{}/v2/{repo}/manifests/{reference}", self.base))
            .header("content-type", media_type)
            .body(body.to_vec())
            .send()
            .await?;
        if r.status().as_u16() != 201 {
            let s = r.status();
            bail!("PUT manifest {repo}:{reference}: {s} {}", r.text().await.unwrap_or_default());
        }
        Ok(())
    }
}
