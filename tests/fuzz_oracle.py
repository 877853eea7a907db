"""The fuzz campaign's helpers (issue 26): an exact MILP oracle for max / min of
``(N1(x) - N2(x))_i`` over a box, random small network pairs, and malformed input files.

The oracle encodes both ReLU networks exactly (big-M, M from interval bounds widened outward)
and solves with HiGHS through :func:`scipy.optimize.milp` at a relative gap of 0. HiGHS works
to its own tolerances (primal feasibility 1e-7, integrality 1e-6), so its optimum is not a
proof to the last ulp: an :class:`Optimum` carries the solver's value, its dual bound and its
argmax replayed in float64 numpy (a real input, so ``replayed <= true max``). Comparisons
against the oracle take a tolerance (:func:`tol`).
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from nnbisim.core.model import Network

WIDEN = 1e-6  # the interval bounds' relative widening (M must not cut a feasible point)
PAIR_KINDS = ("perturbed", "float16", "pruned", "unrelated", "deeper", "shallower")


def tol(v: float, rel: float = 1e-6) -> float:
    """The slack of a comparison with the oracle's value ``v``."""
    return rel * (1.0 + abs(v))


def f32(a: np.ndarray) -> np.ndarray:
    """``a`` rounded to float32 and back: values an ONNX file stores exactly."""
    return np.asarray(a, np.float64).astype(np.float32).astype(np.float64)


def difference(n1: Network, n2: Network, x: np.ndarray) -> np.ndarray:
    """``N1(x) - N2(x)`` in float64 numpy, one row per point."""
    x = np.atleast_2d(np.asarray(x, np.float64))
    return n1.forward(x) - n2.forward(x)


# --- the oracle --------------------------------------------------------------------------


def _preactivation_bounds(net: Network, lo: np.ndarray, hi: np.ndarray) -> list[tuple]:
    """Interval bounds of every hidden layer's pre-activations, widened outward."""
    out, a, b = [], np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    for layer in net.layers[:-1]:
        w, c = layer.weight, layer.bias
        pos, neg = np.maximum(w, 0), np.minimum(w, 0)
        low, up = pos @ a + neg @ b + c, pos @ b + neg @ a + c
        low, up = low - WIDEN * (1 + np.abs(low)), up + WIDEN * (1 + np.abs(up))
        out.append((low, up))
        a, b = np.maximum(low, 0), np.maximum(up, 0)
    return out


class _Program:
    """Variables ``x``, then per hidden neuron of each network its output ``h`` and phase
    ``d``; rows ``lower <= A v <= upper``."""

    def __init__(self, lo: np.ndarray, hi: np.ndarray) -> None:
        self.lb, self.ub, self.kind = list(lo), list(hi), [0] * len(lo)
        self.rows: list[dict[int, float]] = []
        self.rlo: list[float] = []
        self.rhi: list[float] = []

    def add_vars(self, lb: np.ndarray, ub: np.ndarray, kind: int) -> np.ndarray:
        start = len(self.lb)
        self.lb += list(lb)
        self.ub += list(ub)
        self.kind += [kind] * len(lb)
        return np.arange(start, len(self.lb))

    def row(self, coeffs: dict[int, float], low: float, high: float) -> None:
        self.rows.append(coeffs)
        self.rlo.append(low)
        self.rhi.append(high)

    def matrix(self) -> np.ndarray:
        a = np.zeros((len(self.rows), len(self.lb)))
        for r, coeffs in enumerate(self.rows):
            for j, v in coeffs.items():
                a[r, j] += v
        return a


def _encode(prog: _Program, net: Network, xs: np.ndarray, lo, hi) -> np.ndarray:
    """Add ``net``'s hidden layers over inputs ``xs``; the last hidden layer's variables."""
    prev = xs
    for layer, (low, up) in zip(net.layers[:-1], _preactivation_bounds(net, lo, hi),
                                strict=True):
        w, c = layer.weight, layer.bias
        h = prog.add_vars(np.zeros(len(c)), np.maximum(up, 0), 0)
        active, stable = low >= 0, (low >= 0) | (up <= 0)
        d = prog.add_vars(active.astype(float), (~stable | active).astype(float), 1)
        for j in range(len(c)):
            z = {int(k): float(-v) for k, v in zip(prev, w[j], strict=True)}  # -W h_prev
            if up[j] <= 0:
                continue  # h = 0 by its bounds
            if low[j] >= 0:  # h = z
                prog.row({**z, int(h[j]): 1.0}, float(c[j]), float(c[j]))
                continue
            prog.row({**z, int(h[j]): 1.0}, float(c[j]), np.inf)  # h >= z
            prog.row({**z, int(h[j]): 1.0, int(d[j]): float(-low[j])}, -np.inf,
                     float(c[j] - low[j]))  # h <= z - low (1 - d)
            prog.row({int(h[j]): 1.0, int(d[j]): float(-up[j])}, -np.inf, 0.0)  # h <= up d
        prev = h
    return prev


@dataclass(frozen=True)
class Optimum:
    """``max_x s * (N1 - N2)_i`` by the oracle: ``value``, the maximum over the linear region
    (ReLU phases) of HiGHS's MILP solution, solved again as an LP with those phases fixed (the
    MILP's own optimum can sit above it by its integrality tolerance times M); ``bound``, the
    MILP's dual bound; the argmax ``x`` and ``replayed``, its value in float64 numpy."""

    index: int
    sign: int
    value: float
    bound: float
    x: np.ndarray
    replayed: float

    @property
    def top(self) -> float:
        """What no input exceeds, as far as the solver's tolerances allow."""
        return max(self.value, self.bound, self.replayed)


