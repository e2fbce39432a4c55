//! The speed benchmark of `argocd-image-pr plan` (issue 2, "Speed"): generates a fleet in a real
//! local `docker-registry` and a real GitOps repository, runs the release binary from a cold
//! start, and prints wall time, peak memory and registry requests against the targets.
//!
//!     scripts/bench.sh [--scale full|fifth|both] [--generate-only] [--runs N] ...
//!
//! The registry's storage persists under the bench directory and is reused while its marker
//! says it holds this fleet (version and seed); the GitOps repository is rebuilt every run.

#[path = "bench/fleet.rs"]
mod fleet;
#[path = "bench/gitops.rs"]
mod gitops;
#[path = "bench/lifecycle.rs"]
mod lifecycle;
#[path = "bench/measure.rs"]
mod measure;
#[path = "../tests/support/oci_push.rs"]
mod oci_push;
#[path = "bench/registry.rs"]
mod registry;
#[path = "bench/seed.rs"]
mod seed;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};

use fleet::{Fleet, Layout, RepoKind, Scale, TagKind};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ScaleArg {
    Full,
    Fifth,
    Both,
}

#[derive(Parser, Debug)]
#[command(about = "Benchmark of `argocd-image-pr plan` on a generated fleet")]
struct Args {
    /// Fleet size: full (1,000 Applications, 300 repositories, 135,000 tags), fifth, or both.
    #[arg(long, value_enum, default_value = "full")]
    scale: ScaleArg,
    /// Seed the registry and write the GitOps repository, but do not run `plan`.
    #[arg(long)]
    generate_only: bool,
    /// After generating, keep the registry running until Ctrl-C (to run `plan` by hand).
    #[arg(long)]
    serve: bool,
    /// Timed runs per scale (each from a fresh cache dir); the median wall time is reported.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Untimed runs per scale before the timed ones, so the registry (a stand-in for a remote
    /// one that is always up) and the OS caches are warm; the timed runs still start cold: a
    /// fresh cache dir, the clone included.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Where registry storage, the GitOps repositories and run files live.
    #[arg(long, default_value = "/var/tmp/argocd-image-pr-bench")]
    dir: PathBuf,
    /// The argocd-image-pr binary (default: the release build next to this example).
    #[arg(long)]
    bin: Option<PathBuf>,
    #[arg(long, default_value = "/usr/bin/docker-registry")]
    registry_bin: PathBuf,
    /// Requests in flight while seeding.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Wipe the registry storage and seed it again.
    #[arg(long)]
    reseed: bool,
}

fn default_bin() -> Result<PathBuf> {
    // <target>/release/examples/bench -> <target>/release/argocd-image-pr
    let exe = std::env::current_exe()?;
    let dir = exe.parent().and_then(Path::parent).context("locating the target dir")?;
    Ok(dir.join("argocd-image-pr"))
}

fn main() {
    let args = Args::parse();
    // Launchers first, while this process is small (see measure::Launcher).
    // One more per scale: the warm run with the last timed run's cache directory.
    let n = (args.runs.max(1) + args.warmup + 1) * if matches!(args.scale, ScaleArg::Both) { 2 } else { 1 };
    let launchers = match (0..if args.generate_only || args.serve { 0 } else { n })
        .map(|_| measure::Launcher::spawn())
        .collect::<Result<Vec<_>>>()
    {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bench: error: starting /bin/sh: {e:#}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = rt.block_on(async {
        tokio::spawn(async {
            if tokio::signal::ctrl_c().await.is_ok() {
                let pid = registry::REGISTRY_PID.load(std::sync::atomic::Ordering::SeqCst);
                if pid > 0 {
                    // SAFETY: plain syscall on our own child's PID.
                    unsafe {
                        libc::kill(pid, libc::SIGTERM);
                        libc::waitpid(pid, std::ptr::null_mut(), 0);
                    }
                }
                eprintln!("bench: interrupted");
                std::process::exit(130);
            }
        });
        run(args, launchers).await
    });
    match result {
        Ok(ok) => std::process::exit(if ok { 0 } else { 1 }),
        Err(e) => {
            eprintln!("bench: error: {e:#}");
            std::process::exit(2);
        }
    }
}

