"""``nnbisim vnncomp solve``: a benchmark folder answered on many workers, scored."""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict

from nnbisim.adapters.executor import Executor
from nnbisim.cli.common import write_json
from nnbisim.core.pool import Progress
from nnbisim.vnncomp.solve import SolveOptions, solve

RESULTS = ("sat", "unsat", "timeout", "unknown", "error")


def _progress(quiet: bool):
    if quiet:
        return None
    last = [0.0]

    def say(p: Progress) -> None:
        now = time.perf_counter()
        if now - last[0] >= 2.0 or p.done == p.total:  # at most a line every 2 s
            last[0] = now
            print(f"[{p.elapsed:7.1f} s] {p.line()}", file=sys.stderr, flush=True)
    return say


def table(rows: list[dict]) -> list[str]:
    """One line per result word: how many, judged how, points and seconds."""
    by = defaultdict(list)
    for r in rows:
        by[r["result"]].append(r)
    lines = [f"{'result':8} {'count':>6} {'correct':>8} {'wrong':>6} {'invalid':>8} "
             f"{'late':>5} {'points':>7} {'seconds':>9}"]
    for word in [*RESULTS, *sorted(set(by) - set(RESULTS))]:
        group = by.get(word, [])
        if not group:
            continue
        n = defaultdict(int)
        for r in group:
            n[r["judgement"]] += 1
        points = [r["points"] for r in group if r["points"] is not None]
        shown = str(sum(points)) if points else "-"
        lines.append(f"{word:8} {len(group):6d} {n['correct']:8d} {n['wrong']:6d} "
                     f"{n['invalid']:8d} {n['late']:5d} {shown:>7} "
                     f"{sum(float(r['seconds']) for r in group):9.1f}")
    return lines


def cmd_solve(args: argparse.Namespace) -> int:
    executor = Executor(workers=args.workers, ray=args.ray)
    if not args.quiet:
        print(f"vnncomp solve: {args.bench} on {executor.describe()}, results to "
              f"{args.results}", file=sys.stderr, flush=True)
    out = solve(args.bench, args.results, executor,
                SolveOptions(args.tool, args.timeout_factor, args.fresh),
                on_progress=_progress(args.quiet))
    rows, s = out["rows"], out["summary"]
    for line in table(rows):
        print(line)
    for r in rows:
        if r["judgement"] in ("wrong", "invalid"):
            print(f"{r['judgement']}: {r['onnx']} {r['vnnlib']}: {r['result']} (expected "
                  f"{r['expected'] or '-'}) {r['note']}")
    score = "-" if s["score"] is None else s["score"]
    print(f"{len(rows)} of {out['planned']} instances answered; score {score}"
          + ("" if out["expected"] else " (no expected.csv: nothing to score against)"))
    if args.json is not None:
        write_json(args.json, {"bench": str(args.bench), "results": str(args.results),
                               "executor": executor.describe(), **out})
    bad = any(r["judgement"] in ("wrong", "invalid") for r in rows)
    return 1 if bad else 0
