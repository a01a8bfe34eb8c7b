//! End-to-end harness: starts the real `berth` binary on port 0 with its own data directory
//! and drives it with the real `aws` CLI (v1) or with raw HTTP over a `TcpStream`. Every
//! API call, the CLI's and the raw ones ([`Berth::ecs`], [`Berth::signed`], ...), is
//! signed with the development pair test/test, which `berth up` accepts on loopback;
//! [`Berth::http`] sends exactly what it is given (unsigned).
//!
//! Every test owns its Berth, its port and its temporary directories, so tests run in
//! parallel. The process is killed when the [`Berth`] is dropped.

#![allow(dead_code, unreachable_pub)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// How long `berth` may take to print its banner.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one `aws` invocation may take before it is killed.
const AWS_TIMEOUT: Duration = Duration::from_secs(60);
/// The ECS `X-Amz-Target` prefix.
pub const ECS_PREFIX: &str = "AmazonEC2ContainerServiceV20141113";
/// The account Berth uses by default.
pub const ACCOUNT: &str = "000000000000";
/// The CloudWatch Logs `X-Amz-Target` prefix.
pub const LOGS_PREFIX: &str = "Logs_20140328";
/// The development pair (access key id, secret) every harness request signs with.
pub const DEV_KEY: (&str, &str) = ("test", "test");

/// The `berth` binary under test.
pub fn berth_bin() -> &'static str {
    env!("CARGO_BIN_EXE_berth")
}

/// Absolute path of a file in the repository's `examples/` directory.
pub fn example(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name);
    p.canonicalize()
        .unwrap_or_else(|e| panic!("example {}: {e}", p.display()))
}

/// Where a Berth keeps its data: a temporary directory it owns, or one the test owns.
enum DataDir {
    Owned(tempfile::TempDir),
    Borrowed(PathBuf),
}

impl DataDir {
    fn path(&self) -> &Path {
        match self {
            DataDir::Owned(t) => t.path(),
            DataDir::Borrowed(p) => p,
        }
    }
}

/// What to start.
#[derive(Debug, Clone)]
pub struct Options {
    /// `up` or `server`.
    pub subcommand: &'static str,
    /// Extra flags after the standard ones.
    pub args: Vec<String>,
    /// Pass `--allow-reset`.
    pub allow_reset: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            subcommand: "up",
            args: vec![],
            allow_reset: true,
        }
    }
}

/// A `berth` process that did not come up.
#[derive(Debug)]
pub struct StartFailure {
    /// How it exited (None if it had to be killed).
    pub status: Option<ExitStatus>,
    /// Everything it printed to stdout.
    pub stdout: String,
    /// Everything it printed to stderr.
    pub stderr: String,
}

/// A running `berth` process.
pub struct Berth {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT` (`https://` with `--tls-cert`)
    pub endpoint: String,
    /// The bound address.
    pub addr: SocketAddr,
    /// The banner lines printed on stdout up to and including the `export AWS_ENDPOINT_URL` one.
    pub banner: Vec<String>,
    stderr: Arc<Mutex<Vec<u8>>>,
    data_dir: DataDir,
    scratch: tempfile::TempDir,
    options: Options,
    files: AtomicUsize,
}

impl Berth {
    /// `berth up --listen 127.0.0.1:0 --data-dir <fresh tempdir> --allow-reset`.
    pub fn start() -> Berth {
        Berth::start_with(Options::default())
    }

    /// Start with the given options and a fresh temporary data directory.
    pub fn start_with(options: Options) -> Berth {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        Berth::spawn(DataDir::Owned(dir), options)
            .unwrap_or_else(|f| panic!("berth did not start: {f:#?}"))
    }

    /// Start on an existing data directory (the caller keeps it alive).
    pub fn start_in(data_dir: &Path, options: Options) -> Result<Berth, StartFailure> {
        Berth::spawn(DataDir::Borrowed(data_dir.to_path_buf()), options)
    }