/// Returns whether every target was met.
async fn run(args: Args, mut launchers: Vec<measure::Launcher>) -> Result<bool> {
    let scales: Vec<Scale> = match args.scale {
        ScaleArg::Full => vec![Scale::Full],
        ScaleArg::Fifth => vec![Scale::Fifth],
        ScaleArg::Both => vec![Scale::Fifth, Scale::Full],
    };
    let bin = match &args.bin {
        Some(b) => b.clone(),
        None => default_bin()?,
    };
    if !args.generate_only && !args.serve && !bin.exists() {
        bail!(
            "{} not found: build it first (`cargo build --release --bin argocd-image-pr`, as scripts/bench.sh does) or pass --bin",
            bin.display()
        );
    }
    let storage = args.dir.join("registry");
    if args.reseed && storage.exists() {
        std::fs::remove_dir_all(&storage)?;
    }

    let t = std::time::Instant::now();
    let fleets: Vec<Fleet> = scales.iter().map(|&s| Fleet::new(s)).collect();
    let biggest = fleets.iter().max_by_key(|f| f.repos.len()).expect("a scale");
    eprintln!("bench: fleet model generated in {:.2} s", t.elapsed().as_secs_f64());
    let todo = seed::prepare_storage(&storage, &biggest.repos)?;

    let reg = registry::Registry::start(&args.registry_bin, &storage, &args.dir.join("run"))?;
    eprintln!("bench: docker-registry pid {} on {}", reg.pid(), reg.host);
    let stats = seed::seed(&reg.base_url(), &storage, &biggest.repos, &todo, args.concurrency).await?;
    // Every tag list, compared with the model as sets (also catches a half-seeded storage).
    let all: Vec<_> = biggest.repos.iter().collect();
    seed::verify(&reg.base_url(), &all).await?;
    let how = if stats.repos > 0 { "seeded" } else { "reused" };
    eprintln!("bench: registry storage {how}; tag lists of all {} repositories verified", all.len());

    let mut rows = Vec::new();
    let mut all_ok = true;
    for fleet in &fleets {
        print_shape(fleet);
        let t = std::time::Instant::now();
        let gitops_dir = args.dir.join(format!("gitops-{}", fleet.scale.name()));
        let url = gitops::build(&gitops_dir, fleet, &reg.host)?;
        eprintln!("bench: GitOps repository {url} written in {:.2} s", t.elapsed().as_secs_f64());
        if args.generate_only || args.serve {
            println!("  plan by hand: {} plan --apps {url} --output json --cache-dir $(mktemp -d)", bin.display());
            continue;
        }
        let mut row = bench_scale(fleet, &bin, &url, &args, &mut launchers, reg.pid())?;
        // After plan's figures are taken: the lifecycle on the same fleet.
        let scratch = args.dir.join(format!("run-{}", fleet.scale.name()));
        eprintln!("bench: run --once --forge local on the {} fleet (open, quiet, one change)", fleet.scale.name());
        match lifecycle::measure(fleet, &bin, &url, &scratch, &reg.host, &storage).await {
            Ok(lc) => {
                row.pass &= lc.notes.is_empty();
                row.notes.extend(lc.notes.iter().cloned());
                row.lifecycle = Some(lc);
            }
            Err(e) => {
                row.pass = false;
                row.notes.push(format!("run --once: {e:#}"));
            }
        }
        all_ok &= row.pass;
        rows.push(row);
    }
    if args.serve {
        println!("bench: registry {} is up (pid {}); Ctrl-C stops it", reg.host, reg.pid());
        std::future::pending::<()>().await;
    }
    drop(reg);
    if !rows.is_empty() {
        print_table(&rows);
    }
    if stats.repos > 0 {
        println!(
            "\nseeding: {} repositories, {} tags in {:.1} s ({:.0} tags/s, {} requests in flight)",
            stats.repos,
            stats.tags,
            stats.secs,
            stats.tags as f64 / stats.secs,
            args.concurrency
        );
    }
    Ok(all_ok)
}

