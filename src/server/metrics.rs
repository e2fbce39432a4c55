//! Counters served at `/metrics` in the Prometheus text format (0.0.4). A handful of counters with
//! labels from fixed sets needs no metrics library: label values are `&'static str` chosen by the
//! code, never request data, so the series stay few.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Shared by the HTTP side and the engine loop (`Arc<Metrics>`).
#[derive(Debug, Default)]
pub struct Metrics {
    cycles: AtomicU64,
    deliveries: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    errors: Mutex<BTreeMap<&'static str, u64>>,
    /// Reported errors by cause (`network`, `auth`, ...) and whether the next cycle may succeed.
    causes: Mutex<BTreeMap<(&'static str, bool), u64>>,
    /// Registry requests by registry host (the registries the Applications name).
    registry_requests: Mutex<BTreeMap<String, u64>>,
    timing: Mutex<CycleTiming>,
}

/// What the daemon records about its cycles beyond their count.
#[derive(Debug, Default)]
struct CycleTiming {
    /// Cycles by what started them (`interval`, `webhook`).
    triggers: BTreeMap<&'static str, u64>,
    /// Cycles that reported at least one error (or panicked).
    failed: u64,
    seconds_sum: f64,
    /// The last finished cycle: (duration in seconds, end as Unix seconds, whether it was clean).
    last: Option<(f64, f64, bool)>,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// One update cycle finished (whatever its outcome).
    pub fn cycle_finished(&self) {
        self.cycles.fetch_add(1, Ordering::Relaxed);
    }

    /// One daemon cycle finished: what started it, how long it took, whether it was free of
    /// errors. Counts it in `argocd_image_pr_cycles_total` too.
    pub fn cycle(&self, trigger: &'static str, duration: std::time::Duration, clean: bool) {
        self.cycle_finished();
        let seconds = duration.as_secs_f64();
        let end = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let mut t = self.timing.lock().unwrap_or_else(|e| e.into_inner());
        *t.triggers.entry(trigger).or_default() += 1;
        if !clean {
            t.failed += 1;
        }
        t.seconds_sum += seconds;
        t.last = Some((seconds, end, clean));
    }

    /// How long ago the last daemon cycle ended; `None` before the first one.
    pub fn since_last_cycle(&self) -> Option<std::time::Duration> {
        let end = self.timing.lock().unwrap_or_else(|e| e.into_inner()).last.map(|(_, end, _)| end)?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        Some(std::time::Duration::from_secs_f64((now - end).max(0.0)))
    }

    /// One error of `kind` (a short fixed label such as `registry`, `git`, `forge`).
    pub fn error(&self, kind: &'static str) {
        *self.errors.lock().unwrap_or_else(|e| e.into_inner()).entry(kind).or_default() += 1;
    }

    /// One reported error of cause `cause` (an [`crate::error::ErrorKind`] label); `transient`
    /// when the next cycle may succeed without anyone changing anything.
    pub fn error_cause(&self, cause: &'static str, transient: bool) {
        *self.causes.lock().unwrap_or_else(|e| e.into_inner()).entry((cause, transient)).or_default() += 1;
    }

    /// A cycle's registry requests, by registry host.
    pub fn registry_requests(&self, by_registry: &BTreeMap<String, u64>) {
        let mut all = self.registry_requests.lock().unwrap_or_else(|e| e.into_inner());
        for (host, n) in by_registry {
            *all.entry(host.clone()).or_default() += n;
        }
    }

    /// One webhook delivery of `event` (GitHub: `issue_comment`, `pull_request`, `ping`; GitLab:
    /// `note`, `merge_request`; `other`, `none`) ended in
    /// `result` (`queued`, `ignored`, `unauthorized`, ...).
    pub fn delivery(&self, event: &'static str, result: &'static str) {
        *self.deliveries.lock().unwrap_or_else(|e| e.into_inner()).entry((event, result)).or_default() += 1;
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        header(&mut out, "argocd_image_pr_cycles_total", "Update cycles finished.");
        let _ = writeln!(out, "argocd_image_pr_cycles_total {}", self.cycles.load(Ordering::Relaxed));
        header(&mut out, "argocd_image_pr_webhook_deliveries_total", "Webhook deliveries by event and result.");
        for ((event, result), n) in self.deliveries.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(
                out,
                "argocd_image_pr_webhook_deliveries_total{{event=\"{}\",result=\"{}\"}} {n}",
                escape(event),
                escape(result)
            );
        }
        header(&mut out, "argocd_image_pr_errors_total", "Errors by kind.");
        for (kind, n) in self.errors.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "argocd_image_pr_errors_total{{kind=\"{}\"}} {n}", escape(kind));
        }
        header(
            &mut out,
            "argocd_image_pr_error_causes_total",
            "Reported errors by cause, and whether the next cycle may succeed by itself.",
        );
        for ((cause, transient), n) in self.causes.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "argocd_image_pr_error_causes_total{{cause=\"{}\",transient=\"{transient}\"}} {n}", escape(cause));
        }
        let t = self.timing.lock().unwrap_or_else(|e| e.into_inner());
        header(&mut out, "argocd_image_pr_registry_requests_total", "Registry requests by registry host.");
        for (host, n) in self.registry_requests.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "argocd_image_pr_registry_requests_total{{registry=\"{}\"}} {n}", escape(host));
        }
        header(&mut out, "argocd_image_pr_cycle_triggers_total", "Daemon cycles by what started them.");
        for (trigger, n) in &t.triggers {
            let _ = writeln!(out, "argocd_image_pr_cycle_triggers_total{{trigger=\"{}\"}} {n}", escape(trigger));
        }
        header(&mut out, "argocd_image_pr_cycles_failed_total", "Daemon cycles that reported at least one error.");
        let _ = writeln!(out, "argocd_image_pr_cycles_failed_total {}", t.failed);
        typed_header(&mut out, "argocd_image_pr_cycle_duration_seconds", "Duration of daemon cycles.", "summary");
        let count: u64 = t.triggers.values().sum();
        let _ = writeln!(out, "argocd_image_pr_cycle_duration_seconds_sum {}", t.seconds_sum);
        let _ = writeln!(out, "argocd_image_pr_cycle_duration_seconds_count {count}");
        if let Some((seconds, end, clean)) = t.last {
            typed_header(&mut out, "argocd_image_pr_last_cycle_duration_seconds", "Duration of the last daemon cycle.", "gauge");
            let _ = writeln!(out, "argocd_image_pr_last_cycle_duration_seconds {seconds}");
            typed_header(
                &mut out,
                "argocd_image_pr_last_cycle_end_timestamp_seconds",
                "When the last daemon cycle ended (Unix time).",
                "gauge",
            );
            let _ = writeln!(out, "argocd_image_pr_last_cycle_end_timestamp_seconds {end}");
            typed_header(&mut out, "argocd_image_pr_last_cycle_success", "1 if the last daemon cycle had no error.", "gauge");
            let _ = writeln!(out, "argocd_image_pr_last_cycle_success {}", u8::from(clean));
        }
        out
    }
}

