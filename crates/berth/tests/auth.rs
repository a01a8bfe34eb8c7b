#![allow(clippy::unwrap_used)]
//! End-to-end tests of SigV4 authentication: `berth up --credentials FILE` driven by the
//! real `aws` CLI with right and wrong keys, several keys in several accounts, session
//! tokens, and raw HTTP for what the CLI cannot send (no signature, a tampered body, a
//! stale date). After every refusal the state is checked to be unchanged.

mod common;

use berth_server::sigv4::{self, SignedRequest};
use common::{
    AwsResult, AwsResultExt, Berth, ECS_PREFIX, HttpResponse, Options, arns, berth_bin,
    http_request, now_secs, parse_aws_error, run_with_timeout,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const REGION: &str = "us-east-1";
/// The server's default account (keys without `account_id`, and the dev pair).
const DEFAULT_ACCOUNT: &str = "000000000000";

/// A key in the test credentials file.
#[derive(Debug, Clone, Copy)]
struct Key {
    id: &'static str,
    secret: &'static str,
    token: Option<&'static str>,
}

const ALICE: Key = Key {
    id: "AKIAALICE00000000001",
    secret: "alice/SECRET+0000000000000000000000000001",
    token: None,
};
const BOB: Key = Key {
    id: "AKIABOB0000000000002",
    secret: "bob/SECRET+00000000000000000000000000002",
    token: None,
};
const CAROL: Key = Key {
    id: "ASIACAROL00000000003",
    secret: "carol/SECRET+000000000000000000000000003",
    token: Some("FwoGZXIvYXdzEPT//////////wEaDCAROLTOKEN+/=="),
};
const DEV: Key = Key {
    id: "test",
    secret: "test",
    token: None,
};

const CREDENTIALS: &str = "\
# Berth's keys, in the AWS shared-credentials format.
[alice]
aws_access_key_id = AKIAALICE00000000001
aws_secret_access_key = alice/SECRET+0000000000000000000000000001
account_id = 111111111111

[bob]
aws_access_key_id = AKIABOB0000000000002
aws_secret_access_key = bob/SECRET+00000000000000000000000000002
account_id = 222222222222

[carol]
aws_access_key_id = ASIACAROL00000000003
aws_secret_access_key = carol/SECRET+000000000000000000000000003
aws_session_token = FwoGZXIvYXdzEPT//////////wEaDCAROLTOKEN+/==
";

/// A credentials file in a directory the caller keeps alive.
fn credentials_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("credentials");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

fn with_credentials(subcommand: &'static str, path: &Path, extra: &[&str]) -> Options {
    let mut args = vec!["--credentials".to_string(), path.display().to_string()];
    args.extend(extra.iter().map(|s| (*s).to_string()));
    Options {
        subcommand,
        args,
        ..Options::default()
    }
}

/// `aws ARGS...` signed with `key` (and its session token, if it has one).
fn aws_as(berth: &Berth, key: Key, args: &[&str]) -> AwsResult {
    aws_with(berth, key.id, key.secret, key.token, args)
}

fn aws_with(
    berth: &Berth,
    id: &str,
    secret: &str,
    token: Option<&str>,
    args: &[&str],
) -> AwsResult {
    let mut cmd = Command::new("aws");
    cmd.args(args);
    for var in [
        "AWS_PROFILE",
        "AWS_RETRY_MODE",
        "AWS_REGION",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_CA_BUNDLE",
        "AWS_ENDPOINT_URL_ECS",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ] {
        cmd.env_remove(var);
    }
    if let Some(t) = token {
        cmd.env("AWS_SESSION_TOKEN", t);
    }
    cmd.env("AWS_ENDPOINT_URL", &berth.endpoint)
        .env("AWS_ACCESS_KEY_ID", id)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_DEFAULT_REGION", REGION)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_PAGER", "")
        .env("AWS_MAX_ATTEMPTS", "1")
        .env("AWS_DEFAULT_OUTPUT", "json")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    let (status, stdout, stderr) = run_with_timeout(cmd, Duration::from_secs(60));
    let argv: Vec<String> = args.iter().map(|s| (*s).to_string()).collect();
    if status.success() {
        let text = stdout.trim();
        if text.is_empty() {
            return Ok(json!({}));
        }
        return Ok(serde_json::from_str(text).unwrap());
    }
    let (code, operation, message) =
        parse_aws_error(&stderr).unwrap_or_else(|| (String::new(), String::new(), stderr.clone()));
    Err(Box::new(common::AwsError {
        code,
        message,
        operation,
        exit_code: status.code(),
        stderr,
        args: argv,
    }))
}

