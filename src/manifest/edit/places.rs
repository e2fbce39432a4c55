//! The places an image version lives, per layout, and the edit each one gets (the file names
//! and keys are `manifest::layout`'s, which `find_current` reads too):
//!
//! - AIU's `.argocd-source-<app>.yaml` (or `.argocd-source.yaml`) in the source path, when it
//!   exists: its `helm.parameters` and `kustomize.images`.
//! - The Application manifest, when the caller says it is in this repository:
//!   `spec.source` (or the matching `spec.sources[i]`) `helm.parameters`, `helm.valuesObject`,
//!   `kustomize.images`.
//! - The kustomization (`kustomization.yaml`, `kustomization.yml`, `Kustomization`) of the
//!   source path or of `write-back-target: kustomization[:<dir>]`: the matching `images:`
//!   entry gets `newTag`/`digest` (`newName` kept); an entry is added when the
//!   write-back-target names the kustomization, or when the image is found nowhere else.
//! - Helm values: the file of `write-back-target: helmvalues:<file>` (missing keys created),
//!   else the last of the chart's `values.yaml` and the source's value files that sets the key.
//! - Workload manifests of a plain directory source (never for Helm sources, and never what a
//!   kustomization renders: there the version goes into an `images:` entry, as
//!   `kustomize edit set image` does): `image:` of every container and init container.

use std::collections::BTreeMap;

use crate::annotations::{HelmValue, ImageSpec, WriteBackTarget};
use crate::domain::split_tag;
use crate::manifest::layout::{self, helm_key};
use crate::manifest::{symlink_out_of_repo, Finder, LocationKind, ManifestError};
use crate::yaml::{Node, Seg, Value};

use super::text::{FileEditor, NodePath, Plain};
use super::{EditRequest, FileChange, Version};

/// Where `write-back-target` points, resolved to a path in the repository.
enum WriteBack {
    Kustomization(String),
    HelmValues(String),
}

struct Session<'r, 'a> {
    req: &'r EditRequest<'a>,
    editors: BTreeMap<String, FileEditor>,
    /// Places that hold the image, edited or already at the target.
    found: usize,
}

pub(super) fn edit(req: &EditRequest<'_>) -> Result<Vec<FileChange>, ManifestError> {
    let mut s = Session { req, editors: BTreeMap::new(), found: 0 };
    let src_dir = req.source.path.as_deref().filter(|_| req.source.chart.is_none());
    let write_back = match req.write_back_target {
        Some(w) => Some(resolve_write_back(w, src_dir.unwrap_or(""), &req.app.file)?),
        None => None,
    };
    // A write-back target reached through a symbolic link is refused before anything is read:
    // the write would land wherever the link points, maybe outside the repository.
    if let Some(WriteBack::Kustomization(at) | WriteBack::HelmValues(at)) = &write_back
        && let Some(link) = req.files.symlink_of(at)
    {
        return Err(symlink_refused(at, link));
    }
    if let Some(w) = &write_back {
        s.check_write_back_scope(w, src_dir)?;
    }

    let mut argocd_source = false;
    if let Some(dir) = src_dir {
        for path in layout::argocd_source_files(dir, &req.app.id.name) {
            if req.files.contains(&path) {
                argocd_source = true;
                s.argocd_source(&path)?;
            }
        }
    }
    match req.app_manifest {
        Some(app_file) => s.app_manifest(app_file)?,
        // The Application sets the image in its own spec, which is not in this repository (read
        // from the cluster, or from a directory): an edit of the sources would be overridden.
        None if !argocd_source => {
            if let Some(set) = Finder::new(req.files, req.app, req.source, req.image).app_overrides()? {
                let field = match set.kind {
                    LocationKind::AppKustomizeImages => "kustomize.images",
                    LocationKind::AppHelmParameters => "helm.parameters",
                    _ => "helm.valuesObject",
                };
                let from = if req.app.file.starts_with("k8s:") {
                    "it is read from the cluster".to_string()
                } else {
                    "its manifest is not in a repository the bot writes to (give --apps the git URL of the repository that holds it)"
                        .to_string()
                };
                return Err(ManifestError::Unsupported {
                    file: req.app.file.clone(),
                    line: 0,
                    message: format!(
                        "Application {} sets image {} in its own spec ({field}), and {from}: a pull request cannot change it; \
                         move the version into its sources (a kustomization, a values file) or into .argocd-source-{}.yaml",
                        req.app.id, req.image.alias, req.app.id.name
                    ),
                });
            }
        }
        None => {}
    }

    let kustomize_dir = match &write_back {
        Some(WriteBack::Kustomization(dir)) => Some(dir.clone()),
        _ => src_dir.map(str::to_string),
    };
    let kustomization = kustomize_dir.as_deref().and_then(|d| layout::kustomization_file(req.files, d));
    let mut kustomize_entry = false;
    if let Some(k) = &kustomization {
        kustomize_entry = s.kustomization(k, false)?;
    }

    let helm_source = req.source.has_helm
        || !req.source.helm_value_files.is_empty()
        || src_dir.is_some_and(|d| req.files.contains(&layout::in_dir(d, layout::CHART_FILE)));
    match &write_back {
        Some(WriteBack::HelmValues(file)) => s.helm_values(std::slice::from_ref(file), true)?,
        _ if helm_source || req.source.ref_name.is_some() => {
            let files = s.values_files(src_dir, true)?;
            s.helm_values(&files, false)?;
        }
        _ => {}
    }

    // What Kustomize renders is never edited by hand: when the image reaches the cluster through
    // a kustomization, its version is written only where Kustomize overrides images (above, or
    // an `images:` entry added below), however the resources spell the image.
    if let Some(dir) = src_dir
        && !helm_source
        && kustomization.is_none()
    {
        let own_kustomization = layout::kustomization_file(req.files, dir);
        let files = s.workload_files(dir, own_kustomization.as_deref())?;
        for f in files {
            s.workloads(&f)?;
        }
    }

    let wants_entry = matches!(write_back, Some(WriteBack::Kustomization(_))) || s.found == 0;
    if wants_entry && !kustomize_entry {
        match &kustomization {
            Some(k) => {
                s.kustomization(k, true)?;
            }
            None if matches!(write_back, Some(WriteBack::Kustomization(_))) => {
                return Err(ManifestError::Invalid {
                    file: kustomize_dir.unwrap_or_default(),
                    message: "write-back-target names a directory without a kustomization file".into(),
                });
            }
            None => {}
        }
    }
    if s.found == 0 {
        return Err(ManifestError::Invalid {
            file: src_dir.unwrap_or(&req.app.file).to_string(),
            message: format!("image {} not found in any place this source sets it", req.image.name),
        });
    }

    let mut changes = Vec::new();
    for (path, ed) in s.editors {
        if let Some(after) = ed.finish()? {
            if let Some(link) = req.files.symlink_of(&path) {
                return Err(symlink_refused(&path, link));
            }
            let before = req.files.get_shared(&path).unwrap_or_else(|| Vec::new().into());
            changes.push(FileChange { path, before, after });
        }
    }
    Ok(changes)
}

