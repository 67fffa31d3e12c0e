//! `missive bench`: measurements against a running server, optionally beside a peer.
//!
//! `schemas` checks the structured-output guarantee: every schema of a set, N sampled
//! generations each (temperature 1.0), through `output_config.format` and through a strict
//! forced tool; every output must parse and validate (formats included). With
//! `--peer-url`, the same prompts go to an OpenAI-compatible server's `json_schema`
//! response format for the side-by-side figure. It also measures what the constraint
//! costs: decode tokens/s with and without a schema.

// The report on stdout is this command's output.
#![allow(clippy::print_stdout)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Deserialize;
use serde_json::{json, Value};

mod load;
mod mock;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Structured-output validity and constrained-decoding overhead.
    Schemas(SchemasArgs),
    /// Load on one HTTP endpoint: requests/s and latency percentiles.
    Http(load::HttpArgs),
    /// An OpenAI-compatible server that answers at once, for gateway benchmarks.
    MockOpenai(mock::MockArgs),
}

#[derive(Debug, clap::Args)]
pub struct SchemasArgs {
    /// The Missive server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    #[arg(long, env = "ANTHROPIC_API_KEY", default_value = "")]
    api_key: String,
    /// An OpenAI-compatible server (llama-server) to run the same prompts through.
    #[arg(long)]
    peer_url: Option<String>,
    /// The schema set: a JSON array of {name, prompt, schema}.
    #[arg(long, default_value = "bench/schemas.json")]
    schemas: PathBuf,
    /// Generations per schema and way.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    #[arg(long, default_value_t = 512)]
    max_tokens: u32,
}

#[derive(Debug, Deserialize)]
struct Case {
    name: String,
    prompt: String,
    schema: Value,
}

/// The ways a schema is asked for.
#[derive(Debug, Clone, Copy)]
enum Way {
    OutputFormat,
    StrictTool,
    PeerJsonSchema,
}

impl Way {
    fn label(self) -> &'static str {
        match self {
            Way::OutputFormat => "missive output_config.format",
            Way::StrictTool => "missive strict tool",
            Way::PeerJsonSchema => "llama-server json_schema",
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    valid: usize,
    unparsable: usize,
    invalid: usize,
    truncated: usize,
    failed_requests: usize,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.valid += other.valid;
        self.unparsable += other.unparsable;
        self.invalid += other.invalid;
        self.truncated += other.truncated;
        self.failed_requests += other.failed_requests;
    }

    fn total(&self) -> usize {
        self.valid + self.unparsable + self.invalid + self.failed_requests
    }
}

enum Outcome {
    Valid,
    Unparsable,
    Invalid,
    Truncated,
    RequestFailed(String),
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Schemas(args) => schemas(&args),
        Command::Http(args) => load::run(&args),
        Command::MockOpenai(args) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?
            .block_on(mock::run(&args)),
    }
}

fn schemas(args: &SchemasArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.schemas)
        .with_context(|| format!("reading {}", args.schemas.display()))?;
    let cases: Vec<Case> = serde_json::from_str(&text).context("parsing the schema set")?;
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    let mut ways = vec![Way::OutputFormat, Way::StrictTool];
    if args.peer_url.is_some() {
        ways.push(Way::PeerJsonSchema);
    }
    println!(
        "# Structured output validity: {} schemas x {} generations, temperature 1.0\n",
        cases.len(),
        args.runs
    );
    println!("| schema | way | valid | unparsable | invalid | truncated | failed requests |");
    println!("|---|---|---|---|---|---|---|");
    let mut totals: Vec<Tally> = vec![Tally::default(); ways.len()];
    for case in &cases {
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&case.schema)
            .map_err(|err| anyhow::anyhow!("schema {}: {err}", case.name))?;
        for (w, way) in ways.iter().enumerate() {
            let tally = run_case(&client, args, case, *way, &validator);
            println!(
                "| {} | {} | {}/{} | {} | {} | {} | {} |",
                case.name,
                way.label(),
                tally.valid,
                tally.total(),
                tally.unparsable,
                tally.invalid,
                tally.truncated,
                tally.failed_requests
            );
            totals[w].add(&tally);
        }
    }
    // Truncated outputs (`max_tokens` reached mid-document) are reported apart: the API
    // says so in `stop_reason`; the guarantee is about every output that completed.
    println!("\n| way | valid | invalid | truncated by max_tokens | valid of completed |");
    println!("|---|---|---|---|---|");
    for (way, tally) in ways.iter().zip(&totals) {
        let completed = tally.total() - tally.truncated;
        let share = 100.0 * tally.valid as f64 / completed.max(1) as f64;
        println!(
            "| {} | {}/{} | {} | {} | {share:.1}% |",
            way.label(),
            tally.valid,
            tally.total(),
            tally.invalid + tally.unparsable - tally.truncated,
            tally.truncated
        );
    }
    overhead(&client, args, &cases)?;
    Ok(())
}

fn run_case(
    client: &reqwest::blocking::Client,
    args: &SchemasArgs,
    case: &Case,
    way: Way,
    validator: &jsonschema::Validator,
) -> Tally {
    let next = AtomicUsize::new(0);
    let tally = Mutex::new(Tally::default());
    std::thread::scope(|scope| {
        for _ in 0..args.concurrency.max(1) {
            scope.spawn(|| {
                while next.fetch_add(1, Ordering::Relaxed) < args.runs {
                    let outcome = generate(client, args, case, way, validator);
                    let Ok(mut t) = tally.lock() else { return };
                    match outcome {
                        Outcome::Valid => t.valid += 1,
                        Outcome::Unparsable => t.unparsable += 1,
                        Outcome::Invalid => t.invalid += 1,
                        Outcome::Truncated => {
                            t.truncated += 1;
                            t.unparsable += 1;
                        }
                        Outcome::RequestFailed(err) => {
                            eprintln!("{} via {}: {err}", case.name, way.label());
                            t.failed_requests += 1;
                        }
                    }
                }
            });
        }
    });
    tally.into_inner().unwrap_or_default()
}

