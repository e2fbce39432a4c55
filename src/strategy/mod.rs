//! The strategy engine: which tags are allowed, and which one to propose. Pure.
//! Semantics follow argocd-image-updater v1.3 (Masterminds semver), with the deliberate
//! differences listed in docs: never a downgrade, never a different spelling of the same version.

pub mod semver;

use chrono::{DateTime, Utc};

use crate::annotations::{AllowTags, ImageSpec, UpdateStrategy};
use semver::{Constraint, Version as SemVer};
pub use crate::domain::Version;

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
    let is_candidate = |tag: &str| spec.strategy != UpdateStrategy::Semver || SemVer::parse(tag).is_some();
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
    builder
        .build()
        .map_err(|e| StrategyError(format!("invalid ignore-tags patterns: {e}")))
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
pub fn select(spec: &ImageSpec, current: &Version, candidates: &[Candidate]) -> Result<Selection, StrategyError> {
    if spec.strategy == UpdateStrategy::Digest {
        // Checked first: a missing tag is a configuration error even when the registry is empty.
        return select_digest(spec, current, candidates);
    }
    if candidates.is_empty() {
        return Ok(Selection::none(no_candidates(spec)));
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
        Selection {
            proposed: None,
            reason: Some(reason.into()),
        }
    }

    fn propose(proposal: Proposal) -> Selection {
        Selection {
            proposed: Some(proposal),
            reason: None,
        }
    }
}

/// Why no tag is left to choose from, naming only the filters that are set.
fn no_candidates(spec: &ImageSpec) -> &'static str {
    let filtered = matches!(spec.allow_tags, Some(AllowTags::Regex(_))) || !spec.ignore_tags.is_empty();
    match (filtered, spec.strategy == UpdateStrategy::Semver) {
        (true, true) => "no tag is a version that passes allow-tags/ignore-tags",
        (true, false) => "no tags match allow-tags/ignore-tags",
        (false, true) => "no tag is a version",
        (false, false) => "no tags to choose from",
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
fn select_semver(spec: &ImageSpec, current: &Version, candidates: &[Candidate]) -> Result<Selection, StrategyError> {
    let constraint = match tracked_tag(spec) {
        Some(text) => Some(Constraint::parse(text).map_err(|e| StrategyError(e.to_string()))?),
        None => None,
    };
    let current_version = current.tag.as_deref().and_then(SemVer::parse);
    // Without a constraint, AIU checks against `*`, which admits releases only.
    let admits = |v: &SemVer| match &constraint {
        Some(c) => c.matches(v),
        None => !v.is_prerelease(),
    };
    let versions = candidates.iter().filter_map(|c| SemVer::parse(&c.tag).map(|v| (v, c)));
    let best = versions.filter(|(v, _)| admits(v)).max_by(|(a, ta), (b, tb)| {
        a.cmp(b)
            .then_with(|| spelling_rank(ta, &current_version).cmp(&spelling_rank(tb, &current_version)))
    });
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
            return Ok(Selection::none(format!(
                "current {cur} is newer than any candidate (best {best})"
            )));
        }
    }
    let kind = change_kind(current_version.as_ref(), &best);
    Ok(Selection::propose(Proposal {
        tag: candidate.tag.clone(),
        digest: pinned_digest(spec, candidate),
        kind,
    }))
}

/// Among tags of the same version, prefer the current tag's `v` prefix, then (as AIU does) the
/// lexically last tag, so the choice never depends on registry order.
fn spelling_rank<'c>(candidate: &'c Candidate, current: &Option<SemVer>) -> (bool, &'c str) {
    let same_prefix = match current {
        Some(cur) => candidate.tag.starts_with('v') == cur.has_v_prefix(),
        None => false,
    };
    (same_prefix, candidate.tag.as_str())
}

/// The kind of a move between two tags (a pin chooses the version, not the strategy): semver
/// when both parse, `Build` otherwise.
pub fn change_kind_between(from: Option<&str>, to: &str) -> ChangeKind {
    match (from.and_then(SemVer::parse), SemVer::parse(to)) {
        (Some(f), Some(t)) => change_kind(Some(&f), &t),
        (None, Some(t)) if from.is_none() => change_kind(None, &t),
        _ => ChangeKind::Build,
    }
}

