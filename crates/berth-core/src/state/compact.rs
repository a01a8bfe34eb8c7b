//! STOPPED tasks as kept in memory: the few fields that scans read, and the whole record
//! compressed.
//!
//! ECS keeps a STOPPED task describable for at least an hour, so a busy cluster holds far
//! more STOPPED tasks than live ones (150,000 after RunTask x10 at 40/s for an hour). As a
//! [`TaskRecord`] (an `ecs::Task` of ~40 optional members, its containers, a dozen ARNs and
//! names as separate strings) one took ~3.5 KiB of RAM. A [`Compact`] task keeps what
//! listings, counts, the service scheduler and retention read without decoding (cluster,
//! ARNs, statuses, group, startedBy, ...) and the record itself as its JSON (the stored
//! form) compressed with zstd against a dictionary of sample STOPPED tasks: ~1.1 KiB of RSS
//! per record in all (index entries and allocator overhead included).
//! Reads that need the whole task (DescribeTasks, StopTask's answer, RunTask's idempotent
//! replay) decode it; the JSON round trip is the one every record already makes when the
//! server restarts, so a decoded task is exactly what a restarted server would answer.
//!
//! The compressed form lives only in memory: its dictionary may change freely (unlike the
//! store's, which is frozen with the data written against it).

use super::TaskRecord;
use berth_api::ecs;
use std::borrow::Cow;
use std::cell::RefCell;

/// Sample STOPPED task records (raw-content zstd dictionary).
const DICTIONARY: &[u8] = include_bytes!("stopped-tasks.jsonl");

/// zstd level: records are small; higher levels cost time and save little.
const LEVEL: i32 = 3;

/// Largest record a compact body may claim to hold (bounds what a damaged one allocates).
const MAX_BODY: u64 = 16 * 1024 * 1024;

/// Why a record could not be made compact or read back (not expected: the bodies are
/// Berth's own, made in this process).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("compact task record: {0}")]
pub struct CompactError(String);

/// A STOPPED task: what scans read, and the record compressed.
#[derive(Debug, Clone, PartialEq)]
pub struct Compact {
    cluster: Box<str>,
    task_arn: Option<Box<str>>,
    /// (`lastStatus` is STOPPED.)
    desired_status: Option<Cow<'static, str>>,
    instance_id: Option<Box<str>>,
    group: Option<Box<str>>,
    started_by: Option<Box<str>>,
    client_token: Option<Box<str>>,
    task_definition_arn: Option<Box<str>>,
    launch_type: Option<ecs::LaunchType>,
    stop_code: Option<ecs::TaskStopCode>,
    health_status: Option<ecs::HealthStatus>,
    started_at: Option<f64>,
    stopped_at_ms: Option<i64>,
    /// zstd frame (with its content size) of the record's JSON.
    body: Box<[u8]>,
}

fn boxed(s: Option<&String>) -> Option<Box<str>> {
    s.map(|s| s.as_str().into())
}

/// A status, without a copy when it is one of ECS's.
fn status(s: Option<&String>) -> Option<Cow<'static, str>> {
    const KNOWN: [&str; 3] = ["STOPPED", "RUNNING", "PENDING"];
    s.map(|s| match KNOWN.iter().find(|k| **k == s.as_str()) {
        Some(k) => Cow::Borrowed(*k),
        None => Cow::Owned(s.clone()),
    })
}

impl Compact {
    /// The compact form of `rec`, which must be STOPPED (a live task's reservation and
    /// every member stay at hand in its whole record).
    pub fn of(rec: &TaskRecord) -> Result<Compact, CompactError> {
        if !rec.is_stopped() {
            return Err(CompactError("only STOPPED tasks are kept compact".into()));
        }
        let json = serde_json::to_vec(rec).map_err(|e| CompactError(e.to_string()))?;
        let body = with_codec(|c| {
            c.compressor
                .compress(&json)
                .map_err(|e| CompactError(format!("cannot compress: {e}")))
        })?;
        let t = &rec.task;
        Ok(Compact {
            cluster: rec.cluster.as_str().into(),
            task_arn: boxed(t.task_arn.as_ref()),
            desired_status: status(t.desired_status.as_ref()),
            instance_id: boxed(rec.instance_id.as_ref()),
            group: boxed(t.group.as_ref()),
            started_by: boxed(t.started_by.as_ref()),
            client_token: boxed(rec.client_token.as_ref()),
            task_definition_arn: boxed(t.task_definition_arn.as_ref()),
            launch_type: t.launch_type.clone(),
            stop_code: t.stop_code.clone(),
            health_status: t.health_status.clone(),
            started_at: t.started_at,
            stopped_at_ms: rec.stopped_at_ms,
            body: body.into_boxed_slice(),
        })
    }

