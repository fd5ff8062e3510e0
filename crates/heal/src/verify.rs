//! Running commands for a heal: fixers, and the failed jobs' commands again to verify a fix.
//! Always through the runner and its sandbox: bubblewrap where it can start, and inside another
//! job's sandbox (where a heal job runs, and bubblewrap cannot nest) Landlock alone, through
//! the jail. Commands get no network unless asked, and never the heal job's API token.

use std::path::{Path, PathBuf};

use salve_runner::{Epilogue, Isolate, JobControl, JobResult, JobSpec, Limits, NoObserver, Sandbox};

/// A job of the failed pipeline, as the heal re-runs it.
#[derive(Debug, Clone, Default)]
pub struct JobCommands {
    pub name: String,
    pub commands: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The job's own execution time limit: a rerun gets no more (and no less) time than CI gave.
    pub time_limit: std::time::Duration,
    /// The job's containers (`agent.containers`, without their secrets): a rerun runs in them
    /// where Podman can (not inside another job's sandbox).
    pub containers: Vec<salve_runner::container::Container>,
}

/// What one run did.
#[derive(Debug, Clone)]
pub struct Ran {
    pub passed: bool,
    /// The failing command's exit code, when one failed.
    pub exit_code: Option<i32>,
    pub summary: String,
    /// The last lines of the log (masked).
    pub tail: String,
    pub duration_ms: u64,
}

pub struct Runner {
    sandbox: Sandbox,
    toolbox: PathBuf,
    /// Where each run gets its folder.
    scratch: PathBuf,
    /// Variables every command gets (the heal job's, without the secrets).
    env: Vec<(String, String)>,
    /// Folders commands may write besides the repository (the project's cache).
    writable: Vec<PathBuf>,
    /// Folders commands may read that their sandbox would hide (the protected git objects the
    /// work tree's disposable `.git` borrows).
    readable: Vec<PathBuf>,
    /// Each run's time limit.
    time_limit: std::time::Duration,
    runs: std::sync::atomic::AtomicUsize,
}

/// Variables a command run by a heal never gets: the API token, model keys.
pub const WITHHELD: &[&str] =
    &["SALVE_TOKEN", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "SALVE_MODEL_KEY", "GITHUB_TOKEN", "GITLAB_TOKEN"];

/// Variables of the heal job's own process that a command it runs gets anew.
const PER_PROCESS: &[&str] = &["HOME", "CARGO_HOME", "TMPDIR", "PWD", "OLDPWD", "SHLVL", "_"];

