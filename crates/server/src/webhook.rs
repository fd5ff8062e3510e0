//! Webhooks of external repositories. GitHub signs the body (`X-Hub-Signature-256`, HMAC-SHA256
//! with the project's secret, compared in constant time); GitLab sends the secret itself
//! (`X-Gitlab-Token`, compared in constant time). A request that fails the check gets 401 and
//! changes nothing. A push fetches the ref from the repository into Salve's mirror and starts a
//! workflow as a push to a hosted project does.
//!
//! Nobody has to sign in to call these, so nothing is read before it must be: the project and
//! its secret are looked up first, GitLab's token is checked from its header before a byte of
//! the body is read, and a body (GitHub's, to check its signature) is read only up to
//! [`MAX_BODY`]; a longer one, declared or not, gets 413.

use std::path::Path;
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use salve_git::Repo;
use serde_json::{Value, json};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

use crate::forge::RefUpdate;
use crate::http::ApiError;
use crate::server::Server;

pub fn set_upstream(dir: &Path, url: &str) -> Result<(), String> {
    let repo = Repo::new(dir);
    repo.config_set("remote.upstream.url", url).map_err(|e| e.to_string())?;
    repo.config_set("remote.upstream.fetch", "+refs/heads/*:refs/heads/*").map_err(|e| e.to_string())?;
    Ok(())
}

async fn secret(server: &Server, project: &str) -> Result<(salve_store::ProjectRow, Vec<u8>), ApiError> {
    let unknown = || ApiError(StatusCode::UNAUTHORIZED, "unknown project or bad signature".into());
    let p = server.store.project(project).await?.filter(|p| p.kind == "external").ok_or_else(unknown)?;
    let sealed = p.webhook_secret.clone().ok_or_else(unknown)?;
    let data = server.sealer().open(&format!("webhook:{}", p.name), &sealed).map_err(|_| unknown())?;
    let value =
        data.env_vars.into_iter().find(|(k, _)| k == "secret").map(|(_, v)| v.into_bytes()).ok_or_else(unknown)?;
    Ok((p, value))
}

/// The largest webhook body taken: GitHub caps its payloads at 25 MB, GitLab's are smaller.
pub const MAX_BODY: usize = 25 * 1024 * 1024;

fn too_large() -> ApiError {
    ApiError(StatusCode::PAYLOAD_TOO_LARGE, format!("a webhook body is at most {MAX_BODY} bytes"))
}

/// The body, read only up to [`MAX_BODY`]: refused from its declared length before any of it
/// is read, or as soon as it grows past the limit.
async fn bounded(headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    if crate::http::declared_length(headers).is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| too_large())
}

fn refused() -> ApiError {
    ApiError(StatusCode::UNAUTHORIZED, "the webhook's signature or token does not match the project's secret".into())
}

/// `POST /webhooks/github/{project}`.
pub async fn github(
    State(server): State<Arc<Server>>,
    UrlPath(project): UrlPath<String>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let (p, key) = secret(&server, &project).await?;
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let given = headers.get("x-hub-signature-256").and_then(|v| v.to_str().ok()).unwrap_or("");
    let Some(hex) = given.strip_prefix("sha256=") else { return Err(refused()) };
    let Some(signature) = decode_hex(hex) else { return Err(refused()) };
    let body = bounded(&headers, body).await?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| refused())?;
    mac.update(&body);
    // verify_slice compares in constant time.
    mac.verify_slice(&signature).map_err(|_| refused())?;
    let event = headers.get("x-github-event").and_then(|v| v.to_str().ok()).unwrap_or("");
    match event {
        "ping" => Ok(Json(json!({"ok": true, "event": "ping"}))),
        "push" => push(&server, &p, &body).await,
        other => Ok(Json(json!({"ok": true, "ignored": other}))),
    }
}

/// `POST /webhooks/gitlab/{project}`.
pub async fn gitlab(
    State(server): State<Arc<Server>>,
    UrlPath(project): UrlPath<String>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let (p, key) = secret(&server, &project).await?;
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let given = headers.get("x-gitlab-token").map(|v| v.as_bytes()).unwrap_or(b"");
    if !bool::from(given.ct_eq(&key)) {
        return Err(refused());
    }
    let event = headers.get("x-gitlab-event").and_then(|v| v.to_str().ok()).unwrap_or("");
    match event {
        "Push Hook" | "Tag Push Hook" => push(&server, &p, &bounded(&headers, body).await?).await,
        other => Ok(Json(json!({"ok": true, "ignored": other}))),
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// What Salve reads of a push event: GitHub's and GitLab's share `ref`, `before` and `after`.
#[derive(serde::Deserialize)]
struct PushEvent {
    #[serde(rename = "ref")]
    git_ref: String,
    before: Option<String>,
    after: Option<String>,
}

/// A push event.
async fn push(server: &Arc<Server>, project: &salve_store::ProjectRow, body: &[u8]) -> Result<Json<Value>, ApiError> {
    let event: PushEvent = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad(format!("the webhook body is not a push event (with a 'ref'): {e}")))?;
    let (git_ref, after) = (event.git_ref, event.after.unwrap_or_default());
    let before = event.before.unwrap_or_else(|| "0".repeat(40));
    let name = git_ref.strip_prefix("refs/heads/").or_else(|| git_ref.strip_prefix("refs/tags/")).unwrap_or("");
    let hex = |s: &str| s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !Repo::valid_branch(name) || !hex(&after) || !hex(&before) {
        return Err(ApiError::bad(format!(
            "the push event names a ref or commit Salve cannot build: '{git_ref}' at '{after}'"
        )));
    }
    let update = RefUpdate { old: before, new: after.clone(), name: git_ref.clone() };
    if !update.deleted() {
        let dir = project.repo_url.clone();
        let spec = format!("+{git_ref}:{git_ref}");
        let fetched = tokio::task::spawn_blocking(move || Repo::new(&dir).fetch("upstream", &spec))
            .await
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        if let Err(e) = fetched {
            return Err(ApiError(
                StatusCode::BAD_GATEWAY,
                format!("cannot fetch {git_ref} from the project's repository: {e}"),
            ));
        }
    }
    server.pushed(project, std::slice::from_ref(&update)).await;
    Ok(Json(json!({"ok": true, "ref": git_ref, "sha": after})))
}
