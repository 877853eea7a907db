"""Child process of :class:`~nnbisim.adapters.marabou.MarabouVerifier`: one Marabou query.

Run as ``python -m nnbisim.adapters.marabou_worker MODEL PROPERTY SECONDS RESULT_JSON``. It
writes ``{"exit": <Marabou's exit word>, "x": [...], "y": [...]}`` (``x``/``y`` only for sat)
or ``{"exit": "ERROR", "error": "..."}`` to RESULT_JSON. Marabou prints from C++, so the parent
points this process's stdout and stderr at a log file. Imports stay light (no torch): a query
pays this process's start-up.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import warnings
from pathlib import Path

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # "Tensorflow parser is unavailable" and the like
    from maraboupy import Marabou, MarabouCore

from nnbisim.adapters.onnx_peek import gunzipped  # light: stdlib, numpy, protobuf on demand


def solve(model: str, prop: str, seconds: int) -> dict:
    """Solve one query; the counterexample in VNN-LIB order (X_i, Y_i), values as floats.
    Marabou reads plain files only: gzip'd ones are decompressed into a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="nnbisim-marabou-") as tmp:
        net = Marabou.read_onnx(str(gunzipped(model, tmp)))
        query = net.getInputQuery()
        MarabouCore.loadProperty(query, str(gunzipped(prop, tmp)))
    options = Marabou.createOptions(verbosity=0, timeoutInSeconds=seconds)
    exit_word, values, _ = Marabou.solve_query(query, options=options, verbose=False)
    answer: dict = {"exit": exit_word}
    if values:  # keyed by Marabou variable; X_i of the property is inputVariableByIndex(i)
        answer["x"] = [float(values[query.inputVariableByIndex(i)])
                       for i in range(query.getNumInputVariables())]
        answer["y"] = [float(values[query.outputVariableByIndex(i)])
                       for i in range(query.getNumOutputVariables())]
    return answer


def main(argv: list[str]) -> int:
    model, prop, seconds, result = argv
    try:
        answer = solve(model, prop, int(seconds))
    except Exception as exc:  # reported to the parent as an ERROR verdict
        answer = {"exit": "ERROR", "error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.flush()
    partial = Path(result).with_suffix(".part")
    partial.write_text(json.dumps(answer))
    os.replace(partial, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
