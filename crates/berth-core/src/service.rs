//! Services: CreateService, UpdateService, DeleteService, DescribeServices, ListServices, and
//! the scheduler pass ([`reconcile`]) that keeps each service's tasks where its deployments
//! want them, applying the pure plan from [`crate::service_plan`].

use crate::placement::{self, Need};
use crate::service_deployment::{self as sd, ServiceDeploymentRecord, ServiceRevisionRecord};
use crate::service_plan::{self, Action, DeploymentView, Rollout, ServiceView, TaskView};
use crate::state::{Ctx, Kind, Partition, TaskDefinitionRecord, TaskRef};
use crate::task::{self, NewTask};
use crate::{arn, cluster, container_instance, pagination, tags, task_definition};
use berth_api::EcsError;
use berth_api::ecs::{
    self, CreateServiceRequest, CreateServiceResponse, DeleteServiceRequest, DeleteServiceResponse,
    DeploymentConfiguration, DeploymentRolloutState, DescribeServicesRequest,
    DescribeServicesResponse, LaunchType, ListServicesRequest, ListServicesResponse,
    PlacementStrategy, PlacementStrategyType, SchedulingStrategy, TaskStopCode,
    UpdateServiceRequest, UpdateServiceResponse,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Events a service keeps (ECS returns the latest 100).
pub const MAX_EVENTS: usize = 100;

/// Scheduler bookkeeping of one deployment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeploymentMeta {
    /// Failed tasks counted by the circuit breaker.
    pub failed_tasks: i32,
    /// Has had a task running successfully.
    pub proven: bool,
    /// Created (epoch ms).
    pub created_at_ms: i64,
    /// Started by the circuit breaker to roll back a failed deployment: if it fails too, the
    /// service does not roll back again (no rollback loop).
    #[serde(default)]
    pub rollback: bool,
}

/// A service as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceRecord {
    /// Cluster name.
    pub cluster: String,
    /// The service in ECS's shape (counts are derived on read).
    pub service: ecs::Service,
    /// Per-deployment scheduler state, by deployment id.
    pub meta: BTreeMap<String, DeploymentMeta>,
    /// The last deployment that COMPLETED (rollback target): (id, task definition ARN).
    pub last_completed: Option<(String, String)>,
    /// The steady-state event was the last thing said.
    pub steady: bool,
    /// The "unable to consistently start tasks" event was emitted for the current streak.
    pub throttled_event: bool,
    /// CreateService idempotency token.
    pub client_token: Option<String>,
    /// SHA-256 of the CreateService request that created it (hex), to tell a retry with the
    /// same client token from a different request.
    #[serde(default)]
    pub request_digest: Option<String>,
    /// Service deployments, oldest first (`service_deployment`).
    #[serde(default)]
    pub history: Vec<ServiceDeploymentRecord>,
    /// Service revisions the history names.
    #[serde(default)]
    pub revisions: Vec<ServiceRevisionRecord>,
}

impl ServiceRecord {
    fn name(&self) -> &str {
        self.service.service_name.as_deref().unwrap_or_default()
    }

    fn status(&self) -> &str {
        self.service.status.as_deref().unwrap_or("ACTIVE")
    }

    fn deployments(&self) -> &[ecs::Deployment] {
        self.service.deployments.as_deref().unwrap_or_default()
    }
}

fn key(cluster: &str, name: &str) -> String {
    format!("{cluster}/{name}")
}

fn record_key(cluster: &str, name: &str) -> String {
    format!("service/{cluster}/{name}")
}

fn save(p: &Partition, ctx: &mut Ctx<'_>, k: &str) {
    if let Some(rec) = p.services.get(k) {
        ctx.put(Kind::Service, &record_key(&rec.cluster, rec.name()), rec);
    }
}

fn new_deployment_id(ctx: &mut Ctx<'_>) -> String {
    let mut digits = String::from("ecs-svc/");
    for _ in 0..19 {
        let d = ctx.rng.next_u32() % 10;
        digits.push(char::from(b'0' + u8::try_from(d).unwrap_or(0)));
    }
    digits
}

fn push_event(rec: &mut ServiceRecord, ctx: &mut Ctx<'_>, message: String) {
    let events = rec.service.events.get_or_insert_with(Vec::new);
    let id = ctx.new_uuid();
    events.insert(
        0,
        ecs::ServiceEvent {
            id: Some(id),
            created_at: Some(ctx.now_secs()),
            message: Some(message),
        },
    );
    events.truncate(MAX_EVENTS);
}

fn validate_name(name: &str) -> Result<(), EcsError> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(EcsError::invalid(
            "Service name must be 1 to 255 characters long and may contain only letters (uppercase and lowercase), numbers, underscores and hyphens.",
        ))
    }
}

fn deployment_config(
    given: Option<DeploymentConfiguration>,
    daemon: bool,
) -> Result<DeploymentConfiguration, EcsError> {
    let mut c = given.unwrap_or_default();
    let (max_default, min_default) = if daemon { (100, 0) } else { (200, 100) };
    let max = *c.maximum_percent.get_or_insert(max_default);
    let min = *c.minimum_healthy_percent.get_or_insert(min_default);
    if !(0..=100).contains(&min) {
        return Err(EcsError::invalid(
            "minimumHealthyPercent must be between 0 and 100.",
        ));
    }
    // ECS's own words for a DAEMON service above 100 (as reported from CreateService by
    // aws-cdk#2209 and terraform-provider-aws#4825). Below 100 is Berth's refusal, in the same
    // form: the daemon scheduler replaces each instance's task in place, so only 100 means
    // anything.
    if daemon && max > 100 {
        return Err(EcsError::invalid(
            "The daemon scheduling strategy does not support values above 100 for maximumPercent on a deployment configuration. Change the maximumPercent value to 100, and try again",
        ));
    }
    if daemon && max < 100 {
        return Err(EcsError::invalid(
            "The daemon scheduling strategy does not support values below 100 for maximumPercent on a deployment configuration. Change the maximumPercent value to 100, and try again",
        ));
    }
    if !daemon && max < 100 {
        return Err(EcsError::invalid(
            "The maximumPercent value must be greater than or equal to 100 for services using the REPLICA scheduling strategy.",
        ));
    }
    if max > 2000 {
        return Err(EcsError::invalid("maximumPercent must be at most 2000."));
    }
    c.deployment_circuit_breaker
        .get_or_insert(ecs::DeploymentCircuitBreaker {
            enable: Some(false),
            rollback: Some(false),
        });
    Ok(c)
}

