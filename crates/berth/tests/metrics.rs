#![allow(clippy::unwrap_used)]
//! End-to-end tests of ECS's CloudWatch metrics: services over `berth up --runtime process`
//! with a three-second metrics period, whose tasks burn CPU or sleep, observed with the real
//! `aws cloudwatch` CLI (v1: AWS JSON 1.0 with query-compatible errors); Docker runtime
//! sampling through the engine's stats; CloudWatch's errors for bad input.
//!
//! Every process a test's tasks start carries a marker unique to the test in its argv and is
//! killed (by pid) when the test ends, pass or fail.

mod common;

use common::{AwsResultExt, Berth, Options, kill_group_of, pids_with, secs, wait_until_every};
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The metrics period the fixtures run with, in seconds.
const PERIOD: u64 = 3;

struct Fixture {
    berth: Berth,
    marker: String,
}

impl Fixture {
    fn start(runtime: &str) -> Fixture {
        let berth = Berth::start_with(Options {
            args: [
                "--runtime",
                runtime,
                "--agent-cpu",
                "4096",
                "--agent-memory",
                "8192",
                "--metrics-period-secs",
                &PERIOD.to_string(),
            ]
            .iter()
            .map(ToString::to_string)
            .collect(),
            ..Options::default()
        });
        let fx = Fixture {
            berth,
            marker: format!("berth-metrics-test-{:016x}", rand::random::<u64>()),
        };
        wait_until("the local container instance", secs(30), || {
            let v = fx.berth.ecs_ok("ListContainerInstances", &json!({}));
            (!v["containerInstanceArns"].as_array()?.is_empty()).then_some(())
        });
        fx
    }

    /// A one-container task definition running `script` (the marker is `$0`) and a service
    /// of `count` tasks of it.
    fn service(&self, name: &str, script: &str, cpu: &str, memory: &str, count: u32) {
        let def = json!({
            "family": name,
            "cpu": cpu,
            "memory": memory,
            "containerDefinitions": [{
                "name": "main",
                "image": "berth-test/busybox:latest",
                "essential": true,
                "command": ["sh", "-c", script, self.marker],
            }],
        });
        self.berth.register(&def).json();
        self.berth
            .aws(&[
                "ecs",
                "create-service",
                "--service-name",
                name,
                "--task-definition",
                name,
                "--desired-count",
                &count.to_string(),
            ])
            .json();
        wait_until(&format!("{name} RUNNING"), secs(60), || {
            let v = self.berth.ecs_ok(
                "DescribeServices",
                &json!({"services": [name], "cluster": "default"}),
            );
            (v["services"][0]["runningCount"] == json!(count)).then_some(())
        });
    }

    /// `aws cloudwatch get-metric-statistics` over the last minute at the fixture's period.
    fn statistics(&self, metric: &str, dimensions: &[(&str, &str)]) -> Vec<Value> {
        let now = now_secs();
        let dims: Vec<String> = dimensions
            .iter()
            .map(|(k, v)| format!("Name={k},Value={v}"))
            .collect();
        let start = format!("{}", now - 60);
        let end = format!("{}", now + 1);
        let period = PERIOD.to_string();
        let mut args = vec![
            "cloudwatch",
            "get-metric-statistics",
            "--namespace",
            "AWS/ECS",
            "--metric-name",
            metric,
            "--start-time",
            &start,
            "--end-time",
            &end,
            "--period",
            &period,
            "--statistics",
            "Average",
            "Minimum",
            "Maximum",
            "SampleCount",
            "Sum",
            "--dimensions",
        ];
        args.extend(dims.iter().map(String::as_str));
        let v = self.berth.aws(&args).json();
        assert_eq!(v["Label"], metric, "{v}");
        let mut points = v["Datapoints"].as_array().unwrap().clone();
        // The CLI prints timestamps as ISO 8601 strings, which sort as times.
        points.sort_by_key(|p| p["Timestamp"].to_string());
        points
    }

