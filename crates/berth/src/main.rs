//! The `berth` binary: wires the server (and, with `up`, a local agent) together.

use anyhow::{Context, Result};
use berth_server::Auth;
use berth_server::credentials::{Credentials, DEV_ACCESS_KEY_ID, DEV_SECRET_ACCESS_KEY};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Berth: a self-hosted container orchestrator that speaks the Amazon ECS API.
///
/// Point the AWS CLI or any AWS SDK at it with --endpoint-url (or AWS_ENDPOINT_URL).
#[derive(Parser, Debug)]
#[command(name = "berth", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run everything on this machine: the API server, a local agent and an embedded store.
    ///
    /// Prints the endpoint and the `export AWS_...` lines that make the AWS CLI use it.
    Up(UpArgs),
    /// Run the control plane only (the API and the store); agents join from other hosts.
    Server(ServerArgs),
    /// Run an agent: join a cluster as a container instance and run its tasks here.
    Agent(AgentArgs),
    /// Create, rotate, revoke or list a cluster's agent registration tokens.
    ///
    /// Talks to a running Berth, signed with the AWS credentials of the environment
    /// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), as the aws CLI does. A new
    /// token is printed once and never again: give it to `berth agent --token`.
    AgentToken(AgentTokenArgs),
}

#[derive(Args, Debug)]
struct AgentTokenArgs {
    /// What to do.
    #[arg(value_enum)]
    action: TokenAction,
    /// The cluster (name or ARN).
    #[arg(long, default_value = "default")]
    cluster: String,
    /// The token to revoke (its id, from `list` or `create`).
    #[arg(long, required_if_eq("action", "revoke"))]
    token_id: Option<String>,
    /// Berth's endpoint.
    #[arg(
        long,
        env = "AWS_ENDPOINT_URL",
        default_value = "http://127.0.0.1:7400"
    )]
    endpoint_url: String,
    /// Region to sign for.
    #[arg(long, env = "AWS_DEFAULT_REGION", default_value = "us-east-1")]
    region: String,
    /// PEM bundle of CAs to trust for an https endpoint.
    #[arg(long, env = "AWS_CA_BUNDLE", value_name = "FILE")]
    ca_bundle: Option<PathBuf>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum TokenAction {
    /// A new token (printed once).
    Create,
    /// A new token, revoking every older one.
    Rotate,
    /// Revoke one token (--token-id); agents that joined with it keep running.
    Revoke,
    /// The cluster's tokens (without their secrets).
    List,
}

#[derive(Args, Debug)]
struct AgentArgs {
    /// The Berth server's URL.
    #[arg(long, env = "BERTH_SERVER")]
    server: String,
    /// The agent registration token (printed by `berth server`, stored in its data directory).
    #[arg(long, env = "BERTH_AGENT_TOKEN")]
    token: String,
    /// PEM bundle of CAs to trust when --server is https (default: the public roots).
    #[arg(long, env = "BERTH_CA_FILE", value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Cluster to join.
    #[arg(long, default_value = "default")]
    cluster: String,
    /// Region to join (default: the server's).
    #[arg(long)]
    region: Option<String>,
    /// Where the agent keeps its identity and task state [default: $XDG_DATA_HOME/berth-agent].
    #[arg(long, env = "BERTH_AGENT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Custom attribute, `name=value` or `name` (repeatable).
    #[arg(long = "attribute", value_name = "NAME[=VALUE]")]
    attributes: Vec<String>,
    /// CPU units to offer [default: 1024 per core].
    #[arg(long)]
    cpu: Option<i32>,
    /// Memory MiB to offer [default: the host's].
    #[arg(long)]
    memory: Option<i32>,
    /// How the agent runs containers: Docker if an engine answers, else processes.
    #[arg(long, value_enum, default_value_t = Runtime::Auto)]
    runtime: Runtime,
    #[command(flatten)]
    docker: DockerArgs,
}

