//! The fuzz harness (`tests/support/fuzz_harness.rs`, also the `cargo fuzz` target in
//! `fuzz/`) run on stable over inputs from a seeded RNG: requests generated from the ECS
//! model (valid, boundary, invalid) and byte-level mutations of them, several requests per
//! input, each checked for no panic, client-error refusals that change nothing, and JSON
//! answers.
//!
//! `BERTH_FUZZ_INPUTS` sets the number of inputs (default 2,000, a few seconds);
//! `BERTH_FUZZ_SEED` the seed (default 1).

#![allow(clippy::unwrap_used)]

#[path = "support/fuzz_harness.rs"]
mod harness;
#[path = "support/model_gen.rs"]
mod model_gen;

use model_gen::{Mode, Model, mutate};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn request_handling_survives_generated_and_mutated_input() {
    let inputs = env_number("BERTH_FUZZ_INPUTS", 2_000);
    let seed = env_number("BERTH_FUZZ_SEED", 1);
    let mut model = Model::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../berth-api/model/ecs.json"),
    );
    model.names = ["default", "web", "web:1", "svc", "missing"]
        .map(String::from)
        .to_vec();
    let ops = harness::operations();
    let implemented = harness::implemented();
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut requests, mut ok, mut refused) = (0usize, 0usize, 0usize);
    for _ in 0..inputs {
        let n = rng.random_range(1..6);
        let mut bodies: Vec<(&str, Vec<u8>)> = Vec::new();
        for _ in 0..n {
            let pool = if rng.random_bool(0.9) {
                &implemented
            } else {
                &ops
            };
            let op = *pool.choose(&mut rng).unwrap();
            let mode = *[Mode::Valid, Mode::Boundary, Mode::Invalid]
                .choose(&mut rng)
                .unwrap();
            let mut body = serde_json::to_vec(&model.request(op, &mut rng, mode)).unwrap();
            if rng.random_bool(0.3) {
                mutate(&mut body, &mut rng);
            }
            body.truncate(usize::from(u16::MAX));
            bodies.push((op, body));
        }
        let refs: Vec<(&str, &[u8])> = bodies.iter().map(|(o, b)| (*o, b.as_slice())).collect();
        let mut data = harness::encode(&ops, &refs);
        // Raw bytes now and then: the harness must take anything.
        if rng.random_bool(0.05) {
            mutate(&mut data, &mut rng);
        }
        let outcome = harness::run(&data);
        requests += outcome.ok + outcome.refused;
        ok += outcome.ok;
        refused += outcome.refused;
    }
    eprintln!(
        "fuzz_requests: {inputs} inputs, {requests} requests ({ok} answered, {refused} refused), seed {seed}"
    );
    assert!(ok > 0 && refused > 0, "{ok} answered, {refused} refused");
}
