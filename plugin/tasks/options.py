"""The tasks' options, with the defaults that were measured; importable without torch or onnx
(the command line takes its defaults and choices from here before loading anything heavy)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

AIMS = ("eps", "outputs")
REFINES = ("bab", "halves")  # how assure's route through N2 refines a box
NO_VERIFIER, OWN_VERIFIER = "none", "bounds"  # eps: witnesses only / the own engine only


@dataclass(frozen=True)
class EpsilonOptions:
    """How :func:`~nnbisim.tasks.epsilon.compute_epsilon` brackets eps.

    ``verifier``: ``none`` (witnesses only), ``bounds`` (own engine with branch and bound) or
    an exact verifier for bisection after the bounds (``marabou``, ``vnncomp:DIR``, a
    plug-in), which then gets half of ``time_budget`` and at most ``query_timeout`` seconds a
    query, writing its files to ``workdir`` (default: a scratch folder). ``engine``: one of
    :data:`~nnbisim.bounds.engines.ENGINE_CHOICES`. ``aim``: ``eps`` closes the gap of eps (the
    largest difference over all outputs and signs; the other intervals are certified only
    below it), ``outputs`` that of every output's interval on its own (slower), within
    ``rel_gap``. ``objectives``: only these ``(output, sign)`` pairs are certified (the others
    keep an infinite certified bound; needs ``aim="outputs"``). ``split``: the branch and
    bound's ``(split, choose)`` rule (``bench/results/epsilon_split.md``: on ACAS Xu against
    float16 copies, same run and budget, "smart"/"gain" certified a 3.3x tighter median eps
    over property 1's box than "hybrid"/"worst", and about the same over the boxes where both
    close the gap). ``device``: where the bound engines run (``cpu``; ``cuda`` on a GPU).
    ``max_boxes``: a work limit (None: none), the boxes the own engine's branch and bound may
    bound in all, shared among its searches as the time budget is (docs/decisions.md, "Work
    limits"); with it and a generous ``time_budget`` the certified bound is the same on any
    machine (an exact verifier's bisection stays timed). ``workers``/``ray``: the input-split
    branch and bound (the bracket's, or a ``--eps`` decision's) runs on that many local
    processes, or on Ray (:mod:`nnbisim.search.parallel_max`, :mod:`nnbisim.search.parallel`;
    1: in this process, as with a work limit).
    """

    verifier: str = OWN_VERIFIER
    engine: str = "auto"
    aim: str = "eps"
    rel_gap: float = 0.01
    time_budget: float = 60.0
    query_timeout: float = 60.0
    workdir: Path | None = None
    seed: int = 0
    device: str = "cpu"
    objectives: frozenset[tuple[int, int]] | None = None
    split: tuple[str, str] = ("smart", "gain")
    max_boxes: int | None = None
    workers: int = 1
    ray: str | None = None


@dataclass(frozen=True)
class AssureOptions:
    """How :func:`~nnbisim.tasks.assure.assure` spends its ``time_budget``.

    In order: a quick look at N1 itself (``quick_direct`` of the budget: a witness search of
    ``witness_samples`` random points per box always runs; 0 leaves the proofs to the other
    routes), the route through N2 (``compressed_share`` of what is left; 1 gives it everything
    but a last look at N1) and N1 directly for the boxes still open. ``verifier`` decides the
    enlarged properties on N2 and the boxes left to N1: ``bounds`` (the own engine) or any
    plug-in, one box and unsafe polytope per query. ``resume``: what an earlier branch and
    bound proved stays proved (False: each starts over). ``refine``: ``bab`` (the own engine
    only): one branch and bound whose every piece is bounded through N2 and its own certified
    eps; ``halves``: eps over the box, the enlarged property decided on N2, a box still open
    split in two (up to ``max_depth`` splits; ``eps_share`` of each box's time for eps, whose
    first bound gets ``quick_eps`` seconds and N2 then ``quick_n2``). ``max_boxes``: a work
    limit (None: none), the boxes the own engine may bound in all, shared among the routes as
    the time budget is (``quick_direct`` of it, ``compressed_share`` of the rest, the rest)
    and within a route among its boxes as their seconds are; the halves route then escalates
    eps in boxes (``quick_eps_boxes`` first, N2 then ``quick_n2_boxes``). With it and a
    generous ``time_budget`` the own engine's answer is the same on any machine (a plug-in
    verifier's stays timed). ``probes`` random points measure N1's margin to the unsafe set
    (the halves route's outlook), ``eps_probes`` witness the refined route's whole-box eps
    record.

    ``witness_samples``: 10,000 per box, not decide's 200,000 for ACAS Xu: the branch and bound
    after it evaluates its points on N1 and finds what the search misses
    (``bench/results/assure_acasxu.md`` at 7a791fc: of the 47 violated instances, 43 by the
    search, 4 by the branch and bound through N2, 15 s for all 47).
    """

    time_budget: float = 116.0
    quick_direct: float = 0.0
    compressed_share: float = 0.5
    verifier: str = OWN_VERIFIER
    refine: str = "bab"
    resume: bool = True
    eps_share: float = 0.4
    device: str = "cpu"
    max_depth: int = 8
    quick_eps: float = 3.0
    quick_n2: float = 10.0
    max_boxes: int | None = None
    workers: int = 1
    ray: str | None = None
    quick_eps_boxes: int = 300  # about what quick_eps bounds on ACAS Xu (not benched)
    quick_n2_boxes: int = 3000  # about what quick_n2 bounds on ACAS Xu (not benched)
    witness_samples: int = 10_000
    probes: int = 2048
    eps_probes: int = 1024


@dataclass(frozen=True)
class RepairOptions:
    """How :func:`~nnbisim.tasks.repair.repair` retrains N2: until every region's certified
    discrepancy is at most ``target_ratio`` of its initial value, at most ``rounds`` rounds of
    ``epochs`` epochs each, ``samples`` per region, targets stepped by ``1 / lam``, Adam at
    ``lr``; ``qparams``: ``calibrate`` the activation quantization first, or ``keep`` N2's;
    inputs lie in ``domain``; each certification gets ``certify_budget`` seconds, the regions
    on ``workers`` processes at a time (None: the cores; 1: in this process) or on Ray
    (``ray``)."""

    target_ratio: float = 0.67
    lam: float = 10.0
    rounds: int = 10
    epochs: int = 3
    samples: int = 256
    qparams: str = "calibrate"
    domain: tuple[float, float] = (-1.0, 1.0)
    lr: float = 1e-3
    certify_budget: float = 30.0
    seed: int = 0
    workers: int | None = 1
    ray: str | None = None
