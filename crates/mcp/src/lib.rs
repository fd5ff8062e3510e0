//! Salve's MCP server. The tools carry the names, arguments and result shapes of Semaphore's
//! MCP server (so an agent configured for Semaphore works unchanged), plus Salve's own
//! `failure_summary`. Every tool is a thin reading of Salve's REST API: in `salve serve` the API
//! router is called in-process with the caller's own token, so a tool sees exactly what the
//! token may see and no more. Failures a caller can act on (unknown id, bad argument, no
//! permission) are tool results with `isError: true`, never protocol errors.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use http_body_util::BodyExt as _;
use rmcp::handler::server::router::prompt::PromptRouter;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, Implementation, PromptMessage, Role, ServerCapabilities, ServerConfig,
};
use rmcp::schemars::{self, JsonSchema};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ServerHandler, ServiceExt as _, prompt, prompt_handler, prompt_router, tool, tool_handler, tool_router};
use salve_contract::time::rfc3339;
use salve_contract::{RunResult, RunState, api};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tower::ServiceExt as _;

/// The largest Markdown text block a tool returns; the structured content holds the rest.
const MAX_TEXT: usize = 16 * 1024;

/// How the tools reach Salve's REST API.
#[derive(Clone)]
pub struct Api {
    target: Target,
    organization_id: String,
}

#[derive(Clone)]
enum Target {
    /// The API router of this process, called with each caller's own token.
    InProcess(Router),
    /// A Salve server over HTTP, with one token (`salve mcp` on stdio).
    Remote { http: reqwest::Client, base: String, token: String },
}

impl Api {
    /// The API router of a running server, called in-process.
    pub fn in_process(router: Router, organization_id: String) -> Api {
        Api { target: Target::InProcess(router), organization_id }
    }

    /// A Salve server at `base` (its URL), reached with `token`; asks it for its organization.
    pub async fn remote(base: &str, token: &str) -> Result<Api, McpError> {
        let http = reqwest::Client::builder().build().map_err(|e| McpError::Client(e.to_string()))?;
        let base = base.trim_end_matches('/').to_owned();
        let health: api::Health = http
            .get(format!("{base}/api/v1/health"))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| McpError::Unreachable { base: base.clone(), message: e.to_string() })?
            .json()
            .await
            .map_err(|e| McpError::NotSalve { base: base.clone(), message: e.to_string() })?;
        Ok(Api {
            target: Target::Remote { http, base, token: token.to_owned() },
            organization_id: health.organization_id,
        })
    }

    /// GET `path` with the caller's `Authorization` header (in-process) or the configured token
    /// (remote); the JSON answer, or the API's own error message.
    async fn get<T: DeserializeOwned>(&self, ctx: &RequestContext<RoleServer>, path: &str) -> Result<T, String> {
        self.call(ctx, path, None).await
    }

    /// POST `body` to `path`.
    async fn post<T: DeserializeOwned>(
        &self,
        ctx: &RequestContext<RoleServer>,
        path: &str,
        body: Value,
    ) -> Result<T, String> {
        self.call(ctx, path, Some(body)).await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        ctx: &RequestContext<RoleServer>,
        path: &str,
        body: Option<Value>,
    ) -> Result<T, String> {
        let (status, bytes) = match &self.target {
            Target::InProcess(router) => {
                let mut request = match body {
                    Some(_) => Request::post(path).header(header::CONTENT_TYPE, "application/json"),
                    None => Request::get(path),
                };
                if let Some(a) = authorization(ctx) {
                    request = request.header(header::AUTHORIZATION, a);
                }
                let payload = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
                let request = request.body(payload).map_err(|e| format!("bad request path {path}: {e}"))?;
                let response = router.clone().oneshot(request).await.map_err(|e| e.to_string())?;
                let status = response.status().as_u16();
                (status, response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes().to_vec())
            }
            Target::Remote { http, base, token } => {
                let request = match body {
                    Some(b) => http.post(format!("{base}{path}")).json(&b),
                    None => http.get(format!("{base}{path}")),
                };
                let response = request
                    .bearer_auth(token)
                    .send()
                    .await
                    .map_err(|e| format!("cannot reach the Salve server at {base}: {e}"))?;
                let status = response.status().as_u16();
                (status, response.bytes().await.map_err(|e| e.to_string())?.to_vec())
            }
        };
        if (200..300).contains(&status) {
            serde_json::from_slice(&bytes)
                .map_err(|e| format!("the API's answer to {path} is not what this tool reads: {e}"))
        } else {
            let error = serde_json::from_slice::<api::Error>(&bytes);
            Err(error.map_or_else(|_| format!("the API answered {status}"), |e| e.error.message))
        }
    }
}

/// The caller's `Authorization` header, when the request came over HTTP.
fn authorization(ctx: &RequestContext<RoleServer>) -> Option<header::HeaderValue> {
    ctx.extensions.get::<axum::http::request::Parts>().and_then(|p| p.headers.get(header::AUTHORIZATION)).cloned()
}

/// Query-string encoding of one value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The tools that change something; listed only when switched on.
pub const WRITE_TOOLS: &[&str] = &["workflows_run", "workflows_rerun", "tasks_run"];

#[derive(Clone)]
pub struct SalveMcp {
    api: Arc<Api>,
    tool_router: ToolRouter<SalveMcp>,
    prompt_router: PromptRouter<SalveMcp>,
}

