//! `/api/v1/storage/{project}/{area}[/{path}]`: a project's cache and artifact storage over
//! HTTP, for jobs on agents (the toolbox's remote storage; jobs on the server use the folders).
//! `GET` reads a file (`?stat`: what a path is; `?list`: a folder's entries), `PUT` stores one
//! (streamed to disk, at most `max_push_mb`, put in place whole), `DELETE` removes a file or
//! folder. The caller's token must be the project's (an agent job's storage token) or an
//! unscoped one. Paths never leave the area: `..` is refused, and a path through a symbolic
//! link (one a job on the server may have planted) is refused.

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use salve_contract::api::{StorageEntry, StorageKind, StorageListing, StorageStat};
use serde_json::json;
use tokio::io::AsyncWriteExt as _;

use crate::auth;
use crate::http::{ApiError, S, blocking, internal};

#[derive(Debug, serde::Deserialize)]
pub struct Ask {
    stat: Option<String>,
    list: Option<String>,
}

pub async fn root(
    State(server): S,
    UrlPath((project, area)): UrlPath<(String, String)>,
    Query(ask): Query<Ask>,
    request: Request,
) -> Response {
    handle(server, project, area, String::new(), ask, request).await.unwrap_or_else(IntoResponse::into_response)
}

pub async fn at(
    State(server): S,
    UrlPath((project, area, path)): UrlPath<(String, String, String)>,
    Query(ask): Query<Ask>,
    request: Request,
) -> Response {
    handle(server, project, area, path, ask, request).await.unwrap_or_else(IntoResponse::into_response)
}

async fn handle(
    server: std::sync::Arc<crate::server::Server>,
    project: String,
    area: String,
    path: String,
    ask: Ask,
    request: Request,
) -> Result<Response, ApiError> {
    let caller = auth::check_any(&server.store, request.headers())
        .await
        .ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, "the storage needs a token of the project".into()))?;
    let found = server.store.project(&project).await?;
    let Some(p) = found.filter(|p| p.id == project) else {
        return Err(ApiError::not_found(format!("no project with the id {project}")));
    };
    if caller.project_id.as_deref().is_some_and(|own| own != p.id) {
        return Err(ApiError(StatusCode::FORBIDDEN, "this token belongs to another project".into()));
    }
    let data = &server.launch.data;
    let root = match area.as_str() {
        "cache" => data.cache(&p.id),
        "artifacts" => data.artifacts(&p.id),
        other => return Err(ApiError::not_found(format!("no storage area '{other}': cache or artifacts"))),
    };
    let rel =
        if path.is_empty() { PathBuf::new() } else { salve_toolbox::storage::inside(&path).map_err(ApiError::bad)? };
    let target = root.join(&rel);
    let method = request.method().clone();
    if method == axum::http::Method::PUT {
        if rel.as_os_str().is_empty() {
            return Err(ApiError::bad("give the path of the file to store"));
        }
        let limit = server.config.max_push_bytes;
        return put(root, rel, request.into_body(), limit).await;
    }
    let (r, t) = (root.clone(), target.clone());
    let safe = blocking(move || no_link_between(&r, &t)).await?;
    if !safe {
        return Err(ApiError(StatusCode::FORBIDDEN, "the path goes through a symbolic link".into()));
    }
    if method == axum::http::Method::DELETE {
        return blocking(move || remove(&target)).await?;
    }
    if ask.stat.is_some() {
        let kind = std::fs::symlink_metadata(&target)
            .ok()
            .map(|m| if m.is_dir() { StorageKind::Dir } else { StorageKind::File });
        return Ok(axum::Json(StorageStat { kind }).into_response());
    }
    if ask.list.is_some() {
        let entries: Vec<StorageEntry> = std::fs::read_dir(&target)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let meta = e.path().symlink_metadata().ok()?;
                if meta.file_type().is_symlink() {
                    return None;
                }
                let name = e.file_name().to_string_lossy().into_owned();
                // Files being put in place are nobody's yet.
                (!name.starts_with(".put-")).then(|| StorageEntry { name, size: meta.len(), dir: meta.is_dir() })
            })
            .collect();
        return Ok(axum::Json(StorageListing { entries }).into_response());
    }
    match tokio::fs::File::open(&target).await {
        Ok(f) if f.metadata().await.is_ok_and(|m| m.is_file()) => {
            let stream = tokio_util::io::ReaderStream::new(f);
            Ok(([(header::CONTENT_TYPE, "application/octet-stream")], Body::from_stream(stream)).into_response())
        }
        Ok(_) => Err(ApiError::bad(format!("'{path}' is a folder: ask for ?list"))),
        Err(_) => Err(ApiError::not_found(format!("'{path}' is not in the {area} storage"))),
    }
}

/// True when no component of `target` below `root` is a symbolic link.
pub(crate) fn no_link_between(root: &Path, target: &Path) -> bool {
    let Ok(rest) = target.strip_prefix(root) else { return false };
    let mut at = root.to_path_buf();
    for c in rest.components() {
        at.push(c);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => return false,
            Ok(_) => {}
            Err(_) => return true,
        }
    }
    true
}

fn remove(target: &Path) -> Result<Response, ApiError> {
    let done = match std::fs::symlink_metadata(target) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(target),
        Ok(_) => std::fs::remove_file(target),
        Err(_) => return Err(ApiError::not_found("not in the storage")),
    };
    done.map_err(internal)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Streams the body to a file beside the target, then puts it in place; at most `limit` bytes.
async fn put(root: PathBuf, rel: PathBuf, body: Body, limit: u64) -> Result<Response, ApiError> {
    let target = root.join(&rel);
    let (r, t) = (root.clone(), target.clone());
    let parent = blocking(move || -> Result<PathBuf, ApiError> {
        if !no_link_between(&r, &t) {
            return Err(ApiError(StatusCode::FORBIDDEN, "the path goes through a symbolic link".into()));
        }
        let parent = t.parent().map(Path::to_path_buf).unwrap_or(r);
        if parent.is_file() {
            return Err(ApiError(StatusCode::CONFLICT, "a file stands where the path needs a folder".into()));
        }
        std::fs::create_dir_all(&parent).map_err(internal)?;
        Ok(parent)
    })
    .await??;
    let aside = parent.join(format!(".put-{}", uuid::Uuid::new_v4().simple()));
    let mut file = tokio::fs::File::create(&aside).await.map_err(internal)?;
    let mut stream = body.into_data_stream();
    let mut written: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let failed = |e: String| async {
            let _ = tokio::fs::remove_file(&aside).await;
            e
        };
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => return Err(ApiError::bad(failed(format!("the upload broke off: {e}")).await)),
        };
        written += chunk.len() as u64;
        if written > limit {
            let message = failed(format!("a stored file is at most {limit} bytes (max_push_mb sets it)")).await;
            return Err(ApiError(StatusCode::PAYLOAD_TOO_LARGE, message));
        }
        if let Err(e) = file.write_all(&chunk).await {
            return Err(internal(failed(e.to_string()).await));
        }
    }
    file.flush().await.map_err(internal)?;
    drop(file);
    if tokio::fs::symlink_metadata(&target).await.is_ok_and(|m| m.is_dir()) {
        let _ = tokio::fs::remove_file(&aside).await;
        return Err(ApiError(StatusCode::CONFLICT, "a folder stands at that path: delete it first".into()));
    }
    tokio::fs::rename(&aside, &target).await.map_err(internal)?;
    Ok((StatusCode::CREATED, axum::Json(json!({ "stored": written }))).into_response())
}
