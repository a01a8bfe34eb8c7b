//! The control-plane shell: owns the listener, the in-memory world and the durable store,
//! and turns HTTP requests into core operations whose changes are committed before the
//! response is sent.
//!
//! It must not decide anything ECS-specific itself: operations live in `berth-core`, wire
//! shapes in `berth-api`. What it owns is I/O: sockets, the data directory and its lock,
//! the commit pipeline (group commit on one writer thread), the clock and shutdown.

mod auth;
mod autoscaling;
mod commit;
pub mod credentials;
mod data_dir;
mod gateway;
mod http;
pub mod limits;
mod logs;
mod metrics;
pub mod sigv4;
mod tls;

pub use auth::Auth;
pub use autoscaling::AutoScalingConfig;
pub use data_dir::DataDir;
pub use gateway::Gateway;
pub use logs::LogsConfig;
pub use tls::{TlsError, TlsFiles};

use berth_core::pagination::TokenKey;
use berth_core::state::{Ctx, World};
use berth_core::{PartitionKey, cluster};
use berth_store::{SqliteStore, Store};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// What the server needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on (port 0 picks a free one).
    pub listen: SocketAddr,
    /// Where the database and lock file live.
    pub data_dir: PathBuf,
    /// Account id of requests whose credential names none (and of the agents' resources).
    pub account_id: String,
    /// The default region: where `berth up` creates the `default` cluster (every API
    /// request names its own region in its signature's credential scope).
    pub region: String,
    /// Serve `POST /_berth/reset` (wipe everything), for test suites sharing one server.
    pub allow_reset: bool,
    /// Create the `default` cluster in the default partition if it has never existed
    /// (`berth up` does; `berth server` leaves cluster creation to the operator).
    pub create_default_cluster: bool,
    /// The token agents present to register.
    pub agent_token: String,
    /// How long STOPPED tasks stay describable.
    pub task_retention_ms: i64,
    /// Log storage bounds and sweeping.
    pub logs: LogsConfig,
    /// The period of ECS's CloudWatch metrics (`AWS/ECS`): one data point per period
    /// (ECS's is a minute; tests use seconds). Agents sample usage three times per period.
    pub metrics_period_ms: i64,
    /// How API requests are authenticated.
    pub auth: Auth,
    /// Serve the API over TLS with this certificate and key (plain HTTP when `None`).
    pub tls: Option<TlsFiles>,
    /// The Application Auto Scaling controller.
    pub autoscaling: AutoScalingConfig,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory is unusable or locked by another Berth.
    #[error(transparent)]
    DataDir(#[from] data_dir::DataDirError),
    /// The store could not be opened or read.
    #[error("cannot open the store: {0}")]
    Store(#[from] berth_store::StoreError),
    /// The log store could not be opened.
    #[error("cannot open the log store: {0}")]
    Logs(#[from] berth_logs::LogsError),
    /// The stored records could not be understood.
    #[error("cannot load the stored state: {0}")]
    Load(#[from] berth_core::state::LoadError),
    /// The TLS certificate or key is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// Requested address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
}

/// State shared by every request.
pub(crate) struct Shared {
    pub(crate) config: Config,
    /// CloudWatch Logs: its own database and writer, never under the world lock.
    pub(crate) logs: berth_logs::Logs,
    /// Poked to sweep logs now (a retention policy changed).
    pub(crate) logs_sweep: tokio::sync::Notify,
    /// The world and the RNG that names new resources; one lock so that the order in which
    /// changes are applied is the order in which they are queued for commit.
    pub(crate) inner: Mutex<Inner>,
    /// Seals the pagination tokens of ECS listings (the Logs store has its own copy).
    pub(crate) token_key: TokenKey,
    pub(crate) commits: commit::CommitQueue,
    /// Bumped whenever some instance's desired state changes; long-polling agents wait on it.
    pub(crate) wakeups: tokio::sync::watch::Sender<u64>,
    /// ECS's CloudWatch metrics (in memory, see `metrics.rs`); never locked before `inner`.
    pub(crate) metrics: Mutex<berth_core::metrics::MetricsBook>,
}

pub(crate) struct Inner {
    pub(crate) world: World,
    pub(crate) rng: StdRng,
}

/// A started server. Dropping it does not stop it; call [`Running::shutdown`] or let the
/// shutdown future passed to [`serve`] complete.
pub struct Running {
    /// The bound address (useful with port 0).
    pub local_addr: SocketAddr,
    /// The data directory in use.
    pub data_dir: PathBuf,
    /// Whether the default cluster was created by this start.
    pub created_default_cluster: bool,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    _lock: DataDir,
}

/// Open the data directory, load state and bind the listener.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let dir = DataDir::open(&config.data_dir)?;
    let mut store = SqliteStore::open(&dir.database_path())?;
    let mut world = World::load(store.load()?)?;
    world.assume_agents_alive(now_ms());
    let mut rng = StdRng::from_os_rng();
    let mut created_default_cluster = false;
    if config.create_default_cluster {
        let key = PartitionKey {
            account: config.account_id.clone(),
            region: config.region.clone(),
        };
        let never_existed = !world
            .partition(&key)
            .clusters
            .contains_key(cluster::DEFAULT_CLUSTER);
        if never_existed {
            let mut ctx = Ctx::new(now_ms(), key.clone(), "root", &mut rng);
            created_default_cluster = cluster::ensure_default(world.partition(&key), &mut ctx);
            store.commit(&ctx.mutations)?;
        }
    }
    let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: config.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: config.listen,
        source,
    })?;
    let commits = commit::CommitQueue::spawn(store);
    let token_key = TokenKey::from_bytes(dir.token_key()?);
    let logs = berth_logs::Logs::open(&berth_logs::Config {
        path: dir.path().join("logs.db"),
        max_stored_bytes: config.logs.max_stored_bytes,
    })?
    .with_token_key(token_key.clone());
    let shared = Arc::new(Shared {
        config: config.clone(),
        logs,
        logs_sweep: tokio::sync::Notify::new(),
        inner: Mutex::new(Inner { world, rng }),
        token_key,
        commits,
        wakeups: tokio::sync::watch::channel(0).0,
        metrics: Mutex::new(berth_core::metrics::MetricsBook::new(
            config.metrics_period_ms,
        )),
    });
    Ok(Running {
        local_addr,
        data_dir: dir.path().to_path_buf(),
        created_default_cluster,
        listener,
        tls,
        shared,
        _lock: dir,
    })
}

