//! `salve serve` and the commands that talk to a server: `token`, `project`, `workflow`,
//! `pipeline`, `job`, `promote`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use salve_contract::{RunResult, api};
use salve_server::config::{Config, FileConfig, default_database};
use serde_json::Value;

use crate::client::{Client, ServerArgs, encode};
use crate::state::data_dir;
use crate::{err, out};

#[derive(Args)]
pub struct ServeArgs {
    /// Where to listen, HOST:PORT (port 0 picks a free one) [default: 127.0.0.1:8080].
    #[arg(long, env = "SALVE_LISTEN")]
    listen: Option<String>,
    /// Salve's data folder (repositories, logs, the SQLite database, the secrets key).
    #[arg(long, env = "SALVE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// sqlite://FILE or postgres://USER:PASSWORD@HOST/DB [default: salve.db in the data folder].
    #[arg(long, env = "SALVE_DATABASE_URL")]
    database_url: Option<String>,
    /// The URL people and jobs reach this server at, when not http://LISTEN.
    #[arg(long, env = "SALVE_PUBLIC_URL")]
    public_url: Option<String>,
    /// Jobs this server runs itself at once; 0 runs none here (agents run them all)
    /// [default: the number of cores].
    #[arg(long, env = "SALVE_JOBS")]
    jobs: Option<usize>,
    /// The agent type (s1-NAME) that runs jobs of every machine type that is not an agent type
    /// [default: none, they run on this server].
    #[arg(long, env = "SALVE_AGENT_POOL")]
    agent_pool: Option<String>,
    /// Seconds an agent may be silent before its jobs are lost and run again elsewhere (2 to
    /// 3600) [default: 30].
    #[arg(long, env = "SALVE_AGENT_LOST_AFTER")]
    agent_lost_after: Option<u64>,
    /// A folder of toolchains, `<lang>/<version>/bin`, that `sem-version` finds first.
    #[arg(long, env = "SALVE_TOOLCHAINS")]
    toolchains: Option<PathBuf>,
    /// Run jobs without bubblewrap (only on a machine that runs nothing else).
    #[arg(long)]
    no_sandbox: bool,
    /// Cut jobs off from the network.
    #[arg(long)]
    no_network: bool,
    /// Each job's memory limit in MiB, 0 for none [default: three quarters of the machine's].
    #[arg(long, env = "SALVE_JOB_MEMORY_MB")]
    job_memory_mb: Option<u64>,
    /// Each job's process limit, 0 for none [default: 4096].
    #[arg(long, env = "SALVE_JOB_MAX_PROCESSES")]
    job_max_processes: Option<u64>,
    /// A salve.toml to read [default: ./salve.toml when it exists].
    #[arg(long, env = "SALVE_CONFIG")]
    config: Option<PathBuf>,
}

fn fail(message: &str) -> u8 {
    err!("error: {message}");
    1
}

