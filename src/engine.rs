//! The only code that joins the drivers, through the ports ([`Drivers`]). One `plan` pass, as
//! data:
//! 1. discovery: Applications from the `--apps` locations (directories or git URLs);
//! 2. git: each source repository fetched once per (URL, revision); manifest: current versions;
//! 3. registry: one tag list per distinct repository, metadata only where the strategy needs it;
//!    strategy: choose.
//!
//! Every failure is attached to the file, Application or image it belongs to; nothing here stops
//! the other Applications.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use futures::future::join_all;
use futures::StreamExt as _;
use serde::Serialize;

use crate::annotations::{self, ImageSpec, UpdateStrategy};
use crate::discovery::{self, Application};
use crate::domain::{DefaultRegistry, Platform};
use crate::error::{Error, ErrorKind};
use crate::image_updater::{self, ImageUpdater};
use crate::files::FileSet;
use crate::manifest::edit::{self, EditRequest, FileChange};
use crate::manifest::{self, CurrentImage};
use crate::planner::{self, AppHolds, ImageHolds, PinTarget};
use crate::ports::{ApplicationSource, AppsOrigin, Clock, GitCredentialRef, GitRepos, PushTarget, Registry, RepoCredentials, Snapshot};
use crate::domain::Version;
use crate::strategy::{self, Candidate, ChangeKind, Need, Selection};

mod run;
pub use run::{Mode, RunAction, RunAppReport, RunOptions, RunReport, RunStats, run_once};

/// The outside world as the engine sees it, one port each. `main` builds it once (the daemon
/// keeps it across cycles, with its connections, tokens and clones); tests build it from
/// in-memory parts.
#[derive(Clone)]
pub struct Drivers {
    pub registry: Arc<dyn Registry>,
    pub git: Arc<dyn GitRepos>,
    pub apps: Arc<dyn ApplicationSource>,
    /// Git credentials from the cluster, for sources the forge's token does not cover.
    pub repo_credentials: Arc<dyn RepoCredentials>,
    pub clock: Arc<dyn Clock>,
}

/// What one `plan` run looks at.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// `--apps` locations holding Application manifests (what they can be is up to
    /// [`Drivers::apps`]: directories and git URLs).
    pub apps: Vec<String>,
}

/// The whole answer of `plan`; serialized as the `--output json` document.
#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    pub applications: Vec<AppReport>,
    /// Files or `--apps` locations that could not be read.
    pub errors: Vec<LocationError>,
    pub stats: Stats,
    /// What the report could not take into account (forge-side holds).
    pub notes: Vec<String>,
}

