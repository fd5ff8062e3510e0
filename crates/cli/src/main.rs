//! `salve`: the one binary. Thin: argument parsing and output; the work is in library crates.

mod agent_cmd;
mod agent_run;
mod client;
mod demo;
mod forges;
mod heal_cmd;
mod init_cmd;
mod installation;
mod outside;
mod pipeline_cmd;
mod pr_cmd;
mod replay;
mod run_cmd;
mod secret_cmd;
mod server_ci;
mod server_cmd;
mod state;
mod task_cmd;
mod triage_cmd;
mod when_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "salve", version, about = "A self-hosted CI server whose pipelines heal themselves")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check pipeline files; exit 0 when valid, 1 when any error, 2 on usage or IO errors.
    Lint(pipeline_cmd::LintArgs),
    /// Print the compiled plan of a pipeline as JSON: blocks, expanded jobs, commands, env vars.
    Compile(pipeline_cmd::CompileArgs),
    /// The `when` condition language: evaluate, list inputs, reduce.
    When {
        #[command(subcommand)]
        command: when_cmd::WhenCommand,
    },
    /// Run a pipeline of the repository here, every job in the sandbox; exit 0 when it passed.
    Run(run_cmd::RunArgs),
    /// Print a stored job log, with each command's header; --follow streams one from a server.
    Logs(run_cmd::LogsArgs),
    /// The lines of a failed job's log that explain the failure, and its failing tests.
    Triage(triage_cmd::TriageArgs),
    /// Secrets jobs reference by name: create, list (names only), delete.
    Secret {
        #[command(subcommand)]
        command: secret_cmd::SecretCommand,
    },
    /// Run the CI server: git hosting, workflows on push, promotions, the API, live logs.
    Serve(server_cmd::ServeArgs),
    /// API tokens: create (straight into a data folder, or through a server), list, delete.
    Token {
        #[command(subcommand)]
        command: server_cmd::TokenCommand,
    },
    /// Projects on a server: create (prints the git URL to push to), list.
    Project {
        #[command(subcommand)]
        command: server_cmd::ProjectCommand,
    },
    /// Workflows on a server: list, run, rerun.
    Workflow {
        #[command(subcommand)]
        command: server_cmd::WorkflowCommand,
    },
    /// Pipelines on a server: list, show, stop.
    Pipeline {
        #[command(subcommand)]
        command: server_cmd::PipelineCommand,
    },
    /// An MCP server on stdin/stdout for a local agent, reading a Salve server with SALVE_TOKEN.
    Mcp(server_cmd::McpArgs),
    /// Jobs on a server: show, stop.
    Job {
        #[command(subcommand)]
        command: server_cmd::JobCommand,
    },
    /// Promote a done pipeline to one of its promotion targets.
    Promote(server_cmd::PromoteArgs),
    /// Set a repository up: --self-heal adds the heal promotions and pipelines.
    Init(init_cmd::InitArgs),
    /// Heal a failed pipeline (in a heal pipeline's job, after `checkout`); `heal list`: attempts.
    Heal(heal_cmd::HealArgs),
    /// Pull requests on the embedded forge: create (like `gh pr create`), list, show, merge, close.
    Pr {
        #[command(subcommand)]
        command: pr_cmd::PrCommand,
    },
    /// Show Salve's main job on a sample project (what exists today; see the README).
    Demo(demo::DemoArgs),
    /// Self-hosted agent types (s1-NAME) on a server: create (prints the registration token),
    /// list, disable.
    AgentType {
        #[command(subcommand)]
        command: agent_cmd::AgentTypeCommand,
    },
    /// A project's tasks (scheduled and on-demand workflows): create, list, show, run, pause,
    /// resume, delete.
    Task {
        #[command(subcommand)]
        command: task_cmd::TaskCommand,
    },
    /// Run a self-hosted agent (`salve agent --server URL --token REG_TOKEN --name NAME`), or
    /// list a server's agents (`salve agent list`).
    #[command(args_conflicts_with_subcommands = true)]
    Agent {
        #[command(subcommand)]
        command: Option<agent_cmd::AgentCommand>,
        #[command(flatten)]
        run: agent_run::AgentArgs,
    },
}

fn main() -> ExitCode {
    // Called as a toolbox command (a link named `checkout`, `retry`, ...) or as the sandbox's
    // jail helper: dispatch before any argument parsing.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let called_as = args.first().and_then(|a| std::path::Path::new(a).file_name()).and_then(|n| n.to_str());
    if let Some(name) = called_as.filter(|n| salve_toolbox::COMMANDS.contains(n)) {
        let code = salve_toolbox::main(name, &args[1..]);
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    if args.get(1).is_some_and(|a| a == "__jail") {
        return ExitCode::from(salve_runner::jail::main(&args[2..]));
    }
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Lint(args) => pipeline_cmd::lint(&args),
        Command::Compile(args) => pipeline_cmd::compile(&args),
        Command::When { command } => when_cmd::run(command),
        Command::Run(args) => run_cmd::run(&args),
        Command::Logs(args) => run_cmd::logs(&args),
        Command::Secret { command } => secret_cmd::run(command),
        Command::Triage(args) => triage_cmd::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Serve(args) => server_cmd::serve(args),
        Command::Token { command } => server_cmd::token(command),
        Command::Project { command } => server_cmd::project(command),
        Command::Workflow { command } => server_cmd::workflow(command),
        Command::Pipeline { command } => server_cmd::pipeline(command),
        Command::Job { command } => server_cmd::job(command),
        Command::Mcp(args) => server_cmd::mcp(&args),
        Command::Promote(args) => server_cmd::promote(args),
        Command::Heal(args) => heal_cmd::run(args),
        Command::Init(args) => init_cmd::run(&args),
        Command::Pr { command } => pr_cmd::run(command),
        Command::AgentType { command } => agent_cmd::run(command),
        Command::Task { command } => task_cmd::run(command),
        Command::Agent { command: Some(command), .. } => agent_cmd::agents(command),
        Command::Agent { command: None, run } => agent_run::run(run),
    };
    ExitCode::from(code)
}

/// Writes to stdout, ending quietly (exit 0) if the reader went away.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        if writeln!(stdout, $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

/// Writes to stderr.
#[macro_export]
macro_rules! err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}
