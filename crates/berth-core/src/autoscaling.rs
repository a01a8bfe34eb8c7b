//! Application Auto Scaling for ECS services: scalable targets, target tracking policies,
//! scheduled actions and scaling activities (the `AnyScaleFrontendService` operations), and
//! the controller pass ([`reconcile`]) that runs scheduled actions and the target tracking
//! decision ([`scaler::plan_target_tracking`]) and changes services' desiredCount.
//!
//! Only the `ecs` namespace (`service/CLUSTER/SERVICE`, `ecs:service:DesiredCount`) can be
//! registered: Berth has no other resource to scale. Describing other namespaces answers
//! with empty lists, as AWS does for a namespace with nothing registered.

pub mod scaler;
pub mod schedule;

use crate::service;
use crate::state::{Ctx, Kind, Partition};
use berth_api::application_autoscaling::{
    self as aas, Alarm, DeleteScalingPolicyRequest, DeleteScalingPolicyResponse,
    DeleteScheduledActionRequest, DeleteScheduledActionResponse, DeregisterScalableTargetRequest,
    DeregisterScalableTargetResponse, DescribeScalableTargetsRequest,
    DescribeScalableTargetsResponse, DescribeScalingActivitiesRequest,
    DescribeScalingActivitiesResponse, DescribeScalingPoliciesRequest,
    DescribeScalingPoliciesResponse, DescribeScheduledActionsRequest,
    DescribeScheduledActionsResponse, ListTagsForResourceRequest, ListTagsForResourceResponse,
    MetricType, PolicyType, PutScalingPolicyRequest, PutScalingPolicyResponse,
    PutScheduledActionRequest, PutScheduledActionResponse, RegisterScalableTargetRequest,
    RegisterScalableTargetResponse, ScalableDimension, ScalingActivityStatusCode, ServiceNamespace,
    TagResourceRequest, TagResourceResponse, UntagResourceRequest, UntagResourceResponse,
};
use berth_api::{ApiError, AutoScalingError, Service, decode, encode};
use scaler::{Direction, ScaleOutMark, TrackedMetric, TrackingPolicy};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

type Result<T> = std::result::Result<T, AutoScalingError>;

/// ECS's defaults for target tracking cooldowns when a policy sets none (seconds).
pub const DEFAULT_COOLDOWN_SECS: i32 = 300;
/// Scaling activities kept per scalable target (AWS keeps six weeks; so do we, up to this).
pub const MAX_ACTIVITIES_PER_TARGET: usize = 200;
/// How long scaling activities are kept (AWS: six weeks).
pub const ACTIVITY_RETENTION_MS: i64 = 42 * 24 * 3_600_000;
/// Scaling policies per scalable target (AWS's quota).
pub const MAX_POLICIES_PER_TARGET: usize = 50;
/// Scheduled actions per scalable target (AWS's quota).
pub const MAX_SCHEDULED_ACTIONS_PER_TARGET: usize = 200;
/// Tags per scalable target.
pub const MAX_TAGS: usize = 50;

/// A scalable target as stored, with its policies and scheduled actions (deregistering a
/// target deletes them, as on AWS).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScalableTargetRecord {
    /// The target in AWS's shape.
    pub target: aas::ScalableTarget,
    /// Scaling policies by name.
    #[serde(default)]
    pub policies: BTreeMap<String, aas::ScalingPolicy>,
    /// Scheduled actions by name.
    #[serde(default)]
    pub scheduled_actions: BTreeMap<String, ScheduledActionRecord>,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// The last scale-out by a policy (for the scale-out cooldown).
    #[serde(default)]
    pub last_scale_out: Option<ScaleOutMark>,
    /// The last scale-in by a policy (epoch ms, for the scale-in cooldown).
    #[serde(default)]
    pub last_scale_in_ms: Option<i64>,
}

/// A scheduled action as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduledActionRecord {
    /// The action in AWS's shape.
    pub action: aas::ScheduledAction,
    /// Occurrences at or before this instant are not due: when the action was last put,
    /// or the time of its last run (epoch ms).
    pub after_ms: i64,
}

/// One scaling activity as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivityRecord {
    /// The activity in AWS's shape.
    pub activity: aas::ScalingActivity,
    /// Its rank among the activities recorded in the same millisecond (they list in the
    /// order they happened).
    #[serde(default)]
    pub seq: u32,
}

/// The scalable targets and activities of one partition.
#[derive(Debug, Clone, Default)]
pub struct AutoScaling {
    /// Targets by [`target_key`].
    pub targets: BTreeMap<String, ScalableTargetRecord>,
    /// Activities by `{start_ms:015}/{seq:05}/{activity id}` (time order).
    pub activities: BTreeMap<String, ActivityRecord>,
}

/// Map (and record) key of a target: namespace, dimension, resource id.
pub fn target_key(namespace: &str, dimension: &str, resource_id: &str) -> String {
    format!("{namespace}/{dimension}/{resource_id}")
}

fn record_key(k: &str) -> String {
    format!("scalable-target/{k}")
}

fn activity_record_key(k: &str) -> String {
    format!("scaling-activity/{k}")
}

/// The map key of a stored target record.
pub fn key_of(rec: &ScalableTargetRecord) -> String {
    let t = &rec.target;
    target_key(
        t.service_namespace.as_ref().map_or("", |n| n.as_str()),
        t.scalable_dimension.as_ref().map_or("", |d| d.as_str()),
        t.resource_id.as_deref().unwrap_or_default(),
    )
}

/// The map key of a stored activity record.
pub fn activity_key_of(rec: &ActivityRecord) -> String {
    activity_key(
        secs_to_ms(rec.activity.start_time.unwrap_or_default()),
        rec.seq,
        rec.activity.activity_id.as_deref().unwrap_or_default(),
    )
}

fn activity_key(start_ms: i64, seq: u32, id: &str) -> String {
    format!("{start_ms:015}/{seq:05}/{id}")
}

#[allow(clippy::cast_possible_truncation)]
fn secs_to_ms(s: f64) -> i64 {
    if s.is_finite() {
        (s * 1000.0).round() as i64
    } else {
        0
    }
}

