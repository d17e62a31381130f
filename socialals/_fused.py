"""A compiled (numba) half-step: gather, Gram, Cholesky and solve fused per row.

Used by :func:`socialals._linalg.solve_rows` for regularised systems when numba imports;
the pure numpy path remains the reference and the fallback. Each row is solved by the
same code whatever the number of threads (rows are independent), so results do not depend
on ``n_jobs``. The Gram matrix is accumulated in float64 four ratings at a time (lower
triangle only), then factorised in place by Cholesky.
"""

from __future__ import annotations

import numpy as np

try:  # pragma: no cover - exercised when numba is installed
    import numba
    from numba import njit, prange
except Exception:  # numba missing or broken: the numpy path is used
    numba = None

AVAILABLE = numba is not None

__all__ = ["AVAILABLE", "solve_rows_fused"]


if AVAILABLE:

    @njit(parallel=True, fastmath=True, cache=True)
    def _kernel(rows, indptr, indices, targets, Y, diag, extra, use_extra, want_sse, out, sse):  # pragma: no cover
        k = Y.shape[1]
        for q_ in prange(rows.shape[0]):
            r = rows[q_]
            G = np.zeros((k, k))
            b = np.zeros(k)
            s0 = indptr[r]
            e0 = indptr[r + 1]
            p = s0
            while p + 4 <= e0:
                j0, j1, j2, j3 = indices[p], indices[p + 1], indices[p + 2], indices[p + 3]
                t0, t1, t2, t3 = targets[p], targets[p + 1], targets[p + 2], targets[p + 3]
                for a in range(k):
                    y0 = np.float64(Y[j0, a])
                    y1 = np.float64(Y[j1, a])
                    y2 = np.float64(Y[j2, a])
                    y3 = np.float64(Y[j3, a])
                    b[a] += y0 * t0 + y1 * t1 + y2 * t2 + y3 * t3
                    for c in range(a + 1):
                        G[a, c] += y0 * Y[j0, c] + y1 * Y[j1, c] + y2 * Y[j2, c] + y3 * Y[j3, c]
                p += 4
            while p < e0:
                j0 = indices[p]
                t0 = targets[p]
                for a in range(k):
                    y0 = np.float64(Y[j0, a])
                    b[a] += y0 * t0
                    for c in range(a + 1):
                        G[a, c] += y0 * Y[j0, c]
                p += 1
            for a in range(k):
                G[a, a] += diag[r, a]
                if use_extra:
                    b[a] += extra[r, a]
            # Cholesky G = L L^T in the lower triangle
            for a in range(k):
                s = G[a, a]
                for c in range(a):
                    s -= G[a, c] * G[a, c]
                d = np.sqrt(s)
                G[a, a] = d
                for i in range(a + 1, k):
                    s2 = G[i, a]
                    for c in range(a):
                        s2 -= G[i, c] * G[a, c]
                    G[i, a] = s2 / d
            y = np.empty(k)
            for a in range(k):
                s = b[a]
                for c in range(a):
                    s -= G[a, c] * y[c]
                y[a] = s / G[a, a]
            x = np.empty(k)
            for a in range(k - 1, -1, -1):
                s = y[a]
                for c in range(a + 1, k):
                    s -= G[c, a] * x[c]
                x[a] = s / G[a, a]
            for a in range(k):
                out[r, a] = x[a]
            if want_sse:
                acc = 0.0
                for q in range(s0, e0):
                    j = indices[q]
                    pred = 0.0
                    for a in range(k):
                        pred += np.float64(Y[j, a]) * out[r, a]
                    res = targets[q] - pred
                    acc += res * res
                sse[r] = acc


def solve_rows_fused(rows, indptr, indices, targets, Y, diag, extra, want_sse, n_threads, out, sse):
    """Solve ``(A_i^T A_i + diag(d_i)) x_i = A_i^T t_i + e_i`` for ``rows``, into ``out``/``sse``; ``d > 0``."""
    k = Y.shape[1]
    use_extra = extra is not None
    ext = extra if use_extra else np.zeros((1, k), dtype=Y.dtype)
    previous = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(n_threads), numba.config.NUMBA_NUM_THREADS)))
    try:
        _kernel(
            np.ascontiguousarray(rows, dtype=np.int64),
            np.ascontiguousarray(indptr, dtype=np.int64),
            np.ascontiguousarray(indices, dtype=np.int64),
            np.ascontiguousarray(targets, dtype=np.float64),
            np.ascontiguousarray(Y),
            np.ascontiguousarray(diag, dtype=np.float64),
            np.ascontiguousarray(ext),
            use_extra,
            want_sse,
            out,
            sse if sse is not None else np.zeros(len(out)),
        )
    finally:
        numba.set_num_threads(previous)
