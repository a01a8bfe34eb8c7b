//! Cases with more than one process on Berth's side: a frozen agent (SIGSTOP), agents on a
//! CPU-saturated host, a rolling deployment, and API throughput against the moto server.

use crate::Opts;
use crate::berth::{self, Api, SimAgent};
use crate::procs::{Meter, RefTotals, proc_cpu, proc_hwm_mib, proc_rss_mib, run_ref};
use crate::report::{Report, Samples, Side};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// Berth's agent timeout (`AGENT_TIMEOUT_MS` in berth-core), for the reports.
const AGENT_TIMEOUT_S: f64 = 4.5;

/// Resources of a simulated agent that never runs out (CPU units, MiB).
const BIG: (i32, i32) = (1_000_000, 100_000_000);

/// Server plus two `berth agent` processes (process runtime); returns the instance ARNs in
/// start order.
async fn two_agents() -> Result<(berth::Daemon, Api, [berth::Daemon; 2], [String; 2])> {
    let (server, api) = berth::server(&[])?;
    api.call("CreateCluster", json!({"clusterName": "default"}))
        .await?;
    let a = berth::agent(&api, &["--runtime", "process"])?;
    let first = api.wait_for_agents(1).await?;
    let b = berth::agent(&api, &["--runtime", "process"])?;
    let both = api.wait_for_agents(2).await?;
    let arn_a = first.first().context("agent a")?.clone();
    let arn_b = both.into_iter().find(|x| *x != arn_a).context("agent b")?;
    Ok((server, api, [a, b], [arn_a, arn_b]))
}

/// The service's live tasks (desired RUNNING), described.
async fn live_tasks(api: &Api, service: &str) -> Result<Vec<Value>> {
    let arns = api.service_task_arns(service, "RUNNING").await?;
    api.describe(&arns).await
}

fn running_on(tasks: &[Value], instance: &str) -> usize {
    tasks
        .iter()
        .filter(|t| t["lastStatus"] == "RUNNING" && t["containerInstanceArn"] == instance)
        .count()
}

async fn instance(api: &Api, arn: &str) -> Result<Value> {
    let v = api
        .call(
            "DescribeContainerInstances",
            json!({"containerInstances": [arn]}),
        )
        .await?;
    v["containerInstances"]
        .get(0)
        .cloned()
        .context("instance not described")
}

