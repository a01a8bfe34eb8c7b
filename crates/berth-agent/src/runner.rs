//! One task's life on this host: resolve its containers, start them in `dependsOn` order,
//! watch exits and health, stop everything when an essential container exits or the server
//! asks, and publish a [`TaskReport`] at every change. The decisions are in [`crate::plan`];
//! this is the I/O around them.

use crate::logship::{self, AwslogsOptions, LogShipper, StreamWriter};
use crate::plan::{self, ContainerState, Health, Readiness};
use crate::reports::ReportBook;
use crate::runtime::process::{ContainerSpec, OutputLine, OutputSink};
use crate::runtime::{AnyRuntime, ContainerExit, StartError};
use berth_api::ecs::ContainerDefinition;
use berth_core::agent_protocol::{ContainerReport, DesiredTask, TaskReport};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// ECS's default grace between SIGTERM and SIGKILL.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a container waits for its dependencies (ECS agent's ECS_CONTAINER_START_TIMEOUT).
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(180);

/// Everything a runner needs from the agent.
#[derive(Clone)]
pub struct RunnerEnv {
    /// The runtime (processes or Docker).
    pub runtime: Arc<AnyRuntime>,
    /// Where reports go.
    pub reports: ReportBook,
    /// Where container output is kept (`<dir>/<task-id>/<container>.log`).
    pub logs_dir: PathBuf,
    /// Ships the output of `awslogs` containers.
    pub logs: LogShipper,
}

