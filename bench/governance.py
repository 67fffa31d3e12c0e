"""Governance overhead on a cheap endpoint. See bench/governance."""

import argparse
import json
import os
import statistics
import subprocess
import tempfile

from peer import bench_http, free_port, load_arguments, wait_healthy, write_report

BODY = json.dumps(
    {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "How many tokens is this sentence?"}]}
)
# Limits high enough never to refuse: the buckets still run on every request.
CONFIG = """
[rate_limits]
requests_per_minute = 100000000
input_tokens_per_minute = 100000000
output_tokens_per_minute = 100000000
"""


def start(args, governed):
    home = tempfile.mkdtemp(prefix="missive-governance-")
    port = free_port()
    config = os.path.join(home, "missive.toml")
    with open(config, "w") as f:
        f.write(CONFIG)
    env = dict(
        os.environ,
        MISSIVE_HOME=home,
        MISSIVE_MODEL=args.model,
        MISSIVE_PORT=str(port),
        MISSIVE_CONFIG=config,
        MISSIVE_THREADS=str(args.threads),
        MISSIVE_GOVERNANCE="on" if governed else "off",
        MISSIVE_LOG="warn",
    )
    key = ""
    if governed:
        # A key in the store, as operators create them: auth looks it up on every request.
        key = subprocess.run(
            [args.missive, "keys", "create", "--workspace", "bench"], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
    log = os.path.join(home, "serve.log")
    proc = subprocess.Popen([args.missive, "serve"], env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc, log)
    return proc, url, key, home


def load(args, url, key, label, **mode):
    headers = [f"x-api-key: {key}", "anthropic-version: 2023-06-01"]
    return bench_http(args.missive, f"{url}/v1/messages/count_tokens", BODY, headers, args.seconds, label, **mode)


def ledger_rows(home):
    import sqlite3

    with sqlite3.connect(os.path.join(home, "missive.db")) as db:
        return db.execute("SELECT count(*) FROM usage_ledger").fetchone()[0]


def main():
    p = load_arguments(argparse.ArgumentParser())
    args = p.parse_args()

    results = {True: [], False: []}
    for round_no in range(1, args.rounds + 1):
        # Alternate which side goes first, so drift on a shared machine hits both alike.
        for governed in ([False, True] if round_no % 2 else [True, False]):
            proc, url, key, home = start(args, governed)
            try:
                side = "on" if governed else "off"
                closed = load(args, url, key, f"{side} closed", connections=args.connections)
                opened = load(args, url, key, f"{side} open", rate=args.rate)
                rows = ledger_rows(home) if governed else 0
            finally:
                proc.terminate()
                proc.wait()
            print(json.dumps(closed), json.dumps(opened), f"ledger rows {rows}", flush=True)
            results[governed].append((closed, opened, rows))

    def med(governed, which, field):
        return statistics.median(r[which][field] for r in results[governed])

    lines = [
        "# Governance overhead: `count_tokens`, auth + rate limits + ledger on vs off",
        "",
        f"Missive release build, default model, {args.threads} threads, {args.rounds} rounds alternating; "
        f"each load {args.seconds:.0f} s after 2 s warm-up (`missive bench http`, one client thread on the same machine). "
        "On: a key from the store (cached; the store's control generation re-read every 2 ms), per-workspace token buckets, the kill-switch check, and a ledger row "
        "committed (group commit) before each response. Off: `MISSIVE_GOVERNANCE=off`. Medians.",
        "",
        "| load | metric | off | on | on/off |",
        "|---|---|---|---|---|",
    ]
    for which, name in ((0, f"closed loop, {args.connections} connections"), (1, f"open loop, {args.rate} req/s")):
        for field, label in (("rps", "requests/s"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms")):
            off, on = med(False, which, field), med(True, which, field)
            lines.append(f"| {name} | {label} | {off:.2f} | {on:.2f} | {on / off:.3f}x |")
    rows = [r[2] for r in results[True]]
    lines += [
        "",
        f"Ledger rows written per governed run: {rows} (every answered request, committed before its response).",
        "Target: governance costs under 10% (throughput ratio >= 0.90x, p99 ratio <= 1.10x at 1,000 requests/s).",
    ]
    write_report(args, "governance.md", lines)


if __name__ == "__main__":
    main()
