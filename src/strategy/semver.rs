//! Semantic versions and version constraints with the rules of Masterminds semver v3, the
//! library argocd-image-updater uses (Cargo's `semver` crate differs: short versions, `v`
//! prefixes, `||`, hyphen ranges and its pre-release rule). Written by hand from the
//! Masterminds documentation and behaviour; pure and panic-free on any input.

use std::cmp::Ordering;
use std::fmt;

/// A tag read as a version, the way Masterminds' (coercing) `NewVersion` reads it:
///
/// - an optional lowercase `v` prefix (`v1.2.3`);
/// - one to three numeric parts, missing ones are 0 (`1` = `1.0.0`, `1.2` = `1.2.0`); leading
///   zeros are accepted (`01.2` = `1.2.0`), as Masterminds coerces them;
/// - an optional pre-release (`-rc.1`): dot-separated identifiers of ASCII letters, digits and
///   `-`, none empty, numeric ones without leading zeros;
/// - optional build metadata (`+build.5`), which never takes part in precedence.
///
/// Anything else is not a version: `latest`, `1.2.3.4`, `1.2.x`, git SHAs such as `a1b2c3d`.
///
/// One deliberate difference from Masterminds: a bare run of seven or more digits (`1234567`,
/// `0123abc` would already fail) is *not* a version. Short git SHAs are seven or more hex digits
/// and about one in twenty-five consists of decimal digits only; Masterminds would read such a
/// SHA as version 1234567.0.0 and rank it above every real release. Tags that really are long
/// numbers (dates like `20240131`) are better served by the `alphabetical` strategy, or by
/// spelling them with a `v` prefix, which keeps them versions.
#[derive(Debug, Clone)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    /// Pre-release without the leading `-`; empty for a release.
    pub pre: String,
    original: String,
}

/// Digits in a bare number from which on a tag is taken for a git SHA rather than a version.
const SHA_LIKE_MIN_DIGITS: usize = 7;

impl Version {
    /// Reads a tag as a version; `None` when it is not one.
    pub fn parse(input: &str) -> Option<Version> {
        if looks_like_numeric_sha(input) {
            return None;
        }
        let body = input.strip_prefix('v').unwrap_or(input);
        let (body, build) = match body.split_once('+') {
            Some((b, m)) => (b, Some(m)),
            None => (body, None),
        };
        let (core, pre) = match body.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (body, None),
        };
        let mut parts = core.split('.');
        let major = parse_number(parts.next()?)?;
        let minor = parts.next().map(parse_number).unwrap_or(Some(0))?;
        let patch = parts.next().map(parse_number).unwrap_or(Some(0))?;
        if parts.next().is_some() {
            return None;
        }
        if pre.is_some_and(|p| !valid_prerelease(p)) || build.is_some_and(|m| !valid_build(m)) {
            return None;
        }
        Some(Version {
            major,
            minor,
            patch,
            pre: pre.unwrap_or_default().to_string(),
            original: input.to_string(),
        })
    }

    pub fn is_prerelease(&self) -> bool {
        !self.pre.is_empty()
    }

    /// Whether the tag was written with a `v` prefix.
    pub fn has_v_prefix(&self) -> bool {
        self.original.starts_with('v')
    }

    fn triple(&self) -> (u64, u64, u64) {
        (self.major, self.minor, self.patch)
    }
}

fn looks_like_numeric_sha(input: &str) -> bool {
    input.len() >= SHA_LIKE_MIN_DIGITS && input.bytes().all(|b| b.is_ascii_digit())
}

/// A numeric version part: ASCII digits only (no sign, no spaces), fitting in a u64.
fn parse_number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

/// Semver 2.0 pre-release: non-empty identifiers; numeric ones without leading zeros.
fn valid_prerelease(p: &str) -> bool {
    p.split('.').all(|id| {
        let numeric = id.bytes().all(|b| b.is_ascii_digit());
        !id.is_empty() && id.bytes().all(is_ident_char) && !(numeric && id.len() > 1 && id.starts_with('0'))
    })
}

fn valid_build(m: &str) -> bool {
    m.split('.').all(|id| !id.is_empty() && id.bytes().all(is_ident_char))
}

