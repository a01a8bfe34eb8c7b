//! The writer: one thread owns the write connection and runs queued jobs in groups, one
//! transaction (one fsync) per group, each job in its own savepoint so that a refused job
//! leaves no trace while the others commit. A job is answered only after its group is
//! durable. After a group it enforces the storage cap (oldest events first).

use crate::LogsError;
use crate::events::Removed;
use rusqlite::{Connection, params};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What a job may tell the writer besides its result.
#[derive(Debug, Default)]
pub(crate) struct WriteCtx {
    /// Bytes of event messages the job added (negative: removed).
    pub(crate) bytes_delta: i64,
}

type Done = Box<dyn FnOnce(Result<(), LogsError>) + Send>;
/// A job runs with the connection, or is told (`None`) that it cannot run at all.
type Job = Box<dyn FnOnce(Option<&Connection>, &mut WriteCtx) -> (bool, Done) + Send>;

/// Most jobs committed in one transaction.
const MAX_GROUP: usize = 512;
/// Chunks removed per transaction when evicting.
const EVICT_CHUNKS: usize = 64;

/// Handle to the writer thread.
pub(crate) struct Writer {
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    checkpointer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Writer {
    /// Start the writer over `conn`; `cap` bounds the stored message bytes.
    pub(crate) fn spawn(
        conn: Connection,
        checkpoints: Connection,
        cap: Option<u64>,
    ) -> Result<Writer, LogsError> {
        let mut total = stored_total(&conn)?;
        let (tx, rx) = mpsc::channel::<Job>();
        // The writer tells the checkpointer that the WAL grew; it never waits for it.
        let (grew, wait_growth) = mpsc::sync_channel::<()>(1);
        let checkpointer = std::thread::Builder::new()
            .name("berth-logs-checkpoint".into())
            .spawn(move || checkpoint_loop(&checkpoints, &wait_growth))
            .map_err(|e| {
                LogsError::Unavailable(format!("cannot start the logs checkpointer: {e}"))
            })?;
        let thread = std::thread::Builder::new()
            .name("berth-logs-writer".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut jobs = vec![first];
                    while jobs.len() < MAX_GROUP {
                        match rx.try_recv() {
                            Ok(more) => jobs.push(more),
                            Err(_) => break,
                        }
                    }
                    run_group(&conn, jobs, &mut total);
                    let _ = grew.try_send(());
                    if let Some(cap) = cap.and_then(|c| i64::try_from(c).ok())
                        && total > cap
                    {
                        evict(&conn, &mut total, cap);
                    }
                }
            })
            .map_err(|e| LogsError::Unavailable(format!("cannot start the logs writer: {e}")))?;
        Ok(Writer {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            checkpointer: Mutex::new(Some(checkpointer)),
        })
    }

    /// Run `f` on the writer and wait until its changes are durable (or refused).
    pub(crate) fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, &mut WriteCtx) -> Result<T, LogsError> + Send + 'static,
    ) -> Result<T, LogsError> {
        let (reply, wait) = mpsc::sync_channel::<Result<T, LogsError>>(1);
        let job: Job = Box::new(move |conn, ctx| {
            let result = match conn {
                Some(conn) => f(conn, ctx),
                None => Err(LogsError::Unavailable("the log store cannot write".into())),
            };
            let ok = result.is_ok();
            let done: Done = Box::new(move |committed| {
                let _ = reply.send(committed.and(result));
            });
            (ok, done)
        });
        {
            let guard = self
                .tx
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let Some(tx) = guard.as_ref() else {
                return Err(shutting_down());
            };
            tx.send(job).map_err(|_| shutting_down())?;
        }
        wait.recv().map_err(|_| shutting_down())?
    }

    /// Stop accepting jobs, let the writer finish what is queued, and wait for it.
    pub(crate) fn close(&self) {
        self.tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(t) = thread {
            let _ = t.join();
        }
        // The writer is gone, and with it the checkpointer's sender: it ends.
        let checkpointer = self
            .checkpointer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(t) = checkpointer {
            let _ = t.join();
        }
    }
}

/// Least time between two background checkpoints.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// Copy committed WAL frames into the database on a thread of its own, so that the writer
/// only appends to the WAL (and fsyncs it) and the two use both cores. PASSIVE: it never
/// blocks the writer or readers; the writer rewinds the WAL once it is all copied. Commits
/// are durable without it (the WAL is fsynced at each commit): it only bounds the WAL.
fn checkpoint_loop(conn: &Connection, grew: &mpsc::Receiver<()>) {
    let mut last: Option<Instant> = None;
    let mut dirty = false;
    loop {
        let wait = last.map_or(Duration::ZERO, |t| {
            CHECKPOINT_EVERY.saturating_sub(t.elapsed())
        });
        let heard = if dirty {
            grew.recv_timeout(wait)
        } else {
            grew.recv()
                .map_err(|_| mpsc::RecvTimeoutError::Disconnected)
        };
        match heard {
            Ok(()) => dirty = true,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // The writer is gone; the last connection to close checkpoints what is left.
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        if dirty && last.is_none_or(|t| t.elapsed() >= CHECKPOINT_EVERY) {
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!(error = %e, "a logs checkpoint failed");
            }
            last = Some(Instant::now());
            dirty = false;
        }
    }
}

fn shutting_down() -> LogsError {
    LogsError::Unavailable("the log store is shutting down".into())
}

