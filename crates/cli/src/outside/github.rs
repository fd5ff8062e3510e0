//! The failure as GitHub Actions' REST API tells it: the run (`GITHUB_RUN_ID`, or in a
//! `workflow_run` workflow the run that triggered it, from the event payload), its failed jobs
//! and their logs, with `GITHUB_TOKEN`. Endpoints: `GET /repos/{repo}/actions/runs/{id}`,
//! `GET /repos/{repo}/actions/runs/{id}/jobs`, `GET /repos/{repo}/actions/jobs/{id}/logs`
//! (a redirect to the log's text) and `GET /repos/{repo}/actions/runs?head_sha=…&status=success`.
//! Each failed job runs again as its workflow file says ([`super::workflows::github_job`]).

use std::collections::BTreeMap;
use std::path::Path;

use salve_heal::{CiError, Failure};
use salve_logs::excerpt::Baseline;
use serde::Deserialize;

use super::{Http, Read, analysed, workflows};
use crate::client::encode;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Run {
    id: u64,
    head_sha: String,
    head_branch: Option<String>,
    path: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Runs {
    workflow_runs: Vec<Run>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Jobs {
    jobs: Vec<Job>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Job {
    id: u64,
    name: String,
    status: String,
    conclusion: Option<String>,
}

/// The run to heal: `--pipeline`, the run a `workflow_run` event is about, else this run.
fn run_id(env: &dyn Fn(&str) -> Option<String>, pipeline: Option<&str>) -> Result<String, CiError> {
    if let Some(p) = pipeline {
        return Ok(p.to_owned());
    }
    if env("GITHUB_EVENT_NAME").as_deref() == Some("workflow_run")
        && let Some(path) = env("GITHUB_EVENT_PATH")
    {
        let text =
            std::fs::read(&path).map_err(|e| CiError::Unreadable(format!("cannot read the event {path}: {e}")))?;
        let v: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|e| CiError::Unreadable(format!("the event {path} is not JSON: {e}")))?;
        if let Some(id) = v.pointer("/workflow_run/id").and_then(serde_json::Value::as_u64) {
            return Ok(id.to_string());
        }
    }
    env("GITHUB_RUN_ID").ok_or_else(|| {
        CiError::NotHealable("say which run failed: --pipeline RUN_ID (in GitHub Actions GITHUB_RUN_ID says it)".into())
    })
}

pub fn read(
    env: &dyn Fn(&str) -> Option<String>,
    pipeline: Option<&str>,
    repo_dir: &Path,
    baseline: &Baseline,
) -> Result<Read, CiError> {
    let repo = env("GITHUB_REPOSITORY")
        .filter(|r| r.split_once('/').is_some_and(|(o, n)| !o.is_empty() && !n.is_empty() && !n.contains('/')))
        .ok_or_else(|| {
            CiError::NotHealable("GITHUB_REPOSITORY (owner/name) is not set: run in GitHub Actions or set it".into())
        })?;
    let token = env("GITHUB_TOKEN").or_else(|| env("GH_TOKEN")).ok_or_else(|| {
        CiError::NotHealable(
            "reading the failed run needs GITHUB_TOKEN: add `env: GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}` (with `actions: read`)".into(),
        )
    })?;
    let base = env("GITHUB_API_URL").unwrap_or_else(|| "https://api.github.com".into());
    let api = Http::new(
        "GitHub",
        &base,
        vec![
            ("authorization", format!("Bearer {token}")),
            ("accept", "application/vnd.github+json".into()),
            ("x-github-api-version", "2022-11-28".into()),
        ],
        &token,
    )?;
    let id = run_id(env, pipeline)?;
    let at = format!("/repos/{repo}/actions");
    let run: Run = api.get(&format!("{at}/runs/{}", encode(&id)))?;
    let jobs: Jobs = api.get(&format!("{at}/runs/{}/jobs?filter=latest&per_page=100", encode(&id)))?;
    let file = run.path.split('@').next().unwrap_or("").to_owned();
    let mut logs = BTreeMap::new();
    let mut failed = Vec::new();
    for j in &jobs.jobs {
        let conclusion = j.conclusion.as_deref().unwrap_or("");
        if j.status != "completed" || !matches!(conclusion, "failure" | "timed_out") {
            continue;
        }
        let job_id = j.id.to_string();
        let log = api.bytes(&format!("{at}/jobs/{job_id}/logs"))?;
        let hint = (conclusion == "timed_out").then_some("timeout");
        let (mut job, tail) = analysed(&job_id, &j.name, &log, baseline, hint);
        job.rerun = Some(workflows::github_job(repo_dir, &file, &j.name).map_err(CiError::Unreadable)?);
        logs.insert(job_id, tail);
        failed.push(job);
    }
    let passed: Runs = api
        .get(&format!("{at}/runs?head_sha={}&status=success&per_page=100", encode(&run.head_sha)))
        .unwrap_or_default();
    let passed_before = passed.workflow_runs.iter().any(|r| r.id != run.id && r.path.split('@').next() == Some(&file));
    Ok(Read {
        failure: Failure {
            pipeline_id: run.id.to_string(),
            project: repo,
            sha: run.head_sha,
            branch: run.head_branch.unwrap_or_default(),
            file,
            passed_before,
            jobs: failed,
        },
        logs,
    })
}
