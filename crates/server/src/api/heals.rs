//! Heal attempts over the API. A heal claims its failure first (`POST /heals`): one heal per
//! commit and failure fingerprint, and never one for a `selfheal-*` branch, whatever a
//! pipeline's promotion says; it records how it ended (`/heals/{id}/finish`) with the branch it
//! pushed, which links it to CI on that branch and to the pull request opened from it.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use salve_contract::{HealState, RunResult, RunState, api};
use salve_git::Repo;
use salve_store::HealRow;
use serde::Deserialize;

use crate::http::{ApiError, ApiResult, S, json_body, query, same_project};
use crate::views;

/// Branches heals push to; never healed themselves.
pub const HEAL_PREFIX: &str = "selfheal-";

/// `POST /api/v1/heals`: 201 with the new heal, or 409 with the one that exists.
pub async fn claim(
    State(server): S,
    caller: Option<axum::Extension<salve_store::TokenRow>>,
    body: Result<Json<api::ClaimHeal>, JsonRejection>,
) -> Result<Response, ApiError> {
    let req = json_body(body)?;
    let info = server
        .store
        .pipeline_info(&req.pipeline_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no pipeline {}", req.pipeline_id)))?;
    let (p, w) = (&info.pipeline, &info.workflow);
    same_project(&caller, &w.project_id)?;
    if w.branch.starts_with(HEAL_PREFIX) {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("'{}' is a heal branch: Salve never heals a heal (it would loop)", w.branch),
        ));
    }
    if views::state(&p.state) != RunState::Done || views::result(p.result.as_deref()) == Some(RunResult::Passed) {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "pipeline {} has not failed (it is {} {}): nothing to heal",
                p.id,
                p.state,
                p.result.as_deref().unwrap_or("")
            ),
        ));
    }
    if req.fingerprint.is_empty() || req.fingerprint.len() > 200 {
        return Err(ApiError::bad("a fingerprint of 1 to 200 characters is needed"));
    }
    let row = HealRow {
        id: uuid::Uuid::new_v4().to_string(),
        project_id: w.project_id.clone(),
        pipeline_id: p.id.clone(),
        sha: w.sha.clone(),
        branch: w.branch.clone(),
        fingerprint: req.fingerprint,
        job_id: req.job_id,
        state: HealState::Running.as_str().into(),
        created_ms: salve_store::now_ms(),
        ..HealRow::default()
    };
    Ok(match server.store.claim_heal(&row).await? {
        Ok(h) => (StatusCode::CREATED, Json(views::heal(&h))).into_response(),
        Err(h) => {
            let message = format!(
                "commit {} has a heal for this failure already ({}, {}): one heal per commit and failure",
                &h.sha[..h.sha.len().min(7)],
                h.id,
                h.outcome.as_deref().unwrap_or(&h.state)
            );
            let taken = api::HealTaken { heal: views::heal(&h), error: api::ErrorDetail { status: 409, message } };
            (StatusCode::CONFLICT, Json(taken)).into_response()
        }
    })
}

/// `POST /api/v1/heals/{id}/finish`.
/// (A project's token finishes its own project's heals only: `scope::confine` checks the path.)
pub async fn finish(
    State(server): S,
    Path(id): Path<String>,
    body: Result<Json<api::FinishHeal>, JsonRejection>,
) -> ApiResult<api::Heal> {
    let req = json_body(body)?;
    let report = serde_json::to_string(&req.report).map_err(|e| ApiError::bad(format!("the report: {e}")))?;
    if report.len() > 1 << 20 {
        return Err(ApiError::bad("the report is larger than 1 MiB: keep transcripts in artifacts"));
    }
    // The branch it pushed links the heal to CI on that branch and to its pull request.
    let heal_branch = req.report.heal_branch.as_deref().filter(|b| Repo::valid_branch(b));
    if !server.store.finish_heal(&id, req.outcome.as_str(), &report, heal_branch).await? {
        return Err(match server.store.heal(&id).await? {
            Some(_) => ApiError(StatusCode::CONFLICT, format!("heal {id} is done already")),
            None => ApiError::not_found(format!("no heal {id}")),
        });
    }
    one(State(server), Path(id)).await
}

pub async fn one(State(server): S, Path(id): Path<String>) -> ApiResult<api::Heal> {
    let h = server.store.heal(&id).await?.ok_or_else(|| ApiError::not_found(format!("no heal {id}")))?;
    Ok(Json(views::heal(&h)))
}

#[derive(Deserialize)]
pub struct ListQuery {
    project: Option<String>,
    branch: Option<String>,
    since_ms: Option<i64>,
    limit: Option<i64>,
}

pub async fn list(State(server): S, q: Result<Query<ListQuery>, QueryRejection>) -> ApiResult<api::HealList> {
    let q = query(q)?;
    let project = match &q.project {
        Some(name) => Some(views::find_project(&server, name).await?.id),
        None => None,
    };
    let list = server
        .store
        .heals(project.as_deref(), q.branch.as_deref(), q.since_ms.unwrap_or(0), q.limit.unwrap_or(50).clamp(1, 1000))
        .await?;
    Ok(Json(api::HealList { heals: list.iter().map(views::heal).collect() }))
}
