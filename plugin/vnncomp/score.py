"""Checking and scoring a tool's answers to a benchmark, as VNN-COMP does.

A ``sat`` answer counts only if its counterexample replays: :func:`check_counterexample` reads
it (VNN-LIB 1.0 ``((X_0 v) ...)`` or the 2.0 textual assignment), puts it in the instance's input
set and runs the instance's ONNX files in onnxruntime; the outputs must reach the unsafe set
(strict relations strictly). :func:`score` then gives, against ``expected.csv``, +10 for a
correct answer, -150 for a wrong one (an ``unsat`` where ``sat`` is known, a ``sat`` where
``unsat`` is, or a ``sat`` whose counterexample does not replay: VNN-COMP's rule for an invalid
witness), 0 for no answer (timeout, unknown, error, or an answer after the time limit).
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnbisim.adapters.replay import confirm_violation
from nnbisim.core.errors import NnbisimError
from nnbisim.core.verdict import Status, Verdict
from nnbisim.specs._text import read_text
from nnbisim.specs.coupled import CoupledQuery
from nnbisim.specs.io import detect_version, read_spec, read_spec_cases
from nnbisim.specs.results import parse_assignment_2_0, parse_vnncomp_result
from nnbisim.specs.sets import TwoNetworkQuery
from nnbisim.tasks.coupled import replay_coupled
from nnbisim.vnncomp.bridge import replay_pair
from nnbisim.vnncomp.formats import Instance
from nnbisim.vnncomp.run import declared

CORRECT, WRONG = 10, -150
LATE = 1.0  # seconds past the time limit after which an answer counts as a timeout
TIE_TOL = 1e-6  # relative: X_f and X_g of a query that ties them may differ by this much


def check_counterexample(inst: Instance, text: str) -> str | None:
    """None when the ``sat`` result ``text`` holds a counterexample that violates ``inst`` on
    its files in onnxruntime; else why it does not."""
    try:
        spec = read_spec(inst.vnnlib)
        if detect_version(read_text(inst.vnnlib), str(inst.vnnlib)) == "1.0":
            _, x, note = parse_vnncomp_result(text)
            return _one(inst, x, note)
        values = parse_assignment_2_0(text)
        if isinstance(spec, TwoNetworkQuery | CoupledQuery):
            return _two(inst, spec, values)
        name = declared(inst.vnnlib)[0][0]
        return _one(inst, values.get(name), f"the assignment has no {name}")
    except NnbisimError as exc:
        return f"the counterexample cannot be read: {exc}"


def _one(inst: Instance, x: np.ndarray | None, missing: str) -> str | None:
    if x is None:
        return missing or "sat without a counterexample"
    v = confirm_violation(Verdict(Status.VIOLATED, "tool", counterexample=x),
                          inst.networks[0][1], read_spec_cases(inst.vnnlib))
    return None if v.status is Status.VIOLATED else v.message


def _two(inst: Instance, q: TwoNetworkQuery | CoupledQuery, values: dict) -> str | None:
    nets = dict(inst.networks)
    if q.first not in nets or q.second not in nets:
        return f"the network field names no {q.first} and {q.second}"
    x_f, x_g = values.get(f"X_{q.first}"), values.get(f"X_{q.second}")
    if x_f is None or x_g is None:
        return f"the assignment lacks X_{q.first} or X_{q.second}"
    p_f, p_g = nets[q.first], nets[q.second]
    if isinstance(q, CoupledQuery):
        got = replay_coupled(q, p_f, p_g, np.concatenate([x_f, x_g]))
        return None if got is not None else ("it does not violate the query on the files "
                                             "(strictly where it says <)")
    scale = max(1.0, float(np.max(np.abs(x_f))))
    if x_f.shape != x_g.shape or np.max(np.abs(x_f - x_g)) > TIE_TOL * scale:
        return f"X_{q.first} and X_{q.second} differ where the query ties them"
    got = replay_pair(q, p_f, p_g, x_f)
    return None if got is not None else "it does not violate the query on the two files"


def read_expected(path: Path) -> dict[tuple[str, str], str]:
    """``expected.csv`` (``onnx,vnnlib,expected``, a header line optional) by (network field,
    property) as written in ``instances.csv``; empty when there is none."""
    if not path.is_file():
        return {}
    out = {}
    with path.open(newline="") as f:
        for row in csv.reader(f):
            if len(row) >= 3 and row[2].strip() in ("sat", "unsat"):
                out[(row[0].strip(), row[1].strip())] = row[2].strip()
    return out


@dataclass(frozen=True)
class Scored:
    """One answer, judged: ``judgement`` is correct, wrong, invalid (a sat that does not
    replay), late, none (no answer) or unknown (no expected answer); ``points`` VNN-COMP's."""

    judgement: str
    points: int | None


def judge(result: str, seconds: float, limit: float, expected: str | None,
          replays: bool | None) -> Scored:
    """How VNN-COMP scores ``result`` after ``seconds`` of a ``limit``."""
    if result not in ("sat", "unsat"):
        return Scored("none", 0 if expected else None)
    if seconds > limit + LATE:
        return Scored("late", 0 if expected else None)
    if result == "sat" and replays is False:
        return Scored("invalid", WRONG)
    if expected is None:
        return Scored("unknown", None)
    return Scored("correct", CORRECT) if result == expected else Scored("wrong", WRONG)


def summary(rows: list[dict]) -> dict:
    """Counts by result and by judgement, total points and seconds."""
    points = [r["points"] for r in rows if r.get("points") is not None]
    return {"instances": len(rows),
            "results": dict(Counter(r["result"] for r in rows)),
            "judgements": dict(Counter(r["judgement"] for r in rows)),
            "score": sum(points) if points else None,
            "seconds": round(sum(float(r["seconds"]) for r in rows), 1)}
