//! Workflows, queues, pipelines and promotions on the server. A push (or webhook, or API call)
//! creates a workflow and its first pipeline, persisted as `queuing`; the dispatcher starts
//! queued pipelines when their queue and the slots allow, each on a blocking thread running the
//! engine; when one is done its promotions are evaluated and the pipelines they start are
//! created in the same transaction that marks them done, so each fires once, also across a
//! restart. On start, pipelines a previous server left running are ended as failed (`stuck`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use salve_engine::promote::{self, AutoCancel, Fired};
use salve_engine::{Context, Engine, Event, GitContext, Observer, PipelineControl, RefType};
use salve_git::Repo;
use salve_git::files::AtCommit;
use salve_pipeline::when::change_in::{Build, ChangeIn};
use salve_pipeline::{Mode, Plan, analyze, diag};
use salve_runner::{Isolation, Sandbox, StopReason, find_bwrap};
use salve_store::secrets::Sealer;
use salve_store::{PipelineInfo, PipelineRow, ProjectRow, Store, WorkflowRow};
use tokio::runtime::Handle;
use tokio::sync::{Notify, broadcast};

use crate::config::Config;
use crate::forge::{self, RefUpdate};
use crate::record::{Recorder, StoredSecrets};

pub const DEFAULT_FILE: &str = ".semaphore/semaphore.yml";
/// The name of the token a promoted pipeline's jobs get, before the pipeline's id.
pub const PIPELINE_TOKEN: &str = "pipeline ";
const SERVER_STOPPED: &str = "the Salve server stopped while this ran; push again or rerun the workflow";

/// Counters for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    pub running_jobs: AtomicU64,
    pub running_pipelines: AtomicU64,
    pub jobs_finished: Mutex<BTreeMap<String, (u64, f64)>>,
    pub pipelines_finished: Mutex<BTreeMap<String, u64>>,
    pub promotions: AtomicU64,
}

pub struct Server {
    pub store: Store,
    pub config: Config,
    pub rt: Handle,
    pub events: broadcast::Sender<Arc<serde_json::Value>>,
    pub metrics: Metrics,
    /// Cancelled when the server shuts down: long-lived streams end then.
    pub shutdown: tokio_util::sync::CancellationToken,
    sealer: Sealer,
    wake: Notify,
    running: Mutex<HashMap<String, PipelineControl>>,
}

/// What a caller did wrong, or what went wrong inside.
#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Internal(String),
}

impl From<salve_store::StoreError> for WorkError {
    fn from(e: salve_store::StoreError) -> Self {
        match e {
            salve_store::StoreError::Conflict(m) => WorkError::Conflict(m),
            other => WorkError::Internal(other.to_string()),
        }
    }
}

type Result<T> = std::result::Result<T, WorkError>;

/// A ref to build: a branch, a tag or a pull request, at a commit.
#[derive(Debug, Clone)]
pub struct Trigger {
    pub ref_type: RefType,
    pub label: String,
    pub branch: String,
    pub sha: String,
    pub triggered_by: String,
    pub rerun_of: Option<String>,
}

impl Server {
    pub async fn new(config: Config, store: Store) -> std::result::Result<Arc<Server>, String> {
        for dir in ["repos", "jobs", "toolbox", "cache", "artifacts", "pushes"] {
            std::fs::create_dir_all(config.data_dir.join(dir))
                .map_err(|e| format!("cannot create {}: {e}", config.data_dir.join(dir).display()))?;
        }
        if let Some(exe) = &config.exe {
            install_toolbox(&config.data_dir.join("toolbox"), exe)
                .map_err(|e| format!("cannot link the toolbox into {}: {e}", config.data_dir.display()))?;
        }
        if config.sandbox {
            find_bwrap().map_err(|e| e.to_string())?;
        }
        let sealer = Sealer::open_or_create(&config.data_dir.join("secrets.key")).map_err(|e| e.to_string())?;
        let (events, _) = broadcast::channel(1024);
        Ok(Arc::new(Server {
            store,
            config,
            rt: Handle::current(),
            events,
            metrics: Metrics::default(),
            shutdown: tokio_util::sync::CancellationToken::new(),
            sealer,
            wake: Notify::new(),
            running: Mutex::new(HashMap::new()),
        }))
    }

    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// The URL people and jobs reach the server at.
    pub fn base_url(&self) -> String {
        let url = self.config.public_url.clone().unwrap_or_else(|| format!("http://{}", self.config.listen));
        url.trim_end_matches('/').to_owned()
    }

