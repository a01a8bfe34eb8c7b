//! ECS's service deployments and service revisions (the deployment history API):
//! ListServiceDeployments, DescribeServiceDeployments, DescribeServiceRevisions, and the
//! Service's `currentServiceDeployment` / `currentServiceRevisions`.
//!
//! Every deployment the scheduler runs (an `ecs-svc/...` in the Service's `deployments[]`)
//! belongs to one service deployment, which targets one service revision: the task definition
//! and the settings the deployment's tasks are launched with. A circuit-breaker rollback is a
//! state of the service deployment that failed (ROLLBACK_IN_PROGRESS, then ROLLBACK_SUCCESSFUL
//! or ROLLBACK_FAILED), not a new one, as on ECS; its tasks run the revision rolled back to.
//!
//! The history lives in the service's record and is bounded ([`MAX_HISTORY`]); ECS keeps 90
//! days of it and deletes it with the service, as Berth does when the service goes INACTIVE.

use crate::service::{self, ServiceRecord};
use crate::service_plan;
use crate::state::{Ctx, Partition, TaskDefinitionRecord};
use crate::{arn, pagination};
use berth_api::EcsError;
use berth_api::ecs::{
    self, DeploymentConfiguration, DescribeServiceDeploymentsRequest,
    DescribeServiceDeploymentsResponse, DescribeServiceRevisionsRequest,
    DescribeServiceRevisionsResponse, ListServiceDeploymentsRequest,
    ListServiceDeploymentsResponse, ServiceDeploymentRollbackMonitorsStatus as Monitor,
    ServiceDeploymentStatus as Status,
};
use serde::{Deserialize, Serialize};

/// Service deployments a service keeps (the oldest go first), with the revisions they name:
/// the record is rewritten on every scheduler change, so it must stay small.
pub const MAX_HISTORY: usize = 25;

/// ARNs DescribeServiceDeployments / DescribeServiceRevisions take at once.
const MAX_DESCRIBE: usize = 20;

/// Why a service deployment in progress stops when a newer one starts (Berth's wording: ECS
/// documents the STOPPED state, not this reason's text).
pub const SUPERSEDED: &str = "Stopped by a newer service deployment.";

/// A circuit-breaker rollback of a service deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackRecord {
    /// The scheduler deployment (`ecs-svc/...`) that runs the rollback.
    pub deployment_id: String,
    /// The revision rolled back to.
    pub revision: String,
    /// Why.
    pub reason: String,
    /// When (epoch ms).
    pub started_at_ms: i64,
}

/// A revision a deployment started from, with its task counts at that moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceRevision {
    /// Revision id.
    pub revision: String,
    /// Tasks it was asked to run.
    pub requested: i32,
    /// Tasks RUNNING.
    pub running: i32,
    /// Tasks PENDING.
    pub pending: i32,
}

/// One service deployment as stored in its service's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceDeploymentRecord {
    /// The id at the end of its ARN.
    pub id: String,
    /// Order within the service (newest = largest).
    pub seq: u64,
    /// The scheduler deployment (`ecs-svc/...`) that rolls it out.
    pub deployment_id: String,
    /// The target revision's id.
    pub target_revision: String,
    /// The revisions running when it started.
    pub source_revisions: Vec<SourceRevision>,
    /// Status.
    pub status: Status,
    /// Why it is in that status.
    pub status_reason: Option<String>,
    /// Created (epoch ms).
    pub created_at_ms: i64,
    /// Last change (epoch ms).
    pub updated_at_ms: i64,
    /// Finished: SUCCESSFUL, ROLLBACK_SUCCESSFUL or ROLLBACK_FAILED (epoch ms).
    pub finished_at_ms: Option<i64>,
    /// Stopped: STOPPED (epoch ms).
    pub stopped_at_ms: Option<i64>,
    /// The service's deployment configuration when it started.
    pub configuration: DeploymentConfiguration,
    /// Failed tasks the circuit breaker counted.
    pub failure_count: i32,
    /// The breaker marked it failed.
    pub breaker_triggered: bool,
    /// Task counts of the target revision when it finished (requested, running, pending).
    pub final_counts: Option<(i32, i32, i32)>,
    /// Its rollback, if the circuit breaker rolled it back.
    pub rollback: Option<RollbackRecord>,
}

