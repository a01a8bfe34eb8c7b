//! A partition's tasks, indexed by the instance they run on and by desired status.
//!
//! Agents sync every few seconds and placement looks at every candidate instance, and both
//! want "the live tasks of instance X". A scan of every task (STOPPED ones are kept for an
//! hour) made each of those O(tasks in the partition); the index makes it O(tasks on X).
//! ListTasks (whose default filter is desiredStatus RUNNING) likewise reads the ids of the
//! tasks desired RUNNING instead of scanning every task kept.
//! Reads go through `Deref` to the map by id; every change goes through [`Tasks::insert`],
//! [`Tasks::remove`] or [`Tasks::get_mut`], whose guard re-indexes the task when it is
//! dropped, so the indexes cannot drift from the records whatever the caller changes.

use super::TaskRecord;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::{Bound, Deref, DerefMut};

/// Tasks by id, with the ids of the live (not STOPPED) tasks placed on each instance and
/// the ids of the tasks desired RUNNING.
#[derive(Debug, Clone, Default)]
pub struct Tasks {
    by_id: BTreeMap<String, TaskRecord>,
    index: Index,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Index {
    live_by_instance: BTreeMap<String, BTreeSet<String>>,
    desired_running: BTreeSet<String>,
}

/// Whether the task is desired RUNNING (ListTasks' default filter).
fn desired_running(t: &TaskRecord) -> bool {
    t.task.desired_status.as_deref() == Some("RUNNING")
}

fn set_desired_running(set: &mut BTreeSet<String>, id: &str, yes: bool) {
    if yes {
        if !set.contains(id) {
            set.insert(id.to_string());
        }
    } else {
        set.remove(id);
    }
}

/// The instance a task counts on while it is live (placed and not STOPPED).
fn live_instance(t: &TaskRecord) -> Option<&str> {
    t.instance_id.as_deref().filter(|_| !t.is_stopped())
}

fn index(idx: &mut BTreeMap<String, BTreeSet<String>>, instance: &str, id: &str) {
    match idx.get_mut(instance) {
        Some(ids) => {
            if !ids.contains(id) {
                ids.insert(id.to_string());
            }
        }
        None => {
            idx.insert(instance.to_string(), BTreeSet::from([id.to_string()]));
        }
    }
}

fn unindex(idx: &mut BTreeMap<String, BTreeSet<String>>, instance: &str, id: &str) {
    if let Some(ids) = idx.get_mut(instance) {
        ids.remove(id);
        if ids.is_empty() {
            idx.remove(instance);
        }
    }
}

impl Deref for Tasks {
    type Target = BTreeMap<String, TaskRecord>;
    fn deref(&self) -> &Self::Target {
        &self.by_id
    }
}

impl<'a> IntoIterator for &'a Tasks {
    type Item = (&'a String, &'a TaskRecord);
    type IntoIter = std::collections::btree_map::Iter<'a, String, TaskRecord>;
    fn into_iter(self) -> Self::IntoIter {
        self.by_id.iter()
    }
}

impl Tasks {
    /// Insert (or replace) task `id`.
    pub fn insert(&mut self, id: String, rec: TaskRecord) -> Option<TaskRecord> {
        if let Some(i) = live_instance(&rec) {
            index(&mut self.index.live_by_instance, i, &id);
        }
        set_desired_running(&mut self.index.desired_running, &id, desired_running(&rec));
        let old = self.by_id.insert(id.clone(), rec);
        if let Some(o) = &old {
            let now = self.by_id.get(&id).and_then(live_instance);
            if let Some(before) = live_instance(o).filter(|b| Some(*b) != now) {
                unindex(&mut self.index.live_by_instance, before, &id);
            }
        }
        old
    }

    /// Remove task `id`.
    pub fn remove(&mut self, id: &str) -> Option<TaskRecord> {
        let old = self.by_id.remove(id)?;
        if let Some(i) = live_instance(&old) {
            unindex(&mut self.index.live_by_instance, i, id);
        }
        self.index.desired_running.remove(id);
        Some(old)
    }

