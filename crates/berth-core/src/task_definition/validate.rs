//! The checks ECS makes before it accepts a task definition, with ECS's wording where it is
//! known. [`validate`] runs them in a fixed order and reports the first problem, as ECS does;
//! every refusal is a `ClientException`.
//!
//! Sources for the wording: messages quoted in public error reports and preflight rule sets
//! that were checked against the real API (marked "ECS's wording" below); the rest follow
//! ECS's style (`Invalid setting for container '<name>'. ...`). The rules themselves come from
//! the API reference (botocore's model documentation) and the developer guide.
//!
//! Berth is deliberately conservative: a rule is here only when ECS documents it as a
//! registration-time check. Things ECS only refuses later (reserved host ports, which fail
//! placement; image existence) are accepted at registration, as ECS accepts them.

use super::normalize::{parse_cpu, parse_memory};
use berth_api::EcsError;
use berth_api::ecs::{
    Compatibility, ContainerCondition, ContainerDefinition, EFSAuthorizationConfigIAM,
    EFSTransitEncryption, HealthCheck, NetworkMode, PidMode, PortMapping,
    RegisterTaskDefinitionRequest, ResourceType, TaskDefinitionPlacementConstraintType,
    TransportProtocol, Volume,
};
use std::collections::{BTreeMap, BTreeSet};

/// Containers a task definition may hold (ECS's fixed quota).
pub const MAX_CONTAINERS: usize = 10;

/// Placement constraints a task may carry (task definition and run time together).
pub const MAX_PLACEMENT_CONSTRAINTS: usize = 10;

/// Environment files a container may load.
pub const MAX_ENVIRONMENT_FILES: usize = 10;

/// Exit codes a restart policy may ignore.
pub const MAX_IGNORED_EXIT_CODES: usize = 50;

/// The smallest container `memory`/`memoryReservation` (MiB) Docker 20.10+ accepts.
pub const MIN_CONTAINER_MEMORY_MIB: i32 = 6;

/// Host ports every container instance reserves by default (SSH, the Docker daemon, the ECS
/// agent). ECS accepts them in a task definition; a task asking for one simply cannot be
/// placed, so placement (not registration) consults this list.
pub const DEFAULT_RESERVED_HOST_PORTS: [i32; 6] = [22, 2375, 2376, 51678, 51679, 51680];

/// Task-level CPU units allowed outside Fargate.
pub const EC2_TASK_CPU_RANGE: std::ops::RangeInclusive<u32> = 128..=196_608;

/// Fargate's valid task sizes: CPU units and the memory values (MiB) allowed with each.
pub fn fargate_memory_ok(cpu: u32, memory: u32) -> bool {
    let in_steps = |lo: u32, hi: u32, step: u32| {
        memory >= lo && memory <= hi && (memory - lo).is_multiple_of(step)
    };
    match cpu {
        256 => matches!(memory, 512 | 1024 | 2048),
        512 => in_steps(1024, 4096, 1024),
        1024 => in_steps(2048, 8192, 1024),
        2048 => in_steps(4096, 16384, 1024),
        4096 => in_steps(8192, 30720, 1024),
        8192 => in_steps(16384, 61440, 4096),
        16384 => in_steps(32768, 122_880, 8192),
        _ => false,
    }
}

/// ECS's rule for family, container and volume names: 1 to 255 letters, digits, `_`, `-`.
pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn client(message: impl Into<String>) -> EcsError {
    EcsError::client(message)
}

fn invalid_container(name: &str, what: &str) -> EcsError {
    client(format!("Invalid setting for container '{name}'. {what}"))
}

fn fargate_unsupported(what: &str) -> EcsError {
    // ECS's wording.
    client(format!(
        "Fargate compatible task definitions do not support {what}"
    ))
}

fn non_empty<T>(v: Option<&Vec<T>>) -> bool {
    v.is_some_and(|v| !v.is_empty())
}

/// What the checks need to know about the request as a whole.
struct Def<'a> {
    req: &'a RegisterTaskDefinitionRequest,
    containers: &'a [ContainerDefinition],
    /// The network mode in effect (`bridge` when none is given).
    mode: NetworkMode,
    task_cpu: Option<u32>,
    task_memory: Option<u32>,
    fargate: bool,
}

impl<'a> Def<'a> {
    fn container(&self, name: &str) -> Option<&'a ContainerDefinition> {
        self.containers
            .iter()
            .find(|c| c.name.as_deref() == Some(name))
    }

    fn volumes(&self) -> &'a [Volume] {
        self.req.volumes.as_deref().unwrap_or_default()
    }
}

fn name_of(c: &ContainerDefinition) -> &str {
    c.name.as_deref().unwrap_or_default()
}

