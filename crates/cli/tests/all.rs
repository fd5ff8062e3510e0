//! The one integration-test binary of the `salve` CLI: runs the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suite;
