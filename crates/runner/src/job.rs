//! Running one job (SEMAPHORE.md §1.7): the commands in one bash session, stopping at the first
//! failure; `SEMAPHORE_JOB_RESULT` exported before the epilogues; `always`, then `on_pass` or
//! `on_fail`; epilogue failures never change the result; `exit 130`/`return 130` ends the job
//! with the result the job chose. Output goes to the job's log, masked, as it is produced.

use std::ffi::OsString;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cgroup::Cgroup;
use crate::log::{LogWriter, unix_ms};
use crate::mask::{MIN_SECRET_LEN, Masker};
use crate::sandbox::{HOST_VARIABLES, JobNetwork, Mounts, Sandbox};
use crate::script::{Marker, MarkerSplitter, Phase, Piece, Preamble, Script, valid_name};

#[derive(Debug, Clone, Default)]
pub struct Epilogue {
    pub always: Vec<String>,
    pub on_pass: Vec<String>,
    pub on_fail: Vec<String>,
}

/// A file the job finds in place when it starts (secret files). `path` is relative to the job's
/// home, or starts with `~/`, `$HOME/` or `/home/semaphore/` (Semaphore's home), which all mean
/// the job's home.
#[derive(Debug, Clone)]
pub struct JobFile {
    pub path: String,
    pub content: Vec<u8>,
    pub mode: u32,
}

#[derive(Debug, Clone)]
pub struct JobSpec {
    pub id: String,
    /// Prologue commands followed by the job's own.
    pub commands: Vec<String>,
    pub epilogue: Epilogue,
    /// The job's variables in export order (later wins).
    pub env: Vec<(String, String)>,
    pub files: Vec<JobFile>,
    /// Values masked in the log (secret values).
    pub secret_values: Vec<String>,
    pub time_limit: Option<Duration>,
    /// The job's folder: `home/` (its workspace), `run/` (its script), `log`, `log.idx`.
    pub dir: PathBuf,
    /// Toolbox commands, first on PATH.
    pub toolbox: Option<PathBuf>,
    /// Extra folders the job may write (cache and artifact storage).
    pub writable: Vec<PathBuf>,
    /// Extra folders the job may read although they are hidden (the repository it clones).
    pub readable: Vec<PathBuf>,
    pub sandbox: Sandbox,
    /// The job's containers (`agent.containers`): the first runs its commands, the others are
    /// its services. Empty: the job runs in the sandbox on this machine.
    pub containers: Vec<crate::container::Container>,
    /// What pulls its images log in with (`image_pull_secrets`).
    pub pull_credentials: Vec<crate::container::PullCredential>,
}

