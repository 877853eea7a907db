"""The ``nnbisim`` command line: parse, check the arguments, then run the command's handler.

Parsing and the checks (:mod:`nnbisim.cli.checks`) import nothing heavy, so ``--help`` and bad
input answer at once; the handler's module (and with it torch, onnx, onnxruntime) is imported
only for a command that runs. Library errors become one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from nnbisim import IMPORTED_AT
from nnbisim.cli.args import EXIT_BAD_INPUT, glue_vectors
from nnbisim.cli.common import mark_unfinished
from nnbisim.cli.parser import THREADS_ENV, build_parser
from nnbisim.core import interrupt
from nnbisim.core.allocator import keep_freed_memory
from nnbisim.core.errors import InputError, NnbisimError, OverwriteError

EXIT_INTERRUPTED = 130


def threads(value: str | None) -> int:
    """The CPU threads of torch from ``--threads`` (or ``$NNBISIM_THREADS``, else 1)."""
    source = "--threads" if value is not None else f"${THREADS_ENV}"
    value = value if value is not None else os.environ.get(THREADS_ENV, "1")
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise InputError(f"{source} {value!r}: give a whole number of threads, at least 1")
    return n


def _apply_threads(n: int) -> None:
    """Set torch's intra-op threads, where torch is loaded (a handler's import loads it)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)


STARTUP_SLACK = 1.0  # seconds an interpreter may take before it imports nnbisim


def process_age() -> float:
    """Seconds since this program started (Linux's /proc; 0.0 where unknown): the
    interpreter's start-up and the first imports count against a run's budget too. A process
    keeps its start time across ``exec``, and ``bash -c "...; nnbisim ..."`` execs its last
    command in place of the shell, so /proc's age is capped at the time since nnbisim was
    first imported plus :data:`STARTUP_SLACK` (else a script's earlier commands would eat the
    last one's budget)."""
    since_import = time.perf_counter() - IMPORTED_AT + STARTUP_SLACK
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return min(max(uptime - ticks / os.sysconf("SC_CLK_TCK"), 0.0), since_import)
    except (OSError, ValueError, IndexError):
        return 0.0


def _handler(spec: str):
    """The handler ``module:function`` (a module of :mod:`nnbisim.cli`), imported now."""
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line on ``argv`` (default: ``sys.argv[1:]``, as the console script: the
    budget then counts from the process's start, and the process ends as soon as the results
    are written, without the second or more that tearing torch and onnxruntime down takes)."""
    keep_freed_memory()
    if argv is not None:
        return _main(argv, time.perf_counter())
    code = _main(sys.argv[1:], time.perf_counter() - process_age())
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said there
            pass
    logging.shutdown()
    os._exit(code)


def _main(argv: Sequence[str], started: float) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(glue_vectors(argv))
    except SystemExit as stop:  # --help, --version, or a usage error already reported
        return stop.code if isinstance(stop.code, int) else 0
    args.started = started
    try:
        n = threads(args.threads)
        _apply_threads(n)
        args.check(args)
        handler = _handler(args.handler)
        _apply_threads(n)
        return _run(handler, args)
    except NnbisimError as exc:
        print(f"nnbisim: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("nnbisim: interrupted before any result was written", file=sys.stderr)
        return EXIT_INTERRUPTED


def _run(handler, args: argparse.Namespace) -> int:
    """The handler, with Ctrl-C deferred: the first one ends the run at its next consistent
    state, the handler writes what it has, and the exit code is 130. A ``--json`` target is
    marked unfinished first, so that a killed run never leaves an earlier run's answer there."""
    target = getattr(args, "json", None)
    if target is not None:
        if Path(target).exists() and not getattr(args, "force", False):
            raise OverwriteError(f"{target}: already exists; pass --force to overwrite it or "
                                 "choose another --json path")
        mark_unfinished(target, " ".join(["nnbisim", *sys.argv[1:]]))
    try:
        with interrupt.deferred():
            code = int(handler(args) or 0)
            if interrupt.requested():
                print("nnbisim: interrupted (Ctrl-C): stopped early; what was computed is "
                      "written", file=sys.stderr)
                return EXIT_INTERRUPTED
            return code
    except NnbisimError:
        if target is not None:
            Path(target).unlink(missing_ok=True)  # no result, and no placeholder left behind
        raise


if __name__ == "__main__":
    sys.exit(main())
