"""The `fleetgate` command line: a thin Typer layer over the library."""

import os

# numpy's OpenBLAS starts a thread per core when numpy is imported, and each spins for about 0.1 s of CPU
# before it sleeps (measured: `import numpy` 0.18 s of CPU on 2 cores, 0.08 s with one thread). Nothing the
# command line runs does linear algebra in numpy (training runs on torch, with its own threads), so one
# thread serves; set before anything imports numpy. A value the caller set is kept.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
