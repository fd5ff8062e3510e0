//! Logs and live updates: a job's log by line window, a running job's log as Server-Sent Events
//! (read from the log file the runner writes, so it is masked already and survives a restart),
//! and pipeline state changes as Server-Sent Events.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use salve_runner::log::{LOG_FILE, LogReader};
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use salve_contract::{RunState, api};

use crate::http::{ApiError, blocking};
use crate::server::Server;
use crate::views;

#[derive(Deserialize)]
pub struct Window {
    from: Option<u64>,
    limit: Option<usize>,
    /// The last N lines (instead of `from`).
    tail: Option<usize>,
}

/// `GET /api/v1/jobs/{id}/logs?from=N&limit=M`: lines `from..from+limit` (default 0 and 1000,
/// at most 10,000), each with its number and time; `next` is where to continue, `total` how many
/// lines the log has now. `?tail=N` gives the last N lines instead.
pub async fn log_window(
    State(server): State<Arc<Server>>,
    Path(id): Path<String>,
    q: Result<Query<Window>, QueryRejection>,
) -> Result<Json<api::LogWindow>, ApiError> {
    let Query(w) = q.map_err(|e| ApiError::bad(format!("bad query parameters: {}", e.body_text())))?;
    let job = server.store.job(&id).await?.ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
    let limit = w.tail.or(w.limit).unwrap_or(1000).clamp(1, 10_000);
    let dir = PathBuf::from(&job.log_dir);
    let (from, total, lines) = tokio::task::spawn_blocking(move || {
        let Ok(reader) = LogReader::open(&dir) else { return (0, 0, Vec::new()) };
        let total = reader.count().unwrap_or(0);
        let from = match w.tail {
            Some(n) => total.saturating_sub(n.clamp(1, 10_000) as u64),
            None => w.from.unwrap_or(0),
        };
        (from, total, reader.lines(from, limit + 1).unwrap_or_default())
    })
    .await
    .unwrap_or_default();
    let more = lines.len() > limit;
    let lines = lines
        .iter()
        .take(limit)
        .map(|l| api::LogLine {
            number: l.number,
            unix_ms: l.unix_ms,
            text: String::from_utf8_lossy(&l.bytes).into_owned(),
        })
        .collect();
    let next = if more { Some(from + limit as u64) } else { None };
    Ok(Json(api::LogWindow { job_id: id, state: views::state(&job.state), from, total, lines, next }))
}

#[derive(Deserialize)]
pub struct StreamQuery {
    from: Option<u64>,
}

/// `GET /api/v1/jobs/{id}/logs/stream`: every line from `from` (or after `Last-Event-ID`) as a
/// `line` event whose id is the line number, as the job writes them; then a `done` event with
/// the job's result.
pub async fn log_stream(
    State(server): State<Arc<Server>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    q: Result<Query<StreamQuery>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad(format!("bad query parameters: {}", e.body_text())))?;
    let job = server.store.job(&id).await?.ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
    let resume =
        headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok()).map(|n| n + 1);
    let from = resume.or(q.from).unwrap_or(0);
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(256);
    let path = PathBuf::from(&job.log_dir).join(LOG_FILE);
    tokio::spawn(async move {
        let mut offset = 0u64;
        let mut line = 0u64;
        let mut partial: Vec<u8> = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let mut read_any = false;
            if let Ok(mut f) = tokio::fs::File::open(&path).await
                && f.seek(std::io::SeekFrom::Start(offset)).await.is_ok()
            {
                while let Ok(n) = f.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    read_any = true;
                    offset += n as u64;
                    partial.extend_from_slice(&buf[..n]);
                    let mut start = 0;
                    while let Some(end) = memchr::memchr(b'\n', &partial[start..]) {
                        let bytes = &partial[start..start + end];
                        if line >= from && tx.send(line_event(line, bytes)).await.is_err() {
                            return;
                        }
                        line += 1;
                        start += end + 1;
                    }
                    partial.drain(..start);
                }
            }
            if read_any {
                continue;
            }
            let state = server.store.job(&id).await.ok().flatten();
            if let Some(j) = state.filter(|j| views::state(&j.state) == RunState::Done) {
                // The runner writes the whole log before the job is marked done.
                if !partial.is_empty() && line >= from {
                    let _ = tx.send(line_event(line, &partial)).await;
                }
                let done = json!({"result": j.result, "result_reason": j.result_reason, "summary": j.summary});
                let _ = tx.send(Event::default().event("done").data(done.to_string())).await;
                return;
            }
            if tx.is_closed() || server.shutdown.is_cancelled() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

fn line_event(number: u64, bytes: &[u8]) -> Event {
    // SSE data cannot hold a bare CR; the log keeps it, the stream shows it as a line break.
    let text = String::from_utf8_lossy(bytes).replace('\r', "");
    Event::default().event("line").id(number.to_string()).data(text)
}

#[derive(Deserialize)]
pub struct EventsQuery {
    pipeline_id: Option<String>,
}

/// `GET /api/v1/events[?pipeline_id=ID]`: pipeline, block and job state changes as they are
/// stored, one JSON object per event.
pub async fn events(
    State(server): State<Arc<Server>>,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad(format!("bad query parameters: {}", e.body_text())))?;
    let rx = server.events.subscribe();
    let ended = server.shutdown.clone().cancelled_owned();
    let stream = futures_util::stream::unfold((rx, q.pipeline_id), |(mut rx, filter)| async move {
        loop {
            match rx.recv().await {
                Ok(value) => {
                    if filter.as_deref().is_some_and(|f| value["pipeline_id"].as_str() != Some(f)) {
                        continue;
                    }
                    let name = value["event"].as_str().unwrap_or("event").to_owned();
                    let event = Event::default().event(name).data(value.to_string());
                    return Some((Ok(event), (rx, filter)));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    let event = Event::default().event("lagged").data(json!({"missed": n}).to_string());
                    return Some((Ok(event), (rx, filter)));
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(futures_util::StreamExt::take_until(stream, ended)).keep_alive(KeepAlive::default()))
}

/// `GET /api/v1/jobs/{id}/failure`: the failure report of a done job: the lines that explain
/// it (diffed against the newest passing run of the same job, when there is one) and its
/// failing tests.
pub async fn failure(
    State(server): State<Arc<Server>>,
    Path(id): Path<String>,
) -> Result<Json<api::Failure>, ApiError> {
    let job = server.store.job(&id).await?.ok_or_else(|| ApiError::not_found(format!("no job {id}")))?;
    if views::state(&job.state) != RunState::Done {
        return Err(ApiError(
            axum::http::StatusCode::CONFLICT,
            format!("job {id} is still {}: its failure report exists when it is done", job.state),
        ));
    }
    let kept = job.clone();
    if let Some(kept) = blocking(move || salve_launch::failure::stored(&kept)).await? {
        return Ok(Json(kept));
    }
    let gathered = salve_launch::failure::gather(&server.store, job).await?;
    blocking(move || salve_launch::failure::analyze(&gathered))
        .await?
        .map(Json)
        .map_err(|e| ApiError(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}