    fn command(data_dir: &Path, options: &Options) -> Command {
        let mut cmd = Command::new(berth_bin());
        cmd.arg(options.subcommand)
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir);
        if options.allow_reset {
            cmd.arg("--allow-reset");
        }
        cmd.args(&options.args);
        for var in [
            "BERTH_LISTEN",
            "BERTH_DATA_DIR",
            "BERTH_ACCOUNT_ID",
            "BERTH_REGION",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("BERTH_LOG", "info").env("NO_COLOR", "1");
        cmd
    }

    fn spawn(data_dir: DataDir, options: Options) -> Result<Berth, StartFailure> {
        let mut child = Berth::command(data_dir.path(), &options)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", berth_bin()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        if let Some(mut pipe) = child.stderr.take() {
            let sink = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .extend_from_slice(&buf[..n]);
                }
            });
        }
        // Read stdout on a thread (so a silent process cannot hang us); forward lines.
        let (tx, rx) = mpsc::channel::<String>();
        if let Some(pipe) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    // Keep draining after the receiver is gone.
                    let _ = tx.send(line);
                }
            });
        }
        let deadline = Instant::now() + START_TIMEOUT;
        let mut banner = Vec::new();
        let mut listening = None;
        let mut exported = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.split("is listening on ").nth(1) {
                        listening = Some(rest.trim().to_string());
                    }
                    if let Some(rest) = line.trim().strip_prefix("export AWS_ENDPOINT_URL=") {
                        exported = Some(rest.trim().to_string());
                    }
                    banner.push(line);
                    if exported.is_some() {
                        break;
                    }
                }
                Err(_) => {
                    // EOF (the process is exiting) or timeout.
                    let status = wait_timeout(&mut child, Duration::from_secs(10));
                    if status.is_none() {
                        let _ = child.kill();
                        let _ = child.wait();
                    }
                    // Give the stderr thread a moment to collect the last words.
                    std::thread::sleep(Duration::from_millis(50));
                    let stderr = String::from_utf8_lossy(
                        &stderr
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner),
                    )
                    .into_owned();
                    return Err(StartFailure {
                        status,
                        stdout: banner.join("\n"),
                        stderr,
                    });
                }
            }
        }
        let endpoint =
            listening.unwrap_or_else(|| panic!("no 'is listening on' line: {banner:#?}"));
        assert_eq!(
            exported.as_deref(),
            Some(endpoint.as_str()),
            "the banner's export line names the endpoint: {banner:#?}"
        );
        let addr: SocketAddr = endpoint
            .strip_prefix("http://")
            .or_else(|| endpoint.strip_prefix("https://"))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("endpoint {endpoint} is not http(s)://ADDR"));
        Ok(Berth {
            child: Some(child),
            endpoint,
            addr,
            banner,
            stderr,
            data_dir,
            scratch: tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}")),
            options,
            files: AtomicUsize::new(0),
        })
    }

    /// The data directory in use.
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// Process id of the running berth.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .unwrap_or_else(|| panic!("berth is not running"))
    }

    /// Everything berth has written to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(
            &self
                .stderr
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
        .into_owned()
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap_or_else(|e| panic!("running kill: {e}"));
        assert!(status.success(), "kill -{sig} failed: {status}");
    }

    /// SIGKILL the process and reap it.
    pub fn sigkill(&mut self) {
        self.signal("KILL");
        let status = self.wait_exit(Duration::from_secs(10));
        assert!(status.is_some(), "berth survived SIGKILL");
    }

    /// Send SIGTERM (does not wait).
    pub fn sigterm(&mut self) {
        self.signal("TERM");
    }

    /// Wait up to `timeout` for the process to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let status = wait_timeout(child, timeout);
        if status.is_some() {
            self.child = None;
        }
        status
    }

    /// Start a new process on the same data directory with the same options (the port
    /// changes). Kills the current one first if it is still running.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.sigkill();
        }
        let dir = std::mem::replace(&mut self.data_dir, DataDir::Borrowed(PathBuf::new()));
        let options = self.options.clone();
        let (dir_back, result) = match dir {
            DataDir::Owned(t) => {
                let path = t.path().to_path_buf();
                (
                    DataDir::Owned(t),
                    Berth::spawn(DataDir::Borrowed(path), options),
                )
            }
            DataDir::Borrowed(p) => (
                DataDir::Borrowed(p.clone()),
                Berth::spawn(DataDir::Borrowed(p), options),
            ),
        };
        let mut fresh = result.unwrap_or_else(|f| panic!("berth did not restart: {f:#?}"));
        self.child = fresh.child.take();
        self.endpoint = fresh.endpoint.clone();
        self.addr = fresh.addr;
        self.banner = std::mem::take(&mut fresh.banner);
        self.stderr = fresh.stderr.clone();
        self.data_dir = dir_back;
    }

    // ---------------------------------------------------------------- the aws CLI

    /// `aws ARGS...` against this Berth in us-east-1.
    pub fn aws(&self, args: &[&str]) -> AwsResult {
        self.aws_in("us-east-1", args)
    }

    /// `aws ARGS...` against this Berth with `AWS_DEFAULT_REGION=region`.
    pub fn aws_in(&self, region: &str, args: &[&str]) -> AwsResult {
        run_aws(&self.endpoint, region, args)
    }

    /// Write `json` to a scratch file and return its `file://` URL for `--cli-input-json`.
    pub fn json_file(&self, json: &Value) -> String {
        let n = self.files.fetch_add(1, Ordering::Relaxed);
        let path = self.scratch.path().join(format!("input-{n}.json"));
        std::fs::write(
            &path,
            serde_json::to_vec_pretty(json).unwrap_or_else(|e| panic!("{e}")),
        )
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        format!("file://{}", path.display())
    }

    /// `aws ecs register-task-definition --cli-input-json file://...` with `json`.
    pub fn register(&self, json: &Value) -> AwsResult {
        let url = self.json_file(json);
        self.aws(&["ecs", "register-task-definition", "--cli-input-json", &url])
    }

    // ---------------------------------------------------------------- raw HTTP

    /// One HTTP/1.1 request on a fresh connection (`Connection: close`).
    pub fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpResponse {
        http_request(self.addr, method, path, headers, body)
    }

    /// A `POST /` with `headers` and `body`, signed (SigV4) with the development pair
    /// test/test for `region` and the service its `X-Amz-Target` names (ECS if none).
    pub fn signed(&self, region: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
        let signed = sign(self.addr, region, headers, body);
        let refs: Vec<(&str, &str)> = signed
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.http("POST", "/", &refs, body)
    }

    /// A `POST path` with `headers` and `body`, signed (SigV4, test/test) for `region` and
    /// the service whose signing name is `service`.
    pub fn signed_path(
        &self,
        region: &str,
        path: &str,
        service: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpResponse {
        let signed = sign_path(self.addr, region, path, service, headers, body);
        let refs: Vec<(&str, &str)> = signed
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.http("POST", path, &refs, body)
    }

    /// A signed call of `target` (`Prefix.Operation`) in `region`: (status, JSON body).
    pub fn call(&self, region: &str, target: &str, body: &Value) -> (u16, Value) {
        let body = serde_json::to_vec(body).unwrap_or_else(|e| panic!("{e}"));
        let resp = self.signed(
            region,
            &[
                ("X-Amz-Target", target),
                ("Content-Type", "application/x-amz-json-1.1"),
            ],
            &body,
        );
        (resp.status, resp.json())
    }

    /// A signed ECS call in us-east-1 (test/test).
    pub fn ecs(&self, operation: &str, body: &Value) -> (u16, Value) {
        self.ecs_in("us-east-1", operation, body)
    }

    /// A signed ECS call in `region` (test/test); the credential scope names the region.
    pub fn ecs_in(&self, region: &str, operation: &str, body: &Value) -> (u16, Value) {
        self.call(region, &format!("{ECS_PREFIX}.{operation}"), body)
    }

    /// Raw ECS call that must succeed.
    pub fn ecs_ok(&self, operation: &str, body: &Value) -> Value {
        let (status, v) = self.ecs(operation, body);
        assert_eq!(status, 200, "{operation} {body}: {v}");
        v
    }

    /// ACTIVE cluster names (raw ListClusters, us-east-1).
    pub fn cluster_names(&self) -> Vec<String> {
        let v = self.ecs_ok("ListClusters", &serde_json::json!({}));
        arns(&v["clusterArns"])
            .iter()
            .map(|a| a.rsplit('/').next().unwrap_or_default().to_string())
            .collect()
    }

    /// Task definition families (raw ListTaskDefinitionFamilies, status ALL, us-east-1).
    pub fn families(&self) -> Vec<String> {
        let v = self.ecs_ok(
            "ListTaskDefinitionFamilies",
            &serde_json::json!({"status": "ALL"}),
        );
        arns(&v["families"])
    }

    /// Every event of a log stream (us-east-1), oldest first, paging GetLogEvents forward
    /// over raw HTTP until the same token comes back.
    pub fn all_log_events(&self, group: &str, stream: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = serde_json::json!({
                "logGroupName": group, "logStreamName": stream, "startFromHead": true,
            });
            if let Some(t) = &token {
                body["nextToken"] = serde_json::json!(t);
            }
            let (status, page) =
                self.call("us-east-1", &format!("{LOGS_PREFIX}.GetLogEvents"), &body);
            assert_eq!(status, 200, "GetLogEvents {body}: {page}");
            out.extend(page["events"].as_array().into_iter().flatten().cloned());
            let next = page["nextForwardToken"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if token.as_deref() == Some(next.as_str()) {
                return out;
            }
            token = Some(next);
        }
    }

    /// The messages of [`Berth::all_log_events`].
    pub fn all_log_messages(&self, group: &str, stream: &str) -> Vec<String> {
        self.all_log_events(group, stream)
            .iter()
            .map(|e| e["message"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// `GET /healthz` answers `ok`.
    pub fn assert_healthy(&self) {
        let r = self.http("GET", "/healthz", &[], b"");
        assert_eq!(r.status, 200, "healthz: {}", r.text());
        assert_eq!(r.text().trim(), "ok");
    }
}

impl Berth {
    /// SIGKILL the process and reap it, if it is still running (never panics).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Strings of a JSON array (panics on anything else).
pub fn arns(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array, got {v}"))
        .iter()
        .map(|x| {
            x.as_str()
                .unwrap_or_else(|| panic!("expected a string, got {x}"))
                .to_string()
        })
        .collect()
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => return None,
        }
    }
}

/// Run a command to completion with a deadline; returns (status, stdout, stderr).
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> (ExitStatus, String, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut out);
            }
            String::from_utf8_lossy(&out).into_owned()
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let Some(status) = wait_timeout(&mut child, timeout) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{cmd:?} did not finish within {timeout:?}");
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    (status, stdout, stderr)
}

