#!/usr/bin/env bash
# callm bench and llama.cpp's llama-bench on the same GGUFs, threads and prompt sizes, one
# after the other, with the load average logged before each run (see BENCHMARKS.md).
# Usage: scripts/bench-vs-llamacpp.sh CALLM_BIN LLAMA_BENCH_BIN [reps]
set -euo pipefail
CALLM=${1:?callm binary}
LLAMA=${2:?llama-bench binary}
REPS=${3:-3}
MODELS=${CALLM_MODELS_DIR:-$HOME/.cache/callm/models}
for model in SmolLM2-135M-Instruct.Q4_1.gguf qwen2.5-coder-0.5b-instruct-q4_k_m.gguf; do
  for t in 1 2; do
    for p in 128 1024; do
      n=0; [ "$p" = 128 ] && n=128   # tg128 once per model and thread count
      echo "## $model -t $t -p $p  (load: $(cut -d' ' -f1-3 /proc/loadavg))"
      "$CALLM" bench -m "$MODELS/$model" -p "$p" -n "$n" -r "$REPS" -t "$t" 2>/dev/null | grep -E '\| (pp|tg)'
      echo "   (load: $(cut -d' ' -f1-3 /proc/loadavg))"
      "$LLAMA" -m "$MODELS/$model" -p "$p" -n "$n" -r "$REPS" -t "$t" 2>/dev/null | grep -E '\| +(pp|tg)'
    done
  done
done
