#![allow(clippy::unwrap_used)]
//! A logs database of schema version 1 (one row per event) opened by this version: every
//! event moves into chunks with its id (so its eventId), its ingestion time and its order.

use berth_core::PartitionKey;
use berth_logs::{Config, Logs};
use rusqlite::{Connection, params};
use serde_json::{Value, json};

const NOW: i64 = 1_800_000_000_000;

/// Version 1's schema, as it shipped.
const V1: &str = "CREATE TABLE groups (
        id             INTEGER PRIMARY KEY AUTOINCREMENT,
        account        TEXT NOT NULL,
        region         TEXT NOT NULL,
        name           TEXT NOT NULL,
        created_ms     INTEGER NOT NULL,
        retention_days INTEGER,
        class          TEXT NOT NULL,
        kms_key_id     TEXT,
        tags           TEXT NOT NULL,
        stored_bytes   INTEGER NOT NULL DEFAULT 0,
        UNIQUE (account, region, name)
    );
    CREATE TABLE streams (
        id                INTEGER PRIMARY KEY AUTOINCREMENT,
        group_id          INTEGER NOT NULL,
        name              TEXT NOT NULL,
        created_ms        INTEGER NOT NULL,
        first_event_ms    INTEGER,
        last_event_ms     INTEGER,
        last_ingestion_ms INTEGER,
        stored_bytes      INTEGER NOT NULL DEFAULT 0,
        upload_seq        INTEGER NOT NULL DEFAULT 0,
        producer          TEXT,
        producer_seq      INTEGER,
        UNIQUE (group_id, name)
    );
    CREATE TABLE events (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        group_id  INTEGER NOT NULL,
        stream_id INTEGER NOT NULL,
        ts        INTEGER NOT NULL,
        ingest_ms INTEGER NOT NULL,
        message   TEXT NOT NULL
    );
    CREATE INDEX events_by_stream ON events (stream_id, ts, id);
    CREATE INDEX events_by_group ON events (group_id, ts, id);
    CREATE TABLE doomed_streams (
        stream_id INTEGER PRIMARY KEY,
        bytes     INTEGER NOT NULL
    );
    PRAGMA user_version = 1;";

fn key() -> PartitionKey {
    PartitionKey {
        account: "000000000000".into(),
        region: "us-east-1".into(),
    }
}

/// CloudWatch-shaped eventId of (timestamp, id), as Berth makes them.
fn event_id(ts: i64, id: i64) -> String {
    format!("{:020}{id:036}", i128::from(ts) + (1i128 << 63))
}

fn call(logs: &Logs, op: &str, body: &Value) -> Value {
    let out = logs
        .handle(&key(), op, &serde_json::to_vec(body).unwrap(), NOW)
        .unwrap_or_else(|e| panic!("{op} {body}: {e:?}"));
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn version_1_events_move_into_chunks_with_their_ids() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.db");
    // (id, stream, ts, ingest_ms, message): two streams interleaved, ids with gaps (events
    // evicted), equal timestamps, out-of-order timestamps, several ingestion times, and a
    // deleted stream (3) whose events wait for the sweep.
    let rows: Vec<(i64, i64, i64, i64, String)> = (0..3000i64)
        .map(|i| {
            let stream = [1, 2, 3][usize::try_from(i % 3).unwrap()];
            let ts = NOW - 100_000 + (i * 37 % 200_000) - (i % 7);
            (
                i * 2 + 5,
                stream,
                ts,
                NOW - 1000 + i / 500,
                format!("m{i} {}", "y".repeat(usize::try_from(i % 50).unwrap())),
            )
        })
        .collect();
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch("PRAGMA journal_mode = WAL;").unwrap();
        c.execute_batch(V1).unwrap();
        let bytes = |s: i64| -> i64 {
            rows.iter()
                .filter(|r| r.1 == s)
                .map(|r| i64::try_from(r.4.len()).unwrap())
                .sum()
        };
        c.execute(
            "INSERT INTO groups (id, account, region, name, created_ms, class, tags, stored_bytes)
             VALUES (1, '000000000000', 'us-east-1', 'g', ?1, 'STANDARD', '{}', ?2)",
            params![NOW - 5000, bytes(1) + bytes(2)],
        )
        .unwrap();
        for s in [1i64, 2] {
            c.execute(
                "INSERT INTO streams (id, group_id, name, created_ms, stored_bytes) VALUES (?1, 1, ?2, ?3, ?4)",
                params![s, format!("s{s}"), NOW - 5000, bytes(s)],
            )
            .unwrap();
        }
        c.execute(
            "INSERT INTO doomed_streams (stream_id, bytes) VALUES (3, ?1)",
            params![bytes(3)],
        )
        .unwrap();
        for r in &rows {
            c.execute(
                "INSERT INTO events (id, group_id, stream_id, ts, ingest_ms, message) VALUES (?1, 1, ?2, ?3, ?4, ?5)",
                params![r.0, r.1, r.2, r.3, r.4],
            )
            .unwrap();
        }
    }
    let logs = Logs::open(&Config {
        path: path.clone(),
        max_stored_bytes: None,
    })
    .unwrap();
    // Every event of the group, in (timestamp, id) order, with its eventId and ingestion time.
    let mut want: Vec<&(i64, i64, i64, i64, String)> = rows.iter().filter(|r| r.1 != 3).collect();
    want.sort_by_key(|r| (r.2, r.0));
    let mut got = Vec::new();
    let mut body = json!({"logGroupName": "g", "limit": 700});
    loop {
        let v = call(&logs, "FilterLogEvents", &body);
        got.extend(v["events"].as_array().unwrap().iter().cloned());
        match v["nextToken"].as_str() {
            Some(t) => body["nextToken"] = json!(t),
            None => break,
        }
    }
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g["eventId"], json!(event_id(w.2, w.0)));
        assert_eq!(g["timestamp"], json!(w.2));
        assert_eq!(g["ingestionTime"], json!(w.3));
        assert_eq!(g["message"], json!(w.4));
        assert_eq!(g["logStreamName"], json!(format!("s{}", w.1)));
    }
    // New events get ids after every old one: at an equal timestamp they come after.
    let last_ts = want.iter().filter(|r| r.1 == 1).map(|r| r.2).max().unwrap();
    call(
        &logs,
        "PutLogEvents",
        &json!({"logGroupName": "g", "logStreamName": "s1",
                "logEvents": [{"timestamp": last_ts, "message": "new"}]}),
    );
    let v = call(
        &logs,
        "GetLogEvents",
        &json!({"logGroupName": "g", "logStreamName": "s1", "limit": 2}),
    );
    let msgs: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(msgs.last(), Some(&"new"));
    // The deleted stream's events are still purged by the sweep.
    let before = logs.stored_bytes().unwrap();
    let r = logs.sweep(NOW).unwrap();
    assert_eq!(r.purged_events, rows.iter().filter(|r| r.1 == 3).count());
    assert!(logs.stored_bytes().unwrap() < before);
    logs.close();
    let c = Connection::open(&path).unwrap();
    let v: i64 = c
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, 2);
    let page: i64 = c
        .pragma_query_value(None, "page_size", |r| r.get(0))
        .unwrap();
    assert_eq!(page, 4096, "an existing database keeps its page size");
    let events_left: i64 = c
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'events'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(events_left, 0);
}
