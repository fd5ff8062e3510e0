//! The runner's records as the agent protocol carries them (`salve_contract::api`), both ways:
//! an agent sends its job's commands in its report, and the server records them from it.

use salve_contract::api;
use salve_runner::CommandRecord;
use salve_runner::script::Phase;

/// A command record as an agent reports it.
pub fn to_wire(c: &CommandRecord) -> api::AgentCommand {
    api::AgentCommand {
        phase: c.phase.name().to_owned(),
        index: c.index as u64,
        command: c.command.clone(),
        started_ms: c.started_ms,
        duration_ms: c.duration_ms,
        exit_code: c.exit_code,
        first_line: c.first_line,
        end_line: c.end_line,
    }
}

/// The command record an agent reported; none when its phase or index is not one.
pub fn from_wire(c: api::AgentCommand) -> Option<CommandRecord> {
    Some(CommandRecord {
        phase: Phase::parse(&c.phase)?,
        index: usize::try_from(c.index).ok()?,
        command: c.command,
        started_ms: c.started_ms,
        duration_ms: c.duration_ms,
        exit_code: c.exit_code,
        first_line: c.first_line,
        end_line: c.end_line,
    })
}