impl Session<'_, '_> {
    fn image(&self) -> &ImageSpec {
        self.req.image
    }

    fn target(&self) -> &Version {
        self.req.target
    }

    fn editor(&mut self, path: &str) -> Result<&mut FileEditor, ManifestError> {
        if !self.editors.contains_key(path) {
            if let Some(link) = self.req.files.escaping_symlink(path) {
                return Err(symlink_out_of_repo(path, &link));
            }
            let ed = FileEditor::from_set(self.req.files, path)?;
            self.editors.insert(path.to_string(), ed);
        }
        Ok(self.editors.get_mut(path).expect("inserted"))
    }

    /// A write-back target is one of the files the Application deploys: under its source path,
    /// a kustomization its own kustomization includes (an overlay's `../base`), or one of its
    /// Helm value files. Whoever writes the annotation must not steer the bot's commit anywhere
    /// else in the repository (`helmvalues:/.github/workflows/ci.yaml`).
    fn check_write_back_scope(&self, w: &WriteBack, src_dir: Option<&str>) -> Result<(), ManifestError> {
        // A source without a path (a `ref:` source of values files) deploys only the files the
        // other sources name from it.
        let inside = |path: &str| src_dir.is_some_and(|d| under(path, d));
        let (at, allowed) = match w {
            WriteBack::Kustomization(dir) => {
                (dir, inside(dir) || src_dir.is_some_and(|d| self.included_kustomizations(d).contains(dir)))
            }
            WriteBack::HelmValues(file) => {
                let own = self.values_files(src_dir.filter(|d| !d.is_empty()), false).unwrap_or_default();
                (file, inside(file) || own.contains(file))
            }
        };
        let src_dir = src_dir.unwrap_or("");
        if allowed && !at.split('/').any(|part| part.starts_with('.') && part != ".") {
            return Ok(());
        }
        let source = if src_dir.is_empty() { "the repository root".to_string() } else { src_dir.to_string() };
        Err(ManifestError::Invalid {
            file: self.req.app.file.clone(),
            message: format!(
                "write-back-target points at {at}, which this Application does not deploy: a target must lie under its \
                 source path {source} (not in a hidden directory), be a kustomization its kustomization includes, or \
                 one of its Helm value files"
            ),
        })
    }

