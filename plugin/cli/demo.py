"""``nnbisim demo``: the built-in example."""

from __future__ import annotations

import argparse

from nnbisim.tasks.demo import run_demo


def cmd_demo(args: argparse.Namespace) -> int:
    return run_demo(args.out_dir, force=args.force, echo=print)
