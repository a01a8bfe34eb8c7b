//! The service scheduler's decision, as a pure function: given a service, its deployments,
//! its tasks and the time, what to start, what to stop, and how each deployment stands.
//!
//! REPLICA rules, from ECS's rolling-update documentation:
//! - never more than `floor(desired × maximumPercent / 100)` tasks RUNNING or PENDING;
//! - never fewer than `ceil(desired × minimumHealthyPercent / 100)` healthy tasks, except when
//!   tasks fail on their own;
//! - new tasks belong to the PRIMARY (newest) deployment; older deployments drain;
//! - a task whose essential container is UNHEALTHY is replaced once past the grace period;
//! - the deployment circuit breaker fails a deployment after `clamp(ceil(desired / 2), 3, 200)`
//!   failed tasks, counted until the deployment has a task running successfully;
//! - tasks that keep failing to start are retried with growing delays (throttling).
//!
//! A task of the PRIMARY deployment counts toward minimumHealthyPercent (so that old tasks may
//! be stopped in its place) and toward the deployment's completion once it has been RUNNING —
//! and HEALTHY, if it has essential health checks — for [`HEALTHY_AFTER_MS`]. ECS waits 40 s
//! for tasks without health checks; Berth waits less so that deployments stay quick, but long
//! enough that a new task that dies as it starts never lets the scheduler stop a good one.

/// What the planner needs to know about one task of the service.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskView {
    /// Task id.
    pub id: String,
    /// The deployment that started it.
    pub deployment: String,
    /// Desired status is RUNNING (not being stopped).
    pub desired_running: bool,
    /// Last status is RUNNING.
    pub running: bool,
    /// STOPPED.
    pub stopped: bool,
    /// Counts toward minimumHealthyPercent.
    pub healthy: bool,
    /// An essential container failed its health checks.
    pub unhealthy: bool,
    /// When it reached RUNNING (epoch ms).
    pub started_at_ms: Option<i64>,
    /// When it stopped (epoch ms).
    pub stopped_at_ms: Option<i64>,
    /// It stopped on its own (not by the scheduler or a user) — a failure.
    pub failed: bool,
    /// The instance it runs on (for DAEMON services).
    pub instance: Option<String>,
    /// Its instance's agent has stopped talking to the server: the task is presumed lost.
    pub lost: bool,
    /// When its agent last reported (epoch ms): what the server knows of the task is true as
    /// of then, not as of `now`. `None`: as of now.
    pub seen_at_ms: Option<i64>,
}

/// One deployment as the planner sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentView {
    /// `ecs-svc/...`.
    pub id: String,
    /// Is this the PRIMARY deployment.
    pub primary: bool,
    /// IN_PROGRESS, COMPLETED or FAILED.
    pub rollout: Rollout,
    /// Failed tasks counted by the circuit breaker.
    pub failed_tasks: i32,
    /// The deployment has had a task running successfully (breaker stops counting).
    pub proven: bool,
    /// Created (epoch ms).
    pub created_at_ms: i64,
    /// Started by the circuit breaker to roll back a failed deployment.
    pub rollback: bool,
}

/// A deployment's rollout state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rollout {
    /// Still rolling out.
    InProgress,
    /// Reached its desired count, old deployments gone.
    Completed,
    /// Stopped by the circuit breaker.
    Failed,
}

/// The service's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceView {
    /// Name (for event text).
    pub name: String,
    /// desiredCount (DAEMON: the number of eligible instances).
    pub desired: i32,
    /// maximumPercent.
    pub max_percent: i32,
    /// minimumHealthyPercent.
    pub min_percent: i32,
    /// Circuit breaker enabled.
    pub breaker: bool,
    /// Roll back when the breaker trips.
    pub rollback: bool,
    /// healthCheckGracePeriodSeconds, in ms.
    pub grace_ms: i64,
    /// Consecutive tasks that failed to start (throttling).
    pub start_failures: u32,
    /// No launches before this time (throttling).
    pub launch_not_before_ms: i64,
    /// The service is DRAINING (deleted): stop everything.
    pub draining: bool,
    /// DAEMON: eligible instances; a task per instance.
    pub daemon_instances: Option<Vec<String>>,
}

