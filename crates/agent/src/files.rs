//! The agent's file tools, confined to one folder: list, read, search, write, replace. Paths are
//! relative; `..`, absolute paths, `.git` and links that lead out are refused.

use std::path::{Component, Path, PathBuf};

use serde_json::{Value, json};

use crate::model::ToolSpec;

const SKIP_DIRS: &[&str] = &[".git", "target", "node_modules", ".venv", "__pycache__", "dist", "build"];
const MAX_READ: usize = 64 * 1024;

pub fn specs() -> Vec<ToolSpec> {
    let path = json!({"type": "string", "description": "A path relative to the repository root"});
    vec![
        ToolSpec {
            name: "list_files",
            description: "List the repository's files under a folder (default: the root), recursively; build output and .git are left out.",
            parameters: json!({"type": "object", "properties": {"path": path}, "additionalProperties": false}),
        },
        ToolSpec {
            name: "read_file",
            description: "Read a text file with line numbers; optionally only lines start_line..end_line (1-based, inclusive).",
            parameters: json!({"type": "object", "properties": {"path": path, "start_line": {"type": "integer"}, "end_line": {"type": "integer"}}, "required": ["path"], "additionalProperties": false}),
        },
        ToolSpec {
            name: "search",
            description: "Search the repository's text files for a regular expression; answers file:line: text.",
            parameters: json!({"type": "object", "properties": {"pattern": {"type": "string"}, "path": path}, "required": ["pattern"], "additionalProperties": false}),
        },
        ToolSpec {
            name: "write_file",
            description: "Create or overwrite a text file with the given content.",
            parameters: json!({"type": "object", "properties": {"path": path, "content": {"type": "string"}}, "required": ["path", "content"], "additionalProperties": false}),
        },
        ToolSpec {
            name: "replace_in_file",
            description: "Replace the one occurrence of `old` in a file with `new` (old must occur exactly once; include enough context).",
            parameters: json!({"type": "object", "properties": {"path": path, "old": {"type": "string"}, "new": {"type": "string"}}, "required": ["path", "old", "new"], "additionalProperties": false}),
        },
    ]
}

/// Runs file tool `name`; `None` when it is not one.
pub fn call(root: &Path, name: &str, args: &Value) -> Option<Result<String, String>> {
    let arg = |k: &str| args[k].as_str().ok_or_else(|| format!("`{k}` (a string) is required"));
    Some(match name {
        "list_files" => resolve(root, args["path"].as_str().unwrap_or(".")).map(|p| list(root, &p)),
        "read_file" => arg("path")
            .and_then(|p| resolve(root, p))
            .and_then(|p| read(&p, args["start_line"].as_u64(), args["end_line"].as_u64())),
        "search" => arg("pattern").and_then(|pat| {
            let base = resolve(root, args["path"].as_str().unwrap_or("."))?;
            search(root, &base, pat)
        }),
        "write_file" => arg("path").and_then(|p| resolve(root, p)).and_then(|p| {
            let content = arg("content")?;
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
            }
            std::fs::write(&p, content).map_err(|e| e.to_string())?;
            Ok(format!("wrote {} bytes", content.len()))
        }),
        "replace_in_file" => arg("path").and_then(|p| resolve(root, p)).and_then(|p| {
            let (old, new) = (arg("old")?, arg("new")?);
            let text = std::fs::read_to_string(&p).map_err(|e| format!("cannot read it: {e}"))?;
            match text.matches(old).count() {
                1 => {
                    std::fs::write(&p, text.replacen(old, new, 1)).map_err(|e| e.to_string())?;
                    Ok("replaced".into())
                }
                0 => Err("`old` does not occur in the file: read it again and copy the text exactly".into()),
                n => Err(format!("`old` occurs {n} times: include more context so it occurs once")),
            }
        }),
        _ => return None,
    })
}

/// `rel` inside `root`, or why not.
pub fn resolve(root: &Path, rel: &str) -> Result<PathBuf, String> {
    let p = Path::new(rel);
    if p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir | Component::Prefix(_))) {
        return Err(format!("'{rel}' is outside the repository: use a path relative to its root, without '..'"));
    }
    if p.components().any(|c| c.as_os_str() == ".git") {
        return Err("the .git folder is not for tools".into());
    }
    let full = root.join(p);
    // A link anywhere on the way must stay inside.
    let root_real = root.canonicalize().map_err(|e| e.to_string())?;
    let mut existing = full.clone();
    while !existing.exists() {
        if !existing.pop() {
            break;
        }
    }
    let real = existing.canonicalize().map_err(|e| e.to_string())?;
    if !real.starts_with(&root_real) {
        return Err(format!("'{rel}' leads out of the repository through a link"));
    }
    Ok(full)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>, limit: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        if out.len() >= limit {
            return;
        }
        let name = e.file_name();
        let Ok(kind) = e.file_type() else { continue };
        if kind.is_dir() {
            if !SKIP_DIRS.contains(&name.to_string_lossy().as_ref()) {
                walk(&e.path(), out, limit);
            }
        } else if kind.is_file() {
            out.push(e.path());
        }
    }
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).to_string_lossy().into_owned()
}

fn list(root: &Path, dir: &Path) -> String {
    let mut files = Vec::new();
    walk(dir, &mut files, 1000);
    let mut out: Vec<String> = files.iter().map(|f| rel(root, f)).collect();
    if out.len() >= 1000 {
        out.push("(more files not listed: list a subfolder)".into());
    }
    out.join("\n")
}

fn read(p: &Path, start: Option<u64>, end: Option<u64>) -> Result<String, String> {
    let bytes = std::fs::read(p).map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.contains(&0) {
        return Err("a binary file".into());
    }
    let text = String::from_utf8_lossy(&bytes);
    let (start, end) = (start.unwrap_or(1).max(1) as usize, end.map_or(usize::MAX, |e| e as usize));
    let mut out = String::new();
    for (i, line) in text.lines().enumerate().skip(start - 1).take(end.saturating_sub(start - 1)) {
        if out.len() > MAX_READ {
            out.push_str(&format!("... (cut at {MAX_READ} bytes: read from line {} on)\n", i + 1));
            break;
        }
        out.push_str(&format!("{:>5} | {line}\n", i + 1));
    }
    Ok(out)
}

fn search(root: &Path, base: &Path, pattern: &str) -> Result<String, String> {
    let re = regex::Regex::new(pattern).map_err(|e| format!("not a regular expression: {e}"))?;
    let mut files = Vec::new();
    if base.is_file() {
        files.push(base.to_owned());
    } else {
        walk(base, &mut files, 20_000);
    }
    let mut hits = Vec::new();
    for f in files {
        let Ok(bytes) = std::fs::read(&f) else { continue };
        if bytes.len() > 2 << 20 || bytes.contains(&0) {
            continue;
        }
        for (i, line) in String::from_utf8_lossy(&bytes).lines().enumerate() {
            if re.is_match(line) {
                hits.push(format!("{}:{}: {}", rel(root, &f), i + 1, line.chars().take(300).collect::<String>()));
                if hits.len() >= 200 {
                    hits.push("(200 matches shown: narrow the pattern or the path)".into());
                    return Ok(hits.join("\n"));
                }
            }
        }
    }
    Ok(if hits.is_empty() { "no matches".into() } else { hits.join("\n") })
}
