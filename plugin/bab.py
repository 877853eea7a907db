"""Branch and bound by input splitting: certify ``max_{x in X} c @ (N1(x) - N2(x))``.

Best-first on the largest upper bound: the open boxes with the largest bounds are split in two,
both halves are bounded (in one batch) and every half whose bound cannot beat the best value
seen is dropped. The largest bound among open boxes (or the best value, if larger) is a sound
upper bound at every moment, so the search can stop on a gap, a time budget or an interrupt.
Strong where the input has few dimensions (ACAS Xu's 5); for wide inputs split ReLUs instead
(:mod:`nnbisim.relu_bab`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

# bounds of c @ (N1 - N2) over each box: (lower (B, n), upper (B, n), c (m,)) -> upper (B,)
BoundFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
# value of c @ (N1 - N2) at points: (x (B, n), c (m,)) -> (B,)
ValueFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
Progress = Callable[[float, float, int], None]  # (best value, upper bound, boxes bounded)


@dataclass(frozen=True)
class BabResult:
    """Outcome of one maximisation: ``value <= max <= upper`` with ``value`` attained at ``x``."""

    upper: float
    value: float
    x: np.ndarray | None
    boxes: int
    seconds: float
    reason: str  # "gap", "budget", "exhausted", "interrupted", "max-boxes"

    @property
    def complete(self) -> bool:
        return self.reason in ("gap", "exhausted")


def gap_closed(value: float, upper: float, rel_gap: float, abs_gap: float) -> bool:
    """Is ``upper`` within the relative (or absolute) gap of ``value``?"""
    return upper - value <= max(abs_gap, rel_gap * abs(value))


def _children(lo: np.ndarray, hi: np.ndarray, dims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split box ``k`` at the middle of ``dims[k]``: returns (2B, n) lower and upper bounds."""
    rows = np.arange(len(lo))
    mid = (lo[rows, dims] + hi[rows, dims]) / 2
    lo2, hi2 = lo.copy(), hi.copy()
    hi_left = hi.copy()
    hi_left[rows, dims] = mid
    lo2[rows, dims] = mid
    return np.concatenate([lo, lo2]), np.concatenate([hi_left, hi2])


def _choose_dims(lo: np.ndarray, hi: np.ndarray, c: np.ndarray, bound: BoundFn,
                 scale: np.ndarray, smart: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pick the split dimension per box; return the children and their bounds.

    ``smart`` bounds the two halves of every dimension and keeps the split whose worse half is
    best (2n bound evaluations per box, worth it in low dimension); otherwise the widest side
    relative to the original box is split.
    """
    b, n = lo.shape
    if not smart:
        dims = np.argmax((hi - lo) / scale, axis=1)
        clo, chi = _children(lo, hi, dims)
        return clo, chi, bound(clo, chi, c)
    all_dims = np.repeat(np.arange(n)[None], b, axis=0).T.reshape(-1)  # dim-major
    clo, chi = _children(np.tile(lo, (n, 1)), np.tile(hi, (n, 1)), all_dims)
    ub = bound(clo, chi, c).reshape(2, n, b)
    worst = np.maximum(ub[0], ub[1])  # (n, b)
    widths = ((hi - lo) / scale).T  # (n, b): never split a side of zero width
    worst = np.where(widths > 0, worst, np.inf)
    best = np.argmin(worst, axis=0)  # (b,)
    pick = np.arange(b)
    left = best * b + pick
    right = n * b + best * b + pick
    idx = np.concatenate([left, right])
    return clo[idx], chi[idx], np.concatenate([ub[0, best, pick], ub[1, best, pick]])


def input_bab_max(
    lower: np.ndarray,
    upper: np.ndarray,
    c: np.ndarray,
    bound: BoundFn,
    value: ValueFn,
    *,
    start_value: float = -np.inf,
    start_x: np.ndarray | None = None,
    rel_gap: float = 0.01,
    abs_gap: float = 1e-9,
    time_budget: float = 10.0,
    batch: int = 256,
    max_boxes: int = 2_000_000,
    smart: bool | None = None,
    progress: Progress | None = None,
) -> BabResult:
    """Maximise ``c @ (N1 - N2)`` over the union of boxes ``lower[k] <= x <= upper[k]``.

    ``bound`` must be sound (an upper bound of the true maximum over each box); ``value``
    evaluates the function at points (candidate witnesses come from box centres).
    """
    t0 = time.perf_counter()
    lo = np.atleast_2d(np.asarray(lower, np.float64))
    hi = np.atleast_2d(np.asarray(upper, np.float64))
    scale = np.maximum((hi - lo).max(axis=0), 1e-300)
    smart = lo.shape[1] <= 8 if smart is None else smart
    ub = bound(lo, hi, c)
    centres = (lo + hi) / 2
    vals = value(centres, c)
    best_v, best_x = float(start_value), start_x
    if vals.max() > best_v:
        best_v, best_x = float(vals.max()), centres[int(np.argmax(vals))]
    bounded, reason = len(lo), "budget"
    try:
        while True:
            keep = ub > best_v
            lo, hi, ub = lo[keep], hi[keep], ub[keep]
            top = max(best_v, float(ub.max())) if len(ub) else best_v
            if progress is not None:
                progress(best_v, top, bounded)
            if not len(ub):
                reason = "exhausted"
                break
            if gap_closed(best_v, top, rel_gap, abs_gap):
                reason = "gap"
                break
            if time.perf_counter() - t0 > time_budget:
                reason = "budget"
                break
            if bounded >= max_boxes:
                reason = "max-boxes"
                break
            k = min(batch, len(ub))
            pick = np.argpartition(-ub, k - 1)[:k] if k < len(ub) else np.arange(len(ub))
            rest = np.ones(len(ub), bool)
            rest[pick] = False
            clo, chi, cub = _choose_dims(lo[pick], hi[pick], c, bound, scale, smart)
            bounded += len(clo) * (lo.shape[1] if smart else 1)
            cen = (clo + chi) / 2
            cv = value(cen, c)
            if cv.max() > best_v:
                best_v, best_x = float(cv.max()), cen[int(np.argmax(cv))]
            lo = np.concatenate([lo[rest], clo])
            hi = np.concatenate([hi[rest], chi])
            ub = np.concatenate([ub[rest], cub])
    except KeyboardInterrupt:
        reason = "interrupted"
    open_ub = float(ub.max()) if len(ub) else -np.inf
    return BabResult(max(best_v, open_ub), best_v, best_x, bounded,
                     time.perf_counter() - t0, reason)
