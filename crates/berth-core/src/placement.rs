//! Placement: which container instance each new task goes to. A pure pipeline in ECS's
//! order: instances with room (CPU, memory, ports) → constraints (`memberOf`,
//! `distinctInstance`) → strategies (`binpack`, `spread`, `random`, applied in order as
//! tie-breakers) → pick. Unplaceable tasks come back as failures with ECS's reasons.
//!
//! Cost: one pass over the candidates per batch, then only the instance a task landed on is
//! looked at again (its score is the only one that moved), unless it left the best set empty
//! or a `spread` over an attribute moved its neighbours' scores too. Candidates borrow from
//! the partition, so building one allocates nothing unless the task needs host ports.

use berth_api::ecs::{Attribute, PlacementStrategy, PlacementStrategyType};
use rand::RngCore;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

/// A container instance as placement sees it.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    /// Instance id.
    pub id: &'a str,
    /// Instance ARN (for failures).
    pub arn: &'a str,
    /// CPU units not reserved.
    pub cpu_free: i32,
    /// Memory MiB not reserved.
    pub memory_free: i32,
    /// Host ports in use or reserved. Only filled when the task needs host ports (nothing
    /// else reads it).
    pub ports_used: BTreeSet<i32>,
    /// Whether the instance satisfies the `memberOf` constraints.
    pub member_of_ok: bool,
    /// Live tasks of the placed task's group on it (for `distinctInstance` and spread).
    pub same_group: u32,
    /// The instance's attributes (for `spread` on `attribute:<name>`).
    pub attributes: &'a [Attribute],
}

impl Candidate<'_> {
    /// The value of attribute `name` (the last one of that name, as a map built in order
    /// would hold it).
    fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .rev()
            .find(|a| a.name.as_deref() == Some(name))
            .map(|a| a.value.as_deref().unwrap_or_default())
    }
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

