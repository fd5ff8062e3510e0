//! A pipeline's page: its blocks and jobs, the promotion chain it belongs to, manual promotions.

use askama::Template;
use axum::Extension;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use salve_store::PipelineInfo;
use serde::Deserialize;

use crate::server::Server;
use crate::web::csrf_ok;
use crate::web::html::{self, Status};

use super::*;

pub(super) struct JobLine {
    id: String,
    name: String,
    status: Status,
    duration: String,
}

pub(super) struct BlockView {
    name: String,
    status: Status,
    /// The blocks it waits for.
    after: String,
    jobs: Vec<JobLine>,
}

pub(super) struct ParamView {
    name: String,
    required: bool,
    options: Vec<String>,
    default: String,
    description: String,
}

pub(super) struct PromotionView {
    name: String,
    file: String,
    condition: String,
    /// The pipeline it started from this one, if it fired.
    fired: String,
    params: Vec<ParamView>,
}

pub(super) struct ChainStep {
    label: String,
    line: PipelineLine,
    current: bool,
}

#[derive(Template)]
#[template(path = "pipeline.html")]
pub(super) struct PipelinePage {
    csrf: String,
    who: String,
    project: String,
    p: PipelineLine,
    file: String,
    error: String,
    promoted_by: String,
    chain: Vec<ChainStep>,
    blocks: Vec<BlockView>,
    promotions: Vec<PromotionView>,
    running: bool,
}

pub(super) fn label(i: &PipelineInfo) -> String {
    let heal_branch = i.workflow.branch.starts_with("selfheal-");
    match (i.pipeline.promotion_of.is_some(), heal_branch) {
        (false, false) => "CI".into(),
        (false, true) => "CI on the heal branch".into(),
        (true, _) => i.pipeline.name.clone(),
    }
}

/// The promotion chain a pipeline belongs to: the failed CI run, its heal pipeline, CI on the
/// heal branch and the pull-request pipeline, in order.
pub(super) async fn chain(server: &Server, info: &PipelineInfo) -> salve_store::Result<Vec<PipelineInfo>> {
    let w = &info.workflow;
    let mut origin_workflow = w.id.clone();
    if w.branch.starts_with("selfheal-")
        && let Some(h) = server.store.heal_of_branch(&w.project_id, &w.branch).await?
        && let Some(failed) = server.store.pipeline_info(&h.pipeline_id).await?
    {
        origin_workflow = failed.workflow.id.clone();
    }
    let mut out = server.store.workflow_pipelines(&origin_workflow).await?;
    out.sort_by_key(|i| i.pipeline.created_ms);
    let firsts: Vec<String> =
        out.iter().filter(|i| i.pipeline.promotion_of.is_none()).map(|i| i.pipeline.id.clone()).collect();
    for first in &firsts {
        for h in server.store.heals_of_pipeline(first).await? {
            let Some(branch) = h.heal_branch else { continue };
            if let Some(hw) = server.store.workflows(&w.project_id, Some(&branch), 1).await?.first() {
                let mut more = server.store.workflow_pipelines(&hw.id).await?;
                more.sort_by_key(|i| i.pipeline.created_ms);
                out.extend(more);
            }
        }
    }
    Ok(out)
}

