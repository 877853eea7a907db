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

from nnbisim.core.model import Network
from nnbisim.core.verdict import Status, Verdict
from nnbisim.search.input_bab import Bounded, OpenBoxes, input_bab
from nnbisim.search.witness import climb, torch_forward, torch_layers
from nnbisim.specs.sets import Box, OutputConstraint, Polytope, SpecCase

log = logging.getLogger(__name__)

# (lower (B, n), upper (B, n), A (R, out), focus) -> lower bounds (B, R) of A y, their slopes
# (B, R, n); focus (or None): plain lower bounds (B, R) -> the rows (B, k) worth optimising
Focus = Callable[[np.ndarray], np.ndarray]
RowBounds = Callable[[np.ndarray, np.ndarray, np.ndarray, Focus | None],
                     tuple[np.ndarray, np.ndarray]]
Layout = Literal["all", "stacked", "diff"]
FOCUS_ITERS = 10  # Adam steps per focused row (alpha-CROWN's 20 not benched against it)


@dataclass(frozen=True)
class Subject:
    """What a property's outputs are, with the means to evaluate and bound them."""

    name: str
    n_outputs: int
    forward: Callable[[np.ndarray], np.ndarray]  # x (B, n) -> y (B, n_outputs), float64
    torch_forward: Callable[[torch.Tensor], torch.Tensor]
    rows: RowBounds
    # the branch and bound's split rule for this subject: (split, choose) of input_bab
    split_rule: tuple[str, str] = ("smart", "gain")
    focusable: bool = False  # does ``rows`` optimise the rows a focus picks (else ignores it)
    # seconds ``rows`` spent per part, where a subject keeps count (:func:`through`)
    clock: dict[str, float] | None = None


