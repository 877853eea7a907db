"""What the benchmark scripts share: one thread per process, and the code a row was measured
with."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

# one thread per process (importing this module sets it before numpy or torch is first
# imported): the benches run tools side by side on few cores, and multi-threaded BLAS or torch
# against another busy process slowed one tool several times over
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def code_version() -> str:
    """The git commit of the checkout, ``+dirty`` with local changes to tracked files outside
    bench/results."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, check=True,
                              capture_output=True, text=True).stdout.strip()
        # bench/results is what the benches write, not code: a resumed run has it changed
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":(exclude)bench/results"],
                               cwd=root, check=True, capture_output=True,
                               text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")
