//! YAML text → a tree of nodes that remember where they came from. Built on saphyr-parser's
//! event stream so that every node has a position and nothing is lost to a deserializer:
//! duplicate keys, aliases and tags are all seen. Scalars are typed by the YAML 1.2 core
//! schema (`yes` is a string, `1` an integer), as Semaphore's parser does.
//!
//! Hostile input is bounded: nesting depth, alias expansion and file size have limits, each
//! reported as a diagnostic that says what to change.

use std::borrow::Cow;
use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span};

use crate::diag::{Pos, Sink, YPath};

/// Pipeline files larger than this are refused before parsing.
pub const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;
const MAX_DEPTH: usize = 128;
/// Nodes an alias expansion may produce, over the whole document ("billion laughs").
const MAX_ALIAS_NODES: usize = 1_000_000;

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: Kind,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in document order; keys are the scalar text.
    Map(Vec<(String, Pos, Node)>),
}

impl Node {
    /// The type name Semaphore's validator uses (`Object`, `Array`, `String`, ...).
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Null => "Null",
            Kind::Bool(_) => "Boolean",
            Kind::Int(_) => "Integer",
            Kind::Float(_) => "Number",
            Kind::Str(_) => "String",
            Kind::Seq(_) => "Array",
            Kind::Map(_) => "Object",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            Kind::Map(entries) => entries.iter().find(|(k, _, _)| k == key).map(|(_, _, v)| v),
            _ => None,
        }
    }

    /// A short rendering of a scalar for messages.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Null => "null".into(),
            Kind::Bool(b) => b.to_string(),
            Kind::Int(n) => n.to_string(),
            Kind::Float(f) => f.to_string(),
            Kind::Str(s) if s.chars().count() > 40 => format!("\"{}…\"", s.chars().take(40).collect::<String>()),
            Kind::Str(s) => format!("{s:?}"),
            Kind::Seq(_) => "a list".into(),
            Kind::Map(_) => "a mapping".into(),
        }
    }

    /// Converts to JSON (for `${{ }}` templates and plan output).
    pub fn to_json(&self) -> serde_json::Value {
        match &self.kind {
            Kind::Null => serde_json::Value::Null,
            Kind::Bool(b) => serde_json::Value::Bool(*b),
            Kind::Int(n) => serde_json::Value::from(*n),
            Kind::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, serde_json::Value::Number)
            }
            Kind::Str(s) => serde_json::Value::String(s.clone()),
            Kind::Seq(items) => serde_json::Value::Array(items.iter().map(Node::to_json).collect()),
            Kind::Map(entries) => {
                serde_json::Value::Object(entries.iter().map(|(k, _, v)| (k.clone(), v.to_json())).collect())
            }
        }
    }
}

fn pos_of(span: &Span) -> Pos {
    Pos { line: span.start.line(), column: span.start.col() + 1 }
}

/// Parses a pipeline file. Returns the document's root node (if there is one) and reports
/// every problem into `sink`. Never panics, whatever the bytes.
pub fn load(bytes: &[u8], sink: &mut Sink) -> Option<Node> {
    let root = YPath::root();
    let start = Pos { line: 1, column: 1 };
    if bytes.len() > MAX_FILE_BYTES {
        sink.error(
            start,
            &root,
            format!(
                "the file is {} bytes, larger than the {} MiB a pipeline file may be; split it with task_file or commands_file",
                bytes.len(),
                MAX_FILE_BYTES / (1024 * 1024)
            ),
        );
        return None;
    }
    if bytes.contains(&0) {
        sink.error(start, &root, "the file contains NUL bytes: it is binary, not a YAML pipeline file");
        return None;
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let offset = e.valid_up_to();
            let before = &bytes[..offset];
            let line = before.iter().filter(|b| **b == b'\n').count() + 1;
            let column = offset - before.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1) + 1;
            sink.error(
                Pos { line, column },
                &root,
                format!("the file is not valid UTF-8 (byte {offset}); save it as UTF-8 text"),
            );
            return None;
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        sink.error(
            start,
            &root,
            "Empty string is not a valid YAML. Required property 'version' missing or not string: start the file with `version: v1.0`",
        );
        return None;
    }
    // Semaphore's YAML parser accepts unknown escapes in double-quoted strings ("\." is ".")
    // with a warning; real pipelines rely on it. Drop such backslashes and parse again.
    let mut src: Cow<'_, str> = Cow::Borrowed(text);
    // Each retry parses the whole file again, so the number of fixes is kept small.
    for _ in 0..50 {
        match build(&src, sink) {
            Ok(node) => return node,
            Err(BuildError::Scan(e)) if e.info().contains("unknown escape") => {
                match fix_unknown_escape(&src, e.marker().index()) {
                    Some((fixed, pos, ch)) => {
                        sink.warning(
                            pos,
                            &root,
                            format!("unknown escape sequence \"\\{ch}\" in a double-quoted string is read as \"{ch}\"; write it without the backslash, or use single quotes"),
                        );
                        src = Cow::Owned(fixed);
                    }
                    None => {
                        report_scan_error(&e, sink);
                        return None;
                    }
                }
            }
            Err(BuildError::Scan(e)) => {
                report_scan_error(&e, sink);
                return None;
            }
            Err(BuildError::Limit(pos, msg)) => {
                sink.error(pos, &root, msg);
                return None;
            }
        }
    }
    sink.error(start, &root, "the file has more than 50 unknown escape sequences in double-quoted strings; use single quotes for text with backslashes");
    None
}

