//! What a sync did, and what `Replica::status` tells.

/// What a sync did, exactly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Outbox entries acknowledged (applied on the remote, then removed).
    pub pushed: u64,
    /// Remote rows received.
    pub pulled: u64,
    /// Writes that did not take effect as written (see SEMANTICS.md, rule S6).
    pub conflicts: u64,
}

impl std::ops::AddAssign for SyncReport {
    fn add_assign(&mut self, other: SyncReport) {
        self.pushed += other.pushed;
        self.pulled += other.pulled;
        self.conflicts += other.conflicts;
    }
}

/// What `status()` tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub replica: u32,
    /// Captured writes not yet acknowledged by the remote.
    pub pending: u64,
    /// The last completed sync step's report.
    pub last_report: Option<SyncReport>,
    /// The last failed sync step's error message.
    pub last_error: Option<String>,
    /// Busy retries since this replica was opened.
    pub busy_retries: u64,
}
