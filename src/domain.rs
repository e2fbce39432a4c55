//! The bot's vocabulary: image names and references, platforms, Application ids.
//! Parsing here follows the Docker reference grammar, so `nginx`, `docker.io/library/nginx`
//! and `index.docker.io/library/nginx` are one image. A name written without registry host
//! belongs to the [`DefaultRegistry`]: Docker Hub, unless registries.conf says otherwise.

use std::fmt;

/// The registry every short image name lives on.
pub const DOCKER_HUB: &str = "docker.io";

/// A repository in a registry, normalized: `docker.io/library/nginx`, `localhost:5000/app`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageName {
    /// Registry host with optional port, e.g. `ghcr.io`, `127.0.0.1:5000`, `docker.io`.
    pub registry: String,
    /// Repository path inside the registry, e.g. `library/nginx`.
    pub repository: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image name {input:?}: {reason}")]
pub struct ImageNameError {
    pub input: String,
    pub reason: &'static str,
}

/// Whether the first component of an image name is a registry host rather than a path:
/// Docker's rule (`.` or `:` in it, or `localhost`).
fn is_registry_host(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost"
}

/// Docker Hub's other host names (`index.docker.io`, ...) as `docker.io`; other hosts unchanged.
pub fn normalize_registry_host(host: &str) -> &str {
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => DOCKER_HUB,
        _ => host,
    }
}

/// Repositories hold lowercase letters, digits, `.`, `_`, `-` and `/` between non-empty parts.
fn check_repository(repository: &str) -> Result<(), &'static str> {
    if repository.is_empty() || repository.split('/').any(|p| p.is_empty()) {
        return Err("empty path component");
    }
    let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c);
    if !repository.chars().all(valid) {
        return Err("repository may only hold lowercase letters, digits, '.', '_', '-' and '/'");
    }
    Ok(())
}

/// Where a pull request (GitLab: merge request) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrState {
    Open,
    Closed,
    Merged,
}

/// How a pull request is merged once auto-merge fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MergeMethod {
    Merge,
    Squash,
    Rebase,
}

impl MergeMethod {
    /// `merge`, `squash` or `rebase`, in any case, as the config file and annotations write it.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "merge" => Some(MergeMethod::Merge),
            "squash" => Some(MergeMethod::Squash),
            "rebase" => Some(MergeMethod::Rebase),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MergeMethod::Merge => "merge",
            MergeMethod::Squash => "squash",
            MergeMethod::Rebase => "rebase",
        }
    }
}

/// The version of an image as git, a registry, a pin or a PR names it: a tag, a digest, or
/// both. Serialized compactly (absent fields left out), as the PR metadata block stores it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Version {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// `sha256:...`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

impl Version {
    pub fn new(tag: Option<&str>, digest: Option<&str>) -> Self {
        Version { tag: tag.map(str::to_string), digest: digest.map(str::to_string) }
    }

    pub fn tag(tag: &str) -> Self {
        Version::new(Some(tag), None)
    }
}

/// The registry an image name written without registry host (`nginx`, `team/app`) belongs to:
/// Docker Hub (with its implicit `library/`), unless registries.conf marks another entry
/// `default: true`. A naming context, not global state: whoever parses names written by people
/// passes the one their configuration gives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DefaultRegistry {
    /// Registry host with optional port, normalized as in [`ImageName`] (`docker.io`, `quay.io`).
    host: String,
    /// Path on that host that bare names go below (`team` for `registry.example.com/team`), or empty.
    path: String,
}

impl Default for DefaultRegistry {
    /// Docker Hub: `nginx` is `docker.io/library/nginx`.
    fn default() -> Self {
        DefaultRegistry { host: DOCKER_HUB.to_string(), path: String::new() }
    }
}

impl DefaultRegistry {
    /// From a registries.conf `prefix`: a registry host, optionally with a path
    /// (`quay.io`, `localhost:5000`, `registry.example.com/team`). The host must read as one
    /// (contain `.` or `:`, or be `localhost`), so that the names it gives (`quay.io/app`)
    /// mean the same image when read back anywhere.
    pub fn from_prefix(prefix: &str) -> Result<Self, String> {
        let p = prefix.trim().trim_end_matches('/');
        let (host, path) = p.split_once('/').unwrap_or((p, ""));
        if host.is_empty() || p.contains(char::is_whitespace) {
            return Err(format!("prefix {prefix:?} is not a registry host[/path]"));
        }
        if !is_registry_host(host) {
            return Err(format!(
                "prefix {prefix:?} does not start with a registry host (one with a '.' or ':', or localhost), \
                 so names under it would read as Docker Hub names"
            ));
        }
        if !path.is_empty() {
            check_repository(path).map_err(|reason| format!("prefix {prefix:?}: path {path:?}: {reason}"))?;
        }
        Ok(DefaultRegistry { host: normalize_registry_host(host).to_string(), path: path.to_string() })
    }

