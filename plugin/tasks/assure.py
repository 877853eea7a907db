"""Assured compression: decide a property of N1 through a compressed N2 and the bound on N1 - N2.

After a witness search on N1 (a real counterexample ends the question), each input box of the
property goes through N2. By default (``refine="bab"``, the own engine) that is one branch and
bound over the box whose every piece is bounded only through N2
(:func:`.through`): N2's bound plus the piece's certified bound of ``N1 - N2``,
which is the first paper's argument on each piece (its own eps, and N2 not reaching the unsafe
set enlarged by it); splitting refines the pieces, and eps shrinks with them. With
``refine="halves"`` (and any other verifier) it is the argument as the paper runs it: certify
the per-output interval of ``N1 - N2`` over the box, enlarge the unsafe set by it
(:mod:`nnbisim.specs.assurance`) and decide the enlarged property on N2; a counterexample of N2
is replayed on N1, and a box still open is split in two and both halves retried. Boxes still
open when the route's share of the budget ends are decided on N1 directly with the rest,
going on from the open pieces of the search before. The report says which route settled which
box.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnbisim.core.model import Network
from nnbisim.core.verdict import Status
from nnbisim.specs.sets import Box, InputSet, OutputConstraint, SpecCase
from nnbisim.verifiers.registry import output_tolerance

log = logging.getLogger(__name__)

MAX_DEPTH = 8  # a box is split at most this many times before N1 is asked directly
QUICK_DIRECT = 0.0  # share of the budget for a first, quick look at N1 itself (0: a witness search)
QUICK_EPS = 3.0  # seconds for the first, quick eps bound of a box
QUICK_N2 = 10.0  # seconds for N2 on the enlarged property with that quick bound
COMPRESSED_SHARE = 0.5  # share of the budget left after the quick look for the route via N2
REFINES = ("bab", "halves")  # how the route through N2 refines a box (see assure)
EPS_PROBES = 1024  # random points of a box where the refined route's eps record is witnessed
# random points per box seeding the quick look's witness search on N1 (decide's default for
# ACAS Xu is 200,000); the branch and bound after it evaluates its points on N1 and finds what
# the search misses (bench/results/assure_acasxu.md at 7a791fc: of the 47 violated instances,
# 43 by the search, 4 by the branch and bound through N2, 15 s for all 47)
WITNESS_SAMPLES = 10_000
PROBES = 2048  # random points of a box at which N1's margin to the unsafe set is measured


@dataclass(frozen=True)
class Piece:
    """How one box of the input set was settled."""

    case: int
    lower: np.ndarray
    upper: np.ndarray
    depth: int
    route: str  # "compressed", "direct", "open"
    result: str  # "holds", "violated", "unknown"
    eps: float  # certified max |N1 - N2| over the box (nan when not computed)
    eps_seconds: float
    n2_seconds: float
    direct_seconds: float
    eps_witnessed: float = np.nan  # the largest |N1 - N2| seen at a point of the box (float64)

    def to_json(self) -> dict:
        return {"case": self.case, "lower": self.lower.tolist(), "upper": self.upper.tolist(),
                "depth": self.depth, "route": self.route, "result": self.result,
                "eps": self.eps, "eps_witnessed": self.eps_witnessed,
                "eps_seconds": round(self.eps_seconds, 3),
                "n2_seconds": round(self.n2_seconds, 3),
                "direct_seconds": round(self.direct_seconds, 3)}


@dataclass(frozen=True)
class AssureReport:
    """The verdict for N1 with its proof or counterexample and the per-box record."""

    verdict: str  # "holds", "violated", "unknown", "timeout"
    counterexample: np.ndarray | None
    pieces: tuple[Piece, ...]
    seconds: float
    n2: str
    notes: tuple[str, ...] = field(default=())

    @property
    def route(self) -> str:
        """``compressed`` if every box was settled through N2, ``direct`` if every one on N1,
        ``mixed`` otherwise."""
        routes = {p.route for p in self.pieces if p.route != "open"}
        return routes.pop() if len(routes) == 1 else ("mixed" if routes else "none")

    def to_json(self) -> dict:
        return {"verdict": self.verdict, "route": self.route,
                "counterexample": None if self.counterexample is None
                else self.counterexample.tolist(),
                "seconds": round(self.seconds, 3), "n2": self.n2,
                "eps_seconds": round(sum(p.eps_seconds for p in self.pieces), 3),
                "n2_seconds": round(sum(p.n2_seconds for p in self.pieces), 3),
                "direct_seconds": round(sum(p.direct_seconds for p in self.pieces), 3),
                "eps_max": max((p.eps for p in self.pieces if np.isfinite(p.eps)),
                               default=None),
                "eps_witnessed_max": max((p.eps_witnessed for p in self.pieces
                                          if np.isfinite(p.eps_witnessed)), default=None),
                "pieces": [p.to_json() for p in self.pieces], "notes": list(self.notes)}


def _violates(net: Network, x: np.ndarray, unsafe: OutputConstraint, runner) -> bool:
    """Does ``x`` reach ``unsafe`` on the ONNX file (onnxruntime)?"""
    y = runner.run(np.asarray(x, np.float64))
    return unsafe.satisfied_by(y, output_tolerance(y))


def _halves(box: Box, scale: np.ndarray) -> tuple[Box, Box]:
    k = int(np.argmax((box.upper - box.lower) / scale))
    mid = (box.lower[k] + box.upper[k]) / 2
    hi1, lo2 = box.upper.copy(), box.lower.copy()
    hi1[k], lo2[k] = mid, mid
    return Box(box.lower, hi1), Box(lo2, box.upper)


def objectives_of(unsafe) -> set[tuple[int, int]]:
    """The ``(output, sign)`` sides of ``N1 - N2`` the enlarged unsafe set depends on: for
    ``C y1 <= d``, the minimum of output ``j`` where some ``C_j > 0``, its maximum where some
    ``C_j < 0`` (:func:`~nnbisim.specs.assurance.enlarge`)."""
    out: set[tuple[int, int]] = set()
    for p in unsafe.disjuncts:
        for j in np.flatnonzero(np.any(p.mat > 0, axis=0)):
            out.add((int(j), -1))
        for j in np.flatnonzero(np.any(p.mat < 0, axis=0)):
            out.add((int(j), 1))
    return out


def _eps_glance(n1: Network, n2: Network, bound, box: Box, needed: set[tuple[int, int]],
                rng: np.random.Generator) -> tuple[float, float, float]:
    """``(certified, witnessed, seconds)``: eps over the whole box along the sides the unsafe
    set uses, for the record of the refined route (which certifies each piece on its own):
    one pass of ``bound`` (:func:`.objective_bounds` of the pair, no branch and
    bound) and the largest of ``EPS_PROBES`` random points and the centre."""
    t0 = time.perf_counter()
    idx = sorted(2 * j + (0 if sign > 0 else 1) for j, sign in needed)
    if not idx:
        return 0.0, 0.0, time.perf_counter() - t0
    ub = bound(box.lower[None], box.upper[None]).upper
    x = np.concatenate([box.center[None], box.sample(EPS_PROBES, rng)])
    d = n1.forward(x) - n2.forward(x)
    seen = np.empty((len(x), 2 * d.shape[1]))  # ordered as the bounds: +d_0, -d_0, +d_1, ...
    seen[:, 0::2], seen[:, 1::2] = d, -d
    return (float(max(ub[0, idx].max(), 0.0)), float(max(seen[:, idx].max(), 0.0)),
            time.perf_counter() - t0)


def _used_interval(rep, needed: set[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Per-output ``[lo, hi]`` of ``N1 - N2`` for :func:`enlarge`: the certified sides that are
    needed; an unneeded side is set to the other one (or 0), which leaves every term of the
    enlargement unchanged (its coefficients have the sign that selects the needed side)."""
    lo = np.array([o.min_certified for o in rep.outputs])
    hi = np.array([o.max_certified for o in rep.outputs])
    for j in range(len(lo)):
        has_lo, has_hi = (j, -1) in needed, (j, 1) in needed
        if not has_lo:
            lo[j] = hi[j] if has_hi else 0.0
        if not has_hi:
            hi[j] = lo[j]
    return lo, hi


