use super::*;
use proptest::prelude::*;

const MIN: i64 = 60_000;

fn policy(target: f64) -> TrackingPolicy {
    TrackingPolicy {
        name: "cpu50".into(),
        metric: TrackedMetric::Cpu,
        target_value: target,
        scale_out_cooldown_ms: 5 * MIN,
        scale_in_cooldown_ms: 5 * MIN,
        disable_scale_in: false,
    }
}

fn view(min: i32, max: i32, current: i32) -> TargetView {
    TargetView {
        min,
        max,
        current,
        scale_out_suspended: false,
        scale_in_suspended: false,
        deployment_in_progress: false,
        last_scale_out: None,
        last_scale_in_ms: None,
    }
}

/// `n` one-minute points of `value`, the newest at `now - 1 min`.
fn flat(value: f64, n: usize, now: i64) -> Vec<Point> {
    (0..n)
        .map(|i| Point {
            timestamp_ms: now - MIN * i64::try_from(n - i).unwrap(),
            value,
        })
        .collect()
}

const NOW: i64 = 1_800_000_000_000;

fn decide(v: &TargetView, p: &[TrackingPolicy], cpu: &[Point]) -> Option<Decision> {
    plan_target_tracking(
        v,
        p,
        Metrics { cpu, memory: &[] },
        &Evaluation::default(),
        NOW,
    )
}

#[test]
fn scales_out_proportionally_after_three_high_points() {
    let p = [policy(50.0)];
    let d = decide(&view(1, 10, 2), &p, &flat(90.0, 3, NOW)).unwrap();
    assert_eq!(d.direction, Direction::Out);
    assert_eq!(d.desired, 4, "ceil(2 * 90 / 50)");
    assert_eq!(d.policy, "cpu50");
    // Two high points are not enough (the alarm needs 3 of 3).
    let mut two = flat(40.0, 1, NOW - 2 * MIN);
    two.extend(flat(90.0, 2, NOW));
    assert_eq!(decide(&view(1, 10, 2), &p, &two), None);
    // Never above MaxCapacity.
    let d = decide(&view(1, 3, 2), &p, &flat(100.0, 3, NOW)).unwrap();
    assert_eq!(d.desired, 3);
    assert_eq!(decide(&view(1, 3, 3), &p, &flat(100.0, 3, NOW)), None);
}

#[test]
fn scales_in_only_after_fifteen_low_points() {
    let p = [policy(50.0)];
    assert_eq!(decide(&view(1, 10, 4), &p, &flat(10.0, 14, NOW)), None);
    let d = decide(&view(1, 10, 4), &p, &flat(10.0, 15, NOW)).unwrap();
    assert_eq!(d.direction, Direction::In);
    assert_eq!(d.desired, 1, "ceil(4 * 10 / 50)");
    // Never below MinCapacity.
    let d = decide(&view(2, 10, 4), &p, &flat(1.0, 15, NOW)).unwrap();
    assert_eq!(d.desired, 2);
    // Between 90% of the target and the target nothing happens.
    assert_eq!(decide(&view(1, 10, 4), &p, &flat(46.0, 15, NOW)), None);
    assert_eq!(decide(&view(1, 10, 4), &p, &flat(50.0, 15, NOW)), None);
    // DisableScaleIn.
    let mut no_in = policy(50.0);
    no_in.disable_scale_in = true;
    assert_eq!(decide(&view(1, 10, 4), &[no_in], &flat(1.0, 15, NOW)), None);
}

#[test]
fn no_data_no_action() {
    let p = [policy(50.0)];
    assert_eq!(decide(&view(1, 10, 2), &p, &[]), None);
    // Stale: the newest point is 5 minutes old.
    assert_eq!(
        decide(&view(1, 10, 2), &p, &flat(90.0, 3, NOW - 4 * MIN)),
        None
    );
    // A gap in the series.
    let mut gappy = flat(90.0, 2, NOW - 5 * MIN);
    gappy.extend(flat(90.0, 1, NOW));
    assert_eq!(decide(&view(1, 10, 2), &p, &gappy), None);
    // An empty service has no datapoints to act on.
    assert_eq!(decide(&view(0, 10, 0), &p, &flat(90.0, 3, NOW)), None);
    // NaN is no datapoint.
    assert_eq!(decide(&view(1, 10, 2), &p, &flat(f64::NAN, 3, NOW)), None);
}

