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
//!
//! Live tasks are kept whole; STOPPED ones compact ([`Compact`]: the fields scans read and the
//! record compressed), which is most of the memory saved on a busy cluster. Reads get a
//! [`TaskRef`] to either form ([`Tasks::get`], [`Tasks::iter`], ...); the live tasks of an
//! instance ([`Tasks::live_on`]) are whole records. Every change goes through
//! [`Tasks::insert`], [`Tasks::remove`] or [`Tasks::get_mut`], whose guard re-indexes the task
//! when it is dropped, so the indexes cannot drift from the records whatever the caller
//! changes. A task that the guard left STOPPED is made compact by the next change (the guard
//! holds a reference into the map, so it cannot replace its own entry).

use super::compact::{Compact, TaskRef};
use super::{Reservation, TaskRecord};
use std::collections::{BTreeMap, BTreeSet, btree_map};
use std::ops::{Bound, Deref, DerefMut};

/// Tasks by id, with the ids of the live (not STOPPED) tasks placed on each instance and
/// what they hold there, and the ids of the tasks desired RUNNING.
#[derive(Debug, Clone, Default)]
pub struct Tasks {
    by_id: BTreeMap<String, Slot>,
    index: Index,
    /// Tasks a guard left STOPPED but still whole (made compact by the next change).
    unsettled: Vec<String>,
}

/// One task as kept: whole (boxed, so that the map's nodes stay small) or compact.
#[derive(Debug, Clone, PartialEq)]
enum Slot {
    Whole(Box<TaskRecord>),
    Compact(Box<Compact>),
}

impl Slot {
    /// `rec` kept compact if it is STOPPED (whole if it cannot be, which is not expected).
    fn of(rec: TaskRecord) -> Slot {
        if rec.is_stopped()
            && let Ok(c) = Compact::of(&rec)
        {
            return Slot::Compact(Box::new(c));
        }
        Slot::Whole(Box::new(rec))
    }

    fn view(&self) -> TaskRef<'_> {
        match self {
            Slot::Whole(r) => TaskRef::Whole(r),
            Slot::Compact(c) => TaskRef::Compact(c),
        }
    }

    /// Where the task counts and what it holds there while it is live (a compact task is
    /// STOPPED, so never).
    fn held(&self) -> Option<(&str, &Reservation, Option<&str>)> {
        match self {
            Slot::Whole(r) => {
                live_instance(r).map(|i| (i, &r.reservation, r.task.group.as_deref()))
            }
            Slot::Compact(_) => None,
        }
    }
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
fn desired_running(t: TaskRef<'_>) -> bool {
    t.desired_status() == Some("RUNNING")
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

fn view_entry<'a>((id, slot): (&'a String, &'a Slot)) -> (&'a String, TaskRef<'a>) {
    (id, slot.view())
}

