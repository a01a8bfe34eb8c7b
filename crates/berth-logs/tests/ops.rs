#![allow(clippy::unwrap_used)]
//! The Logs operations through [`Logs::handle`], as the HTTP shell calls them: JSON in,
//! JSON (or an AWS-shaped error) out.

use berth_core::PartitionKey;
use berth_logs::{AppendChunk, Config, DAY_MS, Logs};
use serde_json::{Value, json};
use std::collections::BTreeSet;

const NOW: i64 = 1_800_000_000_000;

struct Fixture {
    logs: Logs,
    key: PartitionKey,
    dir: tempfile::TempDir,
}

fn key(region: &str) -> PartitionKey {
    PartitionKey {
        account: "000000000000".into(),
        region: region.into(),
    }
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with_cap(None)
    }

    fn with_cap(cap: Option<u64>) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let logs = Logs::open(&Config {
            path: dir.path().join("logs.db"),
            max_stored_bytes: cap,
        })
        .unwrap();
        Fixture {
            logs,
            key: key("us-east-1"),
            dir,
        }
    }

    fn reopen(self) -> Fixture {
        self.logs.close();
        let logs = Logs::open(&Config {
            path: self.dir.path().join("logs.db"),
            max_stored_bytes: None,
        })
        .unwrap();
        Fixture { logs, ..self }
    }

    fn call(&self, op: &str, body: Value) -> Result<Value, (String, String)> {
        self.call_in(&self.key, op, body)
    }

    fn call_in(
        &self,
        key: &PartitionKey,
        op: &str,
        body: Value,
    ) -> Result<Value, (String, String)> {
        self.logs
            .handle(key, op, &serde_json::to_vec(&body).unwrap(), NOW)
            .map(|b| serde_json::from_slice(&b).unwrap())
            .map_err(|e| (e.code.to_string(), e.message))
    }

    fn ok(&self, op: &str, body: Value) -> Value {
        self.call(op, body.clone())
            .unwrap_or_else(|e| panic!("{op} {body}: {e:?}"))
    }

    fn err(&self, op: &str, body: Value) -> (String, String) {
        match self.call(op, body.clone()) {
            Ok(v) => panic!("{op} {body} succeeded: {v}"),
            Err(e) => e,
        }
    }

    fn group(&self, name: &str) {
        self.ok("CreateLogGroup", json!({"logGroupName": name}));
    }

    fn stream(&self, group: &str, name: &str) {
        self.ok(
            "CreateLogStream",
            json!({"logGroupName": group, "logStreamName": name}),
        );
    }

    fn put(&self, group: &str, stream: &str, events: &[(i64, &str)]) -> Value {
        let evs: Vec<Value> = events
            .iter()
            .map(|(t, m)| json!({"timestamp": t, "message": m}))
            .collect();
        self.ok(
            "PutLogEvents",
            json!({"logGroupName": group, "logStreamName": stream, "logEvents": evs}),
        )
    }
}

