//! Log groups and log streams: create, delete, describe, retention and tags.

use crate::LogsError;
use crate::token;
use crate::writer::WriteCtx;
use berth_api::logs;
use berth_core::PartitionKey;
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::collections::BTreeMap;

/// The retention periods CloudWatch accepts, in days.
pub const RETENTION_DAYS: &[i32] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

/// Longest page of DescribeLogGroups / DescribeLogStreams (and the default).
const MAX_DESCRIBE: i64 = 50;

/// Most tags on one log group.
const MAX_TAGS: usize = 50;

/// One stored log group.
#[derive(Debug, Clone)]
pub(crate) struct GroupRow {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) created_ms: i64,
    pub(crate) retention_days: Option<i32>,
    pub(crate) class: String,
    pub(crate) kms_key_id: Option<String>,
    pub(crate) tags: BTreeMap<String, String>,
    pub(crate) stored_bytes: i64,
}

const GROUP_COLS: &str =
    "id, name, created_ms, retention_days, class, kms_key_id, tags, stored_bytes";

fn group_row(r: &Row<'_>) -> rusqlite::Result<GroupRow> {
    let tags: String = r.get(6)?;
    Ok(GroupRow {
        id: r.get(0)?,
        name: r.get(1)?,
        created_ms: r.get(2)?,
        retention_days: r.get(3)?,
        class: r.get(4)?,
        kms_key_id: r.get(5)?,
        tags: serde_json::from_str(&tags).unwrap_or_default(),
        stored_bytes: r.get(7)?,
    })
}

/// One stored log stream.
#[derive(Debug, Clone)]
pub(crate) struct StreamRow {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) created_ms: i64,
    pub(crate) first_event_ms: Option<i64>,
    pub(crate) last_event_ms: Option<i64>,
    pub(crate) last_ingestion_ms: Option<i64>,
    pub(crate) stored_bytes: i64,
    pub(crate) upload_seq: i64,
    pub(crate) producer: Option<String>,
    pub(crate) producer_seq: Option<i64>,
}

const STREAM_COLS: &str = "id, name, created_ms, first_event_ms, last_event_ms, last_ingestion_ms, stored_bytes, upload_seq, producer, producer_seq";

fn stream_row(r: &Row<'_>) -> rusqlite::Result<StreamRow> {
    Ok(StreamRow {
        id: r.get(0)?,
        name: r.get(1)?,
        created_ms: r.get(2)?,
        first_event_ms: r.get(3)?,
        last_event_ms: r.get(4)?,
        last_ingestion_ms: r.get(5)?,
        stored_bytes: r.get(6)?,
        upload_seq: r.get(7)?,
        producer: r.get(8)?,
        producer_seq: r.get(9)?,
    })
}

/// `arn:aws:logs:REGION:ACCOUNT:log-group:NAME` (the `logGroupArn` form, without `:*`).
pub fn group_arn(key: &PartitionKey, name: &str) -> String {
    format!(
        "arn:aws:logs:{}:{}:log-group:{name}",
        key.region, key.account
    )
}

/// The log group named by a `logGroupArn` (with or without the trailing `:*`), if it is one
/// of this partition's.
fn group_name_from_arn<'a>(key: &PartitionKey, arn: &'a str) -> Option<&'a str> {
    let prefix = group_arn(key, "");
    let name = arn.strip_prefix(prefix.as_str())?;
    let name = name.strip_suffix(":*").unwrap_or(name);
    (!name.is_empty() && !name.contains(':')).then_some(name)
}

/// The group a request names by `logGroupName` or `logGroupIdentifier` (name or ARN).
pub(crate) fn group_ref(
    key: &PartitionKey,
    name: Option<&str>,
    identifier: Option<&str>,
) -> Result<String, LogsError> {
    match (name, identifier) {
        (Some(_), Some(_)) => Err(LogsError::invalid(
            "LogGroup name and LogGroup ARN are mutually exclusive parameters.",
        )),
        (None, None) => Err(LogsError::invalid(
            "Either logGroupName or logGroupIdentifier must be specified.",
        )),
        (Some(n), None) => Ok(n.to_string()),
        (None, Some(id)) if id.starts_with("arn:") => group_name_from_arn(key, id)
            .map(str::to_string)
            .ok_or(LogsError::GroupNotFound),
        (None, Some(id)) => Ok(id.to_string()),
    }
}

