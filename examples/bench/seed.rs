//! Seeds the registry with the fleet's repositories, reusing storage a marker file says is
//! complete for this fleet version and seed.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::json;
use tokio::sync::Semaphore;

use crate::fleet::{FLEET_VERSION, Repo, SEED};
use crate::push::{OCI_INDEX, OCI_MANIFEST, Pusher, digest};

const MARKER: &str = "bench-fleet.json";

/// How many leading repositories (by index) the storage holds completely for this fleet.
pub fn seeded_repos(storage: &Path) -> usize {
    let Ok(text) = fs::read_to_string(storage.join(MARKER)) else { return 0 };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else { return 0 };
    if v["fleet_version"] == json!(FLEET_VERSION) && v["seed"] == json!(format!("{SEED:#x}")) {
        v["repos_complete"].as_u64().unwrap_or(0) as usize
    } else {
        0
    }
}

/// Makes `storage` usable for this fleet: wipes it when its marker belongs to another fleet.
pub fn prepare_storage(storage: &Path) -> Result<()> {
    let marker = storage.join(MARKER);
    if storage.exists() && seeded_repos(storage) == 0 && (marker.exists() || storage.join("docker").exists()) {
        eprintln!("bench: registry storage {} belongs to another fleet; wiping it", storage.display());
        fs::remove_dir_all(storage)?;
    }
    fs::create_dir_all(storage)?;
    Ok(())
}

fn write_marker(storage: &Path, repos: usize) -> Result<()> {
    let v = json!({
        "fleet_version": FLEET_VERSION,
        "seed": format!("{SEED:#x}"),
        "repos_complete": repos,
    });
    fs::write(storage.join(MARKER), serde_json::to_vec_pretty(&v)?)?;
    Ok(())
}

pub struct SeedStats {
    pub repos: usize,
    pub tags: usize,
    pub secs: f64,
}

/// One pushed image: the manifest (or index) body every tag of it is put with.
struct Pushed {
    media_type: &'static str,
    body: Arc<Vec<u8>>,
}

fn config(created: &str, arch: &str, layer_diff: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "created": created,
        "architecture": arch,
        "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_diff]},
    }))
    .expect("json")
}

fn manifest(config: &[u8], layer: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest(layer), "size": layer.len()}],
    }))
    .expect("json")
}

/// Pushes blobs and child manifests of every image of `repo`; returns what tags point at.
async fn push_images(p: &Pusher, repo: &Repo) -> Result<Vec<Pushed>> {
    let path = repo.path();
    let layer = format!("bench layer of {path}").into_bytes();
    let diff = digest(&layer);
    p.blob(&path, &layer).await?;
    let archs: &[&str] = if repo.multi_arch { &["amd64", "arm64"] } else { &["amd64"] };
    let mut out = Vec::new();
    for img in &repo.images {
        let mut children = Vec::new();
        for arch in archs {
            let cfg = config(&img.created, arch, &diff);
            p.blob(&path, &cfg).await?;
            let m = manifest(&cfg, &layer);
            children.push((arch, m));
        }
        if repo.multi_arch {
            let mut entries = Vec::new();
            for (arch, m) in &children {
                let d = digest(m);
                p.manifest(&path, &d, OCI_MANIFEST, m).await?;
                entries.push(json!({
                    "mediaType": OCI_MANIFEST, "digest": d, "size": m.len(),
                    "platform": {"architecture": arch, "os": "linux"},
                }));
            }
            let index = serde_json::to_vec(&json!({
                "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries,
            }))?;
            out.push(Pushed { media_type: OCI_INDEX, body: Arc::new(index) });
        } else {
            let (_, m) = children.pop().expect("one arch");
            out.push(Pushed { media_type: OCI_MANIFEST, body: Arc::new(m) });
        }
    }
    Ok(out)
}

/// Seeds repositories `from..repos.len()` with `concurrency` requests in flight.
pub async fn seed(base_url: &str, storage: &Path, repos: &[Repo], concurrency: usize) -> Result<SeedStats> {
    let from = seeded_repos(storage).min(repos.len());
    let todo = &repos[from..];
    let total_tags: usize = todo.iter().map(|r| r.tags.len()).sum();
    if todo.is_empty() {
        return Ok(SeedStats { repos: 0, tags: 0, secs: 0.0 });
    }
    eprintln!(
        "bench: seeding {} repositories ({total_tags} tags) into {base_url} with {concurrency} requests in flight",
        todo.len()
    );
    let started = Instant::now();
    let p = Pusher::new(base_url);
    let sem = Arc::new(Semaphore::new(concurrency));
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for repo in todo {
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
                let img = &images[tag.image];
                let (mt, body, name) = (img.media_type, img.body.clone(), tag.name.clone());
                puts.spawn(async move {
                    let r = p.manifest(&path, &name, mt, &body).await;
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
    write_marker(storage, repos.len())?;
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
            let (client, want, path) = (client.clone(), repo.tags.len(), repo.path());
            set.spawn(async move {
                let v: serde_json::Value = client.get(url).send().await?.json().await?;
                let got = v["tags"].as_array().map(|a| a.len()).unwrap_or(0);
                anyhow::Ok((path, want, got))
            });
        }
        while let Some(r) = set.join_next().await {
            let (path, want, got) = r??;
            if want != got {
                bad.push(format!("{path}: {got} tags, expected {want}"));
            }
        }
    }
    if !bad.is_empty() {
        bail!("registry content does not match the fleet (use --reseed): {}", bad.join("; "));
    }
    Ok(())
}
