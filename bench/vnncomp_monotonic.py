"""``nnbisim vnncomp run`` on a monotonicity benchmark like VNN-COMP 2026's
monotonic_acasxu_2026, regenerated with our own seed, against an earlier commit in the same run.

The benchmark (:mod:`nnbisim.vnncomp.monotonic`): 50 instances, each an ACAS Xu network f and
g ``(equal-to f)`` on the same file, a box, ``X_f[0] <= X_g[0]`` with the other inputs equal,
and the strict violation ``(< Y_f[j] Y_g[j])``; files gzip'd (``.onnx.gz``, ``.vnnlib.gz``), as
the competition ships them. Each instance is answered by ``nnbisim vnncomp run`` with a 100 s
timeout (whole process, start-up included), now and then at ``--baseline`` (default 3d24caa,
before coupled queries), ``--jobs`` instances at a time (default 2: one per core). Every
``sat`` is checked here, independently of nnbisim's own replay: the assignment is parsed,
the inputs checked against the box and the coupling, and onnxruntime run on the decompressed
file must give ``Y_f[j] < Y_g[j]``; every ``unsat`` is checked against 100,000 sampled pairs.

    python bench/vnncomp_monotonic.py [--count 50] [--seed 2026] [--baseline 3d24caa]
"""

from __future__ import annotations

import gzip
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import _threads  # noqa: F401 - first: one thread per process
import numpy as np
import onnxruntime as ort
from acas import ACAS
from harness import Results, baseline_tree, cli_process, parser

from nnbisim.adapters.onnx_load import load_network
from nnbisim.core.errors import SpecError
from nnbisim.specs.results import parse_assignment_2_0
from nnbisim.vnncomp.monotonic import Instance, draw, write_monotonic

TIMEOUT = 100.0


