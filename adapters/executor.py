"""Where independent units run: a local process pool (the default) or a Ray cluster.

:class:`Executor` is what every command with many units takes (``--workers N``, ``--ray
ADDRESS``); both backends keep the contract of :func:`nnbisim.core.pool.run_local`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import torch

from nnbisim.adapters.ray_pool import run_ray
from nnbisim.core.allocator import keep_freed_memory
from nnbisim.core.errors import InputError
from nnbisim.core.pool import (
    GRACE,
    OK,
    Feedback,
    Outcome,
    PoolOptions,
    Progress,
    Unit,
    default_workers,
    run_local,
)


def one_torch_thread() -> None:
    """A worker's start: torch on one thread (one unit per core), freed memory kept."""
    torch.set_num_threads(1)
    keep_freed_memory()


def forked(executor: Executor) -> Executor:
    """``executor`` with local workers forked from this process (no start-up, and what this
    process built is theirs) where that is safe: torch on one thread here (a process that ran
    torch's thread pool may hang its forked children), else spawned."""
    if executor.ray is not None or torch.get_num_threads() != 1:
        return executor
    return replace(executor, start="fork")


def run_here(units: Iterable[Unit], on_outcome: Callable[[Outcome], None]) -> list[Outcome]:
    """The units one after another in this process (no timeouts, no isolation): for callers
    with nothing to spread, e.g. a library call without an executor."""
    out = []
    for unit in units:
        t0 = time.perf_counter()
        try:
            o = Outcome(unit.key, OK, unit.fn(*unit.args), time.perf_counter() - t0)
        except Exception as exc:  # noqa: BLE001 - a unit's failure is its outcome
            o = Outcome(unit.key, "error", None, time.perf_counter() - t0, 1,
                        f"{type(exc).__name__}: {exc}".strip())
        out.append(o)
        on_outcome(o)
    return out


@dataclass(frozen=True)
class Executor:
    """``workers`` local processes (None: the cores), or Ray at ``ray`` (``local`` starts an
    instance with ``workers`` CPUs; an address or ``auto`` joins a cluster, whose CPUs count)."""

    workers: int | None = None
    ray: str | None = None
    retries: int = 1
    grace: float = GRACE
    start: str = "spawn"  # how local workers start (PoolOptions.start); Ray has its own

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise InputError(f"--workers must be at least 1, got {self.workers}")

    @property
    def slots(self) -> int:
        """Units at a time on the local pool (a Ray cluster's CPUs are known once joined)."""
        return self.workers or default_workers()

    def describe(self) -> str:
        if self.ray is None:
            return f"local pool, {self.slots} worker(s)"
        return f"Ray at {self.ray}" + (f", {self.workers} CPU(s)" if self.workers else "")

    def run(self, units: Iterable[Unit], on_outcome: Callable[[Outcome], Feedback], *,
            initializer: Callable[[], None] | None = None,
            on_progress: Callable[[Progress], None] | None = None) -> list[Outcome]:
        """Every unit, ``on_outcome`` as each ends (it may hand back more units, or STOP);
        the outcomes in the order they ended."""
        if self.ray is None:
            return run_local(units, on_outcome, workers=self.slots,
                             options=PoolOptions(self.retries, self.grace, start=self.start),
                             initializer=initializer, on_progress=on_progress)
        cpus = self.workers if self.ray == "local" else None
        return run_ray(units, on_outcome, address=self.ray, cpus=cpus, retries=self.retries,
                       initializer=initializer, on_progress=on_progress, grace=self.grace)