#[derive(Deserialize, JsonSchema)]
pub struct OrganizationsList {
    /// Unused: Salve has one organization.
    #[serde(default)]
    pub cursor: Option<String>,
    #[serde(default)]
    pub limit: Option<u32>,
}

#[derive(Deserialize, JsonSchema)]
pub struct ProjectsList {
    /// The organization (from `organizations_list`).
    pub organization_id: String,
    #[serde(default)]
    pub limit: Option<u32>,
}

#[derive(Deserialize, JsonSchema)]
pub struct WorkflowsSearch {
    /// The project's id or name.
    pub project_id: String,
    pub organization_id: String,
    /// Only workflows of this branch.
    #[serde(default)]
    pub branch: Option<String>,
    /// 1 to 100, default 20.
    #[serde(default)]
    pub limit: Option<u32>,
}

#[derive(Deserialize, JsonSchema)]
pub struct PipelinesList {
    pub workflow_id: String,
    pub organization_id: String,
    #[serde(default)]
    pub project_id: Option<String>,
    #[serde(default)]
    pub limit: Option<u32>,
}

#[derive(Deserialize, JsonSchema)]
pub struct PipelineJobs {
    pub pipeline_id: String,
    pub organization_id: String,
}

#[derive(Deserialize, JsonSchema)]
pub struct JobsDescribe {
    pub organization_id: String,
    pub job_id: String,
}

#[derive(Deserialize, JsonSchema)]
pub struct JobsLogs {
    pub job_id: String,
    /// A line offset from an earlier call's `nextCursor`: the window of (at most 200) lines
    /// before it. Without it, the last 200 lines.
    #[serde(default)]
    pub cursor: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
pub struct WorkflowsRun {
    /// The project's id or name.
    pub project_id: String,
    pub organization_id: String,
    /// `main`, `refs/heads/main` or `refs/tags/v1.0`.
    pub reference: String,
    /// A commit of that branch or tag (default: its head).
    #[serde(default)]
    pub commit_sha: Option<String>,
    /// Only `.semaphore/semaphore.yml` for now.
    #[serde(default)]
    pub pipeline_file: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
pub struct WorkflowsRerun {
    pub workflow_id: String,
}

#[derive(Deserialize, JsonSchema)]
pub struct GetTestResults {
    /// `job` or `pipeline` (a done pipeline: every job's report).
    pub scope: String,
    /// With scope `job`.
    #[serde(default)]
    pub job_id: Option<String>,
    /// With scope `pipeline`.
    #[serde(default)]
    pub pipeline_id: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
pub struct ArtifactsList {
    pub organization_id: String,
    /// `projects`, `workflows` or `jobs`.
    pub scope: String,
    /// The project's, workflow's or job's id.
    pub scope_id: String,
    #[serde(default)]
    pub project_id: Option<String>,
    /// A folder inside the scope's artifacts, relative (no leading `/`).
    #[serde(default)]
    pub path: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
pub struct McpSetup {
    /// The project the agent works on, when known.
    #[serde(default)]
    pub project_name: Option<String>,
    #[serde(default)]
    pub organization_name: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
pub struct FailureSummary {
    /// A failed job.
    #[serde(default)]
    pub job_id: Option<String>,
    /// Or a pipeline: the summary of each of its failed jobs.
    #[serde(default)]
    pub pipeline_id: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
pub struct ProjectsSearch {
    pub organization_id: String,
    /// Words of the project's name (case does not matter).
    #[serde(default)]
    pub query: Option<String>,
    /// Or (part of) its repository URL.
    #[serde(default)]
    pub repository_url: Option<String>,
    /// 1 to 50, default 20.
    #[serde(default)]
    pub limit: Option<u32>,
}

#[derive(Deserialize, JsonSchema)]
pub struct TasksList {
    /// The project's id or name.
    pub project_id: String,
    pub organization_id: String,
    /// 1 to 100, default 20.
    #[serde(default)]
    pub limit: Option<u32>,
}

#[derive(Deserialize, JsonSchema)]
pub struct TasksDescribe {
    pub task_id: String,
    pub project_id: String,
    pub organization_id: String,
}

#[derive(Deserialize, JsonSchema)]
pub struct TasksRun {
    pub task_id: String,
    pub project_id: String,
    pub organization_id: String,
    /// Another branch than the task's.
    #[serde(default)]
    pub branch: Option<String>,
    /// Another pipeline file than the task's.
    #[serde(default)]
    pub pipeline_file: Option<String>,
    /// Parameter values by name (strings, numbers, booleans; null leaves the default).
    #[serde(default)]
    pub parameters: serde_json::Map<String, Value>,
}

#[derive(Deserialize, JsonSchema)]
pub struct JobsFullLogs {
    pub job_id: String,
}

#[derive(Deserialize, JsonSchema)]
pub struct ArtifactsSignedUrl {
    pub organization_id: String,
    /// `projects`, `workflows` or `jobs`.
    pub scope: String,
    /// The project's, workflow's or job's id.
    pub scope_id: String,
    /// A file inside the scope's artifacts, relative (from `artifacts_list`).
    pub path: String,
    #[serde(default)]
    pub project_id: Option<String>,
    /// `GET` (default) or `HEAD`.
    #[serde(default)]
    pub method: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
pub struct Echo {
    /// Any text; it comes back as it was.
    pub message: String,
}

fn text_result(markdown: String, structured: Value) -> CallToolResult {
    let mut markdown = markdown;
    if markdown.len() > MAX_TEXT {
        let mut cut = MAX_TEXT;
        while !markdown.is_char_boundary(cut) {
            cut -= 1;
        }
        markdown.truncate(cut);
        markdown.push_str("\n… (cut; the structured content has it all)");
    }
    let mut r = CallToolResult::structured(structured);
    r.content = vec![ContentBlock::text(markdown)];
    r
}

/// The API's answer rendered by `render`, or its error as a tool error.
fn answer<T>(reply: Result<T, String>, render: impl FnOnce(T) -> CallToolResult) -> CallToolResult {
    match reply {
        Ok(v) => render(v),
        Err(e) => tool_error(e),
    }
}

fn tool_error(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message.into())])
}

/// A result's name, or "" while it runs.
fn result(r: Option<RunResult>) -> &'static str {
    r.map_or("", RunResult::as_str)
}

/// Where a project's repository is: its hosted git URL or the upstream.
fn repository(p: &api::Project) -> Option<&str> {
    p.git_url.as_deref().or(p.repo_url.as_deref())
}

#[tool_router]
impl SalveMcp {
    /// The server; `write` lists the tools that start workflows too.
    pub fn new(api: Api, write: bool) -> SalveMcp {
        let mut tool_router = Self::tool_router();
        if !write {
            for name in WRITE_TOOLS {
                tool_router.remove_route(name);
            }
        }
        SalveMcp { api: Arc::new(api), tool_router, prompt_router: Self::prompt_router() }
    }

