"""A grammar's forced text as guesses, side by side: Missive with and without them, and
llama-server with the same constraint, all up at once and taking turns. See bench/forced."""

import datetime
import json
import os
import statistics
import subprocess
import sys
import time

import httpx

sys.path.insert(0, os.path.dirname(__file__))
from peer import anthropic_events, guesses, in_turn, server_args, with_llama_server, with_missive, write_report  # noqa: E402

SYSTEM = "You are a precise assistant that fills in records."

# A record whose keys the grammar writes: long, required, in order.
RECORD = {"type": "object", "properties": {
    "package_name": {"type": "string"},
    "primary_programming_language": {"type": "string"},
    "latest_stable_version": {"type": "string"},
    "license_spdx_identifier": {"type": "string"},
    "first_release_year": {"type": "integer"},
    "is_actively_maintained": {"type": "boolean"},
    "number_of_core_maintainers": {"type": "integer"},
    "one_sentence_description": {"type": "string"},
}, "additionalProperties": False}
RECORD["required"] = list(RECORD["properties"])
RECORD_ASK = "Fill in the record for the Python package requests."

EVENT = {"type": "object", "properties": {
    "event_title": {"type": "string"},
    "start_date_iso8601": {"type": "string"},
    "duration_in_minutes": {"type": "integer"},
    "meeting_room_name": {"type": "string"},
    "attendee_email_addresses": {"type": "array", "items": {"type": "string"}},
    "send_calendar_invitations": {"type": "boolean"},
}, "additionalProperties": False}
EVENT["required"] = list(EVENT["properties"])
TOOL = {"name": "create_calendar_event", "description": "Create an event in the team calendar.",
        "input_schema": EVENT}
CALL_ASK = ("Book the Everest room for a 45-minute design review on 2026-12-03 at 10:00 with "
            "ana@example.com and li@example.com, and send the invitations.")


def run_missive(url, task, max_tokens):
    body = {"model": "claude-sonnet-4-6", "max_tokens": max_tokens, "temperature": 0, "system": SYSTEM}
    if task == "record":
        body.update(messages=[{"role": "user", "content": RECORD_ASK}],
                    output_config={"format": {"type": "json_schema", "schema": RECORD}})
    else:
        body.update(messages=[{"role": "user", "content": CALL_ASK}], tools=[TOOL],
                    tool_choice={"type": "tool", "name": TOOL["name"]})
    t0, times, n_out, out = time.perf_counter(), [], 0, ""
    for now, event in anthropic_events(url, body):
        if event["type"] == "content_block_delta":
            times.append(now)
            delta = event["delta"]
            out += delta.get("text", "") + delta.get("partial_json", "")
        elif event["type"] == "message_delta":
            n_out = event["usage"]["output_tokens"]
    return t0, times, n_out, out


