"""eps = max over X of |N1(x) - N2(x)|: witnessed, certified, and the exact gap closed.

For every output ``i`` and sign ``s`` the maximum of ``s * (N1 - N2)_i`` over the input set is
bracketed by a *witnessed* value (a real input, replayed with onnxruntime on the two original
files) and a *certified* bound (a proof by the own bound engine: differential bounds when the
two networks have the same layer sizes, CROWN on the merged network otherwise, refined by branch
and bound), then, with an exact verifier, narrowed by bisection.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from nnbisim.adapters.executor import Executor
from nnbisim.adapters.merge import merge_networks
from nnbisim.adapters.onnx_load import load_network
from nnbisim.bounds.bounded import Bounded
from nnbisim.bounds.objectives import choose_engine, objective_bounds, objective_values
from nnbisim.core import interrupt
from nnbisim.core.errors import InputError, ShapeMismatchError
from nnbisim.core.model import Network
from nnbisim.core.reports import EpsilonReport, OutputBounds
from nnbisim.search.bab_types import BabOptions, BabProblem
from nnbisim.search.bisection import Bracket, ExactQueries, bisect
from nnbisim.search.input_bab import input_bab
from nnbisim.search.parallel_max import maximise
from nnbisim.search.relu_bab import ReluBabOptions, relu_bab_max
from nnbisim.search.stop import gap_closed, work_part
from nnbisim.search.witness import Replay, find_witnesses, onnx_replay, polisher
from nnbisim.specs.sets import InputSet
from nnbisim.tasks.options import AIMS, NO_VERIFIER, OWN_VERIFIER, EpsilonOptions
from nnbisim.verifiers.registry import get_verifier

Progress = Callable[[str], None]
INPUT_SPLIT_MAX_DIM = 16  # inputs up to this size are split; wider ones split ReLUs
EXACT_SHARE = 0.5  # of the budget for the own engine when an exact verifier follows
WITNESS_SHARE = 0.3  # of the budget, at most, for the witness climbs (2-3 s on ACAS Xu)


@dataclass
class _Run:
    """One eps computation: the pair, the input set, the options, the replay on the files, the
    brackets being narrowed and the record of the searches."""

    n1: Network
    n2: Network
    inputs: InputSet
    opts: EpsilonOptions
    replay: Replay
    say: Progress
    brackets: list[Bracket] = field(default_factory=list)
    searches: list[dict] = field(default_factory=list)


def check_pair(n1: Network, n2: Network, inputs: InputSet, paths: tuple, opts: EpsilonOptions
               ) -> None:
    """Refuse options and networks that do not fit: sizes, the input set's dimension."""
    if opts.aim not in AIMS:
        raise InputError(f"unknown aim {opts.aim!r}; use eps or outputs")
    if opts.objectives is not None and opts.aim != "outputs":
        raise InputError("a subset of objectives needs aim='outputs'")
    if n1.in_size != n2.in_size or n1.out_size != n2.out_size:
        raise ShapeMismatchError(f"{paths[0]} is {n1.describe()} and {paths[1]} is "
                                 f"{n2.describe()}: inputs and outputs must have the same sizes")
    if inputs.dim != n1.in_size:
        raise ShapeMismatchError(f"the input set has {inputs.dim} values per point but the "
                                 f"networks take {n1.in_size}; give one bound per input")


def compute_epsilon(n1_path: str | Path, n2_path: str | Path, inputs: InputSet,
                    options: EpsilonOptions = EpsilonOptions(), *,
                    progress: Progress | None = None) -> EpsilonReport:
    """Bracket eps and every output's difference interval over ``inputs`` (see
    :class:`~nnbisim.tasks.options.EpsilonOptions`)."""
    t0 = time.perf_counter()
    n1, n2 = load_network(n1_path), load_network(n2_path)
    check_pair(n1, n2, inputs, (n1_path, n2_path), options)
    run = _Run(n1, n2, inputs, options, onnx_replay(n1_path, n2_path),
               progress or (lambda _msg: None))
    with interrupt.deferred():  # Ctrl-C: no further stage, the bounds reached so far
        return _stages(run, t0)


