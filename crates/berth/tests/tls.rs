#![allow(clippy::unwrap_used)]
//! TLS on the API port: `berth up --tls-cert --tls-key` with a certificate signed by a CA
//! made here (rcgen). The real `aws` CLI trusts that CA through `AWS_CA_BUNDLE` and works;
//! without it, the CLI refuses the certificate; plain HTTP to the TLS port gets nothing.

mod common;

use common::{Berth, Options, parse_aws_error, run_with_timeout};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A CA and a leaf for 127.0.0.1 and localhost it signed: (CA PEM, leaf PEM, leaf key PEM).
fn certificates() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Berth test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    (ca.pem(), leaf.pem(), leaf_key.serialize_pem())
}

fn aws(endpoint: &str, ca_bundle: Option<&Path>, args: &[&str]) -> Result<Value, String> {
    let mut cmd = Command::new("aws");
    cmd.args(args);
    for var in [
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_CA_BUNDLE",
        "AWS_REGION",
    ] {
        cmd.env_remove(var);
    }
    if let Some(ca) = ca_bundle {
        cmd.env("AWS_CA_BUNDLE", ca);
    }
    cmd.env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_PAGER", "")
        .env("AWS_MAX_ATTEMPTS", "1")
        .env("AWS_DEFAULT_OUTPUT", "json")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    let (status, stdout, stderr) = run_with_timeout(cmd, Duration::from_secs(60));
    if status.success() {
        Ok(serde_json::from_str(stdout.trim()).unwrap_or(Value::Null))
    } else {
        Err(stderr)
    }
}

#[test]
fn the_aws_cli_works_over_tls_and_plain_http_gets_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca).unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
    std::fs::write(dir.path().join("key.pem"), key).unwrap();
    let berth = Berth::start_with(Options {
        args: vec![
            "--tls-cert".into(),
            dir.path().join("cert.pem").display().to_string(),
            "--tls-key".into(),
            dir.path().join("key.pem").display().to_string(),
            "--runtime".into(),
            "process".into(),
        ],
        ..Options::default()
    });
    assert!(
        berth.endpoint.starts_with("https://127.0.0.1:"),
        "{}",
        berth.endpoint
    );

    let created = aws(
        &berth.endpoint,
        Some(&ca_path),
        &["ecs", "create-cluster", "--cluster-name", "secure"],
    )
    .unwrap();
    assert_eq!(created["cluster"]["clusterName"], "secure");
    let listed = aws(&berth.endpoint, Some(&ca_path), &["ecs", "list-clusters"]).unwrap();
    assert_eq!(
        listed["clusterArns"].as_array().unwrap().len(),
        2,
        "{listed}"
    );
    // Signatures are still checked over TLS.
    let mut cmd_env_wrong = Command::new("aws");
    cmd_env_wrong
        .args(["ecs", "list-clusters"])
        .env("AWS_ENDPOINT_URL", &berth.endpoint)
        .env("AWS_CA_BUNDLE", &ca_path)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "wrong")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_MAX_ATTEMPTS", "1")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    let (status, _, stderr) = run_with_timeout(cmd_env_wrong, Duration::from_secs(60));
    assert!(!status.success());
    let (code, _, _) = parse_aws_error(&stderr).unwrap_or_default();
    assert_eq!(code, "InvalidSignatureException", "{stderr}");

    // Without trusting the CA, the CLI refuses the certificate.
    let e = aws(&berth.endpoint, None, &["ecs", "list-clusters"]).unwrap_err();
    assert!(e.contains("SSL") || e.contains("certificate"), "{e}");

    // Plain HTTP to the TLS port gets no HTTP answer.
    let mut s = std::net::TcpStream::connect(berth.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(
        !got.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );

    // Still serving.
    let listed = aws(&berth.endpoint, Some(&ca_path), &["ecs", "list-clusters"]).unwrap();
    assert_eq!(listed["clusterArns"].as_array().unwrap().len(), 2);
}

