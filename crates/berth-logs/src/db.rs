//! The logs database: schema, migrations, and the pool of read connections.
//!
//! One SQLite file in WAL mode. The writer thread owns the only write connection; readers
//! take a connection from the pool and read a consistent snapshot while the writer goes on.

use crate::LogsError;
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    // 1: groups, streams, events. AUTOINCREMENT so that ids are never reused: event ids
    // are eventIds and paging positions, stream and group ids key events of deleted ones
    // until they are purged.
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
];

/// Open the write connection and bring the schema up to date.
pub(crate) fn open_writer(path: &Path) -> Result<Connection, LogsError> {
    let conn = Connection::open(path)?;
    // Must precede the first table: lets the sweep hand freed pages back to the file system.
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    // Appends touch few pages but many of them; checkpoint in larger steps.
    conn.pragma_update(None, "cache_size", -65_536)?;
    conn.pragma_update(None, "wal_autocheckpoint", 8_192)?;
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
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(start) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(
            None,
            "user_version",
            i64::try_from(i + 1).unwrap_or(i64::MAX),
        )?;
        tx.commit()?;
    }
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
