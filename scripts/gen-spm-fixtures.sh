#!/usr/bin/env bash
# Generates the SentencePiece test fixtures (tiny self-trained models with the reference encodings
# of the `sentencepiece` library, and the real Mistral v0.3 tokenizer.model) that
# tests/tokenizer_spm.rs reads. Idempotent: does nothing once the fixtures of this version exist.
#
# Environment:
#   CALLM_SPM_FIXTURES  output directory (default: $HOME/.cache/callm/spm-fixtures)
#   CALLM_SPM_VENV      the Python venv to create/reuse (default: $HOME/.cache/callm/spm-venv)
#   CALLM_FIXTURES      the shared fixtures (default: ../shared/fixtures next to the repo)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${CALLM_SPM_FIXTURES:-$HOME/.cache/callm/spm-fixtures}"
VENV="${CALLM_SPM_VENV:-$HOME/.cache/callm/spm-venv}"
SENTENCEPIECE_VERSION="0.2.3"

VERSION_LINE="$(grep -m1 '^VERSION = ' "$HERE/gen-spm-fixtures.py" | sed -e 's/^VERSION = "\(.*\)"$/\1/')"
if [[ -f "$OUT/STAMP" && "$(cat "$OUT/STAMP")" == "$VERSION_LINE" ]]; then
  exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('sentencepiece') != '$SENTENCEPIECE_VERSION')" 2>/dev/null; then
  echo "gen-spm-fixtures: installing sentencepiece==$SENTENCEPIECE_VERSION into $VENV"
  "$VENV/bin/pip" install -q "sentencepiece==$SENTENCEPIECE_VERSION"
fi
CALLM_SPM_FIXTURES="$OUT" "$VENV/bin/python" "$HERE/gen-spm-fixtures.py"