enum Event {
    Exited(usize, ContainerExit),
    Health(usize, Health),
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn task_id(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// The effective container definitions of a desired task (overrides applied).
pub fn containers_of(task: &DesiredTask) -> Vec<ContainerDefinition> {
    berth_core::task::effective_containers(&task.task_definition, &task.overrides)
}

fn secs(v: Option<i32>, default: Duration) -> Duration {
    v.and_then(|s| u64::try_from(s).ok())
        .map_or(default, Duration::from_secs)
}

struct Runner {
    task: DesiredTask,
    env: RunnerEnv,
    defs: Vec<ContainerDefinition>,
    names: Vec<String>,
    states: Vec<ContainerState>,
    containers: Vec<ContainerReport>,
    stoppers: Vec<Option<mpsc::UnboundedSender<Duration>>>,
    health_tasks: Vec<tokio::task::JoinHandle<()>>,
    started_order: Vec<usize>,
    report: TaskReport,
    events_tx: mpsc::UnboundedSender<Event>,
    events_rx: mpsc::UnboundedReceiver<Event>,
    /// Each container's `awslogs` options (validated before anything starts).
    awslogs: Vec<Option<AwslogsOptions>>,
    /// The containers' output tasks (file and log stream).
    outputs: Vec<tokio::task::JoinHandle<()>>,
}

/// Run one task to STOPPED. `stop` turns true when the server wants the task stopped.
pub async fn run_task(task: DesiredTask, env: RunnerEnv, mut stop: watch::Receiver<bool>) {
    let defs = containers_of(&task);
    let names: Vec<String> = defs
        .iter()
        .map(|c| c.name.clone().unwrap_or_default())
        .collect();
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let mut r = Runner {
        report: TaskReport {
            task_arn: task.task_arn.clone(),
            last_status: "PENDING".into(),
            health_status: Some("UNKNOWN".into()),
            ..Default::default()
        },
        containers: names
            .iter()
            .map(|n| ContainerReport {
                name: n.clone(),
                last_status: "PENDING".into(),
                health_status: Some("UNKNOWN".into()),
                ..Default::default()
            })
            .collect(),
        states: vec![ContainerState::Pending; defs.len()],
        stoppers: vec![None; defs.len()],
        health_tasks: Vec::new(),
        started_order: Vec::new(),
        task,
        env,
        defs,
        names,
        events_tx,
        events_rx,
        awslogs: Vec::new(),
        outputs: Vec::new(),
    };
    r.run(&mut stop).await;
    for h in &r.health_tasks {
        h.abort();
    }
}

impl Runner {
    fn publish(&mut self) {
        self.report.containers = self.containers.clone();
        self.env.reports.publish(self.report.clone());
    }

    fn set_status(&mut self, status: &str) {
        self.report.last_status = status.to_string();
    }

    async fn run(&mut self, stop: &mut watch::Receiver<bool>) {
        let now = now_ms();
        self.report.pull_started_at_ms = Some(now);
        self.publish();
        // Images pulled (Docker) or command lines resolved (processes); containers a previous
        // agent run created are found to be re-adopted.
        let (specs, existing) = match self.env.runtime.prepare(&self.task, &self.defs).await {
            Ok(p) => (p.specs, p.existing),
            Err(e) => return self.fail_to_start(&e.to_string()).await,
        };
        if let Err(reason) = self.prepare_logs().await {
            return self.fail_to_start(&reason).await;
        }
        self.report.pull_stopped_at_ms = Some(now_ms());
        self.set_status("ACTIVATING");
        self.publish();

        let started = std::time::Instant::now();
        let mut outcome: Option<(Option<&'static str>, Option<String>)> = None;
        // Re-adopt what exists, whatever its dependencies (they were met when it started).
        for i in (0..self.defs.len()).filter(|&i| existing[i]) {
            if let Err(e) = self.start_container(i, &specs[i]).await {
                outcome = self.block(i, e.to_string());
            }
        }
        while outcome.is_none() {
            if *stop.borrow() {
                outcome = Some((None, None));
                break;
            }
            // Start every container whose dependencies are met.
            #[allow(clippy::needless_range_loop)] // `i` indexes four parallel vectors.
            for i in 0..self.defs.len() {
                if self.states[i] != ContainerState::Pending {
                    continue;
                }
                match plan::readiness(&self.defs[i], &self.names, &self.states) {
                    Readiness::Waiting => {
                        let timeout = secs(self.defs[i].start_timeout, DEFAULT_START_TIMEOUT);
                        if started.elapsed() > timeout {
                            let reason = format!(
                                "DependencyTimeoutError: container {} waited {}s for its dependencies",
                                self.names[i],
                                timeout.as_secs()
                            );
                            outcome = self.block(i, reason);
                        }
                    }
                    Readiness::Blocked(why) => {
                        let reason = format!(
                            "DependencyConditionFailed: container {} cannot start: {why}",
                            self.names[i]
                        );
                        outcome = self.block(i, reason);
                    }
                    Readiness::Ready => {
                        if let Err(e) = self.start_container(i, &specs[i]).await {
                            let reason = e.to_string();
                            self.containers[i].reason = Some(reason.clone());
                            self.containers[i].last_status = "STOPPED".into();
                            self.states[i] = ContainerState::Stopped {
                                exit_code: None,
                                started: false,
                            };
                            if self.defs[i].essential.unwrap_or(true)
                                || self.report.started_at_ms.is_none()
                            {
                                outcome = Some((Some("TaskFailedToStart"), Some(reason)));
                            }
                        }
                    }
                }
                if outcome.is_some() {
                    break;
                }
            }
            if outcome.is_some() {
                break;
            }
            let all_started = self
                .states
                .iter()
                .all(|s| !matches!(s, ContainerState::Pending));
            if all_started && self.report.started_at_ms.is_none() {
                self.report.started_at_ms = Some(now_ms());
                self.set_status("RUNNING");
                self.publish();
            }
            // Wait for something to happen (or re-check dependency timeouts every second).
            tokio::select! {
                biased;
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        outcome = Some((None, None));
                    }
                }
                Some(ev) = self.events_rx.recv() => {
                    outcome = self.handle(ev);
                }
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        let (code, reason) = outcome.unwrap_or((None, None));
        self.shutdown(code, reason).await;
    }

    /// Validate the `awslogs` options of every container and make sure their log groups
    /// (and prefixed streams) exist, before any container starts, as the ECS agent does.
    async fn prepare_logs(&mut self) -> Result<(), String> {
        const PREFIX: &str = "ResourceInitializationError: failed to validate logger args";
        let task_id = task_id(&self.task.task_arn).to_string();
        let mut all = Vec::with_capacity(self.defs.len());
        for c in &self.defs {
            all.push(AwslogsOptions::of(c).map_err(|e| format!("{PREFIX}: {e}"))?);
        }
        for (i, o) in all.iter().enumerate() {
            let Some(o) = o else { continue };
            let streams: Vec<String> = o
                .stream_prefix
                .is_some()
                .then(|| o.stream_name(&self.names[i], &task_id, ""))
                .into_iter()
                .collect();
            if let Err(e) = self.env.logs.ensure_group(o, streams).await {
                let hint = if e.starts_with("ResourceNotFoundException") {
                    format!(
                        " (create the log group with `aws logs create-log-group --log-group-name {}`, or set \"awslogs-create-group\": \"true\" in the container's logConfiguration options)",
                        o.group
                    )
                } else {
                    String::new()
                };
                return Err(format!(
                    "{PREFIX}: create stream has been retried 1 times: failed to create Cloudwatch log stream: {e} : exit status 1{hint}"
                ));
            }
        }
        self.awslogs = all;
        Ok(())
    }

    /// A container can never start. Essential: the task fails; non-essential: it is marked
    /// STOPPED and the task goes on.
    fn block(
        &mut self,
        i: usize,
        reason: String,
    ) -> Option<(Option<&'static str>, Option<String>)> {
        self.containers[i].reason = Some(reason.clone());
        self.containers[i].last_status = "STOPPED".into();
        self.states[i] = ContainerState::Stopped {
            exit_code: None,
            started: false,
        };
        self.publish();
        self.defs[i].essential.unwrap_or(true).then(|| {
            let code = if self.report.started_at_ms.is_none() {
                "TaskFailedToStart"
            } else {
                "EssentialContainerExited"
            };
            (Some(code), Some(reason))
        })
    }

    fn handle(&mut self, ev: Event) -> Option<(Option<&'static str>, Option<String>)> {
        match ev {
            Event::Exited(i, info) => {
                self.on_exit(i, &info);
                self.publish();
                if self.defs[i].essential.unwrap_or(true) {
                    return Some((
                        Some("EssentialContainerExited"),
                        Some("Essential container in task exited".into()),
                    ));
                }
                None
            }
            Event::Health(i, h) => {
                if let ContainerState::Running { health } = &mut self.states[i] {
                    *health = h;
                }
                self.containers[i].health_status = Some(h.as_str().into());
                self.report.health_status =
                    Some(plan::task_health(&self.defs, &self.states).as_str().into());
                self.publish();
                None
            }
        }
    }

    fn on_exit(&mut self, i: usize, info: &ContainerExit) {
        self.states[i] = ContainerState::Stopped {
            exit_code: info.exit_code,
            started: true,
        };
        self.containers[i].last_status = "STOPPED".into();
        self.containers[i].exit_code = info.exit_code;
        if info.reason.is_some() {
            self.containers[i].reason.clone_from(&info.reason);
        }
        self.stoppers[i] = None;
    }

    async fn start_container(&mut self, i: usize, spec: &ContainerSpec) -> Result<(), StartError> {
        let (out_tx, out_rx) = mpsc::channel::<OutputLine>(OUTPUT_CHANNEL_LINES);
        // `mode: blocking` reaches back to the container: its writes wait when the shipper's
        // buffer is full. Otherwise the container never waits and what does not fit is
        // dropped and counted.
        let blocking = self
            .awslogs
            .get(i)
            .and_then(Option::as_ref)
            .is_some_and(|o| o.blocking);
        let sink = if blocking {
            OutputSink::blocking(out_tx)
        } else {
            OutputSink::non_blocking(out_tx)
        };
        let proc = self.env.runtime.start(spec, sink).await?;
        let ship = self.awslogs.get(i).and_then(Option::as_ref).map(|o| {
            let stream = o.stream_name(&spec.container_name, &spec.task_id, &proc.runtime_id());
            self.env.logs.writer(o, stream)
        });
        self.outputs.push(tokio::spawn(keep_output(
            self.env.logs_dir.join(&spec.task_id),
            spec.container_name.clone(),
            out_rx,
            ship,
        )));
        self.containers[i].runtime_id = Some(proc.runtime_id());
        self.containers[i].network_bindings = proc.network_bindings();
        if let Some((ip, mac)) = proc.network_interface() {
            self.containers[i].private_ipv4_address = Some(ip);
            self.containers[i].mac_address = mac;
        }
        self.containers[i].last_status = "RUNNING".into();
        self.states[i] = ContainerState::Running {
            health: Health::Unknown,
        };
        self.started_order.push(i);
        if let Some(hc) = &self.defs[i].health_check {
            let events = self.events_tx.clone();
            let watch = proc.watch_health(hc, move |h| events.send(Event::Health(i, h)).is_ok());
            self.health_tasks.extend(watch);
        }
        let (stop_tx, mut stop_rx) = mpsc::unbounded_channel::<Duration>();
        self.stoppers[i] = Some(stop_tx);
        let events = self.events_tx.clone();
        tokio::spawn(async move {
            let info = tokio::select! {
                info = proc.wait() => info,
                Some(timeout) = stop_rx.recv() => proc.stop(timeout).await,
            };
            let _ = events.send(Event::Exited(i, info));
        });
        self.publish();
        Ok(())
    }

    async fn fail_to_start(&mut self, reason: &str) {
        for c in &mut self.containers {
            c.last_status = "STOPPED".into();
            c.reason.get_or_insert_with(|| reason.to_string());
        }
        self.shutdown(Some("TaskFailedToStart"), Some(reason.to_string()))
            .await;
    }

    /// Stop every running container (reverse start order, each with its stopTimeout), then
    /// report STOPPED.
    async fn shutdown(&mut self, code: Option<&'static str>, reason: Option<String>) {
        for h in &self.health_tasks {
            h.abort();
        }
        self.report.stop_code = code.map(str::to_string);
        self.report.stopped_reason = reason;
        self.report.stopping_at_ms = Some(now_ms());
        self.set_status("STOPPING");
        self.publish();
        for &i in self.started_order.clone().iter().rev() {
            let Some(stopper) = self.stoppers[i].take() else {
                continue;
            };
            let timeout = secs(self.defs[i].stop_timeout, DEFAULT_STOP_TIMEOUT);
            let _ = stopper.send(timeout);
            // Wait for this container's exit (others' events are applied as they come).
            while let Some(ev) = self.events_rx.recv().await {
                if let Event::Exited(j, info) = ev {
                    self.on_exit(j, &info);
                    if j == i {
                        break;
                    }
                }
            }
        }
        // Let the containers' output reach its log streams (bounded) before reporting STOPPED.
        let deadline = tokio::time::Instant::now() + logship::FLUSH_WAIT;
        for h in std::mem::take(&mut self.outputs) {
            let _ = tokio::time::timeout_at(deadline, h).await;
        }
        for c in &mut self.containers {
            c.last_status = "STOPPED".into();
        }
        let now = now_ms();
        self.report.execution_stopped_at_ms = Some(now);
        self.set_status("DEPROVISIONING");
        self.publish();
        self.env.runtime.release(&self.task.task_arn).await;
        self.report.stopped_at_ms = Some(now_ms());
        self.set_status("STOPPED");
        self.publish();
    }
}

/// Lines of output buffered between the runtime and a container's output task.
const OUTPUT_CHANNEL_LINES: usize = 16 * 1024;
/// Most lines an output task handles at once.
const OUTPUT_BATCH: usize = 1024;

/// Bytes of output gathered before they are written to the container's file.
const FILE_WRITE_BYTES: usize = 256 * 1024;

/// Append `bytes` to `file` on a blocking thread and empty it (keeping its room). The file
/// is gone after a failure (output is no longer kept, the stream goes on).
async fn write_out(file: Option<std::fs::File>, bytes: &mut Vec<u8>) -> Option<std::fs::File> {
    let mut f = file?;
    let mut buf = std::mem::take(bytes);
    let (f, buf, ok) = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let ok = f.write_all(&buf).is_ok();
        buf.clear();
        (f, buf, ok)
    })
    .await
    .ok()?;
    *bytes = buf;
    if ok {
        Some(f)
    } else {
        tracing::warn!("cannot keep container output: a write failed");
        None
    }
}

/// Keep a container's output in `<dir>/<container>.log` and, for `awslogs` containers, ship
/// it to its log stream.
async fn keep_output(
    dir: PathBuf,
    container: String,
    mut rx: mpsc::Receiver<OutputLine>,
    mut ship: Option<StreamWriter>,
) {
    let path = dir.join(format!("{container}.log"));
    let shown = dir.display().to_string();
    let file = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir)?;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
    })
    .await
    .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    let mut file = match file {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::warn!(error = %e, dir = %shown, "cannot keep container output");
            None
        }
    };
    // Lines are taken in batches: one lock and one wake-up per batch keeps up with chatty
    // containers (when this task falls behind, the runtime drops lines in non-blocking mode
    // and makes the container wait in blocking mode).
    // Grown by `recv_many` as lines come (an idle task holds no room for 1,024 lines).
    let mut batch: Vec<OutputLine> = Vec::new();
    // The file's copy: written (by a blocking thread, the buffer moved there and back, no
    // copy) when it holds FILE_WRITE_BYTES or nothing more is waiting.
    let mut bytes: Vec<u8> = Vec::new();
    loop {
        let got = if ship.as_ref().is_some_and(StreamWriter::has_partial) {
            // A multi-line event goes out after a moment without a new line.
            match tokio::time::timeout(
                logship::MULTILINE_FLUSH,
                rx.recv_many(&mut batch, OUTPUT_BATCH),
            )
            .await
            {
                Ok(n) => n,
                Err(_) => {
                    if let Some(w) = ship.as_mut() {
                        w.flush_partial().await;
                    }
                    continue;
                }
            }
        } else {
            rx.recv_many(&mut batch, OUTPUT_BATCH).await
        };
        if got == 0 {
            break;
        }
        if file.is_some() {
            for line in &batch {
                bytes.extend_from_slice(line.line.as_bytes());
                bytes.push(b'\n');
            }
            if bytes.len() >= FILE_WRITE_BYTES || rx.is_empty() {
                file = write_out(file, &mut bytes).await;
            }
        }
        match ship.as_mut() {
            Some(w) => {
                w.push_all(batch.drain(..).map(|l| (l.timestamp_ms, l.line)))
                    .await;
            }
            None => batch.clear(),
        }
    }
    if !bytes.is_empty() {
        drop(write_out(file, &mut bytes).await);
    }
    if let Some(w) = ship {
        let stream = w.stream().to_string();
        if !w.finish(logship::FLUSH_WAIT).await {
            tracing::warn!(stream = %stream, "container output not yet acknowledged by the server; still retrying");
        }
    }
}
