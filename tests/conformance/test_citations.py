"""Search results and content documents, cited, through the official SDK on the default
model: `search_result` blocks at the top of a turn and inside a tool result, cited by
`search_result_location`; a document of content blocks, cited by
`content_block_location`. Each citation quotes a whole block of what the request sent, and
points at it by the indices the SDK documents."""

import anthropic
import pytest

from conftest import sampling

MODEL = "claude-haiku-4-5"

PUMPS = {
    "type": "search_result",
    "source": "https://kb.example/pumps",
    "title": "Pump maintenance",
    "content": [
        {"type": "text", "text": "Pumps in the east wing are checked by the facilities team."},
        {"type": "text", "text": "The Zephyr pump must be flushed every 300 hours of running."},
    ],
    "citations": {"enabled": True},
}
WEATHER = {
    "type": "search_result",
    "source": "https://kb.example/weather",
    "title": "Local weather",
    "content": [{"type": "text", "text": "It rained in Lyon on Tuesday."}],
    "citations": {"enabled": True},
}
QUESTION = "How often must the Zephyr pump be flushed? Answer in one sentence."


def citations(message):
    return [c for block in message.content if block.type == "text" for c in (block.citations or [])]


def assert_cites_a_block_of(citation, index, result):
    assert citation.type == "search_result_location", citation
    assert citation.search_result_index == index
    assert citation.source == result["source"] and citation.title == result["title"]
    assert citation.end_block_index == citation.start_block_index + 1
    # A whole block of the request's text, never a piece of one.
    assert citation.cited_text == result["content"][citation.start_block_index]["text"]


def test_a_tool_that_returns_search_results_gets_its_answer_cited(client):
    # The pump result is search_result_index 1: results are counted in the order they
    # stand in the request, inside tool results too.
    message = client.messages.create(
        model=MODEL,
        max_tokens=40,
        tools=[{"name": "search_kb", "description": "Searches the knowledge base.",
                "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}}}],
        tool_choice={"type": "none"},
        messages=[
            {"role": "user", "content": "How often must the Zephyr pump be flushed?"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "search_kb", "input": {"query": "Zephyr pump"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [WEATHER, PUMPS]},
                {"type": "text", "text": "Answer from the search results, in one sentence."}]},
        ],
        **sampling(temperature=0),
    )
    cited = citations(message)
    assert cited, message.content
    for c in cited:
        assert_cites_a_block_of(c, 1, PUMPS)
    assert any(c.start_block_index == 1 for c in cited), cited
    assert "300" in "".join(b.text for b in message.content if b.type == "text")


def test_search_results_at_the_top_of_a_turn_are_cited_while_streaming(client):
    quiet = dict(PUMPS, citations={"enabled": False}, source="https://kb.example/quiet")
    deltas = []
    with client.messages.stream(
        model=MODEL,
        max_tokens=40,
        messages=[{"role": "user", "content": [quiet, PUMPS, {"type": "text", "text": QUESTION}]}],
        **sampling(temperature=0),
    ) as stream:
        for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "citations_delta":
                deltas.append(event.delta.citation)
        final = stream.get_final_message()
    assert deltas, final.content
    # The result without citations is counted (index 0) but never cited.
    for c in deltas:
        assert_cites_a_block_of(c, 1, PUMPS)
    assert [c.model_dump() for c in citations(final)] == [c.model_dump() for c in deltas]


def test_a_document_of_content_blocks_is_cited_by_block(client):
    blocks = [
        {"type": "text", "text": "The Zephyr pump was installed in 2019."},
        {"type": "text", "text": "The Zephyr pump must be flushed every 300 hours of running."},
    ]
    message = client.messages.create(
        model=MODEL,
        max_tokens=40,
        messages=[{"role": "user", "content": [
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "Unrelated notes."}},
            {"type": "document", "title": "Pump manual", "citations": {"enabled": True},
             "source": {"type": "content", "content": blocks}},
            {"type": "text", "text": QUESTION},
        ]}],
        **sampling(temperature=0),
    )
    cited = citations(message)
    assert cited, message.content
    for c in cited:
        assert c.type == "content_block_location", c
        assert c.document_index == 1 and c.document_title == "Pump manual"
        assert c.end_block_index == c.start_block_index + 1
        assert c.cited_text == blocks[c.start_block_index]["text"]


def test_a_search_result_that_is_not_text_is_a_400_naming_it(client):
    bad = dict(PUMPS, content=[{"type": "image", "source": {"type": "url", "url": "https://x.example/a.png"}}])
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.create(model=MODEL, max_tokens=4,
                               messages=[{"role": "user", "content": [bad, {"type": "text", "text": "Hi."}]}])
    assert "messages.0.content.0.content.0: a search result holds `text` blocks only" in refused.value.message
