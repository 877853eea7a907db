"""The routes of assured compression on N1 itself: the quick look first, N1 directly last."""

from __future__ import annotations

import time
from collections.abc import Sequence

from nnbisim.core.reports import PieceResult, Route
from nnbisim.core.verdict import Status
from nnbisim.search.decide import DecideOptions, decide
from nnbisim.search.stop import work_part
from nnbisim.specs.sets import SpecCase
from nnbisim.tasks.assurance import Assurance, Leftover, Outcome

MIN_DIRECT = 0.1  # seconds: a box left to N1 with less is reported unknown


class QuickLook:
    """A witness search on N1 (and, with ``quick_direct`` > 0, a short branch and bound): a
    replayed counterexample or a proof ends the question at once."""

    def __init__(self, ctx: Assurance) -> None:
        self.ctx = ctx

    def run(self, budget: float, boxes: int | None = None) -> Outcome:
        ctx, tq = self.ctx, time.perf_counter()
        opts = DecideOptions(samples=ctx.opts.witness_samples)
        d = ctx.quick = decide(ctx.s1, ctx.cases, budget, opts, max_boxes=boxes)
        ctx.boxes += d.boxes
        if d.status is Status.HOLDS:
            for c, case in enumerate(ctx.cases):
                ctx.record(c, case.box, 0, (Route.DIRECT, PieceResult.HOLDS),
                           (0.0, 0.0, time.perf_counter() - tq))
            return Outcome(Status.HOLDS, notes=("proved on N1 directly by the quick branch and "
                                                "bound",))
        if d.status is Status.VIOLATED and d.x is not None:
            for c, case in enumerate(ctx.cases):
                if case.box.contains(d.x, 0.0) and ctx.violates(d.x, case.unsafe):
                    ctx.record(c, case.box, 0, (Route.DIRECT, PieceResult.VIOLATED),
                               (0.0, 0.0, time.perf_counter() - tq))
                    return Outcome(Status.VIOLATED, d.x, ("the quick look at N1 found it "
                                                          "(replayed in onnxruntime)",))
        return Outcome()


class Direct:
    """N1 directly for the boxes the route through N2 left, going on from the open pieces of
    the searches before (what they proved stays proved). A case none of whose pieces was
    settled goes back whole; its pieces' records stay."""

    def __init__(self, ctx: Assurance, left: Sequence[Leftover]) -> None:
        self.ctx = ctx
        settled = ({p.case for p in ctx.pieces if p.route is Route.COMPRESSED}
                   | set(ctx.left_by))
        whole = {d.case for d in left if d.case not in settled}
        self.todo = [d for d in left if d.case not in whole]
        self.todo += [Leftover(c, ctx.cases[c].box, 0) for c in sorted(whole)]

    def run(self, budget: float, boxes: int | None = None) -> Outcome:
        """Each box left gets the rest of ``budget`` (and of the work limit's ``boxes``)
        divided by the boxes still to go."""
        ctx, deadline, verdict = self.ctx, time.perf_counter() + budget, Status.HOLDS
        start = ctx.used
        for k, d in enumerate(self.todo):
            share = (deadline - time.perf_counter()) / (len(self.todo) - k)
            work = work_part(boxes, ctx.used - start, len(self.todo) - k)
            spent = (d.eps_seconds, d.n2_seconds)
            if share < MIN_DIRECT or (work is not None and work < 1):
                ctx.record(d.case, d.box, d.depth, (Route.OPEN, PieceResult.UNKNOWN),
                           (*spent, 0.0), d.eps)
                verdict = Status.TIMEOUT
                continue
            tn = time.perf_counter()
            unsafe = ctx.cases[d.case].unsafe
            again = (ctx.left_by[d.case] if d.case in ctx.left_by
                     else ctx.open_part(d.case, d.box))
            status, x = ctx.check(1, [SpecCase(d.box, unsafe)], share, [again], work)
            seconds = (*spent, time.perf_counter() - tn)
            if status is Status.VIOLATED and ctx.violates(x, unsafe):
                ctx.record(d.case, d.box, d.depth, (Route.DIRECT, PieceResult.VIOLATED),
                           seconds, d.eps)
                return Outcome(Status.VIOLATED, x, (f"found on N1 directly by "
                                                    f"{ctx.opts.verifier} (replayed in "
                                                    "onnxruntime)", *ctx.gave_up))
            result = PieceResult.HOLDS if status is Status.HOLDS else PieceResult.UNKNOWN
            ctx.record(d.case, d.box, d.depth, (Route.DIRECT, result), seconds, d.eps)
            if result is not PieceResult.HOLDS:
                verdict = Status.TIMEOUT
        return Outcome(verdict, notes=tuple(ctx.gave_up))