pub fn serve(args: ServeArgs) -> u8 {
    let file = match &args.config {
        Some(path) => FileConfig::read(path, true),
        None => FileConfig::read(std::path::Path::new("salve.toml"), false),
    };
    let file = match file {
        Ok(f) => f,
        Err(e) => return fail(&format!("bad configuration: {e}")),
    };
    let data = args.data_dir.or(file.data_dir).unwrap_or_else(data_dir);
    // Jobs, git and the sandbox all need the data folder by an absolute path.
    let data = match std::path::absolute(&data) {
        Ok(d) => d,
        Err(e) => return fail(&format!("cannot resolve the data folder {}: {e}", data.display())),
    };
    let mut config = Config::new(data.clone());
    if let Some(l) = args.listen.or(file.listen) {
        config.listen = l;
    }
    config.database_url = args.database_url.or(file.database_url).unwrap_or_else(|| default_database(&data));
    config.public_url = args.public_url.or(file.public_url);
    if let Some(j) = args.jobs.or(file.jobs) {
        config.jobs = j;
    }
    config.agent_pool = args.agent_pool.or(file.agent_pool);
    config.toolchains_dir = args.toolchains.or(file.toolchains_dir).and_then(|d| std::path::absolute(d).ok());
    config.os_images = file.os_images.clone().unwrap_or_default();
    if let Some(pool) = &config.agent_pool
        && !salve_contract::valid_agent_type_name(pool)
    {
        return fail(&format!("--agent-pool '{pool}' is not an agent type name: use s1-NAME (s1-linux)"));
    }
    if let Some(secs) = args.agent_lost_after.or(file.agent_lost_after_seconds) {
        if !(2..=3600).contains(&secs) {
            return fail(&format!("--agent-lost-after {secs}: give 2 to 3600 seconds"));
        }
        config.agent_lost_after_seconds = secs;
    }
    config.sandbox = !args.no_sandbox && file.sandbox.unwrap_or(true);
    config.network = !args.no_network && file.network.unwrap_or(true);
    config.mcp_allowed_hosts = file.mcp_allowed_hosts.unwrap_or_default();
    config.mcp_write_tools = file.mcp_write_tools.unwrap_or(false);
    if let Some(mb) = file.max_body_mb {
        config.max_body_bytes = mb.saturating_mul(1024 * 1024);
    }
    if let Some(mb) = file.max_push_mb {
        config.max_push_bytes = mb.saturating_mul(1024 * 1024);
    }
    if let Some(mb) = args.job_memory_mb.or(file.job_memory_mb) {
        config.job_memory_bytes = (mb > 0).then(|| mb.saturating_mul(1024 * 1024));
    }
    if let Some(n) = args.job_max_processes.or(file.job_max_processes) {
        config.job_max_processes = (n > 0).then_some(n);
    }
    config.exe = std::env::current_exe().ok();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("SALVE_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    let served = rt.block_on(salve_server::serve(config, |url| out!("Salve is listening on {url}")));
    rt.shutdown_timeout(std::time::Duration::from_secs(10));
    match served {
        Ok(()) => 0,
        Err(e) => fail(&e.to_string()),
    }
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create an API token and print it (shown once). With --data-dir (or no --server) it is
    /// written straight into that data folder: the way to make the first one.
    Create {
        name: String,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long, env = "SALVE_SERVER")]
        server: Option<String>,
    },
    /// List tokens (names and ids, never the tokens).
    List(ServerArgs),
    /// Delete a token by id.
    Delete {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub fn token(command: TokenCommand) -> u8 {
    match command {
        TokenCommand::Create { name, data_dir: dir, server } => {
            if name.trim().is_empty() || name.len() > 100 {
                return fail("a token needs a name of 1 to 100 characters");
            }
            if let (Some(url), None) = (&server, &dir) {
                return with_client(&ServerArgs { server: url.clone() }, |c| {
                    let made: api::TokenCreated =
                        c.post("/api/v1/tokens", &api::NewToken { name: name.clone(), project: None })?;
                    out!("{}", made.token);
                    Ok(())
                });
            }
            let dir = dir.unwrap_or_else(data_dir);
            let url = std::env::var("SALVE_DATABASE_URL")
                .ok()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| default_database(&dir));
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => return fail(&e.to_string()),
            };
            let made = rt.block_on(async {
                let store =
                    salve_store::Store::open(&url).await.map_err(|e| format!("cannot open the database: {e}"))?;
                salve_server::auth::create(&store, &name).await.map_err(|e| e.to_string())
            });
            match made {
                Ok((_, token)) => {
                    out!("{token}");
                    0
                }
                Err(e) => fail(&e),
            }
        }
        TokenCommand::List(server) => with_client(&server, |c| {
            for t in c.get::<api::TokenList>("/api/v1/tokens")?.tokens {
                out!("{}  {}", t.id, t.name);
            }
            Ok(())
        }),
        TokenCommand::Delete { id, server } => with_client(&server, |c| {
            c.delete::<api::Deleted>(&format!("/api/v1/tokens/{}", encode(&id)))?;
            out!("deleted token {id}");
            Ok(())
        }),
    }
}

fn with_client(args: &ServerArgs, f: impl FnOnce(&Client) -> Result<(), String>) -> u8 {
    match Client::new(args).and_then(|c| f(&c)) {
        Ok(()) => 0,
        Err(e) => fail(&e),
    }
}

