"""A 400 MB upload streams to disk: the server's resident memory stays within 64 MB of
where it started, measured while the upload runs."""

import os
import tempfile
import threading

import anthropic

from conftest import API_KEY, SDK_MAJOR, Missive

SIZE = 400 * 1024 * 1024


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_a_400_mb_upload_stays_under_64_mb_of_server_memory():
    server = Missive().start()
    client = anthropic.Anthropic(base_url=server.url, api_key=API_KEY, max_retries=0, timeout=600)
    files = client.files if SDK_MAJOR >= 1 else client.beta.files
    # Warm the upload path first, so the baseline includes what any upload allocates.
    files.upload(file=("warm.bin", b"x" * 1024 * 1024, "application/octet-stream"))
    with tempfile.NamedTemporaryFile(suffix=".bin") as big:
        chunk = os.urandom(1024 * 1024)
        for _ in range(SIZE // len(chunk)):
            big.write(chunk)
        big.flush()
        baseline = rss_bytes(server.proc.pid)
        peak = [baseline]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], rss_bytes(server.proc.pid))
                done.wait(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        with open(big.name, "rb") as f:
            uploaded = files.upload(file=("big.bin", f, "application/octet-stream"))
        done.set()
        sampler.join()
    assert uploaded.size_bytes == SIZE
    grown = peak[0] - baseline
    print(f"baseline {baseline / 2**20:.1f} MiB, peak {peak[0] / 2**20:.1f} MiB, grown {grown / 2**20:.1f} MiB")
    assert grown < 64 * 1024 * 1024, f"RSS grew {grown / 2**20:.1f} MiB during a 400 MB upload"
    files.delete(uploaded.id)
    server.stop()