/// Check a RegisterTaskDefinition request as ECS does. The request has already passed the
/// model's own checks (required members, enum values) when it comes from the wire.
pub fn validate(req: &RegisterTaskDefinitionRequest) -> Result<(), EcsError> {
    check_family(req)?;
    let containers = req.container_definitions.as_deref().unwrap_or_default();
    check_container_list(containers)?;
    let requested = req.requires_compatibilities.as_deref().unwrap_or_default();
    let def = Def {
        req,
        containers,
        mode: req.network_mode.clone().unwrap_or(NetworkMode::Bridge),
        task_cpu: req.cpu.as_deref().map(parse_cpu).transpose()?,
        task_memory: req.memory.as_deref().map(parse_memory).transpose()?,
        fargate: requested.contains(&Compatibility::Fargate),
    };
    if def.fargate {
        check_fargate_size(&def)?;
    }
    check_launch_types(&def)?;
    check_task_size(&def)?;
    for c in containers {
        check_memory(&def, c)?;
        check_network(&def, c)?;
        check_ports(&def, c)?;
        if let Some(hc) = &c.health_check {
            check_health_check(name_of(c), hc)?;
        }
        check_timeouts(&def, c)?;
        check_container_settings(&def, c)?;
        check_logging(&def, c)?;
    }
    check_resource_sums(&def)?;
    check_port_names(containers)?;
    check_depends_on(&def)?;
    check_volumes(&def)?;
    check_mounts(&def)?;
    check_placement_constraints(&def)?;
    check_proxy(&def)?;
    check_ephemeral_storage(req)?;
    if def.fargate {
        fargate_features(&def)?;
    }
    Ok(())
}

/// Whether Fargate would accept the (otherwise valid) request: the test behind the
/// `FARGATE` entry of `compatibilities`.
pub fn fargate_compatible(req: &RegisterTaskDefinitionRequest) -> bool {
    let Ok(task_cpu) = req.cpu.as_deref().map(parse_cpu).transpose() else {
        return false;
    };
    let Ok(task_memory) = req.memory.as_deref().map(parse_memory).transpose() else {
        return false;
    };
    let def = Def {
        req,
        containers: req.container_definitions.as_deref().unwrap_or_default(),
        mode: req.network_mode.clone().unwrap_or(NetworkMode::Bridge),
        task_cpu,
        task_memory,
        fargate: true,
    };
    check_fargate_size(&def).is_ok()
        && def
            .containers
            .iter()
            .all(|c| check_timeouts(&def, c).is_ok() && check_logging(&def, c).is_ok())
        && fargate_features(&def).is_ok()
}

fn check_family(req: &RegisterTaskDefinitionRequest) -> Result<(), EcsError> {
    if is_name(req.family.as_deref().unwrap_or_default()) {
        Ok(())
    } else {
        Err(client(
            "Family contains invalid characters or is too long. Up to 255 letters (uppercase and lowercase), numbers, underscores, and hyphens are allowed.",
        ))
    }
}

fn check_container_list(containers: &[ContainerDefinition]) -> Result<(), EcsError> {
    if containers.is_empty() {
        // ECS's wording.
        return Err(client("Container list cannot be empty."));
    }
    if containers.len() > MAX_CONTAINERS {
        // ECS's wording.
        return Err(client("Too many containers."));
    }
    let mut seen = BTreeSet::new();
    for c in containers {
        let name = name_of(c);
        if name.is_empty() {
            // ECS's wording.
            return Err(client("Container.name should not be null or empty."));
        }
        if !is_name(name) {
            // ECS's wording.
            return Err(client("Container.name contains invalid characters."));
        }
        if !seen.insert(name) {
            // ECS's wording.
            return Err(client(
                "Container names must be unique within a task definition.",
            ));
        }
        if c.image.as_deref().unwrap_or_default().trim().is_empty() {
            // ECS's wording.
            return Err(client("Container.image should not be null or empty."));
        }
    }
    if !containers.iter().any(|c| c.essential.unwrap_or(true)) {
        // ECS's wording.
        return Err(client(
            "Task definition doesn't have any essential container.",
        ));
    }
    Ok(())
}

fn check_fargate_size(def: &Def<'_>) -> Result<(), EcsError> {
    if def.mode != NetworkMode::Awsvpc || def.req.network_mode.is_none() {
        // ECS's wording (with its typographic quotes).
        return Err(client(
            "Fargate only supports network mode \u{2018}awsvpc\u{2019}.",
        ));
    }
    let Some(cpu) = def.task_cpu else {
        // ECS's wording.
        return Err(client(
            "Fargate requires that 'cpu' be defined at the task level.",
        ));
    };
    let Some(memory) = def.task_memory else {
        return Err(client(
            "Fargate requires that 'memory' be defined at the task level.",
        ));
    };
    let windows = def
        .req
        .runtime_platform
        .as_ref()
        .and_then(|p| p.operating_system_family.as_ref())
        .is_some_and(|os| os.as_str().starts_with("WINDOWS"));
    if !fargate_memory_ok(cpu, memory) || (windows && cpu < 1024) {
        // ECS's wording.
        return Err(client(format!(
            "No Fargate configuration exists for given values: {cpu} CPU, {memory} memory. See the Amazon ECS documentation for the valid values."
        )));
    }
    Ok(())
}

