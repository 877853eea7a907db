"""``nnbisim vnncomp solve``: every instance of a benchmark folder, on many workers, scored.

Each line of ``instances.csv`` (one network with a 1.0/2.0 property, or a 2026 network field
with a two-network 2.0 query; ``.gz`` files too) is one unit of work for an
:class:`~nnbisim.adapters.executor.Executor`: nnbisim's own tool run in the worker process
(:func:`nnbisim.vnncomp.run.run_instance`), or any tool's VNN-COMP scripts. Every ``sat`` is
checked there and then (:func:`nnbisim.vnncomp.score.check_counterexample`). Rows stream to the
results CSV (``onnx,vnnlib,result,seconds`` then ``replays,note``) as units end: a rerun skips
the instances it holds, so an interrupted run resumes. A unit the executor kills (past its time
limit plus :data:`UNIT_SLACK`) is ``timeout``, a crashed one ``error``.
"""

from __future__ import annotations

import csv
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nnbisim.adapters.executor import Executor, one_torch_thread
from nnbisim.core.errors import InputError, NnbisimError, OverwriteError
from nnbisim.core.pool import OK, TIMEOUT, Outcome, Progress, Unit, default_workers
from nnbisim.specs.results import RESULT_WORDS
from nnbisim.verifiers.vnncomp_tool import VnncompVerifier
from nnbisim.vnncomp.formats import Instance, format_network_field, read_instances
from nnbisim.vnncomp.run import run_instance
from nnbisim.vnncomp.score import check_counterexample, judge, read_expected, summary

FIELDS = ("onnx", "vnnlib", "result", "seconds", "replays", "note")
UNIT_SLACK = 30.0  # seconds a unit may take past its time limit (loading, the replay check)


@dataclass(frozen=True)
class SolveOptions:
    """``tool``: ``nnbisim`` or a folder with VNN-COMP's scripts; each instance gets its
    timeout times ``timeout_factor``; ``fresh`` starts the results file over."""

    tool: str = "nnbisim"
    timeout_factor: float = 1.0
    fresh: bool = False


def solve_unit(inst: Instance, limit: float, tool: str, base: Path, cores: int = 1) -> dict:
    """In a worker: one instance answered within ``limit`` seconds, its sat checked. A tool's
    scripts see ``NNBISIM_WORKERS=cores`` (unless set): nnbisim's own ``run_instance.sh`` then
    spreads its search over this worker's share of the cores, not all of them."""
    os.environ.setdefault("NNBISIM_WORKERS", str(cores))
    net = (str(inst.networks[0][1]) if len(inst.networks) == 1 and not inst.field.startswith("[")
           else format_network_field([(n, str(p)) for n, p in inst.networks]))
    with tempfile.TemporaryDirectory(prefix="nnbisim-solve-") as tmp:
        result = Path(tmp) / "result.txt"
        t0, note = time.perf_counter(), ""
        if tool == "nnbisim":
            try:
                run_instance(inst.field, inst.vnnlib, result, limit, base=base)
            except NnbisimError as exc:
                note = str(exc)
            text = result.read_text(errors="replace") if result.is_file() else None
        else:
            text, _, note = VnncompVerifier(Path(tool), category=base.name).answer(
                net, inst.vnnlib, limit)
        seconds = time.perf_counter() - t0
    words = (text or "").split()
    word = words[0].lower() if words and words[0].lower() in RESULT_WORDS else "error"
    if text is None and note.startswith("killed"):
        word = "timeout"
    replays = ""
    if word == "sat":
        why = check_counterexample(inst, text)
        replays, note = ("yes", note) if why is None else ("no", why)
    return {"result": word, "seconds": round(seconds, 2), "replays": replays,
            "note": " ".join(note.split())[:300]}


def _key(row: dict) -> tuple[str, str]:
    return row["onnx"], row["vnnlib"]


def read_rows(path: Path) -> list[dict]:
    """The rows of a results CSV written by :func:`solve` (none if it does not exist)."""
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and set(FIELDS) - set(rows[0]):
        raise InputError(f"{path}: not a results file of vnncomp solve (columns "
                         f"{','.join(FIELDS)}); give another --results path or pass --fresh")
    return rows


def _append(path: Path, row: dict) -> None:
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, FIELDS, lineterminator="\n", extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(row)
        f.flush()
        os.fsync(f.fileno())


def _row(inst: Instance, o: Outcome) -> dict:
    base = {"onnx": inst.field, "vnnlib": inst.prop}
    if o.status == OK:
        return {**base, **o.value}
    word = "timeout" if o.status == TIMEOUT else "error"
    return {**base, "result": word, "seconds": round(o.seconds, 2), "replays": "",
            "note": o.message[:300]}


def solve(bench: Path, results: Path, executor: Executor, opts: SolveOptions = SolveOptions(),
          on_progress: Callable[[Progress], None] | None = None) -> dict:
    """Answer every instance of ``bench`` not yet in ``results``; the scored rows and summary
    (``rows``: every instance's row with ``limit``, ``expected``, ``judgement``, ``points``)."""
    bench, results = Path(bench), Path(results)
    instances = read_instances(bench / "instances.csv")  # every file checked before any work
    if opts.tool != "nnbisim" and not (Path(opts.tool) / "run_instance.sh").is_file():
        raise InputError(f"--tool {opts.tool}: no run_instance.sh there; give nnbisim or a "
                         "folder with VNN-COMP's tool scripts")
    if not opts.timeout_factor > 0:
        raise InputError(f"--timeout-factor must be positive, got {opts.timeout_factor}")
    if opts.fresh:
        results.unlink(missing_ok=True)
    elif results.exists() and results.is_dir():
        raise OverwriteError(f"{results}: is a folder; give --results a CSV file path")
    done = {_key(r) for r in read_rows(results)}
    by_key = {str(i.line): i for i in instances if (i.field, i.prop) not in done}
    results.parent.mkdir(parents=True, exist_ok=True)
    cores = 1 if executor.ray is not None else max(1, default_workers() // executor.slots)
    units = [Unit(k, solve_unit, (i, i.timeout * opts.timeout_factor, opts.tool, bench, cores),
                  timeout=i.timeout * opts.timeout_factor + UNIT_SLACK)
             for k, i in by_key.items()]
    executor.run(units, lambda o: _append(results, _row(by_key[o.key], o)),
                 initializer=one_torch_thread, on_progress=on_progress)
    return scored(bench, instances, read_rows(results), opts.timeout_factor)


def scored(bench: Path, instances: list[Instance], rows: list[dict], factor: float) -> dict:
    """Rows in the order of ``instances.csv``, judged against ``expected.csv``; the summary."""
    expected = read_expected(bench / "expected.csv")
    have = {_key(r): r for r in rows}
    out = []
    for inst in instances:
        key = (inst.field, inst.prop)
        if key not in have:
            continue
        r, limit = have[key], inst.timeout * factor
        exp = expected.get(key)
        replays = {"yes": True, "no": False}.get(r["replays"])
        s = judge(r["result"], float(r["seconds"]), limit, exp, replays)
        out.append({**r, "limit": limit, "expected": exp or "", "judgement": s.judgement,
                    "points": s.points})
    return {"rows": out, "summary": summary(out), "planned": len(instances),
            "expected": bool(expected)}
