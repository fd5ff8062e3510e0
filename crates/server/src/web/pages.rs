//! The pages: what each shows, read from the store, rendered by askama.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use askama::Template;
use axum::Extension;
use axum::body::Body;
use axum::extract::{Form, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use salve_contract::HealOutcome;
use salve_contract::api::HealReport;
use salve_git::Repo;
use salve_runner::log::LogReader;
use salve_store::{HealRow, JobRow, PipelineInfo, ProjectRow, SessionRow};
use serde::Deserialize;
use serde_json::Value;

use super::csrf_ok;
use super::html::{self, Status};
use crate::server::Server;

type S = State<Arc<Server>>;
type Sess = Extension<SessionRow>;

/// Lines a job page shows at once.
const PAGE_LINES: u64 = 1000;

fn page(t: &impl Template) -> Response {
    Html(html::render(t)).into_response()
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    csrf: String,
    who: String,
    title: String,
    message: String,
}

fn error(s: &SessionRow, status: StatusCode, title: &str, message: impl Into<String>) -> Response {
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

fn internal(s: &SessionRow, e: impl std::fmt::Display) -> Response {
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

// ---------------------------------------------------------------- projects

struct BranchView {
    branch: String,
    sha: String,
    status: Status,
    pipeline_id: String,
    when: String,
}

struct ProjectCard {
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
struct ProjectsPage {
    csrf: String,
    who: String,
    projects: Vec<ProjectCard>,
}

/// Each branch's newest workflow and the result of its first pipeline, newest first.
async fn branches(server: &Server, project: &ProjectRow, most: usize) -> salve_store::Result<Vec<BranchView>> {
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

async fn card(server: &Server, p: &ProjectRow) -> salve_store::Result<ProjectCard> {
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

struct PipelineLine {
    id: String,
    name: String,
    branch: String,
    sha: String,
    status: Status,
    duration: String,
    when: String,
}

fn pipeline_line(i: &PipelineInfo) -> PipelineLine {
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

struct HealLine {
    id: String,
    branch: String,
    sha: String,
    status: Status,
    summary: String,
    when: String,
}

fn heal_line(h: &HealRow) -> HealLine {
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

struct PullLine {
    number: i64,
    title: String,
    head: String,
    base: String,
    state: String,
    when: String,
}

#[derive(Template)]
#[template(path = "project.html")]
struct ProjectPage {
    csrf: String,
    who: String,
    card: ProjectCard,
    git_url: String,
    pipelines: Vec<PipelineLine>,
    heals: Vec<HealLine>,
    pulls: Vec<PullLine>,
}

async fn find_project(server: &Server, s: &SessionRow, name: &str) -> Result<ProjectRow, Response> {
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
        Ok::<_, salve_store::StoreError>((card, pipelines, heals, pulls))
    }
    .await;
    let (card, pipelines, heals, pulls) = match loaded {
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
    })
}

fn pull_line(p: &salve_store::PullRow) -> PullLine {
    PullLine {
        number: p.number,
        title: p.title.clone(),
        head: p.head.clone(),
        base: p.base.clone(),
        state: p.state.clone(),
        when: html::ago(p.created_ms),
    }
}

// ---------------------------------------------------------------- pipeline

struct JobLine {
    id: String,
    name: String,
    status: Status,
    duration: String,
}

struct BlockView {
    name: String,
    status: Status,
    /// The blocks it waits for.
    after: String,
    jobs: Vec<JobLine>,
}

struct ParamView {
    name: String,
    required: bool,
    options: Vec<String>,
    default: String,
    description: String,
}

struct PromotionView {
    name: String,
    file: String,
    condition: String,
    /// The pipeline it started from this one, if it fired.
    fired: String,
    params: Vec<ParamView>,
}

struct ChainStep {
    label: String,
    line: PipelineLine,
    current: bool,
}

#[derive(Template)]
#[template(path = "pipeline.html")]
struct PipelinePage {
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

fn label(i: &PipelineInfo) -> String {
    let heal_branch = i.workflow.branch.starts_with("selfheal-");
    match (i.pipeline.promotion_of.is_some(), heal_branch) {
        (false, false) => "CI".into(),
        (false, true) => "CI on the heal branch".into(),
        (true, _) => i.pipeline.name.clone(),
    }
}

/// The promotion chain a pipeline belongs to: the failed CI run, its heal pipeline, CI on the
/// heal branch and the pull-request pipeline, in order.
async fn chain(server: &Server, info: &PipelineInfo) -> salve_store::Result<Vec<PipelineInfo>> {
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
    let mut params = BTreeMap::new();
    for line in f.params.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match line.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                params.insert(k.trim().to_owned(), v.trim().to_owned());
            }
            _ => {
                return error(
                    &s,
                    StatusCode::BAD_REQUEST,
                    "Promotion not started",
                    format!("'{line}' is not NAME=VALUE."),
                );
            }
        }
    }
    match server.promote_manual(&id, &f.target, &params, false, &format!("web: {}", s.token.name)).await {
        Ok(child) => Redirect::to(&format!("/pipelines/{}", child.id)).into_response(),
        Err(e) => {
            error(&s, StatusCode::UNPROCESSABLE_ENTITY, "Promotion not started", crate::http::ApiError::from(e).1)
        }
    }
}

// ---------------------------------------------------------------- job

struct LineView {
    n: u64,
    html: String,
    evidence: bool,
}

struct CommandView {
    title: String,
    exit: String,
    duration: String,
    failed: bool,
    lines: Vec<LineView>,
}

struct FailureView {
    class: String,
    command: String,
    evidence: bool,
    lines: Vec<LineView>,
    tests: Vec<String>,
}

struct ArtifactView {
    path: String,
    size: String,
}

#[derive(Template)]
#[template(path = "job.html")]
struct JobPage {
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

async fn job_and_project(server: &Server, s: &SessionRow, id: &str) -> Result<(JobRow, PipelineInfo), Response> {
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
        crate::http::blocking(move || salve_launch::failure::stored(&kept))
            .await
            .ok()
            .flatten()
            .and_then(|v| serde_json::from_value(v).ok())
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

fn job_artifact_dir(server: &Server, project_id: &str, job_id: &str) -> PathBuf {
    crate::api::artifacts::folder(server, project_id, "jobs", job_id)
}

async fn artifacts_of(server: &Server, project_id: &str, job_id: &str) -> Vec<ArtifactView> {
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

fn size(n: u64) -> String {
    match n {
        0..1024 => format!("{n} B"),
        1024..1_048_576 => format!("{:.1} KiB", n as f64 / 1024.0),
        _ => format!("{:.1} MiB", n as f64 / 1_048_576.0),
    }
}

async fn send_file(path: PathBuf, name: &str, content_type: &str) -> Response {
    match tokio::fs::File::open(&path).await {
        Ok(f) => {
            let body = Body::from_stream(tokio_util::io::ReaderStream::new(f));
            let disposition = format!("attachment; filename=\"{}\"", name.replace(['"', '\\', '\n', '\r'], "_"));
            ([(header::CONTENT_TYPE, content_type.to_owned()), (header::CONTENT_DISPOSITION, disposition)], body)
                .into_response()
        }
        Err(_) => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

pub async fn raw_log(State(server): S, Extension(s): Sess, Path(id): Path<String>) -> Response {
    match job_and_project(&server, &s, &id).await {
        Ok((job, _)) => {
            let path = PathBuf::from(&job.log_dir).join(salve_runner::log::LOG_FILE);
            send_file(path, &format!("{id}.log"), "text/plain; charset=utf-8").await
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
    send_file(full, &name, "application/octet-stream").await
}

// ---------------------------------------------------------------- heal

struct TierView {
    tier: String,
    name: String,
    result: String,
    detail: String,
    duration: String,
}

struct MessageView {
    role: String,
    text: String,
    calls: Vec<String>,
}

#[derive(Template)]
#[template(path = "heal.html")]
struct HealPage {
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

// ---------------------------------------------------------------- pull requests

#[derive(Template)]
#[template(path = "pulls.html")]
struct PullsPage {
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

struct CommentView {
    author: String,
    body: String,
    when: String,
}

#[derive(Template)]
#[template(path = "pull.html")]
struct PullPage {
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
