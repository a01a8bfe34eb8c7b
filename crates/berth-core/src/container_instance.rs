//! Container instances: hosts running an agent. Registration comes over the agent protocol;
//! the ECS API describes, lists, drains and deregisters them, and manages their attributes.

use crate::agent_protocol::{AgentError, RegisterRequest};
use crate::state::{Ctx, InstanceRecord, Kind, Partition, keys};
use crate::{arn, cluster, pagination, query};
use berth_api::EcsError;
use berth_api::ecs::{
    self, Attribute, ContainerInstanceStatus, DeleteAttributesRequest, DeleteAttributesResponse,
    DeregisterContainerInstanceRequest, DeregisterContainerInstanceResponse,
    DescribeContainerInstancesRequest, DescribeContainerInstancesResponse, ListAttributesRequest,
    ListAttributesResponse, ListContainerInstancesRequest, ListContainerInstancesResponse,
    PutAttributesRequest, PutAttributesResponse, Resource, UpdateContainerInstancesStateRequest,
    UpdateContainerInstancesStateResponse,
};

/// An agent not heard from for this long is shown `agentConnected: false` and gets no new
/// placements, and its tasks are replaced elsewhere. Agents sync at least every
/// [`SYNC_INTERVAL_MS`] (the server holds a poll no longer), so a live agent's heartbeats are
/// ~1.5 s apart and it has 3 s of slack before a false verdict; a frozen one is detected at
/// most 4.5 s (+ one scheduler tick) after it froze.
pub const AGENT_TIMEOUT_MS: i64 = 4_500;

/// Longest time an agent's sync is held open by the server (long poll).
pub const SYNC_INTERVAL_MS: u64 = 1_500;

/// Host ports ECS reserves on every instance (SSH, Docker, the ECS agent).
pub const DEFAULT_RESERVED_PORTS: [i32; 6] = [22, 2375, 2376, 51678, 51679, 51680];

/// Attributes a container instance may carry (ECS's limit).
const MAX_ATTRIBUTES: usize = 10_000;

/// Is the agent of `id` connected as of `now_ms`?
pub fn connected(p: &Partition, id: &str, now_ms: i64) -> bool {
    p.liveness
        .get(id)
        .is_some_and(|l| now_ms - l.last_seen_ms <= AGENT_TIMEOUT_MS)
}

/// Record that the agent of `id` was heard from at `at_ms` (a request's arrival). Never moves
/// back: a request that arrived earlier but is processed later leaves a later stamp alone.
pub fn heartbeat(p: &mut Partition, id: &str, at_ms: i64) {
    let l = p.liveness.entry(id.to_string()).or_default();
    l.last_seen_ms = l.last_seen_ms.max(at_ms);
}

/// The version of instance `id`'s desired state (what [`crate::task::desired_state`] would
/// carry), without building it.
pub fn desired_version(p: &Partition, id: &str) -> u64 {
    p.liveness.get(id).map_or(0, |l| l.desired_version)
}

/// Bump the desired-state version of instance `id` and note it for waking.
pub fn wake(p: &mut Partition, ctx: &mut Ctx<'_>, id: &str) {
    let l = p.liveness.entry(id.to_string()).or_default();
    l.desired_version = l.desired_version.wrapping_add(1);
    ctx.woken.push(id.to_string());
}

/// CPU, memory and ports in use by non-stopped tasks counted against instance `id` (kept
/// by the tasks index as tasks change: O(ports held), not O(tasks)).
pub fn used(p: &Partition, id: &str) -> (i32, i32, Vec<i32>) {
    let Some(u) = p.tasks.usage_on(id) else {
        return (0, 0, Vec::new());
    };
    let (cpu, memory) = used_cpu_memory(u);
    (cpu, memory, u.ports.keys().copied().collect())
}

/// CPU and memory held by the usage `u` of an instance's live tasks.
pub fn used_cpu_memory(u: &crate::state::Usage) -> (i32, i32) {
    (saturate(u.cpu), saturate(u.memory))
}

