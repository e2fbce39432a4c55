//! Renders a plan for people (an aligned table) or programs (JSON). Pure.

use crate::engine::{PlanReport, RunAction, RunReport};

/// One row per image, aligned; the last column says why nothing is proposed, or what failed.
/// The diffs of the proposed changes follow the table, coloured when `color` is set.
pub fn table(report: &PlanReport, color: bool) -> String {
    let header = ["APPLICATION", "ALIAS", "IMAGE", "STRATEGY", "CURRENT", "PROPOSED", "NOTE"];
    let mut rows: Vec<[String; 7]> = Vec::new();
    for app in &report.applications {
        let name = format!("{}/{}", app.namespace, app.name);
        if let Some(e) = &app.error {
            let note = format!("error: {e}").split_whitespace().collect::<Vec<_>>().join(" ");
            rows.push([name.clone(), "-".into(), "-".into(), "-".into(), "-".into(), "-".into(), note]);
        }
        for img in &app.images {
            let current = match (&img.current, &img.current_digest) {
                (Some(t), Some(d)) => format!("{t}@{}", short_digest(d)),
                (Some(t), None) => t.clone(),
                (None, Some(d)) => format!("@{}", short_digest(d)),
                (None, None) => "-".into(),
            };
            let proposed = match (&img.proposed, &img.digest) {
                (Some(t), Some(d)) => format!("{t}@{}", short_digest(d)),
                (Some(t), None) => t.clone(),
                (None, _) => "-".into(),
            };
            let note = match (&img.error, &img.reason, img.change) {
                (Some(e), _, _) => format!("error: {e}"),
                (None, Some(r), _) => r.clone(),
                (None, None, Some(kind)) => format!("{kind} update"),
                (None, None, None) => String::new(),
            };
            let note = note.split_whitespace().collect::<Vec<_>>().join(" ");
            rows.push([
                name.clone(),
                img.alias.clone(),
                img.image.clone().unwrap_or_else(|| "-".into()),
                img.strategy.unwrap_or("-").to_string(),
                current,
                proposed,
                note,
            ]);
        }
    }
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                l.push_str(cell);
                l.push_str(&" ".repeat(widths[i] - cell.chars().count() + 2));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&header.map(String::from));
    for row in &rows {
        line(row);
    }
    if report.applications.is_empty() && report.errors.is_empty() {
        out.push_str("(no Application with an argocd-image-updater.argoproj.io/image-list annotation)\n");
    }
    for app in report.applications.iter().filter(|a| !a.changes.is_empty()) {
        out.push_str(&format!("\n{}/{}:\n", app.namespace, app.name));
        for change in &app.changes {
            out.push_str(&format!("# {} {}\n", change.repo, change.file));
            for line in change.diff.lines() {
                out.push_str(&paint(line, color));
                out.push('\n');
            }
        }
    }
    if !report.errors.is_empty() {
        out.push_str("\nErrors:\n");
        for e in &report.errors {
            out.push_str(&format!("  {}: {}\n", e.file, e.error));
        }
    }
    for note in &report.notes {
        out.push_str(&format!("\nNote: {note}\n"));
    }
    out
}