fn reject_reason(c: &Candidate<'_>, need: &Need) -> Option<&'static str> {
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
    if need.distinct_instance && c.same_group > 0 {
        return Some("DistinctInstance placement constraint unsatisfied");
    }
    None
}

/// The attribute name of a strategy `field` `attribute:<name>`: the prefix is matched
/// case-insensitively (as ECS's field names are), the name is kept as given (attribute names
/// are case-sensitive).
fn attribute_field(field: &str) -> Option<&str> {
    let prefix = "attribute:";
    match field.get(..prefix.len()) {
        Some(head) if head.eq_ignore_ascii_case(prefix) => Some(&field[prefix.len()..]),
        _ => None,
    }
}

/// One strategy as a score to minimise.
enum Scorer {
    /// `binpack`: least remaining memory (`field` memory) or CPU (any other field).
    Binpack { memory: bool },
    /// `spread` over instances (`instanceId`, or any field but an attribute): fewest tasks
    /// of the group on the instance.
    SpreadInstance,
    /// `spread` over `attribute:<name>`: fewest tasks of the group on all instances sharing
    /// the candidate's value (a missing attribute is a value of its own). `slot` maps each
    /// candidate to its value, `count` each value to its tasks, kept as tasks land.
    SpreadAttribute { slot: Vec<usize>, count: Vec<i64> },
}

impl Scorer {
    /// The scorer of `s`; `None` for `random` (and an absent type), which only leaves the
    /// tie to the final random pick.
    fn of(s: &PlacementStrategy, candidates: &[Candidate<'_>]) -> Option<Scorer> {
        // ECS's field names are matched case-insensitively, but not the attribute name.
        let field = s.field.as_deref().unwrap_or_default();
        match s.r#type {
            Some(PlacementStrategyType::Binpack) => Some(Scorer::Binpack {
                memory: field.eq_ignore_ascii_case("memory"),
            }),
            Some(PlacementStrategyType::Spread) => match attribute_field(field) {
                Some(name) => {
                    let mut slots: BTreeMap<Option<&str>, usize> = BTreeMap::new();
                    let mut slot = Vec::with_capacity(candidates.len());
                    let mut count: Vec<i64> = Vec::new();
                    for c in candidates {
                        let next = slots.len();
                        let s = *slots.entry(c.attribute(name)).or_insert(next);
                        if s == count.len() {
                            count.push(0);
                        }
                        count[s] += i64::from(c.same_group);
                        slot.push(s);
                    }
                    Some(Scorer::SpreadAttribute { slot, count })
                }
                None => Some(Scorer::SpreadInstance),
            },
            _ => None,
        }
    }

    fn score(&self, i: usize, c: &Candidate<'_>) -> i64 {
        match self {
            Scorer::Binpack { memory: true } => i64::from(c.memory_free),
            Scorer::Binpack { memory: false } => i64::from(c.cpu_free),
            Scorer::SpreadInstance => i64::from(c.same_group),
            Scorer::SpreadAttribute { slot, count } => count[slot[i]],
        }
    }

    /// A task of the group landed on candidate `i`.
    fn landed(&mut self, i: usize) {
        if let Scorer::SpreadAttribute { slot, count } = self {
            count[slot[i]] += 1;
        }
    }
}

/// Candidate `i` against the best key so far, strategy by strategy (the first that differs
/// decides: later strategies only break the ties of earlier ones).
fn compare(scorers: &[Scorer], i: usize, c: &Candidate<'_>, best: &[i64]) -> Ordering {
    for (s, b) in scorers.iter().zip(best) {
        match s.score(i, c).cmp(b) {
            Ordering::Equal => {}
            other => return other,
        }
    }
    Ordering::Equal
}

fn set_best(best: &mut Vec<i64>, scorers: &[Scorer], i: usize, c: &Candidate<'_>) {
    best.clear();
    best.extend(scorers.iter().map(|s| s.score(i, c)));
}

/// The feasible candidates with the least key, in candidate order, into `ties`.
fn scan(
    candidates: &[Candidate<'_>],
    need: &Need,
    scorers: &[Scorer],
    best: &mut Vec<i64>,
    ties: &mut Vec<usize>,
) {
    ties.clear();
    for (i, c) in candidates.iter().enumerate() {
        if reject_reason(c, need).is_some() {
            continue;
        }
        let ord = if ties.is_empty() {
            Ordering::Less
        } else {
            compare(scorers, i, c, best)
        };
        match ord {
            Ordering::Less => {
                set_best(best, scorers, i, c);
                ties.clear();
                ties.push(i);
            }
            Ordering::Equal => ties.push(i),
            Ordering::Greater => {}
        }
    }
}

/// Place `count` tasks needing `need` on `candidates` (in a stable order), applying
/// `strategies` in order; ties are broken at random with `rng`. Candidates are updated as
/// tasks land, so later tasks see earlier ones.
pub fn place(
    candidates: &mut [Candidate<'_>],
    need: &Need,
    count: usize,
    strategies: &[PlacementStrategy],
    rng: &mut dyn RngCore,
) -> Placement {
    let mut out = Placement::default();
    let mut scorers: Vec<Scorer> = strategies
        .iter()
        .filter_map(|s| Scorer::of(s, candidates))
        .collect();
    // A landing moves the scores of other candidates only for a spread over an attribute.
    let shared = scorers
        .iter()
        .any(|s| matches!(s, Scorer::SpreadAttribute { .. }));
    let mut best: Vec<i64> = Vec::with_capacity(scorers.len());
    let mut ties: Vec<usize> = Vec::new();
    let mut fresh = false;
    for _ in 0..count {
        if !fresh {
            scan(candidates, need, &scorers, &mut best, &mut ties);
            fresh = true;
        }
        if ties.is_empty() {
            // Report the reason of the instance that came closest (the first one, in order).
            let failure = candidates
                .iter()
                .find_map(|c| {
                    reject_reason(c, need).map(|r| (Some(c.arn.to_string()), r.to_string()))
                })
                .unwrap_or((
                    None,
                    "No Container Instances were found in your cluster.".into(),
                ));
            out.failures.push(failure);
            continue;
        }
        let pick = ties[usize::try_from(rng.next_u64() % ties.len() as u64).unwrap_or(0)];
        let c = &mut candidates[pick];
        if need.counted {
            c.cpu_free -= need.cpu;
            c.memory_free -= need.memory;
        }
        c.ports_used.extend(need.ports.iter().copied());
        c.same_group += 1;
        out.placed.push(c.id.to_string());
        for s in &mut scorers {
            s.landed(pick);
        }
        if shared {
            fresh = false;
            continue;
        }
        // Only `pick` moved: it leads alone, stays tied, or leaves the best set (which is
        // rebuilt by the next scan once empty).
        let c = &candidates[pick];
        let ord = if reject_reason(c, need).is_none() {
            compare(&scorers, pick, c, &best)
        } else {
            Ordering::Greater
        };
        match ord {
            Ordering::Less => {
                set_best(&mut best, &scorers, pick, c);
                ties.clear();
                ties.push(pick);
            }
            Ordering::Equal => {}
            Ordering::Greater => {
                if let Ok(at) = ties.binary_search(&pick) {
                    ties.remove(at);
                }
                fresh = !ties.is_empty();
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    fn cand(id: &str, cpu: i32, mem: i32) -> Candidate<'_> {
        Candidate {
            id,
            arn: id,
            cpu_free: cpu,
            memory_free: mem,
            ports_used: BTreeSet::new(),
            member_of_ok: true,
            same_group: 0,
            attributes: &[],
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
        assert_eq!(p.failures, vec![(Some("a".into()), "RESOURCE:CPU".into())]);
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
    fn spread_over_an_attribute_balances_its_values() {
        let zone = |v: &str| Attribute {
            name: Some("zone".into()),
            value: Some(v.into()),
            ..Default::default()
        };
        let (a, b) = ([zone("a")], [zone("b")]);
        let mut c = vec![
            Candidate {
                attributes: &a,
                ..cand("a1", 4096, 4096)
            },
            Candidate {
                attributes: &a,
                ..cand("a2", 4096, 4096)
            },
            Candidate {
                attributes: &b,
                ..cand("b1", 4096, 4096)
            },
        ];
        let spread = PlacementStrategy {
            r#type: Some(PlacementStrategyType::Spread),
            field: Some("attribute:zone".into()),
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let p = place(&mut c, &need(1, 1), 6, &[spread], &mut rng);
        assert_eq!(p.placed.iter().filter(|x| *x == "b1").count(), 3);
    }

    #[test]
    fn spread_attribute_name_keeps_its_case() {
        assert_eq!(attribute_field("attribute:MyAttr"), Some("MyAttr"));
        assert_eq!(attribute_field("ATTRIBUTE:MyAttr"), Some("MyAttr"));
        assert_eq!(attribute_field("Attribute:rack"), Some("rack"));
        assert_eq!(attribute_field("instanceId"), None);
        assert_eq!(attribute_field("attr"), None);
        assert_eq!(attribute_field("attributé:x"), None);
        // Spread on `Attribute:MyZone`: the capitalised attribute decides, a same-named
        // lowercase one does not.
        let attr = |name: &str, v: &str| Attribute {
            name: Some(name.into()),
            value: Some(v.into()),
            ..Default::default()
        };
        let a = [attr("MyZone", "a"), attr("myzone", "x")];
        let b = [attr("MyZone", "b"), attr("myzone", "x")];
        let mut c = vec![
            Candidate {
                attributes: &a,
                ..cand("a1", 4096, 4096)
            },
            Candidate {
                attributes: &a,
                ..cand("a2", 4096, 4096)
            },
            Candidate {
                attributes: &b,
                ..cand("b1", 4096, 4096)
            },
        ];
        let spread = PlacementStrategy {
            r#type: Some(PlacementStrategyType::Spread),
            field: Some("Attribute:MyZone".into()),
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let p = place(&mut c, &need(1, 1), 6, &[spread], &mut rng);
        assert_eq!(p.placed.iter().filter(|x| *x == "b1").count(), 3);
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

    /// Placement as it was first written: every strategy scored over every candidate for
    /// every task. The incremental `place` must pick exactly what this picks.
    fn place_by_rescoring(
        candidates: &mut [Candidate<'_>],
        need: &Need,
        count: usize,
        strategies: &[PlacementStrategy],
        rng: &mut dyn rand::RngCore,
    ) -> Placement {
        fn score(c: &Candidate<'_>, s: &PlacementStrategy, all: &[Candidate<'_>]) -> i64 {
            let field = s.field.as_deref().unwrap_or_default();
            match s.r#type {
                Some(PlacementStrategyType::Binpack) => {
                    if field.eq_ignore_ascii_case("memory") {
                        i64::from(c.memory_free)
                    } else {
                        i64::from(c.cpu_free)
                    }
                }
                Some(PlacementStrategyType::Spread) => match attribute_field(field) {
                    Some(name) => {
                        let mine = c.attribute(name);
                        all.iter()
                            .filter(|x| x.attribute(name) == mine)
                            .map(|x| i64::from(x.same_group))
                            .sum()
                    }
                    None => i64::from(c.same_group),
                },
                _ => 0,
            }
        }
        let mut out = Placement::default();
        for _ in 0..count {
            let feasible: Vec<usize> = (0..candidates.len())
                .filter(|&i| reject_reason(&candidates[i], need).is_none())
                .collect();
            if feasible.is_empty() {
                let failure = candidates
                    .iter()
                    .find_map(|c| {
                        reject_reason(c, need).map(|r| (Some(c.arn.to_string()), r.to_string()))
                    })
                    .unwrap_or((
                        None,
                        "No Container Instances were found in your cluster.".into(),
                    ));
                out.failures.push(failure);
                continue;
            }
            let mut best = feasible;
            for s in strategies {
                let min = best
                    .iter()
                    .map(|&i| score(&candidates[i], s, candidates))
                    .min()
                    .unwrap_or(0);
                best.retain(|&i| score(&candidates[i], s, candidates) == min);
            }
            let pick = best
                [usize::try_from(rand::RngCore::next_u64(rng) % best.len() as u64).unwrap_or(0)];
            let c = &mut candidates[pick];
            if need.counted {
                c.cpu_free -= need.cpu;
                c.memory_free -= need.memory;
            }
            c.ports_used.extend(need.ports.iter().copied());
            c.same_group += 1;
            out.placed.push(c.id.to_string());
        }
        out
    }

    fn strategy() -> impl Strategy<Value = PlacementStrategy> {
        let kinds = [
            (Some(PlacementStrategyType::Binpack), "memory"),
            (Some(PlacementStrategyType::Binpack), "CPU"),
            (Some(PlacementStrategyType::Spread), "instanceId"),
            (Some(PlacementStrategyType::Spread), "attribute:zone"),
            (Some(PlacementStrategyType::Spread), "attribute:rack"),
            (Some(PlacementStrategyType::Spread), "ATTRIBUTE:Zone"),
            (Some(PlacementStrategyType::Spread), "Attribute:zone"),
            (Some(PlacementStrategyType::Random), ""),
            (None, ""),
        ];
        (0..kinds.len()).prop_map(move |k| PlacementStrategy {
            r#type: kinds[k].0.clone(),
            field: Some(kinds[k].1.to_string()).filter(|f| !f.is_empty()),
        })
    }

    proptest! {
        /// No instance is ever over-committed, and every task is either placed or failed.
        #[test]
        fn never_overcommits(cpus in proptest::collection::vec(0i32..4096, 1..8), task_cpu in 1i32..2048, count in 1usize..12, seed: u64) {
            let ids: Vec<String> = (0..cpus.len()).map(|i| format!("i{i}")).collect();
            let mut c: Vec<Candidate<'_>> = cpus.iter().zip(&ids).map(|(&cpu, id)| cand(id, cpu, 100_000)).collect();
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

        /// The incremental placement picks what rescoring every candidate for every task
        /// picks, with the same random draws, whatever the instances and strategies.
        #[test]
        fn picks_what_rescoring_everything_picks(
            instances in proptest::collection::vec((0i32..3000, 0i32..3000, 0u32..4, 0u8..4, any::<bool>(), any::<bool>()), 0..24),
            strategies in proptest::collection::vec(strategy(), 0..4),
            (task_cpu, task_mem, with_port, distinct) in (0i32..900, 0i32..900, any::<bool>(), any::<bool>()),
            count in 1usize..40,
            seed: u64,
        ) {
            let ids: Vec<String> = (0..instances.len()).map(|i| format!("i{i}")).collect();
            let attrs: Vec<Vec<Attribute>> = instances
                .iter()
                .map(|&(_, _, _, zone, has_rack, _)| {
                    let mut a = vec![
                        Attribute {
                            name: Some("zone".into()),
                            value: Some(format!("z{zone}")),
                            ..Default::default()
                        },
                        // Same name, other case: a distinct attribute.
                        Attribute {
                            name: Some("Zone".into()),
                            value: Some(format!("Z{}", zone % 2)),
                            ..Default::default()
                        },
                    ];
                    if has_rack {
                        a.push(Attribute { name: Some("rack".into()), value: None, ..Default::default() });
                    }
                    a
                })
                .collect();
            let mut a: Vec<Candidate<'_>> = instances
                .iter()
                .zip(&ids)
                .zip(&attrs)
                .map(|((&(cpu, mem, group, _, _, ok), id), attributes)| Candidate {
                    same_group: group,
                    member_of_ok: ok || cpu % 3 != 0,
                    attributes,
                    ports_used: if group == 3 { BTreeSet::from([80]) } else { BTreeSet::new() },
                    ..cand(id, cpu, mem)
                })
                .collect();
            let mut b = a.clone();
            let n = Need {
                ports: if with_port { vec![80] } else { vec![] },
                distinct_instance: distinct,
                ..need(task_cpu, task_mem)
            };
            let mut rng_a = rand::rngs::StdRng::seed_from_u64(seed);
            let mut rng_b = rand::rngs::StdRng::seed_from_u64(seed);
            let got = place(&mut a, &n, count, &strategies, &mut rng_a);
            let want = place_by_rescoring(&mut b, &n, count, &strategies, &mut rng_b);
            prop_assert_eq!(got, want);
        }
    }
}
