"""VNN-COMP's formats: instance network fields, ``instances.csv``, result files, and the bridge
from two-network VNN-LIB 2.0 queries to one merged network that any verifier checks.

An instance's network field is one ONNX path, or (VNN-COMP 2026) a Python-literal list of
``(name, path)`` pairs for a query over several networks, e.g.
``[('f', 'onnx/A.onnx'), ('g', 'onnx/A_pruned5.onnx')]``; paths are relative to the benchmark
folder. A result file starts with ``sat``, ``unsat``, ``timeout``, ``unknown`` or ``error``;
after ``sat`` comes the counterexample: for a VNN-LIB 1.0 property the assignments
``((X_0 v) ... (Y_0 v) ...)``; for 2.0, for each declared variable in order a header line
``NAME TYPE [shape]`` and its values one per line.

:func:`translate` turns a two-network equivalence query into the merged network (outputs
``[y_f; y_g; y_f - y_g]``) and a single-network property over it, in VNN-LIB 1.0 and 2.0; a row
of the query that only involves ``y_f - y_g`` is written on the difference outputs, so the
translated property has one term per row where the query did. :func:`back_translate` turns a
counterexample of the merged instance into the 2.0 assignment of the original query, replayed
on the two original files.
"""

from __future__ import annotations

import ast
import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnbisim.core.errors import InputError, OverwriteError, SpecError
from nnbisim.specs.sets import OutputConstraint, Polytope, Property, TwoNetworkQuery
from nnbisim.verifiers.registry import output_tolerance

RESULT_WORDS = ("sat", "unsat", "timeout", "unknown", "error")
MANIFEST = "translation.json"


@dataclass(frozen=True)
class Instance:
    """One line of ``instances.csv``: network field (resolved), property path, timeout."""

    networks: tuple[tuple[str, Path], ...]
    vnnlib: Path
    timeout: float
    field: str  # as written in the csv
    line: int


def parse_network_field(field: str, base: Path | None = None) -> tuple[tuple[str, Path], ...]:
    """``path`` -> ``(("N", path),)``; a list of ``(name, path)`` pairs -> those pairs. Paths
    are resolved against ``base`` (the benchmark folder) and must exist."""
    text = field.strip()
    base = Path(base) if base is not None else Path.cwd()
    if text.startswith("["):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise InputError(f"network field {text!r} is not a Python list of (name, path) "
                             "pairs; write it like [('f', 'onnx/a.onnx'), ('g', 'onnx/b.onnx')]"
                             ) from None
        if (not isinstance(value, list) or not value
                or not all(isinstance(p, tuple) and len(p) == 2
                           and all(isinstance(v, str) for v in p) for p in value)):
            raise InputError(f"network field {text!r} must be a non-empty list of (name, path) "
                             "string pairs")
        pairs = [(name, Path(path)) for name, path in value]
    else:
        pairs = [("N", Path(text))]
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise InputError(f"network field {text!r} names a network twice; give each its own name")
    out = []
    for name, path in pairs:
        full = path if path.is_absolute() else base / path
        if not full.is_file():
            raise InputError(f"network {name}: {full} does not exist; check the network field "
                             f"{text!r} (paths are relative to {base})")
        out.append((name, full))
    return tuple(out)


def format_network_field(pairs: list[tuple[str, str]]) -> str:
    """The 2026 network field for ``(name, relative path)`` pairs."""
    return "[" + ", ".join(f"({name!r}, {path!r})" for name, path in pairs) + "]"


def read_instances(path: str | Path) -> list[Instance]:
    """The lines of an ``instances.csv`` (paths relative to its folder), checked: three
    fields, existing files, a positive timeout."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such instances.csv; give the benchmark's instances file")
    base = path.parent
    out = []
    with path.open(newline="") as f:
        for k, row in enumerate(csv.reader(f), 1):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != 3:
                raise InputError(f"{path}:{k}: {len(row)} fields; each line is network,vnnlib,"
                                 "timeout (quote a network field that holds commas)")
            field, prop, timeout = (c.strip() for c in row)
            try:
                seconds = float(timeout)
            except ValueError:
                raise InputError(f"{path}:{k}: timeout {timeout!r} is not a number") from None
            if not seconds > 0:
                raise InputError(f"{path}:{k}: timeout must be positive, got {timeout}")
            try:
                nets = parse_network_field(field, base)
            except InputError as exc:
                raise InputError(f"{path}:{k}: {exc}") from None
            vnnlib = base / prop
            if not vnnlib.is_file():
                raise InputError(f"{path}:{k}: property {vnnlib} does not exist")
            out.append(Instance(nets, vnnlib, seconds, field, k))
    if not out:
        raise InputError(f"{path}: no instances; each line is network,vnnlib,timeout")
    return out


def write_instances(path: Path, rows: list[tuple[str, str, float]]) -> None:
    """``instances.csv`` lines ``network,vnnlib,timeout`` (fields with commas quoted)."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        for field, prop, timeout in rows:
            writer.writerow([field, prop, f"{timeout:g}"])