/// The model keys an external agent command keeps (it calls its model itself).
const MODEL_KEYS: &[&str] = &["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "SALVE_MODEL_KEY"];

/// Whether a variable's name says it holds a secret (`*KEY*`, `*TOKEN*`, `*PASSWORD*`, ...):
/// such values never reach a heal's commands or the model.
pub fn secret_looking(name: &str) -> bool {
    let k = name.to_ascii_uppercase();
    WITHHELD.contains(&k.as_str())
        || ["KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL"].iter().any(|w| k.contains(w))
}

impl Runner {
    /// A runner for this machine: bubblewrap when it starts here, Landlock alone inside a job's
    /// sandbox, an error otherwise (unless `no_sandbox`).
    pub fn new(
        scratch: &Path,
        env: Vec<(String, String)>,
        writable: Vec<PathBuf>,
        no_sandbox: bool,
    ) -> Result<Runner, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find the salve binary: {e}"))?;
        let toolbox = scratch.join("toolbox");
        salve_toolbox::install(&toolbox, &exe)
            .map_err(|e| format!("cannot link the toolbox in {}: {e}", toolbox.display()))?;
        let isolate = |i| Sandbox::build(Some(&exe), i, Vec::new(), Limits::default());
        let sandbox = match isolate(Isolate::BubblewrapOrNested) {
            Ok(s) => s,
            Err(_) if no_sandbox => isolate(Isolate::Off).map_err(|e| e.to_string())?,
            Err(e) => return Err(e.to_string()),
        };
        // Commands get a home of the heal's own (shared by its runs, so caches carry over),
        // never the heal job's: that is where the heal keeps what they must not touch.
        let home = scratch.join("home");
        std::fs::create_dir_all(&home).map_err(|e| format!("cannot create {}: {e}", home.display()))?;
        let mut env: Vec<(String, String)> =
            env.into_iter().filter(|(k, _)| !secret_looking(k) && !PER_PROCESS.contains(&k.as_str())).collect();
        // The job's PATH (a toolchain sem-version chose stays), the heal's toolbox first: the
        // commands find `cache`, `artifact` and the rest outside a Salve job too.
        for (_, v) in env.iter_mut().filter(|(k, _)| k == "PATH") {
            *v = format!("{}:{v}", toolbox.display());
        }
        let home_str = home.to_string_lossy().into_owned();
        env.push(("HOME".into(), home_str.clone()));
        env.push(("CARGO_HOME".into(), format!("{home_str}/.cargo")));
        let mut writable = writable;
        writable.push(home);
        let time_limit = std::time::Duration::from_secs(30 * 60);
        Ok(Runner {
            sandbox,
            toolbox,
            scratch: scratch.to_owned(),
            env,
            writable,
            readable: Vec::new(),
            time_limit,
            runs: Default::default(),
        })
    }

    /// Lets commands read `dir` (read-only) wherever their sandbox would hide it.
    pub fn also_readable(&mut self, dir: &Path) {
        self.readable.push(dir.to_owned());
    }

    /// The same runner for an external agent command: it keeps its model key (it calls the model
    /// itself), never the API token or other secrets.
    pub fn with_agent_env(&self, env: &[(String, String)], time_limit: std::time::Duration) -> Runner {
        Runner {
            sandbox: self.sandbox.clone(),
            toolbox: self.toolbox.clone(),
            scratch: self.scratch.join("agent"),
            env: env.iter().filter(|(k, _)| !secret_looking(k) || MODEL_KEYS.contains(&k.as_str())).cloned().collect(),
            writable: self.writable.clone(),
            readable: self.readable.clone(),
            time_limit,
            runs: Default::default(),
        }
    }

    /// How commands are isolated, for the report.
    pub fn isolation(&self) -> &'static str {
        match (&self.sandbox.isolation, self.sandbox.nested) {
            (Some(_), _) => "bubblewrap + Landlock",
            (None, true) => "Landlock inside the heal job's sandbox",
            (None, false) => "none (--no-sandbox)",
        }
    }

    /// Runs a failed job's commands again in `repo`, under the job's own limits: its time limit,
    /// and the memory and process limits it asked for (`SALVE_MEMORY_MB`, `SALVE_MAX_PROCESSES`),
    /// so a rerun never passes for having more than CI gave.
    pub fn rerun(&self, job: &JobCommands, repo: &Path) -> Result<Ran, String> {
        let limits = self.sandbox.with_job_limits(job.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let sandbox = Sandbox { network: true, ..limits };
        // In the job's image where Podman can run it: a fix must pass where CI runs it.
        if self.sandbox.nested || self.sandbox.podman.is_none() {
            return self.run_in(&JobCommands { containers: Vec::new(), ..job.clone() }, repo, sandbox);
        }
        self.run_in(job, repo, sandbox)
    }

    /// Runs `commands` in `repo` (one bash session, stop at the first failure).
    pub fn run(
        &self,
        name: &str,
        repo: &Path,
        commands: &[String],
        env: &[(String, String)],
        network: bool,
    ) -> Result<Ran, String> {
        let job = JobCommands {
            name: name.to_owned(),
            commands: commands.to_vec(),
            env: env.to_vec(),
            time_limit: self.time_limit,
            containers: Vec::new(),
        };
        self.run_in(&job, repo, Sandbox { network, ..self.sandbox.clone() })
    }

    fn run_in(&self, job: &JobCommands, repo: &Path, sandbox: Sandbox) -> Result<Ran, String> {
        let JobCommands { name, commands, env, time_limit, containers } = job;
        let n = self.runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = self.scratch.join(format!("run-{n}"));
        let mut all = vec![format!("cd {}", shell_quote(&repo.to_string_lossy()))];
        all.extend(commands.iter().cloned());
        let mut vars = self.env.clone();
        if !containers.is_empty() {
            // The image's own PATH (with the toolbox) and home, not this machine's.
            vars.retain(|(k, _)| !matches!(k.as_str(), "PATH" | "HOME" | "CARGO_HOME" | "RUSTUP_HOME"));
        }
        vars.extend(env.iter().cloned());
        let mut writable = self.writable.clone();
        writable.push(repo.to_owned());
        let spec = JobSpec {
            id: format!("heal-{}-{n}", std::process::id()),
            commands: all,
            epilogue: Epilogue::default(),
            env: vars,
            files: Vec::new(),
            secret_values: Vec::new(),
            time_limit: Some(*time_limit),
            dir: dir.clone(),
            toolbox: Some(self.toolbox.clone()),
            writable,
            readable: self.readable.clone(),
            sandbox,
            containers: containers.clone(),
            pull_credentials: Vec::new(),
        };
        let outcome = salve_runner::run_job(&spec, &JobControl::new(), &NoObserver)
            .map_err(|e| format!("cannot run {name}: {e}"))?;
        let log = std::fs::read(dir.join("log")).unwrap_or_default();
        let text = String::from_utf8_lossy(&log);
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        Ok(Ran {
            passed: outcome.result == JobResult::Passed,
            exit_code: outcome.failed_command().and_then(|c| c.exit_code),
            summary: outcome.summary,
            tail,
            duration_ms: outcome.finished_ms.saturating_sub(outcome.started_ms),
        })
    }
}

