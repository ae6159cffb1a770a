#!/usr/bin/env python3
"""Reference numbers for Phi-3 "longrope" rope scaling, from transformers itself.

Takes the tiny random Phi-3 fixture (../shared/fixtures/tiny-models/phi3: weights and config),
turns its rope into longrope (the short/long factors and lengths below, as Phi-3.5-mini and
Phi-4-mini configure it, scaled down), and prints as JSON what transformers computes:

- inv_freq with the short factors (sequence <= original_max_position_embeddings) and the long
  ones (longer), and the attention factor it multiplies cos/sin by;
- the logits at the last position (ids 0..16 and the top 5) of the fixture's two input cases:
  case0 (5 tokens, short factors) and case1 (40 tokens, long factors).

tests/phi3_longrope.rs pins these numbers (torch is too heavy to install in CI). Run with the
versions the test names, in a venv outside the repository:

    python3 -m venv ~/.cache/callm/ref-venv
    ~/.cache/callm/ref-venv/bin/pip install torch==2.15.0 transformers==5.23.0 safetensors==0.8.0
    ~/.cache/callm/ref-venv/bin/python scripts/gen-longrope-reference.py
"""

import json
import os
import sys
from pathlib import Path

import torch
import transformers
from safetensors.torch import load_file
from transformers import Phi3Config, Phi3ForCausalLM
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

# The longrope settings the test uses (rotary dim 12: 6 factors each).
ORIGINAL = 16
MAX_POSITIONS = 256
SHORT = [1.0, 1.05, 1.2, 1.5, 2.0, 2.5]
LONG = [1.0, 1.5, 3.0, 6.0, 12.0, 24.0]


def fixture_dir() -> Path:
    env = os.environ.get("CALLM_FIXTURES")
    root = Path(env) if env else Path(__file__).resolve().parent.parent.parent / "shared/fixtures"
    return root / "tiny-models/phi3"


def config(longrope: bool) -> Phi3Config:
    raw = json.loads((fixture_dir() / "config.json").read_text())
    raw.pop("transformers_version", None)
    raw["max_position_embeddings"] = MAX_POSITIONS
    raw["original_max_position_embeddings"] = ORIGINAL
    params = raw["rope_parameters"]
    if longrope:
        params.update(rope_type="longrope", short_factor=SHORT, long_factor=LONG)
    cfg = Phi3Config(**raw)
    cfg._attn_implementation = "eager"
    return cfg


def last_logits(cfg: Phi3Config, ids):
    torch.manual_seed(0)
    model = Phi3ForCausalLM(cfg).eval()
    missing, unexpected = model.load_state_dict(
        load_file(fixture_dir() / "model.safetensors"), strict=False
    )
    # The fixture is tied: lm_head is the embedding (the same parameter in the model).
    assert missing == ["lm_head.weight"] and not unexpected, (missing, unexpected)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    with torch.no_grad():
        out = model(torch.tensor([ids]), use_cache=False).logits[0, -1]
    return out


def main() -> None:
    torch.set_num_threads(1)
    cfg = config(True)
    fn = ROPE_INIT_FUNCTIONS["longrope"]
    short, attn = fn(cfg, "cpu")
    long, _ = fn(cfg, "cpu", seq_len=ORIGINAL + 1)
    golden = json.loads((fixture_dir() / "golden.json").read_text())
    cases = []
    for case in golden["cases"]:
        ids = case["input_ids"]
        got = last_logits(cfg, ids)
        plain = last_logits(config(False), ids)
        cases.append(
            {
                "seq_len": len(ids),
                "first16": [round(float(x), 6) for x in got[:16]],
                "top5": [int(i) for i in torch.topk(got, 5).indices],
                "max_abs_change_from_default_rope": round(float((got - plain).abs().max()), 4),
            }
        )
    print(
        json.dumps(
            {
                "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
                "original_max_position_embeddings": ORIGINAL,
                "max_position_embeddings": MAX_POSITIONS,
                "short_factor": SHORT,
                "long_factor": LONG,
                "attention_factor": attn,
                "inv_freq_short": [float(x) for x in short],
                "inv_freq_long": [float(x) for x in long],
                "cases": cases,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
