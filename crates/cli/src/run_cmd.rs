//! `salve run`: runs a pipeline of the repository in the current directory, on this machine,
//! every job in the sandbox; `salve logs JOB_ID` prints a stored job log.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use salve_engine::{Event, Observer, PipelineControl, RefKind, RunResult};
use salve_git::Repo;
use salve_git::files::AtCommit;
use salve_launch::{DataDir, Launch, Settings, Site, Source};
use salve_pipeline::{Mode, analyze, diag};
use salve_runner::log::LogReader;
use salve_runner::{CommandRecord, Isolate, JobResult, Limits};
use salve_store::{PipelineRow, WorkflowRow};

use crate::state::{State, data_dir};
use crate::{err, out};

#[derive(Args)]
pub struct RunArgs {
    /// The pipeline file, relative to the repository root.
    #[arg(long, default_value = ".semaphore/semaphore.yml")]
    file: String,
    /// The branch the run is for (default: the current branch); with --pr, the target branch.
    #[arg(long)]
    branch: Option<String>,
    /// Build as a tag push of this tag name instead of a branch.
    #[arg(long, conflicts_with = "pr")]
    tag: Option<String>,
    /// Build as pull request number N (into --branch or the current branch).
    #[arg(long, value_name = "N")]
    pr: Option<u64>,
    /// A pipeline parameter, NAME=VALUE (repeatable).
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Run the work tree as it is (uncommitted and untracked files included) instead of HEAD.
    #[arg(long)]
    dirty: bool,
    /// Print one JSON event per line instead of progress for people.
    #[arg(long)]
    json: bool,
    /// Jobs run at the same time (default: the number of cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Run jobs without isolation (no bubblewrap, no Landlock): they can read and write anything you can.
    #[arg(long)]
    no_sandbox: bool,
    /// Run jobs with `agent.containers` on this machine, ignoring their images, service
    /// containers and pull secrets (the machine must have what the images would).
    #[arg(long)]
    no_containers: bool,
    /// Run jobs whose `agent.machine.os_image` is NAME in IMAGE, through Podman (repeatable).
    #[arg(long, value_name = "NAME=IMAGE")]
    os_image: Vec<String>,
    /// Cut jobs off from the network.
    #[arg(long)]
    no_network: bool,
    /// Memory limit per job, in MiB.
    #[arg(long, value_name = "MIB")]
    memory: Option<u64>,
    /// Process limit per job.
    #[arg(long, value_name = "N")]
    max_processes: Option<u64>,
}

#[derive(Args)]
pub struct LogsArgs {
    /// The job's id (printed by `salve run`).
    job_id: String,
    /// Print the output only, without the command headers.
    #[arg(long)]
    raw: bool,
    /// Stream the job's log from a server (--server, SALVE_TOKEN) as it runs; exit 0 when the
    /// job passed, 1 when it did not.
    #[arg(long)]
    follow: bool,
    #[command(flatten)]
    server: crate::client::ServerArgs,
}

fn usage_error(message: &str) -> u8 {
    err!("error: {message}");
    2
}

