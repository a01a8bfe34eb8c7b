//! Usage measurement: what each running task uses of CPU and memory, sampled every few
//! seconds (as often as the server asks) and sent with the next sync, from which the server
//! computes ECS's `CPUUtilization` and `MemoryUtilization`.
//!
//! - Process runtime: a task is its containers' process groups (each container is a group
//!   leader) and every descendant of them, read from `/proc/<pid>/stat`: CPU time is
//!   `utime + stime + cutime + cstime` (children's time moves into their parent's `c*time`
//!   when they are reaped, so the sum does not drop when a child exits), memory the resident
//!   set.
//! - Docker runtime: the engine's one-shot stats per container: `cpu_usage.total_usage` and
//!   memory usage less inactive page cache (as `docker stats` shows it).
//!
//! CPU is a rate: the CPU time used between two samples over the wall time between them,
//! in CPU units (1024 = one vCPU busy). That arithmetic, and the parsing of `/proc`, are
//! pure functions tested below; a task shows up in a report from its second sample on.

use crate::reports::ReportBook;
use crate::runtime::AnyRuntime;
use berth_core::agent_protocol::{TaskUsage, UsageReport};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// CPU units per vCPU, as ECS counts them.
pub const CPU_UNITS_PER_VCPU: f64 = 1024.0;

/// Until the server says otherwise: ECS's agent samples every 20 seconds.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(20);

/// Reports kept while the server cannot be reached (the oldest are dropped first).
pub const MAX_PENDING_REPORTS: usize = 64;

/// A cumulative CPU-time reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuReading {
    /// When it was taken (a monotonic clock), in ns.
    pub at_ns: u128,
    /// CPU time used so far, in ns.
    pub cpu_ns: u128,
}

/// Average CPU units used between two readings, or `None` when they cannot be compared
/// (no time passed, or the counter went backwards: the task's processes changed).
#[allow(clippy::cast_precision_loss)]
pub fn cpu_units(prev: CpuReading, cur: CpuReading) -> Option<f64> {
    if cur.at_ns <= prev.at_ns || cur.cpu_ns < prev.cpu_ns {
        return None;
    }
    let cpu = (cur.cpu_ns - prev.cpu_ns) as f64;
    let wall = (cur.at_ns - prev.at_ns) as f64;
    Some(cpu / wall * CPU_UNITS_PER_VCPU)
}

/// One process, from `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Process id.
    pub pid: i32,
    /// Parent's.
    pub ppid: i32,
    /// Process group.
    pub pgrp: i32,
    /// `utime + stime + cutime + cstime`, in clock ticks.
    pub cpu_ticks: u64,
    /// Resident set, in pages.
    pub rss_pages: u64,
}

/// Parse `/proc/<pid>/stat` (the command name may hold spaces and parentheses: fields are
/// counted after the last `)`).
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text.get(..open)?.trim().parse().ok()?;
    // Fields from 3 (state) on; `rest[i]` is field i + 3.
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    let field = |n: usize| rest.get(n - 3).copied();
    let num = |n: usize| field(n).and_then(|v| v.parse::<i64>().ok());
    let ticks = |n: usize| num(n).map(|v| u64::try_from(v).unwrap_or(0));
    Some(ProcStat {
        pid,
        ppid: i32::try_from(num(4)?).ok()?,
        pgrp: i32::try_from(num(5)?).ok()?,
        cpu_ticks: ticks(14)? + ticks(15)? + ticks(16)? + ticks(17)?,
        rss_pages: ticks(24)?,
    })
}

/// The processes of a task whose containers' process groups are `roots`: members of those
/// groups and all their descendants (a child that made a group of its own is still the
/// task's).
pub fn task_processes<'a>(procs: &'a [ProcStat], roots: &BTreeSet<i32>) -> Vec<&'a ProcStat> {
    let parent: BTreeMap<i32, i32> = procs.iter().map(|p| (p.pid, p.ppid)).collect();
    let group: BTreeMap<i32, i32> = procs.iter().map(|p| (p.pid, p.pgrp)).collect();
    let belongs = |pid: i32| {
        let mut cur = pid;
        // Bounded walk up the tree (pid reuse could make a cycle in a racy snapshot).
        for _ in 0..64 {
            if roots.contains(&cur) || group.get(&cur).is_some_and(|g| roots.contains(g)) {
                return true;
            }
            match parent.get(&cur) {
                Some(&p) if p > 1 && p != cur => cur = p,
                _ => return false,
            }
        }
        false
    };
    procs.iter().filter(|p| belongs(p.pid)).collect()
}

