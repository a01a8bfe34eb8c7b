//! AWS Secrets Manager, the subset ECS needs: secrets whose `SecretString` a task definition's
//! `repositoryCredentials.credentialsParameter` names (`{"username": ..., "password": ...}`),
//! which the server resolves into the agent's desired state ([`registry_credentials`]).
//!
//! Operations: CreateSecret, GetSecretValue, PutSecretValue, DescribeSecret, ListSecrets,
//! DeleteSecret and RestoreSecret; the others in the model answer `InvalidRequestException`
//! ("Berth does not implement ... yet"). Versions carry staging labels as on AWS
//! (`AWSCURRENT`, `AWSPREVIOUS`, custom ones); a version left without a label is dropped.
//! A deleted secret is scheduled for deletion after its recovery window (7 to 30 days,
//! default 30): until then it can be described and restored, and reading or changing its
//! value is `InvalidRequestException`; after it, it is gone (its name can be reused).
//! `ForceDeleteWithoutRecovery` deletes at once. No rotation, replication, resource policies
//! or KMS: values are stored as given, in the control-plane store.

use crate::state::{Ctx, Kind, Partition};
use berth_api::secretsmanager::{
    CreateSecretRequest, CreateSecretResponse, DeleteSecretRequest, DeleteSecretResponse,
    DescribeSecretRequest, DescribeSecretResponse, Filter, FilterNameStringType,
    GetSecretValueRequest, GetSecretValueResponse, ListSecretsRequest, ListSecretsResponse,
    PutSecretValueRequest, PutSecretValueResponse, RestoreSecretRequest, RestoreSecretResponse,
    SecretListEntry, SortByType, SortOrderType, Tag,
};
use berth_api::{ApiError, SecretsManagerError, Service, decode, encode};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

type Result<T> = std::result::Result<T, SecretsManagerError>;

/// The staging label of a secret's current version.
pub const AWSCURRENT: &str = "AWSCURRENT";
/// The staging label the current version gets when a new version becomes current.
pub const AWSPREVIOUS: &str = "AWSPREVIOUS";
/// The recovery window when DeleteSecret names none (days).
pub const DEFAULT_RECOVERY_WINDOW_DAYS: i64 = 30;
/// Tags per secret (AWS's quota).
pub const MAX_TAGS: usize = 50;
/// Secrets per account and region: a bound on memory (AWS allows 500,000).
pub const MAX_SECRETS: usize = 10_000;
/// ListSecrets' page size when MaxResults is absent.
pub const DEFAULT_PAGE: usize = 100;
const DAY_MS: i64 = 86_400_000;

/// A secret as stored, with its versions.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretRecord {
    /// `arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-XXXXXX`.
    pub arn: String,
    /// The secret's name.
    pub name: String,
    /// Its description.
    #[serde(default)]
    pub description: Option<String>,
    /// The KMS key named at creation (recorded, not used: values are not encrypted).
    #[serde(default)]
    pub kms_key_id: Option<String>,
    /// Tags, in the order given.
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    /// Creation (epoch ms).
    pub created_ms: i64,
    /// Last change of value, description or deletion state (epoch ms).
    pub last_changed_ms: i64,
    /// When DeleteSecret was called, while it is scheduled for deletion.
    #[serde(default)]
    pub deleted_ms: Option<i64>,
    /// When the scheduled deletion takes effect.
    #[serde(default)]
    pub deletion_ms: Option<i64>,
    /// Versions by id; every one has at least one staging label.
    #[serde(default)]
    pub versions: BTreeMap<String, SecretVersion>,
}

/// One version of a secret's value.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretVersion {
    /// The string value.
    #[serde(default)]
    pub secret_string: Option<String>,
    /// The binary value, base64 as on the wire.
    #[serde(default)]
    pub secret_binary: Option<String>,
    /// Staging labels.
    pub stages: Vec<String>,
    /// Creation (epoch ms).
    pub created_ms: i64,
}

