//! Log events: PutLogEvents with CloudWatch's batch rules, GetLogEvents with its tokens,
//! FilterLogEvents across a group's streams, and the agent's append path.

use crate::LogsError;
use crate::chunk;
use crate::groups::{self, GroupRow, StreamRow};
use crate::pattern::FilterPattern;
use crate::token::{self, Boundary, Direction};
use crate::writer::WriteCtx;
use berth_api::logs;
use berth_core::PartitionKey;
use rusqlite::{Connection, params};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::ops::ControlFlow;

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

/// Chunks removed or rewritten per transaction when sweeping.
pub(crate) const SWEEP_CHUNKS: i64 = 64;

/// Store one chunk of a stream's events (sorted here).
pub(crate) fn insert_chunk(
    conn: &Connection,
    group_id: i64,
    stream_id: i64,
    ingest_ms: i64,
    events: &mut [chunk::Event<'_>],
) -> Result<(), LogsError> {
    let Some((sum, data)) = chunk::encode(events) else {
        return Ok(());
    };
    conn.prepare_cached(
        "INSERT INTO chunks (group_id, stream_id, min_ts, max_ts, first_event_id, count, bytes, ingest_ms, data)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        group_id,
        stream_id,
        sum.min_ts,
        sum.max_ts,
        sum.first_event_id,
        sum.count,
        sum.bytes,
        ingest_ms,
        data
    ])?;
    Ok(())
}

