use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use missive_engine::{EngineBackend, ModelConfig};
use missive_server::limits::{Limits, RateLimiter};
use missive_server::{app, AppState, Auth, FilesConfig, ModelRouter};

use crate::config::ImagePolicy;
use missive_store::{KeyKind, Store};

use crate::config::Config;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long)]
    pub host: Option<String>,
    #[arg(long)]
    pub port: Option<u16>,
    /// Print the effective configuration (secrets masked) and exit.
    #[arg(long)]
    pub print_config: bool,
}

pub async fn run(mut config: Config, args: Args) -> anyhow::Result<()> {
    if let Some(host) = args.host {
        config.server.host = host;
    }
    if let Some(port) = args.port {
        config.server.port = port;
    }
    if args.print_config {
        write!(std::io::stdout(), "{}", config.printable()?)?;
        return Ok(());
    }
    let home = config.home()?;
    // Installed before the models load, so what loading records (where layers run) is kept.
    let _ = missive_server::metrics::handle();
    let mut router = ModelRouter::new();
    for entry in &config.models {
        if entry.images == ImagePolicy::Reject {
            router = router.rejecting_images(&entry.name);
        }
        if !entry.upstreams.is_empty() {
            router = router.with_model(Arc::new(upstream_chain(&config, entry)?));
            continue;
        }
        let models_dir = home.join("models");
        let source = entry.source().to_owned();
        let path = tokio::task::spawn_blocking({
            let models_dir = models_dir.clone();
            move || crate::cli::pull::ensure(&models_dir, &source)
        })
        .await??;
        let draft = match entry.draft_model.clone() {
            Some(source) => Some(missive_engine::DraftModel {
                path: tokio::task::spawn_blocking(move || {
                    crate::cli::pull::ensure(&models_dir, &source)
                })
                .await??,
                settings: missive_engine::DraftSettings {
                    tokens: entry.draft_tokens as usize,
                    min_p: entry.draft_min_p,
                },
            }),
            None => None,
        };
        let model_config =
            ModelConfig {
                name: entry.name.clone(),
                path,
                context_size: entry.context_size,
                threads: entry.threads.unwrap_or_else(default_threads),
                max_output_tokens: entry.max_output_tokens,
                queue_depth: entry.queue_depth,
                max_queue_wait: std::time::Duration::from_secs_f64(entry.max_queue_wait_s.max(0.0)),
                parallel: entry.parallel,
                cache_min_tokens: missive_engine::prompt_cache::DEFAULT_MIN_TOKENS,
                host_cache_bytes: entry.host_cache_mb.saturating_mul(1 << 20),
                kv_layout: entry.kv_layout.layout(),
                default_sampling: missive_backend::Sampling {
                    temperature: entry.temperature,
                    top_p: entry.top_p,
                    top_k: entry.top_k,
                },
                placement: missive_engine::Placement {
                    gpu_layers: entry.gpu_layers,
                    main_gpu: entry.main_gpu,
                    split: entry.split_mode,
                    flash_attention: entry.flash_attention,
                    kv_cache_type: entry.kv_cache_type,
                },
                chat_template: match &entry.chat_template_file {
                    Some(path) => Some(std::fs::read_to_string(path).with_context(|| {
                        format!("reading chat_template_file {}", path.display())
                    })?),
                    None => None,
                },
                tool_format: entry.tool_format,
                disk_cache: Some(missive_engine::DiskCacheSettings {
                    root: home.join("kv-cache"),
                    budget_bytes: (entry.disk_cache_gb.max(0.0) * (1u64 << 30) as f64) as u64,
                }),
                draft,
                speculation_gate: true,
                grammar_guesses: entry.grammar_guesses,
                lookup_tokens: match entry.prompt_lookup {
                    true => entry.draft_tokens as usize,
                    false => 0,
                },
            };
        tracing::info!(model = %entry.name, path = %model_config.path.display(), "loading model");
        let backend = tokio::task::spawn_blocking(move || EngineBackend::load(&model_config))
            .await?
            .with_context(|| format!("loading model {}", entry.name))?;
        router = router.with_model(Arc::new(backend));
    }
    // The store opens after the models load: opened first, SQLite left llama.cpp's prefill
    // 3-4% slower for the life of the process (measured, alternated with llama-server: the
    // same kernels doing the same work, slower; the mechanism is not identified).
    // ARCHITECTURE.md, "Prefill: the gap was the process's layout, not the engine".
    let store = crate::cli::keys::open_store(&config)?;
    if config.governance.enabled && config.api_keys.is_empty() && store.list_api_keys()?.is_empty()
    {
        let created = store.create_api_key("first-start", KeyKind::Standard, None)?;
        writeln!(
            std::io::stdout(),
            "Created API key {} (shown once, only its hash is stored):\n{}",
            created.key.id,
            created.secret
        )?;
    }
    for (pattern, target) in &config.aliases {
        router = router.with_alias(pattern, target);
    }
    let thinking_key = store.secret("thinking-signature", 32)?;
    let console_key = store.secret("console-session", 32)?;
    let store: Arc<dyn Store> = store;
    let governed = config.governance.enabled;
    let auth = if governed {
        Auth::new(&config.api_keys, Some(Arc::clone(&store))).with_admin_keys(&config.admin_keys)
    } else {
        tracing::warn!("governance is off: no authentication, limits or usage ledger");
        Auth::open()
    };
    let addr = format!("{}:{}", config.server.host, config.server.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    tracing::info!(%addr, "listening");
    eprintln!("Missive listening on http://{addr}");
    let defaults = config.rate_limits.defaults.over(Limits::default());
    let overrides = config
        .rate_limits
        .workspaces
        .iter()
        .map(|(name, limits)| (name.clone(), limits.over(defaults)))
        .collect();
    let mut state = AppState::new(router, auth)
        .with_thinking_key(thinking_key)
        .with_cache_shared_across_workspaces(config.cache.share_across_workspaces)
        .with_public_url(config.server.public_url.clone())
        .with_server_tools(config.server_tools.toolbox(&home)?);
    if governed {
        if let Some(shared) = coordination(&config.coordination)? {
            state = state.with_coordination(shared);
        }
        state = state
            .with_rate_limits(RateLimiter::new(defaults, overrides))
            .with_store(store, config.prices.prices(), config.spend_limits.limits())?
            .with_files(files_config(&config, &home)?)
            .with_policies(config.policy.policies())
            .with_batch_worker(config.batches.concurrency);
        if config.console.enabled {
            state = state.with_console(
                missive_server::console_session::Sessions::new(
                    console_key,
                    config.console.session_ttl_s,
                ),
                std::time::Duration::from_secs(config.console.request_log_days * 86_400),
            );
            if let Some(oidc) = &config.console.oidc {
                state = state.with_console_oidc(oidc_config(oidc, &config)?);
            }
        }
    } else {
        state = state.with_rate_limits(RateLimiter::unlimited());
    }
    // Streams are many small writes (one per SSE event): without TCP_NODELAY, Nagle's
    // algorithm and the client's delayed ACK hold each for ~40 ms.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::warn!(error = %err, "setting TCP_NODELAY");
        }
    });
    axum::serve(listener, app(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// `[console.oidc]` with its secret read from the environment and its redirect URL settled.
fn oidc_config(
    oidc: &crate::config::OidcSection,
    config: &Config,
) -> anyhow::Result<missive_server::console_oidc::OidcConfig> {
    let client_secret = std::env::var(&oidc.client_secret_env).with_context(|| {
        format!(
            "[console.oidc] needs the client secret in ${}",
            oidc.client_secret_env
        )
    })?;
    let redirect_url = match (&oidc.redirect_url, &config.server.public_url) {
        (Some(url), _) => url.clone(),
        (None, Some(public)) => format!("{}/console/oidc/callback", public.trim_end_matches('/')),
        (None, None) => anyhow::bail!(
            "[console.oidc] needs redirect_url, or [server] public_url to derive it from"
        ),
    };
    Ok(missive_server::console_oidc::OidcConfig {
        issuer: oidc.issuer.trim_end_matches('/').to_owned(),
        client_id: oidc.client_id.clone(),
        client_secret,
        redirect_url,
    })
}

fn default_threads() -> u32 {
    std::thread::available_parallelism()
        .map(|n| u32::try_from(n.get()).unwrap_or(1))
        .unwrap_or(1)
}

/// A model served by upstreams: one backend per upstream, behind a fallback chain.
fn upstream_chain(
    config: &Config,
    entry: &crate::config::ModelEntry,
) -> anyhow::Result<missive_upstream::chain::Chain> {
    use missive_backend::ModelDescriptor;
    use missive_protocol::models::{
        EffortCapability, ModelCapabilities, ServerToolsCapability, Supported, ThinkingCapability,
    };
    use missive_upstream::anthropic::AnthropicBackend;
    use missive_upstream::breaker::Breaker;
    use missive_upstream::chain::{Chain, Member};
    use missive_upstream::openai::OpenAiBackend;
    use missive_upstream::UpstreamConfig;
    use std::time::Duration;

    // A chain of Claude API upstreams runs server tools itself; any other runs them here.
    let upstream_runs_tools = !entry.upstreams.is_empty()
        && entry.upstreams.iter().all(|name| {
            config
                .upstreams
                .iter()
                .any(|u| &u.name == name && u.kind == crate::config::UpstreamKind::Anthropic)
        });
    let descriptor = ModelDescriptor {
        id: entry.name.clone(),
        display_name: entry.name.clone(),
        created_at: "2026-01-01T00:00:00Z".to_owned(),
        max_input_tokens: entry.context_size,
        max_output_tokens: entry.max_output_tokens,
        capabilities: ModelCapabilities {
            batch: Supported::from(true),
            citations: Supported::from(false),
            code_execution: Supported::from(false),
            image_input: Supported::from(false),
            pdf_input: Supported::from(false),
            structured_outputs: Supported::from(true),
            thinking: ThinkingCapability::all(false),
            // The server applies context edits and compaction for every backend.
            context_management: Supported::from(true),
            effort: EffortCapability::default(),
            server_tools: ServerToolsCapability {
                supported: upstream_runs_tools,
                code_execution: Supported::from(upstream_runs_tools),
                web_search: Supported::from(upstream_runs_tools),
            },
        },
        runs_server_tools: upstream_runs_tools,
    };
    let gateway = &config.gateway;
    let mut members = Vec::new();
    for name in &entry.upstreams {
        let upstream = config
            .upstreams
            .iter()
            .find(|u| &u.name == name)
            .with_context(|| {
                format!(
                    "model {} names upstream {name}, which is not configured",
                    entry.name
                )
            })?;
        let api_key = match &upstream.api_key_env {
            Some(var) => Some(
                std::env::var(var).with_context(|| format!("upstream {name}: {var} is not set"))?,
            ),
            None => None,
        };
        let reach = UpstreamConfig {
            name: name.clone(),
            base_url: upstream.url.clone(),
            model: upstream.model.clone().unwrap_or_else(|| entry.name.clone()),
            api_key,
            connect_timeout: Duration::from_secs(upstream.connect_timeout_s),
            first_byte_timeout: upstream.timeout_s.map(Duration::from_secs),
        };
        let backend: Arc<dyn missive_backend::Backend> = match upstream.kind {
            crate::config::UpstreamKind::Openai => {
                Arc::new(OpenAiBackend::new(reach, descriptor.clone())?)
            }
            crate::config::UpstreamKind::Anthropic => {
                Arc::new(AnthropicBackend::new(reach, descriptor.clone())?)
            }
        };
        members.push(Member {
            weight: upstream.weight,
            limit: upstream
                .max_concurrency
                .map(|n| Arc::new(tokio::sync::Semaphore::new(n))),
            ..Member::new(
                name,
                backend,
                Breaker::new(
                    gateway.breaker_failures,
                    Duration::from_millis(gateway.breaker_cooldown_ms),
                ),
            )
        });
    }
    tracing::info!(model = %entry.name, upstreams = ?entry.upstreams, "serving from upstreams");
    Ok(Chain::new(
        descriptor,
        members,
        gateway.rounds,
        Duration::from_millis(gateway.backoff_ms),
    ))
}

/// Where uploads live and what a workspace may keep; uploads a crash left half-written
/// are removed before serving.
fn files_config(config: &Config, home: &std::path::Path) -> anyhow::Result<FilesConfig> {
    let dir = config
        .files
        .dir
        .clone()
        .unwrap_or_else(|| home.join("files"));
    let mut files = FilesConfig::new(dir);
    files.downloadable_uploads = config.files.downloadable_uploads;
    if let Some(gb) = config.files.workspace_quota_gb {
        files.workspace_quota_bytes = (gb * 1e9) as u64;
    }
    let removed = files.sweep_partials()?;
    if removed > 0 {
        tracing::info!(removed, "removed uploads a crash left unfinished");
    }
    Ok(files)
}

/// Redis for limits and spend shared across replicas, when configured.
fn coordination(
    section: &crate::config::CoordinationSection,
) -> anyhow::Result<Option<missive_server::shared::Shared>> {
    let Some(url) = section.redis_url.as_deref() else {
        return Ok(None);
    };
    let redis = missive_coordination::Coordination::open(
        url,
        &section.key_prefix,
        std::time::Duration::from_millis(section.timeout_ms.max(1)),
    )
    .context("[coordination] redis_url")?;
    if let Err(err) = redis.ping() {
        tracing::warn!(error = %err, "redis does not answer yet; limits follow [coordination] when_unreachable until it does");
    }
    Ok(Some(missive_server::shared::Shared {
        redis: Arc::new(redis),
        when_unreachable: match section.when_unreachable {
            crate::config::WhenUnreachable::Refuse => {
                missive_server::shared::WhenUnreachable::Refuse
            }
            crate::config::WhenUnreachable::Local => {
                missive_server::shared::WhenUnreachable::LocalLimits
            }
        },
    }))
}
