//! The variables every job gets (SEMAPHORE.md §3), in Semaphore's export order: platform →
//! git/repository → secrets → pipeline/workflow → the plan's own (parameters, global, task,
//! job, `SEMAPHORE_JOB_COUNT`, matrix).

pub use salve_contract::RefKind;
use serde::Serialize;

/// What is being built (§3.2).
#[derive(Debug, Clone, Serialize)]
pub struct GitContext {
    pub provider: String,
    /// Clone URL (`checkout` clones from it).
    pub url: String,
    pub repo_name: String,
    pub repo_slug: String,
    pub sha: String,
    pub ref_type: RefKind,
    /// Branch name; for a tag the tag name; for a pull request its number.
    pub label: String,
    /// For a pull request: the target branch.
    pub target_branch: Option<String>,
    pub pr_branch: Option<String>,
    pub pr_sha: Option<String>,
    pub pr_name: Option<String>,
    pub commit_range: String,
    pub commit_author: String,
    pub committer: String,
}

impl GitContext {
    pub fn git_ref(&self) -> String {
        match self.ref_type {
            RefKind::Branch => format!("refs/heads/{}", self.label),
            RefKind::Tag => format!("refs/tags/{}", self.label),
            RefKind::PullRequest => format!("refs/pull/{}/merge", self.label),
        }
    }

    /// The `when` keywords of this build (§2.5): only the one matching the ref type is set.
    pub fn when_params(&self) -> salve_pipeline::when::Params {
        let mut p = salve_pipeline::when::Params::new();
        let set = |on: bool| serde_json::Value::String(if on { self.label.clone() } else { String::new() });
        p.insert("branch".into(), set(self.ref_type == RefKind::Branch));
        p.insert("tag".into(), set(self.ref_type == RefKind::Tag));
        p.insert("pull_request".into(), set(self.ref_type == RefKind::PullRequest));
        p
    }

    /// The label queues and filters use.
    pub fn branch_name(&self) -> &str {
        &self.label
    }
}

/// The pipeline run a job belongs to (§3.3).
#[derive(Debug, Clone, Serialize)]
pub struct Context {
    pub project_name: String,
    pub project_id: String,
    pub organization_id: String,
    pub organization_url: String,
    pub workflow_id: String,
    pub workflow_number: u64,
    pub pipeline_id: String,
    /// Artefact ids of the promotion chain, the initial pipeline first and this one last.
    pub artefact_ids: Vec<String>,
    /// `None` for the initial pipeline; the promoter's login or `auto-promotion`.
    pub promoted_by: Option<String>,
    pub triggered_by: String,
    pub triggered_by_manual_run: bool,
    pub git: GitContext,
    /// Promotion parameters, exported in every job after the pipeline's variables (§6.4).
    pub parameters: Vec<(String, String)>,
}

type Vars = Vec<(String, String)>;

fn push(v: &mut Vars, k: &str, val: impl Into<String>) {
    v.push((k.to_owned(), val.into()));
}

pub struct JobIdentity<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub block: &'a str,
    pub created_unix: u64,
    pub machine_type: &'a str,
    pub os_image: &'a str,
    pub containers: bool,
}

pub fn platform(job: &JobIdentity<'_>, ctx: &Context) -> Vars {
    let mut v = Vars::new();
    push(&mut v, "CI", "true");
    push(&mut v, "SEMAPHORE", "true");
    push(&mut v, "TERM", "xterm");
    push(&mut v, "SEMAPHORE_PROJECT_NAME", &ctx.project_name);
    push(&mut v, "SEMAPHORE_PROJECT_ID", &ctx.project_id);
    push(&mut v, "SEMAPHORE_ORGANIZATION_URL", &ctx.organization_url);
    push(&mut v, "SEMAPHORE_JOB_ID", job.id);
    push(&mut v, "SEMAPHORE_JOB_NAME", job.name);
    push(&mut v, "SEMAPHORE_JOB_CREATION_TIME", job.created_unix.to_string());
    push(&mut v, "SEMAPHORE_JOB_TYPE", "pipeline_job");
    push(&mut v, "SEMAPHORE_AGENT_MACHINE_TYPE", job.machine_type);
    push(&mut v, "SEMAPHORE_AGENT_MACHINE_OS_IMAGE", job.os_image);
    push(&mut v, "SEMAPHORE_AGENT_MACHINE_ENVIRONMENT_TYPE", if job.containers { "container" } else { "VM" });
    push(&mut v, "SEMAPHORE_TOOLBOX_METRICS_ENABLED", "false");
    v
}