pub(crate) fn find(
    p: &Partition,
    ctx: &Ctx<'_>,
    cluster_name: &str,
    reference: &str,
) -> Option<String> {
    let name = if reference.starts_with("arn:") {
        let parsed = arn::parse(reference)?;
        if parsed.resource_type != "service"
            || parsed.region != ctx.partition.region
            || parsed.account != ctx.partition.account
        {
            return None;
        }
        match parsed.resource.split_once('/') {
            Some((c, n)) if c == cluster_name => n.to_string(),
            Some(_) => return None,
            None => parsed.resource.to_string(),
        }
    } else {
        reference.to_string()
    };
    let k = key(cluster_name, &name);
    p.services.contains_key(&k).then_some(k)
}

pub(crate) fn cluster_name(
    p: &Partition,
    ctx: &Ctx<'_>,
    reference: Option<&str>,
) -> Result<String, EcsError> {
    Ok(cluster::find_active(p, ctx, reference)?
        .cluster
        .cluster_name
        .clone()
        .unwrap_or_default())
}

fn new_deployment(
    ctx: &mut Ctx<'_>,
    service: &ecs::Service,
    task_definition: &str,
    reason: Option<String>,
) -> (ecs::Deployment, String) {
    let id = new_deployment_id(ctx);
    let d = ecs::Deployment {
        id: Some(id.clone()),
        status: Some("PRIMARY".into()),
        task_definition: Some(task_definition.to_string()),
        desired_count: service.desired_count,
        pending_count: Some(0),
        running_count: Some(0),
        failed_tasks: Some(0),
        created_at: Some(ctx.now_secs()),
        updated_at: Some(ctx.now_secs()),
        launch_type: service.launch_type.clone(),
        platform_version: service.platform_version.clone(),
        network_configuration: service.network_configuration.clone(),
        rollout_state: Some(DeploymentRolloutState::InProgress),
        rollout_state_reason: Some(
            reason.unwrap_or_else(|| format!("ECS deployment {id} in progress.")),
        ),
        ..Default::default()
    };
    (d, id)
}

