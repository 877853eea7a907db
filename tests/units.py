"""Units of work for the executor tests: module-level, so worker processes can import them."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def square(x: float) -> float:
    return x * x


def fails(word: str) -> None:
    raise ValueError(f"bad {word}")


def sleeps(seconds: float) -> str:
    time.sleep(seconds)
    return "woke"


def dies_once(marker: str) -> str:
    """Kills its own worker the first time (the marker file says it did), then answers."""
    path = Path(marker)
    if not path.exists():
        path.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return f"second try in {os.getpid()}"


def dies() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def _dying_in_workers(parent: int, marker: str | None) -> None:
    """Kill this process unless it is ``parent``: once (the marker file records it) if a
    marker is given, else every time."""
    if os.getpid() != parent and (marker is None or not Path(marker).exists()):
        dies() if marker is None else dies_once(marker)


def pair_dying_in_workers(parent: int, marker: str | None, n1, n2):
    """A pair subject whose bounds kill any worker process that computes them (the parent,
    which builds it first, is spared)."""
    from dataclasses import replace

    from nnbisim.search.subjects import pair

    subject = pair(n1, n2, "diff")

    def rows(*args):
        _dying_in_workers(parent, marker)
        return subject.rows(*args)
    return replace(subject, rows=rows)


def eps_problem_dying_in_workers(parent: int, n1, n2, inputs):
    """eps's branch and bound problem whose bounds kill any worker process computing them."""
    from dataclasses import replace

    import numpy as np

    from nnbisim.bounds.objectives import choose_engine
    from nnbisim.tasks.epsilon import eps_problem

    problem = eps_problem(n1, n2, choose_engine(n1, n2, "auto"), "cpu", np.arange(4), inputs)

    def bound(lo, hi):
        _dying_in_workers(parent, None)
        return problem.bound(lo, hi)
    return replace(problem, bound=bound)
