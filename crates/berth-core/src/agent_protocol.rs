//! The agent protocol: what an agent and the control plane say to each other.
//!
//! Level-triggered, as DESIGN.md asks: the server sends the full desired set of tasks for an
//! instance (with a version); the agent reports the observed state of tasks that changed.
//! A lost message heals on the next exchange because both sides always send state, never
//! commands. The same messages travel in-process (`berth up`) and as JSON over HTTP
//! (`berth agent`), so this module is the only definition of the protocol.

use berth_api::ecs;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

pub mod packed_logs;

/// Version of this protocol; a server refuses agents speaking another.
pub const PROTOCOL_VERSION: u32 = 1;

/// An agent joins a cluster (or rejoins as the instance it was).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// [`PROTOCOL_VERSION`] of the agent.
    pub protocol_version: u32,
    /// Cluster name or ARN (default `default`).
    pub cluster: String,
    /// Region to join (the server's default when absent).
    pub region: Option<String>,
    /// The cluster's agent registration token.
    pub token: String,
    /// The instance ARN from an earlier registration, to rejoin as the same instance.
    pub container_instance_arn: Option<String>,
    /// This instance's credential from that registration.
    pub instance_token: Option<String>,
    /// CPU units (1024 per core).
    pub cpu_units: i32,
    /// Memory in MiB.
    pub memory_mib: i32,
    /// Host ports that are never available to tasks.
    pub reserved_ports: Vec<i32>,
    /// Attributes to advertise (`ecs.os-type`, custom ones, ...).
    pub attributes: Vec<ecs::Attribute>,
    /// Agent and runtime versions.
    pub version_info: ecs::VersionInfo,
    /// Which runtime runs containers here (`process` or `docker`).
    pub runtime: String,
    /// Host name, for display.
    pub hostname: String,
}

/// The server's answer to a registration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterResponse {
    /// The instance's ARN.
    pub container_instance_arn: String,
    /// The credential the agent uses from now on.
    pub instance_token: String,
    /// Tasks the server believes run here, as of registration.
    pub desired: DesiredState,
    /// How often the server wants usage measured ([`SyncRequest::usage`]), in ms; absent
    /// from servers that take none.
    #[serde(default)]
    pub usage_interval_ms: Option<u64>,
}

/// An agent's periodic exchange: reports in, desired state out. Doubles as the heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncRequest {
    /// The instance.
    pub container_instance_arn: String,
    /// Its credential.
    pub instance_token: String,
    /// The desired-state version the agent holds; the server answers at once when it
    /// differs, else waits up to `wait_ms` for a change (long poll).
    pub desired_version: u64,
    /// Observed state of tasks that changed since the last acknowledged sync.
    pub reports: Vec<TaskReport>,
    /// How long the server may hold the request waiting for a change.
    pub wait_ms: u64,
    /// Resource usage measured since the last acknowledged sync, oldest first (absent from
    /// agents that predate it). Not level-triggered: a lost sample is simply a gap.
    #[serde(default)]
    pub usage: Vec<UsageReport>,
}

/// One measurement of this host's running tasks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageReport {
    /// When it was taken (epoch ms).
    pub timestamp_ms: i64,
    /// Each running task measured twice so far (the CPU rate needs two readings).
    pub tasks: Vec<TaskUsage>,
}

/// What one task used.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskUsage {
    /// Task ARN.
    pub task_arn: String,
    /// CPU used on average since the previous measurement, in CPU units (1024 = one vCPU
    /// busy), summed over the task's containers.
    pub cpu_units: f64,
    /// Memory in use at the measurement, MiB (resident set; Docker: usage less page cache).
    pub memory_mib: f64,
}

/// The server's answer to a sync: reports are durable, and this is the desired state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncResponse {
    /// The desired state now.
    pub desired: DesiredState,
    /// How often the server wants usage measured, in ms (see [`RegisterResponse`]).
    #[serde(default)]
    pub usage_interval_ms: Option<u64>,
}

