#!/usr/bin/env python3
"""End-to-end runs of agent frameworks against callm, as their users write them:

- `openai-agents`: an Agent with two `@function_tool`s, run through its Responses model
  (`OpenAIResponsesModel`) and its Chat Completions model (`OpenAIChatCompletionsModel`); the
  run must complete with the tools called.
- LangChain: `ChatOpenAI(base_url=...)`, `bind_tools`, and a tool-calling agent
  (`langchain.agents.create_agent`) running the same two tools to a final answer.

The first model call must use a tool (`tool_choice="required"`, which the agents SDK resets
after a call; LangChain through a model middleware), since a 0.5B model may otherwise answer
from its own knowledge; and a 0.5B model left with the tools keeps calling them, so a tool is
offered only until it has run (the agents SDK's `is_enabled`; the middleware drops the tools
once results are in), after which the model answers in text.

Usage: agents_flow.py --base-url http://127.0.0.1:PORT/v1 --model NAME
"""

import argparse
import asyncio
import json
import os
import sys

os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")

from common import QUESTION, SYSTEM, TOOL_NAMES, check, run_all, run_tool  # noqa: E402


def get_current_weather(city: str) -> str:
    """Get the current weather (sky conditions) in a given city.

    Args:
        city: The city name, e.g. Paris.
    """
    CALLED.append("get_current_weather")
    return run_tool("get_current_weather", {"city": city})


def get_temperature(city: str, unit: str = "celsius") -> str:
    """Get the current temperature in a given city.

    Args:
        city: The city name, e.g. Paris.
        unit: celsius or fahrenheit.
    """
    CALLED.append("get_temperature")
    return run_tool("get_temperature", {"city": city, "unit": unit})


CALLED = []


def run_agent(base_url, model_name, responses):
    from agents import (Agent, ModelSettings, OpenAIChatCompletionsModel, OpenAIResponsesModel, Runner,
                        function_tool, set_tracing_disabled)
    from agents.items import ToolCallItem, ToolCallOutputItem
    from openai import AsyncOpenAI

    set_tracing_disabled(True)
    client = AsyncOpenAI(base_url=base_url, api_key="not-needed", max_retries=0, timeout=600)
    model = (OpenAIResponsesModel if responses else OpenAIChatCompletionsModel)(
        model=model_name, openai_client=client)
    agent = Agent(
        name="Weather assistant",
        instructions=SYSTEM,
        tools=[function_tool(f, is_enabled=lambda ctx, agent, name=f.__name__: name not in CALLED)
               for f in (get_current_weather, get_temperature)],
        model=model,
        model_settings=ModelSettings(tool_choice="required", temperature=0, max_tokens=64),
    )
    CALLED.clear()
    result = asyncio.run(Runner.run(agent, QUESTION, max_turns=6))
    calls = [i for i in result.new_items if isinstance(i, ToolCallItem)]
    outputs = [i for i in result.new_items if isinstance(i, ToolCallOutputItem)]
    check(calls and len(outputs) == len(calls), f"tool calls {len(calls)}, outputs {len(outputs)}")
    check(set(CALLED) <= TOOL_NAMES and CALLED, f"tools run: {CALLED}")
    check(isinstance(result.final_output, str) and result.final_output.strip(), f"final {result.final_output!r}")
    print(f"    tools: {CALLED}; answer: {result.final_output[:80]!r}")


def chat_model(base_url, model_name):
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(model=model_name, base_url=base_url, api_key="not-needed", temperature=0,
                      max_tokens=64, max_retries=0, timeout=600)


def test_langchain_bind_tools(base_url, model_name):
    from langchain_core.messages import HumanMessage, SystemMessage, ToolMessage

    llm = chat_model(base_url, model_name).bind_tools([get_current_weather, get_temperature],
                                                      tool_choice="required")
    messages = [SystemMessage(SYSTEM), HumanMessage(QUESTION)]
    ai = llm.invoke(messages)
    check(ai.tool_calls, f"no tool calls: {ai}")
    for c in ai.tool_calls:
        check(c["name"] in TOOL_NAMES and isinstance(c["args"], dict) and c["id"], f"call {c}")
    messages.append(ai)
    tools = {"get_current_weather": get_current_weather, "get_temperature": get_temperature}
    for c in ai.tool_calls:
        messages.append(ToolMessage(tools[c["name"]](**c["args"]), tool_call_id=c["id"]))
    final = chat_model(base_url, model_name).bind_tools(list(tools.values()), tool_choice="none").invoke(messages)
    check(isinstance(final.content, str) and final.content.strip() and not final.tool_calls, f"final {final}")


def test_langchain_agent(base_url, model_name):
    from langchain.agents import create_agent
    from langchain.agents.middleware import wrap_model_call
    from langchain_core.messages import AIMessage, ToolMessage

    @wrap_model_call
    def call_then_answer(request, handler):
        # Until a tool has answered, the model must call one; then it answers from the results.
        answered = any(isinstance(m, ToolMessage) for m in request.messages)
        return handler(request.override(tool_choice="none" if answered else "required"))

    agent = create_agent(chat_model(base_url, model_name), tools=[get_current_weather, get_temperature],
                         system_prompt=SYSTEM, middleware=[call_then_answer])
    CALLED.clear()
    out = agent.invoke({"messages": [{"role": "user", "content": QUESTION}]}, {"recursion_limit": 12})
    messages = out["messages"]
    results = [m for m in messages if isinstance(m, ToolMessage)]
    check(results and CALLED, f"no tool ran: {messages}")
    last = messages[-1]
    check(isinstance(last, AIMessage) and not last.tool_calls and last.content.strip(), f"final {last}")
    print(f"    tools: {CALLED}; answer: {last.content[:80]!r}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--model", required=True)
    args = parser.parse_args()
    tests = [
        ("openai-agents, Responses model", lambda b, m: run_agent(b, m, True)),
        ("openai-agents, Chat Completions model", lambda b, m: run_agent(b, m, False)),
        ("langchain bind_tools", test_langchain_bind_tools),
        ("langchain create_agent", test_langchain_agent),
    ]
    return run_all("agents", tests, args.base_url, args.model)


if __name__ == "__main__":
    sys.exit(main())
