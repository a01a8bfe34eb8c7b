//! CloudWatch Logs on the shared port, and the agents' log shipping. Both go straight to
//! `berth-logs` (its own database and writer thread, on the blocking pool) and never take
//! the world lock, except for a moment to check an agent's instance credential: a log flood
//! must not slow scheduling.

use crate::{Gateway, Inner, Shared, now_ms};
use axum::body::Bytes;
use berth_api::{ApiError, Service};
use berth_core::agent_protocol::{
    AgentError, EnsureLogGroupRequest, EnsureLogGroupResponse, PutLogsRequest, PutLogsResponse,
};
use berth_core::state::Ctx;
use berth_core::{PartitionKey, arn, container_instance};
use berth_logs::{AppendChunk, LogsError};
use std::sync::Arc;
use std::time::Duration;

/// How log storage is bounded and swept.
#[derive(Debug, Clone)]
pub struct LogsConfig {
    /// Upper bound on stored log message bytes; past it the oldest events are evicted.
    pub max_stored_bytes: Option<u64>,
    /// How often retention is enforced and deleted streams are purged.
    pub sweep_interval_ms: u64,
}

impl Default for LogsConfig {
    fn default() -> LogsConfig {
        LogsConfig {
            max_stored_bytes: None,
            sweep_interval_ms: 60_000,
        }
    }
}

/// Serve one Logs API request for `partition`.
pub(crate) async fn api(
    shared: &Shared,
    partition: PartitionKey,
    operation: &'static str,
    body: Bytes,
) -> Result<Vec<u8>, ApiError> {
    let logs = shared.logs.clone();
    let result =
        tokio::task::spawn_blocking(move || logs.handle(&partition, operation, &body, now_ms()))
            .await
            .map_err(|_| ApiError::internal(Service::Logs, "the log store failed"))?;
    if result.is_ok() && operation == "PutRetentionPolicy" {
        // Apply the new policy now rather than at the next tick.
        shared.logs_sweep.notify_one();
    }
    tracing::debug!(operation, ok = result.is_ok(), "logs request");
    result
}

/// Enforce retention and purge deleted streams every `sweep_interval_ms` (and when a
/// retention policy changes).
pub(crate) async fn sweep(shared: Arc<Shared>) {
    let every = Duration::from_millis(shared.config.logs.sweep_interval_ms.max(100));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shared.logs_sweep.notified() => {}
        }
        let logs = shared.logs.clone();
        match tokio::task::spawn_blocking(move || logs.sweep(now_ms())).await {
            Ok(Ok(r)) if r.expired_events + r.purged_events > 0 => {
                tracing::info!(
                    expired = r.expired_events,
                    purged = r.purged_events,
                    bytes = r.bytes,
                    "swept log events"
                );
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "log sweep failed"),
            _ => {}
        }
    }
}

/// Check an agent's instance credential; the instance's partition.
fn authenticate(
    shared: &Shared,
    instance_arn: &str,
    token: &str,
) -> Result<PartitionKey, AgentError> {
    let region = arn::parse(instance_arn)
        .map(|a| a.region.to_string())
        .ok_or_else(|| AgentError::BadRequest("container_instance_arn is not an ECS ARN".into()))?;
    let key = PartitionKey {
        account: shared.config.account_id.clone(),
        region,
    };
    let mut guard = shared
        .inner
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Inner { world, rng } = &mut *guard;
    let ctx = Ctx::new(now_ms(), key.clone(), "agent", rng);
    container_instance::authenticate(world.partition(&key), &ctx, instance_arn, token)?;
    Ok(key)
}

/// The partition of a log group an agent names: its `awslogs-region` when that is a region
/// name, else the instance's.
fn log_partition(instance: &PartitionKey, region: Option<&str>) -> PartitionKey {
    let valid = |r: &&str| {
        !r.is_empty()
            && r.len() <= 32
            && r.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    PartitionKey {
        account: instance.account.clone(),
        region: region
            .filter(valid)
            .map_or_else(|| instance.region.clone(), str::to_string),
    }
}

fn unavailable(e: &LogsError) -> AgentError {
    AgentError::Unavailable(e.to_string())
}

impl Gateway {
    /// Store container output an agent shipped; answers once it is durable.
    pub async fn put_logs(&self, req: PutLogsRequest) -> Result<PutLogsResponse, AgentError> {
        let instance = authenticate(
            &self.shared,
            &req.container_instance_arn,
            &req.instance_token,
        )?;
        let chunks: Vec<AppendChunk> = req
            .batches
            .into_iter()
            .map(|b| AppendChunk {
                key: log_partition(&instance, b.region.as_deref()),
                group: b.group,
                stream: b.stream,
                seq: b.seq,
                // Deserialized, the batch is its events' only owner: no copy.
                events: std::sync::Arc::unwrap_or_clone(b.events)
                    .into_iter()
                    .map(|e| (e.timestamp_ms, e.message))
                    .collect(),
            })
            .collect();
        let logs = self.shared.logs.clone();
        let producer = req.producer;
        let results = tokio::task::spawn_blocking(move || logs.append(&producer, chunks, now_ms()))
            .await
            .map_err(|_| AgentError::Unavailable("the log store failed".into()))?
            .map_err(|e| unavailable(&e))?;
        Ok(PutLogsResponse {
            refused: results
                .into_iter()
                .map(|r| r.err().map(|e| e.qualified()))
                .collect(),
        })
    }

    /// Make sure a log group exists (creating it if asked) before an `awslogs` container
    /// starts.
    pub async fn ensure_log_group(
        &self,
        req: EnsureLogGroupRequest,
    ) -> Result<EnsureLogGroupResponse, AgentError> {
        let instance = authenticate(
            &self.shared,
            &req.container_instance_arn,
            &req.instance_token,
        )?;
        let key = log_partition(&instance, req.region.as_deref());
        let logs = self.shared.logs.clone();
        let result = tokio::task::spawn_blocking(move || {
            logs.ensure_group(&key, &req.group, req.create, &req.streams, now_ms())
        })
        .await
        .map_err(|_| AgentError::Unavailable("the log store failed".into()))?;
        match result {
            Ok(()) => Ok(EnsureLogGroupResponse { error: None }),
            Err(e @ LogsError::Unavailable(_)) => Err(unavailable(&e)),
            Err(e) => Ok(EnsureLogGroupResponse {
                error: Some(e.qualified()),
            }),
        }
    }
}
