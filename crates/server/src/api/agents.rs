//! `/agent-types` and `/agents`: self-hosted agent types (`s1-NAME`), as in Semaphore, and their
//! agents. A type's registration token is shown once and stored as its SHA-256; an agent
//! registers with it and gets a token of its own, which its heartbeats carry. Neither is an API
//! token: they open the agent routes only, and API tokens do not open those.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use salve_contract::api;
use salve_store::AgentRow;
use salve_store::agent_jobs::Finish;
use serde::Deserialize;

use crate::auth;
use crate::executor::{Report, payload_name};
use crate::http::{ApiError, ApiResult, S, blocking, json_body};
use crate::views;

pub async fn list_types(State(server): S) -> ApiResult<api::AgentTypeList> {
    let agent_types = server.store.agent_types().await?.iter().map(views::agent_type).collect();
    Ok(Json(api::AgentTypeList { agent_types }))
}

pub async fn create_type(
    State(server): S,
    body: Result<Json<api::NewAgentType>, JsonRejection>,
) -> Result<(StatusCode, Json<api::AgentTypeCreated>), ApiError> {
    let req = json_body(body)?;
    if !salve_contract::valid_agent_type_name(&req.name) {
        return Err(ApiError::bad(format!(
            "'{}' is not an agent type name: use s1- and 1 to 64 letters, digits, '-' and '_' (s1-linux-gpu)",
            req.name
        )));
    }
    let (token, hash) = auth::new_token();
    let made = server.store.create_agent_type(&req.name, &hash).await?;
    Ok((
        StatusCode::CREATED,
        Json(api::AgentTypeCreated { name: made.name, created_ms: made.created_ms, registration_token: token }),
    ))
}

pub async fn disable_type(State(server): S, Path(name): Path<String>) -> ApiResult<api::AgentType> {
    let found =
        server.store.agent_type(&name).await?.ok_or_else(|| {
            ApiError::not_found(format!("no agent type '{name}' (`salve agent-type list` shows them)"))
        })?;
    if found.disabled_ms.is_none() {
        server.store.disable_agent_type(&name).await?;
    }
    let now = server.store.agent_type(&name).await?.unwrap_or(found);
    Ok(Json(views::agent_type(&now)))
}

fn unauthorized(message: &str) -> ApiError {
    ApiError(StatusCode::UNAUTHORIZED, message.to_owned())
}

/// `POST /agents/register`: the bearer token is an enabled agent type's registration token.
pub async fn register(
    State(server): S,
    headers: HeaderMap,
    body: Result<Json<api::RegisterAgent>, JsonRejection>,
) -> Result<(StatusCode, Json<api::AgentRegistered>), ApiError> {
    let presented = auth::presented(&headers).filter(|t| !t.is_empty() && t.len() <= 200);
    let refused = "a registration token of an enabled agent type is needed as `Authorization: Bearer <token>` (`salve agent-type create s1-NAME` prints one)";
    let Some(presented) = presented else { return Err(unauthorized(refused)) };
    let Some(agent_type) = server.store.agent_type_by_token(&auth::hash(&presented)).await? else {
        return Err(unauthorized(refused));
    };
    let req = json_body(body)?;
    let ours = env!("CARGO_PKG_VERSION");
    if req.version != ours {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("this agent is Salve {}, the server {ours}: run the same release on both", req.version),
        ));
    }
    let name = req.name.trim();
    if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::bad("an agent needs a name of 1 to 100 characters, no control characters"));
    }
    if !(1..=64).contains(&req.slots) {
        return Err(ApiError::bad(format!("{} slots: an agent runs 1 to 64 jobs at once", req.slots)));
    }
    let (token, hash) = auth::new_token();
    let now = salve_store::now_ms();
    let row = AgentRow {
        id: uuid::Uuid::new_v4().to_string(),
        agent_type: agent_type.name.clone(),
        name: name.to_owned(),
        version: req.version,
        slots: i64::from(req.slots),
        registered_ms: now,
        last_seen_ms: now,
        disconnected_ms: None,
    };
    server.store.register_agent(&row, &hash).await?;
    tracing::info!(agent = %row.id, name = %row.name, agent_type = %row.agent_type, "agent registered");
    Ok((
        StatusCode::CREATED,
        Json(api::AgentRegistered {
            id: row.id,
            agent_type: agent_type.name,
            token,
            heartbeat_seconds: api::AGENT_HEARTBEAT_SECONDS,
            lost_after_seconds: api::AGENT_LOST_AFTER_SECONDS,
        }),
    ))
}

