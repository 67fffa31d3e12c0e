"""Side-by-side single-stream benchmark: Missive vs llama-server. See bench/peer."""

import argparse
import concurrent.futures
import csv
import datetime
import json
import os
import platform
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import uuid

import httpx

PARAGRAPH = (
    "The history of computing is a story of abstraction layered upon abstraction. Early machines were "
    "programmed by rewiring panels; later, stored programs allowed instructions to live in memory beside "
    "data. Assemblers gave names to opcodes, compilers translated structured languages into machine code, "
    "and operating systems multiplexed scarce hardware among many users. "
)
QUESTION = "Summarise the text above in a detailed essay of at least five paragraphs."


# Reads /metrics, which takes an Admin API key.
ADMIN_KEY = "sk-ant-admin01-bench-key"


def guesses(url):
    """Missive's guessed and kept token counts so far (its /metrics)."""
    text = httpx.get(f"{url}/metrics", headers={"x-api-key": ADMIN_KEY}, timeout=30).text

    def total(name):
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))
    return total("missive_draft_tokens_total"), total("missive_draft_accepted_tokens_total")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url, proc, log_path, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {open(log_path).read()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} did not become healthy")


def prompt(repeats):
    return PARAGRAPH * repeats + "\n\n" + QUESTION


def anthropic_events(url, body, client=httpx):
    """Streams a Messages request; yields (arrival time, event)."""
    headers = {"x-api-key": "bench-key", "anthropic-version": "2023-06-01"}
    with client.stream("POST", f"{url}/v1/messages", json=dict(body, stream=True), headers=headers,
                       timeout=600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if line.startswith("data: "):
                yield time.perf_counter(), json.loads(line[6:])


def conversation(user):
    """`user` is the one user message, or the messages themselves (ending with an assistant
    prefill, say)."""
    return user if isinstance(user, list) else [{"role": "user", "content": user}]


def run_anthropic(url, system, user, max_tokens, client=httpx, ready=None, temperature=0):
    """One streamed reply: (send time, arrival time of each text delta, prompt tokens, output
    tokens). `ready` is waited on just before sending."""
    body = {"model": "claude-sonnet-4-6", "max_tokens": max_tokens, "temperature": temperature,
            "system": system, "messages": conversation(user)}
    if ready:
        ready.wait()
    t0 = time.perf_counter()
    times, n_in, n_out = [], 0, 0
    for now, event in anthropic_events(url, body, client):
        if event["type"] == "message_start":
            n_in = event["message"]["usage"]["input_tokens"]
        elif event["type"] == "content_block_delta":
            times.append(now)
        elif event["type"] == "message_delta":
            n_out = event["usage"]["output_tokens"]
    return t0, times, n_in, n_out


def run_openai(url, system, user, max_tokens, client=httpx, ready=None, temperature=0):
    body = {"model": "claude-sonnet-4-6", "max_tokens": max_tokens, "temperature": temperature, "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "system", "content": system}, *conversation(user)]}
    if ready:
        ready.wait()
    t0 = time.perf_counter()
    times, n_in, n_out = [], 0, 0
    with client.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                times.append(time.perf_counter())
            if chunk.get("usage"):
                n_in = chunk["usage"]["prompt_tokens"]
                n_out = chunk["usage"]["completion_tokens"]
    return t0, times, n_in, n_out


def measure(name, run, url, args):
    rows = []
    for i in range(args.runs + 1):
        # A fresh system prompt per run defeats both servers' prefix caches, so every
        # run measures a full prefill.
        system = f"Session {uuid.uuid4()}. You are a helpful assistant."
        t0, times, n_in, n_out = run(url, system, prompt(args.repeats), args.max_tokens)
        first, last = times[0], times[-1]
        row = {
            "server": name,
            "run": i,
            "prompt_tokens": n_in,
            "output_tokens": n_out,
            "ttft_s": first - t0,
            "prefill_tps": n_in / (first - t0),
            "decode_tps": (n_out - 1) / (last - first) if n_out > 1 and last > first else 0.0,
        }
        if i == 0:
            continue  # warm-up: page in the weights
        rows.append(row)
        print(f"  {name:13} run {i}: prompt {n_in} tok, prefill {row['prefill_tps']:.1f} tok/s, "
              f"decode {row['decode_tps']:.1f} tok/s over {n_out} tok", flush=True)
    return rows


SHORT_PROMPT = "Write a detailed essay about the history of the printing press."


def burst(run, url, n, max_tokens):
    """Sends n streams at once; returns each one's (send time, token times, in, out)."""
    ready = threading.Barrier(n)
    clients = [httpx.Client(timeout=600) for _ in range(n)]
    for client in clients:
        client.get(f"{url}/health")

    def one(i):
        return run(url, f"Session {uuid.uuid4()}. You are a helpful assistant.", SHORT_PROMPT,
                   max_tokens, clients[i], ready)
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one, range(n)))
    for client in clients:
        client.close()
    return results


