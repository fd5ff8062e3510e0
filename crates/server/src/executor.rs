//! Where a job runs. A job whose machine type is an agent type (`s1-NAME`), or any job when the
//! server has an agent pool, goes to the agent queue: sealed (it holds the job's secrets) into
//! the store, claimed by an agent of the type, and waited for here until its report is stored;
//! a stop reaches the agent through its next log chunk's answer. Every other job runs on this
//! machine, at most `--jobs` at once across all pipelines.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use salve_contract::{RunResult, api};
use salve_engine::Executor;
use salve_runner::{Failure, JobControl, JobOutcome, JobResult, JobSpec, NoObserver, StopReason};
use serde::{Deserialize, Serialize};

use crate::server::Server;

/// How an agent job ended, as the store keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub(crate) enum Report {
    /// Its agent's report.
    Agent(api::FinishJob),
    /// Stopped before an agent claimed it.
    Stopped { reason: String },
    /// Its agent was lost on the last attempt.
    Lost,
    /// No agent can run it (its payload does not open with this server's key).
    Unrunnable { message: String },
}

impl Report {
    pub(crate) fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The associated data an agent job's payload is sealed under: it opens for that job only.
pub(crate) fn payload_name(job_id: &str) -> String {
    format!("agent job {job_id}")
}

/// Where a job of a machine type goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Here,
    Agents(String),
    /// The server runs no jobs itself and no agent type takes this machine type.
    Nowhere,
}

impl Server {
    pub(crate) fn target(&self, machine_type: &str) -> Target {
        if salve_contract::valid_agent_type_name(machine_type) {
            Target::Agents(machine_type.to_owned())
        } else if let Some(pool) = &self.config.agent_pool {
            Target::Agents(pool.clone())
        } else if self.config.jobs == 0 {
            Target::Nowhere
        } else {
            Target::Here
        }
    }

    pub(crate) fn lease_ms(&self) -> i64 {
        i64::try_from(self.config.agent_lost_after_seconds.saturating_mul(1000)).unwrap_or(i64::MAX)
    }
}

/// The executor of one pipeline's jobs.
pub(crate) struct Jobs<'a> {
    pub server: &'a Arc<Server>,
    pub pipeline_id: &'a str,
    pub project: api::AgentProject,
    pub sha: String,
    /// The variables naming places on this server (`salve_launch::place_env`): an agent job
    /// gets the agent's own.
    pub places: Vec<(String, String)>,
}

/// How often a waiting job looks at the store for its report when none was heard of here.
const POLL: Duration = Duration::from_millis(500);

impl Executor for Jobs<'_> {
    fn run(&self, machine_type: &str, spec: &JobSpec, control: &JobControl) -> Result<JobOutcome, String> {
        match self.server.target(machine_type) {
            Target::Here => {
                let _slot = self.server.local_slots.take(control);
                // A job stopped while it waited never starts: the runner says so.
                salve_runner::run_job(spec, control, &NoObserver).map_err(|e| e.to_string())
            }
            Target::Agents(agent_type) => self.on_agents(&agent_type, spec, control),
            Target::Nowhere => Err(format!(
                "no executor for machine type '{machine_type}': this server runs no jobs itself (--jobs 0) and has \
                 no agent pool; name an agent type (s1-NAME) in agent.machine.type, or start the server with \
                 --jobs N or --agent-pool s1-NAME"
            )),
        }
    }
}