    /// Ends what a previous server left running and fires promotions it did not get to.
    pub async fn recover(self: &Arc<Self>) -> Result<()> {
        for info in self.store.pipelines_in_state("running").await? {
            let id = &info.pipeline.id;
            self.store.end_unfinished_jobs(id, "failed", "server_stopped", SERVER_STOPPED).await?;
            if self.finish(id, "failed", "stuck", Some(SERVER_STOPPED)).await? {
                tracing::warn!(pipeline = %id, "pipeline ended as failed (stuck): the server stopped while it ran");
            }
        }
        for info in self.store.unpromoted().await? {
            self.promote_auto(&info, None).await;
        }
        // Tokens of pipelines that ran when the server stopped.
        for t in self.store.tokens().await?.iter().filter(|t| t.name.starts_with(PIPELINE_TOKEN)) {
            self.store.delete_token(&t.id).await?;
        }
        Ok(())
    }

    /// Ends a pipeline that is not done yet, stores it, then announces it; false when it was
    /// done already.
    async fn finish(&self, id: &str, result: &str, reason: &str, error: Option<&str>) -> Result<bool> {
        let done = self.store.finish_pipeline(id, result, Some(reason), error).await?;
        if done {
            let event = serde_json::json!({"event": "pipeline_finished", "result": result, "result_reason": reason});
            self.announce(id, &event);
        }
        Ok(done)
    }

    fn announce(&self, pipeline_id: &str, event: &serde_json::Value) {
        let mut event = event.clone();
        if let Some(o) = event.as_object_mut() {
            o.insert("pipeline_id".into(), pipeline_id.into());
        }
        let _ = self.events.send(Arc::new(event));
    }

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
        let Ok(entries) = std::fs::read_dir(self.config.data_dir.join("pushes")) else { return };
        for e in entries.flatten() {
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
                    (Some(b), _) => (RefType::Branch, b),
                    (_, Some(t)) => (RefType::Tag, t),
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
                (RefType::Branch, b)
            } else if let Some(t) = u.name.strip_prefix("refs/tags/") {
                (RefType::Tag, t)
            } else {
                continue;
            };
            if u.deleted() {
                if ref_type == RefType::Branch {
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
                branch: if ref_type == RefType::Branch { label.to_owned() } else { String::new() },
                sha: u.new.clone(),
                triggered_by: "push".into(),
                rerun_of: None,
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
        let unbuildable = (!Repo::valid_branch(&trigger.label) && trigger.ref_type != RefType::PullRequest)
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
                file: DEFAULT_FILE.to_owned(),
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
            None => self.prepare(project, &workflow, DEFAULT_FILE, BTreeMap::new(), None, None).await,
        };
        self.store.create_pipeline(&pipeline).await?;
        self.queued(&pipeline).await;
        Ok((workflow, pipeline))
    }

