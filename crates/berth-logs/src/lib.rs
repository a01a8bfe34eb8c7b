//! Berth's CloudWatch Logs: log groups, log streams and their events, stored in a SQLite
//! database of their own (`<data-dir>/logs.db`), and the Logs API operations over them.
//!
//! It owns that database, its writer thread (group commit: an acknowledged write is
//! durable) and bounded disk use (retention, a byte cap with oldest-first eviction, purging
//! of deleted streams). Everything is keyed by (account, region) like the ECS state.
//!
//! It must not touch the control-plane store or the world lock (a log flood must never slow
//! scheduling), and knows nothing of HTTP, tokio or containers. It does not read the clock:
//! callers pass `now`, and the shell decides when to [`Logs::sweep`].

mod chunk;
mod db;
mod error;
mod events;
mod groups;
pub mod pattern;
mod token;
mod writer;

pub use error::LogsError;
pub use events::{
    AppendChunk, DAY_MS, EVENT_OVERHEAD, MAX_AGE_MS, MAX_AHEAD_MS, MAX_BATCH_BYTES,
    MAX_EVENT_BYTES, MAX_SPAN_MS,
};
pub use groups::{RETENTION_DAYS, group_arn};

use berth_api::{ApiError, Service, decode, encode};
use berth_core::PartitionKey;
use berth_core::pagination::{self, TokenKey};
use std::path::PathBuf;
use std::sync::Arc;

/// Where and how logs are kept.
#[derive(Debug, Clone)]
pub struct Config {
    /// The database file, e.g. `<data-dir>/logs.db`.
    pub path: PathBuf,
    /// Upper bound on stored message bytes; past it the oldest events are evicted.
    pub max_stored_bytes: Option<u64>,
}

/// The log store (cheap to clone). Every method blocks: call it from a thread that may.
#[derive(Clone)]
pub struct Logs {
    inner: Arc<Inner>,
    /// Seals the paging tokens handed to clients (see [`Logs::with_token_key`]).
    token_key: TokenKey,
}

struct Inner {
    writer: writer::Writer,
    readers: db::ReaderPool,
}

/// What one [`Logs::sweep`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Events past their group's retention.
    pub expired_events: usize,
    /// Events of deleted streams and groups.
    pub purged_events: usize,
    /// Message bytes freed.
    pub bytes: i64,
}

/// The Logs operations Berth serves.
pub const OPERATIONS: &[&str] = &[
    "CreateLogGroup",
    "DeleteLogGroup",
    "DescribeLogGroups",
    "CreateLogStream",
    "DeleteLogStream",
    "DescribeLogStreams",
    "PutLogEvents",
    "GetLogEvents",
    "FilterLogEvents",
    "PutRetentionPolicy",
    "DeleteRetentionPolicy",
    "TagResource",
    "UntagResource",
    "ListTagsForResource",
    "TagLogGroup",
    "UntagLogGroup",
    "ListTagsLogGroup",
];

impl Logs {
    /// Open (creating if needed) the database and start its writer.
    pub fn open(config: &Config) -> Result<Logs, LogsError> {
        let conn = db::open_writer(&config.path)?;
        let checkpoints = db::open_checkpointer(&config.path)?;
        let writer = writer::Writer::spawn(conn, checkpoints, config.max_stored_bytes)?;
        Ok(Logs {
            inner: Arc::new(Inner {
                writer,
                readers: db::ReaderPool::new(&config.path),
            }),
            token_key: TokenKey::default(),
        })
    }

    /// Seal paging tokens (`nextToken`, `nextForwardToken`, `nextBackwardToken`) with
    /// `key`, the server's secret: clients get opaque tokens bound to the operation and
    /// the partition, and a forged or edited one is `InvalidParameterException`. Without
    /// this, a fixed public key is used (tests).
    pub fn with_token_key(mut self, key: TokenKey) -> Logs {
        self.token_key = key;
        self
    }

