//! The process runtime: a container definition's `entryPoint` + `command` run as a host process.
//!
//! The image is not used. Each container becomes one process, started in a process group of its
//! own (`process_group(0)`, so the group id is the leader's pid), stdin `/dev/null`, stdout and
//! stderr piped and forwarded line by line to the engine.
//!
//! Behaviour, in the terms of a container runtime:
//! - **Start errors are start errors.** `argv[0]` is resolved before spawning (with `PATH` from
//!   the container's environment if it sets one, else the agent's), the working directory and
//!   the user are checked, so a missing command, a bad directory or an unknown user is a
//!   [`RuntimeError::CannotStart`] from [`ProcessRuntime::start`], not a later exit 127.
//! - **The main process is the container.** When it exits, whatever is left of its process group
//!   is SIGKILLed, as a PID namespace does to a container's other processes when its init exits.
//! - **Stopping** sends the stop signal (SIGTERM) to the whole group, waits up to the stop
//!   timeout, then SIGKILLs the group ([`RunningProcess::stop`]).
//! - **Exit codes** follow Docker: a process killed by signal N exits `128 + N`.
//! - **Output blocks the container only when asked to.** Lines go to an [`OutputSink`]. A
//!   non-blocking sink takes them with `try_send`: when its channel is full the line is dropped
//!   and counted ([`RunningProcess::dropped_lines`]) and the container never waits. A blocking
//!   sink (`awslogs` `mode: blocking`) waits for room, so the reader stops reading and the
//!   container's writes block on the full pipe: nothing is lost. The pipes are always drained.
//! - **No surviving an agent restart.** The pipes break when the agent goes away, so processes
//!   are not meant to outlive it. Each spawn is recorded in a pid file
//!   (`<state_dir>/<task_id>/<container>.<pid>.pid`, JSON `{pid, start_time_ticks, task_id,
//!   container_name, boot_id}`), removed once the process has exited and been reaped; the next
//!   agent calls [`ProcessRuntime::reap_orphans`] to kill what a previous run left behind.
//! - **Children are always reaped** (`kill_on_drop(false)`; a supervisor task owns each child).
//!   Dropping a [`RunningProcess`] does not stop the process: it keeps running, is still reaped
//!   when it exits, and its pid file is still removed then.

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::{Group, Pid, Uid, User};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Longest line forwarded as one [`OutputLine`]; longer lines are split into pieces of at most
/// this many bytes (cut on a UTF-8 character boundary where possible).
pub const MAX_LINE_BYTES: usize = 256 * 1024;

/// `PATH` used to resolve the command when neither the container nor the agent has one
/// (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How long, after the main process has exited and its group has been killed, to wait for the
/// output pipes to reach end-of-file (a process that escaped the group may hold them open).
const OUTPUT_DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Largest read from an output pipe.
const READ_CHUNK: usize = 64 * 1024;
/// First size of a reader's buffer: most containers write little, and an idle task's
/// buffers are most of its cost on the agent; the buffer doubles (up to [`READ_CHUNK`])
/// each time a read fills it.
const FIRST_READ_CHUNK: usize = 4 * 1024;

/// After the main process has exited, how long a reader of a blocking sink may go without
/// progress (a line read or accepted) before it is abandoned: the sink may be waiting for
/// the server to acknowledge what it holds.
const BLOCKED_OUTPUT_GRACE: Duration = Duration::from_secs(10);

/// Where a container's output lines go, and what happens when the receiver falls behind.
#[derive(Debug, Clone)]
pub struct OutputSink {
    tx: mpsc::Sender<OutputLine>,
    blocking: bool,
}

impl OutputSink {
    /// Lines wait for room in the channel; through the pipe, so do the container's writes.
    pub fn blocking(tx: mpsc::Sender<OutputLine>) -> Self {
        OutputSink { tx, blocking: true }
    }

    /// A line that finds the channel full is dropped and counted; the container never waits.
    pub fn non_blocking(tx: mpsc::Sender<OutputLine>) -> Self {
        OutputSink {
            tx,
            blocking: false,
        }
    }

    /// Whether lines wait for room.
    pub fn is_blocking(&self) -> bool {
        self.blocking
    }

    /// How long a reader may go without progress once the container has exited.
    pub(crate) fn drain_grace(&self) -> Duration {
        if self.blocking {
            BLOCKED_OUTPUT_GRACE
        } else {
            OUTPUT_DRAIN_GRACE
        }
    }
}

impl From<mpsc::Sender<OutputLine>> for OutputSink {
    fn from(tx: mpsc::Sender<OutputLine>) -> Self {
        OutputSink::non_blocking(tx)
    }
}

/// Counters shared by a container's output readers and whoever waits for them.
#[derive(Debug, Default)]
pub(crate) struct OutputCounters {
    /// Lines dropped because a non-blocking sink was full.
    pub(crate) dropped: AtomicU64,
    /// Bumped whenever a reader reads or hands over something.
    pub(crate) progress: AtomicU64,
}

/// A reader's side of an [`OutputSink`]: lines collected by the splitter are handed over in
/// order with [`Forwarder::flush`].
pub(crate) struct Forwarder {
    sink: OutputSink,
    stream: Stream,
    counters: Arc<OutputCounters>,
    /// The receiver is gone: lines are discarded (the pipe is still drained).
    closed: bool,
    /// Lines waiting to be handed over, with their capture time.
    pub(crate) lines: Vec<(i64, String)>,
}

impl Forwarder {
    pub(crate) fn new(sink: OutputSink, stream: Stream, counters: Arc<OutputCounters>) -> Self {
        Forwarder {
            sink,
            stream,
            counters,
            closed: false,
            lines: Vec::new(),
        }
    }

    /// Hand the collected lines over: waiting for room with a blocking sink, dropping (and
    /// counting) what does not fit with a non-blocking one.
    pub(crate) async fn flush(&mut self) {
        for (timestamp_ms, line) in self.lines.drain(..) {
            if self.closed {
                continue;
            }
            let line = OutputLine {
                stream: self.stream,
                line,
                timestamp_ms,
            };
            if self.sink.blocking {
                if self.sink.tx.send(line).await.is_err() {
                    self.closed = true;
                }
                self.counters.progress.fetch_add(1, Ordering::Relaxed);
            } else {
                match self.sink.tx.try_send(line) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => self.closed = true,
                }
            }
        }
    }
}

/// Wait for a container's output `reader` to finish after the container exited: it is
/// abandoned once it has made no progress for `grace` (a process that escaped the group may
/// hold the pipe open). Returns false when it was abandoned.
pub(crate) async fn wait_reader(
    reader: &mut JoinHandle<()>,
    counters: &OutputCounters,
    grace: Duration,
) -> bool {
    let mut seen = counters.progress.load(Ordering::Relaxed);
    loop {
        if tokio::time::timeout(grace, &mut *reader).await.is_ok() {
            return true;
        }
        let now = counters.progress.load(Ordering::Relaxed);
        if now == seen {
            reader.abort();
            return false;
        }
        seen = now;
    }
}

/// What to run for one container of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    /// The ECS task id (32 hex digits).
    pub task_id: String,
    /// The container's name in its task definition.
    pub container_name: String,
    /// `entryPoint` followed by `command`, already merged; must not be empty.
    pub argv: Vec<String>,
    /// The complete environment of the process (nothing is inherited from the agent).
    pub env: Vec<(String, String)>,
    /// Working directory; `None` keeps the agent's.
    pub working_dir: Option<String>,
    /// `"name"`, `"uid"`, `"uid:gid"` or `"name:group"`; honoured only when the agent runs as
    /// root, otherwise ignored with a warning.
    pub user: Option<String>,
}

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One line of a container's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLine {
    /// The stream it was written to.
    pub stream: Stream,
    /// The line without its `\n` (invalid UTF-8 replaced by U+FFFD).
    pub line: String,
    /// Wall-clock time at capture, in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    /// The exit code, or `128 + signal` when killed by a signal (as Docker and ECS report it);
    /// `None` only if the status could not be obtained.
    pub exit_code: Option<i32>,
    /// The signal that killed the process, if it was killed by one.
    pub signal: Option<i32>,
}

