//! A YAML loader that keeps a position on every node and defends itself.
//!
//! Built on `saphyr-parser`'s event stream rather than a DOM loader so that
//! (1) every key and value carries its line and column, (2) duplicate keys are
//! errors, and (3) hostile input is bounded: nesting depth and alias expansion
//! are capped (a "billion laughs" document fails fast instead of eating memory).
//! Scalars are resolved with the YAML 1.2 core schema.

use saphyr::Scalar;
use saphyr_parser::{Event, Parser, Span as RawSpan};
use std::collections::HashMap;

/// Deepest nesting of sequences and mappings accepted.
pub const MAX_DEPTH: usize = 64;
/// Most nodes that aliases may copy into one file.
pub const MAX_ALIAS_NODES: usize = 10_000;

/// A position in a source file: 1-based line and column (in characters), and
/// the 0-based character index used to find the byte offset when rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
    pub index: usize,
}

impl Default for Pos {
    /// The start of a file: line 1, column 1.
    fn default() -> Pos {
        Pos { line: 1, col: 1, index: 0 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: Pos,
    pub end: Pos,
}

impl Span {
    fn from_raw(raw: RawSpan) -> Span {
        let p = |m: saphyr_parser::Marker| Pos { line: m.line(), col: m.col() + 1, index: m.index() };
        Span { start: p(raw.start), end: p(raw.end) }
    }

    pub fn point(pos: Pos) -> Span {
        Span { start: pos, end: pos }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub span: Span,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_span: Span,
    pub value: Node,
}

/// A document of a multi-document stream.
#[derive(Debug, Clone)]
pub struct Document {
    pub root: Node,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub message: String,
    pub span: Span,
    pub hint: Option<String>,
}

impl Node {
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|e| &e.value)
    }

    pub fn entry(&self, key: &str) -> Option<&Entry> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|e| e.key == key),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Converts to JSON. Mapping keys stay strings; numbers keep their type.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(entries.iter().map(|e| (e.key.clone(), e.value.to_json())).collect()),
        }
    }

    /// The node reached by a path of keys and indices, with the span of the
    /// key that leads to it (the better place to point at for "this field…").
    pub fn lookup<I, S>(&self, path: I) -> Option<(Option<Span>, &Node)>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut node = self;
        let mut key_span = None;
        for seg in path {
            let seg = seg.as_ref();
            match &node.value {
                Value::Map(entries) => {
                    let e = entries.iter().find(|e| e.key == seg)?;
                    key_span = Some(e.key_span);
                    node = &e.value;
                }
                Value::Seq(items) => {
                    node = items.get(seg.parse::<usize>().ok()?)?;
                    key_span = None;
                }
                _ => return None,
            }
        }
        Some((key_span, node))
    }

    /// The span to report for a path: the deepest existing node on it
    /// (its key if it has one), so a missing field points at its parent.
    pub fn span_of(&self, path: &[String]) -> Span {
        for len in (0..=path.len()).rev() {
            if let Some((key, node)) = self.lookup(&path[..len]) {
                return if len == path.len() { node.span } else { key.unwrap_or(node.span) };
            }
        }
        self.span
    }

    /// The span of a mapping key at `path` (the last segment is the key).
    pub fn key_span_of(&self, path: &[String]) -> Span {
        match self.lookup(path) {
            Some((Some(key), _)) => key,
            _ => self.span_of(path),
        }
    }

    fn count(&self) -> usize {
        1 + match &self.value {
            Value::Seq(items) => items.iter().map(Node::count).sum(),
            Value::Map(entries) => entries.iter().map(|e| 1 + e.value.count()).sum(),
            _ => 0,
        }
    }
}

enum Frame {
    Seq { start: Span, items: Vec<Node>, anchor: usize },
    Map { start: Span, entries: Vec<Entry>, key: Option<(String, Span)>, anchor: usize },
}

