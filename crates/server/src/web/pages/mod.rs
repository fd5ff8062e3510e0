//! The pages: what each shows, read from the store, rendered by askama. One file per page
//! (`projects`, `pipeline`, `job`, `heal`, `pulls`, `agents`, `tasks`); what they share is here.

use std::sync::Arc;

use askama::Template;
use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use salve_contract::api::HealReport;
use salve_store::{HealRow, PipelineInfo, SessionRow};

use crate::server::Server;
use crate::web::html::{self, Status};

pub(super) type S = State<Arc<Server>>;
pub(super) type Sess = Extension<SessionRow>;

/// Lines a job page shows at once.
pub(super) const PAGE_LINES: u64 = 1000;

pub(super) fn page(t: &impl Template) -> Response {
    Html(html::render(t)).into_response()
}

#[derive(Template)]
#[template(path = "error.html")]
pub(super) struct ErrorPage {
    csrf: String,
    who: String,
    title: String,
    message: String,
}

pub(super) fn error(s: &SessionRow, status: StatusCode, title: &str, message: impl Into<String>) -> Response {
    let p = ErrorPage { csrf: s.csrf.clone(), who: s.token.name.clone(), title: title.into(), message: message.into() };
    (status, Html(html::render(&p))).into_response()
}

pub fn forbidden() -> Response {
    (
        StatusCode::FORBIDDEN,
        "The form was stale or not from this site (CSRF check): go back, reload the page and try again.",
    )
        .into_response()
}

/// A form's `NAME=VALUE` lines (blank lines skipped), or the line that is not one.
pub(super) fn name_values(text: &str) -> Result<std::collections::BTreeMap<String, String>, String> {
    let mut out = std::collections::BTreeMap::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match line.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                out.insert(k.trim().to_owned(), v.trim().to_owned());
            }
            _ => return Err(format!("'{line}' is not NAME=VALUE.")),
        }
    }
    Ok(out)
}

pub(super) fn internal(s: &SessionRow, e: impl std::fmt::Display) -> Response {
    tracing::error!("web page: {e}");
    error(
        s,
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        format!("The server could not read what this page shows: {e}"),
    )
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub next: String,
    pub error: String,
}

// What several pages show: a pipeline, a heal, a pull request on one line.

pub(super) struct PipelineLine {
    id: String,
    name: String,
    branch: String,
    sha: String,
    status: Status,
    duration: String,
    when: String,
}

pub(super) fn pipeline_line(i: &PipelineInfo) -> PipelineLine {
    let p = &i.pipeline;
    PipelineLine {
        id: p.id.clone(),
        name: if p.name.is_empty() { p.file.clone() } else { p.name.clone() },
        branch: i.workflow.branch.clone(),
        sha: html::short(&i.workflow.sha),
        status: html::status(&p.state, p.result.as_deref()),
        duration: html::between(p.started_ms.or(Some(p.created_ms)), p.done_ms),
        when: html::ago(p.created_ms),
    }
}

pub(super) struct HealLine {
    id: String,
    branch: String,
    sha: String,
    status: Status,
    summary: String,
    when: String,
}

pub(super) fn heal_line(h: &HealRow) -> HealLine {
    let r: HealReport = serde_json::from_str(&h.report).unwrap_or_default();
    HealLine {
        id: h.id.clone(),
        branch: h.branch.clone(),
        sha: html::short(&h.sha),
        status: html::outcome(h.outcome.as_deref(), &h.state),
        summary: r.summary,
        when: html::ago(h.created_ms),
    }
}

pub(super) struct PullLine {
    number: i64,
    title: String,
    head: String,
    base: String,
    state: String,
    when: String,
}

pub(super) fn pull_line(p: &salve_store::PullRow) -> PullLine {
    PullLine {
        number: p.number,
        title: p.title.clone(),
        head: p.head.clone(),
        base: p.base.clone(),
        state: p.state.clone(),
        when: html::ago(p.created_ms),
    }
}

mod agents;
mod heal;
mod job;
mod pipeline;
mod projects;
mod pulls;
mod tasks;

pub use agents::*;
pub use heal::*;
pub use job::*;
pub use pipeline::*;
pub use projects::*;
pub use pulls::*;
pub use tasks::*;
