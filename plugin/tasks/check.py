"""Replaying a merged network against its two originals in onnxruntime (``nnbisim check``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnbisim.adapters.merged_meta import merged_layout
from nnbisim.adapters.onnx_load import read_model
from nnbisim.adapters.replay import OnnxRunner
from nnbisim.core.errors import InputError


@dataclass(frozen=True)
class CheckReport:
    """How far the merged model's output is from ``N1(x) - N2(x)`` on random inputs."""

    samples: int
    max_abs: float
    max_rel: float
    worst_input: np.ndarray
    max_abs_diff: float

    def passed(self, rel_tol: float = 1e-5, abs_tol: float = 1e-6) -> bool:
        return self.max_abs <= abs_tol or self.max_rel <= rel_tol


def check_merged(
    merged: str | Path,
    n1: str | Path,
    n2: str | Path,
    lower: np.ndarray,
    upper: np.ndarray,
    samples: int = 2000,
    seed: int = 0,
) -> CheckReport:
    """Replay random inputs of the box through the three files with onnxruntime and compare.

    The relative error is the largest ``|m - (y1 - y2)|`` divided by the largest ``|y1|`` or
    ``|y2|`` seen: float32 files carry rounding of that order in their own outputs, so a
    per-sample ratio would flag near-zero outputs that no float32 evaluation can pin down.
    """
    rng = np.random.default_rng(seed)
    x = rng.uniform(lower, upper, size=(samples, np.asarray(lower).size))
    y1 = OnnxRunner(n1).run(x)
    y2 = OnnxRunner(n2).run(x)
    ym = OnnxRunner(merged).run(x)
    for path, y in ((n1, y1), (n2, y2), (merged, ym)):
        if not np.isfinite(y).all():
            raise InputError(f"{path}: gives NaN or infinite outputs on inputs of the box (a "
                             "division by zero, an overflow); nnbisim compares networks whose "
                             "outputs are finite: check the export")
    m = y1.shape[1]
    layout = merged_layout(read_model(merged))
    got = ym[:, 2 * m:] if (layout and layout[0] == "all") or ym.shape[1] == 3 * m else ym
    err = np.abs(got - (y1 - y2))
    scale = max(float(np.abs(y1).max()), float(np.abs(y2).max()), 1e-12)
    worst = int(np.unravel_index(np.argmax(err), err.shape)[0])
    return CheckReport(samples, float(err.max()), float(err.max()) / scale, x[worst],
                       float(np.abs(y1 - y2).max()))
