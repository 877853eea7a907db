"""The merged ONNX file: ``N1(x) - N2(x)`` (or ``[y1, y2, y1 - y2]``) as one model, and the
metadata that lets nnbisim split a comparison network it wrote back into its pair."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
import onnx

from nnbisim.adapters.merge import MergedNetwork, OutputsMode, merge_networks
from nnbisim.adapters.merge_graph import merge_graphs
from nnbisim.adapters.merged_meta import (
    META_BLOCKS,
    META_FOLD_ERROR,
    META_N_OUTPUTS,
    META_OUTPUTS,
    exact_dtype,
)
from nnbisim.adapters.onnx_load import network_from_model, read_model
from nnbisim.adapters.onnx_write import DTYPES, network_to_model

Form = Literal["sequential", "graph"]


def merged_network(n1: str | Path, n2: str | Path, outputs: OutputsMode = "diff"
                   ) -> MergedNetwork:
    """Load two ONNX files and build the sequential comparison network (in memory)."""
    net1 = network_from_model(read_model(n1), str(n1))
    net2 = network_from_model(read_model(n2), str(n2))
    return merge_networks(net1, net2, outputs)


def _fold_error(merged: MergedNetwork, dtype: str) -> float:
    """How far the folded output biases (``b1 - b2``) moved when stored as ``dtype``."""
    bias = merged.network.layers[-1].bias
    stored = np.asarray(bias, DTYPES[dtype][0]).astype(np.float64)
    return float(np.max(np.abs(stored - bias), initial=0.0))


def exact_model(merged: MergedNetwork, doc: str = "") -> onnx.ModelProto:
    """The comparison network as a file whose function is exactly ``N1 - N2`` (or
    ``[y1, y2, y1 - y2]``) in real arithmetic: the comparison is its own layer of 0/+-1 weights
    and no bias (folding it would round ``b1 - b2``, e.g. ``1 - 2**-30`` is stored as 1 in
    float32), and every weight is stored unrounded (:func:`exact_dtype`). An exact verifier's
    ``unsat`` on this file is a proof about the pair; it is what nnbisim certifies with."""
    return network_to_model(merged.stacked, post=merged.comparison,
                            dtype=exact_dtype(merged.stacked), doc=doc)


def merge_files(
    n1: str | Path,
    n2: str | Path,
    *,
    form: Form = "sequential",
    outputs: OutputsMode = "diff",
    separate_comparison: bool = False,
    dtype: str = "float32",
    exact: bool = False,
) -> onnx.ModelProto:
    """The merged ONNX model whose output is ``N1(x) - N2(x)`` (or ``[y1, y2, y1 - y2]``).

    ``sequential`` (default) is a chain of Gemm/Relu every verifier takes; ``graph`` keeps both
    original graphs side by side and works for any operator. ``separate_comparison`` writes the
    comparison ``[I, -I]`` as its own layer instead of folding it into the output layer;
    ``exact`` (sequential only) writes :func:`exact_model`, the form nnbisim certifies with.
    """
    if exact and form != "sequential":
        raise ValueError("exact=True needs the sequential form")
    if form == "graph":
        model = merge_graphs(read_model(n1), read_model(n2), outputs, (str(n1), str(n2)))
        n_out = int(model.graph.output[0].type.tensor_type.shape.dim[1].dim_value)
        n_out = n_out if outputs == "diff" else n_out // 3
    elif form == "sequential":
        net1 = network_from_model(read_model(n1), str(n1))
        net2 = network_from_model(read_model(n2), str(n2))
        merged = merge_networks(net1, net2, outputs)
        what = "N1(x) - N2(x)" if outputs == "diff" else "[N1(x), N2(x), N1(x) - N2(x)]"
        doc = (f"nnbisim comparison network, output {what}; N1 = {Path(n1).name} "
               f"({net1.describe()}), N2 = {Path(n2).name} ({net2.describe()})")
        if exact:
            model = exact_model(merged, doc)
        elif separate_comparison:
            model = network_to_model(merged.stacked, post=merged.comparison, dtype=dtype, doc=doc)
        else:
            model = network_to_model(merged.network, dtype=dtype, doc=doc)
            fold_error = _fold_error(merged, dtype)
        n_out = merged.n_outputs
    else:
        raise ValueError(f"form must be 'sequential' or 'graph', not {form!r}")
    props = {META_OUTPUTS: outputs, META_N_OUTPUTS: str(n_out)}
    if form == "sequential" and not (separate_comparison or exact):
        props[META_FOLD_ERROR] = repr(fold_error)
    if form == "sequential" and not (separate_comparison or exact):
        props[META_BLOCKS] = json.dumps([list(b) for b in merged.blocks])
    onnx.helper.set_model_props(model, props)
    return model
