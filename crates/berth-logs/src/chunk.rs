//! Chunks: a run of one stream's events stored as one row, so that ingest costs a row and
//! its index entries per ~1 MiB instead of per event.
//!
//! A chunk's events are sorted by (timestamp, event id) and encoded as
//! `FORMAT, zigzag(base ts), zigzag(base id)` followed, per event, by
//! `varint(ts - previous ts), zigzag(id - previous id), varint(len), message bytes`.
//! Every event keeps its own event id (ids of a chunk written at once are consecutive, but
//! chunks migrated from the per-event table or rewritten by retention need not be), so
//! eventIds and paging tokens, which are (timestamp, id) positions, mean the same as before.
//!
//! A chunk whose encoding zstd shrinks by an eighth or more is stored compressed instead:
//! `FORMAT_ZSTD, varint(length of the rest of the plain chunk)` and a zstd frame of that
//! rest (everything after its format byte). Log lines repeat themselves, so this typically
//! divides the bytes the database writes (twice: WAL, then checkpoint) several times over;
//! chunks that do not shrink stay plain. Both formats are read, whatever was written.

use crate::LogsError;
use berth_core::varint::{put as put_varint, unzigzag, zigzag};
use std::borrow::Cow;

/// A chunk is cut when its messages would pass this many bytes.
pub(crate) const CHUNK_BYTES: usize = 1 << 20;
/// ... or when its events would span more than this (readers rely on it: a chunk holding
/// an event at `t` starts after `t - CHUNK_SPAN_MS`).
pub(crate) const CHUNK_SPAN_MS: i64 = 60_000;

const FORMAT: u8 = 1;
/// Format byte of a compressed chunk (see the module docs).
const FORMAT_ZSTD: u8 = 2;
/// zstd level: the fastest of the regular ones; logs compress well even so.
const ZSTD_LEVEL: i32 = 1;
/// Largest plain chunk a compressed one may claim to hold (a chunk holds at most
/// `CHUNK_BYTES` of messages or one event, plus a few bytes per event): bounds what a
/// damaged row can make a reader allocate.
const MAX_PLAIN_BYTES: u64 = 64 << 20;

/// One event as a chunk stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Event<'a> {
    pub(crate) ts: i64,
    pub(crate) id: i64,
    pub(crate) message: &'a str,
}

/// What a chunk row says about its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Summary {
    pub(crate) min_ts: i64,
    pub(crate) max_ts: i64,
    pub(crate) first_event_id: i64,
    pub(crate) count: i64,
    pub(crate) bytes: i64,
}

/// Encode `events` (sorted here by timestamp, then id). `None` when there are none.
pub(crate) fn encode(events: &mut [Event<'_>]) -> Option<(Summary, Vec<u8>)> {
    events.sort_unstable_by_key(|e| (e.ts, e.id));
    let first = events.first()?;
    let mut summary = Summary {
        min_ts: first.ts,
        max_ts: first.ts,
        first_event_id: first.id,
        count: 0,
        bytes: 0,
    };
    let payload: usize = events.iter().map(|e| e.message.len() + 4).sum();
    let mut out = Vec::with_capacity(payload + 24);
    out.push(FORMAT);
    put_varint(&mut out, zigzag(first.ts));
    put_varint(&mut out, zigzag(first.id));
    let (mut ts, mut id) = (first.ts, first.id);
    for e in events.iter() {
        summary.max_ts = e.ts;
        summary.first_event_id = summary.first_event_id.min(e.id);
        summary.count += 1;
        summary.bytes += i64::try_from(e.message.len()).unwrap_or(i64::MAX);
        // Sorted: the timestamp never goes back.
        put_varint(&mut out, e.ts.abs_diff(ts));
        put_varint(&mut out, zigzag(e.id.wrapping_sub(id)));
        put_varint(&mut out, e.message.len() as u64);
        out.extend_from_slice(e.message.as_bytes());
        (ts, id) = (e.ts, e.id);
    }
    Some((summary, compress(out)))
}

/// `plain` (a FORMAT chunk) compressed, when that saves an eighth or more.
fn compress(plain: Vec<u8>) -> Vec<u8> {
    let body = &plain[1..];
    match zstd::bulk::compress(body, ZSTD_LEVEL) {
        Ok(z) if z.len() + 11 <= body.len() - body.len() / 8 => {
            let mut out = Vec::with_capacity(z.len() + 11);
            out.push(FORMAT_ZSTD);
            put_varint(&mut out, body.len() as u64);
            out.extend_from_slice(&z);
            out
        }
        _ => plain,
    }
}

fn corrupt() -> LogsError {
    LogsError::Unavailable("log storage failed: a stored chunk of log events is corrupt".into())
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, LogsError> {
        berth_core::varint::get(self.data, &mut self.at).ok_or_else(corrupt)
    }

    fn bytes(&mut self, n: u64) -> Result<&'a [u8], LogsError> {
        let n = usize::try_from(n).map_err(|_| corrupt())?;
        let end = self.at.checked_add(n).ok_or_else(corrupt)?;
        let b = self.data.get(self.at..end).ok_or_else(corrupt)?;
        self.at = end;
        Ok(b)
    }
}

