"""The route through N2 of assured compression (:mod:`nnbisim.tasks.assure`), two ways.

:class:`ThroughN2` (``refine="bab"``, the own engine): one branch and bound over each box whose
every piece is bounded only through N2 (:func:`~nnbisim.search.subjects.through`): N2's bound
plus the piece's certified bound of ``N1 - N2``, which is the first paper's argument on each
piece (its own eps, and N2 not reaching the unsafe set enlarged by it); splitting refines the
pieces, and eps shrinks with them. :class:`Halves` (``refine="halves"``, and every other
verifier): the argument as the paper runs it, box by box: certify the per-output interval of
``N1 - N2`` over the box, enlarge the unsafe set by it and decide the enlarged property on N2; a
counterexample of N2 is replayed on N1, and a box still open is split in two and both halves
retried. Boxes still open when the route's budget ends are left to N1 directly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial

import numpy as np

from nnbisim.bounds.bounded import BoundFn
from nnbisim.bounds.objectives import choose_engine, objective_bounds
from nnbisim.core.reports import EpsilonReport, PieceResult, Route
from nnbisim.core.verdict import Status
from nnbisim.search import parallel
from nnbisim.search.decide import DecideOptions, Focus
from nnbisim.search.stop import work_part
from nnbisim.search.subjects import through
from nnbisim.specs.assurance import enlarge
from nnbisim.specs.sets import Box, SpecCase
from nnbisim.tasks.assurance import Assurance, Leftover, Outcome
from nnbisim.tasks.enlarge import Sides, box_eps, eps_closed, objectives_of, used_interval
from nnbisim.tasks.options import AssureOptions
from nnbisim.tasks.outlook import Outlook, outlook

MIN_SHARE = 0.5  # seconds: a box the route would give less goes to N1 directly
MIN_BOXES = 10  # with a work limit: a box the route would give fewer goes to N1 directly
# Focus only once a split stalls: through N2, optimising every kept half took about twice as
# long on 6 of 7 ACAS Xu instances (1_1 properties 3, 6, 2_1 3, 3_3 9, 1_7 2, 5_5 1) and plain
# CROWN without the stall rule timed out on 1_1 property 5 (ad-hoc runs, one at a time, not a
# bench). The quick look searched N1 for witnesses already (search=False).
THROUGH = DecideOptions(search=False, focus=Focus.LAZY)


def eps_glance(ctx: Assurance, bound: BoundFn, box: Box, needed: Sides
               ) -> tuple[float, float, float]:
    """``(certified, witnessed, seconds)``: eps over the whole box along the sides the unsafe
    set uses, for the record of the refined route (which certifies each piece on its own):
    one pass of ``bound`` (:func:`~nnbisim.bounds.objectives.objective_bounds` of the pair, no
    branch and bound) and the largest of ``eps_probes`` random points and the centre."""
    t0 = time.perf_counter()
    idx = sorted(2 * j + (0 if sign > 0 else 1) for j, sign in needed)
    if not idx:
        return 0.0, 0.0, time.perf_counter() - t0
    ub = bound(box.lower[None], box.upper[None]).upper
    x = np.concatenate([box.center[None], box.sample(ctx.opts.eps_probes, ctx.rng)])
    d = ctx.n1.forward(x) - ctx.n2.forward(x)
    seen = np.empty((len(x), 2 * d.shape[1]))  # ordered as the bounds: +d_0, -d_0, +d_1, ...
    seen[:, 0::2], seen[:, 1::2] = d, -d
    return (float(max(ub[0, idx].max(), 0.0)), float(max(seen[:, idx].max(), 0.0)),
            time.perf_counter() - t0)


class ThroughN2:
    """One branch and bound per case whose pieces are proved through N2 (module doc); what it
    leaves open goes to N1 directly, which goes on from it (``ctx.left_by``)."""

    def __init__(self, ctx: Assurance) -> None:
        self.ctx = ctx
        self.via = through(ctx.n1, ctx.n2, ctx.opts.device)
        self.glance = objective_bounds(ctx.n1, ctx.n2, choose_engine(ctx.n1, ctx.n2),
                                       ctx.opts.device)  # once, for every box

    def run(self, budget: float, boxes: int | None = None) -> Outcome:
        """Each case gets the rest of ``budget`` (and of the work limit's ``boxes``) divided
        by the cases still to go."""
        ctx, deadline, left = self.ctx, time.perf_counter() + budget, []
        start = ctx.used
        for c, case in enumerate(ctx.cases):
            share = (deadline - time.perf_counter()) / (len(ctx.cases) - c)
            work = work_part(boxes, ctx.used - start, len(ctx.cases) - c)
            opened = ctx.open_part(c, case.box)
            if (share < MIN_SHARE or (work is not None and work < MIN_BOXES)
                    or (opened is not None and not len(opened))):
                left.append(Leftover(c, case.box, 0))  # the tail settles it
                continue
            out = self._case(c, case, (share, work), opened)
            if out is not None and out.verdict is not None:
                return out
            if out is not None:
                left += out.left
        return Outcome(left=tuple(left))

    def _case(self, c: int, case: SpecCase, share: tuple[float, int | None], opened
              ) -> Outcome | None:
        """One case's branch and bound through N2 (``share``: its seconds and boxes): None
        when it holds, else its outcome."""
        ctx, via = self.ctx, self.via
        eps, eps_w, eps_s = eps_glance(ctx, self.glance, case.box, objectives_of(case.unsafe))
        t_eps, tn = via.clock["eps"], time.perf_counter()
        d = parallel.decide(partial(through, ctx.n1, ctx.n2, ctx.opts.device), [case], share[0],
                            THROUGH, resume=[opened], max_boxes=share[1], subject=via,
                            executor=ctx.check.executor)
        ctx.boxes += d.boxes
        spent = time.perf_counter() - tn
        e_s = eps_s + via.clock["eps"] - t_eps  # certifying N1 - N2 on the pieces
        seconds = (e_s, spent - (via.clock["eps"] - t_eps), 0.0)  # N2's bounds, the search
        ctx.say(f"box {c}: through N2 {d.status.value} after {d.boxes} pieces ({spent:.1f} s)")
        if d.status is Status.HOLDS:
            ctx.record(c, case.box, 0, (Route.COMPRESSED, PieceResult.HOLDS), seconds, eps, eps_w)
            return None
        if d.status is Status.VIOLATED and ctx.violates(d.x, case.unsafe):
            ctx.record(c, case.box, 0, (Route.COMPRESSED, PieceResult.VIOLATED), seconds, eps,
                       eps_w)
            return Outcome(Status.VIOLATED, d.x, ("found by the branch and bound through N2, on "
                                                  "N1's outputs (replayed in onnxruntime)",))
        ctx.record(c, case.box, 0, (Route.OPEN, PieceResult.LEFT_TO_N1), seconds, eps, eps_w)
        kept = d.left[0] if d.left else None
        if kept is not None:
            ctx.left_by[c] = kept
        ctx.gave_up.append(f"box {c}: the route through N2 left "
                           f"{'all' if kept is None else len(kept)} pieces open after "
                           f"{spent:.1f} s; N1 directly goes on from them")
        return Outcome(left=(Leftover(c, case.box, 0, eps),))


def halves(box: Box, scale: np.ndarray) -> tuple[Box, Box]:
    """The box split in two along its relatively widest side."""
    k = int(np.argmax((box.upper - box.lower) / scale))
    mid = (box.lower[k] + box.upper[k]) / 2
    hi1, lo2 = box.upper.copy(), box.lower.copy()
    hi1[k], lo2[k] = mid, mid
    return Box(box.lower, hi1), Box(lo2, box.upper)


@dataclass
class _Attempt:
    """One box of the halves route as its eps is escalated: the last eps report and its value,
    the outlook, N2's last answer and what was spent."""

    eps: float = np.nan
    eps_seconds: float = 0.0
    n2_seconds: float = 0.0
    outlook: Outlook | None = None
    status: Status = Status.TIMEOUT
    x: np.ndarray | None = None
    real: bool = False  # N2's counterexample violates N1 too
    probed: bool = False  # a probe of N1 reached the unsafe set


@dataclass
class _Steps:
    """The escalation of one box's eps, in seconds or (``boxes``) in boxes of a work limit:
    the budget of the next eps bound, and what N2 gets after it."""

    eps: float
    opts: AssureOptions
    boxes: bool = False

    def next(self, room: float, closed: bool) -> tuple[float, bool, float]:
        """``(next eps budget, last round?, N2's budget now)`` with ``room`` left: three times
        the last eps budget within ``eps_share`` of the room; the last round when that is not
        1.5 times more or eps is closed, and then N2 gets all the room."""
        share = self.opts.eps_share
        nxt = min(3 * self.eps, share * room)
        last = nxt < 1.5 * self.eps or closed
        quick = self.opts.quick_n2_boxes if self.boxes else self.opts.quick_n2
        return nxt, last, room if last else min(quick, (1 - share) * room)

    def limits(self, budget: float, seconds_left: float) -> tuple[float, int | None]:
        """A call's ``(seconds, boxes)``: the budget itself in seconds; with a work limit its
        boxes, and the box's seconds left as a safety net."""
        if not self.boxes:
            return budget, None
        return max(seconds_left, 0.1), max(int(budget), 1)

    def describe(self) -> str:
        return f"{self.eps:.0f} {'boxes' if self.boxes else 's'} budget"


class Halves:
    """The paper's argument box by box: eps, the enlarged property on N2, a box still open
    split in two, to depth ``max_depth``. A box goes to N1 at once when eps cannot fit N1's
    margin (:func:`~nnbisim.tasks.outlook.outlook`)."""

    def __init__(self, ctx: Assurance) -> None:
        self.ctx = ctx
        cases = ctx.cases
        self.queue = [(c, case.box, 0) for c, case in enumerate(cases)]
        self.needed = [objectives_of(case.unsafe) for case in cases]
        self.scale = np.maximum(np.max([c.box.upper - c.box.lower for c in cases], axis=0),
                                1e-300)
        self.root: dict[int, float] = {}  # the certified reach over each case's whole box

    def run(self, budget: float, boxes: int | None = None) -> Outcome:
        """Each box in the queue gets the rest of ``budget`` (and of the work limit's
        ``boxes``) divided by the boxes queued."""
        ctx, deadline, left = self.ctx, time.perf_counter() + budget, []
        start = ctx.used
        while self.queue:
            c, box, depth = self.queue.pop(0)
            opened = ctx.open_part(c, box)
            if opened is not None and not len(opened):  # the quick look proved all of it
                ctx.record(c, box, depth, (Route.DIRECT, PieceResult.HOLDS))
                continue
            share = (deadline - time.perf_counter()) / (len(self.queue) + 1)
            work = work_part(boxes, ctx.used - start, len(self.queue) + 1)
            if (depth > ctx.opts.max_depth or share < MIN_SHARE
                    or (work is not None and work < MIN_BOXES)):
                left.append(Leftover(c, box, depth))
                continue
            a = self._attempt(c, box, depth, (share, work))
            out = self._settle(c, box, depth, a)
            if out is not None and out.verdict is not None:
                return out
            if out is not None:
                left += out.left
        return Outcome(left=tuple(left))

    def _settle(self, c: int, box: Box, depth: int, a: _Attempt) -> Outcome | None:
        """Record how the attempt on a box ended: a replayed violation (the outcome), a box
        left to N1 (the outcome's leftover), held, or split (its halves queued)."""
        ctx = self.ctx
        spent = (a.eps_seconds, a.n2_seconds, 0.0)
        if a.probed:
            ctx.record(c, box, depth, (Route.DIRECT, PieceResult.VIOLATED), spent, a.eps)
            return Outcome(Status.VIOLATED, a.outlook.x, ("a probe of N1 reached the unsafe set "
                                                          "(replayed in onnxruntime)",))
        if a.outlook.hopeless:
            ctx.record(c, box, depth, (Route.OPEN, PieceResult.LEFT_TO_N1), spent, a.eps)
            ctx.gave_up.append(f"box {c} depth {depth} left to N1: " + a.outlook.describe())
            return Outcome(left=(Leftover(c, box, depth, a.eps),))
        if a.status is Status.HOLDS:
            ctx.record(c, box, depth, (Route.COMPRESSED, PieceResult.HOLDS), spent, a.eps)
            return None
        if a.real:
            ctx.record(c, box, depth, (Route.COMPRESSED, PieceResult.VIOLATED), spent, a.eps)
            return Outcome(Status.VIOLATED, a.x, ("N2's counterexample violates N1 too "
                                                  "(replayed in onnxruntime)",))
        for half in halves(box, self.scale):  # the eps interval shrinks with the box
            self.queue.append((c, half, depth + 1))
        ctx.record(c, box, depth, (Route.OPEN, PieceResult.SPLIT), spent, a.eps)
        return None

    def _attempt(self, c: int, box: Box, depth: int, share: tuple[float, int | None]
                 ) -> _Attempt:
        """eps escalated: a quick bound first (often enough for N2 to prove the enlarged
        property), then budgets three times larger while N2 needs a tighter one, within the
        box's share (``eps_share`` of what is left for the bound, the rest for N2). The
        budgets are seconds, or with a work limit boxes (the box's seconds then only a safety
        net for each call)."""
        ctx, opts, needed = self.ctx, self.ctx.opts, self.needed[c]
        case = SpecCase(box, ctx.cases[c].unsafe)
        (seconds, work), start = share, ctx.used
        box_deadline = time.perf_counter() + seconds
        steps = (_Steps(min(opts.quick_eps, opts.eps_share * seconds), opts) if work is None
                 else _Steps(min(opts.quick_eps_boxes, opts.eps_share * work), opts, True))
        a = _Attempt()
        while True:
            te = time.perf_counter()
            eps_limits = steps.limits(steps.eps, box_deadline - te)
            rep = box_eps(ctx.n1_path, ctx.n2_path, case, needed, eps_limits[0], opts.device,
                          eps_limits[1])
            ctx.boxes += rep.boxes
            a.eps_seconds += time.perf_counter() - te
            lo, hi = used_interval(rep, needed)
            a.eps = float(max(np.max(hi), -np.min(lo), 0.0))  # over the sides that matter
            if a.outlook is None and self._look(c, case, rep, depth, a):
                return a
            tn = time.perf_counter()
            room = (max(box_deadline - tn, 0.1) if work is None
                    else max(work - (ctx.used - start), 0))
            nxt, last, n2 = steps.next(room, eps_closed(rep, needed, 0.05))
            if np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)):
                n2_s, n2_boxes = steps.limits(n2, box_deadline - tn)
                a.status, a.x = ctx.check(2, [SpecCase(box, enlarge(case.unsafe, lo, hi))],
                                          n2_s, max_boxes=n2_boxes)
            else:  # no finite bound in that time: nothing to ask N2 yet
                a.status, a.x = Status.TIMEOUT, None
            a.n2_seconds += time.perf_counter() - tn
            ctx.say(f"box {c} depth {depth}: eps {a.eps:.4g} ({steps.describe()}), "
                    f"N2 {a.status.value}")
            a.real = a.status is Status.VIOLATED and ctx.violates(a.x, case.unsafe)
            if a.status is Status.HOLDS or a.real or last:
                return a  # settled, or eps cannot get tighter in time (or at all)
            steps.eps = nxt

    def _look(self, c: int, case: SpecCase, rep: EpsilonReport, depth: int, a: _Attempt
              ) -> bool:
        """The outlook after the first eps bound: True when the attempt ends there (a probe of
        N1 reached the unsafe set, or the route is hopeless on this box)."""
        ctx = self.ctx
        a.outlook = outlook(ctx.s1, case, rep, self.needed[c], depth, self.root.get(c), ctx.rng,
                            ctx.opts)
        self.root.setdefault(c, a.outlook.reach)
        a.probed = a.outlook.margin <= 0 and ctx.violates(a.outlook.x, case.unsafe)
        if a.probed:
            return True
        if a.outlook.hopeless:
            ctx.say(f"box {c} depth {depth}: eps {a.eps:.4g}, N2 not asked: "
                    + a.outlook.describe())
            return True
        return False
