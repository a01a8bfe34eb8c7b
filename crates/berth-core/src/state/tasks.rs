//! A partition's tasks, indexed by the instance they run on and by desired status.
//!
//! Agents sync every few seconds and placement looks at every candidate instance, and both
//! want "the live tasks of instance X" and what they hold. A scan of every task (STOPPED ones
//! are kept for an hour) made each of those O(tasks in the partition); the index makes the
//! first O(tasks on X) and keeps the second ([`Usage`]: CPU, memory, ports and groups held)
//! as tasks change, so placement reads it in O(1) per instance.
//! ListTasks (whose default filter is desiredStatus RUNNING) likewise reads the ids of the
//! tasks desired RUNNING instead of scanning every task kept, and the service scheduler reads a
//! service's tasks by group ([`Tasks::in_group`]) instead of scanning every task per service.
//! Reads go through `Deref` to the map by id; every change goes through [`Tasks::insert`],
//! [`Tasks::remove`] or [`Tasks::get_mut`], whose guard re-indexes the task when it is
//! dropped, so the indexes cannot drift from the records whatever the caller changes.

use super::{Reservation, TaskRecord};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::{Bound, Deref, DerefMut};

/// Tasks by id, with the ids of the live (not STOPPED) tasks placed on each instance and
/// what they hold there, and the ids of the tasks desired RUNNING.
#[derive(Debug, Clone, Default)]
pub struct Tasks {
    by_id: BTreeMap<String, TaskRecord>,
    index: Index,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Index {
    live_by_instance: BTreeMap<String, Live>,
    desired_running: BTreeSet<String>,
    by_group: BTreeMap<String, BTreeSet<String>>,
}

/// The live tasks of one instance.
#[derive(Debug, Clone, Default, PartialEq)]
struct Live {
    ids: BTreeSet<String>,
    usage: Usage,
}

/// What the live tasks placed on one instance hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU units reserved by the tasks counted against the instance (not FARGATE).
    pub cpu: i64,
    /// Memory MiB reserved by the tasks counted against the instance.
    pub memory: i64,
    /// Host ports held, with how many tasks hold each.
    pub ports: BTreeMap<i32, u32>,
    /// Groups of the tasks, with how many tasks are in each.
    pub groups: BTreeMap<String, u32>,
}

impl Usage {
    /// Live tasks of `group` on the instance.
    pub fn in_group(&self, group: &str) -> u32 {
        self.groups.get(group).copied().unwrap_or(0)
    }

    fn add(&mut self, r: &Reservation, group: Option<&str>) {
        if r.counted {
            self.cpu += i64::from(r.cpu);
            self.memory += i64::from(r.memory);
        }
        for p in &r.ports {
            *self.ports.entry(*p).or_default() += 1;
        }
        if let Some(g) = group {
            match self.groups.get_mut(g) {
                Some(n) => *n += 1,
                None => {
                    self.groups.insert(g.to_string(), 1);
                }
            }
        }
    }

    fn sub(&mut self, r: &Reservation, group: Option<&str>) {
        if r.counted {
            self.cpu -= i64::from(r.cpu);
            self.memory -= i64::from(r.memory);
        }
        for p in &r.ports {
            if let Some(n) = self.ports.get_mut(p) {
                *n -= 1;
                if *n == 0 {
                    self.ports.remove(p);
                }
            }
        }
        if let Some(g) = group
            && let Some(n) = self.groups.get_mut(g)
        {
            *n -= 1;
            if *n == 0 {
                self.groups.remove(g);
            }
        }
    }
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

/// What a live task holds, and where (to take it back off after the task changed).
#[derive(Debug, PartialEq)]
struct Held {
    instance: String,
    reservation: Reservation,
    group: Option<String>,
}

impl Held {
    fn of(t: &TaskRecord) -> Option<Held> {
        Some(Held {
            instance: live_instance(t)?.to_string(),
            reservation: t.reservation.clone(),
            group: t.task.group.clone(),
        })
    }

