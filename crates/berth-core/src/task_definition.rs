//! Task definitions: RegisterTaskDefinition, DescribeTaskDefinition, ListTaskDefinitions,
//! ListTaskDefinitionFamilies, DeregisterTaskDefinition, DeleteTaskDefinitions.
//!
//! Registration validates the request as ECS does ([`validate`]), fills in the fields ECS
//! adds ([`normalize`]), and stores the result; Describe returns it exactly.

mod normalize;
#[cfg(test)]
mod tests;
mod validate;

pub use normalize::{
    HEALTH_CHECK_DEFAULTS, compatibilities, normalize, parse_cpu, parse_memory, requires_attributes,
};
pub use validate::{
    DEFAULT_RESERVED_HOST_PORTS, EC2_TASK_CPU_RANGE, HEALTH_CHECK_RANGES, MAX_CONTAINERS,
    MAX_ENVIRONMENT_FILES, MAX_IGNORED_EXIT_CODES, MAX_PLACEMENT_CONSTRAINTS,
    MIN_CONTAINER_MEMORY_MIB, dependency_cycle, fargate_compatible, fargate_memory_ok, is_name,
    parse_port_range, validate,
};

use crate::pagination;
use crate::state::{Ctx, Kind, Partition, TaskDefinitionRecord, keys};
use crate::{arn, tags};
use berth_api::EcsError;
use berth_api::ecs::{
    self, DeleteTaskDefinitionsRequest, DeleteTaskDefinitionsResponse,
    DeregisterTaskDefinitionRequest, DeregisterTaskDefinitionResponse,
    DescribeTaskDefinitionRequest, DescribeTaskDefinitionResponse,
    ListTaskDefinitionFamiliesRequest, ListTaskDefinitionFamiliesResponse,
    ListTaskDefinitionsRequest, ListTaskDefinitionsResponse, RegisterTaskDefinitionRequest,
    RegisterTaskDefinitionResponse, SortOrder, TaskDefinitionFamilyStatus, TaskDefinitionField,
    TaskDefinitionStatus,
};

/// The error ECS gives for any reference that names no task definition.
pub fn not_found() -> EcsError {
    EcsError::client("Unable to describe task definition.")
}

/// The revision's status string.
pub fn status_of(r: &TaskDefinitionRecord) -> &str {
    r.task_definition
        .status
        .as_ref()
        .map_or("ACTIVE", TaskDefinitionStatus::as_str)
}

/// A parsed task definition reference: `family`, `family:revision` or an ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Family name.
    pub family: String,
    /// Revision, if the reference names one.
    pub revision: Option<i32>,
}

/// Parse a reference as it appears in requests.
pub fn parse_reference(ctx: &Ctx<'_>, reference: &str) -> Result<Reference, EcsError> {
    let body = if reference.starts_with("arn:") {
        let parsed = arn::parse(reference).ok_or_else(not_found)?;
        if parsed.resource_type != "task-definition"
            || parsed.region != ctx.partition.region
            || parsed.account != ctx.partition.account
        {
            return Err(not_found());
        }
        parsed.resource
    } else {
        reference
    };
    match body.rsplit_once(':') {
        Some((family, rev)) => {
            let revision = rev.parse::<i32>().ok().filter(|r| *r > 0).ok_or_else(|| {
                EcsError::client(format!("Invalid revision number. Number: {rev}"))
            })?;
            Ok(Reference {
                family: family.to_string(),
                revision: Some(revision),
            })
        }
        None => Ok(Reference {
            family: body.to_string(),
            revision: None,
        }),
    }
}

/// Find the revision a reference names: an exact revision (any status but deleted), or for
/// a bare family the latest ACTIVE one.
pub fn resolve<'p>(
    p: &'p Partition,
    ctx: &Ctx<'_>,
    reference: &str,
) -> Result<&'p TaskDefinitionRecord, EcsError> {
    let r = parse_reference(ctx, reference)?;
    let family = p.families.get(&r.family).ok_or_else(not_found)?;
    let found = match r.revision {
        Some(rev) => family.revisions.get(&rev),
        None => family
            .revisions
            .values()
            .rev()
            .find(|t| status_of(t) == "ACTIVE"),
    };
    found
        .filter(|t| status_of(t) != "DELETE_IN_PROGRESS")
        .ok_or_else(not_found)
}

