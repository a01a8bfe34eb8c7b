//! The checks ECS makes before it accepts a task definition, with ECS's wording where it is
//! known. Each rule is a small function; [`validate`] runs them in ECS's order.

use super::normalize::{parse_cpu, parse_memory};
use berth_api::EcsError;
use berth_api::ecs::{
    Compatibility, ContainerCondition, ContainerDefinition, NetworkMode,
    RegisterTaskDefinitionRequest,
};
use std::collections::BTreeSet;

/// Containers a task definition may hold (ECS's fixed quota).
pub const MAX_CONTAINERS: usize = 10;

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

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn invalid_container(name: &str, what: &str) -> EcsError {
    EcsError::client(format!("Invalid setting for container '{name}'. {what}"))
}

/// Check a RegisterTaskDefinition request as ECS does.
pub fn validate(req: &RegisterTaskDefinitionRequest) -> Result<(), EcsError> {
    let family = req.family.as_deref().unwrap_or_default();
    if !is_name(family) {
        return Err(EcsError::client(
            "Family contains invalid characters or is too long. Up to 255 letters (uppercase and lowercase), numbers, underscores, and hyphens are allowed.",
        ));
    }
    let containers = req.container_definitions.as_deref().unwrap_or_default();
    if containers.is_empty() {
        return Err(EcsError::client("Container list cannot be empty."));
    }
    if containers.len() > MAX_CONTAINERS {
        return Err(EcsError::client(format!(
            "Too many containers: a task definition can have at most {MAX_CONTAINERS} containers."
        )));
    }
    check_names(containers)?;
    if !containers.iter().any(|c| c.essential.unwrap_or(true)) {
        return Err(EcsError::client(
            "Task definition must have at least one essential container.",
        ));
    }
    let task_cpu = req.cpu.as_deref().map(parse_cpu).transpose()?;
    let task_memory = req.memory.as_deref().map(parse_memory).transpose()?;
    let network_mode = req.network_mode.clone().unwrap_or(NetworkMode::Bridge);
    for c in containers {
        check_container(c, task_memory, &network_mode)?;
    }
    check_depends_on(containers)?;
    let compat = req.requires_compatibilities.as_deref().unwrap_or_default();
    if compat.contains(&Compatibility::Fargate) {
        check_fargate(req, &network_mode, task_cpu, task_memory)?;
    }
    if let (Some(cpu), false) = (task_cpu, compat.contains(&Compatibility::Fargate))
        && !(128..=196_608).contains(&cpu)
    {
        return Err(EcsError::client(format!(
            "Invalid 'cpu' setting for task. Task CPU must be between 128 and 196608 units, got {cpu}."
        )));
    }
    Ok(())
}

fn check_names(containers: &[ContainerDefinition]) -> Result<(), EcsError> {
    let mut seen = BTreeSet::new();
    for c in containers {
        let name = c.name.as_deref().unwrap_or_default();
        if name.is_empty() {
            return Err(EcsError::client(
                "Container.name should not be null or empty.",
            ));
        }
        if !is_name(name) {
            return Err(EcsError::client(format!(
                "Container name '{name}' is invalid. Up to 255 letters (uppercase and lowercase), numbers, underscores, and hyphens are allowed."
            )));
        }
        if !seen.insert(name) {
            return Err(EcsError::client(format!(
                "Duplicate container name '{name}'. Container names must be unique within a task definition."
            )));
        }
        if c.image.as_deref().unwrap_or_default().trim().is_empty() {
            return Err(EcsError::client(
                "Container.image should not be null or empty.",
            ));
        }
    }
    Ok(())
}

fn check_container(
    c: &ContainerDefinition,
    task_memory: Option<u32>,
    network_mode: &NetworkMode,
) -> Result<(), EcsError> {
    let name = c.name.as_deref().unwrap_or_default();
    if let Some(m) = c.memory
        && m < 6
    {
        return Err(invalid_container(
            name,
            "The 'memory' value must be at least 6 MiB.",
        ));
    }
    if let Some(r) = c.memory_reservation
        && r < 6
    {
        return Err(invalid_container(
            name,
            "The 'memoryReservation' value must be at least 6 MiB.",
        ));
    }
    if let (Some(m), Some(r)) = (c.memory, c.memory_reservation)
        && r > m
    {
        return Err(invalid_container(
            name,
            "The 'memoryReservation' value must be less than or equal to the 'memory' value.",
        ));
    }
    if task_memory.is_none() && c.memory.is_none() && c.memory_reservation.is_none() {
        return Err(invalid_container(
            name,
            "At least one of 'memory' or 'memoryReservation' must be specified.",
        ));
    }
    if let Some(cpu) = c.cpu
        && cpu < 0
    {
        return Err(invalid_container(
            name,
            "The 'cpu' value must not be negative.",
        ));
    }
    for pm in c.port_mappings.as_deref().unwrap_or_default() {
        if pm.container_port.is_none() && pm.container_port_range.is_none() {
            return Err(invalid_container(
                name,
                "Port mappings must specify a containerPort or a containerPortRange.",
            ));
        }
        for port in [pm.container_port, pm.host_port].into_iter().flatten() {
            if !(0..=65535).contains(&port) {
                return Err(invalid_container(
                    name,
                    &format!("Port {port} is out of range 0-65535."),
                ));
            }
        }
        if matches!(network_mode, NetworkMode::Awsvpc | NetworkMode::Host)
            && let (Some(hp), Some(cp)) = (pm.host_port, pm.container_port)
            && hp != cp
        {
            return Err(EcsError::client(format!(
                "When networkMode={network_mode}, the host ports and container ports in port mappings must match."
            )));
        }
    }
    if let Some(hc) = &c.health_check {
        check_health_check(name, hc)?;
    }
    if let Some(t) = c.stop_timeout
        && !(0..=600).contains(&t)
    {
        return Err(invalid_container(
            name,
            "The 'stopTimeout' value must be between 0 and 600 seconds.",
        ));
    }
    Ok(())
}

