#!/usr/bin/env bash
# A second environment, .venv-optimum, for the `optimum` extra: optimum-onnx 0.1 requires
# transformers<4.58, so it cannot share the main environment (transformers 5). erpack's own paths
# are tested here on transformers 4.57 too. See docs/install.md.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-optimum}
[ -x "$VENV/bin/python" ] || "${PYTHON:-python3}" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip "$@"; }
pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
"$VENV/bin/python" -c 'import torch' 2>/dev/null || pip install -q 'torch>=2.4,<2.14' 2>&1 | grep -v '^WARNING: Location' || true
pip install -q -e '.[optimum,test]' 2>&1 | grep -v '^WARNING: Location' || true
pip install -q --no-deps -r requirements-assets.txt 2>&1 | grep -v '^WARNING: Location' || true
"$VENV/bin/python" -c 'import transformers, optimum.onnxruntime; print("optimum environment: transformers", transformers.__version__)'
