"""What an operator does in the console, in a real browser, against a real server and the
default model; the official SDK plays the operator's users."""

import base64
import json
import os
import pathlib
import re
import subprocess
import sys
import time

import anthropic
import httpx
import pytest
from playwright.sync_api import expect

from conftest import ADMIN_KEY, Missive

MODEL = "claude-sonnet-4-6"
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                     "additionalProperties": False},
}
ORDER = {
    "type": "object",
    "properties": {"size": {"type": "string", "enum": ["small", "large"]}, "count": {"type": "integer"}},
    "required": ["size", "count"],
    "additionalProperties": False,
}
# Where page screenshots go: `MISSIVE_CONSOLE_SCREENSHOTS=docs/console` writes the committed ones.
SHOTS = os.environ.get("MISSIVE_CONSOLE_SCREENSHOTS")


def shot(page, name):
    if SHOTS:
        pathlib.Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def server():
    server = Missive().start()
    yield server
    server.stop()


def sign_in(page, server, key):
    page.goto(server.url + "/console")
    page.fill("#key", key)
    page.click("#sign-in button[type=submit]")
    expect(page.locator("#nav")).to_be_visible()


def go(page, view):
    """Shows a view afresh (rendered again when it is the one showing) and waits for it."""
    before = page.evaluate("renders")
    page.evaluate(f"location.hash === '#{view}' ? route() : (location.hash = '#{view}')")
    # A function, not an expression: the console's policy forbids eval.
    page.wait_for_function("(before) => renders > before", arg=before)
    expect(page.locator(f"#page[data-page={view}]")).to_be_attached()


def logged(page, check, errors_only=False):
    """Shows the request log until `check(rows)` holds: rows reach it a moment after their
    response (the log is written off the request path)."""
    deadline = time.time() + 15
    while True:
        go(page, "requests")
        if errors_only:
            page.check("#log-errors")
            page.click("[data-testid=log-filter] button")
            page.wait_for_load_state()
        rows = page.locator("[data-testid=request-log] tbody tr")
        if check(rows) or time.time() > deadline:
            return rows
        time.sleep(0.2)


def ask(key, server, system="Say hi.", **extra):
    client = anthropic.Anthropic(base_url=server.url, api_key=key, max_retries=0)
    return client.messages.with_raw_response.create(
        model=MODEL, max_tokens=4, system=system, messages=[{"role": "user", "content": "Go."}], **extra)


def new_workspace(page, name):
    """Creates a workspace from the workspaces page; its section there."""
    go(page, "workspaces")
    page.fill("#workspace-name", name)
    page.click("[data-testid=create-workspace] button")
    section = page.locator(f"[data-testid=workspace-{name}]")
    expect(section).to_be_visible()
    return section


def session_client(server, key):
    """An HTTP client holding a console session, and the session's CSRF token."""
    http = httpx.Client(base_url=server.url, timeout=30)
    opened = http.post("/console/session", json={"key": key})
    assert opened.status_code == 200, opened.text
    return http, opened.json()["csrf_token"]