    /// Whether `t` still holds exactly this.
    fn still(&self, t: &TaskRecord) -> bool {
        live_instance(t) == Some(self.instance.as_str())
            && t.reservation == self.reservation
            && t.task.group == self.group
    }
}

fn add_to_group(idx: &mut BTreeMap<String, BTreeSet<String>>, group: Option<&str>, id: &str) {
    let Some(g) = group else { return };
    match idx.get_mut(g) {
        Some(ids) => {
            if !ids.contains(id) {
                ids.insert(id.to_string());
            }
        }
        None => {
            idx.insert(g.to_string(), BTreeSet::from([id.to_string()]));
        }
    }
}

fn remove_from_group(idx: &mut BTreeMap<String, BTreeSet<String>>, group: Option<&str>, id: &str) {
    let Some(g) = group else { return };
    if let Some(ids) = idx.get_mut(g) {
        ids.remove(id);
        if ids.is_empty() {
            idx.remove(g);
        }
    }
}

fn index(
    idx: &mut BTreeMap<String, Live>,
    instance: &str,
    id: &str,
    r: &Reservation,
    group: Option<&str>,
) {
    let live = match idx.get_mut(instance) {
        Some(l) => l,
        None => idx.entry(instance.to_string()).or_default(),
    };
    if !live.ids.contains(id) {
        live.ids.insert(id.to_string());
        live.usage.add(r, group);
    }
}

fn unindex(
    idx: &mut BTreeMap<String, Live>,
    instance: &str,
    id: &str,
    r: &Reservation,
    group: Option<&str>,
) {
    if let Some(live) = idx.get_mut(instance) {
        if live.ids.remove(id) {
            live.usage.sub(r, group);
        }
        if live.ids.is_empty() {
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
        let old = self.by_id.insert(id.clone(), rec);
        let idx = &mut self.index.live_by_instance;
        if let Some(o) = &old
            && let Some(i) = live_instance(o)
        {
            unindex(idx, i, &id, &o.reservation, o.task.group.as_deref());
        }
        if let Some(o) = &old {
            remove_from_group(&mut self.index.by_group, o.task.group.as_deref(), &id);
        }
        if let Some(new) = self.by_id.get(&id) {
            add_to_group(&mut self.index.by_group, new.task.group.as_deref(), &id);
            if let Some(i) = live_instance(new) {
                index(idx, i, &id, &new.reservation, new.task.group.as_deref());
            }
            set_desired_running(&mut self.index.desired_running, &id, desired_running(new));
        }
        old
    }

    /// Remove task `id`.
    pub fn remove(&mut self, id: &str) -> Option<TaskRecord> {
        let old = self.by_id.remove(id)?;
        if let Some(i) = live_instance(&old) {
            unindex(
                &mut self.index.live_by_instance,
                i,
                id,
                &old.reservation,
                old.task.group.as_deref(),
            );
        }
        self.index.desired_running.remove(id);
        remove_from_group(&mut self.index.by_group, old.task.group.as_deref(), id);
        Some(old)
    }

    /// Task `id` for changing; the index follows the change when the guard is dropped.
    pub fn get_mut(&mut self, id: &str) -> Option<TaskMut<'_>> {
        let (key, rec) = self
            .by_id
            .range_mut::<str, _>((Bound::Included(id), Bound::Included(id)))
            .next()?;
        let before = Held::of(rec);
        let was_desired_running = desired_running(rec);
        let group_before = rec.task.group.clone();
        Some(TaskMut {
            key,
            rec,
            index: &mut self.index,
            before,
            was_desired_running,
            group_before,
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
            .flat_map(|l| &l.ids)
            .filter_map(|id| self.by_id.get_key_value(id))
    }

    /// What the live tasks placed on `instance` hold (`None`: no live task).
    pub fn usage_on(&self, instance: &str) -> Option<&Usage> {
        self.index.live_by_instance.get(instance).map(|l| &l.usage)
    }

    /// Whether any live task is placed on `instance`.
    pub fn any_live_on(&self, instance: &str) -> bool {
        self.index.live_by_instance.contains_key(instance)
    }

    /// The tasks of `group` (`service:NAME`, `family:NAME`), of any status, in id order.
    pub fn in_group<'a>(
        &'a self,
        group: &str,
    ) -> impl Iterator<Item = (&'a String, &'a TaskRecord)> + use<'a> {
        self.index
            .by_group
            .get(group)
            .into_iter()
            .flatten()
            .filter_map(|id| self.by_id.get_key_value(id))
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
                let live = scanned.live_by_instance.entry(i.to_string()).or_default();
                live.ids.insert(id.clone());
                live.usage.add(&t.reservation, t.task.group.as_deref());
            }
            if desired_running(t) {
                scanned.desired_running.insert(id.clone());
            }
            if let Some(g) = &t.task.group {
                scanned
                    .by_group
                    .entry(g.clone())
                    .or_default()
                    .insert(id.clone());
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
    before: Option<Held>,
    was_desired_running: bool,
    group_before: Option<String>,
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
        if self.rec.task.group != self.group_before {
            remove_from_group(
                &mut self.index.by_group,
                self.group_before.as_deref(),
                self.key,
            );
            add_to_group(
                &mut self.index.by_group,
                self.rec.task.group.as_deref(),
                self.key,
            );
        }
        if let Some(b) = &self.before
            && b.still(self.rec)
        {
            return;
        }
        if let Some(b) = &self.before {
            unindex(
                &mut self.index.live_by_instance,
                &b.instance,
                self.key,
                &b.reservation,
                b.group.as_deref(),
            );
        }
        if let Some(n) = live_instance(self.rec) {
            index(
                &mut self.index.live_by_instance,
                n,
                self.key,
                &self.rec.reservation,
                self.rec.task.group.as_deref(),
            );
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
        Reserve(u8, Reservation),
        Group(u8, Option<u8>),
    }

    fn reservation() -> impl Strategy<Value = Reservation> {
        (
            0i32..2048,
            0i32..4096,
            proptest::collection::vec(prop_oneof![Just(80), Just(443), Just(8080)], 0..3),
            any::<bool>(),
        )
            .prop_map(|(cpu, memory, ports, counted)| Reservation {
                cpu,
                memory,
                ports,
                counted,
            })
    }

    /// What the live tasks on `instance` hold, recomputed from every record.
    fn usage_by_scan(t: &Tasks, instance: &str) -> Usage {
        let mut u = Usage::default();
        for r in t.values() {
            if r.instance_id.as_deref() == Some(instance) && !r.is_stopped() {
                u.add(&r.reservation, r.task.group.as_deref());
            }
        }
        u
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
            (0u8..24, reservation()).prop_map(|(t, r)| Op::Reserve(t, r)),
            (0u8..24, proptest::option::of(0u8..3)).prop_map(|(t, g)| Op::Group(t, g)),
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
                        let mut rec = task(&id, inst.as_deref(), STATUSES[usize::from(s)]);
                        rec.reservation.cpu = i32::from(s) * 100;
                        rec.reservation.memory = 128;
                        rec.reservation.counted = s % 2 == 0;
                        rec.task.group = Some(format!("family:f{}", s % 2));
                        t.insert(id.clone(), rec);
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
                    Op::Reserve(id, res) => {
                        if let Some(mut r) = t.get_mut(&format!("t{id}")) {
                            r.reservation = res;
                        }
                    }
                    Op::Group(id, g) => {
                        if let Some(mut r) = t.get_mut(&format!("t{id}")) {
                            r.task.group = g.map(|g| format!("service:s{g}"));
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
                    // The usage kept as tasks change is the usage recomputed from scratch.
                    let kept = t.usage_on(&inst).cloned().unwrap_or_default();
                    prop_assert_eq!(kept, usage_by_scan(&t, &inst));
                }
                let scan: Vec<&String> = t
                    .iter()
                    .filter(|(_, r)| r.task.desired_status.as_deref() == Some("RUNNING"))
                    .map(|(id, _)| id)
                    .collect();
                prop_assert_eq!(t.desired_running().map(|(id, _)| id).collect::<Vec<_>>(), scan);
                for g in ["family:f0", "family:f1", "service:s0", "service:s1", "service:s2"] {
                    let scan: Vec<&String> = t
                        .iter()
                        .filter(|(_, r)| r.task.group.as_deref() == Some(g))
                        .map(|(id, _)| id)
                        .collect();
                    prop_assert_eq!(t.in_group(g).map(|(id, _)| id).collect::<Vec<_>>(), scan);
                }
            }
        }
    }
}
