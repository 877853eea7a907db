"""Writing a quantized network as ONNX that onnxruntime runs exactly as the model (the form is
described in :mod:`nnbisim.adapters.onnx_quant`)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from nnbisim.adapters.onnx_write import IR_VERSION, OPSET
from nnbisim.core.errors import UnsupportedModelError
from nnbisim.core.quant import QuantizedLayer, QuantizedNetwork, Quantizer

META_QUANT = "nnbisim.quantized"


def _check_writable(net: QuantizedNetwork) -> None:
    for k, q in enumerate(net.layers):
        if q.w_codes.min() < -128 or q.w_codes.max() > 127:
            raise UnsupportedModelError(f"{net.name}: layer {k + 1} has weight codes outside "
                                        "int8; only int8 weights are written")
        if q.out is not None and (q.out.qmin, q.out.qmax) != (0, 255):
            raise UnsupportedModelError(f"{net.name}: layer {k + 1}'s activations are not "
                                        "uint8; only uint8 activations are written")
    if (net.input.qmin, net.input.qmax) != (0, 255):
        raise UnsupportedModelError(f"{net.name}: the input quantizer is not uint8")


class _Writer:
    """The graph's nodes and initializers as they are added."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def init(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=attrs.pop("name", output),
                                           **attrs))
        return output

    def quantize(self, src: str, q: Quantizer, t: str) -> str:
        """float64 ``src`` -> uint8 codes: Div, Round (half to even), Add, Clip, Cast."""
        self.init(f"{t}_qscale", np.array(q.scale, np.float64))
        self.init(f"{t}_qzero", np.array(float(q.zero_point), np.float64))
        self.init(f"{t}_qmin", np.array(float(q.qmin), np.float64))
        self.init(f"{t}_qmax", np.array(float(q.qmax), np.float64))
        self.node("Div", [src, f"{t}_qscale"], f"{t}_div")
        self.node("Round", [f"{t}_div"], f"{t}_round")
        self.node("Add", [f"{t}_round", f"{t}_qzero"], f"{t}_shift")
        self.node("Clip", [f"{t}_shift", f"{t}_qmin", f"{t}_qmax"], f"{t}_clip")
        return self.node("Cast", [f"{t}_clip"], f"{t}_codes", to=TensorProto.UINT8)

    def layer(self, t: str, codes: str, quant: Quantizer, q: QuantizedLayer) -> str:
        """The exact int32 sum of one layer, scaled and biased in float64: its output's name."""
        self.node("Cast", [codes], f"{t}_in32", to=TensorProto.INT32)
        self.init(f"{t}_zin", np.array(quant.zero_point, np.int32))
        self.node("Sub", [f"{t}_in32", f"{t}_zin"], f"{t}_xc")
        self.init(f"{t}_W", np.ascontiguousarray(q.w_codes.T.astype(np.int8)))
        weights = self.node("Cast", [f"{t}_W"], f"{t}_W32", to=TensorProto.INT32)
        if np.any(q.w_zero_points != 0):  # per output channel, broadcast over the columns
            self.init(f"{t}_Wzero", q.w_zero_points.astype(np.int32))
            weights = self.node("Sub", [weights, f"{t}_Wzero"], f"{t}_Wc")
        self.node("MatMul", [f"{t}_xc", weights], f"{t}_acc", name=f"{t}_matmul")
        self.node("Cast", [f"{t}_acc"], f"{t}_accd", name=f"{t}_cast", to=TensorProto.DOUBLE)
        self.init(f"{t}_scale", np.asarray(quant.scale * q.w_scales, np.float64))
        self.init(f"{t}_B", np.asarray(q.bias, np.float64))
        self.node("Mul", [f"{t}_accd", f"{t}_scale"], f"{t}_mul")
        return self.node("Add", [f"{t}_mul", f"{t}_B"], f"{t}_z", name=f"{t}_add")

    def dequantize(self, t: str, codes: str, output_name: str) -> None:
        """``(codes - zero) * scale`` in float64, then float32: the network's output."""
        self.node("Cast", [codes], f"{t}_codesd", to=TensorProto.DOUBLE)
        self.node("Sub", [f"{t}_codesd", f"{t}_qzero"], f"{t}_centred")
        self.node("Mul", [f"{t}_centred", f"{t}_qscale"], f"{t}_value")
        self.node("Cast", [f"{t}_value"], output_name, name="output", to=TensorProto.FLOAT)


def _body(w: _Writer, net: QuantizedNetwork, current: str, output_name: str) -> None:
    """The layers from the float input ``current`` to the output ``output_name``."""
    w.node("Cast", [current], "input_f64", to=TensorProto.DOUBLE)
    quant = net.input
    codes = w.quantize("input_f64", quant, "in")
    last = len(net.layers) - 1
    for k, q in enumerate(net.layers):
        t = f"layer{k + 1}"
        z = w.layer(t, codes, quant, q)
        if k < last:
            z = w.node("Relu", [z], f"{t}_relu")
        if q.out is None:
            w.node("Cast", [z], output_name, name="output", to=TensorProto.FLOAT)
            return
        quant = q.out
        codes = w.quantize(z, quant, t)
        if k == last:
            w.dequantize(t, codes, output_name)


def quantized_to_model(net: QuantizedNetwork, *, input_name: str = "input",
                       output_name: str = "output", doc: str = "") -> onnx.ModelProto:
    """Write ``net`` as ONNX (input ``net.input_shape``, output ``(1, m)``, float32)."""
    _check_writable(net)
    w = _Writer()
    current = input_name
    shape = list(net.input_shape)
    if shape != [1, net.in_size]:
        w.init("flat_shape", np.array([1, net.in_size], np.int64))
        current = w.node("Reshape", [current, "flat_shape"], "flat", name="flatten_input")
    _body(w, net, current, output_name)
    graph = helper.make_graph(
        w.nodes, "nnbisim_quantized",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [1, net.out_size])],
        initializer=w.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="nnbisim", doc_string=doc)
    model.ir_version = IR_VERSION
    helper.set_model_props(model, {META_QUANT: "int8 weights, uint8 activations"})
    onnx.checker.check_model(model, full_check=True)
    return model
