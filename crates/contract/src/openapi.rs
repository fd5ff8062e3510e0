//! The REST API's routes as data, and the OpenAPI 3.1 document made from them and the types in
//! [`crate::api`]. The server serves [`document`]; its in-crate test calls every route here
//! through its router, and CI checks that the checked-in `openapi.json` is this document
//! (`cargo run -- openapi > crates/server/src/openapi.json` writes it again).

use schemars::{JsonSchema, Schema, SchemaGenerator, generate::SchemaSettings};
use serde_json::{Map, Value, json};

use crate::api;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Post => "post",
            Method::Delete => "delete",
        }
    }
}

/// Where a parameter goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum In {
    Path,
    Query,
}

#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    pub place: In,
    pub required: bool,
    pub integer: bool,
    pub description: &'static str,
}

const fn path(name: &'static str, description: &'static str) -> Param {
    Param { name, place: In::Path, required: true, integer: false, description }
}

const fn query(name: &'static str, required: bool, integer: bool, description: &'static str) -> Param {
    Param { name, place: In::Query, required, integer, description }
}

type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

fn of<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// What a route answers when it succeeds.
#[derive(Clone, Copy)]
pub enum Answer {
    Json(u16, SchemaFn),
    /// Server-Sent Events.
    Events,
}

/// One call of the API.
#[derive(Clone, Copy)]
pub struct Route {
    pub method: Method,
    /// The path, with `{name}` parameters.
    pub path: &'static str,
    pub summary: &'static str,
    pub tag: &'static str,
    /// Answered without a token.
    pub open: bool,
    pub params: &'static [Param],
    pub body: Option<SchemaFn>,
    /// The body is raw bytes (`application/octet-stream`), not JSON.
    pub raw_body: bool,
    pub answer: Answer,
    /// Error statuses besides 401 (and 400 for calls that take input).
    pub errors: &'static [u16],
}

const fn route(method: Method, path: &'static str, summary: &'static str, tag: &'static str, answer: Answer) -> Route {
    Route { method, path, summary, tag, open: false, params: &[], body: None, raw_body: false, answer, errors: &[] }
}

const fn json(status: u16, schema: SchemaFn) -> Answer {
    Answer::Json(status, schema)
}

use Method::{Delete, Get, Post};

const ID: &[Param] = &[path("id", "")];
const PULL: &[Param] = &[path("project", "Project name"), path("number", "Pull request number")];
const NOT_FOUND: &[u16] = &[404];
const NOT_FOUND_OR_CONFLICT: &[u16] = &[404, 409];

