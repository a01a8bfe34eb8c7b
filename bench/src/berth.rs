//! Berth's processes (`berth up`, `berth server`, `berth agent`) as the bench runs them, a
//! signed ECS client, and a simulated agent that speaks the agent protocol without starting
//! anything (for the API and control-plane cases).

use crate::sigv4;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A temporary directory removed on drop (no extra crate for one directory).
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> Result<TempDir> {
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

/// A child process stopped (SIGTERM, then SIGKILL) and reaped on drop.
pub(crate) struct Daemon {
    pub(crate) child: Child,
    pub(crate) dir: TempDir,
}

impl Daemon {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn signal(&self, sig: &str) -> Result<()> {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()?
            .success();
        if !ok {
            bail!("kill -{sig} {} failed", self.pid());
        }
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.signal("CONT");
        let _ = self.signal("TERM");
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

/// Start `berth <args>` with a fresh data directory and wait for its endpoint line.
fn start(args: &[&str], data_flag: &str, tag: &str) -> Result<(Daemon, Option<String>)> {
    let dir = TempDir::new(tag)?;
    let mut child = Command::new(berth_bin()?)
        .args(args)
        .arg(data_flag)
        .arg(&dir.0)
        .env("BERTH_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting berth")?;
    let stdout = child.stdout.take().context("stdout")?;
    let daemon = Daemon { child, dir };
    let mut lines = BufReader::new(stdout).lines();
    let mut endpoint = None;
    if args.first() != Some(&"agent") {
        for line in lines.by_ref() {
            let line = line?;
            if let Some(rest) = line.split("is listening on ").nth(1) {
                endpoint = Some(rest.trim().to_string());
                break;
            }
        }
        if endpoint.is_none() {
            bail!("berth did not print its endpoint");
        }
    }
    // Keep draining stdout so that Berth never writes into a closed pipe.
    std::thread::spawn(move || for _ in lines {});
    Ok((daemon, endpoint))
}

/// The agent registration token the bench gives its servers.
pub(crate) const AGENT_TOKEN: &str = "berth-bench-agent-token";

/// `berth up` (server + in-process agent) with `flags`.
pub(crate) fn up(flags: &[&str]) -> Result<(Daemon, Api)> {
    let mut args = vec!["up"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["--listen", "127.0.0.1:0"]);
    let (d, ep) = start(&args, "--data-dir", "up")?;
    Ok((d, Api::new(&ep.context("endpoint")?)))
}

/// `berth server` alone (agents join with [`AGENT_TOKEN`]).
pub(crate) fn server(flags: &[&str]) -> Result<(Daemon, Api)> {
    let mut args = vec![
        "server",
        "--allow-dev-credentials",
        "--agent-token",
        AGENT_TOKEN,
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(flags);
    let (d, ep) = start(&args, "--data-dir", "server")?;
    Ok((d, Api::new(&ep.context("endpoint")?)))
}

/// `berth agent` joining `api`'s server with `flags`.
pub(crate) fn agent(api: &Api, flags: &[&str]) -> Result<Daemon> {
    let mut args = vec![
        "agent",
        "--server",
        api.endpoint.as_str(),
        "--token",
        AGENT_TOKEN,
    ];
    args.extend_from_slice(flags);
    Ok(start(&args, "--data-dir", "agent")?.0)
}

/// A signed ECS client of one endpoint (Berth's or a peer's).
#[derive(Clone)]
pub(crate) struct Api {
    pub(crate) endpoint: String,
    client: reqwest::Client,
}

impl Api {
    pub(crate) fn new(endpoint: &str) -> Api {
        Api {
            endpoint: endpoint.to_string(),
            // No cap on idle connections: they never outnumber the requests once in flight
            // together, and a cap below that (thousands of simulated agents' long polls)
            // would close and reopen connections on every poll.
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(usize::MAX)
                .build()
                .unwrap_or_default(),
        }
    }

    /// An ECS call, signed (SigV4) with the development pair as an SDK would sign it.
    pub(crate) async fn call(&self, op: &str, body: Value) -> Result<Value> {
        self.call_target(
            &format!("AmazonEC2ContainerServiceV20141113.{op}"),
            "ecs",
            body,
        )
        .await
    }

    /// A signed call of any JSON target (`Logs_20140328.GetLogEvents`) of `service`.
    pub(crate) async fn call_target(
        &self,
        target: &str,
        service: &str,
        body: Value,
    ) -> Result<Value> {
        let op = target.rsplit('.').next().unwrap_or(target);
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
            target,
            content_type,
            body.as_bytes(),
            ("test", "test"),
            "us-east-1",
            service,
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
        let bytes = resp.bytes().await?;
        let v: Value = serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{op}: HTTP {status}, not JSON: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            )
        })?;
        if !status.is_success() {
            bail!("{op} failed: {v}");
        }
        Ok(v)
    }

    /// An unsigned POST of `body` to `path` (the agent protocol; EC2's query API on a peer).
    pub(crate) async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: String,
    ) -> Result<String> {
        let resp = self
            .client
            .post(format!("{}{path}", self.endpoint))
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            bail!("POST {path}: HTTP {status}: {text}");
        }
        Ok(text)
    }

    /// Wait until `n` container instances are registered and connected.
    pub(crate) async fn wait_for_agents(&self, n: usize) -> Result<Vec<String>> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            // A page holds at most 100: follow nextToken.
            let mut arns = Vec::new();
            let mut token = Value::Null;
            loop {
                let mut req = json!({"maxResults": 100});
                if !token.is_null() {
                    req["nextToken"] = token;
                }
                let v = self.call("ListContainerInstances", req).await?;
                arns.extend(strings(&v["containerInstanceArns"]));
                token = v["nextToken"].clone();
                if token.is_null() {
                    break;
                }
            }
            if arns.len() >= n {
                return Ok(arns);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("fewer than {n} agents registered")
    }

    pub(crate) async fn register(&self, family: &str, command: &[&str]) -> Result<()> {
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

    pub(crate) async fn run(&self, family: &str, count: u32) -> Result<Vec<String>> {
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

    /// DescribeTasks of any number of tasks (in chunks of 100).
    pub(crate) async fn describe(&self, arns: &[String]) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        for chunk in arns.chunks(100) {
            let v = self.call("DescribeTasks", json!({"tasks": chunk})).await?;
            out.extend(v["tasks"].as_array().cloned().unwrap_or_default());
        }
        Ok(out)
    }

    pub(crate) async fn statuses(&self, arns: &[String]) -> Result<Vec<String>> {
        Ok(self
            .describe(arns)
            .await?
            .iter()
            .map(|t| t["lastStatus"].as_str().unwrap_or_default().to_string())
            .collect())
    }

    /// Every task ARN of a service (all pages), with `desiredStatus`.
    pub(crate) async fn service_task_arns(
        &self,
        service: &str,
        desired: &str,
    ) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body =
                json!({"serviceName": service, "desiredStatus": desired, "maxResults": 100});
            if let Some(t) = &token {
                body["nextToken"] = json!(t);
            }
            let v = self.call("ListTasks", body).await?;
            out.extend(strings(&v["taskArns"]));
            match v["nextToken"].as_str() {
                Some(t) => token = Some(t.to_string()),
                None => return Ok(out),
            }
        }
    }

    /// The service's description.
    pub(crate) async fn service(&self, service: &str) -> Result<Value> {
        let v = self
            .call("DescribeServices", json!({"services": [service]}))
            .await?;
        v["services"]
            .get(0)
            .cloned()
            .context("service not described")
    }
}

