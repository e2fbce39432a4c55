//! Seeds the registry with the fleet's repositories, reusing storage a marker file says is
//! complete for this fleet version and seed.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::fleet::{FLEET_VERSION, Repo, SEED};
use crate::oci_push::{ImageSpec, OCI_INDEX, OCI_MANIFEST, PushAuth, PushedManifest, Pusher};

const MARKER: &str = "bench-fleet.json";

/// A digest of everything the registry holds for `repo` (and of how it is pushed), so a changed
/// fleet model re-seeds exactly the repositories that changed.
pub fn fingerprint(repo: &Repo) -> String {
    let mut h = Sha256::new();
    h.update(format!("v{FLEET_VERSION} {SEED:#x} {} {}\n", repo.path(), repo.multi_arch));
    for i in &repo.images {
        h.update(format!("image {}\n", i.created));
    }
    for t in &repo.tags {
        h.update(format!("tag {} {}\n", t.name, t.image));
    }
    hex::encode(h.finalize())
}

fn read_marker(storage: &Path) -> BTreeMap<String, String> {
    fs::read_to_string(storage.join(MARKER))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| serde_json::from_value(v["repositories"].clone()).ok())
        .unwrap_or_default()
}

fn write_marker(storage: &Path, marker: &BTreeMap<String, String>) -> Result<()> {
    let v = json!({
        "what": "repositories of the argocd-image-pr benchmark fleet seeded completely, with their fingerprints",
        "fleet_version": FLEET_VERSION,
        "seed": format!("{SEED:#x}"),
        "repositories": marker,
    });
    fs::write(storage.join(MARKER), serde_json::to_vec_pretty(&v)?)?;
    Ok(())
}

fn repo_dir(storage: &Path, repo: &Repo) -> PathBuf {
    storage.join("docker/registry/v2/repositories").join(repo.path())
}

/// Which of `repos` the storage does not hold as the model says. Their directories are removed
/// (stale tags of an older model must not survive); call this while the registry is stopped.
pub fn prepare_storage(storage: &Path, repos: &[Repo]) -> Result<Vec<usize>> {
    fs::create_dir_all(storage)?;
    let marker = read_marker(storage);
    let mut todo = Vec::new();
    for (i, repo) in repos.iter().enumerate() {
        if marker.get(&repo.path()) != Some(&fingerprint(repo)) {
            let dir = repo_dir(storage, repo);
            if dir.exists() {
                fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
            }
            todo.push(i);
        }
    }
    Ok(todo)
}

pub struct SeedStats {
    pub repos: usize,
    pub tags: usize,
    pub secs: f64,
}

/// Pushes blobs and platform manifests of every image of `repo` (untagged); returns, per image,
/// what its tags point at: the manifest, or an index over linux/amd64 and linux/arm64.
async fn push_images(p: &Pusher, repo: &Repo) -> anyhow::Result<Vec<Arc<PushedManifest>>> {
    let path = repo.path();
    let err = |e: crate::oci_push::Error| anyhow::anyhow!("{e}");
    let platforms: &[&str] = if repo.multi_arch { &["linux/amd64", "linux/arm64"] } else { &["linux/amd64"] };
    let mut out = Vec::new();
    for img in &repo.images {
        // One layer per repository; configs differ by `created` (and architecture).
        let content = format!("benchmark layer of {path}");
        let mut children = Vec::new();
        for platform in platforms {
            let spec = ImageSpec::for_platform(&img.created, platform, &content);
            children.push((spec.clone(), p.push_image_untagged(&path, &spec).await.map_err(err)?));
        }
        if !repo.multi_arch {
            out.push(Arc::new(children.pop().expect("one platform").1));
            continue;
        }
        let entries: Vec<_> = children
            .iter()
            .map(|(spec, m)| {
                json!({
                    "mediaType": OCI_MANIFEST, "digest": m.digest, "size": m.bytes.len(),
                    "platform": {"architecture": spec.architecture, "os": spec.os},
                })
            })
            .collect();
        let bytes = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}))?;
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        out.push(Arc::new(PushedManifest { digest, media_type: OCI_INDEX.into(), bytes }));
    }
    Ok(out)
}

