//! Tier 2: an agent. The project's own command (the seed's Codex recipe: a prompt rendered from
//! `selfheal/prompt-template.txt`, `commit-message.txt` read afterwards), else Salve's built-in
//! agent (crates/agent) when a model is configured. The built-in agent starts from the condensed
//! failure report, not a raw log; its tools run in the sandbox without network; everything it
//! sends the model passes a redactor that masks the heal job's secret-looking values.

use std::path::Path;
use std::time::{Duration, Instant};

use salve_agent::{Api, Host, Limits, Model, ModelConfig, ToolSpec};
use serde_json::{Value, json};

use crate::config::{AgentConfig, HealConfig};
use crate::{Attempt, Ci, Failure, Options, template, verify};

pub struct Done {
    /// "external agent" or "agent <model>".
    pub name: String,
    pub summary: String,
    pub model: Option<String>,
    pub tokens: u64,
    pub turns: u32,
    pub cost_usd: f64,
    pub transcript: Value,
}

pub enum Tier2 {
    Skipped(String),
    Failed(String, Value),
    Changed(Done),
}

pub fn run(a: &Attempt<'_>) -> Tier2 {
    let Attempt { opts, config, failure, runner, .. } = a;
    if let Some(command) = opts.agent_command.clone().or_else(|| config.agent.command.clone()) {
        return external(opts, config, failure, runner, &command);
    }
    match model_config(&config.agent, &opts.env) {
        None => Tier2::Skipped(
            "no agent configured: give the heal job a model (SALVE_MODEL_URL for any OpenAI-compatible server, \
             OPENAI_API_KEY or ANTHROPIC_API_KEY, from a secret) or an agent command ([heal.agent] command)"
                .into(),
        ),
        Some(Err(e)) => Tier2::Failed(e, Value::Null),
        Some(Ok(mc)) => builtin(a, mc),
    }
}

fn lookup(env: &[(String, String)], key: &str) -> Option<String> {
    env.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.clone()).filter(|v| !v.is_empty())
}

/// The model to use: `[heal.agent]` and the job's variables (`SALVE_MODEL_URL`, `SALVE_MODEL`,
/// `SALVE_MODEL_KEY`, `SALVE_MODEL_API`, `OPENAI_API_KEY`, `OPENAI_BASE_URL`,
/// `ANTHROPIC_API_KEY`). `None` when nothing says there is one.
pub fn model_config(agent: &AgentConfig, env: &[(String, String)]) -> Option<Result<ModelConfig, String>> {
    let get = |k: &str| lookup(env, k);
    let url = get("SALVE_MODEL_URL").or_else(|| agent.url.clone());
    let (openai, anthropic) = (get("OPENAI_API_KEY"), get("ANTHROPIC_API_KEY"));
    if url.is_none() && openai.is_none() && anthropic.is_none() {
        return None;
    }
    let api = match get("SALVE_MODEL_API").or_else(|| agent.api.clone()) {
        Some(a) => match Api::parse(&a) {
            Some(api) => api,
            None => return Some(Err(format!("'{a}' is not a model API: use chat, responses or anthropic"))),
        },
        None if url.is_none() && openai.is_none() => Api::Anthropic,
        None => Api::Chat,
    };
    let url = url.or_else(|| (api != Api::Anthropic).then(|| get("OPENAI_BASE_URL")).flatten()).unwrap_or_else(|| {
        if api == Api::Anthropic { "https://api.anthropic.com".into() } else { "https://api.openai.com/v1".into() }
    });
    let key = get("SALVE_MODEL_KEY").or(if api == Api::Anthropic { anthropic } else { openai });
    let model = get("SALVE_MODEL")
        .or_else(|| agent.model.clone())
        .unwrap_or_else(|| if api == Api::Anthropic { "claude-sonnet-4-5".into() } else { "gpt-4.1".into() });
    Some(Ok(ModelConfig { api, url, model, key, max_output_tokens: 8192 }))
}