    /// `docker.io`, `quay.io`, `registry.example.com/team`.
    pub fn prefix(&self) -> String {
        if self.path.is_empty() { self.host.clone() } else { format!("{}/{}", self.host, self.path) }
    }

    /// The shortest way to write `name` that reads back as `name` under this default: without
    /// the default's prefix (and Docker Hub's `library/`) when that is unambiguous, else in full.
    pub fn short_name(&self, name: &ImageName) -> String {
        let full = name.to_string();
        let Some(rest) = full.strip_prefix(&format!("{}/", self.prefix())) else { return full };
        let official = (self.host == DOCKER_HUB && self.path.is_empty())
            .then(|| rest.strip_prefix("library/"))
            .flatten();
        official
            .into_iter()
            .chain([rest])
            .find(|short| ImageName::parse_with(short, self).is_ok_and(|n| &n == name))
            .map_or(full.clone(), str::to_string)
    }
}

impl ImageName {
    /// Parses an image name (no tag, no digest) whose registry is known, or whose bare form
    /// means Docker Hub: `nginx` is `docker.io/library/nginx`.
    pub fn parse(input: &str) -> Result<Self, ImageNameError> {
        Self::parse_with(input, &DefaultRegistry::default())
    }

    /// Parses an image name (no tag, no digest) as written by people: a name without registry
    /// host belongs to `default` (`team/app` with default `quay.io` is `quay.io/team/app`); only
    /// Docker Hub adds `library/` to a single-component name. Docker Hub's host names are
    /// normalized to `docker.io`.
    pub fn parse_with(input: &str, default: &DefaultRegistry) -> Result<Self, ImageNameError> {
        let err = |reason| ImageNameError { input: input.to_string(), reason };
        let s = input.trim();
        if s.is_empty() {
            return Err(err("empty"));
        }
        if s.contains(char::is_whitespace) {
            return Err(err("contains whitespace"));
        }
        let (registry, repository) = match s.split_once('/') {
            Some((first, rest)) if is_registry_host(first) => (normalize_registry_host(first).to_string(), rest.to_string()),
            _ if default.path.is_empty() => (default.host.clone(), s.to_string()),
            _ => (default.host.clone(), format!("{}/{s}", default.path)),
        };
        check_repository(&repository).map_err(err)?;
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        Ok(ImageName { registry, repository })
    }
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)
    }
}

/// An image reference as written in a manifest: `name[:tag][@sha256:...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReference {
    pub name: ImageName,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageReference {
    /// Parses a reference whose bare name means Docker Hub (see [`ImageName::parse`]).
    pub fn parse(input: &str) -> Result<Self, ImageNameError> {
        Self::parse_with(input, &DefaultRegistry::default())
    }

    /// Parses a reference as written by people (see [`ImageName::parse_with`]).
    pub fn parse_with(input: &str, default: &DefaultRegistry) -> Result<Self, ImageNameError> {
        let s = input.trim();
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(d.to_string())),
            None => (s, None),
        };
        let (name, tag) = split_tag(rest);
        Ok(ImageReference {
            name: ImageName::parse_with(name, default)?,
            tag: tag.map(str::to_string),
            digest,
        })
    }
}

/// Splits `name:tag` at the last `:` that comes after the last `/`, so that a registry port
/// (`localhost:5000/app`) is never taken for a tag.
pub fn split_tag(s: &str) -> (&str, Option<&str>) {
    let slash = s.rfind('/').map(|i| i + 1).unwrap_or(0);
    match s[slash..].find(':') {
        Some(i) => (&s[..slash + i], Some(&s[slash + i + 1..])),
        None => (s, None),
    }
}

