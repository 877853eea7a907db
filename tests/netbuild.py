"""Small ONNX models written inline, in the styles different exporters produce."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from nnbisim.core.model import Network


def random_network(sizes: list[int], rng: np.random.Generator, input_shape=(),
                   scale: float = 1.0) -> Network:
    pairs = list(zip(sizes[:-1], sizes[1:], strict=True))
    ws = [rng.normal(size=(o, i)) * scale / np.sqrt(i) for i, o in pairs]
    bs = [rng.normal(size=o) * 0.1 for o in sizes[1:]]
    return Network.from_weights(ws, bs, input_shape)


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def matmul_add_model(net: Network, input_shape: tuple[int, ...], *, normalise=None,
                     weights_left: bool = False, opset: int = 13) -> onnx.ModelProto:
    """MatMul + Add chain (as Keras/MATLAB converters write), optional Sub/Div normalisation.

    With ``weights_left`` the weights multiply from the left on a column vector ``(.., n, 1)``
    (``W @ x``), as some MATLAB exports do for inputs like 1x784x1.
    """
    nodes, inits = [], []
    cur = "x"
    if normalise is not None:
        mean, std = normalise
        inits += [numpy_helper.from_array(np.asarray(v, np.float32).reshape(input_shape), name)
                  for v, name in ((mean, "mean"), (std, "std"))]
        nodes += [helper.make_node("Sub", [cur, "mean"], ["centred"]),
                  helper.make_node("Div", ["centred", "std"], ["normed"])]
        cur = "normed"
    if weights_left:
        inits.append(numpy_helper.from_array(np.array([1, net.in_size, 1], np.int64), "colshape"))
        nodes.append(helper.make_node("Reshape", [cur, "colshape"], ["col"]))
        cur = "col"
    else:
        nodes.append(helper.make_node("Flatten", [cur], ["flat"], axis=1))
        cur = "flat"
    for k, layer in enumerate(net.layers):
        w = layer.weight if weights_left else layer.weight.T
        b = layer.bias.reshape(-1, 1) if weights_left else layer.bias
        inits += [numpy_helper.from_array(w.astype(np.float32), f"W{k}"),
                  numpy_helper.from_array(b.astype(np.float32), f"B{k}")]
        ins = [f"W{k}", cur] if weights_left else [cur, f"W{k}"]
        nodes += [helper.make_node("MatMul", ins, [f"mm{k}"]),
                  helper.make_node("Add", [f"mm{k}", f"B{k}"], [f"z{k}"])]
        cur = f"z{k}"
        if k < len(net.layers) - 1:
            nodes.append(helper.make_node("Relu", [cur], [f"h{k}"]))
            cur = f"h{k}"
    out_shape = [1, net.out_size, 1] if weights_left else [1, net.out_size]
    graph = helper.make_graph(
        nodes, "mm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info(cur, TensorProto.FLOAT, out_shape)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def torch_export(module, input_shape: tuple[int, ...], dynamic_batch: bool = False
                 ) -> onnx.ModelProto:
    """A real PyTorch export (TorchScript exporter: Flatten, Gemm with transB, ...)."""
    import torch

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), torch.zeros(*input_shape), buf, dynamo=False,
                          input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}} if dynamic_batch else None)
    return onnx.load_from_string(buf.getvalue())


def torch_forward(module, x: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    import torch

    with torch.no_grad():
        t = torch.as_tensor(x, dtype=torch.float32).reshape(-1, *input_shape[1:])
        return module.eval()(t).double().numpy().reshape(len(x), -1)
