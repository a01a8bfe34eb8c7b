//! ECS's CloudWatch metrics (namespace `AWS/ECS`), computed as ECS computes them, and the
//! in-memory book that keeps them.
//!
//! Agents measure what each running task uses; the gateway turns each measurement into a
//! [`Sample`]: one *entity* (a task for the service metrics, a container instance for the
//! cluster metrics) with, per metric, what it used and what it had ([`Reading`]). Per period
//! the book averages each entity's readings, then folds the entities into one
//! [`StatisticSet`] per metric and dimension set, as ECS publishes a statistic set to
//! CloudWatch each minute:
//!
//! - `Average` = Σ used / Σ capacity × 100 (ECS's formula: total CPU units used by the
//!   service's tasks over the CPU units its tasks reserve);
//! - `Minimum` / `Maximum` = the utilisation of the least / most loaded entity;
//! - `SampleCount` = the number of entities, and `Sum` = `Average` × `SampleCount`, so that
//!   `Sum / SampleCount` is the average as CloudWatch requires of a statistic set.
//!
//! Service metrics (`{ClusterName, ServiceName}`): `CPUUtilization` and `MemoryUtilization`,
//! one entity per RUNNING task, capacity = the task's reservation (task-level `cpu`/`memory`,
//! else the sum over its containers, `memoryReservation` before `memory`; 1024 CPU units =
//! one vCPU). Cluster metrics (`{ClusterName}`): the same two plus `CPUReservation` and
//! `MemoryReservation`, one entity per container instance, capacity = what the instance
//! registered (ECS: "divided by the total CPU units that were registered for all of the
//! container instances in the cluster").
//!
//! Pure: no clock (every call takes `now_ms`), no I/O; bounded: open periods are folded into
//! statistic sets once they can no longer receive samples, and only the last
//! [`RETAINED_PERIODS`] periods are kept.

use crate::agent_protocol::UsageReport;
use crate::{Partition, PartitionKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The CloudWatch namespace ECS publishes to.
pub const NAMESPACE: &str = "AWS/ECS";

/// ECS's period (one statistic set per minute).
pub const DEFAULT_PERIOD_MS: i64 = 60_000;

/// Periods kept per series: the most data points one GetMetricStatistics call may return
/// (24 hours at the default period). Older ones are forgotten.
pub const RETAINED_PERIODS: i64 = 1_440;

/// The metrics Berth publishes in `AWS/ECS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum EcsMetric {
    /// `CPUUtilization`: CPU units used over CPU units reserved (service) or registered
    /// (cluster), in percent.
    CpuUtilization,
    /// `MemoryUtilization`: memory used over memory reserved / registered, in percent.
    MemoryUtilization,
    /// `CPUReservation` (cluster only): CPU units reserved by tasks over CPU units
    /// registered, in percent.
    CpuReservation,
    /// `MemoryReservation` (cluster only): memory reserved over memory registered.
    MemoryReservation,
}

impl EcsMetric {
    /// Every metric, in listing order.
    pub const ALL: [EcsMetric; 4] = [
        EcsMetric::CpuReservation,
        EcsMetric::CpuUtilization,
        EcsMetric::MemoryReservation,
        EcsMetric::MemoryUtilization,
    ];

    /// The CloudWatch metric name.
    pub fn name(self) -> &'static str {
        match self {
            EcsMetric::CpuUtilization => "CPUUtilization",
            EcsMetric::MemoryUtilization => "MemoryUtilization",
            EcsMetric::CpuReservation => "CPUReservation",
            EcsMetric::MemoryReservation => "MemoryReservation",
        }
    }

    /// Inverse of [`EcsMetric::name`].
    pub fn from_name(name: &str) -> Option<EcsMetric> {
        EcsMetric::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Whether ECS publishes this metric for a service (else only for clusters).
    pub fn per_service(self) -> bool {
        matches!(
            self,
            EcsMetric::CpuUtilization | EcsMetric::MemoryUtilization
        )
    }
}

/// A metric's dimensions: `{ClusterName}` or `{ClusterName, ServiceName}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dimensions {
    /// `ClusterName`.
    pub cluster_name: String,
    /// `ServiceName`, for service metrics.
    pub service_name: Option<String>,
}

