"""Independent units of work on local worker processes: the default executor.

A :class:`Unit` is a module-level function and its arguments (both pickled), a key that names
it in results (and lets a rerun skip it), and a timeout. :func:`run_local` keeps ``workers``
long-lived processes (each imports once, then takes unit after unit) and hands every finished
unit to ``on_outcome`` at once, in the parent, so the caller can stream it to disk:

- a unit that raises is ``error`` with the exception's line (not retried: it would raise again);
- a unit still running ``grace`` seconds past its timeout is ``timeout``: its worker is killed,
  with every process it started, and a fresh worker takes its place;
- a worker that dies under a unit (killed from outside, out of memory, a crash in C code) is
  replaced and the unit is run again, up to ``retries`` more times, then it is ``error``.

``on_outcome`` may return more units (they join the queue: a branch and bound hands back the
boxes a slice left open) or :data:`STOP` (the units in flight are killed, the queued ones
dropped). No unit takes another with it. A stop request (Ctrl-C under :mod:`nnbisim.core.interrupt`)
kills the workers and returns what finished; the units in flight were not reported, so a rerun
that skips reported keys runs them again. Workers die with this process (a parent-death
signal), so a ``kill -9`` of the caller leaves none behind.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait

from nnbisim.core import interrupt

OK, ERROR, TIMEOUT = "ok", "error", "timeout"
STOP = "stop"  # what ``on_outcome`` returns to end the run early
GRACE = 5.0  # seconds past a unit's timeout before its worker is killed
POLL = 0.25  # seconds between looks at a stop request and at deadlines


@dataclass(frozen=True)
class Unit:
    """``fn(*args)``, named ``key``, killed ``GRACE`` seconds after ``timeout`` (None: never)."""

    key: str
    fn: Callable[..., object]
    args: tuple = ()
    timeout: float | None = None


@dataclass(frozen=True)
class Outcome:
    """What became of a unit: ``status`` is ``ok`` (``value`` is what ``fn`` returned),
    ``error`` (``message`` says why) or ``timeout``; ``attempts`` counts worker deaths + 1."""

    key: str
    status: str
    value: object = None
    seconds: float = 0.0
    attempts: int = 1
    message: str = ""
    worker: str = ""


@dataclass(frozen=True)
class PoolOptions:
    """How the pool treats its workers: a dead worker's unit runs up to ``retries`` more times;
    a unit ``grace`` seconds past its timeout is killed; ``recycle`` gives every unit a fresh
    process (measurements that must not inherit a warm one); ``start`` is how workers start:
    ``spawn`` (a fresh interpreter: safe anywhere, 2-3 s to import nnbisim) or ``fork`` (a copy
    of this process: instant, for a parent that already holds what the units need)."""

    retries: int = 1
    grace: float = GRACE
    recycle: bool = False
    start: str = "spawn"


@dataclass(frozen=True)
class Progress:
    """Units done of ``total`` after ``elapsed`` seconds (``skipped`` were done before)."""

    done: int
    total: int
    elapsed: float

    @property
    def rate(self) -> float:
        """Units per second so far."""
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the rate so far (None before the first unit)."""
        return (self.total - self.done) / self.rate if self.done else None

    def line(self) -> str:
        """``done/total, rate, ETA`` in words, for a progress line."""
        eta = "?" if self.eta is None else f"{self.eta:.0f} s"
        return (f"{self.done}/{self.total} units, {self.rate * 60:.1f}/min, "
                f"{self.elapsed:.0f} s, ETA {eta}")


def default_workers() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _die_with_parent(parent: int) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(1)


def _serve(conn: Connection, parent: int, initializer: Callable[[], None] | None) -> None:
    """A worker: run the units sent on ``conn`` until it closes (or sends None)."""
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to answer
    if initializer is not None:
        initializer()
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        fn, args = job
        t0 = time.perf_counter()
        try:
            reply = (OK, fn(*args), "")
        except Exception as exc:  # noqa: BLE001 - a unit's failure is its outcome
            reply = (ERROR, None, f"{type(exc).__name__}: {exc}".strip())
        try:
            conn.send((*reply, time.perf_counter() - t0))
        except Exception as exc:  # noqa: BLE001 - e.g. a value that cannot be pickled
            conn.send((ERROR, None, f"the result could not be sent back: {exc}",
                       time.perf_counter() - t0))