/// The failed jobs' commands from the pipeline file in `repo`, by job name: prologue and
/// job commands without `checkout` (the repository is checked out already), with the job's
/// variables (matrix values included). Secrets are not there: a command that needs one fails
/// here as it would without it.
pub fn failed_jobs(repo: &Path, file: &str, names: &[String]) -> Result<Vec<JobCommands>, String> {
    let tree = salve_git::files::WorkTree::new(repo);
    // The file's path may come from a CI's answer: only a file of the repository is read.
    let bytes = salve_pipeline::FileSource::read(&tree, file).map_err(|e| format!("cannot read {file}: {e}"))?;
    let analysis = salve_pipeline::analyze(file, &bytes, &tree, &Default::default(), salve_pipeline::Mode::Compile);
    let errors = analysis.has_errors();
    let plan = analysis.plan.filter(|_| !errors).ok_or_else(|| format!("{file} does not compile"))?;
    let mut out = Vec::new();
    for name in names {
        let (block, job) = plan
            .blocks
            .iter()
            .flat_map(|b| b.jobs.iter().map(move |j| (b, j)))
            .find(|(_, j)| &j.name == name)
            .ok_or_else(|| format!("{file} has no job named '{name}' any more"))?;
        out.push(JobCommands {
            name: name.clone(),
            commands: job.commands.iter().filter(|c| !is_checkout(c)).cloned().collect(),
            env: job.env_vars.iter().map(|v| (v.name.clone(), v.value.clone())).collect(),
            time_limit: std::time::Duration::from_secs(job.execution_time_limit_minutes.max(1) * 60),
            containers: block
                .agent
                .containers
                .iter()
                .map(|c| salve_runner::container::Container {
                    name: c.name.clone(),
                    image: c.image.clone(),
                    command: c.command.clone(),
                    entrypoint: c.entrypoint.clone(),
                    user: c.user.clone(),
                    env: c.env_vars.iter().map(|v| (v.name.clone(), v.value.clone())).collect(),
                })
                .collect(),
        });
    }
    Ok(out)
}

fn is_checkout(command: &str) -> bool {
    command.split_whitespace().next() == Some("checkout")
}

pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}