#[test]
fn cooldowns_and_suspension() {
    let p = [policy(50.0)];
    // Within the scale-out cooldown, the tasks just added count: 2 -> 4 at 90%, and 90%
    // again (the metric still describes 2 tasks) asks for 4 again: nothing.
    let mut v = view(1, 10, 4);
    v.last_scale_out = Some(ScaleOutMark {
        at_ms: NOW - MIN,
        capacity_before: 2,
    });
    assert_eq!(decide(&v, &p, &flat(90.0, 3, NOW)), None);
    // ...but a load that needs more still scales out.
    let d = decide(&v, &p, &flat(200.0, 3, NOW)).unwrap();
    assert_eq!(d.desired, 8);
    // No scale-in during the scale-out cooldown.
    assert_eq!(decide(&v, &p, &flat(1.0, 15, NOW)), None);
    // No scale-in during the scale-in cooldown, but scale-out is immediate.
    let mut v = view(1, 10, 4);
    v.last_scale_in_ms = Some(NOW - MIN);
    assert_eq!(decide(&v, &p, &flat(1.0, 15, NOW)), None);
    assert_eq!(decide(&v, &p, &flat(90.0, 3, NOW)).unwrap().desired, 8);
    // Suspension.
    let mut v = view(1, 10, 4);
    v.scale_out_suspended = true;
    assert_eq!(decide(&v, &p, &flat(90.0, 3, NOW)), None);
    let mut v = view(1, 10, 4);
    v.scale_in_suspended = true;
    assert_eq!(decide(&v, &p, &flat(1.0, 15, NOW)), None);
    let mut v = view(1, 10, 4);
    v.deployment_in_progress = true;
    assert_eq!(decide(&v, &p, &flat(1.0, 15, NOW)), None);
}

#[test]
fn several_policies_out_if_any_in_if_all() {
    let cpu = policy(50.0);
    let mut mem = policy(50.0);
    mem.name = "mem50".into();
    mem.metric = TrackedMetric::Memory;
    let ps = [cpu, mem];
    let run = |current: i32, c: f64, m: f64, n: usize| {
        let (c, m) = (flat(c, n, NOW), flat(m, n, NOW));
        plan_target_tracking(
            &view(1, 10, current),
            &ps,
            Metrics {
                cpu: &c,
                memory: &m,
            },
            &Evaluation::default(),
            NOW,
        )
    };
    let d = run(2, 60.0, 150.0, 3).unwrap();
    assert_eq!((d.desired, d.policy.as_str()), (6, "mem50"));
    // CPU low but memory at target: no scale-in.
    assert_eq!(run(4, 5.0, 48.0, 15), None);
    // Both low: the larger capacity wins.
    let d = run(4, 5.0, 30.0, 15).unwrap();
    assert_eq!((d.desired, d.policy.as_str()), (3, "mem50"));
}

proptest! {
    #[test]
    fn never_outside_bounds_and_monotone_in_the_metric(
        min in 0i32..5, span in 0i32..20, current in 1i32..30,
        a in 0.0f64..400.0, b in 0.0f64..400.0, target in 1.0f64..100.0,
        n in 0usize..20,
    ) {
        let max = min + span;
        let v = view(min, max, current);
        let p = [policy(target)];
        let result = |x: f64| decide(&v, &p, &flat(x, n, NOW)).map_or(current, |d| d.desired);
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        for x in [lo, hi] {
            if let Some(d) = decide(&v, &p, &flat(x, n, NOW)) {
                prop_assert!(d.desired >= min && d.desired <= max, "{d:?}");
                prop_assert_ne!(d.desired, current);
            }
        }
        prop_assert!(result(lo) <= result(hi), "lo {lo} -> {}, hi {hi} -> {}", result(lo), result(hi));
    }

    #[test]
    fn no_scale_in_within_a_cooldown(
        current in 2i32..30, x in 0.0f64..400.0, since in 0i64..(5 * MIN), out in proptest::bool::ANY,
    ) {
        let mut v = view(1, 50, current);
        if out {
            v.last_scale_out = Some(ScaleOutMark { at_ms: NOW - since, capacity_before: current / 2 });
        } else {
            v.last_scale_in_ms = Some(NOW - since);
        }
        let p = [policy(50.0)];
        if let Some(d) = decide(&v, &p, &flat(x, 20, NOW)) {
            prop_assert_eq!(d.direction, Direction::Out);
            prop_assert!(d.desired > current);
        }
    }
}