def burst_row(name, run, url, n, max_tokens):
    """One burst of n streams sent at once: aggregate decode tokens/s while all n decode (from
    the last stream's first token to the first stream's last, as llama-batched-bench's S_TG),
    and the time from sending to the last token of all n."""
    results = burst(run, url, n, max_tokens)
    sent = min(r[0] for r in results)
    all_decoding, first_done = max(r[1][0] for r in results), min(r[1][-1] for r in results)
    done = max(r[1][-1] for r in results)
    if n == 1:
        window, tokens = done - results[0][1][0], len(results[0][1]) - 1
    else:
        window = first_done - all_decoding
        tokens = sum(1 for r in results for t in r[1] if all_decoding < t <= first_done)
    total = sum(r[3] for r in results)
    print(f"  {name:13} {n} streams: {tokens / window:.1f} tok/s with all decoding; "
          f"{total} tokens all done {done - sent:.2f} s after sending", flush=True)
    return {"server": name, "streams": n, "output_tokens": total, "decode_window_s": window,
            "aggregate_tps": tokens / window, "completion_s": done - sent}


def measure_concurrent(servers, levels, max_tokens, repeats=1, fill=0):
    """Bursts of N streams against each of `servers` ((name, run, url), all up at once),
    taking turns burst by burst, the order flipped each time: drift on a shared machine then
    lands on both alike, at the scale of seconds rather than of a whole round. `fill` streams
    sent first, unmeasured, leave a cache in every slot, as on a server that has been up a
    while."""
    for _, run, url in servers:
        run(url, f"warm-up {uuid.uuid4()}", SHORT_PROMPT, 8)
        if fill:
            burst(run, url, fill, 16)
    rows = []
    for n in levels:
        for i in range(repeats):
            for name, run, url in in_turn(servers, i):
                rows.append(burst_row(name, run, url, n, max_tokens))
    return rows


def start(cmd, env, url, label):
    log = tempfile.NamedTemporaryFile("w", prefix=f"bench-{label}-", suffix=".log", delete=False)
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    wait_healthy(url, proc, log.name)
    return proc


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def with_llama_server(args, slots, ctx, body, extra=()):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    print(f"llama-server: {args.threads} threads, ctx {ctx}, -np {slots} {' '.join(extra)}", flush=True)
    kv = getattr(args, "kv_cache_type", "f16")
    proc = start([args.llama_server, "-m", args.model, "--port", str(port), "--ctx-size", str(ctx),
                  "--", "-t", str(args.threads), "-tb", str(args.threads), "-np", str(slots),
                  "-fa", getattr(args, "flash_attention", "auto"), "-ctk", kv, "-ctv", kv, *extra], os.environ, url, "llama")
    try:
        return body(url)
    finally:
        stop(proc)


