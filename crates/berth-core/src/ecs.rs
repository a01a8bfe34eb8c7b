//! The ECS operation table: decode, run against the caller's partition, encode.

use crate::state::{Ctx, World};
use crate::{cluster, tags, task_definition};
use berth_api::{ApiError, Service, decode, encode};

macro_rules! op {
    ($world:expr, $ctx:expr, $body:expr, $f:path) => {{
        let req = decode(Service::Ecs, $body)?;
        let partition = $world.partition(&$ctx.partition);
        let resp = $f(partition, $ctx, req).map_err(ApiError::from)?;
        Ok(encode(&resp))
    }};
}

/// Run one ECS operation. On error nothing has changed: every operation validates before it
/// mutates, and leaves no mutations behind when it refuses.
pub fn handle(
    world: &mut World,
    ctx: &mut Ctx<'_>,
    operation: &str,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    match operation {
        "CreateCluster" => op!(world, ctx, body, cluster::create),
        "DescribeClusters" => op!(world, ctx, body, cluster::describe),
        "ListClusters" => op!(world, ctx, body, cluster::list),
        "DeleteCluster" => {
            let req = decode(Service::Ecs, body)?;
            let partition = world.partition(&ctx.partition);
            let usage = cluster::ClusterUse::default();
            let resp = cluster::delete(partition, ctx, req, usage).map_err(ApiError::from)?;
            Ok(encode(&resp))
        }
        "UpdateCluster" => op!(world, ctx, body, cluster::update),
        "UpdateClusterSettings" => op!(world, ctx, body, cluster::update_settings),
        "PutClusterCapacityProviders" => op!(world, ctx, body, cluster::put_capacity_providers),
        "RegisterTaskDefinition" => op!(world, ctx, body, task_definition::register),
        "DescribeTaskDefinition" => op!(world, ctx, body, task_definition::describe),
        "ListTaskDefinitions" => op!(world, ctx, body, task_definition::list),
        "ListTaskDefinitionFamilies" => op!(world, ctx, body, task_definition::list_families),
        "DeregisterTaskDefinition" => op!(world, ctx, body, task_definition::deregister),
        "DeleteTaskDefinitions" => op!(world, ctx, body, task_definition::delete),
        "TagResource" => op!(world, ctx, body, tags::tag_resource),
        "UntagResource" => op!(world, ctx, body, tags::untag_resource),
        "ListTagsForResource" => op!(world, ctx, body, tags::list_tags),
        other => Err(ApiError::not_implemented(Service::Ecs, other)),
    }
}

/// Operations that never change state (served without a commit).
pub fn is_read_only(operation: &str) -> bool {
    operation.starts_with("Describe") || operation.starts_with("List")
}