/// Message bytes held on disk: live groups plus deleted streams not yet purged.
pub(crate) fn stored_total(conn: &Connection) -> Result<i64, LogsError> {
    let total: f64 = conn.query_row(
        "SELECT (SELECT total(stored_bytes) FROM groups) + (SELECT total(bytes) FROM doomed_streams)",
        [],
        |r| r.get(0),
    )?;
    // Totals are sums of i64 byte counts; f64 is exact far beyond any disk.
    #[allow(clippy::cast_possible_truncation)]
    Ok(total as i64)
}

fn run_group(conn: &Connection, jobs: Vec<Job>, total: &mut i64) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let err = LogsError::from(e);
        tracing::error!(error = %err, "cannot begin a logs transaction");
        for job in jobs {
            let (_, done) = job(None, &mut WriteCtx::default());
            done(Err(err.clone()));
        }
        return;
    }
    let mut dones = Vec::with_capacity(jobs.len());
    let mut delta = 0i64;
    let mut failed: Option<LogsError> = None;
    for job in jobs {
        if let Err(e) = conn.execute_batch("SAVEPOINT job") {
            failed.get_or_insert(e.into());
        }
        let mut ctx = WriteCtx::default();
        let (ok, done) = job(Some(conn), &mut ctx);
        let end = if ok {
            delta += ctx.bytes_delta;
            conn.execute_batch("RELEASE job")
        } else {
            conn.execute_batch("ROLLBACK TO job; RELEASE job")
        };
        if let Err(e) = end {
            failed.get_or_insert(e.into());
        }
        dones.push(done);
    }
    let committed = match failed {
        Some(e) => Err(e),
        None => conn.execute_batch("COMMIT").map_err(LogsError::from),
    };
    match &committed {
        Ok(()) => *total += delta,
        Err(e) => {
            tracing::error!(error = %e, "a logs commit failed; the requests in it are refused");
            let _ = conn.execute_batch("ROLLBACK");
            if let Ok(t) = stored_total(conn) {
                *total = t;
            }
        }
    }
    for done in dones {
        done(committed.clone());
    }
}

/// Remove events and keep the byte counts of their streams, groups and doomed streams
/// right. `rows` are (group id, stream id, bytes) of removed events. Returns the bytes.
pub(crate) fn account_removed(
    conn: &Connection,
    rows: &[(i64, i64, i64)],
) -> Result<i64, LogsError> {
    let mut per_stream: BTreeMap<(i64, i64), i64> = BTreeMap::new();
    for &(g, s, b) in rows {
        *per_stream.entry((g, s)).or_default() += b;
    }
    let mut stream = conn.prepare_cached(
        "UPDATE streams SET stored_bytes = max(0, stored_bytes - ?2) WHERE id = ?1",
    )?;
    let mut group = conn.prepare_cached(
        "UPDATE groups SET stored_bytes = max(0, stored_bytes - ?2) WHERE id = ?1",
    )?;
    let mut doomed = conn.prepare_cached(
        "UPDATE doomed_streams SET bytes = max(0, bytes - ?2) WHERE stream_id = ?1",
    )?;
    let mut removed = 0;
    for ((g, s), b) in per_stream {
        removed += b;
        if stream.execute(params![s, b])? > 0 {
            group.execute(params![g, b])?;
        } else {
            doomed.execute(params![s, b])?;
        }
    }
    Ok(removed)
}

/// Delete with `sql` (a `DELETE ... RETURNING group_id, stream_id, bytes, count` of chunks)
/// and account.
pub(crate) fn delete_returning(
    conn: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
) -> Result<Removed, LogsError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows: Vec<(i64, i64, i64, i64)> = stmt
        .query_map(args, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    let accounts: Vec<(i64, i64, i64)> = rows.iter().map(|&(g, s, b, _)| (g, s, b)).collect();
    Ok(Removed {
        chunks: i64::try_from(rows.len()).unwrap_or(i64::MAX),
        events: rows.iter().map(|r| usize::try_from(r.3).unwrap_or(0)).sum(),
        bytes: account_removed(conn, &accounts)?,
    })
}

/// Over the cap: drop the oldest chunks (by ingestion) until 90% of the cap remains.
fn evict(conn: &Connection, total: &mut i64, cap: i64) {
    let target = cap - cap / 10;
    let mut evicted = 0i64;
    while *total > target {
        let step = (|| -> Result<i64, LogsError> {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            let r = (|| {
                let mut bytes = 0;
                // A transaction removes up to EVICT_CHUNKS chunks, oldest first.
                for _ in 0..EVICT_CHUNKS {
                    if *total - bytes <= target {
                        break;
                    }
                    let r = delete_returning(
                        conn,
                        "DELETE FROM chunks WHERE id = (SELECT min(id) FROM chunks)
                         RETURNING group_id, stream_id, bytes, count",
                        [],
                    )?;
                    if r.chunks == 0 {
                        break;
                    }
                    bytes += r.bytes;
                }
                Ok(bytes)
            })();
            match r {
                Ok(v) => {
                    conn.execute_batch("COMMIT")?;
                    Ok(v)
                }
                Err(e) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    Err(e)
                }
            }
        })();
        match step {
            Ok(0) => {
                // Nothing left to evict: the counts drifted; trust the database.
                if let Ok(t) = stored_total(conn) {
                    *total = t;
                }
                break;
            }
            Ok(bytes) => {
                *total -= bytes;
                evicted += bytes;
            }
            Err(e) => {
                tracing::error!(error = %e, "evicting old log events failed");
                break;
            }
        }
    }
    if evicted > 0 {
        tracing::info!(
            bytes = evicted,
            cap,
            "log storage over its cap: evicted the oldest events"
        );
        let _ = conn.execute_batch("PRAGMA incremental_vacuum");
    }
}
