//! Agent types: Semaphore's self-hosted agent types (`s1-NAME`). A pipeline whose jobs name one
//! waits for agents of that type; agents register with the type's token.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, Store, StoreError, now_ms};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentTypeRow {
    pub name: String,
    pub created_ms: i64,
    /// When it was disabled: it registers no agent and runs no job any more.
    pub disabled_ms: Option<i64>,
}

const AGENT_TYPE: &str = "name, created_ms, disabled_ms";

fn agent_type_row(r: &AnyRow) -> Result<AgentTypeRow> {
    Ok(AgentTypeRow {
        name: r.try_get("name")?,
        created_ms: r.try_get("created_ms")?,
        disabled_ms: r.try_get("disabled_ms")?,
    })
}

impl Store {
    /// A new agent type with its registration token's hash; `Conflict` when the name is taken.
    pub async fn create_agent_type(&self, name: &str, token_hash: &str) -> Result<AgentTypeRow> {
        let done = sqlx::query(
            "INSERT INTO agent_types (name, token_hash, created_ms) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(token_hash)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("an agent type named '{name}' exists already")));
        }
        self.agent_type(name).await?.ok_or_else(|| StoreError::Conflict(format!("agent type {name} vanished")))
    }

    pub async fn agent_type(&self, name: &str) -> Result<Option<AgentTypeRow>> {
        let row = sqlx::query(&format!("SELECT {AGENT_TYPE} FROM agent_types WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(agent_type_row).transpose()
    }

    pub async fn agent_types(&self) -> Result<Vec<AgentTypeRow>> {
        let rows =
            sqlx::query(&format!("SELECT {AGENT_TYPE} FROM agent_types ORDER BY name")).fetch_all(&self.pool).await?;
        rows.iter().map(agent_type_row).collect()
    }

    /// The enabled agent type whose registration token has this hash.
    pub async fn agent_type_by_token(&self, token_hash: &str) -> Result<Option<AgentTypeRow>> {
        let row =
            sqlx::query(&format!("SELECT {AGENT_TYPE} FROM agent_types WHERE token_hash = $1 AND disabled_ms IS NULL"))
                .bind(token_hash)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(agent_type_row).transpose()
    }

    /// Disables an agent type; false when there is none of that name or it was disabled already.
    pub async fn disable_agent_type(&self, name: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE agent_types SET disabled_ms = $2 WHERE name = $1 AND disabled_ms IS NULL")
            .bind(name)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
