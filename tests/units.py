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


def pair_dying_once(marker: str, n1, n2):
    """A subject recipe whose first build kills its worker (the marker file says it did)."""
    from nnbisim.search.subjects import pair

    dies_once(marker)
    return pair(n1, n2, "diff")


def pair_dying(n1, n2):
    dies()


def eps_problem_dying(n1, n2):
    """An eps recipe whose every build kills its worker."""
    dies()
