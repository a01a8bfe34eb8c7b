#![allow(clippy::unwrap_used)]
//! End-to-end tests of the Docker runtime: `berth up --runtime docker` driven with the real
//! `aws` CLI against the machine's Docker Engine. There is no registry: the tests use the local
//! image `berth-test/busybox:latest` (`FROM scratch` + Debian's static busybox), which
//! `.ci/run` builds (and which these tests build themselves when `/bin/busybox` exists).
//!
//! Docker must answer in CI (`CI` set): there the tests fail without it. Elsewhere they are
//! skipped, with a message, when no engine answers.
//!
//! Every container and volume a test's Berth creates carries that agent's `berth.agent` label
//! and is removed when the test ends, pass or fail.

mod common;

use common::{AwsResultExt, Berth, Options, example, run_with_timeout, secs, wait_until};
use serde_json::{Value, json};
use std::process::Command;
use std::time::{Duration, Instant};

/// The local test image.
const IMAGE: &str = "berth-test/busybox:latest";

// -------------------------------------------------------------------- fixture

/// `docker ARGS...` → (success, stdout, stderr).
fn docker(args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new("docker");
    cmd.args(args);
    let (status, out, err) = run_with_timeout(cmd, Duration::from_secs(60));
    (status.success(), out, err)
}

/// Whether the tests can run: an engine answers and the test image exists (built if needed).
/// Panics in CI when they cannot.
fn docker_ready() -> bool {
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
    let engine = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !engine {
        assert!(!ci, "CI is set but no Docker engine answers");
        eprintln!("skipping: no Docker engine answers (and CI is not set)");
        return false;
    }
    if !docker(&["image", "inspect", IMAGE]).0 {
        build_test_image();
    }
    true
}

/// `FROM scratch` + /bin/busybox + its applets, as `.ci/run` builds it.
fn build_test_image() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy("/bin/busybox", dir.path().join("busybox"))
        .expect("/bin/busybox (apt-get install busybox-static) to build the test image");
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n",
    )
    .unwrap();
    let (ok, _, err) = docker(&[
        "build",
        "-q",
        "-t",
        IMAGE,
        &dir.path().display().to_string(),
    ]);
    assert!(ok, "building {IMAGE}: {err}");
}

/// A `berth up --runtime docker`, whose containers are removed when it is dropped.
struct DockerBerth {
    berth: Berth,
    agent_id: String,
}

impl DockerBerth {
    fn start() -> DockerBerth {
        let berth = Berth::start_with(Options {
            args: [
                "--runtime",
                "docker",
                "--agent-cpu",
                "4096",
                "--agent-memory",
                "4096",
            ]
            .iter()
            .map(ToString::to_string)
            .collect(),
            ..Options::default()
        });
        assert!(
            berth
                .banner
                .iter()
                .any(|l| l.contains("local agent: Docker runtime")),
            "{:#?}",
            berth.banner
        );
        let agent_id = std::fs::read_to_string(berth.data_dir().join("agent/docker-agent-id"))
            .unwrap()
            .trim()
            .to_string();
        let db = DockerBerth { berth, agent_id };
        wait_until("the local agent", secs(20), || {
            let v = db.b().ecs_ok("ListContainerInstances", &json!({}));
            (!v["containerInstanceArns"].as_array().unwrap().is_empty()).then_some(())
        });
        db
    }

    fn b(&self) -> &Berth {
        &self.berth
    }

    /// Ids of this agent's containers (all states).
    fn containers(&self) -> Vec<String> {
        let filter = format!("label=berth.agent={}", self.agent_id);
        let (ok, out, err) = docker(&["ps", "-aq", "--no-trunc", "--filter", &filter]);
        assert!(ok, "{err}");
        out.split_whitespace().map(str::to_string).collect()
    }

    fn register(&self, td: &Value) {
        self.b().register(td).json();
    }

    fn run(&self, args: &[&str]) -> String {
        let mut all = vec!["ecs", "run-task"];
        all.extend_from_slice(args);
        let v = self.b().aws(&all).json();
        assert_eq!(v["failures"], json!([]), "{v:#}");
        v["tasks"][0]["taskArn"].as_str().unwrap().to_string()
    }

    fn run_awsvpc(&self, family: &str) -> String {
        self.run(&[
            "--task-definition",
            family,
            "--launch-type",
            "FARGATE",
            "--network-configuration",
            "awsvpcConfiguration={subnets=[subnet-local]}",
        ])
    }

    /// DescribeTasks over raw HTTP (for polling).
    fn task(&self, arn: &str) -> Value {
        let v = self.b().ecs_ok("DescribeTasks", &json!({"tasks": [arn]}));
        v["tasks"][0].clone()
    }

    /// DescribeTasks with the aws CLI (for final observations).
    fn describe(&self, arn: &str) -> Value {
        let v = self
            .b()
            .aws(&["ecs", "describe-tasks", "--tasks", arn])
            .json();
        v["tasks"][0].clone()
    }

    fn wait_status(&self, arn: &str, status: &str, timeout: Duration) -> Value {
        wait_until(&format!("{arn} {status}"), timeout, || {
            let t = self.task(arn);
            (t["lastStatus"] == status).then_some(t)
        })
    }
}

impl Drop for DockerBerth {
    fn drop(&mut self) {
        // Berth first: a live service would replace the tasks whose containers go below, and
        // its new containers would outlive the test (orphans in `docker ps -a`).
        self.berth.kill();
        // Twice, in case the engine was still creating one when Berth died.
        for _ in 0..2 {
            let ids = self.containers();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f", "-v"];
                args.extend(ids.iter().map(String::as_str));
                let _ = docker(&args);
            }
        }
        let filter = format!("label=berth.agent={}", self.agent_id);
        let (_, vols, _) = docker(&["volume", "ls", "-q", "--filter", &filter]);
        for v in vols.split_whitespace() {
            let _ = docker(&["volume", "rm", "-f", v]);
        }
        // The awsvpc network is shared by agents; it goes once nothing uses it.
        let _ = docker(&["network", "rm", "berth-awsvpc"]);
    }
}

