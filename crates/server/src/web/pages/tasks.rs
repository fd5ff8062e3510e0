//! A project's tasks on its page, and running one from there (its parameters as `NAME=VALUE`
//! lines, prefilled with their defaults).

use axum::Extension;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use salve_contract::api;
use serde::Deserialize;

use crate::web::csrf_ok;
use crate::web::html;

use super::*;

pub(super) struct TaskLine {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) file: String,
    pub(super) branch: String,
    /// "schedule `0 3 * * *` (UTC)", "paused", or "on demand".
    pub(super) when: String,
    /// When the schedule fires next, or "".
    pub(super) next: String,
    /// The parameter lines the form starts with.
    pub(super) params: String,
    pub(super) rows: usize,
    pub(super) hints: Vec<String>,
}

pub(super) fn task_line(t: &salve_store::TaskRow) -> TaskLine {
    let defs = crate::tasks::parameters(t);
    let when = match (&t.schedule, t.paused) {
        (Some(s), false) => format!("schedule {s} (UTC)"),
        (Some(s), true) => format!("schedule {s}, paused"),
        (None, _) => "on demand".into(),
    };
    let next =
        t.next_run_ms.map(|ms| format!("in {}", html::duration(Some(ms - salve_store::now_ms())))).unwrap_or_default();
    TaskLine {
        id: t.id.clone(),
        name: t.name.clone(),
        file: t.pipeline_file.clone(),
        branch: t.branch.clone(),
        when,
        next,
        params: defs.iter().map(|d| format!("{}={}\n", d.name, d.default_value.as_deref().unwrap_or(""))).collect(),
        rows: defs.len(),
        hints: defs.iter().map(hint).collect(),
    }
}

fn hint(d: &api::TaskParameter) -> String {
    let mut h = d.name.clone();
    if d.required {
        h.push_str(" (required)");
    }
    if !d.description.is_empty() {
        h.push_str(&format!(": {}", d.description));
    }
    if let Some(p) = &d.regex_pattern {
        h.push_str(&format!("; matches {p}"));
    }
    h
}

#[derive(Deserialize)]
pub struct TaskRunForm {
    #[serde(default)]
    csrf: String,
    /// `NAME=VALUE` lines; an empty value leaves the parameter to its default.
    #[serde(default)]
    params: String,
}

pub async fn run_task(
    State(server): S,
    Extension(s): Sess,
    Path(id): Path<String>,
    Form(f): Form<TaskRunForm>,
) -> Response {
    if !csrf_ok(&s, &f.csrf) {
        return forbidden();
    }
    let task = match server.store.task(&id).await {
        Ok(Some(t)) => t,
        Ok(None) => return error(&s, StatusCode::NOT_FOUND, "No such task", format!("There is no task {id}.")),
        Err(e) => return internal(&s, e),
    };
    let parameters = match name_values(&f.params) {
        Ok(p) => p.into_iter().filter(|(_, v)| !v.is_empty()).collect(),
        Err(e) => return error(&s, StatusCode::BAD_REQUEST, "Task not started", e),
    };
    match server.run_task(&task, api::RunTask { parameters, ..Default::default() }, false).await {
        Ok((_, _, p)) => Redirect::to(&format!("/pipelines/{}", p.id)).into_response(),
        Err(e) => error(&s, StatusCode::UNPROCESSABLE_ENTITY, "Task not started", crate::http::ApiError::from(e).1),
    }
}
