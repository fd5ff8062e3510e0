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
    toml::from_str::<File>(include_str!("fixers.toml")).map(|f| f.fixer).unwrap_or_default()
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