pub fn run(args: &RunArgs) -> u8 {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let Some(top) = Repo::new(&cwd).toplevel() else {
        return usage_error(
            "salve run works in a git repository: cd into one (or run `git init` and commit your files)",
        );
    };
    let top = top.to_string_lossy().into_owned();
    let repo = Repo::new(&top);
    let Some(head) = repo.resolve("HEAD") else {
        return usage_error(
            "the repository has no commit yet: commit your files first, or use --dirty after one commit",
        );
    };
    let branch = match args.branch.clone().or_else(|| repo.current_branch()) {
        Some(b) if Repo::valid_branch(&b) => b,
        Some(b) => return usage_error(&format!("'{b}' is not a valid branch name")),
        None => return usage_error("HEAD is detached: say which branch this run is for with --branch NAME"),
    };
    let mut params = BTreeMap::new();
    for p in &args.params {
        match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                params.insert(k.to_owned(), v.to_owned());
            }
            _ => return usage_error(&format!("--param wants NAME=VALUE, got '{p}'")),
        }
    }
    let state = match State::open() {
        Ok(s) => s,
        Err(e) => return usage_error(&e),
    };
    let settings = match settings(args, &state.data) {
        Ok(s) => s,
        Err(message) => return usage_error(&message),
    };
    let data = state.data.clone();

    let sha = if args.dirty {
        let index = data.join(format!("index-{}", uuid::Uuid::new_v4().simple()));
        let made = repo.snapshot_worktree(&index);
        let _ = std::fs::remove_file(&index);
        match made {
            Ok(sha) => sha,
            Err(e) => return usage_error(&format!("cannot snapshot the work tree: {e}")),
        }
    } else {
        head
    };
    let project = Path::new(&top).file_name().map_or("project".to_owned(), |n| n.to_string_lossy().into_owned());
    let mirror = data.join("repos").join(format!("{project}-{:x}.git", md5::compute(top.as_bytes())));
    let (ref_type, label, git_ref) = match (&args.tag, args.pr) {
        (Some(tag), _) if Repo::valid_branch(tag) => (RefKind::Tag, tag.clone(), format!("refs/tags/{tag}")),
        (Some(tag), _) => return usage_error(&format!("'{tag}' is not a valid tag name")),
        (None, Some(n)) => (RefKind::PullRequest, n.to_string(), format!("refs/pull/{n}/merge")),
        (None, None) => (RefKind::Branch, branch.clone(), format!("refs/heads/{branch}")),
    };
    let pushed = publish(&repo, &mirror, &sha, &format!("refs/heads/{branch}"))
        .and_then(|()| if ref_type == RefKind::Branch { Ok(()) } else { publish(&repo, &mirror, &sha, &git_ref) });
    if let Err(e) = pushed {
        return usage_error(&format!("cannot copy the commit to Salve's repository mirror: {e}"));
    }

    let file = args.file.trim_start_matches('/').to_owned();
    let files = AtCommit { repo: &repo, rev: sha.clone() };
    let bytes = match repo.show_file(&sha, &file) {
        Ok(b) => b,
        Err(_) => {
            return usage_error(&format!(
                "there is no {file} in {}: write one (see `salve lint --help`) or pass --file",
                if args.dirty { "the work tree" } else { "HEAD (commit it, or use --dirty)" }
            ));
        }
    };
    let analysis = analyze(&file, &bytes, &files, &params, Mode::Compile);
    let project_id = uuid::Uuid::from_bytes(md5::compute(top.as_bytes()).0).to_string();
    let (author, _) = repo.authors(&sha);
    let recorded = state.rt.block_on(async {
        let project = state.store.ensure_project(&project_id, &format!("{project}-{project_id}"), &top).await?;
        let workflow = state
            .store
            .create_workflow(&WorkflowRow {
                id: uuid::Uuid::new_v4().to_string(),
                project_id: project.id.clone(),
                ref_type: ref_type.as_str().into(),
                label: label.clone(),
                branch: if ref_type == RefKind::Tag { String::new() } else { branch.clone() },
                sha: sha.clone(),
                triggered_by: author.clone(),
                created_ms: salve_store::now_ms(),
                ..WorkflowRow::default()
            })
            .await?;
        let pipeline = PipelineRow {
            id: uuid::Uuid::new_v4().to_string(),
            workflow_id: workflow.id.clone(),
            name: analysis.plan.as_ref().map_or_else(String::new, |p| p.name.clone()),
            file: file.clone(),
            state: "running".into(),
            created_ms: salve_store::now_ms(),
            promotions_done: true,
            params: serde_json::to_string(&params).unwrap_or_default(),
            artefact_ids: serde_json::json!([uuid::Uuid::new_v4().to_string()]).to_string(),
            ..PipelineRow::default()
        };
        state.store.create_pipeline(&pipeline).await?;
        Ok::<_, salve_store::StoreError>((workflow, pipeline))
    });
    let (workflow, pipeline) = match recorded {
        Ok(w) => w,
        Err(e) => return usage_error(&format!("cannot record the run: {e}")),
    };
    let text = String::from_utf8_lossy(&bytes);
    for d in &analysis.diagnostics {
        err!("{}", diag::render(d, (d.file == file).then_some(&*text)));
    }
    let plan = match analysis.plan {
        Some(plan) if !analysis.has_errors() => plan,
        _ => {
            err!(
                "The pipeline is malformed: nothing was run. Fix the errors above (`salve lint {file}` checks again)."
            );
            if args.json {
                out!(
                    "{}",
                    serde_json::json!({"event": "pipeline_finished", "result": "failed", "result_reason": "malformed"})
                );
            }
            return 1;
        }
    };

    let printer = Printer { json: args.json, start: Instant::now(), jobs_dir: settings.data.jobs() };
    let sealer = match state.sealer() {
        Ok(sealer) => sealer,
        Err(e) => return usage_error(&e),
    };
    let launch = Launch {
        settings: &settings,
        site: &Site {
            provider: "local",
            organization_id: uuid::Uuid::from_bytes(md5::compute(b"salve-local").0).to_string(),
            organization_url: "http://localhost".into(),
            manual: true,
        },
        rt: state.rt.handle().clone(),
        store: &state.store,
        sealer: &sealer,
        project_id: &project_id,
        source: Source { name: &project, mirror: &mirror, history: &repo },
        workflow: &workflow,
        pipeline: &pipeline,
        env: salve_launch::toolchains_env(
            std::env::var_os("SALVE_TOOLCHAINS").map(std::path::PathBuf::from).as_deref(),
        ),
        secret_env: Vec::new(),
        observer: &printer,
        executor: &salve_engine::Local,
        prior: &salve_engine::Fresh,
    };
    if !args.json {
        let short = &sha[..sha.len().min(7)];
        out!(
            "Running {file} on {} {label} @ {short}{}",
            ref_type.as_str(),
            if args.dirty { " (work tree)" } else { "" }
        );
    }
    // Ctrl-C or SIGTERM stops the pipeline (result stopped, reason user): jobs run in process
    // groups of their own, so the signal reaches them only through the engine.
    let control = PipelineControl::new();
    if let Ok(mut signals) =
        signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
    {
        let control = control.clone();
        std::thread::spawn(move || {
            if signals.forever().next().is_some() {
                err!("Stopping the pipeline (the jobs are being stopped)...");
                control.stop(salve_runner::StopReason::User);
            }
        });
    }
    let launched = match launch.run(&plan, &control) {
        Ok(l) => l,
        Err(e) => return usage_error(&e.to_string()),
    };
    if let Some(e) = &launched.unrecorded {
        err!("warning: the run could not be recorded in the database: {e}");
    }
    let result = launched.run;
    if let Some(e) = &result.error {
        err!("The pipeline is malformed: {e}");
    }
    if !args.json {
        summary(&result);
    }
    u8::from(result.result != RunResult::Passed)
}