    /// Wait until a service's metric has `n` data points (the current one included).
    fn wait_points(&self, metric: &str, service: &str, n: usize) -> Vec<Value> {
        wait_until(
            &format!("{n} {metric} points of {service}"),
            secs(90),
            || {
                let pts = self.statistics(
                    metric,
                    &[("ClusterName", "default"), ("ServiceName", service)],
                );
                (pts.len() >= n).then_some(pts)
            },
        )
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.berth.pid().to_string()])
            .stderr(Stdio::null())
            .status();
        std::thread::sleep(Duration::from_millis(50));
        // Docker runtime: this agent's containers, by its label.
        if let Ok(id) = std::fs::read_to_string(self.berth.data_dir().join("agent/docker-agent-id"))
        {
            let filter = format!("label=berth.agent={}", id.trim());
            let out = Command::new("docker")
                .args(["ps", "-aq", "--no-trunc", "--filter", &filter])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            let ids: Vec<&str> = out.split_whitespace().collect();
            if !ids.is_empty() {
                let _ = Command::new("docker")
                    .args(["rm", "-f", "-v"])
                    .args(&ids)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        for _ in 0..2 {
            for pid in pids_with(&self.marker) {
                kill_group_of(pid);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}

/// A member of a CBOR map.
fn member<'a>(v: &'a ciborium::Value, key: &str) -> Option<&'a ciborium::Value> {
    v.as_map()?
        .iter()
        .find(|(k, _)| k.as_text() == Some(key))
        .map(|(_, v)| v)
}

/// A Smithy RPC v2 CBOR call of a CloudWatch operation.
fn cbor_call(b: &Berth, operation: &str, body: &ciborium::Value) -> common::HttpResponse {
    let mut bytes = Vec::new();
    ciborium::ser::into_writer(body, &mut bytes).unwrap();
    b.signed_path(
        "us-east-1",
        &format!("/service/GraniteServiceVersion20100801/operation/{operation}"),
        "monitoring",
        &[
            ("smithy-protocol", "rpc-v2-cbor"),
            ("Content-Type", "application/cbor"),
            ("Accept", "application/cbor"),
        ],
        &bytes,
    )
}

/// A GetMetricStatistics request in CBOR (timestamps tagged 1, as Smithy sends them).
fn cbor_statistics(service: &str, start: i64, end: i64, statistics: &[&str]) -> ciborium::Value {
    use ciborium::Value as C;
    let text = |s: &str| C::Text(s.to_string());
    let dim = |n: &str, v: &str| C::Map(vec![(text("Name"), text(n)), (text("Value"), text(v))]);
    C::Map(vec![
        (text("Namespace"), text("AWS/ECS")),
        (text("MetricName"), text("CPUUtilization")),
        (
            text("Dimensions"),
            C::Array(vec![
                dim("ClusterName", "default"),
                dim("ServiceName", service),
            ]),
        ),
        (
            text("StartTime"),
            C::Tag(1, Box::new(C::Integer(start.into()))),
        ),
        (text("EndTime"), C::Tag(1, Box::new(C::Integer(end.into())))),
        (text("Period"), C::Integer(PERIOD.into())),
        (
            text("Statistics"),
            C::Array(statistics.iter().map(|s| text(s)).collect()),
        ),
    ])
}

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or_else(|| panic!("{k} in {v}"))
}

