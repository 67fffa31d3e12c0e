"""The Vulkan build against the CPU build (issue 20): the same model, greedy, on the
engine tests' prompts, with every layer offloaded to this machine's Vulkan device (Mesa's
software rasteriser, lavapipe, where there is no GPU). The output must match token for
token. This keeps the offload code honest on a machine without a GPU; speed is not a goal.

Run by scripts/test with MISSIVE_BIN (the CPU build), MISSIVE_VULKAN_BIN (built with
`--features vulkan`) and MISSIVE_TEST_MODEL."""

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

import httpx
import pytest

API_KEY = "sk-vulkan-parity"
SNIPPET = (
    "fn parse_port(text: &str) -> Option<u16> {\n    let trimmed = text.trim();\n"
    "    if trimmed.is_empty() {\n        return None;\n    }\n"
    "    trimmed.parse::<u16>().ok().filter(|port| *port != 0)\n}\n"
)
# The prompts of the engine's speculation test (crates/engine/tests/engine.rs).
PROMPTS = [
    f"Repeat this Rust function exactly, renaming parse_port to read_port:\n\n{SNIPPET}",
    "List the first five prime numbers.",
    "Write a haiku about autumn rain.",
]


def required(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} must be set (scripts/test sets it)")
    return value


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, binary, **env):
        self.home = tempfile.mkdtemp(prefix="missive-vulkan-")
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = os.path.join(self.home, "serve.log")
        self.env = dict(os.environ, MISSIVE_HOME=self.home, MISSIVE_MODEL=required("MISSIVE_TEST_MODEL"),
                        MISSIVE_API_KEY=API_KEY, MISSIVE_PORT=self.url.rsplit(":", 1)[1],
                        MISSIVE_PARALLEL="1", MISSIVE_CONTEXT_SIZE="2048", **env)
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen([binary, "serve"], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 300
        while time.time() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"missive serve exited early: {open(self.log).read()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.5)
        self.stop()
        pytest.fail("missive serve did not come up in 300 s")

    def complete(self, prompt, max_tokens):
        headers = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}
        model = httpx.get(f"{self.url}/v1/models", headers=headers, timeout=30).json()["data"][0]["id"]
        response = httpx.post(
            f"{self.url}/v1/messages",
            headers=headers,
            json={"model": model, "max_tokens": max_tokens, "temperature": 0,
                  "messages": [{"role": "user", "content": prompt}]},
            timeout=600,
        )
        assert response.status_code == 200, response.text
        return response.json()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.home, ignore_errors=True)


@pytest.fixture(scope="module")
def servers():
    cpu = Server(required("MISSIVE_BIN"))
    # llama.cpp passes over a CPU-type Vulkan device unless it is named.
    vulkan = Server(required("MISSIVE_VULKAN_BIN"), MISSIVE_GPU_LAYERS="999", GGML_VK_VISIBLE_DEVICES="0")
    yield cpu, vulkan
    cpu.stop()
    vulkan.stop()


def test_every_layer_runs_on_the_vulkan_device(servers):
    cpu, vulkan = servers
    placed = open(vulkan.log).read()
    assert re.search(r'gpus=\["Vulkan0 \(', placed), placed
    layers = re.search(r"layers=(\d+) on_gpu=(\d+)", placed)
    assert layers and layers.group(1) == layers.group(2), placed
    assert "on_gpu=0" in open(cpu.log).read()


@pytest.mark.parametrize("prompt", PROMPTS, ids=["copy", "primes", "haiku"])
def test_greedy_output_matches_the_cpu_build_token_for_token(servers, prompt):
    cpu, vulkan = servers
    expected = cpu.complete(prompt, 64)
    offloaded = vulkan.complete(prompt, 64)
    assert offloaded["content"] == expected["content"]
    assert offloaded["usage"] == expected["usage"]
    assert offloaded["stop_reason"] == expected["stop_reason"]
    assert expected["usage"]["output_tokens"] > 10