    /// Directories of the kustomizations `dir`'s kustomization includes through `resources`,
    /// `bases` and `components`, transitively.
    fn included_kustomizations(&self, dir: &str) -> std::collections::BTreeSet<String> {
        let mut seen = std::collections::BTreeSet::new();
        let mut todo = vec![dir.to_string()];
        while let Some(d) = todo.pop() {
            let Some(file) = layout::kustomization_file(self.req.files, &d) else { continue };
            let Some(Ok(yaml)) = self.req.files.yaml(&file) else { continue };
            let Some(root) = yaml.documents.iter().find_map(|doc| doc.root.as_ref()) else { continue };
            for key in layout::KUSTOMIZATION_RESOURCES {
                for res in root.get(key).and_then(Node::as_sequence).unwrap_or_default() {
                    if let Some(target) = res.as_str().and_then(|r| resolve(&d, r))
                        && layout::kustomization_file(self.req.files, &target).is_some()
                        && seen.insert(target.clone())
                    {
                        todo.push(target);
                    }
                }
            }
        }
        seen
    }

    // ---- AIU override file and the Application manifest -------------------------------

    fn argocd_source(&mut self, path: &str) -> Result<(), ManifestError> {
        let req = self.req;
        let finder = Finder::new(req.files, req.app, req.source, req.image);
        let target = self.target().clone();
        let image = self.image().clone();
        let ed = self.editor(path)?;
        let mut edits = Vec::new();
        for doc in 0..ed.yaml().documents.len() {
            if ed.yaml().documents[doc].root.is_some() {
                overrides(&finder, ed, &NodePath::root(doc), &image, &target, &mut edits)?;
            }
        }
        self.apply(path, edits)
    }

    fn app_manifest(&mut self, file: &str) -> Result<(), ManifestError> {
        let req = self.req;
        let finder = Finder::new(req.files, req.app, req.source, req.image);
        let app = req.app;
        let index = app.sources.iter().position(|s| s == self.req.source).unwrap_or(0);
        let target = self.target().clone();
        let image = self.image().clone();
        let ed = self.editor(file)?;
        let doc = NodePath::root(app.document);
        let root = ed.yaml().documents.get(app.document).and_then(|d| d.root.as_ref());
        let is_app = root.is_some_and(|r| {
            r.get("kind").and_then(Node::as_str) == Some("Application")
                && r.get("metadata").and_then(|m| m.get("name")).and_then(Node::as_str) == Some(&app.id.name)
        });
        if !is_app {
            return Err(ManifestError::Invalid {
                file: file.to_string(),
                message: format!("document {} is not the Application {}", app.document, app.id.name),
            });
        }
        let spec = root.and_then(|r| r.get("spec"));
        let section = match spec.and_then(|s| s.get("sources")) {
            Some(list) if list.as_sequence().is_some() => doc.key("spec").key("sources").index(index),
            Some(list) => return Err(ed.error(list.span.start, "spec.sources is not a plain list")),
            None => doc.key("spec").key("source"),
        };
        if let Some(node) = lookup(ed, &section)?
            && !same_source(node, req.source)
        {
            return Err(ed.error(node.span.start, "this source of the Application manifest is not the one being edited (repoURL, path or chart differ)"));
        }
        let mut edits = Vec::new();
        if lookup(ed, &section)?.is_some() {
            overrides(&finder, ed, &section, &image, &target, &mut edits)?;
            let values = section.keys(&layout::HELM_VALUES_OBJECT);
            if lookup(ed, &values)?.is_some()
                && let Some((path, holds)) = find_helm_value(ed, &values, &image)?
            {
                let current = ed.node(&path)?.as_scalar().map(|s| s.value.clone()).unwrap_or_default();
                edits.push((path, helm_value(holds, &current, &target)));
            }
            let block = section.keys(&layout::HELM_VALUES_TEXT);
            if let Some(node) = lookup(ed, &block)? {
                let inner = node.as_str().unwrap_or_default();
                if mentions(inner.as_bytes(), &image) {
                    return Err(ed.error(node.span.start, "helm values given as a text block mention the image; refusing to edit inside a block scalar (use valuesObject)"));
                }
            }
        }
        self.apply(file, edits)
    }

    // ---- Kustomize -----------------------------------------------------------------------

