//! Clusters: CreateCluster, DescribeClusters, ListClusters, DeleteCluster, UpdateCluster,
//! UpdateClusterSettings, PutClusterCapacityProviders.

use crate::pagination;
use crate::state::{ClusterRecord, Ctx, Kind, Partition, keys};
use crate::{arn, tags};
use berth_api::EcsError;
use berth_api::ecs::{
    self, ClusterField, ClusterSetting, ClusterSettingName, CreateClusterRequest,
    CreateClusterResponse, DeleteClusterRequest, DeleteClusterResponse, DescribeClustersRequest,
    DescribeClustersResponse, ListClustersRequest, ListClustersResponse,
    PutClusterCapacityProvidersRequest, PutClusterCapacityProvidersResponse, UpdateClusterRequest,
    UpdateClusterResponse, UpdateClusterSettingsRequest, UpdateClusterSettingsResponse,
};

/// The cluster every operation uses when none is named.
pub const DEFAULT_CLUSTER: &str = "default";

/// Capacity providers that exist in every account (ECS's Fargate ones).
const BUILTIN_CAPACITY_PROVIDERS: &[&str] = &["FARGATE", "FARGATE_SPOT"];

/// ECS's rule for cluster names: up to 255 letters, numbers, underscores and hyphens.
pub fn validate_name(name: &str) -> Result<(), EcsError> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(EcsError::invalid(
            "Cluster name must be 1 to 255 characters long and may contain only letters (uppercase and lowercase), numbers, underscores and hyphens.",
        ))
    }
}

fn validate_settings(settings: &[ClusterSetting]) -> Result<(), EcsError> {
    for s in settings {
        match (&s.name, s.value.as_deref()) {
            (
                Some(ClusterSettingName::ContainerInsights),
                Some("enabled" | "disabled" | "enhanced"),
            ) => {}
            (Some(ClusterSettingName::ContainerInsights), v) => {
                return Err(EcsError::invalid(format!(
                    "Invalid value '{}' for setting containerInsights. Valid values are enabled, disabled and enhanced.",
                    v.unwrap_or("")
                )));
            }
            (None, _) => return Err(EcsError::invalid("Cluster setting name is required.")),
            (Some(other), _) => {
                return Err(EcsError::invalid(format!(
                    "Unsupported cluster setting '{other}'."
                )));
            }
        }
    }
    Ok(())
}

fn merge_settings(current: &mut Vec<ClusterSetting>, new: Vec<ClusterSetting>) {
    for s in new {
        match current.iter_mut().find(|c| c.name == s.name) {
            Some(c) => c.value = s.value,
            None => current.push(s),
        }
    }
}

fn default_settings() -> Vec<ClusterSetting> {
    vec![ClusterSetting {
        name: Some(ClusterSettingName::ContainerInsights),
        value: Some("disabled".into()),
    }]
}

/// Find an ACTIVE cluster by name or ARN (`None` = the default cluster).
pub fn find_active<'p>(
    p: &'p Partition,
    ctx: &Ctx<'_>,
    reference: Option<&str>,
) -> Result<&'p ClusterRecord, EcsError> {
    let name = arn::cluster_name(&ctx.partition, reference.unwrap_or(DEFAULT_CLUSTER))
        .ok_or(EcsError::ClusterNotFound)?;
    p.clusters
        .get(name)
        .filter(|c| c.cluster.status.as_deref() == Some("ACTIVE"))
        .ok_or(EcsError::ClusterNotFound)
}

