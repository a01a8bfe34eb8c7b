//! Tasks: RunTask, StartTask, StopTask, DescribeTasks, ListTasks; what agents are told to
//! run ([`desired_state`]) and what they report ([`apply_report`]).
//!
//! The server owns `desiredStatus`; agents own `lastStatus`. Resources are reserved on the
//! chosen instance from placement until the task is STOPPED.

use crate::agent_protocol::{DesiredState, DesiredTask, TaskReport};
use crate::container_instance::{self, connected};
use crate::placement::{self, Candidate, Need};
use crate::state::{
    CompactError, Ctx, Kind, Partition, Reservation, TaskDefinitionRecord, TaskRecord, TaskRef,
    keys,
};
use crate::{arn, cluster, pagination, query, tags, task_definition};
use berth_api::EcsError;
use berth_api::ecs::{
    self, Compatibility, ContainerOverride, DescribeTasksRequest, DescribeTasksResponse,
    LaunchType, ListTasksRequest, ListTasksResponse, NetworkMode, PlacementConstraint,
    PlacementConstraintType, PlacementStrategy, RunTaskRequest, RunTaskResponse, StartTaskRequest,
    StartTaskResponse, StopTaskRequest, StopTaskResponse, TaskOverride, TaskStopCode,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Default time STOPPED tasks stay describable (ECS: at least an hour).
pub const STOPPED_TASK_RETENTION_MS: i64 = 60 * 60 * 1000;

/// ECS's lifecycle, in order. A task never moves backwards.
pub const LIFECYCLE: [&str; 8] = [
    "PROVISIONING",
    "PENDING",
    "ACTIVATING",
    "RUNNING",
    "DEACTIVATING",
    "STOPPING",
    "DEPROVISIONING",
    "STOPPED",
];

fn rank(status: &str) -> usize {
    LIFECYCLE.iter().position(|s| *s == status).unwrap_or(0)
}

/// A compact task that cannot be decoded (not expected: Berth made it in this process).
fn unreadable(e: CompactError) -> EcsError {
    EcsError::Server(e.to_string())
}

fn secs(ms: i64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let s = ms as f64 / 1000.0;
    s
}

/// The task definition's containers with `overrides` applied (what actually runs).
pub fn effective_containers(
    td: &ecs::TaskDefinition,
    overrides: &TaskOverride,
) -> Vec<ecs::ContainerDefinition> {
    let mut containers = td.container_definitions.clone().unwrap_or_default();
    for o in overrides.container_overrides.as_deref().unwrap_or_default() {
        let Some(c) = containers.iter_mut().find(|c| c.name == o.name) else {
            continue;
        };
        if let Some(cmd) = &o.command {
            c.command = Some(cmd.clone());
        }
        if let Some(env) = &o.environment {
            let list = c.environment.get_or_insert_with(Vec::new);
            for kv in env {
                match list.iter_mut().find(|x| x.name == kv.name) {
                    Some(x) => x.value = kv.value.clone(),
                    None => list.push(kv.clone()),
                }
            }
        }
        if let Some(files) = &o.environment_files {
            c.environment_files
                .get_or_insert_with(Vec::new)
                .extend(files.iter().cloned());
        }
        if o.cpu.is_some() {
            c.cpu = o.cpu;
        }
        if o.memory.is_some() {
            c.memory = o.memory;
        }
        if o.memory_reservation.is_some() {
            c.memory_reservation = o.memory_reservation;
        }
        if o.resource_requirements.is_some() {
            c.resource_requirements = o.resource_requirements.clone();
        }
    }
    containers
}

/// What a task reserves: task-level sizes when set, else the sum over its containers.
pub fn reservation(
    td: &ecs::TaskDefinition,
    overrides: &TaskOverride,
    launch_type: &LaunchType,
) -> Reservation {
    let containers = effective_containers(td, overrides);
    let task_cpu = overrides
        .cpu
        .as_deref()
        .or(td.cpu.as_deref())
        .and_then(|c| task_definition::parse_cpu(c).ok());
    let task_mem = overrides
        .memory
        .as_deref()
        .or(td.memory.as_deref())
        .and_then(|m| task_definition::parse_memory(m).ok());
    let cpu = task_cpu.map_or_else(
        || containers.iter().map(|c| c.cpu.unwrap_or(0)).sum(),
        |c| i32::try_from(c).unwrap_or(i32::MAX),
    );
    let memory = task_mem.map_or_else(
        || {
            containers
                .iter()
                .map(|c| c.memory_reservation.or(c.memory).unwrap_or(0))
                .sum()
        },
        |m| i32::try_from(m).unwrap_or(i32::MAX),
    );
    let mode = td.network_mode.clone().unwrap_or(NetworkMode::Bridge);
    let mut ports = Vec::new();
    for c in &containers {
        for pm in c.port_mappings.as_deref().unwrap_or_default() {
            let host = match mode {
                NetworkMode::Bridge => pm.host_port.filter(|p| *p > 0),
                NetworkMode::Host | NetworkMode::Awsvpc => pm.host_port.or(pm.container_port),
                _ => None,
            };
            ports.extend(host);
        }
    }
    ports.sort_unstable();
    ports.dedup();
    Reservation {
        cpu,
        memory,
        ports,
        counted: *launch_type != LaunchType::Fargate,
    }
}

fn validate_started_by(s: &str) -> Result<(), EcsError> {
    let ok = s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_/-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(EcsError::invalid(
            "startedBy can be up to 128 letters (uppercase and lowercase), numbers, hyphens (-), forward slash (/), and underscores (_).",
        ))
    }
}

fn validate_overrides(td: &ecs::TaskDefinition, o: &TaskOverride) -> Result<(), EcsError> {
    let names: BTreeSet<&str> = td
        .container_definitions
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter_map(|c| c.name.as_deref())
        .collect();
    for co in o.container_overrides.as_deref().unwrap_or_default() {
        let name = co.name.as_deref().unwrap_or_default();
        if !names.contains(name) {
            return Err(EcsError::invalid(format!(
                "Override for container named {name} is not a container in the TaskDefinition."
            )));
        }
        for (field, v) in [
            ("cpu", co.cpu),
            ("memory", co.memory),
            ("memoryReservation", co.memory_reservation),
        ] {
            if v.is_some_and(|v| v < 0) {
                return Err(EcsError::invalid(format!(
                    "Container override {field} for {name} must not be negative."
                )));
            }
        }
        if let (Some(m), Some(r)) = (co.memory, co.memory_reservation)
            && r > m
        {
            return Err(EcsError::invalid(format!(
                "Container override for {name}: memoryReservation must be less than or equal to memory."
            )));
        }
        if co
            .command
            .as_ref()
            .is_some_and(|c| c.iter().any(String::is_empty) && c.len() == 1)
        {
            return Err(EcsError::invalid(format!(
                "Container override command for {name} must not be empty."
            )));
        }
    }
    if let Some(c) = &o.cpu {
        task_definition::parse_cpu(c)
            .map_err(|_| EcsError::invalid(format!("Invalid task cpu override '{c}'.")))?;
    }
    if let Some(m) = &o.memory {
        task_definition::parse_memory(m)
            .map_err(|_| EcsError::invalid(format!("Invalid task memory override '{m}'.")))?;
    }
    Ok(())
}

