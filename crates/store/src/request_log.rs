//! The request log: one row per authenticated API request, failures included. Metadata
//! only (who, what, how it ended, how long it took), never content.

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestLogEntry {
    pub request_id: String,
    /// Unix milliseconds, when the request arrived.
    pub at_ms: i64,
    pub workspace_id: String,
    pub api_key_id: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    /// Until the last byte of the response (a stream's end).
    pub latency_ms: u64,
    pub model: Option<String>,
    /// The upstream that served it, for models served by upstreams.
    pub upstream: Option<String>,
    /// Registry prompt versions used, `NAME@VERSION`.
    pub prompt_version: Option<String>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub cache_creation_input_tokens: u64,
}

/// One request's content, kept only for workspaces that opt in: the request body and the
/// final message, both redacted before they get here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedContent {
    pub request_id: String,
    pub workspace_id: String,
    /// Unix milliseconds.
    pub at_ms: i64,
    /// Unix milliseconds; read as gone from then on, and pruned.
    pub expires_at_ms: i64,
    pub request: String,
    pub response: String,
}

/// Which rows to read, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestLogQuery {
    pub workspace_id: Option<String>,
    pub api_key_id: Option<String>,
    pub model: Option<String>,
    /// Only responses with a 4xx or 5xx status.
    pub errors_only: bool,
    pub limit: usize,
}

/// The columns a row is written and read in.
pub(crate) const COLUMNS: &str = "request_id, at_ms, workspace_id, api_key_id, method, path, \
     status, latency_ms, model, upstream, prompt_version, input_tokens, output_tokens, \
     cache_read_input_tokens, cache_creation_input_tokens";

/// The filter both stores apply, with their own placeholders: workspace, key, model,
/// errors only (0 or 1), then the limit.
pub(crate) fn filter(marks: [&str; 5]) -> String {
    let [workspace, key, model, errors, limit] = marks;
    format!(
        "SELECT {COLUMNS} FROM request_log WHERE ({workspace} IS NULL OR workspace_id = {workspace}) \
         AND ({key} IS NULL OR api_key_id = {key}) AND ({model} IS NULL OR model = {model}) \
         AND ({errors} = 0 OR status >= 400) ORDER BY at_ms DESC, id DESC LIMIT {limit}"
    )
}

pub(crate) fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(crate) fn uncount(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}
