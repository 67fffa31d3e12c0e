"""The 1.5B agent model in the conformance run (issue 20): the two-step weather loop (a
call, its result, an answer that can only come from the result), with the call's input
streamed while it is written.

Measured at temperature 0: offered the tool again after its result, the 1.5B model calls it
again with the same input, as the 0.5B one does (which an assistant prefill fixes,
tests/conformance/test_tools.py). Here the answering turn sends `tool_choice: none`
instead, with no prefill: the answer then comes from the result."""

import json

import anthropic
import pytest

from harness import API_KEY, WEATHER_TOOL, agent_server, stream_tool_input

MODEL = "claude-opus-4-8"


@pytest.fixture(scope="module")
def client():
    server = agent_server()
    yield anthropic.Anthropic(base_url=server.url, api_key=API_KEY, max_retries=0)
    server.stop()


def tool_uses(message):
    return [block for block in message.content if block.type == "tool_use"]


def test_the_weather_loop_answers_from_the_result_without_a_prefill(client):
    question = {"role": "user", "content": "What's the weather like in San Francisco?"}
    first, pieces = stream_tool_input(client, model=MODEL, max_tokens=256, tools=[WEATHER_TOOL], messages=[question])
    assert first.stop_reason == "tool_use", first.content
    [call] = tool_uses(first)
    assert call.name == "get_weather" and "San Francisco" in call.input["location"]
    assert len(pieces) > 2 and json.loads("".join(pieces)) == call.input

    second = client.messages.create(
        model=MODEL,
        max_tokens=128,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "none"},
        messages=[
            question,
            {"role": "assistant", "content": first.content},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "15 degrees, sunny"}]},
        ],
    )
    assert second.stop_reason == "end_turn", second.content
    text = "".join(block.text for block in second.content if block.type == "text")
    assert "15" in text, text