pub fn git(g: &GitContext) -> Vars {
    let mut v = Vars::new();
    push(&mut v, "SEMAPHORE_GIT_PROVIDER", &g.provider);
    push(&mut v, "SEMAPHORE_GIT_URL", &g.url);
    push(&mut v, "SEMAPHORE_GIT_REPO_NAME", &g.repo_name);
    push(&mut v, "SEMAPHORE_GIT_DIR", &g.repo_name);
    push(&mut v, "SEMAPHORE_GIT_SHA", &g.sha);
    push(&mut v, "SEMAPHORE_GIT_REPO_SLUG", &g.repo_slug);
    push(&mut v, "SEMAPHORE_GIT_REF", g.git_ref());
    push(&mut v, "SEMAPHORE_GIT_COMMIT_RANGE", &g.commit_range);
    push(&mut v, "SEMAPHORE_GIT_REF_TYPE", g.ref_type.as_str());
    match g.ref_type {
        RefKind::Branch => {
            push(&mut v, "SEMAPHORE_GIT_BRANCH", &g.label);
            push(&mut v, "SEMAPHORE_GIT_WORKING_BRANCH", &g.label);
        }
        RefKind::Tag => {
            push(&mut v, "SEMAPHORE_GIT_BRANCH", g.git_ref());
            push(&mut v, "SEMAPHORE_GIT_TAG_NAME", &g.label);
        }
        RefKind::PullRequest => {
            let pr_branch = g.pr_branch.clone().unwrap_or_default();
            push(&mut v, "SEMAPHORE_GIT_BRANCH", g.target_branch.clone().unwrap_or_default());
            push(&mut v, "SEMAPHORE_GIT_WORKING_BRANCH", &pr_branch);
            push(&mut v, "SEMAPHORE_GIT_PR_BRANCH", &pr_branch);
            push(&mut v, "SEMAPHORE_GIT_PR_SLUG", &g.repo_slug);
            push(&mut v, "SEMAPHORE_GIT_PR_SHA", g.pr_sha.clone().unwrap_or_else(|| g.sha.clone()));
            push(&mut v, "SEMAPHORE_GIT_PR_NUMBER", &g.label);
            push(&mut v, "SEMAPHORE_GIT_PR_NAME", g.pr_name.clone().unwrap_or_default());
        }
    }
    push(&mut v, "SEMAPHORE_GIT_COMMIT_AUTHOR", &g.commit_author);
    push(&mut v, "SEMAPHORE_GIT_COMMITTER", &g.committer);
    v
}

pub fn pipeline(ctx: &Context, pipeline_name: &str, block: &str) -> Vars {
    let mut v = Vars::new();
    let manual = ctx.triggered_by_manual_run;
    push(&mut v, "SEMAPHORE_WORKFLOW_ID", &ctx.workflow_id);
    push(&mut v, "SEMAPHORE_WORKFLOW_NUMBER", ctx.workflow_number.to_string());
    push(&mut v, "SEMAPHORE_WORKFLOW_RERUN", "false");
    push(&mut v, "SEMAPHORE_WORKFLOW_TRIGGERED_BY_HOOK", "true");
    push(&mut v, "SEMAPHORE_WORKFLOW_TRIGGERED_BY_SCHEDULE", "false");
    push(&mut v, "SEMAPHORE_WORKFLOW_TRIGGERED_BY_API", "false");
    push(&mut v, "SEMAPHORE_WORKFLOW_TRIGGERED_BY_MANUAL_RUN", manual.to_string());
    push(&mut v, "SEMAPHORE_WORKFLOW_HOOK_SOURCE", "github");
    push(&mut v, "SEMAPHORE_WORKFLOW_TRIGGERED_BY", &ctx.triggered_by);
    push(&mut v, "SEMAPHORE_PIPELINE_ID", &ctx.pipeline_id);
    push(&mut v, "SEMAPHORE_PIPELINE_NAME", pipeline_name);
    push(&mut v, "SEMAPHORE_PIPELINE_ARTEFACT_ID", ctx.artefact_ids.last().cloned().unwrap_or_default());
    for (i, id) in ctx.artefact_ids.iter().enumerate() {
        push(&mut v, &format!("SEMAPHORE_PIPELINE_{i}_ARTEFACT_ID"), id);
    }
    push(&mut v, "SEMAPHORE_BLOCK_NAME", block);
    push(&mut v, "SEMAPHORE_PIPELINE_RERUN", "false");
    push(&mut v, "SEMAPHORE_PIPELINE_PROMOTION", ctx.promoted_by.is_some().to_string());
    push(&mut v, "SEMAPHORE_PIPELINE_PROMOTED_BY", ctx.promoted_by.clone().unwrap_or_default());
    push(&mut v, "SEMAPHORE_ORGANIZATION_ID", &ctx.organization_id);
    v.extend(ctx.parameters.iter().cloned());
    v
}
