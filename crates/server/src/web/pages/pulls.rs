//! The embedded forge's pull requests: the list, one pull request, merge and close.

use askama::Template;
use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use salve_git::Repo;
use serde::Deserialize;

use crate::web::csrf_ok;
use crate::web::html;

use super::*;

#[derive(Template)]
#[template(path = "pulls.html")]
pub(super) struct PullsPage {
    csrf: String,
    who: String,
    project: String,
    state: String,
    tabs: Vec<(&'static str, bool)>,
    pulls: Vec<PullLine>,
}

#[derive(Deserialize)]
pub struct PullsQuery {
    state: Option<String>,
}

pub async fn pulls(
    State(server): S,
    Extension(s): Sess,
    Path(name): Path<String>,
    Query(q): Query<PullsQuery>,
) -> Response {
    let p = match find_project(&server, &s, &name).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let state =
        q.state.filter(|x| ["open", "merged", "closed", "all"].contains(&x.as_str())).unwrap_or_else(|| "open".into());
    let filter = (state != "all").then_some(state.as_str());
    match server.store.pulls(Some(&p.id), filter, 200).await {
        Ok(list) => page(&PullsPage {
            csrf: s.csrf.clone(),
            who: s.token.name.clone(),
            project: p.name,
            tabs: ["open", "merged", "closed", "all"].iter().map(|t| (*t, *t == state)).collect(),
            state,
            pulls: list.iter().map(pull_line).collect(),
        }),
        Err(e) => internal(&s, e),
    }
}

pub(super) struct CommentView {
    author: String,
    body: String,
    when: String,
}

#[derive(Template)]
#[template(path = "pull.html")]
pub(super) struct PullPage {
    csrf: String,
    who: String,
    project: String,
    number: i64,
    title: String,
    body: String,
    state: String,
    head: String,
    base: String,
    created_by: String,
    when: String,
    checks: Option<PipelineLine>,
    checks_current: bool,
    mergeable: bool,
    why_not: String,
    diff: String,
    comments: Vec<CommentView>,
    message: String,
    problem: String,
}

#[derive(Deserialize)]
pub struct PullQuery {
    message: Option<String>,
    problem: Option<String>,
}

pub async fn pull(
    State(server): S,
    Extension(s): Sess,
    Path((name, number)): Path<(String, String)>,
    Query(q): Query<PullQuery>,
) -> Response {
    let (project, pr) = match crate::api::pulls::find_pull(&server, &name, &number).await {
        Ok(x) => x,
        Err(e) => return error(&s, e.0, "No such pull request", e.1),
    };
    let check_pipeline = crate::api::pulls::branch_ci(&server, &project.id, &pr.head).await.ok().flatten();
    let (dir, head) = (project.repo_url.clone(), format!("refs/heads/{}", pr.head));
    let head_sha = crate::http::blocking(move || Repo::new(&dir).resolve(&head)).await.ok().flatten();
    let current = check_pipeline.as_ref().is_some_and(|i| Some(&i.workflow.sha) == head_sha.as_ref());
    let passed = check_pipeline.as_ref().is_some_and(|i| i.pipeline.result.as_deref() == Some("passed"));
    let why_not = if pr.state != "open" {
        format!("It is {}.", pr.state)
    } else if check_pipeline.is_none() || !current {
        "CI has not run on the head's current commit.".into()
    } else if !passed {
        "CI on the head has not passed.".into()
    } else {
        String::new()
    };
    let (dir, p) = (project.repo_url.clone(), pr.clone());
    let diff = crate::http::blocking(move || crate::api::pulls::pull_diff(&dir, &p)).await.unwrap_or_default();
    let comments = server.store.comments(&pr.id).await.unwrap_or_default();
    page(&PullPage {
        csrf: s.csrf.clone(),
        who: s.token.name.clone(),
        project: project.name.clone(),
        number: pr.number,
        title: pr.title.clone(),
        body: pr.body.clone(),
        state: pr.state.clone(),
        head: pr.head.clone(),
        base: pr.base.clone(),
        created_by: pr.created_by.clone(),
        when: html::ago(pr.created_ms),
        checks: check_pipeline.as_ref().map(pipeline_line),
        checks_current: current,
        mergeable: why_not.is_empty(),
        why_not,
        diff: html::diff(&diff),
        comments: comments
            .iter()
            .map(|c| CommentView { author: c.author.clone(), body: c.body.clone(), when: html::ago(c.created_ms) })
            .collect(),
        message: q.message.unwrap_or_default(),
        problem: q.problem.unwrap_or_default(),
    })
}

#[derive(Deserialize)]
pub struct PullForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    body: String,
}

pub async fn pull_action(
    State(server): S,
    Extension(s): Sess,
    Path((name, number, action)): Path<(String, String, String)>,
    Form(f): Form<PullForm>,
) -> Response {
    if !csrf_ok(&s, &f.csrf) {
        return forbidden();
    }
    let back = |key: &str, text: &str| {
        Redirect::to(&format!(
            "/projects/{}/pulls/{}?{key}={}",
            html::encode_query(&name),
            html::encode_query(&number),
            html::encode_query(text)
        ))
        .into_response()
    };
    let done = match action.as_str() {
        "merge" => crate::api::pulls::merge_pull(&server, &name, &number)
            .await
            .map(|v| format!("Merged into {} as {}.", v.base, html::short(v.merged_sha.as_deref().unwrap_or("")))),
        "close" => crate::api::pulls::close_pull(&server, &name, &number).await.map(|_| "Closed.".to_owned()),
        "comment" => {
            let body = f.body.trim();
            if body.is_empty() || body.len() > 64 * 1024 {
                return back("problem", "A comment needs 1 to 65536 characters.");
            }
            match crate::api::pulls::find_pull(&server, &name, &number).await {
                Ok((_, pr)) => {
                    let c = salve_store::CommentRow {
                        id: uuid::Uuid::new_v4().to_string(),
                        pull_id: pr.id,
                        author: s.token.name.clone(),
                        body: body.to_owned(),
                        created_ms: salve_store::now_ms(),
                    };
                    server
                        .store
                        .add_comment(&c)
                        .await
                        .map(|()| "Comment added.".to_owned())
                        .map_err(crate::http::ApiError::from)
                }
                Err(e) => Err(e),
            }
        }
        other => {
            return error(
                &s,
                StatusCode::NOT_FOUND,
                "No such action",
                format!("'{other}' is not something a pull request does."),
            );
        }
    };
    match done {
        Ok(message) => back("message", &message),
        Err(e) => back("problem", &e.1),
    }
}
