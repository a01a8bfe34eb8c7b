//! What ECS adds to a task definition when it registers one: sizes converted to units,
//! container defaults filled in, `compatibilities` and `requiresAttributes` derived.
//!
//! The defaults are the ones real ECS returns from DescribeTaskDefinition (checked against
//! recorded outputs, and against the defaults infrastructure tools must normalise away to
//! avoid perpetual diffs):
//!
//! | where | filled in |
//! |---|---|
//! | container | `cpu: 0`, `essential: true`, and `portMappings`, `environment`, `mountPoints`, `volumesFrom`, `systemControls` as `[]` when absent |
//! | port mapping | `protocol: "tcp"`; `hostPort` = `containerPort` in `awsvpc`/`host` mode, `0` (dynamic) otherwise; none for a `containerPortRange` |
//! | health check | `interval: 30`, `timeout: 5`, `retries: 3` (`startPeriod` stays off) |
//! | task | `volumes: []`, `placementConstraints: []`, `cpu`/`memory` as unit strings (`"1 vCPU"` → `"1024"`, `"2 GB"` → `"2048"`) |
//!
//! ECS does not fill `networkMode` (absent means bridge), `requiresCompatibilities` (absent
//! stays absent), `mountPoints[].readOnly` or `enableFaultInjection`, so neither does Berth.

use super::validate::fargate_compatible;
use berth_api::EcsError;
use berth_api::ecs::{
    Attribute, Compatibility, ContainerDefinition, FirelensConfigurationType, NetworkMode,
    RegisterTaskDefinitionRequest, TaskDefinition, TransportProtocol,
};

/// Health check defaults ECS fills in: (interval, timeout, retries).
pub const HEALTH_CHECK_DEFAULTS: (i32, i32, i32) = (30, 5, 3);