const AGENT_REFUSED: &str = "an agent's own token is needed (the one its registration returned); a disconnected agent, or one of a disabled type, registers again";

/// The connected agent the request's bearer token belongs to, marked as seen now.
async fn agent_of(server: &crate::server::Server, headers: &HeaderMap) -> Result<AgentRow, ApiError> {
    let presented = auth::presented(headers).filter(|t| !t.is_empty() && t.len() <= 200);
    let Some(presented) = presented else { return Err(unauthorized(AGENT_REFUSED)) };
    server.store.agent_seen(&auth::hash(&presented)).await?.ok_or_else(|| unauthorized(AGENT_REFUSED))
}

/// The connected agent the request's bearer token belongs to (a read: log chunks come often).
async fn agent_by_token(server: &crate::server::Server, headers: &HeaderMap) -> Result<AgentRow, ApiError> {
    let presented = auth::presented(headers).filter(|t| !t.is_empty() && t.len() <= 200);
    let Some(presented) = presented else { return Err(unauthorized(AGENT_REFUSED)) };
    server.store.agent_by_token(&auth::hash(&presented)).await?.ok_or_else(|| unauthorized(AGENT_REFUSED))
}

/// The longest a claim waits for a job.
const CLAIM_WAIT_SECONDS: u64 = 30;

/// `POST /agents/claim`: the oldest queued job of the agent's type, waiting up to
/// `wait_seconds` for one to be queued.
pub async fn claim(
    State(server): S,
    headers: HeaderMap,
    body: Result<Json<api::ClaimJob>, JsonRejection>,
) -> ApiResult<api::Claimed> {
    let agent = agent_of(&server, &headers).await?;
    let req = json_body(body)?;
    if req.wait_seconds > CLAIM_WAIT_SECONDS {
        return Err(ApiError::bad(format!(
            "wait_seconds {}: wait 0 to {CLAIM_WAIT_SECONDS} seconds",
            req.wait_seconds
        )));
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(req.wait_seconds);
    loop {
        // Registered before looking, so a job queued in between still wakes this claim.
        let queued = server.agent_work.notified();
        if let Some(claimed) = server.store.claim_agent_job(&agent, server.lease_ms()).await? {
            let row = &claimed.row;
            let opened = server.sealer().open_bytes(&payload_name(&row.job_id), &claimed.payload);
            let mut job: api::AgentJob = match opened.ok().and_then(|p| serde_json::from_slice(&p).ok()) {
                Some(job) => job,
                None => {
                    // Sealed under another key (the data folder's key was replaced): the job
                    // cannot run anywhere, so it fails now rather than waiting forever; the
                    // agent's other jobs go on.
                    let message =
                        "the queued job does not open with this server's secrets key (secrets.key was replaced)";
                    tracing::error!(job = %row.job_id, "{message}");
                    let report = Report::Unrunnable { message: message.into() }.json();
                    server.store.finish_agent_job(&row.job_id, row.attempt, &agent.id, &report, "failed", None).await?;
                    server.waiting.reported(&row.job_id);
                    return Err(crate::http::internal(message));
                }
            };
            job.attempt = u32::try_from(row.attempt).unwrap_or(u32::MAX);
            let name = auth::storage_token_name(&row.job_id, row.attempt);
            job.storage_token = auth::create_for(&server.store, &name, Some(&job.project.id)).await?.1;
            if let Ok(mut waits) = server.metrics.agent_waits.lock() {
                let waited = (salve_store::now_ms() - row.queued_ms).max(0) as f64 / 1000.0;
                let w = waits.entry(agent.agent_type.clone()).or_default();
                (w.0, w.1) = (w.0 + 1, w.1 + waited);
            }
            job.lease_seconds = server.config.agent_lost_after_seconds;
            tracing::info!(job = %row.job_id, attempt = row.attempt, agent = %agent.name, "agent claimed a job");
            return Ok(Json(api::Claimed { job: Some(job) }));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(Json(api::Claimed { job: None }));
        }
        tokio::select! {
            () = queued => {}
            // Jobs queued by another replica are found by looking again.
            () = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
            () = tokio::time::sleep_until(deadline) => {}
            () = server.shutdown.cancelled() => return Ok(Json(api::Claimed { job: None })),
        }
    }
}

/// Where a log chunk goes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkAt {
    attempt: i64,
    stream: api::LogStream,
    offset: u64,
}