fn check_launch_types(def: &Def<'_>) -> Result<(), EcsError> {
    let requested = def
        .req
        .requires_compatibilities
        .as_deref()
        .unwrap_or_default();
    if requested.contains(&Compatibility::ManagedInstances)
        && !matches!(
            def.req.network_mode,
            Some(NetworkMode::Awsvpc | NetworkMode::Host)
        )
    {
        return Err(client(
            "Managed Instances only supports network mode 'awsvpc' or 'host'; specify networkMode in the task definition.",
        ));
    }
    if requested.contains(&Compatibility::External) && def.mode == NetworkMode::Awsvpc {
        return Err(client(
            "External instances do not support network mode 'awsvpc'.",
        ));
    }
    Ok(())
}

fn check_task_size(def: &Def<'_>) -> Result<(), EcsError> {
    if let (Some(cpu), false) = (def.task_cpu, def.fargate)
        && !EC2_TASK_CPU_RANGE.contains(&cpu)
    {
        return Err(client(format!(
            "Invalid 'cpu' setting for task. Task CPU must be between {} and {} units, got {cpu}.",
            EC2_TASK_CPU_RANGE.start(),
            EC2_TASK_CPU_RANGE.end()
        )));
    }
    Ok(())
}

fn check_memory(def: &Def<'_>, c: &ContainerDefinition) -> Result<(), EcsError> {
    let name = name_of(c);
    for (field, value) in [
        ("memory", c.memory),
        ("memoryReservation", c.memory_reservation),
    ] {
        if let Some(v) = value
            && v < MIN_CONTAINER_MEMORY_MIB
        {
            return Err(invalid_container(
                name,
                &format!(
                    "The '{field}' value must be at least {MIN_CONTAINER_MEMORY_MIB} MiB, got {v}."
                ),
            ));
        }
    }
    if let (Some(m), Some(r)) = (c.memory, c.memory_reservation)
        && r > m
    {
        return Err(invalid_container(
            name,
            "'memory' must be greater than or equal to 'memoryReservation'.",
        ));
    }
    if def.task_memory.is_none() && c.memory.is_none() && c.memory_reservation.is_none() {
        // ECS's wording.
        return Err(invalid_container(
            name,
            "At least one of 'memory' or 'memoryReservation' must be specified.",
        ));
    }
    if let Some(task) = def.task_memory {
        for (field, value) in [
            ("memory", c.memory),
            ("memoryReservation", c.memory_reservation),
        ] {
            if let Some(v) = value
                && i64::from(v) > i64::from(task)
            {
                // ECS's wording.
                return Err(client(format!(
                    "The '{field}' setting for container '{name}' is greater than for the task."
                )));
            }
        }
    }
    if let Some(cpu) = c.cpu
        && cpu < 0
    {
        return Err(invalid_container(
            name,
            "The 'cpu' value must not be negative.",
        ));
    }
    Ok(())
}

fn check_resource_sums(def: &Def<'_>) -> Result<(), EcsError> {
    if let Some(task) = def.task_cpu {
        let sum: i64 = def
            .containers
            .iter()
            .map(|c| i64::from(c.cpu.unwrap_or(0).max(0)))
            .sum();
        if sum > i64::from(task) {
            // ECS's wording.
            return Err(client(
                "The sum of all container 'cpu' values cannot be greater than the value of the task 'cpu'.",
            ));
        }
    }
    if let Some(task) = def.task_memory {
        // What each container reserves: its soft limit if it has one, else its hard limit.
        let sum: i64 = def
            .containers
            .iter()
            .map(|c| i64::from(c.memory_reservation.or(c.memory).unwrap_or(0).max(0)))
            .sum();
        if sum > i64::from(task) {
            return Err(client(
                "The sum of all container memory reservations cannot be greater than the value of the task 'memory'.",
            ));
        }
    }
    Ok(())
}

fn check_network(def: &Def<'_>, c: &ContainerDefinition) -> Result<(), EcsError> {
    let mode = def.mode.as_str();
    if non_empty(c.links.as_ref()) && def.mode != NetworkMode::Bridge {
        // ECS's wording.
        return Err(client(format!(
            "Links are not supported when networkMode={mode}"
        )));
    }
    if def.mode == NetworkMode::Awsvpc {
        // ECS's wording for each.
        let unsupported = [
            (
                c.hostname.as_deref().is_some_and(|h| !h.is_empty()),
                "hostname is",
            ),
            (non_empty(c.dns_servers.as_ref()), "DNS servers are"),
            (
                non_empty(c.dns_search_domains.as_ref()),
                "DNS search domains are",
            ),
            (non_empty(c.extra_hosts.as_ref()), "Extra hosts are"),
            (c.disable_networking == Some(true), "Disable Networking is"),
        ];
        if let Some((_, what)) = unsupported.iter().find(|(set, _)| *set) {
            return Err(client(format!(
                "{what} not supported on container when networkMode=awsvpc"
            )));
        }
    }
    if def.mode == NetworkMode::None && non_empty(c.port_mappings.as_ref()) {
        return Err(invalid_container(
            name_of(c),
            "Port mappings are not supported when networkMode=none.",
        ));
    }
    Ok(())
}

