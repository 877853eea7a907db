#!/usr/bin/env bash
# VNN-COMP tool script: prepare_instance.sh v1 CATEGORY NETWORK VNNLIB
# Nothing to convert (nnbisim reads ONNX and VNN-LIB 1.0/2.0, plain or gzip'd); checks the
# arguments and that the tool is installed.
set -euo pipefail
if [ "$#" -ne 4 ] || [ "$1" != "v1" ]; then
    echo "usage: prepare_instance.sh v1 CATEGORY NETWORK VNNLIB" >&2
    exit 1
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${NNBISIM_PYTHON:-$here/.venv/bin/python}"
if [ ! -x "$python" ]; then
    echo "prepare_instance.sh: no $python; run install_tool.sh v1 first (or set NNBISIM_PYTHON)" >&2
    exit 1
fi
if [ ! -f "$4" ]; then
    echo "prepare_instance.sh: no such VNN-LIB file $4" >&2
    exit 1
fi
exit 0