fn save(p: &Partition, ctx: &mut Ctx<'_>, k: &str) {
    if let Some(rec) = p.autoscaling.targets.get(k) {
        ctx.put(Kind::ScalableTarget, &record_key(k), rec);
    }
}

/// The three members naming a target, checked: namespace, dimension, resource id.
struct TargetId {
    namespace: ServiceNamespace,
    dimension: ScalableDimension,
    resource_id: String,
}

impl TargetId {
    fn key(&self) -> String {
        target_key(
            self.namespace.as_str(),
            self.dimension.as_str(),
            &self.resource_id,
        )
    }

    fn describe(&self) -> String {
        format!(
            "service namespace: {}, resource ID: {}, scalable dimension: {}",
            self.namespace, self.resource_id, self.dimension
        )
    }

    fn not_registered(&self) -> AutoScalingError {
        AutoScalingError::ObjectNotFound(format!(
            "No scalable target registered for {}",
            self.describe()
        ))
    }
}

fn unsupported() -> AutoScalingError {
    AutoScalingError::validation(
        "Unsupported service namespace, resource type or scalable dimension",
    )
}

/// Check namespace, dimension and resource id (required members, so validation has
/// already refused their absence). Only ECS services can be scaled by Berth.
fn target_id(
    namespace: Option<ServiceNamespace>,
    dimension: Option<ScalableDimension>,
    resource_id: Option<String>,
) -> Result<TargetId> {
    let (Some(namespace), Some(dimension), Some(resource_id)) = (namespace, dimension, resource_id)
    else {
        return Err(unsupported());
    };
    if namespace != ServiceNamespace::Ecs || dimension != ScalableDimension::EcsServiceDesiredCount
    {
        return Err(unsupported());
    }
    if ecs_service_of(&resource_id).is_none() {
        return Err(AutoScalingError::validation(format!(
            "Unsupported resource ID {resource_id}: an ECS service is service/CLUSTER/SERVICE"
        )));
    }
    Ok(TargetId {
        namespace,
        dimension,
        resource_id,
    })
}

/// `service/CLUSTER/SERVICE` -> (cluster, service).
pub fn ecs_service_of(resource_id: &str) -> Option<(&str, &str)> {
    let rest = resource_id.strip_prefix("service/")?;
    let (cluster, name) = rest.split_once('/')?;
    (!cluster.is_empty() && !name.is_empty() && !name.contains('/')).then_some((cluster, name))
}

fn service_key(p: &Partition, resource_id: &str) -> Option<String> {
    let (cluster, name) = ecs_service_of(resource_id)?;
    let k = format!("{cluster}/{name}");
    let rec = p.services.get(&k)?;
    (rec.service.status.as_deref().unwrap_or("ACTIVE") == "ACTIVE").then_some(k)
}

fn default_role(ctx: &Ctx<'_>) -> String {
    format!(
        "arn:aws:iam::{}:role/aws-service-role/ecs.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_ECSService",
        ctx.partition.account
    )
}

fn suspended_view(s: Option<&aas::SuspendedState>) -> aas::SuspendedState {
    let s = s.cloned().unwrap_or_default();
    aas::SuspendedState {
        dynamic_scaling_in_suspended: Some(s.dynamic_scaling_in_suspended.unwrap_or(false)),
        dynamic_scaling_out_suspended: Some(s.dynamic_scaling_out_suspended.unwrap_or(false)),
        scheduled_scaling_suspended: Some(s.scheduled_scaling_suspended.unwrap_or(false)),
    }
}

fn check_capacity(min: i32, max: i32) -> Result<()> {
    if min < 0 || max < 0 {
        return Err(AutoScalingError::validation(
            "Minimum and maximum capacity must be greater than or equal to 0",
        ));
    }
    if min > max {
        return Err(AutoScalingError::validation(
            "Minimum capacity cannot be greater than maximum capacity",
        ));
    }
    Ok(())
}

/// Activity texts, in AWS's words.
fn set_desired_description(n: i32) -> String {
    format!("Setting desired count to {n}.")
}

fn set_desired_status(n: i32) -> String {
    format!("Successfully set desired count to {n}. Change successfully fulfilled by ecs.")
}

fn record_activity(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    target: &aas::ScalableTarget,
    description: String,
    cause: String,
    status: ScalingActivityStatusCode,
    status_message: String,
) {
    let id = ctx.new_uuid();
    let activity = aas::ScalingActivity {
        activity_id: Some(id.clone()),
        cause: Some(cause),
        description: Some(description),
        details: None,
        end_time: Some(ctx.now_secs()),
        not_scaled_reasons: None,
        resource_id: target.resource_id.clone(),
        scalable_dimension: target.scalable_dimension.clone(),
        service_namespace: target.service_namespace.clone(),
        start_time: Some(ctx.now_secs()),
        status_code: Some(status),
        status_message: Some(status_message),
    };
    let prefix = format!("{:015}/", ctx.now_ms);
    let seq = u32::try_from(
        p.autoscaling
            .activities
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .count(),
    )
    .unwrap_or(u32::MAX);
    let k = activity_key(ctx.now_ms, seq, &id);
    let rec = ActivityRecord { activity, seq };
    ctx.put(Kind::ScalingActivity, &activity_record_key(&k), &rec);
    p.autoscaling.activities.insert(k, rec);
    // Keep the newest activities of this target, as many as the cap allows.
    let rid = target.resource_id.clone();
    let mine: Vec<String> = p
        .autoscaling
        .activities
        .iter()
        .filter(|(_, a)| a.activity.resource_id == rid)
        .map(|(k, _)| k.clone())
        .collect();
    if mine.len() > MAX_ACTIVITIES_PER_TARGET {
        for old in &mine[..mine.len() - MAX_ACTIVITIES_PER_TARGET] {
            p.autoscaling.activities.remove(old);
            ctx.delete(Kind::ScalingActivity, &activity_record_key(old));
        }
    }
}

