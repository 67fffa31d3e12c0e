//! `missive bench mock-openai`: an OpenAI-compatible chat-completions server that answers
//! at once with a fixed reply (JSON, or three SSE chunks when `stream` is set), so a
//! benchmark of a gateway measures the gateway and not a model.

use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{json, Value};

#[derive(Debug, clap::Args)]
pub struct MockArgs {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long)]
    port: u16,
}

const REPLY: &str = "Hello from the mock upstream.";

fn completion() -> Value {
    json!({
        "id": "chatcmpl-mock", "object": "chat.completion", "created": 0, "model": "mock",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
    })
}

fn stream() -> String {
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0, "model": "mock",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let usage = json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0, "model": "mock",
                       "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}});
    [
        chunk(json!({"role": "assistant", "content": REPLY}), Value::Null),
        chunk(json!({}), json!("stop")),
        usage,
    ]
    .iter()
    .map(|c| format!("data: {c}\n\n"))
    .collect::<String>()
        + "data: [DONE]\n\n"
}

async fn chat(body: Bytes) -> Response {
    let streaming = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("stream").and_then(Value::as_bool))
        .unwrap_or(false);
    if streaming {
        ([(CONTENT_TYPE, "text/event-stream")], stream()).into_response()
    } else {
        axum::Json(completion()).into_response()
    }
}

pub async fn run(args: &MockArgs) -> anyhow::Result<()> {
    let app = axum::Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/chat/completions", post(chat))
        .route("/health", axum::routing::get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