/// Every process on the host (those that vanish while being read are skipped).
fn read_procs() -> Vec<ProcStat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|s| parse_stat(&s))
        .collect()
}

fn clock_ticks_per_sec() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|v| u64::try_from(v).ok())
        .filter(|v| *v > 0)
        .unwrap_or(100)
}

fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|v| u64::try_from(v).ok())
        .filter(|v| *v > 0)
        .unwrap_or(4096)
}

/// Docker's memory figure: usage less inactive page cache (cgroup v2 `inactive_file`,
/// v1 `total_inactive_file`, else `cache`), as `docker stats` computes it.
pub fn docker_memory_bytes(usage: u64, stats: &std::collections::HashMap<String, u64>) -> u64 {
    let cache = ["inactive_file", "total_inactive_file", "cache"]
        .iter()
        .find_map(|k| stats.get(*k).copied())
        .unwrap_or(0);
    usage.saturating_sub(cache)
}

/// A task to measure: its ARN and its running containers' runtime ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measured {
    /// Task ARN.
    pub task_arn: String,
    /// `process:<pid>` or Docker container ids.
    pub runtime_ids: Vec<String>,
}

/// The RUNNING tasks the report book knows, with their running containers.
pub fn running_tasks(reports: &ReportBook) -> Vec<Measured> {
    reports
        .all_latest()
        .into_iter()
        .filter(|r| r.last_status == "RUNNING")
        .map(|r| Measured {
            task_arn: r.task_arn,
            runtime_ids: r
                .containers
                .into_iter()
                .filter(|c| c.last_status == "RUNNING")
                .filter_map(|c| c.runtime_id)
                .collect(),
        })
        .filter(|m| !m.runtime_ids.is_empty())
        .collect()
}

/// (cumulative CPU ns, memory bytes) of one task now, or `None` if nothing of it was found.
async fn measure(runtime: &AnyRuntime, task: &Measured, procs: &[ProcStat]) -> Option<(u128, u64)> {
    match runtime {
        AnyRuntime::Process(_) => {
            let roots: BTreeSet<i32> = task
                .runtime_ids
                .iter()
                .filter_map(|id| id.strip_prefix("process:")?.parse().ok())
                .collect();
            let mine = task_processes(procs, &roots);
            if mine.is_empty() {
                return None;
            }
            let ticks: u64 = mine.iter().map(|p| p.cpu_ticks).sum();
            let pages: u64 = mine.iter().map(|p| p.rss_pages).sum();
            let cpu_ns = u128::from(ticks) * 1_000_000_000 / u128::from(clock_ticks_per_sec());
            Some((cpu_ns, pages.saturating_mul(page_size())))
        }
        AnyRuntime::Docker(d) => {
            use futures_util::StreamExt;
            let mut cpu_ns = 0u128;
            let mut memory = 0u64;
            let mut found = false;
            for id in &task.runtime_ids {
                let options = bollard::query_parameters::StatsOptions {
                    stream: false,
                    one_shot: true,
                };
                let mut stream = d.client().stats(id, Some(options));
                let Some(Ok(stats)) = stream.next().await else {
                    continue;
                };
                let cpu = stats
                    .cpu_stats
                    .and_then(|c| c.cpu_usage)
                    .and_then(|u| u.total_usage);
                let mem = stats.memory_stats.and_then(|m| {
                    Some(docker_memory_bytes(m.usage?, &m.stats.unwrap_or_default()))
                });
                if let Some(cpu) = cpu {
                    found = true;
                    cpu_ns += u128::from(cpu);
                    memory += mem.unwrap_or(0);
                }
            }
            found.then_some((cpu_ns, memory))
        }
    }
}

/// The previous reading of each task, to turn CPU time into a rate.
#[derive(Debug, Default)]
pub struct Sampler {
    previous: BTreeMap<String, CpuReading>,
}