/// The Docker runtime's settings.
#[derive(Args, Debug, Clone, Copy)]
struct DockerArgs {
    /// When the Docker runtime pulls images (ECS's ECS_IMAGE_PULL_BEHAVIOR): `default` (pull,
    /// fall back to a cached image), `always`, `once`, `prefer-cached`.
    #[arg(long, value_enum, default_value_t = PullBehavior::Default, env = "BERTH_IMAGE_PULL_BEHAVIOR")]
    image_pull_behavior: PullBehavior,
    /// Seconds a STOPPED task's containers are kept before the Docker runtime removes them
    /// (ECS's ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION).
    #[arg(long, default_value_t = 3 * 3600, value_name = "SECS", env = "BERTH_TASK_CLEANUP_WAIT_SECS")]
    task_cleanup_wait_secs: u64,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum PullBehavior {
    /// Pull; use a cached image if the pull fails.
    Default,
    /// Always pull; a failed pull fails the task.
    Always,
    /// Pull only images not cached.
    Once,
    /// Use a cached image when there is one, else pull.
    PreferCached,
}

impl DockerArgs {
    fn settings(self) -> berth_agent::agent::DockerSettings {
        use berth_agent::runtime::docker::PullBehavior as P;
        berth_agent::agent::DockerSettings {
            pull_behavior: match self.image_pull_behavior {
                PullBehavior::Default => P::Default,
                PullBehavior::Always => P::Always,
                PullBehavior::Once => P::Once,
                PullBehavior::PreferCached => P::PreferCached,
            },
            cleanup_delay: std::time::Duration::from_secs(self.task_cleanup_wait_secs),
        }
    }
}

impl Runtime {
    fn choice(self) -> berth_agent::agent::RuntimeChoice {
        match self {
            Runtime::Auto => berth_agent::agent::RuntimeChoice::Auto,
            Runtime::Docker => berth_agent::agent::RuntimeChoice::Docker,
            Runtime::Process => berth_agent::agent::RuntimeChoice::Process,
        }
    }
}

/// One line about a runtime, for the banner and the agent's start-up log.
fn describe_runtime(rt: &berth_agent::runtime::AnyRuntime) -> String {
    match rt {
        berth_agent::runtime::AnyRuntime::Docker(d) => format!(
            "Docker runtime (Docker Engine {}, API {}, {}; {})",
            d.engine().version,
            d.engine().api_version,
            berth_agent::runtime::docker::engine_address(),
            d.task_limits_note()
        ),
        berth_agent::runtime::AnyRuntime::Process(_) => {
            "process runtime (tasks run as host processes; the image is not used)".into()
        }
    }
}

#[derive(Args, Debug, Clone)]
struct CommonArgs {
    /// Address the API listens on.
    #[arg(long, default_value = "127.0.0.1:7400", env = "BERTH_LISTEN")]
    listen: SocketAddr,
    /// Where Berth keeps its database [default: $XDG_DATA_HOME/berth, else ~/.local/share/berth].
    #[arg(long, env = "BERTH_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Account id of the resources Berth creates (shown in ARNs).
    #[arg(long, default_value = "000000000000", env = "BERTH_ACCOUNT_ID")]
    account_id: String,
    /// The default region: of the `default` cluster and the local agent, and printed for
    /// AWS_DEFAULT_REGION (each request's signature names the region it acts in).
    #[arg(long, default_value = "us-east-1", env = "BERTH_REGION")]
    region: String,
    /// Enable `POST /_berth/reset`, which wipes every resource (for test suites).
    #[arg(long)]
    allow_reset: bool,
    /// Token agents must present to register [default: generated once, kept in the data directory].
    #[arg(long, env = "BERTH_AGENT_TOKEN")]
    agent_token: Option<String>,
    /// Seconds STOPPED tasks stay describable.
    #[arg(long, default_value_t = 3600)]
    task_retention_secs: i64,
    /// Period of ECS's CloudWatch metrics (`AWS/ECS` CPUUtilization, MemoryUtilization, ...),
    /// in seconds: one data point per period. ECS's is 60; shorter periods are for tests.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(i64).range(1..=3600))]
    metrics_period_secs: i64,
    /// Upper bound on stored log messages, in MiB; past it the oldest events are evicted
    /// [default: no bound beyond retention policies].
    #[arg(long, value_name = "MIB", env = "BERTH_LOGS_MAX_MIB")]
    logs_max_mib: Option<u64>,
    /// Seconds between sweeps that enforce log retention policies and free deleted streams.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    logs_sweep_interval_secs: u64,
    /// Milliseconds between passes of the auto scaler (scheduled actions, target tracking).
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    autoscaling_interval_ms: u64,
    /// The keys Berth accepts, in the AWS shared-credentials format: `[name]` sections with
    /// aws_access_key_id, aws_secret_access_key, optional aws_session_token and account_id.
    /// Every API request must then be signed (SigV4) with one of them.
    #[arg(long, value_name = "FILE")]
    credentials: Option<PathBuf>,
    /// Also accept the public development pair test/test, still signature-checked
    /// (`berth up` on loopback always does; `berth server` needs this or --credentials).
    #[arg(long)]
    allow_dev_credentials: bool,
    /// Serve the API over TLS with this certificate chain (PEM, leaf first); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct UpArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// How the local agent runs containers: Docker if an engine answers, else processes.
    #[arg(long, value_enum, default_value_t = Runtime::Auto)]
    runtime: Runtime,
    /// CPU units the local agent offers [default: 1024 per core].
    #[arg(long)]
    agent_cpu: Option<i32>,
    /// Memory MiB the local agent offers [default: the host's].
    #[arg(long)]
    agent_memory: Option<i32>,
    #[command(flatten)]
    docker: DockerArgs,
}

#[derive(Args, Debug)]
struct ServerArgs {
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Runtime {
    /// Docker when an engine answers, processes otherwise.
    Auto,
    /// Containers through the Docker Engine API.
    Docker,
    /// Host processes (the image is not used).
    Process,
}

fn default_data_dir(name: &str) -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join(name);
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join(".local/share").join(name);
    }
    PathBuf::from(format!(".{name}"))
}