impl ExitInfo {
    /// An exit whose status could not be obtained.
    pub const UNKNOWN: ExitInfo = ExitInfo {
        exit_code: None,
        signal: None,
    };

    /// Converts a wait status, mapping death by signal N to exit code `128 + N`.
    pub fn from_status(status: ExitStatus) -> Self {
        if let Some(code) = status.code() {
            ExitInfo {
                exit_code: Some(code),
                signal: None,
            }
        } else if let Some(signal) = status.signal() {
            ExitInfo {
                exit_code: Some(128 + signal),
                signal: Some(signal),
            }
        } else {
            ExitInfo::UNKNOWN
        }
    }
}

/// Errors of the process runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The process could not be started. `Display` is the bare message, worded as what follows
    /// ECS's `CannotStartContainerError: ` (e.g. `exec: "nope": executable file not found in
    /// $PATH`); the caller adds that prefix.
    #[error("{0}")]
    CannotStart(String),
    /// A command run by [`run_check`] did not finish in time (its process group was killed).
    #[error("command timed out after {0:?}")]
    Timeout(Duration),
    /// An I/O error of the runtime itself (state directory, `/proc`).
    #[error("process runtime I/O error: {0}")]
    Io(#[from] io::Error),
}

/// A container process left running by a previous agent run, found by
/// [`ProcessRuntime::reap_orphans`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    /// The task the process belonged to.
    pub task_id: String,
    /// The container the process ran.
    pub container_name: String,
    /// The recorded pid (also the process group id).
    pub pid: u32,
    /// Whether anything of it was still running and was SIGKILLed (false: it had already gone).
    pub killed: bool,
}

/// The process runtime: starts container processes and keeps their pid files in a state
/// directory. Cheap to clone; clones share state.
#[derive(Debug, Clone)]
pub struct ProcessRuntime {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    state_dir: PathBuf,
    boot_id: Option<String>,
    /// Pid files written by this instance and not yet removed: never touched by `reap_orphans`.
    own: Mutex<HashSet<PathBuf>>,
}

impl Inner {
    fn own(&self) -> MutexGuard<'_, HashSet<PathBuf>> {
        self.own
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What a pid file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PidRecord {
    pid: u32,
    start_time_ticks: u64,
    task_id: String,
    container_name: String,
    #[serde(default)]
    boot_id: Option<String>,
}

impl ProcessRuntime {
    /// Opens (creating it if needed) the state directory that holds the pid files.
    pub fn new(state_dir: PathBuf) -> Result<Self, RuntimeError> {
        std::fs::create_dir_all(&state_dir)?;
        Ok(ProcessRuntime {
            inner: Arc::new(Inner {
                state_dir,
                boot_id: read_boot_id(),
                own: Mutex::new(HashSet::new()),
            }),
        })
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.inner.state_dir
    }

    /// Starts a container's process (own process group, stdin `/dev/null`) and forwards its
    /// stdout and stderr line by line to `output` (see [`OutputSink`]: a plain channel is a
    /// non-blocking sink). Must be called within a tokio runtime.
    pub async fn start(
        &self,
        spec: &ContainerSpec,
        output: impl Into<OutputSink>,
    ) -> Result<RunningProcess, RuntimeError> {
        let output: OutputSink = output.into();
        let mut cmd = prepare(
            &spec.argv,
            &spec.env,
            spec.working_dir.as_deref(),
            spec.user.as_deref(),
        )?;
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let argv0 = spec.argv.first().map(String::as_str).unwrap_or_default();
        let mut child = cmd.spawn().map_err(|e| spawn_error(argv0, &e))?;
        let Some(pid) = child.id() else {
            // Cannot happen before the child has been waited; treat as a failed start.
            let _ = child.wait().await;
            return Err(RuntimeError::CannotStart(format!(
                "exec: \"{argv0}\": process vanished at start"
            )));
        };

        let pid_file = self.pid_file_path(&spec.task_id, &spec.container_name, pid);
        self.inner.own().insert(pid_file.clone());
        let recorded = read_stat(pid)
            .ok_or_else(|| io::Error::other(format!("cannot read /proc/{pid}/stat")))
            .and_then(|stat| {
                let record = PidRecord {
                    pid,
                    start_time_ticks: stat.start_time,
                    task_id: spec.task_id.clone(),
                    container_name: spec.container_name.clone(),
                    boot_id: self.inner.boot_id.clone(),
                };
                write_pid_file(&pid_file, &record)
            });
        if let Err(e) = recorded {
            // Without a record the process could outlive us unnoticed: do not run it.
            tracing::error!(task_id = %spec.task_id, container = %spec.container_name, pid,
                error = %e, "cannot record the container process; killing it");
            signal_group(pid, Signal::SIGKILL);
            let _ = child.wait().await;
            remove_pid_file(&pid_file);
            self.inner.own().remove(&pid_file);
            return Err(RuntimeError::Io(e));
        }

        let counters = Arc::new(OutputCounters::default());
        let grace = output.drain_grace();
        let mut readers = Vec::with_capacity(2);
        if let Some(stdout) = child.stdout.take() {
            readers.push(spawn_reader(
                stdout,
                Forwarder::new(output.clone(), Stream::Stdout, counters.clone()),
            ));
        }
        if let Some(stderr) = child.stderr.take() {
            readers.push(spawn_reader(
                stderr,
                Forwarder::new(output, Stream::Stderr, counters.clone()),
            ));
        }

        let (signal_tx, signal_rx) = mpsc::unbounded_channel();
        let (exit_tx, exit_rx) = watch::channel(None);
        tracing::debug!(task_id = %spec.task_id, container = %spec.container_name, pid,
            "container process started");
        tokio::spawn(supervise(Supervised {
            child,
            pid,
            signals: signal_rx,
            readers,
            exit: exit_tx,
            inner: self.inner.clone(),
            pid_file,
            counters: counters.clone(),
            grace,
            task_id: spec.task_id.clone(),
            container_name: spec.container_name.clone(),
        }));

        Ok(RunningProcess {
            pid,
            signals: signal_tx,
            exit: exit_rx,
            counters,
        })
    }

    /// Kills what a previous agent run left behind: for each pid file in the state directory not
    /// written by this instance, SIGKILLs the recorded process group if its leader is still the
    /// same process (same `/proc/<pid>/stat` start time and boot id), or, if the leader is gone,
    /// any remaining members of its group. Removes the pid files and returns one [`Orphan`] per
    /// record found (`killed` tells whether anything was still running). Call it at start-up,
    /// before starting tasks. The SIGKILL is delivered before this returns; the processes die
    /// asynchronously (their new parent reaps them).
    pub fn reap_orphans(&self) -> Vec<Orphan> {
        let mut found = Vec::new();
        let Ok(task_dirs) = std::fs::read_dir(&self.inner.state_dir) else {
            return found;
        };
        for task_dir in task_dirs.flatten() {
            let dir = task_dir.path();
            if !dir.is_dir() {
                continue;
            }
            let Ok(files) = std::fs::read_dir(&dir) else {
                continue;
            };
            for file in files.flatten() {
                let path = file.path();
                let name = file.file_name().to_string_lossy().into_owned();
                let record_path = if name.ends_with(".pid") {
                    path.clone()
                } else if let Some(stripped) = name.strip_suffix(".tmp") {
                    dir.join(stripped)
                } else {
                    continue;
                };
                if self.inner.own().contains(&record_path) {
                    continue;
                }
                let record = std::fs::read(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|bytes| {
                        serde_json::from_slice::<PidRecord>(&bytes).map_err(|e| e.to_string())
                    });
                match record {
                    Ok(record) => {
                        let killed = kill_leftover(&record, self.inner.boot_id.as_deref());
                        tracing::warn!(task_id = %record.task_id,
                            container = %record.container_name, pid = record.pid, killed,
                            "found a container process of a previous agent run");
                        found.push(Orphan {
                            task_id: record.task_id,
                            container_name: record.container_name,
                            pid: record.pid,
                            killed,
                        });
                    }
                    Err(e) => {
                        tracing::warn!(file = %path.display(), error = %e,
                            "removing an unreadable pid file");
                    }
                }
                remove_pid_file(&path);
            }
            // Only succeeds when empty.
            let _ = std::fs::remove_dir(&dir);
        }
        found
    }