fn generate(
    client: &reqwest::blocking::Client,
    args: &SchemasArgs,
    case: &Case,
    way: Way,
    validator: &jsonschema::Validator,
) -> Outcome {
    let messages = json!([{"role": "user", "content": case.prompt}]);
    let (url, body) = match way {
        Way::OutputFormat => (
            format!("{}/v1/messages", args.url),
            json!({"model": "claude-sonnet-4-6", "max_tokens": args.max_tokens, "temperature": 1.0,
                   "messages": messages,
                   "output_config": {"format": {"type": "json_schema", "schema": case.schema}}}),
        ),
        Way::StrictTool => (
            format!("{}/v1/messages", args.url),
            json!({"model": "claude-sonnet-4-6", "max_tokens": args.max_tokens, "temperature": 1.0,
                   "messages": messages,
                   "tools": [{"name": "record", "description": "Record the result.", "strict": true,
                              "input_schema": case.schema}],
                   "tool_choice": {"type": "tool", "name": "record"}}),
        ),
        Way::PeerJsonSchema => (
            format!(
                "{}/v1/chat/completions",
                args.peer_url.as_deref().unwrap_or_default()
            ),
            json!({"model": "peer", "max_tokens": args.max_tokens, "temperature": 1.0,
                   "messages": messages,
                   "response_format": {"type": "json_schema",
                       "json_schema": {"name": "result", "strict": true, "schema": case.schema}}}),
        ),
    };
    let response = client
        .post(url)
        .header("x-api-key", &args.api_key)
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.json::<Value>());
    let reply = match response {
        Ok(reply) => reply,
        Err(err) => return Outcome::RequestFailed(err.to_string()),
    };
    let (output, truncated) = match way {
        Way::OutputFormat => (
            reply["content"][0]["text"]
                .as_str()
                .and_then(|t| serde_json::from_str::<Value>(t).ok()),
            reply["stop_reason"] == "max_tokens",
        ),
        Way::StrictTool => (
            reply["content"]
                .as_array()
                .and_then(|blocks| blocks.iter().find(|b| b["type"] == "tool_use"))
                .map(|block| block["input"].clone()),
            reply["stop_reason"] == "max_tokens",
        ),
        Way::PeerJsonSchema => (
            reply["choices"][0]["message"]["content"]
                .as_str()
                .and_then(|t| serde_json::from_str::<Value>(t).ok()),
            reply["choices"][0]["finish_reason"] == "length",
        ),
    };
    match output {
        None if truncated => Outcome::Truncated,
        None => Outcome::Unparsable,
        Some(value) if validator.is_valid(&value) => Outcome::Valid,
        Some(_) => Outcome::Invalid,
    }
}

/// Decode tokens/s of one streamed Messages request: output tokens after the first,
/// over the time from the first delta to the last.
fn decode_rate(
    client: &reqwest::blocking::Client,
    args: &SchemasArgs,
    mut body: Value,
) -> anyhow::Result<f64> {
    body["stream"] = json!(true);
    let response = client
        .post(format!("{}/v1/messages", args.url))
        .header("x-api-key", &args.api_key)
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()?
        .error_for_status()?;
    let (mut first, mut last, mut tokens) = (None, None, 0u64);
    for line in BufReader::new(response).lines() {
        let line = line?;
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        let event: Value = serde_json::from_str(data)?;
        match event["type"].as_str() {
            Some("content_block_delta") => {
                let now = Instant::now();
                first.get_or_insert(now);
                last = Some(now);
            }
            Some("message_delta") => tokens = event["usage"]["output_tokens"].as_u64().unwrap_or(0),
            _ => {}
        }
    }
    match (first, last) {
        (Some(first), Some(last)) if tokens > 1 && last > first => {
            Ok((tokens - 1) as f64 / (last - first).as_secs_f64())
        }
        _ => bail!("the stream produced too few tokens to time"),
    }
}

fn overhead(
    client: &reqwest::blocking::Client,
    args: &SchemasArgs,
    cases: &[Case],
) -> anyhow::Result<()> {
    let Some(case) = cases.iter().find(|c| c.name == "invoice").or(cases.first()) else {
        return Ok(());
    };
    let plain = json!({"model": "claude-sonnet-4-6", "max_tokens": 96, "temperature": 0,
        "messages": [{"role": "user", "content": case.prompt}]});
    let mut constrained = plain.clone();
    constrained["output_config"] =
        json!({"format": {"type": "json_schema", "schema": case.schema}});
    let median = |body: &Value| -> anyhow::Result<f64> {
        let mut rates = Vec::new();
        for _ in 0..3 {
            rates.push(decode_rate(client, args, body.clone())?);
        }
        rates.sort_by(f64::total_cmp);
        Ok(rates[rates.len() / 2])
    };
    // Warm the prompt cache and the grammar cache alike.
    decode_rate(client, args, constrained.clone())?;
    decode_rate(client, args, plain.clone())?;
    let free = median(&plain)?;
    let guided = median(&constrained)?;
    println!(
        "\n# Constrained decoding overhead (single stream, `{}` schema)\n",
        case.name
    );
    println!("| decode | tokens/s |");
    println!("|---|---|");
    println!("| free text | {free:.1} |");
    println!("| with schema | {guided:.1} |");
    println!("| ratio | {:.2}x |", guided / free);
    Ok(())
}