impl Dimensions {
    /// `{ClusterName}`.
    pub fn cluster(cluster_name: &str) -> Dimensions {
        Dimensions {
            cluster_name: cluster_name.to_string(),
            service_name: None,
        }
    }

    /// `{ClusterName, ServiceName}`.
    pub fn service(cluster_name: &str, service_name: &str) -> Dimensions {
        Dimensions {
            cluster_name: cluster_name.to_string(),
            service_name: Some(service_name.to_string()),
        }
    }
}

/// What one entity used of one resource, and what it had.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// Used (CPU units, MiB, or reserved units for the reservation metrics).
    pub used: f64,
    /// The capacity `used` is a share of (reserved or registered).
    pub capacity: f64,
}

/// One measurement of one entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The series it belongs to.
    pub dimensions: Dimensions,
    /// The task or container instance id.
    pub entity: String,
    /// When it was measured (epoch ms).
    pub timestamp_ms: i64,
    /// Per metric.
    pub readings: Vec<(EcsMetric, Reading)>,
}

/// CloudWatch's statistic set: what one data point holds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StatisticSet {
    /// `SampleCount`.
    pub sample_count: f64,
    /// `Sum`.
    pub sum: f64,
    /// `Minimum`.
    pub minimum: f64,
    /// `Maximum`.
    pub maximum: f64,
}

impl StatisticSet {
    /// `Average` = `Sum` / `SampleCount`.
    pub fn average(&self) -> f64 {
        if self.sample_count > 0.0 {
            self.sum / self.sample_count
        } else {
            0.0
        }
    }

    /// Fold another set into this one (a longer period made of shorter ones).
    pub fn merge(&mut self, other: &StatisticSet) {
        self.sample_count += other.sample_count;
        self.sum += other.sum;
        self.minimum = self.minimum.min(other.minimum);
        self.maximum = self.maximum.max(other.maximum);
    }
}

/// One data point of a series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MetricPoint {
    /// Start of the period (epoch ms), CloudWatch's data point `Timestamp`.
    pub timestamp_ms: i64,
    /// `Average` (percent).
    pub average: f64,
    /// `Minimum`.
    pub minimum: f64,
    /// `Maximum`.
    pub maximum: f64,
    /// `Sum`.
    pub sum: f64,
    /// `SampleCount`.
    pub sample_count: f64,
}

impl MetricPoint {
    fn of(timestamp_ms: i64, s: &StatisticSet) -> MetricPoint {
        MetricPoint {
            timestamp_ms,
            average: s.average(),
            minimum: s.minimum,
            maximum: s.maximum,
            sum: s.sum,
            sample_count: s.sample_count,
        }
    }
}

/// One entity's readings of one metric over a period, averaged.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct EntityPeriod {
    /// Mean used.
    pub used: f64,
    /// Mean capacity.
    pub capacity: f64,
}

/// ECS's statistic set over the entities of one period (see the module docs). Entities
/// with no capacity (a task that reserves no CPU) have no utilisation and are left out;
/// `None` when no entity is left.
pub fn aggregate(entities: &[EntityPeriod]) -> Option<StatisticSet> {
    let mut used = 0.0;
    let mut capacity = 0.0;
    let mut count = 0.0;
    let mut minimum = f64::INFINITY;
    let mut maximum = f64::NEG_INFINITY;
    for e in entities.iter().filter(|e| e.capacity > 0.0) {
        let pct = e.used / e.capacity * 100.0;
        used += e.used;
        capacity += e.capacity;
        count += 1.0;
        minimum = minimum.min(pct);
        maximum = maximum.max(pct);
    }
    if count == 0.0 {
        return None;
    }
    let average = used / capacity * 100.0;
    Some(StatisticSet {
        sample_count: count,
        sum: average * count,
        minimum,
        maximum,
    })
}

/// Start of the period of length `period_ms` that holds `t` (periods are aligned to the
/// epoch, as CloudWatch aligns minutes).
pub fn period_start(t_ms: i64, period_ms: i64) -> i64 {
    t_ms.div_euclid(period_ms.max(1)) * period_ms.max(1)
}

