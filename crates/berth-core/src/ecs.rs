//! The ECS operation table: decode, run against the caller's partition, encode.

use crate::state::{Ctx, World};
use crate::{
    cluster, container_instance, pagination, service, service_deployment, tags, task,
    task_definition,
};
use berth_api::ecs as api;
use berth_api::{ApiError, Service, decode, encode};

macro_rules! op {
    ($world:expr, $ctx:expr, $body:expr, $f:path) => {{
        let req = decode(Service::Ecs, $body)?;
        let partition = $world.partition(&$ctx.partition);
        let resp = $f(partition, $ctx, req).map_err(ApiError::from)?;
        Ok(Reply::of(resp))
    }};
}

/// A listing: like `op!`, and the request's `nextToken` is opened and the response's
/// sealed with the server's key, bound to the operation and the caller's partition
/// (`pagination::TokenKey`). The operation itself sees plain tokens.
macro_rules! paged {
    ($world:expr, $ctx:expr, $body:expr, $op:expr, $req:ty, $f:path) => {{
        let mut req: $req = decode(Service::Ecs, $body)?;
        let scope = pagination::scope("ecs", $op, &$ctx.partition);
        req.next_token = req
            .next_token
            .map(|t| $ctx.token_key.open_ecs(&scope, &t))
            .transpose()
            .map_err(ApiError::from)?;
        let partition = $world.partition(&$ctx.partition);
        let mut resp = $f(partition, $ctx, req).map_err(ApiError::from)?;
        resp.next_token = resp.next_token.map(|t| $ctx.token_key.seal(&scope, &t));
        Ok(Reply::of(resp))
    }};
}

/// An operation's answer, not yet encoded: the server encodes it after it lets go of the
/// world's lock, so a large DescribeTasks answer does not hold every other request back.
pub struct Reply(Box<dyn FnOnce() -> Vec<u8> + Send>);

impl Reply {
    fn of<T: serde::Serialize + Send + 'static>(resp: T) -> Reply {
        Reply(Box::new(move || encode(&resp)))
    }

    /// The answer's body (AWS JSON).
    pub fn encode(self) -> Vec<u8> {
        (self.0)()
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reply(..)")
    }
}

/// Run one ECS operation. On error nothing has changed: every operation validates before it
/// mutates, and leaves no mutations behind when it refuses.
pub fn handle(
    world: &mut World,
    ctx: &mut Ctx<'_>,
    operation: &str,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    handle_deferred(world, ctx, operation, body).map(Reply::encode)
}

/// [`handle`], leaving the answer's encoding to the caller.
pub fn handle_deferred(
    world: &mut World,
    ctx: &mut Ctx<'_>,
    operation: &str,
    body: &[u8],
) -> Result<Reply, ApiError> {
    match operation {
        "CreateCluster" => op!(world, ctx, body, cluster::create),
        "DescribeClusters" => op!(world, ctx, body, cluster::describe),
        "ListClusters" => paged!(
            world,
            ctx,
            body,
            operation,
            api::ListClustersRequest,
            cluster::list
        ),
        "DeleteCluster" => {
            let req: berth_api::ecs::DeleteClusterRequest = decode(Service::Ecs, body)?;
            let partition = world.partition(&ctx.partition);
            let name = crate::arn::cluster_name(
                &ctx.partition,
                req.cluster.as_deref().unwrap_or_default(),
            )
            .unwrap_or_default()
            .to_string();
            let usage = cluster::usage(partition, &name);
            let resp = cluster::delete(partition, ctx, req, usage).map_err(ApiError::from)?;
            Ok(Reply::of(resp))
        }
        "UpdateCluster" => op!(world, ctx, body, cluster::update),
        "UpdateClusterSettings" => op!(world, ctx, body, cluster::update_settings),
        "PutClusterCapacityProviders" => op!(world, ctx, body, cluster::put_capacity_providers),
        "RegisterTaskDefinition" => op!(world, ctx, body, task_definition::register),
        "DescribeTaskDefinition" => op!(world, ctx, body, task_definition::describe),
        "ListTaskDefinitions" => paged!(
            world,
            ctx,
            body,
            operation,
            api::ListTaskDefinitionsRequest,
            task_definition::list
        ),
        "ListTaskDefinitionFamilies" => paged!(
            world,
            ctx,
            body,
            operation,
            api::ListTaskDefinitionFamiliesRequest,
            task_definition::list_families
        ),
        "DeregisterTaskDefinition" => op!(world, ctx, body, task_definition::deregister),
        "DeleteTaskDefinitions" => op!(world, ctx, body, task_definition::delete),
        "TagResource" => op!(world, ctx, body, tags::tag_resource),
        "UntagResource" => op!(world, ctx, body, tags::untag_resource),
        "ListTagsForResource" => op!(world, ctx, body, tags::list_tags),
        "CreateService" => op!(world, ctx, body, service::create),
        "UpdateService" => op!(world, ctx, body, service::update),
        "DeleteService" => op!(world, ctx, body, service::delete),
        "DescribeServices" => op!(world, ctx, body, service::describe),
        "ListServices" => paged!(
            world,
            ctx,
            body,
            operation,
            api::ListServicesRequest,
            service::list
        ),
        "ListServiceDeployments" => paged!(
            world,
            ctx,
            body,
            operation,
            api::ListServiceDeploymentsRequest,
            service_deployment::list
        ),
        "DescribeServiceDeployments" => op!(world, ctx, body, service_deployment::describe),
        "DescribeServiceRevisions" => {
            op!(world, ctx, body, service_deployment::describe_revisions)
        }
        "RunTask" => op!(world, ctx, body, task::run),
        "StartTask" => op!(world, ctx, body, task::start),
        "StopTask" => op!(world, ctx, body, task::stop),
        "DescribeTasks" => op!(world, ctx, body, task::describe),
        "ListTasks" => paged!(
            world,
            ctx,
            body,
            operation,
            api::ListTasksRequest,
            task::list
        ),
        "DescribeContainerInstances" => op!(world, ctx, body, container_instance::describe),
        "ListContainerInstances" => paged!(
            world,
            ctx,
            body,
            operation,
            api::ListContainerInstancesRequest,
            container_instance::list
        ),
        "DeregisterContainerInstance" => op!(world, ctx, body, container_instance::deregister),
        "UpdateContainerInstancesState" => op!(world, ctx, body, container_instance::update_state),
        "PutAttributes" => op!(world, ctx, body, container_instance::put_attributes),
        "DeleteAttributes" => op!(world, ctx, body, container_instance::delete_attributes),
        "ListAttributes" => paged!(
            world,
            ctx,
            body,
            operation,
            api::ListAttributesRequest,
            container_instance::list_attributes
        ),
        other => Err(ApiError::not_implemented(Service::Ecs, other)),
    }
}

/// Operations that never change state (served without a commit).
pub fn is_read_only(operation: &str) -> bool {
    operation.starts_with("Describe") || operation.starts_with("List")
}
