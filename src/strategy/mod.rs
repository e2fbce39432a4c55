//! The strategy engine: which tags are allowed, and which one to propose. Pure.
//! Semantics follow argocd-image-updater v1.3 (Masterminds semver), with the deliberate
//! differences listed in docs: never a downgrade, never a different spelling of the same version.

pub mod semver;

use chrono::{DateTime, Utc};

use crate::annotations::{AllowTags, ImageSpec, UpdateStrategy};
use semver::{Constraint, Version};

/// What git says the image runs now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Current {
    pub tag: Option<String>,
    pub digest: Option<String>,
}

/// A tag with whatever registry metadata the strategy asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub tag: String,
    /// Digest of the manifest (or index) the tag points to, when fetched.
    pub digest: Option<String>,
    /// Image config `created` for the requested platform, when fetched.
    pub created: Option<DateTime<Utc>>,
}

/// Registry metadata a strategy needs before it can choose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// Tag names are enough (semver, alphabetical).
    Nothing,
    /// The `created` date of each of these tags (newest-build).
    Created(Vec<String>),
    /// The digest of this one tag (digest strategy).
    Digest(String),
}

/// How big a change is, for people reading the proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Major,
    Minor,
    Patch,
    PreRelease,
    Digest,
    /// newest-build / alphabetical: no version order to speak of.
    Build,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    pub tag: String,
    pub digest: Option<String>,
    pub kind: ChangeKind,
}

/// The outcome for one image: a proposal, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub proposed: Option<Proposal>,
    /// Human readable reason when nothing is proposed ("already at newest 1.2.3", ...).
    pub reason: Option<String>,
}

/// A problem with the image's options or constraint, not with the registry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StrategyError(pub String);

/// Tags that pass `allow-tags` and `ignore-tags` (and, for semver, parse as versions).
///
/// `ignore-tags` are globs as AIU matches them with Go's `filepath.Match`: `*`, `?`, `[...]`;
/// tags hold no `/`, so separators never matter. Input order is kept.
pub fn filter_tags<'a>(spec: &ImageSpec, tags: &'a [String]) -> Result<Vec<&'a str>, StrategyError> {
    let ignored = ignore_set(&spec.ignore_tags)?;
    let allowed = |tag: &str| match &spec.allow_tags {
        Some(AllowTags::Regex(re)) => re.is_match(tag),
        Some(AllowTags::Any) | None => true,
    };
    let is_candidate = |tag: &str| spec.strategy != UpdateStrategy::Semver || Version::parse(tag).is_some();
    Ok(tags
        .iter()
        .map(String::as_str)
        .filter(|t| allowed(t) && !ignored.is_match(t) && is_candidate(t))
        .collect())
}

fn ignore_set(patterns: &[String]) -> Result<globset::GlobSet, StrategyError> {
    let mut builder = globset::GlobSetBuilder::new();
    for p in patterns {
        let glob = globset::GlobBuilder::new(p)
            .backslash_escape(true)
            .build()
            .map_err(|e| StrategyError(format!("invalid ignore-tags pattern {p:?}: {e}")))?;
        builder.add(glob);
    }
    builder.build().map_err(|e| StrategyError(format!("invalid ignore-tags patterns: {e}")))
}

/// Registry metadata needed for the filtered tags.
///
/// For the digest strategy this asks for the tracked tag only when it survived the filters;
/// otherwise `Nothing`, and `select` explains that the tag is missing (or that there is none).
pub fn need(spec: &ImageSpec, filtered: &[&str]) -> Need {
    match spec.strategy {
        UpdateStrategy::NewestBuild => Need::Created(filtered.iter().map(|t| t.to_string()).collect()),
        UpdateStrategy::Digest => match tracked_tag(spec) {
            Some(tag) if filtered.contains(&tag) => Need::Digest(tag.to_string()),
            _ => Need::Nothing,
        },
        UpdateStrategy::Semver | UpdateStrategy::Alphabetical => Need::Nothing,
    }
}

/// Chooses among candidates (the filtered tags with the metadata asked for by `need`).
pub fn select(spec: &ImageSpec, current: &Current, candidates: &[Candidate]) -> Result<Selection, StrategyError> {
    if spec.strategy == UpdateStrategy::Digest {
        // Checked first: a missing tag is a configuration error even when the registry is empty.
        return select_digest(spec, current, candidates);
    }
    if candidates.is_empty() {
        return Ok(Selection::none("no tags match allow-tags/ignore-tags"));
    }
    match spec.strategy {
        UpdateStrategy::Semver => select_semver(spec, current, candidates),
        UpdateStrategy::NewestBuild => Ok(select_newest_build(spec, current, candidates)),
        UpdateStrategy::Alphabetical => Ok(select_alphabetical(spec, current, candidates)),
        UpdateStrategy::Digest => select_digest(spec, current, candidates),
    }
}

impl Selection {
    fn none(reason: impl Into<String>) -> Selection {
        Selection { proposed: None, reason: Some(reason.into()) }
    }

    fn propose(proposal: Proposal) -> Selection {
        Selection { proposed: Some(proposal), reason: None }
    }
}

/// The digest to write with a proposed tag: only with our `pin-digest` option.
fn pinned_digest(spec: &ImageSpec, candidate: &Candidate) -> Option<String> {
    spec.pin_digest.then(|| candidate.digest.clone()).flatten()
}

fn tracked_tag(spec: &ImageSpec) -> Option<&str> {
    spec.constraint.as_deref().map(str::trim).filter(|c| !c.is_empty())
}

