//! Per-Application pull-request settings: our own annotations (`argocd-image-pr.io/...`) over
//! the repository's entry in the config file; the base branch; the branch name. Pure.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::domain::AppId;
pub use crate::domain::MergeMethod;

/// Prefix of the bot's own annotations.
pub const PREFIX: &str = "argocd-image-pr.io/";

/// A `repositories:` entry of the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RepoSettings {
    /// The repository, as Applications' `repoURL` name it (`.git` and a trailing `/` aside).
    pub url: String,
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub reviewers: Vec<String>,
    #[serde(default)]
    pub team_reviewers: Vec<String>,
    #[serde(default)]
    pub assignees: Vec<String>,
    #[serde(default)]
    pub draft: bool,
    /// `merge`, `squash` or `rebase`.
    pub auto_merge: Option<String>,
    /// Base branch for every Application of this repository that does not name one.
    pub base: Option<String>,
}

/// What one Application's pull request should look like, beyond its content.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrSettings {
    pub labels: Vec<String>,
    pub reviewers: Vec<String>,
    pub team_reviewers: Vec<String>,
    pub assignees: Vec<String>,
    pub draft: bool,
    pub auto_merge: Option<MergeMethod>,
    /// Configured base branch (annotation `base-branch`, else the repository's `base`).
    pub base: Option<String>,
}

/// An annotation or config value that cannot be used, named by its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct SettingsError {
    pub key: String,
    pub message: String,
}

/// Reads the Application's own annotations over the repository's config. A list annotation
/// replaces the config's list (an empty value clears it).
pub fn pr_settings(
    annotations: &BTreeMap<String, String>,
    repo: Option<&RepoSettings>,
) -> Result<PrSettings, SettingsError> {
    let mut s = PrSettings::default();
    if let Some(r) = repo {
        s.labels = r.labels.clone();
        s.reviewers = r.reviewers.clone();
        s.team_reviewers = r.team_reviewers.clone();
        s.assignees = r.assignees.clone();
        s.draft = r.draft;
        s.auto_merge = match &r.auto_merge {
            None => None,
            Some(m) => Some(MergeMethod::parse(m).ok_or_else(|| SettingsError {
                key: format!("repositories[{}].autoMerge", r.url),
                message: format!("{m:?} is not one of merge, squash, rebase"),
            })?),
        };
        s.base = r.base.clone().filter(|b| !b.trim().is_empty());
    }
    let get = |k: &str| annotations.get(&format!("{PREFIX}{k}")).map(|v| (format!("{PREFIX}{k}"), v.trim()));
    let list = |key: &str, value: &str, what: &str| -> Result<Vec<String>, SettingsError> {
        let items: Vec<String> = value.split(',').map(str::trim).filter(|v| !v.is_empty()).map(String::from).collect();
        for item in &items {
            if item.chars().any(|c| c.is_whitespace() || c.is_control()) || (what != "label" && item.contains(['@', ','])) {
                return Err(SettingsError { key: key.to_string(), message: format!("{item:?} is not a valid {what}") });
            }
        }
        Ok(items)
    };
    if let Some((k, v)) = get("labels") {
        let labels: Vec<String> = v.split(',').map(str::trim).filter(|v| !v.is_empty()).map(String::from).collect();
        if let Some(bad) = labels.iter().find(|l| l.chars().any(char::is_control) || l.len() > 50) {
            return Err(SettingsError { key: k, message: format!("{bad:?} is not a valid label (at most 50 characters)") });
        }
        s.labels = labels;
    }
    if let Some((k, v)) = get("reviewers") {
        s.reviewers = list(&k, v, "user name")?;
    }
    if let Some((k, v)) = get("team-reviewers") {
        s.team_reviewers = list(&k, v, "team slug")?;
    }
    if let Some((k, v)) = get("assignees") {
        s.assignees = list(&k, v, "user name")?;
    }
    if let Some((k, v)) = get("draft") {
        s.draft = parse_bool(v).ok_or_else(|| SettingsError { key: k, message: format!("{v:?} is not true or false") })?;
    }
    if let Some((k, v)) = get("auto-merge") {
        s.auto_merge = if v.is_empty() || v.eq_ignore_ascii_case("false") || v.eq_ignore_ascii_case("off") {
            None
        } else {
            Some(MergeMethod::parse(v).ok_or_else(|| SettingsError {
                key: k,
                message: format!("{v:?} is not one of merge, squash, rebase"),
            })?)
        };
    }
    if let Some((k, v)) = get("base-branch") {
        if v.is_empty() || sanitize_ref(v) != v {
            return Err(SettingsError { key: k, message: format!("{v:?} is not a valid branch name") });
        }
        s.base = Some(v.trim_start_matches("refs/heads/").to_string());
    }
    Ok(s)
}