/// Change the service's desiredCount as UpdateService does, with a service event, and
/// record the scaling activity. Returns whether the service took it.
fn set_desired(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    target: &aas::ScalableTarget,
    desired: i32,
    cause: String,
) -> bool {
    let rid = target.resource_id.clone().unwrap_or_default();
    let Some((cluster, name)) = ecs_service_of(&rid).map(|(c, n)| (c.to_string(), n.to_string()))
    else {
        return false;
    };
    let req = berth_api::ecs::UpdateServiceRequest {
        cluster: Some(cluster.clone()),
        service: Some(name.clone()),
        desired_count: Some(desired),
        ..Default::default()
    };
    let mark = ctx.mutations.len();
    match service::update(p, ctx, req) {
        Ok(_) => {
            service::add_event(
                p,
                ctx,
                &cluster,
                &name,
                format!(
                    "(service {name}) desired count set to {desired} by Application Auto Scaling: {cause}."
                ),
            );
            record_activity(
                p,
                ctx,
                target,
                set_desired_description(desired),
                cause,
                ScalingActivityStatusCode::Successful,
                set_desired_status(desired),
            );
            true
        }
        Err(e) => {
            ctx.mutations.truncate(mark);
            record_activity(
                p,
                ctx,
                target,
                set_desired_description(desired),
                cause,
                ScalingActivityStatusCode::Failed,
                format!("Failed to set desired count to {desired}. Reason: {e}"),
            );
            false
        }
    }
}

fn current_desired(p: &Partition, resource_id: &str) -> Option<i32> {
    let k = service_key(p, resource_id)?;
    p.services.get(&k)?.service.desired_count
}

/// Bring the service's desiredCount within the target's bounds (AWS does this whenever
/// MinCapacity or MaxCapacity change).
fn clamp_to_bounds(p: &mut Partition, ctx: &mut Ctx<'_>, k: &str) {
    let Some(rec) = p.autoscaling.targets.get(k) else {
        return;
    };
    let target = rec.target.clone();
    let rid = target.resource_id.clone().unwrap_or_default();
    let Some(current) = current_desired(p, &rid) else {
        return;
    };
    let (min, max) = (
        target.min_capacity.unwrap_or(0),
        target.max_capacity.unwrap_or(i32::MAX),
    );
    if current < min {
        set_desired(
            p,
            ctx,
            &target,
            min,
            format!("minimum capacity was set to {min}"),
        );
    } else if current > max {
        set_desired(
            p,
            ctx,
            &target,
            max,
            format!("maximum capacity was set to {max}"),
        );
    }
}

/// RegisterScalableTarget: register an ECS service's desiredCount, or update the bounds and
/// suspension of a registered one; the desiredCount is brought within the bounds.
pub fn register(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    req: RegisterScalableTargetRequest,
) -> Result<RegisterScalableTargetResponse> {
    let id = target_id(
        req.service_namespace,
        req.scalable_dimension,
        req.resource_id,
    )?;
    if service_key(p, &id.resource_id).is_none() {
        return Err(AutoScalingError::validation(format!(
            "ECS service doesn't exist: {}",
            id.resource_id
        )));
    }
    let k = id.key();
    let existing = p.autoscaling.targets.get(&k);
    let (min, max) = match existing {
        Some(e) => (
            req.min_capacity.or(e.target.min_capacity).unwrap_or(0),
            req.max_capacity.or(e.target.max_capacity).unwrap_or(0),
        ),
        None => match (req.min_capacity, req.max_capacity) {
            (Some(min), Some(max)) => (min, max),
            _ => {
                return Err(AutoScalingError::validation(
                    "MinCapacity and MaxCapacity are required for registering a new scalable target",
                ));
            }
        },
    };
    check_capacity(min, max)?;
    if let Some(tags) = &req.tags
        && tags.len() > MAX_TAGS
    {
        return Err(AutoScalingError::TooManyTags(format!(
            "A scalable target can have at most {MAX_TAGS} tags"
        )));
    }
    let mut rec = match existing {
        Some(e) => e.clone(),
        None => {
            let arn_id = format!("0ecs{}", ctx.new_id());
            ScalableTargetRecord {
                target: aas::ScalableTarget {
                    creation_time: Some(ctx.now_secs()),
                    max_capacity: Some(max),
                    min_capacity: Some(min),
                    predicted_capacity: None,
                    resource_id: Some(id.resource_id.clone()),
                    role_arn: Some(default_role(ctx)),
                    scalable_dimension: Some(id.dimension.clone()),
                    scalable_target_arn: Some(format!(
                        "arn:aws:application-autoscaling:{}:{}:scalable-target/{arn_id}",
                        ctx.partition.region, ctx.partition.account
                    )),
                    service_namespace: Some(id.namespace.clone()),
                    suspended_state: Some(suspended_view(None)),
                },
                policies: BTreeMap::new(),
                scheduled_actions: BTreeMap::new(),
                tags: BTreeMap::new(),
                last_scale_out: None,
                last_scale_in_ms: None,
            }
        }
    };
    rec.target.min_capacity = Some(min);
    rec.target.max_capacity = Some(max);
    if let Some(role) = req.role_arn {
        rec.target.role_arn = Some(role);
    }
    if let Some(s) = req.suspended_state {
        let mut cur = suspended_view(rec.target.suspended_state.as_ref());
        if let Some(v) = s.dynamic_scaling_in_suspended {
            cur.dynamic_scaling_in_suspended = Some(v);
        }
        if let Some(v) = s.dynamic_scaling_out_suspended {
            cur.dynamic_scaling_out_suspended = Some(v);
        }
        if let Some(v) = s.scheduled_scaling_suspended {
            cur.scheduled_scaling_suspended = Some(v);
        }
        rec.target.suspended_state = Some(cur);
    }
    if let Some(tags) = req.tags {
        rec.tags.extend(tags);
    }
    let arn = rec.target.scalable_target_arn.clone();
    p.autoscaling.targets.insert(k.clone(), rec);
    save(p, ctx, &k);
    clamp_to_bounds(p, ctx, &k);
    Ok(RegisterScalableTargetResponse {
        scalable_target_arn: arn,
    })
}

/// DeregisterScalableTarget: the target, its policies and its scheduled actions go.
pub fn deregister(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    req: DeregisterScalableTargetRequest,
) -> Result<DeregisterScalableTargetResponse> {
    let id = target_id(
        req.service_namespace,
        req.scalable_dimension,
        req.resource_id,
    )?;
    let k = id.key();
    if p.autoscaling.targets.remove(&k).is_none() {
        return Err(id.not_registered());
    }
    ctx.delete(Kind::ScalableTarget, &record_key(&k));
    Ok(DeregisterScalableTargetResponse {})
}

