"""nnbisim as a VNN-COMP tool: decide one instance and write its result file.

``run_instance.sh`` calls :func:`run_instance`. A single-network instance is decided on its
network (on the original pair when the file is a comparison network nnbisim wrote); a
two-network VNN-LIB 2.0 query on its two networks directly. The own engine (witness climbs,
then branch and bound) gets most of the time; what it leaves open goes to Marabou on the
(merged) single network, one disjunct per query. ``sat`` is only written after the
counterexample replays in onnxruntime on the files of the instance, in the format of the
query's VNN-LIB version.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from nnbisim.core.errors import NnbisimError, UnsupportedModelError
from nnbisim.core.verdict import Status
from nnbisim.specs.sets import InputSet, OutputConstraint, Property, SpecCase, TwoNetworkQuery
from nnbisim.vnncomp.formats import (
    assignment_2_0,
    counterexample_1_0,
    parse_network_field,
    replay_pair,
    translate,
    two_network_assignment,
    write_result,
)

log = logging.getLogger(__name__)

OWN_SHARE = 0.6  # of the timeout for the own engine; Marabou gets what is left
MIN_QUERY = 1.5  # seconds: a verifier query given less is not started (start-up alone)
WRITE_MARGIN = 1.0  # seconds kept for writing the answer
_DTYPES = {"F32": "float32", "F64": "float64", "F16": "float16", "BF16": "bfloat16",
           "Real": "Real"}


def declared(path: Path) -> list[tuple[str, str, tuple[int, ...]]]:
    """The variables a VNN-LIB 2.0 file declares, in order: (name, element type, shape)."""
    import vnnlib

    from nnbisim.specs._text import read_text

    query = vnnlib.parse_query_string(read_text(path))
    out = []
    for net in query.networks:
        for var in (*net.inputs, *net.outputs):
            out.append((var.name, _DTYPES.get(var.dtype.name, "float32"), tuple(var.shape)))
    return out


def _version(path: Path) -> str:
    from nnbisim.specs._text import read_text
    from nnbisim.specs.io import detect_version

    return detect_version(read_text(path), str(path))


def per_disjunct(tool, model: Path, boxes_unsafe: list[SpecCase], timeout: float,
                 work: Path) -> tuple[Status, np.ndarray | None]:
    """A verifier plug-in on ``model``, one query per (box, unsafe polytope), the time shared
    evenly among the queries still to ask: ``violated`` on the first counterexample (the
    plug-in replays it), ``holds`` when every query is unsat, else the first other answer
    (timeout, unknown). One output constraint per query because Marabou's answers on
    disjunctive properties are unreliable."""
    from nnbisim.specs.vnnlib1 import write_vnnlib1

    deadline = time.perf_counter() + timeout
    jobs = [(c, poly) for c in boxes_unsafe for poly in c.unsafe.disjuncts]
    worst = Status.HOLDS
    for k, (case, poly) in enumerate(jobs):
        share = (deadline - time.perf_counter()) / (len(jobs) - k)
        if share < MIN_QUERY:  # the queries left cannot all be asked in time
            return Status.TIMEOUT, None
        prop = work / f"disjunct_{k}.vnnlib"
        write_vnnlib1(Property(InputSet.of(case.box), OutputConstraint((poly,)),
                               poly.mat.shape[1]), prop)
        verdict = tool.check(model, prop, share)
        if verdict.status is Status.VIOLATED:
            return Status.VIOLATED, verdict.counterexample
        if verdict.status is not Status.HOLDS and worst is Status.HOLDS:
            worst = verdict.status  # keep looking: a later disjunct may be reachable
    return worst, None


def marabou_per_disjunct(model: Path, boxes_unsafe: list[SpecCase], timeout: float,
                         work: Path) -> tuple[Status, np.ndarray | None]:
    """:func:`per_disjunct` with Marabou."""
    from nnbisim.adapters.marabou import MarabouVerifier

    return per_disjunct(MarabouVerifier(), model, boxes_unsafe, timeout, work)


def own_budget(timeout: float, queries: int) -> float:
    """The own engine's seconds of an instance whose leftovers would take Marabou ``queries``
    queries: :data:`OWN_SHARE` of the timeout when what is left covers :data:`MIN_QUERY` per
    query, else all of it (Marabou would start none of them, and the time would go unused)."""
    rest = (1.0 - OWN_SHARE) * timeout - WRITE_MARGIN
    if rest >= queries * MIN_QUERY:
        return OWN_SHARE * timeout
    return max(timeout - WRITE_MARGIN, 0.0)


def _queries(cases: list[SpecCase]) -> int:
    return sum(len(c.unsafe.disjuncts) for c in cases)


def _decide_two(field: str, vnnlib: Path, query: TwoNetworkQuery, timeout: float,
                base: Path | None) -> tuple[str, str]:
    from nnbisim.adapters.onnx_load import load_network
    from nnbisim.search.decide import decide, pair

    t0 = time.perf_counter()
    nets = dict(parse_network_field(field, base))
    p_f, p_g = nets[query.first], nets[query.second]
    subject = pair(load_network(p_f), load_network(p_g), "stacked")
    cases = [SpecCase(box, query.unsafe) for box in query.inputs.boxes]
    d = decide(subject, cases, own_budget(timeout - (time.perf_counter() - t0), _queries(cases)))
    if d.status is Status.HOLDS:
        return "unsat", ""
    if d.status is Status.VIOLATED:
        replayed = replay_pair(query, p_f, p_g, d.x)
        if replayed is not None:
            return "sat", two_network_assignment(query, d.x, *replayed)
    if timeout - (time.perf_counter() - t0) - WRITE_MARGIN < _queries(cases) * MIN_QUERY:
        return ("timeout" if d.status is Status.TIMEOUT else "unknown"), ""
    with tempfile.TemporaryDirectory(prefix="nnbisim-run-") as tmp:
        tr = translate(field, vnnlib, tmp, base=base)
        from nnbisim.specs.io import read_spec_cases

        left = timeout - (time.perf_counter() - t0) - WRITE_MARGIN
        status, x = marabou_per_disjunct(tr.merged, read_spec_cases(tr.vnnlib1), left, Path(tmp))
    if status is Status.HOLDS:
        return "unsat", ""
    if status is Status.VIOLATED and x is not None:
        replayed = replay_pair(query, p_f, p_g, x)
        if replayed is not None:
            return "sat", two_network_assignment(query, x, *replayed)
    return ("timeout" if status is Status.TIMEOUT else "unknown"), ""


def _decide_one(model: Path, vnnlib: Path, timeout: float) -> tuple[str, str]:
    from nnbisim.adapters.onnx_load import load_network
    from nnbisim.core.verdict import Verdict
    from nnbisim.search.decide import decide, subject_of
    from nnbisim.specs.io import read_spec_cases
    from nnbisim.verifiers.registry import confirm_violation

    t0 = time.perf_counter()
    cases = read_spec_cases(vnnlib)
    status, x = Status.UNKNOWN, None
    try:
        net = load_network(model)
    except UnsupportedModelError:
        net = None
    if net is not None:
        own = own_budget(timeout - (time.perf_counter() - t0), _queries(cases))
        d = decide(subject_of(model, net), cases, own)
        status, x = d.status, d.x
    if status is Status.HOLDS:
        return "unsat", ""
    if status is not Status.VIOLATED:
        left = timeout - (time.perf_counter() - t0) - WRITE_MARGIN
        if left >= _queries(cases) * MIN_QUERY:
            with tempfile.TemporaryDirectory(prefix="nnbisim-run-") as tmp:
                status, x = marabou_per_disjunct(model, cases, left, Path(tmp))
        if status is Status.HOLDS:
            return "unsat", ""
    if status is Status.VIOLATED and x is not None:
        verdict = confirm_violation(Verdict(Status.VIOLATED, "nnbisim", counterexample=x),
                                    model, cases)
        if verdict.status is Status.VIOLATED:
            if _version(vnnlib) == "1.0":
                return "sat", counterexample_1_0(verdict.counterexample, verdict.output)
            (xn, xt, xs), (yn, yt, ys) = declared(vnnlib)[:2]
            return "sat", assignment_2_0([(xn, xt, xs, verdict.counterexample),
                                          (yn, yt, ys, verdict.output)])
        status = Status.UNKNOWN
    return ("timeout" if status is Status.TIMEOUT else "unknown"), ""


def find_base(field: str, vnnlib: Path) -> Path | None:
    """Where a network field's relative paths are: the current folder, else the VNN-LIB
    file's folder or one above it (a benchmark folder holds onnx/ and vnnlib/ side by side)."""
    for base in (Path.cwd(), *vnnlib.resolve().parents):
        try:
            parse_network_field(field, base)
        except NnbisimError:
            continue
        return base
    return None


