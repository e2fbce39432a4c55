//! `run --once`: one pass of the pull-request lifecycle, in named phases:
//!
//! 1. [`discovery_phase`]: Applications, as for `plan`;
//! 2. [`repositories_phase`]: every repository they use, its branches from one `ls-remote`, and
//!    each Application's settings (annotations over config) and base branch;
//! 3. [`Ctx::forge_phase`]: the bot's PRs, listed once per repository; the comments since the
//!    last look and the commands in them; the holds of every Application;
//! 4. [`evaluation_phase`]: git, registries, strategies and edits, as for `plan`, but read on
//!    the base branch's tip;
//! 5. [`Ctx::apply_phase`]: the planner's [`Decision`] per Application, applied: commit built from
//!    trees, push with a lease, create/update/close PRs, comments; rollback notices;
//! 6. [`Ctx::obsolete_phase`]: PRs of Applications that lost their annotations or are gone.
//!
//! One Application's failure is reported with it and never stops the others; whatever a crash
//! leaves half done, the next run finishes (see docs/lifecycle.md).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{
    AppReport, Discovered, Drivers, Evaluated, FileDiff, ImageReport, LocationError, PlanOptions, SourceChange, Stats, discover, evaluate,
    same_repo,
};
use crate::discovery::Application;
use crate::domain::{AppId, ImageName};
use crate::forge::Counted;
use crate::planner::{
    self, Action, BaseChoice, BranchCommit, BranchState, CloseReason, Decision, Desired, ExistingPr, FixUps, Holds,
    Input, Ledger, PrMetadata, Proposal, Push, RepoSettings,
};
use crate::ports::{
    Forge, ForgeErrorKind, ForgeWords, GitRepos, Identity, Lease, NewPullRequest, PrState, PrUpdate, PullRequest, PushError, PushTarget,
    RemoteHeads, RepoRef, Reviewer,
};
use crate::error::{Error, ErrorKind};
use crate::metadata;
use crate::templates::{self, Templates};

/// What one `run --once` pass needs besides the forge.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub plan: PlanOptions,
    /// `argocd-image-pr/{{namespace}}/{{name}}` by default.
    pub branch_template: String,
    pub identity: Identity,
    pub repositories: Vec<RepoSettings>,
    pub templates: Arc<Templates>,
    /// `run` writes; `status` only reads (no commands carried out, nothing written).
    pub mode: Mode,
}

/// Whether a pass acts or only reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    #[default]
    Run,
    Status,
}

/// The whole answer of `run --once`; serialized as the `--output json` document.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub applications: Vec<RunAppReport>,
    /// Files, locations or repositories that could not be read.
    pub errors: Vec<LocationError>,
    pub stats: RunStats,
}

impl RunReport {
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty() || self.applications.iter().any(|a| !a.errors.is_empty())
    }
}