fn report_scan_error(e: &ScanError, sink: &mut Sink) {
    let m = e.marker();
    if e.info().contains("recursion limit") {
        sink.error(
            Pos { line: m.line(), column: m.col() + 1 },
            &YPath::root(),
            format!("the YAML is nested deeper than the parser allows ({}); a pipeline never needs that", e.info()),
        );
        return;
    }
    sink.error(
        Pos { line: m.line(), column: m.col() + 1 },
        &YPath::root(),
        format!("the file is not valid YAML: {}; check the indentation and quoting around this line", e.info()),
    );
}

/// Finds the first unknown escape inside the double-quoted scalar starting at char index
/// `start` and removes its backslash.
fn fix_unknown_escape(src: &str, start: usize) -> Option<(String, Pos, char)> {
    let chars: Vec<(usize, char)> = src.char_indices().collect();
    let mut i = start;
    while i < chars.len() && chars[i].1 != '"' {
        i += 1;
    }
    i += 1;
    while i + 1 < chars.len() {
        match chars[i].1 {
            '"' => return None,
            '\\' => {
                let next = chars[i + 1].1;
                let known = matches!(
                    next,
                    '0' | 'a'
                        | 'b'
                        | 't'
                        | '\t'
                        | 'n'
                        | 'v'
                        | 'f'
                        | 'r'
                        | 'e'
                        | ' '
                        | '"'
                        | '/'
                        | '\\'
                        | 'N'
                        | '_'
                        | 'L'
                        | 'P'
                        | 'x'
                        | 'u'
                        | 'U'
                        | '\n'
                        | '\r'
                );
                if !known {
                    let byte = chars[i].0;
                    let before = &src[..byte];
                    let line = before.matches('\n').count() + 1;
                    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                    let mut fixed = String::with_capacity(src.len());
                    fixed.push_str(before);
                    fixed.push_str(&src[byte + 1..]);
                    return Some((fixed, Pos { line, column }, next));
                }
                i += 2;
            }
            _ => i += 1,
        }
    }
    None
}

enum BuildError {
    Scan(ScanError),
    Limit(Pos, String),
}

enum Frame {
    Seq(Vec<Node>, Pos, usize),
    Map(Vec<(String, Pos, Node)>, Option<(String, Pos)>, Pos, usize),
}

fn build(src: &str, sink: &mut Sink) -> Result<Option<Node>, BuildError> {
    let mut parser = Parser::new_from_str(src);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut alias_nodes = 0usize;
    let mut docs: Vec<Node> = Vec::new();
    let mut n_docs = 0;
    while let Some(ev) = parser.next_event() {
        let (ev, span) = ev.map_err(BuildError::Scan)?;
        let pos = pos_of(&span);
        let node = match ev {
            Event::DocumentStart(_) => {
                n_docs += 1;
                continue;
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => continue,
            Event::SequenceStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(BuildError::Limit(
                        pos,
                        format!("the YAML is nested deeper than {MAX_DEPTH} levels; a pipeline never needs that"),
                    ));
                }
                stack.push(Frame::Seq(Vec::new(), pos, anchor));
                continue;
            }
            Event::MappingStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(BuildError::Limit(
                        pos,
                        format!("the YAML is nested deeper than {MAX_DEPTH} levels; a pipeline never needs that"),
                    ));
                }
                stack.push(Frame::Map(Vec::new(), None, pos, anchor));
                continue;
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq(items, p, anchor)) => {
                    remember(&mut anchors, anchor, Node { kind: Kind::Seq(items), pos: p })
                }
                _ => continue,
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map(entries, _, p, anchor)) => {
                    remember(&mut anchors, anchor, Node { kind: Kind::Map(entries), pos: p })
                }
                _ => continue,
            },
            Event::Scalar(value, style, anchor, tag) => {
                let tag = tag.map(|t| format!("{}{}", t.handle, t.suffix));
                let kind = scalar_kind(&value, style, tag.as_deref());
                remember(&mut anchors, anchor, Node { kind, pos })
            }
            Event::Alias(id) => match anchors.get(&id) {
                Some(n) => {
                    alias_nodes += count_nodes(n);
                    if alias_nodes > MAX_ALIAS_NODES {
                        return Err(BuildError::Limit(
                            pos,
                            format!(
                                "aliases expand to more than {MAX_ALIAS_NODES} nodes; this looks like an alias bomb, not a pipeline"
                            ),
                        ));
                    }
                    n.clone()
                }
                None => Node { kind: Kind::Null, pos },
            },
        };
        // Attach the finished node to its parent.
        match stack.last_mut() {
            None => docs.push(node),
            Some(Frame::Seq(items, _, _)) => items.push(node),
            Some(Frame::Map(entries, pending, _, _)) => match pending.take() {
                None => {
                    let key = match &node.kind {
                        Kind::Str(s) => s.clone(),
                        Kind::Null => "null".into(),
                        Kind::Bool(b) => b.to_string(),
                        Kind::Int(n) => n.to_string(),
                        Kind::Float(f) => f.to_string(),
                        Kind::Seq(_) | Kind::Map(_) => {
                            sink.error(
                                node.pos,
                                &YPath::root(),
                                "a mapping key must be a plain string, not a list or mapping",
                            );
                            "<complex key>".into()
                        }
                    };
                    *pending = Some((key, node.pos));
                }
                Some((key, key_pos)) => {
                    if key == "<<" {
                        merge_into(entries, node);
                    } else if let Some(i) = entries.iter().position(|(k, _, _)| *k == key) {
                        sink.error(
                            key_pos,
                            &YPath::root(),
                            format!(
                                "duplicate key `{key}` (first defined on line {}); remove one of them",
                                entries[i].1.line
                            ),
                        );
                        entries[i] = (key, key_pos, node);
                    } else {
                        entries.push((key, key_pos, node));
                    }
                }
            },
        }
    }
    if n_docs > 1 {
        sink.warning(
            Pos { line: 1, column: 1 },
            &YPath::root(),
            format!("the file holds {n_docs} YAML documents; only the first is read"),
        );
    }
    Ok(docs.into_iter().next())
}

