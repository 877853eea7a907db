"""Sound discrepancy ``[min, max]`` of ``(N1 - N2)_i`` when one or both networks are quantized.

Rounding is a step function, so the engine treats it exactly where that is cheap and soundly
elsewhere:

* **Exact cells.** A quantized network is constant on each *cell* of its input quantization
  grid (one input code per dimension). When the box's free dimensions span few codes (the
  paper's regions: a 2x2 patch perturbed by +-0.05), every cell is enumerated: the quantized
  network's value there is computed exactly, and a float network (N1) is bounded by CROWN over
  the cell's preimage (tight: cells are tiny). Witnesses: the float network evaluated at the
  vertex maximising CROWN's linear bound in the best cells, plus random samples.
* **Branch and bound** otherwise: each box carries its real extent (for float networks) and its
  range of input codes (for quantized ones); a float network gets CROWN bounds, a quantized one
  the exact per-neuron image of its code ranges (rounding is monotone, so the interval of codes
  is exact neuron by neuron; correlations between neurons are lost). Boxes whose bounds are
  furthest from the witnesses are split at the middle code of their widest code range. Anytime:
  the bound returned when the budget ends is sound.

Both networks' input quantizers, where both are quantized, must be the same (one grid).

Guaranteed: the certified interval contains ``(N1(x) - N2(x))_i`` for every real ``x`` in the box,
where a quantized network is the integer-accumulation model of :mod:`nnbisim.core.quant` (what
PyTorch's int8 kernels and nnbisim's ONNX export compute) and a float network the real-arithmetic
network of its float64 weights. Not guaranteed: a float32 evaluation that lands a value within
its own rounding error of a quantization tie on the other side of the tie.

The merged single-network ONNX of :mod:`nnbisim.adapters.merge` cannot express activation
rounding (it is not a ReLU function), so external verifiers run on a quantized pair only through
its dequantized-weight float model, which is a different network; nnbisim says so where it
matters rather than pretending the merged file is the int8 model.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from nnbisim.bounds.qcells import AnyNet, Best, Boxes, CellBounds, QuantPair, witnesses
from nnbisim.core.errors import InputError, ShapeMismatchError
from nnbisim.core.reports import OutputBounds

Progress = Callable[[str], None]

class Method(enum.StrEnum):
    """How a discrepancy was certified."""

    EXACT_CELLS = "exact cells"  # every cell of the input grid, each exact
    BRANCH_AND_BOUND = "branch and bound"


@dataclass(frozen=True)
class Discrepancy:
    """Per output ``i``: ``(N1 - N2)_i`` bracketed, and the ranges of ``N1_i`` and ``N2_i``.

    ``y1``/``y2``: ``(m, 2)`` certified ``[min, max]`` of each network's outputs over the box.
    ``witness_x``: ``(m, 2, n)`` inputs attaining the witnessed min (``[:, 0]``) and max.
    """

    outputs: tuple[OutputBounds, ...]
    y1: np.ndarray
    y2: np.ndarray
    witness_x: np.ndarray
    method: Method
    cells: int
    seconds: float
    notes: tuple[str, ...] = field(default=())

    @property
    def eps_witnessed(self) -> np.ndarray:
        """Per output ``max |(N1 - N2)_i|`` witnessed."""
        return np.array([max(-o.min_witnessed, o.max_witnessed, 0.0) for o in self.outputs])

    @property
    def eps_certified(self) -> np.ndarray:
        return np.array([max(-o.min_certified, o.max_certified, 0.0) for o in self.outputs])

    @property
    def midpoints(self) -> np.ndarray:
        """Per output midpoint of the certified interval: the repair loop's ``delta``."""
        return np.array([(o.min_certified + o.max_certified) / 2 for o in self.outputs])

    def to_json(self) -> dict:
        return {"outputs": [o.to_json() for o in self.outputs],
                "eps": {"witnessed": self.eps_witnessed.tolist(),
                        "certified": self.eps_certified.tolist()},
                "mean_eps": {"witnessed": float(self.eps_witnessed.mean()),
                             "certified": float(self.eps_certified.mean())},
                "n1_range": self.y1.tolist(), "n2_range": self.y2.tolist(),
                "method": self.method.value, "cells": self.cells, "seconds": self.seconds,
                "notes": list(self.notes)}

