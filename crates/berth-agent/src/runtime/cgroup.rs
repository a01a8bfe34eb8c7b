//! Task-level `cpu` and `memory` as ONE limit over all of a task's containers, as ECS applies
//! them: the agent makes a cgroup per task, writes the task's limits on it, and every container
//! of the task (the `awsvpc` pause container too) is created with it as its `CgroupParent`, so
//! the kernel enforces the sum. Container-level `cpu` (shares) and `memory` still apply to each
//! container inside it.
//!
//! - **cgroup v1** (separate hierarchies): `<root>/memory/<path>/memory.limit_in_bytes` (and
//!   `memory.memsw.limit_in_bytes` at the same value when swap is accounted: no swap beyond the
//!   limit), `<root>/cpu/<path>/cpu.cfs_quota_us` over `cpu.cfs_period_us`.
//! - **cgroup v2** (one hierarchy): `memory.max` (and `memory.swap.max` 0), `cpu.max`, with the
//!   `memory` and `cpu` controllers enabled in the parents' `cgroup.subtree_control`.
//! - The engine's **cgroup driver** names the parent: `cgroupfs` takes the path
//!   `/berth/berth-<task id>`; `systemd` takes a slice, `berth-<task id>.slice`, which systemd
//!   nests under `berth.slice` (and may reset the files when it sets the slice up, so the limits
//!   are written again after each container starts).
//!
//! The name is derived from the task id alone, so a restarted agent finds the same cgroup when
//! it re-adopts the task's containers. The task's cgroup is removed with its containers.

use std::io;
use std::path::{Path, PathBuf};

/// CPU period written with the quota (the kernel's default, 100 ms).
pub const CFS_PERIOD_US: u64 = 100_000;
const MIB: u64 = 1024 * 1024;

/// cgroup v1 or v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// One hierarchy per controller (`<root>/memory`, `<root>/cpu`, ...).
    V1,
    /// The unified hierarchy.
    V2,
}

/// How the engine names cgroups (`docker info`'s `CgroupDriver`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupDriver {
    /// Paths (`/berth/berth-<id>`).
    Cgroupfs,
    /// systemd slices (`berth-<id>.slice`).
    Systemd,
}

/// A task's limits: CPU units (1024 = one vCPU) and memory MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TaskLimits {
    /// CPU units.
    pub cpu: Option<u32>,
    /// Memory, MiB.
    pub memory: Option<u32>,
}

impl TaskLimits {
    /// Whether there is anything to enforce.
    pub fn any(&self) -> bool {
        self.cpu.is_some() || self.memory.is_some()
    }
}

/// The CFS quota (µs per [`CFS_PERIOD_US`]) of `units` CPU units (1024 = one CPU), never
/// below the kernel's minimum of 1 ms.
pub fn cfs_quota_us(units: u32) -> u64 {
    (u64::from(units) * CFS_PERIOD_US / 1024).max(1000)
}

/// Where and how task cgroups are made on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskCgroups {
    root: PathBuf,
    version: CgroupVersion,
    driver: CgroupDriver,
}

impl TaskCgroups {
    /// Task cgroups under `root` (normally `/sys/fs/cgroup`), when the agent can make them
    /// there: the shared `berth` parent is created (in the memory hierarchy on v1). The error
    /// says why not (the agent then caps each container at the task's size instead).
    pub fn detect(
        root: &Path,
        version: Option<CgroupVersion>,
        driver: CgroupDriver,
    ) -> Result<TaskCgroups, String> {
        let version = match version {
            Some(v) => v,
            None if root.join("cgroup.controllers").exists() => CgroupVersion::V2,
            None if root.join("memory").is_dir() => CgroupVersion::V1,
            None => {
                return Err(format!(
                    "no cgroup hierarchy the agent can see at {}",
                    root.display()
                ));
            }
        };
        let cg = TaskCgroups {
            root: root.to_path_buf(),
            version,
            driver,
        };
        let shared = match version {
            CgroupVersion::V1 => root.join("memory").join(cg.shared_dir()),
            CgroupVersion::V2 => root.join(cg.shared_dir()),
        };
        std::fs::create_dir_all(&shared)
            .map_err(|e| format!("cannot create {}: {e}", shared.display()))?;
        if version == CgroupVersion::V2 {
            // The root may refuse (it is the host's, or already set); the shared parent's own
            // subtree_control is what the task cgroups need.
            let _ = enable_controllers(root);
            enable_controllers(&shared).map_err(|e| {
                format!(
                    "cannot enable the memory and cpu controllers in {}: {e}",
                    shared.display()
                )
            })?;
        }
        Ok(cg)
    }

    /// `cgroup v1, cgroupfs` (for the agent's start-up line).
    pub fn describe(&self) -> String {
        format!(
            "cgroup {}, {}",
            match self.version {
                CgroupVersion::V1 => "v1",
                CgroupVersion::V2 => "v2",
            },
            match self.driver {
                CgroupDriver::Cgroupfs => "cgroupfs",
                CgroupDriver::Systemd => "systemd",
            }
        )
    }

