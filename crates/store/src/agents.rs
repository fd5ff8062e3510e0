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

/// A registered agent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentRow {
    pub id: String,
    pub agent_type: String,
    pub name: String,
    pub version: String,
    /// Jobs it runs at once.
    pub slots: i64,
    pub registered_ms: i64,
    /// Its last heartbeat (or registration).
    pub last_seen_ms: i64,
    /// When it said goodbye (SIGTERM); none while it is connected.
    pub disconnected_ms: Option<i64>,
}

const AGENT: &str = "id, agent_type, name, version, slots, registered_ms, last_seen_ms, disconnected_ms";

fn agent_row(r: &AnyRow) -> Result<AgentRow> {
    Ok(AgentRow {
        id: r.try_get("id")?,
        agent_type: r.try_get("agent_type")?,
        name: r.try_get("name")?,
        version: r.try_get("version")?,
        slots: r.try_get("slots")?,
        registered_ms: r.try_get("registered_ms")?,
        last_seen_ms: r.try_get("last_seen_ms")?,
        disconnected_ms: r.try_get("disconnected_ms")?,
    })
}

impl Store {
    /// Records a new agent with its token's hash.
    pub async fn register_agent(&self, a: &AgentRow, token_hash: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO agents (id, agent_type, name, version, slots, token_hash, registered_ms, last_seen_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&a.id)
        .bind(&a.agent_type)
        .bind(&a.name)
        .bind(&a.version)
        .bind(a.slots)
        .bind(token_hash)
        .bind(a.registered_ms)
        .bind(a.last_seen_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The connected agent whose token has this hash, of a type still enabled, marked as seen
    /// now.
    pub async fn agent_seen(&self, token_hash: &str) -> Result<Option<AgentRow>> {
        let row = sqlx::query(&format!(
            "UPDATE agents SET last_seen_ms = $2 WHERE token_hash = $1 AND disconnected_ms IS NULL \
             AND agent_type IN (SELECT name FROM agent_types WHERE disabled_ms IS NULL) RETURNING {AGENT}"
        ))
        .bind(token_hash)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(agent_row).transpose()
    }

    /// The connected agent whose token has this hash, of a type still enabled (its last
    /// heartbeat unchanged).
    pub async fn agent_by_token(&self, token_hash: &str) -> Result<Option<AgentRow>> {
        let row = sqlx::query(&format!(
            "SELECT {AGENT} FROM agents WHERE token_hash = $1 AND disconnected_ms IS NULL \
             AND agent_type IN (SELECT name FROM agent_types WHERE disabled_ms IS NULL)"
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(agent_row).transpose()
    }

    /// Marks an agent disconnected (it said goodbye); false when it was already.
    pub async fn disconnect_agent(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE agents SET disconnected_ms = $2 WHERE id = $1 AND disconnected_ms IS NULL")
            .bind(id)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Agents, connected ones first, newest registration first.
    pub async fn agents(&self) -> Result<Vec<AgentRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {AGENT} FROM agents ORDER BY (disconnected_ms IS NULL) DESC, registered_ms DESC"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(agent_row).collect()
    }
}
