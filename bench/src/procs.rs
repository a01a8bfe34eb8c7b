//! CPU-seconds and peak RSS of the processes a case involves, and the reference sides, which
//! run in a child `berth-bench __ref` process of their own so that their CPU and peak RSS
//! (`getrusage` of that process and of its children) are theirs alone.

use crate::report::{Samples, Side, Usage};
use anyhow::{Context, Result, bail};
use nix::sys::resource::{UsageWho, getrusage};
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// CPU seconds of a live process: (itself, its reaped children), from `/proc/PID/stat`.
pub(crate) fn proc_cpu(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime 15, cutime 16, cstime 17.
    let g = |i: usize| f.get(i - 3).and_then(|v| v.parse::<f64>().ok());
    let t = clock_ticks();
    Some(((g(14)? + g(15)?) / t, (g(16)? + g(17)?) / t))
}

/// Peak resident set of a live process (VmHWM), MiB.
pub(crate) fn proc_hwm_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Current resident set (VmRSS), MiB.
pub(crate) fn proc_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The pid of the oldest process named exactly `name` (dockerd, containerd), if any.
pub(crate) fn pid_named(name: &str) -> Option<u32> {
    let out = Command::new("pgrep")
        .args(["-o", "-x", name])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

fn tv_s(tv: nix::sys::time::TimeVal) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let s = tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
    s
}

/// CPU seconds of this process (all threads).
pub(crate) fn self_cpu() -> f64 {
    getrusage(UsageWho::RUSAGE_SELF).map_or(0.0, |u| tv_s(u.user_time()) + tv_s(u.system_time()))
}

/// CPU of each watched process (self, reaped children) and of the bench, at a phase's start.
type Snapshot = (Vec<Option<(f64, f64)>>, f64);

/// Accumulates the CPU of named processes over the phases of one side (`begin`/`end` around
/// each), and reads their peak RSS at the end. The bench's own CPU during those phases is
/// counted as the load generator's.
pub(crate) struct Meter {
    side: Side,
    procs: Vec<(String, u32, f64, f64)>,
    started: Option<Snapshot>,
    client_cpu: f64,
    client_name: Option<String>,
}

impl Meter {
    pub(crate) fn new(side: Side) -> Meter {
        Meter {
            side,
            procs: Vec::new(),
            started: None,
            client_cpu: 0.0,
            client_name: None,
        }
    }

    /// Count this bench process's CPU during the phases, as `name`.
    pub(crate) fn with_client(mut self, name: &str) -> Meter {
        self.client_name = Some(name.to_string());
        self
    }

    /// Watch `pid` as `name`.
    pub(crate) fn watch(&mut self, name: &str, pid: u32) {
        self.procs.push((name.to_string(), pid, 0.0, 0.0));
    }

    /// Watch Docker's daemons if they run.
    pub(crate) fn watch_docker(&mut self) {
        for name in ["dockerd", "containerd"] {
            if let Some(pid) = pid_named(name) {
                self.watch(name, pid);
            }
        }
    }

    pub(crate) fn begin(&mut self) {
        let snap = self.procs.iter().map(|p| proc_cpu(p.1)).collect();
        self.started = Some((snap, self_cpu()));
    }

    pub(crate) fn end(&mut self) {
        if let Some((snap, client)) = self.started.take() {
            for (p, before) in self.procs.iter_mut().zip(snap) {
                if let (Some(b), Some(a)) = (before, proc_cpu(p.1)) {
                    p.2 += a.0 - b.0;
                    p.3 += a.1 - b.1;
                }
            }
            self.client_cpu += self_cpu() - client;
        }
    }

    /// The usage rows (read while the processes still live).
    pub(crate) fn usage(&self) -> Vec<Usage> {
        let mut out = Vec::new();
        for (name, pid, cpu, child_cpu) in &self.procs {
            out.push(Usage {
                side: self.side,
                process: format!("{name} (pid {pid})"),
                cpu_s: *cpu,
                peak_rss_mib: proc_hwm_mib(*pid),
            });
            if *child_cpu > 0.0 {
                out.push(Usage {
                    side: self.side,
                    process: format!("{name}'s reaped children"),
                    cpu_s: *child_cpu,
                    peak_rss_mib: None,
                });
            }
        }
        if let Some(name) = &self.client_name {
            out.push(Usage {
                side: self.side,
                process: name.clone(),
                cpu_s: self.client_cpu,
                peak_rss_mib: None,
            });
        }
        out
    }
}