fn saturate(v: i64) -> i32 {
    i32::try_from(v).unwrap_or(if v < 0 { i32::MIN } else { i32::MAX })
}

fn resource_int(name: &str, v: i32) -> Resource {
    Resource {
        name: Some(name.into()),
        r#type: Some("INTEGER".into()),
        integer_value: Some(v),
        double_value: Some(0.0),
        long_value: Some(0),
        ..Default::default()
    }
}

fn resource_ports(name: &str, ports: &[i32]) -> Resource {
    Resource {
        name: Some(name.into()),
        r#type: Some("STRINGSET".into()),
        string_set_value: Some(ports.iter().map(ToString::to_string).collect()),
        integer_value: Some(0),
        double_value: Some(0.0),
        long_value: Some(0),
    }
}

/// Registered CPU, memory and reserved ports of an instance.
pub fn registered(rec: &InstanceRecord) -> (i32, i32, Vec<i32>) {
    let (cpu, memory) = registered_cpu_memory(rec);
    (cpu, memory, registered_ports(rec))
}

/// Registered CPU and memory of an instance.
pub fn registered_cpu_memory(rec: &InstanceRecord) -> (i32, i32) {
    let rs = rec
        .instance
        .registered_resources
        .as_deref()
        .unwrap_or_default();
    let int = |n: &str| {
        rs.iter()
            .find(|r| r.name.as_deref() == Some(n))
            .and_then(|r| r.integer_value)
            .unwrap_or(0)
    };
    (int("CPU"), int("MEMORY"))
}

/// Ports reserved at registration.
pub fn registered_ports(rec: &InstanceRecord) -> Vec<i32> {
    rec.instance
        .registered_resources
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|r| r.name.as_deref() == Some("PORTS"))
        .and_then(|r| r.string_set_value.as_ref())
        .map(|v| v.iter().filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default()
}

/// The instance as the API shows it, with live counts and remaining resources.
pub fn view(
    p: &Partition,
    id: &str,
    rec: &InstanceRecord,
    now_ms: i64,
    with_tags: bool,
) -> ecs::ContainerInstance {
    let mut ci = rec.instance.clone();
    let (cpu, mem, reserved) = registered(rec);
    let (used_cpu, used_mem, used_ports) = used(p, id);
    let mut ports = reserved;
    ports.extend(used_ports);
    ports.sort_unstable();
    ports.dedup();
    ci.remaining_resources = Some(vec![
        resource_int("CPU", cpu - used_cpu),
        resource_int("MEMORY", mem - used_mem),
        resource_ports("PORTS", &ports),
        resource_ports("PORTS_UDP", &[]),
    ]);
    // RUNNING and PENDING tasks are live: the index has them (a scan read every STOPPED one).
    let on_me = || p.tasks.live_on(id).map(|(_, t)| t);
    let running = on_me()
        .filter(|t| t.task.last_status.as_deref() == Some("RUNNING"))
        .count();
    let pending = on_me()
        .filter(|t| {
            matches!(
                t.task.last_status.as_deref(),
                Some("PROVISIONING" | "PENDING" | "ACTIVATING")
            )
        })
        .count();
    ci.running_tasks_count = Some(i32::try_from(running).unwrap_or(i32::MAX));
    ci.pending_tasks_count = Some(i32::try_from(pending).unwrap_or(i32::MAX));
    ci.agent_connected = Some(connected(p, id, now_ms) && ci.status.as_deref() != Some("INACTIVE"));
    if !with_tags {
        ci.tags = Some(vec![]);
    }
    ci
}