fn print_shape(f: &Fleet) {
    let nb: Vec<_> = f.repos.iter().filter(|r| r.kind == RepoKind::NewestBuild).collect();
    let sv: Vec<_> = f.repos.iter().filter(|r| r.kind == RepoKind::Semver).collect();
    let mut sizes: Vec<usize> = sv.iter().map(|r| r.tags.len()).collect();
    sizes.sort();
    let count_kind = |k: TagKind| f.repos.iter().flat_map(|r| &r.tags).filter(|t| t.kind == k).count();
    let imgs: Vec<_> = f.apps.iter().flat_map(|a| &a.images).collect();
    let nb_imgs = imgs.iter().filter(|i| f.repos[i.repo].kind == RepoKind::NewestBuild).count();
    let layout = |l: Layout| f.apps.iter().filter(|a| a.layout == l).count();
    let expect_update = imgs.iter().filter(|i| i.expected.iter().all(|e| e.is_some())).count();
    let apps_with_update =
        f.apps.iter().filter(|a| a.images.iter().any(|i| i.expected.iter().all(|e| e.is_some()))).count();
    println!("\n== fleet {} ==", f.scale.name());
    println!(
        "registry: {} repositories ({} semver, {} newest-build; {} multi-arch), {} tags",
        f.repos.len(),
        sv.len(),
        nb.len(),
        f.repos.iter().filter(|r| r.multi_arch).count(),
        f.tag_count()
    );
    println!(
        "  semver repos: tags/repo min {} median {} max {}; releases {}, pre-releases {}, short (M.m/M) {}, other (latest/stable/edge/sha-/build-) {}",
        sizes[0],
        sizes[sizes.len() / 2],
        sizes[sizes.len() - 1],
        sv.iter().map(|r| r.tags.iter().filter(|t| t.kind == TagKind::Release).count()).sum::<usize>(),
        count_kind(TagKind::Pre),
        count_kind(TagKind::Short),
        sv.iter().map(|r| r.tags.iter().filter(|t| t.kind == TagKind::Other).count()).sum::<usize>(),
    );
    println!(
        "  v-prefixed tags: {}; newest-build repos: {} builds each, {}-{} tags each ({} `[0-9a-f]{{7}}` + {} `build-N`; Applications allow one scheme per repository)",
        f.repos.iter().flat_map(|r| &r.tags).filter(|t| t.name.starts_with('v')).count(),
        fleet::BUILDS_PER_NB_REPO,
        nb.iter().map(|r| r.tags.len()).min().unwrap_or(0),
        nb.iter().map(|r| r.tags.len()).max().unwrap_or(0),
        fleet::BUILDS_PER_NB_REPO,
        fleet::BUILDS_PER_NB_REPO,
    );
    println!(
        "gitops: {} Applications ({} kustomize, {} kustomize newName, {} plain Deployment), {} images ({} newest-build) from {} distinct repositories",
        f.apps.len(),
        layout(Layout::Kustomize),
        layout(Layout::KustomizeNewName),
        layout(Layout::Plain),
        imgs.len(),
        nb_imgs,
        f.distinct_repos_used()
    );
    let with = |p: &dyn Fn(&&&fleet::AppImage) -> bool| imgs.iter().filter(p).count();
    println!(
        "  constraints {} (^ {}, ~ {}, >=/< {}), allow-tags {}, ignore-tags {}; expected updates: {} images in {} Applications",
        with(&|i| i.constraint.is_some()),
        with(&|i| i.constraint.as_deref().is_some_and(|c| c.starts_with('^'))),
        with(&|i| i.constraint.as_deref().is_some_and(|c| c.starts_with('~'))),
        with(&|i| i.constraint.as_deref().is_some_and(|c| c.starts_with(">="))),
        with(&|i| i.allow_tags.is_some()),
        with(&|i| i.ignore_tags.is_some()),
        expect_update,
        apps_with_update,
    );
}

struct Row {
    scale: Scale,
    apps: usize,
    images: usize,
    repos: usize,
    repos_used: usize,
    tags: usize,
    wall_s: Vec<f64>,
    peak_mb: f64,
    requests: Option<u64>,
    proposals: usize,
    errors: usize,
    pass: bool,
    notes: Vec<String>,
    /// 1-minute load average before each run: other work on the 2 cores skews the wall time.
    loads: Vec<String>,
    request_floor: usize,
    /// Per timed run: CPU seconds of plan, and of the registry during it.
    cpu: Vec<(f64, Option<f64>)>,
    /// `run --once --forge local`: open, quiet, one change.
    lifecycle: Option<lifecycle::Lifecycle>,
    /// `plan` again with the last timed run's `--cache-dir`: wall s, registry requests, whether
    /// its images are the cold run's.
    warm: Option<(f64, Option<u64>, bool)>,
}

