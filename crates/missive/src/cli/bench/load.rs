//! `missive bench http`: load on one endpoint, closed-loop (N connections, each sending its
//! next request when the last answers) or open-loop (a fixed arrival rate; latency counted
//! from each request's scheduled time, so a stalled server cannot hide its queue). Given
//! several URLs (replicas of one service), it spreads connections, or requests, over them
//! round-robin. Prints one JSON line: requests/s, latency percentiles, status counts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use tokio::sync::Mutex;

#[derive(Debug, clap::Args)]
pub struct HttpArgs {
    /// Full URL of the endpoint; several spread the load round-robin.
    #[arg(required = true)]
    urls: Vec<String>,
    /// JSON body (POST); without it, GET.
    #[arg(long)]
    body: Option<String>,
    /// `name: value`, repeatable.
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Closed loop: requests in flight at once.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Open loop: requests started per second (overrides --connections).
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Client runtime threads (the client shares the machine with the server).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// A label copied into the output line.
    #[arg(long, default_value = "")]
    label: String,
}

#[derive(Default)]
struct Samples {
    latencies: Vec<Duration>,
    statuses: BTreeMap<String, usize>,
}

pub fn run(args: &HttpArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(measure(args))
}

fn request(
    client: &reqwest::Client,
    args: &HttpArgs,
    url: &str,
) -> anyhow::Result<reqwest::RequestBuilder> {
    let mut builder = match &args.body {
        Some(body) => client
            .post(url)
            .header("content-type", "application/json")
            .body(body.clone()),
        None => client.get(url),
    };
    for header in &args.headers {
        let (name, value) = header
            .split_once(':')
            .with_context(|| format!("header {header:?} is not `name: value`"))?;
        builder = builder.header(name.trim(), value.trim());
    }
    Ok(builder)
}

async fn one(template: &reqwest::RequestBuilder) -> String {
    let Some(request) = template.try_clone() else {
        return "unclonable".to_owned();
    };
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16().to_string();
            // Read the whole body: the request is done when the client has the answer.
            match response.bytes().await {
                Ok(_) => status,
                Err(_) => "body_error".to_owned(),
            }
        }
        Err(_) => "connect_error".to_owned(),
    }
}

async fn measure(args: &HttpArgs) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(4096)
        .timeout(Duration::from_secs(30))
        .build()?;
    let templates = args
        .urls
        .iter()
        .map(|url| request(&client, args, url).map(Arc::new))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let samples = Arc::new(Mutex::new(Samples::default()));
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let end = measure_from + Duration::from_secs_f64(args.seconds);
    let record = move |samples: Arc<Mutex<Samples>>, scheduled: Instant, status: String| async move {
        if scheduled >= measure_from && scheduled < end {
            let mut s = samples.lock().await;
            s.latencies.push(scheduled.elapsed());
            *s.statuses.entry(status).or_default() += 1;
        }
    };
    let mut tasks = Vec::new();
    if let Some(rate) = args.rate {
        let interval = Duration::from_secs_f64(1.0 / rate.max(0.001));
        let mut next = start;
        for template in templates.iter().cycle() {
            if next >= end {
                break;
            }
            tokio::time::sleep_until(next.into()).await;
            let (template, samples) = (Arc::clone(template), Arc::clone(&samples));
            let scheduled = next;
            tasks.push(tokio::spawn(async move {
                let status = one(&template).await;
                record(samples, scheduled, status).await;
            }));
            next += interval;
        }
    } else {
        for template in templates.iter().cycle().take(args.connections.max(1)) {
            let (template, samples) = (Arc::clone(template), Arc::clone(&samples));
            tasks.push(tokio::spawn(async move {
                while Instant::now() < end {
                    let sent = Instant::now();
                    let status = one(&template).await;
                    record(Arc::clone(&samples), sent, status).await;
                }
            }));
        }
    }
    for task in tasks {
        let _ = task.await;
    }
    let mut samples = samples.lock().await;
    samples.latencies.sort();
    let n = samples.latencies.len();
    let pct = |p: f64| -> f64 {
        if n == 0 {
            return f64::NAN;
        }
        let i = ((p / 100.0) * n as f64).ceil() as usize;
        samples.latencies[i.clamp(1, n) - 1].as_secs_f64() * 1000.0
    };
    let line = json!({
        "label": args.label,
        "mode": if args.rate.is_some() { "open" } else { "closed" },
        "rate": args.rate,
        "connections": args.connections,
        "requests": n,
        "rps": n as f64 / args.seconds,
        "p50_ms": pct(50.0),
        "p90_ms": pct(90.0),
        "p99_ms": pct(99.0),
        "max_ms": pct(100.0),
        "statuses": samples.statuses,
    });
    println!("{line}");
    Ok(())
}