    /// The tool error for an organization this Salve does not have.
    fn wrong_org(&self, organization_id: &str) -> Option<CallToolResult> {
        (organization_id != self.api.organization_id).then(|| {
            tool_error(format!(
                "no organization {organization_id}: this Salve has one, {} (see organizations_list)",
                self.api.organization_id
            ))
        })
    }

    #[tool(
        description = "List the organizations this token can see (Salve has one).",
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn organizations_list(&self, Parameters(_p): Parameters<OrganizationsList>) -> CallToolResult {
        let id = &self.api.organization_id;
        text_result(
            format!("Organizations:\n- **salve** (`{id}`)"),
            json!({"organizations": [{"id": id, "name": "salve", "username": "salve"}]}),
        )
    }

    #[tool(
        description = "List the organization's projects.",
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn projects_list(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(p): Parameters<ProjectsList>,
    ) -> CallToolResult {
        if let Some(e) = self.wrong_org(&p.organization_id) {
            return e;
        }
        answer(self.api.get::<api::ProjectList>(&ctx, "/api/v1/projects").await, |v| {
            let limit = p.limit.unwrap_or(25).clamp(1, 200) as usize;
            let shown = &v.projects[..v.projects.len().min(limit)];
            let projects: Vec<Value> = shown
                .iter()
                .map(|p| {
                    json!({"id": p.id, "name": p.name, "repository": {"url": repository(p), "pipelineFile": ".semaphore/semaphore.yml"}})
                })
                .collect();
            let md = shown.iter().map(|p| format!("- **{}** (`{}`)", p.name, p.id)).collect::<Vec<_>>();
            text_result(format!("Projects:\n{}", md.join("\n")), json!({"projects": projects}))
        })
    }

    #[tool(
        description = "The project's workflows, newest first; filter by branch.",
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn workflows_search(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(p): Parameters<WorkflowsSearch>,
    ) -> CallToolResult {
        if let Some(e) = self.wrong_org(&p.organization_id) {
            return e;
        }
        let limit = p.limit.unwrap_or(20).clamp(1, 100);
        let mut path = format!("/api/v1/workflows?project={}&limit={limit}", encode(&p.project_id));
        if let Some(b) = &p.branch {
            path.push_str(&format!("&branch={}", encode(b)));
        }
        answer(self.api.get::<api::WorkflowList>(&ctx, &path).await, |v| {
            let list: Vec<Value> = v
                .workflows
                .iter()
                .map(|w| {
                    json!({"id": w.id, "initialPipelineId": w.initial_pipeline_id, "projectId": w.project_id, "organizationId": self.api.organization_id, "branch": w.branch, "commitSha": w.sha, "triggeredBy": w.triggered_by, "createdAt": w.created_ms, "rerunOf": w.rerun_of})
                })
                .collect();
            let md: Vec<String> = v
                .workflows
                .iter()
                .map(|w| format!("- `{}` {} @ {}", w.id, w.branch, &w.sha[..w.sha.len().min(7)]))
                .collect();
            text_result(format!("Workflows:\n{}", md.join("\n")), json!({"workflows": list}))
        })
    }

    #[tool(
        description = "The pipelines of a workflow (promotions included), newest first.",
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn pipelines_list(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(p): Parameters<PipelinesList>,
    ) -> CallToolResult {
        if let Some(e) = self.wrong_org(&p.organization_id) {
            return e;
        }
        let limit = p.limit.unwrap_or(20).clamp(1, 100);
        let path = format!("/api/v1/pipelines?workflow_id={}&limit={limit}", encode(&p.workflow_id));
        answer(self.api.get::<api::PipelineList>(&ctx, &path).await, |v| {
            let list: Vec<Value> = v.pipelines.iter().map(|p| self.pipeline(p)).collect();
            let md: Vec<String> = v
                .pipelines
                .iter()
                .map(|p| {
                    let reason = p.result_reason.as_deref().unwrap_or("");
                    format!("- `{}` {}: {} {} {reason}", p.id, p.name, p.state, result(p.result))
                })
                .collect();
            text_result(format!("Pipelines:\n{}", md.join("\n")), json!({"pipelines": list}))
        })
    }