/// Seeds the repositories `todo` (indices into `repos`) with `concurrency` requests in flight.
pub async fn seed(
    base_url: &str,
    storage: &Path,
    repos: &[Repo],
    todo: &[usize],
    concurrency: usize,
) -> Result<SeedStats> {
    let todo: Vec<&Repo> = todo.iter().map(|&i| &repos[i]).collect();
    let total_tags: usize = todo.iter().map(|r| r.tags.len()).sum();
    if todo.is_empty() {
        return Ok(SeedStats { repos: 0, tags: 0, secs: 0.0 });
    }
    eprintln!(
        "bench: seeding {} repositories ({total_tags} tags) into {base_url} with {concurrency} requests in flight",
        todo.len()
    );
    let started = Instant::now();
    let p = Pusher::new(base_url, PushAuth::Anonymous);
    let sem = Arc::new(Semaphore::new(concurrency));
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for &repo in &todo {
        let repo = repo.clone();
        let p = p.clone();
        let sem = sem.clone();
        let done = done.clone();
        tasks.spawn(async move {
            let images = {
                let _permit = sem.acquire().await?;
                push_images(&p, &repo).await.with_context(|| format!("pushing images of {}", repo.path()))?
            };
            let path = Arc::new(repo.path());
            let mut puts = tokio::task::JoinSet::new();
            for tag in &repo.tags {
                let permit = sem.clone().acquire_owned().await?;
                let (p, path, done) = (p.clone(), path.clone(), done.clone());
                let manifest = images[tag.image].clone();
                let name = tag.name.clone();
                puts.spawn(async move {
                    let r = p.put_manifest(&path, &name, &manifest).await.map_err(|e| anyhow::anyhow!("{e}"));
                    drop(permit);
                    let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if n % 10_000 == 0 {
                        eprintln!("bench:   {n} tags");
                    }
                    r
                });
            }
            while let Some(r) = puts.join_next().await {
                r??;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let mut marker = read_marker(storage);
    for repo in &todo {
        marker.insert(repo.path(), fingerprint(repo));
    }
    write_marker(storage, &marker)?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!("bench: seeded {total_tags} tags in {secs:.1} s ({:.0} tags/s)", total_tags as f64 / secs);
    Ok(SeedStats { repos: todo.len(), tags: total_tags, secs })
}

/// Checks that the registry lists exactly the fleet's tags for `repos`.
pub async fn verify(base_url: &str, repos: &[&Repo]) -> Result<()> {
    let client = reqwest::Client::new();
    let mut bad = Vec::new();
    for chunk in repos.chunks(16) {
        let mut set = tokio::task::JoinSet::new();
        for repo in chunk {
            let url = format!("{base_url}/v2/{}/tags/list", repo.path());
            let want: BTreeSet<String> = repo.tags.iter().map(|t| t.name.clone()).collect();
            let (client, path) = (client.clone(), repo.path());
            set.spawn(async move {
                let v: serde_json::Value = client.get(url).send().await?.json().await?;
                let got: BTreeSet<String> = v["tags"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|t| t.as_str().map(String::from)).collect())
                    .unwrap_or_default();
                anyhow::Ok((path, want, got))
            });
        }
        while let Some(r) = set.join_next().await {
            let (path, want, got) = r??;
            if want != got {
                bad.push(format!(
                    "{path}: {} tags missing, {} unexpected",
                    want.difference(&got).count(),
                    got.difference(&want).count()
                ));
            }
        }
    }
    if !bad.is_empty() {
        bail!("registry content does not match the fleet (use --reseed): {}", bad.join("; "));
    }
    Ok(())
}
