#![allow(clippy::unwrap_used)]
//! End-to-end tests of services: CreateService / UpdateService / DeleteService /
//! DescribeServices over `berth up --runtime process` (plus a second `berth agent` for DAEMON),
//! driven with the real `aws` CLI (v1).
//!
//! Every action and every final observation goes through the `aws` CLI; the waits in between
//! poll DescribeServices / ListTasks / DescribeTasks over raw HTTP (the same wire protocol,
//! without a Python start-up per poll) with a deadline. Every process a test's services start
//! carries a marker unique to the test in its argv, and is killed when the test ends, pass or
//! fail.

mod common;

use common::{
    AwsResultExt, Berth, Options, arns, example, kill_group_of, pids_with, secs, wait_until_every,
};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Resources of the local agent (`berth up --agent-cpu --agent-memory`).
const LOCAL_CPU: i64 = 4096;
const LOCAL_MEMORY: i64 = 8192;

// -------------------------------------------------------------------- fixture

/// A `berth up --runtime process` with a work directory for the tasks' files and a marker
/// that every task process of the test carries in its argv.
struct Fixture {
    berth: Berth,
    dir: tempfile::TempDir,
    marker: String,
}

impl Fixture {
    fn start() -> Fixture {
        let berth = Berth::start_with(Options {
            args: [
                "--runtime",
                "process",
                "--agent-cpu",
                &LOCAL_CPU.to_string(),
                "--agent-memory",
                &LOCAL_MEMORY.to_string(),
            ]
            .iter()
            .map(ToString::to_string)
            .collect(),
            ..Options::default()
        });
        let fx = Fixture {
            berth,
            dir: tempfile::tempdir().unwrap(),
            marker: format!("berth-services-test-{:016x}", rand::random::<u64>()),
        };
        fx.wait_instances(1);
        fx
    }

    fn b(&self) -> &Berth {
        &self.berth
    }

    /// A path in the work directory, as a string for scripts.
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
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

    /// A long-running service process.
    fn forever(&self) -> Vec<String> {
        self.sh("while :; do sleep 1; done")
    }