fn bench_scale(
    fleet: &Fleet,
    bin: &Path,
    url: &str,
    args: &Args,
    launchers: &mut Vec<measure::Launcher>,
    registry_pid: i32,
) -> Result<Row> {
    let scratch = args.dir.join(format!("plan-{}", fleet.scale.name()));
    let mut row = Row {
        scale: fleet.scale,
        apps: fleet.apps.len(),
        images: fleet.image_count(),
        repos: fleet.repos.len(),
        repos_used: fleet.distinct_repos_used(),
        tags: fleet.tag_count(),
        wall_s: Vec::new(),
        peak_mb: 0.0,
        requests: None,
        proposals: 0,
        errors: 0,
        pass: false,
        notes: Vec::new(),
        loads: Vec::new(),
        request_floor: fleet.request_floor(),
        cpu: Vec::new(),
        lifecycle: None,
        warm: None,
    };
    for i in 0..args.warmup {
        std::fs::create_dir_all(&scratch)?;
        let cache = tempfile::Builder::new().prefix("cache-").tempdir_in(&scratch)?;
        let launcher = launchers.pop().context("no launcher left")?;
        let run = launcher.run_plan(bin, url, cache.path(), &scratch)?;
        eprintln!(
            "bench: warm-up run {} of `plan` on the {} fleet: {:.2} s (not counted)",
            i + 1,
            fleet.scale.name(),
            run.wall_s
        );
    }
    let mut last = None;
    let mut last_cache = None;
    for i in 0..args.runs.max(1) {
        std::fs::create_dir_all(&scratch)?;
        let cache = tempfile::Builder::new().prefix("cache-").tempdir_in(&scratch)?;
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let load1 = load.split_whitespace().next().unwrap_or("?").to_string();
        eprintln!("bench: run {} of `plan` on the {} fleet (load average {load1})", i + 1, fleet.scale.name());
        row.loads.push(load1);
        let launcher = launchers.pop().context("no launcher left")?;
        let reg_before = measure::process_cpu_s(registry_pid);
        let run = launcher.run_plan(bin, url, cache.path(), &scratch)?;
        let reg_after = measure::process_cpu_s(registry_pid);
        row.wall_s.push(run.wall_s);
        row.cpu.push((run.cpu_s, reg_after.zip(reg_before).map(|(a, b)| a - b)));
        row.peak_mb = row.peak_mb.max(run.peak_mb);
        last = Some(run);
        last_cache = Some(cache);
    }
    let run = last.expect("one run");
    // The second cycle, as a daemon or a `--once` run with `--cache-dir` has it: tag lists and
    // HEADs, nothing the first read by digest.
    if let Some(cache) = &last_cache {
        let launcher = launchers.pop().context("no launcher left")?;
        eprintln!("bench: warm `plan` on the {} fleet (the last run's --cache-dir)", fleet.scale.name());
        let warm = launcher.run_plan(bin, url, cache.path(), &scratch)?;
        let images = |out: &[u8]| {
            serde_json::from_slice::<serde_json::Value>(out).ok().map(|j| {
                let apps = j["applications"].as_array().cloned().unwrap_or_default();
                apps.iter().map(|a| (a["name"].clone(), a["images"].clone())).collect::<Vec<_>>()
            })
        };
        let same = images(&warm.stdout).is_some() && images(&warm.stdout) == images(&run.stdout);
        let requests = serde_json::from_slice::<serde_json::Value>(&warm.stdout).ok().and_then(|j| j["stats"]["registry_requests"].as_u64());
        row.warm = Some((warm.wall_s, requests, same));
        if !same {
            row.notes.push("the warm plan's images differ from the cold one's".into());
        }
    }
    match run.exit {
        Some(0) | Some(1) => {}
        other => row.notes.push(format!(
            "plan exited with {:?}; stderr: {}",
            other,
            run.stderr.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
        )),
    }
    let json: serde_json::Value = match serde_json::from_slice(&run.stdout) {
        Ok(v) => v,
        Err(e) => {
            row.notes.push(format!("output is not JSON ({e}); see {}/plan.json and plan.stderr", scratch.display()));
            row.pass = false;
            return Ok(row);
        }
    };
    check_output(fleet, &json, &mut row);
    let (wall_target, mem_target) = fleet.scale.targets();
    row.pass =
        median(&row.wall_s) <= wall_target && mem_target.is_none_or(|m| row.peak_mb <= m) && row.notes.is_empty();
    Ok(row)
}

