//! The `berth` binary: wires the server (and, with `up`, a local agent) together.

use anyhow::{Context, Result};
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
    /// Region used when a request's signature names none.
    #[arg(long, default_value = "us-east-1", env = "BERTH_REGION")]
    region: String,
    /// Enable `POST /_berth/reset`, which wipes every resource (for test suites).
    #[arg(long)]
    allow_reset: bool,
}

#[derive(Args, Debug)]
struct UpArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// How the local agent runs containers: Docker if an engine answers, else processes.
    #[arg(long, value_enum, default_value_t = Runtime::Auto)]
    runtime: Runtime,
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

fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("berth");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join(".local/share/berth");
    }
    PathBuf::from(".berth")
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
            Command::Up(args) => run(args.common, true, Some(args.runtime)).await,
            Command::Server(args) => run(args.common, false, None).await,
        }
    })
}

async fn run(common: CommonArgs, all_in_one: bool, runtime: Option<Runtime>) -> Result<()> {
    let data_dir = common.data_dir.clone().unwrap_or_else(default_data_dir);
    let config = berth_server::Config {
        listen: common.listen,
        data_dir,
        account_id: common.account_id.clone(),
        region: common.region.clone(),
        allow_reset: common.allow_reset,
        create_default_cluster: all_in_one,
    };
    let running = berth_server::start(config).await?;
    let endpoint = format!("http://{}", running.local_addr);
    print_banner(&endpoint, &running, &common, all_in_one, runtime);
    running
        .serve(shutdown_signal())
        .await
        .context("serving the API")?;
    tracing::info!("stopped cleanly");
    Ok(())
}

#[allow(clippy::print_stdout)]
fn print_banner(
    endpoint: &str,
    running: &berth_server::Running,
    common: &CommonArgs,
    all_in_one: bool,
    runtime: Option<Runtime>,
) {
    let mode = if all_in_one { "up" } else { "server" };
    println!(
        "Berth {} ({mode}) is listening on {endpoint}",
        env!("CARGO_PKG_VERSION")
    );
    println!("  data directory: {}", running.data_dir.display());
    println!(
        "  account {}, default region {}",
        common.account_id, common.region
    );
    if let Some(r) = runtime {
        println!(
            "  local agent: not yet available (requested runtime: {r:?}); tasks cannot run yet"
        );
    }
    if running.created_default_cluster {
        println!("  created the 'default' cluster");
    }
    println!();
    println!("Use it from this shell with:");
    println!("  export AWS_ENDPOINT_URL={endpoint}");
    println!("  export AWS_ACCESS_KEY_ID=test");
    println!("  export AWS_SECRET_ACCESS_KEY=test");
    println!("  export AWS_DEFAULT_REGION={}", common.region);
    println!("then e.g.: aws ecs list-clusters");
    use std::io::Write;
    let _ = std::io::stdout().flush();
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
