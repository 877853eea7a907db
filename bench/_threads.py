"""One thread per process, set before numpy or torch is first imported (every bench imports
this first): the benches run tools side by side on few cores, and multi-threaded BLAS or torch
against another busy process slowed one tool several times over."""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
