#![allow(clippy::unwrap_used)]
//! End-to-end tests of Application Auto Scaling for ECS services, driven with the real `aws`
//! CLI (`aws application-autoscaling ...`) against `berth up --runtime process`, with the
//! auto scaler running every 300 ms (`--autoscaling-interval-ms`) and 2-second metric
//! periods (`--metrics-period-secs`), so that target tracking's alarms (3 datapoints to
//! scale out, 15 to scale in) take seconds rather than minutes.
//!
//! Every service process carries a marker unique to the test in its argv and is killed when
//! the test ends, pass or fail.

mod common;

use common::{AwsResultExt, Berth, Options, kill_group_of, pids_with, wait_until};
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One test at a time: the CPU-burning one would otherwise starve the others' clocks.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Fixture {
    berth: Berth,
    marker: String,
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl Fixture {
    fn start() -> Fixture {
        let serial = SERIAL
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let berth = Berth::start_with(Options {
            args: [
                "--runtime",
                "process",
                "--agent-cpu",
                "4096",
                "--agent-memory",
                "8192",
                "--autoscaling-interval-ms",
                "300",
                "--metrics-period-secs",
                &PERIOD_SECS.to_string(),
            ]
            .iter()
            .map(ToString::to_string)
            .collect(),
            ..Options::default()
        });
        Fixture {
            berth,
            marker: format!("berth-autoscaling-test-{:016x}", rand::random::<u64>()),
            _serial: serial,
        }
    }

    fn b(&self) -> &Berth {
        &self.berth
    }

    fn aas(&self, args: &[&str]) -> common::AwsResult {
        let mut all = vec!["application-autoscaling"];
        all.extend_from_slice(args);
        self.berth.aws(&all)
    }

    /// A service `name` of `desired` long-running tasks.
    fn service(&self, name: &str, desired: i64) {
        self.service_running(name, desired, "while :; do sleep 1; done");
    }

    /// A service `name` of `desired` tasks running `script` (in `sh -c`), 256 CPU units each.
    fn service_running(&self, name: &str, desired: i64, script: &str) {
        let td = json!({
            "family": name,
            "requiresCompatibilities": ["EC2"],
            "networkMode": "bridge",
            "containerDefinitions": [{
                "name": "app",
                "image": "public.ecr.aws/docker/library/busybox:latest",
                "essential": true,
                "cpu": 256,
                "memory": 64,
                "command": ["sh", "-c", script, &self.marker],
            }],
        });
        self.berth.register(&td).json();
        self.berth
            .aws(&[
                "ecs",
                "create-service",
                "--service-name",
                name,
                "--task-definition",
                name,
                "--desired-count",
                &desired.to_string(),
                "--launch-type",
                "EC2",
            ])
            .json();
    }

    fn desired(&self, name: &str) -> i64 {
        let v = self
            .b()
            .ecs_ok("DescribeServices", &json!({"services": [name]}));
        v["services"][0]["desiredCount"].as_i64().unwrap()
    }

    fn running(&self, name: &str) -> i64 {
        let v = self
            .b()
            .ecs_ok("DescribeServices", &json!({"services": [name]}));
        v["services"][0]["runningCount"].as_i64().unwrap()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.berth.pid().to_string()])
            .stderr(Stdio::null())
            .status();
        std::thread::sleep(Duration::from_millis(50));
        // Twice: a runner may start a container between the scan and the kill.
        for _ in 0..2 {
            for pid in pids_with(&self.marker) {
                kill_group_of(pid);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

const TARGET: [&str; 6] = [
    "--service-namespace",
    "ecs",
    "--scalable-dimension",
    "ecs:service:DesiredCount",
    "--resource-id",
    "service/default/web",
];

/// `--metrics-period-secs` of the fixture.
const PERIOD_SECS: u64 = 2;

/// The service's CPUUtilization averages over the last 10 minutes, oldest first, as
/// `aws cloudwatch get-metric-statistics` shows them.
fn cpu_curve(fx: &Fixture, service: &str) -> Vec<f64> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (start, end) = ((now - 600).to_string(), (now + 1).to_string());
    let period = PERIOD_SECS.to_string();
    let v = fx
        .b()
        .aws(&[
            "cloudwatch",
            "get-metric-statistics",
            "--namespace",
            "AWS/ECS",
            "--metric-name",
            "CPUUtilization",
            "--dimensions",
            "Name=ClusterName,Value=default",
            &format!("Name=ServiceName,Value={service}"),
            "--start-time",
            &start,
            "--end-time",
            &end,
            "--period",
            &period,
            "--statistics",
            "Average",
        ])
        .json();
    let mut points = v["Datapoints"].as_array().unwrap().clone();
    // The CLI prints timestamps as ISO 8601 strings, which sort as times.
    points.sort_by_key(|p| p["Timestamp"].to_string());
    points
        .iter()
        .map(|p| p["Average"].as_f64().unwrap())
        .collect()
}

fn with_target<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut v: Vec<&str> = args.to_vec();
    v.extend_from_slice(&TARGET);
    v
}