// Values never reach a log line through `{:?}`.
impl std::fmt::Debug for SecretVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretVersion")
            .field(
                "secret_string",
                &self.secret_string.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "secret_binary",
                &self.secret_binary.as_ref().map(|_| "<redacted>"),
            )
            .field("stages", &self.stages)
            .field("created_ms", &self.created_ms)
            .finish()
    }
}

impl std::fmt::Debug for SecretRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretRecord")
            .field("arn", &self.arn)
            .field("deleted_ms", &self.deleted_ms)
            .field("versions", &self.versions)
            .finish_non_exhaustive()
    }
}

impl SecretRecord {
    /// Whether its scheduled deletion has taken effect at `now_ms` (it is then gone).
    pub fn expired(&self, now_ms: i64) -> bool {
        self.deletion_ms.is_some_and(|d| d <= now_ms)
    }

    /// The version that holds `stage`.
    fn version_with_stage(&self, stage: &str) -> Option<(&String, &SecretVersion)> {
        self.versions
            .iter()
            .find(|(_, v)| v.stages.iter().any(|s| s == stage))
    }

    fn versions_to_stages(&self) -> BTreeMap<String, Vec<String>> {
        self.versions
            .iter()
            .map(|(id, v)| (id.clone(), v.stages.clone()))
            .collect()
    }

    fn wire_tags(&self) -> Vec<Tag> {
        self.tags
            .iter()
            .map(|(k, v)| Tag {
                key: Some(k.clone()),
                value: Some(v.clone()),
            })
            .collect()
    }
}

/// Record key of a secret.
fn record_key(name: &str) -> String {
    format!("secret/{name}")
}

fn save(p: &Partition, ctx: &mut Ctx<'_>, name: &str) {
    if let Some(rec) = p.secrets.get(name) {
        ctx.put(Kind::Secret, &record_key(name), rec);
    }
}

#[allow(clippy::cast_precision_loss)]
fn secs(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// AWS's rule for names: letters, digits and `/_+=.@-`.
fn check_name(name: &str) -> Result<()> {
    let ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(SecretsManagerError::invalid(
            "Invalid name. Must be a valid name containing alphanumeric characters, or any of the following: -/_+=.@!",
        ))
    }
}

fn check_value(string: Option<&String>, binary: Option<&String>) -> Result<()> {
    if string.is_some() && binary.is_some() {
        return Err(SecretsManagerError::invalid(
            "You can't specify both a binary secret value and a string secret value in the same secret.",
        ));
    }
    Ok(())
}

fn check_tags(tags: &[Tag]) -> Result<Vec<(String, String)>> {
    if tags.len() > MAX_TAGS {
        return Err(SecretsManagerError::invalid(format!(
            "Too many tags: a secret can have at most {MAX_TAGS}."
        )));
    }
    let mut out: Vec<(String, String)> = Vec::with_capacity(tags.len());
    for t in tags {
        let key = t.key.clone().unwrap_or_default();
        if key.is_empty() {
            return Err(SecretsManagerError::invalid("A tag key must not be empty."));
        }
        if out.iter().any(|(k, _)| *k == key) {
            return Err(SecretsManagerError::invalid(format!(
                "Duplicate tag key: {key}."
            )));
        }
        out.push((key, t.value.clone().unwrap_or_default()));
    }
    Ok(out)
}

fn marked_for_deletion() -> SecretsManagerError {
    SecretsManagerError::InvalidRequest(
        "You can't perform this operation on the secret because it was marked for deletion.".into(),
    )
}

/// The secret `id` names: its name, its ARN, or its ARN without the six random characters
/// (a partial ARN), as AWS accepts.
fn lookup<'a>(p: &'a Partition, id: &str) -> Option<&'a SecretRecord> {
    if id.starts_with("arn:") {
        p.secrets.values().find(|s| {
            s.arn == id
                || s.arn
                    .get(..s.arn.len().saturating_sub(7))
                    .is_some_and(|partial| partial == id)
        })
    } else {
        p.secrets.get(id)
    }
}

