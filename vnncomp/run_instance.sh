#!/usr/bin/env bash
# VNN-COMP tool script: run_instance.sh v1 CATEGORY NETWORK VNNLIB RESULTFILE TIMEOUT
# NETWORK is one ONNX path or a VNN-COMP 2026 list of (name, path) pairs; relative paths are
# looked up from the current folder and then from the VNN-LIB file's folders upwards.
# RESULTFILE gets sat (with a replayed counterexample), unsat, timeout, unknown or error.
# NNBISIM_WORKERS=N spreads the own branch and bound over N processes (default: every core).
set -uo pipefail
if [ "$#" -ne 6 ] || [ "$1" != "v1" ]; then
    echo "usage: run_instance.sh v1 CATEGORY NETWORK VNNLIB RESULTFILE TIMEOUT" >&2
    exit 1
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${NNBISIM_PYTHON:-$here/.venv/bin/python}"
rm -f "$5"  # an earlier answer must not survive this run being killed
"$python" -m nnbisim.cli vnncomp run "$3" "$4" "$5" "$6" --workers "${NNBISIM_WORKERS:-$(nproc)}"
code=$?
if [ ! -s "$5" ]; then
    echo "error" > "$5"
fi
case $code in
    0|1|3) exit 0 ;;  # unsat, sat, undecided: an answer, written to RESULTFILE
    *) exit $code ;;  # 2: bad input (RESULTFILE says error), 130: interrupted
esac