    /// The whole record, decoded.
    pub fn record(&self) -> Result<TaskRecord, CompactError> {
        let size = zstd::zstd_safe::get_frame_content_size(&self.body)
            .ok()
            .flatten()
            .filter(|&n| n <= MAX_BODY)
            .ok_or_else(|| CompactError("damaged frame".into()))?;
        let capacity =
            usize::try_from(size).map_err(|_| CompactError("record too large".into()))?;
        let json = with_codec(|c| {
            c.decompressor
                .decompress(&self.body, capacity)
                .map_err(|e| CompactError(format!("cannot decompress: {e}")))
        })?;
        serde_json::from_slice(&json).map_err(|e| CompactError(e.to_string()))
    }

    /// Heap bytes held (for tests and estimates; allocator overhead not included).
    pub fn heap_bytes(&self) -> usize {
        let s = |o: &Option<Box<str>>| o.as_ref().map_or(0, |s| s.len());
        self.cluster.len()
            + s(&self.task_arn)
            + self
                .desired_status
                .as_ref()
                .map_or(0, |s| if let Cow::Owned(s) = s { s.len() } else { 0 })
            + s(&self.instance_id)
            + s(&self.group)
            + s(&self.started_by)
            + s(&self.client_token)
            + s(&self.task_definition_arn)
            + self.body.len()
    }
}

