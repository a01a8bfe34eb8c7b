#![allow(clippy::unwrap_used)]
//! Ingest throughput of the log store on this machine (ignored by default; run with
//! `cargo test --release -p berth-logs --test throughput -- --ignored --nocapture`).

use berth_core::PartitionKey;
use berth_logs::{AppendChunk, Config, Logs};
use std::time::Instant;

fn key() -> PartitionKey {
    PartitionKey {
        account: "000000000000".into(),
        region: "us-east-1".into(),
    }
}

#[test]
#[ignore = "a measurement, not a check"]
fn ingest_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let logs = Logs::open(&Config {
        path: dir.path().join("logs.db"),
        max_stored_bytes: None,
    })
    .unwrap();
    let now = 1_800_000_000_000;
    logs.ensure_group(&key(), "g", true, &[], now).unwrap();
    // Chunks as agents ship them: 10,000 events of ~80 bytes, 4 streams in parallel.
    let line = "x".repeat(70);
    let total = 1_000_000u64;
    let per_chunk = 10_000u64;
    let streams = 4u64;
    let started = Instant::now();
    std::thread::scope(|s| {
        for st in 0..streams {
            let logs = logs.clone();
            let line = line.clone();
            s.spawn(move || {
                for c in 0..total / per_chunk / streams {
                    let events = (0..per_chunk)
                        .map(|i| {
                            (
                                now + i64::try_from(c * per_chunk + i).unwrap(),
                                format!("{c:06}-{i:05} {line}"),
                            )
                        })
                        .collect();
                    let r = logs
                        .append(
                            "bench",
                            vec![AppendChunk {
                                key: key(),
                                group: "g".into(),
                                stream: format!("s{st}"),
                                seq: c + 1,
                                events,
                            }],
                            now,
                        )
                        .unwrap();
                    assert!(r[0].is_ok());
                }
            });
        }
    });
    let secs = started.elapsed().as_secs_f64();
    let bytes = logs.stored_bytes().unwrap();
    #[allow(clippy::cast_precision_loss)]
    let (eps, mbps) = (total as f64 / secs, bytes as f64 / secs / 1e6);
    eprintln!(
        "ingested {total} events ({:.1} MB) in {secs:.2} s: {eps:.0} events/s, {mbps:.1} MB/s (durable, 4 streams, 10,000-event chunks)",
        bytes as f64 / 1e6
    );
    let size = std::fs::metadata(dir.path().join("logs.db")).unwrap().len();
    eprintln!("database file: {:.1} MB", size as f64 / 1e6);
}
