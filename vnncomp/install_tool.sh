#!/usr/bin/env bash
# VNN-COMP tool script: install_tool.sh v1
# A virtual environment beside this script with nnbisim (its own bound engine, Marabou and
# onnxruntime come with it). torch is pinned to the CPU build in pyproject.toml.
set -euo pipefail
version=${1:-}
if [ "$version" != "v1" ]; then
    echo "install_tool.sh: expected version v1, got '$version'" >&2
    exit 1
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python3 -m venv "$here/.venv"
"$here/.venv/bin/pip" install --quiet --upgrade pip
"$here/.venv/bin/pip" install --quiet -e "$here/.."
"$here/.venv/bin/python" -c "import nnbisim, maraboupy, onnxruntime; print('nnbisim', nnbisim.__version__)"
