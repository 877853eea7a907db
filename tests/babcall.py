"""The branch and bound of input boxes called the way its tests read best: the problem's parts
and the options as keywords, mapped onto :class:`BabProblem` and :class:`BabOptions`."""

from __future__ import annotations

import numpy as np

from nnbisim.search.bab_types import BabOptions, BabProblem, BabResult
from nnbisim.search.input_bab import input_bab

PROBLEM = ("tighten", "polish", "target", "scale")


def bab(lower, upper, bound, value, *, start_values, start_x, resume=None, progress=None,
        **kw) -> BabResult:
    parts = {k: kw.pop(k) for k in PROBLEM if k in kw}
    problem = BabProblem(np.asarray(lower, np.float64), np.asarray(upper, np.float64), bound,
                         value, **parts)
    return input_bab(problem, start_values, start_x, BabOptions(**kw), resume=resume,
                     progress=progress)
