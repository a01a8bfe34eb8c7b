//! Tags: ECS's limits, and TagResource / UntagResource / ListTagsForResource over every
//! taggable resource (clusters and task definitions so far).

use crate::state::{Ctx, Kind, Partition, keys};
use crate::{arn, task_definition};
use berth_api::EcsError;
use berth_api::ecs::{
    ListTagsForResourceRequest, ListTagsForResourceResponse, Tag, TagResourceRequest,
    TagResourceResponse, UntagResourceRequest, UntagResourceResponse,
};

/// User tags a resource may carry (`aws:` tags do not count).
pub const MAX_TAGS: usize = 50;

fn is_reserved(key: &str) -> bool {
    key.len() >= 4 && key[..4].eq_ignore_ascii_case("aws:")
}

/// Check a tag list against ECS's rules: keys 1-128 characters, values up to 256, no
/// duplicate keys, no `aws:` prefix (reserved for AWS), at most 50.
pub fn validate(tags: &[Tag]) -> Result<(), EcsError> {
    let mut seen = std::collections::BTreeSet::new();
    for t in tags {
        let key = t.key.as_deref().unwrap_or_default();
        if key.is_empty() || key.chars().count() > 128 {
            return Err(EcsError::invalid(
                "Tag keys must be between 1 and 128 characters long.",
            ));
        }
        if t.value.as_deref().unwrap_or_default().chars().count() > 256 {
            return Err(EcsError::invalid(format!(
                "The value of tag '{key}' is longer than 256 characters."
            )));
        }
        if is_reserved(key) {
            return Err(EcsError::invalid(format!(
                "Tag key '{key}' uses the reserved prefix 'aws:'. Keys and values prefixed with 'aws:' are reserved for AWS use."
            )));
        }
        if !seen.insert(key.to_string()) {
            return Err(EcsError::invalid(format!("Duplicate tag key '{key}'.")));
        }
    }
    if seen.len() > MAX_TAGS {
        return Err(EcsError::invalid(format!(
            "A resource can have at most {MAX_TAGS} tags; {} were given.",
            seen.len()
        )));
    }
    Ok(())
}

/// `current` with `new` merged in (same key replaces the value), checked against the limit.
pub fn merge(current: &[Tag], new: &[Tag]) -> Result<Vec<Tag>, EcsError> {
    validate(new)?;
    let mut out = current.to_vec();
    for t in new {
        match out.iter_mut().find(|c| c.key == t.key) {
            Some(c) => c.value = t.value.clone(),
            None => out.push(t.clone()),
        }
    }
    let user = out
        .iter()
        .filter(|t| !is_reserved(t.key.as_deref().unwrap_or_default()))
        .count();
    if user > MAX_TAGS {
        return Err(EcsError::invalid(format!(
            "A resource can have at most {MAX_TAGS} tags; this request would leave {user}."
        )));
    }
    Ok(out)
}

/// A taggable resource, resolved from its ARN.
enum Target {
    Cluster(String),
    TaskDefinition(String, i32),
}

fn resolve(p: &Partition, ctx: &Ctx<'_>, resource_arn: &str) -> Result<Target, EcsError> {
    let parsed = arn::parse(resource_arn).ok_or_else(|| {
        EcsError::invalid(format!(
            "Invalid resource ARN '{resource_arn}'. Specify an ECS resource ARN."
        ))
    })?;
    if parsed.region != ctx.partition.region || parsed.account != ctx.partition.account {
        return Err(EcsError::ResourceNotFound(format!(
            "The specified resource '{resource_arn}' was not found."
        )));
    }
    match parsed.resource_type {
        "cluster" => {
            let active = p
                .clusters
                .get(parsed.resource)
                .is_some_and(|c| c.cluster.status.as_deref() == Some("ACTIVE"));
            if active {
                Ok(Target::Cluster(parsed.resource.to_string()))
            } else {
                Err(EcsError::ClusterNotFound)
            }
        }
        "task-definition" => {
            let (family, revision) = parsed
                .resource
                .rsplit_once(':')
                .and_then(|(f, r)| r.parse::<i32>().ok().map(|r| (f, r)))
                .ok_or_else(|| {
                    EcsError::invalid(format!("Invalid task definition ARN '{resource_arn}'."))
                })?;
            let exists = p.families.get(family).is_some_and(|f| {
                f.revisions
                    .get(&revision)
                    .is_some_and(|r| task_definition::status_of(r) != "DELETE_IN_PROGRESS")
            });
            if exists {
                Ok(Target::TaskDefinition(family.to_string(), revision))
            } else {
                Err(EcsError::client("Unable to describe task definition."))
            }
        }
        other => Err(EcsError::invalid(format!(
            "Resources of type '{other}' cannot be tagged in Berth yet."
        ))),
    }
}