/// Combine base-period statistic sets (by start time) into data points of `period_ms`
/// starting at `start_ms` (inclusive) up to `end_ms` (exclusive), oldest first. Points
/// without data are absent, as in CloudWatch.
pub fn rollup(
    sets: &BTreeMap<i64, StatisticSet>,
    start_ms: i64,
    end_ms: i64,
    period_ms: i64,
) -> Vec<MetricPoint> {
    let period_ms = period_ms.max(1);
    let mut out: BTreeMap<i64, StatisticSet> = BTreeMap::new();
    for (&t, s) in sets.range(start_ms..end_ms.max(start_ms)) {
        let bucket = start_ms + (t - start_ms).div_euclid(period_ms) * period_ms;
        out.entry(bucket)
            .and_modify(|acc| acc.merge(s))
            .or_insert(*s);
    }
    out.iter().map(|(t, s)| MetricPoint::of(*t, s)).collect()
}

#[derive(Debug, Clone, Copy, Default)]
struct Acc {
    used: f64,
    capacity: f64,
    n: f64,
}

/// Per period: entity → metric → running sums.
type OpenPeriod = BTreeMap<String, BTreeMap<EcsMetric, Acc>>;

#[derive(Debug, Default)]
struct PartitionMetrics {
    /// Periods that may still receive samples, by series and period start.
    open: BTreeMap<Dimensions, BTreeMap<i64, OpenPeriod>>,
    /// Folded periods, by series, metric and period start.
    closed: BTreeMap<(Dimensions, EcsMetric), BTreeMap<i64, StatisticSet>>,
}

fn fold(period: &OpenPeriod) -> BTreeMap<EcsMetric, StatisticSet> {
    let mut per_metric: BTreeMap<EcsMetric, Vec<EntityPeriod>> = BTreeMap::new();
    for readings in period.values() {
        for (m, a) in readings {
            if a.n > 0.0 {
                per_metric.entry(*m).or_default().push(EntityPeriod {
                    used: a.used / a.n,
                    capacity: a.capacity / a.n,
                });
            }
        }
    }
    per_metric
        .into_iter()
        .filter_map(|(m, es)| aggregate(&es).map(|s| (m, s)))
        .collect()
}

/// Why a sample was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its period was already folded.
    TooLate,
    /// It is stamped more than a period in the future (a wrong clock).
    InTheFuture,
}

/// Every partition's metrics, in memory. Raw samples live only while their period is open;
/// a restart loses the book (the metrics are measurements, not acknowledged writes: the
/// agents' next samples refill it within a period).
#[derive(Debug)]
pub struct MetricsBook {
    period_ms: i64,
    partitions: BTreeMap<PartitionKey, PartitionMetrics>,
}

impl MetricsBook {
    /// A book with one data point per `period_ms` (at least one second).
    pub fn new(period_ms: i64) -> MetricsBook {
        MetricsBook {
            period_ms: period_ms.max(1_000),
            partitions: BTreeMap::new(),
        }
    }

    /// The base period.
    pub fn period_ms(&self) -> i64 {
        self.period_ms
    }

    /// How long after its end a period still accepts samples: agents send what they
    /// measured with their next sync (a few seconds), and a period is kept open at least
    /// that long (one period, and at least 10 s).
    pub fn grace_ms(&self) -> i64 {
        self.period_ms.max(10_000)
    }

    /// Record a sample.
    pub fn record(
        &mut self,
        key: &PartitionKey,
        sample: Sample,
        now_ms: i64,
    ) -> Result<(), Refused> {
        let start = period_start(sample.timestamp_ms, self.period_ms);
        if start + self.period_ms + self.grace_ms() <= now_ms {
            return Err(Refused::TooLate);
        }
        if sample.timestamp_ms > now_ms + self.period_ms {
            return Err(Refused::InTheFuture);
        }
        let p = self.partitions.entry(key.clone()).or_default();
        let period = p
            .open
            .entry(sample.dimensions)
            .or_default()
            .entry(start)
            .or_default();
        let entity = period.entry(sample.entity).or_default();
        for (m, r) in sample.readings {
            if !(r.used.is_finite() && r.capacity.is_finite()) {
                continue;
            }
            let a = entity.entry(m).or_default();
            a.used += r.used.max(0.0);
            a.capacity += r.capacity.max(0.0);
            a.n += 1.0;
        }
        Ok(())
    }