/// The agent registration token: given, or generated once and kept in the data directory.
fn agent_token(data_dir: &std::path::Path, given: Option<String>) -> Result<String> {
    if let Some(t) = given {
        return Ok(t);
    }
    let path = data_dir.join("agent-token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim().to_string();
        if !t.is_empty() {
            return Ok(t);
        }
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let mut bytes = [0u8; 24];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    let t: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(&path, &t).with_context(|| format!("writing {}", path.display()))?;
    Ok(t)
}

/// `berth up`'s agent talks to the server in-process, over the same protocol.
#[derive(Clone)]
struct InProcess(berth_server::Gateway);

impl berth_agent::agent::ControlPlane for InProcess {
    async fn register(
        &self,
        req: berth_core::agent_protocol::RegisterRequest,
    ) -> Result<berth_core::agent_protocol::RegisterResponse, berth_agent::agent::TransportError>
    {
        self.0.register(req).await.map_err(Into::into)
    }

    async fn sync(
        &self,
        req: berth_core::agent_protocol::SyncRequest,
    ) -> Result<berth_core::agent_protocol::SyncResponse, berth_agent::agent::TransportError> {
        self.0.sync(req).await.map_err(Into::into)
    }

    async fn put_logs(
        &self,
        req: berth_core::agent_protocol::PutLogsRequest,
    ) -> Result<berth_core::agent_protocol::PutLogsResponse, berth_agent::agent::TransportError>
    {
        self.0.put_logs(req).await.map_err(Into::into)
    }

    async fn ensure_log_group(
        &self,
        req: berth_core::agent_protocol::EnsureLogGroupRequest,
    ) -> Result<
        berth_core::agent_protocol::EnsureLogGroupResponse,
        berth_agent::agent::TransportError,
    > {
        self.0.ensure_log_group(req).await.map_err(Into::into)
    }
}

fn parse_attributes(raw: &[String]) -> Vec<(String, Option<String>)> {
    raw.iter()
        .map(|a| match a.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (a.clone(), None),
        })
        .collect()
}

