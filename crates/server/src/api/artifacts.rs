//! Artifacts and test results over the API. A project's artifacts live in
//! `<data>/artifacts/<project id>/{jobs,workflows,projects}/<id>/…` (what the toolbox's
//! `artifact` and `test-results publish` write from inside jobs).

use std::path::{Component, Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::Value;

use salve_contract::{RunState, api};

use crate::http::{ApiError, blocking};
use crate::server::Server;
use crate::views;

/// The most entries one listing returns.
const MAX_ENTRIES: usize = 1000;

/// The folder of one scope's artifacts, after checking the scope exists.
async fn scope_dir(server: &Server, scope: &str, id: &str) -> Result<PathBuf, ApiError> {
    Ok(scope_place(server, scope, id).await?.1)
}

/// The project a scope belongs to, and the folder of its artifacts.
async fn scope_place(server: &Server, scope: &str, id: &str) -> Result<(String, PathBuf), ApiError> {
    let project_id = scope_project(server, scope, id).await?;
    // Ids come from the store, but a project's own id names the folder of its jobs and workflows.
    let id = if scope == "projects" { project_id.clone() } else { id.to_owned() };
    let dir = folder(server, &project_id, scope, &id);
    Ok((project_id, dir))
}

/// The project that a scope's id (a job, a workflow, a project) belongs to.
pub async fn scope_project(server: &Server, scope: &str, id: &str) -> Result<String, ApiError> {
    Ok(match scope {
        "jobs" => {
            let job = server.store.job(id).await?.ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
            let info = server
                .store
                .pipeline_info(&job.pipeline_id)
                .await?
                .ok_or_else(|| ApiError::not_found("the job's pipeline is gone"))?;
            info.workflow.project_id
        }
        "workflows" => {
            server.store.workflow(id).await?.ok_or_else(|| ApiError::not_found(format!("no workflow {id}")))?.project_id
        }
        "projects" => {
            server.store.project(id).await?.ok_or_else(|| ApiError::not_found(format!("no project {id}")))?.id
        }
        other => return Err(ApiError::bad(format!("unknown scope '{other}': use jobs, workflows or projects"))),
    })
}

/// Where one scope's artifacts of a project live: `<data>/artifacts/<project id>/<scope>/<id>`.
pub fn folder(server: &Server, project_id: &str, scope: &str, id: &str) -> PathBuf {
    server.config.data_dir.join("artifacts").join(project_id).join(scope).join(id)
}

impl Server {
    /// Deletes the artifacts whose `--expire-in` has passed, in every project's storage.
    pub async fn sweep_artifacts(&self) {
        let root = self.config.data_dir.join("artifacts");
        let swept = tokio::task::spawn_blocking(move || {
            let now = u64::try_from(salve_store::now_ms()).unwrap_or(0);
            std::fs::read_dir(&root)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| salve_toolbox::sweep_expired_artifacts(&e.path(), now))
                .sum::<usize>()
        })
        .await
        .unwrap_or(0);
        if swept > 0 {
            tracing::info!(artifacts = swept, "expired artifacts deleted");
        }
    }
}

/// A relative path inside a scope: no `..`, no root, no prefix.
fn inside(path: &str) -> Result<PathBuf, ApiError> {
    let p = FsPath::new(path.trim_start_matches("./"));
    if p.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)) {
        Ok(p.to_owned())
    } else {
        Err(ApiError::bad(format!("'{path}' is not a relative path inside the artifacts (no leading '/', no '..')")))
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    scope: String,
    id: String,
    #[serde(default)]
    path: String,
}

