//! Salve's persistence, one set of queries for two backends through sqlx's `Any` driver:
//! SQLite (a file, WAL mode; the default, nothing to set up) and PostgreSQL (`postgres://…`,
//! when several servers or workers share state). Queries use `$N` placeholders, which both
//! accept. The schema is embedded and migrated on open. No business rules live here.

pub mod secrets;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

/// Embedded migrations, in order. One text serves both backends: `__BYTES__` becomes `BLOB`
/// (SQLite) or `BYTEA` (PostgreSQL), the only type they spell differently.
const MIGRATIONS: &[(i64, &str)] = &[(1, include_str!("../migrations/0001_init.sql"))];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "unsupported database URL '{0}': use sqlite://PATH (a file, created if missing) or postgres://USER:PASSWORD@HOST/DB"
    )]
    Url(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectRow {
    pub id: String,
    pub name: String,
    pub repo_url: String,
    pub created_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowRow {
    pub id: String,
    pub project_id: String,
    pub number: i64,
    pub ref_type: String,
    pub label: String,
    pub sha: String,
    pub created_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineRow {
    pub id: String,
    pub workflow_id: String,
    pub name: String,
    pub file: String,
    pub state: String,
    pub result: Option<String>,
    pub result_reason: Option<String>,
    pub error: Option<String>,
    pub promoted_by: Option<String>,
    pub created_ms: i64,
    pub done_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockRow {
    pub pipeline_id: String,
    pub name: String,
    pub state: String,
    pub result: Option<String>,
    pub result_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
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
        let pool = AnyPoolOptions::new().max_connections(max).connect(&url).await?;
        if backend == Backend::Sqlite {
            sqlx::raw_sql("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;")
                .execute(&pool)
                .await?;
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
        let row = sqlx::query("SELECT id, name, repo_url, created_ms FROM projects WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(ProjectRow {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            repo_url: row.try_get("repo_url")?,
            created_ms: row.try_get("created_ms")?,
        })
    }

    /// A new workflow of the project, numbered after the last one.
    pub async fn create_workflow(
        &self,
        id: &str,
        project_id: &str,
        ref_type: &str,
        label: &str,
        sha: &str,
    ) -> Result<WorkflowRow> {
        let mut tx = self.pool.begin().await?;
        let last: Option<i64> = sqlx::query_scalar("SELECT MAX(number) FROM workflows WHERE project_id = $1")
            .bind(project_id)
            .fetch_one(&mut *tx)
            .await?;
        let row = WorkflowRow {
            id: id.to_owned(),
            project_id: project_id.to_owned(),
            number: last.unwrap_or(0) + 1,
            ref_type: ref_type.to_owned(),
            label: label.to_owned(),
            sha: sha.to_owned(),
            created_ms: now_ms(),
        };
        sqlx::query(
            "INSERT INTO workflows (id, project_id, number, ref_type, label, sha, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&row.id)
        .bind(&row.project_id)
        .bind(row.number)
        .bind(&row.ref_type)
        .bind(&row.label)
        .bind(&row.sha)
        .bind(row.created_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    pub async fn create_pipeline(&self, p: &PipelineRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO pipelines (id, workflow_id, name, file, state, result, result_reason, error, promoted_by, created_ms, done_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
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
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn finish_pipeline(
        &self,
        id: &str,
        result: &str,
        reason: Option<&str>,
        error: Option<&str>,
    ) -> Result<()> {
        sqlx::query("UPDATE pipelines SET state = 'done', result = $2, result_reason = $3, error = $4, done_ms = $5 WHERE id = $1")
            .bind(id)
            .bind(result)
            .bind(reason)
            .bind(error)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn pipeline(&self, id: &str) -> Result<Option<PipelineRow>> {
        let row = sqlx::query(
            "SELECT id, workflow_id, name, file, state, result, result_reason, error, promoted_by, created_ms, done_ms \
             FROM pipelines WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| pipeline_row(&r)).transpose()
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
