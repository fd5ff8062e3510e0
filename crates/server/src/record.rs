//! The engine's side of the store: every event is persisted before anyone hears of it, and
//! secrets are read from the store and opened for the jobs that need them. `salve run` and the
//! server share both.

use std::path::PathBuf;
use std::sync::Mutex;

use salve_engine::{Event, Observer, Outcome, Secret, Secrets};
use salve_store::secrets::Sealer;
use salve_store::{BlockRow, CommandRow, JobRow, Store};
use tokio::runtime::Handle;

/// Persists each event of one pipeline, then hands it to `then`. The engine calls it from its
/// own threads, so `rt` must be a multi-thread runtime's handle.
pub struct Recorder<'a> {
    pub rt: Handle,
    pub store: &'a Store,
    pub pipeline_id: String,
    pub jobs_dir: PathBuf,
    pub then: &'a dyn Observer,
    first_error: Mutex<Option<String>>,
}

impl<'a> Recorder<'a> {
    pub fn new(rt: Handle, store: &'a Store, pipeline_id: &str, jobs_dir: PathBuf, then: &'a dyn Observer) -> Self {
        Recorder { rt, store, pipeline_id: pipeline_id.to_owned(), jobs_dir, then, first_error: Mutex::new(None) }
    }

    /// The first event that could not be stored, if one could not.
    pub fn error(&self) -> Option<String> {
        self.first_error.lock().ok().and_then(|e| e.clone())
    }

    async fn persist(&self, event: &Event) -> salve_store::Result<()> {
        let store = self.store;
        let pid = &self.pipeline_id;
        let block_row = |name: &str, state: &str, result: Option<&Outcome>, reason: &Option<String>| BlockRow {
            pipeline_id: pid.clone(),
            name: name.to_owned(),
            state: state.to_owned(),
            result: result.map(|r| r.as_str().to_owned()),
            result_reason: reason.clone(),
        };
        let job_row = |block: &str, job: &str, job_id: &str, state: &str| JobRow {
            id: job_id.to_owned(),
            pipeline_id: pid.clone(),
            block_name: block.to_owned(),
            name: job.to_owned(),
            state: state.to_owned(),
            result: None,
            result_reason: None,
            summary: None,
            log_dir: self.jobs_dir.join(job_id).to_string_lossy().into_owned(),
            started_ms: None,
            done_ms: None,
        };
        match event {
            Event::PipelineStarted { .. } => Ok(()),
            Event::BlockStarted { block } => store.set_block(&block_row(block, "running", None, &None)).await,
            Event::BlockFinished { block, result, result_reason } => {
                store.set_block(&block_row(block, "done", Some(result), result_reason)).await
            }
            Event::JobStarted { block, job, job_id } => {
                let mut row = job_row(block, job, job_id, "running");
                row.started_ms = Some(salve_store::now_ms());
                store.set_job(&row).await
            }
            Event::JobFinished { block, job, job_id, result, result_reason, summary, .. } => {
                let records: Vec<salve_runner::CommandRecord> =
                    std::fs::read(self.jobs_dir.join(job_id).join("commands.json"))
                        .ok()
                        .and_then(|b| serde_json::from_slice(&b).ok())
                        .unwrap_or_default();
                let rows: Vec<CommandRow> = records
                    .iter()
                    .enumerate()
                    .map(|(seq, c)| CommandRow {
                        job_id: job_id.clone(),
                        seq: seq as i64,
                        phase: c.phase.name().to_owned(),
                        idx: c.index as i64,
                        command: c.command.clone(),
                        started_ms: c.started_ms as i64,
                        duration_ms: c.duration_ms as i64,
                        exit_code: c.exit_code.map(i64::from),
                        first_line: c.first_line as i64,
                        end_line: c.end_line as i64,
                    })
                    .collect();
                store.set_commands(job_id, &rows).await?;
                let mut row = job_row(block, job, job_id, "done");
                row.result = Some(result.as_str().to_owned());
                row.result_reason = result_reason.clone();
                row.summary = Some(summary.clone());
                row.done_ms = Some(salve_store::now_ms());
                store.set_job(&row).await?;
                // A job stopped by its time limit failed as much as one that exited non-zero.
                let timed_out =
                    *result == salve_runner::JobResult::Stopped && result_reason.as_deref() == Some("timeout");
                if *result == salve_runner::JobResult::Failed || timed_out {
                    // The report is made now, while the baseline is the run before this one. A
                    // report that cannot be made is made again when asked for.
                    let gathered = crate::failure::gather(store, row).await?;
                    if let Err(e) = crate::failure::store_report(&gathered) {
                        tracing::warn!(job = %job_id, "cannot keep the failure report: {e}");
                    }
                }
                Ok(())
            }
            Event::PipelineFinished { result, result_reason, error, .. } => {
                store.finish_pipeline(pid, result.as_str(), result_reason.as_deref(), error.as_deref()).await.map(drop)
            }
        }
    }
}

impl Observer for Recorder<'_> {
    fn event(&self, event: &Event) {
        if let Err(e) = self.rt.block_on(self.persist(event))
            && let Ok(mut first) = self.first_error.lock()
        {
            first.get_or_insert_with(|| e.to_string());
        }
        self.then.event(event);
    }
}

/// Secrets for the engine, read from the store and opened with the key.
pub struct StoredSecrets<'a> {
    pub rt: Handle,
    pub store: &'a Store,
    pub sealer: &'a Sealer,
}

impl Secrets for StoredSecrets<'_> {
    fn get(&self, name: &str) -> Result<Option<Secret>, String> {
        let Some(sealed) = self.rt.block_on(self.store.secret(name)).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let data = self.sealer.open(name, &sealed).map_err(|e| e.to_string())?;
        Ok(Some(Secret { env_vars: data.env_vars, files: data.files }))
    }
}
