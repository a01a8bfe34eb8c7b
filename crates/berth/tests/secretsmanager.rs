#![allow(clippy::unwrap_used)]
//! End-to-end tests of Berth's Secrets Manager subset, driven with the real `aws` CLI
//! (`aws secretsmanager ...`): what ECS's `repositoryCredentials` name. Secrets are acknowledged
//! only once durable, so they survive SIGKILL.

mod common;

use common::{AwsResultExt, Berth};

const VALUE: &str = r#"{"username": "berth", "password": "s3cret"}"#;

#[test]
fn the_cli_creates_reads_versions_lists_and_deletes_secrets() {
    let b = Berth::start();
    let created = b
        .aws(&[
            "secretsmanager",
            "create-secret",
            "--name",
            "registry/creds",
            "--description",
            "pull secret",
            "--secret-string",
            VALUE,
            "--tags",
            "Key=team,Value=web",
        ])
        .json();
    let arn = created["ARN"].as_str().unwrap().to_string();
    let suffix = arn
        .strip_prefix("arn:aws:secretsmanager:us-east-1:")
        .and_then(|r| r.split_once(":secret:registry/creds-"))
        .map(|(_, s)| s)
        .unwrap_or_else(|| panic!("{arn}"));
    assert_eq!(suffix.len(), 6, "{arn}");
    assert!(suffix.chars().all(|c| c.is_ascii_alphanumeric()), "{arn}");
    // botocore fills ClientRequestToken in: the version id is that UUID.
    let v1 = created["VersionId"].as_str().unwrap().to_string();
    assert_eq!(v1.len(), 36, "{created:#}");

    for id in ["registry/creds", arn.as_str()] {
        let got = b
            .aws(&["secretsmanager", "get-secret-value", "--secret-id", id])
            .json();
        assert_eq!(got["SecretString"], VALUE);
        assert_eq!(got["VersionId"], v1.as_str());
        assert_eq!(got["VersionStages"][0], "AWSCURRENT");
        assert!(got["CreatedDate"].is_number(), "{got:#}");
    }
    b.aws(&[
        "secretsmanager",
        "create-secret",
        "--name",
        "registry/creds",
        "--secret-string",
        "x",
    ])
    .fails_with("ResourceExistsException", "already exists");
    b.aws(&["secretsmanager", "get-secret-value", "--secret-id", "nope"])
        .fails_with(
            "ResourceNotFoundException",
            "Secrets Manager can't find the specified secret.",
        );

    let put = b
        .aws(&[
            "secretsmanager",
            "put-secret-value",
            "--secret-id",
            "registry/creds",
            "--secret-string",
            r#"{"username": "berth", "password": "rotated"}"#,
        ])
        .json();
    let v2 = put["VersionId"].as_str().unwrap().to_string();
    let previous = b
        .aws(&[
            "secretsmanager",
            "get-secret-value",
            "--secret-id",
            "registry/creds",
            "--version-stage",
            "AWSPREVIOUS",
        ])
        .json();
    assert_eq!(previous["SecretString"], VALUE);
    let d = b
        .aws(&["secretsmanager", "describe-secret", "--secret-id", &arn])
        .json();
    assert_eq!(d["Description"], "pull secret");
    assert_eq!(d["Tags"][0]["Key"], "team");
    assert_eq!(d["VersionIdsToStages"][&v1][0], "AWSPREVIOUS", "{d:#}");
    assert_eq!(d["VersionIdsToStages"][&v2][0], "AWSCURRENT", "{d:#}");

    // The CLI pages through ListSecrets (--page-size 2: three requests for five secrets).
    for i in 0..4 {
        b.aws(&[
            "secretsmanager",
            "create-secret",
            "--name",
            &format!("more/{i}"),
            "--secret-string",
            "v",
        ])
        .json();
    }
    let listed = b
        .aws(&["secretsmanager", "list-secrets", "--page-size", "2"])
        .json();
    let names: Vec<&str> = listed["SecretList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["registry/creds", "more/0", "more/1", "more/2", "more/3"]
    );
    let page = b
        .aws(&["secretsmanager", "list-secrets", "--max-items", "2"])
        .json();
    assert_eq!(page["SecretList"].as_array().unwrap().len(), 2);
    assert!(page["NextToken"].is_string(), "{page:#}");

    // Deleted with a recovery window: describable, not readable, restorable.
    let del = b
        .aws(&[
            "secretsmanager",
            "delete-secret",
            "--secret-id",
            "registry/creds",
            "--recovery-window-in-days",
            "7",
        ])
        .json();
    assert!(del["DeletionDate"].is_number(), "{del:#}");
    b.aws(&[
        "secretsmanager",
        "get-secret-value",
        "--secret-id",
        "registry/creds",
    ])
    .fails_with("InvalidRequestException", "marked for deletion");
    let d = b
        .aws(&[
            "secretsmanager",
            "describe-secret",
            "--secret-id",
            "registry/creds",
        ])
        .json();
    assert!(d["DeletedDate"].is_number(), "{d:#}");
    b.aws(&[
        "secretsmanager",
        "restore-secret",
        "--secret-id",
        "registry/creds",
    ])
    .json();
    b.aws(&[
        "secretsmanager",
        "get-secret-value",
        "--secret-id",
        "registry/creds",
    ])
    .json();
    b.aws(&[
        "secretsmanager",
        "delete-secret",
        "--secret-id",
        "more/0",
        "--force-delete-without-recovery",
    ])
    .json();
    b.aws(&["secretsmanager", "describe-secret", "--secret-id", "more/0"])
        .fails_with("ResourceNotFoundException", "can't find");
    b.aws(&[
        "secretsmanager",
        "delete-secret",
        "--secret-id",
        "more/1",
        "--recovery-window-in-days",
        "3",
    ])
    .fails_with("InvalidParameterException", "between 7 and 30");
    b.aws(&["secretsmanager", "rotate-secret", "--secret-id", "more/1"])
        .fails_with("InvalidRequestException", "does not implement RotateSecret");
}

