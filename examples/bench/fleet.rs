//! The benchmark fleet: a deterministic model of the registry's repositories, tags and images,
//! and of the Applications that use them, with the answer the generator expects for each image.
//!
//! Everything is derived from [`SEED`] with a hand-rolled PRNG, per repository and per block of
//! ten repositories, so the fifth-size fleet is exactly the first 60 repositories of the full one
//! (same shape, a fifth of the tags) and both share one seeded registry.

use std::fmt;

/// Bump when the shape of the registry content changes: a seeded registry with another version
/// is wiped and seeded again.
pub const FLEET_VERSION: u32 = 2;
pub const SEED: u64 = 0x00A1_6D0C_D1A6_E5B7;

/// Repositories come in blocks of ten: nine semver ones and one newest-build one, holding
/// exactly this many tags together. 30 blocks = 300 repositories = 135,000 tags.
pub const REPOS_PER_BLOCK: usize = 10;
pub const TAGS_PER_BLOCK: usize = 4_500;
/// The position of the newest-build repository inside its block.
const NEWEST_BUILD_SLOT: usize = 7;
/// Distinct images (builds) in a newest-build repository.
pub const BUILDS_PER_NB_REPO: usize = 30;
/// Tags of a newest-build repository: kept moderate because the newest-build strategy needs one
/// manifest request per allowed tag (and a config blob per distinct image).
const NB_TAGS: (usize, usize) = (61, 100);
/// The repository path prefix in the registry.
pub const REPO_PREFIX: &str = "bench/svc-";

pub const ALLOW_SEMVER: &str = r"regexp:^v?[0-9]+\.[0-9]+\.[0-9]+$";
pub const ALLOW_SHA: &str = r"regexp:^[0-9a-f]{7}$";
pub const ALLOW_BUILD: &str = r"regexp:^build-[0-9]+$";
pub const IGNORE_RC_LATEST: &str = "*-rc*,latest";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Full,
    Fifth,
}

