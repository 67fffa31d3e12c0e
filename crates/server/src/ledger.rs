//! The usage ledger's writer. Every billed call is durable before its response completes:
//! handlers hand their record to one writer and wait for the commit. Records that arrive
//! while a commit runs go in the next transaction together (group commit), so the ledger
//! costs one transaction per burst, not one per request.

use std::sync::Arc;

use missive_store::{Store, UsageRecord, UsageWriter};
use tokio::sync::{mpsc, oneshot};

use crate::error::ApiError;

type Pending = (UsageRecord, oneshot::Sender<Result<(), String>>);

/// Most records committed in one transaction.
const MAX_BATCH: usize = 512;

#[derive(Clone)]
pub struct Ledger {
    tx: Option<mpsc::UnboundedSender<Pending>>,
}

impl Ledger {
    /// Writes to `store` from a task on the store's own runtime where its driver is async,
    /// from a dedicated thread otherwise (SQLite calls block).
    pub fn spawn(store: Arc<dyn Store>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel::<Pending>();
        if let Some(writer) = store.usage_writer() {
            writer.runtime().clone().spawn(write_async(writer, rx));
            return Self { tx: Some(tx) };
        }
        let spawned = std::thread::Builder::new()
            .name("missive-ledger".into())
            .spawn(move || write_blocking(&*store, rx));
        match spawned {
            Ok(_) => Self { tx: Some(tx) },
            Err(err) => {
                tracing::error!(error = %err, "usage ledger thread did not start; usage is not recorded");
                Self { tx: None }
            }
        }
    }

    /// No ledger: usage is not recorded (governance off).
    pub fn disabled() -> Self {
        Self { tx: None }
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Returns once the record is committed.
    pub async fn record(&self, record: UsageRecord) -> Result<(), ApiError> {
        let Some(tx) = &self.tx else {
            return Ok(());
        };
        let (ack, done) = oneshot::channel();
        tx.send((record, ack))
            .map_err(|_| ApiError::internal("usage ledger writer stopped"))?;
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(ApiError::internal(format!("usage ledger: {err}"))),
            Err(_) => Err(ApiError::internal("usage ledger writer stopped")),
        }
    }
}

fn write_blocking(store: &dyn Store, mut rx: mpsc::UnboundedReceiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.blocking_recv_many(&mut batch, MAX_BATCH) > 0 {
        let (records, acks): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
        let result = store.record_usage(&records);
        settle(acks, records.len(), result);
    }
}

async fn write_async(writer: UsageWriter, mut rx: mpsc::UnboundedReceiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (records, acks): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
        let count = records.len();
        let result = writer.write(records).await;
        settle(acks, count, result);
    }
}

/// Tells every waiting handler how its group's commit went.
fn settle(
    acks: Vec<oneshot::Sender<Result<(), String>>>,
    records: usize,
    result: Result<(), missive_store::Error>,
) {
    let result = result.map_err(|e| e.to_string());
    if let Err(err) = &result {
        tracing::error!(error = %err, records, "usage ledger write failed");
    }
    for ack in acks {
        let _ = ack.send(result.clone());
    }
}
