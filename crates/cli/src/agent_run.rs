//! `salve agent --server URL --token REG_TOKEN --name NAME`: a self-hosted agent. It registers
//! with its type's registration token (and from then on uses a token of its own), claims jobs of
//! its type (`--slots` at once, each claim waiting for work), fetches the job's commit over the
//! server's git smart HTTP into a mirror of its own, runs the job with the same runner and
//! sandbox as the server, streams the log (and its line index) as it is written in chunks the
//! server stores by byte offset (a chunk sent twice is stored once; a gap is refused), and
//! reports the commands and the result once the whole log is in. Every answer to a chunk renews
//! the claim and may say to stop. An agent that cannot reach the server for the claim's lease
//! stops the job itself: the server runs it again elsewhere, so one job never runs twice at
//! once. SIGTERM stops claiming, lets running jobs finish, and disconnects; a second SIGTERM
//! stops the jobs.

use std::collections::HashMap;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use clap::Args;
use salve_contract::{RunResult, api};
use salve_git::Repo;
use salve_launch::{DataDir, Settings, mirror_env, remote_storage_env};
use salve_runner::log::{INDEX_FILE, LOG_FILE};
use salve_runner::{
    Epilogue, Isolate, JobControl, JobFile, JobOutcome, JobResult, JobSpec, Limits, NoObserver, StopReason,
};

use crate::client::{Client, ClientError, encode};
use crate::{err, out};

#[derive(Args)]
pub struct AgentArgs {
    /// The Salve server's URL; several, comma-separated, for server replicas (the agent moves
    /// to the next when one cannot be reached).
    #[arg(long, env = "SALVE_SERVER")]
    server: Option<String>,
    /// The agent type's registration token (`salve agent-type create s1-NAME` prints it).
    #[arg(long, env = "SALVE_AGENT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A name for people (1 to 100 characters) [default: the host's name].
    #[arg(long)]
    name: Option<String>,
    /// Jobs run at once (1 to 64).
    #[arg(long, default_value_t = 1)]
    slots: u32,
    /// The agent's folder: repository mirrors and job folders (caches and artifacts are the
    /// server's) [default: agent/ in Salve's data folder].
    #[arg(long, env = "SALVE_AGENT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Run jobs without bubblewrap (only on a machine that runs nothing else).
    #[arg(long)]
    no_sandbox: bool,
    /// Cut jobs off from the network (their cache and artifact commands, which reach the
    /// server, then fail).
    #[arg(long)]
    no_network: bool,
    /// A folder of toolchains, `<lang>/<version>/bin`, that `sem-version` finds first.
    #[arg(long, env = "SALVE_TOOLCHAINS")]
    toolchains: Option<PathBuf>,
    /// Each job's memory limit in MiB, 0 for none [default: three quarters of the machine's].
    #[arg(long)]
    job_memory_mb: Option<u64>,
    /// Each job's process limit, 0 for none [default: 4096].
    #[arg(long)]
    job_max_processes: Option<u64>,
}

/// How long one claim waits for work before the agent asks again (and looks at SIGTERM).
const CLAIM_WAIT_SECONDS: u64 = 5;
/// The largest log chunk sent at once.
const CHUNK: u64 = 1024 * 1024;
const INDEX_RECORD: u64 = 24;

fn fail(message: &str) -> u8 {
    err!("salve agent: {message}");
    2
}

