//! The bot's vocabulary: image names and references, platforms, Application ids.
//! Parsing here follows the Docker reference grammar, so `nginx`, `docker.io/library/nginx`
//! and `index.docker.io/library/nginx` are one image.

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

impl ImageName {
    /// Parses a bare image name (no tag, no digest) and normalizes Docker Hub names.
    pub fn parse(input: &str) -> Result<Self, ImageNameError> {
        let err = |reason| ImageNameError { input: input.to_string(), reason };
        let s = input.trim();
        if s.is_empty() {
            return Err(err("empty"));
        }
        if s.contains(char::is_whitespace) {
            return Err(err("contains whitespace"));
        }
        let (registry, repository) = match s.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), s.to_string()),
        };
        let registry = match registry.as_str() {
            "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
                DOCKER_HUB.to_string()
            }
            _ => registry,
        };
        if repository.is_empty() || repository.split('/').any(|p| p.is_empty()) {
            return Err(err("empty path component"));
        }
        let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c);
        if !repository.chars().all(valid) {
            return Err(err("repository may only hold lowercase letters, digits, '.', '_', '-' and '/'"));
        }
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
    pub fn parse(input: &str) -> Result<Self, ImageNameError> {
        let s = input.trim();
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(d.to_string())),
            None => (s, None),
        };
        let (name, tag) = split_tag(rest);
        Ok(ImageReference {
            name: ImageName::parse(name)?,
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

#[cfg(test)]
mod tests {
    use super::*;

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