/// The cluster as the API shows it: stored fields plus live counts, with the optional parts
/// (`include`) filled in or left out as ECS does.
pub fn view(p: &Partition, rec: &ClusterRecord, include: &[ClusterField]) -> ecs::Cluster {
    let mut c = rec.cluster.clone();
    let name = c.cluster_name.clone().unwrap_or_default();
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    let tasks = || p.tasks.values().filter(|t| t.cluster() == name);
    let running = tasks()
        .filter(|t| t.last_status() == Some("RUNNING"))
        .count();
    let pending = tasks()
        .filter(|t| {
            matches!(
                t.last_status(),
                Some("PROVISIONING" | "PENDING" | "ACTIVATING")
            )
        })
        .count();
    let instances = p
        .instances
        .values()
        .filter(|i| {
            i.cluster == name && matches!(i.instance.status.as_deref(), Some("ACTIVE" | "DRAINING"))
        })
        .count();
    c.registered_container_instances_count = Some(count(instances));
    c.running_tasks_count = Some(count(running));
    c.pending_tasks_count = Some(count(pending));
    c.active_services_count = Some(count(crate::service::active_in_cluster(p, &name)));
    c.statistics = Some(if include.contains(&ClusterField::Statistics) {
        [
            "runningEC2TasksCount",
            "runningFargateTasksCount",
            "pendingEC2TasksCount",
            "pendingFargateTasksCount",
            "runningExternalTasksCount",
            "pendingExternalTasksCount",
            "activeEC2ServiceCount",
            "activeFargateServiceCount",
            "drainingEC2ServiceCount",
            "drainingFargateServiceCount",
            "activeExternalServiceCount",
            "drainingExternalServiceCount",
        ]
        .into_iter()
        .map(|name| ecs::KeyValuePair {
            name: Some(name.into()),
            value: Some("0".into()),
        })
        .collect()
    } else {
        vec![]
    });
    if !include.contains(&ClusterField::Tags) {
        c.tags = Some(vec![]);
    }
    if !include.contains(&ClusterField::Settings) {
        c.settings = None;
    }
    if !include.contains(&ClusterField::Configurations) {
        c.configuration = None;
    }
    c
}

/// CreateCluster. Idempotent as ECS is: creating an ACTIVE cluster again returns it.
pub fn create(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    req: CreateClusterRequest,
) -> Result<CreateClusterResponse, EcsError> {
    let name = req
        .cluster_name
        .clone()
        .unwrap_or_else(|| DEFAULT_CLUSTER.to_string());
    validate_name(&name)?;
    let new_tags = req.tags.clone().unwrap_or_default();
    tags::validate(&new_tags)?;
    let settings = req.settings.clone().unwrap_or_default();
    validate_settings(&settings)?;
    validate_capacity_providers(req.capacity_providers.as_deref().unwrap_or_default())?;

    if let Some(existing) = p.clusters.get(&name)
        && existing.cluster.status.as_deref() == Some("ACTIVE")
    {
        let all = [
            ClusterField::Tags,
            ClusterField::Settings,
            ClusterField::Configurations,
        ];
        return Ok(CreateClusterResponse {
            cluster: Some(view(p, existing, &all)),
        });
    }
    let rec = ClusterRecord {
        cluster: new_cluster(ctx, &name, req),
        agent_tokens: Vec::new(),
    };
    ctx.put(Kind::Cluster, &keys::cluster(&name), &rec);
    let all = [
        ClusterField::Tags,
        ClusterField::Settings,
        ClusterField::Configurations,
    ];
    let cluster = view(p, &rec, &all);
    p.clusters.insert(name, rec);
    Ok(CreateClusterResponse {
        cluster: Some(cluster),
    })
}

fn new_cluster(ctx: &Ctx<'_>, name: &str, req: CreateClusterRequest) -> ecs::Cluster {
    let mut settings = default_settings();
    merge_settings(&mut settings, req.settings.unwrap_or_default());
    ecs::Cluster {
        cluster_arn: Some(arn::cluster(&ctx.partition, name)),
        cluster_name: Some(name.to_string()),
        status: Some("ACTIVE".into()),
        tags: Some(req.tags.unwrap_or_default()),
        settings: Some(settings),
        configuration: req.configuration,
        capacity_providers: Some(req.capacity_providers.unwrap_or_default()),
        default_capacity_provider_strategy: Some(
            req.default_capacity_provider_strategy.unwrap_or_default(),
        ),
        service_connect_defaults: req.service_connect_defaults.map(|d| {
            ecs::ClusterServiceConnectDefaults {
                namespace: d.namespace,
            }
        }),
        ..Default::default()
    }
}

