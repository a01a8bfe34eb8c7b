//! The Docker runtime: a task definition's containers as Docker containers, through the Docker
//! Engine API (`bollard`; the same socket API serves Podman).
//!
//! What it does, in ECS's terms:
//! - **Images** follow the agent's pull behaviour ([`PullBehavior`], ECS's
//!   `ECS_IMAGE_PULL_BEHAVIOR`): by default try to pull and fall back to a cached image; a pull
//!   that fails with nothing cached stops the task with `CannotPullContainerError: ...`. A
//!   container with `repositoryCredentials` is pulled with the credentials the server resolved
//!   from Secrets Manager (`DesiredTask::registry_auth`).
//! - **Containers** get every field of their definition that Docker can honour (command,
//!   environment, limits, ulimits, Linux parameters, labels, hosts, DNS, volumes, health
//!   check), plus the labels ECS's agent sets (`com.amazonaws.ecs.task-arn`, ...) and Berth's
//!   own (`berth.agent`, `berth.role`) by which a restarted agent finds them again.
//! - **Network modes**: `bridge` (port mappings, dynamic host ports reported in
//!   `networkBindings`), `host`, `none`, and `awsvpc`: a pause container per task on the
//!   Berth-managed bridge network [`DockerConfig::network`] owns the task's network namespace;
//!   the task's containers join it (`container:<pause>`), reach each other on localhost, and
//!   the task's container ports are published on the host (host port = container port, which
//!   placement reserves on the instance).
//! - **Failures**: engine errors become `CannotCreateContainerError` /
//!   `CannotStartContainerError` with the engine's message; an OOM kill is reported as
//!   `OutOfMemoryError: Container killed due to memory usage`.
//! - **Output**: the container's log stream (stdout and stderr), line by line, into the same
//!   sink as the process runtime's.
//! - **Stopped tasks'** containers are removed [`DockerConfig::cleanup_delay`] after the task
//!   stopped (ECS's `ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION`).

use super::cgroup::{CgroupDriver, CgroupVersion, TaskCgroups, TaskLimits};
use super::{ContainerExit, StartError, container_env, task_id};
use crate::plan::Health;
use crate::runtime::process::{
    ContainerSpec, Forwarder, LineSplitter, MAX_LINE_BYTES, OutputCounters, OutputSink, Stream,
    wait_reader,
};
use berth_api::ecs::{self, ContainerDefinition, NetworkBinding, NetworkMode};
use berth_core::agent_protocol::DesiredTask;
use berth_core::secretsmanager::RegistryCredentials;
use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, DeviceMapping, HealthConfig, HealthStatusEnum, HostConfig,
    NetworkCreateRequest, PortBinding, PortMap, ResourcesUlimits, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder,
    ListVolumesOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveVolumeOptionsBuilder, StopContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures_util::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Label: the task's ARN (ECS's agent sets it too).
pub const LABEL_TASK_ARN: &str = "com.amazonaws.ecs.task-arn";
/// Label: the container's name in its task definition.
pub const LABEL_CONTAINER_NAME: &str = "com.amazonaws.ecs.container-name";
/// Label: the cluster.
pub const LABEL_CLUSTER: &str = "com.amazonaws.ecs.cluster";
/// Label: the task definition's family.
pub const LABEL_FAMILY: &str = "com.amazonaws.ecs.task-definition-family";
/// Label: the task definition's revision.
pub const LABEL_VERSION: &str = "com.amazonaws.ecs.task-definition-version";
/// Label: the agent that owns the container (see [`DockerConfig::agent_id`]).
pub const LABEL_AGENT: &str = "berth.agent";
/// Label: `container` or `pause`.
pub const LABEL_ROLE: &str = "berth.role";
/// ECS's name for a task's pause container.
pub const PAUSE_CONTAINER_NAME: &str = "~internal~ecs~pause";
/// The pause image Berth builds locally (no registry needed).
pub const PAUSE_IMAGE: &str = "berth/pause:1";
/// ECS's OOM reason.
pub const OOM_REASON: &str = "OutOfMemoryError: Container killed due to memory usage";

/// When the agent pulls images (ECS's `ECS_IMAGE_PULL_BEHAVIOR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullBehavior {
    /// Pull; if the pull fails, use a cached image when there is one.
    #[default]
    Default,
    /// Always pull; a failed pull fails the task.
    Always,
    /// Pull only if the image is not cached.
    Once,
    /// Use the cached image when there is one, else pull.
    PreferCached,
}

impl PullBehavior {
    /// Parse ECS's names (`default`, `always`, `once`, `prefer-cached`).
    pub fn parse(s: &str) -> Option<PullBehavior> {
        match s {
            "default" => Some(PullBehavior::Default),
            "always" => Some(PullBehavior::Always),
            "once" => Some(PullBehavior::Once),
            "prefer-cached" => Some(PullBehavior::PreferCached),
            _ => None,
        }
    }
}

/// The Docker runtime's settings.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    /// When images are pulled.
    pub pull_behavior: PullBehavior,
    /// How long the containers of a STOPPED task are kept before they are removed.
    pub cleanup_delay: Duration,
    /// Identifies this agent's containers among others on the same engine (`berth.agent`).
    pub agent_id: String,
    /// The bridge network of `awsvpc` tasks (created when missing).
    pub network: String,
}

impl DockerConfig {
    /// Defaults for an agent whose state lives in `data_dir`: the agent id is generated once
    /// and kept in `<data_dir>/docker-agent-id`.
    pub fn for_data_dir(data_dir: &std::path::Path) -> std::io::Result<DockerConfig> {
        let path = data_dir.join("docker-agent-id");
        let id = match std::fs::read_to_string(&path) {
            Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
            _ => {
                std::fs::create_dir_all(data_dir)?;
                let id = random_hex(6);
                std::fs::write(&path, &id)?;
                id
            }
        };
        Ok(DockerConfig {
            pull_behavior: PullBehavior::Default,
            cleanup_delay: Duration::from_secs(3 * 3600),
            agent_id: id,
            network: "berth-awsvpc".into(),
        })
    }
}

fn random_hex(bytes: usize) -> String {
    // No rand dependency here: the nanosecond clock and the pid are unique enough for an id
    // that only tells agents on one engine apart.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut x = now ^ (u128::from(std::process::id()) << 64);
    let mut out = String::new();
    for _ in 0..bytes {
        // xorshift-style mixing
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push_str(&format!("{:02x}", (x & 0xff) as u8));
    }
    out
}

/// The engine an agent talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineInfo {
    /// The engine's version (`20.10.24`).
    pub version: String,
    /// The API version spoken (negotiated down to the engine's, e.g. `1.41`).
    pub api_version: String,
}

/// The Docker engine could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DockerUnavailable(pub String);

/// The Docker runtime. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DockerRuntime {
    docker: Docker,
    engine: EngineInfo,
    config: Arc<DockerConfig>,
    /// Prepared tasks by task id, until released.
    tasks: Arc<Mutex<HashMap<String, Arc<PreparedTask>>>>,
    /// Task-level limits as one cgroup per task; `Err`: why each container is capped at the
    /// task's size instead.
    cgroups: Arc<Result<TaskCgroups, String>>,
    /// A task cgroup could not be made once already (logged once).
    cgroup_failed: Arc<std::sync::atomic::AtomicBool>,
}

/// Where the engine is expected: `DOCKER_HOST`, else the default socket.
pub fn engine_address() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".into())
}

fn daemon_message(e: &BollardError) -> String {
    match e {
        BollardError::DockerResponseServerError { message, .. } => {
            format!("Error response from daemon: {}", message.trim())
        }
        BollardError::DockerStreamError { error } => {
            format!("Error response from daemon: {}", error.trim())
        }
        other => other.to_string(),
    }
}

