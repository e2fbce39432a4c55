//! A span-aware YAML tree: every key and scalar keeps its byte range in the source and its raw
//! text, so that a value can be reported by line and later replaced in place byte for byte.
//!
//! Built from the event stream of `granit-parser` (the parser serde-saphyr uses, re-exported as
//! `serde_saphyr::granit_parser`): its markers carry byte offsets for `&str` input, which the
//! serde layer (`Spanned<T>`) would only give us per typed field, not for a generic tree.
//! Aliases are not expanded: a `*name` stays an [`Value::Alias`] node, and anchored nodes are
//! marked, so callers can refuse to guess through them.

use std::ops::Range;

use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle};

/// A YAML text that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    /// 1-based line.
    pub line: usize,
    pub message: String,
}

/// One parsed YAML stream (a file).
#[derive(Debug, Clone)]
pub struct YamlFile {
    pub documents: Vec<Document>,
    /// Byte offset of the start of every line, for offset -> line.
    line_starts: Vec<usize>,
}

/// One document of a stream.
#[derive(Debug, Clone)]
pub struct Document {
    /// 0-based index in the file.
    pub index: usize,
    /// Byte range of the document (including an explicit `---`).
    pub span: Range<usize>,
    /// `None` for an empty document.
    pub root: Option<Node>,
    /// Anchor definitions in source order.
    pub anchors: Vec<Anchor>,
}

/// An anchor definition (`&name`) and the node it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub name: String,
    /// Span of the anchored node.
    pub span: Range<usize>,
    /// The value when the anchored node is a scalar.
    pub scalar: Option<String>,
}

impl Document {
    /// The definition an alias at byte `offset` refers to: the latest one before it.
    pub fn anchor_for(&self, name: &str, offset: usize) -> Option<&Anchor> {
        self.anchors.iter().rev().find(|a| a.name == name && a.span.start < offset)
    }
}

/// One step from a node to a child: a mapping key or a sequence index. `containers[0].image`
/// is `[Key("containers"), Index(0), Key("image")]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Seg {
    Key(String),
    Index(usize),
}

impl Seg {
    /// A path of mapping keys only (`["spec", "template", "spec"]`).
    pub fn keys(keys: &[&str]) -> Vec<Seg> {
        keys.iter().map(|k| Seg::Key(k.to_string())).collect()
    }
}

#[derive(Debug, Clone)]
pub struct Node {
    /// Byte range of the node in the source. For flow scalars: exactly the scalar as written,
    /// quotes included; for block scalars (`|`, `>`): the content lines, from the first
    /// content character on (the indicator line is not part of it); for collections: from the
    /// opening token on.
    pub span: Range<usize>,
    /// The node carries an anchor (`&name`): other places may alias it.
    pub anchored: bool,
    /// Explicit tag, as written after resolution (`tag:yaml.org,2002:str`, `!custom`).
    pub tag: Option<String>,
    pub value: Value,
}

