//! Runs one compiled pipeline (SEMAPHORE.md §1.6–1.11, §6.1): a block starts when all its
//! dependencies passed and is canceled when one did not; `skip`/`run` conditions and legacy
//! filters are decided before anything runs; jobs run on the runner, at most `parallel` at a
//! time; `fail_fast` stops or cancels; the pipeline time limit stops everything; the
//! `after_pipeline` jobs always run last.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub use salve_contract::RunResult;
use salve_pipeline::Plan;
use salve_pipeline::compile::{PlanBlock, PlanJob};
use salve_pipeline::when::{self, Functions};
use salve_runner::log::unix_ms;
use salve_runner::{Epilogue, JobControl, JobFile, JobOutcome, JobResult, JobSpec, NoObserver, Sandbox, StopReason};
use serde::Serialize;

use crate::env::{self, Context, JobIdentity};

/// A secret's content (the engine never stores or prints it).
#[derive(Debug, Clone, Default)]
pub struct Secret {
    pub env_vars: Vec<(String, String)>,
    pub files: Vec<(String, Vec<u8>)>,
}

pub trait Secrets: Sync {
    /// `Ok(None)` when there is no secret of that name.
    fn get(&self, name: &str) -> Result<Option<Secret>, String>;
}

pub struct NoSecrets;
impl Secrets for NoSecrets {
    fn get(&self, _: &str) -> Result<Option<Secret>, String> {
        Ok(None)
    }
}

/// What the engine tells the world, in order. Serialised one per line by `salve run --json`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    PipelineStarted {
        pipeline_id: String,
        name: String,
        blocks: Vec<String>,
    },
    BlockStarted {
        block: String,
    },
    BlockFinished {
        block: String,
        result: RunResult,
        result_reason: Option<String>,
    },
    JobStarted {
        block: String,
        job: String,
        job_id: String,
    },
    JobFinished {
        block: String,
        job: String,
        job_id: String,
        result: JobResult,
        result_reason: Option<String>,
        summary: String,
        duration_ms: u64,
        /// The job's commands as the runner recorded them (lines, exit codes, times): the store
        /// keeps them from here. Not in `salve run --json` (`salve logs` shows them).
        #[serde(skip)]
        commands: Vec<salve_runner::CommandRecord>,
    },
    PipelineFinished {
        pipeline_id: String,
        result: RunResult,
        result_reason: Option<String>,
        /// Why the pipeline is malformed, when it is.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        duration_ms: u64,
    },
}

pub trait Observer: Sync {
    fn event(&self, event: &Event);
}

pub struct Quiet;
impl Observer for Quiet {
    fn event(&self, _: &Event) {}
}

#[derive(Debug, Clone, Serialize)]
pub struct JobRun {
    pub id: String,
    pub name: String,
    pub dir: PathBuf,
    pub outcome: Option<JobOutcome>,
    /// Jobs that never started (their block was stopped first) have no outcome.
    pub result: JobResult,
    pub result_reason: Option<String>,
}

impl JobRun {
    /// A job not started yet, with its own folder under `jobs_dir` (the id an earlier run gave
    /// it, when there was one).
    fn new(name: &str, jobs_dir: &std::path::Path, prior: Option<&PriorJob>) -> JobRun {
        let id = prior.map_or_else(|| uuid::Uuid::new_v4().to_string(), |p| p.id.clone());
        JobRun {
            dir: jobs_dir.join(&id),
            id,
            name: name.to_owned(),
            outcome: None,
            result: JobResult::Stopped,
            result_reason: None,
        }
    }

    /// Takes what the runner returned (or why it could not run the job).
    fn record(&mut self, outcome: Result<JobOutcome, String>) {
        match outcome {
            Ok(o) => {
                self.result = o.result;
                self.result_reason = o
                    .stop_reason
                    .map(|r| r.as_str())
                    .or_else(|| o.failure.as_ref().and_then(|f| f.reason()))
                    .map(str::to_owned);
                self.outcome = Some(o);
            }
            Err(e) => {
                self.result = JobResult::Failed;
                self.result_reason = Some(format!("internal: {e}"));
            }
        }
    }

