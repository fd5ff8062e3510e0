//! Heal attempts and the embedded forge's pull requests.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, Store, StoreError, now_ms};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HealRow {
    pub id: String,
    pub project_id: String,
    pub pipeline_id: String,
    pub sha: String,
    pub branch: String,
    pub fingerprint: String,
    pub job_id: Option<String>,
    /// `running` or `done`.
    pub state: String,
    /// pushed, flaky, refused, failed, skipped or superseded.
    pub outcome: Option<String>,
    /// What the heal did, a JSON object.
    pub report: String,
    pub created_ms: i64,
    pub finished_ms: Option<i64>,
    /// The branch the heal pushed (`selfheal-…`), when it pushed one.
    pub heal_branch: Option<String>,
    /// The number of the pull request opened from that branch, once there is one.
    pub pull_request: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PullRow {
    pub id: String,
    pub project_id: String,
    pub number: i64,
    pub head: String,
    pub base: String,
    pub title: String,
    pub body: String,
    /// `open`, `merged` or `closed`.
    pub state: String,
    pub created_by: String,
    pub created_ms: i64,
    pub merged_sha: Option<String>,
    pub merged_ms: Option<i64>,
}

const HEAL: &str = "id, project_id, pipeline_id, sha, branch, fingerprint, job_id, state, outcome, report, created_ms, \
                    finished_ms, heal_branch, pull_request";
const PULL: &str =
    "id, project_id, number, head, base, title, body, state, created_by, created_ms, merged_sha, merged_ms";

impl Store {
    /// Claims the heal of a failure: `Ok(Err(existing))` when this commit's failure with this
    /// fingerprint has a heal already (one heal per SHA and fingerprint).
    pub async fn claim_heal(&self, h: &HealRow) -> Result<std::result::Result<HealRow, HealRow>> {
        let inserted = sqlx::query(
            "INSERT INTO heals (id, project_id, pipeline_id, sha, branch, fingerprint, job_id, state, report, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'running', '{}', $8) ON CONFLICT (sha, fingerprint) DO NOTHING",
        )
        .bind(&h.id)
        .bind(&h.project_id)
        .bind(&h.pipeline_id)
        .bind(&h.sha)
        .bind(&h.branch)
        .bind(&h.fingerprint)
        .bind(&h.job_id)
        .bind(h.created_ms)
        .execute(&self.pool)
        .await?;
        let existing = sqlx::query(&format!("SELECT {HEAL} FROM heals WHERE sha = $1 AND fingerprint = $2"))
            .bind(&h.sha)
            .bind(&h.fingerprint)
            .fetch_one(&self.pool)
            .await?;
        let row = heal_row(&existing)?;
        Ok(if inserted.rows_affected() == 1 { Ok(row) } else { Err(row) })
    }