fn parse_scaled(value: &str, unit_words: &[&str], per_unit: f64) -> Option<u32> {
    let v = value.trim();
    if let Ok(n) = v.parse::<u32>() {
        return (n > 0).then_some(n);
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
    parse_scaled(value, &["vcpus", "vcpu"], 1024.0).ok_or_else(|| {
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

fn is_windows(req: &RegisterTaskDefinitionRequest) -> bool {
    req.runtime_platform
        .as_ref()
        .and_then(|p| p.operating_system_family.as_ref())
        .is_some_and(|os| os.as_str().starts_with("WINDOWS"))
}

/// Launch types the definition can run with, as ECS computes `compatibilities`, in ECS's
/// order (`EXTERNAL`, `EC2`, `FARGATE`, `MANAGED_INSTANCES`):
///
/// - `EC2` always;
/// - `EXTERNAL` when requested, or when the definition does not use `awsvpc` (which ECS
///   Anywhere lacks) and names no `runtimePlatform` (observed: definitions with one are not
///   marked EXTERNAL unless they ask for it);
/// - `FARGATE` when Fargate's checks would pass (network mode, size table, features);
/// - `MANAGED_INSTANCES` when requested, or for definitions that name a Linux
///   `runtimePlatform` and use `awsvpc` or `host`, the network modes Managed Instances
///   supports (observed: ECS lists it for such definitions, and not for ones without a
///   runtime platform).
///
/// The two seed definitions in `examples/` (Fargate, awsvpc, no runtime platform) get
/// `["EC2", "FARGATE"]`, as ECS returns for them; a bridge-mode definition gets
/// `["EXTERNAL", "EC2"]`.
pub fn compatibilities(req: &RegisterTaskDefinitionRequest) -> Vec<Compatibility> {
    let requested = req.requires_compatibilities.as_deref().unwrap_or_default();
    let mode = req.network_mode.as_ref();
    let mut out = Vec::new();
    if requested.contains(&Compatibility::External)
        || (mode != Some(&NetworkMode::Awsvpc) && req.runtime_platform.is_none())
    {
        out.push(Compatibility::External);
    }
    out.push(Compatibility::Ec2);
    if fargate_compatible(req) {
        out.push(Compatibility::Fargate);
    }
    if requested.contains(&Compatibility::ManagedInstances)
        || (matches!(mode, Some(NetworkMode::Awsvpc | NetworkMode::Host))
            && req.runtime_platform.is_some()
            && !is_windows(req))
    {
        out.push(Compatibility::ManagedInstances);
    }
    out
}

fn is_ecr_image(image: &str) -> bool {
    let registry = image.split('/').next().unwrap_or_default();
    registry.contains(".dkr.ecr.") && registry.contains(".amazonaws.com")
}

const API: &str = "com.amazonaws.ecs.capability.docker-remote-api.";

/// The instance capabilities a definition needs, as ECS derives `requiresAttributes`.
///
/// ECS does not document the derivation; this follows the attributes seen in real
/// DescribeTaskDefinition output and the agent capabilities each feature needs, in the
/// order ECS usually lists them:
///
/// | feature | attribute(s) |
/// |---|---|
/// | `logConfiguration.logDriver` X | `com.amazonaws.ecs.capability.logging-driver.X` |
/// | awslogs + `executionRoleArn` | `ecs.capability.execution-role-awslogs` |
/// | an ECR image | `com.amazonaws.ecs.capability.ecr-auth` (+ `ecs.capability.execution-role-ecr-pull` with an execution role) |
/// | awslogs | `…docker-remote-api.1.19` |
/// | `environmentFiles` | `ecs.capability.env-files.s3` |
/// | `taskRoleArn` | `com.amazonaws.ecs.capability.task-iam-role` (+ `…task-iam-role-network-host` in host mode) |
/// | `memoryReservation` | `…docker-remote-api.1.21` |
/// | `healthCheck` | `ecs.capability.container-health-check` |
/// | `secrets` | `ecs.capability.secrets.{asm,ssm}.environment-variables` |
/// | `logConfiguration.secretOptions` | `ecs.capability.secrets.{asm,ssm}.bootstrap.log-driver` |
/// | `repositoryCredentials` | `…private-registry-authentication.secretsmanager` |
/// | EFS / FSx / Docker volumes | `ecs.capability.efs` (+ `efsAuth`), `ecs.capability.fsxWindowsFileServer`, `ecs.capability.docker-plugin.DRIVER` |
/// | `systemControls`, `initProcessEnabled` | `…docker-remote-api.1.25` |
/// | `privileged` | `com.amazonaws.ecs.capability.privileged-container` |
/// | `dockerSecurityOptions` `label:`/`apparmor:` | `com.amazonaws.ecs.capability.selinux` / `.apparmor` |
/// | `pidMode`/`ipcMode` | `ecs.capability.pid-ipc-namespace-sharing` |
/// | `firelensConfiguration` | `ecs.capability.firelens.{fluentbit,fluentd}` (+ `.options.config.{s3,file}`) |
/// | `proxyConfiguration` | `ecs.capability.aws-appmesh` |
/// | awsvpc, `dockerLabels`, `ulimits` | `…docker-remote-api.1.18` (awsvpc also `ecs.capability.task-eni`) |
/// | `runtimePlatform`, `healthCheck.startPeriod` | `…docker-remote-api.1.29` |
/// | `dependsOn`, `startTimeout`, `stopTimeout` | `ecs.capability.container-ordering` |
///
/// Each attribute appears once; an empty list is left out of the response, as ECS does.
pub fn requires_attributes(req: &RegisterTaskDefinitionRequest) -> Vec<Attribute> {
    let containers = req.container_definitions.as_deref().unwrap_or_default();
    let any = |f: &dyn Fn(&ContainerDefinition) -> bool| containers.iter().any(f);
    let driver_of = |c: &ContainerDefinition| {
        c.log_configuration
            .as_ref()
            .and_then(|l| l.log_driver.as_ref())
            .map(|d| d.as_str().to_string())
    };
    let awslogs = any(&|c| driver_of(c).as_deref() == Some("awslogs"));
    let ecr = any(&|c| c.image.as_deref().is_some_and(is_ecr_image));
    let exec_role = req.execution_role_arn.is_some();
    let awsvpc = req.network_mode == Some(NetworkMode::Awsvpc);
    let secret_kind = |value_from: &str| {
        if value_from.starts_with("arn:aws:secretsmanager:")
            || value_from.contains(":secretsmanager:")
        {
            "asm"
        } else {
            "ssm"
        }
    };

    let mut names: Vec<String> = Vec::new();
    let mut add = |n: &str| {
        if !names.iter().any(|x| x == n) {
            names.push(n.to_string());
        }
    };
    for c in containers {
        if let Some(d) = driver_of(c) {
            add(&format!("com.amazonaws.ecs.capability.logging-driver.{d}"));
        }
    }
    if awslogs && exec_role {
        add("ecs.capability.execution-role-awslogs");
    }
    if ecr {
        add("com.amazonaws.ecs.capability.ecr-auth");
    }
    if awslogs {
        add(&format!("{API}1.19"));
    }
    if any(&|c| c.environment_files.as_ref().is_some_and(|e| !e.is_empty())) {
        add("ecs.capability.env-files.s3");
    }
    if req.task_role_arn.is_some() {
        add("com.amazonaws.ecs.capability.task-iam-role");
        if req.network_mode == Some(NetworkMode::Host) {
            add("com.amazonaws.ecs.capability.task-iam-role-network-host");
        }
    }
    if ecr && exec_role {
        add("ecs.capability.execution-role-ecr-pull");
    }
    if any(&|c| c.memory_reservation.is_some()) {
        add(&format!("{API}1.21"));
    }
    if any(&|c| c.health_check.is_some()) {
        add("ecs.capability.container-health-check");
    }
    for c in containers {
        for s in c.secrets.as_deref().unwrap_or_default() {
            let kind = secret_kind(s.value_from.as_deref().unwrap_or_default());
            add(&format!(
                "ecs.capability.secrets.{kind}.environment-variables"
            ));
        }
        let log_secrets = c
            .log_configuration
            .as_ref()
            .and_then(|l| l.secret_options.as_deref())
            .unwrap_or_default();
        for s in log_secrets {
            let kind = secret_kind(s.value_from.as_deref().unwrap_or_default());
            add(&format!(
                "ecs.capability.secrets.{kind}.bootstrap.log-driver"
            ));
        }
    }
    if any(&|c| c.repository_credentials.is_some()) {
        add("com.amazonaws.ecs.capability.private-registry-authentication.secretsmanager");
    }
    for v in req.volumes.as_deref().unwrap_or_default() {
        if let Some(efs) = &v.efs_volume_configuration {
            if efs.authorization_config.is_some() {
                add("ecs.capability.efsAuth");
            }
            add("ecs.capability.efs");
        }
        if v.fsx_windows_file_server_volume_configuration.is_some() {
            add("ecs.capability.fsxWindowsFileServer");
        }
        if let Some(docker) = &v.docker_volume_configuration {
            let driver = docker.driver.as_deref().unwrap_or("local");
            add(&format!("ecs.capability.docker-plugin.{driver}"));
        }
    }
    if any(&|c| {
        c.system_controls.as_ref().is_some_and(|s| !s.is_empty())
            || c.linux_parameters
                .as_ref()
                .is_some_and(|l| l.init_process_enabled == Some(true))
    }) {
        add(&format!("{API}1.25"));
    }
    if any(&|c| c.privileged == Some(true)) {
        add("com.amazonaws.ecs.capability.privileged-container");
    }
    for c in containers {
        for opt in c.docker_security_options.as_deref().unwrap_or_default() {
            if opt.starts_with("label:") {
                add("com.amazonaws.ecs.capability.selinux");
            } else if opt.starts_with("apparmor:") {
                add("com.amazonaws.ecs.capability.apparmor");
            }
        }
    }
    if req.pid_mode.is_some() || req.ipc_mode.is_some() {
        add("ecs.capability.pid-ipc-namespace-sharing");
    }
    for c in containers {
        if let Some(f) = &c.firelens_configuration {
            match f.r#type {
                Some(FirelensConfigurationType::Fluentd) => add("ecs.capability.firelens.fluentd"),
                _ => add("ecs.capability.firelens.fluentbit"),
            }
            match f
                .options
                .as_ref()
                .and_then(|o| o.get("config-file-type"))
                .map(String::as_str)
            {
                Some("s3") => add("ecs.capability.firelens.options.config.s3"),
                Some("file") => add("ecs.capability.firelens.options.config.file"),
                _ => {}
            }
        }
    }
    if req.proxy_configuration.is_some() {
        add("ecs.capability.aws-appmesh");
    }
    if awsvpc
        || any(&|c| {
            c.docker_labels.as_ref().is_some_and(|l| !l.is_empty())
                || c.ulimits.as_ref().is_some_and(|u| !u.is_empty())
        })
    {
        add(&format!("{API}1.18"));
    }
    if awsvpc {
        add("ecs.capability.task-eni");
    }
    if req.runtime_platform.is_some()
        || any(&|c| {
            c.health_check
                .as_ref()
                .is_some_and(|h| h.start_period.is_some())
        })
    {
        add(&format!("{API}1.29"));
    }
    if any(&|c| {
        c.depends_on.as_ref().is_some_and(|d| !d.is_empty())
            || c.start_timeout.is_some()
            || c.stop_timeout.is_some()
    }) {
        add("ecs.capability.container-ordering");
    }
    names
        .into_iter()
        .map(|n| Attribute {
            name: Some(n),
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
    let static_ports = matches!(network_mode, Some(NetworkMode::Awsvpc | NetworkMode::Host));
    for pm in c.port_mappings.get_or_insert_with(Vec::new) {
        pm.protocol.get_or_insert(TransportProtocol::Tcp);
        if pm.container_port_range.is_some() {
            continue;
        }
        if static_ports {
            if pm.host_port.is_none_or(|h| h == 0) {
                pm.host_port = pm.container_port;
            }
        } else if pm.container_port.is_some() {
            pm.host_port.get_or_insert(0);
        }
    }
    if let Some(hc) = &mut c.health_check {
        let (interval, timeout, retries) = HEALTH_CHECK_DEFAULTS;
        hc.interval.get_or_insert(interval);
        hc.timeout.get_or_insert(timeout);
        hc.retries.get_or_insert(retries);
    }
}

/// The TaskDefinition ECS stores for a (validated) request, minus the fields that need the
/// context (ARN, revision, status, registration time and principal). Every member the
/// request shares with `TaskDefinition` is carried over; the field-coverage test
/// (`tests/task_definition_fields.rs`) fails if one is dropped.
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
        requires_attributes: (!requires.is_empty()).then_some(requires),
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
        assert_eq!(parse_cpu("2 vCPUs").unwrap(), 2048);
        assert_eq!(parse_cpu("0.25 vcpu").unwrap(), 256);
        assert_eq!(parse_cpu(".5 vcpu").unwrap(), 512);
        assert_eq!(parse_memory("512").unwrap(), 512);
        assert_eq!(parse_memory("1GB").unwrap(), 1024);
        assert_eq!(parse_memory("2 GB").unwrap(), 2048);
        assert_eq!(parse_memory("0.5 gb").unwrap(), 512);
        for bad in ["lots", "-1 vCPU", "", "0", "0 vCPU", "1.5", "vcpu", "1 GB"] {
            assert!(parse_cpu(bad).is_err(), "cpu {bad}");
        }
        for bad in ["lots", "-1GB", "", "0", "0GB", "1.5", "GB", "1 vCPU"] {
            assert!(parse_memory(bad).is_err(), "memory {bad}");
        }
    }

    #[test]
    fn ecr_images_are_recognised() {
        assert!(is_ecr_image(
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/app:v1"
        ));
        assert!(is_ecr_image(
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/app@sha256:abc"
        ));
        assert!(!is_ecr_image("nginx:latest"));
        assert!(!is_ecr_image("quay.io/x/dkr.ecr.amazonaws.com"));
    }
}
