//! argocd-image-updater compatible annotations: the `image-list` and every per-image option,
//! read exactly as AIU v1.3 reads them (per-alias keys override app-wide keys). Pure.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::domain::{DefaultRegistry, ImageName, ImageNameError, ImageReference, Platform};

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

/// The Helm value keys an image's name, tag or full spec live at, as the annotations give
/// them (`helm.image-name`, `helm.image-tag`, `helm.image-spec`); the methods fill in AIU's
/// defaults. The same keys name Helm parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HelmKeys {
    pub image_name: Option<String>,
    pub image_tag: Option<String>,
    pub image_spec: Option<String>,
}

/// What the value at an image's Helm version key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelmValue {
    /// `tag[@digest]` (`helm.image-tag`).
    Tag,
    /// `name:tag[@digest]` (`helm.image-spec`).
    Spec,
}

impl HelmKeys {
    /// The key naming the image: `helm.image-name`, else AIU's `DefaultHelmImageName`.
    pub fn name_key(&self) -> &str {
        self.image_name.as_deref().unwrap_or("image.name")
    }

    /// The key holding the version, and what it holds: `helm.image-spec` when set, else
    /// `helm.image-tag`, else AIU's `DefaultHelmImageTag`.
    pub fn version_key(&self) -> (&str, HelmValue) {
        match &self.image_spec {
            Some(spec) => (spec, HelmValue::Spec),
            None => (self.image_tag.as_deref().unwrap_or("image.tag"), HelmValue::Tag),
        }
    }

    /// Whether the annotations name any key. With the defaults alone, a value at `image.tag`
    /// belongs to the image only if `image.name` (when set) names it.
    pub fn explicit(&self) -> bool {
        self.image_name.is_some() || self.image_tag.is_some() || self.image_spec.is_some()
    }
}

/// `write-back-target`: where the version is written instead of the places it is read from,
/// in AIU's forms. Paths stay as written (relative to the source path, or `/`-absolute from the
/// repository root); the editor resolves them against the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteBackTarget {
    /// `kustomization[:<dir>]`: the kustomization of `<dir>`, else of the source path.
    Kustomization(Option<String>),
    /// `helmvalues[:<file>]`: that values file, else the chart's `values.yaml`.
    HelmValues(Option<String>),
}

impl std::str::FromStr for WriteBackTarget {
    type Err = String;

    /// An empty path (`kustomization:`) is the same as none.
    fn from_str(v: &str) -> Result<Self, String> {
        let v = v.trim();
        let (kind, path) = match v.split_once(':') {
            Some((k, p)) => (k, Some(p.trim()).filter(|p| !p.is_empty()).map(str::to_string)),
            None => (v, None),
        };
        match kind {
            "kustomization" => Ok(WriteBackTarget::Kustomization(path)),
            "helmvalues" => Ok(WriteBackTarget::HelmValues(path)),
            _ => Err(format!("{v:?} is not supported (kustomization[:<dir>] or helmvalues[:<file>])")),
        }
    }
}

/// As written in the annotation (`kustomization:../base`), for messages.
impl fmt::Display for WriteBackTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, path) = match self {
            WriteBackTarget::Kustomization(p) => ("kustomization", p),
            WriteBackTarget::HelmValues(p) => ("helmvalues", p),
        };
        match path {
            Some(p) => write!(f, "{kind}:{p}"),
            None => f.write_str(kind),
        }
    }
}

/// One entry of the image-list with all its options resolved.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// The alias from `alias=image`; for an entry without one, the image name as written
    /// without registry host (`nginx`, `org/app`), which is what AIU shows for such images.
    pub alias: String,
    /// Whether the image-list gave the alias. AIU v1.3 reads per-image keys
    /// (`<alias>.update-strategy`, `<alias>.helm.*`, ...) only for explicit aliases; entries
    /// without one take the app-wide keys alone.
    pub alias_given: bool,
    pub name: ImageName,
    /// Where names without registry host belong for this image's Application (registries.conf
    /// `default: true`). Names written in git are read with it too ([`ImageSpec::parse_name`]),
    /// so `team/app` in a kustomization is the image-list's `team/app` whatever the default.
    pub default_registry: Arc<DefaultRegistry>,
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

impl ImageSpec {
    /// An image with every option at its default (semver, linux/amd64, no filters).
    #[cfg(test)]
    pub fn new(alias: &str, name: ImageName) -> Self {
        ImageSpec {
            alias: alias.to_string(),
            alias_given: true,
            name,
            default_registry: Arc::default(),
            constraint: None,
            strategy: UpdateStrategy::Semver,
            allow_tags: None,
            ignore_tags: Vec::new(),
            platforms: vec![Platform::linux_amd64()],
            force_update: false,
            pull_secret: None,
            helm: HelmKeys::default(),
            kustomize_image_name: None,
            pin_digest: false,
        }
    }

    /// Reads an image name written in the Application's manifests or annotations (no tag),
    /// with the same default registry the image-list was read with.
    pub fn parse_name(&self, written: &str) -> Result<ImageName, ImageNameError> {
        ImageName::parse_with(written, &self.default_registry)
    }

    /// Reads `name[:tag][@digest]` as written in the Application's manifests.
    pub fn parse_reference(&self, written: &str) -> Result<ImageReference, ImageNameError> {
        ImageReference::parse_with(written, &self.default_registry)
    }

