//! The agents page: agent types, and each agent with its state, the jobs it runs now and its
//! last heartbeat. Not for a project's token (agents serve every project).

use askama::Template;
use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use crate::web::html;

use super::*;

pub(super) struct AgentLine {
    name: String,
    agent_type: String,
    version: String,
    state: String,
    slots: i64,
    jobs: Vec<String>,
    seen: String,
}

#[derive(Template)]
#[template(path = "agents.html")]
pub(super) struct AgentsPage {
    csrf: String,
    who: String,
    types: Vec<(String, bool)>,
    agents: Vec<AgentLine>,
}

pub async fn agents(State(server): S, Extension(s): Sess) -> Response {
    if s.token.project_id.is_some() {
        return error(&s, StatusCode::FORBIDDEN, "Agents", "A project's token does not see the agents.");
    }
    let (types, rows) = match (server.store.agent_types().await, server.store.agents().await) {
        (Ok(t), Ok(a)) => (t, a),
        (Err(e), _) | (_, Err(e)) => return internal(&s, e),
    };
    let now = salve_store::now_ms();
    let mut agents = Vec::new();
    for a in rows {
        let jobs = match crate::api::agents::held(&server, &a.id).await {
            Ok(j) => j,
            Err(e) => return internal(&s, e.1),
        };
        let view = crate::views::agent(&a, now, server.lease_ms(), jobs);
        agents.push(AgentLine {
            name: view.name,
            agent_type: view.agent_type,
            version: view.version,
            state: view.state.to_string(),
            slots: view.slots,
            jobs: view.jobs,
            seen: html::ago(view.last_seen_ms),
        });
    }
    page(&AgentsPage {
        csrf: s.csrf.clone(),
        who: s.token.name.clone(),
        types: types.into_iter().map(|t| (t.name, t.disabled_ms.is_none())).collect(),
        agents,
    })
}