/// The name (map key) of the secret `id` names ([`lookup`]); secrets whose scheduled
/// deletion has taken effect are not found.
fn find(p: &Partition, id: &str, now_ms: i64) -> Result<String> {
    lookup(p, id)
        .filter(|s| !s.expired(now_ms))
        .map(|s| s.name.clone())
        .ok_or_else(SecretsManagerError::not_found)
}

fn random_suffix(ctx: &mut Ctx<'_>) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..6)
        .map(|_| {
            let i = usize::try_from(ctx.rng.next_u32()).unwrap_or(0) % ALPHABET.len();
            char::from(ALPHABET[i])
        })
        .collect()
}

/// CreateSecret. Retrying with the same `ClientRequestToken` and value answers as the first
/// call did (botocore fills the token in).
pub fn create(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    req: CreateSecretRequest,
) -> Result<CreateSecretResponse> {
    let name = req.name.clone().unwrap_or_default();
    check_name(&name)?;
    check_value(req.secret_string.as_ref(), req.secret_binary.as_ref())?;
    if req
        .add_replica_regions
        .as_ref()
        .is_some_and(|r| !r.is_empty())
    {
        return Err(SecretsManagerError::InvalidRequest(
            "Berth does not replicate secrets: AddReplicaRegions is not supported.".into(),
        ));
    }
    let tags = check_tags(req.tags.as_deref().unwrap_or_default())?;
    let has_value = req.secret_string.is_some() || req.secret_binary.is_some();
    if let Some(existing) = p.secrets.get(&name).filter(|s| !s.expired(ctx.now_ms)) {
        if existing.deleted_ms.is_some() {
            return Err(SecretsManagerError::InvalidRequest(
                "You can't create this secret because a secret with this name is already scheduled for deletion.".into(),
            ));
        }
        // The same request again: the same answer, nothing changed.
        if let Some(token) = &req.client_request_token
            && let Some(v) = existing.versions.get(token)
            && v.secret_string == req.secret_string
            && v.secret_binary == req.secret_binary
        {
            return Ok(CreateSecretResponse {
                arn: Some(existing.arn.clone()),
                name: Some(name),
                version_id: Some(token.clone()),
                replication_status: None,
            });
        }
        return Err(SecretsManagerError::ResourceExists(format!(
            "The operation failed because the secret {name} already exists."
        )));
    }
    let live = p
        .secrets
        .values()
        .filter(|s| !s.expired(ctx.now_ms))
        .count();
    if live >= MAX_SECRETS {
        return Err(SecretsManagerError::LimitExceeded(format!(
            "Berth keeps at most {MAX_SECRETS} secrets per account and region."
        )));
    }
    let version_id = req
        .client_request_token
        .clone()
        .unwrap_or_else(|| ctx.new_uuid());
    let suffix = random_suffix(ctx);
    let arn = format!(
        "arn:aws:secretsmanager:{}:{}:secret:{name}-{suffix}",
        ctx.partition.region, ctx.partition.account,
    );
    let mut versions = BTreeMap::new();
    if has_value {
        versions.insert(
            version_id.clone(),
            SecretVersion {
                secret_string: req.secret_string,
                secret_binary: req.secret_binary,
                stages: vec![AWSCURRENT.into()],
                created_ms: ctx.now_ms,
            },
        );
    }
    let rec = SecretRecord {
        arn: arn.clone(),
        name: name.clone(),
        description: req.description,
        kms_key_id: req.kms_key_id,
        tags,
        created_ms: ctx.now_ms,
        last_changed_ms: ctx.now_ms,
        deleted_ms: None,
        deletion_ms: None,
        versions,
    };
    // A secret whose deletion took effect is replaced (its record too).
    p.secrets.insert(name.clone(), rec);
    save(p, ctx, &name);
    Ok(CreateSecretResponse {
        arn: Some(arn),
        name: Some(name),
        version_id: has_value.then_some(version_id),
        replication_status: None,
    })
}