    /// Open a client's token for `operation` in `key`'s partition.
    fn open_token(
        &self,
        key: &PartitionKey,
        operation: &str,
        token: Option<String>,
    ) -> Result<Option<String>, ApiError> {
        let Some(token) = token else { return Ok(None) };
        let scope = pagination::scope("logs", operation, key);
        // GetLogEvents' tokens keep CloudWatch's `f/` or `b/` direction prefix.
        let (prefix, sealed) = match token.split_once('/') {
            Some((p, rest)) if p.len() == 1 => (Some(p), rest),
            _ => (None, token.as_str()),
        };
        let plain = self
            .token_key
            .open(&scope, sealed)
            .filter(|plain| {
                prefix.is_none_or(|p| plain.strip_prefix(p).is_some_and(|r| r.starts_with('/')))
            })
            .ok_or_else(|| {
                ApiError::from(LogsError::invalid("The specified nextToken is invalid."))
            })?;
        Ok(Some(plain))
    }

    /// Seal a token for the client (the inverse of [`Logs::open_token`]).
    fn seal_token(
        &self,
        key: &PartitionKey,
        operation: &str,
        token: Option<String>,
    ) -> Option<String> {
        let token = token?;
        let scope = pagination::scope("logs", operation, key);
        let sealed = self.token_key.seal(&scope, &token);
        Some(match token.split_once('/') {
            Some((p, _)) if p.len() == 1 => format!("{p}/{sealed}"),
            _ => sealed,
        })
    }

    /// Run one Logs API operation for partition `key` at `now_ms`. Writes are durable
    /// before this returns; a refused request changes nothing.
    pub fn handle(
        &self,
        key: &PartitionKey,
        operation: &str,
        body: &[u8],
        now_ms: i64,
    ) -> Result<Vec<u8>, ApiError> {
        macro_rules! write {
            ($f:path) => {{
                let req = decode(Service::Logs, body)?;
                let key = key.clone();
                let resp = self
                    .inner
                    .writer
                    .run(move |conn, ctx| $f(conn, ctx, &key, req, now_ms))?;
                Ok(encode(&resp))
            }};
        }
        macro_rules! read {
            ($f:path) => {{
                let req = decode(Service::Logs, body)?;
                let resp = self.inner.readers.read(|conn| $f(conn, key, req))?;
                Ok(encode(&resp))
            }};
        }
        // A paged read: the client's token is opened before, the next ones sealed after.
        macro_rules! paged {
            ($req:ty, $f:path, $($out:ident),+) => {{
                let mut req: $req = decode(Service::Logs, body)?;
                req.next_token = self.open_token(key, operation, req.next_token)?;
                let mut resp = self.inner.readers.read(|conn| $f(conn, key, req))?;
                $(resp.$out = self.seal_token(key, operation, resp.$out);)+
                Ok(encode(&resp))
            }};
        }
        use berth_api::logs as api;
        match operation {
            "CreateLogGroup" => write!(groups::create_group),
            "DeleteLogGroup" => write!(groups::delete_group),
            "DescribeLogGroups" => paged!(
                api::DescribeLogGroupsRequest,
                groups::describe_groups,
                next_token
            ),
            "CreateLogStream" => write!(groups::create_stream),
            "DeleteLogStream" => write!(groups::delete_stream),
            "DescribeLogStreams" => paged!(
                api::DescribeLogStreamsRequest,
                groups::describe_streams,
                next_token
            ),
            "PutLogEvents" => write!(events::put),
            "GetLogEvents" => paged!(
                api::GetLogEventsRequest,
                events::get,
                next_forward_token,
                next_backward_token
            ),
            "FilterLogEvents" => paged!(api::FilterLogEventsRequest, events::filter, next_token),
            "PutRetentionPolicy" => write!(groups::put_retention),
            "DeleteRetentionPolicy" => write!(groups::delete_retention),
            "TagResource" => write!(groups::tag_resource),
            "UntagResource" => write!(groups::untag_resource),
            "ListTagsForResource" => read!(groups::list_tags_for_resource),
            "TagLogGroup" => write!(groups::tag_log_group),
            "UntagLogGroup" => write!(groups::untag_log_group),
            "ListTagsLogGroup" => read!(groups::list_tags_log_group),
            other => Err(ApiError::not_implemented(Service::Logs, other)),
        }
    }

