//! `salve serve`: the CI server. Git hosting over smart HTTP (`forge`), webhooks (`webhook`),
//! workflows, queues and promotions (`work`), the REST API (`api`), live logs and events
//! (`live`), Prometheus metrics, all on one axum router over the store.

pub mod api;
pub mod artifacts;
pub mod auth;
pub mod config;
pub mod failure;
pub mod forge;
pub mod heals;
pub mod live;
pub mod record;
pub mod scope;
pub mod web;
pub mod webhook;
pub mod work;

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests;

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::routing::{any, get, post};
use salve_store::{ProjectRow, Store};

pub use config::Config;
use work::{Server, WorkError};

/// A secret's name. Semaphore's may hold spaces (`Secret 1`); control characters and '/' are
/// refused.
pub fn valid_secret_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 128 && name.trim() == name && !name.chars().any(|c| c.is_control() || c == '/')
}

/// Creates a project: hosted (a bare repository Salve serves) when `repo_url` is `None`,
/// else external (fetched from `repo_url` when its webhook calls).
pub async fn create_project(
    server: &Server,
    name: &str,
    repo_url: Option<&str>,
    webhook_secret: Option<&str>,
) -> Result<ProjectRow, WorkError> {
    if !forge::valid_name(name) {
        return Err(WorkError::Invalid(format!(
            "'{name}' is not a valid project name: use 1-100 letters, digits, '.', '_' and '-', starting with a letter or digit"
        )));
    }
    let dir = forge::repo_dir(&server.config.data_dir, name);
    if server.store.project(name).await?.is_some() {
        return Err(WorkError::Conflict(format!("a project named '{name}' exists already")));
    }
    if let Some(url) = repo_url
        && (url.is_empty() || url.starts_with('-') || url.contains(['\n', '\0']))
    {
        return Err(WorkError::Invalid(format!("'{url}' is not a repository URL")));
    }
    let sealed = match webhook_secret {
        Some(s) if s.len() < 8 => {
            return Err(WorkError::Invalid("a webhook secret needs at least 8 characters".into()));
        }
        Some(s) => Some(
            server
                .sealer()
                .seal(
                    &format!("webhook:{name}"),
                    &salve_store::secrets::SecretData { env_vars: vec![("secret".into(), s.into())], files: vec![] },
                )
                .map_err(|e| WorkError::Internal(e.to_string()))?,
        ),
        None => None,
    };
    let dir_for_init = dir.clone();
    tokio::task::spawn_blocking(move || forge::init(&dir_for_init))
        .await
        .map_err(|e| WorkError::Internal(e.to_string()))?
        .map_err(WorkError::Internal)?;
    let row = ProjectRow {
        id: uuid::Uuid::new_v4().to_string(),
        name: name.to_owned(),
        // A hosted project's repository; an external one keeps its mirror here too.
        repo_url: dir.to_string_lossy().into_owned(),
        created_ms: salve_store::now_ms(),
        kind: if repo_url.is_some() { "external" } else { "hosted" }.into(),
        webhook_secret: sealed,
    };
    server.store.create_project(&row).await?;
    if let Some(url) = repo_url {
        webhook::set_upstream(&dir, url).map_err(WorkError::Internal)?;
    }
    Ok(row)
}

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
    let _ = writeln!(
        out,
        "# HELP salve_promotions_total Automatic promotions fired.\n# TYPE salve_promotions_total counter\nsalve_promotions_total {}",
        m.promotions.load(Ordering::Relaxed)
    );
    out
}

pub fn router(server: Arc<Server>) -> Router {
    let git = Router::new()
        .route("/git/{*path}", any(api::git))
        .route("/webhooks/github/{project}", post(webhook::github))
        .route("/webhooks/gitlab/{project}", post(webhook::gitlab))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(server.clone());
    // MCP tools read the API in-process with the caller's own token.
    let mcp_api = salve_mcp::Api::in_process(api::router(server.clone()), work::organization_id());
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
pub async fn serve(config: Config, ready: impl FnOnce(&str)) -> Result<(), String> {
    let store = Store::open(&config.database_url).await.map_err(|e| format!("cannot open the database: {e}"))?;
    let listener = tokio::net::TcpListener::bind(&config.listen).await.map_err(|e| {
        format!("cannot listen on {}: {e} (pick another address with --listen HOST:PORT)", config.listen)
    })?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let mut config = config;
    config.listen = addr.to_string();
    let server = Server::new(config, store).await?;
    server.recover().await.map_err(|e| format!("cannot recover the previous run's state: {e}"))?;
    server.pushes_left_over().await;
    server.reconcile_refs().await;
    tokio::spawn(server.clone().dispatch());
    ready(&server.base_url());
    let app = router(server.clone());
    let token = server.shutdown.clone();
    let signal = async move {
        shutdown().await;
        token.cancel();
    };
    let served = axum::serve(listener, app).with_graceful_shutdown(signal).await.map_err(|e| e.to_string());
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