/// What the run did for one Application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunAction {
    Opened,
    /// A closed PR of the Application's branch was reopened with a new proposal.
    Reopened,
    Updated,
    Unchanged,
    Closed,
    Skipped,
    Held,
    Error,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunAppReport {
    pub namespace: String,
    pub name: String,
    pub action: RunAction,
    pub pr: Option<u64>,
    pub url: Option<String>,
    pub repo: Option<String>,
    pub branch: Option<String>,
    pub base: Option<String>,
    /// Why the bot held back, skipped or closed.
    pub reason: Option<String>,
    pub images: Vec<ImageReport>,
    pub changes: Vec<FileDiff>,
    pub errors: Vec<Error>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RunStats {
    #[serde(flatten)]
    pub plan: Stats,
    /// Repositories the bot looked at (one `ls-remote` each).
    pub repositories: usize,
    /// Every forge API call (reads and writes).
    pub forge_calls: u64,
    /// Forge calls that change something (PRs, comments, labels, reviewers, branches).
    pub forge_writes: u64,
    /// Branches pushed.
    pub git_pushes: u64,
}

/// Runs one pass of the lifecycle against `forge`, phase by phase (the module doc lists them).
pub async fn run_once<F: Forge>(forge: &F, drivers: &Drivers, options: RunOptions) -> RunReport {
    let report = run_cycle(forge, drivers, options).await;
    drivers.registry.end_cycle();
    report
}

async fn run_cycle<F: Forge>(forge: &F, drivers: &Drivers, options: RunOptions) -> RunReport {
    let forge = Counted::new(forge);
    let mut errors = Vec::new();
    if let Err(e) = drivers.registry.begin_cycle() {
        let errors = vec![LocationError { file: "registries".into(), error: e.into() }];
        return RunReport { applications: vec![], errors, stats: RunStats::default() };
    }
    let prefix = branch_prefix(&options.branch_template);

    let found = discovery_phase(&forge, drivers, &options).await;
    let discovery_complete = found.errors.is_empty();
    errors.extend(found.errors.iter().cloned());
    let (mut repos, quiet) = repositories_phase(&forge, drivers, &options, &found, &prefix, &mut errors).await;
    let mut works: Vec<AppWork> = found.annotated.iter().map(|(app, _)| AppWork::new(app, &options, &repos)).collect();

    let ctx = Ctx {
        forge: &forge,
        git: drivers.git.as_ref(),
        options: &options,
        prefix: &prefix,
        pushes: AtomicU64::new(0),
        started: drivers.clock.now(),
        held_cursor: Default::default(),
    };
    let holds = ctx.forge_phase(&mut repos, &quiet, &found, &mut works, &mut errors).await;
    let (evaluated, mut works) = evaluation_phase(drivers, &found, works, &holds, &repos, &options).await;

    let mut stats = RunStats { plan: evaluated.stats.clone(), repositories: repos.len(), ..Default::default() };
    if options.mode == Mode::Status {
        let reports = works.iter().map(|w| ctx.status_of(w, &repos)).collect();
        stats.forge_calls = forge.hook().calls();
        return RunReport { applications: reports, errors, stats };
    }
    let mut reports = ctx.apply_phase(&mut works, &mut repos).await;
    reports.extend(ctx.obsolete_phase(&mut repos, &works, &found, discovery_complete, &mut errors).await);

    stats.forge_calls = forge.hook().calls();
    stats.forge_writes = forge.hook().writes();
    stats.git_pushes = ctx.pushes.load(Ordering::Relaxed);
    let count = |a: RunAction| reports.iter().filter(|r| r.action == a).count();
    tracing::info!(
        forge_calls = stats.forge_calls,
        forge_writes = stats.forge_writes,
        git_pushes = stats.git_pushes,
        "run done: {} opened, {} reopened, {} updated, {} closed, {} unchanged, {} held, {} skipped, {} with errors; {} location errors",
        count(RunAction::Opened),
        count(RunAction::Reopened),
        count(RunAction::Updated),
        count(RunAction::Closed),
        count(RunAction::Unchanged),
        count(RunAction::Held),
        count(RunAction::Skipped),
        count(RunAction::Error),
        errors.len()
    );
    RunReport { applications: reports, errors, stats }
}

/// Phase 1, discovery, as for `plan`. `--apps` git URLs on the forge (Applications kept in a private
/// repository) are read with the forge's credentials; a URL the forge does not know as it is.
async fn discovery_phase<F: Forge>(forge: &Counted<'_, F>, drivers: &Drivers, options: &RunOptions) -> Discovered {
    let mut apps_credentials: HashMap<String, PushTarget> = HashMap::new();
    for location in &options.plan.apps {
        if let Some(repo) = drivers.apps.git_url(location).and_then(RepoRef::from_url)
            && let Ok(target) = forge.authorized_push_target(&repo).await
        {
            apps_credentials.insert(location.clone(), target);
        }
    }
    let prepare = {
        let registry = drivers.registry.clone();
        tokio::task::spawn_blocking(move || registry.prepare())
    };
    let found =
        discover(drivers.apps.as_ref(), &options.plan.apps, &apps_credentials, &drivers.registry.default_registry()).await;
    let _ = prepare.await;
    tracing::info!(
        annotated = found.annotated.len(),
        errors = found.errors.len(),
        "discovery: {} Applications with an image-list in {} location(s)",
        found.annotated.len(),
        options.plan.apps.len()
    );
    found
}

/// Phase 2: the repositories the Applications use (and those `repositories:` configures), each with
/// its branches from one `ls-remote`. Also returns the "quiet" ones that only Applications
/// without annotations use: looked at for the bot's obsolete PRs only, and left out when the bot
/// has no branch there (it may have no access to them at all).
async fn repositories_phase<F: Forge>(
    forge: &Counted<'_, F>,
    drivers: &Drivers,
    options: &RunOptions,
    found: &Discovered,
    prefix: &str,
    errors: &mut Vec<LocationError>,
) -> (BTreeMap<String, RepoState>, BTreeSet<String>) {
    let mut urls: BTreeSet<String> = BTreeSet::new();
    for (app, _) in &found.annotated {
        urls.extend(app.sources.iter().filter(|s| s.chart.is_none()).map(|s| s.repo_url.clone()));
    }
    urls.extend(options.repositories.iter().map(|r| r.url.clone()));
    let quiet: BTreeSet<String> = found
        .unannotated
        .iter()
        .flat_map(|a| a.sources.iter().filter(|s| s.chart.is_none()).map(|s| s.repo_url.clone()))
        .filter(|u| !urls.contains(u))
        .collect();
    let mut repos: BTreeMap<String, RepoState> = BTreeMap::new();
    for url in urls.iter().chain(quiet.iter()).cloned() {
        let Some(repo) = RepoRef::from_url(&url) else {
            errors.push(LocationError { file: url.clone(), error: Error::input("cannot tell the repository from this URL") });
            continue;
        };
        let target = match forge.authorized_push_target(&repo).await {
            Ok(t) => t,
            Err(e) => {
                if !quiet.contains(&url) {
                    errors.push(LocationError { file: url.clone(), error: e.into() });
                }
                continue;
            }
        };
        let heads = drivers.git.remote_heads(&url, "", Some(&target)).await.map_err(Error::from);
        if quiet.contains(&url) {
            match heads {
                Ok(h) if h.branches.keys().any(|b| b.starts_with(prefix)) => {
                    let words = forge.words(&repo);
                    repos.insert(url, RepoState { repo, target, heads: Ok(h), listing: None, words });
                }
                Ok(_) => {}
                Err(e) => tracing::debug!("{url}: {e}"),
            }
            continue;
        }
        let words = forge.words(&repo);
        repos.insert(url, RepoState { repo, target, heads, listing: None, words });
    }
    (repos, quiet)
}

/// Phase 4: git and registries, as for `plan`, on each Application's base branch; then each
/// Application split into one unit per repository its update changes.
async fn evaluation_phase(
    drivers: &Drivers,
    found: &Discovered,
    works: Vec<AppWork>,
    holds: &[planner::AppHolds],
    repos: &BTreeMap<String, RepoState>,
    options: &RunOptions,
) -> (Evaluated, Vec<AppWork>) {
    let bases: HashMap<(AppId, String), String> = works
        .iter()
        .flat_map(|w| w.bases.iter().map(move |(url, base)| ((w.id.clone(), url.clone()), base.clone())))
        .collect();
    // Sources are read with the forge's credentials (private repositories over https).
    let credentials: HashMap<String, PushTarget> = repos.iter().map(|(url, r)| (url.clone(), r.target.clone())).collect();
    let evaluated: Evaluated = evaluate(
        drivers,
        &found.annotated,
        &found.origins,
        |app, source| {
            bases.get(&(app.id.clone(), source.repo_url.clone())).cloned().unwrap_or_else(|| source.target_revision.clone())
        },
        holds,
        &credentials,
    )
    .await;
    tracing::info!(
        proposals = evaluated.changes.iter().filter(|c| !c.is_empty()).count(),
        registry_requests = evaluated.stats.registry_requests,
        "git and registries: {} Applications evaluated",
        evaluated.reports.len()
    );
    let works = works
        .into_iter()
        .enumerate()
        .flat_map(|(i, work)| repository_units(work, &evaluated.reports[i], &evaluated.changes[i], &evaluated, options, repos))
        .collect();
    (evaluated, works)
}

impl<F: Forge> Ctx<'_, F> {
    /// Phase 3, forge: the bot's PRs (open, closed, merged), listed once per repository; the comments
    /// since the bot's last look, and the commands in them carried out (`run` only); the holds
    /// of every Application.
    async fn forge_phase(
        &self,
        repos: &mut BTreeMap<String, RepoState>,
        quiet: &BTreeSet<String>,
        found: &Discovered,
        works: &mut [AppWork],
        errors: &mut Vec<LocationError>,
    ) -> Vec<planner::AppHolds> {
        let managed_urls: Vec<String> = repos.keys().filter(|u| !quiet.contains(*u)).cloned().collect();
        for url in &managed_urls {
            let _ = self.listing(repos, url, false).await;
        }
        let managed: comment_commands::Managed = found
            .annotated
            .iter()
            .map(|(app, ann)| {
                (app.id.to_string(), ann.images.iter().filter_map(|i| i.as_ref().ok()).map(|s| s.alias.clone()).collect())
            })
            .collect();
        if self.options.mode == Mode::Run {
            for url in &managed_urls {
                let mut problems = Vec::new();
                self.commands_phase(repos, url, &managed, &mut problems).await;
                errors.extend(problems.into_iter().map(|e| LocationError { file: url.clone(), error: e }));
            }
        }
        found.annotated.iter().zip(works.iter_mut()).map(|((app, _), work)| app_holds(app, work, repos)).collect()
    }

    /// Phase 5, every Application: decide and apply; then its rollback notices.
    async fn apply_phase(&self, works: &mut [AppWork], repos: &mut BTreeMap<String, RepoState>) -> Vec<RunAppReport> {
        let mut reports = Vec::new();
        for work in works {
            let mut report = self.handle(work, repos).await;
            let rollbacks: Vec<(String, planner::Delivery, planner::Version)> = report
                .images
                .iter()
                .flat_map(|i| {
                    let now = planner::Version { tag: i.current.clone(), digest: i.current_digest.clone() };
                    i.rollbacks.iter().map(move |d| (i.alias.clone(), d.clone(), now.clone()))
                })
                .collect();
            if !rollbacks.is_empty() {
                let mut problems = Vec::new();
                self.rollback_notices(repos, &work.id, &rollbacks, &mut problems).await;
                report.errors.extend(problems);
            }
            log_outcome(&report);
            reports.push(report);
        }
        reports
    }

    /// Phase 6: open bot PRs whose Application lost its annotations, or is gone (only when every
    /// location could be read: an unreadable file may hold it).
    async fn obsolete_phase(
        &self,
        repos: &mut BTreeMap<String, RepoState>,
        works: &[AppWork],
        found: &Discovered,
        discovery_complete: bool,
        errors: &mut Vec<LocationError>,
    ) -> Vec<RunAppReport> {
        let managed: BTreeSet<(String, String)> =
            works.iter().filter_map(|w| w.repo_url.clone().map(|u| (u, w.branch.clone()))).collect();
        let unannotated: BTreeMap<String, &Application> = found.unannotated.iter().map(|a| (a.id.to_string(), a)).collect();
        let mut reports = Vec::new();
        let urls: Vec<String> = repos.keys().cloned().collect();
        for url in urls {
            let listing = match self.listing(repos, &url, true).await {
                Ok(l) => l,
                Err(e) => {
                    errors.push(LocationError { file: url.clone(), error: e });
                    continue;
                }
            };
            for pr in listing.iter().filter(|p| p.state == PrState::Open && !managed.contains(&(url.clone(), p.head.clone()))) {
                let meta: Option<PrMetadata> = metadata::decode(&pr.body);
                let Some(meta) = meta else { continue };
                let obsolete = match unannotated.get(&meta.application) {
                    Some(_) => Some(templates::ObsoleteReason::AnnotationsRemoved),
                    None if discovery_complete => Some(templates::ObsoleteReason::ApplicationRemoved),
                    None => None,
                };
                let Some(obsolete) = obsolete else { continue };
                reports.push(self.close_orphan(repos, &url, pr, &meta, obsolete).await);
            }
        }
        reports
    }
}