pub fn run(args: AgentArgs) -> u8 {
    let Some(server) = args.server.filter(|s| !s.trim().is_empty()) else {
        return fail("give the server's URL with --server URL (or SALVE_SERVER)");
    };
    let Some(token) = args.token.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()) else {
        return fail(
            "give the agent type's registration token with --token (or SALVE_AGENT_TOKEN); `salve agent-type create s1-NAME` prints one",
        );
    };
    let name = args.name.unwrap_or_else(host_name);
    let data = args.data_dir.unwrap_or_else(|| crate::state::data_dir().join("agent"));
    let data = match std::path::absolute(&data) {
        Ok(d) => d,
        Err(e) => return fail(&format!("cannot resolve the data folder {}: {e}", data.display())),
    };
    let defaults = salve_server::Config::new(data.clone());
    let settings = Settings {
        data: DataDir::new(&data),
        exe: std::env::current_exe().ok(),
        isolate: if args.no_sandbox { Isolate::Off } else { Isolate::Bubblewrap },
        limits: Limits {
            network: !args.no_network,
            memory_bytes: match args.job_memory_mb {
                Some(mb) => (mb > 0).then(|| mb.saturating_mul(1024 * 1024)),
                None => defaults.job_memory_bytes,
            },
            max_processes: match args.job_max_processes {
                Some(n) => (n > 0).then_some(n),
                None => defaults.job_max_processes,
            },
        },
        parallel: 1,
        run_containers: true,
        os_images: Default::default(),
        servers: server.split(',').map(|u| u.trim().to_owned()).collect(),
    };
    if let Err(e) = settings.data.prepare(settings.exe.as_deref()) {
        return fail(&e.to_string());
    }
    // A machine that cannot run the sandbox is told now, not at the first job.
    let sandbox = match settings.sandbox() {
        Ok(s) => s,
        Err(e) => return fail(&e.to_string()),
    };
    let urls: Vec<&str> = server.split(',').map(str::trim).filter(|u| !u.is_empty()).collect();
    let clients = |token: &str, seconds| urls.iter().map(|u| Client::with_timeout(u, token, seconds)).collect();
    let registrar = match clients(&token, 30) {
        Ok(c) => Servers::new(c),
        Err(e) => return fail(&e),
    };
    let request =
        api::RegisterAgent { name: name.clone(), version: env!("CARGO_PKG_VERSION").into(), slots: args.slots };
    let registered: api::AgentRegistered = match registrar.call(|c| c.post("/api/v1/agents/register", &request)) {
        Ok(r) => r,
        Err(e) => return fail(&format!("cannot register: {e}")),
    };
    let client = match clients(&registered.token, CLAIM_WAIT_SECONDS + 30) {
        Ok(c) => Servers::new(c),
        Err(e) => return fail(&e),
    };
    out!(
        "Agent {name} registered with {server} as {} (type {}); {} slot(s), waiting for jobs",
        registered.id,
        registered.agent_type,
        args.slots
    );
    let agent = Arc::new(Agent {
        client,
        token: registered.token.clone(),
        settings,
        sandbox,
        toolchains: args.toolchains.and_then(|d| std::path::absolute(d).ok()),
        draining: AtomicBool::new(false),
        stopped: AtomicBool::new(false),
        running: Mutex::new(HashMap::new()),
        mirrors: Mutex::new(HashMap::new()),
    });
    watch_signals(&agent);
    let heartbeat = {
        let agent = Arc::clone(&agent);
        let every = Duration::from_secs(registered.heartbeat_seconds.max(1));
        std::thread::spawn(move || agent.heartbeats(every))
    };
    let slots: Vec<_> = (0..args.slots.max(1))
        .map(|_| {
            let agent = Arc::clone(&agent);
            std::thread::spawn(move || agent.work())
        })
        .collect();
    for s in slots {
        let _ = s.join();
    }
    agent.stopped.store(true, Ordering::Release);
    let _ = heartbeat.join();
    match agent.client.call(|c| c.post::<api::Agent>("/api/v1/agents/disconnect", &())) {
        Ok(_) => out!("Agent {name} disconnected"),
        Err(e) => err!("salve agent: could not say goodbye to the server: {e}"),
    }
    0
}

fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "agent".to_owned())
}

/// The server's replicas: calls go to one until it cannot be reached, then to the next.
struct Servers {
    clients: Vec<Client>,
    current: std::sync::atomic::AtomicUsize,
}

impl Servers {
    fn new(clients: Vec<Client>) -> Servers {
        Servers { clients, current: std::sync::atomic::AtomicUsize::new(0) }
    }

    /// The replica calls go to now.
    fn current(&self) -> &Client {
        self.at(self.current.load(Ordering::Acquire))
    }

    fn at(&self, turn: usize) -> &Client {
        &self.clients[turn % self.clients.len().max(1)]
    }

