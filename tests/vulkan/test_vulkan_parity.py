"""The Vulkan build against the CPU build (issue 20): the same model, greedy, on the
engine tests' prompts, with every layer offloaded to this machine's Vulkan device (Mesa's
software rasteriser, lavapipe, where there is no GPU). The output must match token for
token. This keeps the offload code honest on a machine without a GPU; speed is not a goal.

Run by scripts/test with MISSIVE_BIN (the CPU build), MISSIVE_VULKAN_BIN (built with
`--features vulkan`) and MISSIVE_TEST_MODEL. The servers are the conformance suite's
harness, as tests/long loads it."""

import os
import re
import sys

import httpx
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "long"))
from harness import API_KEY, Missive  # noqa: E402

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


def start(binary, **env):
    server = Missive(binary=binary)
    server.env.update(MISSIVE_PARALLEL="1", MISSIVE_CONTEXT_SIZE="2048", **env)
    return server.start()


def complete(server, prompt, max_tokens):
    headers = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}
    model = httpx.get(f"{server.url}/v1/models", headers=headers, timeout=30).json()["data"][0]["id"]
    response = httpx.post(
        f"{server.url}/v1/messages",
        headers=headers,
        json={"model": model, "max_tokens": max_tokens, "temperature": 0,
              "messages": [{"role": "user", "content": prompt}]},
        timeout=600,
    )
    assert response.status_code == 200, response.text
    return response.json()


def log(server):
    return open(os.path.join(server.home, "serve.log")).read()


@pytest.fixture(scope="module")
def servers():
    vulkan_bin = os.environ.get("MISSIVE_VULKAN_BIN")
    if not vulkan_bin:
        pytest.fail("MISSIVE_VULKAN_BIN must name the Vulkan build (scripts/test builds it)")
    cpu = start(None)
    # llama.cpp passes over a CPU-type Vulkan device unless it is named.
    vulkan = start(vulkan_bin, MISSIVE_GPU_LAYERS="999", GGML_VK_VISIBLE_DEVICES="0")
    yield cpu, vulkan
    cpu.stop()
    vulkan.stop()


def test_every_layer_runs_on_the_vulkan_device(servers):
    cpu, vulkan = servers
    placed = log(vulkan)
    assert re.search(r'gpus=\["Vulkan0 \(', placed), placed
    layers = re.search(r"layers=(\d+) on_gpu=(\d+)", placed)
    assert layers and layers.group(1) == layers.group(2), placed
    assert "on_gpu=0" in log(cpu)


@pytest.mark.parametrize("prompt", PROMPTS, ids=["copy", "primes", "haiku"])
def test_greedy_output_matches_the_cpu_build_token_for_token(servers, prompt):
    cpu, vulkan = servers
    expected = complete(cpu, prompt, 64)
    offloaded = complete(vulkan, prompt, 64)
    assert offloaded["content"] == expected["content"]
    assert offloaded["usage"] == expected["usage"]
    assert offloaded["stop_reason"] == expected["stop_reason"]
    assert expected["usage"]["output_tokens"] > 10
