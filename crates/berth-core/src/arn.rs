//! ECS's long-format ARNs and the identifiers requests may use in their place.

use crate::PartitionKey;

/// `arn:aws:ecs:REGION:ACCOUNT:cluster/NAME`.
pub fn cluster(p: &PartitionKey, name: &str) -> String {
    format!("arn:aws:ecs:{}:{}:cluster/{name}", p.region, p.account)
}

/// `arn:aws:ecs:REGION:ACCOUNT:task-definition/FAMILY:REVISION`.
pub fn task_definition(p: &PartitionKey, family: &str, revision: i32) -> String {
    format!(
        "arn:aws:ecs:{}:{}:task-definition/{family}:{revision}",
        p.region, p.account
    )
}

/// `arn:aws:ecs:REGION:ACCOUNT:container-instance/CLUSTER/ID`.
pub fn container_instance(p: &PartitionKey, cluster: &str, id: &str) -> String {
    format!(
        "arn:aws:ecs:{}:{}:container-instance/{cluster}/{id}",
        p.region, p.account
    )
}

/// `arn:aws:ecs:REGION:ACCOUNT:task/CLUSTER/ID`.
pub fn task(p: &PartitionKey, cluster: &str, id: &str) -> String {
    format!("arn:aws:ecs:{}:{}:task/{cluster}/{id}", p.region, p.account)
}

/// `arn:aws:ecs:REGION:ACCOUNT:container/CLUSTER/TASK_ID/UUID`.
pub fn container(p: &PartitionKey, cluster: &str, task_id: &str, uuid: &str) -> String {
    format!(
        "arn:aws:ecs:{}:{}:container/{cluster}/{task_id}/{uuid}",
        p.region, p.account
    )
}

/// The part after the last `/` (an id inside an ARN, or the reference itself).
pub fn last_segment(reference: &str) -> &str {
    reference.rsplit('/').next().unwrap_or(reference)
}

/// Resolve a task or container-instance reference (id or ARN) to an id, checking that an
/// ARN belongs to this partition, has the expected type, and (when given) the cluster.
pub fn resource_id<'a>(
    p: &PartitionKey,
    resource_type: &str,
    cluster: &str,
    reference: &'a str,
) -> Option<&'a str> {
    if !reference.starts_with("arn:") {
        return Some(reference);
    }
    let arn = parse(reference)?;
    if arn.resource_type != resource_type || arn.region != p.region || arn.account != p.account {
        return None;
    }
    match arn.resource.split_once('/') {
        Some((c, id)) if c == cluster => Some(id),
        Some(_) => None,
        None => Some(arn.resource),
    }
}

/// The IAM principal Berth records as the caller (`registeredBy`, `createdBy`).
pub fn principal(p: &PartitionKey, name: &str) -> String {
    if name == "root" {
        format!("arn:aws:iam::{}:root", p.account)
    } else {
        format!("arn:aws:iam::{}:user/{name}", p.account)
    }
}

/// A parsed ECS ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arn<'a> {
    /// Region field.
    pub region: &'a str,
    /// Account field.
    pub account: &'a str,
    /// Resource type (`cluster`, `task-definition`, `task`, ...).
    pub resource_type: &'a str,
    /// Everything after `type/`.
    pub resource: &'a str,
}

/// Parse `arn:aws:ecs:REGION:ACCOUNT:TYPE/REST`; `None` if it is not an ECS ARN.
pub fn parse(arn: &str) -> Option<Arn<'_>> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(_partition), Some("ecs"), Some(region), Some(account), Some(rest)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let (resource_type, resource) = rest.split_once('/')?;
    Some(Arn {
        region,
        account,
        resource_type,
        resource,
    })
}

/// Resolve a cluster reference (name or ARN) to a name in partition `p`.
///
/// An ARN from another account or region names nothing here, so it resolves to a name that
/// no cluster can have, and the caller reports the cluster as missing.
pub fn cluster_name<'a>(p: &PartitionKey, reference: &'a str) -> Option<&'a str> {
    if !reference.starts_with("arn:") {
        return Some(reference);
    }
    let arn = parse(reference)?;
    (arn.resource_type == "cluster" && arn.region == p.region && arn.account == p.account)
        .then_some(arn.resource)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> PartitionKey {
        PartitionKey {
            account: "000000000000".into(),
            region: "us-east-1".into(),
        }
    }

    #[test]
    fn cluster_arns_round_trip() {
        let arn = cluster(&p(), "default");
        assert_eq!(arn, "arn:aws:ecs:us-east-1:000000000000:cluster/default");
        assert_eq!(cluster_name(&p(), &arn), Some("default"));
        assert_eq!(cluster_name(&p(), "web"), Some("web"));
    }

    #[test]
    fn foreign_arns_resolve_to_nothing() {
        assert_eq!(
            cluster_name(&p(), "arn:aws:ecs:eu-west-1:000000000000:cluster/default"),
            None
        );
        assert_eq!(
            cluster_name(&p(), "arn:aws:ecs:us-east-1:111111111111:cluster/default"),
            None
        );
        assert_eq!(cluster_name(&p(), "arn:aws:s3:::bucket"), None);
        assert_eq!(cluster_name(&p(), "arn:"), None);
    }

    #[test]
    fn task_definition_arn() {
        assert_eq!(
            task_definition(&p(), "web", 3),
            "arn:aws:ecs:us-east-1:000000000000:task-definition/web:3"
        );
        let parsed = parse("arn:aws:ecs:us-east-1:000000000000:task-definition/web:3").unwrap();
        assert_eq!(parsed.resource_type, "task-definition");
        assert_eq!(parsed.resource, "web:3");
    }
}
