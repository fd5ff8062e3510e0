//! Failure analysis: excerpts (`excerpt`, with or without baselines), test reports (`junit`) and
//! the report of a failed job that combines them (`report`). No network, no async.

pub mod excerpt;
pub mod junit;
pub mod report;