impl Jobs<'_> {
    fn wire(&self, spec: &JobSpec) -> api::AgentJob {
        let place = |k: &str, v: &str| self.places.iter().any(|(pk, pv)| pk == k && pv == v);
        let b64 = base64::engine::general_purpose::STANDARD;
        api::AgentJob {
            job_id: spec.id.clone(),
            attempt: 0,
            pipeline_id: self.pipeline_id.to_owned(),
            project: self.project.clone(),
            sha: self.sha.clone(),
            commands: spec.commands.clone(),
            epilogue_always: spec.epilogue.always.clone(),
            epilogue_on_pass: spec.epilogue.on_pass.clone(),
            epilogue_on_fail: spec.epilogue.on_fail.clone(),
            env: spec
                .env
                .iter()
                .filter(|(k, v)| !place(k, v))
                .map(|(name, value)| api::AgentVariable { name: name.clone(), value: value.clone() })
                .collect(),
            files: spec
                .files
                .iter()
                .map(|f| api::AgentFile { path: f.path.clone(), content_base64: b64.encode(&f.content), mode: f.mode })
                .collect(),
            secret_values: spec.secret_values.clone(),
            time_limit_seconds: spec.time_limit.map(|t| t.as_secs()),
            lease_seconds: 0,
            storage_token: String::new(),
            containers: spec
                .containers
                .iter()
                .map(|c| api::AgentContainer {
                    name: c.name.clone(),
                    image: c.image.clone(),
                    command: c.command.clone(),
                    entrypoint: c.entrypoint.clone(),
                    user: c.user.clone(),
                    env: c
                        .env
                        .iter()
                        .map(|(name, value)| api::AgentVariable { name: name.clone(), value: value.clone() })
                        .collect(),
                })
                .collect(),
            pull_credentials: spec
                .pull_credentials
                .iter()
                .map(|c| api::AgentPullCredential {
                    registry: c.registry.clone(),
                    username: c.username.clone(),
                    password: c.password.clone(),
                })
                .collect(),
        }
    }

    /// Queues the job for agents of `agent_type` and waits for its report.
    fn on_agents(&self, agent_type: &str, spec: &JobSpec, control: &JobControl) -> Result<JobOutcome, String> {
        let server = self.server;
        let plain = serde_json::to_vec(&self.wire(spec)).map_err(|e| e.to_string())?;
        let sealed = server.sealer.seal_bytes(&payload_name(&spec.id), &plain).map_err(|e| e.to_string())?;
        drop(plain);
        let flag = server.waiting.add(&spec.id);
        let queued =
            server.rt.block_on(server.store.enqueue_agent_job(&spec.id, self.pipeline_id, agent_type, &sealed));
        if let Err(e) = queued {
            server.waiting.remove(&spec.id);
            return Err(format!("cannot queue the job for agents: {e}"));
        }
        server.agent_work.notify_waiters();
        let waited = self.wait(&spec.id, control, &flag);
        server.waiting.remove(&spec.id);
        waited
    }

    fn wait(&self, job_id: &str, control: &JobControl, flag: &AtomicBool) -> Result<JobOutcome, String> {
        let store = &self.server.store;
        let mut asked_to_stop = false;
        let mut polled = Instant::now();
        loop {
            if !asked_to_stop && let Some(reason) = control.stop_reason() {
                asked_to_stop = true;
                let report = Report::Stopped { reason: reason.as_str().to_owned() }.json();
                let dropped = self.server.rt.block_on(store.stop_agent_job(job_id, reason.as_str(), &report));
                if let Err(e) = dropped {
                    tracing::warn!(job = %job_id, "cannot pass the stop to the agent: {e}");
                }
                polled = Instant::now() - POLL;
            }
            if flag.swap(false, Ordering::AcqRel) || polled.elapsed() >= POLL {
                polled = Instant::now();
                match self.server.rt.block_on(store.agent_job(job_id)) {
                    Ok(Some(row)) if row.state == "done" => {
                        let report: Report = serde_json::from_str(row.report.as_deref().unwrap_or(""))
                            .map_err(|e| format!("the stored report of the job is unreadable: {e}"))?;
                        return Ok(outcome(report));
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => return Err("the job left the agent queue".into()),
                    Err(e) => tracing::warn!(job = %job_id, "cannot read the agent queue: {e}"),
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The runner's outcome for a report.
fn outcome(report: Report) -> JobOutcome {
    let now = salve_runner::log::unix_ms();
    let blank = |result, stop_reason, failure, summary: &str| JobOutcome {
        result,
        stop_reason,
        failure,
        summary: summary.to_owned(),
        commands: Vec::new(),
        started_ms: now,
        finished_ms: now,
        log_lines: 0,
        log_bytes: 0,
    };
    match report {
        Report::Stopped { reason } => {
            blank(JobResult::Stopped, StopReason::parse(&reason), None, "stopped before an agent took the job")
        }
        Report::Unrunnable { message } => {
            blank(JobResult::Failed, None, Some(Failure::Setup { message: message.clone() }), &message)
        }
        Report::Lost => blank(
            JobResult::Failed,
            None,
            Some(Failure::AgentLost),
            "agent lost: the agents running this job went silent on every attempt",
        ),
        Report::Agent(r) => JobOutcome {
            result: match r.result {
                RunResult::Passed => JobResult::Passed,
                RunResult::Failed => JobResult::Failed,
                RunResult::Stopped | RunResult::Canceled => JobResult::Stopped,
            },
            stop_reason: r.stop_reason.as_deref().and_then(StopReason::parse),
            failure: None,
            summary: r.summary,
            commands: r.commands.into_iter().filter_map(salve_launch::wire::from_wire).collect(),
            started_ms: r.started_ms,
            finished_ms: r.finished_ms,
            log_lines: r.log_lines,
            log_bytes: r.log_bytes,
        },
    }
}

/// Lapsed leases, found by every replica's dispatcher: each lost attempt is logged, and a job
/// lost on its last attempt ends (its executor sees the report).
pub(crate) async fn reap(server: &Server) {
    match server.store.reap_lost_agent_jobs(&Report::Lost.json()).await {
        Ok(lost) => {
            for l in lost {
                if l.requeued {
                    tracing::warn!(job = %l.job_id, attempt = l.attempt, "agent lost: the job is queued again");
                    server.agent_work.notify_waiters();
                } else {
                    tracing::warn!(job = %l.job_id, attempt = l.attempt, "agent lost again: the job failed");
                }
                server.drop_storage_token(&l.job_id, l.attempt).await;
                server.waiting.reported(&l.job_id);
            }
        }
        Err(e) => tracing::error!("cannot look for lost agent jobs: {e}"),
    }
}
