//! README's test command runs the gate itself, as a proptest property with a
//! modest number of cases: every generated scenario passes every check on
//! the reference engine.

use proptest::prelude::*;
use syncgate::gate::default_base_dir;
use syncgate::run::run_case;
use syncgate::scenario::{scenario_strategy, GenConfig};
use syncgate::subject::reference::ReferenceEngine;

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn reference_engine_agrees_with_the_model(scenario in scenario_strategy(&GenConfig { replicas: None, steps: 30, ..GenConfig::default() }).expect("the built-in schema")) {
        let result = run_case(&ReferenceEngine::new(), &scenario, &default_base_dir());
        if let Some((step, violation)) = &result.failure {
            let trace = result.trace.join("\n");
            prop_assert!(false, "{} at step {step}: {}\n{trace}", violation.invariant, violation.detail);
        }
    }
}

#[test]
fn the_same_scenario_runs_the_same_twice() {
    // Determinism: same seed, same trace and final state, byte for byte.
    let gen = GenConfig::default();
    for case in 0..8 {
        let seed = syncgate::seed::case_seed("determinism", case);
        let scenario = syncgate::seed::generate(&seed, &gen).expect("generate");
        let base = default_base_dir();
        let a = run_case(&ReferenceEngine::new(), &scenario, &base);
        let b = run_case(&ReferenceEngine::new(), &scenario, &base);
        assert_eq!(a.trace, b.trace, "seed {seed}");
        assert_eq!(a.final_state, b.final_state, "seed {seed}");
        assert!(a.failure.is_none(), "seed {seed}: {:?}", a.failure);
    }
}
