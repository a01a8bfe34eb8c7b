//! The pure decisions of a task's lifecycle on the host: which containers may start given
//! their `dependsOn` conditions, and what the task's health is. No I/O, no clock.
//!
//! ```text
//!  container:  PENDING ──deps met──▶ RUNNING ──exit──▶ STOPPED
//!                 └──deps can never be met / start failed──▶ STOPPED (reason)
//!  task:  PENDING ─▶ ACTIVATING ─▶ RUNNING ─▶ DEACTIVATING ─▶ STOPPING ─▶ DEPROVISIONING ─▶ STOPPED
//!           (an essential container's exit, a failed start, or a stop request leads to STOPPING)
//! ```

use berth_api::ecs::{ContainerCondition, ContainerDefinition};

/// What the runner knows about one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    /// Not started yet.
    Pending,
    /// Started; not exited.
    Running {
        /// Last health verdict (HEALTHY / UNHEALTHY / UNKNOWN).
        health: Health,
    },
    /// Exited (or never started).
    Stopped {
        /// Exit code, if it ran.
        exit_code: Option<i32>,
        /// Whether it ever ran.
        started: bool,
    },
}

/// A container's health as ECS reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Passed its checks.
    Healthy,
    /// Failed `retries` checks in a row.
    Unhealthy,
    /// No check, or not decided yet.
    Unknown,
}

impl Health {
    /// ECS's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "HEALTHY",
            Health::Unhealthy => "UNHEALTHY",
            Health::Unknown => "UNKNOWN",
        }
    }
}

/// Whether a dependency is met, not yet met, or can never be met.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Start it now.
    Ready,
    /// Keep waiting.
    Waiting,
    /// It can never start; the reason says why.
    Blocked(String),
}

fn state_of<'a>(
    names: &[String],
    states: &'a [ContainerState],
    name: &str,
) -> Option<&'a ContainerState> {
    names
        .iter()
        .position(|n| n == name)
        .and_then(|i| states.get(i))
}

/// Can container `c` start, given the states of all containers (indexed like `names`)?
pub fn readiness(
    c: &ContainerDefinition,
    names: &[String],
    states: &[ContainerState],
) -> Readiness {
    let mut waiting = false;
    for d in c.depends_on.as_deref().unwrap_or_default() {
        let dep = d.container_name.as_deref().unwrap_or_default();
        let Some(s) = state_of(names, states, dep) else {
            return Readiness::Blocked(format!("dependency {dep} does not exist"));
        };
        let cond = d.condition.clone().unwrap_or(ContainerCondition::Start);
        let met = match (&cond, s) {
            (ContainerCondition::Start, ContainerState::Running { .. }) => Some(true),
            (ContainerCondition::Start, ContainerState::Stopped { started: true, .. }) => {
                Some(true)
            }
            (ContainerCondition::Complete, ContainerState::Stopped { started: true, .. }) => {
                Some(true)
            }
            (
                ContainerCondition::Success,
                ContainerState::Stopped {
                    exit_code: Some(0),
                    started: true,
                },
            ) => Some(true),
            (ContainerCondition::Success, ContainerState::Stopped { .. }) => Some(false),
            (
                ContainerCondition::Healthy,
                ContainerState::Running {
                    health: Health::Healthy,
                },
            ) => Some(true),
            (ContainerCondition::Healthy, ContainerState::Stopped { .. }) => Some(false),
            (_, ContainerState::Stopped { started: false, .. }) => Some(false),
            _ => None,
        };
        match met {
            Some(true) => {}
            Some(false) => {
                return Readiness::Blocked(format!(
                    "dependency {dep} did not satisfy condition {}",
                    cond.as_str()
                ));
            }
            None => waiting = true,
        }
    }
    if waiting {
        Readiness::Waiting
    } else {
        Readiness::Ready
    }
}

/// Task health as ECS derives it: UNHEALTHY if any essential container is; HEALTHY if all
/// essential containers are; UNKNOWN otherwise. Non-essential containers never count.
pub fn task_health(defs: &[ContainerDefinition], states: &[ContainerState]) -> Health {
    let essential: Vec<&ContainerState> = defs
        .iter()
        .zip(states)
        .filter(|(d, _)| d.essential.unwrap_or(true))
        .map(|(_, s)| s)
        .collect();
    let health = |s: &ContainerState| match s {
        ContainerState::Running { health } => *health,
        _ => Health::Unknown,
    };
    if essential.iter().any(|s| health(s) == Health::Unhealthy) {
        Health::Unhealthy
    } else if !essential.is_empty() && essential.iter().all(|s| health(s) == Health::Healthy) {
        Health::Healthy
    } else {
        Health::Unknown
    }
}

