//! The contract between Salve's parts: the words the server, the CLI, the MCP tools, the heal
//! and (next) remote agents exchange, as types instead of strings compared by hand. Each type
//! serialises to the name the REST API and the store use.

use serde::{Deserialize, Serialize};

/// How a heal ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealOutcome {
    /// A fix was verified and pushed to a `selfheal-*` branch.
    Pushed,
    /// The failed jobs passed on a rerun of the same commit: no change made.
    Flaky,
    /// A guard refused the fix (a weakened test, a rewritten expectation, …).
    Refused,
    /// No tier fixed it.
    Failed,
    /// Not attempted: a heal branch, a cap, a failure with a heal already, a missing tool.
    Skipped,
    /// The branch moved on while the heal ran: the newer push's CI decides.
    Superseded,
}

impl HealOutcome {
    pub const ALL: [HealOutcome; 6] = [
        HealOutcome::Pushed,
        HealOutcome::Flaky,
        HealOutcome::Refused,
        HealOutcome::Failed,
        HealOutcome::Skipped,
        HealOutcome::Superseded,
    ];

    /// The name the API, the store and the logs use.
    pub fn as_str(self) -> &'static str {
        match self {
            HealOutcome::Pushed => "pushed",
            HealOutcome::Flaky => "flaky",
            HealOutcome::Refused => "refused",
            HealOutcome::Failed => "failed",
            HealOutcome::Skipped => "skipped",
            HealOutcome::Superseded => "superseded",
        }
    }

    /// The outcome called `name`, if one is.
    pub fn parse(name: &str) -> Option<HealOutcome> {
        HealOutcome::ALL.into_iter().find(|o| o.as_str() == name)
    }

    /// Whether the heal ended well: a fix pushed, a flake found, or nothing to do.
    pub fn is_success(self) -> bool {
        !matches!(self, HealOutcome::Refused | HealOutcome::Failed)
    }
}

impl std::fmt::Display for HealOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip_by_name() {
        for o in HealOutcome::ALL {
            assert_eq!(HealOutcome::parse(o.as_str()), Some(o));
            assert_eq!(serde_json::to_value(o).ok(), Some(serde_json::json!(o.as_str())));
            assert_eq!(o.to_string(), o.as_str());
        }
        assert_eq!(HealOutcome::parse("fixed"), None);
        assert!(HealOutcome::Flaky.is_success() && !HealOutcome::Refused.is_success());
    }
}