    fn pipeline(&self, p: &api::PipelineSummary) -> Value {
        json!({"id": p.id, "name": p.name, "workflowId": p.workflow_id, "organizationId": self.api.organization_id, "branch": p.branch, "commitSha": p.sha, "state": p.state, "result": p.result, "resultReason": p.result_reason, "errorMessage": p.error, "createdAt": p.created_ms, "runningAt": p.started_ms, "doneAt": p.done_ms, "promotionOf": p.promotion_of, "pipelineFile": p.file})
    }

    #[tool(
        description = "A pipeline with its blocks and jobs (their ids, states and results).",
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn pipeline_jobs(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(p): Parameters<PipelineJobs>,
    ) -> CallToolResult {
        if let Some(e) = self.wrong_org(&p.organization_id) {
            return e;
        }
        let path = format!("/api/v1/pipelines/{}", encode(&p.pipeline_id));
        answer(self.api.get::<api::Pipeline>(&ctx, &path).await, |v| {
            let pl = &v.pipeline;
            let mut jobs = Vec::new();
            let mut md = vec![format!("Pipeline `{}` {}: {} {}", pl.id, pl.name, pl.state, result(pl.result))];
            let mut blocks = Vec::new();
            for b in &v.blocks {
                md.push(format!("- block **{}**: {}", b.name, b.result.map_or(b.state.as_str(), RunResult::as_str)));
                let mut list = Vec::new();
                for (i, j) in b.jobs.iter().enumerate() {
                    md.push(format!(
                        "  - job {} `{}`: {}",
                        j.name,
                        j.id,
                        j.result.map_or(j.state.as_str(), RunResult::as_str)
                    ));
                    list.push(json!({"jobId": j.id, "name": j.name, "blockName": b.name, "index": i, "status": j.state, "result": j.result, "error": j.result_reason}));
                }
                jobs.extend(list.iter().cloned());
                blocks.push(json!({"blockName": b.name, "state": b.state, "result": b.result, "jobs": list}));
            }
            let count = jobs.len();
            text_result(
                md.join("\n"),
                json!({"pipeline": self.pipeline(pl), "blocks": blocks, "jobs": jobs, "jobCount": count}),
            )
        })
    }

    #[tool(
        description = "A job: its state, result, timeline and commands with their exit codes.",
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn jobs_describe(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(p): Parameters<JobsDescribe>,
    ) -> CallToolResult {
        if let Some(e) = self.wrong_org(&p.organization_id) {
            return e;
        }
        let path = format!("/api/v1/jobs/{}", encode(&p.job_id));
        answer(self.api.get::<api::Job>(&ctx, &path).await, |shown| {
            let j = &shown.job;
            let reason = j.result_reason.as_deref().unwrap_or("");
            let mut md = vec![format!("Job **{}** `{}`: {} {} {reason}", j.name, j.id, j.state, result(j.result))];
            for c in &shown.commands {
                let exit = c.exit_code.map_or_else(|| "null".to_owned(), |e| e.to_string());
                md.push(format!("- `{}` → {exit}", c.command));
            }
            let structured = json!({"id": j.id, "name": j.name, "pipelineId": j.pipeline_id, "organizationId": self.api.organization_id, "state": j.state, "result": j.result, "failureReason": j.result_reason, "timeline": {"startedAt": j.started_ms, "finishedAt": j.done_ms}, "commands": shown.commands});
            text_result(md.join("\n"), structured)
        })
    }

    #[tool(
        description = "A job's log, 200 lines at a time: without a cursor the last 200 lines; nextCursor walks to older lines.",
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn jobs_logs(&self, ctx: RequestContext<RoleServer>, Parameters(p): Parameters<JobsLogs>) -> CallToolResult {
        const WINDOW: u64 = 200;
        let path = match p.cursor.as_deref().filter(|c| !c.is_empty()) {
            None => format!("/api/v1/jobs/{}/logs?tail={WINDOW}", encode(&p.job_id)),
            Some(c) => match c.parse::<u64>() {
                Ok(end) => {
                    let from = end.saturating_sub(WINDOW);
                    format!("/api/v1/jobs/{}/logs?from={from}&limit={}", encode(&p.job_id), (end - from).max(1))
                }
                Err(_) => {
                    return tool_error(format!(
                        "cursor '{c}' is not a line offset: pass a nextCursor from an earlier call, or none"
                    ));
                }
            },
        };
        answer(self.api.get::<api::LogWindow>(&ctx, &path).await, |v| {
            let start = v.from;
            let preview: Vec<String> = v.lines.into_iter().map(|l| l.text).collect();
            let next = (start > 0).then(|| start.to_string());
            let md = format!(
                "Lines {}–{} of {}:\n```\n{}\n```",
                start + 1,
                start + preview.len() as u64,
                v.total,
                preview.join("\n")
            );
            let done = v.state == RunState::Done;
            let structured = json!({"jobId": p.job_id, "source": "salve", "preview": preview, "nextCursor": next, "Final": done, "startLine": start, "previewTruncated": start > 0});
            text_result(md, structured)
        })
    }