def check_sat(text: str, inst: Instance, onnx_gz: Path) -> str:
    """'ok' when the counterexample holds on the original file, else why not."""
    try:
        v = parse_assignment_2_0(text)
    except SpecError as exc:
        return f"unreadable assignment: {exc}"
    x_f, x_g = v.get("X_f"), v.get("X_g")
    if x_f is None or x_g is None or len(x_f) != 5 or len(x_g) != 5:
        return "no X_f/X_g of 5 values"
    lo, hi = np.array(inst.lower), np.array(inst.upper)
    if np.any(x_f < lo - 1e-9) or np.any(x_f > hi + 1e-9) or not lo[0] <= x_g[0] <= hi[0]:
        return "input outside the box"
    if not (x_f[0] <= x_g[0] and np.array_equal(x_f[1:], x_g[1:])):
        return "coupling broken"
    sess = ort.InferenceSession(gzip.decompress(onnx_gz.read_bytes()),
                                providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
    y = [sess.run(None, {inp.name: x.astype(np.float32).reshape(shape)})[0].ravel()
         for x in (x_f, x_g)]
    j = inst.output
    if not y[0][j] < y[1][j]:
        return f"not strict on the file: Y_f[{j}] {y[0][j]!r} >= Y_g[{j}] {y[1][j]!r}"
    return "ok"


def check_unsat(inst: Instance, onnx_gz: Path, pairs: int = 100_000) -> str:
    """'ok' when no sampled pair (half of them within 1e-3 of the diagonal) breaks the claim,
    in float64 on the network as loaded, else the largest ``Y_g[j] - Y_f[j]`` found."""
    net = load_network(onnx_gz)
    rng = np.random.default_rng(0)
    lo, hi = np.array(inst.lower), np.array(inst.upper)
    x_f = rng.uniform(lo, hi, (pairs, 5))
    x_g = x_f.copy()
    x_g[:, 0] = rng.uniform(x_f[:, 0], hi[0])
    near = pairs // 2
    x_g[:near, 0] = np.minimum(x_f[:near, 0] + rng.exponential(1e-3, near), hi[0])
    worst = float(np.max(net.forward(x_g)[:, inst.output] - net.forward(x_f)[:, inst.output]))
    return "ok" if worst <= 0 else f"sampled Y_g - Y_f up to {worst:.3g}"


def _answer(version: str, path: str | None, row: list[str], folder: Path, k: int) -> dict:
    result = folder / f"result_{version}_{k}.txt"
    seconds, code, _, err = cli_process(["vnncomp", "run", row[0], row[1], str(result),
                                         str(TIMEOUT)], folder, path, timeout=3 * TIMEOUT)
    text = result.read_text() if result.exists() else ""
    answer = text.split()[0] if text.strip() else f"none (exit {code})"
    return {"answer": answer, "seconds": round(seconds, 1), "text": text,
            "why": err.strip().splitlines()[-1:] if err and answer != "sat" else []}


def summarise(results: Results, baseline: str) -> None:
    rows = results.rows
    lines = results.header("vnncomp run on a monotonicity benchmark (monotonic_acasxu_2026 "
                           "form)", f"Made by bench/vnncomp_monotonic.py: {TIMEOUT:g} s per "
                           f"instance, whole processes, now against {baseline} side by side; "
                           "every sat checked on the file by the bench itself.")
    for who in ("now", "base"):
        answers = [r[who] for r in rows]
        counted = ", ".join(f"{a}: {answers.count(a)}" for a in sorted(set(answers)))
        secs = sorted(r[f"{who}_s"] for r in rows)
        median = secs[len(secs) // 2] if secs else float("nan")
        lines.append(f"- {who}: {counted}; median {median} s, max "
                     f"{max(secs, default=float('nan'))} s")
    bad = [r for r in rows if r["now"] == "sat" and r["check"] != "ok"]
    odd = [r for r in rows if r["now"] == "unsat" and r["check"] != "ok"]
    lines += [f"- sat answers whose counterexample fails the bench's own check: {len(bad)}",
              f"- unsat answers contradicted by 100,000 sampled pairs: {len(odd)}", "",
              "| # | network | output | now | s | check | baseline | s |",
              "|---:|---|---:|---|---:|---|---|---:|"]
    for r in sorted(rows, key=lambda r: r["k"]):
        lines.append(f"| {r['k']} | {r['net']} | {r['output']} | {r['now']} | {r['now_s']} | "
                     f"{r['check']} | {r['base']} | {r['base_s']} |")
    results.md.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = parser(__doc__, "vnncomp_monotonic")
    ap.add_argument("--count", type=int, default=50)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--baseline", default="3d24caa")
    opts = ap.parse_args()
    results = Results(opts.results, opts.fresh)
    done = {r["k"] for r in results.rows}
    rng = np.random.default_rng(opts.seed)
    insts = [draw(rng) for _ in range(opts.count)]  # as write_monotonic draws them
    with tempfile.TemporaryDirectory(prefix="nnbisim-mono-") as tmp:
        work = Path(tmp)
        folder = work / "bench"
        rows = write_monotonic(ACAS, folder, opts.count, opts.seed, TIMEOUT, gzip=True)
        old = str(baseline_tree(opts.baseline, work))

        def one(k: int) -> dict:  # now, then the baseline (it refuses these in a second)
            row, inst = rows[k], insts[k]
            a = _answer("now", None, row, folder, k)
            b = _answer(opts.baseline, old, row, folder, k)
            onnx_gz = folder / row[0].split("'")[3]
            check = (check_sat(a["text"], inst, onnx_gz) if a["answer"] == "sat" else
                     check_unsat(inst, onnx_gz) if a["answer"] == "unsat" else "-")
            return {"k": k, "net": inst.network, "output": inst.output,
                    "lower": inst.lower, "upper": inst.upper, "now": a["answer"],
                    "now_s": a["seconds"], "check": check, "why": a["why"],
                    "base": b["answer"], "base_s": b["seconds"], "base_why": b["why"],
                    "baseline": opts.baseline, "seed": opts.seed, "timeout": TIMEOUT}

        todo = [k for k in range(opts.count) if k not in done and not opts.summarise]
        with ThreadPoolExecutor(opts.jobs) as pool:  # one instance per core
            for fut in as_completed([pool.submit(one, k) for k in todo]):
                results.add(fut.result())
                summarise(results, opts.baseline)
                print({k2: v for k2, v in results.rows[-1].items()
                       if k2 not in ("lower", "upper")}, flush=True)
    summarise(results, opts.baseline)


if __name__ == "__main__":
    main()