def _closed(rep, needed: set[tuple[int, int]], gap: float) -> bool:
    """Whether every needed side of ``N1 - N2`` is certified within ``gap`` of its witness."""
    for o in rep.outputs:
        if (o.index, 1) in needed and o.max_certified > o.max_witnessed + gap * abs(
                o.max_witnessed) + 1e-12:
            return False
        if (o.index, -1) in needed and o.min_certified < o.min_witnessed - gap * abs(
                o.min_witnessed) - 1e-12:
            return False
    return True


@dataclass(frozen=True)
class Outlook:
    """Whether the route through N2 can still settle a box, from N1's margin to the unsafe set
    and what the enlargement costs there. ``margin``: the smallest over probe points of N1's
    slack ``max_i (C_i y1 - d_i)`` (polytope by polytope; <= 0 means a probe reached the unsafe
    set). ``spread``: the witnessed spread of ``N1 - N2`` over the box along the most lenient
    row, ``|C_i| . (max - min)`` (no tighter bound removes it; only smaller boxes do).
    ``reach``: the same with the certified sides the enlargement uses. The route needs both
    below the margin; splitting shrinks the spread by about ``shrink`` at most, the reach by
    ``rate`` per split (halving at depth 0, then the rate observed since the whole box)."""

    margin: float
    spread: float
    reach: float
    shrink: float
    rate: float
    left: int  # splits left before MAX_DEPTH
    x: np.ndarray | None  # the probe with the smallest slack

    @property
    def hopeless(self) -> bool:
        return (self.spread > self.shrink * self.margin
                or self.reach * self.rate ** self.left > self.margin)

    def describe(self) -> str:
        return (f"N1's margin {self.margin:.3g} against the spread of N1 - N2 {self.spread:.3g} "
                f"(witnessed; splitting shrinks it ~{self.shrink:.0f}x at most) and its "
                f"certified reach {self.reach:.3g} (x{self.rate:.2f} per split, {self.left} "
                f"splits left)")


