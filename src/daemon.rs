//! `run` without `--once`: the update cycle ([`run_once`]) every `--interval`, and sooner when a
//! webhook delivery says a pull request changed; the HTTP server (`src/server/`: webhooks,
//! `/healthz`, `/metrics`) beside it. When the next cycle starts and how a burst of deliveries
//! becomes one cycle is decided by the pure [`Schedule`]; the async loop here only waits, runs,
//! counts and stops.
//!
//! Never two cycles at once: one loop owns the cycle future. A cycle's failures (and even a panic)
//! are logged and counted; the daemon goes on. SIGTERM or SIGINT: the server stops accepting, the
//! running cycle may finish within `--shutdown-timeout`, then the process exits.

use std::collections::BTreeSet;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{mpsc, oneshot};

use crate::engine::{Drivers, RunOptions, RunReport, run_once};
use crate::ports::Forge;
use crate::server::{Metrics, SecretError, ServerArgs, ServerState, WebhookEvent};

/// A webhook delivery waits this long for more before its cycle starts, so that a burst (a merge
/// sends `pull_request` and often comments around it) becomes one cycle ...
pub const SETTLE: Duration = Duration::from_secs(1);
/// ... but never longer than this after the first delivery, however many keep coming.
pub const MAX_SETTLE: Duration = Duration::from_secs(5);
/// Deliveries the server may queue while the loop is busy starting a cycle. The loop drains the
/// queue while cycles run, so it fills only under a flood; the server then answers 503 and the
/// next cycle finds the change anyway.
const QUEUE: usize = 256;

/// `run`'s options for the daemon (ignored with `--once`).
#[derive(Debug, Clone, clap::Args)]
pub struct DaemonArgs {
    /// Without --once: time between two cycles (`30s`, `2m`, `1h`, `1h30m`; at least 1s). A
    /// webhook delivery starts a cycle sooner.
    #[arg(long, env = "ARGOCD_IMAGE_PR_INTERVAL", default_value = "2m", value_parser = parse_interval)]
    pub interval: Duration,
    /// Without --once: on SIGTERM/SIGINT, how long the running cycle may take to finish before
    /// the bot exits anyway (every step of a cycle is safe to cut short: the next run finishes it).
    #[arg(long, env = "ARGOCD_IMAGE_PR_SHUTDOWN_TIMEOUT", default_value = "60s", value_parser = parse_timeout)]
    pub shutdown_timeout: Duration,
    /// Without --once: `/healthz` answers 503 when no cycle has finished within this many
    /// intervals (a cycle stuck on the network; keep --git-timeout below that).
    #[arg(long, env = "ARGOCD_IMAGE_PR_UNHEALTHY_CYCLES", default_value = "3")]
    pub unhealthy_cycles: u32,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// `--interval`: a Go-style duration (as `credsexpire` in registries.conf), at least a second.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = crate::registry::parse_go_duration(s)?;
    if d < Duration::from_secs(1) {
        return Err(format!("{s:?} is too short: the interval is at least 1s"));
    }
    Ok(d)
}

/// `--shutdown-timeout`: a Go-style duration; `0s` exits without waiting for the cycle.
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    crate::registry::parse_go_duration(s)
}

/// How the daemon ended, when it ended on a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// No cycle was running, or the running one finished in time.
    Clean,
    /// The running cycle was cut short (`--shutdown-timeout`, or a second signal).
    CycleAbandoned,
}

/// Why the daemon could not start, or stopped without being asked to.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("cannot listen on {addr}: {error}")]
    Listen { addr: std::net::SocketAddr, error: std::io::Error },
    #[error("cannot install the signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("the HTTP server stopped: {0}")]
    Server(String),
}

impl DaemonError {
    /// A configuration or environment problem found at startup (exit status 2), as opposed to a
    /// failure while running.
    pub fn at_startup(&self) -> bool {
        !matches!(self, DaemonError::Server(_))
    }
}

