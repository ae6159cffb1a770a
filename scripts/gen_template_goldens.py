#!/usr/bin/env python3
"""Writes the golden prompts of tests/templates*.rs into tests/data/templates/.

Never needed in CI: the outputs are committed. Run it again after changing a conversation:

    python3 scripts/gen_template_goldens.py

It creates (or reuses) a virtual environment with pinned `transformers` and `jinja2` from PyPI
(~/.cache/callm/golden-venv, or $CALLM_TPL_VENV) and re-runs itself inside.

- Upstream templates (fixtures/templates/*.jinja, located through $CALLM_FIXTURES, default
  ../shared/fixtures next to the crate) are rendered the way `apply_chat_template` renders them:
  message keys whose value is null dropped, then transformers' own `render_jinja_template`.
  `strftime_now` is pinned to NOW (the Rust test pins the same instant), so the templates that
  print today's date (gpt-oss; Mistral Small 3.2 and Granite 3.3 without a system message)
  have a reproducible golden.
- Null content: an assistant tool-call message with `content: null` is what OpenAI clients
  send. Where transformers renders it (the key dropped), that prompt is the golden. Where the
  template raises on it (Qwen3, Granite 3.3, Devstral, gpt-oss, Qwen3-Coder without a system
  message read `content` of that turn), the golden is the render with `content: ""`, as
  llama.cpp and vLLM normalise it, and the case says so (`"null_content": "empty"`).
  Functionary v3.1 is the one exception (see ASSETS.md): its `"..."|safe + text` makes
  Jinja2 HTML-escape the tool JSON, which is not what the model was trained on, so the
  `|safe` filters are removed before rendering (plain JSON).
- Bundled templates (templates/*.jinja) are NOT rendered here: their expected prompts come
  from the reference prompt builders below, written from FORMATS.md, independent of the
  Jinja files and of the Rust code.

The OpenAI requests (tests/data/templates/conversations/*.json) are turned into template
input by `normalize()` below, an independent implementation of the rules documented in
src/template/normalize.rs. Output: expected/<template>/<conversation>.txt, or .error
holding the message of the exception the template raised; manifest.json lists every case.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

VENV = Path(os.environ.get("CALLM_TPL_VENV", Path.home() / ".cache" / "callm" / "golden-venv"))
PINNED = ["transformers==5.23.0", "jinja2==3.1.6"]
ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(
    os.environ.get("CALLM_FIXTURES")
    or next((p for p in (ROOT.parent / "shared" / "fixtures", ROOT.parent.parent / "shared" / "fixtures") if p.is_dir()), "")
)
OUT = ROOT / "tests" / "data" / "templates"
DATE = "26 Jul 2024"
# The instant `strftime_now` sees, on both sides (manifest field "now").
NOW = "2024-07-26T09:30:00"


def ensure_venv():
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    py = VENV / "bin" / "python"
    if not py.exists():
        subprocess.check_call([sys.executable, "-m", "venv", str(VENV)])
        subprocess.check_call([str(py), "-m", "pip", "install", "-q", *PINNED])
    os.execv(str(py), [str(py), __file__, *sys.argv[1:]])


# ---------------------------------------------------------------- conversations (OpenAI format)

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city name, e.g. Paris."},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Temperature unit."},
            },
            "required": ["city"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current local time in a time zone.",
        "parameters": {
            "type": "object",
            "properties": {"tz": {"type": "string", "description": "IANA time zone name."}},
            "required": ["tz"],
        },
    },
}
TRANSLATE = {
    "type": "function",
    "function": {
        "name": "traduire",
        "description": "Traduit un texte vers une langue donnée (« cible »).",
        "parameters": {
            "type": "object",
            "properties": {
                "texte": {"type": "string", "description": "Le texte à traduire."},
                "langue": {"type": "string", "description": "Code de langue, p. ex. « ja »."},
            },
            "required": ["texte", "langue"],
        },
    },
}


def call(cid, name, args):
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


CONVERSATIONS = {
    "plain": {"messages": [{"role": "user", "content": "Hello! How are you?"}]},
    "system": {
        "messages": [
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "Name a prime number."},
            {"role": "assistant", "content": "7."},
            {"role": "user", "content": "Another one."},
        ]
    },
    "tools": {
        "tools": [WEATHER, TIME],
        "messages": [{"role": "user", "content": "What's the weather in Paris?"}],
    },
    "tool_call": {
        "tools": [WEATHER],
        "messages": [
            {"role": "system", "content": "You help with weather."},
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [call("abc123XYZ", "get_weather", {"city": "Paris", "unit": "celsius"})]},
            {"role": "tool", "tool_call_id": "abc123XYZ", "content": "{\"temperature\": 21, \"sky\": \"clear\"}"},
            {"role": "assistant", "content": "It is 21 °C and clear in Paris."},
        ],
    },
    "parallel": {
        "tools": [WEATHER, TIME],
        "messages": [
            {"role": "user", "content": "Weather and time in Tokyo?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    call("abc123XYZ", "get_weather", {"city": "Tokyo"}),
                    call("def456UVW", "get_time", {"tz": "Asia/Tokyo"}),
                ],
            },
            {"role": "tool", "tool_call_id": "abc123XYZ", "content": "{\"temperature\": 25}"},
            {"role": "tool", "tool_call_id": "def456UVW", "content": "\"14:05\""},
        ],
    },
    "multi_turn": {
        "tools": [WEATHER],
        "messages": [
            {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": None, "tool_calls": [call("ghi789RST", "get_weather", {"city": "Oslo"})]},
            {"role": "tool", "tool_call_id": "ghi789RST", "content": "{\"temperature\": -3}"},
            {"role": "assistant", "content": "It is -3 degrees in Oslo."},
            {"role": "user", "content": "Thanks! And should I take a coat?"},
        ],
    },
    "non_ascii": {
        "tools": [TRANSLATE],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Traduis « où est la gare ? » "}, {"type": "text", "text": "en japonais 🚉."}]},
            {"role": "assistant", "content": None, "tool_calls": [call("jkl012MNO", "traduire", {"texte": "où est la gare ?", "langue": "ja"})]},
            {"role": "tool", "tool_call_id": "jkl012MNO", "content": "駅はどこですか？"},
            {"role": "assistant", "content": "« 駅はどこですか？ » 😀"},
            {"role": "user", "content": "Merci, ça marche."},
        ],
    },
    # A tool loop in progress: the reasoning of the turn after the last user query.
    "reasoning": {
        "tools": [WEATHER],
        "messages": [
            {"role": "user", "content": "Weather in Lyon?"},
            {
                "role": "assistant",
                "content": None,
                "reasoning_content": "The user wants the weather in Lyon. I should call get_weather.",
                "tool_calls": [call("mno345PQR", "get_weather", {"city": "Lyon"})],
            },
            {"role": "tool", "tool_call_id": "mno345PQR", "content": "{\"temperature\": 18}"},
        ],
    },
    # Reasoning of an earlier turn, before the last user query.
    "reasoning_history": {
        "messages": [
            {"role": "user", "content": "What is 17 * 3?"},
            {"role": "assistant", "content": "51.", "reasoning_content": "17 * 3 = 51."},
            {"role": "user", "content": "And 17 * 4?"},
        ],
    },
}

UPSTREAM = {
    # template file: (bos, eos, extra kwargs)
    "meta-llama-Llama-3.1-8B-Instruct.jinja": ("<|begin_of_text|>", "<|eot_id|>", {}),
    "meta-llama-Llama-3.2-3B-Instruct.jinja": ("<|begin_of_text|>", "<|eot_id|>", {}),
    "mistralai-Mistral-7B-Instruct-v0.3.jinja": ("<s>", "</s>", {}),
    "mistralai-Mistral-Nemo-Instruct-2407.jinja": ("<s>", "</s>", {}),
    "Qwen-Qwen2.5-7B-Instruct.jinja": (None, "<|im_end|>", {}),
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja": ("<|begin_of_text|>", "<|im_end|>", {}),
    "meetkai-functionary-medium-v3.1.jinja": ("<|begin_of_text|>", "<|eot_id|>", {}),
    "fireworks-ai-llama-3-firefunction-v2.jinja": ("<|begin_of_text|>", "<|eot_id|>", {"datetime": "2024-07-26"}),
    "deepseek-coder-instruct.jinja": ("<｜begin▁of▁sentence｜>", "<|EOT|>", {}),
    "codellama-instruct.jinja": ("<s>", "</s>", {}),
    # The newer templates (fixtures/templates/README.md gives each one's tokens).
    "Qwen-Qwen3-0.6B.jinja": (None, "<|im_end|>", {}),
    "Qwen3-Coder.jinja": (None, "<|im_end|>", {}),
    "HuggingFaceTB-SmolLM3-3B.jinja": (None, "<|im_end|>", {}),
    "ibm-granite-granite-3.3-2B-Instruct.jinja": ("<|end_of_text|>", "<|end_of_text|>", {}),
    "ibm-granite-granite-4.0.jinja": ("<|end_of_text|>", "<|end_of_text|>", {}),
    "Mistral-Small-3.2-24B-Instruct-2506.jinja": ("<s>", "</s>", {}),
    "unsloth-mistral-Devstral-Small-2507.jinja": ("<s>", "</s>", {}),
    "meta-llama-Llama-3.3-70B-Instruct.jinja": ("<|begin_of_text|>", "<|eot_id|>", {}),
    "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja": ("<|begin_of_text|>", "<|im_end|>", {}),
    "meetkai-functionary-medium-v3.2.jinja": ("<|begin_of_text|>", "<|eot_id|>", {}),
    "openai-gpt-oss-120b.jinja": ("<|startoftext|>", "<|return|>", {}),
    "microsoft-Phi-3.5-mini-instruct.jinja": ("<s>", "<|endoftext|>", {}),
    "google-gemma-2-2b-it.jinja": ("<bos>", "<eos>", {}),
}
# Cases beyond every conversation with the template's kwargs: (conversation, extra kwargs).
# The case is named "<conversation>+<key>=<value>".
VARIANTS = {
    "Qwen-Qwen3-0.6B.jinja": [("multi_turn", {"enable_thinking": False}), ("reasoning", {"enable_thinking": False})],
    "HuggingFaceTB-SmolLM3-3B.jinja": [("multi_turn", {"enable_thinking": False}), ("system", {"enable_thinking": False})],
    "ibm-granite-granite-3.3-2B-Instruct.jinja": [("plain", {"thinking": True})],
    "openai-gpt-oss-120b.jinja": [("tools", {"reasoning_effort": "high"})],
}
BUNDLED = {
    "gorilla-openfunctions-v2.jinja": ("<｜begin▁of▁sentence｜>", "<|EOT|>"),
    "glaive-function-calling-v1.jinja": ("<|endoftext|>", "<|endoftext|>"),
    "nexusraven-v2.jinja": ("<s>", "</s>"),
    "chatglm3-6b.jinja": (None, None),
}


# ---------------------------------------------------------------- normalization (independent)

def parse_args(raw):
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def normalize(req, split_parallel, null_content=None, text_arguments=False):
    """OpenAI request -> template input. `null_content`: what an assistant tool-call message
    without content gets (None: the key is dropped, as apply_chat_template drops null keys;
    "": llama.cpp's and vLLM's normalisation). `text_arguments`: call arguments stay JSON text
    (json.dumps of the parsed value) for templates that concatenate them as strings."""
    tools = req.get("tools") or None
    if tools is None and req.get("functions"):
        tools = [{"type": "function", "function": f} for f in req["functions"]]
    msgs = []
    for m in req["messages"]:
        role = {"developer": "system", "function": "tool"}.get(m["role"], m["role"])
        calls = []
        for c in m.get("tool_calls") or []:
            args = parse_args(c["function"]["arguments"])
            if text_arguments:
                args = json.dumps(args, ensure_ascii=False)
            calls.append({"id": c["id"], "type": "function", "function": {"name": c["function"]["name"], "arguments": args}})
        content = m.get("content")
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if p.get("text") is not None)
        if content is None:
            content = null_content if calls else ""
        out = {"role": role, "content": content}
        if m.get("reasoning_content") is not None:
            out["reasoning_content"] = m["reasoning_content"]
        if "name" in m:
            out["name"] = m["name"]
        if calls:
            out["tool_calls"] = calls
        if role == "tool":
            out["tool_call_id"] = m["tool_call_id"]
        msgs.append(out)
    if split_parallel:
        msgs = split_calls(msgs)
    return msgs, tools


def split_calls(msgs):
    """One assistant message per call; each call followed by its own result when they follow."""
    out, i = [], 0
    while i < len(msgs):
        m = msgs[i]
        calls = m.get("tool_calls") or []
        if len(calls) < 2:
            out.append(m)
            i += 1
            continue
        results = msgs[i + 1 : i + 1 + len(calls)]
        by_id = {r.get("tool_call_id"): r for r in results if r["role"] == "tool"}
        interleave = len(by_id) == len(calls) and all(c["id"] in by_id for c in calls)
        for k, c in enumerate(calls):
            out.append(dict(m, tool_calls=[c], content=m["content"] if k == 0 else None))
            if interleave:
                out.append(by_id[c["id"]])
        i += 1 + (len(calls) if interleave else 0)
    return out


# ---------------------------------------------------------------- reference builders (FORMATS.md)

GORILLA_SYSTEM = (
    "You are an AI programming assistant, utilizing the Gorilla LLM model, developed by Gorilla LLM, and you only "
    "answer questions related to computer science. For politically sensitive questions, security and privacy "
    "issues, and other non-computer science questions, you will refuse to answer."
)


def fn_defs(tools):
    return [t.get("function", t) for t in (tools or [])]


def py_call(name, args):
    if isinstance(args, dict):
        return f"{name}(" + ", ".join(f"{k}={v!r}" for k, v in args.items()) + ")"
    return f"{name}({args})"


def split_system(msgs):
    if msgs and msgs[0]["role"] == "system":
        return msgs[0]["content"], msgs[1:]
    return None, msgs


def ref_gorilla(msgs, tools, bos):
    system, msgs = split_system(msgs)
    functions = fn_defs(tools)
    last_user = max((i for i, m in enumerate(msgs) if m["role"] == "user"), default=-1)
    out = (bos or "") + (system if system is not None else GORILLA_SYSTEM) + "\n"
    for i, m in enumerate(msgs):
        if m["role"] == "user":
            if functions and i == last_user:
                out += f"### Instruction: <<function>>{json.dumps(functions)}\n<<question>>{m['content']}\n"
            else:
                out += f"### Instruction: <<question>> {m['content']}\n"
        elif m["role"] == "assistant":
            body = "<<function>>".join(py_call(c["function"]["name"], c["function"]["arguments"]) for c in m.get("tool_calls", []))
            out += "### Response: " + (body if m.get("tool_calls") else m["content"]) + "\n<|EOT|>\n"
        elif m["role"] == "tool":
            out += f"### Function Response: {m['content']}\n"
    return out + "### Response: "


def ref_glaive(msgs, tools, bos):
    system, msgs = split_system(msgs)
    out = f"SYSTEM: {system}\n" if system is not None else ""
    if tools:
        out += "SYSTEM: You are an helpful assistant who has access to the following functions to help the user, you can use the functions if needed-\n"
        out += "".join(json.dumps(f, indent=4) + "\n" for f in fn_defs(tools))
    for m in msgs:
        if m["role"] == "user":
            out += f"USER: {m['content']}\n"
        elif m["role"] == "assistant" and m.get("tool_calls"):
            for c in m["tool_calls"]:
                args = c["function"]["arguments"]
                args = args if isinstance(args, str) else json.dumps(args)
                out += 'ASSISTANT: <functioncall> {"name": "%s", "arguments": \'%s\'} <|endoftext|>\n' % (c["function"]["name"], args)
        elif m["role"] == "assistant":
            out += f"ASSISTANT: {m['content']} <|endoftext|>\n"
        elif m["role"] == "tool":
            out += f"FUNCTION RESPONSE: {m['content']}\n"
    return out


def ref_chatglm3(msgs, tools, bos):
    system, msgs = split_system(msgs)
    out = "[gMASK]sop"

    def msg(role, metadata, content):
        # The reference encodes "{metadata}\n" and the content separately; SentencePiece gives
        # the content a leading space.
        return f"<|{role}|>{metadata}\n {content}"

    if tools:
        text = system if system is not None else "Answer the following questions as best as you can. You have access to the following tools:"
        out += msg("system", "", text + "\n" + json.dumps(fn_defs(tools), indent=4, ensure_ascii=False))
    elif system is not None:
        out += msg("system", "", system)
    for m in msgs:
        if m["role"] == "user":
            out += msg("user", "", m["content"])
        elif m["role"] == "assistant" and m.get("tool_calls"):
            for c in m["tool_calls"]:
                code = "```python\n" + py_call("tool_call", c["function"]["arguments"]) + "\n```"
                out += msg("assistant", c["function"]["name"], code)
        elif m["role"] == "assistant":
            out += msg("assistant", "", m["content"])
        elif m["role"] == "tool":
            out += msg("observation", "", m["content"])
    return out + "<|assistant|>"


PY_TYPES = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "object": "dict"}


def py_type(schema):
    t = schema.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), None)
    if t == "array":
        inner = py_type(schema.get("items") or {})
        return f"list[{inner}]" if inner and inner not in ("list", "dict") and not inner.startswith("list[") else "list"
    return PY_TYPES.get(t)


def nexus_stub(f):
    params = f.get("parameters") or {}
    required = params.get("required") or []
    props = list((params.get("properties") or {}).items())
    props = [p for p in props if p[0] in required] + [p for p in props if p[0] not in required]
    sig = []
    for name, s in props:
        t = py_type(s)
        opt = name not in required
        sig.append(name + (f": {t}" if t else "") + ((" = None" if t else "=None") if opt else ""))
    desc = (f.get("description") or "").strip()
    lines = [f"def {f['name']}({', '.join(sig)}):", '    """']
    if desc:
        lines += ["    " + l if l else "" for l in desc.split("\n")]
    if desc and props:
        lines.append("")
    if props:
        lines.append("    Args:")
        for name, s in props:
            line = f"    {name} ({py_type(s) or 'Any'}" + (", optional" if name not in required else "") + "):"
            d = (s.get("description") or "").strip()
            if d:
                line += " " + " ".join(d.split("\n"))
            if "enum" in s:
                line += " Choices: " + ", ".join(repr(e) for e in s["enum"]) + "."
            lines.append(line)
    lines.append('    """')
    return "\n".join(lines)


