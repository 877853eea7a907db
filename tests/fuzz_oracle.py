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

import functools
import gzip
import io
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from netbuild import matmul_add_model
from onnx import TensorProto, helper, numpy_helper
from scipy.optimize import Bounds, LinearConstraint, milp

from nnbisim.adapters.merged_onnx import merge_files
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


F32_TOL = 1e-5  # onnxruntime's float32 replay (the witnessed values) against real arithmetic


def violations(witnessed: float, exact: Optimum, certified: float) -> list[str]:
    """What breaks witnessed <= exact <= certified for one output and sign (values as maxima
    of ``sign * (N1 - N2)_i``), and whether the oracle's argmax replays to its value."""
    out = []
    if not abs(exact.replayed - exact.value) <= tol(exact.value):
        out.append(f"oracle: argmax replays to {exact.replayed!r}, not {exact.value!r}")
    if not certified >= max(exact.value, exact.replayed) - tol(exact.value):
        out.append(f"certified {certified!r} below the exact {exact.value!r}")
    if not witnessed <= exact.top + F32_TOL * (1 + abs(exact.top)):
        out.append(f"witnessed {witnessed!r} above the exact {exact.top!r}")
    return out


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


# --- malformed inputs --------------------------------------------------------------------

VNNLIB1 = """; a property of the 3-input, 2-output pair
(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const X_2 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(assert (<= X_0 1.0))
(assert (>= X_0 -1.0))
(assert (<= X_1 0.5))
(assert (>= X_1 -0.5))
(assert (<= X_2 0.25))
(assert (>= X_2 0.0))
(assert (or (and (>= Y_0 3.0)) (and (<= Y_1 -3.0))))
"""
VNNLIB2 = """(vnnlib-version <2.0>)
(declare-network N
  (declare-input X float32 [1,3])
  (declare-output Y float32 [1,2]))
(assert (<= X[0,0] 1.0))
(assert (>= X[0,0] -1.0))
(assert (<= X[0,1] 0.5))
(assert (>= X[0,1] -0.5))
(assert (<= X[0,2] 0.25))
(assert (>= X[0,2] 0.0))
(assert (or (and (>= Y[0,0] 3.0)) (and (<= Y[0,1] -3.0))))
"""
BOX = ("--lower", "-1,-0.5,0", "--upper", "1,0.5,0.25")
BUDGET = ("--verifier", "bounds", "--time-budget", "5")


@dataclass(frozen=True)
class Malformed:
    """One bad input: its ``kind`` (onnx, vnnlib, pth, gz, option), ``what`` is wrong with it
    and the ``nnbisim`` arguments that give it to a command."""

    kind: str
    what: str
    argv: tuple[str, ...]


class Workshop:
    """Good files in ``folder`` (a 3-4-2 pair as ONNX and as a state dict, a property in
    VNN-LIB 1.0 and 2.0), and fresh paths for the bad ones and for outputs."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.count = folder, 0
        self.net = random_net([3, 4, 2], np.random.default_rng(0))
        self.model = matmul_add_model(self.net, (1, 3))
        self.n1 = self.put("n1.onnx", self.model.SerializeToString())
        self.n2 = self.put("n2.onnx", self.onnx_with(lambda ts: ts["B1"].__setitem__(0, 0.5)))
        self.vnnlib = self.put("p.vnnlib", VNNLIB1.encode())
        self.vnnlib2 = self.put("p2.vnnlib", VNNLIB2.encode())
        self.state = {f"fc{k + 1}.{name}": torch.tensor(getattr(layer, name), dtype=torch.float32)
                      for k, layer in enumerate(self.net.layers) for name in ("weight", "bias")}
        self.pth = self.put("m.pth", self.torch_bytes(self.state))
        self.merged = self.put("merged.onnx", merge_files(self.n1, self.n2).SerializeToString())

    def path(self, name: str) -> Path:
        self.count += 1
        sub = self.folder / f"case{self.count:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        return sub / name

    def put(self, name: str, data: bytes) -> str:
        p = self.path(name)
        p.write_bytes(data)
        return str(p)

    def out(self, name: str) -> str:
        return str(self.path(name))

    def onnx_with(self, change) -> bytes:
        """The good model's bytes after ``change(tensors)`` edits its weights in place."""
        model = type(self.model)()
        model.CopyFrom(self.model)
        tensors = {t.name: numpy_helper.to_array(t).copy() for t in model.graph.initializer}
        change(tensors)
        for t in model.graph.initializer:
            t.CopyFrom(numpy_helper.from_array(tensors[t.name].astype(np.float32), t.name))
        return model.SerializeToString()

    @staticmethod
    def torch_bytes(obj) -> bytes:
        buf = io.BytesIO()
        torch.save(obj, buf)
        return buf.getvalue()