    fn pid_file_path(&self, task_id: &str, container_name: &str, pid: u32) -> PathBuf {
        self.inner
            .state_dir
            .join(file_name_component(task_id))
            .join(format!("{}.{pid}.pid", file_name_component(container_name)))
    }
}

/// A started container process. Dropping it does not stop the process.
#[derive(Debug)]
pub struct RunningProcess {
    pid: u32,
    signals: mpsc::UnboundedSender<Signal>,
    exit: watch::Receiver<Option<ExitInfo>>,
    counters: Arc<OutputCounters>,
}

impl RunningProcess {
    /// The process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The id reported as the container's runtime id: `process:<pid>`.
    pub fn runtime_id(&self) -> String {
        format!("process:{}", self.pid)
    }

    /// Waits until the process has exited, been reaped, its leftovers killed and its output
    /// forwarded. Cancel-safe; once it has returned, later calls return the same result at once.
    pub async fn wait(&self) -> ExitInfo {
        let mut exit = self.exit.clone();
        match exit.wait_for(Option::is_some).await {
            Ok(info) => info.unwrap_or(ExitInfo::UNKNOWN),
            // The supervisor went away without a result (its runtime is shutting down).
            Err(_) => ExitInfo::UNKNOWN,
        }
    }

    /// The exit, if [`wait`](Self::wait) would return at once.
    pub fn try_exit(&self) -> Option<ExitInfo> {
        *self.exit.borrow()
    }

    /// Sends `signal` to the process group, unless the process has already exited (never to a
    /// reused pid).
    pub fn signal(&self, signal: Signal) {
        // A closed channel means the supervisor has finished: the process is gone.
        let _ = self.signals.send(signal);
    }

    /// Graceful stop: SIGTERM to the whole process group, up to `timeout` for it to exit, then
    /// SIGKILL to the group. Returns the exit; idempotent (an exited process gets no signal and
    /// the recorded exit is returned).
    pub async fn stop(&self, timeout: Duration) -> ExitInfo {
        self.stop_with_signal(Signal::SIGTERM, timeout).await
    }

    /// [`stop`](Self::stop) with another stop signal (an image's `STOPSIGNAL`).
    pub async fn stop_with_signal(&self, signal: Signal, timeout: Duration) -> ExitInfo {
        if let Some(exit) = self.try_exit() {
            return exit;
        }
        self.signal(signal);
        if let Ok(exit) = tokio::time::timeout(timeout, self.wait()).await {
            return exit;
        }
        tracing::debug!(
            pid = self.pid,
            ?timeout,
            "stop timeout elapsed; sending SIGKILL"
        );
        self.signal(Signal::SIGKILL);
        self.wait().await
    }

    /// How many output lines were dropped because a non-blocking sink was full.
    pub fn dropped_lines(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }
}

/// Runs a health-check or exec-style command (`argv`, resolved as for containers) with exactly
/// `env`, in its own process group with stdin/stdout/stderr on `/dev/null`. Returns its exit
/// code (`128 + N` if killed by signal N); on timeout kills the whole group and returns
/// [`RuntimeError::Timeout`]. Leftovers in its group are killed when it exits, and the group is
/// killed if the returned future is dropped early.
pub async fn run_check(
    argv: &[String],
    env: &[(String, String)],
    working_dir: Option<&str>,
    timeout: Duration,
) -> Result<i32, RuntimeError> {
    run_check_as(argv, env, working_dir, None, timeout).await
}

/// [`run_check`] as a given user (same forms and rules as [`ContainerSpec::user`]).
pub async fn run_check_as(
    argv: &[String],
    env: &[(String, String)],
    working_dir: Option<&str>,
    user: Option<&str>,
    timeout: Duration,
) -> Result<i32, RuntimeError> {
    let mut cmd = prepare(argv, env, working_dir, user)?;
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let argv0 = argv.first().map(String::as_str).unwrap_or_default();
    let child = cmd.spawn().map_err(|e| spawn_error(argv0, &e))?;
    let Some(pid) = child.id() else {
        return Err(RuntimeError::CannotStart(format!(
            "exec: \"{argv0}\": process vanished at start"
        )));
    };
    let mut guard = GroupGuard { child, pid };
    match tokio::time::timeout(timeout, guard.child.wait()).await {
        Ok(status) => {
            let status = status?;
            Ok(ExitInfo::from_status(status).exit_code.unwrap_or(-1))
        }
        Err(_) => {
            if let Ok(Some(status)) = guard.child.try_wait() {
                // Finished on the wire.
                return Ok(ExitInfo::from_status(status).exit_code.unwrap_or(-1));
            }
            signal_group(pid, Signal::SIGKILL);
            let _ = guard.child.wait().await;
            Err(RuntimeError::Timeout(timeout))
        }
    }
}

/// Owns a check's child; on drop (normal return or cancellation) SIGKILLs what is left of its
/// process group. The dropped `Child` is reaped by tokio in the background.
struct GroupGuard {
    child: Child,
    pid: u32,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        match self.child.try_wait() {
            // Still running (the future was dropped) and unreaped: the group id is ours.
            Ok(None) => signal_group(self.pid, Signal::SIGKILL),
            _ => kill_group_leftovers(self.pid),
        }
    }
}

/// Builds the command after the checks that turn into start errors.
fn prepare(
    argv: &[String],
    env: &[(String, String)],
    working_dir: Option<&str>,
    user: Option<&str>,
) -> Result<Command, RuntimeError> {
    let Some(argv0) = argv.first() else {
        return Err(RuntimeError::CannotStart("No command specified".to_owned()));
    };
    for (key, value) in env {
        if key.is_empty() || key.contains(['=', '\0']) {
            return Err(RuntimeError::CannotStart(format!(
                "invalid environment variable name {key:?}"
            )));
        }
        if value.contains('\0') {
            return Err(RuntimeError::CannotStart(format!(
                "invalid value for environment variable {key}: contains a NUL byte"
            )));
        }
    }
    if let Some(dir) = working_dir {
        check_working_dir(dir)?;
    }
    let path_var = env
        .iter()
        .rev()
        .find(|(key, _)| key == "PATH")
        .map(|(_, value)| value.clone())
        .or_else(|| std::env::var("PATH").ok())
        .unwrap_or_else(|| DEFAULT_PATH.to_owned());
    let program = resolve_program(argv0, &path_var, working_dir.map(Path::new))?;
    let ids = match user {
        Some(user) if !user.is_empty() => resolve_user_if_root(user)?,
        _ => None,
    };

    let mut cmd = Command::new(program);
    cmd.arg0(argv0)
        .args(&argv[1..])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .process_group(0)
        .kill_on_drop(false);
    if let Some(dir) = working_dir {
        cmd.current_dir(dir);
    }
    if let Some((uid, gid)) = ids {
        // std drops supplementary groups (setgroups(0)) when switching uid as root.
        cmd.gid(gid).uid(uid);
    }
    Ok(cmd)
}

fn check_working_dir(dir: &str) -> Result<(), RuntimeError> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(RuntimeError::CannotStart(format!(
            "chdir to {dir}: {}",
            Errno::ENOTDIR.desc()
        ))),
        Err(e) => Err(RuntimeError::CannotStart(format!(
            "chdir to {dir}: {}",
            io_desc(&e)
        ))),
    }
}