#[test]
fn a_bad_certificate_or_key_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), "not a certificate").unwrap();
    std::fs::write(dir.path().join("key.pem"), "not a key").unwrap();
    let data = tempfile::tempdir().unwrap();
    let refused = Berth::start_in(
        data.path(),
        Options {
            args: vec![
                "--tls-cert".into(),
                dir.path().join("cert.pem").display().to_string(),
                "--tls-key".into(),
                dir.path().join("key.pem").display().to_string(),
            ],
            ..Options::default()
        },
    )
    .err()
    .expect("berth started with a bad certificate");
    assert!(refused.stderr.contains("CERTIFICATE"), "{}", refused.stderr);
    // --tls-cert without --tls-key is a usage error.
    let mut cmd = Command::new(common::berth_bin());
    cmd.args(["up", "--tls-cert", "x.pem"]);
    let (status, _, err) = run_with_timeout(cmd, Duration::from_secs(30));
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("--tls-key"), "{err}");
}

/// A remote `berth agent` joins over TLS, trusting the CA through --ca-file, with a cluster
/// token made by `berth agent-token` over TLS too; without the CA it cannot connect.
#[test]
fn a_remote_agent_joins_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca).unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
    std::fs::write(dir.path().join("key.pem"), key).unwrap();
    let berth = Berth::start_with(Options {
        args: vec![
            "--tls-cert".into(),
            dir.path().join("cert.pem").display().to_string(),
            "--tls-key".into(),
            dir.path().join("key.pem").display().to_string(),
            "--runtime".into(),
            "process".into(),
        ],
        ..Options::default()
    });
    aws(
        &berth.endpoint,
        Some(&ca_path),
        &["ecs", "create-cluster", "--cluster-name", "remote"],
    )
    .unwrap();
    let mut cmd = Command::new(common::berth_bin());
    cmd.args(["agent-token", "create", "--cluster", "remote"])
        .env("AWS_ENDPOINT_URL", &berth.endpoint)
        .env("AWS_CA_BUNDLE", &ca_path)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_DEFAULT_REGION", "us-east-1");
    let (status, out, err) = run_with_timeout(cmd, Duration::from_secs(60));
    assert!(status.success(), "{err}");
    let created: Value = serde_json::from_str(out.trim()).unwrap();
    let token = created["agentToken"]["token"].as_str().unwrap().to_string();

    let agent = |ca: Option<&Path>, data: &Path| {
        let mut cmd = Command::new(common::berth_bin());
        cmd.args([
            "agent",
            "--server",
            &berth.endpoint,
            "--token",
            &token,
            "--cluster",
            "remote",
            "--runtime",
            "process",
            "--data-dir",
        ])
        .arg(data)
        .env_remove("BERTH_CA_FILE")
        .stdin(std::process::Stdio::null());
        if let Some(ca) = ca {
            cmd.arg("--ca-file").arg(ca);
        }
        cmd
    };
    let list = || {
        aws(
            &berth.endpoint,
            Some(&ca_path),
            &["ecs", "list-container-instances", "--cluster", "remote"],
        )
        .unwrap()["containerInstanceArns"]
            .as_array()
            .unwrap()
            .len()
    };
    // Trusting the CA: it joins.
    let d1 = tempfile::tempdir().unwrap();
    let mut child = agent(Some(&ca_path), d1.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while list() == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let joined = list();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(joined, 1, "the agent did not join over TLS");
    // Not trusting it: the agent never gets through (it keeps retrying; give it a few seconds).
    let d2 = tempfile::tempdir().unwrap();
    let mut child = agent(None, d2.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(5));
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert_eq!(list(), 1, "an agent that does not trust the CA joined");
    assert!(!d2.path().join("identity.json").exists());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("certificate") || stderr.contains("error"),
        "{stderr}"
    );
}