/// CreateService.
pub fn create(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    req: CreateServiceRequest,
) -> Result<CreateServiceResponse, EcsError> {
    let cluster_name = cluster_name(p, ctx, req.cluster.as_deref())?;
    let name = req.service_name.clone().unwrap_or_default();
    validate_name(&name)?;
    let k = key(&cluster_name, &name);
    if let Some(t) = &req.client_token
        && (t.is_empty() || t.len() > 36 || !t.bytes().all(|b| (33..=126).contains(&b)))
    {
        return Err(EcsError::invalid(
            "clientToken must be 1 to 36 ASCII characters in the range 33-126.",
        ));
    }
    let digest = request_digest(&req);
    if let Some(existing) = p.services.get(&k)
        && existing.status() != "INACTIVE"
    {
        // A retry (same client token, same request) gets the service it created; anything
        // else under an existing name is ECS's "not idempotent".
        let same_request = existing
            .request_digest
            .as_ref()
            .is_none_or(|d| *d == digest);
        if req.client_token.is_some() && existing.client_token == req.client_token && same_request {
            return Ok(CreateServiceResponse {
                service: Some(view(p, existing, false)),
            });
        }
        return Err(EcsError::invalid("Creation of service was not idempotent."));
    }
    if let Some(ctrl) = &req.deployment_controller
        && ctrl.r#type.as_ref().is_some_and(|t| t.as_str() != "ECS")
    {
        return Err(EcsError::UnsupportedFeature(
            "Berth supports only the ECS (rolling update) deployment controller.".into(),
        ));
    }
    let daemon = req.scheduling_strategy == Some(SchedulingStrategy::Daemon);
    let desired = if daemon {
        if req.desired_count.is_some_and(|d| d != 0) {
            return Err(EcsError::invalid(
                "The DAEMON scheduling strategy does not support a desired count for services.",
            ));
        }
        0
    } else {
        let d = req.desired_count.ok_or_else(|| {
            EcsError::invalid(
                "desiredCount is required for services using the REPLICA scheduling strategy.",
            )
        })?;
        if d < 0 {
            return Err(EcsError::invalid(
                "Desired count must be greater than or equal to 0.",
            ));
        }
        d
    };
    if daemon
        && req
            .placement_strategy
            .as_ref()
            .is_some_and(|s| !s.is_empty())
    {
        return Err(EcsError::invalid(
            "Placement strategies are not supported with the DAEMON scheduling strategy.",
        ));
    }
    let td_ref = req
        .task_definition
        .clone()
        .ok_or_else(|| EcsError::invalid("Task definition is required."))?;
    let td = task_definition::resolve(p, ctx, &td_ref)?.clone();
    if task_definition::status_of(&td) != "ACTIVE" {
        return Err(EcsError::client("TaskDefinition is inactive"));
    }
    let launch_type = task::resolve_launch_type(&td.task_definition, req.launch_type.clone())?;
    if daemon && launch_type == LaunchType::Fargate {
        return Err(EcsError::invalid(
            "The DAEMON scheduling strategy is not supported for the Fargate launch type.",
        ));
    }
    task::validate_network(&td.task_definition, req.network_configuration.as_ref())?;
    let grace = req.health_check_grace_period_seconds.unwrap_or(0);
    if grace < 0 {
        return Err(EcsError::invalid(
            "healthCheckGracePeriodSeconds must not be negative.",
        ));
    }
    let config = deployment_config(req.deployment_configuration.clone(), daemon)?;
    let new_tags = req.tags.clone().unwrap_or_default();
    tags::validate(&new_tags)?;
    for c in req.placement_constraints.as_deref().unwrap_or_default() {
        if let Some(e) = &c.expression {
            crate::query::parse(e).map_err(|err| {
                EcsError::invalid(format!(
                    "Invalid placement constraint expression '{e}': {err}."
                ))
            })?;
        }
    }
    let fargate = launch_type == LaunchType::Fargate;
    let mut service = ecs::Service {
        service_arn: Some(format!(
            "arn:aws:ecs:{}:{}:service/{cluster_name}/{name}",
            ctx.partition.region, ctx.partition.account
        )),
        service_name: Some(name.clone()),
        cluster_arn: Some(arn::cluster(&ctx.partition, &cluster_name)),
        load_balancers: Some(req.load_balancers.clone().unwrap_or_default()),
        service_registries: Some(req.service_registries.clone().unwrap_or_default()),
        status: Some("ACTIVE".into()),
        desired_count: Some(desired),
        running_count: Some(0),
        pending_count: Some(0),
        launch_type: Some(launch_type),
        platform_version: fargate.then(|| {
            req.platform_version
                .clone()
                .unwrap_or_else(|| "LATEST".into())
        }),
        platform_family: fargate.then(|| "Linux".to_string()),
        task_definition: td.task_definition.task_definition_arn.clone(),
        deployment_configuration: Some(config),
        events: Some(vec![]),
        created_at: Some(ctx.now_secs()),
        placement_constraints: Some(req.placement_constraints.clone().unwrap_or_default()),
        placement_strategy: Some(req.placement_strategy.clone().unwrap_or_default()),
        network_configuration: req.network_configuration.clone(),
        health_check_grace_period_seconds: Some(grace),
        scheduling_strategy: Some(if daemon {
            SchedulingStrategy::Daemon
        } else {
            SchedulingStrategy::Replica
        }),
        deployment_controller: Some(ecs::DeploymentController {
            r#type: Some(ecs::DeploymentControllerType::Ecs),
        }),
        tags: Some(new_tags),
        created_by: Some(arn::principal(&ctx.partition, &ctx.principal)),
        enable_ecs_managed_tags: Some(req.enable_ecs_managed_tags.unwrap_or(false)),
        propagate_tags: Some(
            req.propagate_tags
                .clone()
                .unwrap_or(ecs::PropagateTags::None),
        ),
        enable_execute_command: Some(req.enable_execute_command.unwrap_or(false)),
        role_arn: req.role.clone(),
        ..Default::default()
    };
    let td_arn = td
        .task_definition
        .task_definition_arn
        .clone()
        .unwrap_or_default();
    let (deployment, id) = new_deployment(ctx, &service, &td_arn, None);
    service.deployments = Some(vec![deployment]);
    let mut meta = BTreeMap::new();
    meta.insert(
        id.clone(),
        DeploymentMeta {
            created_at_ms: ctx.now_ms,
            ..Default::default()
        },
    );
    let mut rec = ServiceRecord {
        cluster: cluster_name.clone(),
        service,
        meta,
        last_completed: None,
        steady: false,
        throttled_event: false,
        client_token: req.client_token.clone(),
        request_digest: Some(digest),
        history: Vec::new(),
        revisions: Vec::new(),
    };
    sd::start(p, &mut rec, ctx, &id, &td);
    p.services.insert(k.clone(), rec);
    save(p, ctx, &k);
    ctx.woken.push(String::new());
    Ok(CreateServiceResponse {
        service: Some(view(p, &p.services[&k], false)),
    })
}

