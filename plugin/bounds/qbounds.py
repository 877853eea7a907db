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

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from nnbisim.bounds.crown import crown_bounds, interval_bounds
from nnbisim.core.errors import InputError, ShapeMismatchError
from nnbisim.core.model import Layer, Network
from nnbisim.core.quant import QuantizedNetwork, Quantizer
from nnbisim.tasks.epsilon import OutputBounds

AnyNet = Network | QuantizedNetwork
Progress = Callable[[str], None]


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
    method: str
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
                "method": self.method, "cells": self.cells, "seconds": self.seconds,
                "notes": list(self.notes)}


def _preimage(q: Quantizer, cl: np.ndarray, cu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reals whose code lies in ``[cl, cu]``, widened outward by a few ulps (a superset)."""
    lo = (cl - q.zero_point - 0.5) * q.scale
    hi = (cu - q.zero_point + 0.5) * q.scale
    for _ in range(4):
        lo, hi = np.nextafter(lo, -np.inf), np.nextafter(hi, np.inf)
    return np.where(cl <= q.qmin, -np.inf, lo), np.where(cu >= q.qmax, np.inf, hi)


class _Reduced:
    """A float network restricted to the free input dimensions (the fixed ones folded into the
    first bias), with the outward margin that folding in float64 needs."""

    def __init__(self, net: Network, free: np.ndarray, x0: np.ndarray) -> None:
        first = net.layers[0]
        fixed = np.setdiff1d(np.arange(net.in_size), free)
        w_fixed = first.weight[:, fixed]
        bias = first.bias + w_fixed @ x0[fixed]
        n = len(fixed) + 2
        u = 2.0 ** -53
        err = 2 * (n * u / (1 - n * u)) * (np.abs(w_fixed) @ np.abs(x0[fixed]) + np.abs(first.bias))
        for layer in net.layers[1:]:  # ReLU is 1-Lipschitz: the error grows by |W| per layer
            err = np.abs(layer.weight) @ err
        self.margin = err * (1 + 1e-12) + 1e-300
        self.free = free
        self.net = Network((Layer(first.weight[:, free], bias), *net.layers[1:]),
                           (1, len(free)), net.name)

    def interval(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray, None]:
        """Interval bounds ``(B, m)`` per box (no slopes): cheap, for screening cells."""
        r = interval_bounds(self.net, torch.from_numpy(lo[:, self.free]),
                            torch.from_numpy(hi[:, self.free]))
        return r.lo.numpy() - self.margin, r.hi.numpy() + self.margin, None

    def bounds(self, lo: np.ndarray, hi: np.ndarray, batch: int = 2048
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CROWN bounds ``(B, m)`` and the input slopes ``(B, 2m, k)`` per box."""
        los, his, slopes = [], [], []
        lo, hi = lo[:, self.free], hi[:, self.free]
        for s in range(0, len(lo), batch):
            r = crown_bounds(self.net, torch.from_numpy(lo[s:s + batch]),
                             torch.from_numpy(hi[s:s + batch]), slopes=True)
            los.append(r.lo.numpy() - self.margin)
            his.append(r.hi.numpy() + self.margin)
            slopes.append(r.slopes.numpy())
        return np.concatenate(los), np.concatenate(his), np.concatenate(slopes)


@dataclass
class _Boxes:
    """Boxes: real extents ``lo``/``hi`` and input code ranges ``cl``/``cu``, ``(B, n)``."""

    lo: np.ndarray
    hi: np.ndarray
    cl: np.ndarray
    cu: np.ndarray

    def take(self, idx: np.ndarray) -> _Boxes:
        return _Boxes(self.lo[idx], self.hi[idx], self.cl[idx], self.cu[idx])

    def __len__(self) -> int:
        return len(self.lo)


@dataclass
class _Bounded:
    """Per box: certified ``dmin``/``dmax`` of the difference, network ranges, float slopes."""

    dmin: np.ndarray
    dmax: np.ndarray
    y: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    slopes: tuple[np.ndarray | None, np.ndarray | None]

    def take(self, idx: np.ndarray) -> _Bounded:
        return _Bounded(self.dmin[idx], self.dmax[idx], tuple(a[idx] for a in self.y),
                        tuple(None if s is None else s[idx] for s in self.slopes))

    @staticmethod
    def join(parts: list[_Bounded]) -> _Bounded:
        return _Bounded(np.concatenate([p.dmin for p in parts]),
                        np.concatenate([p.dmax for p in parts]),
                        tuple(np.concatenate([p.y[k] for p in parts]) for k in range(4)),
                        tuple(None if parts[0].slopes[k] is None else
                              np.concatenate([p.slopes[k] for p in parts]) for k in range(2)))


class _Pair:
    def __init__(self, n1: AnyNet, n2: AnyNet, lower: np.ndarray, upper: np.ndarray) -> None:
        self.n1, self.n2 = n1, n2
        quants = [n.input for n in (n1, n2) if isinstance(n, QuantizedNetwork)]
        if not quants:
            raise InputError("neither network is quantized; use nnbisim epsilon for float pairs")
        if len(quants) == 2 and quants[0] != quants[1]:
            raise InputError(f"the two networks quantize their inputs differently "
                             f"({quants[0].describe()} vs {quants[1].describe()}); nnbisim "
                             "bounds quantized pairs on one input grid")
        self.q = quants[0]
        self.lower, self.upper = lower, upper
        self.free = np.flatnonzero(upper > lower)
        if not len(self.free):  # a point: keep one (zero-width) dimension for CROWN
            self.free = np.array([0])
        x0 = (lower + upper) / 2
        self.red = {k: _Reduced(n, self.free, x0) for k, n in enumerate((n1, n2))
                    if isinstance(n, Network)}

    def root(self, lower: np.ndarray, upper: np.ndarray) -> _Boxes:
        return _Boxes(lower[None].copy(), upper[None].copy(), self.q.codes(lower)[None],
                      self.q.codes(upper)[None])

    def cells(self, root: _Boxes) -> _Boxes:
        """Every cell of the root box (one code per input)."""
        spans = [np.arange(root.cl[0, d], root.cu[0, d] + 1) for d in range(root.cl.shape[1])]
        var = [d for d, s in enumerate(spans) if len(s) > 1]
        if not var:
            return root
        grid = np.stack(np.meshgrid(*[spans[d] for d in var], indexing="ij"), -1)
        grid = grid.reshape(-1, len(var))
        cl = np.repeat(root.cl, len(grid), 0)
        cl[:, var] = grid
        return self.restrict(_Boxes(np.repeat(root.lo, len(grid), 0),
                                    np.repeat(root.hi, len(grid), 0), cl, cl.copy()), var)

    def restrict(self, b: _Boxes, cols: Sequence[int] | np.ndarray | None = None) -> _Boxes:
        """Shrink the real extents to the preimage of the code ranges (only in ``cols``, the
        columns whose code ranges changed, when given)."""
        cols = np.arange(b.lo.shape[1]) if cols is None else np.asarray(cols, dtype=np.int64)
        plo, phi = _preimage(self.q, b.cl[:, cols], b.cu[:, cols])
        lo, hi = b.lo.copy(), b.hi.copy()
        lo[:, cols] = np.maximum(lo[:, cols], plo)
        hi[:, cols] = np.minimum(hi[:, cols], phi)
        return _Boxes(lo, hi, b.cl, b.cu)

    def _net(self, k: int, b: _Boxes, crown: bool):
        net = (self.n1, self.n2)[k]
        if isinstance(net, QuantizedNetwork):
            if np.array_equal(b.cl, b.cu):
                y = net.forward_codes(b.cl)
                return y, y, None
            a, c = net.interval_codes(b.cl, b.cu)
            return a, c, None
        return self.red[k].bounds(b.lo, b.hi) if crown else self.red[k].interval(b.lo, b.hi)

    def bound(self, b: _Boxes, crown: bool = True) -> _Bounded:
        out = []
        for s in range(0, len(b), 8192):
            part = b.take(np.arange(s, min(s + 8192, len(b))))
            exact = np.all(part.cl == part.cu, axis=1)
            parts = []
            for mask in (exact, ~exact):  # constant cells and code ranges separately
                if np.any(mask):
                    idx = np.flatnonzero(mask)
                    sub = part.take(idx)
                    a1, b1, s1 = self._net(0, sub, crown)
                    a2, b2, s2 = self._net(1, sub, crown)
                    parts.append((idx, _Bounded(a1 - b2, b1 - a2, (a1, b1, a2, b2), (s1, s2))))
            joined = _Bounded.join([p for _, p in parts])
            order = np.argsort(np.concatenate([i for i, _ in parts]))
            out.append(joined.take(order))
        return _Bounded.join(out)

    def evaluate(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(x', N1(x') - N2(x'))`` with ``x'`` the float32 point nearest ``x`` inside the box:
        what a float32 evaluator such as onnxruntime is given, so each witness replays as it
        is (a point a hair's breadth from a rounding tie would otherwise change cells)."""
        x32 = np.asarray(x, dtype=np.float32)
        up, dn = x32 > self.upper, x32 < self.lower
        x32[up] = np.nextafter(x32[up], np.float32(-np.inf))
        x32[dn] = np.nextafter(x32[dn], np.float32(np.inf))
        x = np.clip(x32.astype(np.float64), self.lower, self.upper)
        return x, self.n1.forward(x) - self.n2.forward(x)


class _Best:
    """Running witnessed min and max per output, with their inputs."""

    def __init__(self, m: int, n: int) -> None:
        self.val = np.stack([np.full(m, np.inf), np.full(m, -np.inf)], 1)
        self.x = np.zeros((m, 2, n))

    def offer(self, x: np.ndarray, d: np.ndarray) -> None:
        lo_i, hi_i = d.argmin(0), d.argmax(0)
        for i in range(d.shape[1]):
            if d[lo_i[i], i] < self.val[i, 0]:
                self.val[i, 0], self.x[i, 0] = d[lo_i[i], i], x[lo_i[i]]
            if d[hi_i[i], i] > self.val[i, 1]:
                self.val[i, 1], self.x[i, 1] = d[hi_i[i], i], x[hi_i[i]]


def _witnesses(pair: _Pair, best: _Best, boxes: _Boxes, bd: _Bounded, top: int) -> None:
    """Evaluate where the certified bounds are largest: CROWN's maximising vertex of the float
    network, or the box centre when both networks are quantized."""
    m = bd.dmin.shape[1]
    xs = []
    for i in range(m):
        for side, score in ((0, -bd.dmin[:, i]), (1, bd.dmax[:, i])):
            order = np.argsort(-score)[:top]
            lo, hi = boxes.lo[order], boxes.hi[order]
            centre = np.where(np.isfinite(lo) & np.isfinite(hi), (lo + hi) / 2,
                              np.where(np.isfinite(lo), lo, hi))
            xs.append(centre)
            for k, sign in ((0, 1), (1, -1)):  # d = y1 - y2: maximise y1 or minimise y2
                s = bd.slopes[k]
                if s is None:
                    continue
                row = i if (side == 1) == (sign > 0) else m + i
                a, b = lo[:, pair.free], hi[:, pair.free]
                inset = 1e-4 * np.where(np.isfinite(b - a), b - a, 0.0)  # off the cell's edge
                v = np.where(s[order][:, row, :] > 0, b - inset, a + inset)
                x = centre.copy()
                x[:, pair.free] = v
                xs.append(x)
    x = np.concatenate(xs)
    best.offer(*pair.evaluate(x))


def discrepancy(n1: AnyNet, n2: AnyNet, lower: np.ndarray, upper: np.ndarray, *,
                max_cells: int = 100_000, time_budget: float = 60.0, samples: int = 4096,
                seed: int = 0, progress: Progress | None = None) -> Discrepancy:
    """Certified and witnessed ``[min, max]`` of ``(N1 - N2)_i`` over the box (module doc)."""
    t0 = time.perf_counter()
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
    pair = _Pair(n1, n2, lower, upper)
    root = pair.root(lower, upper)
    best = _Best(n1.out_size, lower.size)
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.uniform(lower, upper, size=(samples, lower.size)),
                        lower[None], upper[None], ((lower + upper) / 2)[None]])
    best.offer(*pair.evaluate(x))
    n_cells = float(np.prod(root.cu - root.cl + 1))
    if n_cells <= max_cells:
        boxes = pair.cells(root)
        if progress:
            progress(f"{len(boxes)} cells of the input quantization grid, each exact")
        return _finish(best, _screened(pair, best, boxes), "exact cells", len(boxes), t0, [])
    return _branch_and_bound(pair, root, best, t0, time_budget, progress, n_cells)


def _screened(pair: _Pair, best: _Best, boxes: _Boxes) -> _Bounded:
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
        _witnesses(pair, best, sub, sbd, top=64)
        bd.dmin[need] = np.maximum(bd.dmin[need], sbd.dmin)
        bd.dmax[need] = np.minimum(bd.dmax[need], sbd.dmax)
        for a, c in ((0, 1), (2, 3)):
            bd.y[a][need] = np.maximum(bd.y[a][need], sbd.y[a])
            bd.y[c][need] = np.minimum(bd.y[c][need], sbd.y[c])
    return bd


def _finish(best: _Best, bd: _Bounded, method: str, boxes: int, t0: float, notes: list[str]
            ) -> Discrepancy:
    # the certified side can never lie inside a witnessed value
    cert = np.stack([np.minimum(bd.dmin.min(0), best.val[:, 0]),
                     np.maximum(bd.dmax.max(0), best.val[:, 1])], 1)
    a1, b1, a2, b2 = bd.y
    y1 = np.stack([a1.min(0), b1.max(0)], 1)
    y2 = np.stack([a2.min(0), b2.max(0)], 1)
    outs = tuple(OutputBounds(i, float(best.val[i, 0]), float(cert[i, 0]), float(best.val[i, 1]),
                              float(cert[i, 1])) for i in range(len(cert)))
    return Discrepancy(outs, y1, y2, best.x, method, boxes, time.perf_counter() - t0,
                       tuple(notes))


def _branch_and_bound(pair: _Pair, root: _Boxes, best: _Best, t0: float, budget: float,
                      progress: Progress | None, n_cells: float, batch: int = 512,
                      tol: float = 1e-9) -> Discrepancy:
    """Split the boxes furthest from the witnesses at the middle code of their widest range."""
    boxes, bd = root, pair.bound(root)
    _witnesses(pair, best, boxes, bd, top=4)
    rounds = 0
    while time.perf_counter() - t0 < budget:
        gap = np.maximum(best.val[None, :, 0] - bd.dmin, bd.dmax - best.val[None, :, 1]).max(1)
        span = boxes.cu - boxes.cl
        open_ = (gap > tol) & (span.max(1) > 0)
        if not np.any(open_):
            break
        pick = np.argsort(-np.where(open_, gap, -np.inf))[:min(batch, int(open_.sum()))]
        keep = np.setdiff1d(np.arange(len(boxes)), pick)
        parent, pbd = boxes.take(pick), bd.take(pick)
        d = np.argmax(span[pick], axis=1)
        rows = np.arange(len(pick))
        mid = np.floor((parent.cl[rows, d] + parent.cu[rows, d]) / 2)
        left, right = parent.take(rows), parent.take(rows)
        left.cu = left.cu.copy()
        right.cl = right.cl.copy()
        left.cu[rows, d], right.cl[rows, d] = mid, mid + 1
        kids = pair.restrict(_Boxes(*[np.concatenate([getattr(left, f), getattr(right, f)])
                                      for f in ("lo", "hi", "cl", "cu")]), np.unique(d))
        kbd = pair.bound(kids)
        both = np.concatenate([rows, rows])  # a child's range lies in its parent's
        kbd.dmin = np.maximum(kbd.dmin, pbd.dmin[both])
        kbd.dmax = np.minimum(kbd.dmax, pbd.dmax[both])
        _witnesses(pair, best, kids, kbd, top=4)
        boxes = _Boxes(*[np.concatenate([getattr(boxes.take(keep), f), getattr(kids, f)])
                         for f in ("lo", "hi", "cl", "cu")])
        bd = _Bounded.join([bd.take(keep), kbd])
        rounds += 1
        if progress and rounds % 20 == 0:
            progress(f"{len(boxes)} boxes, {time.perf_counter() - t0:.1f} s")
    notes = []
    if time.perf_counter() - t0 >= budget:
        notes.append(f"time budget {budget:g} s ran out with {len(boxes)} boxes (the box spans "
                     f"{n_cells:.3g} grid cells); the certified bounds are sound but may be "
                     "loose")
    return _finish(best, bd, "branch and bound", len(boxes), t0, notes)
