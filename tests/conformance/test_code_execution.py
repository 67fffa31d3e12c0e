"""Code execution through the official SDK's beta messages on the default model (issue 23):
a Python computation's stdout comes back, a file the code writes is a Files API file the
SDK downloads, and the container is reused by id. The model is forced to run a command;
the sandbox's abuse cases (network, writes outside, fork bomb, memory, time) are in the
server's API tests, where the command is fixed."""

import anthropic
import pytest

from conftest import API_KEY, Missive, sampling

BETAS = ["code-execution-2025-08-25", "files-api-2025-04-14"]
TOOLS = [{"type": "code_execution_20250825", "name": "code_execution"}]


@pytest.fixture(scope="module")
def code_client():
    config = """
[server_tools]
max_rounds = 1

[server_tools.code_execution]
wall_s = 20
"""
    server = Missive(config).start()
    yield anthropic.Anthropic(base_url=server.url, api_key=API_KEY, max_retries=0)
    server.stop()


def run(client, prompt, tools=TOOLS, **extra):
    return client.beta.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=120,
        messages=[{"role": "user", "content": prompt}],
        tools=tools,
        tool_choice={"type": "tool", "name": "code_execution", "disable_parallel_tool_use": True},
        betas=BETAS,
        **sampling(temperature=0.0),
        **extra,
    )


def test_a_python_computation_returns_its_stdout(code_client):
    message = run(code_client, "Run python3 to print the value of 17 * 23.")
    call, result = message.content[0], message.content[1]
    assert call.type == "server_tool_use" and call.name == "bash_code_execution"
    assert "python3" in call.input["command"]
    assert result.type == "bash_code_execution_tool_result" and result.tool_use_id == call.id
    assert result.content.type == "bash_code_execution_result"
    assert result.content.return_code == 0
    assert result.content.stdout == "391\n"
    assert message.container.id.startswith("container_")
    # One round allowed: the turn pauses after it.
    assert message.stop_reason == "pause_turn"


def test_a_written_file_is_a_files_api_file_and_the_container_is_kept(code_client):
    message = run(code_client, "Run python3 to write the text 'otters' into a file named otters.txt.")
    result = message.content[1]
    assert result.content.return_code == 0, result
    [output] = result.content.content
    assert output.type == "bash_code_execution_output"
    meta = code_client.beta.files.retrieve_metadata(output.file_id)
    assert meta.filename == "otters.txt" and meta.downloadable
    assert code_client.beta.files.download(output.file_id).read() == b"otters\n"
    # The same container, by id: the file is still there.
    again = run(code_client, "Run cat otters.txt to show the file.", container=message.container.id)
    assert again.container.id == message.container.id
    assert again.content[1].content.stdout == "otters\n", again.content


@pytest.mark.parametrize("version", ["code_execution_20260120", "code_execution_20260521"])
def test_the_newer_versions_run_as_the_first_and_refuse_programmatic_calls(code_client, version):
    """They add REPL state for programmatic tool calling; without it they run commands as
    `code_execution_20250825` does, and asking for programmatic calls is a 400 naming it."""
    message = run(code_client, "Run python3 to print the value of 17 * 23.",
                  tools=[{"type": version, "name": "code_execution"}])
    call, result = message.content[0], message.content[1]
    assert call.name == "bash_code_execution"
    assert result.content.stdout == "391\n", result
    weather = {"name": "get_weather", "input_schema": {"type": "object"}, "allowed_callers": [version]}
    with pytest.raises(anthropic.BadRequestError) as refused:
        run(code_client, "Weather?", tools=[{"type": version, "name": "code_execution"}, weather])
    assert "tools.1.allowed_callers" in refused.value.message
