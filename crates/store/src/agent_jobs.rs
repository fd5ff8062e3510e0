//! The queue of agent jobs: a job of an agent type waits here until an agent of the type claims
//! it (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so replicas and agents never take one job twice;
//! SQLite: one writer, so the claiming statement is atomic), runs under a lease the agent
//! renews, and ends with the agent's report. A lease that lapses loses the attempt: the job is
//! queued once more, then fails with `agent_lost`. Every change is conditional on the attempt
//! and the agent, so a late word from a lost attempt changes nothing.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Backend, Result, Store, now_ms};

/// How many times a job is tried on agents before it fails with `agent_lost`.
pub const MAX_ATTEMPTS: i64 = 2;

/// Why a job failed when its agents were lost.
pub const AGENT_LOST: &str = "agent_lost";

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentJobRow {
    pub job_id: String,
    pub pipeline_id: String,
    pub agent_type: String,
    /// `queued`, `claimed` or `done`.
    pub state: String,
    pub attempt: i64,
    pub agent_id: Option<String>,
    pub lease_until_ms: Option<i64>,
    pub queued_ms: i64,
    /// Why the job must stop, once something asked it to.
    pub stop_reason: Option<String>,
    /// How it ended (the agent's report as JSON, or Salve's when no agent could finish it).
    pub report: Option<String>,
}

const AGENT_JOB: &str =
    "job_id, pipeline_id, agent_type, state, attempt, agent_id, lease_until_ms, queued_ms, stop_reason, report";

fn agent_job_row(r: &AnyRow) -> Result<AgentJobRow> {
    Ok(AgentJobRow {
        job_id: r.try_get("job_id")?,
        pipeline_id: r.try_get("pipeline_id")?,
        agent_type: r.try_get("agent_type")?,
        state: r.try_get("state")?,
        attempt: r.try_get("attempt")?,
        agent_id: r.try_get("agent_id")?,
        lease_until_ms: r.try_get("lease_until_ms")?,
        queued_ms: r.try_get("queued_ms")?,
        stop_reason: r.try_get("stop_reason")?,
        report: r.try_get("report")?,
    })
}

/// One attempt at an agent job.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AttemptRow {
    pub job_id: String,
    pub attempt: i64,
    pub agent_id: Option<String>,
    pub agent_name: Option<String>,
    pub queued_ms: i64,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    pub result: Option<String>,
    pub result_reason: Option<String>,
}

const ATTEMPT: &str =
    "job_id, attempt, agent_id, agent_name, queued_ms, started_ms, finished_ms, result, result_reason";

fn attempt_row(r: &AnyRow) -> Result<AttemptRow> {
    Ok(AttemptRow {
        job_id: r.try_get("job_id")?,
        attempt: r.try_get("attempt")?,
        agent_id: r.try_get("agent_id")?,
        agent_name: r.try_get("agent_name")?,
        queued_ms: r.try_get("queued_ms")?,
        started_ms: r.try_get("started_ms")?,
        finished_ms: r.try_get("finished_ms")?,
        result: r.try_get("result")?,
        result_reason: r.try_get("result_reason")?,
    })
}

/// A claimed job: its row and its sealed payload.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub row: AgentJobRow,
    pub payload: Vec<u8>,
    /// Where this attempt's log goes (the job's log folder).
    pub log_dir: String,
}

/// An agent's claim on a job, as a log chunk or report presents it.
#[derive(Debug, Clone)]
pub struct Held {
    pub row: AgentJobRow,
    pub log_dir: String,
}

/// What a lapsed lease led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    pub job_id: String,
    pub attempt: i64,
    /// Queued again (false: it failed with `agent_lost`).
    pub requeued: bool,
}

/// How a report was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    Stored,
    /// The same attempt reported already.
    Twice,
    /// The attempt is not this agent's, or not current (lost, stopped before it started).
    NotHeld,
}

/// Agents waiting for work of one type, and how long the oldest queued job has waited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDepth {
    pub agent_type: String,
    pub queued: i64,
    pub oldest_queued_ms: Option<i64>,
}