fn header(out: &mut String, name: &str, help: &str) {
    typed_header(out, name, help, "counter");
}

fn typed_header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_labels() {
        let m = Metrics::new();
        m.cycle_finished();
        m.cycle_finished();
        m.delivery("pull_request", "queued");
        m.delivery("pull_request", "queued");
        m.delivery("other", "unauthorized");
        m.error("registry");
        m.error_cause("network", true);
        m.error_cause("network", true);
        m.error_cause("auth", false);
        m.registry_requests(&[("docker.io".to_string(), 3), ("ghcr.io".to_string(), 1)].into());
        m.registry_requests(&[("docker.io".to_string(), 2)].into());
        assert_eq!(
            m.render(),
            "# HELP argocd_image_pr_cycles_total Update cycles finished.\n\
             # TYPE argocd_image_pr_cycles_total counter\n\
             argocd_image_pr_cycles_total 2\n\
             # HELP argocd_image_pr_webhook_deliveries_total Webhook deliveries by event and result.\n\
             # TYPE argocd_image_pr_webhook_deliveries_total counter\n\
             argocd_image_pr_webhook_deliveries_total{event=\"other\",result=\"unauthorized\"} 1\n\
             argocd_image_pr_webhook_deliveries_total{event=\"pull_request\",result=\"queued\"} 2\n\
             # HELP argocd_image_pr_errors_total Errors by kind.\n\
             # TYPE argocd_image_pr_errors_total counter\n\
             argocd_image_pr_errors_total{kind=\"registry\"} 1\n\
             # HELP argocd_image_pr_error_causes_total Reported errors by cause, and whether the next cycle may succeed by itself.\n\
             # TYPE argocd_image_pr_error_causes_total counter\n\
             argocd_image_pr_error_causes_total{cause=\"auth\",transient=\"false\"} 1\n\
             argocd_image_pr_error_causes_total{cause=\"network\",transient=\"true\"} 2\n\
             # HELP argocd_image_pr_registry_requests_total Registry requests by registry host.\n\
             # TYPE argocd_image_pr_registry_requests_total counter\n\
             argocd_image_pr_registry_requests_total{registry=\"docker.io\"} 5\n\
             argocd_image_pr_registry_requests_total{registry=\"ghcr.io\"} 1\n\
             # HELP argocd_image_pr_cycle_triggers_total Daemon cycles by what started them.\n\
             # TYPE argocd_image_pr_cycle_triggers_total counter\n\
             # HELP argocd_image_pr_cycles_failed_total Daemon cycles that reported at least one error.\n\
             # TYPE argocd_image_pr_cycles_failed_total counter\n\
             argocd_image_pr_cycles_failed_total 0\n\
             # HELP argocd_image_pr_cycle_duration_seconds Duration of daemon cycles.\n\
             # TYPE argocd_image_pr_cycle_duration_seconds summary\n\
             argocd_image_pr_cycle_duration_seconds_sum 0\n\
             argocd_image_pr_cycle_duration_seconds_count 0\n"
        );
    }

    #[test]
    fn daemon_cycles_have_triggers_durations_and_the_last_outcome() {
        let m = Metrics::new();
        m.cycle("interval", std::time::Duration::from_millis(1500), true);
        m.cycle("webhook", std::time::Duration::from_millis(500), false);
        let text = m.render();
        for line in [
            "argocd_image_pr_cycles_total 2\n",
            "argocd_image_pr_cycle_triggers_total{trigger=\"interval\"} 1\n",
            "argocd_image_pr_cycle_triggers_total{trigger=\"webhook\"} 1\n",
            "argocd_image_pr_cycles_failed_total 1\n",
            "argocd_image_pr_cycle_duration_seconds_sum 2\n",
            "argocd_image_pr_cycle_duration_seconds_count 2\n",
            "argocd_image_pr_last_cycle_duration_seconds 0.5\n",
            "argocd_image_pr_last_cycle_success 0\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        assert!(text.contains("\nargocd_image_pr_last_cycle_end_timestamp_seconds 1"), "{text}");
    }
}
