"""Tenancy and governance through the official SDK and plain HTTP: the key lifecycle on the
CLI, the Admin API's usage and cost reports against the usage the SDK received, a spend
cap, workspaces kept apart, and a usage ledger that survives `kill -9`."""

import threading
import time
from datetime import datetime, timedelta, timezone

import anthropic
import httpx
import pytest

from conftest import API_KEY, Missive, sampling

MODEL = "claude-haiku-4-5"
POLICY = "Example Corp support policy: refunds within 30 days; replies are short and kind. " * 80
# USD per million tokens; cache writes and reads follow the Claude API's multipliers.
INPUT, OUTPUT = 3.0, 15.0
CONFIG = f"""
[prices.default]
input = {INPUT}
output = {OUTPUT}

[spend_limits.workspaces]
capped = 0.00001
"""


@pytest.fixture(scope="module")
def governed():
    server = Missive(CONFIG).start()
    server.admin = server.cli("keys", "create", "--admin", "--name", "ops")
    assert server.admin.startswith("sk-ant-admin01-")
    yield server
    server.stop()


def admin_get(server, path, **params):
    response = httpx.get(server.url + path, params=params, headers={"x-api-key": server.admin}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def workspace_id(server, name):
    workspaces = admin_get(server, "/v1/organizations/workspaces", limit=1000)["data"]
    return next(w["id"] for w in workspaces if w["name"] == name)


def key_id(server, name):
    for line in server.cli("keys", "list").splitlines():
        fields = line.split("\t")
        if fields[4] == name:
            return fields[0]
    raise AssertionError(f"no key named {name}")


def client_for(server, workspace, name=None):
    key = server.cli("keys", "create", "--workspace", workspace, "--name", name or workspace)
    return anthropic.Anthropic(base_url=server.url, api_key=key, max_retries=0)


def ask(client, text, **extra):
    return client.messages.create(
        model=MODEL, max_tokens=6, messages=[{"role": "user", "content": text}], **extra, **sampling(temperature=0)
    )


def since(hours):
    return (datetime.now(timezone.utc) - timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_key_created_on_the_cli_works_until_revoked_there(governed):
    client = client_for(governed, "team-a", "lifecycle")
    assert ask(client, "Say hi.").stop_reason in ("end_turn", "max_tokens")
    kid = key_id(governed, "lifecycle")
    shown = admin_get(governed, f"/v1/organizations/api_keys/{kid}")
    assert shown["status"] == "active" and shown["workspace_id"] == workspace_id(governed, "team-a")
    governed.cli("keys", "revoke", kid)
    with pytest.raises(anthropic.AuthenticationError):
        ask(client, "Still there?")
    assert admin_get(governed, f"/v1/organizations/api_keys/{kid}")["status"] == "inactive"
    actions = governed.cli("audit").splitlines()
    assert any("\tapi_key.revoke\t" + kid in line for line in actions), actions


def test_usage_and_cost_reports_equal_what_the_sdk_received(governed):
    received = {}
    for workspace in ("alpha", "beta"):
        client = client_for(governed, workspace)
        usages = [ask(client, "What is 2+2?").usage, ask(client, "Name a colour.").usage]
        with client.messages.stream(
            model=MODEL, max_tokens=6, messages=[{"role": "user", "content": "Say yes."}], **sampling(temperature=0)
        ) as stream:
            usages.append(stream.get_final_message().usage)
        if workspace == "alpha":
            # A cached system prompt: the first call writes it, the second reads it.
            for question in ("Can I get a refund?", "How long do refunds take?"):
                usages.append(
                    ask(
                        client,
                        question,
                        system=[{"type": "text", "text": POLICY, "cache_control": {"type": "ephemeral"}}],
                    ).usage
                )
        received[workspace] = usages
    assert received["alpha"][-2].cache_creation_input_tokens > 1024
    assert received["alpha"][-1].cache_read_input_tokens > 1024

    ids = {workspace_id(governed, w): w for w in received}
    report = admin_get(
        governed,
        "/v1/organizations/usage_report/messages",
        starting_at=since(2),
        bucket_width="1h",
        **{"group_by[]": ["workspace_id"], "workspace_ids[]": list(ids)},
    )
    totals = {w: dict(input=0, output=0, read=0, write=0) for w in received}
    for bucket in report["data"]:
        for row in bucket["results"]:
            t = totals[ids[row["workspace_id"]]]
            t["input"] += row["uncached_input_tokens"]
            t["output"] += row["output_tokens"]
            t["read"] += row["cache_read_input_tokens"]
            t["write"] += row["cache_creation"]["ephemeral_5m_input_tokens"] + row["cache_creation"]["ephemeral_1h_input_tokens"]
    cents = 0.0
    for workspace, usages in received.items():
        expected = dict(
            input=sum(u.input_tokens for u in usages),
            output=sum(u.output_tokens for u in usages),
            read=sum(u.cache_read_input_tokens or 0 for u in usages),
            write=sum(u.cache_creation_input_tokens or 0 for u in usages),
        )
        assert totals[workspace] == expected, workspace
        cents += (
            expected["input"] * INPUT
            + expected["output"] * OUTPUT
            + expected["write"] * INPUT * 1.25
            + expected["read"] * INPUT * 0.1
        ) / 1e6 * 100

    cost = admin_get(
        governed,
        "/v1/organizations/cost_report",
        starting_at=since(24),
        limit=2,
        **{"group_by[]": ["workspace_id"]},
    )
    billed = sum(
        float(row["amount"])
        for bucket in cost["data"]
        for row in bucket["results"]
        if row["workspace_id"] in ids
    )
    assert abs(billed - cents) < 0.01, (billed, cents)


def test_a_spend_cap_trips_with_the_claude_api_error(governed):
    client = client_for(governed, "capped")
    ask(client, "Hello.")
    with pytest.raises(anthropic.BadRequestError) as refused:
        ask(client, "Hello again.")
    assert "usage limits" in refused.value.message
    assert "regain access" in refused.value.message
    # Another workspace is not affected.
    ask(client_for(governed, "uncapped"), "Hello.")


def test_workspaces_are_kept_apart(governed):
    a = client_for(governed, "iso-a")
    b = client_for(governed, "iso-b")
    # A workspace key sees no organization data: 403, not the data.
    for path in ("/v1/organizations/me", "/v1/organizations/api_keys", "/v1/organizations/workspaces"):
        response = httpx.get(governed.url + path, headers={"x-api-key": a.api_key})
        assert response.status_code == 403, path
        assert response.json()["error"]["type"] == "permission_error"
    governed.cli("kill-switch", "on", "--workspace", "iso-a")
    with pytest.raises(anthropic.PermissionDeniedError) as refused:
        ask(a, "Hello.")
    assert "kill switch" in refused.value.message
    ask(b, "Hello.")
    governed.cli("kill-switch", "off", "--workspace", "iso-a")
    ask(a, "Hello.")


def test_the_ledger_survives_kill_9_mid_traffic():
    server = Missive().start()
    admin = server.cli("keys", "create", "--admin")
    answered = []
    stop = threading.Event()

    def traffic(worker):
        client = anthropic.Anthropic(base_url=server.url, api_key=API_KEY, max_retries=0, timeout=60)
        n = 0
        while not stop.is_set():
            n += 1
            try:
                m = ask(client, f"Worker {worker}, request {n}: say a number.")
            except (anthropic.APIConnectionError, anthropic.APIStatusError):
                continue
            answered.append((m._request_id, m.usage))

    threads = [threading.Thread(target=traffic, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    deadline = time.time() + 120
    while len(answered) < 12 and time.time() < deadline:
        time.sleep(0.05)
    server.kill9()
    stop.set()
    for t in threads:
        t.join()
    assert len(answered) >= 12
    server.start()

    # Every request that got its 200 is in the ledger, by request id...
    recorded = {row[0] for row in server.query("SELECT request_id FROM usage_ledger WHERE endpoint = 'messages'")}
    missing = [rid for rid, _ in answered if rid not in recorded]
    assert not missing, missing
    # ...and in the usage report, which counts nothing that was not sent.
    server.admin = admin
    report = admin_get(server, "/v1/organizations/usage_report/messages", starting_at=since(2), bucket_width="1h")
    output = sum(row["output_tokens"] for bucket in report["data"] for row in bucket["results"])
    received = sum(u.output_tokens for _, u in answered)
    in_flight = 4 * 6
    assert received <= output <= received + in_flight
    server.stop()


@pytest.mark.skipif(
    not hasattr(anthropic.Anthropic, "organization"), reason="this SDK release has no Admin API client"
)
def test_admin_api_responses_validate_against_the_sdks_own_types(governed):
    # Strict validation: a missing or mistyped field fails, as it would for typed clients.
    admin = anthropic.Anthropic(
        base_url=governed.url, api_key=governed.admin, max_retries=0, _strict_response_validation=True
    )
    assert admin.organization.retrieve().type == "organization"
    ws = admin.organization.workspaces.create(name="typed")
    assert ws.data_residency.workspace_geo == "us" and ws.tags == {}
    assert ws.id in [w.id for w in admin.organization.workspaces.list(limit=100)]
    assert admin.organization.workspaces.update(ws.id, name="typed-2").name == "typed-2"
    assert admin.organization.workspaces.retrieve(ws.id).name == "typed-2"
    user_id = governed.cli("users", "add", "grace@example.com", "--role", "developer")
    assert admin.organization.users.retrieve(user_id).email == "grace@example.com"
    assert admin.organization.users.update(user_id, role="billing").role == "billing"
    added = httpx.post(
        f"{governed.url}/v1/organizations/workspaces/{ws.id}/members",
        headers={"x-api-key": governed.admin},
        json={"user_id": user_id, "workspace_role": "workspace_user"},
    )
    assert added.status_code == 200, added.text
    member = admin.organization.workspaces.members.retrieve(user_id, workspace_id=ws.id)
    assert member.workspace_role == "workspace_user"
    assert [m.user_id for m in admin.organization.workspaces.members.list(ws.id)] == [user_id]
    key = governed.cli("keys", "create", "--workspace", "typed-2", "--name", "typed-key")
    kid = key_id(governed, "typed-key")
    fetched = admin.organization.api_keys.retrieve(kid)
    assert fetched.scope.type == "workspace" and fetched.scope.workspace_id == ws.id
    assert key.startswith(fetched.partial_key_hint.split("...")[0])
    assert admin.organization.api_keys.update(kid, status="inactive").status == "inactive"
    assert admin.organization.workspaces.archive(ws.id).archived_at is not None
