//! Cases on one host with `berth up`: RunTask to RUNNING (process and Docker), job
//! throughput, self-healing after SIGKILL, and launch bursts (process and Docker).

use crate::berth::{self, Api, Daemon};
use crate::procs::{Meter, RefTotals, run_ref};
use crate::report::{Report, Samples, Side};
use crate::{DOCKER_IMAGE, Opts};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The meter of Berth's side: the `berth up` process and the bench's API client.
fn berth_meter(d: &Daemon, name: &str) -> Meter {
    let mut m = Meter::new(Side::Berth).with_client("berth-bench (API client, polling)");
    m.watch(name, d.pid());
    m
}

#[allow(clippy::cast_precision_loss)]
fn per_s(n: usize, secs: f64) -> f64 {
    n as f64 / secs
}

/// Case 1: RunTask (count 1) to RUNNING visible in DescribeTasks, against spawning the same
/// command directly (the floor: fork+exec of a process).
pub(crate) async fn runtask(o: &Opts) -> Result<Report> {
    let tasks = o.n("--tasks", 1000, 10);
    let rounds = o.n("--rounds", 3, 1);
    let (d, api) = berth::up(&["--runtime", "process"])?;
    api.wait_for_agents(1).await?;
    api.register("bench-sleeper", &["sleep", "3600"]).await?;
    let mut meter = berth_meter(&d, "berth up (server + agent)");
    let mut via_berth = Samples::default();
    let mut berth_s = 0.0;
    let mut reference = RefTotals::default();
    for round in 0..rounds {
        let mut started = Vec::new();
        meter.begin();
        let t_round = Instant::now();
        for _ in 0..tasks {
            let t0 = Instant::now();
            let arns = api.run("bench-sleeper", 1).await?;
            while !api.statuses(&arns).await?.iter().all(|s| s == "RUNNING") {}
            via_berth.push(t0.elapsed().as_secs_f64() * 1000.0);
            started.extend(arns);
        }
        berth_s += t_round.elapsed().as_secs_f64();
        meter.end();
        for arn in started {
            api.call("StopTask", json!({"task": arn})).await?;
        }
        reference.add(&run_ref(
            &json!({"kind": "spawn-seq", "n": tasks, "cmd": ["sleep", "3600"]}),
        )?);
        eprintln!("runtask: round {}/{rounds} done", round + 1);
    }
    let mut r = Report::new(
        "runtask",
        format!("RunTask to RUNNING, process runtime ({tasks} sequential tasks x {rounds} rounds)"),
        "p50 <= 3 ms, p99 <= 10 ms",
    );
    let n = via_berth.len();
    r.row(
        Side::Berth,
        "RunTask -> RUNNING in DescribeTasks",
        "ms",
        via_berth,
        Some(per_s(n, berth_s)),
    );
    let n = reference.samples.len();
    r.row(
        Side::Reference,
        "spawn `sleep 3600` directly (floor)",
        "ms",
        reference.samples.clone(),
        Some(per_s(n, reference.total_s)),
    );
    r.usage = meter.usage();
    r.usage.extend(reference.usage(
        "spawn loop (berth-bench __ref)",
        "spawned `sleep` processes",
    ));
    Ok(r)
}

