//! Prefill time of the engine alone (no HTTP, no store): five ~470-token prompts with a
//! fresh system prompt each, so every one is a full prefill; prints each request's time to
//! its first token. Set beside `missive serve`'s `decoded a batch` debug log and
//! llama-batched-bench (`bench/engine-parity`), it tells the engine from the server around it.
//!
//! `MODEL=path.gguf cargo run --release -p missive-engine --example prefill`

// A measuring tool: it fails loudly and reports on stdout.
#![allow(clippy::unwrap_used, clippy::print_stdout)]
use futures::StreamExt;
use missive_backend::{Backend, BackendEvent, GenerateRequest};
use missive_engine::{EngineBackend, KvLayout, ModelConfig};
use std::time::Instant;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let path = std::env::var("MODEL").unwrap();
    let config = ModelConfig {
        name: "m".into(),
        path: path.into(),
        context_size: 4096,
        threads: 2,
        max_output_tokens: 1024,
        queue_depth: 64,
        max_queue_wait: std::time::Duration::from_secs(30),
        parallel: 1,
        cache_min_tokens: 1024,
        host_cache_bytes: 1 << 30,
        kv_layout: KvLayout::Unified,
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
    let engine = EngineBackend::load(&config).unwrap();
    let para = "The history of computing is a story of abstraction layered upon abstraction. Early machines were programmed by rewiring panels; later, stored programs allowed instructions to live in memory beside data. ".repeat(12);
    for i in 0..5 {
        let body = serde_json::json!({"model": "m", "max_tokens": 1, "temperature": 0,
            // Differs from the last run's from its second token on: a full prefill each time.
            "system": format!("Session {i:036x}."),
            "messages": [{"role": "user", "content": para}]});
        let parsed = missive_protocol::parse_messages_request(body.to_string().as_bytes()).unwrap();
        let t0 = Instant::now();
        let mut events = engine
            .generate(GenerateRequest::new("m".into(), parsed))
            .await
            .unwrap();
        while let Some(e) = events.next().await {
            match e.unwrap() {
                BackendEvent::Started { prompt } => {
                    println!("prompt tokens {}", prompt.input_tokens)
                }
                BackendEvent::Finished { .. } => break,
                _ => {}
            }
        }
        println!("run {i}: {:.1} ms", t0.elapsed().as_secs_f64() * 1e3);
    }
}
