"""The MCP connector against real MCP servers (issue 23): the reference server
`@modelcontextprotocol/server-everything` from npm and a server written with the official
Python `mcp` SDK that needs a bearer token, over Streamable HTTP and over the older
HTTP+SSE transport, driven through the official SDK's beta messages. The 0.5B model is forced to call; it calls again in every
round it is given, so replies end at the round cap (`pause_turn`), which also shows
resuming."""

import os
import socket
import subprocess
import time

import anthropic
import pytest

from conftest import API_KEY, Missive, sampling

HERE = os.path.dirname(__file__)
TOKEN = "orders-token-7f3a"
BETAS = ["mcp-client-2025-11-20"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port, proc, name):
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{name} exited early")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"{name} did not listen on {port}")


@pytest.fixture(scope="module")
def mcp_servers():
    everything = os.environ.get("MISSIVE_MCP_EVERYTHING")
    python = os.environ.get("MISSIVE_MCP_PYTHON")
    if not everything or not python:
        pytest.fail("MISSIVE_MCP_EVERYTHING and MISSIVE_MCP_PYTHON must be set (scripts/test sets them)")
    ports = {"everything": free_port(), "orders": free_port(), "orders_sse": free_port()}
    procs = [
        subprocess.Popen(["node", everything, "streamableHttp"], env=dict(os.environ, PORT=str(ports["everything"])),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen([python, os.path.join(HERE, "mcp_orders.py"), str(ports["orders"]), TOKEN],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen([python, os.path.join(HERE, "mcp_orders.py"), str(ports["orders_sse"]), TOKEN, "sse"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]
    wait_for(ports["everything"], procs[0], "server-everything")
    wait_for(ports["orders"], procs[1], "mcp_orders.py")
    wait_for(ports["orders_sse"], procs[2], "mcp_orders.py sse")
    urls = {name: f"http://127.0.0.1:{port}/mcp" for name, port in ports.items()}
    urls["orders_sse"] = f"http://127.0.0.1:{ports['orders_sse']}/sse"
    yield urls
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def mcp_client(mcp_servers):
    config = """
[server_tools]
private_hosts = ["127.0.0.1"]
max_rounds = 2
call_timeout_s = 3
"""
    server = Missive(config).start()
    yield anthropic.Anthropic(base_url=server.url, api_key=API_KEY, max_retries=0)
    server.stop()


def ask(client, question, servers, tools, force, **extra):
    return client.beta.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=60,
        messages=[{"role": "user", "content": question}],
        mcp_servers=servers,
        tools=tools,
        tool_choice={"type": "tool", "name": force, "disable_parallel_tool_use": True},
        betas=BETAS,
        **sampling(temperature=0.0),
        **extra,
    )


def everything(urls):
    return [{"type": "url", "url": urls["everything"], "name": "everything"}]


def orders(urls, token=TOKEN):
    return [{"type": "url", "url": urls["orders"], "name": "orders", "authorization_token": token}]


SUM_TOOLSET = [{"type": "mcp_toolset", "mcp_server_name": "everything", "default_config": {"enabled": False},
                "configs": {"get-sum": {"enabled": True}, "echo": {"enabled": True}}}]


def test_the_reference_server_runs_a_forced_call_and_the_paused_turn_resumes(mcp_client, mcp_servers):
    question = "Add 17 and 25 with the get-sum tool, then tell me the sum."
    message = ask(mcp_client, question, everything(mcp_servers), SUM_TOOLSET, "get-sum")
    call, result = message.content[0], message.content[1]
    assert call.type == "mcp_tool_use" and call.server_name == "everything" and call.name == "get-sum"
    assert call.id.startswith("mcptoolu_")
    assert call.input == {"a": 17, "b": 25}
    assert result.type == "mcp_tool_result" and result.tool_use_id == call.id and not result.is_error
    assert "42" in result.content[0].text
    # The model calls in every round it gets: two rounds, then the turn pauses.
    assert message.stop_reason == "pause_turn"
    resumed = mcp_client.beta.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=60,
        messages=[{"role": "user", "content": question},
                  {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in message.content]}],
        mcp_servers=everything(mcp_servers),
        tools=SUM_TOOLSET,
        betas=BETAS,
        **sampling(temperature=0.0),
    )
    assert resumed.stop_reason in ("pause_turn", "end_turn", "max_tokens")
    assert resumed.content


def test_a_token_server_streams_its_result(mcp_client, mcp_servers):
    tools = [{"type": "mcp_toolset", "mcp_server_name": "orders", "configs": {"hang": {"enabled": False}}}]
    starts = []
    with mcp_client.beta.messages.stream(
        model="claude-sonnet-4-6",
        max_tokens=60,
        messages=[{"role": "user", "content": "Look up order A-1042 and then answer in one sentence: what does it contain?"}],
        mcp_servers=orders(mcp_servers),
        tools=tools,
        tool_choice={"type": "tool", "name": "lookup_order", "disable_parallel_tool_use": True},
        betas=BETAS,
        **sampling(temperature=0.0),
    ) as stream:
        for event in stream:
            if event.type == "content_block_start":
                starts.append(event.content_block.type)
        message = stream.get_final_message()
    assert starts[:2] == ["mcp_tool_use", "mcp_tool_result"], starts
    call, result = message.content[0], message.content[1]
    assert call.input == {"order_id": "A-1042"}
    assert "3 sea otter plushies" in result.content[0].text


def test_a_wrong_token_is_a_clear_400(mcp_client, mcp_servers):
    tools = [{"type": "mcp_toolset", "mcp_server_name": "orders"}]
    with pytest.raises(anthropic.BadRequestError) as refused:
        ask(mcp_client, "Look up order A-1.", orders(mcp_servers, token="wrong"), tools, "lookup_order")
    error = refused.value.body["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("mcp_servers.0: the server refused the authorization token"), error


def test_a_server_on_the_older_sse_transport_runs_calls(mcp_client, mcp_servers):
    """A server that speaks only HTTP+SSE (the Python SDK's `sse_app`): the stream names the
    message endpoint, calls go there, answers come back on the stream."""
    servers = [{"type": "url", "url": mcp_servers["orders_sse"], "name": "orders", "authorization_token": TOKEN}]
    tools = [{"type": "mcp_toolset", "mcp_server_name": "orders", "configs": {"hang": {"enabled": False}}}]
    message = ask(mcp_client, "Look up order C-3.", servers, tools, "lookup_order")
    call, result = message.content[0], message.content[1]
    assert call.type == "mcp_tool_use" and call.input == {"order_id": "C-3"}
    assert result.type == "mcp_tool_result" and not result.is_error
    assert "Order C-3: 3 sea otter plushies" in result.content[0].text
    # A tool that hangs ends at the timeout on this transport too.
    message = ask(mcp_client, "Call hang.", servers, [{"type": "mcp_toolset", "mcp_server_name": "orders"}], "hang")
    assert message.content[1].is_error and "did not answer within 3 s" in message.content[1].content[0].text
    with pytest.raises(anthropic.BadRequestError) as refused:
        ask(mcp_client, "Look up order C-3.", [{**servers[0], "authorization_token": "wrong"}], tools, "lookup_order")
    assert refused.value.body["error"]["message"].startswith(
        "mcp_servers.0: the server refused the authorization token"), refused.value.body


def test_a_tool_that_hangs_ends_at_the_timeout(mcp_client, mcp_servers):
    tools = [{"type": "mcp_toolset", "mcp_server_name": "orders"}]
    started = time.time()
    message = ask(mcp_client, "Call hang.", orders(mcp_servers), tools, "hang")
    assert time.time() - started < 30
    result = message.content[1]
    assert result.type == "mcp_tool_result" and result.is_error
    assert "did not answer within 3 s" in result.content[0].text


def test_the_older_shape_selects_tools_by_tool_configuration(mcp_client, mcp_servers):
    servers = [{**orders(mcp_servers)[0], "tool_configuration": {"allowed_tools": ["lookup_order"]}}]
    message = mcp_client.beta.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=60,
        messages=[{"role": "user", "content": "Look up order B-7."}],
        mcp_servers=servers,
        tool_choice={"type": "tool", "name": "lookup_order", "disable_parallel_tool_use": True},
        betas=["mcp-client-2025-04-04"],
        **sampling(temperature=0.0),
    )
    assert message.content[0].type == "mcp_tool_use"
    assert "Order B-7" in message.content[1].content[0].text
    # `hang` was not allowed: forcing it is refused by name.
    with pytest.raises(anthropic.BadRequestError) as refused:
        mcp_client.beta.messages.create(
            model="claude-sonnet-4-6", max_tokens=20, messages=[{"role": "user", "content": "Hang."}],
            mcp_servers=servers, tool_choice={"type": "tool", "name": "hang"}, betas=["mcp-client-2025-04-04"])
    assert "tool_choice.name: tool `hang`" in refused.value.body["error"]["message"]


def test_a_private_address_not_named_by_the_operator_is_refused(mcp_client, mcp_servers):
    inside = mcp_servers["orders"].replace("127.0.0.1", "127.0.0.2")
    tools = [{"type": "mcp_toolset", "mcp_server_name": "orders"}]
    servers = [{"type": "url", "url": inside, "name": "orders", "authorization_token": TOKEN}]
    with pytest.raises(anthropic.BadRequestError) as refused:
        ask(mcp_client, "Look up order A-1.", servers, tools, "lookup_order")
    assert refused.value.body["error"]["message"].startswith("mcp_servers.0: `127.0.0.2` is a private"), refused.value.body
