"""What the command handlers share: progress lines on stderr, JSON files written whole, the
exit codes of verdicts."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from nnbisim.core.errors import InputError
from nnbisim.core.files import write_atomic
from nnbisim.core.verdict import Status

# exit codes of every command that answers a question (2 is bad input, 130 Ctrl-C)
EXIT_HOLDS, EXIT_VIOLATED, EXIT_UNDECIDED = 0, 1, 3


def progress_to_stderr(start: float | None = None, quiet: bool = False
                       ) -> Callable[[str], None] | None:
    """A progress callback printing ``[seconds] message`` lines to stderr (None when quiet)."""
    if quiet:
        return None
    t0 = time.perf_counter() if start is None else start

    def say(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:7.1f} s] {msg}", file=sys.stderr, flush=True)
    return say


def write_json(path: Path, data: object) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file and a rename, so that an
    interrupted run never leaves a half-written file; the folder is made if missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, (json.dumps(data, indent=2) + "\n").encode("utf-8"))


def mark_unfinished(path: Path, command: str) -> None:
    """Replace an earlier result at ``path`` (``--force`` was given) by a JSON saying this run
    has not finished, before the work starts: a run killed halfway leaves that, never the
    earlier run's answer as if it were this one's."""
    try:
        write_json(path, {"finished": False, "command": command,
                          "note": "written when the run started; a finished run replaces it"})
    except OSError as e:
        raise InputError(f"{path}: cannot be written ({e.strerror}); give --json a path in a "
                         "writable folder") from None


def verdict_exit(status: Status) -> int:
    """0 holds (unsat), 1 violated (sat, a replayed counterexample), 3 undecided (timeout,
    unknown, a verifier's error)."""
    if status is Status.HOLDS:
        return EXIT_HOLDS
    return EXIT_VIOLATED if status is Status.VIOLATED else EXIT_UNDECIDED


def budget_left(args: argparse.Namespace, budget: float) -> float:
    """What is left of ``budget`` seconds since the command started (``args.started``, set by
    :func:`nnbisim.cli.main.main`): start-up, imports and loading count against it."""
    started = getattr(args, "started", None)
    return budget if started is None else budget - (time.perf_counter() - started)
