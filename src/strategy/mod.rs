//! The strategy engine: which tags are allowed, and which one to propose. Pure.
//! Semantics follow argocd-image-updater v1.3 (Masterminds semver), with the deliberate
//! differences listed in docs: never a downgrade, never a different spelling of the same version.

use chrono::{DateTime, Utc};

use crate::annotations::ImageSpec;

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
pub fn filter_tags<'a>(spec: &ImageSpec, tags: &'a [String]) -> Result<Vec<&'a str>, StrategyError> {
    let _ = (spec, tags);
    todo!()
}

/// Registry metadata needed for the filtered tags.
pub fn need(spec: &ImageSpec, filtered: &[&str]) -> Need {
    let _ = (spec, filtered);
    todo!()
}

/// Chooses among candidates (the filtered tags with the metadata asked for by `need`).
pub fn select(spec: &ImageSpec, current: &Current, candidates: &[Candidate]) -> Result<Selection, StrategyError> {
    let _ = (spec, current, candidates);
    todo!()
}