/// How far `to` is from `from`. Without a current version we say `Major`: the reader has no
/// starting point, so the change deserves the most attention.
fn change_kind(from: Option<&SemVer>, to: &SemVer) -> ChangeKind {
    match from {
        None => ChangeKind::Major,
        Some(f) if f.major != to.major => ChangeKind::Major,
        Some(f) if f.minor != to.minor => ChangeKind::Minor,
        Some(f) if f.patch != to.patch => ChangeKind::Patch,
        Some(_) => ChangeKind::PreRelease,
    }
}

/// Whether a tag names no version (`latest`, `main`, `stable`): such tags move from image to
/// image, so a reviewer would approve one image and deploy whichever the tag points to later.
pub fn is_moving_tag(tag: &str) -> bool {
    !tag.bytes().any(|b| b.is_ascii_digit())
}

/// Most recently built tag; ties go to the lexically last tag (as AIU sorts). A moving tag
/// (`latest`) is never chosen when a tag with a version names the same image (same digest, or
/// the same build date): `build-100 → latest` becomes `build-100 → build-101`.
fn select_newest_build(spec: &ImageSpec, current: &Version, candidates: &[Candidate]) -> Selection {
    let dated = candidates.iter().filter_map(|c| c.created.map(|d| (d, c)));
    let newest = |(da, a): &(DateTime<Utc>, &Candidate), (db, b): &(DateTime<Utc>, &Candidate)| {
        da.cmp(db).then_with(|| is_moving_tag(&b.tag).cmp(&is_moving_tag(&a.tag))).then_with(|| a.tag.cmp(&b.tag))
    };
    let Some((best_date, best)) = dated.max_by(newest) else {
        return Selection::none("no candidate tag has a build date");
    };
    let same_image = |c: &&Candidate| match (&c.digest, &best.digest) {
        (Some(a), Some(b)) => a == b,
        _ => c.created == Some(best_date),
    };
    let best = if is_moving_tag(&best.tag) {
        candidates.iter().filter(same_image).filter(|c| !is_moving_tag(&c.tag)).max_by(|a, b| a.tag.cmp(&b.tag)).unwrap_or(best)
    } else {
        best
    };
    let current_tag = current.tag.as_deref();
    if current_tag == Some(best.tag.as_str()) {
        return Selection::none(format!("already at newest build {}", best.tag));
    }
    // The current tag's own date, when it is among the candidates: an image built at the same
    // time under another tag (or a newer one) is no update.
    let current_date = candidates
        .iter()
        .find(|c| Some(c.tag.as_str()) == current_tag)
        .and_then(|c| c.created);
    if let Some(d) = current_date.filter(|d| *d >= best_date) {
        return Selection::none(format!(
            "current {} (built {d}) is as new as any candidate",
            current_tag.unwrap_or_default()
        ));
    }
    let mut selection = Selection::propose(Proposal {
        tag: best.tag.clone(),
        digest: pinned_digest(spec, best),
        kind: ChangeKind::Build,
    });
    if is_moving_tag(&best.tag) {
        selection.reason = Some(format!(
            "{} names no version and may point to another image by the time this is merged; \
             exclude it with ignore-tags or allow-tags to get a fixed tag",
            best.tag
        ));
    }
    selection
}

/// Lexically last tag, in plain byte order as AIU sorts (`10` sorts before `9`).
fn select_alphabetical(spec: &ImageSpec, current: &Version, candidates: &[Candidate]) -> Selection {
    let Some(best) = candidates.iter().max_by(|a, b| a.tag.as_bytes().cmp(b.tag.as_bytes())) else {
        return Selection::none(no_candidates(spec));
    };
    if let Some(cur) = current.tag.as_deref().filter(|c| c.as_bytes() >= best.tag.as_bytes()) {
        return Selection::none(format!("already at {cur}, alphabetically last is {}", best.tag));
    }
    Selection::propose(Proposal {
        tag: best.tag.clone(),
        digest: pinned_digest(spec, best),
        kind: ChangeKind::Build,
    })
}

