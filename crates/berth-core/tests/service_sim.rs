//! Deterministic simulation of the service scheduler.
//!
//! One seed is one world: a cluster of simulated container instances whose agents run tasks
//! (they start after a while, crash, fail to start, flap their health checks, stop when
//! told), go silent and come back, restart and lose their tasks; a user who scales, deploys
//! new revisions (good, broken, crashing, unhealthy ones), changes the deployment
//! configuration, drains instances; and a control plane that crashes and reloads from what it
//! committed. The code under test is the real one: the ECS operations (`ecs::handle`), the
//! scheduler pass (`service::reconcile`, which calls `service_plan::plan`), the task state
//! machine (`task::apply_report`, `task::desired_state`, `task::sweep`) and instance liveness
//! (`container_instance::heartbeat` / `connected`). Only the agents and the clock are
//! simulated; time is a number and every random choice comes from the seed.
//!
//! After every scheduler pass the invariants are checked (see [`Sim::check_pass`]); at the
//! end, after a quiet period with no faults, every service must have converged: one
//! COMPLETED deployment of a revision that works, `runningCount == desiredCount`.
//!
//! A failure prints its seed; replay it with
//! `BERTH_SIM_SEED=<seed> cargo test -p berth-core --test service_sim -- --nocapture`.
//! `BERTH_SIM_RUNS=<n>` runs more seeds than the default.

// Test code: helpers may panic on anything unexpected.
#![allow(clippy::unwrap_used)]

use berth_core::agent_protocol::{ContainerReport, RegisterRequest, TaskReport};
use berth_core::container_instance::{self, AGENT_TIMEOUT_MS};
use berth_core::service_plan::breaker_threshold;
use berth_core::state::{Kind, keys};
use berth_core::{Ctx, Mutation, PartitionKey, World, ecs, service, task};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use regex::Regex;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

const START_MS: i64 = 1_700_000_000_000;

/// Seeds run by the default `cargo test` (about 40 ms each with berth-core optimised, see
/// the workspace Cargo.toml); `BERTH_SIM_RUNS` runs more.
const DEFAULT_RUNS: u64 = 300;
const CLUSTER: &str = "sim";

fn pk() -> PartitionKey {
    PartitionKey {
        account: "123456789012".into(),
        region: "us-east-1".into(),
    }
}

/// How a revision behaves when the simulated agent runs it (its container's command says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    /// Starts and runs.
    Good,
    /// Starts, runs, and passes its health checks.
    Healthy,
    /// Has health checks that fail now and then, and recover.
    Flappy,
    /// Never starts (TaskFailedToStart).
    Broken,
    /// Starts, then exits within seconds.
    Crashy,
}

impl Behaviour {
    const ALL: [Behaviour; 5] = [
        Behaviour::Good,
        Behaviour::Healthy,
        Behaviour::Flappy,
        Behaviour::Broken,
        Behaviour::Crashy,
    ];

    fn word(self) -> &'static str {
        match self {
            Behaviour::Good => "good",
            Behaviour::Healthy => "healthy",
            Behaviour::Flappy => "flappy",
            Behaviour::Broken => "broken",
            Behaviour::Crashy => "crashy",
        }
    }

    fn from_word(w: &str) -> Behaviour {
        Behaviour::ALL
            .into_iter()
            .find(|b| b.word() == w)
            .unwrap_or(Behaviour::Good)
    }

    fn health_checked(self) -> bool {
        matches!(self, Behaviour::Healthy | Behaviour::Flappy)
    }

    /// Can a service of this revision settle (so that a deployment of it completes)?
    fn works(self) -> bool {
        matches!(self, Behaviour::Good | Behaviour::Healthy)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    Pending { until: i64 },
    Running,
    Stopping { until: i64 },
    Stopped,
}

/// A task as the simulated agent runs it.
#[derive(Debug, Clone)]
struct LocalTask {
    arn: String,
    behaviour: Behaviour,
    phase: Phase,
    started_at: Option<i64>,
    stopped_at: Option<i64>,
    health: Option<&'static str>,
    crash_at: Option<i64>,
    stop_code: Option<&'static str>,
    reason: Option<String>,
    exit_code: Option<i32>,
    sent: Option<TaskReport>,
}

impl LocalTask {
    fn report(&self) -> TaskReport {
        let status = match self.phase {
            Phase::Pending { .. } => "PENDING",
            Phase::Running | Phase::Stopping { .. } => "RUNNING",
            Phase::Stopped => "STOPPED",
        };
        let stopped = self.phase == Phase::Stopped;
        TaskReport {
            task_arn: self.arn.clone(),
            last_status: status.into(),
            containers: vec![ContainerReport {
                name: "app".into(),
                last_status: if stopped { "STOPPED" } else { status }.into(),
                exit_code: self.exit_code,
                reason: self.reason.clone(),
                runtime_id: Some(format!("process:{}", self.arn.len())),
                health_status: self.health.map(str::to_string),
                network_bindings: vec![],
                private_ipv4_address: None,
                mac_address: None,
            }],
            health_status: Some(self.health.unwrap_or("UNKNOWN").into()),
            pull_started_at_ms: None,
            pull_stopped_at_ms: None,
            started_at_ms: self.started_at,
            stopping_at_ms: self.stopped_at,
            execution_stopped_at_ms: self.stopped_at,
            stopped_at_ms: self.stopped_at,
            stop_code: self.stop_code.map(str::to_string),
            stopped_reason: self.reason.clone(),
        }
    }
}

/// One simulated host with its agent.
#[derive(Debug)]
struct Agent {
    arn: String,
    token: String,
    /// The agent cannot reach the server until then.
    silent_until: Option<i64>,
    /// Send every task's state on the next exchange (after a reconnect).
    resend: bool,
    tasks: BTreeMap<String, LocalTask>,
}

/// A service as the simulated user configured it.
#[derive(Debug, Clone)]
struct SvcCfg {
    name: String,
    daemon: bool,
}

/// What the checker remembers between passes about one deployment.
#[derive(Debug, Clone, PartialEq)]
struct DeploymentSeen {
    rollout: String,
}

/// Parameters of one run, drawn from the seed.
#[derive(Debug, Clone)]
struct Knobs {
    instances: usize,
    chaos_steps: usize,
    crash_per_step: f64,
    silence_per_step: f64,
    restart_per_step: f64,
    update_per_step: f64,
    drain_per_step: f64,
    server_crash_per_step: f64,
    retention_ms: i64,
}

