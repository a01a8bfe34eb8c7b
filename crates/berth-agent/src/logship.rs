//! The `awslogs` log driver: container output shipped to the control plane's CloudWatch
//! Logs, one stream per container per task, as ECS names them.
//!
//! Each container's output task pushes lines into a [`StreamWriter`], which joins multi-line
//! events (`awslogs-multiline-pattern` / `awslogs-datetime-format`) and queues events in the
//! [`LogShipper`]. Queueing never waits in `non-blocking` mode (the default, as on ECS): past
//! `max-buffer-size` new events are dropped and counted. In `blocking` mode the writer waits
//! for room instead, and so, through its pipe, does the container.
//!
//! One shipping loop per agent sends what is queued (every stream's next chunk in one
//! request), on a path of its own so that a log flood never delays task-state syncs. A chunk
//! leaves its queue only once the server acknowledged it as durable; until then it is resent
//! after any failure with the same sequence number, and the server drops a chunk it already
//! stored, so nothing is lost or doubled by a lost answer or a server restart.

use crate::agent::{ControlPlane, TransportError};
use berth_api::ecs::{ContainerDefinition, LogDriver};
use berth_core::agent_protocol::{
    AgentError, EnsureLogGroupRequest, LogBatch, LogLine, PutLogsRequest, PutLogsResponse,
};
use regex::Regex;
use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, oneshot};

/// CloudWatch's largest event (256 KiB) less its 26 bytes of per-event overhead.
pub const MAX_MESSAGE_BYTES: usize = 262_144 - 26;
/// Most events in one chunk. The agent's path to the server has no PutLogEvents batch
/// rules; a stream has one chunk in flight at a time, so its chunk size bounds its rate.
const MAX_CHUNK_EVENTS: usize = 40_000;
/// Largest chunk, counting 26 bytes per event.
const MAX_CHUNK_BYTES: usize = 4 * 1_048_576;
/// Largest request to the server (several streams' chunks); the server takes agent bodies
/// up to 16 MiB, and JSON adds about 40 bytes per event.
const MAX_REQUEST_BYTES: usize = 8 * 1_048_576;
/// Requests in flight at once (each with other streams' chunks): the agent encodes and
/// sends the next while the server commits the last, and the server's group commit puts
/// them in one transaction.
const MAX_REQUESTS_IN_FLIGHT: usize = 3;
/// Smallest buffer per stream, whatever `max-buffer-size` says (room for the largest event).
const MIN_BUFFER_BYTES: usize = 1_048_576;
/// Default `max-buffer-size` (ECS's current default).
pub const DEFAULT_MAX_BUFFER: usize = 10 * 1024 * 1024;
/// A pending multi-line event is sent after this long without a new line.
pub const MULTILINE_FLUSH: Duration = Duration::from_secs(1);
/// How long a stopping container waits for its output to be acknowledged.
pub const FLUSH_WAIT: Duration = Duration::from_secs(10);
/// How long the agent keeps retrying to reach the server to validate a log group.
const ENSURE_DEADLINE: Duration = Duration::from_secs(60);

/// A container's `awslogs` options (the ECS agent's view of them).
#[derive(Debug, Clone)]
pub struct AwslogsOptions {
    /// `awslogs-group`.
    pub group: String,
    /// `awslogs-region` (the task's region when absent).
    pub region: Option<String>,
    /// `awslogs-stream-prefix`.
    pub stream_prefix: Option<String>,
    /// `awslogs-create-group: "true"`.
    pub create_group: bool,
    /// The start of a multi-line event, from `awslogs-multiline-pattern` or
    /// `awslogs-datetime-format`.
    pub multiline: Option<Regex>,
    /// `mode: blocking`.
    pub blocking: bool,
    /// `max-buffer-size`, in bytes.
    pub max_buffer: usize,
}

