"""Server tools through the official SDK against the default model (issue 23): web_fetch of
local pages (HTML, a redirect chain, a PDF), the address rules on a redirect inside, and
web_search against a local server speaking SearXNG's JSON API with a recorded answer.
The 0.5B model is forced to call where it would not on its own; the rounds after a call
choose freely."""

import http.server
from datetime import datetime, timezone
import json
import os
import threading
import urllib.parse

import anthropic
import httpx
import pytest

from conftest import ADMIN_KEY, API_KEY, Missive, sampling
from pdf import make_pdf

DATA = os.path.join(os.path.dirname(__file__), "data")
PAGE = (
    "<html><head><title>Otter facts</title></head><body><h1>Sea otters</h1>"
    "<p>Sea otters hold hands while they sleep, so that they do not drift apart.</p></body></html>"
)
PDF_TEXT = "Quarterly otter census: 412 sea otters were counted in Monterey Bay."


class Site(http.server.BaseHTTPRequestHandler):
    """Pages, redirects and a SearXNG-style search endpoint; records what was asked."""

    searches = []

    def do_GET(self):
        port = self.server.server_address[1]
        path = urllib.parse.urlparse(self.path)
        if path.path == "/otters.html":
            self.reply(200, "text/html; charset=utf-8", PAGE.encode())
        elif path.path == "/census.pdf":
            self.reply(200, "application/pdf", make_pdf([PDF_TEXT]))
        elif path.path == "/hop1":
            self.redirect("/hop2")
        elif path.path == "/hop2":
            self.redirect(f"http://127.0.0.1:{port}/otters.html")
        elif path.path == "/inside":
            # 127.0.0.2 is inside and not among the operator's private hosts.
            self.redirect(f"http://127.0.0.2:{port}/otters.html")
        elif path.path == "/search":
            query = urllib.parse.parse_qs(path.query)
            Site.searches.append(query)
            with open(os.path.join(DATA, "searxng-otters.json"), "rb") as f:
                self.reply(200, "application/json", f.read())
        else:
            self.reply(404, "text/plain", b"not found")

    def redirect(self, location):
        self.send_response(302)
        self.send_header("Location", location)
        self.end_headers()

    def reply(self, status, media_type, body):
        self.send_response(status)
        self.send_header("Content-Type", media_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Site)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def tools_server(site):
    config = f"""
[server_tools]
private_hosts = ["127.0.0.1"]
max_rounds = 2

[server_tools.search]
kind = "searxng"
url = "{site}"

[server_tools.code_execution]
wall_s = 10

[prices.default]
input = 3.0
output = 15.0
web_search = 10.0
"""
    server = Missive(config).start()
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def tools_client(tools_server):
    return anthropic.Anthropic(base_url=tools_server, api_key=API_KEY, max_retries=0)


FETCH = {"type": "web_fetch_20250910", "name": "web_fetch", "max_uses": 1}
FORCE_FETCH = {"type": "tool", "name": "web_fetch", "disable_parallel_tool_use": True}


def fetch(client, url, question, **extra):
    return client.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=80,
        **sampling(temperature=0.0),
        messages=[{"role": "user", "content": f"Fetch {url} and then answer in one sentence: {question}"}],
        tools=[FETCH],
        tool_choice=FORCE_FETCH,
        **extra,
    )


def blocks(message, kind):
    return [b for b in message.content if b.type == kind]


def test_a_forced_fetch_reaches_the_answer(tools_client, site):
    url = f"{site}/otters.html"
    message = fetch(tools_client, url, "what do sea otters do while they sleep?")
    [call] = blocks(message, "server_tool_use")
    assert call.name == "web_fetch" and call.id.startswith("srvtoolu_")
    assert call.input["url"] == url
    [result] = blocks(message, "web_fetch_tool_result")
    assert result.tool_use_id == call.id
    assert result.content.type == "web_fetch_result"
    assert result.content.content.title == "Otter facts"
    assert "hold hands while they sleep" in result.content.content.source.data
    assert message.usage.server_tool_use.web_fetch_requests == 1
    # The model read the page: its answer follows the result and uses it.
    assert message.stop_reason == "end_turn"
    assert message.content[-1].type == "text"
    assert "hand" in message.content[-1].text.lower(), message.content[-1].text