Maker = Callable[[Workshop, np.random.Generator], Malformed]
MAKERS: dict[str, Maker] = {}
KINDS = ("onnx", "vnnlib", "pth", "gz", "option")


def maker(kind: str) -> Callable[[Callable], Maker]:
    """Register ``fn(workshop, rng) -> (what, argv)`` as a maker of ``kind``, by its name."""
    def register(fn: Callable) -> Maker:
        def make(w: Workshop, rng: np.random.Generator) -> Malformed:
            what, argv = fn(w, rng)
            return Malformed(kind, what, tuple(str(a) for a in argv))
        MAKERS[fn.__name__] = make
        return make
    return register


def _pick(rng: np.random.Generator, options: list):
    return options[int(rng.integers(len(options)))]


# ONNX: as N2 of epsilon, N1 of merge or N2 of check


def _as_network(w: Workshop, rng: np.random.Generator, bad: str, replay: bool = True) -> tuple:
    """A command taking ``bad`` as a network; ``replay``: check, which only runs it in
    onnxruntime, is one of them (not for a model only nnbisim's loader refuses)."""
    return _pick(rng, [("epsilon", w.n1, bad, *BOX, *BUDGET),
                       ("merge", bad, w.n2, "-o", w.out("m.onnx")),
                       *([("check", w.merged, w.n1, bad, *BOX, "--samples", "100")]
                         if replay else [])])


def _bad_net(w: Workshop, rng, name: str, data: bytes, what: str, replay: bool = True
             ) -> tuple[str, tuple]:
    return what, _as_network(w, rng, w.put(name, data), replay)


@maker("onnx")
def onnx_truncated(w, rng):
    data = w.model.SerializeToString()
    cut = int(rng.integers(1, int(0.9 * len(data))))
    return _bad_net(w, rng, "t.onnx", data[:cut], f"truncated at {cut} of {len(data)} bytes")


@maker("onnx")
def onnx_garbage(w, rng):
    n = int(rng.integers(1, 4096))
    return _bad_net(w, rng, "g.onnx", rng.bytes(n), f"{n} random bytes")


@maker("onnx")
def onnx_empty(w, rng):
    return _bad_net(w, rng, "e.onnx", b"", "an empty file")


@maker("onnx")
def onnx_text(w, rng):
    return _bad_net(w, rng, "v.onnx", VNNLIB1.encode(), "a VNN-LIB text named .onnx")


@maker("onnx")
def onnx_state_dict(w, rng):
    return _bad_net(w, rng, "s.onnx", Path(w.pth).read_bytes(), "a .pth state dict named .onnx")


@maker("onnx")
def onnx_directory(w, rng):
    p = w.path("d.onnx")
    p.mkdir()
    return "a directory", _as_network(w, rng, str(p))


def _poke(w: Workshop, rng, value: float) -> tuple[bytes, str]:
    name = _pick(rng, sorted(t.name for t in w.model.graph.initializer))

    def change(ts):
        ts[name].reshape(-1)[int(rng.integers(ts[name].size))] = value
    return w.onnx_with(change), f"{value} in {name}"


@maker("onnx")
def onnx_nan_weight(w, rng):
    data, what = _poke(w, rng, np.nan)
    return _bad_net(w, rng, "nan.onnx", data, what)


@maker("onnx")
def onnx_inf_weight(w, rng):
    data, what = _poke(w, rng, _pick(rng, [np.inf, -np.inf]))
    return _bad_net(w, rng, "inf.onnx", data, what)


