//! `salve task`: a project's tasks on a server (Semaphore's scheduled and on-demand workflows):
//! create, list, show (with recent runs), run (with parameters), pause, resume, delete.

use std::collections::BTreeMap;

use clap::Subcommand;
use salve_contract::api;

use crate::client::{Client, ServerArgs, encode};
use crate::{err, out};

#[derive(Subcommand)]
pub enum TaskCommand {
    /// Create a task: PIPELINE_FILE on BRANCH, run by hand (`salve task run`) and, with
    /// --schedule, on a cron schedule in UTC.
    Create {
        /// The project's name.
        #[arg(long)]
        project: String,
        /// The task's name, unique in its project.
        name: String,
        #[arg(long, default_value = "main")]
        branch: String,
        #[arg(long = "file", default_value = ".semaphore/semaphore.yml")]
        pipeline_file: String,
        /// Five cron fields, minute hour day-of-month month day-of-week, in UTC ('0 3 * * 1-5'),
        /// or @hourly, @daily, @weekly, @monthly, @yearly.
        #[arg(long)]
        schedule: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
        /// A parameter the run exports as a variable: NAME (optional), NAME=DEFAULT, or NAME!
        /// (required). Repeat for more.
        #[arg(long = "param")]
        params: Vec<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List a project's tasks.
    List {
        #[arg(long)]
        project: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Show a task, its parameters and its recent runs.
    Show {
        id: String,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Run a task now: its branch and file (or --branch, --file), with parameters NAME=VALUE.
    Run {
        id: String,
        #[arg(long)]
        branch: Option<String>,
        #[arg(long = "file")]
        pipeline_file: Option<String>,
        #[arg(long = "param")]
        params: Vec<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Pause a task's schedule (it still runs by hand).
    Pause {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Resume a task's schedule.
    Resume {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Delete a task and its history.
    Delete {
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// `NAME`, `NAME=DEFAULT` or `NAME!` as a parameter definition.
fn definition(text: &str) -> api::TaskParameter {
    match text.split_once('=') {
        Some((name, default)) => {
            api::TaskParameter { name: name.to_owned(), default_value: Some(default.to_owned()), ..Default::default() }
        }
        None => match text.strip_suffix('!') {
            Some(name) => api::TaskParameter { name: name.to_owned(), required: true, ..Default::default() },
            None => api::TaskParameter { name: text.to_owned(), ..Default::default() },
        },
    }
}

fn values(pairs: &[String]) -> Result<BTreeMap<String, String>, String> {
    pairs
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| format!("--param {p}: give NAME=VALUE"))
        })
        .collect()
}

fn line(t: &api::Task) -> String {
    let when = match (&t.schedule, t.paused) {
        (Some(s), false) => format!("schedule '{s}' (UTC)"),
        (Some(s), true) => format!("schedule '{s}' (paused)"),
        (None, _) => "on demand".to_owned(),
    };
    format!("{}  {}  {} on {}  {when}", t.id, t.name, t.pipeline_file, t.branch)
}

pub fn run(command: TaskCommand) -> u8 {
    let server = match &command {
        TaskCommand::Create { server, .. }
        | TaskCommand::List { server, .. }
        | TaskCommand::Show { server, .. }
        | TaskCommand::Run { server, .. }
        | TaskCommand::Pause { server, .. }
        | TaskCommand::Resume { server, .. }
        | TaskCommand::Delete { server, .. } => server,
    };
    let client = match Client::new(server) {
        Ok(c) => c,
        Err(e) => {
            err!("salve task: {e}");
            return 2;
        }
    };
    let path = |id: &str, rest: &str| format!("/api/v1/tasks/{}{rest}", encode(id));
    let done: Result<(), String> = match command {
        TaskCommand::Create { project, name, branch, pipeline_file, schedule, description, params, .. } => {
            let new = api::NewTask {
                project,
                name,
                description,
                branch: Some(branch),
                pipeline_file: Some(pipeline_file),
                schedule,
                parameters: params.iter().map(|p| definition(p)).collect(),
            };
            client.post::<api::Task>("/api/v1/tasks", &new).map_err(String::from).map(|t| {
                out!("task {} created: {}", t.name, line(&t));
            })
        }
        TaskCommand::List { project, .. } => client
            .get::<api::TaskList>(&format!("/api/v1/tasks?project={}", encode(&project)))
            .map_err(String::from)
            .map(|list| {
                if list.tasks.is_empty() {
                    out!("no tasks (`salve task create --project {project} NAME` makes one)");
                }
                for t in &list.tasks {
                    out!("{}", line(t));
                }
            }),
        TaskCommand::Show { id, json, .. } => {
            client.get::<api::TaskDetail>(&path(&id, "")).map_err(String::from).map(|d| {
                if json {
                    out!("{}", serde_json::to_string_pretty(&d).unwrap_or_default());
                    return;
                }
                out!("{}", line(&d.task));
                for p in &d.task.parameters {
                    let how = match (&p.default_value, p.required) {
                        (Some(v), _) => format!("default '{v}'"),
                        (None, true) => "required".into(),
                        (None, false) => "optional".into(),
                    };
                    out!("  parameter {}: {how}", p.name);
                }
                for r in &d.recent_triggers {
                    let by = if r.scheduled { "schedule" } else { "by hand" };
                    let what = match (&r.workflow_id, &r.error_message) {
                        (Some(w), _) => format!("workflow {w} {}", r.status.as_deref().unwrap_or("")),
                        (None, Some(e)) => format!("not started: {e}"),
                        (None, None) => String::new(),
                    };
                    out!("  run {} {by}: {what}", r.triggered_ms);
                }
            })
        }
        TaskCommand::Run { id, branch, pipeline_file, params, .. } => values(&params).and_then(|parameters| {
            client
                .post::<api::TaskRun>(&path(&id, "/run"), &api::RunTask { branch, pipeline_file, parameters })
                .map_err(String::from)
                .map(|r| {
                    out!(
                        "task {} started workflow {} (pipeline {}) on {}",
                        r.task_name,
                        r.workflow_id,
                        r.pipeline_id,
                        r.branch
                    )
                })
        }),
        TaskCommand::Pause { id, .. } => {
            client.post::<api::Task>(&path(&id, "/pause"), &()).map_err(String::from).map(|t| out!("{}", line(&t)))
        }
        TaskCommand::Resume { id, .. } => {
            client.post::<api::Task>(&path(&id, "/resume"), &()).map_err(String::from).map(|t| out!("{}", line(&t)))
        }
        TaskCommand::Delete { id, .. } => client
            .delete::<api::Deleted>(&path(&id, ""))
            .map_err(String::from)
            .map(|d| out!("task {} deleted", d.deleted)),
    };
    match done {
        Ok(()) => 0,
        Err(e) => {
            err!("salve task: {e}");
            1
        }
    }
}