def ref_nexusraven(msgs, tools, bos):
    system, msgs = split_system(msgs)
    out = (bos or "") + (system + "\n\n" if system is not None else "")
    for f in fn_defs(tools):
        out += "Function:\n" + nexus_stub(f) + "\n\n"
    for m in msgs:
        if m["role"] == "user":
            out += f"User Query: {m['content']}<human_end>"
        elif m["role"] == "assistant" and m.get("tool_calls"):
            out += "Call: " + "; ".join(py_call(c["function"]["name"], c["function"]["arguments"]) for c in m["tool_calls"]) + "<bot_end>\n"
        elif m["role"] == "assistant":
            out += m["content"] + "<bot_end>\n"
        elif m["role"] == "tool":
            out += f"Function Output: {m['content']}\n"
    return out


REFERENCES = {
    "gorilla-openfunctions-v2.jinja": ref_gorilla,
    "glaive-function-calling-v1.jinja": ref_glaive,
    "nexusraven-v2.jinja": ref_nexusraven,
    "chatglm3-6b.jinja": ref_chatglm3,
}


# ---------------------------------------------------------------- main

def pin_clock():
    """`strftime_now` reads `datetime.now()` in transformers' module: pin it to NOW."""
    from datetime import datetime

    import transformers.utils.chat_template_utils as ctu

    fixed = datetime.fromisoformat(NOW)

    class Pinned(datetime):
        @classmethod
        def now(cls, tz=None):
            return fixed

    ctu.datetime = Pinned