struct Sim {
    seed: u64,
    world: World,
    /// What the control plane has committed: it is reloaded from this after a crash.
    store: BTreeMap<(String, String), Vec<u8>>,
    rng: StdRng,
    ids: StdRng,
    now: i64,
    agents: Vec<Agent>,
    services: Vec<SvcCfg>,
    revisions: BTreeMap<String, Behaviour>,
    knobs: Knobs,
    trace: Vec<String>,
    /// Rollout state per deployment id, as last seen (states only move forward).
    seen: BTreeMap<String, DeploymentSeen>,
    /// Tasks the scheduler or a user asked to stop (never wanted RUNNING again).
    stop_requested: BTreeSet<String>,
    /// Deployments that ever existed, per service.
    deployments_ever: BTreeMap<String, BTreeSet<String>>,
    events_ok: Vec<Regex>,
    passes: u64,
}

type SimResult<T> = Result<T, String>;

/// Each service (by name): what the checker reads of it, and its tasks by id.
type Snapshot = BTreeMap<String, (Value, BTreeMap<String, TaskSeen>)>;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn event_patterns() -> Vec<Regex> {
    let svc = r"\(service [A-Za-z0-9_-]+\)";
    let dep = r"\(deployment ecs-svc/[0-9]{19}\)";
    let task = r"\(task [0-9a-f]{32}\)";
    [
        format!(r"^{svc} has started [0-9]+ tasks: {task}( {task})*\.$"),
        format!(r"^{svc} has stopped [0-9]+ running tasks: {task}( {task})*\.$"),
        format!(r"^{svc} has reached a steady state\.$"),
        format!(r"^{svc} {dep} deployment completed\.$"),
        format!(r"^{svc} {dep} deployment failed: tasks failed to start\.$"),
        format!(r"^{svc} rolling back to deployment ecs-svc/[0-9]{{19}}\.$"),
        format!(r"^{svc} is unable to consistently start tasks successfully\.$"),
        format!(r"^{svc} {task} failed container health checks\.$"),
        format!(
            r"^{svc} was unable to place a task because no container instance met all of its requirements\. .+$"
        ),
        format!(
            r"^{svc} was unable to stop or start tasks during a deployment because of the service deployment configuration\. Update the minimumHealthyPercent or maximumPercent value and try again\.$"
        ),
    ]
    .iter()
    .map(|p| Regex::new(p).unwrap())
    .collect()
}

