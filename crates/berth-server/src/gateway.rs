//! The agent gateway: registration and the level-triggered sync (reports in, desired state
//! out, long-polled). Served in-process to `berth up`'s agent through [`Gateway`] and over
//! HTTP (`POST /_berth/agent/v1/{register,sync}`) to remote agents: the same code path.

use crate::{Inner, Shared, now_ms};
use berth_core::agent_protocol::{
    AgentError, PROTOCOL_VERSION, RegisterRequest, RegisterResponse, SyncRequest, SyncResponse,
};
use berth_core::container_instance::{self, SYNC_INTERVAL_MS};
use berth_core::state::Ctx;
use berth_core::{PartitionKey, arn, task};
use std::sync::Arc;
use std::time::Duration;

/// A handle to the gateway of a running server (cheap to clone).
#[derive(Clone)]
pub struct Gateway {
    pub(crate) shared: Arc<Shared>,
}

impl Gateway {
    /// The registration token agents must present.
    pub fn agent_token(&self) -> &str {
        &self.shared.config.agent_token
    }

    /// Register (or re-register) an agent as a container instance.
    pub async fn register(&self, req: RegisterRequest) -> Result<RegisterResponse, AgentError> {
        register(&self.shared, req).await
    }

    /// One sync exchange.
    pub async fn sync(&self, req: SyncRequest) -> Result<SyncResponse, AgentError> {
        sync(&self.shared, req).await
    }
}

fn partition_of(shared: &Shared, region: Option<&str>) -> PartitionKey {
    PartitionKey {
        account: shared.config.account_id.clone(),
        region: region.map_or_else(|| shared.config.region.clone(), str::to_string),
    }
}

/// Commit `ctx`'s mutations (if any) and wake the agents whose desired state changed.
async fn commit(wait: Option<tokio::sync::oneshot::Receiver<()>>) -> Result<(), AgentError> {
    if let Some(w) = wait {
        w.await
            .map_err(|_| AgentError::Unavailable("the server is shutting down".into()))?;
    }
    Ok(())
}

pub(crate) fn finish_ctx(
    shared: &Shared,
    ctx: &mut Ctx<'_>,
) -> Option<tokio::sync::oneshot::Receiver<()>> {
    if !ctx.woken.is_empty() {
        shared.wake(&ctx.woken);
        ctx.woken.clear();
    }
    if ctx.mutations.is_empty() {
        None
    } else {
        Some(shared.commits.submit(std::mem::take(&mut ctx.mutations)))
    }
}

async fn register(shared: &Shared, req: RegisterRequest) -> Result<RegisterResponse, AgentError> {
    if req.protocol_version != PROTOCOL_VERSION {
        return Err(AgentError::BadRequest(format!(
            "agent speaks protocol {}, this server speaks {PROTOCOL_VERSION}",
            req.protocol_version
        )));
    }
    let server_token_ok = container_instance::constant_time_eq(
        req.token.as_bytes(),
        shared.config.agent_token.as_bytes(),
    );
    let region = req
        .container_instance_arn
        .as_deref()
        .and_then(arn::parse)
        .map(|a| a.region.to_string())
        .or_else(|| req.region.clone());
    let key = partition_of(shared, region.as_deref());
    let (result, wait) = {
        let mut guard = shared
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Inner { world, rng } = &mut *guard;
        let mut ctx = Ctx::new(now_ms(), key.clone(), "agent", rng);
        let p = world.partition(&key);
        let result =
            container_instance::register(p, &mut ctx, &req, server_token_ok).map(|(arn, token)| {
                let id = arn::last_segment(&arn).to_string();
                RegisterResponse {
                    container_instance_arn: arn,
                    instance_token: token,
                    desired: task::desired_state(p, &id),
                    usage_interval_ms: Some(shared.usage_interval_ms()),
                }
            });
        let wait = if result.is_ok() {
            finish_ctx(shared, &mut ctx)
        } else {
            None
        };
        (result, wait)
    };
    commit(wait).await?;
    if let Ok(r) = &result {
        tracing::info!(instance = %r.container_instance_arn, hostname = %req.hostname, runtime = %req.runtime, "agent registered");
    }
    result
}

/// The shortest long poll ended early for a task due to settle (see `sync`).
const SETTLE_POLL_MIN_MS: i64 = 200;

