"""The pieces of the quantized discrepancy engine (:mod:`nnbisim.bounds.qbounds`): boxes with
their input-code ranges, a float network restricted to the free inputs, the pair's bounds per
box and the running witnesses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from nnbisim.bounds.crown import CrownOptions, crown_bounds, interval_bounds
from nnbisim.bounds.fp import gamma2
from nnbisim.core.errors import InputError
from nnbisim.core.model import Layer, Network
from nnbisim.core.quant import QuantizedNetwork, Quantizer

AnyNet = Network | QuantizedNetwork


def preimage(q: Quantizer, cl: np.ndarray, cu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reals whose code lies in ``[cl, cu]``, widened outward by a few ulps (a superset)."""
    lo = (cl - q.zero_point - 0.5) * q.scale
    hi = (cu - q.zero_point + 0.5) * q.scale
    for _ in range(4):
        lo, hi = np.nextafter(lo, -np.inf), np.nextafter(hi, np.inf)
    return np.where(cl <= q.qmin, -np.inf, lo), np.where(cu >= q.qmax, np.inf, hi)

def _below(v: np.ndarray) -> np.ndarray:
    """A float64 result one step down: below the exact value of the operation that gave it
    (one rounding, to nearest, is within one step)."""
    return np.nextafter(v, -np.inf)


def _above(v: np.ndarray) -> np.ndarray:
    """A float64 result one step up (see :func:`_below`)."""
    return np.nextafter(v, np.inf)


class Reduced:
    """A float network restricted to the free input dimensions (the fixed ones folded into the
    first bias), with the outward margin that folding in float64 needs."""

    def __init__(self, net: Network, free: np.ndarray, x0: np.ndarray) -> None:
        first = net.layers[0]
        fixed = np.setdiff1d(np.arange(net.in_size), free)
        w_fixed = first.weight[:, fixed]
        bias = first.bias + w_fixed @ x0[fixed]
        n = len(fixed) + 2
        err = gamma2(n) * (np.abs(w_fixed) @ np.abs(x0[fixed]) + np.abs(first.bias))
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
        return _below(r.lo.numpy() - self.margin), _above(r.hi.numpy() + self.margin), None

    def bounds(self, lo: np.ndarray, hi: np.ndarray, batch: int = 2048
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CROWN bounds ``(B, m)`` and the input slopes ``(B, 2m, k)`` per box."""
        los, his, slopes = [], [], []
        lo, hi = lo[:, self.free], hi[:, self.free]
        for s in range(0, len(lo), batch):
            r = crown_bounds(self.net, torch.from_numpy(lo[s:s + batch]),
                             torch.from_numpy(hi[s:s + batch]), options=CrownOptions(slopes=True))
            los.append(_below(r.lo.numpy() - self.margin))
            his.append(_above(r.hi.numpy() + self.margin))
            slopes.append(r.slopes.numpy())
        return np.concatenate(los), np.concatenate(his), np.concatenate(slopes)

@dataclass
class Boxes:
    """Boxes: real extents ``lo``/``hi`` and input code ranges ``cl``/``cu``, ``(B, n)``."""

    lo: np.ndarray
    hi: np.ndarray
    cl: np.ndarray
    cu: np.ndarray

    def take(self, idx: np.ndarray) -> Boxes:
        return Boxes(self.lo[idx], self.hi[idx], self.cl[idx], self.cu[idx])

    def __len__(self) -> int:
        return len(self.lo)

@dataclass
class CellBounds:
    """Per box: certified ``dmin``/``dmax`` of the difference, network ranges, float slopes."""

    dmin: np.ndarray
    dmax: np.ndarray
    y: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    slopes: tuple[np.ndarray | None, np.ndarray | None]

    def take(self, idx: np.ndarray) -> CellBounds:
        return CellBounds(self.dmin[idx], self.dmax[idx], tuple(a[idx] for a in self.y),
                        tuple(None if s is None else s[idx] for s in self.slopes))

    @staticmethod
    def join(parts: list[CellBounds]) -> CellBounds:
        return CellBounds(np.concatenate([p.dmin for p in parts]),
                        np.concatenate([p.dmax for p in parts]),
                        tuple(np.concatenate([p.y[k] for p in parts]) for k in range(4)),
                        tuple(None if parts[0].slopes[k] is None else
                              np.concatenate([p.slopes[k] for p in parts]) for k in range(2)))

class QuantPair:
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
        self.red = {k: Reduced(n, self.free, x0) for k, n in enumerate((n1, n2))
                    if isinstance(n, Network)}

    def root(self, lower: np.ndarray, upper: np.ndarray) -> Boxes:
        return Boxes(lower[None].copy(), upper[None].copy(), self.q.codes(lower)[None],
                      self.q.codes(upper)[None])

    def cells(self, root: Boxes) -> Boxes:
        """Every cell of the root box (one code per input)."""
        spans = [np.arange(root.cl[0, d], root.cu[0, d] + 1) for d in range(root.cl.shape[1])]
        var = [d for d, s in enumerate(spans) if len(s) > 1]
        if not var:
            return root
        grid = np.stack(np.meshgrid(*[spans[d] for d in var], indexing="ij"), -1)
        grid = grid.reshape(-1, len(var))
        cl = np.repeat(root.cl, len(grid), 0)
        cl[:, var] = grid
        return self.restrict(Boxes(np.repeat(root.lo, len(grid), 0),
                                    np.repeat(root.hi, len(grid), 0), cl, cl.copy()), var)

    def restrict(self, b: Boxes, cols: Sequence[int] | np.ndarray | None = None) -> Boxes:
        """Shrink the real extents to the preimage of the code ranges (only in ``cols``, the
        columns whose code ranges changed, when given)."""
        cols = np.arange(b.lo.shape[1]) if cols is None else np.asarray(cols, dtype=np.int64)
        plo, phi = preimage(self.q, b.cl[:, cols], b.cu[:, cols])
        lo, hi = b.lo.copy(), b.hi.copy()
        lo[:, cols] = np.maximum(lo[:, cols], plo)
        hi[:, cols] = np.minimum(hi[:, cols], phi)
        return Boxes(lo, hi, b.cl, b.cu)

    def _net(self, k: int, b: Boxes, crown: bool):
        net = (self.n1, self.n2)[k]
        if isinstance(net, QuantizedNetwork):
            if np.array_equal(b.cl, b.cu):
                y = net.forward_codes(b.cl)
                return y, y, None
            a, c = net.interval_codes(b.cl, b.cu)
            return a, c, None
        return self.red[k].bounds(b.lo, b.hi) if crown else self.red[k].interval(b.lo, b.hi)

    def bound(self, b: Boxes, crown: bool = True) -> CellBounds:
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
                    parts.append((idx, CellBounds(_below(a1 - b2), _above(b1 - a2),
                                                  (a1, b1, a2, b2), (s1, s2))))
            joined = CellBounds.join([p for _, p in parts])
            order = np.argsort(np.concatenate([i for i, _ in parts]))
            out.append(joined.take(order))
        return CellBounds.join(out)

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

class Best:
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

def witnesses(pair: QuantPair, best: Best, boxes: Boxes, bd: CellBounds, top: int) -> None:
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
