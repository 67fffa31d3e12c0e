"""Starts a real `missive serve` on the default model and hands tests an official SDK client.

Environment (set by scripts/test): MISSIVE_BIN (the binary), MISSIVE_TEST_MODEL (a GGUF
path). Each run gets its own MISSIVE_HOME, so the store starts empty. With
MISSIVE_TEST_POSTGRES (a PostgreSQL server's URL), each server's store is instead a fresh
database there, and with MISSIVE_TEST_REDIS its limits and spend live in that Redis under
a prefix of its own: the whole suite then runs as a replica of a multi-replica deployment.
"""

import atexit
import hashlib
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time

import anthropic
import httpx
import pytest

API_KEY = "sk-ant-api03-conformance-key"
# Operators only: /metrics and the Admin API.
ADMIN_KEY = "sk-ant-admin01-conformance-key"
SDK_MAJOR = int(anthropic.__version__.split(".")[0])

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Get the current weather in a given location",
    "input_schema": {
        "type": "object",
        "properties": {
            "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["location"],
    },
}


POSTGRES = os.environ.get("MISSIVE_TEST_POSTGRES")
REDIS = os.environ.get("MISSIVE_TEST_REDIS")


def _postgres_database(home: str) -> str:
    """The database for the store under `home` (created on first use): a server restarted
    on the same home finds its state again, as with SQLite."""
    name = "m_" + hashlib.sha1(home.encode()).hexdigest()[:24]
    done = subprocess.run(["psql", POSTGRES, "-qAt", "-c", f"CREATE DATABASE {name}"],
                          capture_output=True, text=True)
    if done.returncode != 0 and "already exists" not in done.stderr:
        pytest.fail(f"creating database {name}: {done.stderr}")
    return POSTGRES.rsplit("/", 1)[0] + "/" + name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Missive:
    """One `missive serve` on the default model over a data directory that outlives it, so
    a test can kill it (even with SIGKILL) and start it again on the same store."""

    def __init__(self, config=None, home=None, wrap=(), binary=None):
        if home is None:
            home = tempfile.mkdtemp(prefix="missive-conformance-")
            # Gone when the suite ends (a test may restart a server on the same home).
            atexit.register(shutil.rmtree, home, True)
        self.home = home
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        model = os.environ.get("MISSIVE_TEST_MODEL")
        if not model:
            pytest.fail("MISSIVE_TEST_MODEL must name the default model's GGUF (scripts/test sets it)")
        self.env = dict(
            os.environ,
            MISSIVE_HOME=self.home,
            MISSIVE_MODEL=model,
            MISSIVE_API_KEY=API_KEY,
            MISSIVE_ADMIN_KEY=ADMIN_KEY,
            MISSIVE_PORT=str(self.port),
        )
        if POSTGRES:
            self.env["MISSIVE_STORE_URL"] = _postgres_database(self.home)
            if REDIS:
                self.env["MISSIVE_REDIS_URL"] = REDIS
                self.env["MISSIVE_REDIS_PREFIX"] = "conformance-" + hashlib.sha1(self.home.encode()).hexdigest()[:16]
        if config is not None:
            path = os.path.join(self.home, "missive.toml")
            with open(path, "w") as f:
                f.write(config)
            self.env["MISSIVE_CONFIG"] = path
        # A command the server runs under (a namespace, say): its argv before the binary's.
        self.wrap = list(wrap)
        # Another build of Missive (the Vulkan one, say) instead of MISSIVE_BIN.
        self.binary = binary or BINARY
        self.proc = None

    def start(self):
        log = open(os.path.join(self.home, "serve.log"), "a")
        self.proc = subprocess.Popen([*self.wrap, self.binary, "serve"], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"missive serve exited early: {open(log.name).read()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        self.proc.kill()
        pytest.fail("missive serve did not come up in 120 s")

    def cli(self, *args):
        """Runs a `missive` subcommand on this server's store; returns its stdout."""
        done = subprocess.run([self.binary, *args], env=self.env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def query(self, sql, *params):
        """Rows of a read straight from this server's store, SQLite or Postgres (`?` marks
        the parameters)."""
        url = self.env.get("MISSIVE_STORE_URL")
        if url is None:
            with sqlite3.connect(os.path.join(self.home, "missive.db")) as db:
                return db.execute(sql, params).fetchall()
        for p in params:
            sql = sql.replace("?", "'" + str(p).replace("'", "''") + "'", 1)
        out = subprocess.run(["psql", url, "-qAt", "-F", "\x1f", "-R", "\x1e", "-c", sql],
                             check=True, capture_output=True, text=True).stdout
        number = re.compile(r"-?\d+")
        return [tuple(int(v) if number.fullmatch(v) else v for v in row.split("\x1f"))
                for row in out.rstrip("\n").split("\x1e") if row]

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


BINARY = os.environ.get("MISSIVE_BIN", "missive")


def start_server(config=None):
    """Starts `missive serve` on the default model (optionally with a config file's text);
    yields its URL, and stops it afterwards."""
    server = Missive(config).start()
    yield server.url
    server.stop()


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


def metrics(url):
    """The server's Prometheus text, read with the admin key."""
    response = httpx.get(f"{url}/metrics", headers={"x-api-key": ADMIN_KEY}, timeout=30)
    assert response.status_code == 200, response.text
    return response.text


def stream_tool_input(client, **kwargs):
    """Streams a reply; returns the final message and its non-empty `input_json` pieces."""
    pieces = []
    with client.messages.stream(**kwargs) as stream:
        for event in stream:
            if event.type == "input_json" and event.partial_json:
                pieces.append(event.partial_json)
        return stream.get_final_message(), pieces
