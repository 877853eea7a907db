"""Top-1 agreement: does N2 classify like N1 everywhere in X?

The violation is a union of polytopes over the pair's outputs ``[y1 ; y2]``: for a class ``c``
and another ``c'``, N1 puts ``c`` on top (``y1_j < y1_c`` for every ``j != c``; with ``delta``,
``y1_c - y1_j > delta``: VeryDiff's delta-top-1, asked only where N1 is confident) while N2
ranks ``c'`` above ``c`` (``y2_c < y2_c'``). That is ``k (k - 1)`` polytopes of ``k`` rows.
They are decided on the original pair (differential bounds on ``y1 - y2`` where the layer
sizes agree, :func:`~nnbisim.search.subjects.pair`) by the witness search and branch and bound
of the other decisions. The relations are strict; proofs use the closed sets (ties included),
so ``holds`` means: no input where N1 ranks ``c`` first (or ties it first) and N2 ranks ``c'``
at least level with ``c``. A ``violated`` input is replayed in onnxruntime on the two files:
N1's top class (its lead above ``delta``) differs from N2's, with a clear margin.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from nnbisim.adapters.merge import merge_networks
from nnbisim.adapters.models import AnyNet, load_any, run_session, session_of
from nnbisim.adapters.replay import OnnxRunner
from nnbisim.core.errors import InputError, ShapeMismatchError
from nnbisim.core.model import Network
from nnbisim.core.quant import QuantizedNetwork
from nnbisim.core.verdict import Status
from nnbisim.search.decide import DecideOptions, decide
from nnbisim.search.subjects import Subject, pair, single, with_quantized
from nnbisim.specs.sets import InputSet, OutputConstraint, Polytope, SpecCase

Progress = Callable[[str], None]
TORCH_FILES = (".pth", ".pt")
STRICT_MARGIN = 1e-5  # relative: how clearly a counterexample must break the strict relations
REPLAY_MARGIN = 1e-6  # relative to the logits: the lead a replayed class must have


def disagreement(k: int, delta: float = 0.0, margin: float = 0.0) -> OutputConstraint:
    """The inputs' images where N1 ranks some ``c`` first (by more than ``delta``) and N2 ranks
    some ``c' != c`` above ``c``, over ``[y1 ; y2]`` (2k columns); strict rows moved in by
    ``margin`` (relative; 0: as stated)."""
    polys = []
    for c in range(k):
        for c2 in range(k):
            if c2 == c:
                continue
            mat, rhs = [], []
            for j in range(k):
                if j != c:  # y1_j - y1_c < -delta
                    row = np.zeros(2 * k)
                    row[j], row[c] = 1.0, -1.0
                    mat.append(row)
                    rhs.append(-delta - margin * (1.0 + delta))
            row = np.zeros(2 * k)  # y2_c - y2_c' < 0
            row[k + c], row[k + c2] = 1.0, -1.0
            mat.append(row)
            rhs.append(-margin)
            polys.append(Polytope(np.array(mat), np.array(rhs), (True,) * k))
    return OutputConstraint(tuple(polys))


@dataclass(frozen=True)
class Agreement:
    """The answer to "does argmax N2 = argmax N1 everywhere in X (where N1 leads by more than
    ``delta``)?", with a replayed input where the classes differ."""

    status: Status
    delta: float
    seconds: float
    boxes: int
    max_boxes: int | None = None
    witness_x: np.ndarray | None = None
    classes: tuple[int, int] | None = None  # (N1's, N2's) at the witness, by onnxruntime
    logits: tuple[np.ndarray, np.ndarray] | None = None
    notes: tuple[str, ...] = field(default=())

    def to_json(self) -> dict:
        witness = None
        if self.witness_x is not None and self.classes is not None and self.logits:
            witness = {"x": [float(v) for v in self.witness_x], "class_n1": self.classes[0],
                       "class_n2": self.classes[1],
                       "y1": [float(v) for v in self.logits[0]],
                       "y2": [float(v) for v in self.logits[1]]}
        return {"verdict": self.status.value, "delta": self.delta, "witness": witness,
                "work": {"max_boxes": self.max_boxes, "boxes": self.boxes},
                "seconds": self.seconds, "notes": list(self.notes)}

    def table(self) -> str:
        where = f" where N1 leads by more than {self.delta:g}" if self.delta else ""
        lines = [f"top-1 agreement{where}: {self.status.value}"]
        if self.status is Status.HOLDS:
            lines.append("  certified: N2's top class is N1's on every input of the set")
        if self.classes is not None:
            lines.append(f"  witness: N1 says {self.classes[0]}, N2 says {self.classes[1]} "
                         "(onnxruntime, the two files)")
        lines.append(f"  {self.boxes} boxes bounded, {self.seconds:.1f} s")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)


