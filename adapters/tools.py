"""Running other tools' processes: a deadline that kills the whole process group, log tails
for error messages, and the checks every tool call makes first."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from nnbisim.core import interrupt
from nnbisim.core.errors import InputError

# Run as ``python -c _LAUNCH PARENT_PID CMD...``: ask Linux to SIGKILL this process when its
# parent dies (prctl PR_SET_PDEATHSIG, kept across exec), give up if the parent is already gone,
# then become CMD. A kill -9 of nnbisim then takes its verifier processes with it.
_LAUNCH = """
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
except (OSError, AttributeError):
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit(1)
os.execvp(sys.argv[2], sys.argv[2:])
"""
POLL = 0.1  # seconds between looks at the child and at a Ctrl-C request


def run_with_deadline(cmd: list[str], seconds: float, log_file: Path,
                      cwd: Path | None = None) -> int | None:
    """Run ``cmd`` with stdout and stderr appended to ``log_file``; its exit code, or ``None``.

    ``None`` means it was still running after ``seconds``, or a stop was asked for (Ctrl-C,
    :mod:`nnbisim.core.interrupt`), and it was killed together with every process it started
    (its own session's process group). It dies with this process, too (a parent-death signal;
    Linux ties it to the calling thread, so a child started from another thread dies when that
    thread ends).
    """
    launch = [sys.executable, "-S", "-c", _LAUNCH, str(os.getpid()), *cmd]
    deadline = time.monotonic() + max(seconds, 0.0)
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(launch, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                cwd=cwd, start_new_session=True)
    try:
        while not interrupt.requested():
            try:
                return proc.wait(timeout=max(min(POLL, deadline - time.monotonic()), 0.0))
            except subprocess.TimeoutExpired:
                if time.monotonic() >= deadline:
                    return None
        return None
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the process and anything it left behind
        except ProcessLookupError:
            pass
        proc.wait()


def log_tail(path: Path, chars: int = 400) -> str:
    """The last ``chars`` characters of a log file, on one line (for error messages)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return " ".join(text[-chars:].split())


def check_files(model: Path, prop: Path, timeout: float) -> None:
    """Refuse missing files and non-positive timeouts before any tool starts."""
    for path, what in ((model, "ONNX model"), (prop, "VNN-LIB property")):
        if not Path(path).is_file():
            raise InputError(f"{path}: no such {what}; check the path")
    if not timeout > 0:
        raise InputError(f"timeout must be a positive number of seconds, got {timeout}")
