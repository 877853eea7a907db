"""Is ``|(N1 - N2)_i| <= E`` for these outputs everywhere in X? The question NeuroDiff and
VNN-COMP's equivalence benchmarks ask, answered directly: it stops as soon as it is answered
instead of narrowing eps itself.

The unsafe set is ``s (N1 - N2)_i >= E`` for every asked output ``i`` and sign ``s`` (one
polytope each); the pair's outputs are decided on the original networks
(:func:`~nnbisim.search.subjects.pair`, differential bounds where the layer sizes agree, CROWN on
the merged network otherwise) by the same witness search and branch and bound as two-network
VNN-COMP queries (:func:`~nnbisim.search.decide.decide`). ``holds``: every such point is proved
unreachable, so ``|(N1 - N2)_i| < E`` everywhere (strictly). ``violated``: an input where
onnxruntime, on the two files, gives ``|(N1 - N2)_i| > E``. Otherwise ``unknown`` (the time
budget or the work limit ran out, or the engine's point did not replay above E in float32).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from nnbisim.adapters.executor import Executor
from nnbisim.adapters.onnx_load import load_network
from nnbisim.adapters.replay import replay_difference
from nnbisim.core.errors import InputError
from nnbisim.core.verdict import Status
from nnbisim.search import parallel
from nnbisim.search.decide import DecideOptions, decide
from nnbisim.search.subjects import pair
from nnbisim.specs.sets import InputSet, OutputConstraint, Polytope, SpecCase
from nnbisim.tasks.epsilon import check_pair
from nnbisim.tasks.options import EpsilonOptions

Progress = Callable[[str], None]
ENGINES = ("auto", "differential", "zonotope")  # the engines a decision can use


@dataclass(frozen=True)
class EpsDecision:
    """The answer to "is ``|(N1 - N2)_i| <= eps`` for ``outputs`` on the input set?", with the
    replayed witness of a violation (``witness_value = s (N1 - N2)_i`` by onnxruntime)."""

    status: Status
    eps: float
    outputs: tuple[int, ...]
    seconds: float
    boxes: int
    max_boxes: int | None = None
    witness_x: np.ndarray | None = None
    witness_output: tuple[int, int] | None = None  # (index, sign)
    witness_value: float | None = None
    notes: tuple[str, ...] = field(default=())

    def to_json(self) -> dict:
        witness = None
        if self.witness_x is not None and self.witness_output is not None:
            witness = {"x": [float(v) for v in self.witness_x], "index": self.witness_output[0],
                       "sign": self.witness_output[1], "value": self.witness_value}
        return {"verdict": self.status.value, "eps": self.eps, "outputs": list(self.outputs),
                "witness": witness, "work": {"max_boxes": self.max_boxes, "boxes": self.boxes},
                "seconds": self.seconds, "notes": list(self.notes)}

    def table(self) -> str:
        asked = ", ".join(str(i) for i in self.outputs)
        lines = [f"|N1 - N2|_i <= {self.eps:g} for outputs {asked}: {self.status.value}"]
        if self.status is Status.HOLDS:
            lines.append("  certified: no input of the set reaches it")
        if self.witness_output is not None and self.witness_value is not None:
            i, s = self.witness_output
            lines.append(f"  witness: {'+' if s > 0 else '-'}(N1 - N2)_{i} = "
                         f"{self.witness_value:.6g} (onnxruntime, the two files)")
        lines.append(f"  {self.boxes} boxes bounded, {self.seconds:.1f} s")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)


def _unsafe(outputs: tuple[int, ...], m: int, eps: float) -> OutputConstraint:
    """``s (y1 - y2)_i >= eps`` as polytopes over the pair's difference outputs."""
    polys = []
    for i in outputs:
        for s in (1.0, -1.0):
            row = np.zeros(m)
            row[i] = -s
            polys.append(Polytope(row[None], [-eps]))
    return OutputConstraint(tuple(polys))