    /// The image's name as people write it under this default registry (`nginx`, `team/app`),
    /// or in full when it lives elsewhere.
    pub fn short_name(&self) -> String {
        self.default_registry.short_name(&self.name)
    }
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

/// Where the git credentials of an Application's sources come from when the forge's token does
/// not cover them (`write-back-method`): `git:secret:[<namespace>/]<name>` names a Secret
/// (`username`, `password`; the Application's namespace when none is given), `git` and
/// `git:repocreds` ask for Argo CD's repository credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitCredentialRef {
    Secret { namespace: String, name: String },
    RepoCreds,
}

impl GitCredentialRef {
    /// `None` for `argocd` (AIU's write through the Argo CD API: the bot proposes through git
    /// all the same) and for a value of no known form.
    pub fn parse(method: &str, app_namespace: &str) -> Option<GitCredentialRef> {
        match method.trim() {
            "git" | "git:repocreds" => Some(GitCredentialRef::RepoCreds),
            m => {
                let secret = m.strip_prefix("git:secret:")?;
                let (namespace, name) = secret.split_once('/').unwrap_or((app_namespace, secret));
                (!name.is_empty() && !namespace.is_empty())
                    .then(|| GitCredentialRef::Secret { namespace: namespace.to_string(), name: name.to_string() })
            }
        }
    }
}

/// Everything the annotations of one Application say.
#[derive(Debug, Clone)]
pub struct AppAnnotations {
    /// One entry per image-list item, in order; an error spoils only its own image.
    pub images: Vec<Result<ImageSpec, AnnotationError>>,
    /// `write-back-target`, when given. A value of no known form is an error of every image,
    /// since each would be written there.
    pub write_back_target: Option<WriteBackTarget>,
    /// `write-back-method`, as given (see [`GitCredentialRef::parse`]).
    pub write_back_method: Option<String>,
}

/// The annotation (after the AIU prefix) holding the list of images.
const IMAGE_LIST: &str = "image-list";

/// Reads an Application's annotations; `None` when it has no `image-list`. Image names without
/// registry host belong to `default_registry`, which every image keeps for reading its names
/// in git.
///
/// Differences from AIU v1.3, all on purpose: an unknown strategy, an unusable `allow-tags`, an
/// invalid `ignore-tags` glob, `platforms` entry or `force-update` value is an error naming the
/// key (AIU logs a warning and falls back to something the user did not ask for), and an error
/// spoils only the images it applies to instead of the whole Application. An `image-list`
/// entry whose constraint contains `=` (`nginx:>=1.20`) is not taken for `alias=image`.
pub fn parse(annotations: &BTreeMap<String, String>, default_registry: &Arc<DefaultRegistry>) -> Option<AppAnnotations> {
    let list = annotations.get(&aiu_key(IMAGE_LIST))?;
    let reader = Reader { annotations, default_registry };
    let mut images: Vec<Result<ImageSpec, AnnotationError>> = Vec::new();
    let mut seen_aliases: Vec<String> = Vec::new();
    let mut previous: Option<&str> = None;
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        if let Some(fragment) = constraint_fragment(entry) {
            // `web=nginx:>=1.20, <2.0`: the comma cut a constraint in two. Proposing under the
            // first half alone would go past what the author meant: both halves are errors.
            let before = previous.map(split_entry);
            let alias = before.as_ref().map(|e| e.alias.map(str::to_string).unwrap_or_else(|| default_alias(e.name)));
            let joined = before.and_then(|e| e.constraint).map(|c| format!("{c} {fragment}")).unwrap_or_else(|| fragment.to_string());
            let error = list_error(
                alias.as_deref(),
                format!(
                    "entry {entry:?} is only a constraint: the image-list is comma-separated, so a constraint cannot \
                     hold a comma; write its parts separated by a space, e.g. `{joined}`"
                ),
            );
            match images.last_mut() {
                Some(last) if previous.is_some() => *last = Err(error),
                _ => images.push(Err(error)),
            }
            continue;
        }
        previous = Some(entry);
        let image = reader.image(entry);
        let image = match image {
            Ok(spec) if spec.alias_given && seen_aliases.contains(&spec.alias) => Err(list_error(
                Some(&spec.alias),
                format!(
                    "alias {:?} is used by more than one entry; aliases must be unique",
                    spec.alias
                ),
            )),
            other => other,
        };
        if let Ok(spec) = &image {
            seen_aliases.push(spec.alias.clone());
        }
        images.push(image);
    }
    if images.is_empty() {
        images.push(Err(list_error(None, "no images listed".to_string())));
    }
    let write_back_target = match reader.value(&aiu_key("write-back-target")).map(parse_write_back_target).transpose() {
        Ok(target) => target,
        Err((key, message)) => {
            for image in &mut images {
                if let Ok(spec) = image {
                    *image = Err(AnnotationError { key: key.clone(), alias: Some(spec.alias.clone()), message: message.clone() });
                }
            }
            None
        }
    };
    Some(AppAnnotations {
        images,
        write_back_target,
        write_back_method: annotations.get(&aiu_key("write-back-method")).map(|m| m.trim().to_string()).filter(|m| !m.is_empty()),
    })
}