def outlook(n1, box: Box, unsafe: OutputConstraint, rep, needed: set, depth: int,
            root_reach: float | None, rng: np.random.Generator) -> Outlook:
    """N1's margin over ``box`` and what eps must cover there (:class:`Outlook`); ``n1`` is
    N1 as a :func:`~nnbisim.search.decide.single` subject.

    A heuristic, used only to send a box to N1 directly sooner (sound either way): the spread
    shrinks about linearly with the box, and each of the ``MAX_DEPTH - depth`` splits left
    halves one side, so every side is halved at most ``ceil(left / dims)`` times. The margin
    is the closest approach found by a search (an upper bound on the true one), which errs
    towards keeping the route."""
    from nnbisim.search.decide import closest_approach

    g, xs = closest_approach(n1, box, unsafe, rng, samples=PROBES)
    wmax = np.array([o.max_witnessed for o in rep.outputs])
    wmin = np.array([o.min_witnessed for o in rep.outputs])
    cmax = np.array([o.max_certified if (o.index, 1) in needed else o.max_witnessed
                     for o in rep.outputs])
    cmin = np.array([o.min_certified if (o.index, -1) in needed else o.min_witnessed
                     for o in rep.outputs])
    w = wmax - wmin
    w = np.where(np.isfinite(w), np.maximum(w, 0.0), 0.0)  # no witness: no evidence
    cw = np.maximum(cmax - cmin, 0.0)  # inf when not certified: the route cannot settle it
    cw = np.where(np.isnan(cw), np.inf, cw)
    left = max(MAX_DEPTH - depth, 0)
    dims = max(int(np.sum(box.upper > box.lower)), 1)
    shrink = float(2.0 ** np.ceil(left / dims))
    k = int(np.argmax(g))  # the polytope N1 comes closest to
    a = np.abs(unsafe.disjuncts[k].mat)
    spread, reach = float(np.min(a @ w)), float(np.min(a @ cw))
    if root_reach is None or depth == 0:
        rate = 0.5
    elif np.isfinite(reach) and np.isfinite(root_reach) and root_reach > 0:
        rate = min(float((reach / root_reach) ** (1.0 / depth)), 1.0)
    else:
        rate = 1.0
    return Outlook(float(-g[k]), spread, reach, shrink, rate, left, xs[k])