impl ServiceDeploymentRecord {
    fn ongoing(&self) -> bool {
        matches!(
            self.status,
            Status::Pending
                | Status::InProgress
                | Status::StopRequested
                | Status::RollbackRequested
                | Status::RollbackInProgress
        )
    }
}

/// A service revision as stored: its id and ECS's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceRevisionRecord {
    /// The id at the end of its ARN.
    pub id: String,
    /// ECS's shape.
    pub revision: ecs::ServiceRevision,
}

fn secs(ms: i64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let s = ms as f64 / 1000.0;
    s
}

/// `ID` in `.../service-deployment/CLUSTER/SERVICE/ID`: 21 characters like ECS's.
fn new_deployment_ref(ctx: &mut Ctx<'_>) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (0..21)
        .map(|_| {
            let i = usize::try_from(ctx.rng.next_u32() % 64).unwrap_or(0);
            char::from(ALPHABET[i])
        })
        .collect()
}

/// `ID` in `.../service-revision/CLUSTER/SERVICE/ID`: 19 digits like ECS's.
fn new_revision_ref(ctx: &mut Ctx<'_>) -> String {
    let mut s = String::new();
    for i in 0..19 {
        let d = ctx.rng.next_u32() % if i == 0 { 9 } else { 10 } + u32::from(i == 0);
        s.push(char::from(b'0' + u8::try_from(d).unwrap_or(0)));
    }
    s
}

/// `arn:aws:ecs:REGION:ACCOUNT:KIND/CLUSTER/SERVICE/ID` from the service's own ARN.
fn child_arn(rec: &ServiceRecord, kind: &str, id: &str) -> String {
    let service_arn = rec.service.service_arn.as_deref().unwrap_or_default();
    let base = service_arn.replacen(":service/", &format!(":{kind}/"), 1);
    format!("{base}/{id}")
}

fn deployment_arn(rec: &ServiceRecord, id: &str) -> String {
    child_arn(rec, "service-deployment", id)
}

fn revision_arn(rec: &ServiceRecord, id: &str) -> String {
    child_arn(rec, "service-revision", id)
}

/// The revision whose tasks the scheduler deployment `deployment` launches.
pub fn revision_of<'r>(rec: &'r ServiceRecord, deployment: &str) -> Option<&'r str> {
    rec.history.iter().find_map(|h| {
        if h.deployment_id == deployment {
            Some(h.target_revision.as_str())
        } else {
            h.rollback
                .as_ref()
                .filter(|r| r.deployment_id == deployment)
                .map(|r| r.revision.as_str())
        }
    })
}

/// Tasks of `deployments` that are (running, pending).
fn task_counts(p: &Partition, rec: &ServiceRecord, deployments: &[&str]) -> (i32, i32) {
    let group = format!(
        "service:{}",
        rec.service.service_name.as_deref().unwrap_or_default()
    );
    let (mut running, mut pending) = (0, 0);
    for (_, t) in p.tasks.in_group(&group) {
        if t.cluster() != rec.cluster || !t.started_by().is_some_and(|s| deployments.contains(&s)) {
            continue;
        }
        match t.last_status() {
            Some("RUNNING") => running += 1,
            Some("PROVISIONING" | "PENDING" | "ACTIVATING") => pending += 1,
            _ => {}
        }
    }
    (running, pending)
}

