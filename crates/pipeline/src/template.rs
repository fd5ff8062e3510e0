//! `${{ parameters.NAME }}` and `%{{ parameters.NAME }}` templates (SEMAPHORE.md §1.13), applied
//! to every string of the document outside `commands` lists before decoding. `%{{ }}` decodes
//! the value as JSON, so a whole-value template can become a list or a number.

use std::collections::BTreeMap;

use crate::diag::{Sink, YPath};
use crate::yaml::{Kind, Node};

/// Parameter values by name.
pub type Params = BTreeMap<String, String>;

/// Does a string contain a template at all?
pub fn has_template(s: &str) -> bool {
    s.contains("${{") || s.contains("%{{")
}

/// Substitutes templates in place. Unknown parameters keep their name and get a warning, as
/// Semaphore's compiler does; expressions other than `parameters.NAME` are errors.
pub fn apply(node: &mut Node, params: &Params, path: &YPath, sink: &mut Sink) {
    match &mut node.kind {
        Kind::Str(s) if has_template(s) => {
            let pos = node.pos;
            if let Some(replacement) = render(s, params, &mut |msg, warn| {
                if warn {
                    sink.warning(pos, path, msg);
                } else {
                    sink.error(pos, path, msg);
                }
            }) {
                node.kind = replacement;
            }
        }
        Kind::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                apply(item, params, &path.idx(i), sink);
            }
        }
        Kind::Map(entries) => {
            for (key, _, value) in entries.iter_mut() {
                // Commands are shell text; `${{` there belongs to the user's script.
                if key == "commands" {
                    continue;
                }
                apply(value, params, &path.key(key), sink);
            }
        }
        _ => (),
    }
}

fn render(s: &str, params: &Params, report: &mut dyn FnMut(String, bool)) -> Option<Kind> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = [rest.find("${{"), rest.find("%{{")].into_iter().flatten().min().map(|i| i + 1) {
        let Some(len) = rest[start..].find("}}") else { break };
        let sigil = &rest[start - 1..start];
        let inner = rest[start + 2..start + len].trim();
        if inner.contains("{{") {
            report(format!("nested expressions are not supported: `{s}`"), false);
            return None;
        }
        let value = match eval_pipeline(inner, params, report) {
            Ok(v) => v,
            Err(msg) => {
                report(msg, false);
                return None;
            }
        };
        let after = &rest[start + len + 2..];
        if sigil == "%" {
            // `%{{ }}` pipes the value through toJson and decodes it again.
            let json = match value {
                serde_json::Value::String(text) => {
                    serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
                }
                other => other,
            };
            // A template that is the whole value is injected as structured data.
            if out.is_empty() && start == 1 && after.is_empty() {
                return Some(json_kind(&json));
            }
            out.push_str(&rest[..start - 1]);
            match json {
                serde_json::Value::String(text) => out.push_str(&text),
                other => out.push_str(&other.to_string()),
            }
        } else {
            out.push_str(&rest[..start - 1]);
            out.push_str(&go_text(&value));
        }
        rest = after;
    }
    out.push_str(rest);
    Some(Kind::Str(out))
}

fn json_kind(json: &serde_json::Value) -> Kind {
    match json {
        serde_json::Value::Null => Kind::Null,
        serde_json::Value::Bool(b) => Kind::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Kind::Int(i),
            None => Kind::Float(n.as_f64().unwrap_or_default()),
        },
        serde_json::Value::String(s) => Kind::Str(s.clone()),
        serde_json::Value::Array(items) => {
            Kind::Seq(items.iter().map(|v| Node { kind: json_kind(v), pos: crate::diag::Pos::default() }).collect())
        }
        serde_json::Value::Object(map) => Kind::Map(
            map.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        crate::diag::Pos::default(),
                        Node { kind: json_kind(v), pos: crate::diag::Pos::default() },
                    )
                })
                .collect(),
        ),
    }
}