/// A stored chunk's events, still encoded: what [`decode`] reads. Borrowed from a plain
/// chunk, decompressed from a compressed one. A damaged chunk is an error, never a panic.
pub(crate) fn open(data: &[u8]) -> Result<Cow<'_, [u8]>, LogsError> {
    let mut r = Reader { data, at: 0 };
    match r.bytes(1)? {
        [FORMAT] => Ok(Cow::Borrowed(&data[1..])),
        [FORMAT_ZSTD] => {
            let len = r.varint()?;
            if len > MAX_PLAIN_BYTES {
                return Err(corrupt());
            }
            let len = usize::try_from(len).map_err(|_| corrupt())?;
            let plain = zstd::bulk::decompress(&data[r.at..], len).map_err(|_| corrupt())?;
            if plain.len() != len {
                return Err(corrupt());
            }
            Ok(Cow::Owned(plain))
        }
        _ => Err(corrupt()),
    }
}

/// Decode the events of an [`open`]ed chunk, in (timestamp, id) order. A damaged chunk is
/// an error, never a panic.
pub(crate) fn decode(body: &[u8]) -> Result<Vec<Event<'_>>, LogsError> {
    let mut r = Reader { data: body, at: 0 };
    let mut ts = unzigzag(r.varint()?);
    let mut id = unzigzag(r.varint()?);
    let mut out = Vec::new();
    while r.at < body.len() {
        let dts = i64::try_from(r.varint()?).map_err(|_| corrupt())?;
        ts = ts.checked_add(dts).ok_or_else(corrupt)?;
        id = id.wrapping_add(unzigzag(r.varint()?));
        let len = r.varint()?;
        let message = std::str::from_utf8(r.bytes(len)?).map_err(|_| corrupt())?;
        out.push(Event { ts, id, message });
    }
    Ok(out)
}

