//! The engine's integration tests: compiled plans run on the real runner (no sandbox here; the
//! CLI suite runs the same paths in bubblewrap).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suite;