    fn finished(&self, block: &str) -> Event {
        let o = self.outcome.as_ref();
        Event::JobFinished {
            block: block.to_owned(),
            job: self.name.clone(),
            job_id: self.id.clone(),
            result: self.result,
            result_reason: self.result_reason.clone(),
            summary: o.map(|o| o.summary.clone()).unwrap_or_else(|| self.result_reason.clone().unwrap_or_default()),
            duration_ms: o.map_or(0, |o| o.finished_ms.saturating_sub(o.started_ms)),
            commands: o.map(|o| o.commands.clone()).unwrap_or_default(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BlockRun {
    pub name: String,
    pub result: RunResult,
    pub result_reason: Option<String>,
    pub jobs: Vec<JobRun>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PipelineRun {
    pub pipeline_id: String,
    pub result: RunResult,
    pub result_reason: Option<String>,
    /// Why the pipeline is malformed, when it is.
    pub error: Option<String>,
    pub blocks: Vec<BlockRun>,
    pub after_pipeline: Option<BlockRun>,
    pub created_ms: u64,
    pub done_ms: u64,
}

/// Stops a running pipeline from another thread.
#[derive(Clone, Default)]
pub struct PipelineControl {
    stop: std::sync::Arc<std::sync::Mutex<Option<StopReason>>>,
    tx: std::sync::Arc<std::sync::Mutex<Option<mpsc::Sender<Msg>>>>,
}

impl PipelineControl {
    pub fn new() -> PipelineControl {
        PipelineControl::default()
    }

    pub fn stop(&self, reason: StopReason) {
        if let Ok(mut s) = self.stop.lock() {
            s.get_or_insert(reason);
        }
        if let Ok(tx) = self.tx.lock()
            && let Some(tx) = tx.as_ref()
        {
            let _ = tx.send(Msg::Stop);
        }
    }

    /// Stops one running job of the pipeline (`stopped/user`); the rest of the pipeline goes
    /// on and the job's block ends stopped. False when the pipeline is not running.
    pub fn stop_job(&self, job_id: &str) -> bool {
        match self.tx.lock() {
            Ok(tx) => tx.as_ref().is_some_and(|tx| tx.send(Msg::StopJob(job_id.to_owned())).is_ok()),
            Err(_) => false,
        }
    }

    fn reason(&self) -> Option<StopReason> {
        self.stop.lock().ok().and_then(|s| *s)
    }
}

enum Msg {
    Done { block: usize, job: usize, outcome: Result<JobOutcome, String> },
    Stop,
    StopJob(String),
}

/// Where a job runs. The engine decides what runs when; an executor runs one job to its end
/// (or until `control` stops it) and says how it went.
pub trait Executor: Sync {
    /// Runs `spec`, a job of a block whose agent asked for `machine_type`.
    fn run(&self, machine_type: &str, spec: &JobSpec, control: &JobControl) -> Result<JobOutcome, String>;
}

/// A job of an earlier run of the same pipeline (one that another server process started and
/// lost): the engine keeps its id and, when it ended, its outcome instead of running it again.
#[derive(Debug, Clone)]
pub struct PriorJob {
    pub id: String,
    /// How it ended; none while it runs (its executor finds it by its id).
    pub outcome: Option<JobOutcome>,
}

/// The jobs an earlier run of this pipeline started, by block and job name (and which of the
/// jobs of that name, counting from 0).
pub trait Prior: Sync {
    fn job(&self, block: &str, name: &str, nth: usize) -> Option<PriorJob>;
}

/// A pipeline's first run: nothing before it.
pub struct Fresh;
impl Prior for Fresh {
    fn job(&self, _: &str, _: &str, _: usize) -> Option<PriorJob> {
        None
    }
}

/// On this machine: the runner, in the spec's sandbox.
pub struct Local;

impl Executor for Local {
    fn run(&self, _machine_type: &str, spec: &JobSpec, control: &JobControl) -> Result<JobOutcome, String> {
        salve_runner::run_job(spec, control, &NoObserver).map_err(|e| e.to_string())
    }
}

pub struct Engine<'a> {
    /// Each job gets `jobs_dir/<job id>/`.
    pub jobs_dir: PathBuf,
    pub parallel: usize,
    pub sandbox: Sandbox,
    pub toolbox: Option<PathBuf>,
    pub writable: Vec<PathBuf>,
    pub readable: Vec<PathBuf>,
    /// Whether jobs with `agent.containers` run in them (through Podman); `false`: on this
    /// machine, their images, services and pull secrets ignored (`salve run --no-containers`).
    pub run_containers: bool,
    /// `os_image` name → the image a job of that machine (without `agent.containers`) runs in.
    pub os_images: BTreeMap<String, String>,
    /// Variables of this installation every job gets after the platform ones (where the
    /// toolbox keeps caches and artifacts).
    pub extra_env: Vec<(String, String)>,
    /// Variables every job gets whose values are masked like secrets (the API token of a
    /// promoted pipeline).
    pub secret_env: Vec<(String, String)>,
    pub secrets: &'a dyn Secrets,
    /// `change_in` and any other function conditions may call.
    pub functions: &'a dyn Functions,
    pub observer: &'a dyn Observer,
    /// Where jobs run ([`Local`]: here).
    pub executor: &'a dyn Executor,
    /// What an earlier run of the pipeline did ([`Fresh`]: nothing).
    pub prior: &'a dyn Prior,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Running,
    Done(RunResult),
}

struct Block<'p> {
    plan: &'p PlanBlock,
    deps: Vec<usize>,
    state: State,
    reason: Option<String>,
    skip: bool,
    jobs: Vec<JobRun>,
    /// Jobs not yet started.
    pending: usize,
    running: usize,
}

impl Engine<'_> {
    pub fn run(&self, plan: &Plan, ctx: &Context, control: &PipelineControl) -> PipelineRun {
        let created_ms = unix_ms();
        let started = Instant::now();
        let mut run = PipelineRun {
            pipeline_id: ctx.pipeline_id.clone(),
            result: RunResult::Passed,
            result_reason: None,
            error: None,
            blocks: Vec::new(),
            after_pipeline: None,
            created_ms,
            done_ms: 0,
        };
        self.observer.event(&Event::PipelineStarted {
            pipeline_id: ctx.pipeline_id.clone(),
            name: plan.name.clone(),
            blocks: plan.blocks.iter().map(|b| b.name.clone()).collect(),
        });
        let decided = self.decide(plan, ctx);
        let Decided { skips, fail_fast, secrets } = match decided {
            Ok(d) => d,
            Err(message) => {
                run.result = RunResult::Failed;
                run.result_reason = Some("malformed".into());
                run.error = Some(message);
                run.done_ms = unix_ms();
                self.finish(&run, started);
                return run;
            }
        };
        let inputs = Inputs { plan, ctx, secrets: &secrets };
        let mut blocks: Vec<Block<'_>> = plan
            .blocks
            .iter()
            .zip(skips)
            .map(|(b, skip)| Block {
                plan: b,
                deps: b.dependencies.iter().filter_map(|d| plan.blocks.iter().position(|x| &x.name == d)).collect(),
                state: State::Waiting,
                reason: None,
                skip,
                jobs: self.job_runs(&b.name, &b.jobs),
                pending: b.jobs.len(),
                running: 0,
            })
            .collect();
        let deadline = started + Duration::from_secs(plan.execution_time_limit_minutes * 60);
        let (tx, rx) = mpsc::channel::<Msg>();
        if let Ok(mut slot) = control.tx.lock() {
            *slot = Some(tx.clone());
        }
        let mut stopped: Option<StopReason> = control.reason();
        std::thread::scope(|scope| {
            let mut queue: VecDeque<(usize, usize)> = VecDeque::new();
            let mut controls: Vec<(usize, usize, JobControl)> = Vec::new();
            let mut cancel_waiting = false;
            loop {
                // Blocks whose dependencies are settled start, are skipped or are canceled.
                let mut changed = true;
                while changed {
                    changed = false;
                    for i in 0..blocks.len() {
                        if blocks[i].state != State::Waiting {
                            continue;
                        }
                        let deps: Vec<State> = blocks[i].deps.iter().map(|&d| blocks[d].state).collect();
                        let why = if let Some(reason) = stopped {
                            Some(reason.as_str().to_owned())
                        } else if cancel_waiting
                            || deps.iter().any(|s| matches!(s, State::Done(o) if *o != RunResult::Passed))
                        {
                            Some("fast_failing".to_owned())
                        } else {
                            None
                        };
                        let b = &mut blocks[i];
                        if let Some(reason) = why {
                            b.pending = 0;
                            for j in &mut b.jobs {
                                j.result_reason = Some(reason.clone());
                            }
                            self.settle(b, RunResult::Canceled, Some(reason));
                            changed = true;
                        } else if deps.iter().all(|s| *s == State::Done(RunResult::Passed)) {
                            changed = true;
                            if b.skip {
                                b.pending = 0;
                                for j in &mut b.jobs {
                                    j.result = JobResult::Passed;
                                    j.result_reason = Some("skipped".into());
                                }
                                self.settle(b, RunResult::Passed, Some("skipped".into()));
                            } else {
                                b.state = State::Running;
                                self.observer.event(&Event::BlockStarted { block: b.plan.name.clone() });
                                queue.extend((0..b.jobs.len()).map(|j| (i, j)));
                            }
                        }
                    }
                }
                // Start jobs while there are free slots.
                while controls.len() < self.parallel.max(1) {
                    let Some((bi, ji)) = queue.pop_front() else { break };
                    let b = &mut blocks[bi];
                    b.pending -= 1;
                    b.running += 1;
                    let job_control = JobControl::new();
                    controls.push((bi, ji, job_control.clone()));
                    let ended = self.ended(&b.plan.name, &b.plan.jobs, ji);
                    let spec = self.job_spec(&inputs, b.plan, &b.plan.jobs[ji], &b.jobs[ji], None);
                    if ended.is_none() {
                        self.observer.event(&Event::JobStarted {
                            block: b.plan.name.clone(),
                            job: b.jobs[ji].name.clone(),
                            job_id: b.jobs[ji].id.clone(),
                        });
                    }
                    let tx = tx.clone();
                    let (executor, machine) = (self.executor, b.plan.agent.machine_type.as_str());
                    scope.spawn(move || {
                        let outcome = match (ended, spec) {
                            (Some(outcome), _) => Ok(outcome),
                            (None, Ok(spec)) => executor.run(machine, &spec, &job_control),
                            (None, Err(e)) => Err(e),
                        };
                        let _ = tx.send(Msg::Done { block: bi, job: ji, outcome });
                    });
                }
                if controls.is_empty() && queue.is_empty() {
                    break;
                }
                let wait = deadline.saturating_duration_since(Instant::now());
                let msg = if stopped.is_some() { rx.recv().ok() } else { rx.recv_timeout(wait).ok() };
                let newly_stopped = match msg {
                    Some(Msg::Done { block, job, outcome }) => {
                        controls.retain(|(b, j, _)| !(*b == block && *j == job));
                        let b = &mut blocks[block];
                        b.running -= 1;
                        let jr = &mut b.jobs[job];
                        jr.record(outcome);
                        self.observer.event(&jr.finished(&b.plan.name));
                        if jr.result == JobResult::Failed {
                            // Job-level fail_fast inside the block.
                            let (stop, cancel) = (fail_fast.block_stop[block], fail_fast.block_cancel[block]);
                            if stop || cancel {
                                queue.retain(|(qb, qj)| {
                                    if *qb == block {
                                        b.pending -= 1;
                                        b.jobs[*qj].result_reason = Some("fast_failing".into());
                                    }
                                    *qb != block
                                });
                            }
                            if stop {
                                for (cb, _, c) in &controls {
                                    if *cb == block {
                                        c.stop(StopReason::FastFailing);
                                    }
                                }
                            }
                        }
                        if b.pending == 0 && b.running == 0 && b.state == State::Running {
                            let (result, reason) = block_result(&b.jobs);
                            self.settle(b, result, reason);
                            if result == RunResult::Failed {
                                if fail_fast.stop {
                                    stop_all(&mut queue, &mut blocks, &controls, StopReason::FastFailing);
                                    cancel_waiting = true;
                                } else if fail_fast.cancel {
                                    cancel_waiting = true;
                                    queue.retain(|(qb, _)| {
                                        blocks[*qb].state == State::Running && blocks[*qb].running > 0
                                    });
                                }
                            }
                        }
                        None
                    }
                    Some(Msg::Stop) => control.reason(),
                    Some(Msg::StopJob(id)) => {
                        if let Some((_, _, c)) = controls.iter().find(|(b, j, _)| blocks[*b].jobs[*j].id == id) {
                            c.stop(StopReason::User);
                        }
                        None
                    }
                    None if stopped.is_none() && Instant::now() >= deadline => Some(StopReason::Timeout),
                    None => None,
                };
                if let Some(reason) = newly_stopped
                    && stopped.is_none()
                {
                    stopped = Some(reason);
                    stop_all(&mut queue, &mut blocks, &controls, reason);
                }
                // Blocks whose last queued jobs were dropped finish here.
                for b in &mut blocks {
                    if b.state == State::Running && b.pending == 0 && b.running == 0 {
                        let (result, reason) = block_result(&b.jobs);
                        self.settle(b, result, reason);
                    }
                }
            }
        });
        if let Ok(mut slot) = control.tx.lock() {
            *slot = None;
        }
        run.blocks = blocks
            .into_iter()
            .map(|b| BlockRun {
                name: b.plan.name.clone(),
                result: match b.state {
                    State::Done(o) => o,
                    _ => RunResult::Canceled,
                },
                result_reason: b.reason,
                jobs: b.jobs,
            })
            .collect();
        let (result, reason) = pipeline_result(&run.blocks, stopped);
        run.result = result;
        run.result_reason = reason;
        run.done_ms = unix_ms();
        if let Some(after) = &plan.after_pipeline {
            run.after_pipeline = Some(self.after_pipeline(&inputs, after, &run));
        }
        self.finish(&run, started);
        run
    }

    /// The runs of a block's jobs: the ids an earlier run gave them, or new ones.
    fn job_runs(&self, block: &str, jobs: &[PlanJob]) -> Vec<JobRun> {
        (0..jobs.len())
            .map(|i| {
                let prior = self.prior.job(block, &jobs[i].name, nth(jobs, i));
                JobRun::new(&jobs[i].name, &self.jobs_dir, prior.as_ref())
            })
            .collect()
    }

    /// How job `i` of a block ended in an earlier run, if it did.
    fn ended(&self, block: &str, jobs: &[PlanJob], i: usize) -> Option<JobOutcome> {
        self.prior.job(block, &jobs[i].name, nth(jobs, i)).and_then(|p| p.outcome)
    }

    /// A block is done: its result is set, then announced.
    fn settle(&self, b: &mut Block<'_>, result: RunResult, reason: Option<String>) {
        b.state = State::Done(result);
        b.reason = reason.clone();
        self.observer.event(&Event::BlockFinished { block: b.plan.name.clone(), result, result_reason: reason });
    }

    fn finish(&self, run: &PipelineRun, started: Instant) {
        self.observer.event(&Event::PipelineFinished {
            pipeline_id: run.pipeline_id.clone(),
            result: run.result,
            result_reason: run.result_reason.clone(),
            error: run.error.clone(),
            duration_ms: started.elapsed().as_millis() as u64,
        });
    }

    /// Everything decided before the first job: skip/run/filters for each block, fail_fast,
    /// and that every secret exists. An error makes the pipeline malformed.
    fn decide(&self, plan: &Plan, ctx: &Context) -> Result<Decided, String> {
        let params = ctx.git.when_params();
        let eval = |what: &str, expr: &str| {
            when::evaluate(expr, &params, self.functions, false)
                .map_err(|e| format!("Invalid 'when' condition on path '{what}': {}", e.message()))
        };
        let mut skips = Vec::new();
        let (mut block_stop, mut block_cancel) = (Vec::new(), Vec::new());
        for b in &plan.blocks {
            let skip = if let Some(expr) = &b.skip {
                eval(&format!("#/blocks/{}/skip/when", b.index), expr)?
            } else if let Some(expr) = &b.run {
                !eval(&format!("#/blocks/{}/run/when", b.index), expr)?
            } else {
                filter_skips(b, ctx.git.branch_name())?
            };
            skips.push(skip);
            block_stop.push(match &b.fail_fast.stop {
                Some(e) => eval(&format!("#/blocks/{}/task/fail_fast/stop/when", b.index), e)?,
                None => false,
            });
            block_cancel.push(match &b.fail_fast.cancel {
                Some(e) => eval(&format!("#/blocks/{}/task/fail_fast/cancel/when", b.index), e)?,
                None => false,
            });
        }
        let stop = match &plan.fail_fast.stop {
            Some(e) => eval("#/fail_fast/stop/when", e)?,
            None => false,
        };
        let cancel = match &plan.fail_fast.cancel {
            Some(e) => eval("#/fail_fast/cancel/when", e)?,
            None => false,
        };
        let all_jobs = plan.blocks.iter().flat_map(|b| &b.jobs).chain(plan.after_pipeline.iter().flat_map(|a| &a.jobs));
        let mut secrets = BTreeMap::new();
        let agents = plan.blocks.iter().map(|b| &b.agent).filter(|_| self.run_containers);
        let containers = agents.clone().flat_map(|a| &a.containers).flat_map(|c| &c.secrets);
        let pulls = agents.flat_map(|a| &a.image_pull_secrets);
        for name in all_jobs.flat_map(|j| &j.secrets).chain(containers).chain(pulls) {
            if secrets.contains_key(name) {
                continue;
            }
            match self.secrets.get(name) {
                Ok(Some(secret)) => {
                    secrets.insert(name.clone(), secret);
                }
                Ok(None) => {
                    return Err(format!(
                        "Secret '{name}' not found. Create it with: salve secret create {name} -e NAME=VALUE"
                    ));
                }
                Err(e) => return Err(format!("Secret '{name}' could not be read: {e}")),
            }
        }
        Ok(Decided { skips, fail_fast: FailFast { stop, cancel, block_stop, block_cancel }, secrets })
    }

    fn job_spec(
        &self,
        inputs: &Inputs<'_>,
        block: &PlanBlock,
        job: &PlanJob,
        run: &JobRun,
        extra: Option<&[(String, String)]>,
    ) -> Result<JobSpec, String> {
        let Inputs { plan, ctx, secrets } = *inputs;
        let agent = &block.agent;
        let identity = JobIdentity {
            id: &run.id,
            name: &job.name,
            block: &block.name,
            created_unix: unix_ms() / 1000,
            machine_type: &agent.machine_type,
            os_image: agent.os_image.as_deref().unwrap_or(""),
            containers: !agent.containers.is_empty(),
        };
        let mut vars = env::platform(&identity, ctx);
        vars.extend(self.extra_env.iter().cloned());
        vars.extend(env::git(&ctx.git));
        let mut files = Vec::new();
        let mut secret_values: Vec<String> = self.secret_env.iter().map(|(_, v)| v.clone()).collect();
        vars.extend(self.secret_env.iter().cloned());
        for name in &job.secrets {
            let secret = secrets.get(name).ok_or_else(|| format!("secret '{name}' was not read before the run"))?;
            for (k, v) in &secret.env_vars {
                secret_values.push(v.clone());
                vars.push((k.clone(), v.clone()));
            }
            for (path, content) in secret.files.iter().cloned() {
                if let Ok(text) = std::str::from_utf8(&content) {
                    secret_values.push(text.to_owned());
                }
                files.push(JobFile { path, content, mode: 0o600 });
            }
        }
        vars.extend(env::pipeline(ctx, &plan.name, &block.name));
        vars.extend(extra.iter().flat_map(|e| e.iter().cloned()));
        vars.extend(job.env_vars.iter().map(|v| (v.name.clone(), v.value.clone())));
        Ok(JobSpec {
            id: run.id.clone(),
            commands: job.commands.clone(),
            epilogue: Epilogue {
                always: job.epilogue.always.clone(),
                on_pass: job.epilogue.on_pass.clone(),
                on_fail: job.epilogue.on_fail.clone(),
            },
            env: vars,
            files,
            secret_values,
            time_limit: Some(Duration::from_secs(job.execution_time_limit_minutes * 60)),
            dir: run.dir.clone(),
            toolbox: self.toolbox.clone(),
            writable: self.writable.clone(),
            readable: self.readable.clone(),
            // A job (or its block, or its pipeline through `global_job_config`) may ask for lower limits.
            sandbox: self.sandbox.with_job_limits(job.env_vars.iter().map(|v| (v.name.as_str(), v.value.as_str()))),
            containers: match (self.run_containers, agent.containers.is_empty()) {
                (false, _) => Vec::new(),
                (true, false) => containers(&agent.containers, secrets)?,
                // A machine whose image this installation has: the job runs in it.
                (true, true) => agent
                    .os_image
                    .as_ref()
                    .and_then(|os| self.os_images.get(os))
                    .map(|image| salve_runner::container::Container {
                        name: "main".into(),
                        image: image.clone(),
                        command: None,
                        entrypoint: None,
                        user: None,
                        env: Vec::new(),
                    })
                    .into_iter()
                    .collect(),
            },
            pull_credentials: agent
                .image_pull_secrets
                .iter()
                .filter(|_| self.run_containers)
                .map(|name| {
                    let s = secrets.get(name).ok_or_else(|| format!("image pull secret '{name}' was not read"))?;
                    salve_runner::container::PullCredential::from_secret(name, &s.env_vars, &s.files)
                })
                .collect::<Result<_, _>>()?,
        })
    }

    fn after_pipeline(
        &self,
        inputs: &Inputs<'_>,
        after: &salve_pipeline::compile::PlanAfterPipeline,
        run: &PipelineRun,
    ) -> BlockRun {
        let secs = |ms: u64| (ms / 1000).to_string();
        let total = run.done_ms.saturating_sub(run.created_ms) / 1000;
        let extra: Vec<(String, String)> = [
            ("SEMAPHORE_PIPELINE_RESULT", run.result.as_str().to_owned()),
            ("SEMAPHORE_PIPELINE_RESULT_REASON", run.result_reason.clone().unwrap_or_default()),
            ("SEMAPHORE_PIPELINE_CREATED_AT", secs(run.created_ms)),
            ("SEMAPHORE_PIPELINE_STARTED_AT", secs(run.created_ms)),
            ("SEMAPHORE_PIPELINE_DONE_AT", secs(run.done_ms)),
            ("SEMAPHORE_PIPELINE_TOTAL_DURATION", total.to_string()),
            ("SEMAPHORE_PIPELINE_INIT_DURATION", "0".to_owned()),
            ("SEMAPHORE_PIPELINE_QUEUEING_DURATION", "0".to_owned()),
            ("SEMAPHORE_PIPELINE_RUNNING_DURATION", total.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let block = PlanBlock {
            index: inputs.plan.blocks.len(),
            name: "after_pipeline".into(),
            dependencies: Vec::new(),
            skip: None,
            run: None,
            filters: Vec::new(),
            execution_time_limit_minutes: None,
            fail_fast: Default::default(),
            agent: after.agent.clone(),
            jobs: after.jobs.clone(),
        };
        self.observer.event(&Event::BlockStarted { block: block.name.clone() });
        let jobs: Vec<JobRun> = std::thread::scope(|scope| {
            let runs = self.job_runs(&block.name, &block.jobs);
            let handles: Vec<_> = block
                .jobs
                .iter()
                .zip(runs)
                .enumerate()
                .map(|(i, (job, mut jr))| {
                    let ended = self.ended(&block.name, &block.jobs, i);
                    let spec = self.job_spec(inputs, &block, job, &jr, Some(&extra));
                    if ended.is_none() {
                        self.observer.event(&Event::JobStarted {
                            block: block.name.clone(),
                            job: jr.name.clone(),
                            job_id: jr.id.clone(),
                        });
                    }
                    let (executor, machine) = (self.executor, block.agent.machine_type.as_str());
                    scope.spawn(move || {
                        jr.record(match ended {
                            Some(outcome) => Ok(outcome),
                            None => spec.and_then(|s| executor.run(machine, &s, &JobControl::new())),
                        });
                        jr
                    })
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        for jr in &jobs {
            self.observer.event(&jr.finished(&block.name));
        }
        let (result, reason) = block_result(&jobs);
        self.observer.event(&Event::BlockFinished { block: block.name.clone(), result, result_reason: reason.clone() });
        BlockRun { name: block.name, result, result_reason: reason, jobs }
    }
}

/// What is settled before the first job runs.
struct Decided {
    skips: Vec<bool>,
    fail_fast: FailFast,
    /// Every secret the pipeline names, read once.
    secrets: BTreeMap<String, Secret>,
}

/// What every job of one run is built from.
struct Inputs<'a> {
    plan: &'a Plan,
    ctx: &'a Context,
    secrets: &'a BTreeMap<String, Secret>,
}

struct FailFast {
    stop: bool,
    cancel: bool,
    block_stop: Vec<bool>,
    block_cancel: Vec<bool>,
}

/// Which of the block's jobs named like job `i` it is, counting from 0.
fn nth(jobs: &[PlanJob], i: usize) -> usize {
    jobs[..i].iter().filter(|j| j.name == jobs[i].name).count()
}

/// Legacy block filters: the first filter matching the label decides; none → execute.
fn filter_skips(b: &PlanBlock, label: &str) -> Result<bool, String> {
    for f in &b.filters {
        let hit = match (&f.label, &f.label_pattern) {
            (Some(l), _) => l == label,
            (None, Some(p)) => fancy_regex::Regex::new(p)
                .map_err(|e| format!("Invalid label_pattern '{p}' in block '{}': {e}", b.name))?
                .is_match(label)
                .unwrap_or(false),
            (None, None) => false,
        };
        if hit {
            return Ok(f.action == "skip");
        }
    }
    Ok(false)
}

fn stop_all(
    queue: &mut VecDeque<(usize, usize)>,
    blocks: &mut [Block<'_>],
    controls: &[(usize, usize, JobControl)],
    reason: StopReason,
) {
    for (b, j) in queue.drain(..) {
        blocks[b].pending -= 1;
        blocks[b].jobs[j].result_reason = Some(reason.as_str().to_owned());
    }
    for (_, _, c) in controls {
        c.stop(reason);
    }
}

fn block_result(jobs: &[JobRun]) -> (RunResult, Option<String>) {
    if jobs.iter().any(|j| j.result == JobResult::Failed) {
        (RunResult::Failed, Some("test".into()))
    } else if let Some(j) = jobs.iter().find(|j| j.result == JobResult::Stopped) {
        (RunResult::Stopped, j.result_reason.clone())
    } else {
        (RunResult::Passed, None)
    }
}

/// §6.1: failed (test) when a block failed; stopped or canceled, with the reason, when the
/// pipeline was stopped (canceled if nothing had started); passed otherwise.
fn pipeline_result(blocks: &[BlockRun], stopped: Option<StopReason>) -> (RunResult, Option<String>) {
    if blocks.iter().any(|b| b.result == RunResult::Failed) {
        return (RunResult::Failed, Some("test".into()));
    }
    let ran = blocks.iter().any(|b| {
        matches!(b.result, RunResult::Passed | RunResult::Stopped) && b.result_reason.as_deref() != Some("skipped")
    });
    if let Some(reason) = stopped {
        let result = if ran { RunResult::Stopped } else { RunResult::Canceled };
        return (result, Some(reason.as_str().to_owned()));
    }
    if let Some(b) = blocks.iter().find(|b| b.result == RunResult::Stopped) {
        return (RunResult::Stopped, b.result_reason.clone());
    }
    if let Some(b) = blocks.iter().find(|b| b.result == RunResult::Canceled) {
        return (RunResult::Canceled, b.result_reason.clone());
    }
    (RunResult::Passed, None)
}

/// The job's containers as the runner runs them: each with its variables and its secrets'.
fn containers(
    list: &[salve_pipeline::compile::PlanContainer],
    secrets: &BTreeMap<String, Secret>,
) -> Result<Vec<salve_runner::container::Container>, String> {
    list.iter()
        .map(|c| {
            let mut env: Vec<(String, String)> = c.env_vars.iter().map(|v| (v.name.clone(), v.value.clone())).collect();
            for name in &c.secrets {
                let secret = secrets
                    .get(name)
                    .ok_or_else(|| format!("secret '{name}' of container '{}' was not read", c.name))?;
                env.extend(secret.env_vars.iter().cloned());
            }
            Ok(salve_runner::container::Container {
                name: c.name.clone(),
                image: c.image.clone(),
                command: c.command.clone(),
                entrypoint: c.entrypoint.clone(),
                user: c.user.clone(),
                env,
            })
        })
        .collect()
}
