//! The REST API under `/api/v1`: JSON in and out, a bearer token on every call but the health
//! check and the OpenAPI document, errors as `{"error": {"status", "message"}}` with a message
//! that says what to do.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use salve_engine::RefType;
use salve_git::Repo;
use salve_store::secrets::SecretData;
use salve_store::{JobRow, PipelineInfo, ProjectRow};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::work::{Server, Trigger, WorkError};
use crate::{artifacts, auth, forge, heals, live};

pub const OPENAPI: &str = include_str!("openapi.json");

/// An API error: its status and a message for a person.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

/// Runs `f` (git, the filesystem: anything that blocks) on the blocking pool, never on an async
/// worker thread.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

impl ApiError {
    pub fn not_found(what: impl Into<String>) -> ApiError {
        ApiError(StatusCode::NOT_FOUND, what.into())
    }
    pub fn bad(what: impl Into<String>) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, what.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.0, Json(json!({"error": {"status": self.0.as_u16(), "message": self.1}}))).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"salve\""));
        }
        r
    }
}

impl From<WorkError> for ApiError {
    fn from(e: WorkError) -> Self {
        match e {
            WorkError::NotFound(m) => ApiError(StatusCode::NOT_FOUND, m),
            WorkError::Invalid(m) => ApiError(StatusCode::UNPROCESSABLE_ENTITY, m),
            WorkError::Conflict(m) => ApiError(StatusCode::CONFLICT, m),
            WorkError::Internal(m) => internal(m),
        }
    }
}

impl From<salve_store::StoreError> for ApiError {
    fn from(e: salve_store::StoreError) -> Self {
        WorkError::from(e).into()
    }
}

fn internal(m: impl std::fmt::Display) -> ApiError {
    tracing::error!("internal error: {m}");
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("internal error: {m}"))
}

pub fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(v)| v).map_err(|e| {
        let status = if e.status() == StatusCode::PAYLOAD_TOO_LARGE { e.status() } else { StatusCode::BAD_REQUEST };
        ApiError(status, format!("the request body is not what this call takes: {}", e.body_text()))
    })
}

pub fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(v)| v).map_err(|e| ApiError::bad(format!("bad query parameters: {}", e.body_text())))
}

type S = State<Arc<Server>>;
type ApiResult = Result<Json<Value>, ApiError>;

pub fn router(server: Arc<Server>) -> Router {
    let open = Router::new()
        .route("/api/v1/health", get(|| async {
                Json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION"), "organization_id": crate::work::organization_id()}))
            }))
        .route("/api/v1/openapi.json", get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }));
    let guarded = Router::new()
        .route("/api/v1/projects", get(projects).post(create_project))
        .route("/api/v1/projects/{name}", get(project))
        .route("/api/v1/workflows", get(workflows).post(run_workflow))
        .route("/api/v1/workflows/{id}", get(workflow))
        .route("/api/v1/workflows/{id}/rerun", post(rerun_workflow))
        .route("/api/v1/pipelines", get(pipelines))
        .route("/api/v1/pipelines/{id}", get(pipeline))
        .route("/api/v1/pipelines/{id}/stop", post(stop_pipeline))
        .route("/api/v1/pipelines/{id}/promote", post(promote))
        .route("/api/v1/jobs/{id}", get(job))
        .route("/api/v1/jobs/{id}/stop", post(stop_job))
        .route("/api/v1/jobs/{id}/test-results", get(artifacts::job_test_results))
        .route("/api/v1/pipelines/{id}/test-results", get(artifacts::pipeline_test_results))
        .route("/api/v1/artifacts", get(artifacts::list))
        .route("/api/v1/jobs/{id}/logs", get(live::log_window))
        .route("/api/v1/jobs/{id}/logs/stream", get(live::log_stream))
        .route("/api/v1/jobs/{id}/failure", get(live::failure))
        .route("/api/v1/events", get(live::events))
        .route("/api/v1/secrets", get(secrets).post(put_secret))
        .route("/api/v1/secrets/{name}", axum::routing::delete(delete_secret))
        .route("/api/v1/heals", get(heals::heals).post(heals::claim))
        .route("/api/v1/heals/{id}", get(heals::heal))
        .route("/api/v1/heals/{id}/finish", post(heals::finish))
        .route("/api/v1/pulls", get(heals::pulls).post(heals::create_pull))
        .route("/api/v1/pulls/{project}/{number}", get(heals::pull))
        .route("/api/v1/pulls/{project}/{number}/merge", post(heals::merge))
        .route("/api/v1/pulls/{project}/{number}/close", post(heals::close))
        .route("/api/v1/tokens", get(tokens).post(create_token))
        .route("/api/v1/tokens/{id}", axum::routing::delete(delete_token))
        .route(
            "/api/v1/{*rest}",
            axum::routing::any(|| async { ApiError::not_found("no such API call: see /api/v1/openapi.json") }),
        )
        .route_layer(axum::middleware::from_fn_with_state(server.clone(), require_token));
    open.merge(guarded)
        .layer(axum::middleware::from_fn_with_state(server.clone(), refuse_oversize))
        .layer(axum::extract::DefaultBodyLimit::max(server.config.max_body_bytes))
        .with_state(server)
}

