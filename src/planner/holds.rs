//! Pins, ignores and rollback holds (issue 5), with no database: what the bot keeps in each PR's
//! metadata (the [`Ledger`]), how the holds of one Application are derived from the bot's PRs
//! (open, closed, merged) and the pin annotation, and how they filter one image's candidates.
//! Pure: the engine gathers PRs, comments and registry candidates and applies the outcome.
//!
//! Three kinds of hold act on candidates (see docs/lifecycle.md):
//! - **pin**: propose nothing else for the image; with a version, propose exactly that version
//!   when git has another one (a `/pin` comment or the `argocd-image-pr.io/pin` annotation);
//! - **skip**: never propose this exact version (`/ignore`);
//! - **floor**: propose only versions strictly newer than this one (a merged PR whose version
//!   git no longer has — a rollback —, and a PR closed without merging).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{PrMetadata, Version};
use crate::annotations::UpdateStrategy;
use crate::domain::pr_ref;
use crate::strategy::semver::Version as Semver;
use crate::strategy::Candidate;

/// The annotation that pins images in git: `argocd-image-pr.io/pin: api=1.2.0, web=sha256:...`.
pub const PIN_ANNOTATION: &str = "argocd-image-pr.io/pin";

/// What the bot remembers on a PR besides the change it carries; lives in the PR's hidden
/// metadata block, so it survives restarts, closing and merging.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// Pins and ignores set by commands on this PR (lifted by `/unpin` on any PR of the Application).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holds: Vec<StoredHold>,
    /// Highest comment id handled on this PR: each comment is handled once.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub comments_seen: u64,
    /// Comments made before this time are handled (it is when the cycle that wrote the ledger
    /// started): the next cycle lists the repository's comments from the newest `seen_at` of
    /// its PRs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen_at: Option<DateTime<Utc>>,
    /// A comment on this PR that could not be handled yet (its author's permission could not be
    /// read) was made at this time: listings start no later than that until it is handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_since: Option<DateTime<Utc>>,
    /// Notices already posted on this PR (`closed-ignored`, `rollback:<alias>:<version>`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notices: Vec<String>,
    /// Set when the bot closed the PR itself (`obsolete`, `held`): such a close ignores nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_by_bot: Option<String>,
    /// A `/recreate` waiting to be carried out.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recreate: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Ledger {
    pub fn is_empty(&self) -> bool {
        *self == Ledger::default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HoldKind {
    /// Nothing else is proposed for the image (at `version`, or at what git has).
    Pin,
    /// This exact version is never proposed (`/ignore`).
    Ignore,
    /// Only versions strictly newer than `version` are proposed: a merged PR rolled back.
    Rollback,
    /// Only versions strictly newer than `version` are proposed: a PR closed without merging.
    Closed,
}

/// A pin or ignore set by a comment command, as stored in a PR's [`Ledger`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredHold {
    pub kind: HoldKind,
    pub alias: String,
    /// The version held at or skipped; `None` for a pin at what git has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Version>,
    /// Who commented, when, and the comment's link.
    pub by: String,
    pub at: DateTime<Utc>,
    pub url: String,
}

/// Where a hold comes from, for people (`status`, reasons in the run report).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Origin {
    /// A comment command on PR `pr`.
    Comment { pr: u64, by: String, at: DateTime<Utc>, url: String },
    /// The pin annotation on the Application.
    Annotation { key: String },
    /// The merged PR `pr` delivered `version`; git has an older one now.
    Rollback { pr: u64, url: String },
    /// The PR `pr` was closed without merging.
    ClosedPr { pr: u64, url: String, closed_at: Option<DateTime<Utc>> },
}

impl Origin {
    pub fn describe(&self) -> String {
        match self {
            Origin::Comment { pr, by, at, url } => format!("comment by {by} on {} at {} ({url})", pr_ref(*pr, url), at.to_rfc3339()),
            Origin::Annotation { key } => format!("annotation {key}"),
            Origin::Rollback { pr, url } => format!("rollback of {} ({url})", pr_ref(*pr, url)),
            Origin::ClosedPr { pr, url, .. } => format!("{} closed without merging ({url})", pr_ref(*pr, url)),
        }
    }
}

