#!/usr/bin/env python3
"""Writes the golden prompts of tests/templates_prompt_end.rs into tests/data/prompt_end/.

Never needed in CI: the outputs are committed. Run it again after changing a case:

    python3 scripts/gen_prompt_end_goldens.py

Like gen_template_goldens.py (whose venv, fixture lookup and independent OpenAI-to-template
`normalize()` it reuses), it renders upstream templates with transformers' own
`render_jinja_template`, here for how a prompt ends: `add_generation_prompt=False`,
`continue_final_message=True` (transformers tags the final message and cuts the prompt at the
tag), and `reasoning_content` on assistant messages (which Qwen3's template renders).
Output: expected/<template>/<case>.txt (or .error with the template's exception) and
manifest.json with each case's Chat Completions request.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gen_template_goldens as g  # noqa: E402

OUT = g.ROOT / "tests" / "data" / "prompt_end"

TEMPLATES = {
    # template file: (bos, eos)
    "Qwen-Qwen2.5-7B-Instruct.jinja": (None, "<|im_end|>"),
    "Qwen-Qwen3-0.6B.jinja": (None, "<|im_end|>"),
    "HuggingFaceTB-SmolLM3-3B.jinja": (None, "<|im_end|>"),
    "meta-llama-Llama-3.1-8B-Instruct.jinja": ("<|begin_of_text|>", "<|eot_id|>"),
    "mistralai-Mistral-7B-Instruct-v0.3.jinja": ("<s>", "</s>"),
}

CASES = {
    # A prefill: the answer continues the final assistant message.
    "continue": {
        "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "Pick A or B."},
            {"role": "assistant", "content": "The answer is ("},
        ],
        "continue_final_message": True,
    },
    # A prefill ending in a space: templates that trim the content lose it (and the cut
    # drops the trailing whitespace), the others keep it.
    "continue_space": {
        "messages": [
            {"role": "user", "content": "List three colours."},
            {"role": "assistant", "content": "Sure: red, "},
        ],
        "continue_final_message": True,
        "add_generation_prompt": False,
    },
    # The conversation as it is, without a new assistant turn.
    "no_generation_prompt": {
        "messages": [
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi there!"},
        ],
        "add_generation_prompt": False,
    },
    # Reasoning on an assistant turn in history (after the last user message).
    "reasoning": {
        "tools": [g.WEATHER],
        "messages": [
            {"role": "user", "content": "What is the weather in Paris?"},
            {
                "role": "assistant",
                "content": "Let me check.",
                "reasoning_content": "The user wants the weather; I should call get_weather.",
                "tool_calls": [g.call("abc123XYZ", "get_weather", {"city": "Paris"})],
            },
            {"role": "tool", "tool_call_id": "abc123XYZ", "content": "{\"sky\": \"sunny\"}"},
        ],
    },
}


def render(template, bos, eos, msgs, tools, req):
    from transformers.utils.chat_template_utils import render_jinja_template

    special = {"eos_token": eos}
    if bos is not None:
        special["bos_token"] = bos
    cont = req.get("continue_final_message", False)
    rendered, _ = render_jinja_template(
        conversations=[msgs],
        tools=tools,
        chat_template=template,
        add_generation_prompt=req.get("add_generation_prompt", not cont),
        continue_final_message=cont,
        date_string=g.DATE,
        **special,
    )
    return rendered[0]


def ensure_venv():
    """Re-runs this script inside gen_template_goldens.py's venv (created if missing)."""
    if Path(sys.prefix).resolve() == g.VENV.resolve():
        return
    py = g.VENV / "bin" / "python"
    if not py.exists():
        subprocess.check_call([sys.executable, "-m", "venv", str(g.VENV)])
        subprocess.check_call([str(py), "-m", "pip", "install", "-q", "transformers", "jinja2"])
    os.execv(str(py), [str(py), __file__, *sys.argv[1:]])


def main():
    ensure_venv()
    manifest = []
    for tpl_name, (bos, eos) in TEMPLATES.items():
        text = (g.FIXTURES / "templates" / tpl_name).read_text()
        for case, req in CASES.items():
            req = dict(req, chat_template_kwargs={"date_string": g.DATE})
            msgs, tools = g.normalize(req, "only supports single tool-calls" in text)
            for m, src in zip(msgs, req["messages"]):
                if "reasoning_content" in src:
                    m["reasoning_content"] = src["reasoning_content"]
            try:
                result, is_err = render(text, bos, eos, msgs, tools, req), False
            except Exception as e:  # the template raised: the Rust side must fail too
                result, is_err = str(e), True
            d = OUT / "expected" / tpl_name.removesuffix(".jinja")
            d.mkdir(parents=True, exist_ok=True)
            fname = f"{case}.{'error' if is_err else 'txt'}"
            with open(d / fname, "w", encoding="utf-8", newline="") as f:
                f.write(result)
            manifest.append({
                "template": tpl_name,
                "case": case,
                "bos_token": bos,
                "eos_token": eos,
                "request": req,
                "expected": f"expected/{d.name}/{fname}",
                "error": is_err,
            })
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {len(manifest)} cases to {OUT}")


if __name__ == "__main__":
    main()