/// `<<: *defaults` (and `<<: [*a, *b]`): keys not already present are copied in.
fn merge_into(entries: &mut Vec<(String, Pos, Node)>, node: Node) {
    let sources = match node.kind {
        Kind::Seq(items) => items,
        _ => vec![node],
    };
    for src in sources {
        if let Kind::Map(src_entries) = src.kind {
            for (k, p, v) in src_entries {
                if !entries.iter().any(|(e, _, _)| *e == k) {
                    entries.push((k, p, v));
                }
            }
        }
    }
}

fn remember(anchors: &mut HashMap<usize, Node>, anchor: usize, node: Node) -> Node {
    if anchor != 0 {
        anchors.insert(anchor, node.clone());
    }
    node
}

fn count_nodes(n: &Node) -> usize {
    match &n.kind {
        Kind::Seq(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        Kind::Map(entries) => 1 + entries.iter().map(|(_, _, v)| count_nodes(v)).sum::<usize>(),
        _ => 1,
    }
}

fn scalar_kind(value: &str, style: ScalarStyle, tag: Option<&str>) -> Kind {
    match tag {
        Some("!!str" | "tag:yaml.org,2002:str") => return Kind::Str(value.to_owned()),
        Some("!!int" | "tag:yaml.org,2002:int") => {
            if let Some(n) = parse_int(value) {
                return Kind::Int(n);
            }
        }
        Some("!!float" | "tag:yaml.org,2002:float") => {
            if let Some(f) = parse_float(value) {
                return Kind::Float(f);
            }
        }
        Some("!!bool" | "tag:yaml.org,2002:bool") => match value {
            "true" | "True" | "TRUE" => return Kind::Bool(true),
            "false" | "False" | "FALSE" => return Kind::Bool(false),
            _ => (),
        },
        Some("!!null" | "tag:yaml.org,2002:null") => return Kind::Null,
        _ => (),
    }
    if style != ScalarStyle::Plain {
        return Kind::Str(value.to_owned());
    }
    match value {
        "" | "~" | "null" | "Null" | "NULL" => Kind::Null,
        "true" | "True" | "TRUE" => Kind::Bool(true),
        "false" | "False" | "FALSE" => Kind::Bool(false),
        _ => {
            if let Some(n) = parse_int(value) {
                Kind::Int(n)
            } else if let Some(f) = parse_float(value) {
                Kind::Float(f)
            } else {
                Kind::Str(value.to_owned())
            }
        }
    }
}

fn parse_int(s: &str) -> Option<i64> {
    if let Some(oct) = s.strip_prefix("0o") {
        return i64::from_str_radix(oct, 8).ok();
    }
    if let Some(hex) = s.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok();
    }
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_float(s: &str) -> Option<f64> {
    match s {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        _ => (),
    }
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((a, b)) => (!a.is_empty() || !b.is_empty()) && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit()),
        None => !mantissa.is_empty() && mantissa.bytes().all(|c| c.is_ascii_digit()),
    };
    let exp_ok = exp.is_none_or(|e| {
        let d = e.strip_prefix(['-', '+']).unwrap_or(e);
        !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit())
    });
    if mantissa_ok && exp_ok && (mantissa.contains('.') || exp.is_some()) { s.parse().ok() } else { None }
}
