//! Berth's benchmarks. Each case runs Berth and its reference in the same invocation,
//! alternating rounds, and prints p50/p99/max with the ratio to the reference.
//!
//! ```text
//! cargo run --release -p berth-bench -- runtask [--tasks N] [--rounds R] [--quick]
//! cargo run --release -p berth-bench -- jobs [--jobs N] [--rounds R] [--quick]
//! cargo run --release -p berth-bench -- selfheal [--tasks N] [--kills K] [--quick]
//! cargo run --release -p berth-bench -- docker [--tasks N] [--rounds R] [--quick]
//! ```
//! The `berth` binary is taken from `BERTH_BIN` or next to this one (build it with
//! `cargo build --release -p berth`).

mod sigv4;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Berth {
    child: Child,
    endpoint: String,
    client: reqwest::Client,
    _dir: TempDir,
}

/// A temporary directory removed on drop (no extra crate for one directory).
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Result<TempDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        let p =
            std::env::temp_dir().join(format!("berth-bench-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p)?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn berth_bin() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("BERTH_BIN") {
        return Ok(PathBuf::from(p));
    }
    let me = std::env::current_exe()?;
    let p = me.with_file_name("berth");
    if p.exists() {
        Ok(p)
    } else {
        bail!(
            "no berth binary at {}; run `cargo build --release -p berth` or set BERTH_BIN",
            p.display()
        )
    }
}

impl Berth {
    fn start() -> Result<Berth> {
        Berth::start_with(&["--runtime", "process"])
    }