/// Finds the executable the way `execvp` (and Go's `exec.LookPath`) would, so that failures are
/// reported at start with Docker's wording.
fn resolve_program(
    argv0: &str,
    path_var: &str,
    working_dir: Option<&Path>,
) -> Result<PathBuf, RuntimeError> {
    let relative_to_workdir = |path: &Path| match working_dir {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path.to_path_buf(),
    };
    if argv0.contains('/') {
        let path = relative_to_workdir(Path::new(argv0));
        return match std::fs::metadata(&path) {
            Err(e) => Err(RuntimeError::CannotStart(format!(
                "exec: \"{argv0}\": stat {}: {}",
                path.display(),
                io_desc(&e)
            ))),
            Ok(meta) if meta.is_dir() => Err(RuntimeError::CannotStart(format!(
                "exec: \"{argv0}\": {}",
                Errno::EISDIR.desc()
            ))),
            Ok(meta) if meta.permissions().mode() & 0o111 == 0 => Err(RuntimeError::CannotStart(
                format!("exec: \"{argv0}\": {}", Errno::EACCES.desc()),
            )),
            Ok(_) => Ok(path),
        };
    }
    if !argv0.is_empty() {
        for dir in path_var.split(':') {
            let dir = if dir.is_empty() { "." } else { dir };
            let candidate = relative_to_workdir(&Path::new(dir).join(argv0));
            if is_executable_file(&candidate) {
                return Ok(candidate);
            }
        }
    }
    Err(RuntimeError::CannotStart(format!(
        "exec: \"{argv0}\": executable file not found in $PATH"
    )))
}

fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Parses `user` into (uid, gid) when running as root; `None` (with a warning) otherwise.
fn resolve_user_if_root(user: &str) -> Result<Option<(u32, u32)>, RuntimeError> {
    if !Uid::effective().is_root() {
        tracing::warn!(
            user,
            "the agent does not run as root: ignoring the container's user"
        );
        return Ok(None);
    }
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    if user_part.is_empty() || group_part.is_some_and(str::is_empty) {
        return Err(RuntimeError::CannotStart(format!("invalid user {user:?}")));
    }
    let lookup_failed =
        |what: &str, name: &str, e: Errno| format!("unable to find {what} {name}: {}", e.desc());
    let (uid, primary_gid) = match user_part.parse::<u32>() {
        // A numeric uid need not exist in passwd (Docker then uses gid 0).
        Ok(uid) => match User::from_uid(Uid::from_raw(uid)) {
            Ok(Some(entry)) => (uid, entry.gid.as_raw()),
            _ => (uid, 0),
        },
        Err(_) => match User::from_name(user_part) {
            Ok(Some(entry)) => (entry.uid.as_raw(), entry.gid.as_raw()),
            Ok(None) => {
                return Err(RuntimeError::CannotStart(format!(
                    "unable to find user {user_part}: no matching entries in passwd file"
                )));
            }
            Err(e) => {
                return Err(RuntimeError::CannotStart(lookup_failed(
                    "user", user_part, e,
                )));
            }
        },
    };
    let gid = match group_part {
        None => primary_gid,
        Some(group) => match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => match Group::from_name(group) {
                Ok(Some(entry)) => entry.gid.as_raw(),
                Ok(None) => {
                    return Err(RuntimeError::CannotStart(format!(
                        "unable to find group {group}: no matching entries in group file"
                    )));
                }
                Err(e) => {
                    return Err(RuntimeError::CannotStart(lookup_failed("group", group, e)));
                }
            },
        },
    };
    Ok(Some((uid, gid)))
}

fn spawn_error(argv0: &str, e: &io::Error) -> RuntimeError {
    RuntimeError::CannotStart(format!("exec: \"{argv0}\": {}", io_desc(e)))
}

/// An I/O error as C's `strerror` words it, without Rust's "(os error N)".
fn io_desc(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => Errno::from_raw(code).desc().to_owned(),
        None => e.to_string(),
    }
}

/// Sends `signal` to process group `pgid`, or to its leader if it has left the group. Only for a
/// leader that has not been reaped yet (so that `pgid` cannot have been reused). Errors (the
/// group is gone) are ignored.
fn signal_group(pgid: u32, signal: Signal) {
    let Ok(raw) = i32::try_from(pgid) else {
        return;
    };
    if raw <= 1 {
        return;
    }
    if killpg(Pid::from_raw(raw), signal) == Err(Errno::ESRCH) {
        let _ = kill(Pid::from_raw(raw), signal);
    }
}

/// SIGKILLs whatever is left in process group `pgid` after its leader has been reaped. Never
/// signals a lone process: the pid may have been reused. (A reused number is a group id only if
/// its new owner made itself a group leader in the instant since the reap.)
fn kill_group_leftovers(pgid: u32) {
    if let Ok(raw) = i32::try_from(pgid)
        && raw > 1
    {
        let _ = killpg(Pid::from_raw(raw), Signal::SIGKILL);
    }
}

struct Supervised {
    child: Child,
    pid: u32,
    signals: mpsc::UnboundedReceiver<Signal>,
    readers: Vec<JoinHandle<()>>,
    exit: watch::Sender<Option<ExitInfo>>,
    inner: Arc<Inner>,
    pid_file: PathBuf,
    counters: Arc<OutputCounters>,
    /// How long a reader may go without progress once the process has exited.
    grace: Duration,
    task_id: String,
    container_name: String,
}

/// Owns a container's child: relays signals while it runs (so they never reach a reused pid),
/// reaps it, kills its group's leftovers, drains its output, removes its pid file, publishes
/// the exit.
async fn supervise(mut s: Supervised) {
    let status = wait_relaying_signals(&mut s.child, s.pid, &mut s.signals).await;
    let exit = match status {
        Ok(status) => ExitInfo::from_status(status),
        Err(e) => {
            tracing::error!(pid = s.pid, error = %e, "cannot wait for the container process");
            ExitInfo::UNKNOWN
        }
    };
    // The main process is the container: its exit ends the rest of its group.
    kill_group_leftovers(s.pid);

    for mut reader in s.readers {
        if !wait_reader(&mut reader, &s.counters, s.grace).await {
            tracing::warn!(task_id = %s.task_id, container = %s.container_name, pid = s.pid,
                "output pipe still open (or its lines not taken) after the container exited; abandoning it");
        }
    }
    let dropped = s.counters.dropped.load(Ordering::Relaxed);
    if dropped > 0 {
        tracing::warn!(task_id = %s.task_id, container = %s.container_name, pid = s.pid,
            dropped, "output lines dropped (non-blocking mode) because the agent fell behind");
    }

    remove_pid_file(&s.pid_file);
    if let Some(dir) = s.pid_file.parent() {
        let _ = std::fs::remove_dir(dir);
    }
    s.inner.own().remove(&s.pid_file);
    tracing::debug!(task_id = %s.task_id, container = %s.container_name, pid = s.pid, ?exit,
        "container process exited");
    s.exit.send_replace(Some(exit));
}

async fn wait_relaying_signals(
    child: &mut Child,
    pid: u32,
    signals: &mut mpsc::UnboundedReceiver<Signal>,
) -> io::Result<ExitStatus> {
    let mut signals_open = true;
    loop {
        tokio::select! {
            status = child.wait() => return status,
            signal = signals.recv(), if signals_open => match signal {
                Some(signal) => match child.try_wait()? {
                    Some(status) => return Ok(status),
                    // Not reaped, so the pid (and group id) is still ours.
                    None => signal_group(pid, signal),
                },
                None => signals_open = false,
            },
        }
    }
}

fn spawn_reader<R>(mut reader: R, mut out: Forwarder) -> JoinHandle<()>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut buf = vec![0u8; FIRST_READ_CHUNK];
        let mut splitter = LineSplitter::new(MAX_LINE_BYTES);
        loop {
            match reader.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    out.counters.progress.fetch_add(1, Ordering::Relaxed);
                    let now = now_ms();
                    splitter.push(&buf[..n], |line| out.lines.push((now, line)));
                    if n == buf.len() && buf.len() < READ_CHUNK {
                        buf.resize(buf.len() * 2, 0);
                    }
                    out.flush().await;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!(stream = ?out.stream, error = %e, "reading container output failed");
                    break;
                }
            }
        }
        let now = now_ms();
        splitter.finish(|line| out.lines.push((now, line)));
        out.flush().await;
    })
}

/// Splits a byte stream into lines on `\n`, cutting lines longer than `max` bytes.
#[derive(Debug)]
pub(crate) struct LineSplitter {
    pending: Vec<u8>,
    /// Bytes at the start of `pending` known to hold no `\n`.
    scanned: usize,
    max: usize,
}