def test_an_operator_runs_a_workspace_from_the_console(server, page):
    page.goto(server.url + "/console")
    shot(page, "sign-in")
    sign_in(page, server, ADMIN_KEY)

    # A workspace and a key; the secret is shown once.
    team = new_workspace(page, "team-a")
    team.locator("[data-testid=key-name]").fill("app")
    team.locator("[data-testid=create-key] button").click()
    secret = page.locator("[data-testid=new-secret]").inner_text()
    assert secret.startswith("sk-ant-api03-")
    shot(page, "workspaces")
    go(page, "workspaces")
    assert secret not in page.content(), "the secret is shown once"

    # Traffic through the SDK shows in the chart and the request log.
    used = ask(secret, server).parse().usage
    go(page, "overview")
    total = used.input_tokens + (used.cache_read_input_tokens or 0) + (used.cache_creation_input_tokens or 0) + used.output_tokens
    expect(page.locator("[data-testid=usage-total]")).to_contain_text(f"{total} tokens")
    assert page.locator("[data-testid=usage-chart] rect").count() >= 1
    shot(page, "overview")
    ask(secret, server, system="Say bye.")
    go(page, "overview")
    expect(page.locator("[data-testid=usage-total]")).not_to_contain_text(f"{total} tokens")
    # Broken down by workspace, the chart's legend names the workspace's id.
    page.select_option("#group", "workspace")
    expect(page.locator(".legend")).to_contain_text("wrkspc_")
    log = logged(page, lambda rows: rows.count() == 2)
    expect(log).to_have_count(2)
    expect(log.first).to_contain_text("POST /v1/messages")
    assert int(log.first.locator("td").nth(1).inner_text()) == 200
    assert int(log.first.locator("td").nth(2).inner_text()) > 0, "latency in milliseconds"

    # A limit of one request a minute: the next request is a 429 that says when to retry.
    go(page, "workspaces")
    team.locator("[data-testid=limit-requests_per_minute]").fill("1")
    team.locator("[data-testid=set-limits] button").click()
    expect(team.locator("[data-testid=limit-requests_per_minute]")).to_have_value("1")
    with pytest.raises(anthropic.RateLimitError) as limited:
        for _ in range(2):
            ask(secret, server)
    assert "team-a" in limited.value.message and int(limited.value.response.headers["retry-after"]) >= 1
    # Refusals are in the request log too, and the filter finds them.
    errors = logged(page, lambda rows: rows.count() == 1, errors_only=True)
    expect(errors).to_have_count(1)
    expect(errors.first).to_contain_text("429")
    go(page, "workspaces")
    team.locator("[data-testid=limit-requests_per_minute]").fill("")
    team.locator("[data-testid=limit-spend_cap_usd]").fill("25")
    team.locator("[data-testid=set-limits] button").click()
    expect(team.locator("[data-testid=limit-requests_per_minute]")).to_have_value("")
    assert ask(secret, server).http_response.status_code == 200, "the limit is lifted at once"
    go(page, "overview")
    spend = page.locator("[data-testid=spend] tr", has_text="team-a")
    expect(spend).to_contain_text("$25.0000")

    # The kill switch stops the workspace's traffic, and lets it through again.
    go(page, "workspaces")
    team.locator("[data-testid=kill-switch]").click()
    expect(team).to_contain_text("switched off")
    with pytest.raises(anthropic.PermissionDeniedError):
        ask(secret, server)
    team.locator("[data-testid=kill-switch]").click()
    expect(team).not_to_contain_text("switched off")
    assert ask(secret, server).http_response.status_code == 200
    # One model only, by the name the client uses for it.
    model_id = ask(secret, server).parse().model
    team.locator("[data-testid=kill-model] input").fill(model_id)
    team.locator("[data-testid=kill-model] button").click()
    expect(team.locator(f"[data-testid='killed-{model_id}']")).to_be_visible()
    with pytest.raises(anthropic.PermissionDeniedError):
        ask(secret, server)
    team.locator(f"[data-testid='killed-{model_id}'] button").click()
    expect(team.locator(f"[data-testid='killed-{model_id}']")).to_have_count(0)
    assert ask(secret, server).http_response.status_code == 200

    # A prompt: two versions, used from the SDK, the label moved, the log shows both.
    go(page, "prompts")
    page.select_option("#prompts-workspace", label="team-a")
    for text in ["Reply with one word: hello.", "Reply with one word: goodbye."]:
        page.fill("[data-testid=prompt-name]", "greeting")
        page.fill("[data-testid=prompt-text]", text)
        page.click("[data-testid=create-prompt] button")
    greeting = page.locator("[data-testid=prompt-greeting]")
    expect(greeting.locator("[data-testid=versions-greeting] tbody tr")).to_have_count(2)
    expect(greeting.locator("[data-testid=labels]")).to_have_text("production → 1")
    assert ask(secret, server, system="{{prompt:greeting}}").headers["x-missive-prompt-version"] == "greeting@1"
    greeting.locator("[data-testid=label-version]").fill("2")
    greeting.locator("[data-testid=move-label] button").click()
    expect(greeting.locator("[data-testid=labels]")).to_have_text("production → 2")
    shot(page, "prompts")
    assert ask(secret, server, system="{{prompt:greeting}}").headers["x-missive-prompt-version"] == "greeting@2"
    log = logged(page, lambda rows: "greeting@2" in rows.first.inner_text())
    expect(log.first).to_contain_text("greeting@2")
    expect(page.locator("[data-testid=request-log]")).to_contain_text("greeting@1")
    shot(page, "requests")

    # The workbench: a streamed, forced tool call, then a structured answer; both valid.
    go(page, "workbench")
    page.select_option("#wb-workspace", label="team-a")
    page.fill("#wb-message", "What is the weather in Paris?")
    page.fill("#wb-tools", json.dumps([WEATHER]))
    page.fill("#wb-forced-tool", "get_weather")
    page.fill("#wb-max-tokens", "60")
    page.click("#wb-run")
    usage = page.locator("[data-testid=wb-usage]")
    # The model streams the answer: give it longer than the default 5 s on a busy machine.
    expect(usage).to_contain_text("stop_reason tool_use", timeout=30_000)
    called = page.locator("[data-testid=wb-block-tool_use] [data-testid=wb-block-body]").inner_text()
    assert set(json.loads(called)) == {"city"}
    expect(page.locator("[data-testid=wb-raw-events]")).to_contain_text("input_json_delta")
    page.fill("#wb-tools", "")
    page.fill("#wb-forced-tool", "")
    page.fill("#wb-schema", json.dumps(ORDER))
    page.fill("#wb-message", "Order two large coffees.")
    page.click("#wb-run")
    expect(usage).to_contain_text("stop_reason end_turn", timeout=30_000)
    answer = json.loads(page.locator("[data-testid=wb-block-text] [data-testid=wb-block-body]").inner_text())
    assert answer["size"] in ("small", "large") and set(answer) == {"size", "count"}
    expect(page.locator("[data-testid=wb-raw-request]")).to_contain_text('"json_schema"')
    # "Get code" reproduces the call: the Python and the curl run as shown.
    page.click("#wb-get-code")
    code = page.locator("[data-testid=wb-code]").inner_text()
    shot(page, "workbench")
    python = code.split("# Python\n")[1].split("\n// TypeScript")[0]
    curl = code.split("# curl\n")[1]
    env = dict(os.environ, ANTHROPIC_API_KEY=secret)
    ran = subprocess.run([sys.executable, "-c", python], env=env, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert set(json.loads(ran.stdout)) == {"size", "count"}
    ran = subprocess.run(["bash", "-c", curl], env=env, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0 and "event: message_stop" in ran.stdout, ran.stdout + ran.stderr
    logged(page, lambda rows: "apikey_console" in page.locator("[data-testid=request-log]").inner_text())
    expect(page.locator("[data-testid=request-log]")).to_contain_text("apikey_console")

    # Revoked, the key stops working at once.
    go(page, "workspaces")
    team.locator("[data-testid=revoke-app]").click()
    expect(team.locator("[data-testid=keys-team-a]")).to_contain_text("inactive")
    with pytest.raises(anthropic.AuthenticationError):
        ask(secret, server)

    go(page, "audit")
    audit = page.locator("[data-testid=audit-log]")
    for action in ["workspace.create", "api_key.create", "workspace.limits", "kill_switch.on", "prompt.label",
                   "api_key.update"]:
        expect(audit).to_contain_text(action)
    shot(page, "audit")
    # The admin key is in no page, script or cookie.
    assert ADMIN_KEY not in page.content()
    for cookie in page.context.cookies():
        payload = cookie["value"].split(".")[0]
        assert ADMIN_KEY not in base64.urlsafe_b64decode(payload + "==").decode(errors="replace")


@pytest.fixture()
def priced():
    """A server with list prices, so that runs cost something."""
    server = Missive(config="[prices.default]\ninput = 3.0\noutput = 15.0\n").start()
    yield server
    server.stop()


def test_members_key_expiry_schemas_splits_and_what_a_run_cost(priced, page):
    """Members added, given another role and removed; a key that expires; a schema with an
    A/B split; the workbench's cost of a run; the overview's date range."""
    server = priced
    sign_in(page, server, ADMIN_KEY)
    team = new_workspace(page, "team-b")

    # A user of the organization, made a member, given another role, removed.
    page.fill("[data-testid=user-email]", "ana@example.com")
    page.fill("[data-testid=user-name]", "Ana")
    page.select_option("[data-testid=user-role]", "developer")
    page.click("[data-testid=add-user] button")
    expect(page.locator("[data-testid=user-list]")).to_contain_text("ana@example.com")
    team.locator("[data-testid=member-user]").select_option(label="ana@example.com")
    team.locator("[data-testid=member-role]").select_option("workspace_developer")
    team.locator("[data-testid=add-member] button").click()
    members = team.locator("[data-testid=member-list]")
    expect(members).to_contain_text("ana@example.com")
    admin, csrf = session_client(server, ADMIN_KEY)
    workspace_id = next(w["id"] for w in admin.get("/console/api/workspaces").json()["data"] if w["name"] == "team-b")
    team.locator("[data-testid='role-ana@example.com']").select_option("workspace_admin")
    deadline = time.time() + 10
    while admin.get(f"/console/api/workspaces/{workspace_id}/members").json()["data"][0]["workspace_role"] != "workspace_admin":
        assert time.time() < deadline, "the role changed"
        time.sleep(0.1)
    shot(page, "members")
    team.locator("[data-testid='remove-ana@example.com']").click()
    expect(members).not_to_contain_text("ana@example.com")
    assert admin.get(f"/console/api/workspaces/{workspace_id}/members").json()["data"] == []
    assert admin.post("/console/api/users", json={"email": "boss@example.com", "name": "", "role": "admin"},
                      headers={"x-missive-csrf": csrf}).status_code == 400, "no admins made from the console"
    ana = next(u["id"] for u in admin.get("/console/api/users").json()["data"] if u["email"] == "ana@example.com")
    assert admin.post("/console/api/workspaces/wrkspc_nowhere/members", json={"user_id": ana, "workspace_role": "workspace_user"},
                      headers={"x-missive-csrf": csrf}).status_code == 404

    # A key that expires in 30 days says so; one made to expire now stops working.
    team.locator("[data-testid=key-name]").fill("temp")
    team.locator("[data-testid=key-expires-days]").fill("30")
    team.locator("[data-testid=create-key] button").click()
    secret = page.locator("[data-testid=new-secret]").inner_text()
    in_30_days = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 30 * 86400))
    expect(team.locator("[data-testid=keys-team-b] tr", has_text="temp")).to_contain_text(in_30_days)
    assert ask(secret, server).http_response.status_code == 200
    key_id = next(k["id"] for k in admin.get("/console/api/keys").json()["data"] if k["name"] == "temp")
    assert admin.post(f"/console/api/keys/{key_id}", json={"expires_in_days": 5000},
                      headers={"x-missive-csrf": csrf}).status_code == 400
    cleared = admin.post(f"/console/api/keys/{key_id}", json={"expires_in_days": 0}, headers={"x-missive-csrf": csrf})
    assert cleared.status_code == 200 and cleared.json()["expires_at"] is None

    # Content capture, opted into for a week: the request and the answer, redacted.
    team.locator("[data-testid=limit-capture_content_days]").fill("7")
    team.locator("[data-testid=set-limits] button").click()
    expect(team.locator("[data-testid=limit-capture_content_days]")).to_have_value("7")
    captured = ask(secret, server, system="Write to ana@example.com; say hi.")
    request_id = captured.headers["request-id"]
    log = logged(page, lambda rows: request_id in page.content())
    page.click(f"[data-testid=content-{request_id}]")
    content = page.locator("[data-testid=request-content]")
    expect(content).to_contain_text("[REDACTED EMAIL]")
    assert "ana@example.com" not in content.inner_text()
    answer_text = captured.parse().content[0].text
    expect(content).to_contain_text(json.dumps(answer_text)[1:-1])
    shot(page, "request-content")
    # Turned off, new requests keep metadata only.
    go(page, "workspaces")
    team.locator("[data-testid=limit-capture_content_days]").fill("")
    team.locator("[data-testid=set-limits] button").click()
    expect(team.locator("[data-testid=limit-capture_content_days]")).to_have_value("")
    uncaptured = ask(secret, server).headers["request-id"]
    logged(page, lambda rows: uncaptured in page.content())
    kept = admin.get(f"/console/api/requests/{uncaptured}/content", params={"workspace_id": workspace_id})
    assert kept.status_code == 404, kept.text
    assert admin.post(f"/console/api/workspaces/{workspace_id}/limits", json={"capture_content_days": 0},
                      headers={"x-missive-csrf": csrf}).status_code == 400
    go(page, "workspaces")

    # A schema, two versions, an A/B split over them; used by reference from the SDK.
    go(page, "schemas")
    page.select_option("#schemas-workspace", label="team-b")
    for schema in [ORDER, {**ORDER, "properties": {**ORDER["properties"], "count": {"type": "integer", "maximum": 9}}}]:
        page.fill("[data-testid=schema-name]", "order")
        page.fill("[data-testid=schema-schema]", json.dumps(schema))
        page.click("[data-testid=create-schema] button")
    order = page.locator("[data-testid=schema-order]")
    expect(order.locator("[data-testid=versions-order] tbody tr")).to_have_count(2)
    expect(order.locator("[data-testid=labels]")).to_have_text("production → 1")
    order.locator("[data-testid=split-label]").fill("trial")
    order.locator("[data-testid=split-weights]").fill("1:70, 2:30")
    order.locator("[data-testid=set-split] button").click()
    expect(order.locator("[data-testid=labels]")).to_have_text("production → 1, trial → 1 (70) / 2 (30)")
    shot(page, "schemas")
    # A bad schema is refused with the registry's own message.
    page.fill("[data-testid=schema-name]", "broken")
    page.fill("[data-testid=schema-schema]", json.dumps({"type": "object", "properties": {"a": {"type": "nope"}}}))
    page.click("[data-testid=create-schema] button")
    expect(page.locator("#page .error")).to_be_visible()
    answered = ask(secret, server, system="Order.", output_config={
        "format": {"type": "json_schema", "schema": {"$ref": "missive:schemas/order@trial"}}})
    assert answered.headers["x-missive-schema-version"] in ("order@1", "order@2")

    # The workbench prices a run from the model's list price.
    go(page, "workbench")
    page.select_option("#wb-workspace", label="team-b")
    page.fill("#wb-max-tokens", "8")
    page.click("#wb-run")
    usage = page.locator("[data-testid=wb-usage]")
    expect(usage).to_contain_text("cost $", timeout=30_000)
    counts = {k: int(v) for k, v in re.findall(r"(input|cache write|cache read|output) (\d+)", usage.inner_text())}
    expected = (counts["input"] * 3.0 + counts["cache write"] * 3.75 + counts["cache read"] * 0.3 + counts["output"] * 15.0) / 1e6
    assert f"cost ${expected:.6f}" in usage.inner_text()

    # The overview's range: today holds the traffic; a range that ended yesterday holds none.
    go(page, "overview")
    expect(page.locator("[data-testid=usage-total]")).not_to_contain_text("0 tokens, $0.0000")
    yesterday = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 86400))
    page.fill("#from", yesterday)
    page.fill("#to", yesterday)
    page.dispatch_event("#to", "change")
    expect(page.locator("[data-testid=usage-total]")).to_have_text("0 tokens, $0.0000 in this range")