def assure(n1_path: str | Path, cases: list[SpecCase], n2_path: str | Path, *,
           time_budget: float = 116.0, eps_share: float = 0.4, device: str = "cpu",
           quick_direct: float = QUICK_DIRECT, compressed_share: float = COMPRESSED_SHARE,
           verifier: str = "bounds", resume: bool = True, refine: str = "bab",
           progress: Callable[[str], None] | None = None) -> AssureReport:
    """Decide the property ``cases`` (input boxes with unsafe sets) of N1 through N2.

    The budget goes, in order, to a quick look at N1 itself (``quick_direct`` of it: a witness
    search always runs; 0 leaves the proofs to the other routes), the route through N2
    (``compressed_share`` of what is left; 1 gives it everything but a last look at N1) and N1
    directly for the boxes still open. Within the route through N2, ``eps_share`` of each box's
    share goes to eps, the rest to N2. ``verifier`` decides the enlarged properties on N2 and
    the boxes left to N1: ``bounds`` (the own engine) or any plug-in (``marabou``,
    ``vnncomp:DIR``, ...), asked one box and unsafe polytope per query; the quick look and
    eps always use the own engine. ``resume``: what the quick look's branch and bound proved
    stays proved: boxes of the route inside it are settled at once (the refined route goes on
    from its open boxes), and the own engine's last look at N1 goes on from the boxes left
    open (False: each starts over, the old way).

    ``refine``: how the route through N2 works on a box.
    ``bab`` (the own engine only; other verifiers use ``halves``): one branch and bound over
    the box whose every piece is bounded through N2 (:func:`.through`: N2's bound
    plus the piece's own certified bound of ``N1 - N2``), so each piece gets its own eps and
    N2's verdict on the unsafe set enlarged by it; boxes it leaves open go to N1 directly,
    which goes on from them (what the route proved stays proved). ``halves``: eps over the
    box by its own branch and bound, the enlarged property decided on N2, and a box still open
    split in two and both halves retried the same way (up to ``MAX_DEPTH`` splits;
    ``eps_share`` of each box's time for eps)."""
    import tempfile

    from nnbisim.core.errors import InputError

    if refine not in REFINES:
        raise InputError(f"unknown refinement {refine!r}; use one of {', '.join(REFINES)}")
    with tempfile.TemporaryDirectory(prefix="nnbisim-assure-") as work:
        return _assure(Path(n1_path), cases, Path(n2_path), time_budget, eps_share, device,
                       quick_direct, compressed_share, verifier, resume, progress,
                       Path(work), refine)