/// One hold on one image of an Application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hold {
    pub kind: HoldKind,
    pub alias: String,
    pub version: Option<Version>,
    pub origin: Origin,
}

/// What a merged PR delivered for one image: a rollback floor once git has an older version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub pr: u64,
    pub url: String,
    pub image: String,
    pub from: Version,
    pub to: Version,
    /// Whether the rollback notice for this version was posted on the PR already.
    pub noticed: bool,
}

impl Delivery {
    pub fn notice_key(&self, alias: &str) -> String {
        format!("rollback:{alias}:{}", version_text(&self.to))
    }
}

/// Everything that holds one image back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageHolds {
    /// Pins, newest first (the annotation's before any comment's: git wins).
    pub pins: Vec<Hold>,
    /// `/ignore` skips and closed-PR floors.
    pub ignores: Vec<Hold>,
    /// What merged PRs delivered (rollback floors when git went back).
    pub deliveries: Vec<Delivery>,
}

impl ImageHolds {
    pub fn is_empty(&self) -> bool {
        self.pins.is_empty() && self.ignores.is_empty() && self.deliveries.is_empty()
    }
}

/// The holds of one Application, per image alias.
pub type AppHolds = BTreeMap<String, ImageHolds>;

/// A bot PR as the derivation needs it (from the one per-repository listing).
#[derive(Debug, Clone)]
pub struct PrView {
    pub number: u64,
    pub url: String,
    pub state: crate::domain::PrState,
    pub metadata: PrMetadata,
    pub closed_at: Option<DateTime<Utc>>,
}

/// `argocd-image-pr.io/pin: api=1.2.0, web=sha256:...` → (alias, version). A malformed entry is
/// an error naming it.
pub fn parse_pin_annotation(value: &str) -> Result<Vec<(String, Version)>, String> {
    let mut out = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((alias, version)) = entry.split_once('=') else {
            return Err(format!("{PIN_ANNOTATION}: {entry:?} is not <alias>=<version>"));
        };
        let (alias, version) = (alias.trim(), version.trim());
        if alias.is_empty() || version.is_empty() || version.contains(char::is_whitespace) {
            return Err(format!("{PIN_ANNOTATION}: {entry:?} is not <alias>=<version>"));
        }
        out.push((alias.to_string(), version_from_text(version)));
    }
    Ok(out)
}

/// A version as people write it: `sha256:...` is a digest, anything else a tag.
pub fn version_from_text(s: &str) -> Version {
    if s.starts_with("sha256:") {
        Version { tag: None, digest: Some(s.to_string()) }
    } else {
        Version { tag: Some(s.to_string()), digest: None }
    }
}

/// `1.2.0`, `sha256:...` or `latest@sha256:...`.
pub fn version_text(v: &Version) -> String {
    match (&v.tag, &v.digest) {
        (Some(t), Some(d)) => format!("{t}@{d}"),
        (Some(t), None) => t.clone(),
        (None, Some(d)) => d.clone(),
        (None, None) => "-".into(),
    }
}

