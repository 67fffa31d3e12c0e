"""Prompt caching through the official SDK: cache_control breakpoints and the usage fields."""

from conftest import sampling

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
