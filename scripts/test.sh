#!/usr/bin/env bash
# The project's test command (README "Run the tests"; CI runs exactly this).
# 1. fetches the real GGUF models the tests use (idempotent, sha256-verified, cached outside the repo),
#    trains the tiny SentencePiece test tokenizers and writes the IQ4_NL/IQ4_XS decoding reference of
#    ggml's `gguf` package (both also cached outside the repo);
# 2. checks formatting and lints;
# 3. builds once and runs every test of the workspace (callm and its kernel crate,
#    crates/callm-kernels: unit, integration, real-model, property tests, bench smoke runs);
# 4. runs the server end to end with real clients (openai SDK, LiteLLM proxy) on the real Qwen GGUF;
# 5. cross-builds the tests for aarch64 and runs them under qemu: the NEON kernels (on an x86-64
#    Debian host as root; elsewhere scripts/test-aarch64.sh says why it skips).
set -euo pipefail
cd "$(dirname "$0")/.."
# One full build: incremental caches would only add ~1.5 GB of disk (an explicit setting wins).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

scripts/fetch-models.sh all
scripts/gen-spm-fixtures.sh
scripts/gen-quant-reference.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --all-targets --locked "$@"
cargo build --locked --bin callm
CALLM_BIN=target/debug/callm tests/e2e/run.sh
scripts/test-aarch64.sh