fn current_tags(p: &Partition, target: &Target) -> Vec<Tag> {
    match target {
        Target::Cluster(name) => p
            .clusters
            .get(name)
            .and_then(|c| c.cluster.tags.clone())
            .unwrap_or_default(),
        Target::TaskDefinition(family, rev) => p
            .families
            .get(family)
            .and_then(|f| f.revisions.get(rev))
            .map(|r| r.tags.clone())
            .unwrap_or_default(),
    }
}

fn store_tags(p: &mut Partition, ctx: &mut Ctx<'_>, target: &Target, tags: Vec<Tag>) {
    match target {
        Target::Cluster(name) => {
            if let Some(c) = p.clusters.get_mut(name) {
                c.cluster.tags = Some(tags);
                let saved = c.clone();
                ctx.put(Kind::Cluster, &keys::cluster(name), &saved);
            }
        }
        Target::TaskDefinition(family, rev) => {
            if let Some(r) = p
                .families
                .get_mut(family)
                .and_then(|f| f.revisions.get_mut(rev))
            {
                r.tags = tags;
                let saved = r.clone();
                ctx.put(
                    Kind::TaskDefinition,
                    &keys::task_definition(family, *rev),
                    &saved,
                );
            }
        }
    }
}

/// TagResource.
pub fn tag_resource(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    req: TagResourceRequest,
) -> Result<TagResourceResponse, EcsError> {
    let target = resolve(p, ctx, req.resource_arn.as_deref().unwrap_or_default())?;
    let merged = merge(
        &current_tags(p, &target),
        req.tags.as_deref().unwrap_or_default(),
    )?;
    store_tags(p, ctx, &target, merged);
    Ok(TagResourceResponse {})
}

/// UntagResource.
pub fn untag_resource(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    req: UntagResourceRequest,
) -> Result<UntagResourceResponse, EcsError> {
    let target = resolve(p, ctx, req.resource_arn.as_deref().unwrap_or_default())?;
    let remove = req.tag_keys.unwrap_or_default();
    let mut tags = current_tags(p, &target);
    tags.retain(|t| !remove.iter().any(|k| Some(k.as_str()) == t.key.as_deref()));
    store_tags(p, ctx, &target, tags);
    Ok(UntagResourceResponse {})
}

/// ListTagsForResource.
pub fn list_tags(
    p: &Partition,
    ctx: &Ctx<'_>,
    req: ListTagsForResourceRequest,
) -> Result<ListTagsForResourceResponse, EcsError> {
    let target = resolve(p, ctx, req.resource_arn.as_deref().unwrap_or_default())?;
    Ok(ListTagsForResourceResponse {
        tags: Some(current_tags(p, &target)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(k: &str, v: &str) -> Tag {
        Tag {
            key: Some(k.into()),
            value: Some(v.into()),
        }
    }

    #[test]
    fn limits() {
        assert!(validate(&[tag("a", "b")]).is_ok());
        assert!(validate(&[tag("", "b")]).is_err());
        assert!(validate(&[tag(&"k".repeat(129), "b")]).is_err());
        assert!(validate(&[tag("k", &"v".repeat(257))]).is_err());
        assert!(validate(&[tag("aws:x", "b")]).is_err());
        assert!(validate(&[tag("AWS:x", "b")]).is_err());
        assert!(validate(&[tag("a", "1"), tag("a", "2")]).is_err());
        let fifty: Vec<Tag> = (0..50).map(|i| tag(&format!("k{i}"), "v")).collect();
        assert!(validate(&fifty).is_ok());
        assert!(merge(&fifty, &[tag("k0", "new")]).is_ok());
        assert!(merge(&fifty, &[tag("k50", "v")]).is_err());
    }

    #[test]
    fn merge_replaces_values() {
        let merged = merge(&[tag("a", "1"), tag("b", "2")], &[tag("a", "3")]).unwrap();
        assert_eq!(merged, vec![tag("a", "3"), tag("b", "2")]);
    }
}