    /// Make sure `group` exists in `key` (creating it when `create`), and create those of
    /// `streams` that do not exist. A missing group without `create` is
    /// [`LogsError::GroupNotFound`].
    pub fn ensure_group(
        &self,
        key: &PartitionKey,
        group: &str,
        create: bool,
        streams: &[String],
        now_ms: i64,
    ) -> Result<(), LogsError> {
        let key = key.clone();
        let group = group.to_string();
        let streams = streams.to_vec();
        self.inner
            .writer
            .run(move |conn, _| events::ensure(conn, &key, &group, create, &streams, now_ms))
    }

    /// Store chunks an agent shipped, in one durable commit. Each chunk succeeds or fails
    /// on its own (a deleted group fails its chunks); the outer error means none was stored.
    pub fn append(
        &self,
        producer: &str,
        chunks: Vec<AppendChunk>,
        now_ms: i64,
    ) -> Result<Vec<Result<(), LogsError>>, LogsError> {
        let producer = producer.to_string();
        self.inner.writer.run(move |conn, ctx| {
            let mut results = Vec::with_capacity(chunks.len());
            for chunk in &chunks {
                conn.execute_batch("SAVEPOINT chunk")?;
                let mut one = writer::WriteCtx::default();
                let r = events::append(conn, &mut one, &producer, chunk, now_ms);
                if r.is_ok() {
                    conn.execute_batch("RELEASE chunk")?;
                    ctx.bytes_delta += one.bytes_delta;
                } else {
                    conn.execute_batch("ROLLBACK TO chunk; RELEASE chunk")?;
                }
                results.push(r);
            }
            Ok(results)
        })
    }

    /// Enforce retention (events older than their group's policy, by timestamp) and purge
    /// the events of deleted streams and groups, in small transactions so that writes go
    /// on in between.
    pub fn sweep(&self, now_ms: i64) -> Result<SweepReport, LogsError> {
        let mut report = SweepReport::default();
        let retained = self.inner.readers.read(groups::retained_groups)?;
        for (group_id, days) in retained {
            let cutoff = now_ms.saturating_sub(i64::from(days).saturating_mul(DAY_MS));
            loop {
                let r = self.inner.writer.run(move |conn, ctx| {
                    let r = events::expire(conn, group_id, cutoff, events::SWEEP_CHUNKS)?;
                    ctx.bytes_delta -= r.bytes;
                    Ok(r)
                })?;
                report.expired_events += r.events;
                report.bytes += r.bytes;
                if r.chunks < events::SWEEP_CHUNKS {
                    break;
                }
            }
        }
        let doomed: Vec<i64> = self.inner.readers.read(|conn| {
            let mut stmt = conn.prepare_cached("SELECT stream_id FROM doomed_streams")?;
            let ids = stmt
                .query_map([], |r| r.get(0))?
                .collect::<Result<Vec<i64>, _>>()?;
            Ok(ids)
        })?;
        for stream_id in doomed {
            loop {
                let r = self.inner.writer.run(move |conn, ctx| {
                    let r = events::purge(conn, stream_id, events::SWEEP_CHUNKS)?;
                    ctx.bytes_delta -= r.bytes;
                    Ok(r)
                })?;
                report.purged_events += r.events;
                report.bytes += r.bytes;
                if r.chunks < events::SWEEP_CHUNKS {
                    break;
                }
            }
        }
        if report.expired_events + report.purged_events > 0 {
            // Hand the freed pages back to the file system.
            self.inner.writer.run(|conn, _| {
                conn.execute_batch("PRAGMA incremental_vacuum")?;
                Ok(())
            })?;
        }
        Ok(report)
    }

    /// Message bytes currently stored (all partitions, including deleted streams not yet
    /// purged).
    pub fn stored_bytes(&self) -> Result<i64, LogsError> {
        self.inner.readers.read(writer::stored_total)
    }

    /// Stop the writer after what is queued (later calls fail with `Unavailable`).
    pub fn close(&self) {
        self.inner.writer.close();
    }
}