/// A new scheduler deployment `deployment_id` of `td` begins a new service deployment with a
/// new revision; a service deployment still in progress stops (superseded).
pub fn start(
    p: &Partition,
    rec: &mut ServiceRecord,
    ctx: &mut Ctx<'_>,
    deployment_id: &str,
    td: &TaskDefinitionRecord,
) {
    let now = ctx.now_ms;
    for h in rec.history.iter_mut().filter(|h| h.ongoing()) {
        h.status = Status::Stopped;
        h.status_reason = Some(SUPERSEDED.into());
        h.stopped_at_ms = Some(now);
        h.updated_at_ms = now;
    }
    // What runs now: the other deployments' revisions and counts.
    let mut sources: Vec<SourceRevision> = Vec::new();
    for d in rec.service.deployments.iter().flatten() {
        let Some(id) = d.id.as_deref().filter(|i| *i != deployment_id) else {
            continue;
        };
        if d.status.as_deref() == Some("INACTIVE") {
            continue;
        }
        let Some(r) = revision_of(rec, id) else {
            continue;
        };
        let (running, pending) = task_counts(p, rec, &[id]);
        let requested = d.desired_count.unwrap_or(0);
        match sources.iter_mut().find(|s| s.revision == r) {
            Some(s) => {
                s.requested += requested;
                s.running += running;
                s.pending += pending;
            }
            None => sources.push(SourceRevision {
                revision: r.to_string(),
                requested,
                running,
                pending,
            }),
        }
    }
    let revision_id = new_revision_ref(ctx);
    let s = &rec.service;
    let images = td
        .task_definition
        .container_definitions
        .iter()
        .flatten()
        .map(|c| ecs::ContainerImage {
            container_name: c.name.clone(),
            image: c.image.clone(),
            image_digest: None,
        })
        .collect();
    let revision = ecs::ServiceRevision {
        service_revision_arn: Some(revision_arn(rec, &revision_id)),
        service_arn: s.service_arn.clone(),
        cluster_arn: s.cluster_arn.clone(),
        task_definition: td.task_definition.task_definition_arn.clone(),
        launch_type: s.launch_type.clone(),
        platform_version: s.platform_version.clone(),
        platform_family: s.platform_family.clone(),
        load_balancers: s.load_balancers.clone(),
        service_registries: s.service_registries.clone(),
        network_configuration: s.network_configuration.clone(),
        container_images: Some(images),
        guard_duty_enabled: Some(false),
        created_at: Some(secs(now)),
        ..Default::default()
    };
    rec.revisions.push(ServiceRevisionRecord {
        id: revision_id.clone(),
        revision,
    });
    let seq = rec.history.last().map_or(1, |h| h.seq + 1);
    let id = new_deployment_ref(ctx);
    rec.history.push(ServiceDeploymentRecord {
        id,
        seq,
        deployment_id: deployment_id.to_string(),
        target_revision: revision_id,
        source_revisions: sources,
        status: Status::InProgress,
        status_reason: None,
        created_at_ms: now,
        updated_at_ms: now,
        finished_at_ms: None,
        stopped_at_ms: None,
        configuration: rec
            .service
            .deployment_configuration
            .clone()
            .unwrap_or_default(),
        failure_count: 0,
        breaker_triggered: false,
        final_counts: None,
        rollback: None,
    });
    prune(rec);
}

/// Keep the newest [`MAX_HISTORY`] service deployments and the revisions something still
/// names (a live deployment, a kept service deployment, a rollback).
fn prune(rec: &mut ServiceRecord) {
    if rec.history.len() > MAX_HISTORY {
        let excess = rec.history.len() - MAX_HISTORY;
        rec.history.drain(..excess);
    }
    let live: Vec<String> = rec
        .service
        .deployments
        .iter()
        .flatten()
        .filter_map(|d| d.id.as_deref())
        .filter_map(|d| revision_of(rec, d).map(str::to_string))
        .collect();
    let history = &rec.history;
    rec.revisions.retain(|r| {
        live.contains(&r.id)
            || history.iter().any(|h| {
                h.target_revision == r.id
                    || h.source_revisions.iter().any(|s| s.revision == r.id)
                    || h.rollback.as_ref().is_some_and(|b| b.revision == r.id)
            })
    });
}

fn freeze_counts(p: &Partition, rec: &mut ServiceRecord, idx: usize) {
    let dep = rec.history[idx].deployment_id.clone();
    let requested = rec
        .service
        .deployments
        .iter()
        .flatten()
        .find(|d| d.id.as_deref() == Some(dep.as_str()))
        .and_then(|d| d.desired_count)
        .unwrap_or(0);
    let (running, pending) = task_counts(p, rec, &[dep.as_str()]);
    rec.history[idx].final_counts = Some((requested, running, pending));
}

