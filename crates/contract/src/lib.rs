//! The contract between Salve's parts: the words the server, the CLI, the MCP tools, the heal
//! and (next) remote agents exchange, as types instead of strings compared by hand. Each type
//! serialises to the name the REST API and the store use.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub mod api;
pub mod openapi;
pub mod time;

/// A closed set of names the API and the store use: an enum that serialises to them, with
/// `ALL`, `as_str`, `parse` and `Display`.
macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident ($noun:literal) { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, JsonSchema)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &[$name] = &[$($name::$variant),+];

            /// The name the API and the store use.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// The value called `name`, if one is.
            pub fn parse(name: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|v| v.as_str() == name)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        /// A name that is not one says which names are.
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let name = String::deserialize(d)?;
                $name::parse(&name).ok_or_else(|| {
                    let names: Vec<&str> = $name::ALL.iter().map(|v| v.as_str()).collect();
                    serde::de::Error::custom(format!("'{name}' is not {}: use one of {}", $noun, names.join(", ")))
                })
            }
        }
    };
}

vocabulary! {
    /// Where a pipeline, block or job is: waiting in its queue, running, or done.
    RunState ("a state") { Queuing = "queuing", Running = "running", Done = "done" }
}

vocabulary! {
    /// How a done pipeline, block or job ended.
    RunResult ("a result") { Passed = "passed", Failed = "failed", Stopped = "stopped", Canceled = "canceled" }
}

vocabulary! {
    /// What a workflow was built for.
    RefKind ("a kind of ref") { Branch = "branch", Tag = "tag", PullRequest = "pull-request" }
}

vocabulary! {
    /// Where a project's repository lives: on this server (`hosted`), upstream with webhooks
    /// (`external`), or a work tree `salve run` ran (`local`, never served).
    ProjectKind ("a kind of project") { Hosted = "hosted", External = "external", Local = "local" }
}

vocabulary! {
    /// Where an agent is: heartbeating, silent longer than its lease (its jobs are lost), or gone
    /// after saying goodbye.
    AgentState ("an agent's state") { Connected = "connected", Lost = "lost", Disconnected = "disconnected" }
}

vocabulary! {
    /// Where a heal is.
    HealState ("a heal's state") { Running = "running", Done = "done" }
}

vocabulary! {
    /// Where a pull request of the embedded forge is.
    PullState ("a pull request's state") { Open = "open", Merged = "merged", Closed = "closed" }
}

vocabulary! {
    /// What kind of failure a job's log shows (`salve_logs::classify` decides it). The class
    /// drives the heal: infrastructure failures are rerun, lint and format failures go to the
    /// fixers, the rest to an agent, and an environment failure is never "fixed" in the code.
    FailureClass ("a failure class") {
        OutOfMemory = "out_of_memory",
        Killed = "killed",
        Timeout = "timeout",
        NetworkInfrastructure = "network_infrastructure",
        /// The job's machine lacks a tool or toolchain: no change to the code fixes that.
        Environment = "environment",
        Configuration = "configuration",
        Dependency = "dependency",
        LintFormat = "lint_format",
        CompileError = "compile_error",
        TestFailure = "test_failure",
        Unknown = "unknown",
    }
}

// Written out: the vocabulary macro owns the enum's derives.
#[allow(clippy::derivable_impls)]
impl Default for FailureClass {
    fn default() -> FailureClass {
        FailureClass::Unknown
    }
}

impl FailureClass {
    /// The class `name` names; an unknown name (a newer Salve's class) is [`FailureClass::Unknown`].
    pub fn from_name(name: &str) -> FailureClass {
        FailureClass::parse(name).unwrap_or_default()
    }

    /// Not the code's fault: the network, the machine's limits, a time limit.
    pub fn is_infrastructure(self) -> bool {
        matches!(
            self,
            FailureClass::NetworkInfrastructure
                | FailureClass::Timeout
                | FailureClass::Killed
                | FailureClass::OutOfMemory
        )
    }

    /// The class's name for people: `lint format`, `compile error`.
    pub fn words(self) -> String {
        self.as_str().replace('_', " ")
    }
}

/// The prefix of a self-hosted agent type's name, as in Semaphore (`s1-gpu`): a job whose
/// machine type has it runs on agents of that type only.
pub const AGENT_TYPE_PREFIX: &str = "s1-";

/// An agent type's name: `s1-` and 1 to 64 letters, digits, `-` and `_`.
pub fn valid_agent_type_name(name: &str) -> bool {
    name.strip_prefix(AGENT_TYPE_PREFIX).is_some_and(|rest| {
        !rest.is_empty()
            && rest.len() <= 64
            && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// A secret's name. Semaphore's may hold spaces (`Secret 1`); control characters and '/' are
/// refused.
pub fn valid_secret_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 128 && name.trim() == name && !name.chars().any(|c| c.is_control() || c == '/')
}

vocabulary! {
    /// How a heal ended.
    HealOutcome ("an outcome") {
        /// A fix was verified and pushed to a `selfheal-*` branch.
        Pushed = "pushed",
        /// The failed jobs passed on a rerun of the same commit: no change made.
        Flaky = "flaky",
        /// A guard refused the fix (a weakened test, a rewritten expectation, …).
        Refused = "refused",
        /// No tier fixed it.
        Failed = "failed",
        /// Not attempted: a heal branch, a cap, a failure with a heal already, a missing tool.
        Skipped = "skipped",
        /// The branch moved on while the heal ran: the newer push's CI decides.
        Superseded = "superseded",
    }
}

impl HealOutcome {
    /// Whether the heal ended well: a fix pushed, a flake found, or nothing to do.
    pub fn is_success(self) -> bool {
        !matches!(self, HealOutcome::Refused | HealOutcome::Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip_by_name() {
        for &o in HealOutcome::ALL {
            assert_eq!(HealOutcome::parse(o.as_str()), Some(o));
            assert_eq!(serde_json::to_value(o).ok(), Some(serde_json::json!(o.as_str())));
            assert_eq!(o.to_string(), o.as_str());
        }
        assert_eq!(HealOutcome::parse("fixed"), None);
        assert!(HealOutcome::Flaky.is_success() && !HealOutcome::Refused.is_success());
        let refused = serde_json::from_value::<HealOutcome>(serde_json::json!("won")).map_err(|e| e.to_string());
        assert_eq!(
            refused.err().as_deref(),
            Some("'won' is not an outcome: use one of pushed, flaky, refused, failed, skipped, superseded")
        );
    }
}