/// UpdateService: desiredCount alone scales; a new task definition, forceNewDeployment, or a
/// network / placement change starts a new deployment.
pub fn update(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    req: UpdateServiceRequest,
) -> Result<UpdateServiceResponse, EcsError> {
    let cluster_name = cluster_name(p, ctx, req.cluster.as_deref())?;
    let reference = req.service.clone().unwrap_or_default();
    let k = find(p, ctx, &cluster_name, &reference).ok_or(EcsError::ServiceNotFound)?;
    let rec = p.services[&k].clone();
    if rec.status() != "ACTIVE" {
        return Err(EcsError::ServiceNotActive);
    }
    let daemon = rec.service.scheduling_strategy == Some(SchedulingStrategy::Daemon);
    if let Some(d) = req.desired_count {
        if d < 0 {
            return Err(EcsError::invalid(
                "Desired count must be greater than or equal to 0.",
            ));
        }
        if daemon && d != 0 {
            return Err(EcsError::invalid(
                "The DAEMON scheduling strategy does not support a desired count for services.",
            ));
        }
    }
    let new_td = match &req.task_definition {
        Some(r) => {
            let td = task_definition::resolve(p, ctx, r)?;
            if task_definition::status_of(td) != "ACTIVE" {
                return Err(EcsError::client("TaskDefinition is inactive"));
            }
            let lt = rec.service.launch_type.clone();
            task::resolve_launch_type(&td.task_definition, lt)?;
            Some(td.clone())
        }
        None => None,
    };
    let effective_td: TaskDefinitionRecord = match &new_td {
        Some(t) => t.clone(),
        None => task_definition::resolve(
            p,
            ctx,
            rec.service.task_definition.as_deref().unwrap_or_default(),
        )?
        .clone(),
    };
    let network = req
        .network_configuration
        .clone()
        .or_else(|| rec.service.network_configuration.clone());
    task::validate_network(&effective_td.task_definition, network.as_ref())?;
    let config = match req.deployment_configuration.clone() {
        Some(mut c) => {
            let cur = rec
                .service
                .deployment_configuration
                .clone()
                .unwrap_or_default();
            if c.maximum_percent.is_none() {
                c.maximum_percent = cur.maximum_percent;
            }
            if c.minimum_healthy_percent.is_none() {
                c.minimum_healthy_percent = cur.minimum_healthy_percent;
            }
            if c.deployment_circuit_breaker.is_none() {
                c.deployment_circuit_breaker = cur.deployment_circuit_breaker;
            }
            Some(deployment_config(Some(c), daemon)?)
        }
        None => None,
    };
    if let Some(g) = req.health_check_grace_period_seconds
        && g < 0
    {
        return Err(EcsError::invalid(
            "healthCheckGracePeriodSeconds must not be negative.",
        ));
    }
    let td_changed = new_td
        .as_ref()
        .is_some_and(|t| t.task_definition.task_definition_arn != rec.service.task_definition);
    let net_changed = req.network_configuration.is_some()
        && req.network_configuration != rec.service.network_configuration;
    let placement_changed = req.placement_constraints.is_some() || req.placement_strategy.is_some();
    let new_deploy =
        td_changed || net_changed || placement_changed || req.force_new_deployment == Some(true);

    let mut rec = p.services[&k].clone();
    if let Some(d) = req.desired_count {
        rec.service.desired_count = Some(d);
        rec.steady = false;
    }
    if let Some(c) = config {
        rec.service.deployment_configuration = Some(c);
    }
    if let Some(g) = req.health_check_grace_period_seconds {
        rec.service.health_check_grace_period_seconds = Some(g);
    }
    if let Some(c) = req.placement_constraints.clone() {
        rec.service.placement_constraints = Some(c);
    }
    if let Some(s) = req.placement_strategy.clone() {
        rec.service.placement_strategy = Some(s);
    }
    if req.network_configuration.is_some() {
        rec.service.network_configuration = req.network_configuration.clone();
    }
    if let Some(v) = req.enable_ecs_managed_tags {
        rec.service.enable_ecs_managed_tags = Some(v);
    }
    if let Some(v) = req.propagate_tags.clone() {
        rec.service.propagate_tags = Some(v);
    }
    if new_deploy {
        let td_arn = effective_td
            .task_definition
            .task_definition_arn
            .clone()
            .unwrap_or_default();
        rec.service.task_definition = Some(td_arn.clone());
        for d in rec.service.deployments.iter_mut().flatten() {
            if d.status.as_deref() == Some("PRIMARY") {
                d.status = Some("ACTIVE".into());
                d.updated_at = Some(ctx.now_secs());
            }
        }
        let (d, id) = new_deployment(ctx, &rec.service, &td_arn, None);
        rec.service
            .deployments
            .get_or_insert_with(Vec::new)
            .insert(0, d);
        rec.meta.insert(
            id.clone(),
            DeploymentMeta {
                created_at_ms: ctx.now_ms,
                ..Default::default()
            },
        );
        rec.steady = false;
        rec.throttled_event = false;
        let desired = rec.service.desired_count;
        for d in rec.service.deployments.iter_mut().flatten() {
            if d.status.as_deref() == Some("PRIMARY") {
                d.desired_count = desired;
            }
        }
        sd::start(p, &mut rec, ctx, &id, &effective_td);
    }
    let desired = rec.service.desired_count;
    for d in rec.service.deployments.iter_mut().flatten() {
        if d.status.as_deref() == Some("PRIMARY") {
            d.desired_count = desired;
        }
    }
    p.services.insert(k.clone(), rec);
    save(p, ctx, &k);
    ctx.woken.push(String::new());
    Ok(UpdateServiceResponse {
        service: Some(view(p, &p.services[&k], false)),
    })
}

/// DeleteService: refuses while desiredCount > 0 unless forced; DRAINING until its tasks are
/// gone, then INACTIVE.
pub fn delete(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    req: DeleteServiceRequest,
) -> Result<DeleteServiceResponse, EcsError> {
    let cluster_name = cluster_name(p, ctx, req.cluster.as_deref())?;
    let reference = req.service.clone().unwrap_or_default();
    let k = find(p, ctx, &cluster_name, &reference).ok_or(EcsError::ServiceNotFound)?;
    let rec = p.services.get_mut(&k).ok_or(EcsError::ServiceNotFound)?;
    if rec.status() != "ACTIVE" {
        return Err(EcsError::ServiceNotActive);
    }
    let daemon = rec.service.scheduling_strategy == Some(SchedulingStrategy::Daemon);
    if !daemon && rec.service.desired_count.unwrap_or(0) > 0 && req.force != Some(true) {
        return Err(EcsError::invalid(
            "The service cannot be stopped while it is scaled above 0.",
        ));
    }
    rec.service.status = Some("DRAINING".into());
    rec.service.desired_count = Some(0);
    save(p, ctx, &k);
    ctx.woken.push(String::new());
    Ok(DeleteServiceResponse {
        service: Some(view(p, &p.services[&k], false)),
    })
}

/// The service as the API shows it, with live counts per deployment.
pub fn view(p: &Partition, rec: &ServiceRecord, with_tags: bool) -> ecs::Service {
    let mut s = rec.service.clone();
    let name = rec.name();
    let group = format!("service:{name}");
    let tasks: Vec<_> = p
        .tasks
        .in_group(&group)
        .map(|(_, t)| t)
        .filter(|t| t.cluster() == rec.cluster)
        .collect();
    let count = |f: &dyn Fn(TaskRef<'_>) -> bool| {
        i32::try_from(tasks.iter().filter(|t| f(**t)).count()).unwrap_or(i32::MAX)
    };
    let is_running = |t: TaskRef<'_>| t.last_status() == Some("RUNNING");
    let is_pending = |t: TaskRef<'_>| {
        matches!(
            t.last_status(),
            Some("PROVISIONING" | "PENDING" | "ACTIVATING")
        )
    };
    s.running_count = Some(count(&|t| is_running(t)));
    s.pending_count = Some(count(&|t| is_pending(t)));
    for d in s.deployments.iter_mut().flatten() {
        let id = d.id.clone();
        let mine = |t: TaskRef<'_>| t.started_by() == id.as_deref();
        d.running_count = Some(count(&|t| mine(t) && is_running(t)));
        d.pending_count = Some(count(&|t| mine(t) && is_pending(t)));
        if let Some(m) = id.as_ref().and_then(|i| rec.meta.get(i)) {
            d.failed_tasks = Some(m.failed_tasks);
        }
    }
    sd::decorate(rec, &mut s);
    if !with_tags {
        s.tags = None;
    }
    s
}