    #[tool(
        description = "The parsed JUnit test results a job published (scope job), or every job's of a done pipeline (scope pipeline): suites, tests, failures with their messages and traces.",
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn get_test_results(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(p): Parameters<GetTestResults>,
    ) -> CallToolResult {
        let path = match (p.scope.as_str(), &p.job_id, &p.pipeline_id) {
            ("job", Some(job), _) => format!("/api/v1/jobs/{}/test-results", encode(job)),
            ("pipeline", _, Some(pipeline)) => format!("/api/v1/pipelines/{}/test-results", encode(pipeline)),
            ("job", None, _) => return tool_error("scope job needs job_id"),
            ("pipeline", _, None) => return tool_error("scope pipeline needs pipeline_id"),
            (other, _, _) => return tool_error(format!("scope '{other}' is not job or pipeline")),
        };
        let answered: Result<(Vec<Value>, Value), String> = if p.scope == "job" {
            self.api.get::<api::JobTestResults>(&ctx, &path).await.map(|r| (vec![r.report.clone()], json!(r)))
        } else {
            self.api
                .get::<api::PipelineTestResults>(&ctx, &path)
                .await
                .map(|r| (r.jobs.iter().map(|j| j.report.clone()).collect(), json!(r)))
        };
        answer(answered, |(reports, structured)| {
            // A report is the toolbox's JUnit document (`test-results publish`), as published.
            let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            let count = |v: &Value, k: &str| v.get(k).cloned().unwrap_or(Value::Null);
            let list = |v: &Value, k: &str| v.get(k).and_then(Value::as_array).cloned().unwrap_or_default();
            let mut md = Vec::new();
            for report in &reports {
                for r in list(report, "testResults") {
                    let sum = r.get("summary").cloned().unwrap_or(Value::Null);
                    md.push(format!(
                        "**{}**: {} tests, {} failed, {} errors",
                        text(&r, "name"),
                        count(&sum, "total"),
                        count(&sum, "failed"),
                        count(&sum, "error")
                    ));
                    for t in list(&r, "suites").iter().flat_map(|suite| list(suite, "tests")) {
                        if let Some(f) = t.get("failure").or_else(|| t.get("error")) {
                            md.push(format!(
                                "- {} {}: {}",
                                text(&t, "classname"),
                                text(&t, "name"),
                                text(f, "message")
                            ));
                        }
                    }
                }
            }
            text_result(md.join("\n"), structured)
        })
    }

    #[tool(
        description = "The files and folders of a project's, workflow's or job's artifacts.",
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn artifacts_list(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(p): Parameters<ArtifactsList>,
    ) -> CallToolResult {
        if let Some(e) = self.wrong_org(&p.organization_id) {
            return e;
        }
        let folder = p.path.unwrap_or_default();
        let path =
            format!("/api/v1/artifacts?scope={}&id={}&path={}", encode(&p.scope), encode(&p.scope_id), encode(&folder));
        answer(self.api.get::<api::ArtifactList>(&ctx, &path).await, |list| {
            let md: Vec<String> =
                list.artifacts
                    .iter()
                    .map(|a| {
                        if a.is_directory {
                            format!("- {}/", a.path)
                        } else {
                            format!("- {} ({} bytes)", a.path, a.size)
                        }
                    })
                    .collect();
            let mut v = json!(list);
            v["organizationId"] = json!(self.api.organization_id);
            v["projectId"] = json!(p.project_id);
            text_result(if md.is_empty() { "No artifacts there.".to_owned() } else { md.join("\n") }, v)
        })
    }

    #[tool(
        description = "Start a workflow at a branch or tag (and commit) of a project. Switched on by the server's mcp_write_tools.",
        annotations(read_only_hint = false, destructive_hint = false)
    )]
    async fn workflows_run(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(p): Parameters<WorkflowsRun>,
    ) -> CallToolResult {
        if let Some(e) = self.wrong_org(&p.organization_id) {
            return e;
        }
        if p.pipeline_file.as_deref().is_some_and(|f| f != ".semaphore/semaphore.yml") {
            return tool_error("Salve starts workflows from .semaphore/semaphore.yml only; leave pipeline_file out");
        }
        let (kind, name) = match p.reference.strip_prefix("refs/tags/") {
            Some(tag) => ("tag", tag),
            None => ("branch", p.reference.strip_prefix("refs/heads/").unwrap_or(&p.reference)),
        };
        if p.reference.starts_with("refs/")
            && !p.reference.starts_with("refs/heads/")
            && !p.reference.starts_with("refs/tags/")
        {
            return tool_error(format!(
                "reference '{}' is not a branch or a tag (refs/heads/… or refs/tags/…)",
                p.reference
            ));
        }
        let body = json!({"project": p.project_id, kind: name, "sha": p.commit_sha});
        answer(self.api.post::<api::Started>(&ctx, "/api/v1/workflows", body).await, |v| {
            text_result(
                format!("Started workflow `{}` (pipeline `{}`) at {}.", v.workflow_id, v.pipeline_id, p.reference),
                json!({"workflowId": v.workflow_id, "pipelineId": v.pipeline_id, "reference": p.reference, "commitSha": p.commit_sha, "pipelineFile": ".semaphore/semaphore.yml"}),
            )
        })
    }

