#![allow(clippy::unwrap_used)]
//! End-to-end tests of hostile input against the real binary: pagination tokens that are
//! opaque and tamper-evident (ECS and CloudWatch Logs, across a restart), JSON nested too
//! deep, strings too long, and arrays where structures belong. Every refusal is an
//! AWS-shaped 400 and changes nothing.

mod common;

use common::{AwsResultExt, Berth, LOGS_PREFIX, arns};
use serde_json::{Value, json};

fn assert_refused(status: u16, body: &Value, code: &str, message_part: &str) {
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["__type"], code, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(message_part),
        "{message:?} lacks {message_part:?}"
    );
}

#[test]
fn pagination_tokens_are_opaque_tamper_evident_and_survive_a_restart() {
    let mut berth = Berth::start();
    for name in ["a", "b", "c"] {
        berth.ecs_ok("CreateCluster", &json!({"clusterName": name}));
    }
    let page = berth.ecs_ok("ListClusters", &json!({"maxResults": 1}));
    let token = page["nextToken"].as_str().unwrap().to_string();
    assert!(
        !token.contains("636c7573746572"),
        "the token shows the last key (hex of 'cluster'): {token}"
    );
    let clusters_before = berth.cluster_names();

    // Forged, edited, transplanted: InvalidParameterException, nothing else happens.
    let mut edited = token.clone().into_bytes();
    edited[10] = if edited[10] == b'a' { b'b' } else { b'a' };
    let edited = String::from_utf8(edited).unwrap();
    let forged = "623a61726e3a6177733a6563733a75732d656173742d313a3030303030303030303030303a636c75737465722f61";
    for bad in [edited.as_str(), forged, "x", &"f".repeat(10_000)] {
        let (status, body) = berth.ecs("ListClusters", &json!({"nextToken": bad}));
        assert_refused(status, &body, "InvalidParameterException", "nextToken");
    }
    let (status, body) = berth.ecs("ListTaskDefinitionFamilies", &json!({"nextToken": token}));
    assert_refused(status, &body, "InvalidParameterException", "nextToken");
    let (status, body) = berth.ecs_in("eu-west-1", "ListClusters", &json!({"nextToken": token}));
    assert_refused(status, &body, "InvalidParameterException", "nextToken");

    // The CLI pages with them (--max-items / --starting-token wrap nextToken).
    let first = berth
        .aws(&["ecs", "list-clusters", "--max-items", "2"])
        .json();
    let resume = first["NextToken"].as_str().unwrap().to_string();
    let rest = berth
        .aws(&["ecs", "list-clusters", "--starting-token", &resume])
        .json();
    let mut all = arns(&first["clusterArns"]);
    all.extend(arns(&rest["clusterArns"]));
    assert_eq!(all.len(), 4, "{all:?}");

    // The key is kept in the data directory: a token outlives a restart.
    berth.restart();
    let next = berth.ecs_ok(
        "ListClusters",
        &json!({"maxResults": 1, "nextToken": token}),
    );
    assert_eq!(
        arns(&next["clusterArns"]),
        vec![format!(
            "arn:aws:ecs:us-east-1:{}:cluster/b",
            common::ACCOUNT
        )]
    );
    assert_eq!(berth.cluster_names(), clusters_before);
    let key = std::fs::read_to_string(berth.data_dir().join("token-key")).unwrap();
    assert_eq!(key.trim().len(), 64);

    // CloudWatch Logs tokens too.
    let logs =
        |op: &str, body: &Value| berth.call("us-east-1", &format!("{LOGS_PREFIX}.{op}"), body);
    for g in ["g1", "g2"] {
        let (status, body) = logs("CreateLogGroup", &json!({"logGroupName": g}));
        assert_eq!(status, 200, "{body}");
    }
    let (_, page) = logs("DescribeLogGroups", &json!({"limit": 1}));
    let logs_token = page["nextToken"].as_str().unwrap().to_string();
    let (status, body) = logs("DescribeLogGroups", &json!({"nextToken": logs_token}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["logGroups"][0]["logGroupName"], "g2");
    for bad in [&token, "6c313a6731", "zz"] {
        let (status, body) = logs("DescribeLogGroups", &json!({"nextToken": bad}));
        assert_refused(status, &body, "InvalidParameterException", "nextToken");
    }
    berth.assert_healthy();
}

#[test]
fn deep_nesting_long_strings_and_misplaced_arrays_are_serialization_errors() {
    let berth = Berth::start();
    let json_type = ("Content-Type", "application/x-amz-json-1.1");
    let target = format!("{}.CreateCluster", common::ECS_PREFIX);
    let post = |body: &[u8]| {
        let r = berth.signed("us-east-1", &[("X-Amz-Target", &target), json_type], body);
        (r.status, r.json())
    };
    let deep = format!(
        r#"{{"clusterName": "deep", "tags": {}{}}}"#,
        "[".repeat(40),
        "]".repeat(40)
    );
    let long = format!(r#"{{"clusterName": "{}"}}"#, "l".repeat(70_000));
    let bodies: Vec<(&str, Vec<u8>, &str)> = vec![
        ("deep", deep.into_bytes(), "nested 32"),
        ("very deep", "[".repeat(100_000).into_bytes(), ""),
        ("long", long.into_bytes(), "string longer than"),
        ("array for a structure", br#"{"clusterName": "arr", "configuration": []}"#.to_vec(), "configuration"),
        (
            "array deeper down",
            br#"{"clusterName": "arr2", "configuration": {"executeCommandConfiguration": ["DEFAULT"]}}"#.to_vec(),
            "executeCommandConfiguration",
        ),
        ("string for a number", br#"{"clusterName": "n", "settings": [{"name": 1}]}"#.to_vec(), ""),
    ];
    for (why, body, part) in bodies {
        let (status, v) = post(&body);
        assert_refused(status, &v, "SerializationException", part);
        assert!(
            v["message"].as_str().unwrap().len() < 2000,
            "{why}: the message echoes too much"
        );
    }
    // The same cluster with proper structures is fine; none of the refused ones exists.
    let (status, v) = post(
        br#"{"clusterName": "arr", "configuration": {"executeCommandConfiguration": {"logging": "DEFAULT"}}}"#,
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(berth.cluster_names(), vec!["arr", "default"]);
    berth.assert_healthy();
}