pub(crate) fn validate_network(
    td: &ecs::TaskDefinition,
    nc: Option<&ecs::NetworkConfiguration>,
) -> Result<(), EcsError> {
    if td.network_mode == Some(NetworkMode::Awsvpc) {
        let Some(vpc) = nc.and_then(|n| n.awsvpc_configuration.as_ref()) else {
            return Err(EcsError::invalid(
                "Network Configuration must be provided when networkMode 'awsvpc' is specified.",
            ));
        };
        if vpc.subnets.as_ref().is_none_or(Vec::is_empty) {
            return Err(EcsError::invalid("subnets can not be empty."));
        }
        if vpc.subnets.as_ref().is_some_and(|s| s.len() > 16) {
            return Err(EcsError::invalid("At most 16 subnets can be specified."));
        }
    } else if nc.and_then(|n| n.awsvpc_configuration.as_ref()).is_some() {
        return Err(EcsError::invalid(
            "Network Configuration is not valid for the given networkMode of this task definition.",
        ));
    }
    Ok(())
}

/// Everything RunTask and StartTask share once the instance is chosen.
pub(crate) struct NewTask<'a> {
    pub(crate) cluster: &'a str,
    pub(crate) td: &'a TaskDefinitionRecord,
    pub(crate) overrides: TaskOverride,
    pub(crate) launch_type: LaunchType,
    pub(crate) started_by: Option<String>,
    pub(crate) group: String,
    pub(crate) tags: Vec<ecs::Tag>,
    pub(crate) client_token: Option<String>,
    pub(crate) reservation: Reservation,
    /// The first subnet of an `awsvpc` task's network configuration.
    pub(crate) subnet: Option<String>,
}

/// The first subnet of a network configuration (where an `awsvpc` task's ENI goes).
pub(crate) fn first_subnet(nc: Option<&ecs::NetworkConfiguration>) -> Option<String> {
    nc.and_then(|n| n.awsvpc_configuration.as_ref())
        .and_then(|v| v.subnets.as_ref())
        .and_then(|s| s.first().cloned())
}

/// The ENI attachment of an `awsvpc` task, as ECS shows it before the network is up.
fn eni_attachment(ctx: &mut Ctx<'_>, subnet: &str) -> ecs::Attachment {
    ecs::Attachment {
        id: Some(ctx.new_uuid()),
        r#type: Some("ElasticNetworkInterface".into()),
        status: Some("PRECREATED".into()),
        details: Some(vec![kv("subnetId", subnet)]),
    }
}

fn kv(name: &str, value: &str) -> ecs::KeyValuePair {
    ecs::KeyValuePair {
        name: Some(name.into()),
        value: Some(value.into()),
    }
}