/// Options read per image (`<alias>.<option>`); those also read app-wide are in [`APP_WIDE`].
const PER_IMAGE: [&str; 10] = [
    "update-strategy",
    "allow-tags",
    "ignore-tags",
    "platforms",
    "force-update",
    "pull-secret",
    "helm.image-name",
    "helm.image-tag",
    "helm.image-spec",
    "kustomize.image-name",
];
/// Keys read for the whole Application. AIU's git write-back keys are read by AIU only; we know
/// them, so they are no typo.
const APP_WIDE: [&str; 10] = [
    IMAGE_LIST,
    "update-strategy",
    "allow-tags",
    "ignore-tags",
    "force-update",
    "pull-secret",
    "write-back-method",
    "write-back-target",
    "git-branch",
    "git-repository",
];
/// Our own keys (`argocd-image-pr.io/...`); `<alias>.pin-digest` per image.
const OWN_KEYS: [&str; 8] = ["pin", "base-branch", "labels", "reviewers", "team-reviewers", "assignees", "draft", "auto-merge"];

/// Annotation keys under argocd-image-updater's or our prefix that nothing reads, for a warning
/// that names them (`api.update-stratgy` would otherwise be ignored without a word).
pub fn unknown_keys(annotations: &BTreeMap<String, String>, aliases: &[String]) -> Vec<String> {
    let per_image = |suffix: &str, options: &[&str]| {
        aliases.iter().any(|a| options.iter().any(|o| suffix == alias_key(a, o)))
    };
    annotations
        .keys()
        .filter(|key| {
            if let Some(suffix) = key.strip_prefix(&format!("{AIU_PREFIX}/")) {
                !(APP_WIDE.contains(&suffix) || per_image(suffix, &PER_IMAGE))
            } else if let Some(suffix) = key.strip_prefix(&format!("{OWN_PREFIX}/")) {
                !(OWN_KEYS.contains(&suffix) || per_image(suffix, &["pin-digest"]))
            } else {
                false
            }
        })
        .cloned()
        .collect()
}

fn aiu_key(suffix: &str) -> String {
    format!("{AIU_PREFIX}/{suffix}")
}

/// Kubernetes annotation names cannot hold `/`, so AIU spells `org/app` as `org_app` in keys.
fn alias_key(alias: &str, option: &str) -> String {
    format!("{}.{option}", alias.replace('/', "_"))
}

fn list_error(alias: Option<&str>, message: String) -> AnnotationError {
    AnnotationError {
        key: aiu_key(IMAGE_LIST),
        alias: alias.map(str::to_string),
        message,
    }
}

/// One image-list entry split into its parts, before any option is read.
struct Entry<'a> {
    alias: Option<&'a str>,
    name: &'a str,
    constraint: Option<&'a str>,
    digest: Option<&'a str>,
}

/// Splits `[alias=]image[:constraint][@digest]`. As in AIU, everything before the first `=` is
/// the alias, whatever it holds (`ghcr.io:4567/org/orig=gcr.io/org/app`) — unless that `=` is
/// part of a constraint operator (`nginx:>=1.20`, `nginx:<=2`, `nginx:!=1.3`, `nginx:=1.2`).
fn split_entry(entry: &str) -> Entry<'_> {
    let (alias, image) = match entry.split_once('=') {
        Some((a, rest)) if !a.trim_end().ends_with(['<', '>', '!', ':', '=']) => (Some(a.trim()), rest.trim()),
        _ => (None, entry),
    };
    let (image, digest) = match image.split_once('@') {
        Some((i, d)) => (i, Some(d.trim())),
        None => (image, None),
    };
    let (name, constraint) = crate::domain::split_tag(image.trim());
    Entry {
        alias: alias.filter(|a| !a.is_empty()),
        name: name.trim(),
        constraint: constraint.map(str::trim).filter(|c| !c.is_empty()),
        digest,
    }
}

/// `Some(entry)` when an image-list entry is only a constraint (`<2.0`, `>= 1.4`, `2.x`):
/// what is left when a comma cut a constraint in two.
fn constraint_fragment(entry: &str) -> Option<&str> {
    let e = entry.trim();
    // Anything with a path, a port or an alias is an image (`v2=org/api-v2`, `v2fly/core:5`).
    if e.contains(['/', ':']) {
        return None;
    }
    let after_ops = e.trim_start_matches(['<', '>', '=', '!', '~', '^', ' ']);
    let has_operator = after_ops.len() < e.len();
    let rest = after_ops.strip_prefix('v').unwrap_or(after_ops);
    // `=nginx` (an empty alias) is an image; `>= 1.4`, `<v2` and `2.x` are not.
    let operator = has_operator && rest.starts_with(|c: char| c.is_ascii_digit()) && !rest.contains('=');
    let version_only = e.starts_with(|c: char| c.is_ascii_digit())
        && e.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | 'x' | 'X' | '*' | ' ' | '-'));
    (operator || version_only).then_some(e)
}

/// The name AIU shows for an image without alias: the name as written, registry host removed.
fn default_alias(name: &str) -> String {
    match name.split_once('/') {
        Some((host, rest)) if host.contains(['.', ':']) || host == "localhost" => rest.to_string(),
        _ => name.to_string(),
    }
}