/// What starts a cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// The first cycle, or `--interval` passed since the last one started.
    Interval,
    /// Webhook deliveries, coalesced.
    Webhook(Burst),
}

impl Trigger {
    /// The metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Trigger::Interval => "interval",
            Trigger::Webhook(_) => "webhook",
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trigger::Interval => f.write_str("interval"),
            Trigger::Webhook(b) => {
                let repos: Vec<&str> = b.repos.iter().map(String::as_str).collect();
                write!(f, "{} webhook deliveries ({})", b.deliveries, repos.join(", "))
            }
        }
    }
}

/// Deliveries waiting for their cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Burst {
    pub deliveries: usize,
    /// `owner/name` of the repositories they came from (for the log: a cycle covers everything).
    pub repos: BTreeSet<String>,
    first: Instant,
    last: Instant,
}

impl Burst {
    /// When the burst's cycle may start: [`SETTLE`] after the last delivery, at most
    /// [`MAX_SETTLE`] after the first.
    fn due(&self) -> Instant {
        (self.last + SETTLE).min(self.first + MAX_SETTLE)
    }
}

/// When cycles run. Pure: the caller passes the time.
///
/// - The first cycle is due at once, then one every `interval` after the previous one started
///   (a cycle that takes longer than the interval is followed by the next one right away).
/// - Deliveries are collected into one [`Burst`]; its cycle starts when the burst settles.
///   Deliveries during a running cycle start one more cycle right after it (what they announced
///   may have happened after the running cycle read it).
/// - A webhook cycle is a full cycle: the interval counts again from its start.
#[derive(Debug)]
pub struct Schedule {
    interval: Duration,
    running: bool,
    next_interval: Instant,
    burst: Option<Burst>,
}

impl Schedule {
    pub fn new(now: Instant, interval: Duration) -> Schedule {
        Schedule { interval, running: false, next_interval: now, burst: None }
    }

    /// A delivery about a pull request of repository `repo` (`owner/name`) arrived. Which PR
    /// does not matter: the cycle lists every new comment of the repository.
    pub fn delivery(&mut self, now: Instant, repo: &str) {
        let burst = self.burst.get_or_insert_with(|| Burst {
            deliveries: 0,
            repos: BTreeSet::new(),
            first: now,
            last: now,
        });
        burst.deliveries += 1;
        burst.last = now;
        burst.repos.insert(repo.to_string());
    }

    /// Starts a cycle if one is due at `now` and none is running.
    pub fn start(&mut self, now: Instant) -> Option<Trigger> {
        if self.running {
            return None;
        }
        let trigger = if self.burst.as_ref().is_some_and(|b| b.due() <= now) {
            Trigger::Webhook(self.burst.take()?)
        } else if self.next_interval <= now {
            Trigger::Interval
        } else {
            return None;
        };
        self.running = true;
        self.next_interval = now + self.interval;
        Some(trigger)
    }

    /// The running cycle ended.
    pub fn finished(&mut self) {
        self.running = false;
    }

    pub fn running(&self) -> bool {
        self.running
    }

    /// When [`Schedule::start`] should be asked again; `None` while a cycle runs (its end is the
    /// next thing to wait for).
    pub fn wake_at(&self) -> Option<Instant> {
        if self.running {
            return None;
        }
        Some(self.burst.as_ref().map_or(self.next_interval, |b| b.due().min(self.next_interval)))
    }
}

