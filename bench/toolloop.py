"""The two-step weather tool loop on each catalog model, through the official SDK: the model
calls `get_weather` for a city, gets a result it cannot guess, and must answer from it. Each
model runs the loop three ways on the answering turn: tools offered as before; tools
offered with `tool_choice: none`; tools offered after an assistant prefill ("The weather
in CITY is"). A loop succeeds when the first reply is one `get_weather` call naming the city and the
second is an answer (`end_turn`, no call) holding the result's temperature.

    python bench/toolloop.py --missive target/release/missive \
        --model qwen2.5-coder-0.5b-instruct.gguf --model qwen2.5-coder-1.5b-instruct.gguf
"""

import argparse
import datetime
import os
import sys

import anthropic

sys.path.insert(0, os.path.dirname(__file__))
from peer import with_missive  # noqa: E402

LOCATION = {"type": "string", "description": "The city and state, e.g. San Francisco, CA"}
WEATHER = {"name": "get_weather", "description": "Get the current weather in a given location",
           "input_schema": {"type": "object", "properties": {"location": LOCATION}, "required": ["location"]}}

# Temperatures no model would guess for the city and season.
CITIES = [
    ("San Francisco", "23 degrees, foggy"),
    ("Paris", "31 degrees, clear"),
    ("Tokyo", "4 degrees, snow"),
    ("Cairo", "9 degrees, rain"),
    ("Oslo", "27 degrees, sunny"),
    ("Lima", "2 degrees, hail"),
    ("Toronto", "36 degrees, humid"),
    ("Mumbai", "11 degrees, windy"),
]


MODES = [("tools offered", {}), ("tool_choice none", {"tool_choice": {"type": "none"}}),
         ("assistant prefill", {"prefill": True})]


def loop(client, city, result, mode):
    """One loop; returns None on success, else what went wrong."""
    question = {"role": "user", "content": f"What's the weather like in {city}?"}
    first = client.messages.create(model="claude-opus-4-8", max_tokens=256, tools=[WEATHER], messages=[question],
                                   extra_body={"temperature": 0})
    calls = [b for b in first.content if b.type == "tool_use"]
    if first.stop_reason != "tool_use" or len(calls) != 1:
        return f"no single call: {first.stop_reason}"
    call = calls[0]
    if call.name != "get_weather" or city.split()[0] not in str(call.input.get("location", "")):
        return f"wrong call: {call.name} {call.input}"
    history = [question, {"role": "assistant", "content": first.content},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": result}]}]
    extra = dict(mode)
    if extra.pop("prefill", False):
        history.append({"role": "assistant", "content": f"The weather in {city} is"})
    second = client.messages.create(model="claude-opus-4-8", max_tokens=96, tools=[WEATHER], messages=history,
                                    extra_body={"temperature": 0}, **extra)
    if second.stop_reason != "end_turn" or any(b.type == "tool_use" for b in second.content):
        return f"no answer: {second.stop_reason}"
    text = "".join(b.text for b in second.content if b.type == "text")
    degrees = result.split()[0]
    return None if degrees in text else f"answer without {degrees}: {text[:60]!r}"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--missive", required=True)
    p.add_argument("--model", action="append", required=True, help="a GGUF; repeat for each model")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    rows = []
    for model in args.model:
        args.model = model

        def run(url):
            client = anthropic.Anthropic(base_url=url, api_key="bench-key", max_retries=0, timeout=600)
            out = []
            for label, mode in MODES:
                failures = []
                for city, result in CITIES:
                    why = loop(client, city, result, mode)
                    print(f"  {os.path.basename(model)} {label} {city}: {why or 'ok'}", flush=True)
                    if why:
                        failures.append(f"{city}: {why}")
                out.append((label, len(CITIES) - len(failures), failures))
            return out

        for label, passed, failures in with_missive(args, 1, 8192, run):
            rows.append((os.path.basename(model), label, passed, failures))
    lines = [
        f"Two-step weather tool loop, {len(CITIES)} cities, temperature 0, {args.threads} threads "
        f"({datetime.date.today()}).",
        "",
        "| model | answering turn | loops completed | failures |",
        "|---|---|---|---|",
    ]
    for model, label, passed, failures in rows:
        lines.append(f"| {model} | {label} | {passed}/{len(CITIES)} | {'; '.join(failures) or '-'} |")
    report = "\n".join(lines) + "\n"
    out = args.out or os.path.join("bench", "runs", f"{datetime.date.today()}-vm")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "toolloop.md"), "w") as f:
        f.write(report)
    print(report)


if __name__ == "__main__":
    main()
