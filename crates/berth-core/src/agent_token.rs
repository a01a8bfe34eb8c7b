//! Per-cluster agent registration tokens.
//!
//! An agent joins a cluster by presenting one of the cluster's registration tokens; once
//! registered it gets a credential of its own (the instance token), which is all it needs to
//! sync and to rejoin as the same instance. Tokens are created by the server (through the
//! signed `/_berth/admin/v1/agent-tokens` endpoint and `berth agent-token`), shown once, and
//! only their SHA-256 is stored; rotating creates a new token and revokes every older one.
//! Revoking a token stops new registrations with it; instances that already joined keep their
//! own credentials until they are deregistered.
//!
//! Token shape: `bat_<16 hex id>_<64 hex secret>` — the id finds the record, the whole token
//! is hashed and compared in constant time.

use crate::cluster;
use crate::container_instance::constant_time_eq;
use crate::state::{ClusterRecord, Ctx, Kind, Partition, keys};
use berth_api::EcsError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Most token records a cluster keeps (revoked ones are dropped, oldest first, beyond this).
pub const MAX_RECORDS: usize = 50;
/// Most live (unrevoked) tokens a cluster may have at once.
pub const MAX_LIVE: usize = 10;

/// One registration token as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentTokenRecord {
    /// Public id (16 hex digits), part of the token.
    pub id: String,
    /// SHA-256 of the whole token, hex.
    pub sha256: String,
    /// When it was created (ms since the epoch).
    pub created_at_ms: i64,
    /// Who created it (the signing principal).
    pub created_by: String,
    /// When it was revoked, if it was.
    #[serde(default)]
    pub revoked_at_ms: Option<i64>,
}

/// What the admin API shows of a token (never the secret, except once at creation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenView {
    /// Public id.
    pub token_id: String,
    /// The cluster's ARN.
    pub cluster_arn: String,
    /// `ACTIVE` or `REVOKED`.
    pub status: String,
    /// Creation time, epoch seconds.
    pub created_at: f64,
    /// Creator.
    pub created_by: String,
    /// Revocation time, epoch seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<f64>,
    /// The token itself: present only in the answer that created it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn id_of(token: &str) -> Option<&str> {
    let rest = token.strip_prefix("bat_")?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 16 && secret.len() == 64).then_some(id)
}

#[allow(clippy::cast_precision_loss)]
fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

fn view(c: &ClusterRecord, r: &AgentTokenRecord, token: Option<String>) -> TokenView {
    TokenView {
        token_id: r.id.clone(),
        cluster_arn: c.cluster.cluster_arn.clone().unwrap_or_default(),
        status: if r.revoked_at_ms.is_some() {
            "REVOKED"
        } else {
            "ACTIVE"
        }
        .into(),
        created_at: secs(r.created_at_ms),
        created_by: r.created_by.clone(),
        revoked_at: r.revoked_at_ms.map(secs),
        token,
    }
}

fn cluster_name(p: &Partition, ctx: &Ctx<'_>, reference: &str) -> Result<String, EcsError> {
    Ok(cluster::find_active(p, ctx, Some(reference))?
        .cluster
        .cluster_name
        .clone()
        .unwrap_or_default())
}

fn save(p: &Partition, ctx: &mut Ctx<'_>, name: &str) {
    if let Some(rec) = p.clusters.get(name) {
        ctx.put(Kind::Cluster, &keys::cluster(name), rec);
    }
}