fn messages(v: &Value) -> Vec<String> {
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn groups_create_describe_delete() {
    let f = Fixture::new();
    f.group("/ecs/b");
    f.group("/ecs/a");
    f.group("other");
    assert_eq!(
        f.err("CreateLogGroup", json!({"logGroupName": "/ecs/a"})),
        (
            "ResourceAlreadyExistsException".into(),
            "The specified log group already exists".into()
        )
    );
    let all = f.ok("DescribeLogGroups", json!({}));
    let names: Vec<&str> = all["logGroups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["logGroupName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["/ecs/a", "/ecs/b", "other"]);
    let g = &all["logGroups"][0];
    assert_eq!(
        g["arn"],
        "arn:aws:logs:us-east-1:000000000000:log-group:/ecs/a:*"
    );
    assert_eq!(
        g["logGroupArn"],
        "arn:aws:logs:us-east-1:000000000000:log-group:/ecs/a"
    );
    assert_eq!(g["creationTime"], NOW);
    assert_eq!(g["storedBytes"], 0);
    assert!(g.get("retentionInDays").is_none());
    let prefixed = f.ok("DescribeLogGroups", json!({"logGroupNamePrefix": "/ecs/"}));
    assert_eq!(prefixed["logGroups"].as_array().unwrap().len(), 2);
    let pattern = f.ok("DescribeLogGroups", json!({"logGroupNamePattern": "th"}));
    assert_eq!(pattern["logGroups"][0]["logGroupName"], "other");
    let (code, _) = f.err(
        "DescribeLogGroups",
        json!({"logGroupNamePattern": "a", "logGroupNamePrefix": "b"}),
    );
    assert_eq!(code, "InvalidParameterException");
    // Paging: one at a time, every group once.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({"limit": 1});
        if let Some(t) = &token {
            body["nextToken"] = json!(t);
        }
        let page = f.ok("DescribeLogGroups", body);
        for g in page["logGroups"].as_array().unwrap() {
            seen.push(g["logGroupName"].as_str().unwrap().to_string());
        }
        match page.get("nextToken") {
            Some(t) => token = Some(t.as_str().unwrap().to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ["/ecs/a", "/ecs/b", "other"]);
    // Another region sees nothing.
    let west = f
        .call_in(&key("eu-west-1"), "DescribeLogGroups", json!({}))
        .unwrap();
    assert_eq!(west["logGroups"], json!([]));
    f.ok("DeleteLogGroup", json!({"logGroupName": "/ecs/a"}));
    assert_eq!(
        f.err("DeleteLogGroup", json!({"logGroupName": "/ecs/a"})),
        (
            "ResourceNotFoundException".into(),
            "The specified log group does not exist.".into()
        )
    );
    // Model validation comes first.
    let (code, msg) = f.err("CreateLogGroup", json!({"logGroupName": "bad name!"}));
    assert_eq!(code, "InvalidParameterException");
    assert!(msg.contains("validation error"), "{msg}");
}

#[test]
fn streams_create_describe_order_and_page() {
    let f = Fixture::new();
    f.group("g");
    assert_eq!(
        f.err(
            "CreateLogStream",
            json!({"logGroupName": "nope", "logStreamName": "s"})
        )
        .1,
        "The specified log group does not exist."
    );
    for s in ["b", "a", "c/1", "c/2"] {
        f.stream("g", s);
    }
    assert_eq!(
        f.err(
            "CreateLogStream",
            json!({"logGroupName": "g", "logStreamName": "a"})
        ),
        (
            "ResourceAlreadyExistsException".into(),
            "The specified log stream already exists".into()
        )
    );
    f.put("g", "c/1", &[(NOW - 3000, "x")]);
    f.put("g", "a", &[(NOW - 1000, "hello")]);
    f.put("g", "b", &[(NOW - 2000, "y")]);
    let names = |v: &Value| -> Vec<String> {
        v["logStreams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["logStreamName"].as_str().unwrap().to_string())
            .collect()
    };
    let by_name = f.ok("DescribeLogStreams", json!({"logGroupName": "g"}));
    assert_eq!(names(&by_name), ["a", "b", "c/1", "c/2"]);
    let a = &by_name["logStreams"][0];
    assert_eq!(a["firstEventTimestamp"], NOW - 1000);
    assert_eq!(a["lastEventTimestamp"], NOW - 1000);
    assert_eq!(a["lastIngestionTime"], NOW);
    assert_eq!(a["storedBytes"], 5);
    assert_eq!(
        a["arn"],
        "arn:aws:logs:us-east-1:000000000000:log-group:g:log-stream:a"
    );
    let desc = f.ok(
        "DescribeLogStreams",
        json!({"logGroupName": "g", "descending": true}),
    );
    assert_eq!(names(&desc), ["c/2", "c/1", "b", "a"]);
    let prefix = f.ok(
        "DescribeLogStreams",
        json!({"logGroupName": "g", "logStreamNamePrefix": "c/"}),
    );
    assert_eq!(names(&prefix), ["c/1", "c/2"]);
    let by_time = f.ok(
        "DescribeLogStreams",
        json!({"logGroupName": "g", "orderBy": "LastEventTime", "descending": true}),
    );
    assert_eq!(names(&by_time), ["a", "b", "c/1", "c/2"]);
    let (code, msg) = f.err(
        "DescribeLogStreams",
        json!({"logGroupName": "g", "orderBy": "LastEventTime", "logStreamNamePrefix": "c"}),
    );
    assert_eq!(code, "InvalidParameterException", "{msg}");
    // Paging by two, both orders, by name and by time.
    for body in [
        json!({"logGroupName": "g"}),
        json!({"logGroupName": "g", "descending": true}),
        json!({"logGroupName": "g", "orderBy": "LastEventTime"}),
        json!({"logGroupIdentifier": "arn:aws:logs:us-east-1:000000000000:log-group:g", "orderBy": "LastEventTime", "descending": true}),
    ] {
        let full = names(&f.ok("DescribeLogStreams", body.clone()));
        let mut paged = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut b = body.clone();
            b["limit"] = json!(2);
            if let Some(t) = &token {
                b["nextToken"] = json!(t);
            }
            let page = f.ok("DescribeLogStreams", b);
            paged.extend(names(&page));
            match page.get("nextToken") {
                Some(t) => token = Some(t.as_str().unwrap().to_string()),
                None => break,
            }
        }
        assert_eq!(paged, full, "{body}");
    }
    f.ok(
        "DeleteLogStream",
        json!({"logGroupName": "g", "logStreamName": "a"}),
    );
    assert_eq!(
        f.err(
            "DeleteLogStream",
            json!({"logGroupName": "g", "logStreamName": "a"})
        )
        .1,
        "The specified log stream does not exist."
    );
    let groups = f.ok("DescribeLogGroups", json!({}));
    assert_eq!(
        groups["logGroups"][0]["storedBytes"], 2,
        "a's bytes went with it"
    );
}

#[test]
fn put_log_events_follows_cloudwatch_rules() {
    let f = Fixture::new();
    f.group("g");
    f.stream("g", "s");
    let missing = f.err(
        "PutLogEvents",
        json!({"logGroupName": "g", "logStreamName": "nope", "logEvents": [{"timestamp": NOW, "message": "m"}]}),
    );
    assert_eq!(
        missing,
        (
            "ResourceNotFoundException".into(),
            "The specified log stream does not exist.".into()
        )
    );
    let (code, msg) = f.err(
        "PutLogEvents",
        json!({"logGroupName": "g", "logStreamName": "s", "logEvents": [
            {"timestamp": NOW, "message": "b"}, {"timestamp": NOW - 1, "message": "a"}]}),
    );
    assert_eq!(code, "InvalidParameterException");
    assert_eq!(
        msg,
        "Log events in a single PutLogEvents request must be in chronological order."
    );
    let (_, msg) = f.err(
        "PutLogEvents",
        json!({"logGroupName": "g", "logStreamName": "s", "logEvents": [
            {"timestamp": NOW - DAY_MS - 1, "message": "a"}, {"timestamp": NOW, "message": "b"}]}),
    );
    assert!(msg.contains("cannot span more than 24 hours"), "{msg}");
    let big = "x".repeat(300_000);
    let (_, msg) = f.err(
        "PutLogEvents",
        json!({"logGroupName": "g", "logStreamName": "s", "logEvents": [{"timestamp": NOW, "message": big}]}),
    );
    assert!(msg.starts_with("Log event too large"), "{msg}");
    let (code, _) = f.err(
        "PutLogEvents",
        json!({"logGroupName": "g", "logStreamName": "s", "logEvents": []}),
    );
    assert_eq!(code, "InvalidParameterException");
}

#[test]
fn rejected_events_info() {
    let f = Fixture::new();
    f.group("g");
    f.stream("g", "s");
    let too_old = NOW - 14 * DAY_MS - 1;
    let r = f.put(
        "g",
        "s",
        &[
            (too_old - 1000, "old"),
            (too_old, "old2"),
            (too_old + DAY_MS - 1001, "fine"),
        ],
    );
    assert_eq!(r["rejectedLogEventsInfo"]["tooOldLogEventEndIndex"], 2);
    let t1 = r["nextSequenceToken"].as_str().unwrap().to_string();
    assert_eq!(t1.len(), 56);
    let r = f.put(
        "g",
        "s",
        &[(NOW, "now"), (NOW + 2 * 3600 * 1000 + 1, "future")],
    );
    assert_eq!(r["rejectedLogEventsInfo"]["tooNewLogEventStartIndex"], 1);
    assert!(
        r["rejectedLogEventsInfo"]
            .get("tooOldLogEventEndIndex")
            .is_none()
    );
    assert_ne!(r["nextSequenceToken"].as_str().unwrap(), t1);
    f.ok(
        "PutRetentionPolicy",
        json!({"logGroupName": "g", "retentionInDays": 1}),
    );
    let r = f.put(
        "g",
        "s",
        &[
            (NOW - DAY_MS - 10, "expired"),
            (NOW - DAY_MS + 1000, "kept"),
        ],
    );
    assert_eq!(r["rejectedLogEventsInfo"]["expiredLogEventEndIndex"], 1);
    let all = f.ok(
        "GetLogEvents",
        json!({"logGroupName": "g", "logStreamName": "s", "startFromHead": true}),
    );
    assert_eq!(messages(&all), ["fine", "kept", "now"]);
    let (code, msg) = f.err(
        "PutRetentionPolicy",
        json!({"logGroupName": "g", "retentionInDays": 2}),
    );
    assert_eq!(code, "InvalidParameterException");
    assert!(msg.contains("enum value set"), "{msg}");
    let g = f.ok("DescribeLogGroups", json!({}));
    assert_eq!(g["logGroups"][0]["retentionInDays"], 1);
    f.ok("DeleteRetentionPolicy", json!({"logGroupName": "g"}));
    let g = f.ok("DescribeLogGroups", json!({}));
    assert!(g["logGroups"][0].get("retentionInDays").is_none());
}

#[test]
fn get_log_events_pages_forward_and_backward_exactly_once() {
    let f = Fixture::new();
    f.group("g");
    f.stream("g", "s");
    let n = 2_500;
    let all: Vec<String> = (0..n).map(|i| format!("line {i:05}")).collect();
    // Many events share a timestamp: order within a millisecond is ingestion order.
    for chunk in all.chunks(1000).enumerate() {
        let evs: Vec<(i64, &str)> = chunk
            .1
            .iter()
            .enumerate()
            .map(|(i, m)| {
                (
                    NOW - 100_000 + i64::try_from(chunk.0 * 1000 + i).unwrap() / 7,
                    m.as_str(),
                )
            })
            .collect();
        f.put("g", "s", &evs);
    }
    // Default: the newest page, oldest first within it.
    let tail = f.ok(
        "GetLogEvents",
        json!({"logGroupName": "g", "logStreamName": "s", "limit": 3}),
    );
    assert_eq!(messages(&tail), all[n - 3..]);
    // Forward from the head.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut calls = 0;
    loop {
        let mut b =
            json!({"logGroupName": "g", "logStreamName": "s", "startFromHead": true, "limit": 333});
        if let Some(t) = &token {
            b["nextToken"] = json!(t);
        }
        let page = f.ok("GetLogEvents", b);
        seen.extend(messages(&page));
        let next = page["nextForwardToken"].as_str().unwrap().to_string();
        assert!(next.starts_with("f/"));
        calls += 1;
        if token.as_deref() == Some(next.as_str()) {
            assert!(messages(&page).is_empty());
            break;
        }
        token = Some(next);
        assert!(calls < 100);
    }
    assert_eq!(seen, all);
    // Backward from the tail.
    let mut back: Vec<Vec<String>> = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut b = json!({"logGroupName": "g", "logStreamName": "s", "limit": 400});
        if let Some(t) = &token {
            b["nextToken"] = json!(t);
        }
        let page = f.ok("GetLogEvents", b);
        let next = page["nextBackwardToken"].as_str().unwrap().to_string();
        assert!(next.starts_with("b/"));
        if token.as_deref() == Some(next.as_str()) {
            assert!(messages(&page).is_empty());
            break;
        }
        back.push(messages(&page));
        token = Some(next);
    }
    let flat: Vec<String> = back.into_iter().rev().flatten().collect();
    assert_eq!(flat, all);
    // Time bounds: start inclusive, end exclusive.
    f.stream("g", "t");
    f.put(
        "g",
        "t",
        &[(NOW - 30, "a"), (NOW - 20, "b"), (NOW - 10, "c")],
    );
    let r = f.ok(
        "GetLogEvents",
        json!({"logGroupName": "g", "logStreamName": "t", "startTime": NOW - 20, "endTime": NOW - 10, "startFromHead": true}),
    );
    assert_eq!(messages(&r), ["b"]);
    // A token of one stream is refused by another.
    let (code, _) = f.err(
        "GetLogEvents",
        json!({"logGroupName": "g", "logStreamName": "t", "nextToken": tail["nextForwardToken"]}),
    );
    assert_eq!(code, "InvalidParameterException");
    // An empty stream still answers with tokens, the same ones again at the end.
    f.stream("g", "empty");
    let e1 = f.ok(
        "GetLogEvents",
        json!({"logGroupName": "g", "logStreamName": "empty", "startFromHead": true}),
    );
    assert_eq!(messages(&e1), Vec::<String>::new());
    let e2 = f.ok(
        "GetLogEvents",
        json!({"logGroupName": "g", "logStreamName": "empty", "nextToken": e1["nextForwardToken"]}),
    );
    assert_eq!(e2["nextForwardToken"], e1["nextForwardToken"]);
    // Later events show up on the same forward token.
    f.put("g", "empty", &[(NOW, "late")]);
    let e3 = f.ok(
        "GetLogEvents",
        json!({"logGroupName": "g", "logStreamName": "empty", "nextToken": e1["nextForwardToken"]}),
    );
    assert_eq!(messages(&e3), ["late"]);
}

#[test]
fn filter_log_events_interleaves_matches_and_pages() {
    let f = Fixture::new();
    f.group("g");
    for s in ["app/1", "app/2", "db/1"] {
        f.stream("g", s);
    }
    f.put(
        "g",
        "app/1",
        &[(NOW - 50, "ERROR one"), (NOW - 30, "INFO three")],
    );
    f.put(
        "g",
        "app/2",
        &[(NOW - 40, "WARN two"), (NOW - 30, "ERROR timeout four")],
    );
    f.put(
        "g",
        "db/1",
        &[(NOW - 45, "INFO db"), (NOW - 10, "ERROR \"db\" down")],
    );
    let all = f.ok("FilterLogEvents", json!({"logGroupName": "g"}));
    assert_eq!(
        messages(&all),
        [
            "ERROR one",
            "INFO db",
            "WARN two",
            "INFO three",
            "ERROR timeout four",
            "ERROR \"db\" down"
        ]
    );
    assert!(all.get("nextToken").is_none());
    let ev = &all["events"][1];
    assert_eq!(ev["logStreamName"], "db/1");
    assert_eq!(ev["ingestionTime"], NOW);
    let ids: BTreeSet<&str> = all["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["eventId"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 6);
    let again = f.ok("FilterLogEvents", json!({"logGroupName": "g"}));
    assert_eq!(again["events"], all["events"], "eventIds are stable");
    let m = |body: Value| messages(&f.ok("FilterLogEvents", body));
    assert_eq!(
        m(json!({"logGroupName": "g", "filterPattern": "ERROR"})),
        ["ERROR one", "ERROR timeout four", "ERROR \"db\" down"]
    );
    assert_eq!(
        m(json!({"logGroupName": "g", "filterPattern": "ERROR timeout"})),
        ["ERROR timeout four"]
    );
    assert_eq!(
        m(json!({"logGroupName": "g", "filterPattern": "?WARN ?db"})),
        ["INFO db", "WARN two", "ERROR \"db\" down"]
    );
    assert_eq!(
        m(json!({"logGroupName": "g", "filterPattern": "\"timeout four\""})),
        ["ERROR timeout four"]
    );
    assert_eq!(
        m(json!({"logGroupName": "g", "logStreamNamePrefix": "app/"})),
        ["ERROR one", "WARN two", "INFO three", "ERROR timeout four"]
    );
    assert_eq!(
        m(
            json!({"logGroupName": "g", "logStreamNames": ["db/1", "app/1"], "filterPattern": "INFO"})
        ),
        ["INFO db", "INFO three"]
    );
    // startTime inclusive (what `aws logs tail --follow` relies on), endTime inclusive.
    assert_eq!(
        m(json!({"logGroupName": "g", "startTime": NOW - 30, "endTime": NOW - 30})),
        ["INFO three", "ERROR timeout four"]
    );
    let (code, _) = f.err(
        "FilterLogEvents",
        json!({"logGroupName": "g", "filterPattern": "{ $.a = 1 }"}),
    );
    assert_eq!(code, "InvalidParameterException");
    // Paging two at a time gives the same sequence.
    let mut paged = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut b = json!({"logGroupName": "g", "limit": 2});
        if let Some(t) = &token {
            b["nextToken"] = json!(t);
        }
        let page = f.ok("FilterLogEvents", b);
        paged.extend(messages(&page));
        match page.get("nextToken") {
            Some(t) => token = Some(t.as_str().unwrap().to_string()),
            None => break,
        }
    }
    assert_eq!(paged, messages(&all));
}

#[test]
fn tags() {
    let f = Fixture::new();
    f.ok(
        "CreateLogGroup",
        json!({"logGroupName": "g", "tags": {"team": "a"}}),
    );
    let arn = "arn:aws:logs:us-east-1:000000000000:log-group:g";
    f.ok(
        "TagResource",
        json!({"resourceArn": arn, "tags": {"env": "prod"}}),
    );
    let t = f.ok("ListTagsForResource", json!({"resourceArn": arn}));
    assert_eq!(t["tags"], json!({"env": "prod", "team": "a"}));
    f.ok(
        "UntagResource",
        json!({"resourceArn": arn, "tagKeys": ["team"]}),
    );
    let t = f.ok("ListTagsLogGroup", json!({"logGroupName": "g"}));
    assert_eq!(t["tags"], json!({"env": "prod"}));
    f.ok(
        "TagLogGroup",
        json!({"logGroupName": "g", "tags": {"x": "y"}}),
    );
    f.ok(
        "UntagLogGroup",
        json!({"logGroupName": "g", "tags": ["env"]}),
    );
    let t = f.ok("ListTagsForResource", json!({"resourceArn": arn}));
    assert_eq!(t["tags"], json!({"x": "y"}));
    let (code, _) = f.err(
        "ListTagsForResource",
        json!({"resourceArn": "arn:aws:logs:us-east-1:000000000000:log-group:nope"}),
    );
    assert_eq!(code, "ResourceNotFoundException");
    let (code, _) = f.err("StartLiveTail", json!({}));
    assert_eq!(code, "InvalidOperationException");
}

#[test]
fn retention_sweep_and_purge_of_deleted_streams() {
    let f = Fixture::new();
    f.group("g");
    f.stream("g", "s");
    f.put(
        "g",
        "s",
        &[(NOW - 3 * DAY_MS, "old"), (NOW - 3 * DAY_MS + 1, "old2")],
    );
    f.put("g", "s", &[(NOW - 1000, "new")]);
    let r = f.logs.sweep(NOW).unwrap();
    assert_eq!(r.expired_events, 0, "no policy, nothing expires");
    f.ok(
        "PutRetentionPolicy",
        json!({"logGroupName": "g", "retentionInDays": 1}),
    );
    let r = f.logs.sweep(NOW).unwrap();
    assert_eq!(r.expired_events, 2);
    let all = f.ok(
        "GetLogEvents",
        json!({"logGroupName": "g", "logStreamName": "s", "startFromHead": true}),
    );
    assert_eq!(messages(&all), ["new"]);
    let g = f.ok("DescribeLogGroups", json!({}));
    assert_eq!(g["logGroups"][0]["storedBytes"], 3);
    assert_eq!(f.logs.stored_bytes().unwrap(), 3);
    // Deleting the group frees its events on the next sweep.
    f.ok("DeleteLogGroup", json!({"logGroupName": "g"}));
    assert_eq!(f.logs.stored_bytes().unwrap(), 3);
    let r = f.logs.sweep(NOW).unwrap();
    assert_eq!(r.purged_events, 1);
    assert_eq!(f.logs.stored_bytes().unwrap(), 0);
    // A new group of the same name starts empty.
    f.group("g");
    f.stream("g", "s");
    let all = f.ok(
        "GetLogEvents",
        json!({"logGroupName": "g", "logStreamName": "s"}),
    );
    assert_eq!(messages(&all), Vec::<String>::new());
}

#[test]
fn the_cap_evicts_the_oldest_events() {
    let f = Fixture::with_cap(Some(10_000));
    f.group("g");
    f.stream("g", "s");
    for batch in 0..30 {
        let evs: Vec<String> = (0..10)
            .map(|i| format!("{batch:03}-{i}-{}", "x".repeat(90)))
            .collect();
        let refs: Vec<(i64, &str)> = evs.iter().map(|m| (NOW, m.as_str())).collect();
        f.put("g", "s", &refs);
    }
    let stored = f.logs.stored_bytes().unwrap();
    assert!(stored <= 10_000, "{stored}");
    let all = f.ok(
        "GetLogEvents",
        json!({"logGroupName": "g", "logStreamName": "s", "startFromHead": true}),
    );
    let msgs = messages(&all);
    assert!(!msgs.is_empty());
    assert!(
        msgs.last().unwrap().starts_with("029-9"),
        "the newest survive"
    );
    assert!(!msgs[0].starts_with("000-"), "the oldest went first");
}

#[test]
fn writes_are_durable_across_reopen() {
    let f = Fixture::new();
    f.group("g");
    f.stream("g", "s");
    f.put("g", "s", &[(NOW, "kept")]);
    let f = f.reopen();
    let c = rusqlite::Connection::open(f.dir.path().join("logs.db")).unwrap();
    let page: i64 = c
        .pragma_query_value(None, "page_size", |r| r.get(0))
        .unwrap();
    assert_eq!(page, 32_768, "a new database has 32 KiB pages");
    let all = f.ok(
        "GetLogEvents",
        json!({"logGroupName": "g", "logStreamName": "s"}),
    );
    assert_eq!(messages(&all), ["kept"]);
}

#[test]
fn the_agent_path_ensures_groups_and_drops_resent_chunks() {
    let f = Fixture::new();
    let e = f
        .logs
        .ensure_group(&f.key, "/ecs/x", false, &[], NOW)
        .unwrap_err();
    assert_eq!(
        e.qualified(),
        "ResourceNotFoundException: The specified log group does not exist."
    );
    f.logs
        .ensure_group(&f.key, "/ecs/x", true, &["p/c/1".to_string()], NOW)
        .unwrap();
    // Idempotent.
    f.logs
        .ensure_group(&f.key, "/ecs/x", true, &["p/c/1".to_string()], NOW)
        .unwrap();
    let chunk = |seq: u64, stream: &str, msgs: &[&str]| AppendChunk {
        key: f.key.clone(),
        group: "/ecs/x".into(),
        stream: stream.into(),
        seq,
        events: msgs.iter().map(|m| (NOW, (*m).to_string())).collect(),
    };
    let r = f
        .logs
        .append(
            "agent-1",
            vec![chunk(1, "p/c/1", &["a", "b"]), chunk(1, "p/c/2", &["z"])],
            NOW,
        )
        .unwrap();
    assert!(r.iter().all(Result::is_ok));
    // The same chunk again (a retry after a lost answer) is acknowledged, not stored twice.
    f.logs
        .append("agent-1", vec![chunk(1, "p/c/1", &["a", "b"])], NOW)
        .unwrap();
    f.logs
        .append("agent-1", vec![chunk(2, "p/c/1", &["c", ""])], NOW)
        .unwrap();
    let all = f.ok(
        "GetLogEvents",
        json!({"logGroupName": "/ecs/x", "logStreamName": "p/c/1", "startFromHead": true}),
    );
    assert_eq!(messages(&all), ["a", "b", "c"]);
    // A chunk for a missing group fails alone.
    let mut bad = chunk(1, "s", &["x"]);
    bad.group = "/gone".into();
    let r = f
        .logs
        .append("agent-1", vec![bad, chunk(3, "p/c/1", &["d"])], NOW)
        .unwrap();
    assert!(r[0].is_err());
    assert!(r[1].is_ok());
}