/// Counts what the plan says and compares it with the generator's expectations.
fn check_output(fleet: &Fleet, json: &serde_json::Value, row: &mut Row) {
    row.requests = json["stats"]["registry_requests"].as_u64();
    if row.requests.is_none() {
        row.notes.push("no stats.registry_requests in the output".into());
    }
    let by_name: HashMap<&str, &fleet::App> = fleet.apps.iter().map(|a| (a.name.as_str(), a)).collect();
    let empty = Vec::new();
    let apps = json["applications"].as_array().unwrap_or(&empty);
    let top_errors = json["errors"].as_array().map(|a| a.len()).unwrap_or(0);
    let (mut images, mut image_errors, mut proposals) = (0, 0, 0);
    let (mut wrong_current, mut unexpected) = (Vec::new(), Vec::new());
    for app in apps {
        let name = app["name"].as_str().unwrap_or("");
        let Some(model) = by_name.get(name) else {
            unexpected.push(format!("{name}: not in the fleet"));
            continue;
        };
        for img in app["images"].as_array().unwrap_or(&empty) {
            images += 1;
            if !img["error"].is_null() {
                image_errors += 1;
            }
            let proposed = img["proposed"].as_str();
            if proposed.is_some() {
                proposals += 1;
            }
            let alias = img["alias"].as_str().unwrap_or("");
            let Some(m) = model.images.iter().find(|i| i.alias == alias) else { continue };
            if img["error"].is_null() && img["current"].as_str() != Some(m.current.as_str()) {
                wrong_current.push(format!("{name}/{alias}: current {} (git has {})", img["current"], m.current));
            }
            let repo = &fleet.repos[m.repo];
            let got = proposed.map(|p| fleet::normalize(repo, p));
            if img["error"].is_null() && !m.expected.contains(&got) {
                let want: Vec<String> = m.expected.iter().map(|e| e.clone().unwrap_or_else(|| "none".into())).collect();
                unexpected.push(format!(
                    "{name}/{alias} ({}{}): proposed {} from {}, expected {}",
                    repo.path(),
                    m.constraint.as_deref().map(|c| format!(" {c}")).unwrap_or_default(),
                    proposed.unwrap_or("none"),
                    m.current,
                    want.join(" or ")
                ));
            }
        }
    }
    row.proposals = proposals;
    row.errors = image_errors + top_errors;
    if apps.len() != fleet.apps.len() || images != fleet.image_count() {
        row.notes.push(format!(
            "plan covered {} Applications / {images} images of {} / {}",
            apps.len(),
            fleet.apps.len(),
            fleet.image_count()
        ));
    }
    let sample = |v: &[String]| v.iter().take(5).cloned().collect::<Vec<_>>().join("\n      ");
    if !wrong_current.is_empty() {
        row.notes.push(format!(
            "{} images read a different current tag than git has, e.g.\n      {}",
            wrong_current.len(),
            sample(&wrong_current)
        ));
    }
    if !unexpected.is_empty() {
        row.notes.push(format!(
            "{} images differ from the generator's expectation, e.g.\n      {}",
            unexpected.len(),
            sample(&unexpected)
        ));
    }
    if row.errors > 0 {
        let mut errs: Vec<String> = Vec::new();
        for app in apps {
            for img in app["images"].as_array().unwrap_or(&empty) {
                if let Some(e) = img["error"].as_str() {
                    errs.push(format!("{}/{}: {e}", app["name"].as_str().unwrap_or("?"), img["alias"]));
                }
            }
        }
        for e in json["errors"].as_array().unwrap_or(&empty) {
            errs.push(e.to_string());
        }
        row.notes.push(format!("{} errors, e.g.\n      {}", row.errors, sample(&errs)));
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "scale   apps images  repos     tags  wall s  peak MB  requests proposals errors  target             result"
    );
    for r in rows {
        let (wall_t, mem_t) = r.scale.targets();
        let wall = median(&r.wall_s);
        let target = match mem_t {
            Some(m) => format!("<= {wall_t} s, <= {m} MB"),
            None => format!("<= {wall_t} s"),
        };
        let mut verdict = Vec::new();
        verdict.push(if wall <= wall_t { "wall PASS" } else { "wall OVER" });
        if let Some(m) = mem_t {
            verdict.push(if r.peak_mb <= m { "mem PASS" } else { "mem OVER" });
        }
        println!(
            "{:<6} {:>5} {:>6} {:>6} {:>8} {:>7.2} {:>8.1} {:>9} {:>9} {:>6}  {:<18} {}",
            r.scale.name(),
            r.apps,
            r.images,
            r.repos,
            r.tags,
            wall,
            r.peak_mb,
            r.requests.map(|n| n.to_string()).unwrap_or_else(|| "?".into()),
            r.proposals,
            r.errors,
            target,
            verdict.join(", ")
        );
    }
    print_lifecycle(rows);
    println!();
    for r in rows {
        let req = r
            .requests
            .map(|n| {
                format!(
                    "{n} requests = {:.2} per repository, {:.2} per Application \
                     (floor {}: a tag list per repository + newest-build manifests/configs)",
                    n as f64 / r.repos_used as f64,
                    n as f64 / r.apps as f64,
                    r.request_floor
                )
            })
            .unwrap_or_else(|| "requests unknown".into());
        println!(
            "{}: {} distinct repositories referenced by {} Applications; {req}",
            r.scale.name(),
            r.repos_used,
            r.apps
        );
        println!(
            "  1-minute load average before the timed run(s): {} (other work on the 2 cores skews wall time)",
            r.loads.join(", ")
        );
        if let Some((wall, requests, same)) = r.warm {
            let n = requests.map(|n| n.to_string()).unwrap_or_else(|| "?".into());
            let per_repo = requests.map(|n| format!("{:.2}", n as f64 / r.repos_used as f64)).unwrap_or_else(|| "?".into());
            println!(
                "  second cycle (plan again with the same --cache-dir): {wall:.2} s, {n} requests = {per_repo} per repository \
                 (a tag list each, plus a HEAD per newest-build candidate newer than the running build; target: wall <= 1 s); answers {}",
                if same { "the same as cold" } else { "DIFFERENT from cold" }
            );
        }
        let cpu: Vec<String> = r
            .cpu
            .iter()
            .map(|(p, reg)| match reg {
                Some(reg) => format!("plan {p:.2} s + registry {reg:.2} s"),
                None => format!("plan {p:.2} s"),
            })
            .collect();
        println!("  CPU (user+sys) per timed run: {} (2 cores)", cpu.join("; "));
        if r.wall_s.len() > 1 {
            let w: Vec<String> = r.wall_s.iter().map(|w| format!("{w:.2}")).collect();
            println!("  wall times of {} runs: {} s (median reported)", w.len(), w.join(", "));
        }
        for n in &r.notes {
            println!("  note: {n}");
        }
    }
}