/// `MaxResults` of Application Auto Scaling's Describe operations: 1 to 50, default 50.
fn max_results(n: Option<i32>) -> Result<usize> {
    match n {
        None => Ok(50),
        Some(n) if (1..=50).contains(&n) => Ok(usize::try_from(n).unwrap_or(50)),
        Some(n) => Err(AutoScalingError::validation(format!(
            "1 validation error detected: Value '{n}' at 'maxResults' failed to satisfy constraint: Member must have value {} 50",
            if n < 1 {
                "greater than or equal to 1, less than or equal to"
            } else {
                "less than or equal to"
            }
        ))),
    }
}

fn page<T>(
    items: Vec<(String, T)>,
    token: Option<&str>,
    limit: usize,
    descending: bool,
) -> Result<(Vec<T>, Option<String>)> {
    crate::pagination::page_ordered(items, token, limit, descending)
        .map_err(|_| AutoScalingError::InvalidNextToken("Invalid NextToken".into()))
}

fn matches_filter(
    t: &aas::ScalableTarget,
    ns: Option<&ServiceNamespace>,
    rid: Option<&str>,
    dim: Option<&ScalableDimension>,
) -> bool {
    ns.is_none_or(|n| t.service_namespace.as_ref() == Some(n))
        && rid.is_none_or(|r| t.resource_id.as_deref() == Some(r))
        && dim.is_none_or(|d| t.scalable_dimension.as_ref() == Some(d))
}

/// DescribeScalableTargets.
pub fn describe_targets(
    p: &Partition,
    _ctx: &Ctx<'_>,
    req: DescribeScalableTargetsRequest,
) -> Result<DescribeScalableTargetsResponse> {
    let limit = max_results(req.max_results)?;
    let ids = req.resource_ids.unwrap_or_default();
    let items = p
        .autoscaling
        .targets
        .iter()
        .filter(|(_, r)| {
            matches_filter(
                &r.target,
                req.service_namespace.as_ref(),
                None,
                req.scalable_dimension.as_ref(),
            )
        })
        .filter(|(_, r)| {
            ids.is_empty()
                || r.target
                    .resource_id
                    .as_ref()
                    .is_some_and(|rid| ids.contains(rid))
        })
        .map(|(k, r)| {
            let mut t = r.target.clone();
            t.suspended_state = Some(suspended_view(t.suspended_state.as_ref()));
            (k.clone(), t)
        })
        .collect();
    let (targets, next) = page(items, req.next_token.as_deref(), limit, false)?;
    Ok(DescribeScalableTargetsResponse {
        next_token: next,
        scalable_targets: Some(targets),
    })
}

fn alarm(ctx: &mut Ctx<'_>, resource_id: &str, which: &str) -> Alarm {
    let name = format!("TargetTracking-{resource_id}-{which}-{}", ctx.new_uuid());
    Alarm {
        alarm_arn: Some(format!(
            "arn:aws:cloudwatch:{}:{}:alarm:{name}",
            ctx.partition.region, ctx.partition.account
        )),
        alarm_name: Some(name),
    }
}

/// The tracking view of a stored policy (None for what the scaler does not run).
fn tracking_policy(policy: &aas::ScalingPolicy) -> Option<TrackingPolicy> {
    if policy.policy_type != Some(PolicyType::TargetTrackingScaling) {
        return None;
    }
    let c = policy
        .target_tracking_scaling_policy_configuration
        .as_ref()?;
    let metric = match c
        .predefined_metric_specification
        .as_ref()?
        .predefined_metric_type
        .as_ref()?
    {
        MetricType::ECSServiceAverageCPUUtilization => TrackedMetric::Cpu,
        MetricType::ECSServiceAverageMemoryUtilization => TrackedMetric::Memory,
        _ => return None,
    };
    Some(TrackingPolicy {
        name: policy.policy_name.clone().unwrap_or_default(),
        metric,
        target_value: c.target_value?,
        scale_out_cooldown_ms: i64::from(c.scale_out_cooldown.unwrap_or(DEFAULT_COOLDOWN_SECS))
            * 1000,
        scale_in_cooldown_ms: i64::from(c.scale_in_cooldown.unwrap_or(DEFAULT_COOLDOWN_SECS))
            * 1000,
        disable_scale_in: c.disable_scale_in.unwrap_or(false),
    })
}

/// The smallest and largest TargetValue Application Auto Scaling accepts.
const TARGET_VALUE_RANGE: (f64, f64) = (8.515_920e-109, 1.174_271e108);

fn check_target_tracking(c: &aas::TargetTrackingScalingPolicyConfiguration) -> Result<()> {
    match (
        &c.predefined_metric_specification,
        &c.customized_metric_specification,
    ) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(AutoScalingError::validation(
                "Exactly one of PredefinedMetricSpecification or CustomizedMetricSpecification must be specified",
            ));
        }
        (None, Some(_)) => {
            return Err(AutoScalingError::validation(
                "Berth does not support CustomizedMetricSpecification yet: use PredefinedMetricSpecification with ECSServiceAverageCPUUtilization or ECSServiceAverageMemoryUtilization",
            ));
        }
        (Some(spec), None) => match &spec.predefined_metric_type {
            Some(
                MetricType::ECSServiceAverageCPUUtilization
                | MetricType::ECSServiceAverageMemoryUtilization,
            ) => {}
            Some(MetricType::ALBRequestCountPerTarget) => {
                return Err(AutoScalingError::validation(
                    "Berth does not support ALBRequestCountPerTarget: it has no load balancers. Use ECSServiceAverageCPUUtilization or ECSServiceAverageMemoryUtilization",
                ));
            }
            other => {
                return Err(AutoScalingError::validation(format!(
                    "Unsupported metric type {} for scalable dimension ecs:service:DesiredCount",
                    other.as_ref().map_or("", MetricType::as_str)
                )));
            }
        },
    }
    let v = c.target_value.unwrap_or(0.0);
    if !(v.is_finite() && v >= TARGET_VALUE_RANGE.0 && v <= TARGET_VALUE_RANGE.1) {
        return Err(AutoScalingError::validation(format!(
            "The target value must be between {:e} and {:e}",
            TARGET_VALUE_RANGE.0, TARGET_VALUE_RANGE.1
        )));
    }
    for (name, cooldown) in [
        ("ScaleOutCooldown", c.scale_out_cooldown),
        ("ScaleInCooldown", c.scale_in_cooldown),
    ] {
        if cooldown.is_some_and(|s| s < 0) {
            return Err(AutoScalingError::validation(format!(
                "{name} must be greater than or equal to 0"
            )));
        }
    }
    Ok(())
}

