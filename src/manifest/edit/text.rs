//! Edit primitives over one YAML file: replace a scalar, add a mapping key, remove a one-line
//! key, append a sequence item. Every edit is a byte splice at a span of the yaml.rs tree, so
//! everything the edit does not name stays byte for byte as it was; `finish` then parses the
//! result again and refuses unless exactly the announced values changed.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, LazyLock};

use regex::Regex;

use crate::files::FileSet;
use crate::manifest::ManifestError;
use crate::yaml::{self, Node, Seg, Style, Value, YamlFile};

/// Where a node sits: document index and the steps from its root.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct NodePath {
    pub doc: usize,
    pub segs: Vec<Seg>,
}

impl NodePath {
    pub fn root(doc: usize) -> Self {
        NodePath { doc, segs: Vec::new() }
    }

    pub fn key(&self, key: &str) -> Self {
        let mut p = self.clone();
        p.segs.push(Seg::Key(key.to_string()));
        p
    }

    /// The path `keys` lead to from here (`["helm", "parameters"]`).
    pub fn keys(&self, keys: &[&str]) -> Self {
        let mut p = self.clone();
        p.segs.extend(Seg::keys(keys));
        p
    }

    pub fn index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.segs.push(Seg::Index(i));
        p
    }
}

/// A value we write that did not exist before (string scalars and collections of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plain {
    Str(String),
    Map(Vec<(String, Plain)>),
    Seq(Vec<Plain>),
}

/// What a node is announced to become; every node without one must stay equal.
#[derive(Debug, Clone)]
enum Expect {
    /// A string scalar with this value.
    Scalar(String),
    /// A mapping that gained and lost these keys, all other entries equal and in order.
    Map { added: Vec<(String, Plain)>, removed: Vec<String> },
    /// A sequence with these items appended.
    Appended(Vec<Plain>),
}

struct Splice {
    range: Range<usize>,
    text: String,
}

/// Pending edits of one file.
pub struct FileEditor {
    path: String,
    text: String,
    yaml: Arc<YamlFile>,
    eol: &'static str,
    splices: Vec<Splice>,
    expect: BTreeMap<NodePath, Expect>,
}

fn utf8<'a>(path: &str, bytes: &'a [u8]) -> Result<&'a str, ManifestError> {
    std::str::from_utf8(bytes).map_err(|e| {
        let line = 1 + bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count();
        ManifestError::Yaml { file: path.to_string(), line, message: "not valid UTF-8".into() }
    })
}

fn yaml_error(path: &str, e: yaml::YamlError) -> ManifestError {
    ManifestError::Yaml { file: path.to_string(), line: e.line, message: e.message }
}

impl FileEditor {
    /// An editor for `path` of the file set, on the tree the set already parsed (each file is
    /// parsed once per run, however many images and Applications look at it). Refuses a file
    /// that is not UTF-8 YAML, naming the file and line.
    pub fn from_set(files: &FileSet, path: &str) -> Result<Self, ManifestError> {
        let no_file = || ManifestError::Invalid { file: path.to_string(), message: "no such file in the repository".into() };
        let bytes = files.get(path).ok_or_else(no_file)?;
        let text = utf8(path, bytes)?;
        let yaml = files.yaml(path).ok_or_else(no_file)?.map_err(|e| yaml_error(path, e))?;
        Ok(Self::with_tree(path, text, yaml))
    }

