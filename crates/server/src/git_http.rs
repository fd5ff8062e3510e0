//! `/git/NAME.git/...`: the hosted repositories over git's smart HTTP protocol, a token
//! required; a push's ref updates start workflows when git is done (`intake.rs`).

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::http::{ApiError, S, declared_length, internal};
use crate::{auth, forge};

/// `/git/NAME.git/...`: git's smart HTTP protocol, a token required.
pub async fn git(State(server): S, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().strip_prefix("/git").unwrap_or("").to_owned();
    let query = parts.uri.query().unwrap_or("").to_owned();
    let Some(name) = path.strip_prefix('/').and_then(|p| p.split_once(".git/")).map(|(n, _)| n.to_owned()) else {
        return ApiError::not_found("git URLs look like /git/NAME.git").into_response();
    };
    if !forge::valid_name(&name) || path.contains("/../") || path.contains("//") {
        return ApiError::bad(format!("'{name}' is not a project name")).into_response();
    }
    let caller = auth::check(&server.store, &parts.headers).await;
    // An agent fetches (never pushes) the repository of a job it holds, with its own token.
    let agent = match (&caller, auth::presented(&parts.headers).filter(|t| !t.is_empty() && t.len() <= 200)) {
        (None, Some(t)) => server.store.agent_by_token(&auth::hash(&t)).await.ok().flatten(),
        _ => None,
    };
    if caller.is_none() && agent.is_none() {
        let mut r = ApiError(
            StatusCode::UNAUTHORIZED,
            "git over HTTP needs an API token as the password (any user name) or a bearer header".into(),
        )
        .into_response();
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"salve\""));
        return r;
    }
    let project = match server.store.project(&name).await {
        Ok(p) => p,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let push = forge::is_push(&path, &query);
    if let Some(agent) = &agent {
        let holds = match &project {
            Some(p) => server.store.agent_holds_project(&agent.id, &p.id).await.unwrap_or(false),
            None => false,
        };
        if push || !holds {
            return ApiError(
                StatusCode::FORBIDDEN,
                "an agent's token fetches the repository of a job the agent holds, and never pushes".to_owned(),
            )
            .into_response();
        }
    }
    match project {
        Some(p) if caller.as_ref().and_then(|c| c.project_id.as_deref()).is_some_and(|own| own != p.id) => {
            return ApiError(StatusCode::FORBIDDEN, "this token belongs to another project's pipeline".to_owned())
                .into_response();
        }
        Some(p) if p.kind == "hosted" => {}
        _ => return ApiError::not_found(format!("no hosted project '{name}'")).into_response(),
    }
    if declared_length(&parts.headers).is_some_and(|n| n > server.config.max_push_bytes) {
        let limit = server.config.max_push_bytes;
        return ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a push is at most {limit} bytes here (max_push_mb in salve.toml sets it)"),
        )
        .into_response();
    }
    let push_file =
        push.then(|| server.config.data_dir.join("pushes").join(format!("{}.{name}", uuid::Uuid::new_v4())));
    let (done, finished) = tokio::sync::oneshot::channel();
    let root = server.config.data_dir.join("repos");
    let response = forge::http_backend(
        &root,
        forge::CgiRequest {
            method: &parts.method,
            path: &path,
            query: &query,
            headers: &parts.headers,
            body,
            max_body: server.config.max_push_bytes,
        },
        push_file.clone(),
        done,
    )
    .await;
    if let Some(file) = push_file {
        let server = server.clone();
        tokio::spawn(async move {
            let _ = finished.await;
            server.push_done(&file).await;
        });
    }
    match response {
        Ok(r) => r,
        Err(e) => internal(e).into_response(),
    }
}