/// The strings of a JSON array.
pub(crate) fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

/// Seconds since the epoch as a float (ECS timestamps on the wire).
pub(crate) fn epoch_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Size of a directory tree in bytes.
pub(crate) fn du(p: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += du(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// A simulated agent: registers as a container instance and answers every desired task at
/// once (RUNNING for tasks to run, STOPPED for tasks to stop; with `exit_at_once`, STOPPED for
/// every task, as if each exited at once) without starting anything. It offers `resources`
/// (CPU units, memory MiB).
pub(crate) struct SimAgent {
    pub(crate) arn: String,
}

impl SimAgent {
    /// Register with `attributes` and run the sync loop in the background until `stop`.
    pub(crate) async fn start(
        api: &Api,
        attributes: Value,
        resources: (i32, i32),
        exit_at_once: bool,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<SimAgent> {
        let reg = json!({
            "protocol_version": 1, "cluster": "default", "region": null,
            "token": AGENT_TOKEN, "container_instance_arn": null, "instance_token": null,
            "cpu_units": resources.0, "memory_mib": resources.1, "reserved_ports": [],
            "attributes": attributes, "version_info": {}, "runtime": "process",
            "hostname": "sim",
        });
        let text = api
            .post(
                "/_berth/agent/v1/register",
                "application/json",
                reg.to_string(),
            )
            .await?;
        let r: Value = serde_json::from_str(&text)?;
        let arn = r["container_instance_arn"]
            .as_str()
            .context("no instance arn")?
            .to_string();
        let token = r["instance_token"].as_str().unwrap_or_default().to_string();
        let api = api.clone();
        let me = arn.clone();
        tokio::spawn(async move {
            if let Err(e) = sim_loop(api, me.clone(), token, exit_at_once, stop).await {
                eprintln!("simulated agent {me} stopped: {e:#}");
            }
        });
        Ok(SimAgent { arn })
    }
}

/// The part of a sync answer a simulated agent reads.
#[derive(serde::Deserialize)]
struct SimSync<'a> {
    #[serde(borrow)]
    desired: SimDesired<'a>,
}

#[derive(serde::Deserialize)]
struct SimDesired<'a> {
    #[serde(default)]
    version: u64,
    #[serde(default, borrow)]
    tasks: Vec<SimTask<'a>>,
}

#[derive(serde::Deserialize)]
struct SimTask<'a> {
    #[serde(borrow)]
    task_arn: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    desired_status: std::borrow::Cow<'a, str>,
    #[serde(default)]
    task_definition: SimTaskDefinition,
}

