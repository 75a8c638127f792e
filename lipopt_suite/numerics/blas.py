"""One BLAS thread (and one torch thread) while a chain of small dense factorisations runs.

numpy and scipy each load their own OpenBLAS with its own thread pool, and torch has its
own intra-op pool. A loop that alternates small calls between them (numpy products, scipy
Cholesky factors, CVXOPT's LAPACK, torch triangular solves) on a two-core machine made each
call wait on the other pools' spinning threads. Measured here: a 182-side LipSDP
interior-point solve took 6x longer than with one thread per pool, a 50 x 50 Cholesky solve
50 ms instead of well under 1 ms, and torch's 20 x 20 triangular solves 23 ms instead of
0.1 ms. The matrices these loops handle are small enough that one thread loses little.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Limit every loaded BLAS (threadpoolctl, when installed) and torch's CPU intra-op
    pool to one thread for the duration of the block; both are restored afterwards. A BLAS
    first loaded inside the block is not limited: scipy's is loaded here first."""
    import scipy.linalg  # noqa: F401 - load scipy's BLAS now, so that the limit reaches it
    import torch

    threads = torch.get_num_threads()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        limits: contextlib.AbstractContextManager = contextlib.nullcontext()
    else:
        limits = threadpool_limits(limits=1, user_api="blas")
    with limits:
        if threads != 1:
            torch.set_num_threads(1)
        try:
            yield
        finally:
            if threads != 1:
                torch.set_num_threads(threads)