def run_instance(field: str, vnnlib: str | Path, result: str | Path, timeout: float,
                 base: str | Path | None = None) -> str:
    """Decide one VNN-COMP instance within ``timeout`` seconds, write ``result``, return its
    first word. Errors in the instance itself (missing files, malformed VNN-LIB) are written
    as ``error`` with the reason and re-raised for the caller's exit code."""
    vnnlib = Path(vnnlib)
    base_path = Path(base) if base is not None else find_base(field, vnnlib)
    try:
        nets = parse_network_field(field, base_path)
        from nnbisim.specs.io import read_spec

        spec = read_spec(vnnlib)
        if len(nets) == 2 and isinstance(spec, TwoNetworkQuery):
            word, cex = _decide_two(field, vnnlib, spec, timeout, base_path)
        elif len(nets) == 1 and not isinstance(spec, TwoNetworkQuery):
            word, cex = _decide_one(nets[0][1], vnnlib, timeout)
        else:
            word, cex = "unknown", ""
            log.warning("%d networks for a query over %s: not supported", len(nets),
                        "two networks" if isinstance(spec, TwoNetworkQuery) else "one network")
    except NnbisimError as exc:
        write_result(Path(result), "error")
        Path(result).write_text(f"error\n{exc}\n")
        raise
    write_result(Path(result), word, cex)
    return word
