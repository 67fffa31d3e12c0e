"""Gateway overhead: direct vs Missive vs LiteLLM over a mock upstream. See bench/gateway."""

import argparse
import json
import os
import subprocess
import tempfile
import time
import urllib.request

from peer import bench_http, free_port, write_report

KEY = "sk-ant-api03-bench-gateway"
# LiteLLM refuses to start without one; both gateways then authenticate every request.
LITELLM_KEY = "sk-litellm-bench-gateway-0123456789abcdef"
MODEL = "claude-mock"


def wait(url, proc, log, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url} exited: {open(log).read()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except Exception:
            time.sleep(0.3)
    raise SystemExit(f"{url} did not come up")


def start(cmd, env, health, name):
    log = os.path.join(tempfile.mkdtemp(prefix=f"gw-{name}-"), "log")
    proc = subprocess.Popen(cmd, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    wait(health, proc, log)
    return proc


def load(args, url, body, headers, connections, label):
    return bench_http(args.missive, url, json.dumps(body), headers, args.seconds, label,
                      connections=connections, warmup=1, threads=1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--missive", required=True)
    p.add_argument("--litellm", required=True)
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--levels", default="1,8,32")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    levels = [int(x) for x in args.levels.split(",")]

    mock_port, missive_port, litellm_port = free_port(), free_port(), free_port()
    mock_url = f"http://127.0.0.1:{mock_port}"
    procs = [start([args.missive, "bench", "mock-openai", "--port", str(mock_port)], os.environ,
                   f"{mock_url}/health", "mock")]
    home = tempfile.mkdtemp(prefix="gw-missive-home-")
    config = os.path.join(home, "missive.toml")
    with open(config, "w") as f:
        f.write(f"""
[[models]]
name = "{MODEL}"
upstreams = ["mock"]

[[upstreams]]
name = "mock"
kind = "openai"
url = "{mock_url}/v1"
model = "mock"

[rate_limits]
requests_per_minute = 100000000
input_tokens_per_minute = 1000000000
output_tokens_per_minute = 1000000000
""")
    env = dict(os.environ, MISSIVE_HOME=home, MISSIVE_CONFIG=config, MISSIVE_PORT=str(missive_port), MISSIVE_LOG="warn")
    # A stored key, as operators create them: auth, limits and the ledger all run.
    key = subprocess.run([args.missive, "keys", "create"], env=env, capture_output=True, text=True, check=True).stdout.strip()
    missive_url = f"http://127.0.0.1:{missive_port}"
    procs.append(start([args.missive, "serve"], env, f"{missive_url}/health", "missive"))
    lconfig = os.path.join(home, "litellm.yaml")
    with open(lconfig, "w") as f:
        f.write(f"""
model_list:
  - model_name: {MODEL}
    litellm_params:
      model: hosted_vllm/mock
      api_base: {mock_url}/v1
      api_key: none
litellm_settings:
  drop_params: true
general_settings:
  master_key: {LITELLM_KEY}
""")
    litellm_url = f"http://127.0.0.1:{litellm_port}"
    procs.append(start([args.litellm, "--config", lconfig, "--port", str(litellm_port), "--num_workers", "1"],
                       dict(os.environ, LITELLM_LOG="ERROR"), f"{litellm_url}/health/liveliness", "litellm"))
    try:
        rows = []
        for stream in (False, True):
            openai_body = {"model": "mock", "max_tokens": 16, "stream": stream,
                           "messages": [{"role": "user", "content": "Say hello."}]}
            claude_body = {"model": MODEL, "max_tokens": 16, "stream": stream,
                           "messages": [{"role": "user", "content": "Say hello."}]}
            claude_headers = ["anthropic-version: 2023-06-01", "content-type: application/json"]
            for level in levels:
                mode = "stream" if stream else "json"
                direct = load(args, f"{mock_url}/v1/chat/completions", openai_body, [], level, f"direct {mode} {level}")
                ours = load(args, f"{missive_url}/v1/messages", claude_body, claude_headers + [f"x-api-key: {key}"], level,
                            f"missive {mode} {level}")
                theirs = load(args, f"{litellm_url}/v1/messages", claude_body, claude_headers + [f"x-api-key: {LITELLM_KEY}", f"authorization: Bearer {LITELLM_KEY}"], level,
                              f"litellm {mode} {level}")
                rows.append((mode, level, direct, ours, theirs))
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait()

    lines = [
        "# Gateway overhead: Missive vs LiteLLM over an instant upstream",
        "",
        "A mock OpenAI-compatible upstream (`missive bench mock-openai`) answers at once. The same Anthropic "
        "`/v1/messages` request goes through Missive (a stored key, rate limits, the usage ledger on; model routed to "
        f"the mock as a `kind = \"openai\"` upstream) and through LiteLLM's proxy (1.106.2, one worker, master-key "
        "auth, `hosted_vllm/` model at the mock); `direct` is the mock hit with the OpenAI request. "
        f"Closed loop (`missive bench http`, one client thread), {args.seconds:.0f} s per cell, all on this 2-core machine.",
        "",
        "| body | conns | direct p50 / p99 ms | Missive p50 / p99 ms | LiteLLM p50 / p99 ms | direct req/s | Missive req/s | LiteLLM req/s | Missive added p50 / p99 ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, level, d, m, l in rows:
        lines.append(
            f"| {mode} | {level} | {d['p50_ms']:.2f} / {d['p99_ms']:.2f} | {m['p50_ms']:.2f} / {m['p99_ms']:.2f} | "
            f"{l['p50_ms']:.2f} / {l['p99_ms']:.2f} | {d['rps']:.0f} | {m['rps']:.0f} | {l['rps']:.0f} | "
            f"{m['p50_ms'] - d['p50_ms']:+.2f} / {m['p99_ms'] - d['p99_ms']:+.2f} |"
        )
    lines += ["", "Targets: Missive adds under 0.5 ms at p99 at 1 connection, and passes at least 5,000 requests/s."]
    write_report(args, "gateway.md", lines)


if __name__ == "__main__":
    main()
