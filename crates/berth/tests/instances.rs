#![allow(clippy::unwrap_used)]
//! End-to-end: container instances and the rest of the task API through the real `aws` CLI —
//! agent authentication, attributes, filters, draining, deregistration, StartTask, RunTask
//! idempotency, managed tags and the retention of STOPPED tasks.

mod common;

use common::{AwsResultExt, Berth, Options};
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn start(extra: &[&str]) -> Berth {
    let mut args: Vec<String> = [
        "--runtime",
        "process",
        "--agent-cpu",
        "2048",
        "--agent-memory",
        "2048",
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    args.extend(extra.iter().map(ToString::to_string));
    Berth::start_with(Options {
        args,
        ..Options::default()
    })
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

fn instance_arn(b: &Berth) -> String {
    let mut arn = String::new();
    wait_for("the local agent", Duration::from_secs(20), || {
        let v = b.ecs_ok("ListContainerInstances", &json!({}));
        arn = v["containerInstanceArns"][0]
            .as_str()
            .unwrap_or_default()
            .to_string();
        !arn.is_empty()
    });
    arn
}

fn sleeper(b: &Berth, family: &str, marker: &str) {
    b.register(&json!({
        "family": family,
        "containerDefinitions": [{
            "name": "main", "image": "busybox", "cpu": 256, "memory": 128, "stopTimeout": 1,
            "command": ["sh", "-c", format!("sleep 300 # {marker}")]
        }]
    }))
    .json();
}

fn task_status(b: &Berth, arn: &str) -> Value {
    b.ecs_ok(
        "DescribeTasks",
        &json!({"tasks": [arn], "include": ["TAGS"]}),
    )["tasks"][0]
        .clone()
}

fn kill_marked(marker: &str) {
    let _ = Command::new("pkill").args(["-9", "-f", marker]).status();
}

#[test]
fn agent_with_a_wrong_token_is_refused() {
    let b = start(&[]);
    instance_arn(&b);
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(common::berth_bin())
        .args([
            "agent",
            "--server",
            &b.endpoint,
            "--token",
            "not-the-token",
            "--data-dir",
        ])
        .arg(dir.path())
        .env_remove("BERTH_AGENT_TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "the agent must exit with an error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refused") && stderr.contains("token"),
        "{stderr}"
    );
    // Only the local agent is registered, and the refused one saw nothing.
    let listed = b.aws(&["ecs", "list-container-instances"]).json();
    assert_eq!(listed["containerInstanceArns"].as_array().unwrap().len(), 1);
    // A raw sync with a forged instance credential is refused too.
    let arn = instance_arn(&b);
    let body = json!({
        "container_instance_arn": arn, "instance_token": "forged",
        "desired_version": 0, "reports": [], "wait_ms": 0
    })
    .to_string();
    let resp = b.http(
        "POST",
        "/_berth/agent/v1/sync",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(resp.status, 401, "{}", resp.text());
}

#[test]
fn attributes_filters_draining_and_deregistration() {
    let b = start(&[]);
    let arn = instance_arn(&b);
    let ci = b
        .aws(&[
            "ecs",
            "describe-container-instances",
            "--container-instances",
            &arn,
        ])
        .json();
    let ci = &ci["containerInstances"][0];
    assert_eq!(ci["status"], "ACTIVE");
    assert_eq!(ci["agentConnected"], true);
    let reg = &ci["registeredResources"];
    assert!(
        reg.as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "CPU" && r["integerValue"] == 2048)
    );
    assert!(
        reg.as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "MEMORY" && r["integerValue"] == 2048)
    );
    assert!(
        ci["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == "ecs.os-type" && a["value"] == "linux")
    );
    assert!(ci["versionInfo"]["agentVersion"].is_string());

    // PutAttributes / ListAttributes / DeleteAttributes.
    b.aws(&[
        "ecs",
        "put-attributes",
        "--attributes",
        &format!("name=stack,value=prod,targetId={arn}"),
    ])
    .json();
    let listed = b
        .aws(&[
            "ecs",
            "list-attributes",
            "--target-type",
            "container-instance",
            "--attribute-name",
            "stack",
        ])
        .json();
    assert_eq!(listed["attributes"][0]["value"], "prod");
    assert_eq!(listed["attributes"][0]["targetId"], arn.as_str());
    // Filters in the cluster query language.
    let hit = b
        .aws(&[
            "ecs",
            "list-container-instances",
            "--filter",
            "attribute:stack == prod",
        ])
        .json();
    assert_eq!(hit["containerInstanceArns"].as_array().unwrap().len(), 1);
    let miss = b
        .aws(&[
            "ecs",
            "list-container-instances",
            "--filter",
            "attribute:stack == dev",
        ])
        .json();
    assert!(miss["containerInstanceArns"].as_array().unwrap().is_empty());
    b.aws(&[
        "ecs",
        "list-container-instances",
        "--filter",
        "attribute:stack ~~ dev",
    ])
    .fails_with("InvalidParameterException", "filter");
    b.aws(&[
        "ecs",
        "delete-attributes",
        "--attributes",
        &format!("name=stack,targetId={arn}"),
    ])
    .json();
    let gone = b
        .aws(&[
            "ecs",
            "list-attributes",
            "--target-type",
            "container-instance",
            "--attribute-name",
            "stack",
        ])
        .json();
    assert!(gone["attributes"].as_array().unwrap().is_empty());
    b.aws(&[
        "ecs",
        "put-attributes",
        "--attributes",
        "name=bad name!,targetId=x",
    ])
    .fails_with("InvalidParameterException", "");

    // StartTask on the named instance; deregistration refuses while it runs.
    let marker = format!("berth-it-{}", std::process::id());
    sleeper(&b, "pinned", &marker);
    let started = b
        .aws(&[
            "ecs",
            "start-task",
            "--task-definition",
            "pinned",
            "--container-instances",
            &arn,
        ])
        .json();
    let task_arn = started["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    assert_eq!(started["tasks"][0]["containerInstanceArn"], arn.as_str());
    wait_for("RUNNING", Duration::from_secs(20), || {
        task_status(&b, &task_arn)["lastStatus"] == "RUNNING"
    });
    b.aws(&[
        "ecs",
        "deregister-container-instance",
        "--container-instance",
        &arn,
    ])
    .fails_with("InvalidParameterException", "running tasks");

    // Draining: no new placements.
    let drained = b
        .aws(&[
            "ecs",
            "update-container-instances-state",
            "--container-instances",
            &arn,
            "--status",
            "DRAINING",
        ])
        .json();
    assert_eq!(drained["containerInstances"][0]["status"], "DRAINING");
    let none = b
        .aws(&["ecs", "run-task", "--task-definition", "pinned"])
        .json();
    assert!(none["tasks"].as_array().unwrap().is_empty(), "{none}");
    assert_eq!(none["failures"].as_array().unwrap().len(), 1, "{none}");
    let listed = b
        .aws(&["ecs", "list-container-instances", "--status", "DRAINING"])
        .json();
    assert_eq!(listed["containerInstanceArns"][0], arn.as_str());

    // Forced deregistration: the instance goes INACTIVE and leaves the lists.
    let gone = b
        .aws(&[
            "ecs",
            "deregister-container-instance",
            "--container-instance",
            &arn,
            "--force",
        ])
        .json();
    assert_eq!(gone["containerInstance"]["status"], "INACTIVE");
    let listed = b.aws(&["ecs", "list-container-instances"]).json();
    assert!(
        listed["containerInstanceArns"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    b.aws(&[
        "ecs",
        "describe-container-instances",
        "--container-instances",
        "0123456789abcdef0123456789abcdef",
    ])
    .json()["failures"][0]["reason"]
        .as_str()
        .filter(|r| *r == "MISSING")
        .expect("MISSING failure");
    kill_marked(&marker);
}

#[test]
fn run_task_idempotency_managed_tags_and_retention() {
    let b = start(&["--task-retention-secs", "2"]);
    instance_arn(&b);
    let marker = format!("berth-it-tok-{}", std::process::id());
    sleeper(&b, "tok", &marker);
    let first = b
        .aws(&[
            "ecs",
            "run-task",
            "--task-definition",
            "tok",
            "--client-token",
            "once-only",
            "--enable-ecs-managed-tags",
            "--tags",
            "key=team,value=data",
            "--started-by",
            "ci/run-42",
        ])
        .json();
    let again = b
        .aws(&[
            "ecs",
            "run-task",
            "--task-definition",
            "tok",
            "--client-token",
            "once-only",
        ])
        .json();
    let arn = first["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    assert_eq!(
        again["tasks"][0]["taskArn"],
        arn.as_str(),
        "the same token returns the same task"
    );
    let listed = b
        .aws(&["ecs", "list-tasks", "--started-by", "ci/run-42"])
        .json();
    assert_eq!(listed["taskArns"].as_array().unwrap().len(), 1);
    let described = b
        .aws(&[
            "ecs",
            "describe-tasks",
            "--tasks",
            &arn,
            "--include",
            "TAGS",
        ])
        .json();
    let tags = described["tasks"][0]["tags"].as_array().unwrap().clone();
    assert!(
        tags.iter()
            .any(|t| t["key"] == "aws:ecs:clusterName" && t["value"] == "default"),
        "{tags:?}"
    );
    assert!(
        tags.iter()
            .any(|t| t["key"] == "team" && t["value"] == "data"),
        "{tags:?}"
    );
    assert_eq!(described["tasks"][0]["group"], "family:tok");
    assert_eq!(described["tasks"][0]["startedBy"], "ci/run-42");

    // Stop it; it stays describable while within retention, then is cleaned up.
    wait_for("RUNNING", Duration::from_secs(20), || {
        task_status(&b, &arn)["lastStatus"] == "RUNNING"
    });
    b.aws(&["ecs", "stop-task", "--task", &arn]).json();
    wait_for("STOPPED", Duration::from_secs(20), || {
        task_status(&b, &arn)["lastStatus"] == "STOPPED"
    });
    assert_eq!(
        task_status(&b, &arn)["stoppedReason"],
        "Task stopped by user"
    );
    wait_for("retention cleanup", Duration::from_secs(15), || {
        let v = b.ecs_ok("DescribeTasks", &json!({"tasks": [arn.clone()]}));
        v["failures"][0]["reason"] == "MISSING"
    });
    kill_marked(&marker);
}
