//! What ECS adds to a task definition when it registers one: sizes converted to units,
//! container defaults filled in, `compatibilities` and `requiresAttributes` derived.

use berth_api::EcsError;
use berth_api::ecs::{
    Attribute, Compatibility, ContainerDefinition, NetworkMode, RegisterTaskDefinitionRequest,
    TaskDefinition, TransportProtocol,
};

fn parse_scaled(value: &str, unit_words: &[&str], per_unit: f64) -> Option<u32> {
    let v = value.trim();
    if let Ok(n) = v.parse::<u32>() {
        return Some(n);
    }
    let lower = v.to_ascii_lowercase();
    let number = unit_words
        .iter()
        .find_map(|w| lower.strip_suffix(w))?
        .trim();
    let n: f64 = number.parse().ok()?;
    let scaled = (n * per_unit).round();
    (scaled.is_finite() && scaled > 0.0 && scaled <= f64::from(u32::MAX)).then(|| {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let units = scaled as u32;
        units
    })
}

/// Task-level `cpu`: CPU units (`"256"`) or vCPUs (`"1 vCPU"`, `"0.25 vcpu"`).
pub fn parse_cpu(value: &str) -> Result<u32, EcsError> {
    parse_scaled(value, &["vcpu"], 1024.0).ok_or_else(|| {
        EcsError::client(format!(
            "Invalid 'cpu' setting for task: '{value}'. Specify CPU units (e.g. 256) or vCPUs (e.g. '1 vCPU')."
        ))
    })
}

/// Task-level `memory`: MiB (`"512"`) or GB (`"1GB"`, `"1 GB"`).
pub fn parse_memory(value: &str) -> Result<u32, EcsError> {
    parse_scaled(value, &["gb"], 1024.0).ok_or_else(|| {
        EcsError::client(format!(
            "Invalid 'memory' setting for task: '{value}'. Specify MiB (e.g. 512) or GB (e.g. '1 GB')."
        ))
    })
}

/// Launch types the definition can run with, as ECS computes `compatibilities`: EC2 always,
/// EXTERNAL unless the definition needs awsvpc networking features an external instance lacks,
/// FARGATE when the definition meets Fargate's requirements.
pub fn compatibilities(req: &RegisterTaskDefinitionRequest) -> Vec<Compatibility> {
    let mut out = vec![Compatibility::Ec2];
    let requested = req.requires_compatibilities.as_deref().unwrap_or_default();
    if requested.contains(&Compatibility::External) {
        out.push(Compatibility::External);
    }
    let fargate_ok = req.network_mode == Some(NetworkMode::Awsvpc)
        && req
            .cpu
            .as_deref()
            .and_then(|c| parse_cpu(c).ok())
            .zip(req.memory.as_deref().and_then(|m| parse_memory(m).ok()))
            .is_some_and(|(c, m)| super::validate::fargate_memory_ok(c, m));
    if fargate_ok {
        out.push(Compatibility::Fargate);
    }
    if requested.contains(&Compatibility::ManagedInstances) {
        out.push(Compatibility::ManagedInstances);
    }
    out
}

