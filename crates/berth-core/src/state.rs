//! The state every operation reads and changes, and the records it is persisted as.
//!
//! The [`World`] holds one [`Partition`] per (account, region), as AWS keeps resources apart.
//! Operations mutate it in memory and leave a [`Mutation`] per changed record in the
//! [`Ctx`]; the shell commits those durably before it answers. On start the shell rebuilds
//! the world from the stored [`Record`]s with [`World::load`].

use berth_api::ecs;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

mod compact;
mod tasks;
pub use compact::{Compact, CompactError, TaskRef};
pub use tasks::{Iter as TaskIter, TaskMut, Tasks, Usage};

/// Where resources live: an AWS account and region.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PartitionKey {
    /// 12-digit account id.
    pub account: String,
    /// Region name, e.g. `us-east-1`.
    pub region: String,
}

impl PartitionKey {
    fn prefix(&self) -> String {
        format!("{}/{}/", self.account, self.region)
    }
}

/// The kinds of record the store keeps. The string is the record's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A cluster ([`ClusterRecord`]).
    Cluster,
    /// One revision of a task definition ([`TaskDefinitionRecord`]).
    TaskDefinition,
    /// A container instance, i.e. a registered agent ([`InstanceRecord`]).
    ContainerInstance,
    /// A task ([`TaskRecord`]).
    Task,
    /// A service (`service::ServiceRecord`).
    Service,
    /// An Application Auto Scaling scalable target with its policies and scheduled actions
    /// (`autoscaling::ScalableTargetRecord`).
    ScalableTarget,
    /// An Application Auto Scaling scaling activity (`autoscaling::ActivityRecord`).
    ScalingActivity,
    /// A Secrets Manager secret with its versions (`secretsmanager::SecretRecord`).
    Secret,
}

impl Kind {
    /// Every kind, in load order (a kind may refer to kinds before it).
    pub const ALL: [Kind; 8] = [
        Kind::Cluster,
        Kind::TaskDefinition,
        Kind::ContainerInstance,
        Kind::Task,
        Kind::Service,
        Kind::ScalableTarget,
        Kind::ScalingActivity,
        Kind::Secret,
    ];

    /// Stable name used as the table/record type in every store.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Cluster => "cluster",
            Kind::TaskDefinition => "task_definition",
            Kind::ContainerInstance => "container_instance",
            Kind::Task => "task",
            Kind::Service => "service",
            Kind::ScalableTarget => "scalable_target",
            Kind::ScalingActivity => "scaling_activity",
            Kind::Secret => "secret",
        }
    }

    /// Inverse of [`Kind::name`].
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// A stored record: kind, key (unique within the kind) and JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Record type.
    pub kind: Kind,
    /// `account/region/...`, unique within the kind.
    pub key: String,
    /// Serialised record.
    pub body: Vec<u8>,
}

/// One change the shell must make durable before acknowledging the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    /// Insert or replace.
    Put(Record),
    /// Remove if present.
    Delete {
        /// Record type.
        kind: Kind,
        /// Record key.
        key: String,
    },
}

/// Per-request context: the clock reading, the caller, randomness, and the changes made.
pub struct Ctx<'a> {
    /// The request's wall-clock time, milliseconds since the Unix epoch.
    pub now_ms: i64,
    /// Where the request acts.
    pub partition: PartitionKey,
    /// The caller's principal name (shown in `registeredBy`).
    pub principal: String,
    /// Source of ids; seeded in tests and simulations.
    pub rng: &'a mut dyn RngCore,
    /// Changes to make durable, in order.
    pub mutations: Vec<Mutation>,
    /// Container instances whose desired state changed (their agents are woken).
    pub woken: Vec<String>,
    /// Seals and opens pagination tokens (the server's; [`Ctx::new`] starts with the
    /// public default, for tests).
    pub token_key: crate::pagination::TokenKey,
}

impl<'a> Ctx<'a> {
    /// A context with no changes yet.
    pub fn new(
        now_ms: i64,
        partition: PartitionKey,
        principal: &str,
        rng: &'a mut dyn RngCore,
    ) -> Ctx<'a> {
        Ctx {
            now_ms,
            partition,
            principal: principal.to_string(),
            rng,
            mutations: vec![],
            woken: vec![],
            token_key: crate::pagination::TokenKey::default(),
        }
    }

    /// The same context, sealing pagination tokens with `key`.
    pub fn with_token_key(mut self, key: crate::pagination::TokenKey) -> Ctx<'a> {
        self.token_key = key;
        self
    }

    /// `now` as ECS puts timestamps on the wire: epoch seconds with millisecond fraction.
    #[allow(clippy::cast_precision_loss)]
    pub fn now_secs(&self) -> f64 {
        self.now_ms as f64 / 1000.0
    }

    /// Record a put of `value` under `kind`/`key` (the key is prefixed with the partition).
    pub fn put<T: Serialize>(&mut self, kind: Kind, key: &str, value: &T) {
        let body = serde_json::to_vec(value).unwrap_or_default();
        let key = format!("{}{key}", self.partition.prefix());
        self.mutations
            .push(Mutation::Put(Record { kind, key, body }));
    }

    /// Record a delete.
    pub fn delete(&mut self, kind: Kind, key: &str) {
        let key = format!("{}{key}", self.partition.prefix());
        self.mutations.push(Mutation::Delete { kind, key });
    }

    /// 32 lowercase hex digits, the shape of ECS task and container-instance ids.
    pub fn new_id(&mut self) -> String {
        let mut bytes = [0u8; 16];
        self.rng.fill_bytes(&mut bytes);
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A random RFC 4122 version-4 UUID string.
    pub fn new_uuid(&mut self) -> String {
        let mut b = [0u8; 16];
        self.rng.fill_bytes(&mut b);
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }
}