    /// Edits the kustomization's matching `images:` entries; with `add`, adds one instead.
    /// Whether an entry matched.
    fn kustomization(&mut self, path: &str, add: bool) -> Result<bool, ManifestError> {
        let image = self.image().clone();
        let target = self.target().clone();
        let wanted_name = self.kustomize_name()?;
        let ed = self.editor(path)?;
        let root_path = NodePath::root(0);
        let Some(root) = ed.yaml().documents.first().and_then(|d| d.root.as_ref()) else {
            return Err(ManifestError::Invalid { file: path.to_string(), message: "empty kustomization".into() });
        };
        if root.as_mapping().is_none() {
            return Err(ed.error(root.span.start, "a kustomization must be a mapping"));
        }
        enum Images {
            Missing,
            List,
            Other(usize),
        }
        let state = match root.entry(layout::KUSTOMIZATION_IMAGES) {
            None => Images::Missing,
            Some((_, list)) if list.as_sequence().is_some() => Images::List,
            Some((k, _)) => Images::Other(k.span.start),
        };
        if add {
            let mut entry = vec![("name".to_string(), Plain::Str(wanted_name))];
            if let Some(t) = &target.tag {
                entry.push(("newTag".into(), Plain::Str(t.clone())));
            }
            if let Some(d) = &target.digest {
                entry.push(("digest".into(), Plain::Str(d.clone())));
            }
            let entry = Plain::Map(entry);
            match state {
                Images::Missing => ed.add_key(&root_path, layout::KUSTOMIZATION_IMAGES, Plain::Seq(vec![entry]))?,
                Images::List => ed.append_item(&root_path.key(layout::KUSTOMIZATION_IMAGES), entry)?,
                Images::Other(at) => return Err(ed.error(at, "images: is not a list; add the entry by hand")),
            }
            self.found += 1;
            return Ok(true);
        }
        let Some(list) = root.get(layout::KUSTOMIZATION_IMAGES) else { return Ok(false) };
        let list_path = root_path.key(layout::KUSTOMIZATION_IMAGES);
        let items = match &list.value {
            Value::Sequence(items) => items,
            Value::Scalar(s) if s.is_null() => return Ok(false),
            _ => return Err(ed.error(list.span.start, "images: is not a plain list")),
        };
        let mut matched = Vec::new();
        for (i, item) in items.iter().enumerate() {
            if item.is_alias() {
                return Err(ed.error(item.span.start, "an images: entry is an alias; refusing to guess"));
            }
            let name = item.get("name").and_then(Node::as_str).unwrap_or_default();
            // As find_current reads it: by `name`, or by `newName` unless kustomize.image-name is set.
            let by_new_name = image.kustomize_image_name.is_none()
                && item.get("newName").and_then(Node::as_str).is_some_and(|n| image.parse_name(n).is_ok_and(|n| n == image.name));
            if kustomize_name_matches(name, &image) || by_new_name {
                matched.push(i);
            }
        }
        for &i in &matched {
            let entry_path = list_path.index(i);
            let entry = ed.node(&entry_path)?;
            let has = |k: &str| entry.get(k).is_some();
            let (has_tag, has_digest) = (has("newTag"), has("digest"));
            if let Some(tag) = &target.tag {
                if has_tag {
                    ed.replace_scalar(&entry_path.key("newTag"), tag)?;
                } else {
                    ed.add_key(&entry_path, "newTag", Plain::Str(tag.clone()))?;
                }
            }
            match &target.digest {
                Some(d) if has_digest => ed.replace_scalar(&entry_path.key("digest"), d)?,
                Some(d) => ed.add_key(&entry_path, "digest", Plain::Str(d.clone()))?,
                None if has_digest => ed.remove_key(&entry_path, "digest")?,
                None => {}
            }
        }
        self.found += matched.len();
        Ok(!matched.is_empty())
    }

    /// The `name` of a new kustomize entry: `kustomize.image-name`, else the image as the
    /// source's manifests spell it, else its shortest Docker spelling.
    fn kustomize_name(&self) -> Result<String, ManifestError> {
        let image = self.image();
        if let Some(n) = &image.kustomize_image_name {
            return Ok(n.clone());
        }
        if let Some(dir) = self.req.source.path.as_deref() {
            let prefix = if dir.is_empty() { String::new() } else { format!("{dir}/") };
            for (path, _) in self.req.files.files.range(prefix.clone()..) {
                if !path.starts_with(&prefix) {
                    break;
                }
                if !layout::is_manifest(path) {
                    continue;
                }
                let Ok(ed) = FileEditor::from_set(self.req.files, path) else { continue };
                for doc in 0..ed.yaml().documents.len() {
                    for (_, written) in containers(&ed, doc) {
                        if ref_matches(&written, image) {
                            return Ok(name_part(&written).to_string());
                        }
                    }
                }
            }
        }
        Ok(image.short_name())
    }

    // ---- Helm ----------------------------------------------------------------------------

    /// Values files in Helm's order (later wins); with `existing`, only those that live in this
    /// repository.
    fn values_files(&self, src_dir: Option<&str>, existing: bool) -> Result<Vec<String>, ManifestError> {
        let mut out = Vec::new();
        let source = self.req.source;
        if let Some(dir) = src_dir {
            out.push(layout::in_dir(dir, layout::CHART_VALUES));
            for f in &source.helm_value_files {
                if f.starts_with('$') {
                    continue;
                }
                out.push(resolve(dir, f).ok_or_else(|| escape_error(&self.req.app.file, f))?);
            }
        }
        // Multi-source: `$<ref>/path` value files of other sources live in this one.
        if let Some(r) = &source.ref_name {
            let prefix = format!("${r}/");
            for other in &self.req.app.sources {
                for f in &other.helm_value_files {
                    if let Some(rest) = f.strip_prefix(&prefix) {
                        out.push(resolve("", rest).ok_or_else(|| escape_error(&self.req.app.file, f))?);
                    }
                }
            }
        }
        if existing {
            out.retain(|p| self.req.files.contains(p));
        }
        Ok(out)
    }

