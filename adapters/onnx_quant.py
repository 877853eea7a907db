"""Quantized networks <-> ONNX.

Written form (:func:`quantized_to_model`), standard ONNX opset 13 that onnxruntime runs with
exactly the arithmetic of :meth:`~nnbisim.core.quant.QuantizedNetwork.forward`, operation for
operation::

    Cast(input, double) -> Div(s) -> Round -> Add(z) -> Clip(0, 255) -> Cast(uint8): codes
    per layer: Cast(codes, int32) -> Sub(z_in) -> MatMul(Cast(W int8, int32) [- z_w]):
               the int32 sum (exact)
               Cast(double) -> Mul(s_in * s_w) -> Add(bias) [-> Relu] -> the same rounding
    last codes -> Cast(double) -> Sub(z) -> Mul(s) -> Cast(float): output (float32)

So nnbisim's bounds and witnesses hold for the file bit for bit (a float32 requantization, as
in QuantizeLinear or PyTorch's kernels, can land a value within float32 rounding of a tie on
the other side; measured: PyTorch and this file agree on all 10,000 MNIST test images).

The sums are an int32 ``MatMul``, not ``MatMulInteger``: onnxruntime's ``MatMulInteger`` on
uint8 x int8 adds pairs of products in int16 with saturation on x86 CPUs without VNNI
(measured on an AVX2 AMD EPYC: 64 codes 255 against weights 127 give 1048544 = 32 x 32767,
not 2072640), so its sums depend on the machine. Files that nnbisim wrote with
``MatMulInteger`` before still read; onnxruntime may not run them exactly.

Read forms (:func:`quantized_from_model`): that one; the QDQ form quantization tools write
(``DequantizeLinear`` on int8 weight initializers, float ``MatMul``/``Gemm`` + ``Add``,
``Relu``, and ``QuantizeLinear``/``DequantizeLinear`` pairs on activations); and
``QLinearMatMul`` chains; and the ``QuantizeLinear``/``MatMulInteger`` float32 form. Anything
else is refused by name. The writer is :mod:`nnbisim.adapters.onnx_quant_write`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from nnbisim.adapters.onnx_load import read_model
from nnbisim.adapters.onnx_quant_write import META_QUANT
from nnbisim.core.errors import UnsupportedModelError
from nnbisim.core.quant import QuantizedLayer, QuantizedNetwork, Quantizer


def _u8(v: int) -> np.ndarray:
    return np.array(v, dtype=np.uint8)


def is_quantized(model: onnx.ModelProto) -> bool:
    ops = {n.op_type for n in model.graph.node}
    return (any(p.key == META_QUANT for p in model.metadata_props)
            or {"Round", "Clip"} <= ops
            or bool(ops & {"QuantizeLinear", "DequantizeLinear", "QLinearMatMul",
                           "MatMulInteger", "QGemm", "QLinearAdd"}))


def _cast_to(node: onnx.NodeProto) -> int:
    return next((a.i for a in node.attribute if a.name == "to"), 0)


class _Reader:
    """Walk a single chain of quantized operators from the input to the output."""

    def __init__(self, model: onnx.ModelProto, source: str) -> None:
        self.source = source
        self.consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        for n in model.graph.node:
            if n.op_type == "Constant":
                self.consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
        self.nodes = [n for n in model.graph.node if n.op_type != "Constant"]
        self.by_input: dict[str, list[onnx.NodeProto]] = {}
        for n in self.nodes:
            for i in n.input:
                self.by_input.setdefault(i, []).append(n)
        inputs = [i for i in model.graph.input if i.name not in self.consts]
        if len(inputs) != 1:
            raise self.refuse(f"has {len(inputs)} inputs; a network takes one")
        self.input = inputs[0]
        self.output = model.graph.output[0].name

    def refuse(self, why: str) -> UnsupportedModelError:
        return UnsupportedModelError(f"{self.source}: {why}; nnbisim reads quantized fully "
                                     "connected ReLU chains (QuantizeLinear/DequantizeLinear, "
                                     "MatMulInteger, QLinearMatMul, MatMul/Gemm + Add, Relu)")

    def const(self, name: str, what: str) -> np.ndarray:
        if name not in self.consts:
            raise self.refuse(f"the {what} '{name}' is not a constant")
        return self.consts[name]

    def next(self, value: str) -> onnx.NodeProto | None:
        users = self.by_input.get(value, [])
        if len(users) > 1:
            raise self.refuse(f"'{value}' feeds {len(users)} nodes; only chains are supported")
        return users[0] if users else None

    def quantizer(self, node: onnx.NodeProto) -> Quantizer:
        scale = float(self.const(node.input[1], "scale").reshape(-1)[0])
        zero = self.const(node.input[2], "zero point") if len(node.input) > 2 else _u8(0)
        if self.const(node.input[1], "scale").size != 1:
            raise self.refuse(f"'{node.name}' quantizes an activation per channel")
        lo, hi = (0, 255) if zero.dtype == np.uint8 else (-128, 127)
        return Quantizer(scale, int(zero.reshape(-1)[0]), lo, hi)

    def rounding(self, div: onnx.NodeProto) -> tuple[Quantizer, str]:
        """``Div(s) -> Round -> Add(z) -> Clip(lo, hi) -> Cast(uint8)``: the quantizer and the
        codes' name."""
        chain, node = [div], div
        for op in ("Round", "Add", "Clip", "Cast"):
            node = self.next(node.output[0])
            if node is None or node.op_type != op:
                raise self.refuse(f"'{div.name}' starts a rounding chain that is not Div, Round, "
                                  "Add, Clip, Cast")
            chain.append(node)
        scale = float(self.const(div.input[1], "scale").reshape(-1)[0])
        zero = self.const(chain[2].input[1], "zero point").reshape(-1)[0]
        lo = self.const(chain[3].input[1], "clip minimum").reshape(-1)[0]
        hi = self.const(chain[3].input[2], "clip maximum").reshape(-1)[0]
        if zero != np.rint(zero) or lo != np.rint(lo) or hi != np.rint(hi):
            raise self.refuse(f"'{div.name}': zero point and clip bounds must be integers")
        return Quantizer(scale, int(zero), int(lo), int(hi)), chain[-1].output[0]

    def weight(self, node: onnx.NodeProto) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A ``DequantizeLinear`` of an int8 initializer ``(in, out)`` -> codes, scales, zeros
        per output channel."""
        codes = self.const(node.input[0], "weight").astype(np.float64)
        scale = self.const(node.input[1], "weight scale").astype(np.float64).reshape(-1)
        zero = (self.const(node.input[2], "weight zero point").astype(np.float64).reshape(-1)
                if len(node.input) > 2 else np.zeros(1))
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if scale.size > 1 and axis not in (1, -1):
            raise self.refuse(f"'{node.name}' quantizes a weight per input channel")
        n = codes.shape[1]
        return codes, np.broadcast_to(scale, (n,)), np.broadcast_to(zero, (n,))

    def _input(self) -> tuple[tuple[int, ...], Quantizer, str]:
        """The input's shape, its quantizer and the name of its codes (after any Reshape,
        Flatten or Cast in front)."""
        shape = tuple(int(d.dim_value) if d.dim_value > 0 else 1
                      for d in self.input.type.tensor_type.shape.dim)
        node = self.next(self.input.name)
        while node is not None and node.op_type in ("Reshape", "Flatten"):
            node = self.next(node.output[0])
        if node is not None and node.op_type == "Cast":
            node = self.next(node.output[0])
        if node is not None and node.op_type == "QuantizeLinear":
            return shape, self.quantizer(node), node.output[0]
        if node is not None and node.op_type == "Div":
            return (shape, *self.rounding(node))
        raise self.refuse("the input is not quantized first (QuantizeLinear, or Div, Round, Add, "
                          "Clip, Cast)")

    def _dequantizes(self, cast: onnx.NodeProto, quant: Quantizer) -> None:
        """``Cast(double) -> Sub(z) -> Mul(s)``: the output's dequantization, which must use the
        codes' own parameters."""
        sub = self.next(cast.output[0])
        if sub is None or sub.op_type != "Sub":
            raise self.refuse(f"'{cast.name}' casts codes outside a dequantization")
        mul = self.next(sub.output[0])
        zero = float(self.const(sub.input[1], "zero point").reshape(-1)[0])
        scale = float(self.const(mul.input[1], "scale").reshape(-1)[0]) if mul else 0
        if mul is None or mul.op_type != "Mul" or (zero, scale) != (quant.zero_point,
                                                                    quant.scale):
            raise self.refuse(f"'{cast.name}' dequantizes with other parameters than the codes "
                              "were made with")

    def _step(self, node: onnx.NodeProto, state: dict) -> onnx.NodeProto | None:
        """Take ``node`` into ``state`` (``quant``: the current codes' quantizer, ``pending``:
        the layer being read, ``layers``: those read); the next node, None at the end."""
        op, pending = node.op_type, state["pending"]
        if op == "Div" and pending is not None:  # the float64 rounding chain
            state["quant"], out = self.rounding(node)
            state["layers"].append(self.finish(pending, state["quant"]))
            state["pending"] = None
            return self.next(out)
        if op == "Cast" and pending is None and _cast_to(node) == TensorProto.INT32:
            state["pending"], node = self.integer_layer(node, state["quant"])  # int32 form
        elif op == "Cast" and pending is None:  # the float64 dequantization of the output
            self._dequantizes(node, state["quant"])
            return None
        elif op == "DequantizeLinear" and node.input[0] not in self.consts:
            if node.output[0] == self.output or self.next(node.output[0]) is None:
                return None  # the final dequantization
        elif op == "QLinearMatMul":  # a bias-free layer, rounded once: complete by itself
            if pending is not None:
                raise self.refuse(f"'{node.name}' follows an unfinished layer")
            p = self.layer_start(node, state["quant"])
            state["quant"] = p.pop("out_quant")
            state["layers"].append(self.finish(p, state["quant"]))
        elif op in ("MatMulInteger", "MatMul", "Gemm"):
            if pending is not None:
                raise self.refuse(f"'{node.name}' follows a layer that was not quantized")
            state["pending"] = self.layer_start(node, state["quant"])
        elif op in ("Cast", "Mul", "Add", "Relu") and pending is not None:
            self.layer_step(node, pending)
        elif op == "QuantizeLinear" and pending is not None:
            state["quant"] = self.quantizer(node)
            state["layers"].append(self.finish(pending, state["quant"]))
            state["pending"] = None
        else:
            raise self.refuse(f"operator {op} ('{node.name}') is not supported here")
        return self.next(node.output[0])

    def read(self) -> QuantizedNetwork:
        shape, inq, out = self._input()
        state: dict = {"quant": inq, "pending": None, "layers": []}
        node = self.next(out)
        while node is not None:
            node = self._step(node, state)
        layers: list[QuantizedLayer] = state["layers"]
        if state["pending"] is not None:
            layers.append(self.finish(state["pending"], None))
        if not layers:
            raise self.refuse("has no quantized layer")
        return QuantizedNetwork(inq, tuple(layers), shape or (1, layers[0].in_size),
                                name=self.source)

    def integer_layer(self, cast: onnx.NodeProto,
                      quant: Quantizer) -> tuple[dict, onnx.NodeProto]:
        """``Cast(codes, int32) -> Sub(z_in) -> MatMul(W)`` with ``W`` an integer constant, a
        ``Cast`` of one, or that minus per-column zero points: the layer so far and the
        ``MatMul``."""
        sub = self.next(cast.output[0])
        if sub is None or sub.op_type != "Sub" or sub.input[0] != cast.output[0]:
            raise self.refuse(f"'{cast.name}' casts codes to int32 without subtracting their "
                              "zero point")
        zero = self.const(sub.input[1], "zero point").reshape(-1)
        if zero.size != 1 or int(zero[0]) != quant.zero_point:
            raise self.refuse(f"'{sub.name}' subtracts another zero point than the codes' "
                              f"{quant.zero_point}")
        matmul = self.next(sub.output[0])
        if matmul is None or matmul.op_type != "MatMul" or matmul.input[0] != sub.output[0]:
            raise self.refuse(f"'{sub.name}' does not feed an integer MatMul")
        codes, zeros = self._integer_weight(matmul.input[1], matmul.name)
        n = codes.shape[1]
        return ({"codes": codes, "zeros": np.broadcast_to(zeros, (n,)), "scales": None,
                 "mul": np.ones(n), "bias": np.zeros(n), "relu": False, "integer": True,
                 "in": quant}, matmul)

    def _integer_weight(self, name: str, user: str) -> tuple[np.ndarray, np.ndarray]:
        zeros = np.zeros(1)
        if name not in self.consts:
            producer = next((m for m in self.nodes if name in m.output), None)
            if producer is not None and producer.op_type == "Sub":
                zeros = self.const(producer.input[1], "weight zero point").astype(
                    np.float64).reshape(-1)
                name = producer.input[0]
                producer = next((m for m in self.nodes if name in m.output), None)
            if producer is not None and producer.op_type == "Cast":
                name = producer.input[0]
        codes = self.const(name, f"weight of '{user}'")
        if codes.dtype.kind not in "iu" or codes.ndim != 2:
            raise self.refuse(f"'{user}' multiplies by a {codes.dtype} {codes.shape} weight, "
                              "not an integer matrix")
        return codes.astype(np.float64), zeros

    def layer_start(self, node: onnx.NodeProto, quant: Quantizer) -> dict:
        op = node.op_type
        if op == "MatMulInteger":
            codes = self.const(node.input[1], "weight").astype(np.float64)
            zero = (self.const(node.input[3], "weight zero point").astype(np.float64).reshape(-1)
                    if len(node.input) > 3 else np.zeros(1))
            n = codes.shape[1]
            return {"codes": codes, "zeros": np.broadcast_to(zero, (n,)), "scales": None,
                    "mul": np.ones(n), "bias": np.zeros(n), "relu": False, "integer": True,
                    "in": quant}
        if op == "QLinearMatMul":
            codes = self.const(node.input[3], "weight").astype(np.float64)
            n = codes.shape[1]
            ws = self.const(node.input[4], "weight scale").astype(np.float64).reshape(-1)
            wz = self.const(node.input[5], "weight zero point").astype(np.float64).reshape(-1)
            out = Quantizer(float(self.const(node.input[6], "scale").reshape(-1)[0]),
                            int(self.const(node.input[7], "zero point").reshape(-1)[0]))
            return {"codes": codes, "zeros": np.broadcast_to(wz, (n,)),
                    "scales": np.broadcast_to(ws, (n,)), "mul": np.ones(n), "bias": np.zeros(n),
                    "relu": True, "integer": False, "in": quant, "out_quant": out}
        wname = node.input[1]
        producer = next((m for m in self.nodes if wname in m.output), None)
        if producer is None or producer.op_type != "DequantizeLinear":
            raise self.refuse(f"'{node.name}' multiplies by a float weight, not a dequantized "
                              "int8 one")
        codes, scales, zeros = self.weight(producer)
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if op == "Gemm" and attrs.get("transB", 0):
            raise self.refuse(f"'{node.name}' uses transB; write weights as (in, out)")
        bias = np.zeros(codes.shape[1])
        if op == "Gemm" and len(node.input) > 2:
            bias = self.const(node.input[2], "bias").astype(np.float64).reshape(-1)
        return {"codes": codes, "zeros": zeros, "scales": scales, "mul": np.ones(len(bias)),
                "bias": bias, "relu": False, "integer": False, "in": quant}

    def layer_step(self, node: onnx.NodeProto, p: dict) -> None:
        op = node.op_type
        if op == "Cast":
            return
        if op == "Relu":
            p["relu"] = True
            return
        other = next((i for i in node.input if i in self.consts), None)
        if other is None:
            raise self.refuse(f"'{node.name}' combines two computed values")
        v = self.const(other, "operand").astype(np.float64).reshape(-1)
        if op == "Mul":
            if p["relu"] or np.any(p["bias"] != 0):
                raise self.refuse(f"'{node.name}' scales after the bias or ReLU")
            p["mul"] = p["mul"] * v
        else:
            if p["relu"]:
                raise self.refuse(f"'{node.name}' adds after the ReLU")
            p["bias"] = p["bias"] + v

    def finish(self, p: dict, out: Quantizer | None) -> QuantizedLayer:
        quant: Quantizer = p["in"]
        if p["integer"]:  # the Mul carries s_in * s_w
            scales = p["mul"] / quant.scale
        else:
            scales = p["scales"] * p["mul"]
        layer = QuantizedLayer(p["codes"].T, scales, p["zeros"], p["bias"], out)
        object.__setattr__(layer, "_relu", p["relu"])
        return layer


def quantized_from_model(model: onnx.ModelProto, source: str = "<model>") -> QuantizedNetwork:
    """Read a quantized fully connected chain (see the module doc) into the network model.

    ReLU is assumed on every hidden layer (an uint8 activation with zero point 0 clamps at 0
    anyway); a hidden layer without ReLU whose codes can be negative is refused.
    """
    net = _Reader(model, source).read()
    for k, q in enumerate(net.layers[:-1]):
        relu = getattr(q, "_relu", False)
        if not relu and q.out is not None and q.out.value(np.array(q.out.qmin)) < 0:
            raise UnsupportedModelError(f"{source}: hidden layer {k + 1} has no ReLU and its "
                                        "codes can stand for negative values; nnbisim's model "
                                        "has ReLU after every hidden layer")
    return net


def load_quantized(path: str | Path) -> QuantizedNetwork:
    return quantized_from_model(read_model(path), str(path))
