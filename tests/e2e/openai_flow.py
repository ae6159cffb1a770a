#!/usr/bin/env python3
"""End-to-end protocol checks of `callm serve` with the official `openai` client.

Assertions are about shapes and protocol (a small model's wording varies): tool calls
with the right names and JSON-object arguments, non-empty final answers, finish_reason
values, choice indices, seed reproducibility, and concurrent clients: eight tool-calling
requests at once (the server batches them) answer exactly what each answers alone.

Usage: openai_flow.py --base-url http://127.0.0.1:PORT/v1 [--model NAME] [--label TEXT]
                      [--skip-errors]
"""

import argparse
import json
import re
import sys
import threading
import traceback
import urllib.request

import openai
from openai import OpenAI

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather (sky conditions) in a given city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city name, e.g. Paris"},
            },
            "required": ["city"],
        },
    },
}
TEMPERATURE_TOOL = {
    "type": "function",
    "function": {
        "name": "get_temperature",
        "description": "Get the current temperature in a given city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city name, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
TOOLS = [WEATHER_TOOL, TEMPERATURE_TOOL]
TOOL_NAMES = {t["function"]["name"] for t in TOOLS}
SYSTEM = "You are a helpful assistant. Use the tools when they help answer the question."
QUESTION = "What is the weather in Paris, and what is the temperature there in celsius?"

FAILURES = []
PASSED = []


def run_tool(name, arguments):
    """Runs one of the local tools on the parsed arguments."""
    city = arguments.get("city", "somewhere") if isinstance(arguments, dict) else "somewhere"
    if name == "get_current_weather":
        return json.dumps({"city": city, "sky": "sunny", "wind_kmh": 12})
    if name == "get_temperature":
        unit = arguments.get("unit", "celsius") if isinstance(arguments, dict) else "celsius"
        return json.dumps({"city": city, "temperature": 21, "unit": unit})
    return json.dumps({"error": f"unknown tool {name}"})


def check(cond, message):
    if not cond:
        raise AssertionError(message)


def parse_args_object(arguments, where):
    """The arguments string must parse to a JSON object."""
    check(isinstance(arguments, str), f"{where}: arguments must be a string, got {arguments!r}")
    try:
        value = json.loads(arguments)
    except json.JSONDecodeError as e:
        raise AssertionError(f"{where}: arguments are not JSON: {arguments!r} ({e})")
    check(isinstance(value, dict), f"{where}: arguments must be a JSON object: {arguments!r}")
    return value


def check_tool_calls(message, where, expected_name=None):
    calls = message.tool_calls
    check(calls, f"{where}: expected tool calls, got message {message.model_dump()}")
    for call in calls:
        check(call.type == "function", f"{where}: call type {call.type!r}")
        check(isinstance(call.id, str) and call.id, f"{where}: call id {call.id!r}")
        check(call.function.name in TOOL_NAMES, f"{where}: unknown function {call.function.name!r}")
        parse_args_object(call.function.arguments, where)
    if expected_name:
        check(calls[0].function.name == expected_name,
              f"{where}: expected {expected_name}, got {calls[0].function.name}")
    return calls


def check_text_answer(choice, where):
    check(choice.finish_reason in ("stop", "length"), f"{where}: finish_reason {choice.finish_reason!r}")
    check(not choice.message.tool_calls, f"{where}: unexpected tool calls")
    check(isinstance(choice.message.content, str) and choice.message.content.strip(),
          f"{where}: empty answer {choice.message.model_dump()}")


def tool_messages(calls):
    out = []
    for call in calls:
        result = run_tool(call.function.name, json.loads(call.function.arguments))
        out.append({"role": "tool", "tool_call_id": call.id, "content": result})
    return out


def finish_with_answer(client, model, messages, where, max_rounds=3):
    """Second step of the flow: send results until the model answers in text."""
    for round_ in range(max_rounds):
        choice = client.chat.completions.create(
            model=model, messages=messages, tools=TOOLS,
            tool_choice="none" if round_ == max_rounds - 1 else "auto",
            temperature=0, max_tokens=128,
        ).choices[0]
        if choice.message.tool_calls:
            calls = check_tool_calls(choice.message, f"{where} round {round_}")
            # `length`: max_tokens cut a later call; the complete calls before it come back
            # (README, "A cut answer"), and the flow goes on with them.
            check(choice.finish_reason in ("tool_calls", "length"),
                  f"{where}: finish_reason {choice.finish_reason!r}")
            messages.append(choice.message.model_dump())
            messages.extend(tool_messages(calls))
            continue
        check_text_answer(choice, where)
        return choice.message.content
    raise AssertionError(f"{where}: no text answer after {max_rounds} rounds")


def test_models(client, model):
    ids = [m.id for m in client.models.list().data]
    check(model in ids, f"served model {model!r} not in {ids}")


def test_two_step_flow(client, model):
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]
    resp = client.chat.completions.create(
        model=model, messages=messages, tools=TOOLS, tool_choice="required", temperature=0, max_tokens=128,
    )
    check(resp.object == "chat.completion", f"object {resp.object!r}")
    check(resp.id.startswith("chatcmpl-"), f"id {resp.id!r}")
    check(resp.usage and resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens,
          f"usage {resp.usage}")
    choice = resp.choices[0]
    check(choice.finish_reason == "tool_calls", f"finish_reason {choice.finish_reason!r}")
    calls = check_tool_calls(choice.message, "step 1")
    messages.append(choice.message.model_dump())  # as the SDK returns it, nulls included
    messages.extend(tool_messages(calls))
    answer = finish_with_answer(client, model, messages, "step 2")
    print(f"    answer: {answer[:120]!r}")


def accumulate_stream(stream):
    """Builds a message dict (and the finish_reason, usage) from streamed deltas."""
    message = {"role": None, "content": None, "tool_calls": []}
    finish = None
    usage = None
    saw_role = False
    for chunk in stream:
        check(chunk.object == "chat.completion.chunk", f"chunk object {chunk.object!r}")
        if chunk.usage is not None:
            usage = chunk.usage
        for ch in chunk.choices:
            d = ch.delta
            if d.role:
                check(not saw_role, "role sent twice")
                saw_role = True
                message["role"] = d.role
            if d.content:
                message["content"] = (message["content"] or "") + d.content
            for tc in d.tool_calls or []:
                while len(message["tool_calls"]) <= tc.index:
                    message["tool_calls"].append(
                        {"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
                slot = message["tool_calls"][tc.index]
                if tc.id:
                    check(slot["id"] is None, "a call id was sent twice")
                    slot["id"] = tc.id
                if tc.function and tc.function.name:
                    slot["function"]["name"] += tc.function.name
                if tc.function and tc.function.arguments:
                    slot["function"]["arguments"] += tc.function.arguments
            if ch.finish_reason:
                finish = ch.finish_reason
    check(saw_role and message["role"] == "assistant", "first chunk must carry role=assistant")
    if not message["tool_calls"]:
        message["tool_calls"] = None
    return message, finish, usage


def test_two_step_flow_streaming(client, model):
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]
    stream = client.chat.completions.create(
        model=model, messages=messages, tools=TOOLS, tool_choice="required", temperature=0, max_tokens=128,
        stream=True, stream_options={"include_usage": True},
    )
    message, finish, usage = accumulate_stream(stream)
    check(finish == "tool_calls", f"finish_reason {finish!r}")
    check(usage is not None and usage.completion_tokens > 0, f"usage {usage}")
    check(message["tool_calls"], f"no tool calls in {message}")
    results = []
    for call in message["tool_calls"]:
        check(call["id"], "streamed call without id")
        check(call["function"]["name"] in TOOL_NAMES, f"unknown function {call['function']['name']!r}")
        args = parse_args_object(call["function"]["arguments"], "streamed call")
        results.append({"role": "tool", "tool_call_id": call["id"],
                        "content": run_tool(call["function"]["name"], args)})
    messages.append(message)
    messages.extend(results)
    stream = client.chat.completions.create(
        model=model, messages=messages, tools=TOOLS, tool_choice="none", temperature=0, max_tokens=128,
        stream=True,
    )
    message, finish, _ = accumulate_stream(stream)
    check(finish in ("stop", "length"), f"final finish_reason {finish!r}")
    check(message["content"] and message["content"].strip(), "empty streamed answer")


def test_tool_choice_modes(client, model):
    base = dict(model=model, messages=[{"role": "user", "content": QUESTION}], tools=TOOLS,
                temperature=0, max_tokens=96)
    choice = client.chat.completions.create(tool_choice="none", **base).choices[0]
    check_text_answer(choice, "tool_choice=none")
    choice = client.chat.completions.create(tool_choice="auto", **base).choices[0]
    if choice.message.tool_calls:
        check(choice.finish_reason == "tool_calls", f"auto: finish_reason {choice.finish_reason!r}")
        check_tool_calls(choice.message, "tool_choice=auto")
    else:
        check_text_answer(choice, "tool_choice=auto")
    choice = client.chat.completions.create(tool_choice="required", **base).choices[0]
    check(choice.finish_reason == "tool_calls", f"required: finish_reason {choice.finish_reason!r}")
    check_tool_calls(choice.message, "tool_choice=required")
    named = {"type": "function", "function": {"name": "get_temperature"}}
    choice = client.chat.completions.create(tool_choice=named, **base).choices[0]
    check(choice.finish_reason in ("tool_calls", "stop"), f"named: finish_reason {choice.finish_reason!r}")
    check_tool_calls(choice.message, "tool_choice=named", expected_name="get_temperature")


def test_legacy_functions(client, model):
    functions = [t["function"] for t in TOOLS]
    resp = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": QUESTION}], functions=functions,
        function_call={"name": "get_current_weather"}, temperature=0, max_tokens=96,
    )
    choice = resp.choices[0]
    check(choice.finish_reason in ("function_call", "stop"), f"legacy finish_reason {choice.finish_reason!r}")
    fc = choice.message.function_call
    check(fc is not None, f"no function_call in {choice.message.model_dump()}")
    check(fc.name == "get_current_weather", f"legacy name {fc.name!r}")
    args = parse_args_object(fc.arguments, "legacy function_call")
    check(not choice.message.tool_calls, "legacy answers carry no tool_calls")
    messages = [
        {"role": "user", "content": QUESTION},
        choice.message.model_dump(),
        {"role": "function", "name": fc.name, "content": run_tool(fc.name, args)},
    ]
    final = client.chat.completions.create(model=model, messages=messages, functions=functions,
                                           function_call="none", temperature=0, max_tokens=96)
    check_text_answer(final.choices[0], "legacy final answer")


def test_n_choices(client, model):
    resp = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Say something about the sea."}],
        n=2, temperature=0.8, seed=7, max_tokens=32,
    )
    check(sorted(c.index for c in resp.choices) == [0, 1], f"indices {[c.index for c in resp.choices]}")
    for c in resp.choices:
        check_text_answer(c, f"n=2 choice {c.index}")


