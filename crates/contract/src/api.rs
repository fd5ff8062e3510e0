//! The REST API's requests and responses (`/api/v1`). The server answers with these types, the
//! CLI, the MCP tools and the heal's `Ci` client read them, and the OpenAPI document
//! ([`crate::openapi::document`]) is made from them. Field names are the wire names.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{AgentState, FailureClass, HealOutcome, HealState, ProjectKind, PullState, RefKind, RunResult, RunState};

/// `GET /health`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Health {
    pub status: String,
    pub version: String,
    pub organization_id: String,
}

/// Every error: a status and a message that says what to do.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Error {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ErrorDetail {
    pub status: u16,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Project {
    pub id: String,
    pub name: String,
    pub kind: ProjectKind,
    /// Where to push (hosted projects): `<server>/git/<name>.git`.
    pub git_url: Option<String>,
    /// The upstream repository an external project's mirror fetches from.
    pub repo_url: Option<String>,
    pub created_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ProjectList {
    pub projects: Vec<Project>,
}

/// `POST /projects`: hosted (no `repo_url`) or external (fetched on webhooks).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProject {
    pub name: String,
    /// An external repository (fetched on webhooks); none: Salve hosts the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct WorkflowSummary {
    pub id: String,
    /// The project's name.
    pub project: String,
    pub project_id: String,
    /// Its first pipeline (none while a push is being recorded).
    pub initial_pipeline_id: Option<String>,
    pub number: i64,
    pub ref_type: RefKind,
    /// The branch, tag or pull request number it was built for.
    pub label: String,
    /// The branch (a pull request's target branch; empty for a tag).
    pub branch: String,
    pub sha: String,
    /// `push`, `api`, a login, or a commit's author.
    pub triggered_by: String,
    pub rerun_of: Option<String>,
    pub created_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct WorkflowList {
    pub workflows: Vec<WorkflowSummary>,
}

/// A workflow with its pipelines (the initial one and those promoted from it).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Workflow {
    #[serde(flatten)]
    pub workflow: WorkflowSummary,
    pub pipelines: Vec<PipelineSummary>,
}

/// `POST /workflows`: run a branch or tag head, or a commit of it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunWorkflow {
    pub project: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// A commit of the branch or tag (default: its head).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha: Option<String>,
}

/// A parameter of a task (Semaphore's task parameters): given when the task runs, exported to
/// its jobs as a variable of that name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskParameter {
    pub name: String,
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_value: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// A regular expression the whole value must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex_pattern: Option<String>,
}