fn print_lifecycle(rows: &[Row]) {
    if rows.iter().all(|r| r.lifecycle.is_none()) {
        return;
    }
    println!();
    println!("run --once --forge local (the fleet is one GitOps repository; forge calls and writes as counted by the run):");
    println!("scale   run                                  wall s  opened updated  forge calls  writes  pushes  errors");
    for r in rows {
        let Some(lc) = &r.lifecycle else { continue };
        let mut runs = vec![("1st: opens the PRs".to_string(), &lc.first), ("2nd: nothing changed".to_string(), &lc.second)];
        if let Some((repo, f)) = &lc.one_change {
            runs.push((format!("3rd: a newer tag in {}", short(repo)), f));
        }
        for (name, f) in runs {
            println!(
                "{:<6}  {:<35} {:>7.2} {:>7} {:>7} {:>12} {:>7} {:>7} {:>7}",
                r.scale.name(),
                name,
                f.wall_s,
                f.opened,
                f.updated,
                f.forge_calls,
                f.forge_writes,
                f.git_pushes,
                f.errors
            );
        }
        let quiet_ok = lc.second.forge_writes == 0
            && lc.second.git_pushes == 0
            && lc.second.forge_calls <= lifecycle::QUIET_CALL_BUDGET;
        println!(
            "        quiet run target: 0 writes, 0 pushes, <= {} forge calls for the one repository: {}",
            lifecycle::QUIET_CALL_BUDGET,
            if quiet_ok { "PASS" } else { "FAIL" }
        );
    }
}

fn short(repo: &str) -> String {
    if repo.len() > 15 { format!("…{}", &repo[repo.len() - 14..]) } else { repo.to_string() }
}
