//! The runner's integration tests: real bash, real bubblewrap.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suite;