def test_changes_without_the_sessions_csrf_token_are_refused(server):
    http, csrf = session_client(server, ADMIN_KEY)
    assert http.post("/console/api/workspaces", json={"name": "no-token"}).status_code == 403
    assert http.post("/console/api/workspaces", json={"name": "bad-token"},
                     headers={"x-missive-csrf": csrf[:-2] + "xx"}).status_code == 403
    _, other_csrf = session_client(server, ADMIN_KEY)
    assert http.post("/console/api/workspaces", json={"name": "other-token"},
                     headers={"x-missive-csrf": other_csrf}).status_code == 403, "a token is bound to its session"
    assert http.post("/console/api/workspaces", json={"name": "with-token"},
                     headers={"x-missive-csrf": csrf}).status_code == 200
    # The session cookie cannot be read by scripts nor sent cross-site.
    opened = httpx.post(server.url + "/console/session", json={"key": ADMIN_KEY})
    cookie = opened.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    # A form post (all a cross-site page can send without CORS) cannot open a session.
    form = httpx.post(server.url + "/console/session", data={"key": ADMIN_KEY})
    assert form.status_code == 400
    # Behind a TLS proxy the cookie is Secure.
    tls = httpx.post(server.url + "/console/session", json={"key": ADMIN_KEY}, headers={"x-forwarded-proto": "https"})
    assert "Secure" in tls.headers["set-cookie"]