/// Something the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Start `count` tasks for `deployment` (DAEMON: on `instance`).
    Launch {
        /// Deployment id.
        deployment: String,
        /// How many.
        count: i32,
        /// DAEMON target instance.
        instance: Option<String>,
    },
    /// Stop a task with this reason (stop code ServiceSchedulerInitiated).
    Stop {
        /// Task id.
        task: String,
        /// stoppedReason.
        reason: String,
    },
    /// Change a deployment's rollout state.
    Rollout {
        /// Deployment id.
        deployment: String,
        /// New state.
        state: Rollout,
        /// rolloutStateReason.
        reason: String,
    },
    /// The circuit breaker tripped and the service rolls back to the last completed deployment.
    RollBack {
        /// The failed deployment.
        failed: String,
    },
    /// Drop a drained, non-primary deployment.
    Retire {
        /// Deployment id.
        deployment: String,
    },
    /// Record a failed task for the breaker / mark a deployment proven.
    Breaker {
        /// Deployment id.
        deployment: String,
        /// New failed count.
        failed_tasks: i32,
        /// Proven.
        proven: bool,
    },
    /// Update throttling.
    Throttle {
        /// Consecutive start failures.
        start_failures: u32,
        /// No launches before.
        not_before_ms: i64,
    },
    /// A service event message.
    Event(String),
}

/// The circuit breaker's threshold for a desired count (the current API reference: half the
/// desired count, at least 3, at most 200).
pub fn breaker_threshold(desired: i32) -> i32 {
    ((desired + 1) / 2).clamp(3, 200)
}

/// How long to wait before the next launch after `failures` consecutive failed starts:
/// nothing for the first three, then doubling from 5 s up to ECS's 15 minutes.
pub fn throttle_delay_ms(failures: u32) -> i64 {
    if failures < 3 {
        0
    } else {
        let exp = (failures - 3).min(10);
        (5_000_i64 << exp).min(15 * 60 * 1000)
    }
}

/// How long a task must have been RUNNING (and healthy) for its deployment to count as
/// proven, so that later failures no longer count toward the breaker.
pub const PROVEN_AFTER_MS: i64 = 5_000;

/// How long a new (PRIMARY) task must have been RUNNING and healthy before it counts toward
/// minimumHealthyPercent and toward its deployment's completion.
pub const HEALTHY_AFTER_MS: i64 = 5_000;

fn upper_bound(desired: i32, max_percent: i32) -> i32 {
    (i64::from(desired) * i64::from(max_percent) / 100)
        .try_into()
        .unwrap_or(i32::MAX)
}

fn lower_bound(desired: i32, min_percent: i32) -> i32 {
    let v = i64::from(desired) * i64::from(min_percent);
    ((v + 99) / 100).try_into().unwrap_or(i32::MAX)
}