/// The agent saw the task's network namespace get `ip` (and `mac`): the ENI attachment is
/// ATTACHED with ECS's details, and every container shows the interface.
fn attach_eni(task: &mut ecs::Task, ip: &str, mac: Option<&str>, region: &str) {
    let Some(att) = task
        .attachments
        .iter_mut()
        .flatten()
        .find(|a| a.r#type.as_deref() == Some("ElasticNetworkInterface"))
    else {
        return;
    };
    if att.status.as_deref() != Some("PRECREATED") {
        return;
    }
    let id = att.id.clone().unwrap_or_default();
    let subnet = att
        .details
        .iter()
        .flatten()
        .find(|d| d.name.as_deref() == Some("subnetId"))
        .and_then(|d| d.value.clone())
        .unwrap_or_default();
    // A stable ENI id from the attachment id: `eni-` and 17 hex digits, as EC2 shapes them.
    let hex: String = id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(17)
        .collect();
    let dns = if region == "us-east-1" {
        format!("ip-{}.ec2.internal", ip.replace('.', "-"))
    } else {
        format!("ip-{}.{region}.compute.internal", ip.replace('.', "-"))
    };
    let mut details = vec![
        kv("subnetId", &subnet),
        kv("networkInterfaceId", &format!("eni-{hex}")),
    ];
    if let Some(mac) = mac {
        details.push(kv("macAddress", mac));
    }
    details.push(kv("privateDnsName", &dns));
    details.push(kv("privateIPv4Address", ip));
    att.details = Some(details);
    att.status = Some("ATTACHED".into());
    for c in task.containers.iter_mut().flatten() {
        c.network_interfaces = Some(vec![ecs::NetworkInterface {
            attachment_id: Some(id.clone()),
            private_ipv4_address: Some(ip.to_string()),
            ipv6_address: None,
        }]);
    }
}

pub(crate) fn create_task(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    n: &NewTask<'_>,
    instance_id: &str,
) -> ecs::Task {
    let id = ctx.new_id();
    let task_arn = arn::task(&ctx.partition, n.cluster, &id);
    let td = &n.td.task_definition;
    let containers: Vec<ecs::Container> = effective_containers(td, &n.overrides)
        .iter()
        .map(|c| {
            let uuid = ctx.new_uuid();
            ecs::Container {
                container_arn: Some(arn::container(&ctx.partition, n.cluster, &id, &uuid)),
                task_arn: Some(task_arn.clone()),
                name: c.name.clone(),
                image: c.image.clone(),
                last_status: Some("PENDING".into()),
                network_interfaces: Some(vec![]),
                health_status: Some(ecs::HealthStatus::parse("UNKNOWN")),
                cpu: Some(c.cpu.unwrap_or(0).to_string()),
                memory: c.memory.map(|m| m.to_string()),
                memory_reservation: c.memory_reservation.map(|m| m.to_string()),
                ..Default::default()
            }
        })
        .collect();
    let mut overrides = n.overrides.clone();
    // ECS echoes one override entry per container, empty when nothing was overridden.
    let mut container_overrides = overrides.container_overrides.take().unwrap_or_default();
    for c in td.container_definitions.as_deref().unwrap_or_default() {
        if !container_overrides.iter().any(|o| o.name == c.name) {
            container_overrides.push(ContainerOverride {
                name: c.name.clone(),
                ..Default::default()
            });
        }
    }
    overrides.container_overrides = Some(container_overrides);
    overrides
        .inference_accelerator_overrides
        .get_or_insert_with(Vec::new);
    let fargate = n.launch_type == LaunchType::Fargate;
    let task = ecs::Task {
        task_arn: Some(task_arn),
        cluster_arn: Some(arn::cluster(&ctx.partition, n.cluster)),
        task_definition_arn: td.task_definition_arn.clone(),
        container_instance_arn: p
            .instances
            .get(instance_id)
            .and_then(|i| i.instance.container_instance_arn.clone()),
        overrides: Some(overrides),
        last_status: Some("PROVISIONING".into()),
        desired_status: Some("RUNNING".into()),
        cpu: Some(n.reservation.cpu.to_string()),
        memory: Some(n.reservation.memory.to_string()),
        containers: Some(containers),
        started_by: n.started_by.clone(),
        group: Some(n.group.clone()),
        launch_type: Some(n.launch_type.clone()),
        version: Some(1),
        created_at: Some(ctx.now_secs()),
        connectivity: Some(ecs::Connectivity::Connected),
        connectivity_at: Some(ctx.now_secs()),
        health_status: Some(ecs::HealthStatus::parse("UNKNOWN")),
        availability_zone: Some(format!("{}a", ctx.partition.region)),
        attachments: Some(
            n.subnet
                .as_deref()
                .filter(|_| td.network_mode == Some(NetworkMode::Awsvpc))
                .map(|s| eni_attachment(ctx, s))
                .into_iter()
                .collect(),
        ),
        attributes: Some(vec![ecs::Attribute {
            name: Some("ecs.cpu-architecture".into()),
            value: Some(std::env::consts::ARCH.replace("aarch64", "arm64")),
            ..Default::default()
        }]),
        enable_execute_command: Some(false),
        tags: Some(n.tags.clone()),
        platform_version: fargate.then(|| "1.4.0".to_string()),
        platform_family: fargate.then(|| "Linux".to_string()),
        ephemeral_storage: fargate.then_some(ecs::EphemeralStorage {
            size_in_gi_b: Some(20),
        }),
        ..Default::default()
    };
    let rec = TaskRecord {
        cluster: n.cluster.to_string(),
        task: task.clone(),
        instance_id: Some(instance_id.to_string()),
        client_token: n.client_token.clone(),
        reservation: n.reservation.clone(),
        stopped_at_ms: None,
    };
    ctx.put(Kind::Task, &keys::task(n.cluster, &id), &rec);
    p.tasks.insert(id, rec);
    container_instance::wake(p, ctx, instance_id);
    task
}

/// The cluster's ACTIVE, connected instances as placement sees them, for a task of `group`
/// (`ports`: whether it needs host ports, the only case that reads `ports_used`), and
/// whether the constraints ask for `distinctInstance`.
pub(crate) fn candidates<'p>(
    p: &'p Partition,
    ctx: &Ctx<'_>,
    cluster_name: &str,
    constraints: &[PlacementConstraint],
    group: &str,
    ports: bool,
) -> Result<(Vec<Candidate<'p>>, bool), EcsError> {
    let mut exprs = Vec::new();
    let mut distinct = false;
    for c in constraints {
        match c.r#type {
            Some(PlacementConstraintType::DistinctInstance) => distinct = true,
            Some(PlacementConstraintType::MemberOf) => {
                let e = c.expression.as_deref().unwrap_or_default();
                exprs.push(query::parse(e).map_err(|err| {
                    EcsError::invalid(format!(
                        "Invalid placement constraint expression '{e}': {err}."
                    ))
                })?);
            }
            _ => return Err(EcsError::invalid("Placement constraint type is required.")),
        }
    }
    let mut out = Vec::new();
    for (id, rec) in p
        .instances
        .iter()
        .filter(|(_, r)| r.cluster == cluster_name)
    {
        if rec.instance.status.as_deref() != Some("ACTIVE") || !connected(p, id, ctx.now_ms) {
            continue;
        }
        let (cpu, mem) = container_instance::registered_cpu_memory(rec);
        // One look-up of the instance's usage for resources and group (no ports collected
        // unless the task needs host ports).
        let usage = p.tasks.usage_on(id);
        let (used_cpu, used_mem) = usage.map_or((0, 0), container_instance::used_cpu_memory);
        let ports_used = if ports {
            let mut all = container_instance::registered_ports(rec);
            all.extend(usage.into_iter().flat_map(|u| u.ports.keys().copied()));
            all.into_iter().collect()
        } else {
            BTreeSet::new()
        };
        out.push(Candidate {
            id,
            arn: rec
                .instance
                .container_instance_arn
                .as_deref()
                .unwrap_or_default(),
            cpu_free: cpu - used_cpu,
            memory_free: mem - used_mem,
            ports_used,
            member_of_ok: exprs
                .iter()
                .all(|e| container_instance::matches(p, id, rec, ctx.now_ms, e)),
            same_group: usage.map_or(0, |u| u.in_group(group)),
            attributes: rec.instance.attributes.as_deref().unwrap_or_default(),
        });
    }
    Ok((out, distinct))
}

pub(crate) fn resolve_launch_type(
    td: &ecs::TaskDefinition,
    requested: Option<LaunchType>,
) -> Result<LaunchType, EcsError> {
    let lt = requested.unwrap_or(LaunchType::Ec2);
    let compat = td.compatibilities.as_deref().unwrap_or_default();
    let needed = match lt {
        LaunchType::Fargate => Compatibility::Fargate,
        LaunchType::External => Compatibility::External,
        LaunchType::ManagedInstances => Compatibility::ManagedInstances,
        _ => Compatibility::Ec2,
    };
    if lt != LaunchType::External && !compat.contains(&needed) {
        return Err(EcsError::invalid(format!(
            "Task definition does not support launch_type {lt}."
        )));
    }
    Ok(lt)
}

fn task_tags(
    ctx: &Ctx<'_>,
    td: &TaskDefinitionRecord,
    req_tags: Vec<ecs::Tag>,
    managed: bool,
    propagate: Option<&ecs::PropagateTags>,
    cluster_name: &str,
) -> Result<Vec<ecs::Tag>, EcsError> {
    tags::validate(&req_tags)?;
    let mut out = req_tags;
    match propagate {
        Some(ecs::PropagateTags::TaskDefinition) => {
            for t in &td.tags {
                if !out.iter().any(|x| x.key == t.key) {
                    out.push(t.clone());
                }
            }
        }
        Some(ecs::PropagateTags::Service) => {
            return Err(EcsError::invalid(
                "The 'SERVICE' value for propagateTags is only valid for tasks started by a service.",
            ));
        }
        _ => {}
    }
    let _ = ctx;
    if managed {
        out.push(ecs::Tag {
            key: Some("aws:ecs:clusterName".into()),
            value: Some(cluster_name.into()),
        });
    }
    Ok(out)
}

