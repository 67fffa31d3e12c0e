"""Tool formats per model family (issue 20). A template with no tool format of its own gets
the described format: Missive lists the tools in the system turn and teaches the
`<tool_call>` form, under the same grammar. Shown on Gemma 3 270M (a base model whose
vocabulary has no `<tool_call>` token, so a call opens on the marker's text) and on the
default model served with `tool_format = "described"`. The XML families (Qwen3-Coder's and
GLM's), DeepSeek V3.1's markers, Llama 3's bare JSON, Mistral's array and gpt-oss's harmony
channels are shown on the default model served under each family's own template."""

import json
import os

import anthropic
import pytest

from conftest import API_KEY, Missive, sampling, stream_tool_input

MODEL = "claude-opus-4-8"


def city_tool(**extra):
    return {
        "name": "get_weather",
        "description": "Get the current weather in a given city",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 3}},
            "required": ["city"],
            "additionalProperties": False,
        },
        **extra,
    }


def location_tool(**schema):
    return {
        "name": "get_weather",
        "description": "Get the current weather in a given location",
        "input_schema": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
            **schema,
        },
    }


def serve(**env):
    server = Missive()
    server.env.update(env)
    server.start()
    return server, anthropic.Anthropic(base_url=server.url, api_key=API_KEY, max_retries=0)


@pytest.fixture(scope="module")
def gemma():
    model = os.environ.get("MISSIVE_GEMMA_MODEL")
    if not model:
        pytest.fail("MISSIVE_GEMMA_MODEL must name Gemma 3 270M's GGUF (scripts/test pulls it)")
    server, client = serve(MISSIVE_MODEL=model)
    yield client
    server.stop()


def calls(message):
    return [block for block in message.content if block.type == "tool_use"]


def test_a_forced_strict_call_decodes_under_the_grammar_on_a_template_without_tools(gemma):
    # Unconstrained, the model writes "Rome"; the schema allows three characters at most.
    kwargs = dict(
        model=MODEL,
        max_tokens=40,
        tools=[city_tool(strict=True)],
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[{"role": "user", "content": "What is the weather in Rome?"}],
        **sampling(temperature=0),
    )
    message = gemma.messages.create(**kwargs)
    call = calls(message)[0]
    assert call.name == "get_weather"
    assert set(call.input) == {"city"} and 1 <= len(call.input["city"]) <= 3, call.input

    streamed, pieces = stream_tool_input(gemma, **kwargs)
    assert calls(streamed)[0].input == call.input
    assert pieces and "".join(pieces).startswith(json.dumps(call.input)[:-1]), pieces


def test_auto_calls_are_recognised_on_the_markers_text(gemma):
    # A base model follows the conversation's own example: the earlier call and its result
    # are rendered back as text in the described form.
    message = gemma.messages.create(
        model=MODEL,
        max_tokens=40,
        tools=[location_tool(additionalProperties=False)],
        messages=[
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "Paris"}}]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "15 degrees"},
                    {"type": "text", "text": "What is the weather in Rome?"},
                ],
            },
        ],
        **sampling(temperature=0),
    )
    first = calls(message)[0]
    assert first.input == {"location": "Rome"}, message.content
    assert not any(b.type == "text" and "<tool_call>" in b.text for b in message.content)


def test_the_default_model_calls_tools_in_the_described_format():
    server, client = serve(MISSIVE_TOOL_FORMAT="described")
    try:
        message = client.messages.create(
            model=MODEL,
            max_tokens=128,
            tools=[location_tool()],
            messages=[{"role": "user", "content": "What's the weather like in San Francisco?"}],
            **sampling(temperature=0),
        )
        assert message.stop_reason == "tool_use", message.content
        [call] = calls(message)
        assert "San Francisco" in call.input["location"]
        log = open(f"{server.home}/serve.log").read()
        assert "tool_format=Described" in log
    finally:
        server.stop()


TEMPLATES = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "engine", "tests", "templates")


def forced_call(client, kwargs):
    """The forced call `kwargs` asks for, made plain and streamed: the same input both ways,
    streamed in pieces that add up to it."""
    message = client.messages.create(**kwargs)
    assert message.stop_reason == "tool_use", message.content
    [call] = calls(message)
    streamed, pieces = stream_tool_input(client, **kwargs)
    assert calls(streamed)[0].input == call.input
    assert len(pieces) > 3 and json.loads("".join(pieces)) == call.input
    return call