/// The scheduler deployment `deployment` completed or failed.
pub fn on_rollout(
    p: &Partition,
    rec: &mut ServiceRecord,
    now_ms: i64,
    deployment: &str,
    completed: bool,
    reason: &str,
) {
    let Some(idx) = rec.history.iter().position(|h| {
        h.deployment_id == deployment
            || h.rollback
                .as_ref()
                .is_some_and(|r| r.deployment_id == deployment)
    }) else {
        return;
    };
    if !rec.history[idx].ongoing() {
        return;
    }
    let is_rollback = rec.history[idx].deployment_id != deployment;
    if !is_rollback {
        freeze_counts(p, rec, idx);
    }
    let h = &mut rec.history[idx];
    h.updated_at_ms = now_ms;
    match (is_rollback, completed) {
        (false, true) => {
            h.status = Status::Successful;
            h.status_reason = Some(reason.to_string());
            h.finished_at_ms = Some(now_ms);
        }
        (false, false) => {
            // Without rollback the breaker stops the deployment; a rollback that follows
            // (`on_rollback`) turns this into ROLLBACK_IN_PROGRESS.
            h.status = Status::Stopped;
            h.status_reason = Some(reason.to_string());
            h.stopped_at_ms = Some(now_ms);
            h.breaker_triggered = true;
        }
        (true, true) => {
            h.status = Status::RollbackSuccessful;
            h.finished_at_ms = Some(now_ms);
        }
        (true, false) => {
            h.status = Status::RollbackFailed;
            h.status_reason = Some(reason.to_string());
            h.finished_at_ms = Some(now_ms);
        }
    }
}

/// The circuit breaker rolls the failed scheduler deployment `failed` back to `good` with the
/// new scheduler deployment `rollback`.
pub fn on_rollback(
    rec: &mut ServiceRecord,
    now_ms: i64,
    failed: &str,
    good: &str,
    rollback: &str,
    reason: &str,
) {
    let Some(revision) = revision_of(rec, good).map(str::to_string) else {
        return;
    };
    let Some(h) = rec
        .history
        .iter_mut()
        .rev()
        .find(|h| h.deployment_id == failed)
    else {
        return;
    };
    h.status = Status::RollbackInProgress;
    h.stopped_at_ms = None;
    h.updated_at_ms = now_ms;
    h.breaker_triggered = true;
    h.rollback = Some(RollbackRecord {
        deployment_id: rollback.to_string(),
        revision,
        reason: reason.to_string(),
        started_at_ms: now_ms,
    });
}

/// The circuit breaker's count for the scheduler deployment `deployment`.
pub fn on_breaker(rec: &mut ServiceRecord, deployment: &str, failed_tasks: i32) {
    if let Some(h) = rec
        .history
        .iter_mut()
        .find(|h| h.deployment_id == deployment && h.ongoing())
    {
        h.failure_count = failed_tasks;
    }
}

/// The service is gone (INACTIVE): as ECS, its service deployments go with it.
pub fn on_deleted(rec: &mut ServiceRecord) {
    rec.history.clear();
    rec.revisions.clear();
}

/// `currentServiceDeployment` and `currentServiceRevisions` of a Service whose deployments
/// already carry their live counts.
pub fn decorate(rec: &ServiceRecord, s: &mut ecs::Service) {
    let Some(last) = rec.history.last() else {
        return;
    };
    s.current_service_deployment = Some(deployment_arn(rec, &last.id));
    let mut current: Vec<ecs::ServiceCurrentRevisionSummary> = Vec::new();
    for d in s.deployments.iter().flatten() {
        if d.status.as_deref() == Some("INACTIVE") {
            continue;
        }
        let Some(r) = d.id.as_deref().and_then(|id| revision_of(rec, id)) else {
            continue;
        };
        let a = revision_arn(rec, r);
        let entry = match current
            .iter_mut()
            .position(|c| c.arn.as_deref() == Some(&a))
        {
            Some(i) => &mut current[i],
            None => {
                current.push(ecs::ServiceCurrentRevisionSummary {
                    arn: Some(a),
                    requested_task_count: Some(0),
                    running_task_count: Some(0),
                    pending_task_count: Some(0),
                });
                let n = current.len() - 1;
                &mut current[n]
            }
        };
        let add = |x: &mut Option<i32>, y: Option<i32>| *x = Some(x.unwrap_or(0) + y.unwrap_or(0));
        add(&mut entry.requested_task_count, d.desired_count);
        add(&mut entry.running_task_count, d.running_count);
        add(&mut entry.pending_task_count, d.pending_count);
    }
    s.current_service_revisions = Some(current);
}