def _host(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def single(net: Network, device: str = "cpu") -> Subject:
    """The outputs of one network, bounded by CROWN with forward bounds in low dimension."""
    from nnbisim.bounds.crown import crown_bounds, prepare

    tn, layers = prepare(net, device), torch_layers(net)

    def rows(lo: np.ndarray, hi: np.ndarray, a: np.ndarray, focus: Focus | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        # lower of A y = -(upper of -A y): one side only, half the final back-substitution
        pick = None if focus is None else (
            lambda up: torch.from_numpy(np.asarray(focus(-_host(up)), np.int64)))
        res = crown_bounds(tn, lo, hi, C=-a, slopes=True, sides="upper", focus=pick,
                           focus_iters=FOCUS_ITERS)
        return -_host(res.hi), -_host(res.slopes)
    return Subject(net.name, net.out_size, net.forward, lambda x: torch_forward(layers, x), rows,
                   focusable=True)


def pair(n1: Network, n2: Network, layout: Layout = "all", device: str = "cpu") -> Subject:
    """The outputs of two networks fed the same input: ``[y1; y2; y1 - y2]`` (``all``, as the
    merged network with all outputs gives them), ``[y1; y2]`` (``stacked``, as a two-network
    query states them) or ``y1 - y2`` (``diff``)."""
    from nnbisim.bounds.diffbounds import DiffEngine, same_architecture

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
        """Row coefficients on y1, y2 and y1 - y2. A row on both y1 and y2 is rewritten as
        ``a1 (y1 - y2) + (a1 + a2) y2``, so that its difference part (all of it for a
        two-network query's ``Y_f - Y_g``) gets the differential bounds."""
        if layout == "diff":
            return None, None, a
        a1, a2 = a[:, :m].copy(), a[:, m:2 * m].copy()
        ad = a[:, 2 * m:].copy() if layout == "all" else np.zeros_like(a1)
        both = a1.any(axis=1) & a2.any(axis=1)
        ad[both] += a1[both]
        a2[both] += a1[both]
        a1[both] = 0.0
        return tuple(None if not p.any() else p for p in (a1, a2, ad))  # type: ignore

    if same_architecture(n1, n2):
        engine = DiffEngine(n1, n2, device)

        def rows(lo: np.ndarray, hi: np.ndarray, a: np.ndarray, focus: Focus | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:  # focus: not for pairs (yet)
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

        def rows(lo: np.ndarray, hi: np.ndarray, a: np.ndarray, focus: Focus | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
            return crown(lo, hi, full(a), focus)
    width = {"all": 3 * m, "stacked": 2 * m, "diff": m}[layout]
    # pairs keep the rule the equivalence table was measured with (bench/vnncomp_acasxu.py);
    # "smart" lost there on some instances (more bounds per split, each costlier for a pair)
    return Subject(f"{n1.name} vs {n2.name}", width, forward, tforward, rows,
                   ("hybrid", "worst"))


def through(n1: Network, n2: Network, device: str = "cpu") -> Subject:
    """N1's outputs, bounded only through N2: ``A y1 = A y2 + A (y1 - y2)``, so over a box
    ``lower(A y1) >= lower(A y2) + lower(A (y1 - y2))``, N2's own CROWN bound plus the certified
    bound of the difference there (:func:`pair` with layout ``diff``). A box whose margin this
    bounds below 0 is the first paper's argument on that piece: ``-lower(A (y1 - y2))`` is the
    piece's certified eps along the row, and N2 is proved not to reach the unsafe set enlarged
    by it. The branch and bound's splits refine the pieces, so each gets its own eps, which
    shrinks with it. Points are evaluated on N1, so a witness is a counterexample of N1."""
    from nnbisim.bounds.diffbounds import same_architecture

    s2, diff = single(n2, device), pair(n1, n2, "diff", device)
    l1 = torch_layers(n1)
    clock = {"n2": 0.0, "eps": 0.0}

    def rows(lo: np.ndarray, hi: np.ndarray, a: np.ndarray, focus: Focus | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        t0 = time.perf_counter()
        low2, slope2 = s2.rows(lo, hi, a)
        t1 = time.perf_counter()
        lowd, sloped = diff.rows(lo, hi, a, focus)
        clock["n2"] += t1 - t0
        clock["eps"] += time.perf_counter() - t1
        # the float64 sum of two lower bounds, rounded down: a lower bound of the exact sum
        return np.nextafter(low2 + lowd, -np.inf), slope2 + sloped
    return Subject(f"{n1.name} through {n2.name}", n1.out_size, n1.forward,
                   lambda x: torch_forward(l1, x), rows,
                   # CROWN on the merged network optimises a focus; the differential engine not
                   focusable=not same_architecture(n1, n2), clock=clock)


@dataclass(frozen=True)
class Decision:
    """The own engine's answer: ``violated`` with an input (to be replayed by the caller),
    ``holds`` with every box and polytope proved unreachable, or ``timeout``."""

    status: Status
    x: np.ndarray | None
    seconds: float
    problems: tuple[dict, ...] = field(default=())
    # per case, the boxes its branch and bound left open (None: not searched, the whole box)
    left: tuple[OpenBoxes | None, ...] = field(default=())


def _exact_sum(rows: np.ndarray) -> np.ndarray | None:
    """The sum of the rows ``(r, m)`` if float64 adds them without rounding, else None."""
    total = rows[0].copy()
    for row in rows[1:]:
        s = total + row
        back = s - total
        if np.any((total - (s - back)) + (row - back) != 0):  # TwoSum's error term
            return None
        total = s
    return total


COMBINE_ALL = 5  # polytopes with up to this many rows get the sums of all their row subsets,
COMBINE_ROWS = 8  # those with up to this many the sums of their row pairs (all: the full sum)


def _combinations(polys: Sequence[Polytope]) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                      np.ndarray]:
    """Extra rows to bound for the margins: for each polytope of r > 1 rows, the sum of all its
    rows and of every subset (r <= COMBINE_ALL) or pair (r <= COMBINE_ROWS) of them, as (rows,
    rhs, owner, count). Since
    ``min_j (b_j - A_j y) <= (1/|S|) sum_{j in S} (b_j - A_j y)``, a bound of a sum divided by
    its count bounds the margin too, and can be far below every single row's where the row that
    wins changes inside a box (CROWN bounds the sum directly, so its terms may cancel). Only
    sums float64 forms exactly are kept, so the bound stays sound."""
    from itertools import combinations

    rows, rhs, owner, count = [], [], [], []
    for k, p in enumerate(polys):
        r = len(p.rhs)
        if r < 2:
            continue
        sizes = range(2, r) if r <= COMBINE_ALL else [2] if r <= COMBINE_ROWS else []
        subsets = [tuple(range(r))] + [s for n in sizes for s in combinations(range(r), n)]
        for sub in subsets:
            mat = _exact_sum(p.mat[list(sub)])
            b = _exact_sum(p.rhs[list(sub)][:, None])
            if mat is None or b is None:
                continue
            rows.append(mat)
            rhs.append(b[0])
            owner.append(k)
            count.append(len(sub))
    m = polys[0].mat.shape[1]
    return (np.array(rows).reshape(-1, m), np.array(rhs, np.float64), np.array(owner, int),
            np.array(count, np.float64))


class _Margins:
    """The margins ``g_k(x) = min_j (b_kj - A_kj y)`` of every unsafe polytope ``k`` of one
    case, evaluated together (their rows stacked) and bounded together (each row, and sums of
    rows: see :func:`_combinations`)."""

    def __init__(self, subject: Subject, polys: Sequence[Polytope], combine: bool = True):
        self.subject = subject
        self.a = np.vstack([p.mat for p in polys])
        self.b = np.concatenate([p.rhs for p in polys])
        self.owner = np.concatenate([np.full(len(p.rhs), k) for k, p in enumerate(polys)])
        self.k = len(polys)
        self.at, self.bt = torch.tensor(self.a), torch.tensor(self.b)
        self.mask = torch.tensor(self.owner[None, :] == np.arange(self.k)[:, None])
        extra = _combinations(polys) if combine else (np.zeros((0, self.a.shape[1])),
                                                      np.zeros(0), np.zeros(0, int), np.zeros(0))
        self.bound_a = np.vstack([self.a, extra[0]])
        self.bound_b = np.concatenate([self.b, extra[1]])
        self.bound_owner = np.concatenate([self.owner, extra[2]])
        self.bound_count = np.concatenate([np.ones(len(self.b)), extra[3]])
        self.groups = [np.flatnonzero(self.bound_owner == k) for k in range(self.k)]

    def value(self, x: np.ndarray) -> np.ndarray:
        slack = self.b - self.subject.forward(x) @ self.a.T  # (B, rows)
        return np.stack([slack[:, self.owner == k].min(axis=1) for k in range(self.k)], 1)

    def symbolic(self, x: torch.Tensor) -> torch.Tensor:
        """(K, P, n) -> (K, P): margin k at the points of row k."""
        slack = self.bt - self.subject.torch_forward(x) @ self.at.T  # (K, P, rows)
        big = torch.where(self.mask[:, None, :], slack, torch.full_like(slack, torch.inf))
        return big.amin(-1)

    def polisher(self, box: Box, steps: int = 60) -> Callable[[np.ndarray], np.ndarray]:
        """``points (P, n) -> points (K * P, n)``: a climb on every margin from each point."""
        lo, hi = torch.tensor(box.lower), torch.tensor(box.upper)

        def polish(points: np.ndarray) -> np.ndarray:
            starts = torch.tensor(np.asarray(points, np.float64)).expand(self.k, -1, -1)
            return climb(self.symbolic, starts, lo, hi, steps).reshape(-1, box.dim).numpy()
        return polish

    def _gaps(self, low: np.ndarray) -> np.ndarray:
        """Upper bounds (B, R) of each bounded row's share of a margin, from lower bounds of
        its ``A_j y``: ``b_j - lower``, a sum of c rows divided by c, rounded outward."""
        gap = np.nextafter(self.bound_b[None] - low, np.inf)  # of b_j - A_j y, outward
        summed = self.bound_count > 1  # a sum of c rows bounds c times the margin
        gap[:, summed] = np.nextafter(gap[:, summed] / self.bound_count[summed], np.inf)
        return gap

    def _focus(self, low: np.ndarray) -> np.ndarray:
        """Per box and polytope, the row whose plain bound is best: the one to optimise."""
        gap = self._gaps(low)
        return np.stack([idx[np.argmin(gap[:, idx], axis=1)] for idx in self.groups], 1)

    def bound(self, lo: np.ndarray, hi: np.ndarray) -> Bounded:
        """Plain CROWN bounds of every margin (each row and sum of rows; the best per polytope)."""
        return self._bounded(lo, hi, None)

    def sharp(self, lo: np.ndarray, hi: np.ndarray) -> Bounded:
        """As :meth:`bound`, with each polytope's best row optimised further (alpha-CROWN's
        slopes on the same intermediate bounds; a pair's subject ignores it): costlier, for the
        boxes a split keeps open only."""
        return self._bounded(lo, hi, self._focus)

    def _bounded(self, lo: np.ndarray, hi: np.ndarray, focus: Focus | None) -> Bounded:
        low, slope = self.subject.rows(lo, hi, self.bound_a, focus)
        gap = self._gaps(low)
        ub = np.empty((len(lo), self.k))
        sl = np.empty((len(lo), self.k, lo.shape[1]))
        rows = np.arange(len(lo))
        for k, idx in enumerate(self.groups):
            j = idx[np.argmin(gap[:, idx], axis=1)]
            ub[:, k], sl[:, k] = gap[rows, j], -slope[rows, j]
        return Bounded(ub, None, sl)


def _falsify(m: _Margins, box: Box, rng: np.random.Generator, samples: int, restarts: int,
             steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Per unsafe polytope the best margin found and its input: samples of the box, then hill
    climbs from the best of them for each polytope. Every climb's end counts for every
    polytope: a climb towards one polytope can end deeper in another than that one's own
    climbs (seen on a float16 copy of ACAS Xu 2_1 over property 1's box: the best point for
    ``(y1 - y2)_0 >= t`` was the end of a climb aimed at another polytope)."""
    x = np.concatenate([box.center[None], box.sample(samples, rng)])
    g = m.value(x)  # (N, K)
    top = np.argsort(-g, axis=0)[:restarts].T  # (K, P)
    lo, hi = torch.tensor(box.lower), torch.tensor(box.upper)
    ends = climb(m.symbolic, torch.tensor(x[top]), lo, hi, steps).numpy()  # (K, P, n)
    cand = np.concatenate([x[top[:, 0]], ends.reshape(-1, box.dim)])
    return _best_of(m, cand)


def closest_approach(subject: Subject, box: Box, unsafe: OutputConstraint,
                     rng: np.random.Generator, samples: int = 2048, restarts: int = 8,
                     steps: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Per unsafe polytope, the largest margin ``min_j (b_j - A_j y)`` found over ``box`` and
    its input (samples, then hill climbs from the best): >= 0 is a candidate counterexample,
    otherwise minus it is how close the network was seen to come (an upper bound on the true
    distance)."""
    return _falsify(_Margins(subject, unsafe.disjuncts), box, rng, samples, restarts, steps)


def decide(subject: Subject, cases: Sequence[SpecCase], time_budget: float, *,
           seed: int = 0, progress: Callable[[str], None] | None = None,
           resume: Sequence[OpenBoxes | None] | None = None,
           combine: bool = True, split: str | None = None, choose: str | None = None,
           focus: bool | str = True, search: bool = True,
           samples: int | None = None) -> Decision:
    """Decide "does some input of a case's box reach its unsafe set" within ``time_budget``.

    Per case (a box and its unsafe polytopes): a witness search on all polytopes together, then
    one branch and bound over the box with every polytope's margin as an objective, deciding at
    0 (the budget left shared among the cases still open). ``violated`` as soon as a margin
    reaches 0 (in float64: the caller replays it in onnxruntime), ``holds`` when every box is
    proved unable to reach its unsafe set, ``timeout`` otherwise.

    ``resume`` (per case, or None): the open boxes an earlier decision on the same subject and
    unsafe polytopes left in that case's box (its :attr:`Decision.left`, perhaps cut to the box
    with :meth:`OpenBoxes.within`): the search goes on from them, and the case's witness search
    is skipped (the earlier one covered it). ``combine``: bound sums of a polytope's rows too
    (see :func:`_combinations`; False: each row alone, the old way). ``split``, ``choose``: the
    branch and bound's split rule (see :func:`.input_bab`; default: the subject's).
    ``focus``: in each half a split keeps open, per polytope the row with the best plain CROWN
    bound is optimised further (alpha-CROWN's slopes on the same intermediate bounds,
    ``FOCUS_ITERS`` steps; one network's subjects and :func:`through`); splits are chosen on
    plain CROWN except where it stalls (see ``tighten`` in :func:`.input_bab`).
    False: plain
    CROWN only. ``"lazy"``: plain CROWN with the stall rule, the kept halves optimised only
    once a split has stalled (``lazy`` of :func:`.input_bab`). ``search``: False
    skips the witness search of cases searched from scratch (the caller ran one on the same
    outputs; the box's centre stands in for its best point). ``samples``: random points per box
    that seed the witness search's climbs (default: 2,000,000 / input size, within 1,024 and
    200,000).
    One network's outputs are split on every input dimension, keeping the split that settles
    most (``bench/split_rules.py``: on the 13 ACAS Xu instances the older rule took longest on,
    151 s against 394 s, half the boxes).
    """
    split = split or subject.split_rule[0]
    choose = choose or subject.split_rule[1]
    t0 = time.perf_counter()
    deadline = t0 + time_budget
    say = progress or (lambda _m: None)
    rng = np.random.default_rng(seed)
    notes: list[dict] = []
    if samples is None:
        samples = max(1024, min(200_000, 2_000_000 // max(cases[0].box.dim, 1)))
    margins = [_Margins(subject, case.unsafe.disjuncts, combine) for case in cases]
    again = list(resume) if resume is not None else [None] * len(cases)
    starts = []
    for c, (case, m, opened) in enumerate(zip(cases, margins, again, strict=True)):
        if opened is not None:  # searched before: start from the open boxes' centres
            mid = (opened.lo + opened.hi) / 2 if len(opened) else case.box.lower[None]
            starts.append(_best_of(m, mid))
            continue
        if not search:
            starts.append(_best_of(m, case.box.center[None]))
            continue
        g, x = _falsify(m, case.box, rng, samples, 64, 100)
        starts.append((g, x))
        if g.max() >= 0:
            say(f"witness in box {c}: margin {g.max():.3g}")
            return Decision(Status.VIOLATED, x[int(np.argmax(g))], time.perf_counter() - t0,
                            ({"case": c, "margin": float(g.max()), "how": "witness"},),
                            tuple(again))
    left: list[OpenBoxes | None] = list(again)
    for c, (case, m, (g0, x0)) in enumerate(zip(cases, margins, starts, strict=True)):
        share = (deadline - time.perf_counter()) / (len(cases) - c)
        if again[c] is not None and not len(again[c]) and g0.max() < 0:
            notes.append({"case": c, "how": "bab", "reason": "exhausted", "boxes": 0,
                          "resumed": True, "open": 0})
            continue  # an earlier search proved all of it
        if share <= 0.05:
            notes.append({"case": c, "how": "bab", "reason": "budget",
                          "margin": float(g0.max())})
            continue
        res = input_bab(case.box.lower[None], case.box.upper[None], m.bound, m.value,
                        start_values=g0, start_x=x0, target=0.0, time_budget=share,
                        polish=m.polisher(case.box), resume=again[c],
                        scale=case.box.upper - case.box.lower, split=split, choose=choose,
                        tighten=m.sharp if focus and subject.focusable else None,
                        lazy=focus == "lazy")
        left[c] = res.left
        notes.append({"case": c, "how": "bab", "reason": res.reason, "boxes": res.boxes,
                      "seconds": round(res.seconds, 3), "upper": float(res.upper.max()),
                      "margin": float(res.value.max()), "resumed": again[c] is not None,
                      "open": len(res.left) if res.left is not None else None})
        say(f"box {c}: {res.reason} after {res.boxes} boxes ({res.seconds:.1f} s)")
        if res.reason == "found":
            return Decision(Status.VIOLATED, res.x[int(np.argmax(res.value))],
                            time.perf_counter() - t0, tuple(notes), tuple(left))
    proved = all(n.get("reason") == "exhausted" for n in notes) and len(notes) == len(cases)
    return Decision(Status.HOLDS if proved else Status.TIMEOUT, None,
                    time.perf_counter() - t0, tuple(notes), tuple(left))


def _best_of(m: _Margins, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per polytope, the best margin among ``points`` and where it is."""
    g = m.value(points)
    i = np.argmax(g, axis=0)
    return g[i, np.arange(g.shape[1])], points[i]


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
        from nnbisim.core.errors import UnsupportedModelError
        from nnbisim.verifiers.registry import check_files, read_cases, replay_checked

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
