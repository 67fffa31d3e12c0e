"""`/v1/chat/completions` with the official OpenAI SDK on the embedded model: the same
backends, keys and limits as the Claude API, in OpenAI's shape."""

import json

import openai
import pytest

from conftest import API_KEY

MODEL = "claude-haiku-4-5"


@pytest.fixture(scope="module")
def oai(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key=API_KEY, max_retries=0)


def test_a_chat_completion(oai):
    c = oai.chat.completions.create(
        model=MODEL, max_tokens=12, temperature=0,
        messages=[{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Say hello."}],
    )
    assert c.object == "chat.completion"
    assert c.choices[0].message.role == "assistant" and c.choices[0].message.content.strip()
    assert c.choices[0].finish_reason in ("stop", "length")
    assert c.usage.prompt_tokens > 5 and c.usage.completion_tokens > 0
    assert c.usage.total_tokens == c.usage.prompt_tokens + c.usage.completion_tokens


def test_streamed_chunks_with_usage(oai):
    stream = oai.chat.completions.create(
        model=MODEL, max_tokens=12, temperature=0, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Count to three."}],
    )
    text, finish, usage = "", None, None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    assert text.strip() and finish in ("stop", "length")
    assert usage is not None and usage.completion_tokens > 0


def test_a_forced_tool_call(oai):
    c = oai.chat.completions.create(
        model=MODEL, max_tokens=64, temperature=0,
        tools=[{"type": "function", "function": {
            "name": "get_weather", "description": "Weather for a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    )
    choice = c.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)


def test_structured_output(oai):
    schema = {"type": "object", "properties": {"color": {"type": "string"}}, "required": ["color"], "additionalProperties": False}
    c = oai.chat.completions.create(
        model=MODEL, max_tokens=32, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
        messages=[{"role": "user", "content": "Name a color."}],
    )
    assert isinstance(json.loads(c.choices[0].message.content)["color"], str)


def test_errors_in_openai_shape(oai):
    with pytest.raises(openai.NotFoundError) as missing:
        oai.chat.completions.create(model="no-such-model", max_tokens=4, messages=[{"role": "user", "content": "hi"}])
    assert missing.value.body["type"] == "not_found_error"
    bad_key = openai.OpenAI(base_url=oai.base_url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad_key.chat.completions.create(model=MODEL, max_tokens=4, messages=[{"role": "user", "content": "hi"}])


def test_a_late_system_message_stays_where_it_stands(oai):
    history = [
        {"role": "user", "content": "Hi."},
        {"role": "assistant", "content": "Hello!"},
        {"role": "system", "content": "From now on, answer in capital letters."},
        {"role": "user", "content": "Name a colour."},
    ]
    late = oai.chat.completions.create(model=MODEL, max_tokens=4, temperature=0, messages=history)
    plain = oai.chat.completions.create(
        model=MODEL, max_tokens=4, temperature=0, messages=[m for m in history if m["role"] != "system"])
    assert late.usage.prompt_tokens >= plain.usage.prompt_tokens + 8