/// Masks values of the job's secret-looking variables (keys, tokens, passwords) in `text`.
pub fn redactor(env: &[(String, String)]) -> impl Fn(&str) -> String + use<> {
    let mut values: Vec<String> =
        env.iter().filter(|(k, v)| v.len() >= 6 && verify::secret_looking(k)).map(|(_, v)| v.clone()).collect();
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    move |text: &str| {
        let mut out = text.to_owned();
        for v in &values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), "[MASKED]");
            }
        }
        out
    }
}

/// The condensed failure report the agent starts from.
pub fn report(failure: &Failure, jobs: &[verify::JobCommands]) -> String {
    let mut r = format!(
        "CI failed on branch '{}' at commit {} (pipeline {}, project {}).\n",
        failure.branch, failure.sha, failure.pipeline_id, failure.project
    );
    for j in &failure.jobs {
        r.push_str(&format!(
            "\nFailed job '{}' (id {}): {} in `{}`.\nThe lines of its log that explain the failure:\n{}\n",
            j.name,
            j.id,
            j.class.words(),
            j.failing_command,
            j.excerpt
        ));
        if let Some(c) = jobs.iter().find(|c| c.name == j.name) {
            r.push_str(&format!("The job's commands (run in the repository root): {}\n", c.commands.join(" && ")));
        }
    }
    r
}

const SYSTEM: &str = "You are Salve's heal agent. A CI pipeline failed; you fix the repository so the failed job's \
commands pass, with the smallest change that fixes the cause. Use the tools: read and search files, edit them, run \
commands (in a sandbox without network). Rules, checked on your diff before anything is pushed: do not delete, skip \
or ignore tests; do not weaken or remove assertions; do not append `|| true` or otherwise hide failures; do not edit \
.semaphore/ or selfheal/. When the fix is complete (run the failing command to check it), call `done` with a one-line \
summary of the change, written as a commit subject.";

struct HealHost<'a> {
    ci: &'a dyn Ci,
    runner: &'a verify::Runner,
    repo: &'a Path,
    report: String,
}

impl Host for HealHost<'_> {
    fn tools(&self) -> Vec<ToolSpec> {
        vec![
            ToolSpec {
                name: "run",
                description: "Run a shell command in the repository root, in the sandbox, without network; answers the exit and the last lines of output.",
                parameters: json!({"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"], "additionalProperties": false}),
            },
            ToolSpec {
                name: "failure_summary",
                description: "The failure report: each failed job, its failure class, failing command and the log lines that explain it.",
                parameters: json!({"type": "object", "properties": {}, "additionalProperties": false}),
            },
            ToolSpec {
                name: "jobs_logs",
                description: "The last lines of a CI job's log (secrets masked).",
                parameters: json!({"type": "object", "properties": {"job_id": {"type": "string"}, "tail": {"type": "integer"}}, "required": ["job_id"], "additionalProperties": false}),
            },
        ]
    }

    fn call(&self, name: &str, args: &Value) -> Option<Result<String, String>> {
        Some(match name {
            "run" => match args["command"].as_str() {
                Some(c) => self.runner.run("agent command", self.repo, &[c.to_owned()], &[], false).map(|ran| {
                    format!("exit: {} ({})\n{}", if ran.passed { "passed" } else { "failed" }, ran.summary, ran.tail)
                }),
                None => Err("`command` (a string) is required".into()),
            },
            "failure_summary" => Ok(self.report.clone()),
            "jobs_logs" => match args["job_id"].as_str() {
                Some(id) => self
                    .ci
                    .job_log(id, args["tail"].as_u64().unwrap_or(200).min(1000) as usize)
                    .map_err(|e| e.to_string()),
                None => Err("`job_id` (a string) is required".into()),
            },
            _ => return None,
        })
    }
}