/// A service under a load: `load(t)` is the CPU the work needs, in percent of one task's
/// reservation; with `n` tasks each is at `load / n` (at most 100%). Every minute the
/// scaler decides; new tasks take a minute to start carrying load.
fn simulate(load: impl Fn(i64) -> f64, minutes: i64, min: i32, max: i32) -> Vec<i32> {
    let p = [TrackingPolicy {
        scale_out_cooldown_ms: 2 * MIN,
        scale_in_cooldown_ms: 5 * MIN,
        ..policy(50.0)
    }];
    let eval = Evaluation::default();
    let mut desired = min.max(1);
    let mut running = desired;
    let mut points: Vec<Point> = Vec::new();
    let mut last_out = None;
    let mut last_in = None;
    let mut history = Vec::new();
    for minute in 0..minutes {
        let now = NOW + minute * MIN;
        let per_task = (load(minute) / f64::from(running.max(1))).min(100.0);
        points.push(Point {
            timestamp_ms: now - MIN,
            value: per_task,
        });
        // Tasks asked for a minute ago are running now.
        running = desired;
        let v = TargetView {
            min,
            max,
            current: desired,
            scale_out_suspended: false,
            scale_in_suspended: false,
            deployment_in_progress: false,
            last_scale_out: last_out,
            last_scale_in_ms: last_in,
        };
        if let Some(d) = plan_target_tracking(
            &v,
            &p,
            Metrics {
                cpu: &points,
                memory: &[],
            },
            &eval,
            now,
        ) {
            match d.direction {
                Direction::Out => {
                    last_out = Some(ScaleOutMark {
                        at_ms: now,
                        capacity_before: desired,
                    });
                }
                Direction::In => last_in = Some(now),
            }
            desired = d.desired;
        }
        assert!(
            desired >= min && desired <= max,
            "bounds at minute {minute}"
        );
        history.push(desired);
    }
    history
}

/// How often the capacity changed direction (out then in, or in then out).
fn reversals(history: &[i32]) -> usize {
    let mut dirs = history
        .windows(2)
        .filter(|w| w[0] != w[1])
        .map(|w| w[1] > w[0])
        .collect::<Vec<_>>();
    dirs.dedup();
    dirs.len().saturating_sub(1)
}

#[test]
fn simulation_step_load_scales_out_then_holds() {
    // 40% of one task, then 300% from minute 10 on.
    let h = simulate(|m| if m < 10 { 40.0 } else { 300.0 }, 90, 1, 10);
    assert_eq!(h[9], 1);
    // Out within a few periods of the step (3 datapoints + a minute for tasks to start).
    assert!(h[16] > 1, "{h:?}");
    let settled = *h.last().unwrap();
    assert!(
        (6..=7).contains(&settled),
        "300% at a 50% target needs 6 tasks: {h:?}"
    );
    assert_eq!(reversals(&h), 0, "{h:?}");
    // Steady at the end: the last 30 minutes do not change.
    assert!(h[60..].iter().all(|&d| d == settled), "{h:?}");
}

#[test]
fn simulation_spike_scales_out_and_back_in_once() {
    // A 20-minute spike to 400%, otherwise 30%.
    let h = simulate(
        |m| if (10..30).contains(&m) { 400.0 } else { 30.0 },
        120,
        1,
        10,
    );
    let peak = *h.iter().max().unwrap();
    assert!(peak >= 8, "{h:?}");
    assert_eq!(
        *h.last().unwrap(),
        1,
        "back to one task after the spike: {h:?}"
    );
    assert_eq!(reversals(&h), 1, "out, then in: {h:?}");
    // Scale-in waited for 15 low datapoints after the spike ended (minutes 30 to 44).
    let first_lower = (30..120).find(|&m| h[m] < peak).unwrap();
    assert!(first_lower >= 30 + 14, "{first_lower}: {h:?}");
}

#[test]
fn simulation_slow_ramp_only_scales_out() {
    // From 20% to 450% over two hours.
    let h = simulate(|m| 20.0 + 430.0 * (m as f64) / 120.0, 130, 1, 12);
    assert!(*h.last().unwrap() >= 9, "{h:?}");
    assert_eq!(reversals(&h), 0, "{h:?}");
    assert!(h.windows(2).all(|w| w[1] >= w[0]), "{h:?}");
}

#[test]
fn simulation_steady_load_never_oscillates() {
    for load in [10.0, 45.0, 55.0, 120.0, 260.0, 1000.0] {
        let h = simulate(|_| load, 180, 1, 6);
        assert!(reversals(&h) == 0, "{load}: {h:?}");
        let settled = *h.last().unwrap();
        assert!(h[60..].iter().all(|&d| d == settled), "{load}: {h:?}");
        if load > 50.0 * 6.0 {
            assert_eq!(settled, 6, "held at MaxCapacity");
        }
    }
}