/// Where task cgroups go on this host, from the engine's `CgroupDriver` / `CgroupVersion`,
/// or why there are none: the engine must be local (its cgroups are this host's) and the
/// agent must be able to write `/sys/fs/cgroup`.
async fn task_cgroups(docker: &Docker, address: &str) -> Result<TaskCgroups, String> {
    use bollard::models::{SystemInfoCgroupDriverEnum as D, SystemInfoCgroupVersionEnum as V};
    if !address.starts_with("unix://") {
        return Err(format!(
            "the engine at {address} may be on another host, whose cgroups the agent cannot reach"
        ));
    }
    let info = docker
        .info()
        .await
        .map_err(|e| format!("the engine's info: {e}"))?;
    let driver = match info.cgroup_driver {
        Some(D::SYSTEMD) => CgroupDriver::Systemd,
        Some(D::CGROUPFS) | Some(D::EMPTY) | None => CgroupDriver::Cgroupfs,
        Some(D::NONE) => return Err("the engine's cgroup driver is \"none\"".into()),
    };
    let version = match info.cgroup_version {
        Some(V::_1) => Some(CgroupVersion::V1),
        Some(V::_2) => Some(CgroupVersion::V2),
        _ => None,
    };
    TaskCgroups::detect(std::path::Path::new("/sys/fs/cgroup"), version, driver)
}