@maker("onnx")
def onnx_zero_std(w, rng):
    std = np.ones(3)
    std[int(rng.integers(3))] = 0.0
    model = matmul_add_model(w.net, (1, 3), normalise=(np.zeros(3), std))
    return _bad_net(w, rng, "z.onnx", model.SerializeToString(), f"Div by std {std}")


def _edited(w: Workshop, edit) -> bytes:
    model = type(w.model)()
    model.CopyFrom(w.model)
    edit(model)
    return model.SerializeToString()


@maker("onnx")
def onnx_sigmoid(w, rng):
    def edit(m):
        next(n for n in m.graph.node if n.op_type == "Relu").op_type = "Sigmoid"
    return _bad_net(w, rng, "sig.onnx", _edited(w, edit), "Sigmoid instead of Relu",
                    replay=False)  # onnxruntime runs it: check's disagreement is an answer


@maker("onnx")
def onnx_two_outputs(w, rng):
    def edit(m):
        m.graph.output.append(helper.make_tensor_value_info("h0", TensorProto.FLOAT, [1, 4]))
    return _bad_net(w, rng, "two.onnx", _edited(w, edit), "a second graph output")


@maker("onnx")
def onnx_int_input(w, rng):
    def edit(m):
        m.graph.input[0].type.tensor_type.elem_type = TensorProto.INT64
    return _bad_net(w, rng, "int.onnx", _edited(w, edit), "an int64 input")


@maker("onnx")
def onnx_no_nodes(w, rng):
    def edit(m):
        del m.graph.node[:]
    return _bad_net(w, rng, "nodes.onnx", _edited(w, edit), "a graph without nodes")


@maker("onnx")
def onnx_wrong_inputs(w, rng):
    net = random_net([4, 4, 2], rng)
    data = matmul_add_model(net, (1, 4)).SerializeToString()
    return _bad_net(w, rng, "in4.onnx", data, "4 inputs against the pair's 3")


@maker("onnx")
def onnx_wrong_outputs(w, rng):
    net = random_net([3, 4, 3], rng)
    bad = w.put("out3.onnx", matmul_add_model(net, (1, 3)).SerializeToString())
    return "3 outputs against the pair's 2", ("check", w.merged, w.n1, bad, *BOX, "--samples",
                                               "100")


@maker("onnx")
def onnx_huge_input(w, rng):
    def edit(m):
        m.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 100_000_000
    bad = w.put("huge.onnx", _edited(w, edit))
    return "an input declared [1, 1e8]", ("merge", bad, bad, "-o", w.out("m.onnx"))


@maker("onnx")
def onnx_wide_layer(w, rng):
    net = random_net([3, 100_000, 2], rng)
    bad = w.put("wide.onnx", matmul_add_model(net, (1, 3)).SerializeToString())
    return "a 1e5-wide hidden layer", ("merge", bad, bad, "-o", w.out("m.onnx"))


# VNN-LIB: the input set of epsilon or check, the property of assure, spec's input


def _as_property(w: Workshop, rng, bad: str) -> tuple:
    return _pick(rng, [("epsilon", w.n1, w.n2, "--input", bad, *BUDGET),
                       ("check", w.merged, w.n1, w.n2, "--input", bad, "--samples", "100"),
                       ("assure", w.n1, bad, "--compressed", w.n2, "--time-budget", "5"),
                       ("spec", "--input", bad, "--eps", "0.1", "--model", w.merged, "-o",
                        w.out("q.vnnlib"))])


def _bad_spec(w: Workshop, rng, text: str | bytes, what: str, name: str = "p.vnnlib"):
    data = text.encode() if isinstance(text, str) else text
    return what, _as_property(w, rng, w.put(name, data))


def _base(rng) -> str:
    return _pick(rng, [VNNLIB1, VNNLIB2])


def _version(text: str) -> str:
    return "2.0" if text.startswith("(vnnlib-version") else "1.0"


@maker("vnnlib")
def vnnlib_unbalanced(w, rng):
    text = _base(rng)
    start = text.index("(assert")
    if rng.random() < 0.5:
        closes = [k for k, c in enumerate(text) if c == ")" and k > start]
        k = _pick(rng, closes)
        return _bad_spec(w, rng, text[:k] + text[k + 1:], f"{_version(text)}: ')' {k} dropped")
    k = int(rng.integers(start, len(text)))
    return _bad_spec(w, rng, text[:k] + "(" + text[k:], f"{_version(text)}: '(' at {k}")


