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
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// One update cycle finished (whatever its outcome).
    pub fn cycle_finished(&self) {
        self.cycles.fetch_add(1, Ordering::Relaxed);
    }

    /// One error of `kind` (a short fixed label such as `registry`, `git`, `forge`).
    pub fn error(&self, kind: &'static str) {
        *self.errors.lock().unwrap_or_else(|e| e.into_inner()).entry(kind).or_default() += 1;
    }

    /// One webhook delivery of `event` (`issue_comment`, `pull_request`, `ping`, `other`) ended in
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
        out
    }
}

fn header(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
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
             argocd_image_pr_errors_total{kind=\"registry\"} 1\n"
        );
    }
}