BOOK_TABLE = {
    "name": "book_table",
    "description": "Book a table at a restaurant",
    "strict": True,
    "input_schema": {
        "type": "object",
        "properties": {
            "restaurant": {"type": "string"},
            "people": {"type": "integer"},
            "seating": {"type": "string", "enum": ["inside", "terrace"]},
        },
        "required": ["restaurant", "people", "seating"],
        "additionalProperties": False,
    },
}


def book_table_kwargs():
    return dict(
        model=MODEL,
        max_tokens=120,
        tools=[BOOK_TABLE],
        tool_choice={"type": "tool", "name": "book_table"},
        messages=[{"role": "user", "content": "Book a table for four at Chez Anna, on the terrace."}],
        **sampling(temperature=0),
    )


def forced_booking(client, kwargs):
    """The forced `book_table` call, plain and streamed; its input fits the schema."""
    call = forced_call(client, kwargs)
    assert set(call.input) == {"restaurant", "people", "seating"}, call.input
    assert isinstance(call.input["restaurant"], str) and isinstance(call.input["people"], int)
    assert call.input["seating"] in ("inside", "terrace")
    return call


def picks_one_of_two(client, kwargs):
    """`any` with two tools: the model picks one, and its input fits that tool's schema."""
    clock = {"name": "get_time", "description": "The current time", "strict": True,
             "input_schema": {"type": "object", "properties": {}, "additionalProperties": False}}
    message = client.messages.create(**{**kwargs, "tools": [BOOK_TABLE, clock], "tool_choice": {"type": "any"}})
    [picked] = calls(message)[:1]
    assert picked.name in ("book_table", "get_time")
    assert set(picked.input) == ({"restaurant", "people", "seating"} if picked.name == "book_table" else set())


def thinks_and_takes_its_thought_back(client, kwargs, call):
    """With thinking on, the reply starts with a thinking block streamed as thinking deltas
    and closed with a signature; the thought, the earlier `call` and its result then go
    back as history and are answered."""
    thought = dict(model=MODEL, max_tokens=24, thinking={"type": "enabled", "budget_tokens": 1024},
                   messages=[{"role": "user", "content": "What is 2 + 3?"}], **sampling(temperature=0))
    deltas = []
    with client.messages.stream(**thought) as stream:
        for event in stream:
            if event.type == "content_block_delta":
                deltas.append(event.delta.type)
        message = stream.get_final_message()
    first = message.content[0]
    assert first.type == "thinking" and first.thinking and first.signature, message.content
    assert deltas[0] == "thinking_delta" and "signature_delta" in deltas, deltas
    assert message.usage.output_tokens <= 24

    history = [
        *kwargs["messages"],
        {"role": "assistant", "content": [first.model_dump(include={"type", "thinking", "signature"}),
                                          {"type": "tool_use", "id": call.id, "name": call.name, "input": call.input}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Booked for 20:00."}]},
    ]
    reply = client.messages.create(**{**thought, "messages": history, "tools": [BOOK_TABLE]})
    assert reply.type == "message" and reply.content, reply
    return reply


def parallel_weather_history(ids, follow_up):
    """Two weather calls made in parallel (with the ids given), their results, and a user
    turn's text after them."""
    paris, rome = ids
    return [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": paris, "name": "get_weather", "input": {"location": "Paris"}},
            {"type": "tool_use", "id": rome, "name": "get_weather", "input": {"location": "Rome"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": paris, "content": "sunny, 25 degrees"},
            {"type": "tool_result", "tool_use_id": rome, "content": "rain, 12 degrees"},
            {"type": "text", "text": follow_up},
        ]},
    ]


def test_the_default_model_under_qwen3_coders_template_calls_in_its_xml_form():
    """The XML family end to end: the default model served with Qwen3-Coder's own chat
    template decodes forced and strict calls under that family's grammar; they come back as
    tool_use blocks whose input matches the schema, streamed or not."""
    server, client = serve(MISSIVE_CHAT_TEMPLATE_FILE=os.path.abspath(os.path.join(TEMPLATES, "Qwen3-Coder.jinja")))
    tool = {
        "name": "write_file",
        "description": "Write a text file",
        "strict": True,
        "input_schema": {
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "The file's path"},
                "content": {"type": "string"},
                "mode": {"type": "string", "enum": ["create", "overwrite"]},
                "lines": {"type": "integer"},
            },
            "required": ["path", "content", "mode", "lines"],
            "additionalProperties": False,
        },
    }
    try:
        assert "tool_format=QwenXml" in open(f"{server.home}/serve.log").read()
        kwargs = dict(
            model=MODEL,
            max_tokens=200,
            tools=[tool],
            tool_choice={"type": "tool", "name": "write_file"},
            messages=[{"role": "user", "content": "Save the word hello to notes.txt."}],
            **sampling(temperature=0),
        )
        call = forced_call(client, kwargs)
        assert set(call.input) == {"path", "content", "mode", "lines"}, call.input
        assert isinstance(call.input["path"], str) and isinstance(call.input["content"], str)
        assert call.input["mode"] in ("create", "overwrite") and isinstance(call.input["lines"], int)
    finally:
        server.stop()