    /// Task `id` for changing; the index follows the change when the guard is dropped.
    pub fn get_mut(&mut self, id: &str) -> Option<TaskMut<'_>> {
        let (key, rec) = self
            .by_id
            .range_mut::<str, _>((Bound::Included(id), Bound::Included(id)))
            .next()?;
        let before = live_instance(rec).map(str::to_string);
        let was_desired_running = desired_running(rec);
        Some(TaskMut {
            key,
            rec,
            index: &mut self.index,
            before,
            was_desired_running,
        })
    }

    /// The live (not STOPPED) tasks placed on `instance`, by id.
    pub fn live_on<'a>(
        &'a self,
        instance: &str,
    ) -> impl Iterator<Item = (&'a String, &'a TaskRecord)> + use<'a> {
        self.index
            .live_by_instance
            .get(instance)
            .into_iter()
            .flatten()
            .filter_map(|id| self.by_id.get_key_value(id))
    }

    /// Whether any live task is placed on `instance`.
    pub fn any_live_on(&self, instance: &str) -> bool {
        self.index.live_by_instance.contains_key(instance)
    }

    /// The tasks desired RUNNING, in id order.
    pub fn desired_running(&self) -> impl Iterator<Item = (&String, &TaskRecord)> {
        self.index
            .desired_running
            .iter()
            .filter_map(|id| self.by_id.get_key_value(id))
    }

    /// Check the index against a full scan of the records (for tests and simulations).
    pub fn verify_index(&self) -> Result<(), String> {
        let mut scanned = Index::default();
        for (id, t) in &self.by_id {
            if let Some(i) = live_instance(t) {
                scanned
                    .live_by_instance
                    .entry(i.to_string())
                    .or_default()
                    .insert(id.clone());
            }
            if desired_running(t) {
                scanned.desired_running.insert(id.clone());
            }
        }
        if scanned == self.index {
            Ok(())
        } else {
            Err(format!(
                "task index {:?} differs from a scan {:?}",
                self.index, scanned
            ))
        }
    }
}

/// One task being changed (see [`Tasks::get_mut`]).
pub struct TaskMut<'a> {
    key: &'a String,
    rec: &'a mut TaskRecord,
    index: &'a mut Index,
    before: Option<String>,
    was_desired_running: bool,
}

impl Deref for TaskMut<'_> {
    type Target = TaskRecord;
    fn deref(&self) -> &TaskRecord {
        self.rec
    }
}

impl DerefMut for TaskMut<'_> {
    fn deref_mut(&mut self) -> &mut TaskRecord {
        self.rec
    }
}