fn find_cluster_name(
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

/// Register an agent as a container instance (or re-register it as the instance it was).
///
/// The agent is let in when it rejoins with its own instance credential, when it presents a
/// live registration token of the cluster ([`crate::agent_token`]), or when the server found
/// its token to be the server-wide operator token (`server_token_ok`).
pub fn register(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    req: &RegisterRequest,
    server_token_ok: bool,
) -> Result<(String, String), AgentError> {
    let cluster_name = find_cluster_name(p, ctx, Some(&req.cluster));
    let previous = cluster_name.as_ref().ok().and_then(|cluster_name| {
        let a = req.container_instance_arn.as_deref()?;
        let id = arn::resource_id(&ctx.partition, "container-instance", cluster_name, a)?;
        let rec = p.instances.get(id)?;
        (rec.cluster == *cluster_name
            && rec.instance.status.as_deref() != Some("INACTIVE")
            && req
                .instance_token
                .as_deref()
                .is_some_and(|t| constant_time_eq(rec.token.as_bytes(), t.as_bytes())))
        .then(|| id.to_string())
    });
    let admitted = server_token_ok
        || previous.is_some()
        || cluster_name
            .as_ref()
            .is_ok_and(|name| crate::agent_token::accepts(p, name, &req.token));
    // A caller without a valid token learns nothing, not even whether the cluster exists.
    if !admitted {
        return Err(AgentError::Unauthorized(
            "wrong agent registration token".into(),
        ));
    }
    let cluster_name =
        cluster_name.map_err(|_| AgentError::ClusterNotFound(req.cluster.clone()))?;
    let id = previous.clone().unwrap_or_else(|| ctx.new_id());
    let token = match &previous {
        Some(id) => p.instances[id].token.clone(),
        None => ctx.new_id() + &ctx.new_id(),
    };
    let mut reserved: Vec<i32> = DEFAULT_RESERVED_PORTS.to_vec();
    reserved.extend(req.reserved_ports.iter().copied());
    reserved.sort_unstable();
    reserved.dedup();
    let mut attributes: Vec<Attribute> = req.attributes.clone();
    // User-set attributes (PutAttributes) survive a re-registration.
    if let Some(prev) = previous.as_ref().and_then(|id| p.instances.get(id)) {
        for a in prev.instance.attributes.as_deref().unwrap_or_default() {
            if !attributes.iter().any(|x| x.name == a.name) {
                attributes.push(a.clone());
            }
        }
    }
    for a in &mut attributes {
        a.target_type = None;
        a.target_id = None;
    }
    let arn_text = arn::container_instance(&ctx.partition, &cluster_name, &id);
    let old = previous
        .as_ref()
        .and_then(|id| p.instances.get(id))
        .map(|r| r.instance.clone());
    let instance = ecs::ContainerInstance {
        container_instance_arn: Some(arn_text.clone()),
        ec2_instance_id: Some(format!("berth-{}", &id[..12])),
        version: Some(old.as_ref().and_then(|o| o.version).unwrap_or(0) + 1),
        version_info: Some(req.version_info.clone()),
        registered_resources: Some(vec![
            resource_int("CPU", req.cpu_units),
            resource_int("MEMORY", req.memory_mib),
            resource_ports("PORTS", &reserved),
            resource_ports("PORTS_UDP", &[]),
        ]),
        status: Some(
            old.as_ref()
                .and_then(|o| o.status.clone())
                .filter(|s| s == "DRAINING")
                .unwrap_or_else(|| "ACTIVE".into()),
        ),
        agent_update_status: None,
        attributes: Some(attributes),
        registered_at: Some(
            old.as_ref()
                .and_then(|o| o.registered_at)
                .unwrap_or_else(|| ctx.now_secs()),
        ),
        attachments: Some(vec![]),
        tags: Some(
            old.as_ref()
                .and_then(|o| o.tags.clone())
                .unwrap_or_default(),
        ),
        ..Default::default()
    };
    let rec = InstanceRecord {
        cluster: cluster_name.clone(),
        instance,
        token: token.clone(),
        runtime: req.runtime.clone(),
        hostname: req.hostname.clone(),
    };
    ctx.put(
        Kind::ContainerInstance,
        &keys::container_instance(&cluster_name, &id),
        &rec,
    );
    p.instances.insert(id.clone(), rec);
    heartbeat(p, &id, ctx.now_ms);
    wake(p, ctx, &id);
    Ok((arn_text, token))
}

/// Check an agent's instance credential; returns the instance id.
pub fn authenticate(
    p: &Partition,
    ctx: &Ctx<'_>,
    instance_arn: &str,
    token: &str,
) -> Result<String, AgentError> {
    let parsed = arn::parse(instance_arn)
        .ok_or_else(|| AgentError::BadRequest("bad instance ARN".into()))?;
    let id = arn::last_segment(parsed.resource);
    if parsed.region != ctx.partition.region || parsed.account != ctx.partition.account {
        return Err(AgentError::Unauthorized("unknown instance".into()));
    }
    let rec = p
        .instances
        .get(id)
        .ok_or_else(|| AgentError::Unauthorized("unknown instance".into()))?;
    if !constant_time_eq(rec.token.as_bytes(), token.as_bytes()) {
        return Err(AgentError::Unauthorized("wrong instance credential".into()));
    }
    if rec.instance.status.as_deref() == Some("INACTIVE") {
        return Err(AgentError::Deregistered(instance_arn.to_string()));
    }
    Ok(id.to_string())
}

/// Compare secrets without leaking where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn resolve<'a>(p: &Partition, ctx: &Ctx<'_>, cluster: &str, reference: &'a str) -> Option<&'a str> {
    let id = arn::resource_id(&ctx.partition, "container-instance", cluster, reference)?;
    p.instances
        .get(id)
        .filter(|r| r.cluster == cluster)
        .map(|_| id)
}