/// One log line per Application (info; warn when it failed), as the run goes.
fn log_outcome(r: &RunAppReport) {
    let pr = r.url.as_deref().map(|u| format!(" {u}")).unwrap_or_default();
    let reason = r.reason.as_deref().map(|x| format!(": {x}")).unwrap_or_default();
    if r.action == RunAction::Error {
        for e in &r.errors {
            tracing::warn!(cause = e.kind().label(), transient = e.kind().transient(), "{}/{}: error{pr}: {e}", r.namespace, r.name);
        }
    } else {
        tracing::info!("{}/{}: {:?}{pr}{reason}", r.namespace, r.name, r.action);
    }
}

/// The branch template's fixed start: the bot lists PRs and branches under it.
fn branch_prefix(template: &str) -> String {
    let fixed = template.split("{{").next().unwrap_or("");
    let fixed = &fixed[..fixed.rfind('/').map(|i| i + 1).unwrap_or(0)];
    fixed.to_string()
}

/// One repository as the run sees it.
struct RepoState {
    repo: RepoRef,
    target: PushTarget,
    heads: Result<RemoteHeads, Error>,
    /// The bot's PRs, listed at most once (again only after a conflict).
    listing: Option<Result<Vec<PullRequest>, Error>>,
    /// How the repository's forge names things in the bot's texts.
    words: ForgeWords,
}

/// One Application on its way through the run: one per repository its update changes, each with
/// its own pull request (on the same branch name in its own repository).
#[derive(Clone)]
struct AppWork {
    id: AppId,
    /// The Application as templates show it (project, destination).
    info: templates::AppInfo,
    settings: Result<planner::PrSettings, Error>,
    /// Base branch per source repository URL.
    bases: BTreeMap<String, String>,
    held: Option<String>,
    /// The pin annotation could not be read.
    pin_error: Option<Error>,
    branch: String,
    report: Option<AppReport>,
    desired: Desired,
    /// The repository the PR lives in (where the changes go, else the first git source).
    repo_url: Option<String>,
    files: Vec<(String, Vec<u8>)>,
    /// The other repositories the same update changes, for the PR body.
    related: Vec<templates::RelatedPr>,
}

impl AppWork {
    fn new(app: &Application, options: &RunOptions, repos: &BTreeMap<String, RepoState>) -> AppWork {
        let first_git = app.sources.iter().find(|s| s.chart.is_none()).map(|s| s.repo_url.clone());
        let repo_settings = first_git.as_ref().and_then(|u| options.repositories.iter().find(|r| same_repo(&r.url, u)));
        let settings = planner::pr_settings(&app.annotations, repo_settings).map_err(|e| Error::input(format!("annotation {e}")));
        let mut bases = BTreeMap::new();
        let mut held = None;
        for source in app.sources.iter().filter(|s| s.chart.is_none()) {
            let Some(state) = repos.get(&source.repo_url) else { continue };
            let Ok(heads) = &state.heads else { continue };
            let configured = settings.as_ref().ok().and_then(|s| s.base.clone()).or_else(|| {
                options.repositories.iter().find(|r| same_repo(&r.url, &source.repo_url)).and_then(|r| r.base.clone())
            });
            let branches: Vec<String> = heads.branches.keys().cloned().collect();
            match planner::choose_base(&source.target_revision, configured.as_deref(), &branches) {
                Ok(BaseChoice::Branch(b)) => {
                    bases.insert(source.repo_url.clone(), b);
                }
                Ok(BaseChoice::DefaultBranch) => match &heads.default_branch {
                    Some((b, _)) => {
                        bases.insert(source.repo_url.clone(), b.clone());
                    }
                    None => held = Some(format!("{} has no default branch", source.repo_url)),
                },
                Err(reason) => held = held.or(Some(reason)),
            }
        }
        AppWork {
            id: app.id.clone(),
            info: app_info(app),
            settings,
            bases,
            held,
            pin_error: None,
            branch: planner::branch_name(&options.branch_template, &app.id),
            report: None,
            desired: Desired::Unknown { error: Error::new(ErrorKind::NotFound, "not evaluated") },
            repo_url: first_git,
            files: Vec::new(),
            related: Vec::new(),
        }
    }
}

fn app_info(app: &Application) -> templates::AppInfo {
    let mut info = templates::AppInfo::new(&app.id.namespace, &app.id.name);
    if let Some(project) = &app.project {
        info.project = project.clone();
    }
    let d = &app.destination;
    info.destination =
        templates::Destination { server: d.server.clone(), name: d.name.clone(), namespace: d.namespace.clone() };
    info.live = app.live.as_ref().map(|l| templates::Live {
        sync: l.sync.clone(),
        health: l.health.clone(),
        revision: l.revision.clone(),
        images: l.images.clone(),
    });
    info
}

/// The files an update changes, one entry per repository (an Application's sources in one
/// repository, say a kustomization and a values file, make one change).
fn by_repository(changes: &[SourceChange]) -> Vec<SourceChange> {
    let mut out: Vec<SourceChange> = Vec::new();
    for c in changes {
        match out.iter_mut().find(|o| o.repo_url == c.repo_url && o.revision == c.revision) {
            Some(o) => {
                o.files.extend(c.files.iter().cloned());
                o.images.extend(c.images.iter().filter(|a| !o.images.contains(a)).cloned().collect::<Vec<_>>());
            }
            None => out.push(c.clone()),
        }
    }
    out
}

