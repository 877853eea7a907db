"""The verifier plug-ins by name: every ``violated`` replayed before it counts.

A verifier (:class:`~nnbisim.core.verdict.Verifier`) answers one question: does some input of
a VNN-LIB property's input set reach its unsafe output set on an ONNX model? Tools answer in
their own words; each adapter translates them into a :class:`~nnbisim.core.verdict.Verdict` at
its edge, and a ``violated`` verdict is only returned after
:func:`~nnbisim.adapters.replay.confirm_violation` replays the counterexample with onnxruntime.

Verifiers by name (:func:`get_verifier`): the built-ins in :data:`BUILTIN_VERIFIERS`
(``bounds``, ``marabou``), ``vnncomp:DIR`` for any tool directory with VNN-COMP's scripts, and
third-party plug-ins registered under the entry-point group ``nnbisim.verifiers`` (an entry
point loads a class or zero-argument factory returning a verifier).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from nnbisim.adapters.replay import PropertyReader, replay_checked
from nnbisim.core.errors import InputError, VerifierError
from nnbisim.core.verdict import Verdict, Verifier
from nnbisim.verifiers.vnncomp_tool import VnncompVerifier

ENTRY_POINT_GROUP = "nnbisim.verifiers"

# Verifiers shipped with nnbisim, by name: "module:attribute" of a class or zero-argument factory
# (imported only when asked for: a plug-in registry, like the entry points), or the factory
# itself. Built-ins replay their own counterexamples.
BUILTIN_VERIFIERS: dict[str, str | Callable[[], Verifier]] = {
    "marabou": "nnbisim.adapters.marabou:MarabouVerifier",
    "bounds": "nnbisim.verifiers.own:BoundsVerifier",
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
