//! The failure as GitLab's API (v4) tells it, from a job with `when: on_failure` in the failed
//! pipeline (`CI_PIPELINE_ID`): its failed jobs and their traces, with `GITLAB_TOKEN` (a project
//! or personal token, `PRIVATE-TOKEN`) or else the job's own `CI_JOB_TOKEN` (`JOB-TOKEN`).
//! Endpoints: `GET /projects/:id/pipelines/:id`, `GET /projects/:id/pipelines/:id/jobs?scope[]=failed`,
//! `GET /projects/:id/jobs/:id/trace` and `GET /projects/:id/pipelines?sha=…&status=success`.
//! Each failed job runs again as `.gitlab-ci.yml` says ([`super::workflows::gitlab_job`]).

use std::collections::BTreeMap;
use std::path::Path;

use salve_heal::{CiError, Failure};
use salve_logs::excerpt::Baseline;
use serde::Deserialize;

use super::{Http, Read, analysed, workflows};
use crate::client::encode;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Pipeline {
    id: u64,
    sha: String,
    #[serde(rename = "ref")]
    git_ref: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Job {
    id: u64,
    name: String,
    status: String,
    allow_failure: bool,
    failure_reason: Option<String>,
}

pub fn read(
    env: &dyn Fn(&str) -> Option<String>,
    pipeline: Option<&str>,
    repo_dir: &Path,
    baseline: &Baseline,
) -> Result<Read, CiError> {
    let api_url = env("CI_API_V4_URL").ok_or_else(|| {
        CiError::NotHealable("CI_API_V4_URL is not set: run `salve heal --for gitlab` in a GitLab CI job".into())
    })?;
    let project = env("CI_PROJECT_ID").ok_or_else(|| CiError::NotHealable("CI_PROJECT_ID is not set".into()))?;
    let id = pipeline.map(str::to_owned).or_else(|| env("CI_PIPELINE_ID")).ok_or_else(|| {
        CiError::NotHealable("say which pipeline failed: --pipeline ID (in GitLab CI CI_PIPELINE_ID says it)".into())
    })?;
    let (header, token) = match (env("GITLAB_TOKEN"), env("CI_JOB_TOKEN")) {
        (Some(t), _) => ("private-token", t),
        (None, Some(t)) => ("job-token", t),
        (None, None) => {
            return Err(CiError::NotHealable(
                "reading the failed jobs needs GITLAB_TOKEN (a project access token with api scope, as a CI/CD variable)".into(),
            ));
        }
    };
    let api = Http::new("GitLab", &api_url, vec![(header, token.clone())], &token)?;
    let at = format!("/projects/{}", encode(&project));
    let p: Pipeline = api.get(&format!("{at}/pipelines/{}", encode(&id)))?;
    let jobs: Vec<Job> = api.get(&format!("{at}/pipelines/{}/jobs?scope%5B%5D=failed&per_page=100", encode(&id)))?;
    let file = env("CI_CONFIG_PATH")
        .filter(|f| !f.contains("://") && !f.contains('@'))
        .unwrap_or_else(|| ".gitlab-ci.yml".into());
    let mut logs = BTreeMap::new();
    let mut failed = Vec::new();
    for j in jobs.iter().filter(|j| j.status == "failed" && !j.allow_failure) {
        let job_id = j.id.to_string();
        let log = api.bytes(&format!("{at}/jobs/{job_id}/trace"))?;
        let hint = (j.failure_reason.as_deref() == Some("job_execution_timeout")).then_some("timeout");
        let (mut job, tail) = analysed(&job_id, &j.name, &log, baseline, hint);
        job.rerun = Some(workflows::gitlab_job(repo_dir, &file, &j.name).map_err(CiError::Unreadable)?);
        logs.insert(job_id, tail);
        failed.push(job);
    }
    let passed: Vec<Pipeline> =
        api.get(&format!("{at}/pipelines?sha={}&status=success&per_page=20", encode(&p.sha))).unwrap_or_default();
    // A merge request pipeline runs for `refs/merge-requests/N/head`: the branch is its source.
    let branch =
        env("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME").filter(|_| p.git_ref.starts_with("refs/")).unwrap_or(p.git_ref);
    Ok(Read {
        failure: Failure {
            pipeline_id: p.id.to_string(),
            project,
            sha: p.sha,
            branch,
            file,
            passed_before: passed.iter().any(|q| q.id != p.id),
            jobs: failed,
        },
        logs,
    })
}