/// What one Application comes to: one unit per repository its update changes (each carrying the
/// images whose versions live there, linked to the others in its body), and one more per
/// repository where an open PR of the Application's is left that the update no longer needs,
/// so that it is closed. An update with an error anywhere stays one unit: no PR shows half of
/// an update whose other half failed.
fn repository_units(
    mut work: AppWork,
    report: &AppReport,
    changes: &[SourceChange],
    evaluated: &Evaluated,
    options: &RunOptions,
    repos: &BTreeMap<String, RepoState>,
) -> Vec<AppWork> {
    let groups = by_repository(changes);
    let clean = report.error.is_none() && report.images.iter().all(|i| i.error.is_none());
    let distinct = groups.iter().all(|g| groups.iter().filter(|o| same_repo(&o.repo_url, &g.repo_url)).count() == 1);
    let mut units = Vec::new();
    if groups.len() > 1 && clean && distinct {
        for g in &groups {
            let mut unit = work.clone();
            let mut r = report.clone();
            r.images.retain(|i| g.images.contains(&i.alias));
            r.changes.retain(|c| same_repo(&c.repo, &g.repo_url));
            unit.related = groups
                .iter()
                .filter(|o| o.repo_url != g.repo_url)
                .map(|o| related_pr(&o.repo_url, &work.branch, &work.id, repos))
                .collect();
            unit.desired = desired(&mut unit, &r, std::slice::from_ref(g), evaluated, options, repos);
            unit.report = Some(r);
            units.push(unit);
        }
    } else {
        work.report = Some(report.clone());
        work.desired = desired(&mut work, report, &groups, evaluated, options, repos);
        units.push(work);
    }
    if units.iter().all(|u| matches!(u.desired, Desired::Propose(_) | Desired::UpToDate)) {
        let id = units[0].id.to_string();
        let branch = units[0].branch.clone();
        for (url, state) in repos {
            if units.iter().any(|u| u.repo_url.as_deref().is_some_and(|r| same_repo(r, url))) {
                continue;
            }
            let Some(Ok(listing)) = &state.listing else { continue };
            let left = listing.iter().any(|p| {
                p.state == PrState::Open
                    && p.head == branch
                    && metadata::decode::<PrMetadata>(&p.body).is_some_and(|m| m.application == id)
            });
            if left {
                let mut unit = units[0].clone();
                let mut r = report.clone();
                r.images.clear();
                r.changes.clear();
                unit.report = Some(r);
                unit.repo_url = Some(url.clone());
                unit.files = Vec::new();
                unit.related = Vec::new();
                unit.desired = Desired::UpToDate;
                units.push(unit);
            }
        }
    }
    units
}

/// How a PR body names the part of the same update in another repository.
fn related_pr(url: &str, branch: &str, id: &AppId, repos: &BTreeMap<String, RepoState>) -> templates::RelatedPr {
    let state = repos.get(url);
    let open = state.and_then(|s| s.listing.as_ref()?.as_ref().ok()).and_then(|l| {
        l.iter().find(|p| {
            p.state == PrState::Open
                && p.head == branch
                && metadata::decode::<PrMetadata>(&p.body).is_some_and(|m| m.application == id.to_string())
        })
    });
    templates::RelatedPr {
        repo: templates::RepoInfo {
            url: url.to_string(),
            slug: state.map(|s| s.repo.slug.clone()).unwrap_or_else(|| url.to_string()),
        },
        branch: branch.to_string(),
        url: open.map(|p| p.url.clone()),
    }
}

/// What the bot wants for one Application, from its evaluation.
fn desired(
    work: &mut AppWork,
    report: &AppReport,
    changes: &[SourceChange],
    evaluated: &Evaluated,
    options: &RunOptions,
    repos: &BTreeMap<String, RepoState>,
) -> Desired {
    if let Some(state) = work.repo_url.as_ref().and_then(|u| repos.get(u))
        && let Err(e) = &state.heads
    {
        return Desired::Unknown { error: e.clone() };
    }
    let settings = match &work.settings {
        Ok(s) => s.clone(),
        Err(e) => return Desired::Unknown { error: e.clone().context(format!("Application {}", work.id)) },
    };
    if let Some(reason) = &work.held {
        return Desired::Held { reason: reason.clone() };
    }
    if let Some(e) = &work.pin_error {
        return Desired::Unknown { error: e.clone().context(format!("Application {}", work.id)) };
    }
    if let Some(e) = &report.error {
        return Desired::Unknown { error: e.clone() };
    }
    if let Some(error) = Error::joined(report.images.iter().filter_map(|i| i.error.clone()).collect()) {
        return Desired::Unknown { error };
    }
    let change = match changes {
        [] if report.images.iter().any(|i| i.held_back) => {
            let reasons: Vec<String> =
                report.images.iter().filter(|i| i.held_back).map(|i| format!("{}: {}", i.alias, i.reason.clone().unwrap_or_default())).collect();
            return Desired::AllHeld { reason: reasons.join("; ") };
        }
        [] => return Desired::UpToDate,
        [one] => one,
        _ => {
            return Desired::Unknown {
                error: Error::input(format!(
                    "Application {}: the update changes files on two revisions of one repository ({}); one pull request cannot hold both",
                    work.id,
                    changes.iter().map(|c| format!("{} at {}", c.repo_url, c.revision)).collect::<Vec<_>>().join(", ")
                )),
            };
        }
    };
    work.repo_url = Some(change.repo_url.clone());
    work.files = change.files.clone();
    let Some(base_commit) = evaluated.commits.get(&(change.repo_url.clone(), change.revision.clone())) else {
        return Desired::Unknown {
            error: Error::new(ErrorKind::NotFound, format!("{} at {} was not read", change.repo_url, change.revision)),
        };
    };
    let images: Vec<planner::ImageChange> = report
        .images
        .iter()
        .filter(|i| i.proposed.is_some() || i.digest.is_some())
        .filter(|i| i.change.is_some())
        .map(|i| planner::ImageChange {
            alias: i.alias.clone(),
            image: i.image.clone().unwrap_or_default(),
            from: planner::Version { tag: i.current.clone(), digest: i.current_digest.clone() },
            to: planner::Version { tag: i.proposed.clone(), digest: i.digest.clone() },
            change: i.change.unwrap_or("build").to_string(),
        })
        .collect();
    let repo = repos.get(&change.repo_url).map(|r| r.repo.clone());
    let words = repos.get(&change.repo_url).map(|r| r.words).unwrap_or_default();
    let context = pr_context(work, &images, &report.images, &change.revision, (repo.as_ref(), words), &options.identity);
    let rendered = (|| -> Result<(String, String, String), templates::TemplateError> {
        Ok((
            options.templates.pr_title(&context)?,
            options.templates.pr_body(&context)?,
            options.templates.commit_message(&context)?,
        ))
    })();
    let (title, body, commit_message) = match rendered {
        Ok(r) => r,
        Err(e) => return Desired::Unknown { error: Error::from(e).context(format!("Application {}", work.id)) },
    };
    let fingerprint = planner::fingerprint(&images, change.files.iter().map(|(p, c)| (p.as_str(), c.as_slice())));
    Desired::Propose(Box::new(Proposal {
        images,
        base_branch: change.revision.clone(),
        base_commit: base_commit.clone(),
        branch: work.branch.clone(),
        title,
        body,
        commit_message,
        fingerprint,
        settings,
    }))
}

