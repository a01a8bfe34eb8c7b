#![allow(clippy::unwrap_used)]
//! The log store against a naive in-memory model: random sequences of PutLogEvents, agent
//! appends (out of order, across chunk cuts), retention sweeps and reopens, checked by
//! paging every stream with GetLogEvents both ways and the group with FilterLogEvents.

use berth_core::PartitionKey;
use berth_logs::{AppendChunk, Config, DAY_MS, Logs};
use proptest::prelude::*;
use serde_json::{Value, json};
use std::collections::BTreeSet;

const NOW: i64 = 1_800_000_000_000;
const GROUP: &str = "g";
const STREAMS: usize = 3;
const WORDS: [&str; 3] = ["alpha", "beta", "gamma"];

fn key() -> PartitionKey {
    PartitionKey {
        account: "000000000000".into(),
        region: "us-east-1".into(),
    }
}

fn stream_name(i: usize) -> String {
    format!("s{i}")
}

#[derive(Debug, Clone)]
enum Op {
    /// PutLogEvents (sorted by the test, as CloudWatch requires).
    Put {
        stream: usize,
        events: Vec<(i64, usize)>,
    },
    /// An agent's chunk, in capture order.
    Append {
        stream: usize,
        events: Vec<(i64, usize)>,
    },
    /// PutRetentionPolicy of one day, then a sweep.
    Retain,
    /// DeleteRetentionPolicy.
    Unretain,
    /// Close and open the store again.
    Reopen,
}

