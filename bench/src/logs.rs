//! Log shipping: tasks writing numbered 200-byte lines as fast as they can through the
//! `awslogs` driver (blocking mode, the lossless one), read back with GetLogEvents: MiB/s and
//! events/s to queryable, write-to-visible delay, events lost (by sequence number), CPU of
//! agent and ingest. Reference: the same bytes written to a file, one fdatasync per MiB.

use crate::Opts;
use crate::berth::{self, Api};
use crate::procs::{Meter, run_ref};
use crate::report::{Report, Samples, Side};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::io::Write;
use std::time::{Duration, Instant};

/// Bytes per line, newline included.
const LINE: usize = 200;

fn epoch_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// `berth-bench __writer SECONDS COUNTFILE`: writes `<seq> <epoch ns> <padding>` lines of
/// [`LINE`] bytes to stdout as fast as it can for SECONDS, then the number written to COUNTFILE.
pub(crate) fn writer_main(args: &[String]) -> Result<()> {
    let secs: f64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(1.0);
    let count_file = args.get(1).context("count file")?;
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out.lock());
    let t0 = Instant::now();
    let dur = Duration::from_secs_f64(secs);
    let mut n: u64 = 0;
    let pad = "x".repeat(LINE);
    while t0.elapsed() < dur {
        for _ in 0..64 {
            let head = format!("{n:012} {:020} ", epoch_ns());
            out.write_all(head.as_bytes())?;
            out.write_all(&pad.as_bytes()[..LINE - 1 - head.len()])?;
            out.write_all(b"\n")?;
            n += 1;
        }
    }
    out.flush()?;
    std::fs::write(count_file, n.to_string())?;
    Ok(())
}

/// What the analysis needs of one stored event (a few bytes instead of a JSON value: a
/// minute of events at 100+ MiB/s would not fit in memory as JSON).
struct Stored {
    /// The writer's sequence number and write time (ms), when the message has them.
    seq_ms: Option<(u64, f64)>,
    /// `ingestionTime`.
    ingest_ms: Option<f64>,
    /// Message bytes.
    len: usize,
}

fn compact(e: &Value) -> Stored {
    let msg = e["message"].as_str().unwrap_or_default();
    let mut it = msg.split(' ');
    let seq_ms = match (it.next(), it.next()) {
        (Some(seq), Some(ns)) => match (seq.parse::<u64>(), ns.parse::<u128>()) {
            #[allow(clippy::cast_precision_loss)]
            (Ok(seq), Ok(ns)) => Some((seq, ns as f64 / 1e6)),
            _ => None,
        },
        _ => None,
    };
    Stored {
        seq_ms,
        ingest_ms: e["ingestionTime"].as_f64(),
        len: msg.len(),
    }
}

/// Every event of `stream` (GetLogEvents from the head until the token stops moving).
async fn read_stream(api: &Api, group: &str, stream: &str) -> Result<Vec<Stored>> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut body =
            json!({"logGroupName": group, "logStreamName": stream, "startFromHead": true});
        if let Some(t) = &token {
            body["nextToken"] = json!(t);
        }
        let v = api
            .call_target("Logs_20140328.GetLogEvents", "logs", body)
            .await?;
        let events = v["events"].as_array().map_or(&[][..], Vec::as_slice);
        let next = v["nextForwardToken"].as_str().map(str::to_string);
        let done = events.is_empty() || next == token;
        out.extend(events.iter().map(compact));
        if done {
            return Ok(out);
        }
        token = next;
    }
}

