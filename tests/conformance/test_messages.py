"""Messages API behaviour through the official SDK, on the real default model."""

import json
import os

import anthropic

from conftest import API_KEY, sampling

MODEL = "claude-opus-4-8"


def ask(text):
    return [{"role": "user", "content": text}]


def test_create_returns_a_message(client):
    message = client.messages.create(model=MODEL, max_tokens=32, messages=ask("Say hello."), **sampling(temperature=0))
    assert isinstance(message, anthropic.types.Message)
    assert message.id.startswith("msg_")
    assert message._request_id.startswith("req_")
    assert message.model == MODEL
    assert message.content[0].type == "text"
    assert message.content[0].text.strip()
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.input_tokens > 0
    assert 0 < message.usage.output_tokens <= 32
    assert message.usage.cache_read_input_tokens == 0
    assert message.usage.cache_creation_input_tokens == 0


def test_system_prompt_and_multi_turn(client):
    message = client.messages.create(
        model=MODEL,
        max_tokens=16,
        system=[{"type": "text", "text": "You answer with one word."}],
        messages=[
            {"role": "user", "content": "What colour is the sky on a clear day?"},
            {"role": "assistant", "content": "Blue."},
            {"role": "user", "content": "And grass?"},
        ],
        **sampling(temperature=0),
    )
    assert "green" in message.content[0].text.lower()


def test_stream_text_matches_final_message(client):
    with client.messages.stream(model=MODEL, max_tokens=40, messages=ask("Name three fruits."), **sampling(temperature=0)) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text
    assert final.content[0].text == text
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert final.usage.output_tokens > 0
    assert final.usage.input_tokens > 0


def test_raw_stream_event_order(client):
    events = list(client.messages.create(model=MODEL, max_tokens=8, messages=ask("Hi"), stream=True))
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start"
    assert kinds[1] == "content_block_start"
    assert kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds[-3] == "content_block_stop"
    assert all(k == "content_block_delta" for k in kinds[2:-3])
    assert events[0].message.usage.input_tokens > 0


def test_prefill_is_continued(client):
    message = client.messages.create(
        model=MODEL,
        max_tokens=8,
        messages=[
            {"role": "user", "content": "What is the capital of France? Answer in one sentence."},
            {"role": "assistant", "content": "The capital of France is"},
        ],
        **sampling(temperature=0),
    )
    text = message.content[0].text
    assert "Paris" in text
    assert not text.startswith("The capital of France is")


def test_stop_sequence(client):
    message = client.messages.create(
        model=MODEL,
        max_tokens=60,
        stop_sequences=["5"],
        messages=ask("Count from 1 to 10, separated by commas. Output only the numbers."),
        **sampling(temperature=0),
    )
    assert message.stop_reason == "stop_sequence"
    assert message.stop_sequence == "5"
    text = message.content[0].text
    assert "4" in text and "5" not in text


def test_max_tokens_cut_off(client):
    message = client.messages.create(model=MODEL, max_tokens=3, messages=ask("Write a long story about a dragon."))
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 3


def test_count_tokens_equals_usage_of_a_real_call(client):
    params = dict(
        model=MODEL,
        system="You are terse.",
        messages=[
            {"role": "user", "content": "Hello there, how are you?"},
            {"role": "assistant", "content": "Fine."},
            {"role": "user", "content": [{"type": "text", "text": "Good. Déjà vu? 🙂"}]},
        ],
    )
    counted = client.messages.count_tokens(**params)
    message = client.messages.create(max_tokens=1, **params)
    assert counted.input_tokens == message.usage.input_tokens
    assert counted.input_tokens > 10


def test_models_list_and_retrieve(client):
    # The served model is named after its file (the catalog's name): the default model, or
    # the 1.5B agent model in its own pass.
    served = os.path.basename(os.environ["MISSIVE_TEST_MODEL"]).removesuffix(".gguf")
    page = client.models.list()
    ids = [m.id for m in page.data]
    assert served in ids
    model = page.data[0]
    assert model.max_input_tokens == 32768
    assert model.capabilities.image_input.supported is False
    assert client.models.retrieve("claude-opus-4-8").id == served
    assert client.models.retrieve(served).max_tokens > 0


def test_unicode_survives_streaming(client):
    with client.messages.stream(
        model=MODEL,
        max_tokens=30,
        messages=ask("Repeat exactly: 日本語のテキスト 🎉 café"),
        **sampling(temperature=0),
    ) as stream:
        text = "".join(stream.text_stream)
    assert "\ufffd" not in text
    json.dumps(text)


def test_a_system_message_inside_the_conversation_is_honoured(client):
    history = [
        {"role": "user", "content": "Hi."},
        {"role": "assistant", "content": "Hello!"},
        {"role": "system", "content": "From now on, answer in capital letters."},
        {"role": "user", "content": "Name a colour."},
    ]
    without = [m for m in history if m["role"] != "system"]
    counted = client.messages.count_tokens(model=MODEL, messages=history).input_tokens
    plain = client.messages.count_tokens(model=MODEL, messages=without).input_tokens
    # The note is in the prompt: its words and, where the template takes one, a system turn.
    assert counted >= plain + 8, (counted, plain)
    message = client.messages.create(model=MODEL, max_tokens=10, messages=history, **sampling(temperature=0))
    assert message.usage.input_tokens == counted
    assert message.stop_reason in ("end_turn", "max_tokens")


def test_model_info_validates_against_the_sdks_own_type(server):
    # Strict validation: a field the installed SDK requires and Missive omits fails here,
    # so a new SDK release shows up as a failing test.
    typed = anthropic.Anthropic(base_url=server, api_key=API_KEY, max_retries=0, _strict_response_validation=True)
    page = typed.models.list()
    assert page.data and all(m.lifecycle == "active" for m in page.data)
    model = typed.models.retrieve("claude-opus-4-8")
    assert model.capabilities.thinking.supported is False
