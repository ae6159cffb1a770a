#!/usr/bin/env bash
# End-to-end checks of `callm serve` with real clients: the official `openai` package (Chat
# Completions and Responses), the official `anthropic` package (Messages), the `openai-agents`
# and LangChain agent frameworks, and LiteLLM's proxy routing one model name to two callm
# instances.
#
# Environment:
#   CALLM_BIN         the callm binary (default: target/release/callm, else target/debug/callm)
#   CALLM_E2E_MODEL   the GGUF model (default: $HOME/.cache/callm/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf)
#   CALLM_E2E_VENV    the Python venv to create/reuse (default: $HOME/.cache/callm/e2e-venv)
#   CALLM_E2E_SKIP_LITELLM=1  skip the LiteLLM part
#   CALLM_E2E_SKIP_APIS=1     skip the Messages/Responses/agent-framework part
#   CALLM_E2E_EXTRA_ARGS      extra arguments for `callm serve` (e.g. --ctx 4096)
# The mock server works too (`cargo build --features mock --bin mock_server`):
# CALLM_BIN=target/debug/mock_server.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${CALLM_E2E_VENV:-$HOME/.cache/callm/e2e-venv}"
MODEL="${CALLM_E2E_MODEL:-$HOME/.cache/callm/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf}"
SERVED="callm-e2e"
OPENAI_VERSION="2.54.0"
LITELLM_VERSION="1.106.2"
ANTHROPIC_VERSION="2.17.0"
AGENTS_VERSION="0.20.0"
LANGCHAIN_VERSION="1.5.2"
LANGCHAIN_OPENAI_VERSION="1.8.1"
PINNED=("openai==$OPENAI_VERSION" "anthropic==$ANTHROPIC_VERSION" "openai-agents==$AGENTS_VERSION"
        "langchain==$LANGCHAIN_VERSION" "langchain-openai==$LANGCHAIN_OPENAI_VERSION")

if [[ -z "${CALLM_BIN:-}" ]]; then
  if [[ -x "$ROOT/target/release/callm" ]]; then CALLM_BIN="$ROOT/target/release/callm"
  else CALLM_BIN="$ROOT/target/debug/callm"; fi
fi
[[ -x "$CALLM_BIN" ]] || { echo "e2e: no callm binary at $CALLM_BIN (build it or set CALLM_BIN)" >&2; exit 2; }
if [[ "$(basename "$CALLM_BIN")" != mock_server* && ! -f "$MODEL" ]]; then
  echo "e2e: model not found: $MODEL (set CALLM_E2E_MODEL)" >&2; exit 2
fi

# --- Python environment (pinned) ---
if [[ ! -x "$VENV/bin/python" ]]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" - <<PY 2>/dev/null
import importlib.metadata as m, sys
pins = dict(p.split("==") for p in "${PINNED[*]}".split())
ok = all(m.version(name) == version for name, version in pins.items())
if "${CALLM_E2E_SKIP_LITELLM:-0}" != "1":
    ok = ok and m.version("litellm") == "$LITELLM_VERSION"
sys.exit(0 if ok else 1)
PY
then
  echo "e2e: installing ${PINNED[*]} litellm[proxy]==$LITELLM_VERSION into $VENV"
  "$VENV/bin/pip" install -q --upgrade pip >/dev/null
  if [[ "${CALLM_E2E_SKIP_LITELLM:-0}" == "1" ]]; then
    "$VENV/bin/pip" install -q "${PINNED[@]}"
  else
    "$VENV/bin/pip" install -q "${PINNED[@]}" "litellm[proxy]==$LITELLM_VERSION"
  fi
fi
PY="$VENV/bin/python"

# --- helpers ---
WORK="$(mktemp -d "${TMPDIR:-/tmp}/callm-e2e.XXXXXX")"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ "${CALLM_E2E_KEEP:-0}" != "1" ]]; then rm -rf "$WORK"; else echo "e2e: logs kept in $WORK"; fi
}
trap cleanup EXIT INT TERM

free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_http() { # url log pid
  for _ in $(seq 1 600); do
    if "$PY" -c "import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" "$1" 2>/dev/null; then
      return 0
    fi
    if ! kill -0 "$3" 2>/dev/null; then echo "e2e: server died; log:" >&2; tail -50 "$2" >&2; return 1; fi
    sleep 0.5
  done
  echo "e2e: $1 did not come up; log:" >&2; tail -50 "$2" >&2; return 1
}

