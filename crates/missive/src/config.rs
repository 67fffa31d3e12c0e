//! `missive.toml`, with every value overridable by a `MISSIVE_*` environment variable.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::catalog::DEFAULT_MODEL;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Data directory: models, the SQLite store. Default: `MISSIVE_HOME`, else the user's
    /// data directory.
    #[serde(default)]
    pub home: Option<PathBuf>,
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default = "default_models")]
    pub models: Vec<ModelEntry>,
    /// Alias pattern (exact, or a prefix ending in `*`) → model name. Default: every
    /// `claude-*` name goes to the first model.
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
    /// API keys accepted besides those in the store. Prefer `missive keys create`.
    #[serde(default)]
    pub api_keys: Vec<String>,
    /// Admin API keys (`sk-ant-admin01-…`) accepted besides those in the store. Prefer
    /// `missive keys create --admin`.
    #[serde(default)]
    pub admin_keys: Vec<String>,
    /// Per-workspace rate limits: defaults, and overrides by workspace name.
    #[serde(default)]
    pub rate_limits: RateLimitsConfig,
    /// USD per million tokens, by model id, for the cost report and spend limits.
    #[serde(default)]
    pub prices: PricesConfig,
    /// Monthly caps in USD.
    #[serde(default)]
    pub spend_limits: SpendLimitsConfig,
    #[serde(default)]
    pub governance: GovernanceConfig,
    /// Servers models can run on instead of the embedded engine.
    #[serde(default)]
    pub upstreams: Vec<UpstreamEntry>,
    #[serde(default)]
    pub gateway: GatewaySection,
    /// The policy guard: a default, and overrides by workspace name.
    #[serde(default)]
    pub policy: PolicySection,
    #[serde(default)]
    pub files: FilesSection,
    #[serde(default)]
    pub cache: CacheSection,
    #[serde(default)]
    pub batches: BatchesSection,
    /// `web_fetch` and `web_search`, run by this server for any model.
    #[serde(default)]
    pub server_tools: ServerToolsSection,
    #[serde(default)]
    pub store: StoreSection,
    #[serde(default)]
    pub coordination: CoordinationSection,
    #[serde(default)]
    pub console: ConsoleSection,
}

/// The web console at `/console`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSection {
    /// Serve it (with governance on). Off: `/console` is a 404.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How long a sign-in lasts, in seconds (default 8 hours).
    #[serde(default = "default_console_session_s")]
    pub session_ttl_s: u64,
    /// How long the request log keeps a request, in days.
    #[serde(default = "default_request_log_days")]
    pub request_log_days: u64,
    /// Single sign-on with OpenID Connect; unset: sign in with keys only.
    #[serde(default)]
    pub oidc: Option<OidcSection>,
}

/// `[console.oidc]`: the organization's identity provider.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSection {
    /// The issuer URL (its `/.well-known/openid-configuration` is read).
    pub issuer: String,
    pub client_id: String,
    /// The environment variable that holds the client secret (never the secret itself).
    #[serde(default = "default_oidc_secret_env")]
    pub client_secret_env: String,
    /// Where the provider sends browsers back. Default: `[server] public_url` +
    /// `/console/oidc/callback`.
    #[serde(default)]
    pub redirect_url: Option<String>,
}

fn default_oidc_secret_env() -> String {
    "MISSIVE_OIDC_CLIENT_SECRET".to_owned()
}

impl Default for ConsoleSection {
    fn default() -> Self {
        Self {
            enabled: true,
            session_ttl_s: default_console_session_s(),
            request_log_days: default_request_log_days(),
            oidc: None,
        }
    }
}

fn default_console_session_s() -> u64 {
    8 * 3600
}

fn default_request_log_days() -> u64 {
    30
}

/// Redis, shared by several replicas for rate limits and spend caps.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinationSection {
    /// `redis://host:port[/db]`. Unset: limits and spend are kept by each replica.
    #[serde(default)]
    pub redis_url: Option<String>,
    /// What a replica does while Redis is unreachable: `refuse` requests (529, retried by
    /// the SDKs) or keep serving on `local` limits.
    #[serde(default)]
    pub when_unreachable: WhenUnreachable,
    /// How long a request waits for Redis before it counts as unreachable.
    #[serde(default = "default_redis_timeout_ms")]
    pub timeout_ms: u64,
    /// Prefix of every key, so deployments can share one Redis.
    #[serde(default = "default_redis_prefix")]
    pub key_prefix: String,
}