def run_llama(url, task, max_tokens):
    body = {"model": "m", "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    system = {"role": "system", "content": SYSTEM}
    if task == "record":
        body.update(messages=[system, {"role": "user", "content": RECORD_ASK}],
                    response_format={"type": "json_schema", "json_schema": {"name": "record", "schema": RECORD}})
    else:
        # llama-server wrote this call as fenced text, unconstrained, when offered the tool with
        # `tool_choice: required`: its arguments' schema as the response format is the same
        # constrained object, without the call's framing.
        body.update(messages=[system, {"role": "user", "content": CALL_ASK}],
                    response_format={"type": "json_schema", "json_schema": {"name": "event", "schema": EVENT}})
    t0, times, n_out, out = time.perf_counter(), [], 0, ""
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            delta = chunk["choices"][0]["delta"] if chunk.get("choices") else {}
            piece = delta.get("content") or "".join(
                c.get("function", {}).get("arguments") or "" for c in delta.get("tool_calls") or [])
            if piece:
                times.append(time.perf_counter())
                out += piece
            if chunk.get("usage"):
                n_out = chunk["usage"]["completion_tokens"]
    return t0, times, n_out, out


def measure(lane, run, url, task, max_tokens):
    missive = run is run_missive
    before = guesses(url) if missive else (0, 0)
    t0, times, n_out, out = run(url, task, max_tokens)
    end = times[-1] if times else time.perf_counter()
    after = guesses(url) if missive else (0, 0)
    # One delta may carry several tokens, so the rate is over the whole reply after its first
    # token: the prompt is cached by the warm-up, and what is left is decoding.
    decode = (n_out - 1) / (end - times[0]) if n_out > 1 and times and end > times[0] else 0.0
    guessed, kept = after[0] - before[0], after[1] - before[1]
    print(f"  {lane:24} {n_out:4} tokens, decode {decode:6.1f} tok/s, {end - t0:5.2f} s, "
          f"guessed {guessed:.0f} kept {kept:.0f}", flush=True)
    try:
        json.loads(out)
        valid = True
    except ValueError:
        valid = False
    return {"lane": lane, "task": task, "output_tokens": n_out, "decode_tps": decode, "seconds": end - t0,
            "guessed": guessed, "kept": kept, "valid": valid, "reply": out}


def main():
    p = server_args(4096)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--max-tokens", type=int, default=300)
    args = p.parse_args()
    rows = []

    def lanes(servers):
        for task in ("record", "call"):
            for name, run, url in servers:  # warm-up: the prompt cached everywhere
                run(url, task, 4)
            for i in range(args.rounds):
                for name, run, url in in_turn(servers, i):
                    rows.append(dict(measure(f"{task}: {name}", run, url, task, args.max_tokens), server=name))

    # Prompt lookup off on both Missive lanes: only the grammar's guesses differ.
    with_llama_server(args, 1, args.ctx, lambda peer: with_missive(
        args, 1, args.ctx, lambda off: with_missive(
            args, 1, args.ctx, lambda on: lanes([
                ("missive", run_missive, off), ("missive+forced", run_missive, on),
                ("llama-server", run_llama, peer)]),
            extra_env={"MISSIVE_PROMPT_LOOKUP": "off", "MISSIVE_GRAMMAR_GUESSES": "on"}),
        extra_env={"MISSIVE_PROMPT_LOOKUP": "off", "MISSIVE_GRAMMAR_GUESSES": "off"}))

    def med(task, server, key="decode_tps"):
        return statistics.median(r[key] for r in rows if r["task"] == task and r["server"] == server)

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    lines = [
        f"# A grammar's forced text as guesses ({datetime.date.today()})",
        "",
        f"Machine: {cpu}, {os.cpu_count()} cores; {args.threads} threads each; ctx {args.ctx}; model "
        f"{os.path.basename(args.model)}; commit {commit}; greedy; one stream. Three servers up at once, "
        f"taking turns, the order flipped each round ({args.rounds} rounds per task): Missive with its "
        "grammar's forced tokens guessed (`grammar_guesses`) and without, prompt lookup off on both; "
        "llama-server with the same constraint as a `response_format` json_schema (for the call, "
        "its arguments' schema: offered the tool with `tool_choice: required`, llama-server wrote the "
        "call as unconstrained fenced text). Tasks: a structured output of 8 required fields "
        "(record), and a forced call of a tool with 6 required parameters (call). Decode tokens/s from "
        "the first to the last streamed delta, medians; seconds are whole requests, prompt cached. "
        f"Flash attention `{args.flash_attention}` on all.",
        "",
        "| task | missive | missive+forced | forced/plain | llama-server | missive+forced / llama-server | seconds: missive, +forced, llama-server |",
        "|---|---|---|---|---|---|---|",
    ]
    for task in ("record", "call"):
        m0, m1, l0 = med(task, "missive"), med(task, "missive+forced"), med(task, "llama-server")
        secs = ", ".join(f"{med(task, s, 'seconds'):.2f}" for s in ("missive", "missive+forced", "llama-server"))
        tokens = "/".join(f"{med(task, s, 'output_tokens'):.0f}" for s in ("missive", "missive+forced", "llama-server"))
        lines.append(f"| {task} ({tokens} tokens) | {m0:.1f} | {m1:.1f} | {m1 / m0:.2f}x | {l0:.1f} | "
                     f"{m1 / l0:.2f}x | {secs} |")
    for task in ("record", "call"):
        picked = [r for r in rows if r["task"] == task and r["server"] == "missive+forced"]
        guessed, kept = sum(r["guessed"] for r in picked), sum(r["kept"] for r in picked)
        out = sum(r["output_tokens"] for r in picked)
        invalid = sum(not r["valid"] for r in rows if r["task"] == task)
        lines.append(f"\n{task}: Missive guessed {guessed:.0f} forced tokens and kept {kept:.0f} "
                     f"({kept / guessed if guessed else 0:.0%}); {kept / out if out else 0:.0%} of the output "
                     f"came from kept guesses. Replies that were not JSON, all lanes: {invalid}.")
    lines.append("\nEach lane's first reply, cut at 300 characters:\n")
    for task in ("record", "call"):
        for server in ("missive", "missive+forced", "llama-server"):
            reply = next(r["reply"] for r in rows if r["task"] == task and r["server"] == server)
            lines.append(f"- {task}, {server}: `{reply[:300]}`")
    suffix = "" if args.flash_attention == "auto" else f"-fa-{args.flash_attention}"
    write_report(args, f"forced{suffix}.md", lines)


if __name__ == "__main__":
    main()
