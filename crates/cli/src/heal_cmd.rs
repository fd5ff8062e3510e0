//! `salve heal`: run inside a heal pipeline's job after `checkout`. Reads the failed pipeline
//! through the server's API, runs the heal (crates/heal), records the attempt, keeps the
//! report as a job artifact. `salve heal list` shows the attempts. In another CI (Semaphore,
//! GitHub Actions, GitLab CI) or with the failure given on the command line, the failure is
//! read there instead and the record kept on the remote (`crate::outside`).

use std::path::PathBuf;

use salve_contract::{HealState, ProjectKind, api};

use salve_logs::excerpt::Baseline;

use crate::client::{Client, ServerArgs, encode};
use crate::outside::{self, Host};
use crate::server_ci::{HttpCi, server_ci};
use crate::{err, out};

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct HealArgs {
    #[command(subcommand)]
    command: Option<HealCommand>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Subcommand)]
enum HealCommand {
    /// Run the heal's tiers over past failures, pushing nowhere: what self-healing would have
    /// done, per failure class, with tokens, cost and time.
    Replay(crate::replay::ReplayArgs),
    /// Heal attempts, newest first.
    List {
        #[arg(long)]
        project: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Where the failure is read from.
    #[arg(long = "for", value_enum, default_value = "auto")]
    host: Host,
    /// The failed pipeline, or a pipeline promoted from it (default: $SEMAPHORE_PIPELINE_ID; in
    /// GitHub Actions the run, $GITHUB_RUN_ID; in GitLab CI $CI_PIPELINE_ID).
    #[arg(long, env = "SEMAPHORE_PIPELINE_ID")]
    pipeline: Option<String>,
    /// The failed run's output (repeatable, in order): the failure given directly (`--for local`).
    #[arg(long, value_name = "FILE")]
    log: Vec<PathBuf>,
    /// A failed command, run again to verify a fix (repeatable, in order). With another CI's
    /// API, these replace the commands read from its workflow file.
    #[arg(long, value_name = "CMD")]
    command: Vec<String>,
    /// The output of a passing run of the same job (repeatable): its lines are not evidence.
    #[arg(long, value_name = "FILE")]
    baseline: Vec<PathBuf>,
    /// The failed job's name, for the report (`--for local`).
    #[arg(long, default_value = "failed job")]
    job: String,
    /// The branch that failed (`--for local`; default: the CI's variables, else the checkout's).
    #[arg(long)]
    branch: Option<String>,
    /// Where the fix is pushed, outside Salve (default: the checkout's origin).
    #[arg(long, value_name = "URL")]
    remote: Option<String>,
    /// Write the heal's report (JSON) here, outside Salve.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// The time limit of each verification run (`--for local`).
    #[arg(long, default_value_t = 60)]
    time_limit_minutes: u64,
    /// The repository, checked out at the failed commit (default: the current folder).
    #[arg(long)]
    repo: Option<PathBuf>,
    /// An external agent for tier 2; the prompt is in $PROMPT, e.g.
    /// 'codex exec --dangerously-bypass-approvals-and-sandbox "$PROMPT"'.
    #[arg(long)]
    agent_command: Option<String>,
    /// Run fixers and verification without bubblewrap where it cannot start (outside a job).
    #[arg(long)]
    no_sandbox: bool,
    #[command(flatten)]
    server: ServerArgs,
}

pub fn run(args: HealArgs) -> u8 {
    match args.command {
        Some(HealCommand::List { project, server }) => list(project.as_deref(), &server),
        Some(HealCommand::Replay(args)) => crate::replay::run(&args),
        None => heal(&args.run),
    }
}

fn list(project: Option<&str>, server: &ServerArgs) -> u8 {
    let client = match Client::new(server) {
        Ok(c) => c,
        Err(e) => {
            err!("salve heal list: {e}");
            return 2;
        }
    };
    let path = match project {
        Some(p) => format!("/api/v1/heals?project={}", encode(p)),
        None => "/api/v1/heals".to_owned(),
    };
    match client.get::<api::HealList>(&path) {
        Ok(list) => {
            if list.heals.is_empty() {
                out!("no heals yet");
            }
            for h in list.heals {
                let outcome = match (h.outcome, h.state) {
                    (Some(o), _) => o.as_str(),
                    (None, HealState::Running) => "running",
                    (None, HealState::Done) => "",
                };
                out!(
                    "{}  {:<10} {:<11} {:<24} {}  {}",
                    h.id.get(..8).unwrap_or(""),
                    outcome,
                    h.sha.get(..7).unwrap_or(""),
                    h.branch,
                    h.heal_branch.or(h.report.heal_branch).unwrap_or_default(),
                    h.report.summary,
                );
            }
            0
        }
        Err(e) => {
            err!("salve heal list: {e}");
            1
        }
    }
}

fn heal(args: &RunArgs) -> u8 {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let host = args.host.resolve(&env, !args.log.is_empty() || (args.host == Host::Auto && !args.command.is_empty()));
    let repo = match args.repo.clone().map_or_else(std::env::current_dir, Ok) {
        Ok(r) => r,
        Err(e) => {
            err!("salve heal: no current folder: {e}");
            return 2;
        }
    };
    if !repo.join(".git").exists() {
        err!("salve heal: {} is not a git repository: run `checkout` first (or pass --repo DIR)", repo.display());
        return 2;
    }
    // The heal's own folder (its runs, its protected copy of `.git`) is where the commands it
    // runs cannot write: not under /tmp, not in the repository.
    let home =
        std::env::var_os("HOME").map(PathBuf::from).filter(|h| h.is_dir() && !repo.starts_with(h.join(".salve-heal")));
    let scratch =
        home.as_ref().map_or_else(std::env::temp_dir, Clone::clone).join(format!(".salve-heal-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&scratch) {
        err!("salve heal: cannot create {}: {e}", scratch.display());
        return 2;
    }
    let code = match host {
        Host::Auto | Host::Salve => in_salve(args, repo, &scratch),
        _ => outside(args, host, repo, &scratch),
    };
    let _ = std::fs::remove_dir_all(&scratch);
    code
}

/// The heal in another CI, or of a failure given on the command line.
fn outside(args: &RunArgs, host: Host, repo: PathBuf, scratch: &std::path::Path) -> u8 {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut baseline = Baseline::default();
    for b in &args.baseline {
        let added = std::fs::File::open(b).and_then(|f| baseline.add_reader(f));
        if let Err(e) = added {
            err!("salve heal: cannot read the baseline {}: {e}", b.display());
            return 2;
        }
    }
    let pipeline = args.pipeline.as_deref().filter(|p| !p.is_empty());
    let read = match host {
        Host::Semaphore => outside::semaphore::read(&env, pipeline),
        Host::Github => outside::github::read(&env, pipeline, &repo, &baseline),
        Host::Gitlab => outside::gitlab::read(&env, pipeline, &repo, &baseline),
        _ => {
            let given = outside::local::Given {
                logs: &args.log,
                commands: &args.command,
                job: &args.job,
                branch: args.branch.as_deref(),
                time_limit: std::time::Duration::from_secs(args.time_limit_minutes.max(1) * 60),
            };
            outside::local::read(&given, &repo, scratch, &baseline, &env)
        }
    };
    let mut read = match read {
        Ok(r) => r,
        Err(e) => {
            err!("salve heal: {}: {e}", host.name());
            return 1;
        }
    };
    // The heal fixes the checkout: it must be the commit that failed (a local failure is the
    // checkout's by construction).
    if host != Host::Local {
        let head = salve_git::remote::checkout_head(&repo, &scratch.join("head")).map(|h| h.sha);
        if head.as_deref() != Some(read.failure.sha.as_str()) {
            err!(
                "salve heal: {} says commit '{}' failed, but the checkout is at {}: check that commit out first \
                 (in a workflow_run workflow: actions/checkout with ref: ${{{{ github.event.workflow_run.head_sha }}}})",
                host.name(),
                read.failure.sha.chars().take(64).collect::<String>(),
                head.as_deref().unwrap_or("no commit")
            );
            return 2;
        }
    }
    if host != Host::Local && !args.command.is_empty() {
        for j in &mut read.failure.jobs {
            let time_limit = j.rerun.as_ref().map_or(std::time::Duration::from_secs(3600), |r| r.time_limit);
            j.rerun = Some(salve_heal::verify::JobCommands {
                name: j.name.clone(),
                commands: args.command.clone(),
                time_limit,
                ..Default::default()
            });
        }
    }
    let target = match outside::target(&repo, scratch, args.remote.as_deref(), &env) {
        Ok(t) => t,
        Err(e) => {
            err!("salve heal: {e}");
            return 2;
        }
    };
    let remote = match salve_git::remote::Remote::open(
        &target.url,
        target.auth.as_deref(),
        target.secret.as_deref(),
        &scratch.join("remote"),
    ) {
        Ok(r) => r,
        Err(e) => {
            err!("salve heal: {e}");
            return 2;
        }
    };
    let report = args.report.as_ref().map(|r| std::path::absolute(r).unwrap_or_else(|_| r.clone()));
    let ci = outside::Outside {
        read,
        remote,
        forge: target.forge,
        report,
        host,
        claimed: Default::default(),
        records: Default::default(),
    };
    let say = |line: &str| out!("{line}");
    let options = salve_heal::Options {
        repo,
        scratch: scratch.to_owned(),
        env: std::env::vars().collect(),
        writable: Vec::new(),
        no_sandbox: args.no_sandbox,
        push_url: target.url,
        push_auth: target.auth,
        push_secret: target.secret,
        agent_command: args.agent_command.clone(),
        say: &say,
    };
    let outcome = salve_heal::heal(&ci, &options);
    if outcome.ok() { 0 } else { 1 }
}

/// The heal in a Salve server's heal pipeline.
fn in_salve(args: &RunArgs, repo: PathBuf, scratch: &std::path::Path) -> u8 {
    let client = match Client::new(&args.server) {
        Ok(c) => c,
        Err(e) => {
            err!("salve heal: {e}");
            return 2;
        }
    };
    let Some(pipeline) = args.pipeline.clone().filter(|p| !p.is_empty()) else {
        err!(
            "salve heal: say which pipeline failed: --pipeline ID (in a heal pipeline's job, SEMAPHORE_PIPELINE_ID says it)"
        );
        return 2;
    };
    let scratch = scratch.to_owned();
    let ci = server_ci(client, pipeline);
    let server = args.server.server.trim_end_matches('/').to_owned();
    let say = |line: &str| out!("{line}");
    // The project is known once the failure is read; the push URL needs it.
    let project = match ci.project() {
        Ok(p) => p,
        Err(e) => {
            err!("salve heal: {e}");
            return 1;
        }
    };
    let (push_url, push_auth, push_secret) = match push_target(&ci, &server, &project) {
        Ok(t) => t,
        Err(e) => {
            err!("salve heal: {e}");
            return 1;
        }
    };
    let options = salve_heal::Options {
        repo: repo.clone(),
        scratch: scratch.clone(),
        env: std::env::vars().collect(),
        // The project's cache (`cache store` in a verified job); never the heal job's home.
        writable: std::env::var_os("SALVE_CACHE_DIR").map(PathBuf::from).filter(|d| d.is_dir()).into_iter().collect(),
        no_sandbox: args.no_sandbox,
        push_url,
        push_auth,
        push_secret,
        agent_command: args.agent_command.clone(),
        say: &say,
    };
    let outcome = salve_heal::heal(&ci, &options);
    keep(&scratch, "report.json", &outcome.report);
    if let Some(t) = &outcome.transcript {
        keep(&scratch, "transcript.json", t);
    }
    if outcome.ok() { 0 } else { 1 }
}

/// Where the heal pushes: the server's repository for a hosted project (the job's token), the
/// upstream on GitHub or GitLab for an external one (GITHUB_TOKEN or GITLAB_TOKEN).
type PushTarget = (String, Option<String>, Option<String>);

fn push_target(ci: &HttpCi, server: &str, project: &str) -> Result<PushTarget, String> {
    let p: api::Project = ci.client.get(&format!("/api/v1/projects/{}", encode(project)))?;
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if p.kind != ProjectKind::External {
        let token = env("SALVE_TOKEN");
        return Ok((format!("{server}/git/{project}.git"), token.as_ref().map(|t| format!("Bearer {t}")), token));
    }
    let url = p.repo_url.unwrap_or_default();
    let forge = crate::forges::detect(&url, &env)
        .ok_or_else(|| format!("{url} is on neither GitHub nor GitLab: give the heal an agent command that pushes"))?;
    let token = forge.token(&env).ok_or_else(|| {
        format!("healing {url} pushes to {}: give the heal job GITHUB_TOKEN or GITLAB_TOKEN (a secret)", forge.name())
    })?;
    Ok((url, Some(forge.git_auth(&token)), Some(token)))
}

/// A JSON document as the job's artifact `selfheal/NAME`, when the job has artifact storage.
fn keep(scratch: &std::path::Path, name: &str, value: &impl serde::Serialize) {
    if !salve_toolbox::storage::Storage::configured(salve_toolbox::storage::Area::Artifacts) {
        return;
    }
    let path = scratch.join(name);
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    if std::fs::write(&path, text).is_ok() {
        let dest = format!("selfheal/{name}");
        let args: Vec<std::ffi::OsString> =
            ["push", "job", &path.to_string_lossy(), "-d", &dest, "-f"].iter().map(Into::into).collect();
        salve_toolbox::main("artifact", &args);
    }
}
