//! The console's request log: the metadata of every authenticated API request (failures
//! included), written to the store off the request path. A request only hands its row to
//! a bounded queue; one task writes what has gathered (for 200 ms) in one statement, and
//! prunes rows past the retention period. When the queue is full (the store far behind),
//! rows are dropped and counted rather than slowing requests down. Content a workspace
//! captures (`crate::capture`) rides with its row, and is pruned when it expires.

use std::sync::Arc;
use std::time::Duration;

use missive_store::{CapturedContent, RequestLogEntry, Store};
use tokio::sync::mpsc;

/// Rows waiting at most; beyond this a burst is dropped, not queued without bound.
const QUEUE: usize = 16_384;
/// Rows written in one statement at most.
const BATCH: usize = 1_024;
/// How long rows gather before they are written: a few writes a second, whatever the rate.
const GATHER: Duration = Duration::from_millis(200);
const PRUNE_EVERY: Duration = Duration::from_secs(3_600);

/// Where requests hand their rows.
#[derive(Debug, Clone)]
pub struct RequestLog {
    sender: mpsc::Sender<(RequestLogEntry, Option<CapturedContent>)>,
}

impl RequestLog {
    /// Starts the writer; rows older than `retention` are pruned hourly. Needs a runtime.
    pub fn spawn(store: Arc<dyn Store>, retention: Duration) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(write(store, receiver, retention));
        Self { sender }
    }

    pub fn record(&self, entry: RequestLogEntry, content: Option<CapturedContent>) {
        if self.sender.try_send((entry, content)).is_err() {
            metrics::counter!("missive_request_log_dropped_total").increment(1);
        }
    }
}

async fn write(
    store: Arc<dyn Store>,
    mut receiver: mpsc::Receiver<(RequestLogEntry, Option<CapturedContent>)>,
    retention: Duration,
) {
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let mut pruned = tokio::time::Instant::now();
    while let Some(first) = receiver.recv().await {
        let mut rows = Vec::with_capacity(BATCH);
        rows.push(first);
        // Sleep, then take what gathered: waking for each row would cost a task switch per
        // request.
        tokio::time::sleep(GATHER).await;
        while rows.len() < BATCH {
            match receiver.try_recv() {
                Ok(row) => rows.push(row),
                Err(_) => break,
            }
        }
        let prune = pruned.elapsed() >= PRUNE_EVERY;
        let store = Arc::clone(&store);
        let written = tokio::task::spawn_blocking(move || {
            let (rows, contents): (Vec<_>, Vec<_>) = rows.into_iter().unzip();
            store.log_requests(&rows)?;
            let contents: Vec<CapturedContent> = contents.into_iter().flatten().collect();
            if !contents.is_empty() {
                store.capture_content(&contents)?;
            }
            if prune {
                let now = crate::ids::now_ms();
                store.prune_request_log(now.saturating_sub(retention_ms))?;
                store.prune_captured_content(now)?;
            }
            Ok::<_, missive_store::Error>(())
        })
        .await;
        if prune {
            pruned = tokio::time::Instant::now();
        }
        match written {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(%err, "request log rows not written"),
            Err(err) => tracing::warn!(%err, "request log writer failed"),
        }
    }
}