@maker("vnnlib")
def vnnlib_truncated(w, rng):
    text, depth, inside = _base(rng), 0, []
    for k, c in enumerate(text):
        depth += (c == "(") - (c == ")")
        if depth > 0 and k > text.index("(assert"):
            inside.append(k)
    cut = _pick(rng, inside)
    return _bad_spec(w, rng, text[:cut], f"{_version(text)}: cut at {cut} inside an assert")


def _bounds(text: str) -> list[tuple[int, int]]:
    """Where the numbers of the input asserts are (start, end)."""
    out, pos = [], 0
    while (k := text.find("(assert (", pos)) >= 0:
        end = text.index(")", k)
        if "X" in text[k:end]:
            out.append((text.rindex(" ", k, end) + 1, end))
        pos = end
    return out


@maker("vnnlib")
def vnnlib_nan_bound(w, rng):
    text = _base(rng)
    a, b = _pick(rng, _bounds(text))
    value = _pick(rng, ["nan", "NaN", "inf", "-inf", "1e400", "-1e400", "+nan"])
    return _bad_spec(w, rng, text[:a] + value + text[b:], f"{_version(text)}: bound {value}")


@maker("vnnlib")
def vnnlib_undeclared(w, rng):
    text = VNNLIB1
    name = _pick(rng, ["X_3", "X_17", "Z_0", "Y_5", "x_0"])
    k = _pick(rng, [k for k in range(len(text)) if text.startswith("X_", k)
                    and k > text.index("(assert")])
    return _bad_spec(w, rng, text[:k] + name + text[k + 3:], f"1.0: undeclared {name}")


@maker("vnnlib")
def vnnlib_lower_above_upper(w, rng):
    k = int(rng.integers(3))
    gap = float(_pick(rng, [1e-6, 0.5, 4.0]))
    lines = [line for line in VNNLIB1.splitlines(keepends=True)
             if not line.startswith((f"(assert (<= X_{k} ", f"(assert (>= X_{k} "))]
    lines.insert(-1, f"(assert (<= X_{k} 0.0))\n(assert (>= X_{k} {gap}))\n")
    return _bad_spec(w, rng, "".join(lines), f"1.0: X_{k} in [{gap}, 0]")


@maker("vnnlib")
def vnnlib_deep_and(w, rng):
    n = int(rng.integers(10_000, 200_001))
    deep = "(assert " + "(and " * n + "(<= X_0 1.0) (<= X_9 2.0)" + ")" * n + ")\n"
    return _bad_spec(w, rng, VNNLIB1 + deep, f"1.0: {n} nested ands around undeclared X_9")


@maker("vnnlib")
def vnnlib_deep_parens(w, rng):
    n = int(rng.integers(10_000, 200_001))
    text = _base(rng)
    return _bad_spec(w, rng, text + "(" * n + ")" * (n - 1), f"{_version(text)}: {n} '('")


@maker("vnnlib")
def vnnlib2_deep_and(w, rng):
    n = int(rng.integers(10_001, 50_001))
    deep = "(assert " + "(and " * n + "(<= X[0,0] 1.0)" + ")" * n + ")\n"
    return _bad_spec(w, rng, VNNLIB2 + deep, f"2.0: {n} nested ands")


@maker("vnnlib")
def vnnlib_binary(w, rng):
    n = int(rng.integers(1, 4096))
    return _bad_spec(w, rng, b"\xff\xfe" + rng.bytes(n), f"{n} random bytes")


@maker("vnnlib")
def vnnlib_empty(w, rng):
    text = _pick(rng, ["", "\n\n", "; only a comment\n"])
    return _bad_spec(w, rng, text, f"empty ({text!r})")


@maker("vnnlib")
def vnnlib_unbounded(w, rng):
    lines = VNNLIB1.splitlines(keepends=True)
    k = _pick(rng, [k for k, line in enumerate(lines) if line.startswith("(assert (") and "X" in
                    line])
    return _bad_spec(w, rng, "".join(lines[:k] + lines[k + 1:]), f"1.0: {lines[k].strip()} "
                     "dropped (an unbounded input)")


