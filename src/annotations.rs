//! argocd-image-updater compatible annotations: the `image-list` and every per-image option,
//! read exactly as AIU v1.3 reads them (per-alias keys override app-wide keys). Pure.

use std::collections::BTreeMap;

use crate::domain::{ImageName, Platform};

/// The annotation prefix argocd-image-updater uses, which we read unchanged.
pub const AIU_PREFIX: &str = "argocd-image-updater.argoproj.io";
/// Annotations of our own (beyond AIU) live under this prefix.
pub const OWN_PREFIX: &str = "argocd-image-pr.io";

/// How a version is chosen among the tags of a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateStrategy {
    /// Highest semantic version within the constraint (default).
    Semver,
    /// Most recently built image (config `created`), old name `latest`.
    NewestBuild,
    /// Last tag in lexical order, old name `name`.
    Alphabetical,
    /// Track the digest a mutable tag points to.
    Digest,
}

impl UpdateStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateStrategy::Semver => "semver",
            UpdateStrategy::NewestBuild => "newest-build",
            UpdateStrategy::Alphabetical => "alphabetical",
            UpdateStrategy::Digest => "digest",
        }
    }
}

/// `allow-tags`: which tags are considered at all.
#[derive(Debug, Clone)]
pub enum AllowTags {
    Any,
    /// `regexp:<re>`, matched unanchored.
    Regex(regex::Regex),
}

/// The Helm value keys an image's name, tag or full spec live at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HelmKeys {
    pub image_name: Option<String>,
    pub image_tag: Option<String>,
    pub image_spec: Option<String>,
}

/// One entry of the image-list with all its options resolved.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    pub alias: String,
    pub name: ImageName,
    /// What followed the name in the image-list (`^1.2`, `latest`, `>=1.20`), if anything.
    pub constraint: Option<String>,
    pub strategy: UpdateStrategy,
    pub allow_tags: Option<AllowTags>,
    /// Glob patterns; a tag matching any of them is never proposed.
    pub ignore_tags: Vec<String>,
    /// Platforms the image must exist for; default `linux/amd64`.
    pub platforms: Vec<Platform>,
    pub force_update: bool,
    /// Credentials reference (`pullsecret:ns/name`, `secret:ns/name#key`, `env:VAR`, `ext:/path`).
    pub pull_secret: Option<String>,
    pub helm: HelmKeys,
    pub kustomize_image_name: Option<String>,
    /// Our own option: write `tag@sha256:...` for non-digest strategies.
    pub pin_digest: bool,
}

/// An annotation that cannot be used, named by its full key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("annotation {key}: {message}")]
pub struct AnnotationError {
    pub key: String,
    /// The alias the error belongs to, when it is about one image.
    pub alias: Option<String>,
    pub message: String,
}

/// Everything the annotations of one Application say.
#[derive(Debug, Clone)]
pub struct AppAnnotations {
    /// One entry per image-list item, in order; an error spoils only its own image.
    pub images: Vec<Result<ImageSpec, AnnotationError>>,
    pub write_back_method: Option<String>,
    /// `write-back-target` as written (`kustomization`, `kustomization:<dir>`, `helmvalues:<file>`).
    pub write_back_target: Option<String>,
}

/// Reads an Application's annotations; `None` when it has no `image-list`.
pub fn parse(annotations: &BTreeMap<String, String>) -> Option<AppAnnotations> {
    let _ = annotations;
    todo!("annotation parsing")
}
