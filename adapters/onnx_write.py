""":class:`~nnbisim.core.model.Network` -> ONNX as a plain chain of Flatten/Gemm/Relu.

Only the operators every verifier's ONNX front end takes (Marabou, nnenum, NNV,
alpha-beta-CROWN) are used, at opset 13 and IR version 8, with a fixed batch of 1.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from nnbisim.adapters.options import FORMS
from nnbisim.core.errors import InputError, OverwriteError
from nnbisim.core.files import write_atomic
from nnbisim.core.model import Network

OPSET = 13
IR_VERSION = 8
DTYPES = {"float32": (np.float32, TensorProto.FLOAT), "float64": (np.float64, TensorProto.DOUBLE)}


def network_to_model(
    net: Network,
    *,
    post: np.ndarray | None = None,
    dtype: str = "float32",
    input_name: str = "input",
    output_name: str = "output",
    doc: str = "",
    form: str = "gemm",
) -> onnx.ModelProto:
    """Write ``net`` as ONNX; ``post`` is an optional linear map applied after the last layer.

    ``form`` ``gemm``: the input keeps ``net.input_shape`` (e.g. ``1x1x1x5``) and is flattened
    first when it is not already ``(1, n)``; layers are Gemm; the output has shape ``(1, m)``.
    ``matmul-1d``: input ``[n]`` and output ``[m]``, each layer ``MatMul(W, x)`` then ``Add``
    (the weight first, as VNN-COMP 2026's pruned ACAS Xu networks are written).
    """
    if form not in FORMS:
        raise InputError(f"unknown ONNX form {form!r}; use one of {', '.join(FORMS)}")
    if form == "matmul-1d":
        return _matmul_1d(net, post, dtype, input_name, output_name, doc)
    np_type, onnx_type = DTYPES[dtype]
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    shape = list(net.input_shape)
    current = input_name
    if len(shape) > 2 and shape[0] == 1:  # Flatten keeps the batch axis, whatever its size
        nodes.append(helper.make_node("Flatten", [current], ["flat"], name="flatten_input",
                                      axis=1))
        current = "flat"
    elif len(shape) != 2 or shape[0] != 1:
        nodes.append(helper.make_node("Reshape", [current, "flat_shape"], ["flat"],
                                      name="flatten_input"))
        inits.append(numpy_helper.from_array(np.array([1, net.in_size], np.int64), "flat_shape"))
        current = "flat"
    weights = [(layer.weight, layer.bias) for layer in net.layers]
    if post is not None:
        weights.append((np.asarray(post, np.float64), np.zeros(np.asarray(post).shape[0])))
    last = len(weights) - 1
    for k, (w, b) in enumerate(weights):
        is_post = post is not None and k == last
        tag = "compare" if is_post else f"layer{k + 1}"
        inits.append(numpy_helper.from_array(np.ascontiguousarray(w, np_type), f"{tag}_W"))
        inits.append(numpy_helper.from_array(np.ascontiguousarray(b, np_type), f"{tag}_B"))
        out = output_name if k == last else f"{tag}_out"
        nodes.append(helper.make_node("Gemm", [current, f"{tag}_W", f"{tag}_B"], [out],
                                      name=f"{tag}_gemm", transB=1))
        current = out
        if k < len(net.layers) - 1:
            nodes.append(helper.make_node("Relu", [current], [f"{tag}_relu"], name=f"{tag}_relu"))
            current = f"{tag}_relu"
    out_size = weights[-1][0].shape[0]
    return _finish(nodes, inits, net, (input_name, shape), (output_name, [1, out_size]),
                   onnx_type, doc)


def _finish(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto], net: Network,
            inp: tuple[str, list[int]], out: tuple[str, list[int]], onnx_type: int,
            doc: str) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        net.name if net.name.isidentifier() else "nnbisim",
        [helper.make_tensor_value_info(inp[0], onnx_type, inp[1])],
        [helper.make_tensor_value_info(out[0], onnx_type, out[1])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="nnbisim", doc_string=doc)
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def _matmul_1d(net: Network, post: np.ndarray | None, dtype: str, input_name: str,
               output_name: str, doc: str) -> onnx.ModelProto:
    """``net`` with a 1-D input and output, each layer ``Add(MatMul(W, x), b)``."""
    np_type, onnx_type = DTYPES[dtype]
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    weights = [(layer.weight, layer.bias) for layer in net.layers]
    if post is not None:
        weights.append((np.asarray(post, np.float64), np.zeros(np.asarray(post).shape[0])))
    current, last = input_name, len(weights) - 1
    for k, (w, b) in enumerate(weights):
        tag = "compare" if post is not None and k == last else f"layer{k + 1}"
        inits.append(numpy_helper.from_array(np.ascontiguousarray(w, np_type), f"{tag}_W"))
        inits.append(numpy_helper.from_array(np.ascontiguousarray(b, np_type), f"{tag}_B"))
        nodes.append(helper.make_node("MatMul", [f"{tag}_W", current], [f"{tag}_mm"],
                                      name=f"{tag}_matmul"))
        current = output_name if k == last else f"{tag}_out"
        nodes.append(helper.make_node("Add", [f"{tag}_mm", f"{tag}_B"], [current],
                                      name=f"{tag}_add"))
        if k < len(net.layers) - 1:
            nodes.append(helper.make_node("Relu", [current], [f"{tag}_relu"], name=f"{tag}_relu"))
            current = f"{tag}_relu"
    return _finish(nodes, inits, net, (input_name, [net.in_size]),
                   (output_name, [weights[-1][0].shape[0]]), onnx_type, doc)


def check_writable(path: str | Path, force: bool = False) -> Path:
    """Refuse to overwrite an existing file unless asked; make the parent folder."""
    path = Path(path)
    if path.exists() and not force:
        raise OverwriteError(f"{path}: already exists; pass --force to overwrite it or choose "
                             "another output path")
    if path.exists() and path.is_dir():
        raise InputError(f"{path}: is a directory; give a file path")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def save_model(model: onnx.ModelProto, path: str | Path, force: bool = False) -> Path:
    """Check and write an ONNX model, refusing to overwrite unless ``force``."""
    path = check_writable(path, force)
    onnx.checker.check_model(model)
    if path.suffix == ".gz":  # as VNN-COMP 2026 ships its networks
        write_atomic(path, gzip.compress(model.SerializeToString(), mtime=0))
    else:
        onnx.save(model, str(path))
    return path
