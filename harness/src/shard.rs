//! A deterministic part of a run's cases (`--shard k/n`), so that a run can
//! be spread over many runners and merged back (by `syncgate merge`).

/// A deterministic part of a run's cases: case `i` belongs to shard
/// `i % count`. The `count` shards of one seed together run exactly the
/// cases one run of that seed runs (each with its own seed `S/i`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Default for Shard {
    fn default() -> Shard {
        Shard { index: 0, count: 1 }
    }
}

impl Shard {
    /// The shard's `j`-th case.
    pub(crate) fn case(self, j: u64) -> u64 {
        self.index + j * self.count
    }

    /// How many of the cases `0..cases` are the shard's.
    pub(crate) fn cases_of(self, cases: u64) -> u64 {
        cases.saturating_sub(self.index).div_ceil(self.count)
    }

    /// `k/n`, as `--shard` takes it.
    pub fn parse(text: &str) -> Result<Shard, BadShard> {
        let bad = |why: &'static str| BadShard {
            given: text.to_string(),
            why,
        };
        let (k, n) = text
            .split_once('/')
            .ok_or_else(|| bad("expected k/n, e.g. 0/3 (shards are counted from 0)"))?;
        let (Ok(index), Ok(count)) = (k.trim().parse::<u64>(), n.trim().parse::<u64>()) else {
            return Err(bad("k and n must be whole numbers, e.g. 0/3"));
        };
        if count == 0 || index >= count {
            return Err(bad("k must be below n (the n shards are 0/n, 1/n, ..., (n-1)/n)"));
        }
        Ok(Shard { index, count })
    }
}

/// A `--shard` value that is not `k/n` with `k < n`: the caller's usage error.
#[derive(Debug, thiserror::Error)]
#[error("--shard {given:?}: {why}")]
pub struct BadShard {
    given: String,
    why: &'static str,
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}