def with_missive(args, slots, ctx, body, kv_layout="unified", extra_env=None):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    print(f"missive: {args.threads} threads, ctx {ctx}, {slots} slots, {kv_layout} KV {extra_env or ''}", flush=True)
    env = dict(os.environ, MISSIVE_HOME=tempfile.mkdtemp(prefix="missive-bench-"), MISSIVE_MODEL=args.model,
               MISSIVE_API_KEY="bench-key", MISSIVE_ADMIN_KEY=ADMIN_KEY, MISSIVE_PORT=str(port), MISSIVE_THREADS=str(args.threads),
               MISSIVE_CONTEXT_SIZE=str(ctx), MISSIVE_PARALLEL=str(slots), MISSIVE_KV_LAYOUT=kv_layout,
               MISSIVE_FLASH_ATTENTION=getattr(args, "flash_attention", "auto"),
               MISSIVE_KV_CACHE_TYPE=getattr(args, "kv_cache_type", "f16"), **(extra_env or {}))
    proc = start([args.missive, "serve"], env, url, "missive")
    try:
        return body(url)
    finally:
        stop(proc)


def with_both(args, slots, ctx, runs, body, kv_layout="unified"):
    """Starts llama-server and Missive and keeps both up while body runs (an idle one waits on
    a condition variable and costs nothing), each with `slots` slots of `ctx` cells; body gets
    [(name, run, url)] for llama-server with runs[0] and Missive with runs[1]."""
    llama_run, missive_run = runs
    return with_llama_server(args, slots, ctx * slots, lambda llama_url: with_missive(
        args, slots, ctx, lambda missive_url: body(
            [("llama-server", llama_run, llama_url), ("missive", missive_run, missive_url)]),
        kv_layout=kv_layout))


def in_turn(servers, i):
    """The order for turn i, flipped every other turn, so drift on a shared machine lands on
    every server alike."""
    return servers if i % 2 == 0 else servers[::-1]


def bench_http(missive, url, body, headers, seconds, label, **mode):
    """One `missive bench http` run (`mode`: connections=N or rate=R, warmup, threads): its
    JSON result, printed; any answer but 200 ends the bench. `url` may be a list: the
    connections are spread over them round-robin."""
    urls = [url] if isinstance(url, str) else list(url)
    cmd = [missive, "bench", "http", *urls, "--body", body, "--seconds", str(seconds), "--label", label]
    for header in headers:
        cmd += ["-H", header]
    for name, value in mode.items():
        cmd += [f"--{name}", str(value)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    bad = {s: n for s, n in result["statuses"].items() if s != "200"}
    if bad:
        raise SystemExit(f"{label}: non-200 answers {bad}")
    print(json.dumps(result), flush=True)
    return result


def load_arguments(p):
    """The arguments of the benches that load one endpoint with `missive bench http`."""
    p.add_argument("--missive", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--rate", type=int, default=1000)
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--out", default=None)
    return p


def write_report(args, name, lines):
    """Prints a report and writes it to bench/runs/<date>-vm/<name> (or --out)."""
    text = "\n".join(lines)
    print("\n" + text)
    out = args.out or os.path.join("bench", "runs", f"{datetime.date.today()}-vm")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, name), "w") as f:
        f.write(text + "\n")