/// PutScalingPolicy: target tracking on the service's CPU or memory (step and predictive
/// scaling are refused clearly).
pub fn put_policy(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    req: PutScalingPolicyRequest,
) -> Result<PutScalingPolicyResponse> {
    let id = target_id(
        req.service_namespace,
        req.scalable_dimension,
        req.resource_id,
    )?;
    let k = id.key();
    let name = req.policy_name.unwrap_or_default();
    let Some(rec) = p.autoscaling.targets.get(&k) else {
        return Err(id.not_registered());
    };
    // AWS's default policy type is StepScaling.
    match req.policy_type.clone().unwrap_or(PolicyType::StepScaling) {
        PolicyType::TargetTrackingScaling => {}
        other => {
            return Err(AutoScalingError::validation(format!(
                "Berth does not implement {other} policies yet: use PolicyType TargetTrackingScaling"
            )));
        }
    }
    if req.step_scaling_policy_configuration.is_some()
        || req.predictive_scaling_policy_configuration.is_some()
    {
        return Err(AutoScalingError::validation(
            "A TargetTrackingScaling policy takes only a TargetTrackingScalingPolicyConfiguration",
        ));
    }
    let Some(config) = req.target_tracking_scaling_policy_configuration else {
        return Err(AutoScalingError::validation(
            "TargetTrackingScalingPolicyConfiguration is required for a TargetTrackingScaling policy",
        ));
    };
    check_target_tracking(&config)?;
    if !rec.policies.contains_key(&name) && rec.policies.len() >= MAX_POLICIES_PER_TARGET {
        return Err(AutoScalingError::LimitExceeded(format!(
            "A scalable target can have at most {MAX_POLICIES_PER_TARGET} scaling policies"
        )));
    }
    let existing = rec.policies.get(&name).cloned();
    let policy = match existing {
        Some(mut e) => {
            e.target_tracking_scaling_policy_configuration = Some(config);
            e
        }
        None => {
            let uuid = ctx.new_uuid();
            let alarms = vec![
                alarm(ctx, &id.resource_id, "AlarmHigh"),
                alarm(ctx, &id.resource_id, "AlarmLow"),
            ];
            aas::ScalingPolicy {
                alarms: Some(alarms),
                creation_time: Some(ctx.now_secs()),
                policy_arn: Some(format!(
                    "arn:aws:autoscaling:{}:{}:scalingPolicy:{uuid}:resource/ecs/{}:policyName/{name}",
                    ctx.partition.region, ctx.partition.account, id.resource_id
                )),
                policy_name: Some(name.clone()),
                policy_type: Some(PolicyType::TargetTrackingScaling),
                predictive_scaling_policy_configuration: None,
                resource_id: Some(id.resource_id.clone()),
                scalable_dimension: Some(id.dimension.clone()),
                service_namespace: Some(id.namespace.clone()),
                step_scaling_policy_configuration: None,
                target_tracking_scaling_policy_configuration: Some(config),
            }
        }
    };
    let resp = PutScalingPolicyResponse {
        alarms: policy.alarms.clone(),
        policy_arn: policy.policy_arn.clone(),
    };
    if let Some(rec) = p.autoscaling.targets.get_mut(&k) {
        rec.policies.insert(name, policy);
    }
    save(p, ctx, &k);
    Ok(resp)
}

/// DescribeScalingPolicies.
pub fn describe_policies(
    p: &Partition,
    _ctx: &Ctx<'_>,
    req: DescribeScalingPoliciesRequest,
) -> Result<DescribeScalingPoliciesResponse> {
    let limit = max_results(req.max_results)?;
    let names = req.policy_names.unwrap_or_default();
    let mut items = Vec::new();
    for (k, r) in &p.autoscaling.targets {
        if !matches_filter(
            &r.target,
            req.service_namespace.as_ref(),
            req.resource_id.as_deref(),
            req.scalable_dimension.as_ref(),
        ) {
            continue;
        }
        for (name, policy) in &r.policies {
            if names.is_empty() || names.contains(name) {
                items.push((format!("{k}\u{1}{name}"), policy.clone()));
            }
        }
    }
    let (policies, next) = page(items, req.next_token.as_deref(), limit, false)?;
    Ok(DescribeScalingPoliciesResponse {
        next_token: next,
        scaling_policies: Some(policies),
    })
}

/// DeleteScalingPolicy.
pub fn delete_policy(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    req: DeleteScalingPolicyRequest,
) -> Result<DeleteScalingPolicyResponse> {
    let id = target_id(
        req.service_namespace,
        req.scalable_dimension,
        req.resource_id,
    )?;
    let k = id.key();
    let name = req.policy_name.unwrap_or_default();
    let removed = p
        .autoscaling
        .targets
        .get_mut(&k)
        .and_then(|r| r.policies.remove(&name));
    if removed.is_none() {
        return Err(AutoScalingError::ObjectNotFound(format!(
            "No scaling policy found for {}, policy name: {name}",
            id.describe()
        )));
    }
    save(p, ctx, &k);
    Ok(DeleteScalingPolicyResponse {})
}

fn check_times(start: Option<f64>, end: Option<f64>) -> Result<()> {
    if let (Some(s), Some(e)) = (start, end)
        && e < s
    {
        return Err(AutoScalingError::validation(
            "EndTime must be later than StartTime",
        ));
    }
    Ok(())
}