pub async fn pipeline(State(server): S, Extension(s): Sess, Path(id): Path<String>) -> Response {
    let info = match server.store.pipeline_info(&id).await {
        Ok(Some(i)) => i,
        Ok(None) => return error(&s, StatusCode::NOT_FOUND, "No such pipeline", format!("There is no pipeline {id}.")),
        Err(e) => return internal(&s, e),
    };
    let loaded = async {
        let blocks = server.store.blocks(&id).await?;
        let jobs = server.store.jobs(&id).await?;
        let chain = chain(&server, &info).await?;
        let children = server.store.workflow_pipelines(&info.workflow.id).await?;
        Ok::<_, salve_store::StoreError>((blocks, jobs, chain, children))
    }
    .await;
    let (blocks, jobs, chain, children) = match loaded {
        Ok(x) => x,
        Err(e) => return internal(&s, e),
    };
    let p = &info.pipeline;
    // The plan the pipeline ran: block dependencies, jobs that never started, promotions.
    let plan = server.plan_of(&info).await.ok();
    let planned = |block: &str| plan.as_ref().and_then(|pl| pl.blocks.iter().find(|b| b.name == block));
    let blocks = blocks
        .iter()
        .map(|b| {
            let mut lines: Vec<JobLine> = jobs
                .iter()
                .filter(|j| j.block_name == b.name)
                .map(|j| JobLine {
                    id: j.id.clone(),
                    name: j.name.clone(),
                    status: html::status(&j.state, j.result.as_deref()),
                    duration: html::between(j.started_ms, j.done_ms),
                })
                .collect();
            for pj in planned(&b.name).map(|pb| pb.jobs.as_slice()).unwrap_or_default() {
                if !lines.iter().any(|l| l.name == pj.name) {
                    lines.push(JobLine {
                        id: String::new(),
                        name: pj.name.clone(),
                        status: Status { label: "○ not run".into(), class: "canceled" },
                        duration: String::new(),
                    });
                }
            }
            BlockView {
                name: b.name.clone(),
                status: html::status(&b.state, b.result.as_deref()),
                after: planned(&b.name).map(|pb| pb.dependencies.join(", ")).unwrap_or_default(),
                jobs: lines,
            }
        })
        .collect();
    // The promotions as the pipeline's file has them, and which of them fired.
    let promotions: Vec<PromotionView> = plan
        .map(|plan| {
            plan.promotions
                .iter()
                .map(|pr| PromotionView {
                    name: pr.name.clone(),
                    file: pr.pipeline_file.clone(),
                    condition: pr.auto_promote.clone().unwrap_or_else(|| {
                        if pr.auto_promote_on.is_empty() { "manual".into() } else { "auto_promote_on".into() }
                    }),
                    fired: children
                        .iter()
                        .find(|c| {
                            c.pipeline.promotion_of.as_deref() == Some(p.id.as_str())
                                && c.pipeline.file.ends_with(&pr.pipeline_file)
                        })
                        .map(|c| c.pipeline.id.clone())
                        .unwrap_or_default(),
                    params: pr
                        .parameters
                        .iter()
                        .map(|x| ParamView {
                            name: x.name.clone(),
                            required: x.required,
                            options: x.options.clone(),
                            default: x.default_value.clone().unwrap_or_default(),
                            description: x.description.clone().unwrap_or_default(),
                        })
                        .collect(),
                })
                .collect()
        })
        .unwrap_or_default();
    page(&PipelinePage {
        csrf: s.csrf.clone(),
        who: s.token.name.clone(),
        project: info.project.clone(),
        p: pipeline_line(&info),
        file: p.file.clone(),
        error: p.error.clone().unwrap_or_default(),
        promoted_by: p.promoted_by.clone().unwrap_or_default(),
        chain: chain
            .iter()
            .map(|c| ChainStep { label: label(c), line: pipeline_line(c), current: c.pipeline.id == p.id })
            .collect(),
        blocks,
        promotions,
        running: p.state != "done",
    })
}

#[derive(Deserialize)]
pub struct PromoteForm {
    #[serde(default)]
    csrf: String,
    target: String,
    /// `NAME=VALUE` lines.
    #[serde(default)]
    params: String,
}

pub async fn promote(
    State(server): S,
    Extension(s): Sess,
    Path(id): Path<String>,
    Form(f): Form<PromoteForm>,
) -> Response {
    if !csrf_ok(&s, &f.csrf) {
        return forbidden();
    }
    let params = match name_values(&f.params) {
        Ok(p) => p,
        Err(e) => return error(&s, StatusCode::BAD_REQUEST, "Promotion not started", e),
    };
    match server.promote_manual(&id, &f.target, &params, false, &format!("web: {}", s.token.name)).await {
        Ok(child) => Redirect::to(&format!("/pipelines/{}", child.id)).into_response(),
        Err(e) => {
            error(&s, StatusCode::UNPROCESSABLE_ENTITY, "Promotion not started", crate::http::ApiError::from(e).1)
        }
    }
}