start_callm() { # port log
  # shellcheck disable=SC2086
  "$CALLM_BIN" serve --model "$MODEL" --host 127.0.0.1 --port "$1" --served-model-name "$SERVED" \
    --queue 64 ${CALLM_E2E_EXTRA_ARGS:-} >"$2" 2>&1 &
  PIDS+=("$!")
  wait_http "http://127.0.0.1:$1/health" "$2" "$!"
}

STATUS=0

# --- 1. the openai client straight against callm ---
P1="$(free_port)"
start_callm "$P1" "$WORK/callm1.log"
echo "e2e: callm on 127.0.0.1:$P1"
# The mock server does not batch: the concurrent-clients check needs the real engine.
SKIP_CONCURRENCY=()
if [[ "$(basename "$CALLM_BIN")" == mock_server* ]]; then SKIP_CONCURRENCY=(--skip-concurrency); fi
"$PY" "$HERE/openai_flow.py" --base-url "http://127.0.0.1:$P1/v1" --model "$SERVED" --label direct \
  "${SKIP_CONCURRENCY[@]}" || STATUS=1

# --- 1b. the other APIs and the agent frameworks, against the same instance ---
if [[ "${CALLM_E2E_SKIP_APIS:-0}" != "1" ]]; then
  APIS_START=$SECONDS
  MOCK_FLAG=()
  if [[ "$(basename "$CALLM_BIN")" == mock_server* ]]; then MOCK_FLAG=(--mock); fi
  (cd "$HERE" && "$PY" anthropic_flow.py --base-url "http://127.0.0.1:$P1" --model "$SERVED" "${MOCK_FLAG[@]}") || STATUS=1
  (cd "$HERE" && "$PY" responses_flow.py --base-url "http://127.0.0.1:$P1/v1" --model "$SERVED" "${MOCK_FLAG[@]}") || STATUS=1
  (cd "$HERE" && "$PY" agents_flow.py --base-url "http://127.0.0.1:$P1/v1" --model "$SERVED") || STATUS=1
  echo "e2e: Messages, Responses and agent frameworks took $((SECONDS - APIS_START)) s"
fi

# --- 2. LiteLLM proxy: one model name, two callm instances ---
if [[ "${CALLM_E2E_SKIP_LITELLM:-0}" != "1" ]]; then
  P2="$(free_port)"
  start_callm "$P2" "$WORK/callm2.log"
  P3="$(free_port)"
  MASTER_KEY="sk-e2e-$("$PY" -c 'import secrets; print(secrets.token_hex(16))')"
  cat >"$WORK/litellm.yaml" <<YAML
model_list:
  - model_name: callm
    litellm_params:
      model: openai/$SERVED
      api_base: http://127.0.0.1:$P1/v1
      api_key: not-needed
  - model_name: callm
    litellm_params:
      model: openai/$SERVED
      api_base: http://127.0.0.1:$P2/v1
      api_key: not-needed
router_settings:
  routing_strategy: simple-shuffle
  num_retries: 0
litellm_settings:
  drop_params: false
  telemetry: false
general_settings:
  master_key: $MASTER_KEY
YAML
  before1="$(grep -c 'chat/completions' "$WORK/callm1.log" || true)"
  LITELLM_LOG=ERROR "$VENV/bin/litellm" --config "$WORK/litellm.yaml" --host 127.0.0.1 --port "$P3" \
    >"$WORK/litellm.log" 2>&1 &
  PIDS+=("$!")
  wait_http "http://127.0.0.1:$P3/health/liveliness" "$WORK/litellm.log" "$!"
  echo "e2e: litellm proxy on 127.0.0.1:$P3 -> callm :$P1, :$P2"
  "$PY" "$HERE/openai_flow.py" --base-url "http://127.0.0.1:$P3/v1" --model callm --label litellm \
    --api-key "$MASTER_KEY" \
    --skip-errors --skip-completions --skip-concurrency || STATUS=1
  after1="$(grep -c 'chat/completions' "$WORK/callm1.log" || true)"
  n2="$(grep -c 'chat/completions' "$WORK/callm2.log" || true)"
  echo "e2e: chat requests through the proxy: instance 1: $((after1 - before1)), instance 2: $n2"
  if [[ $((after1 - before1)) -eq 0 || "$n2" -eq 0 ]]; then
    echo "e2e: FAIL the proxy did not use both instances" >&2; STATUS=1
  fi
fi

if [[ $STATUS -eq 0 ]]; then echo "e2e: all passed"; else echo "e2e: FAILED"; fi
exit $STATUS