/// `algorithm:encoded`, as in the OCI image spec (`sha256:<64 hex>`).
fn valid_digest(d: &str) -> bool {
    let Some((algorithm, encoded)) = d.split_once(':') else {
        return false;
    };
    let algo_ok = !algorithm.is_empty()
        && algorithm
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b));
    let encoded_ok = !encoded.is_empty()
        && encoded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b));
    let sha256_ok = algorithm != "sha256" || (encoded.len() == 64 && encoded.bytes().all(|b| b.is_ascii_hexdigit()));
    algo_ok && encoded_ok && sha256_ok
}

/// Looks options up, per-alias key first, then the app-wide one.
struct Reader<'a> {
    annotations: &'a BTreeMap<String, String>,
    default_registry: &'a Arc<DefaultRegistry>,
}

/// What an option resolved to: the key it came from and its trimmed value.
type Found<'a> = Option<(String, &'a str)>;

impl<'a> Reader<'a> {
    /// A non-blank value under `key` (AIU treats blank values as absent).
    fn value(&self, key: &str) -> Found<'a> {
        let v = self.annotations.get(key)?.trim();
        (!v.is_empty()).then(|| (key.to_string(), v))
    }

    /// A per-image option, falling back to the app-wide key when AIU has one.
    fn option(&self, alias: Option<&str>, option: &str, app_wide: bool) -> Found<'a> {
        let per_image = alias.and_then(|a| self.value(&aiu_key(&alias_key(a, option))));
        per_image.or_else(|| if app_wide { self.value(&aiu_key(option)) } else { None })
    }

    fn image(&self, entry: &str) -> Result<ImageSpec, AnnotationError> {
        let parts = split_entry(entry);
        let alias = parts
            .alias
            .map(str::to_string)
            .unwrap_or_else(|| default_alias(parts.name));
        let name = ImageName::parse_with(parts.name, self.default_registry)
            .map_err(|e| list_error(Some(&alias), format!("entry {entry:?}: {e}")))?;
        if let Some(d) = parts.digest.filter(|d| !valid_digest(d)) {
            return Err(list_error(
                Some(&alias),
                format!("entry {entry:?}: digest {d:?} is not of the form sha256:<64 hex digits>"),
            ));
        }
        let err = |(key, message): (String, String)| AnnotationError {
            key,
            alias: Some(alias.clone()),
            message,
        };
        // Per-image keys are read only for explicit aliases, as AIU v1.3 does.
        let a = parts.alias;
        let strategy = self
            .option(a, "update-strategy", true)
            .map(parse_strategy)
            .transpose()
            .map_err(err)?;
        let allow_tags = self
            .option(a, "allow-tags", true)
            .map(parse_allow_tags)
            .transpose()
            .map_err(err)?;
        let ignore_tags = self
            .option(a, "ignore-tags", true)
            .map(parse_ignore_tags)
            .transpose()
            .map_err(err)?;
        // AIU has no app-wide `platforms` key.
        let platforms = self
            .option(a, "platforms", false)
            .map(parse_platforms)
            .transpose()
            .map_err(err)?;
        let force_update = self
            .option(a, "force-update", true)
            .map(parse_bool)
            .transpose()
            .map_err(err)?;
        let pin_key = format!("{OWN_PREFIX}/{}", alias_key(&alias, "pin-digest"));
        let pin_digest = self.value(&pin_key).map(parse_bool).transpose().map_err(err)?;
        let per_image = |option| self.option(a, option, false).map(|(_, v)| v.to_string());
        Ok(ImageSpec {
            alias_given: parts.alias.is_some(),
            name,
            default_registry: self.default_registry.clone(),
            constraint: parts.constraint.map(str::to_string),
            strategy: strategy.unwrap_or(UpdateStrategy::Semver),
            allow_tags,
            ignore_tags: ignore_tags.unwrap_or_default(),
            platforms: platforms.unwrap_or_else(|| vec![Platform::linux_amd64()]),
            force_update: force_update.unwrap_or(false),
            pull_secret: self.option(a, "pull-secret", true).map(|(_, v)| v.to_string()),
            helm: HelmKeys {
                image_name: per_image("helm.image-name"),
                image_tag: per_image("helm.image-tag"),
                image_spec: per_image("helm.image-spec"),
            },
            kustomize_image_name: per_image("kustomize.image-name"),
            pin_digest: pin_digest.unwrap_or(false),
            alias,
        })
    }
}

/// An option value that cannot be used: the key it came from and why.
type OptionError = (String, String);

fn parse_strategy((key, v): (String, &str)) -> Result<UpdateStrategy, OptionError> {
    match v.to_ascii_lowercase().as_str() {
        "semver" => Ok(UpdateStrategy::Semver),
        // AIU's old names, still accepted by AIU v1.3 with a deprecation warning.
        "newest-build" | "latest" => Ok(UpdateStrategy::NewestBuild),
        "alphabetical" | "name" => Ok(UpdateStrategy::Alphabetical),
        "digest" => Ok(UpdateStrategy::Digest),
        _ => Err((
            key,
            format!("unknown update strategy {v:?}; use semver, newest-build, alphabetical or digest"),
        )),
    }
}