/// What the checker sees of one service task.
#[derive(Debug, Clone)]
struct TaskSeen {
    deployment: String,
    desired_running: bool,
    stopped: bool,
    healthy: bool,
    instance: String,
    stop_code: Option<String>,
    reason: Option<String>,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = StdRng::seed_from_u64(seed);
        let knobs = Knobs {
            instances: if rng.random_bool(0.2) {
                rng.random_range(10..=24)
            } else {
                rng.random_range(2..=6)
            },
            chaos_steps: rng.random_range(60..=300),
            crash_per_step: [0.0, 0.001, 0.005, 0.02][rng.random_range(0..4)],
            silence_per_step: [0.0, 0.002, 0.01][rng.random_range(0..3)],
            restart_per_step: [0.0, 0.0, 0.002][rng.random_range(0..3)],
            update_per_step: [0.005, 0.02, 0.05][rng.random_range(0..3)],
            drain_per_step: [0.0, 0.0, 0.005][rng.random_range(0..3)],
            server_crash_per_step: [0.0, 0.0, 0.005][rng.random_range(0..3)],
            retention_ms: [60_000, 3_600_000][rng.random_range(0..2)],
        };
        let mut sim = Sim {
            seed,
            world: World::default(),
            store: BTreeMap::new(),
            ids: StdRng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 1),
            rng,
            now: START_MS,
            agents: Vec::new(),
            services: Vec::new(),
            revisions: BTreeMap::new(),
            knobs,
            trace: Vec::new(),
            seen: BTreeMap::new(),
            stop_requested: BTreeSet::new(),
            deployments_ever: BTreeMap::new(),
            events_ok: event_patterns(),
            passes: 0,
        };
        sim.setup();
        sim
    }

    fn note(&mut self, what: impl Into<String>) {
        let t = (self.now - START_MS) as f64 / 1000.0;
        self.trace.push(format!("[{t:9.3}s] {}", what.into()));
    }

    fn commit(&mut self, mutations: Vec<Mutation>) {
        for m in mutations {
            match m {
                Mutation::Put(r) => {
                    self.store.insert((r.kind.name().into(), r.key), r.body);
                }
                Mutation::Delete { kind, key } => {
                    self.store.remove(&(kind.name().to_string(), key));
                }
            }
        }
    }

    /// Call an ECS operation as the user.
    fn call(&mut self, op: &str, body: &Value) -> Result<Value, String> {
        let mut ctx = Ctx::new(self.now, pk(), "user", &mut self.ids);
        let bytes = serde_json::to_vec(body).unwrap();
        let r = ecs::handle(&mut self.world, &mut ctx, op, &bytes);
        let mutations = std::mem::take(&mut ctx.mutations);
        drop(ctx);
        match r {
            Ok(out) => {
                self.commit(mutations);
                Ok(serde_json::from_slice(&out).unwrap())
            }
            Err(e) => {
                assert!(mutations.is_empty(), "a refused {op} left mutations");
                Err(format!("{}: {}", e.code, e.message))
            }
        }
    }

    fn setup(&mut self) {
        self.call("CreateCluster", &json!({"clusterName": CLUSTER}))
            .unwrap();
        for b in Behaviour::ALL {
            let mut app = json!({
                "name": "app",
                "image": "busybox",
                "command": [b.word()],
                "essential": true,
                "cpu": 64,
                "memory": 64,
            });
            if b.health_checked() {
                app["healthCheck"] = json!({"command": ["CMD", "true"], "interval": 5});
            }
            let v = self
                .call(
                    "RegisterTaskDefinition",
                    &json!({"family": "app", "containerDefinitions": [app]}),
                )
                .unwrap();
            let arn = s(&v["taskDefinition"]["taskDefinitionArn"]).to_string();
            self.revisions.insert(arn, b);
        }
        for i in 0..self.knobs.instances {
            let zone = if i % 2 == 0 { "a" } else { "b" };
            let attributes = [("zone".to_string(), zone.to_string())];
            let req = RegisterRequest {
                protocol_version: 1,
                cluster: CLUSTER.into(),
                region: None,
                token: "t".into(),
                container_instance_arn: None,
                instance_token: None,
                cpu_units: 2048,
                memory_mib: 4096,
                reserved_ports: vec![],
                attributes: attributes
                    .iter()
                    .map(|(k, v)| berth_api::ecs::Attribute {
                        name: Some(k.clone()),
                        value: Some(v.clone()),
                        ..Default::default()
                    })
                    .collect(),
                version_info: berth_api::ecs::VersionInfo::default(),
                runtime: "sim".into(),
                hostname: format!("host{i}"),
            };
            let mut ctx = Ctx::new(self.now, pk(), "agent", &mut self.ids);
            let p = self.world.partition(&pk());
            let (arn, token) = container_instance::register(p, &mut ctx, &req, true).unwrap();
            let m = std::mem::take(&mut ctx.mutations);
            drop(ctx);
            self.commit(m);
            self.agents.push(Agent {
                arn,
                token,
                silent_until: None,
                resend: false,
                tasks: BTreeMap::new(),
            });
        }
        let replicas = self.rng.random_range(1..=3);
        for i in 0..replicas {
            self.create_service(&format!("web{i}"), false);
        }
        if self.rng.random_bool(0.4) {
            self.create_service("daemon", true);
        }
    }

    fn revision(&mut self, pick_working: bool) -> String {
        let arns: Vec<(String, Behaviour)> = self
            .revisions
            .iter()
            .map(|(a, b)| (a.clone(), *b))
            .filter(|(_, b)| !pick_working || b.works())
            .collect();
        arns[self.rng.random_range(0..arns.len())].0.clone()
    }

    fn deployment_configuration(&mut self, daemon: bool) -> Value {
        let (max, min) = if daemon {
            (100, [0, 50, 100][self.rng.random_range(0..3)])
        } else {
            loop {
                let max = [100, 125, 150, 200][self.rng.random_range(0..4)];
                let min = [0, 50, 75, 100][self.rng.random_range(0..4)];
                // 100/100 can neither start nor stop a task during a deployment (ECS says so
                // in an event); it is exercised in `stuck_configuration_says_so`.
                if !(max == 100 && min == 100) {
                    break (max, min);
                }
            }
        };
        json!({
            "maximumPercent": max,
            "minimumHealthyPercent": min,
            "deploymentCircuitBreaker": {
                "enable": self.rng.random_bool(0.7),
                "rollback": self.rng.random_bool(0.7),
            },
        })
    }

    fn create_service(&mut self, name: &str, daemon: bool) {
        // The first revision mostly works, so that there is something to roll back to.
        let working = self.rng.random_bool(0.8);
        let td = self.revision(working);
        let grace = [0, 0, 5, 20][self.rng.random_range(0..4)];
        let mut req = json!({
            "cluster": CLUSTER,
            "serviceName": name,
            "taskDefinition": td,
            "deploymentConfiguration": self.deployment_configuration(daemon),
            "healthCheckGracePeriodSeconds": grace,
        });
        if daemon {
            req["schedulingStrategy"] = json!("DAEMON");
            if self.rng.random_bool(0.5) {
                req["placementConstraints"] =
                    json!([{"type": "memberOf", "expression": "attribute:zone == a"}]);
            }
        } else {
            req["desiredCount"] = json!(self.rng.random_range(0..=8));
        }
        let v = self.call("CreateService", &req).unwrap();
        self.note(format!("CreateService {name}: {}", short(&req)));
        let _ = v;
        self.services.push(SvcCfg {
            name: name.into(),
            daemon,
        });
    }

    // ------------------------------------------------------------------ the simulated agents

    fn agent_alive(&self, i: usize) -> bool {
        self.agents[i].silent_until.is_none_or(|t| self.now >= t)
    }

    /// Advance what runs on host `i` (whether or not its agent can talk to the server).
    fn run_host(&mut self, i: usize, chaos: bool) {
        let now = self.now;
        let crash_p = if chaos {
            self.knobs.crash_per_step
        } else {
            0.0
        };
        let mut notes = Vec::new();
        let rng = &mut self.rng;
        for t in self.agents[i].tasks.values_mut() {
            match t.phase.clone() {
                Phase::Pending { until } if now >= until => {
                    if t.behaviour == Behaviour::Broken {
                        t.phase = Phase::Stopped;
                        t.stopped_at = Some(now);
                        t.stop_code = Some("TaskFailedToStart");
                        t.reason = Some(
                            "CannotStartContainerError: exec: \"broken\": executable file not found in $PATH"
                                .into(),
                        );
                        notes.push(format!("task {} failed to start", id_of(&t.arn)));
                    } else {
                        t.phase = Phase::Running;
                        t.started_at = Some(now);
                        if t.behaviour.health_checked() {
                            t.health = Some("UNKNOWN");
                        }
                        if t.behaviour == Behaviour::Crashy {
                            t.crash_at = Some(now + rng.random_range(500..4_000));
                        }
                    }
                }
                Phase::Running => {
                    let crash = t.crash_at.is_some_and(|c| now >= c) || rng.random_bool(crash_p);
                    if crash {
                        t.phase = Phase::Stopped;
                        t.stopped_at = Some(now);
                        t.exit_code = Some(1);
                        t.stop_code = Some("EssentialContainerExited");
                        t.reason = Some("Essential container in task exited".into());
                        notes.push(format!("task {} crashed", id_of(&t.arn)));
                        continue;
                    }
                    let age = now - t.started_at.unwrap_or(now);
                    match (t.behaviour, t.health) {
                        (Behaviour::Healthy | Behaviour::Flappy, Some("UNKNOWN"))
                            if age >= 1_000 =>
                        {
                            t.health = Some("HEALTHY");
                        }
                        (Behaviour::Flappy, Some("HEALTHY")) if rng.random_bool(0.03) => {
                            t.health = Some("UNHEALTHY");
                            notes.push(format!("task {} turns UNHEALTHY", id_of(&t.arn)));
                        }
                        (Behaviour::Flappy, Some("UNHEALTHY")) if rng.random_bool(0.1) => {
                            t.health = Some("HEALTHY");
                        }
                        _ => {}
                    }
                }
                Phase::Stopping { until } if now >= until => {
                    t.phase = Phase::Stopped;
                    t.stopped_at = Some(now);
                    t.exit_code = Some(143);
                }
                _ => {}
            }
        }
        for n in notes {
            self.note(format!("host{i}: {n}"));
        }
    }

    /// One exchange of host `i`'s agent with the server: heartbeat, reports in, desired out.
    fn sync(&mut self, i: usize) {
        let now = self.now;
        let mut ctx = Ctx::new(now, pk(), "agent", &mut self.ids);
        let p = self.world.partition(&pk());
        let agent = &mut self.agents[i];
        let id = match container_instance::authenticate(p, &ctx, &agent.arn, &agent.token) {
            Ok(id) => id,
            Err(_) => return,
        };
        container_instance::heartbeat(p, &id, now);
        for t in agent.tasks.values_mut() {
            let r = t.report();
            if agent.resend || t.sent.as_ref() != Some(&r) {
                task::apply_report(p, &mut ctx, &id, &r);
                t.sent = Some(r);
            }
        }
        agent.resend = false;
        let desired = task::desired_state(p, &id);
        let listed: BTreeSet<String> = desired.tasks.iter().map(|d| d.task_arn.clone()).collect();
        for d in &desired.tasks {
            let behaviour = Behaviour::from_word(
                d.task_definition
                    .container_definitions
                    .as_deref()
                    .unwrap_or_default()
                    .first()
                    .and_then(|c| c.command.as_ref())
                    .and_then(|c| c.first())
                    .map_or("good", String::as_str),
            );
            match agent.tasks.get_mut(&d.task_arn) {
                None => {
                    let mut t = LocalTask {
                        arn: d.task_arn.clone(),
                        behaviour,
                        phase: Phase::Pending {
                            until: now + self.rng.random_range(0..1_500),
                        },
                        started_at: None,
                        stopped_at: None,
                        health: None,
                        crash_at: None,
                        stop_code: None,
                        reason: None,
                        exit_code: None,
                        sent: None,
                    };
                    if d.desired_status == "STOPPED" {
                        t.phase = Phase::Stopped;
                        t.stopped_at = Some(now);
                    }
                    agent.tasks.insert(d.task_arn.clone(), t);
                }
                Some(t) if d.desired_status == "STOPPED" => {
                    if matches!(t.phase, Phase::Pending { .. } | Phase::Running) {
                        t.phase = Phase::Stopping {
                            until: now + self.rng.random_range(0..2_500),
                        };
                    }
                }
                Some(_) => {}
            }
        }
        // Forget what the server no longer lists once it is stopped here.
        agent
            .tasks
            .retain(|arn, t| listed.contains(arn) || t.phase != Phase::Stopped);
        let m = std::mem::take(&mut ctx.mutations);
        drop(ctx);
        self.commit(m);
    }

    /// The agent process on host `i` restarts: what it ran is gone and reported STOPPED.
    fn restart_agent(&mut self, i: usize) {
        let now = self.now;
        for t in self.agents[i].tasks.values_mut() {
            if t.phase != Phase::Stopped {
                t.phase = Phase::Stopped;
                t.stopped_at = Some(now);
                t.stop_code = Some("EssentialContainerExited");
                t.reason = Some("Berth agent restarted: the task cannot be re-adopted".into());
            }
        }
        self.agents[i].resend = true;
        self.note(format!("host{i}: agent restarts"));
    }

    // ------------------------------------------------------------------ the control plane

    /// One scheduler pass, checked.
    fn pass(&mut self) -> SimResult<()> {
        let before = self.snapshot(None);
        let mut ctx = Ctx::new(self.now, pk(), "ecs-scheduler", &mut self.ids);
        let p = self.world.partition(&pk());
        service::reconcile(p, &mut ctx);
        let m = std::mem::take(&mut ctx.mutations);
        drop(ctx);
        self.commit(m);
        self.passes += 1;
        let after = self.snapshot(Some(&before));
        for (name, (view, _)) in &after {
            let old = before
                .get(name)
                .and_then(|(v, _)| v["events"][0]["id"].as_str().map(str::to_string));
            let mut fresh = Vec::new();
            for e in view["events"].as_array().into_iter().flatten() {
                if e["id"].as_str().map(str::to_string) == old {
                    break;
                }
                fresh.push(s(&e["message"]).to_string());
            }
            for m in fresh.into_iter().rev() {
                self.note(format!("event: {m}"));
            }
        }
        self.check_pass(&before, &after)
    }

    /// The services and their tasks; `before` a pass only what the checker compares with.
    fn snapshot(&self, before: Option<&Snapshot>) -> Snapshot {
        let p = &self.world.partitions[&pk()];
        let mut out = BTreeMap::new();
        for svc in &self.services {
            let Some(rec) = p.services.get(&format!("{CLUSTER}/{}", svc.name)) else {
                continue;
            };
            let view = match before {
                None => {
                    json!({"events": [{"id": rec.service.events.as_ref().and_then(|e| e.first()).and_then(|e| e.id.clone())}]})
                }
                Some(b) => {
                    let seen = b
                        .get(&svc.name)
                        .and_then(|(v, _)| v["events"][0]["id"].as_str());
                    light(rec, seen)
                }
            };
            let group = format!("service:{}", svc.name);
            let mut tasks = BTreeMap::new();
            for (id, t) in &p.tasks {
                if t.group() != Some(group.as_str()) {
                    continue;
                }
                let td_works = t
                    .task_definition_arn()
                    .and_then(|a| self.revisions.get(a))
                    .copied()
                    .unwrap_or(Behaviour::Good);
                let health = t.health_status().map_or("UNKNOWN", |h| h.as_str());
                let running = t.last_status() == Some("RUNNING");
                tasks.insert(
                    id.clone(),
                    TaskSeen {
                        deployment: t.started_by().unwrap_or_default().to_string(),
                        desired_running: t.desired_status() == Some("RUNNING"),
                        stopped: t.is_stopped(),
                        healthy: running
                            && if td_works.health_checked() {
                                health == "HEALTHY"
                            } else {
                                health != "UNHEALTHY"
                            },
                        instance: t.instance_id().unwrap_or_default().to_string(),
                        stop_code: t.stop_code().map(|c| c.as_str().to_string()),
                        // Not among the fields a compact (STOPPED) task keeps at hand.
                        reason: t.record().unwrap().task.stopped_reason.clone(),
                    },
                );
            }
            out.insert(svc.name.clone(), (view, tasks));
        }
        out
    }

    /// Invariants of one scheduler pass, from the state before and after it.
    fn check_pass(&mut self, before: &Snapshot, after: &Snapshot) -> SimResult<()> {
        let p = &self.world.partitions[&pk()];
        for (name, (view, tasks)) in after {
            let Some((_, prior)) = before.get(name) else {
                continue;
            };
            let status = s(&view["status"]);
            let daemon = view["schedulingStrategy"] == "DAEMON";
            let desired = view["desiredCount"].as_i64().unwrap_or(0);
            let max_pct = view["deploymentConfiguration"]["maximumPercent"]
                .as_i64()
                .unwrap_or(200);
            let min_pct = view["deploymentConfiguration"]["minimumHealthyPercent"]
                .as_i64()
                .unwrap_or(100);
            let deployments = view["deployments"].as_array().cloned().unwrap_or_default();
            let primaries: Vec<&Value> = deployments
                .iter()
                .filter(|d| d["status"] == "PRIMARY")
                .collect();
            if status == "ACTIVE" {
                ensure!(
                    primaries.len() == 1,
                    "{name}: {} PRIMARY deployments",
                    primaries.len()
                );
                ensure!(
                    deployments[0]["status"] == "PRIMARY",
                    "{name}: the PRIMARY deployment is not listed first"
                );
            }
            let primary = primaries.first().map(|d| s(&d["id"]).to_string());
            let ever = self.deployments_ever.entry(name.clone()).or_default();
            for d in &deployments {
                ever.insert(s(&d["id"]).to_string());
            }
            // Deployment states only move forward; a FAILED one tripped the breaker.
            for d in &deployments {
                let id = s(&d["id"]).to_string();
                let rollout = s(&d["rolloutState"]).to_string();
                if let Some(prev) = self.seen.get(&id) {
                    ensure!(
                        prev.rollout == rollout || prev.rollout == "IN_PROGRESS",
                        "{name}: deployment {id} went from {} to {rollout}",
                        prev.rollout
                    );
                }
                if rollout == "FAILED" {
                    let failed = d["failedTasks"].as_i64().unwrap_or(0);
                    let threshold = i64::from(breaker_threshold(
                        i32::try_from(d["desiredCount"].as_i64().unwrap_or(0)).unwrap_or(0),
                    ));
                    let _ = threshold;
                    ensure!(
                        failed >= 3,
                        "{name}: deployment {id} FAILED with only {failed} failed tasks"
                    );
                    ensure!(
                        s(&d["rolloutStateReason"]).starts_with("ECS deployment circuit breaker"),
                        "{name}: FAILED deployment {id} says {:?}",
                        d["rolloutStateReason"]
                    );
                }
                self.seen.insert(id, DeploymentSeen { rollout });
            }
            // Every task belongs to a deployment of this service.
            for (id, t) in tasks {
                ensure!(
                    ever.contains(&t.deployment),
                    "{name}: task {id} startedBy {} which is no deployment of the service",
                    t.deployment
                );
            }
            let live = |ts: &BTreeMap<String, TaskSeen>| {
                ts.values()
                    .filter(|t| t.desired_running && !t.stopped)
                    .count() as i64
            };
            let new_tasks: Vec<(&String, &TaskSeen)> = tasks
                .iter()
                .filter(|(id, _)| !prior.contains_key(*id))
                .collect();
            // New tasks go to ACTIVE instances whose agent the server hears from.
            for (id, t) in &new_tasks {
                let inst = p.instances.get(&t.instance);
                ensure!(
                    inst.is_some_and(|r| r.instance.status.as_deref() == Some("ACTIVE")),
                    "{name}: task {id} placed on instance {} which is not ACTIVE",
                    t.instance
                );
                ensure!(
                    container_instance::connected(p, &t.instance, self.now),
                    "{name}: task {id} placed on instance {} whose agent is lost",
                    t.instance
                );
                ensure!(
                    Some(&t.deployment) == primary.as_ref(),
                    "{name}: task {id} started for deployment {} which is not PRIMARY",
                    t.deployment
                );
            }
            // Stops by the scheduler in this pass.
            let stops: Vec<(&String, &TaskSeen)> = tasks
                .iter()
                .filter(|(id, t)| {
                    !t.desired_running
                        && t.stop_code.as_deref() == Some("ServiceSchedulerInitiated")
                        && prior.get(*id).is_some_and(|b| b.desired_running)
                })
                .collect();
            for (id, t) in &stops {
                let reason = t.reason.clone().unwrap_or_default();
                let known = reason.starts_with("Scaling activity initiated by (deployment ")
                    || reason == "Task failed container health checks"
                    || reason
                        == "Task stopped because the agent of its container instance is disconnected"
                    || reason == "Service is being deleted"
                    || reason == "Instance is no longer eligible for the daemon service";
                ensure!(known, "{name}: task {id} stopped with reason {reason:?}");
            }
            if status != "ACTIVE" {
                continue;
            }
            let live_before = live(prior);
            let live_after = live(tasks);
            if daemon {
                // One task per instance, only on eligible instances.
                let mut per_instance: BTreeMap<&str, usize> = BTreeMap::new();
                for t in tasks.values().filter(|t| t.desired_running && !t.stopped) {
                    *per_instance.entry(t.instance.as_str()).or_default() += 1;
                }
                for (i, n) in per_instance {
                    ensure!(
                        n <= 1,
                        "{name}: {n} daemon tasks want to run on instance {i}"
                    );
                }
                continue;
            }
            // maximumPercent: the scheduler never takes the service above it.
            let max_total = (desired * max_pct / 100).max(desired);
            ensure!(
                live_after <= max_total.max(live_before),
                "{name}: {live_after} tasks wanted RUNNING after the pass (before {live_before}), maximumPercent allows {max_total}"
            );
            ensure!(
                new_tasks.is_empty() || live_after <= max_total,
                "{name}: launched {} tasks to reach {live_after}, maximumPercent allows {max_total}",
                new_tasks.len()
            );
            // No duplicate replacement: the primary never wants more than desiredCount.
            if let Some(pid) = &primary {
                let prim_live = tasks
                    .values()
                    .filter(|t| &t.deployment == pid && t.desired_running && !t.stopped)
                    .count() as i64;
                ensure!(
                    prim_live <= desired,
                    "{name}: {prim_live} tasks of the PRIMARY deployment want to run, desiredCount {desired}"
                );
            }
            // minimumHealthyPercent: the scheduler stops a healthy task for a deployment or a
            // scale-in only while enough healthy ones stay.
            let min_healthy = (desired * min_pct + 99) / 100;
            let healthy_after = tasks
                .values()
                .filter(|t| t.desired_running && !t.stopped && t.healthy)
                .count() as i64;
            let drained_healthy: Vec<&String> = stops
                .iter()
                .filter(|(id, t)| {
                    t.reason
                        .as_deref()
                        .is_some_and(|r| r.starts_with("Scaling activity"))
                        && prior.get(*id).is_some_and(|b| b.healthy)
                })
                .map(|(id, _)| *id)
                .collect();
            ensure!(
                drained_healthy.is_empty() || healthy_after >= min_healthy,
                "{name}: stopped healthy tasks {drained_healthy:?} leaving {healthy_after} healthy, minimumHealthyPercent needs {min_healthy}"
            );
        }
        // Events: ECS's wording, newest first, at most 100.
        for (name, (view, _)) in after {
            let n = view["eventCount"].as_u64().unwrap_or(0);
            ensure!(n <= 100, "{name}: {n} events");
            let seen_first = before
                .get(name)
                .and_then(|(v, _)| v["events"][0]["id"].as_str().map(str::to_string));
            let mut last = f64::INFINITY;
            let mut newer: Option<&str> = None;
            for e in view["events"].as_array().into_iter().flatten() {
                let at = e["createdAt"].as_f64().unwrap_or(0.0);
                ensure!(
                    at.total_cmp(&last).is_le(),
                    "{name}: events not newest first"
                );
                last = at;
                // The same thing is not said over and over.
                ensure!(
                    newer != Some(s(&e["message"])),
                    "{name}: event repeated: {:?}",
                    e["message"]
                );
                newer = Some(s(&e["message"]));
                if e["id"].as_str().map(str::to_string) == seen_first {
                    break;
                }
                let m = s(&e["message"]);
                ensure!(
                    self.events_ok.iter().any(|r| r.is_match(m)),
                    "{name}: event not in ECS's wording: {m:?}"
                );
                ensure!(
                    m.starts_with(&format!("(service {name})")),
                    "{name}: event about another service: {m:?}"
                );
            }
        }
        Ok(())
    }

    /// Invariants over every task, checked each step.
    fn check_tasks(&mut self, prev: &BTreeMap<String, (String, String)>) -> SimResult<()> {
        let p = &self.world.partitions[&pk()];
        // The index of live tasks by instance is what syncs and placement read: it must
        // equal a scan of the records after every step.
        if let Err(e) = p.tasks.verify_index() {
            ensure!(false, "{e}");
        }
        for (id, t) in &p.tasks {
            let desired = t.desired_status().unwrap_or_default().to_string();
            let last = t.last_status().unwrap_or_default().to_string();
            if self.stop_requested.contains(id) {
                ensure!(
                    desired == "STOPPED",
                    "task {id} was asked to stop and is wanted {desired} again"
                );
            }
            if let Some((pd, pl)) = prev.get(id) {
                ensure!(
                    rank(&last) >= rank(pl),
                    "task {id} went back from {pl} to {last}"
                );
                ensure!(
                    !(pd == "STOPPED" && desired == "RUNNING"),
                    "task {id} desired STOPPED then RUNNING"
                );
            }
        }
        Ok(())
    }

    fn task_states(&mut self) -> BTreeMap<String, (String, String)> {
        let p = &self.world.partitions[&pk()];
        let mut out = BTreeMap::new();
        for (id, t) in &p.tasks {
            let d = t.desired_status().unwrap_or_default().to_string();
            if d == "STOPPED" {
                self.stop_requested.insert(id.clone());
            }
            out.insert(
                id.clone(),
                (d, t.last_status().unwrap_or_default().to_string()),
            );
        }
        out
    }

    /// The control plane crashes and restarts from what it committed; the committed state
    /// must be exactly what it held in memory.
    fn crash_server(&mut self) -> SimResult<()> {
        let p = &self.world.partitions[&pk()];
        let prefix = format!("{}/{}/", pk().account, pk().region);
        let mut expected: BTreeMap<(String, String), Vec<u8>> = BTreeMap::new();
        let mut put = |kind: Kind, key: String, body: Vec<u8>| {
            expected.insert((kind.name().to_string(), format!("{prefix}{key}")), body);
        };
        for (name, c) in &p.clusters {
            put(
                Kind::Cluster,
                keys::cluster(name),
                serde_json::to_vec(c).unwrap(),
            );
        }
        for (family, f) in &p.families {
            for (rev, r) in &f.revisions {
                put(
                    Kind::TaskDefinition,
                    keys::task_definition(family, *rev),
                    serde_json::to_vec(r).unwrap(),
                );
            }
        }
        for (id, r) in &p.instances {
            put(
                Kind::ContainerInstance,
                keys::container_instance(&r.cluster, id),
                serde_json::to_vec(r).unwrap(),
            );
        }
        // A STOPPED task is kept compact: its decoded record must be the committed one.
        for (id, r) in &p.tasks {
            let r = r.record().unwrap();
            put(
                Kind::Task,
                keys::task(&r.cluster, id),
                serde_json::to_vec(&*r).unwrap(),
            );
        }
        for (k, r) in &p.services {
            put(
                Kind::Service,
                format!("service/{k}"),
                serde_json::to_vec(r).unwrap(),
            );
        }
        for (k, body) in &expected {
            ensure!(
                self.store.get(k) == Some(body),
                "record {k:?} in memory differs from what was committed"
            );
        }
        for k in self.store.keys() {
            ensure!(
                expected.contains_key(k),
                "committed record {k:?} is gone from memory"
            );
        }
        let records = self
            .store
            .iter()
            .map(|((kind, key), body)| berth_core::Record {
                kind: Kind::from_name(kind).unwrap(),
                key: key.clone(),
                body: body.clone(),
            });
        self.world = World::load(records).map_err(|e| e.to_string())?;
        self.world.assume_agents_alive(self.now);
        self.note("control plane restarts from its store");
        Ok(())
    }

    // ------------------------------------------------------------------ the simulated user

    fn user_action(&mut self) {
        let i = self.rng.random_range(0..self.services.len());
        let svc = self.services[i].clone();
        let mut req = json!({"cluster": CLUSTER, "service": svc.name});
        match self.rng.random_range(0..10) {
            0..=2 if !svc.daemon => {
                req["desiredCount"] = json!(self.rng.random_range(0..=10));
            }
            3..=5 => {
                req["taskDefinition"] = json!(self.revision(false));
            }
            6 => {
                req["forceNewDeployment"] = json!(true);
            }
            7 => {
                req["deploymentConfiguration"] = self.deployment_configuration(svc.daemon);
            }
            8 if !svc.daemon => {
                req["desiredCount"] = json!(self.rng.random_range(0..=10));
                req["taskDefinition"] = json!(self.revision(false));
            }
            _ => {
                let grace = [0, 5, 20][self.rng.random_range(0..3)];
                req["healthCheckGracePeriodSeconds"] = json!(grace);
            }
        }
        let r = self.call("UpdateService", &req);
        let text = format!("UpdateService {}: {}", svc.name, short(&req));
        self.note(match r {
            Ok(_) => text,
            Err(e) => format!("{text} refused: {e}"),
        });
    }

    fn drain_or_activate(&mut self) {
        let i = self.rng.random_range(0..self.agents.len());
        let arn = self.agents[i].arn.clone();
        let status = if self.rng.random_bool(0.5) {
            "DRAINING"
        } else {
            "ACTIVE"
        };
        let r = self.call(
            "UpdateContainerInstancesState",
            &json!({"cluster": CLUSTER, "containerInstances": [arn], "status": status}),
        );
        self.note(format!("host{i} -> {status} ({})", r.is_ok()));
    }

    // ------------------------------------------------------------------ running

    fn step(&mut self, chaos: bool) -> SimResult<()> {
        let prev = self.task_states();
        let dt = if chaos {
            self.rng.random_range(100..1_000)
        } else {
            500
        };
        self.now += dt;
        if chaos {
            for i in 0..self.agents.len() {
                if self.agent_alive(i) && self.rng.random_bool(self.knobs.silence_per_step) {
                    let d = self.rng.random_range(1_000..(AGENT_TIMEOUT_MS * 4));
                    self.agents[i].silent_until = Some(self.now + d);
                    self.note(format!("host{i}: agent silent for {d} ms"));
                }
                if self.rng.random_bool(self.knobs.restart_per_step) {
                    self.restart_agent(i);
                }
            }
            if self.rng.random_bool(self.knobs.update_per_step) {
                self.user_action();
            }
            if self.rng.random_bool(self.knobs.drain_per_step) {
                self.drain_or_activate();
            }
            if self.rng.random_bool(self.knobs.server_crash_per_step) {
                self.crash_server()?;
            }
        }
        // Agents and the scheduler interleave in a random order.
        let mut order: Vec<usize> = (0..=self.agents.len()).collect();
        for k in (1..order.len()).rev() {
            let j = self.rng.random_range(0..=k);
            order.swap(k, j);
        }
        for i in order {
            if i == self.agents.len() {
                self.pass()?;
                continue;
            }
            self.run_host(i, chaos);
            if self.agent_alive(i) {
                if self.agents[i].silent_until.take().is_some() {
                    self.agents[i].resend = true;
                    self.note(format!("host{i}: agent back"));
                }
                self.sync(i);
            }
        }
        self.check_tasks(&prev)?;
        if self.rng.random_bool(0.05) {
            let mut ctx = Ctx::new(self.now, pk(), "berth", &mut self.ids);
            task::sweep(
                self.world.partition(&pk()),
                &mut ctx,
                self.knobs.retention_ms,
            );
            let m = std::mem::take(&mut ctx.mutations);
            drop(ctx);
            self.commit(m);
        }
        Ok(())
    }

    /// Faults end: every agent is back, every instance ACTIVE.
    fn calm(&mut self) {
        for i in 0..self.agents.len() {
            self.agents[i].silent_until = None;
            let arn = self.agents[i].arn.clone();
            let _ = self.call(
                "UpdateContainerInstancesState",
                &json!({"cluster": CLUSTER, "containerInstances": [arn], "status": "ACTIVE"}),
            );
        }
        self.fix_up();
    }

    /// What a user does about a service that cannot get anywhere: one left on a revision
    /// that does not work (and that its circuit breaker will not roll back), or whose
    /// deployment FAILED with nothing to roll back to, is given a revision that works.
    fn fix_up(&mut self) {
        for svc in self.services.clone() {
            let v = self
                .call(
                    "DescribeServices",
                    &json!({"cluster": CLUSTER, "services": [svc.name]}),
                )
                .unwrap();
            let sv = &v["services"][0];
            let td = s(&sv["taskDefinition"]).to_string();
            let behaviour = self.revisions.get(&td).copied().unwrap_or(Behaviour::Good);
            let primary_failed = sv["deployments"][0]["rolloutState"] == "FAILED";
            let cb = &sv["deploymentConfiguration"]["deploymentCircuitBreaker"];
            let rolls_back = cb["enable"] == true
                && cb["rollback"] == true
                && matches!(behaviour, Behaviour::Broken | Behaviour::Crashy)
                && sv["deployments"][0]["rolloutState"] == "IN_PROGRESS"
                && self.has_completed(&svc.name);
            let desired = sv["desiredCount"].as_i64().unwrap_or(0);
            let max = sv["deploymentConfiguration"]["maximumPercent"]
                .as_i64()
                .unwrap_or(200);
            let min = sv["deploymentConfiguration"]["minimumHealthyPercent"]
                .as_i64()
                .unwrap_or(100);
            let stuck = desired > 0
                && desired * max / 100 <= desired
                && (desired * min + 99) / 100 >= desired;
            if stuck && sv["deployments"].as_array().is_some_and(|d| d.len() > 1) {
                let mut c = sv["deploymentConfiguration"].clone();
                c["maximumPercent"] = json!(200);
                let req =
                    json!({"cluster": CLUSTER, "service": svc.name, "deploymentConfiguration": c});
                let r = self.call("UpdateService", &req);
                self.note(format!(
                    "user unsticks {}: {} -> {}",
                    svc.name,
                    short(&req),
                    r.is_ok()
                ));
            }
            if primary_failed || (!behaviour.works() && !rolls_back) {
                let req = json!({
                    "cluster": CLUSTER,
                    "service": svc.name,
                    "taskDefinition": self.revision(true),
                    "forceNewDeployment": true,
                });
                let r = self.call("UpdateService", &req);
                self.note(format!(
                    "user fixes {}: UpdateService {} -> {}",
                    svc.name,
                    short(&req),
                    r.is_ok()
                ));
            }
        }
    }

    fn has_completed(&self, name: &str) -> bool {
        let p = &self.world.partitions[&pk()];
        p.services
            .get(&format!("{CLUSTER}/{name}"))
            .is_some_and(|r| r.last_completed.is_some())
    }

    /// Has every service converged? `Ok(None)` when yes, else what is still missing.
    fn converged(&self) -> Option<String> {
        let p = &self.world.partitions[&pk()];
        for svc in &self.services {
            let rec = &p.services[&format!("{CLUSTER}/{}", svc.name)];
            let v = serde_json::to_value(service::view(p, rec, false)).unwrap();
            let deployments = v["deployments"].as_array().cloned().unwrap_or_default();
            if deployments.len() != 1 {
                return Some(format!("{}: {} deployments", svc.name, deployments.len()));
            }
            let d = &deployments[0];
            if d["rolloutState"] != "COMPLETED" {
                return Some(format!("{}: primary is {}", svc.name, d["rolloutState"]));
            }
            let works = self
                .revisions
                .get(s(&v["taskDefinition"]))
                .is_some_and(|b| b.works());
            if !works && v["desiredCount"] != 0 {
                return Some(format!("{}: on a revision that does not work", svc.name));
            }
            if v["runningCount"] != v["desiredCount"] || v["pendingCount"] != 0 {
                return Some(format!(
                    "{}: running {} pending {} desired {}",
                    svc.name, v["runningCount"], v["pendingCount"], v["desiredCount"]
                ));
            }
            if svc.daemon {
                let eligible = p
                    .instances
                    .values()
                    .filter(|i| {
                        rec.service
                            .placement_constraints
                            .as_ref()
                            .is_none_or(|c| c.is_empty())
                            || i.instance
                                .attributes
                                .as_deref()
                                .unwrap_or_default()
                                .iter()
                                .any(|a| {
                                    a.name.as_deref() == Some("zone")
                                        && a.value.as_deref() == Some("a")
                                })
                    })
                    .count();
                if v["desiredCount"].as_u64() != Some(eligible as u64) {
                    return Some(format!(
                        "{}: daemon desired {} but {eligible} eligible instances",
                        svc.name, v["desiredCount"]
                    ));
                }
            }
        }
        None
    }

    /// Checks once converged.
    fn check_final(&self) -> SimResult<()> {
        let p = &self.world.partitions[&pk()];
        for svc in &self.services {
            let rec = &p.services[&format!("{CLUSTER}/{}", svc.name)];
            let td = rec.service.task_definition.clone().unwrap_or_default();
            ensure!(
                rec.service.desired_count == Some(0)
                    || self.revisions.get(&td).is_some_and(|b| b.works()),
                "{}: converged on {td} which does not work",
                svc.name
            );
            let events = rec.service.events.as_deref().unwrap_or_default();
            ensure!(
                events.iter().any(|e| e
                    .message
                    .as_deref()
                    .is_some_and(|m| m.ends_with("has reached a steady state."))),
                "{}: no steady-state event",
                svc.name
            );
            // The tasks that run are those of the one deployment.
            let dep = rec.service.deployments.as_deref().unwrap_or_default()[0]
                .id
                .clone();
            let group = format!("service:{}", svc.name);
            for (id, t) in &p.tasks {
                if t.group() == Some(group.as_str()) && !t.is_stopped() {
                    ensure!(
                        t.started_by() == dep.as_deref(),
                        "{}: task {id} of an old deployment still runs",
                        svc.name
                    );
                }
            }
        }
        Ok(())
    }

    fn run(&mut self) -> SimResult<()> {
        for _ in 0..self.knobs.chaos_steps {
            self.step(true)?;
        }
        self.calm();
        self.note("calm");
        // Ten simulated minutes are plenty: deployments take seconds, the longest wait is
        // a 20 s grace period or a throttled retry.
        for n in 0..1_200 {
            self.step(false)?;
            if n % 120 == 119 {
                self.fix_up();
            }
            if self.converged().is_none() {
                // And it stays so.
                for _ in 0..20 {
                    self.step(false)?;
                    if let Some(why) = self.converged() {
                        return Err(format!("converged, then diverged: {why}"));
                    }
                }
                return self.check_final();
            }
        }
        Err(format!(
            "did not converge in 10 simulated minutes: {}",
            self.converged().unwrap_or_default()
        ))
    }

    fn report(&self, err: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "seed {} failed after {} passes: {err}\nknobs: {:?}\nreplay: BERTH_SIM_SEED={} cargo test -p berth-core --test service_sim -- --nocapture",
            self.seed, self.passes, self.knobs, self.seed
        );
        let from = self.trace.len().saturating_sub(60);
        for line in &self.trace[from..] {
            let _ = writeln!(out, "  {line}");
        }
        out
    }
}

