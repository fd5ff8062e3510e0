//! The engine's side of the store: every event is persisted before anyone hears of it, and
//! secrets are read from the store and opened for the jobs that need them. `salve run` and the
//! server share both.

use std::path::PathBuf;
use std::sync::Mutex;

use salve_engine::{Event, Observer, RunResult, Secret, Secrets};
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
        let block_row = |name: &str, state: &str, result: Option<&RunResult>, reason: &Option<String>| BlockRow {
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
            Event::JobFinished { block, job, job_id, result, result_reason, summary, commands, .. } => {
                let rows: Vec<CommandRow> = commands
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
                    // The stored row: a job run again on another agent logs into a folder of
                    // its attempt's.
                    let row = store.job(job_id).await?.unwrap_or(row);
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

/// Tries to store an event this many times (a busy database, a dropped connection) before the
/// pipeline records the error.
const ATTEMPTS: u32 = 3;

impl Observer for Recorder<'_> {
    /// Stores the event, then announces it: an event that could not be stored is never
    /// announced (a live view must not show what the store does not hold); the pipeline keeps
    /// the first such error and ends with it.
    fn event(&self, event: &Event) {
        let mut result = self.rt.block_on(self.persist(event));
        for attempt in 1..ATTEMPTS {
            if result.is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50 * u64::from(attempt)));
            result = self.rt.block_on(self.persist(event));
        }
        match result {
            Ok(()) => self.then.event(event),
            Err(e) => {
                tracing::warn!(pipeline = %self.pipeline_id, "cannot store {event:?}: {e}");
                if let Ok(mut first) = self.first_error.lock() {
                    first.get_or_insert_with(|| e.to_string());
                }
            }
        }
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

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use std::sync::Mutex;

    use salve_engine::{Event, Observer};

    use super::Recorder;

    /// What the recorder announced.
    #[derive(Default)]
    struct Heard(Mutex<Vec<String>>);

    impl Observer for Heard {
        fn event(&self, event: &Event) {
            if let Ok(mut h) = self.0.lock() {
                h.push(format!("{event:?}"));
            }
        }
    }

    /// Stored before announced: an event the store refuses (a block of a pipeline it does not
    /// know) is not announced, and the pipeline keeps the error.
    #[test]
    fn an_event_that_was_not_stored_is_not_announced() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build();
        let rt = rt.expect("a runtime");
        let dir = tempfile::tempdir().expect("a folder");
        let store = rt
            .block_on(salve_store::Store::open(&format!("sqlite://{}/salve.db", dir.path().display())))
            .expect("a store");
        let heard = Heard::default();
        let recorder = Recorder::new(rt.handle().clone(), &store, "no-such-pipeline", dir.path().to_path_buf(), &heard);
        recorder.event(&Event::PipelineStarted {
            pipeline_id: "no-such-pipeline".into(),
            name: "p".into(),
            blocks: vec![],
        });
        recorder.event(&Event::BlockStarted { block: "build".into() });
        let heard = heard.0.lock().map(|h| h.clone()).unwrap_or_default();
        assert_eq!(heard.len(), 1, "only the event that needs no row was announced: {heard:?}");
        assert!(heard[0].starts_with("PipelineStarted"), "{heard:?}");
        assert!(recorder.error().is_some_and(|e| !e.is_empty()), "the pipeline keeps the store's error");
    }
}