/// Follows the digest of one mutable tag (the image-list "constraint", e.g. `latest`).
fn select_digest(spec: &ImageSpec, current: &Version, candidates: &[Candidate]) -> Result<Selection, StrategyError> {
    let Some(tag) = tracked_tag(spec) else {
        return Err(StrategyError(
            "digest strategy needs a tag in image-list, e.g. app=repo:latest".to_string(),
        ));
    };
    let Some(candidate) = candidates.iter().find(|c| c.tag == tag) else {
        return Ok(Selection::none(format!(
            "tag {tag} not found in the registry (or filtered by allow-tags/ignore-tags)"
        )));
    };
    let Some(digest) = &candidate.digest else {
        return Ok(Selection::none(format!("digest of tag {tag} is not known")));
    };
    if current.digest.as_deref() == Some(digest.as_str()) {
        return Ok(Selection::none(format!("already at {tag}@{digest}")));
    }
    Ok(Selection::propose(Proposal {
        tag: tag.to_string(),
        digest: Some(digest.clone()),
        kind: ChangeKind::Digest,
    }))
}

#[cfg(test)]
#[rustfmt::skip] // one case per line reads better than rustfmt's exploded tuples
mod tests {
    use super::*;
    use crate::domain::{ImageName, Platform};
    use chrono::TimeZone;