impl JobSpec {
    /// The commands of one phase.
    pub fn phase_commands(&self, phase: Phase) -> &[String] {
        match phase {
            Phase::Main => &self.commands,
            Phase::Always => &self.epilogue.always,
            Phase::OnPass => &self.epilogue.on_pass,
            Phase::OnFail => &self.epilogue.on_fail,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobResult {
    Passed,
    Failed,
    Stopped,
}

impl JobResult {
    pub fn as_str(self) -> &'static str {
        match self {
            JobResult::Passed => "passed",
            JobResult::Failed => "failed",
            JobResult::Stopped => "stopped",
        }
    }
}

/// Why a job was stopped from outside (SEMAPHORE.md §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    User,
    Timeout,
    FastFailing,
    Strategy,
    Internal,
    Deleted,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::User => "user",
            StopReason::Timeout => "timeout",
            StopReason::FastFailing => "fast_failing",
            StopReason::Strategy => "strategy",
            StopReason::Internal => "internal",
            StopReason::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> Option<StopReason> {
        [
            StopReason::User,
            StopReason::Timeout,
            StopReason::FastFailing,
            StopReason::Strategy,
            StopReason::Internal,
            StopReason::Deleted,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// What made a job fail, when Salve can tell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Failure {
    /// A command exited non-zero.
    Command { exit_code: i32 },
    /// Exit 127: bash could not find the command.
    CommandNotFound,
    /// The shell was killed by a signal it did not ask for.
    Signal { signal: i32 },
    /// The kernel killed the job for exceeding its memory limit.
    OutOfMemory { limit_bytes: u64 },
    /// The sandbox or the shell could not start.
    Setup { message: String },
    /// The agent running the job went silent (its lease lapsed), on every attempt.
    AgentLost,
    /// The server process running the job stopped (it was killed, or its machine went down).
    ServerStopped,
}

impl Failure {
    /// The job's result reason this failure gives, when it gives one.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Failure::AgentLost => Some("agent_lost"),
            Failure::ServerStopped => Some("server_stopped"),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CommandRecord {
    pub phase: Phase,
    pub index: usize,
    /// The command text, masked.
    pub command: String,
    pub started_ms: u64,
    pub duration_ms: u64,
    /// `None` when the command never finished (the job was stopped or killed).
    pub exit_code: Option<i32>,
    /// The log lines the command printed: `first_line..end_line` (0-based, end exclusive).
    pub first_line: u64,
    pub end_line: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct JobOutcome {
    pub result: JobResult,
    pub stop_reason: Option<StopReason>,
    pub failure: Option<Failure>,
    /// One line for people: what happened.
    pub summary: String,
    pub commands: Vec<CommandRecord>,
    pub started_ms: u64,
    pub finished_ms: u64,
    pub log_lines: u64,
    pub log_bytes: u64,
}

impl JobOutcome {
    /// An outcome without commands or log figures yet (the runner fills them in).
    fn new(
        result: JobResult,
        stop_reason: Option<StopReason>,
        failure: Option<Failure>,
        summary: String,
    ) -> JobOutcome {
        JobOutcome {
            result,
            stop_reason,
            failure,
            summary,
            commands: Vec::new(),
            started_ms: 0,
            finished_ms: 0,
            log_lines: 0,
            log_bytes: 0,
        }
    }

    /// The command that failed the job, if one did.
    pub fn failed_command(&self) -> Option<&CommandRecord> {
        self.commands.iter().rev().find(|c| c.phase == Phase::Main && c.exit_code.is_some_and(|e| e != 0))
    }
}

/// Live view of a running job. Every method has a do-nothing default.
pub trait JobObserver: Send + Sync {
    fn command_started(&self, _record: &CommandRecord) {}
    fn command_finished(&self, _record: &CommandRecord) {}
    fn output(&self, _bytes: &[u8]) {}
}

pub struct NoObserver;
impl JobObserver for NoObserver {}

/// Stops a running job from another thread.
#[derive(Clone, Default)]
pub struct JobControl {
    inner: Arc<(Mutex<ControlState>, Condvar)>,
}

#[derive(Default)]
struct ControlState {
    stop: Option<StopReason>,
    exited: Option<ExitStatus>,
}

impl JobControl {
    pub fn new() -> JobControl {
        JobControl::default()
    }

    /// Asks the job to stop; the first reason given wins. A job not started yet never starts.
    pub fn stop(&self, reason: StopReason) {
        let (lock, cv) = &*self.inner;
        let mut state = lock.lock().unwrap_or_else(PoisonError::into_inner);
        state.stop.get_or_insert(reason);
        cv.notify_all();
    }

    pub fn stop_reason(&self) -> Option<StopReason> {
        self.lock().stop
    }

    fn lock(&self) -> MutexGuard<'_, ControlState> {
        self.inner.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("cannot prepare the job folder {path}: {source}")]
    Prepare { path: PathBuf, source: io::Error },
    #[error("cannot start the job: {0}")]
    Spawn(io::Error),
    #[error("cannot write the job log: {0}")]
    Log(io::Error),
}

/// `/etc/passwd` and `/etc/group` as the job sees them: the host's, with the job's user (`salve`,
/// its home the job's) added, so that programs which look their user up (initdb, ssh, whoami,
/// pip) find one.
fn user_files(run: &Path, home: &Path, (uid, gid): (u32, u32)) -> Result<Vec<(PathBuf, PathBuf)>, JobError> {
    let mut out = Vec::new();
    for (name, line) in [
        ("passwd", format!("salve:x:{uid}:{gid}:Salve job:{}:/bin/bash\n", home.display())),
        ("group", format!("salve:x:{gid}:\n")),
    ] {
        let host = PathBuf::from("/etc").join(name);
        let mut text = std::fs::read_to_string(&host).unwrap_or_default();
        let taken = |id: u32| text.lines().any(|l| l.split(':').nth(2) == Some(id.to_string().as_str()));
        if taken(if name == "passwd" { uid } else { gid }) {
            continue;
        }
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&line);
        let path = run.join(name);
        std::fs::write(&path, text).map_err(|source| JobError::Prepare { path: path.clone(), source })?;
        out.push((path, host));
    }
    Ok(out)
}

/// The host loopback ports named by secrets that are URLs (`http://127.0.0.1:11434/v1`, a
/// model server on the machine): a project's administrator put them there for its jobs, so a
/// job with a network of its own still reaches them. A pipeline's own variables open nothing.
fn loopback_ports(secrets: &[String]) -> Vec<u16> {
    secrets.iter().filter_map(|v| crate::netns::loopback_port(v)).collect()
}

/// The base environment of a job: the machine's toolchain variables, a home of its own, the
/// toolbox first on PATH. Rust installed by rustup under the launching user's home keeps working:
/// `RUSTUP_HOME` points there while `CARGO_HOME` is the job's own (cargo writes there).
pub fn base_env(home: &Path, toolbox: Option<&Path>) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> =
        HOST_VARIABLES.iter().filter_map(|k| std::env::var(k).ok().map(|v| ((*k).to_owned(), v))).collect();
    let host_home = std::env::var_os("HOME").map(PathBuf::from);
    let set = |env: &mut Vec<(String, String)>, k: &str, v: String| {
        env.retain(|(name, _)| name != k);
        env.push((k.to_owned(), v));
    };
    if !env.iter().any(|(k, _)| k == "RUSTUP_HOME")
        && let Some(rustup) = host_home.as_ref().map(|h| h.join(".rustup")).filter(|p| p.is_dir())
    {
        set(&mut env, "RUSTUP_HOME", rustup.to_string_lossy().into_owned());
    }
    let path =
        env.iter().find(|(k, _)| k == "PATH").map_or("/usr/local/bin:/usr/bin:/bin".to_owned(), |(_, v)| v.clone());
    let path = match toolbox {
        Some(dir) => format!("{}:{path}", dir.display()),
        None => path,
    };
    set(&mut env, "PATH", path);
    if !env.iter().any(|(k, _)| k == "LANG") {
        set(&mut env, "LANG", "C.UTF-8".to_owned());
    }
    let home_str = home.to_string_lossy().into_owned();
    set(&mut env, "HOME", home_str.clone());
    set(&mut env, "CARGO_HOME", format!("{home_str}/.cargo"));
    set(&mut env, "SHELL", "/bin/bash".to_owned());
    env
}

/// Runs a job to its end and returns what happened. Errors are Salve's own problems (the job
/// folder cannot be written); everything the job does is in the outcome.
pub fn run_job(spec: &JobSpec, control: &JobControl, observer: &dyn JobObserver) -> Result<JobOutcome, JobError> {
    let started_ms = unix_ms();
    let home = spec.dir.join("home");
    let run = spec.dir.join("run");
    let prepare =
        |path: &Path, r: io::Result<()>| r.map_err(|source| JobError::Prepare { path: path.to_owned(), source });
    prepare(&home, std::fs::create_dir_all(&home))?;
    prepare(&run, std::fs::create_dir_all(&run))?;
    let masker = Masker::new(&spec.secret_values);
    let mut log = LogWriter::create(&spec.dir, masker).map_err(JobError::Log)?;
    if spec.secret_values.iter().any(|v| !v.is_empty() && v.trim().len() < MIN_SECRET_LEN) {
        log.note(&format!("secret values shorter than {MIN_SECRET_LEN} characters are not masked"))
            .map_err(JobError::Log)?;
    }
    for (name, _) in spec.env.iter().filter(|(name, _)| !valid_name(name)) {
        log.note(&format!("skipped environment variable '{name}': not a valid shell variable name"))
            .map_err(JobError::Log)?;
    }
    let mut placed: Vec<(PathBuf, &[u8], u32)> = Vec::new();
    for file in &spec.files {
        match file_destination(&home, file) {
            Ok(dest) => placed.push((dest, &file.content, file.mode)),
            Err(message) => log.note(&message).map_err(JobError::Log)?,
        }
    }
    let user = spec.sandbox.job_user();
    if user.is_some() && spec.sandbox.jail.is_none() {
        let message = "job failed: a sandboxed job of a root process must drop to an unprivileged user, and the jail helper that does it is missing".to_owned();
        let failure = Some(Failure::Setup { message: message.clone() });
        return early(log, JobOutcome::new(JobResult::Failed, None, failure, message), started_ms);
    }

    // A job in containers: its pod and services first; what is missing fails the job here.
    let pod = match spec.containers.first() {
        None => None,
        Some(main) => match start_pod(spec, main) {
            Ok(p) => {
                let services: Vec<String> =
                    spec.containers.iter().skip(1).map(|c| format!("{} ({})", c.name, c.image)).collect();
                let with =
                    if services.is_empty() { String::new() } else { format!("; services: {}", services.join(", ")) };
                log.note(&format!("running in container '{}' ({}){with}", main.name, main.image))
                    .map_err(JobError::Log)?;
                Some(p)
            }
            Err(message) => {
                let failure = Some(Failure::Setup { message: message.clone() });
                return early(log, JobOutcome::new(JobResult::Failed, None, failure, message), started_ms);
            }
        },
    };

    let phase_files = |phase: Phase, commands: &[String]| -> Result<Vec<String>, JobError> {
        commands
            .iter()
            .enumerate()
            .map(|(i, command)| {
                let path = run.join(format!("{}-{i}", phase.name()));
                prepare(&path, std::fs::write(&path, command))?;
                Ok(path.to_string_lossy().into_owned())
            })
            .collect()
    };
    let main = phase_files(Phase::Main, spec.phase_commands(Phase::Main))?;
    let always = phase_files(Phase::Always, spec.phase_commands(Phase::Always))?;
    let on_pass = phase_files(Phase::OnPass, spec.phase_commands(Phase::OnPass))?;
    let on_fail = phase_files(Phase::OnFail, spec.phase_commands(Phase::OnFail))?;
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let mut base = match &pod {
        Some((_, image_path)) => container_env(&home, spec.toolbox.as_deref(), image_path),
        None => base_env(&home, spec.toolbox.as_deref()),
    };
    let network = if pod.is_some() { container_network(&spec.sandbox) } else { spec.sandbox.job_network() };
    base.push(("SALVE_JOB_NETWORK".into(), network.as_str().into()));
    let mut writable = spec.writable.clone();
    if spec.sandbox.nested && spec.sandbox.isolation.is_none() {
        // Landlock alone cannot give the job a /tmp of its own: it gets a folder instead.
        let tmp = spec.dir.join("tmp");
        prepare(&tmp, std::fs::create_dir_all(&tmp))?;
        base.push(("TMPDIR".into(), tmp.to_string_lossy().into_owned()));
        writable.push(tmp);
    }
    let mut env = base.clone();
    env.extend(spec.env.iter().cloned());
    // Secret files live in the job's private /tmp (a tmpfs that dies with the sandbox); with no
    // sandbox, in a folder of memory (/dev/shm) or of the job, removed when the job ends.
    let files_dir = if spec.sandbox.isolation.is_some() || pod.is_some() {
        PathBuf::from("/tmp/.salve-files")
    } else {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() { shm.to_owned() } else { run.clone() };
        base.join(format!("salve-files-{nonce}"))
    };
    let preamble = Preamble { env: &env, files: &placed, files_dir: &files_dir }.render();
    let script = Script {
        nonce: &nonce,
        home: &home,
        main: &main,
        always: &always,
        on_pass: &on_pass,
        on_fail: &on_fail,
        toolbox: spec.toolbox.is_some(),
    }
    .render();
    let script_path = run.join("job.sh");
    prepare(&script_path, write_private(&script_path, script.as_bytes()))?;
    let stdin = in_memory(&preamble).map_err(|source| JobError::Prepare { path: run.clone(), source })?;
    if let Some((uid, gid)) = user {
        // The repositories the job may read belong to Salve's user, not the job's: git would
        // call them dubious and refuse to clone them.
        let repos: Vec<&PathBuf> =
            spec.readable.iter().filter(|d| d.join("HEAD").is_file() && d.join("objects").is_dir()).collect();
        if !repos.is_empty() {
            let mut config = String::from("[safe]\n");
            for r in repos {
                let path = r.to_string_lossy().replace('\\', "\\\\").replace('"', "\\\"");
                config.push_str(&format!("\tdirectory = \"{path}\"\n"));
            }
            let path = home.join(".gitconfig");
            if !path.exists() {
                prepare(&path, std::fs::write(&path, config))?;
            }
        }
        // The job's user owns its folders (and nothing else of the host's).
        for dir in [&home, &run] {
            prepare(dir, chown_tree(dir, uid, gid))?;
        }
        for dir in &spec.writable {
            prepare(dir, chown_tree(dir, uid, gid))?;
        }
    }

    if let Some(reason) = control.stop_reason() {
        let summary = format!("job stopped before it started ({})", reason.as_str());
        return early(log, JobOutcome::new(JobResult::Stopped, Some(reason), None, summary), started_ms);
    }

    // Podman limits a container job itself.
    let cgroup = Cgroup::create(&format!("salve-{}", spec.id), spec.sandbox.memory_bytes, spec.sandbox.max_processes)
        .filter(|_| spec.sandbox.jail.is_some() && pod.is_none());
    if (spec.sandbox.memory_bytes.is_some() || spec.sandbox.max_processes.is_some())
        && cgroup.is_none()
        && pod.is_none()
    {
        let how = if spec.sandbox.jail.is_some() { "rlimits" } else { "nothing (no jail helper)" };
        log.note(&format!(
            "no cgroup could be created on this machine; memory and process limits are enforced by {how}"
        ))
        .map_err(JobError::Log)?;
    }
    // In an image, bash is wherever its PATH has it (not every image links /bin to /usr/bin).
    let bash = if pod.is_some() { "bash" } else { "/bin/bash" };
    let argv: Vec<OsString> =
        vec![bash.into(), "--noprofile".into(), "--norc".into(), script_path.clone().into_os_string()];
    let readable: Vec<PathBuf> = spec.readable.iter().cloned().chain(spec.toolbox.clone()).collect();
    let files = match user {
        Some(ids) => user_files(&run, &home, ids)?,
        None => Vec::new(),
    };
    let mounts = Mounts { home: &home, run: &run, writable: &writable, readable: &readable, files: &files };
    // The process gets only the base variables: the job's own (secrets included) are exported
    // by the script, so they never appear in bwrap's /proc/PID/environ outside the sandbox.
    let cgroup_dirs = cgroup.as_ref().map(|c| c.dirs().to_vec()).unwrap_or_default();
    let mut sandbox = spec.sandbox.clone();
    sandbox.host_ports.extend(loopback_ports(&spec.secret_values));
    sandbox.host_ports.sort_unstable();
    sandbox.host_ports.dedup();
    let mut cmd = match (&pod, spec.containers.first()) {
        (Some((pod, _)), Some(container)) => {
            let mut rw = vec![home.clone(), run.clone()];
            rw.extend(writable.iter().cloned());
            let ro: Vec<PathBuf> = readable.iter().cloned().chain(toolbox_targets(spec.toolbox.as_deref())).collect();
            pod.main_command(&crate::container::Main {
                container,
                writable: &rw,
                readable: &ro,
                workdir: &home,
                env: &base,
                argv: &argv,
            })
        }
        _ => sandbox.command(&mounts, &base, &argv, &cgroup_dirs),
    };
    let (reader, writer) = io::pipe().map_err(JobError::Spawn)?;
    let writer2 = writer.try_clone().map_err(JobError::Spawn)?;
    cmd.stdin(Stdio::from(stdin)).stdout(writer).stderr(writer2);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let started = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            drop(cmd);
            let message = format!("cannot start the job's shell: {e}");
            let failure = Some(Failure::Setup { message: message.clone() });
            return early(log, JobOutcome::new(JobResult::Failed, None, failure, message), started_ms);
        }
    };
    drop(cmd);
    let pgid = child.id();

