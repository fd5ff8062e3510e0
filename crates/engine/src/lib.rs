//! Runs pipelines: blocks as a DAG, jobs on the runner in parallel, Semaphore's results.
//! Synchronous (threads, no async): the server calls it from a blocking task.

pub mod env;
pub mod promote;
pub mod run;

pub use env::{Context, GitContext, RefKind};
pub use run::{
    BlockRun, Engine, Event, Executor, Fresh, JobRun, Local, NoSecrets, Observer, PipelineControl, PipelineRun, Prior,
    PriorJob, Quiet, RunResult, Secret, Secrets,
};