    /// After a pipeline was stored: announce it, apply its auto_cancel, wake the dispatcher.
    async fn queued(self: &Arc<Self>, p: &PipelineRow) {
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

    async fn auto_cancel(&self, newer: &PipelineRow) -> Result<()> {
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

    /// On shutdown: stops every running pipeline (result stopped, reason internal) and waits
    /// up to `grace` for them to be stored as such.
    pub async fn stop_all(&self, grace: Duration) {
        let controls: Vec<PipelineControl> =
            self.running.lock().map(|r| r.values().cloned().collect()).unwrap_or_default();
        for c in &controls {
            c.stop(StopReason::Internal);
        }
        let deadline = tokio::time::Instant::now() + grace;
        while self.running.lock().is_ok_and(|r| !r.is_empty()) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn control(&self, pipeline_id: &str) -> Option<PipelineControl> {
        self.running.lock().ok()?.get(pipeline_id).cloned()
    }

    /// Cancels the queued pipelines of a deleted branch.
    async fn cancel_branch(&self, project_id: &str, branch: &str) -> Result<usize> {
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

    /// Stops a pipeline: a running one is stopped (result stopped, reason user), a queued one
    /// canceled. False when it was done already.
    pub async fn stop(&self, pipeline_id: &str) -> Result<bool> {
        let Some(p) = self.store.pipeline(pipeline_id).await? else {
            return Err(WorkError::NotFound(format!("no pipeline {pipeline_id}")));
        };
        match p.state.as_str() {
            "queuing" => self.finish(pipeline_id, "canceled", "user", None).await,
            "running" => Ok(self.control(pipeline_id).map(|c| c.stop(StopReason::User)).is_some()),
            _ => Ok(false),
        }
    }

    /// Stops one running job; the rest of its pipeline goes on. False when the job has ended.
    pub async fn stop_job(&self, job_id: &str) -> Result<bool> {
        let Some(job) = self.store.job(job_id).await? else {
            return Err(WorkError::NotFound(format!("no job {job_id}")));
        };
        Ok(job.state == "running" && self.control(&job.pipeline_id).is_some_and(|c| c.stop_job(job_id)))
    }

    /// The pipeline row for `file` of a workflow: queuing with its queue and auto_cancel, or
    /// done and failed (malformed) when the file is missing or invalid.
    async fn prepare(
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
        let compiled = tokio::task::spawn_blocking(move || compile(&repo_dir, &sha, &file_owned, &params))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        let decided = compiled.and_then(|plan| {
            let queue = promote::queue(&plan, &git, file)?;
            let cancel = promote::auto_cancel(&plan, &git)?;
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

    /// Runs the dispatcher until the process ends: starts queued pipelines in order when their
    /// queue is free (serialized queues run one pipeline at a time) and a slot is.
    pub async fn dispatch(self: Arc<Self>) {
        loop {
            if let Err(e) = self.dispatch_once().await {
                tracing::error!("dispatcher: {e}");
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), self.wake.notified()).await;
        }
    }

    async fn dispatch_once(self: &Arc<Self>) -> Result<()> {
        let running = self.store.pipelines_in_state("running").await?;
        let mut busy: HashSet<String> =
            running.iter().filter(|i| !i.pipeline.queue_parallel).map(|i| i.pipeline.queue.clone()).collect();
        let mut slots = self.config.jobs.max(1).saturating_sub(running.len());
        for info in self.store.pipelines_in_state("queuing").await? {
            if slots == 0 {
                break;
            }
            let p = &info.pipeline;
            if !p.queue_parallel && !busy.insert(p.queue.clone()) {
                continue;
            }
            if !self.store.start_pipeline(&p.id).await? {
                continue;
            }
            slots -= 1;
            let control = PipelineControl::new();
            if let Ok(mut r) = self.running.lock() {
                r.insert(p.id.clone(), control.clone());
            }
            let server = Arc::clone(self);
            tokio::spawn(async move {
                let id = info.pipeline.id.clone();
                let s = Arc::clone(&server);
                let run = tokio::task::spawn_blocking(move || s.run(&info, &control)).await;
                if let Ok(mut r) = server.running.lock() {
                    r.remove(&id);
                }
                match run {
                    Ok((Some(info), plan)) => server.promote_auto(&info, plan).await,
                    Ok((None, _)) => {}
                    Err(e) => tracing::error!(pipeline = %id, "pipeline thread failed: {e}"),
                }
                server.wake.notify_one();
            });
        }
        Ok(())
    }

    /// Runs one pipeline on this (blocking) thread; returns it as stored afterwards, and the
    /// plan it ran (its promotions are evaluated next).
    fn run(self: &Arc<Self>, info: &PipelineInfo, control: &PipelineControl) -> (Option<PipelineInfo>, Option<Plan>) {
        let p = &info.pipeline;
        self.metrics.running_pipelines.fetch_add(1, Ordering::Relaxed);
        self.announce(&p.id, &serde_json::json!({"event": "pipeline_running"}));
        let result = self.run_inner(info, control);
        self.metrics.running_pipelines.fetch_sub(1, Ordering::Relaxed);
        let plan = result.unwrap_or_else(|e| {
            tracing::error!(pipeline = %p.id, "pipeline could not run: {e}");
            let _ = self.rt.block_on(self.finish(&p.id, "failed", "stuck", Some(&e)));
            None
        });
        (self.rt.block_on(self.store.pipeline_info(&p.id)).ok().flatten(), plan)
    }

    fn run_inner(
        self: &Arc<Self>,
        info: &PipelineInfo,
        control: &PipelineControl,
    ) -> std::result::Result<Option<Plan>, String> {
        let (p, w) = (&info.pipeline, &info.workflow);
        let project = self
            .rt
            .block_on(self.store.project(&w.project_id))
            .map_err(|e| e.to_string())?
            .ok_or("the project was deleted")?;
        let repo_dir = PathBuf::from(&project.repo_url);
        let params: BTreeMap<String, String> = serde_json::from_str(&p.params).unwrap_or_default();
        let stored = self.rt.block_on(self.stored_plan(&p.id));
        let plan = match stored.map_or_else(|| compile(&repo_dir, &w.sha, &p.file, &params), Ok) {
            Ok(plan) => plan,
            Err(error) => {
                self.rt.block_on(self.finish(&p.id, "failed", "malformed", Some(&error))).map_err(|e| e.to_string())?;
                return Ok(None);
            }
        };
        let data = &self.config.data_dir;
        let jobs_dir = data.join("jobs");
        let cache_dir = data.join("cache").join(&project.id);
        let artifact_dir = data.join("artifacts").join(&project.id);
        for d in [&cache_dir, &artifact_dir] {
            std::fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
        }
        let ctx = Context {
            project_name: project.name.clone(),
            project_id: project.id.clone(),
            organization_id: organization_id(),
            organization_url: self.config.public_url.clone().unwrap_or_default(),
            workflow_id: w.id.clone(),
            workflow_number: w.number as u64,
            pipeline_id: p.id.clone(),
            artefact_ids: serde_json::from_str(&p.artefact_ids).unwrap_or_default(),
            promoted_by: p.promoted_by.clone(),
            triggered_by: w.triggered_by.clone(),
            triggered_by_manual_run: false,
            git: with_authors(git_context(&project, w), &repo_dir),
            parameters: params.into_iter().collect(),
        };
        let repo = Repo::new(&repo_dir);
        let functions = change_in(&repo, w, &p.file);
        let announcer = Announcer { server: self, pipeline_id: &p.id };
        let recorder = Recorder::new(self.rt.clone(), &self.store, &p.id, jobs_dir.clone(), &announcer);
        let secrets = StoredSecrets { rt: self.rt.clone(), store: &self.store, sealer: &self.sealer };
        // A promoted pipeline (a heal, a pull request) talks back to this server: its jobs get
        // the URL and a token that lives as long as the pipeline runs, masked in their logs.
        let mut extra_env = storage_env(&cache_dir, &artifact_dir);
        extra_env.push(("SALVE_SERVER".into(), self.base_url()));
        let token = match p.promotion_of {
            Some(_) => Some(
                self.rt
                    .block_on(crate::auth::create_for(
                        &self.store,
                        &format!("{PIPELINE_TOKEN}{}", p.id),
                        Some(&project.id),
                    ))
                    .map_err(|e| e.to_string())?,
            ),
            None => None,
        };
        let secret_env = token.iter().map(|(_, t)| ("SALVE_TOKEN".to_owned(), t.clone())).collect();
        let engine = Engine {
            jobs_dir,
            parallel: self.config.jobs.max(1),
            sandbox: self.sandbox()?,
            toolbox: self.config.exe.as_ref().map(|_| data.join("toolbox")),
            writable: vec![cache_dir.clone(), artifact_dir.clone()],
            readable: vec![repo_dir],
            extra_env,
            secret_env,
            secrets: &secrets,
            functions: &functions,
            observer: &recorder,
        };
        let run = engine.run(&plan, &ctx, control);
        if let Some((row, _)) = &token {
            let _ = self.rt.block_on(self.store.delete_token(&row.id));
        }
        if let Some(e) = recorder.error() {
            tracing::error!(pipeline = %p.id, "events could not be stored: {e}");
        }
        if let Ok(mut m) = self.metrics.pipelines_finished.lock() {
            *m.entry(run.result.as_str().to_owned()).or_default() += 1;
        }
        Ok(Some(plan))
    }

    fn sandbox(&self) -> std::result::Result<Sandbox, String> {
        let isolation = if self.config.sandbox {
            Some(Isolation {
                bwrap: find_bwrap().map_err(|e| e.to_string())?,
                hide: vec![self.config.data_dir.clone()],
            })
        } else {
            None
        };
        Ok(Sandbox {
            isolation,
            jail: self.config.exe.as_ref().map(|exe| vec![exe.clone().into_os_string(), "__jail".into()]),
            network: self.config.network,
            memory_bytes: self.config.job_memory_bytes,
            max_processes: self.config.job_max_processes,
            nested: false,
        })
    }

    /// Evaluates a done pipeline's automatic promotions and creates the pipelines they start,
    /// once.
    /// `plan` is the one the pipeline ran, when the caller has it (else it is compiled again).
    async fn promote_auto(self: &Arc<Self>, info: &PipelineInfo, plan: Option<Plan>) {
        let p = &info.pipeline;
        if p.state != "done" || p.promotions_done {
            return;
        }
        let Ok(Some(project)) = self.store.project(&info.workflow.project_id).await else { return };
        let fired = self.fired(&project, info, plan).await;
        let fired = match fired {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(pipeline = %p.id, "promotions not evaluated: {e}");
                Vec::new()
            }
        };
        let mut children = Vec::new();
        for f in &fired {
            children.push(
                self.prepare(
                    &project,
                    &info.workflow,
                    &f.pipeline_file,
                    f.params.clone(),
                    Some(p),
                    Some("auto-promotion"),
                )
                .await,
            );
        }
        match self.store.promote(&p.id, &children).await {
            Ok(true) => {
                for (f, child) in fired.iter().zip(&children) {
                    self.metrics.promotions.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(pipeline = %p.id, target = %f.name, promoted = %child.id, "promotion fired");
                    self.queued(child).await;
                }
            }
            Ok(false) => {}
            Err(e) => tracing::error!(pipeline = %p.id, "cannot record promotions: {e}"),
        }
    }

    async fn fired(
        &self,
        project: &ProjectRow,
        info: &PipelineInfo,
        plan: Option<Plan>,
    ) -> std::result::Result<Vec<Fired>, String> {
        let (p, w) = (&info.pipeline, &info.workflow);
        let repo_dir = PathBuf::from(&project.repo_url);
        let params: BTreeMap<String, String> = serde_json::from_str(&p.params).unwrap_or_default();
        let git = git_context(project, w);
        let plan = match plan {
            Some(plan) => Some(plan),
            None => self.stored_plan(&p.id).await,
        };
        let (p, w) = (p.clone(), w.clone());
        tokio::task::spawn_blocking(move || {
            let plan = match plan {
                Some(plan) => plan,
                None => compile(&repo_dir, &w.sha, &p.file, &params)?,
            };
            let repo = Repo::new(&repo_dir);
            let functions = change_in(&repo, &w, &p.file);
            promote::auto_promotions(
                &plan,
                &p.file,
                &git,
                p.result.as_deref().unwrap_or("failed"),
                p.result_reason.as_deref(),
                &functions,
            )
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// A manual promotion (§6.3) of a done pipeline; returns the new pipeline.
    pub async fn promote_manual(
        self: &Arc<Self>,
        pipeline_id: &str,
        target: &str,
        supplied: &BTreeMap<String, String>,
        override_: bool,
        by: &str,
    ) -> Result<PipelineRow> {
        let info = self
            .store
            .pipeline_info(pipeline_id)
            .await?
            .ok_or_else(|| WorkError::NotFound(format!("no pipeline {pipeline_id}")))?;
        let p = &info.pipeline;
        if p.state != "done" {
            return Err(WorkError::Conflict(format!(
                "pipeline {pipeline_id} is still {}: promote it when it is done",
                p.state
            )));
        }
        let project = self
            .store
            .project(&info.workflow.project_id)
            .await?
            .ok_or_else(|| WorkError::NotFound("the project was deleted".into()))?;
        let repo_dir = PathBuf::from(&project.repo_url);
        let params: BTreeMap<String, String> = serde_json::from_str(&p.params).unwrap_or_default();
        let (sha, file) = (info.workflow.sha.clone(), p.file.clone());
        let plan = match self.stored_plan(&p.id).await {
            Some(plan) => plan,
            None => tokio::task::spawn_blocking(move || compile(&repo_dir, &sha, &file, &params))
                .await
                .map_err(|e| WorkError::Internal(e.to_string()))?
                .map_err(|e| WorkError::Invalid(format!("the pipeline's file no longer compiles: {e}")))?,
        };
        let fired = promote::manual_promotion(&plan, &p.file, target, p.result.as_deref(), supplied, override_)
            .map_err(WorkError::Invalid)?;
        let child = self.prepare(&project, &info.workflow, &fired.pipeline_file, fired.params, Some(p), Some(by)).await;
        self.store.create_pipeline(&child).await?;
        self.queued(&child).await;
        Ok(child)
    }
}

/// Tells SSE listeners and metrics about engine events, after the recorder stored them.
struct Announcer<'a> {
    server: &'a Server,
    pipeline_id: &'a str,
}

impl Observer for Announcer<'_> {
    fn event(&self, event: &Event) {
        let m = &self.server.metrics;
        match event {
            Event::JobStarted { .. } => {
                m.running_jobs.fetch_add(1, Ordering::Relaxed);
            }
            Event::JobFinished { result, duration_ms, .. } => {
                m.running_jobs.fetch_sub(1, Ordering::Relaxed);
                if let Ok(mut f) = m.jobs_finished.lock() {
                    let e = f.entry(result.as_str().to_owned()).or_default();
                    e.0 += 1;
                    e.1 += *duration_ms as f64 / 1000.0;
                }
            }
            _ => {}
        }
        if let Ok(value) = serde_json::to_value(event) {
            self.server.announce(self.pipeline_id, &value);
        }
    }
}

impl Server {
    /// The plan stored with pipeline `id` when it was created (none for pipelines older than
    /// the store's plans, or malformed ones: those compile their file).
    pub async fn stored_plan(&self, id: &str) -> Option<Plan> {
        let json = self.store.plan(id).await.ok().flatten()?;
        serde_json::from_str(&json).ok()
    }
}

/// Reads and compiles `file` at `sha`; the error is what a person needs to fix it.
pub fn compile(
    repo_dir: &std::path::Path,
    sha: &str,
    file: &str,
    params: &BTreeMap<String, String>,
) -> std::result::Result<Plan, String> {
    let repo = Repo::new(repo_dir);
    let bytes = repo
        .show_file(sha, file)
        .map_err(|_| format!("there is no {file} at commit {sha}: add one (see `salve lint --help`) and push again"))?;
    let files = AtCommit { repo: &repo, rev: sha.to_owned() };
    let analysis = analyze(file, &bytes, &files, params, Mode::Compile);
    match analysis.plan {
        Some(plan) if !analysis.has_errors() => Ok(plan),
        _ => {
            let text = String::from_utf8_lossy(&bytes);
            let rendered: Vec<String> = analysis
                .diagnostics
                .iter()
                .filter(|d| d.severity == diag::Severity::Error)
                .map(|d| diag::render(d, (d.file == file).then_some(&*text)))
                .collect();
            Err(format!("{file} is malformed:\n{}", rendered.join("\n")))
        }
    }
}

/// `change_in` for a workflow's commit.
fn change_in<'r>(repo: &'r Repo, w: &WorkflowRow, file: &str) -> ChangeIn<'r> {
    let build = Build {
        ref_type: w.ref_type.clone(),
        branch: w.branch.clone(),
        sha: w.sha.clone(),
        pipeline_file: file.to_owned(),
        ..Build::default()
    };
    ChangeIn { build, git: repo }
}

/// The variables that tell the toolbox where a project's cache and artifacts live.
pub fn storage_env(cache_dir: &std::path::Path, artifact_dir: &std::path::Path) -> Vec<(String, String)> {
    vec![
        ("SEMAPHORE_CACHE_BACKEND".into(), "salve".into()),
        ("SALVE_CACHE_DIR".into(), cache_dir.to_string_lossy().into_owned()),
        ("SALVE_ARTIFACT_DIR".into(), artifact_dir.to_string_lossy().into_owned()),
    ]
}

/// The git side of a workflow (without its commit's author: see [`with_authors`]).
fn git_context(project: &ProjectRow, w: &WorkflowRow) -> GitContext {
    let ref_type = RefType::parse(&w.ref_type).unwrap_or(RefType::Branch);
    GitContext {
        provider: "salve".into(),
        url: format!("file://{}", project.repo_url),
        repo_name: project.name.clone(),
        repo_slug: format!("salve/{}", project.name),
        sha: w.sha.clone(),
        ref_type,
        label: w.label.clone(),
        target_branch: (ref_type == RefType::PullRequest).then(|| w.branch.clone()),
        pr_branch: (ref_type == RefType::PullRequest).then(|| format!("pull-{}", w.label)),
        pr_sha: None,
        pr_name: None,
        commit_range: String::new(),
        commit_author: String::new(),
        committer: String::new(),
    }
}

/// Fills in the commit's author and committer (one `git log`), which only jobs need.
fn with_authors(mut git: GitContext, repo_dir: &std::path::Path) -> GitContext {
    (git.commit_author, git.committer) = Repo::new(repo_dir).authors(&git.sha);
    git
}

/// This installation's one organization.
pub fn organization_id() -> String {
    uuid::Uuid::from_u128(0x5a17e000_0000_4000_8000_000000000001).to_string()
}

pub use forge::valid_name;
pub use salve_toolbox::install as install_toolbox;
