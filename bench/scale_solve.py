"""Scale-out of ``vnncomp solve``: one stratified slice of the ACAS Xu equivalence table solved
with ``--workers 1``, ``--workers 2`` and ``--ray local`` (2 CPUs), same run, plus the
executors' scheduling overhead per unit (the pool and a 4-CPU local Ray "cluster").

The slice: networks x properties 1, 3, 4 x compressions float16, prune, distill x both sides
of eps (the 810-instance table's construction, ``nnbisim vnncomp acasxu``; 7 networks give 126
instances), the VNN-LIB 2.0 two-network queries, 20 s each. Every configuration solves the
whole slice from scratch into its own results file (wall time from the call to the last row,
pool or Ray start-up included) and is scored against the known answers; verdicts are compared
instance by instance. The overhead part runs ``--units`` units of 50 ms of sleep on 4 slots:
overhead per unit = (wall x slots - work) / units.

    python bench/scale_solve.py [--networks 1_1,...] [--timeout 20] [--units 400]
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import time
from pathlib import Path

import _threads  # noqa: F401 - first: one thread per process
from acas import ACAS
from harness import WORK, Results, parser

from nnbisim.adapters.executor import Executor
from nnbisim.core.pool import Unit
from nnbisim.vnncomp.benchmark import FileForm, Running, acasxu_pairs, write_benchmark
from nnbisim.vnncomp.formats import format_network_field, parse_network_field
from nnbisim.vnncomp.solve import SolveOptions, solve

HERE = WORK / "scale_solve"
NETS = "1_1,1_6,2_4,3_3,4_5,5_3,5_9"
CONFIGS = {"workers 1": Executor(workers=1), "workers 2": Executor(workers=2),
           "ray local 2": Executor(workers=2, ray="local")}
NAP = 0.05  # seconds of work per overhead unit


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def slice_folder(networks: list[str], timeout: float, eps_budget: float) -> Path:
    """The slice as one folder: each compression's benchmark (built once, its pairs on two
    workers) and an instances.csv/expected.csv over their 2.0 queries."""
    key = json.dumps([networks, timeout, eps_budget])
    top = HERE / f"slice_{hashlib.sha1(key.encode()).hexdigest()[:10]}"
    if (top / "instances.csv").exists():
        return top
    rows, expected = [], []
    for comp in ("float16", "prune", "distill"):
        out = top / comp
        if not (out / "instances.csv").exists():
            pairs = acasxu_pairs(ACAS, top / f"{comp}-networks", networks, [1, 3, 4], comp)
            write_benchmark(pairs, out, timeout=timeout, eps_budget=eps_budget, force=True,
                            files=FileForm(name=f"acasxu_{comp}_equivalence"),
                            running=Running(Executor(workers=2),
                                            lambda m: print(f"  {m}", flush=True)))
        v2 = out / "2.0"
        known = {(r[0], r[1]): r[2] for r in csv.reader((v2 / "expected.csv").open())}
        for field, prop, t in csv.reader((v2 / "instances.csv").open()):
            nets = parse_network_field(field, v2)
            new = format_network_field([(n, str(p.relative_to(top))) for n, p in nets])
            rows.append([new, f"{comp}/2.0/{prop}", t])
            expected.append([new, f"{comp}/2.0/{prop}", known[(field, prop)]])
    for name, body in (("instances.csv", rows), ("expected.csv", [["onnx", "vnnlib",
                                                                    "expected"], *expected])):
        with (top / name).open("w", newline="") as f:
            csv.writer(f, lineterminator="\n").writerows(body)
    return top


def solve_row(config: str, folder: Path) -> dict:
    out = HERE / f"results_{config.replace(' ', '_')}.csv"
    t0 = time.perf_counter()
    got = solve(folder, out, CONFIGS[config], SolveOptions(fresh=True))
    wall = time.perf_counter() - t0
    s = got["summary"]
    return {"part": "solve", "config": config, "wall_s": round(wall, 1),
            "instances": s["instances"], "score": s["score"], "judgements": s["judgements"],
            "results": s["results"], "instance_s": s["seconds"],
            "verdicts": {f"{r['onnx']} {r['vnnlib']}": r["result"] for r in got["rows"]}}


def overhead_row(backend: str, units: int) -> dict:
    """``units`` naps on 4 slots: the pool, a local Ray instance, or a Ray cluster of a head
    (no CPUs) and two worker nodes of 2 CPUs each, all local processes (ray.cluster_utils,
    Ray's own multi-node simulation; its start-up is not timed)."""
    cluster = None
    if backend == "ray cluster":
        from ray.cluster_utils import Cluster  # noqa: PLC0415 - only this part needs it
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # as nnbisim's own connect does
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
        for _ in range(2):
            cluster.add_node(num_cpus=2)
        cluster.wait_for_nodes()
    ray = {"pool": None, "ray": "local", "ray cluster": cluster and cluster.address}[backend]
    ex = Executor(workers=4 if backend != "ray cluster" else None, ray=ray)
    work = [Unit(str(k), nap, (NAP,)) for k in range(units)]
    t0, ends = time.perf_counter(), []
    try:
        ex.run(work, lambda o: ends.append(time.perf_counter()))
        wall = time.perf_counter() - t0
    finally:
        if cluster is not None:
            import ray as ray_module  # noqa: PLC0415
            ray_module.shutdown()
            cluster.shutdown()
    # steady state: the middle 80% of the units' ends (start-up and the last ones left out)
    lo, hi = ends[units // 10], ends[units - units // 10 - 1]
    steady = (hi - lo) * 4 / (units - 2 * (units // 10) - 1) - NAP
    return {"part": "overhead", "config": f"{backend} 4 slots", "wall_s": round(wall, 2),
            "units": units, "per_unit_ms": round((wall * 4 - units * NAP) / units * 1e3, 2),
            "steady_ms": round(steady * 1e3, 2), "first_s": round(ends[0] - t0, 2)}


def _cmp(rows: list[dict]) -> list[str]:
    base = next((r for r in rows if r["config"] == "workers 1"), None)
    if base is None:
        return []
    out = []
    for r in rows:
        if r is base:
            continue
        differ = [k for k, v in base["verdicts"].items() if r["verdicts"].get(k) != v]
        out.append(f"- {r['config']} against workers 1: {len(differ)} of "
                   f"{len(base['verdicts'])} verdicts differ"
                   + (": " + "; ".join(f"{k.split(' ')[-1]} {base['verdicts'][k]} -> "
                                       f"{r['verdicts'].get(k)}" for k in differ[:6])
                      if differ else ""))
    return out


def summarise(res: Results) -> None:
    solves = [r for r in res.rows if r["part"] == "solve"]
    base = next((r["wall_s"] for r in solves if r["config"] == "workers 1"), None)
    pool2 = next((r["wall_s"] for r in solves if r["config"] == "workers 2"), None)
    lines = res.header("Scale-out: vnncomp solve on 1 and 2 workers and on Ray", __doc__
                       .split("\n\n")[1].replace("\n", " "))
    lines += ["| config | instances | wall s | speedup vs workers 1 | vs workers 2 | correct "
              "| wrong | no answer | score | instance s (sum) |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in solves:
        j = r["judgements"]
        sp = f"{base / r['wall_s']:.2f}x" if base else "-"
        vs2 = f"{r['wall_s'] / pool2:.3f}" if pool2 else "-"
        lines.append(f"| {r['config']} | {r['instances']} | {r['wall_s']:.0f} | {sp} | {vs2} | "
                     f"{j.get('correct', 0)} | {j.get('wrong', 0) + j.get('invalid', 0)} | "
                     f"{j.get('none', 0) + j.get('late', 0)} | {r['score']} | "
                     f"{r['instance_s']:.0f} |")
    lines += ["", *_cmp(solves), "", "Scheduling overhead (units of 50 ms sleep on 4 slots):",
              "", "| executor | units | wall s | first unit done after s | overhead per unit, "
              "start-up included (ms) | steady state (ms) |", "|---|---:|---:|---:|---:|---:|"]
    over = [r for r in res.rows if r["part"] == "overhead"]
    for r in over:
        lines.append(f"| {r['config']} | {r['units']} | {r['wall_s']} | {r.get('first_s', '-')} "
                     f"| {r['per_unit_ms']} | {r.get('steady_ms', '-')} |")
    lines.append("- steady state: 4 x the time between the ends of the middle 80% of the units "
                 "per unit, less the 50 ms of work (start-up and the last units left out)")
    res.md.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = parser(__doc__, "scale_solve", jobs=2)
    ap.add_argument("--networks", default=NETS)
    ap.add_argument("--timeout", type=float, default=20.0)
    ap.add_argument("--eps-budget", type=float, default=10.0)
    ap.add_argument("--units", type=int, default=400)
    ap.add_argument("--configs", default=",".join(CONFIGS),
                    help="solve with these (empty: only the overhead part)")
    args = ap.parse_args()
    res = Results(args.results, args.fresh, check=not args.summarise)
    if not args.summarise:
        done = {(r["part"], r["config"], r.get("units")) for r in res.rows}
        if args.configs:
            folder = slice_folder(args.networks.split(","), args.timeout, args.eps_budget)
            print(f"slice: {folder}", flush=True)
        for config in [c for c in args.configs.split(",") if c]:
            if ("solve", config, None) not in done:
                print(f"solving with {config}", flush=True)
                res.add(solve_row(config, folder))
                summarise(res)
        for backend in ("pool", "ray", "ray cluster"):
            for n in (args.units, 2 * args.units):
                if ("overhead", f"{backend} 4 slots", n) not in done:
                    res.add(overhead_row(backend, n))
    summarise(res)


if __name__ == "__main__":
    main()