/// `"first-last"` with `1 <= first < last <= 65535`.
pub fn parse_port_range(range: &str) -> Option<(i32, i32)> {
    let (a, b) = range.split_once('-')?;
    let first: i32 = a.trim().parse().ok()?;
    let last: i32 = b.trim().parse().ok()?;
    (1 <= first && first < last && last <= 65535).then_some((first, last))
}

fn protocol_of(pm: &PortMapping) -> &str {
    pm.protocol
        .as_ref()
        .map_or(TransportProtocol::Tcp.as_str(), TransportProtocol::as_str)
}

fn check_ports(def: &Def<'_>, c: &ContainerDefinition) -> Result<(), EcsError> {
    let name = name_of(c);
    let mut used: Vec<(i32, i32, &str)> = Vec::new();
    for pm in c.port_mappings.as_deref().unwrap_or_default() {
        let (first, last) = if let Some(range) = &pm.container_port_range {
            if pm.container_port.is_some() || pm.host_port.is_some() {
                // ECS's wording.
                return Err(invalid_container(
                    name,
                    "cannot specify both single port and port range",
                ));
            }
            if !matches!(def.mode, NetworkMode::Bridge | NetworkMode::Awsvpc) {
                return Err(invalid_container(
                    name,
                    &format!(
                        "containerPortRange is only supported when networkMode=bridge or networkMode=awsvpc, not {}.",
                        def.mode
                    ),
                ));
            }
            parse_port_range(range).ok_or_else(|| {
                invalid_container(
                    name,
                    &format!(
                        "Invalid 'containerPortRange' setting '{range}'. Specify 'first-last' with 1 <= first < last <= 65535."
                    ),
                )
            })?
        } else if let Some(port) = pm.container_port {
            if !(1..=65535).contains(&port) {
                return Err(invalid_container(
                    name,
                    &format!("The container port {port} is outside the range 1-65535."),
                ));
            }
            if let Some(hp) = pm.host_port {
                if !(0..=65535).contains(&hp) {
                    return Err(invalid_container(
                        name,
                        &format!("The host port {hp} is outside the range 0-65535."),
                    ));
                }
                // An explicit 0 means "unset" here too: ECS fills in the container port.
                if matches!(def.mode, NetworkMode::Awsvpc | NetworkMode::Host)
                    && hp != 0
                    && hp != port
                {
                    // ECS's wording.
                    return Err(client(format!(
                        "When networkMode={}, the host ports and container ports in port mappings must match.",
                        def.mode
                    )));
                }
            }
            (port, port)
        } else {
            return Err(invalid_container(
                name,
                "Port mappings must specify a containerPort or a containerPortRange.",
            ));
        };
        let protocol = protocol_of(pm);
        if used
            .iter()
            .any(|(a, b, p)| *p == protocol && first <= *b && *a <= last)
        {
            // ECS's wording.
            return Err(invalid_container(
                name,
                &format!("container port is used multiple times in task ({first}/{protocol})."),
            ));
        }
        used.push((first, last, protocol));
        if let Some(pm_name) = &pm.name
            && !is_port_mapping_name(pm_name)
        {
            return Err(invalid_container(
                name,
                &format!(
                    "Port mapping name '{pm_name}' is invalid. Up to 64 lowercase letters, numbers, underscores and hyphens are allowed, not starting with a hyphen."
                ),
            ));
        }
    }
    Ok(())
}

fn is_port_mapping_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn check_port_names(containers: &[ContainerDefinition]) -> Result<(), EcsError> {
    let mut seen = BTreeSet::new();
    for c in containers {
        for pm in c.port_mappings.as_deref().unwrap_or_default() {
            if let Some(n) = pm.name.as_deref()
                && !seen.insert(n)
            {
                // ECS's wording.
                return Err(client(format!("port mapping name is already used: '{n}'")));
            }
        }
    }
    Ok(())
}

/// The health check ranges ECS enforces: (member, low, high), seconds or counts.
pub const HEALTH_CHECK_RANGES: [(&str, i32, i32); 4] = [
    ("interval", 5, 300),
    ("timeout", 2, 60),
    ("retries", 1, 10),
    ("startPeriod", 0, 300),
];

fn check_health_check(name: &str, hc: &HealthCheck) -> Result<(), EcsError> {
    let cmd = hc.command.as_deref().unwrap_or_default();
    match cmd.first().map(String::as_str) {
        Some("CMD" | "CMD-SHELL") if cmd.len() >= 2 => {}
        // Docker's way to switch off an image's own check; ECS passes it through.
        Some("NONE") if cmd.len() == 1 => {}
        _ => {
            return Err(invalid_container(
                name,
                "The health check command must start with 'CMD' or 'CMD-SHELL' followed by the command to run.",
            ));
        }
    }
    let values = [hc.interval, hc.timeout, hc.retries, hc.start_period];
    for ((field, lo, hi), value) in HEALTH_CHECK_RANGES.into_iter().zip(values) {
        if let Some(v) = value
            && !(lo..=hi).contains(&v)
        {
            return Err(invalid_container(
                name,
                &format!("The health check '{field}' must be between {lo} and {hi}, got {v}."),
            ));
        }
    }
    Ok(())
}