// -------------------------------------------------------------------- aws CLI results

/// What a failed `aws` call reported.
#[derive(Debug, Clone)]
pub struct AwsError {
    /// The exception name (`ClientException`), or empty if stderr was not a service error.
    pub code: String,
    /// The exception message (or all of stderr).
    pub message: String,
    /// The operation named in the error line.
    pub operation: String,
    /// The CLI's exit code.
    pub exit_code: Option<i32>,
    /// The whole of stderr.
    pub stderr: String,
    /// The command line, for failure messages.
    pub args: Vec<String>,
}

/// A successful call's parsed stdout (`{}` when the CLI printed nothing), or its error.
pub type AwsResult = Result<Value, Box<AwsError>>;

/// Assertions on [`AwsResult`]s.
pub trait AwsResultExt {
    /// The JSON output; panics with the CLI's stderr if the call failed.
    fn json(self) -> Value;
    /// The error; panics if the call succeeded or failed with another exception, or if the
    /// message does not contain `message_part`.
    fn fails_with(self, code: &str, message_part: &str) -> AwsError;
}

impl AwsResultExt for AwsResult {
    fn json(self) -> Value {
        match self {
            Ok(v) => v,
            Err(e) => panic!(
                "aws {:?} failed ({}): {}\n{}",
                e.args, e.code, e.message, e.stderr
            ),
        }
    }

