//! The log store on its own, in-process (what `crates/berth-logs/tests/throughput.rs` used to
//! measure as an ignored test): agents' chunks appended from 4 threads, 10,000 events each,
//! every append durable before the next. Events/s and MB/s durable, CPU of this process,
//! database size. Reference: the same bytes to a file, one fdatasync per MiB.

use crate::Opts;
use crate::procs::{run_ref, self_cpu};
use crate::report::{Report, Samples, Side, Usage};
use anyhow::{Context, Result, bail};
use berth_core::PartitionKey;
use berth_logs::{AppendChunk, Config, Logs};
use serde_json::json;
use std::time::Instant;

fn key() -> PartitionKey {
    PartitionKey {
        account: "000000000000".into(),
        region: "us-east-1".into(),
    }
}

/// The log store case: `--events N` (1,000,000) of `--bytes B` (80) in 4 streams.
pub(crate) fn logstore(o: &Opts) -> Result<Report> {
    let total = o.n("--events", 1_000_000, 100_000) as u64;
    let line_bytes = o.n("--bytes", 80, 80).max(13);
    let per_chunk = 10_000u64;
    let streams = 4u64;
    let dir = crate::berth::TempDir::new("logstore")?;
    let logs = Logs::open(&Config {
        path: dir.0.join("logs.db"),
        max_stored_bytes: None,
    })
    .context("open the log store")?;
    let now = 1_800_000_000_000;
    logs.ensure_group(&key(), "g", true, &[], now)
        .context("create the group")?;
    let pad = "x".repeat(line_bytes - 13);
    let cpu0 = self_cpu();
    let started = Instant::now();
    let failures: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..streams)
            .map(|st| {
                let logs = logs.clone();
                let pad = pad.clone();
                s.spawn(move || {
                    let mut failed = 0u64;
                    for c in 0..total / per_chunk / streams {
                        let events = (0..per_chunk)
                            .map(|i| {
                                let ts = now + i64::try_from(c * per_chunk + i).unwrap_or(0);
                                (ts, format!("{c:06}-{i:05} {pad}"))
                            })
                            .collect();
                        let r = logs.append(
                            "bench",
                            vec![AppendChunk {
                                key: key(),
                                group: "g".into(),
                                stream: format!("s{st}"),
                                seq: c + 1,
                                events,
                            }],
                            now,
                        );
                        if !matches!(r.as_deref(), Ok([Ok(())])) {
                            failed += 1;
                        }
                    }
                    failed
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(1)).sum()
    });
    let secs = started.elapsed().as_secs_f64();
    let cpu = self_cpu() - cpu0;
    if failures > 0 {
        bail!("{failures} appends failed");
    }
    let bytes = logs.stored_bytes().context("stored bytes")?;
    let stored = (total / per_chunk / streams) * per_chunk * streams;
    let db = std::fs::metadata(dir.0.join("logs.db")).map_or(0, |m| m.len());
    let rr = run_ref(&json!({"kind": "file-write", "n": bytes.max(1), "loops": 1}))?;
    let mut r = Report::new(
        "logstore",
        format!(
            "Log store in-process: {stored} events of {line_bytes} bytes appended durably, 4 streams, 10,000-event chunks"
        ),
        "(no target: where ingest time goes without HTTP and the agent)",
    );
    #[allow(clippy::cast_precision_loss)]
    let (eps, mbs) = (stored as f64 / secs, bytes as f64 / secs / 1e6);
    r.row_in(
        "ev",
        Side::Berth,
        "events/s durable",
        "/s",
        Samples(vec![eps]),
        None,
    );
    r.row_in(
        "mb",
        Side::Berth,
        "MB/s of messages durable",
        "MB/s",
        Samples(vec![mbs]),
        None,
    );
    #[allow(clippy::cast_precision_loss)]
    r.row_in(
        "mb",
        Side::Reference,
        "write the same bytes to a file, fdatasync per MiB",
        "MB/s",
        Samples(vec![bytes as f64 / 1e6 / rr.total_s]),
        None,
    );
    r.usage.push(Usage {
        side: Side::Berth,
        process: "berth-bench (log store in-process)".into(),
        cpu_s: cpu,
        peak_rss_mib: None,
    });
    r.usage.push(Usage {
        side: Side::Reference,
        process: "file writer (berth-bench __ref)".into(),
        cpu_s: rr.self_cpu_s,
        peak_rss_mib: Some(rr.self_rss_mib),
    });
    #[allow(clippy::cast_precision_loss)]
    r.notes.push(format!(
        "{:.1} MB of messages in {secs:.2} s; database file {:.1} MB; {:.2} CPU-s per 100 MB.",
        bytes as f64 / 1e6,
        db as f64 / 1e6,
        cpu / (bytes as f64 / 1e8).max(1e-9)
    ));
    Ok(r)
}