/// Insert events (in capture order) into a stream and keep its statistics. Returns the
/// bytes stored.
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
    let n = i64::try_from(events.len()).unwrap_or(i64::MAX);
    // Event ids, consecutive in capture order; never reused.
    let first_id: i64 = conn
        .prepare_cached("UPDATE event_ids SET next = next + ?1 RETURNING next - ?1")?
        .query_row(params![n], |r| r.get(0))?;
    let mut bytes = 0i64;
    let mut first = i64::MAX;
    let mut last = i64::MIN;
    for (ts, message) in events {
        bytes += i64::try_from(message.len()).unwrap_or(i64::MAX);
        first = first.min(*ts);
        last = last.max(*ts);
    }
    for mut run in chunk::cut(events, first_id) {
        insert_chunk(conn, g.id, s.id, now_ms, &mut run)?;
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

/// Which events a scan reads.
#[derive(Debug, Clone, Copy)]
enum Scope {
    Stream(i64),
    Group(i64),
}

/// A chunk a scan has yet to open.
#[derive(Debug, Clone, Copy)]
struct Pending {
    id: i64,
    stream_id: i64,
    /// The scan-order key of the first event it can hold.
    key: (i64, i64),
    ingest_ms: i64,
}

/// Visit the events of `scope` with `lo <= ts < hi` on one side of `from` (after it going
/// forward, at or before it going backward), nearest first, in (timestamp, id) order, until
/// `visit` breaks. Only chunks of streams `want` accepts are opened.
///
/// Chunks are read in the order of their first possible event (forward: by `min_ts`,
/// backward: by `max_ts` descending) and merged: an event is visited once no chunk yet
/// unopened can hold one before it. As a chunk spans at most [`chunk::CHUNK_SPAN_MS`], the
/// index ranges read stay short wherever `from` is.
#[allow(clippy::too_many_arguments)]
fn scan(
    conn: &Connection,
    scope: Scope,
    from: Boundary,
    direction: Direction,
    lo: i64,
    hi: i64,
    want: &dyn Fn(i64) -> bool,
    visit: &mut dyn FnMut(EventRow) -> ControlFlow<()>,
) -> Result<(), LogsError> {
    let (col, scope_id) = match scope {
        Scope::Stream(id) => ("stream_id", id),
        Scope::Group(id) => ("group_id", id),
    };
    let forward = direction == Direction::Forward;
    // In scan order, smallest first: backward reverses both parts (`!` keeps every i64).
    let key = |ts: i64, id: i64| if forward { (ts, id) } else { (!ts, !id) };
    let cols = "id, stream_id, min_ts, max_ts, ingest_ms";
    let (sql, a, b, c) = if forward {
        let start = lo.max(from.ts);
        if start >= hi {
            return Ok(());
        }
        (
            format!(
                "SELECT {cols} FROM chunks WHERE {col} = ?1 AND min_ts >= ?2 AND min_ts < ?3
                   AND max_ts >= ?4 ORDER BY min_ts"
            ),
            start.saturating_sub(chunk::CHUNK_SPAN_MS),
            hi,
            start,
        )
    } else {
        // The latest timestamp wanted, inclusive.
        let end = from.ts.min(hi.saturating_sub(1));
        if end < lo {
            return Ok(());
        }
        (
            format!(
                "SELECT {cols} FROM chunks WHERE {col} = ?1 AND max_ts >= ?2 AND max_ts <= ?3
                   AND min_ts <= ?4 ORDER BY max_ts DESC"
            ),
            lo,
            end.saturating_add(chunk::CHUNK_SPAN_MS),
            end,
        )
    };
    let in_range = |ts: i64, id: i64| {
        (lo..hi).contains(&ts)
            && if forward {
                (ts, id) > (from.ts, from.id)
            } else {
                (ts, id) <= (from.ts, from.id)
            }
    };
    let mut chunks = conn.prepare_cached(&sql)?;
    let mut data = conn.prepare_cached("SELECT data FROM chunks WHERE id = ?1")?;
    let mut rows = chunks.query(params![scope_id, a, b, c])?;
    let mut next_pending = || -> Result<Option<Pending>, LogsError> {
        let Some(r) = rows.next()? else {
            return Ok(None);
        };
        let (min_ts, max_ts): (i64, i64) = (r.get(2)?, r.get(3)?);
        Ok(Some(Pending {
            id: r.get(0)?,
            stream_id: r.get(1)?,
            key: if forward {
                (min_ts, i64::MIN)
            } else {
                (!max_ts, i64::MIN)
            },
            ingest_ms: r.get(4)?,
        }))
    };
    // Open chunks: the event each is at, and the rest of its events in scan order.
    let mut heads: Vec<Option<EventRow>> = Vec::new();
    let mut rests: Vec<std::vec::IntoIter<EventRow>> = Vec::new();
    let mut heap: BinaryHeap<Reverse<((i64, i64), usize)>> = BinaryHeap::new();
    let mut pending = next_pending()?;
    loop {
        while let Some(p) = pending
            && heap.peek().is_none_or(|Reverse((k, _))| p.key <= *k)
        {
            if want(p.stream_id) {
                let blob: Vec<u8> = data.query_row(params![p.id], |r| r.get(0))?;
                let body = chunk::open(&blob)?;
                let mut events: Vec<EventRow> = chunk::decode(&body)?
                    .into_iter()
                    .filter(|e| in_range(e.ts, e.id))
                    .map(|e| EventRow {
                        id: e.id,
                        ts: e.ts,
                        ingest_ms: p.ingest_ms,
                        message: e.message.to_string(),
                        stream_id: p.stream_id,
                    })
                    .collect();
                if !forward {
                    events.reverse();
                }
                let mut rest = events.into_iter();
                if let Some(first) = rest.next() {
                    heap.push(Reverse((key(first.ts, first.id), heads.len())));
                    heads.push(Some(first));
                    rests.push(rest);
                }
            }
            pending = next_pending()?;
        }
        let Some(Reverse((_, i))) = heap.pop() else {
            break;
        };
        let Some(row) = heads.get_mut(i).and_then(Option::take) else {
            break;
        };
        if let Some(next) = rests.get_mut(i).and_then(Iterator::next) {
            heap.push(Reverse((key(next.ts, next.id), i)));
            heads[i] = Some(next);
        }
        if visit(row).is_break() {
            break;
        }
    }
    Ok(())
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
    let mut events: Vec<EventRow> = Vec::new();
    let mut bytes = 0usize;
    scan(
        conn,
        Scope::Stream(s.id),
        from,
        direction,
        lo,
        hi,
        &|_| true,
        &mut |row| {
            bytes += row.message.len() + EVENT_OVERHEAD;
            if bytes > MAX_PAGE_BYTES && !events.is_empty() {
                return ControlFlow::Break(());
            }
            events.push(row);
            if events.len() >= limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    )?;
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
    if all_streams || !streams.is_empty() {
        scan(
            conn,
            Scope::Group(g.id),
            from,
            Direction::Forward,
            lo,
            hi,
            &|id| streams.contains_key(&id),
            &mut |row| {
                let at = Boundary {
                    ts: row.ts,
                    id: row.id,
                };
                scanned += 1;
                if pattern.matches(&row.message) {
                    let size = row.message.len() + EVENT_OVERHEAD;
                    if out.len() >= limit || (bytes + size > MAX_PAGE_BYTES && !out.is_empty()) {
                        // One more match exists: the page ends before it.
                        next = Some(from);
                        return ControlFlow::Break(());
                    }
                    bytes += size;
                    out.push(logs::FilteredLogEvent {
                        event_id: Some(token::event_id(row.ts, row.id)),
                        ingestion_time: Some(row.ingest_ms),
                        log_stream_name: streams.get(&row.stream_id).cloned(),
                        message: Some(row.message),
                        timestamp: Some(row.ts),
                    });
                }
                from = at;
                if scanned >= MAX_FILTER_SCAN {
                    // Enough work for one call: the caller resumes with the token.
                    next = Some(from);
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            },
        )?;
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

/// What one step of a sweep did.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Removed {
    /// Chunks deleted or rewritten.
    pub(crate) chunks: i64,
    /// Events removed.
    pub(crate) events: usize,
    /// Their message bytes.
    pub(crate) bytes: i64,
}

/// Remove the events of group `group_id` older than `cutoff_ms` from up to `limit` chunks:
/// chunks entirely older go, a chunk that straddles the cutoff is rewritten with the rest.
pub(crate) fn expire(
    conn: &Connection,
    group_id: i64,
    cutoff_ms: i64,
    limit: i64,
) -> Result<Removed, LogsError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, stream_id, max_ts, count, bytes FROM chunks
         WHERE group_id = ?1 AND min_ts < ?2 ORDER BY min_ts LIMIT ?3",
    )?;
    let doomed: Vec<(i64, i64, i64, i64, i64)> = stmt
        .query_map(params![group_id, cutoff_ms, limit], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut removed = Removed::default();
    let mut accounts = Vec::new();
    for (id, stream_id, max_ts, count, bytes) in doomed {
        removed.chunks += 1;
        let blob: Option<Vec<u8>> = if max_ts < cutoff_ms {
            None
        } else {
            Some(
                conn.prepare_cached("SELECT data FROM chunks WHERE id = ?1")?
                    .query_row(params![id], |r| r.get(0))?,
            )
        };
        let body = blob.as_deref().map(chunk::open).transpose()?;
        let events = body.as_deref().map(chunk::decode).transpose()?;
        let mut kept: Vec<chunk::Event<'_>> = events
            .iter()
            .flatten()
            .copied()
            .filter(|e| e.ts >= cutoff_ms)
            .collect();
        let Some((sum, data)) = chunk::encode(&mut kept) else {
            // All of it is older.
            conn.prepare_cached("DELETE FROM chunks WHERE id = ?1")?
                .execute(params![id])?;
            removed.events += usize::try_from(count).unwrap_or(0);
            accounts.push((group_id, stream_id, bytes));
            continue;
        };
        let gone = events.map_or(0, |e| e.len()) - kept.len();
        conn.prepare_cached(
            "UPDATE chunks SET min_ts = ?2, max_ts = ?3, first_event_id = ?4, count = ?5,
                bytes = ?6, data = ?7 WHERE id = ?1",
        )?
        .execute(params![
            id,
            sum.min_ts,
            sum.max_ts,
            sum.first_event_id,
            sum.count,
            sum.bytes,
            data
        ])?;
        removed.events += gone;
        accounts.push((group_id, stream_id, bytes - sum.bytes));
    }
    removed.bytes = crate::writer::account_removed(conn, &accounts)?;
    Ok(removed)
}

/// Delete up to `limit` chunks of a deleted stream; forget the stream when none are left.
pub(crate) fn purge(conn: &Connection, stream_id: i64, limit: i64) -> Result<Removed, LogsError> {
    let r = crate::writer::delete_returning(
        conn,
        "DELETE FROM chunks WHERE id IN
            (SELECT id FROM chunks WHERE stream_id = ?1 LIMIT ?2)
         RETURNING group_id, stream_id, bytes, count",
        params![stream_id, limit],
    )?;
    if r.chunks < limit {
        conn.execute(
            "DELETE FROM doomed_streams WHERE stream_id = ?1",
            params![stream_id],
        )?;
    }
    Ok(r)
}