    fn fails_with(self, code: &str, message_part: &str) -> AwsError {
        match self {
            Ok(v) => panic!("expected {code} but the call succeeded: {v:#}"),
            Err(e) => {
                assert_eq!(
                    e.code, code,
                    "aws {:?}: wrong exception; stderr:\n{}",
                    e.args, e.stderr
                );
                assert!(
                    e.message.contains(message_part),
                    "aws {:?}: message {:?} does not contain {:?}",
                    e.args,
                    e.message,
                    message_part
                );
                assert_eq!(e.exit_code, Some(255), "service errors exit 255: {e:?}");
                *e
            }
        }
    }
}

/// Parse `An error occurred (Code) when calling the Op operation: message` (botocore may put
/// `(reached max retries: N)` between the operation and the colon).
pub fn parse_aws_error(stderr: &str) -> Option<(String, String, String)> {
    let start = stderr.find("An error occurred (")?;
    let rest = &stderr[start + "An error occurred (".len()..];
    let (code, rest) = rest.split_once(')')?;
    let rest = rest.strip_prefix(" when calling the ")?;
    let (operation, rest) = rest.split_once(" operation")?;
    let rest = match rest.strip_prefix(" (") {
        Some(retries) => retries.split_once(')').map_or("", |(_, r)| r),
        None => rest,
    };
    let message = rest.strip_prefix(':').unwrap_or(rest).trim().to_string();
    Some((code.to_string(), operation.to_string(), message))
}