# -- result files ------------------------------------------------------------------------------

def _num(v: float) -> str:
    return repr(float(v))


def counterexample_1_0(x: np.ndarray, y: np.ndarray) -> str:
    """VNN-COMP 2021-2025 counterexample: ``((X_0 v)`` ... ``(Y_0 v))``."""
    items = [f"(X_{i} {_num(v)})" for i, v in enumerate(np.ravel(x))]
    items += [f"(Y_{i} {_num(v)})" for i, v in enumerate(np.ravel(y))]
    return "(" + "\n ".join(items) + ")\n"


def assignment_2_0(variables: list[tuple[str, str, tuple[int, ...], np.ndarray]]) -> str:
    """VNN-LIB 2.0 textual assignment: per variable ``NAME TYPE [d1,d2]`` and its values in
    row-major order, one per line."""
    lines = []
    for name, dtype, shape, values in variables:
        flat = np.ravel(values)
        if int(np.prod(shape)) != flat.size:
            raise SpecError(f"{name}: {flat.size} values for shape {list(shape)}")
        lines.append(f"{name} {dtype} [{','.join(str(d) for d in shape)}]")
        lines += [_num(v) for v in flat]
    return "\n".join(lines) + "\n"


def write_result(path: Path, word: str, counterexample: str = "") -> None:
    if word not in RESULT_WORDS:
        raise ValueError(f"result word must be one of {RESULT_WORDS}, not {word!r}")
    Path(path).write_text(word + "\n" + (counterexample if word == "sat" else ""))


# -- the bridge --------------------------------------------------------------------------------

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
        polys.append(Polytope(rows, p.rhs))
    return OutputConstraint(tuple(polys))


def translate(field: str, query_path: str | Path, out_dir: str | Path, *,
              base: str | Path | None = None, force: bool = False) -> Translation:
    """A two-network 2.0 query and its network field as one merged ONNX (``merged.onnx``,
    outputs ``[y_f; y_g; y_f - y_g]``) with the single-network property over it in 1.0
    (``merged.vnnlib``) and 2.0 (``merged_v2.vnnlib``), and ``translation.json`` recording what
    stands for what (for :func:`back_translate`)."""
    import onnx

    from nnbisim.api import merge_files
    from nnbisim.specs.io import read_spec
    from nnbisim.specs.vnnlib1 import write_vnnlib1
    from nnbisim.specs.vnnlib2 import write_vnnlib2

    query_path = Path(query_path)
    pairs = dict(parse_network_field(field, base))
    query = read_spec(query_path)
    if not isinstance(query, TwoNetworkQuery):
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
    model = merge_files(p1, p2, outputs="all")
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
    manifest = out / MANIFEST
    manifest.write_text(json.dumps({
        "query": str(query_path.resolve()), "first": query.first, "second": query.second,
        "networks": {query.first: str(p1.resolve()), query.second: str(p2.resolve())},
        "n_outputs": m, "input_shape": list(query.input_shape),
        "output_shape": list(query.output_shape), "merged": merged.name,
        "vnnlib1": v1.name, "vnnlib2": v2.name}, indent=2))
    return Translation(merged, v1, v2, manifest, query)


def two_network_assignment(query: TwoNetworkQuery, x: np.ndarray, y_f: np.ndarray,
                           y_g: np.ndarray, dtype: str = "float32") -> str:
    """The 2.0 assignment of a two-network query: ``X_f``, ``X_g``, ``Y_f``, ``Y_g``."""
    f, g = query.first, query.second
    ins, outs = query.input_shape, query.output_shape
    return assignment_2_0([(f"X_{f}", dtype, ins, x), (f"X_{g}", dtype, ins, x),
                           (f"Y_{f}", dtype, outs, y_f), (f"Y_{g}", dtype, outs, y_g)])


def replay_pair(query: TwoNetworkQuery, p_f: Path, p_g: Path, x: np.ndarray,
                tol: float = 1e-6) -> tuple[np.ndarray, np.ndarray] | None:
    """``(y_f, y_g)`` from onnxruntime on the two files if ``x`` is in the query's input set
    and the outputs reach its unsafe set (within ``tol`` relative), else None."""
    from nnbisim.adapters.replay import OnnxRunner

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
    from nnbisim.specs.io import read_spec

    info = json.loads(Path(manifest).read_text())
    query = read_spec(info["query"])
    p_f, p_g = Path(info["networks"][info["first"]]), Path(info["networks"][info["second"]])
    replayed = replay_pair(query, p_f, p_g, x)
    if replayed is None:
        raise InputError(f"the counterexample does not violate {info['query']} on "
                         f"{p_f.name} and {p_g.name} in onnxruntime; it cannot be translated "
                         "back")
    return two_network_assignment(query, np.ravel(x), *replayed)
