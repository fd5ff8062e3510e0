//! The one integration-test binary of `salve-pipeline`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suite;