def test_seed(client, model):
    kwargs = dict(model=model, messages=[{"role": "user", "content": "Write one sentence about rivers."}],
                  temperature=0.8, seed=1234, max_tokens=32)
    a = client.chat.completions.create(**kwargs).choices[0].message.content
    b = client.chat.completions.create(**kwargs).choices[0].message.content
    check(a == b, f"same seed, different text: {a!r} vs {b!r}")


CITIES = ["Paris", "Tokyo", "Lima", "Oslo", "Cairo", "Quito", "Hanoi", "Perth"]


def concurrent_request(i):
    """Request `i` of the concurrency check: its keyword arguments and whether it streams.
    Even ones are greedy, odd ones sampled with a seed; every other pair streams."""
    kwargs = dict(messages=[{"role": "system", "content": SYSTEM},
                            {"role": "user", "content": f"What is the weather in {CITIES[i]}?"}],
                  tools=TOOLS, max_tokens=48)
    if i % 2:
        kwargs.update(temperature=0.8, seed=100 + i)
    else:
        kwargs.update(temperature=0)
    return kwargs, i % 4 >= 2


def answer_of(client, model, i):
    """Request `i`'s answer as (content, [(name, arguments)], finish_reason), streamed or not."""
    kwargs, stream = concurrent_request(i)
    if stream:
        message, finish, _ = accumulate_stream(
            client.chat.completions.create(model=model, stream=True, **kwargs))
        calls = [(c["function"]["name"], c["function"]["arguments"]) for c in message["tool_calls"] or []]
        return message["content"], calls, finish
    choice = client.chat.completions.create(model=model, **kwargs).choices[0]
    calls = [(c.function.name, c.function.arguments) for c in choice.message.tool_calls or []]
    return choice.message.content, calls, choice.finish_reason