def _logits(path: Path, net: AnyNet, x: np.ndarray) -> np.ndarray:
    """onnxruntime's outputs at ``x``: on the file itself, or for a state dict on the ONNX
    form nnbisim writes for it."""
    if path.suffix in TORCH_FILES:
        return run_session(session_of(net), net, x).astype(np.float64)
    return OnnxRunner(path).run(np.asarray(x, np.float64)[None])[0].astype(np.float64)


def replay_classes(paths: tuple[Path, Path], nets: tuple[Network, AnyNet], x: np.ndarray,
                   delta: float) -> tuple[tuple[int, int], tuple[np.ndarray, np.ndarray]] | None:
    """N1's and N2's classes at ``x`` by onnxruntime when they differ, each winning by a clear
    margin and N1's lead above ``delta``; else None."""
    y1, y2 = (_logits(p, n, x) for p, n in zip(paths, nets, strict=True))
    c1, c2 = int(np.argmax(y1)), int(np.argmax(y2))
    scale = REPLAY_MARGIN * max(1.0, float(np.max(np.abs(y1))), float(np.max(np.abs(y2))))
    lead1 = y1[c1] - np.max(np.delete(y1, c1))
    if c1 == c2 or lead1 <= delta + scale or y2[c2] - y2[c1] <= scale:
        return None
    return (c1, c2), (y1, y2)


def _networks(n1_path: Path, n2_path: Path) -> tuple[Network, AnyNet]:
    nets = load_any(n1_path), load_any(n2_path)
    if not isinstance(nets[0], Network):
        raise InputError(f"{n1_path}: a network with quantized activations as N1; top-1 "
                         "agreement takes it as N2 (the compressed one), with a float N1")
    if nets[0].out_size != nets[1].out_size or nets[0].in_size != nets[1].in_size:
        raise ShapeMismatchError(f"{n1_path} and {n2_path} differ in input or output sizes; "
                                 "top-1 agreement compares classifiers of the same classes")
    if nets[0].out_size < 2:
        raise InputError(f"{n1_path}: one output is not a classifier; give networks with one "
                         "logit per class")
    return nets  # type: ignore[return-value]


ENGINES = ("differential", "product")
WIDE = 100  # inputs from which the witness search is cut down (its cost grows with k^2 n)


def _search(seed: int, dim: int) -> DecideOptions:
    """The decisions' witness search, smaller for wide inputs: 256 samples and 8 climbs."""
    if dim < WIDE:
        return DecideOptions(seed=seed)
    return DecideOptions(seed=seed, samples=256, restarts=8, climb_steps=50)