    /// A proposed tag and its kind, or a fragment of the reason there is none.
    type Want<'a> = Result<(&'a str, ChangeKind), &'a str>;

    fn spec(strategy: UpdateStrategy, constraint: Option<&str>) -> ImageSpec {
        ImageSpec {
            alias: "app".to_string(),
            alias_given: true,
            name: ImageName { registry: "ghcr.io".to_string(), repository: "org/app".to_string() },
            default_registry: Default::default(),
            constraint: constraint.map(str::to_string),
            strategy,
            allow_tags: None,
            ignore_tags: Vec::new(),
            platforms: vec![Platform::linux_amd64()],
            force_update: false,
            pull_secret: None,
            helm: Default::default(),
            kustomize_image_name: None,
            pin_digest: false,
        }
    }

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|t| t.to_string()).collect()
    }

    fn plain(list: &[&str]) -> Vec<Candidate> {
        list.iter().map(|t| Candidate { tag: t.to_string(), digest: None, created: None }).collect()
    }

    fn current(tag: Option<&str>) -> Version {
        Version { tag: tag.map(str::to_string), digest: None }
    }

    fn day(d: u32) -> Option<DateTime<Utc>> {
        Utc.with_ymd_and_hms(2025, 1, d, 0, 0, 0).single()
    }

    fn check(name: &str, got: Result<Selection, StrategyError>, want: &Want) {
        let got = match got {
            Ok(s) => s,
            Err(e) => panic!("case {name}: unexpected error {e}"),
        };
        match want {
            Ok((tag, kind)) => {
                let p = got.proposed.as_ref().map(|p| (p.tag.as_str(), p.kind));
                assert_eq!(p, Some((*tag, *kind)), "case {name}: {got:?}");
            }
            Err(reason) => {
                assert_eq!(got.proposed, None, "case {name}");
                let r = got.reason.unwrap_or_default();
                assert!(r.contains(reason), "case {name}: reason {r:?} should contain {reason:?}");
            }
        }
    }

    #[test]
    fn filter_tags_applies_allow_then_ignore() {
        let all = tags(&["1.0.0", "1.1.0-rc.1", "1.1.0", "v2.0.0", "latest", "sha-a1b2c3d", "1.2.0-debug"]);
        let mut semver = spec(UpdateStrategy::Semver, None);
        // (name, spec, expected)
        let mut cases: Vec<(&str, ImageSpec, Vec<&str>)> = Vec::new();
        cases.push(("semver drops non-versions", semver.clone(), vec!["1.0.0", "1.1.0-rc.1", "1.1.0", "v2.0.0", "1.2.0-debug"]));
        semver.ignore_tags = vec!["*-rc*".to_string(), "*-debug".to_string()];
        cases.push(("ignore globs", semver.clone(), vec!["1.0.0", "1.1.0", "v2.0.0"]));
        semver.allow_tags = regex::Regex::new(r"^1\.").ok().map(AllowTags::Regex);
        cases.push(("allow regexp then ignore", semver.clone(), vec!["1.0.0", "1.1.0"]));
        let mut alpha = spec(UpdateStrategy::Alphabetical, None);
        alpha.allow_tags = regex::Regex::new("sha-").ok().map(AllowTags::Regex);
        cases.push(("regexp is unanchored, non-semver keeps words", alpha, vec!["sha-a1b2c3d"]));
        let mut newest = spec(UpdateStrategy::NewestBuild, None);
        newest.ignore_tags = vec!["[0-9]*".to_string(), "v?.*".to_string()];
        cases.push(("glob classes and ?", newest, vec!["latest", "sha-a1b2c3d"]));
        let mut everything = spec(UpdateStrategy::Alphabetical, None);
        everything.ignore_tags = vec!["*".to_string()];
        cases.push(("ignore all", everything, vec![]));
        for (name, spec, want) in cases {
            assert_eq!(filter_tags(&spec, &all), Ok(want), "case {name}");
        }
        let mut broken = spec(UpdateStrategy::Semver, None);
        broken.ignore_tags = vec!["[1-".to_string()];
        assert!(filter_tags(&broken, &all).is_err_and(|e| e.0.contains("[1-")), "case invalid glob");
    }

    #[test]
    fn need_per_strategy() {
        let filtered = ["1.0", "latest"];
        let cases = [
            ("semver", spec(UpdateStrategy::Semver, Some("^1")), Need::Nothing),
            ("alphabetical", spec(UpdateStrategy::Alphabetical, None), Need::Nothing),
            ("newest-build", spec(UpdateStrategy::NewestBuild, None), Need::Created(tags(&filtered))),
            ("digest", spec(UpdateStrategy::Digest, Some("latest")), Need::Digest("latest".to_string())),
            ("digest tag filtered away", spec(UpdateStrategy::Digest, Some("stable")), Need::Nothing),
            ("digest without tag", spec(UpdateStrategy::Digest, None), Need::Nothing),
        ];
        for (name, spec, want) in cases {
            assert_eq!(need(&spec, &filtered), want, "case {name}");
        }
    }

    #[test]
    fn select_semver() {
        use ChangeKind::*;
        // (name, constraint, current tag, candidate tags, want)
        type Case<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a [&'a str], Want<'a>);
        let cases: &[Case] = &[
            ("highest in caret", Some("^1.0"), Some("1.0.0"), &["1.0.0", "1.2.0", "1.10.1", "2.0.0"], Ok(("1.10.1", Minor))),
            ("patch", Some("~1.2"), Some("1.2.0"), &["1.2.0", "1.2.7", "1.3.0"], Ok(("1.2.7", Patch))),
            ("major without constraint", None, Some("1.4.0"), &["1.4.0", "2.0.0"], Ok(("2.0.0", Major))),
            ("no constraint skips pre-releases", None, Some("1.0.0"), &["1.0.0", "1.1.0-rc.1"], Err("already at newest 1.0.0")),
            ("pre-release constraint admits pre-releases", Some(">=1.0.0-0"), Some("1.0.0"), &["1.0.0", "1.1.0-rc.1"], Ok(("1.1.0-rc.1", Minor))),
            ("rc to rc", Some("^2.0.0-0"), Some("2.0.0-rc.1"), &["2.0.0-rc.1", "2.0.0-rc.2"], Ok(("2.0.0-rc.2", PreRelease))),
            ("rc to release", Some("^2.0.0-0"), Some("2.0.0-rc.2"), &["2.0.0-rc.2", "2.0.0"], Ok(("2.0.0", PreRelease))),
            ("no downgrade", Some("^1.0"), Some("2.0.0"), &["1.0.0", "1.1.0"], Err("newer than any candidate")),
            ("already newest", Some("^1.0"), Some("1.1.0"), &["1.0.0", "1.1.0"], Err("already at newest 1.1.0")),
            ("other spelling is no update", None, Some("1.0.0"), &["1.0.0", "v1.0.0"], Err("already at newest")),
            ("short spelling is no update", None, Some("1.2.0"), &["1.2"], Err("already at newest")),
            ("prefers current v prefix", None, Some("v1.0.0"), &["1.2.0", "v1.2.0", "1.2"], Ok(("v1.2.0", Minor))),
            ("prefers current bare spelling", None, Some("1.0.0"), &["v1.2.0", "1.2.0", "1.2"], Ok(("1.2.0", Minor))),
            ("no current: lexically last spelling", None, None, &["v1.2.0", "1.2.0", "1.2"], Ok(("v1.2.0", Major))),
            ("current not a version", Some("^1"), Some("latest"), &["1.0.0", "1.3.0"], Ok(("1.3.0", Major))),
            ("operator with =", Some(">=1.20"), Some("1.20.1"), &["1.19.0", "1.20.1", "1.25.3"], Ok(("1.25.3", Minor))),
            ("nothing satisfies", Some("^3"), Some("1.0.0"), &["1.0.0", "2.0.0"], Err("no version satisfies ^3")),
            ("or constraint", Some("~1.2 || ~1.4"), Some("1.2.1"), &["1.2.5", "1.3.9", "1.4.2", "1.5.0"], Ok(("1.4.2", Minor))),
            ("hyphen range", Some("1.2 - 1.4"), Some("1.2.0"), &["1.4.9", "1.5.0"], Ok(("1.4.9", Minor))),
            ("non-versions ignored", None, Some("1.0.0"), &["latest", "1234567", "1.0.1"], Ok(("1.0.1", Patch))),
            ("no candidates", Some("^1"), Some("1.0.0"), &[], Err("no tag is a version")),
            ("no release at all", None, Some("1.0.0"), &["2.0.0-rc.1"], Err("no tag is a release version")),
        ];
        for (name, constraint, cur, candidates, want) in cases {
            let got = select(&spec(UpdateStrategy::Semver, *constraint), &current(*cur), &plain(candidates));
            check(name, got, want);
        }
    }

    #[test]
    fn select_semver_invalid_constraint_is_error() {
        let got = select(&spec(UpdateStrategy::Semver, Some("latest")), &current(None), &plain(&["1.0.0"]));
        assert!(got.is_err_and(|e| e.0.contains("\"latest\"")), "case constraint text in error");
    }

    #[test]
    fn select_pin_digest() {
        let mut s = spec(UpdateStrategy::Semver, Some("^1"));
        let candidates = vec![
            Candidate { tag: "1.0.0".into(), digest: Some("sha256:old".into()), created: None },
            Candidate { tag: "1.1.0".into(), digest: Some("sha256:new".into()), created: None },
        ];
        let unpinned = select(&s, &current(Some("1.0.0")), &candidates).ok().and_then(|s| s.proposed);
        assert_eq!(unpinned.and_then(|p| p.digest), None, "case no pin, no digest");
        s.pin_digest = true;
        let pinned = select(&s, &current(Some("1.0.0")), &candidates).ok().and_then(|s| s.proposed);
        assert_eq!(pinned.and_then(|p| p.digest).as_deref(), Some("sha256:new"), "case pin carries digest");
    }

    #[test]
    fn select_newest_build() {
        let c = |tag: &str, d: u32| Candidate { tag: tag.to_string(), digest: None, created: day(d) };
        let undated = Candidate { tag: "zzz".to_string(), digest: None, created: None };
        // (name, current, candidates, want)
        let cases: Vec<(&str, Option<&str>, Vec<Candidate>, Want)> = vec![
            ("newest wins", Some("a"), vec![c("a", 1), c("b", 3), c("c", 2)], Ok(("b", ChangeKind::Build))),
            ("tie goes to lexically last", None, vec![c("x1", 2), c("x2", 2)], Ok(("x2", ChangeKind::Build))),
            ("undated skipped", Some("a"), vec![c("a", 1), undated.clone(), c("b", 2)], Ok(("b", ChangeKind::Build))),
            ("current is newest", Some("b"), vec![c("a", 1), c("b", 3)], Err("already at newest build b")),
            ("current as new under other tag", Some("main"), vec![c("main", 3), c("sha-1", 3)], Err("as new as any")),
            ("current not among candidates", Some("old"), vec![c("x", 3)], Ok(("x", ChangeKind::Build))),
            ("no dates at all", Some("a"), vec![undated], Err("no candidate tag has a build date")),
        ];
        for (name, cur, candidates, want) in cases {
            let got = select(&spec(UpdateStrategy::NewestBuild, None), &current(cur), &candidates);
            check(name, got, &want);
        }
    }

    #[test]
    fn newest_build_prefers_a_versioned_tag_of_the_same_image_to_a_moving_one() {
        // Issue 14: `build-100 → latest` wrote a tag that moves under the reviewer.
        let d = |tag: &str, day_: u32, digest: &str| Candidate { tag: tag.into(), digest: Some(digest.into()), created: day(day_) };
        let s = spec(UpdateStrategy::NewestBuild, None);
        let same_image = [d("build-100", 1, "sha256:a"), d("build-101", 2, "sha256:b"), d("latest", 2, "sha256:b")];
        let got = select(&s, &current(Some("build-100")), &same_image).unwrap();
        assert_eq!(got.proposed.map(|p| p.tag).as_deref(), Some("build-101"));
        // Same image by digest, even with another recorded date.
        let by_digest = [d("build-100", 1, "sha256:a"), d("build-101", 2, "sha256:b"), d("latest", 3, "sha256:b")];
        let got = select(&s, &current(Some("build-100")), &by_digest).unwrap();
        assert_eq!(got.proposed.map(|p| p.tag).as_deref(), Some("build-101"));
        // Only the moving tag has the newest image: proposed, and the reason says it moves.
        let alone = [d("build-100", 1, "sha256:a"), d("latest", 3, "sha256:c")];
        let got = select(&s, &current(Some("build-100")), &alone).unwrap();
        assert_eq!(got.proposed.as_ref().map(|p| p.tag.as_str()), Some("latest"));
        assert!(got.reason.is_some_and(|r| r.contains("latest names no version")));
    }

    #[test]
    fn select_alphabetical() {
        let cases: &[(&str, Option<&str>, &[&str], Want)] = &[
            ("last wins", Some("2024-01"), &["2024-01", "2024-03", "2024-02"], Ok(("2024-03", ChangeKind::Build))),
            ("byte order, not numeric", Some("10"), &["10", "9"], Ok(("9", ChangeKind::Build))),
            ("uppercase before lowercase", Some("b"), &["B", "a"], Err("already at b")),
            ("current is last", Some("2024-03"), &["2024-01", "2024-03"], Err("already at 2024-03")),
            ("current beyond all", Some("zzz"), &["a", "b"], Err("alphabetically last is b")),
            ("no current", None, &["a", "b"], Ok(("b", ChangeKind::Build))),
        ];
        for (name, cur, candidates, want) in cases {
            let got = select(&spec(UpdateStrategy::Alphabetical, None), &current(*cur), &plain(candidates));
            check(name, got, want);
        }
    }

    #[test]
    fn select_digest() {
        let with = |tag: &str, d: Option<&str>| Candidate { tag: tag.to_string(), digest: d.map(str::to_string), created: None };
        let at = |tag: &str, d: Option<&str>| Version { tag: Some(tag.to_string()), digest: d.map(str::to_string) };
        // (name, current, candidates, want)
        let cases: Vec<(&str, Version, Vec<Candidate>, Want)> = vec![
            ("new digest", at("latest", Some("sha256:a")), vec![with("latest", Some("sha256:b"))], Ok(("latest", ChangeKind::Digest))),
            ("no current digest", at("latest", None), vec![with("latest", Some("sha256:b"))], Ok(("latest", ChangeKind::Digest))),
            ("same digest", at("latest", Some("sha256:b")), vec![with("latest", Some("sha256:b"))], Err("already at latest@sha256:b")),
            ("tag missing", at("latest", None), vec![with("stable", Some("sha256:b"))], Err("tag latest not found")),
            ("digest unknown", at("latest", None), vec![with("latest", None)], Err("digest of tag latest is not known")),
        ];
        for (name, cur, candidates, want) in cases {
            let got = select(&spec(UpdateStrategy::Digest, Some("latest")), &cur, &candidates);
            let digest = got.as_ref().ok().and_then(|s| s.proposed.as_ref()).and_then(|p| p.digest.clone());
            if want.is_ok() {
                assert_eq!(digest.as_deref(), Some("sha256:b"), "case {name}: proposal carries the digest");
            }
            check(name, got, &want);
        }
        let missing = select(&spec(UpdateStrategy::Digest, None), &Version::default(), &[]);
        assert!(missing.is_err_and(|e| e.0.contains("needs a tag in image-list")), "case digest without tag");
    }
}
