"""One thread per process, set before numpy or torch is first imported (every bench imports
this first): the benches run tools side by side on few cores, and multi-threaded BLAS or torch
against another busy process slowed one tool several times over. Freed memory is kept in the
process, as the command line does (:mod:`nnbisim.core.allocator`), unless
``NNBISIM_BENCH_PLAIN_MALLOC`` is set (a baseline measured without it)."""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from nnbisim.core.allocator import keep_freed_memory  # noqa: E402 - after the thread settings

if not os.environ.get("NNBISIM_BENCH_PLAIN_MALLOC"):  # a bench's baseline may ask for glibc's
    keep_freed_memory()
