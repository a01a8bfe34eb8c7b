#![allow(clippy::unwrap_used)]
//! `aws logs tail --follow` for real. The command exists only in AWS CLI v2, which is not
//! on PyPI; Debian packages it (`apt-get install awscli`, 2.9.x, `/usr/bin/aws`), and
//! `.ci/run` installs it beside the v1 CLI the other tests use. `BERTH_AWS_V2` names
//! another v2 binary. CLI 2.9 predates `AWS_ENDPOINT_URL`, so it gets `--endpoint-url`.
//!
//! A job prints numbered lines, one every 150 ms, while `aws logs tail --follow` runs from
//! before the task starts: every line must show exactly once, in order, in the task's
//! stream, and `tail` must keep following (it is killed at the end).

mod common;

use common::{AwsResultExt, Berth, Options};
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The AWS CLI v2 binary: `BERTH_AWS_V2`, else Debian's `/usr/bin/aws` when it is v2.
fn aws_v2() -> String {
    let candidate = std::env::var("BERTH_AWS_V2").unwrap_or_else(|_| "/usr/bin/aws".into());
    let out = Command::new(&candidate).arg("--version").output();
    match out {
        Ok(o) if String::from_utf8_lossy(&o.stdout).starts_with("aws-cli/2.") => candidate,
        other => panic!(
            "this test needs the AWS CLI v2 for `aws logs tail` (Debian: `apt-get install awscli`, \
             as .ci/run does; or set BERTH_AWS_V2): {candidate} gave {other:?}"
        ),
    }
}

#[test]
fn aws_cli_v2_logs_tail_follow_shows_every_line_once_in_order() {
    let aws = aws_v2();
    let b = Berth::start_with(Options {
        args: ["--runtime", "process"].map(String::from).to_vec(),
        ..Options::default()
    });
    let n = 40;
    let td = json!({
        "family": "tailed",
        "containerDefinitions": [{
            "name": "app",
            "image": "busybox:latest",
            "essential": true,
            "memory": 64,
            "command": ["sh", "-c", format!("i=1; while [ $i -le {n} ]; do echo \"tail line $i\"; i=$((i+1)); sleep 0.15; done")],
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": "/ecs/tailed",
                "awslogs-region": "us-east-1",
                "awslogs-stream-prefix": "tp",
                "awslogs-create-group": "true"
            }}
        }]
    });
    b.register(&td).json();
    // The group must exist for `tail` to start following it.
    b.aws(&[
        "logs",
        "create-log-group",
        "--log-group-name",
        "/ecs/tailed",
    ])
    .json();

    let mut tail = Command::new(&aws)
        .args([
            "--endpoint-url",
            &b.endpoint,
            "logs",
            "tail",
            "/ecs/tailed",
            "--follow",
            "--format",
            "detailed",
        ])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_PAGER", "")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = tail.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // `tail --follow` polls every 5 s; give it its first poll before the task starts.
    std::thread::sleep(Duration::from_secs(1));

    let run = b
        .aws(&["ecs", "run-task", "--task-definition", "tailed"])
        .json();
    let task_arn = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    let task_id = task_arn.rsplit('/').next().unwrap().to_string();
    let stream = format!("tp/app/{task_id}");

    let mut seen: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.iter().filter(|l| l.contains("tail line ")).count() < n && Instant::now() < deadline
    {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            seen.push(line);
        }
    }
    // One more poll period: a duplicate would show now.
    let extra_until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < extra_until {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            seen.push(line);
        }
    }
    let still_following = tail.try_wait().unwrap().is_none();
    let _ = tail.kill();
    let _ = tail.wait();
    let mut err = String::new();
    if let Some(mut e) = tail.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    assert!(still_following, "tail --follow exited: {err}");

    // `--format detailed`: "<timestamp> <stream> <message>".
    let lines: Vec<&String> = seen.iter().filter(|l| l.contains("tail line ")).collect();
    let expected: Vec<String> = (1..=n).map(|i| format!("tail line {i}")).collect();
    let messages: Vec<String> = lines
        .iter()
        .map(|l| {
            let mut parts = l.splitn(3, ' ');
            let _ts = parts.next().unwrap();
            let s = parts.next().unwrap();
            assert_eq!(s, stream, "{l}");
            parts.next().unwrap().to_string()
        })
        .collect();
    assert_eq!(messages, expected, "tail printed: {seen:#?}\nstderr: {err}");
}
