"""A compiled (numba) half-step for regularised rows: gather, Gram or Woodbury, Cholesky.

Used by :func:`socialals._linalg.solve_rows` for every row with a positive diagonal
regulariser when numba imports; the pure numpy path remains the reference and the
fallback. For row ``i`` with observed columns ``J_i`` (``n_i`` of them), ``A = Y[J_i]``,
targets ``t`` and diagonal ``d > 0`` it solves ``(A^T A + diag(d)) x = A^T t + e``:

* ``n_i = 0``: ``x = e / d``;
* ``0 < n_i < k``: the Woodbury form, an ``n_i x n_i`` Cholesky instead of ``k x k``
  (``x = g - D^-1 A^T (I + A D^-1 A^T)^-1 A g``, ``g = D^-1 (A^T t + e)``), in float64;
* ``n_i >= k``: the lower triangle of ``A^T A`` is accumulated four ratings at a time,
  straight from the factor rows (no gather), in the factors' dtype: float32 factors give
  float32 Gram sums, as Spark, implicit and LensKit do, float64 factors float64 sums.
  The right-hand side, the Cholesky factorisation and the solves are float64.

A row whose Cholesky meets a non-positive pivot (possible only through rounding, when
``d`` is tiny next to the Gram matrix) is flagged and left to the numpy path, which
solves it with a pseudo-inverse fallback.

Rows are independent and each row's arithmetic depends only on its own data, so results
are bit-identical for any number of threads. Threads take rows round-robin from a list
sorted by cost, which balances the long-tailed row lengths of rating data.
"""

from __future__ import annotations

import contextlib
import threading

import numpy as np

try:  # pragma: no cover - exercised when numba is installed
    import numba
    from numba import njit, prange
except Exception:  # numba missing or broken: the numpy path is used
    numba = None

AVAILABLE = numba is not None

__all__ = ["AVAILABLE", "solve_rows_fused", "weighted_sq_distances"]

# numba's fallback "workqueue" threading layer (used where neither OpenMP nor TBB loads)
# aborts the whole process when two Python threads launch parallel regions at once, e.g.
# two models fitted from a thread pool. Launches are serialised until the layer is known
# to be a thread-safe one (omp or tbb); then the lock is skipped.
_LAUNCH_LOCK = threading.Lock()
_THREAD_SAFE_LAYERS = ("omp", "tbb")


@contextlib.contextmanager
def _parallel_region(n_threads):
    """Run a parallel kernel on ``n_threads`` numba threads (restored afterwards),
    serialised against other Python threads unless the threading layer is thread-safe."""
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel region has run yet: the layer is not chosen
        layer = None
    previous = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(n_threads), numba.config.NUMBA_NUM_THREADS)))
    try:
        with contextlib.nullcontext() if layer in _THREAD_SAFE_LAYERS else _LAUNCH_LOCK:
            yield
    finally:
        numba.set_num_threads(previous)