@maker("vnnlib")
def vnnlib_wrong_dim(w, rng):
    n = int(_pick(rng, [1, 2, 5, 8]))
    decl = "".join(f"(declare-const X_{k} Real)\n" for k in range(n))
    bounds = "".join(f"(assert (<= X_{k} 1.0))\n(assert (>= X_{k} -1.0))\n" for k in range(n))
    text = decl + "(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n" + bounds
    return _bad_spec(w, rng, text + "(assert (>= Y_0 3.0))\n", f"1.0: {n} inputs, not 3")


@maker("vnnlib")
def vnnlib_wide_outputs(w, rng):
    n = int(_pick(rng, [3, 5, 15]))
    text = VNNLIB1.replace("(declare-const Y_1 Real)\n", "".join(
        f"(declare-const Y_{k} Real)\n" for k in range(1, n)))
    text = text.replace("(<= Y_1 -3.0)", f"(<= Y_{n - 1} -3.0)")
    bad = w.put("wide.vnnlib", text.encode())
    return f"1.0: {n} outputs against 2", _pick(rng, [
        ("assure", w.n1, bad, "--compressed", w.n2, "--time-budget", "5"),
        ("vnncomp", "run", w.merged, bad, w.out("result.txt"), "5")])


@maker("vnnlib")
def vnnlib2_huge_input(w, rng):
    text = VNNLIB2.replace("[1,3]", "[1,100000000]")
    return _bad_spec(w, rng, text, "2.0: an input declared [1, 1e8]")


@maker("vnnlib")
def vnnlib_bad_token(w, rng):
    text = _base(rng)
    a, b = _pick(rng, _bounds(text))
    token = _pick(rng, ["foo", "1.0.0", "--1", "0x1p3", "(+ 1", "1e", "#b101", "\"1\""])
    return _bad_spec(w, rng, text[:a] + token + text[b:], f"{_version(text)}: bound {token!r}")


# .pth: converted to ONNX


def _bad_pth(w: Workshop, data: bytes, what: str, arch: tuple = ()) -> tuple[str, tuple]:
    return what, ("convert", w.put("m.pth", data), *arch, "-o", w.out("m.onnx"))


@maker("pth")
def pth_truncated(w, rng):
    data = Path(w.pth).read_bytes()
    cut = int(rng.integers(1, len(data) - 1))
    return _bad_pth(w, data[:cut], f"truncated at {cut} of {len(data)} bytes")


@maker("pth")
def pth_garbage(w, rng):
    n = int(rng.integers(0, 4096))
    return _bad_pth(w, rng.bytes(n), f"{n} random bytes")


@maker("pth")
def pth_not_a_dict(w, rng):
    obj = _pick(rng, [list(w.state.values()), torch.zeros(3), 42, "fc1.weight"])
    return _bad_pth(w, w.torch_bytes(obj), f"a pickled {type(obj).__name__}")


@maker("pth")
def pth_non_finite(w, rng):
    state = {k: v.clone() for k, v in w.state.items()}
    key = _pick(rng, sorted(state))
    value = _pick(rng, [float("nan"), float("inf"), float("-inf")])
    state[key].view(-1)[int(rng.integers(state[key].numel()))] = value
    return _bad_pth(w, w.torch_bytes(state), f"{value} in {key}")


@maker("pth")
def pth_shapes(w, rng):
    state = dict(w.state)
    state["fc2.weight"] = torch.zeros(2, int(_pick(rng, [1, 3, 5, 9])))
    return _bad_pth(w, w.torch_bytes(state), f"fc2.weight {tuple(state['fc2.weight'].shape)} "
                    "after a 4-wide fc1")


@maker("pth")
def pth_odd_values(w, rng):
    obj = _pick(rng, [{}, {"fc1.bias": torch.zeros(4)},
                      {"fc1.weight": torch.zeros(4, 3, 2), "fc1.bias": torch.zeros(4)}])
    return _bad_pth(w, w.torch_bytes(obj), f"the dict {sorted(obj)} ({len(obj)} keys)")


