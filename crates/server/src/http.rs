//! What every handler shares: the API's error (a status and a message that says what to do,
//! as `{"error": {"status", "message"}}`), body and query extractors that explain a bad
//! request, and [`blocking`] for work that must not run on an async worker thread.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use salve_contract::api;

use crate::server::{Server, WorkError};

/// The state every handler gets.
pub type S = State<Arc<Server>>;
/// A handler's JSON answer.
pub type ApiResult<T> = Result<Json<T>, ApiError>;

/// An API error: its status and a message for a person.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

/// Runs `f` (git, the filesystem: anything that blocks) on the blocking pool, never on an async
/// worker thread.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

impl ApiError {
    pub fn not_found(what: impl Into<String>) -> ApiError {
        ApiError(StatusCode::NOT_FOUND, what.into())
    }
    pub fn bad(what: impl Into<String>) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, what.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = api::Error { error: api::ErrorDetail { status: self.0.as_u16(), message: self.1 } };
        let mut r = (self.0, Json(body)).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"salve\""));
        }
        r
    }
}

impl From<WorkError> for ApiError {
    fn from(e: WorkError) -> Self {
        match e {
            WorkError::NotFound(m) => ApiError(StatusCode::NOT_FOUND, m),
            WorkError::Invalid(m) => ApiError(StatusCode::UNPROCESSABLE_ENTITY, m),
            WorkError::Conflict(m) => ApiError(StatusCode::CONFLICT, m),
            WorkError::Internal(m) => internal(m),
        }
    }
}

impl From<salve_store::StoreError> for ApiError {
    fn from(e: salve_store::StoreError) -> Self {
        WorkError::from(e).into()
    }
}

pub fn internal(m: impl std::fmt::Display) -> ApiError {
    tracing::error!("internal error: {m}");
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("internal error: {m}"))
}

pub fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(v)| v).map_err(|e| {
        let status = if e.status() == StatusCode::PAYLOAD_TOO_LARGE { e.status() } else { StatusCode::BAD_REQUEST };
        ApiError(status, format!("the request body is not what this call takes: {}", e.body_text()))
    })
}

pub fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(v)| v).map_err(|e| ApiError::bad(format!("bad query parameters: {}", e.body_text())))
}

/// The body length a request declares (`Content-Length`), if it declares one.
pub fn declared_length(headers: &axum::http::HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
}

/// Refuses a project's token acting on another project.
pub fn same_project(caller: &Option<axum::Extension<salve_store::TokenRow>>, project_id: &str) -> Result<(), ApiError> {
    match caller.as_ref().and_then(|c| c.project_id.as_deref()) {
        Some(own) if own != project_id => Err(ApiError(
            StatusCode::FORBIDDEN,
            "this token belongs to another project's pipeline: it acts on its own project only".into(),
        )),
        _ => Ok(()),
    }
}

/// A file as a download (streamed), or 404 when it cannot be opened.
pub(crate) async fn send_file(path: std::path::PathBuf, name: &str, content_type: &str) -> axum::response::Response {
    match tokio::fs::File::open(&path).await {
        Ok(f) => {
            let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(f));
            let disposition = format!("attachment; filename=\"{}\"", name.replace(['"', '\\', '\n', '\r'], "_"));
            (
                [
                    (axum::http::header::CONTENT_TYPE, content_type.to_owned()),
                    (axum::http::header::CONTENT_DISPOSITION, disposition),
                ],
                body,
            )
                .into_response()
        }
        Err(_) => (axum::http::StatusCode::NOT_FOUND, "not found").into_response(),
    }
}