/// The holds of one Application: its pin annotation and the bot's PRs of every repository the
/// run listed (their metadata names the Application).
fn app_holds(app: &Application, work: &mut AppWork, repos: &BTreeMap<String, RepoState>) -> planner::AppHolds {
    let pins = match app.annotations.get(planner::PIN_ANNOTATION) {
        Some(v) => match planner::parse_pin_annotation(v) {
            Ok(p) => p,
            Err(e) => {
                work.pin_error = Some(Error::input(e));
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    let id = app.id.to_string();
    let views: Vec<planner::PrView> = repos
        .values()
        .filter_map(|s| s.listing.as_ref()?.as_ref().ok())
        .flatten()
        .filter_map(|p| {
            let meta: PrMetadata = metadata::decode(&p.body)?;
            (meta.application == id).then(|| comment_commands::pr_view(p, &meta))
        })
        .collect();
    planner::derive(&id, &views, &pins)
}

fn pr_context(
    work: &AppWork,
    images: &[planner::ImageChange],
    reports: &[ImageReport],
    base: &str,
    (repo, words): (Option<&RepoRef>, ForgeWords),
    identity: &Identity,
) -> templates::PrContext {
    templates::PrContext {
        app: work.info.clone(),
        repo: templates::RepoInfo {
            url: repo.map(|r| r.url.clone()).unwrap_or_default(),
            slug: repo.map(|r| r.slug.clone()).unwrap_or_default(),
        },
        base: base.to_string(),
        branch: work.branch.clone(),
        images: images
            .iter()
            .filter_map(|i| {
                let name = ImageName::parse(&i.image).ok()?;
                let change: templates::Change = serde_json::from_value(serde_json::Value::String(i.change.clone())).ok()?;
                let created = reports.iter().find(|r| r.alias == i.alias).and_then(|r| r.created);
                Some(
                    templates::ImageChange::new(&i.alias, &name, i.from.clone(), i.to.clone(), change)
                        .with_build_date(created)
                        .with_running(&name, work.info.live.as_ref()),
                )
            })
            .collect(),
        files: work.files.iter().map(|(p, _)| templates::FileChange { path: p.clone() }).collect(),
        related: work.related.clone(),
        commands: templates::CommandHelp::defaults(words.request),
        bot: templates::BotInfo { name: identity.name.clone() },
        forge: forge_info(words),
    }
}

/// The template variable `forge`.
pub(super) fn forge_info(words: ForgeWords) -> templates::ForgeInfo {
    templates::ForgeInfo { request: words.request.to_string(), access: words.access.to_string() }
}

fn existing(pr: &PullRequest) -> ExistingPr {
    ExistingPr {
        number: pr.number,
        open: pr.state == PrState::Open,
        title: pr.title.clone(),
        body: metadata::visible(&pr.body),
        metadata: metadata::decode(&pr.body),
        labels: pr.labels.clone(),
        requested_reviewers: pr.requested_reviewers.clone(),
        requested_teams: pr.requested_teams.clone(),
        assignees: pr.assignees.clone(),
        auto_merge: pr.auto_merge,
    }
}

struct Ctx<'a, F: Forge> {
    forge: &'a Counted<'a, F>,
    git: &'a dyn GitRepos,
    options: &'a RunOptions,
    prefix: &'a str,
    pushes: AtomicU64,
    /// When this cycle started, before any comment was listed: what the ledgers it writes say
    /// was seen (`seen_at`), the lower bound of the next cycle's comment listing.
    started: DateTime<Utc>,
    /// Repositories (by URL) whose comments this cycle could not all handle (the listing failed,
    /// a ledger write failed, a PR's Application is not managed this cycle): their ledgers keep
    /// the `seen_at` they had, so the next listing starts no later than before.
    held_cursor: std::sync::Mutex<HashMap<String, Option<DateTime<Utc>>>>,
}

/// What applying a decision came to.
struct Applied {
    action: RunAction,
    pr: Option<PullRequest>,
    reason: Option<String>,
}

impl<F: Forge> Ctx<'_, F> {
    /// The `seen_at` a ledger of `repo` gets when written now: the cycle's start, unless this
    /// cycle left comments of that repository unhandled.
    fn seen_at(&self, repo: &RepoRef) -> Option<DateTime<Utc>> {
        match self.held_cursor.lock().unwrap().get(&repo.url) {
            Some(kept) => *kept,
            None => Some(self.started),
        }
    }

    fn hold_cursor(&self, repo: &RepoRef, kept: Option<DateTime<Utc>>) {
        self.held_cursor.lock().unwrap().insert(repo.url.clone(), kept);
    }

    /// The bot's PRs of a repository: listed once per run (`again` lists once more).
    async fn listing(
        &self,
        repos: &mut BTreeMap<String, RepoState>,
        url: &str,
        only_if_branches: bool,
    ) -> Result<Vec<PullRequest>, Error> {
        let state = repos.get_mut(url).ok_or_else(|| Error::new(ErrorKind::NotFound, format!("{url} was not looked at")))?;
        if state.listing.is_none() {
            // Without a branch of the bot's there is no PR to look after: skip the call.
            let has_branches =
                state.heads.as_ref().map(|h| h.branches.keys().any(|b| b.starts_with(self.prefix))).unwrap_or(true);
            if only_if_branches && !has_branches {
                return Ok(Vec::new());
            }
            let listed = self.forge.list_pull_requests(&state.repo, self.prefix).await.map_err(Error::from);
            state.listing = Some(listed);
        }
        state.listing.clone().unwrap_or_else(|| Ok(Vec::new()))
    }

    /// `status`: what git, the registries and the forge say about one Application; no writes.
    fn status_of(&self, work: &AppWork, repos: &BTreeMap<String, RepoState>) -> RunAppReport {
        let report = work.report.clone();
        let listing = work.repo_url.as_ref().and_then(|u| repos.get(u)).and_then(|s| s.listing.as_ref()?.as_ref().ok());
        let open = listing.and_then(|l| l.iter().find(|p| p.state == PrState::Open && p.head == work.branch));
        let (action, reason, errors) = match &work.desired {
            Desired::Unknown { error } => (RunAction::Error, None, vec![error.clone()]),
            Desired::Held { reason } | Desired::AllHeld { reason } => (RunAction::Held, Some(reason.clone()), vec![]),
            _ => (RunAction::Unchanged, None, vec![]),
        };
        RunAppReport {
            namespace: work.id.namespace.clone(),
            name: work.id.name.clone(),
            action,
            pr: open.map(|p| p.number),
            url: open.map(|p| p.url.clone()),
            repo: work.repo_url.clone(),
            branch: Some(work.branch.clone()),
            base: open.map(|p| p.base.clone()).or_else(|| work.bases.values().next().cloned()),
            reason,
            images: report.as_ref().map(|r| r.images.clone()).unwrap_or_default(),
            changes: vec![],
            errors,
        }
    }

    async fn handle(&self, work: &mut AppWork, repos: &mut BTreeMap<String, RepoState>) -> RunAppReport {
        let report = work.report.clone();
        let mut out = RunAppReport {
            namespace: work.id.namespace.clone(),
            name: work.id.name.clone(),
            action: RunAction::Unchanged,
            pr: None,
            url: None,
            repo: work.repo_url.clone(),
            branch: Some(work.branch.clone()),
            base: None,
            reason: None,
            images: report.as_ref().map(|r| r.images.clone()).unwrap_or_default(),
            changes: report.as_ref().map(|r| r.changes.clone()).unwrap_or_default(),
            errors: Vec::new(),
        };
        if let Desired::Propose(p) = &work.desired {
            out.base = Some(p.base_branch.clone());
        }
        if let Desired::Unknown { error } = &work.desired {
            out.action = RunAction::Error;
            out.errors.push(error.clone());
            return out;
        }
        if let Desired::Held { reason } = &work.desired {
            out.action = RunAction::Held;
            out.reason = Some(reason.clone());
            return out;
        }
        let Some(url) = work.repo_url.clone() else {
            out.action = RunAction::Skipped;
            out.reason = Some("no git source to propose in".into());
            return out;
        };
        let proposing = matches!(work.desired, Desired::Propose(_));
        let listing = match self.listing(repos, &url, !proposing).await {
            Ok(l) => l,
            Err(e) => {
                out.action = RunAction::Error;
                out.errors.push(e);
                return out;
            }
        };
        let open_prs: Vec<&PullRequest> =
            listing.iter().filter(|p| p.state == PrState::Open && p.head == work.branch).collect();
        let state = &repos[&url];
        let head = state.heads.as_ref().ok().and_then(|h| h.branches.get(&work.branch).cloned());
        let holds = Holds {
            recreate: open_prs
                .first()
                .and_then(|p| metadata::decode::<PrMetadata>(&p.body))
                .is_some_and(|m| m.ledger.recreate),
            // The branch's newest PR was closed without merging and the branch is still there.
            reopen: listing
                .iter()
                .filter(|p| p.head == work.branch)
                .max_by_key(|p| p.number)
                .filter(|p| p.state == PrState::Closed && head.is_some())
                .map(|p| p.number),
        };
        match self.decide_and_apply(state, &url, work, open_prs, head, holds).await {
            Ok(applied) => {
                out.action = applied.action;
                out.reason = applied.reason;
                if let Some(pr) = applied.pr {
                    out.pr = Some(pr.number);
                    out.url = Some(pr.url.clone());
                    out.base = Some(pr.base.clone());
                }
            }
            Err((pr, e)) => {
                out.action = RunAction::Error;
                out.pr = pr.as_ref().map(|p| p.number);
                out.url = pr.map(|p| p.url);
                out.errors.push(e.context(format!("Application {}", work.id)));
            }
        }
        out
    }

    async fn decide_and_apply(
        &self,
        state: &RepoState,
        url: &str,
        work: &AppWork,
        open_prs: Vec<&PullRequest>,
        head: Option<String>,
        holds: Holds,
    ) -> Result<Applied, (Option<PullRequest>, Error)> {
        let existing_prs: Vec<ExistingPr> = open_prs.iter().map(|p| existing(p)).collect();
        let first_pr = open_prs.first().map(|p| (*p).clone());
        let fail = |e: Error| (first_pr.clone(), e);
        let base_commit = match &work.desired {
            Desired::Propose(p) => Some(p.base_commit.clone()),
            _ => {
                let base = open_prs.first().map(|p| p.base.clone()).or_else(|| work.bases.get(url).cloned());
                base.and_then(|b| state.heads.as_ref().ok().and_then(|h| h.branches.get(&b).cloned()))
            }
        };
        let mut branch = head.clone().map(|head| BranchState { head, commits: None, head_matches_desired: None });
        if let (Some(b), Some(base)) = (branch.as_mut(), base_commit.as_ref())
            && planner::wants_branch_commits(&work.desired, &existing_prs, Some(&b.head))
        {
            let commits = self
                .git
                .branch_commits(url, &b.head, base, Some(&state.target))
                .await
                .map_err(|e| fail(e.into()))?;
            let commits: Vec<BranchCommit> = commits
                .into_iter()
                .map(|c| BranchCommit {
                    sha: c.sha,
                    parents: c.parents,
                    author_email: c.author_email,
                    committer_email: c.committer_email,
                })
                .collect();
            if let Desired::Propose(p) = &work.desired
                && planner::wants_tree_check(&commits, &self.options.identity.email)
            {
                b.head_matches_desired = Some(
                    self.git
                        .commit_tree_equals(url, &b.head, &p.base_commit, &work.files)
                        .await
                        .map_err(|e| fail(e.into()))?,
                );
            }
            b.commits = Some(commits);
        }
        let mut input = Input {
            desired: work.desired.clone(),
            open_prs: existing_prs,
            branch,
            holds,
            bot_email: self.options.identity.email.clone(),
            foreign_comment_posted: None,
        };
        if planner::wants_comments(&input)
            && let Some(pr) = &first_pr
        {
            let comments = self.forge.list_comments(&state.repo, pr.number).await.map_err(|e| fail(e.into()))?;
            input.foreign_comment_posted = Some(comments.iter().any(|c| c.body.contains(planner::FOREIGN_COMMIT_MARKER)));
        }
        let decision = planner::decide(&input);
        self.apply(state, url, work, &input, decision, first_pr).await
    }

    // The error carries the pull request the report links to; one per Application per cycle,
    // so its size does not matter.
    #[allow(clippy::result_large_err)]
    async fn apply(
        &self,
        state: &RepoState,
        url: &str,
        work: &AppWork,
        input: &Input,
        decision: Decision,
        pr: Option<PullRequest>,
    ) -> Result<Applied, (Option<PullRequest>, Error)> {
        let repo = &state.repo;
        let duplicates = (!decision.duplicates.is_empty()).then(|| {
            format!(
                "other open pull requests use the branch {}: {} (left alone)",
                work.branch,
                decision.duplicates.iter().map(|n| crate::domain::pr_ref(*n, pr.as_ref().map_or("", |p| p.url.as_str()))).collect::<Vec<_>>().join(", ")
            )
        });
        let done = |action, pr, reason: Option<String>| Ok(Applied { action, pr, reason: reason.or(duplicates.clone()) });
        match decision.action {
            Action::Noop => {
                if let Desired::AllHeld { reason } = &input.desired {
                    return done(RunAction::Held, pr, Some(reason.clone()));
                }
                let Some(pr) = pr else { return done(RunAction::Unchanged, None, None) };
                if !matches!(input.desired, Desired::Propose(_)) {
                    return done(RunAction::Unchanged, Some(pr), None);
                }
                let changed = !decision.fix_ups.is_empty();
                self.fix_ups(repo, pr.number, &decision.fix_ups).await.map_err(|e| (Some(pr.clone()), e))?;
                done(if changed { RunAction::Updated } else { RunAction::Unchanged }, Some(pr), None)
            }
            Action::Hold { reason } => done(RunAction::Held, pr, Some(reason)),
            Action::Skip { reason } => Err((pr, match &input.desired {
                Desired::Unknown { error } => error.clone(),
                _ => Error::input(reason),
            })),
            Action::ForeignCommit { number, comment } => {
                if comment && let Some(number) = number {
                    let foreign = input
                        .branch
                        .as_ref()
                        .and_then(|b| b.commits.as_ref())
                        .and_then(|cs| cs.iter().find(|c| !c.committer_email.eq_ignore_ascii_case(&input.bot_email)))
                        .map(|c| templates::CommitInfo { sha: c.sha.clone(), author: Some(c.author_email.clone()) })
                        .unwrap_or(templates::CommitInfo { sha: String::new(), author: None });
                    let base = pr.as_ref().map(|p| p.base.clone()).unwrap_or_default();
                    let body = self
                        .comment(repo, work, templates::Comment::ForeignCommit { base, branch: work.branch.clone(), commit: foreign })
                        .map_err(|e| (pr.clone(), e))?;
                    let body = format!("{}\n{}\n", body.trim_end(), planner::FOREIGN_COMMIT_MARKER);
                    self.forge.create_comment(repo, number, &body).await.map_err(|e| (pr.clone(), e.into()))?;
                }
                done(RunAction::Skipped, pr, Some(format!("someone else pushed to {}: the bot leaves it alone", work.branch)))
            }
            Action::Close { number, reason, delete_branch } => {
                let obsolete = match reason {
                    CloseReason::UpToDate => Some(templates::ObsoleteReason::BaseHasVersions),
                    CloseReason::Unmanaged => Some(templates::ObsoleteReason::AnnotationsRemoved),
                    // The command's acknowledgement (or the run report) says why.
                    CloseReason::Held => None,
                };
                let closed = match (number, pr.clone()) {
                    (Some(number), Some(pr)) => Some(self.close_pr(repo, work, &pr, number, obsolete).await.map_err(|e| (Some(pr.clone()), e))?),
                    _ => None,
                };
                if delete_branch {
                    self.forge.delete_branch(repo, &work.branch).await.map_err(|e| (closed.clone(), e.into()))?;
                }
                if closed.is_none() {
                    return done(RunAction::Unchanged, None, Some(format!("deleted the leftover branch {}", work.branch)));
                }
                let why = match &input.desired {
                    Desired::AllHeld { reason } => reason.clone(),
                    _ => reason.text().to_string(),
                };
                done(RunAction::Closed, closed, Some(why))
            }
            Action::Open { push, reopen } => {
                let Desired::Propose(p) = &input.desired else { return Err((pr, Error::new(ErrorKind::Conflict, "nothing to open"))) };
                let head = input.branch.as_ref().map(|b| b.head.clone());
                if let Some(number) = reopen {
                    match self.reopen(state, url, work, p, number, push.clone(), head.clone()).await {
                        Ok(Some(reopened)) => {
                            self.fix_ups(repo, number, &decision.fix_ups).await.map_err(|e| (Some(reopened.clone()), e))?;
                            return done(RunAction::Reopened, Some(reopened), None);
                        }
                        Ok(None) => {}
                        Err(e) => return Err((None, e)),
                    }
                }
                let commit = self.push(state, url, p, &work.files, push, head).await.map_err(|e| (None, e))?;
                let meta = metadata(work, p, &commit, &p.base_commit, Ledger::default(), self.seen_at(&state.repo));
                let new = NewPullRequest {
                    title: p.title.clone(),
                    body: metadata::compose(&p.body, &meta),
                    head: p.branch.clone(),
                    base: p.base_branch.clone(),
                    draft: p.settings.draft,
                };
                let opened = match self.forge.create_pull_request(repo, &new).await {
                    Ok(pr) => pr,
                    Err(e) if e.kind == ForgeErrorKind::Conflict => {
                        // An earlier, interrupted call did create it: list again and adopt it.
                        let again = self.forge.list_pull_requests(repo, self.prefix).await.map_err(|e| (None, e.into()))?;
                        let found = again.into_iter().find(|x| x.state == PrState::Open && x.head == p.branch);
                        let Some(found) = found else { return Err((None, e.into())) };
                        let update = PrUpdate { title: Some(new.title.clone()), body: Some(new.body.clone()), state: None };
                        self.forge.update_pull_request(repo, found.number, &update).await.map_err(|e| (Some(found.clone()), e.into()))?
                    }
                    Err(e) => return Err((None, e.into())),
                };
                self.fix_ups(repo, opened.number, &decision.fix_ups).await.map_err(|e| (Some(opened.clone()), e))?;
                done(RunAction::Opened, Some(opened), None)
            }
            Action::Update { number, push, edit_title_body } => {
                let Desired::Propose(p) = &input.desired else { return Err((pr, Error::new(ErrorKind::Conflict, "nothing to update"))) };
                let head = input.branch.as_ref().map(|b| b.head.clone());
                let pushed = push.is_some();
                let commit = self.push(state, url, p, &work.files, push, head.clone()).await.map_err(|e| (pr.clone(), e))?;
                let recorded = input.open_prs.first().and_then(|x| x.metadata.as_ref());
                let base_commit = match recorded {
                    Some(m) if !pushed && m.commit == commit => m.base_commit.clone(),
                    _ => p.base_commit.clone(),
                };
                let mut updated = pr.clone();
                if edit_title_body || pushed {
                    let ledger = recorded.map(|m| m.ledger.clone()).unwrap_or_default();
                    let mut meta = metadata(work, p, &commit, &base_commit, ledger, self.seen_at(&state.repo));
                    if pushed {
                        meta.ledger.recreate = false;
                    }
                    let update =
                        PrUpdate { title: Some(p.title.clone()), body: Some(metadata::compose(&p.body, &meta)), state: None };
                    updated = Some(
                        self.forge.update_pull_request(repo, number, &update).await.map_err(|e| (pr.clone(), e.into()))?,
                    );
                }
                self.fix_ups(repo, number, &decision.fix_ups).await.map_err(|e| (updated.clone(), e))?;
                done(RunAction::Updated, updated, None)
            }
        }
    }

    /// Builds and pushes the bot's commit when `push` says so; returns the commit the branch
    /// holds afterwards.
    async fn push(
        &self,
        state: &RepoState,
        url: &str,
        p: &Proposal,
        files: &[(String, Vec<u8>)],
        push: Option<Push>,
        head: Option<String>,
    ) -> Result<String, Error> {
        let Some(push) = push else {
            return head.ok_or_else(|| Error::new(ErrorKind::Conflict, "the branch to adopt is gone"));
        };
        let lease = match push {
            Push::Create => Lease::MustNotExist,
            Push::Replace { expect } => Lease::Expect(expect),
        };
        let commit = self
            .git
            .commit_on_base(url, &p.base_commit, files, &p.commit_message, &self.options.identity)
            .await?;
        // Asked right before the push: a GitHub App token may need refreshing meanwhile.
        let target = self.forge.authorized_push_target(&state.repo).await?;
        self.git.push_branch(url, &target, &p.branch, &commit, &lease).await.map_err(|e| match e {
            PushError::LeaseFailed { .. } => Error::new(
                ErrorKind::Conflict,
                format!("{e} (someone pushed to the branch meanwhile; the next run looks again)"),
            ),
            e => e.into(),
        })?;
        self.pushes.fetch_add(1, Ordering::Relaxed);
        Ok(commit)
    }

    async fn fix_ups(&self, repo: &RepoRef, number: u64, f: &FixUps) -> Result<(), Error> {
        if !f.labels.is_empty() {
            self.forge.add_labels(repo, number, &f.labels).await?;
        }
        if !f.assignees.is_empty() {
            self.forge.add_assignees(repo, number, &f.assignees).await?;
        }
        if !f.reviewers.is_empty() || !f.team_reviewers.is_empty() {
            let reviewers = Reviewer::users_and_teams(&f.reviewers, &f.team_reviewers);
            self.forge.request_reviewers(repo, number, &reviewers).await?;
        }
        if let Some(method) = f.auto_merge {
            self.forge.enable_auto_merge(repo, number, method).await?;
        }
        Ok(())
    }

    fn comment(&self, repo: &RepoRef, work: &AppWork, comment: templates::Comment) -> Result<String, Error> {
        let ctx = templates::CommentContext {
            app: work.info.clone(),
            bot: templates::BotInfo { name: self.options.identity.name.clone() },
            forge: forge_info(self.forge.words(repo)),
            comment,
        };
        self.options.templates.comment(&ctx).map_err(Error::from)
    }

    /// Comments why (when there is something to say), then closes, marking the PR as closed by
    /// the bot: such a close ignores nothing.
    async fn close_pr(
        &self,
        repo: &RepoRef,
        work: &AppWork,
        pr: &PullRequest,
        number: u64,
        reason: Option<templates::ObsoleteReason>,
    ) -> Result<PullRequest, Error> {
        let meta: Option<PrMetadata> = metadata::decode(&pr.body);
        if let Some(reason) = reason {
            let images = meta.as_ref().map(|m| template_images(&m.images)).unwrap_or_default();
            let body = self.comment(
                repo,
                work,
                templates::Comment::ClosedObsolete { reason, base: pr.base.clone(), branch: pr.head.clone(), images },
            )?;
            self.forge.create_comment(repo, number, &body).await.map_err(Error::from)?;
        }
        let body = meta.map(|mut m| {
            m.ledger.closed_by_bot = Some(if reason.is_some() { "obsolete" } else { "held" }.to_string());
            m.ledger.seen_at = self.seen_at(repo);
            metadata::compose(&metadata::visible(&pr.body), &m)
        });
        let update = PrUpdate { title: None, body, state: Some(PrState::Closed) };
        self.forge.update_pull_request(repo, number, &update).await.map_err(Error::from)
    }

    /// Reopens the closed PR `number` with a new proposal: reopened first (a forge may refuse
    /// to reopen a PR whose branch was force-pushed while it was closed), then pushed, then its
    /// title and body rewritten. `Ok(None)` when the forge refuses to reopen: a new PR is opened.
    #[allow(clippy::too_many_arguments)]
    async fn reopen(
        &self,
        state: &RepoState,
        url: &str,
        work: &AppWork,
        p: &Proposal,
        number: u64,
        push: Option<Push>,
        head: Option<String>,
    ) -> Result<Option<PullRequest>, Error> {
        let repo = &state.repo;
        let closed = state.listing.as_ref().and_then(|l| l.as_ref().ok()).and_then(|l| l.iter().find(|x| x.number == number));
        let mut ledger = closed
            .and_then(|c| metadata::decode::<PrMetadata>(&c.body))
            .map(|m| m.ledger)
            .unwrap_or_default();
        let reopen = PrUpdate { title: None, body: None, state: Some(PrState::Open) };
        if let Err(e) = self.forge.update_pull_request(repo, number, &reopen).await {
            tracing::info!("cannot reopen #{number} ({e}); opening a new pull request");
            return Ok(None);
        }
        let commit = self.push(state, url, p, &work.files, push, head).await?;
        ledger.closed_by_bot = None;
        ledger.recreate = false;
        ledger.notices.retain(|n| n != "closed-ignored");
        let meta = metadata(work, p, &commit, &p.base_commit, ledger, self.seen_at(&state.repo));
        let update = PrUpdate { title: Some(p.title.clone()), body: Some(metadata::compose(&p.body, &meta)), state: None };
        self.forge.update_pull_request(repo, number, &update).await.map(Some).map_err(Error::from)
    }

    /// An open bot PR whose Application lost its annotations or is gone.
    async fn close_orphan(
        &self,
        repos: &mut BTreeMap<String, RepoState>,
        url: &str,
        pr: &PullRequest,
        meta: &PrMetadata,
        reason: templates::ObsoleteReason,
    ) -> RunAppReport {
        let (namespace, name) = meta.application.split_once('/').unwrap_or(("", &meta.application));
        let id = AppId { namespace: namespace.into(), name: name.into() };
        let mut out = RunAppReport {
            namespace: id.namespace.clone(),
            name: id.name.clone(),
            action: RunAction::Closed,
            pr: Some(pr.number),
            url: Some(pr.url.clone()),
            repo: Some(url.to_string()),
            branch: Some(pr.head.clone()),
            base: Some(pr.base.clone()),
            reason: Some(CloseReason::Unmanaged.text().to_string()),
            images: vec![],
            changes: vec![],
            errors: vec![],
        };
        let state = &repos[url];
        let work = AppWork {
            info: templates::AppInfo::new(&id.namespace, &id.name),
            id,
            settings: Ok(Default::default()),
            bases: BTreeMap::new(),
            held: None,
            pin_error: None,
            branch: pr.head.clone(),
            report: None,
            desired: Desired::Unmanaged,
            repo_url: Some(url.to_string()),
            files: vec![],
            related: vec![],
        };
        let head = state.heads.as_ref().ok().and_then(|h| h.branches.get(&pr.head).cloned());
        match self.decide_and_apply(state, url, &work, vec![pr], head, Holds::default()).await {
            Ok(applied) => {
                out.action = applied.action;
                if reason == templates::ObsoleteReason::ApplicationRemoved {
                    out.reason = Some("the Application is gone".into());
                }
            }
            Err((_, e)) => {
                out.action = RunAction::Error;
                out.errors.push(e);
            }
        }
        out
    }
}

fn template_images(images: &[planner::ImageChange]) -> Vec<templates::ImageChange> {
    images
        .iter()
        .filter_map(|i| {
            let name = ImageName::parse(&i.image).ok()?;
            let change = serde_json::from_value(serde_json::Value::String(i.change.clone())).ok()?;
            Some(templates::ImageChange::new(&i.alias, &name, i.from.clone(), i.to.clone(), change))
        })
        .collect()
}

/// The metadata block for a PR the bot writes now; `ledger` is carried over from the PR's
/// previous block (holds, comment cursor, notices).
fn metadata(work: &AppWork, p: &Proposal, commit: &str, base_commit: &str, mut ledger: Ledger, seen: Option<DateTime<Utc>>) -> PrMetadata {
    ledger.seen_at = seen;
    PrMetadata {
        version: 1,
        application: work.id.to_string(),
        images: p.images.clone(),
        fingerprint: p.fingerprint.clone(),
        commit: commit.to_string(),
        base_commit: base_commit.to_string(),
        ledger,
    }
}

mod comment_commands;

#[cfg(test)]
mod tests;
