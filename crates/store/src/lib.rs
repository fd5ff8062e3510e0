//! Salve's persistence, one set of queries for two backends through sqlx's `Any` driver:
//! SQLite (a file, WAL mode; the default, nothing to set up) and PostgreSQL (`postgres://…`,
//! when several servers or workers share state). Queries use `$N` placeholders, which both
//! accept. The schema is embedded and migrated on open. No business rules live here.

pub mod agent_jobs;
pub mod agents;
pub mod heal;
pub mod secrets;
pub mod tasks;
pub mod web;

pub use agents::{AgentRow, AgentTypeRow};
pub use heal::{HealRow, PullRow};
pub use tasks::{TaskRow, TaskTriggerRow};
pub use web::{CommentRow, SessionRow};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

/// Embedded migrations, in order. One text serves both backends: `__BYTES__` becomes `BLOB`
/// (SQLite) or `BYTEA` (PostgreSQL), the only type they spell differently.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/0001_init.sql")),
    (2, include_str!("../migrations/0002_server.sql")),
    (3, include_str!("../migrations/0003_heal.sql")),
    (4, include_str!("../migrations/0004_web.sql")),
    (5, include_str!("../migrations/0005_token_scope.sql")),
    (6, include_str!("../migrations/0006_heal_links.sql")),
    (7, include_str!("../migrations/0007_plans.sql")),
    (8, include_str!("../migrations/0008_agent_types.sql")),
    (9, include_str!("../migrations/0009_agents.sql")),
    (10, include_str!("../migrations/0010_agent_jobs.sql")),
    (11, include_str!("../migrations/0011_pipeline_owners.sql")),
    (12, include_str!("../migrations/0012_tasks.sql")),
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "unsupported database URL '{0}': use sqlite://PATH (a file, created if missing) or postgres://USER:PASSWORD@HOST/DB"
    )]
    Url(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("{0}")]
    Conflict(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProjectRow {
    pub id: String,
    pub name: String,
    pub repo_url: String,
    pub created_ms: i64,
    /// `local` (`salve run`), `hosted` (a bare repository Salve serves) or `external` (webhooks).
    pub kind: String,
    /// The webhook secret, sealed.
    pub webhook_secret: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WorkflowRow {
    pub id: String,
    pub project_id: String,
    pub number: i64,
    pub ref_type: String,
    pub label: String,
    pub sha: String,
    pub created_ms: i64,
    /// The branch (a pull request's target branch; empty for a tag).
    pub branch: String,
    pub triggered_by: String,
    pub rerun_of: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PipelineRow {
    pub id: String,
    pub workflow_id: String,
    pub name: String,
    pub file: String,
    /// `queuing`, `running` or `done`.
    pub state: String,
    pub result: Option<String>,
    pub result_reason: Option<String>,
    pub error: Option<String>,
    pub promoted_by: Option<String>,
    pub created_ms: i64,
    pub done_ms: Option<i64>,
    pub promotion_of: Option<String>,
    /// Promotion parameters, a JSON object of strings.
    pub params: String,
    /// The promotion chain's artefact ids, a JSON array, this pipeline's last.
    pub artefact_ids: String,
    pub queue: String,
    pub queue_parallel: bool,
    /// `""`, `queued` or `running` (SEMAPHORE.md §1.9).
    pub auto_cancel: String,
    pub promotions_done: bool,
    pub started_ms: Option<i64>,
    /// The compiled plan (JSON) stored with a new pipeline. Rows read back leave it out (it is
    /// large): [`Store::plan`] reads it.
    pub plan: Option<String>,
}

/// A pipeline with its workflow, as lists show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineInfo {
    pub pipeline: PipelineRow,
    pub workflow: WorkflowRow,
    pub project: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub id: String,
    pub name: String,
    pub created_ms: i64,
    pub last_used_ms: Option<i64>,
    /// The one project this token may act on; `None`: an administrator's token.
    pub project_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockRow {
    pub pipeline_id: String,
    pub name: String,
    pub state: String,
    pub result: Option<String>,
    pub result_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobRow {
    pub id: String,
    pub pipeline_id: String,
    pub block_name: String,
    pub name: String,
    pub state: String,
    pub result: Option<String>,
    pub result_reason: Option<String>,
    pub summary: Option<String>,
    pub log_dir: String,
    pub started_ms: Option<i64>,
    pub done_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRow {
    pub job_id: String,
    pub seq: i64,
    pub phase: String,
    pub idx: i64,
    pub command: String,
    pub started_ms: i64,
    pub duration_ms: i64,
    pub exit_code: Option<i64>,
    pub first_line: i64,
    pub end_line: i64,
}

impl Store {
    /// Opens (creating when needed) and migrates the database at `url`.
    pub async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if let Some(path) = url.strip_prefix("sqlite://") {
            let base = path.split('?').next().unwrap_or(path);
            if let Some(parent) = std::path::Path::new(base).parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| StoreError::Db(sqlx::Error::Io(e)))?;
            }
            let sep = if path.contains('?') { '&' } else { '?' };
            (Backend::Sqlite, format!("sqlite://{path}{sep}mode=rwc"))
        } else if url == "sqlite::memory:" {
            (Backend::Sqlite, url.to_owned())
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_owned())
        } else {
            return Err(StoreError::Url(url.to_owned()));
        };
        let max = if url == "sqlite::memory:" { 1 } else { 8 };
        let mut options = AnyPoolOptions::new().max_connections(max);
        if backend == Backend::Sqlite {
            // Per connection: a writer waits for another (up to 10 s) instead of failing with
            // "database is locked".
            options = options.after_connect(|conn, _| {
                Box::pin(async move {
                    use sqlx::Executor as _;
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    Ok(())
                })
            });
        }
        let pool = options.connect(&url).await?;
        if backend == Backend::Sqlite {
            // Persistent in the file.
            sqlx::raw_sql("PRAGMA journal_mode = WAL;").execute(&pool).await?;
        }
        let store = Store { pool, backend };
        store.migrate().await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    async fn migrate(&self) -> Result<()> {
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS salve_schema (version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL)",
        )
        .execute(&self.pool)
        .await?;
        for (version, sql) in MIGRATIONS {
            let done: Option<i64> = sqlx::query_scalar("SELECT version FROM salve_schema WHERE version = $1")
                .bind(version)
                .fetch_optional(&self.pool)
                .await?;
            if done.is_some() {
                continue;
            }
            let mut tx = self.pool.begin().await?;
            let sql = sql.replace("__BYTES__", if self.backend == Backend::Sqlite { "BLOB" } else { "BYTEA" });
            sqlx::raw_sql(&sql).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO salve_schema (version, applied_ms) VALUES ($1, $2)")
                .bind(version)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            if *version == 6 {
                self.backfill_heal_links().await?;
            }
        }
        Ok(())
    }

    /// The project called `name`, created with `repo_url` if it does not exist.
    pub async fn ensure_project(&self, id: &str, name: &str, repo_url: &str) -> Result<ProjectRow> {
        sqlx::query(
            "INSERT INTO projects (id, name, repo_url, created_ms) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
        )
        .bind(id)
        .bind(name)
        .bind(repo_url)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        self.project(name).await?.ok_or_else(|| StoreError::Conflict(format!("project {name} vanished")))
    }

    /// A new project; `Conflict` when the name is taken.
    pub async fn create_project(&self, p: &ProjectRow) -> Result<()> {
        let done = sqlx::query(
            "INSERT INTO projects (id, name, repo_url, created_ms, kind, webhook_secret) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&p.id)
        .bind(&p.name)
        .bind(&p.repo_url)
        .bind(p.created_ms)
        .bind(&p.kind)
        .bind(&p.webhook_secret)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("a project named '{}' exists already", p.name)));
        }
        Ok(())
    }

    /// The project with this name (or id).
    pub async fn project(&self, name_or_id: &str) -> Result<Option<ProjectRow>> {
        let row = sqlx::query(&format!("SELECT {PROJECT} FROM projects WHERE name = $1 OR id = $1"))
            .bind(name_or_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| project_row(&r)).transpose()
    }

    pub async fn projects(&self) -> Result<Vec<ProjectRow>> {
        let rows = sqlx::query(&format!("SELECT {PROJECT} FROM projects WHERE kind <> 'local' ORDER BY name"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(project_row).collect()
    }

    /// A new workflow of the project, numbered after the last one (`number` is ignored).
    pub async fn create_workflow(&self, w: &WorkflowRow) -> Result<WorkflowRow> {
        let mut tx = self.pool.begin().await?;
        // A write first: SQLite takes the write lock now (waiting for it, rather than failing
        // to upgrade a read lock later) and PostgreSQL locks the project's row, so numbers
        // stay unique under concurrent pushes.
        sqlx::query("UPDATE projects SET id = id WHERE id = $1").bind(&w.project_id).execute(&mut *tx).await?;
        let last: Option<i64> = sqlx::query_scalar("SELECT MAX(number) FROM workflows WHERE project_id = $1")
            .bind(&w.project_id)
            .fetch_one(&mut *tx)
            .await?;
        let row = WorkflowRow { number: last.unwrap_or(0) + 1, ..w.clone() };
        sqlx::query(
            "INSERT INTO workflows (id, project_id, number, ref_type, label, sha, created_ms, branch, triggered_by, rerun_of) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&row.id)
        .bind(&row.project_id)
        .bind(row.number)
        .bind(&row.ref_type)
        .bind(&row.label)
        .bind(&row.sha)
        .bind(row.created_ms)
        .bind(&row.branch)
        .bind(&row.triggered_by)
        .bind(&row.rerun_of)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    pub async fn workflow(&self, id: &str) -> Result<Option<WorkflowRow>> {
        let row = sqlx::query(&format!("SELECT {WORKFLOW} FROM workflows w WHERE w.id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| workflow_row(&r)).transpose()
    }

    /// The project's workflows, newest first, of one branch when `branch` is given.
    pub async fn workflows(&self, project_id: &str, branch: Option<&str>, limit: i64) -> Result<Vec<WorkflowRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {WORKFLOW} FROM workflows w WHERE w.project_id = $1 AND ($2 = '' OR w.branch = $2) \
             ORDER BY w.number DESC LIMIT $3"
        ))
        .bind(project_id)
        .bind(branch.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(workflow_row).collect()
    }

    /// The first pipeline (not a promotion) of each of `workflow_ids`, by workflow id.
    pub async fn initial_pipelines(
        &self,
        workflow_ids: &[String],
    ) -> Result<std::collections::HashMap<String, String>> {
        let mut found = std::collections::HashMap::new();
        for chunk in workflow_ids.chunks(500) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT workflow_id, id FROM pipelines WHERE promotion_of IS NULL AND workflow_id IN ({}) \
                 ORDER BY created_ms DESC",
                marks.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(id);
            }
            // Newest first: the oldest pipeline of a workflow is the one left in the map.
            for row in query.fetch_all(&self.pool).await? {
                found.insert(row.try_get::<String, _>("workflow_id")?, row.try_get::<String, _>("id")?);
            }
        }
        Ok(found)
    }

    /// Whether the project has a workflow of this ref at this commit.
    /// Whether a pipeline of `file` (not a promotion) passed on commit `sha` of the project.
    pub async fn passed_before(&self, project_id: &str, sha: &str, file: &str) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM pipelines p JOIN workflows w ON p.workflow_id = w.id \
             WHERE w.project_id = $1 AND w.sha = $2 AND p.file = $3 AND p.result = 'passed' \
             AND p.promotion_of IS NULL LIMIT 1",
        )
        .bind(project_id)
        .bind(sha)
        .bind(file)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    pub async fn has_workflow(&self, project_id: &str, ref_type: &str, label: &str, sha: &str) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM workflows WHERE project_id = $1 AND ref_type = $2 AND label = $3 AND sha = $4 LIMIT 1",
        )
        .bind(project_id)
        .bind(ref_type)
        .bind(label)
        .bind(sha)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    pub async fn create_pipeline(&self, p: &PipelineRow) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        insert_pipeline(&mut tx, p).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The compiled plan stored with a pipeline, as JSON.
    pub async fn plan(&self, pipeline_id: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT plan FROM pipeline_plans WHERE pipeline_id = $1")
            .bind(pipeline_id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Keeps the plan of a pipeline stored without one (older than the store's plans); a plan
    /// already there is left as it is.
    pub async fn set_plan(&self, pipeline_id: &str, plan: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO pipeline_plans (pipeline_id, plan) VALUES ($1, $2) ON CONFLICT (pipeline_id) DO NOTHING",
        )
        .bind(pipeline_id)
        .bind(plan)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks `parent`'s promotions as done and creates the pipelines they started, in one
    /// transaction: false (and nothing created) when they were done already.
    pub async fn promote(&self, parent: &str, children: &[PipelineRow]) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let claimed = sqlx::query("UPDATE pipelines SET promotions_done = 1 WHERE id = $1 AND promotions_done = 0")
            .bind(parent)
            .execute(&mut *tx)
            .await?;
        if claimed.rows_affected() == 0 {
            return Ok(false);
        }
        for child in children {
            insert_pipeline(&mut tx, child).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Moves a queuing pipeline to running; false when it was not queuing any more.
    pub async fn start_pipeline(&self, id: &str) -> Result<bool> {
        self.start_pipeline_as(id, "", 0).await
    }

    /// Starts a queued pipeline as `owner`'s (a server replica), under a lease of `lease_ms`;
    /// false when it was not queued (another replica started it).
    pub async fn start_pipeline_as(&self, id: &str, owner: &str, lease_ms: i64) -> Result<bool> {
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE pipelines SET state = 'running', started_ms = $2, owner = $3, owner_until_ms = $4 \
             WHERE id = $1 AND state = 'queuing'",
        )
        .bind(id)
        .bind(now)
        .bind(owner)
        .bind(now + lease_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Renews the leases of `owner`'s running pipelines; their ids, each with the stop asked of
    /// it, if one was.
    pub async fn renew_pipelines(&self, owner: &str, lease_ms: i64) -> Result<Vec<(String, Option<String>)>> {
        let rows = sqlx::query(
            "UPDATE pipelines SET owner_until_ms = $2 WHERE owner = $1 AND state = 'running' RETURNING id, stop_reason",
        )
        .bind(owner)
        .bind(now_ms() + lease_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.try_get("id")?, r.try_get("stop_reason")?))).collect()
    }

    /// Makes `owner` the owner of the running pipelines whose owner's lease lapsed (a replica
    /// killed, or this server before a restart); their ids. Each goes to one replica.
    pub async fn adopt_pipelines(&self, owner: &str, lease_ms: i64) -> Result<Vec<String>> {
        let now = now_ms();
        let rows = sqlx::query(
            "UPDATE pipelines SET owner = $1, owner_until_ms = $2 \
             WHERE state = 'running' AND (owner_until_ms IS NULL OR owner_until_ms < $3) RETURNING id",
        )
        .bind(owner)
        .bind(now + lease_ms)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
    }

    /// Leaves a stop for the replica running the pipeline; false when it is not running.
    pub async fn ask_to_stop(&self, id: &str, reason: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE pipelines SET stop_reason = $2 WHERE id = $1 AND state = 'running' AND stop_reason IS NULL",
        )
        .bind(id)
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Ends a pipeline that is not done yet; false when it was done already.
    pub async fn finish_pipeline(
        &self,
        id: &str,
        result: &str,
        reason: Option<&str>,
        error: Option<&str>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE pipelines SET state = 'done', result = $2, result_reason = $3, error = $4, done_ms = $5 \
             WHERE id = $1 AND state <> 'done'",
        )
        .bind(id)
        .bind(result)
        .bind(reason)
        .bind(error)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn pipeline(&self, id: &str) -> Result<Option<PipelineRow>> {
        let row = sqlx::query(&format!("SELECT {PIPELINE} FROM pipelines p WHERE p.id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| pipeline_row(&r)).transpose()
    }

    /// Pipelines in `state`, oldest first, with their workflows.
    pub async fn pipelines_in_state(&self, state: &str) -> Result<Vec<PipelineInfo>> {
        self.pipeline_infos("p.state = $1", state, i64::MAX).await
    }

    pub async fn count_in_state(&self, state: &str) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM pipelines WHERE state = $1")
            .bind(state)
            .fetch_one(&self.pool)
            .await?)
    }

    /// Done pipelines whose promotions were not evaluated yet (the server stopped between).
    pub async fn unpromoted(&self) -> Result<Vec<PipelineInfo>> {
        self.pipeline_infos("p.state = 'done' AND p.promotions_done = 0 AND $1 = ''", "", i64::MAX).await
    }

    /// The project's pipelines, newest first.
    pub async fn project_pipelines(&self, project_id: &str, limit: i64) -> Result<Vec<PipelineInfo>> {
        let mut v = self.pipeline_infos("w.project_id = $1", project_id, limit).await?;
        v.reverse();
        Ok(v)
    }

    /// The workflow's pipelines, oldest first.
    pub async fn workflow_pipelines(&self, workflow_id: &str) -> Result<Vec<PipelineInfo>> {
        self.pipeline_infos("p.workflow_id = $1", workflow_id, i64::MAX).await
    }

    pub async fn pipeline_info(&self, id: &str) -> Result<Option<PipelineInfo>> {
        Ok(self.pipeline_infos("p.id = $1", id, 1).await?.pop())
    }

    async fn pipeline_infos(&self, filter: &str, arg: &str, limit: i64) -> Result<Vec<PipelineInfo>> {
        // The newest `limit`, returned oldest first.
        let rows = sqlx::query(&format!(
            "SELECT * FROM (SELECT {PIPELINE}, {WORKFLOW_AS}, r.name AS project_name \
             FROM pipelines p JOIN workflows w ON w.id = p.workflow_id JOIN projects r ON r.id = w.project_id \
             WHERE {filter} ORDER BY p.created_ms DESC, p.id DESC LIMIT $2) x ORDER BY created_ms, id"
        ))
        .bind(arg)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PipelineInfo {
                    pipeline: pipeline_row(r)?,
                    workflow: WorkflowRow {
                        id: r.try_get("w_id")?,
                        project_id: r.try_get("w_project_id")?,
                        number: r.try_get("w_number")?,
                        ref_type: r.try_get("w_ref_type")?,
                        label: r.try_get("w_label")?,
                        sha: r.try_get("w_sha")?,
                        created_ms: r.try_get("w_created_ms")?,
                        branch: r.try_get("w_branch")?,
                        triggered_by: r.try_get("w_triggered_by")?,
                        rerun_of: r.try_get("w_rerun_of")?,
                    },
                    project: r.try_get("project_name")?,
                })
            })
            .collect()
    }

    pub async fn set_block(&self, b: &BlockRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO blocks (pipeline_id, name, state, result, result_reason) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (pipeline_id, name) DO UPDATE SET state = excluded.state, result = excluded.result, result_reason = excluded.result_reason",
        )
        .bind(&b.pipeline_id)
        .bind(&b.name)
        .bind(&b.state)
        .bind(&b.result)
        .bind(&b.result_reason)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn blocks(&self, pipeline_id: &str) -> Result<Vec<BlockRow>> {
        let rows = sqlx::query(
            "SELECT pipeline_id, name, state, result, result_reason FROM blocks WHERE pipeline_id = $1 ORDER BY name",
        )
        .bind(pipeline_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(BlockRow {
                    pipeline_id: r.try_get("pipeline_id")?,
                    name: r.try_get("name")?,
                    state: r.try_get("state")?,
                    result: r.try_get("result")?,
                    result_reason: r.try_get("result_reason")?,
                })
            })
            .collect()
    }

    pub async fn set_job(&self, j: &JobRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO jobs (id, pipeline_id, block_name, name, state, result, result_reason, summary, log_dir, started_ms, done_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (id) DO UPDATE SET state = excluded.state, result = excluded.result, \
             result_reason = excluded.result_reason, summary = excluded.summary, done_ms = excluded.done_ms",
        )
        .bind(&j.id)
        .bind(&j.pipeline_id)
        .bind(&j.block_name)
        .bind(&j.name)
        .bind(&j.state)
        .bind(&j.result)
        .bind(&j.result_reason)
        .bind(&j.summary)
        .bind(&j.log_dir)
        .bind(j.started_ms)
        .bind(j.done_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn job(&self, id: &str) -> Result<Option<JobRow>> {
        let row = sqlx::query(
            "SELECT id, pipeline_id, block_name, name, state, result, result_reason, summary, log_dir, started_ms, done_ms \
             FROM jobs WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| job_row(&r)).transpose()
    }

    pub async fn jobs(&self, pipeline_id: &str) -> Result<Vec<JobRow>> {
        let rows = sqlx::query(
            "SELECT id, pipeline_id, block_name, name, state, result, result_reason, summary, log_dir, started_ms, done_ms \
             FROM jobs WHERE pipeline_id = $1 ORDER BY block_name, name",
        )
        .bind(pipeline_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_row).collect()
    }

    /// Replaces a job's command records.
    pub async fn set_commands(&self, job_id: &str, commands: &[CommandRow]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM commands WHERE job_id = $1").bind(job_id).execute(&mut *tx).await?;
        for c in commands {
            sqlx::query(
                "INSERT INTO commands (job_id, seq, phase, idx, command, started_ms, duration_ms, exit_code, first_line, end_line) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(job_id)
            .bind(c.seq)
            .bind(&c.phase)
            .bind(c.idx)
            .bind(&c.command)
            .bind(c.started_ms)
            .bind(c.duration_ms)
            .bind(c.exit_code)
            .bind(c.first_line)
            .bind(c.end_line)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn commands(&self, job_id: &str) -> Result<Vec<CommandRow>> {
        let rows = sqlx::query(
            "SELECT job_id, seq, phase, idx, command, started_ms, duration_ms, exit_code, first_line, end_line \
             FROM commands WHERE job_id = $1 ORDER BY seq",
        )
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(CommandRow {
                    job_id: r.try_get("job_id")?,
                    seq: r.try_get("seq")?,
                    phase: r.try_get("phase")?,
                    idx: r.try_get("idx")?,
                    command: r.try_get("command")?,
                    started_ms: r.try_get("started_ms")?,
                    duration_ms: r.try_get("duration_ms")?,
                    exit_code: r.try_get("exit_code")?,
                    first_line: r.try_get("first_line")?,
                    end_line: r.try_get("end_line")?,
                })
            })
            .collect()
    }

    /// Stores a sealed secret (see `salve_store::secrets`), replacing one of the same name.
    pub async fn put_secret(&self, name: &str, sealed: &[u8]) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO secrets (name, sealed, created_ms, updated_ms) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (name) DO UPDATE SET sealed = excluded.sealed, updated_ms = excluded.updated_ms",
        )
        .bind(name)
        .bind(sealed)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn secret(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar("SELECT sealed FROM secrets WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub async fn secret_names(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT name FROM secrets ORDER BY name").fetch_all(&self.pool).await?)
    }

    pub async fn delete_secret(&self, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM secrets WHERE name = $1").bind(name).execute(&self.pool).await?;
        Ok(done.rows_affected() > 0)
    }

    /// The newest passing run of the same job (project, pipeline file, block and job name)
    /// that ended before `before_ms`: its id and log folder.
    pub async fn last_passed_job(
        &self,
        project_id: &str,
        file: &str,
        block: &str,
        name: &str,
        before_ms: i64,
    ) -> Result<Option<(String, String)>> {
        let row = sqlx::query(
            "SELECT j.id, j.log_dir FROM jobs j JOIN pipelines p ON p.id = j.pipeline_id JOIN workflows w ON w.id = p.workflow_id \
             WHERE w.project_id = $1 AND p.file = $2 AND j.block_name = $3 AND j.name = $4 AND j.result = 'passed' \
             AND j.done_ms < $5 ORDER BY j.done_ms DESC LIMIT 1",
        )
        .bind(project_id)
        .bind(file)
        .bind(block)
        .bind(name)
        .bind(before_ms)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get("id")?, r.try_get("log_dir")?))).transpose()
    }

    /// Stores a new API token by its hash; `project_id` limits it to one project.
    pub async fn create_token(&self, id: &str, name: &str, hash: &str, project_id: Option<&str>) -> Result<()> {
        sqlx::query("INSERT INTO tokens (id, name, hash, created_ms, project_id) VALUES ($1, $2, $3, $4, $5)")
            .bind(id)
            .bind(name)
            .bind(hash)
            .bind(now_ms())
            .bind(project_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The token with this hash, marked as used now.
    pub async fn use_token(&self, hash: &str) -> Result<Option<TokenRow>> {
        let row = sqlx::query(
            "UPDATE tokens SET last_used_ms = $2 WHERE hash = $1 RETURNING id, name, created_ms, last_used_ms, project_id",
        )
        .bind(hash)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| token_row(&r)).transpose()
    }

    pub async fn tokens(&self) -> Result<Vec<TokenRow>> {
        let rows = sqlx::query("SELECT id, name, created_ms, last_used_ms, project_id FROM tokens ORDER BY created_ms")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(token_row).collect()
    }

    /// Deletes every token whose name starts with `prefix` (and their web sessions); how many.
    pub async fn delete_tokens_named(&self, prefix: &str) -> Result<u64> {
        let matching = "SELECT id FROM tokens WHERE substr(name, 1, length($1)) = $1";
        sqlx::query(&format!("DELETE FROM sessions WHERE token_id IN ({matching})"))
            .bind(prefix)
            .execute(&self.pool)
            .await?;
        let done = sqlx::query(&format!("DELETE FROM tokens WHERE id IN ({matching})"))
            .bind(prefix)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    pub async fn delete_token(&self, id: &str) -> Result<bool> {
        // Its web sessions end with it (SQLite's foreign keys cascade only per connection).
        sqlx::query("DELETE FROM sessions WHERE token_id = $1").bind(id).execute(&self.pool).await?;
        let done = sqlx::query("DELETE FROM tokens WHERE id = $1").bind(id).execute(&self.pool).await?;
        Ok(done.rows_affected() > 0)
    }
}

const PROJECT: &str = "id, name, repo_url, created_ms, kind, webhook_secret";
const WORKFLOW: &str =
    "w.id, w.project_id, w.number, w.ref_type, w.label, w.sha, w.created_ms, w.branch, w.triggered_by, w.rerun_of";
const WORKFLOW_AS: &str = "w.id AS w_id, w.project_id AS w_project_id, w.number AS w_number, \
    w.ref_type AS w_ref_type, w.label AS w_label, w.sha AS w_sha, w.created_ms AS w_created_ms, \
    w.branch AS w_branch, w.triggered_by AS w_triggered_by, w.rerun_of AS w_rerun_of";
const PIPELINE: &str = "p.id, p.workflow_id, p.name, p.file, p.state, p.result, p.result_reason, p.error, \
    p.promoted_by, p.created_ms, p.done_ms, p.promotion_of, p.params, p.artefact_ids, p.queue, p.queue_parallel, \
    p.auto_cancel, p.promotions_done, p.started_ms";

async fn insert_pipeline(tx: &mut sqlx::Transaction<'_, sqlx::Any>, p: &PipelineRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO pipelines (id, workflow_id, name, file, state, result, result_reason, error, promoted_by, created_ms, \
         done_ms, promotion_of, params, artefact_ids, queue, queue_parallel, auto_cancel, promotions_done, started_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
    )
    .bind(&p.id)
    .bind(&p.workflow_id)
    .bind(&p.name)
    .bind(&p.file)
    .bind(&p.state)
    .bind(&p.result)
    .bind(&p.result_reason)
    .bind(&p.error)
    .bind(&p.promoted_by)
    .bind(p.created_ms)
    .bind(p.done_ms)
    .bind(&p.promotion_of)
    .bind(if p.params.is_empty() { "{}" } else { &p.params })
    .bind(if p.artefact_ids.is_empty() { "[]" } else { &p.artefact_ids })
    .bind(&p.queue)
    .bind(i64::from(p.queue_parallel))
    .bind(&p.auto_cancel)
    .bind(i64::from(p.promotions_done))
    .bind(p.started_ms)
    .execute(&mut **tx)
    .await?;
    if let Some(plan) = &p.plan {
        sqlx::query("INSERT INTO pipeline_plans (pipeline_id, plan) VALUES ($1, $2)")
            .bind(&p.id)
            .bind(plan)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

fn project_row(r: &AnyRow) -> Result<ProjectRow> {
    Ok(ProjectRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        repo_url: r.try_get("repo_url")?,
        created_ms: r.try_get("created_ms")?,
        kind: r.try_get("kind")?,
        webhook_secret: r.try_get("webhook_secret")?,
    })
}

fn workflow_row(r: &AnyRow) -> Result<WorkflowRow> {
    Ok(WorkflowRow {
        id: r.try_get("id")?,
        project_id: r.try_get("project_id")?,
        number: r.try_get("number")?,
        ref_type: r.try_get("ref_type")?,
        label: r.try_get("label")?,
        sha: r.try_get("sha")?,
        created_ms: r.try_get("created_ms")?,
        branch: r.try_get("branch")?,
        triggered_by: r.try_get("triggered_by")?,
        rerun_of: r.try_get("rerun_of")?,
    })
}

fn pipeline_row(r: &AnyRow) -> Result<PipelineRow> {
    Ok(PipelineRow {
        id: r.try_get("id")?,
        workflow_id: r.try_get("workflow_id")?,
        name: r.try_get("name")?,
        file: r.try_get("file")?,
        state: r.try_get("state")?,
        result: r.try_get("result")?,
        result_reason: r.try_get("result_reason")?,
        error: r.try_get("error")?,
        promoted_by: r.try_get("promoted_by")?,
        created_ms: r.try_get("created_ms")?,
        done_ms: r.try_get("done_ms")?,
        promotion_of: r.try_get("promotion_of")?,
        params: r.try_get("params")?,
        artefact_ids: r.try_get("artefact_ids")?,
        queue: r.try_get("queue")?,
        queue_parallel: r.try_get::<i64, _>("queue_parallel")? != 0,
        auto_cancel: r.try_get("auto_cancel")?,
        promotions_done: r.try_get::<i64, _>("promotions_done")? != 0,
        started_ms: r.try_get("started_ms")?,
        plan: None,
    })
}

fn token_row(r: &AnyRow) -> Result<TokenRow> {
    Ok(TokenRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        created_ms: r.try_get("created_ms")?,
        last_used_ms: r.try_get("last_used_ms")?,
        project_id: r.try_get("project_id")?,
    })
}

fn job_row(r: &AnyRow) -> Result<JobRow> {
    Ok(JobRow {
        id: r.try_get("id")?,
        pipeline_id: r.try_get("pipeline_id")?,
        block_name: r.try_get("block_name")?,
        name: r.try_get("name")?,
        state: r.try_get("state")?,
        result: r.try_get("result")?,
        result_reason: r.try_get("result_reason")?,
        summary: r.try_get("summary")?,
        log_dir: r.try_get("log_dir")?,
        started_ms: r.try_get("started_ms")?,
        done_ms: r.try_get("done_ms")?,
    })
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
