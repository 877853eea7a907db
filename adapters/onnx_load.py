"""ONNX -> :class:`~nnbisim.core.model.Network` for the exports people actually have.

The graph is walked as a chain from its one real input. Every operator on the path is folded into
a pending affine map ``W @ h + b`` (``h`` the last ReLU output, or the input), and every ``Relu``
closes that map into a layer. So Gemm, MatMul + Add, input normalisation (Sub/Div/Mul/Add by
constants), BatchNormalization, Flatten/Reshape/Squeeze/Unsqueeze (which never reorder a flat
vector) and Identity/Dropout all land in the same dense layers. Subgraphs computing only
constants (e.g. PyTorch's ``Shape -> Gather -> Concat -> Reshape``) are evaluated once with
onnx's reference evaluator. Anything else is refused, naming the operator, node and file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nnbisim.adapters.onnx_peek import NOT_ONNX, check_finite, is_gzip, parse_model
from nnbisim.adapters.onnx_tensors import EXTERNAL, attribute_value, tensor_array
from nnbisim.core.errors import InputError, UnsupportedModelError
from nnbisim.core.limits import check_dense
from nnbisim.core.model import Layer, Network

if TYPE_CHECKING:
    import onnx

SHAPE_ONLY = {"Flatten", "Reshape", "Squeeze", "Unsqueeze"}
PASS_THROUGH = {"Identity", "Dropout"}
ELEMENTWISE = {"Add", "Sub", "Mul", "Div"}
# what works for other networks, whichever command refused them
OTHER_GRAPHS = ("for other networks, `nnbisim merge --form graph` writes the pair as one ONNX "
                "file and `nnbisim spec --model` the question, for an external verifier that "
                "reads such graphs")
SUPPORTED = (
    SHAPE_ONLY | PASS_THROUGH | ELEMENTWISE | {"Gemm", "MatMul", "Relu", "BatchNormalization",
                                              "Constant"}
)


def read_model(path: str | Path) -> onnx.ModelProto:
    """Load an ONNX file (plain or gzip'd), turning every failure into one :class:`InputError`
    line. The model comes as onnx's generated message classes loaded without ``import onnx``
    (:func:`~nnbisim.adapters.onnx_peek.parse_model`), except for a plain file keeping weights
    in external files, which onnx.load reads with them."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file; give the path of an .onnx model")
    model = parse_model(path)  # decompressed first where gzip'd
    if not is_gzip(path) and any(t.data_location == EXTERNAL for t in model.graph.initializer):
        try:
            import onnx

            model = onnx.load(str(path))
        except Exception as exc:  # a missing or short external file
            raise InputError(NOT_ONNX.format(path=path, why=f"{type(exc).__name__}: {exc}")) \
                from None
    check_finite(model, path)
    return model


def real_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Graph inputs that are not initializers (old IR versions list weights as inputs too)."""
    inits = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def value_shape(info: onnx.ValueInfoProto) -> tuple[int, ...]:
    """Static shape of a value; symbolic (batch) dimensions count as 1."""
    dims = info.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in dims)


@dataclass
class _Affine:
    """The pending map ``value = weight @ h + bias``; ``shape`` is the value's tensor shape."""

    weight: np.ndarray
    bias: np.ndarray
    shape: tuple[int, ...]

    @classmethod
    def identity(cls, n: int, shape: tuple[int, ...]) -> _Affine:
        return cls(np.eye(n), np.zeros(n), shape)

    def then(self, mat: np.ndarray, vec: np.ndarray, shape: tuple[int, ...]) -> _Affine:
        return _Affine(mat @ self.weight, mat @ self.bias + vec, shape)

    def scaled(self, scale: np.ndarray, shift: np.ndarray) -> _Affine:
        """Elementwise ``scale * value + shift`` (both already flattened to the value size)."""
        return _Affine(scale[:, None] * self.weight, scale * self.bias + shift, self.shape)


def _real(values: np.ndarray) -> np.ndarray:
    """Float values as float64; others (shape arithmetic's integers) as they are."""
    return values.astype(np.float64) if values.dtype.kind == "f" else values


