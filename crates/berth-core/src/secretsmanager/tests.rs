// Test code: helpers may panic on anything unexpected.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::state::{Mutation, Record};
use crate::{PartitionKey, World};
use serde_json::{Value, json};

const T0: i64 = 1_800_000_000_000;
const TOKEN_A: &str = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa";
const TOKEN_B: &str = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb";
const TOKEN_C: &str = "cccccccc-cccc-4ccc-8ccc-cccccccccccc";

fn pk() -> PartitionKey {
    PartitionKey {
        account: "000000000000".into(),
        region: "us-east-1".into(),
    }
}

#[derive(Default)]
struct Fixture {
    world: World,
    now_ms: i64,
    /// Every mutation committed so far, in order.
    log: Vec<Mutation>,
    seed: u64,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            now_ms: T0,
            ..Fixture::default()
        }
    }

    /// Run an operation; a refusal must leave no mutation behind.
    fn call(&mut self, op: &str, body: Value) -> std::result::Result<Value, (String, String)> {
        use rand::SeedableRng;
        // A fresh seed per call, so that secrets get different ARN suffixes.
        self.seed += 1;
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed);
        let mut ctx = Ctx::new(self.now_ms, pk(), "root", &mut rng);
        let result = handle(
            &mut self.world,
            &mut ctx,
            op,
            &serde_json::to_vec(&body).unwrap(),
        );
        match result {
            Ok(out) => {
                self.log.append(&mut ctx.mutations);
                Ok(serde_json::from_slice(&out).unwrap())
            }
            Err(e) => {
                assert!(ctx.mutations.is_empty(), "a refused {op} left mutations");
                Err((e.code.to_string(), e.message))
            }
        }
    }

    fn ok(&mut self, op: &str, body: Value) -> Value {
        self.call(op, body.clone())
            .unwrap_or_else(|e| panic!("{op} {body}: {e:?}"))
    }

    fn err(&mut self, op: &str, body: Value) -> (String, String) {
        self.call(op, body.clone())
            .err()
            .unwrap_or_else(|| panic!("{op} {body} succeeded"))
    }

    fn partition(&mut self) -> &mut Partition {
        self.world.partition(&pk())
    }
}

fn not_found() -> (String, String) {
    (
        "ResourceNotFoundException".into(),
        "Secrets Manager can't find the specified secret.".into(),
    )
}

#[test]
fn create_then_read_by_name_arn_and_partial_arn() {
    let mut f = Fixture::new();
    let created = f.ok(
        "CreateSecret",
        json!({"Name": "registry/creds", "SecretString": "{\"username\":\"u\",\"password\":\"p\"}",
               "Description": "pull secret", "Tags": [{"Key": "team", "Value": "web"}],
               "ClientRequestToken": TOKEN_A}),
    );
    let arn = created["ARN"].as_str().unwrap().to_string();
    let re = regex::Regex::new(
        r"^arn:aws:secretsmanager:us-east-1:000000000000:secret:registry/creds-[A-Za-z0-9]{6}$",
    )
    .unwrap();
    assert!(re.is_match(&arn), "{arn}");
    assert_eq!(created["Name"], "registry/creds");
    assert_eq!(created["VersionId"], TOKEN_A);
    let partial = &arn[..arn.len() - 7];
    for id in ["registry/creds", arn.as_str(), partial] {
        let v = f.ok("GetSecretValue", json!({"SecretId": id}));
        assert_eq!(v["SecretString"], "{\"username\":\"u\",\"password\":\"p\"}");
        assert_eq!(v["VersionId"], TOKEN_A);
        assert_eq!(v["VersionStages"], json!(["AWSCURRENT"]));
        assert_eq!(v["ARN"], arn.as_str());
        assert_eq!(v["CreatedDate"].as_f64(), Some(1_800_000_000.0));
    }
    let d = f.ok("DescribeSecret", json!({"SecretId": arn}));
    assert_eq!(d["Description"], "pull secret");
    assert_eq!(d["Tags"], json!([{"Key": "team", "Value": "web"}]));
    assert_eq!(d["VersionIdsToStages"], json!({TOKEN_A: ["AWSCURRENT"]}));
    assert!(d.get("DeletedDate").is_none());
    assert!(
        d.get("SecretString").is_none(),
        "DescribeSecret shows no value"
    );
    // An ARN of another secret, or one edited, names nothing.
    for id in [
        format!("{arn}x"),
        arn.replace("registry/creds", "registry/other"),
    ] {
        assert_eq!(
            f.err("GetSecretValue", json!({"SecretId": id})),
            not_found()
        );
    }
}

