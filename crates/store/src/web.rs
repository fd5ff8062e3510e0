//! Web sessions and pull request comments.

use sqlx::Row;

use crate::{Result, Store, TokenRow, now_ms};

/// A signed-in browser: the token it signed in with and its form token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub token: TokenRow,
    pub csrf: String,
    pub expires_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentRow {
    pub id: String,
    pub pull_id: String,
    pub author: String,
    pub body: String,
    pub created_ms: i64,
}

impl Store {
    pub async fn create_session(&self, hash: &str, token_id: &str, csrf: &str, expires_ms: i64) -> Result<()> {
        sqlx::query("INSERT INTO sessions (hash, token_id, csrf, created_ms, expires_ms) VALUES ($1, $2, $3, $4, $5)")
            .bind(hash)
            .bind(token_id)
            .bind(csrf)
            .bind(now_ms())
            .bind(expires_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The live session with this hash (its token still exists and it has not expired).
    pub async fn session(&self, hash: &str) -> Result<Option<SessionRow>> {
        let row = sqlx::query(
            "SELECT t.id, t.name, t.created_ms, t.last_used_ms, t.project_id, s.csrf, s.expires_ms FROM sessions s \
             JOIN tokens t ON t.id = s.token_id WHERE s.hash = $1 AND s.expires_ms > $2",
        )
        .bind(hash)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(SessionRow {
                token: TokenRow {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    created_ms: r.try_get("created_ms")?,
                    last_used_ms: r.try_get("last_used_ms")?,
                    project_id: r.try_get("project_id")?,
                },
                csrf: r.try_get("csrf")?,
                expires_ms: r.try_get("expires_ms")?,
            })
        })
        .transpose()
    }

    /// Ends a session, and any that expired.
    pub async fn end_session(&self, hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE hash = $1 OR expires_ms <= $2")
            .bind(hash)
            .bind(now_ms())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn add_comment(&self, c: &CommentRow) -> Result<()> {
        sqlx::query("INSERT INTO pull_comments (id, pull_id, author, body, created_ms) VALUES ($1, $2, $3, $4, $5)")
            .bind(&c.id)
            .bind(&c.pull_id)
            .bind(&c.author)
            .bind(&c.body)
            .bind(c.created_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn comments(&self, pull_id: &str) -> Result<Vec<CommentRow>> {
        let rows = sqlx::query(
            "SELECT id, pull_id, author, body, created_ms FROM pull_comments WHERE pull_id = $1 ORDER BY created_ms",
        )
        .bind(pull_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(CommentRow {
                    id: r.try_get("id")?,
                    pull_id: r.try_get("pull_id")?,
                    author: r.try_get("author")?,
                    body: r.try_get("body")?,
                    created_ms: r.try_get("created_ms")?,
                })
            })
            .collect()
    }
}