/// PutScheduledAction: create or update an action that sets MinCapacity and/or
/// MaxCapacity on a schedule.
pub fn put_scheduled_action(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    req: PutScheduledActionRequest,
) -> Result<PutScheduledActionResponse> {
    let id = target_id(
        req.service_namespace,
        req.scalable_dimension,
        req.resource_id,
    )?;
    let k = id.key();
    let name = req.scheduled_action_name.unwrap_or_default();
    let Some(rec) = p.autoscaling.targets.get(&k) else {
        return Err(id.not_registered());
    };
    let existing = rec.scheduled_actions.get(&name).cloned();
    if existing.is_none() && rec.scheduled_actions.len() >= MAX_SCHEDULED_ACTIONS_PER_TARGET {
        return Err(AutoScalingError::LimitExceeded(format!(
            "A scalable target can have at most {MAX_SCHEDULED_ACTIONS_PER_TARGET} scheduled actions"
        )));
    }
    let prev = existing.as_ref().map(|e| &e.action);
    let schedule = req
        .schedule
        .or_else(|| prev.and_then(|a| a.schedule.clone()))
        .ok_or_else(|| {
            AutoScalingError::validation("Schedule is required for a new scheduled action")
        })?;
    schedule::Schedule::parse(&schedule).map_err(|e| AutoScalingError::validation(e.0))?;
    let timezone = req
        .timezone
        .or_else(|| prev.and_then(|a| a.timezone.clone()));
    schedule::time_zone(timezone.as_deref()).map_err(|e| AutoScalingError::validation(e.0))?;
    let action = match req.scalable_target_action {
        Some(a) => a,
        None => prev
            .and_then(|a| a.scalable_target_action.clone())
            .unwrap_or_default(),
    };
    match (action.min_capacity, action.max_capacity) {
        (None, None) => {
            return Err(AutoScalingError::validation(
                "ScalableTargetAction must specify MinCapacity, MaxCapacity or both",
            ));
        }
        (min, max) => check_capacity(min.unwrap_or(0), max.unwrap_or(i32::MAX))?,
    }
    let start = req.start_time.or_else(|| prev.and_then(|a| a.start_time));
    let end = req.end_time.or_else(|| prev.and_then(|a| a.end_time));
    check_times(start, end)?;
    let arn = match prev.and_then(|a| a.scheduled_action_arn.clone()) {
        Some(a) => a,
        None => {
            let uuid = ctx.new_uuid();
            format!(
                "arn:aws:autoscaling:{}:{}:scheduledAction:{uuid}:resource/ecs/{}:scheduledActionName/{name}",
                ctx.partition.region, ctx.partition.account, id.resource_id
            )
        }
    };
    let stored = ScheduledActionRecord {
        action: aas::ScheduledAction {
            creation_time: Some(
                prev.and_then(|a| a.creation_time)
                    .unwrap_or_else(|| ctx.now_secs()),
            ),
            end_time: end,
            resource_id: Some(id.resource_id.clone()),
            scalable_dimension: Some(id.dimension.clone()),
            scalable_target_action: Some(action),
            schedule: Some(schedule),
            scheduled_action_arn: Some(arn),
            scheduled_action_name: Some(name.clone()),
            service_namespace: Some(id.namespace.clone()),
            start_time: start,
            timezone,
        },
        after_ms: ctx.now_ms,
    };
    if let Some(rec) = p.autoscaling.targets.get_mut(&k) {
        rec.scheduled_actions.insert(name, stored);
    }
    save(p, ctx, &k);
    Ok(PutScheduledActionResponse {})
}

/// DescribeScheduledActions.
pub fn describe_scheduled_actions(
    p: &Partition,
    _ctx: &Ctx<'_>,
    req: DescribeScheduledActionsRequest,
) -> Result<DescribeScheduledActionsResponse> {
    let limit = max_results(req.max_results)?;
    let names = req.scheduled_action_names.unwrap_or_default();
    let mut items = Vec::new();
    for (k, r) in &p.autoscaling.targets {
        if !matches_filter(
            &r.target,
            req.service_namespace.as_ref(),
            req.resource_id.as_deref(),
            req.scalable_dimension.as_ref(),
        ) {
            continue;
        }
        for (name, a) in &r.scheduled_actions {
            if names.is_empty() || names.contains(name) {
                items.push((format!("{k}\u{1}{name}"), a.action.clone()));
            }
        }
    }
    let (actions, next) = page(items, req.next_token.as_deref(), limit, false)?;
    Ok(DescribeScheduledActionsResponse {
        next_token: next,
        scheduled_actions: Some(actions),
    })
}

/// DeleteScheduledAction.
pub fn delete_scheduled_action(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    req: DeleteScheduledActionRequest,
) -> Result<DeleteScheduledActionResponse> {
    let id = target_id(
        req.service_namespace,
        req.scalable_dimension,
        req.resource_id,
    )?;
    let k = id.key();
    let name = req.scheduled_action_name.unwrap_or_default();
    let removed = p
        .autoscaling
        .targets
        .get_mut(&k)
        .and_then(|r| r.scheduled_actions.remove(&name));
    if removed.is_none() {
        return Err(AutoScalingError::ObjectNotFound(format!(
            "No scheduled action found for {}, scheduled action name: {name}",
            id.describe()
        )));
    }
    save(p, ctx, &k);
    Ok(DeleteScheduledActionResponse {})
}

/// DescribeScalingActivities: newest first.
pub fn describe_activities(
    p: &Partition,
    _ctx: &Ctx<'_>,
    req: DescribeScalingActivitiesRequest,
) -> Result<DescribeScalingActivitiesResponse> {
    let limit = max_results(req.max_results)?;
    let items = p
        .autoscaling
        .activities
        .iter()
        .rev()
        .filter(|(_, a)| {
            let a = &a.activity;
            req.service_namespace
                .as_ref()
                .is_none_or(|n| a.service_namespace.as_ref() == Some(n))
                && req
                    .resource_id
                    .as_deref()
                    .is_none_or(|r| a.resource_id.as_deref() == Some(r))
                && req
                    .scalable_dimension
                    .as_ref()
                    .is_none_or(|d| a.scalable_dimension.as_ref() == Some(d))
        })
        .map(|(k, a)| (k.clone(), a.activity.clone()))
        .collect();
    let (activities, next) = page(items, req.next_token.as_deref(), limit, true)?;
    Ok(DescribeScalingActivitiesResponse {
        next_token: next,
        scaling_activities: Some(activities),
    })
}

