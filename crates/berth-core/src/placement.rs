//! Placement: which container instance each new task goes to. A pure pipeline in ECS's
//! order: instances with room (CPU, memory, ports) → constraints (`memberOf`,
//! `distinctInstance`) → strategies (`binpack`, `spread`, `random`, applied in order as
//! tie-breakers) → pick. Unplaceable tasks come back as failures with ECS's reasons.

use berth_api::ecs::{PlacementStrategy, PlacementStrategyType};
use rand::RngCore;
use std::collections::{BTreeMap, BTreeSet};

/// A container instance as placement sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Instance id.
    pub id: String,
    /// Instance ARN (for failures).
    pub arn: String,
    /// CPU units not reserved.
    pub cpu_free: i32,
    /// Memory MiB not reserved.
    pub memory_free: i32,
    /// Host ports in use or reserved.
    pub ports_used: BTreeSet<i32>,
    /// Whether the instance satisfies the `memberOf` constraints.
    pub member_of_ok: bool,
    /// Groups of the non-stopped tasks on it (for `distinctInstance` and spread).
    pub groups: Vec<String>,
    /// Attribute values (for `spread` on `attribute:<name>`).
    pub attributes: BTreeMap<String, String>,
}

/// What one task needs.
#[derive(Debug, Clone, Default)]
pub struct Need {
    /// CPU units.
    pub cpu: i32,
    /// Memory MiB.
    pub memory: i32,
    /// Static host ports.
    pub ports: Vec<i32>,
    /// Whether CPU and memory are checked against the instance (not for FARGATE).
    pub counted: bool,
    /// The task's group.
    pub group: String,
    /// `distinctInstance`: no two tasks of the group on one instance.
    pub distinct_instance: bool,
}

/// The outcome for a batch of identical tasks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Placement {
    /// Instance id for each placed task, in order.
    pub placed: Vec<String>,
    /// (instance ARN, ECS reason) for each task that could not be placed.
    pub failures: Vec<(Option<String>, String)>,
}

fn reject_reason(c: &Candidate, need: &Need) -> Option<&'static str> {
    if !c.member_of_ok {
        return Some("MemberOf placement constraint unsatisfied");
    }
    if need.counted && c.cpu_free < need.cpu {
        return Some("RESOURCE:CPU");
    }
    if need.counted && c.memory_free < need.memory {
        return Some("RESOURCE:MEMORY");
    }
    if need.ports.iter().any(|p| c.ports_used.contains(p)) {
        return Some("RESOURCE:PORTS");
    }
    if need.distinct_instance && c.groups.contains(&need.group) {
        return Some("DistinctInstance placement constraint unsatisfied");
    }
    None
}

fn score(c: &Candidate, need: &Need, s: &PlacementStrategy, all: &[Candidate]) -> i64 {
    let field = s.field.as_deref().unwrap_or_default().to_ascii_lowercase();
    match s.r#type {
        Some(PlacementStrategyType::Binpack) => {
            if field == "memory" {
                i64::from(c.memory_free)
            } else {
                i64::from(c.cpu_free)
            }
        }
        Some(PlacementStrategyType::Spread) => {
            let same = |x: &Candidate| x.groups.iter().filter(|g| **g == need.group).count() as i64;
            match field.strip_prefix("attribute:") {
                Some(name) => {
                    let mine = c.attributes.get(name);
                    all.iter()
                        .filter(|x| x.attributes.get(name) == mine)
                        .map(same)
                        .sum()
                }
                None => same(c),
            }
        }
        _ => 0,
    }
}