/// DescribeContainerInstances.
pub fn describe(
    p: &Partition,
    ctx: &Ctx<'_>,
    req: DescribeContainerInstancesRequest,
) -> Result<DescribeContainerInstancesResponse, EcsError> {
    let cluster_name = find_cluster_name(p, ctx, req.cluster.as_deref())?;
    let refs = req.container_instances.unwrap_or_default();
    if refs.is_empty() || refs.len() > 100 {
        return Err(EcsError::invalid(
            "containerInstances must contain between 1 and 100 items.",
        ));
    }
    let with_tags = req
        .include
        .unwrap_or_default()
        .iter()
        .any(|i| i.as_str() == "TAGS");
    let mut out = Vec::new();
    let mut failures = Vec::new();
    for r in refs {
        match resolve(p, ctx, &cluster_name, &r) {
            Some(id) => out.push(view(p, id, &p.instances[id], ctx.now_ms, with_tags)),
            None => failures.push(ecs::Failure {
                arn: Some(if r.starts_with("arn:") {
                    r.clone()
                } else {
                    arn::container_instance(&ctx.partition, &cluster_name, &r)
                }),
                reason: Some("MISSING".into()),
                detail: None,
            }),
        }
    }
    Ok(DescribeContainerInstancesResponse {
        container_instances: Some(out),
        failures: Some(failures),
    })
}

struct InstanceSubject<'a> {
    p: &'a Partition,
    id: &'a str,
    rec: &'a InstanceRecord,
    now_ms: i64,
}

