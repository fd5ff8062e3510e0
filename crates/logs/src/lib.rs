//! Failure analysis. Today: test reports (`junit`). The excerpt extraction, classification and
//! baseline diff of the failure-analysis issue will live here too. No network, no async.

pub mod excerpt;
pub mod junit;
