"""The fuzz campaign of issue 26: random small pairs against an exact MILP oracle (soundness),
and malformed inputs through the command line (clean refusals), counted by kind.

Soundness: ``--pairs`` random pairs, N1 a 5-8-8-2 ReLU network and N2 made from it (perturbed,
float16, pruned) or not (unrelated, one hidden layer deeper, one shallower), over a random
box; ``compute_epsilon`` (own engine, a work limit of ``--max-boxes`` boxes, a small
``--rel-gap``: the nearer a bound comes to the exact value, the harder it is tested) against
the oracle of ``tests/fuzz_oracle.py`` (scipy's HiGHS, exact up to its tolerances). Per output
and sign, witnessed <= exact <= certified must hold (a violation otherwise); the ratio is the
certified eps over the exact one.

Bad input: every maker of ``tests/fuzz_oracle.py`` (malformed ONNX, VNN-LIB, .pth, gzip files
and bad options or output paths), ``--rounds`` times with other random choices, each through
``python -m nnbisim.cli``: a clean refusal is exit 2 with one line on stderr; the others are
tracebacks, inputs accepted silently (exit 0) and anything else.

    python bench/fuzz.py [--pairs 200] [--max-boxes 2000] [--rel-gap 0.001] [--rounds 3]
        [--jobs 2]

Rows go to bench/results/fuzz.jsonl as they finish (a rerun resumes), the table to fuzz.md.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
import zlib
from collections import Counter
from functools import cache
from pathlib import Path

import _threads  # noqa: F401 - first: one thread per process
import numpy as np
from harness import ROOT, WORK, Results, parser, run

sys.path.insert(0, str(ROOT / "tests"))
import fuzz_oracle as fz  # noqa: E402 - the campaign's helpers live beside the tests

from nnbisim.adapters.onnx_write import network_to_model, save_model  # noqa: E402
from nnbisim.specs.sets import Box, InputSet  # noqa: E402
from nnbisim.tasks.epsilon import compute_epsilon  # noqa: E402
from nnbisim.tasks.options import EpsilonOptions  # noqa: E402

SIZES = [5, 8, 8, 2]
SAFETY_BUDGET = 300.0  # seconds; the work limit ends the searches first
SCRATCH = WORK / "fuzz"  # the workers' good and bad files


def pair_row(k: int, max_boxes: int, rel_gap: float) -> dict:
    """Pair ``k``: its kind, the report against the oracle, the violations."""
    rng = np.random.default_rng([26, k])
    kind = fz.PAIR_KINDS[k % len(fz.PAIR_KINDS)]
    n1, n2 = fz.random_pair(kind, SIZES, rng)
    lo, hi = fz.random_box(SIZES[0], rng)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fuzz-", dir=_work()) as tmp:
        p1 = save_model(network_to_model(n1), Path(tmp) / "n1.onnx")
        p2 = save_model(network_to_model(n2), Path(tmp) / "n2.onnx")
        opts = EpsilonOptions(verifier="bounds", time_budget=SAFETY_BUDGET, max_boxes=max_boxes,
                              rel_gap=rel_gap)
        rep = compute_epsilon(p1, p2, InputSet.of(Box(lo, hi)), opts)
    eps_seconds = time.perf_counter() - t0
    exact = fz.exact_ranges(n1, n2, lo, hi)
    found = []
    for out, (top, bottom) in zip(rep.outputs, exact, strict=True):
        found += [f"output {out.index} max: {v}"
                  for v in fz.violations(out.max_witnessed, top, out.max_certified)]
        found += [f"output {out.index} min: {v}"
                  for v in fz.violations(-out.min_witnessed, bottom, -out.min_certified)]
    eps = max(o.value for pair in exact for o in pair)
    return {"unit": "pair", "k": k, "kind": kind, "max_boxes": max_boxes, "rel_gap": rel_gap,
            "n1": n1.describe(), "n2": n2.describe(), "outputs": n1.out_size,
            "objectives": 2 * n1.out_size, "exact": eps,
            "witnessed": rep.witnessed, "certified": rep.certified,
            "ratio": rep.certified / eps if eps > 0 else None,
            "reasons": [s["reason"] for s in rep.searches],
            "boxes": sum(s.get("boxes", 0) for s in rep.searches), "violations": found,
            "eps_seconds": eps_seconds, "oracle_seconds": time.perf_counter() - t0 - eps_seconds}


@cache
def _work() -> Path:
    """This process's scratch folder (under :data:`SCRATCH`, which the run removes)."""
    SCRATCH.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=SCRATCH))


@cache
def _workshop() -> fz.Workshop:
    return fz.Workshop(_work() / "inputs")


def input_row(name: str, rnd: int) -> dict:
    """Maker ``name``'s input of round ``rnd`` through the command line."""
    w = _workshop()
    case = fz.MAKERS[name](w, np.random.default_rng([rnd, zlib.crc32(name.encode())]))
    out = fz.run_cli(case.argv, w.folder)
    short = str(w.folder)
    return {"unit": "input", "maker": name, "round": rnd, "kind": case.kind, "what": case.what,
            "command": "nnbisim " + " ".join(a.replace(short, "$W") for a in case.argv),
            "verdict": out.verdict, "code": out.code, "lines": out.lines,
            "first_line": out.first_line.replace(short, "$W"),
            "last_line": out.last_line.replace(short, "$W"), "seconds": out.seconds}