def _outputs(outputs: tuple[int, ...] | None, m: int) -> tuple[int, ...]:
    if outputs is None:
        return tuple(range(m))
    bad = [i for i in outputs if not 0 <= i < m]
    if bad or not outputs or len(set(outputs)) != len(outputs):
        raise InputError(f"--outputs {','.join(map(str, outputs))}: give distinct output "
                         f"indices from 0 to {m - 1}")
    return tuple(outputs)


def decide_epsilon(n1_path: str | Path, n2_path: str | Path, inputs: InputSet, eps: float,
                   outputs: tuple[int, ...] | None = None,
                   options: EpsilonOptions = EpsilonOptions(), *,
                   progress: Progress | None = None) -> EpsDecision:
    """Decide ``|(N1 - N2)_i| <= eps`` for ``outputs`` (default: all) on ``inputs``, within
    ``options.time_budget`` seconds and ``options.max_boxes`` boxes bounded, with
    ``options.split``'s rule and ``options.engine`` (one of :data:`ENGINES`)."""
    t0 = time.perf_counter()
    if not (np.isfinite(eps) and eps >= 0):
        raise InputError(f"--eps {eps}: give a number >= 0")
    if options.engine not in ENGINES:
        raise InputError(f"--engine {options.engine}: a decision (--eps) uses "
                         f"{', '.join(ENGINES)}")
    n1, n2 = load_network(n1_path), load_network(n2_path)
    check_pair(n1, n2, inputs, (n1_path, n2_path), options)
    asked = _outputs(outputs, n1.out_size)
    method = "zonotope" if options.engine == "zonotope" else "backsub"
    recipe = partial(pair, n1, n2, "diff", options.device, method=method)
    unsafe = _unsafe(asked, n1.out_size, eps)
    cases = [SpecCase(box, unsafe) for box in inputs.boxes]
    split, choose = options.split
    opts = DecideOptions(seed=options.seed, split=split, choose=choose)
    budget = max(options.time_budget - (time.perf_counter() - t0), 0.0)
    if options.workers > 1 or options.ray is not None:
        d = parallel.decide(recipe, cases, budget, opts, max_boxes=options.max_boxes,
                            executor=Executor(workers=options.workers, ray=options.ray))
    else:
        d = decide(recipe(), cases, budget, opts, progress=progress,
                   max_boxes=options.max_boxes)
    done = {"eps": eps, "outputs": asked, "boxes": d.boxes, "max_boxes": options.max_boxes}
    if d.status is Status.VIOLATED and d.x is not None:
        return _replayed(n1_path, n2_path, d.x, done, t0)
    status = Status.HOLDS if d.status is Status.HOLDS else Status.UNKNOWN
    return EpsDecision(status, seconds=time.perf_counter() - t0, **done)


def _replayed(n1_path: str | Path, n2_path: str | Path, x: np.ndarray, done: dict,
              t0: float) -> EpsDecision:
    """The engine's point, replayed on the two files: ``violated`` where some asked output's
    difference exceeds eps there, else ``unknown`` with a note."""
    y1, y2 = replay_difference(n1_path, n2_path, np.asarray(x, np.float64)[None])
    d = (y1 - y2)[0].astype(np.float64)
    asked = done["outputs"]
    values = [(abs(float(d[i])), i, 1 if d[i] >= 0 else -1) for i in asked]
    value, i, s = max(values)
    if value > done["eps"]:
        return EpsDecision(Status.VIOLATED, seconds=time.perf_counter() - t0, witness_x=x,
                           witness_output=(i, s), witness_value=value, **done)
    note = (f"the engine's point gives |N1 - N2|_{i} = {value:.6g} <= {done['eps']:g} in "
            "onnxruntime: not a violation of the files")
    return EpsDecision(Status.UNKNOWN, seconds=time.perf_counter() - t0, notes=(note,),
                       witness_x=x, witness_output=(i, s), witness_value=value, **done)