    /// Wait until the default cluster has `n` container instances.
    fn wait_instances(&self, n: usize) -> Vec<String> {
        wait_until(&format!("{n} container instances"), secs(20), || {
            let v = self.b().ecs_ok("ListContainerInstances", &json!({}));
            let list = arns(&v["containerInstanceArns"]);
            (list.len() == n).then_some(list)
        })
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Berth first, so that its scheduler cannot replace the tasks killed next (their
        // processes lead their own process groups and outlive it).
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

/// Another `berth agent` process, killed when dropped.
struct AgentProcess {
    child: Option<Child>,
    _dir: tempfile::TempDir,
    log: PathBuf,
}

impl AgentProcess {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `berth agent --server URL --token $(cat <data-dir>/agent-token) --cpu 1024 --memory 1024`.
fn start_agent(b: &Berth) -> AgentProcess {
    let token = std::fs::read_to_string(b.data_dir().join("agent-token")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("agent.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(common::berth_bin())
        .args([
            "agent",
            "--runtime",
            "process",
            "--server",
            &b.endpoint,
            "--token",
            token.trim(),
        ])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--cpu", "1024", "--memory", "1024"])
        .env_remove("BERTH_SERVER")
        .env_remove("BERTH_AGENT_TOKEN")
        .env_remove("BERTH_AGENT_DATA_DIR")
        .env("BERTH_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    AgentProcess {
        child: Some(child),
        _dir: dir,
        log,
    }
}

// -------------------------------------------------------------------- ECS helpers

/// A container definition for the process runtime (`image` is required by ECS, unused here).
fn container(name: &str, command: &[String]) -> Value {
    json!({
        "name": name,
        "image": "public.ecr.aws/docker/library/busybox:latest",
        "essential": true,
        "memory": 64,
        "command": command,
    })
}

/// An EC2-only, bridge-mode task definition.
fn ec2_td(family: &str, containers: Vec<Value>) -> Value {
    json!({
        "family": family,
        "requiresCompatibilities": ["EC2"],
        "networkMode": "bridge",
        "containerDefinitions": containers,
    })
}

/// Register with the CLI; returns the task definition ARN.
fn register(b: &Berth, td: &Value) -> String {
    let v = b.register(td).json();
    s(&v["taskDefinition"]["taskDefinitionArn"]).to_string()
}

fn s(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

fn f(v: &Value) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("expected a number, got {v}"))
}

fn i(v: &Value) -> i64 {
    v.as_i64()
        .unwrap_or_else(|| panic!("expected an integer, got {v}"))
}

/// The last segment of an ARN (a task id).
fn id_of(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or_default()
}

/// `aws ecs create-service ARGS...`, must succeed; returns `service`.
fn create_service(b: &Berth, args: &[&str]) -> Value {
    let mut all = vec!["ecs", "create-service"];
    all.extend_from_slice(args);
    b.aws(&all).json()["service"].clone()
}

/// `aws ecs update-service --service NAME ARGS...`, must succeed; returns `service`.
fn update_service(b: &Berth, name: &str, args: &[&str]) -> Value {
    let mut all = vec!["ecs", "update-service", "--service", name];
    all.extend_from_slice(args);
    b.aws(&all).json()["service"].clone()
}

/// `aws ecs describe-services --services NAME`: the service (no failures).
fn describe_service(b: &Berth, name: &str) -> Value {
    let v = b
        .aws(&["ecs", "describe-services", "--services", name])
        .json();
    assert_eq!(v["failures"], json!([]), "{v:#}");
    assert_eq!(v["services"].as_array().unwrap().len(), 1, "{v:#}");
    v["services"][0].clone()
}

/// DescribeServices over raw HTTP (for polling).
fn service_raw(b: &Berth, name: &str) -> Value {
    let v = b.ecs_ok("DescribeServices", &json!({"services": [name]}));
    assert_eq!(v["failures"], json!([]), "{v:#}");
    v["services"][0].clone()
}

/// Poll DescribeServices until `pred` holds; returns that description.
fn wait_service(
    b: &Berth,
    name: &str,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let v = service_raw(b, name);
        if pred(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for service {name} to be {what}: {v:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn deployments(svc: &Value) -> &Vec<Value> {
    svc["deployments"]
        .as_array()
        .unwrap_or_else(|| panic!("no deployments in {svc:#}"))
}

fn primary(svc: &Value) -> &Value {
    let p: Vec<&Value> = deployments(svc)
        .iter()
        .filter(|d| d["status"] == "PRIMARY")
        .collect();
    assert_eq!(p.len(), 1, "one PRIMARY deployment: {svc:#}");
    p[0]
}

fn deployment<'a>(svc: &'a Value, id: &str) -> Option<&'a Value> {
    deployments(svc).iter().find(|d| d["id"] == id)
}

/// Event messages, newest first.
fn events(svc: &Value) -> Vec<String> {
    svc["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| s(&e["message"]).to_string())
        .collect()
}

/// The newest event whose message contains `part`.
fn event_with<'a>(svc: &'a Value, part: &str) -> Option<&'a Value> {
    svc["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| s(&e["message"]).contains(part))
}

fn has_event(svc: &Value, part: &str) -> bool {
    event_with(svc, part).is_some()
}

/// One deployment, all `n` tasks RUNNING and nothing pending, rollout COMPLETED.
fn steady(svc: &Value, n: i64) -> bool {
    let d = deployments(svc);
    d.len() == 1
        && d[0]["rolloutState"] == "COMPLETED"
        && svc["desiredCount"] == n
        && svc["runningCount"] == n
        && svc["pendingCount"] == 0
}

fn wait_steady(b: &Berth, name: &str, n: i64, timeout: Duration) -> Value {
    wait_service(b, name, &format!("steady at {n}"), timeout, |v| {
        steady(v, n)
    })
}

/// The tasks of service `name` with `desiredStatus` (raw ListTasks + DescribeTasks).
fn service_tasks_raw(b: &Berth, name: &str, desired: &str) -> Vec<Value> {
    let v = b.ecs_ok(
        "ListTasks",
        &json!({"serviceName": name, "desiredStatus": desired}),
    );
    let list = arns(&v["taskArns"]);
    if list.is_empty() {
        return vec![];
    }
    let v = b.ecs_ok("DescribeTasks", &json!({"tasks": list}));
    v["tasks"].as_array().unwrap().clone()
}

/// RUNNING tasks (desired and last status) of service `name`.
fn running_tasks(b: &Berth, name: &str) -> Vec<Value> {
    service_tasks_raw(b, name, "RUNNING")
        .into_iter()
        .filter(|t| t["lastStatus"] == "RUNNING")
        .collect()
}

/// ARNs of the tasks `startedBy` with `desiredStatus` (raw ListTasks).
fn started_by_raw(b: &Berth, started_by: &str, desired: &str) -> BTreeSet<String> {
    let v = b.ecs_ok(
        "ListTasks",
        &json!({"startedBy": started_by, "desiredStatus": desired}),
    );
    arns(&v["taskArns"]).into_iter().collect()
}

/// ARNs from `aws ecs list-tasks ARGS...`.
fn list_tasks(b: &Berth, args: &[&str]) -> BTreeSet<String> {
    let mut all = vec!["ecs", "list-tasks"];
    all.extend_from_slice(args);
    arns(&b.aws(&all).json()["taskArns"]).into_iter().collect()
}

/// `aws ecs describe-tasks`, every task found; by ARN.
fn describe_tasks(b: &Berth, task_arns: &BTreeSet<String>) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let all: Vec<&String> = task_arns.iter().collect();
    for chunk in all.chunks(100) {
        let mut args = vec!["ecs", "describe-tasks", "--tasks"];
        args.extend(chunk.iter().map(|a| a.as_str()));
        let v = b.aws(&args).json();
        assert_eq!(v["failures"], json!([]), "{v:#}");
        for t in v["tasks"].as_array().unwrap() {
            out.insert(s(&t["taskArn"]).to_string(), t.clone());
        }
    }
    assert_eq!(out.len(), task_arns.len());
    out
}

fn arn_set(tasks: &[Value]) -> BTreeSet<String> {
    tasks.iter().map(|t| s(&t["taskArn"]).to_string()).collect()
}

/// The container named `name` of task `t`.
fn ctr<'a>(t: &'a Value, name: &str) -> &'a Value {
    t["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name} in {t:#}"))
}

/// The pid of a container's process (`runtimeId` is `process:<pid>`).
fn pid_of(c: &Value) -> u32 {
    s(&c["runtimeId"])
        .strip_prefix("process:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("runtimeId of {c:#}"))
}

/// The "(task A) (task B)." list of a "has started N tasks:" event, as task ids.
fn started_ids(svc: &Value, name: &str) -> BTreeSet<String> {
    let prefix = format!("(service {name}) has started ");
    let mut out = BTreeSet::new();
    for e in events(svc) {
        let Some(rest) = e.strip_prefix(&prefix) else {
            continue;
        };
        let (count, list) = rest.split_once(" tasks: ").unwrap();
        let ids = task_list(list);
        assert_eq!(count.parse::<usize>().unwrap(), ids.len(), "{e}");
        out.extend(ids.into_iter().map(str::to_string));
    }
    out
}

/// Task ids named by "has stopped N running tasks:" events.
fn stopped_ids(svc: &Value, name: &str) -> BTreeSet<String> {
    let prefix = format!("(service {name}) has stopped ");
    let mut out = BTreeSet::new();
    for e in events(svc) {
        let Some(rest) = e.strip_prefix(&prefix) else {
            continue;
        };
        let (count, list) = rest.split_once(" running tasks: ").unwrap();
        let ids = task_list(list);
        assert_eq!(count.parse::<usize>().unwrap(), ids.len(), "{e}");
        out.extend(ids.into_iter().map(str::to_string));
    }
    out
}

/// The ids of "(task A) (task B)." in an event.
fn task_list(list: &str) -> Vec<&str> {
    list.trim_end_matches('.')
        .split(' ')
        .filter(|w| *w != "(task")
        .map(|w| w.trim_end_matches(')'))
        .collect()
}

fn ids(task_arns: &BTreeSet<String>) -> BTreeSet<String> {
    task_arns.iter().map(|a| id_of(a).to_string()).collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let idx = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

// -------------------------------------------------------------------- 1. the seed service

/// The seed's my-web-app (awsvpc, FARGATE, 0.25 vCPU / 512 MiB) as a service of 3. Adapted to
/// the process runtime: the container runs a shell loop, and its `portMappings` are dropped
/// (the process runtime shares the host's network, so host port 80 is reserved per instance
/// and only one task would fit on the single local agent). Its `awslogs` log group is created
/// first, as on AWS.
#[test]
fn seed_web_app_service_reaches_three_running_and_steady_state() {
    let fx = Fixture::start();
    let b = fx.b();
    let mut td: Value =
        serde_json::from_slice(&std::fs::read(example("my-web-app.json")).unwrap()).unwrap();
    let web = &mut td["containerDefinitions"][0];
    web.as_object_mut().unwrap().remove("portMappings");
    web["command"] = json!(fx.forever());
    let td_arn = register(b, &td);
    assert!(
        td_arn.ends_with(":task-definition/my-web-app:1"),
        "{td_arn}"
    );
    // Its awslogs driver needs the log group (the seed does not create it).
    b.aws(&[
        "logs",
        "create-log-group",
        "--log-group-name",
        "/ecs/my-web-app",
    ])
    .json();

    let created = create_service(
        b,
        &[
            "--service-name",
            "web",
            "--task-definition",
            "my-web-app",
            "--desired-count",
            "3",
            "--launch-type",
            "FARGATE",
            "--network-configuration",
            "awsvpcConfiguration={subnets=[subnet-1]}",
        ],
    );
    assert_eq!(created["serviceName"], "web", "{created:#}");
    assert_eq!(
        created["serviceArn"],
        format!(
            "arn:aws:ecs:us-east-1:{}:service/default/web",
            common::ACCOUNT
        )
    );
    assert_eq!(created["status"], "ACTIVE");
    assert_eq!(created["desiredCount"], 3);
    assert_eq!(created["launchType"], "FARGATE");
    assert_eq!(created["schedulingStrategy"], "REPLICA");
    assert_eq!(created["taskDefinition"], td_arn.as_str());
    assert_eq!(
        created["deploymentConfiguration"]["maximumPercent"], 200,
        "{created:#}"
    );
    assert_eq!(
        created["deploymentConfiguration"]["minimumHealthyPercent"],
        100
    );
    assert_eq!(
        created["networkConfiguration"]["awsvpcConfiguration"]["subnets"],
        json!(["subnet-1"])
    );
    assert_eq!(deployments(&created).len(), 1, "{created:#}");
    let d = primary(&created);
    let dep_id = s(&d["id"]).to_string();
    assert!(
        dep_id.len() == "ecs-svc/".len() + 19
            && dep_id.starts_with("ecs-svc/")
            && dep_id["ecs-svc/".len()..]
                .bytes()
                .all(|c| c.is_ascii_digit()),
        "{dep_id}"
    );
    assert_eq!(d["rolloutState"], "IN_PROGRESS");
    assert_eq!(d["desiredCount"], 3);
    assert_eq!(d["taskDefinition"], td_arn.as_str());

    let raw = wait_service(b, "web", "steady with its event", secs(30), |v| {
        steady(v, 3) && has_event(v, "(service web) has reached a steady state.")
    });
    assert_eq!(primary(&raw)["runningCount"], 3, "{raw:#}");
    // The waiter's first check succeeds (it would otherwise sleep 15 s).
    let started = Instant::now();
    b.aws(&["ecs", "wait", "services-stable", "--services", "web"])
        .json();
    assert!(started.elapsed() < secs(14), "services-stable slept");

    let svc = describe_service(b, "web");
    assert_eq!(svc["status"], "ACTIVE");
    assert_eq!(svc["runningCount"], 3, "{svc:#}");
    assert_eq!(svc["pendingCount"], 0);
    assert_eq!(deployments(&svc).len(), 1);
    let d = primary(&svc);
    assert_eq!(d["id"], dep_id.as_str());
    assert_eq!(d["rolloutState"], "COMPLETED", "{svc:#}");
    assert_eq!(
        d["rolloutStateReason"],
        format!("ECS deployment {dep_id} completed.")
    );
    assert_eq!(
        (d["runningCount"].clone(), d["pendingCount"].clone()),
        (json!(3), json!(0))
    );
    let ev = events(&svc);
    let started_event = ev
        .iter()
        .find(|e| e.starts_with("(service web) has started 3 tasks: (task "))
        .unwrap_or_else(|| panic!("no start event: {ev:#?}"));
    assert!(
        has_event(&svc, "(service web) has reached a steady state."),
        "{ev:#?}"
    );
    assert!(
        has_event(
            &svc,
            &format!("(service web) (deployment {dep_id}) deployment completed.")
        ),
        "{ev:#?}"
    );
    // Newest first: the steady state comes after the start.
    let pos = |part: &str| ev.iter().position(|e| e.contains(part)).unwrap();
    assert!(pos("has reached a steady state.") < pos("has started 3 tasks"));
    for e in svc["events"].as_array().unwrap() {
        assert_eq!(s(&e["id"]).len(), 36, "{e}");
        assert!(f(&e["createdAt"]) > common::now_secs() - 60.0);
    }

    // list-tasks --service-name finds exactly its tasks, each started by the deployment.
    let listed = list_tasks(b, &["--service-name", "web"]);
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert_eq!(ids(&listed), started_ids(&svc, "web"), "{started_event}");
    let tasks = describe_tasks(b, &listed);
    for t in tasks.values() {
        assert_eq!(t["lastStatus"], "RUNNING", "{t:#}");
        assert_eq!(t["desiredStatus"], "RUNNING");
        assert_eq!(t["startedBy"], dep_id.as_str(), "{t:#}");
        assert_eq!(t["group"], "service:web");
        assert_eq!(t["launchType"], "FARGATE");
        assert_eq!(t["taskDefinitionArn"], td_arn.as_str());
        assert_eq!(
            (t["cpu"].clone(), t["memory"].clone()),
            (json!("256"), json!("512"))
        );
        let pid = pid_of(ctr(t, "web-server"));
        assert!(
            std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .unwrap()
                .contains(&fx.marker),
            "task process {pid} runs"
        );
    }
    assert_eq!(
        started_by_raw(b, &dep_id, "RUNNING"),
        listed,
        "startedBy is the deployment id"
    );
    let services = b.ecs_ok("ListServices", &json!({}));
    assert_eq!(services["serviceArns"], json!([svc["serviceArn"]]));
}

// -------------------------------------------------------------------- 2. self-healing

#[test]
fn killed_tasks_are_replaced() {
    let fx = Fixture::start();
    let b = fx.b();
    let td = register(b, &ec2_td("heal", vec![container("app", &fx.forever())]));
    let created = create_service(
        b,
        &[
            "--service-name",
            "heal",
            "--task-definition",
            &td,
            "--desired-count",
            "2",
        ],
    );
    assert_eq!(created["launchType"], "EC2", "{created:#}");
    wait_steady(b, "heal", 2, secs(30));

    let mut latencies = Vec::new();
    let mut victims = BTreeSet::new();
    let mut replacements = BTreeSet::new();
    for n in 0..10 {
        let running = wait_until("two RUNNING tasks", secs(10), || {
            let r = running_tasks(b, "heal");
            (r.len() == 2).then_some(r)
        });
        let before = arn_set(&running);
        let victim = &running[n % 2];
        let pid = pid_of(ctr(victim, "app"));
        let t0 = Instant::now();
        kill_group_of(pid);
        let fresh = wait_until("a replacement RUNNING", secs(20), || {
            running_tasks(b, "heal")
                .into_iter()
                .find(|t| !before.contains(s(&t["taskArn"])))
        });
        latencies.push(t0.elapsed());
        victims.insert(s(&victim["taskArn"]).to_string());
        replacements.insert(s(&fresh["taskArn"]).to_string());
    }
    let mut sorted = latencies.clone();
    sorted.sort();
    eprintln!(
        "self-healing latency (SIGKILL of a service task's process group -> replacement RUNNING, {} kills, process runtime): p50 {:?}, p90 {:?}, max {:?}, min {:?}",
        sorted.len(),
        percentile(&sorted, 0.5),
        percentile(&sorted, 0.9),
        sorted[sorted.len() - 1],
        sorted[0],
    );

    wait_steady(b, "heal", 2, secs(20));
    let svc = describe_service(b, "heal");
    assert_eq!(svc["runningCount"], 2, "{svc:#}");
    // Every replacement is announced.
    let announced = started_ids(&svc, "heal");
    for r in &replacements {
        assert!(
            announced.contains(id_of(r)),
            "no start event for {r}: {:#?}",
            events(&svc)
        );
        assert!(has_event(
            &svc,
            &format!("(service heal) has started 1 tasks: (task {}).", id_of(r))
        ));
    }
    // The killed tasks stopped on their own (the scheduler did not stop them).
    for t in describe_tasks(b, &victims).values() {
        assert_eq!(t["lastStatus"], "STOPPED", "{t:#}");
        assert_eq!(t["stopCode"], "EssentialContainerExited", "{t:#}");
        assert_eq!(ctr(t, "app")["exitCode"], 137, "{t:#}");
        assert_eq!(t["group"], "service:heal");
    }
    let running = list_tasks(b, &["--service-name", "heal"]);
    assert_eq!(running.len(), 2);
    assert!(running.is_subset(&replacements), "{running:?}");
    let stopped = arn_set(&service_tasks_raw(b, "heal", "STOPPED"));
    assert_eq!(stopped, victims, "only the killed tasks stopped");
}

// -------------------------------------------------------------------- 3. health checks

#[test]
fn tasks_failing_health_checks_are_replaced_after_the_grace_period() {
    let fx = Fixture::start();
    let b = fx.b();
    let ok = fx.path("ok");
    std::fs::write(&ok, "").unwrap();
    let mut app = container("app", &fx.forever());
    app["healthCheck"] = json!({
        "command": ["CMD-SHELL", format!("test -f {ok}")],
        "interval": 5,
        "timeout": 2,
        "retries": 1,
    });
    let td = register(b, &ec2_td("hc", vec![app]));
    let grace = 8.0;
    let created = create_service(
        b,
        &[
            "--service-name",
            "hc",
            "--task-definition",
            &td,
            "--desired-count",
            "2",
            "--health-check-grace-period-seconds",
            "8",
        ],
    );
    assert_eq!(created["healthCheckGracePeriodSeconds"], 8);
    let first = wait_until("two HEALTHY tasks", secs(30), || {
        let r = running_tasks(b, "hc");
        (r.len() == 2 && r.iter().all(|t| t["healthStatus"] == "HEALTHY")).then_some(r)
    });
    let originals = arn_set(&first);
    // The next checks (5 s after each start) fail.
    std::fs::remove_file(&ok).unwrap();

    let mut seen_unhealthy_running = BTreeSet::new();
    let deadline = Instant::now() + secs(30);
    loop {
        let v = b.ecs_ok(
            "DescribeTasks",
            &json!({"tasks": originals.iter().collect::<Vec<_>>()}),
        );
        let tasks = v["tasks"].as_array().unwrap();
        for t in tasks {
            if t["healthStatus"] == "UNHEALTHY" && t["desiredStatus"] == "RUNNING" {
                seen_unhealthy_running.insert(s(&t["taskArn"]).to_string());
            }
        }
        if tasks.iter().all(|t| t["desiredStatus"] == "STOPPED") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "unhealthy tasks were not stopped: {tasks:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Replacements pass their checks (a replacement that started before this may fail its
    // first check; it is inside its grace period and recovers at the next one).
    std::fs::write(&ok, "").unwrap();
    assert_eq!(
        seen_unhealthy_running, originals,
        "each task was UNHEALTHY (and still wanted) for a while before it was stopped"
    );

    let fresh = wait_until("two new HEALTHY tasks", secs(30), || {
        let r = running_tasks(b, "hc");
        (r.len() == 2
            && r.iter()
                .all(|t| t["healthStatus"] == "HEALTHY" && !originals.contains(s(&t["taskArn"]))))
        .then_some(r)
    });
    wait_steady(b, "hc", 2, secs(10));

    let svc = describe_service(b, "hc");
    let old = describe_tasks(b, &originals);
    for t in old.values() {
        assert_eq!(t["lastStatus"], "STOPPED", "{t:#}");
        assert_eq!(t["stopCode"], "ServiceSchedulerInitiated", "{t:#}");
        assert_eq!(t["stoppedReason"], "Task failed container health checks");
        assert_eq!(t["healthStatus"], "UNHEALTHY", "{t:#}");
        let id = id_of(s(&t["taskArn"]));
        let e = event_with(
            &svc,
            &format!("(service hc) (task {id}) failed container health checks."),
        )
        .unwrap_or_else(|| panic!("no health event for {id}: {:#?}", events(&svc)));
        // Not before the grace period (counted from the task's start) had passed.
        let after = f(&e["createdAt"]) - f(&t["startedAt"]);
        assert!(
            after >= grace - 0.3,
            "stopped {after:.2} s after it started, inside the {grace} s grace period"
        );
        assert!(after < grace + 6.0, "stopped late: {after:.2} s");
    }
    let announced_stop = stopped_ids(&svc, "hc");
    assert_eq!(announced_stop, ids(&originals), "{:#?}", events(&svc));
    let announced_start = started_ids(&svc, "hc");
    for t in &fresh {
        assert!(announced_start.contains(id_of(s(&t["taskArn"]))));
    }
    assert_eq!(
        list_tasks(b, &["--service-name", "hc"]),
        arn_set(&fresh),
        "exactly the replacements run"
    );
}

// -------------------------------------------------------------------- 4. rolling update

#[derive(Debug, Default)]
struct Samples {
    count: usize,
    max_total: i64,
    min_running: i64,
    with_two_deployments: usize,
    worst: Option<Value>,
}

#[test]
fn rolling_update_keeps_within_min_and_max_percent() {
    let fx = Fixture::start();
    let b = fx.b();
    let rev = |v: &str| {
        let mut c = container("app", &fx.forever());
        c["environment"] = json!([{"name": "VERSION", "value": v}]);
        ec2_td("roll", vec![c])
    };
    let td1 = register(b, &rev("1"));
    let td2 = register(b, &rev("2"));
    assert!(td2.ends_with(":task-definition/roll:2"), "{td2}");
    let created = create_service(
        b,
        &[
            "--service-name",
            "roll",
            "--task-definition",
            "roll:1",
            "--desired-count",
            "4",
            "--deployment-configuration",
            "maximumPercent=200,minimumHealthyPercent=50",
        ],
    );
    assert_eq!(
        created["deploymentConfiguration"]["minimumHealthyPercent"],
        50
    );
    let first = wait_steady(b, "roll", 4, secs(30));
    let old_id = s(&primary(&first)["id"]).to_string();
    let old_tasks = arn_set(&running_tasks(b, "roll"));
    assert_eq!(old_tasks.len(), 4);

    // Sample the counts throughout: DescribeServices counts are one consistent snapshot.
    let stop = AtomicBool::new(false);
    let samples = Mutex::new(Samples {
        min_running: i64::MAX,
        ..Samples::default()
    });
    let svc = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let v = service_raw(b, "roll");
                let running = i(&v["runningCount"]);
                let total = running + i(&v["pendingCount"]);
                let mut sm = samples.lock().unwrap();
                sm.count += 1;
                if total > sm.max_total {
                    sm.max_total = total;
                }
                if running < sm.min_running {
                    sm.min_running = running;
                    sm.worst = Some(v.clone());
                }
                if deployments(&v).len() > 1 {
                    sm.with_two_deployments += 1;
                }
                drop(sm);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let updated = update_service(b, "roll", &["--task-definition", "roll:2"]);
        assert_eq!(updated["taskDefinition"], td2.as_str(), "{updated:#}");
        assert_eq!(deployments(&updated).len(), 2, "{updated:#}");
        let p = primary(&updated);
        assert_eq!(p["taskDefinition"], td2.as_str());
        assert_eq!(p["rolloutState"], "IN_PROGRESS");
        let new_id = s(&p["id"]).to_string();
        assert_ne!(new_id, old_id);
        let old = deployment(&updated, &old_id).unwrap();
        assert_eq!(old["status"], "ACTIVE", "{updated:#}");
        assert_eq!(old["taskDefinition"], td1.as_str());
        let done = wait_service(b, "roll", "rolled to roll:2", secs(30), |v| {
            steady(v, 4) && primary(v)["id"] == new_id.as_str()
        });
        // A little more sampling in the steady state.
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        done
    });
    let sm = samples.into_inner().unwrap();
    eprintln!(
        "rolling update (desired 4, min 50 %, max 200 %): {} samples, {} during the deployment, max RUNNING+PENDING {}, min RUNNING {}",
        sm.count, sm.with_two_deployments, sm.max_total, sm.min_running
    );
    assert!(
        sm.with_two_deployments >= 3,
        "the sampler saw the deployment: {sm:?}"
    );
    assert!(sm.max_total <= 8, "more than 200 % of desired: {sm:?}");
    assert!(sm.min_running >= 2, "fewer than 50 % healthy: {sm:#?}");

    let new_id = s(&primary(&svc)["id"]).to_string();
    let svc = describe_service(b, "roll");
    assert_eq!(deployments(&svc).len(), 1, "{svc:#}");
    let p = primary(&svc);
    assert_eq!(p["id"], new_id.as_str());
    assert_eq!(p["taskDefinition"], td2.as_str());
    assert_eq!(p["rolloutState"], "COMPLETED");
    assert_eq!(
        p["rolloutStateReason"],
        format!("ECS deployment {new_id} completed.")
    );
    assert_eq!(svc["taskDefinition"], td2.as_str());
    assert!(
        has_event(
            &svc,
            &format!("(service roll) (deployment {new_id}) deployment completed.")
        ),
        "{:#?}",
        events(&svc)
    );
    let ev = events(&svc);
    assert!(
        ev[0] == "(service roll) has reached a steady state."
            || ev[0].contains("deployment completed."),
        "{ev:#?}"
    );
    let running = list_tasks(b, &["--service-name", "roll"]);
    assert_eq!(running.len(), 4);
    assert!(running.is_disjoint(&old_tasks));
    let all: BTreeSet<String> = running.union(&old_tasks).cloned().collect();
    let described = describe_tasks(b, &all);
    for arn in &running {
        let t = &described[arn];
        assert_eq!(t["taskDefinitionArn"], td2.as_str(), "{t:#}");
        assert_eq!(t["startedBy"], new_id.as_str());
        assert_eq!(t["lastStatus"], "RUNNING");
    }
    for t in old_tasks.iter().map(|a| &described[a]) {
        assert_eq!(t["lastStatus"], "STOPPED", "{t:#}");
        assert_eq!(t["stopCode"], "ServiceSchedulerInitiated", "{t:#}");
        assert_eq!(
            t["stoppedReason"],
            format!("Scaling activity initiated by (deployment {new_id})")
        );
        assert_eq!(ctr(t, "app")["exitCode"], 143, "SIGTERM: {t:#}");
    }
    assert_eq!(stopped_ids(&svc, "roll"), ids(&old_tasks));
}

// -------------------------------------------------------------------- 5. circuit breaker

#[test]
fn broken_revision_trips_the_circuit_breaker_and_rolls_back() {
    let fx = Fixture::start();
    let b = fx.b();
    // The good revision takes ~3 s to stop (so the rollback stays observable for a while).
    let good = register(
        b,
        &ec2_td(
            "cb",
            vec![container(
                "app",
                &fx.sh("trap 'sleep 3; exit 0' TERM; while :; do sleep 0.2; done"),
            )],
        ),
    );
    let broken = register(
        b,
        &ec2_td("cb", vec![container("app", &fx.sh("echo broken; exit 1"))]),
    );
    let config = json!({
        "maximumPercent": 200,
        "minimumHealthyPercent": 100,
        "deploymentCircuitBreaker": {"enable": true, "rollback": true},
    })
    .to_string();
    let created = create_service(
        b,
        &[
            "--service-name",
            "cb",
            "--task-definition",
            &good,
            "--desired-count",
            "2",
            "--deployment-configuration",
            &config,
        ],
    );
    assert_eq!(
        created["deploymentConfiguration"]["deploymentCircuitBreaker"],
        json!({"enable": true, "rollback": true})
    );
    let first = wait_steady(b, "cb", 2, secs(30));
    let good_id = s(&primary(&first)["id"]).to_string();
    let good_tasks = arn_set(&running_tasks(b, "cb"));

    let updated = update_service(b, "cb", &["--task-definition", &broken]);
    let broken_id = s(&primary(&updated)["id"]).to_string();
    assert_eq!(primary(&updated)["taskDefinition"], broken.as_str());

    // Raw polling until the breaker has tripped and the rollback deployment exists.
    let tripped = wait_service(b, "cb", "rolling back", secs(40), |v| {
        deployment(v, &broken_id).is_some_and(|d| d["rolloutState"] == "FAILED")
            && primary(v)["id"] != broken_id.as_str()
    });
    let failed = deployment(&tripped, &broken_id).unwrap();
    assert_eq!(failed["status"], "ACTIVE", "{tripped:#}");
    assert_eq!(
        failed["rolloutStateReason"],
        "ECS deployment circuit breaker: tasks failed to start."
    );
    assert!(i(&failed["failedTasks"]) >= 3, "{failed:#}");
    assert_eq!(
        deployment(&tripped, &good_id).unwrap()["runningCount"],
        2,
        "the good tasks still run: {tripped:#}"
    );
    let broken_launched = started_by_raw(b, &broken_id, "STOPPED").len();

    // The same, with the CLI, while the rollback is in progress.
    let svc = describe_service(b, "cb");
    let rb = primary(&svc);
    let rb_id = s(&rb["id"]).to_string();
    assert_ne!(rb_id, good_id, "the rollback is a new deployment");
    assert_eq!(rb["taskDefinition"], good.as_str(), "{svc:#}");
    let failed = deployment(&svc, &broken_id)
        .unwrap_or_else(|| panic!("the failed deployment is listed during the rollback: {svc:#}"));
    assert_eq!(failed["status"], "ACTIVE");
    assert_eq!(failed["rolloutState"], "FAILED");
    assert_eq!(
        failed["rolloutStateReason"],
        "ECS deployment circuit breaker: tasks failed to start."
    );
    if rb["rolloutState"] == "IN_PROGRESS" {
        assert_eq!(
            rb["rolloutStateReason"],
            format!("ECS deployment circuit breaker: rolling back to deploymentId {good_id}.")
        );
    }
    assert_eq!(svc["taskDefinition"], good.as_str());

    let end = wait_steady(b, "cb", 2, secs(40));
    assert_eq!(primary(&end)["id"], rb_id.as_str());
    let started = Instant::now();
    b.aws(&["ecs", "wait", "services-stable", "--services", "cb"])
        .json();
    assert!(started.elapsed() < secs(14), "services-stable slept");
    let svc = describe_service(b, "cb");
    assert_eq!(deployments(&svc).len(), 1, "{svc:#}");
    let p = primary(&svc);
    assert_eq!(p["id"], rb_id.as_str());
    assert_eq!(p["taskDefinition"], good.as_str());
    assert_eq!(p["rolloutState"], "COMPLETED");
    assert_eq!(svc["taskDefinition"], good.as_str());
    assert_eq!(svc["runningCount"], 2);
    let ev = events(&svc);
    let failed_msg =
        format!("(service cb) (deployment {broken_id}) deployment failed: tasks failed to start.");
    let rollback_msg = format!("(service cb) rolling back to deployment {good_id}.");
    let pos = |m: &str| {
        ev.iter()
            .position(|e| e == m)
            .unwrap_or_else(|| panic!("no event {m:?}: {ev:#?}"))
    };
    assert!(
        pos(&rollback_msg) < pos(&failed_msg),
        "newest first: {ev:#?}"
    );

    // Back on the previous revision, on fresh tasks of the rollback deployment.
    let running = list_tasks(b, &["--service-name", "cb"]);
    assert_eq!(running.len(), 2);
    assert!(running.is_disjoint(&good_tasks));
    // The broken tasks exited 1 on their own; the FAILED deployment launched no more.
    let broken_tasks = started_by_raw(b, &broken_id, "STOPPED");
    assert_eq!(broken_tasks.len(), broken_launched, "launches after FAILED");
    assert!(broken_tasks.len() >= 3);
    let all: BTreeSet<String> = running
        .iter()
        .chain(&broken_tasks)
        .chain(&good_tasks)
        .cloned()
        .collect();
    let described = describe_tasks(b, &all);
    for arn in &running {
        let t = &described[arn];
        assert_eq!(t["taskDefinitionArn"], good.as_str(), "{t:#}");
        assert_eq!(t["startedBy"], rb_id.as_str());
        assert_eq!(t["lastStatus"], "RUNNING");
    }
    // The good tasks kept running through the failed deployment (minimum healthy 100 %):
    // only the rollback replaced them.
    for arn in &good_tasks {
        let t = &described[arn];
        assert_eq!(t["lastStatus"], "STOPPED", "{t:#}");
        assert_eq!(
            t["stoppedReason"],
            format!("Scaling activity initiated by (deployment {rb_id})"),
            "{t:#}"
        );
    }
    for t in broken_tasks.iter().map(|a| &described[a]) {
        assert_eq!(t["taskDefinitionArn"], broken.as_str());
        assert_eq!(t["stopCode"], "EssentialContainerExited", "{t:#}");
        assert_eq!(ctr(t, "app")["exitCode"], 1, "{t:#}");
    }
}

// -------------------------------------------------------------------- 6. scaling, deletion

#[test]
fn scaling_up_and_down_then_delete_refused_and_forced() {
    let fx = Fixture::start();
    let b = fx.b();
    let td = register(b, &ec2_td("scale", vec![container("app", &fx.forever())]));
    create_service(
        b,
        &[
            "--service-name",
            "scale",
            "--task-definition",
            &td,
            "--desired-count",
            "1",
        ],
    );
    let first = wait_steady(b, "scale", 1, secs(30));
    let dep_id = s(&primary(&first)["id"]).to_string();

    let up = update_service(b, "scale", &["--desired-count", "10"]);
    assert_eq!(up["desiredCount"], 10, "{up:#}");
    assert_eq!(deployments(&up).len(), 1, "scaling is not a deployment");
    assert_eq!(primary(&up)["id"], dep_id.as_str());
    assert_eq!(primary(&up)["desiredCount"], 10);
    wait_steady(b, "scale", 10, secs(30));
    let ten = arn_set(&running_tasks(b, "scale"));
    assert_eq!(ten.len(), 10);

    let down = update_service(b, "scale", &["--desired-count", "1"]);
    assert_eq!(down["desiredCount"], 1);
    wait_steady(b, "scale", 1, secs(30));
    let one = arn_set(&running_tasks(b, "scale"));
    assert_eq!(one.len(), 1);
    assert!(one.is_subset(&ten));
    let gone: BTreeSet<String> = ten.difference(&one).cloned().collect();

    // Deletion: refused while scaled above 0, and nothing changes.
    b.aws(&["ecs", "delete-service", "--service", "scale"])
        .fails_with(
            "InvalidParameterException",
            "The service cannot be stopped while it is scaled above 0.",
        );
    let still = service_raw(b, "scale");
    assert_eq!(still["status"], "ACTIVE");
    assert_eq!(still["desiredCount"], 1);
    assert_eq!(arn_set(&running_tasks(b, "scale")), one);

    let deleted = b
        .aws(&["ecs", "delete-service", "--service", "scale", "--force"])
        .json()["service"]
        .clone();
    assert_eq!(deleted["status"], "DRAINING", "{deleted:#}");
    assert_eq!(deleted["desiredCount"], 0);
    // Hidden from ListServices at once.
    let listed = b.ecs_ok("ListServices", &json!({}));
    assert_eq!(listed["serviceArns"], json!([]), "{listed:#}");
    wait_service(b, "scale", "INACTIVE", secs(30), |v| {
        v["status"] == "INACTIVE"
    });
    let started = Instant::now();
    b.aws(&["ecs", "wait", "services-inactive", "--services", "scale"])
        .json();
    assert!(started.elapsed() < secs(14), "services-inactive slept");
    let svc = describe_service(b, "scale");
    assert_eq!(svc["status"], "INACTIVE");
    assert_eq!(
        (svc["runningCount"].clone(), svc["pendingCount"].clone()),
        (json!(0), json!(0))
    );
    // Every task the scheduler stopped is announced: the nine of the scale-in, then the last.
    assert_eq!(stopped_ids(&svc, "scale"), ids(&ten), "{:#?}", events(&svc));
    let stopped = list_tasks(
        b,
        &["--service-name", "scale", "--desired-status", "STOPPED"],
    );
    assert_eq!(stopped, ten);
    for (arn, t) in describe_tasks(b, &ten) {
        assert_eq!(t["lastStatus"], "STOPPED", "{t:#}");
        assert_eq!(t["stopCode"], "ServiceSchedulerInitiated", "{t:#}");
        if gone.contains(&arn) {
            assert_eq!(
                t["stoppedReason"],
                format!("Scaling activity initiated by (deployment {dep_id})")
            );
        }
    }
    assert_eq!(
        service_tasks_raw(b, "scale", "RUNNING"),
        Vec::<Value>::new()
    );
    assert!(pids_with(&fx.marker).is_empty(), "a task process survived");
}

// -------------------------------------------------------------------- 7. DAEMON

#[test]
fn daemon_service_runs_one_task_per_instance() {
    let fx = Fixture::start();
    let b = fx.b();
    let mut agent = start_agent(b);
    let instances: BTreeSet<String> = fx.wait_instances(2).into_iter().collect();
    let td = register(
        b,
        &ec2_td("daemon", vec![container("agent", &fx.forever())]),
    );
    let created = create_service(
        b,
        &[
            "--service-name",
            "daemon",
            "--task-definition",
            &td,
            "--scheduling-strategy",
            "DAEMON",
        ],
    );
    assert_eq!(created["schedulingStrategy"], "DAEMON", "{created:#}");
    assert_eq!(created["deploymentConfiguration"]["maximumPercent"], 100);
    assert_eq!(
        created["deploymentConfiguration"]["minimumHealthyPercent"],
        0
    );
    let one_per_instance = |what: &str| {
        wait_until(what, secs(30), || {
            let r = running_tasks(b, "daemon");
            let on: BTreeSet<String> = r
                .iter()
                .map(|t| s(&t["containerInstanceArn"]).to_string())
                .collect();
            (r.len() == 2 && on == instances).then_some(r)
        })
    };
    let first = arn_set(&one_per_instance("one RUNNING task per instance"));
    // desiredCount follows the number of instances; the deployment completes.
    let v = wait_steady(b, "daemon", 2, secs(20));
    let first_dep = s(&primary(&v)["id"]).to_string();

    // A new deployment replaces each instance's task.
    let updated = update_service(b, "daemon", &["--force-new-deployment"]);
    let new_dep = s(&primary(&updated)["id"]).to_string();
    assert_ne!(new_dep, first_dep);
    wait_service(b, "daemon", "rolled", secs(30), |v| {
        steady(v, 2) && primary(v)["id"] == new_dep.as_str()
    });
    let placed = one_per_instance("one new RUNNING task per instance");
    let started = Instant::now();
    b.aws(&["ecs", "wait", "services-stable", "--services", "daemon"])
        .json();
    assert!(started.elapsed() < secs(14), "services-stable slept");
    let svc = describe_service(b, "daemon");
    assert_eq!(svc["desiredCount"], 2, "{svc:#}");
    assert_eq!(svc["runningCount"], 2, "{svc:#}");
    assert_eq!(deployments(&svc).len(), 1, "{svc:#}");
    assert_eq!(primary(&svc)["rolloutState"], "COMPLETED");
    assert_eq!(primary(&svc)["desiredCount"], 2);
    assert!(has_event(
        &svc,
        &format!("(service daemon) (deployment {new_dep}) deployment completed.")
    ));
    let listed = list_tasks(b, &["--service-name", "daemon"]);
    assert_eq!(listed, arn_set(&placed), "{}", agent.log());
    assert!(listed.is_disjoint(&first));
    let all: BTreeSet<String> = listed.union(&first).cloned().collect();
    let described = describe_tasks(b, &all);
    let mut per_instance: BTreeMap<String, usize> = BTreeMap::new();
    for arn in &listed {
        let t = &described[arn];
        assert_eq!(t["lastStatus"], "RUNNING", "{t:#}");
        assert_eq!(t["group"], "service:daemon");
        assert_eq!(t["startedBy"], new_dep.as_str());
        *per_instance
            .entry(s(&t["containerInstanceArn"]).to_string())
            .or_default() += 1;
    }
    assert_eq!(
        per_instance,
        instances.iter().map(|i| (i.clone(), 1)).collect()
    );
    for arn in &first {
        let t = &described[arn];
        assert_eq!(t["lastStatus"], "STOPPED", "{t:#}");
        assert_eq!(t["stopCode"], "ServiceSchedulerInitiated", "{t:#}");
    }

    // ECS's deployment configuration rules for DAEMON, in its words.
    let update = |conf: &str| {
        b.aws(&[
            "ecs",
            "update-service",
            "--service",
            "daemon",
            "--deployment-configuration",
            conf,
        ])
    };
    update("maximumPercent=200").fails_with(
        "InvalidParameterException",
        "The daemon scheduling strategy does not support values above 100 for maximumPercent on a deployment configuration. Change the maximumPercent value to 100, and try again",
    );
    update("maximumPercent=50").fails_with(
        "InvalidParameterException",
        "Change the maximumPercent value to 100, and try again",
    );
    update("minimumHealthyPercent=101")
        .fails_with("InvalidParameterException", "minimumHealthyPercent");
    b.aws(&[
        "ecs",
        "create-service",
        "--service-name",
        "daemon2",
        "--task-definition",
        &td,
        "--scheduling-strategy",
        "DAEMON",
        "--deployment-configuration",
        "maximumPercent=200,minimumHealthyPercent=100",
    ])
    .fails_with(
        "InvalidParameterException",
        "The daemon scheduling strategy does not support values above 100 for maximumPercent",
    );
    // A minimum below 100 is allowed (ECS accepts any 0-100 for DAEMON).
    let v = update("maximumPercent=100,minimumHealthyPercent=50").json();
    assert_eq!(
        v["service"]["deploymentConfiguration"]["minimumHealthyPercent"], 50,
        "{v:#}"
    );
    assert_eq!(
        v["service"]["deploymentConfiguration"]["maximumPercent"],
        100
    );
    agent.kill();
}

// -------------------------------------------------------------------- 8. bad input

#[test]
fn bad_service_input_returns_ecs_errors_and_changes_nothing() {
    let fx = Fixture::start();
    let b = fx.b();
    register(b, &ec2_td("ok", vec![container("app", &fx.forever())]));
    let keep = create_service(
        b,
        &[
            "--service-name",
            "keep",
            "--task-definition",
            "ok",
            "--desired-count",
            "0",
            "--client-token",
            "token-1",
        ],
    );
    let keep_arn = s(&keep["serviceArn"]).to_string();
    let keep_dep = s(&primary(&keep)["id"]).to_string();

    let create = |args: &[&str]| {
        let mut all = vec![
            "ecs",
            "create-service",
            "--service-name",
            "x",
            "--task-definition",
            "ok",
        ];
        all.extend_from_slice(args);
        b.aws(&all)
    };
    let create_nope = b.aws(&[
        "ecs",
        "create-service",
        "--service-name",
        "x",
        "--task-definition",
        "nope",
        "--desired-count",
        "1",
    ]);
    create_nope.fails_with("ClientException", "Unable to describe task definition.");
    create(&["--desired-count=-1"]).fails_with("InvalidParameterException", "esired count");
    create(&[
        "--desired-count",
        "1",
        "--deployment-configuration",
        "maximumPercent=90,minimumHealthyPercent=50",
    ])
    .fails_with("InvalidParameterException", "maximumPercent");
    create(&["--desired-count", "1", "--cluster", "nope"])
        .fails_with("ClusterNotFoundException", "Cluster not found.");
    // A duplicate name; the original's client token makes it a retry instead.
    let dup = |token: Option<&str>| {
        let mut all = vec![
            "ecs",
            "create-service",
            "--service-name",
            "keep",
            "--task-definition",
            "ok",
            "--desired-count",
            "0",
        ];
        if let Some(t) = token {
            all.extend_from_slice(&["--client-token", t]);
        }
        b.aws(&all)
    };
    dup(None).fails_with(
        "InvalidParameterException",
        "Creation of service was not idempotent.",
    );
    let again = dup(Some("token-1")).json()["service"].clone();
    assert_eq!(again["serviceArn"], keep_arn.as_str());
    assert_eq!(primary(&again)["id"], keep_dep.as_str());
    // Nothing was created.
    let listed = b.ecs_ok("ListServices", &json!({}));
    assert_eq!(listed["serviceArns"], json!([keep_arn]), "{listed:#}");

    let update = |name: &str, args: &[&str]| {
        let mut all = vec!["ecs", "update-service", "--service", name];
        all.extend_from_slice(args);
        b.aws(&all)
    };
    update("keep", &["--desired-count=-1"]).fails_with("InvalidParameterException", "esired count");
    update(
        "keep",
        &[
            "--deployment-configuration",
            "maximumPercent=50,minimumHealthyPercent=0",
        ],
    )
    .fails_with("InvalidParameterException", "maximumPercent");
    update("nope", &["--desired-count", "1"])
        .fails_with("ServiceNotFoundException", "Service not found.");

    // A deleted service cannot be updated.
    b.ecs_ok(
        "CreateService",
        &json!({"serviceName": "gone", "taskDefinition": "ok", "desiredCount": 0}),
    );
    let deleted = b
        .aws(&["ecs", "delete-service", "--service", "gone"])
        .json();
    assert_eq!(deleted["service"]["status"], "DRAINING", "{deleted:#}");
    wait_service(b, "gone", "INACTIVE", secs(10), |v| {
        v["status"] == "INACTIVE"
    });
    update("gone", &["--desired-count", "1"])
        .fails_with("ServiceNotActiveException", "Service was not ACTIVE.");
    let (status, v) = b.ecs(
        "UpdateService",
        &json!({"service": "gone", "desiredCount": 1}),
    );
    assert_eq!(
        (status, v["__type"].as_str()),
        (400, Some("ServiceNotActiveException")),
        "{v:#}"
    );

    b.aws(&[
        "ecs",
        "describe-services",
        "--services",
        "keep",
        "--cluster",
        "nope",
    ])
    .fails_with("ClusterNotFoundException", "Cluster not found.");
    // Unknown services are failures, not errors; and "keep" is as it was created.
    let v = b
        .aws(&["ecs", "describe-services", "--services", "keep", "nope"])
        .json();
    assert_eq!(
        v["failures"],
        json!([{
            "arn": format!("arn:aws:ecs:us-east-1:{}:service/default/nope", common::ACCOUNT),
            "reason": "MISSING",
        }])
    );
    assert_eq!(v["services"].as_array().unwrap().len(), 1, "{v:#}");
    let now = &v["services"][0];
    for field in [
        "serviceArn",
        "status",
        "desiredCount",
        "taskDefinition",
        "deploymentConfiguration",
        "createdAt",
    ] {
        assert_eq!(now[field], keep[field], "{field}: {now:#}");
    }
    assert_eq!(deployments(now).len(), 1, "{now:#}");
    assert_eq!(primary(now)["id"], keep_dep.as_str());
    let tasks = b.ecs_ok("ListTasks", &json!({}));
    assert_eq!(tasks["taskArns"], json!([]));
}

// -------------------------------------------------------------------- 9. tags, tokens, placement

/// `--propagate-tags SERVICE | TASK_DEFINITION` and `--enable-ecs-managed-tags` put tags on
/// the service's tasks (describe-tasks --include TAGS); without them tasks have none.
#[test]
fn service_tags_propagate_to_its_tasks() {
    let fx = Fixture::start();
    let b = fx.b();
    let mut td = ec2_td("tagged", vec![container("app", &fx.forever())]);
    td["tags"] = json!([{"key": "owner", "value": "task-definition"}]);
    let td = register(b, &td);
    let create = |name: &str, extra: &[&str]| {
        let mut args = vec![
            "--service-name",
            name,
            "--task-definition",
            &td,
            "--desired-count",
            "1",
            "--tags",
            "key=team,value=web",
        ];
        args.extend_from_slice(extra);
        create_service(b, &args)
    };
    let by_service = create(
        "by-service",
        &["--propagate-tags", "SERVICE", "--enable-ecs-managed-tags"],
    );
    assert_eq!(by_service["propagateTags"], "SERVICE", "{by_service:#}");
    assert_eq!(by_service["enableECSManagedTags"], true);
    let by_td = create("by-td", &["--propagate-tags", "TASK_DEFINITION"]);
    assert_eq!(by_td["propagateTags"], "TASK_DEFINITION");
    assert_eq!(by_td["enableECSManagedTags"], false);
    let plain = create("plain", &[]);
    assert_eq!(plain["propagateTags"], "NONE", "ECS's default: {plain:#}");
    assert_eq!(plain["enableECSManagedTags"], false);

    let tags_of = |name: &str| -> BTreeMap<String, String> {
        wait_steady(b, name, 1, secs(30));
        let tasks = list_tasks(b, &["--service-name", name]);
        assert_eq!(tasks.len(), 1);
        let mut args = vec!["ecs", "describe-tasks", "--include", "TAGS", "--tasks"];
        args.extend(tasks.iter().map(String::as_str));
        let v = b.aws(&args).json();
        v["tasks"][0]["tags"]
            .as_array()
            .unwrap_or_else(|| panic!("tags are listed when included: {v:#}"))
            .iter()
            .map(|t| (s(&t["key"]).to_string(), s(&t["value"]).to_string()))
            .collect()
    };
    let expect = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    };
    assert_eq!(
        tags_of("by-service"),
        expect(&[
            ("team", "web"),
            ("aws:ecs:serviceName", "by-service"),
            ("aws:ecs:clusterName", "default"),
        ])
    );
    assert_eq!(tags_of("by-td"), expect(&[("owner", "task-definition")]));
    assert_eq!(tags_of("plain"), expect(&[]));
    // The service's own tags, with --include TAGS only.
    let v = b
        .aws(&[
            "ecs",
            "describe-services",
            "--services",
            "by-service",
            "--include",
            "TAGS",
        ])
        .json();
    assert_eq!(
        v["services"][0]["tags"],
        json!([{"key": "team", "value": "web"}])
    );
    assert!(describe_service(b, "by-service").get("tags").is_none());
    // Switching propagation off applies to tasks started from then on.
    update_service(
        b,
        "by-service",
        &[
            "--propagate-tags",
            "NONE",
            "--no-enable-ecs-managed-tags",
            "--force-new-deployment",
        ],
    );
    wait_service(b, "by-service", "redeployed", secs(30), |v| {
        steady(v, 1) && i(&primary(v)["runningCount"]) == 1
    });
    assert_eq!(tags_of("by-service"), expect(&[]));
}

/// CreateService's `--client-token`: a retry with the same token and the same request
/// returns the service it created (no second service, no new deployment); the same token
/// with a different request, or the same request without it, is ECS's "not idempotent".
#[test]
fn create_service_client_token_is_idempotent() {
    let fx = Fixture::start();
    let b = fx.b();
    register(b, &ec2_td("idem", vec![container("app", &fx.forever())]));
    let args = |count: &'static str, token: Option<&'static str>| {
        let mut a = vec![
            "ecs",
            "create-service",
            "--service-name",
            "idem",
            "--task-definition",
            "idem",
            "--desired-count",
            count,
        ];
        if let Some(t) = token {
            a.extend_from_slice(&["--client-token", t]);
        }
        a
    };
    let first = b.aws(&args("1", Some("retry-me"))).json()["service"].clone();
    let dep = s(&primary(&first)["id"]).to_string();
    wait_steady(b, "idem", 1, secs(30));
    let again = b.aws(&args("1", Some("retry-me"))).json()["service"].clone();
    for field in ["serviceArn", "createdAt", "taskDefinition", "desiredCount"] {
        assert_eq!(again[field], first[field], "{field}: {again:#}");
    }
    assert_eq!(deployments(&again).len(), 1, "{again:#}");
    assert_eq!(primary(&again)["id"], dep.as_str());
    b.aws(&args("2", Some("retry-me"))).fails_with(
        "InvalidParameterException",
        "Creation of service was not idempotent.",
    );
    b.aws(&args("1", Some("another-token"))).fails_with(
        "InvalidParameterException",
        "Creation of service was not idempotent.",
    );
    b.aws(&args("1", None)).fails_with(
        "InvalidParameterException",
        "Creation of service was not idempotent.",
    );
    let long = "x".repeat(37);
    let mut too_long = args("1", None);
    too_long[3] = "other";
    too_long.extend_from_slice(&["--client-token", &long]);
    b.aws(&too_long)
        .fails_with("InvalidParameterException", "clientToken");
    // Nothing else was created or started.
    let listed = b.ecs_ok("ListServices", &json!({}));
    assert_eq!(listed["serviceArns"], json!([first["serviceArn"]]));
    let svc = describe_service(b, "idem");
    assert_eq!(svc["desiredCount"], 1);
    assert_eq!(svc["runningCount"], 1);
    assert_eq!(list_tasks(b, &["--service-name", "idem"]).len(), 1);
}

/// Placement with two agents: `distinctInstance` puts each task on its own instance and
/// leaves a third unplaced (with ECS's event), `binpack` on memory fills the fuller instance
/// first, and a `memberOf` constraint limits the service to the instances it names.
#[test]
fn service_placement_constraints_and_strategies_are_honoured() {
    let fx = Fixture::start();
    let b = fx.b();
    let _agent = start_agent(b);
    let instances = fx.wait_instances(2);
    // The local agent registered 8192 MiB, the second one 1024 MiB.
    let described = b.ecs_ok(
        "DescribeContainerInstances",
        &json!({"containerInstances": instances}),
    );
    let small = described["containerInstances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|ci| {
            ci["registeredResources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == "MEMORY" && r["integerValue"] == 1024)
        })
        .map(|ci| s(&ci["containerInstanceArn"]).to_string())
        .unwrap_or_else(|| panic!("the 1024 MiB agent: {described:#}"));
    let td = register(b, &ec2_td("placed", vec![container("app", &fx.forever())]));
    let on = |name: &str| -> Vec<String> {
        let mut v: Vec<String> = running_tasks(b, name)
            .iter()
            .map(|t| s(&t["containerInstanceArn"]).to_string())
            .collect();
        v.sort();
        v
    };

    // distinctInstance: one task per instance, never two on one.
    let created = create_service(
        b,
        &[
            "--service-name",
            "distinct",
            "--task-definition",
            &td,
            "--desired-count",
            "2",
            "--placement-constraints",
            "type=distinctInstance",
        ],
    );
    assert_eq!(
        created["placementConstraints"],
        json!([{"type": "distinctInstance"}]),
        "{created:#}"
    );
    wait_steady(b, "distinct", 2, secs(30));
    let mut both = instances.clone();
    both.sort();
    assert_eq!(on("distinct"), both);
    update_service(b, "distinct", &["--desired-count", "3"]);
    let stuck = wait_service(b, "distinct", "unable to place", secs(20), |v| {
        has_event(v, "(service distinct) was unable to place a task")
    });
    assert_eq!(stuck["runningCount"], 2, "{stuck:#}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(on("distinct"), both, "no third task on either instance");
    let svc = describe_service(b, "distinct");
    assert_eq!(svc["runningCount"], 2, "{svc:#}");
    assert_eq!(svc["desiredCount"], 3);
    assert!(has_event(
        &svc,
        "(service distinct) was unable to place a task because no container instance met all of its requirements."
    ));
    update_service(b, "distinct", &["--desired-count", "0"]);
    wait_steady(b, "distinct", 0, secs(30));

    // binpack on memory: the instance with the least memory left takes them all.
    let packed = create_service(
        b,
        &[
            "--service-name",
            "packed",
            "--task-definition",
            &td,
            "--desired-count",
            "3",
            "--placement-strategy",
            "type=binpack,field=memory",
        ],
    );
    assert_eq!(
        packed["placementStrategy"],
        json!([{"type": "binpack", "field": "memory"}])
    );
    wait_steady(b, "packed", 3, secs(30));
    assert_eq!(on("packed"), vec![small.clone(); 3]);

    // memberOf: only the named instance (cluster query language).
    let large = instances.iter().find(|i| **i != small).unwrap().clone();
    let expr = format!("ec2InstanceId != '{}'", {
        let v = b.ecs_ok(
            "DescribeContainerInstances",
            &json!({"containerInstances": [small.clone()]}),
        );
        s(&v["containerInstances"][0]["ec2InstanceId"]).to_string()
    });
    let constraints = json!([{"type": "memberOf", "expression": expr}]);
    create_service(
        b,
        &[
            "--service-name",
            "member",
            "--task-definition",
            &td,
            "--desired-count",
            "2",
            "--placement-constraints",
            &constraints.to_string(),
        ],
    );
    wait_steady(b, "member", 2, secs(30));
    assert_eq!(on("member"), vec![large.clone(); 2]);
    let svc = describe_service(b, "member");
    assert_eq!(svc["placementConstraints"], constraints);
}

// -------------------------------------------------------------------- 10. deployment history

/// The service deployment API (ListServiceDeployments, DescribeServiceDeployments,
/// DescribeServiceRevisions, DescribeServices' currentServiceDeployment /
/// currentServiceRevisions) through a create, a rolling update and a circuit-breaker rollback.
#[test]
fn service_deployments_and_revisions_tell_the_history() {
    let fx = Fixture::start();
    let b = fx.b();
    let v1 = register(b, &ec2_td("hist", vec![container("app", &fx.forever())]));
    let v2 = register(b, &ec2_td("hist", vec![container("app", &fx.forever())]));
    let broken = register(b, &ec2_td("hist", vec![container("app", &fx.sh("exit 1"))]));
    let config = json!({
        "maximumPercent": 200,
        "minimumHealthyPercent": 50,
        "deploymentCircuitBreaker": {"enable": true, "rollback": true},
    })
    .to_string();
    create_service(
        b,
        &[
            "--service-name",
            "hist",
            "--task-definition",
            &v1,
            "--desired-count",
            "2",
            "--deployment-configuration",
            &config,
        ],
    );
    wait_steady(b, "hist", 2, secs(30));
    let prefix = format!("arn:aws:ecs:us-east-1:{}:", common::ACCOUNT);
    let list = |extra: &[&str]| -> Vec<Value> {
        let mut args = vec!["ecs", "list-service-deployments", "--service", "hist"];
        args.extend_from_slice(extra);
        b.aws(&args).json()["serviceDeployments"]
            .as_array()
            .unwrap()
            .clone()
    };
    let describe = |arn: &str| -> Value {
        let v = b
            .aws(&[
                "ecs",
                "describe-service-deployments",
                "--service-deployment-arns",
                arn,
            ])
            .json();
        assert_eq!(v["failures"], json!([]), "{v:#}");
        v["serviceDeployments"][0].clone()
    };
    let revision = |arn: &str| -> Value {
        let v = b
            .aws(&[
                "ecs",
                "describe-service-revisions",
                "--service-revision-arns",
                arn,
            ])
            .json();
        assert_eq!(v["failures"], json!([]), "{v:#}");
        v["serviceRevisions"][0].clone()
    };

    // 1. The creation is a service deployment.
    let first = wait_until("the first service deployment SUCCESSFUL", secs(10), || {
        let l = list(&[]);
        (l.len() == 1 && l[0]["status"] == "SUCCESSFUL").then(|| l[0].clone())
    });
    let first_arn = s(&first["serviceDeploymentArn"]).to_string();
    assert!(
        first_arn.starts_with(&format!("{prefix}service-deployment/default/hist/")),
        "{first:#}"
    );
    let rev1 = s(&first["targetServiceRevisionArn"]).to_string();
    assert!(
        rev1.starts_with(&format!("{prefix}service-revision/default/hist/")),
        "{first:#}"
    );
    assert_eq!(
        first["serviceArn"],
        format!("{prefix}service/default/hist").as_str()
    );
    assert_eq!(
        first["clusterArn"],
        format!("{prefix}cluster/default").as_str()
    );
    assert!(
        f(&first["finishedAt"]) >= f(&first["startedAt"]),
        "{first:#}"
    );
    let svc = describe_service(b, "hist");
    assert_eq!(
        svc["currentServiceDeployment"],
        first_arn.as_str(),
        "{svc:#}"
    );
    assert_eq!(
        svc["currentServiceRevisions"],
        json!([{"arn": rev1, "requestedTaskCount": 2, "runningTaskCount": 2, "pendingTaskCount": 0}])
    );
    let r1 = revision(&rev1);
    assert_eq!(r1["serviceRevisionArn"], rev1.as_str());
    assert_eq!(r1["taskDefinition"], v1.as_str());
    assert_eq!(r1["launchType"], "EC2");
    assert_eq!(r1["serviceArn"], first["serviceArn"]);
    assert_eq!(
        r1["containerImages"],
        json!([{"containerName": "app", "image": "public.ecr.aws/docker/library/busybox:latest"}])
    );

    // 2. A rolling update: a second service deployment, from revision 1 to revision 2.
    update_service(b, "hist", &["--task-definition", &v2]);
    wait_service(b, "hist", "on v2", secs(40), |v| {
        steady(v, 2) && v["taskDefinition"] == v2.as_str()
    });
    let second = wait_until("the second service deployment SUCCESSFUL", secs(10), || {
        let l = list(&[]);
        (l.len() == 2 && l[0]["status"] == "SUCCESSFUL").then(|| l[0].clone())
    });
    let second_arn = s(&second["serviceDeploymentArn"]).to_string();
    assert_ne!(second_arn, first_arn);
    assert_eq!(
        list(&[])[1]["serviceDeploymentArn"],
        first_arn.as_str(),
        "newest first"
    );
    let rev2 = s(&second["targetServiceRevisionArn"]).to_string();
    assert_ne!(rev2, rev1);
    let d2 = describe(&second_arn);
    assert_eq!(d2["status"], "SUCCESSFUL", "{d2:#}");
    assert_eq!(
        d2["sourceServiceRevisions"][0]["arn"],
        rev1.as_str(),
        "{d2:#}"
    );
    assert_eq!(d2["sourceServiceRevisions"].as_array().unwrap().len(), 1);
    assert_eq!(d2["targetServiceRevision"]["arn"], rev2.as_str());
    assert_eq!(d2["targetServiceRevision"]["runningTaskCount"], 2, "{d2:#}");
    assert_eq!(d2["deploymentConfiguration"]["minimumHealthyPercent"], 50);
    assert_eq!(
        d2["deploymentCircuitBreaker"],
        json!({"status": "MONITORING_COMPLETE", "failureCount": 0, "threshold": 3})
    );
    assert!(d2.get("rollback").is_none(), "{d2:#}");
    assert_eq!(revision(&rev2)["taskDefinition"], v2.as_str());
    assert_eq!(
        describe_service(b, "hist")["currentServiceDeployment"],
        second_arn.as_str()
    );

    // 3. A broken revision: the breaker trips and rolls back to revision 2.
    update_service(b, "hist", &["--task-definition", &broken]);
    let third = wait_until("the third service deployment rolled back", secs(60), || {
        let l = list(&[]);
        (l.len() == 3 && l[0]["status"] == "ROLLBACK_SUCCESSFUL").then(|| l[0].clone())
    });
    let end = wait_steady(b, "hist", 2, secs(30));
    assert_eq!(end["taskDefinition"], v2.as_str());
    let third_arn = s(&third["serviceDeploymentArn"]).to_string();
    let rev3 = s(&third["targetServiceRevisionArn"]).to_string();
    assert_eq!(revision(&rev3)["taskDefinition"], broken.as_str());
    let d3 = describe(&third_arn);
    assert_eq!(d3["status"], "ROLLBACK_SUCCESSFUL", "{d3:#}");
    assert_eq!(
        d3["rollback"]["serviceRevisionArn"],
        rev2.as_str(),
        "{d3:#}"
    );
    assert!(
        s(&d3["rollback"]["reason"]).contains("circuit breaker"),
        "{d3:#}"
    );
    assert!(f(&d3["rollback"]["startedAt"]) >= f(&d3["startedAt"]));
    assert!(f(&d3["finishedAt"]) >= f(&d3["rollback"]["startedAt"]));
    assert_eq!(d3["deploymentCircuitBreaker"]["status"], "TRIGGERED");
    assert!(
        i(&d3["deploymentCircuitBreaker"]["failureCount"]) >= 3,
        "{d3:#}"
    );
    assert_eq!(d3["sourceServiceRevisions"][0]["arn"], rev2.as_str());
    let svc = describe_service(b, "hist");
    assert_eq!(svc["currentServiceDeployment"], third_arn.as_str());
    assert_eq!(
        svc["currentServiceRevisions"],
        json!([{"arn": rev2, "requestedTaskCount": 2, "runningTaskCount": 2, "pendingTaskCount": 0}]),
        "the rollback runs revision 2: {svc:#}"
    );

    // Filters and paging.
    let only = list(&["--status", "ROLLBACK_SUCCESSFUL"]);
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["serviceDeploymentArn"], third_arn.as_str());
    assert_eq!(list(&["--status", "SUCCESSFUL", "IN_PROGRESS"]).len(), 2);
    #[allow(clippy::cast_possible_truncation)]
    let later = (common::now_secs() + 3600.0) as i64;
    assert!(list(&["--created-at", &format!("after={later}")]).is_empty());
    assert_eq!(list(&["--created-at", &format!("before={later}")]).len(), 3);
    let page = b.ecs_ok(
        "ListServiceDeployments",
        &json!({"service": "hist", "maxResults": 2}),
    );
    let got: Vec<&str> = page["serviceDeployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| s(&d["serviceDeploymentArn"]))
        .collect();
    assert_eq!(got, vec![third_arn.as_str(), second_arn.as_str()]);
    let rest = b.ecs_ok(
        "ListServiceDeployments",
        &json!({"service": "hist", "maxResults": 2, "nextToken": page["nextToken"]}),
    );
    assert_eq!(
        rest["serviceDeployments"][0]["serviceDeploymentArn"],
        first_arn.as_str()
    );
    assert!(rest.get("nextToken").is_none(), "{rest:#}");

    // Unknowns and errors.
    b.aws(&["ecs", "list-service-deployments", "--service", "nope"])
        .fails_with("ServiceNotFoundException", "Service not found.");
    let ghost = format!("{prefix}service-deployment/default/hist/nope");
    let v = b
        .aws(&[
            "ecs",
            "describe-service-deployments",
            "--service-deployment-arns",
            &ghost,
            &first_arn,
        ])
        .json();
    assert_eq!(v["failures"], json!([{"arn": ghost, "reason": "MISSING"}]));
    assert_eq!(
        v["serviceDeployments"][0]["serviceDeploymentArn"],
        first_arn.as_str()
    );
    let ghost_rev = format!("{prefix}service-revision/default/hist/1");
    let v = b
        .aws(&[
            "ecs",
            "describe-service-revisions",
            "--service-revision-arns",
            &ghost_rev,
        ])
        .json();
    assert_eq!(
        v["failures"],
        json!([{"arn": ghost_rev, "reason": "MISSING"}])
    );
    assert_eq!(v["serviceRevisions"], json!([]));

    // Deleting the service deletes its history (as ECS does).
    b.aws(&["ecs", "delete-service", "--service", "hist", "--force"])
        .json();
    wait_service(b, "hist", "INACTIVE", secs(30), |v| {
        v["status"] == "INACTIVE"
    });
    assert!(list(&[]).is_empty());
}

/// Poll `f` every 50 ms until it returns `Some`, or panic after `timeout`.
fn wait_until<T>(what: &str, timeout: Duration, f: impl FnMut() -> Option<T>) -> T {
    wait_until_every(what, timeout, Duration::from_millis(50), f)
}
