//! Tier 1: deterministic fixers, as data. A recipe names the failing command or log line it
//! answers and the commands that fix it (see `fixers.toml`, the built-ins).

use regex::Regex;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub name: String,
    /// A regular expression the failing command must match.
    #[serde(default)]
    pub when_command: Option<String>,
    /// A regular expression one line of the failure's excerpt must match (`(?m)` is implied).
    #[serde(default)]
    pub when_log: Option<String>,
    pub run: Vec<String>,
    /// Let the commands reach the network, as CI's jobs do (the default: fixers build the
    /// project, which may fetch its dependencies); `false` cuts them off.
    #[serde(default = "yes")]
    pub network: bool,
    /// Glob patterns (from the repository's root) of new files the recipe is meant to create
    /// (`go.sum`, a lockfile): only these join its change. Build output never does.
    #[serde(default)]
    pub creates: Vec<String>,
    /// One of Salve's own recipes (formatters and linters' fix modes, which never change what
    /// a test expects), not a project's.
    #[serde(skip)]
    pub builtin: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    fixer: Vec<Recipe>,
}

/// The built-in recipes.
pub fn builtin() -> Vec<Recipe> {
    let mut recipes = toml::from_str::<File>(include_str!("fixers.toml")).map(|f| f.fixer).unwrap_or_default();
    for r in &mut recipes {
        r.builtin = true;
    }
    recipes
}

/// Checks user recipes: a name, something to match, commands, valid expressions.
pub fn validate(recipes: &[Recipe]) -> Result<(), String> {
    for r in recipes {
        let at = format!("[[heal.fixer]] '{}'", r.name);
        if r.name.trim().is_empty() {
            return Err("a [[heal.fixer]] needs a name".into());
        }
        if r.when_command.is_none() && r.when_log.is_none() {
            return Err(format!("{at} needs when_command or when_log (or both)"));
        }
        if r.run.is_empty() || r.run.iter().any(|c| c.trim().is_empty()) {
            return Err(format!("{at} needs run = [\"command\", ...] with no empty command"));
        }
        for re in r.when_command.iter().chain(&r.when_log) {
            Regex::new(re).map_err(|e| format!("{at}: '{re}' is not a regular expression: {e}"))?;
        }
        for g in &r.creates {
            globset::Glob::new(g).map_err(|e| format!("{at}: creates '{g}' is not a glob pattern: {e}"))?;
        }
    }
    Ok(())
}

/// The recipes that answer a failure: its failing command and excerpt text.
pub fn matching<'r>(recipes: &'r [Recipe], command: &str, excerpt: &str) -> Vec<&'r Recipe> {
    let matches = |re: &Option<String>, text: &str, multi: bool| match re {
        None => true,
        Some(re) => {
            let re = if multi { format!("(?m){re}") } else { re.clone() };
            Regex::new(&re).is_ok_and(|r| r.is_match(text))
        }
    };
    recipes
        .iter()
        .filter(|r| (r.when_command.is_some() || r.when_log.is_some()) && !r.run.is_empty())
        .filter(|r| matches(&r.when_command, command, false) && matches(&r.when_log, excerpt, true))
        .collect()
}

/// Folders and files that are build output or tool caches, never part of a fix.
const BUILD_OUTPUT: &[&str] = &[
    "target",
    "node_modules",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".tox",
    ".venv",
    "venv",
    "dist",
    "build",
    ".gradle",
    ".next",
    "coverage",
    ".cache",
    "vendor/bundle",
    "_build",
];

/// Whether a new file is build output (by its folders or its kind).
pub fn build_output(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    let dirs = &parts[..parts.len().saturating_sub(1)];
    let in_output = dirs.iter().enumerate().any(|(i, d)| {
        BUILD_OUTPUT.contains(d)
            || (i + 1 < dirs.len() && BUILD_OUTPUT.contains(&format!("{d}/{}", dirs[i + 1]).as_str()))
    });
    let kind = [".pyc", ".pyo", ".o", ".obj", ".a", ".so", ".class", ".rlib", ".rmeta", ".d", ".exe", ".dll"]
        .iter()
        .any(|ext| path.ends_with(ext));
    in_output || kind
}

/// The new untracked files a change may keep: for recipes, those one of them says it creates;
/// for an agent (`recipes` empty), every new file that is not build output.
pub fn kept_new_files(new: &[String], recipes: &[&Recipe]) -> Vec<String> {
    if recipes.is_empty() {
        return new.iter().filter(|p| !build_output(p)).cloned().collect();
    }
    let mut set = globset::GlobSetBuilder::new();
    for g in recipes.iter().flat_map(|r| &r.creates) {
        if let Ok(glob) = globset::GlobBuilder::new(g).literal_separator(true).build() {
            set.add(glob);
        }
    }
    let set = set.build().unwrap_or_else(|_| globset::GlobSet::empty());
    new.iter().filter(|p| set.is_match(p.as_str()) && !build_output(p)).cloned().collect()
}