/// Go `strconv.ParseBool` forms, like the AIU annotations.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// The branch a PR goes into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseChoice {
    Branch(String),
    /// The repository's default branch (`targetRevision: HEAD` or none).
    DefaultBranch,
}

/// The base branch for a source: the configured base; else `targetRevision` when it is one of
/// `branches`; the default branch for `HEAD`. A tag or commit without a configured base is an
/// error the caller turns into a hold.
pub fn choose_base(target_revision: &str, configured: Option<&str>, branches: &[String]) -> Result<BaseChoice, String> {
    if let Some(base) = configured {
        return Ok(BaseChoice::Branch(base.to_string()));
    }
    let rev = target_revision.trim();
    if rev.is_empty() || rev == "HEAD" {
        return Ok(BaseChoice::DefaultBranch);
    }
    let name = rev.strip_prefix("refs/heads/").unwrap_or(rev);
    if branches.iter().any(|b| b == name) {
        return Ok(BaseChoice::Branch(name.to_string()));
    }
    Err(format!(
        "targetRevision {rev:?} is not a branch (a tag or a commit): the bot does not know where to propose; \
         set the annotation {PREFIX}base-branch or `base` for this repository in the config"
    ))
}

/// The default branch template.
pub const DEFAULT_BRANCH_TEMPLATE: &str = "argocd-image-pr/{{namespace}}/{{name}}";

/// Renders the branch template (`{{namespace}}`, `{{name}}`) and makes the result a valid ref.
pub fn branch_name(template: &str, app: &AppId) -> String {
    let mut out = template.to_string();
    for (key, value) in [("namespace", &app.namespace), ("name", &app.name)] {
        for pattern in [format!("{{{{{key}}}}}"), format!("{{{{ {key} }}}}")] {
            out = out.replace(&pattern, value);
        }
    }
    sanitize_ref(&out)
}