    let stream = Arc::new(Mutex::new(Stream {
        log: Some(log),
        splitter: MarkerSplitter::new(&nonce),
        records: Vec::new(),
        result: None,
        error: None,
    }));
    let outcome = std::thread::scope(|scope| -> Result<JobOutcome, JobError> {
        let reader_stream = Arc::clone(&stream);
        let done = Arc::new((Mutex::new(false), Condvar::new()));
        let done_reader = Arc::clone(&done);
        scope.spawn(move || {
            read_output(reader, &reader_stream, observer, &|phase, i| {
                spec.phase_commands(phase).get(i).cloned().unwrap_or_default()
            });
            let (lock, cv) = &*done_reader;
            *lock.lock().unwrap_or_else(PoisonError::into_inner) = true;
            cv.notify_all();
        });
        let waiter_control = control.clone();
        scope.spawn(move || {
            let status = child.wait();
            let (lock, cv) = &*waiter_control.inner;
            let mut state = lock.lock().unwrap_or_else(PoisonError::into_inner);
            state.exited = Some(status.unwrap_or_else(|_| std::os::unix::process::ExitStatusExt::from_raw(1 << 8)));
            cv.notify_all();
        });

        let deadline = spec.time_limit.map(|limit| started + limit);
        let mut killed_for: Option<StopReason> = None;
        let status = {
            let (lock, cv) = &*control.inner;
            let mut state = lock.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                if let Some(status) = state.exited {
                    break status;
                }
                if killed_for.is_none()
                    && let Some(reason) = state.stop
                {
                    killed_for = Some(reason);
                    kill_group(pgid);
                }
                let now = Instant::now();
                if deadline.is_some_and(|d| now >= d) && state.stop.is_none() {
                    state.stop = Some(StopReason::Timeout);
                    continue;
                }
                state = match deadline.filter(|&d| now < d) {
                    Some(d) => cv.wait_timeout(state, d - now).unwrap_or_else(PoisonError::into_inner).0,
                    None => cv.wait(state).unwrap_or_else(PoisonError::into_inner),
                };
            }
        };
        // The job is over: nothing it started may outlive it.
        kill_group(pgid);
        {
            let (lock, cv) = &*done;
            let guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
            let (guard, timeout) = cv
                .wait_timeout_while(guard, Duration::from_secs(5), |finished| !*finished)
                .unwrap_or_else(PoisonError::into_inner);
            drop(guard);
            if timeout.timed_out() {
                let mut s = lock_stream(&stream);
                if let Some(log) = s.log.as_mut() {
                    let _ =
                        log.note("stopped reading the job's output: a process that left the job still holds it open");
                }
            }
        }
        let oom = cgroup.as_ref().is_some_and(Cgroup::oom_killed);
        let mut s = lock_stream(&stream);
        let mut records = std::mem::take(&mut s.records);
        // A command that ended the shell itself (`exit 1` in an epilogue run by the EXIT trap)
        // never printed its end marker: its exit code is the shell's.
        if killed_for.is_none()
            && let (Some(last), Some(code)) = (records.last_mut(), status.code())
            && last.exit_code.is_none()
        {
            last.exit_code = Some(code);
        }
        let marker_result = s.result.take();
        let mut log = s.log.take().ok_or_else(|| JobError::Log(io::Error::other("job log already closed")))?;
        if let Some(e) = s.error.take() {
            return Err(JobError::Log(e));
        }
        drop(s);
        let mut outcome = judge(&records, marker_result.as_deref(), killed_for, status, oom, spec);
        log.note(&outcome.summary).map_err(JobError::Log)?;
        let (log_lines, log_bytes) = log.finish().map_err(JobError::Log)?;
        outcome.commands = records;
        outcome.started_ms = started_ms;
        outcome.finished_ms = unix_ms();
        outcome.log_lines = log_lines;
        outcome.log_bytes = log_bytes;
        Ok(outcome)
    })?;
    if let Some(cgroup) = cgroup {
        cgroup.remove();
    }
    if spec.sandbox.isolation.is_none() {
        let _ = std::fs::remove_dir_all(&files_dir);
    }
    let commands_json = serde_json::to_vec_pretty(&outcome.commands).unwrap_or_default();
    let _ = std::fs::write(spec.dir.join("commands.json"), commands_json);
    Ok(outcome)
}