fn to_brief(rec: &ServiceRecord, h: &ServiceDeploymentRecord) -> ecs::ServiceDeploymentBrief {
    ecs::ServiceDeploymentBrief {
        service_deployment_arn: Some(deployment_arn(rec, &h.id)),
        service_arn: rec.service.service_arn.clone(),
        cluster_arn: rec.service.cluster_arn.clone(),
        created_at: Some(secs(h.created_at_ms)),
        started_at: Some(secs(h.created_at_ms)),
        finished_at: h.finished_at_ms.or(h.stopped_at_ms).map(secs),
        target_service_revision_arn: Some(revision_arn(rec, &h.target_revision)),
        status: Some(h.status.clone()),
        status_reason: h.status_reason.clone(),
    }
}

fn to_full(
    p: &Partition,
    rec: &ServiceRecord,
    h: &ServiceDeploymentRecord,
) -> ecs::ServiceDeployment {
    let (requested, running, pending) = h.final_counts.unwrap_or_else(|| {
        let requested = if h.ongoing() {
            rec.service.desired_count.unwrap_or(0)
        } else {
            0
        };
        let (running, pending) = task_counts(p, rec, &[h.deployment_id.as_str()]);
        (requested, running, pending)
    });
    let breaker = h
        .configuration
        .deployment_circuit_breaker
        .clone()
        .unwrap_or_default();
    let monitor = if breaker.enable != Some(true) {
        Monitor::Disabled
    } else if h.breaker_triggered {
        Monitor::Triggered
    } else if h.ongoing() {
        Monitor::Monitoring
    } else {
        Monitor::MonitoringComplete
    };
    let desired = rec.service.desired_count.unwrap_or(0);
    ecs::ServiceDeployment {
        service_deployment_arn: Some(deployment_arn(rec, &h.id)),
        service_arn: rec.service.service_arn.clone(),
        cluster_arn: rec.service.cluster_arn.clone(),
        created_at: Some(secs(h.created_at_ms)),
        started_at: Some(secs(h.created_at_ms)),
        updated_at: Some(secs(h.updated_at_ms)),
        finished_at: h.finished_at_ms.map(secs),
        stopped_at: h.stopped_at_ms.map(secs),
        source_service_revisions: Some(
            h.source_revisions
                .iter()
                .map(|s| ecs::ServiceRevisionSummary {
                    arn: Some(revision_arn(rec, &s.revision)),
                    requested_task_count: Some(s.requested),
                    running_task_count: Some(s.running),
                    pending_task_count: Some(s.pending),
                    ..Default::default()
                })
                .collect(),
        ),
        target_service_revision: Some(ecs::ServiceRevisionSummary {
            arn: Some(revision_arn(rec, &h.target_revision)),
            requested_task_count: Some(requested),
            running_task_count: Some(running),
            pending_task_count: Some(pending),
            ..Default::default()
        }),
        status: Some(h.status.clone()),
        status_reason: h.status_reason.clone(),
        deployment_configuration: Some(h.configuration.clone()),
        deployment_circuit_breaker: Some(ecs::ServiceDeploymentCircuitBreaker {
            status: Some(monitor),
            failure_count: Some(h.failure_count),
            threshold: Some(service_plan::breaker_threshold(desired)),
        }),
        alarms: Some(ecs::ServiceDeploymentAlarms {
            status: Some(Monitor::Disabled),
            alarm_names: None,
            triggered_alarm_names: None,
        }),
        rollback: h.rollback.as_ref().map(|r| ecs::Rollback {
            reason: Some(r.reason.clone()),
            started_at: Some(secs(r.started_at_ms)),
            service_revision_arn: Some(revision_arn(rec, &r.revision)),
        }),
        ..Default::default()
    }
}

