#!/usr/bin/env python3
"""Regenerate this VNN-COMP benchmark's properties and csv files from a seed.

Usage (in the benchmark folder, as VNN-COMP calls it)::

    python3 generate_properties.py SEED

Needs Python 3.8 or later and numpy only (not nnbisim, not the source networks): it reads
``benchmark.json`` beside it (per pair the input boxes, the eps bracket [witnessed, certified],
the ONNX file names under ``onnx/``, the output count and input shape) and rewrites
``vnnlib/``, ``instances.csv``, ``expected.csv``, ``2.0/vnnlib/``, ``2.0/instances.csv``,
``2.0/expected.csv`` and ``README.md`` (properties gzip'd, ``.vnnlib.gz``, when
``benchmark.json`` says ``"gzip": true``, as VNN-COMP 2026 ships them). Every path it writes is
relative to the folder, so the folder can be moved anywhere.

The seed (numpy's ``default_rng``) picks each threshold inside its safe range (``unsat``: the
certified eps times 1.01..1.02, rounded up; ``sat``: the witnessed eps times 0.85..0.95) and the
order of the instances. It never changes the file names, the expected answers, ``onnx/`` or
``benchmark.json``. With the seed the folder was written with (``seed`` in ``benchmark.json``)
the files come out byte for byte as shipped.

This file is ``nnbisim.vnncomp.generate_properties``, copied verbatim into each benchmark
folder; nnbisim writes the shipped files with the same code.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import shutil
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import numpy as np

SAT_FACTORS = (0.85, 0.95)  # sat-side threshold: this fraction of the witnessed eps
# unsat-side threshold: certified eps times 1.01 to 1.02 (a margin far above float32 noise)
UNSAT_FACTORS = (1.01, 1.02)
TINY = float(np.finfo(np.float64).tiny)


def _writable(x: float) -> float:
    """``x`` as a float C++ readers (``std::stod``: Marabou, vnnlib) read back exactly."""
    x = float(x) + 0.0  # no "-0.0"
    if not np.isfinite(x) or (x != 0.0 and abs(x) < TINY):
        raise ValueError(f"cannot write {x!r} into a VNN-LIB file (not finite, or subnormal)")
    return x


def num1(x: float) -> str:
    """A number in VNN-LIB 1.0: ``repr`` (exact), ``e+`` as ``e`` (Marabou's tokenizer)."""
    return repr(_writable(x)).replace("e+", "e")


def num2(x: float) -> str:
    """A number in VNN-LIB 2.0: plain decimal with a ``.``, no exponent (the vnnlib package)."""
    text = format(Decimal(repr(_writable(x))), "f")
    return text if "." in text else text + ".0"


def _element(name: str, shape: tuple) -> Callable[[int], str]:
    """Flat index -> ``name[i,j,...]`` (C order) for a tensor of ``shape``."""
    def var(flat: int) -> str:
        if not shape:
            return name
        return name + "[" + ",".join(str(int(i)) for i in np.unravel_index(flat, shape)) + "]"
    return var


def _boxes(rec: dict, var, num) -> list:
    """The ``assert`` lines of the pair's input boxes: one bound per line for a single box."""
    boxes = []
    for k in range(len(rec["lower"])):
        lo, hi = rec["lower"][k], rec["upper"][k]
        bounds = []
        for i in range(len(lo)):
            bounds += [f"(<= {var(i)} {num(hi[i])})", f"(>= {var(i)} {num(lo[i])})"]
        boxes.append(bounds)
    if len(boxes) == 1:
        return [f"(assert {b})" for b in boxes[0]]
    return ["(assert (or", *(f"    (and {' '.join(b)})" for b in boxes), "))"]


def _any_of(rows: list) -> list:
    """``(assert (or (and ROW) ...))`` for one-row disjuncts."""
    if len(rows) == 1:
        return [f"(assert {rows[0]})"]
    return ["(assert (or", *(f"    (and {r})" for r in rows), "))"]


def vnnlib1_text(rec: dict, eps: float, note: str) -> str:
    """VNN-LIB 1.0 over the merged network (outputs ``[y1; y2; y1 - y2]``): is some
    ``|y1 - y2|_i >= eps`` over the region?"""
    m, n = int(rec["n_outputs"]), len(rec["lower"][0])
    lines = [f"; {c}" for c in note.splitlines()]
    lines += [""] + [f"(declare-const X_{i} Real)" for i in range(n)]
    lines += [""] + [f"(declare-const Y_{j} Real)" for j in range(3 * m)]
    lines += ["", "; input set", *_boxes(rec, lambda i: f"X_{i}", num1)]
    rows = []
    for i in range(m):
        rows += [f"(>= Y_{2 * m + i} {num1(eps)})", f"(<= Y_{2 * m + i} {num1(-eps)})"]
    lines += ["", "; unsafe outputs", *_any_of(rows)]
    return "\n".join(lines) + "\n"


def _declare(net: str, ins: tuple, outs: tuple, relation: str | None, other: str) -> list:
    def dims(s: tuple) -> str:
        return "[" + ",".join(str(d) for d in s) + "]"

    rel = [f"  ({relation} {other})"] if relation else []
    return [f"(declare-network {net}", *rel, f"  (declare-input X_{net} float32 {dims(ins)})",
            f"  (declare-output Y_{net} float32 {dims(outs)}))"]


def vnnlib2_text(rec: dict, eps: float) -> str:
    """VNN-LIB 2.0 over the original pair f, g fed the same input: is some
    ``|Y_f - Y_g|_i >= eps`` over the region?"""
    lines, yf, yg = _head2(rec)
    rows = []
    for i in range(int(rec["n_outputs"])):
        diff = f"(- {yf(i)} {yg(i)})"
        rows += [f"(>= {diff} {num2(eps)})", f"(<= {diff} {num2(-eps)})"]
    return "\n".join(lines + _any_of(rows)) + "\n"


def _ranks(m: int, delta: float, y1, y2, num, rel: tuple) -> list:
    """Top-1 disagreement, one ``(and ...)`` per class pair ``(c, c')``: ``y1`` ranks ``c``
    first by more than ``delta`` and ``y2`` ranks ``c'`` above ``c`` (``rel``: the strict and
    the closed comparison words)."""
    strict, _ = rel
    out = []
    for c in range(m):
        for c2 in range(m):
            if c2 == c:
                continue
            rows = [f"({strict} (- {y1(j)} {y1(c)}) {num(-delta)})" if delta else
                    f"({strict} {y1(j)} {y1(c)})" for j in range(m) if j != c]
            rows.append(f"({strict} {y2(c)} {y2(c2)})")
            out.append(" ".join(rows))
    return ["(assert (or", *(f"    (and {r})" for r in out), "))"]


def vnnlib1_top1_text(rec: dict, delta: float, note: str) -> str:
    """VNN-LIB 1.0 over the merged network: does N2's top class differ from N1's somewhere
    N1 leads by more than ``delta``? (Closed comparisons: 1.0 tools read ``<`` as ``<=``.)"""
    m, n = int(rec["n_outputs"]), len(rec["lower"][0])
    lines = [f"; {c}" for c in note.splitlines()]
    lines += [""] + [f"(declare-const X_{i} Real)" for i in range(n)]
    lines += [""] + [f"(declare-const Y_{j} Real)" for j in range(3 * m)]
    lines += ["", "; input set", *_boxes(rec, lambda i: f"X_{i}", num1), "", "; unsafe outputs",
              *_ranks(m, delta, lambda j: f"Y_{j}", lambda j: f"Y_{m + j}", num1,
                      ("<=", "<="))]
    return "\n".join(lines) + "\n"


def _head2(rec: dict) -> tuple:
    """The 2.0 declarations and input lines shared by both questions, and the output names."""
    m, n = int(rec["n_outputs"]), len(rec["lower"][0])
    ins = tuple(int(d) for d in rec["input_shape"])
    outs = tuple(int(d) for d in rec.get("output_shape", (1, m)))
    if int(np.prod(ins)) != n:
        raise ValueError(f"pair {rec['pair']}: input shape {list(ins)} does not hold {n} values")
    xf, xg = _element("X_f", ins), _element("X_g", ins)
    lines = ["(vnnlib-version <2.0>)", "", *_declare("f", ins, outs, None, ""),
             *_declare("g", ins, outs, rec["relation"], "f"), "",
             "; g gets the same input as f",
             *(f"(assert (== {xf(i)} {xg(i)}))" for i in range(n)), "",
             "; input set", *_boxes(rec, xf, num2), "", "; unsafe outputs over [Y_f ; Y_g]"]
    return lines, _element("Y_f", outs), _element("Y_g", outs)


def vnnlib2_top1_text(rec: dict, delta: float) -> str:
    """VNN-LIB 2.0 over the pair: the top-1 disagreement, strict as the question is."""
    lines, yf, yg = _head2(rec)
    lines += _ranks(int(rec["n_outputs"]), delta, yf, yg, num2, ("<", "<="))
    return "\n".join(lines) + "\n"


def _sides(rec: dict, u: float, f: float) -> tuple:
    """The unsat and the sat threshold of a pair: eps (certified up, witnessed down) or, for
    top-1, delta (proved up, the witness's lead down)."""
    if rec.get("question") == "top1":
        return (float(np.nextafter(rec["delta_proved"] * u, np.inf)),
                float(f * rec["lead_witnessed"]))
    return float(np.nextafter(rec["certified"] * u, np.inf)), float(f * rec["witnessed"])


def instances(info: dict, seed: int) -> list:
    """The instances a seed makes: per pair a sat and an unsat threshold, in seeded order."""
    rng = np.random.default_rng(seed)
    rows = []
    for rec in info["pairs"]:
        u, f = rng.uniform(*UNSAT_FACTORS), rng.uniform(*SAT_FACTORS)
        unsat, sat = _sides(rec, u, f)
        rows.append({"rec": rec, "side": "unsat", "eps": unsat})
        rows.append({"rec": rec, "side": "sat", "eps": sat})
    order = rng.permutation(len(rows))
    return [rows[i] for i in order]


def network_field(pairs: list) -> str:
    """The VNN-COMP 2026 network field for ``(name, relative path)`` pairs."""
    return "[" + ", ".join(f"({name!r}, {path!r})" for name, path in pairs) + "]"


def _write(path: Path, text: str) -> None:
    """``text`` to ``path``, gzip'd (reproducibly: no time stamp) when the name ends in .gz."""
    data = text.encode("utf-8")
    if path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)