/// Place `count` tasks needing `need` on `candidates` (in a stable order), applying
/// `strategies` in order; ties are broken at random with `rng`. Candidates are updated as
/// tasks land, so later tasks see earlier ones.
pub fn place(
    candidates: &mut [Candidate],
    need: &Need,
    count: usize,
    strategies: &[PlacementStrategy],
    rng: &mut dyn RngCore,
) -> Placement {
    let mut out = Placement::default();
    for _ in 0..count {
        let feasible: Vec<usize> = (0..candidates.len())
            .filter(|&i| reject_reason(&candidates[i], need).is_none())
            .collect();
        if feasible.is_empty() {
            // Report the reason of the instance that came closest (the first one, in order).
            let failure = candidates
                .iter()
                .find_map(|c| reject_reason(c, need).map(|r| (Some(c.arn.clone()), r.to_string())))
                .unwrap_or((
                    None,
                    "No Container Instances were found in your cluster.".into(),
                ));
            out.failures.push(failure);
            continue;
        }
        let snapshot = candidates.to_vec();
        let mut best: Vec<usize> = feasible;
        for s in strategies {
            if matches!(s.r#type, Some(PlacementStrategyType::Random) | None) {
                continue;
            }
            let min = best
                .iter()
                .map(|&i| score(&snapshot[i], need, s, &snapshot))
                .min()
                .unwrap_or(0);
            best.retain(|&i| score(&snapshot[i], need, s, &snapshot) == min);
        }
        let pick = best[usize::try_from(rng.next_u64() % best.len() as u64).unwrap_or(0)];
        let c = &mut candidates[pick];
        if need.counted {
            c.cpu_free -= need.cpu;
            c.memory_free -= need.memory;
        }
        c.ports_used.extend(need.ports.iter().copied());
        c.groups.push(need.group.clone());
        out.placed.push(c.id.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    fn cand(id: &str, cpu: i32, mem: i32) -> Candidate {
        Candidate {
            id: id.into(),
            arn: format!("arn/{id}"),
            cpu_free: cpu,
            memory_free: mem,
            ports_used: BTreeSet::new(),
            member_of_ok: true,
            groups: vec![],
            attributes: BTreeMap::new(),
        }
    }

    fn need(cpu: i32, mem: i32) -> Need {
        Need {
            cpu,
            memory: mem,
            counted: true,
            group: "family:x".into(),
            ..Default::default()
        }
    }

    #[test]
    fn fills_then_fails_with_resource_reasons() {
        let mut c = vec![cand("a", 1024, 1024), cand("b", 1024, 1024)];
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let p = place(&mut c, &need(512, 256), 5, &[], &mut rng);
        assert_eq!(p.placed.len(), 4);
        assert_eq!(
            p.failures,
            vec![(Some("arn/a".into()), "RESOURCE:CPU".into())]
        );
        let mut c = vec![cand("a", 4096, 100)];
        let p = place(&mut c, &need(1, 200), 1, &[], &mut rng);
        assert_eq!(p.failures[0].1, "RESOURCE:MEMORY");
    }

    #[test]
    fn ports_and_distinct_instance() {
        let mut c = vec![cand("a", 4096, 4096), cand("b", 4096, 4096)];
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let n = Need {
            ports: vec![80],
            ..need(1, 1)
        };
        let p = place(&mut c, &n, 3, &[], &mut rng);
        assert_eq!(p.placed.len(), 2);
        assert_eq!(p.failures[0].1, "RESOURCE:PORTS");
        let mut c = vec![cand("a", 4096, 4096), cand("b", 4096, 4096)];
        let n = Need {
            distinct_instance: true,
            ..need(1, 1)
        };
        let p = place(&mut c, &n, 3, &[], &mut rng);
        assert_eq!(p.placed.len(), 2);
        assert_ne!(p.placed[0], p.placed[1]);
    }

    #[test]
    fn binpack_and_spread() {
        let binpack = PlacementStrategy {
            r#type: Some(PlacementStrategyType::Binpack),
            field: Some("cpu".into()),
        };
        let mut c = vec![cand("a", 4096, 4096), cand("b", 1024, 4096)];
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let p = place(&mut c, &need(512, 1), 2, &[binpack], &mut rng);
        assert_eq!(p.placed, vec!["b", "b"]);
        let spread = PlacementStrategy {
            r#type: Some(PlacementStrategyType::Spread),
            field: Some("instanceId".into()),
        };
        let mut c = vec![cand("a", 4096, 4096), cand("b", 4096, 4096)];
        let p = place(&mut c, &need(1, 1), 4, &[spread], &mut rng);
        assert_eq!(p.placed.iter().filter(|x| *x == "a").count(), 2);
    }

    #[test]
    fn fargate_is_not_capped_by_registered_resources() {
        let mut c = vec![cand("a", 2048, 1024)];
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let n = Need {
            counted: false,
            ..need(1024, 2048)
        };
        assert_eq!(place(&mut c, &n, 3, &[], &mut rng).placed.len(), 3);
    }

    proptest! {
        /// No instance is ever over-committed, and every task is either placed or failed.
        #[test]
        fn never_overcommits(cpus in proptest::collection::vec(0i32..4096, 1..8), task_cpu in 1i32..2048, count in 1usize..12, seed: u64) {
            let mut c: Vec<Candidate> = cpus.iter().enumerate().map(|(i, &cpu)| cand(&format!("i{i}"), cpu, 100_000)).collect();
            let before = c.clone();
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let p = place(&mut c, &need(task_cpu, 1), count, &[], &mut rng);
            prop_assert_eq!(p.placed.len() + p.failures.len(), count);
            for (after, orig) in c.iter().zip(&before) {
                prop_assert!(after.cpu_free >= 0);
                let n = p.placed.iter().filter(|x| **x == orig.id).count() as i32;
                prop_assert_eq!(orig.cpu_free - after.cpu_free, n * task_cpu);
            }
        }
    }
}
