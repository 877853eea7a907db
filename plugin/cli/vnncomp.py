"""``nnbisim vnncomp ...``: translate two-network queries, write benchmarks, run instances."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from nnbisim.cli.common import progress_to_stderr
from nnbisim.core.errors import InputError
from nnbisim.core.verdict import Status
from nnbisim.specs.results import parse_vnncomp_result, write_result
from nnbisim.vnncomp.benchmark import acasxu_pairs, read_pairs, write_benchmark
from nnbisim.vnncomp.bridge import back_translate, translate
from nnbisim.vnncomp.run import run_instance


def default_acasxu() -> Path:
    """``../shared/data/acasxu`` beside the repository, where the project keeps it."""
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "acasxu"


def cmd_translate(args: argparse.Namespace) -> int:
    tr = translate(args.network, args.query, args.out_dir, base=args.base, force=args.force)
    print(f"{tr.merged}\n{tr.vnnlib1}\n{tr.vnnlib2}\n{tr.manifest}")
    return 0


def cmd_back(args: argparse.Namespace) -> int:
    status, x, note = parse_vnncomp_result(args.result_in.read_text(errors="replace"))
    if status is not Status.VIOLATED or x is None:
        raise InputError(f"{args.result_in}: is not a sat result with a counterexample "
                         f"({status.vnncomp}{'; ' + note if note else ''}); nothing to translate")
    write_result(args.out_file, "sat", back_translate(args.manifest, x))
    print(args.out_file)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    status = run_instance(args.network, args.vnnlib, args.result, args.timeout, base=args.base)
    print(status.vnncomp)
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    out = write_benchmark(read_pairs(args.pairs), args.out_dir, seed=args.seed,
                          timeout=args.timeout, eps_budget=args.eps_budget, force=args.force,
                          progress=progress_to_stderr(time.perf_counter(), args.quiet))
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
                          name=f"acasxu_{args.compression}_equivalence",
                          progress=progress_to_stderr(time.perf_counter(), args.quiet))
    print(out)
    return 0
