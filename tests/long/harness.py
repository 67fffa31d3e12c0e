"""The conformance suite's server harness (`Missive`, the test keys), loaded under its own
module name so that this directory's tests share it without a conftest of their own."""

import importlib.util
import os

import pytest

_path = os.path.join(os.path.dirname(__file__), "..", "conformance", "conftest.py")
_spec = importlib.util.spec_from_file_location("conformance_harness", _path)
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)

API_KEY = _module.API_KEY
Missive = _module.Missive
WEATHER_TOOL = _module.WEATHER_TOOL
stream_tool_input = _module.stream_tool_input


def agent_server():
    """Starts `missive serve` on the 1.5B agent model at temperature 0 (the model's default;
    Claude Code sends none), with every `claude-*` name resolving to it."""
    model = os.environ.get("MISSIVE_AGENT_MODEL")
    if not model:
        pytest.fail("MISSIVE_AGENT_MODEL must name the 1.5B agent model's GGUF (scripts/test sets it)")
    server = Missive(f"""
[[models]]
name = "qwen2.5-coder-1.5b-instruct"
source = "{model}"
context_size = 8192
temperature = 0.0

[aliases]
"claude-*" = "qwen2.5-coder-1.5b-instruct"
""")
    # The file names the model; MISSIVE_MODEL would replace it with the default one.
    server.env.pop("MISSIVE_MODEL", None)
    return server.start()
