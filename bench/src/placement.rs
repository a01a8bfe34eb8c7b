//! Placement throughput: the control plane with many simulated agents (register, heartbeat,
//! acknowledge without starting anything) placing tasks from RunTask calls and services,
//! bin-packing on memory with an attribute constraint, committed durably.

use crate::Opts;
use crate::berth::{self, SimAgent};
use crate::cluster::{fsync_rate, wait_until};
use crate::procs::Meter;
use crate::report::{Report, Samples, Side};
use anyhow::Result;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Services the service half of the tasks is spread over.
const SERVICES: usize = 10;

/// Raise the soft limit on open files to the hard one; fail now (not halfway through
/// registering agents) if even the hard limit is below `need`.
fn raise_fd_limit(need: u64) -> Result<()> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    if hard < need {
        anyhow::bail!(
            "the open-files limit is {hard}, below the {need} this many simulated agents need \
             (raise the hard limit: ulimit -Hn, or /etc/security/limits.conf)"
        );
    }
    Ok(())
}

pub(crate) async fn placement(o: &Opts) -> Result<Report> {
    let agents = o.n("--agents", 5000, 10);
    let tasks = o.n("--tasks", 100_000, 200);
    // Every simulated agent holds a connection (its long poll) open in this process and in
    // the server, which inherits the limit set here.
    raise_fd_limit(agents as u64 + 1024)?;
    let (server, api) = berth::server(&[])?;
    api.call("CreateCluster", json!({"clusterName": "default"}))
        .await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let t_reg = Instant::now();
    for i in 0..agents {
        SimAgent::start(
            &api,
            json!([{"name": "rack", "value": format!("r{}", i % 10)}]),
            (2048, 4096),
            false,
            stop_rx.clone(),
        )
        .await?;
    }
    let reg_s = t_reg.elapsed().as_secs_f64();
    api.wait_for_agents(agents).await?;
    api.call(
        "RegisterTaskDefinition",
        json!({"family": "bench-place", "containerDefinitions": [{
            "name": "main", "image": "busybox", "memory": 128, "cpu": 64,
            "command": ["sleep", "3600"]}]}),
    )
    .await?;
    let constraint = json!([{"type": "memberOf", "expression": "attribute:rack != r9"}]);
    let strategy = json!([{"type": "binpack", "field": "memory"}]);
    let per_service = tasks / 2 / SERVICES;
    for s in 0..SERVICES {
        api.call(
            "CreateService",
            json!({"serviceName": format!("place-{s}"), "taskDefinition": "bench-place",
                "desiredCount": 0, "placementConstraints": constraint,
                "placementStrategy": strategy}),
        )
        .await?;
    }
    let mut meter = Meter::new(Side::Berth).with_client("berth-bench (clients + simulated agents)");
    meter.watch("berth server", server.pid());
    meter.begin();
    let t0 = Instant::now();
    let t0_epoch = berth::epoch_s();
    for s in 0..SERVICES {
        api.call(
            "UpdateService",
            json!({"service": format!("place-{s}"), "desiredCount": per_service}),
        )
        .await?;
    }
    let run_tasks = tasks - per_service * SERVICES;
    let calls = run_tasks.div_ceil(10);
    let next = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for _ in 0..16 {
        let api = api.clone();
        let next = next.clone();
        let (c, st) = (constraint.clone(), strategy.clone());
        handles.push(tokio::spawn(async move {
            let mut lat = Samples::default();
            let mut placed = 0usize;
            while next.fetch_add(1, Ordering::Relaxed) < calls {
                let t = Instant::now();
                let v = api
                    .call(
                        "RunTask",
                        json!({"taskDefinition": "bench-place", "count": 10,
                            "placementConstraints": c, "placementStrategy": st}),
                    )
                    .await?;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                placed += v["tasks"].as_array().map_or(0, Vec::len);
            }
            Ok::<(Samples, usize), anyhow::Error>((lat, placed))
        }));
    }
    let mut run_lat = Samples::default();
    let mut run_placed = 0;
    for h in handles {
        let (l, p) = h.await??;
        run_lat.extend(&l);
        run_placed += p;
    }
    let timeout = Duration::from_secs(1800);
    for s in 0..SERVICES {
        let name = format!("place-{s}");
        wait_until("the services placed", timeout, || async {
            let d = api.service(&name).await?;
            let placed =
                d["runningCount"].as_u64().unwrap_or(0) + d["pendingCount"].as_u64().unwrap_or(0);
            Ok(placed >= per_service as u64)
        })
        .await?;
    }
    let total_s = t0.elapsed().as_secs_f64();
    meter.end();
    // Queue-to-placement of service tasks: createdAt since the UpdateService calls began.
    let mut svc_lat = Samples::default();
    for s in 0..SERVICES.min(2) {
        let arns = api
            .service_task_arns(&format!("place-{s}"), "RUNNING")
            .await?;
        for t in api.describe(&arns).await? {
            if let Some(c) = t["createdAt"].as_f64() {
                svc_lat.push((c - t0_epoch) * 1000.0);
            }
        }
    }
    let fsyncs = fsync_rate(&server.dir.0, Duration::from_secs(1))?;
    let usage = meter.usage();
    let _ = stop_tx.send(true);
    let placed = run_placed + per_service * SERVICES;
    let mut r = Report::new(
        "placement",
        format!(
            "Placement: {agents} simulated agents (2048 CPU, 4096 MiB, rack attribute), {placed} tasks \
             ({run_placed} by RunTask x10 from 16 clients, {} by {SERVICES} services), binpack on memory, \
             memberOf(attribute:rack != r9)",
            per_service * SERVICES
        ),
        ">= 10,000 placements/s sustained, p99 <= 50 ms",
    );
    #[allow(clippy::cast_precision_loss)]
    r.row_in(
        "rate",
        Side::Berth,
        "placements per second, sustained (all tasks placed)",
        "/s",
        Samples(vec![placed as f64 / total_s]),
        None,
    );
    r.row_in(
        "rate",
        Side::Reference,
        "fdatasync per second of the data disk (one commit each)",
        "/s",
        Samples(vec![fsyncs]),
        None,
    );
    r.row_in(
        "lat",
        Side::Berth,
        "RunTask (10 placements) request latency",
        "ms",
        run_lat,
        None,
    );
    r.row_in(
        "lat",
        Side::Berth,
        "service task createdAt since UpdateService",
        "ms",
        svc_lat,
        None,
    );
    r.usage = usage;
    r.notes.push(format!(
        "Registering the simulated agents took {reg_s:.1} s. A change wakes only the long polls of \
         the instances whose desired state it changed; they answer with that instance's full \
         desired state."
    ));
    Ok(r)
}