/// One sync. The agent's heartbeat is the moment its request arrived: a pass made later (the
/// server busy, or a long poll held open) says nothing more about the agent, which may have
/// frozen meanwhile, so no pass stamps a later time. The desired state is built only when it
/// is answered: when the agent sent reports (they are acknowledged with the answer), when its
/// version is not the agent's, or when the long poll ends; a pass woken by a change elsewhere
/// that leaves this instance's version alone only compares two numbers and waits on.
async fn sync(shared: &Shared, req: SyncRequest) -> Result<SyncResponse, AgentError> {
    let arrived_ms = now_ms();
    let arrived = tokio::time::Instant::now();
    let region = arn::parse(&req.container_instance_arn)
        .map(|a| a.region.to_string())
        .ok_or_else(|| AgentError::BadRequest("container_instance_arn is not an ECS ARN".into()))?;
    let key = partition_of(shared, Some(&region));
    // Never held past the sync interval: the heartbeat is only refreshed by the agent's next
    // request, which must come well within AGENT_TIMEOUT_MS.
    let wait_ms = req.wait_ms.min(SYNC_INTERVAL_MS);
    let mut deadline = arrived + Duration::from_millis(wait_ms);
    let mut settled = false;
    // Only this instance's desired-state changes wake the poll; subscribed once the instance
    // is authenticated, under the world lock, before its version is first read.
    let mut wakeups: Option<crate::AgentWaiter<'_>> = None;
    let mut first = true;
    let mut expired = wait_ms == 0;
    let usage_interval_ms = Some(shared.usage_interval_ms());
    loop {
        if let Some(w) = &mut wakeups {
            w.mark_seen();
        }
        let mut samples = Vec::new();
        let (desired, wait) = {
            let mut guard = shared
                .inner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let Inner { world, rng } = &mut *guard;
            let mut ctx = Ctx::new(now_ms(), key.clone(), "agent", rng);
            let p = world.partition(&key);
            let id = container_instance::authenticate(
                p,
                &ctx,
                &req.container_instance_arn,
                &req.instance_token,
            )?;
            if wakeups.is_none() {
                wakeups = Some(shared.agent_wakers.subscribe(&id));
            }
            if first {
                // A heartbeat that shows a task settled is news to the service scheduler
                // (a rolling deployment stops old tasks once new ones have settled).
                let before = p.liveness.get(&id).map_or(i64::MIN, |l| l.last_seen_ms);
                settled |= arrived_ms > before && task::settles_between(p, &id, before, arrived_ms);
                // End the long poll when a task is due to settle, so that the agent's next
                // sync, which shows it, comes then instead of up to a poll later (polls end
                // at most every SETTLE_POLL_MIN_MS however many tasks settle one by one).
                if let Some(at) = task::next_settle_ms(p, &id, arrived_ms) {
                    let ms = at.saturating_sub(arrived_ms).max(SETTLE_POLL_MIN_MS) + 1;
                    let ms = u64::try_from(ms).unwrap_or(SYNC_INTERVAL_MS);
                    deadline = deadline.min(arrived + Duration::from_millis(ms));
                }
            }
            container_instance::heartbeat(p, &id, arrived_ms);
            if first {
                for r in &req.reports {
                    task::apply_report(p, &mut ctx, &id, r);
                }
                for u in &req.usage {
                    samples.extend(berth_core::metrics::samples_of(p, &id, u));
                }
            }
            let due = expired
                || !req.reports.is_empty()
                || container_instance::desired_version(p, &id) != req.desired_version;
            let desired = due.then(|| task::desired_state(p, &id));
            (desired, finish_ctx(shared, &mut ctx))
        };
        shared.record_samples(&key, samples);
        if std::mem::take(&mut settled) {
            shared.wakeups.send_modify(|v| *v = v.wrapping_add(1));
        }
        commit(wait).await?;
        if let Some(desired) = desired {
            return Ok(SyncResponse {
                desired,
                usage_interval_ms,
            });
        }
        first = false;
        // Long poll: wait for this instance's desired state to change, or the deadline; the
        // next pass answers if its version moved or the wait is over. `wakeups` was marked
        // seen before the version above was read, and wakes are sent under the same lock
        // right after a version moves, so a change made since is not missed.
        let Some(w) = &mut wakeups else {
            expired = true;
            continue;
        };
        let changed = tokio::time::timeout_at(deadline, w.changed()).await;
        if changed.is_err() || tokio::time::Instant::now() >= deadline {
            expired = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::{Credential, Credentials};
    use berth_core::agent_protocol::RegisterResponse;
    use std::time::Instant;

    async fn server(dir: &std::path::Path) -> crate::Running {
        crate::start(crate::Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.to_path_buf(),
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            allow_reset: false,
            create_default_cluster: true,
            agent_token: "agent-token".into(),
            task_retention_ms: 3_600_000,
            logs: crate::LogsConfig::default(),
            metrics_period_ms: 60_000,
            auth: crate::Auth::SigV4(Credentials::new(vec![Credential::dev_pair()]).unwrap()),
            tls: None,
            autoscaling: crate::AutoScalingConfig::default(),
        })
        .await
        .unwrap()
    }

    async fn join(gw: &Gateway, host: &str) -> RegisterResponse {
        gw.register(RegisterRequest {
            protocol_version: PROTOCOL_VERSION,
            cluster: "default".into(),
            region: None,
            token: gw.agent_token().to_string(),
            container_instance_arn: None,
            instance_token: None,
            cpu_units: 1024,
            memory_mib: 1024,
            reserved_ports: vec![],
            attributes: vec![],
            version_info: Default::default(),
            runtime: "process".into(),
            hostname: host.into(),
        })
        .await
        .unwrap()
    }

    fn poll(r: &RegisterResponse, version: u64, wait_ms: u64) -> SyncRequest {
        SyncRequest {
            container_instance_arn: r.container_instance_arn.clone(),
            instance_token: r.instance_token.clone(),
            desired_version: version,
            reports: vec![],
            wait_ms,
            usage: vec![],
        }
    }

    fn last_seen(gw: &Gateway, r: &RegisterResponse) -> i64 {
        let mut guard = gw.shared.inner.lock().unwrap();
        let key = partition_of(&gw.shared, None);
        let id = arn::last_segment(&r.container_instance_arn);
        guard.world.partition(&key).liveness[id].last_seen_ms
    }

    /// Bump instance `r`'s desired-state version and wake the long polls, as a placement does.
    fn wake(gw: &Gateway, r: &RegisterResponse) {
        let mut guard = gw.shared.inner.lock().unwrap();
        let Inner { world, rng } = &mut *guard;
        let key = partition_of(&gw.shared, None);
        let mut ctx = Ctx::new(now_ms(), key.clone(), "test", rng);
        let id = arn::last_segment(&r.container_instance_arn);
        container_instance::wake(world.partition(&key), &mut ctx, id);
        let _ = finish_ctx(&gw.shared, &mut ctx);
    }

    #[tokio::test]
    async fn a_poll_is_woken_by_its_instance_only_and_forgotten_when_over() {
        let dir = tempfile::tempdir().unwrap();
        let running = server(dir.path()).await;
        let gw = running.gateway();
        let a = join(&gw, "a").await;
        let b = join(&gw, "b").await;
        let polls: Vec<_> = [(&a, 2_000), (&a, 2_000), (&b, 2_000)]
            .into_iter()
            .map(|(r, wait)| {
                let gw = gw.clone();
                let req = poll(r, r.desired.version, wait);
                tokio::spawn(async move { gw.sync(req).await.unwrap() })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            gw.shared.agent_wakers.len(),
            2,
            "one entry per instance polled"
        );
        wake(&gw, &a);
        let [pa1, pa2, pb]: [_; 3] = polls.try_into().unwrap();
        let (ra1, ra2) = (pa1.await.unwrap(), pa2.await.unwrap());
        assert_eq!(ra1.desired.version, a.desired.version + 1);
        assert_eq!(ra2.desired.version, a.desired.version + 1);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!pb.is_finished(), "b was woken by a's change");
        assert_eq!(
            gw.shared.agent_wakers.len(),
            1,
            "a's entry outlived its polls"
        );
        let rb = pb.await.unwrap();
        assert_eq!(rb.desired.version, b.desired.version);
        assert_eq!(gw.shared.agent_wakers.len(), 0);
        // A refused poll leaves nothing behind.
        let mut bad = poll(&a, 0, 500);
        bad.instance_token = "wrong".into();
        assert!(gw.sync(bad).await.is_err());
        assert_eq!(gw.shared.agent_wakers.len(), 0);
    }

    #[tokio::test]
    async fn the_heartbeat_is_the_arrival_not_the_end_of_the_poll() {
        let dir = tempfile::tempdir().unwrap();
        let running = server(dir.path()).await;
        let gw = running.gateway();
        let a = join(&gw, "a").await;
        let arrived = now_ms();
        let t = Instant::now();
        let resp = gw.sync(poll(&a, a.desired.version, 600)).await.unwrap();
        assert!(
            t.elapsed() >= Duration::from_millis(590),
            "answered before the poll's end: {:?}",
            t.elapsed()
        );
        assert_eq!(resp.desired.version, a.desired.version);
        let seen = last_seen(&gw, &a);
        assert!(
            seen >= arrived && seen < arrived + 400,
            "heartbeat {seen} is not the arrival {arrived}"
        );
    }

    #[tokio::test]
    async fn a_poll_ends_on_its_own_instance_version_only() {
        let dir = tempfile::tempdir().unwrap();
        let running = server(dir.path()).await;
        let gw = running.gateway();
        let a = join(&gw, "a").await;
        let b = join(&gw, "b").await;
        let version = a.desired.version;
        let polling = tokio::spawn({
            let gw = gw.clone();
            let req = poll(&a, version, 2_000);
            async move {
                let t = Instant::now();
                (gw.sync(req).await.unwrap(), t.elapsed())
            }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        wake(&gw, &b);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !polling.is_finished(),
            "a change on another instance answered this one"
        );
        wake(&gw, &a);
        let (resp, took) = polling.await.unwrap();
        assert_eq!(resp.desired.version, version + 1);
        assert!(
            took < Duration::from_millis(1_900),
            "answered late: {took:?}"
        );
    }
}
