"""The network model: a chain of dense layers with ReLU after every hidden layer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from nnbisim.core.errors import ShapeMismatchError


@dataclass(frozen=True)
class Layer:
    """One affine map ``y = W @ x + b`` (``W`` has shape ``(out, in)``), float64."""

    weight: np.ndarray
    bias: np.ndarray

    def __post_init__(self) -> None:
        w = np.array(self.weight, dtype=np.float64)
        b = np.array(self.bias, dtype=np.float64).reshape(-1)
        if w.ndim != 2 or w.shape[0] != b.shape[0]:
            raise ShapeMismatchError(
                f"layer weight {w.shape} and bias {b.shape} disagree: weight must be (out, in) "
                "and bias (out,)"
            )
        w.setflags(write=False)
        b.setflags(write=False)
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "bias", b)

    @property
    def in_size(self) -> int:
        return int(self.weight.shape[1])

    @property
    def out_size(self) -> int:
        return int(self.weight.shape[0])


@dataclass(frozen=True)
class Network:
    """A feedforward ReLU network ``x -> W_L relu(... relu(W_1 x + b_1) ...) + b_L``.

    ReLU follows every layer but the last. ``input_shape`` is the tensor shape of the ONNX input
    it came from (e.g. ``(1, 1, 1, 5)``); the model itself works on the flattened vector.
    """

    layers: tuple[Layer, ...]
    input_shape: tuple[int, ...] = field(default=())
    name: str = "network"

    def __post_init__(self) -> None:
        layers = tuple(self.layers)
        if not layers:
            raise ShapeMismatchError(f"{self.name}: a network needs at least one layer")
        for k in range(1, len(layers)):
            if layers[k].in_size != layers[k - 1].out_size:
                raise ShapeMismatchError(
                    f"{self.name}: layer {k} takes {layers[k].in_size} inputs but layer {k - 1} "
                    f"gives {layers[k - 1].out_size}"
                )
        object.__setattr__(self, "layers", layers)
        shape = tuple(int(d) for d in self.input_shape) or (1, layers[0].in_size)
        if int(np.prod(shape)) != layers[0].in_size:
            raise ShapeMismatchError(
                f"{self.name}: input shape {shape} has {int(np.prod(shape))} values but the first "
                f"layer takes {layers[0].in_size}"
            )
        object.__setattr__(self, "input_shape", shape)

    @classmethod
    def from_weights(
        cls,
        weights: Sequence[np.ndarray],
        biases: Sequence[np.ndarray],
        input_shape: Sequence[int] = (),
        name: str = "network",
    ) -> Network:
        return cls(tuple(Layer(w, b) for w, b in zip(weights, biases, strict=True)),
                   tuple(input_shape), name)

    @property
    def in_size(self) -> int:
        return self.layers[0].in_size

    @property
    def out_size(self) -> int:
        return self.layers[-1].out_size

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        return tuple(layer.out_size for layer in self.layers[:-1])

    @property
    def depth(self) -> int:
        """Number of hidden (ReLU) layers."""
        return len(self.layers) - 1

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Evaluate on a batch ``(n, in_size)`` (or one vector) in float64."""
        return self._run(x, [(layer.weight.T, layer.bias) for layer in self.layers], np.float64)

    def forward32(self, x: np.ndarray) -> np.ndarray:
        """As :meth:`forward`, in float32 (weights rounded to it): about half the time, for
        ranking many points (a witness search's samples), never for a value that is claimed."""
        return self._run(x, self._weights32, np.float32)

    @cached_property
    def _weights32(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(np.ascontiguousarray(layer.weight.T, np.float32), layer.bias.astype(np.float32))
                for layer in self.layers]

    def _run(self, x: np.ndarray, weights: list[tuple[np.ndarray, np.ndarray]],
             dtype: type) -> np.ndarray:
        h = np.asarray(x, dtype=dtype)
        single = h.ndim == 1
        h = h.reshape(-1, self.in_size)
        for k, (w, b) in enumerate(weights):
            h = h @ w
            h += b  # h is the product's own array from here on: in place
            if k < len(weights) - 1:
                np.maximum(h, 0.0, out=h)
        return h[0] if single else h

    def describe(self) -> str:
        sizes = [self.in_size, *self.hidden_sizes, self.out_size]
        return "-".join(str(s) for s in sizes)
