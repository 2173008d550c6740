//! Hybrid-logical-clock stamps and the injected wall clock.

/// A write's stamp: hybrid logical clock value, then the replica that made
/// it. Later stamps win; equal clock values fall back to the replica id, so
/// the order is total and every replica decides it the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp {
    pub hlc: i64,
    pub replica: u32,
}

/// Bits of logical counter below the physical milliseconds in an HLC value.
pub const HLC_LOGICAL_BITS: u32 = 16;

/// Bytes one stamp takes in the remote's stamp column.
const STAMP_BYTES: usize = 12;

impl Stamp {
    /// The wall-clock milliseconds this stamp was made at (or pushed to by
    /// causality).
    pub fn ms(self) -> i64 {
        self.hlc >> HLC_LOGICAL_BITS
    }

    pub(crate) fn encode_all(stamps: &[Stamp]) -> Vec<u8> {
        let mut out = Vec::with_capacity(stamps.len() * STAMP_BYTES);
        for s in stamps {
            out.extend_from_slice(&s.hlc.to_le_bytes());
            out.extend_from_slice(&s.replica.to_le_bytes());
        }
        out
    }

    /// `None` when `bytes` does not hold exactly `n` stamps.
    pub(crate) fn decode_all(bytes: &[u8], n: usize) -> Option<Vec<Stamp>> {
        if bytes.len() != n * STAMP_BYTES {
            return None;
        }
        bytes
            .chunks_exact(STAMP_BYTES)
            .map(|c| {
                Some(Stamp {
                    hlc: i64::from_le_bytes(c[..8].try_into().ok()?),
                    replica: u32::from_le_bytes(c[8..].try_into().ok()?),
                })
            })
            .collect()
    }
}

/// The HLC value of wall-clock time `ms` with a zero logical counter.
pub fn hlc_of_ms(ms: i64) -> i64 {
    ms << HLC_LOGICAL_BITS
}

/// Where the engine gets time, and how it waits between busy retries.
/// Injected, so tests control time and skew.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch, as this machine believes.
    fn now_ms(&self) -> i64;
    /// Waits `ms` before a retry.
    fn sleep_ms(&self, ms: u64);
}

/// The machine's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(
        clippy::disallowed_methods,
        reason = "the one production clock; everything else is injected"
    )]
    fn now_ms(&self) -> i64 {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
    }

    fn sleep_ms(&self, ms: u64) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}
