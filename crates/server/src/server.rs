//! The server's state: its store, settings, sandbox settings, live event channel, metrics and
//! the pipelines running now; how it starts (`recover`) and stops (`stop_all`). Where the work
//! happens, by file: `intake.rs` (a push, webhook or API call becomes a workflow and queued
//! pipelines), `schedule.rs` (the dispatcher starts queued pipelines and runs them through
//! `salve_launch`), `promotions.rs` (a done pipeline's promotions fire, once).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use salve_engine::{GitContext, PipelineControl};
use salve_git::Repo;
use salve_launch as launch;
use salve_pipeline::Plan;
use salve_runner::{Isolate, Limits, StopReason};
use salve_store::secrets::Sealer;
use salve_store::{PipelineInfo, ProjectRow, Store, WorkflowRow};
use tokio::runtime::Handle;
use tokio::sync::{Notify, broadcast};

use crate::config::Config;

pub const DEFAULT_FILE: &str = ".semaphore/semaphore.yml";
/// The name of the token a promoted pipeline's jobs get, before the pipeline's id.
pub const PIPELINE_TOKEN: &str = "pipeline ";
/// Jobs of one pipeline started at once (they wait for a slot here or an agent).
const PIPELINE_JOBS: usize = 256;
/// Pipelines running at once on one server.
pub(crate) const PIPELINES_AT_ONCE: usize = 256;

/// Counters for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    pub running_jobs: AtomicU64,
    pub running_pipelines: AtomicU64,
    pub jobs_finished: Mutex<BTreeMap<String, (u64, f64)>>,
    pub pipelines_finished: Mutex<BTreeMap<String, u64>>,
    pub promotions: AtomicU64,
    /// Agent jobs claimed here, by agent type: how many, and the seconds they waited in total.
    pub agent_waits: Mutex<BTreeMap<String, (u64, f64)>>,
}

pub struct Server {
    pub store: Store,
    pub config: Config,
    pub rt: Handle,
    pub events: broadcast::Sender<Arc<serde_json::Value>>,
    pub metrics: Metrics,
    /// Cancelled when the server shuts down: long-lived streams end then.
    pub shutdown: tokio_util::sync::CancellationToken,
    pub(crate) sealer: Sealer,
    /// How this server's jobs run.
    pub(crate) launch: launch::Settings,
    pub(crate) wake: Notify,
    pub(crate) running: Mutex<HashMap<String, PipelineControl>>,
    /// Jobs this server runs itself, at most `--jobs` at once.
    pub(crate) local_slots: crate::slots::LocalSlots,
    /// Agent jobs this server's pipelines wait for.
    pub(crate) waiting: crate::slots::Waiting,
    /// Wakes agents' claims waiting for work when a job is queued.
    pub(crate) agent_work: Notify,
    /// This server process among the replicas sharing the database: the pipelines it runs are
    /// held in its name.
    pub(crate) replica: String,
}

