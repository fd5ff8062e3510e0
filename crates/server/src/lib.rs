//! `salve serve`: the CI server, all on one axum router over the store. By file: a push, a
//! webhook or an API call becomes a workflow in `intake.rs`; the dispatcher runs queued
//! pipelines in `schedule.rs`; promotions fire in `promotions.rs`; `server.rs` holds the state
//! they share. Git hosting is `forge.rs` and `git_http.rs`, webhooks `webhook.rs`, projects
//! `projects.rs`; the REST API is `api/` (one file per resource, over `http.rs` and
//! `views.rs`), the pages `web/`.

pub mod api;
pub mod auth;
pub mod config;
pub mod executor;
pub mod forge;
pub mod git_http;
pub mod http;
pub mod intake;
pub mod projects;
pub mod promotions;
pub mod resume;
pub mod schedule;
pub mod scope;
pub mod server;
pub mod slots;
pub mod storage;
pub mod tasks;
pub mod views;
pub mod web;
pub mod webhook;

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests;

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::routing::{any, get, post};
use salve_store::Store;

pub use config::Config;
pub use server::ServeError;
use server::Server;

async fn metrics(State(server): State<Arc<Server>>) -> String {
    let m = &server.metrics;
    let queued = server.store.count_in_state("queuing").await.unwrap_or(0).max(0);
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
    };
    gauge("salve_queue_depth", "Pipelines waiting in a queue.", queued as u64);
    gauge("salve_running_pipelines", "Pipelines running now.", m.running_pipelines.load(Ordering::Relaxed));
    gauge("salve_running_jobs", "Jobs running now.", m.running_jobs.load(Ordering::Relaxed));
    let _ = writeln!(
        out,
        "# HELP salve_job_duration_seconds Time jobs ran, by result.\n# TYPE salve_job_duration_seconds summary"
    );
    if let Ok(jobs) = m.jobs_finished.lock() {
        for (result, (count, seconds)) in jobs.iter() {
            let _ = writeln!(out, "salve_job_duration_seconds_sum{{result=\"{result}\"}} {seconds:.3}");
            let _ = writeln!(out, "salve_job_duration_seconds_count{{result=\"{result}\"}} {count}");
        }
    }
    let _ = writeln!(
        out,
        "# HELP salve_pipelines_finished_total Pipelines finished, by result.\n# TYPE salve_pipelines_finished_total counter"
    );
    if let Ok(p) = m.pipelines_finished.lock() {
        for (result, count) in p.iter() {
            let _ = writeln!(out, "salve_pipelines_finished_total{{result=\"{result}\"}} {count}");
        }
    }
    let now = salve_store::now_ms();
    let depth = server.store.agent_queue_depth().await.unwrap_or_default();
    let _ = writeln!(
        out,
        "# HELP salve_agent_queue_depth Jobs waiting for an agent, by agent type.\n# TYPE salve_agent_queue_depth gauge"
    );
    for d in &depth {
        let _ = writeln!(out, "salve_agent_queue_depth{{agent_type=\"{}\"}} {}", d.agent_type, d.queued);
    }
    let _ = writeln!(
        out,
        "# HELP salve_agent_queue_oldest_seconds How long the oldest job waiting for an agent has waited, by agent type.\n# TYPE salve_agent_queue_oldest_seconds gauge"
    );
    for d in &depth {
        let waited = d.oldest_queued_ms.map_or(0.0, |q| (now - q).max(0) as f64 / 1000.0);
        let _ = writeln!(out, "salve_agent_queue_oldest_seconds{{agent_type=\"{}\"}} {waited:.3}", d.agent_type);
    }
    let _ = writeln!(
        out,
        "# HELP salve_agent_wait_seconds Time agent jobs waited in the queue before an agent claimed them (claims taken by this replica), by agent type.\n# TYPE salve_agent_wait_seconds summary"
    );
    if let Ok(waits) = m.agent_waits.lock() {
        for (t, (count, seconds)) in waits.iter() {
            let _ = writeln!(out, "salve_agent_wait_seconds_sum{{agent_type=\"{t}\"}} {seconds:.3}");
            let _ = writeln!(out, "salve_agent_wait_seconds_count{{agent_type=\"{t}\"}} {count}");
        }
    }
    let lost_after = server.lease_ms();
    let mut connected: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for a in server.store.agents().await.unwrap_or_default() {
        let state = views::agent(&a, now, lost_after, Vec::new()).state;
        if state == salve_contract::AgentState::Connected {
            *connected.entry(a.agent_type.clone()).or_default() += 1;
        }
    }
    let _ = writeln!(
        out,
        "# HELP salve_agents_connected Agents connected, by agent type.\n# TYPE salve_agents_connected gauge"
    );
    for (t, n) in &connected {
        let _ = writeln!(out, "salve_agents_connected{{agent_type=\"{t}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP salve_promotions_total Automatic promotions fired.\n# TYPE salve_promotions_total counter\nsalve_promotions_total {}",
        m.promotions.load(Ordering::Relaxed)
    );
    out
}

pub fn router(server: Arc<Server>) -> Router {
    let git = Router::new()
        .route("/git/{*path}", any(git_http::git))
        .route("/webhooks/github/{project}", post(webhook::github))
        .route("/webhooks/gitlab/{project}", post(webhook::gitlab))
        // Jobs on agents store caches and artifacts here: bodies as large as pushes.
        .route("/api/v1/storage/{project}/{area}", get(storage::root).put(storage::root).delete(storage::root))
        .route("/api/v1/storage/{project}/{area}/{*path}", get(storage::at).put(storage::at).delete(storage::at))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(server.clone());
    // MCP tools read the API in-process with the caller's own token.
    let mcp_api = salve_mcp::Api::in_process(api::router(server.clone()), server::organization_id());
    let mcp = Router::new()
        .nest_service("/mcp", salve_mcp::service(mcp_api, server.config.mcp_hosts(), server.config.mcp_write_tools))
        .layer(axum::middleware::from_fn_with_state(server.clone(), api::require_token));
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(server.clone())
        .merge(git)
        .merge(mcp)
        .merge(web::router(server.clone()))
        .merge(api::router(server))
}

/// Opens the store in `config`, recovers what a previous run left, and serves until SIGINT or
/// SIGTERM; `ready` gets the address it listens on.
pub async fn serve(config: Config, ready: impl FnOnce(&str)) -> Result<(), ServeError> {
    let store = Store::open(&config.database_url).await.map_err(ServeError::Database)?;
    let listen = |source| ServeError::Listen { addr: config.listen.clone(), source };
    let listener = tokio::net::TcpListener::bind(&config.listen).await.map_err(listen)?;
    let addr = listener.local_addr().map_err(listen)?;
    let mut config = config;
    config.listen = addr.to_string();
    let server = Server::new(config, store).await?;
    server.recover().await.map_err(ServeError::Recover)?;
    server.pushes_left_over().await;
    server.reconcile_refs().await;
    tokio::spawn(server.clone().dispatch());
    tokio::spawn(server.clone().schedule_tasks());
    ready(&server.base_url());
    let app = router(server.clone());
    let token = server.shutdown.clone();
    let signal = async move {
        shutdown().await;
        token.cancel();
    };
    let served = axum::serve(listener, app).with_graceful_shutdown(signal).await.map_err(ServeError::Stopped);
    server.stop_all(std::time::Duration::from_secs(10)).await;
    served
}

async fn shutdown() {
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}
