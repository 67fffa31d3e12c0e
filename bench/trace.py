"""An agent-style trace, replayed against Missive and llama-server: a ~20k-token system
prompt and tools sent with every turn (as Claude Code sends them), a history that grows by
a reply and a new message each turn. See bench/trace."""

import datetime
import itertools
import json
import os
import sys
import time

import httpx

sys.path.insert(0, os.path.dirname(__file__))
from peer import PARAGRAPH, anthropic_events, server_args, write_report, with_both, in_turn  # noqa: E402

TOOLS = [
    {"name": name, "description": f"{name.replace('_', ' ')} in the workspace",
     "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}
    for name in ("read_file", "write_file", "list_directory", "search_code", "run_tests")
]
REQUESTS = ["Summarise the guide above in one line.", "What does chapter two cover?",
            "Name one tool you could use.", "List two risks.", "What came first?",
            "Rephrase your last answer.", "Give one example.", "What is missing?",
            "One more detail, please.", "Conclude in one sentence."]


def system_prompt(repeats):
    return "You are a coding agent. Reference guide follows.\n" + PARAGRAPH * repeats


def turn_anthropic(url, system, history, max_tokens):
    body = {"model": "claude-sonnet-4-6", "max_tokens": max_tokens, "temperature": 0,
            "system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
            "tools": TOOLS, "cache_control": {"type": "ephemeral"},
            "messages": history}
    t0 = time.perf_counter()
    first, text, usage = None, "", {}
    for now, event in anthropic_events(url, body):
        if event["type"] == "message_start":
            usage = event["message"]["usage"]
        elif event["type"] == "content_block_delta":
            first = first or now - t0
            text += event["delta"].get("text", "")
    return first, time.perf_counter() - t0, text, usage


def turn_openai(url, system, history, max_tokens):
    tools = [{"type": "function", "function": {"name": t["name"], "description": t["description"],
                                               "parameters": t["input_schema"]}} for t in TOOLS]
    body = {"model": "x", "max_tokens": max_tokens, "temperature": 0, "stream": True, "tools": tools,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "system", "content": system}] + history}
    t0 = time.perf_counter()
    first, text, usage = None, "", {}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=1800) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            delta = (event.get("choices") or [{}])[0].get("delta", {}).get("content")
            if delta:
                first = first or time.perf_counter() - t0
                text += delta
            if event.get("usage"):
                usage = {"input_tokens": event["usage"]["prompt_tokens"]}
    return first, time.perf_counter() - t0, text, usage


def replay(name, turn, url, args):
    """Yields one row per turn of the trace, so that two replays can take turns."""
    system = system_prompt(args.repeats)
    history = []
    for i in range(args.turns):
        history.append({"role": "user", "content": REQUESTS[i % len(REQUESTS)]})
        ttft, total, text, usage = turn(url, system, history, args.max_tokens)
        history.append({"role": "assistant", "content": text.strip() or "(no answer)"})
        row = {"server": name, "turn": i + 1, "ttft": ttft or total, "total": total, "usage": usage}
        print(f"  {name} turn {i + 1}: ttft {row['ttft']:.2f} s, total {total:.2f} s {usage}", flush=True)
        yield row


def side_by_side(replays):
    """Runs the replays turn by turn, the order flipped each turn, so drift on a shared
    machine lands on both alike."""
    rows = []
    for i in itertools.count():
        step = [row for replay in in_turn(replays, i) if (row := next(replay, None))]
        if not step:
            return rows
        rows += step


def main():
    p = server_args(24576)
    p.add_argument("--turns", type=int, default=10)
    p.add_argument("--repeats", type=int, default=300, help="guide paragraphs (300: ~20k tokens)")
    p.add_argument("--max-tokens", type=int, default=32)
    args = p.parse_args()
    rows = with_both(args, 1, args.ctx, (turn_openai, turn_anthropic), lambda servers: side_by_side(
        [replay(name, turn, url, args) for name, turn, url in servers]))

    def get(server, key, turn=None):
        picked = [r[key] for r in rows if r["server"] == server and (turn is None or r["turn"] == turn)]
        return sum(picked)

    first = next(r for r in rows if r["server"] == "missive")["usage"]
    prompt = first.get("input_tokens", 0) + first.get("cache_creation_input_tokens", 0) + first.get("cache_read_input_tokens", 0)
    peer_prompt = next(r for r in rows if r["server"] == "llama-server")["usage"].get("input_tokens", "?")
    lines = [f"# Agent trace ({datetime.date.today()})", "",
             f"{args.turns} turns, a {prompt}-token first prompt ({peer_prompt} as llama-server renders it; system "
             f"prompt and {len(TOOLS)} tools resent every turn, history growing), {args.max_tokens} output tokens a "
             f"turn, {args.threads} threads each, 1 slot, both servers up side by side taking turns. Flash attention "
             f"`{args.flash_attention}`, KV cache `{args.kv_cache_type}` on both.", "",
             "| metric | Missive | llama-server | ratio |", "|---|---|---|---|"]
    metrics = [("total time (s)", "total", None), ("first turn time to first token (s)", "ttft", 1)]
    if args.turns > 1:
        metrics.append(("second turn time to first token (s)", "ttft", 2))
    for label, key, turn in metrics:
        ours, theirs = get("missive", key, turn), get("llama-server", key, turn)
        lines.append(f"| {label} | {ours:.2f} | {theirs:.2f} | {ours / theirs:.2f}x |")
    if args.turns > 1:
        second = next(r for r in rows if r["server"] == "missive" and r["turn"] == 2)["usage"]
        lines.append(f"| second turn usage (Missive) | read {second.get('cache_read_input_tokens')}, "
                     f"written {second.get('cache_creation_input_tokens')}, uncached {second.get('input_tokens')} | | |")
    settings = "" if (args.flash_attention, args.kv_cache_type) == ("auto", "f16") else \
        f"-fa-{args.flash_attention}-kv-{args.kv_cache_type}"
    write_report(args, f"trace{settings}.md", lines)


if __name__ == "__main__":
    main()