def test_a_streamed_fetch_follows_redirects(tools_client, site):
    url = f"{site}/hop1"
    starts = []
    with tools_client.messages.stream(
        model="claude-sonnet-4-6",
        max_tokens=40,
        **sampling(temperature=0.0),
        messages=[{"role": "user", "content": f"Summarise {url}"}],
        tools=[FETCH],
        tool_choice=FORCE_FETCH,
    ) as stream:
        for event in stream:
            if event.type == "content_block_start":
                starts.append(event.content_block.type)
        message = stream.get_final_message()
    assert starts[:2] == ["server_tool_use", "web_fetch_tool_result"], starts
    [call] = blocks(message, "server_tool_use")
    assert call.input == {"url": url}
    [result] = blocks(message, "web_fetch_tool_result")
    assert result.content.url == f"{site}/otters.html"
    assert message.usage.server_tool_use.web_fetch_requests == 1


def test_a_pdf_comes_back_as_its_text(tools_client, site):
    message = fetch(tools_client, f"{site}/census.pdf", "how many otters were counted?")
    [result] = blocks(message, "web_fetch_tool_result")
    assert "412 sea otters" in result.content.content.source.data


def test_a_redirect_inside_is_refused_and_the_server_stays_up(tools_client, site):
    message = fetch(tools_client, f"{site}/inside", "what is the page about?")
    [result] = blocks(message, "web_fetch_tool_result")
    assert result.content.type == "web_fetch_tool_result_error"
    assert result.content.error_code == "url_not_allowed"
    assert not message.usage.server_tool_use or message.usage.server_tool_use.web_fetch_requests == 0
    assert httpx.get(f"{site}/otters.html").status_code == 200


def test_a_search_returns_filtered_results_and_is_priced(tools_client, tools_server, site):
    Site.searches.clear()
    message = tools_client.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=60,
        **sampling(temperature=0.0),
        messages=[{"role": "user", "content": "Search the web: how do sea otters sleep?"}],
        tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 1,
                "blocked_domains": ["spam.example"]}],
        tool_choice={"type": "tool", "name": "web_search", "disable_parallel_tool_use": True},
    )
    [call] = blocks(message, "server_tool_use")
    assert call.name == "web_search" and call.input["query"]
    assert Site.searches and Site.searches[0]["format"] == ["json"]
    assert Site.searches[0]["q"] == [call.input["query"]]
    [result] = blocks(message, "web_search_tool_result")
    urls = [r.url for r in result.content]
    assert urls == ["https://www.otters.example/facts/sleep", "https://wildlife.example/marine/sea-otter"]
    assert all(r.type == "web_search_result" and r.title for r in result.content)
    assert message.usage.server_tool_use.web_search_requests == 1
    # $10 per 1,000 searches: the cost report has a web_search line of 1 cent.
    report = httpx.get(
        f"{tools_server}/v1/organizations/cost_report",
        params={"starting_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT00:00:00Z"), "group_by[]": "description"},
        headers={"x-api-key": ADMIN_KEY, "anthropic-version": "2023-06-01"},
        timeout=30,
    ).json()
    lines = [r for b in report["data"] for r in b["results"] if r["cost_type"] == "web_search"]
    assert sum(float(r["amount"]) for r in lines) == pytest.approx(1.0), json.dumps(report)[:2000]


def test_search_results_go_back_to_the_model_in_the_next_turn(tools_client):
    history = [
        {"role": "user", "content": "How do sea otters sleep?"},
        {"role": "assistant", "content": [
            {"type": "server_tool_use", "id": "srvtoolu_01A", "name": "web_search", "input": {"query": "sea otters sleep"}},
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_01A", "content": [
                {"type": "web_search_result", "url": "https://www.otters.example/facts/sleep", "title": "How sea otters sleep",
                 "encrypted_content": "U2VhIG90dGVycyBob2xkIGhhbmRzIHdoaWxlIHRoZXkgc2xlZXAu"}]},
            {"type": "text", "text": "They hold hands."},
        ]},
        {"role": "user", "content": "Say that again in three words."},
    ]
    count = tools_client.messages.count_tokens(model="claude-sonnet-4-6", messages=history)
    assert count.input_tokens > 20
    message = tools_client.messages.create(model="claude-sonnet-4-6", max_tokens=20, messages=history)
    assert message.content[0].type == "text"