fn target_by_arn<'p>(
    p: &'p Partition,
    arn: &str,
) -> Result<(&'p String, &'p ScalableTargetRecord)> {
    p.autoscaling
        .targets
        .iter()
        .find(|(_, r)| r.target.scalable_target_arn.as_deref() == Some(arn))
        .ok_or_else(|| {
            AutoScalingError::ResourceNotFound(format!("No scalable target found for ARN {arn}"))
        })
}

/// TagResource (scalable targets).
pub fn tag_resource(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    req: TagResourceRequest,
) -> Result<TagResourceResponse> {
    let arn = req.resource_arn.unwrap_or_default();
    let (k, rec) = target_by_arn(p, &arn)?;
    let k = k.clone();
    let mut tags = rec.tags.clone();
    tags.extend(req.tags.unwrap_or_default());
    if tags.len() > MAX_TAGS {
        return Err(AutoScalingError::TooManyTags(format!(
            "A scalable target can have at most {MAX_TAGS} tags"
        )));
    }
    if let Some(r) = p.autoscaling.targets.get_mut(&k) {
        r.tags = tags;
    }
    save(p, ctx, &k);
    Ok(TagResourceResponse {})
}

/// UntagResource (scalable targets).
pub fn untag_resource(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    req: UntagResourceRequest,
) -> Result<UntagResourceResponse> {
    let arn = req.resource_arn.unwrap_or_default();
    let k = target_by_arn(p, &arn)?.0.clone();
    if let Some(r) = p.autoscaling.targets.get_mut(&k) {
        for key in req.tag_keys.unwrap_or_default() {
            r.tags.remove(&key);
        }
    }
    save(p, ctx, &k);
    Ok(UntagResourceResponse {})
}

/// ListTagsForResource (scalable targets).
pub fn list_tags(
    p: &Partition,
    _ctx: &Ctx<'_>,
    req: ListTagsForResourceRequest,
) -> Result<ListTagsForResourceResponse> {
    let arn = req.resource_arn.unwrap_or_default();
    let (_, rec) = target_by_arn(p, &arn)?;
    Ok(ListTagsForResourceResponse {
        tags: Some(rec.tags.clone()),
    })
}

macro_rules! op {
    ($p:expr, $ctx:expr, $body:expr, $f:path) => {{
        let req = decode(Service::ApplicationAutoScaling, $body)?;
        let resp = $f($p, $ctx, req).map_err(ApiError::from)?;
        Ok(encode(&resp))
    }};
}

/// A Describe operation: its `NextToken` is opened and the response's sealed with the
/// server's key, bound to the operation and the caller's partition.
macro_rules! paged {
    ($p:expr, $ctx:expr, $body:expr, $op:expr, $req:ty, $f:path) => {{
        let mut req: $req = decode(Service::ApplicationAutoScaling, $body)?;
        let scope = crate::pagination::scope("application-autoscaling", $op, &$ctx.partition);
        req.next_token = req
            .next_token
            .map(|t| {
                $ctx.token_key
                    .open(&scope, &t)
                    .ok_or_else(|| AutoScalingError::InvalidNextToken("Invalid NextToken".into()))
            })
            .transpose()
            .map_err(ApiError::from)?;
        let mut resp = $f($p, $ctx, req).map_err(ApiError::from)?;
        resp.next_token = resp.next_token.map(|t| $ctx.token_key.seal(&scope, &t));
        Ok(encode(&resp))
    }};
}

/// Run one Application Auto Scaling operation against the caller's partition. On error
/// nothing has changed.
pub fn handle(
    world: &mut crate::World,
    ctx: &mut Ctx<'_>,
    operation: &str,
    body: &[u8],
) -> std::result::Result<Vec<u8>, ApiError> {
    let p = world.partition(&ctx.partition);
    match operation {
        "RegisterScalableTarget" => op!(p, ctx, body, register),
        "DeregisterScalableTarget" => op!(p, ctx, body, deregister),
        "DescribeScalableTargets" => paged!(
            p,
            ctx,
            body,
            operation,
            DescribeScalableTargetsRequest,
            describe_targets
        ),
        "PutScalingPolicy" => op!(p, ctx, body, put_policy),
        "DescribeScalingPolicies" => paged!(
            p,
            ctx,
            body,
            operation,
            DescribeScalingPoliciesRequest,
            describe_policies
        ),
        "DeleteScalingPolicy" => op!(p, ctx, body, delete_policy),
        "PutScheduledAction" => op!(p, ctx, body, put_scheduled_action),
        "DescribeScheduledActions" => paged!(
            p,
            ctx,
            body,
            operation,
            DescribeScheduledActionsRequest,
            describe_scheduled_actions
        ),
        "DeleteScheduledAction" => op!(p, ctx, body, delete_scheduled_action),
        "DescribeScalingActivities" => paged!(
            p,
            ctx,
            body,
            operation,
            DescribeScalingActivitiesRequest,
            describe_activities
        ),
        "TagResource" => op!(p, ctx, body, tag_resource),
        "UntagResource" => op!(p, ctx, body, untag_resource),
        "ListTagsForResource" => op!(p, ctx, body, list_tags),
        other => Err(ApiError::not_implemented(
            Service::ApplicationAutoScaling,
            other,
        )),
    }
}

/// The metric histories of every service with a target tracking policy, by
/// `cluster/service` (what the shell measured; see `berth-server`).
pub type ServiceMetrics = BTreeMap<String, (Vec<scaler::Point>, Vec<scaler::Point>)>;

/// The services (`cluster/service`) that have a target tracking policy: the ones whose
/// metrics the shell must gather for [`reconcile`].
pub fn tracked_services(p: &Partition) -> Vec<String> {
    p.autoscaling
        .targets
        .values()
        .filter(|r| {
            r.policies
                .values()
                .any(|pol| tracking_policy(pol).is_some())
        })
        .filter_map(|r| {
            let (c, s) = ecs_service_of(r.target.resource_id.as_deref()?)?;
            Some(format!("{c}/{s}"))
        })
        .collect()
}