def _checker(verifier: str, subjects: dict, paths: dict, work: Path
             ) -> Callable[[int, list[SpecCase], float], tuple[Status, np.ndarray | None]]:
    """``check(which, cases, seconds, resume=None) -> (status, counterexample)`` on N1 (1) or
    N2 (2). ``resume``: per case the open boxes of an earlier own branch and bound on the same
    network and unsafe set, to go on from (the own engine only; other verifiers start over)."""
    from nnbisim.search.decide import decide

    if verifier == "bounds":
        def own(which: int, cases: list[SpecCase], seconds: float, resume=None):
            d = decide(subjects[which], cases, seconds, resume=resume)
            return d.status, d.x
        return own
    from nnbisim.verifiers.registry import get_verifier
    from nnbisim.vnncomp.run import per_disjunct

    tool = get_verifier(verifier)
    count = iter(range(1 << 30))

    def external(which: int, cases: list[SpecCase], seconds: float, resume=None):
        sub = work / f"q{next(count)}"
        sub.mkdir()
        return per_disjunct(tool, paths[which], cases, seconds, sub)
    return external


def _open_part(d, c: int, box: Box):
    """The part of ``box`` (inside case ``c``'s box) that decision ``d`` left open, or None
    where it kept no record (not searched)."""
    opened = d.left[c] if c < len(d.left) else None
    return None if opened is None else opened.within(box.lower, box.upper)