def test_a_workspace_user_sees_only_their_workspace(server, page):
    admin, csrf = session_client(server, ADMIN_KEY)
    ids = {}
    for name in ["blue", "green"]:
        ids[name] = admin.post("/console/api/workspaces", json={"name": name}, headers={"x-missive-csrf": csrf}).json()["id"]
    keys = {name: admin.post("/console/api/keys", json={"workspace_id": ids[name], "name": f"{name}-key"},
                             headers={"x-missive-csrf": csrf}).json()["secret"] for name in ids}
    ask(keys["green"], server)
    ask(keys["blue"], server)

    blue, blue_csrf = session_client(server, keys["blue"])
    deadline = time.time() + 10
    while not blue.get("/console/api/requests").json()["data"]:
        assert time.time() < deadline, "the request log has the request"
        time.sleep(0.1)
    assert blue.get("/console/api/requests", params={"workspace_id": ids["green"]}).status_code == 404
    rows = blue.get("/console/api/requests").json()["data"]
    assert rows and {r["workspace_id"] for r in rows} == {ids["blue"]}
    assert {k["workspace_id"] for k in blue.get("/console/api/keys").json()["data"]} == {ids["blue"]}
    assert [w["name"] for w in blue.get("/console/api/workspaces").json()["data"]] == ["blue"]
    for kind in ["prompts", "schemas"]:
        assert blue.get(f"/console/api/registry/{kind}", params={"workspace_id": ids["green"]}).status_code == 404
    assert blue.get("/console/api/users").status_code == 403
    assert blue.get(f"/console/api/workspaces/{ids['green']}/members").status_code == 404
    assert blue.get("/console/api/audit").status_code == 403
    assert blue.post("/console/api/keys", json={"workspace_id": ids["blue"], "name": "x"},
                     headers={"x-missive-csrf": blue_csrf}).status_code == 403
    usage = blue.get("/console/api/usage").json()["data"]
    assert usage, "their own usage is there"
    # A session opens the console's endpoints only: the APIs take keys.
    assert blue.get("/v1/organizations/workspaces").status_code == 401
    assert admin.get("/v1/organizations/workspaces").status_code == 401

    # In the browser: their workspace, no audit log, no other workspace's name anywhere.
    sign_in(page, server, keys["blue"])
    go(page, "workspaces")
    expect(page.locator("[data-testid=workspace-blue]")).to_be_visible()
    assert page.locator("[data-testid=workspace-green]").count() == 0
    expect(page.locator("nav a[href='#audit']")).to_be_hidden()
    go(page, "requests")
    assert ids["green"] not in page.content()

    # Revoking the key that opened a session ends the session.
    green, _ = session_client(server, keys["green"])
    key_id = next(k["id"] for k in admin.get("/console/api/keys", params={"workspace_id": ids["green"]}).json()["data"])
    assert admin.post(f"/console/api/keys/{key_id}", json={"status": "inactive"},
                      headers={"x-missive-csrf": csrf}).status_code == 200
    assert green.get("/console/api/session").status_code == 401