fn cluster_arns(berth: &Berth, key: Key) -> Vec<String> {
    arns(&aws_as(berth, key, &["ecs", "list-clusters"]).json()["clusterArns"])
}

/// How a raw request is signed.
struct Signing<'a> {
    key: Key,
    /// Seconds since the epoch the request claims (`X-Amz-Date`).
    time: i64,
    /// The credential scope's service.
    service: &'a str,
}

/// A raw ECS call: `signed_body` is what the signature covers, `sent_body` what is sent.
fn raw_ecs(
    berth: &Berth,
    operation: &str,
    signing: Option<&Signing<'_>>,
    signed_body: &[u8],
    sent_body: &[u8],
) -> HttpResponse {
    let target = format!("{ECS_PREFIX}.{operation}");
    let host = berth.addr.to_string();
    let stamp = sigv4::format_amz_date(signing.map_or(0, |s| s.time));
    let mut headers: Vec<(&str, String)> = vec![
        ("X-Amz-Target", target),
        ("Content-Type", "application/x-amz-json-1.1".into()),
    ];
    if let Some(s) = signing {
        headers.push(("X-Amz-Date", stamp.clone()));
        if let Some(t) = s.key.token {
            headers.push(("X-Amz-Security-Token", t.into()));
        }
        let mut to_sign: Vec<(&str, &[u8])> = vec![("Host", host.as_bytes())];
        to_sign.extend(headers.iter().map(|(k, v)| (*k, v.as_bytes())));
        let req = SignedRequest {
            method: "POST",
            path: "/",
            query: "",
            headers: &to_sign,
            body: signed_body,
        };
        let authz =
            sigv4::authorization_header(&req, s.key.id, s.key.secret, REGION, s.service, &stamp);
        headers.push(("Authorization", authz));
    }
    let refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    http_request(berth.addr, "POST", "/", &refs, sent_body)
}

fn now() -> i64 {
    // Whole seconds are what X-Amz-Date carries.
    now_secs().floor() as i64
}

fn assert_refused(r: &HttpResponse, status: u16, code: &str, message: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    let body: Value = r.json();
    assert_eq!(body["__type"], code, "{body}");
    let text = body["message"].as_str().unwrap_or_default();
    assert!(text.contains(message), "{text:?} lacks {message:?}");
    assert_eq!(r.header("content-type"), Some("application/x-amz-json-1.1"));
    assert!(r.header("x-amzn-requestid").is_some(), "{:?}", r.headers);
}

const MISMATCH: &str = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";

