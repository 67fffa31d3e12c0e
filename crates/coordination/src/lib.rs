//! What several replicas share through Redis: the rate-limit buckets of each workspace and
//! the month-to-date spend. Every change is one Lua script, so it is atomic however many
//! replicas race. Redis holds no state that cannot be rebuilt: buckets start full again and
//! spend is reseeded from the ledger when Redis comes back empty.
//!
//! Every call runs on a runtime of this crate's own, and so does the connection's task.
//! What a request waits for (the bucket take, a spend cap's reading) is awaited; the rest
//! (adding costs, seeding a month from the ledger) is called from synchronous code off the
//! request path, and the caller blocks. Either way a call waits at most
//! [`Coordination::timeout`]: an unreachable Redis is an answer ([`Error::Unreachable`]),
//! never a hang.

mod buckets;
mod spend;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

pub use buckets::Take;
pub use spend::Spent;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("redis is unreachable: {0}")]
    Unreachable(String),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("starting the coordination runtime: {0}")]
    Runtime(std::io::Error),
}

struct Scripts {
    take: redis::Script,
    give_back: redis::Script,
    spend_add: redis::Script,
    spend_seed: redis::Script,
}

pub struct Coordination {
    runtime: tokio::runtime::Handle,
    connection: ConnectionManager,
    scripts: Arc<Scripts>,
    timeout: Duration,
    /// Key prefix, so several deployments (or test runs) can share one Redis.
    prefix: String,
    /// Calls made to Redis since this replica started.
    calls: AtomicU64,
    /// Dropping it ends the runtime, on its own thread.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Coordination {
    /// Connects lazily to `url` (`redis://host:port[/db]`): a replica starts while Redis is
    /// down, and every call until it is up answers [`Error::Unreachable`].
    pub fn open(url: &str, prefix: &str, timeout: Duration) -> Result<Self, Error> {
        let client = redis::Client::open(url)?;
        let (runtime, stop) = spawn_runtime()?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let connection = {
            let _entered = runtime.enter();
            ConnectionManager::new_lazy_with_config(client, config)?
        };
        Ok(Self {
            runtime,
            connection,
            scripts: Arc::new(Scripts {
                take: buckets::take_script(),
                give_back: buckets::give_back_script(),
                spend_add: redis::Script::new(spend::ADD),
                spend_seed: redis::Script::new(spend::SEED),
            }),
            timeout,
            prefix: prefix.to_owned(),
            calls: AtomicU64::new(0),
            _stop: stop,
        })
    }

    /// How long a caller waits for Redis before calling it unreachable.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// How many calls this replica has made to Redis (each one round trip).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    fn count_call(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut key = self.prefix.clone();
        for part in parts {
            key.push(':');
            key.push_str(part);
        }
        key
    }

    /// Runs `f` on the coordination runtime and waits for its answer, up to the timeout.
    fn call<T, F, Fut>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(ConnectionManager, Arc<Scripts>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, redis::RedisError>> + Send,
    {
        self.count_call();
        let (connection, scripts) = (self.connection.clone(), Arc::clone(&self.scripts));
        let (done, answer) = mpsc::sync_channel(1);
        self.runtime.spawn(async move {
            let _ = done.send(f(connection, scripts).await);
        });
        match answer.recv_timeout(self.timeout) {
            Ok(answer) => answer.map_err(classify),
            Err(_) => Err(self.no_answer()),
        }
    }

    /// Runs `f` on the coordination runtime and awaits its answer, up to the timeout: the
    /// request path waits on Redis without blocking a worker. Every call runs there, so the
    /// connection's own task does too, and a synchronous call from any thread can never
    /// wait on a worker it blocks.
    async fn call_async<T, F, Fut>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(ConnectionManager, Arc<Scripts>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, redis::RedisError>> + Send,
    {
        self.count_call();
        let (connection, scripts) = (self.connection.clone(), Arc::clone(&self.scripts));
        let (done, answer) = tokio::sync::oneshot::channel();
        self.runtime.spawn(async move {
            let _ = done.send(f(connection, scripts).await);
        });
        match tokio::time::timeout(self.timeout, answer).await {
            Ok(Ok(answer)) => answer.map_err(classify),
            Ok(Err(_)) | Err(_) => Err(self.no_answer()),
        }
    }

    fn no_answer(&self) -> Error {
        Error::Unreachable(format!("no answer within {} ms", self.timeout.as_millis()))
    }

    /// Runs `f` without waiting for it: for changes whose loss costs only precision.
    fn send<F, Fut>(&self, what: &'static str, f: F)
    where
        F: FnOnce(ConnectionManager, Arc<Scripts>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), redis::RedisError>> + Send,
    {
        self.count_call();
        let (connection, scripts) = (self.connection.clone(), Arc::clone(&self.scripts));
        self.runtime.spawn(async move {
            if let Err(err) = f(connection, scripts).await {
                tracing::warn!(error = %err, what, "redis update lost");
            }
        });
    }

    /// Whether Redis answers now.
    pub fn ping(&self) -> Result<(), Error> {
        self.call(|mut c, _| async move { redis::cmd("PING").query_async::<()>(&mut c).await })
    }
}

fn classify(err: redis::RedisError) -> Error {
    let unreachable = err.is_io_error()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_timeout()
        || err.is_unrecoverable_error();
    if unreachable {
        Error::Unreachable(err.to_string())
    } else {
        Error::Redis(err)
    }
}

fn spawn_runtime() -> Result<(tokio::runtime::Handle, tokio::sync::oneshot::Sender<()>), Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let handle = runtime.handle().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("missive-redis".into())
        .spawn(move || {
            runtime.block_on(async {
                let _ = stopped.await;
            });
        })
        .map_err(Error::Runtime)?;
    Ok((handle, stop))
}

#[cfg(test)]
mod tests;