impl AwslogsOptions {
    /// The options of a container whose `logConfiguration.logDriver` is `awslogs`; `None`
    /// for other drivers. Invalid options are an error worded like the ECS agent's.
    pub fn of(c: &ContainerDefinition) -> Result<Option<AwslogsOptions>, String> {
        let Some(lc) = c.log_configuration.as_ref() else {
            return Ok(None);
        };
        if lc.log_driver != Some(LogDriver::Awslogs) {
            return Ok(None);
        }
        let opts = lc.options.clone().unwrap_or_default();
        let get = |k: &str| opts.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let group = get("awslogs-group")
            .ok_or("awslogs-group is required")?
            .to_string();
        let multiline = match (
            get("awslogs-multiline-pattern"),
            get("awslogs-datetime-format"),
        ) {
            (Some(_), Some(_)) => {
                return Err(
                    "you cannot configure both awslogs-datetime-format and awslogs-multiline-pattern"
                        .into(),
                );
            }
            (Some(p), None) => Some(
                Regex::new(p)
                    .map_err(|e| format!("awslogs-multiline-pattern {p:?} is invalid: {e}"))?,
            ),
            (None, Some(f)) => Some(
                Regex::new(&format!("^{}", strftime_regex(f)))
                    .map_err(|e| format!("awslogs-datetime-format {f:?} is invalid: {e}"))?,
            ),
            (None, None) => None,
        };
        let blocking = match get("mode") {
            None | Some("non-blocking") => false,
            Some("blocking") => true,
            Some(other) => {
                return Err(format!(
                    "mode {other:?} is invalid: use \"blocking\" or \"non-blocking\""
                ));
            }
        };
        let max_buffer = match get("max-buffer-size") {
            None => DEFAULT_MAX_BUFFER,
            Some(s) => parse_size(s).ok_or_else(|| format!("max-buffer-size {s:?} is invalid"))?,
        };
        let create_group = match get("awslogs-create-group") {
            None => false,
            Some(v) => v
                .parse::<bool>()
                .map_err(|_| format!("awslogs-create-group {v:?} is invalid: use \"true\""))?,
        };
        Ok(Some(AwslogsOptions {
            group,
            region: get("awslogs-region").map(str::to_string),
            stream_prefix: get("awslogs-stream-prefix").map(str::to_string),
            create_group,
            multiline,
            blocking,
            max_buffer,
        }))
    }

    /// The stream a container writes to: `prefix/container-name/task-id`, or the runtime's
    /// id of the container without a prefix (`:` is not allowed in stream names, so
    /// `process:42` becomes `process-42`).
    pub fn stream_name(&self, container: &str, task_id: &str, runtime_id: &str) -> String {
        match &self.stream_prefix {
            Some(p) => format!("{p}/{container}/{task_id}"),
            None => runtime_id.replace([':', '*'], "-"),
        }
    }
}

/// `10m`, `512k`, `1g`, `4096` (bytes), as Docker reads sizes.
fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_suffix('b').unwrap_or(&s);
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1024),
        'm' => (&s[..s.len() - 1], 1024 * 1024),
        'g' => (&s[..s.len() - 1], 1024 * 1024 * 1024),
        _ => (s, 1),
    };
    let n: f64 = num.trim().parse().ok()?;
    if !(n.is_finite() && n > 0.0) {
        return None;
    }
    // Sizes are small positive numbers of units; rounding down to whole bytes is intended.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    Some((n * mult as f64) as usize)
}

/// A strftime format as a regular expression, as Docker's awslogs driver translates
/// `awslogs-datetime-format` (literal text is escaped).
pub fn strftime_regex(format: &str) -> String {
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push_str(&regex::escape(&c.to_string()));
            continue;
        }
        let Some(d) = chars.next() else {
            out.push('%');
            break;
        };
        let unknown;
        out.push_str(match d {
            'a' => "(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)",
            'A' => "(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)",
            'b' => "(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)",
            'B' => {
                "(?:January|February|March|April|May|June|July|August|September|October|November|December)"
            }
            'd' => "(?:0[1-9]|[12][0-9]|3[01])",
            'f' => r"(?:\d{6})",
            'H' => "(?:[01][0-9]|2[0-3])",
            'I' => "(?:0[0-9]|1[0-2])",
            'j' => "(?:00[1-9]|0[1-9][0-9]|[12][0-9][0-9]|3[0-5][0-9]|36[0-6])",
            'L' => r"(?:\d{3})",
            'm' => "(?:0[1-9]|1[0-2])",
            'M' => "(?:[0-5][0-9])",
            'p' => "(?:[AP]M)",
            'S' => "(?:[0-5][0-9]|60)",
            'U' | 'W' => "(?:[0-4][0-9]|5[0-3])",
            'w' => "(?:[0-6])",
            'y' => r"(?:\d{2})",
            'Y' => r"(?:\d{4})",
            'z' => r"(?:[+-]\d{4})",
            'Z' => "(?:[A-Z]{1,4}T)",
            '%' => "%",
            other => {
                unknown = regex::escape(&format!("%{other}"));
                &unknown
            }
        });
    }
    out
}

/// Where a stream's events go.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct StreamKey {
    region: Option<String>,
    group: String,
    stream: String,
}

/// A stream's chunk between its first send and the server's acknowledgement. A stream has
/// at most one, so its chunks are stored in order, and a resent chunk keeps its sequence
/// number, so the server stores it once.
struct InFlight {
    seq: u64,
    events: Arc<Vec<LogLine>>,
    bytes: usize,
    /// Part of a request still awaiting its answer (not to be sent again meanwhile).
    sending: bool,
}