#[test]
fn refusals_are_aws_errors_and_change_nothing() {
    let mut f = Fixture::new();
    assert_eq!(
        f.err("GetSecretValue", json!({"SecretId": "nope"})),
        not_found()
    );
    assert_eq!(
        f.err("DescribeSecret", json!({"SecretId": "nope"})),
        not_found()
    );
    assert_eq!(
        f.err(
            "PutSecretValue",
            json!({"SecretId": "nope", "SecretString": "x"})
        ),
        not_found()
    );
    assert_eq!(
        f.err("DeleteSecret", json!({"SecretId": "nope"})),
        not_found()
    );
    let (code, _) = f.err("CreateSecret", json!({"Name": "bad name!"}));
    assert_eq!(code, "InvalidParameterException");
    let (code, msg) = f.err("CreateSecret", json!({}));
    assert_eq!(code, "InvalidParameterException");
    assert!(msg.contains("Name"), "{msg}");
    let (code, _) = f.err(
        "CreateSecret",
        json!({"Name": "s", "SecretString": "a", "SecretBinary": "YQ=="}),
    );
    assert_eq!(code, "InvalidParameterException");
    let (code, _) = f.err(
        "CreateSecret",
        json!({"Name": "s", "ClientRequestToken": "short"}),
    );
    assert_eq!(code, "InvalidParameterException");
    let (code, _) = f.err("RotateSecret", json!({"SecretId": "s"}));
    assert_eq!(code, "InvalidRequestException");
    assert!(f.log.is_empty());

    f.ok(
        "CreateSecret",
        json!({"Name": "s", "SecretString": "v1", "ClientRequestToken": TOKEN_A}),
    );
    let before = f.log.len();
    // The same request again (botocore's retry): the same answer, nothing written.
    let again = f.ok(
        "CreateSecret",
        json!({"Name": "s", "SecretString": "v1", "ClientRequestToken": TOKEN_A}),
    );
    assert_eq!(again["VersionId"], TOKEN_A);
    assert_eq!(f.log.len(), before);
    let (code, msg) = f.err(
        "CreateSecret",
        json!({"Name": "s", "SecretString": "v2", "ClientRequestToken": TOKEN_B}),
    );
    assert_eq!(code, "ResourceExistsException");
    assert_eq!(
        msg,
        "The operation failed because the secret s already exists."
    );
    let (code, _) = f.err("PutSecretValue", json!({"SecretId": "s"}));
    assert_eq!(code, "InvalidParameterException");
    let (code, _) = f.err(
        "PutSecretValue",
        json!({"SecretId": "s", "SecretString": "other", "ClientRequestToken": TOKEN_A}),
    );
    assert_eq!(code, "ResourceExistsException");
    let (code, _) = f.err(
        "GetSecretValue",
        json!({"SecretId": "s", "VersionStage": "AWSPENDING"}),
    );
    assert_eq!(code, "ResourceNotFoundException");
    assert_eq!(f.log.len(), before);
}

