"""The bridge from two-network VNN-LIB 2.0 queries to one merged network any verifier checks.

:func:`translate` turns a two-network equivalence query into the merged network (outputs
``[y_f; y_g; y_f - y_g]``) and a single-network property over it, in VNN-LIB 1.0 and 2.0; a row
of the query that only involves ``y_f - y_g`` is written on the difference outputs, so the
translated property has one term per row where the query did. :func:`back_translate` turns a
counterexample of the merged instance into the 2.0 assignment of the original query, replayed
on the two original files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from nnbisim.adapters.merged_onnx import merge_files
from nnbisim.adapters.replay import OnnxRunner, output_tolerance
from nnbisim.core.errors import InputError, OverwriteError
from nnbisim.specs.coupled import CoupledQuery
from nnbisim.specs.io import read_spec
from nnbisim.specs.results import assignment_2_0
from nnbisim.specs.sets import OutputConstraint, Polytope, Property, TwoNetworkQuery
from nnbisim.specs.vnnlib1 import write_vnnlib1
from nnbisim.specs.vnnlib2 import write_vnnlib2
from nnbisim.tasks.coupled import replay_coupled
from nnbisim.vnncomp.coupled_bridge import coupled_inputs, translate_coupled
from nnbisim.vnncomp.formats import parse_network_field

MANIFEST = "translation.json"



@dataclass(frozen=True)
class Translation:
    """The files :func:`translate` wrote, and the query they stand for."""

    merged: Path
    vnnlib1: Path
    vnnlib2: Path
    manifest: Path
    query: TwoNetworkQuery

def merged_unsafe(unsafe: OutputConstraint, m: int) -> OutputConstraint:
    """An unsafe set over ``[y_f; y_g]`` (2m columns) as one over the merged outputs
    ``[y_f; y_g; y_f - y_g]`` (3m): a row ``a y_f - a y_g`` becomes ``a d`` (fewer terms, as
    Marabou's parser wants), any other row stays on ``y_f`` and ``y_g``."""
    polys = []
    for p in unsafe.disjuncts:
        rows = np.zeros((p.mat.shape[0], 3 * m))
        for r, row in enumerate(p.mat):
            a, b = row[:m], row[m:]
            if np.array_equal(a, -b) and a.any():
                rows[r, 2 * m:] = a
            else:
                rows[r, :2 * m] = row
        polys.append(Polytope(rows, p.rhs, p.strict))
    return OutputConstraint(tuple(polys))

def translate(field: str, query_path: str | Path, out_dir: str | Path, *,
              base: str | Path | None = None, force: bool = False) -> Translation:
    """A two-network 2.0 query and its network field as one merged ONNX (``merged.onnx``,
    outputs ``[y_f; y_g; y_f - y_g]``) with the single-network property over it in 1.0
    (``merged.vnnlib``) and 2.0 (``merged_v2.vnnlib``), and ``translation.json`` recording what
    stands for what (for :func:`back_translate`)."""
    query_path = Path(query_path)
    pairs = dict(parse_network_field(field, base))
    query = read_spec(query_path)
    if not isinstance(query, TwoNetworkQuery | CoupledQuery):
        raise InputError(f"{query_path}: is a single-network property; translate takes a "
                         "two-network VNN-LIB 2.0 query (declare-network f ... g)")
    missing = [n for n in (query.first, query.second) if n not in pairs]
    if missing or len(pairs) != 2:
        raise InputError(f"{query_path} declares networks {query.first!r} and {query.second!r} "
                         f"but the network field names {sorted(pairs)}; give one path for each")
    out = Path(out_dir)
    names = ("merged.onnx", "merged.vnnlib", "merged_v2.vnnlib", MANIFEST)
    if out.exists() and any((out / n).exists() for n in names) and not force:
        raise OverwriteError(f"{out}: already holds a translation; pass --force to overwrite")
    out.mkdir(parents=True, exist_ok=True)
    p1, p2 = pairs[query.first], pairs[query.second]
    if isinstance(query, CoupledQuery):
        merged, v1, v2, extra = translate_coupled(query_path, query, p1, p2, out)
        return Translation(merged, v1, v2, _manifest(out, query_path, query, p1, p2, extra),
                           query)
    model = merge_files(p1, p2, outputs="all", exact=True)  # Marabou's unsat on it is trusted
    onnx.checker.check_model(model)
    merged = out / "merged.onnx"
    onnx.save(model, str(merged))
    m = query.n_outputs
    prop = Property(query.inputs, merged_unsafe(query.unsafe, m), 3 * m, query.input_shape,
                    (1, 3 * m))
    v1, v2 = out / "merged.vnnlib", out / "merged_v2.vnnlib"
    comment = (f"translated by nnbisim from {query_path.name}: Y_0..Y_{m - 1} = {query.first}, "
               f"Y_{m}..Y_{2 * m - 1} = {query.second}, Y_{2 * m}..Y_{3 * m - 1} = their "
               "difference")
    write_vnnlib1(prop, v1, comment=comment)
    write_vnnlib2(prop, path=v2)
    return Translation(merged, v1, v2, _manifest(out, query_path, query, p1, p2, {}), query)


def _manifest(out: Path, query_path: Path, query: TwoNetworkQuery | CoupledQuery, p1: Path,
              p2: Path, extra: dict) -> Path:
    """``translation.json``: what stands for what, for :func:`back_translate`."""
    manifest = out / MANIFEST
    manifest.write_text(json.dumps({
        "query": str(query_path.resolve()), "first": query.first, "second": query.second,
        "networks": {query.first: str(p1.resolve()), query.second: str(p2.resolve())},
        "n_outputs": query.n_outputs, "input_shape": list(query.input_shape),
        "output_shape": list(query.output_shape), "merged": "merged.onnx",
        "vnnlib1": "merged.vnnlib", "vnnlib2": "merged_v2.vnnlib", **extra}, indent=2))
    return manifest

def two_network_assignment(query: TwoNetworkQuery | CoupledQuery, x: np.ndarray,
                           y_f: np.ndarray, y_g: np.ndarray, dtype: str = "float32",
                           x_g: np.ndarray | None = None) -> str:
    """The 2.0 assignment of a two-network query: ``X_f``, ``X_g`` (``x`` too unless given),
    ``Y_f``, ``Y_g``."""
    f, g = query.first, query.second
    ins, outs = query.input_shape, query.output_shape
    return assignment_2_0([(f"X_{f}", dtype, ins, x),
                           (f"X_{g}", dtype, ins, x if x_g is None else x_g),
                           (f"Y_{f}", dtype, outs, y_f), (f"Y_{g}", dtype, outs, y_g)])

def replay_pair(query: TwoNetworkQuery, p_f: Path, p_g: Path, x: np.ndarray,
                tol: float = 1e-6) -> tuple[np.ndarray, np.ndarray] | None:
    """``(y_f, y_g)`` from onnxruntime on the two files if ``x`` is in the query's input set
    and the outputs reach its unsafe set (within ``tol`` relative), else None."""
    x = np.asarray(x, np.float64).reshape(-1)
    for box in query.inputs.boxes:
        scale = max(1.0, float(np.max(np.abs([box.lower, box.upper]))))
        if not box.contains(x, tol * scale):
            continue
        xc = np.clip(x, box.lower, box.upper)
        y_f, y_g = OnnxRunner(p_f).run(xc), OnnxRunner(p_g).run(xc)
        y = np.concatenate([y_f, y_g])
        if query.unsafe.satisfied_by(y, output_tolerance(y, tol)):
            return y_f, y_g
    return None

def back_translate(manifest: str | Path, x: np.ndarray) -> str:
    """A counterexample input of the merged instance as the 2.0 assignment of the original
    two-network query, after replaying it on the two original files; refuses an input that
    does not violate the original query there."""
    info = json.loads(Path(manifest).read_text())
    query = read_spec(info["query"])
    p_f, p_g = Path(info["networks"][info["first"]]), Path(info["networks"][info["second"]])
    if isinstance(query, CoupledQuery):
        got = replay_coupled(query, p_f, p_g, coupled_inputs(info, x))
        if got is None:
            raise InputError(f"the counterexample does not violate {info['query']} (strictly, "
                             f"where it says <) on {p_f.name} and {p_g.name} in onnxruntime; "
                             "it cannot be translated back")
        x_f, x_g, y_f, y_g = got
        return two_network_assignment(query, x_f, y_f, y_g, x_g=x_g)
    replayed = replay_pair(query, p_f, p_g, x)
    if replayed is None:
        raise InputError(f"the counterexample does not violate {info['query']} on "
                         f"{p_f.name} and {p_g.name} in onnxruntime; it cannot be translated "
                         "back")
    return two_network_assignment(query, np.ravel(x), *replayed)