fn n(v: usize) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// Plan one reconcile pass.
pub fn plan(
    s: &ServiceView,
    deployments: &[DeploymentView],
    tasks: &[TaskView],
    now_ms: i64,
) -> Vec<Action> {
    let mut out = Vec::new();
    let Some(primary) = deployments.iter().find(|d| d.primary) else {
        return out;
    };
    let live = |t: &&TaskView| t.desired_running && !t.stopped;

    if s.draining {
        for t in tasks.iter().filter(live) {
            out.push(Action::Stop {
                task: t.id.clone(),
                reason: "Service is being deleted".into(),
            });
        }
        return out;
    }

    // Circuit breaker and throttling bookkeeping from tasks that stopped on their own.
    let mut breaker_tripped = false;
    for d in deployments
        .iter()
        .filter(|d| d.rollout == Rollout::InProgress)
    {
        let failed = n(tasks
            .iter()
            .filter(|t| t.deployment == d.id && t.failed)
            .count());
        let proven = d.proven
            || tasks.iter().any(|t| {
                t.deployment == d.id
                    && t.running
                    && t.healthy
                    && !t.stopped
                    && t.started_at_ms
                        .is_some_and(|st| observed(t, now_ms) - st >= PROVEN_AFTER_MS)
            });
        let counted = if d.proven { d.failed_tasks } else { failed };
        if counted != d.failed_tasks || proven != d.proven {
            out.push(Action::Breaker {
                deployment: d.id.clone(),
                failed_tasks: counted,
                proven,
            });
        }
        if d.primary && s.breaker && !proven && counted >= breaker_threshold(s.desired) {
            breaker_tripped = true;
            out.push(Action::Rollout {
                deployment: d.id.clone(),
                state: Rollout::Failed,
                reason: "ECS deployment circuit breaker: tasks failed to start.".into(),
            });
            out.push(Action::Event(format!(
                "(service {}) (deployment {}) deployment failed: tasks failed to start.",
                s.name, d.id
            )));
            // A rollback that fails too is not rolled back again: the service would loop
            // between two deployments that cannot work. It stays FAILED for the user to fix.
            if s.rollback && !d.rollback {
                out.push(Action::RollBack {
                    failed: d.id.clone(),
                });
            }
        }
    }
    if breaker_tripped {
        return out;
    }

    // Tasks on an instance whose agent is gone are replaced elsewhere; the agent, if it comes
    // back, stops them when it sees their desired status.
    let mut stopping: Vec<&str> = Vec::new();
    for t in tasks.iter().filter(live).filter(|t| t.lost) {
        out.push(Action::Stop {
            task: t.id.clone(),
            reason: "Task stopped because the agent of its container instance is disconnected"
                .into(),
        });
        stopping.push(&t.id);
    }
    // Health: replace essential-unhealthy tasks past the grace period.
    for t in tasks.iter().filter(live).filter(|t| !t.lost) {
        let past_grace = t.started_at_ms.is_none_or(|st| now_ms - st >= s.grace_ms);
        if t.unhealthy && past_grace {
            out.push(Action::Stop {
                task: t.id.clone(),
                reason: "Task failed container health checks".into(),
            });
            out.push(Action::Event(format!(
                "(service {}) (task {}) failed container health checks.",
                s.name, t.id
            )));
            stopping.push(&t.id);
        }
    }
    let active: Vec<&TaskView> = tasks
        .iter()
        .filter(live)
        .filter(|t| !stopping.contains(&t.id.as_str()))
        .collect();

    if let Some(instances) = &s.daemon_instances {
        return plan_daemon(
            s,
            primary,
            deployments,
            tasks,
            instances,
            &active,
            now_ms,
            out,
        );
    }

    let desired = s.desired.max(0);
    let max_total =
        upper_bound(desired, s.max_percent).max(if s.max_percent >= 100 { desired } else { 0 });
    let min_healthy = lower_bound(desired, s.min_percent);
    let (mut prim, old): (Vec<&TaskView>, Vec<&TaskView>) =
        active.iter().partition(|t| t.deployment == primary.id);
    // New tasks count once they have stayed up a while: one that is RUNNING for an instant
    // before it crashes must not let an old, good task be stopped in its place.
    let healthy_prim = n(prim.iter().filter(|t| settled(t, now_ms)).count());
    let healthy_old = n(old.iter().filter(|t| t.healthy).count());
    let total = n(prim.len() + old.len());
    let _ = healthy_old;

    // Scale in (or a FAILED primary without rollback keeps what it has but launches nothing).
    let mut stops: Vec<(&TaskView, String)> = Vec::new();
    if n(prim.len()) > desired {
        // Prefer stopping tasks that are not running yet, then the newest.
        prim.sort_by_key(|t| (t.running, t.healthy, std::cmp::Reverse(t.started_at_ms)));
        let excess = usize::try_from(n(prim.len()) - desired).unwrap_or(0);
        for t in prim.iter().take(excess) {
            stops.push((
                t,
                format!("Scaling activity initiated by (deployment {})", primary.id),
            ));
        }
    }

    // Launch for the primary within maximumPercent.
    let prim_after = n(prim.len()) - n(stops.len());
    let want = desired - prim_after;
    let room = max_total - (total - n(stops.len()));
    let mut launched = 0;
    if want > 0
        && room > 0
        && primary.rollout != Rollout::Failed
        && now_ms >= s.launch_not_before_ms
    {
        launched = want.min(room);
        out.push(Action::Launch {
            deployment: primary.id.clone(),
            count: launched,
            instance: None,
        });
    }

    // Drain old deployments without going under minimumHealthyPercent.
    if !old.is_empty() {
        let mut old_sorted = old.clone();
        old_sorted.sort_by_key(|t| (t.healthy, t.running));
        let mut healthy_total = healthy_prim + healthy_old;
        let prim_done = healthy_prim >= desired;
        for t in old_sorted {
            if prim_done {
                stops.push((
                    t,
                    format!("Scaling activity initiated by (deployment {})", primary.id),
                ));
                continue;
            }
            // Unhealthy or pending old tasks never count toward the minimum; healthy ones may
            // go while the healthy total stays at or above it.
            if !t.healthy {
                stops.push((
                    t,
                    format!("Scaling activity initiated by (deployment {})", primary.id),
                ));
            } else if healthy_total > min_healthy {
                healthy_total -= 1;
                stops.push((
                    t,
                    format!("Scaling activity initiated by (deployment {})", primary.id),
                ));
            }
        }
        if launched == 0 && stops.is_empty() && want > 0 && room <= 0 {
            out.push(Action::Event(format!(
                "(service {}) was unable to stop or start tasks during a deployment because of the service deployment configuration. Update the minimumHealthyPercent or maximumPercent value and try again.",
                s.name
            )));
        }
    }
    for (t, reason) in &stops {
        out.push(Action::Stop {
            task: t.id.clone(),
            reason: reason.clone(),
        });
    }

    let ready = healthy_prim >= desired && n(prim.len()) == desired;
    lifecycle(s, primary, deployments, tasks, ready, &mut out);
    out
}