#[derive(Debug, Clone)]
pub enum Value {
    Scalar(Scalar),
    Sequence(Vec<Node>),
    /// Entries in source order; keys are nodes too (usually scalars).
    Mapping(Vec<(Node, Node)>),
    /// `*name`: a reference to an anchored node, deliberately not expanded.
    Alias(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar {
    /// The value after YAML escape processing and folding.
    pub value: String,
    /// The source text of the span (`"1.10"`, `1.10`; a block scalar's content lines).
    pub raw: String,
    pub style: Style,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    Literal,
    Folded,
}

impl Node {
    pub fn as_scalar(&self) -> Option<&Scalar> {
        match &self.value {
            Value::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// The scalar's value when this is a string-like scalar (not a null).
    pub fn as_str(&self) -> Option<&str> {
        self.as_scalar().filter(|s| !s.is_null()).map(|s| s.value.as_str())
    }

    pub fn as_mapping(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Mapping(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_sequence(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Sequence(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_alias(&self) -> bool {
        matches!(self.value, Value::Alias(_))
    }

    /// The child `seg` leads to: the value of a mapping key, or a sequence item.
    pub fn child(&self, seg: &Seg) -> Option<&Node> {
        match seg {
            Seg::Key(k) => self.get(k),
            Seg::Index(i) => self.as_sequence().and_then(|s| s.get(*i)),
        }
    }

    /// The value of `key` in a mapping (the first entry with that scalar key).
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, v)| v)
    }

    /// The key and value nodes of `key` in a mapping.
    pub fn entry(&self, key: &str) -> Option<(&Node, &Node)> {
        self.as_mapping()?
            .iter()
            .find(|(k, _)| k.as_scalar().is_some_and(|s| s.value == key))
            .map(|(k, v)| (k, v))
    }

    /// Whether this mapping has a merge key (`<<: *base`), whose entries we do not expand.
    pub fn has_merge_key(&self) -> bool {
        self.as_mapping().is_some_and(|m| {
            m.iter().any(|(k, _)| k.as_scalar().is_some_and(|s| s.style == Style::Plain && s.value == "<<"))
        })
    }
}

impl Scalar {
    /// `null`, `~` or nothing, unquoted.
    pub fn is_null(&self) -> bool {
        self.style == Style::Plain && matches!(self.value.as_str(), "" | "~" | "null" | "Null" | "NULL")
    }
}

impl YamlFile {
    /// 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&start| start <= offset)
    }
}

/// Parses file content, which must be UTF-8 (a leading BOM is allowed).
pub fn parse_bytes(bytes: &[u8]) -> Result<YamlFile, YamlError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse(text),
        Err(e) => {
            let valid = &bytes[..e.valid_up_to()];
            let line = 1 + valid.iter().filter(|&&b| b == b'\n').count();
            Err(YamlError { line, message: "not valid UTF-8".into() })
        }
    }
}

/// Parses a (multi-document) YAML text.
pub fn parse(text: &str) -> Result<YamlFile, YamlError> {
    let line_starts = line_starts(text);
    let options = serde_saphyr::granit_parser::options! {
        emit_comments: false,
        emit_anchor_events: true,
    };
    let parser = Parser::new_from_str_with_options(text, options);
    let mut builder = Builder::default();
    for item in parser {
        let (event, span) = item.map_err(|e| {
            let offset = e.marker().byte_offset();
            let line = match offset {
                Some(o) => line_of(&line_starts, o),
                None => e.marker().line(),
            };
            YamlError { line, message: e.info() }
        })?;
        // A `&str` input always yields byte offsets; the fallback only guards against a
        // parser change and would point at the start rather than panic.
        let start = span.start.byte_offset().unwrap_or(0);
        let end = span.end.byte_offset().unwrap_or(start);
        builder.event(event, start..end, text).map_err(|message| YamlError {
            line: line_of(&line_starts, start),
            message,
        })?;
    }
    Ok(YamlFile { documents: builder.documents, line_starts })
}

fn line_starts(text: &str) -> Vec<usize> {
    let mut starts = vec![0];
    starts.extend(text.bytes().enumerate().filter(|&(_, b)| b == b'\n').map(|(i, _)| i + 1));
    starts
}

fn line_of(starts: &[usize], offset: usize) -> usize {
    starts.partition_point(|&s| s <= offset)
}

enum Frame {
    Sequence { node: Node, items: Vec<Node> },
    Mapping { node: Node, entries: Vec<(Node, Node)>, key: Option<Node> },
}

#[derive(Default)]
struct Builder {
    documents: Vec<Document>,
    doc_start: Option<usize>,
    root: Option<Node>,
    stack: Vec<Frame>,
    anchors: Vec<Anchor>,
    /// The last anchored node, waiting for its `Anchor` event (which names it).
    pending_anchor: Option<(Range<usize>, Option<String>)>,
}

impl Builder {
    fn event(&mut self, event: Event<'_>, span: Range<usize>, text: &str) -> Result<(), String> {
        match event {
            Event::StreamStart | Event::StreamEnd => {}
            Event::DocumentStart(..) => {
                self.doc_start = Some(span.start);
                self.root = None;
            }
            Event::DocumentEnd => {
                let start = self.doc_start.take().unwrap_or(span.start);
                // An empty document is reported by the parser as an empty plain scalar.
                if self.root.as_ref().is_some_and(|n| {
                    n.span.is_empty() && n.as_scalar().is_some_and(|s| s.is_null())
                }) {
                    self.root = None;
                }
                let end = span.end.max(self.root.as_ref().map_or(start, |n| n.span.end));
                self.documents.push(Document {
                    index: self.documents.len(),
                    span: start..end,
                    root: self.root.take(),
                    anchors: std::mem::take(&mut self.anchors),
                });
            }
            Event::Alias(_) | Event::UnresolvedAlias(_) => {
                let raw = text.get(span.clone()).unwrap_or("");
                let name = raw.strip_prefix('*').unwrap_or(raw).to_string();
                self.push(Node { span, anchored: false, tag: None, value: Value::Alias(name) })?;
            }
            Event::Anchor(_, name) => {
                if let Some((span, scalar)) = self.pending_anchor.take() {
                    self.anchors.push(Anchor { name: name.into_owned(), span, scalar });
                }
            }
            Event::Scalar(value, style, anchor, tag) => {
                if anchor != 0 {
                    self.pending_anchor = Some((span.clone(), Some(value.to_string())));
                }
                let raw = text.get(span.clone()).unwrap_or("").to_string();
                let style = match style {
                    ScalarStyle::Plain => Style::Plain,
                    ScalarStyle::SingleQuoted => Style::SingleQuoted,
                    ScalarStyle::DoubleQuoted => Style::DoubleQuoted,
                    ScalarStyle::Literal => Style::Literal,
                    ScalarStyle::Folded => Style::Folded,
                };
                self.push(Node {
                    span,
                    anchored: anchor != 0,
                    tag: tag.map(|t| t.to_string()),
                    value: Value::Scalar(Scalar { value: value.into_owned(), raw, style }),
                })?;
            }
            Event::SequenceStart(_, anchor, tag) => {
                if anchor != 0 {
                    self.pending_anchor = Some((span.clone(), None));
                }
                let node = Node {
                    span,
                    anchored: anchor != 0,
                    tag: tag.map(|t| t.to_string()),
                    value: Value::Sequence(Vec::new()),
                };
                self.stack.push(Frame::Sequence { node, items: Vec::new() });
            }
            Event::MappingStart(_, anchor, tag) => {
                if anchor != 0 {
                    self.pending_anchor = Some((span.clone(), None));
                }
                let node = Node {
                    span,
                    anchored: anchor != 0,
                    tag: tag.map(|t| t.to_string()),
                    value: Value::Mapping(Vec::new()),
                };
                self.stack.push(Frame::Mapping { node, entries: Vec::new(), key: None });
            }
            Event::SequenceEnd => match self.stack.pop() {
                Some(Frame::Sequence { mut node, items }) => {
                    node.span.end = span.end.max(items.last().map_or(node.span.end, |n| n.span.end));
                    node.value = Value::Sequence(items);
                    self.push(node)?;
                }
                _ => return Err("unbalanced sequence end".into()),
            },
            Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Mapping { mut node, entries, key: None }) => {
                    node.span.end =
                        span.end.max(entries.last().map_or(node.span.end, |(_, v)| v.span.end));
                    node.value = Value::Mapping(entries);
                    self.push(node)?;
                }
                _ => return Err("unbalanced mapping end".into()),
            },
            // Comments and anchor metadata are presentation only; both are switched off or
            // not requested, but the enum is not ours to match exhaustively.
            _ => {}
        }
        Ok(())
    }