def test_the_default_model_under_glms_template_calls_in_its_xml_form():
    """GLM's family end to end: the default model served with GLM 4.6's own chat template
    decodes forced and strict calls under that family's grammar (`<tool_call>NAME` and
    `<arg_key>`/`<arg_value>` pairs); they come back as tool_use blocks whose input matches
    the schema, streamed or not."""
    server, client = serve(MISSIVE_CHAT_TEMPLATE_FILE=os.path.abspath(os.path.join(TEMPLATES, "GLM-4.6.jinja")))
    try:
        assert "tool_format=GlmXml" in open(f"{server.home}/serve.log").read()
        kwargs = book_table_kwargs()
        forced_booking(client, kwargs)
        picks_one_of_two(client, kwargs)
    finally:
        server.stop()


@pytest.mark.parametrize(
    "template, tool_format",
    [("DeepSeek-V3.1.jinja", "DeepSeek"), ("DeepSeek-R1-Distill-Qwen-32B.jinja", "DeepSeekR1")],
)
def test_the_default_model_under_deepseeks_templates_calls_in_their_markers_and_thinks(template, tool_format):
    """DeepSeek's family end to end, V3.1 and R1: the default model served with each one's
    own chat template decodes forced and strict calls under that form's grammar (V3.1:
    `<｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{…}<｜tool▁call▁end｜>`; R1: `function<｜tool▁sep｜>NAME`
    and a ```json fence); they come back as tool_use blocks whose input matches the schema,
    streamed or not. The templates open a thought (`<think>`; R1's always, and a forced
    call closes it first): with thinking on, the reply starts with a thinking block that
    carries a signature, which the next request may send back."""
    server, client = serve(MISSIVE_CHAT_TEMPLATE_FILE=os.path.abspath(os.path.join(TEMPLATES, template)))
    try:
        assert f"tool_format={tool_format}\n" in open(f"{server.home}/serve.log").read()
        kwargs = book_table_kwargs()
        call = forced_booking(client, kwargs)
        picks_one_of_two(client, kwargs)

        # Thinking on: the template ends the prompt inside `<think>`, so the reply opens
        # with a thinking block, closed with its signature.
        thinks_and_takes_its_thought_back(client, kwargs, call)
    finally:
        server.stop()


def test_the_default_model_under_llamas_template_calls_in_its_json_form():
    """Llama 3's family end to end: the default model served with Llama 3.3's own chat
    template decodes a forced strict call under that family's grammar
    (`{"name": …, "parameters": {…}}`, one per turn), streamed or not. Parallel calls in the
    history are rendered one turn each (the template takes one), and a call the model then
    writes in the family's bare form is recognised in `auto`."""
    server, client = serve(MISSIVE_CHAT_TEMPLATE_FILE=os.path.abspath(os.path.join(TEMPLATES, "Llama-3.3.jinja")))
    try:
        assert "tool_format=Llama3Json" in open(f"{server.home}/serve.log").read()
        kwargs = book_table_kwargs()
        forced_booking(client, kwargs)

        # `any` asks for calls in parallel; the family writes one, and the reply ends there.
        message = client.messages.create(**{**kwargs, "tool_choice": {"type": "any"}})
        assert message.stop_reason == "tool_use" and len(calls(message)) == 1, message.content

        history = parallel_weather_history(("toolu_1", "toolu_2"), "Which city is warmer?")
        message = client.messages.create(**{**kwargs, "tools": [location_tool(), BOOK_TABLE], "tool_choice": {"type": "auto"},
                                            "messages": history})
        [again] = calls(message)
        assert again.name == "get_weather" and isinstance(again.input["location"], str), message.content
        assert not any(b.type == "text" and '"parameters"' in b.text for b in message.content)
    finally:
        server.stop()


