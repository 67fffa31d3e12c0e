"""docs/compatibility.md against the installed SDK's own types: every request parameter,
content block, tool type, stream event and stop reason the SDK knows has a row, and every
row marked refused is refused by a 400 that names it (issue 19)."""

import os
import re
import typing

import anthropic
import httpx
import pytest

from conftest import API_KEY

MODEL = "claude-opus-4-8"
DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "compatibility.md")
STATUSES = {"honoured", "degraded", "refused"}


def doc_rows():
    """{section title: {name: status}} from the doc's tables."""
    sections, current = {}, None
    for line in open(DOC, encoding="utf-8"):
        if line.startswith("## "):
            current = sections.setdefault(line[3:].strip(), {})
        row = re.match(r"^\| `([^`]+)` \| (\w+) \|", line)
        if row and current is not None:
            name, status = row.groups()
            assert status in STATUSES, f"{name}: unknown status {status}"
            assert name not in current, f"{name} has two rows"
            current[name] = status
    return sections


def members(tp):
    if typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    if typing.get_origin(tp) is typing.Union:
        for arg in typing.get_args(tp):
            yield from members(arg)
    else:
        yield tp


def tags(union):
    """The `type` values of a union's members: pydantic models and TypedDicts alike."""
    found = []
    for member in members(union):
        if hasattr(member, "model_fields"):
            found += typing.get_args(member.model_fields["type"].annotation)
        elif "type" in getattr(member, "__annotations__", {}):
            literal = re.search(r"Literal\[([^\]]*)\]", str(member.__annotations__["type"]))
            found += re.findall(r"['\"]([^'\"]+)['\"]", literal.group(1))
    return set(found)


def typed_dict_keys(td):
    return set(td.__required_keys__) | set(td.__optional_keys__)


def sdk_names():
    """What the installed SDK can send and receive, by the doc's section."""
    from anthropic.types import message_create_params as ga
    from anthropic.types.beta import message_create_params as beta
    from anthropic.types.beta import message_count_tokens_params as count
    from anthropic.types.beta import beta_tool_result_block_param as tool_result
    B = anthropic.types.beta
    params = typed_dict_keys(ga.MessageCreateParamsBase) | typed_dict_keys(beta.MessageCreateParamsBase)
    params |= typed_dict_keys(count.MessageCountTokensParams)
    return {
        "Request parameters": params,
        "Content blocks": tags(B.BetaContentBlockParam) | tags(tool_result.Content),
        "Tool types": tags(B.BetaToolUnionParam),
        "Response content blocks": tags(B.BetaContentBlock),
        "Stream events and deltas": tags(B.BetaRawMessageStreamEvent) | tags(B.BetaRawContentBlockDelta),
        "Stop reasons": set(typing.get_args(B.BetaStopReason)),
    }


def test_every_name_in_the_sdks_types_has_a_row():
    rows = doc_rows()
    for section, names in sdk_names().items():
        assert names, f"the SDK walk found nothing for {section}"
        missing = sorted(names - set(rows.get(section, {})))
        assert not missing, f"docs/compatibility.md, {section}: no row for {missing}"


def post(server, body, headers=None):
    return httpx.post(f"{server}/v1/messages", json=body, timeout=120,
                      headers={"x-api-key": API_KEY, "anthropic-version": "2023-06-01", **(headers or {})})


def refused_with(response, name):
    assert response.status_code == 400, (name, response.status_code, response.text)
    message = response.json()["error"]["message"]
    assert name in message, (name, message)


# A value that asks for what Missive does not do, for each refused request parameter.
REFUSED_SAMPLES = {
    "container": "cntr_011CZ",
    "billing_policy": {"type": "billing_policy", "bill_to": "user_profile"},
    "fallbacks": ["claude-haiku-4-5"],
    "fallback_credit_token": "fct_011CZ",
    "thread": {"type": "create"},
}
# Parameters the SDK sends as headers.
HEADER_SAMPLES = {"user_profile_id": ("anthropic-user-profile-id", "uprof_011CZ")}
# An accepted value for each degraded parameter.
DEGRADED_SAMPLES = {
    "service_tier": "standard_only",
    "diagnostics": {"previous_message_id": "msg_011CZ"},
    "inference_geo": "us",
    "speed": "fast",
    "thinking": {"type": "enabled", "budget_tokens": 1024},
}


def base(**extra):
    return {"model": MODEL, "max_tokens": 1, "messages": [{"role": "user", "content": "Hi."}], **extra}


def test_refused_parameters_get_a_400_that_names_them(server):
    refused = [n for n, s in doc_rows()["Request parameters"].items() if s == "refused"]
    for name in refused:
        if name in HEADER_SAMPLES:
            header, value = HEADER_SAMPLES[name]
            refused_with(post(server, base(), {header: value}), header)
            continue
        assert name in REFUSED_SAMPLES, f"no sample value for refused parameter {name}"
        refused_with(post(server, base(**{name: REFUSED_SAMPLES[name]})), name)
    refused_with(post(server, base(made_up_field=1)), "made_up_field: Extra inputs are not permitted")


def test_degraded_parameters_are_accepted(server):
    degraded = [n for n, s in doc_rows()["Request parameters"].items() if s == "degraded"]
    for name in degraded:
        assert name in DEGRADED_SAMPLES, f"no sample value for degraded parameter {name}"
        response = post(server, base(**{name: DEGRADED_SAMPLES[name]}, max_tokens=1100))
        assert response.status_code == 200, (name, response.text)


def test_refused_content_blocks_get_a_400_that_names_them(server):
    refused = [n for n, s in doc_rows()["Content blocks"].items() if s == "refused"]
    assert refused
    for kind in refused:
        block = {"type": kind}
        messages = [{"role": "user", "content": [block, {"type": "text", "text": "Hi."}]}]
        response = post(server, {"model": MODEL, "max_tokens": 1, "messages": messages})
        refused_with(response, kind)
        # Inside a tool result, too.
        messages = [
            {"role": "user", "content": "Hi."},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [block]}]},
        ]
        tools = [{"name": "f", "input_schema": {"type": "object"}}]
        refused_with(post(server, {"model": MODEL, "max_tokens": 1, "tools": tools, "messages": messages}), kind)


def test_refused_tool_types_get_a_400_that_names_them(server):
    refused = [n for n, s in doc_rows()["Tool types"].items() if s == "refused"]
    assert refused
    for kind in refused:
        response = post(server, base(tools=[{"type": kind, "name": "t"}]))
        refused_with(response, kind)


ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
# Where a user or a test copies a model name from: the docs, the test suites, the benches
# and the CLI's defaults.
MODEL_NAME_SOURCES = ["README.md", "docs", "tests", "bench", "crates/missive/src"]


def test_no_model_name_we_show_or_send_is_one_the_sdk_calls_deprecated():
    """The SDK warns on every call with a model past or near its end of life; a new release
    that deprecates a name we use fails here."""
    deprecated = pytest.importorskip("anthropic._data.deprecated_models").DEPRECATED_MODELS
    found = {}
    for source in MODEL_NAME_SOURCES:
        path = os.path.join(ROOT, source)
        files = [path] if os.path.isfile(path) else [
            os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs
            if f.endswith((".md", ".py", ".rs", ".ts", ".toml")) and "node_modules" not in d
        ]
        for file in files:
            for name in re.findall(r"claude-[a-z0-9-]+", open(file, encoding="utf-8").read()):
                if name in deprecated:
                    found.setdefault(name, set()).add(os.path.relpath(file, ROOT))
    assert not found, {name: sorted(files) for name, files in found.items()}
