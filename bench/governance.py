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


def alternate(args, measure, sides=(False, True)):
    """Runs `measure(side)` for every side `args.rounds` times, rotating which goes first so
    drift on a shared machine hits all alike. `measure` returns (closed, opened, extra)."""
    results = {side: [] for side in sides}
    for round_no in range(args.rounds):
        turn = round_no % len(sides)
        for side in sides[turn:] + sides[:turn]:
            results[side].append(measure(side))
    return results


def stop(proc, home):
    proc.terminate()
    proc.wait()
    shutil.rmtree(home, ignore_errors=True)


def ratio_table(args, results, names):
    """The median of each load and metric on every side, and each side's ratio to the first
    (`names`: side -> column title, the baseline first)."""

    def med(side, which, field):
        return statistics.median(r[which][field] for r in results[side])

    base, *others = names
    header = " | ".join(names.values())
    ratios = " | ".join(f"{names[o]}/{names[base]}" for o in others)
    lines = [f"| load | metric | {header} | {ratios} |", "|---|---|" + "---|" * (len(names) + len(others))]
    for which, name in ((0, f"closed loop, {args.connections} connections"), (1, f"open loop, {args.rate} req/s")):
        for field, label in (("rps", "requests/s"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms")):
            values = [med(side, which, field) for side in names]
            cells = " | ".join(f"{v:.2f}" for v in values)
            rel = " | ".join(f"{v / values[0]:.3f}x" for v in values[1:])
            lines.append(f"| {name} | {label} | {cells} | {rel} |")
    return lines


def spread(results, side, which, field):
    """Each round's figure, to show the run-to-run noise the ratios sit in."""
    return ", ".join(f"{r[which][field]:.2f}" for r in results[side])


def console_main(args):
    """Governance on every side: the console off; on with nobody signed in; on and watched."""
    names = {"off": "console off", "on": "console on", "watched": "on, watched"}

    def measure(side):
        proc, url, key, home = start(args, True, console=side != "off")
        try:
            operator = Operator(url) if side == "watched" else None
            closed = load(args, url, key, f"{side} closed", connections=args.connections)
            opened = load(args, url, key, f"{side} open", rate=args.rate)
            reads = operator.close() if operator else 0
        finally:
            stop(proc, home)
        print(json.dumps(closed), json.dumps(opened), f"console reads {reads}", flush=True)
        return closed, opened, reads

    results = alternate(args, measure, sides=tuple(names))
    lines = [
        "# The console's cost to the API: `count_tokens`, governance on, console off vs on",
        "",
        f"Missive release build, default model, {args.threads} threads, {args.rounds} rounds rotating the order; "
        f"each load {args.seconds:.0f} s after 2 s warm-up (`missive bench http`, one client thread on the same machine). "
        "Every side governs (a stored key, rate limits, the ledger). Off: `[console] enabled = false`. "
        "On: the console served and every request written to its request log, nobody signed in. "
        "Watched: as on, and a signed-in session reading the overview and the request log (200 rows) "
        "once a second throughout, on the same two cores. Medians.",
        "",
        *ratio_table(args, results, names),
        "",
        f"p99 ms at {args.rate} req/s, each round (run-to-run noise): "
        + "; ".join(f"{names[side]}: {spread(results, side, 1, 'p99_ms')}" for side in names) + ".",
        f"Console reads per watched run: {[r[2] for r in results['watched']]}.",
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
        *ratio_table(args, results, {False: "off", True: "on"}),
        "",
        f"Ledger rows written per governed run: {[r[2] for r in results[True]]} (every answered request, committed before its response).",
        "Target: governance costs under 10% (throughput ratio >= 0.90x, p99 ratio <= 1.10x at 1,000 requests/s).",
    ]
    write_report(args, "governance.md", lines)


if __name__ == "__main__":
    main()