/// Timestamps around the one-day retention cutoff, spread over several chunk spans (60 s),
/// with many equal ones (all within PutLogEvents' 24 hours).
fn ts() -> impl Strategy<Value = i64> {
    prop_oneof![
        (-240i64..240).prop_map(|s| NOW - DAY_MS + s * 1000),
        (-3i64..3).prop_map(|s| NOW - DAY_MS + s),
        (0i64..600).prop_map(|s| NOW - DAY_MS + 300_000 + s * 1000),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let events = || prop::collection::vec((ts(), 0..WORDS.len()), 1..40);
    prop_oneof![
        4 => (0..STREAMS, events()).prop_map(|(stream, events)| Op::Put { stream, events }),
        4 => (0..STREAMS, events()).prop_map(|(stream, events)| Op::Append { stream, events }),
        1 => Just(Op::Retain),
        1 => Just(Op::Unretain),
        1 => Just(Op::Reopen),
    ]
}

/// A stored event as the model keeps it: (timestamp, order of ingestion, message).
type Ev = (i64, u64, String);

struct Store {
    logs: Logs,
    dir: tempfile::TempDir,
}

impl Store {
    fn call(&self, op: &str, body: &Value) -> Value {
        let out = self
            .logs
            .handle(&key(), op, &serde_json::to_vec(body).unwrap(), NOW)
            .unwrap_or_else(|e| panic!("{op} {body}: {e:?}"));
        serde_json::from_slice(&out).unwrap()
    }

    fn open(dir: tempfile::TempDir) -> Store {
        let logs = Logs::open(&Config {
            path: dir.path().join("logs.db"),
            max_stored_bytes: None,
        })
        .unwrap();
        Store { logs, dir }
    }
}

fn page_events(v: &Value) -> Vec<(i64, String)> {
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["timestamp"].as_i64().unwrap(),
                e["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn sorted(mut evs: Vec<Ev>) -> Vec<(i64, String)> {
    evs.sort_by_key(|e| (e.0, e.1));
    evs.into_iter().map(|e| (e.0, e.2)).collect()
}

/// Page a stream with GetLogEvents from the head (forward) or the tail (backward) and
/// compare every page with the model's.
fn check_get(
    s: &Store,
    stream: &str,
    want: &[(i64, String)],
    forward: bool,
    limit: usize,
    range: (Option<i64>, Option<i64>),
) {
    let mut body = json!({"logGroupName": GROUP, "logStreamName": stream, "limit": limit});
    if forward {
        body["startFromHead"] = json!(true);
    }
    if let Some(t) = range.0 {
        body["startTime"] = json!(t);
    }
    if let Some(t) = range.1 {
        body["endTime"] = json!(t);
    }
    let want: Vec<(i64, String)> = want
        .iter()
        .filter(|e| range.0.is_none_or(|t| e.0 >= t) && range.1.is_none_or(|t| e.0 < t))
        .cloned()
        .collect();
    let mut got: Vec<Vec<(i64, String)>> = Vec::new();
    let (tok, other) = if forward {
        ("nextForwardToken", "nextBackwardToken")
    } else {
        ("nextBackwardToken", "nextForwardToken")
    };
    let mut token: Option<String> = None;
    for _ in 0..want.len() + 3 {
        if let Some(t) = &token {
            body["nextToken"] = json!(t);
        }
        let v = s.call("GetLogEvents", &body);
        let page = page_events(&v);
        let next = v[tok].as_str().unwrap().to_string();
        assert!(v[other].is_string());
        if page.is_empty() {
            if token.is_some() {
                assert_eq!(
                    Some(&next),
                    token.as_ref(),
                    "at the end the same token comes back"
                );
            }
            break;
        }
        got.push(page);
        token = Some(next);
    }
    let mut expect: Vec<Vec<(i64, String)>> = Vec::new();
    if forward {
        for c in want.chunks(limit) {
            expect.push(c.to_vec());
        }
    } else {
        let mut rest = want.as_slice();
        while !rest.is_empty() {
            let at = rest.len().saturating_sub(limit);
            expect.push(rest[at..].to_vec());
            rest = &rest[..at];
        }
    }
    assert_eq!(
        got, expect,
        "GetLogEvents {stream} forward={forward} limit={limit} {range:?}"
    );
}

/// Page the group with FilterLogEvents and compare with the model.
fn check_filter(
    s: &Store,
    model: &[Vec<Ev>],
    word: Option<usize>,
    streams: Option<Vec<usize>>,
    limit: usize,
) {
    let mut body = json!({"logGroupName": GROUP, "limit": limit});
    if let Some(w) = word {
        body["filterPattern"] = json!(WORDS[w]);
    }
    if let Some(ss) = &streams {
        body["logStreamNames"] = json!(ss.iter().map(|&i| stream_name(i)).collect::<Vec<_>>());
    }
    let mut want: Vec<(i64, u64, String, String)> = Vec::new();
    for (i, evs) in model.iter().enumerate() {
        if streams.as_ref().is_some_and(|ss| !ss.contains(&i)) {
            continue;
        }
        for e in evs {
            if word.is_none_or(|w| e.2.contains(WORDS[w])) {
                want.push((e.0, e.1, e.2.clone(), stream_name(i)));
            }
        }
    }
    want.sort_by_key(|e| (e.0, e.1));
    let want: Vec<(i64, String, String)> = want.into_iter().map(|e| (e.0, e.2, e.3)).collect();
    let mut got = Vec::new();
    let mut ids = BTreeSet::new();
    for _ in 0..want.len() + 3 {
        let v = s.call("FilterLogEvents", &body);
        let events = v["events"].as_array().unwrap();
        assert!(events.len() <= limit);
        for e in events {
            assert!(
                ids.insert(e["eventId"].as_str().unwrap().to_string()),
                "eventIds are unique"
            );
            got.push((
                e["timestamp"].as_i64().unwrap(),
                e["message"].as_str().unwrap().to_string(),
                e["logStreamName"].as_str().unwrap().to_string(),
            ));
        }
        match v["nextToken"].as_str() {
            Some(t) => body["nextToken"] = json!(t),
            None => break,
        }
    }
    assert_eq!(
        got, want,
        "FilterLogEvents word={word:?} streams={streams:?} limit={limit}"
    );
}

fn run(ops: Vec<Op>, limits: (usize, usize)) {
    let mut s = Store::open(tempfile::tempdir().unwrap());
    s.call("CreateLogGroup", &json!({"logGroupName": GROUP}));
    let mut model: Vec<Vec<Ev>> = vec![Vec::new(); STREAMS];
    let mut retained = false;
    let mut order = 0u64;
    let mut seq = [0u64; STREAMS];
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Put { stream, mut events } => {
                events.sort_by_key(|e| e.0);
                let name = stream_name(stream);
                if model[stream].is_empty() {
                    // Creating it again is refused when it exists (after an append, say).
                    let _ = s.logs.handle(
                        &key(),
                        "CreateLogStream",
                        &serde_json::to_vec(&json!({"logGroupName": GROUP, "logStreamName": name}))
                            .unwrap(),
                        NOW,
                    );
                }
                let msgs: Vec<String> = events
                    .iter()
                    .enumerate()
                    .map(|(i, e)| format!("{} {step}-{i}", WORDS[e.1]))
                    .collect();
                let body: Vec<Value> = events
                    .iter()
                    .zip(&msgs)
                    .map(|(e, m)| json!({"timestamp": e.0, "message": m}))
                    .collect();
                s.call(
                    "PutLogEvents",
                    &json!({"logGroupName": GROUP, "logStreamName": name, "logEvents": body}),
                );
                for (e, m) in events.iter().zip(msgs) {
                    order += 1;
                    // Events older than the retention are refused (expiredLogEventEndIndex).
                    if !(retained && e.0 < NOW - DAY_MS) {
                        model[stream].push((e.0, order, m));
                    }
                }
            }
            Op::Append { stream, events } => {
                seq[stream] += 1;
                let msgs: Vec<(i64, String)> = events
                    .iter()
                    .enumerate()
                    .map(|(i, e)| (e.0, format!("{} {step}-{i}", WORDS[e.1])))
                    .collect();
                let r = s
                    .logs
                    .append(
                        "agent",
                        vec![AppendChunk {
                            key: key(),
                            group: GROUP.into(),
                            stream: stream_name(stream),
                            seq: seq[stream],
                            events: msgs.clone(),
                        }],
                        NOW,
                    )
                    .unwrap();
                assert!(r[0].is_ok());
                for (ts, m) in msgs {
                    order += 1;
                    model[stream].push((ts, order, m));
                }
            }
            Op::Retain => {
                s.call(
                    "PutRetentionPolicy",
                    &json!({"logGroupName": GROUP, "retentionInDays": 1}),
                );
                retained = true;
                let before: usize = model.iter().map(Vec::len).sum();
                for evs in &mut model {
                    evs.retain(|e| e.0 >= NOW - DAY_MS);
                }
                let after: usize = model.iter().map(Vec::len).sum();
                let r = s.logs.sweep(NOW).unwrap();
                assert_eq!(r.expired_events, before - after);
            }
            Op::Unretain => {
                s.call("DeleteRetentionPolicy", &json!({"logGroupName": GROUP}));
                retained = false;
            }
            Op::Reopen => {
                s.logs.close();
                s = Store::open(s.dir);
            }
        }
    }
    let bytes: usize = model.iter().flatten().map(|e| e.2.len()).sum();
    assert_eq!(
        s.logs.stored_bytes().unwrap(),
        i64::try_from(bytes).unwrap()
    );
    for (i, evs) in model.iter().enumerate() {
        if evs.is_empty() {
            continue;
        }
        let name = stream_name(i);
        let want = sorted(evs.clone());
        let mid = want[want.len() / 2].0;
        for forward in [true, false] {
            check_get(&s, &name, &want, forward, limits.0, (None, None));
            check_get(&s, &name, &want, forward, limits.1, (Some(mid), None));
            check_get(&s, &name, &want, forward, limits.1, (None, Some(mid)));
        }
    }
    check_filter(&s, &model, None, None, limits.0);
    check_filter(&s, &model, Some(0), None, limits.1);
    check_filter(&s, &model, Some(1), Some(vec![0, 2]), limits.0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_store_agrees_with_a_model(
        ops in prop::collection::vec(op(), 1..25),
        limits in (1usize..7, 1usize..50),
    ) {
        run(ops, limits);
    }
}
