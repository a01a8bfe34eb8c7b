//! One behaviour, every backend: each test runs against MemStore and SqliteStore.
#![allow(clippy::unwrap_used)]

use berth_core::state::Kind;
use berth_store::{MemStore, Mutation, Record, SqliteStore, Store};

fn put(kind: Kind, key: &str, body: &str) -> Mutation {
    Mutation::Put(Record {
        kind,
        key: key.into(),
        body: body.as_bytes().to_vec(),
    })
}

fn backends() -> Vec<(&'static str, Box<dyn Store>)> {
    vec![
        ("mem", Box::new(MemStore::default())),
        ("sqlite", Box::new(SqliteStore::open_in_memory().unwrap())),
    ]
}

#[test]
fn put_replace_delete_and_order() {
    for (name, mut store) in backends() {
        store
            .commit(&[
                put(Kind::TaskDefinition, "a/r/td/x", "1"),
                put(Kind::Cluster, "a/r/cluster/b", "2"),
                put(Kind::Cluster, "a/r/cluster/a", "3"),
            ])
            .unwrap();
        store
            .commit(&[put(Kind::Cluster, "a/r/cluster/b", "4")])
            .unwrap();
        store
            .commit(&[Mutation::Delete {
                kind: Kind::Cluster,
                key: "a/r/cluster/a".into(),
            }])
            .unwrap();
        let got: Vec<(Kind, String, Vec<u8>)> = store
            .load()
            .unwrap()
            .into_iter()
            .map(|r| (r.kind, r.key, r.body))
            .collect();
        assert_eq!(
            got,
            vec![
                (Kind::Cluster, "a/r/cluster/b".into(), b"4".to_vec()),
                (Kind::TaskDefinition, "a/r/td/x".into(), b"1".to_vec()),
            ],
            "{name}"
        );
        store.reset().unwrap();
        assert!(store.load().unwrap().is_empty(), "{name}");
    }
}

#[test]
fn a_batch_applies_in_order() {
    for (name, mut store) in backends() {
        store
            .commit(&[
                put(Kind::Cluster, "k", "1"),
                Mutation::Delete {
                    kind: Kind::Cluster,
                    key: "k".into(),
                },
                put(Kind::Cluster, "k", "2"),
            ])
            .unwrap();
        let got = store.load().unwrap();
        assert_eq!(got.len(), 1, "{name}");
        assert_eq!(got[0].body, b"2", "{name}");
    }
}

#[test]
fn sqlite_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.db");
    {
        let mut s = SqliteStore::open(&path).unwrap();
        s.commit(&[put(Kind::Cluster, "x", "y")]).unwrap();
    }
    let mut s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.load().unwrap().len(), 1);
}

#[test]
fn sqlite_compresses_bodies_and_reads_plain_json_of_older_berths() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("berth.db");
    let body = format!(
        r#"{{"cluster":"default","task":{{"taskArn":"arn:aws:ecs:us-east-1:000000000000:task/default/{}","lastStatus":"RUNNING","containers":[{{"name":"main","lastStatus":"RUNNING"}}]}}}}"#,
        "ab".repeat(16)
    );
    {
        let mut s = SqliteStore::open(&path).unwrap();
        s.commit(&[put(Kind::Task, "t1", &body)]).unwrap();
    }
    // What is on disk is not the JSON, and is smaller.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let stored: Vec<u8> = conn
        .query_row("SELECT body FROM records WHERE key = 't1'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_ne!(stored, body.as_bytes());
    assert!(
        stored.len() < body.len() / 2,
        "{} of {}",
        stored.len(),
        body.len()
    );
    // A record an older Berth wrote as plain JSON still loads.
    conn.execute(
        "INSERT INTO records (kind, key, body) VALUES ('cluster', 'c1', ?1)",
        [br#"{"name":"old"}"#.to_vec()],
    )
    .unwrap();
    drop(conn);
    let mut s = SqliteStore::open(&path).unwrap();
    let loaded = s.load().unwrap();
    let find = |k: &str| loaded.iter().find(|r| r.key == k).unwrap().body.clone();
    assert_eq!(find("t1"), body.as_bytes());
    assert_eq!(find("c1"), br#"{"name":"old"}"#);
}