/// The `default` cluster, created on first start of `berth up`. Returns whether it was new.
pub fn ensure_default(p: &mut Partition, ctx: &mut Ctx<'_>) -> bool {
    if p.clusters
        .get(DEFAULT_CLUSTER)
        .is_some_and(|c| c.cluster.status.as_deref() == Some("ACTIVE"))
    {
        return false;
    }
    create(p, ctx, CreateClusterRequest::default()).is_ok()
}

/// DescribeClusters: found clusters (INACTIVE ones included) and `MISSING` failures.
pub fn describe(
    p: &Partition,
    ctx: &Ctx<'_>,
    req: DescribeClustersRequest,
) -> Result<DescribeClustersResponse, EcsError> {
    let refs = req
        .clusters
        .unwrap_or_else(|| vec![DEFAULT_CLUSTER.to_string()]);
    if refs.len() > 100 {
        return Err(EcsError::invalid("clusters can have at most 100 items."));
    }
    let include = req.include.unwrap_or_default();
    let mut clusters = Vec::new();
    let mut failures = Vec::new();
    for r in refs {
        let found = arn::cluster_name(&ctx.partition, &r).and_then(|n| p.clusters.get(n));
        match found {
            Some(rec) => clusters.push(view(p, rec, &include)),
            None => {
                let arn_text = if r.starts_with("arn:") {
                    r.clone()
                } else {
                    arn::cluster(&ctx.partition, &r)
                };
                failures.push(ecs::Failure {
                    arn: Some(arn_text),
                    reason: Some("MISSING".into()),
                    detail: None,
                });
            }
        }
    }
    Ok(DescribeClustersResponse {
        clusters: Some(clusters),
        failures: Some(failures),
    })
}

/// ListClusters: ACTIVE clusters in ARN order, paged.
pub fn list(
    p: &Partition,
    _ctx: &Ctx<'_>,
    req: ListClustersRequest,
) -> Result<ListClustersResponse, EcsError> {
    let limit = pagination::max_results(req.max_results, 100)?;
    let items: Vec<(String, String)> = p
        .clusters
        .values()
        .filter(|c| c.cluster.status.as_deref() == Some("ACTIVE"))
        .filter_map(|c| c.cluster.cluster_arn.clone())
        .map(|a| (a.clone(), a))
        .collect();
    let (arns, next) = pagination::page(items, req.next_token.as_deref(), limit)?;
    Ok(ListClustersResponse {
        cluster_arns: Some(arns),
        next_token: next,
    })
}

/// What else in the partition still uses a cluster; DeleteCluster refuses while any does.
#[derive(Debug, Default, Clone, Copy)]
pub struct ClusterUse {
    /// Registered (ACTIVE or DRAINING) container instances.
    pub container_instances: usize,
    /// ACTIVE or DRAINING services.
    pub services: usize,
    /// Tasks not yet STOPPED.
    pub tasks: usize,
}

/// What in partition `p` still uses cluster `name`.
pub fn usage(p: &Partition, name: &str) -> ClusterUse {
    ClusterUse {
        container_instances: p
            .instances
            .values()
            .filter(|i| {
                i.cluster == name
                    && matches!(i.instance.status.as_deref(), Some("ACTIVE" | "DRAINING"))
            })
            .count(),
        services: crate::service::count_in_cluster(p, name),
        tasks: p
            .tasks
            .values()
            .filter(|t| t.cluster() == name && !t.is_stopped())
            .count(),
    }
}

