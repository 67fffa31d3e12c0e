"""The disk prefix cache: a prompt's KV cells outlive the process (issue 21).

One server is killed with SIGKILL and started again on the same MISSIVE_HOME: the cached
prefix comes back from disk, billed as a cache read, with the same reply. Entries made
under another context size are never read, and a damaged state file is skipped, never
trusted and never fatal.
"""

import glob
import inspect
import json
import os
import re
import shlex
import time
import zlib

import anthropic

from conftest import API_KEY, Missive, metrics, sampling

# About 2,500 tokens of real code: well past the 1,024-token cache minimum.
SOURCE = "".join(inspect.getsourcelines(shlex)[0][:300])


def ask(url, question):
    client = anthropic.Anthropic(base_url=url, api_key=API_KEY, max_retries=0)
    message = client.messages.create(
        model="claude-opus-4-8",
        max_tokens=8,
        system=[{"type": "text", "text": "You review code.\n\n" + SOURCE, "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": question}],
        **sampling(temperature=0),
    )
    return message.content[0].text, message.usage


def records(home):
    return glob.glob(os.path.join(home, "kv-cache", "*", "*", "*.meta"))


def counter(url, name):
    found = re.search(rf"^{name}\{{[^}}]*\}} (\S+)$", metrics(url), re.M)
    return float(found.group(1)) if found else 0.0


def wait_for_record(home):
    deadline = time.time() + 60
    while not records(home):
        assert time.time() < deadline, "no disk cache entry was written"
        time.sleep(0.2)


def test_a_prefix_outlives_kill_9_and_is_billed_as_a_cache_read():
    server = Missive().start()
    try:
        text, usage = ask(server.url, "What does this module do?")
        prefix = usage.cache_creation_input_tokens
        assert prefix > 1024 and usage.cache_read_input_tokens == 0
        wait_for_record(server.home)

        server.kill9()
        server.start()
        again, restored = ask(server.url, "What does this module do?")
        assert again == text
        assert restored.cache_read_input_tokens == prefix, restored
        assert restored.cache_creation_input_tokens == 0
        # A new session sharing the prefix reads it too (from the cells now in memory).
        _, other = ask(server.url, "Name one class in it.")
        assert other.cache_read_input_tokens == prefix
        assert counter(server.url, "missive_disk_cache_hits_total") >= 1

        # Whatever a kill -9 mid-write leaves, nothing half-written is taken for an entry:
        # no temporary file survives a start, and every record's state file matches it.
        ask(server.url, "A third question, to write another entry while we kill it.")
        server.kill9()
        server.start()
        cache_files = glob.glob(os.path.join(server.home, "kv-cache", "*", "*", "*"))
        assert not [f for f in cache_files if f.endswith(".tmp")]
        for record in records(server.home):
            meta = json.load(open(record))
            state = open(record[: -len(".meta")] + ".kv", "rb").read()
            assert len(state) == meta["bytes"] and zlib.crc32(state) == meta["crc32"]
    finally:
        server.stop()


def test_a_damaged_state_file_is_skipped_and_another_context_size_never_reads_an_entry():
    server = Missive().start()
    try:
        text, _ = ask(server.url, "What does this module do?")
        wait_for_record(server.home)
        server.stop()
        # Same length, bytes changed in the middle: only the checksum can tell.
        (state,) = [r[: -len(".meta")] + ".kv" for r in records(server.home)]
        with open(state, "r+b") as f:
            f.seek(os.path.getsize(state) // 2)
            f.write(b"\xff" * 64)
        server.start()
        again, _ = ask(server.url, "What does this module do?")
        assert again == text
        assert counter(server.url, "missive_disk_cache_rejected_total") >= 1
        assert counter(server.url, "missive_disk_cache_hits_total") == 0
        assert not os.path.exists(state)
        wait_for_record(server.home)
        server.stop()

        # Another context size shapes the cells differently: its cache starts empty, and
        # the old entries are gone.
        old = records(server.home)
        server.env["MISSIVE_CONTEXT_SIZE"] = "16384"
        server.start()
        _, usage = ask(server.url, "What does this module do?")
        assert usage.cache_read_input_tokens == 0
        assert counter(server.url, "missive_disk_cache_hits_total") == 0
        assert not any(os.path.exists(r) for r in old)
    finally:
        server.stop()