/// The body length a request declares (`Content-Length`), if it declares one.
pub fn declared_length(headers: &axum::http::HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
}

/// Refuses a body whose declared length is over the limit before any of it is read (the
/// body limit itself catches bodies that do not declare one).
async fn refuse_oversize(State(server): S, request: Request, next: Next) -> Response {
    let declared = declared_length(request.headers());
    let limit = server.config.max_body_bytes as u64;
    if declared.is_some_and(|n| n > limit) {
        return ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is larger than this server takes ({limit} bytes; max_body_mb in salve.toml sets it)"
            ),
        )
        .into_response();
    }
    next.run(request).await
}

pub async fn require_token(State(server): S, mut request: Request, next: Next) -> Response {
    // The web pages' scripts read (never write) with the browser's session instead.
    let reading = matches!(*request.method(), axum::http::Method::GET | axum::http::Method::HEAD);
    let caller = match auth::check(&server.store, request.headers()).await {
        Some(t) => Some(t),
        None if reading => crate::web::session(&server, request.headers()).await.map(|s| s.token),
        None => None,
    };
    let Some(caller) = caller else {
        return ApiError(
            StatusCode::UNAUTHORIZED,
            "a valid API token is needed: send it as `Authorization: Bearer <token>` (create one with `salve token create NAME --data-dir DIR`)".into(),
        )
        .into_response();
    };
    if caller.project_id.is_some()
        && let Some(what) = auth::scoped_refusal(request.method(), request.uri().path())
    {
        return ApiError(
            StatusCode::FORBIDDEN,
            format!("token '{}' belongs to one project's pipeline: it may not touch {what}", caller.name),
        )
        .into_response();
    }
    if let Some(own) = caller.project_id.clone()
        && let Err(e) = crate::scope::confine(&server, &own, &mut request).await
    {
        return e.into_response();
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// Refuses a project's token acting on another project.
pub fn same_project(caller: &Option<axum::Extension<salve_store::TokenRow>>, project_id: &str) -> Result<(), ApiError> {
    match caller.as_ref().and_then(|c| c.project_id.as_deref()) {
        Some(own) if own != project_id => Err(ApiError(
            StatusCode::FORBIDDEN,
            "this token belongs to another project's pipeline: it acts on its own project only".into(),
        )),
        _ => Ok(()),
    }
}

pub async fn project_json(server: &Server, p: &ProjectRow) -> Result<Value, ApiError> {
    let git_url = (p.kind == "hosted").then(|| format!("{}/git/{}.git", server.base_url(), p.name));
    // An external project's repository is the upstream its mirror fetches from.
    let upstream = if p.kind == "external" {
        let dir = p.repo_url.clone();
        blocking(move || Repo::new(&dir).config_get("remote.upstream.url")).await?
    } else {
        None
    };
    Ok(
        json!({"id": p.id, "name": p.name, "kind": p.kind, "git_url": git_url, "repo_url": upstream, "created_ms": p.created_ms}),
    )
}

pub fn pipeline_json(i: &PipelineInfo) -> Value {
    let (p, w) = (&i.pipeline, &i.workflow);
    json!({
        "id": p.id, "workflow_id": p.workflow_id, "project": i.project, "name": p.name, "file": p.file,
        "ref_type": w.ref_type, "branch": w.branch, "tag": (w.ref_type == "tag").then_some(&w.label),
        "label": w.label, "sha": w.sha, "state": p.state, "result": p.result, "result_reason": p.result_reason,
        "error": p.error, "promotion_of": p.promotion_of, "promoted_by": p.promoted_by,
        "params": serde_json::from_str::<Value>(&p.params).unwrap_or(Value::Null),
        "created_ms": p.created_ms, "started_ms": p.started_ms, "done_ms": p.done_ms,
    })
}

fn job_json(j: &JobRow) -> Value {
    json!({
        "id": j.id, "pipeline_id": j.pipeline_id, "block": j.block_name, "name": j.name, "state": j.state,
        "result": j.result, "result_reason": j.result_reason, "summary": j.summary,
        "started_ms": j.started_ms, "done_ms": j.done_ms,
    })
}

pub async fn find_project(server: &Server, name: &str) -> Result<ProjectRow, ApiError> {
    server
        .store
        .project(name)
        .await?
        .filter(|p| p.kind != "local")
        .ok_or_else(|| ApiError::not_found(format!("no project '{name}' (`salve project list` shows them)")))
}

async fn projects(State(server): S, caller: Option<axum::Extension<salve_store::TokenRow>>) -> ApiResult {
    // A project's token sees its own project only.
    let own = caller.as_ref().and_then(|c| c.project_id.clone());
    let mut list: Vec<Value> = Vec::new();
    for p in server.store.projects().await?.iter().filter(|p| own.as_ref().is_none_or(|id| *id == p.id)) {
        list.push(project_json(&server, p).await?);
    }
    Ok(Json(json!({"projects": list})))
}

async fn project(State(server): S, Path(name): Path<String>) -> ApiResult {
    Ok(Json(project_json(&server, &find_project(&server, &name).await?).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewProject {
    name: String,
    /// An external repository (fetched on webhooks); none: Salve hosts the repository.
    repo_url: Option<String>,
    webhook_secret: Option<String>,
}

async fn create_project(
    State(server): S,
    body: Result<Json<NewProject>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let req = json_body(body)?;
    let p = crate::create_project(&server, &req.name, req.repo_url.as_deref(), req.webhook_secret.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(project_json(&server, &p).await?)))
}

#[derive(Deserialize)]
struct WorkflowQuery {
    project: String,
    branch: Option<String>,
    limit: Option<i64>,
}

async fn workflows(State(server): S, q: Result<Query<WorkflowQuery>, QueryRejection>) -> ApiResult {
    let q = query(q)?;
    let project = find_project(&server, &q.project).await?;
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let list = server.store.workflows(&project.id, q.branch.as_deref(), limit).await?;
    let list: Vec<Value> = list.iter().map(|w| json!({"id": w.id, "project": project.name, "number": w.number, "ref_type": w.ref_type, "label": w.label, "branch": w.branch, "sha": w.sha, "triggered_by": w.triggered_by, "rerun_of": w.rerun_of, "created_ms": w.created_ms})).collect();
    Ok(Json(json!({"workflows": list})))
}

async fn workflow(State(server): S, Path(id): Path<String>) -> ApiResult {
    let w = server.store.workflow(&id).await?.ok_or_else(|| ApiError::not_found(format!("no workflow {id}")))?;
    let pipelines: Vec<Value> = server.store.workflow_pipelines(&id).await?.iter().map(pipeline_json).collect();
    Ok(Json(
        json!({"id": w.id, "number": w.number, "ref_type": w.ref_type, "label": w.label, "branch": w.branch, "sha": w.sha, "triggered_by": w.triggered_by, "rerun_of": w.rerun_of, "created_ms": w.created_ms, "pipelines": pipelines}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunWorkflow {
    project: String,
    branch: Option<String>,
    tag: Option<String>,
    /// A commit of the branch or tag (default: its head).
    sha: Option<String>,
}

async fn run_workflow(
    State(server): S,
    body: Result<Json<RunWorkflow>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let req = json_body(body)?;
    let project = find_project(&server, &req.project).await?;
    let (ref_type, label) = match (req.branch, req.tag) {
        (Some(b), None) => (RefType::Branch, b),
        (None, Some(t)) => (RefType::Tag, t),
        (None, None) => (RefType::Branch, "main".to_owned()),
        (Some(_), Some(_)) => return Err(ApiError::bad("give a branch or a tag, not both")),
    };
    if !Repo::valid_branch(&label) {
        return Err(ApiError::bad(format!("'{label}' is not a valid branch or tag name")));
    }
    let git_ref = format!("refs/{}/{label}", if ref_type == RefType::Tag { "tags" } else { "heads" });
    let (dir, wanted, asked) = (project.repo_url.clone(), git_ref.clone(), req.sha.clone());
    let (head, full) = blocking(move || {
        let repo = Repo::new(&dir);
        let full = asked
            .filter(|sha| sha.len() >= 4 && sha.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(|sha| repo.resolve(&format!("{sha}^{{commit}}")));
        (repo.resolve(&wanted), full)
    })
    .await?;
    let head = head.ok_or_else(|| ApiError::not_found(format!("the repository has no {git_ref}: push it first")))?;
    let sha = match req.sha {
        Some(sha) => full.flatten().ok_or_else(|| ApiError::not_found(format!("no commit {sha} in the repository")))?,
        None => head,
    };
    let trigger = Trigger {
        branch: if ref_type == RefType::Branch { label.clone() } else { String::new() },
        ref_type,
        label,
        sha,
        triggered_by: "api".into(),
        rerun_of: None,
    };
    let (w, p) = server.start_workflow(&project, &trigger).await?;
    Ok((StatusCode::CREATED, Json(json!({"workflow_id": w.id, "pipeline_id": p.id, "number": w.number}))))
}

async fn rerun_workflow(State(server): S, Path(id): Path<String>) -> Result<(StatusCode, Json<Value>), ApiError> {
    let w = server.store.workflow(&id).await?.ok_or_else(|| ApiError::not_found(format!("no workflow {id}")))?;
    let project =
        server.store.project(&w.project_id).await?.ok_or_else(|| ApiError::not_found("the project was deleted"))?;
    let trigger = Trigger {
        ref_type: RefType::parse(&w.ref_type).unwrap_or(RefType::Branch),
        label: w.label.clone(),
        branch: w.branch.clone(),
        sha: w.sha.clone(),
        triggered_by: "api".into(),
        rerun_of: Some(w.id.clone()),
    };
    let (w, p) = server.start_workflow(&project, &trigger).await?;
    Ok((StatusCode::CREATED, Json(json!({"workflow_id": w.id, "pipeline_id": p.id, "number": w.number}))))
}

#[derive(Deserialize)]
struct PipelineQuery {
    project: Option<String>,
    workflow_id: Option<String>,
    limit: Option<i64>,
}

async fn pipelines(State(server): S, q: Result<Query<PipelineQuery>, QueryRejection>) -> ApiResult {
    let q = query(q)?;
    let list = match (&q.project, &q.workflow_id) {
        (Some(name), None) => {
            let project = find_project(&server, name).await?;
            server.store.project_pipelines(&project.id, q.limit.unwrap_or(100).clamp(1, 10_000)).await?
        }
        (None, Some(w)) => server.store.workflow_pipelines(w).await?,
        _ => return Err(ApiError::bad("say whose pipelines: ?project=NAME or ?workflow_id=ID")),
    };
    Ok(Json(json!({"pipelines": list.iter().map(pipeline_json).collect::<Vec<_>>()})))
}

async fn pipeline(State(server): S, Path(id): Path<String>) -> ApiResult {
    let info =
        server.store.pipeline_info(&id).await?.ok_or_else(|| ApiError::not_found(format!("no pipeline {id}")))?;
    let jobs = server.store.jobs(&id).await?;
    let blocks: Vec<Value> = server
        .store
        .blocks(&id)
        .await?
        .iter()
        .map(|b| {
            let jobs: Vec<Value> = jobs.iter().filter(|j| j.block_name == b.name).map(job_json).collect();
            json!({"name": b.name, "state": b.state, "result": b.result, "result_reason": b.result_reason, "jobs": jobs})
        })
        .collect();
    let mut v = pipeline_json(&info);
    v["blocks"] = Value::Array(blocks);
    let (w, p) = (&info.workflow, &info.pipeline);
    v["passed_before"] = json!(server.store.passed_before(&w.project_id, &w.sha, &p.file).await?);
    Ok(Json(v))
}

async fn stop_pipeline(State(server): S, Path(id): Path<String>) -> ApiResult {
    let stopped = server.stop(&id).await?;
    Ok(Json(json!({"id": id, "stopping": stopped})))
}

async fn stop_job(State(server): S, Path(id): Path<String>) -> ApiResult {
    let stopped = server.stop_job(&id).await?;
    Ok(Json(json!({"id": id, "stopping": stopped})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Promote {
    target: String,
    #[serde(default)]
    params: BTreeMap<String, String>,
    #[serde(default, rename = "override")]
    override_: bool,
}

async fn promote(
    State(server): S,
    Path(id): Path<String>,
    body: Result<Json<Promote>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let req = json_body(body)?;
    let child = server.promote_manual(&id, &req.target, &req.params, req.override_, "api").await?;
    Ok((StatusCode::CREATED, Json(json!({"pipeline_id": child.id, "promotion_of": id, "state": child.state}))))
}

async fn job(State(server): S, Path(id): Path<String>) -> ApiResult {
    let j = server.store.job(&id).await?.ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
    let commands: Vec<Value> = server
        .store
        .commands(&id)
        .await?
        .iter()
        .map(|c| json!({"phase": c.phase, "index": c.idx, "command": c.command, "started_ms": c.started_ms, "duration_ms": c.duration_ms, "exit_code": c.exit_code, "first_line": c.first_line, "end_line": c.end_line}))
        .collect();
    let mut v = job_json(&j);
    v["commands"] = Value::Array(commands);
    Ok(Json(v))
}

async fn secrets(State(server): S) -> ApiResult {
    Ok(Json(json!({"secrets": server.store.secret_names().await?})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSecret {
    name: String,
    #[serde(default)]
    env_vars: Vec<NameValue>,
    #[serde(default)]
    files: Vec<SecretFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameValue {
    name: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretFile {
    path: String,
    /// The content, base64.
    content: String,
}

async fn put_secret(
    State(server): S,
    body: Result<Json<NewSecret>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    use base64::Engine as _;
    let req = json_body(body)?;
    if !crate::valid_secret_name(&req.name) {
        return Err(ApiError::bad(format!(
            "'{}' is not a valid secret name: 1 to 128 characters, no '/', no control characters, no spaces at either end",
            req.name
        )));
    }
    let mut data = SecretData::default();
    for v in req.env_vars {
        if !salve_runner::script::valid_name(&v.name) {
            return Err(ApiError::bad(format!("'{}' is not a valid variable name", v.name)));
        }
        data.env_vars.push((v.name, v.value));
    }
    for f in req.files {
        let content = base64::engine::general_purpose::STANDARD
            .decode(&f.content)
            .map_err(|e| ApiError::bad(format!("the content of {} is not base64: {e}", f.path)))?;
        data.files.push((f.path, content));
    }
    let sealed = server.sealer().seal(&req.name, &data).map_err(internal)?;
    server.store.put_secret(&req.name, &sealed).await?;
    Ok((StatusCode::CREATED, Json(json!({"name": req.name}))))
}

async fn delete_secret(State(server): S, Path(name): Path<String>) -> ApiResult {
    if server.store.delete_secret(&name).await? {
        Ok(Json(json!({"deleted": name})))
    } else {
        Err(ApiError::not_found(format!("no secret '{name}'")))
    }
}

async fn tokens(State(server): S) -> ApiResult {
    let list: Vec<Value> = server
        .store
        .tokens()
        .await?
        .iter()
        .map(|t| json!({"id": t.id, "name": t.name, "created_ms": t.created_ms, "last_used_ms": t.last_used_ms, "project_id": t.project_id}))
        .collect();
    Ok(Json(json!({"tokens": list})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    /// Limit the token to this project: it reads, records heals, pushes and opens pull
    /// requests there only, and never touches tokens or secrets.
    project: Option<String>,
}

async fn create_token(
    State(server): S,
    body: Result<Json<NewToken>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let req = json_body(body)?;
    if req.name.trim().is_empty() || req.name.len() > 100 {
        return Err(ApiError::bad("a token needs a name of 1 to 100 characters"));
    }
    let project = match &req.project {
        Some(name) => Some(find_project(&server, name).await?.id),
        None => None,
    };
    let (row, token) = auth::create_for(&server.store, &req.name, project.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(json!({"id": row.id, "name": row.name, "token": token, "project": req.project}))))
}

async fn delete_token(State(server): S, Path(id): Path<String>) -> ApiResult {
    if server.store.delete_token(&id).await? {
        Ok(Json(json!({"deleted": id})))
    } else {
        Err(ApiError::not_found(format!("no token {id}")))
    }
}

/// `/git/NAME.git/...`: git's smart HTTP protocol, a token required.
pub async fn git(State(server): S, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().strip_prefix("/git").unwrap_or("").to_owned();
    let query = parts.uri.query().unwrap_or("").to_owned();
    let Some(name) = path.strip_prefix('/').and_then(|p| p.split_once(".git/")).map(|(n, _)| n.to_owned()) else {
        return ApiError::not_found("git URLs look like /git/NAME.git").into_response();
    };
    if !forge::valid_name(&name) || path.contains("/../") || path.contains("//") {
        return ApiError::bad(format!("'{name}' is not a project name")).into_response();
    }
    let caller = auth::check(&server.store, &parts.headers).await;
    if caller.is_none() {
        let mut r = ApiError(
            StatusCode::UNAUTHORIZED,
            "git over HTTP needs an API token as the password (any user name) or a bearer header".into(),
        )
        .into_response();
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"salve\""));
        return r;
    }
    match server.store.project(&name).await {
        Ok(Some(p)) if caller.as_ref().and_then(|c| c.project_id.as_deref()).is_some_and(|own| own != p.id) => {
            return ApiError(StatusCode::FORBIDDEN, "this token belongs to another project's pipeline".to_owned())
                .into_response();
        }
        Ok(Some(p)) if p.kind == "hosted" => {}
        Ok(_) => return ApiError::not_found(format!("no hosted project '{name}'")).into_response(),
        Err(e) => return ApiError::from(e).into_response(),
    }
    if declared_length(&parts.headers).is_some_and(|n| n > server.config.max_push_bytes) {
        let limit = server.config.max_push_bytes;
        return ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a push is at most {limit} bytes here (max_push_mb in salve.toml sets it)"),
        )
        .into_response();
    }
    let push = forge::is_push(&path, &query);
    let push_file =
        push.then(|| server.config.data_dir.join("pushes").join(format!("{}.{name}", uuid::Uuid::new_v4())));
    let (done, finished) = tokio::sync::oneshot::channel();
    let root = server.config.data_dir.join("repos");
    let response = forge::http_backend(
        &root,
        forge::CgiRequest {
            method: &parts.method,
            path: &path,
            query: &query,
            headers: &parts.headers,
            body,
            max_body: server.config.max_push_bytes,
        },
        push_file.clone(),
        done,
    )
    .await;
    if let Some(file) = push_file {
        let server = server.clone();
        tokio::spawn(async move {
            let _ = finished.await;
            server.push_done(&file).await;
        });
    }
    match response {
        Ok(r) => r,
        Err(e) => internal(e).into_response(),
    }
}