def _assure(n1_path: Path, cases: list[SpecCase], n2_path: Path, time_budget: float,
            eps_share: float, device: str, quick_direct: float, compressed_share: float,
            verifier: str, resume: bool, progress: Callable[[str], None] | None, work: Path,
            refine: str = "bab") -> AssureReport:
    from nnbisim.adapters.onnx_load import load_network
    from nnbisim.adapters.replay import OnnxRunner
    from nnbisim.search.decide import decide, single
    from nnbisim.specs.assurance import enlarge
    from nnbisim.tasks.epsilon import compute_epsilon

    t0 = time.perf_counter()
    deadline = t0 + time_budget
    say = progress or (lambda _m: None)
    n1, n2 = load_network(n1_path), load_network(n2_path)
    s1, s2 = single(n1, device), single(n2, device)
    check = _checker(verifier, {1: s1, 2: s2}, {1: n1_path, 2: n2_path}, work)
    r1 = OnnxRunner(n1_path)
    # first a quick look at N1 itself (a witness search and a short branch and bound): a real
    # counterexample, or a proof found in that time, ends the question at once
    tq = time.perf_counter()
    d0 = decide(s1, list(cases), quick_direct * time_budget, samples=WITNESS_SAMPLES)
    if d0.status is Status.HOLDS:
        pieces_0 = tuple(Piece(c, case.box.lower, case.box.upper, 0, "direct", "holds", np.nan,
                               0.0, 0.0, time.perf_counter() - tq)
                         for c, case in enumerate(cases))
        return AssureReport("holds", None, pieces_0, time.perf_counter() - t0, str(n2_path),
                            ("proved on N1 directly by the quick branch and bound",))
    if d0.status is Status.VIOLATED and d0.x is not None:
        for c, case in enumerate(cases):
            if case.box.contains(d0.x, 0.0) and _violates(n1, d0.x, case.unsafe, r1):
                spent = time.perf_counter() - tq
                piece = Piece(c, case.box.lower, case.box.upper, 0, "direct", "violated",
                              np.nan, 0.0, 0.0, spent)
                return AssureReport("violated", np.asarray(d0.x), (piece,),
                                    time.perf_counter() - t0, str(n2_path),
                                    ("the quick look at N1 found it (replayed in "
                                     "onnxruntime)",))
    # the route through N2 ends at its own deadline; what is open then goes to N1 directly
    c_deadline = time.perf_counter() + compressed_share * (deadline - time.perf_counter())
    refined = refine == "bab" and verifier == "bounds"  # else by halves, the queue's boxes
    queue = [] if refined else [(c, case.box, 0) for c, case in enumerate(cases)]
    needed = [objectives_of(case.unsafe) for case in cases]
    scale = np.maximum(np.max([c.box.upper - c.box.lower for c in cases], axis=0), 1e-300)
    pieces: list[Piece] = []
    direct: list[tuple[int, Box, int, float, float, float]] = []
    gave_up: list[str] = []
    root: dict[int, float] = {}  # the certified reach over each case's whole box
    rng = np.random.default_rng(0)
    left_by: dict[int, object] = {}  # per case, the boxes the refined route left open
    if refined:
        from nnbisim.search.decide import through
        from nnbisim.tasks.epsilon import choose_engine, objective_bounds

        via = through(n1, n2, device)
        glance = objective_bounds(n1, n2, choose_engine(n1, n2), device)  # once, for every box
        for c, case in enumerate(cases):
            share = (c_deadline - time.perf_counter()) / (len(cases) - c)
            opened = _open_part(d0, c, case.box) if resume else None
            if share < 0.5 or (opened is not None and not len(opened)):
                direct.append((c, case.box, 0, np.nan, 0.0, 0.0))  # the tail settles it
                continue
            eps, eps_w, eps_s = _eps_glance(n1, n2, glance, case.box, needed[c], rng)
            t_eps, tn = via.clock["eps"], time.perf_counter()
            # the quick look searched N1 for witnesses already (search=False): go on from its
            # open boxes, or from the whole box. Focus only once a split stalls: through N2,
            # optimising every kept half took about twice as long on 6 of 7 ACAS Xu instances
            # (1_1 properties 3, 6, 2_1 3, 3_3 9, 1_7 2, 5_5 1) and plain CROWN without the
            # stall rule timed out on 1_1 property 5 (ad-hoc runs, one at a time, not a bench)
            d = decide(via, [case], share, resume=[opened], search=False, focus="lazy")
            spent = time.perf_counter() - tn
            e_s = eps_s + via.clock["eps"] - t_eps  # certifying N1 - N2 on the pieces
            n_s = spent - (via.clock["eps"] - t_eps)  # N2's bounds and the search
            boxes = sum(p.get("boxes", 0) for p in d.problems)
            say(f"box {c}: through N2 {d.status.value} after {boxes} pieces ({spent:.1f} s)")
            if d.status is Status.HOLDS:
                pieces.append(Piece(c, case.box.lower, case.box.upper, 0, "compressed",
                                    "holds", eps, e_s, n_s, 0.0, eps_w))
                continue
            if d.status is Status.VIOLATED and d.x is not None and _violates(
                    n1, d.x, case.unsafe, r1):
                pieces.append(Piece(c, case.box.lower, case.box.upper, 0, "compressed",
                                    "violated", eps, e_s, n_s, 0.0, eps_w))
                return AssureReport("violated", np.asarray(d.x), tuple(pieces),
                                    time.perf_counter() - t0, str(n2_path),
                                    ("found by the branch and bound through N2, on N1's "
                                     "outputs (replayed in onnxruntime)",))
            pieces.append(Piece(c, case.box.lower, case.box.upper, 0, "open", "left to N1",
                                eps, e_s, n_s, 0.0, eps_w))
            kept = d.left[0] if d.left else None
            if kept is not None:
                left_by[c] = kept
            direct.append((c, case.box, 0, eps, 0.0, 0.0))
            gave_up.append(f"box {c}: the route through N2 left "
                           f"{'all' if kept is None else len(kept)} pieces open after "
                           f"{spent:.1f} s; N1 directly goes on from them")
    while queue:
        c, box, depth = queue.pop(0)
        unsafe = cases[c].unsafe
        opened = _open_part(d0, c, box) if resume else None
        if opened is not None and not len(opened):  # the quick look proved all of this box
            pieces.append(Piece(c, box.lower, box.upper, depth, "direct", "holds", np.nan,
                                0.0, 0.0, 0.0))
            continue
        left = c_deadline - time.perf_counter()
        share = left / (len(queue) + 1)
        if depth > MAX_DEPTH or share < 0.5:
            direct.append((c, box, depth, np.nan, 0.0, 0.0))
            continue
        # eps is escalated: a quick bound first (often enough for N2 to prove the enlarged
        # property), then budgets three times longer while N2 needs a tighter one, within the
        # box's share (eps_share of what is left for the bound, the rest for N2)
        box_deadline = time.perf_counter() + share
        budget = min(QUICK_EPS, eps_share * share)
        eps_s = n2_s = 0.0
        ol, status, x, real, probed = None, Status.TIMEOUT, None, False, False
        while True:
            te = time.perf_counter()
            rep = compute_epsilon(n1_path, n2_path, InputSet.of(box), verifier="bounds",
                                  aim="outputs", rel_gap=0.05, time_budget=budget,
                                  device=device, objectives=needed[c])
            eps_s += time.perf_counter() - te
            lo, hi = _used_interval(rep, needed[c])
            eps = float(max(np.max(hi), -np.min(lo), 0.0))  # over the sides that matter
            if ol is None:  # is the route still worth its time here?
                ol = outlook(s1, box, unsafe, rep, needed[c], depth, root.get(c), rng)
                root.setdefault(c, ol.reach)
                probed = ol.margin <= 0 and _violates(n1, ol.x, unsafe, r1)
                if probed:
                    break
                if ol.hopeless:
                    say(f"box {c} depth {depth}: eps {eps:.4g}, N2 not asked: "
                        + ol.describe())
                    break
            tn = time.perf_counter()
            room = max(box_deadline - tn, 0.1)
            nxt = min(3 * budget, eps_share * room)
            last = nxt < 1.5 * budget or _closed(rep, needed[c], 0.05)
            n2_budget = room if last else min(QUICK_N2, (1 - eps_share) * room)
            if np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)):
                status, x = check(2, [SpecCase(box, enlarge(unsafe, lo, hi))], n2_budget)
            else:  # no finite bound in that time: nothing to ask N2 yet
                status, x = Status.TIMEOUT, None
            n2_s += time.perf_counter() - tn
            say(f"box {c} depth {depth}: eps {eps:.4g} ({budget:.0f} s budget), "
                f"N2 {status.value}")
            real = (status is Status.VIOLATED and x is not None
                    and _violates(n1, x, unsafe, r1))
            if status is Status.HOLDS or real or last:
                break  # settled, or eps cannot get tighter in time (or at all)
            budget = nxt
        if probed:
            pieces.append(Piece(c, box.lower, box.upper, depth, "direct", "violated",
                                eps, eps_s, n2_s, 0.0))
            return AssureReport("violated", np.asarray(ol.x), tuple(pieces),
                                time.perf_counter() - t0, str(n2_path),
                                ("a probe of N1 reached the unsafe set (replayed in "
                                 "onnxruntime)",))
        if ol.hopeless:
            pieces.append(Piece(c, box.lower, box.upper, depth, "open", "left to N1", eps,
                                eps_s, n2_s, 0.0))
            direct.append((c, box, depth, eps, 0.0, 0.0))
            gave_up.append(f"box {c} depth {depth} left to N1: " + ol.describe())
            continue
        if status is Status.HOLDS:
            pieces.append(Piece(c, box.lower, box.upper, depth, "compressed", "holds",
                                eps, eps_s, n2_s, 0.0))
            continue
        if real:
            pieces.append(Piece(c, box.lower, box.upper, depth, "compressed", "violated",
                                eps, eps_s, n2_s, 0.0))
            return AssureReport("violated", np.asarray(x), tuple(pieces),
                                time.perf_counter() - t0, str(n2_path),
                                ("N2's counterexample violates N1 too (replayed in onnxruntime)",))
        for half in _halves(box, scale):  # the eps interval shrinks with the box
            queue.append((c, half, depth + 1))
        pieces.append(Piece(c, box.lower, box.upper, depth, "open", "split", eps,
                            eps_s, n2_s, 0.0))
    # a case none of whose pieces was settled goes to N1 whole (its pieces' records stay)
    settled = {p.case for p in pieces if p.route == "compressed"} | set(left_by)
    whole = {c for c, *_ in direct if c not in settled}
    todo = [d for d in direct if d[0] not in whole]
    todo += [(c, cases[c].box, 0, np.nan, 0.0, 0.0) for c in sorted(whole)]
    verdict = "holds"
    for k, (c, box, depth, eps, eps_s, n2_s) in enumerate(todo):
        left = deadline - time.perf_counter()
        share = left / (len(todo) - k)
        tn = time.perf_counter()
        if share < 0.1:
            pieces.append(Piece(c, box.lower, box.upper, depth, "open", "unknown", eps, eps_s,
                                n2_s, 0.0))
            verdict = "timeout"
            continue
        # the quick look's branch and bound goes on where it stopped (what it proved stays)
        again = left_by[c] if c in left_by else _open_part(d0, c, box) if resume else None
        status, x = check(1, [SpecCase(box, cases[c].unsafe)], share, resume=[again])
        spent = time.perf_counter() - tn
        if status is Status.VIOLATED and x is not None and _violates(n1, x, cases[c].unsafe,
                                                                      r1):
            pieces.append(Piece(c, box.lower, box.upper, depth, "direct", "violated", eps,
                                eps_s, n2_s, spent))
            return AssureReport("violated", np.asarray(x), tuple(pieces),
                                time.perf_counter() - t0, str(n2_path),
                                (f"found on N1 directly by {verifier} (replayed in "
                                 "onnxruntime)", *gave_up))
        result = "holds" if status is Status.HOLDS else "unknown"
        pieces.append(Piece(c, box.lower, box.upper, depth, "direct", result, eps, eps_s,
                            n2_s, spent))
        if result != "holds":
            verdict = "timeout"
    return AssureReport(verdict, None, tuple(pieces), time.perf_counter() - t0, str(n2_path),
                        tuple(gave_up))


