//! Target tracking as Application Auto Scaling does it, as a pure decision.
//!
//! Each target tracking policy stands for two CloudWatch alarms on its metric: a high one
//! (the metric above the target for 3 consecutive periods) that scales out, and a low one
//! (below 90% of the target for 15 consecutive periods) that scales in. The new capacity is
//! proportional, `ceil(current * metric / target)`: rounding up keeps enough capacity when
//! scaling out and removes less when scaling in, and since after a scale-in the metric is
//! expected at or under the target, a steady load does not oscillate. Missing or stale data
//! is `INSUFFICIENT_DATA`: no action either way. Cooldowns, suspension, `DisableScaleIn`,
//! several policies (out if any wants out, taking the largest; in only if every policy
//! that may scale in wants in, again keeping the largest) and the bounds follow AWS's
//! documentation of target tracking for ECS services.

/// One datapoint of a service metric: the period's average across the service's tasks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// The start of the period (epoch ms).
    pub timestamp_ms: i64,
    /// The value, in percent for ECS's utilization metrics.
    pub value: f64,
}

/// The predefined metrics target tracking can follow on an ECS service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TrackedMetric {
    /// `ECSServiceAverageCPUUtilization`: the service's `CPUUtilization` average.
    Cpu,
    /// `ECSServiceAverageMemoryUtilization`: the service's `MemoryUtilization` average.
    Memory,
}

/// The metric histories of one service.
#[derive(Debug, Clone, Copy, Default)]
pub struct Metrics<'a> {
    /// `CPUUtilization`, oldest first.
    pub cpu: &'a [Point],
    /// `MemoryUtilization`, oldest first.
    pub memory: &'a [Point],
}

impl Metrics<'_> {
    fn of(&self, m: TrackedMetric) -> &[Point] {
        match m {
            TrackedMetric::Cpu => self.cpu,
            TrackedMetric::Memory => self.memory,
        }
    }
}

/// A target tracking policy, as the scaler needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackingPolicy {
    /// The policy's name.
    pub name: String,
    /// What it tracks.
    pub metric: TrackedMetric,
    /// `TargetValue`.
    pub target_value: f64,
    /// `ScaleOutCooldown` in ms.
    pub scale_out_cooldown_ms: i64,
    /// `ScaleInCooldown` in ms.
    pub scale_in_cooldown_ms: i64,
    /// `DisableScaleIn`.
    pub disable_scale_in: bool,
}

/// How the alarms behind a policy evaluate (CloudWatch's: 1-minute periods, 3 datapoints
/// above the target to scale out, 15 below 90% of it to scale in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evaluation {
    /// The metric period in ms.
    pub period_ms: i64,
    /// Consecutive datapoints above the target that scale out.
    pub out_datapoints: usize,
    /// Consecutive datapoints below 90% of the target that scale in.
    pub in_datapoints: usize,
}

impl Default for Evaluation {
    fn default() -> Evaluation {
        Evaluation {
            period_ms: 60_000,
            out_datapoints: 3,
            in_datapoints: 15,
        }
    }
}

/// The fraction of the target under which the low alarm fires.
pub const SCALE_IN_THRESHOLD: f64 = 0.9;

/// The last scale-out: when, and the capacity it started from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScaleOutMark {
    /// When it happened (epoch ms).
    pub at_ms: i64,
    /// The desired count before it.
    pub capacity_before: i32,
}

/// A scalable target and its service, as the scaler sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetView {
    /// `MinCapacity`.
    pub min: i32,
    /// `MaxCapacity`.
    pub max: i32,
    /// The service's desiredCount.
    pub current: i32,
    /// `DynamicScalingOutSuspended`.
    pub scale_out_suspended: bool,
    /// `DynamicScalingInSuspended`.
    pub scale_in_suspended: bool,
    /// A deployment is rolling out: ECS services do not scale in meanwhile.
    pub deployment_in_progress: bool,
    /// The last scale-out by a policy.
    pub last_scale_out: Option<ScaleOutMark>,
    /// The last scale-in by a policy (epoch ms).
    pub last_scale_in_ms: Option<i64>,
}

/// Which way a decision goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// More tasks (the high alarm).
    Out,
    /// Fewer tasks (the low alarm).
    In,
}

/// What the scaler decided, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The new desiredCount.
    pub desired: i32,
    /// Out or in.
    pub direction: Direction,
    /// The policy whose alarm triggered it (the one asking for the most capacity).
    pub policy: String,
    /// The metric value that triggered it.
    pub metric_value: f64,
}

