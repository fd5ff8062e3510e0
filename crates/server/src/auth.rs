//! API tokens: random, shown once, stored as their SHA-256. A request carries one as a bearer
//! token (`Authorization: Bearer …`) or, for git over HTTP, as the basic-auth password with
//! any user name.

use axum::http::HeaderMap;
use base64::Engine as _;
use salve_store::{Store, TokenRow};
use sha2::{Digest, Sha256};

/// A new token (`salve_` and 64 hex digits) and its stored form.
pub fn new_token() -> (String, String) {
    let token = format!("salve_{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let hash = hash(&token);
    (token, hash)
}

pub fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates a token named `name`; returns it (the only time it is seen).
pub async fn create(store: &Store, name: &str) -> salve_store::Result<(TokenRow, String)> {
    create_for(store, name, None).await
}

/// Creates a token limited to `project_id` when given (see [`scoped_refusal`]).
pub async fn create_for(
    store: &Store,
    name: &str,
    project_id: Option<&str>,
) -> salve_store::Result<(TokenRow, String)> {
    let (token, hash) = new_token();
    let id = uuid::Uuid::new_v4().to_string();
    store.create_token(&id, name, &hash, project_id).await?;
    let row = TokenRow {
        id,
        name: name.to_owned(),
        created_ms: salve_store::now_ms(),
        last_used_ms: None,
        project_id: project_id.map(str::to_owned),
    };
    Ok((row, token))
}

/// What a project's token may not do, before its project is even looked at: anything with
/// tokens, secrets, agent types or agents, and any write but recording heals, opening pull requests and MCP calls
/// (the handlers of those check the project). `None` when the call may go on.
pub fn scoped_refusal(method: &axum::http::Method, path: &str) -> Option<&'static str> {
    if ["/api/v1/tokens", "/api/v1/secrets", "/api/v1/agent-types", "/api/v1/agents"]
        .iter()
        .any(|p| path.starts_with(p))
    {
        return Some("tokens, secrets, agent types and agents");
    }
    let reading = matches!(*method, axum::http::Method::GET | axum::http::Method::HEAD);
    let allowed_write = path == "/api/v1/heals"
        || (path.starts_with("/api/v1/heals/") && path.ends_with("/finish"))
        || path == "/api/v1/pulls"
        || path == "/mcp"
        || path.starts_with("/mcp/");
    (!reading && !allowed_write).then_some("changes other than heals and pull requests")
}

/// The token a request presents, if any.
pub fn presented(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" | "token" => Some(rest.trim().to_owned()),
        "basic" => {
            let decoded = base64::engine::general_purpose::STANDARD.decode(rest.trim()).ok()?;
            let text = String::from_utf8(decoded).ok()?;
            Some(text.split_once(':').map_or(text.clone(), |(_, password)| password.to_owned()))
        }
        _ => None,
    }
}

/// The name of the token an agent job gets for its project's storage, before the job's id: it
/// opens the storage routes and nothing else.
pub const STORAGE_TOKEN: &str = "storage of job ";

/// The storage token's name of one attempt of an agent job (a job has at most two attempts, so
/// no name is another's prefix).
pub fn storage_token_name(job_id: &str, attempt: i64) -> String {
    format!("{STORAGE_TOKEN}{job_id} attempt {attempt}")
}

/// The stored API token matching what the request presents (a job's storage token is not one).
pub async fn check(store: &Store, headers: &HeaderMap) -> Option<TokenRow> {
    check_any(store, headers).await.filter(|t| !t.name.starts_with(STORAGE_TOKEN))
}

/// The stored token matching what the request presents, storage tokens included.
pub async fn check_any(store: &Store, headers: &HeaderMap) -> Option<TokenRow> {
    let token = presented(headers)?;
    if token.is_empty() || token.len() > 200 {
        return None;
    }
    store.use_token(&hash(&token)).await.ok().flatten()
}
