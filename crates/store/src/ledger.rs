//! The usage ledger: one row per API call, aggregated into usage and cost reports.

use futures::future::BoxFuture;

use crate::Error;

/// What one call used, as written to the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    pub request_id: String,
    /// Unix milliseconds.
    pub at_ms: i64,
    /// `messages` or `count_tokens`; only `messages` is billed.
    pub endpoint: String,
    pub api_key_id: String,
    pub workspace_id: String,
    pub model: String,
    /// `standard` or `batch`.
    pub service_tier: String,
    /// Registry versions the call used, `NAME@VERSION` (comma-separated when several).
    pub prompt_version: Option<String>,
    pub schema_version: Option<String>,
    pub tokens: TokenCounts,
}

/// Token totals, named as the usage report names them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenCounts {
    pub uncached_input: u64,
    pub cache_creation_5m: u64,
    pub cache_creation_1h: u64,
    pub cache_read: u64,
    pub output: u64,
    /// Server tool calls: not tokens, but billed beside them.
    pub web_search_requests: u64,
    pub web_fetch_requests: u64,
    pub code_execution_ms: u64,
}

impl TokenCounts {
    /// Totals summed by a store, in the order its usage query selects them: uncached input,
    /// 5-minute and 1-hour cache writes, cache reads, output, web searches, web fetches,
    /// code execution milliseconds.
    pub(crate) fn from_sums(sums: [i64; 8]) -> Self {
        let n = |i: usize| u64::try_from(sums[i]).unwrap_or(0);
        TokenCounts {
            uncached_input: n(0),
            cache_creation_5m: n(1),
            cache_creation_1h: n(2),
            cache_read: n(3),
            output: n(4),
            web_search_requests: n(5),
            web_fetch_requests: n(6),
            code_execution_ms: n(7),
        }
    }

    pub fn add(&mut self, other: &TokenCounts) {
        self.uncached_input += other.uncached_input;
        self.cache_creation_5m += other.cache_creation_5m;
        self.cache_creation_1h += other.cache_creation_1h;
        self.cache_read += other.cache_read;
        self.output += other.output;
        self.web_search_requests += other.web_search_requests;
        self.web_fetch_requests += other.web_fetch_requests;
        self.code_execution_ms += other.code_execution_ms;
    }
}

type Write = dyn Fn(Vec<UsageRecord>) -> BoxFuture<'static, Result<(), Error>> + Send + Sync;

/// [`crate::Store::record_usage`] as a future, for a store whose driver is async: no thread
/// waits while the commit runs. Poll its futures on [`UsageWriter::runtime`], where the
/// store's connections are driven.
pub struct UsageWriter {
    runtime: tokio::runtime::Handle,
    write: Box<Write>,
}

impl UsageWriter {
    pub(crate) fn new(
        runtime: tokio::runtime::Handle,
        write: impl Fn(Vec<UsageRecord>) -> BoxFuture<'static, Result<(), Error>>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        Self {
            runtime,
            write: Box::new(write),
        }
    }

    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// Commits the records in one transaction: all are durable when it resolves.
    pub fn write(&self, records: Vec<UsageRecord>) -> BoxFuture<'static, Result<(), Error>> {
        (self.write)(records)
    }
}

/// A dimension a report can be grouped or filtered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dimension {
    ApiKeyId,
    WorkspaceId,
    Model,
    ServiceTier,
    PromptVersion,
    SchemaVersion,
}

impl Dimension {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "api_key_id" => Some(Dimension::ApiKeyId),
            "workspace_id" => Some(Dimension::WorkspaceId),
            "model" => Some(Dimension::Model),
            "service_tier" => Some(Dimension::ServiceTier),
            "prompt_version" => Some(Dimension::PromptVersion),
            "schema_version" => Some(Dimension::SchemaVersion),
            _ => None,
        }
    }

    pub fn column(self) -> &'static str {
        match self {
            Dimension::ApiKeyId => "api_key_id",
            Dimension::WorkspaceId => "workspace_id",
            Dimension::Model => "model",
            Dimension::ServiceTier => "service_tier",
            Dimension::PromptVersion => "prompt_version",
            Dimension::SchemaVersion => "schema_version",
        }
    }

    pub const ALL: [Dimension; 6] = [
        Dimension::ApiKeyId,
        Dimension::WorkspaceId,
        Dimension::Model,
        Dimension::ServiceTier,
        Dimension::PromptVersion,
        Dimension::SchemaVersion,
    ];
}

/// Billed usage between two instants, in buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageQuery {
    /// Unix milliseconds, inclusive.
    pub start_ms: i64,
    /// Unix milliseconds, exclusive.
    pub end_ms: i64,
    /// Bucket width in milliseconds; buckets start at multiples of it (UTC).
    pub bucket_ms: i64,
    pub group_by: Vec<Dimension>,
    /// Per dimension, the values kept (an empty list keeps all).
    pub filters: Vec<(Dimension, Vec<String>)>,
}

/// One bucket's totals for one combination of the grouped dimensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    pub bucket_start_ms: i64,
    /// Values of the grouped dimensions, in [`Dimension::ALL`] order; `None` when not grouped.
    pub api_key_id: Option<String>,
    pub workspace_id: Option<String>,
    pub model: Option<String>,
    pub service_tier: Option<String>,
    pub prompt_version: Option<String>,
    pub schema_version: Option<String>,
    pub tokens: TokenCounts,
}