/// Evaluates `parameters.NAME | fn args | ...`: a value, then Sprout-style functions applied in
/// pipe order. The functions are the ones pipelines use to shape parameters.
fn eval_pipeline(
    inner: &str,
    params: &Params,
    report: &mut dyn FnMut(String, bool),
) -> Result<serde_json::Value, String> {
    use serde_json::Value as J;
    let stages = split_pipes(inner);
    let head = stages.first().map(|s| s.trim()).unwrap_or_default();
    let mut value = match head.strip_prefix("parameters.") {
        Some(name) if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
            match params.get(name).filter(|v| !v.is_empty()) {
                Some(v) => J::String(v.clone()),
                None => {
                    report(
                        format!(
                            "parameter `{name}` has no value, so the template uses \"{name}\"; pass it with --param {name}=VALUE"
                        ),
                        true,
                    );
                    J::String(name.to_owned())
                }
            }
        }
        _ => match parse_literal(head) {
            Some(v) => v,
            None => {
                return Err(format!(
                    "unsupported template expression `{inner}`: Salve evaluates `parameters.NAME`, optionally piped through functions such as `| int64` or `| splitList \",\"`"
                ));
            }
        },
    };
    for stage in &stages[1..] {
        let words = split_words(stage.trim());
        let Some((fun, args)) = words.split_first() else { return Err(format!("empty pipeline stage in `{inner}`")) };
        let arg = |i: usize| args.get(i).and_then(|a| parse_literal(a)).and_then(|v| v.as_str().map(str::to_owned));
        let text = |v: &J| match v {
            J::String(s) => s.clone(),
            other => go_text(other),
        };
        value = match (fun.as_str(), args.len()) {
            ("int" | "int64" | "atoi" | "toInt" | "toInt64", 0) => {
                J::from(text(&value).trim().parse::<i64>().unwrap_or(0))
            }
            ("toString", 0) => J::String(text(&value)),
            ("trim", 0) => J::String(text(&value).trim().to_owned()),
            ("lower", 0) => J::String(text(&value).to_lowercase()),
            ("upper", 0) => J::String(text(&value).to_uppercase()),
            ("quote", 0) => J::String(format!("{:?}", text(&value))),
            ("toJson", 0) => J::String(value.to_string()),
            ("fromJson", 0) => serde_json::from_str(&text(&value)).unwrap_or(J::Null),
            ("splitList", 1) => {
                let sep = arg(0).ok_or_else(|| format!("splitList needs a quoted separator in `{inner}`"))?;
                J::Array(text(&value).split(sep.as_str()).map(|p| J::String(p.to_owned())).collect())
            }
            ("join", 1) => {
                let sep = arg(0).ok_or_else(|| format!("join needs a quoted separator in `{inner}`"))?;
                match &value {
                    J::Array(items) => J::String(items.iter().map(text).collect::<Vec<_>>().join(&sep)),
                    other => J::String(text(other)),
                }
            }
            ("default", 1) => {
                let empty = matches!(&value, J::Null) || value.as_str().is_some_and(str::is_empty);
                if empty { args.first().and_then(|a| parse_literal(a)).unwrap_or(J::Null) } else { value }
            }
            ("replace", 2) => {
                let (Some(from), Some(to)) = (arg(0), arg(1)) else {
                    return Err(format!("replace needs two quoted strings in `{inner}`"));
                };
                J::String(text(&value).replace(&from, &to))
            }
            _ => {
                return Err(format!(
                    "unsupported template function `{fun}` with {} argument(s) in `{inner}`",
                    args.len()
                ));
            }
        };
    }
    Ok(value)
}

/// Go's `fmt` rendering of a value inside `${{ }}`.
fn go_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => format!("[{}]", items.iter().map(go_text).collect::<Vec<_>>().join(" ")),
        serde_json::Value::Null => "<no value>".into(),
        other => other.to_string(),
    }
}

fn parse_literal(s: &str) -> Option<serde_json::Value> {
    let s = s.trim();
    if s.starts_with('"') {
        return serde_json::from_str(s).ok();
    }
    if let Some(inner) = s.strip_prefix('`').and_then(|r| r.strip_suffix('`')) {
        return Some(serde_json::Value::String(inner.to_owned()));
    }
    if let Ok(n) = s.parse::<i64>() {
        return Some(serde_json::Value::from(n));
    }
    match s {
        "true" => Some(serde_json::Value::Bool(true)),
        "false" => Some(serde_json::Value::Bool(false)),
        _ => None,
    }
}

/// Splits on `|` outside quotes.
fn split_pipes(s: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match (quote, c) {
            (None, '|') => out.push(String::new()),
            (None, '"' | '`') => {
                quote = Some(c);
                if let Some(o) = out.last_mut() {
                    o.push(c)
                }
            }
            (Some(q), c) if c == q => {
                quote = None;
                if let Some(o) = out.last_mut() {
                    o.push(c)
                }
            }
            _ => {
                if let Some(o) = out.last_mut() {
                    o.push(c)
                }
            }
        }
    }
    out
}

/// Splits a stage into words, keeping quoted strings whole.
fn split_words(s: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in s.chars() {
        match quote {
            Some(q) => {
                cur.push(c);
                if escaped {
                    escaped = false;
                } else if c == '\\' && q == '"' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            None => {
                if c == '"' || c == '`' {
                    quote = Some(c);
                }
                cur.push(c);
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}
