//! The REST API under `/api/v1`: JSON in and out (the types of `salve_contract::api`), a bearer
//! token on every call but the health check and the OpenAPI document, errors as
//! `{"error": {"status", "message"}}` with a message that says what to do. One file per
//! resource; what they share is in `crate::http` and `crate::views`.

pub mod agents;
pub mod artifacts;
pub mod heals;
pub mod jobs;
pub mod live;
pub mod pipelines;
pub mod projects;
pub mod pulls;
pub mod secrets;
pub mod tasks;
pub mod tokens;
pub mod workflows;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use salve_contract::api;

use crate::auth;
use crate::http::{ApiError, S, declared_length};
use crate::server::Server;

/// The API's OpenAPI document, made from `salve_contract`'s types (the server's tests check that
/// this checked-in copy is the one they make).
pub const OPENAPI: &str = include_str!("../openapi.json");

pub fn router(server: Arc<Server>) -> Router {
    let open = Router::new()
        .route(
            "/api/v1/health",
            get(|| async {
                Json(api::Health {
                    status: "ok".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    organization_id: crate::server::organization_id(),
                })
            }),
        )
        .route("/api/v1/openapi.json", get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }))
        // A signed link carries its own proof (artifacts::download checks it).
        .route("/api/v1/artifacts/download", get(artifacts::download))
        // Agents authenticate with their own tokens, checked by these handlers.
        .route("/api/v1/agents/register", post(agents::register))
        .route("/api/v1/agents/heartbeat", post(agents::heartbeat))
        .route("/api/v1/agents/disconnect", post(agents::disconnect))
        .route("/api/v1/agents/claim", post(agents::claim))
        .route("/api/v1/agents/jobs/{id}/log", post(agents::log_chunk))
        .route("/api/v1/agents/jobs/{id}/finish", post(agents::finish));
    let guarded = Router::new()
        .route("/api/v1/projects", get(projects::list).post(projects::create))
        .route("/api/v1/projects/{name}", get(projects::one))
        .route("/api/v1/workflows", get(workflows::list).post(workflows::run))
        .route("/api/v1/workflows/{id}", get(workflows::one))
        .route("/api/v1/workflows/{id}/rerun", post(workflows::rerun))
        .route("/api/v1/pipelines", get(pipelines::list))
        .route("/api/v1/pipelines/{id}", get(pipelines::one))
        .route("/api/v1/pipelines/{id}/stop", post(pipelines::stop))
        .route("/api/v1/pipelines/{id}/promote", post(pipelines::promote))
        .route("/api/v1/jobs/{id}", get(jobs::one))
        .route("/api/v1/jobs/{id}/stop", post(jobs::stop))
        .route("/api/v1/jobs/{id}/test-results", get(artifacts::job_test_results))
        .route("/api/v1/pipelines/{id}/test-results", get(artifacts::pipeline_test_results))
        .route("/api/v1/artifacts", get(artifacts::list))
        .route("/api/v1/artifacts/signed-url", get(artifacts::signed_url))
        .route("/api/v1/jobs/{id}/logs", get(live::log_window))
        .route("/api/v1/jobs/{id}/logs/stream", get(live::log_stream))
        .route("/api/v1/jobs/{id}/failure", get(live::failure))
        .route("/api/v1/events", get(live::events))
        .route("/api/v1/agents", get(agents::list))
        .route("/api/v1/agent-types", get(agents::list_types).post(agents::create_type))
        .route("/api/v1/agent-types/{name}/disable", post(agents::disable_type))
        .route("/api/v1/secrets", get(secrets::list).post(secrets::put))
        .route("/api/v1/secrets/{name}", axum::routing::delete(secrets::delete))
        .route("/api/v1/heals", get(heals::list).post(heals::claim))
        .route("/api/v1/heals/{id}", get(heals::one))
        .route("/api/v1/heals/{id}/finish", post(heals::finish))
        .route("/api/v1/pulls", get(pulls::list).post(pulls::create))
        .route("/api/v1/pulls/{project}/{number}", get(pulls::one))
        .route("/api/v1/pulls/{project}/{number}/merge", post(pulls::merge))
        .route("/api/v1/pulls/{project}/{number}/close", post(pulls::close))
        .route("/api/v1/tasks", get(tasks::list).post(tasks::create))
        .route("/api/v1/tasks/{id}", get(tasks::one).delete(tasks::delete))
        .route("/api/v1/tasks/{id}/run", post(tasks::run))
        .route("/api/v1/tasks/{id}/pause", post(tasks::pause))
        .route("/api/v1/tasks/{id}/resume", post(tasks::resume))
        .route("/api/v1/tokens", get(tokens::list).post(tokens::create))
        .route("/api/v1/tokens/{id}", axum::routing::delete(tokens::delete))
        .route(
            "/api/v1/{*rest}",
            axum::routing::any(|| async { ApiError::not_found("no such API call: see /api/v1/openapi.json") }),
        )
        .route_layer(axum::middleware::from_fn_with_state(server.clone(), require_token));
    open.merge(guarded)
        .layer(axum::middleware::from_fn_with_state(server.clone(), refuse_oversize))
        .layer(axum::extract::DefaultBodyLimit::max(server.config.max_body_bytes))
        .with_state(server)
}

/// Refuses a body whose declared length is over the limit before any of it is read (the
/// body limit itself catches bodies that do not declare one).
async fn refuse_oversize(State(server): S, request: Request, next: Next) -> Response {
    let declared = declared_length(request.headers());
    let limit = server.config.max_body_bytes as u64;
    if declared.is_some_and(|n| n > limit) {
        return ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is larger than this server takes ({limit} bytes; max_body_mb in salve.toml sets it)"
            ),
        )
        .into_response();
    }
    next.run(request).await
}

pub async fn require_token(State(server): S, mut request: Request, next: Next) -> Response {
    // The web pages' scripts read (never write) with the browser's session instead.
    let reading = matches!(*request.method(), axum::http::Method::GET | axum::http::Method::HEAD);
    let caller = match auth::check(&server.store, request.headers()).await {
        Some(t) => Some(t),
        None if reading => crate::web::session(&server, request.headers()).await.map(|s| s.token),
        None => None,
    };
    let Some(caller) = caller else {
        return ApiError(
            StatusCode::UNAUTHORIZED,
            "a valid API token is needed: send it as `Authorization: Bearer <token>` (create one with `salve token create NAME --data-dir DIR`)".into(),
        )
        .into_response();
    };
    if caller.project_id.is_some()
        && let Some(what) = auth::scoped_refusal(request.method(), request.uri().path())
    {
        return ApiError(
            StatusCode::FORBIDDEN,
            format!("token '{}' belongs to one project's pipeline: it may not touch {what}", caller.name),
        )
        .into_response();
    }
    if let Some(own) = caller.project_id.clone()
        && let Err(e) = crate::scope::confine(&server, &own, &mut request).await
    {
        return e.into_response();
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}