/// The parts of a service the checker reads, as JSON (cheaper than the whole shape; only the
/// newest events, enough to see what one pass said).
fn light(rec: &service::ServiceRecord, seen: Option<&str>) -> Value {
    let v = &rec.service;
    let c = v.deployment_configuration.clone().unwrap_or_default();
    json!({
        "status": v.status,
        "schedulingStrategy": v.scheduling_strategy.as_ref().map(|x| x.as_str()),
        "desiredCount": v.desired_count,
        "taskDefinition": v.task_definition,
        "deploymentConfiguration": {
            "maximumPercent": c.maximum_percent,
            "minimumHealthyPercent": c.minimum_healthy_percent,
        },
        "deployments": v.deployments.as_deref().unwrap_or_default().iter().map(|d| json!({
            "id": d.id,
            "status": d.status,
            "rolloutState": d.rollout_state.as_ref().map(|x| x.as_str()),
            "rolloutStateReason": d.rollout_state_reason,
            "failedTasks": d.id.as_ref().and_then(|i| rec.meta.get(i)).map(|m| m.failed_tasks),
            "desiredCount": d.desired_count,
        })).collect::<Vec<_>>(),
        "eventCount": v.events.as_ref().map_or(0, Vec::len),
        "events": v.events.as_deref().unwrap_or_default().iter().take(12).take_while(|e| e.id.as_deref() != seen).chain(v.events.as_deref().unwrap_or_default().iter().find(|e| e.id.as_deref() == seen)).map(|e| json!({
            "id": e.id,
            "createdAt": e.created_at,
            "message": e.message,
        })).collect::<Vec<_>>(),
    })
}

fn rank(s: &str) -> usize {
    task::LIFECYCLE.iter().position(|x| *x == s).unwrap_or(0)
}

fn id_of(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

fn short(v: &Value) -> String {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("cluster");
        if let Some(td) = o.get_mut("taskDefinition") {
            *td = json!(id_of(s(td)));
        }
    }
    v.to_string()
}

fn run_seed(seed: u64) -> Result<(), String> {
    let mut sim = Sim::new(seed);
    sim.run().map_err(|e| sim.report(&e))
}

#[test]
fn services_converge_under_faults() {
    if let Ok(seed) = std::env::var("BERTH_SIM_SEED") {
        let seed: u64 = seed.parse().unwrap();
        let mut sim = Sim::new(seed);
        let r = sim.run();
        for line in &sim.trace {
            println!("{line}");
        }
        if let Err(e) = r {
            panic!("{}", sim.report(&e));
        }
        return;
    }
    let runs: u64 = std::env::var("BERTH_SIM_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_RUNS);
    let mut failures = Vec::new();
    for seed in 0..runs {
        if let Err(e) = run_seed(seed) {
            failures.push(e);
            if failures.len() >= 3 {
                break;
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
