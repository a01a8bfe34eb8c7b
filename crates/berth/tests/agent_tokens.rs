#![allow(clippy::unwrap_used)]
//! End-to-end: per-cluster agent registration tokens. `berth agent-token` (signed like the aws
//! CLI) creates, lists, revokes and rotates them; a `berth agent` joins only the cluster its
//! token belongs to, a revoked token lets no new agent in, an agent that already joined keeps
//! (and rejoins with) its own credential, and unsigned admin calls change nothing.

mod common;

use common::{AwsResultExt, Berth, Options, run_with_timeout};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn start() -> Berth {
    Berth::start_with(Options {
        args: ["--runtime", "process"]
            .iter()
            .map(ToString::to_string)
            .collect(),
        ..Options::default()
    })
}

/// `berth agent-token ARGS...` against `b`: Ok(JSON) or Err(stderr).
fn agent_token(b: &Berth, args: &[&str]) -> Result<Value, String> {
    let mut cmd = Command::new(common::berth_bin());
    cmd.arg("agent-token")
        .args(args)
        .env("AWS_ENDPOINT_URL", &b.endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_REGION")
        .env_remove("AWS_CA_BUNDLE");
    let (status, stdout, stderr) = run_with_timeout(cmd, Duration::from_secs(60));
    if status.success() {
        Ok(serde_json::from_str(stdout.trim()).unwrap())
    } else {
        Err(stderr)
    }
}

fn agent_command(b: &Berth, token: &str, cluster: &str, dir: &Path) -> Command {
    let mut cmd = Command::new(common::berth_bin());
    cmd.args([
        "agent",
        "--server",
        &b.endpoint,
        "--token",
        token,
        "--cluster",
        cluster,
        "--runtime",
        "process",
        "--cpu",
        "1024",
        "--memory",
        "512",
        "--data-dir",
    ])
    .arg(dir)
    .env_remove("BERTH_AGENT_TOKEN")
    .stdin(Stdio::null());
    cmd
}

/// Run an agent that must be refused: its exit status and stderr.
fn refused_agent(b: &Berth, token: &str, cluster: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (status, _, stderr) = run_with_timeout(
        agent_command(b, token, cluster, dir.path()),
        Duration::from_secs(60),
    );
    assert!(!status.success(), "the agent must be refused: {stderr}");
    stderr
}

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_agent(b: &Berth, token: &str, cluster: &str, dir: &Path) -> Agent {
    Agent(
        agent_command(b, token, cluster, dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn instances(b: &Berth, cluster: &str) -> Vec<String> {
    common::arns(
        &b.aws(&["ecs", "list-container-instances", "--cluster", cluster])
            .json()["containerInstanceArns"],
    )
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn cluster_tokens_admit_agents_to_their_cluster_only_until_revoked() {
    let b = start();
    b.aws(&["ecs", "create-cluster", "--cluster-name", "c1"])
        .json();
    b.aws(&["ecs", "create-cluster", "--cluster-name", "c2"])
        .json();

    // A token is created for c1 and shown once.
    let created = agent_token(&b, &["create", "--cluster", "c1"]).unwrap();
    let token = created["agentToken"]["token"].as_str().unwrap().to_string();
    let token_id = created["agentToken"]["tokenId"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(token.starts_with("bat_"), "{created}");
    assert_eq!(created["agentToken"]["status"], "ACTIVE");
    assert!(
        created["agentToken"]["clusterArn"]
            .as_str()
            .unwrap()
            .ends_with(":cluster/c1")
    );
    let listed = agent_token(&b, &["list", "--cluster", "c1"]).unwrap();
    assert_eq!(listed["agentTokens"].as_array().unwrap().len(), 1);
    assert!(
        listed["agentTokens"][0].get("token").is_none(),
        "a listing must not show the secret: {listed}"
    );

    // c1's token does not open c2, and a made-up token opens nothing.
    let stderr = refused_agent(&b, &token, "c2");
    assert!(stderr.contains("token"), "{stderr}");
    refused_agent(
        &b,
        "bat_0000000000000000_0000000000000000000000000000000000000000000000000000000000000000",
        "c1",
    );
    assert!(instances(&b, "c2").is_empty());

    // With it, an agent joins c1 and runs c1's tasks.
    let d1 = tempfile::tempdir().unwrap();
    let first = spawn_agent(&b, &token, "c1", d1.path());
    wait_for("the agent to join c1", || instances(&b, "c1").len() == 1);
    let joined = instances(&b, "c1");
    b.register(&json!({
        "family": "tok-sleeper",
        "containerDefinitions": [{
            "name": "main", "image": "busybox", "cpu": 128, "memory": 64,
            "command": ["sleep", "300"], "essential": true
        }]
    }))
    .json();
    let run = b
        .aws(&[
            "ecs",
            "run-task",
            "--cluster",
            "c1",
            "--task-definition",
            "tok-sleeper",
        ])
        .json();
    let task = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    assert_eq!(run["tasks"][0]["containerInstanceArn"], joined[0].as_str());
    wait_for("the task to run on the joined agent", || {
        let d = b
            .aws(&["ecs", "describe-tasks", "--cluster", "c1", "--tasks", &task])
            .json();
        d["tasks"][0]["lastStatus"] == "RUNNING"
    });

    // Revoked: no new agent gets in with it ...
    let revoked = agent_token(&b, &["revoke", "--cluster", "c1", "--token-id", &token_id]).unwrap();
    assert_eq!(revoked["agentToken"]["status"], "REVOKED");
    refused_agent(&b, &token, "c1");
    // ... but the agent that joined keeps its own credential, even across a restart.
    drop(first);
    let again = spawn_agent(&b, &token, "c1", d1.path());
    wait_for("the restarted agent to rejoin as itself", || {
        let d = b
            .aws(&[
                "ecs",
                "describe-container-instances",
                "--cluster",
                "c1",
                "--container-instances",
                &joined[0],
            ])
            .json();
        d["containerInstances"][0]["agentConnected"] == true
    });
    assert_eq!(instances(&b, "c1"), joined, "no second instance appeared");

    // Rotation: a new token works, every older one is revoked.
    let rotated = agent_token(&b, &["rotate", "--cluster", "c1"]).unwrap();
    let token2 = rotated["agentToken"]["token"].as_str().unwrap().to_string();
    let d2 = tempfile::tempdir().unwrap();
    let second = spawn_agent(&b, &token2, "c1", d2.path());
    wait_for("a second agent to join with the rotated token", || {
        instances(&b, "c1").len() == 2
    });
    let statuses: Vec<Value> =
        agent_token(&b, &["list", "--cluster", "c1"]).unwrap()["agentTokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["status"].clone())
            .collect();
    assert_eq!(statuses, [json!("REVOKED"), json!("ACTIVE")]);
    drop(second);
    drop(again);

    // Deregistered: the instance's own credential is refused from then on.
    b.aws(&[
        "ecs",
        "deregister-container-instance",
        "--cluster",
        "c1",
        "--container-instance",
        &joined[0],
        "--force",
    ])
    .json();
    let identity = std::fs::read_to_string(d1.path().join("identity.json")).unwrap();
    let identity: Value = serde_json::from_str(&identity).unwrap();
    let body = json!({
        "container_instance_arn": joined[0],
        "instance_token": identity["instance_token"],
        "desired_version": 0, "reports": [], "wait_ms": 0
    })
    .to_string();
    let resp = b.http(
        "POST",
        "/_berth/agent/v1/sync",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(resp.status, 410, "{}", resp.text());
}

#[test]
fn admin_calls_need_a_signature_and_a_real_cluster() {
    let b = start();
    // Unsigned: refused as the API refuses, and nothing is created.
    let resp = b.http(
        "POST",
        "/_berth/admin/v1/agent-tokens/create",
        &[("Content-Type", "application/json")],
        br#"{"cluster":"default"}"#,
    );
    assert_eq!(resp.status, 403, "{}", resp.text());
    assert!(
        resp.text().contains("MissingAuthenticationTokenException"),
        "{}",
        resp.text()
    );
    let listed = agent_token(&b, &["list"]).unwrap();
    assert_eq!(listed["agentTokens"], json!([]));
    // Unknown cluster, unknown token id, missing credentials.
    let err = agent_token(&b, &["create", "--cluster", "nope"]).unwrap_err();
    assert!(err.contains("ClusterNotFoundException"), "{err}");
    let err = agent_token(&b, &["revoke", "--token-id", "ffffffffffffffff"]).unwrap_err();
    assert!(err.contains("InvalidParameterException"), "{err}");
    let mut cmd = Command::new(common::berth_bin());
    cmd.args(["agent-token", "list"])
        .env("AWS_ENDPOINT_URL", &b.endpoint)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY");
    let (status, _, stderr) = run_with_timeout(cmd, Duration::from_secs(30));
    assert!(!status.success());
    assert!(stderr.contains("AWS_ACCESS_KEY_ID"), "{stderr}");
    // A wrong secret is refused by the signature check.
    let mut cmd = Command::new(common::berth_bin());
    cmd.args(["agent-token", "create"])
        .env("AWS_ENDPOINT_URL", &b.endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "wrong")
        .env("AWS_DEFAULT_REGION", "us-east-1");
    let (status, _, stderr) = run_with_timeout(cmd, Duration::from_secs(30));
    assert!(!status.success());
    assert!(stderr.contains("InvalidSignatureException"), "{stderr}");
    assert_eq!(
        agent_token(&b, &["list"]).unwrap()["agentTokens"],
        json!([])
    );
    b.assert_healthy();
}
