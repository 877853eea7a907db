"""``nnbisim merge``, ``spec``, ``check``, ``epsilon`` and ``demo``: the handlers (arguments
already checked by :mod:`nnbisim.cli.checks`)."""

from __future__ import annotations

import argparse
import time

import numpy as np

from nnbisim.adapters.merged_onnx import merge_files
from nnbisim.adapters.onnx_load import read_model, real_inputs, value_shape
from nnbisim.adapters.onnx_write import save_model
from nnbisim.cli.common import progress_to_stderr, resolve_device, write_json
from nnbisim.tasks.check import check_merged
from nnbisim.tasks.demo import run_demo
from nnbisim.tasks.epsilon import compute_epsilon
from nnbisim.tasks.options import EpsilonOptions
from nnbisim.tasks.spec_files import SpecRequest, write_spec_files


def cmd_merge(args: argparse.Namespace) -> int:
    model = merge_files(args.n1, args.n2, form=args.form, outputs=args.outputs,
                        separate_comparison=args.separate_comparison)
    out = save_model(model, args.out_file, force=args.force)
    print(f"wrote {out} ({args.form} form, outputs: {args.outputs})")
    return 0


def cmd_spec(args: argparse.Namespace) -> int:
    written = write_spec_files(SpecRequest(
        inputs=args.inputs, eps=args.eps, out=args.out, index=args.output, sign=args.sign,
        version=args.vnnlib_version, model=args.model,
        n_outputs=args.n_outputs, source=args.input, force=args.force,
        pair=tuple(args.pair) if args.pair else None))
    for path in written:
        print(f"wrote {path}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    if args.inputs is None:
        dim = int(np.prod(value_shape(real_inputs(read_model(args.n1))[0])))
        lower, upper = -np.ones(dim), np.ones(dim)
    else:
        hull = args.inputs.hull()
        lower, upper = hull.lower, hull.upper
    rep = check_merged(args.merged, args.n1, args.n2, lower, upper, args.samples, args.seed)
    ok = rep.passed(args.rel_tol)
    print(f"samples: {rep.samples}  largest disagreement |M(x) - (N1(x) - N2(x))|: "
          f"{rep.max_abs:.3g} (relative {rep.max_rel:.3g})  largest |N1 - N2| seen: "
          f"{rep.max_abs_diff:.6g}  -> {'OK' if ok else 'MISMATCH'}")
    if args.json:
        write_json(args.json, {"samples": rep.samples, "max_abs": rep.max_abs,
                               "max_rel": rep.max_rel, "max_abs_diff": rep.max_abs_diff,
                               "worst_input": rep.worst_input.tolist(), "ok": ok})
    return 0 if ok else 1


def cmd_epsilon(args: argparse.Namespace) -> int:
    opts = EpsilonOptions(verifier=args.verifier, engine=args.engine, aim=args.aim,
                          rel_gap=args.rel_gap, time_budget=args.time_budget,
                          query_timeout=args.query_timeout, workdir=args.workdir,
                          seed=args.seed, device=resolve_device(args.device))
    rep = compute_epsilon(args.n1, args.n2, args.inputs, opts,
                          progress=progress_to_stderr(time.perf_counter(), args.quiet))
    print(rep.table())
    if args.json is not None:
        write_json(args.json, rep.to_json())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    return run_demo(args.out_dir, force=args.force, echo=print)
