//! The engine's Prometheus metrics, labelled by model. Names follow Prometheus
//! conventions; `/metrics` on the server renders them.

use std::time::Duration;

use missive_backend::PromptUsage;

pub(crate) fn job_queued(model: &str) {
    metrics::gauge!("missive_queue_depth", "model" => model.to_owned()).increment(1.0);
}

pub(crate) fn queue_wait_refused(model: &str) {
    metrics::counter!("missive_queue_wait_refused_total", "model" => model.to_owned()).increment(1);
}

pub(crate) fn job_dequeued(model: &str) {
    metrics::gauge!("missive_queue_depth", "model" => model.to_owned()).decrement(1.0);
}

pub(crate) fn running_sequences(model: &str, running: usize) {
    metrics::gauge!("missive_running_sequences", "model" => model.to_owned()).set(running as f64);
}

pub(crate) fn first_token(model: &str, since_enqueued: Duration) {
    metrics::histogram!("missive_time_to_first_token_seconds", "model" => model.to_owned())
        .record(since_enqueued.as_secs_f64());
}

pub(crate) fn output_tokens(model: &str, tokens: u32) {
    metrics::counter!("missive_output_tokens_total", "model" => model.to_owned())
        .increment(u64::from(tokens));
}

pub(crate) fn prompt_billed(model: &str, usage: &PromptUsage, cache_entries: usize) {
    let label = || ("model", model.to_owned());
    let written = usage.cache_creation_5m_input_tokens + usage.cache_creation_1h_input_tokens;
    let total = usage.input_tokens + usage.cache_read_input_tokens + written;
    metrics::counter!("missive_prompt_tokens_total", &[label()]).increment(u64::from(total));
    metrics::counter!("missive_prompt_cache_read_tokens_total", &[label()])
        .increment(u64::from(usage.cache_read_input_tokens));
    metrics::counter!("missive_prompt_cache_write_tokens_total", &[label()])
        .increment(u64::from(written));
    metrics::gauge!("missive_prompt_cache_entries", &[label()]).set(cache_entries as f64);
}

/// A prompt's tokens found in its slot's KV cells (not computed again) against all of
/// them: their ratio is the KV cache's hit rate, whatever `cache_control` bills.
pub(crate) fn kv_reuse(model: &str, reused: usize, prompt: usize) {
    let label = || ("model", model.to_owned());
    metrics::counter!("missive_kv_reused_tokens_total", &[label()]).increment(reused as u64);
    metrics::counter!("missive_kv_prompt_tokens_total", &[label()]).increment(prompt as u64);
}

pub(crate) fn host_cache(model: &str, stats: &crate::CacheStats) {
    use std::sync::atomic::Ordering::Relaxed;
    let label = || ("model", model.to_owned());
    metrics::gauge!("missive_prompt_cache_host_bytes", &[label()])
        .set(stats.bytes.load(Relaxed) as f64);
    metrics::gauge!("missive_prompt_cache_host_entries", &[label()])
        .set(stats.entries.load(Relaxed) as f64);
}

/// Where the model's layers run, for `/metrics`.
pub(crate) fn layers(model: &str, placement: &crate::placement::LayerPlacement) {
    let on = |device: &'static str| metrics::gauge!("missive_model_layers", "model" => model.to_owned(), "device" => device);
    on("gpu").set(f64::from(placement.offloaded));
    on("cpu").set(f64::from(placement.layers - placement.offloaded));
}

/// Guessed tokens decoded and those kept, once per job: their ratio is the acceptance rate.
pub(crate) fn drafts(model: &str, drafted: u32, accepted: u32) {
    if drafted == 0 {
        return;
    }
    let label = || ("model", model.to_owned());
    metrics::counter!("missive_draft_tokens_total", &[label()]).increment(u64::from(drafted));
    metrics::counter!("missive_draft_accepted_tokens_total", &[label()])
        .increment(u64::from(accepted));
}

/// The disk prefix cache: its size, and restores from it (hits, bytes, time).
pub(crate) fn disk_cache(model: &str, stats: &crate::DiskCacheStats) {
    use std::sync::atomic::Ordering::Relaxed;
    let label = || ("model", model.to_owned());
    metrics::gauge!("missive_disk_cache_bytes", &[label()]).set(stats.bytes.load(Relaxed) as f64);
    metrics::gauge!("missive_disk_cache_entries", &[label()])
        .set(stats.entries.load(Relaxed) as f64);
    metrics::counter!("missive_disk_cache_writes_total", &[label()])
        .absolute(stats.writes.load(Relaxed));
    metrics::counter!("missive_disk_cache_hits_total", &[label()])
        .absolute(stats.hits.load(Relaxed));
    metrics::counter!("missive_disk_cache_read_bytes_total", &[label()])
        .absolute(stats.bytes_read.load(Relaxed));
    metrics::counter!("missive_disk_cache_rejected_total", &[label()])
        .absolute(stats.rejected.load(Relaxed));
}

pub(crate) fn disk_cache_restored(model: &str, took: Duration) {
    metrics::histogram!("missive_disk_cache_restore_seconds", "model" => model.to_owned())
        .record(took.as_secs_f64());
}
