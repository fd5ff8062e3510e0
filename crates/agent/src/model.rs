//! Model clients for three wire formats, over one blocking HTTP client: OpenAI-compatible chat
//! completions with tools (OpenAI, Ollama, vLLM, llama.cpp's server), OpenAI's Responses API,
//! and Anthropic's Messages API. The agent speaks [`Message`]s; each client translates.

use serde_json::{Value, json};

/// Which wire format a model endpoint speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Chat,
    Responses,
    Anthropic,
}

impl Api {
    pub fn parse(s: &str) -> Option<Api> {
        match s {
            "chat" | "chat_completions" | "openai" => Some(Api::Chat),
            "responses" => Some(Api::Responses),
            "anthropic" | "messages" => Some(Api::Anthropic),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Api::Chat => "chat",
            Api::Responses => "responses",
            Api::Anthropic => "anthropic",
        }
    }
}

/// Where the model is and how to call it.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub api: Api,
    /// The API's base URL, up to the version (`https://api.openai.com/v1`,
    /// `http://localhost:11434/v1`, `https://api.anthropic.com`).
    pub url: String,
    pub model: String,
    /// Sent as a header, never logged.
    pub key: Option<String>,
    /// Most tokens a reply may have (Anthropic requires it).
    pub max_output_tokens: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    User(String),
    Assistant { text: String, calls: Vec<ToolCall> },
    Tool { call_id: String, name: String, output: String },
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub text: String,
    pub calls: Vec<ToolCall>,
    pub usage: Usage,
}

/// A tool the model may call: a name, what it does, its arguments' JSON schema.
#[derive(Debug, Clone)]
pub struct ToolSpec {
    pub name: &'static str,
    pub description: &'static str,
    pub parameters: Value,
}

pub struct Model {
    config: ModelConfig,
    http: reqwest::blocking::Client,
}

impl Model {
    pub fn new(config: ModelConfig) -> Result<Model, ModelError> {
        let http = reqwest::blocking::Client::builder()
            .timeout(std::time::Duration::from_secs(300))
            .build()
            .map_err(|e| ModelError::Client(e.to_string()))?;
        Ok(Model { config, http })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The request body for this API (what is sent; the transcript keeps it too).
    pub fn body(&self, system: &str, messages: &[Message], tools: &[ToolSpec]) -> Value {
        let c = &self.config;
        match c.api {
            Api::Chat => {
                let mut msgs = vec![json!({"role": "system", "content": system})];
                for m in messages {
                    msgs.push(match m {
                        Message::User(t) => json!({"role": "user", "content": t}),
                        Message::Assistant { text, calls } if calls.is_empty() => {
                            json!({"role": "assistant", "content": text})
                        }
                        Message::Assistant { text, calls } => json!({
                            "role": "assistant",
                            "content": if text.is_empty() { Value::Null } else { json!(text) },
                            "tool_calls": calls.iter().map(|k| json!({
                                "id": k.id, "type": "function",
                                "function": {"name": k.name, "arguments": k.arguments.to_string()},
                            })).collect::<Vec<_>>(),
                        }),
                        Message::Tool { call_id, output, .. } => {
                            json!({"role": "tool", "tool_call_id": call_id, "content": output})
                        }
                    });
                }
                // OpenAI's own API wants `max_completion_tokens` (its reasoning models refuse
                // `max_tokens`); other OpenAI-compatible servers know `max_tokens`.
                let limit = if c.url.contains("api.openai.com") { "max_completion_tokens" } else { "max_tokens" };
                let mut body = json!({
                    "model": c.model, "messages": msgs, "tool_choice": "auto",
                    "tools": tools.iter().map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}})).collect::<Vec<_>>(),
                });
                body[limit] = json!(c.max_output_tokens);
                body
            }
            Api::Responses => {
                let mut input = Vec::new();
                for m in messages {
                    match m {
                        Message::User(t) => input.push(json!({"role": "user", "content": t})),
                        Message::Assistant { text, calls } => {
                            if !text.is_empty() {
                                input.push(json!({"role": "assistant", "content": text}));
                            }
                            for k in calls {
                                input.push(json!({"type": "function_call", "call_id": k.id, "name": k.name, "arguments": k.arguments.to_string()}));
                            }
                        }
                        Message::Tool { call_id, output, .. } => {
                            input.push(json!({"type": "function_call_output", "call_id": call_id, "output": output}))
                        }
                    }
                }
                json!({
                    "model": c.model, "instructions": system, "input": input, "store": false,
                    "max_output_tokens": c.max_output_tokens,
                    "tools": tools.iter().map(|t| json!({"type": "function", "name": t.name, "description": t.description, "parameters": t.parameters})).collect::<Vec<_>>(),
                })
            }
            Api::Anthropic => {
                let mut msgs: Vec<Value> = Vec::new();
                for m in messages {
                    let (role, block) = match m {
                        Message::User(t) => ("user", vec![json!({"type": "text", "text": t})]),
                        Message::Assistant { text, calls } => {
                            let mut blocks = Vec::new();
                            if !text.is_empty() {
                                blocks.push(json!({"type": "text", "text": text}));
                            }
                            for k in calls {
                                blocks.push(
                                    json!({"type": "tool_use", "id": k.id, "name": k.name, "input": k.arguments}),
                                );
                            }
                            ("assistant", blocks)
                        }
                        Message::Tool { call_id, output, .. } => {
                            ("user", vec![json!({"type": "tool_result", "tool_use_id": call_id, "content": output})])
                        }
                    };
                    // Consecutive blocks of one role go in one message (tool results after a turn).
                    match msgs.last_mut() {
                        Some(last) if last["role"] == role => {
                            if let Some(a) = last["content"].as_array_mut() {
                                a.extend(block);
                            }
                        }
                        _ => msgs.push(json!({"role": role, "content": block})),
                    }
                }
                json!({
                    "model": c.model, "system": system, "messages": msgs, "max_tokens": c.max_output_tokens,
                    "tools": tools.iter().map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters})).collect::<Vec<_>>(),
                })
            }
        }
    }

    /// One turn: sends `body` (from [`Model::body`]) and reads the reply.
    pub fn send(&self, body: &Value) -> Result<Reply, ModelError> {
        let c = &self.config;
        let base = c.url.trim_end_matches('/');
        let url = match c.api {
            Api::Chat => format!("{base}/chat/completions"),
            Api::Responses => format!("{base}/responses"),
            Api::Anthropic if base.ends_with("/v1") => format!("{base}/messages"),
            Api::Anthropic => format!("{base}/v1/messages"),
        };
        let mut request = self.http.post(&url).json(body);
        request = match (c.api, &c.key) {
            (Api::Anthropic, Some(k)) => request.header("x-api-key", k).header("anthropic-version", "2023-06-01"),
            (Api::Anthropic, None) => request.header("anthropic-version", "2023-06-01"),
            (_, Some(k)) => request.bearer_auth(k),
            (_, None) => request,
        };
        let response =
            request.send().map_err(|e| ModelError::Unreachable { url: url.clone(), message: without_url(&e) })?;
        let status = response.status();
        let text = response.text().map_err(|e| ModelError::BrokenOff(without_url(&e)))?;
        if !status.is_success() {
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let message =
                v["error"]["message"].as_str().map_or_else(|| text.chars().take(300).collect(), str::to_owned);
            return Err(ModelError::Refused { url, status: status.as_u16(), message });
        }
        let v: Value = serde_json::from_str(&text).map_err(|e| ModelError::NotJson(e.to_string()))?;
        parse_reply(c.api, &v)
    }
}

