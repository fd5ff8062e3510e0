//! The failure as Semaphore's public API (v1alpha) tells it, from inside the heal pipeline's
//! job: `SEMAPHORE_PIPELINE_ID` is the heal pipeline, promoted from the failed one in the same
//! workflow (`SEMAPHORE_WORKFLOW_ID`); the token is the `SEMAPHORE_API_TOKEN` secret, sent as
//! `Authorization: Token …`. Endpoints: `GET /pipelines/:id?detailed=true`,
//! `GET /pipelines?wf_id=…`, `GET /promotions?pipeline_id=…`, `GET /logs/:job_id` (the job's
//! log events) and `GET /pipelines?project_id=…&branch_name=…` (did this commit pass before).

use std::collections::BTreeMap;

use salve_heal::{CiError, Failure};
use salve_logs::excerpt::Baseline;
use serde::Deserialize;

use super::{Http, Read, analysed};
use crate::client::encode;

#[derive(Deserialize, Default, Clone)]
#[serde(default)]
struct Pipeline {
    ppl_id: String,
    wf_id: String,
    yaml_file_name: String,
    working_directory: String,
    state: String,
    result: String,
    result_reason: String,
    commit_sha: String,
    branch_name: String,
    project_id: String,
    /// A timestamp in one of the API's formats: only compared between pipelines.
    created_at: serde_json::Value,
}

impl Pipeline {
    fn failed(&self) -> bool {
        self.result.eq_ignore_ascii_case("failed") || self.timed_out()
    }

    fn timed_out(&self) -> bool {
        self.result.eq_ignore_ascii_case("stopped") && self.result_reason.eq_ignore_ascii_case("timeout")
    }

    fn file(&self) -> String {
        let dir = self.working_directory.trim_start_matches("./").trim_end_matches('/');
        let dir = if dir.is_empty() { ".semaphore" } else { dir };
        format!("{dir}/{}", if self.yaml_file_name.is_empty() { "semaphore.yml" } else { &self.yaml_file_name })
    }

