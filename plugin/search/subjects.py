"""What a property's outputs are, with the means to evaluate and bound them.

The outputs ``y`` are those of one network (:func:`single`: CROWN bounds) or of two networks
fed the same input (:func:`pair`: the differential engine on rows over ``[y1; y2; y1 - y2]``
when the layer sizes agree, CROWN on the merged network otherwise), so a two-network
equivalence query is decided on the original pair, never through a looser single network;
:func:`through` bounds N1's outputs through N2 and the certified difference (assured
compression).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from nnbisim.adapters.merge import merge_networks, split_merged
from nnbisim.adapters.merged_meta import merged_blocks, merged_layout
from nnbisim.adapters.onnx_load import read_model
from nnbisim.bounds.crown import CrownOptions, crown_bounds, prepare
from nnbisim.bounds.diffbounds import DiffEngine, same_architecture
from nnbisim.core.model import Network
from nnbisim.core.quant import QuantizedNetwork
from nnbisim.search.witness import torch_forward, torch_layers

# (lower (B, n), upper (B, n), A (R, out), focus) -> lower bounds (B, R) of A y, their slopes
# (B, R, n); focus (or None): plain lower bounds (B, R) -> the rows (B, k) worth optimising
Focus = Callable[[np.ndarray], np.ndarray]
RowBounds = Callable[[np.ndarray, np.ndarray, np.ndarray, Focus | None],
                     tuple[np.ndarray, np.ndarray]]
Layout = Literal["all", "stacked", "diff"]
FOCUS_ITERS = 10  # Adam steps per focused row (alpha-CROWN's 20 not benched against it)


@dataclass(frozen=True)
class Subject:
    """What a property's outputs are, with the means to evaluate and bound them."""

    name: str
    n_outputs: int
    forward: Callable[[np.ndarray], np.ndarray]  # x (B, n) -> y (B, n_outputs), float64
    torch_forward: Callable[[torch.Tensor], torch.Tensor]
    rows: RowBounds
    # the branch and bound's split rule for this subject: (split, choose) of BabOptions
    split_rule: tuple[str, str] = ("smart", "gain")
    # BabOptions.smart_top where a decision leaves it None (None: every input dimension)
    smart_top: int | None = None
    focusable: bool = False  # does ``rows`` optimise the rows a focus picks (else ignores it)
    # seconds ``rows`` spent per part, where a subject keeps count (:func:`through`)
    clock: dict[str, float] | None = None
    # a digest of the function the outputs are (not of how they are bounded): searches whose
    # open boxes one decision hands another must agree on it (:func:`fingerprint`)
    function: str = ""
    # ``forward`` in float32, for ranking many points (a witness search's samples); None: forward
    coarse: Callable[[np.ndarray], np.ndarray] | None = None


def fingerprint(*nets: Network, tag: str = "") -> str:
    """A digest of networks' weights, biases and shapes (and ``tag``): equal for the same
    function, different, but for a hash collision, for any other."""
    h = hashlib.sha256(tag.encode())
    for net in nets:
        h.update(repr(net.input_shape).encode())
        for layer in net.layers:
            for a in (layer.weight, layer.bias):
                a = np.ascontiguousarray(a, np.float64)
                h.update(repr(a.shape).encode())
                h.update(a.tobytes())
    return h.hexdigest()