fn activities(fx: &Fixture) -> Vec<Value> {
    fx.aas(&with_target(&["describe-scaling-activities"]))
        .json()["ScalingActivities"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn targets_policies_and_scheduled_actions_with_the_cli_and_across_a_crash() {
    let mut fx = Fixture::start();
    fx.service("web", 1);

    // Register: desiredCount 1 is raised to the minimum, as AWS does.
    let r = fx
        .aas(&with_target(&[
            "register-scalable-target",
            "--min-capacity",
            "2",
            "--max-capacity",
            "5",
        ]))
        .json();
    let arn = r["ScalableTargetARN"].as_str().unwrap().to_string();
    assert!(arn.contains(":scalable-target/"), "{arn}");
    assert_eq!(fx.desired("web"), 2);
    let acts = activities(&fx);
    assert_eq!(acts[0]["Description"], "Setting desired count to 2.");
    assert_eq!(acts[0]["Cause"], "minimum capacity was set to 2");
    assert_eq!(acts[0]["StatusCode"], "Successful");
    let svc = fx
        .b()
        .aws(&["ecs", "describe-services", "--services", "web"])
        .json();
    let events = svc["services"][0]["events"].to_string();
    assert!(
        events.contains("desired count set to 2 by Application Auto Scaling"),
        "{events}"
    );

    let t = fx
        .aas(&["describe-scalable-targets", "--service-namespace", "ecs"])
        .json();
    let t = &t["ScalableTargets"][0];
    assert_eq!(
        (t["MinCapacity"].as_i64(), t["MaxCapacity"].as_i64()),
        (Some(2), Some(5))
    );
    assert_eq!(t["ResourceId"], "service/default/web");
    assert_eq!(t["SuspendedState"]["DynamicScalingOutSuspended"], false);

    // A target tracking policy on CPU.
    let p = fx
        .aas(&with_target(&[
            "put-scaling-policy",
            "--policy-name",
            "cpu50",
            "--policy-type",
            "TargetTrackingScaling",
            "--target-tracking-scaling-policy-configuration",
            r#"{"TargetValue": 50.0, "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"}, "ScaleOutCooldown": 10, "ScaleInCooldown": 10}"#,
        ]))
        .json();
    assert!(
        p["PolicyARN"]
            .as_str()
            .unwrap()
            .ends_with(":resource/ecs/service/default/web:policyName/cpu50")
    );
    assert_eq!(p["Alarms"].as_array().unwrap().len(), 2);

    // A scheduled action on a cron in a time zone.
    fx.aas(&with_target(&[
        "put-scheduled-action",
        "--scheduled-action-name",
        "weeknights",
        "--schedule",
        "cron(0 22 ? * MON-FRI *)",
        "--timezone",
        "Europe/Paris",
        "--scalable-target-action",
        "MinCapacity=2,MaxCapacity=3",
    ]))
    .json();

    // Everything survives kill -9.
    fx.berth.restart();
    let t = fx
        .aas(&["describe-scalable-targets", "--service-namespace", "ecs"])
        .json();
    assert_eq!(t["ScalableTargets"][0]["ScalableTargetARN"], arn.as_str());
    let p = fx
        .aas(&["describe-scaling-policies", "--service-namespace", "ecs"])
        .json();
    let p = &p["ScalingPolicies"][0];
    assert_eq!(p["PolicyName"], "cpu50");
    assert_eq!(
        p["TargetTrackingScalingPolicyConfiguration"]["TargetValue"],
        50.0
    );
    let s = fx
        .aas(&["describe-scheduled-actions", "--service-namespace", "ecs"])
        .json();
    let s = &s["ScheduledActions"][0];
    assert_eq!(s["Schedule"], "cron(0 22 ? * MON-FRI *)");
    assert_eq!(s["Timezone"], "Europe/Paris");
    assert_eq!(s["ScalableTargetAction"]["MaxCapacity"], 3);
    assert_eq!(activities(&fx)[0]["Cause"], "minimum capacity was set to 2");

    // Bad input: AWS's errors, nothing changed.
    fx.aas(&[
        "register-scalable-target",
        "--service-namespace",
        "ecs",
        "--scalable-dimension",
        "ecs:service:DesiredCount",
        "--resource-id",
        "service/default/nope",
        "--min-capacity",
        "1",
        "--max-capacity",
        "2",
    ])
    .fails_with(
        "ValidationException",
        "ECS service doesn't exist: service/default/nope",
    );
    fx.aas(&with_target(&[
        "register-scalable-target",
        "--min-capacity",
        "4",
        "--max-capacity",
        "3",
    ]))
    .fails_with(
        "ValidationException",
        "Minimum capacity cannot be greater than maximum capacity",
    );
    fx.aas(&with_target(&[
        "put-scaling-policy",
        "--policy-name",
        "bad",
        "--policy-type",
        "TargetTrackingScaling",
        "--target-tracking-scaling-policy-configuration",
        r#"{"TargetValue": 50.0, "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageDiskUtilization"}}"#,
    ]))
    .fails_with("ValidationException", "Member must satisfy enum value set");
    fx.aas(&with_target(&[
        "put-scaling-policy",
        "--policy-name",
        "bad",
        "--policy-type",
        "StepScaling",
        "--step-scaling-policy-configuration",
        r#"{"AdjustmentType": "ChangeInCapacity", "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]}"#,
    ]))
    .fails_with("ValidationException", "Berth does not implement StepScaling");
    fx.aas(&with_target(&[
        "put-scheduled-action",
        "--scheduled-action-name",
        "bad",
        "--schedule",
        "cron(0 25 * * ? *)",
        "--scalable-target-action",
        "MinCapacity=3",
    ]))
    .fails_with("ValidationException", "Invalid schedule expression");
    fx.aas(&with_target(&[
        "delete-scaling-policy",
        "--policy-name",
        "nope",
    ]))
    .fails_with(
        "ObjectNotFoundException",
        "No scaling policy found for service namespace: ecs",
    );
    let t = fx
        .aas(&["describe-scalable-targets", "--service-namespace", "ecs"])
        .json();
    assert_eq!(t["ScalableTargets"][0]["MinCapacity"], 2);
    assert_eq!(
        fx.aas(&["describe-scaling-policies", "--service-namespace", "ecs"])
            .json()["ScalingPolicies"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Deregister takes the policies and actions along.
    fx.aas(&with_target(&[
        "delete-scheduled-action",
        "--scheduled-action-name",
        "weeknights",
    ]))
    .json();
    fx.aas(&with_target(&["deregister-scalable-target"])).json();
    fx.aas(&with_target(&["deregister-scalable-target"]))
        .fails_with("ObjectNotFoundException", "No scalable target registered for service namespace: ecs, resource ID: service/default/web");
    let t = fx
        .aas(&["describe-scalable-targets", "--service-namespace", "ecs"])
        .json();
    assert_eq!(t["ScalableTargets"], json!([]));
    assert_eq!(
        fx.aas(&["describe-scaling-policies", "--service-namespace", "ecs"])
            .json()["ScalingPolicies"],
        json!([])
    );
}

#[test]
fn a_scheduled_action_raises_the_minimum_and_the_service_follows() {
    let fx = Fixture::start();
    fx.service("web", 1);
    wait_until("one running task", Duration::from_secs(30), || {
        (fx.running("web") == 1).then_some(())
    });
    fx.aas(&with_target(&[
        "register-scalable-target",
        "--min-capacity",
        "1",
        "--max-capacity",
        "4",
    ]))
    .json();
    // Seconds ahead (an at() already past when it is put never runs), in UTC (the default
    // time zone).
    let at = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(12))
        .unwrap()
        .strftime("%Y-%m-%dT%H:%M:%S")
        .to_string();
    fx.aas(&with_target(&[
        "put-scheduled-action",
        "--scheduled-action-name",
        "rush-hour",
        "--schedule",
        &format!("at({at})"),
        "--scalable-target-action",
        "MinCapacity=3,MaxCapacity=4",
    ]))
    .json();
    wait_until("desiredCount 3", Duration::from_secs(60), || {
        (fx.desired("web") == 3).then_some(())
    });
    wait_until("three running tasks", Duration::from_secs(60), || {
        (fx.running("web") == 3).then_some(())
    });
    let t = fx
        .aas(&["describe-scalable-targets", "--service-namespace", "ecs"])
        .json();
    assert_eq!(t["ScalableTargets"][0]["MinCapacity"], 3);
    let acts = activities(&fx);
    assert_eq!(acts[0]["Description"], "Setting desired count to 3.");
    assert_eq!(acts[0]["Cause"], "minimum capacity was set to 3");
    assert_eq!(
        acts[1]["Description"],
        "Setting min capacity to 3 and max capacity to 4"
    );
    assert_eq!(
        acts[1]["Cause"],
        "scheduled action name rush-hour was triggered"
    );
    assert_eq!(
        acts[1]["StatusMessage"],
        "Successfully set min capacity to 3 and max capacity to 4"
    );
    // It ran once: no more activities follow.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(activities(&fx).len(), acts.len());
}

#[test]
fn target_tracking_scales_a_cpu_burning_service_out_and_back_in() {
    let fx = Fixture::start();
    let dir = tempfile::tempdir().unwrap();
    let load = dir.path().join("load");
    // Each task spins while the file exists (one core is 400% of its 256 CPU units), and
    // sleeps otherwise.
    let script = format!(
        "while :; do if [ -f '{}' ]; then i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; else sleep 0.5; fi; done",
        load.display()
    );
    fx.service_running("web", 1, &script);
    fx.aas(&with_target(&[
        "register-scalable-target",
        "--min-capacity",
        "1",
        "--max-capacity",
        "6",
    ]))
    .json();
    fx.aas(&with_target(&[
        "put-scaling-policy",
        "--policy-name",
        "cpu50",
        "--policy-type",
        "TargetTrackingScaling",
        "--target-tracking-scaling-policy-configuration",
        r#"{"TargetValue": 50.0, "PredefinedMetricSpecification": {"PredefinedMetricType": "ECSServiceAverageCPUUtilization"}, "ScaleOutCooldown": 4, "ScaleInCooldown": 4}"#,
    ]))
    .json();

    // Idle first: the task runs and its metric has datapoints (all low).
    wait_until("the task running", Duration::from_secs(60), || {
        (fx.running("web") == 1).then_some(())
    });
    wait_until("idle datapoints", Duration::from_secs(60), || {
        (cpu_curve(&fx, "web").len() >= 2).then_some(())
    });
    assert_eq!(fx.desired("web"), 1);
    // Under load: out, within a few 2-second periods. AWS's high alarm needs 3 periods above
    // the target; the first one may be only partly loaded.
    std::fs::write(&load, b"on").unwrap();
    let load_at = Instant::now();
    let grown = wait_until("a scale-out", Duration::from_secs(90), || {
        let d = fx.desired("web");
        (d > 1).then_some(d)
    });
    let took = load_at.elapsed().as_secs_f64();
    eprintln!(
        "autoscaling: scaled out to {grown} {took:.1} s ({:.1} metric periods of {PERIOD_SECS} s) after the load started",
        took / PERIOD_SECS as f64
    );
    assert!(grown <= 6, "{grown}");
    // The story so far: scale-outs by the high alarm, the service's events saying so.
    let acts = activities(&fx);
    let out = acts
        .iter()
        .find(|a| a["Cause"].as_str().unwrap().contains("-AlarmHigh-"))
        .unwrap_or_else(|| panic!("no scale-out activity: {acts:#?}"));
    let cause = out["Cause"].as_str().unwrap();
    assert!(
        cause.starts_with("monitor alarm TargetTracking-service/default/web-AlarmHigh-")
            && cause.ends_with("in state ALARM triggered policy cpu50"),
        "{cause}"
    );
    let n: i64 = out["Description"]
        .as_str()
        .unwrap()
        .strip_prefix("Setting desired count to ")
        .and_then(|d| d.strip_suffix('.'))
        .unwrap()
        .parse()
        .unwrap();
    assert!(n >= grown && n <= 6, "{out}");
    assert_eq!(
        out["StatusMessage"],
        format!("Successfully set desired count to {n}. Change successfully fulfilled by ecs.")
    );
    assert_eq!(out["StatusCode"], "Successful");
    let svc = fx
        .b()
        .aws(&["ecs", "describe-services", "--services", "web"])
        .json();
    let events = svc["services"][0]["events"].to_string();
    assert!(
        events.contains(&format!(
            "desired count set to {n} by Application Auto Scaling"
        )),
        "{events}"
    );

    // Load stops: back in (15 low datapoints), never below the minimum.
    std::fs::remove_file(&load).unwrap();
    wait_until("a scale-in to 1", Duration::from_secs(180), || {
        (fx.desired("web") == 1).then_some(())
    });
    // get-metric-statistics shows the CPU curve the scaler acted on: periods well above the
    // 50% target while the file existed, then periods under 45% (90% of it) after.
    let curve = cpu_curve(&fx, "web");
    let high = curve
        .iter()
        .position(|v| *v > 50.0)
        .unwrap_or_else(|| panic!("no period above the target: {curve:?}"));
    assert!(
        curve[high..].iter().filter(|v| **v < 45.0).count() >= 15,
        "15 low periods after the high ones: {curve:?}"
    );
    let acts = activities(&fx);
    let last_in = &acts[0];
    assert_eq!(last_in["Description"], "Setting desired count to 1.");
    assert!(
        last_in["Cause"].as_str().unwrap().contains("-AlarmLow-"),
        "{last_in}"
    );
    // The story in order: every scale-out came before the scale-in.
    let causes: Vec<&str> = acts
        .iter()
        .rev()
        .map(|a| a["Cause"].as_str().unwrap())
        .collect();
    let first_low = causes
        .iter()
        .position(|c| c.contains("-AlarmLow-"))
        .unwrap();
    assert!(
        causes[..first_low]
            .iter()
            .all(|c| !c.contains("-AlarmLow-")),
        "{causes:?}"
    );
    assert!(
        causes[first_low..]
            .iter()
            .all(|c| !c.contains("-AlarmHigh-")),
        "no flapping: {causes:?}"
    );
}