/// RunTask.
pub fn run(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    req: RunTaskRequest,
) -> Result<RunTaskResponse, EcsError> {
    let cluster_name = cluster::find_active(p, ctx, req.cluster.as_deref())?
        .cluster
        .cluster_name
        .clone()
        .unwrap_or_default();
    let count = req.count.unwrap_or(1);
    if !(1..=10).contains(&count) {
        return Err(EcsError::invalid("Count must be between 1 and 10."));
    }
    let td = task_definition::resolve(p, ctx, req.task_definition.as_deref().unwrap_or_default())?
        .clone();
    if task_definition::status_of(&td) != "ACTIVE" {
        return Err(EcsError::client("TaskDefinition is inactive"));
    }
    // Idempotency: the same client token returns the tasks it started.
    if let Some(token) = req.client_token.as_deref() {
        if token.is_empty() || token.len() > 64 {
            return Err(EcsError::invalid(
                "clientToken must be between 1 and 64 characters.",
            ));
        }
        let previous: Vec<ecs::Task> = p
            .tasks
            .values()
            .filter(|t| t.cluster() == cluster_name && t.client_token() == Some(token))
            .map(|t| t.record().map(|r| r.task.clone()))
            .collect::<Result<_, _>>()
            .map_err(unreadable)?;
        if !previous.is_empty() {
            let same_def = previous
                .iter()
                .all(|t| t.task_definition_arn == td.task_definition.task_definition_arn);
            if !same_def {
                return Err(EcsError::Conflict {
                    message: "The clientToken was already used with different parameters.".into(),
                    resource_ids: previous.iter().filter_map(|t| t.task_arn.clone()).collect(),
                });
            }
            return Ok(RunTaskResponse {
                tasks: Some(previous),
                failures: Some(vec![]),
            });
        }
    }
    if req.launch_type.is_some()
        && req
            .capacity_provider_strategy
            .as_ref()
            .is_some_and(|s| !s.is_empty())
    {
        return Err(EcsError::invalid(
            "Specifying both a launch type and capacity provider strategy is not supported.",
        ));
    }
    let requested_lt = req.launch_type.clone().or_else(|| {
        let fargate = req
            .capacity_provider_strategy
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|s| {
                s.capacity_provider
                    .as_deref()
                    .is_some_and(|n| n.starts_with("FARGATE"))
            });
        fargate.then_some(LaunchType::Fargate)
    });
    let launch_type = resolve_launch_type(&td.task_definition, requested_lt)?;
    validate_network(&td.task_definition, req.network_configuration.as_ref())?;
    let overrides = req.overrides.clone().unwrap_or_default();
    validate_overrides(&td.task_definition, &overrides)?;
    if let Some(s) = &req.started_by {
        validate_started_by(s)?;
    }
    let family = td.task_definition.family.clone().unwrap_or_default();
    let group = req
        .group
        .clone()
        .unwrap_or_else(|| format!("family:{family}"));
    if group.is_empty() || group.len() > 255 {
        return Err(EcsError::invalid(
            "group must be between 1 and 255 characters.",
        ));
    }
    let constraints: Vec<PlacementConstraint> =
        req.placement_constraints.clone().unwrap_or_default();
    if constraints.len()
        + td.task_definition
            .placement_constraints
            .as_ref()
            .map_or(0, Vec::len)
        > 10
    {
        return Err(EcsError::invalid(
            "At most 10 placement constraints are allowed.",
        ));
    }
    let strategies: Vec<PlacementStrategy> = req.placement_strategy.clone().unwrap_or_default();
    if strategies.len() > 5 {
        return Err(EcsError::invalid(
            "At most 5 placement strategies are allowed.",
        ));
    }
    if launch_type == LaunchType::Fargate && (!constraints.is_empty() || !strategies.is_empty()) {
        return Err(EcsError::invalid(
            "Task placement is not supported for the Fargate launch type.",
        ));
    }
    let tags = task_tags(
        ctx,
        &td,
        req.tags.clone().unwrap_or_default(),
        req.enable_ecs_managed_tags == Some(true),
        req.propagate_tags.as_ref(),
        &cluster_name,
    )?;
    let mut all_constraints = constraints;
    for c in td
        .task_definition
        .placement_constraints
        .as_deref()
        .unwrap_or_default()
    {
        all_constraints.push(PlacementConstraint {
            r#type: Some(PlacementConstraintType::MemberOf),
            expression: c.expression.clone(),
        });
    }
    let res = reservation(&td.task_definition, &overrides, &launch_type);
    let (mut cands, distinct) = candidates(
        p,
        ctx,
        &cluster_name,
        &all_constraints,
        &group,
        !res.ports.is_empty(),
    )?;
    let any_registered = p
        .instances
        .values()
        .any(|i| i.cluster == cluster_name && i.instance.status.as_deref() != Some("INACTIVE"));
    if !any_registered {
        return Err(EcsError::invalid(
            "No Container Instances were found in your cluster.",
        ));
    }
    let need = Need {
        cpu: res.cpu,
        memory: res.memory,
        ports: res.ports.clone(),
        counted: res.counted,
        group: group.clone(),
        distinct_instance: distinct,
    };
    let plan = placement::place(
        &mut cands,
        &need,
        usize::try_from(count).unwrap_or(1),
        &strategies,
        ctx.rng,
    );
    let new = NewTask {
        cluster: &cluster_name,
        td: &td,
        overrides,
        launch_type,
        started_by: req.started_by.clone(),
        group,
        tags,
        client_token: req.client_token.clone(),
        reservation: res,
        subnet: first_subnet(req.network_configuration.as_ref()),
    };
    let tasks: Vec<ecs::Task> = plan
        .placed
        .iter()
        .map(|id| create_task(p, ctx, &new, id))
        .collect();
    let failures = plan
        .failures
        .into_iter()
        .map(|(arn, reason)| ecs::Failure {
            arn,
            reason: Some(reason),
            detail: None,
        })
        .collect();
    Ok(RunTaskResponse {
        tasks: Some(tasks),
        failures: Some(failures),
    })
}