@maker("pth")
def pth_not_tensors(w, rng):
    value, key = _pick(rng, ["abc", 3, [1.0, 2.0], None]), _pick(rng, sorted(w.state))
    if value is None:  # a bias of None reads as a layer without bias
        key = key.replace(".bias", ".weight")
    state = {**w.state, key: value}
    return _bad_pth(w, w.torch_bytes(state), f"a state dict with {key} = {value!r}")


@maker("pth")
def pth_wrong_arch(w, rng):
    arch = _pick(rng, ["3-9-2", "784-256-10", "3-4", "a-b", "3-4-2-2"])
    return _bad_pth(w, Path(w.pth).read_bytes(), f"--arch {arch} against 3-4-2",
                    ("--arch", arch))


@maker("pth")
def pth_onnx(w, rng):
    return _bad_pth(w, w.model.SerializeToString(), "an ONNX model named .pth")


# gzip: VNN-LIB, ONNX and .pth files gzip'd


def _gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


@functools.cache
def _spaces_member() -> bytes:
    """One gzip member of 16 MiB of spaces (16 KiB)."""
    return gzip.compress(b" " * 2**24, compresslevel=9, mtime=0)


def _bomb(n_bytes: int) -> bytes:
    """gzip members of spaces, ``n_bytes`` in all once inflated (as ``cat a.gz b.gz``)."""
    return _spaces_member() * (n_bytes // 2**24)


@maker("gz")
def gz_truncated(w, rng):
    data = _gz(VNNLIB1.encode())
    cut = int(rng.integers(10, len(data) - 1))
    return _bad_spec(w, rng, data[:cut], f"gzip truncated at {cut} of {len(data)}",
                     "p.vnnlib.gz")


@maker("gz")
def gz_corrupt(w, rng):
    data = bytearray(_gz(VNNLIB1.encode()))
    for k in rng.integers(10, len(data) - 8, size=3):
        data[int(k)] ^= 0xFF
    return _bad_spec(w, rng, bytes(data), "gzip with 3 bytes flipped", "p.vnnlib.gz")


@maker("gz")
def gz_bomb(w, rng):
    gib = float(_pick(rng, [0.75, 1.0]))
    return _bad_spec(w, rng, _bomb(int(gib * 2**30)), f"gzip members inflating to {gib} GiB",
                     "p.vnnlib.gz")


@maker("gz")
def gz_binary(w, rng):
    n = int(rng.integers(1, 4096))
    return _bad_spec(w, rng, _gz(b"\xff" + rng.bytes(n)), f"gzip of {n} random bytes",
                     "p.vnnlib.gz")


@maker("gz")
def gz_bad_property(w, rng):
    text = VNNLIB1.replace("(assert (<= X_1 0.5))", "(assert (<= X_1 nan))")
    return _bad_spec(w, rng, _gz(text.encode()), "gzip of a property with a NaN bound",
                     "p.vnnlib.gz")


@maker("gz")
def gz_empty(w, rng):
    return _bad_spec(w, rng, _gz(b""), "gzip of nothing", "p.vnnlib.gz")


@maker("gz")
def gz_onnx(w, rng):
    # a whole gzip'd ONNX is read (VNN-COMP 2026 ships .onnx.gz); a cut one must be refused
    name = _pick(rng, ["n.onnx", "n.onnx.gz"])
    packed = _gz(w.model.SerializeToString())
    return _bad_net(w, rng, name, packed[:len(packed) // 2], f"truncated gzip'd ONNX as {name}")


@maker("gz")
def gz_pth(w, rng):
    return _bad_pth(w, _gz(Path(w.pth).read_bytes()), "gzip'd .pth")


# options and output paths


@maker("option")
def option_budget(w, rng):
    value = _pick(rng, ["nan", "-1", "0", "inf", "-inf"])
    return f"--time-budget {value}", _pick(rng, [
        ("epsilon", w.n1, w.n2, *BOX, "--verifier", "bounds", f"--time-budget={value}"),
        ("assure", w.n1, w.vnnlib, "--compressed", w.n2, f"--time-budget={value}")])


@maker("option")
def option_numbers(w, rng):
    return _pick(rng, [
        ("check --samples -5", ("check", w.merged, w.n1, w.n2, *BOX, "--samples=-5")),
        ("check --samples 0", ("check", w.merged, w.n1, w.n2, *BOX, "--samples=0")),
        ("spec --eps -0.1", ("spec", *BOX, "--eps=-0.1", "--n-outputs", "2", "-o",
                             w.out("q.vnnlib"))),
        ("spec --eps nan", ("spec", *BOX, "--eps", "nan", "--n-outputs", "2", "-o",
                            w.out("q.vnnlib"))),
        ("epsilon --rel-gap -1", ("epsilon", w.n1, w.n2, *BOX, *BUDGET, "--rel-gap=-1")),
        ("epsilon --rel-gap nan", ("epsilon", w.n1, w.n2, *BOX, *BUDGET, "--rel-gap", "nan"))])


@maker("option")
def option_box(w, rng):
    lower, upper = _pick(rng, [("1,1,1", "-1,-1,-1"), ("nan,0,0", "1,1,1"),
                               ("0,0,0", "inf,1,1"), ("0,0", "1,1"), ("a,b,c", "1,1,1")])
    return f"--lower {lower} --upper {upper}", ("epsilon", w.n1, w.n2, f"--lower={lower}",
                                                f"--upper={upper}", *BUDGET)


@maker("option")
def option_output_path(w, rng):
    under_file = f"{w.n1}/sub"  # a folder path through a regular file: never writable
    return _pick(rng, [
        ("epsilon --json /proc", ("epsilon", w.n1, w.n2, *BOX, *BUDGET, "--json",
                                  "/proc/nnbisim-fuzz.json")),
        ("epsilon --json under a file", ("epsilon", w.n1, w.n2, *BOX, *BUDGET, "--json",
                                         f"{under_file}/e.json")),
        ("merge -o /proc", ("merge", w.n1, w.n2, "-o", "/proc/nnbisim-fuzz.onnx")),
        ("merge -o under a file", ("merge", w.n1, w.n2, "-o", f"{under_file}/m.onnx")),
        ("spec -o /proc/specs/", ("spec", *BOX, "--eps", "0.1", "--n-outputs", "2", "-o",
                                  "/proc/nnbisim-fuzz/")),
        ("check --json under a file", ("check", w.merged, w.n1, w.n2, *BOX, "--samples",
                                       "100", "--json", f"{under_file}/c.json")),
        ("vnncomp run result under a file", ("vnncomp", "run", w.merged, w.vnnlib,
                                             f"{under_file}/r.txt", "5")),
        ("assure --json /proc", ("assure", w.n1, w.vnnlib, "--compressed", w.n2,
                                 "--time-budget", "5", "--json", "/proc/nnbisim-fuzz.json"))])


# running them


@dataclass(frozen=True)
class Outcome:
    """What the command line did with a bad input: ``verdict`` is ``clean refusal`` (exit 2,
    one line on stderr, no traceback), ``traceback``, ``accepted silently`` (exit 0) or
    ``other`` (any other exit, several lines, a timeout); the first and last lines of
    stderr."""

    verdict: str
    code: int | None
    first_line: str
    last_line: str
    lines: int
    seconds: float


VERDICTS = ("clean refusal", "traceback", "accepted silently", "other")
MEMORY_LIMIT = 8 * 2**30  # address space of a command under test: a missed limit fails fast


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_cli(argv: tuple[str, ...], cwd: Path, timeout: float = 120.0) -> Outcome:
    """``python -m nnbisim.cli *argv`` in its own process group (killed whole on timeout),
    its address space limited to :data:`MEMORY_LIMIT`."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "nnbisim.cli", *argv], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            errors="replace", start_new_session=True, preexec_fn=_limits)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        return Outcome("other", None, f"timeout after {timeout:.0f} s", "", 0, timeout)
    lines = [line for line in err.splitlines() if line.strip()]
    if "Traceback" in err:
        verdict = "traceback"
    elif proc.returncode == 2 and len(lines) == 1:
        verdict = "clean refusal"
    elif proc.returncode == 0:
        verdict = "accepted silently"
    else:
        verdict = "other"
    ends = (lines[0][:300], lines[-1][:300]) if lines else ("", "")
    return Outcome(verdict, proc.returncode, *ends, len(lines), time.perf_counter() - t0)