/// `GET /api/v1/artifacts?scope=jobs|workflows|projects&id=ID[&path=DIR]`: the entries of a
/// folder of a scope's artifacts.
pub async fn list(
    State(server): State<Arc<Server>>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<api::ArtifactList>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad(format!("bad query parameters: {}", e.body_text())))?;
    let rel = inside(&q.path)?;
    let dir = scope_dir(&server, &q.scope, &q.id).await?.join(&rel);
    let entries = tokio::task::spawn_blocking(move || -> std::io::Result<(Vec<api::Artifact>, bool)> {
        let mut list = Vec::new();
        let read = match std::fs::read_dir(&dir) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((list, false)),
            Err(e) => return Err(e),
        };
        let mut truncated = false;
        for entry in read {
            let entry = entry?;
            if list.len() == MAX_ENTRIES {
                truncated = true;
                break;
            }
            // Links are not followed: a job may have left one pointing anywhere.
            let meta = entry.path().symlink_metadata()?;
            let name = entry.file_name().to_string_lossy().into_owned();
            list.push(api::Artifact {
                path: rel.join(&name).to_string_lossy().into_owned(),
                name,
                is_directory: meta.is_dir(),
                size: if meta.is_file() { meta.len() } else { 0 },
            });
        }
        list.sort_by(|a, b| a.name.cmp(&b.name));
        Ok((list, truncated))
    })
    .await
    .map_err(|e| ApiError(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| ApiError(axum::http::StatusCode::INTERNAL_SERVER_ERROR, format!("cannot list the artifacts: {e}")))?;
    let (artifacts, truncated) = entries;
    let page = api::Page { returned: artifacts.len(), truncated };
    Ok(Json(api::ArtifactList { scope: q.scope, scope_id: q.id, path: q.path, artifacts, page }))
}

/// How long a signed link works.
const SIGNED_FOR_MS: i64 = 5 * 60 * 1000;

#[derive(Deserialize)]
pub struct SignQuery {
    scope: String,
    id: String,
    path: String,
    #[serde(default)]
    method: Option<String>,
}

/// What a link signs: the method, the scope, its id, the file and when the link ends.
fn signed_message(method: &str, scope: &str, id: &str, path: &str, expires_ms: i64) -> String {
    format!("{method}\n{scope}\n{id}\n{path}\n{expires_ms}")
}

/// An artifact file of a scope, if it is one (no `..`, nothing through a symbolic link), with
/// the scope's project.
async fn artifact_file(server: &Server, scope: &str, id: &str, path: &str) -> Result<(String, PathBuf), ApiError> {
    let rel = inside(path)?;
    let (project_id, root) = scope_place(server, scope, id).await?;
    let full = root.join(&rel);
    let f = full.clone();
    let ok =
        blocking(move || crate::storage::no_link_between(&root, &f) && f.symlink_metadata().is_ok_and(|m| m.is_file()))
            .await?;
    if ok {
        Ok((project_id, full))
    } else {
        Err(ApiError::not_found(format!("no artifact file '{path}' in {scope} {id}")))
    }
}

/// `GET /api/v1/artifacts/signed-url?scope=&id=&path=[&method=GET|HEAD]`: a link to one artifact
/// file that works without a token for five minutes.
pub async fn signed_url(
    State(server): State<Arc<Server>>,
    q: Result<Query<SignQuery>, QueryRejection>,
) -> Result<Json<api::SignedUrls>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad(format!("bad query parameters: {}", e.body_text())))?;
    let method = q.method.clone().unwrap_or_else(|| "GET".into()).to_ascii_uppercase();
    if method != "GET" && method != "HEAD" {
        return Err(ApiError::bad(format!("method '{method}': a link is for GET or HEAD")));
    }
    let (project_id, _) = artifact_file(&server, &q.scope, &q.id, &q.path).await?;
    let expires_ms = salve_store::now_ms() + SIGNED_FOR_MS;
    let sig = server.sealer.sign(&signed_message(&method, &q.scope, &q.id, &q.path, expires_ms));
    let enc = crate::web::html::encode_query;
    let url = format!(
        "{}/api/v1/artifacts/download?scope={}&id={}&path={}&method={method}&expires={expires_ms}&sig={sig}",
        server.base_url(),
        enc(&q.scope),
        enc(&q.id),
        enc(&q.path)
    );
    Ok(Json(api::SignedUrls {
        project_id,
        scope: q.scope,
        scope_id: q.id,
        path: q.path,
        method: method.clone(),
        urls: vec![api::SignedUrl { url, method }],
        expires_ms,
    }))
}