if AVAILABLE:
    _jit = njit(fastmath=True, cache=True, nogil=True)
    # inlined into the kernel at numba IR level, so LLVM sees that the freshly allocated
    # Gram buffer aliases nothing and vectorises the accumulation
    _jit_inline = njit(fastmath=True, cache=True, nogil=True, inline="always")

    @_jit_inline
    def _gram_lower(Y, indices, s0, m, t, G, b, width):  # pragma: no cover
        """``G = lower(A^T A)`` (in ``G``'s dtype) and ``b += A^T t`` (float64), ``A = Y[indices[s0:s0+m]]``.

        Four ratings per pass over ``G``, so each load and store of a ``G`` line serves
        four multiply-adds; the inner loop runs along contiguous factor rows. Line ``a``
        is accumulated up to column ``a`` rounded up to a multiple of ``width`` (a few
        entries above the diagonal, never used): inner loops whose lengths are multiples
        of two SIMD vectors leave no scalar remainder, which measured 10-25 % faster than
        the exact triangle (and than full lines) for both dtypes.
        """
        k = Y.shape[1]
        p = s0
        e = s0 + m
        while p + 4 <= e:
            j0, j1, j2, j3 = indices[p], indices[p + 1], indices[p + 2], indices[p + 3]
            t0, t1, t2, t3 = t[p], t[p + 1], t[p + 2], t[p + 3]
            for a in range(k):
                y0, y1, y2, y3 = Y[j0, a], Y[j1, a], Y[j2, a], Y[j3, a]
                b[a] += np.float64(y0) * t0 + np.float64(y1) * t1 + np.float64(y2) * t2 + np.float64(y3) * t3
                for c in range(min(k, (a // width + 1) * width)):
                    G[a, c] += y0 * Y[j0, c] + y1 * Y[j1, c] + y2 * Y[j2, c] + y3 * Y[j3, c]
            p += 4
        while p < e:
            j0 = indices[p]
            t0 = t[p]
            for a in range(k):
                y0 = Y[j0, a]
                b[a] += np.float64(y0) * t0
                for c in range(min(k, (a // width + 1) * width)):
                    G[a, c] += y0 * Y[j0, c]
            p += 1

    @_jit
    def _cholesky_solve(H, dd, n, b, x):  # pragma: no cover
        """Solve ``S x = b[:n]`` by Cholesky ``S = L L^T``, ``S`` given as ``H`` and ``dd``.

        ``H`` holds the strictly lower triangle of ``S`` and zeros everywhere else (on the
        diagonal too), with at least ``n`` rounded up to a multiple of 8 columns; ``dd``
        holds the diagonal. ``L`` overwrites both. Because the entries right of a row's
        diagonal are zero, every dot product may run to the next multiple of 8, so the
        inner loops vectorise without scalar remainders (about twice as fast at k = 64
        as the exact lengths). ``x`` (as long as ``H`` is wide) receives the solution.
        Returns False (``x`` undefined) when a pivot is not positive.
        """
        for a in range(x.shape[0]):
            x[a] = 0.0  # the padded dot products read x[a:], multiplied by zeros
        for a in range(n):
            w = (a + 7) // 8 * 8
            s = dd[a]
            for c in range(w):
                s -= H[a, c] * H[a, c]
            if not s > 0.0:
                return False
            d = np.sqrt(s)
            dd[a] = d
            for i in range(a + 1, n):
                s2 = H[i, a]
                for c in range(w):
                    s2 -= H[i, c] * H[a, c]
                H[i, a] = s2 / d
        for a in range(n):  # L y = b
            w = (a + 7) // 8 * 8
            s = b[a]
            for c in range(w):
                s -= H[a, c] * x[c]
            x[a] = s / dd[a]
        for a in range(n - 1, -1, -1):  # L^T x = y, column by column
            xa = x[a] / dd[a]
            x[a] = xa
            for c in range(a):
                x[c] -= H[a, c] * xa
        return True

    @njit(parallel=True, fastmath=True, cache=True)
    def _kernel(order, n_chunks, width, indptr, indices, targets, Y, diag, extra, use_extra, want_sse,
                out, sse, ok):  # pragma: no cover
        k = Y.shape[1]
        kp = (k + 7) // 8 * 8
        for chunk in prange(n_chunks):
            H = np.zeros((k, kp))
            dd = np.empty(k)
            A = np.empty((k, k))
            AD = np.empty((k, k))
            b = np.empty(k)
            g = np.empty(k)
            x = np.empty(kp)
            z = np.empty(kp)
            for q in range(chunk, order.shape[0], n_chunks):
                r = order[q]
                s0 = indptr[r]
                m = indptr[r + 1] - s0
                for a in range(k):
                    b[a] = extra[r, a] if use_extra else 0.0
                if m >= k:
                    G = np.zeros((k, k), Y.dtype)
                    _gram_lower(Y, indices, s0, m, targets, G, b, width)
                    for a in range(k):
                        for c in range(a):
                            H[a, c] = G[a, c]
                        for c in range(a, kp):
                            H[a, c] = 0.0
                        dd[a] = np.float64(G[a, a]) + np.float64(diag[r, a])
                    if not _cholesky_solve(H, dd, k, b, x):
                        ok[r] = False
                        continue
                elif m > 0:  # Woodbury: an m x m system
                    for p in range(m):
                        j = indices[s0 + p]
                        t = targets[s0 + p]
                        for a in range(k):
                            v = np.float64(Y[j, a])
                            A[p, a] = v
                            AD[p, a] = v / diag[r, a]
                            b[a] += v * t
                    for a in range(k):
                        g[a] = b[a] / diag[r, a]
                    for p in range(m):
                        s = 0.0
                        for a in range(k):
                            s += A[p, a] * g[a]
                        b[p] = s  # b is free now: the right-hand side A g
                        for q2 in range(p):
                            s = 0.0
                            for a in range(k):
                                s += AD[p, a] * A[q2, a]
                            H[p, q2] = s
                        s = 1.0
                        for a in range(k):
                            s += AD[p, a] * A[p, a]
                        dd[p] = s
                        for c in range(p, kp):
                            H[p, c] = 0.0
                    if not _cholesky_solve(H, dd, m, b, z):
                        ok[r] = False
                        continue
                    for a in range(k):
                        s = g[a]
                        for p in range(m):
                            s -= AD[p, a] * z[p]
                        x[a] = s
                else:
                    for a in range(k):
                        x[a] = b[a] / diag[r, a]
                for a in range(k):
                    out[r, a] = x[a]
                if want_sse:
                    acc = 0.0
                    for p in range(m):
                        j = indices[s0 + p]
                        pred = 0.0
                        for a in range(k):
                            pred += np.float64(Y[j, a]) * x[a]
                        res = targets[s0 + p] - pred
                        acc += res * res
                    sse[r] = acc


    @njit(parallel=True, fastmath=True, cache=True)
    def _row_sq_distances(indptr, indices, weights, U, out):  # pragma: no cover
        for r in prange(len(indptr) - 1):
            acc = 0.0
            for p in range(indptr[r], indptr[r + 1]):
                f = indices[p]
                d2 = 0.0
                for a in range(U.shape[1]):
                    d = np.float64(U[r, a]) - np.float64(U[f, a])
                    d2 += d * d
                acc += weights[p] * d2
            out[r] = acc


def weighted_sq_distances(indptr, indices, weights, U, n_threads):
    """Per row ``r`` of a CSR graph: ``sum_p w_p ||U[r] - U[indices[p]]||^2`` (float64).

    Each row's sum runs in a fixed order on one thread, so the result (and its
    ``np.sum``) does not depend on ``n_threads``.
    """
    out = np.empty(len(indptr) - 1)
    with _parallel_region(n_threads):
        _row_sq_distances(indptr, indices, np.asarray(weights, dtype=np.float64), np.ascontiguousarray(U), out)
    return out


def _index_array(a):
    """``a`` itself when it is a contiguous int32/int64 array (the kernel takes both)."""
    a = np.ascontiguousarray(a)
    return a if a.dtype in (np.int32, np.int64) else a.astype(np.int64)


def solve_rows_fused(rows, indptr, indices, targets, Y, diag, extra, want_sse, n_threads, out, sse):
    """Solve ``(A_i^T A_i + diag(d_i)) x_i = A_i^T t_i + e_i`` for ``rows`` (``d > 0``).

    Writes ``out[rows]`` (and ``sse[rows]`` when asked); returns a boolean mask over
    ``rows`` of the rows solved (False: a non-positive Cholesky pivot, see module doc).
    """
    k = Y.shape[1]
    rows = np.asarray(rows, dtype=np.int64)
    counts = indptr[rows + 1] - indptr[rows]
    # cost model: Gram rows ~ n k^2 / 2 + k^3 / 3, Woodbury rows ~ n^2 k + n^3 / 3. The order
    # only balances the threads (results never depend on it), so rows are sorted by an
    # int16 key of 1/8-octave cost buckets: a radix sort, ~4x cheaper than sorting floats.
    n = counts.astype(np.float32)
    cost = np.where(counts >= k, n * (k * k / 2) + k**3 / 3, n * n * (n / 3 + k) + k)
    order = rows[np.argsort((-8 * np.log2(cost)).astype(np.int16), kind="stable")]
    use_extra = extra is not None
    ext = extra if use_extra else np.zeros((1, k), dtype=Y.dtype)
    ok = np.ones(len(out), dtype=bool)
    threads = max(1, min(int(n_threads), numba.config.NUMBA_NUM_THREADS, len(rows)))
    with _parallel_region(threads):
        _kernel(
            order,
            threads,
            16 if Y.dtype == np.float32 else 8,  # two AVX2 vectors of the dtype
            _index_array(indptr),
            _index_array(indices),
            np.ascontiguousarray(targets, dtype=np.float64),
            np.ascontiguousarray(Y),
            np.ascontiguousarray(diag),  # the dtype of Y: no float64 copy per half-step
            np.ascontiguousarray(ext),
            use_extra,
            want_sse,
            out,
            sse if sse is not None else np.zeros(len(out)),
            ok,
        )
    return ok[rows]