/// `POST /tasks`: a project's scheduled or on-demand workflow.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    pub project: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Default: `main`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Default: `.semaphore/semaphore.yml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline_file: Option<String>,
    /// A cron expression (minute hour day-of-month month day-of-week, UTC); none: on demand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(default)]
    pub parameters: Vec<TaskParameter>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Task {
    pub id: String,
    pub project: String,
    pub project_id: String,
    pub name: String,
    pub description: String,
    pub branch: String,
    pub pipeline_file: String,
    pub schedule: Option<String>,
    pub parameters: Vec<TaskParameter>,
    pub paused: bool,
    /// When the schedule fires next (ms since the epoch, UTC).
    pub next_run_ms: Option<i64>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TaskList {
    pub tasks: Vec<Task>,
}

/// One start of a task.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TaskTrigger {
    pub triggered_ms: i64,
    /// By the schedule, not by hand.
    pub scheduled: bool,
    pub branch: String,
    pub pipeline_file: String,
    pub workflow_id: Option<String>,
    /// The workflow's pipeline result so far (`running` while it runs).
    pub status: Option<String>,
    pub error_message: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TaskDetail {
    pub task: Task,
    pub recent_triggers: Vec<TaskTrigger>,
}

/// `POST /tasks/{id}/run`: run a task now, optionally on another branch or file, with parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunTask {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline_file: Option<String>,
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TaskRun {
    pub task_id: String,
    pub task_name: String,
    pub workflow_id: String,
    pub pipeline_id: String,
    pub branch: String,
    pub pipeline_file: String,
    pub triggered_ms: i64,
}

/// A workflow that was started.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Started {
    pub workflow_id: String,
    pub pipeline_id: String,
    pub number: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PipelineSummary {
    pub id: String,
    pub workflow_id: String,
    /// The project's name.
    pub project: String,
    pub name: String,
    /// The pipeline file, relative to the repository root.
    pub file: String,
    pub ref_type: RefKind,
    pub branch: String,
    /// The tag, for a tag's workflow.
    pub tag: Option<String>,
    pub label: String,
    pub sha: String,
    pub state: RunState,
    pub result: Option<RunResult>,
    /// Why it ended so: `test`, `malformed`, `stuck`, `user`, `timeout`, `strategy`, …
    pub result_reason: Option<String>,
    /// What a person needs to fix when the pipeline could not run (a malformed file).
    pub error: Option<String>,
    /// The pipeline this one was promoted from.
    pub promotion_of: Option<String>,
    /// `auto-promotion`, `api` or a login.
    pub promoted_by: Option<String>,
    /// Promotion parameters.
    pub params: BTreeMap<String, String>,
    pub created_ms: i64,
    pub started_ms: Option<i64>,
    pub done_ms: Option<i64>,
}

impl PipelineSummary {
    /// Done, and passed.
    pub fn passed(&self) -> bool {
        self.state == RunState::Done && self.result == Some(RunResult::Passed)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PipelineList {
    pub pipelines: Vec<PipelineSummary>,
}

/// A pipeline with its blocks and jobs.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Pipeline {
    #[serde(flatten)]
    pub pipeline: PipelineSummary,
    /// Another pipeline of the same file passed on this commit before (not a promotion): a
    /// failure now is likely flaky.
    pub passed_before: bool,
    pub blocks: Vec<Block>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Block {
    pub name: String,
    pub state: RunState,
    pub result: Option<RunResult>,
    pub result_reason: Option<String>,
    pub jobs: Vec<JobSummary>,
}

/// `POST /pipelines/{id}/promote` (SEMAPHORE.md §6.3).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Promote {
    /// The promotion's name.
    pub target: String,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// Promote even when the promotion's conditions do not hold.
    #[serde(default, rename = "override")]
    pub override_: bool,
}

/// A promoted pipeline.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Promoted {
    pub pipeline_id: String,
    pub promotion_of: String,
    pub state: RunState,
}

/// The answer to a stop: false when it had ended already.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Stopping {
    pub id: String,
    pub stopping: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct JobSummary {
    pub id: String,
    pub pipeline_id: String,
    pub block: String,
    pub name: String,
    pub state: RunState,
    pub result: Option<RunResult>,
    pub result_reason: Option<String>,
    /// The runner's one-line verdict (`exit code 1`, `killed: out of memory`, …).
    pub summary: Option<String>,
    pub started_ms: Option<i64>,
    pub done_ms: Option<i64>,
    /// The agent that ran (or runs) its last attempt; none for a job run on the server itself.
    #[serde(default)]
    pub agent: Option<String>,
    /// Its attempts on agents, in order (a second one when the first one's agent was lost).
    #[serde(default)]
    pub attempts: Vec<JobAttempt>,
}

/// A job with its command records.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Job {
    #[serde(flatten)]
    pub job: JobSummary,
    pub commands: Vec<Command>,
}

/// One command of a job, as the runner recorded it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Command {
    /// `prologue`, `commands`, `epilogue_always`, `epilogue_on_pass` or `epilogue_on_fail`.
    pub phase: String,
    pub index: i64,
    pub command: String,
    pub started_ms: i64,
    pub duration_ms: i64,
    /// None: it did not finish (the job ended first).
    pub exit_code: Option<i64>,
    /// The log lines it printed: `first_line..end_line`.
    pub first_line: i64,
    pub end_line: i64,
}

/// `GET /jobs/{id}/logs`: a window of a job's log lines.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LogWindow {
    pub job_id: String,
    pub state: RunState,
    pub from: u64,
    /// Lines the log has now.
    pub total: u64,
    pub lines: Vec<LogLine>,
    /// Where to continue; none at the end.
    pub next: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LogLine {
    pub number: u64,
    pub unix_ms: u64,
    pub text: String,
}