/// A cluster as stored. Counts are derived, not stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterRecord {
    /// The cluster in ECS's shape (counts and statistics left empty).
    pub cluster: ecs::Cluster,
    /// Agent registration tokens of this cluster (Berth's own; only their hashes are kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agent_tokens: Vec<crate::agent_token::AgentTokenRecord>,
}

/// One task definition revision as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDefinitionRecord {
    /// The revision in ECS's shape, as DescribeTaskDefinition returns it.
    pub task_definition: ecs::TaskDefinition,
    /// Its tags.
    #[serde(default)]
    pub tags: Vec<ecs::Tag>,
}

/// All revisions of one family.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Family {
    /// Revisions by number (deleted revisions are gone from here).
    pub revisions: BTreeMap<i32, TaskDefinitionRecord>,
    /// The highest revision number ever issued; never reused even after deletion.
    pub last_revision: i32,
}

/// A container instance (a registered agent) as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// Name of the cluster it belongs to.
    pub cluster: String,
    /// The instance in ECS's shape; counts and remaining resources are derived on read.
    pub instance: ecs::ContainerInstance,
    /// The credential the agent authenticates with.
    pub token: String,
    /// Runtime on the host (`process`, `docker`).
    pub runtime: String,
    /// Host name, for display.
    pub hostname: String,
}

/// What a task holds on its instance while it is not STOPPED.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// CPU units.
    pub cpu: i32,
    /// Memory MiB.
    pub memory: i32,
    /// Static host ports (TCP).
    pub ports: Vec<i32>,
    /// Whether it counts against the instance's registered resources (FARGATE tasks do
    /// not: Fargate capacity is elastic on ECS, see `docs/launch-types.md`).
    pub counted: bool,
}

/// A task as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Name of the cluster it runs in.
    pub cluster: String,
    /// The task in ECS's shape, kept current.
    pub task: ecs::Task,
    /// The container instance (id) it is placed on.
    pub instance_id: Option<String>,
    /// RunTask/StartTask idempotency token.
    pub client_token: Option<String>,
    /// What it holds on the instance.
    pub reservation: Reservation,
    /// When it reached STOPPED (epoch ms), for retention.
    pub stopped_at_ms: Option<i64>,
}

impl TaskRecord {
    /// The 32-hex task id (last ARN segment).
    pub fn id(&self) -> &str {
        let arn = self.task.task_arn.as_deref().unwrap_or_default();
        arn.rsplit('/').next().unwrap_or(arn)
    }

    /// Whether the task has fully stopped.
    pub fn is_stopped(&self) -> bool {
        self.task.last_status.as_deref() == Some("STOPPED")
    }
}

/// What the control plane knows about an agent's connection; never persisted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Liveness {
    /// Last time the agent was heard from (epoch ms).
    pub last_seen_ms: i64,
    /// Version of the instance's desired state (see `agent_protocol::DesiredState`).
    pub desired_version: u64,
}

/// Resources of one account in one region.
#[derive(Debug, Clone, Default)]
pub struct Partition {
    /// Clusters by name (INACTIVE ones too: ECS keeps them describable).
    pub clusters: BTreeMap<String, ClusterRecord>,
    /// Task definition families by name.
    pub families: BTreeMap<String, Family>,
    /// Container instances by id.
    pub instances: BTreeMap<String, InstanceRecord>,
    /// Tasks by id, indexed by the instance they run on.
    pub tasks: Tasks,
    /// Agent connections by instance id (in memory only).
    pub liveness: BTreeMap<String, Liveness>,
    /// Services by `cluster/name`.
    pub services: BTreeMap<String, crate::service::ServiceRecord>,
    /// Application Auto Scaling's targets and activities.
    pub autoscaling: crate::autoscaling::AutoScaling,
    /// Secrets Manager's secrets by name.
    pub secrets: BTreeMap<String, crate::secretsmanager::SecretRecord>,
}

/// Everything Berth knows.
#[derive(Debug, Default)]
pub struct World {
    /// Partitions by key.
    pub partitions: BTreeMap<PartitionKey, Partition>,
}