impl Scale {
    pub fn repos(self) -> usize {
        match self {
            Scale::Full => 300,
            Scale::Fifth => 60,
        }
    }
    pub fn apps(self) -> usize {
        match self {
            Scale::Full => 1_000,
            Scale::Fifth => 200,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Scale::Full => "full",
            Scale::Fifth => "fifth",
        }
    }
    /// Wall-time target in seconds and peak-memory target in MB (none for the fifth).
    pub fn targets(self) -> (f64, Option<f64>) {
        match self {
            Scale::Full => (3.0, Some(150.0)),
            Scale::Fifth => (1.0, None),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// PRNG: splitmix64, good enough and stable forever.

#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut r = Rng(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        r.next_u64();
        r
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }
    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    /// Seven lowercase hex digits with at least one letter (a git short sha).
    pub fn sha7(&mut self) -> String {
        loop {
            let s = format!("{:07x}", self.next_u64() & 0xFFF_FFFF);
            if s.bytes().any(|b| b.is_ascii_alphabetic()) {
                return s;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Versions, as Masterminds semver orders them (only the shapes the generator produces).

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ver {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    /// Pre-release: (0 alpha | 1 beta | 2 rc, number).
    pub pre: Option<(u8, u64)>,
}

impl Ver {
    pub fn new(major: u64, minor: u64, patch: u64) -> Self {
        Ver { major, minor, patch, pre: None }
    }
    /// Parses `[v]M[.m[.p]][-alpha.N|-beta.N|-rc.N]`; anything else is not a version.
    pub fn parse(tag: &str) -> Option<Ver> {
        let s = tag.strip_prefix('v').unwrap_or(tag);
        let (core, pre) = match s.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (s, None),
        };
        let mut parts = core.split('.');
        let num = |p: Option<&str>| -> Option<Option<u64>> {
            match p {
                None => Some(None),
                Some(x) if !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit()) => x.parse().ok().map(Some),
                Some(_) => None,
            }
        };
        let major = num(parts.next())??;
        let minor = num(parts.next())?.unwrap_or(0);
        let patch = num(parts.next())?.unwrap_or(0);
        if parts.next().is_some() {
            return None;
        }
        let pre = match pre {
            None => None,
            Some(p) => {
                let (kind, n) = p.split_once('.')?;
                let kind = match kind {
                    "alpha" => 0,
                    "beta" => 1,
                    "rc" => 2,
                    _ => return None,
                };
                Some((kind, n.parse().ok()?))
            }
        };
        Some(Ver { major, minor, patch, pre })
    }
    fn key(&self) -> (u64, u64, u64, u8, u8, u64) {
        match self.pre {
            None => (self.major, self.minor, self.patch, 1, 0, 0),
            Some((k, n)) => (self.major, self.minor, self.patch, 0, k, n),
        }
    }
}

impl PartialOrd for Ver {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ver {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

impl fmt::Display for Ver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if let Some((k, n)) = self.pre {
            write!(f, "-{}.{}", ["alpha", "beta", "rc"][k as usize], n)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Repositories.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoKind {
    Semver,
    NewestBuild,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TagKind {
    /// `M.m.p` or `vM.m.p`.
    Release,
    /// `M.m.p-rc.N` and friends.
    Pre,
    /// `M.m` / `M` moving tags.
    Short,
    /// `latest`, `stable`, `edge`, `sha-<hex>`, `build-<n>`, `main-<sha>`: not semver.
    Other,
    /// A newest-build repository's git-sha tag `[0-9a-f]{7}`.
    Sha,
    /// A newest-build repository's `build-<n>` tag.
    Build,
}

#[derive(Debug, Clone)]
pub struct Tag {
    pub name: String,
    pub kind: TagKind,
    /// Index into [`Repo::images`].
    pub image: usize,
}

/// One image (a manifest, or an index of two when multi-arch) with its config `created`.
#[derive(Debug, Clone)]
pub struct ImageDef {
    /// RFC 3339.
    pub created: String,
}

#[derive(Debug, Clone)]
pub struct Repo {
    pub index: usize,
    pub kind: RepoKind,
    /// Every tag points at an image index (linux/amd64 + linux/arm64) instead of a manifest.
    pub multi_arch: bool,
    pub images: Vec<ImageDef>,
    pub tags: Vec<Tag>,
    /// Semver: indices of Release tags in version order (ascending).
    pub releases: Vec<usize>,
}

impl Repo {
    pub fn path(&self) -> String {
        repo_path(self.index)
    }
}

pub fn repo_path(index: usize) -> String {
    format!("{REPO_PREFIX}{index:03}")
}

/// How many tags each repository of block `b` holds (sums to TAGS_PER_BLOCK).
fn block_tag_counts(b: usize) -> [usize; REPOS_PER_BLOCK] {
    let mut rng = Rng::new(SEED, 0xB10C_0000 + b as u64);
    let mut counts = [0usize; REPOS_PER_BLOCK];
    let nb = rng.range(NB_TAGS.0, NB_TAGS.1);
    counts[NEWEST_BUILD_SLOT] = nb;
    // Semver repositories: skewed sizes (a few big ones, many around a few hundred).
    let mut weights = [0u64; REPOS_PER_BLOCK];
    for (i, w) in weights.iter_mut().enumerate() {
        if i != NEWEST_BUILD_SLOT {
            let base = rng.range(1, 16) as u64;
            *w = base * base + 8;
        }
    }
    let total_w: u64 = weights.iter().sum();
    let rest = TAGS_PER_BLOCK - nb;
    let mut given = 0;
    let mut last = 0;
    for i in 0..REPOS_PER_BLOCK {
        if i == NEWEST_BUILD_SLOT {
            continue;
        }
        counts[i] = (rest as u64 * weights[i] / total_w) as usize;
        given += counts[i];
        last = i;
    }
    counts[last] += rest - given;
    counts
}

pub fn generate_repo(index: usize) -> Repo {
    let counts = block_tag_counts(index / REPOS_PER_BLOCK);
    let n = counts[index % REPOS_PER_BLOCK];
    let mut rng = Rng::new(SEED, 0x4E50_0000 + index as u64);
    if index % REPOS_PER_BLOCK == NEWEST_BUILD_SLOT {
        newest_build_repo(index, n, &mut rng)
    } else {
        semver_repo(index, n, &mut rng)
    }
}

/// 2024-01-01T00:00:00Z plus `secs`.
fn rfc3339(secs: i64) -> String {
    let t = chrono::DateTime::from_timestamp(1_704_067_200 + secs, 0).expect("valid time");
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn newest_build_repo(index: usize, n: usize, rng: &mut Rng) -> Repo {
    let mut images = Vec::new();
    let mut tags = Vec::new();
    let mut t = rng.range(0, 86_400 * 30) as i64;
    let mut build = rng.range(100, 5_000);
    let mut seen = std::collections::HashSet::new();
    for k in 0..BUILDS_PER_NB_REPO {
        t += rng.range(3_600, 86_400 * 3) as i64;
        images.push(ImageDef { created: rfc3339(t) });
        let sha = loop {
            let s = rng.sha7();
            if seen.insert(s.clone()) {
                break s;
            }
        };
        tags.push(Tag { name: sha, kind: TagKind::Sha, image: k });
        build += rng.range(1, 9);
        tags.push(Tag { name: format!("build-{build}"), kind: TagKind::Build, image: k });
    }
    // Extra tags until n - 1: `main-<sha>` and a few releases, on random builds.
    let mut patch = 0;
    while tags.len() < n - 1 {
        let k = rng.below(BUILDS_PER_NB_REPO);
        if rng.chance(30) {
            tags.push(Tag { name: format!("1.0.{patch}"), kind: TagKind::Release, image: k });
            patch += 1;
        } else {
            let sha = tags[2 * k].name.clone();
            let name = format!("main-{sha}");
            if tags.iter().any(|t| t.name == name) {
                continue;
            }
            tags.push(Tag { name, kind: TagKind::Other, image: k });
        }
    }
    tags.push(Tag { name: "latest".into(), kind: TagKind::Other, image: BUILDS_PER_NB_REPO - 1 });
    Repo {
        index,
        kind: RepoKind::NewestBuild,
        multi_arch: index % 20 == NEWEST_BUILD_SLOT,
        images,
        tags,
        releases: Vec::new(),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    Plain,
    VPrefix,
    Mixed,
}

fn semver_repo(index: usize, n: usize, rng: &mut Rng) -> Repo {
    let style = match rng.below(100) {
        0..=59 => Style::Plain,
        60..=84 => Style::VPrefix,
        _ => Style::Mixed,
    };
    let mut tags: Vec<Tag> = Vec::with_capacity(n);
    let mut releases = Vec::new();
    let push = |tags: &mut Vec<Tag>, name: String, kind| {
        if tags.len() < n {
            tags.push(Tag { name, kind, image: 0 });
            true
        } else {
            false
        }
    };
    push(&mut tags, "latest".into(), TagKind::Other);
    if rng.chance(40) {
        push(&mut tags, "stable".into(), TagKind::Other);
    }
    if rng.chance(30) {
        push(&mut tags, "edge".into(), TagKind::Other);
    }
    let v = |style: Style, rng: &mut Rng| match style {
        Style::Plain => "",
        Style::VPrefix => "v",
        Style::Mixed => {
            if rng.chance(50) {
                "v"
            } else {
                ""
            }
        }
    };
    let mut major = rng.range(0, 2) as u64;
    let mut build = rng.range(1_000, 90_000);
    'outer: loop {
        let minors = rng.range(2, 12) as u64;
        for minor in 0..minors {
            let patches = rng.range(1, 20) as u64;
            for patch in 0..patches {
                if rng.chance(12) {
                    let kinds: &[u8] = if rng.chance(60) { &[2] } else { &[0, 1, 2] };
                    for &k in kinds {
                        for num in 1..=rng.range(1, 3) as u64 {
                            let ver = Ver { major, minor, patch, pre: Some((k, num)) };
                            let p = v(style, rng);
                            if !push(&mut tags, format!("{p}{ver}"), TagKind::Pre) {
                                break 'outer;
                            }
                        }
                    }
                }
                let ver = Ver::new(major, minor, patch);
                let p = v(style, rng);
                if !push(&mut tags, format!("{p}{ver}"), TagKind::Release) {
                    break 'outer;
                }
                releases.push(tags.len() - 1);
                if style == Style::Mixed && rng.chance(25) {
                    let other = if p.is_empty() { "v" } else { "" };
                    if !push(&mut tags, format!("{other}{ver}"), TagKind::Release) {
                        break 'outer;
                    }
                }
                if rng.chance(15) {
                    build += rng.range(1, 40);
                    let name = format!("sha-{}", rng.sha7());
                    let name = if rng.chance(50) { name } else { format!("build-{build}") };
                    if !push(&mut tags, name, TagKind::Other) {
                        break 'outer;
                    }
                }
            }
            if rng.chance(50) {
                let p = if style == Style::VPrefix { "v" } else { "" };
                if !push(&mut tags, format!("{p}{major}.{minor}"), TagKind::Short) {
                    break 'outer;
                }
            }
        }
        if rng.chance(40) {
            let p = if style == Style::VPrefix { "v" } else { "" };
            if !push(&mut tags, format!("{p}{major}"), TagKind::Short) {
                break 'outer;
            }
        }
        major += 1;
    }
    // Rare duplicates (a sha collision) would make the tag count lie: drop them.
    let mut seen = std::collections::HashSet::new();
    let before = tags.len();
    tags.retain(|t| seen.insert(t.name.clone()));
    assert_eq!(before, tags.len(), "duplicate tag in repository {index}");
    releases.sort_by_key(|&i| Ver::parse(&tags[i].name));
    let created = rfc3339(rng.range(0, 86_400 * 300) as i64);
    Repo {
        index,
        kind: RepoKind::Semver,
        multi_arch: index.is_multiple_of(3),
        images: vec![ImageDef { created }],
        tags,
        releases,
    }
}

// ---------------------------------------------------------------------------------------------
// Applications.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// kustomization.yaml `images:` entry named by the full image name.
    Kustomize,
    /// kustomization.yaml `images:` entry with a short `name` and `newName`, found through
    /// the `kustomize.image-name` annotation.
    KustomizeNewName,
    /// A plain Deployment with `image: <name>:<tag>`.
    Plain,
}

#[derive(Debug, Clone)]
pub struct AppImage {
    pub alias: String,
    pub repo: usize,
    /// `update-strategy` annotation, when written.
    pub strategy: Option<&'static str>,
    pub constraint: Option<String>,
    pub allow_tags: Option<&'static str>,
    pub ignore_tags: Option<&'static str>,
    /// The tag git says is deployed.
    pub current: String,
    /// What the generator expects as `proposed`, normalized ([`normalize`]); more than one
    /// entry where the product's rules leave room (semver without a constraint: pre-releases).
    pub expected: Vec<Option<String>>,
}

#[derive(Debug, Clone)]
pub struct App {
    pub name: String,
    pub dest_namespace: String,
    pub layout: Layout,
    pub images: Vec<AppImage>,
    /// `ignore-tags` written app-wide instead of per alias (single-image apps only).
    pub app_wide_ignore: bool,
}

/// What a proposed tag is compared by: semver tags by version (spelling aside), others as is.
pub fn normalize(repo: &Repo, tag: &str) -> String {
    match repo.kind {
        RepoKind::Semver => Ver::parse(tag).map(|v| v.to_string()).unwrap_or_else(|| tag.to_string()),
        RepoKind::NewestBuild => tag.to_string(),
    }
}

#[derive(Debug, Clone, Copy)]
enum Constraint {
    None,
    Caret(u64, u64),
    Tilde(u64, u64),
    Range(u64, u64),
}

impl Constraint {
    fn text(self) -> Option<String> {
        match self {
            Constraint::None => None,
            Constraint::Caret(a, b) => Some(format!("^{a}.{b}")),
            Constraint::Tilde(a, b) => Some(format!("~{a}.{b}")),
            Constraint::Range(a, b) => Some(format!(">={a}.0 <{b}.0")),
        }
    }
    /// Masterminds semantics: with a constraint, pre-releases never match here.
    fn matches(self, v: &Ver) -> bool {
        let lo_hi = |lo: Ver, hi: Ver| v.pre.is_none() && *v >= lo && *v < hi;
        match self {
            Constraint::None => true,
            Constraint::Caret(0, b) => lo_hi(Ver::new(0, b, 0), Ver::new(0, b + 1, 0)),
            Constraint::Caret(a, b) => lo_hi(Ver::new(a, b, 0), Ver::new(a + 1, 0, 0)),
            Constraint::Tilde(a, b) => lo_hi(Ver::new(a, b, 0), Ver::new(a, b + 1, 0)),
            Constraint::Range(a, b) => lo_hi(Ver::new(a, 0, 0), Ver::new(b, 0, 0)),
        }
    }
}

fn glob_ignored(ignore: Option<&str>, tag: &str) -> bool {
    match ignore {
        Some(IGNORE_RC_LATEST) => tag.contains("-rc") || tag == "latest",
        Some("latest") => tag == "latest",
        None => false,
        Some(other) => panic!("no model for ignore-tags {other}"),
    }
}

/// The highest acceptable version of a semver repository, pre-releases allowed or not.
fn semver_best(repo: &Repo, c: Constraint, allow: Option<&str>, ignore: Option<&str>, pre_ok: bool) -> Option<Ver> {
    repo.tags
        .iter()
        .filter(|t| match allow {
            None => true,
            Some(ALLOW_SEMVER) => t.kind == TagKind::Release,
            Some(other) => panic!("no model for allow-tags {other}"),
        })
        .filter(|t| !glob_ignored(ignore, &t.name))
        .filter_map(|t| Ver::parse(&t.name))
        .filter(|v| pre_ok || v.pre.is_none())
        .filter(|v| c.matches(v))
        .max()
}

fn semver_image(repo: &Repo, alias: String, rng: &mut Rng) -> AppImage {
    let rels = &repo.releases;
    // Mostly recent-ish releases, so updates are small as in real fleets.
    let lo = rels.len() * 3 / 10;
    let mut cur_i = rels[rng.range(lo, rels.len() - 1)];
    let cur = Ver::parse(&repo.tags[cur_i].name).expect("release parses");
    let c = match rng.below(100) {
        0..=34 => Constraint::None,
        35..=59 => Constraint::Caret(cur.major, cur.minor),
        60..=79 => Constraint::Tilde(cur.major, cur.minor),
        _ => {
            if (1..=2).contains(&cur.major) {
                Constraint::Range(1, 3)
            } else {
                Constraint::Range(cur.major, cur.major + 2)
            }
        }
    };
    let allow = rng.chance(25).then_some(ALLOW_SEMVER);
    let ignore = rng.chance(30).then_some(IGNORE_RC_LATEST);
    // Already up to date, one in eight.
    if rng.chance(12)
        && let Some(best) = semver_best(repo, c, allow, ignore, false)
        && let Some(&i) = rels.iter().find(|&&i| Ver::parse(&repo.tags[i].name) == Some(best))
    {
        cur_i = i;
    }
    let current = repo.tags[cur_i].name.clone();
    let cur = Ver::parse(&current).expect("release parses");
    let outcome = |best: Option<Ver>| best.filter(|b| *b > cur).map(|b| b.to_string());
    let mut expected = vec![outcome(semver_best(repo, c, allow, ignore, false))];
    if matches!(c, Constraint::None) {
        let with_pre = outcome(semver_best(repo, c, allow, ignore, true));
        if !expected.contains(&with_pre) {
            expected.push(with_pre);
        }
    }
    let strategy = match rng.below(10) {
        0..=5 => None,
        _ => Some("semver"),
    };
    AppImage {
        alias,
        repo: repo.index,
        strategy,
        constraint: c.text(),
        allow_tags: allow,
        ignore_tags: ignore,
        current,
        expected,
    }
}

fn newest_build_image(repo: &Repo, alias: String, rng: &mut Rng) -> AppImage {
    // One tagging scheme per repository (as a team's CI has), seven in ten by git sha: the
    // allowed tags are then the repository's 30 builds, one manifest request each.
    let (allow, kind) =
        if (repo.index / REPOS_PER_BLOCK) % 10 < 7 { (ALLOW_SHA, TagKind::Sha) } else { (ALLOW_BUILD, TagKind::Build) };
    let allowed: Vec<&Tag> = repo.tags.iter().filter(|t| t.kind == kind).collect();
    let newest = allowed.iter().max_by_key(|t| &repo.images[t.image].created).expect("builds");
    let current = if rng.chance(10) { newest } else { allowed[rng.below(allowed.len())] };
    let expected = if current.image == newest.image { None } else { Some(newest.name.clone()) };
    AppImage {
        alias,
        repo: repo.index,
        strategy: Some(if rng.chance(70) { "newest-build" } else { "latest" }),
        constraint: None,
        allow_tags: Some(allow),
        ignore_tags: rng.chance(50).then_some("latest"),
        current: current.name.clone(),
        expected: vec![expected],
    }
}

const ALIASES: [&str; 3] = ["app", "sidecar", "worker"];

pub fn generate_apps(scale: Scale, repos: &[Repo]) -> Vec<App> {
    let mut rng = Rng::new(SEED, 0xA995_0000 + scale.repos() as u64);
    (0..scale.apps())
        .map(|i| {
            let n = match rng.below(10) {
                0..=4 => 1,
                5..=7 => 2,
                _ => 3,
            };
            let mut chosen: Vec<usize> = Vec::new();
            while chosen.len() < n {
                // One image in ten is a newest-build one; semver draws are skewed towards a few
                // popular repositories per block (slots 0-3 get twice the uniform share).
                let block = rng.below(repos.len() / REPOS_PER_BLOCK) * REPOS_PER_BLOCK;
                let r = if rng.chance(10) {
                    block + NEWEST_BUILD_SLOT
                } else if rng.chance(50) {
                    block + rng.below(4)
                } else {
                    loop {
                        let slot = rng.below(REPOS_PER_BLOCK);
                        if slot != NEWEST_BUILD_SLOT {
                            break block + slot;
                        }
                    }
                };
                if !chosen.contains(&r) {
                    chosen.push(r);
                }
            }
            let images: Vec<AppImage> = chosen
                .iter()
                .enumerate()
                .map(|(k, &r)| {
                    let repo = &repos[r];
                    let alias = ALIASES[k].to_string();
                    match repo.kind {
                        RepoKind::Semver => semver_image(repo, alias, &mut rng),
                        RepoKind::NewestBuild => newest_build_image(repo, alias, &mut rng),
                    }
                })
                .collect();
            let layout = match rng.below(100) {
                0..=64 => Layout::Kustomize,
                65..=74 => Layout::KustomizeNewName,
                _ => Layout::Plain,
            };
            let app_wide_ignore = images.len() == 1 && images[0].ignore_tags.is_some() && rng.chance(40);
            App {
                name: format!("app-{i:04}"),
                dest_namespace: format!("team-{:02}", i % 25),
                layout,
                images,
                app_wide_ignore,
            }
        })
        .collect()
}

pub struct Fleet {
    pub scale: Scale,
    pub repos: Vec<Repo>,
    pub apps: Vec<App>,
}

impl Fleet {
    pub fn new(scale: Scale) -> Self {
        let repos: Vec<Repo> = (0..scale.repos()).map(generate_repo).collect();
        let apps = generate_apps(scale, &repos);
        Fleet { scale, repos, apps }
    }
    pub fn tag_count(&self) -> usize {
        self.repos.iter().map(|r| r.tags.len()).sum()
    }
    pub fn image_count(&self) -> usize {
        self.apps.iter().map(|a| a.images.len()).sum()
    }
    pub fn distinct_repos_used(&self) -> usize {
        let mut used = vec![false; self.repos.len()];
        for a in &self.apps {
            for i in &a.images {
                used[i.repo] = true;
            }
        }
        used.iter().filter(|u| **u).count()
    }
}

impl Fleet {
    /// The fewest registry requests a plan can make: one tag list per distinct repository, and
    /// for newest-build one manifest per allowed tag (the union over the Applications), one
    /// platform manifest per distinct index and one config blob per distinct image.
    pub fn request_floor(&self) -> usize {
        let mut allowed: Vec<std::collections::BTreeSet<TagKind>> = vec![Default::default(); self.repos.len()];
        let mut used = vec![false; self.repos.len()];
        for img in self.apps.iter().flat_map(|a| &a.images) {
            used[img.repo] = true;
            match img.allow_tags {
                Some(ALLOW_SHA) => allowed[img.repo].insert(TagKind::Sha),
                Some(ALLOW_BUILD) => allowed[img.repo].insert(TagKind::Build),
                _ => false,
            };
        }
        let mut n = used.iter().filter(|u| **u).count();
        for (repo, kinds) in self.repos.iter().zip(&allowed) {
            let tags: Vec<&Tag> = repo.tags.iter().filter(|t| kinds.contains(&t.kind)).collect();
            let images: std::collections::BTreeSet<usize> = tags.iter().map(|t| t.image).collect();
            n += tags.len() + images.len() * if repo.multi_arch { 2 } else { 1 };
        }
        n
    }
}