fn run_aws(endpoint: &str, region: &str, args: &[&str]) -> AwsResult {
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
    cmd.env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_DEFAULT_REGION", region)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_PAGER", "")
        .env("AWS_MAX_ATTEMPTS", "1")
        .env("AWS_DEFAULT_OUTPUT", "json")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    let (status, stdout, stderr) = run_with_timeout(cmd, AWS_TIMEOUT);
    let argv: Vec<String> = args.iter().map(|s| (*s).to_string()).collect();
    if status.success() {
        let text = stdout.trim();
        if text.is_empty() {
            return Ok(Value::Object(serde_json::Map::new()));
        }
        return Ok(serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("aws {argv:?} printed non-JSON ({e}):\n{stdout}")));
    }
    let (code, operation, message) =
        parse_aws_error(&stderr).unwrap_or_else(|| (String::new(), String::new(), stderr.clone()));
    Err(Box::new(AwsError {
        code,
        message,
        operation,
        exit_code: status.code(),
        stderr,
        args: argv,
    }))
}

// -------------------------------------------------------------------- signing

/// The SigV4 signing name of the service an `X-Amz-Target` value is for (ECS when there
/// is none or it is unknown).
pub fn signing_service(target: Option<&str>) -> &'static str {
    match target.and_then(|t| t.split('.').next()) {
        Some(LOGS_PREFIX) => "logs",
        Some("AnyScaleFrontendService") => "application-autoscaling",
        Some("GraniteServiceVersion20100801") => "monitoring",
        Some("secretsmanager") => "secretsmanager",
        _ => "ecs",
    }
}

