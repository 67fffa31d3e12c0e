//! Loading a GGUF: llama.cpp's process-wide backend, the model weights, its chat template
//! and what the model can do.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use crate::error::Error;
use crate::placement::Placement;
use crate::template::{ChatTemplate, GEMMA_TEMPLATE};

/// How to serve one model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// The id clients name in `model`.
    pub name: String,
    pub path: PathBuf,
    /// Context window in tokens; capped at the model's training context.
    pub context_size: u32,
    /// CPU threads for prefill and decode.
    pub threads: u32,
    /// Largest `max_tokens` one reply may ask for.
    pub max_output_tokens: u32,
    /// Requests that may wait for the engine before new ones get 529 (a memory guard).
    pub queue_depth: usize,
    /// Longest a request may expect to wait for a slot before it gets a 529 instead.
    pub max_queue_wait: std::time::Duration,
    /// Sequences decoded together (continuous batching). They share the context's KV cells.
    pub parallel: u32,
    /// Shortest prefix a `cache_control` breakpoint caches (and the host cache keeps), in
    /// tokens.
    pub cache_min_tokens: usize,
    /// Host memory for prefixes evicted from the KV cells, in bytes.
    pub host_cache_bytes: usize,
    pub kv_layout: KvLayout,
    /// Sampling for requests that set none (`[models.NAME] temperature`…): a small model
    /// may need a cooler default than the Claude API's 1.0 to call tools reliably.
    pub default_sampling: missive_backend::Sampling,
    /// GPU offload, attention kernel and KV cache format.
    pub placement: Placement,
    /// A chat template to use instead of the GGUF's (llama-server's `--chat-template-file`).
    pub chat_template: Option<String>,
    /// The tool format, when detection from the template is to be overridden.
    pub tool_format: Option<crate::template::ToolFormat>,
    /// Prompt-lookup decoding: tokens guessed from the prompt and reply after each sampled
    /// one and checked in the same decode, at most (0 turns it off).
    pub lookup_tokens: usize,
    /// The tokens a grammar forces (a structured output's keys, a tool call's framing) are
    /// guessed and checked in the same decode as the token before them.
    pub grammar_guesses: bool,
    /// Pause guessing (lookup or draft) while it measures slower than plain decoding. Off,
    /// guesses are made whenever there are some: tests that count them, or hardware known
    /// to gain.
    pub speculation_gate: bool,
    /// Prefixes kept on disk across restarts, when set.
    pub disk_cache: Option<crate::DiskCacheSettings>,
    /// A draft model for speculative decoding, when set (it takes the place of prompt
    /// lookup).
    pub draft: Option<DraftModel>,
}

/// A smaller model with the same tokenizer, proposing tokens for the target to check.
#[derive(Debug, Clone, PartialEq)]
pub struct DraftModel {
    pub path: PathBuf,
    pub settings: crate::DraftSettings,
}

/// How the KV cache is laid out across slots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KvLayout {
    /// One pool of `context` cells shared by all slots: any one request may use it all.
    #[default]
    Unified,
    /// Each slot its own stream of `context` cells (`parallel` times the memory): slots
    /// never evict each other, and attention spans only a sequence's own cells: measured here,
    /// 2–4% faster batched decoding at 4–8 streams (llama-server's layout with `-np`).
    PerSlot,
}

static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();

/// llama.cpp's backend, initialised once per process.
pub(crate) fn llama_backend() -> Result<&'static LlamaBackend, Error> {
    BACKEND
        .get_or_init(|| {
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|err| err.to_string())
        })
        .as_ref()
        .map_err(|err| Error::BackendInit(err.clone()))
}

/// Loads a draft model for `target`, refusing one whose tokenizer differs: its token ids
/// would mean other text.
pub(crate) fn load_draft(
    path: &Path,
    target: &LlamaModel,
    placement: &Placement,
) -> Result<LlamaModel, Error> {
    let draft = load(path, placement)?;
    let vocab = |m: &LlamaModel| {
        let v = m.vocab();
        let sample: Vec<Vec<u8>> = [0, 1, 100, 1000, 10_000]
            .into_iter()
            .map(|t| v.token_to_piece(LlamaToken(t), true, None))
            .collect();
        (m.n_vocab(), sample)
    };
    if vocab(&draft) != vocab(target) {
        return Err(Error::ModelLoad {
            path: path.to_owned(),
            reason: "the draft model's tokenizer differs from the model's".into(),
        });
    }
    Ok(draft)
}

pub(crate) fn load(path: &Path, placement: &Placement) -> Result<LlamaModel, Error> {
    if !path.exists() {
        return Err(Error::ModelMissing(path.to_owned()));
    }
    let backend = llama_backend()?;
    LlamaModel::load_from_file(backend, path, &placement.model_params()).map_err(|err| {
        Error::ModelLoad {
            path: path.to_owned(),
            reason: err.to_string(),
        }
    })
}

/// The model's own chat template, or the family's built-in one when the GGUF has none.
pub(crate) fn chat_template(
    model: &LlamaModel,
    configured: Option<&str>,
) -> Result<ChatTemplate, Error> {
    let vocab = model.vocab();
    let token_text = |token: LlamaToken| {
        String::from_utf8_lossy(&vocab.token_to_piece(token, true, None)).into_owned()
    };
    let bos = token_text(vocab.bos());
    let eos = token_text(vocab.eos());
    let source = match configured {
        Some(source) => Ok(source.to_owned()),
        None => model.meta_val_str("tokenizer.chat_template"),
    };
    let source = match source {
        Ok(source) => source,
        Err(_) => {
            let arch = model
                .meta_val_str("general.architecture")
                .unwrap_or_default();
            if arch.starts_with("gemma") {
                tracing::info!(%arch, "the GGUF has no chat template: using the built-in Gemma template");
                GEMMA_TEMPLATE.to_owned()
            } else {
                return Err(Error::ModelLoad {
                    path: PathBuf::new(),
                    reason: format!(
                        "the GGUF carries no chat template and Missive has none built in for architecture `{arch}`"
                    ),
                });
            }
        }
    };
    Ok(ChatTemplate::new(source, bos, eos)?)
}

/// The texts of the vocabulary's control tokens (`<|im_start|>`, `<|endoftext|>`, …).
pub(crate) fn special_tokens(model: &LlamaModel) -> crate::special::SpecialTokens {
    let vocab = model.vocab();
    let texts: Vec<String> = vocab
        .tokens()
        .filter(|&token| vocab.is_control(token))
        .map(|token| String::from_utf8_lossy(&vocab.token_to_piece(token, true, None)).into_owned())
        .collect();
    crate::special::SpecialTokens::new(texts)
}

/// The token that is exactly `text` (a marker such as `<tool_call>`), if the vocabulary
/// has one.
pub(crate) fn single_token(model: &LlamaModel, text: &str) -> Option<LlamaToken> {
    match model
        .vocab()
        .tokenize(text.as_bytes(), false, true)
        .as_slice()
    {
        [token] => Some(*token),
        _ => None,
    }
}

/// `general.name` of the GGUF, for `display_name`.
pub(crate) fn display_name(model: &LlamaModel, fallback: &str) -> String {
    model
        .meta_val_str("general.name")
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| fallback.to_owned())
}
