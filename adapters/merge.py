"""The comparison construction: one network whose output is ``N1(x) - N2(x)``.

Both networks read the same input; their hidden layers are stacked block-diagonally, the
shallower one is padded with identity layers (its hidden values are non-negative after ReLU, so
``relu(I h) = h``), and the output layer is followed by the comparison ``[I, -I]``. A network with
no hidden layer carries its raw input, which can be negative, so it is split into
``relu(x)`` and ``relu(-x)`` and recombined as ``W x = W relu(x) - W relu(-x)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from nnbisim.core.errors import ShapeMismatchError
from nnbisim.core.model import Layer, Network

OutputsMode = Literal["diff", "all"]


@dataclass(frozen=True)
class MergedNetwork:
    """The merged network and what a reader needs to interpret it.

    ``network`` has the comparison folded into its output layer and gives ``y1 - y2`` (``diff``)
    or ``[y1, y2, y1 - y2]`` (``all``). ``stacked`` is the same network giving ``[y1, y2]``, and
    ``comparison`` the linear map that turns ``[y1, y2]`` into ``network``'s output, for writing
    the comparison as a separate layer. ``blocks[k]`` is ``(n1_width, n2_width)`` of hidden layer
    ``k``: the first ``n1_width`` neurons carry N1, the rest N2.
    """

    network: Network
    stacked: Network
    comparison: np.ndarray
    blocks: tuple[tuple[int, int], ...]
    n_outputs: int
    outputs: OutputsMode

    @property
    def diff_offset(self) -> int:
        """Index of ``(y1 - y2)_0`` among the merged outputs."""
        return 0 if self.outputs == "diff" else 2 * self.n_outputs


def _blockdiag(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros((a.shape[0] + b.shape[0], a.shape[1] + b.shape[1]))
    out[: a.shape[0], : a.shape[1]] = a
    out[a.shape[0]:, a.shape[1]:] = b
    return out


def _padded(net: Network, depth: int) -> list[Layer]:
    """``net`` as exactly ``depth`` hidden layers plus its output layer, same function."""
    layers = list(net.layers)
    if net.depth == depth:
        return layers
    if net.depth == 0:
        n = net.in_size
        split = Layer(np.vstack([np.eye(n), -np.eye(n)]), np.zeros(2 * n))
        carry = [Layer(np.eye(2 * n), np.zeros(2 * n)) for _ in range(depth - 1)]
        out = layers[0]
        return [split, *carry, Layer(np.hstack([out.weight, -out.weight]), out.bias)]
    width = layers[-2].out_size
    carry = [Layer(np.eye(width), np.zeros(width)) for _ in range(depth - net.depth)]
    return [*layers[:-1], *carry, layers[-1]]


def merge_networks(n1: Network, n2: Network, outputs: OutputsMode = "diff") -> MergedNetwork:
    """Merge two ReLU networks with equal input and output sizes into one comparison network.

    The merged input takes N1's input shape; N2's input is the same flat vector (shapes may
    differ when their sizes agree, e.g. ``1x784x1`` against ``1x1x28x28``).
    """
    if n1.in_size != n2.in_size:
        raise ShapeMismatchError(
            f"N1 ({n1.name}) takes {n1.in_size} inputs but N2 ({n2.name}) takes {n2.in_size}; "
            "both networks must read the same input")
    if n1.out_size != n2.out_size:
        raise ShapeMismatchError(
            f"N1 ({n1.name}) gives {n1.out_size} outputs but N2 ({n2.name}) gives "
            f"{n2.out_size}; both networks must have the same outputs to be compared")
    if outputs not in ("diff", "all"):
        raise ValueError(f"outputs must be 'diff' or 'all', not {outputs!r}")
    depth = max(n1.depth, n2.depth)
    p1, p2 = _padded(n1, depth), _padded(n2, depth)
    hidden: list[Layer] = []
    for k in range(depth):
        a, b = p1[k], p2[k]
        w = np.vstack([a.weight, b.weight]) if k == 0 else _blockdiag(a.weight, b.weight)
        hidden.append(Layer(w, np.concatenate([a.bias, b.bias])))
    blocks = tuple((p1[k].out_size, p2[k].out_size) for k in range(depth))
    o1, o2 = p1[-1], p2[-1]
    if depth == 0:
        stacked_out = Layer(np.vstack([o1.weight, o2.weight]), np.concatenate([o1.bias, o2.bias]))
    else:
        stacked_out = Layer(_blockdiag(o1.weight, o2.weight), np.concatenate([o1.bias, o2.bias]))
    m = n1.out_size
    eye = np.eye(m)
    diff = np.hstack([eye, -eye])
    comparison = diff if outputs == "diff" else np.vstack([_blockdiag(eye, eye), diff])
    folded = Layer(comparison @ stacked_out.weight, comparison @ stacked_out.bias)
    shape = n1.input_shape
    return MergedNetwork(
        network=Network((*hidden, folded), shape, name="merged"),
        stacked=Network((*hidden, stacked_out), shape, name="stacked"),
        comparison=comparison,
        blocks=blocks,
        n_outputs=m,
        outputs=outputs,
    )


def split_merged(net: Network, blocks: tuple[tuple[int, int], ...], n_outputs: int,
                 outputs: OutputsMode) -> tuple[Network, Network]:
    """The two networks of a sequential comparison network (as :func:`merge_networks` built
    it, with its ``blocks``), computing the same ``y1``, ``y2`` (for ``all``) or the same
    ``y1 - y2`` (for ``diff``, where only the difference of the output biases is known: N1 gets
    it, N2 none). A shallower network comes back with its identity padding."""
    depth = len(blocks)
    m = n_outputs
    if len(net.layers) != depth + 1:
        raise ShapeMismatchError(f"a comparison network with {depth} hidden layers has "
                                 f"{depth + 1} layers, this one {len(net.layers)}")
    parts: tuple[list[Layer], list[Layer]] = ([], [])
    prev = (0, 0)
    for k, (w1, w2) in enumerate(blocks):
        layer = net.layers[k]
        if k == 0:
            parts[0].append(Layer(layer.weight[:w1], layer.bias[:w1]))
            parts[1].append(Layer(layer.weight[w1:], layer.bias[w1:]))
        else:
            parts[0].append(Layer(layer.weight[:w1, :prev[0]], layer.bias[:w1]))
            parts[1].append(Layer(layer.weight[w1:, prev[0]:], layer.bias[w1:]))
        prev = (w1, w2)
    out = net.layers[-1]
    a = prev[0] if depth else None
    if outputs == "all":
        w, b = out.weight, out.bias
        cols1, cols2 = (slice(0, a), slice(a, None)) if depth else (slice(None), slice(None))
        parts[0].append(Layer(w[:m, cols1], b[:m]))
        parts[1].append(Layer(w[m:2 * m, cols2], b[m:2 * m]))
    elif depth:
        parts[0].append(Layer(out.weight[:, :a], out.bias))
        parts[1].append(Layer(-out.weight[:, a:], np.zeros(m)))
    else:
        raise ShapeMismatchError("a comparison network of two networks without hidden layers "
                                 "and only the difference as output cannot be split")
    shape = net.input_shape
    return (Network(tuple(parts[0]), shape, name="N1"), Network(tuple(parts[1]), shape, name="N2"))