/// A valid branch name (git check-ref-format): forbidden characters become `-`, empty
/// components, leading dots and `.lock` endings are removed.
pub fn sanitize_ref(name: &str) -> String {
    let cleaned: String = name
        .trim()
        .chars()
        .map(|c| if c.is_ascii_control() || c.is_whitespace() || "~^:?*[\\".contains(c) { '-' } else { c })
        .collect();
    let cleaned = cleaned.replace("@{", "-{");
    let mut parts: Vec<String> = Vec::new();
    for part in cleaned.split('/') {
        let mut p = part.to_string();
        while p.contains("..") {
            p = p.replace("..", ".");
        }
        let mut p = p.trim_start_matches('.').to_string();
        while p.ends_with(".lock") || p.ends_with('.') {
            p = p.trim_end_matches('.').trim_end_matches(".lock").to_string();
        }
        if !p.is_empty() {
            parts.push(p);
        }
    }
    let out = parts.join("/");
    if out.is_empty() || out == "@" { "argocd-image-pr".to_string() } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string())).collect()
    }

    #[test]
    fn annotations_override_repository_config() {
        let repo = RepoSettings {
            url: "https://github.com/o/r".into(),
            labels: vec!["deps".into()],
            reviewers: vec!["alice".into()],
            draft: true,
            auto_merge: Some("squash".into()),
            base: Some("release".into()),
            ..Default::default()
        };
        /// (case, annotations, repository settings, what comes out)
        type Case<'a> = (&'a str, BTreeMap<String, String>, Option<&'a RepoSettings>, PrSettings);
        let cases: Vec<Case> = vec![
            ("nothing anywhere", ann(&[]), None, PrSettings::default()),
            (
                "config only",
                ann(&[]),
                Some(&repo),
                PrSettings {
                    labels: vec!["deps".into()],
                    reviewers: vec!["alice".into()],
                    draft: true,
                    auto_merge: Some(MergeMethod::Squash),
                    base: Some("release".into()),
                    ..Default::default()
                },
            ),
            (
                "annotations win",
                ann(&[
                    ("labels", "a, b ,"),
                    ("reviewers", ""),
                    ("team-reviewers", "platform"),
                    ("assignees", "bob"),
                    ("draft", "false"),
                    ("auto-merge", "rebase"),
                    ("base-branch", "main"),
                ]),
                Some(&repo),
                PrSettings {
                    labels: vec!["a".into(), "b".into()],
                    reviewers: vec![],
                    team_reviewers: vec!["platform".into()],
                    assignees: vec!["bob".into()],
                    draft: false,
                    auto_merge: Some(MergeMethod::Rebase),
                    base: Some("main".into()),
                },
            ),
            (
                "auto-merge off",
                ann(&[("auto-merge", "false")]),
                Some(&repo),
                PrSettings { auto_merge: None, ..pr_settings(&ann(&[]), Some(&repo)).unwrap() },
            ),
        ];
        for (name, annotations, repo, want) in cases {
            assert_eq!(pr_settings(&annotations, repo).unwrap(), want, "case {name}");
        }
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            ("draft", "maybe", "argocd-image-pr.io/draft"),
            ("auto-merge", "yolo", "argocd-image-pr.io/auto-merge"),
            ("reviewers", "a b", "argocd-image-pr.io/reviewers"),
            ("assignees", "x@y", "argocd-image-pr.io/assignees"),
            ("base-branch", "a..b", "argocd-image-pr.io/base-branch"),
        ];
        for (key, value, want) in cases {
            let err = pr_settings(&ann(&[(key, value)]), None).unwrap_err();
            assert_eq!(err.key, want, "case {key}={value}");
            assert!(err.to_string().contains(value), "case {key}={value}: {err}");
        }
        let repo = RepoSettings { url: "u".into(), auto_merge: Some("fast".into()), ..Default::default() };
        assert!(pr_settings(&ann(&[]), Some(&repo)).unwrap_err().key.contains("autoMerge"));
    }

    #[test]
    fn base_branch_rules() {
        let branches = vec!["main".to_string(), "release/1.x".to_string()];
        let cases = [
            ("HEAD is the default branch", "HEAD", None, Ok(BaseChoice::DefaultBranch)),
            ("empty is the default branch", "", None, Ok(BaseChoice::DefaultBranch)),
            ("a branch", "main", None, Ok(BaseChoice::Branch("main".into()))),
            ("a full branch ref", "refs/heads/release/1.x", None, Ok(BaseChoice::Branch("release/1.x".into()))),
            ("configured wins", "v1.2.0", Some("main"), Ok(BaseChoice::Branch("main".into()))),
            ("configured wins over a branch", "main", Some("release/1.x"), Ok(BaseChoice::Branch("release/1.x".into()))),
        ];
        for (name, rev, configured, want) in cases {
            assert_eq!(choose_base(rev, configured, &branches), want, "case {name}");
        }
        for rev in ["v1.2.0", "3f2a9c1"] {
            let err = choose_base(rev, None, &branches).unwrap_err();
            assert!(err.contains(rev) && err.contains("base-branch"), "case {rev}: {err}");
        }
    }

    #[test]
    fn branch_names_are_valid_refs() {
        let app = |ns: &str, name: &str| AppId { namespace: ns.into(), name: name.into() };
        let cases = [
            ("default", DEFAULT_BRANCH_TEMPLATE, app("argocd", "api"), "argocd-image-pr/argocd/api"),
            ("spaced braces", "bot/{{ name }}", app("argocd", "web"), "bot/web"),
            ("forbidden characters", "bot/{{name}}", app("x", "a b~c^d:e?f*g[h\\i"), "bot/a-b-c-d-e-f-g-h-i"),
            ("dots and lock", "bot/..{{name}}.lock", app("x", "n"), "bot/n"),
            ("empty components", "bot//{{namespace}}/", app("ns", "n"), "bot/ns"),
            ("reflog syntax", "bot/{{name}}", app("x", "a@{1}"), "bot/a-{1}"),
            ("double dots inside", "bot/{{name}}", app("x", "a..b"), "bot/a.b"),
        ];
        for (name, template, id, want) in cases {
            assert_eq!(branch_name(template, &id), want, "case {name}");
        }
    }
}
