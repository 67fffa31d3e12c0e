"""Time to first token with a cached ~2,000-token system prompt vs cold, Missive beside
llama-server. See bench/cache."""

import argparse
import datetime
import json
import os
import statistics
import sys
import time
import uuid

import httpx

sys.path.insert(0, os.path.dirname(__file__))
from peer import PARAGRAPH, with_llama_server, with_missive  # noqa: E402

QUESTIONS = ["What is the main idea?", "Name one machine mentioned.", "Who used the systems?",
             "What came after assemblers?", "Summarise in five words.", "What did compilers do?"]


def system_prompt(nonce):
    # The nonce leads, so a new one shares no prefix with any earlier prompt.
    return f"Session {nonce}.\n" + PARAGRAPH * 30


def ttft_anthropic(url, system, question):
    body = {"model": "claude-sonnet-4-5", "max_tokens": 4, "temperature": 0, "stream": True,
            "system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": question}]}
    headers = {"x-api-key": "bench-key", "anthropic-version": "2023-06-01"}
    t0 = time.perf_counter()
    first, usage = None, {}
    with httpx.stream("POST", f"{url}/v1/messages", json=body, headers=headers, timeout=600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[6:])
            if event["type"] == "message_start":
                usage = event["message"]["usage"]
            elif event["type"] == "content_block_delta" and first is None:
                first = time.perf_counter() - t0
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


def measure(name, run, url, runs):
    rows = []
    for i in range(runs):
        system = system_prompt(uuid.uuid4().hex)
        cold, cold_usage = run(url, system, QUESTIONS[0])
        warm, warm_usage = run(url, system, QUESTIONS[1 + i % (len(QUESTIONS) - 1)])
        rows.append({"server": name, "cold_s": cold, "warm_s": warm, "cold": cold_usage, "warm": warm_usage})
        print(f"  {name}: cold {cold:.2f} s, warm {warm:.3f} s, {cold_usage} -> {warm_usage}", flush=True)
    return rows


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--missive", required=True)
    p.add_argument("--llama-server", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ctx", type=int, default=4096)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    rows = with_llama_server(args, 1, args.ctx, lambda url: measure("llama-server", ttft_openai, url, args.runs))
    rows += with_missive(args, 1, args.ctx, lambda url: measure("missive", ttft_anthropic, url, args.runs))

    def med(server, key):
        return statistics.median(r[key] for r in rows if r["server"] == server)

    last = {r["server"]: r for r in rows}
    lines = [f"# Cached vs cold time to first token ({datetime.date.today()})", "",
             f"~{last['missive']['cold']['prompt']}-token prompt (system prompt with a `cache_control` breakpoint for "
             f"Missive), {args.threads} threads each, 1 slot, medians of {args.runs}.", "",
             "| metric | Missive | llama-server | ratio |", "|---|---|---|---|"]
    for key, label in (("cold_s", "cold TTFT (s)"), ("warm_s", "warm TTFT (s)")):
        ours, theirs = med("missive", key), med("llama-server", key)
        lines.append(f"| {label} | {ours:.3f} | {theirs:.3f} | {ours / theirs:.2f}x |")
    m, l = last["missive"], last["llama-server"]
    lines.append(f"| cold usage: written / read | {m['cold']['written']} / {m['cold']['read']} | "
                 f"not reported / {l['cold']['read']} | |")
    lines.append(f"| warm usage: written / read | {m['warm']['written']} / {m['warm']['read']} | "
                 f"not reported / {l['warm']['read']} | |")
    text = "\n".join(lines)
    print("\n" + text)
    out = args.out or os.path.join("bench", "runs", f"{datetime.date.today()}-vm")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "cache.md"), "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
