//! The pipeline as Salve understands it after decoding: typed, with defaults still absent (the
//! compiler applies them) and positions kept where later checks need them.

use crate::diag::{Pos, YPath};

#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    pub version: String,
    pub name: Option<String>,
    pub agent: Agent,
    pub blocks: Vec<Block>,
    pub after_pipeline: Option<Task>,
    pub promotions: Vec<Promotion>,
    pub execution_time_limit: Option<TimeLimit>,
    pub global_job_config: GlobalJobConfig,
    pub fail_fast: Option<FailFast>,
    pub auto_cancel: Option<AutoCancel>,
    /// Queue rules in order; a single map is a one-entry list.
    pub queue: Vec<QueueRule>,
    pub partial_rerun: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Agent {
    pub machine_type: String,
    pub os_image: Option<String>,
    pub containers: Vec<Container>,
    pub image_pull_secrets: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    pub name: String,
    pub image: String,
    pub command: Option<String>,
    pub entrypoint: Option<String>,
    pub user: Option<String>,
    pub env_vars: Vec<EnvVar>,
    pub secrets: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SecretRef {
    pub name: String,
    pub env_var_names: Vec<String>,
    pub config_file_paths: Vec<String>,
}

/// A `when` value: a condition text or a YAML boolean.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub when: When,
    pub pos: Pos,
    /// Path of the `when` key itself (`#/blocks/1/skip/when`).
    pub path: YPath,
}

#[derive(Debug, Clone, PartialEq)]
pub enum When {
    Bool(bool),
    Expr(String),
}

impl When {
    /// The condition text; booleans become `"true"`/`"false"` as in Semaphore.
    pub fn text(&self) -> String {
        match self {
            When::Bool(b) => b.to_string(),
            When::Expr(e) => e.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeLimit {
    pub minutes: u64,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub name: Option<String>,
    pub pos: Pos,
    pub dependencies: Option<Vec<(String, Pos)>>,
    pub task: Task,
    pub skip: Option<Condition>,
    pub run: Option<Condition>,
    pub filters: Vec<Filter>,
    pub execution_time_limit: Option<TimeLimit>,
    pub partial_rerun: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub label: Option<String>,
    pub label_pattern: Option<String>,
    pub execute: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Task {
    pub jobs: Vec<Job>,
    pub boosters: Vec<Booster>,
    pub agent: Option<Agent>,
    pub prologue: Vec<String>,
    pub epilogue: Epilogue,
    pub secrets: Vec<SecretRef>,
    pub env_vars: Vec<EnvVar>,
    pub fail_fast: Option<FailFast>,
    /// Path of the task in its file (`#/blocks/0/task`), for messages.
    pub path: YPath,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Epilogue {
    pub always: Vec<String>,
    pub on_pass: Vec<String>,
    pub on_fail: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub name: Option<String>,
    pub pos: Pos,
    pub path: YPath,
    pub commands: Vec<String>,
    pub priority: Vec<PriorityRule>,
    pub parallelism: Option<Parallelism>,
    pub matrix: Vec<MatrixAxis>,
    pub env_vars: Vec<EnvVar>,
    pub execution_time_limit: Option<TimeLimit>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Parallelism {
    Count(i64),
    /// A `${{ }}` template that must evaluate to an integer.
    Template(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct MatrixAxis {
    pub env_var: String,
    pub values: MatrixValues,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MatrixValues {
    List(Vec<String>),
    /// A `%{{ }}`/`${{ }}` template that must evaluate to a list of strings.
    Template(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Booster {
    pub name: Option<String>,
    pub kind: String,
    pub job_count: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PriorityRule {
    pub value: i64,
    pub when: Condition,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct GlobalJobConfig {
    pub prologue: Vec<String>,
    pub epilogue: Epilogue,
    pub secrets: Vec<SecretRef>,
    pub env_vars: Vec<EnvVar>,
    pub priority: Vec<PriorityRule>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FailFast {
    pub stop: Option<Condition>,
    pub cancel: Option<Condition>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AutoCancel {
    pub running: Option<Condition>,
    pub queued: Option<Condition>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QueueRule {
    pub name: Option<String>,
    pub scope: Option<String>,
    pub processing: Option<String>,
    pub when: Option<Condition>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Promotion {
    pub name: String,
    pub pipeline_file: String,
    pub auto_promote: Option<Condition>,
    pub auto_promote_on: Vec<AutoPromoteOn>,
    pub parameters: Vec<Parameter>,
    pub deployment_target: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AutoPromoteOn {
    pub result: String,
    pub result_reason: Option<String>,
    pub branch: Vec<String>,
    pub labels: Vec<String>,
    pub label_patterns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Parameter {
    pub name: String,
    pub description: Option<String>,
    /// Absent means required (Semaphore's gofer client default).
    pub required: bool,
    pub options: Vec<String>,
    pub default_value: Option<String>,
}