/// The group, if it exists.
pub(crate) fn find_group(
    conn: &Connection,
    key: &PartitionKey,
    name: &str,
) -> Result<Option<GroupRow>, LogsError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {GROUP_COLS} FROM groups WHERE account = ?1 AND region = ?2 AND name = ?3"
    ))?;
    Ok(stmt
        .query_row(params![key.account, key.region, name], group_row)
        .optional()?)
}

/// The group, or `ResourceNotFoundException`.
pub(crate) fn group(
    conn: &Connection,
    key: &PartitionKey,
    name: &str,
) -> Result<GroupRow, LogsError> {
    find_group(conn, key, name)?.ok_or(LogsError::GroupNotFound)
}

/// The stream, if it exists.
pub(crate) fn find_stream(
    conn: &Connection,
    group_id: i64,
    name: &str,
) -> Result<Option<StreamRow>, LogsError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {STREAM_COLS} FROM streams WHERE group_id = ?1 AND name = ?2"
    ))?;
    Ok(stmt
        .query_row(params![group_id, name], stream_row)
        .optional()?)
}

/// The stream, or `ResourceNotFoundException`.
pub(crate) fn stream(conn: &Connection, group_id: i64, name: &str) -> Result<StreamRow, LogsError> {
    find_stream(conn, group_id, name)?.ok_or(LogsError::StreamNotFound)
}

fn empty() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

fn tags_json(tags: &BTreeMap<String, String>) -> String {
    serde_json::to_string(tags).unwrap_or_else(|_| "{}".into())
}

/// Create a group (shared by CreateLogGroup and the agent's `awslogs-create-group`).
pub(crate) fn insert_group(
    conn: &Connection,
    key: &PartitionKey,
    name: &str,
    class: &str,
    kms_key_id: Option<&str>,
    tags: &BTreeMap<String, String>,
    now_ms: i64,
) -> Result<i64, LogsError> {
    if find_group(conn, key, name)?.is_some() {
        return Err(LogsError::GroupExists);
    }
    conn.prepare_cached(
        "INSERT INTO groups (account, region, name, created_ms, class, kms_key_id, tags)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        key.account,
        key.region,
        name,
        now_ms,
        class,
        kms_key_id,
        tags_json(tags)
    ])?;
    Ok(conn.last_insert_rowid())
}

/// Create a stream in a group.
pub(crate) fn insert_stream(
    conn: &Connection,
    group_id: i64,
    name: &str,
    now_ms: i64,
) -> Result<i64, LogsError> {
    if find_stream(conn, group_id, name)?.is_some() {
        return Err(LogsError::StreamExists);
    }
    conn.prepare_cached("INSERT INTO streams (group_id, name, created_ms) VALUES (?1, ?2, ?3)")?
        .execute(params![group_id, name, now_ms])?;
    Ok(conn.last_insert_rowid())
}

/// CreateLogGroup.
pub(crate) fn create_group(
    conn: &Connection,
    _ctx: &mut WriteCtx,
    key: &PartitionKey,
    req: logs::CreateLogGroupRequest,
    now_ms: i64,
) -> Result<serde_json::Value, LogsError> {
    let name = req.log_group_name.unwrap_or_default();
    let class = req
        .log_group_class
        .as_ref()
        .map_or("STANDARD", |c| c.as_str())
        .to_string();
    insert_group(
        conn,
        key,
        &name,
        &class,
        req.kms_key_id.as_deref(),
        &req.tags.unwrap_or_default(),
        now_ms,
    )?;
    Ok(empty())
}