fn check_timeouts(def: &Def<'_>, c: &ContainerDefinition) -> Result<(), EcsError> {
    let name = name_of(c);
    for (field, value) in [
        ("startTimeout", c.start_timeout),
        ("stopTimeout", c.stop_timeout),
    ] {
        let Some(v) = value else { continue };
        if def.fargate && !(2..=120).contains(&v) {
            return Err(invalid_container(
                name,
                &format!(
                    "Tasks using the Fargate launch type must have a '{field}' between 2 and 120 seconds, got {v}."
                ),
            ));
        }
        if v < 0 {
            return Err(invalid_container(
                name,
                &format!("The '{field}' value must not be negative, got {v}."),
            ));
        }
    }
    Ok(())
}

fn check_container_settings(def: &Def<'_>, c: &ContainerDefinition) -> Result<(), EcsError> {
    let name = name_of(c);
    for kv in c.environment.as_deref().unwrap_or_default() {
        if kv.name.as_deref().unwrap_or_default().is_empty() {
            return Err(invalid_container(
                name,
                "Environment variable names must not be null or empty.",
            ));
        }
    }
    let files = c.environment_files.as_deref().unwrap_or_default();
    if files.len() > MAX_ENVIRONMENT_FILES {
        // ECS's wording.
        return Err(client(
            "The maximum number of environment files was exceeded. Specify ten or less and try again.",
        ));
    }
    if files
        .iter()
        .any(|f| !f.value.as_deref().unwrap_or_default().starts_with("arn:"))
    {
        // ECS's wording.
        return Err(invalid_container(
            name,
            "Invalid arn syntax for an environment file.",
        ));
    }
    let uses_secrets = non_empty(c.secrets.as_ref())
        || c.log_configuration
            .as_ref()
            .is_some_and(|l| non_empty(l.secret_options.as_ref()));
    if uses_secrets && def.req.execution_role_arn.is_none() {
        // ECS's wording.
        return Err(client(
            "When you are specifying container secrets, you must also specify a value for 'executionRoleArn'.",
        ));
    }
    if let Some(policy) = &c.restart_policy {
        if let Some(p) = policy.restart_attempt_period
            && !(60..=1800).contains(&p)
        {
            // ECS's wording.
            return Err(client(format!(
                "the 'restartAttemptPeriod' setting for container '{name}' must be between 60 and 1800"
            )));
        }
        if policy.ignored_exit_codes.as_ref().map_or(0, Vec::len) > MAX_IGNORED_EXIT_CODES {
            return Err(invalid_container(
                name,
                &format!(
                    "A restart policy can ignore at most {MAX_IGNORED_EXIT_CODES} exit codes."
                ),
            ));
        }
    }
    if let Some(lp) = &c.linux_parameters {
        if let Some(s) = lp.swappiness
            && !(0..=100).contains(&s)
        {
            return Err(invalid_container(
                name,
                &format!("The 'swappiness' value must be between 0 and 100, got {s}."),
            ));
        }
        if let Some(m) = lp.max_swap
            && m < 0
        {
            return Err(invalid_container(
                name,
                &format!("The 'maxSwap' value must be 0 or a positive integer, got {m}."),
            ));
        }
    }
    for u in c.ulimits.as_deref().unwrap_or_default() {
        if let (Some(soft), Some(hard)) = (u.soft_limit, u.hard_limit)
            && soft > hard
        {
            // ECS's wording.
            return Err(client(format!(
                "Soft limit exceeds hard limit for ulimit {}",
                u.name.as_ref().map_or("", |n| n.as_str())
            )));
        }
    }
    if c.credential_specs.as_ref().map_or(0, Vec::len) > 1 {
        return Err(invalid_container(
            name,
            "At most one credential spec ARN may be specified in 'credentialSpecs'.",
        ));
    }
    let accelerators: BTreeSet<&str> = def
        .req
        .inference_accelerators
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter_map(|a| a.device_name.as_deref())
        .collect();
    for r in c.resource_requirements.as_deref().unwrap_or_default() {
        let value = r.value.as_deref().unwrap_or_default();
        match r.r#type {
            Some(ResourceType::Gpu) if !value.parse::<u32>().is_ok_and(|n| n > 0) => {
                return Err(invalid_container(
                    name,
                    &format!(
                        "The GPU resource requirement must be a positive integer, got '{value}'."
                    ),
                ));
            }
            Some(ResourceType::InferenceAccelerator) if !accelerators.contains(value) => {
                return Err(invalid_container(
                    name,
                    &format!(
                        "The inference accelerator '{value}' is not defined in the task definition's inferenceAccelerators."
                    ),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

fn check_logging(def: &Def<'_>, c: &ContainerDefinition) -> Result<(), EcsError> {
    let Some(log) = &c.log_configuration else {
        return Ok(());
    };
    let driver = log.log_driver.as_ref().map_or("", |d| d.as_str());
    let options = log.options.clone().unwrap_or_default();
    if def.fargate && !matches!(driver, "awslogs" | "splunk" | "awsfirelens") {
        return Err(client(format!(
            "Fargate does not support the log driver '{driver}'. Supported log drivers are awslogs, splunk and awsfirelens."
        )));
    }
    if driver == "awslogs" {
        let mut required = vec!["awslogs-region", "awslogs-group"];
        if def.fargate {
            required.push("awslogs-stream-prefix");
        }
        let missing: Vec<&str> = required
            .into_iter()
            .filter(|k| options.get(*k).is_none_or(String::is_empty))
            .collect();
        if !missing.is_empty() {
            // ECS's wording.
            return Err(client(format!(
                "Log driver awslogs requires options: {}",
                missing.join(", ")
            )));
        }
        if def.fargate && def.req.execution_role_arn.is_none() {
            // ECS's wording.
            return Err(client(
                "Fargate requires task definition to have execution role ARN to support log driver awslogs.",
            ));
        }
    }
    if driver == "awsfirelens"
        && !def
            .containers
            .iter()
            .any(|x| x.firelens_configuration.is_some())
    {
        // ECS's wording.
        return Err(client(
            "When awsfirelens log driver is specified in log configuration, a firelens configuration object must be specified.",
        ));
    }
    Ok(())
}

fn check_depends_on(def: &Def<'_>) -> Result<(), EcsError> {
    for c in def.containers {
        let name = name_of(c);
        for d in c.depends_on.as_deref().unwrap_or_default() {
            let target = d.container_name.as_deref().unwrap_or_default();
            let Some(dep) = def.container(target) else {
                // ECS's wording.
                return Err(client(format!(
                    "Cannot depend on container '{target}' because it does not exist"
                )));
            };
            if target == name {
                return Err(client(format!(
                    "Container '{name}' cannot depend on itself."
                )));
            }
            match d.condition {
                Some(ContainerCondition::Complete | ContainerCondition::Success)
                    if dep.essential.unwrap_or(true) =>
                {
                    // ECS's wording.
                    return Err(client(
                        "A dependency container with SUCCESS or COMPLETE condition cannot be an essential container",
                    ));
                }
                Some(ContainerCondition::Healthy) if dep.health_check.is_none() => {
                    // ECS's wording.
                    return Err(client(
                        "A dependency container with HEALTHY condition must have health check configured",
                    ));
                }
                _ => {}
            }
        }
    }
    if let Some(cycle) = dependency_cycle(def.containers) {
        return Err(client(format!(
            "The container dependencies form a cycle: {}.",
            cycle.join(" -> ")
        )));
    }
    Ok(())
}

/// A dependency cycle, as the list of containers around it (first repeated at the end).
pub fn dependency_cycle(containers: &[ContainerDefinition]) -> Option<Vec<String>> {
    let deps: BTreeMap<&str, Vec<&str>> = containers
        .iter()
        .map(|c| {
            let targets = c
                .depends_on
                .as_deref()
                .unwrap_or_default()
                .iter()
                .filter_map(|d| d.container_name.as_deref())
                .collect();
            (name_of(c), targets)
        })
        .collect();
    // Colours: absent = unvisited, false = on the current path, true = done.
    fn visit<'a>(
        n: &'a str,
        deps: &BTreeMap<&'a str, Vec<&'a str>>,
        state: &mut BTreeMap<&'a str, bool>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(true) => return None,
            Some(false) => {
                let start = path.iter().position(|p| *p == n).unwrap_or(0);
                let mut cycle: Vec<String> = path[start..].iter().map(|s| s.to_string()).collect();
                cycle.push(n.to_string());
                return Some(cycle);
            }
            None => {}
        }
        state.insert(n, false);
        path.push(n);
        for next in deps.get(n).map(Vec::as_slice).unwrap_or_default() {
            if let Some(cycle) = visit(next, deps, state, path) {
                return Some(cycle);
            }
        }
        path.pop();
        state.insert(n, true);
        None
    }
    let mut state = BTreeMap::new();
    for c in containers {
        let mut path = Vec::new();
        if let Some(cycle) = visit(name_of(c), &deps, &mut state, &mut path) {
            return Some(cycle);
        }
    }
    None
}

fn check_volumes(def: &Def<'_>) -> Result<(), EcsError> {
    let mut seen = BTreeSet::new();
    let mut at_launch = 0;
    for v in def.volumes() {
        match v.name.as_deref() {
            Some(n) => {
                if !is_name(n) {
                    return Err(client(format!(
                        "Volume name '{n}' is invalid. Up to 255 letters (uppercase and lowercase), numbers, underscores, and hyphens are allowed."
                    )));
                }
                if !seen.insert(n) {
                    return Err(client(format!(
                        "Volume names must be unique within a task definition: '{n}'."
                    )));
                }
            }
            None if v.efs_volume_configuration.is_some()
                || v.s3files_volume_configuration.is_some()
                || v.configured_at_launch == Some(true) =>
            {
                return Err(client("Volume.name should not be null or empty."));
            }
            None => {}
        }
        if v.configured_at_launch == Some(true) {
            at_launch += 1;
            if at_launch > 1 {
                return Err(client(
                    "A task definition can have only one volume configured at launch.",
                ));
            }
        }
        if let Some(efs) = &v.efs_volume_configuration {
            let encrypted = efs.transit_encryption == Some(EFSTransitEncryption::Enabled);
            let auth = efs.authorization_config.as_ref();
            if auth.is_some_and(|a| a.iam == Some(EFSAuthorizationConfigIAM::Enabled)) && !encrypted
            {
                // ECS's wording.
                return Err(client(
                    "EFS IAM authorization requires TransitEncryption to be enabled",
                ));
            }
            if auth.is_some_and(|a| a.access_point_id.is_some()) {
                if !encrypted {
                    return Err(client(
                        "EFS access points require TransitEncryption to be enabled",
                    ));
                }
                if efs.root_directory.as_deref().is_some_and(|d| d != "/") {
                    // ECS's wording.
                    return Err(client(
                        "When using an EFS access point, the root directory must either be set to \"/\" or be omitted",
                    ));
                }
            }
            if efs.transit_encryption_port.is_some() && !encrypted {
                // ECS's wording.
                return Err(client(
                    "TransitEncryptionPort requires that TransitEncryption is enabled",
                ));
            }
        }
        if let Some(s3) = &v.s3files_volume_configuration
            && s3.access_point_arn.is_some()
            && s3.root_directory.as_deref().is_some_and(|d| d != "/")
        {
            return Err(client(
                "When using an S3 Files access point, the root directory must either be set to \"/\" or be omitted",
            ));
        }
    }
    Ok(())
}

fn check_mounts(def: &Def<'_>) -> Result<(), EcsError> {
    let volumes: BTreeSet<&str> = def
        .volumes()
        .iter()
        .filter_map(|v| v.name.as_deref())
        .collect();
    for c in def.containers {
        let name = name_of(c);
        for m in c.mount_points.as_deref().unwrap_or_default() {
            let source = m.source_volume.as_deref().unwrap_or_default();
            if !volumes.contains(source) {
                // ECS's wording.
                return Err(client(format!("Unknown volume '{source}'")));
            }
        }
        for vf in c.volumes_from.as_deref().unwrap_or_default() {
            let source = vf.source_container.as_deref().unwrap_or_default();
            if source == name {
                return Err(client(format!(
                    "Invalid 'volumesFrom' setting. Container '{name}' cannot mount volumes from itself."
                )));
            }
            if def.container(source).is_none() {
                // ECS's wording.
                return Err(client(format!(
                    "Invalid 'volumesFrom' setting. Unknown container: '{source}'"
                )));
            }
        }
    }
    Ok(())
}

fn check_placement_constraints(def: &Def<'_>) -> Result<(), EcsError> {
    let constraints = def.req.placement_constraints.as_deref().unwrap_or_default();
    if constraints.len() > MAX_PLACEMENT_CONSTRAINTS {
        return Err(client(format!(
            "Too many placement constraints: at most {MAX_PLACEMENT_CONSTRAINTS} are allowed."
        )));
    }
    for pc in constraints {
        match pc.r#type {
            Some(TaskDefinitionPlacementConstraintType::MemberOf) => {
                if pc
                    .expression
                    .as_deref()
                    .unwrap_or_default()
                    .trim()
                    .is_empty()
                {
                    return Err(client(
                        "A memberOf placement constraint requires an expression.",
                    ));
                }
            }
            _ => {
                return Err(client(
                    "Task definition placement constraints must be of type memberOf.",
                ));
            }
        }
    }
    Ok(())
}

fn check_proxy(def: &Def<'_>) -> Result<(), EcsError> {
    let Some(proxy) = &def.req.proxy_configuration else {
        return Ok(());
    };
    if def.mode != NetworkMode::Awsvpc {
        // ECS's wording.
        return Err(client(
            "APPMESH proxy configuration is only supported in networkMode=awsvpc",
        ));
    }
    let target = proxy.container_name.as_deref().unwrap_or_default();
    if def.container(target).is_none() {
        // ECS's wording.
        return Err(client(format!("Proxy container [{target}] does not exist")));
    }
    Ok(())
}

fn check_ephemeral_storage(req: &RegisterTaskDefinitionRequest) -> Result<(), EcsError> {
    match req.ephemeral_storage.as_ref().and_then(|e| e.size_in_gi_b) {
        // ECS's wording for both.
        Some(s) if s < 21 => Err(client("EphemeralStorage size should be at least 21")),
        Some(s) if s > 200 => Err(client("EphemeralStorage size should be at most 200")),
        _ => Ok(()),
    }
}

/// Everything Fargate refuses beyond its size table, network mode and logging rules.
fn fargate_features(def: &Def<'_>) -> Result<(), EcsError> {
    let req = def.req;
    if req.ipc_mode.is_some() {
        return Err(fargate_unsupported("ipcMode"));
    }
    if req.pid_mode == Some(PidMode::Host) {
        // ECS's wording.
        return Err(client(
            "Tasks using the Fargate launch type do not support pidMode 'host'",
        ));
    }
    if non_empty(req.placement_constraints.as_ref()) {
        return Err(fargate_unsupported("constraints"));
    }
    for v in def.volumes() {
        if v.docker_volume_configuration.is_some() {
            return Err(fargate_unsupported("dockerVolumeConfiguration"));
        }
        if v.host
            .as_ref()
            .is_some_and(|h| h.source_path.as_deref().is_some_and(|p| !p.is_empty()))
        {
            return Err(fargate_unsupported("sourcePath"));
        }
    }
    for c in def.containers {
        if c.privileged == Some(true) {
            // ECS's wording.
            return Err(client(
                "Fargate requires that the 'privileged' setting be 'false'",
            ));
        }
        if non_empty(c.docker_security_options.as_ref()) {
            return Err(fargate_unsupported("dockerSecurityOptions"));
        }
        if let Some(lp) = &c.linux_parameters {
            if non_empty(lp.devices.as_ref()) {
                return Err(fargate_unsupported("devices"));
            }
            if lp.shared_memory_size.is_some() {
                return Err(fargate_unsupported("sharedMemorySize"));
            }
            if lp.max_swap.is_some() {
                return Err(fargate_unsupported("maxSwap"));
            }
            if lp.swappiness.is_some() {
                return Err(fargate_unsupported("swappiness"));
            }
            if non_empty(lp.tmpfs.as_ref()) {
                return Err(fargate_unsupported("tmpfs"));
            }
            let added = lp.capabilities.as_ref().and_then(|k| k.add.as_deref());
            if added
                .unwrap_or_default()
                .iter()
                .any(|cap| cap != "SYS_PTRACE")
            {
                return Err(invalid_container(
                    name_of(c),
                    "Tasks using the Fargate launch type only support adding the 'SYS_PTRACE' kernel capability.",
                ));
            }
        }
        if c.resource_requirements
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|r| r.r#type == Some(ResourceType::Gpu))
        {
            // ECS's wording.
            return Err(client(
                "Tasks using the Fargate launch type do not support GPU resource requirements",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every (cpu, memory) pair in ECS's published table, enumerated independently.
    fn table() -> Vec<(u32, u32)> {
        let mut out = vec![(256, 512), (256, 1024), (256, 2048)];
        let ranges: [(u32, u32, u32, u32); 6] = [
            (512, 1024, 4096, 1024),
            (1024, 2048, 8192, 1024),
            (2048, 4096, 16384, 1024),
            (4096, 8192, 30720, 1024),
            (8192, 16384, 61440, 4096),
            (16384, 32768, 122_880, 8192),
        ];
        for (cpu, lo, hi, step) in ranges {
            let mut m = lo;
            while m <= hi {
                out.push((cpu, m));
                m += step;
            }
        }
        out
    }

    #[test]
    fn fargate_table_has_the_74_published_sizes() {
        let t = table();
        assert_eq!(t.len(), 74);
        for (cpu, memory) in t {
            assert!(fargate_memory_ok(cpu, memory), "{cpu}/{memory}");
        }
        // Just outside each band, and off-step values inside the large bands.
        for (cpu, memory) in [
            (256, 256),
            (256, 3072),
            (512, 512),
            (1024, 9216),
            (2048, 17408),
            (4096, 31744),
            (8192, 62464),
            (8192, 17408),
            (16384, 131_072),
            (16384, 33792),
            (32768, 65536),
            (128, 512),
        ] {
            assert!(!fargate_memory_ok(cpu, memory), "{cpu}/{memory}");
        }
    }

    proptest! {
        /// The predicate agrees with the enumerated table on every input.
        #[test]
        fn fargate_predicate_matches_the_table(cpu in prop::sample::select(vec![128u32, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768]), memory in 0u32..140_000) {
            let expected = table().contains(&(cpu, memory));
            prop_assert_eq!(fargate_memory_ok(cpu, memory), expected);
        }

        /// Port ranges: accepted exactly when both ends parse and 1 <= first < last <= 65535.
        #[test]
        fn port_ranges(first in -5i32..70_000, last in -5i32..70_000) {
            let parsed = parse_port_range(&format!("{first}-{last}"));
            let ok = 1 <= first && first < last && last <= 65535;
            prop_assert_eq!(parsed.is_some(), ok);
        }
    }

    #[test]
    fn cycles_are_reported_with_their_path() {
        let c = |name: &str, dep: &str| ContainerDefinition {
            name: Some(name.into()),
            depends_on: Some(vec![berth_api::ecs::ContainerDependency {
                container_name: Some(dep.into()),
                condition: Some(ContainerCondition::Start),
            }]),
            ..Default::default()
        };
        let cycle = dependency_cycle(&[c("a", "b"), c("b", "c"), c("c", "a")]).unwrap();
        assert_eq!(cycle, ["a", "b", "c", "a"]);
        assert!(dependency_cycle(&[c("a", "b"), c("b", "c")]).is_none());
    }
}