#[test]
fn busy_and_idle_services_show_their_cpu_and_memory() {
    let fx = Fixture::start("process");
    fx.service("burner", "while :; do :; done", "256", "512", 1);
    fx.service("sleeper", "sleep 3600", "256", "512", 2);

    // A complete period after the first samples: the busy loop uses (on a loaded machine,
    // at least) a good share of a core, i.e. far beyond its 256 reserved units.
    let burner = fx.wait_points("CPUUtilization", "burner", 3);
    let busiest = burner.iter().map(|p| f(p, "Average")).fold(0.0, f64::max);
    assert!(busiest > 25.0, "burner: {burner:#?}");
    for p in &burner {
        assert_eq!(p["Unit"], "Percent");
        assert_eq!(f(p, "SampleCount"), 1.0, "one task: {p}");
        assert!((f(p, "Sum") - f(p, "Average")).abs() < 1e-6, "{p}");
        assert!(f(p, "Minimum") <= f(p, "Average") && f(p, "Average") <= f(p, "Maximum"));
    }

    let sleeper = fx.wait_points("CPUUtilization", "sleeper", 3);
    for p in &sleeper[..sleeper.len() - 1] {
        assert!(f(p, "Average") < 10.0, "sleeper: {sleeper:#?}");
        assert!(f(p, "SampleCount") <= 2.0, "{p}");
    }
    assert!(
        sleeper.iter().any(|p| f(p, "SampleCount") == 2.0),
        "two tasks measured in some period: {sleeper:#?}"
    );

    // Memory: a shell's resident set is a small, non-zero share of 512 MiB.
    let memory = fx.wait_points("MemoryUtilization", "burner", 1);
    let m = f(&memory[0], "Average");
    assert!(m > 0.0 && m < 50.0, "memory: {memory:#?}");

    // The cluster: reservation is what the tasks reserve over what the instance registered
    // (3 x 256 of 4096 units, 3 x 512 of 8192 MiB).
    let reservation = fx.statistics("CPUReservation", &[("ClusterName", "default")]);
    let last = reservation.last().expect("cluster CPUReservation");
    assert!(
        (f(last, "Average") - 18.75).abs() < 0.01,
        "{reservation:#?}"
    );
    let memory_reservation = fx.statistics("MemoryReservation", &[("ClusterName", "default")]);
    assert!(
        (f(memory_reservation.last().unwrap(), "Average") - 18.75).abs() < 0.01,
        "{memory_reservation:#?}"
    );
    let cluster_cpu = fx.statistics("CPUUtilization", &[("ClusterName", "default")]);
    assert!(!cluster_cpu.is_empty());

    // ListMetrics names every series.
    let listed = fx
        .berth
        .aws(&["cloudwatch", "list-metrics", "--namespace", "AWS/ECS"])
        .json();
    let names: Vec<String> = listed["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let dims: Vec<String> = m["Dimensions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| {
                    format!(
                        "{}={}",
                        d["Name"].as_str().unwrap(),
                        d["Value"].as_str().unwrap()
                    )
                })
                .collect();
            format!("{} {}", m["MetricName"].as_str().unwrap(), dims.join(","))
        })
        .collect();
    for want in [
        "CPUUtilization ClusterName=default,ServiceName=burner",
        "MemoryUtilization ClusterName=default,ServiceName=burner",
        "CPUUtilization ClusterName=default,ServiceName=sleeper",
        "CPUUtilization ClusterName=default",
        "CPUReservation ClusterName=default",
        "MemoryReservation ClusterName=default",
        "MemoryUtilization ClusterName=default",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:#?}");
    }
    let filtered = fx
        .berth
        .aws(&[
            "cloudwatch",
            "list-metrics",
            "--namespace",
            "AWS/ECS",
            "--dimensions",
            "Name=ServiceName,Value=sleeper",
        ])
        .json();
    assert_eq!(
        filtered["Metrics"].as_array().unwrap().len(),
        2,
        "{filtered}"
    );

    // GetMetricData: the same numbers, newest first.
    let now = now_secs();
    let queries = json!([{
        "Id": "cpu",
        "MetricStat": {
            "Metric": {"Namespace": "AWS/ECS", "MetricName": "CPUUtilization",
                "Dimensions": [{"Name": "ClusterName", "Value": "default"}, {"Name": "ServiceName", "Value": "burner"}]},
            "Period": PERIOD, "Stat": "Maximum"
        }
    }]);
    let data = fx
        .berth
        .aws(&[
            "cloudwatch",
            "get-metric-data",
            "--start-time",
            &(now - 60).to_string(),
            "--end-time",
            &(now + 1).to_string(),
            "--metric-data-queries",
            &queries.to_string(),
        ])
        .json();
    let r = &data["MetricDataResults"][0];
    assert_eq!(r["Id"], "cpu");
    assert_eq!(r["StatusCode"], "Complete");
    let values = r["Values"].as_array().unwrap();
    assert!(!values.is_empty(), "{data}");
    assert!(values.iter().any(|v| v.as_f64().unwrap() > 25.0), "{data}");
    let ts: Vec<String> = r["Timestamps"]
        .as_array()
        .unwrap()
        .iter()
        .map(Value::to_string)
        .collect();
    assert!(ts.windows(2).all(|w| w[0] > w[1]), "descending: {ts:?}");

    // The same numbers through Smithy RPC v2 CBOR, as newer AWS SDKs ask for them.
    let resp = cbor_call(
        &fx.berth,
        "GetMetricStatistics",
        &cbor_statistics("burner", now - 60, now + 1, &["Maximum"]),
    );
    assert_eq!(resp.status, 200, "{:?}", resp.text());
    assert_eq!(resp.header("smithy-protocol"), Some("rpc-v2-cbor"));
    assert_eq!(resp.header("content-type"), Some("application/cbor"));
    let v: ciborium::Value = ciborium::de::from_reader(&resp.body[..]).unwrap();
    let points = member(&v, "Datapoints").and_then(|d| d.as_array()).unwrap();
    assert!(!points.is_empty(), "{v:?}");
    for p in points {
        let ts = member(p, "Timestamp").unwrap();
        assert!(
            matches!(ts, ciborium::Value::Tag(1, _)),
            "timestamps are tag 1: {ts:?}"
        );
        assert!(member(p, "Average").is_none());
    }
    assert!(
        points.iter().any(|p| member(p, "Maximum")
            .and_then(|m| m.as_float())
            .is_some_and(|m| m > 25.0)),
        "{v:?}"
    );
}