/// Serves and cycles until SIGTERM or SIGINT. Startup problems (secret, address, signals) are
/// returned before the first cycle.
pub async fn run<F: Forge>(forge: &F, drivers: &Drivers, options: RunOptions, args: &DaemonArgs) -> Result<Stopped, DaemonError> {
    let secret = args.server.webhook_secret()?;
    let mut signals = Signals::install().map_err(DaemonError::Signals)?;
    let listener = TcpListener::bind(args.server.listen)
        .await
        .map_err(|error| DaemonError::Listen { addr: args.server.listen, error })?;
    let metrics = Arc::new(Metrics::new());
    let (events_tx, mut events) = mpsc::channel::<WebhookEvent>(QUEUE);
    let webhooks = secret.is_some();
    let state = ServerState::new(secret, events_tx, metrics.clone()).with_health(args.interval * args.unhealthy_cycles.max(1));
    let (stop_server, server_stopped) = oneshot::channel::<()>();
    let mut server = tokio::spawn(crate::server::serve_on(listener, state, async {
        let _ = server_stopped.await;
    }));
    tracing::info!(
        interval = ?args.interval,
        listen = %args.server.listen,
        webhooks,
        "daemon started: a cycle every {}, now the first",
        humane(args.interval)
    );

    let mut schedule = Schedule::new(Instant::now(), args.interval);
    let mut cycle: Option<std::pin::Pin<Box<dyn Future<Output = ()> + '_>>> = None;
    let signal = loop {
        if cycle.is_none()
            && let Some(trigger) = schedule.start(Instant::now())
        {
            cycle = Some(Box::pin(run_cycle(forge, drivers, &options, &metrics, trigger)));
        }
        let wake = schedule.wake_at().map(tokio::time::Instant::from_std);
        tokio::select! {
            signal = signals.next() => break signal,
            Some(event) = events.recv() => {
                tracing::debug!(repo = %event.repo().full_name, pr = event.pr(), "webhook delivery queued for a cycle");
                schedule.delivery(Instant::now(), &event.repo().full_name);
            }
            () = async { cycle.as_mut().expect("checked by the guard").await }, if cycle.is_some() => {
                cycle = None;
                schedule.finished();
            }
            () = tokio::time::sleep_until(wake.unwrap_or_else(tokio::time::Instant::now)), if wake.is_some() => {}
            ended = &mut server => {
                let why = match ended {
                    Ok(Ok(())) => "it ended".to_string(),
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e.to_string(),
                };
                return Err(DaemonError::Server(why));
            }
        }
    };

    tracing::info!("{signal}: stopping (no new deliveries, no new cycles)");
    let _ = stop_server.send(());
    events.close();
    let stopped = match cycle.take() {
        None => Stopped::Clean,
        Some(running) => {
            tracing::info!("waiting up to {} for the running cycle", humane(args.shutdown_timeout));
            tokio::select! {
                () = running => Stopped::Clean,
                () = tokio::time::sleep(args.shutdown_timeout) => {
                    tracing::warn!("the running cycle did not finish within --shutdown-timeout {}: cut short; the next run finishes what it left", humane(args.shutdown_timeout));
                    Stopped::CycleAbandoned
                }
                second = signals.next() => {
                    tracing::warn!("{second} again: the running cycle is cut short; the next run finishes what it left");
                    Stopped::CycleAbandoned
                }
            }
        }
    };
    // In-flight requests are short (a signature check and a queue push); do not wait on a client
    // that keeps its connection open.
    if tokio::time::timeout(Duration::from_secs(5), &mut server).await.is_err() {
        server.abort();
    }
    tracing::info!("stopped");
    Ok(stopped)
}

/// One cycle: [`run_once`], its report logged and counted. Never fails: the daemon goes on.
async fn run_cycle<F: Forge>(forge: &F, drivers: &Drivers, options: &RunOptions, metrics: &Metrics, trigger: Trigger) {
    let started = Instant::now();
    tracing::info!("cycle starts ({trigger})");
    let outcome = AssertUnwindSafe(run_once(forge, drivers, options.clone())).catch_unwind().await;
    let elapsed = started.elapsed();
    match outcome {
        Ok(report) => {
            let errors = log_report(&report, elapsed);
            let all = report.errors.iter().map(|e| &e.error).chain(report.applications.iter().flat_map(|a| &a.errors));
            for e in all {
                metrics.error_cause(e.kind().label(), e.kind().transient());
            }
            metrics.registry_requests(&report.stats.plan.registry_requests_by_registry);
            for _ in 0..errors.locations {
                metrics.error("location");
            }
            for _ in 0..errors.applications {
                metrics.error("application");
            }
            metrics.cycle(trigger.label(), elapsed, errors.locations + errors.applications == 0);
        }
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".into());
            tracing::error!("cycle panicked after {elapsed:?}: {message}; the daemon goes on");
            metrics.error("panic");
            metrics.cycle(trigger.label(), elapsed, false);
        }
    }
}

