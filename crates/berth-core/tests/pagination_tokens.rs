//! Pagination tokens on the wire: every ECS listing seals its `nextToken` with the
//! server's key, bound to the operation and the caller's partition, and refuses anything
//! else (forged, edited, another server's, another operation's or another account's) with
//! `InvalidParameterException`, changing nothing.
//!
//! The model check at the end makes sure that no implemented listing bypasses the sealing:
//! every operation of botocore's ECS model whose input has a `nextToken` member must refuse
//! the plain (unsealed) token format that the operations use internally.

// Test code: helpers may panic on anything unexpected.
#![allow(clippy::unwrap_used)]

use berth_core::pagination::{TokenKey, encode_token};
use berth_core::{Ctx, PartitionKey, World, ecs};
use rand::SeedableRng;
use serde_json::{Value, json};

const NOW_MS: i64 = 1_700_000_000_000;

fn partition(account: &str) -> PartitionKey {
    PartitionKey {
        account: account.into(),
        region: "us-east-1".into(),
    }
}

/// Run one operation as `account` with the server key `key`: (ok, JSON answer or error).
fn call(
    world: &mut World,
    key: &TokenKey,
    account: &str,
    op: &str,
    body: &Value,
) -> Result<Value, (String, String)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut ctx =
        Ctx::new(NOW_MS, partition(account), "root", &mut rng).with_token_key(key.clone());
    let body = serde_json::to_vec(body).unwrap();
    match ecs::handle(world, &mut ctx, op, &body) {
        Ok(out) => Ok(serde_json::from_slice(&out).unwrap()),
        Err(e) => {
            assert!(
                ctx.mutations.is_empty(),
                "a refused {op} left mutations behind"
            );
            Err((e.code.to_string(), e.message))
        }
    }
}

fn key() -> TokenKey {
    TokenKey::from_bytes([42; 32])
}

fn world_with_clusters(n: usize) -> World {
    let mut world = World::default();
    for i in 0..n {
        call(
            &mut world,
            &key(),
            "111111111111",
            "CreateCluster",
            &json!({"clusterName": format!("c{i:02}")}),
        )
        .unwrap();
    }
    world
}

#[test]
fn tokens_page_through_and_reveal_nothing() {
    let mut world = world_with_clusters(5);
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({"maxResults": 2});
        if let Some(t) = &token {
            body["nextToken"] = json!(t);
        }
        let page = call(&mut world, &key(), "111111111111", "ListClusters", &body).unwrap();
        for arn in page["clusterArns"].as_array().unwrap() {
            seen.push(
                arn.as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_string(),
            );
        }
        match page.get("nextToken").and_then(Value::as_str) {
            Some(t) => {
                assert!(
                    !t.contains("636c75737465722f"),
                    "the last key shows through: {t}"
                );
                assert!(
                    t.bytes().all(|b| b.is_ascii_hexdigit()),
                    "opaque and URL-safe: {t}"
                );
                token = Some(t.to_string());
            }
            None => break,
        }
    }
    assert_eq!(seen, ["c00", "c01", "c02", "c03", "c04"]);
}

