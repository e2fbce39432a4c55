//! Golden cases for `edit_image`: `tests/data/manifests/<case>/` holds `in/` (the repository,
//! plus the Application manifest when the case needs one), `case.yaml` (what to edit) and
//! either `out/` (every file the edit changes, byte for byte; files not in `out/` must stay
//! unchanged) or `error.txt` (a substring of the expected error). `GOLDEN_BLESS=1` writes
//! `out/` from the current results, for review with `git diff`. `case.yaml` may list
//! `symlinks:` (path -> link text) that the repository holds besides the files of `in/`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{edit_image, unified_diff, EditRequest, Version};
use crate::annotations::{HelmKeys, ImageSpec, WriteBackTarget};
use crate::discovery::{AppSource, Application};
use crate::domain::{AppId, DefaultRegistry, ImageName};
use crate::files::FileSet;
use crate::manifest::find_current;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/manifests");

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Case {
    /// Application name (for `.argocd-source-<app>.yaml`); `web` when absent.
    app: Option<String>,
    source: SourceCase,
    /// Further sources of a multi-source Application (listed after `source`).
    #[serde(default)]
    other_sources: Vec<SourceCase>,
    /// Where `source` sits among the Application's sources (the others keep their order).
    #[serde(default)]
    source_index: usize,
    /// Path under `in/` of the Application manifest, when it is in this repository.
    app_manifest: Option<String>,
    #[serde(default)]
    app_document: usize,
    image: String,
    /// registries.conf's `default: true` prefix that names without registry host belong to;
    /// Docker Hub when absent.
    default_registry: Option<String>,
    #[serde(default)]
    helm: HelmCase,
    kustomize_image_name: Option<String>,
    target: TargetCase,
    /// The `write-back-target` annotation as written.
    write_back_target: Option<String>,
    /// Symbolic links of the repository, path -> link text (git stores links as their text,
    /// so the case states them rather than holding real links under `in/`).
    #[serde(default)]
    symlinks: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SourceCase {
    #[serde(rename = "repoURL")]
    repo_url: Option<String>,
    #[serde(default)]
    path: Option<String>,
    /// `kustomize`, `helm` or `directory` (default).
    kind: Option<String>,
    #[serde(default)]
    value_files: Vec<String>,
    #[serde(default)]
    recurse: bool,
    #[serde(rename = "ref")]
    ref_name: Option<String>,
    chart: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct HelmCase {
    image_name: Option<String>,
    image_tag: Option<String>,
    image_spec: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TargetCase {
    tag: Option<String>,
    digest: Option<String>,
}

fn source(c: &SourceCase) -> AppSource {
    let kind = c.kind.as_deref().unwrap_or("directory");
    AppSource {
        repo_url: c.repo_url.clone().unwrap_or_else(|| "https://git.example.com/gitops.git".into()),
        target_revision: "HEAD".into(),
        // A chart, or a `ref` source written without `path`, has no path (as discovery reads it).
        path: if c.chart.is_some() || (c.ref_name.is_some() && c.path.is_none()) { None } else { Some(c.path.clone().unwrap_or_default()) },
        chart: c.chart.clone(),
        ref_name: c.ref_name.clone(),
        helm_value_files: c.value_files.clone(),
        has_helm: kind == "helm",
        has_kustomize: kind == "kustomize",
        directory_recurse: c.recurse,
        ..AppSource::default()
    }
}

fn image_spec(c: &Case) -> ImageSpec {
    let default = match &c.default_registry {
        Some(prefix) => DefaultRegistry::from_prefix(prefix).expect("case default registry"),
        None => DefaultRegistry::default(),
    };
    ImageSpec {
        default_registry: std::sync::Arc::new(default.clone()),
        helm: HelmKeys {
            image_name: c.helm.image_name.clone(),
            image_tag: c.helm.image_tag.clone(),
            image_spec: c.helm.image_spec.clone(),
        },
        kustomize_image_name: c.kustomize_image_name.clone(),
        pin_digest: c.target.digest.is_some(),
        ..ImageSpec::new("app", ImageName::parse_with(&c.image, &default).expect("case image name"))
    }
}

fn read_tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn go(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(entries) = fs::read_dir(dir) else { return };
        for e in entries {
            let path = e.expect("dir entry").path();
            if path.is_dir() {
                go(base, &path, out);
            } else {
                let rel = path.strip_prefix(base).expect("under base").to_string_lossy().replace('\\', "/");
                out.insert(rel, fs::read(&path).expect("read case file"));
            }
        }
    }
    let mut out = BTreeMap::new();
    go(dir, dir, &mut out);
    out
}

/// Runs one case; `Err` describes how it failed.
fn run_case(dir: &Path, bless: bool) -> Result<(), String> {
    let text = fs::read_to_string(dir.join("case.yaml")).map_err(|e| format!("case.yaml: {e}"))?;
    let case: Case = serde_saphyr::from_str(&text).map_err(|e| format!("case.yaml: {e}"))?;
    let input = read_tree(&dir.join("in"));
    let mut files = FileSet::default();
    for (path, bytes) in &input {
        files.files.insert(path.clone(), bytes.clone().into());
    }
    for (path, target) in &case.symlinks {
        files.insert_symlink(path.clone(), target.clone());
    }
    let mut sources: Vec<AppSource> = case.other_sources.iter().map(source).collect();
    sources.insert(case.source_index, source(&case.source));
    let app = Application {
        id: AppId { namespace: "argocd".into(), name: case.app.clone().unwrap_or_else(|| "web".into()) },
        file: case.app_manifest.clone().unwrap_or_else(|| "apps/web.yaml".into()),
        document: case.app_document,
        annotations: BTreeMap::new(),
            labels: BTreeMap::new(),
            configured_by: None,
        sources: sources.clone(),
        project: None,
        destination: Default::default(),
        live: None,
    };
    let image = image_spec(&case);
    let target = Version { tag: case.target.tag.clone(), digest: case.target.digest.clone() };
    // Read as the annotations are: a value of no known form is refused before any edit.
    let result = match case.write_back_target.as_deref().map(str::parse::<WriteBackTarget>).transpose() {
        Ok(write_back_target) => edit_image(&EditRequest {
            files: &files,
            app: &app,
            source: &sources[case.source_index],
            image: &image,
            target: &target,
            write_back_target: write_back_target.as_ref(),
            app_manifest: case.app_manifest.as_deref(),
        })
        .map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };

    let error_file = dir.join("error.txt");
    if error_file.exists() {
        let want = fs::read_to_string(&error_file).map_err(|e| e.to_string())?;
        return match result {
            Err(e) if e.to_string().contains(want.trim()) => Ok(()),
            Err(e) => Err(format!("expected an error containing {:?}, got: {e}", want.trim())),
            Ok(changes) => Err(format!(
                "expected an error containing {:?}, got {} changed file(s):\n{}",
                want.trim(),
                changes.len(),
                changes.iter().map(|c| unified_diff(&c.path, &c.before, &c.after)).collect::<String>()
            )),
        };
    }
    let changes = result.map_err(|e| format!("unexpected error: {e}"))?;
    let out_dir = dir.join("out");
    if bless {
        let _ = fs::remove_dir_all(&out_dir);
        for c in &changes {
            let p = out_dir.join(&c.path);
            fs::create_dir_all(p.parent().expect("parent")).map_err(|e| e.to_string())?;
            fs::write(&p, &c.after).map_err(|e| e.to_string())?;
        }
        return Ok(());
    }
    // Cross-check with the reader: after the edit, find_current must see the target version.
    let mut edited = FileSet::default();
    for (path, bytes) in &input {
        edited.files.insert(path.clone(), bytes.clone().into());
    }
    for c in &changes {
        edited.files.insert(c.path.clone(), c.after.clone().into());
    }
    edited.symlinks = files.symlinks.clone();
    // An Application manifest that was edited is read again, as the next run would read it.
    let reread = case.app_manifest.as_ref().and_then(|file| {
        crate::discovery::find_applications(&edited).0.into_iter().find(|a| &a.file == file && a.document == case.app_document)
    });
    let (check_app, check_source) = match reread.as_ref().and_then(|a| a.sources.get(case.source_index).map(|s| (a, s))) {
        Some((a, s)) => (a, s),
        None => (&app, &sources[case.source_index]),
    };
    match find_current(&edited, check_app, check_source, &image) {
        Ok(Some(cur)) => {
            let tag_ok = target.tag.is_none() || cur.tag == target.tag;
            if !tag_ok || cur.digest != target.digest {
                return Err(format!("after the edit find_current reads {cur:?}, not {target:?}"));
            }
        }
        Ok(None) => {}
        Err(e) => return Err(format!("after the edit find_current fails: {e}")),
    }
    let expected = read_tree(&out_dir);
    let mut problems = String::new();
    for c in &changes {
        match expected.get(&c.path) {
            Some(want) if *want == c.after => {}
            Some(want) => problems.push_str(&format!(
                "{} differs from out/ (expected -> actual):\n{}",
                c.path,
                unified_diff(&c.path, want, &c.after)
            )),
            None => problems.push_str(&format!(
                "{} changed but is not in out/:\n{}",
                c.path,
                unified_diff(&c.path, &c.before, &c.after)
            )),
        }
        if c.before[..] != input.get(&c.path).map(Vec::as_slice).unwrap_or_default()[..] {
            problems.push_str(&format!("{}: `before` is not the input file\n", c.path));
        }
    }
    for path in expected.keys() {
        if !changes.iter().any(|c| &c.path == path) {
            problems.push_str(&format!("{path} is in out/ but was not changed\n"));
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems) }
}

#[test]
fn golden_edit_cases() {
    let bless = std::env::var_os("GOLDEN_BLESS").is_some();
    let mut dirs: Vec<PathBuf> = fs::read_dir(ROOT)
        .expect("tests/data/manifests")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.join("case.yaml").exists())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 40, "only {} golden cases", dirs.len());
    let mut failures = Vec::new();
    for dir in &dirs {
        let name = dir.file_name().expect("name").to_string_lossy().to_string();
        if let Err(why) = run_case(dir, bless) {
            failures.push(format!("--- case {name}: {why}"));
        }
    }
    assert!(failures.is_empty(), "{} of {} golden cases failed:\n{}", failures.len(), dirs.len(), failures.join("\n"));
}