/// DescribeServices.
pub fn describe(
    p: &Partition,
    ctx: &Ctx<'_>,
    req: DescribeServicesRequest,
) -> Result<DescribeServicesResponse, EcsError> {
    let cluster_name = cluster_name(p, ctx, req.cluster.as_deref())?;
    let refs = req.services.unwrap_or_default();
    if refs.is_empty() || refs.len() > 10 {
        return Err(EcsError::invalid(
            "services must contain between 1 and 10 items.",
        ));
    }
    let with_tags = req
        .include
        .unwrap_or_default()
        .iter()
        .any(|i| i.as_str() == "TAGS");
    let mut services = Vec::new();
    let mut failures = Vec::new();
    for r in refs {
        match find(p, ctx, &cluster_name, &r) {
            Some(k) => services.push(view(p, &p.services[&k], with_tags)),
            None => failures.push(ecs::Failure {
                arn: Some(if r.starts_with("arn:") {
                    r.clone()
                } else {
                    format!(
                        "arn:aws:ecs:{}:{}:service/{cluster_name}/{r}",
                        ctx.partition.region, ctx.partition.account
                    )
                }),
                reason: Some("MISSING".into()),
                detail: None,
            }),
        }
    }
    Ok(DescribeServicesResponse {
        services: Some(services),
        failures: Some(failures),
    })
}

/// ListServices: ACTIVE services of the cluster (default page size 10, as ECS).
pub fn list(
    p: &Partition,
    ctx: &Ctx<'_>,
    req: ListServicesRequest,
) -> Result<ListServicesResponse, EcsError> {
    let cluster_name = cluster_name(p, ctx, req.cluster.as_deref())?;
    let limit = pagination::max_results(req.max_results, 10)?;
    let items: Vec<(String, String)> = p
        .services
        .values()
        .filter(|s| s.cluster == cluster_name && s.status() == "ACTIVE")
        .filter(|s| {
            req.launch_type
                .as_ref()
                .is_none_or(|l| s.service.launch_type.as_ref() == Some(l))
        })
        .filter(|s| {
            req.scheduling_strategy
                .as_ref()
                .is_none_or(|x| s.service.scheduling_strategy.as_ref() == Some(x))
        })
        .filter_map(|s| s.service.service_arn.clone())
        .map(|a| (a.clone(), a))
        .collect();
    let (arns, next) = pagination::page(items, req.next_token.as_deref(), limit)?;
    Ok(ListServicesResponse {
        service_arns: Some(arns),
        next_token: next,
    })
}

/// ACTIVE and DRAINING services of a cluster (DeleteCluster refuses while any remain).
pub fn count_in_cluster(p: &Partition, cluster_name: &str) -> usize {
    p.services
        .values()
        .filter(|s| s.cluster == cluster_name && s.status() != "INACTIVE")
        .count()
}

/// ACTIVE services of a cluster.
pub fn active_in_cluster(p: &Partition, cluster_name: &str) -> usize {
    p.services
        .values()
        .filter(|s| s.cluster == cluster_name && s.status() == "ACTIVE")
        .count()
}

fn has_essential_health_check(td: Option<&TaskDefinitionRecord>) -> bool {
    td.and_then(|t| t.task_definition.container_definitions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.essential.unwrap_or(true) && c.health_check.is_some())
        })
}

fn td_by_arn<'p>(p: &'p Partition, td_arn: &str) -> Option<&'p TaskDefinitionRecord> {
    let (family, rev) = td_arn.rsplit_once('/')?.1.rsplit_once(':')?;
    p.families.get(family)?.revisions.get(&rev.parse().ok()?)
}

/// One scheduler pass over every service in the partition. Returns whether anything changed.
pub fn reconcile(p: &mut Partition, ctx: &mut Ctx<'_>) -> bool {
    let keys: Vec<String> = p
        .services
        .iter()
        .filter(|(_, s)| s.status() != "INACTIVE")
        .map(|(k, _)| k.clone())
        .collect();
    let before = ctx.mutations.len();
    for k in keys {
        reconcile_one(p, ctx, &k);
    }
    ctx.mutations.len() != before
}

fn task_views(p: &Partition, rec: &ServiceRecord, now_ms: i64) -> Vec<TaskView> {
    let group = format!("service:{}", rec.name());
    // The tasks of a service share a revision or two: whether it has an essential health
    // check is looked up once per run of tasks with the same revision, not once per task.
    let mut checked: Option<(&str, bool)> = None;
    let mut out = Vec::new();
    for (id, t) in p
        .tasks
        .in_group(&group)
        .filter(|(_, t)| t.cluster() == rec.cluster)
    {
        let health = t.health_status().map_or("UNKNOWN", |h| h.as_str());
        let running = t.last_status() == Some("RUNNING");
        let healthy = running
            && (health == "HEALTHY"
                || (health != "UNHEALTHY" && {
                    let arn = t.task_definition_arn().unwrap_or_default();
                    match checked {
                        Some((a, has)) if a == arn => !has,
                        _ => {
                            let has = has_essential_health_check(
                                t.task_definition_arn().and_then(|a| td_by_arn(p, a)),
                            );
                            checked = Some((arn, has));
                            !has
                        }
                    }
                }));
        let failed = t.is_stopped()
            && !matches!(
                t.stop_code(),
                Some(TaskStopCode::ServiceSchedulerInitiated | TaskStopCode::UserInitiated)
            );
        #[allow(clippy::cast_possible_truncation)]
        let started_at_ms = t.started_at().map(|s| (s * 1000.0) as i64);
        let seen_at_ms = t
            .instance_id()
            .and_then(|i| p.liveness.get(i))
            .map(|l| l.last_seen_ms);
        // `container_instance::connected`, from the liveness read above.
        let connected =
            seen_at_ms.is_some_and(|s| now_ms - s <= container_instance::AGENT_TIMEOUT_MS);
        out.push(TaskView {
            id: id.clone(),
            deployment: t.started_by().unwrap_or_default().to_string(),
            desired_running: t.desired_status() == Some("RUNNING"),
            running,
            stopped: t.is_stopped(),
            healthy,
            unhealthy: running && health == "UNHEALTHY",
            started_at_ms,
            stopped_at_ms: t.stopped_at_ms(),
            failed,
            seen_at_ms,
            instance: t.instance_id().map(str::to_string),
            lost: !t.is_stopped()
                && !connected
                && t.instance_id().is_some_and(|i| {
                    p.instances
                        .get(i)
                        .is_some_and(|r| r.instance.status.as_deref() != Some("INACTIVE"))
                }),
        });
    }
    out
}