    fn helm_values(&mut self, files: &[String], create: bool) -> Result<(), ManifestError> {
        let image = self.image().clone();
        let target = self.target().clone();
        // The last file that sets the key wins in Helm; that is the one to edit.
        let mut chosen = None;
        for f in files.iter().rev() {
            let ed = self.editor(f)?;
            let mut found = None;
            for doc in 0..ed.yaml().documents.len() {
                if ed.yaml().documents[doc].root.is_some()
                    && let Some(hit) = find_helm_value(ed, &NodePath::root(doc), &image)?
                {
                    found = Some(hit);
                    break;
                }
            }
            if let Some(hit) = found {
                chosen = Some((f.clone(), hit));
                break;
            }
        }
        match chosen {
            Some((file, (path, holds))) => {
                let ed = self.editor(&file)?;
                let current = ed.node(&path)?.as_scalar().map(|s| s.value.clone()).unwrap_or_default();
                let value = helm_value(holds, &current, &target);
                self.apply(&file, vec![(path, value)])
            }
            None if create => {
                let file = &files[0];
                let (key, holds) = image.helm.version_key();
                let segs = helm_path(file, key)?;
                let value = helm_value(holds, &image.short_name(), &target);
                let ed = self.editor(file)?;
                create_path(ed, &NodePath::root(0), &segs, value)?;
                self.found += 1;
                Ok(())
            }
            None => Ok(()),
        }
    }

    // ---- Workloads -----------------------------------------------------------------------

    fn workload_files(&self, dir: &str, kustomization: Option<&str>) -> Result<Vec<String>, ManifestError> {
        let files = &self.req.files.files;
        if let Some(k) = kustomization {
            // Only what the kustomization deploys from inside the source path.
            let ed = FileEditor::from_set(self.req.files, k)?;
            let mut out = Vec::new();
            let root = ed.yaml().documents.first().and_then(|d| d.root.as_ref());
            for r in root.and_then(|r| r.get("resources")).and_then(Node::as_sequence).unwrap_or_default() {
                if let Some(p) = r.as_str().and_then(|r| resolve(dir, r))
                    && is_under(&p, dir)
                    && self.req.files.contains(&p)
                {
                    out.push(p);
                }
            }
            return Ok(out);
        }
        let prefix = if dir.is_empty() { String::new() } else { format!("{dir}/") };
        Ok(files
            .keys()
            .filter(|p| p.starts_with(&prefix))
            .filter(|p| self.req.source.directory_recurse || !p[prefix.len()..].contains('/'))
            .filter(|p| layout::is_manifest(p))
            .filter(|p| {
                let base = p.rsplit('/').next().unwrap_or(p);
                !layout::is_argocd_source(base) && !layout::KUSTOMIZATION_FILES.contains(&base)
            })
            .cloned()
            .collect())
    }

    fn workloads(&mut self, path: &str) -> Result<(), ManifestError> {
        let image = self.image().clone();
        let target = self.target().clone();
        // A file that is not YAML is refused even when it seems unrelated: Argo CD cannot
        // render the source either, and find_current reports it the same way.
        let ed = &*self.editor(path)?;
        let mut edits = Vec::new();
        for doc in 0..ed.yaml().documents.len() {
            check_workload_aliases(ed, doc, &image)?;
            for (p, written) in containers(ed, doc) {
                if ref_matches(&written, &image) {
                    edits.push((p, rewrite_ref(&written, &target)));
                }
            }
        }
        self.apply(path, edits)
    }

    fn apply(&mut self, path: &str, edits: Vec<(NodePath, String)>) -> Result<(), ManifestError> {
        self.found += edits.len();
        let ed = self.editor(path)?;
        for (p, value) in edits {
            ed.replace_scalar(&p, &value)?;
        }
        Ok(())
    }
}