DEFERRED = [
    {"name": "get_weather", "description": "Get the current weather for a city.", "defer_loading": True,
     "input_schema": {"type": "object", "properties": {"city": {"type": "string", "description": "The city."}},
                      "required": ["city"]}},
    {"name": "get_stock_price", "description": "Get the latest price of a stock.", "defer_loading": True,
     "input_schema": {"type": "object", "properties": {"ticker": {"type": "string"}}, "required": ["ticker"]}},
    {"name": "send_email", "description": "Send an email.", "defer_loading": True,
     "input_schema": {"type": "object", "properties": {"to": {"type": "string"}, "body": {"type": "string"}},
                      "required": ["to", "body"]}},
]


@pytest.mark.parametrize("kind, ask", [
    ("tool_search_tool_regex_20251119", "Search for a tool whose name contains weather, then use it for Oslo."),
    ("tool_search_tool_bm25_20251119", "What is the weather in Oslo right now? Find a weather tool and use it."),
])
def test_a_tool_search_finds_a_deferred_tool_that_the_model_then_calls(tools_client, kind, ask):
    """The model searches (forced); the server finds the deferred weather tool and no other.
    Sent back, the search keeps that tool loaded: asked for any call, the model calls it,
    and the tools the search did not find stay out of its reach. (Left to go on in the same
    call, the 0.5B model repeats its search until the round cap.)"""
    name = kind.removesuffix("_20251119")
    message = tools_client.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=120,
        **sampling(temperature=0.0),
        messages=[{"role": "user", "content": ask}],
        tools=[{"type": kind, "name": name}, *DEFERRED],
        tool_choice={"type": "tool", "name": name, "disable_parallel_tool_use": True},
    )
    call = blocks(message, "server_tool_use")[0]
    assert call.name == name and call.id.startswith("srvtoolu_")
    result = blocks(message, "tool_search_tool_result")[0]
    assert result.tool_use_id == call.id
    assert result.content.type == "tool_search_tool_search_result", result
    found = [r.tool_name for r in result.content.tool_references]
    assert found[0] == "get_weather", (call.input, found)
    assert "send_email" not in found, (call.input, found)

    history = [
        {"role": "user", "content": ask},
        {"role": "assistant", "content": [call.to_dict(), result.to_dict()]},
        {"role": "user", "content": "Now call it for Oslo."},
    ]
    answer = tools_client.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=60,
        **sampling(temperature=0.0),
        messages=history,
        tools=DEFERRED,
        tool_choice={"type": "any"},
    )
    [used] = blocks(answer, "tool_use")
    assert used.name == "get_weather", answer.content
    assert "oslo" in used.input["city"].lower()
    assert answer.stop_reason == "tool_use"


def test_the_model_asks_the_advisor_and_reads_its_advice(tools_client):
    """Forced to ask, the model gets advice from a second model (the default model advising
    itself here: the wire is the same for any pair). Every block and usage step parses as
    the SDK's beta types; the advice's tokens are an `advisor_message` step with its model,
    outside the top-level counts, which are the model's own rounds."""
    from anthropic.types.beta import BetaAdvisorMessageIterationUsage, BetaAdvisorToolResultBlock

    ask = "Write a Python function that reverses a string."
    message = tools_client.beta.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=120,
        **sampling(temperature=0.0),
        betas=["advisor-tool-2026-03-01"],
        messages=[{"role": "user", "content": ask}],
        tools=[{"type": "advisor_20260301", "name": "advisor", "model": "claude-sonnet-4-6",
                "max_tokens": 60, "max_uses": 1}],
        tool_choice={"type": "tool", "name": "advisor", "disable_parallel_tool_use": True},
    )
    [call] = blocks(message, "server_tool_use")
    assert call.name == "advisor" and call.id.startswith("srvtoolu_") and call.input == {}
    [result] = blocks(message, "advisor_tool_result")
    assert isinstance(result, BetaAdvisorToolResultBlock)
    assert result.tool_use_id == call.id
    assert result.content.type == "advisor_result", result
    assert result.content.text.strip()
    assert result.content.stop_reason in ("end_turn", "max_tokens")

    steps = message.usage.iterations
    assert [s.type for s in steps] == ["message", "advisor_message", "message"], steps
    advice = steps[1]
    assert isinstance(advice, BetaAdvisorMessageIterationUsage)
    assert advice.model and 0 < advice.output_tokens <= 60
    assert advice.cache_creation is not None and steps[0].cache_creation is not None
    # The advisor read the conversation, then the ask: more than the conversation alone.
    alone = tools_client.messages.count_tokens(
        model="claude-sonnet-4-6", messages=[{"role": "user", "content": ask}])
    assert advice.input_tokens + advice.cache_read_input_tokens > alone.input_tokens + 20
    rounds = [s for s in steps if s.type == "message"]
    assert message.usage.output_tokens == sum(s.output_tokens for s in rounds)
    # Its one use spent, the model answers: text after the advice.
    assert message.content[-1].type == "text" and message.content[-1].text.strip()

    # Sent back, the advice is read as the model read it, and the SDK's param types hold.
    history = [
        {"role": "user", "content": ask},
        {"role": "assistant", "content": [b.to_dict() for b in message.content]},
        {"role": "user", "content": "Thanks."},
    ]
    again = tools_client.beta.messages.count_tokens(model="claude-sonnet-4-6", messages=history)
    for block in history[1]["content"]:
        if block["type"] == "advisor_tool_result":
            block["content"]["text"] = ""
    unadvised = tools_client.beta.messages.count_tokens(model="claude-sonnet-4-6", messages=history)
    assert again.input_tokens > unadvised.input_tokens