    /// When it was created, for ordering (seconds, whichever format the API used).
    fn created(&self) -> f64 {
        match &self.created_at {
            serde_json::Value::Object(o) => o.get("seconds").and_then(serde_json::Value::as_f64).unwrap_or(0.0),
            serde_json::Value::Number(n) => n.as_f64().unwrap_or(0.0),
            serde_json::Value::String(s) => s.parse().unwrap_or_else(|_| {
                // `2019-10-14 18:31:17.293456Z`: digits in order compare as the time does.
                s.chars().filter(char::is_ascii_digit).take(14).collect::<String>().parse().unwrap_or(0.0)
            }),
            _ => 0.0,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Described {
    pipeline: Pipeline,
    blocks: Vec<Block>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Block {
    jobs: Vec<Job>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Job {
    job_id: String,
    name: String,
    result: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Promotion {
    scheduled_pipeline_id: String,
}

/// The API's `{"events": [...]}` as the agent's log file has them, one JSON event per line
/// (what [`salve_logs::semaphore::Events`] reads); another answer as it is.
fn events_log(body: &[u8]) -> Vec<u8> {
    #[derive(Deserialize)]
    struct Log {
        events: Vec<serde_json::Value>,
    }
    match serde_json::from_slice::<Log>(body) {
        Ok(log) => log.events.iter().flat_map(|e| format!("{e}\n").into_bytes()).collect(),
        Err(_) => body.to_vec(),
    }
}

pub fn read(env: &dyn Fn(&str) -> Option<String>, pipeline: Option<&str>) -> Result<Read, CiError> {
    let org = env("SEMAPHORE_ORGANIZATION_URL").ok_or_else(|| {
        CiError::NotHealable(
            "SEMAPHORE_ORGANIZATION_URL is not set: run `salve heal --for semaphore` in a Semaphore job".into(),
        )
    })?;
    let token = env("SEMAPHORE_API_TOKEN").or_else(|| env("SEMAPHORE_TOKEN")).ok_or_else(|| {
        CiError::NotHealable(
            "reading the failed pipeline needs a Semaphore API token: attach a secret with SEMAPHORE_API_TOKEN to the heal job".into(),
        )
    })?;
    let current = pipeline.map(str::to_owned).or_else(|| env("SEMAPHORE_PIPELINE_ID")).ok_or_else(|| {
        CiError::NotHealable(
            "say which pipeline failed: --pipeline ID (in a Semaphore job SEMAPHORE_PIPELINE_ID says it)".into(),
        )
    })?;
    let api = Http::new(
        "Semaphore",
        &format!("{}/api/v1alpha", org.trim_end_matches('/')),
        vec![("authorization", format!("Token {token}")), ("user-agent", "SemaphoreCI v2.0 Client".into())],
        &token,
    )?;
    let describe = |id: &str| api.get::<Described>(&format!("/pipelines/{}?detailed=true", encode(id)));
    let mut failed = describe(&current)?;
    if !failed.pipeline.failed() {
        // The heal pipeline itself: the failed one is the pipeline of its workflow that promoted it.
        let wf = env("SEMAPHORE_WORKFLOW_ID").unwrap_or_else(|| failed.pipeline.wf_id.clone());
        let list: Vec<Pipeline> = api.get(&format!("/pipelines?wf_id={}", encode(&wf)))?;
        let mut candidates: Vec<Pipeline> = list.into_iter().filter(|p| p.ppl_id != current && p.failed()).collect();
        candidates.sort_by(|a, b| b.created().total_cmp(&a.created()));
        let chosen = if candidates.len() > 1 {
            let mut promoter = None;
            for c in &candidates {
                let promotions: Vec<Promotion> = api.get(&format!("/promotions?pipeline_id={}", encode(&c.ppl_id)))?;
                if promotions.iter().any(|p| p.scheduled_pipeline_id == current) {
                    promoter = Some(c.clone());
                    break;
                }
            }
            promoter.or_else(|| candidates.first().cloned())
        } else {
            candidates.into_iter().next()
        };
        let Some(chosen) = chosen else {
            return Err(CiError::NotHealable(format!(
                "no pipeline of workflow {wf} has failed: pipeline {current} is {} {}, nothing to heal",
                failed.pipeline.state.to_lowercase(),
                failed.pipeline.result.to_lowercase()
            )));
        };
        failed = describe(&chosen.ppl_id)?;
    }
    let p = &failed.pipeline;
    let mut logs = BTreeMap::new();
    let mut jobs = Vec::new();
    for b in &failed.blocks {
        for j in &b.jobs {
            let timed_out = p.timed_out() && j.result.eq_ignore_ascii_case("stopped");
            if !j.result.eq_ignore_ascii_case("failed") && !timed_out {
                continue;
            }
            let log = events_log(&api.bytes(&format!("/logs/{}", encode(&j.job_id)))?);
            let (job, tail) = analysed(&j.job_id, &j.name, &log, &Baseline::default(), timed_out.then_some("timeout"));
            logs.insert(j.job_id.clone(), tail);
            jobs.push(job);
        }
    }
    // Did this commit pass CI before (a flaky failure)?
    let file = p.file();
    let earlier: Vec<Pipeline> = api
        .get(&format!("/pipelines?project_id={}&branch_name={}", encode(&p.project_id), encode(&p.branch_name)))
        .unwrap_or_default();
    let passed_before = earlier
        .iter()
        .any(|e| e.commit_sha == p.commit_sha && e.result.eq_ignore_ascii_case("passed") && e.file() == file);
    Ok(Read {
        failure: Failure {
            pipeline_id: p.ppl_id.clone(),
            project: p.project_id.clone(),
            sha: p.commit_sha.clone(),
            branch: p.branch_name.clone(),
            file,
            passed_before,
            jobs,
        },
        logs,
    })
}