/// Secret names (never values).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SecretList {
    pub secrets: Vec<String>,
}

/// `POST /secrets`: create or replace a secret.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSecret {
    pub name: String,
    #[serde(default)]
    pub env_vars: Vec<SecretVariable>,
    #[serde(default)]
    pub files: Vec<SecretFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretVariable {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretFile {
    pub path: String,
    /// The content, base64.
    pub content: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SecretSaved {
    pub name: String,
}

/// What a delete removed.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Deleted {
    pub deleted: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Token {
    pub id: String,
    pub name: String,
    pub created_ms: i64,
    pub last_used_ms: Option<i64>,
    /// The project a pipeline's or project's token is limited to.
    pub project_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TokenList {
    pub tokens: Vec<Token>,
}

/// `POST /tokens`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub name: String,
    /// Limit the token to this project: it reads, records heals, pushes and opens pull
    /// requests there only, and never touches tokens or secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

/// A new token: the only time it is shown.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TokenCreated {
    pub id: String,
    pub name: String,
    pub token: String,
    pub project: Option<String>,
}

/// `GET /jobs/{id}/failure`: a failed job's report, with the job's own verdict.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Failure {
    pub job_id: String,
    pub result: Option<RunResult>,
    pub result_reason: Option<String>,
    pub summary: Option<String>,
    /// The job whose log was the baseline, when one passed before.
    pub baseline_job_id: Option<String>,
    #[serde(flatten)]
    pub report: FailureReport,
}

/// The analysis of a failed job's log (`salve_logs::report` makes it): the lines that explain it
/// (diffed against the newest passing run of the same job), its class, fingerprint, failing
/// command and failing tests.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct FailureReport {
    pub class: FailureClass,
    /// Lines (1-based) of the excerpt that show the class.
    pub class_lines: Vec<usize>,
    /// Stays the same when the same failure happens again.
    pub fingerprint: String,
    /// The first command that failed, when the log's commands are known.
    pub failing_command: Option<String>,
    /// False when no line of the log was evidence (the excerpt is then its last lines).
    pub evidence: bool,
    pub excerpt: Vec<ExcerptLine>,
    /// The excerpt's size in bytes (what the budget counts).
    pub bytes: usize,
    pub total_lines: usize,
    pub failing_tests: Vec<FailingTest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ExcerptLine {
    /// 1-based, in the log.
    pub line: usize,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FailingTest {
    pub suite: String,
    pub file: String,
    pub classname: String,
    pub name: String,
    pub message: Option<String>,
    pub body: Option<String>,
}

/// `GET /artifacts`: the entries of a folder of a job's, workflow's or project's artifacts.
/// `GET /artifacts/signed-url`: links that fetch one artifact file without a token, for a few
/// minutes (Semaphore's `artifacts_signed_url`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignedUrls {
    pub project_id: String,
    pub scope: String,
    pub scope_id: String,
    pub path: String,
    pub method: String,
    pub urls: Vec<SignedUrl>,
    /// When the links stop working (ms since the epoch).
    pub expires_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SignedUrl {
    pub url: String,
    pub method: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactList {
    pub scope: String,
    pub scope_id: String,
    pub path: String,
    pub artifacts: Vec<Artifact>,
    pub page: Page,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    pub name: String,
    pub path: String,
    pub is_directory: bool,
    pub size: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Page {
    pub returned: usize,
    /// More entries exist than were returned.
    pub truncated: bool,
}

/// `GET /jobs/{id}/test-results`: the JUnit report a job published, as JSON.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobTestResults {
    pub scope: String,
    pub job_id: String,
    pub summary: Option<Value>,
    pub report: Value,
}

/// `GET /pipelines/{id}/test-results`: every job's report.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PipelineTestResults {
    pub scope: String,
    pub pipeline_id: String,
    pub jobs: Vec<JobReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobReport {
    pub job_id: String,
    pub report: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Heal {
    pub id: String,
    pub project_id: String,
    /// The failed pipeline.
    pub pipeline_id: String,
    pub sha: String,
    /// The failed branch.
    pub branch: String,
    pub fingerprint: String,
    pub job_id: Option<String>,
    pub state: HealState,
    pub outcome: Option<HealOutcome>,
    /// The heal's report (`selfheal/report.json`).
    pub report: HealReport,
    pub created_ms: i64,
    pub finished_ms: Option<i64>,
    /// The `selfheal-*` branch it pushed.
    pub heal_branch: Option<String>,
    /// The pull request opened from that branch.
    pub pull_request: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct HealList {
    pub heals: Vec<Heal>,
}

/// `POST /heals`: claim the heal of a failed pipeline.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimHeal {
    pub pipeline_id: String,
    /// The failure's fingerprint (one heal per commit and fingerprint).
    pub fingerprint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
}

/// A claim refused (409): the heal this commit and failure have already, and why.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct HealTaken {
    #[serde(flatten)]
    pub heal: Heal,
    pub error: ErrorDetail,
}

/// `POST /heals/{id}/finish`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FinishHeal {
    pub outcome: HealOutcome,
    /// The heal's report; its `heal_branch` links the heal to CI on that branch.
    #[serde(default)]
    pub report: HealReport,
}

/// What a heal did: kept as the job artifact `selfheal/report.json` and with the heal's record.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct HealReport {
    /// The failed pipeline, commit and branch.
    pub failed_pipeline: String,
    pub sha: String,
    pub branch: String,
    pub heal_id: Option<String>,
    pub fingerprint: Option<String>,
    /// One line: what happened.
    pub summary: String,
    pub duration_ms: Option<u64>,
    /// Each tier tried, in order.
    pub tiers: Vec<HealTier>,
    /// How the heal's commands were isolated.
    pub isolation: Option<String>,
    /// Jobs that passed on a rerun of the same commit.
    pub flaky_jobs: Vec<String>,
    /// Why the guards refused the fix.
    pub refusals: Vec<HealRefusal>,
    /// The fix: its `git diff --stat`, the diff (at most 64 KiB), the tier that made it, the
    /// `selfheal-*` branch and commit it was pushed as.
    pub diff_stat: Option<String>,
    pub diff: Option<String>,
    pub tier: Option<u8>,
    pub heal_branch: Option<String>,
    pub commit: Option<String>,
    /// The model that wrote the fix (tier 2), what it cost, and how long it talked.
    pub model: Option<String>,
    pub agent: Option<String>,
    pub tokens: Option<u64>,
    pub turns: Option<u64>,
    pub cost_usd: Option<f64>,
    /// An external agent command's last lines and the command.
    pub command: Option<String>,
    pub log_tail: Option<String>,
    /// Where the agent's transcript was kept (a job artifact).
    pub transcript_artifact: Option<String>,
}

/// One tier of a heal: a rerun (0), the fixers (1), the agent (2).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct HealTier {
    pub tier: u8,
    pub name: String,
    /// `fixed`, `flaky`, `not_fixed`, `refused`, `skipped`, …
    pub result: String,
    pub detail: String,
    pub duration_ms: u64,
    /// The commands it ran.
    pub ran: Vec<HealRun>,
    pub diff_stat: Option<String>,
}

