#![allow(clippy::unwrap_used)]
//! End-to-end tests of logs: the `awslogs` driver shipping container output from the process
//! runtime, and the CloudWatch Logs API on Berth's port, driven with the real `aws` CLI (v1).
//!
//! AWS CLI v1 has no `aws logs tail`; [`tail_follow_polling_sees_every_line_once`] reproduces
//! what `aws logs tail --follow` (CLI v2, `awscli/customizations/logs/tail.py`) does instead:
//! FilterLogEvents following `nextToken`, then polling again from the newest timestamp seen
//! (startTime is inclusive) and de-duplicating by `eventId`.
//!
//! Waits in between actions poll over raw HTTP (the same wire protocol, without a Python
//! start-up per poll); actions and final observations go through the `aws` CLI. Every job's
//! argv carries a marker unique to the test, and marked processes are killed when the test
//! ends.

mod common;

use common::{AwsResultExt, Berth, Options, example, kill_group_of, pids_with, secs, wait_until};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const GROUP: &str = "/ecs/data-processor";
const CONTAINER: &str = "processor-container";
const LOGS_PREFIX: &str = "Logs_20140328";

// -------------------------------------------------------------------- fixture

/// A Berth and a marker carried by every job of the test; marked processes die with it.
struct Fixture {
    berth: Berth,
    marker: String,
}

impl Fixture {
    fn up(extra: &[&str]) -> Fixture {
        let mut args = vec!["--runtime", "process"];
        args.extend_from_slice(extra);
        let berth = Berth::start_with(Options {
            args: args.iter().map(ToString::to_string).collect(),
            ..Options::default()
        });
        let f = Fixture {
            berth,
            marker: format!("berth-logs-test-{:016x}", rand::random::<u64>()),
        };
        wait_until("the local agent", secs(20), || {
            let v = f
                .b()
                .ecs_ok("ListContainerInstances", &json!({"cluster": "default"}));
            (!v["containerInstanceArns"].as_array().unwrap().is_empty()).then_some(())
        });
        f
    }

    fn b(&self) -> &Berth {
        &self.berth
    }