def _stages(run: _Run, t0: float) -> EpsilonReport:
    """Witnesses, the own engine's bounds, then the exact verifier's bisection; each stage
    starts only if no stop was asked for."""
    options, n1, n2 = run.opts, run.n1, run.n2
    run.say("witnesses: sampling and hill climbs, replayed in onnxruntime")
    wit = find_witnesses(n1, n2, run.inputs, run.replay, seed=options.seed,
                         deadline=t0 + WITNESS_SHARE * options.time_budget)
    run.brackets = [Bracket(w.index, w.sign, w.value, np.inf, w.x) for w in wit]
    engine, notes, queries = "none", [], []
    exact = options.verifier not in (NO_VERIFIER, OWN_VERIFIER)
    if options.verifier != NO_VERIFIER and not interrupt.requested():
        engine = choose_engine(n1, n2, options.engine)
        share = options.time_budget * (EXACT_SHARE if exact else 1.0)
        skip = [options.objectives is not None and (b.index, b.sign) not in options.objectives
                for b in run.brackets]
        if not all(skip):
            _certify(run, engine, share - (time.perf_counter() - t0), skip)
    if exact and not interrupt.requested():
        queries = _exact(run, t0 + options.time_budget)
    elif not exact:
        notes = (["no certified bound was asked for (--verifier none)"]
                 if options.verifier == NO_VERIFIER else [])
    if interrupt.requested():
        notes.append("interrupted (Ctrl-C): the bounds are those reached so far, sound")
    return _report(run, engine, queries, notes, time.perf_counter() - t0)


def _exact(run: _Run, deadline: float) -> list[dict]:
    """Bisection by the exact verifier on the brackets whose gap is still open."""
    from nnbisim.adapters.merged_onnx import exact_model
    from nnbisim.adapters.onnx_write import save_model

    opts = run.opts
    tool = get_verifier(opts.verifier)
    queries: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="nnbisim-") as tmp:
        work = Path(opts.workdir) if opts.workdir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        merged = save_model(exact_model(merge_networks(run.n1, run.n2)), work / "merged.onnx",
                            force=True)
        asks = ExactQueries(merged, run.inputs, run.n1.out_size, 0, tool, run.replay, work,
                            rel_gap=opts.rel_gap, query_timeout=opts.query_timeout)
        for br in sorted(run.brackets, key=lambda b: -b.certified):
            floor = max(b.witnessed for b in run.brackets) if opts.aim == "eps" else -np.inf
            if gap_closed(max(br.witnessed, floor), br.certified, opts.rel_gap, 1e-9):
                continue
            run.say(f"{tool.name}: bisecting output {br.index} sign {br.sign:+d} in "
                    f"[{max(br.witnessed, floor):.6g}, {br.certified:.6g}]")
            bisect(br, asks, deadline, floor=floor)
            queries += [q.to_json() for q in br.queries]
    return queries


def _certify(run: _Run, engine: str, budget: float, skip: list[bool]) -> None:
    """Branch and bound on all outputs and signs at once; fills ``certified`` (and better
    witnesses, counted only once replayed on the original files). ``skip``: brackets left
    uncertified (their start value is +inf, so they never drive a split)."""
    if run.inputs.dim > INPUT_SPLIT_MAX_DIM:
        _certify_relu(run, budget, skip)
        return
    run.say(f"bounds ({engine}, input splits): {len(run.brackets)} objectives, "
            f"{budget:.1f} s")
    keep = np.array([k for k in range(len(run.brackets)) if not skip[k]])  # 2i (+), 2i+1 (-)
    sub = [run.brackets[k] for k in keep]
    recipe = partial(eps_problem, run.n1, run.n2, engine, run.opts.device, keep, run.inputs)
    opts = BabOptions(rel_gap=run.opts.rel_gap, time_budget=budget, joint=run.opts.aim == "eps",
                      split=run.opts.split[0], choose=run.opts.split[1],
                      max_boxes=work_part(run.opts.max_boxes, _boxes_used(run), 1))
    start = (np.array([b.witnessed for b in sub]), np.array([b.witness_x for b in sub]))
    if (run.opts.workers > 1 or run.opts.ray is not None) and opts.max_boxes is None:
        res = maximise(recipe, *start, opts, progress=_every_second(run.say),
                       executor=Executor(workers=run.opts.workers, ray=run.opts.ray))
    else:
        res = input_bab(recipe(), *start, opts, progress=_every_second(run.say))
    run.searches.append({"method": "input-split", "aim": run.opts.aim,
                         "reason": res.reason.value, "boxes": res.boxes,
                         "seconds": round(res.seconds, 3), "upper": float(res.upper.max())})
    _take_witnesses(run, sub, res.value, res.x)
    for k, br in enumerate(sub):
        br.certified = min(br.certified, float(res.upper[k]))


def eps_problem(n1: Network, n2: Network, engine: str, device: str, keep: np.ndarray,
                inputs: InputSet) -> BabProblem:
    """The bracket's branch and bound problem: the objectives ``keep`` (2i: +(N1 - N2)_i,
    2i + 1: its negative) over the boxes of ``inputs`` (a module-level recipe, so workers can
    build it: :mod:`nnbisim.search.parallel_max`)."""
    full_bound = objective_bounds(n1, n2, engine, device)
    full_value = objective_values(n1, n2)

    def bound(lo: np.ndarray, hi: np.ndarray) -> Bounded:
        b = full_bound(lo, hi)
        pick = (lambda a: None if a is None else a[:, keep])  # noqa: E731
        return Bounded(b.upper[:, keep], pick(b.vertex), pick(b.slope))

    boxes = inputs.boxes
    return BabProblem(np.array([b.lower for b in boxes]), np.array([b.upper for b in boxes]),
                      bound, lambda x: full_value(x)[:, keep], polish=polisher(n1, n2, inputs))