def _subject(n1: Network, n2: AnyNet, engine: str) -> Subject:
    """The pair's outputs ``[y1 ; y2]``: the differential engine (``differential``), or CROWN
    on the product network (``product``: outputs ``[y1; y2; y1 - y2]``, bounded as one network,
    as single-network verifiers see the merged question; for comparison). An N2 with quantized
    activations is bounded on its own, rounding included, whatever ``engine`` says."""
    if isinstance(n2, QuantizedNetwork):
        return with_quantized(n1, n2)  # the activation rounding: its own interval bounds
    if engine == "differential":
        return pair(n1, n2, "stacked")
    if engine != "product":
        raise InputError(f"engine {engine!r}: use one of {', '.join(ENGINES)}")
    merged = single(merge_networks(n1, n2, "all").network)
    k = n1.out_size

    def rows(lo, hi, a, focus=None):
        return merged.rows(lo, hi, np.hstack([a, np.zeros((len(a), k))]), focus)
    return replace(merged, n_outputs=2 * k, rows=rows,
                   forward=lambda x: merged.forward(x)[..., :2 * k],
                   torch_forward=lambda x: merged.torch_forward(x)[..., :2 * k])


@dataclass(frozen=True)
class AgreeOptions:
    """How :func:`decide_agreement` searches: a work limit (boxes bounded in all), the witness
    search's seed, the engine (:func:`_subject`)."""

    max_boxes: int | None = None
    seed: int = 0
    engine: str = "differential"


def decide_agreement(n1_path: str | Path, n2_path: str | Path, inputs: InputSet,
                     delta: float = 0.0, time_budget: float = 60.0,
                     options: AgreeOptions = AgreeOptions(), *,
                     progress: Progress | None = None) -> Agreement:
    """Decide top-1 agreement of N2 with N1 on ``inputs`` (where N1 leads by more than
    ``delta``) within ``time_budget`` seconds (and ``options.max_boxes``)."""
    t0 = time.perf_counter()
    max_boxes, seed, engine = options.max_boxes, options.seed, options.engine
    if not (np.isfinite(delta) and delta >= 0):
        raise InputError(f"--delta {delta}: give a number >= 0")
    n1_path, n2_path = Path(n1_path), Path(n2_path)
    n1, n2 = _networks(n1_path, n2_path)
    if inputs.dim != n1.in_size:
        raise ShapeMismatchError(f"the input set has {inputs.dim} values per point but "
                                 f"{n1_path} takes {n1.in_size}")
    subject, k = _subject(n1, n2, engine), n1.out_size
    # one bound of every box first: where it proves agreement, no witness search is paid for
    # (on MNIST's 784 inputs the search over k (k - 1) polytopes takes over a minute)
    first = decide(subject, [SpecCase(box, disagreement(k, delta)) for box in inputs.boxes],
                   time_budget, DecideOptions(seed=seed, search=False), max_boxes=len(inputs.boxes))
    if first.status is Status.HOLDS:
        return Agreement(Status.HOLDS, delta, time.perf_counter() - t0, first.boxes, max_boxes)
    boxes, notes = first.boxes, []
    for margin in (0.0, STRICT_MARGIN):
        left = time_budget - (time.perf_counter() - t0)
        work = None if max_boxes is None else max_boxes - boxes
        if left <= 0 or (work is not None and work < 1):
            break
        cases = [SpecCase(box, disagreement(k, delta, margin)) for box in inputs.boxes]
        d = decide(subject, cases, left, _search(seed, inputs.dim), progress=progress,
                   max_boxes=work)
        boxes += d.boxes
        if d.status is Status.HOLDS and margin == 0.0:
            return Agreement(Status.HOLDS, delta, time.perf_counter() - t0, boxes, max_boxes)
        if d.status is Status.HOLDS:
            notes.append("no input where the classes differ with a clear margin; the closed "
                         "relation is reached (a tie), so no proof either")
            break
        if d.status is not Status.VIOLATED or d.x is None:
            break
        got = replay_classes((n1_path, n2_path), (n1, n2), d.x, delta)
        if got is not None:
            return Agreement(Status.VIOLATED, delta, time.perf_counter() - t0, boxes,
                             max_boxes, d.x, got[0], got[1])
        notes.append("the engine's point is a tie (or does not replay in onnxruntime): "
                     "searching for a clear disagreement")
    return Agreement(Status.UNKNOWN, delta, time.perf_counter() - t0, boxes, max_boxes,
                     notes=tuple(notes) or ("the time budget or the work limit ran out",))
