//! ECS's CloudWatch metrics in the shell: the in-memory [`MetricsBook`] (pure, in
//! `berth-core`), fed by the agents' usage samples through the gateway and read by the
//! CloudWatch API and the auto scaler.
//!
//! Not durable, on purpose: samples are measurements, not acknowledged writes, and writing
//! them through the control-plane store would put a steady write load on the path every
//! acknowledged change takes. A restart loses the book (the last [`RETAINED_PERIODS`]
//! periods); the agents' next samples refill it within a period, which is all target
//! tracking looks at.
//!
//! Lock order: the metrics lock is taken on its own or inside the world lock, never the
//! other way round.
//!
//! [`RETAINED_PERIODS`]: berth_core::metrics::RETAINED_PERIODS

use crate::{Shared, now_ms};
use berth_core::PartitionKey;
use berth_core::metrics::{EcsMetric, MetricPoint, MetricsBook, Sample};
use std::sync::{Arc, MutexGuard};

impl Shared {
    pub(crate) fn metrics_book(&self) -> MutexGuard<'_, MetricsBook> {
        self.metrics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A service's `CPUUtilization` or `MemoryUtilization` (ECS's definition: used over
    /// reserved, in percent, Average/Minimum/Maximum across its RUNNING tasks), one point per
    /// metrics period (`--metrics-period-secs`), for the periods that start at or after
    /// `since_ms` and have ended by `now_ms`, oldest first. Periods in which no task was
    /// measured have no point.
    pub(crate) fn service_metric(
        &self,
        key: &PartitionKey,
        cluster_name: &str,
        service_name: &str,
        metric: EcsMetric,
        since_ms: i64,
        now_ms: i64,
    ) -> Vec<MetricPoint> {
        self.metrics_book().service_metric(
            key,
            cluster_name,
            service_name,
            metric,
            since_ms,
            now_ms,
        )
    }

    /// How often agents measure usage: three times per metrics period (ECS's agent samples
    /// every 20 s for its one-minute period), between 0.5 s and 20 s.
    pub(crate) fn usage_interval_ms(&self) -> u64 {
        u64::try_from((self.config.metrics_period_ms / 3).clamp(500, 20_000)).unwrap_or(20_000)
    }

    /// Record usage samples (from an agent's sync); samples too late or too early are
    /// dropped.
    pub(crate) fn record_samples(&self, key: &PartitionKey, samples: Vec<Sample>) {
        if samples.is_empty() {
            return;
        }
        let now = now_ms();
        let mut book = self.metrics_book();
        let mut refused = 0usize;
        for s in samples {
            if book.record(key, s, now).is_err() {
                refused += 1;
            }
        }
        if refused > 0 {
            tracing::debug!(
                refused,
                "usage samples outside their period's window were dropped"
            );
        }
    }
}

/// Fold closed periods and forget old ones, a few times per period.
pub(crate) async fn seal(shared: Arc<Shared>) {
    let period_ms = shared.config.metrics_period_ms.max(1_000);
    let every = std::time::Duration::from_millis(u64::try_from(period_ms / 2).unwrap_or(30_000));
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        shared.metrics_book().seal(now_ms());
    }
}
