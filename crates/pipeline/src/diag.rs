//! Diagnostics: what is wrong, where (file, line, column, YAML path) and how to fix it.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// A position in a source file: 1-based line and column (columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// A JSON pointer into the document, as Semaphore writes it: `#/blocks/0/task/jobs/1`.
    pub path: String,
    pub severity: Severity,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl Diagnostic {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// A path into the YAML document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct YPath(Vec<String>);

impl YPath {
    pub fn root() -> YPath {
        YPath(Vec::new())
    }
    pub fn key(&self, k: &str) -> YPath {
        let mut p = self.0.clone();
        p.push(k.to_owned());
        YPath(p)
    }
    pub fn idx(&self, i: usize) -> YPath {
        self.key(&i.to_string())
    }
    pub fn pointer(&self) -> String {
        let mut s = String::from("#");
        for seg in &self.0 {
            s.push('/');
            s.push_str(&seg.replace('~', "~0").replace('/', "~1"));
        }
        s
    }
    pub fn segments(&self) -> &[String] {
        &self.0
    }
    /// The last key name, for messages (`jobs`, `commands`...).
    pub fn last_key(&self) -> &str {
        self.0.iter().rev().find(|s| s.parse::<usize>().is_err()).map_or("document", String::as_str)
    }
}

/// Collects diagnostics for one file.
#[derive(Debug, Default)]
pub struct Sink {
    pub file: String,
    pub diags: Vec<Diagnostic>,
}

impl Sink {
    pub fn new(file: &str) -> Sink {
        Sink { file: file.to_owned(), diags: Vec::new() }
    }
    pub fn error(&mut self, pos: Pos, path: &YPath, message: impl Into<String>) {
        self.push(Severity::Error, pos, path, message.into());
    }
    pub fn warning(&mut self, pos: Pos, path: &YPath, message: impl Into<String>) {
        self.push(Severity::Warning, pos, path, message.into());
    }
    fn push(&mut self, severity: Severity, pos: Pos, path: &YPath, message: String) {
        self.diags.push(Diagnostic {
            file: self.file.clone(),
            line: pos.line,
            column: pos.column,
            path: path.pointer(),
            severity,
            message,
        });
    }
}

/// Renders a diagnostic for a terminal, with the offending source line and a caret under the
/// column (`source` is the file's text, when it could be read).
pub fn render(d: &Diagnostic, source: Option<&str>) -> String {
    let label = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let mut out = format!("{label}: {}\n  --> {}:{}:{} (at {})\n", d.message, d.file, d.line, d.column, d.path);
    if let Some(line) = source.and_then(|s| s.lines().nth(d.line.saturating_sub(1))) {
        let line: String = line.chars().take(200).collect();
        let gutter = d.line.to_string();
        let pad = " ".repeat(gutter.len());
        let caret_at = line
            .chars()
            .take(d.column.saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect::<String>();
        out.push_str(&format!("{pad} |\n{gutter} | {line}\n{pad} | {caret_at}^\n"));
    }
    out
}
