//! A heal's page: its tiers, the guards' refusals, the diff, the model's transcript.

use askama::Template;
use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use salve_contract::api::HealReport;
use serde_json::Value;

use crate::web::html::{self, Status};

use super::*;

pub(super) struct TierView {
    tier: String,
    name: String,
    result: String,
    detail: String,
    duration: String,
}

pub(super) struct MessageView {
    role: String,
    text: String,
    calls: Vec<String>,
}

#[derive(Template)]
#[template(path = "heal.html")]
pub(super) struct HealPage {
    csrf: String,
    who: String,
    project: String,
    id: String,
    status: Status,
    branch: String,
    sha: String,
    failed_pipeline: String,
    fingerprint: String,
    summary: String,
    tiers: Vec<TierView>,
    refusals: Vec<(String, String, String)>,
    diff: String,
    diff_stat: String,
    heal_branch: String,
    model: String,
    tokens: u64,
    cost: String,
    turns: u64,
    verifying: Option<PipelineLine>,
    pulls: Vec<PullLine>,
    transcript: Vec<MessageView>,
    isolation: String,
    job_id: String,
    when: String,
}

pub async fn heal(State(server): S, Extension(s): Sess, Path(id): Path<String>) -> Response {
    let h = match server.store.heal(&id).await {
        Ok(Some(h)) => h,
        Ok(None) => return error(&s, StatusCode::NOT_FOUND, "No such heal", format!("There is no heal {id}.")),
        Err(e) => return internal(&s, e),
    };
    let r: HealReport = serde_json::from_str(&h.report).unwrap_or_default();
    let project = server.store.project(&h.project_id).await.ok().flatten();
    let heal_branch = h.heal_branch.clone().unwrap_or_default();
    let mut verifying = None;
    let mut pulls = Vec::new();
    if let Some(p) = &project
        && !heal_branch.is_empty()
    {
        verifying =
            crate::api::pulls::branch_ci(&server, &p.id, &heal_branch).await.ok().flatten().as_ref().map(pipeline_line);
        if let Some(number) = h.pull_request
            && let Ok(Some(pull)) = server.store.pull(&p.id, number).await
        {
            pulls.push(pull_line(&pull));
        }
    }
    let transcript = match (&project, &h.job_id) {
        (Some(p), Some(job)) => {
            let path = job_artifact_dir(&server, &p.id, job).join("selfheal/transcript.json");
            let text = tokio::fs::read_to_string(path).await.unwrap_or_default();
            let t: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            t["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| MessageView {
                    role: m["role"].as_str().unwrap_or("").to_owned(),
                    text: m["content"].as_str().unwrap_or("").to_owned(),
                    calls: m["tool_calls"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|c| format!("{} {}", c["name"].as_str().unwrap_or(""), c["arguments"]))
                        .collect(),
                })
                .collect()
        }
        _ => Vec::new(),
    };
    page(&HealPage {
        csrf: s.csrf.clone(),
        who: s.token.name.clone(),
        project: project.map(|p| p.name).unwrap_or_default(),
        id: h.id.clone(),
        status: html::outcome(h.outcome.as_deref(), &h.state),
        branch: h.branch.clone(),
        sha: html::short(&h.sha),
        failed_pipeline: h.pipeline_id.clone(),
        fingerprint: h.fingerprint.clone(),
        summary: r.summary.clone(),
        tiers: r
            .tiers
            .iter()
            .map(|t| TierView {
                tier: t.tier.to_string(),
                name: t.name.clone(),
                result: t.result.replace('_', " "),
                detail: t.detail.clone(),
                duration: html::duration(Some(t.duration_ms as i64)),
            })
            .collect(),
        refusals: r.refusals.iter().map(|x| (x.rule.replace('_', " "), x.file.clone(), x.detail.clone())).collect(),
        diff: html::diff(r.diff.as_deref().unwrap_or("")),
        diff_stat: r.diff_stat.clone().unwrap_or_default(),
        heal_branch,
        model: r.model.clone().unwrap_or_default(),
        tokens: r.tokens.unwrap_or(0),
        cost: r.cost_usd.filter(|c| *c > 0.0).map(|c| format!("${c:.4}")).unwrap_or_default(),
        turns: r.turns.unwrap_or(0),
        verifying,
        pulls,
        transcript,
        isolation: r.isolation.clone().unwrap_or_default(),
        job_id: h.job_id.clone().unwrap_or_default(),
        when: html::ago(h.created_ms),
    })
}
