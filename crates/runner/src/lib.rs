//! One job, run for real: its bash session with per-command records (`script`), its sandbox
//! (`sandbox`, `jail`, `netns`, `cgroup`; `container` for jobs in Podman containers), its log with secrets masked (`log`, `mask`), its limits and
//! cancel (`job`). Scheduling jobs is the engine's business, not this crate's.

pub mod cgroup;
pub mod container;
pub mod jail;
pub mod job;
pub mod log;
pub mod mask;
pub mod netns;
pub mod sandbox;
pub mod script;

pub use job::{
    CommandRecord, Epilogue, Failure, JobControl, JobError, JobFile, JobObserver, JobOutcome, JobResult, JobSpec,
    NoObserver, StopReason, run_job, verdict,
};
pub use sandbox::{Isolate, Isolation, JobNetwork, Limits, Sandbox, SandboxError, find_bwrap};
