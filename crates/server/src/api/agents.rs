//! `/agent-types` and `/agents`: self-hosted agent types (`s1-NAME`), as in Semaphore, and their
//! agents. A type's registration token is shown once and stored as its SHA-256; an agent
//! registers with it and gets a token of its own, which its heartbeats carry. Neither is an API
//! token: they open the agent routes only, and API tokens do not open those.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use salve_contract::api;
use salve_store::AgentRow;

use crate::auth;
use crate::http::{ApiError, ApiResult, S, json_body};
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

/// The connected agent the request's bearer token belongs to, marked as seen now.
async fn agent_of(server: &crate::server::Server, headers: &HeaderMap) -> Result<AgentRow, ApiError> {
    let refused = "an agent's own token is needed (the one its registration returned); a disconnected agent, or one of a disabled type, registers again";
    let presented = auth::presented(headers).filter(|t| !t.is_empty() && t.len() <= 200);
    let Some(presented) = presented else { return Err(unauthorized(refused)) };
    server.store.agent_seen(&auth::hash(&presented)).await?.ok_or_else(|| unauthorized(refused))
}

/// `POST /agents/heartbeat`.
pub async fn heartbeat(State(server): S, headers: HeaderMap) -> ApiResult<api::Agent> {
    let agent = agent_of(&server, &headers).await?;
    Ok(Json(views::agent(&agent, salve_store::now_ms())))
}

/// `POST /agents/disconnect`: the agent is going away (its jobs are done or handed back).
pub async fn disconnect(State(server): S, headers: HeaderMap) -> ApiResult<api::Agent> {
    let agent = agent_of(&server, &headers).await?;
    server.store.disconnect_agent(&agent.id).await?;
    tracing::info!(agent = %agent.id, name = %agent.name, "agent disconnected");
    let now = salve_store::now_ms();
    Ok(Json(views::agent(&AgentRow { disconnected_ms: Some(now), ..agent }, now)))
}

/// `GET /agents`.
pub async fn list(State(server): S) -> ApiResult<api::AgentList> {
    let now = salve_store::now_ms();
    Ok(Json(api::AgentList { agents: server.store.agents().await?.iter().map(|a| views::agent(a, now)).collect() }))
}