fn daemon_instances(p: &Partition, ctx: &Ctx<'_>, rec: &ServiceRecord) -> Vec<String> {
    let exprs: Vec<crate::query::Expr> = rec
        .service
        .placement_constraints
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter_map(|c| {
            c.expression
                .as_deref()
                .and_then(|e| crate::query::parse(e).ok())
        })
        .collect();
    p.instances
        .iter()
        .filter(|(id, i)| {
            i.cluster == rec.cluster
                && i.instance.status.as_deref() == Some("ACTIVE")
                && container_instance::connected(p, id, ctx.now_ms)
                && exprs
                    .iter()
                    .all(|e| container_instance::matches(p, id, i, ctx.now_ms, e))
        })
        .map(|(id, _)| id.clone())
        .collect()
}

fn reconcile_one(p: &mut Partition, ctx: &mut Ctx<'_>, k: &str) {
    let Some(rec) = p.services.get(k).cloned() else {
        return;
    };
    let tasks = task_views(p, &rec, ctx.now_ms);
    let draining = rec.status() == "DRAINING";
    if draining && tasks.iter().all(|t| t.stopped) {
        if let Some(r) = p.services.get_mut(k) {
            r.service.status = Some("INACTIVE".into());
            for d in r.service.deployments.iter_mut().flatten() {
                d.status = Some("INACTIVE".into());
            }
            sd::on_deleted(r);
        }
        save(p, ctx, k);
        return;
    }
    let daemon = rec.service.scheduling_strategy == Some(SchedulingStrategy::Daemon);
    let instances = daemon.then(|| daemon_instances(p, ctx, &rec));
    // A DAEMON service's desired count is its number of eligible instances (as ECS shows it,
    // and as `aws ecs wait services-stable` compares it with runningCount).
    if let Some(list) = &instances
        && !draining
    {
        let n = i32::try_from(list.len()).unwrap_or(i32::MAX);
        if rec.service.desired_count != Some(n)
            && let Some(r) = p.services.get_mut(k)
        {
            r.service.desired_count = Some(n);
            for d in r.service.deployments.iter_mut().flatten() {
                if d.status.as_deref() == Some("PRIMARY") {
                    d.desired_count = Some(n);
                }
            }
            r.steady = false;
            save(p, ctx, k);
        }
    }
    let config = rec
        .service
        .deployment_configuration
        .clone()
        .unwrap_or_default();
    let breaker = config
        .deployment_circuit_breaker
        .clone()
        .unwrap_or_default();
    let primary_id = rec
        .deployments()
        .iter()
        .find(|d| d.status.as_deref() == Some("PRIMARY"))
        .and_then(|d| d.id.clone());
    // Throttling: consecutive failed starts of the primary deployment since its last success.
    let prim_tasks: Vec<&TaskView> = tasks
        .iter()
        .filter(|t| Some(&t.deployment) == primary_id.as_ref())
        .collect();
    let last_success = prim_tasks
        .iter()
        .filter(|t| t.running)
        .filter_map(|t| t.started_at_ms)
        .max()
        .unwrap_or(0);
    let recent_failures: Vec<i64> = prim_tasks
        .iter()
        .filter(|t| t.failed && t.started_at_ms.is_none())
        .filter_map(|t| t.stopped_at_ms)
        .filter(|s| *s >= last_success)
        .collect();
    let start_failures = u32::try_from(recent_failures.len()).unwrap_or(u32::MAX);
    let last_failure = recent_failures.iter().copied().max().unwrap_or(0);
    let view = ServiceView {
        name: rec.name().to_string(),
        desired: if daemon {
            i32::try_from(instances.as_ref().map_or(0, Vec::len)).unwrap_or(0)
        } else {
            rec.service.desired_count.unwrap_or(0)
        },
        max_percent: config.maximum_percent.unwrap_or(200),
        min_percent: config.minimum_healthy_percent.unwrap_or(100),
        breaker: breaker.enable == Some(true),
        rollback: breaker.rollback == Some(true),
        grace_ms: i64::from(rec.service.health_check_grace_period_seconds.unwrap_or(0)) * 1000,
        start_failures,
        launch_not_before_ms: last_failure + service_plan::throttle_delay_ms(start_failures),
        draining,
        daemon_instances: instances,
    };
    let deployments: Vec<DeploymentView> = rec
        .deployments()
        .iter()
        .filter(|d| d.status.as_deref() != Some("INACTIVE"))
        .map(|d| {
            let id = d.id.clone().unwrap_or_default();
            let meta = rec.meta.get(&id).cloned().unwrap_or_default();
            DeploymentView {
                primary: d.status.as_deref() == Some("PRIMARY"),
                rollout: match d.rollout_state {
                    Some(DeploymentRolloutState::Completed) => Rollout::Completed,
                    Some(DeploymentRolloutState::Failed) => Rollout::Failed,
                    _ => Rollout::InProgress,
                },
                failed_tasks: meta.failed_tasks,
                proven: meta.proven,
                created_at_ms: meta.created_at_ms,
                rollback: meta.rollback,
                id,
            }
        })
        .collect();
    let actions = service_plan::plan(&view, &deployments, &tasks, ctx.now_ms);
    let throttling = start_failures >= 3 && ctx.now_ms < view.launch_not_before_ms;
    apply(p, ctx, k, actions, throttling);
}

