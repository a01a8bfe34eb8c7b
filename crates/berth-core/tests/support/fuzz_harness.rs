//! The request-handling fuzz harness, shared by the `cargo fuzz` target
//! (`fuzz/fuzz_targets/ecs_requests.rs`) and the stable test that runs it over seeded
//! random and mutated inputs (`tests/fuzz_requests.rs`).
//!
//! One input is a sequence of ECS requests against a fresh in-memory [`World`] that has a
//! cluster, a task definition and a registered container instance. Each request is
//! `[operation selector][length: 2 bytes][body]`; the selector picks one of the model's
//! ECS operations (implemented or not), and the body goes through the real path:
//! `berth_core::ecs::handle`, which decodes it with `berth_api::decode` into the
//! operation's input shape and runs the operation. After each request the harness checks:
//! - no panic (the fuzzer reports one as a crash);
//! - a refusal is a client error (status < 500) with a code and a message, leaves no
//!   mutations in the context, and leaves the world exactly as it was;
//! - an answer is a JSON object.

#![allow(dead_code, clippy::unwrap_used, unreachable_pub)]

use berth_api::Service;
use berth_core::agent_protocol::RegisterRequest;
use berth_core::{Ctx, PartitionKey, World, container_instance, ecs};
use rand::SeedableRng;
use rand::rngs::StdRng;

const NOW_MS: i64 = 1_800_000_000_000;

/// The partition every request acts in.
pub fn partition() -> PartitionKey {
    PartitionKey {
        account: "123456789012".into(),
        region: "us-east-1".into(),
    }
}

/// Every ECS operation of the model, in model order.
pub fn operations() -> Vec<&'static str> {
    Service::Ecs
        .operations()
        .iter()
        .map(|(name, _, _)| *name)
        .collect()
}

/// The operations Berth implements (the others answer `UnsupportedFeatureException`).
pub fn implemented() -> Vec<&'static str> {
    let mut rng = StdRng::seed_from_u64(0);
    let mut world = World::default();
    operations()
        .into_iter()
        .filter(|op| {
            let mut ctx = Ctx::new(NOW_MS, partition(), "root", &mut rng);
            !matches!(ecs::handle(&mut world, &mut ctx, op, b"{}"), Err(e) if e.code == "UnsupportedFeatureException")
        })
        .collect()
}

fn run_op(world: &mut World, rng: &mut StdRng, op: &str, body: &[u8]) -> Result<Vec<u8>, u16> {
    let mut ctx = Ctx::new(NOW_MS, partition(), "root", rng);
    ecs::handle(world, &mut ctx, op, body).map_err(|e| e.status)
}

/// A world with something in it: the `default` cluster, a task definition `web` and one
/// registered container instance, so that operations get past "not found".
pub fn seeded_world(rng: &mut StdRng) -> World {
    let mut world = World::default();
    let setup: [(&str, &str); 3] = [
        ("CreateCluster", r#"{"clusterName": "default"}"#),
        (
            "RegisterTaskDefinition",
            r#"{"family": "web", "containerDefinitions": [{"name": "app", "image": "nginx", "memory": 128, "cpu": 64, "portMappings": [{"containerPort": 80, "hostPort": 8080}]}]}"#,
        ),
        (
            "CreateService",
            r#"{"serviceName": "svc", "taskDefinition": "web", "desiredCount": 1}"#,
        ),
    ];
    for (op, body) in setup {
        if let Err(status) = run_op(&mut world, rng, op, body.as_bytes()) {
            panic!("seeding {op}: {status}");
        }
    }
    let req: RegisterRequest = serde_json::from_value(serde_json::json!({
        "protocol_version": berth_core::agent_protocol::PROTOCOL_VERSION,
        "cluster": "default", "region": "us-east-1", "token": "t",
        "container_instance_arn": null, "instance_token": null,
        "cpu_units": 2048, "memory_mib": 4096, "reserved_ports": [22],
        "attributes": [], "version_info": {}, "runtime": "process", "hostname": "h"
    }))
    .unwrap();
    let key = partition();
    let mut ctx = Ctx::new(NOW_MS, key.clone(), "agent", rng);
    container_instance::register(world.partition(&key), &mut ctx, &req, true).unwrap();
    world
}

/// Split an input into (operation, body) requests.
pub fn requests<'a>(ops: &[&'static str], mut data: &'a [u8]) -> Vec<(&'static str, &'a [u8])> {
    let mut out = Vec::new();
    while data.len() >= 3 && out.len() < 16 {
        let op = ops[usize::from(data[0]) % ops.len()];
        let len = usize::from(u16::from_le_bytes([data[1], data[2]])).min(data.len() - 3);
        out.push((op, &data[3..3 + len]));
        data = &data[3 + len..];
    }
    out
}

/// Encode requests in the input format (for seeds and structured generation).
pub fn encode(ops: &[&'static str], requests: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (op, body) in requests {
        let i = ops.iter().position(|o| o == op).unwrap_or(0);
        out.push(u8::try_from(i % 256).unwrap_or(0));
        let len = u16::try_from(body.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&body[..usize::from(len)]);
    }
    out
}

/// What one run did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Outcome {
    /// Requests answered.
    pub ok: usize,
    /// Requests refused.
    pub refused: usize,
}

/// Run one input and check the invariants (panics on a violation).
pub fn run(data: &[u8]) -> Outcome {
    let ops = operations();
    let mut rng = StdRng::seed_from_u64(u64::from(data.first().copied().unwrap_or(0)));
    let mut world = seeded_world(&mut rng);
    let mut outcome = Outcome::default();
    for (op, body) in requests(&ops, data) {
        let before = format!("{world:?}");
        let mut ctx = Ctx::new(NOW_MS, partition(), "root", &mut rng);
        match ecs::handle(&mut world, &mut ctx, op, body) {
            Ok(out) => {
                let v: serde_json::Value = serde_json::from_slice(&out)
                    .unwrap_or_else(|e| panic!("{op}: the answer is not JSON: {e}"));
                assert!(v.is_object(), "{op}: the answer is not an object: {v}");
                outcome.ok += 1;
            }
            Err(e) => {
                assert!(
                    e.status < 500,
                    "{op} {:?}: {} {}: {}",
                    String::from_utf8_lossy(body),
                    e.status,
                    e.code,
                    e.message
                );
                assert!(!e.code.is_empty() && !e.message.is_empty(), "{op}: {e:?}");
                assert!(
                    ctx.mutations.is_empty(),
                    "{op}: refused, but left mutations: {:?}",
                    ctx.mutations
                );
                drop(ctx);
                assert!(
                    format!("{world:?}") == before,
                    "{op} {:?}: refused, but the world changed",
                    String::from_utf8_lossy(body)
                );
                outcome.refused += 1;
            }
        }
    }
    outcome
}
