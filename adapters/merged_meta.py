"""What nnbisim records in a merged ONNX file it writes, read back without ``import onnx``:
how its outputs are laid out, the pair's layer widths, the rounding of folded biases. The
writer is :mod:`nnbisim.adapters.merged_onnx`; the readers here take onnx's messages or the
light ones of :func:`~nnbisim.adapters.onnx_peek.parse_model`."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np

from nnbisim.adapters.merge import OutputsMode
from nnbisim.core.model import Network

if TYPE_CHECKING:
    import onnx

META_OUTPUTS = "nnbisim.outputs"
META_N_OUTPUTS = "nnbisim.n_outputs"
META_BLOCKS = "nnbisim.blocks"  # hidden widths of N1 and N2 per layer (sequential form only)
META_FOLD_ERROR = "nnbisim.fold_error"  # largest rounding of the folded b1 - b2 (folded form)


def fold_error(model: onnx.ModelProto) -> float:
    """The largest rounding of ``b1 - b2`` in a folded comparison network written by
    merge_files (0.0 for other forms and models): the file's output differs from
    ``N1 - N2`` by up to that much in real arithmetic."""
    props = {p.key: p.value for p in model.metadata_props}
    return float(props.get(META_FOLD_ERROR, "0.0"))


def exact_dtype(*nets: Network) -> str:
    """``float32`` when every weight and bias of ``nets`` is a float32 number (as in any network
    read from a float32 ONNX file), else ``float64``: the file then stores them unrounded."""
    for net in nets:
        for layer in net.layers:
            for a in (layer.weight, layer.bias):
                if not np.array_equal(np.asarray(a, np.float32).astype(np.float64), a):
                    return "float64"
    return "float32"


def merged_layout(model: onnx.ModelProto) -> tuple[OutputsMode, int] | None:
    """``(outputs mode, n_outputs)`` recorded by merge_files, or None for other models."""
    props = {p.key: p.value for p in model.metadata_props}
    if META_OUTPUTS not in props:
        return None
    return props[META_OUTPUTS], int(props[META_N_OUTPUTS])  # type: ignore[return-value]


def merged_blocks(model: onnx.ModelProto) -> tuple[tuple[int, int], ...] | None:
    """The per-layer widths ``(N1, N2)`` of a sequential comparison network written by
    merge_files (to split it back into the pair), or None."""
    props = {p.key: p.value for p in model.metadata_props}
    if META_BLOCKS not in props:
        return None
    return tuple((int(a), int(b)) for a, b in json.loads(props[META_BLOCKS]))