#[test]
fn forged_edited_and_transplanted_tokens_are_refused() {
    let mut world = world_with_clusters(3);
    let first = call(
        &mut world,
        &key(),
        "111111111111",
        "ListClusters",
        &json!({"maxResults": 1}),
    )
    .unwrap();
    let token = first["nextToken"].as_str().unwrap().to_string();
    let snapshot = format!("{:?}", world.partition(&partition("111111111111")).clusters);

    let mut flipped = token.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
    let flipped = String::from_utf8(flipped).unwrap();
    let refused: Vec<(&str, TokenKey, &str, &str, String)> = vec![
        // (why, server key, account, operation, token)
        (
            "forged plain token",
            key(),
            "111111111111",
            "ListClusters",
            encode_token("arn:aws:ecs:us-east-1:111111111111:cluster/c00"),
        ),
        ("edited", key(), "111111111111", "ListClusters", flipped),
        (
            "truncated",
            key(),
            "111111111111",
            "ListClusters",
            token[..token.len() - 2].to_string(),
        ),
        (
            "another server's key",
            TokenKey::from_bytes([7; 32]),
            "111111111111",
            "ListClusters",
            token.clone(),
        ),
        (
            "another account",
            key(),
            "222222222222",
            "ListClusters",
            token.clone(),
        ),
        (
            "another operation",
            key(),
            "111111111111",
            "ListTaskDefinitionFamilies",
            token.clone(),
        ),
        (
            "garbage",
            key(),
            "111111111111",
            "ListClusters",
            "\u{0}\u{ffff}%%".into(),
        ),
        (
            "huge",
            key(),
            "111111111111",
            "ListClusters",
            "ab".repeat(5_000),
        ),
    ];
    for (why, k, account, op, t) in refused {
        let (code, message) =
            call(&mut world, &k, account, op, &json!({"nextToken": t})).unwrap_err();
        assert_eq!(code, "InvalidParameterException", "{why}: {message}");
        assert!(message.contains("nextToken"), "{why}: {message}");
    }
    assert_eq!(
        format!("{:?}", world.partition(&partition("111111111111")).clusters),
        snapshot
    );
    // The genuine token still works after all that.
    let second = call(
        &mut world,
        &key(),
        "111111111111",
        "ListClusters",
        &json!({"maxResults": 1, "nextToken": token}),
    )
    .unwrap();
    assert_eq!(second["clusterArns"].as_array().unwrap().len(), 1);
}

/// A value for a required member of the model's input shape, good enough to get past
/// validation to the token check.
fn filler(shapes: &serde_json::Map<String, Value>, shape: &str) -> Value {
    let s = &shapes[shape];
    match s["type"].as_str().unwrap() {
        "string" => match s["enum"].as_array() {
            Some(values) => values[0].clone(),
            None => json!("x"),
        },
        "integer" | "long" => json!(1),
        "boolean" => json!(true),
        "list" => json!([]),
        _ => json!({}),
    }
}

#[test]
fn every_implemented_listing_refuses_unsealed_tokens() {
    let model: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../berth-api/model/ecs.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let shapes = model["shapes"].as_object().unwrap();
    let mut checked = Vec::new();
    for (op, spec) in model["operations"].as_object().unwrap() {
        let Some(input) = spec["input"]["shape"].as_str() else {
            continue;
        };
        if shapes[input]["members"].get("nextToken").is_none() {
            continue;
        }
        let mut body = serde_json::Map::new();
        for required in shapes[input]["required"].as_array().into_iter().flatten() {
            let name = required.as_str().unwrap();
            let member_shape = shapes[input]["members"][name]["shape"].as_str().unwrap();
            body.insert(name.to_string(), filler(shapes, member_shape));
        }
        let mut world = World::default();
        let probe = call(
            &mut world,
            &key(),
            "111111111111",
            op,
            &Value::Object(body.clone()),
        );
        if matches!(&probe, Err((code, _)) if code == "UnsupportedFeatureException") {
            continue; // not implemented
        }
        body.insert("nextToken".into(), json!(encode_token("anything")));
        let (code, message) =
            call(&mut world, &key(), "111111111111", op, &Value::Object(body)).expect_err(op);
        assert_eq!(code, "InvalidParameterException", "{op}: {message}");
        assert!(message.contains("nextToken"), "{op}: {message}");
        checked.push(op.clone());
    }
    for op in [
        "ListClusters",
        "ListTaskDefinitions",
        "ListTaskDefinitionFamilies",
        "ListServices",
        "ListTasks",
        "ListContainerInstances",
        "ListAttributes",
    ] {
        assert!(
            checked.iter().any(|c| c == op),
            "{op} not checked: {checked:?}"
        );
    }
}
