"""Per-box cost and tightness of the differential bounds, and what they give a decision.

Two tables from one run, each against today's engine in the same run:

1. Boxes per second on one core, and width: ACAS Xu networks against their float16 copies,
   1,000 random sub-boxes of property 1's box with sides 1/4 to 1/256 of it, bounded in
   batches of 1,000 (all 10 output rows, both signs), by the back-substituting engine with
   glibc's default malloc (the engine before this change: ``backsub, plain malloc``), the same
   with freed memory kept in the process (``nnbisim.core.allocator``, what the command line
   now does) and the differential zonotopes (``zonotope``). The width is the median of
   ``hi - lo`` over boxes and outputs; every bound is checked against 200 samples per box.
2. Decisions: ``|N1 - N2|_j < eps`` on property 1's box (the NeuroDiff question, eps 0.01), by
   the pair subject's branch and bound (split rule smart/gain), per engine: verdict, boxes
   bounded, seconds.

Each unit runs in its own process (the allocator setting is per process), one at a time.

    python bench/diff_throughput.py [--fresh] [--nets 1_1,2_1,5_3]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import _threads  # noqa: F401 - first: one thread per process
import numpy as np
from acas import ACAS, network_file
from harness import Results, parser

FRACTIONS = (1 / 4, 1 / 16, 1 / 64, 1 / 256)
ENGINES = {"backsub, plain malloc": ("backsub", True), "backsub": ("backsub", False),
           "zonotope": ("zonotope", False)}
BOXES, SAMPLES, EPS, MAX_BOXES = 1000, 200, 0.01, 60_000


def _pair(net: str):
    from nnbisim.adapters.onnx_load import load_network
    from nnbisim.core.model import Network
    n1 = load_network(network_file(net))
    n2 = Network.from_weights(
        [layer.weight.astype(np.float16).astype(np.float64) for layer in n1.layers],
        [layer.bias.astype(np.float16).astype(np.float64) for layer in n1.layers])
    return n1, n2


def _box():
    from nnbisim.specs.io import read_spec_cases
    return read_spec_cases(ACAS / "prop_1.vnnlib")[0].box


def throughput(net: str, engine: str, frac: float) -> dict:
    from nnbisim.bounds.diffbounds import DiffEngine
    n1, n2 = _pair(net)
    box = _box()
    rng = np.random.default_rng(0)
    side = (box.upper - box.lower) * frac
    lo = box.lower + rng.random((BOXES, 5)) * (box.upper - box.lower - side)
    hi = lo + side
    eng = DiffEngine(n1, n2, method=ENGINES[engine][0])
    eng.bounds(lo[:8], hi[:8])  # warm up
    t = time.perf_counter()
    res = eng.bounds(lo, hi)
    seconds = time.perf_counter() - t
    xs = lo[:, None] + rng.random((BOXES, SAMPLES, 5)) * side
    d = (n1.forward(xs.reshape(-1, 5)) - n2.forward(xs.reshape(-1, 5))).reshape(BOXES, SAMPLES, 5)
    sound = bool((res.hi.numpy() >= d.max(1) - 1e-11).all()
                 and (res.lo.numpy() <= d.min(1) + 1e-11).all())
    return {"table": "throughput", "net": net, "engine": engine, "fraction": frac,
            "boxes": BOXES, "seconds": round(seconds, 4),
            "boxes_per_s": round(BOXES / seconds, 1),
            "width": float(np.median((res.hi - res.lo).numpy())),
            "sampled_width": float(np.median(d.max(1) - d.min(1))), "sound": sound}


def decision(net: str, engine: str) -> dict:
    from nnbisim.search.bab_types import BabOptions
    from nnbisim.search.decide import DecideOptions, decide
    from nnbisim.search.subjects import pair
    from nnbisim.specs.sets import OutputConstraint, Polytope, SpecCase
    n1, n2 = _pair(net)
    polys = []
    for j in range(5):
        for s in (1.0, -1.0):  # s (y1 - y2)_j >= eps, as -s y1 + s y2 <= -eps
            row = np.zeros(10)
            row[j], row[5 + j] = -s, s
            polys.append(Polytope(row[None], [-EPS]))
    sub = pair(n1, n2, "stacked", method=ENGINES[engine][0])
    t = time.perf_counter()
    d = decide(sub, [SpecCase(_box(), OutputConstraint(tuple(polys)))], 600,
               DecideOptions(split="smart", choose="gain",
                             bab=BabOptions(max_boxes=MAX_BOXES, time_budget=600)))
    return {"table": "decision", "net": net, "engine": engine, "eps": EPS,
            "verdict": d.status.value, "boxes": d.boxes,
            "seconds": round(time.perf_counter() - t, 2)}


def _unit(args: list) -> dict:
    """Run one unit in a fresh process, with or without the allocator setting."""
    plain = ENGINES[args[2]][1]
    env = {**os.environ, **({"NNBISIM_BENCH_PLAIN_MALLOC": "1"} if plain else {})}
    out = subprocess.run([sys.executable, __file__, "--unit", json.dumps(args)], env=env,
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def summarise(results: Results) -> None:
    rows = results.rows
    lines = results.header(
        "Differential bounds: boxes per second, tightness, decisions",
        "ACAS Xu networks against float16 copies, property 1's box; one torch thread per "
        "process. Made by bench/diff_throughput.py.")
    lines += ["## Per-box cost and width (1,000 boxes per cell, 10 rows each)", "",
              "| net | side | engine | boxes/s | x plain | median width | x backsub | "
              "sampled | sound |", "|---|---|---|---:|---:|---:|---:|---:|---|"]
    thr = [r for r in rows if r["table"] == "throughput"]
    key = {(r["net"], r["fraction"], r["engine"]): r for r in thr}
    for r in sorted(thr, key=lambda r: (r["net"], -r["fraction"], list(ENGINES).index(
            r["engine"]))):
        base = key.get((r["net"], r["fraction"], "backsub, plain malloc"))
        tight = key.get((r["net"], r["fraction"], "backsub"))
        speed = f"{r['boxes_per_s'] / base['boxes_per_s']:.2f}" if base else "-"
        ratio = f"{r['width'] / tight['width']:.2f}" if tight and tight["width"] > 0 else "-"
        lines.append(f"| {r['net']} | 1/{round(1 / r['fraction'])} | {r['engine']} | "
                     f"{r['boxes_per_s']:.0f} | {speed} | {r['width']:.3g} | {ratio} | "
                     f"{r['sampled_width']:.3g} | {'yes' if r['sound'] else 'NO'} |")
    lines += ["", f"## Decisions at eps {EPS} (smart/gain splits, at most {MAX_BOXES:,} boxes)",
              "", "| net | engine | verdict | boxes | seconds |", "|---|---|---|---:|---:|"]
    for r in sorted((r for r in rows if r["table"] == "decision"),
                    key=lambda r: (r["net"], list(ENGINES).index(r["engine"]))):
        lines.append(f"| {r['net']} | {r['engine']} | {r['verdict']} | {r['boxes']} | "
                     f"{r['seconds']} |")
    results.md.write_text("\n".join(lines) + "\n")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--unit":
        args = json.loads(sys.argv[2])
        fn = throughput if args[0] == "throughput" else decision
        print(json.dumps(fn(*args[1:])))
        return
    ap = parser(__doc__, "diff_throughput", jobs=1)
    ap.add_argument("--nets", default="1_1,2_1,5_3")
    opts = ap.parse_args()
    results = Results(opts.results, opts.fresh)
    if not opts.summarise:
        done = {(r["table"], r["net"], r["engine"], r.get("fraction")) for r in results.rows}
        for net in opts.nets.split(","):
            for engine in ENGINES:
                for frac in FRACTIONS:
                    if ("throughput", net, engine, frac) not in done:
                        results.add(_unit(["throughput", net, engine, frac]))
                        summarise(results)
                if ("decision", net, engine, None) not in done:
                    results.add(_unit(["decision", net, engine]))
                    summarise(results)
                    print(results.rows[-1], flush=True)
    summarise(results)


if __name__ == "__main__":
    main()