/// Pre-release precedence per semver 2.0 §11: identifier by identifier, numbers numerically
/// and below alphanumerics, alphanumerics in ASCII order, a shorter list first on a tie.
fn compare_prerelease(a: &str, b: &str) -> Ordering {
    let mut xs = a.split('.');
    let mut ys = b.split('.');
    loop {
        match (xs.next(), ys.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let ord = compare_identifier(x, y);
                if ord != Ordering::Equal {
                    return ord;
                }
            }
        }
    }
}

fn compare_identifier(x: &str, y: &str) -> Ordering {
    match (x.parse::<u64>(), y.parse::<u64>()) {
        (Ok(a), Ok(b)) => a.cmp(&b),
        (Ok(_), Err(_)) => Ordering::Less,
        (Err(_), Ok(_)) => Ordering::Greater,
        (Err(_), Err(_)) => x.cmp(y),
    }
}

impl Ord for Version {
    /// Semver precedence: build metadata and spelling (`v`, short forms) do not count.
    fn cmp(&self, other: &Self) -> Ordering {
        self.triple()
            .cmp(&other.triple())
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                // A release ranks above its own pre-releases.
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => compare_prerelease(&self.pre, &other.pre),
            })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    /// Same precedence: `1.2`, `v1.2.0` and `1.2.0+b7` are equal.
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

/// A constraint that cannot be parsed; carries the constraint text and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid semver constraint {text:?}: {reason}")]
pub struct ConstraintError {
    pub text: String,
    pub reason: String,
}

/// The comparison operator of one comparator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// `=` or no operator: equality, or a tilde range when the version has wildcards.
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    /// `~` and `~>`.
    Tilde,
    Caret,
}

/// Which part of the comparator's version was a wildcard or left out; every later part is
/// then a wildcard too. Masterminds treats a left-out part (`1.2`) like `1.2.x`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wild {
    None,
    /// `*`, `x`: everything.
    Major,
    /// `1`, `1.x`.
    Minor,
    /// `1.2`, `1.2.x`.
    Patch,
}

#[derive(Debug, Clone)]
struct Comparator {
    op: Op,
    /// The version with wildcards replaced by 0, keeping any pre-release.
    version: Version,
    wild: Wild,
}

#[derive(Debug, Clone)]
struct AndGroup {
    comparators: Vec<Comparator>,
    /// Masterminds' pre-release rule: a pre-release version can only satisfy a group in which
    /// some comparator carries a pre-release (`>=1.2.3-0`), whatever its major.minor.patch.
    allows_prerelease: bool,
}

/// A version constraint: `||`-separated groups of comma- or space-separated comparators.
///
/// Supported: `=`, `!=`, `>`, `<`, `>=` (`=>`), `<=` (`=<`), `~` / `~>`, `^`, x-ranges (`1.2.x`,
/// `1.*`, `*`, `1.x`, and short versions like `1.2` which mean `1.2.x`), hyphen ranges
/// (`1.2 - 1.4.5`, spaces required: `1.2-1.4.5` is version 1.2.0 with pre-release `1.4.5`).
///
/// Follows Masterminds' implementation, quirks included (`!=*` only excludes 0.0.0, `<=*` only
/// admits 0.x), with one exception: `^*` matches any release, as Masterminds documents it,
/// where its code only admits 0.0.x.
#[derive(Debug, Clone)]
pub struct Constraint {
    groups: Vec<AndGroup>,
    text: String,
}

impl Constraint {
    pub fn parse(text: &str) -> Result<Constraint, ConstraintError> {
        let fail = |reason: String| ConstraintError {
            text: text.to_string(),
            reason,
        };
        let mut groups = Vec::new();
        for part in text.split("||") {
            let comparators = parse_and_group(part).map_err(fail)?;
            let allows_prerelease = comparators.iter().any(|c| c.version.is_prerelease());
            groups.push(AndGroup {
                comparators,
                allows_prerelease,
            });
        }
        Ok(Constraint {
            groups,
            text: text.to_string(),
        })
    }