fn builtin(a: &Attempt<'_>, mc: ModelConfig) -> Tier2 {
    let Attempt { ci, opts, config, failure, jobs, runner, .. } = a;
    let say = opts.say;
    let a = &config.agent;
    say(&format!("tier 2: agent, model {} ({} API)", mc.model, mc.api.as_str()));
    let name = mc.model.clone();
    let model = match Model::new(mc) {
        Ok(m) => m,
        Err(e) => return Tier2::Failed(e.to_string(), Value::Null),
    };
    let limits = Limits {
        max_turns: a.max_turns.unwrap_or(30),
        max_tokens: a.max_tokens.unwrap_or(400_000),
        deadline: Instant::now() + Duration::from_secs(60 * a.max_minutes.unwrap_or(15)),
        max_cost_usd: a.max_cost_usd,
        usd_per_mtok_in: a.usd_per_mtok_in.unwrap_or(0.0),
        usd_per_mtok_out: a.usd_per_mtok_out.unwrap_or(0.0),
    };
    let report = report(failure, jobs);
    let task = format!("{report}\nFix it.");
    let host = HealHost { ci: *ci, runner, repo: &opts.repo, report };
    let redact = redactor(&opts.env);
    let run = salve_agent::run(&model, SYSTEM, &task, &opts.repo, &host, &limits, &redact, say);
    let tokens = run.usage.input_tokens + run.usage.output_tokens;
    let transcript =
        json!({"model": name, "stop": run.stop, "turns": run.turns, "tokens": tokens, "messages": run.transcript});
    if !run.finished {
        return Tier2::Failed(format!("the agent stopped: {}", run.stop), transcript);
    }
    let summary = one_line(&run.summary).unwrap_or_else(|| "fix the failure".into());
    Tier2::Changed(Done {
        name: format!("agent {name}"),
        summary,
        model: Some(name),
        tokens,
        turns: run.turns,
        cost_usd: run.cost_usd,
        transcript,
    })
}

fn one_line(text: &str) -> Option<String> {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    let line = line.strip_prefix("selfheal CI:").map_or(line, str::trim);
    Some(line.chars().take(120).collect())
}

fn external(
    opts: &Options<'_>,
    config: &HealConfig,
    failure: &Failure,
    runner: &verify::Runner,
    command: &str,
) -> Tier2 {
    (opts.say)("tier 2: external agent");
    let template = config.agent.prompt_template.clone().unwrap_or_else(|| "selfheal/prompt-template.txt".into());
    let prompt = match std::fs::read_to_string(opts.repo.join(&template)) {
        Ok(text) => template::prompt(&text, &|k| lookup(&opts.env, k).or_else(|| std::env::var(k).ok())),
        Err(_) => format!(
            "{}\nFix the code so the failed job(s) pass. Do not delete or skip tests, do not weaken assertions, do not \
             edit .semaphore/. When done, write a one-line summary of the fix to commit-message.txt.\n",
            report(failure, &[])
        ),
    };
    let env = vec![("PROMPT".to_owned(), prompt)];
    let minutes = config.agent.max_minutes.unwrap_or(15);
    let agent_runner = runner.with_agent_env(&opts.env, Duration::from_secs(60 * minutes));
    let transcript = match agent_runner.run("agent", &opts.repo, &[command.to_owned()], &env, true) {
        Ok(ran) if ran.passed => json!({"command": command, "log_tail": ran.tail}),
        Ok(ran) => {
            return Tier2::Failed(format!("the agent command failed: {}", ran.summary), json!({"log_tail": ran.tail}));
        }
        Err(e) => return Tier2::Failed(e, Value::Null),
    };
    let path = opts.repo.join("commit-message.txt");
    let message = std::fs::read_to_string(&path).ok().and_then(|m| one_line(&m));
    let _ = std::fs::remove_file(&path);
    Tier2::Changed(Done {
        name: "external agent".into(),
        summary: message.unwrap_or_else(|| "fix the failure".into()),
        model: None,
        tokens: 0,
        turns: 0,
        cost_usd: 0.0,
        transcript,
    })
}
