#!/usr/bin/env bash
# Continuous batching, engine against engine: `callm bench --concurrent` and llama.cpp's
# llama-batched-bench on the same GGUFs, threads, prompt and generation lengths, for 1, 2, 4
# and 8 simultaneous sequences, alternating engines, the load average logged before each run
# (see BENCHMARKS.md). Aggregate decode t/s: callm's "aggregate t/s" column against
# llama-batched-bench's S_TG column.
# Usage: scripts/bench-concurrent-vs-llamacpp.sh CALLM_BIN LLAMA_BATCHED_BENCH_BIN [reps] [threads]
set -euo pipefail
CALLM=${1:?callm binary}
LLAMA=${2:?llama-batched-bench binary}
REPS=${3:-3}
T=${4:-2}
PP=${PP:-32}
TG=${TG:-128}
MODELS=${CALLM_MODELS_DIR:-$HOME/.cache/callm/models}
for model in SmolLM2-135M-Instruct.Q4_1.gguf qwen2.5-coder-0.5b-instruct-q4_k_m.gguf; do
  for rep in $(seq "$REPS"); do
    echo "## $model -t $T pp $PP tg $TG, rep $rep (load: $(cut -d' ' -f1-3 /proc/loadavg))"
    "$CALLM" bench -m "$MODELS/$model" -t "$T" -p "$PP" -n "$TG" -r 1 --concurrent 1,2,4,8 2>/dev/null | grep -E '^\| [^m-]'
    echo "   (load: $(cut -d' ' -f1-3 /proc/loadavg))"
    "$LLAMA" -m "$MODELS/$model" -t "$T" -c 4096 -b 512 -ub 512 -npp "$PP" -ntg "$TG" -npl 1,2,4,8 2>/dev/null | grep -E '^\|'
  done
done
# The same with the batch decoding while a long prompt is prefilled (callm only):
for model in SmolLM2-135M-Instruct.Q4_1.gguf qwen2.5-coder-0.5b-instruct-q4_k_m.gguf; do
  echo "## $model -t $T 4 clients + a 2000-token prompt (load: $(cut -d' ' -f1-3 /proc/loadavg))"
  "$CALLM" bench -m "$MODELS/$model" -t "$T" -p "$PP" -n "$TG" -r 1 --concurrent 4 --long-prompt 2000 2>/dev/null | grep -E '^\| [^m-]'
done
