"""Speculative decoding with a draft model, side by side: the 1.5B model alone and with the 0.5B
model drafting, in Missive and in llama-server (`--model-draft`), all up at once and taking
turns. See bench/spec."""

import datetime
import os
import statistics
import subprocess
import sys


sys.path.insert(0, os.path.dirname(__file__))
from peer import burst_row, guesses, in_turn, run_anthropic, run_openai, server_args, with_llama_server, with_missive, write_report  # noqa: E402

SYSTEM = "You are a careful coding assistant. Answer with code only."
PROMPTS = [
    "Write a Python function that parses an ISO 8601 date string without using datetime, with tests.",
    "Write a Rust function that merges two sorted vectors of integers into one sorted vector, with tests.",
    "Write a TypeScript class for an LRU cache with get, set and delete, with a short usage example.",
]


def main():
    p = server_args(8192)
    p.add_argument("--draft", required=True, help="the draft GGUF (the 0.5B model)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--draft-tokens", type=int, default=10)
    p.add_argument("--draft-min-p", type=float, default=0.5)
    p.add_argument("--streams", type=int, default=4, help="streams for the aggregate test")
    args = p.parse_args()
    n, p_min = args.draft_tokens, args.draft_min_p
    draft_args = ["--spec-type", "draft-simple", "--model-draft", args.draft, "--spec-draft-n-max", str(n), "--spec-draft-p-min", str(p_min),
                  "-td", str(args.threads), "-tbd", str(args.threads)]
    rows, crows, accept = [], [], {}
    slots = args.streams

    def lanes(servers):
        for name, run, url in servers:  # warm-up
            run(url, SYSTEM, PROMPTS[0], 8)
        for temperature in (0.0, 0.7):
            for i in range(args.rounds):
                for prompt_no, prompt in enumerate(PROMPTS):
                    for name, run, url in in_turn(servers, i + prompt_no):
                        before = guesses(url) if name == "missive+draft" else None
                        t0, times, _, n_out = run(url, SYSTEM, prompt, args.max_tokens,
                                                  temperature=temperature)
                        decode = (n_out - 1) / (times[-1] - times[0]) if n_out > 1 else 0.0
                        if before:
                            after = guesses(url)
                            key = f"t={temperature}"
                            g, k = accept.get(key, (0, 0))
                            accept[key] = (g + after[0] - before[0], k + after[1] - before[1])
                        print(f"  t={temperature} {name:20} {n_out:4} tokens, decode {decode:6.1f} tok/s", flush=True)
                        rows.append({"server": name, "temperature": temperature, "decode_tps": decode})
        for i in range(args.rounds):
            for name, run, url in in_turn(servers, i):
                crows.append(burst_row(name, run, url, args.streams, args.max_tokens))

    env = {"MISSIVE_PROMPT_LOOKUP": "off", "MISSIVE_DRAFT_TOKENS": str(n), "MISSIVE_DRAFT_MIN_P": str(p_min)}
    with_llama_server(args, slots, args.ctx * slots, lambda plain: with_llama_server(
        args, slots, args.ctx * slots, lambda spec: with_missive(
            args, slots, args.ctx, lambda off: with_missive(
                args, slots, args.ctx, lambda on: lanes([
                    ("missive", run_anthropic, off), ("missive+draft", run_anthropic, on),
                    ("llama-server", run_openai, plain), ("llama-server+draft", run_openai, spec)]),
                kv_layout="per_slot", extra_env=dict(env, MISSIVE_DRAFT_MODEL=args.draft)),
            kv_layout="per_slot", extra_env=env),
        extra=draft_args))

    def med(server, temperature):
        return statistics.median(r["decode_tps"] for r in rows if r["server"] == server and r["temperature"] == temperature)

    def cmed(server):
        return statistics.median(r["aggregate_tps"] for r in crows if r["server"] == server)

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    lines = [
        f"# Speculative decoding with a draft model ({datetime.date.today()})", "",
        f"Machine: {cpu}, {os.cpu_count()} cores; {args.threads} threads each; target "
        f"{os.path.basename(args.model)}, draft {os.path.basename(args.draft)}; commit {commit}. Four servers up at "
        f"once, taking turns, the order rotated per prompt: Missive without and with `draft_model` (draft_tokens {n}, "
        f"draft_min_p {p_min}, prompt lookup off in both), llama-server without and with `{' '.join(draft_args[:8])}`. "
        f"{len(PROMPTS)} code prompts, {args.max_tokens} output tokens, {args.rounds} rounds at each temperature; "
        f"{slots} slots each (Missive kv_layout per_slot, llama-server -np {slots}). Decode tokens/s from the first to "
        "the last streamed delta, medians; aggregate: tokens/s while all streams decode. "
        f"Flash attention `{args.flash_attention}` on all.", "",
        "| | missive | missive+draft | draft/plain | llama-server | llama-server+draft | missive+draft / llama-server+draft |",
        "|---|---|---|---|---|---|---|"]
    for temperature in (0.0, 0.7):
        m0, m1 = med("missive", temperature), med("missive+draft", temperature)
        l0, l1 = med("llama-server", temperature), med("llama-server+draft", temperature)
        lines.append(f"| decode tokens/s, temperature {temperature} | {m0:.1f} | {m1:.1f} | {m1 / m0:.2f}x | {l0:.1f} | "
                     f"{l1:.1f} | {m1 / l1:.2f}x |")
    m0, m1, l0, l1 = cmed("missive"), cmed("missive+draft"), cmed("llama-server"), cmed("llama-server+draft")
    lines.append(f"| aggregate decode tokens/s, {args.streams} streams | {m0:.1f} | {m1:.1f} | {m1 / m0:.2f}x | {l0:.1f} | "
                 f"{l1:.1f} | {m1 / l1:.2f}x |")
    lines.append("")
    for key, (g, k) in accept.items():
        lines.append(f"Missive's draft at {key}: {g:.0f} tokens proposed, {k:.0f} kept ({k / g if g else 0:.0%}).")
    suffix = "" if args.flash_attention == "auto" else f"-fa-{args.flash_attention}"
    write_report(args, f"spec{suffix}.md", lines)


if __name__ == "__main__":
    main()
