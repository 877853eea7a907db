"""The same units of work on a Ray cluster (``--ray ADDRESS``, ``auto`` or ``local``).

Ray is an optional extra (``pip install -e '.[ray]'``). Every node needs nnbisim installed and
the files the units read at the same paths (a shared folder), as with any Ray job that is not
given a runtime environment. The contract is :func:`nnbisim.core.pool.run_local`'s:

- one unit per Ray task (one CPU each); no more tasks in flight than the cluster has CPUs, so a
  unit's clock starts when it is handed out, as in the local pool;
- a unit that raises is ``error``; one still running ``grace`` seconds past its timeout is
  cancelled with its worker process killed (``ray.cancel(force=True)``) and is ``timeout``;
- a worker or node that dies under a unit: Ray runs the task again (``max_retries``), then
  it is ``error``;
- a stop request cancels what is in flight and returns what finished.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable

from nnbisim.core import interrupt
from nnbisim.core.errors import InputError
from nnbisim.core.pool import (
    ERROR,
    GRACE,
    OK,
    POLL,
    TIMEOUT,
    Feedback,
    Ledger,
    Outcome,
    Progress,
    Unit,
)

_initialized = [False]  # per Ray worker process: the initializer has run


def _task(fn: Callable[..., object], args: tuple, initializer: Callable[[], None] | None
          ) -> tuple[str, object, str, float, str]:
    """One unit inside a Ray worker: status, value, message, seconds, where it ran."""
    if initializer is not None and not _initialized[0]:
        initializer()
        _initialized[0] = True
    t0 = time.perf_counter()
    try:
        status, value, message = OK, fn(*args), ""
    except Exception as exc:  # noqa: BLE001 - a unit's failure is its outcome
        status, value, message = ERROR, None, f"{type(exc).__name__}: {exc}".strip()
    return status, value, message, time.perf_counter() - t0, f"ray pid {os.getpid()}"


def load_ray():
    """The ``ray`` module (an optional extra, ~1 s to import: only ``--ray`` loads it)."""
    try:
        import ray
    except ImportError:
        raise InputError("--ray needs Ray: pip install -e '.[ray]' (or pip install "
                         "ray==2.60.0), or leave --ray out to use the local process pool") from None
    return ray


def connect(address: str, cpus: int | None = None) -> bool:
    """Join the cluster at ``address`` (``auto``: the one this machine belongs to) or start a
    local instance (``local``, ``cpus`` CPUs, default all); True if this call started Ray."""
    ray = load_ray()
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local instance asks no token
    kw = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    try:
        if address == "local":
            ray.init(num_cpus=cpus, **kw)
        else:
            ray.init(address=address, **kw)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise InputError(f"--ray {address}: cannot reach a Ray cluster ({exc}); give the head "
                         "node's address (ray start --head prints it), auto, or local") from None
    return True


def run_ray(units: Iterable[Unit], on_outcome: Callable[[Outcome], Feedback], *,
            address: str = "local", cpus: int | None = None, retries: int = 1,
            initializer: Callable[[], None] | None = None,
            on_progress: Callable[[Progress], None] | None = None,
            grace: float = GRACE) -> list[Outcome]:
    """:func:`nnbisim.core.pool.run_local` on Ray: the outcomes, in the order they ended.
    A local instance this call starts is shut down at the end."""
    started = connect(address, cpus)
    ray = load_ray()
    try:
        remote = ray.remote(num_cpus=1, max_retries=retries, retry_exceptions=False)(_task)
        slots = max(1, int(ray.cluster_resources().get("CPU", 1)))
        return _drive(ray, deque(units), (remote, slots, initializer, grace, retries), on_outcome,
                      on_progress)
    finally:
        if started:
            ray.shutdown()


def _drive(ray, queue: deque, how: tuple, on_outcome: Callable[[Outcome], Feedback],
           on_progress: Callable[[Progress], None] | None) -> list[Outcome]:
    remote, slots, initializer, grace, retries = how
    book = Ledger(queue, on_outcome, on_progress)
    record = book.record
    flying: dict = {}  # ref -> (unit, started)
    try:
        while (queue or flying) and not interrupt.requested() and not book.stopped:
            while queue and len(flying) < slots:
                unit = queue.popleft()
                flying[remote.remote(unit.fn, unit.args, initializer)] = (
                    unit, time.perf_counter())
            done, _ = ray.wait(list(flying), num_returns=1, timeout=POLL)
            for ref in done:
                record(_finished(ray, ref, *flying.pop(ref), retries))
                if book.stopped:
                    break
            now = time.perf_counter()
            for ref, (unit, start) in list(flying.items()):
                if book.stopped:
                    break
                if unit.timeout is not None and now > start + unit.timeout + grace:
                    ray.cancel(ref, force=True)
                    del flying[ref]
                    record(Outcome(unit.key, TIMEOUT, None, now - start, 1,
                                   f"cancelled {now - start:.1f} s after it started (timeout "
                                   f"{unit.timeout:g} s)"))
    finally:
        for ref in flying:
            ray.cancel(ref, force=True)
    return book.out


def _finished(ray, ref, unit: Unit, start: float, retries: int) -> Outcome:
    try:
        status, value, message, seconds, where = ray.get(ref)
    except ray.exceptions.RayError as exc:  # the worker or node died on every attempt
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Outcome(unit.key, ERROR, None, time.perf_counter() - start, retries + 1,
                       f"its Ray worker died: {first}")
    return Outcome(unit.key, status, value, seconds, 1, message, where)
