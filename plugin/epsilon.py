"""eps = max over X of |N1(x) - N2(x)|: witnessed, certified, and the exact gap closed.

For every output ``i`` and sign ``s`` the maximum of ``s * (N1 - N2)_i`` over the input set is
bracketed by a *witnessed* value (a real input, replayed with onnxruntime on the two original
files) and a *certified* bound (a proof by the own bound engine: differential bounds when the
two networks have the same layer sizes, CROWN on the merged network otherwise, refined by branch
and bound), then, with an exact verifier, narrowed by bisection.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnbisim.adapters.merge import merge_networks
from nnbisim.adapters.onnx_load import load_network
from nnbisim.adapters.onnx_write import network_to_model, save_model
from nnbisim.bab import BoundFn, gap_closed, input_bab_max
from nnbisim.bisection import Bracket, bisect
from nnbisim.errors import InputError, ShapeMismatchError
from nnbisim.model import Network
from nnbisim.specs.sets import InputSet
from nnbisim.witness import find_witnesses, onnx_replay

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
INPUT_SPLIT_MAX_DIM = 16  # inputs up to this size are split; wider ones split ReLUs


@dataclass(frozen=True)
class OutputBounds:
    """``min`` and ``max`` of ``(N1 - N2)_index`` over X, each as (witnessed, certified)."""

    index: int
    min_witnessed: float
    min_certified: float
    max_witnessed: float
    max_certified: float

    def to_json(self) -> dict:
        return {"index": self.index,
                "min": {"witnessed": self.min_witnessed, "certified": self.min_certified},
                "max": {"witnessed": self.max_witnessed, "certified": self.max_certified}}


@dataclass(frozen=True)
class EpsilonReport:
    """The eps report: per output intervals, eps as [witnessed, certified], witness, queries."""

    witnessed: float
    certified: float
    outputs: tuple[OutputBounds, ...]
    witness_x: np.ndarray
    witness_output: tuple[int, int]  # (index, sign) whose witness attains eps.witnessed
    engine: str
    verifier: str
    queries: tuple[dict, ...]
    searches: tuple[dict, ...]
    seconds: float
    notes: tuple[str, ...] = field(default=())

    def to_json(self) -> dict:
        return {
            "eps": {"witnessed": self.witnessed, "certified": self.certified},
            "outputs": [o.to_json() for o in self.outputs],
            "witness": {"x": [float(v) for v in self.witness_x],
                        "index": self.witness_output[0], "sign": self.witness_output[1]},
            "engine": self.engine,
            "verifier": self.verifier,
            "queries": list(self.queries),
            "searches": list(self.searches),
            "seconds": self.seconds,
            "notes": list(self.notes),
        }


def choose_engine(n1: Network, n2: Network, engine: str = "auto") -> str:
    from nnbisim.diffbounds import same_architecture

    if engine == "auto":
        return "differential" if same_architecture(n1, n2) else "crown"
    if engine == "differential" and not same_architecture(n1, n2):
        raise ShapeMismatchError(
            f"differential bounds need the same layer sizes, but N1 is {n1.describe()} and N2 "
            f"is {n2.describe()}; use --engine crown")
    if engine not in ("differential", "crown", "interval"):
        raise InputError(f"unknown engine {engine!r}; use auto, differential, crown or interval")
    return engine


def bound_function(n1: Network, n2: Network, engine: str) -> BoundFn:
    """``(lower, upper, c) -> upper bounds of c @ (N1 - N2)`` per box, by the chosen engine."""
    if engine == "differential":
        from nnbisim.diffbounds import differential_bounds

        def diff(lo: np.ndarray, hi: np.ndarray, c: np.ndarray) -> np.ndarray:
            res = differential_bounds(n1, n2, lo, hi, C=c[None])
            return np.asarray(res.hi, np.float64)[:, 0]
        return diff
    from nnbisim.bounds import crown_bounds, interval_bounds

    merged = merge_networks(n1, n2).network
    if engine == "interval":
        def ibp(lo: np.ndarray, hi: np.ndarray, c: np.ndarray) -> np.ndarray:
            res = interval_bounds(merged, lo, hi)
            out_lo, out_hi = (np.asarray(v, np.float64) for v in (res.lo, res.hi))
            return np.maximum(c, 0) @ out_hi.T + np.minimum(c, 0) @ out_lo.T
        return ibp

    def crown(lo: np.ndarray, hi: np.ndarray, c: np.ndarray) -> np.ndarray:
        return np.asarray(crown_bounds(merged, lo, hi, C=c[None]).hi, np.float64)[:, 0]
    return crown


def compute_epsilon(
    n1_path: str | Path,
    n2_path: str | Path,
    inputs: InputSet,
    *,
    verifier: str = "bounds",
    engine: str = "auto",
    rel_gap: float = 0.01,
    time_budget: float = 60.0,
    workdir: Path | None = None,
    query_timeout: float = 60.0,
    seed: int = 0,
    progress: Progress | None = None,
) -> EpsilonReport:
    """Bracket eps and every output's difference interval over ``inputs``.

    ``verifier``: ``none`` (witnesses only), ``bounds`` (own engine with branch and bound) or an
    exact verifier for bisection after the bounds (``marabou``, ``vnncomp:DIR``, a plug-in).
    """
    t0 = time.perf_counter()
    say = progress or (lambda _msg: None)
    n1, n2 = load_network(n1_path), load_network(n2_path)
    if n1.in_size != n2.in_size or n1.out_size != n2.out_size:
        raise ShapeMismatchError(f"{n1_path} is {n1.describe()} and {n2_path} is "
                                 f"{n2.describe()}: inputs and outputs must have the same sizes")
    if inputs.dim != n1.in_size:
        raise ShapeMismatchError(f"the input set has {inputs.dim} values per point but the "
                                 f"networks take {n1.in_size}; give one bound per input")
    replay = onnx_replay(n1_path, n2_path)
    say("witnesses: sampling and gradient ascent, replayed in onnxruntime")
    wit = find_witnesses(n1, n2, inputs, replay, seed=seed)
    m = n1.out_size
    brackets = [Bracket(w.index, w.sign, w.value, np.inf, w.x) for w in wit]
    searches: list[dict] = []
    notes: list[str] = []
    used = "none"
    exact = verifier not in ("none", "bounds")
    if verifier != "none":
        used = choose_engine(n1, n2, engine)
        share = time_budget * (0.5 if exact else 1.0) - (time.perf_counter() - t0)
        _certify(n1, n2, inputs, brackets, used, rel_gap, share, searches, say, replay)
    queries: list[dict] = []
    if exact:
        from nnbisim.verifiers import get_verifier

        tool = get_verifier(verifier)
        with tempfile.TemporaryDirectory(prefix="nnbisim-") as tmp:
            work = Path(workdir) if workdir is not None else Path(tmp)
            work.mkdir(parents=True, exist_ok=True)
            merged_path = save_model(network_to_model(merge_networks(n1, n2).network),
                                     work / "merged.onnx", force=True)
            deadline = t0 + time_budget
            for br in brackets:
                if gap_closed(br.witnessed, br.certified, rel_gap, 1e-9):
                    continue
                say(f"{tool.name}: bisecting output {br.index} sign {br.sign:+d} in "
                    f"[{br.witnessed:.6g}, {br.certified:.6g}]")
                bisect(br, merged_path, inputs, m, 0, tool, replay, work, rel_gap=rel_gap,
                       deadline=deadline, query_timeout=query_timeout)
                queries += [q.to_json() for q in br.queries]
    if verifier == "none":
        notes.append("no certified bound was asked for (--verifier none)")
    return _report(brackets, m, used, verifier, queries, searches, notes,
                   time.perf_counter() - t0)


def _certify(n1: Network, n2: Network, inputs: InputSet, brackets: list[Bracket], engine: str,
             rel_gap: float, budget: float, searches: list[dict], say: Progress,
             replay: Callable[[np.ndarray], np.ndarray]) -> None:
    """Branch and bound per output and sign; fills ``certified`` (and better witnesses)."""
    lower = np.array([b.lower for b in inputs.boxes])
    upper = np.array([b.upper for b in inputs.boxes])
    m = n1.out_size
    deadline = time.perf_counter() + budget
    wide = inputs.dim > INPUT_SPLIT_MAX_DIM
    bound = None if wide else bound_function(n1, n2, engine)

    def value(x: np.ndarray, c: np.ndarray) -> np.ndarray:
        return (n1.forward(x) - n2.forward(x)) @ c

    for k, br in enumerate(brackets):
        c = np.zeros(m)
        c[br.index] = br.sign
        share = max((deadline - time.perf_counter()) / (len(brackets) - k), 0.05)
        say(f"bounds ({engine}): output {br.index} sign {br.sign:+d}, {share:.1f} s")
        if wide:
            res = _relu_bab(n1, n2, lower, upper, c, br.witnessed, rel_gap, share)
            upper_bound, reason, count = res
            searches.append({"index": br.index, "sign": br.sign, "method": "relu-split",
                             "upper": upper_bound, "reason": reason, "nodes": count})
        else:
            res = input_bab_max(lower, upper, c, bound, value, start_value=br.witnessed,
                                start_x=br.witness_x, rel_gap=rel_gap, time_budget=share)
            upper_bound = res.upper
            searches.append({"index": br.index, "sign": br.sign, "method": "input-split",
                             "upper": res.upper, "reason": res.reason, "boxes": res.boxes,
                             "seconds": round(res.seconds, 3)})
            if res.x is not None and res.value > br.witnessed:  # count it only once replayed
                replayed = float(br.sign * replay(res.x[None])[0, br.index])
                if replayed > br.witnessed:
                    br.witnessed, br.witness_x = replayed, res.x
        br.certified = min(br.certified, upper_bound)


def _relu_bab(n1: Network, n2: Network, lower: np.ndarray, upper: np.ndarray, c: np.ndarray,
              witnessed: float, rel_gap: float, budget: float) -> tuple[float, str, int]:
    from nnbisim.relu_bab import relu_bab_max

    merged = merge_networks(n1, n2).network
    # one pass of the best engine first: differential bounds can beat split merged bounds
    single = float(bound_function(n1, n2, choose_engine(n1, n2, "auto"))(lower, upper, c).max())
    if gap_closed(witnessed, single, rel_gap, 1e-9):
        return single, "gap", len(lower)
    worst, reasons, nodes = -np.inf, [], 0
    for b in range(len(lower)):
        res = relu_bab_max(merged, lower[b], upper[b], c, witness_value=witnessed,
                           rel_gap=rel_gap, time_budget=budget / len(lower))
        worst = max(worst, float(res.upper))
        reasons.append(res.reason)
        nodes += res.nodes
    return min(worst, single), ",".join(sorted(set(reasons))), nodes


def _report(brackets: list[Bracket], m: int, engine: str, verifier: str, queries: list[dict],
            searches: list[dict], notes: list[str], seconds: float) -> EpsilonReport:
    by = {(b.index, b.sign): b for b in brackets}
    outputs = tuple(OutputBounds(i, -by[i, -1].witnessed, -by[i, -1].certified,
                                 by[i, 1].witnessed, by[i, 1].certified) for i in range(m))
    best = max(brackets, key=lambda b: b.witnessed)
    return EpsilonReport(
        witnessed=best.witnessed,
        certified=max(b.certified for b in brackets),
        outputs=outputs,
        witness_x=np.asarray(best.witness_x, np.float64),
        witness_output=(best.index, best.sign),
        engine=engine, verifier=verifier, queries=tuple(queries), searches=tuple(searches),
        seconds=seconds, notes=tuple(notes))
