"""Every error class maps to the SDK's exception with the right request id."""

import time

import anthropic
import httpx
import pytest

from conftest import API_KEY

MODEL = "claude-opus-4-8"


def check(err, status, error_type):
    assert err.status_code == status
    assert err.body["type"] == "error"
    assert err.body["error"]["type"] == error_type
    assert err.request_id and err.request_id.startswith("req_")
    assert err.body["request_id"] == err.request_id
    return err.body["error"]["message"]


def raw_post(client, body):
    return client.post("/v1/messages", cast_to=object, body=body)


@pytest.mark.parametrize(
    "body, expected",
    [
        ({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}, "max_tokens: Field required"),
        ({"model": MODEL, "max_tokens": 5, "messages": []}, "messages:"),
        ({"model": MODEL, "max_tokens": 5, "messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"model": MODEL, "max_tokens": 5, "temperature": 3, "messages": [{"role": "user", "content": "hi"}]}, "temperature"),
    ],
)
def test_bad_request_names_the_field(client, body, expected):
    with pytest.raises(anthropic.BadRequestError) as info:
        raw_post(client, body)
    assert expected in check(info.value, 400, "invalid_request_error")


def test_unknown_fields_are_refused_by_name(client):
    # As the Claude API does: a field nobody reads is a mistake worth hearing about.
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.create(model=MODEL, max_tokens=2, messages=[{"role": "user", "content": "hi"}],
                               extra_body={"made_up_field": {"x": 1}})
    assert "made_up_field: Extra inputs are not permitted" in refused.value.message


def test_malformed_json_and_wrong_content_type(server):
    headers = {"x-api-key": API_KEY, "content-type": "application/json"}
    r = httpx.post(f"{server}/v1/messages", headers=headers, content=b'{"model": ')
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert r.json()["request_id"] == r.headers["request-id"]
    r = httpx.post(f"{server}/v1/messages", headers={"x-api-key": API_KEY, "content-type": "text/plain"}, content=b"hi")
    assert r.status_code == 400
    assert "Content-Type" in r.json()["error"]["message"]


def test_bad_key_is_authentication_error(server):
    bad = anthropic.Anthropic(base_url=server, api_key="sk-ant-api03-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as info:
        bad.messages.create(model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    check(info.value, 401, "authentication_error")


def test_bearer_token_is_accepted(server):
    bearer = anthropic.Anthropic(base_url=server, auth_token=API_KEY, api_key=None, max_retries=0)
    assert bearer.models.list().data


def test_unknown_model_and_path_are_not_found(client):
    with pytest.raises(anthropic.NotFoundError) as info:
        client.messages.create(model="gpt-4o", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert check(info.value, 404, "not_found_error") == "model: gpt-4o"
    with pytest.raises(anthropic.NotFoundError) as info:
        client.get("/v1/not-a-path", cast_to=object)
    check(info.value, 404, "not_found_error")


def test_wrong_method_is_405(client):
    with pytest.raises(anthropic.APIStatusError) as info:
        client.get("/v1/messages", cast_to=object)
    check(info.value, 405, "invalid_request_error")


def test_body_over_32_mb_is_413(client):
    too_large = getattr(anthropic, "RequestTooLargeError", anthropic.APIStatusError)
    with pytest.raises(too_large) as info:
        raw_post(client, {"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "x" * (33 * 1024 * 1024)}]})
    check(info.value, 413, "request_too_large")


def test_prompt_over_the_context_window(client):
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "hello " * 40000}])
    message = check(info.value, 400, "invalid_request_error")
    assert message.startswith("prompt is too long: ") and message.endswith(" tokens > 32768 maximum")


def test_disconnected_stream_frees_the_model(client):
    # A 2,000-token generation takes over a minute here; if closing the stream did not
    # stop it, the next request would wait behind it.
    with client.messages.stream(
        model=MODEL, max_tokens=2000, messages=[{"role": "user", "content": "Write a very long essay about the sea."}]
    ) as stream:
        for i, _ in enumerate(stream.text_stream):
            if i == 3:
                break
    started = time.time()
    message = client.messages.create(model=MODEL, max_tokens=3, messages=[{"role": "user", "content": "hi"}])
    assert message.stop_reason in ("max_tokens", "end_turn")
    assert time.time() - started < 15
