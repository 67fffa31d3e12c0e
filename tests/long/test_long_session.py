"""A long agent session on a small window (issue 19): 60 turns through the SDK, each a tool
call answered with a ~1.5k-token result, on the default model with a 32k context. Context
editing and compaction keep it inside the window; the prefix cache keeps serving it; and
the code word stated only in turn 1 is still in the last compaction's summary.

Slow (minutes): scripts/test runs it once, on the newest SDK."""

import anthropic

from harness import API_KEY, Missive

TURNS = 60
CODE_WORD = "MARLIN-913"
READ = {
    "name": "read_file",
    "description": "Read one file of the repository under audit.",
    "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
}
# Each result is ~1.5-1.7k tokens, a cleared one ~50. Clearing keeps the latest result and
# moves in steps of three results (clear_at_least 4000), so the prompt stays under ~7k and
# its cached prefix holds between steps; the cleared stubs still grow ~50 tokens a turn
# until compaction restarts the session from a summary, every 15-30 turns.
EDITS = {"edits": [
    {"type": "clear_tool_uses_20250919", "trigger": {"type": "input_tokens", "value": 3000},
     "keep": {"type": "tool_uses", "value": 1}, "clear_at_least": {"type": "input_tokens", "value": 4000}},
    {"type": "compact_20260112", "trigger": {"type": "input_tokens", "value": 6500},
     "instructions": "Keep the code word the user gave."},
]}


def file_body(turn):
    """About 1.5k tokens of code, different on every turn."""
    return "\n".join(f"def step_{turn}_{j}(value):\n    return value * {j} + {turn}" for j in range(75))


def test_sixty_turns_on_a_32k_window_never_overflow_and_keep_the_code_word():
    server = Missive().start()
    try:
        client = anthropic.Anthropic(base_url=server.url, api_key=API_KEY, max_retries=0, timeout=600)
        messages = [{"role": "user", "content":
                     f"We are auditing a repository. The code word is {CODE_WORD}. "
                     "Read the files one at a time with read_file."}]
        cache_hits, cleared, compactions = 0, 0, []
        for turn in range(TURNS):
            # Breakpoints as an agent places them: the system prompt, the latest compaction
            # block, and (automatically) the end of the conversation.
            reply = client.beta.messages.create(
                model="claude-sonnet-4-6", max_tokens=64, tools=[READ], messages=messages,
                tool_choice={"type": "any", "disable_parallel_tool_use": True},
                system=[{"type": "text", "text": "You are a careful code auditor.",
                         "cache_control": {"type": "ephemeral"}}],
                cache_control={"type": "ephemeral"},
                context_management=EDITS, betas=["context-management-2025-06-27", "compact-2026-01-12"],
                extra_body={"temperature": 0})
            assert reply.usage.input_tokens + reply.usage.cache_read_input_tokens < 32768
            cache_hits += reply.usage.cache_read_input_tokens > 0
            cleared += any(e.type == "clear_tool_uses_20250919" for e in reply.context_management.applied_edits)
            compactions += [b.content for b in reply.content if b.type == "compaction"]
            calls = [b for b in reply.content if b.type == "tool_use"]
            assert reply.stop_reason == "tool_use" and len(calls) == 1, reply
            content = [b.model_dump(exclude_none=True) for b in reply.content]
            for block in content:
                if block["type"] == "compaction":
                    for earlier in messages:
                        if isinstance(earlier["content"], list):
                            for b in earlier["content"]:
                                b.pop("cache_control", None)
                    block["cache_control"] = {"type": "ephemeral"}
            messages.append({"role": "assistant", "content": content})
            messages.append({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": calls[0].id, "content": file_body(turn)}]})
        assert cleared > 0, "clear_tool_uses never fired"
        assert compactions, "no compaction in 60 turns"
        assert CODE_WORD in compactions[-1], compactions[-1]
        # The cached prefix survives edits and compactions on most turns.
        assert cache_hits > TURNS // 2, f"cache reads on {cache_hits} of {TURNS} turns"
        print(f"turns={TURNS} cache_hits={cache_hits} clear_turns={cleared} compactions={len(compactions)}")
    finally:
        server.stop()
