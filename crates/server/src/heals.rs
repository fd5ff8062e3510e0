//! Heal attempts and the embedded forge's pull requests, over the API.
//!
//! A heal claims its failure first (`POST /heals`): one heal per commit and failure
//! fingerprint, and never one for a `selfheal-*` branch, whatever a pipeline's promotion says.
//! Pull requests are numbered per project; creating one again for the same head returns the
//! open one; merging needs the head's latest pipeline to have passed.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use salve_contract::HealOutcome;
use salve_git::Repo;
use salve_store::{HealRow, PipelineInfo, PullRow};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::{ApiError, find_project, json_body, query};
use crate::forge::RefUpdate;
use crate::work::Server;

type S = State<Arc<Server>>;
type ApiResult = Result<Json<Value>, ApiError>;

/// Branches heals push to; never healed themselves.
pub const HEAL_PREFIX: &str = "selfheal-";

fn heal_json(h: &HealRow) -> Value {
    json!({
        "id": h.id, "project_id": h.project_id, "pipeline_id": h.pipeline_id, "sha": h.sha, "branch": h.branch,
        "fingerprint": h.fingerprint, "job_id": h.job_id, "state": h.state, "outcome": h.outcome,
        "report": serde_json::from_str::<Value>(&h.report).unwrap_or(Value::Null),
        "created_ms": h.created_ms, "finished_ms": h.finished_ms,
        "heal_branch": h.heal_branch, "pull_request": h.pull_request,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    pipeline_id: String,
    fingerprint: String,
    job_id: Option<String>,
}

/// `POST /api/v1/heals`: 201 with the new heal, or 409 with the one that exists.
pub async fn claim(
    State(server): S,
    caller: Option<axum::Extension<salve_store::TokenRow>>,
    body: Result<Json<Claim>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let req = json_body(body)?;
    let info = server
        .store
        .pipeline_info(&req.pipeline_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no pipeline {}", req.pipeline_id)))?;
    let (p, w) = (&info.pipeline, &info.workflow);
    crate::api::same_project(&caller, &w.project_id)?;
    if w.branch.starts_with(HEAL_PREFIX) {
        return Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("'{}' is a heal branch: Salve never heals a heal (it would loop)", w.branch),
        ));
    }
    if p.state != "done" || p.result.as_deref() == Some("passed") {
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
        state: "running".into(),
        created_ms: salve_store::now_ms(),
        ..HealRow::default()
    };
    match server.store.claim_heal(&row).await? {
        Ok(h) => Ok((StatusCode::CREATED, Json(heal_json(&h)))),
        Err(h) => {
            let mut v = heal_json(&h);
            v["error"] = json!({"status": 409, "message": format!(
                "commit {} has a heal for this failure already ({}, {}): one heal per commit and failure",
                &h.sha[..h.sha.len().min(7)], h.id, h.outcome.as_deref().unwrap_or(&h.state)
            )});
            Ok((StatusCode::CONFLICT, Json(v)))
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Finish {
    outcome: String,
    #[serde(default)]
    report: Value,
}

/// `POST /api/v1/heals/{id}/finish`.
/// (A project's token finishes its own project's heals only: `scope::confine` checks the path.)
pub async fn finish(State(server): S, Path(id): Path<String>, body: Result<Json<Finish>, JsonRejection>) -> ApiResult {
    let req = json_body(body)?;
    let Some(outcome) = HealOutcome::parse(&req.outcome) else {
        let names: Vec<&str> = HealOutcome::ALL.iter().map(|o| o.as_str()).collect();
        return Err(ApiError::bad(format!("'{}' is not an outcome: use one of {}", req.outcome, names.join(", "))));
    };
    let report = if req.report.is_null() { "{}".to_owned() } else { req.report.to_string() };
    if report.len() > 1 << 20 {
        return Err(ApiError::bad("the report is larger than 1 MiB: keep transcripts in artifacts"));
    }
    // The branch it pushed links the heal to CI on that branch and to its pull request.
    let heal_branch = req.report["heal_branch"].as_str().filter(|b| Repo::valid_branch(b));
    if !server.store.finish_heal(&id, outcome.as_str(), &report, heal_branch).await? {
        return Err(match server.store.heal(&id).await? {
            Some(_) => ApiError(StatusCode::CONFLICT, format!("heal {id} is done already")),
            None => ApiError::not_found(format!("no heal {id}")),
        });
    }
    heal(State(server), Path(id)).await
}

pub async fn heal(State(server): S, Path(id): Path<String>) -> ApiResult {
    let h = server.store.heal(&id).await?.ok_or_else(|| ApiError::not_found(format!("no heal {id}")))?;
    Ok(Json(heal_json(&h)))
}

#[derive(Deserialize)]
pub struct HealQuery {
    project: Option<String>,
    branch: Option<String>,
    since_ms: Option<i64>,
    limit: Option<i64>,
}

pub async fn heals(State(server): S, q: Result<Query<HealQuery>, QueryRejection>) -> ApiResult {
    let q = query(q)?;
    let project = match &q.project {
        Some(name) => Some(find_project(&server, name).await?.id),
        None => None,
    };
    let list = server
        .store
        .heals(project.as_deref(), q.branch.as_deref(), q.since_ms.unwrap_or(0), q.limit.unwrap_or(50).clamp(1, 1000))
        .await?;
    Ok(Json(json!({"heals": list.iter().map(heal_json).collect::<Vec<_>>()})))
}

fn pull_json(project: &str, p: &PullRow) -> Value {
    json!({
        "number": p.number, "project": project, "head": p.head, "base": p.base, "title": p.title, "body": p.body,
        "state": p.state, "created_by": p.created_by, "created_ms": p.created_ms, "merged_sha": p.merged_sha,
        "merged_ms": p.merged_ms,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPull {
    project: String,
    head: String,
    base: String,
    title: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    created_by: Option<String>,
}

/// `POST /api/v1/pulls`: 201 with a new pull request, or 200 with the open one of that head.
pub async fn create_pull(
    State(server): S,
    caller: Option<axum::Extension<salve_store::TokenRow>>,
    body: Result<Json<NewPull>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let req = json_body(body)?;
    let project = find_project(&server, &req.project).await?;
    crate::api::same_project(&caller, &project.id)?;
    for (what, b) in [("head", &req.head), ("base", &req.base)] {
        if !Repo::valid_branch(b) {
            return Err(ApiError::bad(format!("'{b}' is not a valid {what} branch name")));
        }
        let (dir, branch) = (project.repo_url.clone(), format!("refs/heads/{b}"));
        if crate::api::blocking(move || Repo::new(&dir).resolve(&branch)).await?.is_none() {
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
            (StatusCode::CREATED, Json(pull_json(&project.name, &p)))
        }
        Err(p) => (StatusCode::OK, Json(pull_json(&project.name, &p))),
    })
}

#[derive(Deserialize)]
pub struct PullQuery {
    project: Option<String>,
    state: Option<String>,
    limit: Option<i64>,
}

pub async fn pulls(State(server): S, q: Result<Query<PullQuery>, QueryRejection>) -> ApiResult {
    let q = query(q)?;
    let mut names = std::collections::HashMap::new();
    for p in server.store.projects().await? {
        names.insert(p.id.clone(), p.name.clone());
    }
    let project = match &q.project {
        Some(name) => Some(find_project(&server, name).await?.id),
        None => None,
    };
    let state = q.state.as_deref().filter(|s| *s != "all");
    let list = server.store.pulls(project.as_deref(), state, q.limit.unwrap_or(50).clamp(1, 1000)).await?;
    let list: Vec<Value> =
        list.iter().map(|p| pull_json(names.get(&p.project_id).map_or("", String::as_str), p)).collect();
    Ok(Json(json!({"pulls": list})))
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
    let project = find_project(server, project).await?;
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
    if pull.state == "open" {
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
) -> Result<Value, ApiError> {
    let (dir, head) = (project.repo_url.clone(), format!("refs/heads/{}", pull.head));
    let head_sha = crate::api::blocking(move || Repo::new(&dir).resolve(&head)).await?;
    let Some(ci) = branch_ci(server, &project.id, &pull.head).await? else {
        return Ok(json!({"head_sha": head_sha, "pipeline": null}));
    };
    Ok(json!({"head_sha": head_sha, "sha": ci.workflow.sha, "pipeline": crate::api::pipeline_json(&ci)}))
}

pub async fn pull(State(server): S, Path((project, number)): Path<(String, String)>) -> ApiResult {
    let (project, pull) = find_pull(&server, &project, &number).await?;
    let mut v = pull_json(&project.name, &pull);
    v["checks"] = head_checks(&server, &project, &pull).await?;
    let (dir, p) = (project.repo_url.clone(), pull.clone());
    let diff = crate::api::blocking(move || pull_diff(&dir, &p)).await?;
    let cut = diff.len() > 512 * 1024;
    v["diff"] = json!(if cut { diff[..diff.floor_char_boundary(512 * 1024)].to_owned() } else { diff });
    v["diff_truncated"] = json!(cut);
    Ok(Json(v))
}

/// `POST /api/v1/pulls/{project}/{number}/merge`: refused unless CI passed on the head's
/// current commit; the merge starts the base branch's workflow as a push would.
pub async fn merge(State(server): S, Path((project, number)): Path<(String, String)>) -> ApiResult {
    merge_pull(&server, &project, &number).await.map(Json)
}

/// Merges a pull request (the API's and the web page's merge).
pub async fn merge_pull(server: &Arc<Server>, project: &str, number: &str) -> Result<Value, ApiError> {
    let (project, pull) = find_pull(server, project, number).await?;
    if pull.state != "open" {
        return Err(ApiError(StatusCode::CONFLICT, format!("pull request #{number} is {} already", pull.state)));
    }
    let checks = head_checks(server, &project, &pull).await?;
    let head_sha = checks["head_sha"].as_str().map(str::to_owned);
    let Some(head_sha) = head_sha else {
        return Err(ApiError(StatusCode::CONFLICT, format!("branch '{}' is gone: nothing to merge", pull.head)));
    };
    let result = checks["pipeline"]["result"].as_str().unwrap_or("");
    let state = checks["pipeline"]["state"].as_str().unwrap_or("");
    if checks["sha"].as_str() != Some(head_sha.as_str()) || state != "done" || result != "passed" {
        let why = if checks["pipeline"].is_null() || checks["sha"].as_str() != Some(head_sha.as_str()) {
            format!("CI has not run on '{}' at {}", pull.head, &head_sha[..7])
        } else if state != "done" {
            format!("CI on '{}' is still {state}", pull.head)
        } else {
            format!("CI on '{}' {result}", pull.head)
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
    Ok(pull_json(&project.name, &pull))
}

pub async fn close(State(server): S, Path((project, number)): Path<(String, String)>) -> ApiResult {
    close_pull(&server, &project, &number).await.map(Json)
}

pub async fn close_pull(server: &Server, project: &str, number: &str) -> Result<Value, ApiError> {
    let (project, pull) = find_pull(server, project, number).await?;
    server.store.end_pull(&pull.id, None).await?;
    let pull = server.store.pull(&project.id, pull.number).await?.unwrap_or(pull);
    Ok(pull_json(&project.name, &pull))
}
