"""Stores and replicas under load. See bench/replicas."""

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import uuid

from peer import bench_http, free_port, load_arguments, wait_healthy, write_report

COUNT_BODY = json.dumps(
    {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "How many tokens is this sentence?"}]}
)
MOCK_MODEL = "claude-mock"
GATEWAY_BODY = json.dumps(
    {"model": MOCK_MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "Say hello."}]}
)
# Limits high enough never to refuse: the buckets still run on every request (in Redis,
# when it is configured).
LIMITS = """
[rate_limits]
requests_per_minute = 100000000
input_tokens_per_minute = 1000000000
output_tokens_per_minute = 1000000000
"""


def workers(replicas):
    """Async workers per replica: the host's cores shared among the replicas on it (at least
    one each), as docs/scaling.md advises."""
    return max(1, (os.cpu_count() or 1) // replicas)


class Deployment:
    """N replicas over one store: SQLite (N = 1) or a fresh PostgreSQL database and a Redis
    key prefix of their own."""

    def __init__(self, args, store, replicas=1, upstream=None):
        self.home = tempfile.mkdtemp(prefix=f"missive-replicas-{store}-")
        config = LIMITS
        if store == "postgres":
            database = "bench_" + uuid.uuid4().hex[:12]
            subprocess.run(["psql", args.postgres, "-qAt", "-c", f"CREATE DATABASE {database}"], check=True)
            url = args.postgres.rsplit("/", 1)[0] + "/" + database
            config += f'[store]\nurl = "{url}"\n[coordination]\nredis_url = "{args.redis}"\nkey_prefix = "{database}"\n'
        if upstream:
            config += f"""
[[models]]
name = "{MOCK_MODEL}"
upstreams = ["mock"]
[[upstreams]]
name = "mock"
kind = "openai"
url = "{upstream}/v1"
model = "mock"
"""
        path = os.path.join(self.home, "missive.toml")
        with open(path, "w") as f:
            f.write(config)
        self.procs, self.urls = [], []
        self.key = None
        for i in range(replicas):
            port = free_port()
            home = os.path.join(self.home, f"r{i + 1}")
            os.makedirs(home)
            env = dict(os.environ, MISSIVE_HOME=home, MISSIVE_CONFIG=path, MISSIVE_PORT=str(port),
                       MISSIVE_THREADS=str(args.threads), MISSIVE_LOG="warn", MISSIVE_REPLICA=f"r{i + 1}",
                       TOKIO_WORKER_THREADS=str(workers(replicas)))
            if not upstream:
                env["MISSIVE_MODEL"] = args.model
            if self.key is None:
                # A key in the store, as operators create them: every replica checks it.
                self.key = subprocess.run([args.missive, "keys", "create", "--workspace", "bench"], env=env,
                                          capture_output=True, text=True, check=True).stdout.strip()
            log = os.path.join(home, "serve.log")
            proc = subprocess.Popen([args.missive, "serve"], env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url, proc, log)
            self.procs.append(proc)
            self.urls.append(url)

    def stop(self):
        for proc in self.procs:
            proc.terminate()
            proc.wait()


def load(args, url, key, label, path, body, **mode):
    """`url`: one replica, or a list of them that the load spreads over round-robin."""
    urls = [url] if isinstance(url, str) else url
    headers = [f"x-api-key: {key}", "anthropic-version: 2023-06-01", "content-type: application/json"]
    return bench_http(args.missive, [u + path for u in urls], body, headers, args.seconds, label, **mode)


def saturate(args, deployment, label, path, body):
    """Every replica loaded at once, closed loop, by one load generator whose connections
    are spread over them round-robin (as a load balancer would): total requests/s."""
    connections = args.connections * len(deployment.urls)
    return load(args, deployment.urls, deployment.key, label, path, body, connections=connections)["rps"]


def main():
    p = load_arguments(argparse.ArgumentParser())
    p.add_argument("--postgres", required=True)
    p.add_argument("--redis", required=True)
    args = p.parse_args()

    # 1. One replica: SQLite against PostgreSQL + Redis, turns alternated.
    one = {"sqlite": [], "postgres": []}
    for round_no in range(1, args.rounds + 1):
        for store in (["sqlite", "postgres"] if round_no % 2 else ["postgres", "sqlite"]):
            d = Deployment(args, store)
            try:
                opened = load(args, d.urls[0], d.key, f"{store} open", "/v1/messages/count_tokens", COUNT_BODY,
                              rate=args.rate)
                closed = load(args, d.urls[0], d.key, f"{store} closed", "/v1/messages/count_tokens", COUNT_BODY,
                              connections=args.connections)
            finally:
                d.stop()
            one[store].append((opened, closed))

    def med(store, which, field):
        return statistics.median(r[which][field] for r in one[store])

    # 2. Saturation of three replicas over PostgreSQL + Redis, and 3. the gateway: one and
    # three replicas to an upstream that answers at once, with one replica on SQLite (the
    # single-machine store) beside them for how fast this machine is in this run. Every
    # round runs each once, in turn, the order reversed every other round.
    mock_port = free_port()
    mock_log = os.path.join(tempfile.mkdtemp(prefix="missive-mock-"), "log")
    mock = subprocess.Popen([args.missive, "bench", "mock-openai", "--port", str(mock_port)],
                            stdout=open(mock_log, "w"), stderr=subprocess.STDOUT)
    mock_url = f"http://127.0.0.1:{mock_port}"
    loads = [("count", "postgres", 3), ("gateway", "sqlite", 1), ("gateway", "postgres", 1),
             ("gateway", "postgres", 3)]
    saturation = {entry: [] for entry in loads}
    try:
        wait_healthy(mock_url, mock, mock_log)
        for round_no in range(1, args.rounds + 1):
            for entry in (loads if round_no % 2 else loads[::-1]):
                kind, store, replicas = entry
                gateway = kind == "gateway"
                d = Deployment(args, store, replicas=replicas, upstream=mock_url if gateway else None)
                try:
                    path, body = ("/v1/messages", GATEWAY_BODY) if gateway else (
                        "/v1/messages/count_tokens", COUNT_BODY)
                    saturation[entry].append(saturate(args, d, f"{kind} {store} x{replicas}", path, body))
                finally:
                    d.stop()
    finally:
        mock.terminate()
        mock.wait()

    def sat(entry):
        return statistics.median(saturation[entry])

    def each(entry):
        return ", ".join(f"{rps:,.0f}" for rps in saturation[entry])

    lines = [
        "# Replicas: SQLite vs PostgreSQL + Redis, and 1 vs 3 replicas",
        "",
        f"Missive release build, {args.threads} engine threads and {workers(1)} async workers per replica "
        f"({workers(3)} each when three share the machine), all on this 2-core machine with the load "
        "generator (`missive bench http`, its connections spread over the replicas round-robin), PostgreSQL "
        "and Redis (Debian's packages, loopback, fsync on). Governance load: `count_tokens` with a key from the store, rate limits (in Redis when "
        "configured) and a ledger row committed before each response. "
        f"{args.rounds} rounds, stores alternated; {args.seconds:.0f} s per load. Medians.",
        "",
        "| load | metric | SQLite | PostgreSQL + Redis | ratio |",
        "|---|---|---|---|---|",
    ]
    for which, name in ((0, f"open loop, {args.rate} req/s"), (1, f"closed loop, {args.connections} connections")):
        for field, label in (("rps", "requests/s"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms")):
            a, b = med("sqlite", which, field), med("postgres", which, field)
            lines.append(f"| {name} | {label} | {a:.2f} | {b:.2f} | {b / a:.3f}x |")
    added = med("postgres", 0, "p99_ms") - med("sqlite", 0, "p99_ms")
    one_rps = med("postgres", 1, "rps")

    def rounds(store, field):
        return ", ".join(f"{r[0][field]:.2f}" for r in one[store])

    lines += [
        "",
        f"Added p99 at {args.rate} req/s: {added:+.2f} ms (target: under 2 ms). Each round's p99 at "
        f"{args.rate} req/s, in ms: SQLite {rounds('sqlite', 'p99_ms')}; PostgreSQL + Redis "
        f"{rounds('postgres', 'p99_ms')}. Each round's slowest request: SQLite {rounds('sqlite', 'max_ms')}; "
        f"PostgreSQL + Redis {rounds('postgres', 'max_ms')}.",
        "",
        "| saturation, closed loop | 1 replica | 3 replicas |",
        "|---|---|---|",
        f"| `count_tokens`, PostgreSQL + Redis | {one_rps:,.0f} req/s | {sat(loads[0]):,.0f} req/s |",
        f"| `/v1/messages` to the mock upstream, PostgreSQL + Redis | {sat(loads[2]):,.0f} req/s | "
        f"{sat(loads[3]):,.0f} req/s |",
        f"| `/v1/messages` to the mock upstream, SQLite (one machine) | {sat(loads[1]):,.0f} req/s | |",
        "",
        f"{args.connections} connections per replica; medians of {args.rounds} rounds. Each round, "
        f"in requests/s: the gateway through three replicas {each(loads[3])}; one replica on PostgreSQL + "
        f"Redis {each(loads[2])}; one on SQLite {each(loads[1])}; `count_tokens` through three replicas "
        f"{each(loads[0])}.",
        "",
        "Target for the gateway through three replicas: at least 5,000 requests/s in total. Three replicas "
        f"over PostgreSQL + Redis reach {sat(loads[3]) / sat(loads[1]):.2f}x of one replica on SQLite in "
        "this run.",
    ]
    write_report(args, "replicas.md", lines)


if __name__ == "__main__":
    main()
