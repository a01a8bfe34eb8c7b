//! The task engine: reconciles the desired set from the server with the runners on this
//! host. New RUNNING tasks get a runner; tasks to stop get their stop signal; a task the
//! engine has run once is never started again (a job must not rerun), even if an old
//! desired state lists it.

use crate::reports::ReportBook;
use crate::runner::{self, RunnerEnv};
use berth_core::agent_protocol::{DesiredState, TaskReport};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use tokio::sync::watch;

struct Handle {
    stop: watch::Sender<bool>,
    join: tokio::task::JoinHandle<()>,
}

/// Runs this host's tasks.
pub struct Engine {
    env: RunnerEnv,
    running: BTreeMap<String, Handle>,
    /// Tasks started by this agent (in this or an earlier run), by ARN.
    seen: BTreeSet<String>,
    /// Marker files of started tasks survive agent restarts.
    journal_dir: PathBuf,
    /// Tasks started by a previous run whose processes could not be re-adopted.
    lost: BTreeMap<String, String>,
    /// Tasks started by a previous run, to re-adopt (runtimes that can): their runner finds
    /// their containers instead of creating them.
    adopt: BTreeSet<String>,
}

fn task_id(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

impl Engine {
    /// An engine whose journal lives in `journal_dir`. Tasks a previous run started are
    /// re-adopted when `lost_reason` is `None` (the runtime finds their containers); otherwise
    /// they are reported STOPPED with that reason, never started again.
    pub fn new(
        env: RunnerEnv,
        journal_dir: PathBuf,
        lost_reason: Option<&str>,
    ) -> std::io::Result<Engine> {
        std::fs::create_dir_all(&journal_dir)?;
        let mut lost = BTreeMap::new();
        let mut adopt = BTreeSet::new();
        for entry in std::fs::read_dir(&journal_dir)?.flatten() {
            if let Some(arn) = std::fs::read_to_string(entry.path())
                .ok()
                .filter(|s| s.starts_with("arn:"))
            {
                let arn = arn.trim().to_string();
                match lost_reason {
                    Some(reason) => {
                        lost.insert(arn, reason.to_string());
                    }
                    None => {
                        adopt.insert(arn);
                    }
                }
            }
        }
        Ok(Engine {
            env,
            running: BTreeMap::new(),
            seen: BTreeSet::new(),
            journal_dir,
            lost,
            adopt,
        })
    }

    /// Tasks a previous run started (lost or to re-adopt), by ARN.
    pub fn journaled(&self) -> Vec<String> {
        self.lost.keys().chain(&self.adopt).cloned().collect()
    }

    /// Bring the host in line with `desired`.
    pub fn apply(&mut self, desired: &DesiredState) {
        let listed: BTreeSet<&str> = desired.tasks.iter().map(|t| t.task_arn.as_str()).collect();
        for t in &desired.tasks {
            if self.adopt.remove(&t.task_arn) {
                // Started before this agent restarted: its runner re-adopts its containers
                // (and stops them at once if the server wants the task stopped).
                tracing::info!(task = %t.task_arn, "re-adopting a task of a previous agent run");
                self.start(t.clone());
                if t.desired_status == "STOPPED"
                    && let Some(h) = self.running.get(&t.task_arn)
                {
                    let _ = h.stop.send(true);
                }
                continue;
            }
            if let Some(reason) = self.lost.get(&t.task_arn) {
                // Started before this agent restarted: report it stopped, never rerun it.
                if self.env.reports.latest(&t.task_arn).is_none() {
                    self.env.reports.publish(lost_report(
                        &t.task_arn,
                        reason,
                        &runner::containers_of(t),
                    ));
                }
                continue;
            }
            match self.running.get(&t.task_arn) {
                Some(h) => {
                    if t.desired_status == "STOPPED" {
                        let _ = h.stop.send(true);
                    }
                }
                None if self.seen.contains(&t.task_arn) => {}
                None if t.desired_status == "STOPPED" => {
                    // Never started here: nothing to stop, just say so.
                    self.seen.insert(t.task_arn.clone());
                    self.env.reports.publish(TaskReport {
                        task_arn: t.task_arn.clone(),
                        last_status: "STOPPED".into(),
                        ..Default::default()
                    });
                }
                None => self.start(t.clone()),
            }
        }
        // Forget what the server no longer lists; stop runners it dropped without a stop.
        let gone: Vec<String> = self
            .running
            .keys()
            .filter(|a| !listed.contains(a.as_str()))
            .cloned()
            .collect();
        for arn in gone {
            if let Some(h) = self.running.get(&arn) {
                if h.join.is_finished() {
                    self.running.remove(&arn);
                    self.env.reports.forget(&arn);
                    let _ = std::fs::remove_file(self.journal_dir.join(task_id(&arn)));
                } else {
                    let _ = h.stop.send(true);
                }
            }
        }
        let lost_gone: Vec<String> = self
            .lost
            .keys()
            .filter(|a| !listed.contains(a.as_str()))
            .cloned()
            .collect();
        for arn in lost_gone {
            self.lost.remove(&arn);
            self.env.reports.forget(&arn);
            let _ = std::fs::remove_file(self.journal_dir.join(task_id(&arn)));
        }
        // A previous run's task the server no longer wants: whatever is left of it goes.
        let adopt_gone: Vec<String> = self
            .adopt
            .iter()
            .filter(|a| !listed.contains(a.as_str()))
            .cloned()
            .collect();
        for arn in adopt_gone {
            self.adopt.remove(&arn);
            let _ = std::fs::remove_file(self.journal_dir.join(task_id(&arn)));
            let runtime = self.env.runtime.clone();
            tokio::spawn(async move { runtime.discard(&arn).await });
        }
    }

    fn start(&mut self, t: berth_core::agent_protocol::DesiredTask) {
        let marker = self.journal_dir.join(task_id(&t.task_arn));
        if let Err(e) = std::fs::write(&marker, &t.task_arn) {
            tracing::warn!(error = %e, task = %t.task_arn, "cannot journal a started task");
        }
        self.seen.insert(t.task_arn.clone());
        let (stop, stop_rx) = watch::channel(false);
        let arn = t.task_arn.clone();
        tracing::info!(task = %arn, "starting task");
        let join = tokio::spawn(runner::run_task(t, self.env.clone(), stop_rx));
        self.running.insert(arn, Handle { stop, join });
    }

    /// Number of tasks with a live runner.
    pub fn active(&self) -> usize {
        self.running
            .values()
            .filter(|h| !h.join.is_finished())
            .count()
    }

    /// The reports book.
    pub fn reports(&self) -> &ReportBook {
        &self.env.reports
    }
}

fn lost_report(
    arn: &str,
    reason: &str,
    containers: &[berth_api::ecs::ContainerDefinition],
) -> TaskReport {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(0))
        .unwrap_or(0);
    TaskReport {
        task_arn: arn.to_string(),
        last_status: "STOPPED".into(),
        containers: containers
            .iter()
            .map(|c| berth_core::agent_protocol::ContainerReport {
                name: c.name.clone().unwrap_or_default(),
                last_status: "STOPPED".into(),
                reason: Some(reason.to_string()),
                ..Default::default()
            })
            .collect(),
        stopping_at_ms: Some(now),
        execution_stopped_at_ms: Some(now),
        stopped_at_ms: Some(now),
        stop_code: Some("EssentialContainerExited".into()),
        stopped_reason: Some(reason.to_string()),
        ..Default::default()
    }
}
