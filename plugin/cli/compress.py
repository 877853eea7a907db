"""``nnbisim compress``: a compressed copy of a network, as ONNX."""

from __future__ import annotations

import argparse

import numpy as np

from nnbisim.adapters.compress import compress
from nnbisim.adapters.onnx_load import load_network
from nnbisim.adapters.onnx_write import network_to_model, save_model
from nnbisim.adapters.options import CompressOptions, DistillOptions
from nnbisim.cli.checks import hidden_sizes
from nnbisim.core.errors import InputError

__all__ = ["cmd_compress", "hidden_sizes"]


def cmd_compress(args: argparse.Namespace) -> int:
    if args.method == "distill" and args.inputs is None:
        raise InputError("--method distill trains on N1's outputs over an input set: give "
                         "--input P.vnnlib, --lower/--upper or --center/--radius")
    n1 = load_network(args.n1)
    boxes = args.inputs.boxes if args.inputs is not None else ()
    lower = np.array([b.lower for b in boxes]) if boxes else None
    upper = np.array([b.upper for b in boxes]) if boxes else None
    opts = CompressOptions(args.fraction, args.remove,
                           DistillOptions(hidden_sizes(args.hidden), seed=args.seed),
                           sigma=args.sigma)
    n2 = compress(n1, args.method, lower, upper, opts)
    path = save_model(network_to_model(n2, form=args.onnx_form), args.out_file,
                      force=args.force)
    print(f"wrote {path}: {n2.describe()} ({args.method} of {args.n1.name}, "
          f"{n1.describe()})")
    return 0