/// How `salve run` runs jobs, from its flags; the data folder is made ready (its toolbox linked
/// to this binary).
fn settings(args: &RunArgs, data: &Path) -> Result<Settings, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the salve binary: {e}"))?;
    let settings = Settings {
        data: DataDir::new(data),
        exe: Some(exe),
        isolate: if args.no_sandbox { Isolate::Off } else { Isolate::Bubblewrap },
        limits: Limits {
            network: !args.no_network,
            memory_bytes: args.memory.map(|m| m * 1024 * 1024),
            max_processes: args.max_processes,
        },
        parallel: args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from)),
        servers: Vec::new(),
        run_containers: !args.no_containers,
        os_images: args
            .os_image
            .iter()
            .map(|m| {
                m.split_once('=')
                    .filter(|(n, i)| !n.is_empty() && !i.is_empty())
                    .map(|(n, i)| (n.to_owned(), i.to_owned()))
                    .ok_or_else(|| format!("--os-image {m}: give NAME=IMAGE (ubuntu2204=localhost/ubuntu:22.04)"))
            })
            .collect::<Result<_, _>>()?,
    };
    settings.sandbox().map_err(|e| e.to_string())?;
    settings.data.prepare(settings.exe.as_deref()).map_err(|e| format!("cannot prepare Salve's data folder: {e}"))?;
    Ok(settings)
}

/// Puts the commit in Salve's bare mirror of the repository, where `checkout` clones it from.
fn publish(repo: &Repo, mirror: &Path, sha: &str, git_ref: &str) -> Result<(), String> {
    if !mirror.join("HEAD").is_file() {
        std::fs::create_dir_all(mirror).map_err(|e| e.to_string())?;
        Repo::new(mirror).init_bare(None).map_err(|e| e.to_string())?;
    }
    repo.push_local(mirror, sha, git_ref).map_err(|e| e.to_string())
}

struct Printer {
    json: bool,
    start: Instant,
    jobs_dir: PathBuf,
}

