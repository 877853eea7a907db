"""Any tool with VNN-COMP's scripts as a verifier (``vnncomp:DIR``)."""

from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from nnbisim.adapters.replay import PropertyReader, replay_checked
from nnbisim.adapters.tools import check_files, log_tail, run_with_deadline
from nnbisim.core.errors import InputError
from nnbisim.core.verdict import Status, Verdict
from nnbisim.specs.results import parse_vnncomp_result


@dataclass(frozen=True)
class VnncompVerifier:
    """Any tool implementing VNN-COMP's ``prepare_instance.sh`` and ``run_instance.sh``.

    The scripts run from ``tool_dir`` with version ``v1``, ``category``, absolute paths and the
    timeout rounded up to whole seconds. ``run_instance.sh`` is killed (with all it started)
    after ``timeout + grace`` seconds; ``prepare_instance.sh`` gets ``prepare_timeout``.
    """

    tool_dir: Path
    category: str = "nnbisim"
    grace: float = 5.0
    prepare_timeout: float = 300.0
    reader: PropertyReader | None = None

    def __post_init__(self) -> None:
        if not (Path(self.tool_dir) / "run_instance.sh").is_file():
            raise InputError(f"{self.tool_dir}: has no run_instance.sh; vnncomp:DIR needs a "
                             "directory with VNN-COMP's tool scripts")

    @property
    def name(self) -> str:
        return f"vnncomp:{self.tool_dir}"

    def _script(self, name: str) -> list[str]:
        path = (Path(self.tool_dir) / name).resolve()
        return [str(path)] if os.access(path, os.X_OK) else ["bash", str(path)]

    def answer(self, network: str, prop: Path, timeout: float) -> tuple[str | None, float, str]:
        """Run the scripts on one instance (``network``: a path or a 2026 network field, absolute
        paths): the result file's text (None if killed or none written), the seconds of
        ``run_instance.sh`` and a note (why there is no answer, or the log's tail)."""
        spec = str(Path(prop).resolve())
        with tempfile.TemporaryDirectory(prefix="nnbisim-vnncomp-") as tmp:
            log_file, result = Path(tmp) / "tool.log", Path(tmp) / "result.txt"
            if (Path(self.tool_dir) / "prepare_instance.sh").is_file():
                code = run_with_deadline(
                    [*self._script("prepare_instance.sh"), "v1", self.category, network, spec],
                    self.prepare_timeout, log_file, cwd=Path(self.tool_dir))
                if code != 0:
                    why = "timed out" if code is None else f"exit {code}"
                    return None, 0.0, (f"prepare_instance.sh failed ({why}): "
                                       f"{log_tail(log_file)}")
            start = time.perf_counter()
            code = run_with_deadline(
                [*self._script("run_instance.sh"), "v1", self.category, network, spec,
                 str(result), str(max(1, math.ceil(timeout)))],
                timeout + self.grace, log_file, cwd=Path(self.tool_dir))
            seconds = time.perf_counter() - start
            if code is None:
                return None, seconds, f"killed after {seconds:.1f} s"
            if not result.is_file():
                return None, seconds, (f"run_instance.sh (exit {code}) wrote no result: "
                                       f"{log_tail(log_file)}")
            return result.read_text(errors="replace"), seconds, log_tail(log_file)

    def check(self, model: Path, prop: Path, timeout: float) -> Verdict:
        check_files(model, prop, timeout)
        text, seconds, note = self.answer(str(Path(model).resolve()), prop, timeout)
        if text is None:
            status = Status.TIMEOUT if note.startswith("killed") else Status.ERROR
            return Verdict(status, self.name, seconds, message=note)
        status, x, why = parse_vnncomp_result(text)
        if status is Status.ERROR:
            why = f"{why} {note}".strip()
        verdict = Verdict(status, self.name, seconds, counterexample=x, message=why)
        return replay_checked(verdict, Path(model), Path(prop), self.reader)
