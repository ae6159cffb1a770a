#!/usr/bin/env python3
"""Writes the SentencePiece fixtures that tests/tokenizer_spm.rs checks callm's reader against.

Run through scripts/gen-spm-fixtures.sh (which provides a venv with the pinned `sentencepiece`).
Output directory: $CALLM_SPM_FIXTURES, else ~/.cache/callm/spm-fixtures. It receives:

- `<name>/tokenizer.model` for several tiny models trained here (unigram and BPE, byte fallback on
  and off, nmt_nfkc and identity normalisation, user-defined and control symbols), each with
  `<name>/reference.json`: the ids, pieces and decoded text that `SentencePieceProcessor` itself
  gives for every test string, written by the same run that trained the model;
- `mistral-v0.3/tokenizer.model`: the real Mistral-7B-Instruct-v0.3 sentencepiece model, taken from
  the `mistral-common` wheel on PyPI (the shared fixture holds only its Git LFS pointer) and checked
  against the sha256 that pointer names, with `reference.json` for the tokenizer-vector texts;
- `STAMP`: written last; the shell wrapper skips all work while it matches this script's version.
"""

import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import sentencepiece as spm

VERSION = "spm-fixtures v3"
MISTRAL_COMMON = "mistral-common==1.13.1"
MISTRAL_MEMBER = "mistral_common/data/mistral_instruct_tokenizer_240216.model.v2"
MISTRAL_SHA256 = "37f00374dea48658ee8f5d0f21895b9bc55cb0103939607c8185bfd1c6ca1f89"

WORDS = (
    "the quick brown fox jumps over lazy dog function call weather city tokyo paris "
    "return value string number list object name arguments result error tool user "
    "assistant system message hello world token model vocabulary piece score byte "
    "café naïve résumé über straße déjà vu"
).split()
CODE = [
    "def get_weather(city: str) -> dict:",
    "    return {\"city\": city, \"temp\": 21.5}",
    "for (int i = 0; i < n; ++i) { sum += a[i]; }",
    "fn main() { println!(\"{}\", 42); }",
    "SELECT name, score FROM pieces WHERE score > -3.5;",
    "if x == 1:\n\tprint('one')",
]
OTHER = ["东京的天气怎么样", "今天很好", "こんにちは世界", "Привет мир", "12345 67.89 0x1F", "ｈｅｌｌｏ ＡＢＣ １２３"]

# Strings every model is checked on (control symbols are kept out: sentencepiece never matches
# them in text, while callm, like Hugging Face tokenizers, does).
TEST_STRINGS = [
    "",
    " ",
    "  ",
    "hello world",
    "Hello World!",
    " hello",
    "   leading and trailing   ",
    "multiple    spaces   here",
    "line one\nline two\n\nline four",
    "tab\tseparated\tvalues",
    "def get_weather(city: str) -> dict:\n    return {\"city\": city}",
    "The café in Tokyo serves naïve crème brûlée.",
    "东京的天气怎么样？ 很好。",
    "emoji 🦙🔥 and 👩‍💻 and ❤️",
    "ｈｅｌｌｏ ＡＢＣ １２３ ① ﬁ ㍿",
    "unseen chars: ¿¡ Ωμέγα ♞ ⌘ ∑",
    "numbers 3.14159 and 1,000,000 and -42",
    "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}",
    "Mixed: code `x = 1`  CJK 天气, emoji 🌧️,\ttabs\nand newlines.",
]
SYMBOL_STRINGS = [
    "<tool_call>{\"name\": \"f\"}</tool_call>",
    "before <tool_call> inside </tool_call> after",
    "a@@b@@ c",
]


def corpus(seed: int = 1234) -> list[str]:
    """A small deterministic training text: words, code lines, and some non-Latin scripts."""
    rng = random.Random(seed)
    lines = []
    for i in range(3000):
        n = rng.randint(3, 14)
        line = " ".join(rng.choice(WORDS) for _ in range(n))
        if i % 7 == 0:
            line += " " + rng.choice(CODE)
        if i % 11 == 0:
            line += " " + rng.choice(OTHER)
        if i % 13 == 0:
            line += f" {rng.randint(0, 99999)}"
        lines.append(line)
    return lines


# name -> trainer options (besides input, model_prefix and the common ones below).
MODELS = {
    "unigram": dict(model_type="unigram", vocab_size=700, byte_fallback=True),
    "unigram-nofallback": dict(model_type="unigram", vocab_size=500, byte_fallback=False),
    "bpe": dict(model_type="bpe", vocab_size=700, byte_fallback=True),
    "bpe-identity-nofallback": dict(
        model_type="bpe",
        vocab_size=500,
        byte_fallback=False,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
    ),
    "unigram-symbols": dict(
        model_type="unigram",
        vocab_size=600,
        byte_fallback=True,
        user_defined_symbols=["<tool_call>", "</tool_call>", "@@"],
        control_symbols=["<|system|>", "<|user|>"],
        pad_id=3,
        unk_id=0,
        bos_id=1,
        eos_id=2,
    ),
    # Sized for the tiny random-weight fixture models (vocabulary 512): ChatGLM3-style (BPE,
    # byte fallback; its 9 special tokens are appended after these 503 pieces) and
    # replit-style (`<|endoftext|>` as the end-of-text piece) for the end-to-end tests. Both keep
    # whitespace and newlines as written (identity normalisation), as chat prompts and code need.
    "chatglm3-tiny": dict(
        model_type="bpe",
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        vocab_size=503,
        byte_fallback=True,
        character_coverage=0.98,
        hard_vocab_limit=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
    ),
    "replit-tiny": dict(
        model_type="bpe",
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        vocab_size=512,
        byte_fallback=True,
        character_coverage=0.98,
        hard_vocab_limit=True,
        unk_id=0,
        bos_id=-1,
        eos_id=1,
        eos_piece="<|endoftext|>",
    ),
    "bpe-symbols-noprefix": dict(
        model_type="bpe",
        vocab_size=600,
        byte_fallback=True,
        user_defined_symbols=["<tool_call>", "</tool_call>", "@@"],
        control_symbols=["<|system|>", "<|user|>"],
        add_dummy_prefix=False,
        bos_id=-1,
        eos_id=1,
        unk_id=2,
    ),
}


