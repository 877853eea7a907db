"""The own engine as a verifier plug-in (``bounds``)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from nnbisim.adapters.onnx_load import load_network
from nnbisim.adapters.replay import replay_checked
from nnbisim.adapters.tools import check_files
from nnbisim.core.errors import UnsupportedModelError
from nnbisim.core.verdict import Status, Verdict
from nnbisim.search.decide import decide
from nnbisim.search.subjects import subject_of
from nnbisim.specs.io import read_spec_cases


@dataclass(frozen=True)
class BoundsVerifier:
    """The own engine as a verifier plug-in (``bounds``): ``holds`` with a proof, ``violated``
    with a counterexample replayed in onnxruntime, ``timeout`` when the budget ends first, and
    ``unknown`` for models outside feedforward ReLU networks."""

    name: str = "bounds"
    device: str = "cpu"

    def check(self, model: Path, prop: Path, timeout: float) -> Verdict:
        check_files(model, prop, timeout)
        t0 = time.perf_counter()
        try:
            net = load_network(model)
        except UnsupportedModelError as exc:
            return Verdict(Status.UNKNOWN, self.name, time.perf_counter() - t0,
                           message=f"outside the own engine: {exc}")
        subject = subject_of(model, net, self.device)
        left = timeout - (time.perf_counter() - t0)
        d = decide(subject, read_spec_cases(Path(prop)), max(left, 0.1))
        verdict = Verdict(d.status, self.name, time.perf_counter() - t0, counterexample=d.x,
                          message="; ".join(f"box {n.case}: {n.reason or n.how}"
                                            for n in d.problems))
        return replay_checked(verdict, Path(model), Path(prop))