    fn with_tree(path: &str, text: &str, yaml: Arc<YamlFile>) -> Self {
        let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
        FileEditor {
            path: path.to_string(),
            text: text.to_string(),
            yaml,
            eol,
            splices: Vec::new(),
            expect: BTreeMap::new(),
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn yaml(&self) -> &YamlFile {
        &self.yaml
    }

    pub fn line_of(&self, offset: usize) -> usize {
        self.yaml.line_of(offset)
    }

    pub fn error(&self, offset: usize, message: impl Into<String>) -> ManifestError {
        ManifestError::Unsupported {
            file: self.path.clone(),
            line: self.line_of(offset),
            message: message.into(),
        }
    }

    /// The node at `path`, refusing anything that sits behind an anchor (editing it would
    /// change every alias of it too) or an alias.
    pub fn node(&self, path: &NodePath) -> Result<&Node, ManifestError> {
        let doc = self.yaml.documents.get(path.doc);
        let mut node = doc.and_then(|d| d.root.as_ref()).ok_or_else(|| {
            ManifestError::Invalid { file: self.path.clone(), message: format!("no document {}", path.doc) }
        })?;
        self.check_plain_node(node)?;
        for seg in &path.segs {
            node = node.child(seg).ok_or_else(|| self.error(node.span.start, format!("no {seg:?} here")))?;
            self.check_plain_node(node)?;
        }
        Ok(node)
    }

    fn check_plain_node(&self, node: &Node) -> Result<(), ManifestError> {
        if let Value::Alias(name) = &node.value {
            return Err(self.error(
                node.span.start,
                format!("the value is an alias (*{name}); refusing to guess which place to edit"),
            ));
        }
        if node.anchored {
            return Err(self.error(
                node.span.start,
                "the value is behind an anchor (&) that aliases may share; refusing to edit it",
            ));
        }
        Ok(())
    }

    /// A flow collection's span starts at its bracket; a block one's at its first item or key
    /// (which may itself be a flow collection, hence the second test).
    fn is_flow(&self, node: &Node) -> bool {
        let first = match &node.value {
            Value::Mapping(m) => m.first().map(|(k, _)| k.span.start),
            Value::Sequence(s) => s.first().map(|n| n.span.start),
            _ => return false,
        };
        matches!(self.text.as_bytes().get(node.span.start), Some(b'{' | b'['))
            && first.is_none_or(|f| f > node.span.start)
    }

    /// Whether the node at `path` sits inside a flow collection (where `,[]{}` end a plain scalar).
    fn in_flow(&self, path: &NodePath) -> bool {
        let Some(mut node) = self.yaml.documents.get(path.doc).and_then(|d| d.root.as_ref()) else {
            return false;
        };
        for seg in &path.segs {
            if self.is_flow(node) {
                return true;
            }
            match node.child(seg) {
                Some(n) => node = n,
                None => return false,
            }
        }
        false
    }

    /// Replaces the scalar at `path` with the string `value`, keeping its quoting style (a
    /// plain scalar that would read as another type, or not parse, gets double quotes).
    pub fn replace_scalar(&mut self, path: &NodePath, value: &str) -> Result<(), ManifestError> {
        let node = self.node(path)?;
        let span = node.span.clone();
        let Some(scalar) = node.as_scalar() else {
            return Err(self.error(span.start, "expected a single value here, found a collection"));
        };
        let style = scalar.style;
        if matches!(style, Style::Literal | Style::Folded) {
            return Err(self.error(span.start, "the value is a block scalar (| or >); refusing to edit it"));
        }
        if node.tag.as_deref().is_some_and(|t| !t.ends_with(":str") && t != "!") {
            return Err(self.error(span.start, format!("the value has the explicit tag {}", node.tag.as_deref().unwrap_or(""))));
        }
        if scalar.value == value && !scalar.is_null() {
            return Ok(());
        }
        let in_flow = self.in_flow(path);
        let text = render_scalar(value, style, in_flow);
        self.add_expect(path.clone(), Expect::Scalar(value.to_string()))?;
        self.splices.push(Splice { range: span, text });
        Ok(())
    }

    /// Adds `key: value` to the mapping at `path`, after its last entry, at the indentation of
    /// its keys (or `, key: value` before the `}` of a flow mapping).
    pub fn add_key(&mut self, path: &NodePath, key: &str, value: Plain) -> Result<(), ManifestError> {
        let node = self.node(path)?;
        let Some(entries) = node.as_mapping() else {
            return Err(self.error(node.span.start, format!("expected a mapping to add {key:?} to")));
        };
        if node.get(key).is_some() {
            return Err(self.error(node.span.start, format!("{key:?} is already set here")));
        }
        let (at, text) = if self.is_flow(node) {
            let close = node.span.end - 1;
            if self.text.as_bytes()[close] != b'}' {
                return Err(self.error(node.span.start, "unexpected end of a flow mapping"));
            }
            let item = format!("{}: {}", key, render_flow(&value));
            match entries.last() {
                None => (close, item),
                Some((_, last)) => (self.content_end(last), format!(", {item}")),
            }
        } else {
            let Some((first_key, _)) = entries.first() else {
                return Err(self.error(node.span.start, "empty block mapping"));
            };
            let indent = self.column(first_key.span.start);
            let last = &entries.last().expect("non-empty").1;
            let seq_offset = self.seq_indent_hint(node);
            let block = render_entry(key, &value, indent, seq_offset, self.eol);
            self.line_insertion(self.content_end(last), block)
        };
        self.add_map_expect(path, Some((key.to_string(), value)), None)?;
        self.splices.push(Splice { range: at..at, text });
        Ok(())
    }

    /// Removes `key` from a block mapping when its entry is one line of its own.
    pub fn remove_key(&mut self, path: &NodePath, key: &str) -> Result<(), ManifestError> {
        let node = self.node(path)?;
        let Some((k, v)) = node.entry(key) else { return Ok(()) };
        let start = self.line_start(k.span.start);
        let own_line = self.text[start..k.span.start].bytes().all(|b| b == b' ');
        let single = v.as_scalar().is_some_and(|s| !matches!(s.style, Style::Literal | Style::Folded))
            && !self.text[k.span.start..v.span.end].contains('\n');
        if self.is_flow(node) || !own_line || !single || node.as_mapping().is_some_and(|m| m.len() < 2) {
            return Err(self.error(k.span.start, format!("cannot remove {key:?} here without touching other lines; remove it by hand")));
        }
        self.check_plain_node(v)?;
        let end = self.line_end(v.span.end);
        self.add_map_expect(path, None, Some(key.to_string()))?;
        self.splices.push(Splice { range: start..end, text: String::new() });
        Ok(())
    }

    /// Appends `item` to the sequence at `path`, matching the dash and content indentation of
    /// its first item (or `, item` before the `]` of a flow sequence).
    pub fn append_item(&mut self, path: &NodePath, item: Plain) -> Result<(), ManifestError> {
        let node = self.node(path)?;
        let Some(items) = node.as_sequence() else {
            return Err(self.error(node.span.start, "expected a list to add an entry to"));
        };
        let (at, text) = if self.is_flow(node) {
            let close = node.span.end - 1;
            if self.text.as_bytes()[close] != b']' {
                return Err(self.error(node.span.start, "unexpected end of a flow sequence"));
            }
            match items.last() {
                None => (close, render_flow(&item)),
                Some(last) => (self.content_end(last), format!(", {}", render_flow(&item))),
            }
        } else {
            let Some(first) = items.first() else {
                return Err(self.error(node.span.start, "empty block sequence"));
            };
            let (dash_col, content_col) = self.dash_columns(first).ok_or_else(|| {
                self.error(first.span.start, "cannot tell the indentation of this list")
            })?;
            let block = render_item(&item, dash_col, content_col - dash_col, self.eol);
            self.line_insertion(self.content_end(items.last().expect("non-empty")), block)
        };
        self.add_expect(path.clone(), Expect::Appended(vec![item]))?;
        self.splices.push(Splice { range: at..at, text });
        Ok(())
    }

    /// Columns of the `-` and of the content of a block sequence item.
    fn dash_columns(&self, item: &Node) -> Option<(usize, usize)> {
        let start = self.line_start(item.span.start);
        let before = &self.text[start..item.span.start];
        let dash = before.trim_end_matches(' ').strip_suffix('-')?;
        if !dash.bytes().all(|b| b == b' ' || b == b'-') {
            return None;
        }
        Some((dash.chars().count(), before.chars().count()))
    }

    /// How far the file indents a block sequence under its key (0 for `key:\n- a`), read
    /// from the first block sequence among the mapping's values.
    fn seq_indent_hint(&self, mapping: &Node) -> usize {
        let entries = mapping.as_mapping().unwrap_or_default();
        for (k, v) in entries {
            if let Some(first) = v.as_sequence().and_then(|s| s.first())
                && !self.is_flow(v)
                && let Some((dash, _)) = self.dash_columns(first)
            {
                return dash.saturating_sub(self.column(k.span.start));
            }
        }
        0
    }

    /// Where a node's own text ends: a block collection's span runs on to the next token, so
    /// take the end of its last value instead.
    fn content_end(&self, node: &Node) -> usize {
        if self.is_flow(node) {
            return node.span.end;
        }
        match &node.value {
            Value::Mapping(m) if !m.is_empty() => self.content_end(&m.last().expect("non-empty").1),
            Value::Sequence(s) if !s.is_empty() => self.content_end(s.last().expect("non-empty")),
            _ => node.span.end,
        }
    }

    fn column(&self, offset: usize) -> usize {
        self.text[self.line_start(offset)..offset].chars().count()
    }

    fn line_start(&self, offset: usize) -> usize {
        self.text[..offset].rfind('\n').map_or(0, |i| i + 1)
    }

    /// The offset just after the line break ending the line of `offset` (or the file's end).
    fn line_end(&self, offset: usize) -> usize {
        self.text[offset..].find('\n').map_or(self.text.len(), |i| offset + i + 1)
    }

    /// Where to insert whole lines after the content ending at `end`, and the text to insert
    /// there (a file without a final newline keeps lacking one).
    fn line_insertion(&self, end: usize, block: String) -> (usize, String) {
        if end > 0 && self.text.as_bytes()[end - 1] == b'\n' {
            return (end, block);
        }
        match self.text[end..].find('\n') {
            Some(i) => (end + i + 1, block),
            None => {
                let trimmed = block.strip_suffix(self.eol).unwrap_or(&block);
                (self.text.len(), format!("{}{}", self.eol, trimmed))
            }
        }
    }

    fn add_expect(&mut self, path: NodePath, expect: Expect) -> Result<(), ManifestError> {
        if let Some(old) = self.expect.get(&path) {
            let line = self.node(&path).map(|n| self.line_of(n.span.start)).unwrap_or(0);
            return Err(ManifestError::Unsupported {
                file: self.path.clone(),
                line,
                message: format!("two edits of the same value ({old:?}, {expect:?})"),
            });
        }
        self.expect.insert(path, expect);
        Ok(())
    }

    fn add_map_expect(
        &mut self,
        path: &NodePath,
        added: Option<(String, Plain)>,
        removed: Option<String>,
    ) -> Result<(), ManifestError> {
        let entry = self
            .expect
            .entry(path.clone())
            .or_insert_with(|| Expect::Map { added: Vec::new(), removed: Vec::new() });
        let Expect::Map { added: a, removed: r } = entry else {
            return Err(self.error(0, "conflicting edits of one mapping"));
        };
        a.extend(added);
        r.extend(removed);
        Ok(())
    }

    /// Applies the edits, parses the result and checks that exactly the announced values
    /// changed. `None` when there was nothing to change.
    pub fn finish(mut self) -> Result<Option<Vec<u8>>, ManifestError> {
        if self.splices.is_empty() {
            return Ok(None);
        }
        self.splices.sort_by_key(|s| (s.range.start, s.range.end));
        let mut out = String::with_capacity(self.text.len() + 64);
        let mut pos = 0;
        for s in &self.splices {
            if s.range.start < pos {
                return Err(self.error(s.range.start, "overlapping edits"));
            }
            out.push_str(&self.text[pos..s.range.start]);
            out.push_str(&s.text);
            pos = s.range.end;
        }
        out.push_str(&self.text[pos..]);
        let first = self.splices[0].range.start;
        let new = yaml::parse(&out).map_err(|e| {
            self.error(first, format!("the edit would make the file invalid YAML ({}); nothing changed", e.message))
        })?;
        self.verify(&new).map_err(|(offset, what)| {
            self.error(offset, format!("the edit would change more than the image version ({what}); nothing changed"))
        })?;
        Ok(Some(out.into_bytes()))
    }

    fn verify(&self, new: &YamlFile) -> Result<(), (usize, String)> {
        if new.documents.len() != self.yaml.documents.len() {
            return Err((0, "the number of documents".into()));
        }
        for (old, new) in self.yaml.documents.iter().zip(&new.documents) {
            let path = NodePath::root(old.index);
            match (&old.root, &new.root) {
                (None, None) => {}
                (Some(o), Some(n)) => self.compare(o, n, &path)?,
                _ => return Err((old.span.start, format!("document {}", old.index))),
            }
        }
        Ok(())
    }

    fn compare(&self, old: &Node, new: &Node, path: &NodePath) -> Result<(), (usize, String)> {
        let at = old.span.start;
        let differs = |what: &str| Err((at, format!("{what} at {}", describe(path))));
        if old.anchored != new.anchored || old.tag != new.tag {
            return differs("an anchor or tag");
        }
        match (self.expect.get(path), &old.value, &new.value) {
            (Some(Expect::Scalar(want)), Value::Scalar(_), Value::Scalar(_)) => {
                if !is_string(new, want) {
                    return differs("the new value");
                }
                Ok(())
            }
            (Some(Expect::Map { added, removed }), Value::Mapping(o), Value::Mapping(n)) => {
                let is_added = |k: &Node| added.iter().any(|(a, _)| k.as_str() == Some(a));
                let kept_old = o.iter().filter(|(k, _)| !removed.iter().any(|r| k.as_str() == Some(r)));
                let kept_new: Vec<_> = n.iter().filter(|(k, _)| !is_added(k)).collect();
                if kept_old.clone().count() != kept_new.len() {
                    return differs("the entries of a mapping");
                }
                for ((ok, ov), (nk, nv)) in kept_old.zip(kept_new) {
                    self.compare_entry(ok, ov, nk, nv, path)?;
                }
                for (key, value) in added {
                    let found: Vec<_> = n.iter().filter(|(k, _)| k.as_str() == Some(key)).collect();
                    if found.len() != 1 || !matches_plain(&found[0].1, value) {
                        return differs(&format!("the new key {key:?}"));
                    }
                }
                Ok(())
            }
            (Some(Expect::Appended(items)), Value::Sequence(o), Value::Sequence(n)) => {
                if n.len() != o.len() + items.len() {
                    return differs("the length of a list");
                }
                for (i, (a, b)) in o.iter().zip(n).enumerate() {
                    self.compare(a, b, &path.index(i))?;
                }
                if !n[o.len()..].iter().zip(items).all(|(node, item)| matches_plain(node, item)) {
                    return differs("the new list entry");
                }
                Ok(())
            }
            (Some(_), _, _) => differs("the kind of value"),
            (None, Value::Scalar(a), Value::Scalar(b)) => {
                if a.value != b.value || a.style != b.style {
                    return differs("a value");
                }
                Ok(())
            }
            (None, Value::Alias(a), Value::Alias(b)) if a == b => Ok(()),
            (None, Value::Sequence(o), Value::Sequence(n)) => {
                if o.len() != n.len() {
                    return differs("the length of a list");
                }
                for (i, (a, b)) in o.iter().zip(n).enumerate() {
                    self.compare(a, b, &path.index(i))?;
                }
                Ok(())
            }
            (None, Value::Mapping(o), Value::Mapping(n)) => {
                if o.len() != n.len() {
                    return differs("the entries of a mapping");
                }
                for ((ok, ov), (nk, nv)) in o.iter().zip(n) {
                    self.compare_entry(ok, ov, nk, nv, path)?;
                }
                Ok(())
            }
            (None, _, _) => differs("the kind of value"),
        }
    }

    fn compare_entry(
        &self,
        ok: &Node,
        ov: &Node,
        nk: &Node,
        nv: &Node,
        path: &NodePath,
    ) -> Result<(), (usize, String)> {
        // Keys are compared with no announced edits: a key never changes.
        let key_path = NodePath { doc: usize::MAX, segs: Vec::new() };
        self.compare(ok, nk, &key_path)?;
        let child = match ok.as_scalar() {
            Some(s) => path.key(&s.value),
            None => path.key("?"),
        };
        self.compare(ov, nv, &child)
    }
}

fn describe(path: &NodePath) -> String {
    let mut s = String::new();
    for seg in &path.segs {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    if s.is_empty() { "the document root".into() } else { s }
}

fn is_string(node: &Node, want: &str) -> bool {
    match node.as_scalar() {
        Some(s) => s.value == want && !(s.style == Style::Plain && looks_non_string(&s.value)),
        None => false,
    }
}

fn matches_plain(node: &Node, want: &Plain) -> bool {
    match (want, &node.value) {
        (Plain::Str(s), Value::Scalar(_)) => is_string(node, s),
        (Plain::Map(entries), Value::Mapping(m)) => {
            entries.len() == m.len()
                && entries.iter().zip(m).all(|((k, v), (nk, nv))| nk.as_str() == Some(k) && matches_plain(nv, v))
        }
        (Plain::Seq(items), Value::Sequence(s)) => {
            items.len() == s.len() && items.iter().zip(s).all(|(i, n)| matches_plain(n, i))
        }
        _ => false,
    }
}

/// Plain scalars that YAML 1.1 (Helm, go-yaml) or 1.2 reads as something other than a string.
static NON_STRING: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?x)^(?:
          ~ | null | Null | NULL
        | true | True | TRUE | false | False | FALSE
        | y | Y | yes | Yes | YES | n | N | no | No | NO | on | On | ON | off | Off | OFF
        | [-+]?[0-9][0-9_]*(?::[0-5]?[0-9])*(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?
        | [-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
        | [-+]?0[xX][0-9a-fA-F_]+ | [-+]?0o[0-7_]+ | [-+]?0b[01_]+
        | [-+]?\.(?:inf|Inf|INF) | \.(?:nan|NaN|NAN)
        | [0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:[Tt\x20].*)?
        | <<
        )$",
    )
    .expect("valid regex")
});

fn looks_non_string(s: &str) -> bool {
    s.is_empty() || NON_STRING.is_match(s)
}

/// Whether `s` can be written unquoted and still read back as the same string.
fn plain_ok(s: &str, in_flow: bool) -> bool {
    let Some(first) = s.chars().next() else { return false };
    first.is_ascii_alphanumeric()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-/@+".contains(c) || (c == ':' && !in_flow))
        && !s.ends_with(':')
        && !looks_non_string(s)
}

fn double_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn render_scalar(value: &str, style: Style, in_flow: bool) -> String {
    match style {
        Style::SingleQuoted if !value.chars().any(char::is_control) => {
            format!("'{}'", value.replace('\'', "''"))
        }
        Style::Plain if plain_ok(value, in_flow) => value.to_string(),
        _ => double_quote(value),
    }
}

/// A new string value: plain when that reads back the same, double-quoted otherwise.
pub fn render_str(value: &str, in_flow: bool) -> String {
    render_scalar(value, Style::Plain, in_flow)
}

fn render_flow(value: &Plain) -> String {
    match value {
        Plain::Str(s) => render_str(s, true),
        Plain::Map(entries) => {
            let inner: Vec<String> = entries.iter().map(|(k, v)| format!("{}: {}", k, render_flow(v))).collect();
            format!("{{{}}}", inner.join(", "))
        }
        Plain::Seq(items) => {
            let inner: Vec<String> = items.iter().map(render_flow).collect();
            format!("[{}]", inner.join(", "))
        }
    }
}

/// `key: value` lines at `indent`; a nested list's dashes sit `seq_offset` columns deeper.
fn render_entry(key: &str, value: &Plain, indent: usize, seq_offset: usize, eol: &str) -> String {
    let pad = " ".repeat(indent);
    match value {
        Plain::Str(s) => format!("{pad}{key}: {}{eol}", render_str(s, false)),
        Plain::Map(entries) if entries.is_empty() => format!("{pad}{key}: {{}}{eol}"),
        Plain::Seq(items) if items.is_empty() => format!("{pad}{key}: []{eol}"),
        Plain::Map(entries) => {
            let mut out = format!("{pad}{key}:{eol}");
            for (k, v) in entries {
                out.push_str(&render_entry(k, v, indent + 2, seq_offset, eol));
            }
            out
        }
        Plain::Seq(items) => {
            let mut out = format!("{pad}{key}:{eol}");
            for item in items {
                out.push_str(&render_item(item, indent + seq_offset, 2, eol));
            }
            out
        }
    }
}

/// `- item` at `dash_col`, its content `content_offset` columns right of the dash.
fn render_item(item: &Plain, dash_col: usize, content_offset: usize, eol: &str) -> String {
    let content_offset = content_offset.max(2);
    let dash = format!("{}-{}", " ".repeat(dash_col), " ".repeat(content_offset - 1));
    match item {
        Plain::Map(entries) if !entries.is_empty() => {
            let mut out = String::new();
            for (k, v) in entries {
                out.push_str(&render_entry(k, v, dash_col + content_offset, 0, eol));
            }
            format!("{dash}{}", &out[dash_col + content_offset..])
        }
        other => format!("{dash}{}{eol}", render_flow(other)),
    }
}