/// The pod of a job in containers, and the PATH of its main image.
fn start_pod(spec: &JobSpec, main: &crate::container::Container) -> Result<(crate::container::Pod, String), String> {
    let podman = spec.sandbox.podman.as_ref().ok_or_else(|| {
        format!(
            "job failed: it runs in containers (image '{}'), and Salve runs containers with Podman, which this \
             machine does not have: install it (Debian: apt-get install podman) or drop agent.containers",
            main.image
        )
    })?;
    let pod = crate::container::Pod::start(
        podman,
        &spec.id,
        &spec.containers,
        spec.sandbox.network,
        (spec.sandbox.memory_bytes, spec.sandbox.max_processes),
        &spec.pull_credentials,
        &spec.dir,
    )
    .map_err(|e| format!("job failed: {e}"))?;
    let path = pod
        .image_path(&main.image)
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    Ok((pod, path))
}

/// A container job's network: the pod's own, or none.
fn container_network(sandbox: &Sandbox) -> JobNetwork {
    if sandbox.network { JobNetwork::Own } else { JobNetwork::None }
}

/// A container job's base environment: its home, the toolbox before the image's PATH; nothing of
/// the host's.
fn container_env(home: &Path, toolbox: Option<&Path>, image_path: &str) -> Vec<(String, String)> {
    let path = match toolbox {
        Some(t) => format!("{}:{image_path}", t.display()),
        None => image_path.to_owned(),
    };
    let home = home.to_string_lossy().into_owned();
    vec![
        ("PATH".into(), path),
        ("HOME".into(), home.clone()),
        ("CARGO_HOME".into(), format!("{home}/.cargo")),
        ("LANG".into(), "C.UTF-8".into()),
        ("SHELL".into(), "/bin/bash".into()),
    ]
}