fn apply(p: &mut Partition, ctx: &mut Ctx<'_>, k: &str, actions: Vec<Action>, throttling: bool) {
    let mut changed = false;
    let mut started: Vec<String> = Vec::new();
    let mut stopped: Vec<String> = Vec::new();
    let mut events: Vec<String> = Vec::new();
    for a in actions {
        match a {
            Action::Launch {
                deployment,
                count,
                instance,
            } => {
                let (ids, failure) = launch(p, ctx, k, &deployment, count, instance.as_deref());
                started.extend(ids);
                if let Some(reason) = failure {
                    events.push(reason);
                }
            }
            Action::Stop { task: id, reason } => {
                if task::request_stop(
                    p,
                    ctx,
                    &id,
                    TaskStopCode::ServiceSchedulerInitiated,
                    &reason,
                ) {
                    stopped.push(id);
                }
            }
            Action::Rollout {
                deployment,
                state,
                reason,
            } => {
                let Some(rec) = p.services.get_mut(k) else {
                    continue;
                };
                let mut td = None;
                for d in rec.service.deployments.iter_mut().flatten() {
                    if d.id.as_deref() == Some(deployment.as_str()) {
                        d.rollout_state = Some(match state {
                            Rollout::Completed => DeploymentRolloutState::Completed,
                            Rollout::Failed => DeploymentRolloutState::Failed,
                            Rollout::InProgress => DeploymentRolloutState::InProgress,
                        });
                        d.rollout_state_reason = Some(reason.clone());
                        d.updated_at = Some(ctx.now_secs());
                        td = d.task_definition.clone();
                    }
                }
                if state == Rollout::Completed {
                    rec.last_completed = td.map(|t| (deployment.clone(), t));
                }
                if state != Rollout::InProgress {
                    let now = ctx.now_ms;
                    with_record(p, k, |p, rec| {
                        sd::on_rollout(
                            p,
                            rec,
                            now,
                            &deployment,
                            state == Rollout::Completed,
                            &reason,
                        );
                    });
                }
                changed = true;
            }
            Action::RollBack { failed } => {
                roll_back(p, ctx, k, &failed, &mut events);
                changed = true;
            }
            Action::Retire { deployment } => {
                if let Some(rec) = p.services.get_mut(k) {
                    rec.service
                        .deployments
                        .get_or_insert_with(Vec::new)
                        .retain(|d| d.id.as_deref() != Some(deployment.as_str()));
                    rec.meta.remove(&deployment);
                    changed = true;
                }
            }
            Action::Breaker {
                deployment,
                failed_tasks,
                proven,
            } => {
                if let Some(m) = p
                    .services
                    .get_mut(k)
                    .and_then(|r| r.meta.get_mut(&deployment))
                {
                    m.failed_tasks = failed_tasks;
                    m.proven = proven;
                    changed = true;
                }
                if let Some(rec) = p.services.get_mut(k) {
                    sd::on_breaker(rec, &deployment, failed_tasks);
                }
            }
            Action::Throttle { .. } => {}
            Action::Event(e) => events.push(e),
        }
    }
    let name = p
        .services
        .get(k)
        .map(|r| r.name().to_string())
        .unwrap_or_default();
    if !started.is_empty() {
        let list: Vec<String> = started.iter().map(|id| format!("(task {id})")).collect();
        events.push(format!(
            "(service {name}) has started {} tasks: {}.",
            started.len(),
            list.join(" ")
        ));
    }
    if !stopped.is_empty() {
        let list: Vec<String> = stopped.iter().map(|id| format!("(task {id})")).collect();
        events.push(format!(
            "(service {name}) has stopped {} running tasks: {}.",
            stopped.len(),
            list.join(" ")
        ));
    }
    let steady_now = {
        let rec = &p.services[k];
        let v = view(p, rec, false);
        // Steady: one deployment, COMPLETED (a deployment still rolling out is not steady
        // even when its task count happens to match), and every task up.
        rec.status() == "ACTIVE"
            && v.deployments.as_ref().is_some_and(|d| {
                d.len() == 1 && d[0].rollout_state == Some(DeploymentRolloutState::Completed)
            })
            && v.running_count == v.desired_count
            && v.pending_count == Some(0)
    };
    let Some(rec) = p.services.get_mut(k) else {
        return;
    };
    if throttling && !rec.throttled_event {
        events.push(format!(
            "(service {name}) is unable to consistently start tasks successfully."
        ));
        rec.throttled_event = true;
        changed = true;
    } else if !throttling && rec.throttled_event && !started.is_empty() {
        rec.throttled_event = false;
        changed = true;
    }
    if steady_now && !rec.steady {
        events.push(format!("(service {name}) has reached a steady state."));
        rec.steady = true;
        changed = true;
    } else if !steady_now && rec.steady {
        rec.steady = false;
        changed = true;
    }
    // Don't repeat the newest event on every pass (a placement complaint, a configuration
    // that can neither start nor stop tasks): it would push everything else out of the 100.
    let mut last = rec
        .service
        .events
        .as_ref()
        .and_then(|e| e.first())
        .and_then(|e| e.message.clone());
    for e in events {
        if last.as_deref() == Some(e.as_str()) {
            continue;
        }
        last = Some(e.clone());
        push_event(rec, ctx, e);
        changed = true;
    }
    if changed || !started.is_empty() || !stopped.is_empty() {
        save(p, ctx, k);
    }
}

fn roll_back(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    k: &str,
    failed: &str,
    events: &mut Vec<String>,
) {
    let Some(rec) = p.services.get_mut(k) else {
        return;
    };
    let Some((good_id, good_td)) = rec.last_completed.clone() else {
        return;
    };
    let name = rec.name().to_string();
    for d in rec.service.deployments.iter_mut().flatten() {
        if d.status.as_deref() == Some("PRIMARY") {
            d.status = Some("ACTIVE".into());
        }
    }
    let reason = format!("ECS deployment circuit breaker: rolling back to deploymentId {good_id}.");
    let (d, id) = new_deployment(ctx, &rec.service, &good_td, Some(reason.clone()));
    sd::on_rollback(rec, ctx.now_ms, failed, &good_id, &id, &reason);
    rec.service.task_definition = Some(good_td);
    rec.service
        .deployments
        .get_or_insert_with(Vec::new)
        .insert(0, d);
    rec.meta.insert(
        id,
        DeploymentMeta {
            created_at_ms: ctx.now_ms,
            rollback: true,
            ..Default::default()
        },
    );
    rec.steady = false;
    events.push(format!(
        "(service {name}) rolling back to deployment {good_id}."
    ));
}

