//! A partition's tasks, indexed by the instance they run on.
//!
//! Agents sync every few seconds and placement looks at every candidate instance, and both
//! want "the live tasks of instance X". A scan of every task (STOPPED ones are kept for an
//! hour) made each of those O(tasks in the partition); the index makes it O(tasks on X).
//! Reads go through `Deref` to the map by id; every change goes through [`Tasks::insert`],
//! [`Tasks::remove`] or [`Tasks::get_mut`], whose guard re-indexes the task when it is
//! dropped, so the index cannot drift from the records whatever the caller changes.

use super::TaskRecord;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::{Bound, Deref, DerefMut};

/// Tasks by id, with the ids of the live (not STOPPED) tasks placed on each instance.
#[derive(Debug, Clone, Default)]
pub struct Tasks {
    by_id: BTreeMap<String, TaskRecord>,
    live_by_instance: BTreeMap<String, BTreeSet<String>>,
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
            index(&mut self.live_by_instance, i, &id);
        }
        let old = self.by_id.insert(id.clone(), rec);
        if let Some(o) = &old {
            let now = self.by_id.get(&id).and_then(live_instance);
            if let Some(before) = live_instance(o).filter(|b| Some(*b) != now) {
                unindex(&mut self.live_by_instance, before, &id);
            }
        }
        old
    }

    /// Remove task `id`.
    pub fn remove(&mut self, id: &str) -> Option<TaskRecord> {
        let old = self.by_id.remove(id)?;
        if let Some(i) = live_instance(&old) {
            unindex(&mut self.live_by_instance, i, id);
        }
        Some(old)
    }

    /// Task `id` for changing; the index follows the change when the guard is dropped.
    pub fn get_mut(&mut self, id: &str) -> Option<TaskMut<'_>> {
        let (key, rec) = self
            .by_id
            .range_mut::<str, _>((Bound::Included(id), Bound::Included(id)))
            .next()?;
        let before = live_instance(rec).map(str::to_string);
        Some(TaskMut {
            key,
            rec,
            index: &mut self.live_by_instance,
            before,
        })
    }

    /// The live (not STOPPED) tasks placed on `instance`, by id.
    pub fn live_on<'a>(
        &'a self,
        instance: &str,
    ) -> impl Iterator<Item = (&'a String, &'a TaskRecord)> + use<'a> {
        self.live_by_instance
            .get(instance)
            .into_iter()
            .flatten()
            .filter_map(|id| self.by_id.get_key_value(id))
    }

    /// Whether any live task is placed on `instance`.
    pub fn any_live_on(&self, instance: &str) -> bool {
        self.live_by_instance.contains_key(instance)
    }

    /// Check the index against a full scan of the records (for tests and simulations).
    pub fn verify_index(&self) -> Result<(), String> {
        let mut scanned: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (id, t) in &self.by_id {
            if let Some(i) = live_instance(t) {
                scanned.entry(i.to_string()).or_default().insert(id.clone());
            }
        }
        if scanned == self.live_by_instance {
            Ok(())
        } else {
            Err(format!(
                "task index {:?} differs from a scan {:?}",
                self.live_by_instance, scanned
            ))
        }
    }
}

/// One task being changed (see [`Tasks::get_mut`]).
pub struct TaskMut<'a> {
    key: &'a String,
    rec: &'a mut TaskRecord,
    index: &'a mut BTreeMap<String, BTreeSet<String>>,
    before: Option<String>,
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
        let now = live_instance(self.rec);
        if now == self.before.as_deref() {
            return;
        }
        if let Some(b) = &self.before {
            unindex(self.index, b, self.key);
        }
        if let Some(n) = now {
            index(self.index, n, self.key);
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
            }
        }
    }
}