/// DeleteLogGroup: the group and its streams go at once; their events are purged by the
/// sweep (they are unreachable from now on: ids are never reused).
pub(crate) fn delete_group(
    conn: &Connection,
    _ctx: &mut WriteCtx,
    key: &PartitionKey,
    req: logs::DeleteLogGroupRequest,
    _now_ms: i64,
) -> Result<serde_json::Value, LogsError> {
    let g = group(conn, key, req.log_group_name.as_deref().unwrap_or_default())?;
    conn.execute(
        "INSERT OR REPLACE INTO doomed_streams (stream_id, bytes)
         SELECT id, stored_bytes FROM streams WHERE group_id = ?1",
        params![g.id],
    )?;
    conn.execute("DELETE FROM streams WHERE group_id = ?1", params![g.id])?;
    conn.execute("DELETE FROM groups WHERE id = ?1", params![g.id])?;
    Ok(empty())
}

fn describe_group(key: &PartitionKey, g: &GroupRow) -> logs::LogGroup {
    let arn = group_arn(key, &g.name);
    logs::LogGroup {
        arn: Some(format!("{arn}:*")),
        log_group_arn: Some(arn),
        log_group_name: Some(g.name.clone()),
        creation_time: Some(g.created_ms),
        retention_in_days: g.retention_days,
        metric_filter_count: Some(0),
        stored_bytes: Some(g.stored_bytes),
        log_group_class: Some(logs::LogGroupClass::parse(&g.class)),
        kms_key_id: g.kms_key_id.clone(),
        deletion_protection_enabled: Some(false),
        ..Default::default()
    }
}

fn limit(requested: Option<i32>) -> i64 {
    requested.map_or(MAX_DESCRIBE, |n| i64::from(n).clamp(1, MAX_DESCRIBE))
}

/// DescribeLogGroups: ASCII order, prefix or substring pattern, paged by name.
pub(crate) fn describe_groups(
    conn: &Connection,
    key: &PartitionKey,
    req: logs::DescribeLogGroupsRequest,
) -> Result<logs::DescribeLogGroupsResponse, LogsError> {
    if req.log_group_name_prefix.is_some() && req.log_group_name_pattern.is_some() {
        return Err(LogsError::invalid(
            "LogGroupNamePrefix and LogGroupNamePattern are mutually exclusive parameters.",
        ));
    }
    if req.log_group_identifiers.is_some()
        && (req.log_group_name_prefix.is_some() || req.log_group_name_pattern.is_some())
    {
        return Err(LogsError::invalid(
            "logGroupIdentifiers cannot be used with logGroupNamePrefix or logGroupNamePattern.",
        ));
    }
    let after = req
        .next_token
        .as_deref()
        .map(token::decode_key)
        .transpose()?;
    let limit = limit(req.limit);
    let names: Option<String> = req.log_group_identifiers.as_ref().map(|ids| {
        let names: Vec<&str> = ids
            .iter()
            .filter_map(|id| {
                if id.starts_with("arn:") {
                    group_name_from_arn(key, id)
                } else {
                    Some(id.as_str())
                }
            })
            .collect();
        serde_json::to_string(&names).unwrap_or_else(|_| "[]".into())
    });
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {GROUP_COLS} FROM groups
         WHERE account = ?1 AND region = ?2 AND name > ?3
           AND (?4 IS NULL OR substr(name, 1, length(?4)) = ?4)
           AND (?5 IS NULL OR instr(name, ?5) > 0)
           AND (?6 IS NULL OR name IN (SELECT value FROM json_each(?6)))
           AND (?7 IS NULL OR class = ?7)
         ORDER BY name LIMIT ?8"
    ))?;
    let rows: Vec<GroupRow> = stmt
        .query_map(
            params![
                key.account,
                key.region,
                after.unwrap_or_default(),
                req.log_group_name_prefix,
                req.log_group_name_pattern.filter(|p| !p.is_empty()),
                names,
                req.log_group_class.as_ref().map(|c| c.as_str().to_string()),
                limit + 1
            ],
            group_row,
        )?
        .collect::<Result<_, _>>()?;
    let more = i64::try_from(rows.len()).unwrap_or(i64::MAX) > limit;
    let page: Vec<GroupRow> = rows
        .into_iter()
        .take(usize::try_from(limit).unwrap_or(0))
        .collect();
    let next_token = more
        .then(|| page.last().map(|g| token::encode_key(&g.name)))
        .flatten();
    Ok(logs::DescribeLogGroupsResponse {
        log_groups: Some(page.iter().map(|g| describe_group(key, g)).collect()),
        next_token,
    })
}