#[test]
fn new_versions_move_the_staging_labels() {
    let mut f = Fixture::new();
    f.ok(
        "CreateSecret",
        json!({"Name": "s", "SecretString": "v1", "ClientRequestToken": TOKEN_A}),
    );
    let put = f.ok(
        "PutSecretValue",
        json!({"SecretId": "s", "SecretString": "v2", "ClientRequestToken": TOKEN_B}),
    );
    assert_eq!(put["VersionStages"], json!(["AWSCURRENT"]));
    assert_eq!(
        f.ok("GetSecretValue", json!({"SecretId": "s"}))["SecretString"],
        "v2"
    );
    let prev = f.ok(
        "GetSecretValue",
        json!({"SecretId": "s", "VersionStage": "AWSPREVIOUS"}),
    );
    assert_eq!(prev["SecretString"], "v1");
    assert_eq!(prev["VersionId"], TOKEN_A);
    let by_id = f.ok(
        "GetSecretValue",
        json!({"SecretId": "s", "VersionId": TOKEN_A}),
    );
    assert_eq!(by_id["SecretString"], "v1");
    // Idempotent retry of the put.
    let n = f.log.len();
    f.ok(
        "PutSecretValue",
        json!({"SecretId": "s", "SecretString": "v2", "ClientRequestToken": TOKEN_B}),
    );
    assert_eq!(f.log.len(), n);
    f.ok(
        "PutSecretValue",
        json!({"SecretId": "s", "SecretString": "v3", "ClientRequestToken": TOKEN_C}),
    );
    let d = f.ok("DescribeSecret", json!({"SecretId": "s"}));
    assert_eq!(
        d["VersionIdsToStages"],
        json!({TOKEN_B: ["AWSPREVIOUS"], TOKEN_C: ["AWSCURRENT"]}),
        "the version left without a label is gone"
    );
    // A custom label moves without touching AWSCURRENT.
    let id_d = "dddddddd-dddd-4ddd-8ddd-dddddddddddd";
    f.ok("PutSecretValue", json!({"SecretId": "s", "SecretString": "next", "ClientRequestToken": id_d, "VersionStages": ["AWSPENDING"]}));
    assert_eq!(
        f.ok("GetSecretValue", json!({"SecretId": "s"}))["SecretString"],
        "v3"
    );
    assert_eq!(
        f.ok(
            "GetSecretValue",
            json!({"SecretId": "s", "VersionStage": "AWSPENDING"})
        )["SecretString"],
        "next"
    );
}

#[test]
fn deletion_waits_for_its_recovery_window_unless_forced() {
    let mut f = Fixture::new();
    f.ok("CreateSecret", json!({"Name": "s", "SecretString": "v1"}));
    let (code, _) = f.err(
        "DeleteSecret",
        json!({"SecretId": "s", "RecoveryWindowInDays": 6}),
    );
    assert_eq!(code, "InvalidParameterException");
    let (code, _) = f.err(
        "DeleteSecret",
        json!({"SecretId": "s", "RecoveryWindowInDays": 7, "ForceDeleteWithoutRecovery": true}),
    );
    assert_eq!(code, "InvalidParameterException");
    let del = f.ok(
        "DeleteSecret",
        json!({"SecretId": "s", "RecoveryWindowInDays": 7}),
    );
    assert_eq!(
        del["DeletionDate"].as_f64(),
        Some(1_800_000_000.0 + 7.0 * 86_400.0)
    );
    let marked = (
        "InvalidRequestException".to_string(),
        "You can't perform this operation on the secret because it was marked for deletion."
            .to_string(),
    );
    assert_eq!(f.err("GetSecretValue", json!({"SecretId": "s"})), marked);
    assert_eq!(
        f.err(
            "PutSecretValue",
            json!({"SecretId": "s", "SecretString": "x"})
        ),
        marked
    );
    assert_eq!(f.err("DeleteSecret", json!({"SecretId": "s"})), marked);
    let (code, _) = f.err("CreateSecret", json!({"Name": "s"}));
    assert_eq!(code, "InvalidRequestException");
    let d = f.ok("DescribeSecret", json!({"SecretId": "s"}));
    assert_eq!(d["DeletedDate"].as_f64(), Some(1_800_000_000.0));
    assert_eq!(f.ok("ListSecrets", json!({}))["SecretList"], json!([]));
    let listed = f.ok("ListSecrets", json!({"IncludePlannedDeletion": true}));
    assert_eq!(listed["SecretList"][0]["Name"], "s");
    assert_eq!(
        registry_credentials(f.partition(), "s").unwrap_err(),
        format!(
            "{REGISTRY_AUTH_FAILURE}failed to fetch secret s from secrets manager: InvalidRequestException: You can't perform this operation on the secret because it was marked for deletion."
        )
    );

    // Restored, it is readable again.
    f.ok("RestoreSecret", json!({"SecretId": "s"}));
    assert_eq!(
        f.ok("GetSecretValue", json!({"SecretId": "s"}))["SecretString"],
        "v1"
    );

    // Past its window it is gone, and the name can be taken again.
    f.ok(
        "DeleteSecret",
        json!({"SecretId": "s", "RecoveryWindowInDays": 7}),
    );
    f.now_ms += 7 * DAY_MS;
    assert_eq!(
        f.err("DescribeSecret", json!({"SecretId": "s"})),
        not_found()
    );
    let again = f.ok(
        "CreateSecret",
        json!({"Name": "s", "SecretString": "fresh"}),
    );
    assert_eq!(
        f.ok("GetSecretValue", json!({"SecretId": "s"}))["SecretString"],
        "fresh"
    );

    // Forced: gone at once, its record deleted.
    let arn = again["ARN"].as_str().unwrap().to_string();
    f.ok(
        "DeleteSecret",
        json!({"SecretId": arn, "ForceDeleteWithoutRecovery": true}),
    );
    assert_eq!(
        f.err("GetSecretValue", json!({"SecretId": "s"})),
        not_found()
    );
    assert!(matches!(
        f.log.last(),
        Some(Mutation::Delete { kind: Kind::Secret, key }) if key == "000000000000/us-east-1/secret/s"
    ));
}