/// GetSecretValue: the version `VersionId` names, else the one labelled `VersionStage`
/// (default `AWSCURRENT`).
pub fn get_value(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    req: GetSecretValueRequest,
) -> Result<GetSecretValueResponse> {
    let name = find(p, req.secret_id.as_deref().unwrap_or_default(), ctx.now_ms)?;
    let rec = &p.secrets[&name];
    if rec.deleted_ms.is_some() {
        return Err(marked_for_deletion());
    }
    let (id, v) = match (&req.version_id, &req.version_stage) {
        (Some(id), stage) => {
            let v = rec.versions.get(id).ok_or_else(|| {
                SecretsManagerError::ResourceNotFound(format!(
                    "Secrets Manager can't find the specified secret value for VersionId: {id}"
                ))
            })?;
            if let Some(stage) = stage
                && !v.stages.contains(stage)
            {
                return Err(SecretsManagerError::invalid(format!(
                    "You provided a VersionStage that is not associated to the provided VersionId: {stage}"
                )));
            }
            (id, v)
        }
        (None, stage) => {
            let stage = stage.as_deref().unwrap_or(AWSCURRENT);
            rec.version_with_stage(stage).ok_or_else(|| {
                SecretsManagerError::ResourceNotFound(format!(
                    "Secrets Manager can't find the specified secret value for staging label: {stage}"
                ))
            })?
        }
    };
    Ok(GetSecretValueResponse {
        arn: Some(rec.arn.clone()),
        name: Some(rec.name.clone()),
        version_id: Some(id.clone()),
        secret_string: v.secret_string.clone(),
        secret_binary: v.secret_binary.clone(),
        version_stages: Some(v.stages.clone()),
        created_date: Some(secs(v.created_ms)),
    })
}

/// PutSecretValue: a new version, labelled `VersionStages` (default `AWSCURRENT`); the labels
/// move from the versions that held them, and the version that was current becomes
/// `AWSPREVIOUS`.
pub fn put_value(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    req: PutSecretValueRequest,
) -> Result<PutSecretValueResponse> {
    let name = find(p, req.secret_id.as_deref().unwrap_or_default(), ctx.now_ms)?;
    check_value(req.secret_string.as_ref(), req.secret_binary.as_ref())?;
    if req.secret_string.is_none() && req.secret_binary.is_none() {
        return Err(SecretsManagerError::invalid(
            "You must provide either SecretString or SecretBinary.",
        ));
    }
    let now = ctx.now_ms;
    let version_id = req
        .client_request_token
        .clone()
        .unwrap_or_else(|| ctx.new_uuid());
    let rec = p
        .secrets
        .get_mut(&name)
        .ok_or_else(SecretsManagerError::not_found)?;
    if rec.deleted_ms.is_some() {
        return Err(marked_for_deletion());
    }
    if let Some(v) = rec.versions.get(&version_id) {
        if v.secret_string == req.secret_string && v.secret_binary == req.secret_binary {
            return Ok(PutSecretValueResponse {
                arn: Some(rec.arn.clone()),
                name: Some(rec.name.clone()),
                version_id: Some(version_id),
                version_stages: Some(v.stages.clone()),
            });
        }
        return Err(SecretsManagerError::ResourceExists(
            "You can't modify an existing version, you can only create a new version.".into(),
        ));
    }
    let stages = req
        .version_stages
        .clone()
        .unwrap_or_else(|| vec![AWSCURRENT.into()]);
    let old_current = rec.version_with_stage(AWSCURRENT).map(|(id, _)| id.clone());
    for v in rec.versions.values_mut() {
        v.stages.retain(|s| !stages.contains(s));
    }
    if stages.iter().any(|s| s == AWSCURRENT)
        && let Some(old) = old_current
    {
        for v in rec.versions.values_mut() {
            v.stages.retain(|s| s != AWSPREVIOUS);
        }
        if let Some(v) = rec.versions.get_mut(&old) {
            v.stages.push(AWSPREVIOUS.into());
        }
    }
    rec.versions.insert(
        version_id.clone(),
        SecretVersion {
            secret_string: req.secret_string,
            secret_binary: req.secret_binary,
            stages: stages.clone(),
            created_ms: now,
        },
    );
    rec.versions.retain(|_, v| !v.stages.is_empty());
    rec.last_changed_ms = now;
    let resp = PutSecretValueResponse {
        arn: Some(rec.arn.clone()),
        name: Some(rec.name.clone()),
        version_id: Some(version_id),
        version_stages: Some(stages),
    };
    save(p, ctx, &name);
    Ok(resp)
}