#[derive(serde::Deserialize, Default)]
struct SimTaskDefinition {
    #[serde(default, rename = "containerDefinitions")]
    container_definitions: Vec<SimContainer>,
}

#[derive(serde::Deserialize)]
struct SimContainer {
    #[serde(default)]
    name: Option<String>,
}

async fn sim_loop(
    api: Api,
    arn: String,
    token: String,
    exit_at_once: bool,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    use std::collections::HashMap;
    let mut version = 0u64;
    let mut reported: HashMap<String, &'static str> = HashMap::new();
    let mut pending: Vec<Value> = Vec::new();
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let body = json!({
            "container_instance_arn": arn, "instance_token": token,
            "desired_version": version, "reports": pending, "wait_ms": 2000,
        });
        let sent = std::mem::take(&mut pending);
        let resp = tokio::select! {
            r = api.post("/_berth/agent/v1/sync", "application/json", body.to_string()) => r,
            _ = stop.changed() => return Ok(()),
        };
        let text = match resp {
            Ok(t) => t,
            Err(_) => {
                pending = sent;
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Only what the simulated agent reads is deserialized (the rest is skipped).
        let v: SimSync<'_> = serde_json::from_str(&text)?;
        version = v.desired.version;
        #[allow(clippy::cast_possible_truncation)]
        let now = (crate::berth::epoch_s() * 1000.0) as i64;
        let mut live = std::collections::HashSet::new();
        for t in v.desired.tasks {
            let task = t.task_arn.into_owned();
            live.insert(task.clone());
            let want = if exit_at_once || t.desired_status == "STOPPED" {
                "STOPPED"
            } else {
                "RUNNING"
            };
            if reported.get(&task) == Some(&want) {
                continue;
            }
            let containers: Vec<Value> = t
                .task_definition
                .container_definitions
                .iter()
                .map(|c| {
                    json!({"name": c.name, "last_status": want,
                        "exit_code": if want == "STOPPED" { json!(0) } else { Value::Null },
                        "reason": null, "runtime_id": null, "health_status": null,
                        "network_bindings": []})
                })
                .collect();
            let stopped = want == "STOPPED";
            pending.push(json!({
                "task_arn": task, "last_status": want, "containers": containers,
                "health_status": null, "pull_started_at_ms": null, "pull_stopped_at_ms": null,
                "started_at_ms": now,
                "stopping_at_ms": if stopped { json!(now) } else { Value::Null },
                "execution_stopped_at_ms": if stopped { json!(now) } else { Value::Null },
                "stopped_at_ms": if stopped { json!(now) } else { Value::Null },
                "stop_code": null, "stopped_reason": null,
            }));
            reported.insert(task, want);
        }
        reported.retain(|k, _| live.contains(k));
    }
}
