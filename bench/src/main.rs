//! Berth's benchmarks. Each case runs Berth and its reference in the same invocation,
//! alternating rounds, and prints (and writes as `<out>/<case>.md` and `<out>/<case>.json`)
//! p50/p99/max, throughput, CPU-seconds and peak RSS of every process involved, and the ratio
//! to the reference.
//!
//! ```text
//! berth-bench <case> [--quick] [--out DIR] [size flags]
//! cases: runtask jobs selfheal docker burst burst-docker frozen saturation rolling api
//!        footprint logs logstore placement all
//! ```
//! The `berth` binary is taken from `BERTH_BIN` or next to this one (build it with
//! `cargo build --release -p berth -p berth-bench`). See BENCHMARKS.md for each case's flags.

mod berth;
mod cases;
mod cluster;
mod logs;
mod logstore;
mod placement;
mod procs;
mod report;
mod sigv4;

use anyhow::Result;
use std::path::PathBuf;

/// The local test image (`FROM scratch` + static busybox; `.ci/run` builds it).
pub(crate) const DOCKER_IMAGE: &str = "berth-test/busybox:latest";

/// The command line of a case.
pub(crate) struct Opts {
    args: Vec<String>,
    pub(crate) quick: bool,
    pub(crate) out: PathBuf,
}

impl Opts {
    fn parse(args: Vec<String>) -> Opts {
        let quick = args.iter().any(|a| a == "--quick");
        let out = args
            .iter()
            .position(|a| a == "--out")
            .and_then(|i| args.get(i + 1))
            .map_or_else(|| PathBuf::from("bench-results"), PathBuf::from);
        Opts { args, quick, out }
    }

    /// The value of flag `name`, else `full` (or `quick` with --quick).
    pub(crate) fn n(&self, name: &str, full: usize, quick: usize) -> usize {
        self.args
            .iter()
            .position(|a| a == name)
            .and_then(|i| self.args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(if self.quick { quick } else { full })
    }

    /// A string flag.
    pub(crate) fn s(&self, name: &str) -> Option<String> {
        self.args
            .iter()
            .position(|a| a == name)
            .and_then(|i| self.args.get(i + 1))
            .cloned()
    }
}

const CASES: [&str; 14] = [
    "runtask",
    "jobs",
    "selfheal",
    "docker",
    "burst",
    "burst-docker",
    "frozen",
    "saturation",
    "rolling",
    "api",
    "footprint",
    "logs",
    "logstore",
    "placement",
];

async fn run_case(case: &str, o: &Opts) -> Result<report::Report> {
    match case {
        "runtask" => cases::runtask(o).await,
        "jobs" => cases::jobs(o).await,
        "selfheal" => cases::selfheal(o).await,
        "docker" => cases::docker(o).await,
        "burst" => cases::burst(o, false).await,
        "burst-docker" => cases::burst(o, true).await,
        "frozen" => cluster::frozen(o).await,
        "saturation" => cluster::saturation(o).await,
        "rolling" => cluster::rolling(o).await,
        "api" => cluster::api(o).await,
        "footprint" => cluster::footprint(o).await,
        "logs" => logs::logs(o).await,
        "logstore" => logstore::logstore(o),
        "placement" => placement::placement(o).await,
        other => anyhow::bail!("unknown case {other}"),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(case) = args.first().cloned() else {
        usage();
    };
    if case == "__writer" {
        return logs::writer_main(&args[1..]);
    }
    if case == "__ref" {
        return procs::reference_main(args.get(1).map_or("{}", String::as_str));
    }
    let o = Opts::parse(args);
    if case == "all" {
        let mut md = String::new();
        let mut failed = Vec::new();
        for c in CASES {
            eprintln!("== {c}");
            match run_case(c, &o).await.and_then(|r| r.emit(&o.out)) {
                Ok(m) => md.push_str(&m),
                Err(e) => {
                    eprintln!("case {c} failed: {e:#}");
                    failed.push(c);
                }
            }
            md.push('\n');
        }
        std::fs::write(o.out.join("all.md"), md)?;
        if !failed.is_empty() {
            anyhow::bail!("cases failed: {}", failed.join(", "));
        }
        return Ok(());
    }
    if !CASES.contains(&case.as_str()) {
        usage();
    }
    run_case(&case, &o).await?.emit(&o.out)?;
    Ok(())
}

fn usage() -> ! {
    eprintln!(
        "usage: berth-bench <{}|all> [--quick] [--out DIR] [size flags, see BENCHMARKS.md]",
        CASES.join("|")
    );
    std::process::exit(2);
}
