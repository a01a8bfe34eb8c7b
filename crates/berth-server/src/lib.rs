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
use std::collections::HashMap;
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
    /// Bumped whenever some instance's desired state or some service changes; the service
    /// scheduler waits on it.
    pub(crate) wakeups: tokio::sync::watch::Sender<u64>,
    /// The long polls of agents, by instance id: each is woken only when its own instance's
    /// desired state changes (see [`Shared::wake`]).
    pub(crate) agent_wakers: AgentWakers,
    /// ECS's CloudWatch metrics (in memory, see `metrics.rs`); never locked before `inner`.
    pub(crate) metrics: Mutex<berth_core::metrics::MetricsBook>,
}

impl Shared {
    /// Wake the service scheduler and the long polls of the instances in `woken` (an empty
    /// id, as services note, wakes only the scheduler). Called with `inner` held, right after
    /// the versions moved, so that a poll subscribed before it read its version is woken.
    pub(crate) fn wake(&self, woken: &[String]) {
        if woken.is_empty() {
            return;
        }
        self.wakeups.send_modify(|v| *v = v.wrapping_add(1));
        self.agent_wakers.wake(woken);
    }
}

/// One watch per instance with a long poll waiting (instance ids are random, so one that
/// happens to repeat in another partition costs a spurious wake-up, which the poll survives:
/// it compares its version and waits on). Entries go when their last poll ends.
#[derive(Default)]
pub(crate) struct AgentWakers {
    polls: Mutex<HashMap<String, tokio::sync::watch::Sender<u64>>>,
}

impl AgentWakers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, tokio::sync::watch::Sender<u64>>> {
        self.polls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A receiver that changes whenever instance `id` is woken, until dropped.
    pub(crate) fn subscribe(&self, id: &str) -> AgentWaiter<'_> {
        let mut polls = self.lock();
        let rx = match polls.get(id) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = tokio::sync::watch::channel(0);
                polls.insert(id.to_string(), tx);
                rx
            }
        };
        AgentWaiter {
            wakers: self,
            id: id.to_string(),
            rx: Some(rx),
        }
    }

    fn wake(&self, woken: &[String]) {
        let polls = self.lock();
        if polls.is_empty() {
            return;
        }
        for id in woken {
            if let Some(tx) = polls.get(id) {
                tx.send_modify(|v| *v = v.wrapping_add(1));
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// One long poll's subscription to its instance's wake-ups; dropping it removes the
/// instance's entry once no other poll of it waits.
pub(crate) struct AgentWaiter<'a> {
    wakers: &'a AgentWakers,
    id: String,
    rx: Option<tokio::sync::watch::Receiver<u64>>,
}

impl AgentWaiter<'_> {
    /// Mark the wake-ups so far as seen.
    pub(crate) fn mark_seen(&mut self) {
        if let Some(rx) = &mut self.rx {
            rx.borrow_and_update();
        }
    }

    /// Wait for the next wake-up (never ends if the sender is gone, which it is not while
    /// this waiter holds its entry).
    pub(crate) async fn changed(&mut self) {
        match &mut self.rx {
            Some(rx) => {
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending::<()>().await,
        }
    }
}

impl Drop for AgentWaiter<'_> {
    fn drop(&mut self) {
        let mut polls = self.wakers.lock();
        drop(self.rx.take());
        if polls
            .get(&self.id)
            .is_some_and(|tx| tx.receiver_count() == 0)
        {
            polls.remove(&self.id);
        }
    }
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
        agent_wakers: AgentWakers::default(),
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

/// After a pass, a change waits this many times the pass's duration (at most
/// [`SCHEDULER_INTERVAL`]) before it runs the next one.
const SCHEDULER_REST: u32 = 3;

/// The service scheduler: reconcile every service whenever something changes, and at least
/// every [`SCHEDULER_INTERVAL`] (health grace periods and throttling delays expire by time).
///
/// A pass holds the world lock for a time that grows with the services' tasks, and changes can
/// come faster than passes: a pass woken by a change starts no sooner than
/// [`SCHEDULER_REST`] times the last pass's duration after it, so that passes hold the lock
/// for at most a quarter of the time, however fast changes come.
async fn schedule_services(shared: Arc<Shared>) {
    let mut wake = shared.wakeups.subscribe();
    let mut rest = std::time::Duration::ZERO;
    loop {
        tokio::select! {
            _ = wake.changed() => tokio::time::sleep(rest).await,
            () = tokio::time::sleep(SCHEDULER_INTERVAL) => {}
        }
        wake.borrow_and_update();
        let wait = {
            let mut guard = shared
                .inner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let started = std::time::Instant::now();
            let Inner { world, rng } = &mut *guard;
            let keys: Vec<PartitionKey> = world
                .partitions
                .iter()
                .filter(|(_, p)| !p.services.is_empty())
                .map(|(k, _)| k.clone())
                .collect();
            let mut all = Vec::new();
            let mut woken = Vec::new();
            for key in keys {
                let mut ctx = Ctx::new(now_ms(), key.clone(), "ecs-scheduler", rng);
                berth_core::service::reconcile(world.partition(&key), &mut ctx);
                all.append(&mut ctx.mutations);
                woken.append(&mut ctx.woken);
            }
            if !woken.is_empty() {
                shared.wake(&woken);
                // Our own wake-up is not news to us.
                wake.borrow_and_update();
            }
            rest = (started.elapsed() * SCHEDULER_REST).min(SCHEDULER_INTERVAL);
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