/// What the toolbox's links point at (the salve binary): mounted in a container with them.
fn toolbox_targets(toolbox: Option<&Path>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = toolbox
        .and_then(|t| std::fs::read_dir(t).ok())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::canonicalize(e.path()).ok())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Ends a job that never ran: its summary as the log's last line.
fn early(mut log: LogWriter, mut outcome: JobOutcome, started_ms: u64) -> Result<JobOutcome, JobError> {
    log.note(&outcome.summary).map_err(JobError::Log)?;
    let (log_lines, log_bytes) = log.finish().map_err(JobError::Log)?;
    outcome.started_ms = started_ms;
    outcome.finished_ms = unix_ms();
    outcome.log_lines = log_lines;
    outcome.log_bytes = log_bytes;
    Ok(outcome)
}

struct Stream {
    log: Option<LogWriter>,
    splitter: MarkerSplitter,
    records: Vec<CommandRecord>,
    result: Option<String>,
    error: Option<io::Error>,
}

fn lock_stream(stream: &Mutex<Stream>) -> MutexGuard<'_, Stream> {
    stream.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read_output(
    mut pipe: io::PipeReader,
    stream: &Mutex<Stream>,
    observer: &dyn JobObserver,
    text_of: &dyn Fn(Phase, usize) -> String,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let mut s = lock_stream(stream);
        let Stream { log, splitter, records, result, error } = &mut *s;
        let Some(log) = log.as_mut() else { return };
        splitter.feed(&buf[..n], &mut |piece| handle(piece, log, records, result, error, observer, text_of));
        // One write per read: live readers see output as it comes, and a crash loses nothing stored.
        if let Err(e) = log.flush() {
            error.get_or_insert(e);
        }
    }
    let mut s = lock_stream(stream);
    let Stream { log, splitter, records, result, error } = &mut *s;
    if let Some(log) = log.as_mut() {
        splitter.finish(&mut |piece| handle(piece, log, records, result, error, observer, text_of));
    }
}