impl query::Subject for InstanceSubject<'_> {
    fn attribute(&self, name: &str) -> Option<Option<&str>> {
        let a = self.rec.instance.attributes.as_deref().unwrap_or_default();
        Some(
            a.iter()
                .find(|x| x.name.as_deref() == Some(name))
                .map(|x| x.value.as_deref().unwrap_or_default()),
        )
    }

    fn values(&self, subject: &str) -> Option<Vec<String>> {
        if let Some(name) = subject.strip_prefix("attribute:") {
            let a = self.rec.instance.attributes.as_deref().unwrap_or_default();
            return a
                .iter()
                .find(|x| x.name.as_deref() == Some(name))
                .map(|x| vec![x.value.clone().unwrap_or_default()]);
        }
        match subject {
            "agentConnected" => Some(vec![connected(self.p, self.id, self.now_ms).to_string()]),
            "agentVersion" => self
                .rec
                .instance
                .version_info
                .as_ref()
                .and_then(|v| v.agent_version.clone())
                .map(|v| vec![v]),
            "ec2InstanceId" => self.rec.instance.ec2_instance_id.clone().map(|v| vec![v]),
            "registeredAt" => self
                .rec
                .instance
                .registered_at
                .map(|v| vec![format!("{v}")]),
            "runningTasksCount" => Some(vec![
                self.p
                    .tasks
                    .live_on(self.id)
                    .filter(|(_, t)| t.task.last_status.as_deref() == Some("RUNNING"))
                    .count()
                    .to_string(),
            ]),
            "task:group" => Some(
                self.p
                    .tasks
                    .usage_on(self.id)
                    .map(|u| u.groups.keys().cloned().collect())
                    .unwrap_or_default(),
            ),
            _ => None,
        }
    }
}

/// Does instance `id` satisfy a cluster-query-language expression?
pub fn matches(
    p: &Partition,
    id: &str,
    rec: &InstanceRecord,
    now_ms: i64,
    expr: &query::Expr,
) -> bool {
    expr.eval(&InstanceSubject { p, id, rec, now_ms })
}

/// ListContainerInstances (with `filter` and `status`).
pub fn list(
    p: &Partition,
    ctx: &Ctx<'_>,
    req: ListContainerInstancesRequest,
) -> Result<ListContainerInstancesResponse, EcsError> {
    let cluster_name = find_cluster_name(p, ctx, req.cluster.as_deref())?;
    let limit = pagination::max_results(req.max_results, 100)?;
    let filter = req
        .filter
        .as_deref()
        .map(query::parse)
        .transpose()
        .map_err(|e| EcsError::invalid(format!("Invalid filter expression: {e}.")))?;
    let items: Vec<(String, String)> = p
        .instances
        .iter()
        .filter(|(_, r)| r.cluster == cluster_name)
        .filter(|(_, r)| match &req.status {
            Some(s) => r.instance.status.as_deref() == Some(s.as_str()),
            None => r.instance.status.as_deref() != Some("INACTIVE"),
        })
        .filter(|(id, r)| {
            filter
                .as_ref()
                .is_none_or(|f| matches(p, id, r, ctx.now_ms, f))
        })
        .map(|(_, r)| {
            let a = r
                .instance
                .container_instance_arn
                .clone()
                .unwrap_or_default();
            (a.clone(), a)
        })
        .collect();
    let (arns, next) = pagination::page(items, req.next_token.as_deref(), limit)?;
    Ok(ListContainerInstancesResponse {
        container_instance_arns: Some(arns),
        next_token: next,
    })
}

/// DeregisterContainerInstance. Without `force`, refuses while tasks run there; with it, the
/// tasks keep running but the instance leaves the cluster.
pub fn deregister(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    req: DeregisterContainerInstanceRequest,
) -> Result<DeregisterContainerInstanceResponse, EcsError> {
    let cluster_name = find_cluster_name(p, ctx, req.cluster.as_deref())?;
    let reference = req.container_instance.unwrap_or_default();
    let id = resolve(p, ctx, &cluster_name, &reference)
        .filter(|id| p.instances[*id].instance.status.as_deref() != Some("INACTIVE"))
        .ok_or_else(|| EcsError::invalid("The referenced container instance was not found."))?
        .to_string();
    let busy = p.tasks.any_live_on(&id);
    if busy && req.force != Some(true) {
        return Err(EcsError::invalid(
            "Found running tasks on the instance. Stop the tasks or use force to deregister the instance.",
        ));
    }
    let rec = p
        .instances
        .get_mut(&id)
        .ok_or_else(|| EcsError::invalid("The referenced container instance was not found."))?;
    rec.instance.status = Some("INACTIVE".into());
    rec.instance.version = Some(rec.instance.version.unwrap_or(0) + 1);
    let saved = rec.clone();
    ctx.put(
        Kind::ContainerInstance,
        &keys::container_instance(&cluster_name, &id),
        &saved,
    );
    wake(p, ctx, &id);
    let view = view(p, &id, &saved, ctx.now_ms, true);
    Ok(DeregisterContainerInstanceResponse {
        container_instance: Some(view),
    })
}

