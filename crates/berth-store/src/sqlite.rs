//! The embedded store: one SQLite database in WAL mode with `synchronous=FULL`, so a
//! committed batch survives both a killed process and a lost machine. Bodies are stored
//! compressed (see [`crate::codec`]).

use crate::codec::Codec;
use crate::{Mutation, Record, Store, StoreError};
use berth_core::state::Kind;
use rusqlite::{Connection, params};
use std::path::Path;

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    // 1: one table of opaque records, keyed by kind and key.
    "CREATE TABLE records (
        kind TEXT NOT NULL,
        key  TEXT NOT NULL,
        body BLOB NOT NULL,
        PRIMARY KEY (kind, key)
    ) WITHOUT ROWID;",
];

/// SQLite-backed [`Store`].
pub struct SqliteStore {
    conn: Connection,
    codec: Codec,
}

impl SqliteStore {
    /// Open (creating if needed) the database at `path` and bring its schema up to date.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open(path)?;
        SqliteStore::init(conn)
    }

    /// A private in-memory database (tests).
    pub fn open_in_memory() -> Result<SqliteStore, StoreError> {
        SqliteStore::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<SqliteStore, StoreError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let supported = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
        if version > supported {
            return Err(StoreError::SchemaTooNew {
                found: version,
                supported,
            });
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
        Ok(SqliteStore {
            conn,
            codec: Codec::new()?,
        })
    }
}

impl Store for SqliteStore {
    fn load(&mut self) -> Result<Vec<Record>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT kind, key, body FROM records ORDER BY kind, key")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Vec<u8>>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (kind, key, stored) = row?;
            let body = self.codec.decode(stored)?;
            let kind = Kind::from_name(&kind).ok_or(StoreError::UnknownKind(kind))?;
            out.push(Record { kind, key, body });
        }
        // Load in dependency order (clusters before what lives in them).
        out.sort_by(|a, b| (a.kind, &a.key).cmp(&(b.kind, &b.key)));
        Ok(out)
    }

    fn commit(&mut self, batch: &[Mutation]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        {
            let mut put = tx.prepare_cached(
                "INSERT INTO records (kind, key, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT (kind, key) DO UPDATE SET body = excluded.body",
            )?;
            let mut del = tx.prepare_cached("DELETE FROM records WHERE kind = ?1 AND key = ?2")?;
            for m in batch {
                match m {
                    Mutation::Put(r) => {
                        let stored = self.codec.encode(&r.body)?;
                        put.execute(params![r.kind.name(), r.key, stored])?;
                    }
                    Mutation::Delete { kind, key } => {
                        del.execute(params![kind.name(), key])?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn reset(&mut self) -> Result<(), StoreError> {
        self.conn.execute("DELETE FROM records", [])?;
        Ok(())
    }
}