@pytest.mark.parametrize(
    "template, tool_format",
    [("Mistral-Small-3.1.jinja", "Mistral"), ("Mistral-Small-3.2.jinja", "MistralArgs")],
)
def test_the_default_model_under_mistrals_templates_calls_in_their_forms(template, tool_format):
    """Mistral's family end to end, both forms: the default model served with Mistral
    Small 3.1's own chat template (`[TOOL_CALLS] [{"name": …, "arguments": {…}}, …]`, ending
    the reply) and with Mistral Small 3.2's (`[TOOL_CALLS]NAME[ARGS]{…}` per call) decodes
    forced and strict calls under that form's grammar, streamed or not. `any` over two
    tools picks one. A history with parallel calls, their results (short client ids, which
    the templates refuse as they are) and a user's text sent with them renders and is
    answered."""
    server, client = serve(MISSIVE_CHAT_TEMPLATE_FILE=os.path.abspath(os.path.join(TEMPLATES, template)))
    try:
        assert f"tool_format={tool_format}\n" in open(f"{server.home}/serve.log").read()
        kwargs = book_table_kwargs()
        if tool_format == "MistralArgs":
            # Calls follow one another with nothing to end the last, and the small model
            # goes on booking: one call is asked for.
            kwargs["tool_choice"] = {**kwargs["tool_choice"], "disable_parallel_tool_use": True}
        forced_booking(client, kwargs)
        picks_one_of_two(client, kwargs)

        history = parallel_weather_history(
            ("t1", "t2"), "Book a table for two in the warmer city, at Chez Anna inside.")
        message = client.messages.create(**{**kwargs, "tools": [location_tool(), BOOK_TABLE], "messages": history})
        # Forced, the first call is the booking; more may follow.
        booked = calls(message)[0]
        assert booked.name == "book_table" and booked.input["seating"] in ("inside", "terrace"), message.content
        assert all(c.name in ("book_table", "get_weather") for c in calls(message)), message.content
        assert not any(b.type == "text" and "[TOOL_CALLS]" in b.text for b in message.content)
    finally:
        server.stop()


def test_the_default_model_under_gpt_oss_template_calls_and_thinks_in_harmony():
    """gpt-oss's family end to end: the default model served with gpt-oss's own chat
    template decodes forced and strict calls under harmony's grammar
    (`<|channel|>commentary to=functions.NAME <|constrain|>json<|message|>{…}<|call|>`, one
    per turn); they come back as tool_use blocks whose input matches the schema, streamed
    or not. With thinking on the prompt opens the analysis channel, and the reply starts
    with a signed thinking block; the thought goes back into the next prompt as the
    template's `thinking`. No channel markup reaches the client."""
    server, client = serve(MISSIVE_CHAT_TEMPLATE_FILE=os.path.abspath(os.path.join(TEMPLATES, "gpt-oss-120b.jinja")))
    try:
        assert "tool_format=Harmony\n" in open(f"{server.home}/serve.log").read()
        kwargs = book_table_kwargs()
        call = forced_booking(client, kwargs)
        picks_one_of_two(client, kwargs)

        message = client.messages.create(**{**kwargs, "tool_choice": {"type": "any"}})
        assert message.stop_reason == "tool_use" and len(calls(message)) == 1, message.content

        reply = thinks_and_takes_its_thought_back(client, kwargs, call)
        for block in reply.content:
            text = getattr(block, "text", None) or getattr(block, "thinking", "")
            assert "<|" not in text, reply.content
    finally:
        server.stop()
