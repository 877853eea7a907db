"""Quantized networks: int8 weights, rounded and clamped activations, as PyTorch runs them.

A :class:`QuantizedNetwork` is the integer-arithmetic model PyTorch's eager-mode quantization
(fbgemm/qnnpack) evaluates: the input is quantized (``code = clamp(round(x / s) + z, qmin,
qmax)``, round half to even), each layer accumulates ``(code - z_in) * w_code`` exactly in
integers, scales the sum by ``s_in * s_w`` (per output channel), adds the float bias, applies
ReLU on hidden layers and quantizes the result again with that layer's output scale and zero
point; the final codes are dequantized. :meth:`QuantizedNetwork.forward` does exactly that in
float64 (integer sums below 2^53 are exact), and was checked against ``torch.ao.quantization``'s
int8 forward on the MNIST test set (identical outputs, see the tests).

Quantization is monotone (non-decreasing), so the image of an interval under it is the interval
of the images of its ends: :meth:`QuantizedNetwork.interval` propagates input boxes exactly per
neuron, which is what the discrepancy engine in :mod:`nnbisim.bounds.qbounds` builds on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from nnbisim.core.errors import InputError, ShapeMismatchError
from nnbisim.core.model import Layer, Network


@dataclass(frozen=True)
class Quantizer:
    """Per-tensor affine quantization ``code = clamp(round(x / scale) + zero_point, qmin, qmax)``.

    ``value`` is the dequantized ``(code - zero_point) * scale``. Default range: uint8.
    """

    scale: float
    zero_point: int = 0
    qmin: int = 0
    qmax: int = 255

    def __post_init__(self) -> None:
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise InputError(f"quantization scale {self.scale} must be a positive number")
        if not self.qmin <= self.zero_point <= self.qmax:
            raise InputError(f"zero point {self.zero_point} lies outside [{self.qmin}, "
                             f"{self.qmax}]")

    def codes(self, x: np.ndarray) -> np.ndarray:
        """Integer codes (as float64) of ``x``; round half to even, like PyTorch and ONNX."""
        return np.clip(np.rint(np.asarray(x, dtype=np.float64) / self.scale) + self.zero_point,
                       self.qmin, self.qmax)

    def value(self, codes: np.ndarray) -> np.ndarray:
        return (np.asarray(codes, dtype=np.float64) - self.zero_point) * self.scale

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.value(self.codes(x))

    def describe(self) -> str:
        return (f"scale {self.scale:g}, zero point {self.zero_point}, "
                f"codes [{self.qmin}, {self.qmax}]")


@dataclass(frozen=True)
class QuantizedLayer:
    """``out(relu?(s_in * s_w * ((codes_in - z_in) @ w_codes.T) + bias))``.

    ``w_codes``: ``(out, in)`` integer weight codes; ``w_scales``/``w_zero_points``: per output
    channel (per-tensor weights repeat one value). ``out``: the quantizer of the layer's output,
    or ``None`` for a float output (the values are then not rounded).
    """

    w_codes: np.ndarray
    w_scales: np.ndarray
    w_zero_points: np.ndarray
    bias: np.ndarray
    out: Quantizer | None

    def __post_init__(self) -> None:
        w = np.asarray(self.w_codes, dtype=np.float64)
        n = w.shape[0] if w.ndim == 2 else -1
        s = np.broadcast_to(np.asarray(self.w_scales, dtype=np.float64).reshape(-1), (n,)).copy()
        z = np.broadcast_to(np.asarray(self.w_zero_points, dtype=np.float64).reshape(-1),
                            (n,)).copy()
        b = np.asarray(self.bias, dtype=np.float64).reshape(-1)
        if w.ndim != 2 or b.shape != (n,) or not np.all(w == np.rint(w)):
            raise ShapeMismatchError(f"quantized layer: integer weight codes {w.shape}, bias "
                                     f"{b.shape} and {s.shape} scales must agree")
        for a in (w, s, z, b):
            a.setflags(write=False)
        object.__setattr__(self, "w_codes", w)
        object.__setattr__(self, "w_scales", s)
        object.__setattr__(self, "w_zero_points", z)
        object.__setattr__(self, "bias", b)

    @property
    def weight(self) -> np.ndarray:
        """The dequantized weight ``(w_codes - z_w) * s_w`` (float64)."""
        return (self.w_codes - self.w_zero_points[:, None]) * self.w_scales[:, None]

    @property
    def in_size(self) -> int:
        return int(self.w_codes.shape[1])

    @property
    def out_size(self) -> int:
        return int(self.w_codes.shape[0])


@dataclass(frozen=True)
class QuantizedNetwork:
    """A fully connected ReLU network with an input quantizer and quantized layers."""

    input: Quantizer
    layers: tuple[QuantizedLayer, ...]
    input_shape: tuple[int, ...] = field(default=())
    name: str = "quantized network"

    def __post_init__(self) -> None:
        layers = tuple(self.layers)
        if not layers:
            raise ShapeMismatchError(f"{self.name}: a network needs at least one layer")
        for k in range(1, len(layers)):
            if layers[k].in_size != layers[k - 1].out_size:
                raise ShapeMismatchError(f"{self.name}: layer {k} takes {layers[k].in_size} "
                                         f"inputs but layer {k - 1} gives "
                                         f"{layers[k - 1].out_size}")
            if layers[k - 1].out is None:
                raise ShapeMismatchError(f"{self.name}: hidden layer {k - 1} has no output "
                                         "quantizer; only the last layer may be float")
        object.__setattr__(self, "layers", layers)
        shape = tuple(int(d) for d in self.input_shape) or (1, layers[0].in_size)
        object.__setattr__(self, "input_shape", shape)

    @property
    def in_size(self) -> int:
        return self.layers[0].in_size

    @property
    def out_size(self) -> int:
        return self.layers[-1].out_size

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        return tuple(layer.out_size for layer in self.layers[:-1])

    def describe(self) -> str:
        sizes = [self.in_size, *self.hidden_sizes, self.out_size]
        return "-".join(str(s) for s in sizes) + " (int8 weights, quantized activations)"

    def dequantized(self) -> Network:
        """The float network with the dequantized weights and no activation rounding."""
        return Network(tuple(Layer(q.weight, q.bias) for q in self.layers), self.input_shape,
                       self.name + " (dequantized weights)")

    def _step(self, k: int, codes: np.ndarray, quant: Quantizer) -> np.ndarray:
        """Layer ``k`` on input codes: the real pre-quantization value (ReLU applied)."""
        q = self.layers[k]
        acc = (codes - quant.zero_point) @ (q.w_codes - q.w_zero_points[:, None]).T
        z = acc * (quant.scale * q.w_scales) + q.bias
        return np.maximum(z, 0.0) if k < len(self.layers) - 1 else z

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Evaluate on a batch ``(n, in_size)`` (or one vector), exactly as the int8 model."""
        x = np.asarray(x, dtype=np.float64)
        out = self.forward_codes(self.input.codes(x.reshape(-1, self.in_size)))
        return out[0] if x.ndim == 1 else out

    def forward_codes(self, codes: np.ndarray) -> np.ndarray:
        """:meth:`forward` from already quantized input codes ``(n, in_size)``."""
        quant, out = self.input, codes
        for k, q in enumerate(self.layers):
            z = self._step(k, codes, quant)
            if q.out is None:
                out = z
            else:
                codes, quant = q.out.codes(z), q.out
                out = quant.value(codes)
        return out

    def interval(self, lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Output bounds over boxes ``(B, n)``: exact per neuron through each layer (the image
        of an interval under monotone rounding is exact), so sound for this model."""
        cl = self.input.codes(np.asarray(lower, dtype=np.float64).reshape(-1, self.in_size))
        cu = self.input.codes(np.asarray(upper, dtype=np.float64).reshape(-1, self.in_size))
        return self.interval_codes(cl, cu)

    def interval_codes(self, cl: np.ndarray, cu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`interval` from input code bounds ``(B, n)``."""
        quant = self.input
        lo = hi = cl
        for k, q in enumerate(self.layers):
            w = q.w_codes - q.w_zero_points[:, None]
            wp, wn = np.maximum(w, 0.0), np.minimum(w, 0.0)
            dl, du = cl - quant.zero_point, cu - quant.zero_point
            acc_lo, acc_hi = dl @ wp.T + du @ wn.T, du @ wp.T + dl @ wn.T
            s = quant.scale * q.w_scales
            zl, zu = acc_lo * s + q.bias, acc_hi * s + q.bias
            if k < len(self.layers) - 1:
                zl, zu = np.maximum(zl, 0.0), np.maximum(zu, 0.0)
            if q.out is None:
                lo, hi = zl, zu
            else:
                cl, cu, quant = q.out.codes(zl), q.out.codes(zu), q.out
                lo, hi = quant.value(cl), quant.value(cu)
        return lo, hi


def parse_arch(arch: str, source: str = "--arch") -> tuple[int, ...]:
    """``"784-256-64-10"`` -> ``(784, 256, 64, 10)``; refuses anything else clearly."""
    parts = arch.replace("x", "-").split("-") if arch else []
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        sizes = ()
    if len(sizes) < 2 or any(s <= 0 for s in sizes):
        raise InputError(f"{source} {arch!r}: give the layer sizes from input to output joined "
                         "by '-', e.g. 784-256-64-10")
    return sizes


def check_arch(sizes: Sequence[int], got: Sequence[int], source: str) -> None:
    if tuple(sizes) != tuple(got):
        raise ShapeMismatchError(
            f"{source}: the state dict is a {'-'.join(map(str, got))} network, not the "
            f"{'-'.join(map(str, sizes))} given by --arch; give --arch "
            f"{'-'.join(map(str, got))} or the matching file")