/// The instance capabilities a definition needs, as ECS derives `requiresAttributes`.
pub fn requires_attributes(req: &RegisterTaskDefinitionRequest) -> Vec<Attribute> {
    let mut names: Vec<&str> = Vec::new();
    let containers = req.container_definitions.as_deref().unwrap_or_default();
    for c in containers {
        if let Some(driver) = c
            .log_configuration
            .as_ref()
            .and_then(|l| l.log_driver.as_ref())
        {
            match driver.as_str() {
                "awslogs" => {
                    names.push("com.amazonaws.ecs.capability.logging-driver.awslogs");
                    if req.execution_role_arn.is_some() {
                        names.push("ecs.capability.execution-role-awslogs");
                    }
                    names.push("com.amazonaws.ecs.capability.docker-remote-api.1.19");
                }
                "json-file" => names.push("com.amazonaws.ecs.capability.logging-driver.json-file"),
                "syslog" => names.push("com.amazonaws.ecs.capability.logging-driver.syslog"),
                "fluentd" => names.push("com.amazonaws.ecs.capability.logging-driver.fluentd"),
                "gelf" => names.push("com.amazonaws.ecs.capability.logging-driver.gelf"),
                "journald" => names.push("com.amazonaws.ecs.capability.logging-driver.journald"),
                "splunk" => names.push("com.amazonaws.ecs.capability.logging-driver.splunk"),
                "awsfirelens" => names.push("ecs.capability.firelens.fluentbit"),
                _ => {}
            }
        }
        if c.health_check.is_some() {
            names.push("ecs.capability.container-health-check");
        }
        if c.depends_on.as_ref().is_some_and(|d| !d.is_empty()) {
            names.push("ecs.capability.container-ordering");
        }
        if c.repository_credentials.is_some() {
            names.push(
                "com.amazonaws.ecs.capability.private-registry-authentication.secretsmanager",
            );
        }
        if c.secrets.as_ref().is_some_and(|s| !s.is_empty()) {
            names.push("ecs.capability.secrets.ssm.environment-variables");
        }
        if c.environment_files.as_ref().is_some_and(|e| !e.is_empty()) {
            names.push("ecs.capability.env-files.s3");
        }
        if c.docker_labels.as_ref().is_some_and(|l| !l.is_empty()) {
            names.push("com.amazonaws.ecs.capability.docker-remote-api.1.18");
        }
    }
    if req.task_role_arn.is_some() {
        names.push("com.amazonaws.ecs.capability.task-iam-role");
    }
    if req.network_mode == Some(NetworkMode::Awsvpc) {
        names.push("ecs.capability.task-eni");
        names.push("com.amazonaws.ecs.capability.docker-remote-api.1.18");
    }
    let mut seen = std::collections::BTreeSet::new();
    names
        .into_iter()
        .filter(|n| seen.insert(*n))
        .map(|n| Attribute {
            name: Some(n.into()),
            ..Default::default()
        })
        .collect()
}

fn normalize_container(c: &mut ContainerDefinition, network_mode: Option<&NetworkMode>) {
    c.cpu.get_or_insert(0);
    c.essential.get_or_insert(true);
    c.environment.get_or_insert_with(Vec::new);
    c.mount_points.get_or_insert_with(Vec::new);
    c.volumes_from.get_or_insert_with(Vec::new);
    c.system_controls.get_or_insert_with(Vec::new);
    let mappings = c.port_mappings.get_or_insert_with(Vec::new);
    for pm in mappings {
        pm.protocol.get_or_insert(TransportProtocol::Tcp);
        if matches!(network_mode, Some(NetworkMode::Awsvpc | NetworkMode::Host))
            && pm.host_port.is_none()
        {
            pm.host_port = pm.container_port;
        }
    }
}

/// The TaskDefinition ECS stores for a (validated) request, minus the fields that need the
/// context (ARN, revision, status, registration time and principal).
pub fn normalize(req: RegisterTaskDefinitionRequest) -> TaskDefinition {
    let compat = compatibilities(&req);
    let requires = requires_attributes(&req);
    let cpu = req
        .cpu
        .as_deref()
        .and_then(|c| parse_cpu(c).ok())
        .map(|c| c.to_string());
    let memory = req
        .memory
        .as_deref()
        .and_then(|m| parse_memory(m).ok())
        .map(|m| m.to_string());
    let mut containers = req.container_definitions.unwrap_or_default();
    for c in &mut containers {
        normalize_container(c, req.network_mode.as_ref());
    }
    TaskDefinition {
        family: req.family,
        task_role_arn: req.task_role_arn,
        execution_role_arn: req.execution_role_arn,
        network_mode: req.network_mode,
        container_definitions: Some(containers),
        volumes: Some(req.volumes.unwrap_or_default()),
        placement_constraints: Some(req.placement_constraints.unwrap_or_default()),
        requires_compatibilities: req.requires_compatibilities,
        cpu,
        memory,
        pid_mode: req.pid_mode,
        ipc_mode: req.ipc_mode,
        proxy_configuration: req.proxy_configuration,
        inference_accelerators: req.inference_accelerators,
        ephemeral_storage: req.ephemeral_storage,
        runtime_platform: req.runtime_platform,
        enable_fault_injection: req.enable_fault_injection,
        compatibilities: Some(compat),
        requires_attributes: Some(requires),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_cpu("256").unwrap(), 256);
        assert_eq!(parse_cpu("1 vCPU").unwrap(), 1024);
        assert_eq!(parse_cpu("0.25 vcpu").unwrap(), 256);
        assert_eq!(parse_memory("512").unwrap(), 512);
        assert_eq!(parse_memory("1GB").unwrap(), 1024);
        assert_eq!(parse_memory("2 GB").unwrap(), 2048);
        assert!(parse_cpu("lots").is_err());
        assert!(parse_memory("-1GB").is_err());
        assert!(parse_memory("").is_err());
    }
}
