//! The harness's integration tests: one binary, one module per feature.

mod ci_reports;
mod contract;
mod declared_schema;
mod engines;
mod harness_faults;
mod interleave;
mod layout;
mod pg_cursor;
mod pg_places;
mod pg_sessions;
mod promises;
mod property;
mod regressions;
mod shards;
mod snapshots;
mod support;
mod timeline;
mod version2;
