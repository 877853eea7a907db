"""Branch and bound by input splitting: certify the maxima of K objectives over a union of boxes.

The objectives are ``f_k(x) = c_k @ (N1(x) - N2(x))`` (for eps: every output with both signs),
or the margins of unsafe polytopes (:mod:`nnbisim.search.decide`). One tree of boxes serves all
of them: each box carries a sound upper bound of every objective. Best-first: the open boxes
whose bounds exceed their goals the most are split in two (along the dimension that helps most,
found by bounding both halves of every dimension when the input is low-dimensional), both
halves are bounded in one batch, and every box whose bounds can no longer beat the best values
seen is closed. The largest bound among open and closed boxes (or the best value, if larger) is
a sound upper bound of each maximum at every moment, so the search can stop on a gap, a time
budget, a work limit or an interrupt.

Strong where the input has few dimensions (ACAS Xu's 5); for wide inputs split ReLUs instead
(:mod:`nnbisim.search.relu_bab`). The problem, options and results are in
:mod:`nnbisim.search.bab_types`, the search's state in :mod:`nnbisim.search.boxsearch`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from nnbisim.core import interrupt
from nnbisim.search.bab_types import BabOptions, BabProblem, BabResult, OpenBoxes
from nnbisim.search.boxsearch import BoxSearch
from nnbisim.search.stop import StopReason

Progress = Callable[[float, float, int], None]  # (best value, upper bound, boxes bounded)
FIRST_BATCH = 16  # boxes split in the first step when the batch is auto-sized


def _stop(s: BoxSearch, opts: BabOptions, elapsed: float) -> StopReason | None:
    """Why the search ends now, or None to go on."""
    if s.found():
        return StopReason.FOUND
    if not len(s.ub):
        return StopReason.EXHAUSTED
    if s.done():
        return StopReason.GAP
    if elapsed > opts.time_budget:
        return StopReason.BUDGET
    if opts.max_boxes is not None and s.bounded + _per_box(s, opts) > opts.max_boxes:
        return StopReason.MAX_BOXES  # the next split would pass the work limit
    if interrupt.requested():
        return StopReason.INTERRUPTED
    return None


def _resized(k: int, took: float, left: float, opts: BabOptions) -> int:
    """The next auto-sized batch: aim at ``step_seconds`` per step, a third of the time left at
    most."""
    # a third of what is left: a step costs more per box as the boxes shrink (tighter
    # sharpening), and a half overran a 3 s budget by 1.1 s (bench/results/budgets.md)
    aim = min(opts.step_seconds, max(left, 0.0) / 3 + 1e-3)
    return int(np.clip(k * aim / max(took, 1e-4), 4, opts.max_batch))


def _per_box(s: BoxSearch, opts: BabOptions) -> int:
    """The most bounds splitting one box takes: on the ``smart`` rule two per input dimension
    tried, else at most four (two candidate splits)."""
    n = s.lo.shape[1]
    if opts.split == "smart" and 1 < n <= opts.smart_max_inputs:
        return 2 * (n if opts.smart_top is None else min(n, opts.smart_top))
    return 4


def _work_batch(s: BoxSearch, opts: BabOptions) -> int:
    """With a work limit, the batch by work alone (the same steps on any machine): ``batch``,
    or the limit in about ``work_steps`` steps; a step never bounds more than the limit has
    left."""
    per_box = _per_box(s, opts)
    size = opts.batch or min(opts.max_batch, opts.max_boxes // (opts.work_steps * per_box))
    return int(max(1, min(size, (opts.max_boxes - s.bounded) // per_box)))


def _polish_due(s: BoxSearch, opts: BabOptions, last: tuple[float, int], start: float) -> bool:
    """Time for a polish: ``polish_every`` seconds since the last one (and as many left in the
    budget, which started at ``start``), or with a work limit ``polish_every_boxes`` boxes
    bounded (``last``: the clock and box count then)."""
    if opts.max_boxes is not None:
        return s.bounded - last[1] >= opts.polish_every_boxes
    return (time.perf_counter() - last[0] > opts.polish_every
            and time.perf_counter() - start < opts.time_budget - opts.polish_every)


def input_bab(problem: BabProblem, start_values: np.ndarray, start_x: np.ndarray,
              options: BabOptions = BabOptions(), *, resume: OpenBoxes | None = None,
              progress: Progress | None = None) -> BabResult:
    """Maximise every objective of ``problem`` (see :class:`BabProblem`, :class:`BabOptions`).

    ``start_values`` (K,) and ``start_x`` (K, n) are known values and their inputs (witnesses
    found before). ``resume``: the open boxes of an earlier search of the same objectives to
    the same floor (its :attr:`BabResult.left`, perhaps cut to a part of the set with
    :meth:`OpenBoxes.within`) are searched instead of the problem's boxes, which then only give
    the set's extent: what the earlier search proved stays proved. The result's ``left`` holds
    the boxes open at the stop.
    """
    t0 = time.perf_counter()
    lo = np.atleast_2d(np.asarray(problem.lower, np.float64))
    hi = np.atleast_2d(np.asarray(problem.upper, np.float64))
    scale = problem.scale
    if resume is not None and scale is None:
        scale = (hi - lo).max(axis=0)
    problem = BabProblem(lo, hi, problem.bound, problem.value, problem.tighten, problem.polish,
                         problem.target, scale)
    s = BoxSearch(problem, options, np.asarray(start_values, np.float64),
                  np.atleast_2d(np.asarray(start_x, np.float64)), resume)
    k, reason = options.batch or FIRST_BATCH, StopReason.BUDGET
    polished, rng = (t0, s.bounded), np.random.default_rng(0)
    with interrupt.deferred():  # Ctrl-C is answered between steps, where the state is whole
        while True:
            s.prune()
            if progress is not None:
                progress(float(s.best.max()), float(s.upper().max()), s.bounded)
            stop = _stop(s, options, time.perf_counter() - t0)
            if stop is not None:
                reason = stop
                break
            if problem.polish is not None and _polish_due(s, options, polished, t0):
                s.polish(problem.polish, rng)
                polished = (time.perf_counter(), s.bounded)
            if options.max_boxes is not None:
                k = _work_batch(s, options)
            step = time.perf_counter()
            s.split(min(k, len(s.ub)))
            if options.batch is None and options.max_boxes is None:
                now = time.perf_counter()
                k = _resized(k, now - step, options.time_budget - (now - t0), options)
    return BabResult(s.upper(), s.best.copy(), s.best_x.copy(), s.bounded,
                     time.perf_counter() - t0, reason, s.left())