/// PutRetentionPolicy.
pub(crate) fn put_retention(
    conn: &Connection,
    _ctx: &mut WriteCtx,
    key: &PartitionKey,
    req: logs::PutRetentionPolicyRequest,
    _now_ms: i64,
) -> Result<serde_json::Value, LogsError> {
    let days = req.retention_in_days.unwrap_or_default();
    if !RETENTION_DAYS.contains(&days) {
        let allowed: Vec<String> = RETENTION_DAYS.iter().map(ToString::to_string).collect();
        return Err(LogsError::invalid(format!(
            "1 validation error detected: Value '{days}' at 'retentionInDays' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
            allowed.join(", ")
        )));
    }
    let g = group(conn, key, req.log_group_name.as_deref().unwrap_or_default())?;
    conn.execute(
        "UPDATE groups SET retention_days = ?2 WHERE id = ?1",
        params![g.id, days],
    )?;
    Ok(empty())
}

/// DeleteRetentionPolicy.
pub(crate) fn delete_retention(
    conn: &Connection,
    _ctx: &mut WriteCtx,
    key: &PartitionKey,
    req: logs::DeleteRetentionPolicyRequest,
    _now_ms: i64,
) -> Result<serde_json::Value, LogsError> {
    let g = group(conn, key, req.log_group_name.as_deref().unwrap_or_default())?;
    conn.execute(
        "UPDATE groups SET retention_days = NULL WHERE id = ?1",
        params![g.id],
    )?;
    Ok(empty())
}

fn resource_group(conn: &Connection, key: &PartitionKey, arn: &str) -> Result<GroupRow, LogsError> {
    let name = group_name_from_arn(key, arn).ok_or_else(|| {
        LogsError::ResourceNotFound("The specified resource does not exist.".into())
    })?;
    group(conn, key, name)
}

fn set_tags(
    conn: &Connection,
    g: &GroupRow,
    tags: &BTreeMap<String, String>,
) -> Result<(), LogsError> {
    if tags.len() > MAX_TAGS {
        return Err(LogsError::TooManyTags);
    }
    conn.execute(
        "UPDATE groups SET tags = ?2 WHERE id = ?1",
        params![g.id, tags_json(tags)],
    )?;
    Ok(())
}

/// TagResource (log groups).
pub(crate) fn tag_resource(
    conn: &Connection,
    _ctx: &mut WriteCtx,
    key: &PartitionKey,
    req: logs::TagResourceRequest,
    _now_ms: i64,
) -> Result<serde_json::Value, LogsError> {
    let g = resource_group(conn, key, req.resource_arn.as_deref().unwrap_or_default())?;
    let mut tags = g.tags.clone();
    tags.extend(req.tags.unwrap_or_default());
    set_tags(conn, &g, &tags)?;
    Ok(empty())
}

/// UntagResource (log groups).
pub(crate) fn untag_resource(
    conn: &Connection,
    _ctx: &mut WriteCtx,
    key: &PartitionKey,
    req: logs::UntagResourceRequest,
    _now_ms: i64,
) -> Result<serde_json::Value, LogsError> {
    let g = resource_group(conn, key, req.resource_arn.as_deref().unwrap_or_default())?;
    let mut tags = g.tags.clone();
    for k in req.tag_keys.unwrap_or_default() {
        tags.remove(&k);
    }
    set_tags(conn, &g, &tags)?;
    Ok(empty())
}

