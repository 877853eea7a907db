"""Run ONNX files with onnxruntime on flattened float64 inputs: the reference for every replay.

A counterexample or a witness is only believed after the original file, run by onnxruntime,
gives the claimed output. Inputs are flat vectors ``(n, in_size)``; outputs come back as
``(n, out_size)`` float64 whatever the model's own shapes and dtype.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from nnbisim.adapters.onnx_peek import is_gzip, onnx_bytes, parse_model
from nnbisim.core.errors import InputError, ShapeMismatchError
from nnbisim.core.verdict import Status, Verdict
from nnbisim.specs.io import read_spec_cases
from nnbisim.specs.sets import Box, OutputConstraint, Property, SpecCase

log = logging.getLogger(__name__)

_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
}
_BATCH_AFTER = 16  # fixed batch-1 models: above this many rows try a session that takes a batch
_BATCH_CHECK = 4  # rows compared between the batched session and one-row runs before trusting it


@dataclass(frozen=True)
class _Io:
    name: str  # the input's name
    sample: tuple[int, ...]  # shape of one sample (without a symbolic batch dimension)
    symbolic_batch: bool  # the first dimension is symbolic: the model takes any batch
    dtype: type

    @property
    def size(self) -> int:
        return int(np.prod(self.sample))


class OnnxRunner:
    """One ONNX model in onnxruntime (CPU, ``threads`` threads), fed flat float64 rows.

    The session is created on first use. Models whose first input dimension is symbolic take
    the whole batch at once. Models with a fixed batch of 1 (as the ACAS Xu files, 1x1x1x5) run
    row by row; for larger batches a copy with a symbolic batch dimension is tried and used
    only if it agrees with row-by-row runs on the first rows.
    """

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        self.path = Path(path)
        self.threads = threads
        self._session: Any = None
        self._io: _Io | None = None
        self._batched: Any = None  # None: not tried yet; False: the model refused a batch

    def _new_session(self, model: str | bytes) -> Any:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])

    def _load(self) -> tuple[Any, _Io]:
        if self._session is not None and self._io is not None:
            return self._session, self._io
        if not self.path.is_file():
            raise InputError(f"{self.path}: no such ONNX file; check the path")
        try:
            sess = self._new_session(onnx_bytes(self.path) if is_gzip(self.path)
                                     else str(self.path))
        except Exception as exc:  # onnxruntime raises its own exception types
            raise InputError(
                f"{self.path}: onnxruntime cannot load it ({exc}); give a valid ONNX model"
            ) from exc
        ins, outs = sess.get_inputs(), sess.get_outputs()
        if len(ins) != 1 or len(outs) != 1:
            raise InputError(
                f"{self.path}: has {len(ins)} inputs and {len(outs)} outputs; replay needs "
                "exactly one of each"
            )
        if ins[0].type not in _DTYPES:
            raise InputError(
                f"{self.path}: input type {ins[0].type} is not supported; use float32 or float64"
            )
        shape = list(ins[0].shape)
        symbolic = bool(shape) and not isinstance(shape[0], int)
        sample = shape[1:] if symbolic else shape
        if not all(isinstance(d, int) for d in sample):
            raise InputError(
                f"{self.path}: input shape {shape} has symbolic dimensions besides the batch; "
                "fix them in the model"
            )
        self._session = sess
        self._io = _Io(ins[0].name, tuple(int(d) for d in sample), symbolic, _DTYPES[ins[0].type])
        return self._session, self._io

    @property
    def session(self) -> Any:
        """The onnxruntime session (created lazily); load problems raise :class:`InputError`."""
        return self._load()[0]

    @property
    def in_size(self) -> int:
        """Number of input values of one sample (the flattened input)."""
        return self._load()[1].size

    def run(self, x: np.ndarray) -> np.ndarray:
        """Evaluate rows ``x`` of shape ``(n, in_size)`` (or one vector); returns float64."""
        sess, io = self._load()
        rows = np.asarray(x, dtype=np.float64)
        single = rows.ndim == 1
        if single:
            rows = rows.reshape(1, -1)
        if rows.ndim != 2 or rows.shape[1] != io.size:
            raise ShapeMismatchError(
                f"{self.path}: takes rows of {io.size} input values, got shape {rows.shape}"
            )
        feed = rows.astype(io.dtype)
        if io.symbolic_batch:  # one call for the whole batch
            out = sess.run(None, {io.name: feed.reshape(len(feed), *io.sample)})[0]
            return _flat(out, len(feed), single)
        batched = self._batched_session(feed, io) if len(feed) > _BATCH_AFTER else None
        if batched is not None:
            out = batched.run(None, {io.name: feed.reshape(len(feed), *io.sample[1:])})[0]
            return _flat(out, len(feed), single)
        outs = [sess.run(None, {io.name: row.reshape(io.sample)})[0] for row in feed]
        return _flat(np.stack(outs), len(feed), single)

    def _batched_session(self, feed: np.ndarray, io: _Io) -> Any:
        """A session on a copy with a symbolic batch dimension, if the model allows one."""
        if self._batched is None:
            self._batched = False
            if not io.sample or io.sample[0] != 1:
                return None
            try:
                self._batched = self._try_batched(feed[:_BATCH_CHECK], io)
            except Exception as exc:  # any refusal means: keep looping row by row
                log.debug("%s: cannot run batched (%s); looping row by row", self.path, exc)
        return self._batched or None

    def _try_batched(self, probe: np.ndarray, io: _Io) -> Any:
        model = parse_model(self.path)
        for info in model.graph.input:
            if info.name == io.name:
                info.type.tensor_type.shape.dim[0].dim_param = "batch"
        for info in model.graph.output:
            if info.type.tensor_type.shape.dim:
                info.type.tensor_type.shape.dim[0].dim_param = "batch"
        del model.graph.value_info[:]
        sess = self._new_session(model.SerializeToString())
        quiet = ort.RunOptions()
        quiet.log_severity_level = 4  # a refusal here is expected and handled, not news
        got = sess.run(None, {io.name: probe.reshape(len(probe), *io.sample[1:])}, quiet)[0]
        ref = np.stack([self.session.run(None, {io.name: r.reshape(io.sample)})[0]
                        for r in probe])
        got, ref = got.reshape(len(probe), -1), ref.reshape(len(probe), -1)
        scale = float(np.max(np.abs(ref), initial=0.0, where=np.isfinite(ref)))  # NaN-proof
        if np.allclose(got, ref, rtol=1e-5, atol=1e-6 * (1.0 + scale), equal_nan=True):
            return sess
        log.debug("%s: the batched copy disagrees with one-row runs; looping", self.path)
        return False


def _flat(out: np.ndarray, n: int, single: bool) -> np.ndarray:
    y = np.asarray(out, dtype=np.float64).reshape(n, -1)
    return y[0] if single else y


def replay_difference(
    n1_path: str | Path, n2_path: str | Path, x: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Outputs ``(N1(x), N2(x))`` of two ONNX files on the same flattened inputs ``x``."""
    y1 = OnnxRunner(n1_path).run(x)
    y2 = OnnxRunner(n2_path).run(x)
    if y1.shape != y2.shape:
        raise ShapeMismatchError(
            f"{n1_path} gives {y1.shape[-1]} outputs and {n2_path} gives {y2.shape[-1]}; "
            "compare networks with the same output size"
        )
    return y1, y2


PropertyReader = Callable[[Path], Property | Sequence[SpecCase]]


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
    """:func:`confirm_violation`, reading ``prop`` only if needed (default reader:
    :func:`~nnbisim.specs.io.read_spec_cases`)."""
    if verdict.status is not Status.VIOLATED:
        return verdict
    return confirm_violation(verdict, model, (reader or read_spec_cases)(prop))
