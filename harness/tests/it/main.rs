//! The harness's integration tests: one binary, one module per feature.

mod contract;
mod engines;
mod property;
mod regressions;
mod snapshots;