/// Start `count` tasks of `deployment`; returns their ids and, if some could not be placed,
/// the event that says why.
fn launch(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    k: &str,
    deployment: &str,
    count: i32,
    instance: Option<&str>,
) -> (Vec<String>, Option<String>) {
    let Some(rec) = p.services.get(k).cloned() else {
        return (vec![], None);
    };
    let name = rec.name().to_string();
    let Some(d) = rec
        .deployments()
        .iter()
        .find(|d| d.id.as_deref() == Some(deployment))
        .cloned()
    else {
        return (vec![], None);
    };
    let Some(td) = d
        .task_definition
        .as_deref()
        .and_then(|a| td_by_arn(p, a))
        .cloned()
    else {
        return (
            vec![],
            Some(format!(
                "(service {name}) was unable to place a task. Reason: the task definition no longer exists."
            )),
        );
    };
    let launch_type = rec.service.launch_type.clone().unwrap_or(LaunchType::Ec2);
    let overrides = ecs::TaskOverride::default();
    let res = task::reservation(&td.task_definition, &overrides, &launch_type);
    let group = format!("service:{name}");
    let mut constraints = rec
        .service
        .placement_constraints
        .clone()
        .unwrap_or_default();
    for c in td
        .task_definition
        .placement_constraints
        .as_deref()
        .unwrap_or_default()
    {
        constraints.push(ecs::PlacementConstraint {
            r#type: Some(ecs::PlacementConstraintType::MemberOf),
            expression: c.expression.clone(),
        });
    }
    let Ok((mut cands, distinct)) = task::candidates(
        p,
        ctx,
        &rec.cluster,
        &constraints,
        &group,
        !res.ports.is_empty(),
    ) else {
        return (vec![], None);
    };
    if let Some(i) = instance {
        cands.retain(|c| c.id == i);
    }
    if cands.is_empty() {
        return (
            vec![],
            Some(format!(
                "(service {name}) was unable to place a task because no container instance met all of its requirements. Reason: No Container Instances were found in your cluster."
            )),
        );
    }
    let mut strategies: Vec<PlacementStrategy> =
        rec.service.placement_strategy.clone().unwrap_or_default();
    if strategies.is_empty() {
        strategies.push(PlacementStrategy {
            r#type: Some(PlacementStrategyType::Spread),
            field: Some("instanceId".into()),
        });
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
        usize::try_from(count).unwrap_or(0),
        &strategies,
        ctx.rng,
    );
    let mut task_tags = Vec::new();
    match rec.service.propagate_tags {
        Some(ecs::PropagateTags::Service) => {
            task_tags.extend(rec.service.tags.clone().unwrap_or_default())
        }
        Some(ecs::PropagateTags::TaskDefinition) => task_tags.extend(td.tags.clone()),
        _ => {}
    }
    if rec.service.enable_ecs_managed_tags == Some(true) {
        task_tags.push(ecs::Tag {
            key: Some("aws:ecs:clusterName".into()),
            value: Some(rec.cluster.clone()),
        });
        task_tags.push(ecs::Tag {
            key: Some("aws:ecs:serviceName".into()),
            value: Some(name.clone()),
        });
    }
    let new = NewTask {
        cluster: &rec.cluster,
        td: &td,
        overrides,
        launch_type,
        started_by: Some(deployment.to_string()),
        group,
        tags: task_tags,
        client_token: None,
        reservation: res,
        subnet: task::first_subnet(rec.service.network_configuration.as_ref()),
    };
    let mut ids = Vec::new();
    for inst in &plan.placed {
        let t = task::create_task(p, ctx, &new, inst);
        ids.push(arn::last_segment(t.task_arn.as_deref().unwrap_or_default()).to_string());
    }
    let failure = plan.failures.first().map(|(_, reason)| {
        let why = match reason.as_str() {
            "RESOURCE:CPU" => "The closest matching container-instance has insufficient CPU units available.".to_string(),
            "RESOURCE:MEMORY" => "The closest matching container-instance has insufficient memory available.".to_string(),
            "RESOURCE:PORTS" => "The closest matching container-instance is already using a port required by your task.".to_string(),
            other => format!("{other}."),
        };
        format!("(service {name}) was unable to place a task because no container instance met all of its requirements. {why}")
    });
    (ids, failure)
}

/// Run `f` over the service record at `k` with the rest of the partition readable.
fn with_record(p: &mut Partition, k: &str, f: impl FnOnce(&Partition, &mut ServiceRecord)) {
    if let Some(mut rec) = p.services.remove(k) {
        f(p, &mut rec);
        p.services.insert(k.to_string(), rec);
    }
}

/// SHA-256 (hex) of a CreateService request as decoded.
fn request_digest(req: &CreateServiceRequest) -> String {
    use sha2::{Digest, Sha256};
    let body = serde_json::to_vec(req).unwrap_or_default();
    Sha256::digest(&body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Load helper: the record key of a service record.
pub fn map_key(rec: &ServiceRecord) -> String {
    key(&rec.cluster, rec.name())
}

/// Record an event on a service, in its event list as ECS shows it (e.g. Application Auto
/// Scaling changing its desiredCount), and save the service.
pub fn add_event(p: &mut Partition, ctx: &mut Ctx<'_>, cluster: &str, name: &str, message: String) {
    let k = key(cluster, name);
    if let Some(rec) = p.services.get_mut(&k) {
        push_event(rec, ctx, message);
        save(p, ctx, &k);
    }
}
