//! A job's page: its log a page at a time, the failure report, commands, artifacts.

use std::collections::HashSet;
use std::path::PathBuf;

use askama::Template;
use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use salve_runner::log::LogReader;
use salve_store::{JobRow, PipelineInfo, SessionRow};
use serde::Deserialize;

use crate::server::Server;
use crate::web::html::{self, Status};

use super::*;

pub(super) struct LineView {
    n: u64,
    html: String,
    evidence: bool,
}

pub(super) struct CommandView {
    title: String,
    exit: String,
    duration: String,
    failed: bool,
    lines: Vec<LineView>,
}

pub(super) struct FailureView {
    class: String,
    command: String,
    evidence: bool,
    lines: Vec<LineView>,
    tests: Vec<String>,
}

pub(super) struct ArtifactView {
    path: String,
    size: String,
}

#[derive(Template)]
#[template(path = "job.html")]
pub(super) struct JobPage {
    csrf: String,
    who: String,
    project: String,
    id: String,
    name: String,
    block: String,
    pipeline_id: String,
    status: Status,
    summary: String,
    duration: String,
    failure: Option<FailureView>,
    commands: Vec<CommandView>,
    total: u64,
    from: u64,
    to: u64,
    earlier: String,
    later: String,
    live: bool,
    artifacts: Vec<ArtifactView>,
}

#[derive(Deserialize)]
pub struct JobQuery {
    /// A line to start from; anything that is not a number is the default view.
    from: Option<String>,
}

pub(super) async fn job_and_project(
    server: &Server,
    s: &SessionRow,
    id: &str,
) -> Result<(JobRow, PipelineInfo), Response> {
    let job = match server.store.job(id).await {
        Ok(Some(j)) => j,
        Ok(None) => return Err(error(s, StatusCode::NOT_FOUND, "No such job", format!("There is no job {id}."))),
        Err(e) => return Err(internal(s, e)),
    };
    match server.store.pipeline_info(&job.pipeline_id).await {
        Ok(Some(i)) => Ok((job, i)),
        Ok(None) => Err(error(s, StatusCode::NOT_FOUND, "No such job", "The job's pipeline is gone.")),
        Err(e) => Err(internal(s, e)),
    }
}