fn parse_allow_tags((key, v): (String, &str)) -> Result<AllowTags, OptionError> {
    if v.eq_ignore_ascii_case("any") {
        return Ok(AllowTags::Any);
    }
    match v.split_once(':') {
        Some((func, re)) if func.eq_ignore_ascii_case("regexp") => regex::Regex::new(re)
            .map(AllowTags::Regex)
            .map_err(|e| (key, format!("invalid regular expression {re:?}: {e}"))),
        _ => Err((key, format!("{v:?} is neither `any` nor `regexp:<expression>`"))),
    }
}

fn parse_ignore_tags((key, v): (String, &str)) -> Result<Vec<String>, OptionError> {
    let patterns: Vec<String> = v
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    for p in &patterns {
        if let Err(e) = globset::Glob::new(p) {
            return Err((key, format!("invalid glob pattern {p:?}: {e}")));
        }
    }
    Ok(patterns)
}

fn parse_platforms((key, v): (String, &str)) -> Result<Vec<Platform>, OptionError> {
    v.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| Platform::parse(p).ok_or_else(|| (key.clone(), format!("platform {p:?} is not os/arch[/variant]"))))
        .collect()
}

fn parse_write_back_target((key, v): (String, &str)) -> Result<WriteBackTarget, OptionError> {
    v.parse().map_err(|message| (key, message))
}

/// `true`/`false`/`yes`/`no`, plus what Go's `strconv.ParseBool` (used by AIU) accepts.
fn parse_bool((key, v): (String, &str)) -> Result<bool, OptionError> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" | "t" | "1" => Ok(true),
        "false" | "no" | "f" | "0" => Ok(false),
        _ => Err((key, format!("{v:?} is not a boolean; use true or false"))),
    }
}

#[cfg(test)]
#[rustfmt::skip] // one case per line reads better than rustfmt's exploded tuples
mod tests {
    use super::*;

