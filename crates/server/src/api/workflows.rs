//! `/workflows`: list, describe, run and rerun workflows.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use salve_contract::api;
use salve_engine::RefKind;
use salve_git::Repo;
use serde::Deserialize;

use crate::http::{ApiError, ApiResult, S, blocking, json_body, query};
use crate::intake::Trigger;
use crate::views;

#[derive(Deserialize)]
pub struct ListQuery {
    project: String,
    branch: Option<String>,
    limit: Option<i64>,
}

pub async fn list(State(server): S, q: Result<Query<ListQuery>, QueryRejection>) -> ApiResult<api::WorkflowList> {
    let q = query(q)?;
    let project = views::find_project(&server, &q.project).await?;
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let list = server.store.workflows(&project.id, q.branch.as_deref(), limit).await?;
    let ids: Vec<String> = list.iter().map(|w| w.id.clone()).collect();
    let mut initial = server.store.initial_pipelines(&ids).await?;
    let workflows = list.iter().map(|w| views::workflow(&project.name, w, initial.remove(&w.id))).collect();
    Ok(Json(api::WorkflowList { workflows }))
}

pub async fn one(State(server): S, Path(id): Path<String>) -> ApiResult<api::Workflow> {
    let w = server.store.workflow(&id).await?.ok_or_else(|| ApiError::not_found(format!("no workflow {id}")))?;
    let pipelines = server.store.workflow_pipelines(&id).await?;
    let project = match pipelines.first() {
        Some(i) => i.project.clone(),
        None => server.store.project(&w.project_id).await?.map(|p| p.name).unwrap_or_default(),
    };
    let initial = pipelines.iter().find(|i| i.pipeline.promotion_of.is_none()).map(|i| i.pipeline.id.clone());
    Ok(Json(api::Workflow {
        workflow: views::workflow(&project, &w, initial),
        pipelines: pipelines.iter().map(views::pipeline).collect(),
    }))
}

pub async fn run(
    State(server): S,
    body: Result<Json<api::RunWorkflow>, JsonRejection>,
) -> Result<(StatusCode, Json<api::Started>), ApiError> {
    let req = json_body(body)?;
    let project = views::find_project(&server, &req.project).await?;
    let (ref_type, label) = match (req.branch, req.tag) {
        (Some(b), None) => (RefKind::Branch, b),
        (None, Some(t)) => (RefKind::Tag, t),
        (None, None) => (RefKind::Branch, "main".to_owned()),
        (Some(_), Some(_)) => return Err(ApiError::bad("give a branch or a tag, not both")),
    };
    if !Repo::valid_branch(&label) {
        return Err(ApiError::bad(format!("'{label}' is not a valid branch or tag name")));
    }
    let git_ref = format!("refs/{}/{label}", if ref_type == RefKind::Tag { "tags" } else { "heads" });
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
        branch: if ref_type == RefKind::Branch { label.clone() } else { String::new() },
        ref_type,
        label,
        sha,
        triggered_by: "api".into(),
        rerun_of: None,
        file: crate::server::DEFAULT_FILE.into(),
        params: Default::default(),
    };
    let (w, p) = server.start_workflow(&project, &trigger).await?;
    Ok((StatusCode::CREATED, Json(api::Started { workflow_id: w.id, pipeline_id: p.id, number: w.number })))
}

pub async fn rerun(State(server): S, Path(id): Path<String>) -> Result<(StatusCode, Json<api::Started>), ApiError> {
    let w = server.store.workflow(&id).await?.ok_or_else(|| ApiError::not_found(format!("no workflow {id}")))?;
    let project =
        server.store.project(&w.project_id).await?.ok_or_else(|| ApiError::not_found("the project was deleted"))?;
    // Again as it first ran: its first pipeline's file and parameters (a task's run keeps them).
    let first = server.store.workflow_pipelines(&id).await?.into_iter().find(|i| i.pipeline.promotion_of.is_none());
    let (file, params) = match first {
        Some(i) => (i.pipeline.file.clone(), salve_launch::params(&i.pipeline)),
        None => (crate::server::DEFAULT_FILE.to_owned(), Default::default()),
    };
    let trigger = Trigger {
        ref_type: views::ref_kind(&w.ref_type),
        label: w.label.clone(),
        branch: w.branch.clone(),
        sha: w.sha.clone(),
        triggered_by: "api".into(),
        rerun_of: Some(w.id.clone()),
        file,
        params,
    };
    let (w, p) = server.start_workflow(&project, &trigger).await?;
    Ok((StatusCode::CREATED, Json(api::Started { workflow_id: w.id, pipeline_id: p.id, number: w.number })))
}
