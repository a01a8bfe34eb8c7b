//! The commit pipeline: one writer thread owns the store and commits queued batches in
//! groups (every batch waiting when the previous commit finished goes into one transaction),
//! so durable writes cost one fsync per group, not per request.
//!
//! Batches are queued while the world lock is held, so the commit order is the order in
//! which changes were applied in memory. A failed commit is fatal: the process exits, and
//! on restart the state is rebuilt from what is durable (crash-only; nothing unacknowledged
//! was promised).

use berth_core::Mutation;
use berth_store::Store;
use std::sync::Mutex;
use std::sync::mpsc;
use tokio::sync::oneshot;

enum Job {
    Commit(Vec<Mutation>, oneshot::Sender<()>),
    Reset(oneshot::Sender<()>),
}

/// Handle to the writer thread.
pub(crate) struct CommitQueue {
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Exit code when the store fails under us (EX_SOFTWARE-like; distinct from a clean exit).
const EXIT_STORE_FAILED: i32 = 70;

impl CommitQueue {
    pub(crate) fn spawn(mut store: impl Store) -> CommitQueue {
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("berth-commit".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut jobs = vec![first];
                    while let Ok(more) = rx.try_recv() {
                        jobs.push(more);
                    }
                    run_group(&mut store, jobs);
                }
            })
            .expect("spawning the commit thread at start-up");
        CommitQueue {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        }
    }

    fn send(&self, job: Job) {
        let guard = self
            .tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(tx) = guard.as_ref() {
            // The writer only stops after `close`, when no request is being served.
            let _ = tx.send(job);
        }
    }

    /// Queue a batch; the receiver completes once it is durable.
    pub(crate) fn submit(&self, batch: Vec<Mutation>) -> oneshot::Receiver<()> {
        let (done, wait) = oneshot::channel();
        self.send(Job::Commit(batch, done));
        wait
    }

    /// Queue a wipe of the whole store.
    pub(crate) fn reset(&self) -> oneshot::Receiver<()> {
        let (done, wait) = oneshot::channel();
        self.send(Job::Reset(done));
        wait
    }

    /// Stop accepting work, let the writer drain, and wait for it.
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
    }
}

fn run_group(store: &mut impl Store, jobs: Vec<Job>) {
    // Consecutive commits are merged into one transaction; a reset is a barrier.
    let mut batch: Vec<Mutation> = Vec::new();
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    for job in jobs {
        match job {
            Job::Commit(mutations, done) => {
                batch.extend(mutations);
                waiting.push(done);
            }
            Job::Reset(done) => {
                flush(store, &mut batch, &mut waiting);
                if let Err(e) = store.reset() {
                    fatal(&e);
                }
                let _ = done.send(());
            }
        }
    }
    flush(store, &mut batch, &mut waiting);
}

fn flush(
    store: &mut impl Store,
    batch: &mut Vec<Mutation>,
    waiting: &mut Vec<oneshot::Sender<()>>,
) {
    if waiting.is_empty() {
        return;
    }
    if let Err(e) = store.commit(batch) {
        fatal(&e);
    }
    batch.clear();
    for done in waiting.drain(..) {
        let _ = done.send(());
    }
}

fn fatal(e: &berth_store::StoreError) -> ! {
    tracing::error!(error = %e, "commit failed; exiting so that restart recovers from durable state");
    std::process::exit(EXIT_STORE_FAILED);
}