fn status_of(e: &BollardError) -> Option<u16> {
    match e {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

const MIB: i64 = 1024 * 1024;

/// An `awsvpc` task's interface on the Berth bridge network (what ECS reports as its ENI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskEni {
    /// IPv4 address.
    pub private_ipv4: String,
    /// MAC address.
    pub mac: Option<String>,
}

/// The pause container's address on `network`, from its inspection.
fn eni_from(info: &bollard::models::ContainerInspectResponse, network: &str) -> Option<TaskEni> {
    let ep = info
        .network_settings
        .as_ref()?
        .networks
        .as_ref()?
        .get(network)?;
    let ip = ep.ip_address.clone().filter(|ip| !ip.is_empty())?;
    Some(TaskEni {
        private_ipv4: ip,
        mac: ep.mac_address.clone().filter(|m| !m.is_empty()),
    })
}

/// A task ready for its containers to start.
#[derive(Debug)]
pub struct PreparedTask {
    task: DesiredTask,
    defs: Vec<ContainerDefinition>,
    mode: NetworkMode,
    /// The pause container (awsvpc) and the host ports published for the task.
    pause: Option<(String, Vec<NetworkBinding>)>,
    /// The address of the task's network namespace (awsvpc).
    eni: Option<TaskEni>,
    /// Task volume name → bind source (host path or Docker volume name).
    volumes: BTreeMap<String, String>,
    /// The task's cgroup (`CgroupParent`) holding its task-level limits; `None`: none (no
    /// task-level limits, or the cgroup could not be made and each container is capped).
    cgroup_parent: Option<String>,
    /// Containers created so far: definition name → Docker id.
    created: Mutex<HashMap<String, String>>,
    /// Containers a previous agent run created, to re-adopt: definition name → Docker id.
    recovered: HashMap<String, String>,
}

impl PreparedTask {
    fn created(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.created
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A started (or re-adopted) Docker container.
#[derive(Debug)]
pub struct DockerContainer {
    docker: Docker,
    id: String,
    bindings: Vec<NetworkBinding>,
    /// The task's interface (`awsvpc`).
    eni: Option<TaskEni>,
    exit: watch::Receiver<Option<ContainerExit>>,
    has_health: bool,
}

impl DockerRuntime {
    /// Connect to the engine at [`engine_address`], negotiate the API version, read the
    /// engine's version. Fails when no engine answers within a few seconds.
    pub async fn connect(config: DockerConfig) -> Result<DockerRuntime, DockerUnavailable> {
        let address = engine_address();
        if let Some(path) = address.strip_prefix("unix://")
            && !std::path::Path::new(path).exists()
        {
            return Err(DockerUnavailable(format!(
                "no Docker engine socket at {path} (set DOCKER_HOST to use another engine)"
            )));
        }
        let docker = Docker::connect_with_defaults()
            .map_err(|e| DockerUnavailable(format!("cannot use {address}: {e}")))?
            // Stops wait up to the container's stopTimeout (ECS allows 10 minutes).
            .with_timeout(Duration::from_secs(11 * 60));
        let answer = async {
            let docker = docker.negotiate_version().await?;
            let version = docker.version().await?;
            Ok::<_, BollardError>((docker, version))
        };
        let (docker, version) = tokio::time::timeout(Duration::from_secs(5), answer)
            .await
            .map_err(|_| {
                DockerUnavailable(format!(
                    "the Docker engine at {address} did not answer within 5 s"
                ))
            })?
            .map_err(|e| {
                DockerUnavailable(format!(
                    "the Docker engine at {address} did not answer: {e}"
                ))
            })?;
        let engine = EngineInfo {
            version: version.version.unwrap_or_default(),
            api_version: version.api_version.unwrap_or_default(),
        };
        let cgroups = task_cgroups(&docker, &address).await;
        match &cgroups {
            Ok(cg) => tracing::info!(
                "task-level cpu/memory: one cgroup per task ({}), passed as the containers' CgroupParent",
                cg.describe()
            ),
            Err(why) => tracing::warn!(
                "task-level cpu/memory: each container is capped at the task's size, the sum is not enforced: {why}"
            ),
        }
        Ok(DockerRuntime {
            docker,
            engine,
            config: Arc::new(config),
            tasks: Arc::default(),
            cgroups: Arc::new(cgroups),
            cgroup_failed: Arc::default(),
        })
    }

    /// How task-level cpu/memory are enforced (for the agent's start-up line).
    pub fn task_limits_note(&self) -> String {
        match &*self.cgroups {
            Ok(cg) => format!("task cpu/memory: one cgroup per task, {}", cg.describe()),
            Err(why) => format!("task cpu/memory: per container ({why})"),
        }
    }

    /// The task cgroups, when the agent makes them.
    pub fn cgroups(&self) -> Option<&TaskCgroups> {
        self.cgroups.as_ref().as_ref().ok()
    }

    /// Make the task's cgroup with its limits; `None` when the task has none or the cgroup
    /// cannot be made (logged once: the containers are then capped one by one).
    fn task_cgroup(&self, task: &DesiredTask) -> Option<String> {
        let cg = self.cgroups()?;
        let (cpu, memory) = task_limits(task);
        let limits = TaskLimits { cpu, memory };
        if !limits.any() {
            return None;
        }
        let id = task_id(&task.task_arn);
        match cg.apply(id, limits) {
            Ok(()) => Some(cg.parent_name(id)),
            Err(e) => {
                if !self
                    .cgroup_failed
                    .swap(true, std::sync::atomic::Ordering::Relaxed)
                {
                    tracing::warn!(task = %task.task_arn, error = %e, "cannot make the task's cgroup: its containers are capped at the task's size one by one, the sum is not enforced (logged once)");
                }
                None
            }
        }
    }

    /// The engine.
    pub fn engine(&self) -> &EngineInfo {
        &self.engine
    }

    /// The settings.
    pub fn config(&self) -> &DockerConfig {
        &self.config
    }

    /// ECS's `com.amazonaws.ecs.capability.docker-remote-api.1.17` ... `1.<engine's>`.
    pub fn remote_api_attributes(&self) -> Vec<String> {
        let minor = self
            .engine
            .api_version
            .split_once('.')
            .and_then(|(_, m)| m.parse::<u32>().ok())
            .unwrap_or(17);
        (17..=minor.max(17))
            .map(|m| format!("com.amazonaws.ecs.capability.docker-remote-api.1.{m}"))
            .collect()
    }

    /// The Docker client (for tests and tools).
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    // ------------------------------------------------------------------ images

    /// Make `image` available as the pull behaviour says, pulling with `creds` (a container's
    /// `repositoryCredentials`) when given.
    async fn ensure_image(
        &self,
        image: &str,
        creds: Option<&RegistryCredentials>,
    ) -> Result<(), StartError> {
        let image = normalize_image(image);
        let cached = || async { self.docker.inspect_image(&image).await.is_ok() };
        match self.config.pull_behavior {
            PullBehavior::Once | PullBehavior::PreferCached if cached().await => return Ok(()),
            _ => {}
        }
        match self.pull(&image, creds).await {
            Ok(()) => Ok(()),
            Err(e) if self.config.pull_behavior == PullBehavior::Default && cached().await => {
                tracing::warn!(image = %image, error = %e, "pull failed; using the cached image");
                Ok(())
            }
            Err(e) => Err(StartError::CannotPull(e)),
        }
    }

    async fn pull(&self, image: &str, creds: Option<&RegistryCredentials>) -> Result<(), String> {
        let options = CreateImageOptionsBuilder::default()
            .from_image(image)
            .build();
        // The engine sends them to the registry the image names (X-Registry-Auth).
        let credentials = creds.map(|c| DockerCredentials {
            username: Some(c.username.clone()),
            password: Some(c.password.clone()),
            serveraddress: Some(registry_of(image).to_string()),
            ..Default::default()
        });
        let mut stream = self.docker.create_image(Some(options), None, credentials);
        while let Some(item) = stream.next().await {
            item.map_err(|e| daemon_message(&e))?;
        }
        Ok(())
    }

    /// The pause image, built locally from a tiny static binary when missing.
    async fn ensure_pause_image(&self) -> Result<(), StartError> {
        if self.docker.inspect_image(PAUSE_IMAGE).await.is_ok() {
            return Ok(());
        }
        let elf = pause_elf(std::env::consts::ARCH).ok_or_else(|| {
            StartError::ResourceInitialization(format!(
                "awsvpc: no pause binary for {}",
                std::env::consts::ARCH
            ))
        })?;
        let tar = tar_one_file("pause", &elf, 0o755);
        let (repo, tag) = PAUSE_IMAGE
            .split_once(':')
            .unwrap_or((PAUSE_IMAGE, "latest"));
        let options = CreateImageOptionsBuilder::default()
            .from_src("-")
            .repo(repo)
            .tag(tag)
            .build();
        let mut stream = self.docker.create_image(
            Some(options),
            Some(bollard::body_full(bytes::Bytes::from(tar))),
            None,
        );
        while let Some(item) = stream.next().await {
            item.map_err(|e| {
                StartError::ResourceInitialization(format!(
                    "cannot build the pause image: {}",
                    daemon_message(&e)
                ))
            })?;
        }
        Ok(())
    }

    async fn ensure_network(&self) -> Result<(), StartError> {
        let name = &self.config.network;
        if self
            .docker
            .inspect_network(
                name,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
            .is_ok()
        {
            return Ok(());
        }
        let request = NetworkCreateRequest {
            name: name.clone(),
            driver: Some("bridge".into()),
            labels: Some(HashMap::from([("berth.managed".into(), "true".into())])),
            ..Default::default()
        };
        match self.docker.create_network(request).await {
            Ok(_) => Ok(()),
            // Created concurrently by another agent.
            Err(e) if status_of(&e) == Some(409) => Ok(()),
            Err(e) => Err(StartError::ResourceInitialization(format!(
                "cannot create the network {name}: {}",
                daemon_message(&e)
            ))),
        }
    }

    // ------------------------------------------------------------------ tasks

    fn labels(&self, task: &DesiredTask, container: &str, role: &str) -> HashMap<String, String> {
        let td = &task.task_definition;
        let cluster = task
            .cluster_arn
            .rsplit('/')
            .next()
            .unwrap_or(&task.cluster_arn);
        HashMap::from([
            (LABEL_TASK_ARN.into(), task.task_arn.clone()),
            (LABEL_CONTAINER_NAME.into(), container.to_string()),
            (LABEL_CLUSTER.into(), cluster.to_string()),
            (LABEL_FAMILY.into(), td.family.clone().unwrap_or_default()),
            (
                LABEL_VERSION.into(),
                td.revision.unwrap_or_default().to_string(),
            ),
            (LABEL_AGENT.into(), self.config.agent_id.clone()),
            (LABEL_ROLE.into(), role.to_string()),
        ])
    }

    fn volume_sources(&self, task: &DesiredTask) -> BTreeMap<String, (String, bool)> {
        // name → (bind source, is a Docker volume Berth manages for this task)
        let mut out = BTreeMap::new();
        let tid = task_id(&task.task_arn);
        for v in task.task_definition.volumes.as_deref().unwrap_or_default() {
            let Some(name) = v.name.clone() else { continue };
            let source = if let Some(path) = v.host.as_ref().and_then(|h| h.source_path.clone()) {
                (path, false)
            } else if let Some(dv) = &v.docker_volume_configuration
                && dv.scope.as_ref().map(ecs::Scope::as_str) == Some("shared")
            {
                (name.clone(), false)
            } else {
                (format!("berth-{tid}-{name}"), true)
            };
            out.insert(name, source);
        }
        out
    }

    async fn create_volumes(
        &self,
        task: &DesiredTask,
    ) -> Result<BTreeMap<String, String>, StartError> {
        let sources = self.volume_sources(task);
        for v in task.task_definition.volumes.as_deref().unwrap_or_default() {
            let Some(name) = v.name.as_deref() else {
                continue;
            };
            let Some((source, task_scoped)) = sources.get(name) else {
                continue;
            };
            if v.host
                .as_ref()
                .and_then(|h| h.source_path.as_ref())
                .is_some()
            {
                continue;
            }
            let dv = v.docker_volume_configuration.clone().unwrap_or_default();
            if !*task_scoped {
                // Shared: use it if it exists; create it only with autoprovision.
                if self.docker.inspect_volume(source).await.is_ok() {
                    continue;
                }
                if !dv.autoprovision.unwrap_or(false) {
                    return Err(StartError::ResourceInitialization(format!(
                        "the shared volume {source} does not exist and autoprovision is false"
                    )));
                }
            }
            let mut labels: HashMap<String, String> =
                dv.labels.clone().unwrap_or_default().into_iter().collect();
            if *task_scoped {
                labels.insert(LABEL_TASK_ARN.into(), task.task_arn.clone());
                labels.insert(LABEL_AGENT.into(), self.config.agent_id.clone());
            }
            let request = VolumeCreateRequest {
                name: Some(source.clone()),
                driver: dv.driver.clone(),
                driver_opts: dv.driver_opts.clone().map(|o| o.into_iter().collect()),
                labels: Some(labels),
                ..Default::default()
            };
            self.docker.create_volume(request).await.map_err(|e| {
                StartError::ResourceInitialization(format!(
                    "cannot create the volume {source}: {}",
                    daemon_message(&e)
                ))
            })?;
        }
        Ok(sources.into_iter().map(|(k, (s, _))| (k, s)).collect())
    }

    fn tasks(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<PreparedTask>>> {
        self.tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Pull the task's images, create its volumes and (awsvpc) its network namespace — or,
    /// when a previous agent run already created containers of the task, find them (and its
    /// pause container) to re-adopt. Returns, per container, whether it already exists.
    pub async fn prepare(
        &self,
        task: &DesiredTask,
        defs: &[ContainerDefinition],
    ) -> Result<Vec<bool>, StartError> {
        let mode = task
            .task_definition
            .network_mode
            .clone()
            .unwrap_or(NetworkMode::Bridge);
        let found = self.list(Some(&task.task_arn)).await;
        let label = |c: &bollard::models::ContainerSummary, k: &str| {
            c.labels.as_ref().and_then(|l| l.get(k)).cloned()
        };
        let mut recovered = HashMap::new();
        let mut pause_id = None;
        for c in &found {
            let Some(id) = c.id.clone() else { continue };
            match label(c, LABEL_ROLE).as_deref() {
                Some("pause") => pause_id = Some(id),
                Some("container") => {
                    if let Some(name) = label(c, LABEL_CONTAINER_NAME) {
                        recovered.insert(name, id);
                    }
                }
                _ => {}
            }
        }
        let existing: Vec<bool> = defs
            .iter()
            .map(|d| recovered.contains_key(d.name.as_deref().unwrap_or_default()))
            .collect();
        // Each image once (per set of credentials: `repositoryCredentials` are per container).
        let mut images: Vec<(&str, Option<RegistryCredentials>)> = Vec::new();
        for (c, exists) in defs.iter().zip(&existing) {
            if *exists {
                continue;
            }
            let creds = super::registry_credentials(task, c)?;
            if let Some(image) = c.image.as_deref()
                && !images.iter().any(|(i, k)| *i == image && *k == creds)
            {
                images.push((image, creds));
            }
        }
        for (image, creds) in images {
            self.ensure_image(image, creds.as_ref()).await?;
        }
        let volumes = if found.is_empty() {
            self.create_volumes(task).await?
        } else {
            self.volume_sources(task)
                .into_iter()
                .map(|(k, (s, _))| (k, s))
                .collect()
        };
        let cgroup_parent = self.task_cgroup(task);
        let pause = match (&mode, pause_id) {
            (NetworkMode::Awsvpc, Some(id)) => {
                tracing::info!(task = %task.task_arn, id = %id, "re-adopted the task's pause container");
                Some(id)
            }
            (NetworkMode::Awsvpc, None) => Some(
                self.start_pause(task, defs, cgroup_parent.as_deref())
                    .await?,
            ),
            _ => None,
        };
        // The published ports and the address come from the pause container's inspection.
        let (pause, eni) = match pause {
            Some(id) => match self.docker.inspect_container(&id, None).await {
                Ok(info) => {
                    let eni = eni_from(&info, &self.config.network);
                    let bindings =
                        bindings_from(info.network_settings.and_then(|n| n.ports).as_ref());
                    (Some((id, bindings)), eni)
                }
                Err(_) => (Some((id, vec![])), None),
            },
            None => (None, None),
        };
        let prepared = PreparedTask {
            task: task.clone(),
            defs: defs.to_vec(),
            mode,
            pause,
            eni,
            volumes,
            cgroup_parent,
            created: Mutex::new(recovered.clone()),
            recovered,
        };
        self.tasks()
            .insert(task_id(&task.task_arn).to_string(), Arc::new(prepared));
        Ok(existing)
    }

    async fn start_pause(
        &self,
        task: &DesiredTask,
        defs: &[ContainerDefinition],
        cgroup_parent: Option<&str>,
    ) -> Result<String, StartError> {
        self.ensure_pause_image().await?;
        let mut last = None;
        // Twice: the shared network may be removed between our check and the start.
        for _ in 0..2 {
            self.ensure_network().await?;
            match self.try_start_pause(task, defs, cgroup_parent).await {
                Ok(r) => return Ok(r),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| StartError::ResourceInitialization("pause".into())))
    }

    async fn try_start_pause(
        &self,
        task: &DesiredTask,
        defs: &[ContainerDefinition],
        cgroup_parent: Option<&str>,
    ) -> Result<String, StartError> {
        let mut ports: PortMap = HashMap::new();
        for c in defs {
            for pm in c.port_mappings.as_deref().unwrap_or_default() {
                let Some(cp) = pm.container_port else {
                    continue;
                };
                let proto = pm
                    .protocol
                    .as_ref()
                    .map_or("tcp", ecs::TransportProtocol::as_str);
                let hp = pm.host_port.filter(|p| *p > 0).unwrap_or(cp);
                ports.insert(
                    format!("{cp}/{proto}"),
                    Some(vec![PortBinding {
                        host_ip: None,
                        host_port: Some(hp.to_string()),
                    }]),
                );
            }
        }
        let first = defs.first();
        let body = ContainerCreateBody {
            image: Some(PAUSE_IMAGE.into()),
            entrypoint: Some(vec!["/pause".into()]),
            labels: Some(self.labels(task, PAUSE_CONTAINER_NAME, "pause")),
            exposed_ports: Some(ports.keys().cloned().collect()),
            host_config: Some(HostConfig {
                network_mode: Some(self.config.network.clone()),
                port_bindings: Some(ports),
                dns: first.and_then(|c| c.dns_servers.clone()),
                dns_search: first.and_then(|c| c.dns_search_domains.clone()),
                extra_hosts: first.and_then(extra_hosts),
                cgroup_parent: cgroup_parent.map(str::to_string),
                ..Default::default()
            }),
            ..Default::default()
        };
        let name = docker_name(task, "internalecspause");
        let id = self.create_and_start(&name, body).await?;
        self.reapply_limits(task, cgroup_parent.is_some());
        Ok(id)
    }

    async fn create_and_start(
        &self,
        name: &str,
        body: ContainerCreateBody,
    ) -> Result<String, StartError> {
        let options = CreateContainerOptionsBuilder::default().name(name).build();
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| StartError::CannotCreate(daemon_message(&e)))?;
        if let Err(e) = self.docker.start_container(&created.id, None).await {
            // Not started: nothing to keep (a half-made network namespace would hold ports).
            let _ = self
                .docker
                .remove_container(
                    &created.id,
                    Some(RemoveContainerOptionsBuilder::default().force(true).build()),
                )
                .await;
            return Err(StartError::CannotStart(daemon_message(&e)));
        }
        Ok(created.id)
    }

    /// Create and start a container of a prepared task, or re-adopt the one a previous agent
    /// run created.
    pub async fn start(
        &self,
        spec: &ContainerSpec,
        output: OutputSink,
    ) -> Result<DockerContainer, StartError> {
        let p = self.tasks().get(&spec.task_id).cloned().ok_or_else(|| {
            StartError::CannotCreate(format!("task {} is not prepared", spec.task_id))
        })?;
        let name = spec.container_name.clone();
        let def = p
            .defs
            .iter()
            .find(|d| d.name.as_deref() == Some(name.as_str()))
            .ok_or_else(|| StartError::CannotCreate(format!("no container {name} in the task")))?;
        if let Some(id) = p.recovered.get(&name) {
            tracing::info!(task = %p.task.task_arn, container = %name, id = %id, "re-adopted a container");
            let bindings = self.bindings_of(&p, def, id).await;
            let since = now_ms() / 1000;
            let mut c = self.attach(
                id.clone(),
                bindings,
                def.health_check.is_some(),
                since,
                output,
            );
            c.eni = p.eni.clone();
            return Ok(c);
        }
        let body = {
            let created = p.created();
            create_body(&p, def, &created, self.labels(&p.task, &name, "container"))?
        };
        let id = self
            .create_and_start(&docker_name(&p.task, &name), body)
            .await?;
        self.reapply_limits(&p.task, p.cgroup_parent.is_some());
        p.created().insert(name, id.clone());
        let bindings = self.bindings_of(&p, def, &id).await;
        let mut c = self.attach(id, bindings, def.health_check.is_some(), 0, output);
        c.eni = p.eni.clone();
        Ok(c)
    }

    async fn bindings_of(
        &self,
        p: &PreparedTask,
        def: &ContainerDefinition,
        id: &str,
    ) -> Vec<NetworkBinding> {
        let own_ports: Vec<i32> = def
            .port_mappings
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter_map(|pm| pm.container_port)
            .collect();
        match p.mode {
            NetworkMode::Awsvpc => p
                .pause
                .as_ref()
                .map(|(_, b)| {
                    b.iter()
                        .filter(|b| b.container_port.is_some_and(|cp| own_ports.contains(&cp)))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default(),
            NetworkMode::Host => def
                .port_mappings
                .as_deref()
                .unwrap_or_default()
                .iter()
                .filter_map(|pm| {
                    let cp = pm.container_port?;
                    Some(NetworkBinding {
                        bind_ip: Some("0.0.0.0".into()),
                        container_port: Some(cp),
                        host_port: Some(pm.host_port.filter(|p| *p > 0).unwrap_or(cp)),
                        protocol: Some(pm.protocol.clone().unwrap_or(ecs::TransportProtocol::Tcp)),
                        ..Default::default()
                    })
                })
                .collect(),
            NetworkMode::Bridge => match self.docker.inspect_container(id, None).await {
                Ok(info) => bindings_from(info.network_settings.and_then(|n| n.ports).as_ref()),
                Err(_) => vec![],
            },
            _ => vec![],
        }
    }

    /// Follow a container (logs since `since_secs`, exit, OOM) from now on.
    fn attach(
        &self,
        id: String,
        bindings: Vec<NetworkBinding>,
        has_health: bool,
        since_secs: i64,
        output: OutputSink,
    ) -> DockerContainer {
        let (exit_tx, exit_rx) = watch::channel(None);
        tokio::spawn(supervise(
            self.docker.clone(),
            id.clone(),
            since_secs,
            output,
            exit_tx,
        ));
        DockerContainer {
            docker: self.docker.clone(),
            id,
            bindings,
            eni: None,
            exit: exit_rx,
            has_health,
        }
    }

    /// Under the systemd driver, systemd sets the task's slice up when the first container
    /// starts in it and may reset its limit files: write them again.
    fn reapply_limits(&self, task: &DesiredTask, has_cgroup: bool) {
        if let Some(cg) = self.cgroups()
            && has_cgroup
            && cg.driver() == CgroupDriver::Systemd
        {
            let (cpu, memory) = task_limits(task);
            if let Err(e) = cg.apply(task_id(&task.task_arn), TaskLimits { cpu, memory }) {
                tracing::warn!(task = %task.task_arn, error = %e, "cannot write the task's limits on its slice");
            }
        }
    }

    /// After the task's containers exited: stop its pause container, remove the task's cgroup
    /// (now empty), and remove the task's containers and task-scoped volumes after the
    /// cleanup delay.
    pub async fn release(&self, task_arn: &str) {
        let p = self.tasks().remove(task_id(task_arn));
        if let Some((pause, _)) = p.as_ref().and_then(|p| p.pause.as_ref()) {
            let options = StopContainerOptionsBuilder::default().t(0).build();
            let _ = self.docker.stop_container(pause, Some(options)).await;
        }
        if let Some(cg) = self.cgroups() {
            cg.remove(task_id(task_arn));
        }
        self.schedule_cleanup(task_arn.to_string(), self.config.cleanup_delay);
    }

    fn schedule_cleanup(&self, task_arn: String, delay: Duration) {
        let rt = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            rt.remove_task(&task_arn).await;
        });
    }

    /// Remove every container and task-scoped volume of a task (now).
    pub async fn remove_task(&self, task_arn: &str) {
        for c in self.list(Some(task_arn)).await {
            if let Some(id) = c.id {
                let options = RemoveContainerOptionsBuilder::default().force(true).build();
                let _ = self.docker.remove_container(&id, Some(options)).await;
            }
        }
        let filters = HashMap::from([(
            "label".to_string(),
            vec![
                format!("{LABEL_TASK_ARN}={task_arn}"),
                format!("{LABEL_AGENT}={}", self.config.agent_id),
            ],
        )]);
        let options = ListVolumesOptionsBuilder::default()
            .filters(&filters)
            .build();
        if let Ok(list) = self.docker.list_volumes(Some(options)).await {
            for v in list.volumes.unwrap_or_default() {
                let options = RemoveVolumeOptionsBuilder::default().force(true).build();
                let _ = self.docker.remove_volume(&v.name, Some(options)).await;
            }
        }
        if let Some(cg) = self.cgroups() {
            cg.remove(task_id(task_arn));
        }
        tracing::debug!(task = %task_arn, "removed the task's containers");
    }

    /// This agent's containers (all states), of one task or of all.
    async fn list(&self, task_arn: Option<&str>) -> Vec<bollard::models::ContainerSummary> {
        let mut labels = vec![format!("{LABEL_AGENT}={}", self.config.agent_id)];
        if let Some(arn) = task_arn {
            labels.push(format!("{LABEL_TASK_ARN}={arn}"));
        }
        let filters = HashMap::from([("label".to_string(), labels)]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        self.docker
            .list_containers(Some(options))
            .await
            .unwrap_or_default()
    }

    /// At start-up: force-remove running containers of this agent whose task is not in `keep`
    /// (a previous run's orphans) and schedule the removal of exited ones after the cleanup
    /// delay. Returns how many running containers were removed.
    pub async fn reap_orphans(&self, keep: &[String]) -> usize {
        let mut reaped = 0;
        let mut later = std::collections::BTreeSet::new();
        for c in self.list(None).await {
            let arn = c
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_TASK_ARN))
                .cloned()
                .unwrap_or_default();
            if keep.contains(&arn) {
                continue;
            }
            let running = matches!(
                c.state,
                Some(bollard::models::ContainerSummaryStateEnum::RUNNING)
                    | Some(bollard::models::ContainerSummaryStateEnum::RESTARTING)
                    | Some(bollard::models::ContainerSummaryStateEnum::PAUSED)
            );
            if running {
                if let Some(id) = &c.id {
                    tracing::warn!(task = %arn, id = %id, "removing a container no task claims");
                    let options = RemoveContainerOptionsBuilder::default().force(true).build();
                    let _ = self.docker.remove_container(id, Some(options)).await;
                    reaped += 1;
                }
            } else {
                later.insert(arn);
            }
        }
        for arn in later {
            self.schedule_cleanup(arn, self.config.cleanup_delay);
        }
        reaped
    }
}

impl DockerContainer {
    /// The Docker container id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Host ports bound to it.
    pub fn network_bindings(&self) -> &[NetworkBinding] {
        &self.bindings
    }

    /// Its task's interface (`awsvpc`).
    pub fn eni(&self) -> Option<&TaskEni> {
        self.eni.as_ref()
    }

    /// Wait for its exit (cancel-safe).
    pub async fn wait(&self) -> ContainerExit {
        let mut exit = self.exit.clone();
        match exit.wait_for(Option::is_some).await {
            Ok(e) => e.clone().unwrap_or_default(),
            Err(_) => ContainerExit::default(),
        }
    }

    /// `docker stop` with `timeout` (the image's stop signal, then SIGKILL), then its exit.
    pub async fn stop(&self, timeout: Duration) -> ContainerExit {
        if let Some(e) = self.exit.borrow().clone() {
            return e;
        }
        let t = i32::try_from(timeout.as_secs()).unwrap_or(i32::MAX);
        let options = StopContainerOptionsBuilder::default().t(t).build();
        if let Err(e) = self.docker.stop_container(&self.id, Some(options)).await
            && status_of(&e) != Some(304)
        {
            tracing::warn!(id = %self.id, error = %e, "docker stop failed; killing");
            let _ = self
                .docker
                .kill_container(
                    &self.id,
                    None::<bollard::query_parameters::KillContainerOptions>,
                )
                .await;
        }
        self.wait().await
    }

    /// Follow the engine's health verdict (the container's health check runs in Docker).
    pub fn watch_health(
        &self,
        on_change: impl Fn(Health) -> bool + Send + 'static,
    ) -> Option<tokio::task::JoinHandle<()>> {
        if !self.has_health {
            return None;
        }
        let docker = self.docker.clone();
        let id = self.id.clone();
        let exit = self.exit.clone();
        Some(tokio::spawn(async move {
            let mut last = Health::Unknown;
            while exit.borrow().is_none() {
                if let Ok(info) = docker.inspect_container(&id, None).await {
                    let h = match info.state.and_then(|s| s.health).and_then(|h| h.status) {
                        Some(HealthStatusEnum::HEALTHY) => Health::Healthy,
                        Some(HealthStatusEnum::UNHEALTHY) => Health::Unhealthy,
                        _ => Health::Unknown,
                    };
                    if h != last {
                        last = h;
                        if !on_change(h) {
                            return;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }))
    }
}

/// Follows one container: forwards its log stream, waits for its exit, publishes the exit
/// (with ECS's OOM reason) once the output is drained.
async fn supervise(
    docker: Docker,
    id: String,
    since_secs: i64,
    output: OutputSink,
    exit: watch::Sender<Option<ContainerExit>>,
) {
    let counters = Arc::new(OutputCounters::default());
    let grace = output.drain_grace();
    let exited = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut logs = tokio::spawn(follow_logs(
        docker.clone(),
        id.clone(),
        since_secs,
        output,
        counters.clone(),
        exited.clone(),
    ));
    let options = WaitContainerOptionsBuilder::default()
        .condition("not-running")
        .build();
    let mut wait = docker.wait_container(&id, Some(options));
    // Ok or a wait error (a non-zero exit) both mean it stopped; confirm with inspect.
    let _ = wait.next().await;
    let result = loop {
        match docker.inspect_container(&id, None).await {
            Ok(info) => {
                let state = info.state.unwrap_or_default();
                if state.running == Some(true) {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                let oom = state.oom_killed == Some(true);
                break ContainerExit {
                    exit_code: state.exit_code.and_then(|c| i32::try_from(c).ok()),
                    reason: oom.then(|| OOM_REASON.to_string()),
                };
            }
            Err(e) if status_of(&e) == Some(404) => {
                break ContainerExit {
                    exit_code: None,
                    reason: Some(format!(
                        "CannotInspectContainerError: the container {id} was removed"
                    )),
                };
            }
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    };
    exited.store(true, std::sync::atomic::Ordering::Relaxed);
    if !wait_reader(&mut logs, &counters, grace).await {
        tracing::warn!(id = %id, "the container's log stream is still open (or its lines not taken) after it exited; abandoning it");
    }
    let dropped = counters.dropped.load(std::sync::atomic::Ordering::Relaxed);
    if dropped > 0 {
        tracing::warn!(id = %id, dropped, "output lines dropped (non-blocking mode) because the agent fell behind");
    }
    tracing::debug!(id = %id, ?result, "container exited");
    exit.send_replace(Some(result));
}

/// How long a followed log stream may stay quiet after the container exited before the
/// catch-up read takes over.
const LOG_QUIET_AFTER_EXIT: Duration = Duration::from_secs(1);

/// A log entry's engine timestamp (`timestamps=true`): Unix seconds and nanoseconds, ordered.
type Stamp = (i64, u32);

/// Split `2026-11-30T04:56:23.087350123Z message` into its timestamp and the message.
fn split_stamp(frame: &[u8]) -> (Option<Stamp>, &[u8]) {
    let Some(space) = frame.iter().position(|b| *b == b' ') else {
        return (None, frame);
    };
    match std::str::from_utf8(&frame[..space])
        .ok()
        .and_then(parse_rfc3339_utc)
    {
        Some(stamp) => (Some(stamp), &frame[space + 1..]),
        None => (None, frame),
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z` (what the engine writes) to Unix seconds and nanos.
fn parse_rfc3339_utc(s: &str) -> Option<Stamp> {
    let s = s.strip_suffix('Z')?;
    let (whole, fraction) = s.split_once('.').unwrap_or((s, ""));
    let b = whole.as_bytes();
    if b.len() != 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| whole.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if fraction.len() > 9 || !fraction.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let nanos = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<9}").parse::<u32>().ok()?
    };
    // Days from 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (mo + if mo > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60 + sec, nanos))
}

/// Forwards the container's log stream line by line. The engine's follow mode can lose or
/// repeat entries when its log file rotates under a slow reader (Docker 20.10's json-file with
/// `max-size`, a blocking awslogs sink), so entries carry the engine's timestamps: one not
/// newer than the last forwarded is a repeat and skipped, and once the container has exited
/// and the followed stream is quiet (or ended), a plain read since the last forwarded entry
/// picks up what the follower missed (what the engine still keeps).
async fn follow_logs(
    docker: Docker,
    id: String,
    since_secs: i64,
    output: OutputSink,
    counters: Arc<OutputCounters>,
    exited: Arc<std::sync::atomic::AtomicBool>,
) {
    // A blocking sink stops this loop, so the engine's stream is read no faster than the
    // lines are shipped (the engine keeps the rest in its own log); a non-blocking one drops
    // and counts what does not fit, as the process runtime does.
    let mut out = LineSplitter::new(MAX_LINE_BYTES);
    let mut err = LineSplitter::new(MAX_LINE_BYTES);
    let mut out_fw = Forwarder::new(output.clone(), Stream::Stdout, counters.clone());
    let mut err_fw = Forwarder::new(output, Stream::Stderr, counters.clone());
    let mut last: Option<Stamp> = None;
    for follow in [true, false] {
        let since = last.map_or(since_secs, |(secs, _)| secs);
        let options = LogsOptionsBuilder::default()
            .follow(follow)
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .since(i32::try_from(since).unwrap_or(0))
            .build();
        let mut stream = docker.logs(&id, Some(options));
        loop {
            let item = if follow {
                match tokio::time::timeout(LOG_QUIET_AFTER_EXIT, stream.next()).await {
                    Ok(item) => item,
                    Err(_) if exited.load(std::sync::atomic::Ordering::Relaxed) => break,
                    Err(_) => continue,
                }
            } else {
                stream.next().await
            };
            let Some(item) = item else { break };
            counters
                .progress
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let now = now_ms();
            let (is_err, frame) = match item {
                Ok(bollard::container::LogOutput::StdErr { message }) => (true, message),
                Ok(
                    bollard::container::LogOutput::StdOut { message }
                    | bollard::container::LogOutput::Console { message },
                ) => (false, message),
                Ok(_) => continue,
                Err(e) => {
                    tracing::debug!(id = %id, error = %e, "container log stream ended");
                    break;
                }
            };
            let (stamp, message) = split_stamp(&frame);
            if let (Some(s), Some(l)) = (stamp, last)
                && s <= l
            {
                continue;
            }
            last = stamp.or(last);
            if is_err {
                err.push(message, |l| err_fw.lines.push((now, l)));
                err_fw.flush().await;
            } else {
                out.push(message, |l| out_fw.lines.push((now, l)));
                out_fw.flush().await;
            }
        }
    }
    let now = now_ms();
    out.finish(|l| out_fw.lines.push((now, l)));
    out_fw.flush().await;
    err.finish(|l| err_fw.lines.push((now, l)));
    err_fw.flush().await;
}

/// `ecs-<family>-<revision>-<container>-<task id>`, as ECS's agent names containers.
fn docker_name(task: &DesiredTask, container: &str) -> String {
    let td = &task.task_definition;
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    format!(
        "ecs-{}-{}-{}-{}",
        clean(td.family.as_deref().unwrap_or("task")),
        td.revision.unwrap_or_default(),
        clean(container),
        task_id(&task.task_arn)
    )
}

/// `nginx` → `nginx:latest`; references with a tag or digest are kept.
pub fn normalize_image(image: &str) -> String {
    if image.contains('@') {
        return image.to_string();
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

/// The registry an image reference names, by Docker's rule: the first path component when it
/// has a `.` or a `:` or is `localhost`, else Docker Hub (as `docker login` records it).
pub fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first,
        _ => "https://index.docker.io/v1/",
    }
}

fn extra_hosts(c: &ContainerDefinition) -> Option<Vec<String>> {
    c.extra_hosts.as_ref().map(|hosts| {
        hosts
            .iter()
            .map(|h| {
                format!(
                    "{}:{}",
                    h.hostname.as_deref().unwrap_or_default(),
                    h.ip_address.as_deref().unwrap_or_default()
                )
            })
            .collect()
    })
}

fn bindings_from(ports: Option<&PortMap>) -> Vec<NetworkBinding> {
    let mut out = Vec::new();
    for (key, binds) in ports.into_iter().flatten() {
        let (cp, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
        let Ok(cp) = cp.parse::<i32>() else { continue };
        for b in binds.iter().flatten() {
            let Some(hp) = b.host_port.as_deref().and_then(|p| p.parse::<i32>().ok()) else {
                continue;
            };
            out.push(NetworkBinding {
                bind_ip: Some(
                    b.host_ip
                        .clone()
                        .filter(|ip| !ip.is_empty())
                        .unwrap_or_else(|| "0.0.0.0".into()),
                ),
                container_port: Some(cp),
                host_port: Some(hp),
                protocol: Some(ecs::TransportProtocol::parse(proto)),
                ..Default::default()
            });
        }
    }
    out.sort_by(|a, b| {
        (a.container_port, a.bind_ip.clone()).cmp(&(b.container_port, b.bind_ip.clone()))
    });
    out
}

/// Task-level CPU units and memory MiB (after overrides), when the task sets them.
fn task_limits(task: &DesiredTask) -> (Option<u32>, Option<u32>) {
    let td = &task.task_definition;
    let cpu = task
        .overrides
        .cpu
        .as_deref()
        .or(td.cpu.as_deref())
        .and_then(|c| berth_core::task_definition::parse_cpu(c).ok());
    let memory = task
        .overrides
        .memory
        .as_deref()
        .or(td.memory.as_deref())
        .and_then(|m| berth_core::task_definition::parse_memory(m).ok());
    (cpu, memory)
}

/// A container's own memory limit (MiB) and CPU cap (`NanoCpus`). With the task's cgroup
/// (`in_task_cgroup`) the task's limits apply to the sum there, and a container has only its
/// own `memory`; without it, the task's size caps each container (the sum is not enforced).
fn container_limits(
    container_memory: Option<i32>,
    task_cpu: Option<u32>,
    task_memory: Option<u32>,
    in_task_cgroup: bool,
) -> (Option<i64>, Option<i64>) {
    if in_task_cgroup {
        return (container_memory.map(i64::from), None);
    }
    let memory = match (container_memory.map(i64::from), task_memory.map(i64::from)) {
        (Some(m), Some(t)) => Some(m.min(t)),
        (m, t) => m.or(t),
    };
    let nano_cpus = task_cpu.map(|cpu| i64::from(cpu) * 1_000_000_000 / 1024);
    (memory, nano_cpus)
}

/// The engine's create request for one container of a prepared task. Pure.
fn create_body(
    p: &PreparedTask,
    c: &ContainerDefinition,
    created: &HashMap<String, String>,
    mut labels: HashMap<String, String>,
) -> Result<ContainerCreateBody, StartError> {
    let name = c.name.clone().unwrap_or_default();
    let env = container_env(&p.task, c).map_err(StartError::CannotCreate)?;
    let (task_cpu, task_mem) = task_limits(&p.task);
    for (k, v) in c.docker_labels.clone().unwrap_or_default() {
        labels.entry(k).or_insert(v);
    }
    let mut host = HostConfig {
        cpu_shares: Some(i64::from(c.cpu.unwrap_or(0)).clamp(2, 262_144)),
        cgroup_parent: p.cgroup_parent.clone(),
        ..Default::default()
    };
    let (memory, nano_cpus) =
        container_limits(c.memory, task_cpu, task_mem, p.cgroup_parent.is_some());
    host.memory = memory.map(|m| m * MIB);
    host.memory_reservation = c.memory_reservation.map(|m| i64::from(m) * MIB);
    host.nano_cpus = nano_cpus;
    if let Some(lp) = &c.linux_parameters {
        if let (Some(swap), Some(m)) = (lp.max_swap, memory) {
            host.memory_swap = Some((m + i64::from(swap.max(0))) * MIB);
        }
        host.memory_swappiness = lp.swappiness.map(i64::from);
        host.init = lp.init_process_enabled;
        if let Some(caps) = &lp.capabilities {
            host.cap_add = caps.add.clone();
            host.cap_drop = caps.drop.clone();
        }
        host.shm_size = lp.shared_memory_size.map(|m| i64::from(m) * MIB);
        if let Some(tmpfs) = &lp.tmpfs {
            host.tmpfs = Some(
                tmpfs
                    .iter()
                    .map(|t| {
                        let mut opts = vec![format!("size={}m", t.size.unwrap_or(0))];
                        opts.extend(t.mount_options.clone().unwrap_or_default());
                        (t.container_path.clone().unwrap_or_default(), opts.join(","))
                    })
                    .collect(),
            );
        }
        if let Some(devices) = &lp.devices {
            host.devices = Some(
                devices
                    .iter()
                    .map(|d| {
                        let perms: String = match &d.permissions {
                            Some(p) if !p.is_empty() => p
                                .iter()
                                .map(|x| match x.as_str() {
                                    "read" => 'r',
                                    "write" => 'w',
                                    _ => 'm',
                                })
                                .collect(),
                            _ => "rwm".into(),
                        };
                        DeviceMapping {
                            path_on_host: d.host_path.clone(),
                            path_in_container: d
                                .container_path
                                .clone()
                                .or_else(|| d.host_path.clone()),
                            cgroup_permissions: Some(perms),
                        }
                    })
                    .collect(),
            );
        }
    }
    host.ulimits = c.ulimits.as_ref().map(|u| {
        u.iter()
            .map(|u| ResourcesUlimits {
                name: u.name.as_ref().map(|n| n.as_str().to_string()),
                soft: u.soft_limit.map(i64::from),
                hard: u.hard_limit.map(i64::from),
            })
            .collect()
    });
    host.readonly_rootfs = c.readonly_root_filesystem;
    host.privileged = c.privileged;
    host.security_opt = c.docker_security_options.clone();
    if let Some(sysctls) = &c.system_controls {
        host.sysctls = Some(
            sysctls
                .iter()
                .filter_map(|s| Some((s.namespace.clone()?, s.value.clone().unwrap_or_default())))
                .collect(),
        );
    }
    // Volumes.
    let mut binds = Vec::new();
    for mp in c.mount_points.as_deref().unwrap_or_default() {
        let vol = mp.source_volume.as_deref().unwrap_or_default();
        let Some(source) = p.volumes.get(vol) else {
            return Err(StartError::CannotCreate(format!(
                "container {name}: mount point refers to an unknown volume {vol}"
            )));
        };
        let mut b = format!(
            "{source}:{}",
            mp.container_path.as_deref().unwrap_or_default()
        );
        if mp.read_only == Some(true) {
            b.push_str(":ro");
        }
        binds.push(b);
    }
    if !binds.is_empty() {
        host.binds = Some(binds);
    }
    let mut volumes_from = Vec::new();
    for vf in c.volumes_from.as_deref().unwrap_or_default() {
        let src = vf.source_container.as_deref().unwrap_or_default();
        let Some(id) = created.get(src) else {
            return Err(StartError::CannotCreate(format!(
                "container {name}: volumesFrom {src}, which has not been created"
            )));
        };
        volumes_from.push(if vf.read_only == Some(true) {
            format!("{id}:ro")
        } else {
            id.clone()
        });
    }
    if !volumes_from.is_empty() {
        host.volumes_from = Some(volumes_from);
    }
    if p.task
        .task_definition
        .pid_mode
        .as_ref()
        .map(ecs::PidMode::as_str)
        == Some("host")
    {
        host.pid_mode = Some("host".into());
    }
    if p.task
        .task_definition
        .ipc_mode
        .as_ref()
        .map(ecs::IpcMode::as_str)
        == Some("host")
    {
        host.ipc_mode = Some("host".into());
    }
    // Network.
    let mut exposed = Vec::new();
    let mut hostname = None;
    match &p.mode {
        NetworkMode::Awsvpc => {
            let Some((pause, _)) = &p.pause else {
                return Err(StartError::CannotCreate(
                    "awsvpc: the task has no network namespace".into(),
                ));
            };
            host.network_mode = Some(format!("container:{pause}"));
        }
        NetworkMode::Host => host.network_mode = Some("host".into()),
        NetworkMode::None => {
            host.network_mode = Some("none".into());
            hostname = c.hostname.clone();
        }
        _ => {
            host.network_mode = Some("bridge".into());
            hostname = c.hostname.clone();
            host.dns = c.dns_servers.clone();
            host.dns_search = c.dns_search_domains.clone();
            host.extra_hosts = extra_hosts(c);
            let mut ports: PortMap = HashMap::new();
            for pm in c.port_mappings.as_deref().unwrap_or_default() {
                let Some(cp) = pm.container_port else {
                    continue;
                };
                let proto = pm
                    .protocol
                    .as_ref()
                    .map_or("tcp", ecs::TransportProtocol::as_str);
                let key = format!("{cp}/{proto}");
                exposed.push(key.clone());
                ports.insert(
                    key,
                    Some(vec![PortBinding {
                        host_ip: None,
                        // Empty: the engine picks a free ephemeral port (hostPort 0 / absent).
                        host_port: Some(
                            pm.host_port
                                .filter(|h| *h > 0)
                                .map(|h| h.to_string())
                                .unwrap_or_default(),
                        ),
                    }]),
                );
            }
            host.port_bindings = Some(ports);
        }
    }
    if c.disable_networking == Some(true) {
        host.network_mode = Some("none".into());
    }
    let healthcheck = c.health_check.as_ref().map(|hc| {
        let ns =
            |s: Option<i32>, default: i32| i64::from(s.unwrap_or(default).max(0)) * 1_000_000_000;
        HealthConfig {
            test: hc.command.clone(),
            interval: Some(ns(hc.interval, 30)),
            timeout: Some(ns(hc.timeout, 5)),
            retries: Some(i64::from(hc.retries.unwrap_or(3))),
            start_period: Some(ns(hc.start_period, 0)),
            ..Default::default()
        }
    });
    Ok(ContainerCreateBody {
        image: c.image.as_deref().map(normalize_image),
        entrypoint: c.entry_point.clone(),
        cmd: c.command.clone(),
        env: Some(env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()),
        working_dir: c.working_directory.clone(),
        user: c.user.clone(),
        hostname,
        labels: Some(labels),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        healthcheck,
        stop_timeout: c.stop_timeout.map(i64::from),
        tty: c.pseudo_terminal,
        open_stdin: c.interactive,
        host_config: Some(host),
        ..Default::default()
    })
}

// ---------------------------------------------------------------------- the pause image

/// A static executable that sleeps until it is killed (`pause(2)` / `ppoll(2)` in a loop),
/// for the machine's architecture: the pause container's only file.
fn pause_elf(arch: &str) -> Option<Vec<u8>> {
    let (machine, align, code): (u16, u64, Vec<u8>) = match arch {
        // mov eax, 34 (pause); syscall; jmp back
        "x86_64" => (62, 0x1000, vec![0xb8, 34, 0, 0, 0, 0x0f, 0x05, 0xeb, 0xf7]),
        // mov x0..x3, #0; mov x8, #73 (ppoll); svc #0; b back
        "aarch64" => {
            let words: [u32; 7] = [
                0xD280_0000,
                0xD280_0001,
                0xD280_0002,
                0xD280_0003,
                0xD280_0928,
                0xD400_0001,
                0x17FF_FFFA,
            ];
            (
                183,
                0x10000,
                words.iter().flat_map(|w| w.to_le_bytes()).collect(),
            )
        }
        _ => return None,
    };
    let base: u64 = 0x40_0000;
    let header_len: u64 = 64 + 56;
    let total = header_len + code.len() as u64;
    let mut f = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    f.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    f.extend_from_slice(&machine.to_le_bytes());
    f.extend_from_slice(&1u32.to_le_bytes());
    f.extend_from_slice(&(base + header_len).to_le_bytes()); // entry
    f.extend_from_slice(&64u64.to_le_bytes()); // phoff
    f.extend_from_slice(&0u64.to_le_bytes()); // shoff
    f.extend_from_slice(&0u32.to_le_bytes()); // flags
    f.extend_from_slice(&64u16.to_le_bytes()); // ehsize
    f.extend_from_slice(&56u16.to_le_bytes()); // phentsize
    f.extend_from_slice(&1u16.to_le_bytes()); // phnum
    f.extend_from_slice(&64u16.to_le_bytes()); // shentsize
    f.extend_from_slice(&0u16.to_le_bytes()); // shnum
    f.extend_from_slice(&0u16.to_le_bytes()); // shstrndx
    f.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    f.extend_from_slice(&5u32.to_le_bytes()); // R+X
    f.extend_from_slice(&0u64.to_le_bytes()); // offset
    f.extend_from_slice(&base.to_le_bytes()); // vaddr
    f.extend_from_slice(&base.to_le_bytes()); // paddr
    f.extend_from_slice(&total.to_le_bytes()); // filesz
    f.extend_from_slice(&total.to_le_bytes()); // memsz
    f.extend_from_slice(&align.to_le_bytes());
    f.extend_from_slice(&code);
    Some(f)
}

/// A tar archive holding one regular file.
fn tar_one_file(name: &str, data: &[u8], mode: u32) -> Vec<u8> {
    let mut h = [0u8; 512];
    let put = |h: &mut [u8; 512], at: usize, s: &[u8]| h[at..at + s.len()].copy_from_slice(s);
    put(&mut h, 0, name.as_bytes());
    put(&mut h, 100, format!("{mode:07o}\0").as_bytes());
    put(&mut h, 108, b"0000000\0");
    put(&mut h, 116, b"0000000\0");
    put(&mut h, 124, format!("{:011o}\0", data.len()).as_bytes());
    put(&mut h, 136, b"00000000000\0");
    put(&mut h, 148, b"        ");
    h[156] = b'0';
    put(&mut h, 257, b"ustar\0");
    put(&mut h, 263, b"00");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    put(&mut h, 148, format!("{sum:06o}\0 ").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.extend_from_slice(&[0u8; 1024]);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn task_limits_cap_each_container_only_without_the_task_cgroup() {
        // In the task's cgroup: the container's own memory only, no CPU cap.
        assert_eq!(
            container_limits(Some(32), Some(512), Some(64), true),
            (Some(32), None)
        );
        assert_eq!(
            container_limits(None, Some(512), Some(64), true),
            (None, None)
        );
        // Without it: the task's size caps each container.
        assert_eq!(
            container_limits(Some(128), Some(512), Some(64), false),
            (Some(64), Some(500_000_000))
        );
        assert_eq!(
            container_limits(None, None, Some(64), false),
            (Some(64), None)
        );
        assert_eq!(
            container_limits(Some(16), None, None, false),
            (Some(16), None)
        );
        assert_eq!(container_limits(None, None, None, false), (None, None));
    }

    #[test]
    fn engine_timestamps_parse_and_order() {
        assert_eq!(parse_rfc3339_utc("1970-01-01T00:00:00Z"), Some((0, 0)));
        assert_eq!(
            parse_rfc3339_utc("2026-11-30T04:56:23.087350123Z"),
            Some((1_796_014_583, 87_350_123))
        );
        // Trailing zeros trimmed by the engine still order right.
        let a = parse_rfc3339_utc("2024-02-29T23:59:59.1Z").unwrap();
        let b = parse_rfc3339_utc("2024-02-29T23:59:59.09Z").unwrap();
        assert_eq!(a, (1_709_251_199, 100_000_000));
        assert!(b < a);
        for bad in [
            "",
            "x",
            "2024-02-29 23:59:59Z",
            "2024-02-29T23:59:59.1234567891Z",
            "2024-02-29T23:59:59",
        ] {
            assert_eq!(parse_rfc3339_utc(bad), None, "{bad}");
        }
        let (stamp, msg) = split_stamp(b"2024-02-29T23:59:59.5Z hello world");
        assert_eq!(stamp, Some((1_709_251_199, 500_000_000)));
        assert_eq!(msg, b"hello world");
        assert_eq!(split_stamp(b"no-stamp here"), (None, &b"no-stamp here"[..]));
    }

    #[test]
    fn images_get_latest_unless_tagged() {
        assert_eq!(normalize_image("nginx"), "nginx:latest");
        assert_eq!(normalize_image("nginx:1.25"), "nginx:1.25");
        assert_eq!(
            normalize_image("localhost:5000/app"),
            "localhost:5000/app:latest"
        );
        assert_eq!(normalize_image("a/b@sha256:00"), "a/b@sha256:00");
    }

    #[test]
    fn pause_binary_and_tar_are_well_formed() {
        let elf = pause_elf("x86_64").unwrap();
        assert_eq!(&elf[..4], b"\x7fELF");
        assert_eq!(elf.len(), 120 + 9);
        assert!(pause_elf("aarch64").is_some());
        assert!(pause_elf("mips").is_none());
        let tar = tar_one_file("pause", &elf, 0o755);
        assert_eq!(tar.len() % 512, 0);
        assert_eq!(&tar[257..262], b"ustar");
    }

    #[test]
    fn registries_of_images() {
        assert_eq!(registry_of("127.0.0.1:5000/app:1"), "127.0.0.1:5000");
        assert_eq!(registry_of("localhost/app"), "localhost");
        assert_eq!(
            registry_of("registry.example.com/team/app"),
            "registry.example.com"
        );
        for hub in ["nginx:latest", "library/nginx", "team/app:1"] {
            assert_eq!(registry_of(hub), "https://index.docker.io/v1/", "{hub}");
        }
    }

    #[test]
    fn pull_behaviours_parse() {
        assert_eq!(
            PullBehavior::parse("prefer-cached"),
            Some(PullBehavior::PreferCached)
        );
        assert_eq!(PullBehavior::parse("sometimes"), None);
    }
}