fn handle(
    piece: Piece<'_>,
    log: &mut LogWriter,
    records: &mut Vec<CommandRecord>,
    result: &mut Option<String>,
    error: &mut Option<io::Error>,
    observer: &dyn JobObserver,
    text_of: &dyn Fn(Phase, usize) -> String,
) {
    let r = match piece {
        Piece::Output(bytes) => log.write(bytes).map(|stored| observer.output(stored)),
        Piece::Marker(Marker::Start(phase, index)) => log.end_line().map(|()| {
            let line = log.next_line();
            let record = CommandRecord {
                phase,
                index,
                command: log.masker().mask_str(&text_of(phase, index)),
                started_ms: unix_ms(),
                duration_ms: 0,
                exit_code: None,
                first_line: line,
                end_line: line,
            };
            observer.command_started(&record);
            records.push(record);
        }),
        Piece::Marker(Marker::End(phase, index, code)) => log.end_line().map(|()| {
            let end_line = log.next_line();
            if let Some(record) = records.iter_mut().rev().find(|r| r.phase == phase && r.index == index) {
                record.exit_code = Some(code);
                record.duration_ms = unix_ms().saturating_sub(record.started_ms);
                record.end_line = end_line;
                observer.command_finished(record);
            }
        }),
        Piece::Marker(Marker::Result(r)) => {
            *result = Some(r);
            Ok(())
        }
    };
    if let Err(e) = r {
        error.get_or_insert(e);
    }
}

