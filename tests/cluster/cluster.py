"""Three `missive serve` replicas over one PostgreSQL database and one Redis, all real:
the database is created on the server MISSIVE_TEST_POSTGRES names, and Redis is a
`redis-server` of the test's own (so a test can kill it). scripts/test starts PostgreSQL
from Debian's package and sets the variables.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

import anthropic
import httpx
import pytest

BINARY = os.environ.get("MISSIVE_BIN", "missive")
ADMIN_KEY = "sk-ant-admin01-cluster-key"
MODEL = "qwen2.5-coder-0.5b-instruct"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} must be set (scripts/test sets it)")
    return value


class Replica:
    def __init__(self, cluster, name):
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.home = os.path.join(cluster.dir, name)
        os.makedirs(self.home)
        self.env = dict(
            os.environ,
            MISSIVE_HOME=self.home,
            MISSIVE_CONFIG=cluster.config_path,
            MISSIVE_MODEL=require("MISSIVE_TEST_MODEL"),
            MISSIVE_PORT=str(self.port),
            MISSIVE_REPLICA=name,
            MISSIVE_ADMIN_KEY=ADMIN_KEY,
            MISSIVE_CONTEXT_SIZE="4096",
        )
        self.proc = None

    def start(self):
        log = open(os.path.join(self.home, "serve.log"), "a")
        self.proc = subprocess.Popen([BINARY, "serve"], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited early: {open(log.name).read()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        pytest.fail(f"{self.name} did not come up in 120 s")

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

    def client(self, key):
        return anthropic.Anthropic(base_url=self.url, api_key=key, max_retries=0)

    def admin(self, method, path, **kwargs):
        return httpx.request(method, self.url + path, headers={"x-api-key": ADMIN_KEY}, timeout=30, **kwargs)


class Cluster:
    def __init__(self, replicas=3, config="", coordination=""):
        self.dir = tempfile.mkdtemp(prefix="missive-cluster-")
        self.redis_port = free_port()
        self.redis = None
        self.replicas = []
        try:
            self._start(replicas, config, coordination)
        except BaseException:
            self.stop()
            raise

    def _start(self, replicas, config, coordination):
        self.start_redis()
        self.database = "cluster_" + uuid.uuid4().hex[:16]
        server = require("MISSIVE_TEST_POSTGRES")
        subprocess.run(["psql", server, "-qAt", "-c", f"CREATE DATABASE {self.database}"], check=True)
        self.store_url = server.rsplit("/", 1)[0] + "/" + self.database
        self.config_path = os.path.join(self.dir, "missive.toml")
        with open(self.config_path, "w") as f:
            f.write(
                f'[store]\nurl = "{self.store_url}"\n'
                f'[coordination]\nredis_url = "redis://127.0.0.1:{self.redis_port}"\n{coordination}\n'
                f'[files]\ndir = "{os.path.join(self.dir, "files")}"\n' + config
            )
        self.replicas = [Replica(self, f"r{i + 1}") for i in range(replicas)]
        # One at a time: the first runs the migrations (the others would wait on its lock).
        for replica in self.replicas:
            replica.start()

    def start_redis(self):
        self.redis = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.redis_port), "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL,
        )
        for _ in range(100):
            done = subprocess.run(["redis-cli", "-p", str(self.redis_port), "ping"], capture_output=True, text=True)
            if done.stdout.strip() == "PONG":
                return
            time.sleep(0.05)
        pytest.fail("redis-server did not start")

    def kill_redis(self):
        self.redis.kill()
        self.redis.wait()

    def cli(self, *args):
        """A `missive` command against the cluster's store, as an operator runs it."""
        done = subprocess.run([BINARY, *args], env=self.replicas[0].env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def create_key(self, workspace, name):
        return self.cli("keys", "create", "--workspace", workspace, "--name", name)

    def key_id(self, name):
        for line in self.cli("keys", "list").splitlines():
            fields = line.split("\t")
            if fields[4] == name:
                return fields[0]
        raise AssertionError(f"no key named {name}")

    def query(self, sql):
        out = subprocess.run(["psql", self.store_url, "-qAt", "-c", sql], check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def stop(self):
        for replica in self.replicas:
            replica.stop()
        if self.redis is not None and self.redis.poll() is None:
            self.kill_redis()
        shutil.rmtree(self.dir, ignore_errors=True)
