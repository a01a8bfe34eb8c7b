//! The agent's main loop: register (as the same instance after a restart), then one sync at
//! a time — reports out, desired state in, long-polled — applying each desired state to the
//! engine. Network failures are retried with backoff; running tasks are unaffected by them.

use crate::engine::Engine;
use crate::logship::{AbortOnDrop, LogShipper};
use crate::reports::ReportBook;
use crate::runner::RunnerEnv;
use crate::runtime::AnyRuntime;
use crate::runtime::docker::{DockerConfig, DockerRuntime, PullBehavior};
use crate::runtime::process::ProcessRuntime;
use berth_api::ecs;
use berth_core::agent_protocol::{
    AgentError, PROTOCOL_VERSION, RegisterRequest, RegisterResponse, SyncRequest, SyncResponse,
};
use berth_core::container_instance::SYNC_INTERVAL_MS;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How the agent reaches the control plane.
pub trait ControlPlane: Clone + Send + Sync + 'static {
    /// Register.
    fn register(
        &self,
        req: RegisterRequest,
    ) -> impl Future<Output = Result<RegisterResponse, TransportError>> + Send;
    /// Sync.
    fn sync(
        &self,
        req: SyncRequest,
    ) -> impl Future<Output = Result<SyncResponse, TransportError>> + Send;
    /// Ship container output (the `awslogs` driver).
    fn put_logs(
        &self,
        req: berth_core::agent_protocol::PutLogsRequest,
    ) -> impl Future<Output = Result<berth_core::agent_protocol::PutLogsResponse, TransportError>> + Send;
    /// Make sure a log group exists before an `awslogs` container starts.
    fn ensure_log_group(
        &self,
        req: berth_core::agent_protocol::EnsureLogGroupRequest,
    ) -> impl Future<
        Output = Result<berth_core::agent_protocol::EnsureLogGroupResponse, TransportError>,
    > + Send;
}

/// A failed exchange.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The server refused.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// The server could not be reached (retried).
    #[error("cannot reach the server: {0}")]
    Network(String),
}

/// The agent's settings.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Cluster to join.
    pub cluster: String,
    /// Region to join (server default when absent).
    pub region: Option<String>,
    /// Registration token.
    pub token: String,
    /// Where identity, runtime state and container output live.
    pub data_dir: PathBuf,
    /// Custom attributes (`--attribute k=v`).
    pub attributes: Vec<(String, Option<String>)>,
    /// CPU units to register (default: 1024 per core).
    pub cpu_units: Option<i32>,
    /// Memory MiB to register (default: the host's).
    pub memory_mib: Option<i32>,
    /// The runtime that runs containers ([`open_runtime`]).
    pub runtime: AnyRuntime,
}

/// Which runtime an agent uses (`--runtime`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeChoice {
    /// Docker when an engine answers (`DOCKER_HOST` or the default socket), else processes.
    Auto,
    /// Docker; an error when no engine answers.
    Docker,
    /// Host processes.
    Process,
}

/// The Docker runtime's agent settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DockerSettings {
    /// When images are pulled (`--image-pull-behavior`).
    pub pull_behavior: PullBehavior,
    /// How long a STOPPED task's containers are kept before they are removed.
    pub cleanup_delay: Duration,
}

impl Default for DockerSettings {
    fn default() -> Self {
        DockerSettings {
            pull_behavior: PullBehavior::Default,
            cleanup_delay: Duration::from_secs(3 * 3600),
        }
    }
}

/// The runtime for an agent whose state lives in `data_dir`. With [`RuntimeChoice::Auto`], a
/// Docker engine that does not answer means the process runtime (the reason is logged).
pub async fn open_runtime(
    choice: RuntimeChoice,
    data_dir: &std::path::Path,
    docker: DockerSettings,
) -> Result<AnyRuntime, AgentRunError> {
    let local = |source: std::io::Error| AgentRunError::Local {
        dir: data_dir.to_path_buf(),
        source,
    };
    if choice != RuntimeChoice::Process {
        let mut config = DockerConfig::for_data_dir(data_dir).map_err(local)?;
        config.pull_behavior = docker.pull_behavior;
        config.cleanup_delay = docker.cleanup_delay;
        match DockerRuntime::connect(config).await {
            Ok(rt) => return Ok(AnyRuntime::Docker(rt)),
            Err(e) if choice == RuntimeChoice::Docker => {
                return Err(AgentRunError::NoDocker(e.to_string()));
            }
            Err(e) => {
                tracing::info!(reason = %e, "no Docker engine: using the process runtime");
            }
        }
    }
    let rt = ProcessRuntime::new(data_dir.join("runtime"))
        .map_err(|e| local(std::io::Error::other(e.to_string())))?;
    Ok(AnyRuntime::Process(rt))
}

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentRunError {
    /// The server refused the agent for good.
    #[error("the server refused this agent: {0}")]
    Refused(AgentError),
    /// `--runtime docker`, and no Docker engine answers.
    #[error("--runtime docker: {0}")]
    NoDocker(String),
    /// Local state could not be set up.
    #[error("agent state in {dir}: {source}")]
    Local {
        /// Directory.
        dir: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Identity {
    container_instance_arn: String,
    instance_token: String,
}

/// CPU units of this host: 1024 per core, as ECS registers them.
pub fn host_cpu_units() -> i32 {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    i32::try_from(cores * 1024).unwrap_or(i32::MAX)
}

/// Memory of this host in MiB (from /proc/meminfo).
pub fn host_memory_mib() -> i32 {
    let kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<i64>().ok())
    });
    kib.map_or(1024, |k| i32::try_from(k / 1024).unwrap_or(i32::MAX))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