/// StartTask: run on the named container instances (no placement strategy).
pub fn start(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    req: StartTaskRequest,
) -> Result<StartTaskResponse, EcsError> {
    let cluster_name = cluster::find_active(p, ctx, req.cluster.as_deref())?
        .cluster
        .cluster_name
        .clone()
        .unwrap_or_default();
    let refs = req.container_instances.clone().unwrap_or_default();
    if refs.is_empty() || refs.len() > 10 {
        return Err(EcsError::invalid(
            "containerInstances must contain between 1 and 10 items.",
        ));
    }
    let td = task_definition::resolve(p, ctx, req.task_definition.as_deref().unwrap_or_default())?
        .clone();
    if task_definition::status_of(&td) != "ACTIVE" {
        return Err(EcsError::client("TaskDefinition is inactive"));
    }
    validate_network(&td.task_definition, req.network_configuration.as_ref())?;
    let overrides = req.overrides.clone().unwrap_or_default();
    validate_overrides(&td.task_definition, &overrides)?;
    if let Some(s) = &req.started_by {
        validate_started_by(s)?;
    }
    let family = td.task_definition.family.clone().unwrap_or_default();
    let group = req
        .group
        .clone()
        .unwrap_or_else(|| format!("family:{family}"));
    let tags = task_tags(
        ctx,
        &td,
        req.tags.clone().unwrap_or_default(),
        req.enable_ecs_managed_tags == Some(true),
        req.propagate_tags.as_ref(),
        &cluster_name,
    )?;
    let res = reservation(&td.task_definition, &overrides, &LaunchType::Ec2);
    let (cands, _) = candidates(p, ctx, &cluster_name, &[], &group, !res.ports.is_empty())?;
    let mut ids = Vec::new();
    let mut failures = Vec::new();
    for r in &refs {
        let id =
            arn::resource_id(&ctx.partition, "container-instance", &cluster_name, r).filter(|id| {
                p.instances
                    .get(*id)
                    .is_some_and(|i| i.cluster == cluster_name)
            });
        match id {
            None => failures.push(ecs::Failure {
                arn: Some(r.clone()),
                reason: Some("MISSING".into()),
                detail: None,
            }),
            Some(id) => match cands.iter().find(|c| c.id == id) {
                None => failures.push(ecs::Failure {
                    arn: Some(r.clone()),
                    reason: Some("AGENT".into()),
                    detail: None,
                }),
                Some(c) => {
                    let reason = if c.cpu_free < res.cpu {
                        Some("RESOURCE:CPU")
                    } else if c.memory_free < res.memory {
                        Some("RESOURCE:MEMORY")
                    } else if res.ports.iter().any(|x| c.ports_used.contains(x)) {
                        Some("RESOURCE:PORTS")
                    } else {
                        None
                    };
                    match reason {
                        Some(reason) => failures.push(ecs::Failure {
                            arn: Some(c.arn.to_string()),
                            reason: Some(reason.into()),
                            detail: None,
                        }),
                        None => ids.push(id.to_string()),
                    }
                }
            },
        }
    }
    let new = NewTask {
        cluster: &cluster_name,
        td: &td,
        overrides,
        launch_type: LaunchType::Ec2,
        started_by: req.started_by.clone(),
        group,
        tags,
        client_token: None,
        reservation: res,
        subnet: first_subnet(req.network_configuration.as_ref()),
    };
    let tasks = ids.iter().map(|id| create_task(p, ctx, &new, id)).collect();
    Ok(StartTaskResponse {
        tasks: Some(tasks),
        failures: Some(failures),
    })
}

fn find_task_id(
    p: &Partition,
    ctx: &Ctx<'_>,
    cluster_name: &str,
    reference: &str,
) -> Option<String> {
    let id = arn::resource_id(&ctx.partition, "task", cluster_name, reference)?;
    p.tasks
        .get(id)
        .filter(|t| t.cluster() == cluster_name)
        .map(|_| id.to_string())
}

/// Mark a task to be stopped (by the user or the scheduler). Returns false if it already was.
pub fn request_stop(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    id: &str,
    code: TaskStopCode,
    reason: &str,
) -> bool {
    // Checked before `get_mut`, which would decode a compact (STOPPED) task.
    if p.tasks
        .get(id)
        .is_none_or(|t| t.desired_status() == Some("STOPPED") || t.is_stopped())
    {
        return false;
    }
    let Some(mut t) = p.tasks.get_mut(id) else {
        return false;
    };
    t.task.desired_status = Some("STOPPED".into());
    t.task.stop_code = Some(code);
    t.task.stopped_reason = Some(reason.to_string());
    t.task.version = Some(t.task.version.unwrap_or(0) + 1);
    let instance = t.instance_id.clone();
    drop(t);
    let orphaned = instance.as_ref().is_none_or(|i| {
        p.instances
            .get(i)
            .is_none_or(|r| r.instance.status.as_deref() == Some("INACTIVE"))
    });
    let t = if orphaned {
        p.tasks.get_mut(id).map(|mut t| {
            finish_stopped(Some(&mut *t), ctx.now_ms);
            TaskRecord::clone(&t)
        })
    } else {
        p.tasks
            .get(id)
            .and_then(|t| t.record().ok())
            .map(std::borrow::Cow::into_owned)
    };
    if let Some(saved) = t {
        ctx.put(Kind::Task, &keys::task(&saved.cluster, id), &saved);
    }
    if let Some(i) = instance {
        container_instance::wake(p, ctx, &i);
    }
    true
}

fn finish_stopped(t: Option<&mut TaskRecord>, now_ms: i64) {
    let Some(t) = t else { return };
    t.task.last_status = Some("STOPPED".into());
    t.task.desired_status = Some("STOPPED".into());
    t.task.stopped_at.get_or_insert(secs(now_ms));
    t.task.execution_stopped_at.get_or_insert(secs(now_ms));
    t.stopped_at_ms.get_or_insert(now_ms);
    for c in t.task.containers.iter_mut().flatten() {
        c.last_status = Some("STOPPED".into());
    }
    for a in t.task.attachments.iter_mut().flatten() {
        if a.r#type.as_deref() == Some("ElasticNetworkInterface") {
            a.status = Some("DELETED".into());
        }
    }
}

/// StopTask.
pub fn stop(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    req: StopTaskRequest,
) -> Result<StopTaskResponse, EcsError> {
    let cluster_name = cluster::find_active(p, ctx, req.cluster.as_deref())?
        .cluster
        .cluster_name
        .clone()
        .unwrap_or_default();
    let reference = req.task.unwrap_or_default();
    let id = find_task_id(p, ctx, &cluster_name, &reference)
        .ok_or_else(|| EcsError::invalid("The referenced task was not found."))?;
    if let Some(r) = &req.reason
        && r.len() > 1024
    {
        return Err(EcsError::invalid("reason must be at most 1024 characters."));
    }
    let reason = req
        .reason
        .clone()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "Task stopped by user".into());
    request_stop(p, ctx, &id, TaskStopCode::UserInitiated, &reason);
    let task = p
        .tasks
        .get(&id)
        .map(|t| t.record().map(|r| r.task.clone()))
        .transpose()
        .map_err(unreadable)?;
    Ok(StopTaskResponse { task })
}