/// `helm.parameters` and `kustomize.images` of a source section (the Application's
/// `spec.source` or an `.argocd-source` file).
fn overrides(
    finder: &Finder<'_>,
    ed: &FileEditor,
    section: &NodePath,
    image: &ImageSpec,
    target: &Version,
    edits: &mut Vec<(NodePath, String)>,
) -> Result<(), ManifestError> {
    let params_path = section.keys(&layout::HELM_PARAMETERS);
    if let Some(params) = lookup(ed, &params_path)? {
        let items = params.as_sequence().ok_or_else(|| ed.error(params.span.start, "helm.parameters is not a list"))?;
        let value_of = |name: &str| {
            items.iter().find(|p| p.get("name").and_then(Node::as_str) == Some(name)).and_then(|p| p.get("value")).and_then(Node::as_str)
        };
        let helm = &image.helm;
        let (version_key, holds) = helm.version_key();
        let ours = helm.explicit()
            || value_of(helm.name_key()).is_none_or(|n| image.parse_name(n).is_ok_and(|n| n == image.name));
        for (i, p) in items.iter().enumerate() {
            if p.is_alias() {
                return Err(ed.error(p.span.start, "a helm parameter is an alias; refusing to guess"));
            }
            let name = p.get("name").and_then(Node::as_str).unwrap_or_default();
            if name != version_key || !ours {
                continue;
            }
            let Some(v) = p.get("value") else { continue };
            let current = v.as_scalar().map(|s| s.value.clone()).unwrap_or_default();
            edits.push((params_path.index(i).key("value"), helm_value(holds, &current, target)));
        }
    }
    let images_path = section.keys(&layout::KUSTOMIZE_IMAGES);
    if let Some(list) = lookup(ed, &images_path)? {
        let items = list.as_sequence().ok_or_else(|| ed.error(list.span.start, "kustomize.images is not a list"))?;
        for (i, item) in items.iter().enumerate() {
            if item.is_alias() {
                return Err(ed.error(item.span.start, "a kustomize image is an alias; refusing to guess"));
            }
            let Some(s) = item.as_str() else { continue };
            let (old, new) = match s.split_once('=') {
                Some((old, new)) => (old, Some(new)),
                None => (name_part(s), None),
            };
            if finder.kustomize_override(s) {
                let value = match new {
                    Some(new) => format!("{old}={}", rewrite_ref(new, target)),
                    None => rewrite_ref(s, target),
                };
                edits.push((images_path.index(i), value));
            }
        }
    }
    Ok(())
}

/// Whether a `spec.source(s[i])` section describes `source` (the index could be stale).
fn same_source(section: &Node, source: &crate::discovery::AppSource) -> bool {
    let norm = |u: &str| u.trim_end_matches('/').trim_end_matches(".git").to_ascii_lowercase();
    let field = |k: &str| section.get(k).and_then(Node::as_str);
    let path = field("path").map(|p| p.trim_matches('/').to_string());
    field("repoURL").is_none_or(|u| norm(u) == norm(&source.repo_url))
        && field("chart") == source.chart.as_deref()
        && (source.chart.is_some() || path.as_deref().unwrap_or("") == source.path.as_deref().unwrap_or(""))
}

/// The node at `path` if every step exists; an alias or a merge key on the way is refused,
/// since the value might come from the anchor.
fn lookup<'e>(ed: &'e FileEditor, path: &NodePath) -> Result<Option<&'e Node>, ManifestError> {
    let Some(mut node) = ed.yaml().documents.get(path.doc).and_then(|d| d.root.as_ref()) else {
        return Ok(None);
    };
    for seg in &path.segs {
        if let Value::Alias(name) = &node.value {
            return Err(ed.error(node.span.start, format!("the value is behind an alias (*{name}); refusing to guess")));
        }
        let next = node.child(seg);
        if let (None, Seg::Key(k)) = (next, seg)
            && node.has_merge_key()
        {
            return Err(ed.error(node.span.start, format!("{k:?} may come from a merge key (<<); refusing to guess")));
        }
        match next {
            Some(n) => node = n,
            None => return Ok(None),
        }
    }
    Ok(Some(node))
}

/// Creates the missing mappings along `segs` below `base` and sets the last key to `value`.
fn create_path(ed: &mut FileEditor, base: &NodePath, segs: &[Seg], value: String) -> Result<(), ManifestError> {
    let mut path = base.clone();
    for (i, seg) in segs.iter().enumerate() {
        let next = path.clone();
        let next = match seg {
            Seg::Key(k) => next.key(k),
            Seg::Index(n) => next.index(*n),
        };
        if lookup(ed, &next)?.is_some() {
            path = next;
            continue;
        }
        let mut plain = Plain::Str(value);
        for s in segs[i + 1..].iter().rev() {
            match s {
                Seg::Key(k) => plain = Plain::Map(vec![(k.clone(), plain)]),
                Seg::Index(_) => {
                    return Err(ed.error(0, "cannot create a list index in a helm key; set it by hand"));
                }
            }
        }
        let Seg::Key(k) = seg else {
            return Err(ed.error(0, "cannot create a list index in a helm key; set it by hand"));
        };
        return ed.add_key(&path, k, plain);
    }
    ed.replace_scalar(&path, &value)
}