#[derive(Default)]
struct Queue {
    pending: VecDeque<LogLine>,
    /// Bytes queued or in flight (the buffer `max-buffer-size` bounds).
    bytes: usize,
    /// The chunk sent and not yet acknowledged.
    in_flight: Option<InFlight>,
    /// Writers still open on this stream.
    writers: usize,
    /// Events dropped because the buffer was full (non-blocking mode).
    dropped: u64,
    /// Already warned that the server refuses this stream's events.
    refused: bool,
}

impl Queue {
    fn is_drained(&self) -> bool {
        self.pending.is_empty() && self.in_flight.is_none()
    }
}

#[derive(Default)]
struct State {
    streams: BTreeMap<StreamKey, Queue>,
    /// Sequence numbers of chunks: one counter for all streams, so that a stream name that
    /// comes back (a reused process id) never repeats a number the server has seen.
    next_seq: u64,
    identity: Option<(String, String)>,
    /// The last stream put in a request: the next request starts after it, so that streams
    /// take turns when a request cannot carry them all (none waits behind busier ones).
    cursor: Option<StreamKey>,
}

struct EnsureJob {
    req: EnsureLogGroupRequest,
    reply: oneshot::Sender<Result<(), String>>,
}

struct Inner {
    state: Mutex<State>,
    /// Something to send (events, or an identity).
    work: Notify,
    /// Room in a buffer, or a stream drained.
    room: Notify,
    producer: String,
    ensure_tx: mpsc::UnboundedSender<EnsureJob>,
    ensure_rx: Mutex<Option<mpsc::UnboundedReceiver<EnsureJob>>>,
}

/// The agent's log shipper (cheap to clone).
#[derive(Clone)]
pub struct LogShipper {
    inner: Arc<Inner>,
}

fn event_bytes(e: &LogLine) -> usize {
    e.message.len() + 26
}

impl Default for LogShipper {
    fn default() -> Self {
        LogShipper::new()
    }
}

impl LogShipper {
    /// A shipper whose producer name is unique to this process.
    pub fn new() -> LogShipper {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let (ensure_tx, ensure_rx) = mpsc::unbounded_channel();
        LogShipper {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    next_seq: 1,
                    ..State::default()
                }),
                work: Notify::new(),
                room: Notify::new(),
                producer: format!("agent-{}-{nanos}", std::process::id()),
                ensure_tx,
                ensure_rx: Mutex::new(Some(ensure_rx)),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The instance credential to ship with (after every registration).
    pub fn set_identity(&self, instance_arn: &str, instance_token: &str) {
        self.lock().identity = Some((instance_arn.to_string(), instance_token.to_string()));
        self.inner.work.notify_one();
    }

    /// Make sure `opts`' log group exists (creating it when `awslogs-create-group` says so)
    /// and create `streams`. The error is the server's, as `Exception: message`.
    pub async fn ensure_group(
        &self,
        opts: &AwslogsOptions,
        streams: Vec<String>,
    ) -> Result<(), String> {
        let (reply, wait) = oneshot::channel();
        let req = EnsureLogGroupRequest {
            container_instance_arn: String::new(),
            instance_token: String::new(),
            region: opts.region.clone(),
            group: opts.group.clone(),
            create: opts.create_group,
            streams,
        };
        self.inner
            .ensure_tx
            .send(EnsureJob { req, reply })
            .map_err(|_| "the agent is stopping".to_string())?;
        wait.await
            .unwrap_or_else(|_| Err("the agent is stopping".to_string()))
    }

    /// A writer for one container's output.
    pub fn writer(&self, opts: &AwslogsOptions, stream: String) -> StreamWriter {
        let key = StreamKey {
            region: opts.region.clone(),
            group: opts.group.clone(),
            stream,
        };
        self.lock().streams.entry(key.clone()).or_default().writers += 1;
        StreamWriter {
            shipper: self.clone(),
            key,
            multiline: opts.multiline.clone(),
            blocking: opts.blocking,
            max_buffer: opts.max_buffer.max(MIN_BUFFER_BYTES),
            partial: None,
            closed: false,
        }
    }

    /// Events queued or in flight, all streams.
    pub fn backlog(&self) -> usize {
        self.lock()
            .streams
            .values()
            .map(|q| q.pending.len() + q.in_flight.as_ref().map_or(0, |f| f.events.len()))
            .sum()
    }

