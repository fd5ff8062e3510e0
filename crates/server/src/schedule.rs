//! The dispatcher: starts queued pipelines in order when their queue (serialized unless
//! `parallel`) and a slot allow, each on a blocking thread that launches it through
//! `salve_launch` (every event stored, then announced); when one ends its promotions are
//! evaluated (`promotions.rs`). Stopping a pipeline or a job goes through its control here.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use salve_engine::{Event, Observer, PipelineControl};
use salve_git::Repo;
use salve_launch::{Launch, Site, Source};
use salve_pipeline::Plan;
use salve_runner::StopReason;
use salve_store::PipelineInfo;

use crate::server::{PIPELINE_TOKEN, Result, Server, WorkError, organization_id};

impl Server {
    /// Runs the dispatcher until the process ends: starts queued pipelines in order when their
    /// queue is free (serialized queues run one pipeline at a time) and a slot is.
    pub async fn dispatch(self: Arc<Self>) {
        let lease = Duration::from_millis(u64::try_from(self.lease_ms()).unwrap_or(u64::MAX));
        let mut swept = tokio::time::Instant::now();
        loop {
            if let Err(e) = self.keep_and_adopt().await {
                tracing::error!("dispatcher: {e}");
            }
            // Promotions a lost replica did not fire: looked for once a lease, not every round.
            if swept.elapsed() >= lease {
                swept = tokio::time::Instant::now();
                match self.store.unpromoted().await {
                    Ok(left) => {
                        for info in left {
                            self.promote_auto(&info, None).await;
                        }
                    }
                    Err(e) => tracing::error!("dispatcher: {e}"),
                }
            }
            if let Err(e) = self.dispatch_once().await {
                tracing::error!("dispatcher: {e}");
            }
            crate::executor::reap(&self).await;
            let _ = tokio::time::timeout(Duration::from_secs(1), self.wake.notified()).await;
        }
    }

    /// Renews this replica's hold on the pipelines it runs (passing on stops asked of another
    /// replica), and adopts pipelines whose replica went silent and runs them on.
    pub(crate) async fn keep_and_adopt(self: &Arc<Self>) -> Result<()> {
        let lease = self.lease_ms();
        for (id, stop) in self.store.renew_pipelines(&self.replica, lease).await? {
            if let (Some(reason), Some(control)) = (stop, self.control(&id)) {
                control.stop(StopReason::parse(&reason).unwrap_or(StopReason::User));
            }
        }
        for id in self.store.adopt_pipelines(&self.replica, lease).await? {
            let Some(info) = self.store.pipeline_info(&id).await? else { continue };
            tracing::warn!(pipeline = %id, "adopted a pipeline whose server went silent; running it on");
            self.spawn_run(info, true);
        }
        Ok(())
    }

    pub(crate) async fn dispatch_once(self: &Arc<Self>) -> Result<()> {
        let running = self.store.pipelines_in_state("running").await?;
        let mut busy: HashSet<String> =
            running.iter().filter(|i| !i.pipeline.queue_parallel).map(|i| i.pipeline.queue.clone()).collect();
        let mut slots = crate::server::PIPELINES_AT_ONCE.saturating_sub(running.len());
        for info in self.store.pipelines_in_state("queuing").await? {
            if slots == 0 {
                break;
            }
            let p = &info.pipeline;
            if !p.queue_parallel && !busy.insert(p.queue.clone()) {
                continue;
            }
            if !self.store.start_pipeline_as(&p.id, &self.replica, self.lease_ms()).await? {
                continue;
            }
            slots -= 1;
            self.spawn_run(info.clone(), false);
        }
        Ok(())
    }