/// The tasks in id order (see [`Tasks::iter`]).
#[derive(Debug, Clone)]
pub struct Iter<'a>(btree_map::Iter<'a, String, Slot>);

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a String, TaskRef<'a>);
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(view_entry)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl<'a> IntoIterator for &'a Tasks {
    type Item = (&'a String, TaskRef<'a>);
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl Tasks {
    /// Task `id`.
    pub fn get(&self, id: &str) -> Option<TaskRef<'_>> {
        self.by_id.get(id).map(Slot::view)
    }

    /// Whether task `id` is kept.
    pub fn contains_key(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    /// How many tasks are kept.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether no task is kept.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Every task, in id order.
    pub fn iter(&self) -> Iter<'_> {
        Iter(self.by_id.iter())
    }

    /// Every task, in id order.
    pub fn values(&self) -> impl Iterator<Item = TaskRef<'_>> {
        self.by_id.values().map(Slot::view)
    }

    /// The ids, in order.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.by_id.keys()
    }

    /// Make compact the tasks that guards left STOPPED (every change does this first).
    pub fn settle(&mut self) {
        for id in std::mem::take(&mut self.unsettled) {
            if let Some(slot) = self.by_id.get_mut(&id)
                && let Slot::Whole(rec) = slot
                && rec.is_stopped()
                && let Ok(c) = Compact::of(rec)
            {
                *slot = Slot::Compact(Box::new(c));
            }
        }
    }

    /// Insert (or replace) task `id` (compact if it is STOPPED).
    pub fn insert(&mut self, id: String, rec: TaskRecord) {
        self.settle();
        let old = self.by_id.insert(id.clone(), Slot::of(rec));
        let idx = &mut self.index.live_by_instance;
        if let Some(o) = &old {
            if let Some((i, r, g)) = o.held() {
                unindex(idx, i, &id, r, g);
            }
            remove_from_group(&mut self.index.by_group, o.view().group(), &id);
        }
        if let Some(new) = self.by_id.get(&id) {
            add_to_group(&mut self.index.by_group, new.view().group(), &id);
            if let Some((i, r, g)) = new.held() {
                index(idx, i, &id, r, g);
            }
            set_desired_running(
                &mut self.index.desired_running,
                &id,
                desired_running(new.view()),
            );
        }
    }

    /// Remove task `id`; whether it was kept.
    pub fn remove(&mut self, id: &str) -> bool {
        self.settle();
        let Some(old) = self.by_id.remove(id) else {
            return false;
        };
        if let Some((i, r, g)) = old.held() {
            unindex(&mut self.index.live_by_instance, i, id, r, g);
        }
        self.index.desired_running.remove(id);
        remove_from_group(&mut self.index.by_group, old.view().group(), id);
        true
    }

    /// Task `id` for changing (decoded if it was compact); the index follows the change when
    /// the guard is dropped. `None` if there is no such task (or, not expected, a compact one
    /// cannot be decoded).
    pub fn get_mut(&mut self, id: &str) -> Option<TaskMut<'_>> {
        self.settle();
        let (key, slot) = self
            .by_id
            .range_mut::<str, _>((Bound::Included(id), Bound::Included(id)))
            .next()?;
        if let Slot::Compact(c) = slot {
            let rec = c.record().ok()?;
            *slot = Slot::Whole(Box::new(rec));
        }
        let Slot::Whole(rec) = slot else {
            return None;
        };
        let rec: &mut TaskRecord = rec;
        let before = Held::of(rec);
        let was_desired_running = rec.task.desired_status.as_deref() == Some("RUNNING");
        let group_before = rec.task.group.clone();
        Some(TaskMut {
            key,
            rec,
            index: &mut self.index,
            unsettled: &mut self.unsettled,
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
            .filter_map(|id| match self.by_id.get_key_value(id)? {
                (id, Slot::Whole(r)) => Some((id, &**r)),
                (_, Slot::Compact(_)) => None,
            })
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
    ) -> impl Iterator<Item = (&'a String, TaskRef<'a>)> + use<'a> {
        self.index
            .by_group
            .get(group)
            .into_iter()
            .flatten()
            .filter_map(|id| self.by_id.get_key_value(id))
            .map(view_entry)
    }

    /// The tasks desired RUNNING, in id order.
    pub fn desired_running(&self) -> impl Iterator<Item = (&String, TaskRef<'_>)> {
        self.index
            .desired_running
            .iter()
            .filter_map(|id| self.by_id.get_key_value(id))
            .map(view_entry)
    }

    /// How many tasks are kept compact (for tests and estimates).
    pub fn compact_count(&self) -> usize {
        self.by_id
            .values()
            .filter(|s| matches!(s, Slot::Compact(_)))
            .count()
    }

    /// Check that every compact task is STOPPED and decodes to a record whose compact form
    /// it is (for tests; it decodes every STOPPED task).
    pub fn verify_compact(&self) -> Result<(), String> {
        for (id, slot) in &self.by_id {
            if let Slot::Compact(c) = slot {
                let rec = c.record().map_err(|e| format!("task {id}: {e}"))?;
                if !rec.is_stopped() || Compact::of(&rec).as_ref() != Ok(&**c) {
                    return Err(format!("compact task {id} differs from its record {rec:?}"));
                }
            }
        }
        Ok(())
    }

    /// Check the index against a full scan of the records (for tests and simulations).
    pub fn verify_index(&self) -> Result<(), String> {
        let mut scanned = Index::default();
        for (id, slot) in &self.by_id {
            if let Some((i, r, g)) = slot.held() {
                let live = scanned.live_by_instance.entry(i.to_string()).or_default();
                live.ids.insert(id.clone());
                live.usage.add(r, g);
            }
            let t = slot.view();
            if desired_running(t) {
                scanned.desired_running.insert(id.clone());
            }
            if let Some(g) = t.group() {
                scanned
                    .by_group
                    .entry(g.to_string())
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
    unsettled: &'a mut Vec<String>,
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
        if self.rec.is_stopped() {
            self.unsettled.push(self.key.clone());
        }
        let desired = self.rec.task.desired_status.as_deref() == Some("RUNNING");
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
        assert!(t.remove("b"));
        assert!(!t.remove("b"));
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
    fn usage_by_scan(model: &BTreeMap<String, TaskRecord>, instance: &str) -> Usage {
        let mut u = Usage::default();
        for r in model.values() {
            if r.instance_id.as_deref() == Some(instance) && !r.is_stopped() {
                u.add(&r.reservation, r.task.group.as_deref());
            }
        }
        u
    }

    /// Whether every accessor of `t`, and its decoded record, read what `r` holds.
    fn same_view(t: TaskRef<'_>, r: &TaskRecord) -> bool {
        t.cluster() == r.cluster
            && t.task_arn() == r.task.task_arn.as_deref()
            && t.last_status() == r.task.last_status.as_deref()
            && t.is_stopped() == r.is_stopped()
            && t.desired_status() == r.task.desired_status.as_deref()
            && t.instance_id() == r.instance_id.as_deref()
            && t.group() == r.task.group.as_deref()
            && t.started_by() == r.task.started_by.as_deref()
            && t.client_token() == r.client_token.as_deref()
            && t.task_definition_arn() == r.task.task_definition_arn.as_deref()
            && t.launch_type() == r.task.launch_type.as_ref()
            && t.stop_code() == r.task.stop_code.as_ref()
            && t.health_status() == r.task.health_status.as_ref()
            && t.started_at() == r.task.started_at
            && t.stopped_at_ms() == r.stopped_at_ms
            && t.record().is_ok_and(|d| *d == *r)
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

    /// A task as Berth fills it in, with the members a STOPPED one has.
    fn full_task(id: &str, instance: Option<&str>, status: &str, ms: i64) -> TaskRecord {
        let mut rec = task(id, instance, status);
        #[allow(clippy::cast_precision_loss)]
        let secs = |ms: i64| ms as f64 / 1000.0;
        let arn = rec.task.task_arn.clone();
        rec.task.cluster_arn = Some("arn:aws:ecs:us-east-1:123456789012:cluster/default".into());
        rec.task.task_definition_arn =
            Some("arn:aws:ecs:us-east-1:123456789012:task-definition/web:3".into());
        rec.task.launch_type = Some(ecs::LaunchType::Ec2);
        rec.task.started_by = (ms % 3 == 0).then(|| "ecs-svc/1234567890".to_string());
        rec.task.created_at = Some(secs(ms - 2_001));
        rec.task.started_at = Some(secs(ms - 1_000));
        rec.task.health_status = Some(ecs::HealthStatus::parse("UNKNOWN"));
        rec.task.containers = Some(vec![ecs::Container {
            name: Some("main".into()),
            image: Some("busybox".into()),
            task_arn: arn,
            last_status: Some(status.into()),
            exit_code: (status == "STOPPED").then_some(0),
            ..Default::default()
        }]);
        rec.client_token = (ms % 2 == 0).then(|| format!("token-{ms}"));
        if status == "STOPPED" {
            rec.task.stop_code = Some(ecs::TaskStopCode::EssentialContainerExited);
            rec.task.stopped_reason = Some("Essential container in task exited".into());
            rec.task.stopped_at = Some(secs(ms));
            rec.stopped_at_ms = Some(ms);
        }
        rec
    }

    #[test]
    fn stopped_tasks_are_compact_and_read_back_whole() {
        let mut t = Tasks::default();
        let stopped = full_task("s", Some("i1"), "STOPPED", 1_796_026_012_123);
        let running = full_task("r", Some("i1"), "RUNNING", 1_796_026_012_124);
        t.insert("s".into(), stopped.clone());
        t.insert("r".into(), running.clone());
        assert_eq!(t.compact_count(), 1);
        assert!(matches!(t.get("s"), Some(TaskRef::Compact(_))));
        assert!(same_view(t.get("s").unwrap(), &stopped));
        assert!(same_view(t.get("r").unwrap(), &running));
        assert_eq!(live_ids(&t, "i1"), ["r"]);
        // A guard that stops a task leaves it whole; the next change makes it compact.
        let mut after = running.clone();
        {
            let mut g = t.get_mut("r").unwrap();
            g.task.last_status = Some("STOPPED".into());
            g.stopped_at_ms = Some(7);
            after.task.last_status = Some("STOPPED".into());
            after.stopped_at_ms = Some(7);
        }
        assert!(matches!(t.get("r"), Some(TaskRef::Whole(_))));
        assert!(same_view(t.get("r").unwrap(), &after));
        t.settle();
        assert_eq!(t.compact_count(), 2);
        assert!(same_view(t.get("r").unwrap(), &after));
        assert!(!t.any_live_on("i1"));
        // Changing a compact task decodes it; it is compact again after the change.
        t.get_mut("s").unwrap().task.stopped_reason = Some("changed".into());
        let mut changed = stopped.clone();
        changed.task.stopped_reason = Some("changed".into());
        assert!(same_view(t.get("s").unwrap(), &changed));
        assert!(t.remove("r"));
        assert_eq!(t.compact_count(), 1);
        assert!(same_view(t.get("s").unwrap(), &changed));
        t.verify_index().unwrap();
        t.verify_compact().unwrap();
    }

    #[test]
    fn a_stopped_task_takes_a_fraction_of_its_whole_size() {
        let rec = full_task(
            "0123456789abcdef0123456789abcdef",
            Some("fedcba9876543210fedcba9876543210"),
            "STOPPED",
            1_796_026_012_123,
        );
        let c = Compact::of(&rec).unwrap();
        let json = serde_json::to_vec(&rec).unwrap().len();
        // The whole record is ~1.3 KiB inline before any of its strings.
        assert!(std::mem::size_of::<TaskRecord>() > 1000);
        assert!(std::mem::size_of::<Compact>() < 300);
        assert!(
            c.heap_bytes() * 2 < json,
            "{} heap bytes for {json} bytes of JSON",
            c.heap_bytes()
        );
        // Only STOPPED tasks are made compact (the live index needs their reservation).
        assert!(Compact::of(&full_task("a", None, "RUNNING", 5)).is_err());
    }

    /// Apply `f` to task `id` both kept and in the model.
    fn change(
        t: &mut Tasks,
        model: &mut BTreeMap<String, TaskRecord>,
        id: u8,
        f: &dyn Fn(&mut TaskRecord),
    ) {
        let id = format!("t{id}");
        if let Some(mut r) = t.get_mut(&id) {
            f(&mut r);
        }
        if let Some(r) = model.get_mut(&id) {
            f(r);
        }
    }

    proptest! {
        #[test]
        fn index_and_reads_equal_a_model(ops in proptest::collection::vec(op(), 0..200)) {
            let mut t = Tasks::default();
            // The same changes on plain records: what every read must show.
            let mut model: BTreeMap<String, TaskRecord> = BTreeMap::new();
            for o in ops {
                match o {
                    Op::Insert(id, i, s) => {
                        let id = format!("t{id}");
                        let inst = i.map(|i| format!("i{i}"));
                        let ms = 1_796_026_000_000 + i64::from(s) * 7_919 + i64::from(i.unwrap_or(9));
                        let mut rec = full_task(&id, inst.as_deref(), STATUSES[usize::from(s)], ms);
                        rec.reservation.cpu = i32::from(s) * 100;
                        rec.reservation.memory = 128;
                        rec.reservation.counted = s % 2 == 0;
                        rec.task.group = Some(format!("family:f{}", s % 2));
                        t.insert(id.clone(), rec.clone());
                        model.insert(id, rec);
                    }
                    Op::Remove(id) => {
                        let id = format!("t{id}");
                        prop_assert_eq!(t.remove(&id), model.remove(&id).is_some());
                    }
                    Op::SetStatus(id, s) => change(&mut t, &mut model, id, &|r| {
                        r.task.last_status = Some(STATUSES[usize::from(s)].into());
                    }),
                    Op::SetDesired(id, s) => change(&mut t, &mut model, id, &|r| {
                        r.task.desired_status = Some(STATUSES[usize::from(s)].into());
                    }),
                    Op::Move(id, i) => change(&mut t, &mut model, id, &|r| {
                        r.instance_id = i.map(|i| format!("i{i}"));
                    }),
                    Op::Reserve(id, res) => change(&mut t, &mut model, id, &|r| {
                        r.reservation = res.clone();
                    }),
                    Op::Group(id, g) => change(&mut t, &mut model, id, &|r| {
                        r.task.group = g.map(|g| format!("service:s{g}"));
                    }),
                }
                prop_assert_eq!(t.verify_index(), Ok(()));
                prop_assert_eq!(t.verify_compact(), Ok(()));
                // Every read shows the model, whichever form the task is kept in.
                prop_assert_eq!(t.len(), model.len());
                prop_assert!(t.keys().eq(model.keys()));
                for (id, r) in &model {
                    prop_assert!(same_view(t.get(id).unwrap(), r), "task {}", id);
                }
                // Only STOPPED tasks are compact, and all of them but the one a guard just
                // stopped.
                let stopped = model.values().filter(|r| r.is_stopped()).count();
                prop_assert!(t.compact_count() <= stopped && t.compact_count() + 1 >= stopped);
                for i in 0..4 {
                    let inst = format!("i{i}");
                    let scan: Vec<String> = model
                        .iter()
                        .filter(|(_, r)| r.instance_id.as_deref() == Some(inst.as_str()) && !r.is_stopped())
                        .map(|(id, _)| id.clone())
                        .collect();
                    prop_assert_eq!(live_ids(&t, &inst), scan);
                    // The usage kept as tasks change is the usage recomputed from scratch.
                    let kept = t.usage_on(&inst).cloned().unwrap_or_default();
                    prop_assert_eq!(kept, usage_by_scan(&model, &inst));
                }
                let scan: Vec<&String> = model
                    .iter()
                    .filter(|(_, r)| r.task.desired_status.as_deref() == Some("RUNNING"))
                    .map(|(id, _)| id)
                    .collect();
                prop_assert_eq!(t.desired_running().map(|(id, _)| id).collect::<Vec<_>>(), scan);
                for g in ["family:f0", "family:f1", "service:s0", "service:s1", "service:s2"] {
                    let scan: Vec<&String> = model
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
