"""``nnbisim epsilon``: eps witnessed and certified, or with ``--eps`` a decision."""

from __future__ import annotations

import argparse
import time

from nnbisim.cli.common import budget_left, progress_to_stderr, verdict_exit, write_json
from nnbisim.cli.device import resolve_device
from nnbisim.tasks.eps_decision import decide_epsilon
from nnbisim.tasks.epsilon import compute_epsilon
from nnbisim.tasks.options import EpsilonOptions


def cmd_epsilon(args: argparse.Namespace) -> int:
    opts = EpsilonOptions(verifier=args.verifier, engine=args.engine, aim=args.aim,
                          rel_gap=args.rel_gap,
                          time_budget=max(budget_left(args, args.time_budget), 0.0),
                          query_timeout=args.query_timeout, workdir=args.workdir,
                          seed=args.seed, device=resolve_device(args.device),
                          max_boxes=args.max_boxes, workers=args.workers or 1, ray=args.ray)
    progress = progress_to_stderr(time.perf_counter(), args.quiet)
    if args.eps is not None:
        answer = decide_epsilon(args.n1, args.n2, args.inputs, args.eps, args.eps_outputs,
                                opts, progress=progress)
        print(answer.table())
        if args.json is not None:
            write_json(args.json, answer.to_json())
        return verdict_exit(answer.status)
    rep = compute_epsilon(args.n1, args.n2, args.inputs, opts, progress=progress)
    print(rep.table())
    if args.json is not None:
        write_json(args.json, rep.to_json())
    return 0
