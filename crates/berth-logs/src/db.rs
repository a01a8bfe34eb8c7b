//! The logs database: schema, migrations, and the pool of read connections.
//!
//! One SQLite file in WAL mode. The writer thread owns the only write connection; readers
//! take a connection from the pool and read a consistent snapshot while the writer goes on.

use crate::{LogsError, chunk};
use rusqlite::{Connection, OpenFlags};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// One schema migration: SQL, or Rust for what SQL cannot do.
enum Migration {
    Sql(&'static str),
    Rust(fn(&Connection) -> Result<(), LogsError>),
}

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[Migration] = &[
    // 1: groups, streams, events. AUTOINCREMENT so that ids are never reused: event ids
    // are eventIds and paging positions, stream and group ids key events of deleted ones
    // until they are purged.
    Migration::Sql(
        "CREATE TABLE groups (
        id             INTEGER PRIMARY KEY AUTOINCREMENT,
        account        TEXT NOT NULL,
        region         TEXT NOT NULL,
        name           TEXT NOT NULL,
        created_ms     INTEGER NOT NULL,
        retention_days INTEGER,
        class          TEXT NOT NULL,
        kms_key_id     TEXT,
        tags           TEXT NOT NULL,
        stored_bytes   INTEGER NOT NULL DEFAULT 0,
        UNIQUE (account, region, name)
    );
    CREATE TABLE streams (
        id                INTEGER PRIMARY KEY AUTOINCREMENT,
        group_id          INTEGER NOT NULL,
        name              TEXT NOT NULL,
        created_ms        INTEGER NOT NULL,
        first_event_ms    INTEGER,
        last_event_ms     INTEGER,
        last_ingestion_ms INTEGER,
        stored_bytes      INTEGER NOT NULL DEFAULT 0,
        upload_seq        INTEGER NOT NULL DEFAULT 0,
        producer          TEXT,
        producer_seq      INTEGER,
        UNIQUE (group_id, name)
    );
    CREATE TABLE events (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        group_id  INTEGER NOT NULL,
        stream_id INTEGER NOT NULL,
        ts        INTEGER NOT NULL,
        ingest_ms INTEGER NOT NULL,
        message   TEXT NOT NULL
    );
    CREATE INDEX events_by_stream ON events (stream_id, ts, id);
    CREATE INDEX events_by_group ON events (group_id, ts, id);
    CREATE TABLE doomed_streams (
        stream_id INTEGER PRIMARY KEY,
        bytes     INTEGER NOT NULL
    );",
    ),
    // 2: events in chunks (see `chunk`): one row per ~1 MiB of a stream's events instead of
    // one per event. The events of version 1 move into chunks, keeping their ids.
    Migration::Rust(to_chunks),
];

const CHUNKS_SCHEMA: &str = "
    CREATE TABLE chunks (
        id             INTEGER PRIMARY KEY,
        group_id       INTEGER NOT NULL,
        stream_id      INTEGER NOT NULL,
        min_ts         INTEGER NOT NULL,
        max_ts         INTEGER NOT NULL,
        first_event_id INTEGER NOT NULL,
        count          INTEGER NOT NULL,
        bytes          INTEGER NOT NULL,
        ingest_ms      INTEGER NOT NULL,
        data           BLOB NOT NULL
    );
    CREATE INDEX chunks_by_stream ON chunks (stream_id, min_ts);
    CREATE INDEX chunks_by_stream_end ON chunks (stream_id, max_ts);
    CREATE INDEX chunks_by_group ON chunks (group_id, min_ts);
    CREATE TABLE event_ids (next INTEGER NOT NULL);";

