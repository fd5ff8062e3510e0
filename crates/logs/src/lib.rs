//! Failure analysis: excerpts (`excerpt`, with or without baselines, in one streaming pass),
//! classes and fingerprints (`classify`), test reports (`junit`) and the report of a failed job
//! that combines them (`report`). No network, no async.

pub mod classify;
pub mod excerpt;
pub mod junit;
pub mod line;
pub mod report;
pub mod semaphore;
pub mod steps;