    /// The cgroup driver.
    pub fn driver(&self) -> CgroupDriver {
        self.driver
    }

    fn shared_dir(&self) -> &'static str {
        match self.driver {
            CgroupDriver::Cgroupfs => "berth",
            CgroupDriver::Systemd => "berth.slice",
        }
    }

    /// The task's `CgroupParent`, as the engine's driver wants it.
    pub fn parent_name(&self, task_id: &str) -> String {
        let id = clean_id(task_id);
        match self.driver {
            CgroupDriver::Cgroupfs => format!("/berth/berth-{id}"),
            CgroupDriver::Systemd => format!("berth-{id}.slice"),
        }
    }

    /// The task's cgroup, relative to a hierarchy's root.
    fn relative(&self, task_id: &str) -> PathBuf {
        let id = clean_id(task_id);
        match self.driver {
            CgroupDriver::Cgroupfs => PathBuf::from("berth").join(format!("berth-{id}")),
            CgroupDriver::Systemd => PathBuf::from("berth.slice").join(format!("berth-{id}.slice")),
        }
    }

    /// The directory holding the task's memory limit (for checks and tests).
    pub fn memory_dir(&self, task_id: &str) -> PathBuf {
        match self.version {
            CgroupVersion::V1 => self.root.join("memory").join(self.relative(task_id)),
            CgroupVersion::V2 => self.root.join(self.relative(task_id)),
        }
    }

    /// Create the task's cgroup (idempotent) and write its limits.
    pub fn apply(&self, task_id: &str, limits: TaskLimits) -> io::Result<()> {
        let rel = self.relative(task_id);
        match self.version {
            CgroupVersion::V1 => {
                if let Some(mib) = limits.memory {
                    let dir = self.root.join("memory").join(&rel);
                    std::fs::create_dir_all(&dir)?;
                    let bytes = (u64::from(mib) * MIB).to_string();
                    write(&dir.join("memory.limit_in_bytes"), &bytes)?;
                    // Present only when swap is accounted; memory + swap no higher than memory.
                    let memsw = dir.join("memory.memsw.limit_in_bytes");
                    if memsw.exists() {
                        write(&memsw, &bytes)?;
                    }
                }
                if let Some(units) = limits.cpu {
                    let dir = self.root.join("cpu").join(&rel);
                    std::fs::create_dir_all(&dir)?;
                    write(&dir.join("cpu.cfs_period_us"), &CFS_PERIOD_US.to_string())?;
                    write(
                        &dir.join("cpu.cfs_quota_us"),
                        &cfs_quota_us(units).to_string(),
                    )?;
                }
            }
            CgroupVersion::V2 => {
                let dir = self.root.join(&rel);
                if let Some(parent) = dir.parent() {
                    std::fs::create_dir_all(parent)?;
                    enable_controllers(parent)?;
                }
                std::fs::create_dir_all(&dir)?;
                if let Some(mib) = limits.memory {
                    write(&dir.join("memory.max"), &(u64::from(mib) * MIB).to_string())?;
                    let swap = dir.join("memory.swap.max");
                    if swap.exists() {
                        write(&swap, "0")?;
                    }
                }
                if let Some(units) = limits.cpu {
                    write(
                        &dir.join("cpu.max"),
                        &format!("{} {CFS_PERIOD_US}", cfs_quota_us(units)),
                    )?;
                }
                // The engine creates the containers' cgroups below: they need the controllers.
                enable_controllers(&dir)?;
            }
        }
        Ok(())
    }

    /// Remove the task's cgroup from every hierarchy (once its containers are gone: a cgroup
    /// with members or children stays, and `false` says so).
    pub fn remove(&self, task_id: &str) -> bool {
        let rel = self.relative(task_id);
        let dirs: Vec<PathBuf> = match self.version {
            CgroupVersion::V1 => std::fs::read_dir(&self.root)
                .map(|entries| {
                    entries
                        .flatten()
                        .map(|e| e.path().join(&rel))
                        .filter(|p| p.is_dir())
                        .collect()
                })
                .unwrap_or_default(),
            CgroupVersion::V2 => vec![self.root.join(&rel)]
                .into_iter()
                .filter(|p| p.is_dir())
                .collect(),
        };
        let mut all = true;
        for dir in dirs {
            if let Err(e) = std::fs::remove_dir(&dir)
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::debug!(dir = %dir.display(), error = %e, "task cgroup not removed (yet)");
                all = false;
            }
        }
        all
    }
}

/// Task ids are ARN suffixes; keep what is safe in a path and in a systemd unit name (where
/// `-` means nesting).
fn clean_id(task_id: &str) -> String {
    task_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect()
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    std::fs::write(path, value).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("writing {value} to {}: {e}", path.display()),
        )
    })
}