def _csv(rows: list) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def _note(rec: dict, side: str, eps: float) -> str:
    m = int(rec["n_outputs"])
    if rec.get("question") == "top1":
        return (f"pair {rec['pair']}: is N2's top class other than N1's somewhere over "
                f"{rec['region']} where N1 leads by more than {eps!r}? expected {side} "
                f"(a disagreement with lead {rec['lead_witnessed']!r}; agreement proved above "
                f"{rec['delta_proved']!r}); outputs Y_0..Y_{m - 1} = y1, "
                f"Y_{m}..Y_{2 * m - 1} = y2, Y_{2 * m}..Y_{3 * m - 1} = y1 - y2")
    return (f"pair {rec['pair']}: is some |y1 - y2|_i >= {eps!r} over {rec['region']}? "
            f"expected {side} (eps in [{rec['witnessed']!r}, {rec['certified']!r}]); "
            f"outputs Y_0..Y_{m - 1} = y1, Y_{m}..Y_{2 * m - 1} = y2, "
            f"Y_{2 * m}..Y_{3 * m - 1} = y1 - y2")


def regenerate(folder, seed: int) -> None:
    """Write the properties, ``instances.csv``, ``expected.csv`` (both versions) and README
    of a benchmark folder from its ``benchmark.json`` and ``seed``."""
    folder = Path(folder)
    info = json.loads((folder / "benchmark.json").read_text(encoding="utf-8"))
    v2 = folder / "2.0"
    for d in (folder / "vnnlib", v2 / "vnnlib"):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    rows1, rows2, exp1, exp2 = [], [], [], []
    timeout = f"{float(info['timeout']):g}"
    for inst in instances(info, seed):
        rec, side, eps = inst["rec"], inst["side"], inst["eps"]
        top1 = rec.get("question") == "top1"
        prop = (f"vnnlib/p{rec['pair']}_{'top1_' if top1 else ''}{side}.vnnlib"
                + (".gz" if info.get("gzip") else ""))
        text1, text2 = ((vnnlib1_top1_text, vnnlib2_top1_text) if top1 else
                        (vnnlib1_text, vnnlib2_text))
        _write(folder / prop, text1(rec, eps, _note(rec, side, eps)))
        _write(v2 / prop, text2(rec, eps))
        merged = f"onnx/{rec['merged']}"
        field = network_field([("f", f"onnx/{rec['n1']}"), ("g", f"onnx/{rec['n2']}")])
        rows1.append((merged, prop, timeout))
        exp1.append((merged, prop, side))
        rows2.append((field, prop, timeout))
        exp2.append((field, prop, side))
    _write(folder / "instances.csv", _csv(rows1))
    _write(v2 / "instances.csv", _csv(rows2))
    header = [("onnx", "vnnlib", "expected")]
    _write(folder / "expected.csv", _csv(header + exp1))
    _write(v2 / "expected.csv", _csv(header + exp2))
    _write(folder / "README.md", readme(info, seed))