/// One run of commands in a heal (a fixer, a job rerun, the agent's command).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct HealRun {
    pub what: String,
    pub commands: Vec<String>,
    pub passed: bool,
    pub exit_code: Option<i32>,
    pub summary: String,
    pub duration_ms: u64,
}

/// A guard's refusal of a fix.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct HealRefusal {
    /// `deletes_test`, `weakens_assertion`, `rewrites_expectation`, `edits_ci`, …
    pub rule: String,
    pub file: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Pull {
    pub number: i64,
    /// The project's name.
    pub project: String,
    pub head: String,
    pub base: String,
    pub title: String,
    pub body: String,
    pub state: PullState,
    pub created_by: String,
    pub created_ms: i64,
    pub merged_sha: Option<String>,
    pub merged_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PullList {
    pub pulls: Vec<Pull>,
}

/// One pull request with CI on its head and its diff.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PullDetail {
    #[serde(flatten)]
    pub pull: Pull,
    pub checks: Checks,
    pub diff: String,
    /// The diff was cut at 512 KiB.
    pub diff_truncated: bool,
}

/// CI on a pull request's head: its newest workflow's first pipeline.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Checks {
    /// The head branch's commit now (none: the branch is gone).
    pub head_sha: Option<String>,
    /// The commit CI ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha: Option<String>,
    pub pipeline: Option<PipelineSummary>,
}

