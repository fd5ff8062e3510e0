//! The `[heal]` section of the repository's `salve.toml`: limits, guards, fixers, the agent.
//! Every key is optional; unknown keys are errors.

use serde::Deserialize;

use crate::fixers::Recipe;
use crate::guards::Policy;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealConfig {
    /// Heals started per branch in 24 hours (default 3).
    pub max_attempts_per_day: Option<u32>,
    /// Open heal pull requests per project (default 5).
    pub max_open_prs: Option<u32>,
    /// Lines added plus removed (default 400).
    pub max_diff_lines: Option<usize>,
    /// Globs of paths no fix may touch.
    #[serde(default)]
    pub protected_paths: Vec<String>,
    /// Let fixes edit `.semaphore/` and `selfheal/` (default false).
    #[serde(default)]
    pub allow_ci_edits: bool,
    /// Use Salve's built-in fixers (default true).
    pub builtin_fixers: Option<bool>,
    /// Rerun a test failure or an unknown one once, unchanged, before trying to fix it
    /// (default true): a pass is a flaky failure, reported, with no change.
    pub rerun_first: Option<bool>,
    /// Recipes of this project, tried before the built-ins.
    #[serde(default, rename = "fixer")]
    pub fixers: Vec<Recipe>,
    #[serde(default)]
    pub agent: AgentConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// An external agent command (`codex exec ... "$PROMPT"`); the prompt is in `$PROMPT`.
    pub command: Option<String>,
    /// The prompt template for the external command (default `selfheal/prompt-template.txt`).
    pub prompt_template: Option<String>,
    /// Wall time of the agent tier, in minutes (default 15).
    pub max_minutes: Option<u64>,
    /// The built-in agent's model API: chat (OpenAI-compatible chat completions, the default),
    /// responses (OpenAI's Responses API) or anthropic. `SALVE_MODEL_API` wins.
    pub api: Option<String>,
    /// The API's base URL (`http://localhost:11434/v1` for Ollama). `SALVE_MODEL_URL` wins.
    pub url: Option<String>,
    /// The model's name. `SALVE_MODEL` wins.
    pub model: Option<String>,
    /// Model turns per heal (default 30).
    pub max_turns: Option<u32>,
    /// Input plus output tokens per heal (default 400000).
    pub max_tokens: Option<u64>,
    /// Dollars per heal, estimated with the two prices below.
    pub max_cost_usd: Option<f64>,
    pub usd_per_mtok_in: Option<f64>,
    pub usd_per_mtok_out: Option<f64>,
}

impl HealConfig {
    /// Reads `[heal]` from `salve.toml` in `dir`; none there: the defaults.
    pub fn load(dir: &std::path::Path) -> Result<HealConfig, String> {
        let path = dir.join("salve.toml");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HealConfig::default()),
            Err(e) => return Err(format!("cannot read salve.toml: {e}")),
        };
        let mut table: toml::Table = toml::from_str(&text).map_err(|e| format!("salve.toml is not valid TOML: {e}"))?;
        let Some(heal) = table.remove("heal") else { return Ok(HealConfig::default()) };
        let config: HealConfig = heal.try_into().map_err(|e| format!("salve.toml, [heal]: {e}"))?;
        crate::fixers::validate(&config.fixers).map_err(|e| format!("salve.toml: {e}"))?;
        Ok(config)
    }

    pub fn policy(&self) -> Policy {
        Policy {
            max_diff_lines: self.max_diff_lines.unwrap_or(Policy::default().max_diff_lines),
            protected: self.protected_paths.clone(),
            allow_ci_edits: self.allow_ci_edits,
            frozen_expectations: false,
        }
    }

    /// The project's recipes, then the built-ins (unless switched off).
    pub fn recipes(&self) -> Vec<Recipe> {
        let mut all = self.fixers.clone();
        if self.builtin_fixers.unwrap_or(true) {
            all.extend(crate::fixers::builtin());
        }
        all
    }
}
