"""The registry of versioned prompts and schemas (`/v1/missive/…`), used from the official
SDK without changing its calls: a system block `{{prompt:NAME}}` and a schema
`{"$ref": "missive:schemas/NAME"}`."""

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import anthropic
import httpx
import pytest

from conftest import ADMIN_KEY, API_KEY, Missive, sampling

MODEL = "claude-sonnet-4-6"
ORDER = {
    "type": "object",
    "properties": {"size": {"type": "string", "enum": ["small", "large"]}, "count": {"type": "integer"}},
    "required": ["size", "count"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def registry():
    server = Missive().start()
    yield server
    server.stop()


def call(server, method, path, key=API_KEY, headers=None, **kwargs):
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01", **(headers or {})}
    return httpx.request(method, server.url + path, headers=headers, timeout=30, **kwargs)


def ask(client, system, **extra):
    raw = client.messages.with_raw_response.create(
        model=MODEL, max_tokens=8, system=system, messages=[{"role": "user", "content": "Go."}],
        **sampling(temperature=0), **extra,
    )
    return raw.headers, raw.parse()


def tokens(client, system):
    return client.messages.count_tokens(model=MODEL, system=system, messages=[{"role": "user", "content": "Go."}]).input_tokens


def test_versions_are_immutable_and_a_label_move_takes_effect_on_the_next_request(registry):
    client = anthropic.Anthropic(base_url=registry.url, api_key=API_KEY, max_retries=0)
    texts = ["Answer in one word: yes.", "Answer in exactly three short words, all lowercase, about the sea."]
    for i, text in enumerate(texts, start=1):
        created = call(registry, "POST", "/v1/missive/prompts", json={"name": "support", "text": text}).json()
        assert created["type"] == "prompt_version" and created["version"] == i and created["text"] == text
    entry = call(registry, "GET", "/v1/missive/prompts/support").json()
    assert entry["labels"] == {"production": 1} and [v["version"] for v in entry["versions"]] == [1, 2]

    reference = [{"type": "text", "text": "{{prompt:support}}"}]
    headers, message = ask(client, reference)
    assert headers["x-missive-prompt-version"] == "support@1"
    # The resolved prompt is exactly the inline text: the same tokens, the same prefix.
    assert tokens(client, reference) == tokens(client, [{"type": "text", "text": texts[0]}])
    assert message.usage.input_tokens == tokens(client, [{"type": "text", "text": texts[0]}])

    moved = call(registry, "POST", "/v1/missive/prompts/support/labels", json={"label": "production", "version": 2})
    assert moved.status_code == 200 and moved.json()["labels"]["production"] == 2
    headers, _ = ask(client, reference)
    assert headers["x-missive-prompt-version"] == "support@2"
    assert tokens(client, reference) == tokens(client, [{"type": "text", "text": texts[1]}])
    # Pinned versions and other labels, and version 1 exactly as it was saved.
    headers, _ = ask(client, [{"type": "text", "text": "{{prompt:support@1}}"}])
    assert headers["x-missive-prompt-version"] == "support@1"
    call(registry, "POST", "/v1/missive/prompts/support/labels", json={"label": "staging", "version": 1})
    headers, _ = ask(client, "{{prompt:support@staging}}")
    assert headers["x-missive-prompt-version"] == "support@1"
    assert call(registry, "GET", "/v1/missive/prompts/support", params={"version": 1}).json()["text"] == texts[0]
    # The header names a prompt for a client that cannot change its `system`: it goes first.
    headers, _ = ask(client, "Keep it short.", extra_headers={"x-missive-prompt": "support@staging"})
    assert headers["x-missive-prompt-version"] == "support@1"
    both = [{"type": "text", "text": texts[0]}, {"type": "text", "text": "Keep it short."}]
    raw = client.messages.with_raw_response.count_tokens(
        model=MODEL, system="Keep it short.", messages=[{"role": "user", "content": "Go."}],
        extra_headers={"x-missive-prompt": "support@staging"})
    assert raw.parse().input_tokens == tokens(client, both)
    assert call(registry, "POST", "/v1/missive/prompts/support/labels",
                json={"label": "production", "version": 9}).status_code == 404


def test_unknown_names_are_a_400_that_names_them(registry):
    client = anthropic.Anthropic(base_url=registry.url, api_key=API_KEY, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as refused:
        ask(client, [{"type": "text", "text": "{{prompt:nosuch@production}}"}])
    assert "nosuch@production" in refused.value.message and "system.0.text" in refused.value.message
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.create(
            model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "Hi."}],
            extra_body={"output_config": {"format": {"type": "json_schema",
                                                     "schema": {"$ref": "missive:schemas/missing"}}}},
        )
    assert "missing" in refused.value.message and "output_config.format.schema" in refused.value.message


def test_a_schema_is_checked_on_save_fetched_by_label_and_enforced_by_reference(registry):
    client = anthropic.Anthropic(base_url=registry.url, api_key=API_KEY, max_retries=0)
    bad = call(registry, "POST", "/v1/missive/schemas", json={"name": "order", "schema": {"type": 5}})
    assert bad.status_code == 400 and "schema" in bad.json()["error"]["message"]
    saved = call(registry, "POST", "/v1/missive/schemas", json={"name": "order", "schema": ORDER}).json()
    assert saved["type"] == "schema_version" and saved["version"] == 1
    fetched = call(registry, "GET", "/v1/missive/schemas/order", params={"label": "production"}).json()
    assert fetched["schema"] == ORDER

    reference = {"$ref": "missive:schemas/order@production"}
    raw = client.messages.with_raw_response.create(
        model=MODEL, max_tokens=60, messages=[{"role": "user", "content": "Order some coffee."}],
        extra_body={"output_config": {"format": {"type": "json_schema", "schema": reference}}, "temperature": 1.0},
    )
    assert raw.headers["x-missive-schema-version"] == "order@1"
    answer = json.loads(raw.parse().content[0].text)
    assert answer["size"] in ("small", "large") and isinstance(answer["count"], int)
    assert set(answer) == {"size", "count"}, "the grammar held the stored schema"

    message = client.messages.create(
        model=MODEL, max_tokens=60, messages=[{"role": "user", "content": "Order some tea."}],
        tools=[{"name": "place_order", "description": "Place an order", "input_schema": reference}],
        tool_choice={"type": "tool", "name": "place_order"},
    )
    call_block = next(b for b in message.content if b.type == "tool_use")
    assert call_block.input["size"] in ("small", "large") and set(call_block.input) == {"size", "count"}

    # Greedy decoding under the referenced schema and under the same schema inline: the
    # grammar is the same, so the answers are the same.
    def greedy(schema):
        return client.messages.create(
            model=MODEL, max_tokens=40, messages=[{"role": "user", "content": "Order some juice."}],
            extra_body={"output_config": {"format": {"type": "json_schema", "schema": schema}}, "temperature": 0.0},
        ).content[0].text
    assert greedy(reference) == greedy(ORDER)


def test_a_70_30_split_lands_within_5_percent_sticks_per_user_and_the_report_groups_by_version(registry):
    client = anthropic.Anthropic(base_url=registry.url, api_key=API_KEY, max_retries=0)
    for text in ["Reply with the letter A.", "Reply with the letter B, in capitals."]:
        call(registry, "POST", "/v1/missive/prompts", json={"name": "ab", "text": text})
    split = [{"version": 1, "weight": 70}, {"version": 2, "weight": 30}]
    entry = call(registry, "POST", "/v1/missive/prompts/ab/labels", json={"label": "production", "split": split}).json()
    assert entry["splits"] == {"production": split} and "production" not in entry["labels"]
    started = (datetime.now(timezone.utc) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def one(user):
        raw = client.messages.with_raw_response.create(
            model=MODEL, max_tokens=1, system="{{prompt:ab}}", messages=[{"role": "user", "content": "Go."}],
            metadata={"user_id": f"user-{user}"},
        )
        return raw.headers["x-missive-prompt-version"], raw.parse().usage

    with ThreadPoolExecutor(4) as pool:
        served = list(pool.map(one, range(1000)))
    counts = Counter(version for version, _ in served)
    assert set(counts) == {"ab@1", "ab@2"}
    assert abs(counts["ab@1"] / 1000 - 0.70) <= 0.05, counts
    # A user keeps their version, so a conversation does not change prompts halfway.
    again = [one(user) for user in range(25)]
    assert [version for version, _ in again] == [version for version, _ in served[:25]]

    # The usage report grouped by prompt version is what the clients were told they used.
    report = httpx.get(
        registry.url + "/v1/organizations/usage_report/messages",
        params={"starting_at": started, "bucket_width": "1d", "group_by[]": ["prompt_version"],
                "prompt_versions[]": ["ab@1", "ab@2"]},
        headers={"x-api-key": ADMIN_KEY}, timeout=30,
    ).json()
    reported, received = Counter(), Counter()
    for bucket in report["data"]:
        for row in bucket["results"]:
            written = row["cache_creation"]["ephemeral_5m_input_tokens"] + row["cache_creation"]["ephemeral_1h_input_tokens"]
            reported[row["prompt_version"], "input"] += row["uncached_input_tokens"] + written
            reported[row["prompt_version"], "cache_read"] += row["cache_read_input_tokens"]
            reported[row["prompt_version"], "output"] += row["output_tokens"]
    for version, usage in served + again:
        received[version, "input"] += usage.input_tokens + (usage.cache_creation_input_tokens or 0)
        received[version, "cache_read"] += usage.cache_read_input_tokens or 0
        received[version, "output"] += usage.output_tokens
    assert reported == received


def test_an_admin_key_manages_the_registry_of_the_workspace_it_names(registry):
    registry.cli("keys", "create", "--workspace", "managed", "--name", "managed")
    workspaces = httpx.get(registry.url + "/v1/organizations/workspaces",
                           headers={"x-api-key": ADMIN_KEY, "anthropic-version": "2023-06-01"}).json()["data"]
    managed = next(w["id"] for w in workspaces if w["name"] == "managed")
    unnamed = call(registry, "POST", "/v1/missive/prompts", key=ADMIN_KEY, json={"name": "ops", "text": "Be terse."})
    assert unnamed.status_code == 400 and "anthropic-workspace-id" in unnamed.json()["error"]["message"]
    named = {"anthropic-workspace-id": managed}
    created = call(registry, "POST", "/v1/missive/prompts", key=ADMIN_KEY, headers=named,
                   json={"name": "ops", "text": "Be terse."})
    assert created.status_code == 200 and created.json()["version"] == 1
    listed = call(registry, "GET", "/v1/missive/prompts", key=ADMIN_KEY, headers=named).json()["data"]
    assert [e["name"] for e in listed] == ["ops"]
    assert call(registry, "GET", "/v1/missive/prompts/ops").status_code == 404, "not the default workspace's"
    nowhere = call(registry, "GET", "/v1/missive/prompts", key=ADMIN_KEY,
                   headers={"anthropic-workspace-id": "wrkspc_nosuch"})
    assert nowhere.status_code == 404


def test_a_workspace_sees_only_its_own_registry(registry):
    other = registry.cli("keys", "create", "--workspace", "elsewhere", "--name", "elsewhere")
    assert call(registry, "GET", "/v1/missive/prompts/support", key=other).status_code == 404
    assert call(registry, "GET", "/v1/missive/prompts", key=other).json()["data"] == []
    client = anthropic.Anthropic(base_url=registry.url, api_key=other, max_retries=0)
    with pytest.raises(anthropic.BadRequestError):
        ask(client, "{{prompt:support}}")