impl Store {
    /// Queues a job for agents of `agent_type` (its first attempt); a job queued already (by a
    /// replica that was lost) stays as it is.
    pub async fn enqueue_agent_job(
        &self,
        job_id: &str,
        pipeline_id: &str,
        agent_type: &str,
        payload: &[u8],
    ) -> Result<()> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let added = sqlx::query(
            "INSERT INTO agent_jobs (job_id, pipeline_id, agent_type, payload, state, attempt, queued_ms) \
             VALUES ($1, $2, $3, $4, 'queued', 1, $5) ON CONFLICT (job_id) DO NOTHING",
        )
        .bind(job_id)
        .bind(pipeline_id)
        .bind(agent_type)
        .bind(payload)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if added.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(());
        }
        sqlx::query("INSERT INTO job_attempts (job_id, attempt, queued_ms) VALUES ($1, 1, $2)")
            .bind(job_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Gives the oldest queued job of the agent's type to the agent, under a lease of
    /// `lease_ms`; none when there is no job or the agent's slots are all taken.
    pub async fn claim_agent_job(&self, agent: &crate::AgentRow, lease_ms: i64) -> Result<Option<ClaimedJob>> {
        let now = now_ms();
        let lock = if self.backend == Backend::Postgres { "FOR UPDATE SKIP LOCKED" } else { "" };
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            // One claim of an agent at a time, so its slots are counted right.
            sqlx::query("SELECT id FROM agents WHERE id = $1 FOR UPDATE").bind(&agent.id).execute(&mut *tx).await?;
        }
        // SQLite runs the one statement under its write lock: the count and the claim are one.
        let row = sqlx::query(&format!(
            "UPDATE agent_jobs SET state = 'claimed', agent_id = $1, lease_until_ms = $2 \
             WHERE state = 'queued' AND job_id = (SELECT job_id FROM agent_jobs WHERE state = 'queued' \
             AND agent_type = $3 ORDER BY queued_ms, job_id LIMIT 1 {lock}) \
             AND (SELECT COUNT(*) FROM agent_jobs WHERE agent_id = $1 AND state = 'claimed') < $4 \
             RETURNING {AGENT_JOB}, payload"
        ))
        .bind(&agent.id)
        .bind(now + lease_ms)
        .bind(&agent.agent_type)
        .bind(agent.slots)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(None);
        };
        let job = agent_job_row(&row)?;
        let payload: Vec<u8> = row.try_get("payload")?;
        sqlx::query("UPDATE job_attempts SET agent_id = $3, agent_name = $4, started_ms = $5 WHERE job_id = $1 AND attempt = $2")
            .bind(&job.job_id)
            .bind(job.attempt)
            .bind(&agent.id)
            .bind(&agent.name)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let log_dir: String = sqlx::query("SELECT log_dir FROM jobs WHERE id = $1")
            .bind(&job.job_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("log_dir")?;
        tx.commit().await?;
        Ok(Some(ClaimedJob { row: job, payload, log_dir }))
    }

    /// The agent's current claim on attempt `attempt` of a job, its lease renewed for
    /// `lease_ms` when half of it has passed; none when the agent holds no such claim.
    pub async fn hold_agent_job(
        &self,
        job_id: &str,
        attempt: i64,
        agent_id: &str,
        lease_ms: i64,
    ) -> Result<Option<Held>> {
        let row = sqlx::query(&format!(
            "SELECT {}, j.log_dir AS log_dir FROM agent_jobs a JOIN jobs j ON j.id = a.job_id \
             WHERE a.job_id = $1 AND a.attempt = $2 AND a.agent_id = $3 AND a.state = 'claimed'",
            prefixed("a", AGENT_JOB)
        ))
        .bind(job_id)
        .bind(attempt)
        .bind(agent_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut held = Held { row: agent_job_row(&row)?, log_dir: row.try_get("log_dir")? };
        let now = now_ms();
        if held.row.lease_until_ms.unwrap_or(0) < now + lease_ms / 2 {
            let renewed = sqlx::query(
                "UPDATE agent_jobs SET lease_until_ms = $4 WHERE job_id = $1 AND attempt = $2 AND agent_id = $3 \
                 AND state = 'claimed'",
            )
            .bind(job_id)
            .bind(attempt)
            .bind(agent_id)
            .bind(now + lease_ms)
            .execute(&self.pool)
            .await?;
            if renewed.rows_affected() == 0 {
                return Ok(None);
            }
            held.row.lease_until_ms = Some(now + lease_ms);
        }
        Ok(Some(held))
    }

    /// Takes the agent's report of an attempt it holds: the job is done.
    pub async fn finish_agent_job(
        &self,
        job_id: &str,
        attempt: i64,
        agent_id: &str,
        report: &str,
        result: &str,
        reason: Option<&str>,
    ) -> Result<Finish> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE agent_jobs SET state = 'done', report = $4, payload = $5, lease_until_ms = NULL \
             WHERE job_id = $1 AND attempt = $2 AND agent_id = $3 AND state = 'claimed'",
        )
        .bind(job_id)
        .bind(attempt)
        .bind(agent_id)
        .bind(report)
        .bind(Vec::<u8>::new())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            let twice = sqlx::query(
                "SELECT 1 AS one FROM agent_jobs a JOIN job_attempts t ON t.job_id = a.job_id AND t.attempt = a.attempt \
                 WHERE a.job_id = $1 AND a.attempt = $2 AND t.agent_id = $3 AND a.state = 'done' AND a.report IS NOT NULL \
                 AND t.result IS NOT NULL",
            )
            .bind(job_id)
            .bind(attempt)
            .bind(agent_id)
            .fetch_optional(&self.pool)
            .await?;
            return Ok(if twice.is_some() { Finish::Twice } else { Finish::NotHeld });
        }
        finish_attempt(&mut tx, job_id, attempt, now, result, reason).await?;
        tx.commit().await?;
        Ok(Finish::Stored)
    }

    /// Asks a job to stop. A job no agent has claimed yet is done at once with `report`
    /// (true); a claimed one keeps running until its agent hears it (false).
    pub async fn stop_agent_job(&self, job_id: &str, reason: &str, report: &str) -> Result<bool> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let dropped = sqlx::query(
            "UPDATE agent_jobs SET state = 'done', stop_reason = $2, report = $3, payload = $4 \
             WHERE job_id = $1 AND state = 'queued' RETURNING attempt",
        )
        .bind(job_id)
        .bind(reason)
        .bind(report)
        .bind(Vec::<u8>::new())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = dropped {
            let attempt: i64 = row.try_get("attempt")?;
            finish_attempt(&mut tx, job_id, attempt, now, "stopped", Some(reason)).await?;
            tx.commit().await?;
            return Ok(true);
        }
        sqlx::query(
            "UPDATE agent_jobs SET stop_reason = $2 WHERE job_id = $1 AND state = 'claimed' AND stop_reason IS NULL",
        )
        .bind(job_id)
        .bind(reason)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(false)
    }

    pub async fn agent_job(&self, job_id: &str) -> Result<Option<AgentJobRow>> {
        let row = sqlx::query(&format!("SELECT {AGENT_JOB} FROM agent_jobs WHERE job_id = $1"))
            .bind(job_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(agent_job_row).transpose()
    }

    /// Attempts of the jobs of a pipeline, by job, in order.
    pub async fn job_attempts(&self, pipeline_id: &str) -> Result<Vec<AttemptRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM job_attempts t JOIN jobs j ON j.id = t.job_id WHERE j.pipeline_id = $1 \
             ORDER BY t.job_id, t.attempt",
            prefixed("t", ATTEMPT)
        ))
        .bind(pipeline_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(attempt_row).collect()
    }

    /// Whether the agent holds a job of the project (it may fetch its repository).
    pub async fn agent_holds_project(&self, agent_id: &str, project_id: &str) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM agent_jobs a JOIN pipelines p ON p.id = a.pipeline_id \
             JOIN workflows w ON w.id = p.workflow_id \
             WHERE a.agent_id = $1 AND a.state = 'claimed' AND w.project_id = $2 LIMIT 1",
        )
        .bind(agent_id)
        .bind(project_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Jobs an agent holds.
    pub async fn agent_held_jobs(&self, agent_id: &str) -> Result<Vec<AgentJobRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {AGENT_JOB} FROM agent_jobs WHERE agent_id = $1 AND state = 'claimed' ORDER BY job_id"
        ))
        .bind(agent_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(agent_job_row).collect()
    }

    /// Ends the leases of an agent's jobs now (it said goodbye with jobs unfinished): the next
    /// reap finds them lost.
    pub async fn release_agent_jobs(&self, agent_id: &str) -> Result<u64> {
        let done = sqlx::query("UPDATE agent_jobs SET lease_until_ms = 0 WHERE agent_id = $1 AND state = 'claimed'")
            .bind(agent_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Claims whose lease lapsed: each such attempt is lost. The job is queued again (its next
    /// attempt logs into `<log dir>/attempt-N`) until `MAX_ATTEMPTS`, then done with `report`
    /// (failed, `agent_lost`). Safe to run from every replica at once: each change is made by
    /// the one that wins its conditional update.
    pub async fn reap_lost_agent_jobs(&self, report: &str) -> Result<Vec<Lost>> {
        let now = now_ms();
        let rows = sqlx::query(
            "SELECT job_id, attempt FROM agent_jobs WHERE state = 'claimed' AND lease_until_ms < $1 ORDER BY job_id",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let mut lost = Vec::new();
        for row in rows {
            let job_id: String = row.try_get("job_id")?;
            let attempt: i64 = row.try_get("attempt")?;
            let requeued = attempt < MAX_ATTEMPTS;
            let mut tx = self.pool.begin().await?;
            let changed = if requeued {
                sqlx::query(
                    "UPDATE agent_jobs SET state = 'queued', attempt = attempt + 1, agent_id = NULL, \
                     lease_until_ms = NULL, queued_ms = $3 \
                     WHERE job_id = $1 AND attempt = $2 AND state = 'claimed' AND lease_until_ms < $3",
                )
                .bind(&job_id)
                .bind(attempt)
                .bind(now)
                .execute(&mut *tx)
                .await?
            } else {
                sqlx::query(
                    "UPDATE agent_jobs SET state = 'done', report = $4, payload = $5, lease_until_ms = NULL \
                     WHERE job_id = $1 AND attempt = $2 AND state = 'claimed' AND lease_until_ms < $3",
                )
                .bind(&job_id)
                .bind(attempt)
                .bind(now)
                .bind(report)
                .bind(Vec::<u8>::new())
                .execute(&mut *tx)
                .await?
            };
            if changed.rows_affected() == 0 {
                tx.rollback().await?;
                continue;
            }
            finish_attempt(&mut tx, &job_id, attempt, now, "failed", Some(AGENT_LOST)).await?;
            if requeued {
                let next = attempt + 1;
                sqlx::query("INSERT INTO job_attempts (job_id, attempt, queued_ms) VALUES ($1, $2, $3)")
                    .bind(&job_id)
                    .bind(next)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                let dir: String = sqlx::query("SELECT log_dir FROM jobs WHERE id = $1")
                    .bind(&job_id)
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get("log_dir")?;
                // The first attempt logs into the job's folder; later ones into folders of
                // their own inside it, so a lost attempt's late chunks never mix in.
                let base = dir.rsplit_once("/attempt-").map_or(dir.as_str(), |(b, _)| b);
                sqlx::query("UPDATE jobs SET log_dir = $2 WHERE id = $1")
                    .bind(&job_id)
                    .bind(format!("{base}/attempt-{next}"))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            lost.push(Lost { job_id, attempt, requeued });
        }
        Ok(lost)
    }

    /// Queued agent jobs per agent type, with the oldest one's queue time.
    pub async fn agent_queue_depth(&self) -> Result<Vec<QueueDepth>> {
        let rows = sqlx::query(
            "SELECT agent_type, COUNT(*) AS queued, MIN(queued_ms) AS oldest FROM agent_jobs WHERE state = 'queued' \
             GROUP BY agent_type ORDER BY agent_type",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(QueueDepth {
                    agent_type: r.try_get("agent_type")?,
                    queued: r.try_get("queued")?,
                    oldest_queued_ms: r.try_get("oldest")?,
                })
            })
            .collect()
    }
}

async fn finish_attempt(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    job_id: &str,
    attempt: i64,
    now: i64,
    result: &str,
    reason: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "UPDATE job_attempts SET finished_ms = $3, result = $4, result_reason = $5 WHERE job_id = $1 AND attempt = $2",
    )
    .bind(job_id)
    .bind(attempt)
    .bind(now)
    .bind(result)
    .bind(reason)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// `a.x, a.y` for the columns `x, y` of the table aliased `a`.
fn prefixed(alias: &str, columns: &str) -> String {
    columns.split(", ").map(|c| format!("{alias}.{c}")).collect::<Vec<_>>().join(", ")
}