fn kill_group(pgid: u32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pgid as i32) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// Decides the job's result from what the script reported and how the shell ended.
fn judge(
    records: &[CommandRecord],
    marker_result: Option<&str>,
    killed_for: Option<StopReason>,
    status: ExitStatus,
    oom: bool,
    spec: &JobSpec,
) -> JobOutcome {
    use std::os::unix::process::ExitStatusExt;
    let outcome = JobOutcome::new;
    let failed = records.iter().rev().find(|c| c.phase == Phase::Main && c.exit_code.is_some_and(|e| e != 0));
    let unfinished = records.iter().rev().find(|c| c.phase == Phase::Main && c.exit_code.is_none());
    if oom {
        let limit = spec.sandbox.memory_bytes.unwrap_or(0);
        return outcome(
            JobResult::Failed,
            None,
            Some(Failure::OutOfMemory { limit_bytes: limit }),
            format!("job failed: out of memory (the limit is {} MiB); the kernel killed it", limit / (1024 * 1024)),
        );
    }
    if let Some(reason) = killed_for {
        let why = match reason {
            StopReason::Timeout => {
                format!("execution time limit of {} reached", human_duration(spec.time_limit.unwrap_or_default()))
            }
            other => format!("stopped ({})", other.as_str()),
        };
        let during = unfinished.map(|c| format!(" during `{}`", first_line(&c.command))).unwrap_or_default();
        return outcome(JobResult::Stopped, Some(reason), None, format!("job stopped: {why}{during}"));
    }
    match marker_result {
        Some("passed") => return outcome(JobResult::Passed, None, None, "job passed".to_owned()),
        Some("stopped") => {
            return outcome(
                JobResult::Stopped,
                Some(StopReason::User),
                None,
                "job stopped: a command exited with 130 and SEMAPHORE_JOB_RESULT was neither passed nor failed"
                    .to_owned(),
            );
        }
        _ => {}
    }
    if let Some(signal) = status.signal() {
        let name = match signal {
            9 => " (SIGKILL)",
            15 => " (SIGTERM)",
            6 => " (SIGABRT)",
            11 => " (SIGSEGV)",
            _ => "",
        };
        return outcome(
            JobResult::Failed,
            None,
            Some(Failure::Signal { signal }),
            format!("job failed: the shell was killed by signal {signal}{name}"),
        );
    }
    if records.is_empty() {
        let message = format!(
            "job failed: its shell did not start (exit status {}); the sandbox may be misconfigured, see the lines above",
            status.code().unwrap_or(-1)
        );
        return outcome(JobResult::Failed, None, Some(Failure::Setup { message: message.clone() }), message);
    }
    match (failed, marker_result) {
        (Some(c), _) => {
            let code = c.exit_code.unwrap_or(1);
            let (failure, what) = match code {
                127 => (Failure::CommandNotFound, "command not found (exit code 127)".to_owned()),
                126 => (
                    Failure::Command { exit_code: code },
                    "command found but not executable (exit code 126)".to_owned(),
                ),
                c if c > 128 && c < 160 => {
                    (Failure::Command { exit_code: code }, format!("exit code {c} (killed by signal {})", c - 128))
                }
                c => (Failure::Command { exit_code: code }, format!("exit code {c}")),
            };
            outcome(
                JobResult::Failed,
                None,
                Some(failure),
                format!("job failed: `{}` — {what}", first_line(&c.command)),
            )
        }
        (None, Some("failed")) => outcome(
            JobResult::Failed,
            None,
            None,
            "job failed: a command exited with 130 after setting SEMAPHORE_JOB_RESULT=failed".to_owned(),
        ),
        _ => {
            let code = status.code().unwrap_or(1);
            let during = unfinished.map(|c| format!(" during `{}`", first_line(&c.command))).unwrap_or_default();
            outcome(
                JobResult::Failed,
                None,
                Some(Failure::Command { exit_code: code }),
                format!("job failed: the shell ended with exit code {code}{during} before the job finished"),
            )
        }
    }
}

