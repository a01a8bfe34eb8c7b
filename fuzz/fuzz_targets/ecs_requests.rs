//! libFuzzer target: a sequence of ECS requests through `berth_api::decode` and
//! `berth_core::ecs::handle` on an in-memory world, checked by the shared harness
//! (`crates/berth-core/tests/support/fuzz_harness.rs`): no panic, refusals are client
//! errors that change nothing, answers are JSON objects.
//!
//! ```text
//! cargo install cargo-fuzz
//! cd fuzz && cargo +nightly fuzz run ecs_requests -- -max_total_time=300
//! ```

#![no_main]

#[path = "../../crates/berth-core/tests/support/fuzz_harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::run(data);
});
