#!/usr/bin/env bash
# Generates the IQ4_NL/IQ4_XS decoding reference that tests/quant_reference.rs reads: random blocks
# and their values as dequantized by the `gguf` package (llama.cpp's own Python reader of ggml's
# formats). Idempotent: does nothing once the reference of this version exists.
#
# Environment:
#   CALLM_QUANT_REFERENCE  output directory (default: $HOME/.cache/callm/quant-reference)
#   CALLM_GGUF_VENV        the Python venv to create/reuse (default: $HOME/.cache/callm/gguf-venv)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${CALLM_QUANT_REFERENCE:-$HOME/.cache/callm/quant-reference}"
VENV="${CALLM_GGUF_VENV:-$HOME/.cache/callm/gguf-venv}"
GGUF_VERSION="0.19.0"
NUMPY_VERSION="2.4.6"

VERSION_LINE="$(grep -m1 '^VERSION = ' "$HERE/gen-quant-reference.py" | sed -e 's/^VERSION = "\(.*\)"$/\1/')"
if [[ -f "$OUT/STAMP" && "$(cat "$OUT/STAMP")" == "$VERSION_LINE" ]]; then
  exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('gguf') != '$GGUF_VERSION' or m.version('numpy') != '$NUMPY_VERSION')" 2>/dev/null; then
  echo "gen-quant-reference: installing gguf==$GGUF_VERSION numpy==$NUMPY_VERSION into $VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "gguf==$GGUF_VERSION" "numpy==$NUMPY_VERSION"
fi
CALLM_QUANT_REFERENCE="$OUT" "$VENV/bin/python" "$HERE/gen-quant-reference.py"
