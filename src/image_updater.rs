//! argocd-image-updater 1.x `ImageUpdater` resources (`argocd-image-updater.argoproj.io/v1alpha1`),
//! read from the cluster or from git, turned into the annotations they stand for, so that a
//! resource and the equivalent annotations make the same decisions by construction: the rest of
//! the bot only ever reads annotations (docs/annotations.md has the mapping).
//!
//! As AIU does: an ImageUpdater configures the Applications of its own namespace whose name
//! matches an `applicationRefs[].namePattern` (Go `path/filepath.Match`) and whose labels match
//! its `labelSelectors`; the most specific ref wins; each setting comes from the most specific
//! level that sets it (image, then ref, then spec), lists replacing lists; `useAnnotations: true`
//! takes everything but the selection from the Application's own annotations. Pure.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The annotation prefix the settings are written under.
const PREFIX: &str = "argocd-image-updater.argoproj.io/";

/// One ImageUpdater, and where it was read (`k8s:<namespace>/<name>`, or a file).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageUpdater {
    pub namespace: String,
    pub name: String,
    pub place: String,
    spec: Spec,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Resource {
    api_version: String,
    kind: String,
    #[serde(default)]
    metadata: Metadata,
    spec: Option<Spec>,
    /// Written by AIU's controller; nothing the bot reads.
    #[serde(default)]
    status: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
struct Metadata {
    name: Option<String>,
    namespace: Option<String>,
    #[serde(flatten)]
    _rest: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Spec {
    common_update_settings: Option<Common>,
    write_back_config: Option<WriteBack>,
    #[serde(default)]
    application_refs: Vec<AppRef>,
    images_verification: Option<serde_json::Value>,
    /// Removed in AIU 1.2 (ignored since 1.0.3): `metadata.namespace` decides.
    namespace: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AppRef {
    name_pattern: String,
    label_selectors: Option<LabelSelector>,
    use_annotations: Option<bool>,
    common_update_settings: Option<Common>,
    write_back_config: Option<WriteBack>,
    images: Option<Vec<ImageConfig>>,
    images_verification: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LabelSelector {
    #[serde(default)]
    match_labels: BTreeMap<String, String>,
    #[serde(default)]
    match_expressions: Vec<LabelExpression>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelExpression {
    key: String,
    operator: String,
    #[serde(default)]
    values: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ImageConfig {
    alias: String,
    image_name: String,
    common_update_settings: Option<Common>,
    manifest_targets: Option<ManifestTargets>,
    images_verification: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Common {
    update_strategy: Option<String>,
    force_update: Option<bool>,
    allow_tags: Option<String>,
    ignore_tags: Option<Vec<String>>,
    pull_secret: Option<String>,
    platforms: Option<Vec<String>>,
}

impl Common {
    /// `self` over `outer`, field by field; a list replaces a list.
    fn over(&self, outer: &Common) -> Common {
        Common {
            update_strategy: self.update_strategy.clone().or_else(|| outer.update_strategy.clone()),
            force_update: self.force_update.or(outer.force_update),
            allow_tags: self.allow_tags.clone().or_else(|| outer.allow_tags.clone()),
            ignore_tags: self.ignore_tags.clone().or_else(|| outer.ignore_tags.clone()),
            pull_secret: self.pull_secret.clone().or_else(|| outer.pull_secret.clone()),
            platforms: self.platforms.clone().or_else(|| outer.platforms.clone()),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WriteBack {
    method: Option<String>,
    git_config: Option<GitConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GitConfig {
    repository: Option<String>,
    branch: Option<String>,
    write_back_target: Option<String>,
    /// AIU's own pull requests; the bot always proposes by pull request.
    pull_request: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestTargets {
    helm: Option<HelmTarget>,
    kustomize: Option<KustomizeTarget>,
    plugin: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct HelmTarget {
    name: Option<String>,
    tag: Option<String>,
    spec: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct KustomizeTarget {
    name: String,
}

/// Whether a YAML or JSON document is an ImageUpdater (read as one only then).
pub fn is_image_updater(api_version: Option<&str>, kind: Option<&str>) -> bool {
    api_version == Some("argocd-image-updater.argoproj.io/v1alpha1") && kind == Some("ImageUpdater")
}

/// Reads one ImageUpdater from its document (YAML or JSON), or says what is wrong with it,
/// naming `place`.
pub fn parse(place: &str, text: &str) -> Result<ImageUpdater, String> {
    let resource: Resource = serde_saphyr::from_str(text).map_err(|e| format!("ImageUpdater {place}: {}", one_line(&e.to_string())))?;
    if !is_image_updater(Some(&resource.api_version), Some(&resource.kind)) {
        return Err(format!("{place}: not an ImageUpdater ({} {})", resource.api_version, resource.kind));
    }
    let name = resource.metadata.name.filter(|n| !n.is_empty()).ok_or_else(|| format!("ImageUpdater {place}: no metadata.name"))?;
    let namespace = resource.metadata.namespace.filter(|n| !n.is_empty()).unwrap_or_else(|| crate::discovery::DEFAULT_NAMESPACE.to_string());
    let label = format!("ImageUpdater {namespace}/{name} ({place})");
    let spec = resource.spec.ok_or_else(|| format!("{label}: no spec"))?;
    if spec.namespace.is_some() {
        return Err(format!(
            "{label}: spec.namespace was removed in argocd-image-updater 1.2; an ImageUpdater configures the Applications of its own namespace (metadata.namespace)"
        ));
    }
    if spec.application_refs.is_empty() {
        return Err(format!("{label}: spec.applicationRefs is empty (at least one is required)"));
    }
    let mut patterns: Vec<&str> = Vec::new();
    for (i, r) in spec.application_refs.iter().enumerate() {
        let at = format!("{label}: spec.applicationRefs[{i}]");
        if glob_match(&r.name_pattern, "validation").is_err() {
            return Err(format!("{at}: namePattern {:?} is not a valid pattern", r.name_pattern));
        }
        if patterns.contains(&r.name_pattern.as_str()) {
            return Err(format!("{at}: namePattern {:?} is given twice", r.name_pattern));
        }
        patterns.push(&r.name_pattern);
        let uses_annotations = r.use_annotations == Some(true);
        let images = r.images.as_deref().unwrap_or_default();
        if !uses_annotations && images.is_empty() {
            return Err(format!("{at}: either useAnnotations must be true, or images must be given"));
        }
        let mut aliases: Vec<&str> = Vec::new();
        for (j, image) in images.iter().enumerate() {
            let at = format!("{at}.images[{j}]");
            if !valid_alias(&image.alias) {
                return Err(format!("{at}: alias {:?} must match ^[a-zA-Z0-9][a-zA-Z0-9-._]*$", image.alias));
            }
            if aliases.contains(&image.alias.as_str()) {
                return Err(format!("{at}: alias {:?} is given twice", image.alias));
            }
            aliases.push(&image.alias);
            if image.image_name.trim().is_empty() {
                return Err(format!("{at}: imageName is empty"));
            }
            if let Some(t) = &image.manifest_targets {
                let count = [t.helm.is_some(), t.kustomize.is_some(), t.plugin.is_some()].iter().filter(|x| **x).count();
                if count != 1 {
                    return Err(format!("{at}.manifestTargets: exactly one of helm, kustomize or plugin is required"));
                }
            }
        }
    }
    Ok(ImageUpdater { namespace, name, place: place.to_string(), spec })
}

/// What an ImageUpdater makes of one Application: the annotations it stands for, and which ref.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Configured {
    /// The Application's annotations with the image updater's own replaced by what the ref says.
    pub annotations: BTreeMap<String, String>,
    /// `ImageUpdater argocd/x, applicationRefs[1] (namePattern "web-*")`, for messages.
    pub by: String,
}

impl ImageUpdater {
    /// The annotations this ImageUpdater gives the Application `name` (of its namespace) with
    /// `labels` and its own `annotations`; `None` when no ref matches; an error naming the
    /// ImageUpdater and the ref when the matching ref asks for what the bot cannot do.
    pub fn configure(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
        annotations: &BTreeMap<String, String>,
    ) -> Option<Result<Configured, String>> {
        let mut refs: Vec<(usize, &AppRef)> = self.spec.application_refs.iter().enumerate().collect();
        // Most specific first; ties keep their order.
        refs.sort_by_key(|(_, r)| std::cmp::Reverse(specificity(r)));
        for (i, r) in refs {
            if glob_match(&r.name_pattern, name) != Ok(true) || !selects(r.label_selectors.as_ref(), labels) {
                continue;
            }
            let by = format!("ImageUpdater {}/{}, applicationRefs[{i}] (namePattern {:?})", self.namespace, self.name, r.name_pattern);
            if r.use_annotations == Some(true) {
                // As AIU: without an image-list the next ref is tried.
                if !annotations.contains_key(&format!("{PREFIX}image-list")) {
                    continue;
                }
                if let Some(v) = &r.images_verification {
                    return Some(Err(unsupported_verification(&by, v)));
                }
                return Some(Ok(Configured { annotations: annotations.clone(), by }));
            }
            return Some(self.annotations(r, annotations, &by).map(|annotations| Configured { annotations, by }));
        }
        None
    }

    fn annotations(&self, r: &AppRef, own: &BTreeMap<String, String>, by: &str) -> Result<BTreeMap<String, String>, String> {
        // What the Application's annotations say of the image updater is the resource's to say.
        let mut out: BTreeMap<String, String> = own.iter().filter(|(k, _)| !k.starts_with(PREFIX)).map(|(k, v)| (k.clone(), v.clone())).collect();
        let mut set = |key: String, value: String| {
            out.insert(format!("{PREFIX}{key}"), value);
        };
        let spec_common = self.spec.common_update_settings.clone().unwrap_or_default();
        let ref_common = r.common_update_settings.clone().unwrap_or_default().over(&spec_common);
        let images = r.images.as_deref().unwrap_or_default();
        let list: Vec<String> = images.iter().map(|i| format!("{}={}", i.alias, i.image_name.trim())).collect();
        set("image-list".into(), list.join(", "));
        for (j, image) in images.iter().enumerate() {
            let at = format!("{by}: images[{j}] ({})", image.alias);
            if let Some(v) = [&self.spec.images_verification, &r.images_verification, &image.images_verification].into_iter().flatten().next() {
                return Err(unsupported_verification(&at, v));
            }
            let c = image.common_update_settings.clone().unwrap_or_default().over(&ref_common);
            let alias = &image.alias;
            if let Some(s) = &c.update_strategy {
                set(format!("{alias}.update-strategy"), s.clone());
            }
            if let Some(f) = c.force_update {
                set(format!("{alias}.force-update"), f.to_string());
            }
            if let Some(a) = &c.allow_tags {
                set(format!("{alias}.allow-tags"), a.clone());
            }
            if let Some(tags) = c.ignore_tags.as_ref().filter(|t| !t.is_empty()) {
                set(format!("{alias}.ignore-tags"), tags.join(","));
            }
            if let Some(p) = c.platforms.as_ref().filter(|p| !p.is_empty()) {
                set(format!("{alias}.platforms"), p.join(","));
            }
            if let Some(secret) = &c.pull_secret {
                // As AIU: a Secret of another namespace is not the resource's to name.
                let ns = secret.strip_prefix("pullsecret:").or_else(|| secret.strip_prefix("secret:")).and_then(|s| s.split_once('/')).map(|(ns, _)| ns);
                if let Some(ns) = ns.filter(|ns| *ns != self.namespace) {
                    return Err(format!("{at}: pullSecret {secret:?} names a Secret in namespace {ns}; an ImageUpdater may name only Secrets of its own namespace ({})", self.namespace));
                }
                set(format!("{alias}.pull-secret"), secret.clone());
            }
            match &image.manifest_targets {
                Some(ManifestTargets { helm: Some(h), .. }) => {
                    if let Some(s) = &h.spec {
                        set(format!("{alias}.helm.image-spec"), s.clone());
                    } else {
                        if let Some(n) = &h.name {
                            set(format!("{alias}.helm.image-name"), n.clone());
                        }
                        if let Some(t) = &h.tag {
                            set(format!("{alias}.helm.image-tag"), t.clone());
                        }
                    }
                }
                Some(ManifestTargets { kustomize: Some(k), .. }) => set(format!("{alias}.kustomize.image-name"), k.name.clone()),
                Some(ManifestTargets { plugin: Some(_), .. }) => {
                    return Err(format!("{at}: manifestTargets.plugin is not supported by argocd-image-pr (config management plugins); use helm or kustomize"));
                }
                _ => {}
            }
        }
        let spec_wb = self.spec.write_back_config.clone().unwrap_or_default();
        let ref_wb = r.write_back_config.clone().unwrap_or_default();
        let method = ref_wb.method.clone().or(spec_wb.method.clone());
        if let Some(m) = &method {
            set("write-back-method".into(), m.clone());
        }
        if method.as_deref().is_some_and(|m| m == "git" || m.starts_with("git:")) {
            let (outer, inner) = (spec_wb.git_config.unwrap_or_default(), ref_wb.git_config.unwrap_or_default());
            if let Some(v) = inner.repository.or(outer.repository) {
                set("git-repository".into(), v);
            }
            if let Some(v) = inner.branch.or(outer.branch) {
                set("git-branch".into(), v);
            }
            if let Some(v) = inner.write_back_target.or(outer.write_back_target) {
                set("write-back-target".into(), v);
            }
        }
        Ok(out)
    }
}

fn unsupported_verification(at: &str, v: &serde_json::Value) -> String {
    let enabled = v.get("enabled").and_then(serde_json::Value::as_bool).unwrap_or(true);
    if enabled {
        format!("{at}: imagesVerification (cosign signatures) is not supported by argocd-image-pr: it proposes no image it was asked to verify")
    } else {
        format!("{at}: imagesVerification is given (disabled); remove it")
    }
}

fn valid_alias(alias: &str) -> bool {
    let mut chars = alias.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric()) && chars.all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
}

/// AIU's ranking of refs: an exact name first, then more literal characters, then label
/// selectors (and more of their terms).
fn specificity(r: &AppRef) -> u64 {
    let p = &r.name_pattern;
    let mut score = 0;
    if !p.contains(['*', '?', '[', ']']) {
        score += 1_000_000;
    }
    // Character classes count for nothing, wildcards neither.
    let mut literal = 0u64;
    let mut in_class = false;
    for c in p.chars() {
        match c {
            '[' => in_class = true,
            ']' if in_class => in_class = false,
            '*' | '?' => {}
            _ if in_class => {}
            _ => literal += 1,
        }
    }
    score += literal;
    if let Some(s) = &r.label_selectors {
        score += 10_000 + 100 * (s.match_labels.len() + s.match_expressions.len()) as u64;
    }
    score
}

/// Kubernetes label selector semantics; an operator Kubernetes does not know selects nothing.
fn selects(selector: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    let Some(s) = selector else { return true };
    s.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
        && s.match_expressions.iter().all(|e| match e.operator.as_str() {
            "In" => labels.get(&e.key).is_some_and(|v| e.values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !e.values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            _ => false,
        })
}

/// Go's `path/filepath.Match` on Unix, which AIU matches names with: `*` (no `/`), `?`, `[...]`
/// classes with ranges and `^` negation, `\` escapes, the whole name. Written here because glob
/// crates read the same text differently (`{a,b}`, `**`, `[!...]`), and one name pattern must
/// select the same Applications here as in AIU. `Err` for a malformed pattern.
fn glob_match(pattern: &str, name: &str) -> Result<bool, ()> {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Validate the whole pattern first, as Go does.
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '[' => i = class_end(&p, i)?,
            '\\' => {
                if i + 1 >= p.len() {
                    return Err(());
                }
                i += 2;
            }
            _ => i += 1,
        }
    }
    Ok(matches_at(&p, 0, &n, 0))
}

/// Index just past the class starting at `start` (`[`).
fn class_end(p: &[char], start: usize) -> Result<usize, ()> {
    let mut i = start + 1;
    if i < p.len() && p[i] == '^' {
        i += 1;
    }
    let mut first = true;
    loop {
        if i >= p.len() {
            return Err(());
        }
        if p[i] == ']' && !first {
            return Ok(i + 1);
        }
        first = false;
        let (_, next) = class_char(p, i)?;
        i = next;
        if i < p.len() && p[i] == '-' {
            let (_, next) = class_char(p, i + 1)?;
            i = next;
        }
    }
}

fn class_char(p: &[char], i: usize) -> Result<(char, usize), ()> {
    match p.get(i) {
        None | Some('-') | Some(']') => Err(()),
        Some('\\') => p.get(i + 1).map(|c| (*c, i + 2)).ok_or(()),
        Some(c) => Ok((*c, i + 1)),
    }
}

fn class_matches(p: &[char], start: usize, c: char) -> (bool, usize) {
    let mut i = start + 1;
    let negated = p.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    while i < p.len() && (first || p[i] != ']') {
        first = false;
        let Ok((lo, next)) = class_char(p, i) else { break };
        i = next;
        let mut hi = lo;
        if i < p.len()
            && p[i] == '-'
            && let Ok((h, next)) = class_char(p, i + 1)
        {
            hi = h;
            i = next;
        }
        if lo <= c && c <= hi {
            hit = true;
        }
    }
    (hit != negated, i + 1)
}

fn matches_at(p: &[char], pi: usize, n: &[char], ni: usize) -> bool {
    if pi == p.len() {
        return ni == n.len();
    }
    match p[pi] {
        '*' => (ni..=n.len()).take_while(|k| *k == ni || n[*k - 1] != '/').any(|k| matches_at(p, pi + 1, n, k)),
        '?' => ni < n.len() && n[ni] != '/' && matches_at(p, pi + 1, n, ni + 1),
        '[' => {
            if ni >= n.len() || n[ni] == '/' {
                return false;
            }
            let (hit, next) = class_matches(p, pi, n[ni]);
            hit && matches_at(p, next, n, ni + 1)
        }
        '\\' => ni < n.len() && p.get(pi + 1) == Some(&n[ni]) && matches_at(p, pi + 2, n, ni + 1),
        c => ni < n.len() && n[ni] == c && matches_at(p, pi + 1, n, ni + 1),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
pub(crate) mod tests;