def test_results_of_tools_only_an_upstream_runs_are_read_in_history(tools_client):
    """A conversation that went through a Claude API upstream before holds tool search and
    advisor results; the local model reads them as tool results."""
    history = [
        {"role": "user", "content": "Find a weather tool, then ask the advisor."},
        {"role": "assistant", "content": [
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "tool_search_tool_regex", "input": {"pattern": "weather"}},
            {"type": "tool_search_tool_result", "tool_use_id": "srvtoolu_1", "content": {
                "type": "tool_search_tool_search_result", "tool_references": [{"type": "tool_reference", "tool_name": "get_weather"}]}},
            {"type": "server_tool_use", "id": "srvtoolu_2", "name": "advisor", "input": {}},
            {"type": "advisor_tool_result", "tool_use_id": "srvtoolu_2", "content": {"type": "advisor_result", "text": "Use get_weather."}},
            {"type": "text", "text": "The advisor says to use get_weather."},
        ]},
        {"role": "user", "content": "Which tool was found?"},
    ]
    count = tools_client.beta.messages.count_tokens(model="claude-sonnet-4-6", messages=history)
    assert count.input_tokens > 20
    message = tools_client.beta.messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=history)
    assert message.content[0].type == "text"


def test_every_server_tool_type_of_the_sdk_runs_or_is_refused_by_name(tools_server):
    """Walks SDK 2.14's tool union: each server tool type is run (the request is accepted)
    when docs/compatibility.md says honoured, and refused with a 400 naming it otherwise."""
    from test_compatibility import doc_rows, tags
    from anthropic.types.beta import BetaToolUnionParam

    rows = doc_rows()["Tool types"]
    server_types = sorted(
        t for t in tags(BetaToolUnionParam)
        if t.startswith(("web_", "code_execution", "tool_search", "advisor", "mcp_toolset"))
    )
    assert server_types, "the SDK walk found no server tool types"
    for kind in server_types:
        name = {"web_fetch": "web_fetch", "web_search": "web_search", "code_execution": "code_execution",
                "tool_search_tool_regex": "tool_search_tool_regex", "tool_search_tool_bm25": "tool_search_tool_bm25",
                "advisor": "advisor"}
        tool = {"type": kind, "name": next((v for k, v in name.items() if kind.startswith(k)), "t")}
        if kind.startswith("advisor"):
            tool["model"] = "claude-sonnet-4-6"
        body = {"model": "claude-sonnet-4-6", "max_tokens": 1,
                "messages": [{"role": "user", "content": "Hi."}], "tools": [tool]}
        if kind == "mcp_toolset":
            tool = {"type": kind, "mcp_server_name": "nowhere"}
            body["tools"] = [tool]
        response = httpx.post(f"{tools_server}/v1/messages", json=body, timeout=120,
                              headers={"x-api-key": API_KEY, "anthropic-version": "2023-06-01"})
        status = rows.get(kind)
        if status == "honoured" and kind != "mcp_toolset":
            assert response.status_code == 200, (kind, response.text)
        else:
            assert response.status_code == 400, (kind, response.text)
            message = response.json()["error"]["message"]
            assert kind in message or "mcp_server_name" in message, (kind, message)