@dataclass(frozen=True)
class EnlargedCase:
    """One box of a property of N1 with the unsafe set N2 must avoid there, and the interval
    of ``N1 - N2`` it was enlarged by: certified on the ``needed`` ``(output, sign)`` sides, the
    others filled as :func:`_used_interval` does (they do not enter the enlargement)."""

    case: SpecCase
    lower: np.ndarray
    upper: np.ndarray
    needed: frozenset[tuple[int, int]]
    seconds: float

    def side(self, j: int, sign: int) -> float | None:
        """The certified bound of output ``j``'s minimum (-1) or maximum (+1), if used."""
        if (j, sign) not in self.needed:
            return None
        return float(self.lower[j] if sign < 0 else self.upper[j])


def enlarged_cases(n1_path: str | Path, n2_path: str | Path, cases: list[SpecCase], *,
                   time_budget: float = 60.0, device: str = "cpu",
                   progress: Callable[[str], None] | None = None) -> list[EnlargedCase]:
    """Per box of ``cases``: certify ``N1 - N2`` over it (only the sides its unsafe set uses,
    the budget shared evenly among the boxes) and enlarge the unsafe set by it, so that N2
    never reaching the enlarged sets proves N1 never reaches the original ones."""
    from nnbisim.specs.assurance import enlarge
    from nnbisim.tasks.epsilon import compute_epsilon

    say = progress or (lambda _m: None)
    out = []
    deadline = time.perf_counter() + time_budget
    for k, case in enumerate(cases):
        t0 = time.perf_counter()
        needed = objectives_of(case.unsafe)
        budget = max((deadline - t0) / (len(cases) - k), 0.5)
        rep = compute_epsilon(n1_path, n2_path, InputSet.of(case.box), verifier="bounds",
                              aim="outputs", rel_gap=0.05, time_budget=budget, device=device,
                              objectives=needed)
        lo, hi = _used_interval(rep, needed)
        out.append(EnlargedCase(SpecCase(case.box, enlarge(case.unsafe, lo, hi)), lo, hi,
                                frozenset(needed), time.perf_counter() - t0))
        say(f"box {k}: N1 - N2 certified in {time.perf_counter() - t0:.1f} s")
    return out