impl LineSplitter {
    pub(crate) fn new(max: usize) -> Self {
        LineSplitter {
            pending: Vec::new(),
            scanned: 0,
            max: max.max(4),
        }
    }

    pub(crate) fn push(&mut self, mut data: &[u8], mut emit: impl FnMut(String)) {
        if !self.pending.is_empty() {
            // Finish the line left over from the last read: only its bytes are copied (up
            // to the next newline, or as many as can still fit in a line).
            let room = (self.max + 1).saturating_sub(self.pending.len()).max(1);
            let head = &data[..data.len().min(room)];
            let take = memchr::memchr(b'\n', head).map_or(head.len(), |i| i + 1);
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            let (used, scanned) = split_lines(&self.pending, self.scanned, self.max, &mut emit);
            self.pending.drain(..used);
            self.scanned = scanned;
            if !self.pending.is_empty() {
                // Still unfinished (a long line cut into pieces): the slow way.
                self.pending.extend_from_slice(data);
                let (used, scanned) = split_lines(&self.pending, self.scanned, self.max, &mut emit);
                self.pending.drain(..used);
                self.scanned = scanned;
                return;
            }
        }
        // Lines are cut straight from `data`; only an unfinished last one is kept.
        let (used, scanned) = split_lines(data, 0, self.max, &mut emit);
        self.pending.extend_from_slice(&data[used..]);
        self.scanned = scanned;
    }

    pub(crate) fn finish(&mut self, mut emit: impl FnMut(String)) {
        if !self.pending.is_empty() {
            emit(String::from_utf8_lossy(&self.pending).into_owned());
        }
        self.pending.clear();
        self.scanned = 0;
    }
}

/// Emit the complete lines of `buf` (and pieces of `max` bytes of longer ones), whose first
/// `scanned` bytes are known to hold no `\n`. Returns the bytes used and how many of the rest
/// are known to hold no `\n`. Invalid UTF-8 becomes U+FFFD.
fn split_lines(
    buf: &[u8],
    mut scanned: usize,
    max: usize,
    emit: &mut impl FnMut(String),
) -> (usize, usize) {
    // One validation for the whole buffer (lines are slices of it), not one per line.
    let text = match std::str::from_utf8(buf) {
        Ok(t) => t,
        Err(e) => std::str::from_utf8(&buf[..e.valid_up_to()]).unwrap_or_default(),
    };
    let line = |a: usize, b: usize| match text.get(a..b) {
        Some(s) => s.to_owned(),
        None => String::from_utf8_lossy(&buf[a..b]).into_owned(),
    };
    let mut start = 0;
    loop {
        let available = buf.len() - start;
        // A newline at offset `max` still ends a line of `max` bytes.
        let window = available.min(max + 1);
        let from = scanned.min(window);
        if let Some(offset) = memchr::memchr(b'\n', &buf[start + from..start + window]) {
            let end = start + from + offset;
            emit(line(start, end));
            start = end + 1;
            scanned = 0;
        } else if available > max {
            let cut = utf8_cut(&buf[start..start + window], max);
            emit(line(start, start + cut));
            start += cut;
            scanned = 0;
        } else {
            return (start, window);
        }
    }
}

/// Where to cut `bytes` (longer than `max`) so that the first piece is at most `max` bytes and,
/// if possible, does not end inside a UTF-8 character.
fn utf8_cut(bytes: &[u8], max: usize) -> usize {
    (0..4)
        .map(|back| max - back)
        .find(|&cut| cut > 0 && bytes.get(cut).is_some_and(|&b| b & 0xC0 != 0x80))
        .unwrap_or(max)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The fields of `/proc/<pid>/stat` the runtime uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcStat {
    state: char,
    pgrp: i32,
    /// Field 22: start time in clock ticks since boot.
    start_time: u64,
}

fn read_stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

fn parse_stat(text: &str) -> Option<ProcStat> {
    // `comm` (field 2) is in parentheses and may itself contain spaces and parentheses.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state).
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

fn read_boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// Whether any process is in process group `pgid`.
fn group_has_members(pgid: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
            .and_then(read_stat)
            .is_some_and(|stat| stat.pgrp == pgid && stat.state != 'Z')
    })
}

/// SIGKILLs what is left of a recorded process group; whether anything was.
fn kill_leftover(record: &PidRecord, boot_id: Option<&str>) -> bool {
    if let (Some(recorded), Some(current)) = (record.boot_id.as_deref(), boot_id)
        && recorded != current
    {
        // Recorded before a reboot: nothing of it can be running.
        return false;
    }
    let Ok(raw) = i32::try_from(record.pid) else {
        return false;
    };
    if raw <= 1 {
        return false;
    }
    match read_stat(record.pid) {
        Some(stat) if stat.start_time == record.start_time_ticks => {
            // The very leader we started (running or a zombie): kill its group.
            let group = killpg(Pid::from_raw(raw), Signal::SIGKILL).is_ok();
            let leader = stat.pgrp != raw && kill(Pid::from_raw(raw), Signal::SIGKILL).is_ok();
            group || leader
        }
        // The pid was reused, so the old group is empty: Linux keeps a number allocated while
        // any process still uses it as its process group id.
        Some(_) => false,
        // The leader is gone; members of its group may remain (the number is still reserved
        // for them, so they are ours).
        None => group_has_members(raw) && killpg(Pid::from_raw(raw), Signal::SIGKILL).is_ok(),
    }
}

fn write_pid_file(path: &Path, record: &PidRecord) -> io::Result<()> {
    let json = serde_json::to_vec(record).map_err(io::Error::other)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut attempt = 0;
    loop {
        attempt += 1;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // The task directory may be removed concurrently when another of its containers exits.
        let written = std::fs::write(&tmp, &json).and_then(|()| std::fs::rename(&tmp, path));
        match written {
            Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < 5 => continue,
            other => return other,
        }
    }
}

fn remove_pid_file(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(file = %path.display(), error = %e, "cannot remove pid file");
    }
}