    /// Runs a pipeline this replica owns on a blocking thread (`resumed`: adopted, running on
    /// from what the store holds), then fires its promotions.
    fn spawn_run(self: &Arc<Self>, info: PipelineInfo, resumed: bool) {
        let control = PipelineControl::new();
        if let Ok(mut r) = self.running.lock() {
            r.insert(info.pipeline.id.clone(), control.clone());
        }
        let server = Arc::clone(self);
        tokio::spawn(async move {
            let id = info.pipeline.id.clone();
            let s = Arc::clone(&server);
            let run = tokio::task::spawn_blocking(move || s.run(&info, &control, resumed)).await;
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

    /// Runs one pipeline on this (blocking) thread; returns it as stored afterwards, and the
    /// plan it ran (its promotions are evaluated next).
    pub(crate) fn run(
        self: &Arc<Self>,
        info: &PipelineInfo,
        control: &PipelineControl,
        resumed: bool,
    ) -> (Option<PipelineInfo>, Option<Plan>) {
        let p = &info.pipeline;
        self.metrics.running_pipelines.fetch_add(1, Ordering::Relaxed);
        self.announce(&p.id, &serde_json::json!({"event": "pipeline_running"}));
        let result = self.run_inner(info, control, resumed);
        self.metrics.running_pipelines.fetch_sub(1, Ordering::Relaxed);
        let plan = result.unwrap_or_else(|e| {
            tracing::error!(pipeline = %p.id, "pipeline could not run: {e}");
            let _ = self.rt.block_on(self.finish(&p.id, "failed", "stuck", Some(&e)));
            None
        });
        (self.rt.block_on(self.store.pipeline_info(&p.id)).ok().flatten(), plan)
    }

    pub(crate) fn run_inner(
        self: &Arc<Self>,
        info: &PipelineInfo,
        control: &PipelineControl,
        resumed: bool,
    ) -> std::result::Result<Option<Plan>, String> {
        let (p, w) = (&info.pipeline, &info.workflow);
        let project = self
            .rt
            .block_on(self.store.project(&w.project_id))
            .map_err(|e| e.to_string())?
            .ok_or("the project was deleted")?;
        let repo_dir = PathBuf::from(&project.repo_url);
        let repo = Repo::new(&repo_dir);
        let plan = match self.rt.block_on(self.plan_of(info)) {
            Ok(plan) => plan,
            Err(error) => {
                self.rt.block_on(self.finish(&p.id, "failed", "malformed", Some(&error))).map_err(|e| e.to_string())?;
                return Ok(None);
            }
        };
        // A promoted pipeline (a heal, a pull request) talks back to this server: its jobs get
        // the URL and a token that lives as long as the pipeline runs, masked in their logs.
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
        let announcer = Announcer { server: self, pipeline_id: &p.id };
        let stored = if resumed {
            Some(self.rt.block_on(crate::resume::Stored::read(&self.store, &p.id)).map_err(|e| e.to_string())?)
        } else {
            None
        };
        let prior: &dyn salve_engine::Prior = match &stored {
            Some(s) => s,
            None => &salve_engine::Fresh,
        };
        let executor = crate::executor::Jobs {
            server: self,
            pipeline_id: &p.id,
            project: salve_contract::api::AgentProject { id: project.id.clone(), name: project.name.clone() },
            sha: w.sha.clone(),
            places: salve_launch::place_env(&self.launch.data, &project.id, &repo_dir),
        };
        let launch = Launch {
            settings: &self.launch,
            site: &Site {
                provider: "salve",
                organization_id: organization_id(),
                organization_url: self.config.public_url.clone().unwrap_or_default(),
                manual: false,
            },
            rt: self.rt.clone(),
            store: &self.store,
            sealer: &self.sealer,
            project_id: &project.id,
            source: Source { name: &project.name, mirror: &repo_dir, history: &repo },
            workflow: w,
            pipeline: p,
            env: [("SALVE_SERVER".to_owned(), self.base_url())]
                .into_iter()
                .chain(salve_launch::toolchains_env(self.config.toolchains_dir.as_deref()))
                .collect(),
            secret_env: token.iter().map(|(_, t)| ("SALVE_TOKEN".to_owned(), t.clone())).collect(),
            observer: &announcer,
            executor: &executor,
            prior,
        };
        let launched = launch.run(&plan, control);
        if token.is_some() {
            self.rt.block_on(self.delete_pipeline_tokens(&p.id));
        }
        let launched = launched.map_err(|e| e.to_string())?;
        if let Some(e) = launched.unrecorded {
            tracing::error!(pipeline = %p.id, "events could not be stored: {e}");
        }
        if let Ok(mut m) = self.metrics.pipelines_finished.lock() {
            *m.entry(launched.run.result.as_str().to_owned()).or_default() += 1;
        }
        Ok(Some(plan))
    }

    /// Stops a pipeline: a running one is stopped (result stopped, reason user), a queued one
    /// canceled. False when it was done already.
    pub async fn stop(&self, pipeline_id: &str) -> Result<bool> {
        let Some(p) = self.store.pipeline(pipeline_id).await? else {
            return Err(WorkError::NotFound(format!("no pipeline {pipeline_id}")));
        };
        match p.state.as_str() {
            "queuing" => self.finish(pipeline_id, "canceled", "user", None).await,
            "running" => match self.control(pipeline_id) {
                Some(c) => {
                    c.stop(StopReason::User);
                    Ok(true)
                }
                // Another replica runs it: the stop waits in the store for its next round.
                None => {
                    self.store.ask_to_stop(pipeline_id, StopReason::User.as_str()).await?;
                    self.wake.notify_one();
                    Ok(true)
                }
            },
            _ => Ok(false),
        }
    }

    /// Stops one running job; the rest of its pipeline goes on. False when the job has ended.
    pub async fn stop_job(&self, job_id: &str) -> Result<bool> {
        let Some(job) = self.store.job(job_id).await? else {
            return Err(WorkError::NotFound(format!("no job {job_id}")));
        };
        if job.state != "running" {
            return Ok(false);
        }
        if self.control(&job.pipeline_id).is_some_and(|c| c.stop_job(job_id)) {
            return Ok(true);
        }
        // A job on an agent, its pipeline run by another replica: the stop reaches the agent
        // through the queue, and that replica's wait sees the job end.
        let report = crate::executor::Report::Stopped { reason: StopReason::User.as_str().to_owned() }.json();
        Ok(self.store.agent_job(job_id).await?.is_some_and(|a| a.state != "done") && {
            self.store.stop_agent_job(job_id, StopReason::User.as_str(), &report).await?;
            true
        })
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
