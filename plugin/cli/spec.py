"""``nnbisim spec``: VNN-LIB discrepancy properties."""

from __future__ import annotations

import argparse

from nnbisim.tasks.spec_files import SpecRequest, write_spec_files


def cmd_spec(args: argparse.Namespace) -> int:
    written = write_spec_files(SpecRequest(
        inputs=args.inputs, eps=args.eps if args.eps is not None else 0.0, out=args.out,
        index=args.output, sign=args.sign,
        version=args.vnnlib_version, model=args.model,
        n_outputs=args.n_outputs, source=args.input, force=args.force,
        pair=tuple(args.pair) if args.pair else None, agree=args.agree_delta))
    for path in written:
        print(f"wrote {path}")
    return 0
