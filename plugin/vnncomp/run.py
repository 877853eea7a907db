"""nnbisim as a VNN-COMP tool: decide one instance and write its result file.

``run_instance.sh`` calls :func:`run_instance`. A single-network instance is decided on its
network (on the original pair when the file is a comparison network nnbisim wrote); a
two-network VNN-LIB 2.0 query on its two networks directly. The own engine (witness climbs,
then branch and bound) gets most of the time; what it leaves open goes to Marabou on the
(merged) single network, one disjunct per query. ``sat`` is only written after the
counterexample replays in onnxruntime on the files of the instance, in the format of the
query's VNN-LIB version. A two-network query's own engine gets :data:`PAIR_OWN_SHARE` of the
time (Marabou has rarely decided one), a single network's :data:`OWN_SHARE`.
"""

from __future__ import annotations

import logging
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import vnnlib

from nnbisim.adapters.executor import Executor
from nnbisim.adapters.onnx_load import load_network
from nnbisim.adapters.replay import confirm_violation
from nnbisim.core.errors import NnbisimError, SpecError, UnsupportedModelError
from nnbisim.core.verdict import Status, Verdict
from nnbisim.search import parallel
from nnbisim.search.subjects import pair, subject_of
from nnbisim.specs._text import read_text, write_text
from nnbisim.specs.coupled import CoupledQuery
from nnbisim.specs.io import detect_version, read_spec, read_spec_cases
from nnbisim.specs.results import assignment_2_0, counterexample_1_0, write_result
from nnbisim.specs.sets import SpecCase, TwoNetworkQuery
from nnbisim.tasks.coupled import decide_coupled
from nnbisim.verifiers.queries import MIN_QUERY, marabou_per_disjunct
from nnbisim.vnncomp.bridge import replay_pair, translate, two_network_assignment
from nnbisim.vnncomp.formats import find_base, parse_network_field

log = logging.getLogger(__name__)

OWN_SHARE = 0.6  # of the timeout for the own engine; Marabou gets what is left
# two-network queries: Marabou, on the whole timeout, decided 6 of the 864 equivalence
# instances (bench/results/vnncomp_acasxu.md and _slice.md), each also decided by the own
# engine, which decided all 864; on property 1's box the own engine needed 52-67 s of 100 s
# for 2 of the 10 it decided (bench/results/pair_rules.md), past a 60% share
PAIR_OWN_SHARE = 0.9
WRITE_MARGIN = 1.0  # seconds kept for writing the answer
_DTYPES = {"F32": "float32", "F64": "float64", "F16": "float16", "BF16": "bfloat16",
           "Real": "Real"}
Answer = tuple[Status, str]  # the status and, for a violation, the counterexample's text


def declared(path: Path) -> list[tuple[str, str, tuple[int, ...]]]:
    """The variables a VNN-LIB 2.0 file declares, in order: (name, element type, shape)."""
    query = vnnlib.parse_query_string(read_text(path))
    out = []
    for net in query.networks:
        for var in (*net.inputs, *net.outputs):
            out.append((var.name, _DTYPES.get(var.dtype.name, "float32"), tuple(var.shape)))
    return out


def own_budget(timeout: float, queries: int, share: float = OWN_SHARE) -> float:
    """The own engine's seconds of an instance whose leftovers would take Marabou ``queries``
    queries: ``share`` of the timeout when what is left covers ``MIN_QUERY`` per query, else
    all of it (Marabou would start none of them, and the time would go unused)."""
    rest = (1.0 - share) * timeout - WRITE_MARGIN
    if rest >= queries * MIN_QUERY:
        return share * timeout
    return max(timeout - WRITE_MARGIN, 0.0)


def _queries(cases: list[SpecCase]) -> int:
    return sum(len(c.unsafe.disjuncts) for c in cases)


def _undecided(status: Status) -> Answer:
    return (Status.TIMEOUT if status is Status.TIMEOUT else Status.UNKNOWN), ""


def _decide_two(field: str, vnnlib_path: Path, query: TwoNetworkQuery, timeout: float,
                base: Path | None, executor: Executor | None) -> Answer:
    t0 = time.perf_counter()
    nets = dict(parse_network_field(field, base))
    p_f, p_g = nets[query.first], nets[query.second]
    recipe = partial(pair, load_network(p_f), load_network(p_g), "stacked")
    cases = [SpecCase(box, query.unsafe) for box in query.inputs.boxes]
    d = parallel.decide(recipe, cases, own_budget(timeout - (time.perf_counter() - t0),
                                                  _queries(cases), PAIR_OWN_SHARE),
                        executor=executor)
    if d.status is Status.HOLDS:
        return Status.HOLDS, ""
    if d.status is Status.VIOLATED:
        replayed = replay_pair(query, p_f, p_g, d.x)
        if replayed is not None:
            return Status.VIOLATED, two_network_assignment(query, d.x, *replayed)
    if timeout - (time.perf_counter() - t0) - WRITE_MARGIN < _queries(cases) * MIN_QUERY:
        return _undecided(d.status)
    with tempfile.TemporaryDirectory(prefix="nnbisim-run-") as tmp:
        tr = translate(field, vnnlib_path, tmp, base=base)
        left = timeout - (time.perf_counter() - t0) - WRITE_MARGIN
        status, x = marabou_per_disjunct(tr.merged, read_spec_cases(tr.vnnlib1), left,
                                         Path(tmp))
    if status is Status.HOLDS:
        return Status.HOLDS, ""
    if status is Status.VIOLATED and x is not None:
        replayed = replay_pair(query, p_f, p_g, x)
        if replayed is not None:
            return Status.VIOLATED, two_network_assignment(query, x, *replayed)
    return _undecided(status)


