"""One hard decision on 1 and on 2 workers, same run: ``nnbisim.search.parallel`` against the
search in one process (``--workers 1``, today's behaviour).

Instances, all on property 1's box of ACAS Xu (where decisions take thousands of boxes):
``float16`` copies (every weight and bias rounded), is ``|N1 - N2|_j < 0.01`` for every output
j; ``isomorphic`` copies (N1 + N(0, 0.001^2) on every weight and bias, own seeds), the same at
0.05. Each is decided by the pair subject (witness search, then branch and bound), ``--timeout``
seconds, once with 1 worker (in the bench's process, one torch thread) and once with 2 (a local
pool of two processes; the coordinator only hands out slices). One decision at a time, so each
has the machine to itself. A ``violated`` is replayed in float64 on both networks.

    python bench/parallel_bab.py [--timeout 100] [--fresh]
"""

from __future__ import annotations

import time
from functools import partial

import _threads  # noqa: F401 - first: one thread per process
import numpy as np
from harness import Results, parser
from pair_rules import instance

from nnbisim.adapters.executor import Executor
from nnbisim.search import parallel
from nnbisim.search.subjects import pair

INSTANCES = [("float16", n) for n in ("1_1", "2_1", "5_3", "2_4", "3_1")] + \
            [("isomorphic", n) for n in ("1_6", "2_4")]


def decide_one(kind: str, net: str, workers: int, timeout: float) -> dict:
    n1, n2, eps, case = instance(kind, net)
    t0 = time.perf_counter()
    d = parallel.decide(partial(pair, n1, n2, "stacked"), [case], timeout,
                        executor=Executor(workers=workers))
    seconds = time.perf_counter() - t0
    gap = None
    if d.x is not None:
        x = d.x.reshape(1, -1)
        gap = float(np.abs(n1.forward(x) - n2.forward(x)).max())
    rec = d.problems[0] if d.problems else None
    return {"kind": kind, "network": net, "eps": eps, "workers": workers,
            "status": d.status.value, "seconds": round(seconds, 2), "boxes": d.boxes,
            "slices": getattr(rec, "slices", None), "replayed_gap": gap, "timeout": timeout}


def summarise(res: Results) -> None:
    rows = {(r["kind"], r["network"], r["workers"]): r for r in res.rows}
    lines = res.header("One hard decision on 1 and 2 workers", __doc__.split("\n\n")[1]
                       .replace("\n", " "))
    lines += ["| copy | network | eps | 1 worker | s | boxes | 2 workers | s | boxes | slices "
              "| time 2 / time 1 |", "|---|---|---:|---|---:|---:|---|---:|---:|---:|---:|"]
    ratios = []
    for kind, net in INSTANCES:
        a, b = rows.get((kind, net, 1)), rows.get((kind, net, 2))
        if a is None or b is None:
            continue
        both = a["status"] == b["status"] and a["status"] in ("holds", "violated")
        ratio = b["seconds"] / a["seconds"] if both else None
        if ratio is not None:
            ratios.append(ratio)
        lines.append(f"| {kind} | {net} | {a['eps']} | {a['status']} | {a['seconds']:.1f} | "
                     f"{a['boxes']} | {b['status']} | {b['seconds']:.1f} | {b['boxes']} | "
                     f"{b['slices']} | {'-' if ratio is None else f'{ratio:.2f}'} |")
    if ratios:
        lines += ["", f"- decided by both: {len(ratios)}; time with 2 workers over time with 1: "
                  f"median {float(np.median(ratios)):.2f}, range {min(ratios):.2f}-"
                  f"{max(ratios):.2f}"]
    res.md.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = parser(__doc__, "parallel_bab", jobs=1)
    ap.add_argument("--timeout", type=float, default=100.0)
    args = ap.parse_args()
    res = Results(args.results, args.fresh, check=not args.summarise)
    done = {(r["kind"], r["network"], r["workers"]) for r in res.rows}
    if not args.summarise:
        for kind, net in INSTANCES:
            for workers in (1, 2):
                if (kind, net, workers) not in done:
                    row = res.add(decide_one(kind, net, workers, args.timeout))
                    print(f"{kind} {net} workers {workers}: {row['status']} "
                          f"{row['seconds']} s, {row['boxes']} boxes", flush=True)
                    summarise(res)
    summarise(res)


if __name__ == "__main__":
    main()