    /// `f` on the current replica, then on each other one while they cannot be reached.
    fn call<T>(&self, f: impl Fn(&Client) -> Result<T, ClientError>) -> Result<T, ClientError> {
        let count = self.clients.len().max(1);
        let mut tried = 0;
        loop {
            let at = self.current.load(Ordering::Acquire);
            match f(self.at(at)) {
                Err(ClientError::Unreachable(m)) if tried + 1 < count => {
                    tried += 1;
                    let _ = self.current.compare_exchange(at, at + 1, Ordering::AcqRel, Ordering::Acquire);
                    err!("salve agent: {m}; trying the next server");
                }
                done => return done,
            }
        }
    }
}

struct Agent {
    client: Servers,
    /// The agent's own token: the git fetches carry it too.
    token: String,
    settings: Settings,
    /// The sandbox every job runs in (with the job's own lower limits, when it asks).
    sandbox: salve_runner::Sandbox,
    /// The operator's toolchains folder, for `sem-version`.
    toolchains: Option<PathBuf>,
    /// SIGTERM: claim nothing more.
    draining: AtomicBool,
    /// Every slot is done: the heartbeats end.
    stopped: AtomicBool,
    /// The jobs running now, to stop them on a second SIGTERM.
    running: Mutex<HashMap<String, JobControl>>,
    /// One fetch at a time into each project's mirror.
    mirrors: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

fn watch_signals(agent: &Arc<Agent>) {
    let Ok(mut signals) =
        signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
    else {
        return;
    };
    let agent = Arc::clone(agent);
    std::thread::spawn(move || {
        for _ in signals.forever() {
            if agent.draining.swap(true, Ordering::AcqRel) {
                err!("Stopping the running jobs...");
                for c in agent.running.lock().unwrap_or_else(PoisonError::into_inner).values() {
                    c.stop(StopReason::Internal);
                }
            } else {
                err!("Finishing the running jobs, then disconnecting (send the signal again to stop them)...");
            }
        }
    });
}

impl Agent {
    fn heartbeats(&self, every: Duration) {
        let mut next = Instant::now();
        while !self.stopped.load(Ordering::Acquire) {
            if Instant::now() >= next {
                next = Instant::now() + every;
                match self.client.call(|c| c.post::<api::Agent>("/api/v1/agents/heartbeat", &())) {
                    Ok(_) => {}
                    Err(ClientError::Refused { status: 401, message }) => {
                        err!("salve agent: the server no longer knows this agent ({message}); stopping");
                        self.draining.store(true, Ordering::Release);
                    }
                    Err(e) => err!("salve agent: heartbeat: {e}"),
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One slot: claims and runs jobs until SIGTERM.
    fn work(&self) {
        while !self.draining.load(Ordering::Acquire) {
            let claim = api::ClaimJob { wait_seconds: CLAIM_WAIT_SECONDS };
            match self.client.call(|c| c.post::<api::Claimed>("/api/v1/agents/claim", &claim)) {
                Ok(api::Claimed { job: Some(job) }) => self.run_claimed(job),
                Ok(api::Claimed { job: None }) => {}
                Err(ClientError::Refused { status: 401, message }) => {
                    err!("salve agent: the server refused this agent ({message}); stopping");
                    self.draining.store(true, Ordering::Release);
                }
                Err(e) => {
                    err!("salve agent: claim: {e}");
                    std::thread::sleep(Duration::from_secs(2));
                }
            }
        }
    }

    fn run_claimed(&self, job: api::AgentJob) {
        let data = &self.settings.data;
        let id = job.job_id.clone();
        out!("job {id} (attempt {}) of {}: starting", job.attempt, job.project.name);
        let dir = data.jobs().join(format!("{}-{}", safe(&id), job.attempt));
        let _ = std::fs::remove_dir_all(&dir);
        let control = JobControl::new();
        self.running.lock().unwrap_or_else(PoisonError::into_inner).insert(id.clone(), control.clone());
        let outcome = match self.prepare(&job, &dir) {
            Ok(spec) => {
                let (done, ended) = std::sync::mpsc::channel();
                {
                    let control = control.clone();
                    std::thread::spawn(move || {
                        let _ = done.send(salve_runner::run_job(&spec, &control, &NoObserver));
                    });
                }
                let mut upload = Upload::new(&job, &dir);
                // New output goes up as it comes; the job's end is heard at once.
                let outcome = loop {
                    let wait = match upload.push(self, &control) {
                        Pushed::Nothing => Duration::from_millis(250),
                        Pushed::Something => Duration::ZERO,
                    };
                    match ended.recv_timeout(wait) {
                        Ok(r) => break r.map_err(|e| e.to_string()),
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                            break Err("the runner thread panicked".to_owned());
                        }
                    }
                };
                self.report(&job, &dir, &mut upload, &control, outcome)
            }
            Err(message) => {
                // The job could not start here: its log says why, and it failed.
                let _ = std::fs::create_dir_all(&dir);
                let _ = std::fs::write(dir.join(LOG_FILE), format!("salve: {message}\n"));
                let mut upload = Upload::new(&job, &dir);
                self.report(&job, &dir, &mut upload, &control, Err(message))
            }
        };
        self.running.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
        let _ = std::fs::remove_dir_all(&dir);
        out!("job {id} (attempt {}): {outcome}", job.attempt);
    }

    /// The mirror brought up to date and the job's spec, on this machine's places.
    fn prepare(&self, job: &api::AgentJob, dir: &Path) -> Result<JobSpec, String> {
        let data = &self.settings.data;
        let project = safe(&job.project.id);
        let mirror = data.path().join("mirrors").join(format!("{project}.git"));
        std::fs::create_dir_all(&mirror).map_err(|e| format!("cannot create {}: {e}", mirror.display()))?;
        let lock = {
            let mut mirrors = self.mirrors.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(mirrors.entry(project.clone()).or_default())
        };
        {
            let _one = lock.lock().unwrap_or_else(PoisonError::into_inner);
            // A commit the mirror holds already (another job of the same push) is not fetched.
            let fetch = |c: &Client| {
                if mirror.join("HEAD").is_file() && Repo::new(&mirror).resolve(&job.sha).is_some() {
                    return Ok(());
                }
                let url = format!("{}/git/{}.git", c.base(), encode(&job.project.name));
                Repo::new(&mirror)
                    .mirror_from(&url, &self.token, &job.sha)
                    .map_err(|e| ClientError::Unreachable(e.to_string()))
            };
            self.client
                .call(fetch)
                .map_err(|e| format!("cannot fetch commit {} of {}: {e}", job.sha, job.project.name))?;
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut files = Vec::new();
        for f in &job.files {
            let content = b64.decode(&f.content_base64).map_err(|_| format!("the file {} is not base64", f.path))?;
            files.push(JobFile { path: f.path.clone(), content, mode: f.mode });
        }
        let mut env: Vec<(String, String)> = job.env.iter().map(|v| (v.name.clone(), v.value.clone())).collect();
        // Its places: this agent's mirror, and the server's storage through the API.
        env.push(mirror_env(&mirror));
        env.extend(salve_launch::toolchains_env(self.toolchains.as_deref()));
        let storage = self.client.current().base().to_owned();
        env.extend(remote_storage_env(&storage, &job.storage_token));
        let mut secret_values = job.secret_values.clone();
        secret_values.push(job.storage_token.clone());
        Ok(JobSpec {
            id: job.job_id.clone(),
            commands: job.commands.clone(),
            epilogue: Epilogue {
                always: job.epilogue_always.clone(),
                on_pass: job.epilogue_on_pass.clone(),
                on_fail: job.epilogue_on_fail.clone(),
            },
            sandbox: self.sandbox.with_job_limits(env.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            env,
            files,
            secret_values,
            time_limit: job.time_limit_seconds.map(Duration::from_secs),
            dir: dir.to_owned(),
            toolbox: self.settings.exe.as_ref().map(|_| data.toolbox()),
            writable: Vec::new(),
            readable: vec![mirror],
            containers: job
                .containers
                .iter()
                .map(|c| salve_runner::container::Container {
                    name: c.name.clone(),
                    image: c.image.clone(),
                    command: c.command.clone(),
                    entrypoint: c.entrypoint.clone(),
                    user: c.user.clone(),
                    env: c.env.iter().map(|v| (v.name.clone(), v.value.clone())).collect(),
                })
                .collect(),
            pull_credentials: job
                .pull_credentials
                .iter()
                .map(|c| salve_runner::container::PullCredential {
                    registry: c.registry.clone(),
                    username: c.username.clone(),
                    password: c.password.clone(),
                })
                .collect(),
        })
    }

    /// Sends the rest of the log, then the report; what happened, for the agent's output.
    fn report(
        &self,
        job: &api::AgentJob,
        dir: &Path,
        upload: &mut Upload,
        control: &JobControl,
        outcome: Result<JobOutcome, String>,
    ) -> String {
        let log_bytes = std::fs::metadata(dir.join(LOG_FILE)).map_or(0, |m| m.len());
        let finish = match &outcome {
            Ok(o) => api::FinishJob {
                attempt: job.attempt,
                result: match o.result {
                    JobResult::Passed => RunResult::Passed,
                    JobResult::Failed => RunResult::Failed,
                    JobResult::Stopped => RunResult::Stopped,
                },
                stop_reason: o.stop_reason.map(|r| r.as_str().to_owned()),
                summary: o.summary.clone(),
                commands: o.commands.iter().map(salve_launch::wire::to_wire).collect(),
                started_ms: o.started_ms,
                finished_ms: o.finished_ms,
                log_lines: o.log_lines,
                log_bytes,
            },
            Err(message) => {
                let now = salve_runner::log::unix_ms();
                api::FinishJob {
                    attempt: job.attempt,
                    result: RunResult::Failed,
                    stop_reason: None,
                    summary: format!("internal: {message}"),
                    commands: Vec::new(),
                    started_ms: now,
                    finished_ms: now,
                    log_lines: 1,
                    log_bytes,
                }
            }
        };
        let path = format!("/api/v1/agents/jobs/{}/finish", encode(&job.job_id));
        loop {
            // The whole log first: the server takes no report before it.
            while !upload.abandoned && !upload.done() {
                if upload.push(self, control) == Pushed::Nothing && !upload.done() {
                    std::thread::sleep(Duration::from_millis(250));
                }
            }
            if upload.abandoned {
                return "handed back (the server gave the job to another agent, or could not be reached)".into();
            }
            match self.client.call(|c| c.post::<api::JobFinished>(&path, &finish)) {
                Ok(done) => return format!("{}", done.result),
                Err(ClientError::Refused { status: 409, message }) if message.contains("reported") => {
                    return format!("{} (reported already)", finish.result);
                }
                // The server lacks part of the log (its storage was replaced): send it again.
                Err(ClientError::Refused { status: 409, .. }) => upload.resync(self),
                Err(ClientError::Refused { status, message }) => {
                    return format!("report refused ({status}: {message})");
                }
                Err(e) => {
                    if upload.last_ack.elapsed() > upload.lease {
                        return format!("report not delivered: {e}");
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }
}

/// A file or folder name from a server-given id: letters, digits, `-` and `_` only.
fn safe(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pushed {
    Nothing,
    Something,
}

/// A job's log and index on their way to the server.
struct Upload {
    path: String,
    attempt: u32,
    dir: PathBuf,
    /// Bytes of each stream the server holds.
    log_sent: u64,
    index_sent: u64,
    /// When the server last answered: the claim lives `lease` past it.
    last_ack: Instant,
    lease: Duration,
    /// The claim is no longer this agent's (lost, or the server unreachable past the lease).
    abandoned: bool,
}

impl Upload {
    fn new(job: &api::AgentJob, dir: &Path) -> Upload {
        Upload {
            path: format!("/api/v1/agents/jobs/{}/log", encode(&job.job_id)),
            attempt: job.attempt,
            dir: dir.to_owned(),
            log_sent: 0,
            index_sent: 0,
            last_ack: Instant::now(),
            lease: Duration::from_secs(job.lease_seconds.max(2)),
            abandoned: false,
        }
    }

    fn size(&self, file: &str) -> u64 {
        std::fs::metadata(self.dir.join(file)).map_or(0, |m| m.len())
    }

    /// Whether the server holds all of both files.
    fn done(&self) -> bool {
        self.log_sent >= self.size(LOG_FILE) && self.index_sent >= self.size(INDEX_FILE) / INDEX_RECORD * INDEX_RECORD
    }

    /// Sends what is new of the log, then of the index; with nothing new, an empty chunk now
    /// and then renews the claim and asks whether to stop.
    fn push(&mut self, agent: &Agent, control: &JobControl) -> Pushed {
        if self.abandoned {
            return Pushed::Nothing;
        }
        let mut sent = false;
        for stream in [api::LogStream::Log, api::LogStream::Index] {
            let file = match stream {
                api::LogStream::Log => LOG_FILE,
                api::LogStream::Index => INDEX_FILE,
            };
            let at = *self.sent(stream);
            let mut end = self.size(file).min(at + CHUNK);
            if stream == api::LogStream::Index {
                end = at + (end.saturating_sub(at)) / INDEX_RECORD * INDEX_RECORD;
            }
            if end <= at {
                continue;
            }
            let Some(bytes) = read_range(&self.dir.join(file), at, end) else { continue };
            self.send(agent, control, stream, at, bytes);
            sent = true;
            if self.abandoned {
                return Pushed::Nothing;
            }
        }
        if !sent && self.last_ack.elapsed() >= Duration::from_millis(500) {
            self.send(agent, control, api::LogStream::Log, self.log_sent, Vec::new());
        }
        if sent { Pushed::Something } else { Pushed::Nothing }
    }

    /// How much of `stream` the server holds, as last heard.
    fn sent(&mut self, stream: api::LogStream) -> &mut u64 {
        match stream {
            api::LogStream::Log => &mut self.log_sent,
            api::LogStream::Index => &mut self.index_sent,
        }
    }

    /// Posts `bytes` of `stream` at `at`; an answer renews the claim and says how much is held.
    fn post(
        &mut self,
        agent: &Agent,
        stream: api::LogStream,
        at: u64,
        bytes: Vec<u8>,
    ) -> Result<api::LogAck, ClientError> {
        let query =
            [("attempt", self.attempt.to_string()), ("stream", stream.as_str().to_owned()), ("offset", at.to_string())];
        let ack = agent.client.call(|c| c.post_bytes::<api::LogAck>(&self.path, &query, bytes.clone()))?;
        self.last_ack = Instant::now();
        *self.sent(stream) = ack.stored;
        Ok(ack)
    }

    fn send(&mut self, agent: &Agent, control: &JobControl, stream: api::LogStream, at: u64, bytes: Vec<u8>) {
        match self.post(agent, stream, at, bytes) {
            Ok(ack) => {
                if let Some(reason) = ack.stop {
                    control.stop(StopReason::parse(&reason).unwrap_or(StopReason::User));
                }
            }
            // A gap (the server lost a chunk it had acknowledged): ask where it stands.
            Err(ClientError::Refused { status: 409, .. }) => self.resync(agent),
            Err(ClientError::Refused { status: 410 | 401, message }) => {
                err!("salve agent: {message}");
                self.abandon(control);
            }
            Err(e) => {
                if self.last_ack.elapsed() > self.lease {
                    err!("salve agent: no word from the server for the whole lease ({e}); stopping the job");
                    self.abandon(control);
                } else {
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
    }

    /// Learns how much of each stream the server holds (an empty chunk at offset 0).
    fn resync(&mut self, agent: &Agent) {
        for stream in [api::LogStream::Log, api::LogStream::Index] {
            let _ = self.post(agent, stream, 0, Vec::new());
        }
    }

    fn abandon(&mut self, control: &JobControl) {
        self.abandoned = true;
        control.stop(StopReason::Internal);
    }
}

fn read_range(path: &Path, from: u64, to: u64) -> Option<Vec<u8>> {
    let mut f = std::fs::File::open(path).ok()?;
    f.seek(SeekFrom::Start(from)).ok()?;
    let mut bytes = Vec::with_capacity(usize::try_from(to - from).ok()?);
    f.take(to - from).read_to_end(&mut bytes).ok()?;
    Some(bytes)
}