/// The last `n` datapoints, if the metric has them fresh and without gaps: the newest
/// period started no more than three periods ago (a period's point exists once it has
/// ended and been sealed), each within 1.5 periods of the next. Otherwise the alarm is in
/// INSUFFICIENT_DATA.
fn recent<'a>(
    points: &'a [Point],
    n: usize,
    eval: &Evaluation,
    now_ms: i64,
) -> Option<&'a [Point]> {
    if n == 0 || points.len() < n {
        return None;
    }
    let last = &points[points.len() - n..];
    let newest = last.last()?;
    if newest.timestamp_ms > now_ms || now_ms - newest.timestamp_ms > 3 * eval.period_ms {
        return None;
    }
    let gapless = last.windows(2).all(|w| {
        w[1].timestamp_ms > w[0].timestamp_ms
            && (w[1].timestamp_ms - w[0].timestamp_ms) * 2 <= 3 * eval.period_ms
    });
    let finite = last.iter().all(|p| p.value.is_finite() && p.value >= 0.0);
    (gapless && finite).then_some(last)
}

/// `ceil(current * value / target)`, tolerant of float noise, saturating.
fn proportional(current: i32, value: f64, target: f64) -> i32 {
    let x = f64::from(current) * value / target;
    let c = (x - 1e-9).ceil();
    if c >= f64::from(i32::MAX) {
        i32::MAX
    } else if c <= 0.0 {
        0
    } else {
        // In range and whole: the cast is exact.
        #[allow(clippy::cast_possible_truncation)]
        let v = c as i32;
        v
    }
}

/// Decide a target tracking change for one scalable target at `now_ms`, or nothing.
pub fn plan_target_tracking(
    target: &TargetView,
    policies: &[TrackingPolicy],
    metrics: Metrics<'_>,
    eval: &Evaluation,
    now_ms: i64,
) -> Option<Decision> {
    let (min, max) = (target.min, target.max.max(target.min));
    let current = target.current;
    if current <= 0 {
        // No task, no datapoint: target tracking cannot act on an empty service.
        return None;
    }
    let in_out_cooldown = |p: &TrackingPolicy| {
        target
            .last_scale_out
            .is_some_and(|m| now_ms < m.at_ms.saturating_add(p.scale_out_cooldown_ms))
    };

    // Scale out: any policy whose high alarm is in ALARM; the largest capacity wins.
    if !target.scale_out_suspended {
        let mut best: Option<Decision> = None;
        for p in policies.iter().filter(|p| p.target_value > 0.0) {
            let Some(window) = recent(metrics.of(p.metric), eval.out_datapoints, eval, now_ms)
            else {
                continue;
            };
            if !window.iter().all(|pt| pt.value > p.target_value) {
                continue;
            }
            let value = window.last().map_or(0.0, |pt| pt.value);
            // During the scale-out cooldown the metric still describes the capacity the
            // last scale-out started from: the tasks it added count as already there.
            let base = match target.last_scale_out {
                Some(m) if in_out_cooldown(p) => m.capacity_before.max(1),
                _ => current,
            };
            let desired = proportional(base, value, p.target_value).clamp(min, max);
            if desired > current && best.as_ref().is_none_or(|b| desired > b.desired) {
                best = Some(Decision {
                    desired,
                    direction: Direction::Out,
                    policy: p.name.clone(),
                    metric_value: value,
                });
            }
        }
        if best.is_some() {
            return best;
        }
    }

    // Scale in: only if every policy that may scale in has its low alarm in ALARM and is out
    // of both cooldowns; keep the largest capacity any of them asks for.
    if target.scale_in_suspended || target.deployment_in_progress {
        return None;
    }
    let mut asking: Option<Decision> = None;
    let mut any = false;
    for p in policies.iter().filter(|p| !p.disable_scale_in) {
        any = true;
        if p.target_value <= 0.0 || in_out_cooldown(p) {
            return None;
        }
        if target
            .last_scale_in_ms
            .is_some_and(|t| now_ms < t.saturating_add(p.scale_in_cooldown_ms))
        {
            return None;
        }
        let window = recent(metrics.of(p.metric), eval.in_datapoints, eval, now_ms)?;
        let threshold = p.target_value * SCALE_IN_THRESHOLD;
        if !window.iter().all(|pt| pt.value < threshold) {
            return None;
        }
        let value = window.last().map_or(0.0, |pt| pt.value);
        let desired = proportional(current, value, p.target_value).clamp(min, max);
        if asking.as_ref().is_none_or(|a| desired > a.desired) {
            asking = Some(Decision {
                desired,
                direction: Direction::In,
                policy: p.name.clone(),
                metric_value: value,
            });
        }
    }
    if !any {
        return None;
    }
    asking.filter(|d| d.desired < current)
}

#[cfg(test)]
mod tests;
