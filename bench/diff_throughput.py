"""Per-box cost and tightness of the differential bounds, and what they give a decision.

Two tables from one run, each against the engine of a baseline commit in the same run:

1. Boxes per second on one core, and width: ACAS Xu networks against their float16 copies,
   1,000 random sub-boxes of property 1's box with sides 1/4 to 1/256 of it, bounded in
   batches of 1,000 (all 10 output rows, both signs), by the back-substituting engine of the
   baseline commit (``backsub, baseline``: its package extracted by ``git archive`` and put on
   ``PYTHONPATH``), by today's (``backsub``) and by the differential zonotopes (``zonotope``).
   The width is the median of ``hi - lo`` over boxes and outputs; every bound is checked
   against 200 samples per box.
2. Decisions on property 1's box by the pair subject's branch and bound (split rule
   smart/gain, ``--timeout`` seconds, default 100): ``|N1 - N2|_j < 0.01`` against float16
   copies (the NeuroDiff question) and ``|N1 - N2|_j < 0.05`` against noisy copies (sigma
   0.001, the VNN-COMP 2026 isomorphic question, ``bench/pair_rules.py``'s instances), per
   engine: verdict, boxes bounded, seconds.

Each unit runs in its own process, one at a time, with glibc keeping freed memory
(``nnbisim.core.allocator``, what the command line does).

    python bench/diff_throughput.py [--fresh] [--nets 1_1,2_1,5_3] [--baseline 7b3a9c9]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _threads  # noqa: F401 - first: one thread per process
import numpy as np
from acas import ACAS, network_file
from harness import HERE, Results, baseline_tree, parser

FRACTIONS = (1 / 4, 1 / 16, 1 / 64, 1 / 256)
ENGINES = {"backsub, baseline": ("backsub", True), "backsub": ("backsub", False),
           "zonotope": ("zonotope", False)}
DECIDING = ("backsub, baseline", "backsub")
ISOMORPHIC = ("1_6", "2_4", "3_3", "4_5")
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


def decision(kind: str, net: str, engine: str, timeout: float) -> dict:
    from pair_rules import instance

    from nnbisim.search.bab_types import BabOptions
    from nnbisim.search.decide import DecideOptions, decide
    from nnbisim.search.subjects import pair
    n1, n2, eps, case = instance(kind, net)
    sub = pair(n1, n2, "stacked", method=ENGINES[engine][0])
    t = time.perf_counter()
    d = decide(sub, [case], timeout, DecideOptions(
        split="smart", choose="gain", bab=BabOptions(max_boxes=MAX_BOXES, time_budget=timeout)))
    verdict = d.status.value
    if d.x is not None:  # replayed on both networks in float64
        diff = np.abs(n1.forward(d.x[None]) - n2.forward(d.x[None])).max()
        verdict = "violated" if diff >= eps else "not replayed"
    return {"table": "decision", "kind": kind, "net": net, "engine": engine, "eps": eps,
            "verdict": verdict, "boxes": d.boxes, "timeout": timeout,
            "seconds": round(time.perf_counter() - t, 2)}


def _unit(args: list, baseline: str | None) -> dict:
    """Run one unit in a fresh process; the baseline engine's with the baseline package first
    on ``PYTHONPATH`` (the bench's own modules stay importable)."""
    env = dict(os.environ)
    if ENGINES[args[2] if args[0] == "throughput" else args[3]][1]:
        env["PYTHONPATH"] = os.pathsep.join([baseline, str(HERE)])
    out = subprocess.run([sys.executable, __file__, "--unit", json.dumps(args)], env=env,
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def summarise(results: Results) -> None:
    rows = results.rows
    base = sorted({r["baseline"] for r in rows if "baseline" in r})
    lines = results.header(
        "Differential bounds: boxes per second, tightness, decisions",
        "ACAS Xu networks against float16 and noisy copies, property 1's box; one torch "
        "thread per process; ``backsub, baseline`` is the engine of commit "
        f"{', '.join(base) or '-'} run in the same bench run. Made by bench/diff_throughput.py.")
    lines += ["## Per-box cost and width (1,000 boxes per cell, 10 rows each)", "",
              "| net | side | engine | boxes/s | x baseline | median width | x backsub | "
              "sampled | sound |", "|---|---|---|---:|---:|---:|---:|---:|---|"]
    thr = [r for r in rows if r["table"] == "throughput"]
    key = {(r["net"], r["fraction"], r["engine"]): r for r in thr}
    for r in sorted(thr, key=lambda r: (r["net"], -r["fraction"], list(ENGINES).index(
            r["engine"]))):
        old = key.get((r["net"], r["fraction"], "backsub, baseline"))
        tight = key.get((r["net"], r["fraction"], "backsub"))
        speed = f"{r['boxes_per_s'] / old['boxes_per_s']:.2f}" if old else "-"
        ratio = f"{r['width'] / tight['width']:.2f}" if tight and tight["width"] > 0 else "-"
        lines.append(f"| {r['net']} | 1/{round(1 / r['fraction'])} | {r['engine']} | "
                     f"{r['boxes_per_s']:.0f} | {speed} | {r['width']:.3g} | {ratio} | "
                     f"{r['sampled_width']:.3g} | {'yes' if r['sound'] else 'NO'} |")
    dec = [r for r in rows if r["table"] == "decision"]
    lines += ["", "## Decisions on property 1's box (smart/gain splits)", "",
              "| engine | instances | decided | total s (timeouts at the timeout) |",
              "|---|---:|---:|---:|"]
    for engine in DECIDING:
        mine = [r for r in dec if r["engine"] == engine]
        done = [r for r in mine if r["verdict"] in ("holds", "violated")]
        total = sum(r["seconds"] if r in done else r["timeout"] for r in mine)
        lines.append(f"| {engine} | {len(mine)} | {len(done)} | {total:.0f} |")
    lines += ["", "| kind | net | eps | " + " | ".join(DECIDING) + " |",
              "|---|---|---:|" + "---|" * len(DECIDING)]
    cells = {(r["kind"], r["net"], r["engine"]): r for r in dec}
    for kind, net in sorted({(r["kind"], r["net"]) for r in dec}):
        parts = []
        for engine in DECIDING:
            r = cells.get((kind, net, engine))
            parts.append("-" if r is None else
                         f"{r['verdict']}, {r['seconds']:.1f} s, {r['boxes']} boxes")
        eps = next(r["eps"] for r in dec if (r["kind"], r["net"]) == (kind, net))
        lines.append(f"| {kind} | {net} | {eps} | " + " | ".join(parts) + " |")
    results.md.write_text("\n".join(lines) + "\n")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--unit":
        args = json.loads(sys.argv[2])
        fn = throughput if args[0] == "throughput" else decision
        print(json.dumps(fn(*args[1:])))
        return
    ap = parser(__doc__, "diff_throughput", jobs=1)
    ap.add_argument("--nets", default="1_1,2_1,5_3")
    ap.add_argument("--baseline", default="7b3a9c9", help="commit whose engine is the baseline")
    ap.add_argument("--timeout", type=float, default=100.0)
    opts = ap.parse_args()
    results = Results(opts.results, opts.fresh)
    if not opts.summarise:
        with tempfile.TemporaryDirectory() as tmp:
            old = str(baseline_tree(opts.baseline, Path(tmp)))
            _measure(results, opts, old)
    summarise(results)


def _measure(results: Results, opts, old: str) -> None:
    done = {(r["table"], r.get("kind"), r["net"], r["engine"], r.get("fraction"))
            for r in results.rows}

    def add(key: tuple, args: list) -> None:
        if key not in done:
            results.add({**_unit(args, old), "baseline": opts.baseline})
            summarise(results)
            print(results.rows[-1], flush=True)
    nets = opts.nets.split(",")
    for net in nets:
        for engine in ENGINES:
            for frac in FRACTIONS:
                add(("throughput", None, net, engine, frac), ["throughput", net, engine, frac])
    for kind, names in (("float16", nets), ("isomorphic", ISOMORPHIC)):
        for net in names:
            for engine in DECIDING:
                add(("decision", kind, net, engine, None),
                    ["decision", kind, net, engine, opts.timeout])


if __name__ == "__main__":
    main()