impl Default for CoordinationSection {
    fn default() -> Self {
        Self {
            redis_url: None,
            when_unreachable: WhenUnreachable::default(),
            timeout_ms: default_redis_timeout_ms(),
            key_prefix: default_redis_prefix(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenUnreachable {
    #[default]
    Refuse,
    Local,
}

fn default_redis_timeout_ms() -> u64 {
    250
}

fn default_redis_prefix() -> String {
    "missive".to_owned()
}

/// Where keys, workspaces, the ledger, batches and file metadata live.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// `postgres://user[:password]@host[:port]/database`: one state shared by several
    /// replicas. Unset: a SQLite file under the data directory (one machine).
    #[serde(default)]
    pub url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamEntry {
    pub name: String,
    /// `openai`: an OpenAI-compatible chat-completions server (vLLM, SGLang, llama-server,
    /// Ollama).
    pub kind: UpstreamKind,
    /// Up to and including `/v1`.
    pub url: String,
    /// The model name the upstream knows; default: the Missive model's name.
    #[serde(default)]
    pub model: Option<String>,
    /// An environment variable holding the upstream's API key (never the key itself).
    #[serde(default)]
    pub api_key_env: Option<String>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_s: u64,
    /// Seconds to wait for the response headers before trying the next upstream.
    #[serde(default)]
    pub timeout_s: Option<u64>,
    /// Share of first choices among the model's upstreams; without any weights, upstreams
    /// are a fallback order. With weights, a session (Claude Code's session id,
    /// `metadata.user_id`) sticks to one upstream.
    #[serde(default)]
    pub weight: Option<u32>,
    /// Requests in flight to this upstream at most; past it, the next upstream.
    #[serde(default)]
    pub max_concurrency: Option<usize>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyEntry {
    /// Emails, phone numbers, card numbers (Luhn-checked) and IBANs (all but the last 4)
    /// are masked before a prompt reaches a model.
    #[serde(default)]
    pub redact_pii: bool,
    /// Prompts carrying API keys or private keys are refused (400).
    #[serde(default)]
    pub refuse_credentials: bool,
    /// Hosts URL-sourced images and documents may come from (private, loopback and
    /// link-local addresses never may).
    #[serde(default)]
    pub url_allowlist: Option<Vec<String>>,
}

impl PolicyEntry {
    fn policy(&self) -> missive_server::policy::Policy {
        missive_server::policy::Policy {
            redact_pii: self.redact_pii,
            refuse_credentials: self.refuse_credentials,
            url_allowlist: self.url_allowlist.clone(),
        }
    }
}

// No `deny_unknown_fields`: serde does not support it beside `flatten`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PolicySection {
    #[serde(flatten)]
    pub default: PolicyEntry,
    #[serde(default)]
    pub workspaces: BTreeMap<String, PolicyEntry>,
    /// Private hosts or addresses that URL sources may name all the same (loopback and
    /// private addresses are otherwise always refused).
    #[serde(default)]
    pub private_hosts: Vec<String>,
}

impl PolicySection {
    pub fn policies(&self) -> missive_server::policy::Policies {
        missive_server::policy::Policies {
            default: self.default.policy(),
            workspaces: self
                .workspaces
                .iter()
                .map(|(k, v)| (k.clone(), v.policy()))
                .collect(),
            private_hosts: self.private_hosts.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamKind {
    Openai,
    /// The Claude API, or any Anthropic-compatible server (another Missive included);
    /// `url` is its root, without `/v1`.
    Anthropic,
}

fn default_connect_timeout() -> u64 {
    5
}

/// Retries, fallback and circuit breaking for models served by upstreams.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    /// Extra passes over a model's upstreams after all failed.
    #[serde(default = "default_rounds")]
    pub rounds: u32,
    /// First wait between passes (doubles each pass, jittered; `retry-after` honoured).
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    /// Failures in a row that open an upstream's breaker.
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// How long an open breaker skips its upstream before one probe.
    #[serde(default = "default_breaker_cooldown_ms")]
    pub breaker_cooldown_ms: u64,
}

impl Default for GatewaySection {
    fn default() -> Self {
        Self {
            rounds: default_rounds(),
            backoff_ms: default_backoff_ms(),
            breaker_failures: default_breaker_failures(),
            breaker_cooldown_ms: default_breaker_cooldown_ms(),
        }
    }
}

fn default_rounds() -> u32 {
    1
}
fn default_backoff_ms() -> u64 {
    250
}
fn default_breaker_failures() -> u32 {
    3
}
fn default_breaker_cooldown_ms() -> u64 {
    10_000
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesSection {
    /// Where file bytes live. Default: `files` under the data directory. Several replicas
    /// point this at one directory they all mount (NFS, a shared volume); metadata is in
    /// the store they share.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Let uploaded files be downloaded again. The Claude API does not (only files it
    /// created are `downloadable`); off by default for the same behaviour.
    #[serde(default)]
    pub downloadable_uploads: bool,
    /// Bytes of files one workspace may keep, in GB (default 100).
    #[serde(default)]
    pub workspace_quota_gb: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSection {
    /// One prompt cache for all workspaces. Off by default: a shared cache lets one
    /// workspace learn from its cache hits (and their speed) what another sent.
    #[serde(default)]
    pub share_across_workspaces: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerToolsSection {
    /// Private hosts or addresses `web_fetch` may reach all the same (the operator's own
    /// servers); every other private, loopback, link-local or metadata address is refused.
    #[serde(default)]
    pub private_hosts: Vec<String>,
    /// Rounds of server tools in one request before it pauses with `pause_turn`.
    #[serde(default = "default_max_rounds")]
    pub max_rounds: u32,
    /// Seconds one tool call may take.
    #[serde(default = "default_call_timeout")]
    pub call_timeout_s: u64,
    /// Bytes one fetch may read.
    #[serde(default = "default_fetch_max_bytes")]
    pub fetch_max_bytes: usize,
    /// The service `web_search` asks; without one, `web_search` is refused (400).
    #[serde(default)]
    pub search: Option<SearchEntry>,
    /// `code_execution` in a bubblewrap sandbox; without it, refused (400).
    #[serde(default)]
    pub code_execution: Option<CodeExecutionEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeExecutionEntry {
    /// Where containers live. Default: `MISSIVE_HOME/containers`, or
    /// `/var/lib/missive/containers` for a server running as root (the sandbox runs as
    /// `nobody`, who must be able to reach it).
    #[serde(default)]
    pub dir: Option<std::path::PathBuf>,
    /// Address space of one command, in MiB.
    #[serde(default = "default_code_memory_mb")]
    pub memory_mb: u64,
    /// CPU seconds of one command.
    #[serde(default = "default_code_cpu_s")]
    pub cpu_s: u64,
    /// Wall-clock seconds of one command.
    #[serde(default = "default_code_wall_s")]
    pub wall_s: u64,
    /// Processes the sandbox's user may run at once.
    #[serde(default = "default_code_processes")]
    pub processes: u32,
    /// Days a container is kept after its last use (the Claude API keeps them 30).
    #[serde(default = "default_container_days")]
    pub container_idle_days: u64,
}

fn default_code_memory_mb() -> u64 {
    1024
}

fn default_code_cpu_s() -> u64 {
    60
}

fn default_code_wall_s() -> u64 {
    60
}

fn default_code_processes() -> u32 {
    64
}

fn default_container_days() -> u64 {
    30
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SearchEntry {
    /// A SearXNG instance with `format: json` enabled, by its base URL.
    Searxng { url: String },
    /// The Brave Search API; the key is read from `api_key_env`.
    Brave {
        api_key_env: String,
        #[serde(default)]
        url: Option<String>,
    },
}

fn default_max_rounds() -> u32 {
    10
}

fn default_call_timeout() -> u64 {
    30
}

fn default_fetch_max_bytes() -> usize {
    10 * 1024 * 1024
}

impl Default for ServerToolsSection {
    fn default() -> Self {
        Self {
            private_hosts: Vec::new(),
            max_rounds: default_max_rounds(),
            call_timeout_s: default_call_timeout(),
            fetch_max_bytes: default_fetch_max_bytes(),
            search: None,
            code_execution: None,
        }
    }
}

impl ServerToolsSection {
    /// What server tools run with; containers live under `home`.
    pub fn toolbox(&self, home: &std::path::Path) -> anyhow::Result<missive_tools::Toolbox> {
        use anyhow::Context;
        use missive_tools::web_search::SearchBackend;
        let search = match &self.search {
            None => None,
            Some(SearchEntry::Searxng { url }) => Some(SearchBackend::Searxng {
                url: url::Url::parse(&format!("{}/", url.trim_end_matches('/')))
                    .with_context(|| format!("[server_tools.search] url `{url}`"))?,
            }),
            Some(SearchEntry::Brave { api_key_env, url }) => Some(SearchBackend::Brave {
                api_key: std::env::var(api_key_env)
                    .with_context(|| format!("[server_tools.search] {api_key_env} is not set"))?,
                url: url::Url::parse(
                    url.as_deref()
                        .unwrap_or("https://api.search.brave.com/res/v1/web/search"),
                )
                .context("[server_tools.search] url")?,
            }),
        };
        let call_timeout = std::time::Duration::from_secs(self.call_timeout_s.max(1));
        Ok(missive_tools::Toolbox {
            fetcher: missive_tools::fetch::Fetcher {
                private_hosts: self.private_hosts.clone(),
                timeout: call_timeout,
                max_bytes: self.fetch_max_bytes,
            },
            search,
            max_rounds: self.max_rounds.max(1),
            // A command has its own wall-clock limit; the call's is the larger.
            call_timeout: self.code_execution.as_ref().map_or(call_timeout, |c| {
                call_timeout.max(std::time::Duration::from_secs(c.wall_s + 5))
            }),
            containers: self.code_execution.as_ref().map(|c| {
                missive_tools::code_execution::Containers {
                    root: c
                        .dir
                        .clone()
                        .unwrap_or_else(|| missive_tools::sandbox::default_root(home)),
                    idle: std::time::Duration::from_secs(c.container_idle_days * 86_400),
                    limits: missive_tools::sandbox::Limits {
                        memory_bytes: c.memory_mb * 1024 * 1024,
                        cpu_seconds: c.cpu_s,
                        wall: std::time::Duration::from_secs(c.wall_s),
                        processes: c.processes,
                        file_bytes: 64 * 1024 * 1024,
                    },
                }
            }),
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchesSection {
    /// Batch requests in flight at once (they run at background priority).
    #[serde(default = "default_batch_concurrency")]
    pub concurrency: usize,
}

impl Default for BatchesSection {
    fn default() -> Self {
        Self {
            concurrency: default_batch_concurrency(),
        }
    }
}

fn default_batch_concurrency() -> usize {
    8
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GovernanceConfig {
    /// Keys, rate limits, spend limits, the usage ledger and the Admin API. Off only to
    /// measure what they cost (`bench/governance`): anyone can then call the server.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl Default for GovernanceConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

fn default_true() -> bool {
    true
}

/// One model's prices in USD per million tokens; cache prices default to the Claude API's
/// multipliers of the input price (1.25x, 2x, 0.1x).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceEntry {
    pub input: f64,
    pub output: f64,
    pub cache_write_5m: Option<f64>,
    pub cache_write_1h: Option<f64>,
    pub cache_read: Option<f64>,
    /// USD per 1,000 web searches.
    #[serde(default)]
    pub web_search: Option<f64>,
    /// USD per hour of code execution.
    #[serde(default)]
    pub code_execution: Option<f64>,
}

impl PriceEntry {
    fn price(&self) -> missive_server::spend::Price {
        let base = missive_server::spend::Price::new(self.input, self.output);
        missive_server::spend::Price {
            cache_write_5m: self.cache_write_5m.unwrap_or(base.cache_write_5m),
            cache_write_1h: self.cache_write_1h.unwrap_or(base.cache_write_1h),
            cache_read: self.cache_read.unwrap_or(base.cache_read),
            web_search: self.web_search.unwrap_or(base.web_search),
            code_execution: self.code_execution.unwrap_or(base.code_execution),
            ..base
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricesConfig {
    /// For models without their own entry; without it they are free.
    pub default: Option<PriceEntry>,
    #[serde(default)]
    pub models: BTreeMap<String, PriceEntry>,
}

impl PricesConfig {
    pub fn prices(&self) -> missive_server::spend::Prices {
        missive_server::spend::Prices {
            default: self.default.as_ref().map(PriceEntry::price),
            models: self
                .models
                .iter()
                .map(|(name, entry)| (name.clone(), entry.price()))
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpendLimitsConfig {
    pub organization_monthly_usd: Option<f64>,
    /// By workspace name.
    #[serde(default)]
    pub workspaces: BTreeMap<String, f64>,
}

impl SpendLimitsConfig {
    pub fn limits(&self) -> missive_server::spend::SpendLimits {
        missive_server::spend::SpendLimits {
            organization: self.organization_monthly_usd,
            workspaces: self
                .workspaces
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
        }
    }
}

/// Per-minute limits; a field left out keeps the default.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub requests_per_minute: Option<u32>,
    pub input_tokens_per_minute: Option<u32>,
    pub output_tokens_per_minute: Option<u32>,
}

impl LimitsConfig {
    pub fn over(&self, base: missive_server::limits::Limits) -> missive_server::limits::Limits {
        missive_server::limits::Limits {
            requests_per_minute: self.requests_per_minute.unwrap_or(base.requests_per_minute),
            input_tokens_per_minute: self
                .input_tokens_per_minute
                .unwrap_or(base.input_tokens_per_minute),
            output_tokens_per_minute: self
                .output_tokens_per_minute
                .unwrap_or(base.output_tokens_per_minute),
        }
    }
}

// No `deny_unknown_fields` here: serde does not support it beside `flatten`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RateLimitsConfig {
    #[serde(flatten)]
    pub defaults: LimitsConfig,
    #[serde(default)]
    pub workspaces: BTreeMap<String, LimitsConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "default_host")]
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// The address clients reach this server at (`https://missive.example.com`), for the
    /// links it returns (`results_url`). Unset: the request's own `Host`, over http unless
    /// `X-Forwarded-Proto` says https.
    #[serde(default)]
    pub public_url: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: default_host(),
            port: default_port(),
            public_url: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// The id clients use.
    pub name: String,
    /// A catalog name, a local GGUF path or an http(s) URL. Default: `name`.
    #[serde(default)]
    pub source: Option<String>,
    /// Context window in tokens. The default holds Claude Code's first request (~20k).
    #[serde(default = "default_context")]
    pub context_size: u32,
    /// CPU threads; default: all available cores.
    #[serde(default)]
    pub threads: Option<u32>,
    #[serde(default = "default_max_output")]
    pub max_output_tokens: u32,
    /// Requests that may wait for the model, at most (a memory guard); past this, 529.
    #[serde(default = "default_queue_depth")]
    pub queue_depth: usize,
    /// Longest a request may expect to wait for a slot, in seconds; a request that would
    /// wait longer gets a 529 whose `retry-after` says when it would fit.
    #[serde(default = "default_max_queue_wait_s")]
    pub max_queue_wait_s: f64,
    /// Sequences decoded together; they share the context's KV cells.
    #[serde(default = "default_parallel")]
    pub parallel: u32,
    /// Host memory for prefixes evicted from the KV cells (restored on reuse), in MiB.
    #[serde(default = "default_host_cache_mb")]
    pub host_cache_mb: usize,
    /// `unified` (one KV pool for all slots) or `per_slot` (a stream of `context_size`
    /// cells per slot, `parallel` times the memory).
    #[serde(default)]
    pub kv_layout: KvLayoutName,
    /// Serve this model from these upstreams (by name, in fallback order) instead of the
    /// embedded engine; `source` is then unused.
    #[serde(default)]
    pub upstreams: Vec<String>,
    /// What a text-only model does with images in a request: `placeholder` (each becomes
    /// a short text note, and the response says so in `x-missive-images`) or `reject`
    /// (a 400, as before).
    #[serde(default)]
    pub images: ImagePolicy,
    /// Sampling for requests that set none. Claude clients (Claude Code among them) send
    /// no temperature and expect Claude's 1.0; a small local model may call tools more
    /// reliably cooler. A request's own values always win.
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub top_p: Option<f32>,
    #[serde(default)]
    pub top_k: Option<u32>,
    /// Layers offloaded to the GPU (llama-server's `-ngl`); default: llama.cpp's, which is
    /// all of them on a `cuda` or `vulkan` build.
    #[serde(default)]
    pub gpu_layers: Option<u32>,
    /// The GPU for the whole model (`split_mode = "none"`) or its scratch buffers.
    #[serde(default)]
    pub main_gpu: Option<u32>,
    /// Across several GPUs: `layer` (whole layers each), `row`, or `none` (`main_gpu` only).
    #[serde(default)]
    pub split_mode: missive_engine::Split,
    /// `auto` (llama.cpp's choice, as llama-server's default), `on` or `off`.
    #[serde(default)]
    pub flash_attention: missive_engine::FlashAttention,
    /// The KV cache's number format: `f16`, `q8_0` or `q4_0` (the last two need flash
    /// attention; they halve or quarter the cache's memory).
    #[serde(default)]
    pub kv_cache_type: missive_engine::KvCacheFormat,
    /// A Jinja chat template file to use instead of the GGUF's (llama-server's
    /// `--chat-template-file`).
    #[serde(default)]
    pub chat_template_file: Option<PathBuf>,
    /// `hermes` (the template renders `<tool_call>` itself) or `described` (Missive
    /// describes the tools in the system turn); default: detected from the template.
    #[serde(default)]
    pub tool_format: Option<missive_engine::ToolFormat>,
    /// Prompt-lookup decoding: guesses the next tokens from the prompt and the reply so
    /// far and checks them in the same decode (the output is unchanged).
    #[serde(default = "default_prompt_lookup")]
    pub prompt_lookup: bool,
    /// The text a grammar forces (a structured output's keys, a tool call's framing) is
    /// guessed and checked in the same decode as the token before it (the output is
    /// unchanged).
    #[serde(default = "default_grammar_guesses")]
    pub grammar_guesses: bool,
    /// Speculative decoding: a smaller model with the same tokenizer (a source as for
    /// `source`, say `qwen2.5-coder-0.5b-instruct`) proposes tokens the model checks in one
    /// decode. Takes the place of prompt lookup.
    #[serde(default)]
    pub draft_model: Option<String>,
    /// Guessed tokens (from prompt lookup or the draft model) checked per step, at most.
    #[serde(default = "default_draft_tokens")]
    pub draft_tokens: u32,
    /// The draft model stops proposing at a token it gives less probability than this.
    #[serde(default = "default_draft_min_p")]
    pub draft_min_p: f32,
    /// Disk space for prefix KV caches under `MISSIVE_HOME/kv-cache`, in GiB (0: none):
    /// a restart or a new session with the same prompt prefix restores it from there.
    #[serde(default = "default_disk_cache_gb")]
    pub disk_cache_gb: f64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImagePolicy {
    #[default]
    Placeholder,
    Reject,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvLayoutName {
    #[default]
    Unified,
    PerSlot,
}

impl KvLayoutName {
    pub fn layout(self) -> missive_engine::KvLayout {
        match self {
            KvLayoutName::Unified => missive_engine::KvLayout::Unified,
            KvLayoutName::PerSlot => missive_engine::KvLayout::PerSlot,
        }
    }
}

impl ModelEntry {
    pub fn source(&self) -> &str {
        self.source.as_deref().unwrap_or(&self.name)
    }
}

fn default_host() -> String {
    "127.0.0.1".to_owned()
}
fn default_port() -> u16 {
    8080
}
fn default_context() -> u32 {
    32768
}
fn default_max_output() -> u32 {
    8192
}
fn default_queue_depth() -> usize {
    256
}
fn default_max_queue_wait_s() -> f64 {
    30.0
}
fn default_parallel() -> u32 {
    8
}
fn default_host_cache_mb() -> usize {
    2048
}
fn default_prompt_lookup() -> bool {
    true
}
fn default_grammar_guesses() -> bool {
    true
}
fn default_draft_tokens() -> u32 {
    16
}
fn default_draft_min_p() -> f32 {
    0.5
}
fn default_disk_cache_gb() -> f64 {
    4.0
}
fn default_models() -> Vec<ModelEntry> {
    vec![ModelEntry {
        name: DEFAULT_MODEL.to_owned(),
        source: None,
        context_size: default_context(),
        threads: None,
        max_output_tokens: default_max_output(),
        queue_depth: default_queue_depth(),
        max_queue_wait_s: default_max_queue_wait_s(),
        parallel: default_parallel(),
        host_cache_mb: default_host_cache_mb(),
        kv_layout: KvLayoutName::default(),
        upstreams: Vec::new(),
        images: ImagePolicy::default(),
        temperature: None,
        top_p: None,
        top_k: None,
        gpu_layers: None,
        main_gpu: None,
        split_mode: Default::default(),
        flash_attention: Default::default(),
        kv_cache_type: Default::default(),
        chat_template_file: None,
        tool_format: None,
        prompt_lookup: default_prompt_lookup(),
        grammar_guesses: default_grammar_guesses(),
        draft_model: None,
        draft_tokens: default_draft_tokens(),
        draft_min_p: default_draft_min_p(),
        disk_cache_gb: default_disk_cache_gb(),
    }]
}

impl Default for Config {
    fn default() -> Self {
        Self {
            home: None,
            server: ServerConfig::default(),
            models: default_models(),
            aliases: BTreeMap::new(),
            api_keys: Vec::new(),
            admin_keys: Vec::new(),
            rate_limits: RateLimitsConfig::default(),
            prices: PricesConfig::default(),
            spend_limits: SpendLimitsConfig::default(),
            governance: GovernanceConfig::default(),
            upstreams: Vec::new(),
            gateway: GatewaySection::default(),
            policy: PolicySection::default(),
            files: FilesSection::default(),
            cache: CacheSection::default(),
            batches: BatchesSection::default(),
            server_tools: ServerToolsSection::default(),
            store: StoreSection::default(),
            coordination: CoordinationSection::default(),
            console: ConsoleSection::default(),
        }
    }
}

/// An on/off environment variable's value.
fn switch(name: &str, value: &str) -> anyhow::Result<bool> {
    match value {
        "on" | "true" | "1" => Ok(true),
        "off" | "false" | "0" => Ok(false),
        other => anyhow::bail!("{name} must be on or off (got {other})"),
    }
}

impl Config {
    /// Reads the file (if given), then applies `MISSIVE_*` overrides.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config {}", path.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("parsing config {}", path.display()))?
            }
            None => Config::default(),
        };
        config.apply_env(path.is_none())?;
        if config.models.is_empty() {
            anyhow::bail!("the config names no models");
        }
        if config.aliases.is_empty() {
            config
                .aliases
                .insert("claude-*".to_owned(), config.models[0].name.clone());
        }
        Ok(config)
    }

    /// `rename_model`: without a config file, the model's id follows `MISSIVE_MODEL` (its
    /// catalog name, or the GGUF's file stem) instead of keeping the default model's id.
    fn apply_env(&mut self, rename_model: bool) -> anyhow::Result<()> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if let Some(home) = var("MISSIVE_HOME") {
            self.home = Some(PathBuf::from(home));
        }
        if let Some(url) = var("MISSIVE_STORE_URL") {
            self.store.url = Some(url);
        }
        if let Some(url) = var("MISSIVE_REDIS_URL") {
            self.coordination.redis_url = Some(url);
        }
        if let Some(prefix) = var("MISSIVE_REDIS_PREFIX") {
            self.coordination.key_prefix = prefix;
        }
        if let Some(host) = var("MISSIVE_HOST") {
            self.server.host = host;
        }
        if let Some(port) = var("MISSIVE_PORT") {
            self.server.port = port.parse().context("MISSIVE_PORT must be a port number")?;
        }
        if let Some(key) = var("MISSIVE_API_KEY") {
            self.api_keys.push(key);
        }
        if let Some(key) = var("MISSIVE_ADMIN_KEY") {
            self.admin_keys.push(key);
        }
        if let Some(on) = var("MISSIVE_GOVERNANCE") {
            self.governance.enabled = switch("MISSIVE_GOVERNANCE", &on)?;
        }
        if let Some(first) = self.models.first_mut() {
            if let Some(source) = var("MISSIVE_MODEL") {
                if rename_model {
                    first.name = model_name(&source);
                }
                first.source = Some(source);
            }
            if let Some(ctx) = var("MISSIVE_CONTEXT_SIZE") {
                first.context_size = ctx
                    .parse()
                    .context("MISSIVE_CONTEXT_SIZE must be a number")?;
            }
            if let Some(parallel) = var("MISSIVE_PARALLEL") {
                first.parallel = parallel
                    .parse()
                    .context("MISSIVE_PARALLEL must be a number")?;
            }
            if let Some(layout) = var("MISSIVE_KV_LAYOUT") {
                first.kv_layout = match layout.as_str() {
                    "unified" => KvLayoutName::Unified,
                    "per_slot" => KvLayoutName::PerSlot,
                    other => {
                        anyhow::bail!("MISSIVE_KV_LAYOUT must be unified or per_slot (got {other})")
                    }
                };
            }
            if let Some(mb) = var("MISSIVE_HOST_CACHE_MB") {
                first.host_cache_mb = mb
                    .parse()
                    .context("MISSIVE_HOST_CACHE_MB must be a number")?;
            }
            if let Some(layers) = var("MISSIVE_GPU_LAYERS") {
                first.gpu_layers = Some(
                    layers
                        .parse()
                        .context("MISSIVE_GPU_LAYERS must be a number")?,
                );
            }
            if let Some(flash) = var("MISSIVE_FLASH_ATTENTION") {
                first.flash_attention = serde_json::from_value(serde_json::json!(flash))
                    .context("MISSIVE_FLASH_ATTENTION must be auto, on or off")?;
            }
            if let Some(format) = var("MISSIVE_KV_CACHE_TYPE") {
                first.kv_cache_type = serde_json::from_value(serde_json::json!(format))
                    .context("MISSIVE_KV_CACHE_TYPE must be f16, q8_0 or q4_0")?;
            }
            if let Some(path) = var("MISSIVE_CHAT_TEMPLATE_FILE") {
                first.chat_template_file = Some(PathBuf::from(path));
            }
            if let Some(format) = var("MISSIVE_TOOL_FORMAT") {
                first.tool_format = Some(
                    serde_json::from_value(serde_json::json!(format))
                        .context("MISSIVE_TOOL_FORMAT must be hermes, qwen_xml, glm_xml, deepseek, deepseek_r1, llama3_json, mistral, mistral_args, harmony or described")?,
                );
            }
            if let Some(lookup) = var("MISSIVE_PROMPT_LOOKUP") {
                first.prompt_lookup = switch("MISSIVE_PROMPT_LOOKUP", &lookup)?;
            }
            if let Some(guesses) = var("MISSIVE_GRAMMAR_GUESSES") {
                first.grammar_guesses = switch("MISSIVE_GRAMMAR_GUESSES", &guesses)?;
            }
            if let Some(draft) = var("MISSIVE_DRAFT_MODEL") {
                first.draft_model = (!draft.is_empty()).then_some(draft);
            }
            if let Some(p) = var("MISSIVE_DRAFT_MIN_P") {
                first.draft_min_p = p.parse().context("MISSIVE_DRAFT_MIN_P must be a number")?;
            }
            if let Some(tokens) = var("MISSIVE_DRAFT_TOKENS") {
                first.draft_tokens = tokens
                    .parse()
                    .context("MISSIVE_DRAFT_TOKENS must be a number")?;
            }
            if let Some(gb) = var("MISSIVE_DISK_CACHE_GB") {
                first.disk_cache_gb = gb
                    .parse()
                    .context("MISSIVE_DISK_CACHE_GB must be a number")?;
            }
            if let Some(threads) = var("MISSIVE_THREADS") {
                first.threads = Some(
                    threads
                        .parse()
                        .context("MISSIVE_THREADS must be a number")?,
                );
            }
        }
        Ok(())
    }

    pub fn home(&self) -> anyhow::Result<PathBuf> {
        match &self.home {
            Some(home) => Ok(home.clone()),
            None => dirs::data_dir()
                .map(|d| d.join("missive"))
                .context("no data directory for this user: set MISSIVE_HOME"),
        }
    }

    /// The effective config as TOML, secrets masked.
    pub fn printable(&self) -> anyhow::Result<String> {
        let mut shown = self.clone();
        shown.api_keys = shown
            .api_keys
            .iter()
            .map(|_| "sk-…(masked)".to_owned())
            .collect();
        shown.admin_keys = shown
            .admin_keys
            .iter()
            .map(|_| "sk-ant-admin01-…(masked)".to_owned())
            .collect();
        for url in [
            shown.store.url.as_mut(),
            shown.coordination.redis_url.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            if let Ok(mut parsed) = url::Url::parse(url) {
                if parsed.password().is_some() && parsed.set_password(Some("masked")).is_ok() {
                    *url = parsed.to_string();
                }
            }
        }
        Ok(toml::to_string_pretty(&shown)?)
    }
}

/// The id a model source is served under: a catalog name as is, a path or URL by its file
/// stem (`…/qwen2.5-coder-0.5b-instruct.gguf` → `qwen2.5-coder-0.5b-instruct`).
fn model_name(source: &str) -> String {
    let file = source.rsplit(['/', '\\']).next().unwrap_or(source);
    let file = file.split(['?', '#']).next().unwrap_or(file);
    file.strip_suffix(".gguf").unwrap_or(file).to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn server_tools_are_read_into_a_toolbox() {
        let config: super::Config = toml::from_str(
            r#"
[server_tools]
max_rounds = 3
private_hosts = ["127.0.0.1"]
[server_tools.search]
kind = "searxng"
url = "http://searx.internal:8080"
[server_tools.code_execution]
wall_s = 5
dir = "/srv/containers"
"#,
        )
        .unwrap();
        let toolbox = config
            .server_tools
            .toolbox(std::path::Path::new("/home"))
            .unwrap();
        assert_eq!(toolbox.max_rounds, 3);
        assert_eq!(toolbox.fetcher.private_hosts, ["127.0.0.1"]);
        assert!(matches!(
            toolbox.search,
            Some(missive_tools::web_search::SearchBackend::Searxng { ref url })
                if url.as_str() == "http://searx.internal:8080/"
        ));
        let containers = toolbox.containers.unwrap();
        assert_eq!(containers.root, std::path::Path::new("/srv/containers"));
        assert_eq!(containers.limits.wall, std::time::Duration::from_secs(5));
        let unknown: Result<super::Config, _> = toml::from_str("[server_tools]\nmax_round = 3\n");
        assert!(unknown.is_err());
    }

    #[test]
    fn model_names_follow_their_source() {
        assert_eq!(super::model_name("gemma-3-270m"), "gemma-3-270m");
        assert_eq!(
            super::model_name("/m/qwen2.5-coder-0.5b-instruct.gguf"),
            "qwen2.5-coder-0.5b-instruct"
        );
        assert_eq!(
            super::model_name("https://h/x/tiny.gguf?download=1"),
            "tiny"
        );
    }

    use super::*;

    #[test]
    fn minimal_file_gets_defaults_and_claude_alias() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missive.toml");
        std::fs::write(
            &path,
            "[[models]]\nname = \"m\"\nsource = \"/tmp/m.gguf\"\n",
        )
        .unwrap();
        let config = Config::load(Some(&path)).unwrap();
        assert_eq!(config.models[0].context_size, 32768);
        assert_eq!(
            config.aliases.get("claude-*").map(String::as_str),
            Some("m")
        );
        assert_eq!(config.server.port, 8080);
    }

    #[test]
    fn unknown_config_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missive.toml");
        std::fs::write(&path, "[server]\nprot = 1\n").unwrap();
        assert!(Config::load(Some(&path)).is_err());
    }
}
