//! `/projects`: hosted and external projects.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use salve_contract::api;

use crate::http::{ApiError, ApiResult, S, json_body};
use crate::views;

pub async fn list(
    State(server): S,
    caller: Option<axum::Extension<salve_store::TokenRow>>,
) -> ApiResult<api::ProjectList> {
    // A project's token sees its own project only.
    let own = caller.as_ref().and_then(|c| c.project_id.clone());
    let mut projects = Vec::new();
    for p in server.store.projects().await?.iter().filter(|p| own.as_ref().is_none_or(|id| *id == p.id)) {
        projects.push(views::project(&server, p).await?);
    }
    Ok(Json(api::ProjectList { projects }))
}

pub async fn one(State(server): S, Path(name): Path<String>) -> ApiResult<api::Project> {
    Ok(Json(views::project(&server, &views::find_project(&server, &name).await?).await?))
}

pub async fn create(
    State(server): S,
    body: Result<Json<api::NewProject>, JsonRejection>,
) -> Result<(StatusCode, Json<api::Project>), ApiError> {
    let req = json_body(body)?;
    let p = crate::projects::create(&server, &req.name, req.repo_url.as_deref(), req.webhook_secret.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(views::project(&server, &p).await?)))
}