/// RegisterTaskDefinition.
pub fn register(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    req: RegisterTaskDefinitionRequest,
) -> Result<RegisterTaskDefinitionResponse, EcsError> {
    validate(&req)?;
    let new_tags = req.tags.clone().unwrap_or_default();
    tags::validate(&new_tags)?;
    let family_name = req.family.clone().unwrap_or_default();
    let revision = p.families.get(&family_name).map_or(0, |f| f.last_revision) + 1;
    let principal = arn::principal(&ctx.partition, &ctx.principal);
    let mut td = normalize(req);
    td.task_definition_arn = Some(arn::task_definition(&ctx.partition, &family_name, revision));
    td.revision = Some(revision);
    td.status = Some(TaskDefinitionStatus::Active);
    td.registered_at = Some(ctx.now_secs());
    td.registered_by = Some(principal);
    let rec = TaskDefinitionRecord {
        task_definition: td,
        tags: new_tags,
    };
    ctx.put(
        Kind::TaskDefinition,
        &keys::task_definition(&family_name, revision),
        &rec,
    );
    let family = p.families.entry(family_name).or_default();
    family.last_revision = revision;
    family.revisions.insert(revision, rec.clone());
    Ok(RegisterTaskDefinitionResponse {
        task_definition: Some(rec.task_definition),
        tags: Some(rec.tags),
    })
}

/// DescribeTaskDefinition.
pub fn describe(
    p: &Partition,
    ctx: &Ctx<'_>,
    req: DescribeTaskDefinitionRequest,
) -> Result<DescribeTaskDefinitionResponse, EcsError> {
    let rec = resolve(p, ctx, req.task_definition.as_deref().unwrap_or_default())?;
    let with_tags = req
        .include
        .unwrap_or_default()
        .contains(&TaskDefinitionField::Tags);
    Ok(DescribeTaskDefinitionResponse {
        task_definition: Some(rec.task_definition.clone()),
        tags: with_tags.then(|| rec.tags.clone()),
    })
}

/// The paging key of a revision. The separator sorts below every character a family name
/// may hold, so keys sort exactly as (family, revision) pairs do: `web` before `web-api`.
fn list_key(family: &str, revision: i32) -> String {
    format!("{family} {revision:010}")
}

/// ListTaskDefinitions: ARNs of the revisions in one status (default ACTIVE), by family
/// name and then revision number (`sort` DESC reverses both).
///
/// Despite its name, `familyPrefix` is matched as the whole family name, as ECS documents
/// it ("the full family name to filter the results with"); ListTaskDefinitionFamilies is the
/// operation that matches prefixes.
pub fn list(
    p: &Partition,
    _ctx: &Ctx<'_>,
    req: ListTaskDefinitionsRequest,
) -> Result<ListTaskDefinitionsResponse, EcsError> {
    let limit = pagination::max_results(req.max_results, 100)?;
    let status = req.status.unwrap_or(TaskDefinitionStatus::Active);
    let family = req.family_prefix;
    let descending = req.sort == Some(SortOrder::Desc);
    let mut items: Vec<(String, String)> = p
        .families
        .iter()
        .filter(|(name, _)| family.as_ref().is_none_or(|f| f == *name))
        .flat_map(|(name, f)| {
            f.revisions
                .iter()
                .filter(|(_, r)| status_of(r) == status.as_str())
                .map(move |(rev, r)| {
                    (
                        list_key(name, *rev),
                        r.task_definition
                            .task_definition_arn
                            .clone()
                            .unwrap_or_default(),
                    )
                })
        })
        .collect();
    if descending {
        items.reverse();
    }
    let (arns, next) =
        pagination::page_ordered(items, req.next_token.as_deref(), limit, descending)?;
    Ok(ListTaskDefinitionsResponse {
        task_definition_arns: Some(arns),
        next_token: next,
    })
}