/// Parses a YAML stream into documents. Stops at the first syntax error
/// (nothing after a syntax error can be trusted).
pub fn parse(text: &str) -> Result<Vec<Document>, YamlError> {
    let mut parser = Parser::new_from_str(text);
    let mut docs = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut alias_budget = MAX_ALIAS_NODES;
    let mut root: Option<Node> = None;

    while let Some(next) = parser.next_event() {
        let (event, raw_span) = next.map_err(|e| {
            let m = e.marker();
            let pos = Pos { line: m.line(), col: m.col() + 1, index: m.index() };
            YamlError {
                message: format!("invalid YAML: {}", e.info()),
                span: Span::point(pos),
                hint: Some("check indentation, quoting and that every `:` in a value is quoted".into()),
            }
        })?;
        let span = Span::from_raw(raw_span);
        let completed = match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing => None,
            Event::DocumentStart(_) => {
                anchors.clear();
                None
            }
            Event::DocumentEnd => {
                // An empty document (a stray `---`) has a null root: skip it.
                if let Some(root) = root.take().filter(|r| r.value != Value::Null) {
                    docs.push(Document { root });
                }
                None
            }
            Event::Alias(id) => {
                let node = anchors.get(&id).ok_or_else(|| YamlError {
                    message: "alias refers to an unknown anchor".into(),
                    span,
                    hint: Some("define the anchor (`&name`) before using it (`*name`)".into()),
                })?;
                let cost = node.count();
                if cost > alias_budget {
                    return Err(YamlError {
                        message: format!("YAML aliases expand to more than {MAX_ALIAS_NODES} nodes (an alias bomb?)"),
                        span,
                        hint: Some("write the repeated content out, or reuse less of it through aliases".into()),
                    });
                }
                alias_budget -= cost;
                Some(Node { span, value: node.value.clone() })
            }
            Event::Scalar(value, style, anchor, tag) => {
                let scalar =
                    Scalar::parse_from_cow_and_metadata(value, style, tag.as_ref()).ok_or_else(|| YamlError {
                        message: "scalar does not match its tag".into(),
                        span,
                        hint: Some("remove the tag or fix the value".into()),
                    })?;
                let value = match scalar {
                    Scalar::Null => Value::Null,
                    Scalar::Boolean(b) => Value::Bool(b),
                    Scalar::Integer(i) => Value::Int(i),
                    Scalar::FloatingPoint(f) => Value::Float(f.into_inner()),
                    Scalar::String(s) => Value::Str(s.into_owned()),
                };
                let node = Node { span, value };
                if anchor > 0 {
                    anchors.insert(anchor, node.clone());
                }
                Some(node)
            }
            Event::SequenceStart(anchor, _) => {
                check_depth(&stack, span)?;
                stack.push(Frame::Seq { start: span, items: Vec::new(), anchor });
                None
            }
            Event::MappingStart(anchor, _) => {
                check_depth(&stack, span)?;
                stack.push(Frame::Map { start: span, entries: Vec::new(), key: None, anchor });
                None
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let node_and_anchor = match stack.pop() {
                    Some(Frame::Seq { start, items, anchor }) => {
                        (Node { span: Span { start: start.start, end: span.end }, value: Value::Seq(items) }, anchor)
                    }
                    Some(Frame::Map { start, entries, anchor, .. }) => {
                        (Node { span: Span { start: start.start, end: span.end }, value: Value::Map(entries) }, anchor)
                    }
                    None => continue,
                };
                let (node, anchor) = node_and_anchor;
                if anchor > 0 {
                    anchors.insert(anchor, node.clone());
                }
                Some(node)
            }
        };
        if let Some(node) = completed {
            attach(&mut stack, &mut root, node)?;
        }
    }
    if let Some(root) = root.take().filter(|r| r.value != Value::Null) {
        docs.push(Document { root });
    }
    Ok(docs)
}

fn check_depth(stack: &[Frame], span: Span) -> Result<(), YamlError> {
    if stack.len() >= MAX_DEPTH {
        return Err(YamlError {
            message: format!("YAML nesting is deeper than {MAX_DEPTH} levels"),
            span,
            hint: Some("flatten the structure; no paved or Score field nests this deep".into()),
        });
    }
    Ok(())
}

fn attach(stack: &mut [Frame], root: &mut Option<Node>, node: Node) -> Result<(), YamlError> {
    match stack.last_mut() {
        None => *root = Some(node),
        Some(Frame::Seq { items, .. }) => items.push(node),
        Some(Frame::Map { entries, key, .. }) => match key.take() {
            None => {
                let text = match node.value {
                    Value::Str(s) => s,
                    Value::Int(i) => i.to_string(),
                    Value::Bool(b) => b.to_string(),
                    Value::Float(f) => f.to_string(),
                    Value::Null => "null".to_string(),
                    Value::Seq(_) | Value::Map(_) => {
                        return Err(YamlError {
                            message: "mapping keys must be plain values, not lists or mappings".into(),
                            span: node.span,
                            hint: None,
                        });
                    }
                };
                if let Some(first) = entries.iter().find(|e| e.key == text) {
                    return Err(YamlError {
                        message: format!(
                            "duplicate key `{text}` (first defined at line {}, column {})",
                            first.key_span.start.line, first.key_span.start.col
                        ),
                        span: node.span,
                        hint: Some("remove one of the two entries; YAML keys must be unique".into()),
                    });
                }
                *key = Some((text, node.span));
            }
            Some((k, key_span)) => entries.push(Entry { key: k, key_span, value: node }),
        },
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_positions_of_keys_and_values() {
        let docs = parse("a: 1\nb:\n  c: [x, \"y\"]\n").unwrap();
        let root = &docs[0].root;
        let c = root.get("b").unwrap().entry("c").unwrap();
        assert_eq!((c.key_span.start.line, c.key_span.start.col), (3, 3));
        assert_eq!(root.to_json(), serde_json::json!({"a": 1, "b": {"c": ["x", "y"]}}));
    }

    #[test]
    fn splits_multi_document_streams() {
        let docs = parse("a: 1\n---\nb: 2\n---\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].root.span.start.line, 3);
    }

    #[test]
    fn rejects_duplicate_keys_with_both_positions() {
        let err = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert!(err.message.contains("duplicate key `a` (first defined at line 1, column 1)"), "{err:?}");
        assert_eq!(err.span.start.line, 3);
    }

    #[test]
    fn stops_alias_bombs() {
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let prev = (b'a' + i - 1) as char;
            let cur = (b'a' + i) as char;
            bomb.push_str(&format!("{cur}: &{cur} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        let err = parse(&bomb).unwrap_err();
        assert!(err.message.contains("alias bomb"), "{err:?}");
    }

    #[test]
    fn resolves_core_schema_scalars() {
        let docs = parse("i: 12\nf: 1.5\nb: true\nn: ~\ns: '12'\nyes: yes\n").unwrap();
        assert_eq!(
            docs[0].root.to_json(),
            serde_json::json!({"i": 12, "f": 1.5, "b": true, "n": null, "s": "12", "yes": "yes"})
        );
    }

    #[test]
    fn limits_depth() {
        let deep = "[".repeat(200) + &"]".repeat(200);
        let err = parse(&deep).unwrap_err();
        assert!(err.message.contains("deeper than 64"), "{err:?}");
    }
}