    /// Whether `v` satisfies the constraint (some group accepts it).
    pub fn matches(&self, v: &Version) -> bool {
        self.groups
            .iter()
            .any(|g| (g.allows_prerelease || !v.is_prerelease()) && g.comparators.iter().all(|c| c.matches(v)))
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Operators, longest first so that `>=` is not read as `>` followed by `=1.2`.
const OPERATORS: [(&str, Op); 11] = [
    ("!=", Op::Ne),
    (">=", Op::Ge),
    ("=>", Op::Ge),
    ("<=", Op::Le),
    ("=<", Op::Le),
    ("~>", Op::Tilde),
    (">", Op::Gt),
    ("<", Op::Lt),
    ("=", Op::Eq),
    ("~", Op::Tilde),
    ("^", Op::Caret),
];

/// A tiny cursor over one `||` group.
struct Scanner<'a> {
    rest: &'a str,
}

impl<'a> Scanner<'a> {
    /// Skips whitespace; tells whether there was any.
    fn skip_space(&mut self) -> bool {
        let trimmed = self.rest.trim_start();
        let skipped = trimmed.len() != self.rest.len();
        self.rest = trimmed;
        skipped
    }

    fn eat(&mut self, prefix: &str) -> bool {
        match self.rest.strip_prefix(prefix) {
            Some(r) => {
                self.rest = r;
                true
            }
            None => false,
        }
    }

    fn operator(&mut self) -> Op {
        for (text, op) in OPERATORS {
            if self.eat(text) {
                return op;
            }
        }
        Op::Eq
    }

    /// A version pattern runs until whitespace or a comma.
    fn word(&mut self) -> &'a str {
        let end = self
            .rest
            .find(|c: char| c.is_whitespace() || c == ',')
            .unwrap_or(self.rest.len());
        let (word, rest) = self.rest.split_at(end);
        self.rest = rest;
        word
    }

    /// ` - ` after a bare version: the second half of a hyphen range.
    fn hyphen(&mut self) -> bool {
        let saved = self.rest;
        if self.skip_space() && self.eat("-") && self.skip_space() {
            return true;
        }
        self.rest = saved;
        false
    }
}

fn parse_and_group(text: &str) -> Result<Vec<Comparator>, String> {
    let mut s = Scanner { rest: text };
    let mut out = Vec::new();
    s.skip_space();
    if s.rest.is_empty() {
        return Err("empty constraint".to_string());
    }
    while !s.rest.is_empty() {
        let explicit_op = !s.rest.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '*');
        let op = s.operator();
        s.skip_space();
        let first = parse_pattern(s.word())?;
        if !explicit_op && s.hyphen() {
            let second = parse_pattern(s.word())?;
            out.push(Comparator {
                op: Op::Ge,
                version: first.0,
                wild: first.1,
            });
            out.push(Comparator {
                op: Op::Le,
                version: second.0,
                wild: second.1,
            });
        } else {
            out.push(Comparator {
                op,
                version: first.0,
                wild: first.1,
            });
        }
        let spaced = s.skip_space();
        if s.eat(",") {
            s.skip_space();
            if s.rest.is_empty() {
                return Err("nothing after ','".to_string());
            }
        } else if !spaced && !s.rest.is_empty() {
            return Err(format!("unexpected {:?}", s.rest));
        }
    }
    Ok(out)
}

fn is_wildcard(part: &str) -> bool {
    matches!(part, "x" | "X" | "*")
}

