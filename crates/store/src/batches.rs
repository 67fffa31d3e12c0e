//! Message Batches and Files as the store keeps them. Every lookup is scoped by workspace:
//! another workspace's id is simply not found.

/// A batch with its request tallies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub id: String,
    pub workspace_id: String,
    pub api_key_id: String,
    /// Unix milliseconds.
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub cancel_initiated_ms: Option<i64>,
    pub ended_at_ms: Option<i64>,
    pub counts: RequestCounts,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounts {
    pub processing: u64,
    pub succeeded: u64,
    pub errored: u64,
    pub canceled: u64,
    pub expired: u64,
}

impl RequestCounts {
    /// Tallies from `(result_type, count)` rows (`None`: still pending), as the Claude API
    /// reports them: everything is `processing` until the batch has ended.
    pub(crate) fn tally(
        rows: impl IntoIterator<Item = (Option<String>, i64)>,
        ended: bool,
    ) -> Self {
        let mut c = RequestCounts::default();
        for (kind, n) in rows {
            let n = u64::try_from(n).unwrap_or(0);
            match kind.as_deref() {
                Some("succeeded") => c.succeeded += n,
                Some("errored") => c.errored += n,
                Some("canceled") => c.canceled += n,
                Some("expired") => c.expired += n,
                _ => c.processing += n,
            }
        }
        if ended {
            c
        } else {
            RequestCounts {
                processing: c.total(),
                ..RequestCounts::default()
            }
        }
    }

    pub fn total(&self) -> u64 {
        self.processing + self.succeeded + self.errored + self.canceled + self.expired
    }
}

/// One request of a batch as submitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBatchRequest {
    pub custom_id: String,
    /// The Messages parameters, as JSON text.
    pub params: String,
    /// Set when the request was refused at submission (its `errored` result, as JSON):
    /// it is stored finished and never runs.
    pub refused: Option<String>,
}

/// A request waiting to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRequest {
    pub batch_id: String,
    pub idx: i64,
    pub custom_id: String,
    pub params: String,
    pub workspace_id: String,
    pub api_key_id: String,
}

/// A finished request's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchResult {
    pub idx: i64,
    pub custom_id: String,
    /// `succeeded`, `errored`, `canceled` or `expired`.
    pub result_type: String,
    /// The `result` object as JSON text.
    pub result: String,
}

/// An uploaded file's metadata; its bytes live under the data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    pub id: String,
    pub workspace_id: String,
    pub filename: String,
    pub mime_type: String,
    pub size_bytes: u64,
    pub created_at_ms: i64,
    pub downloadable: bool,
}
