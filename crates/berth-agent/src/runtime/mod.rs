//! Runtimes: how a container definition becomes something running on this host.
//!
//! The runner drives every task through [`AnyRuntime`], an enum over the runtimes (an enum
//! rather than a trait object because the operations are `async`):
//!
//! 1. [`AnyRuntime::prepare`] — everything before the first container starts: command lines
//!    resolved, images pulled and the task's network namespace set up (Docker `awsvpc`). Its
//!    error is the task's `stoppedReason`. Docker finds, by label, containers of the task that
//!    a previous agent run created: they are re-adopted, never created twice.
//! 2. [`AnyRuntime::start`] — one container, returning an [`AnyContainer`] that can be waited
//!    for, stopped (stop signal, `stopTimeout`, kill) and health-watched.
//! 3. [`AnyRuntime::release`] — after the last container exited: tear down what `prepare` set
//!    up (and, for Docker, schedule the removal of the task's containers).
//!
//! [`AnyRuntime::reap_orphans`] runs at agent start-up.

pub mod cgroup;
pub mod docker;
pub mod process;

use crate::plan::{Health, HealthTracker};
use berth_api::ecs::{ContainerDefinition, HealthCheck, NetworkBinding};
use berth_core::agent_protocol::{DesiredTask, RegistryAuth};
use berth_core::secretsmanager::RegistryCredentials;
use docker::DockerRuntime;
use process::{ContainerSpec, OutputSink, ProcessRuntime, RunningProcess};
use std::time::Duration;

/// The runtime that runs this agent's containers.
#[derive(Debug, Clone)]
pub enum AnyRuntime {
    /// Host processes (the image is not used).
    Process(ProcessRuntime),
    /// Containers through the Docker Engine API.
    Docker(DockerRuntime),
}

/// Why a task's containers could not be set up or started; `Display` is ECS's reason
/// (`CannotPullContainerError: ...`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// The image could not be pulled and is not cached.
    #[error("CannotPullContainerError: {0}")]
    CannotPull(String),
    /// The engine refused to create the container.
    #[error("CannotCreateContainerError: {0}")]
    CannotCreate(String),
    /// The container (or process) could not be started.
    #[error("CannotStartContainerError: {0}")]
    CannotStart(String),
    /// Task-level resources (its network namespace, its volumes) could not be set up.
    #[error("ResourceInitializationError: {0}")]
    ResourceInitialization(String),
}

/// How a container ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerExit {
    /// Exit code (`128 + N` when killed by signal N); `None` if unknown.
    pub exit_code: Option<i32>,
    /// ECS's reason when the runtime knows one (`OutOfMemoryError: ...`).
    pub reason: Option<String>,
}

/// A task made ready to start its containers by [`AnyRuntime::prepare`].
#[derive(Debug)]
pub struct Prepared {
    /// One per container definition (same order): what [`AnyRuntime::start`] starts.
    pub specs: Vec<ContainerSpec>,
    /// Per container: it already exists, created by a previous agent run, and
    /// [`AnyRuntime::start`] re-adopts it instead of creating it.
    pub existing: Vec<bool>,
}

/// A started container.
#[derive(Debug)]
pub enum AnyContainer {
    /// A host process.
    Process(ProcessContainer),
    /// A Docker container.
    Docker(docker::DockerContainer),
}

/// A container process, with what its health checks run with.
#[derive(Debug)]
pub struct ProcessContainer {
    proc: RunningProcess,
    env: Vec<(String, String)>,
    working_dir: Option<String>,
}