fn container<'a>(task: &'a Value, name: &str) -> &'a Value {
    task["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name} in {task:#}"))
}

/// GET `path` from 127.0.0.1:`port` (retried while the server comes up).
fn http_get(port: u16, path: &str) -> common::HttpResponse {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    wait_until(&format!("HTTP on port {port}"), secs(15), || {
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
        std::panic::catch_unwind(|| common::http_request(addr, "GET", path, &[], b"")).ok()
    })
}

/// `docker inspect` of one container.
fn inspect(id: &str) -> Value {
    let (ok, out, err) = docker(&["inspect", id]);
    assert!(ok, "{err}");
    serde_json::from_str::<Value>(&out).unwrap()[0].clone()
}

fn sh(script: &str) -> Value {
    json!(["sh", "-c", script])
}

// -------------------------------------------------------------------- tests

/// The seed's my-web-app with its image swapped for busybox httpd answers from the host on
/// its published port; two containers of one awsvpc task talk over localhost.
#[test]
fn awsvpc_web_app_answers_from_the_host_and_shares_localhost() {
    if !docker_ready() {
        return;
    }
    let d = DockerBerth::start();
    let mut td: Value =
        serde_json::from_slice(&std::fs::read(example("my-web-app.json")).unwrap()).unwrap();
    let web = &mut td["containerDefinitions"][0];
    web["image"] = json!(IMAGE);
    web["command"] = sh(
        "mkdir -p /www && echo hello from berth > /www/index.html && exec httpd -f -p 80 -h /www",
    );
    // The log group of the seed's awslogs configuration does not exist here.
    web.as_object_mut().unwrap().remove("logConfiguration");
    d.register(&td);
    d.register(&json!({
        "family": "pair",
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "256",
        "memory": "512",
        "containerDefinitions": [
            {
                "name": "server",
                "image": IMAGE,
                "command": sh("mkdir -p /w && echo pong > /w/ping && exec httpd -f -p 8081 -h /w"),
                "portMappings": [{"containerPort": 8081}],
            },
            {
                "name": "client",
                "image": IMAGE,
                "essential": false,
                "dependsOn": [{"containerName": "server", "condition": "START"}],
                "command": sh(
                    "for i in $(seq 1 50); do r=$(wget -q -O - http://127.0.0.1:8081/ping) && [ \"$r\" = pong ] && exit 0; sleep 0.2; done; exit 1"
                ),
            },
        ],
    }));
    let web_task = d.run_awsvpc("my-web-app");
    let pair = d.run_awsvpc("pair");
    let t = d.wait_status(&web_task, "RUNNING", secs(30));
    let c = container(&t, "web-server");
    assert!(
        c["networkBindings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["hostPort"] == 80 && b["containerPort"] == 80),
        "{c:#}"
    );
    let r = http_get(80, "/");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text().trim(), "hello from berth");

    // The client reached the server on localhost and exited 0; the task keeps running.
    wait_until("the client's exit", secs(30), || {
        let t = d.task(&pair);
        (container(&t, "client")["lastStatus"] == "STOPPED").then_some(())
    });
    let t = d.describe(&pair);
    assert_eq!(t["lastStatus"], "RUNNING", "{t:#}");
    assert_eq!(container(&t, "client")["exitCode"], 0, "{t:#}");
    // Both containers share the pause container's network namespace.
    let server = inspect(container(&t, "server")["runtimeId"].as_str().unwrap());
    let mode = server["HostConfig"]["NetworkMode"].as_str().unwrap();
    assert!(mode.starts_with("container:"), "{mode}");
    // The task's ENI, as ECS reports it: an ATTACHED ElasticNetworkInterface attachment
    // whose address is the pause container's on the Berth network, shown on each container.
    let pause_id = mode.strip_prefix("container:").unwrap();
    let pause = inspect(pause_id);
    let networks = pause["NetworkSettings"]["Networks"].as_object().unwrap();
    let (_, endpoint) = networks.iter().next().unwrap();
    let ip = endpoint["IPAddress"].as_str().unwrap();
    assert!(!ip.is_empty(), "{pause:#}");
    let eni = &t["attachments"][0];
    assert_eq!(eni["type"], "ElasticNetworkInterface", "{t:#}");
    assert_eq!(eni["status"], "ATTACHED", "{t:#}");
    let detail = |name: &str| -> String {
        eni["details"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == name)
            .and_then(|d| d["value"].as_str())
            .unwrap_or_else(|| panic!("no {name} in {eni:#}"))
            .to_string()
    };
    assert_eq!(detail("subnetId"), "subnet-local");
    assert_eq!(detail("privateIPv4Address"), ip);
    assert_eq!(
        detail("macAddress"),
        endpoint["MacAddress"].as_str().unwrap()
    );
    assert!(detail("networkInterfaceId").starts_with("eni-"), "{eni:#}");
    assert_eq!(
        detail("privateDnsName"),
        format!("ip-{}.ec2.internal", ip.replace('.', "-"))
    );
    for c in t["containers"].as_array().unwrap() {
        assert_eq!(c["networkInterfaces"][0]["privateIpv4Address"], ip, "{c:#}");
        assert_eq!(
            c["networkInterfaces"][0]["attachmentId"], eni["id"],
            "{c:#}"
        );
    }

    d.b().aws(&["ecs", "stop-task", "--task", &web_task]).json();
    d.b().aws(&["ecs", "stop-task", "--task", &pair]).json();
    let t = d.wait_status(&web_task, "STOPPED", secs(60));
    assert_eq!(t["stopCode"], "UserInitiated", "{t:#}");
    assert_eq!(t["attachments"][0]["status"], "DELETED", "{t:#}");
}

