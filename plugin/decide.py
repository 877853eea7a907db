"""Deciding a VNN-LIB property with the own engine: a witness for violated, a proof for holds.

A property is violated when some input of one of its boxes reaches one of its unsafe polytopes
``A y <= b``. For one box and one polytope the margin ``g(x) = min_j (b_j - A_j y(x))`` is
``>= 0`` exactly where ``x`` reaches it. Witnesses climb ``g`` from the best of many samples;
branch and bound over input boxes bounds it from above by ``min_j (b_j - lower(A_j y))`` and
proves the polytope unreachable once every box's bound is negative.

The outputs ``y`` are those of one network (:func:`single`: CROWN bounds) or of two networks fed
the same input (:func:`pair`: the differential engine on rows over ``[y1; y2; y1 - y2]`` when the
layer sizes agree, CROWN on the merged network otherwise), so a two-network equivalence query is
decided on the original pair, never through a looser single network.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from nnbisim.bab import Bounded, input_bab
from nnbisim.model import Network
from nnbisim.specs.sets import Box, Polytope, SpecCase
from nnbisim.verdict import Status, Verdict
from nnbisim.witness import climb, torch_forward, torch_layers

log = logging.getLogger(__name__)

# (lower (B, n), upper (B, n), A (R, out)) -> lower bounds (B, R) of A y, their slopes (B, R, n)
RowBounds = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
Layout = Literal["all", "stacked", "diff"]


@dataclass(frozen=True)
class Subject:
    """What a property's outputs are, with the means to evaluate and bound them."""

    name: str
    n_outputs: int
    forward: Callable[[np.ndarray], np.ndarray]  # x (B, n) -> y (B, n_outputs), float64
    torch_forward: Callable[[torch.Tensor], torch.Tensor]
    rows: RowBounds


