#![allow(clippy::unwrap_used)]
//! Paging tokens of the Logs API are sealed with the server's key: they page through as
//! before, keep GetLogEvents' `f/` / `b/` direction prefix (and come back identical at the
//! end of a stream, as CloudWatch's do), and anything forged, edited, sealed with another
//! key or for another operation or partition is `InvalidParameterException`.

use berth_core::PartitionKey;
use berth_core::pagination::TokenKey;
use berth_logs::{Config, Logs};
use serde_json::{Value, json};

const NOW: i64 = 1_800_000_000_000;

fn partition(account: &str) -> PartitionKey {
    PartitionKey {
        account: account.into(),
        region: "us-east-1".into(),
    }
}

struct Fixture {
    logs: Logs,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn new(key: [u8; 32]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let logs = Logs::open(&Config {
            path: dir.path().join("logs.db"),
            max_stored_bytes: None,
        })
        .unwrap()
        .with_token_key(TokenKey::from_bytes(key));
        Fixture { logs, _dir: dir }
    }

    fn call_as(&self, account: &str, op: &str, body: &Value) -> Result<Value, (String, String)> {
        self.logs
            .handle(
                &partition(account),
                op,
                &serde_json::to_vec(body).unwrap(),
                NOW,
            )
            .map(|b| serde_json::from_slice(&b).unwrap())
            .map_err(|e| (e.code.to_string(), e.message))
    }

    fn ok(&self, op: &str, body: &Value) -> Value {
        self.call_as("000000000000", op, body)
            .unwrap_or_else(|e| panic!("{op} {body}: {e:?}"))
    }
}

fn assert_refused(r: Result<Value, (String, String)>, why: &str) {
    let (code, message) = r.expect_err(why);
    assert_eq!(code, "InvalidParameterException", "{why}: {message}");
    assert!(message.contains("nextToken"), "{why}: {message}");
}

#[test]
fn logs_tokens_are_sealed_and_tamper_evident() {
    let f = Fixture::new([9; 32]);
    for g in ["a", "b", "c"] {
        f.ok("CreateLogGroup", &json!({"logGroupName": g}));
    }
    f.ok(
        "CreateLogStream",
        &json!({"logGroupName": "a", "logStreamName": "s"}),
    );
    let events: Vec<Value> = (0..5)
        .map(|i| json!({"timestamp": NOW - 1000 + i, "message": format!("m{i}")}))
        .collect();
    f.ok(
        "PutLogEvents",
        &json!({"logGroupName": "a", "logStreamName": "s", "logEvents": events}),
    );

    // DescribeLogGroups pages through with opaque tokens.
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    let mut first_token = None;
    loop {
        let mut body = json!({"limit": 1});
        if let Some(t) = &token {
            body["nextToken"] = json!(t);
        }
        let page = f.ok("DescribeLogGroups", &body);
        for g in page["logGroups"].as_array().unwrap() {
            names.push(g["logGroupName"].as_str().unwrap().to_string());
        }
        match page.get("nextToken").and_then(Value::as_str) {
            Some(t) => {
                assert!(t.bytes().all(|b| b.is_ascii_hexdigit()), "{t}");
                first_token.get_or_insert_with(|| t.to_string());
                token = Some(t.to_string());
            }
            None => break,
        }
    }
    assert_eq!(names, ["a", "b", "c"]);
    let groups_token = first_token.unwrap();

    // GetLogEvents keeps the direction prefix and the same token at the end.
    let page = f.ok(
        "GetLogEvents",
        &json!({"logGroupName": "a", "logStreamName": "s", "startFromHead": true, "limit": 10}),
    );
    let forward = page["nextForwardToken"].as_str().unwrap().to_string();
    let backward = page["nextBackwardToken"].as_str().unwrap().to_string();
    assert!(
        forward.starts_with("f/") && backward.starts_with("b/"),
        "{page}"
    );
    let again = f.ok(
        "GetLogEvents",
        &json!({"logGroupName": "a", "logStreamName": "s", "nextToken": forward}),
    );
    assert_eq!(again["nextForwardToken"], json!(forward));
    assert_eq!(again["events"], json!([]));

    // FilterLogEvents pages with sealed tokens too.
    let page = f.ok("FilterLogEvents", &json!({"logGroupName": "a", "limit": 2}));
    let filter_token = page["nextToken"].as_str().unwrap().to_string();
    let rest = f.ok(
        "FilterLogEvents",
        &json!({"logGroupName": "a", "limit": 10, "nextToken": filter_token}),
    );
    assert_eq!(rest["events"].as_array().unwrap().len(), 3);

    // Refusals.
    let flip = |t: &str| {
        let mut b = t.as_bytes().to_vec();
        let i = b.len() - 1;
        b[i] = if b[i] == b'0' { b'1' } else { b'0' };
        String::from_utf8(b).unwrap()
    };
    let groups = |t: &str| json!({"nextToken": t});
    let events_in = |t: &str| json!({"logGroupName": "a", "logStreamName": "s", "nextToken": t});
    assert_refused(
        f.call_as(
            "000000000000",
            "DescribeLogGroups",
            &groups(&flip(&groups_token)),
        ),
        "edited",
    );
    assert_refused(
        f.call_as("111111111111", "DescribeLogGroups", &groups(&groups_token)),
        "another account",
    );
    assert_refused(
        f.call_as(
            "000000000000",
            "DescribeLogStreams",
            &json!({"logGroupName": "a", "nextToken": groups_token}),
        ),
        "another operation",
    );
    assert_refused(
        Fixture::new([8; 32]).call_as("000000000000", "DescribeLogGroups", &groups(&groups_token)),
        "another server's key",
    );
    // CloudWatch-shaped but unsealed (what the store uses inside), and a swapped prefix.
    let plain = format!("f/{}", "0".repeat(56));
    assert_refused(
        f.call_as("000000000000", "GetLogEvents", &events_in(&plain)),
        "unsealed",
    );
    let swapped = format!("b/{}", &forward[2..]);
    assert_refused(
        f.call_as("000000000000", "GetLogEvents", &events_in(&swapped)),
        "direction swapped",
    );
    assert_refused(
        f.call_as("000000000000", "GetLogEvents", &events_in(&flip(&forward))),
        "edited",
    );
    assert_refused(
        f.call_as(
            "000000000000",
            "FilterLogEvents",
            &json!({"logGroupName": "a", "nextToken": backward}),
        ),
        "another operation",
    );
}
