"""Prompt-lookup decoding, side by side: Missive with and without it, and llama-server with and
without its own n-gram speculation, all up at once and taking turns. See bench/lookup."""

import datetime
import inspect
import os
import platform
import shlex
import statistics
import subprocess
import sys


sys.path.insert(0, os.path.dirname(__file__))
from peer import guesses, in_turn, run_anthropic, run_openai, server_args, with_llama_server, with_missive, write_report  # noqa: E402

SYSTEM = "You are a careful coding assistant."


def source_file(lines=300):
    """The first 300 lines of the standard library's shlex module: real code, the same on
    every machine with this Python."""
    return "".join(inspect.getsourcelines(shlex)[0][:lines])


def edit_prompt():
    """The file and the task, and the reply's first lines as a prefill (both servers continue
    a final assistant message): without it, a 0.5B model describes the change instead."""
    src = source_file()
    ask = ("Here is a file:\n\n```python\n" + src + "```\n\nReturn the whole file, every line from the "
           "first to the last, with the method push_token renamed to push_back_token and nothing else changed.")
    return [{"role": "user", "content": ask},
            {"role": "assistant", "content": "```python\n" + "\n".join(src.splitlines()[:3])}]


NO_COPY = "Write a haiku about autumn rain."


def measure(lane, run, url, prompt, max_tokens):
    missive = "missive" in lane
    before = guesses(url) if missive else (0, 0)
    t0, times, _, n_out = run(url, SYSTEM, prompt, max_tokens)
    decode = (n_out - 1) / (times[-1] - times[0]) if n_out > 1 and times[-1] > times[0] else 0.0
    after = guesses(url) if missive else (0, 0)
    guessed, kept = after[0] - before[0], after[1] - before[1]
    print(f"  {lane:28} {n_out:5} tokens, decode {decode:6.1f} tok/s, guessed {guessed:.0f} kept {kept:.0f}", flush=True)
    return {"lane": lane, "output_tokens": n_out, "decode_tps": decode, "guessed": guessed, "kept": kept}


def main():
    p = server_args(8192)
    p.add_argument("--rounds", type=int, default=2, help="turns per lane on the edit task")
    p.add_argument("--haiku-rounds", type=int, default=8)
    p.add_argument("--draft-tokens", type=int, default=16)
    args = p.parse_args()
    n = args.draft_tokens
    # llama-server's simplest n-gram speculation, with Missive's shortest match and draft length.
    ngram = ["--spec-type", "ngram-simple", "--spec-ngram-simple-size-n", "3", "--spec-ngram-simple-size-m", str(n)]
    rows = []

    def lanes(servers):
        for prompt, max_tokens, rounds, task in ((edit_prompt(), 4096, args.rounds, "edit"),
                                                 (NO_COPY, 400, args.haiku_rounds, "haiku")):
            for name, run, url in servers:  # warm-up: the prompt's prefix cached everywhere
                run(url, SYSTEM, prompt, 4)
            for i in range(rounds):
                for name, run, url in in_turn(servers, i):
                    rows.append(dict(measure(f"{task}: {name}", run, url, prompt, max_tokens), task=task, server=name))

    with_llama_server(args, 1, args.ctx, lambda plain: with_llama_server(
        args, 1, args.ctx, lambda spec: with_missive(
            args, 1, args.ctx, lambda off: with_missive(
                args, 1, args.ctx, lambda on: lanes([
                    ("missive", run_anthropic, off), ("missive+lookup", run_anthropic, on),
                    ("llama-server", run_openai, plain), ("llama-server+ngram", run_openai, spec)]),
                extra_env={"MISSIVE_PROMPT_LOOKUP": "on", "MISSIVE_DRAFT_TOKENS": str(n)}),
            extra_env={"MISSIVE_PROMPT_LOOKUP": "off"}),
        extra=ngram))

    def med(task, server, key="decode_tps"):
        return statistics.median(r[key] for r in rows if r["task"] == task and r["server"] == server)

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    lines = [
        f"# Prompt-lookup decoding ({datetime.date.today()})",
        "",
        f"Machine: {cpu}, {os.cpu_count()} cores; {args.threads} threads each; ctx {args.ctx}; model "
        f"{os.path.basename(args.model)}; commit {commit}; greedy; one stream. Four servers up at once, "
        f"taking turns, the order flipped each round: Missive with prompt lookup off and on "
        f"(draft_tokens {n}), llama-server plain and with `{' '.join(ngram)}`. Edit task: the first 300 "
        f"lines of Python {platform.python_version()}'s shlex.py, returned with one method renamed, its first "
        f"three lines prefilled ({args.rounds} rounds); no-copy task: a haiku "
        f"({args.haiku_rounds} rounds). Decode tokens/s from the first to the last streamed delta, medians. "
        f"Flash attention `{args.flash_attention}` on all.",
        "",
        "| task | missive | missive+lookup | lookup/plain | llama-server | llama-server+ngram | missive+lookup / llama-server+ngram |",
        "|---|---|---|---|---|---|---|",
    ]
    for task in ("edit", "haiku"):
        m0, m1 = med(task, "missive"), med(task, "missive+lookup")
        l0, l1 = med(task, "llama-server"), med(task, "llama-server+ngram")
        lines.append(f"| {task} ({med(task, 'missive+lookup', 'output_tokens'):.0f} tokens) | {m0:.1f} | {m1:.1f} | "
                     f"{m1 / m0:.2f}x | {l0:.1f} | {l1:.1f} | {m1 / l1:.2f}x |")
    for task in ("edit", "haiku"):
        picked = [r for r in rows if r["task"] == task and r["server"] == "missive+lookup"]
        guessed, kept = sum(r["guessed"] for r in picked), sum(r["kept"] for r in picked)
        out = sum(r["output_tokens"] for r in picked)
        lines.append(f"\n{task}: Missive guessed {guessed:.0f} tokens and kept {kept:.0f} "
                     f"({kept / guessed if guessed else 0:.0%}); {kept / out if out else 0:.0%} of the output came from kept guesses.")
    suffix = "" if args.flash_attention == "auto" else f"-fa-{args.flash_attention}"
    write_report(args, f"lookup{suffix}.md", lines)


if __name__ == "__main__":
    main()