def render_upstream(template, bos, eos, kwargs, msgs, tools):
    from transformers.utils.chat_template_utils import render_jinja_template

    # apply_chat_template drops every message key whose value is null before rendering.
    msgs = [{k: v for k, v in m.items() if v is not None} for m in msgs]
    special = {"eos_token": eos}
    if bos is not None:
        special["bos_token"] = bos
    rendered, _ = render_jinja_template(
        conversations=[msgs], tools=tools, chat_template=template, add_generation_prompt=True, **special, **kwargs
    )
    return rendered[0]


PROBE_KEY = "callm_probe_key"


def wants_text_arguments(template, bos, eos):
    """Whether a template needs call arguments as JSON text: it fails on, or does not print,
    arguments passed as a mapping, and prints them passed as text (Functionary v3.2
    concatenates them). The Rust side decides the same way (template::render)."""
    req = {
        "tools": [WEATHER],
        "messages": [
            {"role": "user", "content": "probe"},
            {"role": "assistant", "content": None, "tool_calls": [call("probe0001", "get_weather", {PROBE_KEY: "x"})]},
            {"role": "tool", "tool_call_id": "probe0001", "content": "probe"},
        ],
    }

    def prints_arguments(as_text):
        msgs, tools = normalize(req, False, "", as_text)
        try:
            return PROBE_KEY in render_upstream(template, bos, eos, {}, msgs, tools)
        except Exception:
            return False

    return not prints_arguments(False) and prints_arguments(True)


