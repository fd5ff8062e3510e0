//! `salve agent-type`: self-hosted agent types (`s1-NAME`) on a server: create (prints the
//! registration token on its last line, the only time it is shown), list, disable. `salve agent
//! list`: the agents that registered, with their state and last heartbeat.

use clap::Subcommand;
use salve_contract::api;

use crate::client::{Client, ServerArgs, encode};
use crate::{err, out};

#[derive(Subcommand)]
pub enum AgentTypeCommand {
    /// Create an agent type; jobs whose machine type is NAME run on its agents only. The last
    /// line printed is the registration token agents of this type start with.
    Create {
        /// `s1-` and 1 to 64 letters, digits, `-` and `_` (s1-linux-gpu).
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List agent types.
    List(ServerArgs),
    /// Disable an agent type: its agents register no more, and pipelines naming it fail at creation.
    Disable {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub fn run(command: AgentTypeCommand) -> u8 {
    let server = match &command {
        AgentTypeCommand::Create { server, .. } | AgentTypeCommand::Disable { server, .. } => server,
        AgentTypeCommand::List(server) => server,
    };
    let client = match Client::new(server) {
        Ok(c) => c,
        Err(e) => {
            err!("salve agent-type: {e}");
            return 2;
        }
    };
    let done = match command {
        AgentTypeCommand::Create { name, .. } => {
            client.post::<api::AgentTypeCreated>("/api/v1/agent-types", &api::NewAgentType { name }).map(|made| {
                out!("Agent type {} created. Its agents start with this registration token (shown once):", made.name);
                out!("{}", made.registration_token);
            })
        }
        AgentTypeCommand::List(_) => client.get::<api::AgentTypeList>("/api/v1/agent-types").map(|list| {
            if list.agent_types.is_empty() {
                out!("no agent types (`salve agent-type create s1-NAME` makes one)");
            }
            for t in list.agent_types {
                out!("{}  {}", t.name, if t.disabled { "disabled" } else { "enabled" });
            }
        }),
        AgentTypeCommand::Disable { name, .. } => client
            .post::<api::AgentType>(&format!("/api/v1/agent-types/{}/disable", encode(&name)), &())
            .map(|t| out!("agent type {} disabled", t.name)),
    };
    match done {
        Ok(()) => 0,
        Err(e) => {
            err!("salve agent-type: {e}");
            1
        }
    }
}

#[derive(Subcommand)]
pub enum AgentCommand {
    /// Agents: name, type, version, state (connected, lost, disconnected), the jobs they run,
    /// last heartbeat.
    List(ServerArgs),
}

pub fn agents(command: AgentCommand) -> u8 {
    let AgentCommand::List(server) = command;
    let listed = Client::new(&server).and_then(|c| c.get::<api::AgentList>("/api/v1/agents").map_err(String::from));
    match listed {
        Ok(list) => {
            if list.agents.is_empty() {
                out!("no agents (they register with `salve agent-type create`'s token)");
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            for a in list.agents {
                let ago = (now - a.last_seen_ms).max(0) / 1000;
                let running =
                    if a.jobs.is_empty() { "idle".to_owned() } else { format!("running {}", a.jobs.join(" ")) };
                out!(
                    "{}  {}  {}  {}  {} slots  {running}  seen {ago}s ago",
                    a.name,
                    a.agent_type,
                    a.state,
                    a.version,
                    a.slots
                );
            }
            0
        }
        Err(e) => {
            err!("salve agent list: {e}");
            1
        }
    }
}