    /// Fold the periods that can no longer receive samples and forget those older than
    /// [`RETAINED_PERIODS`]. Call it now and then (reads see open periods regardless).
    pub fn seal(&mut self, now_ms: i64) {
        let period_ms = self.period_ms;
        let grace = self.grace_ms();
        let oldest = period_start(now_ms, period_ms) - RETAINED_PERIODS * period_ms;
        for p in self.partitions.values_mut() {
            for (dims, periods) in &mut p.open {
                let due: Vec<i64> = periods
                    .keys()
                    .copied()
                    .take_while(|&s| s + period_ms + grace <= now_ms)
                    .collect();
                for s in due {
                    if let Some(period) = periods.remove(&s) {
                        for (m, set) in fold(&period) {
                            p.closed
                                .entry((dims.clone(), m))
                                .or_default()
                                .insert(s, set);
                        }
                    }
                }
            }
            p.open.retain(|_, periods| !periods.is_empty());
            for sets in p.closed.values_mut() {
                *sets = sets.split_off(&oldest);
            }
            p.closed.retain(|_, sets| !sets.is_empty());
        }
        self.partitions
            .retain(|_, p| !(p.open.is_empty() && p.closed.is_empty()));
    }

    /// Base-period statistic sets of one series from `from_ms` on (open periods included).
    fn sets(
        &self,
        key: &PartitionKey,
        dims: &Dimensions,
        metric: EcsMetric,
        from_ms: i64,
    ) -> BTreeMap<i64, StatisticSet> {
        let Some(p) = self.partitions.get(key) else {
            return BTreeMap::new();
        };
        let mut out: BTreeMap<i64, StatisticSet> = p
            .closed
            .get(&(dims.clone(), metric))
            .map(|sets| {
                sets.range(from_ms..)
                    .map(|(t, s)| (*t, *s))
                    .collect::<BTreeMap<_, _>>()
            })
            .unwrap_or_default();
        if let Some(periods) = p.open.get(dims) {
            for (&s, period) in periods.range(from_ms..) {
                if let Some(set) = fold(period).remove(&metric) {
                    out.insert(s, set);
                }
            }
        }
        out
    }

    /// Data points of one series: periods of `period_ms` from `start_ms` (inclusive) to
    /// `end_ms` (exclusive), oldest first; the current period is included with what it has
    /// so far, as CloudWatch shows it.
    pub fn points(
        &self,
        key: &PartitionKey,
        dims: &Dimensions,
        metric: EcsMetric,
        start_ms: i64,
        end_ms: i64,
        period_ms: i64,
    ) -> Vec<MetricPoint> {
        rollup(
            &self.sets(key, dims, metric, start_ms),
            start_ms,
            end_ms,
            period_ms,
        )
    }

    /// A service's `CPUUtilization` or `MemoryUtilization` at the base period: the periods
    /// that start at or after `since_ms` and have ended by `now_ms` (the current, partial
    /// period is left out), oldest first. A period with no RUNNING task measured has no
    /// point. This is what the auto scaler reads.
    pub fn service_metric(
        &self,
        key: &PartitionKey,
        cluster_name: &str,
        service_name: &str,
        metric: EcsMetric,
        since_ms: i64,
        now_ms: i64,
    ) -> Vec<MetricPoint> {
        let dims = Dimensions::service(cluster_name, service_name);
        let from = period_start(since_ms, self.period_ms);
        let from = if from < since_ms {
            from + self.period_ms
        } else {
            from
        };
        let current = period_start(now_ms, self.period_ms);
        self.sets(key, &dims, metric, from)
            .range(..current)
            .map(|(t, s)| MetricPoint::of(*t, s))
            .collect()
    }

    /// Every (dimensions, metric) with data in `key`, sorted.
    pub fn list(&self, key: &PartitionKey) -> Vec<(Dimensions, EcsMetric)> {
        let Some(p) = self.partitions.get(key) else {
            return vec![];
        };
        let mut out: std::collections::BTreeSet<(Dimensions, EcsMetric)> =
            p.closed.keys().cloned().collect();
        for (dims, periods) in &p.open {
            for period in periods.values() {
                for m in fold(period).into_keys() {
                    out.insert((dims.clone(), m));
                }
            }
        }
        out.into_iter().collect()
    }
}

