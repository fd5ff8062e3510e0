//! The failure report of a job: the lines that explain it (diffed against the newest passing
//! run of the same job, when there is one), its class, fingerprint, failing command and failing
//! tests. Made once when a job fails and kept beside its log as `failure.json`; the API serves
//! that file (and makes it for a job that has none, such as one older than this feature).

use std::path::{Path, PathBuf};

use salve_contract::RunResult;
use salve_contract::api::Failure;
use salve_logs::excerpt::{Baseline, CommandSpan};
use salve_logs::report::{Inputs, report, report_reader};
use salve_runner::log::LOG_FILE;
use salve_store::{JobRow, Store};

/// The file beside a job's log that holds its report.
pub const FAILURE_FILE: &str = "failure.json";

/// What the analysis needs, gathered from the store.
pub struct Gathered {
    job: JobRow,
    baseline: Option<(String, PathBuf)>,
    commands: Vec<CommandSpan>,
}

pub async fn gather(store: &Store, job: JobRow) -> salve_store::Result<Gathered> {
    let baseline = match store.pipeline_info(&job.pipeline_id).await? {
        Some(info) => {
            store
                .last_passed_job(
                    &info.workflow.project_id,
                    &info.pipeline.file,
                    &job.block_name,
                    &job.name,
                    job.done_ms.unwrap_or(i64::MAX),
                )
                .await?
        }
        None => None,
    };
    // The runner's per-command records tell which command failed.
    let commands = store
        .commands(&job.id)
        .await?
        .into_iter()
        .map(|c| CommandSpan {
            command: c.command,
            first_line: u64::try_from(c.first_line).unwrap_or(0),
            end_line: u64::try_from(c.end_line).unwrap_or(0),
            exit_code: c.exit_code.and_then(|e| i32::try_from(e).ok()),
        })
        .collect();
    Ok(Gathered { baseline: baseline.map(|(id, dir)| (id, PathBuf::from(dir))), job, commands })
}

/// Reads the logs and makes the report (blocking: run it off the async threads).
pub fn analyze(g: &Gathered) -> Result<Failure, ReportError> {
    let mut b = Baseline::default();
    if let Some(file) = g.baseline.as_ref().and_then(|(_, d)| std::fs::File::open(d.join(LOG_FILE)).ok()) {
        b.add_reader(file).map_err(ReportError::Baseline)?;
    }
    // The runner's verdict (an OOM kill, a signal, the time limit) or the job's stop reason,
    // when there is one, is its class.
    let verdict = g.job.summary.as_deref().and_then(salve_runner::verdict);
    let hint = verdict.or(g.job.result_reason.as_deref().filter(|r| *r != "test"));
    let inputs = Inputs { baseline: Some(&b), commands: &g.commands, hint, ..Inputs::default() };
    let r = match std::fs::File::open(Path::new(&g.job.log_dir).join(LOG_FILE)) {
        Ok(file) => report_reader(file, &inputs, 4096).map_err(ReportError::Log)?,
        // A job that never printed a line has no log file.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => report(b"", &inputs, 4096),
        Err(e) => return Err(ReportError::Log(e)),
    };
    let j = &g.job;
    Ok(Failure {
        job_id: j.id.clone(),
        result: j.result.as_deref().and_then(RunResult::parse),
        result_reason: j.result_reason.clone(),
        summary: j.summary.clone(),
        baseline_job_id: g.baseline.as_ref().map(|(id, _)| id.clone()),
        report: r,
    })
}

/// Makes the report of a job that just failed and keeps it beside its log.
pub fn store_report(g: &Gathered) -> Result<(), ReportError> {
    let text = serde_json::to_string(&analyze(g)?).map_err(ReportError::Json)?;
    let path = Path::new(&g.job.log_dir).join(FAILURE_FILE);
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &path)).map_err(ReportError::Keep)
}

/// Why a failure report could not be made or kept.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot read the baseline log: {0}")]
    Baseline(#[source] std::io::Error),
    #[error("cannot read the job's log: {0}")]
    Log(#[source] std::io::Error),
    #[error("cannot write the report: {0}")]
    Json(#[source] serde_json::Error),
    #[error("cannot keep the report beside the log: {0}")]
    Keep(#[source] std::io::Error),
}

/// The kept report of a job, if it has one.
pub fn stored(job: &JobRow) -> Option<Failure> {
    serde_json::from_slice(&std::fs::read(Path::new(&job.log_dir).join(FAILURE_FILE)).ok()?).ok()
}
