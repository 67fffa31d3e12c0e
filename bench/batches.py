"""Batch throughput and interactive latency beside a batch. See bench/batches."""

import argparse
import os
import statistics
import subprocess
import tempfile
import time

import httpx

from peer import free_port, wait_healthy, write_report

KEY = "sk-ant-api03-bench-batches"
TOPICS = ["rivers", "stars", "bread", "trains", "owls", "glass", "maps", "tea", "bees", "clocks"]


def body(i, max_tokens):
    return {
        "model": "claude-haiku-4-5",
        "max_tokens": max_tokens,
        "temperature": 0,
        "messages": [{"role": "user", "content": f"Write one short sentence about {TOPICS[i % len(TOPICS)]} (#{i})."}],
    }


def interactive(client, url, n, max_tokens):
    latencies = []
    for i in range(n):
        started = time.perf_counter()
        r = client.post(f"{url}/v1/messages", json=body(10_000 + i, max_tokens))
        r.raise_for_status()
        latencies.append(time.perf_counter() - started)
        time.sleep(0.2)
    return latencies


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--missive", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--interactive", type=int, default=20)
    p.add_argument("--max-tokens", type=int, default=8)
    p.add_argument("--out", default=None)
    args = p.parse_args()

    home = tempfile.mkdtemp(prefix="missive-batches-")
    port = free_port()
    env = dict(os.environ, MISSIVE_HOME=home, MISSIVE_MODEL=args.model, MISSIVE_PORT=str(port),
               MISSIVE_API_KEY=KEY, MISSIVE_THREADS=str(args.threads), MISSIVE_LOG="warn")
    log = os.path.join(home, "serve.log")
    proc = subprocess.Popen([args.missive, "serve"], env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, log)
        client = httpx.Client(headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"}, timeout=600)
        interactive(client, url, 3, args.max_tokens)  # warm-up
        idle = interactive(client, url, args.interactive, args.max_tokens)

        requests = [{"custom_id": f"b-{i}", "params": body(i, args.max_tokens)} for i in range(args.requests)]
        created = time.perf_counter()
        batch = client.post(f"{url}/v1/messages/batches", json={"requests": requests}).json()
        time.sleep(2)  # let the batch fill the engine's slots
        busy = interactive(client, url, args.interactive, args.max_tokens)
        done_during = client.get(f"{url}/v1/messages/batches/{batch['id']}").json()
        while True:
            state = client.get(f"{url}/v1/messages/batches/{batch['id']}").json()
            if state["processing_status"] == "ended":
                break
            time.sleep(0.5)
        elapsed = time.perf_counter() - created
        counts = state["request_counts"]
        lines_out = client.get(f"{url}/v1/messages/batches/{batch['id']}/results").text.strip().splitlines()
    finally:
        proc.terminate()
        proc.wait()

    idle_p50, busy_p50 = statistics.median(idle), statistics.median(busy)
    lines = [
        "# Message Batches: throughput, and interactive latency beside a running batch",
        "",
        f"Missive release build, default model, {args.threads} threads, batch concurrency 8 at background priority. "
        f"Batch: {args.requests} short prompts, max_tokens {args.max_tokens}. Interactive: {args.interactive} sequential "
        f"requests (same shape, non-streaming, 0.2 s apart), first on the idle server, then while the batch runs.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| batch requests | {args.requests} ({counts['succeeded']} succeeded, {counts['errored']} errored; {len(lines_out)} result lines) |",
        f"| batch wall time | {elapsed:.1f} s |",
        f"| batch throughput | {args.requests / elapsed:.2f} requests/s |",
        f"| interactive p50, idle server | {idle_p50 * 1000:.0f} ms |",
        f"| interactive p50, batch running | {busy_p50 * 1000:.0f} ms |",
        f"| ratio (target <= 1.5x) | {busy_p50 / idle_p50:.2f}x |",
        "",
        f"The batch was still in progress when the interactive requests ended: {done_during['processing_status']}.",
    ]
    write_report(args, "batches.md", lines)


if __name__ == "__main__":
    main()