#[test]
fn acknowledged_secrets_survive_sigkill() {
    let mut b = Berth::start();
    b.aws(&[
        "secretsmanager",
        "create-secret",
        "--name",
        "kept",
        "--secret-string",
        VALUE,
    ])
    .json();
    b.aws(&[
        "secretsmanager",
        "put-secret-value",
        "--secret-id",
        "kept",
        "--secret-string",
        "v2",
    ])
    .json();
    b.aws(&[
        "secretsmanager",
        "create-secret",
        "--name",
        "scheduled",
        "--secret-string",
        "x",
    ])
    .json();
    b.aws(&[
        "secretsmanager",
        "delete-secret",
        "--secret-id",
        "scheduled",
    ])
    .json();
    let arn_before = b
        .aws(&["secretsmanager", "describe-secret", "--secret-id", "kept"])
        .json()["ARN"]
        .clone();
    b.sigkill();
    b.restart();
    let got = b
        .aws(&["secretsmanager", "get-secret-value", "--secret-id", "kept"])
        .json();
    assert_eq!(got["SecretString"], "v2");
    assert_eq!(got["ARN"], arn_before);
    let previous = b
        .aws(&[
            "secretsmanager",
            "get-secret-value",
            "--secret-id",
            "kept",
            "--version-stage",
            "AWSPREVIOUS",
        ])
        .json();
    assert_eq!(previous["SecretString"], VALUE);
    b.aws(&[
        "secretsmanager",
        "get-secret-value",
        "--secret-id",
        "scheduled",
    ])
    .fails_with("InvalidRequestException", "marked for deletion");
    let all = b
        .aws(&[
            "secretsmanager",
            "list-secrets",
            "--include-planned-deletion",
        ])
        .json();
    let names: Vec<&str> = all["SecretList"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["Name"].as_str())
        .collect();
    assert_eq!(names, ["kept", "scheduled"], "{all:#}");
}