def _boxes_used(run: _Run) -> int:
    """Boxes (or ReLU sub-problems) bounded by the searches so far."""
    return sum(s.get("boxes", s.get("nodes", 0)) for s in run.searches)


def _every_second(say: Progress) -> Callable[[float, float, int], None]:
    last = [0.0]

    def progress(best: float, top: float, boxes: int) -> None:
        now = time.perf_counter()
        if now - last[0] >= 1.0:
            last[0] = now
            say(f"  eps in [{best:.6g}, {top:.6g}], {boxes} boxes bounded")
    return progress


def _take_witnesses(run: _Run, sub: list[Bracket], values: np.ndarray, xs: np.ndarray) -> None:
    """The search's better points, replayed on the files; kept where the replay is better."""
    better = [k for k, br in enumerate(sub) if values[k] > br.witnessed]
    if not better:
        return
    d = run.replay(xs[better])
    for row, k in enumerate(better):
        br = sub[k]
        replayed = float(br.sign * d[row, br.index])
        if replayed > br.witnessed:
            br.witnessed, br.witness_x = replayed, xs[k]


def _certify_relu(run: _Run, budget: float, skip: list[bool]) -> None:
    """Wide inputs: per output and sign, one pass of the best engine, then ReLU splitting on
    the merged network, box by box (the budget shared among the objectives)."""
    deadline = time.perf_counter() + budget
    boxes = run.inputs.boxes
    lower, upper = np.array([b.lower for b in boxes]), np.array([b.upper for b in boxes])
    merged = merge_networks(run.n1, run.n2).network
    # one pass of the best engine first: differential bounds can beat split merged bounds
    ub = objective_bounds(run.n1, run.n2, choose_engine(run.n1, run.n2, "auto"))(lower, upper)
    for k, br in enumerate(run.brackets):
        if skip[k]:
            continue
        share = max((deadline - time.perf_counter()) / (len(run.brackets) - k), 0.05)
        run.say(f"bounds (ReLU splits): output {br.index} sign {br.sign:+d}, {share:.1f} s")
        single = float(ub.upper[:, 2 * br.index + (0 if br.sign > 0 else 1)].max())
        record = {"index": br.index, "sign": br.sign, "method": "relu-split"}
        if gap_closed(br.witnessed, single, run.opts.rel_gap, 1e-9):
            record.update(upper=single, reason="gap", nodes=len(lower))
        else:
            c = np.zeros(run.n1.out_size)
            c[br.index] = br.sign
            nodes = work_part(run.opts.max_boxes, _boxes_used(run), len(run.brackets) - k)
            opts = ReluBabOptions(rel_gap=run.opts.rel_gap, time_budget=share / len(lower),
                                  **({} if nodes is None else
                                     {"max_nodes": max(nodes // len(lower), 1)}))
            results = [relu_bab_max(merged, lower[b], upper[b], c, opts,
                                    witness_value=br.witnessed) for b in range(len(lower))]
            record.update(upper=min(max(float(r.upper) for r in results), single),
                          reason=",".join(sorted({r.reason.value for r in results})),
                          nodes=sum(r.nodes for r in results))
        run.searches.append(record)
        br.certified = min(br.certified, record["upper"])


def _report(run: _Run, engine: str, queries: list[dict], notes: list[str], seconds: float
            ) -> EpsilonReport:
    by = {(b.index, b.sign): b for b in run.brackets}
    outputs = tuple(OutputBounds(i, -by[i, -1].witnessed, -by[i, -1].certified,
                                 by[i, 1].witnessed, by[i, 1].certified)
                    for i in range(run.n1.out_size))
    best = max(run.brackets, key=lambda b: b.witnessed)
    return EpsilonReport(
        witnessed=best.witnessed,
        certified=max(b.certified for b in run.brackets),
        outputs=outputs,
        witness_x=np.asarray(best.witness_x, np.float64),
        witness_output=(best.index, best.sign),
        engine=engine, verifier=run.opts.verifier, queries=tuple(queries),
        searches=tuple(run.searches), seconds=seconds, notes=tuple(notes + _work_notes(run)),
        max_boxes=run.opts.max_boxes, boxes=_boxes_used(run))


def _work_notes(run: _Run) -> list[str]:
    """A note where the time budget, not the work limit, stopped a search."""
    if run.opts.max_boxes is None or not any("budget" in str(s.get("reason", ""))
                                             for s in run.searches):
        return []
    return [f"the time budget ended a search before the work limit of {run.opts.max_boxes} "
            "boxes: this bound depends on the machine's speed (a larger --time-budget makes "
            "it reproducible)"]
