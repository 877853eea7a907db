"""The reports the tasks return: eps brackets and assured-compression decisions.

Plain values with ``to_json`` (what ``--json`` writes) and, where people read them, a text
table; nothing here prints.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from nnbisim.core.verdict import Status


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
    max_boxes: int | None = None  # the work limit (None: none)
    boxes: int = 0  # boxes (or ReLU sub-problems) the branch and bound bounded in all

    def to_json(self) -> dict:
        return {
            "eps": {"witnessed": self.witnessed, "certified": self.certified},
            "work": {"max_boxes": self.max_boxes, "boxes": self.boxes},
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

    def _work(self) -> str:
        limit = "" if self.max_boxes is None else f" (work limit {self.max_boxes})"
        return f"{self.boxes} boxes bounded{limit}"

    def table(self) -> str:
        """The report as a readable table: per output, eps, the witness, the queries."""
        lines = [f"{'output':>6} {'min witnessed':>14} {'min certified':>14} "
                 f"{'max witnessed':>14} {'max certified':>14}"]
        for o in self.outputs:
            lines.append(f"{o.index:>6} {o.min_witnessed:>14.6g} {o.min_certified:>14.6g} "
                         f"{o.max_witnessed:>14.6g} {o.max_certified:>14.6g}")
        ratio = self.certified / self.witnessed if self.witnessed > 0 else float("inf")
        x = self.witness_x
        shown = ", ".join(f"{v:.6g}" for v in x[:8])
        more = f", ... ({x.size} values, all in the JSON)" if x.size > 8 else ""
        lines += ["", f"eps = max |N1 - N2|_inf in [{self.witnessed:.6g}, {self.certified:.6g}]"
                  f"  (witnessed, certified; ratio {ratio:.3g}; engine {self.engine}, verifier "
                  f"{self.verifier}, {self.seconds:.1f} s, {self._work()})",
                  f"witness x = [{shown}{more}]  (output {self.witness_output[0]}, sign "
                  f"{self.witness_output[1]:+d})"]
        if self.queries:
            lines += ["", f"{'query':>5} {'output':>6} {'sign':>4} {'box':>3} "
                      f"{'threshold':>12} {'answer':>8} {'seconds':>8}"]
            for k, q in enumerate(self.queries):
                lines.append(f"{k:>5} {q['index']:>6} {q['sign']:>+4d} {q['box']:>3} "
                             f"{q['threshold']:>12.6g} {q['status']:>8} {q['seconds']:>8.2f}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


class Route(enum.StrEnum):
    """Which route settled a box of an assured-compression decision."""

    COMPRESSED = "compressed"  # through N2 and the certified bound of N1 - N2
    DIRECT = "direct"  # on N1 itself
    OPEN = "open"  # not settled here (split, or left to N1)


class PieceResult(enum.StrEnum):
    HOLDS = "holds"
    VIOLATED = "violated"
    UNKNOWN = "unknown"
    LEFT_TO_N1 = "left to N1"  # the route through N2 gave it up; N1 directly goes on
    SPLIT = "split"  # split in two, the halves retried


@dataclass(frozen=True)
class Piece:
    """How one box of the input set was settled."""

    case: int
    lower: np.ndarray
    upper: np.ndarray
    depth: int
    route: Route
    result: PieceResult
    eps: float = np.nan  # certified max |N1 - N2| over the box (nan when not computed)
    eps_seconds: float = 0.0
    n2_seconds: float = 0.0
    direct_seconds: float = 0.0
    eps_witnessed: float = np.nan  # the largest |N1 - N2| seen at a point of the box (float64)

    def to_json(self) -> dict:
        return {"case": self.case, "lower": self.lower.tolist(), "upper": self.upper.tolist(),
                "depth": self.depth, "route": self.route.value, "result": self.result.value,
                "eps": self.eps, "eps_witnessed": self.eps_witnessed,
                "eps_seconds": round(self.eps_seconds, 3),
                "n2_seconds": round(self.n2_seconds, 3),
                "direct_seconds": round(self.direct_seconds, 3)}


def _largest(values) -> float | None:
    finite = [v for v in values if np.isfinite(v)]
    return max(finite) if finite else None


@dataclass(frozen=True)
class AssureReport:
    """The verdict for N1 with its proof or counterexample and the per-box record."""

    verdict: Status  # HOLDS, VIOLATED or TIMEOUT
    counterexample: np.ndarray | None
    pieces: tuple[Piece, ...]
    seconds: float
    n2: str
    notes: tuple[str, ...] = field(default=())
    max_boxes: int | None = None  # the work limit (None: none)
    boxes: int = 0  # boxes the own engine bounded in all

    @property
    def route(self) -> str:
        """``compressed`` if every box was settled through N2, ``direct`` if every one on N1,
        ``mixed`` otherwise (``none`` when no box was settled)."""
        routes = {p.route for p in self.pieces if p.route is not Route.OPEN}
        if len(routes) == 1:
            return routes.pop().value
        return "mixed" if routes else "none"

    def to_json(self) -> dict:
        return {"verdict": self.verdict.value, "route": self.route,
                "counterexample": None if self.counterexample is None
                else self.counterexample.tolist(),
                "seconds": round(self.seconds, 3), "n2": self.n2,
                "work": {"max_boxes": self.max_boxes, "boxes": self.boxes},
                "eps_seconds": round(sum(p.eps_seconds for p in self.pieces), 3),
                "n2_seconds": round(sum(p.n2_seconds for p in self.pieces), 3),
                "direct_seconds": round(sum(p.direct_seconds for p in self.pieces), 3),
                "eps_max": _largest(p.eps for p in self.pieces),
                "eps_witnessed_max": _largest(p.eps_witnessed for p in self.pieces),
                "pieces": [p.to_json() for p in self.pieces], "notes": list(self.notes)}
