"""The built-in exact verifier: Marabou (maraboupy) on an ONNX model and a VNN-LIB property.

Each query runs in a child process (:mod:`nnbisim.adapters.marabou_worker`) so that a hard
timeout can kill it and Marabou's C++ output stays out of ours. Marabou's answers on
disjunctive properties are known to be unsound at times, so every ``sat`` is replayed with
onnxruntime, and callers ask one output and one sign per query.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnbisim.adapters.replay import PropertyReader, replay_checked
from nnbisim.adapters.tools import check_files, log_tail, run_with_deadline
from nnbisim.core import interrupt
from nnbisim.core.verdict import Status, Verdict

log = logging.getLogger(__name__)

# maraboupy's exit words (Marabou.solve_query), translated here and nowhere else
_WORDS = {
    "sat": Status.VIOLATED,
    "unsat": Status.HOLDS,
    "TIMEOUT": Status.TIMEOUT,
    "UNKNOWN": Status.UNKNOWN,
    "QUIT_REQUESTED": Status.UNKNOWN,
    "ERROR": Status.ERROR,
}


@dataclass(frozen=True)
class MarabouVerifier:
    """Marabou in a child process, killed at the timeout (wall clock, start-up included).

    Marabou itself gets the timeout less ``grace`` (the child's start-up, about half a second
    when idle, more on a busy machine, and Marabou's own slack), in whole seconds and at least
    one, so that it usually answers ``timeout`` itself before it is killed. ``reader`` reads the
    property for replaying counterexamples (default: ``nnbisim.specs.io.read_spec_cases``).
    """

    grace: float = 2.0
    reader: PropertyReader | None = None
    python: str = sys.executable
    name: str = "marabou"

    def check(self, model: Path, prop: Path, timeout: float) -> Verdict:
        """Decide ``prop`` on ``model``; ``violated`` only with a replayed counterexample."""
        check_files(model, prop, timeout)
        with tempfile.TemporaryDirectory(prefix="nnbisim-marabou-") as tmp:
            log_file, result = Path(tmp) / "marabou.log", Path(tmp) / "result.json"
            cmd = [self.python, "-m", "nnbisim.adapters.marabou_worker",
                   str(Path(model).resolve()), str(Path(prop).resolve()),
                   str(max(1, math.floor(timeout - self.grace))), str(result)]
            start = time.perf_counter()
            code = run_with_deadline(cmd, timeout, log_file)
            seconds = time.perf_counter() - start
            if code is None and interrupt.requested():
                return Verdict(Status.UNKNOWN, self.name, seconds,
                               message=f"stopped by Ctrl-C after {seconds:.1f} s")
            if code is None:
                return Verdict(Status.TIMEOUT, self.name, seconds,
                               message=f"killed after {seconds:.1f} s")
            if not result.is_file():
                return Verdict(Status.ERROR, self.name, seconds, message=f"Marabou child "
                               f"exited with {code} and no answer: {log_tail(log_file)}")
            answer = json.loads(result.read_text())
            log.debug("Marabou on %s / %s: %s in %.2f s", model, prop, answer["exit"], seconds)
        status = _WORDS.get(answer["exit"], Status.ERROR)
        message = answer.get("error", "")
        if answer["exit"] not in _WORDS:
            message = f"Marabou answered {answer['exit']!r}"
        x = np.array(answer["x"], dtype=np.float64) if "x" in answer else None
        verdict = Verdict(status, self.name, seconds, counterexample=x, message=message)
        return replay_checked(verdict, Path(model), Path(prop), self.reader)