pub async fn job(State(server): S, Extension(s): Sess, Path(id): Path<String>, Query(q): Query<JobQuery>) -> Response {
    let (job, info) = match job_and_project(&server, &s, &id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let commands = server.store.commands(&id).await.unwrap_or_default();
    let failure: Option<salve_contract::api::Failure> = if job.result.as_deref() == Some("failed") {
        let kept = job.clone();
        crate::http::blocking(move || salve_launch::failure::stored(&kept)).await.ok().flatten()
    } else {
        None
    };
    let evidence_lines: HashSet<u64> =
        failure.as_ref().map(|f| f.report.excerpt.iter().map(|l| l.line as u64).collect()).unwrap_or_default();
    let dir = PathBuf::from(&job.log_dir);
    let wanted = q.from.and_then(|f| f.parse::<u64>().ok());
    let (total, from, lines) = tokio::task::spawn_blocking(move || {
        let Ok(reader) = LogReader::open(&dir) else { return (0, 0, Vec::new()) };
        let total = reader.count().unwrap_or(0);
        // The last page first: the end of a log is where a failure shows.
        let from = wanted.unwrap_or(if total > 2 * PAGE_LINES { total - PAGE_LINES } else { 0 }).min(total);
        let take = if wanted.is_none() && total <= 2 * PAGE_LINES { total } else { PAGE_LINES } as usize;
        (total, from, reader.lines(from, take).unwrap_or_default())
    })
    .await
    .unwrap_or_default();
    let to = from + lines.len() as u64;
    // Lines grouped by the command that printed them (the runner's records).
    let mut groups: Vec<CommandView> = Vec::new();
    let mut current: Option<usize> = None;
    for l in &lines {
        let owner = commands
            .iter()
            .position(|c| l.number as i64 >= c.first_line && (l.number as i64) < c.end_line.max(c.first_line + 1));
        if owner != current || groups.is_empty() {
            current = owner;
            groups.push(match owner.map(|i| &commands[i]) {
                Some(c) => CommandView {
                    title: format!(
                        "{}{}",
                        if c.phase == "main" { String::new() } else { format!("[{}] ", c.phase) },
                        c.command
                    ),
                    exit: c.exit_code.map_or("did not finish".into(), |e| format!("exit {e}")),
                    duration: html::duration(Some(c.duration_ms)),
                    failed: c.exit_code.is_some_and(|e| e != 0),
                    lines: Vec::new(),
                },
                None => CommandView {
                    title: "Salve".into(),
                    exit: String::new(),
                    duration: String::new(),
                    failed: false,
                    lines: Vec::new(),
                },
            });
        }
        if let Some(g) = groups.last_mut() {
            // People count lines from 1, as the failure report does.
            g.lines.push(LineView {
                n: l.number + 1,
                html: html::ansi(&String::from_utf8_lossy(&l.bytes)),
                evidence: evidence_lines.contains(&(l.number + 1)),
            });
        }
    }
    let failure = failure.map(|f| f.report).map(|f| FailureView {
        class: f.class.words(),
        command: f.failing_command.unwrap_or_default(),
        evidence: f.evidence,
        lines: f
            .excerpt
            .iter()
            .map(|l| LineView { n: l.line as u64, html: html::ansi(&l.text), evidence: true })
            .collect(),
        tests: f
            .failing_tests
            .iter()
            .map(|t| format!("{} {}", t.name, t.message.as_deref().unwrap_or("")).trim().to_owned())
            .collect(),
    });
    let artifacts = artifacts_of(&server, &info.workflow.project_id, &id).await;
    page(&JobPage {
        csrf: s.csrf.clone(),
        who: s.token.name.clone(),
        project: info.project.clone(),
        id: id.clone(),
        name: job.name.clone(),
        block: job.block_name.clone(),
        pipeline_id: job.pipeline_id.clone(),
        status: html::status(&job.state, job.result.as_deref()),
        summary: job.summary.clone().unwrap_or_default(),
        duration: html::between(job.started_ms, job.done_ms),
        failure,
        commands: groups,
        total,
        from,
        to,
        earlier: if from > 0 { format!("/jobs/{id}?from={}", from.saturating_sub(PAGE_LINES)) } else { String::new() },
        later: if to < total { format!("/jobs/{id}?from={to}") } else { String::new() },
        live: job.state != "done",
        artifacts,
    })
}

pub(super) fn job_artifact_dir(server: &Server, project_id: &str, job_id: &str) -> PathBuf {
    crate::api::artifacts::folder(server, project_id, "jobs", job_id)
}

pub(super) async fn artifacts_of(server: &Server, project_id: &str, job_id: &str) -> Vec<ArtifactView> {
    let root = job_artifact_dir(server, project_id, job_id);
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for e in entries.flatten() {
                let Ok(meta) = e.path().symlink_metadata() else { continue };
                if meta.is_dir() {
                    stack.push(e.path());
                } else if meta.is_file() && out.len() < 200 {
                    let rel =
                        e.path().strip_prefix(&root).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
                    out.push(ArtifactView { path: rel, size: size(meta.len()) });
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    })
    .await
    .unwrap_or_default()
}

pub(super) fn size(n: u64) -> String {
    match n {
        0..1024 => format!("{n} B"),
        1024..1_048_576 => format!("{:.1} KiB", n as f64 / 1024.0),
        _ => format!("{:.1} MiB", n as f64 / 1_048_576.0),
    }
}

pub async fn raw_log(State(server): S, Extension(s): Sess, Path(id): Path<String>) -> Response {
    match job_and_project(&server, &s, &id).await {
        Ok((job, _)) => {
            let path = PathBuf::from(&job.log_dir).join(salve_runner::log::LOG_FILE);
            crate::http::send_file(path, &format!("{id}.log"), "text/plain; charset=utf-8").await
        }
        Err(r) => r,
    }
}

pub async fn artifact(State(server): S, Extension(s): Sess, Path((id, path)): Path<(String, String)>) -> Response {
    let (_, info) = match job_and_project(&server, &s, &id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let rel = std::path::Path::new(&path);
    if !rel.components().all(|c| matches!(c, std::path::Component::Normal(_))) {
        return error(&s, StatusCode::BAD_REQUEST, "No such artifact", "Artifact paths are relative, without '..'.");
    }
    let root = job_artifact_dir(&server, &info.workflow.project_id, &id);
    let full = root.join(rel);
    // Links are not followed, on the way or at the end: a job may have left one pointing anywhere.
    let inside = match (root.canonicalize(), full.canonicalize()) {
        (Ok(r), Ok(f)) => f.starts_with(r) && full.symlink_metadata().is_ok_and(|m| !m.file_type().is_symlink()),
        _ => false,
    };
    if !inside || full.symlink_metadata().map(|m| !m.is_file()).unwrap_or(true) {
        return error(&s, StatusCode::NOT_FOUND, "No such artifact", format!("The job has no artifact {path}."));
    }
    let name = rel.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    crate::http::send_file(full, &name, "application/octet-stream").await
}
