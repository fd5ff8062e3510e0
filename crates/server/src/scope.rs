//! What a project's token (the one a promoted pipeline's jobs get) may see: its own project's
//! records only. Every API call such a token makes, reads included (and so every MCP tool, which
//! calls the API with the caller's token), is checked here against the project that the path
//! or query names, before the handler runs. Lists that may span projects (heals, pull requests)
//! are narrowed to the token's project; the project list is filtered by its handler.

use std::collections::HashMap;

use axum::extract::{Query, Request};
use axum::http::{StatusCode, Uri};

use crate::api::artifacts;
use crate::http::ApiError;
use crate::server::Server;

/// Refuses the request when it names another project's records; narrows a cross-project list
/// to `own` (a project id).
pub async fn confine(server: &Server, own: &str, request: &mut Request) -> Result<(), ApiError> {
    let Some(rest) = request.uri().path().strip_prefix("/api/v1/") else { return Ok(()) };
    let parts: Vec<&str> = rest.split('/').collect();
    let params: HashMap<String, String> = Query::try_from_uri(request.uri()).map(|Query(q)| q).unwrap_or_default();
    let param = |name: &str| params.get(name).map(String::as_str);
    let owner = match parts.as_slice() {
        ["projects", name, ..] | ["pulls", name, ..] => project_of(server, name).await?,
        ["workflows", id, ..] => server.store.workflow(id).await?.map(|w| w.project_id),
        ["pipelines", id, ..] => pipeline_project(server, id).await?,
        ["jobs", id, ..] => match server.store.job(id).await? {
            Some(job) => pipeline_project(server, &job.pipeline_id).await?,
            None => None,
        },
        ["heals", id, ..] => server.store.heal(id).await?.map(|h| h.project_id),
        ["tasks", id, ..] => server.store.task(id).await?.map(|t| t.project_id),
        ["artifacts"] | ["artifacts", "signed-url"] => match (param("scope"), param("id")) {
            (Some(scope), Some(id)) => artifacts::scope_project(server, scope, id).await.ok(),
            _ => None,
        },
        ["events"] => match param("pipeline_id") {
            Some(id) => pipeline_project(server, id).await?,
            None => return Err(refusal("follows one pipeline's events: add ?pipeline_id=ID")),
        },
        ["workflows" | "pipelines" | "heals" | "pulls" | "tasks"] => match (param("project"), param("workflow_id")) {
            (Some(name), _) => project_of(server, name).await?,
            (None, Some(id)) => server.store.workflow(id).await?.map(|w| w.project_id),
            (None, None) => {
                if request.method() == axum::http::Method::GET {
                    narrow(server, own, request).await?;
                }
                None
            }
        },
        _ => None,
    };
    match owner {
        Some(project) if project != own => Err(refusal("acts on its own project only")),
        _ => Ok(()),
    }
}

/// The project's id, for its name or id; `None` for no such project (the handler says so).
async fn project_of(server: &Server, name: &str) -> Result<Option<String>, ApiError> {
    Ok(server.store.project(name).await?.map(|p| p.id))
}

async fn pipeline_project(server: &Server, id: &str) -> Result<Option<String>, ApiError> {
    Ok(server.store.pipeline_info(id).await?.map(|i| i.workflow.project_id))
}

/// Adds `project=<own name>` to a list's query.
async fn narrow(server: &Server, own: &str, request: &mut Request) -> Result<(), ApiError> {
    let Some(project) = server.store.project(own).await? else { return Err(refusal("has no project any more")) };
    let uri = request.uri();
    let query = uri.query().map_or(String::new(), |q| format!("{q}&"));
    // Project names are letters, digits, `-`, `_` and `.`: nothing to escape.
    let narrowed = format!("{}?{query}project={}", uri.path(), project.name);
    *request.uri_mut() = narrowed.parse::<Uri>().map_err(|e| ApiError::bad(format!("bad request path: {e}")))?;
    Ok(())
}

fn refusal(what: &str) -> ApiError {
    ApiError(StatusCode::FORBIDDEN, format!("this token belongs to one project's pipeline: it {what}"))
}