/// The holds of Application `app` from the bot's PRs of its repository (any state, newest
/// first) and the pins its annotation sets.
pub fn derive(app: &str, prs: &[PrView], annotation_pins: &[(String, Version)]) -> AppHolds {
    use crate::domain::PrState;
    let mut out = AppHolds::new();
    for (alias, version) in annotation_pins {
        out.entry(alias.clone()).or_default().pins.push(Hold {
            kind: HoldKind::Pin,
            alias: alias.clone(),
            version: Some(version.clone()),
            origin: Origin::Annotation { key: PIN_ANNOTATION.into() },
        });
    }
    let mut comment_pins: Vec<Hold> = Vec::new();
    for pr in prs.iter().filter(|p| p.metadata.application == app) {
        for h in &pr.metadata.ledger.holds {
            let hold = Hold {
                kind: h.kind,
                alias: h.alias.clone(),
                version: h.version.clone(),
                origin: Origin::Comment { pr: pr.number, by: h.by.clone(), at: h.at, url: h.url.clone() },
            };
            match h.kind {
                HoldKind::Pin => comment_pins.push(hold),
                _ => out.entry(h.alias.clone()).or_default().ignores.push(hold),
            }
        }
        match pr.state {
            PrState::Merged => {
                for i in &pr.metadata.images {
                    let d = Delivery {
                        pr: pr.number,
                        url: pr.url.clone(),
                        image: i.image.clone(),
                        from: i.from.clone(),
                        to: i.to.clone(),
                        noticed: false,
                    };
                    let noticed = pr.metadata.ledger.notices.contains(&d.notice_key(&i.alias));
                    out.entry(i.alias.clone()).or_default().deliveries.push(Delivery { noticed, ..d });
                }
            }
            PrState::Closed if pr.metadata.ledger.closed_by_bot.is_none() => {
                for i in &pr.metadata.images {
                    out.entry(i.alias.clone()).or_default().ignores.push(Hold {
                        kind: HoldKind::Closed,
                        alias: i.alias.clone(),
                        version: Some(i.to.clone()),
                        origin: Origin::ClosedPr { pr: pr.number, url: pr.url.clone(), closed_at: pr.closed_at },
                    });
                }
            }
            _ => {}
        }
    }
    // The newest comment pin of an image wins; the annotation (reviewed in git) wins over all.
    comment_pins.sort_by_key(|h| std::cmp::Reverse(comment_time(&h.origin)));
    for pin in comment_pins {
        out.entry(pin.alias.clone()).or_default().pins.push(pin);
    }
    out
}

fn comment_time(origin: &Origin) -> Option<DateTime<Utc>> {
    match origin {
        Origin::Comment { at, .. } => Some(*at),
        _ => None,
    }
}

/// What the holds leave of one image's choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The candidates the strategy may still choose from.
    pub candidates: Vec<Candidate>,
    /// The pin in force, if any: the strategy does not choose at all then.
    pub pin: Option<Hold>,
    /// Merged PRs whose version git went back from (rollback floors in force).
    pub rollbacks: Vec<Delivery>,
    /// Every hold that removed a candidate or is in force (for the report and `status`).
    pub active: Vec<Hold>,
}

/// What a pin asks of the strategy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinTarget {
    /// Git already has the pinned version, or the pin is at what git has: propose nothing.
    Stay,
    /// Propose exactly this version.
    Exactly(Version),
}

/// The pin's target given what git has.
pub fn pin_target(pin: &Hold, current: &Version, strategy: UpdateStrategy) -> PinTarget {
    match &pin.version {
        None => PinTarget::Stay,
        Some(v) if same_version(v, current, strategy) => PinTarget::Stay,
        Some(v) => PinTarget::Exactly(v.clone()),
    }
}

fn same_version(v: &Version, current: &Version, strategy: UpdateStrategy) -> bool {
    match (&v.digest, &v.tag) {
        (Some(d), _) if strategy == UpdateStrategy::Digest || v.tag.is_none() => current.digest.as_deref() == Some(d),
        (_, Some(t)) => current.tag.as_deref() == Some(t.as_str()),
        _ => false,
    }
}

