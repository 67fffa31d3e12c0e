"""Rate limits through the official SDK: headers, a 429 the SDK retries, cache reads not
counted against input tokens."""

import time

import anthropic
import pytest

from conftest import API_KEY, sampling, start_server

MODEL = "claude-opus-4-8"
POLICY = "Example Corp support policy: refunds within 30 days; replies are short and kind. " * 80
# A config file exactly as an operator writes one.
CONFIG = """
[rate_limits]
requests_per_minute = 4
input_tokens_per_minute = 3000
output_tokens_per_minute = 10000
"""


@pytest.fixture(scope="module")
def limited():
    yield from start_server(CONFIG)


def remaining(raw, name):
    return int(raw.headers[f"anthropic-ratelimit-{name}-remaining"])


def test_headers_count_down_cache_reads_are_free_and_a_429_is_retried(limited):
    client = anthropic.Anthropic(base_url=limited, api_key=API_KEY, max_retries=0)

    def ask(question):
        return client.messages.with_raw_response.create(
            model=MODEL,
            max_tokens=4,
            system=[{"type": "text", "text": POLICY, "cache_control": {"type": "ephemeral"}}],
            messages=[{"role": "user", "content": question}],
            **sampling(temperature=0),
        )

    started = time.monotonic()
    first = ask("Can I get a refund?")
    elapsed = time.monotonic() - started
    assert int(first.headers["anthropic-ratelimit-requests-limit"]) == 4
    # The bucket refills a request every 15 s: a first reply slower than that (its prefill
    # on a loaded machine) finds one back by the time the headers are read.
    assert 3 <= remaining(first, "requests") <= 3 + int(elapsed // 15), elapsed
    used_first = 3000 - remaining(first, "input-tokens")
    usage = first.parse().usage
    assert usage.cache_creation_input_tokens > 1024
    # The ~1,460 uncached tokens count, less what the bucket refilled while the reply was
    # made (50 tokens/s): bounded by the time taken, not by a guess at the machine's speed.
    counted = usage.input_tokens + usage.cache_creation_input_tokens
    refilled = 50 * (elapsed + 1)
    assert counted - refilled <= used_first <= counted, (used_first, counted, elapsed)

    second = ask("How long do refunds take?")
    assert remaining(second, "requests") == remaining(first, "requests") - 1
    read = second.parse().usage.cache_read_input_tokens
    assert read > 1024
    used_second = remaining(first, "input-tokens") - remaining(second, "input-tokens")
    assert used_second < 200, "cache reads were counted against the input-token limit"

    # Emptied by as many more as the bucket holds (one more if it refills meanwhile).
    with pytest.raises(anthropic.RateLimitError) as refused:
        for _ in range(remaining(second, "requests") + 2):
            ask("One more?")
    assert "requests per minute" in refused.value.message
    assert int(refused.value.response.headers["retry-after"]) >= 1

    # The SDK honours retry-after (15 s here) and succeeds on its retry.
    retrying = anthropic.Anthropic(base_url=limited, api_key=API_KEY, max_retries=2)
    message = retrying.messages.create(
        model=MODEL, max_tokens=4, messages=[{"role": "user", "content": "Hello again."}], **sampling(temperature=0)
    )
    assert message.stop_reason in ("end_turn", "max_tokens")