/// `POST /pulls`: open a pull request.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPull {
    pub project: String,
    pub head: String,
    pub base: String,
    pub title: String,
    #[serde(default)]
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
}

/// A self-hosted agent type (`s1-NAME`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AgentType {
    pub name: String,
    pub created_ms: i64,
    /// A disabled type registers no agent and runs no job.
    pub disabled: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AgentTypeList {
    pub agent_types: Vec<AgentType>,
}

/// `POST /agent-types`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAgentType {
    /// `s1-` and 1 to 64 letters, digits, `-` and `_`.
    pub name: String,
}

/// A new agent type with its registration token: the only time the token is shown.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AgentTypeCreated {
    pub name: String,
    pub created_ms: i64,
    /// Agents of this type register with it (`salve agent --token …`).
    pub registration_token: String,
}

/// How often an agent sends a heartbeat.
pub const AGENT_HEARTBEAT_SECONDS: u64 = 5;
/// An agent silent longer than this is lost, and its jobs with it.
pub const AGENT_LOST_AFTER_SECONDS: u64 = 30;

/// `POST /agents/register`, with the agent type's registration token as the bearer token.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterAgent {
    /// A name for people (`salve agent --name`): 1 to 100 characters.
    pub name: String,
    /// The agent's Salve version: it must be the server's.
    pub version: String,
    /// Jobs it runs at once (1 to 64).
    pub slots: u32,
}

/// A registered agent: its id, and the token its heartbeats and claims carry (shown once).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AgentRegistered {
    pub id: String,
    pub agent_type: String,
    pub token: String,
    /// How often to send a heartbeat.
    pub heartbeat_seconds: u64,
    /// Silent longer than this, the agent is lost (and its jobs with it).
    pub lost_after_seconds: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Agent {
    pub id: String,
    pub name: String,
    pub agent_type: String,
    pub version: String,
    pub slots: i64,
    pub state: AgentState,
    pub registered_ms: i64,
    pub last_seen_ms: i64,
    /// The jobs it runs now.
    #[serde(default)]
    pub jobs: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AgentList {
    pub agents: Vec<Agent>,
}

/// `POST /agents/claim`, with the agent's own token: waits up to `wait_seconds` for a job of
/// the agent's type.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimJob {
    /// How long to wait for a job (0 to 30 seconds).
    #[serde(default)]
    pub wait_seconds: u64,
}

/// What a claim got: a job, or none when the wait ended first.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Claimed {
    pub job: Option<AgentJob>,
}

/// A job an agent claimed: everything it runs, its secrets included. Sent once, to the agent
/// that claimed it; the agent keeps it in memory only.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AgentJob {
    pub job_id: String,
    /// 1, or 2 when the first attempt's agent was lost. Every call about the job carries it.
    pub attempt: u32,
    pub pipeline_id: String,
    pub project: AgentProject,
    /// The commit the job's `checkout` fetches, from `/git/NAME.git`.
    pub sha: String,
    /// Prologue commands followed by the job's own.
    pub commands: Vec<String>,
    pub epilogue_always: Vec<String>,
    pub epilogue_on_pass: Vec<String>,
    pub epilogue_on_fail: Vec<String>,
    /// The job's variables in export order (later wins), without the ones that name places on
    /// the server (the agent sets those to its own mirror and storage).
    pub env: Vec<AgentVariable>,
    /// Secret files, in place when the job starts.
    pub files: Vec<AgentFile>,
    /// Values masked in the log.
    pub secret_values: Vec<String>,
    pub time_limit_seconds: Option<u64>,
    /// The agent's claim lapses after this long without word from it (a log chunk or a
    /// heartbeat); the job is then run again elsewhere, once.
    pub lease_seconds: u64,
    /// A token that opens the project's cache and artifact storage (`/api/v1/storage/…`) and
    /// nothing else, for this attempt only; the job gets it as `SALVE_STORAGE_TOKEN`.
    pub storage_token: String,
    /// The job's containers (`agent.containers`): the first runs its commands, the others are
    /// its services. Empty: the job runs in the agent's sandbox.
    #[serde(default)]
    pub containers: Vec<AgentContainer>,
    /// What pulls of those images log in with (`image_pull_secrets`).
    #[serde(default)]
    pub pull_credentials: Vec<AgentPullCredential>,
}

