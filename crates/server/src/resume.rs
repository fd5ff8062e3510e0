//! A pipeline adopted from a lost replica runs on from what the store holds: its jobs keep their
//! ids; a job that ended keeps its outcome; a job on an agent is waited for again (the agent
//! queue still has it); a job the lost replica ran itself died with it and ends
//! `failed/server_stopped`.

use std::collections::HashMap;

use salve_engine::{Prior, PriorJob};
use salve_runner::{CommandRecord, Failure, JobOutcome, JobResult, StopReason};
use salve_store::{JobRow, Store};

/// What the store says an earlier run of a pipeline did.
pub(crate) struct Stored {
    jobs: HashMap<(String, String), Vec<PriorJob>>,
}

impl Prior for Stored {
    fn job(&self, block: &str, name: &str, nth: usize) -> Option<PriorJob> {
        self.jobs.get(&(block.to_owned(), name.to_owned()))?.get(nth).cloned()
    }
}

pub(crate) const SERVER_STOPPED: &str =
    "the Salve server running this job stopped (killed, or its machine went down) while it ran";

impl Stored {
    pub(crate) async fn read(store: &Store, pipeline_id: &str) -> salve_store::Result<Stored> {
        let mut rows = store.jobs(pipeline_id).await?;
        rows.sort_by_key(|j| (j.block_name.clone(), j.name.clone(), j.started_ms));
        let mut jobs: HashMap<(String, String), Vec<PriorJob>> = HashMap::new();
        for row in rows {
            let outcome = if row.state == "done" {
                Some(ended(&row, store.commands(&row.id).await?.iter().filter_map(command).collect()))
            } else if store.agent_job(&row.id).await?.is_some() {
                // On an agent: its executor waits for the report again.
                None
            } else {
                let mut died = ended(&row, Vec::new());
                (died.result, died.failure, died.summary) =
                    (JobResult::Failed, Some(Failure::ServerStopped), SERVER_STOPPED.to_owned());
                Some(died)
            };
            jobs.entry((row.block_name.clone(), row.name.clone()))
                .or_default()
                .push(PriorJob { id: row.id.clone(), outcome });
        }
        Ok(Stored { jobs })
    }
}

/// The outcome a stored job row tells of.
fn ended(row: &JobRow, commands: Vec<CommandRecord>) -> JobOutcome {
    let reason = row.result_reason.as_deref().unwrap_or("");
    let failure = match reason {
        "agent_lost" => Some(Failure::AgentLost),
        "server_stopped" => Some(Failure::ServerStopped),
        _ => None,
    };
    let started = u64::try_from(row.started_ms.unwrap_or(0)).unwrap_or(0);
    JobOutcome {
        result: match row.result.as_deref() {
            Some("passed") => JobResult::Passed,
            Some("stopped") => JobResult::Stopped,
            _ => JobResult::Failed,
        },
        stop_reason: StopReason::parse(reason),
        failure,
        summary: row.summary.clone().unwrap_or_default(),
        log_lines: commands.iter().map(|c| c.end_line).max().unwrap_or(0),
        commands,
        started_ms: started,
        finished_ms: u64::try_from(row.done_ms.unwrap_or(0)).unwrap_or(started),
        log_bytes: 0,
    }
}

fn command(c: &salve_store::CommandRow) -> Option<CommandRecord> {
    Some(CommandRecord {
        phase: salve_runner::script::Phase::parse(&c.phase)?,
        index: usize::try_from(c.idx).ok()?,
        command: c.command.clone(),
        started_ms: u64::try_from(c.started_ms).ok()?,
        duration_ms: u64::try_from(c.duration_ms).ok()?,
        exit_code: c.exit_code.and_then(|e| i32::try_from(e).ok()),
        first_line: u64::try_from(c.first_line).ok()?,
        end_line: u64::try_from(c.end_line).ok()?,
    })
}