def _host(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def single(net: Network, device: str = "cpu") -> Subject:
    """The outputs of one network, bounded by CROWN with forward bounds in low dimension."""
    tn, layers = prepare(net, device), torch_layers(net)
    opts = CrownOptions(slopes=True, sides="upper", focus_iters=FOCUS_ITERS, device=device)

    def rows(lo: np.ndarray, hi: np.ndarray, a: np.ndarray, focus: Focus | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        # lower of A y = -(upper of -A y): one side only, half the final back-substitution
        pick = None if focus is None else (
            lambda up: torch.from_numpy(np.asarray(focus(-_host(up)), np.int64)))
        res = crown_bounds(tn, lo, hi, -a, opts, focus=pick)
        return -_host(res.hi), -_host(res.slopes)
    return Subject(net.name, net.out_size, net.forward, lambda x: torch_forward(layers, x), rows,
                   focusable=True, function=fingerprint(net), coarse=net.forward32)


def _row_split(a: np.ndarray, m: int, layout: Layout
               ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Row coefficients on y1, y2 and y1 - y2. A row on both y1 and y2 is rewritten as
    ``a1 (y1 - y2) + (a1 + a2) y2``, so that its difference part (all of it for a two-network
    query's ``Y_f - Y_g``) gets the differential bounds."""
    if layout == "diff":
        return None, None, a
    a1, a2 = a[:, :m].copy(), a[:, m:2 * m].copy()
    ad = a[:, 2 * m:].copy() if layout == "all" else np.zeros_like(a1)
    both = a1.any(axis=1) & a2.any(axis=1)
    ad[both] += a1[both]
    a2[both] += a1[both]
    a1[both] = 0.0
    return tuple(None if not p.any() else p for p in (a1, a2, ad))  # type: ignore[return-value]


def _pair_rows(n1: Network, n2: Network, layout: Layout, device: str, method: str
               ) -> RowBounds:
    """Bounds of rows over the pair's outputs: the differential engine (by ``method``) where
    the layer sizes agree, CROWN on the merged network (outputs ``[y1; y2; y1 - y2]``)
    otherwise."""
    m = n1.out_size
    if same_architecture(n1, n2):
        engine = DiffEngine(n1, n2, device, method=method)

        def rows(lo: np.ndarray, hi: np.ndarray, a: np.ndarray, focus: Focus | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:  # focus: not for pairs (yet)
            a1, a2, ad = _row_split(a, m, layout)
            if a1 is None and a2 is None and ad is None:  # rows of zeros
                return np.zeros((len(lo), len(a))), np.zeros((len(lo), len(a), lo.shape[1]))
            low, slope = engine.row_bounds(lo, hi, a1, a2, ad, slopes=True)
            return _host(low), _host(slope)
        return rows
    crown = single(merge_networks(n1, n2, "all").network, device).rows
    full = {"all": lambda a: a,
            "stacked": lambda a: np.hstack([a, np.zeros((a.shape[0], m))]),
            "diff": lambda a: np.hstack([np.zeros((a.shape[0], 2 * m)), a])}[layout]

    def merged_rows(lo: np.ndarray, hi: np.ndarray, a: np.ndarray, focus: Focus | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
        return crown(lo, hi, full(a), focus)
    return merged_rows


def pair(n1: Network, n2: Network, layout: Layout = "all", device: str = "cpu",
         method: str = "backsub") -> Subject:
    """The outputs of two networks fed the same input: ``[y1; y2; y1 - y2]`` (``all``, as the
    merged network with all outputs gives them), ``[y1; y2]`` (``stacked``, as a two-network
    query states them) or ``y1 - y2`` (``diff``). ``method``: the differential engine's
    (:class:`~nnbisim.bounds.diffbounds.DiffEngine`)."""
    m = n1.out_size
    l1, l2 = torch_layers(n1), torch_layers(n2)

    def stack(y1, y2, cat):
        if layout == "diff":
            return y1 - y2
        parts = [y1, y2] if layout == "stacked" else [y1, y2, y1 - y2]
        return cat(parts)

    def forward(x: np.ndarray) -> np.ndarray:
        return stack(n1.forward(x), n2.forward(x), lambda p: np.concatenate(p, axis=-1))

    def coarse(x: np.ndarray) -> np.ndarray:
        return stack(n1.forward32(x), n2.forward32(x), lambda p: np.concatenate(p, axis=-1))

    def tforward(x: torch.Tensor) -> torch.Tensor:
        return stack(torch_forward(l1, x), torch_forward(l2, x), lambda p: torch.cat(p, -1))

    width = {"all": 3 * m, "stacked": 2 * m, "diff": m}[layout]
    # smart/gain: on property 1's box of ACAS Xu (float16 copies at eps 0.01, noisy copies at
    # 0.05) it decided more instances in less time than hybrid/worst, the rule the 810-instance
    # equivalence table was first measured with (bench/results/pair_rules.md); and on 4 input
    # dimensions it decided 11 of 13 in 590 s against 10 in 625 s on all (same bench), where
    # one network's decisions lose by it (bench/results/smart_top.md)
    return Subject(f"{n1.name} vs {n2.name}", width, forward, tforward,
                   _pair_rows(n1, n2, layout, device, method), ("smart", "gain"),
                   smart_top=4, function=fingerprint(n1, n2, tag=layout), coarse=coarse)


def with_quantized(n1: Network, n2: QuantizedNetwork, device: str = "cpu") -> Subject:
    """``[y1 ; y2]`` of a float network and an int8 one with quantized activations (as PyTorch
    runs it): rows on ``y1`` by CROWN, rows on ``y2`` by the int8 network's own interval
    propagation (exact per neuron: rounding is monotone), added. Looser than the differential
    engine (the two parts are bounded apart), but the activation rounding is in it. The
    witness search climbs through ``y1`` only (``y2`` is piecewise constant)."""
    s1, k = single(n1, device), n1.out_size

    def forward(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        return np.concatenate([n1.forward(x), n2.forward(x).reshape(*x.shape[:-1], k)], -1)

    def tforward(x: torch.Tensor) -> torch.Tensor:
        y2 = torch.from_numpy(n2.forward(_host(x).reshape(-1, n2.in_size)))
        return torch.cat([s1.torch_forward(x), y2.reshape(*x.shape[:-1], k).to(x)], -1)

    def rows(lo: np.ndarray, hi: np.ndarray, a: np.ndarray, focus: Focus | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        a1, a2 = a[:, :k], a[:, k:]
        low1, slope = s1.rows(lo, hi, a1)
        ql, qh = n2.interval(lo, hi)  # (B, k)
        terms = np.minimum(a2[None] * ql[:, None], a2[None] * qh[:, None])  # (B, R, k)
        low2 = terms.sum(axis=2)
        pad = (np.abs(terms).sum(axis=2) + np.abs(low1)) * (k + 2) * np.finfo(float).eps
        return np.nextafter(low1 + low2 - pad, -np.inf), slope
    return Subject(f"{n1.name} vs {n2.name}", 2 * k, forward, tforward, rows,
                   function=fingerprint(n1, tag=f"quantized {_quantized_digest(n2)}"))


def _quantized_digest(net: QuantizedNetwork) -> str:
    """A digest of an int8 network's codes, scales, zero points and biases."""
    h = hashlib.sha256(repr(net.input).encode())
    for layer in net.layers:
        h.update(repr(layer.out).encode())
        for a in (layer.w_codes, layer.w_scales, layer.w_zero_points, layer.bias):
            h.update(np.ascontiguousarray(a, np.float64).tobytes())
    return h.hexdigest()


def with_inputs(subject: Subject, n_in: int) -> Subject:
    """``subject``'s outputs followed by the input itself, ``[y ; x]``: rows over the input
    are bounded exactly over a box (its corner), so constraints that relate several input
    elements (the couplings of two networks' inputs) join an unsafe polytope as rows, and a
    box where they cannot hold is closed like any other."""
    m = subject.n_outputs

    def forward(x: np.ndarray) -> np.ndarray:
        return np.concatenate([subject.forward(x), np.asarray(x, np.float64)], axis=-1)

    def tforward(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([subject.torch_forward(x), x.to(torch.float64)], -1)

    def rows(lo: np.ndarray, hi: np.ndarray, a: np.ndarray, focus: Focus | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        a_y, a_x = a[:, :m], a[:, m:]
        low, slope = subject.rows(lo, hi, a_y, focus)
        terms = np.minimum(a_x[None] * lo[:, None], a_x[None] * hi[:, None])  # (B, R, n)
        exact = terms.sum(axis=2)
        # float64 sums are off by at most n ulps of the sum of magnitudes: pad by more
        pad = (np.abs(terms).sum(axis=2) + np.abs(low)) * (n_in + 2) * np.finfo(float).eps
        return np.nextafter(low + exact - pad, -np.inf), slope + a_x[None]
    return replace(subject, name=f"{subject.name} with its input", n_outputs=m + n_in,
                   forward=forward, torch_forward=tforward, rows=rows, focusable=False,
                   function=fingerprint(tag=f"{subject.function}|input {n_in}"))


def through(n1: Network, n2: Network, device: str = "cpu") -> Subject:
    """N1's outputs, bounded only through N2: ``A y1 = A y2 + A (y1 - y2)``, so over a box
    ``lower(A y1) >= lower(A y2) + lower(A (y1 - y2))``, N2's own CROWN bound plus the certified
    bound of the difference there (:func:`pair` with layout ``diff``). A box whose margin this
    bounds below 0 is the first paper's argument on that piece: ``-lower(A (y1 - y2))`` is the
    piece's certified eps along the row, and N2 is proved not to reach the unsafe set enlarged
    by it. The branch and bound's splits refine the pieces, so each gets its own eps, which
    shrinks with it. Points are evaluated on N1, so a witness is a counterexample of N1."""
    s2, diff = single(n2, device), pair(n1, n2, "diff", device)
    l1 = torch_layers(n1)
    clock = {"n2": 0.0, "eps": 0.0}

    def rows(lo: np.ndarray, hi: np.ndarray, a: np.ndarray, focus: Focus | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        t0 = time.perf_counter()
        low2, slope2 = s2.rows(lo, hi, a)
        t1 = time.perf_counter()
        lowd, sloped = diff.rows(lo, hi, a, focus)
        clock["n2"] += t1 - t0
        clock["eps"] += time.perf_counter() - t1
        # the float64 sum of two lower bounds, rounded down: a lower bound of the exact sum
        return np.nextafter(low2 + lowd, -np.inf), slope2 + sloped
    return Subject(f"{n1.name} through {n2.name}", n1.out_size, n1.forward,
                   lambda x: torch_forward(l1, x), rows,
                   # CROWN on the merged network optimises a focus; the differential engine not
                   focusable=not same_architecture(n1, n2), clock=clock,
                   function=fingerprint(n1))  # N1's outputs, as single(n1)'s are


def subject_of(path: str | Path, net: Network, device: str = "cpu") -> Subject:
    """The subject a single ONNX model stands for: the original pair when the file is a
    comparison network written by nnbisim (its metadata say how to split it), else itself."""
    model = read_model(path)
    layout, blocks = merged_layout(model), merged_blocks(model)
    if layout is None or blocks is None:
        return single(net, device)
    outputs, n_out = layout
    n1, n2 = split_merged(net, blocks, n_out, outputs)
    return pair(n1, n2, outputs, device)