impl PlanReport {
    /// Whether anything went wrong anywhere (this decides the exit status).
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
            || self
                .applications
                .iter()
                .any(|a| a.error.is_some() || a.images.iter().any(|i| i.error.is_some()))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LocationError {
    pub file: String,
    pub error: Error,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub applications: usize,
    pub images: usize,
    /// Distinct (repository URL, revision) pairs read from git.
    pub git_sources: usize,
    /// Distinct registry repositories whose tags were listed.
    pub registry_repositories: usize,
    pub registry_requests: u64,
    /// `registry_requests` by registry host.
    pub registry_requests_by_registry: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AppReport {
    pub namespace: String,
    pub name: String,
    /// The file that holds the Application, relative to its `--apps` location.
    pub file: String,
    pub images: Vec<ImageReport>,
    /// The exact change the bot would commit, one unified diff per file.
    pub changes: Vec<FileDiff>,
    pub error: Option<Error>,
}

/// One file the bot would change, with its diff (paths relative to the repository root).
#[derive(Debug, Clone, Serialize)]
pub struct FileDiff {
    /// `repoURL` of the source the file belongs to.
    pub repo: String,
    pub file: String,
    pub diff: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageReport {
    pub alias: String,
    /// Normalized repository, e.g. `docker.io/library/nginx`.
    pub image: Option<String>,
    pub constraint: Option<String>,
    pub strategy: Option<&'static str>,
    /// The tag git has now.
    pub current: Option<String>,
    pub current_digest: Option<String>,
    /// Where `current` was read: `file:line`.
    pub source: Option<String>,
    /// The tag to move to; `null` means no update.
    pub proposed: Option<String>,
    /// The proposed tag's manifest digest, `sha256:...`, when known: the digest to pin (digest
    /// strategy, pin-digest), or the one newest-build read; `null` for semver and alphabetical.
    pub digest: Option<String>,
    /// `created` of the proposed image's config, when the strategy read it (newest-build,
    /// digest); `null` for semver and alphabetical, which choose from the tag list alone.
    pub created: Option<chrono::DateTime<chrono::Utc>>,
    /// major, minor, patch, pre-release, digest or build.
    pub change: Option<&'static str>,
    /// Why nothing is proposed.
    pub reason: Option<String>,
    pub error: Option<Error>,
    /// Pins, ignores and rollback holds on this image (`run`, `status`; see docs/lifecycle.md).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub holds: Vec<planner::Hold>,
    /// What the strategy would choose without the holds (`status`: the newest candidate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unheld: Option<String>,
    /// Whether holds kept back a version the strategy would otherwise propose.
    #[serde(skip)]
    pub held_back: bool,
    /// Merged pull requests whose version git went back from.
    #[serde(skip)]
    pub rollbacks: Vec<planner::Delivery>,
}

impl ImageReport {
    fn new(alias: &str) -> Self {
        ImageReport {
            alias: alias.to_string(),
            image: None,
            constraint: None,
            strategy: None,
            current: None,
            current_digest: None,
            source: None,
            proposed: None,
            digest: None,
            created: None,
            change: None,
            reason: None,
            error: None,
            holds: Vec::new(),
            unheld: None,
            held_back: false,
            rollbacks: Vec::new(),
        }
    }
}

/// Runs discovery, reads git and asks the registries; changes nothing anywhere.
pub async fn plan(drivers: &Drivers, options: PlanOptions) -> PlanReport {
    let report = plan_cycle(drivers, options).await;
    drivers.registry.end_cycle();
    report
}

async fn plan_cycle(drivers: &Drivers, options: PlanOptions) -> PlanReport {
    let mut errors = Vec::new();
    if let Err(e) = drivers.registry.begin_cycle() {
        errors.push(LocationError { file: "registries".into(), error: e.into() });
        return PlanReport { applications: vec![], errors, stats: Stats::default(), notes: vec![] };
    }
    let prepare = {
        let registry = drivers.registry.clone();
        tokio::task::spawn_blocking(move || registry.prepare())
    };
    let found = discover(drivers.apps.as_ref(), &options.apps, &HashMap::new(), &drivers.registry.default_registry()).await;
    let _ = prepare.await;
    tracing::info!("discovery: {} Applications with an image-list in {} location(s)", found.annotated.len(), options.apps.len());
    errors.extend(found.errors);
    // What `run` would hold that git shows: the pin annotation. What `run` would refuse: a
    // malformed pin or pull-request annotation. Holds kept on the forge are not read here.
    let mut refused: Vec<Option<Error>> = Vec::new();
    let holds: Vec<AppHolds> = found
        .annotated
        .iter()
        .map(|(app, _)| {
            let id = app.id.to_string();
            let pins = app.annotations.get(planner::PIN_ANNOTATION).map(|v| planner::parse_pin_annotation(v));
            let settings = planner::pr_settings(&app.annotations, None).err();
            refused.push(match (&pins, settings) {
                (Some(Err(e)), _) => Some(Error::input(format!("Application {}: {e}", app.id))),
                (_, Some(e)) => Some(Error::input(format!("Application {}: annotation {e}", app.id))),
                _ => None,
            });
            planner::derive(&id, &[], &pins.and_then(Result::ok).unwrap_or_default())
        })
        .collect();
    let mut evaluated =
        evaluate(drivers, &found.annotated, &found.origins, |_, s| s.target_revision.clone(), &holds, &HashMap::new()).await;
    for (report, refused) in evaluated.reports.iter_mut().zip(refused) {
        if let Some(e) = refused {
            // `run` does nothing for this Application until the annotation is fixed.
            report.error = Some(e);
            report.changes.clear();
            for image in &mut report.images {
                image.proposed = None;
                image.change = None;
            }
        }
    }
    tracing::info!(
        registry_requests = evaluated.stats.registry_requests,
        "plan done: {} Applications, {} with a proposal, {} location errors",
        evaluated.reports.len(),
        evaluated.reports.iter().filter(|r| !r.changes.is_empty()).count(),
        errors.len()
    );
    let notes = if found.annotated.is_empty() {
        Vec::new()
    } else {
        vec![FORGE_HOLDS_NOTE.to_string()]
    };
    PlanReport { applications: evaluated.reports, errors, stats: evaluated.stats, notes }
}

/// What `plan` says about the holds it cannot see.
pub const FORGE_HOLDS_NOTE: &str = "holds kept on the forge (rollbacks of merged PRs, versions of PRs closed without merging, \
/pin and /ignore comments) were not read: `run` applies them, `status` lists them; the pin annotation was applied";

/// Applications found in the `--apps` locations.
struct Discovered {
    /// Applications with an image-list annotation, sorted, with what the annotations say.
    annotated: Vec<(Application, annotations::AppAnnotations)>,
    /// Where each of `annotated` was read from (same order).
    origins: Vec<Option<AppsOrigin>>,
    /// Applications without the annotation (their bot PRs are obsolete).
    unannotated: Vec<Application>,
    errors: Vec<LocationError>,
}

/// Phase 1, discovery. Git locations are read with `credentials` where given (`run`: the forge's).
///
/// Image names without registry host belong to `default_registry` (registries.conf
/// `default: true`).
async fn discover(
    source: &dyn ApplicationSource,
    locations: &[String],
    credentials: &HashMap<String, PushTarget>,
    default_registry: &DefaultRegistry,
) -> Discovered {
    let mut errors = Vec::new();
    let mut apps: Vec<(Application, Option<AppsOrigin>, String)> = Vec::new();
    let mut cluster_locations: Vec<String> = Vec::new();
    let mut updaters: Vec<(ImageUpdater, bool)> = Vec::new();
    let mut broken_namespaces: BTreeMap<String, String> = BTreeMap::new();
    for location in locations {
        match source.read(location, credentials.get(location)).await {
            Ok(read) => {
                tracing::debug!("discovery: {} read", location);
                let (found, file_errors, origin) = (read.applications, read.errors, read.origin);
                if read.from_cluster {
                    cluster_locations.push(location.clone());
                }
                for u in read.image_updaters {
                    match u {
                        Ok(u) => updaters.push((u, read.from_cluster)),
                        Err(b) => {
                            if let Some(ns) = &b.namespace {
                                broken_namespaces.entry(ns.clone()).or_insert_with(|| b.place.clone());
                            }
                            errors.push(LocationError { file: b.place.clone(), error: Error::input(b.message) });
                        }
                    }
                }
                let prefix = |f: &str| if locations.len() > 1 { format!("{location}: {f}") } else { f.to_string() };
                errors.extend(file_errors.into_iter().map(|e| LocationError {
                    file: prefix(&e.file),
                    error: Error::input(match e.line {
                        Some(line) => format!("line {line}: {}", e.message),
                        None => e.message,
                    }),
                }));
                apps.extend(found.into_iter().map(|app| (app, origin.clone(), location.clone())));
            }
            Err(e) => errors.push(LocationError { file: location.clone(), error: e.into() }),
        }
    }
    apps.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    // Two manifests of one Application (two Argo CD instances, two locations) would pull one PR
    // back and forth between their proposals: neither is proposed until one is removed. The
    // error keeps the run from closing their PRs as if the Application were gone.
    let place = |(app, _, location): &(Application, Option<AppsOrigin>, String)| {
        if locations.len() > 1 { format!("{location}: {}", app.file) } else { app.file.clone() }
    };
    let mut unique = Vec::with_capacity(apps.len());
    for group in apps.chunk_by(|a, b| a.0.id == b.0.id) {
        if let [one] = group {
            unique.push(one.clone());
            continue;
        }
        // What the cluster runs wins over a manifest of it in git (Argo CD runs the cluster's).
        let live: Vec<_> = group.iter().filter(|a| cluster_locations.contains(&a.2)).collect();
        if let [one] = live.as_slice() {
            let dropped: Vec<String> = group.iter().filter(|a| !cluster_locations.contains(&a.2)).map(place).collect();
            tracing::debug!("Application {} is read from the cluster; its manifest in {} is not used", one.0.id, dropped.join(", "));
            unique.push((*one).clone());
            continue;
        }
        let places: Vec<String> = group.iter().map(place).collect();
        errors.push(LocationError {
            file: places[0].clone(),
            error: Error::input(format!(
                "Application {} is defined {} times ({}); none of them is proposed until only one is left",
                group[0].0.id,
                group.len(),
                places.join(", ")
            )),
        });
    }
    let apps = configure_by_image_updaters(unique, updaters, &broken_namespaces, &mut errors);
    tracing::debug!("discovery: {} Applications in {} location(s)", apps.len(), locations.len());
    let mut annotated = Vec::new();
    let mut origins = Vec::new();
    let mut unannotated = Vec::new();
    let default_registry = Arc::new(default_registry.clone());
    for (app, origin, _) in apps {
        match annotations::parse(&app.annotations, &default_registry) {
            Some(ann) => {
                let aliases: Vec<String> = ann
                    .images
                    .iter()
                    .filter_map(|i| match i {
                        Ok(spec) => Some(spec.alias.clone()),
                        Err(e) => e.alias.clone(),
                    })
                    .collect();
                for key in annotations::unknown_keys(&app.annotations, &aliases) {
                    tracing::warn!(
                        "{}: Application {}: annotation {key} is read by nothing (misspelled, or for an alias the image-list does not have); ignored",
                        app.file,
                        app.id
                    );
                }
                annotated.push((app, ann));
                origins.push(origin);
            }
            None => unannotated.push(app),
        }
    }
    Discovered { annotated, origins, unannotated, errors }
}

/// Gives each Application what the ImageUpdater of its namespace that selects it says, in place
/// of its own annotations (docs/annotations.md). An ImageUpdater read from the cluster wins over
/// its copy in git. An Application whose namespace has an ImageUpdater that cannot be read, that
/// two ImageUpdaters select, or whose ImageUpdater asks for what the bot cannot do, is not
/// planned (an error naming it; its PRs are left alone).
fn configure_by_image_updaters<T>(
    apps: Vec<(Application, T, String)>,
    mut updaters: Vec<(ImageUpdater, bool)>,
    broken_namespaces: &BTreeMap<String, String>,
    errors: &mut Vec<LocationError>,
) -> Vec<(Application, T, String)> {
    // The cluster's first, then one per namespace/name.
    updaters.sort_by_key(|(u, from_cluster)| (u.namespace.clone(), u.name.clone(), !*from_cluster));
    updaters.dedup_by(|a, b| a.0.namespace == b.0.namespace && a.0.name == b.0.name);
    let mut out = Vec::with_capacity(apps.len());
    for (mut app, origin, location) in apps {
        if let Some(place) = broken_namespaces.get(&app.id.namespace) {
            errors.push(LocationError {
                file: app.file.clone(),
                error: Error::input(format!(
                    "Application {} is not planned: the ImageUpdater {place} of its namespace cannot be read",
                    app.id
                )),
            });
            continue;
        }
        let mut chosen: Vec<(&ImageUpdater, Result<image_updater::Configured, String>)> = updaters
            .iter()
            .filter(|(u, _)| u.namespace == app.id.namespace)
            .filter_map(|(u, _)| u.configure(&app.id.name, &app.labels, &app.annotations).map(|c| (u, c)))
            .collect();
        match chosen.len() {
            0 => {}
            1 => match chosen.pop().map(|(_, c)| c) {
                Some(Ok(c)) => {
                    tracing::debug!("Application {} is configured by {}", app.id, c.by);
                    app.annotations = c.annotations;
                    app.configured_by = Some(c.by);
                }
                Some(Err(e)) => {
                    errors.push(LocationError { file: app.file.clone(), error: Error::input(format!("Application {}: {e}", app.id)) });
                    continue;
                }
                None => {}
            },
            _ => {
                let names: Vec<String> = chosen.iter().map(|(u, _)| format!("{}/{} ({})", u.namespace, u.name, u.place)).collect();
                errors.push(LocationError {
                    file: app.file.clone(),
                    error: Error::input(format!(
                        "Application {} is selected by {} ImageUpdaters ({}); it is not planned until one selects it",
                        app.id,
                        names.len(),
                        names.join(", ")
                    )),
                });
                continue;
            }
        }
        out.push((app, origin, location));
    }
    out
}

/// What git and the registries say about the annotated Applications.
struct Evaluated {
    reports: Vec<AppReport>,
    /// Per Application (same order), the files each proposal changes, per source.
    changes: Vec<Vec<SourceChange>>,
    /// The commit each (URL, revision) read resolved to.
    commits: HashMap<SourceKey, String>,
    stats: Stats,
}

/// 2.-4.: git (each source at the revision `revision_of` gives), current versions, registries
/// and strategies, and the edits of every proposal.
async fn evaluate(
    drivers: &Drivers,
    annotated: &[(Application, annotations::AppAnnotations)],
    origins: &[Option<AppsOrigin>],
    revision_of: impl Fn(&Application, &discovery::AppSource) -> String,
    holds: &[AppHolds],
    credentials: &HashMap<String, PushTarget>,
) -> Evaluated {
    // Reads happen at the revision the caller chooses (`run` reads the base branch).
    let annotated: Vec<(Application, annotations::AppAnnotations)> = annotated
        .iter()
        .map(|(app, ann)| {
            let mut app = app.clone();
            let revisions: Vec<String> = app.sources.iter().map(|s| revision_of(&app, s)).collect();
            for (source, rev) in app.sources.iter_mut().zip(revisions) {
                source.target_revision = rev;
            }
            (app, ann.clone())
        })
        .collect();

    // The registry needs nothing from git: warm its caches while the sources are fetched, so
    // that the per-image work below finds the tag lists (and newest-build metadata) waiting.
    let specs: Vec<ImageSpec> =
        annotated.iter().flat_map(|(_, ann)| ann.images.iter().filter_map(|i| i.as_ref().ok().cloned())).collect();
    let registry = &drivers.registry;
    let warmup = tokio::spawn(warm_registry(registry.clone(), specs));

    // 2. git: every source once per (URL, revision), with the cluster's credentials where the
    // Application asks for them and the forge has none.
    let (credentials, refused) = with_repo_credentials(drivers.repo_credentials.as_ref(), &annotated, credentials).await;
    let mut snapshots = fetch_sources(drivers.git.as_ref(), &annotated, &credentials).await;
    for (key, result) in snapshots.iter_mut() {
        if let Some(e) = refused.get(&key.0) {
            *result = Err(e.clone());
        }
    }
    tracing::debug!("git: {} source(s) read", snapshots.len());

    // 3. current versions, then registries, per image; 4. as soon as all images of an
    // Application are chosen, the edits its proposal needs, as diffs (while the registries
    // still answer for the others).
    let mut reports: Vec<AppReport> = Vec::new();
    let mut app_jobs = futures::stream::FuturesUnordered::new();
    for (app_index, (app, ann)) in annotated.iter().enumerate() {
        let mut report = AppReport {
            namespace: app.id.namespace.clone(),
            name: app.id.name.clone(),
            file: app.file.clone(),
            images: Vec::new(),
            changes: Vec::new(),
            error: None,
        };
        let mut jobs = Vec::new();
        for entry in &ann.images {
            let spec = match entry {
                Ok(spec) => spec,
                Err(e) => {
                    let mut r = ImageReport::new(e.alias.as_deref().unwrap_or(""));
                    let from = app.configured_by.as_ref().map(|by| format!(" (settings from {by})")).unwrap_or_default();
                    r.error = Some(Error::from(e.clone()).context(format!("Application {}{from}", app.id)));
                    report.images.push(r);
                    continue;
                }
            };
            let current = find_current(app, spec, &snapshots);
            let image_holds = holds.get(app_index).and_then(|h| h.get(&spec.alias)).cloned().unwrap_or_default();
            jobs.push(plan_image(app, spec, current, registry.clone(), image_holds));
        }
        reports.push(report);
        app_jobs.push(async move { (app_index, join_all(jobs).await) });
    }
    let mut distinct_repos: BTreeMap<String, ()> = BTreeMap::new();
    let mut workspace = Workspace::default();
    let mut changes: Vec<Vec<SourceChange>> = (0..reports.len()).map(|_| Vec::new()).collect();
    while let Some((app_index, results)) = app_jobs.next().await {
        let report = &mut reports[app_index];
        let mut app_edits = Vec::new();
        for (image, edit) in results {
            if let Some(name) = &image.image {
                distinct_repos.insert(name.clone(), ());
            }
            if let Some(edit) = edit {
                app_edits.push((report.images.len(), edit));
            }
            report.images.push(image);
        }
        if app_edits.is_empty() {
            continue;
        }
        let (app, ann) = &annotated[app_index];
        let context = EditContext { app, ann, snapshots: &snapshots, apps_origin: &origins[app_index] };
        let (diffs, raw) = app_changes(&context, &mut workspace, app_edits, &mut report.images);
        report.changes = diffs;
        changes[app_index] = raw;
    }
    // Everything it fetched has been used (from the caches) by now.
    if let Err(e) = warmup.await {
        tracing::warn!("registry warm-up failed: {e}");
    }
    tracing::debug!(
        "registries and edits: {} request(s), {} Application(s) change",
        registry.request_count(),
        changes.iter().filter(|c| !c.is_empty()).count()
    );

    let stats = Stats {
        applications: reports.len(),
        images: reports.iter().map(|a| a.images.len()).sum(),
        git_sources: snapshots.len(),
        registry_repositories: distinct_repos.len(),
        registry_requests: registry.request_count(),
        registry_requests_by_registry: registry.request_counts(),
    };
    let commits = snapshots
        .iter()
        .filter_map(|(k, v)| v.as_ref().ok().map(|s| (k.clone(), s.commit.clone())))
        .collect();
    Evaluated { reports, changes, commits, stats }
}

/// The files one Application's proposal changes in one source's repository.
#[derive(Debug, Clone)]
struct SourceChange {
    repo_url: String,
    /// The revision read (in `run`: the base branch).
    revision: String,
    /// Path and new content of every changed file.
    files: Vec<(String, Vec<u8>)>,
    /// Aliases of the images whose versions these files carry.
    images: Vec<String>,
}

/// `credentials` and, for each https source URL without credentials of an Application whose
/// `write-back-method` names a Secret or Argo CD's repository credentials, those. A named Secret
/// that cannot be read is that URL's error (the Application asked for it); repository
/// credentials that cannot be read (no cluster configured, RBAC) leave the fetch anonymous, with
/// a warning: `git` is also AIU's everyday write-back method, which needs no cluster here.
async fn with_repo_credentials(
    lookup: &dyn RepoCredentials,
    annotated: &[(Application, annotations::AppAnnotations)],
    credentials: &HashMap<String, PushTarget>,
) -> (HashMap<String, PushTarget>, HashMap<String, Error>) {
    // Each URL once, with the first Application that asks for it.
    let mut asked: Vec<(String, GitCredentialRef)> = Vec::new();
    let mut by: Vec<&discovery::Application> = Vec::new();
    for (app, ann) in annotated {
        let Some(reference) = ann.write_back_method.as_deref().and_then(|m| GitCredentialRef::parse(m, &app.id.namespace)) else { continue };
        for source in app.sources.iter().filter(|s| s.chart.is_none()) {
            let url = &source.repo_url;
            let https = url.starts_with("https://") || url.starts_with("http://");
            if !https || credentials.get(url).is_some_and(|t| t.username.is_some()) || asked.iter().any(|(u, _)| u == url) {
                continue;
            }
            asked.push((url.clone(), reference.clone()));
            by.push(app);
        }
    }
    let mut out = credentials.clone();
    let mut refused: HashMap<String, Error> = HashMap::new();
    if asked.is_empty() {
        return (out, refused);
    }
    let answers = lookup.lookup(&asked).await;
    for (((url, reference), app), answer) in asked.iter().zip(by).zip(answers) {
        match answer {
            Ok(Some((username, password))) => {
                out.insert(url.clone(), PushTarget { url: url.clone(), username: Some(username), password: Some(password) });
            }
            Ok(None) => {}
            Err(e) if *reference == GitCredentialRef::RepoCreds => {
                tracing::warn!("{url}: Argo CD's repository credentials (write-back-method of Application {}) cannot be read, fetching anonymously: {e}", app.id);
            }
            Err(e) => {
                let what = match reference {
                    GitCredentialRef::Secret { namespace, name } => format!("the git credentials of Secret {namespace}/{name}"),
                    GitCredentialRef::RepoCreds => "Argo CD's repository credentials".to_string(),
                };
                refused.insert(url.clone(), Error::from(e).context(format!("{url}: {what} (write-back-method of Application {})", app.id)));
            }
        }
    }
    (out, refused)
}

type SourceKey = (String, String);
type Snapshots = HashMap<SourceKey, Result<Arc<Snapshot>, Error>>;

/// `credentials`: the forge's git credentials per repository URL (`run`); none for `plan`.
async fn fetch_sources(
    git: &dyn GitRepos,
    annotated: &[(Application, annotations::AppAnnotations)],
    credentials: &HashMap<String, PushTarget>,
) -> Snapshots {
    let mut keys: Vec<SourceKey> = annotated
        .iter()
        .flat_map(|(app, _)| app.sources.iter())
        .filter(|s| s.chart.is_none())
        .map(|s| (s.repo_url.clone(), s.target_revision.clone()))
        .collect();
    keys.sort();
    keys.dedup();
    // Revisions of one repository in one call (the driver reads them one after another),
    // distinct repositories in parallel.
    let mut by_url: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (url, rev) in keys {
        by_url.entry(url).or_default().push(rev);
    }
    let tasks = by_url.iter().map(|(url, revs)| async move {
        let read = git.snapshots(url, revs, credentials.get(url)).await;
        (url, revs, read)
    });
    let mut out = HashMap::new();
    for (url, revs, result) in join_all(tasks).await {
        let keys = revs.iter().map(|r| (url.clone(), r.clone()));
        match result {
            Ok(list) => out.extend(keys.zip(list).map(|(k, snap)| (k, snap.map(Arc::new).map_err(Error::from)))),
            // A repository that does not answer fails its own sources, nothing else.
            Err(e) => {
                let e = Error::from(e);
                out.extend(keys.map(|k| (k, Err(e.clone()))));
            }
        }
    }
    out
}

/// The image's version in git: the first source that mentions it wins.
fn find_current(
    app: &Application,
    spec: &ImageSpec,
    snapshots: &Snapshots,
) -> Result<Option<(usize, CurrentImage)>, Error> {
    let mut problems = Vec::new();
    for (index, source) in app.sources.iter().enumerate().filter(|(_, s)| s.chart.is_none()) {
        let key = (source.repo_url.clone(), source.target_revision.clone());
        match snapshots.get(&key) {
            Some(Ok(snapshot)) => match manifest::find_current(&snapshot.files, app, source, spec) {
                Ok(Some(found)) => return Ok(Some((index, found))),
                Ok(None) => {}
                Err(e) => problems.push(Error::from(e).context(&source.repo_url)),
            },
            Some(Err(e)) => problems.push(e.clone()),
            None => problems.push(Error::new(
                ErrorKind::NotFound,
                format!("{} at {} was not fetched", source.repo_url, source.target_revision),
            )),
        }
    }
    // Not found anywhere: a source path that does not exist says more than "not found".
    for source in app.sources.iter().filter(|s| s.chart.is_none()) {
        let key = (source.repo_url.clone(), source.target_revision.clone());
        if let (Some(path), Some(Ok(snapshot))) = (&source.path, snapshots.get(&key))
            && !snapshot.files.has_dir(path.trim_matches('/'))
        {
            problems.push(Error::input(format!(
                "source path {path:?} does not exist in {} at {}",
                source.repo_url, source.target_revision
            )));
        }
    }
    match Error::joined(problems) {
        None => Ok(None),
        Some(e) => Err(e),
    }
}

async fn plan_image(
    app: &Application,
    spec: &ImageSpec,
    current: Result<Option<(usize, CurrentImage)>, Error>,
    registry: Arc<dyn Registry>,
    holds: ImageHolds,
) -> (ImageReport, Option<PlannedEdit>) {
    let mut r = ImageReport::new(&spec.alias);
    r.image = Some(spec.name.to_string());
    r.constraint = spec.constraint.clone();
    r.strategy = Some(spec.strategy.as_str());
    // Where the image lives; a forced image that git does not mention goes into the first source.
    let mut source_index = app.sources.iter().position(|s| s.chart.is_none());
    let current = match current {
        Ok(Some((index, found))) => {
            source_index = Some(index);
            r.current = found.tag.clone();
            r.current_digest = found.digest.clone();
            r.source = Some(format!("{}:{}", found.file, found.line));
            Version { tag: found.tag, digest: found.digest }
        }
        Ok(None) if spec.force_update => Version::default(),
        Ok(None) => {
            r.error = Some(Error::input(format!(
                "Application {}: image {} ({}) not found in the manifests of its sources",
                app.id, spec.alias, spec.name
            )));
            return (r, None);
        }
        Err(e) => {
            r.error = Some(e.context(format!("Application {}: image {}", app.id, spec.alias)));
            return (r, None);
        }
    };
    let mut edit = None;
    match choose(spec, &current, registry.as_ref(), &holds).await {
        Ok((selection, held, seen)) => {
            r.reason = selection.reason;
            r.created = seen.created;
            r.holds = held.holds;
            r.unheld = held.unheld;
            r.held_back = held.held_back;
            r.rollbacks = held.rollbacks;
            if let Some(p) = selection.proposed {
                edit = source_index.map(|source| PlannedEdit {
                    source,
                    target: Version { tag: Some(p.tag.clone()), digest: p.digest.clone() },
                });
                r.proposed = Some(p.tag);
                r.digest = p.digest.or(seen.digest);
                r.change = Some(change_name(p.kind));
            }
        }
        Err(e) => r.error = Some(e.context(format!("Application {}: image {} ({})", app.id, spec.alias, spec.name))),
    }
    (r, edit)
}

/// A proposal to write into one source of an Application.
struct PlannedEdit {
    source: usize,
    target: Version,
}

/// What the holds did to one image's choice.
#[derive(Default)]
struct HeldInfo {
    holds: Vec<planner::Hold>,
    unheld: Option<String>,
    held_back: bool,
    rollbacks: Vec<planner::Delivery>,
}

/// Newest-build lookups in progress at once: per repository and platform set while warming
/// up, per image while choosing. Each pending lookup is a future of several kilobytes, so
/// thousands of them at once cost tens of megabytes; the client bounds the requests anyway.
const WARM_METADATA_WIDTH: usize = 16;
const CHOOSE_METADATA_WIDTH: usize = 4;

/// Lists the tags of every image (one request per repository, shared through the client's
/// cache) and fetches the metadata newest-build will ask for: the union of the tags the images
/// of one repository (and platform set) allow. Errors are cached by the client and reported by
/// `choose`, which asks again.
async fn warm_registry(registry: Arc<dyn Registry>, specs: Vec<ImageSpec>) {
    let registry = &registry;
    let wanted = join_all(specs.iter().map(|spec| async move {
        let tags = registry.list_tags(&spec.name, spec.pull_secret.as_deref()).await.ok()?;
        if spec.strategy != UpdateStrategy::NewestBuild {
            return None;
        }
        let filtered = strategy::filter_tags(spec, &tags).ok()?;
        match strategy::need(spec, &filtered) {
            Need::Created(wanted) => Some((spec, wanted)),
            _ => None,
        }
    }))
    .await;
    type GroupKey<'a> = (String, Option<&'a str>, &'a [Platform]);
    let mut groups: BTreeMap<GroupKey<'_>, (&ImageSpec, BTreeSet<String>)> = BTreeMap::new();
    for (spec, tags) in wanted.into_iter().flatten() {
        let key = (spec.name.to_string(), spec.pull_secret.as_deref(), &spec.platforms[..]);
        groups.entry(key).or_insert_with(|| (spec, BTreeSet::new())).1.extend(tags);
    }
    join_all(groups.values().map(|(spec, tags)| {
        futures::stream::iter(tags.iter().cloned())
            .map(move |tag| async move {
                // What the driver kept is for `choose` to revalidate or not.
                let secret = spec.pull_secret.as_deref();
                if registry.kept_metadata(&spec.name, &tag, &spec.platforms, secret).await.is_none() {
                    let _ = registry.tag_metadata(&spec.name, &tag, &spec.platforms, secret).await;
                }
            })
            .buffer_unordered(WARM_METADATA_WIDTH)
            .for_each(|_| async {})
    }))
    .await;
}

/// Tag list -> filters -> metadata the strategy needs -> holds -> selection (-> digest to pin).
async fn choose(
    spec: &ImageSpec,
    current: &Version,
    registry: &dyn Registry,
    holds: &ImageHolds,
) -> Result<(Selection, HeldInfo, Seen), Error> {
    let secret = spec.pull_secret.as_deref();
    let tags = registry.list_tags(&spec.name, secret).await?;
    let filtered = strategy::filter_tags(spec, &tags)?;
    if tags.is_empty() {
        let none = Selection { proposed: None, reason: Some(format!("{} has no tags", spec.name)) };
        return Ok((none, HeldInfo::default(), Seen::default()));
    }
    let candidates: Vec<Candidate> = match strategy::need(spec, &filtered) {
        Need::Nothing => filtered
            .iter()
            .map(|t| Candidate { tag: t.to_string(), digest: None, created: None })
            .collect(),
        Need::Created(wanted) => {
            // A candidate built before the running build cannot be proposed (newest-build takes
            // the newest): what the driver kept of it is used without asking the registry again;
            // those built later are revalidated (one HEAD each when unchanged).
            let running = match &current.tag {
                Some(tag) => registry.kept_metadata(&spec.name, tag, &spec.platforms, secret).await.and_then(|m| m.created),
                None => None,
            };
            let fetched: Vec<_> = futures::stream::iter(&wanted)
                .map(|tag| async move {
                    if let Some(running) = running
                        && let Some(kept) = registry.kept_metadata(&spec.name, tag, &spec.platforms, secret).await
                        && (current.tag.as_deref() == Some(tag.as_str()) || kept.created.is_some_and(|c| c <= running))
                    {
                        return (tag, Ok(kept));
                    }
                    (tag, registry.tag_metadata(&spec.name, tag, &spec.platforms, secret).await)
                })
                .buffered(CHOOSE_METADATA_WIDTH)
                .collect()
                .await;
            let mut out = Vec::new();
            for (tag, meta) in fetched {
                let meta = meta?;
                if meta.platform_found {
                    out.push(Candidate { tag: tag.clone(), digest: Some(meta.digest), created: meta.created });
                }
            }
            if out.is_empty() && !wanted.is_empty() {
                let none = Selection {
                    proposed: None,
                    reason: Some(format!("none of the {} candidate tags has an image for {}", wanted.len(), platforms_text(spec))),
                };
                return Ok((none, HeldInfo::default(), Seen::default()));
            }
            out
        }
        Need::Digest(tag) => {
            if !tags.contains(&tag) {
                let none = Selection { proposed: None, reason: Some(format!("tag {tag} does not exist in {}", spec.name)) };
                return Ok((none, HeldInfo::default(), Seen::default()));
            }
            let meta = registry.tag_metadata(&spec.name, &tag, &spec.platforms, secret).await?;
            if !meta.platform_found {
                let none =
                    Selection { proposed: None, reason: Some(format!("tag {tag} has no image for {}", platforms_text(spec))) };
                return Ok((none, HeldInfo::default(), Seen::default()));
            }
            vec![Candidate { tag, digest: Some(meta.digest), created: meta.created }]
        }
    };
    let unheld = strategy::select(spec, current, &candidates)?;
    let (mut selection, held) = if holds.is_empty() {
        (unheld, HeldInfo::default())
    } else {
        apply_holds(spec, current, &tags, candidates.clone(), holds, unheld)?
    };
    let seen = selection
        .proposed
        .as_ref()
        .and_then(|p| candidates.iter().find(|c| c.tag == p.tag && (p.digest.is_none() || c.digest == p.digest)))
        .map(|c| Seen { created: c.created, digest: c.digest.clone() })
        .unwrap_or_default();
    if spec.pin_digest
        && spec.strategy != UpdateStrategy::Digest
        && let Some(p) = selection.proposed.as_mut().filter(|p| p.digest.is_none())
    {
        p.digest = Some(registry.tag_digest(&spec.name, &p.tag, secret).await?);
    }
    Ok((selection, held, seen))
}

/// What the registry said of the proposed tag while choosing (no request is made for it).
#[derive(Default)]
struct Seen {
    created: Option<chrono::DateTime<chrono::Utc>>,
    /// The manifest digest, also when the strategy does not pin it (newest-build).
    digest: Option<String>,
}

/// The holds' part of the choice: a pin decides alone; otherwise the strategy chooses among
/// the candidates the ignores and rollback floors leave.
fn apply_holds(
    spec: &ImageSpec,
    current: &Version,
    tags: &[String],
    candidates: Vec<Candidate>,
    holds: &ImageHolds,
    unheld: Selection,
) -> Result<(Selection, HeldInfo), Error> {
    let all = candidates.clone();
    let outcome = planner::holds_apply(spec.strategy, holds, current, candidates);
    let mut info = HeldInfo {
        holds: Vec::new(),
        unheld: unheld.proposed.as_ref().map(|p| p.tag.clone()),
        held_back: false,
        rollbacks: outcome.rollbacks.clone(),
    };
    // Every pin and ignore is listed (status shows them all); floors only while in force.
    for h in holds.pins.iter().chain(holds.ignores.iter().filter(|h| h.kind == planner::HoldKind::Ignore)) {
        info.holds.push(planner::Hold { alias: spec.alias.clone(), ..h.clone() });
    }
    for h in outcome.active.iter().filter(|h| matches!(h.kind, planner::HoldKind::Rollback | planner::HoldKind::Closed)) {
        let h = planner::Hold { alias: spec.alias.clone(), ..h.clone() };
        if !info.holds.contains(&h) {
            info.holds.push(h);
        }
    }
    let describe = |h: &planner::Hold| {
        let what = match h.kind {
            planner::HoldKind::Pin => "pinned",
            planner::HoldKind::Ignore => "ignored",
            planner::HoldKind::Rollback => "rolled back",
            planner::HoldKind::Closed => "closed",
        };
        let v = h.version.as_ref().map(planner::version_text).unwrap_or_else(|| "what git has".into());
        format!("{what} at {v}: {}", h.origin.describe())
    };
    let selection = if let Some(pin) = &outcome.pin {
        match planner::pin_target(pin, current, spec.strategy) {
            PinTarget::Stay => Selection { proposed: None, reason: Some(format!("held: {}", describe(pin))) },
            PinTarget::Exactly(v) => pinned_proposal(spec, current, tags, &all, &v)
                .unwrap_or_else(|reason| Selection { proposed: None, reason: Some(format!("{reason} ({})", describe(pin))) }),
        }
    } else {
        let mut s = strategy::select(spec, current, &outcome.candidates)?;
        if s.proposed.is_none() && unheld.proposed.is_some() {
            let why: Vec<String> = outcome.active.iter().map(describe).collect();
            s.reason = Some(format!("held: {}", why.join("; ")));
        }
        s
    };
    info.held_back = unheld.proposed.is_some() && selection.proposed.is_none();
    Ok((selection, info))
}

/// The proposal a pin at `v` makes when git has another version.
fn pinned_proposal(
    spec: &ImageSpec,
    current: &Version,
    tags: &[String],
    candidates: &[Candidate],
    v: &planner::Version,
) -> Result<Selection, Error> {
    let propose = |tag: String, digest: Option<String>, kind| Selection {
        proposed: Some(strategy::Proposal { tag, digest, kind }),
        reason: None,
    };
    match (&v.tag, &v.digest) {
        (Some(tag), _) => {
            if !tags.iter().any(|t| t == tag) {
                return Err(Error::new(ErrorKind::NotFound, format!("pinned version {tag} does not exist in {}", spec.name)));
            }
            let digest = candidates.iter().find(|c| &c.tag == tag).and_then(|c| c.digest.clone()).filter(|_| spec.pin_digest);
            Ok(propose(tag.clone(), digest.or(v.digest.clone()), strategy::change_kind_between(current.tag.as_deref(), tag)))
        }
        (None, Some(digest)) => {
            let tag = current.tag.clone().or_else(|| spec.constraint.clone()).unwrap_or_else(|| "latest".into());
            Ok(propose(tag, Some(digest.clone()), strategy::ChangeKind::Digest))
        }
        (None, None) => Err(Error::input("the pin names no version")),
    }
}

fn platforms_text(spec: &ImageSpec) -> String {
    spec.platforms.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
}

fn change_name(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Major => "major",
        ChangeKind::Minor => "minor",
        ChangeKind::Patch => "patch",
        ChangeKind::PreRelease => "pre-release",
        ChangeKind::Digest => "digest",
        ChangeKind::Build => "build",
    }
}

struct EditContext<'a> {
    app: &'a Application,
    ann: &'a annotations::AppAnnotations,
    snapshots: &'a Snapshots,
    apps_origin: &'a Option<AppsOrigin>,
}

/// Applies every proposal of one Application to its sources, one after another on the same
/// files (two images may live in one file), and returns the diffs. An edit that is refused
/// becomes its image's error and changes nothing.
fn app_changes(
    ctx: &EditContext<'_>,
    workspace: &mut Workspace,
    edits: Vec<(usize, PlannedEdit)>,
    images: &mut [ImageReport],
) -> (Vec<FileDiff>, Vec<SourceChange>) {
    let specs: Vec<&ImageSpec> = ctx.ann.images.iter().filter_map(|i| i.as_ref().ok()).collect();
    let mut per_source: BTreeMap<usize, BTreeMap<String, FileChange>> = BTreeMap::new();
    let mut aliases: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (image_index, planned) in edits {
        let image = &mut images[image_index];
        let Some(spec) = specs.iter().find(|s| s.alias == image.alias) else { continue };
        let source = &ctx.app.sources[planned.source];
        let key = (source.repo_url.clone(), source.target_revision.clone());
        let Some(Ok(snapshot)) = ctx.snapshots.get(&key) else { continue };
        let files = workspace.files(&key, snapshot);
        let changes = per_source.entry(planned.source).or_default();
        let app_manifest = ctx
            .apps_origin
            .as_ref()
            .filter(|o| same_repo(&o.url, &source.repo_url) && o.commit == snapshot.commit)
            .map(|_| ctx.app.file.as_str());
        let request = EditRequest {
            files,
            app: ctx.app,
            source,
            image: spec,
            target: &planned.target,
            write_back_target: ctx.ann.write_back_target.as_ref(),
            app_manifest,
        };
        match edit::edit_image(&request) {
            Ok(file_changes) => {
                if !file_changes.is_empty() {
                    aliases.entry(planned.source).or_default().push(spec.alias.clone());
                }
                for change in file_changes {
                    files.insert(change.path.clone(), change.after.clone());
                    changes
                        .entry(change.path.clone())
                        .and_modify(|c| c.after = change.after.clone())
                        .or_insert(change);
                }
            }
            Err(e) => {
                image.error = Some(
                    Error::from(e).context(format!("Application {}: image {}: cannot write {}", ctx.app.id, spec.alias, source.repo_url)),
                )
            }
        }
    }
    // Leave the working copies as git has them for the next Application.
    for (source, changes) in &per_source {
        let source = &ctx.app.sources[*source];
        let key = (source.repo_url.clone(), source.target_revision.clone());
        if let Some(Ok(snapshot)) = ctx.snapshots.get(&key) {
            let files = workspace.files(&key, snapshot);
            for path in changes.keys() {
                match snapshot.files.files.get(path) {
                    Some(original) => files.insert(path.clone(), original.clone()),
                    None => {
                        files.files.remove(path);
                    }
                }
            }
        }
    }
    let mut diffs = Vec::new();
    let mut raw = Vec::new();
    for (source, changes) in per_source {
        let src = &ctx.app.sources[source];
        let mut files = Vec::new();
        for c in changes.into_values() {
            let diff = edit::unified_diff(&c.path, &c.before, &c.after);
            if diff.is_empty() {
                continue;
            }
            diffs.push(FileDiff { repo: src.repo_url.clone(), file: c.path.clone(), diff });
            files.push((c.path, c.after));
        }
        if !files.is_empty() {
            raw.push(SourceChange {
                repo_url: src.repo_url.clone(),
                revision: src.target_revision.clone(),
                files,
                images: aliases.remove(&source).unwrap_or_default(),
            });
        }
    }
    (diffs, raw)
}

/// Working copies of the source repositories, one per (URL, revision), made once per run: an
/// Application's edits are stacked on them (two images may live in one file) and undone once its
/// diffs are taken, which is far cheaper than copying the file set per Application.
#[derive(Default)]
struct Workspace {
    copies: HashMap<SourceKey, FileSet>,
}

impl Workspace {
    fn files(&mut self, key: &SourceKey, snapshot: &Snapshot) -> &mut FileSet {
        self.copies.entry(key.clone()).or_insert_with(|| snapshot.files.clone())
    }
}

/// Whether two git URLs name the same repository (`.git` suffix and trailing `/` aside).
fn same_repo(a: &str, b: &str) -> bool {
    let norm = |u: &str| u.trim().trim_end_matches('/').trim_end_matches(".git").to_string();
    norm(a) == norm(b)
}

#[cfg(test)]
mod tests;