/// DeleteCluster: refuses while instances, services or tasks remain; the cluster becomes
/// INACTIVE and stays describable.
pub fn delete(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    req: DeleteClusterRequest,
    usage: ClusterUse,
) -> Result<DeleteClusterResponse, EcsError> {
    let reference = req.cluster.unwrap_or_default();
    let name = find_active(p, ctx, Some(&reference))?
        .cluster
        .cluster_name
        .clone()
        .unwrap_or_default();
    if usage.container_instances > 0 {
        return Err(EcsError::ClusterContainsContainerInstances);
    }
    if usage.services > 0 {
        return Err(EcsError::ClusterContainsServices);
    }
    if usage.tasks > 0 {
        return Err(EcsError::ClusterContainsTasks);
    }
    let rec = p.clusters.get_mut(&name).ok_or(EcsError::ClusterNotFound)?;
    rec.cluster.status = Some("INACTIVE".into());
    let saved = rec.clone();
    ctx.put(Kind::Cluster, &keys::cluster(&name), &saved);
    let all = [
        ClusterField::Tags,
        ClusterField::Settings,
        ClusterField::Configurations,
    ];
    Ok(DeleteClusterResponse {
        cluster: Some(view(p, &saved, &all)),
    })
}

fn update_record(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    reference: &str,
    change: impl FnOnce(&mut ecs::Cluster),
) -> Result<ecs::Cluster, EcsError> {
    let name = find_active(p, ctx, Some(reference))?
        .cluster
        .cluster_name
        .clone()
        .unwrap_or_default();
    let rec = p.clusters.get_mut(&name).ok_or(EcsError::ClusterNotFound)?;
    change(&mut rec.cluster);
    let saved = rec.clone();
    ctx.put(Kind::Cluster, &keys::cluster(&name), &saved);
    let all = [
        ClusterField::Tags,
        ClusterField::Settings,
        ClusterField::Configurations,
    ];
    Ok(view(p, &saved, &all))
}

/// UpdateCluster: settings, configuration and Service Connect defaults.
pub fn update(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    req: UpdateClusterRequest,
) -> Result<UpdateClusterResponse, EcsError> {
    let reference = req.cluster.clone().unwrap_or_default();
    let settings = req.settings.clone().unwrap_or_default();
    validate_settings(&settings)?;
    let cluster = update_record(p, ctx, &reference, |c| {
        let mut current = c.settings.take().unwrap_or_else(default_settings);
        merge_settings(&mut current, settings);
        c.settings = Some(current);
        if let Some(conf) = req.configuration {
            c.configuration = Some(conf);
        }
        if let Some(d) = req.service_connect_defaults {
            c.service_connect_defaults = Some(ecs::ClusterServiceConnectDefaults {
                namespace: d.namespace,
            });
        }
    })?;
    Ok(UpdateClusterResponse {
        cluster: Some(cluster),
    })
}

/// UpdateClusterSettings.
pub fn update_settings(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    req: UpdateClusterSettingsRequest,
) -> Result<UpdateClusterSettingsResponse, EcsError> {
    let reference = req.cluster.clone().unwrap_or_default();
    let settings = req.settings.clone().unwrap_or_default();
    validate_settings(&settings)?;
    let cluster = update_record(p, ctx, &reference, |c| {
        let mut current = c.settings.take().unwrap_or_else(default_settings);
        merge_settings(&mut current, settings);
        c.settings = Some(current);
    })?;
    Ok(UpdateClusterSettingsResponse {
        cluster: Some(cluster),
    })
}

fn validate_capacity_providers(names: &[String]) -> Result<(), EcsError> {
    for n in names {
        if !BUILTIN_CAPACITY_PROVIDERS.contains(&n.as_str()) {
            return Err(EcsError::invalid(format!(
                "The specified capacity provider '{n}' does not exist. Berth provides FARGATE and FARGATE_SPOT."
            )));
        }
    }
    Ok(())
}

