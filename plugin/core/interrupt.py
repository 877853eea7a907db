"""Ctrl-C as a request to stop, answered only between consistent states.

A ``KeyboardInterrupt`` raised at an arbitrary bytecode can land halfway through a search's
update (boxes replaced, bounds not yet), and whatever catches it returns state that does not
line up. Inside :func:`deferred`, the first SIGINT only sets a flag: every search loop checks
:func:`requested` between its steps and stops there with a sound result, every task starts no
further stage, child processes are killed (:mod:`nnbisim.adapters.tools`), and the command line
writes what it has and exits 130. A second SIGINT raises ``KeyboardInterrupt`` at once (the
way out of anything that does not check the flag).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_flag = threading.Event()
_active = [0]  # nesting depth of deferred() in the main thread


def requested() -> bool:
    """Has a stop been asked for (Ctrl-C inside :func:`deferred`, or :func:`request`)?"""
    return _flag.is_set()


def request() -> None:
    """Ask every search to stop at its next consistent state (as the first Ctrl-C does)."""
    _flag.set()


def _on_sigint(_signum: int, _frame: object) -> None:
    if _flag.is_set():
        raise KeyboardInterrupt
    _flag.set()


@contextmanager
def deferred() -> Iterator[None]:
    """Within the block, the first SIGINT is :func:`request`, the second a KeyboardInterrupt.

    Nested blocks share the outermost one's state; leaving the outermost restores the previous
    handler and clears the request. Outside the main thread signals cannot be handled, and the
    block only shares the flag.
    """
    main = threading.current_thread() is threading.main_thread()
    outermost = main and _active[0] == 0
    previous = signal.signal(signal.SIGINT, _on_sigint) if outermost else None
    if main:
        _active[0] += 1
    try:
        yield
    finally:
        if main:
            _active[0] -= 1
        if outermost:
            signal.signal(signal.SIGINT, previous)
            _flag.clear()