struct ErrorCounts {
    locations: usize,
    applications: usize,
}

/// A line per cycle (info), one per change (info) and one per error (warn).
fn log_report(report: &RunReport, elapsed: Duration) -> ErrorCounts {
    let mut actions: std::collections::BTreeMap<String, usize> = Default::default();
    let mut applications = 0;
    for app in &report.applications {
        let action = serde_json::to_value(app.action).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        if !matches!(action.as_str(), "unchanged" | "skipped") {
            tracing::info!(
                "{}/{}: {action}{}{}",
                app.namespace,
                app.name,
                app.pr.map(|n| format!(" #{n}")).unwrap_or_default(),
                app.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
            );
        }
        for e in &app.errors {
            tracing::warn!(cause = e.kind().label(), transient = e.kind().transient(), "{}/{}: {e}", app.namespace, app.name);
        }
        if !app.errors.is_empty() {
            applications += 1;
        }
        *actions.entry(action).or_default() += 1;
    }
    for e in &report.errors {
        tracing::warn!(cause = e.error.kind().label(), transient = e.error.kind().transient(), "{}: {}", e.file, e.error);
    }
    let summary: Vec<String> = actions.iter().map(|(a, n)| format!("{n} {a}")).collect();
    tracing::info!(
        forge_calls = report.stats.forge_calls,
        forge_writes = report.stats.forge_writes,
        git_pushes = report.stats.git_pushes,
        "cycle done in {:.1}s: {} Applications{}, {} errors",
        elapsed.as_secs_f64(),
        report.applications.len(),
        if summary.is_empty() { String::new() } else { format!(" ({})", summary.join(", ")) },
        report.errors.len() + applications
    );
    ErrorCounts { locations: report.errors.len(), applications }
}

/// `2m`, `1h30m`, `45s` for logs.
fn humane(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, sec) = (s / 3600, s / 60 % 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out += &format!("{h}h");
    }
    if m > 0 {
        out += &format!("{m}m");
    }
    if sec > 0 || out.is_empty() {
        out += &format!("{sec}s");
    }
    out
}

