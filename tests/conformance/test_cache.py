"""Prompt caching through the official SDK: cache_control breakpoints and the usage fields."""

from conftest import metrics, sampling

MODEL = "claude-opus-4-8"
# Over the 1,024-token minimum a breakpoint needs to be cached.
POLICY = "Example Corp support policy: refunds within 30 days; replies are short and kind. " * 80


def ask(client, question):
    return client.messages.create(
        model=MODEL,
        max_tokens=8,
        system=[{"type": "text", "text": POLICY, "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": question}],
        **sampling(temperature=0),
    )


def total(usage):
    return usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens


def test_first_call_writes_the_prefix_and_the_next_reads_it(client):
    first = ask(client, "Can I get a refund after two weeks?")
    assert first.usage.cache_creation_input_tokens > 1024
    assert first.usage.cache_creation.ephemeral_5m_input_tokens == first.usage.cache_creation_input_tokens
    assert first.usage.cache_read_input_tokens == 0
    second = ask(client, "How long do refunds take?")
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.cache_creation_input_tokens == 0
    counted = client.messages.count_tokens(
        model=MODEL,
        system=[{"type": "text", "text": POLICY, "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "How long do refunds take?"}],
    )
    assert total(second.usage) == counted.input_tokens


def test_metrics_report_the_engine_and_the_cache(client, server):

    ask(client, "Do you ship abroad?")
    ask(client, "Do you ship abroad?")
    text = metrics(server)
    for name in (
        "missive_time_to_first_token_seconds_bucket",
        "missive_queue_depth",
        "missive_running_sequences",
        "missive_output_tokens_total",
        "missive_prompt_cache_read_tokens_total",
        "missive_prompt_cache_entries",
        "missive_kv_reused_tokens_total",
        "missive_kv_prompt_tokens_total",
    ):
        assert name in text, name

    def value(metric):
        lines = [line for line in text.splitlines() if line.startswith(metric)]
        return float(lines[0].rsplit(" ", 1)[1])

    assert value("missive_prompt_cache_read_tokens_total") > 1024
    # The repeated question found its whole prompt but the last token in the KV cells.
    assert 1024 < value("missive_kv_reused_tokens_total") < value("missive_kv_prompt_tokens_total")


def test_an_agents_moving_breakpoint_reads_what_the_last_turn_wrote(client):
    # Claude Code's form: the top-level cache_control marks the last block of each request,
    # so each turn's breakpoint lies past the one the turn before wrote.
    def turn(messages):
        params = sampling(temperature=0)
        params["extra_body"] = {**params.get("extra_body", {}), "cache_control": {"type": "ephemeral"}}
        return client.messages.create(
            model=MODEL, max_tokens=8, system=POLICY + " Agent session 7.", messages=messages, **params,
        )

    history = [{"role": "user", "content": "Which orders can be refunded?"}]
    first = turn(history)
    assert first.usage.cache_read_input_tokens == 0
    assert first.usage.cache_creation_input_tokens > 1024
    history += [{"role": "assistant", "content": "Orders from the last 30 days."},
                {"role": "user", "content": "And how do I ask for one?"}]
    second = turn(history)
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert 0 < second.usage.cache_creation_input_tokens < 40, second.usage
    counted = client.messages.count_tokens(model=MODEL, system=POLICY + " Agent session 7.", messages=history)
    assert total(second.usage) == counted.input_tokens
