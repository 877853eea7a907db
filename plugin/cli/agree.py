"""``nnbisim agree``: does N2 classify like N1 everywhere in X (top-1 agreement)?"""

from __future__ import annotations

import argparse
import time

from nnbisim.cli.common import budget_left, progress_to_stderr, verdict_exit, write_json
from nnbisim.tasks.agree import AgreeOptions, decide_agreement


def cmd_agree(args: argparse.Namespace) -> int:
    answer = decide_agreement(args.n1, args.n2, args.inputs, args.top1_delta,
                              max(budget_left(args, args.time_budget), 0.0),
                              AgreeOptions(args.max_boxes, args.seed, args.agree_engine),
                              progress=progress_to_stderr(time.perf_counter(), args.quiet))
    print(answer.table())
    if args.json is not None:
        write_json(args.json, answer.to_json())
    return verdict_exit(answer.status)
