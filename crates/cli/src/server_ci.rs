//! The heal's view of a failed pipeline on a Salve server: the `Ci` trait over the REST API
//! (`salve heal` in a heal pipeline's job, `salve heal replay --project`).

use salve_contract::{HealOutcome, RunResult, RunState, api};
use salve_heal::{Ci, CiError, Claimed, FailedJob, Failure};
use salve_logs::classify::Class;

use crate::client::{Client, encode};

/// The heal's view of a failed pipeline on a Salve server.
pub(crate) fn server_ci(client: Client, pipeline: String) -> HttpCi {
    HttpCi { client, pipeline, failed: Default::default() }
}

pub(crate) struct HttpCi {
    pub(crate) client: Client,
    /// The pipeline the heal was started for (the failed one or one promoted from it).
    pipeline: String,
    /// The failed pipeline as the API shows it, read once.
    failed: std::cell::OnceCell<api::Pipeline>,
}

impl HttpCi {
    /// The failed pipeline, fetched once.
    fn failed(&self) -> Result<&api::Pipeline, CiError> {
        if let Some(p) = self.failed.get() {
            return Ok(p);
        }
        let mut p: api::Pipeline = self.client.get(&format!("/api/v1/pipelines/{}", encode(&self.pipeline)))?;
        let parent = p.pipeline.promotion_of.clone().filter(|_| p.pipeline.result != Some(RunResult::Failed));
        if let Some(parent) = parent {
            p = self.client.get(&format!("/api/v1/pipelines/{}", encode(&parent)))?;
        }
        if p.pipeline.state != RunState::Done || p.pipeline.result == Some(RunResult::Passed) {
            return Err(CiError::NotHealable(format!(
                "pipeline {} has not failed ({} {}): nothing to heal",
                p.pipeline.id,
                p.pipeline.state,
                p.pipeline.result.map_or("", RunResult::as_str)
            )));
        }
        Ok(self.failed.get_or_init(|| p))
    }

    pub(crate) fn project(&self) -> Result<String, CiError> {
        Ok(self.failed()?.pipeline.project.clone())
    }
}

impl Ci for HttpCi {
    fn failure(&self) -> Result<Failure, CiError> {
        let p = self.failed()?;
        let mut jobs = Vec::new();
        for j in p.blocks.iter().flat_map(|b| &b.jobs) {
            // A job its time limit stopped is healed like a failed one; user and auto-cancel
            // stops never are.
            let timed_out = j.result == Some(RunResult::Stopped) && j.result_reason.as_deref() == Some("timeout");
            if j.result != Some(RunResult::Failed) && !timed_out {
                continue;
            }
            let report = self.client.get::<api::Failure>(&format!("/api/v1/jobs/{}/failure", encode(&j.id)));
            let report = report.ok().map(|f| f.report);
            let class = match &report {
                Some(r) => r.class,
                None if timed_out => Class::Timeout,
                None => Class::Unknown,
            };
            let (fingerprint, failing_command, excerpt) = report.map_or_else(Default::default, |r| {
                let excerpt: Vec<String> = r.excerpt.into_iter().map(|l| l.text).collect();
                (r.fingerprint, r.failing_command.unwrap_or_default(), excerpt.join("\n"))
            });
            jobs.push(FailedJob {
                name: j.name.clone(),
                class,
                fingerprint,
                failing_command,
                excerpt,
                id: j.id.clone(),
                rerun: None,
            });
        }
        let summary = &p.pipeline;
        Ok(Failure {
            pipeline_id: summary.id.clone(),
            project: summary.project.clone(),
            sha: summary.sha.clone(),
            branch: summary.branch.clone(),
            file: summary.file.clone(),
            // The server answers whether this commit passed before, over all its pipelines.
            passed_before: p.passed_before,
            jobs,
        })
    }

    fn claim(&self, failure: &Failure, fingerprint: &str) -> Result<Claimed, CiError> {
        let body = api::ClaimHeal {
            pipeline_id: failure.pipeline_id.clone(),
            fingerprint: fingerprint.to_owned(),
            job_id: std::env::var("SEMAPHORE_JOB_ID").ok(),
        };
        let (status, v) = self.client.post_any("/api/v1/heals", &body)?;
        let unreadable = |e: serde_json::Error| {
            CiError::Unreadable(format!("the server's answer ({status}) is not what salve reads: {e}"))
        };
        match status {
            201 => Ok(Claimed::Mine(serde_json::from_value::<api::Heal>(v).map_err(unreadable)?.id)),
            409 => {
                let h = serde_json::from_value::<api::HealTaken>(v).map_err(unreadable)?.heal;
                Ok(Claimed::Taken(format!(
                    "{}, {}",
                    h.id,
                    h.outcome.map_or_else(|| h.state.to_string(), |o| o.to_string())
                )))
            }
            _ => {
                let message =
                    serde_json::from_value::<api::Error>(v).map_or_else(|e| e.to_string(), |e| e.error.message);
                Err(CiError::Refused { status, message })
            }
        }
    }

    fn finish(&self, heal_id: &str, outcome: HealOutcome, report: &api::HealReport) -> Result<(), CiError> {
        let body = api::FinishHeal { outcome, report: report.clone() };
        self.client.post::<api::Heal>(&format!("/api/v1/heals/{}/finish", encode(heal_id)), &body)?;
        Ok(())
    }

    fn latest_sha(&self, branch: &str) -> Result<Option<String>, CiError> {
        let project = self.project()?;
        let list: api::WorkflowList = self.client.get(&format!(
            "/api/v1/workflows?project={}&branch={}&limit=1",
            encode(&project),
            encode(branch)
        ))?;
        Ok(list.workflows.into_iter().next().map(|w| w.sha))
    }

    fn heals_since(&self, branch: &str, since_ms: i64) -> Result<usize, CiError> {
        let project = self.project()?;
        let list: api::HealList = self.client.get(&format!(
            "/api/v1/heals?project={}&branch={}&since_ms={since_ms}&limit=1000",
            encode(&project),
            encode(branch)
        ))?;
        Ok(list.heals.len())
    }

    fn job_log(&self, job_id: &str, tail: usize) -> Result<String, CiError> {
        let window: api::LogWindow = self.client.get(&format!("/api/v1/jobs/{}/logs?tail={tail}", encode(job_id)))?;
        Ok(window.lines.into_iter().map(|l| l.text).collect::<Vec<_>>().join("\n"))
    }

    fn open_heal_pulls(&self) -> Result<usize, CiError> {
        let project = self.project()?;
        let list: api::PullList =
            self.client.get(&format!("/api/v1/pulls?project={}&state=open&limit=1000", encode(&project)))?;
        Ok(list.pulls.iter().filter(|p| p.head.starts_with(salve_heal::HEAL_PREFIX)).count())
    }
}