/// The value a Helm key that holds `holds` gets for `target`, `current` being what it holds now.
fn helm_value(holds: HelmValue, current: &str, target: &Version) -> String {
    match holds {
        HelmValue::Spec => rewrite_ref(current, target),
        HelmValue::Tag => {
            let (tag, _) = current.split_once('@').unwrap_or((current, ""));
            let tag = target.tag.as_deref().unwrap_or(tag);
            match &target.digest {
                Some(d) if tag.is_empty() => d.clone(),
                Some(d) => format!("{tag}@{d}"),
                None => tag.to_string(),
            }
        }
    }
}

/// The scalar holding the image's version below `base`, if it is there and belongs to `image`.
fn find_helm_value(ed: &FileEditor, base: &NodePath, image: &ImageSpec) -> Result<Option<(NodePath, HelmValue)>, ManifestError> {
    let helm = &image.helm;
    let (key, holds) = helm.version_key();
    let key_path = |key: &str| -> Result<NodePath, ManifestError> {
        let mut p = base.clone();
        p.segs.extend(helm_path(ed.path(), key)?);
        Ok(p)
    };
    let path = key_path(key)?;
    let Some(node) = lookup(ed, &path)? else { return Ok(None) };
    if let Value::Alias(name) = &node.value {
        return Err(ed.error(node.span.start, format!("the value is an alias (*{name}); refusing to guess")));
    }
    if !helm.explicit()
        && let Some(name) = lookup(ed, &key_path(helm.name_key())?)?.and_then(Node::as_str)
        && !image.parse_name(name).is_ok_and(|n| n == image.name)
    {
        return Ok(None);
    }
    if let HelmValue::Spec = holds
        && !node.as_str().is_some_and(|s| ref_matches(s, image))
    {
        return Ok(None);
    }
    Ok(Some((path, holds)))
}

/// The path a Helm key names (`image.tag`, `images[0].tag`, `a\.b.c`), as find_current reads it;
/// an empty key names nothing that can be edited in `file`.
fn helm_path(file: &str, key: &str) -> Result<Vec<Seg>, ManifestError> {
    let segs = helm_key(key);
    if segs.is_empty() {
        return Err(ManifestError::Invalid { file: file.to_string(), message: format!("cannot read the helm key {key:?}") });
    }
    Ok(segs)
}

// ---- Workload helpers --------------------------------------------------------------------

/// `(path of the image scalar, image as written)` for every container of a workload document.
fn containers(ed: &FileEditor, doc: usize) -> Vec<(NodePath, String)> {
    let mut out = Vec::new();
    let root_path = NodePath::root(doc);
    let Some(root) = ed.yaml().documents.get(doc).and_then(|d| d.root.as_ref()) else { return out };
    let Some(workload) = layout::workload(root) else { return out };
    let pod_spec = root_path.keys(workload.pod_spec);
    for list in layout::CONTAINER_LISTS {
        let list_path = pod_spec.key(list);
        let Ok(Some(items)) = lookup(ed, &list_path) else { continue };
        for (i, c) in items.as_sequence().unwrap_or_default().iter().enumerate() {
            if let Some(img) = c.get("image").and_then(Node::as_str) {
                out.push((list_path.index(i).key("image"), img.to_string()));
            }
        }
    }
    out
}

/// Refuses a workload whose containers (or their images) are aliases when an anchored value
/// in the document holds the image: which container uses it is a guess we do not make.
fn check_workload_aliases(ed: &FileEditor, doc: usize, image: &ImageSpec) -> Result<(), ManifestError> {
    let Some(root) = ed.yaml().documents.get(doc).and_then(|d| d.root.as_ref()) else { return Ok(()) };
    let Some(kind) = root.get("kind").and_then(Node::as_str) else { return Ok(()) };
    // By kind alone, whatever the apiVersion: stricter than `containers`, which skips a
    // `Rollout` outside argoproj.io.
    if !layout::WORKLOADS.iter().any(|w| w.kind == kind) {
        return Ok(());
    }
    let mut alias = None;
    let mut anchored_hit = false;
    walk(root, false, &mut |node, under_anchor| {
        if node.is_alias() && alias.is_none() {
            alias = Some(node.span.start);
        }
        if under_anchor && node.as_str().is_some_and(|s| ref_matches(s, image)) {
            anchored_hit = true;
        }
    });
    match alias {
        Some(at) if anchored_hit => Err(ed.error(at, format!("image {} is set through an alias here; refusing to guess which container uses it", image.name))),
        _ => Ok(()),
    }
}

fn walk(node: &Node, under_anchor: bool, f: &mut impl FnMut(&Node, bool)) {
    let under = under_anchor || node.anchored;
    f(node, under);
    match &node.value {
        Value::Mapping(m) => m.iter().for_each(|(_, v)| walk(v, under, f)),
        Value::Sequence(s) => s.iter().for_each(|v| walk(v, under, f)),
        _ => {}
    }
}

/// Whether a file's bytes mention the image's repository at all.
fn mentions(bytes: &[u8], image: &ImageSpec) -> bool {
    let short = image.short_name();
    let hay = String::from_utf8_lossy(bytes);
    hay.contains(&short)
}