/// The seed definitions name images of a registry this machine cannot reach.
#[test]
fn seed_images_without_a_registry_fail_to_pull() {
    if !docker_ready() {
        return;
    }
    let d = DockerBerth::start();
    for seed in ["my-web-app.json", "data-processor.json"] {
        let url = format!("file://{}", example(seed).display());
        d.b()
            .aws(&["ecs", "register-task-definition", "--cli-input-json", &url])
            .json();
    }
    for family in ["my-web-app", "data-processor"] {
        let arn = d.run_awsvpc(family);
        d.wait_status(&arn, "STOPPED", secs(60));
        let t = d.describe(&arn);
        assert_eq!(t["stopCode"], "TaskFailedToStart", "{t:#}");
        let reason = t["stoppedReason"].as_str().unwrap();
        assert!(
            reason.starts_with("CannotPullContainerError: "),
            "{family}: {reason}"
        );
        assert!(t["pullStartedAt"].is_number(), "{t:#}");
        assert!(t.get("startedAt").is_none(), "{t:#}");
    }
    assert_eq!(d.containers(), Vec::<String>::new());

    // Cached locally under the seed's name, the image runs: the default pull behaviour falls
    // back to the cache when the pull fails.
    let seed_image = "my-docker-repo/data-processor:v1.2";
    let (ok, _, err) = docker(&["tag", IMAGE, seed_image]);
    assert!(ok, "{err}");
    d.b()
        .aws(&[
            "logs",
            "create-log-group",
            "--log-group-name",
            "/ecs/data-processor",
        ])
        .json();
    let arn = d.run(&[
        "--task-definition",
        "data-processor",
        "--launch-type",
        "FARGATE",
        "--network-configuration",
        "awsvpcConfiguration={subnets=[subnet-local]}",
        "--overrides",
        r#"{"containerOverrides":[{"name":"processor-container","command":["sh","-c","echo processed from the cache"]}]}"#,
    ]);
    let t = d.wait_status(&arn, "STOPPED", secs(60));
    let _ = docker(&["rmi", seed_image]);
    assert_eq!(t["stopCode"], "EssentialContainerExited", "{t:#}");
    assert_eq!(container(&t, "processor-container")["exitCode"], 0, "{t:#}");
    assert!(t["pullStoppedAt"].is_number(), "{t:#}");
    assert!(t["startedAt"].is_number(), "{t:#}");
}

/// A container over its memory limit is OOM-killed and reported as ECS reports it; limits
/// reach the engine.
#[test]
fn memory_limits_oom_kills_and_cpu_limits() {
    if !docker_ready() {
        return;
    }
    let d = DockerBerth::start();
    d.register(&json!({
        "family": "limits",
        "cpu": "512",
        "memory": "256",
        "containerDefinitions": [
            {
                "name": "hog",
                "image": IMAGE,
                "essential": false,
                "memory": 16,
                "command": sh("x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived"),
            },
            {
                "name": "steady",
                "image": IMAGE,
                "cpu": 256,
                "memory": 64,
                "memoryReservation": 32,
                "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 2048}],
                "linuxParameters": {"initProcessEnabled": true},
                "readonlyRootFilesystem": true,
                "dockerLabels": {"team": "berth"},
                "command": sh("sleep 600"),
            },
        ],
    }));
    let arn = d.run(&["--task-definition", "limits"]);
    wait_until("the hog's OOM kill", secs(60), || {
        let t = d.task(&arn);
        (container(&t, "hog")["lastStatus"] == "STOPPED").then_some(())
    });
    let t = d.describe(&arn);
    let hog = container(&t, "hog");
    assert_eq!(hog["exitCode"], 137, "{hog:#}");
    assert_eq!(
        hog["reason"], "OutOfMemoryError: Container killed due to memory usage",
        "{hog:#}"
    );
    assert_eq!(t["lastStatus"], "RUNNING", "{t:#}");

    let steady = inspect(container(&t, "steady")["runtimeId"].as_str().unwrap());
    let hc = &steady["HostConfig"];
    assert_eq!(hc["Memory"], 64 * 1024 * 1024, "{hc:#}");
    assert_eq!(hc["MemoryReservation"], 32 * 1024 * 1024, "{hc:#}");
    assert_eq!(hc["CpuShares"], 256, "{hc:#}");
    // The task's cpu is a quota on the task's cgroup, not a cap on each container.
    assert_eq!(hc["NanoCpus"], 0, "{hc:#}");
    assert_eq!(
        hc["CgroupParent"],
        format!("/berth/berth-{}", task_id(&arn)),
        "{hc:#}"
    );
    assert_eq!(hc["ReadonlyRootfs"], true, "{hc:#}");
    assert_eq!(hc["Init"], true, "{hc:#}");
    assert_eq!(hc["Ulimits"][0]["Name"], "nofile", "{hc:#}");
    assert_eq!(hc["Ulimits"][0]["Hard"], 2048, "{hc:#}");
    let labels = &steady["Config"]["Labels"];
    assert_eq!(labels["team"], "berth");
    assert_eq!(labels["com.amazonaws.ecs.task-arn"], arn.as_str());
    assert_eq!(labels["com.amazonaws.ecs.container-name"], "steady");
    assert_eq!(labels["com.amazonaws.ecs.cluster"], "default");
    assert_eq!(labels["com.amazonaws.ecs.task-definition-family"], "limits");
    assert_eq!(labels["com.amazonaws.ecs.task-definition-version"], "1");
    let hog = inspect(container(&t, "hog")["runtimeId"].as_str().unwrap());
    assert_eq!(hog["HostConfig"]["Memory"], 16 * 1024 * 1024);
    assert_eq!(hog["State"]["OOMKilled"], true);
    d.b().aws(&["ecs", "stop-task", "--task", &arn]).json();
    d.wait_status(&arn, "STOPPED", secs(60));
}

