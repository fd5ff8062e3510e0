//! `/agent-types`: self-hosted agent types (`s1-NAME`), as in Semaphore. A type's registration
//! token is shown once and stored as its SHA-256; a project's token may not touch them.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use salve_contract::api;

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