/// ListServiceDeployments: newest first, 20 a page unless asked otherwise (as ECS).
pub fn list(
    p: &Partition,
    ctx: &Ctx<'_>,
    req: ListServiceDeploymentsRequest,
) -> Result<ListServiceDeploymentsResponse, EcsError> {
    let cluster_name = service::cluster_name(p, ctx, req.cluster.as_deref())?;
    let reference = req.service.clone().unwrap_or_default();
    let k = service::find(p, ctx, &cluster_name, &reference).ok_or(EcsError::ServiceNotFound)?;
    let rec = &p.services[&k];
    let limit = pagination::max_results(req.max_results, 20)?;
    let statuses = req.status.unwrap_or_default();
    let after = req.created_at.as_ref().and_then(|c| c.after);
    let before = req.created_at.as_ref().and_then(|c| c.before);
    let items: Vec<(String, ecs::ServiceDeploymentBrief)> = rec
        .history
        .iter()
        .rev()
        .filter(|h| statuses.is_empty() || statuses.contains(&h.status))
        .filter(|h| after.is_none_or(|a| secs(h.created_at_ms) >= a))
        .filter(|h| before.is_none_or(|b| secs(h.created_at_ms) <= b))
        .map(|h| (format!("{:016x}", h.seq), to_brief(rec, h)))
        .collect();
    let (service_deployments, next_token) =
        pagination::page_ordered(items, req.next_token.as_deref(), limit, true)?;
    Ok(ListServiceDeploymentsResponse {
        service_deployments: Some(service_deployments),
        next_token,
    })
}

/// `(cluster, service, id)` of a `service-deployment` / `service-revision` ARN of the
/// caller's partition.
fn parse_ref<'a>(
    ctx: &Ctx<'_>,
    reference: &'a str,
    kind: &str,
) -> Option<(&'a str, &'a str, &'a str)> {
    let a = arn::parse(reference)?;
    if a.resource_type != kind
        || a.region != ctx.partition.region
        || a.account != ctx.partition.account
    {
        return None;
    }
    let mut parts = a.resource.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(c), Some(s), Some(id), None) if !c.is_empty() && !s.is_empty() && !id.is_empty() => {
            Some((c, s, id))
        }
        _ => None,
    }
}

fn check_count(n: usize, what: &str) -> Result<(), EcsError> {
    if n == 0 || n > MAX_DESCRIBE {
        return Err(EcsError::invalid(format!(
            "{what} must contain between 1 and {MAX_DESCRIBE} items."
        )));
    }
    Ok(())
}

fn missing(arn: &str) -> ecs::Failure {
    ecs::Failure {
        arn: Some(arn.to_string()),
        reason: Some("MISSING".into()),
        detail: None,
    }
}

/// DescribeServiceDeployments.
pub fn describe(
    p: &Partition,
    ctx: &Ctx<'_>,
    req: DescribeServiceDeploymentsRequest,
) -> Result<DescribeServiceDeploymentsResponse, EcsError> {
    let arns = req.service_deployment_arns.unwrap_or_default();
    check_count(arns.len(), "serviceDeploymentArns")?;
    let mut found = Vec::new();
    let mut failures = Vec::new();
    for a in &arns {
        let hit = parse_ref(ctx, a, "service-deployment").and_then(|(c, s, id)| {
            let rec = p.services.get(&format!("{c}/{s}"))?;
            let h = rec.history.iter().find(|h| h.id == id)?;
            Some(to_full(p, rec, h))
        });
        match hit {
            Some(d) => found.push(d),
            None => failures.push(missing(a)),
        }
    }
    Ok(DescribeServiceDeploymentsResponse {
        service_deployments: Some(found),
        failures: Some(failures),
    })
}

/// DescribeServiceRevisions.
pub fn describe_revisions(
    p: &Partition,
    ctx: &Ctx<'_>,
    req: DescribeServiceRevisionsRequest,
) -> Result<DescribeServiceRevisionsResponse, EcsError> {
    let arns = req.service_revision_arns.unwrap_or_default();
    check_count(arns.len(), "serviceRevisionArns")?;
    let mut found = Vec::new();
    let mut failures = Vec::new();
    for a in &arns {
        let hit = parse_ref(ctx, a, "service-revision").and_then(|(c, s, id)| {
            let rec = p.services.get(&format!("{c}/{s}"))?;
            rec.revisions
                .iter()
                .find(|r| r.id == id)
                .map(|r| r.revision.clone())
        });
        match hit {
            Some(r) => found.push(r),
            None => failures.push(missing(a)),
        }
    }
    Ok(DescribeServiceRevisionsResponse {
        service_revisions: Some(found),
        failures: Some(failures),
    })
}