/// Every task the server wants on one instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DesiredState {
    /// Changes whenever the set or any task's desired status changes.
    pub version: u64,
    /// The tasks (including ones to stop that the agent has not yet reported STOPPED).
    pub tasks: Vec<DesiredTask>,
}

/// One task as the agent must run it: everything it needs, resolved by the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredTask {
    /// Task ARN.
    pub task_arn: String,
    /// Cluster ARN.
    pub cluster_arn: String,
    /// `RUNNING` or `STOPPED`.
    pub desired_status: String,
    /// The task definition revision (shared: the tasks of one revision in one desired state
    /// point at one copy; on the wire it is the plain definition).
    #[serde(with = "shared")]
    pub task_definition: Arc<ecs::TaskDefinition>,
    /// Overrides from RunTask/StartTask, to apply over the definition.
    pub overrides: ecs::TaskOverride,
    /// Task-level CPU units and memory MiB after overrides, if set.
    pub cpu: Option<String>,
    /// Task memory (MiB) after overrides.
    pub memory: Option<String>,
    /// Launch type the task was started with.
    pub launch_type: String,
    /// Why the server wants it stopped (for the record), if it does.
    pub stop_reason: Option<String>,
    /// Per container name: what its image is pulled with when its definition has
    /// `repositoryCredentials` (resolved by the server from Secrets Manager, as ECS's agent
    /// fetches them with the task execution role). Sent only while the task may still pull
    /// images; never stored with the task.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub registry_auth: BTreeMap<String, RegistryAuth>,
}

/// A container's private registry credentials, or why they could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistryAuth {
    /// Pull with these.
    Credentials(crate::secretsmanager::RegistryCredentials),
    /// The secret is missing or malformed: the task stops with this reason (ECS's
    /// `ResourceInitializationError: unable to pull secrets or registry auth: ...`).
    Unavailable(String),
}

/// (De)serializes an `Arc<T>` as the `T` it holds (serde's `rc` feature, for one field).
mod shared {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::sync::Arc;

    pub(super) fn serialize<T: Serialize, S: Serializer>(
        v: &Arc<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        T::serialize(v, s)
    }

    pub(super) fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Arc<T>, D::Error> {
        T::deserialize(d).map(Arc::new)
    }
}

/// Observed state of one task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskReport {
    /// Task ARN.
    pub task_arn: String,
    /// ECS lifecycle status (PROVISIONING ... STOPPED).
    pub last_status: String,
    /// Containers.
    pub containers: Vec<ContainerReport>,
    /// Task health (HEALTHY / UNHEALTHY / UNKNOWN).
    pub health_status: Option<String>,
    /// Epoch ms when image pulls started / ended (process runtime: resolving commands).
    pub pull_started_at_ms: Option<i64>,
    /// Pull end.
    pub pull_stopped_at_ms: Option<i64>,
    /// When the task reached RUNNING.
    pub started_at_ms: Option<i64>,
    /// When it began stopping.
    pub stopping_at_ms: Option<i64>,
    /// When its last container exited.
    pub execution_stopped_at_ms: Option<i64>,
    /// When it was fully stopped.
    pub stopped_at_ms: Option<i64>,
    /// Stop code the agent determined (TaskFailedToStart, EssentialContainerExited).
    pub stop_code: Option<String>,
    /// Human-readable reason.
    pub stopped_reason: Option<String>,
}

/// Observed state of one container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerReport {
    /// Container name.
    pub name: String,
    /// PENDING, RUNNING or STOPPED.
    pub last_status: String,
    /// Exit code once stopped.
    pub exit_code: Option<i32>,
    /// Why it stopped or could not start.
    pub reason: Option<String>,
    /// Runtime id (`process:<pid>` or the Docker container id).
    pub runtime_id: Option<String>,
    /// HEALTHY / UNHEALTHY / UNKNOWN.
    pub health_status: Option<String>,
    /// Host ports bound.
    pub network_bindings: Vec<ecs::NetworkBinding>,
    /// The address of the task's network namespace (`awsvpc`), once it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_ipv4_address: Option<String>,
    /// Its MAC address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
}