/// A stored record that cannot be understood.
#[derive(Debug, thiserror::Error)]
#[error("stored {kind} record {key:?} is unreadable: {reason}")]
pub struct LoadError {
    /// Record type.
    pub kind: &'static str,
    /// Record key.
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

impl World {
    /// The partition for `key`, created empty if new.
    pub fn partition(&mut self, key: &PartitionKey) -> &mut Partition {
        self.partitions.entry(key.clone()).or_default()
    }

    /// Rebuild the world from stored records.
    pub fn load(records: impl IntoIterator<Item = Record>) -> Result<World, LoadError> {
        let mut world = World::default();
        for r in records {
            let err = |reason: String| LoadError {
                kind: r.kind.name(),
                key: r.key.clone(),
                reason,
            };
            let mut parts = r.key.splitn(3, '/');
            let (Some(account), Some(region), Some(_rest)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(err("key has no account/region prefix".into()));
            };
            let pk = PartitionKey {
                account: account.into(),
                region: region.into(),
            };
            let p = world.partition(&pk);
            match r.kind {
                Kind::Cluster => {
                    let rec: ClusterRecord =
                        serde_json::from_slice(&r.body).map_err(|e| err(e.to_string()))?;
                    let name = rec.cluster.cluster_name.clone().unwrap_or_default();
                    p.clusters.insert(name, rec);
                }
                Kind::ContainerInstance => {
                    let rec: InstanceRecord =
                        serde_json::from_slice(&r.body).map_err(|e| err(e.to_string()))?;
                    let id = crate::arn::last_segment(
                        rec.instance
                            .container_instance_arn
                            .as_deref()
                            .unwrap_or_default(),
                    )
                    .to_string();
                    p.instances.insert(id, rec);
                }
                Kind::Service => {
                    let rec: crate::service::ServiceRecord =
                        serde_json::from_slice(&r.body).map_err(|e| err(e.to_string()))?;
                    p.services.insert(crate::service::map_key(&rec), rec);
                }
                Kind::ScalableTarget => {
                    let rec: crate::autoscaling::ScalableTargetRecord =
                        serde_json::from_slice(&r.body).map_err(|e| err(e.to_string()))?;
                    p.autoscaling
                        .targets
                        .insert(crate::autoscaling::key_of(&rec), rec);
                }
                Kind::ScalingActivity => {
                    let rec: crate::autoscaling::ActivityRecord =
                        serde_json::from_slice(&r.body).map_err(|e| err(e.to_string()))?;
                    p.autoscaling
                        .activities
                        .insert(crate::autoscaling::activity_key_of(&rec), rec);
                }
                Kind::Secret => {
                    let rec: crate::secretsmanager::SecretRecord =
                        serde_json::from_slice(&r.body).map_err(|e| err(e.to_string()))?;
                    p.secrets.insert(rec.name.clone(), rec);
                }
                Kind::Task => {
                    let rec: TaskRecord =
                        serde_json::from_slice(&r.body).map_err(|e| err(e.to_string()))?;
                    p.tasks.insert(rec.id().to_string(), rec);
                }
                Kind::TaskDefinition => {
                    let rec: TaskDefinitionRecord =
                        serde_json::from_slice(&r.body).map_err(|e| err(e.to_string()))?;
                    let family_name = rec.task_definition.family.clone().unwrap_or_default();
                    let revision = rec.task_definition.revision.unwrap_or_default();
                    let family = p.families.entry(family_name).or_default();
                    family.last_revision = family.last_revision.max(revision);
                    family.revisions.insert(revision, rec);
                }
            }
        }
        Ok(world)
    }

    /// After a (re)start nobody has heard from any agent yet: treat every registered instance
    /// as seen at `now_ms`, so that its agent has the usual timeout to reconnect before its
    /// tasks are presumed lost (a server restart must not replace running service tasks).
    pub fn assume_agents_alive(&mut self, now_ms: i64) {
        for p in self.partitions.values_mut() {
            let ids: Vec<String> = p.instances.keys().cloned().collect();
            for id in ids {
                p.liveness.entry(id).or_default().last_seen_ms = now_ms;
            }
        }
    }

    /// Forget everything (the `/_berth/reset` endpoint); the caller wipes the store.
    pub fn reset(&mut self) {
        self.partitions.clear();
    }
}

/// Record keys, relative to the partition prefix.
pub mod keys {
    /// Key of a cluster record.
    pub fn cluster(name: &str) -> String {
        format!("cluster/{name}")
    }

    /// Key of a container instance record.
    pub fn container_instance(cluster: &str, id: &str) -> String {
        format!("container-instance/{cluster}/{id}")
    }

    /// Key of a task record.
    pub fn task(cluster: &str, id: &str) -> String {
        format!("task/{cluster}/{id}")
    }

    /// Key of a task definition revision. Revisions are zero-padded so keys sort numerically.
    pub fn task_definition(family: &str, revision: i32) -> String {
        format!("task-definition/{family}/{revision:010}")
    }
}

/// A deterministic RNG for tests.
#[cfg(test)]
pub(crate) fn test_rng() -> rand::rngs::StdRng {
    use rand::SeedableRng;
    rand::rngs::StdRng::seed_from_u64(7)
}