#[test]
fn the_right_key_works_and_wrong_ones_are_refused() {
    let (_dir, path) = credentials_file(CREDENTIALS);
    let berth = Berth::start_with(with_credentials("up", &path, &[]));
    assert!(
        berth
            .banner
            .iter()
            .any(|l| l.contains("requests must be signed (SigV4) with one of 3 key(s)")),
        "{:#?}",
        berth.banner
    );

    let created = aws_as(
        &berth,
        ALICE,
        &["ecs", "create-cluster", "--cluster-name", "web"],
    )
    .json();
    assert_eq!(
        created["cluster"]["clusterArn"],
        "arn:aws:ecs:us-east-1:111111111111:cluster/web"
    );
    let before = cluster_arns(&berth, ALICE);
    assert_eq!(
        before,
        vec!["arn:aws:ecs:us-east-1:111111111111:cluster/web"]
    );

    // The right key with a wrong secret.
    let e = aws_with(
        &berth,
        ALICE.id,
        "not-the-secret",
        None,
        &["ecs", "create-cluster", "--cluster-name", "forged"],
    )
    .fails_with("InvalidSignatureException", MISMATCH);
    assert_eq!(e.message, MISMATCH);
    // A key Berth does not know.
    aws_with(
        &berth,
        "AKIANOBODY0000000000",
        ALICE.secret,
        None,
        &["ecs", "create-cluster", "--cluster-name", "stranger"],
    )
    .fails_with(
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    );
    // A session token the key does not have.
    aws_with(
        &berth,
        ALICE.id,
        ALICE.secret,
        Some("made-up-token"),
        &["ecs", "create-cluster", "--cluster-name", "token"],
    )
    .fails_with(
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    );
    assert_eq!(cluster_arns(&berth, ALICE), before, "nothing was created");

    // `berth up` on loopback also takes the development pair, as root of the default
    // account, and still checks its signature.
    assert_eq!(
        cluster_arns(&berth, DEV),
        vec![format!(
            "arn:aws:ecs:us-east-1:{DEFAULT_ACCOUNT}:cluster/default"
        )]
    );
    aws_with(
        &berth,
        "test",
        "not-test",
        None,
        &["ecs", "create-cluster", "--cluster-name", "x"],
    )
    .fails_with("InvalidSignatureException", MISMATCH);
    assert_eq!(cluster_arns(&berth, DEV).len(), 1);
    berth.assert_healthy();
}

#[test]
fn keys_in_different_accounts_keep_their_resources_apart() {
    let (_dir, path) = credentials_file(CREDENTIALS);
    let berth = Berth::start_with(with_credentials("up", &path, &[]));

    aws_as(
        &berth,
        ALICE,
        &["ecs", "create-cluster", "--cluster-name", "shared-name"],
    )
    .json();
    aws_as(
        &berth,
        ALICE,
        &["ecs", "create-cluster", "--cluster-name", "alice-only"],
    )
    .json();
    aws_as(
        &berth,
        BOB,
        &["ecs", "create-cluster", "--cluster-name", "shared-name"],
    )
    .json();

    assert_eq!(
        cluster_arns(&berth, ALICE),
        vec![
            "arn:aws:ecs:us-east-1:111111111111:cluster/alice-only",
            "arn:aws:ecs:us-east-1:111111111111:cluster/shared-name",
        ]
    );
    assert_eq!(
        cluster_arns(&berth, BOB),
        vec!["arn:aws:ecs:us-east-1:222222222222:cluster/shared-name"]
    );
    // Neither sees the default account's 'default' cluster, nor each other's.
    let described = aws_as(
        &berth,
        BOB,
        &[
            "ecs",
            "describe-clusters",
            "--clusters",
            "arn:aws:ecs:us-east-1:111111111111:cluster/alice-only",
            "alice-only",
        ],
    )
    .json();
    assert_eq!(described["clusters"], json!([]), "{described}");
    assert_eq!(described["failures"][0]["reason"], "MISSING", "{described}");
    aws_as(
        &berth,
        BOB,
        &["ecs", "delete-cluster", "--cluster", "alice-only"],
    )
    .fails_with("ClusterNotFoundException", "Cluster not found.");
    assert_eq!(cluster_arns(&berth, ALICE).len(), 2);

    // The principal is the section name, in the key's account.
    let td = json!({
        "family": "whoami",
        "containerDefinitions": [{"name": "c", "image": "busybox", "memory": 64}]
    });
    let file = berth.json_file(&td);
    let registered = aws_as(
        &berth,
        BOB,
        &["ecs", "register-task-definition", "--cli-input-json", &file],
    )
    .json();
    assert_eq!(
        registered["taskDefinition"]["registeredBy"],
        "arn:aws:iam::222222222222:user/bob"
    );
    assert_eq!(
        registered["taskDefinition"]["taskDefinitionArn"],
        "arn:aws:ecs:us-east-1:222222222222:task-definition/whoami:1"
    );
    let families = aws_as(&berth, ALICE, &["ecs", "list-task-definition-families"]).json();
    assert_eq!(families["families"], json!([]), "{families}");

    // A key without account_id acts in the server's account; its session token is required.
    let created = aws_as(
        &berth,
        CAROL,
        &["ecs", "create-cluster", "--cluster-name", "c"],
    )
    .json();
    assert_eq!(
        created["cluster"]["clusterArn"],
        format!("arn:aws:ecs:us-east-1:{DEFAULT_ACCOUNT}:cluster/c")
    );
    aws_with(
        &berth,
        CAROL.id,
        CAROL.secret,
        None,
        &["ecs", "list-clusters"],
    )
    .fails_with(
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    );
}