/// Why the server could not start or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot open the database: {0}")]
    Database(#[source] salve_store::StoreError),
    #[error("cannot listen on {addr}: {source} (pick another address with --listen HOST:PORT)")]
    Listen { addr: String, source: std::io::Error },
    #[error("cannot create {}: {source}", path.display())]
    Folder { path: PathBuf, source: std::io::Error },
    /// The data folder, the toolbox or the sandbox jobs need.
    #[error(transparent)]
    Launch(#[from] launch::LaunchError),
    #[error("cannot open the secrets key: {0}")]
    Key(String),
    #[error("cannot recover the previous run's state: {0}")]
    Recover(WorkError),
    #[error("the server stopped: {0}")]
    Stopped(#[source] std::io::Error),
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

pub(crate) type Result<T> = std::result::Result<T, WorkError>;

impl Server {
    pub async fn new(config: Config, store: Store) -> std::result::Result<Arc<Server>, ServeError> {
        for dir in ["repos", "pushes"] {
            let path = config.data_dir.join(dir);
            std::fs::create_dir_all(&path).map_err(|source| ServeError::Folder { path, source })?;
        }
        let launch = launch::Settings {
            data: launch::DataDir::new(&config.data_dir),
            exe: config.exe.clone(),
            isolate: if config.sandbox { Isolate::Bubblewrap } else { Isolate::Off },
            limits: Limits {
                network: config.network,
                memory_bytes: config.job_memory_bytes,
                max_processes: config.job_max_processes,
            },
            // Jobs of a pipeline start as their blocks allow; this server's own slots
            // (`--jobs`) and the agents' bound how many run at once.
            parallel: PIPELINE_JOBS,
            run_containers: true,
            os_images: config.os_images.clone(),
            servers: vec![config.base_url()],
        };
        launch.data.prepare(config.exe.as_deref())?;
        // A machine that cannot run a job's sandbox is told now, not at the first push.
        launch.sandbox()?;
        let sealer =
            Sealer::open_or_create(&config.data_dir.join("secrets.key")).map_err(|e| ServeError::Key(e.to_string()))?;
        let (events, _) = broadcast::channel(1024);
        let config_jobs = config.jobs;
        Ok(Arc::new(Server {
            store,
            config,
            rt: Handle::current(),
            events,
            metrics: Metrics::default(),
            shutdown: tokio_util::sync::CancellationToken::new(),
            sealer,
            launch,
            wake: Notify::new(),
            running: Mutex::new(HashMap::new()),
            local_slots: crate::slots::LocalSlots::new(config_jobs),
            waiting: crate::slots::Waiting::default(),
            agent_work: Notify::new(),
            replica: uuid::Uuid::new_v4().to_string(),
        }))
    }

    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// The URL people and jobs reach the server at.
    pub fn base_url(&self) -> String {
        self.config.base_url()
    }

    /// Fires the promotions a previous server did not get to and drops the tokens of pipelines
    /// that ended. Pipelines a previous server (or a lost replica) left running are adopted by
    /// the dispatcher once their hold lapses, and run on from what the store holds.
    pub async fn recover(self: &Arc<Self>) -> Result<()> {
        for info in self.store.unpromoted().await? {
            self.promote_auto(&info, None).await;
        }
        for t in self.store.tokens().await? {
            let done = if let Some(pipeline) = t.name.strip_prefix(PIPELINE_TOKEN) {
                self.store.pipeline(pipeline).await?.is_none_or(|p| p.state == "done")
            } else if let Some(job) = t.name.strip_prefix(crate::auth::STORAGE_TOKEN) {
                let job = job.split(' ').next().unwrap_or_default();
                self.store.agent_job(job).await?.is_none_or(|j| j.state == "done")
            } else {
                false
            };
            if done {
                self.store.delete_token(&t.id).await?;
            }
        }
        Ok(())
    }

    /// Drops the storage token of one attempt of an agent job (it ended, or its agent was lost).
    /// Only that attempt's: the job's next attempt may hold one already (claimed between the
    /// lost attempt's requeue and this).
    pub(crate) async fn drop_storage_token(&self, job_id: &str, attempt: i64) {
        if let Err(e) = self.store.delete_tokens_named(&crate::auth::storage_token_name(job_id, attempt)).await {
            tracing::warn!(job = %job_id, attempt, "cannot drop the attempt's storage token: {e}");
        }
    }

    /// Drops the tokens a pipeline's jobs got (one per replica that ran it).
    pub(crate) async fn delete_pipeline_tokens(&self, pipeline_id: &str) {
        if let Err(e) = self.store.delete_tokens_named(&format!("{PIPELINE_TOKEN}{pipeline_id}")).await {
            tracing::warn!(pipeline = %pipeline_id, "cannot drop the pipeline's tokens: {e}");
        }
    }

    /// Ends a pipeline that is not done yet, stores it, then announces it; false when it was
    /// done already.
    pub(crate) async fn finish(&self, id: &str, result: &str, reason: &str, error: Option<&str>) -> Result<bool> {
        let done = self.store.finish_pipeline(id, result, Some(reason), error).await?;
        if done {
            let event = serde_json::json!({"event": "pipeline_finished", "result": result, "result_reason": reason});
            self.announce(id, &event);
        }
        Ok(done)
    }

    pub(crate) fn announce(&self, pipeline_id: &str, event: &serde_json::Value) {
        let mut event = event.clone();
        if let Some(o) = event.as_object_mut() {
            o.insert("pipeline_id".into(), pipeline_id.into());
        }
        let _ = self.events.send(Arc::new(event));
    }

    pub(crate) fn control(&self, pipeline_id: &str) -> Option<PipelineControl> {
        self.running.lock().ok()?.get(pipeline_id).cloned()
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

    /// The plan pipeline `info` runs, as stored when it was created. A pipeline older than the
    /// store's plans compiles its file once (off the async threads), and keeps the plan.
    pub async fn plan_of(&self, info: &PipelineInfo) -> std::result::Result<Plan, String> {
        let (p, w) = (&info.pipeline, &info.workflow);
        if let Some(plan) = self.store.plan(&p.id).await.ok().flatten().and_then(|j| serde_json::from_str(&j).ok()) {
            return Ok(plan);
        }
        // A malformed file gave no plan; it is not compiled again on every look.
        if p.result_reason.as_deref() == Some("malformed") {
            return Err(p.error.clone().unwrap_or_else(|| format!("{} is malformed", p.file)));
        }
        let project =
            self.store.project(&w.project_id).await.map_err(|e| e.to_string())?.ok_or("the project was deleted")?;
        let repo_dir = PathBuf::from(&project.repo_url);
        let (sha, file, params) = (w.sha.clone(), p.file.clone(), launch::params(p));
        let plan = tokio::task::spawn_blocking(move || launch::compile(&Repo::new(&repo_dir), &sha, &file, &params))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        if let Ok(json) = serde_json::to_string(&plan) {
            let _ = self.store.set_plan(&p.id, &json).await;
        }
        Ok(plan)
    }
}

/// The git side of a workflow of a project of this server.
pub(crate) fn git_context(project: &ProjectRow, w: &WorkflowRow) -> GitContext {
    launch::git_context("salve", &project.name, std::path::Path::new(&project.repo_url), w)
}

/// This installation's one organization.
pub fn organization_id() -> String {
    uuid::Uuid::from_u128(0x5a17e000_0000_4000_8000_000000000001).to_string()
}
