//! `/jobs/{id}`: a job with its command records; stopping one job.

use axum::Json;
use axum::extract::{Path, State};
use salve_contract::api;

use crate::http::{ApiError, ApiResult, S};
use crate::views;

pub async fn one(State(server): S, Path(id): Path<String>) -> ApiResult<api::Job> {
    let j = server.store.job(&id).await?.ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
    let commands = server.store.commands(&id).await?.iter().map(views::command).collect();
    let attempts = server.store.job_attempts(&j.pipeline_id).await?;
    Ok(Json(api::Job { job: views::job(&j, &attempts), commands }))
}

pub async fn stop(State(server): S, Path(id): Path<String>) -> ApiResult<api::Stopping> {
    let stopping = server.stop_job(&id).await?;
    Ok(Json(api::Stopping { id, stopping }))
}