#[test]
fn listing_pages_filters_and_sorts() {
    let mut f = Fixture::new();
    for (i, name) in ["db/a", "db/b", "web/c", "web/d", "x"].iter().enumerate() {
        f.now_ms = T0 + i64::try_from(i).unwrap() * 1000;
        f.ok(
            "CreateSecret",
            json!({"Name": name, "SecretString": "v", "Tags": [{"Key": "tier", "Value": if i % 2 == 0 { "even" } else { "odd" }}]}),
        );
    }
    let names = |v: &Value| -> Vec<String> {
        v["SecretList"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["Name"].as_str().unwrap().to_string())
            .collect()
    };
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({"MaxResults": 2});
        if let Some(t) = &token {
            body["NextToken"] = json!(t);
        }
        let page = f.ok("ListSecrets", body);
        seen.extend(names(&page));
        match page.get("NextToken").and_then(Value::as_str) {
            Some(t) => {
                assert!(
                    crate::pagination::decode_token(t).is_err(),
                    "the token is sealed, not a plain one: {t}"
                );
                token = Some(t.to_string());
            }
            None => break,
        }
    }
    assert_eq!(seen, ["db/a", "db/b", "web/c", "web/d", "x"]);
    let desc = f.ok("ListSecrets", json!({"SortOrder": "desc", "MaxResults": 3}));
    assert_eq!(names(&desc), ["x", "web/d", "web/c"]);
    let next = desc["NextToken"].as_str().unwrap();
    let rest = f.ok(
        "ListSecrets",
        json!({"SortOrder": "desc", "NextToken": next}),
    );
    assert_eq!(names(&rest), ["db/b", "db/a"]);
    let (code, _) = f.err("ListSecrets", json!({"NextToken": "00ff"}));
    assert_eq!(code, "InvalidNextTokenException");

    let filtered = f.ok(
        "ListSecrets",
        json!({"Filters": [{"Key": "name", "Values": ["web/"]}]}),
    );
    assert_eq!(names(&filtered), ["web/c", "web/d"]);
    let negated = f.ok(
        "ListSecrets",
        json!({"Filters": [{"Key": "name", "Values": ["!web/"]}]}),
    );
    assert_eq!(names(&negated), ["db/a", "db/b", "x"]);
    let both = f.ok(
        "ListSecrets",
        json!({"Filters": [{"Key": "tag-value", "Values": ["odd"]}, {"Key": "name", "Values": ["db/"]}]}),
    );
    assert_eq!(names(&both), ["db/b"]);
    let (code, _) = f.err(
        "ListSecrets",
        json!({"Filters": [{"Key": "colour", "Values": ["x"]}]}),
    );
    assert_eq!(code, "InvalidParameterException");
}