def _host(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def single(net: Network, device: str = "cpu") -> Subject:
    """The outputs of one network, bounded by CROWN with forward bounds in low dimension."""
    from nnbisim.bounds import crown_bounds, prepare

    tn, layers = prepare(net, device), torch_layers(net)

    def rows(lo: np.ndarray, hi: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        res = crown_bounds(tn, lo, hi, C=a, slopes=True)
        k = a.shape[0]
        return _host(res.lo), -_host(res.slopes[:, k:])  # lower of A y = -(upper of -A y)
    return Subject(net.name, net.out_size, net.forward, lambda x: torch_forward(layers, x), rows)


def pair(n1: Network, n2: Network, layout: Layout = "all", device: str = "cpu") -> Subject:
    """The outputs of two networks fed the same input: ``[y1; y2; y1 - y2]`` (``all``, as the
    merged network with all outputs gives them), ``[y1; y2]`` (``stacked``, as a two-network
    query states them) or ``y1 - y2`` (``diff``)."""
    from nnbisim.diffbounds import DiffEngine, same_architecture

    m = n1.out_size
    l1, l2 = torch_layers(n1), torch_layers(n2)

    def stack(y1, y2, cat):
        if layout == "diff":
            return y1 - y2
        parts = [y1, y2] if layout == "stacked" else [y1, y2, y1 - y2]
        return cat(parts)

    def forward(x: np.ndarray) -> np.ndarray:
        return stack(n1.forward(x), n2.forward(x), lambda p: np.concatenate(p, axis=-1))

    def tforward(x: torch.Tensor) -> torch.Tensor:
        return stack(torch_forward(l1, x), torch_forward(l2, x), lambda p: torch.cat(p, -1))

    def split(a: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        if layout == "diff":
            return None, None, a
        parts = [a[:, :m], a[:, m:2 * m], a[:, 2 * m:] if layout == "all" else None]
        return tuple(None if p is None or not p.any() else p for p in parts)  # type: ignore

    if same_architecture(n1, n2):
        engine = DiffEngine(n1, n2, device)

        def rows(lo: np.ndarray, hi: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            a1, a2, ad = split(a)
            if a1 is None and a2 is None and ad is None:  # rows of zeros
                return np.zeros((len(lo), len(a))), np.zeros((len(lo), len(a), lo.shape[1]))
            low, slope = engine.row_bounds(lo, hi, a1, a2, ad, slopes=True)
            return _host(low), _host(slope)
    else:
        from nnbisim.adapters.merge import merge_networks

        merged = merge_networks(n1, n2, "all").network
        crown = single(merged, device).rows
        full = {"all": lambda a: a,
                "stacked": lambda a: np.hstack([a, np.zeros((a.shape[0], m))]),
                "diff": lambda a: np.hstack([np.zeros((a.shape[0], 2 * m)), a])}[layout]

        def rows(lo: np.ndarray, hi: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return crown(lo, hi, full(a))
    width = {"all": 3 * m, "stacked": 2 * m, "diff": m}[layout]
    return Subject(f"{n1.name} vs {n2.name}", width, forward, tforward, rows)


@dataclass(frozen=True)
class Decision:
    """The own engine's answer: ``violated`` with an input (to be replayed by the caller),
    ``holds`` with every box and polytope proved unreachable, or ``timeout``."""

    status: Status
    x: np.ndarray | None
    seconds: float
    problems: tuple[dict, ...] = field(default=())


def _margin(poly: Polytope) -> tuple[Callable[[np.ndarray], np.ndarray],
                                     Callable[[torch.Tensor], torch.Tensor]]:
    a, b = poly.mat, poly.rhs
    at, bt = torch.tensor(a), torch.tensor(b)

    def numeric(y: np.ndarray) -> np.ndarray:
        return (b - y @ a.T).min(axis=-1)

    def symbolic(y: torch.Tensor) -> torch.Tensor:
        return (bt - y @ at.T).amin(-1)
    return numeric, symbolic


def _falsify(subject: Subject, box: Box, poly: Polytope, rng: np.random.Generator,
             samples: int, restarts: int, steps: int) -> tuple[float, np.ndarray]:
    """The best margin found by sampling the box and climbing from the best samples."""
    numeric, symbolic = _margin(poly)
    x = np.concatenate([box.center[None], box.sample(samples, rng)])
    g = numeric(subject.forward(x))
    top = x[np.argsort(-g)[:restarts]]
    lo, hi = torch.tensor(box.lower), torch.tensor(box.upper)
    ends = climb(lambda p: symbolic(subject.torch_forward(p)), torch.as_tensor(top), lo, hi,
                 steps).numpy()
    cand = np.concatenate([x[np.argmax(g)][None], ends])
    vals = numeric(subject.forward(cand))
    k = int(np.argmax(vals))
    return float(vals[k]), cand[k]


def decide(subject: Subject, cases: Sequence[SpecCase], time_budget: float, *,
           seed: int = 0, progress: Callable[[str], None] | None = None) -> Decision:
    """Decide "does some input of a case's box reach its unsafe set" within ``time_budget``.

    First a quick witness search on every (box, polytope); then branch and bound on each in
    turn (the budget left shared among those still open). ``violated`` as soon as a margin
    reaches 0 (in float64: the caller replays it in onnxruntime), ``holds`` when every one is
    proved unreachable, ``timeout`` otherwise.
    """
    t0 = time.perf_counter()
    deadline = t0 + time_budget
    say = progress or (lambda _m: None)
    rng = np.random.default_rng(seed)
    problems = [(c, case.box, poly) for c, case in enumerate(cases)
                for poly in case.unsafe.disjuncts]
    notes: list[dict] = []
    samples = max(1024, min(50_000, 1_000_000 // max(cases[0].box.dim, 1)))
    starts: list[tuple[float, np.ndarray]] = []
    for c, box, poly in problems:
        g, x = _falsify(subject, box, poly, rng, samples, 16, 40)
        starts.append((g, x))
        if g >= 0:
            say(f"witness in box {c}: margin {g:.3g}")
            return Decision(Status.VIOLATED, x, time.perf_counter() - t0,
                            ({"case": c, "margin": g, "how": "witness"},))
    open_count = len(problems)
    for (c, box, poly), (g0, x0) in zip(problems, starts, strict=True):
        share = (deadline - time.perf_counter()) / max(open_count, 1)
        if share <= 0.05:
            notes.append({"case": c, "how": "bab", "reason": "budget", "margin": g0})
            continue
        numeric, symbolic = _margin(poly)
        a, b = poly.mat, poly.rhs

        def bound(lo: np.ndarray, hi: np.ndarray, a=a, b=b) -> Bounded:
            low, slope = subject.rows(lo, hi, a)
            gap = np.nextafter(b[None] - low, np.inf)  # upper bounds of b_j - A_j y, outward
            j = np.argmin(gap, axis=1)
            rows = np.arange(len(lo))
            return Bounded(gap[rows, j][:, None], None, -slope[rows, j][:, None])

        def value(x: np.ndarray, numeric=numeric) -> np.ndarray:
            return numeric(subject.forward(x))[:, None]

        res = input_bab(box.lower[None], box.upper[None], bound, value,
                        start_values=np.array([g0]), start_x=x0[None], target=0.0,
                        time_budget=share)
        open_count -= 1
        notes.append({"case": c, "how": "bab", "reason": res.reason, "boxes": res.boxes,
                      "seconds": round(res.seconds, 3), "upper": float(res.upper[0]),
                      "margin": float(res.value[0])})
        say(f"box {c}, unsafe polytope: {res.reason} after {res.boxes} boxes "
            f"({res.seconds:.1f} s)")
        if res.reason == "found":
            return Decision(Status.VIOLATED, res.x[0], time.perf_counter() - t0, tuple(notes))
    proved = all(n.get("reason") == "exhausted" for n in notes) and len(notes) == len(problems)
    return Decision(Status.HOLDS if proved else Status.TIMEOUT, None,
                    time.perf_counter() - t0, tuple(notes))


def subject_of(path, net: Network, device: str = "cpu") -> Subject:
    """The subject a single ONNX model stands for: the original pair when the file is a
    comparison network written by nnbisim (its metadata say how to split it), else itself."""
    from nnbisim.adapters.merge import split_merged
    from nnbisim.adapters.onnx_load import read_model
    from nnbisim.api import merged_blocks, merged_layout

    model = read_model(path)
    layout, blocks = merged_layout(model), merged_blocks(model)
    if layout is None or blocks is None:
        return single(net, device)
    outputs, n_out = layout
    n1, n2 = split_merged(net, blocks, n_out, outputs)
    return pair(n1, n2, outputs, device)


@dataclass(frozen=True)
class BoundsVerifier:
    """The own engine as a verifier plug-in (``bounds``): ``holds`` with a proof, ``violated``
    with a counterexample replayed in onnxruntime, ``timeout`` when the budget ends first, and
    ``unknown`` for models outside feedforward ReLU networks."""

    name: str = "bounds"
    device: str = "cpu"

    def check(self, model, prop, timeout: float) -> Verdict:
        from pathlib import Path

        from nnbisim.adapters.onnx_load import load_network
        from nnbisim.errors import UnsupportedModelError
        from nnbisim.verifiers import check_files, read_cases, replay_checked

        check_files(model, prop, timeout)
        t0 = time.perf_counter()
        try:
            net = load_network(model)
        except UnsupportedModelError as exc:
            return Verdict(Status.UNKNOWN, self.name, time.perf_counter() - t0,
                           message=f"outside the own engine: {exc}")
        subject = subject_of(model, net, self.device)
        left = timeout - (time.perf_counter() - t0)
        d = decide(subject, read_cases(Path(prop)), max(left, 0.1))
        verdict = Verdict(d.status, self.name, time.perf_counter() - t0, counterexample=d.x,
                          message="; ".join(f"box {n['case']}: {n.get('reason', n['how'])}"
                                            for n in d.problems))
        return replay_checked(verdict, Path(model), Path(prop))
