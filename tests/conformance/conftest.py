"""Starts a real `missive serve` on the default model and hands tests an official SDK client.

Environment (set by scripts/test): MISSIVE_BIN (the binary), MISSIVE_TEST_MODEL (a GGUF
path). Each run gets its own MISSIVE_HOME, so the store starts empty.
"""

import os
import socket
import subprocess
import tempfile
import time

import anthropic
import httpx
import pytest

API_KEY = "sk-ant-api03-conformance-key"
SDK_MAJOR = int(anthropic.__version__.split(".")[0])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(config=None):
    """Starts `missive serve` on the default model (optionally with a config file's text);
    yields its URL, and stops it afterwards."""
    binary = os.environ.get("MISSIVE_BIN", "missive")
    model = os.environ.get("MISSIVE_TEST_MODEL")
    if not model:
        pytest.fail("MISSIVE_TEST_MODEL must name the default model's GGUF (scripts/test sets it)")
    port = _free_port()
    home = tempfile.mkdtemp(prefix="missive-conformance-")
    env = dict(
        os.environ,
        MISSIVE_HOME=home,
        MISSIVE_MODEL=model,
        MISSIVE_API_KEY=API_KEY,
        MISSIVE_PORT=str(port),
    )
    if config is not None:
        path = os.path.join(home, "missive.toml")
        with open(path, "w") as f:
            f.write(config)
        env["MISSIVE_CONFIG"] = path
    log = open(os.path.join(home, "serve.log"), "w")
    proc = subprocess.Popen([binary, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"missive serve exited early: {open(log.name).read()}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("missive serve did not come up in 120 s")
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def server():
    yield from start_server()


@pytest.fixture(scope="session")
def client(server):
    return anthropic.Anthropic(base_url=server, api_key=API_KEY, max_retries=0)


def sampling(**params):
    """Sampling parameters for `messages.create`: named in SDK 0.x, `extra_body` in 2.x,
    which dropped them as named parameters."""
    if SDK_MAJOR >= 1:
        return {"extra_body": params}
    return params