#[derive(Deserialize)]
pub struct DownloadQuery {
    scope: String,
    id: String,
    path: String,
    method: String,
    expires: i64,
    sig: String,
}

/// `GET /api/v1/artifacts/download?…&expires=&sig=`: the file a signed link names, with no token;
/// a link that was altered or has expired is refused (403).
pub async fn download(
    State(server): State<Arc<Server>>,
    method: axum::http::Method,
    q: Result<Query<DownloadQuery>, QueryRejection>,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let refused = |why: &str| (axum::http::StatusCode::FORBIDDEN, why.to_owned()).into_response();
    let Ok(Query(q)) = q else { return refused("not a signed link: ask artifacts/signed-url for one") };
    let message = signed_message(&q.method, &q.scope, &q.id, &q.path, q.expires);
    if !server.sealer.verify(&message, &q.sig) || q.method != method.as_str() {
        return refused("this link was not signed by this server, or it was altered");
    }
    if q.expires <= salve_store::now_ms() {
        return refused("this link has expired: ask for a new one");
    }
    match artifact_file(&server, &q.scope, &q.id, &q.path).await {
        Ok((_, file)) => {
            let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            crate::http::send_file(file, &name, "application/octet-stream").await
        }
        Err(e) => e.into_response(),
    }
}

/// `GET /api/v1/jobs/{id}/test-results`: the JUnit report the job published
/// (`test-results publish`), as JSON, with its summary.
pub async fn job_test_results(
    State(server): State<Arc<Server>>,
    Path(id): Path<String>,
) -> Result<Json<api::JobTestResults>, ApiError> {
    let dir = scope_dir(&server, "jobs", &id).await?.join("test-results");
    let (report, summary) =
        blocking(move || (read_json(&dir.join("junit.json")), read_json(&dir.join("summary.json")))).await?;
    let report = report.ok_or_else(|| {
        ApiError::not_found(format!("job {id} published no test results (`test-results publish` in the job does)"))
    })?;
    Ok(Json(api::JobTestResults { scope: "job".into(), job_id: id, summary, report }))
}

/// `GET /api/v1/pipelines/{id}/test-results`: the reports every job of a done pipeline
/// published.
pub async fn pipeline_test_results(
    State(server): State<Arc<Server>>,
    Path(id): Path<String>,
) -> Result<Json<api::PipelineTestResults>, ApiError> {
    let info =
        server.store.pipeline_info(&id).await?.ok_or_else(|| ApiError::not_found(format!("no pipeline {id}")))?;
    if views::state(&info.pipeline.state) != RunState::Done {
        return Err(ApiError(
            axum::http::StatusCode::CONFLICT,
            format!("pipeline {id} is still {}: its test results are whole when it is done", info.pipeline.state),
        ));
    }
    let dir = scope_dir(&server, "workflows", &info.workflow.id).await?.join("test-results").join(&id);
    let mut jobs = blocking(move || {
        let mut reports = Vec::new();
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let (Some(job), Some(report)) = (name.strip_suffix(".json"), read_json(&entry.path())) {
                reports.push(api::JobReport { job_id: job.to_owned(), report });
            }
        }
        reports
    })
    .await?;
    if jobs.is_empty() {
        return Err(ApiError::not_found(format!("no job of pipeline {id} published test results")));
    }
    jobs.sort_by(|a, b| a.job_id.cmp(&b.job_id));
    Ok(Json(api::PipelineTestResults { scope: "pipeline".into(), pipeline_id: id, jobs }))
}

fn read_json(path: &FsPath) -> Option<Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}
