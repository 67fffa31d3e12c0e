"""Tool use and structured outputs through the official SDK, on the real default model."""

import json

import anthropic
import pytest

from conftest import WEATHER_TOOL, sampling, stream_tool_input

MODEL = "claude-opus-4-8"

TIME_TOOL = {
    "name": "get_time",
    "description": "Get the current time in a given time zone",
    "input_schema": {
        "type": "object",
        "properties": {"timezone": {"type": "string", "description": "An IANA time zone"}},
        "required": ["timezone"],
    },
}


def tool_uses(message):
    return [block for block in message.content if block.type == "tool_use"]


def test_two_step_weather_example(client):
    question = {"role": "user", "content": "What's the weather like in San Francisco?"}
    first = client.messages.create(
        model=MODEL, max_tokens=256, tools=[WEATHER_TOOL], messages=[question], **sampling(temperature=0)
    )
    assert first.stop_reason == "tool_use"
    [call] = tool_uses(first)
    assert call.id.startswith("toolu_")
    assert call.name == "get_weather"
    assert "San Francisco" in call.input["location"]

    history = [
        question,
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "15 degrees, sunny"}]},
    ]
    # The 0.5B default model tends to call the tool again rather than answer; starting its
    # answer (an assistant prefill) makes it write one. The temperature it then reports can
    # only come from the tool result.
    second = client.messages.create(
        model=MODEL,
        max_tokens=64,
        tools=[WEATHER_TOOL],
        messages=history + [{"role": "assistant", "content": "The weather in San Francisco is"}],
        **sampling(temperature=0),
    )
    assert second.stop_reason == "end_turn"
    assert second.content[0].type == "text"
    assert "15" in second.content[0].text, second.content[0].text
    assert second.usage.input_tokens == client.messages.count_tokens(
        model=MODEL,
        tools=[WEATHER_TOOL],
        messages=history + [{"role": "assistant", "content": "The weather in San Francisco is"}],
    ).input_tokens

    # Without the prefill the reply is still one well-formed turn: an answer or one call.
    again = client.messages.create(
        model=MODEL, max_tokens=128, tools=[WEATHER_TOOL], messages=history, **sampling(temperature=0)
    )
    assert again.stop_reason in ("end_turn", "tool_use")
    assert len(tool_uses(again)) <= 1


@pytest.mark.parametrize("choice", [{"type": "any"}, {"type": "tool", "name": "get_time"}])
def test_forced_tool_choice(client, choice):
    message = client.messages.create(
        model=MODEL,
        max_tokens=128,
        tools=[WEATHER_TOOL, TIME_TOOL],
        tool_choice=choice,
        messages=[{"role": "user", "content": "Hello! How are you today?"}],
        **sampling(temperature=0),
    )
    assert message.stop_reason == "tool_use"
    calls = tool_uses(message)
    assert calls
    if choice["type"] == "tool":
        assert calls[0].name == "get_time"
        assert isinstance(calls[0].input.get("timezone"), str)
    else:
        assert calls[0].name in ("get_weather", "get_time")


def test_tool_choice_none_answers_in_text(client):
    message = client.messages.create(
        model=MODEL,
        max_tokens=64,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "none"},
        messages=[{"role": "user", "content": "What's the weather like in San Francisco?"}],
        **sampling(temperature=0),
    )
    assert message.stop_reason != "tool_use"
    assert not tool_uses(message)
    assert message.content[0].type == "text" and message.content[0].text.strip()


def test_streamed_tool_input_is_accumulated_by_the_stream_helper(client):
    partials = []
    with client.messages.stream(
        model=MODEL,
        max_tokens=256,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[{"role": "user", "content": "Is it raining in Paris, France?"}],
        **sampling(temperature=0),
    ) as stream:
        for event in stream:
            if event.type == "input_json":
                partials.append(event.partial_json)
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    [call] = tool_uses(final)
    assert len(partials) > 1
    assert json.loads("".join(partials)) == call.input
    assert "Paris" in call.input["location"]


def test_tool_input_streams_while_the_call_is_decoded(client):
    """A call cut off by max_tokens has already been streamed: its pieces arrived while it
    was being written, and the final message keeps the partial input, as the API does."""
    kwargs = dict(
        model=MODEL,
        max_tokens=16,  # the forced call's opening counts too; this stops inside "location"
        tools=[WEATHER_TOOL],
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[{"role": "user", "content": "Is it raining in San Francisco, California?"}],
        **sampling(temperature=0),
    )
    final, partials = stream_tool_input(client, **kwargs)
    assert final.stop_reason == "max_tokens"
    [call] = tool_uses(final)
    streamed = "".join(partials)
    assert len(partials) > 1 and streamed.startswith("{"), partials
    with pytest.raises(json.JSONDecodeError):
        json.loads(streamed)  # cut short: the pieces came before the call was complete
    assert isinstance(call.input, dict)
    # Not streamed, the same reply keeps the same partial input.
    message = client.messages.create(**kwargs)
    assert message.stop_reason == "max_tokens"
    assert [c.input for c in tool_uses(message)] == [call.input]