/// A target platform, `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.trim().split('/');
        let os = parts.next().filter(|p| !p.is_empty())?.to_string();
        let arch = parts.next().filter(|p| !p.is_empty())?.to_string();
        let variant = parts.next().filter(|p| !p.is_empty()).map(str::to_string);
        if parts.next().is_some() {
            return None;
        }
        Some(Platform { os, arch, variant })
    }

    pub fn linux_amd64() -> Self {
        Platform { os: "linux".into(), arch: "amd64".into(), variant: None }
    }

    /// Whether an image built for `other` runs on this platform (a missing variant matches any).
    pub fn matches(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.arch == other.arch
            && (self.variant.is_none() || self.variant == other.variant)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// An Argo CD Application: namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppId {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// How people write a reference to pull request `number` on its forge: `#N`, and `!N` on
/// GitLab, where `#N` is an issue. Told from the PR's web URL (GitLab's merge request pages are
/// `<project>/-/merge_requests/<iid>`, which no other forge uses), the one trace of the forge the
/// pure code keeps: a hold's origin and a report entry have it, as people see them.
pub fn pr_ref(number: u64, url: &str) -> String {
    if url.contains("/-/merge_requests/") { format!("!{number}") } else { format!("#{number}") }
}

/// Whether `host[:port]` is a loopback address (`localhost`, `127.0.0.0/8`, `::1`): registries
/// there are spoken to over plain http, as Docker does.
pub fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitlab_merge_requests_are_bang_references() {
        assert_eq!(pr_ref(3, "https://gitlab.example.com/g/sub/p/-/merge_requests/3#note_9"), "!3");
        assert_eq!(pr_ref(3, "https://github.com/org/gitops/pull/3"), "#3");
        assert_eq!(pr_ref(3, ""), "#3");
    }

    #[test]
    fn image_names_normalize() {
        let cases = [
            ("nginx", "docker.io/library/nginx"),
            ("library/nginx", "docker.io/library/nginx"),
            ("index.docker.io/library/nginx", "docker.io/library/nginx"),
            ("bitnami/redis", "docker.io/bitnami/redis"),
            ("ghcr.io/org/app", "ghcr.io/org/app"),
            ("localhost:5000/app", "localhost:5000/app"),
            ("localhost/app", "localhost/app"),
            ("asia.gcr.io/some-project/some-image", "asia.gcr.io/some-project/some-image"),
        ];
        for (input, want) in cases {
            assert_eq!(ImageName::parse(input).unwrap().to_string(), want, "case {input}");
        }
        for bad in ["", "Nginx", "a//b", "has space"] {
            assert!(ImageName::parse(bad).is_err(), "case {bad:?} should fail");
        }
    }

    #[test]
    fn names_without_host_belong_to_the_default_registry() {
        // (case, default prefix, input, normalized name)
        let cases = [
            ("bare name, Docker Hub", "docker.io", "argoproj/argocd", "docker.io/argoproj/argocd"),
            ("single component, Docker Hub", "docker.io", "nginx", "docker.io/library/nginx"),
            ("bare name, quay", "quay.io", "argoproj/argocd", "quay.io/argoproj/argocd"),
            ("single component, quay: no library/", "quay.io", "nginx", "quay.io/nginx"),
            ("explicit docker.io, quay default", "quay.io", "docker.io/argoproj/argocd", "docker.io/argoproj/argocd"),
            ("explicit docker.io single component", "quay.io", "docker.io/nginx", "docker.io/library/nginx"),
            ("Docker Hub alias host, quay default", "quay.io", "index.docker.io/library/nginx", "docker.io/library/nginx"),
            ("explicit other host", "quay.io", "ghcr.io/org/app", "ghcr.io/org/app"),
            ("path prefix, single component", "registry.example.com/team", "app", "registry.example.com/team/app"),
            ("path prefix, bare path", "registry.example.com/team", "sub/app", "registry.example.com/team/sub/app"),
            ("path prefix, explicit host", "registry.example.com/team", "registry.example.com/app", "registry.example.com/app"),
            ("localhost:5000 explicit", "quay.io", "localhost:5000/app", "localhost:5000/app"),
            ("localhost explicit", "quay.io", "localhost/app", "localhost/app"),
            ("localhost:5000 default", "localhost:5000", "app", "localhost:5000/app"),
            ("Docker Hub alias as default", "index.docker.io", "nginx", "docker.io/library/nginx"),
            ("trailing slash in prefix", "quay.io/", "app", "quay.io/app"),
        ];
        for (case, prefix, input, want) in cases {
            let default = DefaultRegistry::from_prefix(prefix).unwrap_or_else(|e| panic!("case {case}: {e}"));
            let got = ImageName::parse_with(input, &default).map(|n| n.to_string());
            assert_eq!(got.as_deref(), Ok(want), "case {case}");
            // What the bot prints carries its host, so it reads back the same without the context.
            assert_eq!(ImageName::parse(want).map(|n| n.to_string()).as_deref(), Ok(want), "case {case}: round trip");
        }
        let quay = DefaultRegistry::from_prefix("quay.io").unwrap();
        let r = ImageReference::parse_with("argoproj/argocd:v2.10@sha256:abc", &quay).unwrap();
        assert_eq!(r.name.to_string(), "quay.io/argoproj/argocd", "case reference");
        assert_eq!(r.tag.as_deref(), Some("v2.10"), "case reference tag");
        assert!(ImageName::parse_with("Team/App", &quay).is_err(), "case uppercase still invalid");
        assert_eq!(DefaultRegistry::default(), DefaultRegistry::from_prefix("docker.io").unwrap(), "case Docker Hub default");
    }

    #[test]
    fn default_registry_prefixes_are_checked() {
        // (case, prefix, text the error contains)
        let cases = [
            ("empty", "", "not a registry host"),
            ("no host", "team", "does not start with a registry host"),
            ("no host with path", "myregistry/team", "does not start with a registry host"),
            ("bad path", "quay.io/Team", "path \"Team\""),
            ("empty path component", "quay.io//team", "empty path component"),
            ("whitespace", "quay .io", "not a registry host"),
        ];
        for (case, prefix, want) in cases {
            let err = DefaultRegistry::from_prefix(prefix).unwrap_err();
            assert!(err.contains(want), "case {case}: {err}");
        }
    }

    #[test]
    fn short_names_read_back_as_the_same_image() {
        // (case, default prefix, image, short name)
        let cases = [
            ("official image", "docker.io", "docker.io/library/nginx", "nginx"),
            ("Docker Hub org", "docker.io", "docker.io/bitnami/redis", "bitnami/redis"),
            ("library with a path keeps library/", "docker.io", "docker.io/library/a/b", "library/a/b"),
            ("first part looks like a host", "docker.io", "docker.io/my.org/app", "docker.io/my.org/app"),
            ("other registry in full", "docker.io", "ghcr.io/org/app", "ghcr.io/org/app"),
            ("quay default", "quay.io", "quay.io/argoproj/argocd", "argoproj/argocd"),
            ("quay default, Docker Hub image in full", "quay.io", "docker.io/library/nginx", "docker.io/library/nginx"),
            ("path prefix", "registry.example.com/team", "registry.example.com/team/app", "app"),
            ("outside the path prefix", "registry.example.com/team", "registry.example.com/other/app", "registry.example.com/other/app"),
            ("prefix of a longer path part", "registry.example.com/team", "registry.example.com/teamx/app", "registry.example.com/teamx/app"),
        ];
        for (case, prefix, image, want) in cases {
            let default = DefaultRegistry::from_prefix(prefix).unwrap();
            let name = ImageName::parse(image).unwrap();
            assert_eq!(default.short_name(&name), want, "case {case}");
            assert_eq!(ImageName::parse_with(want, &default).as_ref(), Ok(&name), "case {case}: reads back");
        }
    }

    #[test]
    fn references_split_tag_after_port() {
        let r = ImageReference::parse("localhost:5000/app:1.2@sha256:abc").unwrap();
        assert_eq!(r.name.to_string(), "localhost:5000/app");
        assert_eq!(r.tag.as_deref(), Some("1.2"));
        assert_eq!(r.digest.as_deref(), Some("sha256:abc"));
        let r = ImageReference::parse("localhost:5000/app").unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(split_tag("nginx:>=1.20"), ("nginx", Some(">=1.20")));
    }

    #[test]
    fn platforms_parse_and_match() {
        let arm = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(arm.to_string(), "linux/arm64/v8");
        assert!(Platform::parse("linux/arm64").unwrap().matches(&arm));
        assert!(!Platform::linux_amd64().matches(&arm));
        assert!(Platform::parse("linux").is_none());
    }
}
