//! Aggregate decode throughput of the engine alone (no HTTP): 1, 4 and 8 concurrent
//! generations of 128 tokens, timed from the first token to the last, as `bench/peer`
//! times them through the server. `GAP_MS` spaces the requests' arrival.
//!
//! `MODEL=path.gguf [LAYOUT=per_slot] [GAP_MS=20] cargo run --release -p missive-engine --example throughput`

// A measuring tool: it fails loudly and reports on stdout.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::Instant;

use futures::StreamExt;
use missive_backend::{Backend, BackendEvent, GenerateRequest};
use missive_engine::{EngineBackend, KvLayout, ModelConfig};

#[tokio::main]
async fn main() {
    let path = std::env::var("MODEL").unwrap();
    let layout = match std::env::var("LAYOUT").as_deref() {
        Ok("per_slot") => KvLayout::PerSlot,
        _ => KvLayout::Unified,
    };
    let config = ModelConfig {
        name: "m".into(),
        path: path.into(),
        context_size: if layout == KvLayout::PerSlot {
            4096
        } else {
            32768
        },
        threads: 2,
        max_output_tokens: 1024,
        queue_depth: 64,
        max_queue_wait: std::time::Duration::from_secs(30),
        parallel: 8,
        cache_min_tokens: 1024,
        host_cache_bytes: 1 << 30,
        kv_layout: layout,
        default_sampling: Default::default(),
        placement: Default::default(),
        chat_template: None,
        tool_format: None,
        lookup_tokens: 0,
        grammar_guesses: false,
        speculation_gate: true,
        disk_cache: None,
        draft: None,
    };
    let engine = std::sync::Arc::new(EngineBackend::load(&config).unwrap());
    for n in [1usize, 4, 8] {
        let started = Instant::now();
        let mut handles = Vec::new();
        let gap: u64 = std::env::var("GAP_MS")
            .ok()
            .and_then(|g| g.parse().ok())
            .unwrap_or(0);
        for i in 0..n {
            tokio::time::sleep(std::time::Duration::from_millis(gap)).await;
            let engine = engine.clone();
            handles.push(tokio::spawn(async move {
                let body = serde_json::json!({"model": "m", "max_tokens": 128, "temperature": 0,
                    "system": format!("Session {i} {}. You are a helpful assistant.", rand_id()),
                    "messages": [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]});
                let parsed = missive_protocol::parse_messages_request(body.to_string().as_bytes()).unwrap();
                let mut events = engine.generate(GenerateRequest::new("m".into(), parsed)).await.unwrap();
                let (mut first, mut last, mut count) = (None, None, 0u32);
                while let Some(e) = events.next().await {
                    match e.unwrap() {
                        BackendEvent::Text(_) => { let now = Instant::now(); first.get_or_insert(now); last = Some(now); }
                        BackendEvent::Finished { output_tokens, .. } => count = output_tokens,
                        _ => {}
                    }
                }
                (first.unwrap(), last.unwrap(), count)
            }));
        }
        let mut results = Vec::new();
        for h in handles {
            results.push(h.await.unwrap());
        }
        let first = results.iter().map(|r| r.0).min().unwrap();
        let last = results.iter().map(|r| r.1).max().unwrap();
        let total: u32 = results.iter().map(|r| r.2).sum();
        println!(
            "{layout:?} {n} streams: {total} tokens in {:.1} s = {:.1} tok/s (wall {:.1} s)",
            (last - first).as_secs_f64(),
            total as f64 / (last - first).as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
    }
}

fn rand_id() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}
