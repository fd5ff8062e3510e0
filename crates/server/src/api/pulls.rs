//! The embedded forge's pull requests over the API: numbered per project; opening one again
//! for the same head returns the open one; merging needs the head's newest pipeline, on its
//! current commit, to have passed, and starts the base branch's workflow as a push would.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use salve_contract::{PullState, RunResult, RunState, api};
use salve_git::Repo;
use salve_store::{PipelineInfo, PullRow};
use serde::Deserialize;

use crate::forge::RefUpdate;
use crate::http::{ApiError, ApiResult, S, blocking, json_body, query, same_project};
use crate::server::Server;
use crate::views;

/// `POST /api/v1/pulls`: 201 with a new pull request, or 200 with the open one of that head.
pub async fn create(
    State(server): S,
    caller: Option<axum::Extension<salve_store::TokenRow>>,
    body: Result<Json<api::NewPull>, JsonRejection>,
) -> Result<(StatusCode, Json<api::Pull>), ApiError> {
    let req = json_body(body)?;
    let project = views::find_project(&server, &req.project).await?;
    same_project(&caller, &project.id)?;
    for (what, b) in [("head", &req.head), ("base", &req.base)] {
        if !Repo::valid_branch(b) {
            return Err(ApiError::bad(format!("'{b}' is not a valid {what} branch name")));
        }
        let (dir, branch) = (project.repo_url.clone(), format!("refs/heads/{b}"));
        if blocking(move || Repo::new(&dir).resolve(&branch)).await?.is_none() {
            return Err(ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("the repository has no branch '{b}' ({what}): push it first"),
            ));
        }
    }
    if req.head == req.base {
        return Err(ApiError(StatusCode::UNPROCESSABLE_ENTITY, "the head and base branches are the same".into()));
    }
    let title = req.title.trim();
    if title.is_empty() || title.len() > 256 || title.contains('\n') {
        return Err(ApiError::bad("a pull request needs a one-line title of 1 to 256 characters"));
    }
    if req.body.len() > 256 * 1024 {
        return Err(ApiError::bad("the body is larger than 256 KiB"));
    }
    let row = PullRow {
        id: uuid::Uuid::new_v4().to_string(),
        project_id: project.id.clone(),
        head: req.head,
        base: req.base,
        title: title.to_owned(),
        body: req.body,
        created_by: req.created_by.unwrap_or_else(|| "api".into()),
        created_ms: salve_store::now_ms(),
        ..PullRow::default()
    };
    Ok(match server.store.open_pull(&row).await? {
        Ok(p) => {
            tracing::info!(project = %project.name, number = p.number, head = %p.head, "pull request opened");
            (StatusCode::CREATED, Json(views::pull(&project.name, &p)))
        }
        Err(p) => (StatusCode::OK, Json(views::pull(&project.name, &p))),
    })
}

#[derive(Deserialize)]
pub struct ListQuery {
    project: Option<String>,
    state: Option<String>,
    limit: Option<i64>,
}

pub async fn list(State(server): S, q: Result<Query<ListQuery>, QueryRejection>) -> ApiResult<api::PullList> {
    let q = query(q)?;
    let mut names = std::collections::HashMap::new();
    for p in server.store.projects().await? {
        names.insert(p.id.clone(), p.name.clone());
    }
    let project = match &q.project {
        Some(name) => Some(views::find_project(&server, name).await?.id),
        None => None,
    };
    let state = q.state.as_deref().filter(|s| *s != "all");
    let list = server.store.pulls(project.as_deref(), state, q.limit.unwrap_or(50).clamp(1, 1000)).await?;
    let pulls = list.iter().map(|p| views::pull(names.get(&p.project_id).map_or("", String::as_str), p)).collect();
    Ok(Json(api::PullList { pulls }))
}

pub async fn find_pull(
    server: &Server,
    project: &str,
    number: &str,
) -> Result<(salve_store::ProjectRow, PullRow), ApiError> {
    let number: i64 = number
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::bad(format!("'{number}' is not a pull request number: use 1, 2, ...")))?;
    let project = views::find_project(server, project).await?;
    let pull = server
        .store
        .pull(&project.id, number)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no pull request #{number} in {}", project.name)))?;
    Ok((project, pull))
}

/// CI on a branch: its newest workflow's first pipeline.
pub async fn branch_ci(server: &Server, project_id: &str, branch: &str) -> salve_store::Result<Option<PipelineInfo>> {
    let Some(w) = server.store.workflows(project_id, Some(branch), 1).await?.into_iter().next() else {
        return Ok(None);
    };
    Ok(server.store.workflow_pipelines(&w.id).await?.into_iter().find(|i| i.pipeline.promotion_of.is_none()))
}