/// Reads `v1.2.x-rc.1+b`: a version whose parts may be wildcards or left out.
fn parse_pattern(word: &str) -> Result<(Version, Wild), String> {
    let bad = || format!("{word:?} is not a version");
    if word.is_empty() {
        return Err("missing version".to_string());
    }
    let body = word.strip_prefix('v').unwrap_or(word);
    let (body, build) = match body.split_once('+') {
        Some((b, m)) => (b, Some(m)),
        None => (body, None),
    };
    let (core, pre) = match body.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (body, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() > 3 {
        return Err(bad());
    }
    let mut numbers = [0u64; 3];
    let mut wild = Wild::None;
    for (i, part) in parts.iter().enumerate() {
        if is_wildcard(part) {
            wild = [Wild::Major, Wild::Minor, Wild::Patch][i];
            break;
        }
        numbers[i] = parse_number(part).ok_or_else(bad)?;
    }
    if wild == Wild::None && parts.len() < 3 {
        wild = [Wild::Major, Wild::Minor, Wild::Patch][parts.len()];
    }
    // Parts after a wildcard must still be well formed (`1.x.x`, `1.x.3`).
    if parts.iter().any(|p| !is_wildcard(p) && parse_number(p).is_none()) {
        return Err(bad());
    }
    if pre.is_some_and(|p| !valid_prerelease(p)) {
        return Err(format!("{word:?} has an invalid pre-release"));
    }
    if build.is_some_and(|m| !valid_build(m)) {
        return Err(format!("{word:?} has invalid build metadata"));
    }
    let version = Version {
        major: numbers[0],
        minor: numbers[1],
        patch: numbers[2],
        pre: pre.unwrap_or_default().to_string(),
        original: word.to_string(),
    };
    Ok((version, wild))
}

impl Comparator {
    fn matches(&self, v: &Version) -> bool {
        let c = &self.version;
        match self.op {
            Op::Eq if self.wild == Wild::None => v == c,
            Op::Eq | Op::Tilde => self.tilde(v),
            Op::Ne => self.not_equal(v),
            Op::Gt => self.greater(v),
            Op::Lt => v < c,
            Op::Ge => v >= c,
            Op::Le => self.less_equal(v),
            Op::Caret => self.caret(v),
        }
    }

    /// `~1.2.3` = `>=1.2.3 <1.3.0`, `~1` = `>=1 <2`, `~0.0.0` and `~*` = anything.
    fn tilde(&self, v: &Version) -> bool {
        let c = &self.version;
        if v < c {
            return false;
        }
        if c.triple() == (0, 0, 0) && !matches!(self.wild, Wild::Minor | Wild::Patch) {
            return true;
        }
        v.major == c.major && (v.minor == c.minor || self.wild == Wild::Minor)
    }

    /// `^1.2.3` = `>=1.2.3 <2`, `^0.2.3` = `>=0.2.3 <0.3`, `^0.0.3` = `>=0.0.3 <0.0.4`,
    /// `^0.0` = `<0.1`, `^0` = `<1`, `^1.x` = `>=1 <2`.
    fn caret(&self, v: &Version) -> bool {
        let c = &self.version;
        if self.wild == Wild::Major {
            // Documented as "any"; see the note on `Constraint`.
            return true;
        }
        if v < c {
            return false;
        }
        if c.major > 0 || self.wild == Wild::Minor {
            return v.major == c.major;
        }
        if v.major > 0 {
            return false;
        }
        if c.minor > 0 || self.wild == Wild::Patch {
            return v.minor == c.minor;
        }
        v.minor == 0 && v.patch == c.patch
    }

    /// `!=4.1` excludes all of 4.1.x; `!=4.x` all of 4.x.
    fn not_equal(&self, v: &Version) -> bool {
        let c = &self.version;
        match self.wild {
            Wild::None => v != c,
            _ if v.major != c.major => true,
            Wild::Minor => false,
            _ if v.minor != c.minor => true,
            Wild::Patch => v.pre != c.pre,
            // `!=*`: Masterminds compares against 0.0.0 here.
            Wild::Major => v != c,
        }
    }

    /// `>1.2` needs 1.3 or later (not 1.2.5), `>1` needs 2 or later.
    fn greater(&self, v: &Version) -> bool {
        let c = &self.version;
        match self.wild {
            Wild::None | Wild::Major => v > c,
            _ if v.major != c.major => v.major > c.major,
            Wild::Minor => false,
            Wild::Patch => v.minor > c.minor,
        }
    }

    /// `<=1.2` admits all of 1.2.x, `<=2.x` all of 2.x.
    fn less_equal(&self, v: &Version) -> bool {
        let c = &self.version;
        if self.wild == Wild::None {
            return v <= c;
        }
        if v.major > c.major {
            return false;
        }
        !(v.major == c.major && v.minor > c.minor && self.wild != Wild::Minor)
    }
}

#[cfg(test)]
#[rustfmt::skip] // one case per line reads better than rustfmt's exploded tuples
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        // (name, tag, Some((major, minor, patch, pre)) or None)
        type Parts<'a> = Option<(u64, u64, u64, &'a str)>;
        let cases: &[(&str, &str, Parts)] = &[
            ("full", "1.2.3", Some((1, 2, 3, ""))),
            ("v prefix", "v1.2.3", Some((1, 2, 3, ""))),
            ("short major.minor", "1.2", Some((1, 2, 0, ""))),
            ("short major", "1", Some((1, 0, 0, ""))),
            ("short with v", "v2", Some((2, 0, 0, ""))),
            ("pre-release", "1.2.3-rc.1", Some((1, 2, 3, "rc.1"))),
            ("pre-release on short", "1.2-beta", Some((1, 2, 0, "beta"))),
            ("build metadata", "1.2.3+build.7", Some((1, 2, 3, ""))),
            ("pre and build", "1.2.3-alpha+001", Some((1, 2, 3, "alpha"))),
            ("leading zeros coerced", "01.02.03", Some((1, 2, 3, ""))),
            ("hyphen in pre", "1.0.0-x-y-z.--", Some((1, 0, 0, "x-y-z.--"))),
            ("short build number", "123456", Some((123456, 0, 0, ""))),
            ("long number with v", "v20240131", Some((20240131, 0, 0, ""))),
            ("latest", "latest", None),
            ("four parts", "1.2.3.4", None),
            ("git sha", "a1b2c3d", None),
            ("git sha digits first", "3e4f5a6", None),
            ("all-digit git sha", "1234567", None),
            ("long all-digit sha", "0123456789", None),
            ("capital V", "V1.2.3", None),
            ("empty", "", None),
            ("only v", "v", None),
            ("trailing dot", "1.2.", None),
            ("empty pre", "1.2.3-", None),
            ("empty pre identifier", "1.2.3-rc..1", None),
            ("numeric pre with leading zero", "1.2.3-01", None),
            ("empty build", "1.2.3+", None),
            ("underscore in pre", "1.2.3-rc_1", None),
            ("space", " 1.2.3", None),
            ("x is not a version", "1.2.x", None),
            ("overflow", "99999999999999999999.0.0", None),
            ("negative", "-1.0.0", None),
            ("plus sign", "+1.0.0", None),
        ];
        for (name, tag, want) in cases {
            let got = Version::parse(tag).map(|v| (v.major, v.minor, v.patch, v.pre.clone()));
            let want = want.map(|(a, b, c, p)| (a, b, c, p.to_string()));
            assert_eq!(got, want, "case {name}: {tag:?}");
        }
    }

    #[test]
    fn version_precedence() {
        // (name, lower, higher): lower < higher
        let less = [
            ("patch", "1.2.3", "1.2.4"),
            ("minor beats patch", "1.2.9", "1.3.0"),
            ("numeric not lexical", "1.9.0", "1.10.0"),
            ("pre below release", "1.0.0-rc.1", "1.0.0"),
            ("alpha below alpha.1", "1.0.0-alpha", "1.0.0-alpha.1"),
            ("numeric below alphanumeric", "1.0.0-alpha.1", "1.0.0-alpha.beta"),
            ("beta.2 below beta.11", "1.0.0-beta.2", "1.0.0-beta.11"),
            ("rc.1 above beta.11", "1.0.0-beta.11", "1.0.0-rc.1"),
            ("ascii order uppercase first", "1.0.0-BETA", "1.0.0-alpha"),
        ];
        for (name, lo, hi) in less {
            let (lo_v, hi_v) = (Version::parse(lo), Version::parse(hi));
            assert!(lo_v.is_some() && hi_v.is_some(), "case {name}: both parse");
            assert!(lo_v < hi_v, "case {name}: {lo} < {hi}");
        }
        let equal = [
            ("v prefix", "1.2.3", "v1.2.3"),
            ("short form", "1.2", "1.2.0"),
            ("build ignored", "1.2.3+a", "1.2.3+b"),
        ];
        for (name, a, b) in equal {
            assert_eq!(Version::parse(a), Version::parse(b), "case {name}: {a} == {b}");
            assert!(Version::parse(a).is_some(), "case {name}: parses");
        }
    }

    #[test]
    fn constraints_match_like_masterminds() {
        // (name, constraint, version, expected)
        let cases = [
            // equality and short versions
            ("eq exact", "=2.0.0", "2.0.0", true),
            ("eq exact other", "=2.0.0", "1.2.3", false),
            ("eq short is a range", "=2.0", "2.0.1", true),
            ("bare short", "4.1", "4.1.0", true),
            ("bare major", "2", "2.1.1", true),
            ("bare major other", "2", "3.4.5", false),
            ("bare minor other", "2.1", "2.2.1", false),
            ("v prefix in constraint", ">=v1.2", "1.3.0", true),
            ("v prefix in version", "^1.2", "v1.9.0", true),
            ("short version checked", ">= 1.2.3", "1.3", true),
            // not equal
            ("ne exact", "!=4.1.0", "4.1.0", false),
            ("ne exact other", "!=4.1.0", "4.1.1", true),
            ("ne short excludes patch range", "!=4.1", "4.1.1", false),
            ("ne short other major", "!=4.1", "5.1.0", true),
            ("ne skips pre-release", "!=4.1", "5.1.0-alpha.1", false),
            ("ne with pre admits release", "!=4.1-alpha", "4.1.0", true),
            ("ne x", "!=4.x", "4.1.0", false),
            // greater / less
            ("lt major", "<11", "0.1.0", true),
            ("lt major same", "<11", "11.1.0", false),
            ("lt short", "<1.1", "1.1.1", false),
            ("le major admits minors", "<=11", "11.2.3", true),
            ("le major above", "<=11", "12.2.3", false),
            ("le short admits patches", "<=1.1", "1.1.1", true),
            ("le short above", "<=1.1", "1.2.3", false),
            ("le x", "<= 2.x", "2.9.9", true),
            ("gt short needs next minor", ">1.1", "1.1.0", false),
            ("gt short next minor", ">11.1", "11.2.1", true),
            ("gt short same minor patch", ">11.1", "11.1.1", false),
            ("gt major needs next major", ">11", "11.1.0", false),
            ("gt exact", ">1.2.3", "1.2.4", true),
            ("ge short", ">=11.1", "11.0.2", false),
            ("ge short same", ">=1.1", "1.1.0", true),
            ("ge zero", ">=0", "0", true),
            // pre-releases
            ("star skips pre", "*", "1.2.3-alpha.1", false),
            ("star-0 admits pre", "*-0", "1.2.3-alpha.1", true),
            ("ge skips pre", ">=0", "0.0.1-alpha", false),
            ("ge-0 admits pre", ">=0-0", "0.0.1-alpha", true),
            ("ge pre admits pre of other version", ">=1.2.3-0", "3.4.5-beta.1", true),
            ("gt pre", ">1.2.3-alpha.1", "1.2.3-alpha.2", true),
            ("gt pre other triple", ">1.2.3-alpha.1", "1.3.3-alpha.2", true),
            ("gt-0 on major range", ">0-0", "0.0.1-alpha", false),
            ("lt pre", "<0-z", "0.0.0-alpha", true),
            ("caret skips pre", "^1.2.0", "1.2.1-alpha.1", false),
            ("caret pre admits pre", "^1.2.0-alpha.0", "1.2.1-alpha.1", true),
            ("caret pre lower pre", "^1.2.0-alpha.2", "1.2.0-alpha.1", false),
            ("caret x skips pre", "^1.x", "1.1.1-beta1", false),
            ("pre only in its or-group", ">=2.0.0-0 || ^1.0", "1.5.0-rc.1", false),
            ("pre in matching or-group", "^1.0-0 || >=2", "1.5.0-rc.1", true),
            // tilde
            ("tilde patch range", "~1.2.3", "1.2.4", true),
            ("tilde next minor", "~1.2.3", "1.3.4", false),
            ("tilde short", "~1.2", "1.2.4", true),
            ("tilde major", "~1", "1.2.4", true),
            ("tilde major next", "~1", "2.3.4", false),
            ("tilde zero major", "~0.2.3", "0.2.5", true),
            ("tilde zero major next minor", "~0.2.3", "0.3.5", false),
            ("tilde arrow", "~>1.2.3", "1.2.9", true),
            ("tilde x", "~1.x", "1.9.0", true),
            ("tilde star", "~*", "2.1.1", true),
            ("tilde zero is anything", "~0.0.0", "1.2.3", true),
            ("tilde pre", "~1.2.3-beta.2", "1.2.4-beta.2", true),
            ("tilde pre next minor", "~1.2.3-beta.2", "1.3.4-beta.2", false),
            // caret
            ("caret", "^1.2.3", "1.8.9", true),
            ("caret next major", "^1.2.3", "2.8.9", false),
            ("caret below", "^1.2.3", "1.2.1", false),
            ("caret short", "^1.2", "1.8.9", true),
            ("caret major", "^1", "2.8.9", false),
            ("caret zero minor", "^0.2.3", "0.2.5", true),
            ("caret zero minor next", "^0.2.3", "0.5.6", false),
            ("caret zero short", "^0.2", "0.2.5", true),
            ("caret zero zero patch", "^0.0.3", "0.0.3", true),
            ("caret zero zero next patch", "^0.0.3", "0.0.4", false),
            ("caret zero zero short", "^0.0", "0.0.3", true),
            ("caret zero zero short next minor", "^0.0", "0.1.4", false),
            ("caret zero", "^0", "0.2.3", true),
            ("caret zero next major", "^0", "1.1.4", false),
            ("caret zero zero zero", "^0.0.0", "1.2.3", false),
            ("caret x", "^1.x", "1.1.1", true),
            ("caret x next major", "^1.x", "2.1.1", false),
            ("caret star is any", "^*", "3.1.0", true),
            ("caret zero pre", "^0.2.3-beta.2", "0.2.4-beta.2", true),
            ("caret zero pre next minor", "^0.2.3-beta.2", "0.3.4-beta.2", false),
            // x-ranges
            ("star", "*", "4.5.6", true),
            ("major x", "1.x", "1.4", true),
            ("major star", "2.*", "3.4.5", false),
            ("minor star", "2.1.*", "2.1.1", true),
            ("minor star next", "2.1.*", "2.2.1", false),
            ("capital X", "1.2.X", "1.2.7", true),
            ("ge x", ">= 1.2.x", "1.5.0", true),
            // hyphen ranges
            ("hyphen inside", "1.2 - 1.4.5", "1.3.0", true),
            ("hyphen upper bound", "1.2 - 1.4.5", "1.4.6", false),
            ("hyphen lower bound", "1.2 - 1.4.5", "1.1.9", false),
            ("hyphen short upper", "2.3.4 - 4.5", "4.5.9", true),
            ("no-space hyphen is a pre-release", "1.2-1.4.5", "1.3.0", false),
            // and / or
            ("and with space", ">= 1.2 < 3.0.0", "2.9.0", true),
            ("and with comma", ">=1.2, <3", "3.0.0", false),
            ("or second branch", ">= 1.2, < 3.0.0 || >= 4.2.3", "4.3.0", true),
            ("or neither", ">= 1.2, < 3.0.0 || >= 4.2.3", "3.5.0", false),
            ("operator space", ">= 1.20", "1.21.0", true),
        ];
        for (name, constraint, version, want) in cases {
            let c = Constraint::parse(constraint);
            let v = Version::parse(version);
            assert!(c.is_ok(), "case {name}: constraint {constraint:?} parses: {c:?}");
            assert!(v.is_some(), "case {name}: version {version:?} parses");
            if let (Ok(c), Some(v)) = (c, v) {
                assert_eq!(c.matches(&v), want, "case {name}: {constraint:?} vs {version:?}");
            }
        }
    }

    #[test]
    fn bad_constraints_are_errors() {
        let cases = [
            ("empty", ""),
            ("blank", "   "),
            ("word", "latest"),
            ("four parts", "1.2.3.4"),
            ("empty or branch", "^1.0 ||"),
            ("double comma", ">=1.0,,<2"),
            ("trailing comma", ">=1.0,"),
            ("no separator", ">=1.2<2"),
            ("operator only", ">="),
            ("bad pre", "^1.0.0-01"),
            ("double star", "**"),
            ("mixed wildcard", "1.2x"),
            ("operator on hyphen range", ">=1.0 - 2.0"),
            ("dangling hyphen", "1.0 - "),
            ("sha", "a1b2c3d"),
        ];
        for (name, text) in cases {
            let got = Constraint::parse(text);
            match got {
                Err(e) => assert_eq!(e.text, text, "case {name}: error carries the text"),
                Ok(c) => panic!("case {name}: {text:?} should not parse, got {c:?}"),
            }
        }
    }
}
