//! The pull-request lifecycle on the fleet (issue 4, "Budget"): after `plan` is measured,
//! `run --once --forge local` runs on the fleet's one GitOps repository three times — the first
//! run opens the PRs, the second must change nothing (zero writes, a handful of forge calls),
//! the third follows one newer tag pushed to one registry repository. The newer tag is removed
//! from the registry's storage afterwards, so the seeded storage stays the fleet's.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::fleet::{Fleet, RepoKind};
use crate::oci_push::{ImageSpec, PushAuth, Pusher};

/// What one `run --once` reported.
pub struct RunFigures {
    pub wall_s: f64,
    pub forge_calls: u64,
    pub forge_writes: u64,
    pub git_pushes: u64,
    pub opened: usize,
    pub updated: usize,
    pub errors: usize,
}

pub struct Lifecycle {
    pub first: RunFigures,
    pub second: RunFigures,
    /// The registry repository that got a newer tag, and the run after it.
    pub one_change: Option<(String, RunFigures)>,
    /// Problems that fail the benchmark (a write on the quiet run, too many calls...).
    pub notes: Vec<String>,
}

/// Forge calls a quiet run may make for the fleet's one repository ("a handful").
pub const QUIET_CALL_BUDGET: u64 = 5;

pub async fn measure(fleet: &Fleet, bin: &Path, url: &str, scratch: &Path, registry: &str, storage: &Path) -> Result<Lifecycle> {
    if scratch.exists() {
        std::fs::remove_dir_all(scratch)?;
    }
    let forge_dir = scratch.join("forge");
    let cache = scratch.join("cache");
    std::fs::create_dir_all(&forge_dir)?;
    let run = |name: &str| run_once(bin, url, &forge_dir, &cache, &scratch.join(format!("run-{name}.json")));
    let first = run("first")?;
    let second = run("second")?;
    let mut notes = Vec::new();
    if second.forge_writes != 0 || second.git_pushes != 0 {
        notes.push(format!(
            "the second run wrote: {} forge writes, {} pushes (must be 0)",
            second.forge_writes, second.git_pushes
        ));
    }
    if second.forge_calls > QUIET_CALL_BUDGET {
        notes.push(format!("the second run made {} forge calls (budget {QUIET_CALL_BUDGET} for one repository)", second.forge_calls));
    }
    if first.errors > 0 || second.errors > 0 {
        notes.push(format!("run errors: first {}, second {}", first.errors, second.errors));
    }
    let one_change = match one_change_repo(fleet) {
        Some(repo) => {
            let tag = "999.0.0";
            let pusher = Pusher::new(registry, PushAuth::Anonymous);
            pusher
                .push_image(&repo, tag, &ImageSpec::new("2030-01-01T00:00:00Z", &format!("{repo}:{tag} (bench one-change)")))
                .await
                .map_err(|e| anyhow::anyhow!("pushing {repo}:{tag}: {e}"))?;
            let figures = run("one-change");
            // Untag, whatever the run did: later benchmarks verify the storage against the fleet.
            let tag_dir = storage.join(format!("docker/registry/v2/repositories/{repo}/_manifests/tags/{tag}"));
            std::fs::remove_dir_all(&tag_dir).with_context(|| format!("removing {}", tag_dir.display()))?;
            let figures = figures?;
            if figures.updated == 0 || figures.git_pushes == 0 {
                notes.push(format!("the one-change run updated {} PRs with {} pushes", figures.updated, figures.git_pushes));
            }
            Some((repo, figures))
        }
        None => None,
    };
    Ok(Lifecycle { first, second, one_change, notes })
}

/// A semver repository that some Application follows without a constraint or tag filter, so a
/// much newer release is proposed to it.
fn one_change_repo(fleet: &Fleet) -> Option<String> {
    fleet.apps.iter().filter(|a| !a.app_wide_ignore).flat_map(|a| &a.images).find_map(|i| {
        let repo = &fleet.repos[i.repo];
        let plain = repo.kind == RepoKind::Semver
            && i.constraint.is_none()
            && i.allow_tags.is_none()
            && i.ignore_tags.is_none()
            && matches!(i.strategy, None | Some("semver"))
            && i.expected.iter().all(|e| e.is_some());
        plain.then(|| repo.path())
    })
}

fn run_once(bin: &Path, url: &str, forge_dir: &Path, cache: &Path, out: &Path) -> Result<RunFigures> {
    let started = Instant::now();
    let mut cmd = Command::new(bin);
    cmd.args(["run", "--once", "--forge", "local", "--local-forge-dir"])
        .arg(forge_dir)
        .args(["--apps", url, "--output", "json", "--cache-dir"])
        .arg(cache)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("ARGOCD_IMAGE_PR_") {
            cmd.env_remove(k);
        }
    }
    let output = cmd.output().with_context(|| format!("running {}", bin.display()))?;
    let wall_s = started.elapsed().as_secs_f64();
    std::fs::write(out, &output.stdout)?;
    if !matches!(output.status.code(), Some(0) | Some(1)) {
        bail!(
            "run --once exited with {:?}: {}",
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).lines().rev().take(5).collect::<Vec<_>>().join(" | ")
        );
    }
    let json: serde_json::Value =
        serde_json::from_slice(&output.stdout).with_context(|| format!("run --once output is not JSON ({})", out.display()))?;
    let stat = |k: &str| json["stats"][k].as_u64().unwrap_or(0);
    let empty = Vec::new();
    let apps = json["applications"].as_array().unwrap_or(&empty);
    let count = |action: &str| apps.iter().filter(|a| a["action"] == action).count();
    Ok(RunFigures {
        wall_s,
        forge_calls: stat("forge_calls"),
        forge_writes: stat("forge_writes"),
        git_pushes: stat("git_pushes"),
        opened: count("opened"),
        updated: count("updated"),
        errors: count("error") + json["errors"].as_array().map(Vec::len).unwrap_or(0),
    })
}