def batched_passes(metrics_url):
    """Forward passes so far that ran more than one sequence (from `GET /metrics`)."""
    text = urllib.request.urlopen(metrics_url, timeout=30).read().decode()
    def value(pattern):
        m = re.search(pattern, text, re.M)
        check(m, f"/metrics lacks {pattern!r}")
        return float(m.group(1))
    return value(r"^callm_batch_sequences_count (\S+)$") - value(r'^callm_batch_sequences_bucket\{le="1"\} (\S+)$')


def test_concurrent_clients(client, model, metrics_url):
    n = len(CITIES)
    alone = [answer_of(client, model, i) for i in range(n)]
    before = batched_passes(metrics_url)
    together = [None] * n
    errors = []
    start = threading.Barrier(n)

    def worker(i):
        try:
            start.wait(timeout=60)
            together[i] = answer_of(client, model, i)
        except Exception as e:  # reported below, with the request's index
            errors.append(f"request {i}: {e!r}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    check(not errors, "; ".join(errors))
    batched = batched_passes(metrics_url) - before
    check(batched > 0, "no forward pass ran more than one sequence: the requests were not batched")
    for i, (a, b) in enumerate(zip(alone, together)):
        kind = "seeded" if i % 2 else "greedy"
        check(a == b, f"request {i} ({kind}): alone {a!r}, batched {b!r}")
    calls = sum(1 for a in alone if a[1])
    print(f"    {n} concurrent requests ({calls} with tool calls) equal to each alone; "
          f"{batched:.0f} forward passes ran several sequences")


def test_completions(client, model):
    resp = client.completions.create(model=model, prompt="def add(a, b):", max_tokens=16, temperature=0)
    check(resp.object == "text_completion", f"object {resp.object!r}")
    check(isinstance(resp.choices[0].text, str), "completion text")
    check(resp.choices[0].finish_reason in ("stop", "length"), f"finish {resp.choices[0].finish_reason!r}")


def test_errors(client, model):
    try:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
        raise AssertionError("unknown model accepted")
    except openai.NotFoundError as e:
        check(e.status_code == 404, f"status {e.status_code}")
    try:
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "x"}], tools=TOOLS,
            tool_choice={"type": "function", "function": {"name": "undeclared"}})
        raise AssertionError("undeclared tool_choice accepted")
    except openai.BadRequestError as e:
        check(e.status_code == 400, f"status {e.status_code}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--model", default=None)
    parser.add_argument("--api-key", default="not-needed")
    parser.add_argument("--label", default="callm")
    parser.add_argument("--skip-errors", action="store_true", help="skip error-status checks (proxies remap them)")
    parser.add_argument("--skip-completions", action="store_true")
    parser.add_argument("--skip-concurrency", action="store_true",
                        help="skip the concurrent-clients check (it reads the server's /metrics)")
    args = parser.parse_args()
    client = OpenAI(base_url=args.base_url, api_key=args.api_key, timeout=600, max_retries=0)
    model = args.model or client.models.list().data[0].id
    tests = [
        ("models", test_models),
        ("two-step flow", test_two_step_flow),
        ("two-step flow, streaming", test_two_step_flow_streaming),
        ("tool_choice none/auto/required/named", test_tool_choice_modes),
        ("legacy functions", test_legacy_functions),
        ("n=2", test_n_choices),
        ("seed reproducibility", test_seed),
    ]
    if not args.skip_completions:
        tests.append(("completions", test_completions))
    if not args.skip_errors:
        tests.append(("error statuses", test_errors))
    if not args.skip_concurrency:
        metrics_url = args.base_url.rstrip("/").removesuffix("/v1") + "/metrics"
        tests.append(("concurrent clients, batched = alone",
                      lambda c, m: test_concurrent_clients(c, m, metrics_url)))
    for name, fn in tests:
        try:
            fn(client, model)
            PASSED.append(name)
            print(f"[{args.label}] ok   {name}")
        except Exception as e:  # report every failure, keep going
            FAILURES.append(name)
            print(f"[{args.label}] FAIL {name}: {e}")
            traceback.print_exc(limit=3)
    print(f"[{args.label}] {len(PASSED)} passed, {len(FAILURES)} failed")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