impl Observer for Printer {
    fn event(&self, event: &Event) {
        if self.json {
            out!("{}", serde_json::to_string(event).unwrap_or_default());
            return;
        }
        let t = self.start.elapsed().as_secs_f64();
        match event {
            Event::PipelineStarted { .. } => {}
            Event::BlockStarted { block } => out!("[{t:6.1}s] ▶ {block}"),
            Event::BlockFinished { block, result, result_reason } => {
                let reason = result_reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default();
                out!("[{t:6.1}s] {} {block}: {}{reason}", mark(*result == RunResult::Passed), result.as_str());
            }
            Event::JobStarted { job, .. } => out!("[{t:6.1}s]   · {job} started"),
            Event::JobFinished { job, job_id, result, summary, duration_ms, .. } => {
                let secs = *duration_ms as f64 / 1000.0;
                out!("[{t:6.1}s]   {} {job} {} in {secs:.1}s", mark(*result == JobResult::Passed), result.as_str());
                if *result != JobResult::Passed {
                    out!("            {summary}");
                    self.tail(job_id);
                    out!("            full log: salve logs {job_id}");
                }
            }
            Event::PipelineFinished { .. } => {}
        }
    }
}

impl Printer {
    /// The last lines the failing job printed.
    fn tail(&self, job_id: &str) {
        let Ok(reader) = LogReader::open(&self.jobs_dir.join(job_id)) else { return };
        // The last line is Salve's own summary, already printed above.
        let Ok(tail) = reader.tail(9) else { return };
        let mut stdout = std::io::stdout().lock();
        for line in tail.iter().take(tail.len().saturating_sub(1)) {
            let _ = writeln!(stdout, "            │ {}", String::from_utf8_lossy(line));
        }
    }
}

fn mark(ok: bool) -> &'static str {
    if ok { "✓" } else { "✗" }
}

fn summary(run: &salve_engine::PipelineRun) {
    let reason = run.result_reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default();
    let secs = run.done_ms.saturating_sub(run.created_ms) as f64 / 1000.0;
    out!("");
    out!("Pipeline {}{reason} in {secs:.1}s", run.result.as_str());
    for b in run.blocks.iter().chain(run.after_pipeline.as_ref()) {
        let reason = b.result_reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default();
        out!("  {} {}: {}{reason}", mark(b.result == RunResult::Passed), b.name, b.result.as_str());
        for j in &b.jobs {
            let reason = j.result_reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default();
            out!("      {} {}: {}{reason}  {}", mark(j.result == JobResult::Passed), j.name, j.result.as_str(), j.id);
        }
    }
}

pub fn logs(args: &LogsArgs) -> u8 {
    if args.follow {
        return crate::server_cmd::follow(&args.job_id, &args.server);
    }
    if uuid::Uuid::parse_str(&args.job_id).is_err() {
        return usage_error(&format!(
            "'{}' is not a job id (job ids look like 3f1c…-…; `salve run` prints them)",
            args.job_id
        ));
    }
    let stored = State::open().ok().and_then(|s| s.rt.block_on(s.store.job(&args.job_id)).ok().flatten());
    let dir = stored.map_or_else(|| data_dir().join("jobs").join(&args.job_id), |j| PathBuf::from(j.log_dir));
    let reader = match LogReader::open(&dir).and_then(|r| r.raw().map(|_| r)) {
        Ok(r) => r,
        Err(_) => return usage_error(&format!("no job {} in {}", args.job_id, dir.display())),
    };
    let mut stdout = std::io::stdout().lock();
    if args.raw {
        if let Ok(mut f) = reader.raw() {
            let _ = std::io::copy(&mut f, &mut stdout);
        }
        return 0;
    }
    let commands: Vec<CommandRecord> =
        std::fs::read(dir.join("commands.json")).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    let mut next = commands.iter().peekable();
    let streamed = reader.each_line(0, |number, bytes| {
        while let Some(c) = next.next_if(|c| c.first_line <= number) {
            header(&mut stdout, c);
        }
        stdout.write_all(bytes).and_then(|()| stdout.write_all(b"\n")).is_ok()
    });
    if streamed.is_err() {
        return 2;
    }
    for c in next {
        header(&mut stdout, c);
    }
    0
}

/// A command's header line in `salve logs`.
fn header(out: &mut impl std::io::Write, c: &CommandRecord) {
    let code = c.exit_code.map_or("—".to_owned(), |e| e.to_string());
    let _ = writeln!(out, "$ {}    [exit {code}, {} ms]", c.command, c.duration_ms);
}