@dataclass
class _Worker:
    proc: mp.process.BaseProcess
    conn: Connection
    unit: Unit | None = None
    attempts: int = 1
    started: float = 0.0

    def overdue(self, now: float, grace: float) -> bool:
        t = None if self.unit is None else self.unit.timeout
        return t is not None and now > self.started + t + grace

    def stop(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join()
        self.conn.close()


@dataclass
class _Pool:
    ctx: mp.context.BaseContext
    initializer: Callable[[], None] | None
    recycle: bool = False  # a fresh worker after every unit
    limit: int = 1  # workers at most (more start as units are handed back)
    workers: list[_Worker] = field(default_factory=list)

    def spawn(self) -> _Worker:
        here, there = self.ctx.Pipe()
        proc = self.ctx.Process(target=_serve, args=(there, os.getpid(), self.initializer),
                                daemon=True)
        proc.start()
        there.close()
        w = _Worker(proc, here)
        self.workers.append(w)
        return w

    def replace(self, w: _Worker) -> None:
        w.stop()
        self.workers.remove(w)
        self.spawn()

    def close(self) -> None:
        for w in self.workers:
            if w.unit is None and w.proc.is_alive():
                try:
                    w.conn.send(None)
                except OSError:
                    pass
            else:
                w.proc.kill()
        for w in self.workers:
            w.proc.join(timeout=5)
            w.stop()
        self.workers.clear()


Feedback = Iterable[Unit] | str | None  # what ``on_outcome`` may return: more units, STOP, None


@dataclass
class Ledger:
    """What a run has: the units queued, the outcomes so far (handed to ``on_outcome`` as they
    come, with progress after each), and whether ``on_outcome`` asked it to stop. Both
    executors keep one."""

    queue: deque
    on_outcome: Callable[[Outcome], Feedback]
    on_progress: Callable[[Progress], None] | None = None
    out: list[Outcome] = field(default_factory=list)
    total: int = 0
    stopped: bool = False
    t0: float = field(default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        self.total = len(self.queue)

    def record(self, o: Outcome) -> None:
        """Keep ``o``, hand it over, and queue what comes back (or stop)."""
        self.out.append(o)
        more = self.on_outcome(o)
        if isinstance(more, str):
            if more != STOP:
                raise ValueError(f"on_outcome returned {more!r}; return units, STOP or None")
            self.queue.clear()
            self.stopped = True
            return
        if more is not None:
            more = list(more)
            self.queue.extend(more)
            self.total += len(more)
        if self.on_progress is not None:
            self.on_progress(Progress(len(self.out), self.total, time.perf_counter() - self.t0))


def run_local(units: Iterable[Unit], on_outcome: Callable[[Outcome], Feedback], *,
              workers: int | None = None, options: PoolOptions = PoolOptions(),
              initializer: Callable[[], None] | None = None,
              on_progress: Callable[[Progress], None] | None = None) -> list[Outcome]:
    """Run every unit on ``workers`` processes (default: the cores), calling ``on_outcome``
    as each one ends and ``on_progress`` after it; the outcomes, in the order they ended.
    ``initializer`` runs once in every worker (e.g. to set torch's threads)."""
    book = Ledger(deque(units), on_outcome, on_progress)
    pool = _Pool(mp.get_context(options.start), initializer, options.recycle)
    pool.limit = workers or default_workers()
    for _ in range(min(pool.limit, max(book.total, 1))):
        pool.spawn()
    try:
        while ((book.queue or any(w.unit for w in pool.workers)) and not interrupt.requested()
               and not book.stopped):
            _hand_out(pool, book.queue)
            _collect(pool, book, options.retries, options.grace)
    finally:
        pool.close()
    return book.out


def _hand_out(pool: _Pool, queue: deque) -> None:
    idle = sum(w.unit is None for w in pool.workers)
    while len(queue) > idle and len(pool.workers) < pool.limit:
        pool.spawn()
        idle += 1
    for w in list(pool.workers):
        if w.unit is None and queue:
            item = queue.popleft()
            unit, attempts = item if isinstance(item, tuple) else (item, 1)
            try:
                w.conn.send((unit.fn, unit.args))
            except OSError:  # the worker died between units: not the unit's fault
                queue.appendleft(item)
                pool.replace(w)
                continue
            w.unit, w.attempts, w.started = unit, attempts, time.perf_counter()


def _collect(pool: _Pool, book: Ledger, retries: int, grace: float) -> None:
    """Wait for a reply, a death or a deadline, and deal with each."""
    queue, record = book.queue, book.record
    busy = [w for w in pool.workers if w.unit is not None]
    now = time.perf_counter()
    waits = [w.started + w.unit.timeout + grace - now for w in busy
             if w.unit.timeout is not None]
    ready = set(wait([x for w in busy for x in (w.conn, w.proc.sentinel)],
                     timeout=max(0.0, min([POLL, *waits]))))
    for w in busy:
        unit, seconds = w.unit, time.perf_counter() - w.started
        name = f"pid {w.proc.pid}"
        if w.conn in ready:
            try:
                status, value, message, seconds = w.conn.recv()
            except (EOFError, OSError):
                ready.add(w.proc.sentinel)
            else:
                w.unit = None
                if pool.recycle:
                    pool.replace(w)
                record(Outcome(unit.key, status, value, seconds, w.attempts, message, name))
                continue
        if w.proc.sentinel in ready or not w.proc.is_alive():
            w.unit = None
            pool.replace(w)
            if w.attempts <= retries:
                queue.appendleft((unit, w.attempts + 1))
            else:
                record(Outcome(unit.key, ERROR, None, seconds, w.attempts,
                               f"its worker died (exit code {w.proc.exitcode}) on every one of "
                               f"{w.attempts} attempts", name))
        elif w.overdue(time.perf_counter(), grace):
            w.unit = None
            pool.replace(w)
            record(Outcome(unit.key, TIMEOUT, None, seconds, w.attempts,
                           f"killed {seconds:.1f} s after it started (timeout {unit.timeout:g} "
                           "s)", name))
