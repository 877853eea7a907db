"""The adapters' vocabulary and options, importable without torch or onnx (the command line
checks its arguments against them before loading anything heavy)."""

from __future__ import annotations

from dataclasses import dataclass, field

# how a compressed copy N2 is made from N1 (nnbisim.adapters.compress.compress)
COMPRESSIONS = ("distill", "prune", "float16", "int8", "int8-channel", "perturb")
# the repair loop's activation quantization: calibrate before retraining, or keep N2's
QPARAMS = ("keep", "calibrate")


@dataclass(frozen=True)
class DistillOptions:
    """How :func:`~nnbisim.adapters.compress.distill` trains: ``hidden`` layer sizes,
    ``samples`` uniform points of the region, ``steps`` Adam steps on batches of ``batch`` at
    learning rate ``lr`` (cosine schedule), seeded. ``time_limit`` (or a Ctrl-C request) ends the
    training early with the network as it is then."""

    hidden: tuple[int, ...] = (10, 10)
    samples: int = 20_000
    steps: int = 3000
    batch: int = 2048
    lr: float = 1e-2
    seed: int = 0
    time_limit: float | None = None  # seconds; training stops there (None: every step)


@dataclass(frozen=True)
class CompressOptions:
    """How :func:`~nnbisim.adapters.compress.compress` makes N2: ``prune`` zeroes (or, with
    ``remove``, removes) ``fraction`` of the hidden neurons by magnitude; ``distill`` trains a
    small network (``distill``'s options) on N1's outputs over the region; ``perturb`` adds
    N(0, ``sigma``^2) noise to every weight and bias (seeded by ``distill.seed``), as VNN-COMP
    2026's isomorphic_acasxu_2026 makes its second networks (sigma 0.001)."""

    fraction: float = 0.1
    remove: bool = False
    distill: DistillOptions = field(default_factory=DistillOptions)
    sigma: float = 1e-3

# the ONNX forms nnbisim writes a network in (nnbisim.adapters.onnx_write.network_to_model)
FORMS = ("gemm", "matmul-1d")
