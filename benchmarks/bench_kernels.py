"""Single-thread throughput of the compiled half-step's parts (socialals._kernels, _simd).

On the MovieLens-1M-shaped problem of ``bench_als.py`` (user rows: 6,040 users over
3,706 items; item rows: the transpose) with random factors, for each k and dtype:

* ``gram GFMA/s``: the Gram sums of every row with at least k ratings (gather + the
  register-blocked micro-kernel), in multiply-adds per second, counting the tile entries
  actually computed (the upper triangle padded to whole tiles);
* ``chol us``: microseconds per k x k Cholesky solve (fill + blocked factorisation +
  substitutions) of a fixed SPD matrix, repeated;
* ``half-step s``: one whole half-step (``socialals._kernels.solve``) over all rows, 1 thread;
* with ``--lapack``: ``lapack us``, the same solve by LAPACK's ``dposv`` (from
  ``scipy.linalg.cython_lapack``, called from numba), the library route the core would
  take if it were as fast; ``lapack/chol`` is the ratio.

CPU time (``time.process_time``), best of ``--repeats``, with BLAS limited to one thread
(idle OpenBLAS workers spin for a while after a call, and their CPU time would count). Usage::

    python benchmarks/bench_kernels.py
    python benchmarks/bench_kernels.py --k 64 --dtype float32
    python benchmarks/bench_kernels.py --k 64 --gram-fraction 1.0   # the Gram/Woodbury threshold
    python benchmarks/bench_kernels.py --lapack                      # blocked Cholesky vs LAPACK dposv
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_als import ml1m_like  # noqa: E402
from socialals import _kernels  # noqa: E402
from socialals._config import numba_available  # noqa: E402
from socialals._linalg import RowSystem  # noqa: E402

if not numba_available:
    sys.exit("numba is not available: nothing compiled to time")

from numba import njit  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402


@njit(cache=False, fastmath=True)
def _gram_all(indptr, indices, targets, Y, rows, width, sink):
    k = Y.shape[1]
    kg = (k + width - 1) // width * width
    block = max(8, 16384 // (kg * Y.itemsize))
    Ag = np.zeros((block, kg), Y.dtype)
    G = np.empty((kg, kg), Y.dtype)
    b = np.zeros(k)
    for r in rows:
        _kernels._gram_upper(Y, indices, indptr[r], indptr[r + 1] - indptr[r], targets, Ag, G, b, width)
        sink[0] += G[0, k - 1]


@njit(cache=False, fastmath=True)
def _chol_repeat(M, n_rep, sink):
    k = M.shape[0]
    kp = (k + 7) // 8 * 8
    S = np.zeros((kp, kp + 8))
    x = np.empty(kp + 8)
    dinv = np.empty(kp)
    for _ in range(n_rep):
        for a in range(k):  # the fill the kernel does: see _cholesky_solve's contract
            for c in range(a, k):
                S[a, c] = M[a, c]
            S[a, k] = 1.0
        _kernels._clear_padding(S, k)
        _kernels._cholesky_solve(S, k, x, dinv, 0.0)
        sink[0] += x[0]


def _dposv():
    import ctypes

    from numba.extending import get_cython_function_address

    addr = get_cython_function_address("scipy.linalg.cython_lapack", "dposv")
    return ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * 8))(addr)


def _lapack_repeat_factory():
    dposv = _dposv()

    @njit(cache=False)
    def run(M, n_rep, sink):
        k = M.shape[0]
        S = np.empty((k, k))
        b = np.empty(k)
        uplo = np.array([ord("L")], dtype=np.uint8)
        n = np.array([k], np.int32)
        one = np.array([1], np.int32)
        info = np.zeros(1, np.int32)
        for _ in range(n_rep):
            for a in range(k):  # the same fill as the kernel's (one triangle and the rhs)
                for c in range(a, k):
                    S[a, c] = M[a, c]
                b[a] = 1.0
            dposv(uplo.ctypes, n.ctypes, one.ctypes, S.ctypes, n.ctypes, b.ctypes, n.ctypes, info.ctypes)
            sink[0] += b[0]

    return run


def best(fn, repeats):
    fn()  # compile / warm caches
    times = []
    for _ in range(repeats):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return min(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--k", nargs="+", type=int, default=[16, 64])
    ap.add_argument("--dtype", nargs="+", default=["float32", "float64"], choices=["float32", "float64"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--lapack", action="store_true", help="also time LAPACK dposv on the same systems")
    ap.add_argument("--gram-fraction", type=float, default=None,
                    help="rows with at least this fraction of k ratings take the Gram route (default: the library's)")
    args = ap.parse_args(argv)
    if args.gram_fraction is not None:
        _kernels.GRAM_FRACTION = args.gram_fraction
    print(f"compiled half-step parts, 1 thread; Gram route from {_kernels.gram_min(64)} ratings at k = 64")
    lapack = _lapack_repeat_factory() if args.lapack else None

    ratings, _ = ml1m_like()
    R = sp.csr_matrix((ratings["rating"].to_numpy(float), (ratings["user"], ratings["item"]))).astype(np.float64)
    sides = {"user rows": R, "item rows": R.T.tocsr()}
    rng = np.random.default_rng(0)
    out = []
    for k in args.k:
        A = rng.normal(size=(4 * k, k))
        M = A.T @ A + 0.1 * np.eye(k)
        sink = np.zeros(1)
        n_rep = 2000
        chol_us = best(lambda: _chol_repeat(M, n_rep, sink), args.repeats) / n_rep * 1e6
        lapack_us = best(lambda: lapack(M, n_rep, sink), args.repeats) / n_rep * 1e6 if lapack else float("nan")
        if lapack:
            print(f"  k={k:<3} blocked Cholesky {chol_us:6.2f} us   LAPACK dposv {lapack_us:6.2f} us   "
                  f"ratio {lapack_us / chol_us:.2f}", flush=True)
        for dtype in args.dtype:
            dt = np.dtype(dtype)
            width = 16 if dt == np.float32 else 8
            kg = (k + width - 1) // width * width
            # entries computed per rating: 4-row tiles from the diagonal's tile column to kg
            per_rating = sum(4 * (kg - a0 // width * width) for a0 in range(0, kg, 4))
            for side, C in sides.items():
                indptr, indices = C.indptr.astype(np.int64), C.indices.astype(np.int32)
                targets = C.data
                n_rows, n_other = C.shape
                Y = (rng.normal(size=(n_other, k)) * 0.3).astype(dt)
                counts = np.diff(indptr)
                rows = np.flatnonzero(counts >= k)
                t_gram = best(lambda: _gram_all(indptr, indices, targets, Y, rows, width, sink), args.repeats)
                fma = counts[rows].sum() * per_rating
                X = np.zeros((n_rows, k), dt)
                system = RowSystem(indptr, indices, targets, Y, diag=np.full((n_rows, k), 0.1, dt))
                order = _kernels.row_order(counts, k)
                t_half = best(lambda: _kernels.solve(system, order, 1, X, None), args.repeats)
                out.append(dict(k=k, dtype=dtype, side=side, gram_rows=len(rows), gram_GFMA_s=fma / t_gram / 1e9,
                                chol_us=chol_us, lapack_us=lapack_us, half_step_s=t_half))
                print(f"  k={k:<3} {dtype}  {side:<9}  gram {fma / t_gram / 1e9:5.1f} GFMA/s  "
                      f"chol {chol_us:5.2f} us  half-step {t_half:.4f} s", flush=True)
    print()
    print(pd.DataFrame(out).to_string(index=False, float_format=lambda x: f"{x:.3f}"))


if __name__ == "__main__":
    with threadpool_limits(limits=1, user_api="blas"):
        main()
