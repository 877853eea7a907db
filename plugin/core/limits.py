"""Resource limits, checked before anything is allocated: how large a dense matrix nnbisim
builds for a network may be.

nnbisim works on dense float64 matrices: the ONNX loader folds every layer into one (its
identity at an input or a ReLU is ``width x width``), and the bound engines carry
``width x width`` relaxations. A network whose declared input, output or layer width ``n``
needs ``8 n^2`` bytes above the memory budget is refused with one line naming the file, before
any such matrix exists. The budget is ``$NNBISIM_MEMORY_GB`` GiB (default 4: widths up to
23,170 values; docs/formats.md).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable

from nnbisim.core.errors import InputError

MEMORY_ENV = "NNBISIM_MEMORY_GB"
DEFAULT_MEMORY_GB = 4.0
FLOAT_BYTES = 8  # float64


def memory_budget() -> float:
    """The budget in bytes for one dense matrix, from ``$NNBISIM_MEMORY_GB`` (default 4 GiB)."""
    text = os.environ.get(MEMORY_ENV)
    if text is None:
        return DEFAULT_MEMORY_GB * 2**30
    try:
        gib = float(text)
    except ValueError:
        gib = math.nan
    if not (math.isfinite(gib) and gib > 0):
        raise InputError(f"${MEMORY_ENV} {text!r}: give the memory budget in GiB as a positive "
                         "number, e.g. 4")
    return gib * 2**30


def size_text(n_bytes: float) -> str:
    """``74.5 GiB``, ``71.1 PiB``: bytes in binary units."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n_bytes < 1024:
            return f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:.1f} PiB"


def check_dense(rows: int, cols: int, what: str) -> None:
    """Refuse a ``rows x cols`` float64 matrix above the budget; ``what`` names the file and
    the value (``"a.onnx: its input"``)."""
    need = float(rows) * float(cols) * FLOAT_BYTES
    budget = memory_budget()
    if need > budget:
        raise InputError(f"{what} holds {max(rows, cols)} values: nnbisim's dense "
                         f"{rows} x {cols} float64 matrix for it needs {size_text(need)}, over "
                         f"the memory budget of {size_text(budget)}; give a smaller network or "
                         f"raise ${MEMORY_ENV} (GiB)")


def check_widths(widths: Iterable[int], source: str) -> None:
    """Refuse a network one of whose widths (input, layers, output) needs a square matrix above
    the budget."""
    for k, n in enumerate(widths):
        check_dense(n, n, f"{source}: {'its input' if k == 0 else f'layer {k}'}")