/// ListTagsForResource (log groups).
pub(crate) fn list_tags_for_resource(
    conn: &Connection,
    key: &PartitionKey,
    req: logs::ListTagsForResourceRequest,
) -> Result<logs::ListTagsForResourceResponse, LogsError> {
    let g = resource_group(conn, key, req.resource_arn.as_deref().unwrap_or_default())?;
    Ok(logs::ListTagsForResourceResponse { tags: Some(g.tags) })
}

/// TagLogGroup (legacy).
pub(crate) fn tag_log_group(
    conn: &Connection,
    _ctx: &mut WriteCtx,
    key: &PartitionKey,
    req: logs::TagLogGroupRequest,
    _now_ms: i64,
) -> Result<serde_json::Value, LogsError> {
    let g = group(conn, key, req.log_group_name.as_deref().unwrap_or_default())?;
    let mut tags = g.tags.clone();
    tags.extend(req.tags.unwrap_or_default());
    set_tags(conn, &g, &tags)?;
    Ok(empty())
}

/// UntagLogGroup (legacy).
pub(crate) fn untag_log_group(
    conn: &Connection,
    _ctx: &mut WriteCtx,
    key: &PartitionKey,
    req: logs::UntagLogGroupRequest,
    _now_ms: i64,
) -> Result<serde_json::Value, LogsError> {
    let g = group(conn, key, req.log_group_name.as_deref().unwrap_or_default())?;
    let mut tags = g.tags.clone();
    for k in req.tags.unwrap_or_default() {
        tags.remove(&k);
    }
    set_tags(conn, &g, &tags)?;
    Ok(empty())
}

/// ListTagsLogGroup (legacy).
pub(crate) fn list_tags_log_group(
    conn: &Connection,
    key: &PartitionKey,
    req: logs::ListTagsLogGroupRequest,
) -> Result<logs::ListTagsLogGroupResponse, LogsError> {
    let g = group(conn, key, req.log_group_name.as_deref().unwrap_or_default())?;
    Ok(logs::ListTagsLogGroupResponse { tags: Some(g.tags) })
}

/// CreateLogStream.
pub(crate) fn create_stream(
    conn: &Connection,
    _ctx: &mut WriteCtx,
    key: &PartitionKey,
    req: logs::CreateLogStreamRequest,
    now_ms: i64,
) -> Result<serde_json::Value, LogsError> {
    let g = group(conn, key, req.log_group_name.as_deref().unwrap_or_default())?;
    insert_stream(
        conn,
        g.id,
        req.log_stream_name.as_deref().unwrap_or_default(),
        now_ms,
    )?;
    Ok(empty())
}

/// DeleteLogStream: the stream goes at once; its events are purged by the sweep.
pub(crate) fn delete_stream(
    conn: &Connection,
    _ctx: &mut WriteCtx,
    key: &PartitionKey,
    req: logs::DeleteLogStreamRequest,
    _now_ms: i64,
) -> Result<serde_json::Value, LogsError> {
    let g = group(conn, key, req.log_group_name.as_deref().unwrap_or_default())?;
    let s = stream(
        conn,
        g.id,
        req.log_stream_name.as_deref().unwrap_or_default(),
    )?;
    conn.execute(
        "INSERT OR REPLACE INTO doomed_streams (stream_id, bytes) VALUES (?1, ?2)",
        params![s.id, s.stored_bytes],
    )?;
    conn.execute("DELETE FROM streams WHERE id = ?1", params![s.id])?;
    conn.execute(
        "UPDATE groups SET stored_bytes = max(0, stored_bytes - ?2) WHERE id = ?1",
        params![g.id, s.stored_bytes],
    )?;
    Ok(empty())
}