/// Every route of `/api/v1`.
pub const ROUTES: &[Route] = &[
    Route {
        open: true,
        ..route(Get, "/api/v1/health", "Health check (no token needed)", "meta", json(200, of::<api::Health>))
    },
    Route {
        open: true,
        ..route(Get, "/api/v1/openapi.json", "This document (no token needed)", "meta", json(200, of::<Value>))
    },
    route(Get, "/api/v1/projects", "List projects", "projects", json(200, of::<api::ProjectList>)),
    Route {
        body: Some(of::<api::NewProject>),
        errors: &[409],
        ..route(
            Post,
            "/api/v1/projects",
            "Create a project: hosted (no repo_url) or external (webhooks)",
            "projects",
            json(201, of::<api::Project>),
        )
    },
    Route {
        params: &[path("name", "Project name or id")],
        errors: NOT_FOUND,
        ..route(Get, "/api/v1/projects/{name}", "Describe a project", "projects", json(200, of::<api::Project>))
    },
    Route {
        params: &[
            query("project", true, false, ""),
            query("branch", false, false, ""),
            query("limit", false, true, ""),
        ],
        errors: NOT_FOUND,
        ..route(
            Get,
            "/api/v1/workflows",
            "List a project's workflows, newest first",
            "workflows",
            json(200, of::<api::WorkflowList>),
        )
    },
    Route {
        body: Some(of::<api::RunWorkflow>),
        errors: &[404, 422],
        ..route(
            Post,
            "/api/v1/workflows",
            "Run a workflow at a branch or tag head (or a commit of it)",
            "workflows",
            json(201, of::<api::Started>),
        )
    },
    Route {
        params: ID,
        errors: NOT_FOUND,
        ..route(
            Get,
            "/api/v1/workflows/{id}",
            "Describe a workflow with its pipelines",
            "workflows",
            json(200, of::<api::Workflow>),
        )
    },
    Route {
        params: ID,
        errors: &[404, 422],
        ..route(
            Post,
            "/api/v1/workflows/{id}/rerun",
            "Run a workflow again at the same commit",
            "workflows",
            json(201, of::<api::Started>),
        )
    },
    Route {
        params: &[
            query("project", false, false, "Project name"),
            query("workflow_id", false, false, ""),
            query("limit", false, true, ""),
        ],
        errors: NOT_FOUND,
        ..route(
            Get,
            "/api/v1/pipelines",
            "List pipelines of a project (newest first) or of a workflow",
            "pipelines",
            json(200, of::<api::PipelineList>),
        )
    },
    Route {
        params: ID,
        errors: NOT_FOUND,
        ..route(
            Get,
            "/api/v1/pipelines/{id}",
            "Describe a pipeline with its blocks and jobs",
            "pipelines",
            json(200, of::<api::Pipeline>),
        )
    },
    Route {
        params: ID,
        errors: NOT_FOUND,
        ..route(
            Post,
            "/api/v1/pipelines/{id}/stop",
            "Stop a running pipeline or cancel a queued one",
            "pipelines",
            json(200, of::<api::Stopping>),
        )
    },
    Route {
        params: ID,
        body: Some(of::<api::Promote>),
        errors: &[404, 409, 422],
        ..route(
            Post,
            "/api/v1/pipelines/{id}/promote",
            "Promote a done pipeline to a target (SEMAPHORE.md 6.3 rules)",
            "pipelines",
            json(201, of::<api::Promoted>),
        )
    },
    Route {
        params: ID,
        errors: NOT_FOUND_OR_CONFLICT,
        ..route(
            Get,
            "/api/v1/pipelines/{id}/test-results",
            "The test reports every job of a done pipeline published",
            "pipelines",
            json(200, of::<api::PipelineTestResults>),
        )
    },
    Route {
        params: ID,
        errors: NOT_FOUND,
        ..route(Get, "/api/v1/jobs/{id}", "Describe a job with its command records", "jobs", json(200, of::<api::Job>))
    },
    Route {
        params: &[path("id", "Job id")],
        errors: NOT_FOUND,
        ..route(
            Post,
            "/api/v1/jobs/{id}/stop",
            "Stop one running job; the rest of its pipeline goes on and the job's block ends stopped",
            "jobs",
            json(200, of::<api::Stopping>),
        )
    },
    Route {
        params: &[
            path("id", ""),
            query("from", false, true, "The first line (default 0)"),
            query("limit", false, true, "At most this many lines (default 1000, at most 10,000)"),
            query("tail", false, true, "The last N lines (at most 10,000) instead of from/limit"),
        ],
        errors: NOT_FOUND,
        ..route(Get, "/api/v1/jobs/{id}/logs", "A window of a job's log lines", "jobs", json(200, of::<api::LogWindow>))
    },
    Route {
        params: &[path("id", ""), query("from", false, true, "The first line (default 0)")],
        errors: NOT_FOUND,
        ..route(
            Get,
            "/api/v1/jobs/{id}/logs/stream",
            "A job's log as it is written (SSE: `line` events with the line number as id, then `done`)",
            "jobs",
            Answer::Events,
        )
    },
    Route {
        params: ID,
        errors: NOT_FOUND_OR_CONFLICT,
        ..route(
            Get,
            "/api/v1/jobs/{id}/failure",
            "The failure report of a done job: excerpt (diffed against the newest passing run of the same job) and failing tests",
            "jobs",
            json(200, of::<api::Failure>),
        )
    },
    Route {
        params: ID,
        errors: NOT_FOUND,
        ..route(
            Get,
            "/api/v1/jobs/{id}/test-results",
            "The JUnit report a job published (test-results publish), as JSON, with its summary",
            "jobs",
            json(200, of::<api::JobTestResults>),
        )
    },
    Route {
        params: &[
            query("scope", true, false, "jobs, workflows or projects"),
            query("id", true, false, "The job, workflow or project id"),
            query("path", false, false, "A relative folder inside the scope's artifacts"),
        ],
        errors: NOT_FOUND,
        ..route(
            Get,
            "/api/v1/artifacts",
            "The entries of a folder of a job's, workflow's or project's artifacts",
            "artifacts",
            json(200, of::<api::ArtifactList>),
        )
    },
    Route {
        params: &[
            query("scope", true, false, "jobs, workflows or projects"),
            query("id", true, false, "The job, workflow or project id"),
            query("path", true, false, "A file inside the scope's artifacts"),
            query("method", false, false, "GET (default) or HEAD"),
        ],
        errors: &[400, 404],
        ..route(
            Get,
            "/api/v1/artifacts/signed-url",
            "Links that fetch one artifact file without a token for five minutes",
            "artifacts",
            json(200, of::<api::SignedUrls>),
        )
    },
    Route {
        params: &[query("pipeline_id", false, false, "Only this pipeline's events")],
        ..route(Get, "/api/v1/events", "Pipeline, block and job state changes (SSE)", "events", Answer::Events)
    },
    route(Get, "/api/v1/agent-types", "List self-hosted agent types", "agents", json(200, of::<api::AgentTypeList>)),
    Route {
        body: Some(of::<api::NewAgentType>),
        errors: &[409],
        ..route(
            Post,
            "/api/v1/agent-types",
            "Create an agent type (s1-NAME); the response holds its registration token, the only time it is shown",
            "agents",
            json(201, of::<api::AgentTypeCreated>),
        )
    },
    Route {
        params: &[path("name", "Agent type name")],
        errors: NOT_FOUND,
        ..route(
            Post,
            "/api/v1/agent-types/{name}/disable",
            "Disable an agent type: its agents register no more and its jobs fail at creation",
            "agents",
            json(200, of::<api::AgentType>),
        )
    },
    route(
        Get,
        "/api/v1/agents",
        "List agents: type, version, state, last heartbeat",
        "agents",
        json(200, of::<api::AgentList>),
    ),
    Route {
        body: Some(of::<api::RegisterAgent>),
        errors: &[409],
        ..route(
            Post,
            "/api/v1/agents/register",
            "Register an agent, with its type's registration token as the bearer token (not an API token)",
            "agents",
            json(201, of::<api::AgentRegistered>),
        )
    },
    Route {
        ..route(
            Post,
            "/api/v1/agents/heartbeat",
            "An agent's heartbeat, with its own token as the bearer token",
            "agents",
            json(200, of::<api::Agent>),
        )
    },
    Route {
        ..route(
            Post,
            "/api/v1/agents/disconnect",
            "An agent says goodbye (SIGTERM), with its own token as the bearer token",
            "agents",
            json(200, of::<api::Agent>),
        )
    },
    Route {
        body: Some(of::<api::ClaimJob>),
        ..route(
            Post,
            "/api/v1/agents/claim",
            "Claim the oldest queued job of the agent's type (its own token), waiting up to wait_seconds for one",
            "agents",
            json(200, of::<api::Claimed>),
        )
    },
    Route {
        params: &[
            path("id", "Job id"),
            query("attempt", true, true, "The attempt the agent holds"),
            query("stream", true, false, "log or index"),
            query("offset", true, true, "Where in the stream the bytes start"),
        ],
        raw_body: true,
        errors: &[409, 410],
        ..route(
            Post,
            "/api/v1/agents/jobs/{id}/log",
            "Store a chunk of a job's log (or line index) by byte offset: bytes held already are skipped, a gap is refused (409); renews the claim and says whether to stop",
            "agents",
            json(200, of::<api::LogAck>),
        )
    },
    Route {
        params: ID,
        body: Some(of::<api::FinishJob>),
        errors: &[409, 410],
        ..route(
            Post,
            "/api/v1/agents/jobs/{id}/finish",
            "Report how an attempt ended, once, after its whole log (409: reported already or log incomplete; 410: not this agent's attempt)",
            "agents",
            json(200, of::<api::JobFinished>),
        )
    },
    route(Get, "/api/v1/secrets", "List secret names (never values)", "secrets", json(200, of::<api::SecretList>)),
    Route {
        body: Some(of::<api::NewSecret>),
        ..route(Post, "/api/v1/secrets", "Create or replace a secret", "secrets", json(201, of::<api::SecretSaved>))
    },
    Route {
        params: &[path("name", "")],
        errors: NOT_FOUND,
        ..route(Delete, "/api/v1/secrets/{name}", "Delete a secret", "secrets", json(200, of::<api::Deleted>))
    },
    route(Get, "/api/v1/tokens", "List API tokens (never the tokens)", "tokens", json(200, of::<api::TokenList>)),
    Route {
        body: Some(of::<api::NewToken>),
        errors: NOT_FOUND,
        ..route(
            Post,
            "/api/v1/tokens",
            "Create an API token; the response holds it, the only time it is shown",
            "tokens",
            json(201, of::<api::TokenCreated>),
        )
    },
    Route {
        params: ID,
        errors: NOT_FOUND,
        ..route(Delete, "/api/v1/tokens/{id}", "Delete an API token", "tokens", json(200, of::<api::Deleted>))
    },
    Route {
        params: &[query("project", true, false, "Project name")],
        errors: NOT_FOUND,
        ..route(
            Get,
            "/api/v1/tasks",
            "List a project's tasks (scheduled and on-demand workflows)",
            "tasks",
            json(200, of::<api::TaskList>),
        )
    },
    Route {
        body: Some(of::<api::NewTask>),
        errors: &[403, 404, 409, 422],
        ..route(
            Post,
            "/api/v1/tasks",
            "Make a task: a pipeline file on a branch, run by hand or on a cron schedule (UTC)",
            "tasks",
            json(201, of::<api::Task>),
        )
    },
    Route {
        params: ID,
        errors: NOT_FOUND,
        ..route(
            Get,
            "/api/v1/tasks/{id}",
            "Describe a task with its recent runs",
            "tasks",
            json(200, of::<api::TaskDetail>),
        )
    },
    Route {
        params: ID,
        errors: &[403, 404],
        ..route(Delete, "/api/v1/tasks/{id}", "Delete a task", "tasks", json(200, of::<api::Deleted>))
    },
    Route {
        params: ID,
        body: Some(of::<api::RunTask>),
        errors: &[404, 422],
        ..route(
            Post,
            "/api/v1/tasks/{id}/run",
            "Run a task now (its branch and file, or others), with parameters",
            "tasks",
            json(201, of::<api::TaskRun>),
        )
    },
    Route {
        params: ID,
        errors: &[403, 404],
        ..route(Post, "/api/v1/tasks/{id}/pause", "Pause a task's schedule", "tasks", json(200, of::<api::Task>))
    },
    Route {
        params: ID,
        errors: &[403, 404],
        ..route(Post, "/api/v1/tasks/{id}/resume", "Resume a task's schedule", "tasks", json(200, of::<api::Task>))
    },
    Route {
        params: &[
            query("project", false, false, "Project name"),
            query("branch", false, false, "Failed branch"),
            query("since_ms", false, true, "Created at or after (Unix ms)"),
            query("limit", false, true, "At most this many (1-1000, default 50)"),
        ],
        errors: NOT_FOUND,
        ..route(Get, "/api/v1/heals", "Heal attempts, newest first", "heals", json(200, of::<api::HealList>))
    },
    Route {
        body: Some(of::<api::ClaimHeal>),
        errors: &[404, 409, 422],
        ..route(
            Post,
            "/api/v1/heals",
            "Claim the heal of a failed pipeline: 201 with the new heal, 409 with the one this commit and fingerprint have already (a HealTaken); 422 for a selfheal-* branch or a pipeline that did not fail",
            "heals",
            json(201, of::<api::Heal>),
        )
    },
    Route {
        params: &[path("id", "Heal id")],
        errors: NOT_FOUND,
        ..route(Get, "/api/v1/heals/{id}", "One heal attempt with its report", "heals", json(200, of::<api::Heal>))
    },
    Route {
        params: &[path("id", "Heal id")],
        body: Some(of::<api::FinishHeal>),
        errors: NOT_FOUND_OR_CONFLICT,
        ..route(
            Post,
            "/api/v1/heals/{id}/finish",
            "Record how a running heal ended, with its report",
            "heals",
            json(200, of::<api::Heal>),
        )
    },
    Route {
        params: &[
            query("project", false, false, "Project name"),
            query("state", false, false, "open, merged, closed or all"),
            query("limit", false, true, "At most this many (1-1000, default 50)"),
        ],
        errors: NOT_FOUND,
        ..route(
            Get,
            "/api/v1/pulls",
            "Pull requests of the embedded forge, newest first",
            "pulls",
            json(200, of::<api::PullList>),
        )
    },
    Route {
        body: Some(of::<api::NewPull>),
        errors: &[404, 422],
        ..route(
            Post,
            "/api/v1/pulls",
            "Open a pull request (201), or get the open one of the same head branch (200)",
            "pulls",
            json(201, of::<api::Pull>),
        )
    },
    Route {
        params: PULL,
        errors: NOT_FOUND,
        ..route(
            Get,
            "/api/v1/pulls/{project}/{number}",
            "One pull request: CI on its head, its diff",
            "pulls",
            json(200, of::<api::PullDetail>),
        )
    },
    Route {
        params: PULL,
        errors: NOT_FOUND_OR_CONFLICT,
        ..route(
            Post,
            "/api/v1/pulls/{project}/{number}/merge",
            "Merge a pull request whose head's newest pipeline, on its current commit, passed (409 otherwise); starts CI on the base branch",
            "pulls",
            json(200, of::<api::Pull>),
        )
    },
    Route {
        params: PULL,
        errors: NOT_FOUND,
        ..route(
            Post,
            "/api/v1/pulls/{project}/{number}/close",
            "Close a pull request without merging",
            "pulls",
            json(200, of::<api::Pull>),
        )
    },
];