    /// Annotation (key, value) pairs; keys without `/` get the AIU prefix.
    type Pairs<'a> = Vec<(&'a str, &'a str)>;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| {
                let key = if k.contains('/') { k.to_string() } else { aiu_key(k) };
                (key, v.to_string())
            })
            .collect()
    }

    fn images(pairs: &[(&str, &str)]) -> Vec<Result<ImageSpec, AnnotationError>> {
        parse(&annotations(pairs), &Arc::default()).map(|a| a.images).unwrap_or_default()
    }

    fn only_image(name: &str, pairs: &[(&str, &str)]) -> ImageSpec {
        let mut all = images(pairs);
        assert_eq!(all.len(), 1, "case {name}: one image");
        match all.remove(0) {
            Ok(spec) => spec,
            Err(e) => panic!("case {name}: unexpected error {e}"),
        }
    }

    #[test]
    fn no_image_list_is_none() {
        assert!(parse(&annotations(&[("update-strategy", "semver")]), &Arc::default()).is_none());
    }

    #[test]
    fn image_list_entries_split() {
        // (name, image-list, alias, alias_given, image name, constraint, digest)
        let sha = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let with_digest = format!("app=ghcr.io/org/app:1.2@{sha}");
        type Case<'a> = (&'a str, &'a str, &'a str, bool, &'a str, Option<&'a str>, Option<&'a str>);
        let cases: Vec<Case> = vec![
            ("plain", "nginx", "nginx", false, "docker.io/library/nginx", None, None),
            ("alias and constraint", "web=nginx:~1.26", "web", true, "docker.io/library/nginx", Some("~1.26"), None),
            ("registry port", "localhost:5000/app:^1.0", "app", false, "localhost:5000/app", Some("^1.0"), None),
            ("registry port no tag", "localhost:5000/app", "app", false, "localhost:5000/app", None, None),
            ("operator with =", "nginx:>=1.20", "nginx", false, "docker.io/library/nginx", Some(">=1.20"), None),
            ("alias and operator with =", "web=nginx:>=1.20", "web", true, "docker.io/library/nginx", Some(">=1.20"), None),
            ("whitespace", "  web =  nginx:1.20  ", "web", true, "docker.io/library/nginx", Some("1.20"), None),
            ("alias-less with org", "ghcr.io/org/app", "org/app", false, "ghcr.io/org/app", None, None),
            ("empty alias", "=nginx:1.2", "nginx", false, "docker.io/library/nginx", Some("1.2"), None),
            ("digest", with_digest.as_str(), "app", true, "ghcr.io/org/app", Some("1.2"), Some(sha)),
            ("space-separated constraint", "app=org/app:>=1.2 <2", "app", true, "docker.io/org/app", Some(">=1.2 <2"), None),
            // Issue 9: everything before the first `=` is the alias, as in AIU.
            ("alias with host and port", "ghcr.io:4567/org/orig=gcr.io:1234/org/app:0.1", "ghcr.io:4567/org/orig", true, "gcr.io:1234/org/app", Some("0.1"), None),
            ("operator <=", "nginx:<=1.20", "nginx", false, "docker.io/library/nginx", Some("<=1.20"), None),
            ("operator !=", "nginx:!=1.20", "nginx", false, "docker.io/library/nginx", Some("!=1.20"), None),
            ("operator =", "nginx:=1.20", "nginx", false, "docker.io/library/nginx", Some("=1.20"), None),
        ];
        for (name, list, alias, given, image, constraint, digest) in cases {
            let spec = only_image(name, &[("image-list", list)]);
            assert_eq!(spec.alias, alias, "case {name}: alias");
            assert_eq!(spec.alias_given, given, "case {name}: alias_given");
            assert_eq!(spec.name.to_string(), image, "case {name}: image");
            assert_eq!(spec.constraint.as_deref(), constraint, "case {name}: constraint");
            // Checked (a malformed one is the image's error), then not read: git has the version.
            assert_eq!(split_entry(list).digest, digest, "case {name}: digest");
        }
    }

    #[test]
    fn names_without_host_belong_to_the_default_registry() {
        let quay = Arc::new(DefaultRegistry::from_prefix("quay.io").unwrap());
        let list = annotations(&[("image-list", "cd=argoproj/argocd:^2.0, nginx, hub=docker.io/argoproj/argocd")]);
        let all: Vec<ImageSpec> = parse(&list, &quay).unwrap().images.into_iter().map(|r| r.unwrap()).collect();
        // (case, image, alias, name)
        let cases = [
            ("bare name", &all[0], "cd", "quay.io/argoproj/argocd"),
            ("single component: no library/", &all[1], "nginx", "quay.io/nginx"),
            ("explicit docker.io", &all[2], "hub", "docker.io/argoproj/argocd"),
        ];
        for (case, spec, alias, name) in cases {
            assert_eq!(spec.alias, alias, "case {case}: alias");
            assert_eq!(spec.name.to_string(), name, "case {case}: name");
            assert_eq!(*spec.default_registry, *quay, "case {case}: keeps the naming context");
        }
        // What the manifests say is read with the same default.
        let cd = &all[0];
        assert_eq!(cd.parse_name("argoproj/argocd").as_ref(), Ok(&cd.name), "case manifest name");
        assert_eq!(cd.parse_reference("argoproj/argocd:v2.1.0").map(|r| r.name).as_ref(), Ok(&cd.name), "case manifest reference");
        assert_ne!(all[2].parse_name("argoproj/argocd").as_ref(), Ok(&all[2].name), "case bare name is not docker.io's");
        assert_eq!(cd.short_name(), "argoproj/argocd", "case short name");
    }

    #[test]
    fn image_list_keeps_order_and_isolates_bad_entries() {
        let all = images(&[("image-list", "a=nginx, b=Bad/Name, , c=redis:7")]);
        assert_eq!(all.len(), 3, "empty entries are skipped");
        assert_eq!(all[0].as_ref().map(|s| s.alias.as_str()).ok(), Some("a"));
        let err = all[1].as_ref().err().cloned();
        assert_eq!(err.as_ref().map(|e| e.key.as_str()), Some("argocd-image-updater.argoproj.io/image-list"));
        assert_eq!(err.as_ref().and_then(|e| e.alias.as_deref()), Some("b"));
        assert!(err.is_some_and(|e| e.message.contains("Bad/Name")), "message names the entry");
        assert_eq!(all[2].as_ref().map(|s| s.alias.as_str()).ok(), Some("c"));
    }

    #[test]
    fn a_constraint_cut_by_a_comma_spoils_both_halves_and_the_error_says_how_to_write_it() {
        let all = images(&[("image-list", "api=org/api:^1.0, web=nginx:>=1.20, <2.0, db=redis:7")]);
        assert_eq!(all.len(), 3, "{all:?}");
        assert_eq!(all[0].as_ref().map(|s| s.alias.as_str()).ok(), Some("api"));
        let err = all[1].as_ref().unwrap_err();
        assert_eq!(err.alias.as_deref(), Some("web"));
        assert!(err.message.contains("comma-separated") && err.message.contains("`>=1.20 <2.0`"), "{}", err.message);
        assert_eq!(all[2].as_ref().map(|s| s.alias.as_str()).ok(), Some("db"));
        // Entries that merely start like a version are images.
        for list in ["api=org/api, v2=org/api-v2", "api=org/api, v2fly/v2fly-core:5"] {
            assert!(images(&[("image-list", list)]).iter().all(|r| r.is_ok()), "{list}");
        }
        let alone = images(&[("image-list", "<2.0")]);
        assert!(alone[0].as_ref().unwrap_err().message.contains("`<2.0`"), "{alone:?}");
    }

    #[test]
    fn misspelled_keys_are_found_and_known_ones_are_not() {
        let ann: BTreeMap<String, String> = [
            "argocd-image-updater.argoproj.io/image-list",
            "argocd-image-updater.argoproj.io/api.update-strategy",
            "argocd-image-updater.argoproj.io/api.update-stratgy",
            "argocd-image-updater.argoproj.io/org_app.helm.image-tag",
            "argocd-image-updater.argoproj.io/web.allow-tags",
            "argocd-image-updater.argoproj.io/write-back-method",
            "argocd-image-pr.io/pin",
            "argocd-image-pr.io/api.pin-digest",
            "argocd-image-pr.io/lables",
            "kubectl.kubernetes.io/last-applied-configuration",
        ]
        .into_iter()
        .map(|k| (k.to_string(), "x".to_string()))
        .collect();
        let unknown = unknown_keys(&ann, &["api".into(), "org/app".into()]);
        assert_eq!(
            unknown,
            [
                "argocd-image-pr.io/lables",
                "argocd-image-updater.argoproj.io/api.update-stratgy",
                "argocd-image-updater.argoproj.io/web.allow-tags",
            ]
        );
    }

    #[test]
    fn image_list_errors() {
        // (name, image-list, text the message must contain)
        let cases = [
            ("bad name", "app=UPPER", "UPPER"),
            ("bad digest", "app=nginx@sha256:xyz", "digest"),
            ("duplicate alias", "app=nginx, app=redis", "more than one"),
            ("empty list", " , ", "no images"),
            ("constraint cut by a comma", "web=nginx:>=1.20, <2.0", "comma-separated"),
        ];
        for (name, list, text) in cases {
            let all = images(&[("image-list", list)]);
            let err = all.iter().find_map(|r| r.as_ref().err());
            assert!(err.is_some(), "case {name}: an error");
            if let Some(e) = err {
                assert_eq!(e.key, aiu_key("image-list"), "case {name}: key");
                assert!(e.message.contains(text), "case {name}: message {:?} contains {text:?}", e.message);
            }
        }
    }

    #[test]
    fn options_resolve() {
        let re = |s: &ImageSpec| match &s.allow_tags {
            Some(AllowTags::Regex(r)) => Some(r.as_str().to_string()),
            Some(AllowTags::Any) => Some("any".to_string()),
            None => None,
        };
        // (name, annotations, check)
        type Check = fn(&ImageSpec) -> bool;
        let cases: Vec<(&str, Pairs, Check)> = vec![
            ("default strategy semver", vec![("image-list", "a=nginx")], |s| {
                s.strategy == UpdateStrategy::Semver
                    && s.platforms == vec![Platform::linux_amd64()]
                    && !s.force_update
                    && !s.pin_digest
                    && s.allow_tags.is_none()
            }),
            ("old name latest", vec![("image-list", "a=nginx"), ("a.update-strategy", "latest")], |s| {
                s.strategy == UpdateStrategy::NewestBuild
            }),
            ("old name name", vec![("image-list", "a=nginx"), ("a.update-strategy", "name")], |s| {
                s.strategy == UpdateStrategy::Alphabetical
            }),
            ("new names, any case", vec![("image-list", "a=nginx"), ("a.update-strategy", " Digest ")], |s| {
                s.strategy == UpdateStrategy::Digest
            }),
            ("app-wide strategy", vec![("image-list", "a=nginx"), ("update-strategy", "alphabetical")], |s| {
                s.strategy == UpdateStrategy::Alphabetical
            }),
            (
                "per-alias overrides app-wide",
                vec![("image-list", "a=nginx"), ("update-strategy", "alphabetical"), ("a.update-strategy", "newest-build")],
                |s| s.strategy == UpdateStrategy::NewestBuild,
            ),
            ("alias-less reads app-wide", vec![("image-list", "nginx"), ("force-update", "true")], |s| s.force_update),
            (
                "alias-less ignores per-alias keys like AIU",
                vec![("image-list", "nginx"), ("nginx.update-strategy", "digest")],
                |s| s.strategy == UpdateStrategy::Semver,
            ),
            ("alias with slash uses underscore", vec![("image-list", "org/app=org/app"), ("org_app.force-update", "yes")], |s| {
                s.force_update
            }),
            ("ignore-tags list", vec![("image-list", "a=nginx"), ("a.ignore-tags", " *-rc*, latest ,,")], |s| {
                s.ignore_tags == vec!["*-rc*".to_string(), "latest".to_string()]
            }),
            ("app-wide ignore-tags", vec![("image-list", "a=nginx"), ("ignore-tags", "latest")], |s| {
                s.ignore_tags == vec!["latest".to_string()]
            }),
            ("platforms", vec![("image-list", "a=nginx"), ("a.platforms", "linux/arm64/v8, linux/amd64")], |s| {
                s.platforms.iter().map(|p| p.to_string()).collect::<Vec<_>>() == ["linux/arm64/v8", "linux/amd64"]
            }),
            (
                "no app-wide platforms in AIU",
                vec![("image-list", "a=nginx"), ("platforms", "linux/arm64")],
                |s| s.platforms == vec![Platform::linux_amd64()],
            ),
            ("pull secret app-wide", vec![("image-list", "a=nginx"), ("pull-secret", "pullsecret:argocd/regcred")], |s| {
                s.pull_secret.as_deref() == Some("pullsecret:argocd/regcred")
            }),
            (
                "helm and kustomize keys",
                vec![
                    ("image-list", "a=nginx"),
                    ("a.helm.image-name", "img.repo"),
                    ("a.helm.image-tag", "img.tag"),
                    ("a.helm.image-spec", "img.spec"),
                    ("a.kustomize.image-name", "docker.io/nginx"),
                ],
                |s| {
                    s.helm.image_name.as_deref() == Some("img.repo")
                        && s.helm.image_tag.as_deref() == Some("img.tag")
                        && s.helm.image_spec.as_deref() == Some("img.spec")
                        && s.kustomize_image_name.as_deref() == Some("docker.io/nginx")
                },
            ),
            ("pin digest", vec![("image-list", "a=nginx"), ("argocd-image-pr.io/a.pin-digest", "true")], |s| s.pin_digest),
            ("allow any", vec![("image-list", "a=nginx"), ("a.allow-tags", "any")], |s| matches!(s.allow_tags, Some(AllowTags::Any))),
            ("force-update false", vec![("image-list", "a=nginx"), ("a.force-update", "no")], |s| !s.force_update),
        ];
        for (name, pairs, check) in cases {
            let spec = only_image(name, &pairs);
            assert!(check(&spec), "case {name}: {spec:?}");
        }
        let spec = only_image("regexp", &[("image-list", "a=nginx"), ("a.allow-tags", "regexp:^1\\.2[0-9]+$")]);
        assert_eq!(re(&spec).as_deref(), Some("^1\\.2[0-9]+$"), "case regexp");
    }

    #[test]
    fn bad_options_name_their_key() {
        // (name, annotations, key in error)
        let cases: Vec<(&str, Pairs, &str)> = vec![
            ("unknown strategy", vec![("a.update-strategy", "newest")], "a.update-strategy"),
            ("unknown app-wide strategy", vec![("update-strategy", "fastest")], "update-strategy"),
            ("bad regexp", vec![("a.allow-tags", "regexp:^(1")], "a.allow-tags"),
            ("unknown match function", vec![("a.allow-tags", "glob:1.*")], "a.allow-tags"),
            ("bare allow-tags", vec![("allow-tags", "1.2")], "allow-tags"),
            ("bad platform", vec![("a.platforms", "linux")], "a.platforms"),
            ("bad force-update", vec![("a.force-update", "maybe")], "a.force-update"),
            ("bad glob", vec![("a.ignore-tags", "[1-")], "a.ignore-tags"),
        ];
        for (name, mut pairs, key) in cases {
            pairs.push(("image-list", "a=nginx, b=redis"));
            let all = images(&pairs);
            let err = all.first().and_then(|r| r.as_ref().err());
            assert_eq!(err.map(|e| e.key.clone()), Some(aiu_key(key)), "case {name}: error names the key");
            assert_eq!(err.and_then(|e| e.alias.clone()), Some("a".to_string()), "case {name}: error names the alias");
            let app_wide = !key.starts_with("a.");
            assert_eq!(all.get(1).is_some_and(|r| r.is_err()), app_wide, "case {name}: image b spoiled only by app-wide keys");
        }
    }

    #[test]
    fn per_alias_value_shields_from_bad_app_wide_value() {
        let all = images(&[("image-list", "a=nginx"), ("update-strategy", "bogus"), ("a.update-strategy", "digest")]);
        assert!(all.first().is_some_and(|r| r.as_ref().is_ok_and(|s| s.strategy == UpdateStrategy::Digest)));
    }

    #[test]
    fn write_back_settings() {
        let app = parse(&annotations(&[
            ("image-list", "nginx"),
            ("write-back-method", "git:secret:argocd/git-creds"),
            ("write-back-target", "kustomization:../base"),
        ]), &Arc::default());
        // AIU's choice between the Argo CD API and git: the bot always proposes through git, so
        // the key is accepted (no "read by nothing" warning) and has no effect.
        let method = annotations(&[("image-list", "nginx"), ("write-back-method", "git")]);
        assert_eq!(unknown_keys(&method, &["nginx".into()]), Vec::<String>::new());
        assert_eq!(app.and_then(|a| a.write_back_target), Some(WriteBackTarget::Kustomization(Some("../base".into()))));
    }

    #[test]
    fn write_back_target_forms() {
        use WriteBackTarget::*;
        // (annotation, parsed, as shown in messages)
        let cases = [
            ("kustomization", Kustomization(None), "kustomization"),
            ("kustomization:", Kustomization(None), "kustomization"),
            ("kustomization: ../base ", Kustomization(Some("../base".into())), "kustomization:../base"),
            ("kustomization:/envs/prod", Kustomization(Some("/envs/prod".into())), "kustomization:/envs/prod"),
            ("helmvalues", HelmValues(None), "helmvalues"),
            ("helmvalues:", HelmValues(None), "helmvalues"),
            ("helmvalues:env/prod.yaml", HelmValues(Some("env/prod.yaml".into())), "helmvalues:env/prod.yaml"),
        ];
        for (written, want, shown) in cases {
            let got: Result<WriteBackTarget, String> = written.parse();
            assert_eq!(got.as_ref(), Ok(&want), "case {written:?}");
            assert_eq!(want.to_string(), shown, "case {written:?}: display");
        }
    }

    #[test]
    fn an_unknown_write_back_target_spoils_every_image_and_names_the_value() {
        let all = images(&[("image-list", "a=nginx, b=Bad/Name, c=redis"), ("write-back-target", "argocd")]);
        assert_eq!(all.len(), 3);
        for (i, alias) in [(0, "a"), (2, "c")] {
            let err = all[i].as_ref().unwrap_err();
            assert_eq!(err.key, aiu_key("write-back-target"), "image {alias}");
            assert_eq!(err.alias.as_deref(), Some(alias));
            assert_eq!(err.to_string(), "annotation argocd-image-updater.argoproj.io/write-back-target: \"argocd\" is not supported (kustomization[:<dir>] or helmvalues[:<file>])");
        }
        let err = all[1].as_ref().unwrap_err();
        assert_eq!(err.key, aiu_key("image-list"), "an image-list error stays what it was");
        let parsed = parse(&annotations(&[("image-list", "a=nginx"), ("write-back-target", "Kustomization")]), &Arc::default());
        assert!(parsed.is_some_and(|a| a.write_back_target.is_none() && a.images[0].is_err()), "the kind is case-sensitive, as before");
    }
}