/// DescribeSecret (secrets scheduled for deletion too, with their `DeletedDate`).
pub fn describe(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    req: DescribeSecretRequest,
) -> Result<DescribeSecretResponse> {
    let name = find(p, req.secret_id.as_deref().unwrap_or_default(), ctx.now_ms)?;
    let rec = &p.secrets[&name];
    let tags = rec.wire_tags();
    Ok(DescribeSecretResponse {
        arn: Some(rec.arn.clone()),
        name: Some(rec.name.clone()),
        description: rec.description.clone(),
        kms_key_id: rec.kms_key_id.clone(),
        last_changed_date: Some(secs(rec.last_changed_ms)),
        deleted_date: rec.deleted_ms.map(secs),
        tags: (!tags.is_empty()).then_some(tags),
        version_ids_to_stages: Some(rec.versions_to_stages()),
        created_date: Some(secs(rec.created_ms)),
        ..Default::default()
    })
}

/// Whether `rec` passes one ListSecrets filter: any of its values matches (a value is a
/// prefix, `!` negates it), as AWS filters.
fn matches(rec: &SecretRecord, region: &str, f: &Filter) -> bool {
    let Some(key) = &f.key else { return true };
    let fields: Vec<&str> = match key {
        FilterNameStringType::Name => vec![rec.name.as_str()],
        FilterNameStringType::Description => rec.description.iter().map(String::as_str).collect(),
        FilterNameStringType::TagKey => rec.tags.iter().map(|(k, _)| k.as_str()).collect(),
        FilterNameStringType::TagValue => rec.tags.iter().map(|(_, v)| v.as_str()).collect(),
        FilterNameStringType::PrimaryRegion => vec![region],
        FilterNameStringType::OwningService | FilterNameStringType::Unknown(_) => vec![],
        FilterNameStringType::All => {
            let mut all = vec![rec.name.as_str()];
            all.extend(rec.description.iter().map(String::as_str));
            all.extend(rec.tags.iter().flat_map(|(k, v)| [k.as_str(), v.as_str()]));
            all
        }
    };
    f.values
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|value| match value.strip_prefix('!') {
            Some(neg) => !fields.iter().any(|x| x.starts_with(neg)),
            None => fields.iter().any(|x| x.starts_with(value.as_str())),
        })
}

/// ListSecrets: live secrets (and, with `IncludePlannedDeletion`, those scheduled for
/// deletion) that pass every filter, by `SortBy` (default creation date; Berth does not
/// track access dates, so `last-accessed-date` sorts by creation too) in `SortOrder`
/// (default ascending), a page at a time.
pub fn list(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    req: ListSecretsRequest,
) -> Result<ListSecretsResponse> {
    let limit = req
        .max_results
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(DEFAULT_PAGE);
    let filters = req.filters.unwrap_or_default();
    let include_deleted = req.include_planned_deletion.unwrap_or(false);
    let region = ctx.partition.region.clone();
    let mut items: Vec<(String, SecretListEntry)> = p
        .secrets
        .values()
        .filter(|s| !s.expired(ctx.now_ms))
        .filter(|s| include_deleted || s.deleted_ms.is_none())
        .filter(|s| filters.iter().all(|f| matches(s, &region, f)))
        .map(|s| {
            let key = match req.sort_by {
                Some(SortByType::Name) => s.name.clone(),
                Some(SortByType::LastChangedDate) => {
                    format!("{:015}/{}", s.last_changed_ms, s.name)
                }
                _ => format!("{:015}/{}", s.created_ms, s.name),
            };
            let tags = s.wire_tags();
            let entry = SecretListEntry {
                arn: Some(s.arn.clone()),
                name: Some(s.name.clone()),
                description: s.description.clone(),
                kms_key_id: s.kms_key_id.clone(),
                last_changed_date: Some(secs(s.last_changed_ms)),
                deleted_date: s.deleted_ms.map(secs),
                tags: (!tags.is_empty()).then_some(tags),
                secret_versions_to_stages: Some(s.versions_to_stages()),
                created_date: Some(secs(s.created_ms)),
                ..Default::default()
            };
            (key, entry)
        })
        .collect();
    let descending = req.sort_order == Some(SortOrderType::Desc);
    items.sort_by(|a, b| a.0.cmp(&b.0));
    if descending {
        items.reverse();
    }
    let (page, next) =
        crate::pagination::page_ordered(items, req.next_token.as_deref(), limit, descending)
            .map_err(|_| invalid_token())?;
    Ok(ListSecretsResponse {
        secret_list: Some(page),
        next_token: next,
    })
}

