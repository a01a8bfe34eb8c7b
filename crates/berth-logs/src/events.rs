//! Log events: PutLogEvents with CloudWatch's batch rules, GetLogEvents with its tokens,
//! FilterLogEvents across a group's streams, and the agent's append path.

use crate::LogsError;
use crate::groups::{self, GroupRow, StreamRow};
use crate::pattern::FilterPattern;
use crate::token::{self, Boundary, Direction};
use crate::writer::WriteCtx;
use berth_api::logs;
use berth_core::PartitionKey;
use rusqlite::{Connection, params};
use std::collections::HashMap;

/// One day in milliseconds.
pub const DAY_MS: i64 = 24 * 60 * 60 * 1000;
/// Events older than this are refused (`tooOldLogEventEndIndex`).
pub const MAX_AGE_MS: i64 = 14 * DAY_MS;
/// Events further ahead than this are refused (`tooNewLogEventStartIndex`).
pub const MAX_AHEAD_MS: i64 = 2 * 60 * 60 * 1000;
/// A PutLogEvents batch may not span more than this.
pub const MAX_SPAN_MS: i64 = DAY_MS;
/// Bytes CloudWatch counts per event on top of its message.
pub const EVENT_OVERHEAD: usize = 26;
/// Largest PutLogEvents batch (messages plus overhead).
pub const MAX_BATCH_BYTES: usize = 1_048_576;
/// Largest event (message plus overhead).
pub const MAX_EVENT_BYTES: usize = 262_144;
/// Most events per GetLogEvents / FilterLogEvents page (and the default).
const MAX_PAGE_EVENTS: usize = 10_000;
/// Largest GetLogEvents / FilterLogEvents page, as CloudWatch bounds it (1 MB).
const MAX_PAGE_BYTES: usize = 1_048_576;
/// Most events FilterLogEvents examines in one call before answering with a token.
const MAX_FILTER_SCAN: usize = 200_000;
/// Rows read per query while filtering.
const FILTER_CHUNK: usize = 2_000;

/// Rows inserted by one multi-row INSERT.
const ROWS_PER_INSERT: usize = 100;

static MULTI_INSERT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let row = "(?, ?, ?, ?, ?)";
    format!(
        "INSERT INTO events (group_id, stream_id, ts, ingest_ms, message) VALUES {}",
        vec![row; ROWS_PER_INSERT].join(", ")
    )
});

