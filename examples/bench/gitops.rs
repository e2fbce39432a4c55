//! The GitOps repository: Application manifests (multi-document files under `argocd/`) and one
//! directory per Application under `apps/` (kustomize layouts and plain Deployments), committed
//! with the git CLI.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::fleet::{App, Fleet, Layout, repo_path};

const AIU: &str = "argocd-image-updater.argoproj.io";
const APPS_PER_FILE: usize = 40;

/// YAML single-quoted scalar.
fn sq(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn image_name(host: &str, repo: usize) -> String {
    format!("{host}/{}", repo_path(repo))
}

/// The short name a `KustomizeNewName` layout uses in its Deployment and `images:` entry.
fn short_name(repo: usize) -> String {
    format!("svc-{repo:03}")
}

fn application(app: &App, host: &str, repo_url: &str) -> String {
    let list: Vec<String> = app
        .images
        .iter()
        .map(|i| {
            let c = i.constraint.as_deref().map(|c| format!(":{c}")).unwrap_or_default();
            format!("{}={}{c}", i.alias, image_name(host, i.repo))
        })
        .collect();
    let mut a = String::new();
    writeln!(a, "    {AIU}/image-list: {}", sq(&list.join(", "))).unwrap();
    writeln!(a, "    {AIU}/write-back-method: git").unwrap();
    for i in &app.images {
        let k = &i.alias;
        if let Some(s) = i.strategy {
            writeln!(a, "    {AIU}/{k}.update-strategy: {s}").unwrap();
        }
        if let Some(t) = i.allow_tags {
            writeln!(a, "    {AIU}/{k}.allow-tags: {}", sq(t)).unwrap();
        }
        if let Some(t) = i.ignore_tags {
            if app.app_wide_ignore {
                writeln!(a, "    {AIU}/ignore-tags: {}", sq(t)).unwrap();
            } else {
                writeln!(a, "    {AIU}/{k}.ignore-tags: {}", sq(t)).unwrap();
            }
        }
        if app.layout == Layout::KustomizeNewName {
            writeln!(a, "    {AIU}/{k}.kustomize.image-name: {}", short_name(i.repo)).unwrap();
        }
    }
    format!(
        "apiVersion: argoproj.io/v1alpha1\n\
         kind: Application\n\
         metadata:\n  name: {name}\n  namespace: argocd\n  labels:\n    team: {ns}\n  annotations:\n{a}\
         spec:\n  project: default\n  source:\n    repoURL: {repo_url}\n    targetRevision: HEAD\n    path: apps/{name}\n\
         \x20 destination:\n    server: https://kubernetes.default.svc\n    namespace: {ns}\n\
         \x20 syncPolicy:\n    automated:\n      prune: true\n",
        name = app.name,
        ns = app.dest_namespace,
    )
}

/// Versions with two dots are plain strings in YAML; anything else (`1.2`, `123e456`, a build
/// id) is quoted, as `kustomize edit set image` would leave it readable.
fn tag_scalar(tag: &str) -> String {
    if tag.bytes().filter(|b| *b == b'.').count() >= 2 { tag.to_string() } else { format!("\"{tag}\"") }
}

fn deployment(app: &App, images: &[(String, Option<String>)]) -> String {
    let mut containers = String::new();
    for (k, (image, tag)) in images.iter().enumerate() {
        let image = match tag {
            Some(t) => format!("{image}:{t}"),
            None => image.clone(),
        };
        write!(
            containers,
            "        - name: {alias}\n          image: {image}\n          ports:\n            - containerPort: {port}\n",
            alias = app.images[k].alias,
            port = 8080 + k
        )
        .unwrap();
    }
    format!(
        "apiVersion: apps/v1\n\
         kind: Deployment\n\
         metadata:\n  name: {name}\n  labels:\n    app: {name}\n\
         spec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n    spec:\n      containers:\n{containers}",
        name = app.name
    )
}

const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: NAME\nspec:\n  selector:\n    app: NAME\n  ports:\n    - port: 80\n      targetPort: 8080\n";

fn write_app_dir(dir: &Path, app: &App, host: &str) -> Result<()> {
    fs::create_dir_all(dir)?;
    let service = SERVICE.replace("NAME", &app.name);
    match app.layout {
        Layout::Plain => {
            let images: Vec<_> =
                app.images.iter().map(|i| (image_name(host, i.repo), Some(i.current.clone()))).collect();
            fs::write(dir.join("deployment.yaml"), format!("{}---\n{service}", deployment(app, &images)))?;
        }
        Layout::Kustomize | Layout::KustomizeNewName => {
            let newname = app.layout == Layout::KustomizeNewName;
            let images: Vec<_> = app
                .images
                .iter()
                .map(|i| (if newname { short_name(i.repo) } else { image_name(host, i.repo) }, None))
                .collect();
            fs::write(dir.join("deployment.yaml"), deployment(app, &images))?;
            fs::write(dir.join("service.yaml"), service)?;
            let mut k = String::from(
                "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
                 resources:\n  - deployment.yaml\n  - service.yaml\ncommonLabels:\n  managed-by: argocd\nimages:\n",
            );
            for i in &app.images {
                if newname {
                    writeln!(k, "  - name: {}\n    newName: {}", short_name(i.repo), image_name(host, i.repo))?;
                } else {
                    writeln!(k, "  - name: {}", image_name(host, i.repo))?;
                }
                writeln!(k, "    newTag: {}", tag_scalar(&i.current))?;
            }
            fs::write(dir.join("kustomization.yaml"), k)?;
        }
    }
    Ok(())
}

fn git(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.invalid")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.invalid")
        .env("GIT_AUTHOR_DATE", "2025-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2025-01-01T00:00:00Z")
        .output()
        .context("running git")?;
    if !out.status.success() {
        bail!("git {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// (Re)builds the repository at `dir`; returns its file:// URL.
pub fn build(dir: &Path, fleet: &Fleet, host: &str) -> Result<String> {
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    fs::create_dir_all(dir.join("argocd"))?;
    let url = format!("file://{}", dir.display());
    fs::write(
        dir.join("README.md"),
        format!("# Benchmark fleet ({}): generated by examples/bench.rs, do not edit\n", fleet.scale.name()),
    )?;
    fs::write(
        dir.join("argocd/project.yaml"),
        "apiVersion: argoproj.io/v1alpha1\nkind: AppProject\nmetadata:\n  name: default\n  namespace: argocd\nspec:\n  sourceRepos: ['*']\n",
    )?;
    for (f, chunk) in fleet.apps.chunks(APPS_PER_FILE).enumerate() {
        let docs: Vec<String> = chunk.iter().map(|a| application(a, host, &url)).collect();
        fs::write(dir.join(format!("argocd/apps-{f:02}.yaml")), format!("---\n{}", docs.join("---\n")))?;
        for app in chunk {
            write_app_dir(&dir.join("apps").join(&app.name), app, host)?;
        }
    }
    git(dir, &["init", "-q", "-b", "main"])?;
    git(dir, &["add", "-A"])?;
    git(dir, &["commit", "-q", "-m", "Benchmark fleet"])?;
    Ok(url)
}