def _decide_coupled(field: str, query: CoupledQuery, timeout: float, base: Path | None
                    ) -> Answer:
    """A query whose inputs are coupled otherwise than by equality: the own engine on the
    whole timeout (:mod:`nnbisim.tasks.coupled`; Marabou has no merged form of it here)."""
    t0 = time.perf_counter()
    nets = dict(parse_network_field(field, base))
    p_f, p_g = nets[query.first], nets[query.second]
    net_f = load_network(p_f)
    net_g = net_f if p_g == p_f else load_network(p_g)
    left = timeout - (time.perf_counter() - t0) - WRITE_MARGIN
    a = decide_coupled(query, net_f, net_g, p_f, p_g, max(left, 0.1))
    if a.status is Status.VIOLATED:
        return Status.VIOLATED, two_network_assignment(query, a.x_f, a.y_f, a.y_g, x_g=a.x_g)
    if a.status is Status.HOLDS:
        return Status.HOLDS, ""
    return _undecided(a.status)


def _own_then_marabou(model: Path, cases: list[SpecCase], timeout: float,
                      executor: Executor | None) -> tuple[Status, np.ndarray | None]:
    """The own engine, then Marabou on what it leaves (one disjunct per query)."""
    t0 = time.perf_counter()
    status, x = Status.UNKNOWN, None
    try:
        net = load_network(model)
    except UnsupportedModelError:
        net = None
    if net is not None:
        own = own_budget(timeout - (time.perf_counter() - t0), _queries(cases))
        d = parallel.decide(partial(subject_of, model, net), cases, own, executor=executor)
        status, x = d.status, d.x
    if status in (Status.HOLDS, Status.VIOLATED):
        return status, x
    left = timeout - (time.perf_counter() - t0) - WRITE_MARGIN
    if left >= _queries(cases) * MIN_QUERY:
        with tempfile.TemporaryDirectory(prefix="nnbisim-run-") as tmp:
            status, x = marabou_per_disjunct(model, cases, left, Path(tmp))
    return status, x


def _decide_one(model: Path, vnnlib_path: Path, timeout: float, executor: Executor | None
                ) -> Answer:
    cases = read_spec_cases(vnnlib_path)
    status, x = _own_then_marabou(model, cases, timeout, executor)
    if status is Status.HOLDS:
        return Status.HOLDS, ""
    if status is Status.VIOLATED and x is not None:
        verdict = confirm_violation(Verdict(Status.VIOLATED, "nnbisim", counterexample=x),
                                    model, cases)
        if verdict.status is Status.VIOLATED:
            if detect_version(read_text(vnnlib_path), str(vnnlib_path)) == "1.0":
                return Status.VIOLATED, counterexample_1_0(verdict.counterexample,
                                                           verdict.output)
            (xn, xt, xs), (yn, yt, ys) = declared(vnnlib_path)[:2]
            return Status.VIOLATED, assignment_2_0([(xn, xt, xs, verdict.counterexample),
                                                    (yn, yt, ys, verdict.output)])
        status = Status.UNKNOWN
    return _undecided(status)


def run_instance(field: str, vnnlib_path: str | Path, result: str | Path, timeout: float,
                 base: str | Path | None = None, executor: Executor | None = None) -> Status:
    """Decide one VNN-COMP instance within ``timeout`` seconds, write ``result`` and return the
    answer (``result`` says it in VNN-COMP's words: ``sat``, ``unsat``, ...). Errors in the
    instance itself (missing files, malformed VNN-LIB) are written as ``error`` with the reason
    and re-raised for the caller's exit code. ``executor``: the own engine's branch and bound
    on its workers (:mod:`nnbisim.search.parallel`; None: in this process; a coupled query's
    search stays in this process)."""
    vnnlib_path = Path(vnnlib_path)
    base_path = Path(base) if base is not None else find_base(field, vnnlib_path)
    try:
        nets = parse_network_field(field, base_path)
        spec = read_spec(vnnlib_path)
        # an earlier run's answer must not survive this run being killed: unknown until decided
        write_result(Path(result), Status.UNKNOWN.vnncomp)
        two = isinstance(spec, TwoNetworkQuery | CoupledQuery)
        if len(nets) == 2 and isinstance(spec, CoupledQuery):
            status, cex = _decide_coupled(field, spec, timeout, base_path)
        elif len(nets) == 2 and two:
            status, cex = _decide_two(field, vnnlib_path, spec, timeout, base_path, executor)
        elif len(nets) == 1 and not two:
            status, cex = _decide_one(nets[0][1], vnnlib_path, timeout, executor)
        else:
            status, cex = Status.UNKNOWN, ""
            log.warning("%d networks for a query over %s: not supported", len(nets),
                        "two networks" if two else "one network")
    except NnbisimError as exc:
        try:
            write_text(result, f"error\n{exc}\n")
        except SpecError:
            pass  # the result cannot be written either: the instance's own error comes first
        raise
    write_result(Path(result), status.vnncomp, cex)
    return status