/// Job throughput: N trivial jobs (`true`) started 10 per RunTask, until all STOPPED;
/// reference: the same number of `true` processes spawned and waited for, two loops in
/// parallel.
pub(crate) async fn jobs(o: &Opts) -> Result<Report> {
    let n = o.n("--jobs", 500, 20);
    let rounds = o.n("--rounds", 3, 1);
    let (d, api) = berth::up(&["--runtime", "process"])?;
    api.wait_for_agents(1).await?;
    api.register("bench-true", &["true"]).await?;
    let mut meter = berth_meter(&d, "berth up (server + agent)");
    let mut via_berth = Samples::default();
    let mut reference = RefTotals::default();
    let mut rates = Samples::default();
    for round in 0..rounds {
        meter.begin();
        let t0 = Instant::now();
        let mut arns = Vec::new();
        while arns.len() < n {
            let k = u32::try_from((n - arns.len()).min(10)).unwrap_or(10);
            arns.extend(api.run("bench-true", k).await?);
        }
        while !api.statuses(&arns).await?.iter().all(|s| s == "STOPPED") {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        via_berth.push(per_s(n, t0.elapsed().as_secs_f64()));
        meter.end();
        let rr = run_ref(&json!({"kind": "spawn-wait-par", "n": n, "loops": 2, "cmd": ["true"]}))?;
        rates.extend(&rr.samples);
        reference.add(&rr);
        eprintln!("jobs: round {}/{rounds} done", round + 1);
    }
    let mut r = Report::new(
        "jobs",
        format!("Job throughput, process runtime ({n} jobs of `true` x {rounds} rounds)"),
        "(no target of its own; see the launch burst)",
    );
    r.row(
        Side::Berth,
        "RunTask x10 -> all STOPPED, jobs per second",
        "/s",
        via_berth,
        None,
    );
    r.row(
        Side::Reference,
        "spawn+wait `true`, 2 loops, jobs per second",
        "/s",
        rates,
        None,
    );
    r.usage = meter.usage();
    r.usage.extend(reference.usage(
        "spawn loops (berth-bench __ref)",
        "spawned `true` processes",
    ));
    Ok(r)
}

fn pid_of(task: &Value) -> Option<i32> {
    task["containers"][0]["runtimeId"]
        .as_str()?
        .strip_prefix("process:")?
        .parse()
        .ok()
}

fn running(tasks: &[Value]) -> Vec<Value> {
    tasks
        .iter()
        .filter(|t| t["lastStatus"] == "RUNNING" && t["desiredStatus"] == "RUNNING")
        .cloned()
        .collect()
}

/// Self-healing: a service of N tasks, one task's process SIGKILLed every interval: time from
/// the kill until the service has N RUNNING tasks again without the victim. Reference: a
/// supervisor loop that waits for its child and respawns it.
pub(crate) async fn selfheal(o: &Opts) -> Result<Report> {
    let size = o.n("--tasks", 50, 3);
    let kills = o.n("--kills", 60, 3);
    let interval = Duration::from_millis(o.n("--interval-ms", 1000, 200) as u64);
    let (d, api) = berth::up(&["--runtime", "process"])?;
    api.wait_for_agents(1).await?;
    api.register("bench-heal", &["sleep", "3600"]).await?;
    api.call(
        "CreateService",
        json!({"serviceName": "heal", "taskDefinition": "bench-heal", "desiredCount": size}),
    )
    .await?;
    let service_tasks = || async {
        let arns = api.service_task_arns("heal", "RUNNING").await?;
        api.describe(&arns).await
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while running(&service_tasks().await?).len() < size {
        if Instant::now() > deadline {
            bail!("service did not reach {size} RUNNING");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut meter = berth_meter(&d, "berth up (server + agent)");
    let mut via_berth = Samples::default();
    let mut reference = RefTotals::default();
    // Alternate: a third of the kills, then a third of the reference's, ...
    let rounds = 3.min(kills).max(1);
    let t_start = Instant::now();
    let mut slot = 0u32;
    for round in 0..rounds {
        let k = kills / rounds + usize::from(round < kills % rounds);
        meter.begin();
        for _ in 0..k {
            let at = t_start + interval * slot;
            slot += 1;
            tokio::time::sleep_until(at.into()).await;
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
            via_berth.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
        meter.end();
        reference.add(&run_ref(
            &json!({"kind": "supervise", "n": k, "cmd": ["sleep", "3600"]}),
        )?);
        eprintln!("selfheal: round {}/{rounds} done", round + 1);
    }
    api.call(
        "UpdateService",
        json!({"service": "heal", "desiredCount": 0}),
    )
    .await?;
    let mut r = Report::new(
        "selfheal",
        format!(
            "Self-healing, process runtime (service of {size} tasks, {kills} SIGKILLs, one per {} ms)",
            interval.as_millis()
        ),
        "kill to replacement p99 <= 500 ms",
    );
    r.row(
        Side::Berth,
        "kill -> replacement RUNNING (service back to N)",
        "ms",
        via_berth,
        None,
    );
    r.row(
        Side::Reference,
        "supervisor: wait + respawn (floor)",
        "ms",
        reference.samples.clone(),
        None,
    );
    r.usage = meter.usage();
    r.usage.extend(reference.usage(
        "supervisor loop (berth-bench __ref)",
        "supervised `sleep` processes",
    ));
    r.notes.push(
        "The berth side's CPU covers the whole kill schedule (mostly idle waiting for the next \
         second); the reference respawns back to back."
            .into(),
    );
    Ok(r)
}

/// Remove every container carrying one of `labels`.
pub(crate) fn docker_rm_labelled(labels: &[String], only_exited: bool) {
    for label in labels {
        let mut args = vec![
            "ps".to_string(),
            "-aq".into(),
            "--filter".into(),
            format!("label={label}"),
        ];
        if only_exited {
            args.extend(["--filter".into(), "status=exited".into()]);
        }
        let Ok(ids) = Command::new("docker").args(&args).output() else {
            continue;
        };
        let ids: Vec<String> = String::from_utf8_lossy(&ids.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        for chunk in ids.chunks(100) {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(chunk)
                .stdout(Stdio::null())
                .status();
        }
    }
}

fn docker_up() -> Result<(Daemon, Api, String)> {
    // Cached images, as `docker run` uses them (the default behaviour would try the registry
    // first: see BENCHMARKS.md).
    let (d, api) = berth::up(&[
        "--runtime",
        "docker",
        "--image-pull-behavior",
        "prefer-cached",
        "--agent-cpu",
        "1000000",
        "--agent-memory",
        "1000000",
    ])?;
    let agent_id = std::fs::read_to_string(d.dir.0.join("agent/docker-agent-id"))
        .context("the agent's docker id (is the Docker runtime in use?)")?;
    Ok((d, api, format!("berth.agent={}", agent_id.trim())))
}

async fn register_docker(api: &Api, family: &str) -> Result<()> {
    api.call(
        "RegisterTaskDefinition",
        json!({"family": family, "containerDefinitions": [{
            "name": "main", "image": DOCKER_IMAGE, "memory": 16, "cpu": 1,
            "command": ["sleep", "3600"], "stopTimeout": 1
        }]}),
    )
    .await?;
    Ok(())
}

/// RunTask (count 1, bridge mode) to RUNNING with the Docker runtime, against `docker run -d`
/// of the same image and command (create + start through the same engine).
pub(crate) async fn docker(o: &Opts) -> Result<Report> {
    let tasks = o.n("--tasks", 30, 3);
    let rounds = o.n("--rounds", 3, 1);
    let (d, api, agent_label) = docker_up()?;
    api.wait_for_agents(1).await?;
    register_docker(&api, "bench-docker").await?;
    let tag = format!("berth-bench={}", std::process::id());
    let mut meter = berth_meter(&d, "berth up (server + agent)");
    meter.watch_docker();
    let mut ref_meter = Meter::new(Side::Reference);
    ref_meter.watch_docker();
    let mut via_berth = Samples::default();
    let mut berth_s = 0.0;
    let mut reference = RefTotals::default();
    let result: Result<()> = async {
        for round in 0..rounds {
            let mut started = Vec::new();
            meter.begin();
            let t_round = Instant::now();
            for _ in 0..tasks {
                let t0 = Instant::now();
                let arns = api.run("bench-docker", 1).await?;
                loop {
                    let s = api.statuses(&arns).await?;
                    if s.iter().any(|s| s == "STOPPED") {
                        bail!("a benchmark task stopped: is {DOCKER_IMAGE} built?");
                    }
                    if s.iter().all(|s| s == "RUNNING") {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                via_berth.push(t0.elapsed().as_secs_f64() * 1000.0);
                started.extend(arns);
            }
            berth_s += t_round.elapsed().as_secs_f64();
            meter.end();
            ref_meter.begin();
            reference.add(&run_ref(&json!({"kind": "docker-seq", "n": tasks,
                "cmd": ["--label", tag, "-m", "16m", DOCKER_IMAGE, "sleep", "3600"]}))?);
            ref_meter.end();
            for arn in started {
                api.call("StopTask", json!({"task": arn})).await?;
            }
            eprintln!("docker: round {}/{rounds} done", round + 1);
        }
        Ok(())
    }
    .await;
    let mut usage = meter.usage();
    usage.extend(ref_meter.usage());
    // Remove every container either side created, whatever happened.
    docker_rm_labelled(&[agent_label, tag], false);
    result?;
    let mut r = Report::new(
        "docker",
        format!(
            "RunTask to RUNNING, Docker runtime, bridge mode ({tasks} sequential tasks x {rounds} rounds)"
        ),
        "p50 within 10 ms of `docker run -d`, p99 within 40 ms",
    );
    let n = via_berth.len();
    r.row(
        Side::Berth,
        "RunTask -> RUNNING in DescribeTasks",
        "ms",
        via_berth,
        Some(per_s(n, berth_s)),
    );
    let n = reference.samples.len();
    r.row(
        Side::Reference,
        "`docker run -d` (same image, command)",
        "ms",
        reference.samples.clone(),
        Some(per_s(n, reference.total_s)),
    );
    r.usage = usage;
    r.usage.extend(reference.usage(
        "`docker run` loop (berth-bench __ref)",
        "`docker` CLI processes",
    ));
    Ok(r)
}

/// Scale service `name` to `n` and wait until `runningCount` is `n` (and, scaling to 0, no
/// task is left RUNNING); returns the seconds it took.
pub(crate) async fn scale(api: &Api, name: &str, n: usize, timeout: Duration) -> Result<f64> {
    let t0 = Instant::now();
    api.call("UpdateService", json!({"service": name, "desiredCount": n}))
        .await?;
    loop {
        let s = api.service(name).await?;
        let running = s["runningCount"].as_u64().unwrap_or(0);
        let pending = s["pendingCount"].as_u64().unwrap_or(0);
        if usize::try_from(running)? == n && (n > 0 || pending == 0) {
            return Ok(t0.elapsed().as_secs_f64());
        }
        if t0.elapsed() > timeout {
            bail!("service {name} did not reach {n} running (at {running})");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Per-task latency of a burst: each RUNNING task's `startedAt` since `t0` (epoch seconds).
async fn started_since(api: &Api, service: &str, t0: f64) -> Result<Samples> {
    let arns = api.service_task_arns(service, "RUNNING").await?;
    let mut s = Samples::default();
    for t in api.describe(&arns).await? {
        if let Some(at) = t["startedAt"].as_f64() {
            s.push((at - t0) * 1000.0);
        }
    }
    Ok(s)
}

/// Launch burst: a service scaled from 0 to N tasks, tasks RUNNING per second; reference:
/// two parallel loops spawning N processes (or `docker run -d` N containers).
pub(crate) async fn burst(o: &Opts, docker: bool) -> Result<Report> {
    let n = if docker {
        o.n("--tasks", 200, 4)
    } else {
        o.n("--tasks", 2000, 20)
    };
    let rounds = o.n("--rounds", 2, 1);
    let tag = format!("berth-bench={}", std::process::id());
    let (d, api, agent_label) = if docker {
        docker_up()?
    } else {
        let (d, api) = berth::up(&[
            "--runtime",
            "process",
            "--agent-cpu",
            "10000000",
            "--agent-memory",
            "100000000",
        ])?;
        (d, api, String::new())
    };
    api.wait_for_agents(1).await?;
    if docker {
        register_docker(&api, "bench-burst").await?;
    } else {
        api.register("bench-burst", &["sleep", "3600"]).await?;
    }
    api.call(
        "CreateService",
        json!({"serviceName": "burst", "taskDefinition": "bench-burst", "desiredCount": 0}),
    )
    .await?;
    let mut meter = berth_meter(&d, "berth up (server + agent)");
    let mut ref_meter = Meter::new(Side::Reference);
    if docker {
        meter.watch_docker();
        ref_meter.watch_docker();
    }
    let mut latencies = Samples::default();
    let mut rates = Samples::default();
    let mut reference = RefTotals::default();
    let mut ref_rates = Samples::default();
    let timeout = Duration::from_secs(if docker { 900 } else { 300 });
    let result: Result<()> = async {
        for round in 0..rounds {
            meter.begin();
            let t0 = berth::epoch_s();
            let secs = scale(&api, "burst", n, timeout).await?;
            meter.end();
            rates.push(per_s(n, secs));
            latencies.extend(&started_since(&api, "burst", t0).await?);
            scale(&api, "burst", 0, timeout).await?;
            let cmd = if docker {
                json!(["--label", tag, "-m", "16m", DOCKER_IMAGE, "sleep", "3600"])
            } else {
                json!(["sleep", "3600"])
            };
            let kind = if docker { "docker-par" } else { "spawn-par" };
            ref_meter.begin();
            let rr = run_ref(&json!({"kind": kind, "n": n, "loops": 2, "cmd": cmd}))?;
            ref_meter.end();
            ref_rates.push(per_s(n, rr.total_s));
            reference.add(&rr);
            if docker {
                docker_rm_labelled(&[tag.clone(), agent_label.clone()], true);
                docker_rm_labelled(std::slice::from_ref(&tag), false);
            }
            eprintln!("burst: round {}/{rounds} done", round + 1);
        }
        Ok(())
    }
    .await;
    let mut usage = meter.usage();
    usage.extend(ref_meter.usage());
    if docker {
        docker_rm_labelled(&[agent_label, tag], false);
    }
    result?;
    let what = if docker {
        "containers"
    } else {
        "process tasks"
    };
    let mut r = Report::new(
        if docker { "burst-docker" } else { "burst" },
        format!("Launch burst: a service scaled 0 -> {n} {what} ({rounds} rounds)"),
        if docker {
            ">= 20 container tasks/s"
        } else {
            ">= 500 process tasks/s"
        },
    );
    r.row(
        Side::Berth,
        "UpdateService 0 -> N until runningCount = N, tasks per second",
        "/s",
        rates,
        None,
    );
    let reference_name = if docker {
        "`docker run -d`, 2 parallel loops, containers per second"
    } else {
        "spawn `sleep 3600`, 2 parallel loops, processes per second"
    };
    r.row(Side::Reference, reference_name, "/s", ref_rates, None);
    r.row(
        Side::Berth,
        "each task's startedAt since UpdateService",
        "ms",
        latencies,
        None,
    );
    r.row(
        Side::Reference,
        "each start since the loops began",
        "ms",
        reference.samples.clone(),
        None,
    );
    r.usage = usage;
    r.usage.extend(reference.usage(
        "spawn loops (berth-bench __ref)",
        if docker {
            "`docker` CLI processes"
        } else {
            "spawned `sleep` processes"
        },
    ));
    Ok(r)
}