    #[tool(
        description = "Run a workflow again at the same commit. Switched on by the server's mcp_write_tools.",
        annotations(read_only_hint = false, destructive_hint = false)
    )]
    async fn workflows_rerun(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(p): Parameters<WorkflowsRerun>,
    ) -> CallToolResult {
        let path = format!("/api/v1/workflows/{}/rerun", encode(&p.workflow_id));
        answer(self.api.post::<api::Started>(&ctx, &path, json!({})).await, |v| {
            text_result(
                format!("Rerunning workflow `{}` as `{}`.", p.workflow_id, v.workflow_id),
                json!({"workflowId": v.workflow_id, "pipelineId": v.pipeline_id, "rerunOf": p.workflow_id, "organizationId": self.api.organization_id}),
            )
        })
    }

    #[tool(
        description = "A project's tasks: its scheduled (cron, UTC) and on-demand workflows, with their branch, pipeline file and schedule.",
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn tasks_list(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(p): Parameters<TasksList>,
    ) -> CallToolResult {
        if let Some(e) = self.wrong_org(&p.organization_id) {
            return e;
        }
        let limit = p.limit.unwrap_or(20).clamp(1, 100) as usize;
        let path = format!("/api/v1/tasks?project={}", encode(&p.project_id));
        answer(self.api.get::<api::TaskList>(&ctx, &path).await, |v| {
            let tasks: Vec<Value> = v
                .tasks
                .iter()
                .take(limit)
                .map(|t| json!({"id": t.id, "name": t.name, "description": t.description, "branch": t.branch, "pipeline_file": t.pipeline_file, "schedule": t.schedule, "paused": t.paused, "suspended": false, "updated_at": rfc3339(t.updated_ms)}))
                .collect();
            let mut md: Vec<String> = v
                .tasks
                .iter()
                .take(limit)
                .map(|t| {
                    let when = t.schedule.as_deref().map_or("on demand".to_owned(), |s| format!("`{s}` UTC"));
                    format!(
                        "- **{}** `{}`: {} on {}, {when}{}",
                        t.name,
                        t.id,
                        t.pipeline_file,
                        t.branch,
                        if t.paused { " (paused)" } else { "" }
                    )
                })
                .collect();
            if md.is_empty() {
                md.push("No tasks.".into());
            }
            text_result(md.join("\n"), json!({"tasks": tasks}))
        })
    }

    #[tool(
        description = "A task: its branch, pipeline file, schedule and parameters, and its recent runs with their workflows and results.",
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn tasks_describe(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(p): Parameters<TasksDescribe>,
    ) -> CallToolResult {
        if let Some(e) = self.wrong_org(&p.organization_id) {
            return e;
        }
        let path = format!("/api/v1/tasks/{}", encode(&p.task_id));
        answer(self.api.get::<api::TaskDetail>(&ctx, &path).await, |d| {
            let t = &d.task;
            let parameters: Vec<Value> = t
                .parameters
                .iter()
                .map(|q| json!({"name": q.name, "default_value": q.default_value, "required": q.required, "description": q.description, "regex_pattern": q.regex_pattern, "validate_input_format": q.regex_pattern.is_some()}))
                .collect();
            let triggers: Vec<Value> = d
                .recent_triggers
                .iter()
                .map(|r| json!({"triggered_at": rfc3339(r.triggered_ms), "workflow_id": r.workflow_id, "status": r.status, "branch": r.branch, "pipeline_file": r.pipeline_file, "error_message": r.error_message}))
                .collect();
            let mut md = vec![format!(
                "Task **{}** `{}`: {} on {}, {}",
                t.name,
                t.id,
                t.pipeline_file,
                t.branch,
                t.schedule.as_deref().map_or("on demand".to_owned(), |s| format!("schedule `{s}` UTC"))
            )];
            md.extend(
                t.parameters
                    .iter()
                    .map(|q| format!("- parameter `{}`{}", q.name, if q.required { " (required)" } else { "" })),
            );
            md.extend(d.recent_triggers.iter().map(|r| {
                format!(
                    "- run {}: {}",
                    rfc3339(r.triggered_ms),
                    r.workflow_id.as_deref().or(r.error_message.as_deref()).unwrap_or("")
                )
            }));
            let task = json!({"id": t.id, "name": t.name, "description": t.description, "project_id": t.project_id, "branch": t.branch, "pipeline_file": t.pipeline_file, "schedule": t.schedule, "parameters": parameters, "paused": t.paused, "suspended": false, "created_at": rfc3339(t.created_ms), "updated_at": rfc3339(t.updated_ms)});
            text_result(md.join("\n"), json!({"task": task, "recent_triggers": triggers}))
        })
    }

    #[tool(
        description = "Run a task now, on its branch and pipeline file or others, with parameter values. Switched on by the server's mcp_write_tools.",
        annotations(read_only_hint = false, destructive_hint = false)
    )]
    async fn tasks_run(&self, ctx: RequestContext<RoleServer>, Parameters(p): Parameters<TasksRun>) -> CallToolResult {
        if let Some(e) = self.wrong_org(&p.organization_id) {
            return e;
        }
        let mut parameters = serde_json::Map::new();
        for (name, value) in &p.parameters {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Null => continue,
                _ => return tool_error(format!("parameter '{name}' must be a string, number or boolean")),
            };
            parameters.insert(name.clone(), Value::String(text));
        }
        let body = json!({"branch": p.branch, "pipeline_file": p.pipeline_file, "parameters": parameters});
        let path = format!("/api/v1/tasks/{}/run", encode(&p.task_id));
        answer(self.api.post::<api::TaskRun>(&ctx, &path, body).await, |r| {
            text_result(
                format!(
                    "Task **{}** started workflow `{}` on {} ({}).",
                    r.task_name, r.workflow_id, r.branch, r.pipeline_file
                ),
                json!({"task_id": r.task_id, "task_name": r.task_name, "workflow_id": r.workflow_id, "branch": r.branch, "pipeline_file": r.pipeline_file, "triggered_at": rfc3339(r.triggered_ms)}),
            )
        })
    }

    #[tool(
        description = "A job's whole log at once (up to 10,000 lines; jobs_logs pages through longer ones).",
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn jobs_full_logs(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(p): Parameters<JobsFullLogs>,
    ) -> CallToolResult {
        const MOST: u64 = 10_000;
        let path = format!("/api/v1/jobs/{}/logs?from=0&limit={MOST}", encode(&p.job_id));
        answer(self.api.get::<api::LogWindow>(&ctx, &path).await, |v| {
            let lines: Vec<String> = v.lines.into_iter().map(|l| l.text).collect();
            let truncated = v.total > lines.len() as u64;
            let md = format!(
                "{} of {} lines{}:\n```\n{}\n```",
                lines.len(),
                v.total,
                if truncated { " (the rest: jobs_logs with a cursor)" } else { "" },
                lines.join("\n")
            );
            let done = v.state == RunState::Done;
            text_result(
                md,
                json!({"jobId": p.job_id, "lines": lines, "totalLines": v.total, "truncated": truncated, "Final": done}),
            )
        })
    }

    #[tool(
        description = "A link that downloads one artifact file (from artifacts_list) without a token, valid for five minutes: download it once.",
        annotations(read_only_hint = true, idempotent_hint = false, open_world_hint = false)
    )]
    async fn artifacts_signed_url(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(p): Parameters<ArtifactsSignedUrl>,
    ) -> CallToolResult {
        if let Some(e) = self.wrong_org(&p.organization_id) {
            return e;
        }
        let path = format!(
            "/api/v1/artifacts/signed-url?scope={}&id={}&path={}&method={}",
            encode(&p.scope),
            encode(&p.scope_id),
            encode(&p.path),
            encode(p.method.as_deref().unwrap_or("GET"))
        );
        answer(self.api.get::<api::SignedUrls>(&ctx, &path).await, |v| {
            let urls: Vec<Value> = v.urls.iter().map(|u| json!({"url": u.url, "method": u.method})).collect();
            text_result(
                format!(
                    "`{}` of {} `{}`, until {}: {}",
                    v.path,
                    v.scope,
                    v.scope_id,
                    rfc3339(v.expires_ms),
                    v.urls.first().map_or("", |u| u.url.as_str())
                ),
                json!({"organizationId": self.api.organization_id, "projectId": v.project_id, "scope": v.scope, "scopeId": v.scope_id, "path": v.path, "method": v.method, "urls": urls}),
            )
        })
    }

    #[tool(
        description = "Says back what it is given: checks that the MCP connection and its token work.",
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn echo(&self, Parameters(p): Parameters<Echo>) -> CallToolResult {
        text_result(p.message.clone(), json!({"message": p.message}))
    }

    #[tool(
        description = "Why a job failed: the failure class, the failing command, the few log lines that explain it (diffed against the last green run of the same job), failing tests and a fingerprint.",
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn failure_summary(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(p): Parameters<FailureSummary>,
    ) -> CallToolResult {
        let jobs: Vec<String> = match (&p.job_id, &p.pipeline_id) {
            (Some(job), _) => vec![job.clone()],
            (None, Some(pipeline)) => {
                match self.api.get::<api::Pipeline>(&ctx, &format!("/api/v1/pipelines/{}", encode(pipeline))).await {
                    Ok(v) => v
                        .blocks
                        .iter()
                        .flat_map(|b| &b.jobs)
                        .filter(|j| j.result == Some(RunResult::Failed))
                        .map(|j| j.id.clone())
                        .collect(),
                    Err(e) => return tool_error(e),
                }
            }
            (None, None) => return tool_error("give job_id (a failed job) or pipeline_id (its failed jobs)"),
        };
        if jobs.is_empty() {
            return text_result("No job of this pipeline failed.".into(), json!({"jobs": []}));
        }
        let mut md = Vec::new();
        let mut reports = Vec::new();
        for job in &jobs {
            let r = match self.api.get::<api::Failure>(&ctx, &format!("/api/v1/jobs/{}/failure", encode(job))).await {
                Ok(r) => r,
                Err(e) => return tool_error(e),
            };
            let report = &r.report;
            md.push(format!("**{}** in job `{job}` (fingerprint `{}`)", report.class.words(), report.fingerprint));
            if let Some(c) = &report.failing_command {
                md.push(format!("Failing command: `{c}`"));
            }
            md.push("```".into());
            for l in &report.excerpt {
                md.push(format!("{:>6} | {}", l.line, l.text));
            }
            md.push("```".into());
            for t in &report.failing_tests {
                md.push(format!("- test {}.{}: {}", t.classname, t.name, t.message.as_deref().unwrap_or("")));
            }
            reports.push(json!(r));
        }
        // One job: its report as it is; a pipeline: the reports of its failed jobs.
        let structured = if p.job_id.is_some() { reports.swap_remove(0) } else { json!({"jobs": reports}) };
        text_result(md.join("\n"), structured)
    }

    #[tool(
        description = "Find projects by name words or repository URL; best matches first.",
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn projects_search(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(p): Parameters<ProjectsSearch>,
    ) -> CallToolResult {
        if let Some(e) = self.wrong_org(&p.organization_id) {
            return e;
        }
        let query = p.query.as_deref().unwrap_or("").to_lowercase();
        let url = p.repository_url.as_deref().unwrap_or("").to_lowercase();
        if query.trim().is_empty() && url.trim().is_empty() {
            return tool_error("give a query (words of the name) or a repository_url");
        }
        let all = match self.api.get::<api::ProjectList>(&ctx, "/api/v1/projects").await {
            Ok(v) => v,
            Err(e) => return tool_error(e),
        };
        let words: Vec<&str> = query.split_whitespace().collect();
        let mut found: Vec<(f64, &api::Project, Vec<&str>)> = all
            .projects
            .iter()
            .filter_map(|pr| {
                let name = pr.name.to_lowercase();
                let repo = repository(pr).unwrap_or("").to_lowercase();
                let mut fields = Vec::new();
                let mut confidence = 0.0;
                if !words.is_empty() && words.iter().all(|w| name.contains(w)) {
                    fields.push("name");
                    confidence = if name == query.trim() { 1.0 } else { 0.7 };
                }
                if !url.is_empty() && repo.contains(url.trim_end_matches(".git")) {
                    fields.push("repository.url");
                    confidence = f64::max(confidence, 0.9);
                }
                (!fields.is_empty()).then_some((confidence, pr, fields))
            })
            .collect();
        found.sort_by(|a, b| b.0.total_cmp(&a.0));
        let total = found.len();
        let limit = p.limit.unwrap_or(20).clamp(1, 50) as usize;
        found.truncate(limit);
        let projects: Vec<Value> = found
            .iter()
            .map(|(confidence, pr, fields)| {
                json!({"id": pr.id, "name": pr.name, "repository": {"url": repository(pr)}, "matchConfidence": confidence, "matchedFields": fields})
            })
            .collect();
        let md: Vec<String> = found.iter().map(|(_, p, _)| format!("- **{}** (`{}`)", p.name, p.id)).collect();
        text_result(
            if md.is_empty() { "No project matches.".to_owned() } else { md.join("\n") },
            json!({"projects": projects, "totalMatches": total, "searchedPages": 1, "moreAvailable": total > limit}),
        )
    }
}

