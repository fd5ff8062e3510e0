//! Stored rows as the API's types (`salve_contract::api`): what the REST API answers, the MCP
//! tools read and the pages show.

use salve_contract::api;
use salve_contract::{AgentState, HealOutcome, HealState, ProjectKind, PullState, RefKind, RunResult, RunState};
use salve_git::Repo;
use salve_store::agent_jobs::AttemptRow;
use salve_store::{
    AgentRow, AgentTypeRow, CommandRow, HealRow, JobRow, PipelineInfo, ProjectRow, PullRow, TokenRow, WorkflowRow,
};

use crate::http::{ApiError, blocking};
use crate::server::Server;

/// A state as stored; the store only writes the contract's names, so an unknown one is a row
/// from a newer Salve: it reads as done.
pub fn state(s: &str) -> RunState {
    RunState::parse(s).unwrap_or(RunState::Done)
}

/// A result as stored (none while it runs).
pub fn result(s: Option<&str>) -> Option<RunResult> {
    s.and_then(RunResult::parse)
}

pub fn ref_kind(s: &str) -> RefKind {
    RefKind::parse(s).unwrap_or(RefKind::Branch)
}

pub async fn project(server: &Server, p: &ProjectRow) -> Result<api::Project, ApiError> {
    let kind = ProjectKind::parse(&p.kind).unwrap_or(ProjectKind::Local);
    let git_url = (kind == ProjectKind::Hosted).then(|| format!("{}/git/{}.git", server.base_url(), p.name));
    // An external project's repository is the upstream its mirror fetches from.
    let repo_url = if kind == ProjectKind::External {
        let dir = p.repo_url.clone();
        blocking(move || Repo::new(&dir).config_get("remote.upstream.url")).await?
    } else {
        None
    };
    Ok(api::Project { id: p.id.clone(), name: p.name.clone(), kind, git_url, repo_url, created_ms: p.created_ms })
}

/// A project of this server by name or id (never a `salve run` work tree's).
pub async fn find_project(server: &Server, name: &str) -> Result<ProjectRow, ApiError> {
    server
        .store
        .project(name)
        .await?
        .filter(|p| p.kind != ProjectKind::Local.as_str())
        .ok_or_else(|| ApiError::not_found(format!("no project '{name}' (`salve project list` shows them)")))
}

/// A task of `project` (its name).
pub fn task(project: &str, t: &salve_store::TaskRow) -> api::Task {
    api::Task {
        id: t.id.clone(),
        project: project.to_owned(),
        project_id: t.project_id.clone(),
        name: t.name.clone(),
        description: t.description.clone(),
        branch: t.branch.clone(),
        pipeline_file: t.pipeline_file.clone(),
        schedule: t.schedule.clone(),
        parameters: crate::tasks::parameters(t),
        paused: t.paused,
        next_run_ms: t.next_run_ms,
        created_ms: t.created_ms,
        updated_ms: t.updated_ms,
    }
}

/// A workflow of `project` (its name) whose first pipeline is `initial`.
pub fn workflow(project: &str, w: &WorkflowRow, initial: Option<String>) -> api::WorkflowSummary {
    api::WorkflowSummary {
        id: w.id.clone(),
        project: project.to_owned(),
        project_id: w.project_id.clone(),
        initial_pipeline_id: initial,
        number: w.number,
        ref_type: ref_kind(&w.ref_type),
        label: w.label.clone(),
        branch: w.branch.clone(),
        sha: w.sha.clone(),
        triggered_by: w.triggered_by.clone(),
        rerun_of: w.rerun_of.clone(),
        created_ms: w.created_ms,
    }
}

pub fn pipeline(i: &PipelineInfo) -> api::PipelineSummary {
    let (p, w) = (&i.pipeline, &i.workflow);
    let ref_type = ref_kind(&w.ref_type);
    api::PipelineSummary {
        id: p.id.clone(),
        workflow_id: p.workflow_id.clone(),
        project: i.project.clone(),
        name: p.name.clone(),
        file: p.file.clone(),
        ref_type,
        branch: w.branch.clone(),
        tag: (ref_type == RefKind::Tag).then(|| w.label.clone()),
        label: w.label.clone(),
        sha: w.sha.clone(),
        state: state(&p.state),
        result: result(p.result.as_deref()),
        result_reason: p.result_reason.clone(),
        error: p.error.clone(),
        promotion_of: p.promotion_of.clone(),
        promoted_by: p.promoted_by.clone(),
        params: serde_json::from_str(&p.params).unwrap_or_default(),
        created_ms: p.created_ms,
        started_ms: p.started_ms,
        done_ms: p.done_ms,
    }
}