#[test]
fn cloudwatch_errors_are_cloudwatchs() {
    let b = Berth::start();
    let now = now_secs();
    let (start, end) = ((now - 600).to_string(), now.to_string());
    let base = |start: &str, end: &str, extra: &[&str]| {
        let mut args = vec![
            "cloudwatch",
            "get-metric-statistics",
            "--namespace",
            "AWS/ECS",
            "--metric-name",
            "CPUUtilization",
            "--dimensions",
            "Name=ClusterName,Value=default",
            "--start-time",
            start,
            "--end-time",
            end,
            "--period",
            "60",
        ];
        args.extend_from_slice(extra);
        b.aws(&args)
    };
    // EndTime before StartTime.
    base(&end, &start, &["--statistics", "Average"]).fails_with(
        "InvalidParameterValue",
        "The parameter StartTime must be less than the parameter EndTime.",
    );
    // A statistic CloudWatch does not know.
    base(&start, &end, &["--statistics", "Mean"]).fails_with(
        "InvalidParameterValue",
        "Member must satisfy enum value set",
    );
    // Both kinds of statistics.
    base(
        &start,
        &end,
        &["--statistics", "Average", "--extended-statistics", "p90"],
    )
    .fails_with("InvalidParameterCombination", "mutually exclusive");
    // Neither.
    base(&start, &end, &[]).fails_with("MissingParameter", "Statistics");
    // Too many data points.
    let long_ago = (now - 3 * 86_400).to_string();
    base(&long_ago, &end, &["--statistics", "Average"])
        .fails_with("InvalidParameterCombination", "exceeds the limit of 1440");
    // A namespace that cannot be one.
    b.aws(&[
        "cloudwatch",
        "get-metric-statistics",
        "--namespace",
        ":AWS/ECS",
        "--metric-name",
        "CPUUtilization",
        "--start-time",
        &start,
        "--end-time",
        &end,
        "--period",
        "60",
        "--statistics",
        "Average",
    ])
    .fails_with("InvalidParameterValue", "Namespace");
    // A namespace nobody publishes to is valid and empty, as in CloudWatch.
    let v = b
        .aws(&[
            "cloudwatch",
            "get-metric-statistics",
            "--namespace",
            "Nobody/Here",
            "--metric-name",
            "CPUUtilization",
            "--start-time",
            &start,
            "--end-time",
            &end,
            "--period",
            "60",
            "--statistics",
            "Average",
        ])
        .json();
    assert_eq!(v["Datapoints"], json!([]));
    let v = b
        .aws(&["cloudwatch", "list-metrics", "--namespace", "Nobody/Here"])
        .json();
    assert_eq!(v["Metrics"], json!([]));
    // GetMetricData with a bad query id.
    let q = json!([{"Id": "Bad", "MetricStat": {"Metric": {"Namespace": "AWS/ECS", "MetricName": "CPUUtilization"}, "Period": 60, "Stat": "Average"}}]);
    b.aws(&[
        "cloudwatch",
        "get-metric-data",
        "--start-time",
        &start,
        "--end-time",
        &end,
        "--metric-data-queries",
        &q.to_string(),
    ])
    .fails_with("InvalidParameterValue", "Id is not valid");

    // On the wire: JSON 1.0, the shape name in __type and the query code in a header; a
    // missing required member (which the CLI would refuse before sending) is MissingParameter.
    let target = "GraniteServiceVersion20100801.GetMetricStatistics";
    let body = json!({"MetricName": "CPUUtilization", "StartTime": 0, "EndTime": 60, "Period": 60, "Statistics": ["Average"]});
    let resp = b.signed(
        "us-east-1",
        &[
            ("X-Amz-Target", target),
            ("Content-Type", "application/x-amz-json-1.0"),
            ("x-amzn-query-mode", "true"),
        ],
        body.to_string().as_bytes(),
    );
    assert_eq!(resp.status, 400);
    assert_eq!(
        resp.header("x-amzn-query-error"),
        Some("MissingParameter;Sender")
    );
    assert_eq!(
        resp.header("content-type"),
        Some("application/x-amz-json-1.0")
    );
    let v = resp.json();
    assert_eq!(v["__type"], "MissingRequiredParameterException");
    assert!(
        v["message"].as_str().unwrap().contains("namespace")
            || v["message"].as_str().unwrap().contains("Namespace"),
        "{v}"
    );
    // The same refusal in CBOR (Smithy RPC v2): `__type` in a CBOR map, the query code in
    // the header.
    let resp = cbor_call(
        &b,
        "GetMetricStatistics",
        &cbor_statistics("web", now, now - 600, &["Average"]),
    );
    assert_eq!(resp.status, 400);
    assert_eq!(
        resp.header("x-amzn-query-error"),
        Some("InvalidParameterValue;Sender")
    );
    let v: ciborium::Value = ciborium::de::from_reader(&resp.body[..]).unwrap();
    assert_eq!(
        member(&v, "__type").and_then(|t| t.as_text()),
        Some("InvalidParameterValueException")
    );
    // Not CBOR at all, or without the protocol header.
    let resp = b.signed_path(
        "us-east-1",
        "/service/GraniteServiceVersion20100801/operation/ListMetrics",
        "monitoring",
        &[("smithy-protocol", "rpc-v2-cbor")],
        b"{not cbor",
    );
    assert_eq!(resp.status, 400);
    let v: ciborium::Value = ciborium::de::from_reader(&resp.body[..]).unwrap();
    assert_eq!(
        member(&v, "__type").and_then(|t| t.as_text()),
        Some("SerializationException")
    );
    let resp = b.signed_path(
        "us-east-1",
        "/service/GraniteServiceVersion20100801/operation/ListMetrics",
        "monitoring",
        &[],
        b"",
    );
    assert_eq!(resp.status, 400);
    // Operations Berth does not serve.
    b.aws(&[
        "cloudwatch",
        "put-metric-data",
        "--namespace",
        "Mine",
        "--metric-name",
        "m",
        "--value",
        "1",
    ])
    .fails_with("InvalidAction", "PutMetricData");
    // Nothing was published by any of it: only ECS's own metrics of the local instance.
    let v = b.aws(&["cloudwatch", "list-metrics"]).json();
    for m in v["Metrics"].as_array().unwrap() {
        assert_eq!(m["Namespace"], "AWS/ECS", "{v}");
        assert_ne!(m["MetricName"], "m", "{v}");
    }
}

#[test]
fn docker_tasks_are_measured_through_the_engine() {
    let fx = Fixture::start("docker");
    fx.service("dburner", "while :; do :; done", "512", "256", 1);
    let pts = fx.wait_points("CPUUtilization", "dburner", 3);
    let busiest = pts.iter().map(|p| f(p, "Average")).fold(0.0, f64::max);
    assert!(busiest > 10.0, "docker burner: {pts:#?}");
    let memory = fx.wait_points("MemoryUtilization", "dburner", 1);
    assert!(f(&memory[0], "Average") > 0.0, "{memory:#?}");
}

/// Poll `f` every 500 ms until it returns `Some`, or panic after `timeout`.
fn wait_until<T>(what: &str, timeout: Duration, f: impl FnMut() -> Option<T>) -> T {
    wait_until_every(what, timeout, Duration::from_millis(500), f)
}