/// Makes a task id or container name safe as one file name component.
fn file_name_component(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    if out.is_empty() {
        out.push('%');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    const TASK: &str = "0123456789abcdef0123456789abcdef";

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    fn base_env() -> Vec<(String, String)> {
        vec![("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into())]
    }

    fn spec(name: &str, argv: Vec<String>) -> ContainerSpec {
        ContainerSpec {
            task_id: TASK.into(),
            container_name: name.into(),
            argv,
            env: base_env(),
            working_dir: None,
            user: None,
        }
    }

    fn runtime() -> (tempfile::TempDir, ProcessRuntime) {
        let dir = tempfile::tempdir().unwrap();
        let rt = ProcessRuntime::new(dir.path().join("state")).unwrap();
        (dir, rt)
    }

    async fn run(
        rt: &ProcessRuntime,
        spec: &ContainerSpec,
    ) -> (RunningProcess, mpsc::Receiver<OutputLine>) {
        let (tx, rx) = mpsc::channel(1024);
        (rt.start(spec, tx).await.unwrap(), rx)
    }

    fn drain(rx: &mut mpsc::Receiver<OutputLine>) -> Vec<OutputLine> {
        let mut lines = Vec::new();
        while let Ok(line) = rx.try_recv() {
            lines.push(line);
        }
        lines
    }

    fn lines_of(lines: &[OutputLine], stream: Stream) -> Vec<String> {
        lines
            .iter()
            .filter(|l| l.stream == stream)
            .map(|l| l.line.clone())
            .collect()
    }

    fn cannot_start(result: Result<RunningProcess, RuntimeError>) -> String {
        match result {
            Err(RuntimeError::CannotStart(message)) => message,
            other => panic!("expected CannotStart, got {other:?}"),
        }
    }

    /// Waits (up to 5 s) until `pid`, as identified by `start_time`, is gone or a zombie.
    async fn gone(pid: u32, start_time: u64) -> bool {
        for _ in 0..100 {
            match read_stat(pid) {
                None => return true,
                Some(stat) if stat.start_time != start_time || stat.state == 'Z' => return true,
                Some(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        false
    }

    async fn first_line(rx: &mut mpsc::Receiver<OutputLine>) -> String {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap()
            .line
    }

    #[tokio::test]
    async fn exit_codes_are_reported_and_wait_repeats() {
        let (_dir, rt) = runtime();
        let (p, _rx) = run(&rt, &spec("zero", vec!["true".into()])).await;
        let exit = p.wait().await;
        assert_eq!(
            exit,
            ExitInfo {
                exit_code: Some(0),
                signal: None
            }
        );
        assert_eq!(p.wait().await, exit);
        assert_eq!(p.try_exit(), Some(exit));

        let (p, _rx) = run(&rt, &spec("three", sh("exit 3"))).await;
        assert_eq!(p.wait().await.exit_code, Some(3));
        assert_eq!(p.runtime_id(), format!("process:{}", p.pid()));
    }

    #[tokio::test]
    async fn killed_by_sigkill_is_137() {
        let (_dir, rt) = runtime();
        let (p, _rx) = run(&rt, &spec("selfkill", sh("kill -KILL $$"))).await;
        assert_eq!(
            p.wait().await,
            ExitInfo {
                exit_code: Some(137),
                signal: Some(9)
            }
        );
    }

    #[tokio::test]
    async fn stop_with_sigterm_is_143_and_idempotent() {
        let (_dir, rt) = runtime();
        let (p, _rx) = run(&rt, &spec("sleeper", vec!["sleep".into(), "100".into()])).await;
        assert_eq!(p.try_exit(), None);
        let started = Instant::now();
        let exit = p.stop(Duration::from_secs(5)).await;
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(
            exit,
            ExitInfo {
                exit_code: Some(143),
                signal: Some(15)
            }
        );
        assert_eq!(p.stop(Duration::from_secs(5)).await, exit);
        assert_eq!(p.wait().await, exit);
    }

    #[tokio::test]
    async fn stop_after_exit_returns_the_exit() {
        let (_dir, rt) = runtime();
        let (p, _rx) = run(&rt, &spec("quick", sh("exit 5"))).await;
        let exit = p.wait().await;
        assert_eq!(p.stop(Duration::from_millis(100)).await, exit);
        p.signal(Signal::SIGKILL); // no-op, no error
        assert_eq!(p.try_exit(), Some(exit));
    }

    #[tokio::test]
    async fn output_lines_in_order_with_stream_tags() {
        let (_dir, rt) = runtime();
        let before = now_ms();
        let script = "echo out1; echo err1 >&2; echo out2; echo; printf 'err2' >&2; printf 'out3'";
        let (p, mut rx) = run(&rt, &spec("talker", sh(script))).await;
        assert_eq!(p.wait().await.exit_code, Some(0));
        let lines = drain(&mut rx);
        assert_eq!(
            lines_of(&lines, Stream::Stdout),
            ["out1", "out2", "", "out3"]
        );
        assert_eq!(lines_of(&lines, Stream::Stderr), ["err1", "err2"]);
        let after = now_ms();
        assert!(
            lines
                .iter()
                .all(|l| l.timestamp_ms >= before && l.timestamp_ms <= after)
        );
        assert_eq!(p.dropped_lines(), 0);
    }

    #[tokio::test]
    async fn very_long_lines_are_split() {
        let (_dir, rt) = runtime();
        let script = "head -c 600000 /dev/zero | tr '\\0' a; echo; echo end";
        let (p, mut rx) = run(&rt, &spec("long", sh(script))).await;
        assert_eq!(p.wait().await.exit_code, Some(0));
        let lines = lines_of(&drain(&mut rx), Stream::Stdout);
        let lengths: Vec<usize> = lines.iter().map(String::len).collect();
        assert_eq!(
            lengths,
            [
                MAX_LINE_BYTES,
                MAX_LINE_BYTES,
                600_000 - 2 * MAX_LINE_BYTES,
                3
            ]
        );
        assert!(lines[0].bytes().all(|b| b == b'a'));
    }

    #[test]
    fn splitter_edges() {
        let collect = |chunks: &[&[u8]], max: usize| {
            let mut out = Vec::new();
            let mut s = LineSplitter::new(max);
            for chunk in chunks {
                s.push(chunk, |l| out.push(l));
            }
            s.finish(|l| out.push(l));
            out
        };
        assert_eq!(
            collect(&[b"ab", b"c\nd", b"e\n\nf"], 8),
            ["abc", "de", "", "f"]
        );
        // A line of exactly `max` bytes followed by its newline is one line, not two.
        assert_eq!(collect(&[b"12345678\n", b"x"], 8), ["12345678", "x"]);
        assert_eq!(collect(&[b"123456789\n"], 8), ["12345678", "9"]);
        // Byte-at-a-time input.
        let bytes = b"hello\nworld";
        let chunks: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(collect(&chunks, 8), ["hello", "world"]);
        // Cuts fall on character boundaries: "ééééé" is 10 bytes.
        assert_eq!(collect(&["ééééé".as_bytes()], 5), ["éé", "éé", "é"]);
        assert_eq!(collect(&[b"\xff\n"], 8), ["\u{fffd}"]);
    }

    #[test]
    fn splitting_does_not_depend_on_how_the_input_is_read() {
        // Lines of every length around the limit (8), multi-byte characters, empty lines.
        let mut text = Vec::new();
        for n in 0..30usize {
            text.extend(std::iter::repeat_n(b'a' + (n % 26) as u8, n % 19));
            if n % 4 == 0 {
                text.extend_from_slice("é€".as_bytes());
            }
            text.push(b'\n');
        }
        text.extend_from_slice(b"tail without newline");
        let split = |size: usize| {
            let mut out = Vec::new();
            let mut s = LineSplitter::new(8);
            for chunk in text.chunks(size) {
                s.push(chunk, |l| out.push(l));
            }
            s.finish(|l| out.push(l));
            out
        };
        let whole = split(text.len());
        assert!(whole.iter().all(|l| l.len() <= 8), "{whole:?}");
        assert!(whole.contains(&String::new()));
        assert_eq!(whole.last().map(String::as_str), Some("line"));
        for size in 1..40 {
            assert_eq!(split(size), whole, "read {size} bytes at a time");
        }
    }

    #[test]
    fn stat_parsing_handles_odd_names() {
        let text =
            "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100";
        assert_eq!(
            parse_stat(text),
            Some(ProcStat {
                state: 'S',
                pgrp: 1234,
                start_time: 987654
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[tokio::test]
    async fn env_and_working_dir_are_honoured() {
        let (dir, rt) = runtime();
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        let mut s = spec("env", sh("pwd; echo \"$FOO\"; echo \"${HOME-unset}\""));
        s.env.push(("FOO".into(), "bar baz".into()));
        s.working_dir = Some(work.to_str().unwrap().into());
        let (p, mut rx) = run(&rt, &s).await;
        assert_eq!(p.wait().await.exit_code, Some(0));
        let lines = lines_of(&drain(&mut rx), Stream::Stdout);
        assert_eq!(
            lines,
            [work.to_str().unwrap(), "bar baz", "unset"],
            "environment is exactly the spec's"
        );
    }

    #[tokio::test]
    async fn command_is_resolved_with_the_containers_path() {
        let (dir, rt) = runtime();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::os::unix::fs::symlink("/bin/sh", bin.join("my-shell")).unwrap();
        let mut s = spec(
            "path",
            vec!["my-shell".into(), "-c".into(), "echo $0".into()],
        );
        s.env = vec![("PATH".into(), bin.to_str().unwrap().into())];
        let (p, mut rx) = run(&rt, &s).await;
        assert_eq!(p.wait().await.exit_code, Some(0));
        // argv[0] is passed as written.
        assert_eq!(lines_of(&drain(&mut rx), Stream::Stdout), ["my-shell"]);

        // Not found with the agent's PATH semantics either: the container's PATH wins.
        let mut s = spec("path2", vec!["sh".into(), "-c".into(), "true".into()]);
        s.env = vec![("PATH".into(), bin.to_str().unwrap().into())];
        let (tx, _rx) = mpsc::channel(8);
        assert_eq!(
            cannot_start(rt.start(&s, tx).await),
            "exec: \"sh\": executable file not found in $PATH"
        );
    }

    #[tokio::test]
    async fn start_errors_are_cannot_start() {
        let (_dir, rt) = runtime();
        let (tx, _rx) = mpsc::channel(8);

        let s = spec("nope", vec!["nope-no-such-command".into()]);
        let message = cannot_start(rt.start(&s, tx.clone()).await);
        assert_eq!(
            message,
            "exec: \"nope-no-such-command\": executable file not found in $PATH"
        );
        let err = rt.start(&s, tx.clone()).await.err().unwrap();
        assert_eq!(
            err.to_string(),
            "exec: \"nope-no-such-command\": executable file not found in $PATH"
        );

        let s = spec("abs", vec!["/no/such/binary".into()]);
        assert_eq!(
            cannot_start(rt.start(&s, tx.clone()).await),
            "exec: \"/no/such/binary\": stat /no/such/binary: No such file or directory"
        );

        let s = spec("notexec", vec!["/etc/passwd".into()]);
        assert_eq!(
            cannot_start(rt.start(&s, tx.clone()).await),
            "exec: \"/etc/passwd\": Permission denied"
        );

        let mut s = spec("workdir", sh("true"));
        s.working_dir = Some("/no/such".into());
        assert_eq!(
            cannot_start(rt.start(&s, tx.clone()).await),
            "chdir to /no/such: No such file or directory"
        );
        s.working_dir = Some("/etc/passwd".into());
        assert_eq!(
            cannot_start(rt.start(&s, tx.clone()).await),
            "chdir to /etc/passwd: Not a directory"
        );

        let s = spec("empty", vec![]);
        assert_eq!(
            cannot_start(rt.start(&s, tx.clone()).await),
            "No command specified"
        );

        // Nothing was recorded for failed starts.
        assert!(rt.reap_orphans().is_empty());
    }

    #[tokio::test]
    async fn user_is_switched_when_root() {
        if !Uid::effective().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let (_dir, rt) = runtime();
        let (tx, _rx) = mpsc::channel(8);
        let mut s = spec("baduser", sh("true"));
        s.user = Some("no-such-user-berth".into());
        assert_eq!(
            cannot_start(rt.start(&s, tx.clone()).await),
            "unable to find user no-such-user-berth: no matching entries in passwd file"
        );
        s.user = Some("0:no-such-group-berth".into());
        assert_eq!(
            cannot_start(rt.start(&s, tx).await),
            "unable to find group no-such-group-berth: no matching entries in group file"
        );

        let mut s = spec("numeric", sh("id -u; id -g; id -G"));
        s.user = Some("1234:5678".into());
        let (p, mut rx) = run(&rt, &s).await;
        assert_eq!(p.wait().await.exit_code, Some(0));
        assert_eq!(
            lines_of(&drain(&mut rx), Stream::Stdout),
            ["1234", "5678", "5678"],
            "no supplementary groups inherited from root"
        );

        if User::from_name("nobody").ok().flatten().is_some() {
            let mut s = spec("nobody", sh("id -un"));
            s.user = Some("nobody".into());
            let (p, mut rx) = run(&rt, &s).await;
            assert_eq!(p.wait().await.exit_code, Some(0));
            assert_eq!(lines_of(&drain(&mut rx), Stream::Stdout), ["nobody"]);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn graceful_stop_lets_the_trap_finish() {
        let (_dir, rt) = runtime();
        let script = "trap 'sleep 1; exit 0' TERM; echo ready; while true; do sleep 0.1; done";
        let (p, mut rx) = run(&rt, &spec("graceful", sh(script))).await;
        assert_eq!(first_line(&mut rx).await, "ready");
        let started = Instant::now();
        let exit = p.stop(Duration::from_secs(5)).await;
        let took = started.elapsed();
        assert_eq!(exit.exit_code, Some(0), "{exit:?}");
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(3),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn term_ignored_is_killed_after_the_timeout() {
        let (_dir, rt) = runtime();
        let script = "trap '' TERM; echo ready; while true; do sleep 0.1; done";
        let (p, mut rx) = run(&rt, &spec("stubborn", sh(script))).await;
        assert_eq!(first_line(&mut rx).await, "ready");
        let started = Instant::now();
        let exit = p.stop(Duration::from_millis(300)).await;
        let took = started.elapsed();
        assert_eq!(
            exit,
            ExitInfo {
                exit_code: Some(137),
                signal: Some(9)
            }
        );
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(2),
            "{took:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stop_kills_the_whole_group() {
        let (_dir, rt) = runtime();
        let (p, mut rx) = run(&rt, &spec("parent", sh("sleep 100 & echo $!; wait"))).await;
        let child: u32 = first_line(&mut rx).await.parse().unwrap();
        let child_start = read_stat(child).unwrap().start_time;
        assert_eq!(
            read_stat(child).unwrap().pgrp,
            i32::try_from(p.pid()).unwrap()
        );
        let exit = p.stop(Duration::from_secs(5)).await;
        assert_eq!(exit.exit_code, Some(143));
        assert!(gone(child, child_start).await, "child survived the stop");
    }

    #[tokio::test]
    async fn leftovers_die_with_the_main_process() {
        let (_dir, rt) = runtime();
        let (p, mut rx) = run(&rt, &spec("leaver", sh("sleep 100 & echo $!"))).await;
        let child: u32 = first_line(&mut rx).await.parse().unwrap();
        let child_start = read_stat(child).map(|s| s.start_time).unwrap_or(0);
        let exit = tokio::time::timeout(Duration::from_secs(3), p.wait())
            .await
            .unwrap();
        assert_eq!(exit.exit_code, Some(0));
        assert!(gone(child, child_start).await, "background child survived");
    }

    #[tokio::test]
    async fn full_output_channel_drops_lines_without_blocking() {
        let (_dir, rt) = runtime();
        let (tx, mut rx) = mpsc::channel(1);
        let script = "i=0; while [ $i -lt 100 ]; do echo $i; i=$((i+1)); done";
        let p = rt.start(&spec("chatty", sh(script)), tx).await.unwrap();
        let exit = tokio::time::timeout(Duration::from_secs(5), p.wait())
            .await
            .unwrap();
        assert_eq!(exit.exit_code, Some(0));
        assert_eq!(rx.recv().await.unwrap().line, "0");
        assert_eq!(p.dropped_lines(), 99);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blocking_sink_makes_the_writer_wait_and_loses_nothing() {
        let (_dir, rt) = runtime();
        let (tx, mut rx) = mpsc::channel(1);
        // Far more than the pipe holds (64 KiB): the writer must wait for the slow reader.
        let n = 100_000;
        let script = format!("seq 0 {}", n - 1);
        let p = rt
            .start(&spec("chatty", sh(&script)), OutputSink::blocking(tx))
            .await
            .unwrap();
        // The receiver is slow at first: the process cannot finish while lines wait.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            read_stat(p.pid()).is_some_and(|s| s.state != 'Z'),
            "the writer did not wait for the reader"
        );
        let mut got = Vec::new();
        while let Some(l) = rx.recv().await {
            got.push(l.line);
        }
        let expected: Vec<String> = (0..n).map(|i| i.to_string()).collect();
        assert_eq!(got, expected);
        assert_eq!(p.wait().await.exit_code, Some(0));
        assert_eq!(p.dropped_lines(), 0);
    }

    #[tokio::test]
    async fn forwarder_blocks_or_drops_by_mode() {
        let counters = Arc::new(OutputCounters::default());
        let (tx, mut rx) = mpsc::channel(2);
        let mut fw = Forwarder::new(
            OutputSink::non_blocking(tx),
            Stream::Stdout,
            counters.clone(),
        );
        fw.lines.extend((0..5).map(|i| (i, format!("l{i}"))));
        fw.flush().await;
        assert_eq!(counters.dropped.load(Ordering::Relaxed), 3);
        assert_eq!(rx.recv().await.unwrap().line, "l0");
        assert_eq!(rx.recv().await.unwrap().line, "l1");

        let (tx, mut rx) = mpsc::channel(2);
        let counters = Arc::new(OutputCounters::default());
        let mut fw = Forwarder::new(OutputSink::blocking(tx), Stream::Stderr, counters.clone());
        fw.lines.extend((0..5).map(|i| (i, format!("l{i}"))));
        let sender = tokio::spawn(async move {
            fw.flush().await;
            fw
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!sender.is_finished(), "a full blocking sink must wait");
        let mut got = Vec::new();
        while got.len() < 5 {
            let l = rx.recv().await.unwrap();
            assert_eq!(l.stream, Stream::Stderr);
            got.push((l.timestamp_ms, l.line));
        }
        let mut fw = sender.await.unwrap();
        assert_eq!(
            got,
            (0..5).map(|i| (i, format!("l{i}"))).collect::<Vec<_>>()
        );
        assert_eq!(counters.dropped.load(Ordering::Relaxed), 0);
        assert_eq!(counters.progress.load(Ordering::Relaxed), 5);
        // A closed receiver: lines are discarded, never waited for.
        drop(rx);
        fw.lines.push((9, "gone".into()));
        tokio::time::timeout(Duration::from_secs(1), fw.flush())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn readers_are_abandoned_only_without_progress() {
        let grace = Duration::from_millis(200);
        let counters = Arc::new(OutputCounters::default());
        let c = counters.clone();
        // Makes progress for five grace periods, then finishes.
        let mut busy = tokio::spawn(async move {
            for _ in 0..10 {
                tokio::time::sleep(grace / 2).await;
                c.progress.fetch_add(1, Ordering::Relaxed);
            }
        });
        assert!(wait_reader(&mut busy, &counters, grace).await);
        // Stuck: abandoned after a grace period without progress.
        let mut stuck = tokio::spawn(std::future::pending::<()>());
        let t0 = tokio::time::Instant::now();
        assert!(!wait_reader(&mut stuck, &counters, grace).await);
        assert!(t0.elapsed() >= grace && t0.elapsed() < grace * 3);
        assert!(stuck.await.unwrap_err().is_cancelled());
    }

    #[tokio::test]
    async fn pid_file_lives_while_the_process_runs() {
        let (_dir, rt) = runtime();
        let (p, mut rx) = run(&rt, &spec("web", sh("echo up; exec sleep 100"))).await;
        assert_eq!(first_line(&mut rx).await, "up");
        let task_dir = rt.state_dir().join(TASK);
        let file = task_dir.join(format!("web.{}.pid", p.pid()));
        let record: PidRecord = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(record.pid, p.pid());
        assert_eq!(record.task_id, TASK);
        assert_eq!(record.container_name, "web");
        assert_eq!(
            record.start_time_ticks,
            read_stat(p.pid()).unwrap().start_time
        );
        assert_eq!(p.stop(Duration::from_secs(5)).await.exit_code, Some(143));
        assert!(!file.exists());
        assert!(!task_dir.exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reap_orphans_kills_groups_of_a_previous_instance() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");

        let previous = ProcessRuntime::new(state.clone()).unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        let old = previous
            .start(&spec("old", sh("sleep 100 & echo $!; wait")), tx)
            .await
            .unwrap();
        let old_pid = old.pid();
        let old_start = read_stat(old_pid).unwrap().start_time;
        let child: u32 = first_line(&mut rx).await.parse().unwrap();
        let child_start = read_stat(child).unwrap().start_time;
        drop(old); // neither stopped nor waited: left behind

        let current = ProcessRuntime::new(state.clone()).unwrap();
        let (mine, _mine_rx) =
            run(&current, &spec("mine", vec!["sleep".into(), "100".into()])).await;
        let orphans = current.reap_orphans();
        assert_eq!(
            orphans,
            [Orphan {
                task_id: TASK.into(),
                container_name: "old".into(),
                pid: old_pid,
                killed: true
            }]
        );
        assert!(gone(old_pid, old_start).await, "orphan leader survived");
        assert!(gone(child, child_start).await, "orphan child survived");
        assert!(!state.join(TASK).join(format!("old.{old_pid}.pid")).exists());
        // The current instance's own process is left alone.
        assert_eq!(mine.try_exit(), None);
        assert!(current.reap_orphans().is_empty());
        assert_eq!(mine.stop(Duration::from_secs(5)).await.exit_code, Some(143));
    }

    #[tokio::test]
    async fn reap_orphans_spares_reused_pids_and_cleans_stale_files() {
        let (_dir, rt) = runtime();
        let (bystander, _rx) =
            run(&rt, &spec("bystander", vec!["sleep".into(), "100".into()])).await;
        let task_dir = rt.state_dir().join("ffffffffffffffffffffffffffffffff");
        std::fs::create_dir_all(&task_dir).unwrap();
        // Same pid as a live process, different start time: a reused pid.
        let reused = PidRecord {
            pid: bystander.pid(),
            start_time_ticks: 1,
            task_id: "ffffffffffffffffffffffffffffffff".into(),
            container_name: "ghost".into(),
            boot_id: read_boot_id(),
        };
        write_pid_file(&task_dir.join("ghost.1.pid"), &reused).unwrap();
        // Recorded before another boot.
        let rebooted = PidRecord {
            container_name: "rebooted".into(),
            start_time_ticks: read_stat(bystander.pid()).unwrap().start_time,
            boot_id: Some("another-boot".into()),
            ..reused.clone()
        };
        write_pid_file(&task_dir.join("rebooted.1.pid"), &rebooted).unwrap();
        std::fs::write(task_dir.join("garbage.2.pid"), b"{not json").unwrap();

        let mut orphans = rt.reap_orphans();
        orphans.sort_by(|a, b| a.container_name.cmp(&b.container_name));
        let names: Vec<(&str, bool)> = orphans
            .iter()
            .map(|o| (o.container_name.as_str(), o.killed))
            .collect();
        assert_eq!(names, [("ghost", false), ("rebooted", false)]);
        assert!(
            !task_dir.exists(),
            "stale files and their directory are removed"
        );
        assert_eq!(bystander.try_exit(), None);
        assert_eq!(
            bystander.stop(Duration::from_secs(5)).await.exit_code,
            Some(143)
        );
    }

    #[tokio::test]
    async fn run_check_reports_exit_codes() {
        let env = base_env();
        let timeout = Duration::from_secs(5);
        assert_eq!(
            run_check(&["true".into()], &env, None, timeout)
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            run_check(&sh("exit 3"), &env, None, timeout).await.unwrap(),
            3
        );
        assert_eq!(
            run_check(
                &sh("test \"$X\" = y && test \"$PWD\" = /"),
                &[("X".into(), "y".into())],
                Some("/"),
                timeout
            )
            .await
            .unwrap(),
            0
        );
        assert!(matches!(
            run_check(&["nope-no-such-command".into()], &env, None, timeout).await,
            Err(RuntimeError::CannotStart(_))
        ));
    }

    #[tokio::test]
    async fn run_check_timeout_kills_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("child");
        let script = format!("sleep 100 & echo $! > {}; wait", pid_file.display());
        let started = Instant::now();
        let result = run_check(&sh(&script), &base_env(), None, Duration::from_millis(300)).await;
        assert!(
            matches!(result, Err(RuntimeError::Timeout(_))),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        let child: u32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let child_start = read_stat(child).map(|s| s.start_time).unwrap_or(0);
        assert!(
            gone(child, child_start).await,
            "check's child survived the timeout"
        );
    }

    #[tokio::test]
    async fn dropping_run_check_kills_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("child");
        let script = format!("sleep 100 & echo $! > {}; wait", pid_file.display());
        let argv = sh(&script);
        let env = base_env();
        let check = run_check(&argv, &env, None, Duration::from_secs(60));
        assert!(
            tokio::time::timeout(Duration::from_millis(300), check)
                .await
                .is_err()
        );
        let child: u32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let child_start = read_stat(child).map(|s| s.start_time).unwrap_or(0);
        assert!(
            gone(child, child_start).await,
            "cancelled check's child survived"
        );
    }
}