fn invalid_token() -> SecretsManagerError {
    SecretsManagerError::InvalidNextToken("The NextToken value is invalid.".into())
}

/// DeleteSecret: scheduled after the recovery window, or at once with
/// `ForceDeleteWithoutRecovery`.
pub fn delete(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    req: DeleteSecretRequest,
) -> Result<DeleteSecretResponse> {
    let force = req.force_delete_without_recovery.unwrap_or(false);
    if force && req.recovery_window_in_days.is_some() {
        return Err(SecretsManagerError::invalid(
            "You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays.",
        ));
    }
    let days = req
        .recovery_window_in_days
        .unwrap_or(DEFAULT_RECOVERY_WINDOW_DAYS);
    if !(7..=30).contains(&days) {
        return Err(SecretsManagerError::invalid(
            "The RecoveryWindowInDays value must be between 7 and 30 days (inclusive).",
        ));
    }
    let name = find(p, req.secret_id.as_deref().unwrap_or_default(), ctx.now_ms)?;
    let now = ctx.now_ms;
    if force {
        let Some(rec) = p.secrets.remove(&name) else {
            return Err(SecretsManagerError::not_found());
        };
        ctx.delete(Kind::Secret, &record_key(&name));
        return Ok(DeleteSecretResponse {
            arn: Some(rec.arn),
            name: Some(rec.name),
            deletion_date: Some(secs(now)),
        });
    }
    let rec = p
        .secrets
        .get_mut(&name)
        .ok_or_else(SecretsManagerError::not_found)?;
    if rec.deleted_ms.is_some() {
        return Err(marked_for_deletion());
    }
    let deletion = now + days * DAY_MS;
    rec.deleted_ms = Some(now);
    rec.deletion_ms = Some(deletion);
    rec.last_changed_ms = now;
    let resp = DeleteSecretResponse {
        arn: Some(rec.arn.clone()),
        name: Some(rec.name.clone()),
        deletion_date: Some(secs(deletion)),
    };
    save(p, ctx, &name);
    Ok(resp)
}

/// RestoreSecret: cancel a scheduled deletion (a no-op for a secret not scheduled).
pub fn restore(
    p: &mut Partition,
    ctx: &mut Ctx<'_>,
    req: RestoreSecretRequest,
) -> Result<RestoreSecretResponse> {
    let name = find(p, req.secret_id.as_deref().unwrap_or_default(), ctx.now_ms)?;
    let now = ctx.now_ms;
    let rec = p
        .secrets
        .get_mut(&name)
        .ok_or_else(SecretsManagerError::not_found)?;
    let resp = RestoreSecretResponse {
        arn: Some(rec.arn.clone()),
        name: Some(rec.name.clone()),
    };
    if rec.deleted_ms.is_some() {
        rec.deleted_ms = None;
        rec.deletion_ms = None;
        rec.last_changed_ms = now;
        save(p, ctx, &name);
    }
    Ok(resp)
}

/// How every reason starts when a task's registry credentials cannot be resolved (ECS's
/// wording for secrets or registry auth that cannot be fetched); the agent reports it after
/// `ResourceInitializationError: `.
pub const REGISTRY_AUTH_FAILURE: &str = "unable to pull secrets or registry auth: execution resource retrieval failed: unable to retrieve secret from asm: ";

