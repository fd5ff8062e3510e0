//! The store's integration tests: every test runs on a real SQLite file and a real PostgreSQL
//! database (scripts/test.sh starts one and sets SALVE_TEST_POSTGRES_URL).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suite;