impl AnyRuntime {
    /// `process` or `docker` (the container instance's runtime).
    pub fn kind(&self) -> &'static str {
        match self {
            AnyRuntime::Process(_) => "process",
            AnyRuntime::Docker(_) => "docker",
        }
    }

    /// Whether tasks of a previous agent run can be re-adopted (else they are reported lost).
    pub fn can_readopt(&self) -> bool {
        matches!(self, AnyRuntime::Docker(_))
    }

    /// Everything before the first container of `task` starts (`defs`: its effective
    /// container definitions). The error is the task's `stoppedReason`. When a previous agent
    /// run created containers of the task, they are found (Docker) and marked `existing`.
    pub async fn prepare(
        &self,
        task: &DesiredTask,
        defs: &[ContainerDefinition],
    ) -> Result<Prepared, StartError> {
        let specs = defs
            .iter()
            .map(|c| match self {
                AnyRuntime::Process(_) => process_spec(task, c),
                AnyRuntime::Docker(_) => docker_spec(task, c),
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(StartError::CannotStart)?;
        let existing = match self {
            AnyRuntime::Process(_) => {
                // No image is pulled, but the task's registry credentials are a task resource
                // on ECS: a secret that cannot be resolved stops the task all the same.
                for c in defs {
                    registry_credentials(task, c)?;
                }
                vec![false; defs.len()]
            }
            AnyRuntime::Docker(d) => d.prepare(task, defs).await?,
        };
        Ok(Prepared { specs, existing })
    }

    /// Start a container of a prepared task (or re-adopt it, see [`Prepared::existing`]);
    /// its output goes to `output` line by line.
    pub async fn start(
        &self,
        spec: &ContainerSpec,
        output: OutputSink,
    ) -> Result<AnyContainer, StartError> {
        match self {
            AnyRuntime::Process(rt) => {
                let proc = rt
                    .start(spec, output)
                    .await
                    .map_err(|e| StartError::CannotStart(e.to_string()))?;
                Ok(AnyContainer::Process(ProcessContainer {
                    proc,
                    env: spec.env.clone(),
                    working_dir: spec.working_dir.clone(),
                }))
            }
            AnyRuntime::Docker(d) => d.start(spec, output).await.map(AnyContainer::Docker),
        }
    }

    /// After every container of the task has exited: release what [`prepare`](Self::prepare)
    /// set up (Docker: the task's network namespace; its containers are removed after the
    /// cleanup delay).
    pub async fn release(&self, task_arn: &str) {
        if let AnyRuntime::Docker(d) = self {
            d.release(task_arn).await;
        }
    }

    /// Remove at once everything of a task that a previous agent run started and the server
    /// no longer wants (Docker: its containers, running or not, and its volumes).
    pub async fn discard(&self, task_arn: &str) {
        if let AnyRuntime::Docker(d) = self {
            d.remove_task(task_arn).await;
        }
    }

    /// At agent start-up: stop what a previous run left that no task claims (processes: every
    /// recorded process; Docker: running containers of tasks not in `keep`, by task ARN).
    /// Returns how many were stopped.
    pub async fn reap_orphans(&self, keep: &[String]) -> usize {
        match self {
            AnyRuntime::Process(rt) => rt.reap_orphans().len(),
            AnyRuntime::Docker(d) => d.reap_orphans(keep).await,
        }
    }
}

impl AnyContainer {
    /// The container's runtime id (`process:<pid>` or the Docker container id).
    pub fn runtime_id(&self) -> String {
        match self {
            AnyContainer::Process(p) => p.proc.runtime_id(),
            AnyContainer::Docker(d) => d.id().to_string(),
        }
    }

    /// Host ports bound to the container.
    pub fn network_bindings(&self) -> Vec<NetworkBinding> {
        match self {
            AnyContainer::Process(_) => vec![],
            AnyContainer::Docker(d) => d.network_bindings().to_vec(),
        }
    }

    /// The task's address and MAC (`awsvpc` on Docker), if it has its own.
    pub fn network_interface(&self) -> Option<(String, Option<String>)> {
        match self {
            AnyContainer::Process(_) => None,
            AnyContainer::Docker(d) => d.eni().map(|e| (e.private_ipv4.clone(), e.mac.clone())),
        }
    }

    /// Wait until the container has exited (cancel-safe).
    pub async fn wait(&self) -> ContainerExit {
        match self {
            AnyContainer::Process(p) => {
                let info = p.proc.wait().await;
                ContainerExit {
                    exit_code: info.exit_code,
                    reason: None,
                }
            }
            AnyContainer::Docker(d) => d.wait().await,
        }
    }

    /// Graceful stop: the stop signal, up to `timeout`, then a kill. Returns the exit.
    pub async fn stop(&self, timeout: Duration) -> ContainerExit {
        match self {
            AnyContainer::Process(p) => {
                let info = p.proc.stop(timeout).await;
                ContainerExit {
                    exit_code: info.exit_code,
                    reason: None,
                }
            }
            AnyContainer::Docker(d) => d.stop(timeout).await,
        }
    }

    /// Watch the container's health as defined by `hc`, calling `on_change` with each new
    /// verdict until it returns false. Processes: the check runs on the host (`run_check`)
    /// every `interval`; Docker: the engine runs the check and its verdict is followed.
    pub fn watch_health(
        &self,
        hc: &HealthCheck,
        on_change: impl Fn(Health) -> bool + Send + 'static,
    ) -> Option<tokio::task::JoinHandle<()>> {
        match self {
            AnyContainer::Process(p) => {
                let argv = check_argv(hc)?;
                let env = p.env.clone();
                let wd = p.working_dir.clone();
                let interval = secs(hc.interval, Duration::from_secs(30));
                let timeout = secs(hc.timeout, Duration::from_secs(5));
                let start_period = secs(hc.start_period, Duration::ZERO);
                let retries = u32::try_from(hc.retries.unwrap_or(3)).unwrap_or(3);
                Some(tokio::spawn(async move {
                    let began = tokio::time::Instant::now();
                    let mut tracker = HealthTracker::new(retries);
                    let mut last = Health::Unknown;
                    loop {
                        let ok = matches!(
                            process::run_check(&argv, &env, wd.as_deref(), timeout).await,
                            Ok(0)
                        );
                        let h = tracker.record(ok, began.elapsed() < start_period);
                        if h != last {
                            last = h;
                            if !on_change(h) {
                                return;
                            }
                        }
                        tokio::time::sleep(interval).await;
                    }
                }))
            }
            AnyContainer::Docker(d) => d.watch_health(on_change),
        }
    }
}

/// The credentials container `c`'s image is pulled with: `None` without
/// `repositoryCredentials`; the server's reason (ECS's `ResourceInitializationError: unable to
/// pull secrets or registry auth: ...`) when its secret could not be resolved.
pub fn registry_credentials(
    task: &DesiredTask,
    c: &ContainerDefinition,
) -> Result<Option<RegistryCredentials>, StartError> {
    if c.repository_credentials.is_none() {
        return Ok(None);
    }
    match task
        .registry_auth
        .get(c.name.as_deref().unwrap_or_default())
    {
        Some(RegistryAuth::Credentials(creds)) => Ok(Some(creds.clone())),
        Some(RegistryAuth::Unavailable(reason)) => {
            Err(StartError::ResourceInitialization(reason.clone()))
        }
        // A server that predates registry credentials sent none: pull without.
        None => Ok(None),
    }
}

/// The argv of a `CMD` / `CMD-SHELL` health check (`None` for anything else).
pub fn check_argv(hc: &HealthCheck) -> Option<Vec<String>> {
    let cmd = hc.command.clone().unwrap_or_default();
    let argv = match cmd.first().map(String::as_str) {
        Some("CMD") => cmd[1..].to_vec(),
        Some("CMD-SHELL") => vec!["/bin/sh".into(), "-c".into(), cmd[1..].join(" ")],
        _ => return None,
    };
    (!argv.is_empty()).then_some(argv)
}

/// Seconds as a duration, `default` when absent or negative.
pub fn secs(v: Option<i32>, default: Duration) -> Duration {
    v.and_then(|s| u64::try_from(s).ok())
        .map_or(default, Duration::from_secs)
}

/// The ECS task id (last segment of the ARN).
pub fn task_id(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// The environment ECS gives every container (`AWS_EXECUTION_ENV`, `AWS_REGION`,
/// `AWS_DEFAULT_REGION`), then the container's `environmentFiles` (local files of `KEY=VALUE`
/// lines; `file://` URLs or absolute paths) and its `environment`, later entries winning.
pub fn container_env(
    task: &DesiredTask,
    c: &ContainerDefinition,
) -> Result<Vec<(String, String)>, String> {
    let mut env: Vec<(String, String)> = Vec::new();
    let region = task
        .task_arn
        .split(':')
        .nth(3)
        .unwrap_or("us-east-1")
        .to_string();
    let exec_env = if task.launch_type == "FARGATE" {
        "AWS_ECS_FARGATE"
    } else {
        "AWS_ECS_EC2"
    };
    env.push(("AWS_EXECUTION_ENV".into(), exec_env.into()));
    env.push(("AWS_REGION".into(), region.clone()));
    env.push(("AWS_DEFAULT_REGION".into(), region));
    let mut set = |name: String, value: String| {
        env.retain(|(k, _)| *k != name);
        env.push((name, value));
    };
    for f in c.environment_files.as_deref().unwrap_or_default() {
        let value = f.value.clone().unwrap_or_default();
        let path = value.strip_prefix("file://").unwrap_or(&value);
        if !path.starts_with('/') {
            return Err(format!(
                "environment file {value}: only local files (absolute paths or file:// URLs) can be read by this agent"
            ));
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("environment file {value}: {e}"))?;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some((k, v)) = line.split_once('=') {
                set(k.trim().to_string(), v.to_string());
            }
        }
    }
    for kv in c.environment.as_deref().unwrap_or_default() {
        set(
            kv.name.clone().unwrap_or_default(),
            kv.value.clone().unwrap_or_default(),
        );
    }
    Ok(env)
}

/// A container definition as the Docker runtime sees it: its `entryPoint` + `command` (maybe
/// empty: the image's), the environment ECS gives it.
pub fn docker_spec(task: &DesiredTask, c: &ContainerDefinition) -> Result<ContainerSpec, String> {
    let mut argv: Vec<String> = c.entry_point.clone().unwrap_or_default();
    argv.extend(c.command.clone().unwrap_or_default());
    Ok(ContainerSpec {
        task_id: task_id(&task.task_arn).to_string(),
        container_name: c.name.clone().unwrap_or_default(),
        argv,
        env: container_env(task, c)?,
        working_dir: c.working_directory.clone(),
        user: c.user.clone(),
    })
}

/// A container definition as a host process: `entryPoint` + `command`, the container's
/// environment over the agent's `PATH`, `HOME`, `LANG` and `TZ`.
pub fn process_spec(task: &DesiredTask, c: &ContainerDefinition) -> Result<ContainerSpec, String> {
    let mut argv: Vec<String> = c.entry_point.clone().unwrap_or_default();
    argv.extend(c.command.clone().unwrap_or_default());
    if argv.is_empty() {
        return Err(format!(
            "container {} has neither entryPoint nor command; the process runtime runs commands, not images",
            c.name.as_deref().unwrap_or_default()
        ));
    }
    let mut env: Vec<(String, String)> = Vec::new();
    for key in ["PATH", "HOME", "LANG", "TZ"] {
        if let Ok(v) = std::env::var(key) {
            env.push((key.into(), v));
        }
    }
    for (k, v) in container_env(task, c)? {
        env.retain(|(key, _)| *key != k);
        env.push((k, v));
    }
    Ok(ContainerSpec {
        task_id: task_id(&task.task_arn).to_string(),
        container_name: c.name.clone().unwrap_or_default(),
        argv,
        env,
        working_dir: c.working_directory.clone(),
        user: c.user.clone(),
    })
}