/// A protocol-level refusal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum AgentError {
    /// Wrong registration token, or unknown/revoked instance credential.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The cluster does not exist.
    #[error("cluster not found: {0}")]
    ClusterNotFound(String),
    /// The instance was deregistered; the agent must register anew.
    #[error("instance deregistered: {0}")]
    Deregistered(String),
    /// The request is malformed or speaks another protocol version.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The server is stopping or failed.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// An agent ships container output (the `awslogs` log driver), on a path of its own so that
/// a log flood never delays task-state syncs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PutLogsRequest {
    /// The instance.
    pub container_instance_arn: String,
    /// Its credential.
    pub instance_token: String,
    /// Names this agent process; with each batch's `seq` it makes a resent batch idempotent.
    pub producer: String,
    /// Events, one batch per log stream.
    pub batches: Vec<LogBatch>,
}

/// Events for one log stream, in capture order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogBatch {
    /// Region of the log group (`awslogs-region`); the instance's when absent.
    pub region: Option<String>,
    /// Log group (`awslogs-group`); must exist.
    pub group: String,
    /// Log stream (created when missing).
    pub stream: String,
    /// Increases by one per batch of this stream from this producer; a batch whose number
    /// the server already stored is acknowledged without being stored again.
    pub seq: u64,
    /// The events (shared: the agent keeps them until the server acknowledges the batch, and
    /// a retry resends them without copying).
    #[serde(with = "shared_vec")]
    pub events: std::sync::Arc<Vec<LogLine>>,
}

/// `Arc<Vec<T>>` as a plain JSON array (serde's `rc` feature, for one field).
mod shared_vec {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::sync::Arc;

    pub(super) fn serialize<T: Serialize, S: Serializer>(
        v: &Arc<Vec<T>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        v.as_slice().serialize(s)
    }

    pub(super) fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Arc<Vec<T>>, D::Error> {
        Vec::deserialize(d).map(Arc::new)
    }
}

/// One log event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// Capture time, ms since the Unix epoch.
    pub timestamp_ms: i64,
    /// The line (or joined lines of a multi-line event).
    pub message: String,
}

/// The server's answer to [`PutLogsRequest`]: every batch is durable or refused for good.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PutLogsResponse {
    /// Per batch, in request order: `None` when stored, else why it never will be (e.g. the
    /// group was deleted), as `Exception: message`.
    pub refused: Vec<Option<String>>,
}

/// Before starting an `awslogs` container: make sure its log group exists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnsureLogGroupRequest {
    /// The instance.
    pub container_instance_arn: String,
    /// Its credential.
    pub instance_token: String,
    /// Region of the log group; the instance's when absent.
    pub region: Option<String>,
    /// The log group.
    pub group: String,
    /// Create it when missing (`awslogs-create-group: "true"`).
    pub create: bool,
    /// Streams to create now (those whose names are known before the container starts).
    pub streams: Vec<String>,
}

/// The answer to [`EnsureLogGroupRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnsureLogGroupResponse {
    /// Why the group cannot be used (`ResourceNotFoundException: The specified log group
    /// does not exist.`), or `None` when it is ready.
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_optional_both_ways() {
        // An agent that predates usage reports, and a server that predates the interval.
        let old_sync = r#"{"container_instance_arn":"a","instance_token":"t","desired_version":1,"reports":[],"wait_ms":0}"#;
        let req: SyncRequest = serde_json::from_str(old_sync).unwrap();
        assert!(req.usage.is_empty());
        let old_resp = r#"{"desired":{"version":1,"tasks":[]}}"#;
        let resp: SyncResponse = serde_json::from_str(old_resp).unwrap();
        assert_eq!(resp.usage_interval_ms, None);
    }
}