/// A task as [`super::Tasks`] keeps it: whole while live, compact once STOPPED. The
/// accessors read the same members of either form; [`TaskRef::record`] gives the whole one.
#[derive(Debug, Clone, Copy)]
pub enum TaskRef<'a> {
    /// Kept whole (every live task; a STOPPED one until it is made compact).
    Whole(&'a TaskRecord),
    /// Kept compact (STOPPED).
    Compact(&'a Compact),
}

impl<'a> TaskRef<'a> {
    /// Name of the cluster it runs in.
    pub fn cluster(self) -> &'a str {
        match self {
            TaskRef::Whole(r) => &r.cluster,
            TaskRef::Compact(c) => &c.cluster,
        }
    }

    /// `taskArn`.
    pub fn task_arn(self) -> Option<&'a str> {
        match self {
            TaskRef::Whole(r) => r.task.task_arn.as_deref(),
            TaskRef::Compact(c) => c.task_arn.as_deref(),
        }
    }

    /// `lastStatus`.
    pub fn last_status(self) -> Option<&'a str> {
        match self {
            TaskRef::Whole(r) => r.task.last_status.as_deref(),
            TaskRef::Compact(_) => Some("STOPPED"),
        }
    }

    /// Whether the task has fully stopped.
    pub fn is_stopped(self) -> bool {
        self.last_status() == Some("STOPPED")
    }

    /// `desiredStatus`.
    pub fn desired_status(self) -> Option<&'a str> {
        match self {
            TaskRef::Whole(r) => r.task.desired_status.as_deref(),
            TaskRef::Compact(c) => c.desired_status.as_deref(),
        }
    }

    /// The container instance (id) it is placed on.
    pub fn instance_id(self) -> Option<&'a str> {
        match self {
            TaskRef::Whole(r) => r.instance_id.as_deref(),
            TaskRef::Compact(c) => c.instance_id.as_deref(),
        }
    }

    /// `group`.
    pub fn group(self) -> Option<&'a str> {
        match self {
            TaskRef::Whole(r) => r.task.group.as_deref(),
            TaskRef::Compact(c) => c.group.as_deref(),
        }
    }

    /// `startedBy`.
    pub fn started_by(self) -> Option<&'a str> {
        match self {
            TaskRef::Whole(r) => r.task.started_by.as_deref(),
            TaskRef::Compact(c) => c.started_by.as_deref(),
        }
    }

    /// RunTask/StartTask idempotency token.
    pub fn client_token(self) -> Option<&'a str> {
        match self {
            TaskRef::Whole(r) => r.client_token.as_deref(),
            TaskRef::Compact(c) => c.client_token.as_deref(),
        }
    }

    /// `taskDefinitionArn`.
    pub fn task_definition_arn(self) -> Option<&'a str> {
        match self {
            TaskRef::Whole(r) => r.task.task_definition_arn.as_deref(),
            TaskRef::Compact(c) => c.task_definition_arn.as_deref(),
        }
    }

    /// `launchType`.
    pub fn launch_type(self) -> Option<&'a ecs::LaunchType> {
        match self {
            TaskRef::Whole(r) => r.task.launch_type.as_ref(),
            TaskRef::Compact(c) => c.launch_type.as_ref(),
        }
    }

    /// `stopCode`.
    pub fn stop_code(self) -> Option<&'a ecs::TaskStopCode> {
        match self {
            TaskRef::Whole(r) => r.task.stop_code.as_ref(),
            TaskRef::Compact(c) => c.stop_code.as_ref(),
        }
    }

    /// `healthStatus`.
    pub fn health_status(self) -> Option<&'a ecs::HealthStatus> {
        match self {
            TaskRef::Whole(r) => r.task.health_status.as_ref(),
            TaskRef::Compact(c) => c.health_status.as_ref(),
        }
    }

    /// `startedAt` (epoch seconds).
    pub fn started_at(self) -> Option<f64> {
        match self {
            TaskRef::Whole(r) => r.task.started_at,
            TaskRef::Compact(c) => c.started_at,
        }
    }

    /// When it reached STOPPED (epoch ms), for retention.
    pub fn stopped_at_ms(self) -> Option<i64> {
        match self {
            TaskRef::Whole(r) => r.stopped_at_ms,
            TaskRef::Compact(c) => c.stopped_at_ms,
        }
    }

    /// The record, if it is kept whole (every live task is).
    pub fn whole(self) -> Option<&'a TaskRecord> {
        match self {
            TaskRef::Whole(r) => Some(r),
            TaskRef::Compact(_) => None,
        }
    }

    /// The whole record (decoded if it is kept compact).
    pub fn record(self) -> Result<Cow<'a, TaskRecord>, CompactError> {
        match self {
            TaskRef::Whole(r) => Ok(Cow::Borrowed(r)),
            TaskRef::Compact(c) => c.record().map(Cow::Owned),
        }
    }
}

/// The compressor and decompressor with the dictionary loaded, one pair per thread (the
/// world is used from the server's worker threads in turn).
struct Codec {
    compressor: zstd::bulk::Compressor<'static>,
    decompressor: zstd::bulk::Decompressor<'static>,
}

thread_local! {
    static CODEC: RefCell<Option<Codec>> = const { RefCell::new(None) };
}

fn with_codec<R>(f: impl FnOnce(&mut Codec) -> Result<R, CompactError>) -> Result<R, CompactError> {
    CODEC
        .try_with(|cell| {
            let mut slot = cell
                .try_borrow_mut()
                .map_err(|_| CompactError("codec in use".into()))?;
            if slot.is_none() {
                let err = |e: std::io::Error| CompactError(format!("cannot set up zstd: {e}"));
                *slot = Some(Codec {
                    compressor: zstd::bulk::Compressor::with_dictionary(LEVEL, DICTIONARY)
                        .map_err(err)?,
                    decompressor: zstd::bulk::Decompressor::with_dictionary(DICTIONARY)
                        .map_err(err)?,
                });
            }
            match slot.as_mut() {
                Some(codec) => f(codec),
                None => Err(CompactError("no codec".into())),
            }
        })
        .map_err(|_| CompactError("thread is exiting".into()))?
}
