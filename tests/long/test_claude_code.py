"""Real Claude Code (the newest release's linux-x64 native binary) in print mode against
`missive serve`: a two-step tool task, writing a file with its Write tool and reading it
back with Read, on the 1.5B agent model (issue 19).

Claude Code's own flags keep its prompt small: a one-line system prompt and two tools. It
sends no temperature, so the model's configured default (0 here) applies."""

import json
import os
import shutil
import subprocess
import tempfile

import pytest

from harness import API_KEY
from harness import agent_server as start_agent_server

CODE_WORD = "PELICAN-7"


@pytest.fixture(scope="module")
def agent_server():
    server = start_agent_server()
    yield server
    server.stop()


def test_claude_code_writes_a_file_then_reads_it_back(agent_server):
    claude = os.environ.get("MISSIVE_CLAUDE_CODE")
    if not claude:
        pytest.fail("MISSIVE_CLAUDE_CODE must name the claude binary (scripts/test installs it)")
    # A fixed path: the prompt names it, and with the same prompt a greedy model takes the
    # same steps on every run.
    work = os.path.join(tempfile.gettempdir(), "missive-claude-code")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    home = tempfile.mkdtemp(prefix="missive-claude-home-")
    target = os.path.join(work, "notes.txt")
    prompt = (f"First use the Write tool to create the file {target} containing the word {CODE_WORD}. "
              f"Then use the Read tool to read {target}, and answer with the word it contains.")
    env = dict(os.environ, ANTHROPIC_BASE_URL=agent_server.url, ANTHROPIC_API_KEY=API_KEY, HOME=home,
               CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1", DISABLE_AUTOUPDATER="1")
    done = subprocess.run(
        [claude, "-p", prompt, "--model", "claude-sonnet-4-6",
         "--system-prompt", "You are a coding agent. Use the tools to do what the user asks.",
         "--tools", "Write", "Read", "--permission-mode", "acceptEdits",
         "--output-format", "stream-json", "--verbose", "--no-session-persistence",
         "--disable-slash-commands", "--strict-mcp-config"],
        cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    calls = [block for e in events if e.get("type") == "assistant"
             for block in e["message"]["content"] if block["type"] == "tool_use"]
    names = [c["name"] for c in calls]
    assert "Write" in names and "Read" in names[names.index("Write"):], names
    with open(target) as f:
        assert CODE_WORD in f.read()
    (result,) = [e for e in events if e.get("type") == "result"]
    assert result["subtype"] == "success", result
    assert CODE_WORD in result["result"], result["result"]