/// One controller pass over every scalable target of the partition at `ctx.now_ms`: run
/// the scheduled actions that are due, then target tracking. Changes go through the same
/// path as UpdateService and leave their mutations in `ctx`.
pub fn reconcile(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    metrics: &ServiceMetrics,
    eval: &scaler::Evaluation,
) {
    let keys: Vec<String> = p.autoscaling.targets.keys().cloned().collect();
    for k in keys {
        run_scheduled(p, ctx, &k);
        run_tracking(p, ctx, &k, metrics, eval);
    }
    // Forget activities past their retention.
    let horizon = format!(
        "{:015}/",
        ctx.now_ms.saturating_sub(ACTIVITY_RETENTION_MS).max(0)
    );
    let old: Vec<String> = p
        .autoscaling
        .activities
        .range(..horizon)
        .map(|(k, _)| k.clone())
        .collect();
    for k in old {
        p.autoscaling.activities.remove(&k);
        ctx.delete(Kind::ScalingActivity, &activity_record_key(&k));
    }
}

fn run_scheduled(p: &mut Partition, ctx: &mut Ctx<'_>, k: &str) {
    let Some(rec) = p.autoscaling.targets.get(k) else {
        return;
    };
    let suspended = suspended_view(rec.target.suspended_state.as_ref())
        .scheduled_scaling_suspended
        .unwrap_or(false);
    let mut due: Vec<(i64, String)> = Vec::new();
    for (name, a) in &rec.scheduled_actions {
        let Some(expr) = a.action.schedule.as_deref() else {
            continue;
        };
        let (Ok(s), Ok(tz)) = (
            schedule::Schedule::parse(expr),
            schedule::time_zone(a.action.timezone.as_deref()),
        ) else {
            continue;
        };
        let w = schedule::Window {
            start_ms: a.action.start_time.map(secs_to_ms),
            end_ms: a.action.end_time.map(secs_to_ms),
            after_ms: a.after_ms,
        };
        if let Some(t) = schedule::latest_due(&s, &tz, w, ctx.now_ms) {
            due.push((t, name.clone()));
        }
    }
    if due.is_empty() {
        return;
    }
    // Oldest first, so that the latest run's capacities are the ones that stay.
    due.sort();
    for (t, name) in due {
        let Some(rec) = p.autoscaling.targets.get_mut(k) else {
            return;
        };
        let Some(a) = rec.scheduled_actions.get_mut(&name) else {
            continue;
        };
        // A run missed while scheduled scaling was suspended is not made up later.
        a.after_ms = t;
        if suspended {
            continue;
        }
        let action = a.action.scalable_target_action.clone().unwrap_or_default();
        let (old_min, old_max) = (
            rec.target.min_capacity.unwrap_or(0),
            rec.target.max_capacity.unwrap_or(0),
        );
        let mut min = action.min_capacity.unwrap_or(old_min);
        let mut max = action.max_capacity.unwrap_or(old_max);
        // An action that sets only one bound past the other moves the other along.
        if action.min_capacity.is_some() && action.max_capacity.is_none() {
            max = max.max(min);
        } else if action.max_capacity.is_some() && action.min_capacity.is_none() {
            min = min.min(max);
        }
        rec.target.min_capacity = Some(min);
        rec.target.max_capacity = Some(max);
        let target = rec.target.clone();
        save(p, ctx, k);
        let text = format!("min capacity to {min} and max capacity to {max}");
        record_activity(
            p,
            ctx,
            &target,
            format!("Setting {text}"),
            format!("scheduled action name {name} was triggered"),
            ScalingActivityStatusCode::Successful,
            format!("Successfully set {text}"),
        );
        clamp_to_bounds(p, ctx, k);
    }
    save(p, ctx, k);
}

fn run_tracking(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    k: &str,
    metrics: &ServiceMetrics,
    eval: &scaler::Evaluation,
) {
    let Some(rec) = p.autoscaling.targets.get(k) else {
        return;
    };
    let policies: Vec<TrackingPolicy> = rec.policies.values().filter_map(tracking_policy).collect();
    if policies.is_empty() {
        return;
    }
    let rid = rec.target.resource_id.clone().unwrap_or_default();
    let Some(skey) = service_key(p, &rid) else {
        return;
    };
    let Some(svc) = p.services.get(&skey) else {
        return;
    };
    let suspended = suspended_view(rec.target.suspended_state.as_ref());
    let view = scaler::TargetView {
        min: rec.target.min_capacity.unwrap_or(0),
        max: rec.target.max_capacity.unwrap_or(0),
        current: svc.service.desired_count.unwrap_or(0),
        scale_out_suspended: suspended.dynamic_scaling_out_suspended.unwrap_or(false),
        scale_in_suspended: suspended.dynamic_scaling_in_suspended.unwrap_or(false),
        deployment_in_progress: svc
            .service
            .deployments
            .as_ref()
            .is_some_and(|d| d.len() > 1),
        last_scale_out: rec.last_scale_out,
        last_scale_in_ms: rec.last_scale_in_ms,
    };
    let (cpu, memory) = metrics
        .get(&skey)
        .map(|(c, m)| (c.as_slice(), m.as_slice()))
        .unwrap_or_default();
    let Some(decision) = scaler::plan_target_tracking(
        &view,
        &policies,
        scaler::Metrics { cpu, memory },
        eval,
        ctx.now_ms,
    ) else {
        return;
    };
    let Some(policy) = rec.policies.get(&decision.policy) else {
        return;
    };
    let alarm_name = policy
        .alarms
        .as_ref()
        .and_then(|a| {
            a.iter().find(|a| {
                a.alarm_name.as_deref().is_some_and(|n| {
                    n.contains(match decision.direction {
                        Direction::Out => "-AlarmHigh-",
                        Direction::In => "-AlarmLow-",
                    })
                })
            })
        })
        .and_then(|a| a.alarm_name.clone())
        .unwrap_or_default();
    let cause = format!(
        "monitor alarm {alarm_name} in state ALARM triggered policy {}",
        decision.policy
    );
    let target = rec.target.clone();
    if set_desired(p, ctx, &target, decision.desired, cause)
        && let Some(rec) = p.autoscaling.targets.get_mut(k)
    {
        match decision.direction {
            Direction::Out => {
                rec.last_scale_out = Some(ScaleOutMark {
                    at_ms: ctx.now_ms,
                    capacity_before: view.current,
                });
            }
            Direction::In => rec.last_scale_in_ms = Some(ctx.now_ms),
        }
        save(p, ctx, k);
    }
}

#[cfg(test)]
mod tests;