#[prompt_router]
impl SalveMcp {
    #[prompt(description = "How to set up an agent to debug this project's CI with Salve's MCP tools.")]
    async fn mcp_setup(&self, Parameters(p): Parameters<McpSetup>) -> Vec<PromptMessage> {
        let project = p.project_name.map_or_else(|| "the project".to_owned(), |n| format!("project `{n}`"));
        let text = format!(
            "Create `.salve/MCP.md` in the repository for agents that debug {project} on Salve CI.\n\n\
             1. Call `organizations_list` and `projects_list` once and keep the ids in `.salve/config.json` \
             (organization `{}`{}).\n\
             2. To learn why CI failed: `workflows_search` (by branch) → `pipelines_list` (the workflow's \
             pipelines, promotions included) → `pipeline_jobs` → `failure_summary` on each failed job: its class, \
             the failing command, the lines that explain it and the failing tests. Use `jobs_logs` only for more \
             of the log (no cursor: the last 200 lines; `nextCursor` walks back).\n\
             3. Fix the cause, not the symptom: never weaken or skip a test to make it pass.\n\n\
             Add a short section to AGENTS.md or CLAUDE.md that points to `.salve/MCP.md`.",
            self.api.organization_id,
            p.organization_name.map(|n| format!(", named `{n}`")).unwrap_or_default()
        );
        vec![PromptMessage::new_text(Role::User, text)]
    }
}