/// `+memory +cpu` in `dir/cgroup.subtree_control` (v2), unless they already are.
fn enable_controllers(dir: &Path) -> io::Result<()> {
    let path = dir.join("cgroup.subtree_control");
    let enabled = std::fs::read_to_string(&path).unwrap_or_default();
    let missing: Vec<String> = ["memory", "cpu"]
        .iter()
        .filter(|c| !enabled.split_whitespace().any(|e| e == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    write(&path, &missing.join(" "))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn read(p: PathBuf) -> String {
        std::fs::read_to_string(p).unwrap()
    }

    #[test]
    fn quota_of_cpu_units() {
        assert_eq!(cfs_quota_us(1024), 100_000);
        assert_eq!(cfs_quota_us(256), 25_000);
        assert_eq!(cfs_quota_us(4096), 400_000);
        assert_eq!(cfs_quota_us(1), 1000);
    }

    #[test]
    fn names_follow_the_driver_and_the_task_id() {
        let cg = |driver| TaskCgroups {
            root: "/sys/fs/cgroup".into(),
            version: CgroupVersion::V1,
            driver,
        };
        assert_eq!(
            cg(CgroupDriver::Cgroupfs).parent_name("0f1e2d3c"),
            "/berth/berth-0f1e2d3c"
        );
        assert_eq!(
            cg(CgroupDriver::Systemd).parent_name("0f1e-2d3c"),
            "berth-0f1e2d3c.slice"
        );
        assert_eq!(
            cg(CgroupDriver::Cgroupfs).memory_dir("a/../b"),
            PathBuf::from("/sys/fs/cgroup/memory/berth/berth-ab")
        );
        assert_eq!(
            cg(CgroupDriver::Systemd).memory_dir("abc"),
            PathBuf::from("/sys/fs/cgroup/memory/berth.slice/berth-abc.slice")
        );
    }

    #[test]
    fn v1_writes_memory_and_cpu_in_their_hierarchies_and_removes_them() {
        let root = tempfile::tempdir().unwrap();
        for h in ["memory", "cpu", "pids"] {
            std::fs::create_dir(root.path().join(h)).unwrap();
        }
        let cg = TaskCgroups::detect(root.path(), None, CgroupDriver::Cgroupfs).unwrap();
        assert_eq!(cg.version, CgroupVersion::V1);
        let limits = TaskLimits {
            cpu: Some(512),
            memory: Some(64),
        };
        cg.apply("t1", limits).unwrap();
        // Applying again (re-adoption) is harmless.
        cg.apply("t1", limits).unwrap();
        let mem = root.path().join("memory/berth/berth-t1");
        assert_eq!(read(mem.join("memory.limit_in_bytes")), "67108864");
        assert!(!mem.join("memory.memsw.limit_in_bytes").exists());
        let cpu = root.path().join("cpu/berth/berth-t1");
        assert_eq!(read(cpu.join("cpu.cfs_quota_us")), "50000");
        assert_eq!(read(cpu.join("cpu.cfs_period_us")), "100000");
        // The engine made the same cgroup in another hierarchy.
        std::fs::create_dir_all(root.path().join("pids/berth/berth-t1")).unwrap();
        // (A real cgroupfs removes the control files with the directory.)
        std::fs::remove_file(mem.join("memory.limit_in_bytes")).unwrap();
        for f in ["cpu.cfs_quota_us", "cpu.cfs_period_us"] {
            std::fs::remove_file(cpu.join(f)).unwrap();
        }
        assert!(cg.remove("t1"));
        assert!(!mem.exists() && !cpu.exists());
        assert!(!root.path().join("pids/berth/berth-t1").exists());
        assert!(root.path().join("memory/berth").exists());
    }

    #[test]
    fn v2_enables_controllers_and_writes_max_files() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("cgroup.controllers"), "cpu memory pids").unwrap();
        std::fs::write(root.path().join("cgroup.subtree_control"), "memory").unwrap();
        let cg = TaskCgroups::detect(root.path(), None, CgroupDriver::Cgroupfs).unwrap();
        assert_eq!(cg.version, CgroupVersion::V2);
        cg.apply(
            "t2",
            TaskLimits {
                cpu: Some(256),
                memory: None,
            },
        )
        .unwrap();
        let dir = root.path().join("berth/berth-t2");
        assert_eq!(read(dir.join("cpu.max")), "25000 100000");
        assert!(!dir.join("memory.max").exists());
        assert_eq!(read(root.path().join("cgroup.subtree_control")), "+cpu");
        assert_eq!(
            read(root.path().join("berth/cgroup.subtree_control")),
            "+memory +cpu"
        );
        assert_eq!(read(dir.join("cgroup.subtree_control")), "+memory +cpu");
    }

    #[test]
    fn unusable_roots_say_why() {
        let root = tempfile::tempdir().unwrap();
        let err = TaskCgroups::detect(root.path(), None, CgroupDriver::Cgroupfs).unwrap_err();
        assert!(err.contains("no cgroup hierarchy"), "{err}");
        // A file where the shared parent would go: it cannot be created.
        std::fs::create_dir(root.path().join("memory")).unwrap();
        std::fs::write(root.path().join("memory/berth"), "").unwrap();
        let err = TaskCgroups::detect(root.path(), Some(CgroupVersion::V1), CgroupDriver::Cgroupfs)
            .unwrap_err();
        assert!(err.contains("cannot create"), "{err}");
    }
}