/// DescribeTasks.
pub fn describe(
    p: &Partition,
    ctx: &Ctx<'_>,
    req: DescribeTasksRequest,
) -> Result<DescribeTasksResponse, EcsError> {
    let cluster_name = cluster::find_active(p, ctx, req.cluster.as_deref())?
        .cluster
        .cluster_name
        .clone()
        .unwrap_or_default();
    let refs = req.tasks.unwrap_or_default();
    if refs.is_empty() {
        return Err(EcsError::invalid("Tasks cannot be empty."));
    }
    if refs.len() > 100 {
        return Err(EcsError::invalid("tasks can have at most 100 items."));
    }
    let with_tags = req
        .include
        .unwrap_or_default()
        .iter()
        .any(|i| i.as_str() == "TAGS");
    let mut tasks = Vec::new();
    let mut failures = Vec::new();
    for r in refs {
        match find_task_id(p, ctx, &cluster_name, &r) {
            Some(id) => {
                let Some(rec) = p.tasks.get(&id) else {
                    continue;
                };
                let mut t = match rec.record().map_err(unreadable)? {
                    std::borrow::Cow::Borrowed(r) => r.task.clone(),
                    std::borrow::Cow::Owned(r) => r.task,
                };
                if !with_tags {
                    t.tags = None;
                }
                // ECS reports a task whose agent it cannot reach as DISCONNECTED.
                let reachable = rec.is_stopped()
                    || rec
                        .instance_id()
                        .is_none_or(|i| container_instance::connected(p, i, ctx.now_ms));
                if !reachable {
                    t.connectivity = Some(ecs::Connectivity::Disconnected);
                }
                tasks.push(t);
            }
            None => failures.push(ecs::Failure {
                arn: Some(if r.starts_with("arn:") {
                    r.clone()
                } else {
                    arn::task(&ctx.partition, &cluster_name, &r)
                }),
                reason: Some("MISSING".into()),
                detail: None,
            }),
        }
    }
    Ok(DescribeTasksResponse {
        tasks: Some(tasks),
        failures: Some(failures),
    })
}

/// ListTasks with ECS's filters.
pub fn list(
    p: &Partition,
    ctx: &Ctx<'_>,
    req: ListTasksRequest,
) -> Result<ListTasksResponse, EcsError> {
    let cluster_name = cluster::find_active(p, ctx, req.cluster.as_deref())?
        .cluster
        .cluster_name
        .clone()
        .unwrap_or_default();
    let limit = pagination::max_results(req.max_results, 100)?;
    if req.started_by.is_some()
        && (req.family.is_some()
            || req.service_name.is_some()
            || req.container_instance.is_some()
            || req.desired_status.is_some()
            || req.launch_type.is_some())
    {
        // ECS: startedBy cannot be combined with other filters except the cluster.
    }
    let instance_id = match req.container_instance.as_deref() {
        Some(r) => Some(
            arn::resource_id(&ctx.partition, "container-instance", &cluster_name, r)
                .map(str::to_string)
                .ok_or_else(|| {
                    EcsError::invalid("The referenced container instance was not found.")
                })?,
        ),
        None => None,
    };
    let desired = req
        .desired_status
        .as_ref()
        .map_or("RUNNING", |d| d.as_str())
        .to_string();
    let service_group = req
        .service_name
        .as_ref()
        .map(|s| format!("service:{}", arn::last_segment(s)));
    // The tasks desired RUNNING (the default filter) come from their index: a scan of every
    // task kept (STOPPED ones stay an hour) made each listing O(tasks ever run in the hour).
    let source: Box<dyn Iterator<Item = (&String, TaskRef<'_>)>> = if desired == "RUNNING" {
        Box::new(p.tasks.desired_running())
    } else {
        Box::new(p.tasks.iter())
    };
    let items = source
        .filter(|(_, t)| t.cluster() == cluster_name)
        .filter(|(_, t)| t.desired_status() == Some(desired.as_str()))
        .filter(|(_, t)| {
            req.started_by
                .as_deref()
                .is_none_or(|s| t.started_by() == Some(s))
        })
        .filter(|(_, t)| {
            req.family.as_ref().is_none_or(|f| {
                t.task_definition_arn()
                    .and_then(|a| a.rsplit_once('/'))
                    .and_then(|(_, fr)| fr.rsplit_once(':'))
                    .is_some_and(|(fam, _)| fam == f)
            })
        })
        .filter(|(_, t)| {
            service_group
                .as_ref()
                .is_none_or(|g| t.group() == Some(g.as_str()))
        })
        .filter(|(_, t)| {
            instance_id
                .as_ref()
                .is_none_or(|i| t.instance_id() == Some(i.as_str()))
        })
        .filter(|(_, t)| {
            req.launch_type
                .as_ref()
                .is_none_or(|l| t.launch_type() == Some(l))
        })
        .map(|(id, t)| (id.as_str(), t.task_arn().unwrap_or_default()));
    // Lazily: only the page's tasks are copied out.
    let (arns, next) = pagination::page(items, req.next_token.as_deref(), limit)?;
    Ok(ListTasksResponse {
        task_arns: Some(arns.into_iter().map(str::to_string).collect()),
        next_token: next,
    })
}

/// The moments (epoch ms) at which instance `id`'s RUNNING tasks will have run for
/// [`crate::service_plan::HEALTHY_AFTER_MS`]: a service deployment counts a task as settled
/// only once its agent has been heard from that long after the task started.
fn settle_times<'a>(p: &'a Partition, id: &str) -> impl Iterator<Item = i64> + use<'a> {
    p.tasks.live_on(id).filter_map(|(_, t)| {
        if t.task.last_status.as_deref() != Some("RUNNING") {
            return None;
        }
        #[allow(clippy::cast_possible_truncation)]
        let started_ms = (t.task.started_at? * 1000.0) as i64;
        Some(started_ms.saturating_add(crate::service_plan::HEALTHY_AFTER_MS))
    })
}

/// The soonest moment after `now_ms` at which one of instance `id`'s RUNNING tasks settles
/// (see [`settle_times`]), so that the agent's long poll can end then and its next sync, the
/// heartbeat that shows the task settled, comes at once rather than up to a poll later.
pub fn next_settle_ms(p: &Partition, id: &str, now_ms: i64) -> Option<i64> {
    settle_times(p, id).filter(|&t| t > now_ms).min()
}

