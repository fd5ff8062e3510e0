//! `/tokens`: API tokens (shown once, stored as SHA-256), optionally limited to a project.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use salve_contract::api;

use crate::auth;
use crate::http::{ApiError, ApiResult, S, json_body};
use crate::views;

pub async fn list(State(server): S) -> ApiResult<api::TokenList> {
    Ok(Json(api::TokenList { tokens: server.store.tokens().await?.iter().map(views::token).collect() }))
}

pub async fn create(
    State(server): S,
    body: Result<Json<api::NewToken>, JsonRejection>,
) -> Result<(StatusCode, Json<api::TokenCreated>), ApiError> {
    let req = json_body(body)?;
    if req.name.trim().is_empty() || req.name.len() > 100 {
        return Err(ApiError::bad("a token needs a name of 1 to 100 characters"));
    }
    let project = match &req.project {
        Some(name) => Some(views::find_project(&server, name).await?.id),
        None => None,
    };
    let (row, token) = auth::create_for(&server.store, &req.name, project.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(api::TokenCreated { id: row.id, name: row.name, token, project: req.project })))
}

pub async fn delete(State(server): S, Path(id): Path<String>) -> ApiResult<api::Deleted> {
    if server.store.delete_token(&id).await? {
        Ok(Json(api::Deleted { deleted: id }))
    } else {
        Err(ApiError::not_found(format!("no token {id}")))
    }
}
