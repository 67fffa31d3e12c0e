"""Time to first token with a cached ~2,000-token system prompt vs cold, Missive beside
llama-server. See bench/cache."""

import datetime
import json
import os
import statistics
import sys
import tempfile
import time
import uuid

import httpx

sys.path.insert(0, os.path.dirname(__file__))
from peer import ADMIN_KEY, PARAGRAPH, anthropic_events, server_args, write_report, free_port, start, stop, with_both, in_turn  # noqa: E402

QUESTIONS = ["What is the main idea?", "Name one machine mentioned.", "Who used the systems?",
             "What came after assemblers?", "Summarise in five words.", "What did compilers do?"]


def system_prompt(nonce):
    # The nonce leads, so a new one shares no prefix with any earlier prompt.
    return f"Session {nonce}.\n" + PARAGRAPH * 30


def ttft_anthropic(url, system, question):
    body = {"model": "claude-sonnet-4-6", "max_tokens": 4, "temperature": 0,
            "system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": question}]}
    t0 = time.perf_counter()
    first, usage = None, {}
    for now, event in anthropic_events(url, body):
        if event["type"] == "message_start":
            usage = event["message"]["usage"]
        elif event["type"] == "content_block_delta" and first is None:
            first = now - t0
    return first, {"prompt": usage["input_tokens"] + usage["cache_read_input_tokens"] + usage["cache_creation_input_tokens"],
                   "read": usage["cache_read_input_tokens"], "written": usage["cache_creation_input_tokens"]}


def ttft_openai(url, system, question):
    body = {"model": "x", "max_tokens": 4, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}]}
    t0 = time.perf_counter()
    first, usage = None, {}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if event.get("choices") and event["choices"][0].get("delta", {}).get("content") and first is None:
                first = time.perf_counter() - t0
            if event.get("usage"):
                usage = event["usage"]
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
    return first, {"prompt": usage.get("prompt_tokens", 0), "read": cached, "written": 0}


def cold_then_warm(name, run, url, i):
    """A new system prompt sent twice: the first time cold, the second from the cache."""
    system = system_prompt(uuid.uuid4().hex)
    cold, cold_usage = run(url, system, QUESTIONS[0])
    warm, warm_usage = run(url, system, QUESTIONS[1 + i % (len(QUESTIONS) - 1)])
    print(f"  {name}: cold {cold:.2f} s, warm {warm:.3f} s, {cold_usage} -> {warm_usage}", flush=True)
    return {"server": name, "cold_s": cold, "warm_s": warm, "cold": cold_usage, "warm": warm_usage}


def measure(servers, runs):
    """`runs` cold-then-warm pairs against each of `servers` ((name, run, url), all up at
    once), taking turns pair by pair with the order flipped each time, so drift on a shared
    machine lands on both alike."""
    return [cold_then_warm(name, run, url, i)
            for i in range(runs) for name, run, url in in_turn(servers, i)]


def rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def memory_run(args):
    """RSS of Missive over requests with distinct prefixes, with a small host-cache budget:
    every request evicts the last prefix into host memory, so without the budget RSS would
    grow by each prefix's KV state."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, MISSIVE_HOME=tempfile.mkdtemp(prefix="missive-bench-"), MISSIVE_MODEL=args.model,
               MISSIVE_API_KEY="bench-key", MISSIVE_ADMIN_KEY=ADMIN_KEY, MISSIVE_PORT=str(port),
               MISSIVE_THREADS=str(args.threads), MISSIVE_CONTEXT_SIZE=str(args.ctx), MISSIVE_PARALLEL="2",
               MISSIVE_HOST_CACHE_MB=str(args.host_cache_mb))
    proc = start([args.missive, "serve"], env, url, "missive")
    try:
        headers = {"x-api-key": "bench-key", "anthropic-version": "2023-06-01"}
        body = lambda i: {"model": "claude-sonnet-4-6", "max_tokens": 1, "temperature": 0,
                          "system": f"Document {i}. " + PARAGRAPH * 4,
                          "messages": [{"role": "user", "content": "Title?"}]}
        httpx.post(f"{url}/v1/messages", json=body(-1), headers=headers, timeout=600).raise_for_status()
        base = rss_mib(proc.pid)
        peak = base
        for i in range(args.memory_requests):
            httpx.post(f"{url}/v1/messages", json=body(i), headers=headers, timeout=600).raise_for_status()
            peak = max(peak, rss_mib(proc.pid))
        metrics = httpx.get(f"{url}/metrics", headers={"x-api-key": ADMIN_KEY}).text
        host = next((float(l.rsplit(" ", 1)[1]) for l in metrics.splitlines()
                     if l.startswith("missive_prompt_cache_host_bytes")), 0.0) / (1 << 20)
    finally:
        stop(proc)
    return base, peak, host


def main():
    p = server_args(4096)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--memory-requests", type=int, default=200)
    p.add_argument("--host-cache-mb", type=int, default=64)
    args = p.parse_args()
    rows = with_both(args, 1, args.ctx, (ttft_openai, ttft_anthropic), lambda servers: measure(servers, args.runs))

    def med(server, key):
        return statistics.median(r[key] for r in rows if r["server"] == server)

    last = {r["server"]: r for r in rows}
    lines = [f"# Cached vs cold time to first token ({datetime.date.today()})", "",
             f"~{last['missive']['cold']['prompt']}-token prompt (system prompt with a `cache_control` breakpoint for "
             f"Missive), {args.threads} threads each, 1 slot, both servers up side by side taking turns, medians of {args.runs}.", "",
             "| metric | Missive | llama-server | ratio |", "|---|---|---|---|"]
    for key, label in (("cold_s", "cold TTFT (s)"), ("warm_s", "warm TTFT (s)")):
        ours, theirs = med("missive", key), med("llama-server", key)
        lines.append(f"| {label} | {ours:.3f} | {theirs:.3f} | {ours / theirs:.2f}x |")
    m, l = last["missive"], last["llama-server"]
    lines.append(f"| cold usage: written / read | {m['cold']['written']} / {m['cold']['read']} | "
                 f"not reported / {l['cold']['read']} | |")
    lines.append(f"| warm usage: written / read | {m['warm']['written']} / {m['warm']['read']} | "
                 f"not reported / {l['warm']['read']} | |")
    if args.memory_requests:
        base, peak, host = memory_run(args)
        lines += ["", f"## Memory over {args.memory_requests} requests with distinct ~300-token prefixes", "",
                  f"Host-cache budget {args.host_cache_mb} MiB, 2 slots: RSS after warm-up {base:.0f} MiB, "
                  f"peak {peak:.0f} MiB (growth {peak - base:.0f} MiB); host cache at the end {host:.1f} MiB."]
    write_report(args, "cache.md", lines)


if __name__ == "__main__":
    main()
