//! Tasks: a project's scheduled (cron) and on-demand workflows, and the history of their starts.
//! The rules (cron, parameters) are the server's; this keeps rows and takes a scheduled run once.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskRow {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub description: String,
    pub branch: String,
    pub pipeline_file: String,
    /// A cron expression (UTC); `None`: on demand only.
    pub schedule: Option<String>,
    /// The parameter definitions, JSON (the server's type).
    pub parameters: String,
    pub paused: bool,
    /// When the schedule fires next.
    pub next_run_ms: Option<i64>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskTriggerRow {
    pub id: String,
    pub task_id: String,
    pub triggered_ms: i64,
    /// Started by the schedule (not by a person or a tool).
    pub scheduled: bool,
    pub branch: String,
    pub pipeline_file: String,
    pub workflow_id: Option<String>,
    /// Why no workflow started.
    pub error: Option<String>,
}

const TASK: &str = "id, project_id, name, description, branch, pipeline_file, schedule, parameters, paused, next_run_ms, created_ms, updated_ms";
const TRIGGER: &str = "id, task_id, triggered_ms, scheduled, branch, pipeline_file, workflow_id, error";

fn task_row(r: &AnyRow) -> Result<TaskRow> {
    Ok(TaskRow {
        id: r.try_get("id")?,
        project_id: r.try_get("project_id")?,
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        branch: r.try_get("branch")?,
        pipeline_file: r.try_get("pipeline_file")?,
        schedule: r.try_get("schedule")?,
        parameters: r.try_get("parameters")?,
        paused: r.try_get::<i64, _>("paused")? != 0,
        next_run_ms: r.try_get("next_run_ms")?,
        created_ms: r.try_get("created_ms")?,
        updated_ms: r.try_get("updated_ms")?,
    })
}

fn trigger_row(r: &AnyRow) -> Result<TaskTriggerRow> {
    Ok(TaskTriggerRow {
        id: r.try_get("id")?,
        task_id: r.try_get("task_id")?,
        triggered_ms: r.try_get("triggered_ms")?,
        scheduled: r.try_get::<i64, _>("scheduled")? != 0,
        branch: r.try_get("branch")?,
        pipeline_file: r.try_get("pipeline_file")?,
        workflow_id: r.try_get("workflow_id")?,
        error: r.try_get("error")?,
    })
}

impl Store {
    /// A new task; `Conflict` when its project has one of that name.
    pub async fn create_task(&self, t: &TaskRow) -> Result<()> {
        let done = sqlx::query(&format!(
            "INSERT INTO tasks ({TASK}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (project_id, name) DO NOTHING"
        ))
        .bind(&t.id)
        .bind(&t.project_id)
        .bind(&t.name)
        .bind(&t.description)
        .bind(&t.branch)
        .bind(&t.pipeline_file)
        .bind(&t.schedule)
        .bind(&t.parameters)
        .bind(i64::from(t.paused))
        .bind(t.next_run_ms)
        .bind(t.created_ms)
        .bind(t.updated_ms)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("the project has a task named '{}' already", t.name)));
        }
        Ok(())
    }

    pub async fn task(&self, id: &str) -> Result<Option<TaskRow>> {
        let row =
            sqlx::query(&format!("SELECT {TASK} FROM tasks WHERE id = $1")).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(task_row).transpose()
    }

    /// A project's task by name.
    pub async fn task_named(&self, project_id: &str, name: &str) -> Result<Option<TaskRow>> {
        let row = sqlx::query(&format!("SELECT {TASK} FROM tasks WHERE project_id = $1 AND name = $2"))
            .bind(project_id)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(task_row).transpose()
    }

    /// A project's tasks by name.
    pub async fn tasks(&self, project_id: &str) -> Result<Vec<TaskRow>> {
        let rows = sqlx::query(&format!("SELECT {TASK} FROM tasks WHERE project_id = $1 ORDER BY name"))
            .bind(project_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(task_row).collect()
    }

    /// Pauses or resumes a task, with the next run its schedule gives from now (none while paused).
    pub async fn set_task_paused(&self, id: &str, paused: bool, next_run_ms: Option<i64>) -> Result<bool> {
        let done = sqlx::query("UPDATE tasks SET paused = $2, next_run_ms = $3, updated_ms = $4 WHERE id = $1")
            .bind(id)
            .bind(i64::from(paused))
            .bind(next_run_ms)
            .bind(crate::now_ms())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn delete_task(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM tasks WHERE id = $1").bind(id).execute(&self.pool).await?;
        sqlx::query("DELETE FROM task_triggers WHERE task_id = $1").bind(id).execute(&self.pool).await?;
        Ok(done.rows_affected() > 0)
    }

    /// Scheduled tasks whose next run is due at `now_ms`, not paused.
    pub async fn due_tasks(&self, now_ms: i64) -> Result<Vec<TaskRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {TASK} FROM tasks WHERE next_run_ms IS NOT NULL AND next_run_ms <= $1 AND paused = 0 ORDER BY next_run_ms"
        ))
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(task_row).collect()
    }

    /// Takes a task's due run: moves `next_run_ms` from `due` to `next` if no one has. True for
    /// the one caller that did (the run is its to start).
    pub async fn take_task_run(&self, id: &str, due: i64, next: Option<i64>) -> Result<bool> {
        let done = sqlx::query("UPDATE tasks SET next_run_ms = $3 WHERE id = $1 AND next_run_ms = $2 AND paused = 0")
            .bind(id)
            .bind(due)
            .bind(next)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn add_task_trigger(&self, t: &TaskTriggerRow) -> Result<()> {
        sqlx::query(&format!("INSERT INTO task_triggers ({TRIGGER}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"))
            .bind(&t.id)
            .bind(&t.task_id)
            .bind(t.triggered_ms)
            .bind(i64::from(t.scheduled))
            .bind(&t.branch)
            .bind(&t.pipeline_file)
            .bind(&t.workflow_id)
            .bind(&t.error)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A task's latest starts, newest first.
    pub async fn task_triggers(&self, task_id: &str, limit: i64) -> Result<Vec<TaskTriggerRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {TRIGGER} FROM task_triggers WHERE task_id = $1 ORDER BY triggered_ms DESC, id LIMIT $2"
        ))
        .bind(task_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(trigger_row).collect()
    }
}