def test_strict_tool_input_matches_its_schema(client):
    tool = dict(
        WEATHER_TOOL,
        strict=True,
        input_schema={
            "type": "object",
            "properties": {
                "location": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location", "unit"],
            "additionalProperties": False,
        },
    )
    message = client.messages.create(
        model=MODEL,
        max_tokens=128,
        tools=[tool],
        tool_choice={"type": "any"},
        messages=[{"role": "user", "content": "Weather in Tokyo?"}],
        **sampling(temperature=1.0),
    )
    # At temperature 1.0 the model may call more than once (parallel calls are allowed);
    # every call must match the strict schema.
    calls = tool_uses(message)
    assert calls
    for call in calls:
        assert set(call.input) == {"location", "unit"}
        assert call.input["unit"] in ("celsius", "fahrenheit")


def test_structured_output_is_json_of_the_schema(client):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
        "additionalProperties": False,
    }
    message = client.messages.create(
        model=MODEL,
        max_tokens=128,
        messages=[{"role": "user", "content": "Name a large city and its population."}],
        extra_body={"output_config": {"format": {"type": "json_schema", "schema": schema}}},
    )
    data = json.loads(message.content[0].text)
    assert set(data) == {"city", "population"}
    assert isinstance(data["population"], int)


def test_tool_errors_name_the_problem(client):
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(
            model=MODEL,
            max_tokens=16,
            tools=[WEATHER_TOOL],
            tool_choice={"type": "tool", "name": "get_stock_price"},
            messages=[{"role": "user", "content": "hi"}],
        )
    assert "get_stock_price" in err.value.message
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(
            model=MODEL, max_tokens=16, tools=[WEATHER_TOOL, WEATHER_TOOL], messages=[{"role": "user", "content": "hi"}]
        )
    assert "unique" in err.value.message
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(
            model=MODEL,
            max_tokens=16,
            tools=[dict(WEATHER_TOOL, input_schema={"type": "object", "properties": {"a": {"type": 12}}})],
            messages=[{"role": "user", "content": "hi"}],
        )
    assert "input_schema" in err.value.message
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(
            model=MODEL,
            max_tokens=16,
            messages=[
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "x", "input": {}}]},
                {"role": "user", "content": "no result here"},
            ],
        )
    assert "toolu_1" in err.value.message


def test_thinking_on_the_default_model_runs_and_is_reported_ignored(client):
    raw = client.messages.with_raw_response.create(
        model=MODEL,
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "Say hi."}],
    )
    assert raw.headers["x-missive-thinking"].startswith("ignored")
    message = raw.parse()
    assert [block.type for block in message.content] == ["text"]
    info = client.models.retrieve(MODEL)
    assert info.capabilities is None or not info.capabilities.thinking.supported


def test_anthropic_client_tools_reach_the_model_with_their_published_schemas(client):
    # The request names only the type; the model gets the schema Anthropic publishes.
    editor = {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"}
    message = client.messages.create(
        model=MODEL,
        max_tokens=300,
        tools=[{"type": "bash_20250124", "name": "bash"}, editor],
        tool_choice={"type": "tool", "name": "str_replace_based_edit_tool"},
        messages=[{"role": "user", "content": "Show me /etc/hostname."}],
        **sampling(temperature=0),
    )
    # A forced choice names the first call; a model may add more after it (the 1.5B does).
    call = tool_uses(message)[0]
    assert call.name == "str_replace_based_edit_tool"
    assert call.input["command"] in ("view", "create", "str_replace", "insert"), call.input
    assert isinstance(call.input["path"], str)


def test_a_server_tool_the_model_cannot_run_is_refused_by_type(client):
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.create(
            model=MODEL,
            max_tokens=20,
            tools=[{"type": "code_execution_20250522", "name": "code_execution"}],
            messages=[{"role": "user", "content": "Run some Python."}],
        )
    assert "tools.0.type: `code_execution_20250522` is a server tool" in refused.value.message
    # Web search runs here only against a search service the operator configured.
    with pytest.raises(anthropic.BadRequestError) as unconfigured:
        client.messages.create(
            model=MODEL,
            max_tokens=20,
            tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 2}],
            messages=[{"role": "user", "content": "Search the news."}],
        )
    assert "tools.0.type: `web_search_20250305` needs a search service" in unconfigured.value.message