fn attributes(config: &AgentConfig) -> Vec<ecs::Attribute> {
    let arch = match std::env::consts::ARCH {
        "aarch64" => "arm64",
        other => other,
    };
    let mut out = vec![
        ("ecs.os-type", Some("linux".to_string())),
        ("ecs.os-family", Some("LINUX".to_string())),
        ("ecs.cpu-architecture", Some(arch.to_string())),
        ("ecs.capability.external", None),
        ("com.amazonaws.ecs.capability.logging-driver.awslogs", None),
        ("com.amazonaws.ecs.capability.task-iam-role", None),
        ("ecs.capability.container-health-check", None),
        ("ecs.capability.container-ordering", None),
        ("ecs.capability.task-eni", None),
        ("ecs.capability.execution-role-awslogs", None),
        ("berth.runtime", Some(config.runtime.kind().to_string())),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v))
    .chain(
        remote_api_attributes(&config.runtime)
            .into_iter()
            .map(|n| (n, None)),
    )
    .map(|(n, v)| ecs::Attribute {
        name: Some(n),
        value: v,
        ..Default::default()
    })
    .collect::<Vec<_>>();
    for (k, v) in &config.attributes {
        out.retain(|a| a.name.as_deref() != Some(k.as_str()));
        out.push(ecs::Attribute {
            name: Some(k.clone()),
            value: v.clone(),
            ..Default::default()
        });
    }
    out
}

/// `com.amazonaws.ecs.capability.docker-remote-api.1.xx`: up to the engine's API version with
/// Docker; 1.18 and 1.19 with processes (what task definitions commonly require).
fn remote_api_attributes(runtime: &AnyRuntime) -> Vec<String> {
    match runtime {
        AnyRuntime::Docker(d) => d.remote_api_attributes(),
        AnyRuntime::Process(_) => ["1.18", "1.19"]
            .iter()
            .map(|v| format!("com.amazonaws.ecs.capability.docker-remote-api.{v}"))
            .collect(),
    }
}