def test_a_name_that_resolves_inside_is_refused(site, tmp_path):
    """DNS that answers with inside addresses: the server runs in a mount namespace whose
    /etc/hosts maps names to 10.x and to loopback, as a hostile resolver would."""
    if os.geteuid() != 0:
        pytest.fail("this test mounts a hosts file in a namespace, which needs root (CI runs as root)")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n10.0.0.5 intranet.example\n127.0.0.1 sneaky.example\n"
                     "8.8.8.8 public.example\n")
    wrap = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            f'mount --bind {hosts} /etc/hosts && exec "$@"', "sh"]
    config = '[server_tools]\nprivate_hosts = ["127.0.0.1"]\nmax_rounds = 1\n'
    server = Missive(config, wrap=wrap).start()
    try:
        client = anthropic.Anthropic(base_url=server.url, api_key=API_KEY, max_retries=0)
        port = site.rsplit(":", 1)[1]
        for url in [f"http://intranet.example:{port}/otters.html", f"http://sneaky.example:{port}/otters.html"]:
            message = fetch(client, url, "what is on the page?")
            [result] = blocks(message, "web_fetch_tool_result")
            assert result.content.type == "web_fetch_tool_result_error", (url, result)
            assert result.content.error_code == "url_not_allowed", (url, result)
        # The control: a name the hosts file maps to a public address passes the check and
        # is then unreachable here (no internet), so the file is what the server read.
        message = fetch(client, "http://public.example/", "what is on the page?")
        [result] = blocks(message, "web_fetch_tool_result")
        assert result.content.error_code == "url_not_accessible", result
    finally:
        server.stop()


def test_a_claude_api_upstream_runs_them_and_its_blocks_pass_through(site):
    """Missive behind Missive: the outer one reaches the inner one as an `anthropic`
    upstream and passes server tools through. Only the inner one may fetch from 127.0.0.1,
    so a page in the answer was fetched there."""
    inner_key = "sk-ant-api03-inner-tools-key"
    inner = Missive('[server_tools]\nprivate_hosts = ["127.0.0.1"]\nmax_rounds = 2\n\n'
                    '[server_tools.code_execution]\nwall_s = 20\n')
    inner.env["MISSIVE_API_KEY"] = inner_key
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
    outer.env["INNER_KEY"] = inner_key
    outer.start()
    try:
        client = anthropic.Anthropic(base_url=outer.url, api_key=API_KEY, max_retries=0)
        url = f"{site}/otters.html"
        message = client.messages.create(
            model="via-missive",
            max_tokens=80,
            messages=[{"role": "user", "content": f"Fetch {url} and then answer in one sentence: what do sea otters do while they sleep?"}],
            tools=[FETCH],
            tool_choice=FORCE_FETCH,
            **sampling(temperature=0.0),
        )
        [call] = blocks(message, "server_tool_use")
        assert call.input == {"url": url}
        [result] = blocks(message, "web_fetch_tool_result")
        assert result.content.type == "web_fetch_result", result
        assert "hold hands" in result.content.content.source.data
        assert message.usage.server_tool_use.web_fetch_requests == 1
        models = httpx.get(f"{outer.url}/v1/models/via-missive", headers={"x-api-key": API_KEY}).json()
        assert models["capabilities"]["server_tools"]["supported"] is True
        # Code execution runs inside too; the container it ran in comes back out, and
        # naming it again reaches the same one.
        def run(prompt, **extra):
            return client.beta.messages.create(
                model="via-missive", max_tokens=120, messages=[{"role": "user", "content": prompt}],
                tools=[{"type": "code_execution_20250825", "name": "code_execution"}],
                tool_choice={"type": "tool", "name": "code_execution", "disable_parallel_tool_use": True},
                betas=["code-execution-2025-08-25"], **sampling(temperature=0.0), **extra)
        ran = run("Run python3 to write the text 'otters' into a file named otters.txt.")
        assert ran.container is not None and ran.container.id.startswith("container_"), ran
        again = run("Run cat otters.txt to show the file.", container=ran.container.id)
        assert again.container.id == ran.container.id
        result = blocks(again, "bash_code_execution_tool_result")[0]
        assert result.content.stdout == "otters\n", result
    finally:
        outer.stop()
        inner.stop()