fn describe_stream(key: &PartitionKey, g: &GroupRow, s: &StreamRow) -> logs::LogStream {
    logs::LogStream {
        arn: Some(format!("{}:log-stream:{}", group_arn(key, &g.name), s.name)),
        log_stream_name: Some(s.name.clone()),
        creation_time: Some(s.created_ms),
        first_event_timestamp: s.first_event_ms,
        last_event_timestamp: s.last_event_ms,
        last_ingestion_time: s.last_ingestion_ms,
        stored_bytes: Some(s.stored_bytes),
        upload_sequence_token: Some(token::sequence_token(s.upload_seq + 1)),
    }
}

/// DescribeLogStreams: by name (optionally under a prefix) or by last event time, either
/// way round, paged.
pub(crate) fn describe_streams(
    conn: &Connection,
    key: &PartitionKey,
    req: logs::DescribeLogStreamsRequest,
) -> Result<logs::DescribeLogStreamsResponse, LogsError> {
    let name = group_ref(
        key,
        req.log_group_name.as_deref(),
        req.log_group_identifier.as_deref(),
    )?;
    let by_time = matches!(req.order_by, Some(logs::OrderBy::LastEventTime));
    if by_time && req.log_stream_name_prefix.is_some() {
        return Err(LogsError::invalid(
            "Cannot order by LastEventTime with a logStreamNamePrefix.",
        ));
    }
    let g = group(conn, key, &name)?;
    let descending = req.descending.unwrap_or(false);
    let limit = limit(req.limit);
    // The sort key: the name, or (last event time, name) with streams without events first.
    let after = req
        .next_token
        .as_deref()
        .map(token::decode_key)
        .transpose()?;
    let (after_time, after_name) = match &after {
        None => (None, None),
        Some(k) if by_time => {
            let (t, n) = k
                .split_once('/')
                .ok_or_else(|| LogsError::invalid("The specified nextToken is invalid."))?;
            let t: i64 = t
                .parse()
                .map_err(|_| LogsError::invalid("The specified nextToken is invalid."))?;
            (Some(t), Some(n.to_string()))
        }
        Some(k) => (None, Some(k.clone())),
    };
    let (cmp, dir) = if descending {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    let sql = if by_time {
        format!(
            "SELECT {STREAM_COLS} FROM streams
             WHERE group_id = ?1
               AND (?2 IS NULL OR (ifnull(last_event_ms, -1), name) {cmp} (?2, ?3))
             ORDER BY ifnull(last_event_ms, -1) {dir}, name {dir} LIMIT ?4"
        )
    } else {
        format!(
            "SELECT {STREAM_COLS} FROM streams
             WHERE group_id = ?1
               AND (?3 IS NULL OR name {cmp} ?3)
               AND (?5 IS NULL OR substr(name, 1, length(?5)) = ?5)
             ORDER BY name {dir} LIMIT ?4"
        )
    };
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows: Vec<StreamRow> = if by_time {
        stmt.query_map(params![g.id, after_time, after_name, limit + 1], stream_row)?
            .collect::<Result<_, _>>()?
    } else {
        stmt.query_map(
            params![
                g.id,
                Option::<i64>::None,
                after_name,
                limit + 1,
                req.log_stream_name_prefix
            ],
            stream_row,
        )?
        .collect::<Result<_, _>>()?
    };
    let more = i64::try_from(rows.len()).unwrap_or(i64::MAX) > limit;
    let page: Vec<StreamRow> = rows
        .into_iter()
        .take(usize::try_from(limit).unwrap_or(0))
        .collect();
    let next_token = if more {
        page.last().map(|s| {
            if by_time {
                token::encode_key(&format!("{}/{}", s.last_event_ms.unwrap_or(-1), s.name))
            } else {
                token::encode_key(&s.name)
            }
        })
    } else {
        None
    };
    Ok(logs::DescribeLogStreamsResponse {
        log_streams: Some(page.iter().map(|s| describe_stream(key, &g, s)).collect()),
        next_token,
    })
}

/// Every group of every partition with a retention policy: (id, retention days).
pub(crate) fn retained_groups(conn: &Connection) -> Result<Vec<(i64, i32)>, LogsError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, retention_days FROM groups WHERE retention_days IS NOT NULL ORDER BY id",
    )?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}
