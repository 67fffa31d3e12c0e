"""Governance overhead on a cheap endpoint. See bench/governance."""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile

from peer import bench_http, free_port, load_arguments, wait_healthy, write_report

BODY = json.dumps(
    {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "How many tokens is this sentence?"}]}
)
ADMIN_KEY = "sk-ant-admin01-governance-bench"
# Limits high enough never to refuse: the buckets still run on every request.
CONFIG = """
[rate_limits]
requests_per_minute = 100000000
input_tokens_per_minute = 100000000
output_tokens_per_minute = 100000000
"""


def start(args, governed, console=False):
    home = tempfile.mkdtemp(prefix="missive-governance-")
    port = free_port()
    config = os.path.join(home, "missive.toml")
    with open(config, "w") as f:
        f.write(CONFIG + f"\n[console]\nenabled = {'true' if console else 'false'}\n")
    env = dict(
        os.environ,
        MISSIVE_HOME=home,
        MISSIVE_MODEL=args.model,
        MISSIVE_PORT=str(port),
        MISSIVE_CONFIG=config,
        MISSIVE_THREADS=str(args.threads),
        MISSIVE_GOVERNANCE="on" if governed else "off",
        MISSIVE_LOG="warn",
        MISSIVE_ADMIN_KEY=ADMIN_KEY,
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


class Operator:
    """A signed-in console session reading the overview and the request log once a
    second, as an operator watching traffic would, for as long as it runs."""

    def __init__(self, url):
        import threading

        import httpx

        self.http = httpx.Client(base_url=url, timeout=30)
        self.http.post("/console/session", json={"key": ADMIN_KEY}).raise_for_status()
        self.reads = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.wait(1.0):
            for path in ("/console/api/usage", "/console/api/requests?limit=200"):
                self.http.get(path).raise_for_status()
                self.reads += 1

    def close(self):
        self.stop.set()
        self.thread.join()
        return self.reads


def alternate(args, measure):
    """Runs `measure(side)` for both sides `args.rounds` times, alternating which goes first
    so drift on a shared machine hits both alike. `measure` returns (closed, opened, extra)."""
    results = {True: [], False: []}
    for round_no in range(1, args.rounds + 1):
        for side in [False, True] if round_no % 2 else [True, False]:
            results[side].append(measure(side))
    return results


def stop(proc, home):
    proc.terminate()
    proc.wait()
    shutil.rmtree(home, ignore_errors=True)


def ratio_table(args, results, off_name, on_name):
    """The median of each load and metric on both sides, and their ratio."""

    def med(side, which, field):
        return statistics.median(r[which][field] for r in results[side])

    lines = [f"| load | metric | {off_name} | {on_name} | on/off |", "|---|---|---|---|---|"]
    for which, name in ((0, f"closed loop, {args.connections} connections"), (1, f"open loop, {args.rate} req/s")):
        for field, label in (("rps", "requests/s"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms")):
            off, on = med(False, which, field), med(True, which, field)
            lines.append(f"| {name} | {label} | {off:.2f} | {on:.2f} | {on / off:.3f}x |")
    return lines


def console_main(args):
    """Governance on both sides; the console off on one, on (and watched) on the other."""

    def measure(console):
        proc, url, key, home = start(args, True, console=console)
        try:
            operator = Operator(url) if console else None
            side = "console" if console else "no console"
            closed = load(args, url, key, f"{side} closed", connections=args.connections)
            opened = load(args, url, key, f"{side} open", rate=args.rate)
            reads = operator.close() if operator else 0
        finally:
            stop(proc, home)
        print(json.dumps(closed), json.dumps(opened), f"console reads {reads}", flush=True)
        return closed, opened, reads

    results = alternate(args, measure)
    lines = [
        "# The console's cost to the API: `count_tokens`, governance on, console off vs on",
        "",
        f"Missive release build, default model, {args.threads} threads, {args.rounds} rounds alternating; "
        f"each load {args.seconds:.0f} s after 2 s warm-up (`missive bench http`, one client thread on the same machine). "
        "Both sides govern (a stored key, rate limits, the ledger). Off: `[console] enabled = false`. "
        "On: the console served, and a signed-in session reading the overview and the request log (200 rows) "
        "once a second throughout. Medians.",
        "",
        *ratio_table(args, results, "console off", "console on"),
        "",
        f"Console reads per run with the console on: {[r[2] for r in results[True]]}.",
        "Target: nothing measurable (p99 ratio within run-to-run noise at 1,000 requests/s).",
    ]
    write_report(args, "console.md", lines)


def main():
    p = load_arguments(argparse.ArgumentParser())
    p.add_argument("--console", action="store_true", help="compare the console off and on, governance on both sides")
    args = p.parse_args()
    if args.console:
        console_main(args)
        return

    def measure(governed):
        proc, url, key, home = start(args, governed)
        try:
            side = "on" if governed else "off"
            closed = load(args, url, key, f"{side} closed", connections=args.connections)
            opened = load(args, url, key, f"{side} open", rate=args.rate)
            rows = ledger_rows(home) if governed else 0
        finally:
            stop(proc, home)
        print(json.dumps(closed), json.dumps(opened), f"ledger rows {rows}", flush=True)
        return closed, opened, rows

    results = alternate(args, measure)
    lines = [
        "# Governance overhead: `count_tokens`, auth + rate limits + ledger on vs off",
        "",
        f"Missive release build, default model, {args.threads} threads, {args.rounds} rounds alternating; "
        f"each load {args.seconds:.0f} s after 2 s warm-up (`missive bench http`, one client thread on the same machine). "
        "On: a key from the store (cached; the store's control generation re-read every 2 ms), per-workspace token buckets, the kill-switch check, and a ledger row "
        "committed (group commit) before each response. Off: `MISSIVE_GOVERNANCE=off`. Medians.",
        "",
        *ratio_table(args, results, "off", "on"),
        "",
        f"Ledger rows written per governed run: {[r[2] for r in results[True]]} (every answered request, committed before its response).",
        "Target: governance costs under 10% (throughput ratio >= 0.90x, p99 ratio <= 1.10x at 1,000 requests/s).",
    ]
    write_report(args, "governance.md", lines)


if __name__ == "__main__":
    main()