/// What a reference run reports back.
#[derive(Default)]
pub(crate) struct RefResult {
    pub(crate) samples: Samples,
    /// Wall time of the measured part, seconds.
    pub(crate) total_s: f64,
    pub(crate) self_cpu_s: f64,
    pub(crate) self_rss_mib: f64,
    pub(crate) children_cpu_s: f64,
    pub(crate) children_rss_mib: f64,
}

/// Accumulates reference runs of one case.
#[derive(Default)]
pub(crate) struct RefTotals {
    pub(crate) samples: Samples,
    pub(crate) total_s: f64,
    self_cpu_s: f64,
    self_rss_mib: f64,
    children_cpu_s: f64,
    children_rss_mib: f64,
}

impl RefTotals {
    pub(crate) fn add(&mut self, r: &RefResult) {
        self.samples.extend(&r.samples);
        self.total_s += r.total_s;
        self.self_cpu_s += r.self_cpu_s;
        self.self_rss_mib = self.self_rss_mib.max(r.self_rss_mib);
        self.children_cpu_s += r.children_cpu_s;
        self.children_rss_mib = self.children_rss_mib.max(r.children_rss_mib);
    }

    /// Usage rows: the reference's driver (the loop doing the work) and its children.
    pub(crate) fn usage(&self, driver: &str, children: &str) -> Vec<Usage> {
        vec![
            Usage {
                side: Side::Reference,
                process: driver.to_string(),
                cpu_s: self.self_cpu_s,
                peak_rss_mib: Some(self.self_rss_mib),
            },
            Usage {
                side: Side::Reference,
                process: children.to_string(),
                cpu_s: self.children_cpu_s,
                peak_rss_mib: Some(self.children_rss_mib),
            },
        ]
    }
}