fn task_id(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap()
}

/// A file of the task cgroup `parent` (a `CgroupParent`): `v1` in the `controller` hierarchy
/// on cgroup v1, `v2` on cgroup v2.
fn cgroup_file(parent: &str, controller: &str, v1: &str, v2: &str) -> std::path::PathBuf {
    let root = std::path::Path::new("/sys/fs/cgroup");
    let parent = parent.trim_start_matches('/');
    if root.join("cgroup.controllers").exists() {
        root.join(parent).join(v2)
    } else {
        root.join(controller).join(parent).join(v1)
    }
}

fn read_trimmed(path: &std::path::Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// A container command that holds `mib` MiB of memory until it is killed: dd's one block,
/// read from /dev/zero, then blocked writing into a fifo nobody reads. dd is the container's
/// main process, so the OOM killer's kill ends the container.
fn hold_memory(mib: u32) -> Value {
    sh(&format!(
        "mkfifo /f; sleep 600 </f & exec dd if=/dev/zero of=/f bs={mib}M count=1"
    ))
}

/// Task-level cpu and memory are ONE limit over all the task's containers, as on ECS: a
/// cgroup per task, the containers' (and the pause container's) CgroupParent, holds them.
/// One container holding 40 MiB fits a 64 MiB task; two of them do not, and one is
/// OOM-killed and reported as ECS reports it. A restarted agent re-adopts a task's
/// containers and still removes the task's cgroup when the task stops.
#[test]
fn task_level_limits_bound_the_sum_of_the_containers() {
    if !docker_ready() {
        return;
    }
    let mut d = DockerBerth::start();
    let memory_of =
        |parent: &str| cgroup_file(parent, "memory", "memory.limit_in_bytes", "memory.max");
    let usage_of =
        |parent: &str| cgroup_file(parent, "memory", "memory.usage_in_bytes", "memory.current");
    let cpu_of = |parent: &str| {
        if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            read_trimmed(&cgroup_file(parent, "cpu", "", "cpu.max"))
        } else {
            let quota = read_trimmed(&cgroup_file(parent, "cpu", "cpu.cfs_quota_us", ""));
            let period = read_trimmed(&cgroup_file(parent, "cpu", "cpu.cfs_period_us", ""));
            Some(format!("{} {}", quota?, period?))
        }
    };
    const MIB: u64 = 1024 * 1024;

    // One 40 MiB container in a 64 MiB awsvpc task: it fits, and stays.
    d.register(&json!({
        "family": "alone",
        "networkMode": "awsvpc",
        "cpu": "256",
        "memory": "64",
        "containerDefinitions": [
            {"name": "a", "image": IMAGE, "stopTimeout": 2, "command": hold_memory(40)},
        ],
    }));
    let alone = d.run(&[
        "--task-definition",
        "alone",
        "--network-configuration",
        "awsvpcConfiguration={subnets=[subnet-local]}",
    ]);
    let t = d.wait_status(&alone, "RUNNING", secs(60));
    let parent = format!("/berth/berth-{}", task_id(&alone));
    let a = inspect(container(&t, "a")["runtimeId"].as_str().unwrap());
    assert_eq!(a["HostConfig"]["CgroupParent"], parent.as_str(), "{a:#}");
    // No per-container cap: the task's cgroup holds the limits.
    assert_eq!(a["HostConfig"]["Memory"], 0, "{a:#}");
    assert_eq!(a["HostConfig"]["NanoCpus"], 0, "{a:#}");
    let pause_id = a["HostConfig"]["NetworkMode"]
        .as_str()
        .unwrap()
        .strip_prefix("container:")
        .unwrap()
        .to_string();
    assert_eq!(
        inspect(&pause_id)["HostConfig"]["CgroupParent"],
        parent.as_str()
    );
    assert_eq!(
        read_trimmed(&memory_of(&parent)).as_deref(),
        Some((64 * MIB).to_string().as_str())
    );
    assert_eq!(cpu_of(&parent).as_deref(), Some("25000 100000"));
    // The 40 MiB are charged to the task's cgroup, and the container keeps running.
    wait_until("40 MiB charged to the task's cgroup", secs(30), || {
        let used: u64 = read_trimmed(&usage_of(&parent))?.parse().ok()?;
        (used >= 40 * MIB).then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    let t = d.task(&alone);
    assert_eq!(container(&t, "a")["lastStatus"], "RUNNING", "{t:#}");

    // A restarted agent re-adopts the container, and knows the task's cgroup: stopping the
    // task removes it.
    d.berth.restart();
    wait_until("the restarted agent to re-adopt", secs(30), || {
        d.b()
            .stderr()
            .contains("re-adopted a container")
            .then_some(())
    });
    assert!(memory_of(&parent).exists());
    d.b().aws(&["ecs", "stop-task", "--task", &alone]).json();
    d.wait_status(&alone, "STOPPED", secs(60));
    let dir = memory_of(&parent).parent().unwrap().to_path_buf();
    wait_until("the task's cgroup to be removed", secs(30), || {
        (!dir.exists()).then_some(())
    });

    // Two of them in a 64 MiB task: 80 MiB do not fit; one is OOM-killed, the task stops.
    d.register(&json!({
        "family": "together",
        "cpu": "256",
        "memory": "64",
        "containerDefinitions": [
            {"name": "a", "image": IMAGE, "stopTimeout": 2, "command": hold_memory(40)},
            {"name": "b", "image": IMAGE, "stopTimeout": 2, "command": hold_memory(40)},
        ],
    }));
    let together = d.run(&["--task-definition", "together"]);
    d.wait_status(&together, "STOPPED", secs(90));
    let t = d.describe(&together);
    assert_eq!(t["stopCode"], "EssentialContainerExited", "{t:#}");
    let killed: Vec<&Value> = t["containers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["reason"] == "OutOfMemoryError: Container killed due to memory usage")
        .collect();
    assert!(!killed.is_empty(), "{t:#}");
    assert_eq!(killed[0]["exitCode"], 137, "{t:#}");
    let parent = format!("/berth/berth-{}", task_id(&together));
    for c in t["containers"].as_array().unwrap() {
        let info = inspect(c["runtimeId"].as_str().unwrap());
        assert_eq!(
            info["HostConfig"]["CgroupParent"],
            parent.as_str(),
            "{info:#}"
        );
    }
    let killed = inspect(killed[0]["runtimeId"].as_str().unwrap());
    assert_eq!(killed["State"]["OOMKilled"], true, "{killed:#}");
}

/// Bridge mode with hostPort 0: the engine's dynamic port is reported and answers; a failing
/// health check turns the container and the task UNHEALTHY.
#[test]
fn bridge_dynamic_port_and_unhealthy_container() {
    if !docker_ready() {
        return;
    }
    let d = DockerBerth::start();
    d.register(&json!({
        "family": "bridged",
        "networkMode": "bridge",
        "containerDefinitions": [{
            "name": "web",
            "image": IMAGE,
            "memory": 32,
            "command": sh("mkdir -p /w && echo dynamic > /w/index.html && exec httpd -f -p 8080 -h /w"),
            "portMappings": [{"containerPort": 8080, "hostPort": 0}],
            "healthCheck": {
                "command": ["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1:8080/missing"],
                "interval": 5,
                "timeout": 2,
                "retries": 1,
            },
        }],
    }));
    let arn = d.run(&["--task-definition", "bridged"]);
    let t = d.wait_status(&arn, "RUNNING", secs(30));
    let web = container(&t, "web");
    let binding = web["networkBindings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["bindIP"] == "0.0.0.0")
        .unwrap_or_else(|| panic!("{web:#}"))
        .clone();
    assert_eq!(binding["containerPort"], 8080);
    assert_eq!(binding["protocol"], "tcp");
    let port = u16::try_from(binding["hostPort"].as_i64().unwrap()).unwrap();
    assert!(port > 1024, "{binding}");
    let r = http_get(port, "/");
    assert_eq!(r.status, 200);
    assert_eq!(r.text().trim(), "dynamic");

    wait_until("UNHEALTHY", secs(30), || {
        let t = d.task(&arn);
        (container(&t, "web")["healthStatus"] == "UNHEALTHY").then_some(())
    });
    let t = d.describe(&arn);
    assert_eq!(container(&t, "web")["healthStatus"], "UNHEALTHY", "{t:#}");
    assert_eq!(t["healthStatus"], "UNHEALTHY", "{t:#}");
    assert_eq!(
        t["lastStatus"], "RUNNING",
        "a standalone task keeps running: {t:#}"
    );
    let info = inspect(container(&t, "web")["runtimeId"].as_str().unwrap());
    assert_eq!(info["State"]["Health"]["Status"], "unhealthy");
    d.b().aws(&["ecs", "stop-task", "--task", &arn]).json();
    d.wait_status(&arn, "STOPPED", secs(60));
}

/// SIGKILL `berth up` and start it again: the running container is re-adopted (same id,
/// nothing started twice, no orphan), and its later exit is recorded.
#[test]
fn sigkill_and_restart_readopts_running_containers() {
    if !docker_ready() {
        return;
    }
    let mut d = DockerBerth::start();
    d.register(&json!({
        "family": "survivor",
        "containerDefinitions": [{
            "name": "main",
            "image": IMAGE,
            "memory": 32,
            "stopTimeout": 2,
            "command": sh("echo up; while [ ! -f /done ]; do sleep 0.2; done; echo leaving; exit 5"),
        }],
    }));
    let arn = d.run(&["--task-definition", "survivor"]);
    let t = d.wait_status(&arn, "RUNNING", secs(30));
    let id = container(&t, "main")["runtimeId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(d.containers(), vec![id.clone()]);

    d.berth.restart();
    wait_until(
        "the restarted agent to re-adopt the container",
        secs(30),
        || {
            d.b()
                .stderr()
                .contains("re-adopted a container")
                .then_some(())
        },
    );
    // Same container, still running, nothing new.
    let t = d.describe(&arn);
    assert_eq!(t["lastStatus"], "RUNNING", "{t:#}");
    assert_eq!(container(&t, "main")["runtimeId"], id.as_str());
    assert_eq!(d.containers(), vec![id.clone()]);
    assert_eq!(inspect(&id)["State"]["Running"], true);

    // Its exit after the restart is recorded.
    let (ok, _, err) = docker(&["exec", &id, "touch", "/done"]);
    assert!(ok, "{err}");
    d.wait_status(&arn, "STOPPED", secs(30));
    let t = d.describe(&arn);
    assert_eq!(t["stopCode"], "EssentialContainerExited", "{t:#}");
    assert_eq!(container(&t, "main")["exitCode"], 5, "{t:#}");
    assert_eq!(d.containers(), vec![id.clone()], "no orphan, nothing twice");
    let (ok, logs, _) = docker(&["logs", &id]);
    assert!(ok);
    assert_eq!(logs.matches("up").count(), 1, "started once: {logs}");
}

/// A service on the Docker runtime heals: `docker kill` of one task's container stops that
/// task as ECS reports it (EssentialContainerExited, "Essential container in task exited", exit
/// code 137), a replacement reaches RUNNING, the service announces it, and
/// `aws ecs wait services-stable` returns.
#[test]
fn service_replaces_a_task_whose_container_is_killed() {
    if !docker_ready() {
        return;
    }
    let d = DockerBerth::start();
    d.register(&json!({
        "family": "healer",
        "containerDefinitions": [{
            "name": "app",
            "image": IMAGE,
            "memory": 32,
            "stopTimeout": 2,
            "command": sh("while :; do sleep 1; done"),
        }],
    }));
    let created = d
        .b()
        .aws(&[
            "ecs",
            "create-service",
            "--service-name",
            "healer",
            "--task-definition",
            "healer",
            "--desired-count",
            "2",
        ])
        .json();
    assert_eq!(created["service"]["desiredCount"], 2, "{created:#}");
    let service_tasks = |status: &str| -> Vec<String> {
        let v = d.b().ecs_ok(
            "ListTasks",
            &json!({"serviceName": "healer", "desiredStatus": status}),
        );
        common::arns(&v["taskArns"])
    };
    let running = |arns: &[String]| -> Vec<Value> {
        if arns.is_empty() {
            return vec![];
        }
        let v = d.b().ecs_ok("DescribeTasks", &json!({"tasks": arns}));
        v["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["lastStatus"] == "RUNNING")
            .cloned()
            .collect()
    };
    let steady = |what: &str| -> Value {
        wait_until(what, secs(60), || {
            let v = d
                .b()
                .ecs_ok("DescribeServices", &json!({"services": ["healer"]}));
            let s = v["services"][0].clone();
            let deps = s["deployments"].as_array().unwrap();
            (s["runningCount"] == 2
                && s["pendingCount"] == 0
                && deps.len() == 1
                && deps[0]["rolloutState"] == "COMPLETED")
                .then_some(s)
        })
    };
    steady("two RUNNING tasks and a COMPLETED deployment");
    let initial = service_tasks("RUNNING");
    assert_eq!(initial.len(), 2);
    let mut victims: Vec<String> = Vec::new();
    let mut replacements: Vec<String> = Vec::new();
    let mut latencies: Vec<Duration> = Vec::new();
    for round in 0..3 {
        let before = wait_until("two RUNNING tasks", secs(30), || {
            let r = running(&service_tasks("RUNNING"));
            (r.len() == 2).then_some(r)
        });
        let victim = before[round % 2].clone();
        let runtime_id = container(&victim, "app")["runtimeId"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(inspect(&runtime_id)["State"]["Running"], true);
        let t0 = Instant::now();
        let (ok, _, err) = docker(&["kill", &runtime_id]);
        assert!(ok, "{err}");
        let before_arns: Vec<&str> = before
            .iter()
            .map(|t| t["taskArn"].as_str().unwrap())
            .collect();
        let fresh = wait_until("a replacement RUNNING", secs(60), || {
            running(&service_tasks("RUNNING"))
                .into_iter()
                .find(|t| !before_arns.contains(&t["taskArn"].as_str().unwrap()))
        });
        latencies.push(t0.elapsed());
        assert_ne!(
            container(&fresh, "app")["runtimeId"],
            runtime_id.as_str(),
            "a new container"
        );
        victims.push(victim["taskArn"].as_str().unwrap().to_string());
        replacements.push(fresh["taskArn"].as_str().unwrap().to_string());
        steady("back to two RUNNING tasks");
    }
    latencies.sort();
    eprintln!(
        "self-healing latency (docker kill of a service task's container -> replacement RUNNING, Docker runtime, {} kills): min {:?}, median {:?}, max {:?}",
        latencies.len(),
        latencies[0],
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
    );

    // The killed tasks stopped on their own, as ECS reports a container killed under a task.
    for victim_arn in &victims {
        d.wait_status(victim_arn, "STOPPED", secs(30));
        let t = d.describe(victim_arn);
        assert_eq!(t["lastStatus"], "STOPPED", "{t:#}");
        assert_eq!(t["desiredStatus"], "STOPPED");
        assert_eq!(t["stopCode"], "EssentialContainerExited", "{t:#}");
        assert_eq!(
            t["stoppedReason"], "Essential container in task exited",
            "{t:#}"
        );
        assert_eq!(container(&t, "app")["exitCode"], 137, "{t:#}");
        assert_eq!(container(&t, "app")["lastStatus"], "STOPPED");
        assert_eq!(t["group"], "service:healer");
    }

    // The service said so, and is stable again.
    let started = Instant::now();
    d.b()
        .aws(&["ecs", "wait", "services-stable", "--services", "healer"])
        .json();
    assert!(started.elapsed() < secs(14), "services-stable slept");
    let svc = d
        .b()
        .aws(&["ecs", "describe-services", "--services", "healer"])
        .json()["services"][0]
        .clone();
    assert_eq!(svc["runningCount"], 2, "{svc:#}");
    assert_eq!(svc["desiredCount"], 2);
    let messages: Vec<&str> = svc["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    for fresh in &replacements {
        let id = fresh.rsplit('/').next().unwrap();
        let announced = format!("(service healer) has started 1 tasks: (task {id}).");
        assert!(messages.contains(&announced.as_str()), "{messages:#?}");
    }
    assert_eq!(
        messages[0], "(service healer) has reached a steady state.",
        "{messages:#?}"
    );
    let mut now_running = service_tasks("RUNNING");
    now_running.sort();
    let mut expected: Vec<String> = initial
        .iter()
        .chain(&replacements)
        .filter(|r| !victims.contains(r))
        .cloned()
        .collect();
    expected.sort();
    assert_eq!(now_running, expected, "only replacements run");
    let mut stopped = service_tasks("STOPPED");
    stopped.sort();
    victims.sort();
    assert_eq!(stopped, victims, "only the killed tasks stopped");
    // One container per task ever started: the two first and the three replacements.
    assert_eq!(d.containers().len(), 5, "{:?}", d.containers());
}

/// awslogs `mode: blocking` through the Docker runtime: a container writing numbered lines
/// as fast as it can finds every line stored exactly once, in order (the agent reads the
/// engine's log stream no faster than it ships; the engine keeps the rest). The process
/// runtime's counterpart is logs.rs's `blocking_mode_loses_no_line_of_a_flood`.
#[test]
fn docker_blocking_awslogs_loses_no_line_of_a_flood() {
    if !docker_ready() {
        return;
    }
    let d = DockerBerth::start();
    let group = "/berth-test/docker-flood";
    let n: usize = 100_000;
    let pad = "x".repeat(90);
    // ~100-byte lines with no pause (awk buffers its output: 4 KiB writes).
    let script =
        format!("awk 'BEGIN {{ for (i = 1; i <= {n}; i++) printf \"%07d {pad}\\n\", i }}'");
    d.register(&json!({
        "family": "flood",
        "containerDefinitions": [{
            "name": "w",
            "image": IMAGE,
            "memory": 64,
            "command": sh(&script),
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": group, "awslogs-region": "us-east-1",
                "awslogs-stream-prefix": "flood", "awslogs-create-group": "true",
                "mode": "blocking", "max-buffer-size": "1m"}},
        }],
    }));
    let t0 = Instant::now();
    let arn = d.run(&["--task-definition", "flood"]);
    let t = d.wait_status(&arn, "STOPPED", secs(120));
    assert_eq!(container(&t, "w")["exitCode"], 0, "{t:#}");
    let stopped = t0.elapsed();
    let stream = format!("flood/w/{}", task_id(&arn));
    let want: Vec<String> = (1..=n).map(|i| format!("{i:07} {pad}")).collect();
    // Everything is stored by the time the task is reported stopped (the agent drains the
    // output before it reports the exit); allow a moment for the last acknowledgement anyway.
    let deadline = Instant::now() + secs(30);
    let got = loop {
        let got = d.b().all_log_messages(group, &stream);
        if got.len() >= n || Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    if got != want {
        let first_bad = got.iter().zip(&want).position(|(g, w)| g != w);
        let mut seen = std::collections::HashMap::new();
        for (i, l) in got.iter().enumerate() {
            seen.entry(&l[..7]).or_insert_with(Vec::new).push(i);
        }
        let dups: Vec<_> = seen.iter().filter(|(_, v)| v.len() > 1).take(5).collect();
        let tail: Vec<&str> = got.iter().skip(n).take(3).map(|l| &l[..7]).collect();
        let warnings: Vec<String> = d
            .b()
            .stderr()
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .map(str::to_string)
            .collect();
        panic!(
            "berth's warnings: {warnings:#?}\n{} lines stored of {n}; first difference at index {first_bad:?}; some repeated: {dups:?}; after the {n}th: {tail:?}",
            got.len()
        );
    }
    eprintln!(
        "docker blocking flood: {n} lines stored in order; task STOPPED after {stopped:?}, all stored after {:?}",
        t0.elapsed()
    );
}

// ------------------------------------------------------------ private registry

/// A private registry: Debian's `docker-registry` on 127.0.0.1 (a free port) with htpasswd
/// (bcrypt) basic auth, its configuration and storage in a temporary directory. The engine
/// treats registries on 127.0.0.0/8 as insecure, so plain HTTP works. Killed when dropped.
struct Registry {
    child: std::process::Child,
    /// `127.0.0.1:PORT`.
    host: String,
    dir: tempfile::TempDir,
}

impl Registry {
    /// `None` (skip) outside CI when `docker-registry` or `htpasswd` is missing; `.ci/run`
    /// installs both.
    fn start(user: &str, password: &str) -> Option<Registry> {
        let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
        let dir = tempfile::tempdir().unwrap();
        let htpasswd = Command::new("htpasswd")
            .args(["-Bbn", user, password])
            .output();
        let registry = Command::new("docker-registry").arg("--version").output();
        let (Ok(htpasswd), Ok(_)) = (htpasswd, registry) else {
            assert!(
                !ci,
                "CI is set but docker-registry or htpasswd is missing (apt-get install docker-registry apache2-utils)"
            );
            eprintln!("skipping: docker-registry or htpasswd is missing (and CI is not set)");
            return None;
        };
        assert!(htpasswd.status.success(), "htpasswd: {htpasswd:?}");
        std::fs::write(dir.path().join("htpasswd"), &htpasswd.stdout).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let host = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {root}/data\nhttp:\n  addr: {host}\nauth:\n  htpasswd:\n    realm: berth-test\n    path: {root}/htpasswd\n",
            root = dir.path().display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let r = Registry { child, host, dir };
        let addr: std::net::SocketAddr = r.host.parse().unwrap();
        wait_until("the registry", secs(20), || {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
            let resp = common::http_request(addr, "GET", "/v2/", &[], b"");
            (resp.status == 401).then_some(())
        });
        Some(r)
    }

    /// `docker ARGS...` with a Docker CLI configuration of its own (so that a login is
    /// neither taken from nor left in the user's).
    fn docker(&self, args: &[&str]) -> (bool, String, String) {
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .args(args);
        let (status, out, err) = run_with_timeout(cmd, Duration::from_secs(120));
        (status.success(), out, err)
    }

    /// Push the test image as `REGISTRY/name`, then log out and untag it locally so that
    /// nothing but a pull with credentials can bring it back. Returns the reference.
    fn push(&self, name: &str, user: &str, password: &str) -> String {
        let image = format!("{}/{name}", self.host);
        let (ok, _, err) = self.docker(&[
            "login",
            "--username",
            user,
            "--password",
            password,
            &self.host,
        ]);
        assert!(ok, "docker login: {err}");
        let (ok, _, err) = self.docker(&["tag", IMAGE, &image]);
        assert!(ok, "{err}");
        let (ok, _, err) = self.docker(&["push", &image]);
        assert!(ok, "docker push: {err}");
        let (ok, _, err) = self.docker(&["logout", &self.host]);
        assert!(ok, "{err}");
        let (ok, _, err) = self.docker(&["rmi", &image]);
        assert!(ok, "{err}");
        image
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Removes a local image when dropped.
struct LocalImage(String);

impl Drop for LocalImage {
    fn drop(&mut self) {
        let _ = docker(&["rmi", "-f", &self.0]);
    }
}

/// `repositoryCredentials` name a Secrets Manager secret (created with `aws secretsmanager`):
/// the agent pulls from a private registry with it; without it, or with a wrong password, the
/// registry refuses the pull (`CannotPullContainerError`); a missing or malformed secret stops
/// the task before any pull, in ECS's words.
#[test]
fn private_registry_images_pull_with_repository_credentials() {
    if !docker_ready() {
        return;
    }
    let Some(registry) = Registry::start("berth", "s3cret") else {
        return;
    };
    let image = registry.push(
        &format!("berth-test/private-{}:1", std::process::id()),
        "berth",
        "s3cret",
    );
    let _cleanup = LocalImage(image.clone());
    let d = DockerBerth::start();
    let secret = |name: &str, value: &str| -> String {
        let v = d
            .b()
            .aws(&[
                "secretsmanager",
                "create-secret",
                "--name",
                name,
                "--secret-string",
                value,
            ])
            .json();
        v["ARN"].as_str().unwrap().to_string()
    };
    let good = secret(
        "registry/good",
        r#"{"username": "berth", "password": "s3cret"}"#,
    );
    let wrong = secret(
        "registry/wrong",
        r#"{"username": "berth", "password": "not-it"}"#,
    );
    secret("registry/malformed", "berth:s3cret");
    for (family, parameter) in [
        ("anon", None),
        ("wrong", Some(wrong.as_str())),
        ("missing", Some("registry/absent")),
        ("malformed", Some("registry/malformed")),
        ("good", Some(good.as_str())),
    ] {
        let mut c =
            json!({"name": "app", "image": image, "memory": 64, "command": sh("sleep 300")});
        if let Some(p) = parameter {
            c["repositoryCredentials"] = json!({"credentialsParameter": p});
        }
        d.register(&json!({"family": family, "containerDefinitions": [c]}));
    }

    // The registry refuses a pull without credentials or with a wrong password.
    for family in ["anon", "wrong"] {
        let arn = d.run(&["--task-definition", family]);
        d.wait_status(&arn, "STOPPED", secs(60));
        let t = d.describe(&arn);
        assert_eq!(t["stopCode"], "TaskFailedToStart", "{family}: {t:#}");
        let reason = t["stoppedReason"].as_str().unwrap();
        assert!(
            reason.starts_with("CannotPullContainerError: "),
            "{family}: {reason}"
        );
    }
    // A secret that is missing, or not the JSON ECS reads, stops the task before any pull.
    for (family, tail) in [
        (
            "missing",
            "failed to fetch secret registry/absent from secrets manager: ResourceNotFoundException: Secrets Manager can't find the specified secret.",
        ),
        (
            "malformed",
            "asm fetching authorization data: unable to unmarshal secret value, invalid schema",
        ),
    ] {
        let arn = d.run(&["--task-definition", family]);
        d.wait_status(&arn, "STOPPED", secs(60));
        let t = d.describe(&arn);
        assert_eq!(t["stopCode"], "TaskFailedToStart", "{family}: {t:#}");
        let reason = t["stoppedReason"].as_str().unwrap();
        assert_eq!(
            reason,
            format!(
                "ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed: unable to retrieve secret from asm: {tail}"
            ),
            "{family}"
        );
    }
    assert!(
        !docker(&["image", "inspect", &image]).0,
        "{image} was pulled without valid credentials"
    );

    // With the right credentials the image is pulled and the task runs.
    let arn = d.run(&["--task-definition", "good"]);
    wait_until("the task to run or stop", secs(60), || {
        let t = d.task(&arn);
        matches!(t["lastStatus"].as_str(), Some("RUNNING" | "STOPPED")).then_some(())
    });
    let t = d.describe(&arn);
    assert_eq!(t["lastStatus"], "RUNNING", "{t:#}");
    assert!(
        docker(&["image", "inspect", &image]).0,
        "{image} not pulled"
    );
    let c = inspect(container(&t, "app")["runtimeId"].as_str().unwrap());
    assert_eq!(c["Config"]["Image"], image.as_str(), "{c:#}");
    assert!(
        !t.to_string().contains("s3cret"),
        "the task shows the password: {t:#}"
    );
    d.b().aws(&["ecs", "stop-task", "--task", &arn]).json();
    let t = d.wait_status(&arn, "STOPPED", secs(60));
    assert_eq!(t["stopCode"], "UserInitiated", "{t:#}");
}
