"""The first turn of bench/trace (a ~20k-token system prompt and tools) after a restart: Missive
with its disk prefix cache against llama-server, which starts cold. See bench/restart."""

import datetime
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from peer import free_port, start, stop, write_report  # noqa: E402
from peer import ADMIN_KEY  # noqa: E402
from trace import REQUESTS, system_prompt, turn_anthropic, turn_openai  # noqa: E402


def missive(args, home, port):
    env = dict(os.environ, MISSIVE_HOME=home, MISSIVE_MODEL=args.model, MISSIVE_API_KEY="bench-key",
               MISSIVE_ADMIN_KEY=ADMIN_KEY, MISSIVE_PORT=str(port), MISSIVE_THREADS=str(args.threads),
               MISSIVE_CONTEXT_SIZE=str(args.ctx), MISSIVE_PARALLEL="1")
    return start([args.missive, "serve"], env, f"http://127.0.0.1:{port}", "missive")


def llama_server(args, port):
    return start([args.llama_server, "-m", args.model, "--port", str(port), "--ctx-size", str(args.ctx),
                  "--", "-t", str(args.threads), "-tb", str(args.threads), "-np", "1"],
                 os.environ, f"http://127.0.0.1:{port}", "llama")


def main():
    from peer import server_args
    p = server_args(24576)
    p.add_argument("--repeats", type=int, default=300, help="guide paragraphs (300: ~20k tokens)")
    p.add_argument("--max-tokens", type=int, default=8)
    args = p.parse_args()
    system = system_prompt(args.repeats)
    first = [{"role": "user", "content": REQUESTS[0]}]
    other = [{"role": "user", "content": REQUESTS[1]}]
    rows = []

    def turn(label, fn, url, history):
        ttft, total, _, usage = fn(url, system, history, args.max_tokens)
        ttft = ttft or total
        print(f"  {label}: ttft {ttft:.2f} s {usage}", flush=True)
        rows.append((label, ttft, usage))

    home = tempfile.mkdtemp(prefix="missive-bench-restart-")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = missive(args, home, port)
    try:
        turn("missive, cold", turn_anthropic, url, first)
        # SIGKILL, not a clean stop: what is on disk must already be complete.
        proc.kill()
        proc.wait()
        proc = missive(args, home, port)
        turn("missive, after a restart (kill -9)", turn_anthropic, url, first)
        proc.kill()
        proc.wait()
        proc = missive(args, home, port)
        turn("missive, a new session sharing the prefix, after a restart", turn_anthropic, url, other)
    finally:
        stop(proc)
    lport = free_port()
    lurl = f"http://127.0.0.1:{lport}"
    # llama-server keeps no prefix across a restart: its first turn after one is a cold one.
    proc = llama_server(args, lport)
    try:
        turn("llama-server, cold (= after a restart)", turn_openai, lurl, first)
    finally:
        stop(proc)

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    cache = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(os.path.join(home, "kv-cache")) for f in fs)
    lines = [f"# First turn after a restart ({datetime.date.today()})", "",
             f"bench/trace's first turn ({args.repeats} guide paragraphs and 5 tools, `cache_control` on the system "
             f"prompt and the request), {args.max_tokens} output tokens, {args.threads} threads, ctx {args.ctx}, 1 "
             f"slot, model {os.path.basename(args.model)}, commit {commit}. Missive is killed with SIGKILL between "
             f"turns and started again on the same MISSIVE_HOME; its disk cache held {cache / 2**20:.0f} MiB at the "
             "end. llama-server keeps nothing across a restart, so its cold turn is its turn after one.", "",
             "| turn | time to first token (s) | cache read | cache written | uncached |", "|---|---|---|---|---|"]
    for label, ttft, usage in rows:
        lines.append(f"| {label} | {ttft:.2f} | {usage.get('cache_read_input_tokens', '')} | "
                     f"{usage.get('cache_creation_input_tokens', '')} | {usage.get('input_tokens', '')} |")
    restarted = rows[1][1]
    peer = rows[-1][1]
    lines += ["", f"After a restart: Missive {restarted:.2f} s, llama-server {peer:.2f} s ({peer / restarted:.0f}x)."]
    write_report(args, "restart.md", lines)


if __name__ == "__main__":
    main()