/// Insert events into a stream and keep its statistics. Returns the bytes stored.
fn insert_events(
    conn: &Connection,
    g: &GroupRow,
    s: &StreamRow,
    events: &[(i64, &str)],
    now_ms: i64,
) -> Result<i64, LogsError> {
    if events.is_empty() {
        return Ok(0);
    }
    // Many rows per statement: fewer statement executions (and AUTOINCREMENT bookkeeping).
    let mut many = conn.prepare_cached(&MULTI_INSERT)?;
    let mut one = conn.prepare_cached(
        "INSERT INTO events (group_id, stream_id, ts, ingest_ms, message) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let mut bytes = 0i64;
    let mut first = i64::MAX;
    let mut last = i64::MIN;
    for (ts, message) in events {
        bytes += i64::try_from(message.len()).unwrap_or(i64::MAX);
        first = first.min(*ts);
        last = last.max(*ts);
    }
    let mut chunks = events.chunks_exact(ROWS_PER_INSERT);
    for chunk in chunks.by_ref() {
        let mut args: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(ROWS_PER_INSERT * 5);
        for (ts, message) in chunk {
            args.extend_from_slice(&[&g.id, &s.id, ts, &now_ms, message]);
        }
        many.execute(args.as_slice())?;
    }
    for (ts, message) in chunks.remainder() {
        one.execute(params![g.id, s.id, ts, now_ms, message])?;
    }
    conn.prepare_cached(
        "UPDATE streams SET
            first_event_ms = min(ifnull(first_event_ms, ?2), ?2),
            last_event_ms = max(ifnull(last_event_ms, ?3), ?3),
            last_ingestion_ms = ?4,
            stored_bytes = stored_bytes + ?5
         WHERE id = ?1",
    )?
    .execute(params![s.id, first, last, now_ms, bytes])?;
    conn.prepare_cached("UPDATE groups SET stored_bytes = stored_bytes + ?2 WHERE id = ?1")?
        .execute(params![g.id, bytes])?;
    Ok(bytes)
}

/// PutLogEvents.
pub(crate) fn put(
    conn: &Connection,
    ctx: &mut WriteCtx,
    key: &PartitionKey,
    req: logs::PutLogEventsRequest,
    now_ms: i64,
) -> Result<logs::PutLogEventsResponse, LogsError> {
    let g = groups::group(conn, key, req.log_group_name.as_deref().unwrap_or_default())?;
    let s = groups::stream(
        conn,
        g.id,
        req.log_stream_name.as_deref().unwrap_or_default(),
    )?;
    let input = req.log_events.unwrap_or_default();
    let events: Vec<(i64, &str)> = input
        .iter()
        .map(|e| {
            (
                e.timestamp.unwrap_or_default(),
                e.message.as_deref().unwrap_or_default(),
            )
        })
        .collect();
    let mut total = 0usize;
    for (_, m) in &events {
        let size = m.len() + EVENT_OVERHEAD;
        if size > MAX_EVENT_BYTES {
            return Err(LogsError::invalid(format!(
                "Log event too large: {size} bytes exceeds limit of {MAX_EVENT_BYTES}"
            )));
        }
        total += size;
    }
    if total > MAX_BATCH_BYTES {
        return Err(LogsError::invalid(format!(
            "Upload too large: {total} bytes exceeds limit of {MAX_BATCH_BYTES}"
        )));
    }
    if events.windows(2).any(|w| w[1].0 < w[0].0) {
        return Err(LogsError::invalid(
            "Log events in a single PutLogEvents request must be in chronological order.",
        ));
    }
    if let (Some(first), Some(last)) = (events.first(), events.last())
        && last.0 - first.0 > MAX_SPAN_MS
    {
        return Err(LogsError::invalid(
            "The batch of log events in a single PutLogEvents request cannot span more than 24 hours.",
        ));
    }
    // The batch is chronological, so refused events are a prefix (too old, expired) and a
    // suffix (too new).
    let too_old = events.partition_point(|(ts, _)| *ts < now_ms - MAX_AGE_MS);
    let retention_cutoff = g
        .retention_days
        .map_or(i64::MIN, |d| now_ms - i64::from(d) * DAY_MS);
    let expired =
        events.partition_point(|(ts, _)| *ts < now_ms - MAX_AGE_MS || *ts < retention_cutoff);
    let too_new = events.partition_point(|(ts, _)| *ts <= now_ms + MAX_AHEAD_MS);
    let accepted = &events[expired.max(too_old)..too_new.max(expired)];
    ctx.bytes_delta += insert_events(conn, &g, &s, accepted, now_ms)?;
    conn.prepare_cached("UPDATE streams SET upload_seq = upload_seq + 1 WHERE id = ?1")?
        .execute(params![s.id])?;
    let index = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    let rejected = (too_old > 0 || expired > too_old || too_new < events.len()).then(|| {
        logs::RejectedLogEventsInfo {
            too_old_log_event_end_index: (too_old > 0).then(|| index(too_old)),
            expired_log_event_end_index: (expired > too_old).then(|| index(expired)),
            too_new_log_event_start_index: (too_new < events.len()).then(|| index(too_new)),
        }
    });
    Ok(logs::PutLogEventsResponse {
        next_sequence_token: Some(token::sequence_token(s.upload_seq + 2)),
        rejected_log_events_info: rejected,
        rejected_entity_info: None,
    })
}

#[derive(Debug)]
struct EventRow {
    id: i64,
    ts: i64,
    ingest_ms: i64,
    message: String,
    stream_id: i64,
}

fn event_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventRow> {
    Ok(EventRow {
        id: r.get(0)?,
        ts: r.get(1)?,
        ingest_ms: r.get(2)?,
        message: r.get(3)?,
        stream_id: r.get(4)?,
    })
}

/// Which events a scan reads.
#[derive(Debug, Clone, Copy)]
enum Scope {
    Stream(i64),
    Group(i64),
}

/// Up to `limit` events of `scope` with `lo <= ts < hi` on one side of `from`, nearest
/// first. Two index seeks (the rest of `from`'s millisecond, then the later or earlier ones)
/// so that many events sharing a timestamp never make a page rescan its predecessors.
fn fetch(
    conn: &Connection,
    scope: Scope,
    from: Boundary,
    direction: Direction,
    lo: i64,
    hi: i64,
    limit: usize,
) -> Result<Vec<EventRow>, LogsError> {
    let (col, id) = match scope {
        Scope::Stream(id) => ("stream_id", id),
        Scope::Group(id) => ("group_id", id),
    };
    let lim = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let mut out = Vec::new();
    // The rest of `from`'s millisecond, when it is in range.
    if (lo..hi).contains(&from.ts) {
        let sql = match direction {
            Direction::Forward => format!(
                "SELECT id, ts, ingest_ms, message, stream_id FROM events
                 WHERE {col} = ?1 AND ts = ?2 AND id > ?3 ORDER BY id LIMIT ?4"
            ),
            Direction::Backward => format!(
                "SELECT id, ts, ingest_ms, message, stream_id FROM events
                 WHERE {col} = ?1 AND ts = ?2 AND id <= ?3 ORDER BY id DESC LIMIT ?4"
            ),
        };
        let mut stmt = conn.prepare_cached(&sql)?;
        for row in stmt.query_map(params![id, from.ts, from.id, lim(limit)], event_row)? {
            out.push(row?);
        }
    }
    let left = limit.saturating_sub(out.len());
    if left == 0 {
        return Ok(out);
    }
    // Then the milliseconds beyond it: [start, end).
    let (start, end, order) = match direction {
        Direction::Forward => (lo.max(from.ts.saturating_add(1)), hi, "ts, id"),
        Direction::Backward => (lo, hi.min(from.ts), "ts DESC, id DESC"),
    };
    if start >= end {
        return Ok(out);
    }
    let sql = format!(
        "SELECT id, ts, ingest_ms, message, stream_id FROM events
         WHERE {col} = ?1 AND ts >= ?2 AND ts < ?3 ORDER BY {order} LIMIT ?4"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    for row in stmt.query_map(params![id, start, end, lim(left)], event_row)? {
        out.push(row?);
    }
    Ok(out)
}

fn page_limit(requested: Option<i32>) -> usize {
    requested
        .and_then(|n| usize::try_from(n).ok())
        .map_or(MAX_PAGE_EVENTS, |n| n.clamp(1, MAX_PAGE_EVENTS))
}

/// GetLogEvents: one stream, oldest first within a page; tokens are positions.
pub(crate) fn get(
    conn: &Connection,
    key: &PartitionKey,
    req: logs::GetLogEventsRequest,
) -> Result<logs::GetLogEventsResponse, LogsError> {
    let name = groups::group_ref(
        key,
        req.log_group_name.as_deref(),
        req.log_group_identifier.as_deref(),
    )?;
    let g = groups::group(conn, key, &name)?;
    let s = groups::stream(
        conn,
        g.id,
        req.log_stream_name.as_deref().unwrap_or_default(),
    )?;
    let lo = req.start_time.unwrap_or(i64::MIN);
    let hi = req.end_time.unwrap_or(i64::MAX);
    let limit = page_limit(req.limit);
    let (direction, from) = match req.next_token.as_deref() {
        Some(t) => token::decode_get(t, s.id)?,
        None if req.start_from_head.unwrap_or(false) => (
            Direction::Forward,
            // Every event at or after `lo` (ids start at 1).
            Boundary { ts: lo, id: 0 },
        ),
        None => (
            Direction::Backward,
            // Every event before `hi`.
            Boundary {
                ts: hi.saturating_sub(1),
                id: i64::MAX,
            },
        ),
    };
    let rows = fetch(conn, Scope::Stream(s.id), from, direction, lo, hi, limit)?;
    let mut events: Vec<EventRow> = Vec::new();
    let mut bytes = 0usize;
    for row in rows {
        bytes += row.message.len() + EVENT_OVERHEAD;
        if bytes > MAX_PAGE_BYTES && !events.is_empty() {
            break;
        }
        events.push(row);
    }
    if direction == Direction::Backward {
        events.reverse();
    }
    let (forward, backward) = match (events.first(), events.last()) {
        (Some(first), Some(last)) => (
            Boundary {
                ts: last.ts,
                id: last.id,
            },
            // Just before the first event: every event strictly before it.
            Boundary {
                ts: first.ts,
                id: first.id - 1,
            },
        ),
        // Nothing there: both tokens stay where the caller was.
        _ => (from, from),
    };
    Ok(logs::GetLogEventsResponse {
        events: Some(
            events
                .into_iter()
                .map(|e| logs::OutputLogEvent {
                    timestamp: Some(e.ts),
                    message: Some(e.message),
                    ingestion_time: Some(e.ingest_ms),
                })
                .collect(),
        ),
        next_forward_token: Some(token::encode_get(Direction::Forward, forward, s.id)),
        next_backward_token: Some(token::encode_get(Direction::Backward, backward, s.id)),
    })
}

/// FilterLogEvents: a group's events (optionally some of its streams) in (timestamp,
/// ingestion) order, matching a filter pattern.
pub(crate) fn filter(
    conn: &Connection,
    key: &PartitionKey,
    req: logs::FilterLogEventsRequest,
) -> Result<logs::FilterLogEventsResponse, LogsError> {
    let name = groups::group_ref(
        key,
        req.log_group_name.as_deref(),
        req.log_group_identifier.as_deref(),
    )?;
    if req.log_stream_names.is_some() && req.log_stream_name_prefix.is_some() {
        return Err(LogsError::invalid(
            "logStreamNames and logStreamNamePrefix are mutually exclusive parameters.",
        ));
    }
    let pattern = FilterPattern::parse(req.filter_pattern.as_deref().unwrap_or_default())?;
    let g = groups::group(conn, key, &name)?;
    if let (Some(start), Some(end)) = (req.start_time, req.end_time)
        && end < start
    {
        return Err(LogsError::invalid(
            "endTime must be greater than or equal to startTime.",
        ));
    }
    let lo = req.start_time.unwrap_or(i64::MIN);
    let hi = req.end_time.map_or(i64::MAX, |e| e.saturating_add(1));
    let limit = page_limit(req.limit);
    let mut from = Boundary { ts: lo, id: 0 };
    if let Some(t) = req.next_token.as_deref() {
        from = from.max(token::decode_filter(t, g.id)?);
    }
    // The streams searched, by id.
    let names_json = req
        .log_stream_names
        .as_ref()
        .map(|n| serde_json::to_string(n).unwrap_or_else(|_| "[]".into()));
    let mut stmt = conn.prepare_cached(
        "SELECT id, name FROM streams WHERE group_id = ?1
           AND (?2 IS NULL OR name IN (SELECT value FROM json_each(?2)))
           AND (?3 IS NULL OR substr(name, 1, length(?3)) = ?3)",
    )?;
    let streams: HashMap<i64, String> = stmt
        .query_map(params![g.id, names_json, req.log_stream_name_prefix], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<Result<_, _>>()?;
    let all_streams = req.log_stream_names.is_none() && req.log_stream_name_prefix.is_none();
    let mut out: Vec<logs::FilteredLogEvent> = Vec::new();
    let mut bytes = 0usize;
    let mut scanned = 0usize;
    let mut next: Option<Boundary> = None;
    'scan: while all_streams || !streams.is_empty() {
        let rows = fetch(
            conn,
            Scope::Group(g.id),
            from,
            Direction::Forward,
            lo,
            hi,
            FILTER_CHUNK,
        )?;
        let exhausted = rows.len() < FILTER_CHUNK;
        for row in rows {
            let at = Boundary {
                ts: row.ts,
                id: row.id,
            };
            scanned += 1;
            let Some(stream) = streams.get(&row.stream_id) else {
                from = at;
                continue;
            };
            if !pattern.matches(&row.message) {
                from = at;
                continue;
            }
            let size = row.message.len() + EVENT_OVERHEAD;
            if out.len() >= limit || (bytes + size > MAX_PAGE_BYTES && !out.is_empty()) {
                // One more match exists: the page ends before it.
                next = Some(from);
                break 'scan;
            }
            bytes += size;
            out.push(logs::FilteredLogEvent {
                event_id: Some(token::event_id(row.ts, row.id)),
                ingestion_time: Some(row.ingest_ms),
                log_stream_name: Some(stream.clone()),
                message: Some(row.message),
                timestamp: Some(row.ts),
            });
            from = at;
        }
        if exhausted {
            break;
        }
        if scanned >= MAX_FILTER_SCAN {
            // Enough work for one call: the caller resumes with the token.
            next = Some(from);
            break;
        }
    }
    Ok(logs::FilterLogEventsResponse {
        events: Some(out),
        next_token: next.map(|b| token::encode_filter(b, g.id)),
        searched_log_streams: Some(Vec::new()),
    })
}

/// Make sure a group exists (creating it when `create`), and create the streams that do
/// not exist yet.
pub(crate) fn ensure(
    conn: &Connection,
    key: &PartitionKey,
    group: &str,
    create: bool,
    streams: &[String],
    now_ms: i64,
) -> Result<(), LogsError> {
    let g = match groups::find_group(conn, key, group)? {
        Some(g) => g,
        None if create => {
            groups::insert_group(
                conn,
                key,
                group,
                "STANDARD",
                None,
                &Default::default(),
                now_ms,
            )?;
            groups::group(conn, key, group)?
        }
        None => return Err(LogsError::GroupNotFound),
    };
    for s in streams {
        if groups::find_stream(conn, g.id, s)?.is_none() {
            groups::insert_stream(conn, g.id, s, now_ms)?;
        }
    }
    Ok(())
}

/// Events an agent ships for one stream.
#[derive(Debug, Clone)]
pub struct AppendChunk {
    /// The partition the group lives in.
    pub key: PartitionKey,
    /// Log group (must exist).
    pub group: String,
    /// Log stream (created if missing).
    pub stream: String,
    /// The producer's sequence number for this chunk: a chunk whose number is not above the
    /// last one stored for the stream by the same producer was stored already and is
    /// acknowledged without being stored again.
    pub seq: u64,
    /// (timestamp ms, message), in capture order.
    pub events: Vec<(i64, String)>,
}

/// Store one chunk (the agent path: no batch rules, duplicates of a resent chunk dropped).
pub(crate) fn append(
    conn: &Connection,
    ctx: &mut WriteCtx,
    producer: &str,
    chunk: &AppendChunk,
    now_ms: i64,
) -> Result<(), LogsError> {
    let g = groups::group(conn, &chunk.key, &chunk.group)?;
    let s = match groups::find_stream(conn, g.id, &chunk.stream)? {
        Some(s) => s,
        None => {
            groups::insert_stream(conn, g.id, &chunk.stream, now_ms)?;
            groups::stream(conn, g.id, &chunk.stream)?
        }
    };
    let seq = i64::try_from(chunk.seq).unwrap_or(i64::MAX);
    if s.producer.as_deref() == Some(producer) && s.producer_seq.is_some_and(|last| seq <= last) {
        return Ok(());
    }
    let events: Vec<(i64, &str)> = chunk
        .events
        .iter()
        .filter(|(_, m)| !m.is_empty())
        .map(|(ts, m)| (*ts, m.as_str()))
        .collect();
    ctx.bytes_delta += insert_events(conn, &g, &s, &events, now_ms)?;
    conn.prepare_cached(
        "UPDATE streams SET producer = ?2, producer_seq = ?3, upload_seq = upload_seq + 1 WHERE id = ?1",
    )?
    .execute(params![s.id, producer, seq])?;
    Ok(())
}

/// Delete up to `limit` events of group `group_id` older than `cutoff_ms`. Returns how many
/// and their bytes.
pub(crate) fn expire(
    conn: &Connection,
    group_id: i64,
    cutoff_ms: i64,
    limit: i64,
) -> Result<(usize, i64), LogsError> {
    crate::writer::delete_returning(
        conn,
        "DELETE FROM events WHERE id IN
            (SELECT id FROM events WHERE group_id = ?1 AND ts < ?2 ORDER BY ts, id LIMIT ?3)
         RETURNING group_id, stream_id, length(CAST(message AS BLOB))",
        params![group_id, cutoff_ms, limit],
    )
}

/// Delete up to `limit` events of a deleted stream; forget the stream when none are left.
pub(crate) fn purge(
    conn: &Connection,
    stream_id: i64,
    limit: i64,
) -> Result<(usize, i64), LogsError> {
    let r = crate::writer::delete_returning(
        conn,
        "DELETE FROM events WHERE id IN
            (SELECT id FROM events WHERE stream_id = ?1 LIMIT ?2)
         RETURNING group_id, stream_id, length(CAST(message AS BLOB))",
        params![stream_id, limit],
    )?;
    if i64::try_from(r.0).unwrap_or(i64::MAX) < limit {
        conn.execute(
            "DELETE FROM doomed_streams WHERE stream_id = ?1",
            params![stream_id],
        )?;
    }
    Ok(r)
}