    /// Ship until the future is dropped.
    pub async fn run<C: ControlPlane>(self, cp: C) {
        let ensure_rx = self
            .inner
            .ensure_rx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let ensurer = ensure_rx.map(|mut rx| {
            let me = self.clone();
            let cp = cp.clone();
            tokio::spawn(async move {
                while let Some(job) = rx.recv().await {
                    let me = me.clone();
                    let cp = cp.clone();
                    tokio::spawn(async move {
                        let r = me.ensure(&cp, job.req).await;
                        let _ = job.reply.send(r);
                    });
                }
            })
        });
        let _ensurer = AbortOnDrop(ensurer);
        let mut backoff = Duration::from_millis(100);
        let mut failures = 0u32;
        // After a failure nothing new is sent before this.
        let mut retry_at: Option<tokio::time::Instant> = None;
        let mut sending = tokio::task::JoinSet::new();
        loop {
            let notified = self.inner.work.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if retry_at.is_some_and(|t| t <= tokio::time::Instant::now()) {
                retry_at = None;
            }
            while retry_at.is_none() && sending.len() < MAX_REQUESTS_IN_FLIGHT {
                let Some((req, taken)) = self.take_request() else {
                    break;
                };
                let cp = cp.clone();
                sending.spawn(async move { (cp.put_logs(req).await, taken) });
            }
            let retry = async {
                match retry_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            let (result, taken) = tokio::select! {
                done = sending.join_next(), if !sending.is_empty() => match done {
                    Some(Ok(done)) => done,
                    // A send task panicked or was cancelled: its streams are sent again.
                    _ => {
                        self.release_all();
                        continue;
                    }
                },
                () = &mut notified => continue,
                () = retry => continue,
            };
            match result {
                Ok(resp) => {
                    if failures > 0 {
                        tracing::info!(
                            failures,
                            "log shipping recovered; the buffered events were sent"
                        );
                    }
                    failures = 0;
                    backoff = Duration::from_millis(100);
                    self.acknowledge(&taken, &resp);
                }
                Err(TransportError::Agent(AgentError::BadRequest(why))) => {
                    // The server will never take these; keeping them would block the streams.
                    tracing::error!(reason = %why, "the server refused shipped logs; dropping them");
                    self.acknowledge(
                        &taken,
                        &PutLogsResponse {
                            refused: vec![Some(why); taken.len()],
                        },
                    );
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures.is_power_of_two() {
                        tracing::warn!(error = %e, backlog = self.backlog(), "log shipping failed; retrying");
                    }
                    // The chunks stay in flight and are resent, same sequence numbers.
                    self.release(&taken);
                    retry_at = Some(tokio::time::Instant::now() + backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn ensure<C: ControlPlane>(
        &self,
        cp: &C,
        mut req: EnsureLogGroupRequest,
    ) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + ENSURE_DEADLINE;
        let mut backoff = Duration::from_millis(100);
        loop {
            let identity = self.lock().identity.clone();
            let last = match identity {
                Some((arn, token)) => {
                    req.container_instance_arn = arn;
                    req.instance_token = token;
                    match cp.ensure_log_group(req.clone()).await {
                        Ok(resp) => return resp.error.map_or(Ok(()), Err),
                        Err(e) => e.to_string(),
                    }
                }
                None => "the agent has not registered yet".to_string(),
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("cannot reach the Berth server: {last}"));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    /// The next request: every stream's unacknowledged chunk that no request in flight
    /// carries, or a new one from its queue. The chunks taken are marked as being sent until
    /// [`LogShipper::acknowledge`] or [`LogShipper::release`].
    fn take_request(&self) -> Option<(PutLogsRequest, Vec<(StreamKey, u64)>)> {
        let mut st = self.lock();
        let (arn, token) = st.identity.clone()?;
        let mut next_seq = st.next_seq;
        let mut batches = Vec::new();
        let mut taken = Vec::new();
        let mut size = 0usize;
        // Round robin from the stream after the last one served.
        let order: Vec<StreamKey> = match &st.cursor {
            Some(c) => st
                .streams
                .range((Bound::Excluded(c), Bound::Unbounded))
                .chain(st.streams.range(..=c))
                .map(|(k, _)| k.clone())
                .collect(),
            None => st.streams.keys().cloned().collect(),
        };
        for key in order {
            let Some(q) = st.streams.get_mut(&key) else {
                continue;
            };
            if q.in_flight.is_none() && !q.pending.is_empty() {
                let mut events = Vec::new();
                let mut bytes = 0;
                while let Some(e) = q.pending.front() {
                    let b = event_bytes(e);
                    if !events.is_empty()
                        && (events.len() >= MAX_CHUNK_EVENTS || bytes + b > MAX_CHUNK_BYTES)
                    {
                        break;
                    }
                    bytes += b;
                    if let Some(e) = q.pending.pop_front() {
                        events.push(e);
                    }
                }
                q.in_flight = Some(InFlight {
                    seq: next_seq,
                    events: Arc::new(events),
                    bytes,
                    sending: false,
                });
                next_seq += 1;
            }
            let Some(f) = q.in_flight.as_mut().filter(|f| !f.sending) else {
                continue;
            };
            if !batches.is_empty() && size + f.bytes > MAX_REQUEST_BYTES {
                // The rest go in the next request.
                break;
            }
            size += f.bytes;
            f.sending = true;
            batches.push(LogBatch {
                region: key.region.clone(),
                group: key.group.clone(),
                stream: key.stream.clone(),
                seq: f.seq,
                events: Arc::clone(&f.events),
            });
            taken.push((key.clone(), f.seq));
            st.cursor = Some(key);
        }
        st.next_seq = next_seq;
        if batches.is_empty() {
            return None;
        }
        Some((
            PutLogsRequest {
                container_instance_arn: arn,
                instance_token: token,
                producer: self.inner.producer.clone(),
                batches,
            },
            taken,
        ))
    }

    /// A request failed: its chunks stay in flight, to be sent again.
    fn release(&self, taken: &[(StreamKey, u64)]) {
        let mut st = self.lock();
        for (key, seq) in taken {
            if let Some(f) = st
                .streams
                .get_mut(key)
                .and_then(|q| q.in_flight.as_mut())
                .filter(|f| f.seq == *seq)
            {
                f.sending = false;
            }
        }
    }

    /// Every chunk in flight is to be sent again (a send task ended without an answer).
    fn release_all(&self) {
        let mut st = self.lock();
        for f in st.streams.values_mut().filter_map(|q| q.in_flight.as_mut()) {
            f.sending = false;
        }
    }

    fn acknowledge(&self, taken: &[(StreamKey, u64)], resp: &PutLogsResponse) {
        let more = {
            let mut st = self.lock();
            for (i, (key, seq)) in taken.iter().enumerate() {
                let Some(q) = st.streams.get_mut(key) else {
                    continue;
                };
                if q.in_flight.as_ref().is_some_and(|f| f.seq == *seq)
                    && let Some(f) = q.in_flight.take()
                {
                    q.bytes = q.bytes.saturating_sub(f.bytes);
                }
                if let Some(Some(why)) = resp.refused.get(i)
                    && !q.refused
                {
                    q.refused = true;
                    tracing::warn!(group = %key.group, stream = %key.stream, reason = %why, "the server refuses this stream's log events; they are dropped");
                }
            }
            st.streams.retain(|_, q| q.writers > 0 || !q.is_drained());
            st.streams.values().any(|q| !q.pending.is_empty())
        };
        self.inner.room.notify_waiters();
        if more {
            self.inner.work.notify_one();
        }
    }
}

/// Aborts a spawned task when dropped.
pub(crate) struct AbortOnDrop(pub(crate) Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(h) = &self.0 {
            h.abort();
        }
    }
}

/// Append `event` to `out`, as several events when its message is longer than CloudWatch
/// allows.
fn split_into(event: LogLine, out: &mut Vec<LogLine>) {
    if event.message.len() <= MAX_MESSAGE_BYTES {
        out.push(event);
        return;
    }
    let mut rest = event.message.as_str();
    while !rest.is_empty() {
        let mut cut = rest.len().min(MAX_MESSAGE_BYTES);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (piece, tail) = rest.split_at(cut);
        out.push(LogLine {
            timestamp_ms: event.timestamp_ms,
            message: piece.to_string(),
        });
        rest = tail;
    }
}

/// One container's output on its way to a log stream.
pub struct StreamWriter {
    shipper: LogShipper,
    key: StreamKey,
    multiline: Option<Regex>,
    blocking: bool,
    max_buffer: usize,
    /// A multi-line event still collecting lines.
    partial: Option<LogLine>,
    closed: bool,
}

impl StreamWriter {
    /// The stream's name.
    pub fn stream(&self) -> &str {
        &self.key.stream
    }

    /// Events of this stream dropped because the buffer was full (non-blocking mode).
    pub fn dropped(&self) -> u64 {
        self.shipper
            .lock()
            .streams
            .get(&self.key)
            .map_or(0, |q| q.dropped)
    }

    /// Whether a multi-line event is waiting for more lines.
    pub fn has_partial(&self) -> bool {
        self.partial.is_some()
    }

    /// One captured line. Empty lines are not events (CloudWatch refuses empty messages).
    pub async fn push(&mut self, timestamp_ms: i64, line: String) {
        self.push_all([(timestamp_ms, line)]).await;
    }

    /// Captured lines, in order: (capture time in ms, line).
    pub async fn push_all(&mut self, lines: impl IntoIterator<Item = (i64, String)>) {
        let mut events = Vec::new();
        for (timestamp_ms, line) in lines {
            self.collect(timestamp_ms, line, &mut events);
        }
        self.enqueue_all(events).await;
    }

    /// Turn a line into events (joining multi-line events), appended to `out`.
    fn collect(&mut self, timestamp_ms: i64, line: String, out: &mut Vec<LogLine>) {
        let Some(start) = &self.multiline else {
            if !line.is_empty() {
                split_into(
                    LogLine {
                        timestamp_ms,
                        message: line,
                    },
                    out,
                );
            }
            return;
        };
        let starts = start.is_match(&line);
        match self.partial.as_mut() {
            Some(p) if !starts && p.message.len() + 1 + line.len() <= MAX_MESSAGE_BYTES => {
                p.message.push('\n');
                p.message.push_str(&line);
            }
            _ => {
                if let Some(p) = self.partial.take()
                    && !p.message.trim_end_matches('\n').is_empty()
                {
                    split_into(p, out);
                }
                self.partial = Some(LogLine {
                    timestamp_ms,
                    message: line,
                });
            }
        }
    }

    /// Send a pending multi-line event now.
    pub async fn flush_partial(&mut self) {
        let mut out = Vec::new();
        if let Some(p) = self.partial.take()
            && !p.message.trim_end_matches('\n').is_empty()
        {
            split_into(p, &mut out);
        }
        self.enqueue_all(out).await;
    }

    /// Queue events under one lock per batch: past the buffer, drop them (non-blocking) or
    /// wait for room (blocking).
    async fn enqueue_all(&mut self, events: Vec<LogLine>) {
        let mut events = events.into_iter().peekable();
        while events.peek().is_some() {
            let room = self.shipper.inner.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            let mut queued = false;
            {
                let mut st = self.shipper.lock();
                if !st.streams.contains_key(&self.key) {
                    st.streams.insert(self.key.clone(), Queue::default());
                }
                let Some(q) = st.streams.get_mut(&self.key) else {
                    return;
                };
                while let Some(e) = events.peek() {
                    let size = event_bytes(e);
                    if q.bytes + size <= self.max_buffer {
                        q.bytes += size;
                        if let Some(e) = events.next() {
                            q.pending.push_back(e);
                        }
                        queued = true;
                    } else if self.blocking {
                        break;
                    } else {
                        events.next();
                        q.dropped += 1;
                        if q.dropped.is_power_of_two() {
                            tracing::warn!(group = %self.key.group, stream = %self.key.stream, dropped = q.dropped, "log buffer full (mode non-blocking): dropping events");
                        }
                    }
                }
            }
            if queued {
                self.shipper.inner.work.notify_one();
            }
            if events.peek().is_some() {
                room.await;
            }
        }
    }

    /// The container's output ended: send what is pending and wait (up to `wait`) until the
    /// server has all of it. Whatever is not acknowledged by then keeps being retried.
    pub async fn finish(mut self, wait: Duration) -> bool {
        self.flush_partial().await;
        let dropped = self.dropped();
        if dropped > 0 {
            tracing::warn!(group = %self.key.group, stream = %self.key.stream, dropped,
                "the container's output ended; events were dropped because the log buffer was full (mode non-blocking, max-buffer-size)");
        }
        self.close();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let room = self.shipper.inner.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            let drained = self
                .shipper
                .lock()
                .streams
                .get(&self.key)
                .is_none_or(Queue::is_drained);
            if drained {
                return true;
            }
            if tokio::time::timeout_at(deadline, room).await.is_err() {
                return false;
            }
        }
    }

    fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        let mut st = self.shipper.lock();
        if let Some(q) = st.streams.get_mut(&self.key) {
            q.writers = q.writers.saturating_sub(1);
            if q.writers == 0 && q.is_drained() {
                st.streams.remove(&self.key);
            }
        }
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::ecs::LogConfiguration;

    fn def(opts: &[(&str, &str)]) -> ContainerDefinition {
        ContainerDefinition {
            name: Some("app".into()),
            log_configuration: Some(LogConfiguration {
                log_driver: Some(LogDriver::Awslogs),
                options: Some(
                    opts.iter()
                        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                        .collect(),
                ),
                secret_options: None,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn options_and_stream_names() {
        let o = AwslogsOptions::of(&def(&[
            ("awslogs-group", "/ecs/x"),
            ("awslogs-region", "us-east-1"),
            ("awslogs-stream-prefix", "p"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(o.stream_name("app", "abc", "process:1"), "p/app/abc");
        assert!(!o.create_group);
        assert!(!o.blocking);
        assert_eq!(o.max_buffer, DEFAULT_MAX_BUFFER);
        let o = AwslogsOptions::of(&def(&[
            ("awslogs-group", "g"),
            ("awslogs-create-group", "true"),
            ("mode", "blocking"),
            ("max-buffer-size", "25m"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(o.stream_name("app", "abc", "process:12"), "process-12");
        assert!(o.create_group && o.blocking);
        assert_eq!(o.max_buffer, 25 * 1024 * 1024);
        assert!(AwslogsOptions::of(&def(&[])).is_err());
        assert!(
            AwslogsOptions::of(&def(&[
                ("awslogs-group", "g"),
                ("awslogs-multiline-pattern", "^x"),
                ("awslogs-datetime-format", "%Y")
            ]))
            .is_err()
        );
        assert!(AwslogsOptions::of(&def(&[("awslogs-group", "g"), ("mode", "fast")])).is_err());
        let none = ContainerDefinition::default();
        assert!(AwslogsOptions::of(&none).unwrap().is_none());
        assert_eq!(parse_size("1k"), Some(1024));
        assert_eq!(parse_size("1.5m"), Some(1_572_864));
        assert_eq!(parse_size("x"), None);
    }

    #[test]
    fn datetime_formats_become_anchored_patterns() {
        let re = Regex::new(&format!("^{}", strftime_regex("[%Y-%m-%d %H:%M:%S]"))).unwrap();
        assert!(re.is_match("[2026-11-29 10:00:59] started"));
        assert!(!re.is_match("  at frame 1"));
        assert!(!re.is_match("x [2026-11-29 10:00:59]"));
        let re = Regex::new(&format!("^{}", strftime_regex("%b %d, %Y"))).unwrap();
        assert!(re.is_match("Nov 29, 2026 boot"));
    }

    async fn drain(shipper: &LogShipper) -> Vec<LogBatch> {
        let Some((req, taken)) = shipper.take_request() else {
            return vec![];
        };
        shipper.acknowledge(
            &taken,
            &PutLogsResponse {
                refused: vec![None; taken.len()],
            },
        );
        req.batches
    }

    #[tokio::test]
    async fn blocking_writers_wait_for_room_and_lose_nothing() {
        let shipper = LogShipper::new();
        shipper.set_identity("arn", "t");
        let o = AwslogsOptions::of(&def(&[
            ("awslogs-group", "g"),
            ("mode", "blocking"),
            ("max-buffer-size", "1m"),
        ]))
        .unwrap()
        .unwrap();
        let mut w = shipper.writer(&o, "s".into());
        // 5 MiB of numbered lines: five times the buffer.
        let n = 25_000u32;
        let line = |i: u32| format!("{i:08} {}", "y".repeat(200));
        let writer = tokio::spawn(async move {
            for start in (0..n).step_by(1000) {
                w.push_all((start..start + 1000).map(|i| (i64::from(i), line(i))))
                    .await;
            }
            w
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !writer.is_finished(),
            "a full buffer must make the writer wait"
        );
        assert!(
            shipper
                .lock()
                .streams
                .values()
                .all(|q| q.bytes <= 1_048_576)
        );
        let mut got = Vec::new();
        while got.len() < n as usize {
            let batches = drain(&shipper).await;
            if batches.is_empty() {
                tokio::task::yield_now().await;
            }
            got.extend(
                batches
                    .into_iter()
                    .flat_map(|b| Arc::unwrap_or_clone(b.events)),
            );
        }
        let w = writer.await.unwrap();
        assert_eq!(w.dropped(), 0);
        assert_eq!(got.len(), n as usize);
        for (i, e) in (0..n).zip(&got) {
            assert_eq!(e.message, line(i));
        }
        assert!(w.finish(Duration::from_millis(10)).await);
    }

    #[tokio::test]
    async fn requests_in_flight_carry_other_streams_and_a_stream_stays_in_order() {
        let shipper = LogShipper::new();
        shipper.set_identity("arn", "t");
        let o = AwslogsOptions::of(&def(&[("awslogs-group", "g")]))
            .unwrap()
            .unwrap();
        let mut a = shipper.writer(&o, "a".into());
        let mut b = shipper.writer(&o, "b".into());
        a.push(1, "a1".into()).await;
        let (r1, t1) = shipper.take_request().unwrap();
        assert_eq!(r1.batches.len(), 1);
        // While stream a's chunk is out, a second request carries only stream b.
        a.push(2, "a2".into()).await;
        b.push(2, "b1".into()).await;
        let (r2, t2) = shipper.take_request().unwrap();
        assert_eq!(r2.batches.len(), 1);
        assert_eq!(r2.batches[0].stream, "b");
        assert!(shipper.take_request().is_none());
        // The second is acknowledged first; stream a's next chunk waits for its first.
        shipper.acknowledge(
            &t2,
            &PutLogsResponse {
                refused: vec![None],
            },
        );
        assert!(shipper.take_request().is_none());
        // The first failed: resent as it was, then a's next chunk with a higher number.
        shipper.release(&t1);
        let (again, t1) = shipper.take_request().unwrap();
        assert_eq!(again.batches, r1.batches);
        shipper.acknowledge(
            &t1,
            &PutLogsResponse {
                refused: vec![None],
            },
        );
        let (r3, _) = shipper.take_request().unwrap();
        assert_eq!(r3.batches[0].stream, "a");
        assert_eq!(r3.batches[0].events[0].message, "a2");
        assert!(r3.batches[0].seq > r1.batches[0].seq);
    }

    #[tokio::test]
    async fn streams_take_turns_when_a_request_cannot_carry_them_all() {
        let shipper = LogShipper::new();
        shipper.set_identity("arn", "t");
        let o = AwslogsOptions::of(&def(&[("awslogs-group", "g")]))
            .unwrap()
            .unwrap();
        // 20 streams of ~600 KiB each: one 8 MiB request carries 13 of them.
        let mut writers = Vec::new();
        for i in 0..20 {
            writers.push(shipper.writer(&o, format!("s{i:02}")));
        }
        let big = "x".repeat(200 * 1024);
        async fn fill(writers: &mut [StreamWriter], big: &str, ts: i64) {
            for w in writers {
                for k in 0..3 {
                    w.push(ts + k, big.to_string()).await;
                }
            }
        }
        fill(&mut writers, &big, 1).await;
        let streams = |r: &PutLogsRequest| -> Vec<String> {
            r.batches.iter().map(|b| b.stream.clone()).collect()
        };
        let (r1, t1) = shipper.take_request().unwrap();
        let first = streams(&r1);
        assert!(first.len() < 20, "{first:?}");
        shipper.acknowledge(
            &t1,
            &PutLogsResponse {
                refused: vec![None; first.len()],
            },
        );
        // Every stream has more; the ones the first request left out go first.
        fill(&mut writers, &big, 10).await;
        let (r2, _) = shipper.take_request().unwrap();
        let second = streams(&r2);
        for i in first.len()..20 {
            let s = format!("s{i:02}");
            assert!(
                second.contains(&s),
                "{s} waits behind busier streams: {second:?}"
            );
        }
        drop(writers);
    }

    #[tokio::test]
    async fn multiline_events_join_until_the_next_start() {
        let shipper = LogShipper::new();
        shipper.set_identity("arn", "t");
        let o = AwslogsOptions::of(&def(&[
            ("awslogs-group", "g"),
            ("awslogs-multiline-pattern", "^INFO|^ERROR"),
        ]))
        .unwrap()
        .unwrap();
        let mut w = shipper.writer(&o, "s".into());
        for (i, l) in ["INFO a", "ERROR b", "  at x", "  at y", "INFO c"]
            .iter()
            .enumerate()
        {
            w.push(i64::try_from(i).unwrap(), (*l).to_string()).await;
        }
        assert!(w.has_partial());
        w.flush_partial().await;
        let batches = drain(&shipper).await;
        let msgs: Vec<&str> = batches[0]
            .events
            .iter()
            .map(|e| e.message.as_str())
            .collect();
        assert_eq!(msgs, ["INFO a", "ERROR b\n  at x\n  at y", "INFO c"]);
        assert_eq!(batches[0].events[1].timestamp_ms, 1);
        assert!(w.finish(Duration::from_millis(10)).await);
        assert_eq!(shipper.backlog(), 0);
    }

    #[tokio::test]
    async fn chunks_are_resent_until_acknowledged_and_buffers_are_bounded() {
        let shipper = LogShipper::new();
        let o = AwslogsOptions::of(&def(&[("awslogs-group", "g"), ("max-buffer-size", "1m")]))
            .unwrap()
            .unwrap();
        let mut w = shipper.writer(&o, "s".into());
        // Nothing is sent before the agent has an identity.
        w.push(1, "one".into()).await;
        assert!(shipper.take_request().is_none());
        shipper.set_identity("arn", "t");
        let (first, taken) = shipper.take_request().unwrap();
        // While it is being sent, it is not sent again.
        w.push(2, "two".into()).await;
        assert!(shipper.take_request().is_none());
        // The request failed: the same chunk again, same sequence number.
        shipper.release(&taken);
        let (again, taken) = shipper.take_request().unwrap();
        assert_eq!(first.batches, again.batches);
        shipper.acknowledge(
            &taken,
            &PutLogsResponse {
                refused: vec![None],
            },
        );
        let (next, _) = shipper.take_request().unwrap();
        assert!(next.batches[0].seq > first.batches[0].seq);
        assert_eq!(next.batches[0].events[0].message, "two");
        // Non-blocking: past the buffer, events are dropped (and counted), not waited for.
        let big = "x".repeat(100_000);
        for i in 0..30 {
            w.push(i, big.clone()).await;
        }
        assert!(shipper.backlog() < 30);
        assert_eq!(w.dropped() + shipper.backlog() as u64, 30 + 1);
        // Long lines are split at CloudWatch's event size.
        let mut w2 = shipper.writer(&o, "t".into());
        w2.push(1, "y".repeat(MAX_MESSAGE_BYTES + 5)).await;
        let st = shipper.lock();
        let q = st.streams.iter().find(|(k, _)| k.stream == "t").unwrap().1;
        assert_eq!(q.pending.len(), 2);
        assert_eq!(q.pending[1].message.len(), 5);
    }
}
