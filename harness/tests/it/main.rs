//! The harness's integration tests: one binary, one module per feature.

mod property;
mod regressions;
mod snapshots;
