//! Where a push becomes a workflow: a push to a hosted repository (the hook's record), a
//! webhook's fetch, an API call or a rerun gives a [`Trigger`]; it becomes a workflow and its
//! first pipeline, compiled once (its plan, queue and `auto_cancel` stored with it), persisted
//! as `queuing` (or `failed/malformed` with the reason), then announced and handed to the
//! dispatcher (`schedule.rs`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use salve_contract::AGENT_TYPE_PREFIX;
use salve_engine::RefKind;
use salve_engine::promote::{self, AutoCancel};
use salve_git::Repo;
use salve_launch as launch;
use salve_pipeline::Plan;
use salve_runner::StopReason;
use salve_store::{PipelineRow, ProjectRow, WorkflowRow};

use crate::forge::{self, RefUpdate};
use crate::server::{DEFAULT_FILE, Result, Server, WorkError, git_context};

/// A ref to build: a branch, a tag or a pull request, at a commit.
#[derive(Debug, Clone)]
pub struct Trigger {
    pub ref_type: RefKind,
    pub label: String,
    pub branch: String,
    pub sha: String,
    pub triggered_by: String,
    pub rerun_of: Option<String>,
    /// The pipeline file the workflow starts with.
    pub file: String,
    /// Its parameters (a task's), exported to its jobs.
    pub params: BTreeMap<String, String>,
}

impl Server {
    /// A push's ref updates, from the file the hook wrote (named `<uuid>.<project>`).
    pub async fn push_done(self: &Arc<Self>, file: &std::path::Path) {
        let text = tokio::fs::read_to_string(file).await.unwrap_or_default();
        let project =
            file.file_name().and_then(|n| n.to_str()).and_then(|n| n.split_once('.')).map(|(_, p)| p.to_owned());
        let _ = tokio::fs::remove_file(file).await;
        let updates = forge::parse_updates(&text);
        let Some(name) = project.filter(|_| !updates.is_empty()) else { return };
        match self.store.project(&name).await {
            Ok(Some(project)) => self.pushed(&project, &updates).await,
            _ => tracing::warn!(project = %name, "a push to a project that does not exist any more was dropped"),
        }
    }

    /// Pushes a previous server took but did not start workflows for (it stopped in between).
    pub async fn pushes_left_over(self: &Arc<Self>) {
        let Ok(mut entries) = tokio::fs::read_dir(self.config.data_dir.join("pushes")).await else { return };
        while let Ok(Some(e)) = entries.next_entry().await {
            self.push_done(&e.path()).await;
        }
    }

    /// Refs of hosted projects that moved without a workflow: a push whose ref update reached
    /// the repository while the server died before it read the hook's record (or before it
    /// stored the workflow). Each gets its workflow now, as the push would have.
    pub async fn reconcile_refs(self: &Arc<Self>) {
        let Ok(projects) = self.store.projects().await else { return };
        for project in projects.into_iter().filter(|p| p.kind == "hosted") {
            let dir = PathBuf::from(&project.repo_url);
            let refs = tokio::task::spawn_blocking(move || forge::refs(&dir)).await.unwrap_or_default();
            let mut missed = Vec::new();
            for (name, sha) in refs {
                let (ref_type, label) = match (name.strip_prefix("refs/heads/"), name.strip_prefix("refs/tags/")) {
                    (Some(b), _) => (RefKind::Branch, b),
                    (_, Some(t)) => (RefKind::Tag, t),
                    _ => continue,
                };
                match self.store.has_workflow(&project.id, ref_type.as_str(), label, &sha).await {
                    Ok(false) => missed.push(forge::RefUpdate { old: "0".repeat(sha.len()), new: sha, name }),
                    Ok(true) => {}
                    Err(e) => tracing::error!(project = %project.name, "cannot reconcile refs: {e}"),
                }
            }
            if !missed.is_empty() {
                tracing::warn!(project = %project.name, refs = missed.len(), "refs moved without a workflow (a push the server did not finish); starting them now");
                self.pushed(&project, &missed).await;
            }
        }
    }