/// Tracks consecutive health-check results into a verdict, as Docker and ECS do: a success
/// makes the container HEALTHY; `retries` failures in a row outside the start period make it
/// UNHEALTHY; failures inside the start period do not count.
#[derive(Debug, Clone)]
pub struct HealthTracker {
    retries: u32,
    failures: u32,
    /// Current verdict.
    pub health: Health,
}

impl HealthTracker {
    /// A tracker for a check with `retries`.
    pub fn new(retries: u32) -> HealthTracker {
        HealthTracker {
            retries: retries.max(1),
            failures: 0,
            health: Health::Unknown,
        }
    }

    /// Record one check result; returns the new verdict.
    pub fn record(&mut self, ok: bool, in_start_period: bool) -> Health {
        if ok {
            self.failures = 0;
            self.health = Health::Healthy;
        } else if !in_start_period {
            self.failures += 1;
            if self.failures >= self.retries {
                self.health = Health::Unhealthy;
            }
        }
        self.health
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::ecs::ContainerDependency;

    fn def(name: &str, essential: bool, deps: &[(&str, &str)]) -> ContainerDefinition {
        ContainerDefinition {
            name: Some(name.into()),
            essential: Some(essential),
            depends_on: Some(
                deps.iter()
                    .map(|(n, c)| ContainerDependency {
                        container_name: Some((*n).into()),
                        condition: Some(ContainerCondition::parse(c)),
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn dependency_conditions() {
        let names = vec!["init".to_string(), "db".to_string()];
        let app = def("app", true, &[("init", "SUCCESS"), ("db", "HEALTHY")]);
        let pending = vec![ContainerState::Pending, ContainerState::Pending];
        assert_eq!(readiness(&app, &names, &pending), Readiness::Waiting);
        let ok = vec![
            ContainerState::Stopped {
                exit_code: Some(0),
                started: true,
            },
            ContainerState::Running {
                health: Health::Healthy,
            },
        ];
        assert_eq!(readiness(&app, &names, &ok), Readiness::Ready);
        let init_failed = vec![
            ContainerState::Stopped {
                exit_code: Some(1),
                started: true,
            },
            ContainerState::Running {
                health: Health::Healthy,
            },
        ];
        assert!(matches!(
            readiness(&app, &names, &init_failed),
            Readiness::Blocked(_)
        ));
        let db_unhealthy = vec![
            ContainerState::Stopped {
                exit_code: Some(0),
                started: true,
            },
            ContainerState::Running {
                health: Health::Unhealthy,
            },
        ];
        assert_eq!(readiness(&app, &names, &db_unhealthy), Readiness::Waiting);
        let complete = def("x", true, &[("init", "COMPLETE")]);
        assert_eq!(readiness(&complete, &names, &init_failed), Readiness::Ready);
        let start = def("x", true, &[("db", "START")]);
        assert_eq!(readiness(&start, &names, &ok), Readiness::Ready);
    }

    #[test]
    fn task_health_counts_only_essential_containers() {
        let defs = vec![def("a", true, &[]), def("b", false, &[])];
        let h = |a, b| {
            vec![
                ContainerState::Running { health: a },
                ContainerState::Running { health: b },
            ]
        };
        assert_eq!(
            task_health(&defs, &h(Health::Healthy, Health::Unhealthy)),
            Health::Healthy
        );
        assert_eq!(
            task_health(&defs, &h(Health::Unhealthy, Health::Healthy)),
            Health::Unhealthy
        );
        assert_eq!(
            task_health(&defs, &h(Health::Unknown, Health::Healthy)),
            Health::Unknown
        );
    }

    #[test]
    fn health_tracker() {
        let mut t = HealthTracker::new(2);
        assert_eq!(t.record(false, true), Health::Unknown);
        assert_eq!(t.record(false, false), Health::Unknown);
        assert_eq!(t.record(false, false), Health::Unhealthy);
        assert_eq!(t.record(true, false), Health::Healthy);
        assert_eq!(t.record(false, false), Health::Healthy);
    }
}