fn hex(ctx: &mut Ctx<'_>, bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    ctx.rng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Create a token for the cluster; the answer is the only place its secret ever appears.
pub fn create(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    reference: &str,
) -> Result<TokenView, EcsError> {
    let name = cluster_name(p, ctx, reference)?;
    let live = p.clusters[&name]
        .agent_tokens
        .iter()
        .filter(|t| t.revoked_at_ms.is_none())
        .count();
    if live >= MAX_LIVE {
        return Err(EcsError::LimitExceeded(format!(
            "The cluster already has {MAX_LIVE} active agent registration tokens. Revoke one, or rotate."
        )));
    }
    let id = hex(ctx, 8);
    let token = format!("bat_{id}_{}", hex(ctx, 32));
    let record = AgentTokenRecord {
        id,
        sha256: hash(&token),
        created_at_ms: ctx.now_ms,
        created_by: ctx.principal.to_string(),
        revoked_at_ms: None,
    };
    let Some(rec) = p.clusters.get_mut(&name) else {
        return Err(EcsError::ClusterNotFound);
    };
    rec.agent_tokens.push(record.clone());
    while rec.agent_tokens.len() > MAX_RECORDS {
        match rec
            .agent_tokens
            .iter()
            .position(|t| t.revoked_at_ms.is_some())
        {
            Some(i) => {
                rec.agent_tokens.remove(i);
            }
            None => break,
        }
    }
    let shown = view(rec, &record, Some(token));
    save(p, ctx, &name);
    Ok(shown)
}

/// Create a new token and revoke every other one.
pub fn rotate(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    reference: &str,
) -> Result<TokenView, EcsError> {
    let name = cluster_name(p, ctx, reference)?;
    let now = ctx.now_ms;
    if let Some(rec) = p.clusters.get_mut(&name) {
        for t in &mut rec.agent_tokens {
            t.revoked_at_ms.get_or_insert(now);
        }
    }
    create(p, ctx, &name)
}

/// Revoke one token.
pub fn revoke(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    reference: &str,
    token_id: &str,
) -> Result<TokenView, EcsError> {
    let name = cluster_name(p, ctx, reference)?;
    let now = ctx.now_ms;
    let Some(rec) = p.clusters.get_mut(&name) else {
        return Err(EcsError::ClusterNotFound);
    };
    let Some(t) = rec.agent_tokens.iter_mut().find(|t| t.id == token_id) else {
        return Err(EcsError::InvalidParameter(format!(
            "The cluster has no agent registration token with id {token_id}."
        )));
    };
    t.revoked_at_ms.get_or_insert(now);
    let t = t.clone();
    let shown = view(rec, &t, None);
    save(p, ctx, &name);
    Ok(shown)
}

/// The cluster's tokens, oldest first (without secrets).
pub fn list(p: &Partition, ctx: &Ctx<'_>, reference: &str) -> Result<Vec<TokenView>, EcsError> {
    let name = cluster_name(p, ctx, reference)?;
    let rec = &p.clusters[&name];
    Ok(rec
        .agent_tokens
        .iter()
        .map(|t| view(rec, t, None))
        .collect())
}

/// Whether `token` is a live registration token of the cluster named `name`.
pub fn accepts(p: &Partition, name: &str, token: &str) -> bool {
    let Some(id) = id_of(token) else {
        return false;
    };
    let Some(rec) = p.clusters.get(name) else {
        return false;
    };
    let presented = hash(token);
    rec.agent_tokens.iter().any(|t| {
        t.id == id
            && t.revoked_at_ms.is_none()
            && constant_time_eq(t.sha256.as_bytes(), presented.as_bytes())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PartitionKey;
    use crate::state::World;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn world_with(cluster: &str) -> (World, PartitionKey, StdRng) {
        let mut world = World::default();
        let key = PartitionKey {
            account: "123456789012".into(),
            region: "us-east-1".into(),
        };
        let mut rng = StdRng::seed_from_u64(7);
        let mut ctx = Ctx::new(1_000, key.clone(), "admin", &mut rng);
        let body = format!(r#"{{"clusterName":"{cluster}"}}"#);
        crate::ecs::handle(&mut world, &mut ctx, "CreateCluster", body.as_bytes()).unwrap();
        (world, key, rng)
    }

    #[test]
    fn a_created_token_is_accepted_for_its_cluster_only_until_revoked() {
        let (mut world, key, mut rng) = world_with("c1");
        let mut ctx = Ctx::new(2_000, key.clone(), "admin", &mut rng);
        let p = world.partition(&key);
        let made = create(p, &mut ctx, "c1").unwrap();
        let token = made.token.clone().unwrap();
        assert!(token.starts_with("bat_"));
        assert_eq!(made.status, "ACTIVE");
        assert!(accepts(p, "c1", &token));
        assert!(!accepts(p, "default", &token));
        assert!(!accepts(p, "c1", &token.replace('a', "b")));
        assert!(!accepts(p, "c1", "bat_0000000000000000_"));
        assert!(!accepts(p, "c1", ""));
        // Only the hash is stored, and the record is persisted.
        let stored = &p.clusters["c1"].agent_tokens[0];
        assert!(!stored.sha256.contains(&token[21..]));
        assert_eq!(ctx.mutations.len(), 1);
        // Listing never shows the secret.
        assert!(list(p, &ctx, "c1").unwrap()[0].token.is_none());
        let revoked = revoke(p, &mut ctx, "c1", &made.token_id).unwrap();
        assert_eq!(revoked.status, "REVOKED");
        assert!(!accepts(p, "c1", &token));
    }

    #[test]
    fn rotation_revokes_every_older_token() {
        let (mut world, key, mut rng) = world_with("c1");
        let mut ctx = Ctx::new(2_000, key.clone(), "admin", &mut rng);
        let p = world.partition(&key);
        let a = create(p, &mut ctx, "c1").unwrap().token.unwrap();
        let b = create(p, &mut ctx, "c1").unwrap().token.unwrap();
        let c = rotate(p, &mut ctx, "c1").unwrap().token.unwrap();
        assert!(!accepts(p, "c1", &a));
        assert!(!accepts(p, "c1", &b));
        assert!(accepts(p, "c1", &c));
        let statuses: Vec<String> = list(p, &ctx, "c1")
            .unwrap()
            .into_iter()
            .map(|t| t.status)
            .collect();
        assert_eq!(statuses, ["REVOKED", "REVOKED", "ACTIVE"]);
    }

    #[test]
    fn limits_and_unknown_references_are_refused() {
        let (mut world, key, mut rng) = world_with("c1");
        let mut ctx = Ctx::new(2_000, key.clone(), "admin", &mut rng);
        let p = world.partition(&key);
        for _ in 0..MAX_LIVE {
            create(p, &mut ctx, "c1").unwrap();
        }
        assert!(matches!(
            create(p, &mut ctx, "c1"),
            Err(EcsError::LimitExceeded(_))
        ));
        assert!(matches!(
            create(p, &mut ctx, "nope"),
            Err(EcsError::ClusterNotFound)
        ));
        assert!(matches!(
            revoke(p, &mut ctx, "c1", "ffffffffffffffff"),
            Err(EcsError::InvalidParameter(_))
        ));
        // Revoked records are pruned beyond MAX_RECORDS.
        for _ in 0..MAX_RECORDS {
            rotate(p, &mut ctx, "c1").unwrap();
        }
        assert!(p.clusters["c1"].agent_tokens.len() <= MAX_RECORDS);
    }
}