def _solve(prog: _Program, c: np.ndarray, kind: np.ndarray, lb: np.ndarray, ub: np.ndarray):
    cons = (LinearConstraint(prog.matrix(), prog.rlo, prog.rhi),) if prog.rows else ()
    res = milp(c, integrality=kind, bounds=Bounds(lb, ub), constraints=cons,
               options={"mip_rel_gap": 0.0, "presolve": True})
    return res if res.status == 0 else None


def extreme(n1: Network, n2: Network, lo: np.ndarray, hi: np.ndarray, index: int,
            sign: int) -> Optimum:
    """The exact maximum of ``sign * (N1(x) - N2(x))[index]`` over ``lo <= x <= hi``."""
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    prog = _Program(lo, hi)
    xs = np.arange(len(lo))
    last = [_encode(prog, net, xs, lo, hi) for net in (n1, n2)]
    c = np.zeros(len(prog.lb))
    for net, vars_, s in ((n1, last[0], 1.0), (n2, last[1], -1.0)):
        c[vars_] += -sign * s * net.layers[-1].weight[index]  # milp minimises
    const = sign * (n1.layers[-1].bias[index] - n2.layers[-1].bias[index])
    kind, lb, ub = np.array(prog.kind), np.array(prog.lb), np.array(prog.ub)
    res = _solve(prog, c, kind, lb, ub)
    if res is None:
        raise RuntimeError("oracle: HiGHS did not solve the MILP")
    dual = res.mip_dual_bound
    bound = -float(dual if dual is not None and np.isfinite(dual) else res.fun) + const
    phases = np.where(kind == 1, np.round(res.x), np.nan)
    fixed = _solve(prog, c, np.zeros_like(kind), np.where(kind == 1, phases, lb),
                   np.where(kind == 1, phases, ub))
    best = fixed if fixed is not None else res  # the LP can miss by a tolerance at a kink
    x = np.clip(best.x[:len(lo)], lo, hi)
    replayed = float(sign * difference(n1, n2, x)[0, index])
    return Optimum(index, sign, float(-best.fun + const), bound, x, replayed)


def exact_ranges(n1: Network, n2: Network, lo: np.ndarray, hi: np.ndarray
                 ) -> list[tuple[Optimum, Optimum]]:
    """Per output: (max of ``N1 - N2``, max of ``N2 - N1``) by the oracle."""
    return [(extreme(n1, n2, lo, hi, i, 1), extreme(n1, n2, lo, hi, i, -1))
            for i in range(n1.out_size)]


# --- random pairs ------------------------------------------------------------------------


def random_net(sizes: list[int], rng: np.random.Generator) -> Network:
    """A ReLU network of these layer sizes whose weights are float32 values."""
    pairs = list(zip(sizes[:-1], sizes[1:], strict=True))
    ws = [f32(rng.normal(size=(o, i)) / np.sqrt(i)) for i, o in pairs]
    bs = [f32(rng.normal(size=o) * 0.3) for o in sizes[1:]]
    return Network.from_weights(ws, bs)


def _reweighted(net: Network, fn) -> Network:
    return Network.from_weights([f32(fn(k, layer.weight)) for k, layer in enumerate(net.layers)],
                                [f32(layer.bias) for layer in net.layers])


def _pruned(net: Network, rng: np.random.Generator) -> Network:
    ws = [layer.weight.copy() for layer in net.layers]
    bs = [layer.bias.copy() for layer in net.layers]
    for k in range(len(ws) - 1):
        gone = rng.random(len(bs[k])) < 0.3
        ws[k][gone], bs[k][gone] = 0.0, 0.0
    return Network.from_weights(ws, bs)


def random_pair(kind: str, sizes: list[int], rng: np.random.Generator
                ) -> tuple[Network, Network]:
    """N1 of ``sizes`` and an N2 made from it (``perturbed``, ``float16``, ``pruned``) or
    unrelated to it (``unrelated``: same sizes, ``deeper``/``shallower``: one hidden layer
    more / fewer)."""
    n1 = random_net(sizes, rng)
    if kind == "perturbed":
        scale = float(rng.choice([1e-4, 1e-2, 0.1]))
        n2 = _reweighted(n1, lambda _k, w: w + scale * rng.normal(size=w.shape))
    elif kind == "float16":
        n2 = _reweighted(n1, lambda _k, w: w.astype(np.float16))
    elif kind == "pruned":
        n2 = _pruned(n1, rng)
    elif kind == "unrelated":
        n2 = random_net(sizes, rng)
    elif kind == "deeper":
        n2 = random_net([*sizes[:-1], sizes[-2], sizes[-1]], rng)
    elif kind == "shallower":
        n2 = random_net([*sizes[:-2], sizes[-1]] if len(sizes) > 3 else sizes, rng)
    else:
        raise ValueError(f"unknown pair kind {kind!r}")
    return n1, n2


def random_box(dim: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A box of float32 corners (some sides of zero width)."""
    centre = rng.uniform(-1, 1, dim)
    radius = rng.choice([0.0, 0.01, 0.1, 0.5, 1.0], size=dim, p=[0.1, 0.2, 0.3, 0.2, 0.2])
    return f32(centre - radius), f32(centre + radius)


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)