def reference(sp: spm.SentencePieceProcessor, strings: list[str]) -> dict:
    """What sentencepiece itself gives: ids, pieces and decoded text per string, plus vocab facts."""
    cases = []
    for s in strings:
        ids = sp.encode(s)
        cases.append(
            {
                "text": s,
                "ids": ids,
                "pieces": sp.encode(s, out_type=str),
                "decoded": sp.decode(ids),
            }
        )
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    return {
        "sentencepiece_version": spm.__version__,
        "vocab_size": sp.get_piece_size(),
        "unk_id": sp.unk_id(),
        "bos_id": sp.bos_id(),
        "eos_id": sp.eos_id(),
        "pad_id": sp.pad_id(),
        "control_ids": [i for i in range(len(pieces)) if sp.is_control(i)],
        "byte_ids": [i for i in range(len(pieces)) if sp.is_byte(i)],
        "user_defined": {p: sp.piece_to_id(p) for p in ["<tool_call>", "</tool_call>", "@@"]
                         if sp.piece_to_id(p) != sp.unk_id()},
        "control": {p: sp.piece_to_id(p) for p in ["<|system|>", "<|user|>"]
                    if sp.piece_to_id(p) != sp.unk_id()},
        "cases": cases,
    }


def write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def train_models(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        text = Path(tmp) / "corpus.txt"
        text.write_text("\n".join(corpus()) + "\n", encoding="utf-8")
        for name, opts in MODELS.items():
            dest = out / name
            dest.mkdir(parents=True, exist_ok=True)
            settings = dict(character_coverage=0.995, hard_vocab_limit=False) | opts
            spm.SentencePieceTrainer.train(
                input=str(text),
                model_prefix=str(dest / "tokenizer"),
                num_threads=1,
                shuffle_input_sentence=False,
                minloglevel=2,
                **settings,
            )
            (dest / "tokenizer.vocab").unlink(missing_ok=True)
            sp = spm.SentencePieceProcessor(model_file=str(dest / "tokenizer.model"))
            strings = TEST_STRINGS + (SYMBOL_STRINGS if "symbols" in name else [])
            write_json(dest / "reference.json", reference(sp, strings))
            print(f"gen-spm-fixtures: {name}: {sp.get_piece_size()} pieces")


def vector_texts(fixtures: Path) -> list[str]:
    """Every string of the shared tokenizer-vectors `.inp` files."""
    sep = "\n__ggml_vocab_test__\n"
    texts = []
    for inp in sorted((fixtures / "tokenizer-vectors").glob("*.inp")):
        body = inp.read_text(encoding="utf-8")
        texts.extend(body[: -len(sep)].split(sep) if body.endswith(sep) else [])
    return texts


def fetch_mistral(out: Path, fixtures: Path) -> None:
    dest = out / "mistral-v0.3"
    dest.mkdir(parents=True, exist_ok=True)
    model = dest / "tokenizer.model"
    if not (model.is_file() and hashlib.sha256(model.read_bytes()).hexdigest() == MISTRAL_SHA256):
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, MISTRAL_COMMON],
                check=True,
            )
            wheel = next(Path(tmp).glob("mistral_common-*.whl"))
            with zipfile.ZipFile(wheel) as z:
                data = z.read(MISTRAL_MEMBER)
        digest = hashlib.sha256(data).hexdigest()
        if digest != MISTRAL_SHA256:
            sys.exit(f"gen-spm-fixtures: {MISTRAL_MEMBER} has sha256 {digest}, expected {MISTRAL_SHA256}")
        model.write_bytes(data)
    sp = spm.SentencePieceProcessor(model_file=str(model))
    write_json(dest / "reference.json", reference(sp, vector_texts(fixtures) + TEST_STRINGS))
    print("gen-spm-fixtures: mistral-v0.3 tokenizer.model (sha256 verified)")


def main() -> None:
    home = Path(os.environ.get("HOME", "."))
    out = Path(os.environ.get("CALLM_SPM_FIXTURES") or home / ".cache/callm/spm-fixtures")
    repo = Path(__file__).resolve().parent.parent
    fixtures = Path(os.environ.get("CALLM_FIXTURES") or repo / "../shared/fixtures")
    out.mkdir(parents=True, exist_ok=True)
    (out / "STAMP").unlink(missing_ok=True)
    train_models(out)
    fetch_mistral(out, fixtures)
    (out / "STAMP").write_text(VERSION + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
