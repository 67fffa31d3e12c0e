"""A burst of concurrent streams, side by side with llama-server. See bench/load."""

import json
import os
import statistics
import tempfile
import threading
import time

import anthropic
import httpx

from peer import free_port, in_turn, server_args, start, stop, with_both, write_report

MODEL = "claude-haiku-4-5"


def percentile(values, p):
    values = sorted(values)
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def ask(i):
    return f"Request {i}: name one colour."


def burst(n, one):
    """Runs one(i) for i < n, all released at once; returns the results in order."""
    results = [None] * n
    gate = threading.Barrier(n)

    def run(i):
        gate.wait()
        try:
            results[i] = one(i)
        except Exception as err:  # noqa: BLE001 - a bench counts every failure, whatever it is
            results[i] = (None, f"{type(err).__name__}: {err}")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, time.perf_counter() - started


def sdk_stream(url, max_tokens):
    """One stream through the official SDK with its default retries; (ttft, error)."""
    client = anthropic.Anthropic(base_url=url, api_key="bench-key", timeout=600)

    def one(i):
        sent = time.perf_counter()
        try:
            # SDK 2.x takes sampling parameters in extra_body.
            with client.messages.stream(model=MODEL, max_tokens=max_tokens, extra_body={"temperature": 0},
                                        messages=[{"role": "user", "content": ask(i)}]) as stream:
                ttft = None
                for _ in stream.text_stream:
                    if ttft is None:
                        ttft = time.perf_counter() - sent
                stream.get_final_message()
            return ttft if ttft is not None else time.perf_counter() - sent, None
        except anthropic.APIError as err:
            return None, type(err).__name__

    return one


def llama_stream(url, max_tokens):
    client = httpx.Client(timeout=600, limits=httpx.Limits(max_connections=1000))

    def one(i):
        sent = time.perf_counter()
        body = {"model": "m", "max_tokens": max_tokens, "temperature": 0, "stream": True,
                "messages": [{"role": "user", "content": ask(i)}]}
        try:
            with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
                if response.status_code != 200:
                    return None, f"HTTP {response.status_code}"
                ttft = None
                for line in response.iter_lines():
                    if ttft is None and line.startswith("data:") and '"content"' in line:
                        ttft = time.perf_counter() - sent
            return ttft if ttft is not None else time.perf_counter() - sent, None
        except httpx.HTTPError as err:
            return None, type(err).__name__

    return one


def summarise(name, results, elapsed):
    ttfts = [t for t, e in results if e is None]
    errors = [e for _, e in results if e is not None]
    return {"name": name, "ok": len(ttfts), "errors": len(errors), "kinds": sorted(set(errors)),
            "p50": statistics.median(ttfts) if ttfts else float("nan"), "p99": percentile(ttfts, 99),
            "elapsed": elapsed}


def raw_retry_after(url, n, max_tokens):
    """Raw HTTP, a client that does what retry-after says: on a 529 it sleeps that long and
    tries again. For each refused request: the first retry-after against the time from that
    refusal until it was let in."""
    client = httpx.Client(timeout=600, limits=httpx.Limits(max_connections=1000))
    headers = {"x-api-key": "bench-key", "anthropic-version": "2023-06-01"}

    def one(i):
        body = {"model": MODEL, "max_tokens": max_tokens, "temperature": 0, "stream": True,
                "messages": [{"role": "user", "content": ask(i)}]}
        refused = None
        tries = 0
        while True:
            tries += 1
            with client.stream("POST", f"{url}/v1/messages", json=body, headers=headers) as response:
                if response.status_code == 529:
                    retry_after = float(response.headers["retry-after"])
                    if refused is None:
                        refused = (time.perf_counter(), retry_after)
                    response.read()
                else:
                    assert response.status_code == 200, response.status_code
                    admitted = time.perf_counter()
                    for _ in response.iter_lines():
                        pass
                    if refused is None:
                        return None
                    return refused[1], admitted - refused[0], tries
            time.sleep(retry_after)

    results, elapsed = burst(n, one)
    failed = [r[1] for r in results if r is not None and r[0] is None]
    if failed:
        raise SystemExit(f"{len(failed)} raw requests failed: {failed[:3]}")
    return [r for r in results if r is not None], elapsed