/// The samples one agent's usage report makes, given the state: one per RUNNING task of a
/// service placed on `instance_id` (service metrics), and one for the instance itself
/// (cluster metrics: what its measured tasks use, and what its non-stopped tasks reserve,
/// over what it registered). Tasks placed elsewhere, not RUNNING, or unknown are ignored.
pub fn samples_of(p: &Partition, instance_id: &str, report: &UsageReport) -> Vec<Sample> {
    let Some(instance) = p.instances.get(instance_id) else {
        return vec![];
    };
    let mut out = Vec::new();
    let mut cpu_used = 0.0;
    let mut memory_used = 0.0;
    for u in &report.tasks {
        let id = crate::arn::last_segment(&u.task_arn);
        // A RUNNING task is kept whole (only STOPPED ones are compact).
        let Some(t) = p.tasks.get(id).and_then(|t| t.whole()) else {
            continue;
        };
        if t.instance_id.as_deref() != Some(instance_id)
            || t.task.last_status.as_deref() != Some("RUNNING")
            || !(u.cpu_units.is_finite() && u.memory_mib.is_finite())
        {
            continue;
        }
        let cpu = u.cpu_units.max(0.0);
        let memory = u.memory_mib.max(0.0);
        cpu_used += cpu;
        memory_used += memory;
        let service = t
            .task
            .group
            .as_deref()
            .and_then(|g| g.strip_prefix("service:"))
            .filter(|name| p.services.contains_key(&format!("{}/{name}", t.cluster)));
        if let Some(service) = service {
            out.push(Sample {
                dimensions: Dimensions::service(&t.cluster, service),
                entity: id.to_string(),
                timestamp_ms: report.timestamp_ms,
                readings: vec![
                    (
                        EcsMetric::CpuUtilization,
                        Reading {
                            used: cpu,
                            capacity: f64::from(t.reservation.cpu),
                        },
                    ),
                    (
                        EcsMetric::MemoryUtilization,
                        Reading {
                            used: memory,
                            capacity: f64::from(t.reservation.memory),
                        },
                    ),
                ],
            });
        }
    }
    let (cpu_registered, memory_registered, _) = crate::container_instance::registered(instance);
    let (cpu_reserved, memory_reserved, _) = crate::container_instance::used(p, instance_id);
    let cpu_registered = f64::from(cpu_registered);
    let memory_registered = f64::from(memory_registered);
    out.push(Sample {
        dimensions: Dimensions::cluster(&instance.cluster),
        entity: instance_id.to_string(),
        timestamp_ms: report.timestamp_ms,
        readings: vec![
            (
                EcsMetric::CpuUtilization,
                Reading {
                    used: cpu_used,
                    capacity: cpu_registered,
                },
            ),
            (
                EcsMetric::MemoryUtilization,
                Reading {
                    used: memory_used,
                    capacity: memory_registered,
                },
            ),
            (
                EcsMetric::CpuReservation,
                Reading {
                    used: f64::from(cpu_reserved),
                    capacity: cpu_registered,
                },
            ),
            (
                EcsMetric::MemoryReservation,
                Reading {
                    used: f64::from(memory_reserved),
                    capacity: memory_registered,
                },
            ),
        ],
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PartitionKey {
        PartitionKey {
            account: "000000000000".into(),
            region: "us-east-1".into(),
        }
    }

    fn task(entity: &str, t: i64, cpu_used: f64, cpu_reserved: f64) -> Sample {
        Sample {
            dimensions: Dimensions::service("default", "web"),
            entity: entity.into(),
            timestamp_ms: t,
            readings: vec![
                (
                    EcsMetric::CpuUtilization,
                    Reading {
                        used: cpu_used,
                        capacity: cpu_reserved,
                    },
                ),
                (
                    EcsMetric::MemoryUtilization,
                    Reading {
                        used: 64.0,
                        capacity: 512.0,
                    },
                ),
            ],
        }
    }

    #[test]
    fn aggregate_follows_ecs_formula() {
        // Two tasks of 256 units: one uses all of it, one a quarter.
        let s = aggregate(&[
            EntityPeriod {
                used: 256.0,
                capacity: 256.0,
            },
            EntityPeriod {
                used: 64.0,
                capacity: 256.0,
            },
        ])
        .unwrap();
        assert_eq!(s.sample_count, 2.0);
        assert!((s.average() - 62.5).abs() < 1e-9);
        assert!((s.minimum - 25.0).abs() < 1e-9);
        assert!((s.maximum - 100.0).abs() < 1e-9);
        assert!((s.sum - 125.0).abs() < 1e-9);
    }

    #[test]
    fn aggregate_weights_by_reservation() {
        // ECS's Average is total used over total reserved, not the mean of percentages.
        let s = aggregate(&[
            EntityPeriod {
                used: 1024.0,
                capacity: 1024.0,
            },
            EntityPeriod {
                used: 0.0,
                capacity: 256.0,
            },
        ])
        .unwrap();
        assert!((s.average() - 80.0).abs() < 1e-9);
        assert_eq!(s.minimum, 0.0);
        assert_eq!(s.maximum, 100.0);
    }

    #[test]
    fn aggregate_skips_entities_without_capacity() {
        assert_eq!(
            aggregate(&[EntityPeriod {
                used: 5.0,
                capacity: 0.0
            }]),
            None
        );
        assert_eq!(aggregate(&[]), None);
    }

    #[test]
    fn a_task_is_averaged_over_its_samples_in_a_period() {
        let mut b = MetricsBook::new(60_000);
        let k = key();
        b.record(&k, task("a", 60_000, 256.0, 256.0), 61_000)
            .unwrap();
        b.record(&k, task("a", 80_000, 0.0, 256.0), 81_000).unwrap();
        let pts = b.points(
            &k,
            &Dimensions::service("default", "web"),
            EcsMetric::CpuUtilization,
            0,
            200_000,
            60_000,
        );
        assert_eq!(pts.len(), 1);
        assert_eq!(pts[0].timestamp_ms, 60_000);
        assert!((pts[0].average - 50.0).abs() < 1e-9);
        assert_eq!(pts[0].sample_count, 1.0);
        let mem = b.points(
            &k,
            &Dimensions::service("default", "web"),
            EcsMetric::MemoryUtilization,
            0,
            200_000,
            60_000,
        );
        assert!((mem[0].average - 12.5).abs() < 1e-9);
    }

    #[test]
    fn sealing_keeps_the_numbers() {
        let mut b = MetricsBook::new(10_000);
        let k = key();
        let dims = Dimensions::service("default", "web");
        for i in 0..6 {
            b.record(&k, task("a", i * 5_000, 128.0, 256.0), i * 5_000 + 1)
                .unwrap();
            b.record(&k, task("b", i * 5_000, 256.0, 256.0), i * 5_000 + 1)
                .unwrap();
        }
        let before = b.points(&k, &dims, EcsMetric::CpuUtilization, 0, 60_000, 10_000);
        b.seal(1_000_000);
        let after = b.points(&k, &dims, EcsMetric::CpuUtilization, 0, 60_000, 10_000);
        assert_eq!(before, after);
        assert_eq!(after.len(), 3);
        for p in &after {
            assert!((p.average - 75.0).abs() < 1e-9);
            assert_eq!(p.minimum, 50.0);
            assert_eq!(p.maximum, 100.0);
            assert_eq!(p.sample_count, 2.0);
        }
        // A sample for a sealed period is refused, not mixed in.
        assert_eq!(
            b.record(&k, task("a", 0, 0.0, 256.0), 1_000_000),
            Err(Refused::TooLate)
        );
        assert_eq!(
            b.record(&k, task("a", 2_000_000, 0.0, 256.0), 1_000_000),
            Err(Refused::InTheFuture)
        );
    }

    #[test]
    fn longer_periods_merge_statistic_sets() {
        let mut b = MetricsBook::new(10_000);
        let k = key();
        let dims = Dimensions::service("default", "web");
        b.record(&k, task("a", 0, 256.0, 256.0), 1).unwrap();
        b.record(&k, task("a", 10_000, 0.0, 256.0), 10_001).unwrap();
        b.record(&k, task("b", 10_000, 128.0, 256.0), 10_001)
            .unwrap();
        let pts = b.points(&k, &dims, EcsMetric::CpuUtilization, 0, 60_000, 60_000);
        assert_eq!(pts.len(), 1);
        assert_eq!(pts[0].sample_count, 3.0);
        assert!((pts[0].sum - 150.0).abs() < 1e-9);
        assert!((pts[0].average - 50.0).abs() < 1e-9);
        assert_eq!(pts[0].minimum, 0.0);
        assert_eq!(pts[0].maximum, 100.0);
    }

    #[test]
    fn service_metric_leaves_out_the_current_period() {
        let mut b = MetricsBook::new(10_000);
        let k = key();
        for t in [0, 10_000, 20_000, 25_000] {
            b.record(&k, task("a", t, 64.0, 256.0), t + 1).unwrap();
        }
        let pts = b.service_metric(&k, "default", "web", EcsMetric::CpuUtilization, 0, 25_001);
        assert_eq!(
            pts.iter().map(|p| p.timestamp_ms).collect::<Vec<_>>(),
            vec![0, 10_000]
        );
        assert!((pts[0].average - 25.0).abs() < 1e-9);
        let later = b.service_metric(
            &k,
            "default",
            "web",
            EcsMetric::CpuUtilization,
            5_000,
            25_001,
        );
        assert_eq!(later.len(), 1);
        assert!(
            b.service_metric(&k, "default", "api", EcsMetric::CpuUtilization, 0, 25_001)
                .is_empty()
        );
    }

    #[test]
    fn retention_is_bounded() {
        let mut b = MetricsBook::new(1_000);
        let k = key();
        let n = RETAINED_PERIODS + 100;
        for i in 0..n {
            let t = i * 1_000;
            b.record(&k, task("a", t, 1.0, 2.0), t).unwrap();
            if i % 50 == 0 {
                b.seal(t);
            }
        }
        b.seal(n * 1_000 + 60_000);
        let all = b.points(
            &k,
            &Dimensions::service("default", "web"),
            EcsMetric::CpuUtilization,
            0,
            i64::MAX / 2,
            1_000,
        );
        assert!(all.len() as i64 <= RETAINED_PERIODS, "{}", all.len());
        assert!(!all.is_empty());
    }

    #[test]
    fn list_names_series_with_data() {
        let mut b = MetricsBook::new(60_000);
        let k = key();
        b.record(&k, task("a", 0, 1.0, 2.0), 1).unwrap();
        let l = b.list(&k);
        assert_eq!(
            l,
            vec![
                (
                    Dimensions::service("default", "web"),
                    EcsMetric::CpuUtilization
                ),
                (
                    Dimensions::service("default", "web"),
                    EcsMetric::MemoryUtilization
                ),
            ]
        );
        b.seal(10_000_000_000);
        assert!(b.list(&k).is_empty(), "forgotten past retention");
    }

    #[test]
    fn usage_reports_become_service_and_cluster_samples() {
        use crate::agent_protocol::TaskUsage;
        use crate::state::{InstanceRecord, Reservation, TaskRecord};
        use berth_api::ecs;
        let mut p = Partition::default();
        let resource = |name: &str, v: i32| ecs::Resource {
            name: Some(name.into()),
            integer_value: Some(v),
            ..Default::default()
        };
        p.instances.insert(
            "i1".into(),
            InstanceRecord {
                cluster: "default".into(),
                instance: ecs::ContainerInstance {
                    registered_resources: Some(vec![
                        resource("CPU", 4096),
                        resource("MEMORY", 8192),
                    ]),
                    ..Default::default()
                },
                token: String::new(),
                runtime: "process".into(),
                hostname: "h".into(),
            },
        );
        let task = |id: &str, status: &str, group: &str, instance: &str| TaskRecord {
            cluster: "default".into(),
            task: ecs::Task {
                task_arn: Some(format!(
                    "arn:aws:ecs:us-east-1:000000000000:task/default/{id}"
                )),
                last_status: Some(status.into()),
                group: Some(group.into()),
                ..Default::default()
            },
            instance_id: Some(instance.into()),
            client_token: None,
            reservation: Reservation {
                cpu: 256,
                memory: 512,
                ports: vec![],
                counted: true,
            },
            stopped_at_ms: None,
        };
        p.tasks
            .insert("a".into(), task("a", "RUNNING", "service:web", "i1"));
        p.tasks
            .insert("b".into(), task("b", "RUNNING", "family:job", "i1"));
        p.tasks
            .insert("c".into(), task("c", "PENDING", "service:web", "i1"));
        p.tasks
            .insert("d".into(), task("d", "RUNNING", "service:web", "i2"));
        p.tasks
            .insert("e".into(), task("e", "RUNNING", "service:gone", "i1"));
        p.services.insert(
            "default/web".into(),
            crate::service::ServiceRecord {
                cluster: "default".into(),
                service: ecs::Service::default(),
                meta: BTreeMap::new(),
                last_completed: None,
                steady: false,
                throttled_event: false,
                client_token: None,
                ..Default::default()
            },
        );
        let usage = |id: &str| TaskUsage {
            task_arn: format!("arn:aws:ecs:us-east-1:000000000000:task/default/{id}"),
            cpu_units: 128.0,
            memory_mib: 64.0,
        };
        let report = UsageReport {
            timestamp_ms: 5_000,
            tasks: ["a", "b", "c", "d", "e", "zz"]
                .into_iter()
                .map(usage)
                .collect(),
        };
        let samples = samples_of(&p, "i1", &report);
        // One service sample (task a: RUNNING, on i1, of an existing service), one cluster.
        assert_eq!(samples.len(), 2, "{samples:#?}");
        let web = &samples[0];
        assert_eq!(web.dimensions, Dimensions::service("default", "web"));
        assert_eq!(web.entity, "a");
        assert_eq!(
            web.readings,
            vec![
                (
                    EcsMetric::CpuUtilization,
                    Reading {
                        used: 128.0,
                        capacity: 256.0
                    }
                ),
                (
                    EcsMetric::MemoryUtilization,
                    Reading {
                        used: 64.0,
                        capacity: 512.0
                    }
                ),
            ]
        );
        let cluster = &samples[1];
        assert_eq!(cluster.dimensions, Dimensions::cluster("default"));
        // Measured RUNNING tasks here: a, b, e; reserved by non-stopped tasks here: a, b, c, e.
        let get = |m: EcsMetric| cluster.readings.iter().find(|(x, _)| *x == m).unwrap().1;
        assert_eq!(
            get(EcsMetric::CpuUtilization),
            Reading {
                used: 384.0,
                capacity: 4096.0
            }
        );
        assert_eq!(
            get(EcsMetric::MemoryUtilization),
            Reading {
                used: 192.0,
                capacity: 8192.0
            }
        );
        assert_eq!(
            get(EcsMetric::CpuReservation),
            Reading {
                used: 1024.0,
                capacity: 4096.0
            }
        );
        assert_eq!(
            get(EcsMetric::MemoryReservation),
            Reading {
                used: 2048.0,
                capacity: 8192.0
            }
        );
        assert!(samples_of(&p, "nope", &report).is_empty());
    }

    proptest::proptest! {
        /// Average is a capacity-weighted mean of the entities' utilisations, so it lies
        /// between Minimum and Maximum, and Sum / SampleCount gives it back; merging sets
        /// keeps those laws.
        #[test]
        fn statistic_sets_are_consistent(
            entities in proptest::collection::vec((0.0f64..5000.0, 1.0f64..4096.0), 1..20),
            split in 0usize..20,
        ) {
            let es: Vec<EntityPeriod> = entities
                .iter()
                .map(|&(used, capacity)| EntityPeriod { used, capacity })
                .collect();
            let all = aggregate(&es).unwrap();
            proptest::prop_assert!(all.minimum <= all.average() + 1e-9);
            proptest::prop_assert!(all.average() <= all.maximum + 1e-9);
            proptest::prop_assert_eq!(all.sample_count, es.len() as f64);
            let split = split.min(es.len());
            if split > 0 && split < es.len() {
                let mut a = aggregate(&es[..split]).unwrap();
                let b = aggregate(&es[split..]).unwrap();
                a.merge(&b);
                proptest::prop_assert_eq!(a.sample_count, all.sample_count);
                proptest::prop_assert_eq!(a.minimum, all.minimum);
                proptest::prop_assert_eq!(a.maximum, all.maximum);
                proptest::prop_assert!(a.minimum <= a.average() + 1e-9);
                proptest::prop_assert!(a.average() <= a.maximum + 1e-9);
            }
        }
    }

    #[test]
    fn metric_names_round_trip() {
        for m in EcsMetric::ALL {
            assert_eq!(EcsMetric::from_name(m.name()), Some(m));
        }
        assert_eq!(EcsMetric::from_name("cpuutilization"), None);
    }
}
