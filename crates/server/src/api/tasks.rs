//! `/tasks`: a project's scheduled and on-demand workflows (Semaphore's tasks). A pipeline's
//! project token reads its own project's tasks only and changes none, nor runs them
//! (`auth::scoped_refusal`): a job starts no workflow.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use salve_contract::api;
use salve_store::TaskRow;
use serde::Deserialize;

use crate::http::{ApiError, ApiResult, S, json_body, query};
use crate::views;

#[derive(Deserialize)]
pub struct ListQuery {
    project: String,
}

async fn task_of(server: &crate::server::Server, id: &str) -> Result<TaskRow, ApiError> {
    server
        .store
        .task(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no task {id} (`salve task list` shows them)")))
}

async fn view(server: &crate::server::Server, t: &TaskRow) -> Result<api::Task, ApiError> {
    let project = server.store.project(&t.project_id).await?.map(|p| p.name).unwrap_or_default();
    Ok(views::task(&project, t))
}

pub async fn list(State(server): S, q: Result<Query<ListQuery>, QueryRejection>) -> ApiResult<api::TaskList> {
    let q = query(q)?;
    let project = views::find_project(&server, &q.project).await?;
    let tasks = server.store.tasks(&project.id).await?.iter().map(|t| views::task(&project.name, t)).collect();
    Ok(Json(api::TaskList { tasks }))
}

pub async fn create(
    State(server): S,
    body: Result<Json<api::NewTask>, JsonRejection>,
) -> Result<(StatusCode, Json<api::Task>), ApiError> {
    let req = json_body(body)?;
    let project = views::find_project(&server, &req.project).await?;
    let made = server.create_task(&project, req).await?;
    Ok((StatusCode::CREATED, Json(views::task(&project.name, &made))))
}

pub async fn one(State(server): S, Path(id): Path<String>) -> ApiResult<api::TaskDetail> {
    let t = task_of(&server, &id).await?;
    let mut recent_triggers = Vec::new();
    for tr in server.store.task_triggers(&t.id, 10).await? {
        let status = match &tr.workflow_id {
            Some(w) => server
                .store
                .workflow_pipelines(w)
                .await?
                .into_iter()
                .find(|i| i.pipeline.promotion_of.is_none())
                .map(|i| i.pipeline.result.clone().unwrap_or(i.pipeline.state.clone())),
            None => None,
        };
        recent_triggers.push(api::TaskTrigger {
            triggered_ms: tr.triggered_ms,
            scheduled: tr.scheduled,
            branch: tr.branch,
            pipeline_file: tr.pipeline_file,
            workflow_id: tr.workflow_id,
            status,
            error_message: tr.error,
        });
    }
    Ok(Json(api::TaskDetail { task: view(&server, &t).await?, recent_triggers }))
}

pub async fn run(
    State(server): S,
    Path(id): Path<String>,
    body: Result<Json<api::RunTask>, JsonRejection>,
) -> Result<(StatusCode, Json<api::TaskRun>), ApiError> {
    let t = task_of(&server, &id).await?;
    let req = json_body(body)?;
    let (trigger, w, p) = server.run_task(&t, req, false).await?;
    Ok((
        StatusCode::CREATED,
        Json(api::TaskRun {
            task_id: t.id,
            task_name: t.name,
            workflow_id: w.id,
            pipeline_id: p.id,
            branch: trigger.branch,
            pipeline_file: trigger.pipeline_file,
            triggered_ms: trigger.triggered_ms,
        }),
    ))
}

async fn set_paused(State(server): S, id: String, paused: bool) -> ApiResult<api::Task> {
    let t = task_of(&server, &id).await?;
    server.pause_task(&t, paused).await?;
    Ok(Json(view(&server, &task_of(&server, &id).await?).await?))
}

pub async fn pause(server: S, Path(id): Path<String>) -> ApiResult<api::Task> {
    set_paused(server, id, true).await
}

pub async fn resume(server: S, Path(id): Path<String>) -> ApiResult<api::Task> {
    set_paused(server, id, false).await
}

pub async fn delete(State(server): S, Path(id): Path<String>) -> ApiResult<api::Deleted> {
    if server.store.delete_task(&id).await? {
        Ok(Json(api::Deleted { deleted: id }))
    } else {
        Err(ApiError::not_found(format!("no task {id}")))
    }
}