    /// Ends a running heal with its outcome, report and the branch it pushed; false when it was
    /// done already. A pull request already open from that branch is linked.
    pub async fn finish_heal(&self, id: &str, outcome: &str, report: &str, heal_branch: Option<&str>) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE heals SET state = 'done', outcome = $2, report = $3, finished_ms = $4, heal_branch = $5, \
             pull_request = (SELECT MAX(p.number) FROM pulls p WHERE p.project_id = heals.project_id AND p.head = $5) \
             WHERE id = $1 AND state = 'running'",
        )
        .bind(id)
        .bind(outcome)
        .bind(report)
        .bind(now_ms())
        .bind(heal_branch)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The heal that pushed `heal_branch` in the project, if one did.
    pub async fn heal_of_branch(&self, project_id: &str, heal_branch: &str) -> Result<Option<HealRow>> {
        let row = sqlx::query(&format!(
            "SELECT {HEAL} FROM heals WHERE project_id = $1 AND heal_branch = $2 ORDER BY created_ms DESC LIMIT 1"
        ))
        .bind(project_id)
        .bind(heal_branch)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(heal_row).transpose()
    }

    /// The heals of a failed pipeline, oldest first.
    pub async fn heals_of_pipeline(&self, pipeline_id: &str) -> Result<Vec<HealRow>> {
        let rows = sqlx::query(&format!("SELECT {HEAL} FROM heals WHERE pipeline_id = $1 ORDER BY created_ms"))
            .bind(pipeline_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(heal_row).collect()
    }

    /// Fills the heal links of heals recorded before the columns existed, from their reports.
    pub(crate) async fn backfill_heal_links(&self) -> Result<()> {
        let rows = sqlx::query("SELECT id, project_id, report FROM heals WHERE heal_branch IS NULL")
            .fetch_all(&self.pool)
            .await?;
        for r in &rows {
            let (id, project, report): (String, String, String) =
                (r.try_get("id")?, r.try_get("project_id")?, r.try_get("report")?);
            let branch = serde_json::from_str::<serde_json::Value>(&report)
                .ok()
                .and_then(|v| v["heal_branch"].as_str().map(str::to_owned));
            let Some(branch) = branch else { continue };
            sqlx::query(
                "UPDATE heals SET heal_branch = $2, \
                 pull_request = (SELECT MAX(p.number) FROM pulls p WHERE p.project_id = $3 AND p.head = $2) WHERE id = $1",
            )
            .bind(&id)
            .bind(&branch)
            .bind(&project)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    pub async fn heal(&self, id: &str) -> Result<Option<HealRow>> {
        let row =
            sqlx::query(&format!("SELECT {HEAL} FROM heals WHERE id = $1")).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(heal_row).transpose()
    }

    /// Heals, newest first: of a project (all when `None`), of a branch, created since `since_ms`.
    pub async fn heals(
        &self,
        project_id: Option<&str>,
        branch: Option<&str>,
        since_ms: i64,
        limit: i64,
    ) -> Result<Vec<HealRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {HEAL} FROM heals WHERE ($1 = '' OR project_id = $1) AND ($2 = '' OR branch = $2) \
             AND created_ms >= $3 ORDER BY created_ms DESC LIMIT $4"
        ))
        .bind(project_id.unwrap_or(""))
        .bind(branch.unwrap_or(""))
        .bind(since_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(heal_row).collect()
    }

    /// Opens a pull request, numbered next in its project; `Ok(Err(existing))` when its head
    /// has an open one already.
    pub async fn open_pull(&self, p: &PullRow) -> Result<std::result::Result<PullRow, PullRow>> {
        let mut tx = self.pool.begin().await?;
        // A write first, as for workflow numbers: concurrent creations take turns.
        sqlx::query("UPDATE projects SET id = id WHERE id = $1").bind(&p.project_id).execute(&mut *tx).await?;
        let open =
            sqlx::query(&format!("SELECT {PULL} FROM pulls WHERE project_id = $1 AND head = $2 AND state = 'open'"))
                .bind(&p.project_id)
                .bind(&p.head)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(row) = open {
            return Ok(Err(pull_row(&row)?));
        }
        let last: Option<i64> = sqlx::query_scalar("SELECT MAX(number) FROM pulls WHERE project_id = $1")
            .bind(&p.project_id)
            .fetch_one(&mut *tx)
            .await?;
        let row = PullRow { number: last.unwrap_or(0) + 1, state: "open".into(), ..p.clone() };
        sqlx::query(
            "INSERT INTO pulls (id, project_id, number, head, base, title, body, state, created_by, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', $8, $9)",
        )
        .bind(&row.id)
        .bind(&row.project_id)
        .bind(row.number)
        .bind(&row.head)
        .bind(&row.base)
        .bind(&row.title)
        .bind(&row.body)
        .bind(&row.created_by)
        .bind(row.created_ms)
        .execute(&mut *tx)
        .await?;
        // The heal that pushed this branch now links to its pull request.
        sqlx::query("UPDATE heals SET pull_request = $3 WHERE project_id = $1 AND heal_branch = $2")
            .bind(&row.project_id)
            .bind(&row.head)
            .bind(row.number)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Ok(row))
    }

    pub async fn pull(&self, project_id: &str, number: i64) -> Result<Option<PullRow>> {
        let row = sqlx::query(&format!("SELECT {PULL} FROM pulls WHERE project_id = $1 AND number = $2"))
            .bind(project_id)
            .bind(number)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(pull_row).transpose()
    }

    /// Pull requests, newest first: of a project (all when `None`), in a state (any when `None`).
    pub async fn pulls(&self, project_id: Option<&str>, state: Option<&str>, limit: i64) -> Result<Vec<PullRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {PULL} FROM pulls WHERE ($1 = '' OR project_id = $1) AND ($2 = '' OR state = $2) \
             ORDER BY created_ms DESC, number DESC LIMIT $3"
        ))
        .bind(project_id.unwrap_or(""))
        .bind(state.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(pull_row).collect()
    }

    /// Marks an open pull request merged (or closed, with `merged_sha` `None`).
    pub async fn end_pull(&self, id: &str, merged_sha: Option<&str>) -> Result<()> {
        let done = sqlx::query(
            "UPDATE pulls SET state = $2, merged_sha = $3, merged_ms = $4 WHERE id = $1 AND state = 'open'",
        )
        .bind(id)
        .bind(if merged_sha.is_some() { "merged" } else { "closed" })
        .bind(merged_sha)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict("the pull request is not open any more".into()));
        }
        Ok(())
    }
}

fn heal_row(r: &AnyRow) -> Result<HealRow> {
    Ok(HealRow {
        id: r.try_get("id")?,
        project_id: r.try_get("project_id")?,
        pipeline_id: r.try_get("pipeline_id")?,
        sha: r.try_get("sha")?,
        branch: r.try_get("branch")?,
        fingerprint: r.try_get("fingerprint")?,
        job_id: r.try_get("job_id")?,
        state: r.try_get("state")?,
        outcome: r.try_get("outcome")?,
        report: r.try_get("report")?,
        created_ms: r.try_get("created_ms")?,
        finished_ms: r.try_get("finished_ms")?,
        heal_branch: r.try_get("heal_branch")?,
        pull_request: r.try_get("pull_request")?,
    })
}

fn pull_row(r: &AnyRow) -> Result<PullRow> {
    Ok(PullRow {
        id: r.try_get("id")?,
        project_id: r.try_get("project_id")?,
        number: r.try_get("number")?,
        head: r.try_get("head")?,
        base: r.try_get("base")?,
        title: r.try_get("title")?,
        body: r.try_get("body")?,
        state: r.try_get("state")?,
        created_by: r.try_get("created_by")?,
        created_ms: r.try_get("created_ms")?,
        merged_sha: r.try_get("merged_sha")?,
        merged_ms: r.try_get("merged_ms")?,
    })
}