/// A registry login for pulling a job's images.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AgentPullCredential {
    pub registry: String,
    pub username: String,
    pub password: String,
}

/// A container of a job an agent runs with Podman.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AgentContainer {
    pub name: String,
    pub image: String,
    pub command: Option<String>,
    pub entrypoint: Option<String>,
    pub user: Option<String>,
    /// Its variables, its secrets' included.
    pub env: Vec<AgentVariable>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AgentProject {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AgentVariable {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AgentFile {
    /// Relative to the job's home, or starting with `~/`.
    pub path: String,
    /// The content, base64.
    pub content_base64: String,
    pub mode: u32,
}

/// Which of a job's log files a chunk continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    /// The output bytes, masked.
    Log,
    /// The runner's line index (24-byte records: line, offset, unix ms).
    Index,
}

impl LogStream {
    /// Its name in a chunk's query (`stream=log`).
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Log => "log",
            LogStream::Index => "index",
        }
    }
}

/// The answer to a log chunk (`POST /agents/jobs/{id}/log?attempt=N&stream=S&offset=N`, the
/// bytes as the body): how many bytes of that stream the server holds, and whether the job is
/// to stop. A chunk starting before that count is stored from the count on (a resend after a
/// dropped connection); one starting after it is refused (a gap), so nothing is lost or doubled.
/// An empty chunk renews the agent's claim and asks for the count.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LogAck {
    pub stored: u64,
    /// Why the job must stop (`user`, `fast_failing`, `timeout`, …), when it must.
    pub stop: Option<String>,
}

/// One command of a job, as the agent's runner recorded it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AgentCommand {
    /// `main`, `always`, `on_pass` or `on_fail`.
    pub phase: String,
    pub index: u64,
    pub command: String,
    pub started_ms: u64,
    pub duration_ms: u64,
    pub exit_code: Option<i32>,
    pub first_line: u64,
    pub end_line: u64,
}

/// `POST /agents/jobs/{id}/finish`: how the attempt ended. Accepted once; the log must be
/// complete first (`log_bytes` is what the server must hold).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FinishJob {
    pub attempt: u32,
    /// `passed`, `failed` or `stopped`.
    pub result: RunResult,
    /// Why it stopped, when it did (`user`, `timeout`, …).
    pub stop_reason: Option<String>,
    /// The runner's one-line verdict.
    pub summary: String,
    pub commands: Vec<AgentCommand>,
    pub started_ms: u64,
    pub finished_ms: u64,
    pub log_lines: u64,
    pub log_bytes: u64,
}

/// The answer to a finish: the job's result as stored.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct JobFinished {
    pub job_id: String,
    pub attempt: u32,
    pub result: RunResult,
}

/// One attempt at a job: which agent ran it and how it ended (`agent_lost` when its agent went
/// silent and the job was run again).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct JobAttempt {
    pub attempt: u32,
    /// The agent's name; none while the attempt waits for an agent.
    pub agent: Option<String>,
    pub agent_id: Option<String>,
    pub queued_ms: i64,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    pub result: Option<RunResult>,
    pub result_reason: Option<String>,
}

/// What a path is in a project's storage (`GET /storage/{project}/{area}/{path}?stat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StorageKind {
    File,
    Dir,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct StorageStat {
    /// None: nothing is there.
    pub kind: Option<StorageKind>,
}

/// A folder of a project's storage (`?list`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct StorageListing {
    pub entries: Vec<StorageEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct StorageEntry {
    pub name: String,
    pub size: u64,
    pub dir: bool,
}