def main():
    p = server_args(1024)
    p.add_argument("--slots", type=int, default=8)
    p.add_argument("--streams", type=int, default=200)
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--max-queue-wait", type=float, default=4.0,
                   help="Missive's max_queue_wait_s in the raw-HTTP phase, low enough to refuse")
    p.add_argument("--raw-only", action="store_true", help="skip the side-by-side SDK bursts")
    args = p.parse_args()

    rows = []

    labels = {"llama-server": "llama-server", "missive": "missive (SDK, default retries)"}

    def side_by_side(servers):
        servers = [(labels[name], stream(url, args.max_tokens)) for name, stream, url in servers]
        for turn in range(2):
            for name, one in in_turn(servers, turn):
                print(f"burst {turn + 1}: {name}", flush=True)
                results, elapsed = burst(args.streams, one)
                rows.append(summarise(name, results, elapsed))

    if not args.raw_only:
        with_both(args, args.slots, args.ctx, (llama_stream, sdk_stream), side_by_side, kv_layout="per_slot")

    waits = raw_phase(args)

    lines = [f"# Load: {args.streams} concurrent streams, {args.slots} slots, max_tokens {args.max_tokens}", "",
             "Each burst releases every stream at once (a barrier); bursts alternate between the servers, "
             "order flipped in the second round. Missive is driven by the official Python SDK with its "
             "default retries (which honour `retry-after`); llama-server by raw HTTP on its OpenAI route.", "",
             "| server | ok | errors | TTFT p50 s | TTFT p99 s | all done s |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['ok']} | {r['errors']} {' '.join(r['kinds'])} | {r['p50']:.2f} | "
                     f"{r['p99']:.2f} | {r['elapsed']:.1f} |")
    m = [r for r in rows if r["name"].startswith("missive")]
    l = [r for r in rows if r["name"] == "llama-server"]
    if m and l:
        ratio = lambda k: statistics.median(x[k] for x in m) / statistics.median(x[k] for x in l)
        lines += ["", f"Missive / llama-server: TTFT p50 {ratio('p50'):.2f}x, p99 {ratio('p99'):.2f}x, "
                      f"all done {ratio('elapsed'):.2f}x (medians of the bursts; lower is faster)."]
    waits, raw_elapsed = waits
    within = [w for w in waits if w[0] / 2 <= w[1] <= 2 * w[0]]
    again = [w for w in waits if w[2] > 2]
    sdk_elapsed = statistics.median(x["elapsed"] for x in m) if m else float("nan")
    lines += ["", f"## Raw HTTP, `max_queue_wait_s = {args.max_queue_wait}`", "",
              f"The same burst of {args.streams} streams from a client that sleeps what `retry-after` says "
              "and tries again (as the SDKs do), after a warm-up that gives the server a rate.", "",
              f"- {len(waits)} requests got a 529; {len(within)} of them were let in within 2x of their first "
              f"`retry-after` (between half and twice it); {len(again)} were refused a second time.",
              f"- All done in {raw_elapsed:.1f} s, against {sdk_elapsed:.1f} s for the same burst queued whole "
              "above (the default 30 s bound): refused requests are sent back for when the queue has drained "
              "to half the bound, so with a bound this low the slots run less full while they return.", ""]
    if waits:
        ratios = sorted(actual / advertised for advertised, actual, _ in waits)
        lines.append(f"Time until let in / first retry-after: min {ratios[0]:.2f}, median "
                     f"{statistics.median(ratios):.2f}, max {ratios[-1]:.2f}.")
    write_report(args, "load.md", lines)
    with open(os.path.join(args.out or os.path.join("bench", "runs", time.strftime("%Y-%m-%d") + "-vm"),
                           "load.json"), "w") as f:
        json.dump({"bursts": rows, "retry_after_actual_tries": waits, "raw_elapsed": raw_elapsed}, f)
    bad = sum(r["errors"] for r in m)
    if bad or len(within) != len(waits):
        raise SystemExit(f"{bad} SDK errors; {len(waits) - len(within)} retry-after values off by more than 2x")


def raw_phase(args):
    """Missive alone with a low max_queue_wait, so that a burst is partly refused."""
    home = tempfile.mkdtemp(prefix="missive-load-")
    port = free_port()
    config = os.path.join(home, "missive.toml")
    with open(config, "w") as f:
        f.write(f'[[models]]\nname = "default"\nsource = "{args.model}"\ncontext_size = {args.ctx}\n'
                f'parallel = {args.slots}\nkv_layout = "per_slot"\nmax_queue_wait_s = {args.max_queue_wait}\n'
                f'threads = {args.threads}\n[aliases]\n"claude-*" = "default"\n')
    env = dict(os.environ, MISSIVE_HOME=home, MISSIVE_API_KEY="bench-key", MISSIVE_PORT=str(port),
               MISSIVE_CONFIG=config, MISSIVE_LOG="warn")
    url = f"http://127.0.0.1:{port}"
    proc = start([args.missive, "serve"], env, url, "missive-raw")
    try:
        # Warm up: the wait is estimated from the rate at which requests have been finishing.
        burst(args.slots * 2, sdk_stream(url, args.max_tokens))
        return raw_retry_after(url, args.streams, args.max_tokens)
    finally:
        stop(proc)


if __name__ == "__main__":
    main()