/// Retire older deployments that have no tasks left, and complete the primary once it is
/// `ready` (its tasks all up and healthy) and no older deployment has tasks.
fn lifecycle(
    s: &ServiceView,
    primary: &DeploymentView,
    deployments: &[DeploymentView],
    tasks: &[TaskView],
    ready: bool,
    out: &mut Vec<Action>,
) {
    for d in deployments.iter().filter(|d| !d.primary) {
        let remaining = tasks
            .iter()
            .filter(|t| t.deployment == d.id && !t.stopped)
            .count();
        // A deployment the circuit breaker failed stays listed (ACTIVE, rolloutState FAILED)
        // while the deployment that replaced it (the rollback) is in progress, as on ECS.
        let shown = d.rollout == Rollout::Failed && primary.rollout == Rollout::InProgress;
        if remaining == 0 && !shown {
            out.push(Action::Retire {
                deployment: d.id.clone(),
            });
        }
    }
    let olds_left = deployments
        .iter()
        .any(|d| !d.primary && tasks.iter().any(|t| t.deployment == d.id && !t.stopped));
    if primary.rollout == Rollout::InProgress && ready && !olds_left {
        out.push(Action::Rollout {
            deployment: primary.id.clone(),
            state: Rollout::Completed,
            reason: format!("ECS deployment {} completed.", primary.id),
        });
        out.push(Action::Event(format!(
            "(service {}) (deployment {}) deployment completed.",
            s.name, primary.id
        )));
    }
}

/// Whether a task is known to have been RUNNING and healthy for [`HEALTHY_AFTER_MS`]: its
/// agent said so at least that long after it started. A task on an agent that went quiet
/// is not assumed to have kept running (it may have crashed unreported).
fn settled(t: &TaskView, now_ms: i64) -> bool {
    t.healthy
        && t.started_at_ms
            .is_some_and(|st| observed(t, now_ms) - st >= HEALTHY_AFTER_MS)
}

/// As of when the server's knowledge of the task holds.
fn observed(t: &TaskView, now_ms: i64) -> i64 {
    t.seen_at_ms.map_or(now_ms, |s| s.min(now_ms))
}