/// A pull request's changes: base...head while it is open, the merge's own changes after.
pub fn pull_diff(repo_dir: &str, pull: &PullRow) -> String {
    let repo = Repo::new(repo_dir);
    if pull.state == PullState::Open.as_str() {
        repo.branch_diff(&pull.base, &pull.head)
    } else {
        pull.merged_sha.as_deref().map(|s| repo.commit_diff(s)).unwrap_or_default()
    }
}

/// The head's CI (see [`branch_ci`]) and whether it ran on the head's current commit.
pub async fn head_checks(
    server: &Server,
    project: &salve_store::ProjectRow,
    pull: &PullRow,
) -> Result<api::Checks, ApiError> {
    let (dir, head) = (project.repo_url.clone(), format!("refs/heads/{}", pull.head));
    let head_sha = blocking(move || Repo::new(&dir).resolve(&head)).await?;
    let Some(ci) = branch_ci(server, &project.id, &pull.head).await? else {
        return Ok(api::Checks { head_sha, sha: None, pipeline: None });
    };
    Ok(api::Checks { head_sha, sha: Some(ci.workflow.sha.clone()), pipeline: Some(views::pipeline(&ci)) })
}

pub async fn one(State(server): S, Path((project, number)): Path<(String, String)>) -> ApiResult<api::PullDetail> {
    let (project, pull) = find_pull(&server, &project, &number).await?;
    let checks = head_checks(&server, &project, &pull).await?;
    let (dir, p) = (project.repo_url.clone(), pull.clone());
    let diff = blocking(move || pull_diff(&dir, &p)).await?;
    let cut = diff.len() > 512 * 1024;
    let diff = if cut { diff[..diff.floor_char_boundary(512 * 1024)].to_owned() } else { diff };
    Ok(Json(api::PullDetail { pull: views::pull(&project.name, &pull), checks, diff, diff_truncated: cut }))
}

/// `POST /api/v1/pulls/{project}/{number}/merge`: refused unless CI passed on the head's
/// current commit; the merge starts the base branch's workflow as a push would.
pub async fn merge(State(server): S, Path((project, number)): Path<(String, String)>) -> ApiResult<api::Pull> {
    merge_pull(&server, &project, &number).await.map(Json)
}

/// Merges a pull request (the API's and the web page's merge).
pub async fn merge_pull(server: &Arc<Server>, project: &str, number: &str) -> Result<api::Pull, ApiError> {
    let (project, pull) = find_pull(server, project, number).await?;
    if pull.state != PullState::Open.as_str() {
        return Err(ApiError(StatusCode::CONFLICT, format!("pull request #{number} is {} already", pull.state)));
    }
    let checks = head_checks(server, &project, &pull).await?;
    let Some(head_sha) = checks.head_sha.clone() else {
        return Err(ApiError(StatusCode::CONFLICT, format!("branch '{}' is gone: nothing to merge", pull.head)));
    };
    let on_head = checks.pipeline.as_ref().filter(|_| checks.sha.as_deref() == Some(head_sha.as_str()));
    if !on_head.is_some_and(api::PipelineSummary::passed) {
        let why = match on_head {
            None => format!("CI has not run on '{}' at {}", pull.head, &head_sha[..head_sha.len().min(7)]),
            Some(p) if p.state != RunState::Done => format!("CI on '{}' is still {}", pull.head, p.state),
            Some(p) => format!("CI on '{}' {}", pull.head, p.result.map_or("ended", RunResult::as_str)),
        };
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("{why}: a pull request is merged only when its head's pipeline passed"),
        ));
    }
    let repo_dir = project.repo_url.clone();
    let (base, head, title) = (pull.base.clone(), head_sha.clone(), pull.title.clone());
    let message = format!("Merge pull request #{number} from {}\n\n{title}", pull.head);
    let merged = tokio::task::spawn_blocking(move || {
        Repo::new(&repo_dir).merge_into(&base, &head, &message, "Salve <salve@localhost>")
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| ApiError(StatusCode::CONFLICT, e.to_string()))?;
    server.store.end_pull(&pull.id, Some(&merged.1)).await?;
    tracing::info!(project = %project.name, number, sha = %merged.1, "pull request merged");
    let update = RefUpdate { old: merged.0, new: merged.1, name: format!("refs/heads/{}", pull.base) };
    server.pushed(&project, &[update]).await;
    let pull = server.store.pull(&project.id, pull.number).await?.unwrap_or(pull);
    Ok(views::pull(&project.name, &pull))
}

pub async fn close(State(server): S, Path((project, number)): Path<(String, String)>) -> ApiResult<api::Pull> {
    close_pull(&server, &project, &number).await.map(Json)
}

pub async fn close_pull(server: &Server, project: &str, number: &str) -> Result<api::Pull, ApiError> {
    let (project, pull) = find_pull(server, project, number).await?;
    server.store.end_pull(&pull.id, None).await?;
    let pull = server.store.pull(&project.id, pull.number).await?.unwrap_or(pull);
    Ok(views::pull(&project.name, &pull))
}
