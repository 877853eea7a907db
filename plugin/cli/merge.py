"""``nnbisim merge``: the merged ONNX file of a pair."""

from __future__ import annotations

import argparse
import sys

from nnbisim.adapters.merged_meta import fold_error
from nnbisim.adapters.merged_onnx import merge_files
from nnbisim.adapters.onnx_write import save_model


def cmd_merge(args: argparse.Namespace) -> int:
    model = merge_files(args.n1, args.n2, form=args.form, outputs=args.outputs,
                        separate_comparison=args.separate_comparison)
    out = save_model(model, args.out_file, force=args.force)
    print(f"wrote {out} ({args.form} form, outputs: {args.outputs})")
    err = fold_error(model)
    if err > 0:
        print(f"note: folding the comparison into the output layer rounded b1 - b2 by up to "
              f"{err:.3g} (float32); --separate-comparison stores it exactly", file=sys.stderr)
    return 0