/// Whether a heartbeat at `to_ms`, after the one at `from_ms`, is the first to show one of
/// instance `id`'s RUNNING tasks settled: the service scheduler has something new to see then,
/// although nothing changed.
pub fn settles_between(p: &Partition, id: &str, from_ms: i64, to_ms: i64) -> bool {
    settle_times(p, id).any(|t| from_ms < t && t <= to_ms)
}

/// The desired state of instance `id`: every task placed there that is not yet STOPPED.
pub fn desired_state(p: &Partition, id: &str) -> DesiredState {
    let version = container_instance::desired_version(p, id);
    // The tasks of one revision share one copy of it.
    let mut definitions: BTreeMap<&str, Arc<ecs::TaskDefinition>> = BTreeMap::new();
    let tasks = p
        .tasks
        .live_on(id)
        .filter_map(|(_, t)| {
            let td_arn = t.task.task_definition_arn.as_deref()?;
            let task_definition = match definitions.get(td_arn) {
                Some(td) => Arc::clone(td),
                None => {
                    let (family, rev) = td_arn.rsplit_once('/')?.1.rsplit_once(':')?;
                    let td = p.families.get(family)?.revisions.get(&rev.parse().ok()?)?;
                    let td = Arc::new(td.task_definition.clone());
                    definitions.insert(td_arn, Arc::clone(&td));
                    td
                }
            };
            let overrides = t.task.overrides.clone().unwrap_or_default();
            let registry_auth = registry_auth(p, t, &task_definition);
            Some(DesiredTask {
                task_arn: t.task.task_arn.clone().unwrap_or_default(),
                cluster_arn: t.task.cluster_arn.clone().unwrap_or_default(),
                desired_status: t
                    .task
                    .desired_status
                    .clone()
                    .unwrap_or_else(|| "RUNNING".into()),
                cpu: t.task.cpu.clone(),
                memory: t.task.memory.clone(),
                task_definition,
                overrides,
                launch_type: t
                    .task
                    .launch_type
                    .as_ref()
                    .map_or("EC2", |l| l.as_str())
                    .to_string(),
                stop_reason: t.task.stopped_reason.clone(),
                registry_auth,
            })
        })
        .collect();
    DesiredState { version, tasks }
}

/// The registry credentials of a task's containers with `repositoryCredentials`, resolved
/// from Secrets Manager while the agent may still pull their images (the task is wanted
/// RUNNING and has not reached it); afterwards none are sent.
fn registry_auth(
    p: &Partition,
    t: &TaskRecord,
    td: &ecs::TaskDefinition,
) -> BTreeMap<String, crate::agent_protocol::RegistryAuth> {
    use crate::agent_protocol::RegistryAuth;
    let pulling = t.task.desired_status.as_deref() != Some("STOPPED")
        && matches!(
            t.task.last_status.as_deref(),
            None | Some("PROVISIONING" | "PENDING" | "ACTIVATING")
        );
    if !pulling {
        return BTreeMap::new();
    }
    td.container_definitions
        .iter()
        .flatten()
        .filter_map(|c| {
            let parameter = c
                .repository_credentials
                .as_ref()?
                .credentials_parameter
                .as_deref()?;
            let auth = match crate::secretsmanager::registry_credentials(p, parameter) {
                Ok(creds) => RegistryAuth::Credentials(creds),
                Err(reason) => RegistryAuth::Unavailable(reason),
            };
            Some((c.name.clone().unwrap_or_default(), auth))
        })
        .collect()
}

/// Apply an agent's report about a task on instance `instance_id`. Reports about tasks
/// that are not placed there are ignored (an agent cannot touch another instance's tasks).
/// Status never moves backwards; STOPPED is final.
pub fn apply_report(p: &mut Partition, ctx: &mut Ctx<'_>, instance_id: &str, r: &TaskReport) {
    let id = arn::last_segment(&r.task_arn).to_string();
    // Checked before `get_mut`, which would decode a compact (STOPPED) task.
    if !p
        .tasks
        .get(&id)
        .is_some_and(|t| t.instance_id() == Some(instance_id) && !t.is_stopped())
    {
        return;
    }
    let Some(mut t) = p.tasks.get_mut(&id) else {
        return;
    };
    let before = t.clone();
    let current = t.task.last_status.clone().unwrap_or_default();
    if rank(&r.last_status) > rank(&current) {
        t.task.last_status = Some(r.last_status.clone());
    }
    let set = |field: &mut Option<f64>, ms: Option<i64>| {
        if let Some(ms) = ms {
            field.get_or_insert(secs(ms));
        }
    };
    set(&mut t.task.pull_started_at, r.pull_started_at_ms);
    set(&mut t.task.pull_stopped_at, r.pull_stopped_at_ms);
    set(&mut t.task.started_at, r.started_at_ms);
    set(&mut t.task.stopping_at, r.stopping_at_ms);
    set(&mut t.task.execution_stopped_at, r.execution_stopped_at_ms);
    if let Some(h) = &r.health_status {
        t.task.health_status = Some(ecs::HealthStatus::parse(h));
    }
    for c in t.task.containers.iter_mut().flatten() {
        let Some(cr) = r
            .containers
            .iter()
            .find(|x| Some(x.name.as_str()) == c.name.as_deref())
        else {
            continue;
        };
        if rank_container(&cr.last_status)
            >= rank_container(c.last_status.as_deref().unwrap_or("PENDING"))
        {
            c.last_status = Some(cr.last_status.clone());
        }
        if cr.exit_code.is_some() {
            c.exit_code = cr.exit_code;
        }
        if let Some(reason) = &cr.reason {
            c.reason = Some(reason.chars().take(1024).collect());
        }
        if cr.runtime_id.is_some() {
            c.runtime_id = cr.runtime_id.clone();
        }
        if let Some(h) = &cr.health_status {
            c.health_status = Some(ecs::HealthStatus::parse(h));
        }
        if !cr.network_bindings.is_empty() {
            c.network_bindings = Some(cr.network_bindings.clone());
        }
    }
    if let Some((ip, mac)) = r
        .containers
        .iter()
        .find_map(|c| Some((c.private_ipv4_address.as_deref()?, c.mac_address.as_deref())))
    {
        attach_eni(&mut t.task, ip, mac, &ctx.partition.region);
    }
    // The agent's verdict explains a task that stopped on its own; a stop the server asked
    // for keeps the server's code and reason.
    if (r.last_status == "STOPPED" || r.stop_code.is_some()) && t.task.stop_code.is_none() {
        t.task.stop_code = r.stop_code.as_deref().map(TaskStopCode::parse);
        t.task.stopped_reason = r.stopped_reason.clone();
    }
    let stopped_now = r.last_status == "STOPPED";
    if stopped_now {
        let ms = r.stopped_at_ms.unwrap_or(ctx.now_ms);
        finish_stopped(Some(&mut *t), ms);
    }
    if *t != before {
        t.task.version = Some(before.task.version.unwrap_or(0) + 1);
        let saved = t.clone();
        drop(t);
        ctx.put(Kind::Task, &keys::task(&saved.cluster, &id), &saved);
        if stopped_now {
            container_instance::wake(p, ctx, instance_id);
        }
    }
}

