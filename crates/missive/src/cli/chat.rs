//! A small terminal client: reads lines, streams replies, keeps the conversation.

use std::io::{BufRead, Write};

use anyhow::{bail, Context};
use futures::StreamExt;
use missive_protocol::stream::{ContentBlockDelta, StreamEvent};
use serde_json::json;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(
        long,
        env = "ANTHROPIC_BASE_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    #[arg(long, env = "ANTHROPIC_API_KEY")]
    pub api_key: String,
    #[arg(long, default_value = "claude-sonnet-4-6")]
    pub model: String,
    #[arg(long)]
    pub system: Option<String>,
    #[arg(long, default_value_t = 1024)]
    pub max_tokens: u32,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let mut history: Vec<serde_json::Value> = Vec::new();
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    write!(out, "> ")?;
    out.flush()?;
    for line in stdin.lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            write!(out, "> ")?;
            out.flush()?;
            continue;
        }
        history.push(json!({"role": "user", "content": line}));
        let mut body = json!({"model": args.model, "max_tokens": args.max_tokens, "stream": true, "messages": history});
        if let Some(system) = &args.system {
            body["system"] = json!(system);
        }
        let response = client
            .post(format!("{}/v1/messages", args.url.trim_end_matches('/')))
            .header("x-api-key", &args.api_key)
            .header("anthropic-version", "2023-06-01")
            .json(&body)
            .send()
            .await
            .context("connecting to the server")?;
        if !response.status().is_success() {
            let status = response.status();
            bail!("{status}: {}", response.text().await.unwrap_or_default());
        }
        let reply = stream_reply(response, &mut out).await?;
        history.push(json!({"role": "assistant", "content": reply}));
        write!(out, "\n> ")?;
        out.flush()?;
    }
    Ok(())
}

async fn stream_reply(response: reqwest::Response, out: &mut impl Write) -> anyhow::Result<String> {
    let mut reply = String::new();
    let mut buffer = String::new();
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk?));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) else {
                continue;
            };
            match serde_json::from_str::<StreamEvent>(data) {
                Ok(StreamEvent::ContentBlockDelta {
                    delta: ContentBlockDelta::TextDelta { text },
                    ..
                }) => {
                    write!(out, "{text}")?;
                    out.flush()?;
                    reply.push_str(&text);
                }
                Ok(StreamEvent::Error { error }) => {
                    bail!("{}: {}", error.error_type.as_str(), error.message)
                }
                _ => {}
            }
        }
    }
    Ok(reply)
}