async fn run_agent(args: AgentArgs) -> Result<()> {
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| default_data_dir("berth-agent"));
    let ca = match &args.ca_file {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
        }
        None => None,
    };
    let cp = berth_agent::agent::HttpControlPlane::new(&args.server, ca.as_deref())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let runtime =
        berth_agent::agent::open_runtime(args.runtime.choice(), &data_dir, args.docker.settings())
            .await?;
    let config = berth_agent::agent::AgentConfig {
        cluster: args.cluster.clone(),
        region: args.region.clone(),
        token: args.token.clone(),
        data_dir,
        attributes: parse_attributes(&args.attributes),
        cpu_units: args.cpu,
        memory_mib: args.memory,
        runtime: runtime.clone(),
    };
    tracing::info!(server = %args.server, cluster = %args.cluster, "starting agent: {}", describe_runtime(&runtime));
    berth_agent::agent::run(config, cp, shutdown_signal()).await?;
    tracing::info!("agent stopped");
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Up(args) => {
                let local = LocalAgent {
                    runtime: args.runtime,
                    cpu: args.agent_cpu,
                    memory: args.agent_memory,
                    docker: args.docker,
                };
                run(args.common, true, Some(local)).await
            }
            Command::Server(args) => run(args.common, false, None).await,
            Command::Agent(args) => run_agent(args).await,
            Command::AgentToken(args) => agent_token_command(args).await,
        }
    })
}

/// The in-process agent of `berth up`.
#[derive(Debug, Clone, Copy)]
struct LocalAgent {
    runtime: Runtime,
    cpu: Option<i32>,
    memory: Option<i32>,
    docker: DockerArgs,
}

async fn run(common: CommonArgs, all_in_one: bool, local: Option<LocalAgent>) -> Result<()> {
    let data_dir = common
        .data_dir
        .clone()
        .unwrap_or_else(|| default_data_dir("berth"));
    // The local agent's runtime, chosen before anything is served (`--runtime docker` without
    // an engine is an error at start).
    let runtime = match local {
        Some(l) => Some(
            berth_agent::agent::open_runtime(
                l.runtime.choice(),
                &data_dir.join("agent"),
                l.docker.settings(),
            )
            .await?,
        ),
        None => None,
    };
    let credentials = match &common.credentials {
        Some(path) => Some(load_credentials(path)?),
        None => None,
    };
    let auth = auth_mode(
        credentials,
        all_in_one,
        common.allow_dev_credentials,
        common.listen,
    )?;
    let tls = match (&common.tls_cert, &common.tls_key) {
        (Some(cert), Some(key)) => Some(berth_server::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => None,
    };
    if !common.listen.ip().is_loopback() && tls.is_none() {
        tracing::warn!(
            listen = %common.listen,
            "the API is served beyond loopback over plain HTTP: SigV4 keeps secrets off the wire, but requests and responses can be read, and replayed within the 15-minute signature window, by anyone on the path; give it --tls-cert and --tls-key"
        );
    }
    let token = agent_token(&data_dir, common.agent_token.clone())?;
    let config = berth_server::Config {
        listen: common.listen,
        data_dir,
        account_id: common.account_id.clone(),
        region: common.region.clone(),
        allow_reset: common.allow_reset,
        create_default_cluster: all_in_one,
        agent_token: token.clone(),
        task_retention_ms: common.task_retention_secs.saturating_mul(1000),
        metrics_period_ms: common.metrics_period_secs.saturating_mul(1000),
        logs: berth_server::LogsConfig {
            max_stored_bytes: common.logs_max_mib.map(|m| m.saturating_mul(1024 * 1024)),
            sweep_interval_ms: common.logs_sweep_interval_secs.saturating_mul(1000),
        },
        auth: auth.clone(),
        tls,
        autoscaling: berth_server::AutoScalingConfig {
            interval_ms: common.autoscaling_interval_ms,
        },
    };
    let running = berth_server::start(config).await?;
    let endpoint = format!("{}://{}", running.scheme(), running.local_addr);
    print_banner(
        &endpoint,
        &running,
        &common,
        all_in_one,
        runtime.as_ref(),
        &token,
        &auth,
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let agent = if all_in_one {
        let config = berth_agent::agent::AgentConfig {
            cluster: "default".into(),
            region: Some(common.region.clone()),
            token,
            data_dir: running.data_dir.join("agent"),
            attributes: vec![],
            cpu_units: local.and_then(|l| l.cpu),
            memory_mib: local.and_then(|l| l.memory),
            runtime: runtime.clone().context("the local agent's runtime")?,
        };
        let cp = InProcess(running.gateway());
        let mut rx = stop_rx.clone();
        Some(tokio::spawn(async move {
            let stop = async move {
                let _ = rx.wait_for(|v| *v).await;
            };
            if let Err(e) = berth_agent::agent::run(config, cp, stop).await {
                tracing::error!(error = %e, "the local agent stopped");
            }
        }))
    } else {
        None
    };
    let shutdown = async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    };
    running.serve(shutdown).await.context("serving the API")?;
    if let Some(a) = agent {
        let _ = a.await;
    }
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Read a credentials file (and warn when others may read it).
fn load_credentials(path: &std::path::Path) -> Result<Credentials> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the credentials file {}", path.display()))?;
    let (credentials, skipped) = Credentials::parse(&text)
        .with_context(|| format!("in the credentials file {}", path.display()))?;
    for name in skipped {
        tracing::info!(section = %name, "credentials: skipping a section without keys");
    }
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                file = %path.display(),
                "the credentials file is readable by other users; chmod 600 it"
            );
        }
    }
    Ok(credentials)
}