#[allow(clippy::too_many_arguments)]
fn plan_daemon(
    s: &ServiceView,
    primary: &DeploymentView,
    deployments: &[DeploymentView],
    tasks: &[TaskView],
    instances: &[String],
    active: &[&TaskView],
    now_ms: i64,
    mut out: Vec<Action>,
) -> Vec<Action> {
    let mut stopped_any = false;
    for t in active {
        let eligible = t.instance.as_ref().is_some_and(|i| instances.contains(i));
        if !eligible {
            out.push(Action::Stop {
                task: t.id.clone(),
                reason: "Instance is no longer eligible for the daemon service".into(),
            });
            stopped_any = true;
        } else if t.deployment != primary.id {
            out.push(Action::Stop {
                task: t.id.clone(),
                reason: format!("Scaling activity initiated by (deployment {})", primary.id),
            });
            stopped_any = true;
        }
    }
    // Throttled (tasks keep failing to start): the shell re-plans after the delay.
    let may_launch = now_ms >= s.launch_not_before_ms && primary.rollout != Rollout::Failed;
    let mut launched_any = false;
    for i in instances {
        let has = active.iter().any(|t| t.instance.as_ref() == Some(i));
        if !has && may_launch {
            out.push(Action::Launch {
                deployment: primary.id.clone(),
                count: 1,
                instance: Some(i.clone()),
            });
            launched_any = true;
        }
    }
    // Complete once every eligible instance runs one settled task of the primary.
    let ready = !stopped_any
        && !launched_any
        && active.len() == instances.len()
        && instances.iter().all(|i| {
            active.iter().any(|t| {
                t.instance.as_ref() == Some(i) && t.deployment == primary.id && settled(t, now_ms)
            })
        });
    lifecycle(s, primary, deployments, tasks, ready, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn svc(desired: i32, max: i32, min: i32) -> ServiceView {
        ServiceView {
            name: "web".into(),
            desired,
            max_percent: max,
            min_percent: min,
            breaker: true,
            rollback: true,
            grace_ms: 0,
            start_failures: 0,
            launch_not_before_ms: 0,
            draining: false,
            daemon_instances: None,
        }
    }

    fn dep(id: &str, primary: bool) -> DeploymentView {
        DeploymentView {
            id: id.into(),
            primary,
            rollout: Rollout::InProgress,
            failed_tasks: 0,
            proven: false,
            created_at_ms: 0,
            rollback: false,
        }
    }

    fn task(id: &str, d: &str, running: bool) -> TaskView {
        TaskView {
            id: id.into(),
            deployment: d.into(),
            desired_running: true,
            running,
            stopped: false,
            healthy: running,
            unhealthy: false,
            started_at_ms: running.then_some(0),
            stopped_at_ms: None,
            failed: false,
            instance: None,
            lost: false,
            seen_at_ms: None,
        }
    }

    #[test]
    fn thresholds() {
        assert_eq!(breaker_threshold(1), 3);
        assert_eq!(breaker_threshold(25), 13);
        assert_eq!(breaker_threshold(1000), 200);
        assert_eq!(upper_bound(4, 200), 8);
        assert_eq!(upper_bound(3, 125), 3);
        assert_eq!(lower_bound(4, 50), 2);
        assert_eq!(lower_bound(2, 75), 2);
        assert_eq!(throttle_delay_ms(2), 0);
        assert_eq!(throttle_delay_ms(3), 5_000);
        assert_eq!(throttle_delay_ms(40), 15 * 60 * 1000);
    }

    #[test]
    fn fresh_service_launches_desired() {
        let a = plan(&svc(3, 200, 100), &[dep("d1", true)], &[], 0);
        assert_eq!(
            a,
            vec![Action::Launch {
                deployment: "d1".into(),
                count: 3,
                instance: None
            }]
        );
    }

    #[test]
    fn steady_service_completes_and_then_does_nothing() {
        let tasks = vec![task("a", "d1", true), task("b", "d1", true)];
        // Not before the tasks have been up for a while.
        assert!(plan(&svc(2, 200, 100), &[dep("d1", true)], &tasks, 0).is_empty());
        let later = HEALTHY_AFTER_MS;
        let a = plan(&svc(2, 200, 100), &[dep("d1", true)], &tasks, later);
        assert!(
            a.iter().any(|x| matches!(
                x,
                Action::Rollout {
                    state: Rollout::Completed,
                    ..
                }
            )),
            "{a:?}"
        );
        let mut done = dep("d1", true);
        done.rollout = Rollout::Completed;
        assert!(plan(&svc(2, 200, 100), &[done], &tasks, later).is_empty());
    }

    /// A new task that is RUNNING for an instant (and then crashes) must not count toward
    /// minimumHealthyPercent: with min 100 % no old task may be stopped for it.
    #[test]
    fn a_task_that_just_started_does_not_replace_a_good_one() {
        let now = 100_000;
        let old = vec![task("o1", "d0", true), task("o2", "d0", true)];
        let mut tasks = old.clone();
        for id in ["n1", "n2"] {
            let mut t = task(id, "d1", true);
            t.started_at_ms = Some(now - 10);
            tasks.push(t);
        }
        let deps = [dep("d1", true), dep("d0", false)];
        let a = plan(&svc(2, 200, 100), &deps, &tasks, now);
        assert!(!a.iter().any(|x| matches!(x, Action::Stop { .. })), "{a:?}");
        // Once they have stayed up, the old ones go.
        let a = plan(&svc(2, 200, 100), &deps, &tasks, now + HEALTHY_AFTER_MS);
        for o in ["o1", "o2"] {
            assert!(
                a.iter()
                    .any(|x| matches!(x, Action::Stop { task, .. } if task == o)),
                "{a:?}"
            );
        }
    }

    /// After the breaker trips and the service rolls back, the failed deployment stays listed
    /// (FAILED) until the rollback completes, even though it has no tasks left.
    #[test]
    fn failed_deployment_is_listed_until_the_rollback_completes() {
        let mut failed = dep("f", false);
        failed.rollout = Rollout::Failed;
        let mut gone = task("x", "f", false);
        gone.stopped = true;
        gone.failed = true;
        gone.desired_running = false;
        let mut tasks = vec![gone];
        let a = plan(
            &svc(2, 200, 100),
            &[dep("rb", true), failed.clone()],
            &tasks,
            0,
        );
        assert!(
            !a.iter().any(|x| matches!(x, Action::Retire { .. })),
            "{a:?}"
        );
        tasks.push(task("a", "rb", true));
        tasks.push(task("b", "rb", true));
        let mut done = dep("rb", true);
        done.rollout = Rollout::Completed;
        let a = plan(&svc(2, 200, 100), &[done, failed], &tasks, 0);
        assert!(
            a.contains(&Action::Retire {
                deployment: "f".into()
            }),
            "{a:?}"
        );
    }

    #[test]
    fn config_that_can_neither_start_nor_stop_says_so() {
        let tasks = vec![
            task("a", "d0", true),
            task("b", "d0", true),
            task("c", "d0", true),
        ];
        let a = plan(
            &svc(3, 100, 100),
            &[dep("d1", true), dep("d0", false)],
            &tasks,
            0,
        );
        assert!(
            a.iter().any(
                |x| matches!(x, Action::Event(e) if e.contains("unable to stop or start tasks"))
            ),
            "{a:?}"
        );
    }

    #[test]
    fn tasks_on_a_lost_instance_are_replaced() {
        let mut lost = task("a", "d1", true);
        lost.lost = true;
        let tasks = vec![lost, task("b", "d1", true)];
        let mut d = dep("d1", true);
        d.rollout = Rollout::Completed;
        let a = plan(&svc(2, 200, 100), &[d], &tasks, 0);
        assert!(
            a.iter()
                .any(|x| matches!(x, Action::Stop { task, .. } if task == "a")),
            "{a:?}"
        );
        assert!(
            a.contains(&Action::Launch {
                deployment: "d1".into(),
                count: 1,
                instance: None
            }),
            "{a:?}"
        );
    }

    fn on(mut t: TaskView, instance: &str) -> TaskView {
        t.instance = Some(instance.into());
        t
    }

    fn daemon(instances: &[&str]) -> ServiceView {
        let mut s = svc(i32::try_from(instances.len()).unwrap(), 100, 0);
        s.daemon_instances = Some(instances.iter().map(|i| (*i).to_string()).collect());
        s
    }

    /// A DAEMON deployment replaces the old one's tasks instance by instance, then completes,
    /// and the old deployment is retired.
    #[test]
    fn daemon_deployment_completes_and_the_old_one_is_retired() {
        let s = daemon(&["i1", "i2"]);
        let deps = [dep("d2", true), dep("d1", false)];
        let old = vec![
            on(task("o1", "d1", true), "i1"),
            on(task("o2", "d1", true), "i2"),
        ];
        let a = plan(&s, &deps, &old, 100_000);
        for o in ["o1", "o2"] {
            assert!(
                a.iter()
                    .any(|x| matches!(x, Action::Stop { task, .. } if task == o)),
                "{a:?}"
            );
        }
        assert!(
            !a.iter()
                .any(|x| matches!(x, Action::Rollout { .. } | Action::Retire { .. })),
            "{a:?}"
        );
        let mut tasks: Vec<TaskView> = old
            .into_iter()
            .map(|mut t| {
                t.stopped = true;
                t.desired_running = false;
                t
            })
            .collect();
        tasks.push(on(task("n1", "d2", true), "i1"));
        tasks.push(on(task("n2", "d2", true), "i2"));
        let a = plan(&s, &deps, &tasks, 100_000);
        assert!(
            a.contains(&Action::Retire {
                deployment: "d1".into()
            }),
            "{a:?}"
        );
        assert!(
            a.iter().any(|x| matches!(
                x,
                Action::Rollout {
                    state: Rollout::Completed,
                    ..
                }
            )),
            "{a:?}"
        );
        assert!(
            !a.iter().any(|x| matches!(x, Action::Launch { .. })),
            "{a:?}"
        );
    }

    /// Daemon tasks that keep failing to start are not relaunched in a hot loop.
    #[test]
    fn daemon_launches_are_throttled() {
        let mut s = daemon(&["i1"]);
        s.launch_not_before_ms = 10_000;
        let deps = [dep("d1", true)];
        assert!(
            !plan(&s, &deps, &[], 9_999)
                .iter()
                .any(|x| matches!(x, Action::Launch { .. }))
        );
        assert!(plan(&s, &deps, &[], 10_000).contains(&Action::Launch {
            deployment: "d1".into(),
            count: 1,
            instance: Some("i1".into())
        }));
    }

    #[test]
    fn breaker_trips_after_threshold() {
        let mut tasks = Vec::new();
        for i in 0..3 {
            let mut t = task(&format!("f{i}"), "d1", false);
            t.stopped = true;
            t.failed = true;
            tasks.push(t);
        }
        let a = plan(&svc(2, 200, 100), &[dep("d1", true)], &tasks, 0);
        assert!(
            a.contains(&Action::RollBack {
                failed: "d1".into()
            }),
            "{a:?}"
        );
    }

    /// A task whose agent has gone quiet is not assumed to have kept running: it neither
    /// proves its deployment (which would switch the circuit breaker off) nor counts as
    /// settled (found by the scheduler simulation: a crashing revision on a silent agent
    /// looked healthy, and its deployment never failed).
    #[test]
    fn what_a_quiet_agent_did_not_say_is_not_assumed() {
        let mut t = task("a", "d1", true);
        t.started_at_ms = Some(0);
        t.seen_at_ms = Some(1_000);
        let later = PROVEN_AFTER_MS.max(HEALTHY_AFTER_MS) + 1_000;
        let a = plan(&svc(1, 200, 100), &[dep("d1", true)], &[t.clone()], later);
        assert!(
            !a.iter()
                .any(|x| matches!(x, Action::Breaker { proven: true, .. })
                    || matches!(
                        x,
                        Action::Rollout {
                            state: Rollout::Completed,
                            ..
                        }
                    )),
            "{a:?}"
        );
        // Once the agent reports after the task has run long enough, it counts.
        t.seen_at_ms = Some(later);
        let a = plan(&svc(1, 200, 100), &[dep("d1", true)], &[t], later);
        assert!(
            a.iter()
                .any(|x| matches!(x, Action::Breaker { proven: true, .. })),
            "{a:?}"
        );
    }

    /// A rollback deployment that fails in turn is marked FAILED and not rolled back again
    /// (found by the scheduler simulation: the last COMPLETED deployment had completed at
    /// desiredCount 0 with a revision that crashes, and the service rolled back forever).
    #[test]
    fn a_failed_rollback_is_not_rolled_back_again() {
        let mut tasks = Vec::new();
        for i in 0..3 {
            let mut t = task(&format!("f{i}"), "rb", false);
            t.stopped = true;
            t.failed = true;
            tasks.push(t);
        }
        let mut rb = dep("rb", true);
        rb.rollback = true;
        let a = plan(&svc(2, 200, 100), &[rb], &tasks, 0);
        assert!(
            a.iter().any(|x| matches!(
                x,
                Action::Rollout {
                    state: Rollout::Failed,
                    ..
                }
            )),
            "{a:?}"
        );
        assert!(
            !a.iter().any(|x| matches!(x, Action::RollBack { .. })),
            "{a:?}"
        );
    }

    /// A tiny simulation: apply the plan, let launched tasks start after one step (some
    /// crash), and check the bounds at every step.
    fn simulate(
        desired: i32,
        max: i32,
        min: i32,
        old: i32,
        crash_every: usize,
        steps: usize,
    ) -> Result<(), TestCaseError> {
        let s = svc(desired, max, min);
        let mut deps = vec![dep("new", true), dep("old", false)];
        let mut tasks: Vec<TaskView> = (0..old)
            .map(|i| task(&format!("o{i}"), "old", true))
            .collect();
        let mut next = 0usize;
        for step in 0..steps {
            let now = i64::try_from(step).unwrap_or(0) * 10_000;
            let actions = plan(&s, &deps, &tasks, now);
            for a in actions {
                match a {
                    Action::Launch {
                        deployment, count, ..
                    } => {
                        for _ in 0..count {
                            next += 1;
                            let mut t = task(&format!("n{next}"), &deployment, false);
                            t.started_at_ms = None;
                            tasks.push(t);
                        }
                    }
                    Action::Stop { task, .. } => {
                        if let Some(t) = tasks.iter_mut().find(|t| t.id == task) {
                            t.desired_running = false;
                            t.stopped = true;
                            t.running = false;
                            t.healthy = false;
                        }
                    }
                    Action::Retire { deployment } => deps.retain(|d| d.id != deployment),
                    Action::Rollout {
                        deployment, state, ..
                    } => {
                        if let Some(d) = deps.iter_mut().find(|d| d.id == deployment) {
                            d.rollout = state;
                        }
                    }
                    Action::Breaker {
                        deployment,
                        failed_tasks,
                        proven,
                    } => {
                        if let Some(d) = deps.iter_mut().find(|d| d.id == deployment) {
                            d.failed_tasks = failed_tasks;
                            d.proven = proven;
                        }
                    }
                    _ => {}
                }
            }
            // Bounds hold after the plan is applied (pending and running both count).
            let live = n(tasks
                .iter()
                .filter(|t| t.desired_running && !t.stopped)
                .count());
            prop_assert!(
                live <= upper_bound(desired, max).max(desired),
                "over max at step {step}: {live}"
            );
            let healthy = n(tasks.iter().filter(|t| t.healthy && !t.stopped).count());
            if crash_every == 0 {
                prop_assert!(
                    healthy >= lower_bound(desired, min),
                    "under min at step {step}: {healthy}"
                );
            }
            // Launched tasks come up (a few crash).
            for (i, t) in tasks.iter_mut().enumerate() {
                if !t.stopped && !t.running && t.desired_running {
                    if crash_every > 0 && i % crash_every == 0 {
                        t.stopped = true;
                        t.desired_running = false;
                    } else {
                        t.running = true;
                        t.healthy = true;
                        t.started_at_ms = Some(now);
                    }
                }
            }
        }
        if crash_every == 0 {
            let new_running = tasks
                .iter()
                .filter(|t| t.deployment == "new" && t.running && !t.stopped)
                .count();
            prop_assert_eq!(n(new_running), desired);
            prop_assert!(deps.iter().all(|d| d.id == "new"));
            prop_assert_eq!(deps[0].rollout, Rollout::Completed);
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn rolling_update_respects_bounds_and_converges(
            desired in 1i32..30,
            max in prop::sample::select(vec![100, 125, 150, 200]),
            min in prop::sample::select(vec![0, 50, 75, 100]),
        ) {
            // Configurations that can neither start nor stop a task are stuck on ECS too.
            prop_assume!(!(upper_bound(desired, max) <= desired && lower_bound(desired, min) >= desired));
            simulate(desired, max, min, desired, 0, 80)?;
        }

        #[test]
        fn bounds_hold_with_crashes(desired in 1i32..20, crash_every in 2usize..7) {
            simulate(desired, 200, 50, desired, crash_every, 40)?;
        }
    }
}