fn gone() -> ApiError {
    ApiError(
        StatusCode::GONE,
        "this agent holds no such attempt of the job: it was lost (run again elsewhere), stopped before it started, \
         or finished; stop running it"
            .into(),
    )
}

/// `POST /agents/jobs/{id}/log?attempt=N&stream=log|index&offset=N`: the bytes of a job's log
/// (or its line index) from `offset` on. Idempotent: bytes the server holds already are
/// skipped, so a chunk sent again after a dropped connection is stored once; a chunk after a
/// gap is refused with the count to send from.
pub async fn log_chunk(
    State(server): S,
    Path(job_id): Path<String>,
    query: Result<Query<ChunkAt>, QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<api::LogAck> {
    let agent = agent_by_token(&server, &headers).await?;
    let Query(at) = query.map_err(|e| {
        ApiError::bad(format!("{}: a chunk is posted with ?attempt=N&stream=log|index&offset=BYTES", e.body_text()))
    })?;
    if at.stream == api::LogStream::Index
        && (!at.offset.is_multiple_of(INDEX_RECORD) || !(body.len() as u64).is_multiple_of(INDEX_RECORD))
    {
        return Err(ApiError::bad(format!("the line index is sent in whole {INDEX_RECORD}-byte records")));
    }
    let held =
        server.store.hold_agent_job(&job_id, at.attempt, &agent.id, server.lease_ms()).await?.ok_or_else(gone)?;
    let dir = std::path::PathBuf::from(&held.log_dir);
    let file = dir.join(match at.stream {
        api::LogStream::Log => salve_runner::log::LOG_FILE,
        api::LogStream::Index => salve_runner::log::INDEX_FILE,
    });
    let stored = blocking(move || write_at(&dir, &file, at.offset, &body)).await??;
    Ok(Json(api::LogAck { stored, stop: held.row.stop_reason }))
}

const INDEX_RECORD: u64 = 24;

/// Stores `bytes` at `offset` of `file`, skipping what it holds already; the bytes it holds
/// after.
fn write_at(dir: &std::path::Path, file: &std::path::Path, offset: u64, bytes: &[u8]) -> Result<u64, ApiError> {
    use std::os::unix::fs::FileExt as _;
    std::fs::create_dir_all(dir).map_err(crate::http::internal)?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(file)
        .map_err(crate::http::internal)?;
    let held = f.metadata().map_err(crate::http::internal)?.len();
    if offset > held {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "a chunk at byte {offset} leaves a gap: the server holds {held} bytes of this stream; send from there"
            ),
        ));
    }
    let end = offset + bytes.len() as u64;
    if end > held {
        let skip = usize::try_from(held - offset).unwrap_or(usize::MAX);
        f.write_all_at(&bytes[skip..], held).map_err(crate::http::internal)?;
    }
    Ok(end.max(held))
}

