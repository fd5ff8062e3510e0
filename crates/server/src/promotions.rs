//! Where promotions fire: when a pipeline is done its automatic promotions are evaluated
//! (`salve_engine::promote`) and the pipelines they start are created in the same transaction
//! that marks them done, so each fires once, also across a restart; a person's manual
//! promotion (§6.3) goes through here too.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use salve_engine::promote::{self, Fired};
use salve_git::Repo;
use salve_launch as launch;
use salve_pipeline::Plan;
use salve_store::{PipelineInfo, PipelineRow, ProjectRow};

use crate::server::{Result, Server, WorkError, git_context};

impl Server {
    /// Evaluates a done pipeline's automatic promotions and creates the pipelines they start,
    /// once.
    /// `plan` is the one the pipeline ran, when the caller has it (else it is compiled again).
    pub(crate) async fn promote_auto(self: &Arc<Self>, info: &PipelineInfo, plan: Option<Plan>) {
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

    pub(crate) async fn fired(
        &self,
        project: &ProjectRow,
        info: &PipelineInfo,
        plan: Option<Plan>,
    ) -> std::result::Result<Vec<Fired>, String> {
        let (p, w) = (&info.pipeline, &info.workflow);
        let repo_dir = PathBuf::from(&project.repo_url);
        let git = git_context(project, w);
        let plan = match plan {
            Some(plan) => plan,
            None => self.plan_of(info).await?,
        };
        let (p, w) = (p.clone(), w.clone());
        tokio::task::spawn_blocking(move || {
            let repo = Repo::new(&repo_dir);
            let functions = launch::change_in(&repo, &w, &p.file);
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
        .map_err(|e| e.to_string())
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
        let plan = self
            .plan_of(&info)
            .await
            .map_err(|e| WorkError::Invalid(format!("the pipeline's file no longer compiles: {e}")))?;
        let fired = promote::manual_promotion(&plan, &p.file, target, p.result.as_deref(), supplied, override_)
            .map_err(|e| WorkError::Invalid(e.to_string()))?;
        let child = self.prepare(&project, &info.workflow, &fired.pipeline_file, fired.params, Some(p), Some(by)).await;
        self.store.create_pipeline(&child).await?;
        self.queued(&child).await;
        Ok(child)
    }
}
