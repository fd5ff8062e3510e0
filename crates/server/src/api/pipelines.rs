//! `/pipelines`: list and describe pipelines, stop and promote them.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use salve_contract::api;
use serde::Deserialize;

use crate::http::{ApiError, ApiResult, S, json_body, query};
use crate::views;

#[derive(Deserialize)]
pub struct ListQuery {
    project: Option<String>,
    workflow_id: Option<String>,
    limit: Option<i64>,
}

pub async fn list(State(server): S, q: Result<Query<ListQuery>, QueryRejection>) -> ApiResult<api::PipelineList> {
    let q = query(q)?;
    let list = match (&q.project, &q.workflow_id) {
        (Some(name), None) => {
            let project = views::find_project(&server, name).await?;
            server.store.project_pipelines(&project.id, q.limit.unwrap_or(100).clamp(1, 10_000)).await?
        }
        (None, Some(w)) => server.store.workflow_pipelines(w).await?,
        _ => return Err(ApiError::bad("say whose pipelines: ?project=NAME or ?workflow_id=ID")),
    };
    Ok(Json(api::PipelineList { pipelines: list.iter().map(views::pipeline).collect() }))
}

pub async fn one(State(server): S, Path(id): Path<String>) -> ApiResult<api::Pipeline> {
    let info =
        server.store.pipeline_info(&id).await?.ok_or_else(|| ApiError::not_found(format!("no pipeline {id}")))?;
    let jobs = server.store.jobs(&id).await?;
    let attempts = server.store.job_attempts(&id).await?;
    let blocks = server
        .store
        .blocks(&id)
        .await?
        .iter()
        .map(|b| api::Block {
            name: b.name.clone(),
            state: views::state(&b.state),
            result: views::result(b.result.as_deref()),
            result_reason: b.result_reason.clone(),
            jobs: jobs.iter().filter(|j| j.block_name == b.name).map(|j| views::job(j, &attempts)).collect(),
        })
        .collect();
    let (w, p) = (&info.workflow, &info.pipeline);
    let passed_before = server.store.passed_before(&w.project_id, &w.sha, &p.file).await?;
    Ok(Json(api::Pipeline { pipeline: views::pipeline(&info), passed_before, blocks }))
}

pub async fn stop(State(server): S, Path(id): Path<String>) -> ApiResult<api::Stopping> {
    let stopping = server.stop(&id).await?;
    Ok(Json(api::Stopping { id, stopping }))
}

pub async fn promote(
    State(server): S,
    Path(id): Path<String>,
    body: Result<Json<api::Promote>, JsonRejection>,
) -> Result<(StatusCode, Json<api::Promoted>), ApiError> {
    let req = json_body(body)?;
    let params: BTreeMap<String, String> = req.params;
    let child = server.promote_manual(&id, &req.target, &params, req.override_, "api").await?;
    Ok((
        StatusCode::CREATED,
        Json(api::Promoted { pipeline_id: child.id, promotion_of: id, state: views::state(&child.state) }),
    ))
}