/// Credentials for a private registry, from a secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryCredentials {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Resolve `repositoryCredentials.credentialsParameter` (a secret's name or ARN) as ECS's
/// agent does: the current value's `SecretString` must be a JSON object with non-empty
/// string `username` and `password` (keys matched without regard to case, as Go's JSON
/// decoder does). The error follows `ResourceInitializationError: ` in the task's
/// `stoppedReason`. A secret scheduled for
/// deletion is refused as marked for deletion, also once its deletion has taken effect (the
/// agent's desired state is built without a clock; such a secret is gone from every API
/// call).
pub fn registry_credentials(
    p: &Partition,
    parameter: &str,
) -> std::result::Result<RegistryCredentials, String> {
    let fail = |why: &str| format!("{REGISTRY_AUTH_FAILURE}{why}");
    let fetch = |e: SecretsManagerError| {
        fail(&format!(
            "failed to fetch secret {parameter} from secrets manager: {}: {e}",
            e.code()
        ))
    };
    let rec = lookup(p, parameter).ok_or_else(|| fetch(SecretsManagerError::not_found()))?;
    if rec.deleted_ms.is_some() {
        return Err(fetch(marked_for_deletion()));
    }
    let value = rec
        .version_with_stage(AWSCURRENT)
        .and_then(|(_, v)| v.secret_string.as_deref())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| fail("asm fetching authorization data: empty secrets value"))?;
    let invalid = || {
        fail("asm fetching authorization data: unable to unmarshal secret value, invalid schema")
    };
    let doc: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(value).map_err(|_| invalid())?;
    let field = |name: &str| -> std::result::Result<String, String> {
        match doc.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
            None | Some((_, serde_json::Value::Null)) => Ok(String::new()),
            Some((_, serde_json::Value::String(s))) => Ok(s.clone()),
            Some(_) => Err(invalid()),
        }
    };
    let username = field("username")?;
    let password = field("password")?;
    if username.is_empty() {
        return Err(fail(
            "asm fetching username: AuthorizationData is malformed, empty field",
        ));
    }
    if password.is_empty() {
        return Err(fail(
            "asm fetching password: AuthorizationData is malformed, empty field",
        ));
    }
    Ok(RegistryCredentials { username, password })
}

macro_rules! op {
    ($p:expr, $ctx:expr, $body:expr, $f:path) => {{
        let req = decode(Service::SecretsManager, $body)?;
        let resp = $f($p, $ctx, req).map_err(ApiError::from)?;
        Ok(encode(&resp))
    }};
}

/// Run one Secrets Manager operation against the caller's partition. On error nothing has
/// changed. ListSecrets' `NextToken` is sealed with the server's key, bound to the operation
/// and the caller's partition.
pub fn handle(
    world: &mut crate::World,
    ctx: &mut Ctx<'_>,
    operation: &str,
    body: &[u8],
) -> std::result::Result<Vec<u8>, ApiError> {
    let p = world.partition(&ctx.partition);
    match operation {
        "CreateSecret" => op!(p, ctx, body, create),
        "GetSecretValue" => op!(p, ctx, body, get_value),
        "PutSecretValue" => op!(p, ctx, body, put_value),
        "DescribeSecret" => op!(p, ctx, body, describe),
        "DeleteSecret" => op!(p, ctx, body, delete),
        "RestoreSecret" => op!(p, ctx, body, restore),
        "ListSecrets" => {
            let mut req: ListSecretsRequest = decode(Service::SecretsManager, body)?;
            let scope = crate::pagination::scope("secretsmanager", operation, &ctx.partition);
            req.next_token = req
                .next_token
                .map(|t| ctx.token_key.open(&scope, &t).ok_or_else(invalid_token))
                .transpose()
                .map_err(ApiError::from)?;
            let mut resp = list(p, ctx, req).map_err(ApiError::from)?;
            resp.next_token = resp.next_token.map(|t| ctx.token_key.seal(&scope, &t));
            Ok(encode(&resp))
        }
        other => Err(ApiError::not_implemented(Service::SecretsManager, other)),
    }
}

#[cfg(test)]
mod tests;
