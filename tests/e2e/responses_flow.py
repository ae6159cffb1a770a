#!/usr/bin/env python3
"""End-to-end checks of callm's Responses API with the official `openai` client's
`client.responses`: the two-step flow with `function_call_output`, streaming (the SDK's
stream helper and its final response), a `previous_response_id` continuation that reuses the
prefix cache, retrieval, and OpenAI's error shape.

Usage: responses_flow.py --base-url http://127.0.0.1:PORT/v1 --model NAME
"""

import argparse
import json
import sys

import openai
from openai import OpenAI

from common import (QUESTION, SYSTEM, TEMPERATURE_DESC, TEMPERATURE_SCHEMA, TOOL_NAMES, WEATHER_DESC,
                    WEATHER_SCHEMA, check, raw_post, run_all, run_tool)

TOOLS = [
    {"type": "function", "name": "get_current_weather", "description": WEATHER_DESC,
     "parameters": WEATHER_SCHEMA, "strict": False},
    {"type": "function", "name": "get_temperature", "description": TEMPERATURE_DESC,
     "parameters": TEMPERATURE_SCHEMA, "strict": False},
]
BASE = dict(instructions=SYSTEM, tools=TOOLS, temperature=0, max_output_tokens=128)
# The final text answer (a 0.5B model may run on to the limit: `incomplete` is fine).
ANSWER = dict(BASE, max_output_tokens=48)


def calls_of(resp, where):
    calls = [o for o in resp.output if o.type == "function_call"]
    check(calls, f"{where}: no function_call in {resp.model_dump()}")
    for c in calls:
        check(c.name in TOOL_NAMES, f"{where}: unknown function {c.name!r}")
        check(c.call_id and c.id.startswith("fc_"), f"{where}: ids {c.call_id!r} {c.id!r}")
        check(isinstance(json.loads(c.arguments), dict), f"{where}: arguments {c.arguments!r}")
    return calls


def outputs(calls):
    return [{"type": "function_call_output", "call_id": c.call_id,
             "output": run_tool(c.name, json.loads(c.arguments))} for c in calls]


def test_two_step_flow(client, model):
    items = [{"role": "user", "content": QUESTION}]
    # Clients such as Codex send a reasoning level to every model: a model without a thinking
    # switch answers as usual, and the settings come back parsed by the SDK.
    first = client.responses.create(model=model, input=items, tool_choice="required",
                                    reasoning={"effort": "low", "summary": "auto"}, **BASE)
    check(first.object == "response" and first.status == "completed", f"{first.status}")
    check(first.reasoning.effort == "low" and first.reasoning.summary == "auto", f"{first.reasoning}")
    check(first.id.startswith("resp_"), f"id {first.id!r}")
    u = first.usage
    check(u.total_tokens == u.input_tokens + u.output_tokens, f"usage {u}")
    calls = calls_of(first, "step 1")
    items += [c.model_dump(exclude_none=True) for c in first.output] + outputs(calls)
    final = client.responses.create(model=model, input=items, tool_choice="none", **ANSWER)
    check(final.status in ("completed", "incomplete"), f"status {final.status}")
    check(final.output_text.strip(), f"empty answer {final.model_dump()}")
    print(f"    answer: {final.output_text[:100]!r}")


def test_streaming(client, model):
    items = [{"role": "user", "content": QUESTION}]
    kinds = []
    with client.responses.stream(model=model, input=items, tool_choice="required", **BASE) as stream:
        for event in stream:
            kinds.append(event.type)
        first = stream.get_final_response()
    check(kinds[:2] == ["response.created", "response.in_progress"], f"{kinds[:2]}")
    check(kinds[-1] == "response.completed", f"{kinds[-1]}")
    check("response.function_call_arguments.delta" in kinds, f"no argument deltas: {set(kinds)}")
    calls = calls_of(first, "streamed step 1")
    items += [c.model_dump(exclude_none=True) for c in first.output] + outputs(calls)
    deltas = []
    stream = client.responses.create(model=model, input=items, tool_choice="none", stream=True, **ANSWER)
    last = None
    for event in stream:
        if event.type == "response.output_text.delta":
            deltas.append(event.delta)
        last = event
    check(last.type in ("response.completed", "response.incomplete"), f"last event {last.type}")
    check("".join(deltas) == last.response.output_text and last.response.output_text.strip(),
          "streamed text differs from the final response")


def test_previous_response_id(client, model, cache=True):
    first = client.responses.create(model=model, input=QUESTION, tool_choice="required", **BASE)
    calls = calls_of(first, "turn 1")
    got = client.responses.retrieve(first.id)
    check(got.id == first.id and [o.id for o in got.output] == [o.id for o in first.output], "retrieve")
    second = client.responses.create(model=model, previous_response_id=first.id, input=outputs(calls),
                                     tool_choice="none", **ANSWER)
    check(second.previous_response_id == first.id, "previous_response_id not echoed")
    check(second.output_text.strip(), "empty continuation")
    cached = second.usage.input_tokens_details.cached_tokens
    check(cached > 0 or not cache, f"the continuation did not reuse the prefix cache: {second.usage}")
    print(f"    cached tokens on the continuation: {cached} of {second.usage.input_tokens}")
    try:
        client.responses.retrieve("resp_missing")
        raise AssertionError("unknown id found")
    except openai.NotFoundError:
        pass


def test_errors(client, model, base_url):
    try:
        client.responses.create(model=model, input="x", background=True)
        raise AssertionError("background accepted")
    except openai.BadRequestError as e:
        check(e.body["param"] == "background", f"{e.body}")
    try:
        client.responses.create(model=model, input="x", reasoning={"effort": "max"})
        raise AssertionError("an unknown reasoning effort accepted")
    except openai.BadRequestError as e:
        check(e.body["param"] == "reasoning.effort", f"{e.body}")
    status, body = raw_post(f"{base_url}/responses", b'{"input": [')
    check(status == 400 and body["error"]["type"] == "invalid_request_error", f"malformed: {status} {body}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--mock", action="store_true", help="the mock engine: skip what needs a model")
    args = parser.parse_args()
    client = OpenAI(base_url=args.base_url, api_key="not-needed", timeout=600, max_retries=0)
    tests = [
        ("two-step flow", test_two_step_flow),
        ("streaming", test_streaming),
        ("previous_response_id", lambda c, m: test_previous_response_id(c, m, not args.mock)),
        ("errors", lambda c, m: test_errors(c, m, args.base_url)),
    ]
    return run_all("responses", tests, client, args.model)


if __name__ == "__main__":
    sys.exit(main())
