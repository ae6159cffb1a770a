#!/usr/bin/env python3
"""Writes the reference that tests/quant_reference.rs checks callm's IQ4_NL and IQ4_XS decoding
against: ggml's own Python package (`gguf`, from llama.cpp's repository) dequantizing blocks.

Run through scripts/gen-quant-reference.sh (which provides a venv with the pinned `gguf` and
`numpy`). Output directory: $CALLM_QUANT_REFERENCE, else ~/.cache/callm/quant-reference. For each
kind it receives `<kind>.blocks` (the raw blocks, as a GGUF file stores them) and `<kind>.f32`
(their values as `gguf.quants.dequantize` gives them, little-endian f32), then `STAMP` last.

The blocks are random bytes with a random finite f16 scale, plus the extremes: every nibble 0
(the table's -127) and 15 (113), and for IQ4_XS every 6-bit scale 0 (-32) and 63 (31).
"""

import os
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, quants

VERSION = "quant-reference v1"

# (name, type, bytes per block, blocks)
KINDS = [
    ("iq4_nl", GGMLQuantizationType.IQ4_NL, 18, 4096),
    ("iq4_xs", GGMLQuantizationType.IQ4_XS, 136, 1024),
]


def blocks(rng: np.random.Generator, size: int, count: int) -> np.ndarray:
    raw = rng.integers(0, 256, size=(count, size), dtype=np.uint8)
    # d: a finite f16 of either sign, spread over several magnitudes.
    d = (rng.uniform(-1, 1, count) * 10.0 ** rng.integers(-6, 1, count)).astype(np.float16)
    raw[:, 0:2] = d.view(np.uint8).reshape(count, 2)
    # Extremes: all nibbles 0, all 15; IQ4_XS: scales all 0, all 63.
    raw[0, 2:] = 0x00
    raw[1, 2:] = 0xFF
    if size == 136:
        raw[2, 2:8] = 0x00
        raw[3, 2:8] = 0xFF
    return raw


def main() -> None:
    out = Path(os.environ.get("CALLM_QUANT_REFERENCE", Path.home() / ".cache/callm/quant-reference"))
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20261208)
    for name, qtype, size, count in KINDS:
        raw = blocks(rng, size, count)
        values = quants.dequantize(raw.reshape(-1), qtype).astype("<f4")
        (out / f"{name}.blocks").write_bytes(raw.tobytes())
        (out / f"{name}.f32").write_bytes(values.tobytes())
    (out / "STAMP").write_text(VERSION)


if __name__ == "__main__":
    main()