    fn push(&mut self, node: Node) -> Result<(), String> {
        match self.stack.last_mut() {
            None => {
                if self.root.is_some() {
                    return Err("two root nodes in one document".into());
                }
                self.root = Some(node);
            }
            Some(Frame::Sequence { items, .. }) => items.push(node),
            Some(Frame::Mapping { entries, key, .. }) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar_at<'a>(node: &'a Node, path: &[&str]) -> &'a Node {
        path.iter().fold(node, |n, k| n.get(k).unwrap_or_else(|| panic!("no key {k}")))
    }

    /// The raw text of a scalar is exactly the source bytes of its span.
    fn check_raw(text: &str, node: &Node) {
        let s = node.as_scalar().expect("scalar");
        assert_eq!(&text[node.span.clone()], s.raw);
    }

    #[test]
    fn scalars_keep_raw_text_and_byte_spans() {
        struct Case {
            name: &'static str,
            text: &'static str,
            path: &'static [&'static str],
            value: &'static str,
            raw: &'static str,
            line: usize,
        }
        let cases = [
            Case { name: "plain number stays text", text: "image:\n  tag: 1.10\n", path: &["image", "tag"], value: "1.10", raw: "1.10", line: 2 },
            Case { name: "double quoted", text: "image:\n  tag: \"1.10\" # pinned\n", path: &["image", "tag"], value: "1.10", raw: "\"1.10\"", line: 2 },
            Case { name: "single quoted", text: "a: 'it''s'\n", path: &["a"], value: "it's", raw: "'it''s'", line: 1 },
            Case { name: "multi-byte before value", text: "# é🦀 comment\nname: \"ü\"\ntag: v1\n", path: &["tag"], value: "v1", raw: "v1", line: 3 },
            Case { name: "flow mapping", text: "image: {repository: nginx, tag: \"1.2\"}\n", path: &["image", "tag"], value: "1.2", raw: "\"1.2\"", line: 1 },
            Case { name: "crlf", text: "a: 1\r\nb:\r\n  c: x\r\n", path: &["b", "c"], value: "x", raw: "x", line: 3 },
            Case { name: "no final newline", text: "a:\n  b: last", path: &["a", "b"], value: "last", raw: "last", line: 2 },
            Case { name: "literal block", text: "a: |\n  one\n  two\nb: 2\n", path: &["a"], value: "one\ntwo\n", raw: "one\n  two\n", line: 2 },
        ];
        for c in cases {
            let file = parse(c.text).unwrap_or_else(|e| panic!("{}: {e:?}", c.name));
            let root = file.documents[0].root.as_ref().unwrap();
            let node = scalar_at(root, c.path);
            let s = node.as_scalar().unwrap();
            assert_eq!(s.value, c.value, "case {}", c.name);
            assert_eq!(s.raw, c.raw, "case {}", c.name);
            check_raw(c.text, node);
            assert_eq!(file.line_of(node.span.start), c.line, "case {}", c.name);
        }
    }

    #[test]
    fn keys_carry_spans_too() {
        let text = "metadata:\n  name: web\n";
        let file = parse(text).unwrap();
        let (k, v) = file.documents[0].root.as_ref().unwrap().get("metadata").unwrap().entry("name").unwrap();
        assert_eq!(&text[k.span.clone()], "name");
        assert_eq!(&text[v.span.clone()], "web");
    }

    #[test]
    fn multiple_documents_have_index_and_span() {
        let text = "a: 1\n---\n# empty\n---\nb: [x, y]\n...\n";
        let file = parse(text).unwrap();
        assert_eq!(file.documents.len(), 3);
        assert!(file.documents[1].root.is_none());
        let third = &file.documents[2];
        assert_eq!(third.index, 2);
        assert!(text[third.span.clone()].contains("b: [x, y]"));
        let seq = third.root.as_ref().unwrap().get("b").unwrap().as_sequence().unwrap();
        assert_eq!(seq[1].as_str(), Some("y"));
        assert_eq!(file.line_of(seq[1].span.start), 5);
    }

    #[test]
    fn anchors_and_aliases_are_marked_not_expanded() {
        let text = "base: &tag \"1.2\"\nimage:\n  tag: *tag\nmap: &m {a: 1}\nother:\n  <<: *m\n";
        let file = parse(text).unwrap();
        let root = file.documents[0].root.as_ref().unwrap();
        assert!(root.get("base").unwrap().anchored);
        let alias = root.get("image").unwrap().get("tag").unwrap();
        assert!(matches!(&alias.value, Value::Alias(name) if name == "tag"));
        assert_eq!(file.line_of(alias.span.start), 3);
        assert!(root.get("map").unwrap().anchored);
        assert!(root.get("other").unwrap().has_merge_key());
        let doc = &file.documents[0];
        let def = doc.anchor_for("tag", alias.span.start).unwrap();
        assert_eq!(def.scalar.as_deref(), Some("1.2"));
        assert_eq!(&text[def.span.clone()], "\"1.2\"");
        assert_eq!(doc.anchor_for("m", text.len()).unwrap().scalar, None);
    }

    #[test]
    fn invalid_yaml_reports_the_line() {
        let cases = [
            ("bad indentation", "a:\n  b: 1\n c: 2\n", 3),
            ("unclosed flow", "a: [1, 2\nb: 3\n", 2),
            ("unknown alias", "a: 1\nb: *nope\n", 2),
        ];
        for (name, text, line) in cases {
            let err = parse(text).expect_err(name);
            assert_eq!(err.line, line, "case {name}: {err:?}");
            assert!(!err.message.is_empty(), "case {name}");
        }
    }
}