pub(crate) async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let t0 = Instant::now();
    while !f().await? {
        if t0.elapsed() > timeout {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// A service of 2H tasks spread over two agents; one agent is frozen (SIGSTOP) with its H
/// tasks: time until the server sees it disconnected, and until all 2H tasks run on the other
/// agent. Reference: spawning H processes directly (the respawn floor); the detection floor
/// is Berth's configured agent timeout.
pub(crate) async fn frozen(o: &Opts) -> Result<Report> {
    let half = o.n("--tasks", 25, 2);
    let rounds = o.n("--rounds", 3, 1);
    let (server, api, agents, arns) = two_agents().await?;
    api.register("bench-frozen", &["sleep", "3600"]).await?;
    api.call(
        "CreateService",
        json!({"serviceName": "frozen", "taskDefinition": "bench-frozen", "desiredCount": 0,
            "placementStrategy": [{"type": "spread", "field": "instanceId"}]}),
    )
    .await?;
    let mut meter = Meter::new(Side::Berth).with_client("berth-bench (API client, polling)");
    meter.watch("berth server", server.pid());
    meter.watch("berth agent A (alive)", agents[0].pid());
    meter.watch("berth agent B (frozen)", agents[1].pid());
    let mut detect = Samples::default();
    let mut replaced = Samples::default();
    let mut after_detect = Samples::default();
    let mut reference = RefTotals::default();
    let mut ref_total = Samples::default();
    let mut held = Vec::new();
    for round in 0..rounds {
        api.call(
            "UpdateService",
            json!({"service": "frozen", "desiredCount": 2 * half}),
        )
        .await?;
        wait_until("2H tasks RUNNING", Duration::from_secs(120), || async {
            let t = live_tasks(&api, "frozen").await?;
            Ok(running_on(&t, &arns[0]) + running_on(&t, &arns[1]) == 2 * half)
        })
        .await?;
        let on_b = running_on(&live_tasks(&api, "frozen").await?, &arns[1]);
        held.push(on_b);
        // Freeze B a second after its last report, inside the long poll it holds open by then
        // (an agent freezes at any moment, mostly while its poll waits).
        tokio::time::sleep(Duration::from_millis(1000)).await;
        meter.begin();
        let t0 = Instant::now();
        agents[1].signal("STOP")?;
        let mut detected = None;
        loop {
            if detected.is_none() && instance(&api, &arns[1]).await?["agentConnected"] == false {
                detected = Some(ms_since(t0));
            }
            let t = live_tasks(&api, "frozen").await?;
            if detected.is_some() && running_on(&t, &arns[0]) >= 2 * half {
                break;
            }
            if t0.elapsed() > Duration::from_secs(120) {
                agents[1].signal("CONT")?;
                bail!("the frozen agent's tasks were not replaced within 120 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let all = ms_since(t0);
        meter.end();
        let d = detected.unwrap_or(f64::NAN);
        detect.push(d);
        replaced.push(all);
        after_detect.push(all - d);
        agents[1].signal("CONT")?;
        // B comes back, stops what it held, and the service goes to 0 for the next round.
        wait_until(
            "agent B back and empty",
            Duration::from_secs(120),
            || async {
                let i = instance(&api, &arns[1]).await?;
                Ok(i["agentConnected"] == true
                    && i["runningTasksCount"] == 0
                    && i["pendingTasksCount"] == 0)
            },
        )
        .await?;
        api.call(
            "UpdateService",
            json!({"service": "frozen", "desiredCount": 0}),
        )
        .await?;
        wait_until("service at 0", Duration::from_secs(120), || async {
            let s = api.service("frozen").await?;
            Ok(s["runningCount"] == 0 && s["pendingCount"] == 0)
        })
        .await?;
        let rr = run_ref(&json!({"kind": "spawn-par", "n": on_b, "loops": 2,
            "cmd": ["sleep", "3600"]}))?;
        ref_total.push(rr.total_s * 1000.0);
        reference.add(&rr);
        eprintln!("frozen: round {}/{rounds} done", round + 1);
    }
    let mut r = Report::new(
        "frozen",
        format!(
            "Frozen agent: service of {} tasks on two agents, one SIGSTOPped holding {:?} ({rounds} rounds)",
            2 * half,
            held
        ),
        "lost agent detected <= 5 s, all replaced <= 8 s",
    );
    r.row_in(
        "detect",
        Side::Berth,
        "SIGSTOP -> DescribeContainerInstances agentConnected false",
        "ms",
        detect,
        None,
    );
    r.row_in(
        "detect",
        Side::Reference,
        "Berth's configured agent timeout (AGENT_TIMEOUT_MS)",
        "ms",
        Samples(vec![AGENT_TIMEOUT_S * 1000.0]),
        None,
    );
    r.row_in(
        "all",
        Side::Berth,
        "SIGSTOP -> all tasks RUNNING on the live agent",
        "ms",
        replaced,
        None,
    );
    r.row_in(
        "respawn",
        Side::Berth,
        "detection -> all tasks RUNNING on the live agent",
        "ms",
        after_detect,
        None,
    );
    r.row_in(
        "respawn",
        Side::Reference,
        "spawn the frozen agent's share of `sleep` directly, 2 loops",
        "ms",
        ref_total,
        None,
    );
    r.usage = meter.usage();
    r.usage.extend(reference.usage(
        "spawn loops (berth-bench __ref)",
        "spawned `sleep` processes",
    ));
    r.notes.push(format!(
        "An agent's heartbeat is the arrival of its last sync (agents sync at least every 1.5 s), so \
         detection comes at most the agent timeout ({AGENT_TIMEOUT_S} s) after the freeze, and the \
         replacements one scheduler tick (250 ms) later; a shorter timeout trades against false \
         verdicts (see the saturation case)."
    ));
    Ok(r)
}

/// Busy loops that keep every core saturated while they live.
struct Spinners(Vec<Child>);

impl Spinners {
    fn start(n: usize) -> Result<Spinners> {
        let mut v = Vec::new();
        for _ in 0..n {
            v.push(
                Command::new("sh")
                    .args(["-c", "while :; do :; done"])
                    .stdin(Stdio::null())
                    .spawn()?,
            );
        }
        Ok(Spinners(v))
    }
}

impl Drop for Spinners {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
}

/// Two agents running a service while every core is saturated by busy loops (4 per core):
/// false "lost" verdicts (instances seen disconnected, tasks replaced although nothing died)
/// must be zero. The same counts in unsaturated windows of the same run are the reference.
pub(crate) async fn saturation(o: &Opts) -> Result<Report> {
    let half = o.n("--tasks", 25, 2);
    let secs = o.n("--seconds", 60, 8);
    let rounds = o.n("--rounds", 2, 1);
    let window = Duration::from_secs_f64(secs as f64 / rounds as f64);
    let (server, api, agents, arns) = two_agents().await?;
    api.register("bench-sat", &["sleep", "3600"]).await?;
    api.call(
        "CreateService",
        json!({"serviceName": "sat", "taskDefinition": "bench-sat", "desiredCount": 2 * half,
            "placementStrategy": [{"type": "spread", "field": "instanceId"}]}),
    )
    .await?;
    wait_until("tasks RUNNING", Duration::from_secs(120), || async {
        let t = live_tasks(&api, "sat").await?;
        Ok(running_on(&t, &arns[0]) + running_on(&t, &arns[1]) == 2 * half)
    })
    .await?;
    let mut meter = Meter::new(Side::Berth).with_client("berth-bench (API client, polling)");
    meter.watch("berth server", server.pid());
    meter.watch("berth agent A", agents[0].pid());
    meter.watch("berth agent B", agents[1].pid());
    let spinners = 4 * cores();
    let mut seen: std::collections::HashSet<String> = live_tasks(&api, "sat")
        .await?
        .iter()
        .filter_map(|t| t["taskArn"].as_str().map(str::to_string))
        .collect();
    let mut counts = [
        (Samples::default(), Samples::default()),
        (Samples::default(), Samples::default()),
    ];
    let mut polls = [0usize; 2];
    for round in 0..rounds {
        for (k, saturated) in [false, true].into_iter().enumerate() {
            let spin = if saturated {
                meter.begin();
                Some(Spinners::start(spinners)?)
            } else {
                None
            };
            let t0 = Instant::now();
            let mut disconnected = 0usize;
            let mut replaced = 0usize;
            while t0.elapsed() < window {
                for arn in &arns {
                    if instance(&api, arn).await?["agentConnected"] != true {
                        disconnected += 1;
                    }
                }
                for t in live_tasks(&api, "sat").await? {
                    if let Some(a) = t["taskArn"].as_str()
                        && seen.insert(a.to_string())
                    {
                        replaced += 1;
                    }
                }
                polls[k] += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            drop(spin);
            if saturated {
                meter.end();
            }
            #[allow(clippy::cast_precision_loss)]
            {
                counts[k].0.push(disconnected as f64);
                counts[k].1.push(replaced as f64);
            }
        }
        eprintln!("saturation: round {}/{rounds} done", round + 1);
    }
    let mut r = Report::new(
        "saturation",
        format!(
            "False lost verdicts: service of {} tasks on two agents, {spinners} busy loops on {} cores, {rounds} x {:.0} s saturated vs unsaturated",
            2 * half,
            cores(),
            window.as_secs_f64()
        ),
        "0 false verdicts",
    );
    let [(quiet_d, quiet_r), (sat_d, sat_r)] = counts;
    r.row_in(
        "disc",
        Side::Berth,
        "CPU-saturated: polls seeing an agent disconnected",
        "count",
        sat_d,
        None,
    );
    r.row_in(
        "disc",
        Side::Reference,
        "unsaturated (same run): polls seeing an agent disconnected",
        "count",
        quiet_d,
        None,
    );
    r.row_in(
        "repl",
        Side::Berth,
        "CPU-saturated: tasks replaced although none died",
        "count",
        sat_r,
        None,
    );
    r.row_in(
        "repl",
        Side::Reference,
        "unsaturated (same run): tasks replaced although none died",
        "count",
        quiet_r,
        None,
    );
    r.usage = meter.usage();
    r.notes.push(format!(
        "Counts are per window ({} polls saturated, {} unsaturated, every 200 ms, each \
         DescribeContainerInstances of both agents and the service's tasks). CPU is of the saturated windows.",
        polls[1], polls[0]
    ));
    Ok(r)
}

/// A rolling deployment: N tasks with a container health check, min 100 % / max 200 %,
/// UpdateService to a new revision until every task runs it. Reference floor, in the same
/// run: starting N copies of the app directly (2 loops) plus one health-check interval.
pub(crate) async fn rolling(o: &Opts) -> Result<Report> {
    let n = o.n("--tasks", 100, 4);
    let rounds = o.n("--rounds", 3, 1);
    let interval_s = o.n("--health-interval", 5, 5);
    let (d, api) = berth::up(&[
        "--runtime",
        "process",
        "--agent-cpu",
        "10000000",
        "--agent-memory",
        "100000000",
    ])?;
    api.wait_for_agents(1).await?;
    for rev in ["1", "2"] {
        api.call(
            "RegisterTaskDefinition",
            json!({"family": "bench-roll", "containerDefinitions": [{
                "name": "app", "image": "busybox", "memory": 16, "cpu": 1,
                "command": ["sleep", "3600"], "stopTimeout": 2,
                "environment": [{"name": "REVISION", "value": rev}],
                "healthCheck": {"command": ["CMD", "true"], "interval": interval_s,
                    "timeout": 2, "retries": 1, "startPeriod": 0}
            }]}),
        )
        .await?;
    }
    api.call(
        "CreateService",
        json!({"serviceName": "roll", "taskDefinition": "bench-roll:1", "desiredCount": n,
            "deploymentConfiguration": {"maximumPercent": 200, "minimumHealthyPercent": 100}}),
    )
    .await?;
    let settled = |rev: &'static str| {
        let api = api.clone();
        async move {
            let s = api.service("roll").await?;
            let deps = s["deployments"].as_array().cloned().unwrap_or_default();
            Ok::<bool, anyhow::Error>(
                deps.len() == 1
                    && deps[0]["taskDefinition"]
                        .as_str()
                        .is_some_and(|t| t.ends_with(&format!(":{rev}")))
                    && deps[0]["rolloutState"] == "COMPLETED"
                    && s["runningCount"].as_u64() == Some(n as u64),
            )
        }
    };
    wait_until("the first deployment", Duration::from_secs(300), || {
        settled("1")
    })
    .await?;
    let mut meter = Meter::new(Side::Berth).with_client("berth-bench (API client, polling)");
    meter.watch("berth up (server + agent)", d.pid());
    let mut moved = Samples::default();
    let mut completed = Samples::default();
    let mut floor = Samples::default();
    let mut reference = RefTotals::default();
    for round in 0..rounds {
        let (from, to) = if round % 2 == 0 {
            ("1", "2")
        } else {
            ("2", "1")
        };
        meter.begin();
        let t0 = Instant::now();
        api.call(
            "UpdateService",
            json!({"service": "roll", "taskDefinition": format!("bench-roll:{to}")}),
        )
        .await?;
        let mut all_new = None;
        loop {
            let s = api.service("roll").await?;
            let deps = s["deployments"].as_array().cloned().unwrap_or_default();
            let old_running: u64 = deps
                .iter()
                .filter(|d| {
                    d["taskDefinition"]
                        .as_str()
                        .is_some_and(|t| t.ends_with(&format!(":{from}")))
                })
                .map(|d| {
                    d["runningCount"].as_u64().unwrap_or(0)
                        + d["pendingCount"].as_u64().unwrap_or(0)
                })
                .sum();
            let new_running: u64 = deps
                .iter()
                .filter(|d| {
                    d["taskDefinition"]
                        .as_str()
                        .is_some_and(|t| t.ends_with(&format!(":{to}")))
                })
                .map(|d| d["runningCount"].as_u64().unwrap_or(0))
                .sum();
            if all_new.is_none() && old_running == 0 && new_running == n as u64 {
                all_new = Some(ms_since(t0));
            }
            if all_new.is_some() && settled(to).await? {
                break;
            }
            if t0.elapsed() > Duration::from_secs(600) {
                bail!("the deployment did not complete within 600 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        completed.push(ms_since(t0));
        moved.push(all_new.unwrap_or(f64::NAN));
        meter.end();
        let rr =
            run_ref(&json!({"kind": "spawn-par", "n": n, "loops": 2, "cmd": ["sleep", "3600"]}))?;
        #[allow(clippy::cast_precision_loss)]
        floor.push(rr.total_s * 1000.0 + interval_s as f64 * 1000.0);
        reference.add(&rr);
        eprintln!("rolling: round {}/{rounds} done", round + 1);
    }
    let mut r = Report::new(
        "rolling",
        format!(
            "Rolling deployment: {n} tasks, min 100 % / max 200 %, health check every {interval_s} s ({rounds} rounds)"
        ),
        "<= 1 s of orchestration beyond the floor",
    );
    r.row(
        Side::Berth,
        "UpdateService -> all tasks on the new revision, none of the old running",
        "ms",
        moved,
        None,
    );
    r.row(
        Side::Berth,
        "UpdateService -> deployment COMPLETED (steady)",
        "ms",
        completed,
        None,
    );
    r.row(
        Side::Reference,
        "floor: start N apps directly (2 loops) + one health interval",
        "ms",
        floor,
        None,
    );
    r.usage = meter.usage();
    r.usage.extend(reference.usage(
        "spawn loops (berth-bench __ref)",
        "spawned `sleep` processes",
    ));
    r.notes.push(
        "The process runtime runs the first health check as the app starts; old tasks are \
         stopped once the new ones have been RUNNING and HEALTHY for HEALTHY_AFTER_MS (5 s, \
         berth-core service_plan.rs; ECS waits 40 s without health checks), which with a 5 s \
         interval coincides with the floor's one health interval."
            .into(),
    );
    Ok(r)
}

/// A peer ECS endpoint: the moto server.
struct Moto {
    child: Child,
    api: Api,
}

impl Drop for Moto {
    fn drop(&mut self) {
        // moto's server does not stop on SIGTERM while it has clients.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// A fake SigV4 header naming `service` (moto routes on the credential scope and does not
/// check signatures).
fn scope_auth(service: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=test/20200101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=00"
    )
}

fn xml_first(text: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = text.find(&open)? + open.len();
    let end = text[start..].find(&format!("</{tag}>"))? + start;
    Some(text[start..end].to_string())
}

async fn start_moto(bin: &str) -> Result<Moto> {
    let port = free_port()?;
    let child = Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {bin} (pip install 'moto[server]')"))?;
    let moto = Moto {
        child,
        api: Api::new(&format!("http://127.0.0.1:{port}")),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if moto.api.call("ListClusters", json!({})).await.is_ok() {
            break;
        }
        if Instant::now() > deadline {
            bail!("moto did not answer");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // moto places tasks only on registered container instances, which need an EC2 instance.
    let client = reqwest::Client::new();
    let ec2 = |body: &'static str| {
        client
            .post(&moto.api.endpoint)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Authorization", scope_auth("ec2"))
            .body(body)
            .send()
    };
    let images = ec2("Action=DescribeImages&Version=2016-11-15")
        .await?
        .text()
        .await?;
    let image = xml_first(&images, "imageId").context("moto has no AMI")?;
    let body =
        format!("Action=RunInstances&Version=2016-11-15&ImageId={image}&MinCount=1&MaxCount=1");
    let run = client
        .post(&moto.api.endpoint)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Authorization", scope_auth("ec2"))
        .body(body)
        .send()
        .await?
        .text()
        .await?;
    let id = xml_first(&run, "instanceId").context("moto ran no instance")?;
    moto.api
        .call("CreateCluster", json!({"clusterName": "default"}))
        .await?;
    moto.api
        .call(
            "RegisterContainerInstance",
            json!({"cluster": "default",
                "instanceIdentityDocument": json!({"instanceId": id, "region": "us-east-1"}).to_string()}),
        )
        .await?;
    Ok(moto)
}

/// Results of one load run.
#[derive(Default)]
struct Load {
    reads: Samples,
    writes: Samples,
    errors: usize,
    secs: f64,
}

/// `clients` concurrent clients for `dur`: 80 % reads (DescribeTasks of a known task,
/// ListTasks), 20 % writes (RunTask, then StopTask of that task). With `rate` (requests per
/// second in all), each client sends on a fixed schedule and latency counts from the
/// scheduled time; without, each sends as soon as its last answer came (closed loop).
async fn load(
    api: &Api,
    clients: usize,
    dur: Duration,
    rate: Option<f64>,
    pool: Arc<Vec<String>>,
) -> Load {
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for c in 0..clients {
        let api = api.clone();
        let pool = pool.clone();
        handles.push(tokio::spawn(async move {
            let mut out = Load::default();
            let mut mine: Option<String> = None;
            let period = rate.map(|r| Duration::from_secs_f64(clients as f64 / r));
            let offset = period.map(|p| p.mul_f64(c as f64 / clients as f64));
            let mut i: usize = c;
            let mut k: u32 = 0;
            while t0.elapsed() < dur {
                let scheduled = match (period, offset) {
                    (Some(p), Some(off)) => {
                        let at = t0 + off + p * k;
                        k += 1;
                        tokio::time::sleep_until(at.into()).await;
                        at
                    }
                    _ => Instant::now(),
                };
                let write = i % 5 == 4;
                let result = if write {
                    match mine.take() {
                        Some(arn) => api.call("StopTask", json!({"task": arn})).await.map(|_| ()),
                        None => api
                            .call(
                                "RunTask",
                                json!({"taskDefinition": "bench-api", "count": 1}),
                            )
                            .await
                            .map(|v| {
                                mine = v["tasks"][0]["taskArn"].as_str().map(str::to_string);
                            }),
                    }
                } else if i.is_multiple_of(2) {
                    let arn = &pool[(i / 2) % pool.len()];
                    api.call("DescribeTasks", json!({"tasks": [arn]}))
                        .await
                        .map(|_| ())
                } else {
                    api.call("ListTasks", json!({})).await.map(|_| ())
                };
                let ms = ms_since(scheduled);
                match (result, write) {
                    (Ok(()), true) => out.writes.push(ms),
                    (Ok(()), false) => out.reads.push(ms),
                    (Err(_), _) => out.errors += 1,
                }
                i += 1;
            }
            if let Some(arn) = mine {
                let _ = api.call("StopTask", json!({"task": arn})).await;
            }
            out
        }));
    }
    let mut all = Load::default();
    for h in handles {
        if let Ok(l) = h.await {
            all.reads.extend(&l.reads);
            all.writes.extend(&l.writes);
            all.errors += l.errors;
        }
    }
    all.secs = t0.elapsed().as_secs_f64();
    all
}

/// fdatasync()s per second of 4 KiB rewrites of one file in `dir` over `dur`.
pub(crate) fn fsync_rate(dir: &std::path::Path, dur: Duration) -> Result<f64> {
    use std::io::{Seek, SeekFrom, Write};
    let path = dir.join("bench-fsync");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)?;
    let buf = [7u8; 4096];
    let t0 = Instant::now();
    let mut n = 0u32;
    while t0.elapsed() < dur {
        f.seek(SeekFrom::Start(0))?;
        f.write_all(&buf)?;
        f.sync_data()?;
        n += 1;
    }
    let _ = std::fs::remove_file(&path);
    Ok(f64::from(n) / t0.elapsed().as_secs_f64())
}

async fn seed(api: &Api) -> Result<Arc<Vec<String>>> {
    api.register("bench-api", &["sleep", "3600"]).await?;
    let mut pool = Vec::new();
    for _ in 0..5 {
        pool.extend(api.run("bench-api", 10).await?);
    }
    if pool.is_empty() {
        bail!("no task to describe");
    }
    Ok(Arc::new(pool))
}

/// The ECS API under 64 concurrent signed clients (80/20 reads/writes): maximum rates, then
/// p99 at half of Berth's maximum; the moto server under the same load; and the data disk's
/// fdatasync rate (the floor of one-fsync-per-write).
pub(crate) async fn api(o: &Opts) -> Result<Report> {
    let clients = o.n("--clients", 64, 8);
    let secs = o.n("--seconds", 10, 2);
    let rounds = o.n("--rounds", 2, 1);
    let dur = Duration::from_secs(secs as u64);
    let (server, bapi) = berth::server(&[])?;
    bapi.call("CreateCluster", json!({"clusterName": "default"}))
        .await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sim = SimAgent::start(&bapi, json!([]), BIG, false, stop_rx).await?;
    if !bapi.wait_for_agents(1).await?.contains(&sim.arn) {
        bail!("the simulated agent is not listed");
    }
    let bpool = seed(&bapi).await?;
    let moto_bin = o
        .s("--moto")
        .or_else(|| std::env::var("BERTH_BENCH_MOTO").ok())
        .unwrap_or_else(|| "moto_server".into());
    let moto = match start_moto(&moto_bin).await {
        Ok(m) => Some(m),
        Err(e) => {
            eprintln!("api: no moto peer ({e:#}); measuring Berth alone");
            None
        }
    };
    let mpool = match &moto {
        Some(m) => Some(seed(&m.api).await?),
        None => None,
    };
    let mut bmeter =
        Meter::new(Side::Berth).with_client("berth-bench (load generator + simulated agent)");
    bmeter.watch("berth server", server.pid());
    let mut mmeter = Meter::new(Side::Reference).with_client("berth-bench (load generator)");
    if let Some(m) = &moto {
        mmeter.watch("moto_server", m.child.id());
    }
    let mut bmax = Load::default();
    let mut mmax = Load::default();
    let mut brates = (Samples::default(), Samples::default());
    let mut mrates = (Samples::default(), Samples::default());
    let mut bhalf = Load::default();
    let mut mhalf = Load::default();
    let mut errors = (0, 0);
    let rate = |l: &Load, s: &Samples| s.len() as f64 / l.secs;
    for round in 0..rounds {
        bmeter.begin();
        let l = load(&bapi, clients, dur, None, bpool.clone()).await;
        bmeter.end();
        brates.0.push(rate(&l, &l.reads));
        brates.1.push(rate(&l, &l.writes));
        errors.0 += l.errors;
        let half = (l.reads.len() + l.writes.len()) as f64 / l.secs / 2.0;
        bmax.reads.extend(&l.reads);
        bmax.writes.extend(&l.writes);
        if let (Some(m), Some(pool)) = (&moto, &mpool) {
            mmeter.begin();
            let l = load(&m.api, clients, dur, None, pool.clone()).await;
            mmeter.end();
            mrates.0.push(rate(&l, &l.reads));
            mrates.1.push(rate(&l, &l.writes));
            errors.1 += l.errors;
            mmax.reads.extend(&l.reads);
            mmax.writes.extend(&l.writes);
            let mhalf_rate = (l.reads.len() + l.writes.len()) as f64 / l.secs / 2.0;
            mmeter.begin();
            let h = load(&m.api, clients, dur, Some(mhalf_rate), pool.clone()).await;
            mmeter.end();
            errors.1 += h.errors;
            mhalf.reads.extend(&h.reads);
            mhalf.writes.extend(&h.writes);
        }
        bmeter.begin();
        let h = load(&bapi, clients, dur, Some(half), bpool.clone()).await;
        bmeter.end();
        errors.0 += h.errors;
        bhalf.reads.extend(&h.reads);
        bhalf.writes.extend(&h.writes);
        eprintln!("api: round {}/{rounds} done", round + 1);
    }
    let fsyncs = fsync_rate(
        &server.dir.0,
        Duration::from_millis(if o.quick { 300 } else { 2000 }),
    )?;
    let mut usage = bmeter.usage();
    usage.extend(mmeter.usage());
    let _ = stop_tx.send(true);
    let mut r = Report::new(
        "api",
        format!(
            "ECS API throughput: {clients} concurrent signed clients, 80/20 DescribeTasks+ListTasks / RunTask+StopTask, {secs} s per run, {rounds} rounds{}",
            if moto.is_some() {
                ""
            } else {
                " (moto not installed: no peer)"
            }
        ),
        ">= 20,000 reads/s, >= 5,000 durable writes/s, p99 <= 5 ms at half load; >= 20x moto",
    );
    r.row_in(
        "reads",
        Side::Berth,
        "reads per second at max (closed loop)",
        "/s",
        brates.0,
        None,
    );
    r.row_in(
        "reads",
        Side::Reference,
        "moto: reads per second at max",
        "/s",
        mrates.0,
        None,
    );
    r.row_in(
        "writes",
        Side::Berth,
        "durable writes per second at max",
        "/s",
        brates.1,
        None,
    );
    r.row_in(
        "writes",
        Side::Reference,
        "moto: writes per second at max",
        "/s",
        mrates.1,
        None,
    );
    r.row_in(
        "fsync",
        Side::Reference,
        "fdatasync per second, 4 KiB, data disk (one-fsync-per-write floor)",
        "/s",
        Samples(vec![fsyncs]),
        None,
    );
    r.row_in(
        "rl",
        Side::Berth,
        "read latency at max",
        "ms",
        bmax.reads,
        None,
    );
    r.row_in(
        "rl",
        Side::Reference,
        "moto: read latency at max",
        "ms",
        mmax.reads,
        None,
    );
    r.row_in(
        "wl",
        Side::Berth,
        "write latency at max",
        "ms",
        bmax.writes,
        None,
    );
    r.row_in(
        "wl",
        Side::Reference,
        "moto: write latency at max",
        "ms",
        mmax.writes,
        None,
    );
    r.row_in(
        "hr",
        Side::Berth,
        "read latency at half of max rate (open loop)",
        "ms",
        bhalf.reads,
        None,
    );
    r.row_in(
        "hr",
        Side::Reference,
        "moto: read latency at half of its max rate",
        "ms",
        mhalf.reads,
        None,
    );
    r.row_in(
        "hw",
        Side::Berth,
        "write latency at half of max rate (open loop)",
        "ms",
        bhalf.writes,
        None,
    );
    r.row_in(
        "hw",
        Side::Reference,
        "moto: write latency at half of its max rate",
        "ms",
        mhalf.writes,
        None,
    );
    r.usage = usage;
    r.notes.push(format!(
        "Errors: berth {}, moto {}. Writes on Berth are durable (acknowledged after the commit's fsync) \
         and each RunTask/StopTask also makes the (simulated) agent report, which is another commit; \
         moto keeps everything in memory. The load generator shares the 2 cores with the server.",
        errors.0, errors.1
    ));
    drop(moto);
    Ok(r)
}

/// Footprint: the agent's RSS idle and per running process task, and the server's RSS and
/// on-disk bytes per task record. References: a minimal supervisor holding the same number of
/// children (its RSS per child), and one task as DescribeTasks returns it (bytes of JSON).
pub(crate) async fn footprint(o: &Opts) -> Result<Report> {
    let tasks = o.n("--tasks", 1000, 20);
    let records = o.n("--records", 150_000, 500);
    // The agent, as its own process, running `tasks` process tasks.
    let (server, api) = berth::server(&[])?;
    api.call("CreateCluster", json!({"clusterName": "default"}))
        .await?;
    let agent = berth::agent(
        &api,
        &[
            "--runtime",
            "process",
            "--cpu",
            "10000000",
            "--memory",
            "100000000",
        ],
    )?;
    api.wait_for_agents(1).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = proc_rss_mib(agent.pid()).context("agent RSS")?;
    api.register("bench-fp", &["sleep", "3600"]).await?;
    api.call(
        "CreateService",
        json!({"serviceName": "fp", "taskDefinition": "bench-fp", "desiredCount": 0}),
    )
    .await?;
    crate::cases::scale(&api, "fp", tasks, Duration::from_secs(300)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let busy = proc_rss_mib(agent.pid()).context("agent RSS")?;
    let agent_hwm = proc_hwm_mib(agent.pid());
    crate::cases::scale(&api, "fp", 0, Duration::from_secs(300)).await?;
    drop(agent);
    drop(server);
    #[allow(clippy::cast_precision_loss)]
    let per_task_kib = (busy - idle) * 1024.0 / tasks as f64;
    let one = run_ref(&json!({"kind": "spawn-par", "n": 1, "loops": 1, "cmd": ["sleep", "3600"]}))?;
    let many =
        run_ref(&json!({"kind": "spawn-par", "n": tasks, "loops": 1, "cmd": ["sleep", "3600"]}))?;
    #[allow(clippy::cast_precision_loss)]
    let ref_per_child_kib =
        (many.self_rss_mib - one.self_rss_mib) * 1024.0 / (tasks - 1).max(1) as f64;

    // The server with `records` task records (a simulated agent ends each task at once).
    let (server, api) = berth::server(&[])?;
    api.call("CreateCluster", json!({"clusterName": "default"}))
        .await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    SimAgent::start(&api, json!([]), BIG, true, stop_rx).await?;
    api.wait_for_agents(1).await?;
    api.register("bench-rec", &["true"]).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss0 = proc_rss_mib(server.pid()).context("server RSS")?;
    let disk0 = berth::du(&server.dir.0);
    let t0 = Instant::now();
    let calls = records.div_ceil(10);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut handles = Vec::new();
    for _ in 0..16 {
        let api = api.clone();
        let next = next.clone();
        handles.push(tokio::spawn(async move {
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < calls {
                api.run("bench-rec", 10).await?;
            }
            Ok::<(), anyhow::Error>(())
        }));
    }
    for h in handles {
        h.await??;
    }
    let fill_s = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sample = api
        .call(
            "ListTasks",
            json!({"desiredStatus": "STOPPED", "maxResults": 1}),
        )
        .await?;
    let one_task = api
        .call("DescribeTasks", json!({"tasks": sample["taskArns"]}))
        .await?;
    let task_json = one_task["tasks"][0].to_string().len();
    let rss1 = proc_rss_mib(server.pid()).context("server RSS")?;
    let disk1 = berth::du(&server.dir.0);
    let server_hwm = proc_hwm_mib(server.pid());
    let _ = stop_tx.send(true);
    let n = calls * 10;
    #[allow(clippy::cast_precision_loss)]
    let (ram_kib, disk_kib) = (
        (rss1 - rss0) * 1024.0 / n as f64,
        (disk1.saturating_sub(disk0)) as f64 / 1024.0 / n as f64,
    );
    let mut r = Report::new(
        "footprint",
        format!("Footprint: agent with {tasks} process tasks; server with {n} task records"),
        "agent <= 15 MiB idle, <= 64 KiB per process task; server <= 2 KiB RAM and <= 1 KiB disk per task",
    );
    r.row_in(
        "idle",
        Side::Berth,
        "agent RSS idle (berth agent, process runtime)",
        "MiB",
        Samples(vec![idle]),
        None,
    );
    r.row_in(
        "task",
        Side::Berth,
        "agent RSS per running process task",
        "KiB",
        Samples(vec![per_task_kib]),
        None,
    );
    r.row_in(
        "task",
        Side::Reference,
        "a minimal supervisor's RSS per child held (berth-bench __ref)",
        "KiB",
        Samples(vec![ref_per_child_kib]),
        None,
    );
    r.row_in(
        "rec",
        Side::Berth,
        "server RSS per task record",
        "KiB",
        Samples(vec![ram_kib]),
        None,
    );
    r.row_in(
        "rec",
        Side::Berth,
        "server data directory per task record",
        "KiB",
        Samples(vec![disk_kib]),
        None,
    );
    #[allow(clippy::cast_precision_loss)]
    r.row_in(
        "rec",
        Side::Reference,
        "one task as DescribeTasks returns it (JSON)",
        "KiB",
        Samples(vec![task_json as f64 / 1024.0]),
        None,
    );
    #[allow(clippy::cast_precision_loss)]
    r.row_in(
        "fill",
        Side::Berth,
        "RunTask x10, 16 clients, while filling",
        "tasks/s",
        Samples(vec![n as f64 / fill_s]),
        None,
    );
    r.usage.push(crate::report::Usage {
        side: Side::Berth,
        process: format!("berth agent with {tasks} tasks (VmRSS {busy:.1} MiB)"),
        cpu_s: f64::NAN,
        peak_rss_mib: agent_hwm,
    });
    r.usage.push(crate::report::Usage {
        side: Side::Berth,
        process: format!("berth server with {n} records (VmRSS {rss1:.1} MiB)"),
        cpu_s: proc_cpu(server.pid()).map_or(f64::NAN, |c| c.0),
        peak_rss_mib: server_hwm,
    });
    r.notes.push(
        "Agent CPU is not measured here (see the other cases); server CPU is its whole life. The data \
         directory includes SQLite's WAL."
            .into(),
    );
    Ok(r)
}