/// SIGTERM (Kubernetes stopping the pod) and SIGINT (Ctrl-C), installed before anything else so
/// that an early signal is not lost.
struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        let cases = [
            ("30s", Ok(30)),
            ("2m", Ok(120)),
            ("1h", Ok(3600)),
            ("1h30m", Ok(5400)),
            ("1s", Ok(1)),
            ("500ms", Err("too short")),
            ("0", Err("too short")),
            ("0s", Err("too short")),
            ("2", Err("missing unit")),
            ("2d", Err("unknown unit")),
            ("", Err("empty")),
            ("soon", Err("expected a number")),
        ];
        for (s, want) in cases {
            match (parse_interval(s), want) {
                (Ok(d), Ok(secs)) => assert_eq!(d, Duration::from_secs(secs), "case {s:?}"),
                (Err(e), Err(part)) => assert!(e.contains(part), "case {s:?}: {e}"),
                (got, want) => panic!("case {s:?}: got {got:?}, want {want:?}"),
            }
        }
        assert_eq!(parse_timeout("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_timeout("90s"), Ok(Duration::from_secs(90)));
    }

    #[test]
    fn humane_durations() {
        for (secs, want) in [(0, "0s"), (45, "45s"), (120, "2m"), (5400, "1h30m"), (3661, "1h1m1s")] {
            assert_eq!(humane(Duration::from_secs(secs)), want, "case {secs}");
        }
    }

    const MIN: Duration = Duration::from_secs(60);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn webhook(trigger: Option<Trigger>) -> Burst {
        match trigger {
            Some(Trigger::Webhook(b)) => b,
            other => panic!("expected a webhook cycle, got {other:?}"),
        }
    }

    #[test]
    fn first_cycle_at_once_then_every_interval_from_the_start_of_the_last() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, 2 * MIN);
        assert_eq!(s.wake_at(), Some(t0));
        assert_eq!(s.start(t0), Some(Trigger::Interval));
        assert_eq!(s.wake_at(), None, "nothing to wait for but the running cycle");
        assert_eq!(s.start(t0 + 3 * MIN), None, "never two cycles at once");
        s.finished();
        // The cycle took 3 minutes, longer than the interval: the next one is due right away.
        assert_eq!(s.wake_at(), Some(t0 + 2 * MIN));
        assert_eq!(s.start(t0 + 3 * MIN), Some(Trigger::Interval));
        s.finished();
        assert_eq!(s.start(t0 + 4 * MIN), None);
        assert_eq!(s.wake_at(), Some(t0 + 5 * MIN));
        assert_eq!(s.start(t0 + 5 * MIN), Some(Trigger::Interval));
    }

    #[test]
    fn a_burst_of_deliveries_is_one_cycle_after_it_settles() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, 2 * MIN);
        s.start(t0);
        s.finished();
        let t = t0 + 10 * SETTLE;
        s.delivery(t, "org/gitops");
        s.delivery(t + ms(300), "Org/GitOps");
        s.delivery(t + ms(600), "org/other");
        assert_eq!(s.wake_at(), Some(t + ms(600) + SETTLE), "waits for the burst to settle");
        assert_eq!(s.start(t + ms(1000)), None, "still settling");
        let burst = webhook(s.start(t + ms(600) + SETTLE));
        assert_eq!(burst.deliveries, 3);
        assert_eq!(burst.repos.iter().map(String::as_str).collect::<Vec<_>>(), ["Org/GitOps", "org/gitops", "org/other"]);
        s.finished();
        assert_eq!(s.start(t + 3 * SETTLE), None, "the burst was used up");
        // The interval counts again from the webhook cycle's start.
        assert_eq!(s.wake_at(), Some(t + ms(600) + SETTLE + 2 * MIN));
    }

    #[test]
    fn a_steady_stream_of_deliveries_does_not_postpone_the_cycle_forever() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, 2 * MIN);
        s.start(t0);
        s.finished();
        let t = t0 + SETTLE;
        let mut started = None;
        for i in 0..100u64 {
            let now = t + ms(500 * i);
            if let Some(trigger) = s.start(now) {
                started = Some((now, trigger));
                break;
            }
            s.delivery(now, "org/gitops");
        }
        let (when, trigger) = started.expect("a cycle started");
        assert_eq!(when, t + MAX_SETTLE, "at most MAX_SETTLE after the first delivery");
        assert_eq!(webhook(Some(trigger)).deliveries, 10);
    }

    #[test]
    fn deliveries_during_a_cycle_start_one_more_right_after_it() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, 2 * MIN);
        assert_eq!(s.start(t0), Some(Trigger::Interval));
        for i in 0..5u64 {
            s.delivery(t0 + ms(1000 * i), "org/gitops");
        }
        assert_eq!(s.start(t0 + 10 * SETTLE), None, "not while the cycle runs");
        s.finished();
        let burst = webhook(s.start(t0 + 10 * SETTLE));
        assert_eq!(burst.deliveries, 5, "all of them, in one cycle");
        s.finished();
        assert_eq!(s.start(t0 + 11 * SETTLE), None, "and only one");
    }

    #[test]
    fn a_burst_due_with_the_interval_is_one_cycle() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, 2 * MIN);
        s.start(t0);
        s.finished();
        s.delivery(t0 + 2 * MIN - SETTLE, "org/gitops");
        assert!(matches!(s.start(t0 + 2 * MIN), Some(Trigger::Webhook(_))));
        s.finished();
        assert_eq!(s.start(t0 + 2 * MIN + SETTLE), None, "the interval cycle is the webhook cycle");
        assert!(!s.running());
    }
}