/// How API requests are authenticated, from the flags. Every API request is verified
/// (SigV4); the flags only decide which keys are accepted:
/// - `--credentials FILE`: the file's keys.
/// - the public development pair `test`/`test` too, for `berth up` on loopback or with
///   `--allow-dev-credentials` (still signature-checked; anyone can sign with it).
/// - refused: nothing but the development pair (no file, or a file holding only it)
///   unless the pair is allowed, so `berth server` needs `--credentials` or
///   `--allow-dev-credentials`, and nothing beyond loopback runs on the pair by default.
fn auth_mode(
    credentials: Option<Credentials>,
    all_in_one: bool,
    allow_dev: bool,
    listen: SocketAddr,
) -> Result<Auth> {
    let loopback = listen.ip().is_loopback();
    let dev_ok = allow_dev || (all_in_one && loopback);
    let mut keys = match credentials {
        Some(c) if c.only_dev_pair() && !dev_ok => anyhow::bail!(
            "the credentials file holds only the public development pair (test/test), which anyone can sign with; add real keys, or pass --allow-dev-credentials to run with it anyway"
        ),
        Some(c) => c,
        None if dev_ok => Credentials::default(),
        None if loopback => anyhow::bail!(
            "berth server needs the keys it accepts: --credentials FILE (see the README), or --allow-dev-credentials to accept the public development pair test/test, which anyone can sign with"
        ),
        None => anyhow::bail!(
            "refusing to serve the API on {listen}, beyond loopback, without --credentials FILE: anyone who can reach it could run anything (--allow-dev-credentials accepts the public test/test pair instead)"
        ),
    };
    if dev_ok {
        keys.add_dev_pair();
    }
    Ok(Auth::SigV4(keys))
}