/// `headers` plus `X-Amz-Date` and an `Authorization` header signing them, the `Host`
/// header [`http_request`] sends for `addr`, and `body` with the development pair, now,
/// for `region` and the service of the `X-Amz-Target` among `headers`.
pub fn sign(
    addr: SocketAddr,
    region: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<(String, String)> {
    let target = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-amz-target"))
        .map(|(_, v)| *v);
    sign_path(addr, region, "/", signing_service(target), headers, body)
}

/// [`sign`] for a `POST` to `path`, for the service whose signing name is `service`.
pub fn sign_path(
    addr: SocketAddr,
    region: &str,
    path: &str,
    service: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<(String, String)> {
    use berth_server::sigv4::{SignedRequest, authorization_header, format_amz_date};
    let stamp = format_amz_date(now_secs().floor() as i64);
    let host = addr.to_string();
    let mut to_sign: Vec<(&str, &[u8])> =
        vec![("Host", host.as_bytes()), ("X-Amz-Date", stamp.as_bytes())];
    to_sign.extend(headers.iter().map(|(k, v)| (*k, v.as_bytes())));
    let req = SignedRequest {
        method: "POST",
        path,
        query: "",
        headers: &to_sign,
        body,
    };
    let authz = authorization_header(&req, DEV_KEY.0, DEV_KEY.1, region, service, &stamp);
    let mut out: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
    out.push(("X-Amz-Date".into(), stamp));
    out.push(("Authorization".into(), authz));
    out
}

// -------------------------------------------------------------------- raw HTTP

/// A raw HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (panics if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "HTTP {} body is not JSON ({e}): {:?}",
                self.status,
                self.text()
            )
        })
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(30)));
    s
}

/// Send `head` (request line and headers, without the blank line) plus `body` and read
/// the response. `Content-Length` is added unless `head` already has a length or encoding.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    let has_length = headers.iter().any(|(k, _)| {
        k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding")
    });
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has_length {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut s = connect(addr);
    s.write_all(head.as_bytes())
        .unwrap_or_else(|e| panic!("writing request head: {e}"));
    s.write_all(body)
        .unwrap_or_else(|e| panic!("writing request body: {e}"));
    read_response(&mut s)
}

/// Send only a request head (the body is never sent) and read the response: for checking
/// that the server refuses on the declared length alone.
pub fn http_head_only(addr: SocketAddr, head: &str) -> HttpResponse {
    let mut s = connect(addr);
    s.write_all(head.as_bytes())
        .unwrap_or_else(|e| panic!("writing request head: {e}"));
    read_response(&mut s)
}

/// Read a whole response from a `Connection: close` stream.
pub fn read_response(s: &mut TcpStream) -> HttpResponse {
    let mut raw = Vec::new();
    if let Err(e) = s.read_to_end(&mut raw) {
        // A reset after the full response has arrived is fine; otherwise report it.
        if raw.is_empty() {
            panic!("reading response: {e}");
        }
    }
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> HttpResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body);
    } else if let Some(n) = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        assert!(
            body.len() >= n,
            "truncated body: {} of {n} bytes",
            body.len()
        );
        body.truncate(n);
    }
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            break;
        };
        data = &data[eol + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or_default();
    }
    out
}

/// Encode `body` as one HTTP/1.1 chunk plus the terminating chunk.
pub fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out.extend_from_slice(b"\r\n0\r\n\r\n");
    out
}

/// Seconds since the Unix epoch, for checking server timestamps.
pub fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `n` seconds.
pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Poll `f` every 100 ms until it returns `Some`, or panic after `timeout`.
pub fn wait_until<T>(what: &str, timeout: Duration, f: impl FnMut() -> Option<T>) -> T {
    wait_until_every(what, timeout, Duration::from_millis(100), f)
}

/// Poll `f` every `every` until it returns `Some`, or panic after `timeout`.
pub fn wait_until_every<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(every);
    }
}

/// Pids of live processes whose argv contains `marker`, except the `aws` CLI's (its arguments
/// carry the markers too) and this test's own. A zombie's cmdline is empty, so it never matches.
pub fn pids_with(marker: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_aws_cli = args
            .iter()
            .take(2)
            .any(|a| Path::new(a).file_name().is_some_and(|n| n == "aws"));
        if !is_aws_cli && args.iter().any(|a| a.contains(marker)) {
            out.push(pid);
        }
    }
    out
}

/// SIGKILL the process group `pid` leads (task processes lead their own), else just `pid`.
pub fn kill_group_of(pid: u32) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let pgid = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(2))
        .and_then(|g| g.parse::<u32>().ok());
    let target = if pgid == Some(pid) {
        format!("-{pid}")
    } else {
        pid.to_string()
    };
    let _ = Command::new("kill")
        .args(["-KILL", "--", &target])
        .stderr(Stdio::null())
        .status();
}