pub fn json(report: &PlanReport) -> String {
    // Serializing plain data with string keys cannot fail.
    serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// `sha256:0123456789ab…` shortened to 12 hex digits for the table.
fn short_digest(d: &str) -> String {
    match d.split_once(':') {
        Some((algo, hex)) if hex.len() > 12 => format!("{algo}:{}", &hex[..12]),
        _ => d.to_string(),
    }
}

/// ANSI colours for a diff line: additions green, removals red, hunk headers cyan.
fn paint(line: &str, color: bool) -> String {
    if !color {
        return line.to_string();
    }
    let code = if line.starts_with("+++") || line.starts_with("---") {
        "1"
    } else if line.starts_with('+') {
        "32"
    } else if line.starts_with('-') {
        "31"
    } else if line.starts_with("@@") {
        "36"
    } else {
        return line.to_string();
    };
    format!("\x1b[{code}m{line}\x1b[0m")
}

/// `run --once` for people: one line per Application with what the bot did, then errors and
/// the forge calls made.
pub fn run_table(report: &RunReport) -> String {
    let header = ["APPLICATION", "ACTION", "PR", "BRANCH", "NOTE"];
    let mut rows: Vec<[String; 5]> = Vec::new();
    for app in &report.applications {
        let action = match app.action {
            RunAction::Opened => "opened",
            RunAction::Reopened => "reopened",
            RunAction::Updated => "updated",
            RunAction::Unchanged => "unchanged",
            RunAction::Closed => "closed",
            RunAction::Skipped => "skipped",
            RunAction::Held => "held",
            RunAction::Error => "error",
        };
        let note = if app.errors.is_empty() {
            app.reason.clone().unwrap_or_default()
        } else {
            app.errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
        };
        rows.push([
            format!("{}/{}", app.namespace, app.name),
            action.to_string(),
            app.pr.map(|n| crate::domain::pr_ref(n, app.url.as_deref().unwrap_or(""))).unwrap_or_else(|| "-".into()),
            app.branch.clone().filter(|_| app.pr.is_some()).unwrap_or_else(|| "-".into()),
            note.split_whitespace().collect::<Vec<_>>().join(" "),
        ]);
    }
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(header.map(String::from)).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                line.push_str(&" ".repeat(widths[i] - cell.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if !report.errors.is_empty() {
        out.push_str("\nErrors:\n");
        for e in &report.errors {
            out.push_str(&format!("  {}: {}\n", e.file, e.error));
        }
    }
    let s = &report.stats;
    out.push_str(&format!(
        "\nrepositories: {}, forge calls: {} ({} writes), pushes: {}\n",
        s.repositories, s.forge_calls, s.forge_writes, s.git_pushes
    ));
    out
}

pub fn run_json(report: &RunReport) -> String {
    serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// `status --output json`: per Application and image, the version in git, the newest candidate,
/// the open pull request, and every pin, ignore and hold with its origin.
pub fn status_json(report: &RunReport) -> String {
    serde_json::to_string_pretty(&status_value(report)).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

fn status_value(report: &RunReport) -> serde_json::Value {
    use serde_json::json;
    let apps: Vec<serde_json::Value> = report
        .applications
        .iter()
        .map(|a| {
            let images: Vec<serde_json::Value> = a
                .images
                .iter()
                .map(|i| {
                    json!({
                        "alias": i.alias,
                        "image": i.image,
                        "strategy": i.strategy,
                        "git": {"tag": i.current, "digest": i.current_digest},
                        "newest": i.unheld.clone().or(i.proposed.clone()).or(i.current.clone()),
                        "proposed": i.proposed,
                        "reason": i.reason,
                        "holds": i.holds,
                        "error": i.error,
                    })
                })
                .collect();
            json!({
                "namespace": a.namespace,
                "name": a.name,
                "repo": a.repo,
                "branch": a.branch,
                "pr": a.pr.map(|n| json!({"number": n, "url": a.url})),
                "held": a.reason.as_ref().filter(|_| a.action == RunAction::Held),
                "images": images,
                "errors": a.errors,
            })
        })
        .collect();
    json!({"applications": apps, "errors": report.errors, "stats": {"forge_calls": report.stats.forge_calls}})
}

/// `status` for people: one block per Application, one line per image and per hold.
pub fn status_table(report: &RunReport) -> String {
    let mut out = String::new();
    for a in &report.applications {
        let pr = match (a.pr, &a.url) {
            (Some(n), Some(u)) => format!("open PR #{n} {u}"),
            _ => "no open PR".to_string(),
        };
        out.push_str(&format!("{}/{}  ({pr})\n", a.namespace, a.name));
        for e in &a.errors {
            out.push_str(&format!("  error: {}\n", e.to_string().split_whitespace().collect::<Vec<_>>().join(" ")));
        }
        for i in &a.images {
            let git = i.current.clone().or(i.current_digest.clone()).unwrap_or_else(|| "-".into());
            let newest = i.unheld.clone().or(i.proposed.clone()).or(i.current.clone()).unwrap_or_else(|| "-".into());
            let proposed = i.proposed.clone().unwrap_or_else(|| "-".into());
            out.push_str(&format!("  {}: git {git}, newest {newest}, proposed {proposed}\n", i.alias));
            for h in &i.holds {
                let v = h.version.as_ref().map(crate::planner::version_text).unwrap_or_else(|| "what git has".into());
                let kind = match h.kind {
                    crate::planner::HoldKind::Pin => "pinned at",
                    crate::planner::HoldKind::Ignore => "ignores",
                    crate::planner::HoldKind::Rollback => "rolled back: waits for a version newer than",
                    crate::planner::HoldKind::Closed => "closed: waits for a version newer than",
                };
                out.push_str(&format!("    {kind} {v} — {}\n", h.origin.describe()));
            }
        }
    }
    for e in &report.errors {
        out.push_str(&format!("error: {}: {}\n", e.file, e.error));
    }
    out
}
