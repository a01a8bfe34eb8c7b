//! The reports waiting to be sent: the latest observed state of each task that changed
//! since the server last acknowledged it. Level-triggered: only the newest state of a task
//! matters, so a burst of transitions costs one report.

use berth_core::agent_protocol::TaskReport;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

#[derive(Default)]
struct Book {
    /// Latest report per task ARN, with the sequence number it was published at.
    pending: BTreeMap<String, (u64, TaskReport)>,
    /// Latest report per task ARN, sent or not (resent in full after a reconnect).
    latest: BTreeMap<String, TaskReport>,
    seq: u64,
}

/// Shared, cheap to clone.
#[derive(Clone, Default)]
pub struct ReportBook {
    inner: Arc<Mutex<Book>>,
    notify: Arc<Notify>,
}

/// Reports taken for sending; acknowledge them once the server has them.
pub struct Batch {
    /// The reports.
    pub reports: Vec<TaskReport>,
    taken: Vec<(String, u64)>,
}

impl ReportBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Record a task's newest state.
    pub fn publish(&self, report: TaskReport) {
        {
            let mut b = self.lock();
            b.seq += 1;
            let seq = b.seq;
            b.latest.insert(report.task_arn.clone(), report.clone());
            b.pending.insert(report.task_arn.clone(), (seq, report));
        }
        self.notify.notify_one();
    }

    /// Wait until something is pending.
    pub async fn changed(&self) {
        if !self.lock().pending.is_empty() {
            return;
        }
        self.notify.notified().await;
    }

    /// Everything pending now.
    pub fn take(&self) -> Batch {
        let b = self.lock();
        Batch {
            reports: b.pending.values().map(|(_, r)| r.clone()).collect(),
            taken: b
                .pending
                .iter()
                .map(|(k, (s, _))| (k.clone(), *s))
                .collect(),
        }
    }

    /// The server has `batch`: drop what was not superseded since.
    pub fn acknowledge(&self, batch: &Batch) {
        let mut b = self.lock();
        for (arn, seq) in &batch.taken {
            if b.pending.get(arn).is_some_and(|(s, _)| s == seq) {
                b.pending.remove(arn);
            }
        }
    }

    /// After a reconnect: resend the latest state of every task still known.
    pub fn resend_all(&self) {
        let mut b = self.lock();
        let latest: Vec<TaskReport> = b.latest.values().cloned().collect();
        for r in latest {
            b.seq += 1;
            let seq = b.seq;
            b.pending.insert(r.task_arn.clone(), (seq, r));
        }
    }

    /// Forget a task entirely (the server no longer lists it).
    pub fn forget(&self, task_arn: &str) {
        let mut b = self.lock();
        b.latest.remove(task_arn);
        b.pending.remove(task_arn);
    }

    /// The latest report of every task still known.
    pub fn all_latest(&self) -> Vec<TaskReport> {
        self.lock().latest.values().cloned().collect()
    }

    /// The latest report for a task.
    pub fn latest(&self, task_arn: &str) -> Option<TaskReport> {
        self.lock().latest.get(task_arn).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(arn: &str, status: &str) -> TaskReport {
        TaskReport {
            task_arn: arn.into(),
            last_status: status.into(),
            ..Default::default()
        }
    }

    #[test]
    fn newest_state_wins_and_acks_do_not_drop_newer_reports() {
        let book = ReportBook::default();
        book.publish(r("a", "PENDING"));
        book.publish(r("a", "RUNNING"));
        let batch = book.take();
        assert_eq!(batch.reports.len(), 1);
        assert_eq!(batch.reports[0].last_status, "RUNNING");
        book.publish(r("a", "STOPPED"));
        book.acknowledge(&batch);
        let next = book.take();
        assert_eq!(next.reports[0].last_status, "STOPPED");
        book.acknowledge(&next);
        assert!(book.take().reports.is_empty());
        book.resend_all();
        assert_eq!(book.take().reports.len(), 1);
    }
}