/// The class a job's summary (as [`run_job`] wrote it) decides on its own, whatever the log
/// says: the kernel's OOM kill, a signal, the time limit. The runner's notes are never evidence
/// in the log, so this is how its verdict reaches failure analysis.
pub fn verdict(summary: &str) -> Option<&'static str> {
    if summary.starts_with("job failed: out of memory") {
        Some("out_of_memory")
    } else if summary.starts_with("job stopped: execution time limit") {
        Some("timeout")
    } else if summary.starts_with("job failed: the shell was killed by signal") {
        Some("killed")
    } else {
        None
    }
}

fn human_duration(d: Duration) -> String {
    match d.as_secs() {
        60 => "1 minute".to_owned(),
        s if s % 60 == 0 && s > 0 => format!("{} minutes", s / 60),
        _ => format!("{} seconds", d.as_secs_f64()),
    }
}

fn first_line(command: &str) -> String {
    let line = command.lines().next().unwrap_or("");
    if line.len() > 120 || command.lines().nth(1).is_some() {
        let cut: String = line.chars().take(117).collect();
        format!("{cut}...")
    } else {
        line.to_owned()
    }
}

/// Writes a file readable by its owner only (the script holds secret values).
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(bytes)
}

fn file_destination(home: &Path, file: &JobFile) -> Result<PathBuf, String> {
    let rel = ["~/", "$HOME/", "/home/semaphore/"]
        .iter()
        .find_map(|p| file.path.strip_prefix(p))
        .or_else(|| (!file.path.starts_with('/')).then_some(file.path.as_str()));
    let Some(rel) = rel else {
        return Err(format!(
            "cannot place the file '{}': only paths in the job's home are writable (use a relative path or ~/...)",
            file.path
        ));
    };
    if rel.split('/').any(|c| c == "..") || rel.is_empty() || rel.ends_with('/') {
        return Err(format!("cannot place the file '{}': the path must stay inside the job's home", file.path));
    }
    Ok(home.join(rel))
}

/// An anonymous file in memory holding `bytes`, positioned at its start: what a job's shell
/// reads its variables and secret files from. It is gone when the job's last process closes it.
fn in_memory(bytes: &[u8]) -> io::Result<std::fs::File> {
    use std::io::{Seek as _, Write as _};
    let fd = rustix::fs::memfd_create("salve-job", rustix::fs::MemfdFlags::CLOEXEC)?;
    let mut file = std::fs::File::from(fd);
    file.write_all(bytes)?;
    file.seek(io::SeekFrom::Start(0))?;
    Ok(file)
}

/// Gives `path` and everything below it to `uid:gid`. A folder already the job user's is left
/// as it is (it was given before, and its content was written by the job user). The walk goes
/// through folder descriptors opened without following links, so a job that swaps a folder for
/// a link while this runs cannot make it give away anything outside.
fn chown_tree(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    use rustix::fs::{AtFlags, Mode, OFlags};
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::symlink_metadata(path)?;
    if meta.uid() == uid && meta.gid() == gid {
        return Ok(());
    }
    let owner = (Some(rustix::process::Uid::from_raw(uid)), Some(rustix::process::Gid::from_raw(gid)));
    if !meta.is_dir() {
        return Ok(rustix::fs::chownat(rustix::fs::CWD, path, owner.0, owner.1, AtFlags::SYMLINK_NOFOLLOW)?);
    }
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    fn walk(
        dir: rustix::fd::OwnedFd,
        owner: (Option<rustix::process::Uid>, Option<rustix::process::Gid>),
        flags: OFlags,
        depth: usize,
    ) -> io::Result<()> {
        rustix::fs::fchown(&dir, owner.0, owner.1)?;
        if depth > 256 {
            return Ok(());
        }
        for entry in rustix::fs::Dir::read_from(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            match rustix::fs::openat(&dir, name, flags, Mode::empty()) {
                Ok(sub) => walk(sub, owner, flags, depth + 1)?,
                Err(rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP) => {
                    rustix::fs::chownat(&dir, name, owner.0, owner.1, AtFlags::SYMLINK_NOFOLLOW)?
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
    walk(rustix::fs::open(path, flags, Mode::empty())?, owner, flags, 0)
}

#[cfg(test)]
mod tests {
    use super::loopback_ports;

    #[test]
    fn secrets_naming_a_loopback_url_open_its_port() {
        let secrets: Vec<String> = [
            "http://127.0.0.1:11434/v1",
            "postgres://u:p@localhost:5433/db",
            "http://[::1]:9000",
            "https://api.example.com:443/v1",
            "hunter2",
            "http://127.0.0.1/no-port",
            "http://127.0.0.1:notaport/",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(loopback_ports(&secrets), vec![11434, 5433, 9000]);
    }
}
