//! Tuning and limits of one replica.

/// Distinct statements the engine prepares per connection, with room to spare.
pub(crate) const STATEMENT_CACHE_CAPACITY: usize = 256;

/// Deepest cascade a remote delete follows (rule D2). A schema whose
/// references nest deeper makes the push fail with `Error::CascadeTooDeep`
/// instead of recursing without bound.
pub const CASCADE_DEPTH_MAX: usize = 64;

/// Tuning and limits. Outcomes depend on `drift_ms_max` and `push_batch_max`
/// only; the rest is about waiting and memory.
#[derive(Clone, Debug)]
pub struct Config {
    /// Pulled stamps further ahead of this replica's clock are refused.
    pub drift_ms_max: i64,
    /// A push batch (one remote transaction) holds whole local transactions
    /// and stops growing once the next one would take it past this.
    pub push_batch_max: usize,
    /// Rows read from the remote per page during a pull.
    pub pull_page_rows: usize,
    /// How long SQLite itself waits on a lock before reporting busy.
    pub busy_timeout_ms: u64,
    /// Attempts after the first before a sync or write returns `Error::Busy`.
    pub busy_retries_max: u32,
    /// First backoff between attempts; doubles up to `backoff_max_ms`.
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// `synchronous=FULL` on the cache: a committed write survives power loss.
    pub durable: bool,
    /// A deliberately planted bug, for the harness's mutant catalog.
    #[cfg(feature = "mutants")]
    pub mutant: Option<crate::mutant::Mutant>,
}

impl Config {
    /// Whether `mutant` is planted: always false without the mutants feature.
    #[inline]
    pub(crate) fn planted(&self, mutant: crate::mutant::Mutant) -> bool {
        #[cfg(feature = "mutants")]
        {
            self.mutant == Some(mutant)
        }
        #[cfg(not(feature = "mutants"))]
        {
            let _ = mutant;
            false
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            drift_ms_max: 60_000,
            push_batch_max: 10_000,
            pull_page_rows: 1_000,
            busy_timeout_ms: 5_000,
            busy_retries_max: 5,
            backoff_base_ms: 50,
            backoff_max_ms: 2_000,
            durable: true,
            #[cfg(feature = "mutants")]
            mutant: None,
        }
    }
}
