"""``nnbisim vnncomp run``, ``benchmark`` and ``acasxu``: nnbisim as a VNN-COMP tool, and
benchmarks with known answers."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from nnbisim.adapters.executor import Executor
from nnbisim.cli.common import budget_left, progress_to_stderr, verdict_exit
from nnbisim.core.errors import InputError
from nnbisim.vnncomp.benchmark import FileForm, Running, acasxu_pairs, read_pairs, write_benchmark
from nnbisim.vnncomp.run import run_instance


def default_acasxu() -> Path:
    """``../shared/data/acasxu`` beside the repository, where the project keeps it."""
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "acasxu"


def cmd_run(args: argparse.Namespace) -> int:
    timeout = max(budget_left(args, args.timeout), 0.1)  # start-up counts against it too
    executor = (None if (args.workers or 1) == 1 and args.ray is None
                else Executor(workers=args.workers, ray=args.ray))
    status = run_instance(args.network, args.vnnlib, args.result, timeout, base=args.base,
                          executor=executor)
    print(status.vnncomp)
    return verdict_exit(status)


def _running(args: argparse.Namespace) -> Running:
    return Running(Executor(workers=args.workers, ray=args.ray),
                   progress_to_stderr(time.perf_counter(), args.quiet))


def cmd_benchmark(args: argparse.Namespace) -> int:
    out = write_benchmark(read_pairs(args.pairs), args.out_dir, seed=args.seed,
                          timeout=args.timeout, eps_budget=args.eps_budget, force=args.force,
                          files=FileForm(args.gzip, args.onnx_form, args.question),
                          running=_running(args))
    print(out)
    return 0


def cmd_acasxu(args: argparse.Namespace) -> int:
    data = args.data or default_acasxu()
    if not data.is_dir():
        raise InputError(f"{data}: no ACAS Xu folder here; give --data DIR")
    networks = [n.strip() for n in args.networks.split(",") if n.strip()]
    try:
        props = [int(p) for p in args.properties.split(",") if p.strip()]
    except ValueError:
        raise InputError(f"--properties {args.properties!r}: give numbers like 1,2,3,4") from None
    work = Path(args.out_dir).with_name(Path(args.out_dir).name + "-networks")
    pairs = acasxu_pairs(data, work, networks, props, args.compression, seed=args.seed)
    out = write_benchmark(pairs, args.out_dir, seed=args.seed, timeout=args.timeout,
                          eps_budget=args.eps_budget, force=args.force,
                          files=FileForm(args.gzip, args.onnx_form, args.question,
                                         f"acasxu_{args.compression}_"
                                         + ("top1" if args.question == "top1" else "equivalence")),
                          running=_running(args))
    print(out)
    return 0