/// Why a turn with the model failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("cannot start an HTTP client: {0}")]
    Client(String),
    #[error("cannot reach the model at {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("the model's reply broke off: {0}")]
    BrokenOff(String),
    /// The model's API answered with an error (a bad key, a rate limit, an unknown model).
    #[error("the model at {url} said {status}: {message}")]
    Refused { url: String, status: u16, message: String },
    #[error("the model's reply is not JSON: {0}")]
    NotJson(String),
    /// The reply is JSON but not of the API's shape.
    #[error("{0}")]
    Shape(String),
}

fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), "the model");
    }
    s
}

fn arguments(v: &Value) -> Value {
    match v {
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| json!({"_unparsed": s})),
        Value::Null => json!({}),
        other => other.clone(),
    }
}

/// Reads a reply of `api`'s shape.
pub fn parse_reply(api: Api, v: &Value) -> Result<Reply, ModelError> {
    let u = |a: &str, b: &str| Usage {
        input_tokens: v["usage"][a].as_u64().unwrap_or(0),
        output_tokens: v["usage"][b].as_u64().unwrap_or(0),
    };
    match api {
        Api::Chat => {
            let m = &v["choices"][0]["message"];
            if m.is_null() {
                return Err(ModelError::Shape("the model's reply has no choices[0].message".into()));
            }
            let calls = m["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
                .map(|(i, k)| ToolCall {
                    id: k["id"].as_str().map_or_else(|| format!("call_{i}"), str::to_owned),
                    name: k["function"]["name"].as_str().unwrap_or("").to_owned(),
                    arguments: arguments(&k["function"]["arguments"]),
                })
                .collect();
            Ok(Reply {
                text: m["content"].as_str().unwrap_or("").to_owned(),
                calls,
                usage: u("prompt_tokens", "completion_tokens"),
            })
        }
        Api::Responses => {
            let mut text = String::new();
            let mut calls = Vec::new();
            for item in v["output"].as_array().into_iter().flatten() {
                match item["type"].as_str() {
                    Some("message") => {
                        for c in item["content"].as_array().into_iter().flatten() {
                            text.push_str(c["text"].as_str().unwrap_or(""));
                        }
                    }
                    Some("function_call") => calls.push(ToolCall {
                        id: item["call_id"].as_str().unwrap_or("").to_owned(),
                        name: item["name"].as_str().unwrap_or("").to_owned(),
                        arguments: arguments(&item["arguments"]),
                    }),
                    _ => {}
                }
            }
            Ok(Reply { text, calls, usage: u("input_tokens", "output_tokens") })
        }
        Api::Anthropic => {
            let mut text = String::new();
            let mut calls = Vec::new();
            for block in v["content"].as_array().into_iter().flatten() {
                match block["type"].as_str() {
                    Some("text") => text.push_str(block["text"].as_str().unwrap_or("")),
                    Some("tool_use") => calls.push(ToolCall {
                        id: block["id"].as_str().unwrap_or("").to_owned(),
                        name: block["name"].as_str().unwrap_or("").to_owned(),
                        arguments: arguments(&block["input"]),
                    }),
                    _ => {}
                }
            }
            Ok(Reply { text, calls, usage: u("input_tokens", "output_tokens") })
        }
    }
}
