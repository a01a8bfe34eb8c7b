//! Durable storage of Berth's control-plane records.
//!
//! A [`Store`] keeps opaque records (kind, key, body) and applies batches of
//! [`Mutation`]s atomically and durably: when `commit` returns, the batch survives a crash
//! of the process and of the machine. It knows nothing about what the records mean; the
//! core rebuilds its state from them with `World::load`. Backends: [`SqliteStore`] (the
//! embedded default) and [`MemStore`] (tests and simulations). Every backend passes the
//! same conformance suite (`tests/conformance.rs`).

mod codec;
mod mem;
mod sqlite;

pub use berth_core::{Mutation, Record};
pub use mem::MemStore;
pub use sqlite::SqliteStore;

/// A storage failure. The shell treats any of these during commit as fatal: it cannot
/// acknowledge the write, and the in-memory state is ahead of the disk.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error.
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// A record body could not be encoded or decoded.
    #[error("record encoding: {0}")]
    Codec(String),
    /// A stored record names a kind this build does not know.
    #[error("stored record of unknown kind {0:?} (written by a newer Berth?)")]
    UnknownKind(String),
    /// The schema on disk is newer than this build understands.
    #[error(
        "the data directory's schema version {found} is newer than this Berth supports ({supported})"
    )]
    SchemaTooNew {
        /// Version found on disk.
        found: i64,
        /// Highest version this build knows.
        supported: i64,
    },
}

/// Durable record storage.
pub trait Store: Send + 'static {
    /// Every stored record, in (kind, key) order.
    fn load(&mut self) -> Result<Vec<Record>, StoreError>;
    /// Apply `batch` atomically and durably, in order.
    fn commit(&mut self, batch: &[Mutation]) -> Result<(), StoreError>;
    /// Remove every record.
    fn reset(&mut self) -> Result<(), StoreError>;
}