    /// `sh -c SCRIPT MARKER`: the marker becomes `$0`, visible in the shell's argv.
    fn sh(&self, script: &str) -> Vec<String> {
        vec![
            "sh".into(),
            "-c".into(),
            script.to_string(),
            self.marker.clone(),
        ]
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for _ in 0..2 {
            for pid in pids_with(&self.marker) {
                kill_group_of(pid);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

// -------------------------------------------------------------------- helpers

/// A shell loop printing `"{tag}{i}"` for i in 1..=n, `per_tick` lines then `sleep tick`.
fn numbered(tag: &str, n: usize, per_tick: usize, tick: &str) -> String {
    format!(
        "i=1; while [ $i -le {n} ]; do j=0; while [ $j -lt {per_tick} ] && [ $i -le {n} ]; do echo \"{tag}$i\"; i=$((i+1)); j=$((j+1)); done; sleep {tick}; done"
    )
}

fn expected(tag: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{tag}{i}")).collect()
}

fn register_seed(b: &Berth) {
    b.aws(&[
        "ecs",
        "register-task-definition",
        "--cli-input-json",
        &format!("file://{}", example("data-processor.json").display()),
    ])
    .json();
}

/// `aws ecs run-task` of the seed job (FARGATE, awsvpc) with the command overridden.
fn run_seed(b: &Berth, command: &[String]) -> String {
    let overrides =
        json!({"containerOverrides": [{"name": CONTAINER, "command": command}]}).to_string();
    let v = b
        .aws(&[
            "ecs",
            "run-task",
            "--task-definition",
            "data-processor",
            "--launch-type",
            "FARGATE",
            "--network-configuration",
            "awsvpcConfiguration={subnets=[subnet-1]}",
            "--overrides",
            &overrides,
        ])
        .json();
    assert_eq!(v["failures"], json!([]), "{v:#}");
    v["tasks"][0]["taskArn"].as_str().unwrap().to_string()
}

fn task_id(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap()
}

fn describe_task(b: &Berth, arn: &str) -> Value {
    let v = b.ecs_ok("DescribeTasks", &json!({"tasks": [arn]}));
    v["tasks"][0].clone()
}

fn wait_stopped(b: &Berth, arn: &str, timeout: Duration) -> Value {
    wait_until(&format!("{arn} to stop"), timeout, || {
        let t = describe_task(b, arn);
        (t["lastStatus"] == "STOPPED").then_some(t)
    })
}

/// A Logs call over raw HTTP (signed with test/test, us-east-1).
fn logs_raw(b: &Berth, op: &str, body: &Value) -> (u16, Value) {
    b.call("us-east-1", &format!("{LOGS_PREFIX}.{op}"), body)
}

fn logs_ok(b: &Berth, op: &str, body: &Value) -> Value {
    let (status, v) = logs_raw(b, op, body);
    assert_eq!(status, 200, "{op} {body}: {v}");
    v
}

fn messages(v: &Value) -> Vec<String> {
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect()
}

fn stream_names(b: &Berth, group: &str) -> Vec<String> {
    let v = b
        .aws(&["logs", "describe-log-streams", "--log-group-name", group])
        .json();
    v["logStreams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["logStreamName"].as_str().unwrap().to_string())
        .collect()
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// `aws logs put-log-events` with `events` (timestamp, message).
fn put_events(b: &Berth, group: &str, stream: &str, events: &[(i64, String)]) -> Value {
    let evs: Vec<Value> = events
        .iter()
        .map(|(t, m)| json!({"timestamp": t, "message": m}))
        .collect();
    let input =
        b.json_file(&json!({"logGroupName": group, "logStreamName": stream, "logEvents": evs}));
    b.aws(&["logs", "put-log-events", "--cli-input-json", &input])
        .json()
}

// -------------------------------------------------------------------- tests

#[test]
fn seed_job_writes_every_line_in_order_to_its_stream() {
    let f = Fixture::up(&[]);
    let b = f.b();
    b.aws(&["logs", "create-log-group", "--log-group-name", GROUP])
        .json();
    register_seed(b);
    let n = 500;
    let arn = run_seed(b, &f.sh(&numbered("line ", n, 50, "0.01")));
    let t = wait_stopped(b, &arn, secs(30));
    assert_eq!(t["containers"][0]["exitCode"], 0, "{t:#}");
    let stream = format!("processor/{CONTAINER}/{}", task_id(&arn));
    assert_eq!(stream_names(b, GROUP), std::slice::from_ref(&stream));
    // The task reports STOPPED once its output is acknowledged: every line is there now.
    let v = b
        .aws(&[
            "logs",
            "get-log-events",
            "--log-group-name",
            GROUP,
            "--log-stream-name",
            &stream,
            "--start-from-head",
        ])
        .json();
    assert_eq!(messages(&v), expected("line ", n));
    let events = v["events"].as_array().unwrap();
    let started = t["startedAt"].as_f64().unwrap();
    for w in events.windows(2) {
        assert!(w[0]["timestamp"].as_i64() <= w[1]["timestamp"].as_i64());
    }
    let first_ts = events[0]["timestamp"].as_i64().unwrap();
    assert!(
        (first_ts as f64 / 1000.0 - started).abs() < 5.0,
        "captured at the container's start: {first_ts} vs {started}"
    );
    for e in events {
        assert!(e["ingestionTime"].as_i64().unwrap() >= e["timestamp"].as_i64().unwrap());
    }
    // Default (no --start-from-head): the newest events, still oldest first.
    let tail = b
        .aws(&[
            "logs",
            "get-log-events",
            "--log-group-name",
            GROUP,
            "--log-stream-name",
            &stream,
            "--limit",
            "3",
        ])
        .json();
    assert_eq!(messages(&tail), expected("line ", n)[n - 3..]);
    // The stream's description.
    let s = &b
        .aws(&["logs", "describe-log-streams", "--log-group-name", GROUP])
        .json()["logStreams"][0];
    assert_eq!(s["firstEventTimestamp"].as_i64(), Some(first_ts));
    assert_eq!(
        s["lastEventTimestamp"],
        events.last().unwrap()["timestamp"],
        "{s:#}"
    );
    assert!(s["lastIngestionTime"].as_i64().is_some());
    let bytes: usize = expected("line ", n).iter().map(String::len).sum();
    assert_eq!(s["storedBytes"].as_u64(), Some(bytes as u64));
    assert_eq!(
        s["arn"].as_str().unwrap(),
        format!("arn:aws:logs:us-east-1:000000000000:log-group:{GROUP}:log-stream:{stream}")
    );
    // The local output file is still written.
    let file = b
        .data_dir()
        .join("agent/output")
        .join(task_id(&arn))
        .join(format!("{CONTAINER}.log"));
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.lines().collect::<Vec<_>>(), expected("line ", n));
    // filter-log-events with a pattern.
    let v = b
        .aws(&[
            "logs",
            "filter-log-events",
            "--log-group-name",
            GROUP,
            "--filter-pattern",
            "\"line 42\"",
        ])
        .json();
    assert_eq!(
        messages(&v),
        [
            "line 42", "line 420", "line 421", "line 422", "line 423", "line 424", "line 425",
            "line 426", "line 427", "line 428", "line 429"
        ]
    );
    assert!(
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["logStreamName"] == stream.as_str())
    );
}

#[test]
fn three_parallel_tasks_write_three_streams_none_mixed() {
    let f = Fixture::up(&[]);
    let b = f.b();
    b.aws(&["logs", "create-log-group", "--log-group-name", GROUP])
        .json();
    register_seed(b);
    let n = 300;
    let tags = ["alpha ", "beta ", "gamma "];
    let arns: Vec<String> = tags
        .iter()
        .map(|tag| run_seed(b, &f.sh(&numbered(tag, n, 10, "0.02"))))
        .collect();
    // They overlap: each runs for about half a second after the previous was started.
    for arn in &arns {
        let t = wait_stopped(b, arn, secs(30));
        assert_eq!(t["containers"][0]["exitCode"], 0, "{t:#}");
    }
    let mut want: BTreeSet<String> = arns
        .iter()
        .map(|a| format!("processor/{CONTAINER}/{}", task_id(a)))
        .collect();
    assert_eq!(
        stream_names(b, GROUP).into_iter().collect::<BTreeSet<_>>(),
        want
    );
    for (arn, tag) in arns.iter().zip(tags) {
        let stream = format!("processor/{CONTAINER}/{}", task_id(arn));
        let v = b
            .aws(&[
                "logs",
                "get-log-events",
                "--log-group-name",
                GROUP,
                "--log-stream-name",
                &stream,
                "--start-from-head",
            ])
            .json();
        assert_eq!(messages(&v), expected(tag, n), "stream {stream}");
        want.remove(&stream);
    }
    assert!(want.is_empty());
    // Across streams, FilterLogEvents interleaves by time and finds each task's lines.
    let v = b
        .aws(&[
            "logs",
            "filter-log-events",
            "--log-group-name",
            GROUP,
            "--filter-pattern",
            "?beta ?gamma",
        ])
        .json();
    let got = messages(&v);
    assert_eq!(got.len(), 2 * n);
    assert!(got.iter().all(|m| !m.starts_with("alpha")));
    let ts: Vec<i64> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["timestamp"].as_i64().unwrap())
        .collect();
    assert!(ts.windows(2).all(|w| w[0] <= w[1]), "interleaved by time");
    let prefix = format!("processor/{CONTAINER}/{}", task_id(&arns[0]));
    let v = b
        .aws(&[
            "logs",
            "filter-log-events",
            "--log-group-name",
            GROUP,
            "--log-stream-name-prefix",
            &prefix,
            "--filter-pattern",
            "alpha",
        ])
        .json();
    assert_eq!(messages(&v), expected("alpha ", n));
}

/// `mode: blocking` (issue 5's regression): a task writing 200,000 numbered lines as fast as
/// it can must find every line stored exactly once, in order. Before the fix the runtime
/// dropped lines when its channel was full whatever the mode, and most were lost.
#[test]
fn blocking_mode_loses_no_line_of_a_flood() {
    let f = Fixture::up(&[]);
    let b = f.b();
    let group = "/berth-test/flood";
    let n: usize = 200_000;
    // ~100-byte lines, written with no pause (awk buffers its output: 4 KiB writes).
    let pad = "x".repeat(90);
    let script =
        format!("awk 'BEGIN {{ for (i = 1; i <= {n}; i++) printf \"%07d {pad}\\n\", i }}'");
    let td = json!({
        "family": "flood",
        "containerDefinitions": [{
            "name": "w", "image": "busybox", "memory": 64, "essential": true,
            "command": f.sh(&script),
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": group, "awslogs-region": "us-east-1",
                "awslogs-stream-prefix": "flood", "awslogs-create-group": "true",
                "mode": "blocking", "max-buffer-size": "1m"}}
        }]
    });
    let input = b.json_file(&td);
    b.aws(&[
        "ecs",
        "register-task-definition",
        "--cli-input-json",
        &input,
    ])
    .json();
    let t0 = Instant::now();
    let v = b
        .aws(&["ecs", "run-task", "--task-definition", "flood"])
        .json();
    assert_eq!(v["failures"], json!([]), "{v:#}");
    let arn = v["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    let t = wait_stopped(b, &arn, secs(120));
    assert_eq!(t["containers"][0]["exitCode"], 0, "{t:#}");
    let stream = format!("flood/w/{}", task_id(&arn));
    assert_eq!(stream_names(b, group), std::slice::from_ref(&stream));
    // Everything is stored by the time the task is reported stopped (the agent drains the
    // output before it reports the exit, and waits for acknowledgement while flushing); allow
    // a moment for the last acknowledgement anyway.
    let want: Vec<String> = (1..=n).map(|i| format!("{i:07} {pad}")).collect();
    let got = wait_until("every line stored", secs(30), || {
        let got = b.all_log_messages(group, &stream);
        (got.len() >= n).then_some(got)
    });
    let elapsed = t0.elapsed();
    if got != want {
        let first_bad = got.iter().zip(&want).position(|(g, w)| g != w);
        panic!(
            "{} lines stored of {n}; first difference at index {first_bad:?}",
            got.len()
        );
    }
    // The CLI sees the same stream: the first and the last events.
    let v = b
        .aws(&[
            "logs",
            "get-log-events",
            "--log-group-name",
            group,
            "--log-stream-name",
            &stream,
            "--start-from-head",
            "--limit",
            "2",
        ])
        .json();
    assert_eq!(messages(&v), want[..2]);
    let v = b
        .aws(&[
            "logs",
            "get-log-events",
            "--log-group-name",
            group,
            "--log-stream-name",
            &stream,
            "--limit",
            "1",
        ])
        .json();
    assert_eq!(messages(&v), want[n - 1..]);
    eprintln!("blocking flood: {n} lines stored in order in {elapsed:?}");
}

#[test]
fn a_missing_log_group_fails_the_task_as_ecs_does() {
    let f = Fixture::up(&[]);
    let b = f.b();
    register_seed(b);
    let unique = format!("never-printed-{:016x}", rand::random::<u64>());
    let arn = run_seed(b, &f.sh(&format!("echo {unique}")));
    let t = wait_stopped(b, &arn, secs(30));
    assert_eq!(t["stopCode"], "TaskFailedToStart", "{t:#}");
    let reason = t["stoppedReason"].as_str().unwrap();
    assert!(
        reason.starts_with("ResourceInitializationError: failed to validate logger args:"),
        "{reason}"
    );
    assert!(
        reason.contains("ResourceNotFoundException: The specified log group does not exist."),
        "{reason}"
    );
    assert!(
        reason.contains("awslogs-create-group"),
        "names the fix: {reason}"
    );
    // No container ran.
    assert!(t["containers"][0].get("exitCode").is_none(), "{t:#}");
    assert!(t.get("startedAt").is_none(), "{t:#}");
    b.aws(&["logs", "describe-log-streams", "--log-group-name", GROUP])
        .fails_with(
            "ResourceNotFoundException",
            "The specified log group does not exist.",
        );

    // With awslogs-create-group the group is created.
    let mut td: Value =
        serde_json::from_slice(&std::fs::read(example("data-processor.json")).unwrap()).unwrap();
    td["family"] = json!("data-processor-autocreate");
    let opts = &mut td["containerDefinitions"][0]["logConfiguration"]["options"];
    opts["awslogs-group"] = json!("/ecs/autocreated");
    opts["awslogs-create-group"] = json!("true");
    b.register(&td).json();
    let overrides =
        json!({"containerOverrides": [{"name": CONTAINER, "command": f.sh("echo created")}]})
            .to_string();
    let v = b
        .aws(&[
            "ecs",
            "run-task",
            "--task-definition",
            "data-processor-autocreate",
            "--launch-type",
            "FARGATE",
            "--network-configuration",
            "awsvpcConfiguration={subnets=[subnet-1]}",
            "--overrides",
            &overrides,
        ])
        .json();
    let arn = v["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    let t = wait_stopped(b, &arn, secs(30));
    assert_eq!(t["stopCode"], "EssentialContainerExited", "{t:#}");
    let groups = b
        .aws(&[
            "logs",
            "describe-log-groups",
            "--log-group-name-prefix",
            "/ecs/",
        ])
        .json();
    let names: Vec<&str> = groups["logGroups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["logGroupName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["/ecs/autocreated"]);
    let stream = format!("processor/{CONTAINER}/{}", task_id(&arn));
    assert_eq!(b.all_log_messages("/ecs/autocreated", &stream), ["created"]);
}

#[test]
fn paging_100k_events_forward_and_backward_returns_each_once() {
    let f = Fixture::up(&[]);
    let b = f.b();
    b.aws(&["logs", "create-log-group", "--log-group-name", "/bulk"])
        .json();
    b.aws(&[
        "logs",
        "create-log-stream",
        "--log-group-name",
        "/bulk",
        "--log-stream-name",
        "s",
    ])
    .json();
    let total = 100_000;
    let base = now_ms() - 60_000;
    let all: Vec<String> = (0..total).map(|i| format!("event {i:06}")).collect();
    let started = Instant::now();
    for (k, chunk) in all.chunks(10_000).enumerate() {
        // Ten events per millisecond: paging must not lose or repeat events sharing a time.
        let events: Vec<(i64, String)> = chunk
            .iter()
            .enumerate()
            .map(|(i, m)| {
                (
                    base + i64::try_from((k * 10_000 + i) / 10).unwrap(),
                    m.clone(),
                )
            })
            .collect();
        let r = put_events(b, "/bulk", "s", &events);
        assert!(r.get("rejectedLogEventsInfo").is_none(), "{r}");
    }
    eprintln!(
        "put 100,000 events with the aws CLI in {:?}",
        started.elapsed()
    );

    let get = |extra: &[&str]| -> Value {
        let mut args = vec![
            "logs",
            "get-log-events",
            "--log-group-name",
            "/bulk",
            "--log-stream-name",
            "s",
        ];
        args.extend_from_slice(extra);
        b.aws(&args).json()
    };
    // Forward from the head, 10,000 at a time, until the same token comes back.
    let mut forward = Vec::new();
    let mut token: Option<String> = None;
    let mut calls = 0;
    loop {
        let page = match &token {
            None => get(&["--start-from-head", "--limit", "10000"]),
            Some(t) => get(&["--start-from-head", "--limit", "10000", "--next-token", t]),
        };
        calls += 1;
        assert!(calls <= 12, "too many pages");
        let next = page["nextForwardToken"].as_str().unwrap().to_string();
        if token.as_deref() == Some(next.as_str()) {
            assert!(messages(&page).is_empty());
            break;
        }
        forward.extend(messages(&page));
        token = Some(next);
    }
    assert_eq!(forward.len(), total);
    assert!(
        forward == all,
        "forward paging returns every event once, in order"
    );
    // Backward from the tail.
    let mut pages: Vec<Vec<String>> = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = match &token {
            None => get(&["--limit", "10000"]),
            Some(t) => get(&["--limit", "10000", "--next-token", t]),
        };
        let next = page["nextBackwardToken"].as_str().unwrap().to_string();
        if token.as_deref() == Some(next.as_str()) {
            assert!(messages(&page).is_empty());
            break;
        }
        pages.push(messages(&page));
        token = Some(next);
        assert!(pages.len() <= 11, "too many pages");
    }
    let backward: Vec<String> = pages.into_iter().rev().flatten().collect();
    assert_eq!(backward.len(), total);
    assert!(backward == all, "backward paging returns every event once");
    let unique: BTreeSet<&String> = backward.iter().collect();
    assert_eq!(unique.len(), total);
}

#[test]
fn tail_follow_polling_sees_every_line_once() {
    // What `aws logs tail --follow` does (CLI v2 only): FilterLogEvents from now - 10m,
    // following nextToken; then startTime = newest timestamp seen, every 5 s (here every
    // 200 ms), skipping eventIds already seen at that timestamp.
    let f = Fixture::up(&[]);
    let b = f.b();
    b.aws(&["logs", "create-log-group", "--log-group-name", GROUP])
        .json();
    register_seed(b);
    let n = 60;
    let arn = run_seed(b, &f.sh(&numbered("tick ", n, 1, "0.05")));
    let mut seen_ids: BTreeSet<String> = BTreeSet::new();
    let mut lines: Vec<String> = Vec::new();
    let mut latencies: Vec<i64> = Vec::new();
    let mut start_time = now_ms() - 10 * 60 * 1000;
    let mut newest_ids: BTreeSet<String> = BTreeSet::new();
    let deadline = Instant::now() + secs(30);
    while lines.len() < n {
        assert!(
            Instant::now() < deadline,
            "tail saw {} of {n}: {lines:?}",
            lines.len()
        );
        let mut token: Option<String> = None;
        loop {
            let mut body =
                json!({"logGroupName": GROUP, "interleaved": true, "startTime": start_time});
            if let Some(t) = &token {
                body["nextToken"] = json!(t);
            }
            let page = logs_ok(b, "FilterLogEvents", &body);
            let polled_at = now_ms();
            for e in page["events"].as_array().unwrap() {
                let id = e["eventId"].as_str().unwrap().to_string();
                let ts = e["timestamp"].as_i64().unwrap();
                for key in ["ingestionTime", "timestamp", "eventId", "logStreamName"] {
                    assert!(e.get(key).is_some(), "tail.py reads {key}: {e}");
                }
                if newest_ids.contains(&id) {
                    continue;
                }
                assert!(seen_ids.insert(id.clone()), "eventId {id} seen twice: {e}");
                lines.push(e["message"].as_str().unwrap().to_string());
                latencies.push(polled_at - ts);
                if ts > start_time {
                    start_time = ts;
                    newest_ids.clear();
                }
                if ts == start_time {
                    newest_ids.insert(id);
                }
            }
            match page.get("nextToken") {
                Some(t) => token = Some(t.as_str().unwrap().to_string()),
                None => break,
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(lines, expected("tick ", n));
    // Queryable within a second of being written: capture-to-visible, measured with a
    // 200 ms polling period on top.
    latencies.sort_unstable();
    let p50 = latencies[latencies.len() / 2];
    let max = *latencies.last().unwrap();
    eprintln!("tail: capture-to-seen latency p50 {p50} ms, max {max} ms (200 ms poll period)");
    assert!(max < 1_200, "max latency {max} ms");
    wait_stopped(b, &arn, secs(30));
    // The CLI's FilterLogEvents agrees, from an inclusive startTime.
    let v = b
        .aws(&[
            "logs",
            "filter-log-events",
            "--log-group-name",
            GROUP,
            "--start-time",
            &start_time.to_string(),
        ])
        .json();
    assert_eq!(messages(&v).last().map(String::as_str), Some("tick 60"));
}

#[test]
fn retention_removes_old_events() {
    let f = Fixture::up(&["--logs-sweep-interval-secs", "1"]);
    let b = f.b();
    b.aws(&["logs", "create-log-group", "--log-group-name", "/retained"])
        .json();
    b.aws(&[
        "logs",
        "create-log-stream",
        "--log-group-name",
        "/retained",
        "--log-stream-name",
        "s",
    ])
    .json();
    let now = now_ms();
    let day = 24 * 3600 * 1000;
    // Three days old: allowed (less than 14 days), and past a 1-day retention.
    put_events(
        b,
        "/retained",
        "s",
        &[
            (now - 3 * day, "old 1".into()),
            (now - 3 * day + 1, "old 2".into()),
        ],
    );
    put_events(b, "/retained", "s", &[(now - 1000, "recent".into())]);
    assert_eq!(
        b.all_log_messages("/retained", "s"),
        ["old 1", "old 2", "recent"]
    );
    b.aws(&[
        "logs",
        "put-retention-policy",
        "--log-group-name",
        "/retained",
        "--retention-in-days",
        "1",
    ])
    .json();
    wait_until("the sweep to remove the old events", secs(10), || {
        (b.all_log_messages("/retained", "s") == ["recent"]).then_some(())
    });
    let g = b
        .aws(&[
            "logs",
            "describe-log-groups",
            "--log-group-name-prefix",
            "/retained",
        ])
        .json();
    assert_eq!(g["logGroups"][0]["retentionInDays"], 1);
    assert_eq!(g["logGroups"][0]["storedBytes"], 6);
    // Events older than the retention are refused from now on.
    let r = put_events(
        b,
        "/retained",
        "s",
        &[
            (now - 2 * day, "expired".into()),
            (now - 2 * day + 5, "expired too".into()),
        ],
    );
    assert_eq!(
        r["rejectedLogEventsInfo"]["expiredLogEventEndIndex"], 2,
        "{r}"
    );
    b.aws(&[
        "logs",
        "put-retention-policy",
        "--log-group-name",
        "/retained",
        "--retention-in-days",
        "2",
    ])
    .fails_with("InvalidParameterException", "retentionInDays");
    b.aws(&[
        "logs",
        "delete-retention-policy",
        "--log-group-name",
        "/retained",
    ])
    .json();
    let g = b
        .aws(&[
            "logs",
            "describe-log-groups",
            "--log-group-name-prefix",
            "/retained",
        ])
        .json();
    assert!(g["logGroups"][0].get("retentionInDays").is_none(), "{g:#}");
}

#[test]
fn logs_api_errors_and_tags_through_the_cli() {
    let f = Fixture::up(&[]);
    let b = f.b();
    b.aws(&[
        "logs",
        "create-log-group",
        "--log-group-name",
        "/app",
        "--tags",
        "team=core",
    ])
    .json();
    b.aws(&["logs", "create-log-group", "--log-group-name", "/app"])
        .fails_with(
            "ResourceAlreadyExistsException",
            "The specified log group already exists",
        );
    b.aws(&[
        "logs",
        "get-log-events",
        "--log-group-name",
        "/app",
        "--log-stream-name",
        "nope",
    ])
    .fails_with(
        "ResourceNotFoundException",
        "The specified log stream does not exist.",
    );
    b.aws(&[
        "logs",
        "create-log-stream",
        "--log-group-name",
        "/app",
        "--log-stream-name",
        "s",
    ])
    .json();
    let now = now_ms();
    let input = b.json_file(
        &json!({"logGroupName": "/app", "logStreamName": "s", "logEvents": [
        {"timestamp": now, "message": "b"}, {"timestamp": now - 5, "message": "a"}]}),
    );
    b.aws(&["logs", "put-log-events", "--cli-input-json", &input])
        .fails_with(
            "InvalidParameterException",
            "Log events in a single PutLogEvents request must be in chronological order.",
        );
    let r = put_events(
        b,
        "/app",
        "s",
        &[
            (now, "ok".into()),
            (now + 3 * 3600 * 1000, "from the future".into()),
        ],
    );
    assert_eq!(
        r["rejectedLogEventsInfo"]["tooNewLogEventStartIndex"], 1,
        "{r}"
    );
    assert_eq!(r["nextSequenceToken"].as_str().unwrap().len(), 56);
    let arn = "arn:aws:logs:us-east-1:000000000000:log-group:/app";
    b.aws(&[
        "logs",
        "tag-resource",
        "--resource-arn",
        arn,
        "--tags",
        "env=prod",
    ])
    .json();
    let t = b
        .aws(&["logs", "list-tags-for-resource", "--resource-arn", arn])
        .json();
    assert_eq!(t["tags"], json!({"env": "prod", "team": "core"}));
    b.aws(&[
        "logs",
        "untag-resource",
        "--resource-arn",
        arn,
        "--tag-keys",
        "team",
    ])
    .json();
    let t = b
        .aws(&["logs", "list-tags-log-group", "--log-group-name", "/app"])
        .json();
    assert_eq!(t["tags"], json!({"env": "prod"}));
    // Regions are apart.
    let west = b
        .aws_in("eu-west-1", &["logs", "describe-log-groups"])
        .json();
    assert_eq!(west["logGroups"], json!([]));
    b.aws(&[
        "logs",
        "delete-log-stream",
        "--log-group-name",
        "/app",
        "--log-stream-name",
        "s",
    ])
    .json();
    b.aws(&["logs", "delete-log-group", "--log-group-name", "/app"])
        .json();
    b.aws(&["logs", "delete-log-group", "--log-group-name", "/app"])
        .fails_with(
            "ResourceNotFoundException",
            "The specified log group does not exist.",
        );
}

#[test]
fn sigkill_while_a_task_logs_loses_no_acknowledged_event_and_doubles_none() {
    let mut f = Fixture::up(&[]);
    b_create_group(f.b(), GROUP);
    register_seed(f.b());
    let n = 4_000;
    let arn = run_seed(f.b(), &f.sh(&numbered("n", n, 20, "0.02")));
    let stream = format!("processor/{CONTAINER}/{}", task_id(&arn));
    // Some output is acknowledged (visible), the task still writing.
    let before = wait_until("acknowledged output", secs(30), || {
        let (status, v) = logs_raw(
            f.b(),
            "GetLogEvents",
            &json!({"logGroupName": GROUP, "logStreamName": stream, "startFromHead": true}),
        );
        (status == 200 && v["events"].as_array().unwrap().len() >= 200).then(|| messages(&v))
    });
    assert!(before.len() < n, "the task is still writing");
    f.berth.sigkill();
    f.berth.restart();
    let b = f.b();
    let t = wait_stopped(b, &arn, secs(30));
    assert_eq!(t["desiredStatus"], "STOPPED", "{t:#}");
    let after = b.all_log_messages(GROUP, &stream);
    // A prefix of the output, every acknowledged line included, none twice.
    assert!(
        after.len() >= before.len(),
        "{} < {}",
        after.len(),
        before.len()
    );
    assert_eq!(after[..before.len()], before[..]);
    assert_eq!(
        after,
        expected("n", after.len()),
        "in order, none missing or doubled"
    );
    eprintln!(
        "SIGKILL: {} lines acknowledged before, {} stored after restart (of {n} printed)",
        before.len(),
        after.len()
    );
}

fn b_create_group(b: &Berth, group: &str) {
    b.aws(&["logs", "create-log-group", "--log-group-name", group])
        .json();
}

// ------------------------------------------------------- a remote agent across a restart

/// A TCP proxy on a fixed port forwarding to the current address of a Berth whose port
/// changes when it restarts, so that a `berth agent` keeps one server URL.
struct Proxy {
    addr: SocketAddr,
    target: Arc<Mutex<SocketAddr>>,
}

impl Proxy {
    fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let target = Arc::new(Mutex::new(target));
        let t = target.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let to = *t.lock().unwrap();
                std::thread::spawn(move || {
                    let Ok(server) = TcpStream::connect(to) else {
                        return;
                    };
                    pump_both(client, server);
                });
            }
        });
        Proxy { addr, target }
    }

    fn retarget(&self, to: SocketAddr) {
        *self.target.lock().unwrap() = to;
    }
}

fn pump_both(a: TcpStream, b: TcpStream) {
    let (a2, b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
    let one = std::thread::spawn(move || pump(a, b));
    pump(b2, a2);
    let _ = one.join();
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
    let _ = from.shutdown(std::net::Shutdown::Both);
}

/// A `berth agent` process, killed when dropped.
struct Agent {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn server_restart_under_a_remote_agent_loses_and_doubles_nothing() {
    let token = format!("tok{:016x}", rand::random::<u64>());
    let berth = Berth::start_with(Options {
        subcommand: "server",
        args: vec![
            "--agent-token".into(),
            token.clone(),
            "--allow-dev-credentials".into(),
        ],
        ..Options::default()
    });
    let mut f = Fixture {
        berth,
        marker: format!("berth-logs-test-{:016x}", rand::random::<u64>()),
    };
    f.b()
        .aws(&["ecs", "create-cluster", "--cluster-name", "default"])
        .json();
    let proxy = Proxy::start(f.b().addr);
    let dir = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
    let child = Command::new(common::berth_bin())
        .args([
            "agent",
            "--server",
            &format!("http://{}", proxy.addr),
            "--token",
            &token,
            "--cpu",
            "1024",
            "--memory",
            "1024",
            "--runtime",
            "process",
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env_remove("BERTH_SERVER")
        .env_remove("BERTH_AGENT_TOKEN")
        .env_remove("BERTH_AGENT_DATA_DIR")
        .env("BERTH_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let _agent = Agent { child, _dir: dir };
    wait_until("the agent to join", secs(20), || {
        let v = f
            .b()
            .ecs_ok("ListContainerInstances", &json!({"cluster": "default"}));
        (!v["containerInstanceArns"].as_array().unwrap().is_empty()).then_some(())
    });
    let td = json!({
        "family": "remote-logger",
        "requiresCompatibilities": ["EC2"],
        "networkMode": "bridge",
        "containerDefinitions": [{
            "name": "logger",
            "image": "busybox",
            "essential": true,
            "memory": 64,
            "command": f.sh(&numbered("r", 3_000, 20, "0.02")),
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": "/remote", "awslogs-region": "us-east-1",
                "awslogs-stream-prefix": "p", "awslogs-create-group": "true"}}
        }]
    });
    f.b().register(&td).json();
    let v = f
        .b()
        .aws(&["ecs", "run-task", "--task-definition", "remote-logger"])
        .json();
    let arn = v["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    let stream = format!("p/logger/{}", task_id(&arn));
    let before = wait_until("acknowledged output", secs(30), || {
        let (status, v) = logs_raw(
            f.b(),
            "GetLogEvents",
            &json!({"logGroupName": "/remote", "logStreamName": stream, "startFromHead": true}),
        );
        let n = v["events"].as_array().map_or(0, Vec::len);
        (status == 200 && n >= 300).then_some(n)
    });
    assert!(before < 3_000, "the task is still writing");
    // The server dies mid-stream; the agent and its task go on, buffering.
    f.berth.sigkill();
    std::thread::sleep(Duration::from_millis(1500));
    f.berth.restart();
    proxy.retarget(f.b().addr);
    let b = f.b();
    let t = wait_stopped(b, &arn, secs(60));
    assert_eq!(t["containers"][0]["exitCode"], 0, "{t:#}");
    // Every line printed, once, in order: the agent resent what was not acknowledged, and
    // the server dropped what it already had.
    let got = wait_until("every line", secs(30), || {
        let got = b.all_log_messages("/remote", &stream);
        (got.len() >= 3_000).then_some(got)
    });
    assert_eq!(got.len(), 3_000, "no duplicates");
    assert!(got == expected("r", 3_000), "in order, none missing");
    let counts: BTreeMap<&String, usize> = got.iter().fold(BTreeMap::new(), |mut m, l| {
        *m.entry(l).or_default() += 1;
        m
    });
    assert!(counts.values().all(|&c| c == 1));
}