    /// `berth up` with `flags` (its runtime, ...).
    fn start_with(flags: &[&str]) -> Result<Berth> {
        let dir = TempDir::new("data")?;
        let mut child = Command::new(berth_bin()?)
            .arg("up")
            .args(flags)
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&dir.0)
            .env("BERTH_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting berth")?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut endpoint = None;
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            let line = line?;
            if let Some(rest) = line.split("is listening on ").nth(1) {
                endpoint = Some(rest.trim().to_string());
                break;
            }
        }
        let endpoint = endpoint.context("berth did not print its endpoint")?;
        // Keep draining stdout so that Berth never writes into a closed pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(Berth {
            child,
            endpoint,
            client: reqwest::Client::new(),
            _dir: dir,
        })
    }

    /// An ECS call, signed (SigV4) with the development pair as an SDK would sign it.
    async fn call(&self, op: &str, body: Value) -> Result<Value> {
        let target = format!("AmazonEC2ContainerServiceV20141113.{op}");
        let content_type = "application/x-amz-json-1.1";
        let body = body.to_string();
        let host = self.endpoint.trim_start_matches("http://");
        let now = i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs(),
        )?;
        let signed = sigv4::sign(
            host,
            &target,
            content_type,
            body.as_bytes(),
            ("test", "test"),
            "us-east-1",
            "ecs",
            now,
        );
        let resp = self
            .client
            .post(&self.endpoint)
            .header("X-Amz-Target", target)
            .header("Content-Type", content_type)
            .header("X-Amz-Date", signed.date)
            .header("Authorization", signed.authorization)
            .body(body)
            .send()
            .await?;
        let status = resp.status();
        let v: Value = serde_json::from_slice(&resp.bytes().await?)?;
        if !status.is_success() {
            bail!("{op} failed: {v}");
        }
        Ok(v)
    }

    async fn wait_for_agent(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let v = self.call("ListContainerInstances", json!({})).await?;
            if v["containerInstanceArns"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("no agent registered")
    }

    async fn register(&self, family: &str, command: &[&str]) -> Result<()> {
        self.call(
            "RegisterTaskDefinition",
            json!({"family": family, "containerDefinitions": [{
                "name": "main", "image": "busybox", "memory": 16, "cpu": 1,
                "command": command, "stopTimeout": 2
            }]}),
        )
        .await?;
        Ok(())
    }

    async fn run(&self, family: &str, count: u32) -> Result<Vec<String>> {
        let v = self
            .call("RunTask", json!({"taskDefinition": family, "count": count}))
            .await?;
        Ok(v["tasks"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t["taskArn"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn statuses(&self, arns: &[String]) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for chunk in arns.chunks(100) {
            let v = self.call("DescribeTasks", json!({"tasks": chunk})).await?;
            for t in v["tasks"].as_array().into_iter().flatten() {
                out.push(t["lastStatus"].as_str().unwrap_or_default().to_string());
            }
        }
        Ok(out)
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Default)]
struct Samples(Vec<f64>);

impl Samples {
    fn pct(&self, p: f64) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return f64::NAN;
        }
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
        v[i.min(v.len() - 1)]
    }
    fn max(&self) -> f64 {
        self.0.iter().copied().fold(f64::NAN, f64::max)
    }
}

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn row(name: &str, s: &Samples, reference: &Samples) -> String {
    format!(
        "| {name} | {:.2} | {:.2} | {:.2} | {:.1}x |",
        s.pct(50.0),
        s.pct(99.0),
        s.max(),
        s.pct(50.0) / reference.pct(50.0)
    )
}

/// Case 1: RunTask (count 1) to RUNNING visible in DescribeTasks, against spawning the same
/// command directly (the floor: fork+exec of a process).
async fn runtask(args: &[String]) -> Result<()> {
    let quick = args.iter().any(|a| a == "--quick");
    let tasks = arg(args, "--tasks", if quick { 10 } else { 200 });
    let rounds = arg(args, "--rounds", if quick { 1 } else { 3 });
    let berth = Berth::start()?;
    berth.wait_for_agent().await?;
    berth.register("bench-sleeper", &["sleep", "3600"]).await?;
    let mut via_berth = Samples::default();
    let mut direct = Samples::default();
    let mut started = Vec::new();
    for round in 0..rounds {
        for _ in 0..tasks {
            let t0 = Instant::now();
            let arns = berth.run("bench-sleeper", 1).await?;
            loop {
                if berth.statuses(&arns).await?.iter().all(|s| s == "RUNNING") {
                    break;
                }
            }
            via_berth.0.push(t0.elapsed().as_secs_f64() * 1000.0);
            started.extend(arns);
        }
        let mut children = Vec::new();
        for _ in 0..tasks {
            let t0 = Instant::now();
            let child = Command::new("sleep").arg("3600").spawn()?;
            direct.0.push(t0.elapsed().as_secs_f64() * 1000.0);
            children.push(child);
        }
        for mut c in children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for arn in started.drain(..) {
            berth.call("StopTask", json!({"task": arn})).await?;
        }
        eprintln!("round {}/{rounds} done", round + 1);
    }
    println!(
        "RunTask to RUNNING, process runtime ({tasks} sequential tasks x {rounds} rounds), milliseconds"
    );
    println!();
    println!("| path | p50 | p99 | max | p50 vs floor |");
    println!("| --- | --- | --- | --- | --- |");
    println!(
        "{}",
        row(
            "berth: RunTask -> RUNNING in DescribeTasks",
            &via_berth,
            &direct
        )
    );
    println!(
        "{}",
        row("floor: spawn `sleep 3600` directly", &direct, &direct)
    );
    Ok(())
}

/// Case: job throughput — N trivial jobs (`true`) started 10 per RunTask, until all STOPPED;
/// reference: the same number of `true` processes spawned and waited for, two loops in
/// parallel.
async fn jobs(args: &[String]) -> Result<()> {
    let quick = args.iter().any(|a| a == "--quick");
    let n = arg(args, "--jobs", if quick { 20 } else { 500 });
    let rounds = arg(args, "--rounds", if quick { 1 } else { 3 });
    let berth = Berth::start()?;
    berth.wait_for_agent().await?;
    berth.register("bench-true", &["true"]).await?;
    let mut via_berth = Samples::default();
    let mut direct = Samples::default();
    for round in 0..rounds {
        let t0 = Instant::now();
        let mut arns = Vec::new();
        while arns.len() < n {
            let k = u32::try_from((n - arns.len()).min(10)).unwrap_or(10);
            arns.extend(berth.run("bench-true", k).await?);
        }
        loop {
            if berth.statuses(&arns).await?.iter().all(|s| s == "STOPPED") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        #[allow(clippy::cast_precision_loss)]
        via_berth.0.push(n as f64 / t0.elapsed().as_secs_f64());
        let t0 = Instant::now();
        let half = n / 2;
        let loops: Vec<std::thread::JoinHandle<()>> = [half, n - half]
            .into_iter()
            .map(|k| {
                std::thread::spawn(move || {
                    for _ in 0..k {
                        let _ = Command::new("true").status();
                    }
                })
            })
            .collect();
        for l in loops {
            let _ = l.join();
        }
        #[allow(clippy::cast_precision_loss)]
        direct.0.push(n as f64 / t0.elapsed().as_secs_f64());
        eprintln!("round {}/{rounds} done", round + 1);
    }
    println!(
        "Job throughput, process runtime ({n} jobs of `true` x {rounds} rounds), jobs per second"
    );
    println!();
    println!("| path | p50 | min | max | vs floor |");
    println!("| --- | --- | --- | --- | --- |");
    let min = |s: &Samples| s.0.iter().copied().fold(f64::NAN, f64::min);
    println!(
        "| berth: RunTask x10 -> all STOPPED | {:.0} | {:.0} | {:.0} | {:.2}x |",
        via_berth.pct(50.0),
        min(&via_berth),
        via_berth.max(),
        via_berth.pct(50.0) / direct.pct(50.0)
    );
    println!(
        "| floor: spawn+wait `true`, 2 loops | {:.0} | {:.0} | {:.0} | 1.00x |",
        direct.pct(50.0),
        min(&direct),
        direct.max()
    );
    Ok(())
}

fn pid_of(task: &Value) -> Option<i32> {
    task["containers"][0]["runtimeId"]
        .as_str()?
        .strip_prefix("process:")?
        .parse()
        .ok()
}

/// Case: self-healing — a service of N tasks, one task's process SIGKILLed per round: time
/// from the kill until the service has N RUNNING tasks again. Reference: a supervisor loop
/// that waits for its child and respawns it (the floor of "notice the exit, start again").
async fn selfheal(args: &[String]) -> Result<()> {
    let quick = args.iter().any(|a| a == "--quick");
    let size = arg(args, "--tasks", if quick { 3 } else { 20 });
    let kills = arg(args, "--kills", if quick { 3 } else { 30 });
    let berth = Berth::start()?;
    berth.wait_for_agent().await?;
    berth.register("bench-heal", &["sleep", "3600"]).await?;
    berth
        .call(
            "CreateService",
            json!({"serviceName": "heal", "taskDefinition": "bench-heal", "desiredCount": size}),
        )
        .await?;
    let running = |v: &Value| -> Vec<Value> {
        v["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["lastStatus"] == "RUNNING")
            .cloned()
            .collect()
    };
    let service_tasks = || async {
        let l = berth
            .call("ListTasks", json!({"serviceName": "heal"}))
            .await?;
        let arns: Vec<Value> = l["taskArns"].as_array().cloned().unwrap_or_default();
        if arns.is_empty() {
            return Ok::<Value, anyhow::Error>(json!({"tasks": []}));
        }
        berth.call("DescribeTasks", json!({"tasks": arns})).await
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while running(&service_tasks().await?).len() < size {
        if Instant::now() > deadline {
            bail!("service did not reach {size} RUNNING");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut via_berth = Samples::default();
    for _ in 0..kills {
        let before = running(&service_tasks().await?);
        let victim = before.first().context("no task")?;
        let pid = pid_of(victim).context("no pid")?;
        let victim_arn = victim["taskArn"].clone();
        let t0 = Instant::now();
        Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()?;
        loop {
            let now = running(&service_tasks().await?);
            if now.len() >= size && !now.iter().any(|t| t["taskArn"] == victim_arn) {
                break;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                bail!("no replacement within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        via_berth.0.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    berth
        .call(
            "UpdateService",
            json!({"service": "heal", "desiredCount": 0}),
        )
        .await?;
    let mut direct = Samples::default();
    let mut child = Command::new("sleep").arg("3600").spawn()?;
    for _ in 0..kills {
        let t0 = Instant::now();
        child.kill()?;
        child.wait()?;
        child = Command::new("sleep").arg("3600").spawn()?;
        direct.0.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "Self-healing, process runtime (service of {size} tasks, {kills} SIGKILLs), milliseconds"
    );
    println!();
    println!("| path | p50 | p99 | max | p50 vs floor |");
    println!("| --- | --- | --- | --- | --- |");
    println!(
        "{}",
        row("berth: kill -> replacement RUNNING", &via_berth, &direct)
    );
    println!(
        "{}",
        row("floor: supervisor wait + respawn", &direct, &direct)
    );
    Ok(())
}

/// The local test image (`FROM scratch` + static busybox; `.ci/run` builds it).
const DOCKER_IMAGE: &str = "berth-test/busybox:latest";

/// Case: RunTask (count 1, bridge mode) to RUNNING with the Docker runtime, against `docker run
/// -d` of the same image and command (create + start through the same engine).
async fn docker_case(args: &[String]) -> Result<()> {
    let quick = args.iter().any(|a| a == "--quick");
    let tasks = arg(args, "--tasks", if quick { 3 } else { 30 });
    let rounds = arg(args, "--rounds", if quick { 1 } else { 3 });
    // Cached images, as `docker run` uses them (the default behaviour would try the registry
    // first: see BENCHMARKS.md).
    let berth = Berth::start_with(&[
        "--runtime",
        "docker",
        "--image-pull-behavior",
        "prefer-cached",
    ])?;
    berth.wait_for_agent().await?;
    berth
        .call(
            "RegisterTaskDefinition",
            json!({"family": "bench-docker", "containerDefinitions": [{
                "name": "main", "image": DOCKER_IMAGE, "memory": 16, "cpu": 1,
                "command": ["sleep", "3600"], "stopTimeout": 1
            }]}),
        )
        .await?;
    let agent_id = std::fs::read_to_string(berth._dir.0.join("agent/docker-agent-id"))
        .context("the agent's docker id (is the Docker runtime in use?)")?;
    let tag = format!("berth-bench={}", std::process::id());
    let mut via_berth = Samples::default();
    let mut direct = Samples::default();
    let result: Result<()> = async {
        for round in 0..rounds {
            let mut started = Vec::new();
            for _ in 0..tasks {
                let t0 = Instant::now();
                let arns = berth.run("bench-docker", 1).await?;
                loop {
                    let s = berth.statuses(&arns).await?;
                    if s.iter().any(|s| s == "STOPPED") {
                        bail!("a benchmark task stopped: is {DOCKER_IMAGE} built?");
                    }
                    if s.iter().all(|s| s == "RUNNING") {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                via_berth.0.push(t0.elapsed().as_secs_f64() * 1000.0);
                started.extend(arns);
            }
            for _ in 0..tasks {
                let t0 = Instant::now();
                let out = Command::new("docker")
                    .args(["run", "-d", "--label", &tag, "-m", "16m", DOCKER_IMAGE])
                    .args(["sleep", "3600"])
                    .stdout(Stdio::null())
                    .status()?;
                if !out.success() {
                    bail!("docker run failed");
                }
                direct.0.push(t0.elapsed().as_secs_f64() * 1000.0);
            }
            for arn in started {
                berth.call("StopTask", json!({"task": arn})).await?;
            }
            eprintln!("round {}/{rounds} done", round + 1);
        }
        Ok(())
    }
    .await;
    // Remove every container either side created, whatever happened.
    for label in [format!("berth.agent={}", agent_id.trim()), tag] {
        let ids = Command::new("docker")
            .args(["ps", "-aq", "--filter", &format!("label={label}")])
            .output()?;
        let ids: Vec<String> = String::from_utf8_lossy(&ids.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(&ids)
                .stdout(Stdio::null())
                .status();
        }
    }
    result?;
    println!(
        "RunTask to RUNNING, Docker runtime, bridge mode ({tasks} sequential tasks x {rounds} rounds), milliseconds"
    );
    println!();
    println!("| path | p50 | p99 | max | p50 vs reference |");
    println!("| --- | --- | --- | --- | --- |");
    println!(
        "{}",
        row(
            "berth: RunTask -> RUNNING in DescribeTasks",
            &via_berth,
            &direct
        )
    );
    println!(
        "{}",
        row(
            "reference: `docker run -d` (same image, command)",
            &direct,
            &direct
        )
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("runtask") => runtask(&args).await,
        Some("jobs") => jobs(&args).await,
        Some("selfheal") => selfheal(&args).await,
        Some("docker") => docker_case(&args).await,
        Some("all") => {
            runtask(&args).await?;
            println!();
            jobs(&args).await?;
            println!();
            selfheal(&args).await?;
            println!();
            docker_case(&args).await
        }
        _ => {
            eprintln!(
                "usage: berth-bench <runtask|jobs|selfheal|docker|all> [--quick] [--tasks N] [--jobs N] [--rounds R]"
            );
            std::process::exit(2);
        }
    }
}