/// `POST /agents/jobs/{id}/finish`: how an attempt ended, taken once, after its whole log.
pub async fn finish(
    State(server): S,
    Path(job_id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<api::FinishJob>, JsonRejection>,
) -> ApiResult<api::JobFinished> {
    let agent = agent_by_token(&server, &headers).await?;
    let report = json_body(body)?;
    if report.result == salve_contract::RunResult::Canceled {
        return Err(ApiError::bad("a job that ran is passed, failed or stopped"));
    }
    if let Some(reason) = &report.stop_reason
        && salve_runner::StopReason::parse(reason).is_none()
    {
        return Err(ApiError::bad(format!("'{reason}' is not a stop reason (user, timeout, fast_failing, …)")));
    }
    if let Some(c) = report.commands.iter().find(|c| salve_runner::script::Phase::parse(&c.phase).is_none()) {
        return Err(ApiError::bad(format!("'{}' is not a phase: main, always, on_pass or on_fail", c.phase)));
    }
    if report.summary.len() > 4096 || report.commands.len() > 100_000 {
        return Err(ApiError::bad("a report holds a summary of at most 4096 bytes and at most 100000 commands"));
    }
    let attempt = report.attempt;
    if let Some(held) = server.store.hold_agent_job(&job_id, attempt.into(), &agent.id, server.lease_ms()).await? {
        let log = std::path::Path::new(&held.log_dir).join(salve_runner::log::LOG_FILE);
        let stored = tokio::fs::metadata(&log).await.map_or(0, |m| m.len());
        if stored < report.log_bytes {
            return Err(ApiError(
                StatusCode::CONFLICT,
                format!(
                    "the server holds {stored} of the log's {} bytes: send the rest, then finish",
                    report.log_bytes
                ),
            ));
        }
    }
    let result = report.result;
    let reason = report.stop_reason.clone();
    let stored = Report::Agent(report).json();
    let taken = server
        .store
        .finish_agent_job(&job_id, attempt.into(), &agent.id, &stored, result.as_str(), reason.as_deref())
        .await?;
    match taken {
        Finish::Stored => {
            server.drop_storage_token(&job_id, attempt.into()).await;
            server.waiting.reported(&job_id);
            Ok(Json(api::JobFinished { job_id, attempt, result }))
        }
        Finish::Twice => Err(ApiError(StatusCode::CONFLICT, "this attempt reported its end already".into())),
        Finish::NotHeld => Err(gone()),
    }
}

/// `POST /agents/heartbeat`.
pub async fn heartbeat(State(server): S, headers: HeaderMap) -> ApiResult<api::Agent> {
    let agent = agent_of(&server, &headers).await?;
    let jobs = held(&server, &agent.id).await?;
    Ok(Json(views::agent(&agent, salve_store::now_ms(), server.lease_ms(), jobs)))
}

/// `POST /agents/disconnect`: the agent is going away (its jobs are done or handed back).
pub async fn disconnect(State(server): S, headers: HeaderMap) -> ApiResult<api::Agent> {
    let agent = agent_of(&server, &headers).await?;
    server.store.disconnect_agent(&agent.id).await?;
    // Jobs it still held are lost now, not when their leases lapse.
    if server.store.release_agent_jobs(&agent.id).await? > 0 {
        crate::executor::reap(&server).await;
    }
    tracing::info!(agent = %agent.id, name = %agent.name, "agent disconnected");
    let now = salve_store::now_ms();
    Ok(Json(views::agent(&AgentRow { disconnected_ms: Some(now), ..agent }, now, server.lease_ms(), Vec::new())))
}

/// `GET /agents`.
pub async fn list(State(server): S) -> ApiResult<api::AgentList> {
    let now = salve_store::now_ms();
    let mut agents = Vec::new();
    for a in server.store.agents().await? {
        let jobs = held(&server, &a.id).await?;
        agents.push(views::agent(&a, now, server.lease_ms(), jobs));
    }
    Ok(Json(api::AgentList { agents }))
}

/// The ids of the jobs an agent runs now.
pub(crate) async fn held(server: &crate::server::Server, agent_id: &str) -> Result<Vec<String>, ApiError> {
    Ok(server.store.agent_held_jobs(agent_id).await?.into_iter().map(|j| j.job_id).collect())
}