def test_a_session_expires_and_the_admin_key_is_never_shown_or_logged():
    server = Missive(config="[console]\nsession_ttl_s = 2\n").start()
    try:
        http, _ = session_client(server, ADMIN_KEY)
        assert http.get("/console/api/workspaces").status_code == 200
        # Sent again by hand after the browser would have dropped it: the server refuses it.
        cookie = f"missive_console={http.cookies['missive_console']}"
        time.sleep(3)
        expired = httpx.get(server.url + "/console/api/workspaces", headers={"cookie": cookie})
        assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]
        for path in ["/console", "/console/console.js", "/console/console.css"]:
            served = httpx.get(server.url + path)
            assert served.status_code == 200 and ADMIN_KEY not in served.text
            assert "default-src 'self'" in served.headers["content-security-policy"]
    finally:
        server.stop()
    assert ADMIN_KEY not in open(os.path.join(server.home, "serve.log")).read()


def test_without_the_console_there_is_no_console():
    server = Missive(config="[console]\nenabled = false\n").start()
    try:
        assert httpx.get(server.url + "/console").status_code == 404
        assert httpx.post(server.url + "/console/session", json={"key": ADMIN_KEY}).status_code == 404
    finally:
        server.stop()


def test_batches_are_followed_canceled_and_downloaded_and_files_deleted(server, page):
    admin, csrf = session_client(server, ADMIN_KEY)
    workspace = admin.post("/console/api/workspaces", json={"name": "batchers"}, headers={"x-missive-csrf": csrf}).json()
    secret = admin.post("/console/api/keys", json={"workspace_id": workspace["id"], "name": "jobs"},
                        headers={"x-missive-csrf": csrf}).json()["secret"]
    client = anthropic.Anthropic(base_url=server.url, api_key=secret, max_retries=0)

    def params(text, max_tokens):
        return {"model": MODEL, "max_tokens": max_tokens, "messages": [{"role": "user", "content": text}]}

    done = client.messages.batches.create(requests=[
        {"custom_id": f"short-{i}", "params": params("Say hi.", 4)} for i in range(2)])
    deadline = time.time() + 120
    while client.messages.batches.retrieve(done.id).processing_status != "ended":
        assert time.time() < deadline, "the short batch did not end"
        time.sleep(0.5)
    long = client.messages.batches.create(requests=[
        {"custom_id": f"long-{i}", "params": params("Count from one to fifty in words.", 200)} for i in range(40)])
    uploaded = client.beta.files.upload(file=("notes.txt", b"Meeting at noon.", "text/plain"))

    sign_in(page, server, ADMIN_KEY)
    go(page, "batches")
    page.select_option("#batch-workspace", label="batchers")
    page.click("#batches-refresh")
    listed = page.locator("[data-testid=batches]")
    expect(listed.locator("tr", has_text=done.id)).to_contain_text("2 succeeded")
    # Results download as the JSONL the Batches API serves.
    with page.expect_download() as downloaded:
        page.click(f"[data-testid=results-{done.id}]")
    lines = pathlib.Path(downloaded.value.path()).read_text().splitlines()
    assert sorted(json.loads(line)["custom_id"] for line in lines) == ["short-0", "short-1"]
    page.click(f"[data-testid=cancel-{long.id}]")
    expect(listed.locator("tr", has_text=long.id)).not_to_contain_text("in_progress")
    deadline = time.time() + 120
    while (ended := client.messages.batches.retrieve(long.id)).processing_status != "ended":
        assert time.time() < deadline, "the canceled batch did not end"
        time.sleep(0.5)
    assert ended.request_counts.canceled > 0, "requests not yet run were canceled"

    files = page.locator("[data-testid=files]")
    expect(files).to_contain_text("notes.txt")
    shot(page, "batches")
    page.click(f"[data-testid=delete-{uploaded.id}]")
    expect(files).not_to_contain_text("notes.txt")
    with pytest.raises(anthropic.NotFoundError):
        client.beta.files.retrieve_metadata(uploaded.id)
    audit = admin.get("/console/api/audit").json()["data"]
    assert {"batch.cancel", "file.delete"} <= {e["action"] for e in audit}