/// The log shipping case.
pub(crate) async fn logs(o: &Opts) -> Result<Report> {
    let tasks = o.n("--tasks", 20, 2);
    let secs = o.n("--seconds", 60, 2);
    let (server, api) = berth::server(&[])?;
    api.call("CreateCluster", json!({"clusterName": "default"}))
        .await?;
    let agent = berth::agent(
        &api,
        &[
            "--runtime",
            "process",
            "--cpu",
            "10000000",
            "--memory",
            "100000000",
        ],
    )?;
    api.wait_for_agents(1).await?;
    let me = std::env::current_exe()?;
    let counts = berth::TempDir::new("logcounts")?;
    let group = "/berth-bench/logs";
    api.call(
        "RegisterTaskDefinition",
        json!({"family": "bench-logs", "containerDefinitions": [{
            "name": "w", "image": "busybox", "memory": 16, "cpu": 1, "essential": true,
            "command": ["sh", "-c", format!("exec '{}' __writer {secs} \"{}/$$\"", me.display(), counts.0.display())],
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": group, "awslogs-region": "us-east-1",
                "awslogs-stream-prefix": "b", "awslogs-create-group": "true", "mode": "blocking"}}
        }]}),
    )
    .await?;
    let mut meter = Meter::new(Side::Berth).with_client("berth-bench (API client)");
    meter.watch("berth server (ingest)", server.pid());
    meter.watch("berth agent (capture + shipping)", agent.pid());
    meter.begin();
    let mut arns = Vec::new();
    while arns.len() < tasks {
        let k = u32::try_from((tasks - arns.len()).min(10))?;
        arns.extend(api.run("bench-logs", k).await?);
    }
    let deadline = Instant::now() + Duration::from_secs(secs as u64 + 600);
    while !api.statuses(&arns).await?.iter().all(|s| s == "STOPPED") {
        if Instant::now() > deadline {
            bail!("the writers did not stop");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let written: u64 = std::fs::read_dir(&counts.0)?
        .flatten()
        .filter_map(|e| {
            std::fs::read_to_string(e.path())
                .ok()?
                .trim()
                .parse::<u64>()
                .ok()
        })
        .sum();
    // Wait until everything written is stored (or stops growing).
    let streams = || async {
        let v = api
            .call_target(
                "Logs_20140328.DescribeLogStreams",
                "logs",
                json!({"logGroupName": group}),
            )
            .await?;
        Ok::<Vec<String>, anyhow::Error>(
            v["logStreams"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["logStreamName"].as_str().map(str::to_string))
                .collect(),
        )
    };
    let mut events = Vec::new();
    let mut last = usize::MAX;
    let settle = Instant::now();
    loop {
        events.clear();
        for s in streams().await? {
            events.push(read_stream(&api, group, &s).await?);
        }
        let n: usize = events.iter().map(Vec::len).sum();
        if n as u64 >= written || (n == last && settle.elapsed() > Duration::from_secs(10)) {
            break;
        }
        last = n;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    meter.end();
    let mut delays = Samples::default();
    let mut lost = 0u64;
    let mut gaps = 0u64;
    let mut dup_or_reordered = 0u64;
    let mut stored = 0u64;
    let mut bytes = 0u64;
    let mut first_ts = f64::MAX;
    let mut last_ingest = 0f64;
    for stream in &events {
        let mut expect = 0u64;
        for e in stream {
            let Some((seq, written_ms)) = e.seq_ms else {
                continue;
            };
            stored += 1;
            bytes += e.len as u64 + 1;
            match seq.cmp(&expect) {
                std::cmp::Ordering::Greater => {
                    lost += seq - expect;
                    gaps += 1;
                }
                std::cmp::Ordering::Less => dup_or_reordered += 1,
                std::cmp::Ordering::Equal => {}
            }
            expect = expect.max(seq + 1);
            if let Some(ing) = e.ingest_ms {
                delays.push(ing - written_ms);
                last_ingest = last_ingest.max(ing);
            }
            first_ts = first_ts.min(written_ms);
        }
    }
    let inside = lost;
    lost += written.saturating_sub(stored + lost);
    let span_s = ((last_ingest - first_ts) / 1000.0).max(1e-3);
    #[allow(clippy::cast_precision_loss)]
    let (mib_s, ev_s) = (bytes as f64 / 1048576.0 / span_s, stored as f64 / span_s);
    let rr = run_ref(&json!({"kind": "file-write", "n": bytes.max(LINE as u64), "loops": 1}))?;
    let mut r = Report::new(
        "logs",
        format!(
            "Log shipping: {tasks} tasks writing {LINE}-byte lines as fast as they can for {secs} s (awslogs, blocking mode)"
        ),
        ">= 100 MiB/s lossless with <= 1 core for agent + ingest, p99 visible <= 2 s",
    );
    r.row_in(
        "mib",
        Side::Berth,
        "end-to-end MiB/s, first write to last event stored",
        "MiB/s",
        Samples(vec![mib_s]),
        None,
    );
    #[allow(clippy::cast_precision_loss)]
    r.row_in(
        "mib",
        Side::Reference,
        "write the same bytes to a file, fdatasync per MiB",
        "MiB/s",
        Samples(vec![bytes as f64 / 1048576.0 / rr.total_s]),
        None,
    );
    r.row_in(
        "ev",
        Side::Berth,
        "events/s to queryable",
        "/s",
        Samples(vec![ev_s]),
        None,
    );
    r.row_in(
        "vis",
        Side::Berth,
        "write -> ingestionTime (queryable)",
        "ms",
        delays,
        None,
    );
    #[allow(clippy::cast_precision_loss)]
    r.row_in(
        "lost",
        Side::Berth,
        "events lost (by sequence number; must be 0)",
        "count",
        Samples(vec![lost as f64]),
        None,
    );
    #[allow(clippy::cast_precision_loss)]
    r.row_in(
        "dup",
        Side::Berth,
        "events duplicated or out of order",
        "count",
        Samples(vec![dup_or_reordered as f64]),
        None,
    );
    r.usage = meter.usage();
    r.usage.extend(rr_usage(&rr));
    r.notes.push(format!(
        "{written} lines written, {stored} stored ({bytes} bytes); {inside} lost in {gaps} gaps \
         inside the streams, {} after their last stored event. CPU of the writers is the agent's \
         reaped children. Agent + ingest CPU per second of the run is the sum of the first two rows \
         divided by {span_s:.1} s.",
        lost - inside
    ));
    Ok(r)
}

fn rr_usage(rr: &crate::procs::RefResult) -> Vec<crate::report::Usage> {
    vec![crate::report::Usage {
        side: Side::Reference,
        process: "file writer (berth-bench __ref)".into(),
        cpu_s: rr.self_cpu_s,
        peak_rss_mib: Some(rr.self_rss_mib),
    }]
}