#[test]
fn raw_requests_without_a_valid_signature_change_nothing() {
    let (_dir, path) = credentials_file(CREDENTIALS);
    let berth = Berth::start_with(with_credentials("up", &path, &[]));
    let create = |name: &str| serde_json::to_vec(&json!({"clusterName": name})).unwrap();
    let alice_now = Signing {
        key: ALICE,
        time: now(),
        service: "ecs",
    };

    // Control: the raw signer produces requests Berth accepts.
    let r = raw_ecs(
        &berth,
        "CreateCluster",
        Some(&alice_now),
        &create("raw"),
        &create("raw"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let before = cluster_arns(&berth, ALICE);
    assert_eq!(
        before,
        vec!["arn:aws:ecs:us-east-1:111111111111:cluster/raw"]
    );

    // No signature at all.
    let r = raw_ecs(&berth, "CreateCluster", None, b"", &create("anon"));
    assert_refused(
        &r,
        403,
        "MissingAuthenticationTokenException",
        "Missing Authentication Token",
    );
    // Even for an operation Berth does not know: authentication comes first.
    let r = raw_ecs(&berth, "Frobnicate", None, b"", b"{}");
    assert_refused(&r, 403, "MissingAuthenticationTokenException", "");

    // A valid signature over another body.
    let r = raw_ecs(
        &berth,
        "CreateCluster",
        Some(&alice_now),
        &create("good"),
        &create("evil"),
    );
    assert_refused(&r, 400, "InvalidSignatureException", MISMATCH);

    // Correctly signed, 20 minutes ago (a replay outside the window).
    let old = now() - 20 * 60;
    let stale = Signing {
        key: ALICE,
        time: old,
        service: "ecs",
    };
    let r = raw_ecs(
        &berth,
        "CreateCluster",
        Some(&stale),
        &create("old"),
        &create("old"),
    );
    assert_refused(
        &r,
        400,
        "InvalidSignatureException",
        &format!(
            "Signature expired: {} is now earlier than ",
            sigv4::format_amz_date(old)
        ),
    );
    assert!(r.text().contains(" - 15 min.)"), "{}", r.text());

    // Correctly signed, but for CloudWatch Logs.
    let logs = Signing {
        key: ALICE,
        time: now(),
        service: "logs",
    };
    let r = raw_ecs(
        &berth,
        "CreateCluster",
        Some(&logs),
        &create("l"),
        &create("l"),
    );
    assert_refused(
        &r,
        400,
        "InvalidSignatureException",
        "Credential should be scoped to correct service: 'ecs'.",
    );

    // A session-token key without its token, and a malformed Authorization header.
    let no_token = Signing {
        key: Key {
            token: None,
            ..CAROL
        },
        time: now(),
        service: "ecs",
    };
    let r = raw_ecs(
        &berth,
        "CreateCluster",
        Some(&no_token),
        &create("t"),
        &create("t"),
    );
    assert_refused(&r, 400, "UnrecognizedClientException", "security token");
    let r = http_request(
        berth.addr,
        "POST",
        "/",
        &[
            ("X-Amz-Target", &format!("{ECS_PREFIX}.CreateCluster")),
            ("X-Amz-Date", &sigv4::format_amz_date(now())),
            (
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=AKIAALICE00000000001/20150830/us-east-1/ecs, Signature=00",
            ),
        ],
        &create("malformed"),
    );
    assert_refused(
        &r,
        400,
        "IncompleteSignatureException",
        "Authorization header requires 'SignedHeaders' parameter.",
    );

    // Nothing above changed anything, for anyone.
    assert_eq!(cluster_arns(&berth, ALICE), before);
    assert_eq!(cluster_arns(&berth, BOB), Vec::<String>::new());
    assert_eq!(
        cluster_arns(&berth, DEV),
        vec![format!(
            "arn:aws:ecs:us-east-1:{DEFAULT_ACCOUNT}:cluster/default"
        )]
    );
    berth.assert_healthy();
}

#[test]
fn berth_server_refuses_the_dev_pair_alone_unless_allowed() {
    let (_dir, path) =
        credentials_file("[dev]\naws_access_key_id = test\naws_secret_access_key = test\n");
    let data = tempfile::tempdir().unwrap();
    let refused = Berth::start_in(data.path(), with_credentials("server", &path, &[]))
        .err()
        .expect("berth server started with only the development pair");
    assert!(
        refused.stderr.contains("--allow-dev-credentials"),
        "{}",
        refused.stderr
    );
    assert_ne!(refused.status.map(|s| s.success()), Some(true));

    let berth = Berth::start_in(
        data.path(),
        with_credentials("server", &path, &["--allow-dev-credentials"]),
    )
    .unwrap_or_else(|f| panic!("{f:#?}"));
    assert_eq!(cluster_arns(&berth, DEV), Vec::<String>::new());
    let r = raw_ecs(&berth, "ListClusters", None, b"", b"{}");
    assert_refused(&r, 403, "MissingAuthenticationTokenException", "");
    drop(berth);

    // Without any --credentials, `berth server` has nothing but the pair: the same rule.
    let refused = Berth::start_in(
        data.path(),
        Options {
            subcommand: "server",
            ..Options::default()
        },
    )
    .err()
    .expect("berth server started without credentials");
    assert!(
        refused.stderr.contains("--allow-dev-credentials")
            && refused.stderr.contains("--credentials FILE"),
        "{}",
        refused.stderr
    );
    assert!(!refused.stdout.contains("is listening on"), "{refused:?}");
}

#[test]
fn berth_up_verifies_even_the_development_pair() {
    // No --credentials: `berth up` on loopback accepts test/test, and only signed requests.
    let berth = Berth::start();
    assert!(
        berth
            .banner
            .iter()
            .any(|l| l
                .contains("requests must be signed (SigV4) with the development pair test/test")),
        "{:#?}",
        berth.banner
    );
    let default = vec![format!(
        "arn:aws:ecs:us-east-1:{DEFAULT_ACCOUNT}:cluster/default"
    )];
    assert_eq!(cluster_arns(&berth, DEV), default);
    let create = |name: &str| serde_json::to_vec(&json!({"clusterName": name})).unwrap();

    // Unsigned, for every service and even for an unknown target.
    let r = raw_ecs(&berth, "CreateCluster", None, b"", &create("anon"));
    assert_refused(
        &r,
        403,
        "MissingAuthenticationTokenException",
        "Missing Authentication Token",
    );
    for target in [
        "Logs_20140328.CreateLogGroup",
        "AnyScaleFrontendService.DescribeScalableTargets",
        "Nobody.Nothing",
    ] {
        let r = http_request(
            berth.addr,
            "POST",
            "/",
            &[("X-Amz-Target", target)],
            br#"{"logGroupName": "anon"}"#,
        );
        assert_refused(&r, 403, "MissingAuthenticationTokenException", "");
    }
    // The harness's old fake signature (right shape, made-up signature).
    let r = http_request(
        berth.addr,
        "POST",
        "/",
        &[
            ("X-Amz-Target", &format!("{ECS_PREFIX}.CreateCluster")),
            ("X-Amz-Date", &sigv4::format_amz_date(now())),
            (
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=test/20250101/us-east-1/ecs/aws4_request, SignedHeaders=host;x-amz-date, Signature=0",
            ),
        ],
        &create("fake"),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.json()["__type"]
            .as_str()
            .is_some_and(|t| t.ends_with("SignatureException")),
        "{}",
        r.text()
    );
    // The pair with a wrong secret, raw and from the CLI; a key Berth does not know.
    let wrong = Signing {
        key: Key {
            secret: "not-test",
            ..DEV
        },
        time: now(),
        service: "ecs",
    };
    let r = raw_ecs(
        &berth,
        "CreateCluster",
        Some(&wrong),
        &create("w"),
        &create("w"),
    );
    assert_refused(&r, 400, "InvalidSignatureException", MISMATCH);
    aws_with(
        &berth,
        "test",
        "not-test",
        None,
        &["ecs", "create-cluster", "--cluster-name", "cli"],
    )
    .fails_with("InvalidSignatureException", MISMATCH);
    aws_as(
        &berth,
        ALICE,
        &["ecs", "create-cluster", "--cluster-name", "alice"],
    )
    .fails_with("UnrecognizedClientException", "security token");
    // A correctly signed request outside the skew window.
    let stale = Signing {
        key: DEV,
        time: now() - 20 * 60,
        service: "ecs",
    };
    let r = raw_ecs(
        &berth,
        "CreateCluster",
        Some(&stale),
        &create("s"),
        &create("s"),
    );
    assert_refused(&r, 400, "InvalidSignatureException", "Signature expired");

    // Nothing changed; the health probe and the agent protocol do not use SigV4.
    assert_eq!(cluster_arns(&berth, DEV), default);
    berth.assert_healthy();
    let r = berth.http(
        "POST",
        "/_berth/agent/v1/sync",
        &[("Content-Type", "application/json")],
        json!({"container_instance_arn": "x", "instance_token": "forged", "desired_version": 0, "reports": [], "wait_ms": 0})
            .to_string()
            .as_bytes(),
    );
    assert!(
        [400, 401].contains(&r.status) && !r.text().contains("Authentication"),
        "the agent protocol answers for itself, not SigV4: {} {}",
        r.status,
        r.text()
    );
    // The right signature works (control).
    let r = raw_ecs(
        &berth,
        "CreateCluster",
        Some(&Signing {
            key: DEV,
            time: now(),
            service: "ecs",
        }),
        &create("signed"),
        &create("signed"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn no_credentials_beyond_loopback_is_refused_before_listening() {
    let data = tempfile::tempdir().unwrap();
    for subcommand in ["server", "up"] {
        let mut cmd = Command::new(berth_bin());
        cmd.args([subcommand, "--listen", "0.0.0.0:0", "--data-dir"])
            .arg(data.path())
            .env_remove("BERTH_LISTEN")
            .env("BERTH_LOG", "info")
            .env("NO_COLOR", "1");
        let (status, stdout, stderr) = run_with_timeout(cmd, Duration::from_secs(30));
        assert!(!status.success(), "{stdout}\n{stderr}");
        assert!(
            stderr.contains("without --credentials"),
            "{subcommand}: {stderr}"
        );
        assert!(!stdout.contains("is listening on"), "{stdout}");
    }
}
