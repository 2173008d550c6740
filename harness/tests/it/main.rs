//! The harness's integration tests: one binary, one module per feature.

mod contract;
mod engines;
mod pg_cursor;
mod pg_sessions;
mod property;
mod regressions;
mod snapshots;
mod support;