#[derive(Subcommand)]
pub enum ProjectCommand {
    /// Create a project and print the git URL to push to. With --repo-url, an external
    /// repository whose webhook (GitHub or GitLab, with --webhook-secret) triggers Salve.
    Create {
        name: String,
        #[arg(long)]
        repo_url: Option<String>,
        #[arg(long, env = "SALVE_WEBHOOK_SECRET", requires = "repo_url")]
        webhook_secret: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List projects.
    List(ServerArgs),
}

pub fn project(command: ProjectCommand) -> u8 {
    match command {
        ProjectCommand::Create { name, repo_url, webhook_secret, server } => with_client(&server, |c| {
            let made: api::Project = c.post(
                "/api/v1/projects",
                &api::NewProject {
                    name: name.clone(),
                    repo_url: repo_url.clone(),
                    webhook_secret: webhook_secret.clone(),
                },
            )?;
            match made.git_url {
                Some(url) => out!("{url}"),
                None => out!("{}/webhooks/{{github|gitlab}}/{}", server.server.trim_end_matches('/'), made.name),
            }
            Ok(())
        }),
        ProjectCommand::List(server) => with_client(&server, |c| {
            for p in c.get::<api::ProjectList>("/api/v1/projects")?.projects {
                let url = p.git_url.or(p.repo_url).unwrap_or_default();
                out!("{}  {}  {url}", p.name, p.kind);
            }
            Ok(())
        }),
    }
}

#[derive(Subcommand)]
pub enum WorkflowCommand {
    /// The project's workflows, newest first.
    List {
        #[arg(long)]
        project: String,
        #[arg(long)]
        branch: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Start a workflow at a branch's (or tag's) head, or at --sha.
    Run {
        #[arg(long)]
        project: String,
        #[arg(long, conflicts_with = "tag")]
        branch: Option<String>,
        #[arg(long)]
        tag: Option<String>,
        #[arg(long)]
        sha: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Run a workflow again, at the same commit.
    Rerun {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub fn workflow(command: WorkflowCommand) -> u8 {
    match command {
        WorkflowCommand::List { project, branch, json, server } => with_client(&server, |c| {
            let mut path = format!("/api/v1/workflows?project={}", encode(&project));
            if let Some(b) = &branch {
                path.push_str(&format!("&branch={}", encode(b)));
            }
            for w in c.get::<api::WorkflowList>(&path)?.workflows {
                if json {
                    out!("{}", serde_json::to_string(&w).unwrap_or_default());
                } else {
                    out!("#{}  {}  {} {}  {}", w.number, w.id, w.ref_type, w.label, w.sha.get(..7).unwrap_or(&w.sha));
                }
            }
            Ok(())
        }),
        WorkflowCommand::Run { project, branch, tag, sha, server } => with_client(&server, |c| {
            let body = api::RunWorkflow {
                project: project.clone(),
                branch: branch.clone(),
                tag: tag.clone(),
                sha: sha.clone(),
            };
            let started: api::Started = c.post("/api/v1/workflows", &body)?;
            out!("workflow {}  pipeline {}", started.workflow_id, started.pipeline_id);
            Ok(())
        }),
        WorkflowCommand::Rerun { id, server } => with_client(&server, |c| {
            let started: api::Started = c.post(&format!("/api/v1/workflows/{}/rerun", encode(&id)), &())?;
            out!("workflow {}  pipeline {}", started.workflow_id, started.pipeline_id);
            Ok(())
        }),
    }
}

#[derive(Subcommand)]
pub enum PipelineCommand {
    /// Every pipeline of a project, oldest first; --json prints one object per line.
    List {
        #[arg(long)]
        project: String,
        #[arg(long)]
        json: bool,
        #[arg(long, default_value_t = 1000)]
        limit: u32,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// A pipeline with its blocks and jobs.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Stop a running pipeline (or cancel a queued one).
    Stop {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub fn pipeline(command: PipelineCommand) -> u8 {
    match command {
        PipelineCommand::List { project, json, limit, server } => with_client(&server, |c| {
            let list: api::PipelineList =
                c.get(&format!("/api/v1/pipelines?project={}&limit={limit}", encode(&project)))?;
            for p in list.pipelines.iter().rev() {
                if json {
                    out!("{}", serde_json::to_string(p).unwrap_or_default());
                } else {
                    out!(
                        "{}  {:<8} {:<7} {:<14} {} {}  {}",
                        p.id,
                        p.state.as_str(),
                        p.result.map_or("-", RunResult::as_str),
                        p.result_reason.as_deref().unwrap_or("-"),
                        p.ref_type,
                        p.label,
                        p.file
                    );
                }
            }
            Ok(())
        }),
        PipelineCommand::Show { id, json, server } => with_client(&server, |c| {
            let shown: api::Pipeline = c.get(&format!("/api/v1/pipelines/{}", encode(&id)))?;
            if json {
                out!("{}", serde_json::to_string(&shown).unwrap_or_default());
                return Ok(());
            }
            let p = &shown.pipeline;
            out!("{} ({})  {} {} @ {}", p.name, p.file, p.ref_type, p.label, p.sha);
            out!("{} {} {}", p.state, p.result.map_or("", RunResult::as_str), p.result_reason.as_deref().unwrap_or(""));
            if let Some(e) = &p.error {
                out!("{e}");
            }
            for b in &shown.blocks {
                out!("  {}: {}", b.name, b.result.map_or(b.state.as_str(), RunResult::as_str));
                for j in &b.jobs {
                    out!("      {}: {}  {}", j.name, j.result.map_or(j.state.as_str(), RunResult::as_str), j.id);
                }
            }
            Ok(())
        }),
        PipelineCommand::Stop { id, server } => with_client(&server, |c| {
            let answer: api::Stopping = c.post(&format!("/api/v1/pipelines/{}/stop", encode(&id)), &())?;
            out!("{}", if answer.stopping { "stopping" } else { "the pipeline was done already" });
            Ok(())
        }),
    }
}

#[derive(Args)]
pub struct McpArgs {
    /// Also list the tools that start workflows (workflows_run, workflows_rerun).
    #[arg(long)]
    write_tools: bool,
    #[command(flatten)]
    server: ServerArgs,
}

/// `salve mcp`: the MCP tools on stdio, over a server's API with `SALVE_TOKEN`. Nothing but MCP
/// messages goes to stdout; errors go to stderr.
pub fn mcp(args: &McpArgs) -> u8 {
    let token = std::env::var("SALVE_TOKEN").unwrap_or_default();
    if token.trim().is_empty() {
        return fail("set SALVE_TOKEN to an API token of the server");
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    let served = rt.block_on(async {
        let api = salve_mcp::Api::remote(&args.server.server, token.trim()).await?;
        salve_mcp::serve_stdio(api, args.write_tools).await
    });
    // A pending read of stdin cannot be cancelled: do not wait for it.
    rt.shutdown_background();
    match served {
        Ok(()) => 0,
        Err(e) => fail(&e.to_string()),
    }
}

#[derive(Subcommand)]
pub enum JobCommand {
    /// A job with its commands; --json prints the API's object.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Stop one running job (`stopped/user`); the rest of its pipeline goes on.
    Stop {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub fn job(command: JobCommand) -> u8 {
    match command {
        JobCommand::Show { id, json, server } => with_client(&server, |c| {
            let shown: api::Job = c.get(&format!("/api/v1/jobs/{}", encode(&id)))?;
            if json {
                out!("{}", serde_json::to_string(&shown).unwrap_or_default());
                return Ok(());
            }
            let j = &shown.job;
            out!(
                "{} / {}  {} {} {}",
                j.block,
                j.name,
                j.state,
                j.result.map_or("", RunResult::as_str),
                j.result_reason.as_deref().unwrap_or("")
            );
            for cmd in &shown.commands {
                let exit = cmd.exit_code.map_or_else(|| "-".to_owned(), |e| e.to_string());
                out!("  [{exit:>3}] {}", cmd.command);
            }
            Ok(())
        }),
        JobCommand::Stop { id, server } => with_client(&server, |c| {
            let answer: api::Stopping = c.post(&format!("/api/v1/jobs/{}/stop", encode(&id)), &())?;
            out!("{}", if answer.stopping { "stopping" } else { "the job was done already" });
            Ok(())
        }),
    }
}

#[derive(Args)]
pub struct PromoteArgs {
    pipeline_id: String,
    /// The promotion's name in the pipeline file.
    target: String,
    /// A promotion parameter, NAME=VALUE (repeatable).
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Promote a pipeline that did not pass.
    #[arg(long = "override")]
    override_: bool,
    #[command(flatten)]
    server: ServerArgs,
}

pub fn promote(args: PromoteArgs) -> u8 {
    let mut params = BTreeMap::new();
    for p in &args.params {
        match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                params.insert(k.to_owned(), v.to_owned());
            }
            _ => return fail(&format!("--param wants NAME=VALUE, got '{p}'")),
        }
    }
    with_client(&args.server, |c| {
        let body = api::Promote { target: args.target.clone(), params: params.clone(), override_: args.override_ };
        let promoted: api::Promoted =
            c.post(&format!("/api/v1/pipelines/{}/promote", encode(&args.pipeline_id)), &body)?;
        out!("{}", promoted.pipeline_id);
        Ok(())
    })
}

/// `salve logs JOB_ID --follow`: the job's log as it is written, until the job ends.
pub fn follow(job_id: &str, server: &ServerArgs) -> u8 {
    let mut result = None;
    let code = with_client(server, |c| {
        c.events(&format!("/api/v1/jobs/{}/logs/stream", encode(job_id)), |event, _, data| match event {
            "line" => {
                out!("{data}");
                true
            }
            "done" => {
                let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
                result = v.get("result").and_then(Value::as_str).map(str::to_owned);
                false
            }
            _ => true,
        })
    });
    match (code, result.as_deref()) {
        (0, Some("passed")) => 0,
        (0, _) => 1,
        (c, _) => c,
    }
}