def has_null_content(req):
    return any(m.get("content") is None and m.get("tool_calls") for m in req["messages"])


def cases(tpl_name):
    for conv, req in CONVERSATIONS.items():
        yield conv, req, {}
    for conv, extra in VARIANTS.get(tpl_name, []):
        name = conv + "".join(f"+{k}={json.dumps(v).strip(chr(34))}" for k, v in extra.items())
        yield name, CONVERSATIONS[conv], extra


def main():
    ensure_venv()
    pin_clock()
    (OUT / "conversations").mkdir(parents=True, exist_ok=True)
    for name, req in CONVERSATIONS.items():
        req = dict(req, chat_template_kwargs={"date_string": DATE})
        (OUT / "conversations" / f"{name}.json").write_text(json.dumps(req, indent=2, ensure_ascii=False) + "\n")
    manifest = []
    for tpl_name, (bos, eos, extra) in UPSTREAM.items():
        text = (FIXTURES / "templates" / tpl_name).read_text()
        if "functionary-medium-v3.1" in tpl_name:
            text = text.replace("|safe", "")
        split = "only supports single tool-calls" in text
        text_args = wants_text_arguments(text, bos, eos)
        for case, req, variant in cases(tpl_name):
            kwargs = dict(extra, date_string=DATE, **variant)
            if "firefunction" in tpl_name:
                kwargs["functions"] = json.dumps(fn_defs(req.get("tools")), indent=4)
            null_mode = None
            try:
                msgs, tools = normalize(req, split, None, text_args)
                result, is_err = render_upstream(text, bos, eos, kwargs, msgs, tools), False
            except Exception as e:  # the template raised: the Rust side must fail too
                result, is_err = str(e), True
            if is_err and has_null_content(req):
                # Where transformers fails on a null content, the normalised render is the golden.
                null_mode = "empty"
                try:
                    msgs, tools = normalize(req, split, "", text_args)
                    result, is_err = render_upstream(text, bos, eos, kwargs, msgs, tools), False
                except Exception as e:
                    result, is_err = str(e), True
            case_entry = write_case("fixture", tpl_name, case, bos, eos, kwargs, result, is_err)
            case_entry["conversation"] = case.split("+")[0]
            case_entry["now"] = NOW
            if null_mode:
                case_entry["null_content"] = null_mode
            if text_args:
                case_entry["text_arguments"] = True
            manifest.append(case_entry)
    for tpl_name, (bos, eos) in BUNDLED.items():
        for conv, req in CONVERSATIONS.items():
            msgs, tools = normalize(req, False, "")
            result = REFERENCES[tpl_name](msgs, tools, bos)
            manifest.append(write_case("bundled", tpl_name, conv, bos, eos, {"date_string": DATE}, result, False))
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {len(manifest)} cases to {OUT}")


def write_case(kind, tpl_name, conv, bos, eos, kwargs, result, is_err):
    d = OUT / "expected" / tpl_name.removesuffix(".jinja")
    d.mkdir(parents=True, exist_ok=True)
    fname = f"{conv}.{'error' if is_err else 'txt'}"
    with open(d / fname, "w", encoding="utf-8", newline="") as f:
        f.write(result)
    return {
        "source": kind,
        "template": tpl_name,
        "conversation": conv,
        "bos_token": bos,
        "eos_token": eos,
        "kwargs": kwargs,
        "expected": f"expected/{d.name}/{fname}",
        "error": is_err,
    }


if __name__ == "__main__":
    main()