#[test]
fn registry_credentials_follow_the_ecs_agent() {
    let mut f = Fixture::new();
    let cases = [
        ("ok", r#"{"username": "u", "password": "p"}"#),
        ("caps", r#"{"Username": "u", "PASSWORD": "p", "other": 1}"#),
        ("not-json", "username=u"),
        ("array", r#"["u", "p"]"#),
        ("number", r#"{"username": 1, "password": "p"}"#),
        ("no-password", r#"{"username": "u"}"#),
        ("no-user", r#"{"password": "p"}"#),
    ];
    for (name, value) in cases {
        f.ok("CreateSecret", json!({"Name": name, "SecretString": value}));
    }
    f.ok(
        "CreateSecret",
        json!({"Name": "binary", "SecretBinary": "YWJj"}),
    );
    let arn = f.ok("DescribeSecret", json!({"SecretId": "ok"}))["ARN"]
        .as_str()
        .unwrap()
        .to_string();
    let p = f.partition();
    let creds = registry_credentials(p, &arn).unwrap();
    assert_eq!(
        (creds.username.as_str(), creds.password.as_str()),
        ("u", "p")
    );
    assert!(
        !format!("{creds:?}").contains("\"p\""),
        "Debug hides the password"
    );
    assert!(registry_credentials(p, "caps").is_ok());
    let invalid = format!(
        "{REGISTRY_AUTH_FAILURE}asm fetching authorization data: unable to unmarshal secret value, invalid schema"
    );
    for name in ["not-json", "array", "number"] {
        assert_eq!(
            registry_credentials(p, name).unwrap_err(),
            invalid,
            "{name}"
        );
    }
    assert!(
        registry_credentials(p, "no-password")
            .unwrap_err()
            .ends_with("asm fetching password: AuthorizationData is malformed, empty field")
    );
    assert!(
        registry_credentials(p, "no-user")
            .unwrap_err()
            .ends_with("asm fetching username: AuthorizationData is malformed, empty field")
    );
    assert!(
        registry_credentials(p, "binary")
            .unwrap_err()
            .ends_with("empty secrets value")
    );
    assert_eq!(
        registry_credentials(p, "missing").unwrap_err(),
        format!(
            "{REGISTRY_AUTH_FAILURE}failed to fetch secret missing from secrets manager: ResourceNotFoundException: Secrets Manager can't find the specified secret."
        )
    );
}

#[test]
fn secrets_survive_a_reload_from_their_records() {
    let mut f = Fixture::new();
    f.ok(
        "CreateSecret",
        json!({"Name": "a", "SecretString": "v1", "ClientRequestToken": TOKEN_A}),
    );
    f.ok(
        "PutSecretValue",
        json!({"SecretId": "a", "SecretString": "v2", "ClientRequestToken": TOKEN_B}),
    );
    f.ok("CreateSecret", json!({"Name": "gone", "SecretString": "x"}));
    f.ok(
        "DeleteSecret",
        json!({"SecretId": "gone", "ForceDeleteWithoutRecovery": true}),
    );
    f.ok(
        "CreateSecret",
        json!({"Name": "scheduled", "SecretString": "y"}),
    );
    f.ok("DeleteSecret", json!({"SecretId": "scheduled"}));
    // What the store would hold: the last put of each key, minus deletes.
    let mut store: BTreeMap<(Kind, String), Vec<u8>> = BTreeMap::new();
    for m in &f.log {
        match m {
            Mutation::Put(r) => {
                store.insert((r.kind, r.key.clone()), r.body.clone());
            }
            Mutation::Delete { kind, key } => {
                store.remove(&(*kind, key.clone()));
            }
        }
    }
    let records = store
        .into_iter()
        .map(|((kind, key), body)| Record { kind, key, body });
    let reloaded = World::load(records).unwrap();
    let before = &f.world.partitions[&pk()].secrets;
    let after = &reloaded.partitions[&pk()].secrets;
    assert_eq!(after.keys().collect::<Vec<_>>(), ["a", "scheduled"]);
    assert_eq!(before, after);
}