fn rank_container(s: &str) -> usize {
    match s {
        "PENDING" => 0,
        "RUNNING" => 1,
        "STOPPED" => 2,
        _ => 0,
    }
}

/// Forget STOPPED tasks older than `retention_ms` (ECS keeps them at least an hour).
pub fn sweep(p: &mut Partition, ctx: &mut Ctx<'_>, retention_ms: i64) -> usize {
    let old: Vec<(String, String)> = p
        .tasks
        .iter()
        .filter(|(_, t)| {
            t.is_stopped()
                && t.stopped_at_ms()
                    .is_some_and(|s| ctx.now_ms - s > retention_ms)
        })
        .map(|(id, t)| (id.clone(), t.cluster().to_string()))
        .collect();
    for (id, cluster) in &old {
        p.tasks.remove(id);
        ctx.delete(Kind::Task, &keys::task(cluster, id));
    }
    old.len()
}

#[cfg(test)]
mod eni_tests {
    use super::*;

    fn task_with_eni() -> ecs::Task {
        ecs::Task {
            attachments: Some(vec![ecs::Attachment {
                id: Some("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".into()),
                r#type: Some("ElasticNetworkInterface".into()),
                status: Some("PRECREATED".into()),
                details: Some(vec![kv("subnetId", "subnet-1")]),
            }]),
            containers: Some(vec![ecs::Container::default(), ecs::Container::default()]),
            ..Default::default()
        }
    }

    fn detail(t: &ecs::Task, name: &str) -> Option<String> {
        t.attachments.as_ref()?[0]
            .details
            .as_ref()?
            .iter()
            .find(|d| d.name.as_deref() == Some(name))?
            .value
            .clone()
    }

    #[test]
    fn attaching_fills_ecs_details_and_every_container() {
        let mut t = task_with_eni();
        attach_eni(&mut t, "172.30.0.7", Some("02:42:ac:1e:00:07"), "eu-west-1");
        let a = &t.attachments.as_ref().unwrap()[0];
        assert_eq!(a.status.as_deref(), Some("ATTACHED"));
        assert_eq!(detail(&t, "subnetId").as_deref(), Some("subnet-1"));
        assert_eq!(
            detail(&t, "networkInterfaceId").as_deref(),
            Some("eni-0f1e2d3c4b5a69788")
        );
        assert_eq!(
            detail(&t, "privateDnsName").as_deref(),
            Some("ip-172-30-0-7.eu-west-1.compute.internal")
        );
        assert_eq!(
            detail(&t, "privateIPv4Address").as_deref(),
            Some("172.30.0.7")
        );
        assert_eq!(
            detail(&t, "macAddress").as_deref(),
            Some("02:42:ac:1e:00:07")
        );
        for c in t.containers.as_ref().unwrap() {
            let ni = &c.network_interfaces.as_ref().unwrap()[0];
            assert_eq!(ni.private_ipv4_address.as_deref(), Some("172.30.0.7"));
            assert_eq!(ni.attachment_id, a.id);
        }
    }

    #[test]
    fn an_attached_or_deleted_eni_is_not_changed_again() {
        let mut t = task_with_eni();
        attach_eni(&mut t, "172.30.0.7", None, "us-east-1");
        assert_eq!(
            detail(&t, "privateDnsName").as_deref(),
            Some("ip-172-30-0-7.ec2.internal")
        );
        let once = t.clone();
        attach_eni(&mut t, "172.30.0.9", None, "us-east-1");
        assert_eq!(t, once);
        let mut rec = TaskRecord {
            cluster: "default".into(),
            task: t,
            instance_id: None,
            client_token: None,
            reservation: Reservation::default(),
            stopped_at_ms: None,
        };
        finish_stopped(Some(&mut rec), 1_000);
        let a = &rec.task.attachments.as_ref().unwrap()[0];
        assert_eq!(a.status.as_deref(), Some("DELETED"));
        let stopped = rec.task.clone();
        attach_eni(&mut rec.task, "172.30.0.9", None, "us-east-1");
        assert_eq!(rec.task, stopped);
    }
}

#[cfg(test)]
mod settle_tests {
    use super::*;
    use crate::service_plan::HEALTHY_AFTER_MS;

    fn put(p: &mut Partition, id: &str, status: &str, started_ms: Option<i64>, desired: &str) {
        #[allow(clippy::cast_precision_loss)]
        let started_at = started_ms.map(|ms| ms as f64 / 1000.0);
        p.tasks.insert(
            id.into(),
            TaskRecord {
                cluster: "default".into(),
                task: ecs::Task {
                    task_arn: Some(format!("arn:aws:ecs:us-east-1:1:task/default/{id}")),
                    last_status: Some(status.into()),
                    desired_status: Some(desired.into()),
                    started_at,
                    ..Default::default()
                },
                instance_id: Some("i1".into()),
                client_token: None,
                reservation: Reservation::default(),
                stopped_at_ms: None,
            },
        );
    }

    #[test]
    fn running_tasks_settle_once_their_window_has_passed() {
        let mut p = Partition::default();
        put(&mut p, "a", "RUNNING", Some(10_000), "RUNNING");
        put(&mut p, "b", "RUNNING", Some(12_000), "RUNNING");
        put(&mut p, "c", "PENDING", None, "RUNNING");
        put(&mut p, "d", "PROVISIONING", Some(11_000), "RUNNING");
        let a = 10_000 + HEALTHY_AFTER_MS;
        let b = 12_000 + HEALTHY_AFTER_MS;
        assert_eq!(next_settle_ms(&p, "i1", 0), Some(a));
        assert_eq!(
            next_settle_ms(&p, "i1", a),
            Some(b),
            "a has settled by then"
        );
        assert_eq!(next_settle_ms(&p, "i1", b), None);
        assert_eq!(next_settle_ms(&p, "i2", 0), None, "another instance");
        assert!(settles_between(&p, "i1", a - 1, a));
        assert!(
            !settles_between(&p, "i1", a, b - 1),
            "a was shown settled before"
        );
        assert!(settles_between(&p, "i1", a, b + 5_000));
        assert!(!settles_between(&p, "i1", 0, a - 1));
        assert!(!settles_between(&p, "i2", 0, i64::MAX));
    }
}
