"""The verifier plug-in interface: one ``check`` per tool, every ``violated`` replayed.

A verifier answers one question: does some input of a VNN-LIB property's input set reach its
unsafe output set on an ONNX model? Tools answer in their own words; each adapter translates
them into a :class:`~nnbisim.core.verdict.Verdict` at its edge, and a ``violated`` verdict is only
returned after :func:`confirm_violation` replays the counterexample with onnxruntime.

Verifiers by name (:func:`get_verifier`): the built-ins in :data:`BUILTIN_VERIFIERS`
(``marabou``), ``vnncomp:DIR`` for any tool directory with VNN-COMP's scripts, and third-party
plug-ins registered under the entry-point group ``nnbisim.verifiers`` (an entry point loads a
class or zero-argument factory returning a :class:`Verifier`).
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from nnbisim.adapters.replay import OnnxRunner
from nnbisim.core.errors import InputError, VerifierError
from nnbisim.core.verdict import Status, Verdict

if TYPE_CHECKING:
    from nnbisim.specs.sets import Box, OutputConstraint, Property, SpecCase

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "nnbisim.verifiers"
PropertyReader = Callable[[Path], "Property | Sequence[SpecCase]"]


@runtime_checkable
class Verifier(Protocol):
    """A tool that decides one single-network VNN-LIB property on one ONNX model."""

    name: str

    def check(self, model: Path, prop: Path, timeout: float) -> Verdict:
        """Decide ``prop`` on ``model`` within ``timeout`` seconds (wall clock)."""
        ...


# Verifiers shipped with nnbisim, by name: "module:attribute" of a class or zero-argument factory
# (imported only when asked for), or the factory itself. Built-ins replay their own
# counterexamples.
BUILTIN_VERIFIERS: dict[str, str | Callable[[], Verifier]] = {
    "marabou": "nnbisim.adapters.marabou:MarabouVerifier",
    "bounds": "nnbisim.search.decide:BoundsVerifier",
}


def available_verifiers() -> list[str]:
    """Every name :func:`get_verifier` accepts (``vnncomp:DIR`` stands for any tool dir)."""
    plugins = [ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)]
    return sorted(set(BUILTIN_VERIFIERS) | set(plugins)) + ["vnncomp:DIR"]


def get_verifier(spec: str) -> Verifier:
    """The verifier named ``spec``: a built-in, ``vnncomp:DIR``, or an entry-point plug-in.

    Plug-ins from other packages are wrapped so that their ``violated`` answers are replayed.
    """
    if spec.startswith("vnncomp:"):
        tool_dir = spec.removeprefix("vnncomp:").strip()
        if not tool_dir:
            raise InputError("vnncomp: needs a tool directory, e.g. vnncomp:/opt/mytool")
        return VnncompVerifier(Path(tool_dir).expanduser())
    if spec in BUILTIN_VERIFIERS:
        return _instantiate(spec, _resolve(BUILTIN_VERIFIERS[spec]))
    for ep in entry_points(group=ENTRY_POINT_GROUP, name=spec):
        try:
            factory = ep.load()
        except Exception as exc:  # a broken third-party package
            raise VerifierError(f"verifier plug-in {spec!r} ({ep.value}) fails to load: {exc}"
                                ) from exc
        return ReplayChecked(_instantiate(spec, factory))
    raise InputError(f"unknown verifier {spec!r}; available: {', '.join(available_verifiers())}")


def _resolve(target: str | Callable[[], Verifier]) -> Callable[[], Verifier]:
    if not isinstance(target, str):
        return target
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _instantiate(name: str, factory: object) -> Verifier:
    verifier = factory() if callable(factory) else factory
    if not isinstance(verifier, Verifier):
        raise VerifierError(f"verifier {name!r} gave {type(verifier).__name__}, which has no "
                            "name and check(model, prop, timeout); fix the plug-in")
    return verifier


def read_cases(path: Path) -> list[SpecCase]:
    """The (input box, unsafe set) cases of a VNN-LIB file (``nnbisim.specs.io``)."""
    from nnbisim.specs.io import read_spec_cases

    return read_spec_cases(path)


def _cases(prop: Property | Sequence[SpecCase]) -> list[tuple[Box, OutputConstraint]]:
    if hasattr(prop, "inputs"):  # a Property: every box shares one unsafe set
        return [(box, prop.unsafe) for box in prop.inputs.boxes]
    return [(case.box, case.unsafe) for case in prop]


def output_tolerance(y: np.ndarray, tol: float = 1e-6) -> float:
    """How far outside an unsafe set a replayed output may lie and still count: ``tol`` times
    the output's magnitude (float32 evaluation noise), never less than ``tol * 1e-2``.

    Exact tools answer with points on the boundary of the unsafe set, which float32 replay
    misses by a few 1e-9 even where the output itself is 1e-3 (the difference of two
    networks is small, the activations it comes from are not). No absolute floor of order
    ``tol``: differences between a network and its copy can be 1e-5, and benchmark thresholds
    sit 1% above a certified bound, so the slack must stay well below 1e-7 there."""
    return tol * max(float(np.max(np.abs(y))), 1e-2)


def confirm_violation(verdict: Verdict, model: Path, prop: Property | Sequence[SpecCase],
                      tol: float = 1e-6) -> Verdict:
    """Replay a ``violated`` verdict's counterexample; keep it only if it is real.

    The counterexample must lie in an input box of the property (within ``tol`` relative to
    the bounds; it is then clipped into the box), and onnxruntime's output on ``model`` must lie
    in that box's unsafe set (within :func:`output_tolerance`). Otherwise the
    answer becomes ``unknown`` with a message saying why. Other verdicts pass unchanged.
    """
    if verdict.status is not Status.VIOLATED:
        return verdict

    def unknown(why: str) -> Verdict:
        log.warning("%s on %s: %s", verdict.verifier, model, why)
        return replace(verdict, status=Status.UNKNOWN, message=why, output=None)

    if verdict.counterexample is None:
        return unknown("the tool answered sat without a counterexample; cannot confirm it")
    cases = _cases(prop)
    if not cases:
        return unknown("the property has no input box; nothing to replay against")
    x = np.asarray(verdict.counterexample, dtype=np.float64).reshape(-1)
    if x.size != cases[0][0].dim or not np.all(np.isfinite(x)):
        return unknown(f"the tool's counterexample did not replay: it has {x.size} values "
                       f"(finite: {bool(np.all(np.isfinite(x)))}), the property "
                       f"{cases[0][0].dim} inputs")
    runner, replayed = OnnxRunner(model), []
    for box, unsafe in cases:
        if not box.contains(x, tol * max(1.0, float(np.max(np.abs([box.lower, box.upper]))))):
            continue
        xc = np.clip(x, box.lower, box.upper)
        y = runner.run(xc)
        if unsafe.satisfied_by(y, output_tolerance(y, tol)):
            return replace(verdict, counterexample=xc, output=y)
        replayed.append(np.array2string(y, precision=6))
    if not replayed:
        return unknown("the tool's counterexample did not replay: it lies outside the input set")
    return unknown(f"the tool's counterexample did not replay: onnxruntime gives "
                   f"{replayed[0]}, outside the unsafe set")


def replay_checked(verdict: Verdict, model: Path, prop: Path,
                   reader: PropertyReader | None = None) -> Verdict:
    """:func:`confirm_violation`, reading ``prop`` (default: :func:`read_cases`) only if needed."""
    if verdict.status is not Status.VIOLATED:
        return verdict
    return confirm_violation(verdict, model, (reader or read_cases)(prop))


@dataclass(frozen=True)
class ReplayChecked:
    """Wraps a third-party verifier so that its ``violated`` answers are replayed."""

    inner: Verifier
    reader: PropertyReader | None = None

    @property
    def name(self) -> str:
        return self.inner.name

    def check(self, model: Path, prop: Path, timeout: float) -> Verdict:
        return replay_checked(self.inner.check(model, prop, timeout), model, prop, self.reader)


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


_VNNCOMP_WORDS = {"sat": Status.VIOLATED, "violated": Status.VIOLATED, "unsat": Status.HOLDS,
                  "holds": Status.HOLDS, "timeout": Status.TIMEOUT, "unknown": Status.UNKNOWN,
                  "error": Status.ERROR}
_ASSIGNMENT = re.compile(r"\(\s*X_(\d+)\s+([^\s()]+)\s*\)")


def parse_vnncomp_result(text: str) -> tuple[Status, np.ndarray | None, str]:
    """Status, counterexample input (for ``sat``, else ``None``) and a note from a result file.

    The file starts with sat/unsat/timeout/unknown/error; a ``sat`` is followed by VNN-COMP 1.0
    assignments ``((X_0 v) ... (Y_0 v) ...)``. Only the inputs are kept: outputs are replayed.
    """
    words = text.split()
    word = words[0].lower() if words else ""
    status = _VNNCOMP_WORDS.get(word)
    if status is None:
        return Status.ERROR, None, f"unreadable result {word[:40]!r}"
    if status is not Status.VIOLATED:
        return status, None, ""
    found = {int(i): v for i, v in _ASSIGNMENT.findall(text)}
    try:
        x = np.array([float(found[i]) for i in range(len(found))], dtype=np.float64)
    except (KeyError, ValueError):
        return status, None, "the counterexample's X_i assignments are unreadable"
    return status, (x if x.size else None), ""


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

    def check(self, model: Path, prop: Path, timeout: float) -> Verdict:
        check_files(model, prop, timeout)
        net, spec = str(Path(model).resolve()), str(Path(prop).resolve())
        with tempfile.TemporaryDirectory(prefix="nnbisim-vnncomp-") as tmp:
            log_file, result = Path(tmp) / "tool.log", Path(tmp) / "result.txt"
            if (Path(self.tool_dir) / "prepare_instance.sh").is_file():
                code = run_with_deadline(
                    [*self._script("prepare_instance.sh"), "v1", self.category, net, spec],
                    self.prepare_timeout, log_file, cwd=Path(self.tool_dir))
                if code != 0:
                    why = "timed out" if code is None else f"exit {code}"
                    return Verdict(Status.ERROR, self.name, message="prepare_instance.sh "
                                   f"failed ({why}): {log_tail(log_file)}")
            start = time.perf_counter()
            code = run_with_deadline(
                [*self._script("run_instance.sh"), "v1", self.category, net, spec, str(result),
                 str(max(1, math.ceil(timeout)))],
                timeout + self.grace, log_file, cwd=Path(self.tool_dir))
            seconds = time.perf_counter() - start
            if code is None:
                return Verdict(Status.TIMEOUT, self.name, seconds,
                               message=f"killed after {seconds:.1f} s")
            if not result.is_file():
                return Verdict(Status.ERROR, self.name, seconds, message="run_instance.sh "
                               f"(exit {code}) wrote no result: {log_tail(log_file)}")
            status, x, note = parse_vnncomp_result(result.read_text(errors="replace"))
            if status is Status.ERROR:
                note = f"{note} {log_tail(log_file)}".strip()
        verdict = Verdict(status, self.name, seconds, counterexample=x, message=note)
        return replay_checked(verdict, Path(model), Path(prop), self.reader)