/// Highest version within the constraint; never a downgrade, never another spelling of the
/// version git already has.
fn select_semver(spec: &ImageSpec, current: &Current, candidates: &[Candidate]) -> Result<Selection, StrategyError> {
    let constraint = match tracked_tag(spec) {
        Some(text) => Some(Constraint::parse(text).map_err(|e| StrategyError(e.to_string()))?),
        None => None,
    };
    let current_version = current.tag.as_deref().and_then(Version::parse);
    // Without a constraint, AIU checks against `*`, which admits releases only.
    let admits = |v: &Version| match &constraint {
        Some(c) => c.matches(v),
        None => !v.is_prerelease(),
    };
    let versions = candidates.iter().filter_map(|c| Version::parse(&c.tag).map(|v| (v, c)));
    let best = versions
        .filter(|(v, _)| admits(v))
        .max_by(|(a, ta), (b, tb)| a.cmp(b).then_with(|| spelling_rank(ta, &current_version).cmp(&spelling_rank(tb, &current_version))));
    let Some((best, candidate)) = best else {
        return Ok(Selection::none(match &constraint {
            Some(c) => format!("no version satisfies {c}"),
            None => "no tag is a release version".to_string(),
        }));
    };
    if let Some(cur) = &current_version {
        if best == *cur {
            return Ok(Selection::none(format!("already at newest {cur}")));
        }
        if best < *cur {
            return Ok(Selection::none(format!("current {cur} is newer than any candidate (best {best})")));
        }
    }
    let kind = change_kind(current_version.as_ref(), &best);
    Ok(Selection::propose(Proposal { tag: candidate.tag.clone(), digest: pinned_digest(spec, candidate), kind }))
}

/// Among tags of the same version, prefer the current tag's `v` prefix, then (as AIU does) the
/// lexically last tag, so the choice never depends on registry order.
fn spelling_rank<'c>(candidate: &'c Candidate, current: &Option<Version>) -> (bool, &'c str) {
    let same_prefix = match current {
        Some(cur) => candidate.tag.starts_with('v') == cur.has_v_prefix(),
        None => false,
    };
    (same_prefix, candidate.tag.as_str())
}

/// How far `to` is from `from`. Without a current version we say `Major`: the reader has no
/// starting point, so the change deserves the most attention.
fn change_kind(from: Option<&Version>, to: &Version) -> ChangeKind {
    match from {
        None => ChangeKind::Major,
        Some(f) if f.major != to.major => ChangeKind::Major,
        Some(f) if f.minor != to.minor => ChangeKind::Minor,
        Some(f) if f.patch != to.patch => ChangeKind::Patch,
        Some(_) => ChangeKind::PreRelease,
    }
}

/// Most recently built tag; ties go to the lexically last tag (as AIU sorts).
fn select_newest_build(spec: &ImageSpec, current: &Current, candidates: &[Candidate]) -> Selection {
    let dated = candidates.iter().filter_map(|c| c.created.map(|d| (d, c)));
    let Some((best_date, best)) = dated.max_by(|(da, a), (db, b)| da.cmp(db).then_with(|| a.tag.cmp(&b.tag))) else {
        return Selection::none("no candidate tag has a build date");
    };
    let current_tag = current.tag.as_deref();
    if current_tag == Some(best.tag.as_str()) {
        return Selection::none(format!("already at newest build {}", best.tag));
    }
    // The current tag's own date, when it is among the candidates: an image built at the same
    // time under another tag (or a newer one) is no update.
    let current_date = candidates.iter().find(|c| Some(c.tag.as_str()) == current_tag).and_then(|c| c.created);
    if let Some(d) = current_date.filter(|d| *d >= best_date) {
        return Selection::none(format!("current {} (built {d}) is as new as any candidate", current_tag.unwrap_or_default()));
    }
    Selection::propose(Proposal { tag: best.tag.clone(), digest: pinned_digest(spec, best), kind: ChangeKind::Build })
}

/// Lexically last tag, in plain byte order as AIU sorts (`10` sorts before `9`).
fn select_alphabetical(spec: &ImageSpec, current: &Current, candidates: &[Candidate]) -> Selection {
    let Some(best) = candidates.iter().max_by(|a, b| a.tag.as_bytes().cmp(b.tag.as_bytes())) else {
        return Selection::none("no tags match allow-tags/ignore-tags");
    };
    if let Some(cur) = current.tag.as_deref().filter(|c| c.as_bytes() >= best.tag.as_bytes()) {
        return Selection::none(format!("already at {cur}, alphabetically last is {}", best.tag));
    }
    Selection::propose(Proposal { tag: best.tag.clone(), digest: pinned_digest(spec, best), kind: ChangeKind::Build })
}

/// Follows the digest of one mutable tag (the image-list "constraint", e.g. `latest`).
fn select_digest(spec: &ImageSpec, current: &Current, candidates: &[Candidate]) -> Result<Selection, StrategyError> {
    let Some(tag) = tracked_tag(spec) else {
        return Err(StrategyError("digest strategy needs a tag in image-list, e.g. app=repo:latest".to_string()));
    };
    let Some(candidate) = candidates.iter().find(|c| c.tag == tag) else {
        return Ok(Selection::none(format!("tag {tag} not found in the registry (or filtered by allow-tags/ignore-tags)")));
    };
    let Some(digest) = &candidate.digest else {
        return Ok(Selection::none(format!("digest of tag {tag} is not known")));
    };
    if current.digest.as_deref() == Some(digest.as_str()) {
        return Ok(Selection::none(format!("already at {tag}@{digest}")));
    }
    Ok(Selection::propose(Proposal { tag: tag.to_string(), digest: Some(digest.clone()), kind: ChangeKind::Digest }))
}
