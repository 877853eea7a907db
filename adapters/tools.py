"""Running other tools' processes: a deadline that kills the whole process group, log tails
for error messages, and the checks every tool call makes first."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from nnbisim.core.errors import InputError


def run_with_deadline(cmd: list[str], seconds: float, log_file: Path,
                      cwd: Path | None = None) -> int | None:
    """Run ``cmd`` with stdout and stderr appended to ``log_file``; its exit code, or ``None``.

    ``None`` means it was still running after ``seconds`` and was killed together with every
    process it started (its own session's process group).
    """
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=cwd,
                                start_new_session=True)
    try:
        return proc.wait(timeout=max(seconds, 0.0))
    except subprocess.TimeoutExpired:
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