impl Running {
    /// `https` when the API is served over TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// The agent gateway, for an in-process agent.
    pub fn gateway(&self) -> Gateway {
        Gateway {
            shared: self.shared.clone(),
        }
    }

    /// Serve until `shutdown` completes, then finish in-flight requests and flush commits.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = http::router(self.shared.clone());
        let sweeper = tokio::spawn(sweep_stopped_tasks(self.shared.clone()));
        let log_sweeper = tokio::spawn(logs::sweep(self.shared.clone()));
        let scheduler = tokio::spawn(schedule_services(self.shared.clone()));
        let metrics_sealer = tokio::spawn(metrics::seal(self.shared.clone()));
        let autoscaler = tokio::spawn(autoscaling::run(self.shared.clone()));
        let result = match self.tls {
            Some(acceptor) => {
                let listener = tls::TlsListener::new(self.listener, acceptor)?;
                axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
            None => {
                axum::serve(self.listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
        };
        sweeper.abort();
        log_sweeper.abort();
        scheduler.abort();
        metrics_sealer.abort();
        autoscaler.abort();
        self.shared.commits.close();
        self.shared.logs.close();
        result
    }
}

/// How often the service scheduler runs without being woken (it also runs on every change).
const SCHEDULER_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// The service scheduler: reconcile every service whenever something changes, and at least
/// every [`SCHEDULER_INTERVAL`] (health grace periods and throttling delays expire by time).
async fn schedule_services(shared: Arc<Shared>) {
    let mut wake = shared.wakeups.subscribe();
    loop {
        tokio::select! {
            _ = wake.changed() => {}
            () = tokio::time::sleep(SCHEDULER_INTERVAL) => {}
        }
        wake.borrow_and_update();
        let wait = {
            let mut guard = shared
                .inner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let Inner { world, rng } = &mut *guard;
            let keys: Vec<PartitionKey> = world
                .partitions
                .iter()
                .filter(|(_, p)| !p.services.is_empty())
                .map(|(k, _)| k.clone())
                .collect();
            let mut all = Vec::new();
            let mut woke = false;
            for key in keys {
                let mut ctx = Ctx::new(now_ms(), key.clone(), "ecs-scheduler", rng);
                berth_core::service::reconcile(world.partition(&key), &mut ctx);
                all.append(&mut ctx.mutations);
                woke |= !ctx.woken.is_empty();
            }
            if woke {
                shared.wakeups.send_modify(|v| *v = v.wrapping_add(1));
                // Our own wake-up is not news to us.
                wake.borrow_and_update();
            }
            (!all.is_empty()).then(|| shared.commits.submit(all))
        };
        if let Some(w) = wait {
            let _ = w.await;
        }
    }
}

/// Forget STOPPED tasks past their retention, once a minute (and once at start).
async fn sweep_stopped_tasks(shared: Arc<Shared>) {
    // Sweep a few times per retention period (at most once a second, at least once a minute).
    let every_ms = (shared.config.task_retention_ms / 4).clamp(1_000, 60_000);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(
        u64::try_from(every_ms).unwrap_or(60_000),
    ));
    loop {
        tick.tick().await;
        let wait = {
            let mut guard = shared
                .inner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let Inner { world, rng } = &mut *guard;
            let keys: Vec<PartitionKey> = world.partitions.keys().cloned().collect();
            let mut all = Vec::new();
            for key in keys {
                let mut ctx = Ctx::new(now_ms(), key.clone(), "berth", rng);
                let n = berth_core::task::sweep(
                    world.partition(&key),
                    &mut ctx,
                    shared.config.task_retention_ms,
                );
                if n > 0 {
                    tracing::debug!(removed = n, region = %key.region, "swept stopped tasks");
                }
                all.append(&mut ctx.mutations);
            }
            (!all.is_empty()).then(|| shared.commits.submit(all))
        };
        if let Some(w) = wait {
            let _ = w.await;
        }
    }
}

/// Milliseconds since the Unix epoch, from the wall clock. The shell is the only place that
/// reads it; the core gets it through `Ctx::now_ms`.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
