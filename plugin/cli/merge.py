"""``nnbisim merge``: the merged ONNX file of a pair."""

from __future__ import annotations

import argparse

from nnbisim.adapters.merged_onnx import merge_files
from nnbisim.adapters.onnx_write import save_model


def cmd_merge(args: argparse.Namespace) -> int:
    model = merge_files(args.n1, args.n2, form=args.form, outputs=args.outputs,
                        separate_comparison=args.separate_comparison)
    out = save_model(model, args.out_file, force=args.force)
    print(f"wrote {out} ({args.form} form, outputs: {args.outputs})")
    return 0