/// Run a reference in a child `berth-bench __ref SPEC` and read its result.
pub(crate) fn run_ref(spec: &Value) -> Result<RefResult> {
    let me = std::env::current_exe()?;
    let out = Command::new(me)
        .arg("__ref")
        .arg(spec.to_string())
        .stderr(Stdio::inherit())
        .output()
        .context("running the reference")?;
    if !out.status.success() {
        bail!("reference {spec} failed");
    }
    let v: Value = serde_json::from_slice(&out.stdout).context("the reference's result")?;
    let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    Ok(RefResult {
        samples: Samples(
            v["samples"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_f64)
                .collect(),
        ),
        total_s: f("total_s"),
        self_cpu_s: f("self_cpu_s"),
        self_rss_mib: f("self_rss_mib"),
        children_cpu_s: f("children_cpu_s"),
        children_rss_mib: f("children_rss_mib"),
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn spawn(cmd: &[String]) -> Result<Child> {
    let (prog, args) = cmd.split_first().context("empty command")?;
    Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("spawning {prog}"))
}

fn reap(children: Vec<Child>) {
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// `n` items split over `loops` threads, each running `f(i)` for its share and returning
/// (milliseconds since the common start when each finished, the result).
fn parallel<T: Send + 'static>(
    n: usize,
    loops: usize,
    f: impl Fn() -> Result<T> + Send + Sync + Clone + 'static,
) -> Result<(Vec<f64>, Vec<T>, f64)> {
    let t0 = Instant::now();
    let loops = loops.max(1);
    let handles: Vec<_> = (0..loops)
        .map(|l| {
            let k = n / loops + usize::from(l < n % loops);
            let f = f.clone();
            std::thread::spawn(move || -> Result<(Vec<f64>, Vec<T>)> {
                let mut at = Vec::with_capacity(k);
                let mut out = Vec::with_capacity(k);
                for _ in 0..k {
                    out.push(f()?);
                    at.push(ms(t0.elapsed()));
                }
                Ok((at, out))
            })
        })
        .collect();
    let mut at = Vec::new();
    let mut out = Vec::new();
    for h in handles {
        let (a, o) = h
            .join()
            .map_err(|_| anyhow::anyhow!("reference loop panicked"))??;
        at.extend(a);
        out.extend(o);
    }
    Ok((at, out, t0.elapsed().as_secs_f64()))
}

fn docker_run(args: &[String]) -> Result<()> {
    let ok = Command::new("docker")
        .arg("run")
        .arg("-d")
        .args(args)
        .stdout(Stdio::null())
        .status()?
        .success();
    if ok {
        Ok(())
    } else {
        bail!("docker run failed")
    }
}

/// The body of `berth-bench __ref SPEC`: runs one reference and prints its result as JSON.
///
/// Kinds: `spawn-seq` (n sequential spawns, each timed; all killed after), `spawn-par` (n spawns
/// over `loops` threads, each timed from the common start; all killed after), `spawn-wait-par`
/// (n spawn+wait over `loops` threads; samples are per-loop rates), `supervise` (a child killed
/// `n` times, each time waited for and respawned, timed), `docker-seq` / `docker-par` (`docker
/// run -d` with `args`, sequential or over `loops` threads).
pub(crate) fn reference_main(spec: &str) -> Result<()> {
    let spec: Value = serde_json::from_str(spec)?;
    let n = usize::try_from(spec["n"].as_u64().unwrap_or(1))?;
    let loops = usize::try_from(spec["loops"].as_u64().unwrap_or(1))?;
    let cmd: Vec<String> = spec["cmd"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    let t0 = Instant::now();
    let mut samples = Vec::new();
    let total_s;
    match spec["kind"].as_str().unwrap_or_default() {
        "spawn-seq" => {
            let mut children = Vec::new();
            for _ in 0..n {
                let t = Instant::now();
                children.push(spawn(&cmd)?);
                samples.push(ms(t.elapsed()));
            }
            total_s = t0.elapsed().as_secs_f64();
            reap(children);
        }
        "spawn-par" => {
            let c = cmd.clone();
            let (at, children, total) = parallel(n, loops, move || spawn(&c))?;
            samples = at;
            total_s = total;
            reap(children);
        }
        "spawn-wait-par" => {
            let c = cmd.clone();
            let (_, _, total) = parallel(n, loops, move || {
                spawn(&c)?.wait()?;
                Ok(())
            })?;
            #[allow(clippy::cast_precision_loss)]
            samples.push(n as f64 / total);
            total_s = total;
        }
        "supervise" => {
            let mut child = spawn(&cmd)?;
            for _ in 0..n {
                let t = Instant::now();
                child.kill()?;
                child.wait()?;
                child = spawn(&cmd)?;
                samples.push(ms(t.elapsed()));
            }
            total_s = t0.elapsed().as_secs_f64();
            reap(vec![child]);
        }
        "docker-seq" => {
            for _ in 0..n {
                let t = Instant::now();
                docker_run(&cmd)?;
                samples.push(ms(t.elapsed()));
            }
            total_s = t0.elapsed().as_secs_f64();
        }
        "docker-par" => {
            let c = cmd.clone();
            let (at, _, total) = parallel(n, loops, move || docker_run(&c))?;
            samples = at;
            total_s = total;
        }
        "file-write" => {
            // `n` bytes of lines to a file in 64 KiB writes, one fdatasync per MiB.
            let dir = std::env::temp_dir().join(format!("berth-bench-file-{}", std::process::id()));
            let mut f = std::fs::File::create(&dir)?;
            let chunk = vec![b'x'; 64 * 1024];
            let mut left = n;
            let mut since_sync = 0usize;
            while left > 0 {
                let k = left.min(chunk.len());
                std::io::Write::write_all(&mut f, &chunk[..k])?;
                left -= k;
                since_sync += k;
                if since_sync >= 1 << 20 || left == 0 {
                    f.sync_data()?;
                    since_sync = 0;
                }
            }
            total_s = t0.elapsed().as_secs_f64();
            let _ = std::fs::remove_file(&dir);
        }
        other => bail!("unknown reference kind {other:?}"),
    }
    let me = getrusage(UsageWho::RUSAGE_SELF)?;
    let ch = getrusage(UsageWho::RUSAGE_CHILDREN)?;
    #[allow(clippy::cast_precision_loss)]
    let out = json!({
        "samples": samples,
        "total_s": total_s,
        "self_cpu_s": tv_s(me.user_time()) + tv_s(me.system_time()),
        "self_rss_mib": me.max_rss() as f64 / 1024.0,
        "children_cpu_s": tv_s(ch.user_time()) + tv_s(ch.system_time()),
        "children_rss_mib": ch.max_rss() as f64 / 1024.0,
    });
    println!("{out}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let (cpu, _) = proc_cpu(me).expect("own stat");
        assert!(cpu >= 0.0);
        assert!(proc_hwm_mib(me).expect("own status") > 0.0);
    }
}
