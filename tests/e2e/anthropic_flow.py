#!/usr/bin/env python3
"""End-to-end checks of callm's Messages API with the official `anthropic` client.

Assertions are about shapes and protocol (a small model's wording varies): tool_use blocks
with declared names and object inputs, `toolu_` ids, stop reasons, the stream helper's
accumulated final message, count_tokens agreeing with usage, Anthropic's error shape.

Usage: anthropic_flow.py --base-url http://127.0.0.1:PORT --model NAME
"""

import argparse
import json
import sys

import anthropic

from common import (QUESTION, SYSTEM, TEMPERATURE_DESC, TEMPERATURE_SCHEMA, TOOL_NAMES, WEATHER_DESC,
                    WEATHER_SCHEMA, check, raw_post, run_all, run_tool)

TOOLS = [
    {"name": "get_current_weather", "description": WEATHER_DESC, "input_schema": WEATHER_SCHEMA},
    {"name": "get_temperature", "description": TEMPERATURE_DESC, "input_schema": TEMPERATURE_SCHEMA},
]
# Greedy decoding: the SDK no longer exposes `temperature`, the API (and callm) still take it.
GREEDY = {"temperature": 0}
BASE = dict(max_tokens=128, extra_body=GREEDY, system=SYSTEM, tools=TOOLS)
# The final text answer (a 0.5B model may run on to the limit: `max_tokens` is fine).
ANSWER = dict(BASE, max_tokens=48)


def tool_uses(message, where):
    calls = [b for b in message.content if b.type == "tool_use"]
    check(calls, f"{where}: no tool_use in {message.model_dump()}")
    check(message.stop_reason == "tool_use", f"{where}: stop_reason {message.stop_reason!r}")
    for c in calls:
        check(c.id.startswith("toolu_"), f"{where}: id {c.id!r}")
        check(c.name in TOOL_NAMES, f"{where}: unknown tool {c.name!r}")
        check(isinstance(c.input, dict), f"{where}: input {c.input!r}")
    return calls


def text_of(message, where):
    check(message.stop_reason in ("end_turn", "max_tokens"), f"{where}: stop_reason {message.stop_reason!r}")
    text = "".join(b.text for b in message.content if b.type == "text")
    check(text.strip(), f"{where}: empty answer {message.model_dump()}")
    return text


def results(calls):
    return {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": c.id, "content": run_tool(c.name, c.input)} for c in calls]}


def check_usage(message, where):
    u = message.usage
    check(u.input_tokens + (u.cache_read_input_tokens or 0) > 0 and u.output_tokens > 0, f"{where}: usage {u}")


def test_two_step_flow(client, model):
    messages = [{"role": "user", "content": QUESTION}]
    first = client.messages.create(model=model, messages=messages, tool_choice={"type": "any"}, **BASE)
    check(first.type == "message" and first.role == "assistant", f"shape {first.model_dump()}")
    check(first.id.startswith("msg_"), f"id {first.id!r}")
    check_usage(first, "step 1")
    calls = tool_uses(first, "step 1")
    messages += [{"role": "assistant", "content": first.content}, results(calls)]
    final = client.messages.create(model=model, messages=messages, tool_choice={"type": "none"}, **ANSWER)
    print(f"    answer: {text_of(final, 'step 2')[:100]!r}")


def test_two_step_flow_streaming(client, model):
    messages = [{"role": "user", "content": QUESTION}]
    events = []
    with client.messages.stream(model=model, messages=messages, tool_choice={"type": "any"}, **BASE) as stream:
        for event in stream:
            events.append(event.type)
        first = stream.get_final_message()
    check(events[0] == "message_start", f"events {events[:3]}")
    check("input_json" in events or "content_block_delta" in events, f"no deltas in {set(events)}")
    check_usage(first, "streamed step 1")
    calls = tool_uses(first, "streamed step 1")
    messages += [{"role": "assistant", "content": first.content}, results(calls)]
    with client.messages.stream(model=model, messages=messages, tool_choice={"type": "none"}, **ANSWER) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    check(streamed == text_of(final, "streamed step 2"), "text_stream differs from the final message")


def test_tool_choice_modes(client, model):
    messages = [{"role": "user", "content": QUESTION}]
    m = client.messages.create(model=model, messages=messages, tool_choice={"type": "any"}, **BASE)
    tool_uses(m, "any")
    m = client.messages.create(model=model, messages=messages,
                               tool_choice={"type": "tool", "name": "get_temperature"}, **BASE)
    calls = tool_uses(m, "tool")
    check([c.name for c in calls] == ["get_temperature"], f"tool: {[c.name for c in calls]}")
    m = client.messages.create(model=model, messages=messages,
                               tool_choice={"type": "any", "disable_parallel_tool_use": True}, **BASE)
    check(len(tool_uses(m, "any, no parallel")) == 1, "one call expected")
    m = client.messages.create(model=model, messages=messages, tool_choice={"type": "none"}, **ANSWER)
    text_of(m, "none")
    check(not [b for b in m.content if b.type == "tool_use"], "none: tool_use")


def test_count_tokens(client, model):
    messages = [{"role": "user", "content": QUESTION}]
    counted = client.messages.count_tokens(model=model, messages=messages, system=SYSTEM, tools=TOOLS)
    check(counted.input_tokens > 0, f"count {counted}")
    m = client.messages.create(model=model, messages=messages, tool_choice={"type": "auto"}, **ANSWER)
    used = m.usage.input_tokens + (m.usage.cache_read_input_tokens or 0)
    check(counted.input_tokens == used, f"count_tokens {counted.input_tokens} vs usage {used}")


def test_stop_sequence(client, model):
    m = client.messages.create(model=model, max_tokens=64, extra_body=GREEDY,
                               messages=[{"role": "user", "content": "Count from 1 to 20, separated by commas."}],
                               stop_sequences=["7"])
    check(m.stop_reason == "stop_sequence" and m.stop_sequence == "7", f"{m.stop_reason} {m.stop_sequence}")
    check("7" not in "".join(b.text for b in m.content if b.type == "text"), "stop sequence in the text")


def test_errors(client, model, base_url):
    try:
        client.messages.create(model="claude-none", max_tokens=8, messages=[{"role": "user", "content": "x"}])
        raise AssertionError("unknown model accepted")
    except anthropic.NotFoundError as e:
        check(e.body["error"]["type"] == "not_found_error", f"{e.body}")
    try:
        client.messages.create(model=model, max_tokens=8, messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]}])
        raise AssertionError("image accepted")
    except anthropic.BadRequestError as e:
        check(e.body["type"] == "error" and e.body["error"]["type"] == "invalid_request_error", f"{e.body}")
    status, body = raw_post(f"{base_url}/v1/messages", b'{"model": "x", "messages": [')
    check(status == 400 and body["type"] == "error" and body["error"]["type"] == "invalid_request_error",
          f"malformed: {status} {body}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--mock", action="store_true", help="the mock engine: skip what needs a model")
    args = parser.parse_args()
    client = anthropic.Anthropic(base_url=args.base_url, api_key="not-needed", max_retries=0, timeout=600)
    tests = [
        ("two-step flow", test_two_step_flow),
        ("two-step flow, streaming", test_two_step_flow_streaming),
        ("tool_choice any/tool/none", test_tool_choice_modes),
        ("count_tokens", test_count_tokens),
        ("errors", lambda c, m: test_errors(c, m, args.base_url)),
    ]
    if not args.mock:
        tests.append(("stop_sequences", test_stop_sequence))
    return run_all("anthropic", tests, client, args.model)


if __name__ == "__main__":
    sys.exit(main())