impl Sampler {
    /// Fold new readings (task ARN, reading, memory bytes) into a report at `timestamp_ms`:
    /// tasks read for the first time (or whose counter went backwards) are left out of this
    /// report; tasks no longer read are forgotten.
    #[allow(clippy::cast_precision_loss)]
    pub fn report(
        &mut self,
        timestamp_ms: i64,
        readings: Vec<(String, CpuReading, u64)>,
    ) -> UsageReport {
        let mut next = BTreeMap::new();
        let mut tasks = Vec::new();
        for (arn, reading, memory_bytes) in readings {
            if let Some(cpu) = self
                .previous
                .get(&arn)
                .and_then(|prev| cpu_units(*prev, reading))
            {
                tasks.push(TaskUsage {
                    task_arn: arn.clone(),
                    cpu_units: cpu,
                    memory_mib: memory_bytes as f64 / (1024.0 * 1024.0),
                });
            }
            next.insert(arn, reading);
        }
        self.previous = next;
        UsageReport {
            timestamp_ms,
            tasks,
        }
    }
}

/// Reports waiting for the next sync (cheap to clone).
#[derive(Clone, Default)]
pub struct UsageBook {
    inner: Arc<Mutex<VecDeque<UsageReport>>>,
}

impl UsageBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<UsageReport>> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queue a report (dropping the oldest past [`MAX_PENDING_REPORTS`]).
    pub fn push(&self, report: UsageReport) {
        let mut q = self.lock();
        q.push_back(report);
        while q.len() > MAX_PENDING_REPORTS {
            q.pop_front();
        }
    }

    /// Everything queued, oldest first (it stays queued until [`UsageBook::acknowledge`]).
    pub fn peek(&self) -> Vec<UsageReport> {
        self.lock().iter().cloned().collect()
    }

    /// The server has `sent` (what [`UsageBook::peek`] returned): drop it and anything older.
    pub fn acknowledge(&self, sent: &[UsageReport]) {
        if let Some(last) = sent.last().map(|r| r.timestamp_ms) {
            self.lock().retain(|r| r.timestamp_ms > last);
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Measure the running tasks every `interval` (as the server last asked; [`DEFAULT_INTERVAL`]
/// until it does) and queue a report each time, until dropped.
pub async fn run(
    runtime: Arc<AnyRuntime>,
    reports: ReportBook,
    book: UsageBook,
    mut interval: watch::Receiver<Option<u64>>,
) {
    let epoch = Instant::now();
    let mut sampler = Sampler::default();
    loop {
        let every = (*interval.borrow_and_update())
            .map_or(DEFAULT_INTERVAL, Duration::from_millis)
            .max(Duration::from_millis(100));
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            changed = interval.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        }
        let tasks = running_tasks(&reports);
        let procs = if matches!(*runtime, AnyRuntime::Process(_)) && !tasks.is_empty() {
            tokio::task::spawn_blocking(read_procs)
                .await
                .unwrap_or_default()
        } else {
            vec![]
        };
        let mut readings = Vec::with_capacity(tasks.len());
        for t in &tasks {
            if let Some((cpu_ns, memory)) = measure(&runtime, t, &procs).await {
                let at_ns = epoch.elapsed().as_nanos();
                readings.push((t.task_arn.clone(), CpuReading { at_ns, cpu_ns }, memory));
            }
        }
        book.push(sampler.report(now_ms(), readings));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_rate_in_units() {
        let a = CpuReading {
            at_ns: 1_000_000_000,
            cpu_ns: 0,
        };
        // Half a core for two seconds.
        let b = CpuReading {
            at_ns: 3_000_000_000,
            cpu_ns: 1_000_000_000,
        };
        assert_eq!(cpu_units(a, b), Some(512.0));
        // Two cores busy.
        let c = CpuReading {
            at_ns: 4_000_000_000,
            cpu_ns: 3_000_000_000,
        };
        assert_eq!(cpu_units(b, c), Some(2048.0));
        assert_eq!(cpu_units(b, a), None, "time went backwards");
        assert_eq!(cpu_units(b, b), None, "no time passed");
        let reset = CpuReading {
            at_ns: 5_000_000_000,
            cpu_ns: 10,
        };
        assert_eq!(cpu_units(c, reset), None, "counter went backwards");
    }

    #[test]
    fn parses_proc_stat_with_odd_names() {
        let line = "4242 (we ird) (name)) R 4000 4242 4000 0 -1 4194304 100 0 0 0 150 50 7 3 20 0 1 0 12345 10000000 321 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let p = parse_stat(line).unwrap();
        assert_eq!(p.pid, 4242);
        assert_eq!(p.ppid, 4000);
        assert_eq!(p.pgrp, 4242);
        assert_eq!(p.cpu_ticks, 150 + 50 + 7 + 3);
        assert_eq!(p.rss_pages, 321);
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("12 (x) R 1"), None);
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let text = std::fs::read_to_string(format!("/proc/{me}/stat")).unwrap();
        let p = parse_stat(&text).unwrap();
        assert_eq!(p.pid, i32::try_from(me).unwrap());
        assert!(p.rss_pages > 0);
    }

    fn p(pid: i32, ppid: i32, pgrp: i32) -> ProcStat {
        ProcStat {
            pid,
            ppid,
            pgrp,
            cpu_ticks: 1,
            rss_pages: 1,
        }
    }

    #[test]
    fn a_task_is_its_groups_and_their_descendants() {
        let procs = vec![
            p(1, 0, 1),
            p(100, 1, 100),   // container leader
            p(101, 100, 100), // in its group
            p(102, 100, 102), // made its own group: still a descendant
            p(103, 102, 102),
            p(200, 1, 200), // another task
            p(300, 1, 100), // reparented to init but still in the group
        ];
        let roots = BTreeSet::from([100]);
        let mut mine: Vec<i32> = task_processes(&procs, &roots)
            .iter()
            .map(|p| p.pid)
            .collect();
        mine.sort_unstable();
        assert_eq!(mine, vec![100, 101, 102, 103, 300]);
        assert!(task_processes(&procs, &BTreeSet::from([999])).is_empty());
    }

    #[test]
    fn docker_memory_excludes_inactive_cache() {
        let v2 = std::collections::HashMap::from([("inactive_file".to_string(), 300u64)]);
        assert_eq!(docker_memory_bytes(1000, &v2), 700);
        let v1 = std::collections::HashMap::from([("total_inactive_file".to_string(), 100u64)]);
        assert_eq!(docker_memory_bytes(1000, &v1), 900);
        assert_eq!(docker_memory_bytes(10, &v1), 0);
        assert_eq!(docker_memory_bytes(10, &Default::default()), 10);
    }

    #[test]
    fn a_task_reports_from_its_second_reading() {
        let mut s = Sampler::default();
        let r = |at: u128, cpu: u128| CpuReading {
            at_ns: at * 1_000_000_000,
            cpu_ns: cpu * 1_000_000_000,
        };
        let first = s.report(1_000, vec![("t".into(), r(0, 0), 1024 * 1024)]);
        assert!(first.tasks.is_empty());
        let second = s.report(2_000, vec![("t".into(), r(1, 1), 2 * 1024 * 1024)]);
        assert_eq!(second.timestamp_ms, 2_000);
        assert_eq!(second.tasks.len(), 1);
        assert_eq!(second.tasks[0].cpu_units, 1024.0);
        assert_eq!(second.tasks[0].memory_mib, 2.0);
        // Gone, then back: starts over.
        assert!(s.report(3_000, vec![]).tasks.is_empty());
        assert!(
            s.report(4_000, vec![("t".into(), r(3, 2), 0)])
                .tasks
                .is_empty()
        );
    }

    #[test]
    fn pending_reports_are_bounded_and_acknowledged_in_order() {
        let book = UsageBook::default();
        for i in 0..(MAX_PENDING_REPORTS + 5) {
            book.push(UsageReport {
                timestamp_ms: i64::try_from(i).unwrap(),
                tasks: vec![],
            });
        }
        let sent = book.peek();
        assert_eq!(sent.len(), MAX_PENDING_REPORTS);
        assert_eq!(sent[0].timestamp_ms, 5, "the oldest were dropped");
        book.push(UsageReport {
            timestamp_ms: 999,
            tasks: vec![],
        });
        book.acknowledge(&sent);
        let left = book.peek();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].timestamp_ms, 999);
    }
}
