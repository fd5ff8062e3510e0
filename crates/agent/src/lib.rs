//! Salve's agent: a model in a loop with tools, under budgets, writing a transcript. It knows
//! nothing of CI beyond what its caller gives it: a system prompt, a task, a folder for the file
//! tools, and a [`Host`] with the caller's own tools (run a command in the sandbox, read the
//! failure). Every text that goes to the model passes the caller's redactor first.

pub mod files;
pub mod model;

use std::path::Path;
use std::time::Instant;

use serde_json::{Value, json};

pub use model::{Api, Message, Model, ModelConfig, ModelError, ToolCall, ToolSpec, Usage};

/// The caller's tools.
pub trait Host {
    fn tools(&self) -> Vec<ToolSpec>;
    /// Runs tool `name`; `None` when it is not one of the host's.
    fn call(&self, name: &str, args: &Value) -> Option<Result<String, String>>;
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_turns: u32,
    /// Input plus output tokens over all turns.
    pub max_tokens: u64,
    pub deadline: Instant,
    pub max_cost_usd: Option<f64>,
    /// Prices for the cost estimate, in dollars per million tokens.
    pub usd_per_mtok_in: f64,
    pub usd_per_mtok_out: f64,
}

#[derive(Debug, Clone)]
pub struct Run {
    /// The model's last words (its summary of the change).
    pub summary: String,
    /// The model said it was done (rather than a limit or an error ending the run).
    pub finished: bool,
    /// Why the run ended.
    pub stop: String,
    pub turns: u32,
    pub usage: Usage,
    pub cost_usd: f64,
    /// Every message, as sent (redacted) and received.
    pub transcript: Vec<Value>,
}

/// Tool outputs are cut to this many bytes.
const MAX_TOOL_OUTPUT: usize = 16 * 1024;

fn done_tool() -> ToolSpec {
    ToolSpec {
        name: "done",
        description: "Call when the fix is complete: a one-line summary of the change, for the commit message.",
        parameters: json!({"type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"], "additionalProperties": false}),
    }
}

fn cut(mut s: String) -> String {
    if s.len() > MAX_TOOL_OUTPUT {
        let at = s.floor_char_boundary(MAX_TOOL_OUTPUT);
        s.truncate(at);
        s.push_str("\n... (cut)");
    }
    s
}

/// Runs the loop until the model is done or a limit is reached.
#[allow(clippy::too_many_arguments)]
pub fn run(
    model: &Model,
    system: &str,
    task: &str,
    root: &Path,
    host: &dyn Host,
    limits: &Limits,
    redact: &dyn Fn(&str) -> String,
    say: &dyn Fn(&str),
) -> Run {
    let mut tools = files::specs();
    tools.extend(host.tools());
    tools.push(done_tool());
    let system = redact(system);
    let mut messages = vec![Message::User(redact(task))];
    let mut transcript =
        vec![json!({"role": "system", "content": system}), json!({"role": "user", "content": redact(task)})];
    let mut run = Run {
        summary: String::new(),
        finished: false,
        stop: String::new(),
        turns: 0,
        usage: Usage::default(),
        cost_usd: 0.0,
        transcript: Vec::new(),
    };
    let cost = |u: &Usage| {
        u.input_tokens as f64 * limits.usd_per_mtok_in / 1e6 + u.output_tokens as f64 * limits.usd_per_mtok_out / 1e6
    };
    loop {
        let used = run.usage.input_tokens + run.usage.output_tokens;
        let over = if run.turns >= limits.max_turns {
            Some(format!("the turn limit ({}) was reached", limits.max_turns))
        } else if used >= limits.max_tokens {
            Some(format!("the token budget ({}) was spent ({used})", limits.max_tokens))
        } else if Instant::now() >= limits.deadline {
            Some("the time limit was reached".to_owned())
        } else {
            limits.max_cost_usd.filter(|m| run.cost_usd >= *m).map(|m| format!("the cost budget (${m:.2}) was spent"))
        };
        if let Some(why) = over {
            run.stop = why;
            break;
        }
        run.turns += 1;
        let body = model.body(&system, &messages, &tools);
        let reply = match model.send(&body) {
            Ok(r) => r,
            Err(e) => {
                run.stop = e.to_string();
                break;
            }
        };
        run.usage.input_tokens += reply.usage.input_tokens;
        run.usage.output_tokens += reply.usage.output_tokens;
        run.cost_usd = cost(&run.usage);
        transcript.push(json!({
            "role": "assistant", "turn": run.turns, "content": reply.text,
            "tool_calls": reply.calls.iter().map(|c| json!({"id": c.id, "name": c.name, "arguments": c.arguments})).collect::<Vec<_>>(),
            "usage": {"input_tokens": reply.usage.input_tokens, "output_tokens": reply.usage.output_tokens},
        }));
        if !reply.text.trim().is_empty() {
            say(&format!("  model: {}", reply.text.lines().next().unwrap_or("")));
        }
        messages.push(Message::Assistant { text: reply.text.clone(), calls: reply.calls.clone() });
        if reply.calls.is_empty() {
            run.summary = reply.text.trim().to_owned();
            run.finished = true;
            run.stop = "the model answered without a tool call".into();
            break;
        }
        for call in &reply.calls {
            let args = if call.arguments.is_object() { call.arguments.clone() } else { json!({}) };
            say(&format!("  tool {} {}", call.name, short_args(&args)));
            let output = if call.name == "done" {
                run.summary = args["summary"].as_str().unwrap_or("").trim().to_owned();
                run.finished = true;
                Ok("ok".to_owned())
            } else {
                files::call(root, &call.name, &args)
                    .or_else(|| host.call(&call.name, &args))
                    .unwrap_or_else(|| Err(format!("there is no tool named '{}'", call.name)))
            };
            let text = match output {
                Ok(t) => t,
                Err(e) => format!("error: {e}"),
            };
            let text = redact(&cut(text));
            transcript.push(json!({"role": "tool", "call_id": call.id, "name": call.name, "content": text}));
            messages.push(Message::Tool { call_id: call.id.clone(), name: call.name.clone(), output: text });
        }
        if run.finished {
            run.stop = "the model called done".into();
            break;
        }
    }
    run.transcript = transcript;
    run
}

fn short_args(args: &Value) -> String {
    let s = args.to_string();
    if s.len() > 120 { format!("{}...", &s[..s.floor_char_boundary(120)]) } else { s }
}
