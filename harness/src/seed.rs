//! Seeds: any string (a number, a commit hash) names a run; `RUN/N` names
//! its N-th case, and every case replays from that name alone.

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use crate::error::HarnessError;
use crate::scenario::{scenario_strategy, GenConfig, Scenario};

/// The name of case `case` of run `run_seed`.
pub fn case_seed(run_seed: &str, case: u64) -> String {
    format!("{run_seed}/{case}")
}

/// A ChaCha generator keyed by the seed's bytes (FNV-1a, then splitmix64),
/// stable across platforms and releases.
pub fn rng_for(seed: &str) -> TestRng {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut key = [0_u8; 32];
    for chunk in key.chunks_exact_mut(8) {
        h = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = h;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        chunk.copy_from_slice(&z.to_le_bytes());
    }
    TestRng::from_seed(RngAlgorithm::ChaCha, &key)
}

/// The scenario a case seed names.
pub fn generate(seed: &str, gen: &GenConfig) -> Result<Scenario, HarnessError> {
    let mut runner = TestRunner::new_with_rng(Config::default(), rng_for(seed));
    scenario_strategy(gen)?
        .new_tree(&mut runner)
        .map(|tree| tree.current())
        .map_err(|reason| HarnessError::Setup(format!("cannot generate a scenario for seed {seed:?}: {reason}")))
}