/// PutClusterCapacityProviders (the built-in FARGATE providers only).
pub fn put_capacity_providers(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    req: PutClusterCapacityProvidersRequest,
) -> Result<PutClusterCapacityProvidersResponse, EcsError> {
    let providers = req.capacity_providers.clone().unwrap_or_default();
    validate_capacity_providers(&providers)?;
    let strategy = req
        .default_capacity_provider_strategy
        .clone()
        .unwrap_or_default();
    for item in &strategy {
        let name = item.capacity_provider.as_deref().unwrap_or_default();
        if !providers.iter().any(|p| p == name) {
            return Err(EcsError::invalid(format!(
                "The specified capacity provider strategy cannot contain a capacity provider that is not associated with the cluster. Associate the capacity provider '{name}' with the cluster first."
            )));
        }
    }
    let reference = req.cluster.clone().unwrap_or_default();
    let cluster = update_record(p, ctx, &reference, |c| {
        c.capacity_providers = Some(providers);
        c.default_capacity_provider_strategy = Some(strategy);
    })?;
    Ok(PutClusterCapacityProvidersResponse {
        cluster: Some(cluster),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PartitionKey;
    use crate::state::test_rng;

    fn ctx(rng: &mut rand::rngs::StdRng) -> Ctx<'_> {
        Ctx {
            now_ms: 1_700_000_000_000,
            partition: PartitionKey {
                account: "000000000000".into(),
                region: "us-east-1".into(),
            },
            principal: "root".into(),
            rng,
            mutations: vec![],
            woken: vec![],
            token_key: crate::pagination::TokenKey::default(),
        }
    }

    #[test]
    fn create_is_idempotent_and_delete_leaves_inactive() {
        let mut rng = test_rng();
        let mut c = ctx(&mut rng);
        let mut p = Partition::default();
        let req = CreateClusterRequest {
            cluster_name: Some("web".into()),
            ..Default::default()
        };
        let a = create(&mut p, &mut c, req.clone())
            .unwrap()
            .cluster
            .unwrap();
        assert_eq!(c.mutations.len(), 1);
        let b = create(&mut p, &mut c, req).unwrap().cluster.unwrap();
        assert_eq!(a.cluster_arn, b.cluster_arn);
        assert_eq!(c.mutations.len(), 1, "second create writes nothing");
        let del = DeleteClusterRequest {
            cluster: Some("web".into()),
        };
        let gone = delete(&mut p, &mut c, del.clone(), ClusterUse::default()).unwrap();
        assert_eq!(gone.cluster.unwrap().status.as_deref(), Some("INACTIVE"));
        assert_eq!(
            delete(&mut p, &mut c, del, ClusterUse::default()),
            Err(EcsError::ClusterNotFound)
        );
        let listed = list(&p, &c, ListClustersRequest::default()).unwrap();
        assert!(listed.cluster_arns.unwrap().is_empty());
    }

    #[test]
    fn delete_refuses_while_in_use() {
        let mut rng = test_rng();
        let mut c = ctx(&mut rng);
        let mut p = Partition::default();
        create(&mut p, &mut c, CreateClusterRequest::default()).unwrap();
        let del = DeleteClusterRequest {
            cluster: Some("default".into()),
        };
        let busy = ClusterUse {
            tasks: 1,
            ..Default::default()
        };
        assert_eq!(
            delete(&mut p, &mut c, del.clone(), busy),
            Err(EcsError::ClusterContainsTasks)
        );
        let busy = ClusterUse {
            services: 1,
            ..Default::default()
        };
        assert_eq!(
            delete(&mut p, &mut c, del.clone(), busy),
            Err(EcsError::ClusterContainsServices)
        );
        let busy = ClusterUse {
            container_instances: 1,
            ..Default::default()
        };
        assert_eq!(
            delete(&mut p, &mut c, del, busy),
            Err(EcsError::ClusterContainsContainerInstances)
        );
    }

    #[test]
    fn names_are_checked() {
        for bad in ["", "has space", "slash/no", &"x".repeat(256)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        for good in ["a", "my-cluster_2", &"x".repeat(255)] {
            assert!(validate_name(good).is_ok(), "{good:?}");
        }
    }
}
