//! Rewriting an image version in every place it lives in one source of an Application, as a
//! careful engineer would by hand: surgical byte splices that keep comments, quoting, layout,
//! other documents, CRLF and a missing final newline; each edited file is parsed again and
//! refused unless exactly the intended values changed. Pure: files in, changed files out.

use std::sync::Arc;

use crate::annotations::{ImageSpec, WriteBackTarget};
use crate::discovery::{AppSource, Application};
use crate::files::FileSet;
use crate::manifest::ManifestError;

mod places;
mod text;

#[cfg(test)]
mod golden;


/// The version to write. At least one of the two is set; a missing tag keeps the tag that is
/// written now (digest tracking), a missing digest drops any digest written now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    pub tag: Option<String>,
    /// `sha256:...`
    pub digest: Option<String>,
}

/// What to edit: one image of one Application, in one of its sources.
#[derive(Debug, Clone, Copy)]
pub struct EditRequest<'a> {
    /// The files of the source's repository at its revision.
    pub files: &'a FileSet,
    pub app: &'a Application,
    /// One of `app.sources`.
    pub source: &'a AppSource,
    pub image: &'a ImageSpec,
    pub target: &'a Target,
    /// The `write-back-target` annotation; its path is taken relative to the source path.
    pub write_back_target: Option<&'a WriteBackTarget>,
    /// Path in `files` of the file holding the Application manifest, when the caller knows
    /// the apps tree is this very repository and revision. `None` leaves the manifest alone.
    pub app_manifest: Option<&'a str>,
}

/// One changed file: path relative to the repository root, content before and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    pub path: String,
    pub before: Arc<[u8]>,
    pub after: Vec<u8>,
}

/// Writes `target` into every place the image's version lives in the source (see
/// `places` for the layouts). An empty result means every place already holds the target.
/// Refuses, changing nothing, when a place cannot be edited safely.
pub fn edit_image(req: &EditRequest<'_>) -> Result<Vec<FileChange>, ManifestError> {
    if req.target.tag.is_none() && req.target.digest.is_none() {
        return Err(ManifestError::Invalid {
            file: req.app.file.clone(),
            message: format!("no tag or digest to write for image {}", req.image.name),
        });
    }
    places::edit(req)
}