fn check_health_check(name: &str, hc: &berth_api::ecs::HealthCheck) -> Result<(), EcsError> {
    let cmd = hc.command.as_deref().unwrap_or_default();
    match cmd.first().map(String::as_str) {
        Some("CMD" | "CMD-SHELL") if cmd.len() >= 2 => {}
        Some("NONE") => {}
        _ => {
            return Err(invalid_container(
                name,
                "The health check command must start with 'CMD' or 'CMD-SHELL' followed by the command to run.",
            ));
        }
    }
    let ranges = [
        ("interval", hc.interval, 5, 300),
        ("timeout", hc.timeout, 2, 60),
        ("retries", hc.retries, 1, 10),
        ("startPeriod", hc.start_period, 0, 300),
    ];
    for (field, value, lo, hi) in ranges {
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

fn check_depends_on(containers: &[ContainerDefinition]) -> Result<(), EcsError> {
    let names: BTreeSet<&str> = containers
        .iter()
        .filter_map(|c| c.name.as_deref())
        .collect();
    for c in containers {
        let name = c.name.as_deref().unwrap_or_default();
        for d in c.depends_on.as_deref().unwrap_or_default() {
            let target = d.container_name.as_deref().unwrap_or_default();
            if !names.contains(target) {
                return Err(EcsError::client(format!(
                    "Container '{name}' depends on container '{target}', which is not defined in the task definition."
                )));
            }
            if target == name {
                return Err(EcsError::client(format!(
                    "Container '{name}' cannot depend on itself."
                )));
            }
            let dep = containers
                .iter()
                .find(|x| x.name.as_deref() == Some(target));
            let dep_essential = dep.is_some_and(|x| x.essential.unwrap_or(true));
            match d.condition {
                Some(ContainerCondition::Complete | ContainerCondition::Success)
                    if dep_essential =>
                {
                    return Err(EcsError::client(format!(
                        "Container '{name}' has a dependency on essential container '{target}' with condition {}. COMPLETE and SUCCESS conditions are only allowed on non-essential containers.",
                        d.condition.as_ref().map_or("", |c| c.as_str())
                    )));
                }
                Some(ContainerCondition::Healthy)
                    if dep.is_none_or(|x| x.health_check.is_none()) =>
                {
                    return Err(EcsError::client(format!(
                        "Container '{name}' has a HEALTHY dependency on container '{target}', which has no health check."
                    )));
                }
                _ => {}
            }
        }
    }
    // A dependency cycle can never start.
    let mut state: std::collections::BTreeMap<&str, u8> = std::collections::BTreeMap::new();
    fn visit<'a>(
        n: &'a str,
        containers: &'a [ContainerDefinition],
        state: &mut std::collections::BTreeMap<&'a str, u8>,
    ) -> bool {
        match state.get(n) {
            Some(1) => return false,
            Some(2) => return true,
            _ => {}
        }
        state.insert(n, 1);
        let deps = containers
            .iter()
            .find(|c| c.name.as_deref() == Some(n))
            .and_then(|c| c.depends_on.as_deref())
            .unwrap_or_default();
        for d in deps {
            if !visit(
                d.container_name.as_deref().unwrap_or_default(),
                containers,
                state,
            ) {
                return false;
            }
        }
        state.insert(n, 2);
        true
    }
    for n in &names {
        if !visit(n, containers, &mut state) {
            return Err(EcsError::client(format!(
                "The container dependencies form a cycle involving container '{n}'."
            )));
        }
    }
    Ok(())
}

fn check_fargate(
    req: &RegisterTaskDefinitionRequest,
    network_mode: &NetworkMode,
    task_cpu: Option<u32>,
    task_memory: Option<u32>,
) -> Result<(), EcsError> {
    if *network_mode != NetworkMode::Awsvpc || req.network_mode.is_none() {
        return Err(EcsError::client(
            "Fargate only supports network mode 'awsvpc'.",
        ));
    }
    let (Some(cpu), Some(memory)) = (task_cpu, task_memory) else {
        return Err(EcsError::client(
            "Fargate requires that 'cpu' and 'memory' be defined at the task level.",
        ));
    };
    if !fargate_memory_ok(cpu, memory) {
        return Err(EcsError::client(format!(
            "No Fargate configuration exists for given values: {cpu} CPU, {memory} memory. See the Amazon ECS documentation for the valid values."
        )));
    }
    let uses_awslogs = req
        .container_definitions
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|c| {
            c.log_configuration.as_ref().is_some_and(|l| {
                l.log_driver
                    .as_ref()
                    .is_some_and(|d| d.as_str() == "awslogs")
            })
        });
    if uses_awslogs && req.execution_role_arn.is_none() {
        return Err(EcsError::client(
            "Fargate requires task definition to have execution role ARN to support log driver awslogs.",
        ));
    }
    Ok(())
}
