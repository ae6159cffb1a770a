"""Shared pieces of the e2e flows of the Messages and Responses APIs and the agent frameworks:
the two local tools, their results, and the check/report loop."""

import json
import sys
import time
import traceback
import urllib.error
import urllib.request

SYSTEM = "You are a helpful assistant. Use the tools when they help answer the question."
QUESTION = "What is the weather in Paris, and what is the temperature there in celsius?"
TOOL_NAMES = {"get_current_weather", "get_temperature"}
WEATHER_DESC = "Get the current weather (sky conditions) in a given city."
TEMPERATURE_DESC = "Get the current temperature in a given city."
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "description": "The city name, e.g. Paris"}},
    "required": ["city"],
}
TEMPERATURE_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "The city name, e.g. Paris"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city"],
}


def run_tool(name, arguments):
    """Runs one of the local tools on the parsed arguments; returns its JSON text."""
    args = arguments if isinstance(arguments, dict) else {}
    city = args.get("city", "somewhere")
    if name == "get_current_weather":
        return json.dumps({"city": city, "sky": "sunny", "wind_kmh": 12})
    if name == "get_temperature":
        return json.dumps({"city": city, "temperature": 21, "unit": args.get("unit", "celsius")})
    return json.dumps({"error": f"unknown tool {name}"})


def check(cond, message):
    if not cond:
        raise AssertionError(message)


def raw_post(url, body, headers=None):
    """POSTs raw bytes; returns (status, parsed JSON body)."""
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def run_all(label, tests, *args):
    """Runs each (name, fn) with `args`, reports every failure, returns the exit status."""
    failures = 0
    for name, fn in tests:
        start = time.monotonic()
        try:
            fn(*args)
            print(f"[{label}] ok   {name} ({time.monotonic() - start:.1f}s)")
        except Exception as e:  # report every failure, keep going
            failures += 1
            print(f"[{label}] FAIL {name}: {e}")
            traceback.print_exc(limit=3)
    print(f"[{label}] {len(tests) - failures} passed, {failures} failed")
    sys.stdout.flush()
    return 1 if failures else 0