def server_args(ctx):
    """The arguments every side-by-side bench takes: the two servers, the GGUF, threads."""
    p = argparse.ArgumentParser()
    p.add_argument("--missive", required=True)
    p.add_argument("--llama-server", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ctx", type=int, default=ctx)
    p.add_argument("--out", default=None)
    # The same attention kernel and KV format on both servers (llama-server's -fa, -ctk/-ctv).
    p.add_argument("--flash-attention", choices=["auto", "on", "off"], default="auto")
    p.add_argument("--kv-cache-type", choices=["f16", "q8_0", "q4_0"], default="f16")
    return p


def main():
    p = server_args(4096)
    p.add_argument("--runs", type=int, default=3, help="single-stream runs per round")
    p.add_argument("--rounds", type=int, default=2, help="alternations of the two servers")
    p.add_argument("--repeats", type=int, default=7, help="paragraph repeats (7: ~474 prompt tokens)")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--concurrency", default="1,4,8", help="stream counts for the aggregate test; empty to skip")
    p.add_argument("--bursts", type=int, default=2, help="bursts per stream count per round")
    p.add_argument("--fresh-slots", action="store_true",
                   help="measure on empty slots (default: one unmeasured burst first leaves a cache in every slot)")
    args = p.parse_args()

    levels = [int(x) for x in args.concurrency.split(",") if x]
    slots = max(levels) if levels else 1
    fill = 0 if args.fresh_slots else slots
    rows, crows = [], []
    # Rounds alternate the servers, so drift on a shared machine hits both alike.
    for round_no in range(1, args.rounds + 1):
        print(f"round {round_no}/{args.rounds}", flush=True)
        rows += with_llama_server(args, 1, args.ctx, lambda url: measure("llama-server", run_openai, url, args))
        rows += with_missive(args, 1, args.ctx, lambda url: measure("missive", run_anthropic, url, args))
        if levels:
            # Missive with the KV layout llama-server has with -np: each slot its own stream
            # of --ctx cells.
            crows += with_both(args, slots, args.ctx, (run_openai, run_anthropic), lambda servers: measure_concurrent(
                servers, levels, args.max_tokens, args.bursts, fill), kv_layout="per_slot")

    def median(server, key):
        return statistics.median(r[key] for r in rows if r["server"] == server)

    summary = {key: (median("missive", key), median("llama-server", key)) for key in ("prefill_tps", "decode_tps", "prompt_tokens")}
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = [
        f"# Missive vs llama-server ({datetime.date.today()})",
        "",
        f"Machine: {cpu}, {os.cpu_count()} cores; {args.threads} threads each; ctx {args.ctx}; "
        f"model {os.path.basename(args.model)}; commit {commit}; medians over {args.rounds} alternating rounds "
        f"({args.runs} single-stream runs each, after a warm-up); concurrent: {args.bursts} bursts of N streams "
        f"per round and server, sent at once to both servers up side by side, taking turns burst by burst, {args.max_tokens} tokens per stream, {slots} slots of {args.ctx} cells each "
        f"(llama-server -np {slots} --ctx-size {args.ctx * slots}; Missive kv_layout per_slot); "
        "aggregate decode is output tokens per second while all N streams decode; "
        + ("slots empty at the start." if args.fresh_slots else
           f"an unmeasured burst of {slots} streams first leaves a cache in every slot, as on a server that has been up a while."),
        "",
        "| metric | Missive | llama-server | ratio |",
        "|---|---|---|---|",
    ]
    for key, label in (("prefill_tps", "prefill tokens/s"), ("decode_tps", "decode tokens/s")):
        ours, theirs = summary[key]
        lines.append(f"| {label} | {ours:.1f} | {theirs:.1f} | {ours / theirs:.2f}x |")
    lines.append(f"| prompt tokens | {summary['prompt_tokens'][0]:.0f} | {summary['prompt_tokens'][1]:.0f} | |")
    def cmedian(server, n, key):
        return statistics.median(r[key] for r in crows if r["server"] == server and r["streams"] == n)

    def crange(server, n, key):
        values = [r[key] for r in crows if r["server"] == server and r["streams"] == n]
        return f"{statistics.median(values):.1f} ({min(values):.1f}–{max(values):.1f})"

    for n in levels:
        ours, theirs = cmedian("missive", n, "aggregate_tps"), cmedian("llama-server", n, "aggregate_tps")
        lines.append(f"| aggregate decode tokens/s, {n} streams: median (min–max) | {crange('missive', n, 'aggregate_tps')} "
                     f"| {crange('llama-server', n, 'aggregate_tps')} | {ours / theirs:.2f}x |")
    for n in levels:
        ours, theirs = cmedian("missive", n, "completion_s"), cmedian("llama-server", n, "completion_s")
        lines.append(f"| {n} streams sent at once: all done (s; lower is better) | {ours:.2f} | {theirs:.2f} "
                     f"| {ours / theirs:.2f}x |")
    text = "\n".join(lines)
    print("\n" + text)

    out = args.out or os.path.join("bench", "runs", f"{datetime.date.today()}-{platform.node()}")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(out, "raw.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        writer.writerows(rows)
    if crows:
        with open(os.path.join(out, "concurrent.csv"), "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(crows[0].keys()))
            writer.writeheader()
            writer.writerows(crows)
    print(f"\nwritten to {out}/")


if __name__ == "__main__":
    main()