/// Split events in capture order (`(ts, message)`, ids `first_id..`) into runs that each
/// make one chunk: at most [`CHUNK_BYTES`] of messages (or one event) and at most
/// [`CHUNK_SPAN_MS`] between their earliest and latest timestamps.
pub(crate) fn cut<'a>(events: &[(i64, &'a str)], first_id: i64) -> Vec<Vec<Event<'a>>> {
    let mut out: Vec<Vec<Event<'a>>> = Vec::new();
    let mut run: Vec<Event<'a>> = Vec::new();
    let (mut lo, mut hi, mut bytes) = (0i64, 0i64, 0usize);
    for (i, &(ts, message)) in events.iter().enumerate() {
        let id = first_id.saturating_add(i64::try_from(i).unwrap_or(i64::MAX));
        let fits = run.is_empty()
            || (bytes + message.len() <= CHUNK_BYTES
                && ts.max(hi).saturating_sub(ts.min(lo)) <= CHUNK_SPAN_MS);
        if !fits {
            out.push(std::mem::take(&mut run));
        }
        if run.is_empty() {
            (lo, hi, bytes) = (ts, ts, 0);
        }
        lo = lo.min(ts);
        hi = hi.max(ts);
        bytes += message.len();
        run.push(Event { ts, id, message });
    }
    if !run.is_empty() {
        out.push(run);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Open and decode, owning the messages.
    fn read(data: &[u8]) -> Result<Vec<(i64, i64, String)>, LogsError> {
        let body = open(data)?;
        Ok(decode(&body)?
            .into_iter()
            .map(|e| (e.ts, e.id, e.message.to_string()))
            .collect())
    }

    fn owned(events: &[Event<'_>]) -> Vec<(i64, i64, String)> {
        events
            .iter()
            .map(|e| (e.ts, e.id, e.message.to_string()))
            .collect()
    }

    #[test]
    fn chunks_round_trip_sorted() {
        let msgs = ["b", "", "héllo", "a", "zz"];
        let mut events: Vec<Event<'_>> = vec![
            Event {
                ts: 5,
                id: 10,
                message: msgs[0],
            },
            Event {
                ts: -3,
                id: 11,
                message: msgs[1],
            },
            Event {
                ts: 5,
                id: 7,
                message: msgs[2],
            },
            Event {
                ts: i64::MAX,
                id: 12,
                message: msgs[3],
            },
            Event {
                ts: i64::MIN + 1,
                id: i64::MAX,
                message: msgs[4],
            },
        ];
        let (summary, data) = encode(&mut events).unwrap();
        assert_eq!(data[0], FORMAT, "too small to gain from compression");
        let body = open(&data).unwrap();
        let back = decode(&body).unwrap();
        assert_eq!(back, events);
        let mut sorted = back.clone();
        sorted.sort_by_key(|e| (e.ts, e.id));
        assert_eq!(back, sorted);
        assert_eq!(summary.min_ts, i64::MIN + 1);
        assert_eq!(summary.max_ts, i64::MAX);
        assert_eq!(summary.first_event_id, 7);
        assert_eq!(summary.count, 5);
        assert_eq!(summary.bytes, 1 + 6 + 1 + 2);
        assert!(encode(&mut []).is_none());
    }

    #[test]
    fn damaged_chunks_are_errors() {
        let mut events = vec![Event {
            ts: 1,
            id: 1,
            message: "hello",
        }];
        let (_, data) = encode(&mut events).unwrap();
        for n in 0..data.len() {
            let _ = read(&data[..n]);
        }
        assert!(read(&[]).is_err());
        assert!(read(&[9]).is_err());
        assert!(read(&data[..data.len() - 1]).is_err());
        let mut bad = data.clone();
        *bad.last_mut().unwrap() = 0xff;
        assert!(read(&bad).is_err(), "not UTF-8");
        assert!(
            read(&[
                FORMAT, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
            ])
            .is_err()
        );
    }

    #[test]
    fn repetitive_chunks_are_stored_compressed_and_read_back() {
        let lines: Vec<String> = (0..5_000)
            .map(|i| format!("{i:012} 1764500000000000000 {}", "x".repeat(166)))
            .collect();
        let mut events: Vec<Event<'_>> = lines
            .iter()
            .enumerate()
            .map(|(i, m)| Event {
                ts: 1_764_500_000_000 + i64::try_from(i / 100).unwrap(),
                id: 1_000 + i64::try_from(i).unwrap(),
                message: m,
            })
            .collect();
        let (summary, data) = encode(&mut events).unwrap();
        assert_eq!(data[0], FORMAT_ZSTD);
        let plain: i64 = summary.bytes;
        assert!(
            i64::try_from(data.len()).unwrap() * 4 < plain,
            "{} bytes for {plain} of messages",
            data.len()
        );
        assert_eq!(read(&data).unwrap(), owned(&events));
        // Damaged compressed chunks are errors, not panics.
        for n in 0..data.len().min(200) {
            assert!(read(&data[..n]).is_err());
        }
        let mut bad = data.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x55;
        let _ = read(&bad);
        // A claimed plain size beyond the bound allocates nothing and fails.
        let mut huge = vec![FORMAT_ZSTD];
        put_varint(&mut huge, MAX_PLAIN_BYTES + 1);
        huge.extend_from_slice(&data[2..]);
        assert!(read(&huge).is_err());
        // A claimed size that is not the real one fails.
        let mut wrong = vec![FORMAT_ZSTD];
        put_varint(&mut wrong, 10);
        let rest_at = {
            let mut r = Reader { data: &data, at: 1 };
            r.varint().unwrap();
            r.at
        };
        wrong.extend_from_slice(&data[rest_at..]);
        assert!(read(&wrong).is_err());
    }

    #[test]
    fn runs_are_cut_by_bytes_and_span() {
        let big = "x".repeat(CHUNK_BYTES / 2);
        let events = [
            (0, big.as_str()),
            (1, big.as_str()),
            (2, big.as_str()),
            (CHUNK_SPAN_MS + 2, "late"),
            (1, "early again"),
        ];
        let runs = cut(&events, 100);
        let shape: Vec<Vec<(i64, i64)>> = runs
            .iter()
            .map(|r| r.iter().map(|e| (e.ts, e.id)).collect())
            .collect();
        assert_eq!(
            shape,
            vec![
                vec![(0, 100), (1, 101)],
                vec![(2, 102), (CHUNK_SPAN_MS + 2, 103)],
                vec![(1, 104)],
            ]
        );
    }
}
