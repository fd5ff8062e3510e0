//! The projects page and a project's page: branches, recent pipelines, heals, pull requests.

use std::collections::HashSet;

use askama::Template;
use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use salve_contract::HealOutcome;
use salve_contract::api::HealReport;
use salve_store::{ProjectRow, SessionRow};

use crate::server::Server;
use crate::web::html::{self, Status};

use super::*;

pub(super) struct BranchView {
    branch: String,
    sha: String,
    status: Status,
    pipeline_id: String,
    when: String,
}

pub(super) struct ProjectCard {
    name: String,
    kind: String,
    branches: Vec<BranchView>,
    heals: usize,
    fixed: usize,
    flaky: usize,
    refused: usize,
    tokens: u64,
}

#[derive(Template)]
#[template(path = "projects.html")]
pub(super) struct ProjectsPage {
    csrf: String,
    who: String,
    projects: Vec<ProjectCard>,
}

/// Each branch's newest workflow and the result of its first pipeline, newest first.
pub(super) async fn branches(
    server: &Server,
    project: &ProjectRow,
    most: usize,
) -> salve_store::Result<Vec<BranchView>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for w in server.store.workflows(&project.id, None, 300).await? {
        let name = if w.ref_type == "tag" { format!("tag {}", w.label) } else { w.branch.clone() };
        if out.len() >= most || !seen.insert(name.clone()) {
            continue;
        }
        let pipelines = server.store.workflow_pipelines(&w.id).await?;
        let Some(first) = pipelines.iter().find(|i| i.pipeline.promotion_of.is_none()) else { continue };
        let p = &first.pipeline;
        out.push(BranchView {
            branch: name,
            sha: html::short(&w.sha),
            status: html::status(&p.state, p.result.as_deref()),
            pipeline_id: p.id.clone(),
            when: html::ago(w.created_ms),
        });
    }
    Ok(out)
}

pub(super) async fn card(server: &Server, p: &ProjectRow) -> salve_store::Result<ProjectCard> {
    let week = salve_store::now_ms() - 7 * 24 * 3600 * 1000;
    let heals = server.store.heals(Some(&p.id), None, week, 1000).await?;
    let count = |o: HealOutcome| heals.iter().filter(|h| h.outcome.as_deref() == Some(o.as_str())).count();
    let tokens =
        heals.iter().filter_map(|h| serde_json::from_str::<HealReport>(&h.report).ok()).filter_map(|r| r.tokens).sum();
    Ok(ProjectCard {
        name: p.name.clone(),
        kind: p.kind.clone(),
        branches: branches(server, p, 8).await?,
        heals: heals.len(),
        fixed: count(HealOutcome::Pushed),
        flaky: count(HealOutcome::Flaky),
        refused: count(HealOutcome::Refused),
        tokens,
    })
}

pub async fn projects(State(server): S, Extension(s): Sess) -> Response {
    let mut cards = Vec::new();
    let list = match server.store.projects().await {
        Ok(l) => l,
        Err(e) => return internal(&s, e),
    };
    for p in list.iter().filter(|p| p.kind != "local") {
        match card(&server, p).await {
            Ok(c) => cards.push(c),
            Err(e) => return internal(&s, e),
        }
    }
    page(&ProjectsPage { csrf: s.csrf.clone(), who: s.token.name.clone(), projects: cards })
}

#[derive(Template)]
#[template(path = "project.html")]
pub(super) struct ProjectPage {
    csrf: String,
    who: String,
    card: ProjectCard,
    git_url: String,
    pipelines: Vec<PipelineLine>,
    heals: Vec<HealLine>,
    pulls: Vec<PullLine>,
    tasks: Vec<super::tasks::TaskLine>,
}

pub(super) async fn find_project(server: &Server, s: &SessionRow, name: &str) -> Result<ProjectRow, Response> {
    match server.store.project(name).await {
        Ok(Some(p)) if p.kind != "local" => Ok(p),
        Ok(_) => Err(error(s, StatusCode::NOT_FOUND, "No such project", format!("There is no project '{name}'."))),
        Err(e) => Err(internal(s, e)),
    }
}

pub async fn project(State(server): S, Extension(s): Sess, Path(name): Path<String>) -> Response {
    let p = match find_project(&server, &s, &name).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let loaded = async {
        let card = card(&server, &p).await?;
        let pipelines = server.store.project_pipelines(&p.id, 30).await?;
        let heals = server.store.heals(Some(&p.id), None, 0, 20).await?;
        let pulls = server.store.pulls(Some(&p.id), Some("open"), 20).await?;
        let tasks = server.store.tasks(&p.id).await?;
        Ok::<_, salve_store::StoreError>((card, pipelines, heals, pulls, tasks))
    }
    .await;
    let (card, pipelines, heals, pulls, tasks) = match loaded {
        Ok(x) => x,
        Err(e) => return internal(&s, e),
    };
    page(&ProjectPage {
        csrf: s.csrf.clone(),
        who: s.token.name.clone(),
        git_url: if p.kind == "hosted" { format!("{}/git/{}.git", server.base_url(), p.name) } else { String::new() },
        card,
        pipelines: pipelines.iter().map(pipeline_line).collect(),
        heals: heals.iter().map(heal_line).collect(),
        pulls: pulls.iter().map(pull_line).collect(),
        tasks: tasks.iter().map(super::tasks::task_line).collect(),
    })
}