async fn register<C: ControlPlane>(
    cp: &C,
    config: &AgentConfig,
    identity_path: &PathBuf,
) -> Result<RegisterResponse, AgentRunError> {
    let mut backoff = Duration::from_millis(200);
    loop {
        let identity: Option<Identity> = std::fs::read(identity_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let req = RegisterRequest {
            protocol_version: PROTOCOL_VERSION,
            cluster: config.cluster.clone(),
            region: config.region.clone(),
            token: config.token.clone(),
            container_instance_arn: identity.as_ref().map(|i| i.container_instance_arn.clone()),
            instance_token: identity.as_ref().map(|i| i.instance_token.clone()),
            cpu_units: config.cpu_units.unwrap_or_else(host_cpu_units),
            memory_mib: config.memory_mib.unwrap_or_else(host_memory_mib),
            reserved_ports: vec![],
            attributes: attributes(config),
            version_info: ecs::VersionInfo {
                agent_version: Some(env!("CARGO_PKG_VERSION").to_string()),
                agent_hash: Some("berth".into()),
                docker_version: match &config.runtime {
                    AnyRuntime::Docker(d) => Some(format!("DockerVersion: {}", d.engine().version)),
                    AnyRuntime::Process(_) => None,
                },
            },
            runtime: config.runtime.kind().into(),
            hostname: hostname(),
        };
        match cp.register(req).await {
            Ok(resp) => {
                let id = Identity {
                    container_instance_arn: resp.container_instance_arn.clone(),
                    instance_token: resp.instance_token.clone(),
                };
                let bytes = serde_json::to_vec(&id).unwrap_or_default();
                std::fs::write(identity_path, bytes).map_err(|source| AgentRunError::Local {
                    dir: config.data_dir.clone(),
                    source,
                })?;
                return Ok(resp);
            }
            Err(TransportError::Agent(
                e @ (AgentError::Unauthorized(_) | AgentError::BadRequest(_)),
            )) => {
                return Err(AgentRunError::Refused(e));
            }
            Err(e) => {
                tracing::warn!(error = %e, "registration failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Run the agent until `shutdown` completes.
pub async fn run<C: ControlPlane>(
    config: AgentConfig,
    cp: C,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), AgentRunError> {
    let local = |source| AgentRunError::Local {
        dir: config.data_dir.clone(),
        source,
    };
    std::fs::create_dir_all(&config.data_dir).map_err(local)?;
    let runtime = config.runtime.clone();
    let reports = ReportBook::default();
    let shipper = LogShipper::new();
    let _shipping = AbortOnDrop(Some(tokio::spawn(shipper.clone().run(cp.clone()))));
    let env = RunnerEnv {
        logs: shipper.clone(),
        runtime: Arc::new(runtime.clone()),
        reports: reports.clone(),
        logs_dir: config.data_dir.join("output"),
    };
    // Tasks a previous run started are re-adopted when the runtime can (Docker), else
    // reported lost (their processes are stopped below).
    let lost_reason = (!runtime.can_readopt()).then_some(
        "Berth agent restarted: the task's processes cannot be re-adopted by the process runtime and were stopped",
    );
    let mut engine =
        Engine::new(env, config.data_dir.join("started"), lost_reason).map_err(local)?;
    let orphans = runtime.reap_orphans(&engine.journaled()).await;
    if orphans > 0 {
        tracing::warn!(
            count = orphans,
            "stopped containers left by a previous agent run that no task claims"
        );
    }
    // Usage is measured as often as the server asks (it says so at registration and in every
    // sync) and sent with the next sync.
    let usage = crate::usage::UsageBook::default();
    let (usage_interval, usage_interval_rx) = tokio::sync::watch::channel(None);
    let _measuring = AbortOnDrop(Some(tokio::spawn(crate::usage::run(
        Arc::new(runtime.clone()),
        reports.clone(),
        usage.clone(),
        usage_interval_rx,
    ))));
    let identity_path = config.data_dir.join("identity.json");
    tokio::pin!(shutdown);
    let registered = tokio::select! {
        r = register(&cp, &config, &identity_path) => r?,
        () = &mut shutdown => return Ok(()),
    };
    let mut instance_arn = registered.container_instance_arn.clone();
    let mut instance_token = registered.instance_token.clone();
    shipper.set_identity(&instance_arn, &instance_token);
    tracing::info!(instance = %instance_arn, "agent joined cluster {}", config.cluster);
    let mut version = registered.desired.version;
    usage_interval.send_if_modified(|v| replace(v, registered.usage_interval_ms));
    engine.apply(&registered.desired);
    let mut backoff = Duration::from_millis(100);
    loop {
        let batch = reports.take();
        let measured = usage.peek();
        let wait_ms = if batch.reports.is_empty() {
            SYNC_INTERVAL_MS
        } else {
            0
        };
        let req = SyncRequest {
            container_instance_arn: instance_arn.clone(),
            instance_token: instance_token.clone(),
            desired_version: version,
            reports: batch.reports.clone(),
            wait_ms,
            usage: measured.clone(),
        };
        let result = tokio::select! {
            biased;
            () = &mut shutdown => return Ok(()),
            // A long poll carries no reports, so abandoning it for new reports loses nothing.
            () = reports.changed(), if wait_ms > 0 => continue,
            r = cp.sync(req) => r,
        };
        match result {
            Ok(resp) => {
                backoff = Duration::from_millis(100);
                reports.acknowledge(&batch);
                usage.acknowledge(&measured);
                usage_interval.send_if_modified(|v| replace(v, resp.usage_interval_ms));
                version = resp.desired.version;
                engine.apply(&resp.desired);
            }
            Err(TransportError::Agent(AgentError::Deregistered(arn))) => {
                // As ECS's agent does: a deregistered instance's agent stops. Restarting it
                // registers a new container instance.
                tracing::error!(instance = %arn, "this container instance was deregistered; the agent stops (start it again to join as a new instance)");
                let _ = std::fs::remove_file(&identity_path);
                return Ok(());
            }
            Err(TransportError::Agent(AgentError::Unauthorized(_))) => {
                tracing::warn!(
                    "the server no longer knows this instance (was its state reset?); registering anew"
                );
                let _ = std::fs::remove_file(&identity_path);
                let again = tokio::select! {
                    r = register(&cp, &config, &identity_path) => r?,
                    () = &mut shutdown => return Ok(()),
                };
                instance_arn = again.container_instance_arn;
                instance_token = again.instance_token;
                shipper.set_identity(&instance_arn, &instance_token);
                version = again.desired.version;
                usage_interval.send_if_modified(|v| replace(v, again.usage_interval_ms));
                reports.resend_all();
                engine.apply(&again.desired);
            }
            Err(e) => {
                tracing::warn!(error = %e, "sync failed; retrying");
                reports.resend_all();
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = &mut shutdown => return Ok(()),
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Set `slot` to `new`; whether it changed.
fn replace(slot: &mut Option<u64>, new: Option<u64>) -> bool {
    let changed = *slot != new;
    *slot = new;
    changed
}

/// The control plane over HTTP (`berth agent --server URL`).
#[derive(Clone)]
pub struct HttpControlPlane {
    base: String,
    client: reqwest::Client,
    /// Ship logs in the compact encoding (`logs/packed`); turned off for good when the
    /// server predates it (answers 404 there).
    packed_logs: Arc<std::sync::atomic::AtomicBool>,
}

impl HttpControlPlane {
    /// A client for the server at `base` (e.g. `http://10.0.0.1:7400`, or `https://...` for a
    /// server with TLS, trusted through the public roots or `ca_pem`, a PEM bundle).
    pub fn new(base: &str, ca_pem: Option<&[u8]>) -> Result<HttpControlPlane, TransportError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_millis(SYNC_INTERVAL_MS * 5 + 10_000))
            .use_rustls_tls();
        if let Some(pem) = ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| TransportError::Network(format!("the CA bundle: {e}")))?;
            if certs.is_empty() {
                return Err(TransportError::Network(
                    "the CA bundle holds no PEM certificate".into(),
                ));
            }
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let client = builder
            .build()
            .map_err(|e| TransportError::Network(e.to_string()))?;
        Ok(HttpControlPlane {
            base: base.trim_end_matches('/').to_string(),
            client,
            packed_logs: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        })
    }

    async fn call<Req: Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        req: &Req,
    ) -> Result<Resp, TransportError> {
        let resp = self
            .client
            .post(format!("{}/_berth/agent/v1/{path}", self.base))
            .json(req)
            .send()
            .await
            .map_err(|e| TransportError::Network(e.to_string()))?;
        Self::answer(resp).await
    }

    async fn answer<Resp: serde::de::DeserializeOwned>(
        resp: reqwest::Response,
    ) -> Result<Resp, TransportError> {
        let ok = resp.status().is_success();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| TransportError::Network(e.to_string()))?;
        if ok {
            serde_json::from_slice(&bytes)
                .map_err(|e| TransportError::Network(format!("bad response: {e}")))
        } else {
            let err: AgentError = serde_json::from_slice(&bytes).map_err(|_| {
                TransportError::Network(format!(
                    "server answered {}",
                    String::from_utf8_lossy(&bytes)
                ))
            })?;
            Err(TransportError::Agent(err))
        }
    }
}

impl ControlPlane for HttpControlPlane {
    async fn register(&self, req: RegisterRequest) -> Result<RegisterResponse, TransportError> {
        self.call("register", &req).await
    }

    async fn sync(&self, req: SyncRequest) -> Result<SyncResponse, TransportError> {
        self.call("sync", &req).await
    }

    async fn put_logs(
        &self,
        req: berth_core::agent_protocol::PutLogsRequest,
    ) -> Result<berth_core::agent_protocol::PutLogsResponse, TransportError> {
        use berth_core::agent_protocol::packed_logs;
        use std::sync::atomic::Ordering;
        if self.packed_logs.load(Ordering::Relaxed) {
            let resp = self
                .client
                .post(format!(
                    "{}/_berth/agent/v1/{}",
                    self.base,
                    packed_logs::PATH
                ))
                .header(reqwest::header::CONTENT_TYPE, packed_logs::CONTENT_TYPE)
                .body(packed_logs::encode(&req))
                .send()
                .await
                .map_err(|e| TransportError::Network(e.to_string()))?;
            if resp.status() != reqwest::StatusCode::NOT_FOUND {
                return Self::answer(resp).await;
            }
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| TransportError::Network(e.to_string()))?;
            if let Ok(err) = serde_json::from_slice::<AgentError>(&bytes) {
                return Err(TransportError::Agent(err));
            }
            // Not an agent error: a server that predates the compact encoding. JSON from now on.
            tracing::info!("the server does not take packed logs; shipping them as JSON");
            self.packed_logs.store(false, Ordering::Relaxed);
        }
        self.call("logs", &req).await
    }

    async fn ensure_log_group(
        &self,
        req: berth_core::agent_protocol::EnsureLogGroupRequest,
    ) -> Result<berth_core::agent_protocol::EnsureLogGroupResponse, TransportError> {
        self.call("logs/ensure-group", &req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::agent_protocol::{LogBatch, LogLine, PutLogsRequest, packed_logs};
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A bare HTTP/1.1 server: records each request's path and answers with `answer(path)`
    /// (status, body).
    async fn server(
        answer: impl Fn(&str) -> (u16, String) + Send + 'static,
    ) -> (String, Arc<Mutex<Vec<(String, Vec<u8>)>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            loop {
                let (mut sock, _) = listener.accept().await.unwrap();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head_end, length) = loop {
                    let n = sock.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                        break (i + 4, length);
                    }
                };
                while buf.len() < head_end + length {
                    let n = sock.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let path = head.split(' ').nth(1).unwrap().to_string();
                let (status, body) = answer(&path);
                log.lock()
                    .unwrap()
                    .push((path, buf[head_end..head_end + length].to_vec()));
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                sock.write_all(resp.as_bytes()).await.unwrap();
            }
        });
        (base, seen)
    }

    fn request() -> PutLogsRequest {
        PutLogsRequest {
            container_instance_arn: "arn".into(),
            instance_token: "t".into(),
            producer: "p".into(),
            batches: vec![LogBatch {
                region: None,
                group: "g".into(),
                stream: "s".into(),
                seq: 1,
                events: Arc::new(vec![LogLine {
                    timestamp_ms: 1,
                    message: "hello \"there\"".into(),
                }]),
            }],
        }
    }

    #[tokio::test]
    async fn logs_go_packed_and_back_to_json_for_a_server_without_it() {
        let packed = format!("/_berth/agent/v1/{}", packed_logs::PATH);
        // A new server: packed, and it stays so.
        let p = packed.clone();
        let (base, seen) = server(move |path| {
            if path == p {
                (200, r#"{"refused":[null]}"#.into())
            } else {
                (500, "unexpected".into())
            }
        })
        .await;
        let cp = HttpControlPlane::new(&base, None).unwrap();
        for _ in 0..2 {
            let r = cp.put_logs(request()).await.unwrap();
            assert_eq!(r.refused, vec![None]);
        }
        {
            let seen = seen.lock().unwrap();
            assert_eq!(seen.len(), 2);
            assert_eq!(seen[0].0, packed);
            assert_eq!(packed_logs::decode(&seen[0].1).unwrap(), request());
        }
        // An old server: its 404 (not an agent error) sends the agent back to JSON for good.
        let p = packed.clone();
        let (base, seen) = server(move |path| {
            if path == p {
                (
                    404,
                    r#"{"__type":"UnknownOperationException","message":"Not found"}"#.into(),
                )
            } else {
                (200, r#"{"refused":[null]}"#.into())
            }
        })
        .await;
        let cp = HttpControlPlane::new(&base, None).unwrap();
        for _ in 0..2 {
            let r = cp.put_logs(request()).await.unwrap();
            assert_eq!(r.refused, vec![None]);
        }
        let paths: Vec<String> = seen.lock().unwrap().iter().map(|s| s.0.clone()).collect();
        assert_eq!(
            paths,
            [
                packed.as_str(),
                "/_berth/agent/v1/logs",
                "/_berth/agent/v1/logs"
            ]
        );
        let json: PutLogsRequest = serde_json::from_slice(&seen.lock().unwrap()[1].1).unwrap();
        assert_eq!(json, request());
        // A 404 that is an agent error (cluster gone) is that error, not a reason to switch.
        let (base, seen) = server(move |_| (404, r#"{"ClusterNotFound":"default"}"#.into())).await;
        let cp = HttpControlPlane::new(&base, None).unwrap();
        for _ in 0..2 {
            let e = cp.put_logs(request()).await.unwrap_err();
            assert!(
                matches!(e, TransportError::Agent(AgentError::ClusterNotFound(_))),
                "{e:?}"
            );
        }
        let seen = seen.lock().unwrap();
        assert!(seen.iter().all(|s| s.0 == packed), "{seen:?}");
    }
}