#[allow(clippy::print_stdout, clippy::too_many_arguments)]
fn print_banner(
    endpoint: &str,
    running: &berth_server::Running,
    common: &CommonArgs,
    all_in_one: bool,
    runtime: Option<&berth_agent::runtime::AnyRuntime>,
    token: &str,
    auth: &Auth,
) {
    use std::io::Write;
    // A closed stdout (e.g. a parent that stopped reading) must not take Berth down.
    let mut out = std::io::stdout().lock();
    let mode = if all_in_one { "up" } else { "server" };
    let _ = writeln!(
        out,
        "Berth {} ({mode}) is listening on {endpoint}",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(out, "  data directory: {}", running.data_dir.display());
    let _ = writeln!(
        out,
        "  account {}, default region {}",
        common.account_id, common.region
    );
    if let Some(rt) = runtime {
        let _ = writeln!(out, "  local agent: {}", describe_runtime(rt));
    } else {
        let _ = writeln!(
            out,
            "  agents join with: berth agent --server {endpoint} --token {token} --cluster default"
        );
        let _ = writeln!(
            out,
            "  (that token opens every cluster; `berth agent-token create --cluster C` makes one for a single cluster)"
        );
    }
    if running.created_default_cluster {
        let _ = writeln!(out, "  created the 'default' cluster");
    }
    let Auth::SigV4(keys) = auth;
    let dev_pair = keys.get(DEV_ACCESS_KEY_ID).is_some_and(|d| d.is_dev_pair());
    let named = keys.iter().filter(|k| !k.is_dev_pair()).count();
    let mut line = String::from("  requests must be signed (SigV4) with ");
    if named > 0 {
        line.push_str(&format!("one of {named} key(s)"));
        if let Some(path) = &common.credentials {
            line.push_str(&format!(" from {}", path.display()));
        }
        if dev_pair {
            line.push_str(" or ");
        }
    }
    if dev_pair {
        line.push_str("the development pair test/test");
    }
    let _ = writeln!(out, "{line}");
    let _ = writeln!(out);
    let _ = writeln!(out, "Use it from this shell with:");
    let _ = writeln!(out, "  export AWS_ENDPOINT_URL={endpoint}");
    match (&common.credentials, dev_pair) {
        (Some(path), false) => {
            let _ = writeln!(
                out,
                "  export AWS_SHARED_CREDENTIALS_FILE={} AWS_PROFILE=<a section of it>",
                path.display()
            );
        }
        _ => {
            let _ = writeln!(out, "  export AWS_ACCESS_KEY_ID={DEV_ACCESS_KEY_ID}");
            let _ = writeln!(
                out,
                "  export AWS_SECRET_ACCESS_KEY={DEV_SECRET_ACCESS_KEY}"
            );
        }
    }
    let _ = writeln!(out, "  export AWS_DEFAULT_REGION={}", common.region);
    let _ = writeln!(out, "then e.g.: aws ecs list-clusters");
    let _ = out.flush();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}

/// `berth agent-token ...`: one signed call of the admin endpoint, its JSON answer printed.
async fn agent_token_command(args: AgentTokenArgs) -> Result<()> {
    use berth_server::sigv4::{SignedRequest, authorization_header, format_amz_date};
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let (Some(key_id), Some(secret)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"))
    else {
        anyhow::bail!(
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (the lines `berth up` prints) to sign the request"
        );
    };
    let region = env("AWS_REGION").unwrap_or(args.region);
    let base = args.endpoint_url.trim_end_matches('/');
    let url: reqwest::Url = format!(
        "{base}/_berth/admin/v1/agent-tokens/{}",
        match args.action {
            TokenAction::Create => "create",
            TokenAction::Rotate => "rotate",
            TokenAction::Revoke => "revoke",
            TokenAction::List => "list",
        }
    )
    .parse()
    .with_context(|| format!("{base} is not a URL"))?;
    let host = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => anyhow::bail!("{base} has no host"),
    };
    let mut body = serde_json::json!({ "cluster": args.cluster });
    if let Some(id) = &args.token_id {
        body["tokenId"] = serde_json::Value::String(id.clone());
    }
    let body = serde_json::to_vec(&body)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let stamp = format_amz_date(i64::try_from(now.as_secs()).unwrap_or(i64::MAX));
    let token = env("AWS_SESSION_TOKEN");
    let mut headers: Vec<(&str, &[u8])> = vec![
        ("Host", host.as_bytes()),
        ("X-Amz-Date", stamp.as_bytes()),
        ("Content-Type", b"application/json"),
    ];
    if let Some(t) = &token {
        headers.push(("X-Amz-Security-Token", t.as_bytes()));
    }
    let signed = SignedRequest {
        method: "POST",
        path: url.path(),
        query: "",
        headers: &headers,
        body: &body,
    };
    let authorization = authorization_header(&signed, &key_id, &secret, &region, "ecs", &stamp);
    let mut client = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(std::time::Duration::from_secs(30));
    if let Some(path) = &args.ca_bundle {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        for c in reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("{} is not a PEM bundle", path.display()))?
        {
            client = client.add_root_certificate(c);
        }
    }
    let mut request = client
        .build()?
        .post(url.clone())
        .header("X-Amz-Date", &stamp)
        .header("Content-Type", "application/json")
        .header("Authorization", authorization);
    if let Some(t) = &token {
        request = request.header("X-Amz-Security-Token", t);
    }
    let resp = request
        .body(body)
        .send()
        .await
        .with_context(|| format!("calling {url}"))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let value: serde_json::Value =
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    if !status.is_success() {
        let code = value
            .get("__type")
            .and_then(|v| v.as_str())
            .map(|t| t.rsplit('#').next().unwrap_or(t).to_string())
            .unwrap_or_else(|| status.to_string());
        let message = value
            .get("message")
            .or_else(|| value.get("Message"))
            .and_then(|v| v.as_str())
            .unwrap_or("");
        anyhow::bail!("An error occurred ({code}): {message}");
    }
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn file(text: &str) -> Credentials {
        Credentials::parse(text).unwrap().0
    }

    const ALICE: &str = "[alice]\naws_access_key_id = AKIAALICE\naws_secret_access_key = s\n";
    const DEV: &str = "[dev]\naws_access_key_id = test\naws_secret_access_key = test\n";

    fn keys(auth: &Auth) -> Option<Vec<String>> {
        match auth {
            Auth::SigV4(c) => Some(c.iter().map(|k| k.access_key_id.clone()).collect()),
        }
    }

    #[test]
    fn up_on_loopback_adds_the_dev_pair_to_a_file() {
        let a = auth_mode(Some(file(ALICE)), true, false, addr("127.0.0.1:7400")).unwrap();
        assert_eq!(keys(&a), Some(vec!["AKIAALICE".into(), "test".into()]));
        let a = auth_mode(Some(file(ALICE)), true, false, addr("0.0.0.0:7400")).unwrap();
        assert_eq!(keys(&a), Some(vec!["AKIAALICE".into()]));
        let a = auth_mode(Some(file(ALICE)), false, false, addr("127.0.0.1:7400")).unwrap();
        assert_eq!(
            keys(&a),
            Some(vec!["AKIAALICE".into()]),
            "server: not implied"
        );
        let a = auth_mode(Some(file(ALICE)), false, true, addr("10.1.2.3:7400")).unwrap();
        assert_eq!(keys(&a), Some(vec!["AKIAALICE".into(), "test".into()]));
    }

    #[test]
    fn the_dev_pair_alone_needs_to_be_allowed() {
        let e = auth_mode(Some(file(DEV)), false, false, addr("127.0.0.1:7400")).unwrap_err();
        assert!(e.to_string().contains("--allow-dev-credentials"), "{e}");
        let e = auth_mode(Some(file(DEV)), true, false, addr("0.0.0.0:7400")).unwrap_err();
        assert!(e.to_string().contains("development pair"), "{e}");
        assert!(auth_mode(Some(file(DEV)), false, true, addr("0.0.0.0:7400")).is_ok());
        assert!(auth_mode(Some(file(DEV)), true, false, addr("127.0.0.1:7400")).is_ok());
        let a = auth_mode(None, false, true, addr("0.0.0.0:7400")).unwrap();
        assert_eq!(keys(&a), Some(vec!["test".into()]));
    }

    #[test]
    fn without_credentials_up_on_loopback_verifies_the_dev_pair_and_server_refuses() {
        for listen in ["127.0.0.1:0", "[::1]:0"] {
            let a = auth_mode(None, true, false, addr(listen)).unwrap();
            assert_eq!(keys(&a), Some(vec!["test".into()]), "{listen}");
            let e = auth_mode(None, false, false, addr(listen)).unwrap_err();
            assert!(e.to_string().contains("--allow-dev-credentials"), "{e}");
            let a = auth_mode(None, false, true, addr(listen)).unwrap();
            assert_eq!(keys(&a), Some(vec!["test".into()]), "{listen}");
        }
        for all_in_one in [true, false] {
            let e = auth_mode(None, all_in_one, false, addr("0.0.0.0:7400")).unwrap_err();
            assert!(e.to_string().contains("--credentials"), "{e}");
        }
    }
}