/// ListTaskDefinitionFamilies. By default every family with a revision that is ACTIVE or
/// INACTIVE; `ACTIVE` = families with an ACTIVE revision; `INACTIVE` = families without one.
pub fn list_families(
    p: &Partition,
    _ctx: &Ctx<'_>,
    req: ListTaskDefinitionFamiliesRequest,
) -> Result<ListTaskDefinitionFamiliesResponse, EcsError> {
    let limit = pagination::max_results(req.max_results, 100)?;
    let prefix = req.family_prefix.unwrap_or_default();
    let status = req.status.unwrap_or(TaskDefinitionFamilyStatus::All);
    let items: Vec<(String, String)> = p
        .families
        .range(prefix.clone()..)
        .take_while(|(name, _)| name.starts_with(&prefix))
        .filter(|(_, f)| {
            let any_active = f.revisions.values().any(|r| status_of(r) == "ACTIVE");
            let any_listed = f
                .revisions
                .values()
                .any(|r| status_of(r) != "DELETE_IN_PROGRESS");
            match status {
                TaskDefinitionFamilyStatus::Active => any_active,
                TaskDefinitionFamilyStatus::Inactive => any_listed && !any_active,
                _ => any_listed,
            }
        })
        .map(|(name, _)| (name.clone(), name.clone()))
        .collect();
    let (families, next) = pagination::page(items, req.next_token.as_deref(), limit)?;
    Ok(ListTaskDefinitionFamiliesResponse {
        families: Some(families),
        next_token: next,
    })
}

fn require_revision(ctx: &Ctx<'_>, reference: &str) -> Result<Reference, EcsError> {
    let r = parse_reference(ctx, reference)?;
    if r.revision.is_none() {
        return Err(EcsError::client(
            "The specified task definition identifier is invalid. Specify a valid revision.",
        ));
    }
    Ok(r)
}

/// DeregisterTaskDefinition: the revision becomes INACTIVE and stays describable.
pub fn deregister(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    req: DeregisterTaskDefinitionRequest,
) -> Result<DeregisterTaskDefinitionResponse, EcsError> {
    let r = require_revision(ctx, req.task_definition.as_deref().unwrap_or_default())?;
    let revision = r.revision.unwrap_or_default();
    let rec = p
        .families
        .get_mut(&r.family)
        .and_then(|f| f.revisions.get_mut(&revision))
        .filter(|t| status_of(t) != "DELETE_IN_PROGRESS")
        .ok_or_else(not_found)?;
    if status_of(rec) == "ACTIVE" {
        rec.task_definition.status = Some(TaskDefinitionStatus::Inactive);
        rec.task_definition.deregistered_at = Some(ctx.now_secs());
        let saved = rec.clone();
        ctx.put(
            Kind::TaskDefinition,
            &keys::task_definition(&r.family, revision),
            &saved,
        );
    }
    let td = p.families[&r.family].revisions[&revision]
        .task_definition
        .clone();
    Ok(DeregisterTaskDefinitionResponse {
        task_definition: Some(td),
    })
}

/// DeleteTaskDefinitions: INACTIVE revisions move to DELETE_IN_PROGRESS; each refusal is a
/// per-item failure, as ECS reports them.
pub fn delete(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    req: DeleteTaskDefinitionsRequest,
) -> Result<DeleteTaskDefinitionsResponse, EcsError> {
    let refs = req.task_definitions.unwrap_or_default();
    if refs.is_empty() || refs.len() > 10 {
        return Err(EcsError::invalid(
            "taskDefinitions must contain between 1 and 10 task definitions.",
        ));
    }
    let mut done = Vec::new();
    let mut failures = Vec::new();
    for reference in refs {
        let fail = |reason: &str| ecs::Failure {
            arn: Some(reference.clone()),
            reason: Some(reason.to_string()),
            detail: None,
        };
        let r = match require_revision(ctx, &reference) {
            Ok(r) => r,
            Err(e) => {
                failures.push(fail(&e.to_string()));
                continue;
            }
        };
        let revision = r.revision.unwrap_or_default();
        let Some(rec) = p
            .families
            .get_mut(&r.family)
            .and_then(|f| f.revisions.get_mut(&revision))
        else {
            failures.push(fail("The specified task definition does not exist."));
            continue;
        };
        match status_of(rec) {
            "ACTIVE" => failures.push(fail(
                "The specified task definition is still in ACTIVE status. Please deregister the target and try again.",
            )),
            "DELETE_IN_PROGRESS" => done.push(rec.task_definition.clone()),
            _ => {
                rec.task_definition.status = Some(TaskDefinitionStatus::DeleteInProgress);
                rec.task_definition.delete_requested_at = Some(ctx.now_secs());
                let saved = rec.clone();
                ctx.put(Kind::TaskDefinition, &keys::task_definition(&r.family, revision), &saved);
                done.push(saved.task_definition);
            }
        }
    }
    Ok(DeleteTaskDefinitionsResponse {
        task_definitions: Some(done),
        failures: Some(failures),
    })
}