/// A job, with its attempts on agents (of any number of jobs: those of others are skipped).
pub fn job(j: &JobRow, attempts: &[AttemptRow]) -> api::JobSummary {
    let attempts: Vec<api::JobAttempt> = attempts.iter().filter(|a| a.job_id == j.id).map(attempt).collect();
    api::JobSummary {
        agent: attempts.last().and_then(|a| a.agent.clone()),
        attempts,
        id: j.id.clone(),
        pipeline_id: j.pipeline_id.clone(),
        block: j.block_name.clone(),
        name: j.name.clone(),
        state: state(&j.state),
        result: result(j.result.as_deref()),
        result_reason: j.result_reason.clone(),
        summary: j.summary.clone(),
        started_ms: j.started_ms,
        done_ms: j.done_ms,
    }
}

pub fn attempt(a: &AttemptRow) -> api::JobAttempt {
    api::JobAttempt {
        attempt: u32::try_from(a.attempt).unwrap_or(0),
        agent: a.agent_name.clone(),
        agent_id: a.agent_id.clone(),
        queued_ms: a.queued_ms,
        started_ms: a.started_ms,
        finished_ms: a.finished_ms,
        result: result(a.result.as_deref()),
        result_reason: a.result_reason.clone(),
    }
}

pub fn command(c: &CommandRow) -> api::Command {
    api::Command {
        phase: c.phase.clone(),
        index: c.idx,
        command: c.command.clone(),
        started_ms: c.started_ms,
        duration_ms: c.duration_ms,
        exit_code: c.exit_code,
        first_line: c.first_line,
        end_line: c.end_line,
    }
}

pub fn token(t: &TokenRow) -> api::Token {
    api::Token {
        id: t.id.clone(),
        name: t.name.clone(),
        created_ms: t.created_ms,
        last_used_ms: t.last_used_ms,
        project_id: t.project_id.clone(),
    }
}

pub fn agent_type(t: &AgentTypeRow) -> api::AgentType {
    api::AgentType { name: t.name.clone(), created_ms: t.created_ms, disabled: t.disabled_ms.is_some() }
}

/// An agent as of `now_ms`: lost when it has been silent longer than its lease.
/// An agent as of `now_ms`: lost when silent longer than `lost_after_ms`; `jobs`, those it runs.
pub fn agent(a: &AgentRow, now_ms: i64, lost_after_ms: i64, jobs: Vec<String>) -> api::Agent {
    let silent_ms = now_ms.saturating_sub(a.last_seen_ms);
    let state = match a.disconnected_ms {
        Some(_) => AgentState::Disconnected,
        None if silent_ms > lost_after_ms => AgentState::Lost,
        None => AgentState::Connected,
    };
    api::Agent {
        id: a.id.clone(),
        name: a.name.clone(),
        agent_type: a.agent_type.clone(),
        version: a.version.clone(),
        slots: a.slots,
        state,
        registered_ms: a.registered_ms,
        last_seen_ms: a.last_seen_ms,
        jobs,
    }
}

pub fn heal(h: &HealRow) -> api::Heal {
    api::Heal {
        id: h.id.clone(),
        project_id: h.project_id.clone(),
        pipeline_id: h.pipeline_id.clone(),
        sha: h.sha.clone(),
        branch: h.branch.clone(),
        fingerprint: h.fingerprint.clone(),
        job_id: h.job_id.clone(),
        state: HealState::parse(&h.state).unwrap_or(HealState::Done),
        outcome: h.outcome.as_deref().and_then(HealOutcome::parse),
        // Every field of a report has a default: one from an older heal reads as far as it goes.
        report: serde_json::from_str(&h.report).unwrap_or_default(),
        created_ms: h.created_ms,
        finished_ms: h.finished_ms,
        heal_branch: h.heal_branch.clone(),
        pull_request: h.pull_request,
    }
}

pub fn pull(project: &str, p: &PullRow) -> api::Pull {
    api::Pull {
        number: p.number,
        project: project.to_owned(),
        head: p.head.clone(),
        base: p.base.clone(),
        title: p.title.clone(),
        body: p.body.clone(),
        state: PullState::parse(&p.state).unwrap_or(PullState::Closed),
        created_by: p.created_by.clone(),
        created_ms: p.created_ms,
        merged_sha: p.merged_sha.clone(),
        merged_ms: p.merged_ms,
    }
}