/// Migration 2: create the chunks and move every event into them, in id order (so chunk
/// ids follow ingestion, which eviction relies on), a chunk per run of a stream's events
/// with the same ingestion time, cut as new chunks are.
fn to_chunks(conn: &Connection) -> Result<(), LogsError> {
    conn.execute_batch(CHUNKS_SCHEMA)?;
    let last: i64 = conn.query_row(
        "SELECT max(ifnull((SELECT max(id) FROM events), 0),
                    ifnull((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0))",
        [],
        |r| r.get(0),
    )?;
    conn.execute("INSERT INTO event_ids (next) VALUES (?1)", [last + 1])?;
    struct Run {
        group_id: i64,
        ingest_ms: i64,
        lo: i64,
        hi: i64,
        bytes: usize,
        events: Vec<(i64, i64, String)>,
    }
    fn flush(conn: &Connection, stream_id: i64, run: Run) -> Result<(), LogsError> {
        let mut events: Vec<chunk::Event<'_>> = run
            .events
            .iter()
            .map(|(ts, id, m)| chunk::Event {
                ts: *ts,
                id: *id,
                message: m,
            })
            .collect();
        crate::events::insert_chunk(conn, run.group_id, stream_id, run.ingest_ms, &mut events)
    }
    fn flush_all(conn: &Connection, pending: &mut HashMap<i64, Run>) -> Result<(), LogsError> {
        let mut runs: Vec<(i64, Run)> = pending.drain().collect();
        // Oldest run first, so that chunk ids keep following the event ids.
        runs.sort_by_key(|(_, run)| run.events.first().map_or(0, |e| e.1));
        for (stream_id, run) in runs {
            flush(conn, stream_id, run)?;
        }
        Ok(())
    }
    /// Pending runs are flushed together past this many bytes.
    const PENDING_BYTES: usize = 64 << 20;
    let mut pending: HashMap<i64, Run> = HashMap::new();
    let mut pending_bytes = 0usize;
    let mut stmt = conn.prepare(
        "SELECT id, group_id, stream_id, ts, ingest_ms, message FROM events ORDER BY id",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let (id, group_id, stream_id, ts, ingest_ms): (i64, i64, i64, i64, i64) =
            (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
        let message: String = r.get(5)?;
        if let Some(run) = pending.get(&stream_id)
            && (run.ingest_ms != ingest_ms
                || run.group_id != group_id
                || run.bytes + message.len() > chunk::CHUNK_BYTES
                || ts.max(run.hi).saturating_sub(ts.min(run.lo)) > chunk::CHUNK_SPAN_MS)
            && let Some(run) = pending.remove(&stream_id)
        {
            pending_bytes -= run.bytes;
            flush(conn, stream_id, run)?;
        }
        let run = pending.entry(stream_id).or_insert_with(|| Run {
            group_id,
            ingest_ms,
            lo: ts,
            hi: ts,
            bytes: 0,
            events: Vec::new(),
        });
        run.lo = run.lo.min(ts);
        run.hi = run.hi.max(ts);
        run.bytes += message.len();
        pending_bytes += message.len();
        run.events.push((ts, id, message));
        if pending_bytes > PENDING_BYTES {
            flush_all(conn, &mut pending)?;
            pending_bytes = 0;
        }
    }
    drop(rows);
    drop(stmt);
    flush_all(conn, &mut pending)?;
    conn.execute_batch("DROP TABLE events")?;
    Ok(())
}

/// Page size of new databases.
const PAGE_SIZE: i64 = 32_768;

/// Open the write connection and bring the schema up to date.
pub(crate) fn open_writer(path: &Path) -> Result<Connection, LogsError> {
    let conn = Connection::open(path)?;
    // New databases only (WAL fixes the page size once the first table exists): a chunk's
    // ~1 MiB is 32 pages rather than 256, each a WAL frame with its header, checksum and
    // write, then a checkpoint copy. Ingest (bench `logs`, 20 tasks x 20 s): 73 MiB/s with
    // 4 KiB pages, 109 with 32 KiB, 110-115 with 64 KiB; 32 KiB keeps a small commit (a
    // handful of pages) at half 64 KiB's.
    conn.pragma_update(None, "page_size", PAGE_SIZE)?;
    // Must precede the first table: lets the sweep hand freed pages back to the file system.
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    // Appends touch few pages but many of them; checkpoint in larger steps.
    conn.pragma_update(None, "cache_size", -65_536)?;
    // A thread of its own checkpoints (see `writer`); the writer does it itself only when
    // that one falls 256 MiB behind.
    let page: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
    conn.pragma_update(None, "wal_autocheckpoint", (256 << 20) / page.max(512))?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let supported = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    if version > supported {
        return Err(LogsError::Unavailable(format!(
            "the logs database {} has schema version {version}; this Berth supports up to {supported}",
            path.display()
        )));
    }
    let start = usize::try_from(version).unwrap_or(0);
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(start) {
        let tx = conn.unchecked_transaction()?;
        match migration {
            Migration::Sql(sql) => tx.execute_batch(sql)?,
            Migration::Rust(f) => f(&tx)?,
        }
        tx.pragma_update(
            None,
            "user_version",
            i64::try_from(i + 1).unwrap_or(i64::MAX),
        )?;
        tx.commit()?;
    }
    Ok(conn)
}

/// The background checkpointer's connection.
pub(crate) fn open_checkpointer(path: &Path) -> Result<Connection, LogsError> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

/// Read connections, opened on demand and kept for reuse.
pub(crate) struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

/// How many idle read connections are kept.
const MAX_IDLE_READERS: usize = 8;

impl ReaderPool {
    pub(crate) fn new(path: &Path) -> ReaderPool {
        ReaderPool {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
        }
    }

    fn open(&self) -> Result<Connection, LogsError> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.pragma_update(None, "query_only", "ON")?;
        conn.busy_timeout(Duration::from_secs(5))?;
        Ok(conn)
    }

    /// Run `f` in a read transaction (one consistent snapshot).
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, LogsError>,
    ) -> Result<T, LogsError> {
        let taken = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        let conn = match taken {
            Some(c) => c,
            None => self.open()?,
        };
        conn.execute_batch("BEGIN")?;
        let result = f(&conn);
        // A read transaction has nothing to keep; ending it releases the snapshot.
        let ended = conn.execute_batch("COMMIT");
        if ended.is_ok() {
            let mut idle = self
                .idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
        }
        result
    }
}