/// Filters `candidates` of one image by its holds. `current` is what git has now.
pub fn apply(strategy: UpdateStrategy, holds: &ImageHolds, current: &Version, candidates: Vec<Candidate>) -> Outcome {
    let mut active = Vec::new();
    let pin = holds.pins.first().cloned();
    if let Some(p) = &pin {
        active.push(p.clone());
    }
    let mut floors: Vec<(Version, Hold)> = Vec::new();
    let mut skips: Vec<(Version, Hold)> = Vec::new();
    for h in &holds.ignores {
        let Some(v) = &h.version else { continue };
        match h.kind {
            HoldKind::Closed => floors.push((v.clone(), h.clone())),
            _ => skips.push((v.clone(), h.clone())),
        }
    }
    let cur = current.clone();
    let mut rollbacks = Vec::new();
    for d in &holds.deliveries {
        if cur != d.to && (cur == d.from || order(strategy, &cur, &d.to, &candidates) == Some(std::cmp::Ordering::Less)) {
            rollbacks.push(d.clone());
            let hold = Hold {
                kind: HoldKind::Rollback,
                alias: String::new(),
                version: Some(d.to.clone()),
                origin: Origin::Rollback { pr: d.pr, url: d.url.clone() },
            };
            floors.push((d.to.clone(), hold));
        }
    }
    let mut kept = Vec::new();
    let mut used: Vec<Hold> = Vec::new();
    for c in candidates.iter() {
        let v = Version { tag: Some(c.tag.clone()), digest: c.digest.clone() };
        let mut blocked = false;
        for (s, h) in &skips {
            if matches_version(strategy, &v, s) {
                blocked = true;
                push_once(&mut used, h);
            }
        }
        for (f, h) in &floors {
            if matches_version(strategy, &v, f)
                || order(strategy, &v, f, &candidates).is_some_and(|o| o != std::cmp::Ordering::Greater)
            {
                blocked = true;
                push_once(&mut used, h);
            }
        }
        if !blocked {
            kept.push(c.clone());
        }
    }
    // Rollbacks are in force even when no candidate is in the way yet.
    for (_, h) in floors.iter().filter(|(_, h)| h.kind == HoldKind::Rollback) {
        push_once(&mut used, h);
    }
    active.extend(used);
    Outcome { candidates: kept, pin, rollbacks, active }
}

fn push_once(list: &mut Vec<Hold>, h: &Hold) {
    if !list.contains(h) {
        list.push(h.clone());
    }
}

/// Whether candidate version `v` is the held version `held` (digests for the digest strategy
/// and for digest-only holds, tags otherwise).
fn matches_version(strategy: UpdateStrategy, v: &Version, held: &Version) -> bool {
    match (&held.tag, &held.digest) {
        (_, Some(d)) if strategy == UpdateStrategy::Digest || held.tag.is_none() => v.digest.as_deref() == Some(d),
        (Some(t), _) => v.tag.as_deref() == Some(t.as_str()),
        _ => false,
    }
}

/// `a` against `b` in the strategy's order, when there is one: semver precedence, byte order
/// of tags (alphabetical), build dates from the candidates (newest-build, digest).
fn order(strategy: UpdateStrategy, a: &Version, b: &Version, candidates: &[Candidate]) -> Option<std::cmp::Ordering> {
    let created = |v: &Version| {
        candidates
            .iter()
            .find(|c| match (&v.digest, &v.tag) {
                (Some(d), _) if strategy == UpdateStrategy::Digest => c.digest.as_deref() == Some(d),
                (_, Some(t)) => &c.tag == t,
                _ => false,
            })
            .and_then(|c| c.created)
    };
    match strategy {
        UpdateStrategy::Semver => {
            let pa = Semver::parse(a.tag.as_deref()?)?;
            let pb = Semver::parse(b.tag.as_deref()?)?;
            Some(pa.cmp(&pb))
        }
        UpdateStrategy::Alphabetical => Some(a.tag.as_deref()?.as_bytes().cmp(b.tag.as_deref()?.as_bytes())),
        UpdateStrategy::NewestBuild | UpdateStrategy::Digest => Some(created(a)?.cmp(&created(b)?)),
    }
}

/// The notices to post: closed PRs not yet told that their versions are ignored.
pub fn closed_unnoticed(app: &str, prs: &[PrView]) -> Vec<u64> {
    use crate::domain::PrState;
    prs.iter()
        .filter(|p| p.metadata.application == app && p.state == PrState::Closed)
        .filter(|p| p.metadata.ledger.closed_by_bot.is_none() && !p.metadata.ledger.notices.iter().any(|n| n == "closed-ignored"))
        .filter(|p| !p.metadata.images.is_empty())
        .map(|p| p.number)
        .collect()
}

#[cfg(test)]
mod tests;