/// UpdateContainerInstancesState (ACTIVE <-> DRAINING).
pub fn update_state(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    req: UpdateContainerInstancesStateRequest,
) -> Result<UpdateContainerInstancesStateResponse, EcsError> {
    let cluster_name = find_cluster_name(p, ctx, req.cluster.as_deref())?;
    let status = req.status.unwrap_or(ContainerInstanceStatus::Active);
    if !matches!(
        status,
        ContainerInstanceStatus::Active | ContainerInstanceStatus::Draining
    ) {
        return Err(EcsError::invalid(
            "Container instances can only be set to ACTIVE or DRAINING.",
        ));
    }
    let refs = req.container_instances.unwrap_or_default();
    if refs.is_empty() || refs.len() > 10 {
        return Err(EcsError::invalid(
            "containerInstances must contain between 1 and 10 items.",
        ));
    }
    let mut ids = Vec::new();
    let mut failures = Vec::new();
    for r in refs {
        match resolve(p, ctx, &cluster_name, &r)
            .filter(|id| p.instances[*id].instance.status.as_deref() != Some("INACTIVE"))
        {
            Some(id) => ids.push(id.to_string()),
            None => failures.push(ecs::Failure {
                arn: Some(r.clone()),
                reason: Some("MISSING".into()),
                detail: None,
            }),
        }
    }
    let mut out = Vec::new();
    for id in ids {
        if let Some(rec) = p.instances.get_mut(&id)
            && rec.instance.status.as_deref() != Some(status.as_str())
        {
            rec.instance.status = Some(status.as_str().to_string());
            rec.instance.version = Some(rec.instance.version.unwrap_or(0) + 1);
            let saved = rec.clone();
            ctx.put(
                Kind::ContainerInstance,
                &keys::container_instance(&cluster_name, &id),
                &saved,
            );
        }
        out.push(view(p, &id, &p.instances[&id], ctx.now_ms, false));
    }
    Ok(UpdateContainerInstancesStateResponse {
        container_instances: Some(out),
        failures: Some(failures),
    })
}

fn attribute_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_/\\.".contains(&b))
}

fn attribute_target(
    p: &Partition,
    ctx: &Ctx<'_>,
    cluster_name: &str,
    a: &Attribute,
) -> Result<String, EcsError> {
    if let Some(t) = &a.target_type
        && t.as_str() != "container-instance"
    {
        return Err(EcsError::invalid("targetType must be container-instance."));
    }
    let target = a
        .target_id
        .as_deref()
        .ok_or_else(|| EcsError::invalid("targetId is required for each attribute."))?;
    resolve(p, ctx, cluster_name, target)
        .map(str::to_string)
        .ok_or_else(|| {
            EcsError::ResourceNotFound(format!("The specified target '{target}' was not found."))
        })
}