    /// The ref updates of one push to a hosted project.
    pub async fn pushed(self: &Arc<Self>, project: &ProjectRow, updates: &[RefUpdate]) {
        for u in updates {
            let (ref_type, label) = if let Some(b) = u.name.strip_prefix("refs/heads/") {
                (RefKind::Branch, b)
            } else if let Some(t) = u.name.strip_prefix("refs/tags/") {
                (RefKind::Tag, t)
            } else {
                continue;
            };
            if u.deleted() {
                if ref_type == RefKind::Branch {
                    match self.cancel_branch(&project.id, label).await {
                        Ok(n) => {
                            tracing::info!(project = %project.name, branch = label, canceled = n, "branch deleted")
                        }
                        Err(e) => {
                            tracing::error!(project = %project.name, "cannot cancel a deleted branch's pipelines: {e}")
                        }
                    }
                }
                continue;
            }
            let trigger = Trigger {
                ref_type,
                label: label.to_owned(),
                branch: if ref_type == RefKind::Branch { label.to_owned() } else { String::new() },
                sha: u.new.clone(),
                triggered_by: "push".into(),
                rerun_of: None,
                file: DEFAULT_FILE.into(),
                params: BTreeMap::new(),
            };
            match self.start_workflow(project, &trigger).await {
                Ok((w, p)) => {
                    tracing::info!(project = %project.name, workflow = %w.id, pipeline = %p.id, r#ref = %u.name, sha = %u.new, "workflow started")
                }
                Err(e) => tracing::error!(project = %project.name, r#ref = %u.name, "cannot start a workflow: {e}"),
            }
        }
    }

    /// A new workflow for `trigger` with its first pipeline, persisted and queued.
    pub async fn start_workflow(
        self: &Arc<Self>,
        project: &ProjectRow,
        trigger: &Trigger,
    ) -> Result<(WorkflowRow, PipelineRow)> {
        // git takes some names Salve cannot build with (`-x` reads as an option to every tool
        // a job runs): the push still gets a workflow, one that fails and says why.
        let unbuildable = (!Repo::valid_branch(&trigger.label) && trigger.ref_type != RefKind::PullRequest)
            .then(|| {
                format!(
                    "the {} name '{}' cannot be built: a name that starts with '-' or that git's check-ref-format refuses reads as an option to the tools a job runs; push it under another name",
                    trigger.ref_type.as_str(),
                    trigger.label
                )
            });
        if trigger.label.len() > 255 || trigger.sha.len() > 64 || !trigger.sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(WorkError::Invalid(format!("'{}' is not a ref Salve can record", trigger.label)));
        }
        let workflow = self
            .store
            .create_workflow(&WorkflowRow {
                id: uuid::Uuid::new_v4().to_string(),
                project_id: project.id.clone(),
                number: 0,
                ref_type: trigger.ref_type.as_str().into(),
                label: trigger.label.clone(),
                sha: trigger.sha.clone(),
                created_ms: salve_store::now_ms(),
                branch: trigger.branch.clone(),
                triggered_by: trigger.triggered_by.clone(),
                rerun_of: trigger.rerun_of.clone(),
            })
            .await?;
        let pipeline = match unbuildable {
            Some(error) => PipelineRow {
                id: uuid::Uuid::new_v4().to_string(),
                workflow_id: workflow.id.clone(),
                name: "Pipeline".into(),
                file: trigger.file.clone(),
                state: "done".into(),
                result: Some("failed".into()),
                result_reason: Some("malformed".into()),
                error: Some(error),
                created_ms: workflow.created_ms,
                done_ms: Some(workflow.created_ms),
                promotions_done: true,
                params: "{}".into(),
                artefact_ids: serde_json::to_string(&[uuid::Uuid::new_v4().to_string()]).unwrap_or_default(),
                ..PipelineRow::default()
            },
            None => self.prepare(project, &workflow, &trigger.file, trigger.params.clone(), None, None).await,
        };
        self.store.create_pipeline(&pipeline).await?;
        self.queued(&pipeline).await;
        Ok((workflow, pipeline))
    }

    /// The pipeline row for `file` of a workflow: queuing with its queue and auto_cancel, or
    /// done and failed (malformed) when the file is missing or invalid.
    pub(crate) async fn prepare(
        &self,
        project: &ProjectRow,
        workflow: &WorkflowRow,
        file: &str,
        params: BTreeMap<String, String>,
        parent: Option<&PipelineRow>,
        promoted_by: Option<&str>,
    ) -> PipelineRow {
        let mut chain: Vec<String> =
            parent.and_then(|p| serde_json::from_str(&p.artefact_ids).ok()).unwrap_or_default();
        chain.push(uuid::Uuid::new_v4().to_string());
        let mut row = PipelineRow {
            id: uuid::Uuid::new_v4().to_string(),
            workflow_id: workflow.id.clone(),
            file: file.to_owned(),
            state: "queuing".into(),
            promoted_by: promoted_by.map(str::to_owned),
            created_ms: salve_store::now_ms(),
            promotion_of: parent.map(|p| p.id.clone()),
            params: serde_json::to_string(&params).unwrap_or_else(|_| "{}".into()),
            artefact_ids: serde_json::to_string(&chain).unwrap_or_else(|_| "[]".into()),
            ..PipelineRow::default()
        };
        let git = git_context(project, workflow);
        let repo_dir = PathBuf::from(&project.repo_url);
        let (file_owned, sha) = (file.to_owned(), workflow.sha.clone());
        let compiled = tokio::task::spawn_blocking(move || {
            launch::compile(&Repo::new(&repo_dir), &sha, &file_owned, &params).map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        let compiled = match compiled {
            Ok(plan) => self.agent_types_exist(&plan).await.map(|()| plan),
            Err(e) => Err(e),
        };
        let decided = compiled.and_then(|plan| {
            let queue = promote::queue(&plan, &git, file).map_err(|e| e.to_string())?;
            let cancel = promote::auto_cancel(&plan, &git).map_err(|e| e.to_string())?;
            Ok((plan, queue, cancel))
        });
        match decided {
            Ok((plan, queue, cancel)) => {
                // Stored with the pipeline: running it, promoting from it and its page read it.
                row.plan = serde_json::to_string(&plan).ok();
                row.name = plan.name;
                // Project-scoped queues are per project; organization ones span projects.
                row.queue =
                    if queue.key.starts_with("project:") { format!("{}/{}", project.id, queue.key) } else { queue.key };
                row.queue_parallel = queue.parallel;
                row.auto_cancel = cancel.as_str().into();
            }
            Err(error) => {
                row.state = "done".into();
                row.result = Some("failed".into());
                row.result_reason = Some("malformed".into());
                row.error = Some(error);
                row.done_ms = Some(row.created_ms);
                row.promotions_done = true;
            }
        }
        row
    }

    /// Every self-hosted agent type (`s1-…`) the plan's jobs name is one of this server's, and
    /// enabled; else what to do about it. A pipeline that names an unknown type fails at
    /// creation, instead of waiting for agents that will never come.
    async fn agent_types_exist(&self, plan: &Plan) -> std::result::Result<(), String> {
        for machine in plan.machine_types().into_iter().filter(|m| m.starts_with(AGENT_TYPE_PREFIX)) {
            match self.store.agent_type(machine).await.map_err(|e| e.to_string())? {
                Some(t) if t.disabled_ms.is_none() => {}
                Some(_) => {
                    return Err(format!(
                        "agent type '{machine}' is disabled: its jobs run nowhere; use another machine type"
                    ));
                }
                None => {
                    return Err(format!(
                        "machine type '{machine}' is not an agent type of this Salve: create it with `salve agent-type create {machine}` and start agents of it, or use another machine type"
                    ));
                }
            }
        }
        Ok(())
    }

    /// After a pipeline was stored: announce it, apply its auto_cancel, wake the dispatcher.
    pub(crate) async fn queued(self: &Arc<Self>, p: &PipelineRow) {
        self.announce(
            &p.id,
            &serde_json::json!({"event": "pipeline_created", "state": p.state, "workflow_id": p.workflow_id}),
        );
        if p.state == "queuing"
            && p.auto_cancel != AutoCancel::None.as_str()
            && let Err(e) = self.auto_cancel(p).await
        {
            tracing::error!(pipeline = %p.id, "auto_cancel failed: {e}");
        }
        self.wake.notify_one();
    }

    pub(crate) async fn auto_cancel(&self, newer: &PipelineRow) -> Result<()> {
        for other in self.store.pipelines_in_state("queuing").await? {
            let o = &other.pipeline;
            if o.queue == newer.queue && o.id != newer.id && o.created_ms <= newer.created_ms {
                self.finish(&o.id, "canceled", "strategy", None).await?;
            }
        }
        if newer.auto_cancel == AutoCancel::Running.as_str() {
            for other in self.store.pipelines_in_state("running").await? {
                if other.pipeline.queue == newer.queue
                    && let Some(c) = self.control(&other.pipeline.id)
                {
                    c.stop(StopReason::Strategy);
                }
            }
        }
        Ok(())
    }

    /// Cancels the queued pipelines of a deleted branch.
    pub(crate) async fn cancel_branch(&self, project_id: &str, branch: &str) -> Result<usize> {
        let mut n = 0;
        for info in self.store.pipelines_in_state("queuing").await? {
            let w = &info.workflow;
            if w.project_id == project_id
                && w.branch == branch
                && w.ref_type != "tag"
                && self.finish(&info.pipeline.id, "canceled", "deleted", None).await?
            {
                n += 1;
            }
        }
        Ok(n)
    }
}