/// A unified diff of one file with `a/<path>` and `b/<path>` headers and 3 lines of context;
/// empty when nothing changed.
pub fn unified_diff(path: &str, before: &[u8], after: &[u8]) -> String {
    if before == after {
        return String::new();
    }
    let old = String::from_utf8_lossy(before);
    let new = String::from_utf8_lossy(after);
    let diff = similar::TextDiff::from_lines(old.as_ref(), new.as_ref());
    diff.unified_diff()
        .context_radius(3)
        .missing_newline_hint(true)
        .header(&format!("a/{path}"), &format!("b/{path}"))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::text::{FileEditor, NodePath, Plain};
    use super::*;

    fn edit(text: &str, f: impl FnOnce(&mut FileEditor) -> Result<(), ManifestError>) -> Result<String, ManifestError> {
        let mut files = FileSet::default();
        files.insert("f.yaml", text.as_bytes());
        let mut ed = FileEditor::from_set(&files, "f.yaml")?;
        f(&mut ed)?;
        Ok(ed.finish()?.map(|b| String::from_utf8(b).unwrap()).unwrap_or_else(|| text.to_string()))
    }

    fn path(doc: usize, keys: &[&str]) -> NodePath {
        keys.iter().fold(NodePath::root(doc), |p, k| match k.parse::<usize>() {
            Ok(i) => p.index(i),
            Err(_) => p.key(k),
        })
    }

    #[test]
    fn replace_scalar_keeps_style_and_surroundings() {
        let cases: &[(&str, &str, &[&str], &str, &str)] = &[
            ("plain", "tag: 1.2.3 # pinned\n", &["tag"], "1.2.4", "tag: 1.2.4 # pinned\n"),
            ("plain float gets quoted", "tag: v1\n", &["tag"], "1.10", "tag: \"1.10\"\n"),
            ("plain to bool word", "tag: v1\n", &["tag"], "yes", "tag: \"yes\"\n"),
            ("null word", "tag: v1\n", &["tag"], "null", "tag: \"null\"\n"),
            ("exponent", "tag: v1\n", &["tag"], "1e3", "tag: \"1e3\"\n"),
            ("hex", "tag: v1\n", &["tag"], "0x1f", "tag: \"0x1f\"\n"),
            ("octal", "tag: v1\n", &["tag"], "0o7", "tag: \"0o7\"\n"),
            ("inf", "tag: v1\n", &["tag"], ".inf", "tag: \".inf\"\n"),
            ("underscore int", "tag: v1\n", &["tag"], "1_0", "tag: \"1_0\"\n"),
            ("date", "tag: v1\n", &["tag"], "2024-01-02", "tag: \"2024-01-02\"\n"),
            ("hash needs quotes", "tag: v1\n", &["tag"], "a #b", "tag: \"a #b\"\n"),
            ("colon space needs quotes", "tag: v1\n", &["tag"], "a: b", "tag: \"a: b\"\n"),
            ("digest stays plain", "i: nginx:1\n", &["i"], "nginx:1@sha256:ab", "i: nginx:1@sha256:ab\n"),
            ("single quoted", "tag: 'v1' # c\n", &["tag"], "it's", "tag: 'it''s' # c\n"),
            ("double quoted", "tag: \"1.2\"\n", &["tag"], "1.3", "tag: \"1.3\"\n"),
            ("crlf", "a: 1\r\ntag: v1\r\nb: 2\r\n", &["tag"], "v2", "a: 1\r\ntag: v2\r\nb: 2\r\n"),
            ("no final newline", "tag: v1", &["tag"], "v2", "tag: v2"),
            ("flow needs quotes for colon", "i: {image: a}\n", &["i", "image"], "a:1", "i: {image: \"a:1\"}\n"),
            ("second document", "a: 1\n---\ntag: v1\n", &["1", "tag"], "v2", "a: 1\n---\ntag: v2\n"),
            ("same value is a no-op", "tag: 1.10\n", &["tag"], "1.10", "tag: 1.10\n"),
        ];
        for &(name, text, keys, value, want) in cases {
            let (doc, keys) = match keys.first().and_then(|k| k.parse::<usize>().ok()) {
                Some(d) => (d, &keys[1..]),
                None => (0, keys),
            };
            let got = edit(text, |ed| ed.replace_scalar(&path(doc, keys), value));
            assert_eq!(got.as_deref(), Ok(want), "case {name}");
        }
    }

    #[test]
    fn replace_scalar_refuses_what_it_cannot_edit_safely() {
        let cases: &[(&str, &str, &[&str], &str)] = &[
            ("alias", "a: &t v1\nb: *t\n", &["b"], "alias"),
            ("anchor", "a: &t v1\nb: *t\n", &["a"], "anchor"),
            ("anchored parent", "a: &m {tag: v1}\nb: *m\n", &["a", "tag"], "anchor"),
            ("block scalar", "tag: |\n  v1\n", &["tag"], "block scalar"),
            ("collection", "tag: [v1]\n", &["tag"], "collection"),
        ];
        for &(name, text, keys, want) in cases {
            let err = edit(text, |ed| ed.replace_scalar(&path(0, keys), "v2")).expect_err(name);
            assert!(err.to_string().contains(want), "case {name}: {err}");
            assert!(err.to_string().starts_with("f.yaml:"), "case {name}: {err}");
        }
        let mut files = FileSet::default();
        files.insert("x.yaml", &b"a: [1\n"[..]);
        let err = FileEditor::from_set(&files, "x.yaml").err().unwrap();
        assert!(err.to_string().starts_with("x.yaml:"), "{err}");
    }

    #[test]
    fn add_key_matches_indentation_and_style() {
        let s = |v: &str| Plain::Str(v.into());
        type Case<'a> = (&'a str, &'a str, &'a [&'a str], &'a str, Plain, &'a str);
        let cases: Vec<Case> = vec![
            ("block", "a:\n    x: 1 # c\nb: 2\n", &["a"], "y", s("v"), "a:\n    x: 1 # c\n    y: v\nb: 2\n"),
            ("list item", "l:\n- name: n\n  newTag: 1.0\n", &["l", "0"], "digest", s("sha256:ab"), "l:\n- name: n\n  newTag: 1.0\n  digest: sha256:ab\n"),
            ("flow", "l: [{name: n}]\n", &["l", "0"], "newTag", s("1.10"), "l: [{name: n, newTag: \"1.10\"}]\n"),
            ("empty flow", "m: {}\n", &["m"], "k", s("v"), "m: {k: v}\n"),
            ("no final newline", "a: 1", &[], "b", s("2x"), "a: 1\nb: 2x"),
            ("crlf", "a: 1\r\nc: 3\r\n", &[], "b", s("x"), "a: 1\r\nc: 3\r\nb: x\r\n"),
            ("after block scalar", "a: |\n  x\nb: 1\n", &[], "c", s("yy"), "a: |\n  x\nb: 1\nc: yy\n"),
            ("nested list matches file", "resources:\n  - a.yaml\n", &[], "images",
                Plain::Seq(vec![Plain::Map(vec![("name".into(), s("app")), ("newTag".into(), s("1"))])]),
                "resources:\n  - a.yaml\nimages:\n  - name: app\n    newTag: \"1\"\n"),
        ];
        for (name, text, keys, key, value, want) in cases {
            let got = edit(text, |ed| ed.add_key(&path(0, keys), key, value));
            assert_eq!(got.as_deref(), Ok(want), "case {name}");
        }
    }

    #[test]
    fn append_and_remove() {
        let entry = Plain::Map(vec![("name".into(), Plain::Str("b".into())), ("newTag".into(), Plain::Str("2".into()))]);
        let cases: Vec<(&str, &str, &str)> = vec![
            ("block", "images:\n- name: a\n  newTag: v1\n", "images:\n- name: a\n  newTag: v1\n- name: b\n  newTag: \"2\"\n"),
            ("indented", "images:\n    -   name: a # c\nx: 1\n", "images:\n    -   name: a # c\n    -   name: b\n        newTag: \"2\"\nx: 1\n"),
            ("flow", "images: [{name: a}]\n", "images: [{name: a}, {name: b, newTag: \"2\"}]\n"),
            ("empty flow", "images: []", "images: [{name: b, newTag: \"2\"}]"),
        ];
        for (name, text, want) in cases {
            let got = edit(text, |ed| ed.append_item(&path(0, &["images"]), entry.clone()));
            assert_eq!(got.as_deref(), Ok(want), "case {name}");
        }
        let got = edit("- name: a\n  digest: sha256:x # old\n  newTag: v1\n", |ed| ed.remove_key(&path(0, &["0"]), "digest"));
        assert_eq!(got.as_deref(), Ok("- name: a\n  newTag: v1\n"));
        let err = edit("- digest: x\n  name: a\n", |ed| ed.remove_key(&path(0, &["0"]), "digest")).unwrap_err();
        assert!(err.to_string().contains("remove it by hand"), "{err}");
    }

    #[test]
    fn verification_refuses_a_splice_that_changes_more() {
        // Writing past a plain scalar into a flow sequence would change the list: simulate a
        // wrong splice by replacing a value with text that the flow context reads differently.
        let got = edit("l: [a, b]\n", |ed| ed.replace_scalar(&path(0, &["l", "0"]), "x, y"));
        assert_eq!(got.as_deref(), Ok("l: [\"x, y\", b]\n"));
    }

    #[test]
    fn unified_diff_has_headers_and_context() {
        let before = b"a: 1\nb: 2\nc: 3\nd: 4\ne: 5\nf: 6\n";
        let after = b"a: 1\nb: 2\nc: 3\nd: 40\ne: 5\nf: 6\n";
        let d = unified_diff("x/y.yaml", before, after);
        assert_eq!(d, "--- a/x/y.yaml\n+++ b/x/y.yaml\n@@ -1,6 +1,6 @@\n a: 1\n b: 2\n c: 3\n-d: 4\n+d: 40\n e: 5\n f: 6\n");
        assert_eq!(unified_diff("x", b"a", b"a"), "");
        assert!(unified_diff("x", b"a: 1", b"a: 2").contains("\\ No newline at end of file"));
    }
}