/// PutAttributes.
pub fn put_attributes(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    req: PutAttributesRequest,
) -> Result<PutAttributesResponse, EcsError> {
    let cluster_name = find_cluster_name(p, ctx, req.cluster.as_deref())?;
    let attrs = req.attributes.unwrap_or_default();
    if attrs.is_empty() || attrs.len() > 10 {
        return Err(EcsError::invalid(
            "attributes must contain between 1 and 10 items.",
        ));
    }
    let mut plan = Vec::new();
    for a in &attrs {
        let name = a.name.as_deref().unwrap_or_default();
        if !attribute_name_ok(name) {
            return Err(EcsError::invalid(format!(
                "Invalid attribute name '{name}': 1-128 letters, numbers, hyphens, underscores, slashes, backslashes and periods."
            )));
        }
        if a.value.as_deref().is_some_and(|v| v.len() > 128) {
            return Err(EcsError::invalid(format!(
                "The value of attribute '{name}' is longer than 128 characters."
            )));
        }
        plan.push((attribute_target(p, ctx, &cluster_name, a)?, a.clone()));
    }
    for (id, _) in &plan {
        if p.instances[id]
            .instance
            .attributes
            .as_ref()
            .map_or(0, Vec::len)
            >= MAX_ATTRIBUTES
        {
            return Err(EcsError::Client("Attribute limit exceeded.".into()));
        }
    }
    for (id, a) in plan {
        if let Some(rec) = p.instances.get_mut(&id) {
            let list = rec.instance.attributes.get_or_insert_with(Vec::new);
            let stored = Attribute {
                name: a.name.clone(),
                value: a.value.clone(),
                ..Default::default()
            };
            match list.iter_mut().find(|x| x.name == a.name) {
                Some(x) => *x = stored,
                None => list.push(stored),
            }
            let saved = rec.clone();
            ctx.put(
                Kind::ContainerInstance,
                &keys::container_instance(&cluster_name, &id),
                &saved,
            );
        }
    }
    Ok(PutAttributesResponse {
        attributes: Some(attrs),
    })
}

/// DeleteAttributes.
pub fn delete_attributes(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    req: DeleteAttributesRequest,
) -> Result<DeleteAttributesResponse, EcsError> {
    let cluster_name = find_cluster_name(p, ctx, req.cluster.as_deref())?;
    let attrs = req.attributes.unwrap_or_default();
    if attrs.is_empty() {
        return Err(EcsError::invalid("attributes must not be empty."));
    }
    let mut plan = Vec::new();
    for a in &attrs {
        plan.push((attribute_target(p, ctx, &cluster_name, a)?, a.name.clone()));
    }
    for (id, name) in plan {
        if let Some(rec) = p.instances.get_mut(&id) {
            rec.instance
                .attributes
                .get_or_insert_with(Vec::new)
                .retain(|x| x.name != name);
            let saved = rec.clone();
            ctx.put(
                Kind::ContainerInstance,
                &keys::container_instance(&cluster_name, &id),
                &saved,
            );
        }
    }
    Ok(DeleteAttributesResponse {
        attributes: Some(attrs),
    })
}

/// ListAttributes (targetType container-instance).
pub fn list_attributes(
    p: &Partition,
    ctx: &Ctx<'_>,
    req: ListAttributesRequest,
) -> Result<ListAttributesResponse, EcsError> {
    let cluster_name = find_cluster_name(p, ctx, req.cluster.as_deref())?;
    if req.target_type.as_ref().map(|t| t.as_str()) != Some("container-instance") {
        return Err(EcsError::invalid("targetType must be container-instance."));
    }
    let limit = pagination::max_results(req.max_results, 100)?;
    let mut items = Vec::new();
    for (id, rec) in p
        .instances
        .iter()
        .filter(|(_, r)| r.cluster == cluster_name)
    {
        if rec.instance.status.as_deref() == Some("INACTIVE") {
            continue;
        }
        for a in rec.instance.attributes.as_deref().unwrap_or_default() {
            if req
                .attribute_name
                .as_ref()
                .is_some_and(|n| a.name.as_ref() != Some(n))
            {
                continue;
            }
            if req
                .attribute_value
                .as_ref()
                .is_some_and(|v| a.value.as_ref() != Some(v))
            {
                continue;
            }
            let key = format!("{id}/{}", a.name.as_deref().unwrap_or_default());
            items.push((
                key,
                Attribute {
                    target_type: Some(ecs::TargetType::ContainerInstance),
                    target_id: rec.instance.container_instance_arn.clone(),
                    ..a.clone()
                },
            ));
        }
    }
    let (attributes, next) = pagination::page(items, req.next_token.as_deref(), limit)?;
    Ok(ListAttributesResponse {
        attributes: Some(attributes),
        next_token: next,
    })
}