impl Drop for TaskMut<'_> {
    fn drop(&mut self) {
        let desired = desired_running(self.rec);
        if desired != self.was_desired_running {
            set_desired_running(&mut self.index.desired_running, self.key, desired);
        }
        let now = live_instance(self.rec);
        if now == self.before.as_deref() {
            return;
        }
        if let Some(b) = &self.before {
            unindex(&mut self.index.live_by_instance, b, self.key);
        }
        if let Some(n) = now {
            index(&mut self.index.live_by_instance, n, self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::ecs;
    use proptest::prelude::*;

    fn task(id: &str, instance: Option<&str>, status: &str) -> TaskRecord {
        TaskRecord {
            cluster: "default".into(),
            task: ecs::Task {
                task_arn: Some(format!(
                    "arn:aws:ecs:us-east-1:123456789012:task/default/{id}"
                )),
                last_status: Some(status.into()),
                desired_status: Some(
                    if status == "STOPPED" {
                        "STOPPED"
                    } else {
                        "RUNNING"
                    }
                    .into(),
                ),
                ..Default::default()
            },
            instance_id: instance.map(str::to_string),
            client_token: None,
            reservation: super::super::Reservation::default(),
            stopped_at_ms: None,
        }
    }

    fn live_ids(t: &Tasks, instance: &str) -> Vec<String> {
        t.live_on(instance).map(|(id, _)| id.clone()).collect()
    }

    #[test]
    fn follows_inserts_changes_and_removals() {
        let mut t = Tasks::default();
        t.insert("a".into(), task("a", Some("i1"), "PROVISIONING"));
        t.insert("b".into(), task("b", Some("i1"), "RUNNING"));
        t.insert("c".into(), task("c", Some("i2"), "STOPPED"));
        t.insert("d".into(), task("d", None, "RUNNING"));
        assert_eq!(live_ids(&t, "i1"), ["a", "b"]);
        assert!(live_ids(&t, "i2").is_empty());
        assert!(!t.any_live_on("i2"));
        t.get_mut("a").unwrap().task.last_status = Some("STOPPED".into());
        assert_eq!(live_ids(&t, "i1"), ["b"]);
        t.get_mut("b").unwrap().instance_id = Some("i2".into());
        assert!(!t.any_live_on("i1"));
        assert_eq!(live_ids(&t, "i2"), ["b"]);
        // Replacing a record re-indexes it.
        t.insert("b".into(), task("b", Some("i3"), "RUNNING"));
        assert!(!t.any_live_on("i2"));
        assert_eq!(live_ids(&t, "i3"), ["b"]);
        assert!(t.remove("b").is_some());
        assert!(t.remove("b").is_none());
        assert!(!t.any_live_on("i3"));
        assert!(t.get_mut("nope").is_none());
        t.verify_index().unwrap();
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, Option<u8>, u8),
        Remove(u8),
        SetStatus(u8, u8),
        SetDesired(u8, u8),
        Move(u8, Option<u8>),
    }

    const STATUSES: [&str; 5] = [
        "PROVISIONING",
        "PENDING",
        "RUNNING",
        "STOPPED",
        "DEPROVISIONING",
    ];

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..24, proptest::option::of(0u8..4), 0u8..5)
                .prop_map(|(t, i, s)| Op::Insert(t, i, s)),
            (0u8..24).prop_map(Op::Remove),
            (0u8..24, 0u8..5).prop_map(|(t, s)| Op::SetStatus(t, s)),
            (0u8..24, 0u8..5).prop_map(|(t, s)| Op::SetDesired(t, s)),
            (0u8..24, proptest::option::of(0u8..4)).prop_map(|(t, i)| Op::Move(t, i)),
        ]
    }

    proptest! {
        #[test]
        fn index_equals_a_full_scan(ops in proptest::collection::vec(op(), 0..200)) {
            let mut t = Tasks::default();
            for o in ops {
                match o {
                    Op::Insert(id, i, s) => {
                        let id = format!("t{id}");
                        let inst = i.map(|i| format!("i{i}"));
                        t.insert(id.clone(), task(&id, inst.as_deref(), STATUSES[usize::from(s)]));
                    }
                    Op::Remove(id) => {
                        t.remove(&format!("t{id}"));
                    }
                    Op::SetStatus(id, s) => {
                        if let Some(mut r) = t.get_mut(&format!("t{id}")) {
                            r.task.last_status = Some(STATUSES[usize::from(s)].into());
                        }
                    }
                    Op::SetDesired(id, s) => {
                        if let Some(mut r) = t.get_mut(&format!("t{id}")) {
                            r.task.desired_status = Some(STATUSES[usize::from(s)].into());
                        }
                    }
                    Op::Move(id, i) => {
                        if let Some(mut r) = t.get_mut(&format!("t{id}")) {
                            r.instance_id = i.map(|i| format!("i{i}"));
                        }
                    }
                }
                prop_assert_eq!(t.verify_index(), Ok(()));
                for i in 0..4 {
                    let inst = format!("i{i}");
                    let scan: Vec<String> = t
                        .values()
                        .filter(|r| r.instance_id.as_deref() == Some(inst.as_str()) && !r.is_stopped())
                        .map(|r| r.id().to_string())
                        .collect();
                    prop_assert_eq!(live_ids(&t, &inst), scan);
                }
                let scan: Vec<&String> = t
                    .iter()
                    .filter(|(_, r)| r.task.desired_status.as_deref() == Some("RUNNING"))
                    .map(|(id, _)| id)
                    .collect();
                prop_assert_eq!(t.desired_running().map(|(id, _)| id).collect::<Vec<_>>(), scan);
            }
        }
    }
}
