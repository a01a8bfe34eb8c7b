//! The Application Auto Scaling controller: every `--autoscaling-interval-ms`, for every
//! partition with scalable targets, gather the tracked services' metric histories and run
//! `berth_core::autoscaling::reconcile` (scheduled actions, then target tracking) under
//! the world lock, committing its changes like any request's. (The metrics lock is taken
//! inside the world lock, the order `metrics.rs` allows.)

use crate::{Inner, Shared, now_ms};
use berth_core::PartitionKey;
use berth_core::autoscaling::{self, ServiceMetrics, scaler};
use berth_core::metrics::EcsMetric;
use berth_core::state::Ctx;
use std::sync::Arc;

/// How the controller runs.
#[derive(Debug, Clone, Copy)]
pub struct AutoScalingConfig {
    /// Milliseconds between passes.
    pub interval_ms: u64,
}

impl Default for AutoScalingConfig {
    fn default() -> AutoScalingConfig {
        AutoScalingConfig {
            interval_ms: 10_000,
        }
    }
}

/// The metric histories of the tracked services of one partition, enough datapoints for
/// the longest alarm (the scale-in one), oldest first: the services' `CPUUtilization` and
/// `MemoryUtilization` averages from the metrics book.
fn gather(
    shared: &Shared,
    key: &PartitionKey,
    services: &[String],
    eval: &scaler::Evaluation,
    now_ms: i64,
) -> ServiceMetrics {
    let periods = i64::try_from(eval.in_datapoints.max(eval.out_datapoints)).unwrap_or(15) + 3;
    let since = now_ms.saturating_sub(eval.period_ms.saturating_mul(periods));
    let series = |cluster: &str, service: &str, metric: EcsMetric| -> Vec<scaler::Point> {
        shared
            .service_metric(key, cluster, service, metric, since, now_ms)
            .into_iter()
            .map(|p| scaler::Point {
                timestamp_ms: p.timestamp_ms,
                value: p.average,
            })
            .collect()
    };
    services
        .iter()
        .filter_map(|s| {
            let (cluster, service) = s.split_once('/')?;
            Some((
                s.clone(),
                (
                    series(cluster, service, EcsMetric::CpuUtilization),
                    series(cluster, service, EcsMetric::MemoryUtilization),
                ),
            ))
        })
        .collect()
}

/// One controller pass over every partition; returns once its changes are durable.
pub(crate) async fn pass(shared: &Shared) {
    // The alarms behind target tracking evaluate ECS's metrics at their period.
    let eval = scaler::Evaluation {
        period_ms: shared.config.metrics_period_ms.max(1),
        ..scaler::Evaluation::default()
    };
    let wait = {
        let mut guard = shared
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Inner { world, rng } = &mut *guard;
        let keys: Vec<PartitionKey> = world
            .partitions
            .iter()
            .filter(|(_, p)| {
                !p.autoscaling.targets.is_empty() || !p.autoscaling.activities.is_empty()
            })
            .map(|(k, _)| k.clone())
            .collect();
        let mut all = Vec::new();
        let mut woken = Vec::new();
        for key in keys {
            let now = now_ms();
            let p = world.partition(&key);
            let metrics = gather(shared, &key, &autoscaling::tracked_services(p), &eval, now);
            let mut ctx = Ctx::new(now, key.clone(), "application-autoscaling", rng);
            autoscaling::reconcile(p, &mut ctx, &metrics, &eval);
            all.append(&mut ctx.mutations);
            woken.append(&mut ctx.woken);
        }
        shared.wake(&woken);
        (!all.is_empty()).then(|| shared.commits.submit(all))
    };
    if let Some(w) = wait {
        let _ = w.await;
    }
}

/// Run the controller until aborted.
pub(crate) async fn run(shared: Arc<Shared>) {
    let every = std::time::Duration::from_millis(shared.config.autoscaling.interval_ms.max(100));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        pass(&shared).await;
    }
}