const DESCRIPTION: &str = "Salve's REST API. Every call needs `Authorization: Bearer <token>` except the health check and this document. Errors are `{\"error\": {\"status\", \"message\"}}` with a message that says what to do. Git hosting is at /git/NAME.git (smart HTTP, the token as the basic-auth password or a bearer header).";

/// The OpenAPI 3.1 document of [`ROUTES`].
pub fn document() -> Value {
    let settings = SchemaSettings::draft2020_12().with(|s| s.definitions_path = "/components/schemas".into());
    let mut g = SchemaGenerator::new(settings);
    let error = g.subschema_for::<api::Error>();
    let mut paths = Map::new();
    for r in ROUTES {
        let mut responses = Map::new();
        match r.answer {
            Answer::Json(status, schema) => {
                let schema = schema(&mut g);
                responses.insert(
                    status.to_string(),
                    json!({"description": "Success", "content": {"application/json": {"schema": schema}}}),
                );
            }
            Answer::Events => {
                responses.insert(
                    "200".into(),
                    json!({"description": "An event stream", "content": {"text/event-stream": {"schema": {"type": "string"}}}}),
                );
            }
        }
        let takes_input = r.body.is_some() || r.params.iter().any(|p| p.place == In::Query);
        let mut errors: Vec<u16> = r.errors.to_vec();
        if !r.open {
            errors.push(401);
        }
        if takes_input {
            errors.push(400);
        }
        errors.sort_unstable();
        errors.dedup();
        for status in errors {
            responses.insert(status.to_string(), json!({"$ref": "#/components/responses/Error"}));
        }
        let mut op = json!({"summary": r.summary, "tags": [r.tag], "responses": responses});
        if r.open {
            op["security"] = json!([]);
        }
        if !r.params.is_empty() {
            let params: Vec<Value> = r
                .params
                .iter()
                .map(|p| {
                    let mut v = json!({
                        "name": p.name,
                        "in": if p.place == In::Path { "path" } else { "query" },
                        "required": p.required,
                        "schema": {"type": if p.integer { "integer" } else { "string" }},
                    });
                    if !p.description.is_empty() {
                        v["description"] = json!(p.description);
                    }
                    v
                })
                .collect();
            op["parameters"] = Value::Array(params);
        }
        if let Some(body) = r.body {
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": body(&mut g)}}});
        }
        if r.raw_body {
            op["requestBody"] = json!({
                "required": true,
                "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
            });
        }
        let entry = paths.entry(r.path).or_insert_with(|| json!({}));
        entry[r.method.as_str()] = op;
    }
    let mut tags: Vec<&str> = Vec::new();
    for r in ROUTES {
        if !tags.contains(&r.tag) {
            tags.push(r.tag);
        }
    }
    let tags: Vec<Value> = tags.into_iter().map(|t| json!({"name": t})).collect();
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Salve", "version": "1", "description": DESCRIPTION},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": g.take_definitions(true),
            "responses": {"Error": {"description": "An error with a message for a person", "content": {"application/json": {"schema": error}}}},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "tags": tags,
    })
}

/// [`document`] as the text checked in beside the server (two-space indents, a final newline).
pub fn text() -> String {
    let mut s = serde_json::to_string_pretty(&document()).unwrap_or_default();
    s.push('\n');
    s
}
