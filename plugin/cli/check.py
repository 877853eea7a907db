"""``nnbisim check``: a merged network replayed against its pair in onnxruntime."""

from __future__ import annotations

import argparse

import numpy as np

from nnbisim.adapters.onnx_load import read_model, real_inputs, value_shape
from nnbisim.cli.common import write_json
from nnbisim.tasks.check import check_merged


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