def _soundness(rows: list[dict]) -> list[str]:
    pairs = [r for r in rows if r["unit"] == "pair"]
    if not pairs:
        return ["No pairs yet."]
    ratios = [r["ratio"] for r in pairs if r["ratio"] is not None]
    bad = [r for r in pairs if r["violations"]]
    lines = [f"- pairs: {len(pairs)}, outputs: {sum(r['outputs'] for r in pairs)}, output "
             f"signs checked: {sum(r['objectives'] for r in pairs)}",
             f"- violations: **{sum(len(r['violations']) for r in pairs)}** (in {len(bad)} "
             "pairs)",
             f"- certified / exact eps: median {statistics.median(ratios):.4g}, max "
             f"{max(ratios):.4g} ({len(ratios)} pairs with exact eps > 0)" if ratios else "",
             f"- searches stopped by: {dict(Counter(x for r in pairs for x in r['reasons']))}",
             "", "| N2 made by | pairs | violations | median certified / exact | max | "
             "median s (eps + oracle) |", "|---|---:|---:|---:|---:|---:|"]
    for kind in fz.PAIR_KINDS:
        rs = [r for r in pairs if r["kind"] == kind]
        rr = [r["ratio"] for r in rs if r["ratio"] is not None]
        if rs:
            secs = statistics.median(r["eps_seconds"] + r["oracle_seconds"] for r in rs)
            lines.append(f"| {kind} | {len(rs)} | {sum(len(r['violations']) for r in rs)} | "
                         f"{statistics.median(rr) if rr else float('nan'):.4g} | "
                         f"{max(rr) if rr else float('nan'):.4g} | {secs:.2f} |")
    lines += [f"- pair {r['k']} ({r['kind']}): {v}" for r in bad for v in r["violations"]]
    return lines


def _inputs(rows: list[dict]) -> list[str]:
    tried = [r for r in rows if r["unit"] == "input"]
    if not tried:
        return ["No inputs yet."]
    count = Counter((r["kind"], r["verdict"]) for r in tried)
    lines = [f"- inputs: {len(tried)}, " + ", ".join(
        f"{v}: **{sum(n for (_, vv), n in count.items() if vv == v)}**" for v in fz.VERDICTS),
        "", "| kind | inputs | " + " | ".join(fz.VERDICTS) + " |",
        "|---|---:|" + "---:|" * len(fz.VERDICTS)]
    for kind in fz.KINDS:
        n = sum(c for (k, _), c in count.items() if k == kind)
        if n:
            lines.append(f"| {kind} | {n} | " + " | ".join(str(count[(kind, v)])
                                                          for v in fz.VERDICTS) + " |")
    odd = sorted((r for r in tried if r["verdict"] != "clean refusal"),
                 key=lambda r: (r["verdict"], r["maker"], r["round"]))
    if odd:
        lines += ["", "Not refused cleanly (`$W`: the bench's scratch folder of good files):", ""]
    for r in odd:
        said = r["first_line"] if r["verdict"] != "traceback" else r["last_line"]
        lines.append(f"- {r['verdict']} (exit {r['code']}, {r['lines']} lines): {r['what']}: "
                     f"`{r['command']}`: `{said}`")
    return lines


def summarise(res: Results) -> None:
    intro = ("Generated by `bench/fuzz.py` (issue 26). Soundness: random pairs (N1 "
             f"{'-'.join(map(str, SIZES))}) over random boxes, `compute_epsilon` with the own "
             "engine under a work limit against an exact MILP oracle (scipy's HiGHS, "
             "`tests/fuzz_oracle.py`); a violation is a certified bound below the exact "
             "extreme (tolerance 1e-6 (1 + |v|)) or a witnessed value above it (float32 "
             "replay: 1e-5 (1 + |v|)), per output and sign. Bad input: malformed files and "
             "options through `python -m nnbisim.cli`; a clean refusal is exit 2, one line on "
             "stderr, no traceback.")
    lines = res.header("Fuzz campaign: soundness against an exact oracle, and bad input",
                       intro)
    lines += ["## Soundness", "", *_soundness(res.rows), "", "## Bad input", "",
              *_inputs(res.rows)]
    res.md.write_text("\n".join(lines) + "\n")


def _key(row: dict) -> tuple:
    return ("input", row["maker"], row["round"]) if row["unit"] == "input" else ("pair", row["k"])


def main() -> None:
    ap = parser(__doc__, "fuzz")
    ap.add_argument("--pairs", type=int, default=200, help="random pairs against the oracle")
    ap.add_argument("--max-boxes", type=int, default=2000,
                    help="work limit of each eps computation (boxes bounded)")
    ap.add_argument("--rel-gap", type=float, default=1e-3,
                    help="stop each eps computation at this gap (small: bounds near the exact "
                    "value test soundness hardest)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="inputs per maker of malformed inputs (other random choices)")
    args = ap.parse_args()
    res = Results(args.results, args.fresh, check=not args.summarise)
    if not args.summarise:
        inputs = {("input", n, r): (n, r) for r in range(args.rounds) for n in sorted(fz.MAKERS)}
        pairs = {("pair", k): (k, args.max_boxes, args.rel_gap) for k in range(args.pairs)}
        try:
            run(inputs, input_row, res, lambda r: summarise(res), row_key=_key, jobs=args.jobs)
            run(pairs, pair_row, res, lambda r: summarise(res), row_key=_key, jobs=args.jobs)
        finally:
            shutil.rmtree(SCRATCH, ignore_errors=True)
    summarise(res)


if __name__ == "__main__":
    main()
