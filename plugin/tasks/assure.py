"""Assured compression: decide a property of N1 through a compressed N2 and the bound on N1 - N2.

The budget goes to three routes in turn (each a small object whose ``run(budget)`` returns an
:class:`Outcome`): a quick look at N1 itself (:class:`QuickLook`: a witness search, and a short
branch and bound if asked for); the route through N2 (:mod:`nnbisim.tasks.assure_n2`: by
default one branch and bound whose every piece is bounded through N2 and its own certified eps,
the first paper's argument on each piece; or the paper's argument box by box, split in halves);
and N1 directly for the boxes still open (:class:`Direct`), going on from the open pieces of the
searches before. A counterexample found anywhere is replayed on N1 in onnxruntime before it
counts. The report says which route settled which box.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from nnbisim.adapters.executor import Executor
from nnbisim.adapters.onnx_load import load_network
from nnbisim.adapters.replay import OnnxRunner
from nnbisim.core.errors import InputError
from nnbisim.core.reports import AssureReport
from nnbisim.search.subjects import single
from nnbisim.specs.sets import SpecCase
from nnbisim.tasks.assurance import Assurance, Checker
from nnbisim.tasks.assure_n2 import Halves, ThroughN2
from nnbisim.tasks.assure_routes import Direct, QuickLook
from nnbisim.tasks.options import REFINES, AssureOptions


def assure(n1_path: str | Path, cases: Sequence[SpecCase], n2_path: str | Path,
           options: AssureOptions = AssureOptions(), *,
           progress: Callable[[str], None] | None = None) -> AssureReport:
    """Decide the property ``cases`` (input boxes with unsafe sets) of N1 through N2 (see
    :class:`~nnbisim.tasks.options.AssureOptions` for how the budget is spent)."""
    if options.refine not in REFINES:
        raise InputError(f"unknown refinement {options.refine!r}; use one of "
                         f"{', '.join(REFINES)}")
    with tempfile.TemporaryDirectory(prefix="nnbisim-assure-") as work:
        ctx = _context(Path(n1_path), list(cases), Path(n2_path), options, Path(work))
        ctx.say = progress or ctx.say
        out = QuickLook(ctx).run(options.quick_direct * options.time_budget,
                                 ctx.work(options.quick_direct))
        if out.verdict is not None:
            return ctx.report(out)
        deadline = ctx.t0 + options.time_budget
        route = ThroughN2(ctx) if ctx.refined else Halves(ctx)
        out = route.run(options.compressed_share * (deadline - time.perf_counter()),
                        ctx.work(options.compressed_share))
        if out.verdict is not None:
            return ctx.report(out)
        return ctx.report(Direct(ctx, out.left).run(deadline - time.perf_counter(),
                                                    ctx.work(1.0)))


def executor_of(options: AssureOptions) -> Executor | None:
    """Where one instance's branch and bounds run: None (this process) for one worker."""
    if options.workers <= 1 and options.ray is None:
        return None
    return Executor(workers=options.workers, ray=options.ray)


def _context(n1_path: Path, cases: list[SpecCase], n2_path: Path, options: AssureOptions,
             work: Path) -> Assurance:
    t0 = time.perf_counter()
    n1, n2 = load_network(n1_path), load_network(n2_path)
    s1, s2 = single(n1, options.device), single(n2, options.device)
    recipes = {1: partial(single, n1, options.device), 2: partial(single, n2, options.device)}
    check = Checker(options.verifier, {1: s1, 2: s2}, {1: n1_path, 2: n2_path}, work, recipes,
                    executor_of(options))
    return Assurance(n1_path, n2_path, cases, options, n1, n2, s1, check,
                     OnnxRunner(n1_path), lambda _m: None, t0)
