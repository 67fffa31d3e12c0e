"""Structured-output validity, Missive beside llama-server. See bench/schemas."""

import datetime
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from peer import server_args, with_llama_server, with_missive  # noqa: E402


def main():
    p = server_args(8192)
    p.add_argument("--slots", type=int, default=8)
    p.add_argument("--runs", type=int, default=20)
    args = p.parse_args()

    def measure(missive_url):
        def with_peer(peer_url):
            cmd = [args.missive, "bench", "schemas", "--url", missive_url, "--peer-url", peer_url,
                   "--api-key", "bench-key", "--runs", str(args.runs), "--concurrency", str(args.slots)]
            return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        return with_llama_server(args, args.slots, args.ctx, with_peer)

    report = with_missive(args, args.slots, args.ctx, measure)
    out = args.out or os.path.join("bench", "runs", f"{datetime.date.today()}-vm")
    os.makedirs(out, exist_ok=True)
    header = (f"Model {os.path.basename(args.model)}; {args.threads} threads each; {args.slots} slots "
              f"(llama-server -np {args.slots}); ctx {args.ctx}.\n\n")
    with open(os.path.join(out, "schemas.md"), "w") as f:
        f.write(header + report)
    print(report)


if __name__ == "__main__":
    main()