_EPS_INTRO = ("\"is some |N1(x) - N2(x)|_i >= t for x in X?\" with t just 1-2% above the "
              "certified eps (expected `unsat`) and t = 0.85..0.95 x the witnessed eps "
              "(expected `sat`; the witness is in benchmark.json).")
_TOP1_INTRO = ("\"is N2's top class other than N1's for some x in X where N1's top logit leads "
               "by more than t?\" (delta-top-1 agreement) with t just 1-2% above a delta for "
               "which agreement was proved (expected `unsat`) and t = 0.85..0.95 x the lead of "
               "N1 at a replayed disagreement (expected `sat`; the witness is in "
               "benchmark.json). Comparisons are strict in 2.0 and closed in 1.0.")


def _bracket(r: dict) -> str:
    if r.get("question") == "top1":
        return f"top-1 delta | {r['lead_witnessed']:.6g} | {r['delta_proved']:.6g} | own"
    return f"eps | {r['witnessed']:.6g} | {r['certified']:.6g} | {r['engine']}"


def readme(info: dict, seed: int) -> str:
    """The folder's README: what the instances are, how to regenerate them, the eps table."""
    top1 = info.get("question") == "top1"
    lines = [f"# {info['name']}", "",
             "Instances with known answers, generated by nnbisim (`nnbisim vnncomp benchmark`). "
             "Each pair of networks N1, N2 gets two instances over its region X: "
             + (_TOP1_INTRO if top1 else _EPS_INTRO), "",
             "- `instances.csv`, `vnnlib/`: one network per instance, the merged comparison "
             "network `onnx/pK_merged.onnx` (outputs [y1; y2; y1 - y2]), VNN-LIB 1.0.",
             "- `2.0/`: the same questions as two-network VNN-LIB 2.0 queries on the original "
             "pair (`declare-network f`, `g`, inputs tied by `==`), network field "
             "`[('f', ...), ('g', ...)]`.",
             "- `expected.csv` beside each `instances.csv`: the known answers.",
             f"- Regenerate: `python generate_properties.py {seed}` (this folder was written "
             f"with seed {seed}); the seed moves the thresholds inside their safe ranges and "
             "orders the instances, never the answers.", "",
             f"Timeout per instance: {info['timeout']:g} s. The thresholds were bracketed by "
             f"nnbisim's own engine ({info['eps_budget']:g} s per pair):", "",
             "| pair | N1 | N2 | region | question | sat below | unsat above | engine |",
             "|---|---|---|---|---|---:|---:|---|"]
    for r in info["pairs"]:
        lines.append(f"| {r['pair']} | {r['n1']} | {r['n2']} | {r['region']} | "
                     f"{_bracket(r)} |")
    return "\n".join(lines) + "\n"


def main(argv: list) -> int:
    """``generate_properties.py SEED``: regenerate the folder this script is in."""
    if len(argv) != 2 or not argv[1].isdigit():
        sys.exit("usage: python3 generate_properties.py SEED (a non-negative integer)")
    folder = Path(__file__).resolve().parent
    if not (folder / "benchmark.json").is_file():
        sys.exit(f"{folder}: has no benchmark.json; this script regenerates a benchmark folder")
    regenerate(folder, int(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