#[tool_handler(router = self.tool_router)]
#[prompt_handler(router = self.prompt_router)]
impl ServerHandler for SalveMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().enable_prompts().build())
            .with_server_info(Implementation::new("salve", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Salve CI. To learn why a pipeline failed: workflows_search → pipelines_list → pipeline_jobs → failure_summary on the failed job (then jobs_logs for more of the log).",
            )
    }
}

/// The Streamable HTTP service to mount at `/mcp`. `allowed_hosts` are the `Host` values it
/// answers (rmcp's default, loopback only, breaks real deployments); `write` lists the
/// [`WRITE_TOOLS`].
pub fn service(
    api: Api,
    allowed_hosts: Vec<String>,
    write: bool,
) -> StreamableHttpService<SalveMcp, LocalSessionManager> {
    StreamableHttpService::new(
        move || Ok(SalveMcp::new(api.clone(), write)),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default().with_allowed_hosts(allowed_hosts),
    )
}

/// Serves the tools over stdin and stdout until the client closes them (`salve mcp`).
pub async fn serve_stdio(api: Api, write: bool) -> Result<(), McpError> {
    let running = SalveMcp::new(api, write)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| McpError::Session(e.to_string()))?;
    running.waiting().await.map(drop).map_err(|e| McpError::Session(e.to_string()))
}

/// Why the MCP server could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    #[error("cannot start an HTTP client: {0}")]
    Client(String),
    #[error("cannot reach the Salve server at {base}: {message}")]
    Unreachable { base: String, message: String },
    #[error("{base} does not answer like a Salve server: {message}")]
    NotSalve { base: String, message: String },
    /// The MCP session over stdio failed (a client that spoke something else, a closed pipe).
    #[error("the MCP session ended: {0}")]
    Session(String),
}