@dataclass(frozen=True)
class DiscrepancyOptions:
    """How :func:`discrepancy` works: cells are enumerated when the box spans at most
    ``max_cells`` of the input grid, else branch and bound for ``time_budget`` seconds (and
    at most ``max_boxes`` boxes bounded, a reproducible work limit; None: none), ``batch``
    boxes split per step, closing a box once its bound is within ``tol`` of the witnesses;
    ``samples`` random points (``seed``) seed the witnesses."""

    time_budget: float = 60.0
    max_boxes: int | None = None
    max_cells: int = 100_000
    samples: int = 4096
    seed: int = 0
    batch: int = 512
    tol: float = 1e-9


def _checked_box(n1: AnyNet, n2: AnyNet, lower: np.ndarray, upper: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    lower = np.asarray(lower, dtype=np.float64).reshape(-1)
    upper = np.asarray(upper, dtype=np.float64).reshape(-1)
    if n1.in_size != n2.in_size or n1.out_size != n2.out_size:
        raise ShapeMismatchError(f"N1 maps {n1.in_size} inputs to {n1.out_size} outputs, N2 "
                                 f"{n2.in_size} to {n2.out_size}; the two must agree")
    if lower.shape != (n1.in_size,) or upper.shape != lower.shape:
        raise ShapeMismatchError(f"the input box has {lower.size} dimensions, the networks "
                                 f"take {n1.in_size}")
    if not (np.all(np.isfinite(lower)) and np.all(np.isfinite(upper))):
        raise InputError("the input box must be finite")
    if np.any(lower > upper):
        raise InputError("the input box is empty (a lower bound above its upper bound)")
    return lower, upper


def discrepancy(n1: AnyNet, n2: AnyNet, lower: np.ndarray, upper: np.ndarray,
                options: DiscrepancyOptions = DiscrepancyOptions(), *,
                progress: Progress | None = None) -> Discrepancy:
    """Certified and witnessed ``[min, max]`` of ``(N1 - N2)_i`` over the box (module doc)."""
    t0 = time.perf_counter()
    lower, upper = _checked_box(n1, n2, lower, upper)
    pair = QuantPair(n1, n2, lower, upper)
    root = pair.root(lower, upper)
    best = Best(n1.out_size, lower.size)
    rng = np.random.default_rng(options.seed)
    x = np.concatenate([rng.uniform(lower, upper, size=(options.samples, lower.size)),
                        lower[None], upper[None], ((lower + upper) / 2)[None]])
    best.offer(*pair.evaluate(x))
    n_cells = float(np.prod(root.cu - root.cl + 1))
    if n_cells <= options.max_cells:
        boxes = pair.cells(root)
        if progress:
            progress(f"{len(boxes)} cells of the input quantization grid, each exact")
        return _finish(best, _screened(pair, best, boxes), (Method.EXACT_CELLS, len(boxes)),
                       t0, [])
    return _BranchAndBound(pair, best, options, t0, progress).run(root, n_cells)


def _screened(pair: QuantPair, best: Best, boxes: Boxes) -> CellBounds:
    """Bound every cell by intervals, evaluate every cell's centre, then run CROWN only on the
    cells whose interval bound still exceeds a witnessed value (the others cannot raise the
    certified maximum above the witness, so their interval bound is as good)."""
    bd = pair.bound(boxes, crown=False)
    centre = np.clip((boxes.lo + boxes.hi) / 2, boxes.lo, boxes.hi)
    best.offer(*pair.evaluate(centre))
    if not pair.red:
        return bd
    need = np.flatnonzero(np.any((bd.dmax > best.val[None, :, 1]) |
                                 (bd.dmin < best.val[None, :, 0]), axis=1))
    if len(need):
        sub = boxes.take(need)
        sbd = pair.bound(sub)
        witnesses(pair, best, sub, sbd, top=64)
        bd.dmin[need] = np.maximum(bd.dmin[need], sbd.dmin)
        bd.dmax[need] = np.minimum(bd.dmax[need], sbd.dmax)
        for a, c in ((0, 1), (2, 3)):
            bd.y[a][need] = np.maximum(bd.y[a][need], sbd.y[a])
            bd.y[c][need] = np.minimum(bd.y[c][need], sbd.y[c])
    return bd


def _finish(best: Best, bd: CellBounds, how: tuple[Method, int], t0: float, notes: list[str]
            ) -> Discrepancy:
    """The report from the witnesses and the boxes' bounds (``how``: method and box count)."""
    # the certified side can never lie inside a witnessed value
    cert = np.stack([np.minimum(bd.dmin.min(0), best.val[:, 0]),
                     np.maximum(bd.dmax.max(0), best.val[:, 1])], 1)
    a1, b1, a2, b2 = bd.y
    y1 = np.stack([a1.min(0), b1.max(0)], 1)
    y2 = np.stack([a2.min(0), b2.max(0)], 1)
    outs = tuple(OutputBounds(i, float(best.val[i, 0]), float(cert[i, 0]), float(best.val[i, 1]),
                              float(cert[i, 1])) for i in range(len(cert)))
    return Discrepancy(outs, y1, y2, best.x, how[0], how[1], time.perf_counter() - t0,
                       tuple(notes))


def _halves(pair: QuantPair, parent: Boxes, span: np.ndarray) -> tuple[Boxes, np.ndarray]:
    """Each box split at the middle code of its widest code range (``span``): the left halves,
    then the right ones, and the index of each half's parent."""
    d = np.argmax(span, axis=1)
    rows = np.arange(len(parent))
    mid = np.floor((parent.cl[rows, d] + parent.cu[rows, d]) / 2)
    left, right = parent.take(rows), parent.take(rows)
    left.cu = left.cu.copy()
    right.cl = right.cl.copy()
    left.cu[rows, d], right.cl[rows, d] = mid, mid + 1
    kids = pair.restrict(Boxes(*[np.concatenate([getattr(left, f), getattr(right, f)])
                                 for f in ("lo", "hi", "cl", "cu")]), np.unique(d))
    return kids, np.concatenate([rows, rows])


class _BranchAndBound:
    """Split the boxes furthest from the witnesses at the middle code of their widest range,
    until every box is within ``tol`` of the witnesses or the budget ends."""

    def __init__(self, pair: QuantPair, best: Best, options: DiscrepancyOptions, t0: float,
                 progress: Progress | None) -> None:
        self.pair, self.best, self.opts, self.t0, self.progress = pair, best, options, t0, progress

    def step(self, boxes: Boxes, bd: CellBounds, most: int) -> tuple[Boxes, CellBounds] | None:
        """One round: the ``most`` most open boxes split and bounded; None when none is open."""
        best = self.best
        gap = np.maximum(best.val[None, :, 0] - bd.dmin, bd.dmax - best.val[None, :, 1]).max(1)
        span = boxes.cu - boxes.cl
        open_ = (gap > self.opts.tol) & (span.max(1) > 0)
        if not np.any(open_):
            return None
        pick = np.argsort(-np.where(open_, gap, -np.inf))[:min(most, int(open_.sum()))]
        keep = np.setdiff1d(np.arange(len(boxes)), pick)
        kids, parent = _halves(self.pair, boxes.take(pick), span[pick])
        pbd = bd.take(pick)
        kbd = self.pair.bound(kids)
        kbd.dmin = np.maximum(kbd.dmin, pbd.dmin[parent])  # a child's range lies in its parent's
        kbd.dmax = np.minimum(kbd.dmax, pbd.dmax[parent])
        witnesses(self.pair, best, kids, kbd, top=4)
        boxes = Boxes(*[np.concatenate([getattr(boxes.take(keep), f), getattr(kids, f)])
                        for f in ("lo", "hi", "cl", "cu")])
        return boxes, CellBounds.join([bd.take(keep), kbd])

    def run(self, root: Boxes, n_cells: float) -> Discrepancy:
        boxes, bd = root, self.pair.bound(root)
        witnesses(self.pair, self.best, boxes, bd, top=4)
        rounds, budget, limit = 0, self.opts.time_budget, self.opts.max_boxes
        bounded, closed = len(root), False
        while time.perf_counter() - self.t0 < budget and (limit is None or bounded + 2 <= limit):
            room = self.opts.batch if limit is None else (limit - bounded) // 2
            nxt = self.step(boxes, bd, min(self.opts.batch, room))
            if nxt is None:
                closed = True
                break
            bounded += 2 * (len(nxt[0]) - len(boxes))  # a split box: two halves bounded
            (boxes, bd), rounds = nxt, rounds + 1
            if self.progress and rounds % 20 == 0:
                self.progress(f"{len(boxes)} boxes, {time.perf_counter() - self.t0:.1f} s")
        notes = []
        if time.perf_counter() - self.t0 >= budget:
            notes.append(f"time budget {budget:g} s ran out with {len(boxes)} boxes (the box "
                         f"spans {n_cells:.3g} grid cells); the certified bounds are sound but "
                         "may be loose")
        elif limit is not None and not closed:
            notes.append(f"work limit of {limit} boxes reached ({bounded} bounded); the "
                         "certified bounds are sound but may be loose")
        return _finish(self.best, bd, (Method.BRANCH_AND_BOUND, len(boxes)), self.t0, notes)