class _ChainReader:
    def __init__(self, model: onnx.ModelProto, source: str) -> None:
        self.model = model
        self.source = source
        self.consts: dict[str, np.ndarray] = {
            t.name: _real(tensor_array(t)) for t in model.graph.initializer}

    def refuse(self, node: onnx.NodeProto, why: str) -> UnsupportedModelError:
        label = node.name or (node.output[0] if node.output else "?")
        return UnsupportedModelError(f"{self.source}: node '{label}' ({node.op_type}): {why}")

    def fold_constant(self, node: onnx.NodeProto) -> None:
        """Evaluate a node whose inputs are all constants (shape arithmetic, Constant)."""
        if node.op_type == "Constant":
            attr = {a.name: a for a in node.attribute}
            if "value" in attr:
                val = tensor_array(attr["value"].t)
            elif "value_float" in attr:
                val = np.array(attr["value_float"].f)
            elif "value_floats" in attr:
                val = np.array(list(attr["value_floats"].floats))
            elif "value_int" in attr:
                val = np.array(attr["value_int"].i, dtype=np.int64)
            elif "value_ints" in attr:
                val = np.array(list(attr["value_ints"].ints), dtype=np.int64)
            else:
                raise self.refuse(node, "Constant without a numeric value is not supported")
            self.consts[node.output[0]] = _real(val)
            return
        import onnx
        from onnx.reference import ReferenceEvaluator

        node = onnx.NodeProto.FromString(node.SerializeToString())

        inputs = [n for n in node.input if n]
        graph = onnx.helper.make_graph(
            [node], "fold",
            [onnx.helper.make_tensor_value_info(n, onnx.helper.np_dtype_to_tensor_dtype(
                self.consts[n].dtype), self.consts[n].shape) for n in inputs],
            [onnx.helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None)
             for o in node.output],
        )
        opset = [onnx.helper.make_opsetid(o.domain, o.version)
                 for o in self.model.opset_import if o.domain in ("", "ai.onnx")]
        try:
            outs = ReferenceEvaluator(onnx.helper.make_model(graph, opset_imports=opset)).run(
                None, {n: self.consts[n] for n in inputs})
        except Exception as exc:
            raise self.refuse(node, f"cannot evaluate this constant expression ({exc})") from exc
        for name, val in zip(node.output, outs, strict=False):
            self.consts[name] = val

    def const_operand(self, node: onnx.NodeProto, current: str) -> tuple[np.ndarray, int]:
        """The constant operand of a binary node on the chain, and the chain operand's position."""
        if len(node.input) != 2:
            raise self.refuse(node, "expected two operands")
        pos = list(node.input).index(current)
        other = node.input[1 - pos]
        if other == current or other not in self.consts:
            raise self.refuse(
                node, "both operands depend on the input: nnbisim reads a chain of layers; "
                f"{OTHER_GRAPHS}")
        return np.asarray(self.consts[other], dtype=np.float64), pos

    def read(self) -> Network:
        graph = self.model.graph
        inputs = real_inputs(self.model)
        if len(inputs) != 1:
            raise UnsupportedModelError(
                f"{self.source}: the model has {len(inputs)} inputs "
                f"({', '.join(i.name for i in inputs) or 'none'}); nnbisim needs exactly one")
        if len(graph.output) != 1:
            raise UnsupportedModelError(
                f"{self.source}: the model has {len(graph.output)} outputs; nnbisim needs one")
        in_shape = value_shape(inputs[0])
        current = inputs[0].name
        n_in = int(np.prod(in_shape))
        check_dense(n_in, n_in, f"{self.source}: its input")
        affine = _Affine.identity(n_in, in_shape)
        layers: list[Layer] = []
        for node in graph.node:
            node_inputs = [n for n in node.input if n]
            if current not in node_inputs:
                if all(n in self.consts for n in node_inputs):
                    self.fold_constant(node)
                    continue
                raise self.refuse(node, "it branches off the chain from the input: nnbisim "
                                  f"reads a chain of layers; {OTHER_GRAPHS}")
            if node.op_type == "Shape":
                self.consts[node.output[0]] = np.array(affine.shape, dtype=np.int64)
                continue
            if node.op_type not in SUPPORTED:
                raise self.refuse(
                    node, f"operator {node.op_type} is not supported; nnbisim reads "
                    "Gemm, MatMul, Add/Sub/Mul/Div by constants, Relu, BatchNormalization, "
                    "Flatten, Reshape, Squeeze, Unsqueeze, Identity, Dropout, Constant; "
                    f"{OTHER_GRAPHS}")
            affine = self.step(node, current, affine, layers)
            current = node.output[0]
        if current != graph.output[0].name:
            raise UnsupportedModelError(
                f"{self.source}: the output '{graph.output[0].name}' is not the end of the chain "
                f"from the input (the chain ends at '{current}')")
        layers.append(Layer(affine.weight, affine.bias))
        for k, layer in enumerate(layers):
            if not (np.isfinite(layer.weight).all() and np.isfinite(layer.bias).all()):
                raise UnsupportedModelError(
                    f"{self.source}: layer {k + 1} has NaN or infinite weights once its "
                    "operators are folded (a weight, a normalisation constant or a variance "
                    "out of range); nnbisim needs finite weights: check the export")
        return Network(tuple(layers), in_shape, name=self.source)

    def step(self, node: onnx.NodeProto, current: str, affine: _Affine,
             layers: list[Layer]) -> _Affine:
        op = node.op_type
        attrs = {a.name: attribute_value(a) for a in node.attribute}
        n = affine.weight.shape[0]
        if op in PASS_THROUGH:
            return affine
        if op == "Relu":
            layers.append(Layer(affine.weight, affine.bias))
            check_dense(n, n, f"{self.source}: node '{node.name or node.output[0]}' (Relu)")
            return _Affine.identity(n, affine.shape)
        if op in SHAPE_ONLY:
            return _Affine(affine.weight, affine.bias, self.new_shape(node, affine.shape, attrs))
        if op in ELEMENTWISE:
            c, pos = self.const_operand(node, current)
            try:
                out_shape = np.broadcast_shapes(affine.shape, c.shape)
                c_flat = np.broadcast_to(c, out_shape).reshape(-1)
            except ValueError as exc:
                raise self.refuse(node, f"constant of shape {c.shape} does not broadcast to "
                                  f"{affine.shape}") from exc
            if c_flat.size != n:
                raise self.refuse(node, "the constant would broadcast the input to a larger "
                                  "tensor; only per-element or per-channel constants are supported")
            ones = np.ones(n)
            if op == "Add":
                return _Affine(affine.weight, affine.bias + c_flat, out_shape)
            if op == "Sub":
                out = affine.scaled(ones if pos == 0 else -ones, -c_flat if pos == 0 else c_flat)
                return _Affine(out.weight, out.bias, out_shape)
            if op == "Mul":
                out = affine.scaled(c_flat, np.zeros(n))
                return _Affine(out.weight, out.bias, out_shape)
            if pos != 0:
                raise self.refuse(node, "dividing a constant by the input is not affine")
            if np.any(c_flat == 0):
                raise self.refuse(node, "division by zero in a normalisation constant")
            out = affine.scaled(1.0 / c_flat, np.zeros(n))
            return _Affine(out.weight, out.bias, out_shape)
        if op == "BatchNormalization":
            if node.input[0] != current or not all(x in self.consts for x in node.input[1:5]):
                raise self.refuse(node, "only inference-mode batch normalisation with constant "
                                  "scale, bias, mean and variance is supported")
            scale, bias, mean, var = (np.asarray(self.consts[x], np.float64)
                                      for x in node.input[1:5])
            eps = float(attrs.get("epsilon", 1e-5))
            if not np.all(var + eps > 0):
                raise self.refuse(node, "a variance plus epsilon is not positive; export the "
                                  "network in inference mode with its running statistics")
            shape = (1, -1) + (1,) * max(len(affine.shape) - 2, 0)
            g = scale / np.sqrt(var + eps)
            gain = np.broadcast_to(g.reshape(shape), affine.shape).reshape(-1)
            shift = np.broadcast_to((bias - mean * g).reshape(shape), affine.shape).reshape(-1)
            return affine.scaled(gain, shift)
        if op == "MatMul":
            c, pos = self.const_operand(node, current)
            return self.matmul(node, affine, c, pos, 1.0)
        if op == "Gemm":
            return self.gemm(node, current, affine, attrs)
        raise self.refuse(node, "unsupported")  # pragma: no cover - SUPPORTED guards this

    def matmul(self, node: onnx.NodeProto, affine: _Affine, c: np.ndarray, pos: int,
               alpha: float) -> _Affine:
        """``value @ c`` (pos 0) or ``c @ value`` (pos 1) for a vector-like value."""
        n = affine.weight.shape[0]
        shape = affine.shape
        if c.ndim != 2:
            raise self.refuse(node, f"weight of shape {c.shape} is not a matrix")
        check_dense(c.shape[1 - pos], affine.weight.shape[1],
                    f"{self.source}: node '{node.name or node.output[0]}' ({node.op_type})")
        if pos == 0:
            if not shape or shape[-1] != n or c.shape[0] != n:
                raise self.refuse(node, f"cannot multiply a value of shape {shape} by a "
                                  f"{c.shape} matrix as a dense layer")
            return affine.then(alpha * c.T, np.zeros(c.shape[1]), shape[:-1] + (c.shape[1],))
        if len(shape) == 1 and shape[0] == n and c.shape[1] == n:  # W @ x for a 1-D x
            return affine.then(alpha * c, np.zeros(c.shape[0]), (c.shape[0],))
        if len(shape) < 2 or shape[-2] != n or shape[-1] != 1 or c.shape[1] != n:
            raise self.refuse(node, f"cannot multiply a {c.shape} matrix by a value of shape "
                              f"{shape} as a dense layer")
        return affine.then(alpha * c, np.zeros(c.shape[0]), shape[:-2] + (c.shape[0], 1))

    def gemm(self, node: onnx.NodeProto, current: str, affine: _Affine, attrs: dict) -> _Affine:
        alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
        ins = list(node.input)
        pos = ins.index(current)
        if pos == 2 or ins[1 - pos] not in self.consts:
            raise self.refuse(node, "Gemm needs the input as A or B and a constant weight")
        if len(ins) > 2 and ins[2] and ins[2] not in self.consts:
            raise self.refuse(node, "Gemm bias C must be a constant")
        w = np.asarray(self.consts[ins[1 - pos]], np.float64)
        if pos == 0:
            if attrs.get("transA", 0):
                affine = _Affine(affine.weight, affine.bias, tuple(reversed(affine.shape)))
            if attrs.get("transB", 0):
                w = w.T
        else:
            if attrs.get("transA", 0):
                w = w.T
            if attrs.get("transB", 0):
                affine = _Affine(affine.weight, affine.bias, tuple(reversed(affine.shape)))
        if len(affine.shape) != 2:
            raise self.refuse(node, f"Gemm input must be 2-D, got shape {affine.shape}")
        out = self.matmul(node, affine, w, pos, alpha)
        if len(ins) > 2 and ins[2]:
            c = beta * np.asarray(self.consts[ins[2]], np.float64)
            try:
                c_flat = np.broadcast_to(c, out.shape).reshape(-1)
            except ValueError as exc:
                raise self.refuse(node, f"bias of shape {c.shape} does not fit {out.shape}") \
                    from exc
            out = _Affine(out.weight, out.bias + c_flat, out.shape)
        return out

    def new_shape(self, node: onnx.NodeProto, shape: tuple[int, ...], attrs: dict
                  ) -> tuple[int, ...]:
        dummy = np.zeros(shape)
        op = node.op_type
        try:
            if op == "Flatten":
                axis = int(attrs.get("axis", 1)) % (len(shape) + 1) if shape else 0
                return (int(np.prod(shape[:axis])), int(np.prod(shape[axis:])))
            if op == "Reshape":
                target = [int(v) for v in np.asarray(self.consts[node.input[1]]).reshape(-1)]
                if not attrs.get("allowzero", 0):
                    target = [shape[i] if v == 0 else v for i, v in enumerate(target)]
                return tuple(dummy.reshape(target).shape)
            axes = attrs.get("axes")
            if axes is None and len(node.input) > 1 and node.input[1]:
                axes = [int(v) for v in np.asarray(self.consts[node.input[1]]).reshape(-1)]
            if op == "Squeeze":
                return tuple(np.squeeze(dummy, axis=tuple(axes) if axes else None).shape)
            out = dummy
            for ax in sorted(int(a) % (len(shape) + len(axes)) for a in axes):
                out = np.expand_dims(out, ax)
            return tuple(out.shape)
        except (KeyError, ValueError, TypeError, IndexError) as exc:
            raise self.refuse(node, f"cannot reshape a value of shape {shape} here ({exc})") \
                from exc


def load_network(path: str | Path) -> Network:
    """Read a feedforward ReLU network from an ONNX file into the dense-layer model."""
    model = read_model(path)
    return network_from_model(model, str(path))


def network_from_model(model: onnx.ModelProto, source: str = "<model>") -> Network:
    """As :func:`load_network`, for a model already in memory."""
    with np.errstate(over="ignore", invalid="ignore"):  # refused whole at the end, one line
        return _ChainReader(model, source).read()