// ---- Image references --------------------------------------------------------------------

/// The name part of `name[:tag][@digest]`.
fn name_part(written: &str) -> &str {
    let rest = written.split_once('@').map_or(written, |(r, _)| r);
    split_tag(rest).0
}

/// Whether `written` (`name[:tag][@digest]`) is the image, read as its Application reads names.
fn ref_matches(written: &str, image: &ImageSpec) -> bool {
    image.parse_reference(written).is_ok_and(|r| r.name == image.name)
}

fn kustomize_name_matches(written: &str, image: &ImageSpec) -> bool {
    match &image.kustomize_image_name {
        Some(k) => written == k || (image.parse_name(written).is_ok() && image.parse_name(written) == image.parse_name(k)),
        None => image.parse_name(name_part(written)).is_ok_and(|n| n == image.name),
    }
}

/// The same name as written, with the target's tag (or the current one) and digest.
fn rewrite_ref(written: &str, target: &Version) -> String {
    let rest = written.split_once('@').map_or(written, |(r, _)| r);
    let (name, tag) = split_tag(rest);
    let mut out = name.to_string();
    if let Some(t) = target.tag.as_deref().or(tag) {
        out.push(':');
        out.push_str(t);
    }
    if let Some(d) = &target.digest {
        out.push('@');
        out.push_str(d);
    }
    out
}

// ---- Paths -------------------------------------------------------------------------------

fn is_under(path: &str, dir: &str) -> bool {
    dir.is_empty() || path.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

/// `rel` relative to `dir` (or `/`-absolute from the repository root), normalized; `None`
/// when it leaves the repository.
fn resolve(dir: &str, rel: &str) -> Option<String> {
    if rel.contains('\\') || rel.contains('\0') {
        return None;
    }
    let (base, rel) = match rel.strip_prefix('/') {
        Some(abs) => ("", abs),
        None => (dir, rel),
    };
    let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
    for p in rel.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// Whether `path` is `dir` or below it (`dir` empty: the repository root).
fn under(path: &str, dir: &str) -> bool {
    dir.is_empty() || path == dir || path.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
}

/// The error for a write that would go through a symbolic link.
fn symlink_refused(path: &str, link: &str) -> ManifestError {
    ManifestError::Invalid {
        file: path.to_string(),
        message: format!("{link} is a symlink; refusing to write through it"),
    }
}

fn escape_error(file: &str, target: &str) -> ManifestError {
    ManifestError::Invalid {
        file: file.to_string(),
        message: format!("{target:?} points outside the repository; refusing to write there"),
    }
}

/// The path in the repository `target` points at, taken relative to the source path `src_dir`.
fn resolve_write_back(target: &WriteBackTarget, src_dir: &str, app_file: &str) -> Result<WriteBack, ManifestError> {
    let at = |path: &str| {
        resolve(src_dir, path).ok_or_else(|| escape_error(app_file, &format!("write-back-target {target}")))
    };
    Ok(match target {
        WriteBackTarget::Kustomization(dir) => WriteBack::Kustomization(at(dir.as_deref().unwrap_or("."))?),
        WriteBackTarget::HelmValues(file) => WriteBack::HelmValues(at(file.as_deref().unwrap_or(layout::CHART_VALUES))?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_inside_the_repository_only() {
        assert_eq!(resolve("apps/web", "../base").as_deref(), Some("apps/base"));
        assert_eq!(resolve("apps/web", "/envs/prod").as_deref(), Some("envs/prod"));
        assert_eq!(resolve("apps/web", ".").as_deref(), Some("apps/web"));
        assert_eq!(resolve("apps", "../../x"), None);
        assert_eq!(resolve("apps", "/../x"), None);
        assert_eq!(resolve("", "a\\b"), None);
    }

    #[test]
    fn references_are_rewritten_keeping_the_name() {
        let t = |tag: Option<&str>, d: Option<&str>| Version { tag: tag.map(Into::into), digest: d.map(Into::into) };
        assert_eq!(rewrite_ref("nginx:1.2", &t(Some("1.3"), None)), "nginx:1.3");
        assert_eq!(rewrite_ref("localhost:5000/a:1@sha256:x", &t(Some("2"), None)), "localhost:5000/a:2");
        assert_eq!(rewrite_ref("nginx:1.2", &t(None, Some("sha256:y"))), "nginx:1.2@sha256:y");
        assert_eq!(rewrite_ref("nginx", &t(Some("1"), Some("sha256:y"))), "nginx:1@sha256:y");
        assert_eq!(helm_value(HelmValue::Tag, "1.2@sha256:x", &t(None, Some("sha256:y"))), "1.2@sha256:y");
        assert_eq!(helm_value(HelmValue::Tag, "1.2@sha256:x", &t(Some("1.3"), None)), "1.3");
    }
}
