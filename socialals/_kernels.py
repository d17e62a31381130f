"""The compiled half-step: every row of a :class:`~socialals._linalg.RowSystem`
(``(s AᵀA + G0 + diag(d)) x = Aᵀt + b0 + e``, ``A = Y[J_i]``, ``m`` rows) solved in numba.
Three routes, chosen per row from its own data only:

* **Gram** (``m >= 5k/8``, or whenever ``G0`` is present): ``AᵀA`` summed by the SIMD tile
  of :mod:`socialals._simd` over L1-sized gathered blocks in the factors' dtype (float32
  sums, as Spark, implicit and LensKit do, unless the regulariser is below float32's
  rounding: then the row is summed again in float64), factorised by a blocked float64
  Cholesky whose forward substitution rides along as an extra column.
* **Woodbury** (``0 < m < 5k/8``, ``d > 0``), in the form that never subtracts large terms
  when ``d`` is tiny: ``x = D⁻¹(Aᵀy + e)``, ``(I + A D⁻¹ Aᵀ) y = t − A D⁻¹ e``.
* **minimum norm** (unregularised rows of plain ALS, ``m < k``): ``x = Aᵀy``, ``AAᵀ y = t``.

A row whose Cholesky meets a pivot at or below its floor (0 for positive definite systems,
``1e-12`` of the largest diagonal entry where some ``d`` is 0) is handed back to the
reference. Each row's arithmetic depends only on its own data, so results are bit-identical
for any number of threads and any schedule. One source, compiled twice: with ``prange``
(:func:`solve`, numba threads over rows sorted by cost) and serially without the GIL
(:func:`solve_serial`, one block of rows per joblib task: :mod:`socialals._blocks`).
"""

from __future__ import annotations

import contextlib
import threading
import types

import numpy as np

from . import _simd
from ._config import njit, numba_available

__all__ = ["GRAM_FRACTION", "gram_min", "row_cost", "row_order", "solve", "solve_serial"]

# Rows with at least this fraction of k ratings take the Gram route, shorter ones Woodbury:
# with the SIMD Gram a row of 5k/8 ratings costs about the same both ways (MovieLens-shaped
# user rows at k = 64: 4-9 % faster than a threshold of k; benchmarks/bench_kernels.py).
GRAM_FRACTION = 0.625
# a float32 Gram sum is trusted when min(d) >= _F32_GUARD * sqrt(m) * eps32 * max diag(G), the typical
# rounding of its entries (a factor 100 re-summed heavy rows at reg 0.1 and cost 1.3-1.4x at k = 64)
_F32_GUARD = 1.0
_EPS32 = float(np.finfo(np.float32).eps)

if numba_available:
    import numba
    from numba import prange

# numba's fallback "workqueue" threading layer aborts the process when two Python threads
# launch parallel regions at once; launches are serialised unless the layer is omp or tbb.
_LAUNCH_LOCK = threading.Lock()


@contextlib.contextmanager
def _parallel_region(n_threads):
    """Run a parallel kernel on ``n_threads`` numba threads (restored afterwards)."""
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel region has run yet
        layer = None
    previous = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(n_threads), numba.config.NUMBA_NUM_THREADS)))
    try:
        with contextlib.nullcontext() if layer in ("omp", "tbb") else _LAUNCH_LOCK:
            yield
    finally:
        numba.set_num_threads(previous)


def gram_min(k: int) -> int:
    """Fewest ratings for which a row takes the Gram route."""
    return max(1, int(np.ceil(GRAM_FRACTION * k)))


def row_cost(counts: np.ndarray, k: int) -> np.ndarray:
    """Estimated cost of each row (Gram ~ m k^2/2 + k^3/3, Woodbury ~ m^2 (m/3 + k)), float64."""
    n = counts.astype(np.float64)
    return np.where(counts >= gram_min(k), n * (k * k / 2) + k**3 / 3, n * n * (n / 3 + k) + k)


def row_order(counts: np.ndarray, k: int) -> np.ndarray:
    """Rows by decreasing estimated cost (:func:`row_cost`), for the round-robin threads.
    Only balances threads; results never depend on it."""
    cost = row_cost(counts, k)
    return np.argsort((-8 * np.log2(cost)).astype(np.int16), kind="stable").astype(np.int64)


_jit = njit(fastmath=True, nogil=True, error_model="numpy")


@_jit
def _gram_upper(Y, indices, s0, m, t, Ag, G, b, width):  # pragma: no cover - compiled
    """``G = A^T A`` on and above the diagonal (in ``G``'s dtype), ``b += A^T t`` (float64).

    ``A = Y[indices[s0:s0+m]]`` is gathered ``Ag.shape[0]`` rows at a time into ``Ag`` (its
    columns beyond ``k`` stay zero) and folded into ``G`` by ``tile_add`` over the 4 x
    ``width`` tiles that touch the upper triangle. ``G`` is ``k`` rounded up to ``width``.
    """
    k = Y.shape[1]
    kp = G.shape[0]
    block = Ag.shape[0]
    G[:, :] = 0
    for q0 in range(0, m, block):
        nb = min(block, m - q0)
        for p in range(nb):
            j = indices[s0 + q0 + p]
            tp = t[s0 + q0 + p]
            for a in range(k):
                y = Y[j, a]
                Ag[p, a] = y
                b[a] += np.float64(y) * tp
        for a0 in range(0, kp, 4):
            for c0 in range(a0 // width * width, kp, width):
                _simd.tile_add(Ag, 0, nb, a0, c0, G)


@_jit
def _extent(n):  # pragma: no cover - compiled
    """The columns :func:`_cholesky_solve` reads for an ``n x n`` system."""
    return ((n + 4) // 4 * 4 + 7) // 8 * 8


@_jit
def _clear_padding(S, n):  # pragma: no cover - compiled
    """Zero what :func:`_cholesky_solve` reads besides the matrix and column ``n``: the
    columns right of ``n`` up to :func:`_extent` (needed: they enter the padded vector
    operations), and the scratch left of each diagonal within its 8-column block and the
    padding rows up to ``n`` rounded up to 4 (kept zero so stale values cannot slow the
    arithmetic; they never reach the result)."""
    e = _extent(n)
    for a in range(n):
        for c in range(a // 8 * 8, a):
            S[a, c] = 0.0
        for c in range(n + 1, e):
            S[a, c] = 0.0
    for a in range(n, (n + 3) // 4 * 4):
        for c in range(e):
            S[a, c] = 0.0


@_jit
def _cholesky_solve(S, n, x, piv, floor):  # pragma: no cover - compiled
    """Solve an ``n x n`` SPD system by blocked Cholesky ``S = R^T R``; True when solved.

    ``S`` (float64, C-contiguous, at least ``n`` rounded up to 4 rows and :func:`_extent`
    columns) holds the matrix on and above the diagonal and the right-hand side in column
    ``n``, with :func:`_clear_padding`'s zeros. ``R`` overwrites the upper triangle and
    ``R^-T b`` column ``n``. Panels of 8 pivot rows are factorised by whole-vector row
    operations, the rest of the matrix updated by ``tile_sub``; back substitution runs
    four rows at a time. ``x`` (as long as ``S`` is wide) receives the solution, ``piv``
    the reciprocal pivots. False (``x`` undefined) when a squared pivot is not above
    ``floor``.
    """
    w = S.shape[1]
    ne = (n + 4) // 4 * 4  # columns with the right-hand side, in whole vectors
    nr = (n + 3) // 4 * 4
    for p0 in range(0, n, 8):
        pe = min(p0 + 8, n)
        for p in range(p0, pe):
            s = S[p, p]
            if not s > floor:
                return False
            inv = 1.0 / np.sqrt(s)
            c0 = p // 4 * 4
            # scaling row p from its vector start also turns S[p, p] into sqrt(s)
            _simd.row_scale(S, p * w + c0, S, 0, inv, (ne - c0) // 4)
            piv[p] = inv
            for q in range(p + 1, pe):
                cq = q // 4 * 4
                _simd.row_fnma(S, q * w + cq, S, p * w + cq, S[p, q], (ne - cq) // 4)
        if pe == n:  # the last panel: nothing left to update (and pe may be ragged)
            break
        for a0 in range(pe, nr, 4):  # pe is a multiple of 8 here: a0 + 4 <= nr
            for c0 in range(a0 // 8 * 8, ne, 8):
                _simd.tile_sub(S, p0, pe - p0, a0, c0, S)
    x[:] = 0.0
    for p0 in range(nr - 4, -1, -4):  # R x = y, four rows at a time
        c0 = p0 + 4
        nv = (nr - c0) // 4
        for p in range(min(p0 + 3, n - 1), p0 - 1, -1):
            t = S[p, n] - _simd.row_dot(x, c0, S, p * w + c0, 0.0, nv)
            for c in range(p + 1, min(c0, n)):
                t -= S[p, c] * x[c]
            x[p] = t * piv[p]
    return True


def _rows_kernel(order, n_chunks, width, g_min, indptr, indices, targets, Y, diag, extra, use_extra, gram0, rhs0,
            use_shared, scale, want_sse, sse_targets, out, sse, ok):  # pragma: no cover - compiled
    k = Y.shape[1]
    kp = (k + 7) // 8 * 8
    kg = (k + width - 1) // width * width
    block = max(8, 16384 // (kg * Y.itemsize))  # a gathered block fills half of L1
    eps32 = _EPS32
    wide = diag.shape[1] > 1  # else one regulariser for all k columns of the row
    for chunk in prange(n_chunks):
        Ag = np.zeros((block, kg), Y.dtype)
        G = np.empty((kg, kg), Y.dtype)
        Ag64 = np.zeros((max(8, 16384 // (kp * 8)), kp))  # float64 re-sum of float32 rows
        G64 = np.empty((kp, kp))
        S = np.zeros((kp, kp + 8))
        piv = np.empty(kp)
        A = np.empty((k, k))
        B = np.empty((k, k))
        b = np.empty(k)
        b2 = np.empty(k)
        ge = np.empty(k)
        d = np.empty(k)  # the row's regulariser
        x = np.empty(kp + 8)
        y = np.empty(kp + 8)
        acc = np.empty(sse_targets.shape[0])
        for q in range(chunk, order.shape[0], n_chunks):
            r = order[q]
            s0 = indptr[r]
            m = indptr[r + 1] - s0
            dmin = np.inf
            dmax = 0.0
            for a in range(k):
                d[a] = np.float64(diag[r, a if wide else 0])
                dmin = min(dmin, d[a])
                dmax = max(dmax, d[a])
                b[a] = extra[r, a] if use_extra else 0.0
            positive = dmin > 0
            # unregularised rows (plain ALS): the Gram route from k ratings, minimum norm below
            minnorm = dmax == 0 and not use_extra and not use_shared
            if m > 0 and (m >= k if minnorm else (use_shared or m >= g_min or not positive)) or (m == 0 and use_shared):
                _gram_upper(Y, indices, s0, m, targets, Ag, G, b, width)
                gmax = 0.0
                for a in range(k):
                    gmax = max(gmax, np.float64(G[a, a]))
                if Y.itemsize == 4 and m > 0 and dmin < _F32_GUARD * np.sqrt(m) * eps32 * gmax:
                    # the regulariser is below float32's rounding of this Gram: sum again in float64
                    _gram_upper(Y, indices, s0, m, targets, Ag64, G64, b2, 8)
                    for a in range(k):
                        S[a, a] = scale * G64[a, a] + d[a]
                        for c in range(a + 1, k):
                            S[a, c] = scale * G64[a, c]
                else:
                    for a in range(k):
                        S[a, a] = scale * np.float64(G[a, a]) + d[a]
                        for c in range(a + 1, k):
                            S[a, c] = scale * np.float64(G[a, c])
                top = 0.0
                for a in range(k):
                    if use_shared:
                        for c in range(a, k):
                            S[a, c] += gram0[a, c]
                        b[a] += rhs0[a]
                    top = max(top, S[a, a])
                    S[a, k] = b[a]
                _clear_padding(S, k)
                if not _cholesky_solve(S, k, x, piv, 0.0 if positive else 1e-12 * top):
                    ok[r] = False
                    continue
            elif m > 0:  # Woodbury (d > 0) or minimum norm (d = 0, no extra): an m x m system
                ident = 1.0 if positive else 0.0
                for a in range(k):
                    ge[a] = b[a] / d[a] if positive else 0.0
                for p in range(m):
                    j = indices[s0 + p]
                    t = targets[s0 + p]
                    for a in range(k):
                        v = np.float64(Y[j, a])
                        A[p, a] = v
                        B[p, a] = v / d[a] if positive else v
                        t -= v * ge[a]
                    S[p, m] = t  # the right-hand side t - A D^-1 e
                top = 0.0
                for p in range(m):
                    for q2 in range(p + 1):
                        s = 0.0
                        for a in range(k):
                            s += B[p, a] * A[q2, a]
                        S[q2, p] = s
                    S[p, p] += ident
                    top = max(top, S[p, p])
                _clear_padding(S, m)
                if not _cholesky_solve(S, m, y, piv, 0.0 if positive else 1e-12 * top):
                    ok[r] = False
                    continue
                for a in range(k):
                    s = ge[a]
                    for p in range(m):
                        s += B[p, a] * y[p]
                    x[a] = s
            else:
                for a in range(k):
                    x[a] = b[a] / d[a] if d[a] > 0 else 0.0
            for a in range(k):
                out[r, a] = x[a]
            if want_sse:
                acc[:] = 0.0
                for p in range(m):
                    j = indices[s0 + p]
                    pred = 0.0
                    for a in range(k):
                        pred += np.float64(Y[j, a]) * x[a]
                    for z in range(acc.shape[0]):
                        res = sse_targets[z, s0 + p] - pred
                        acc[z] += res * res
                for z in range(acc.shape[0]):
                    sse[r, z] = acc[z]


def _compiled(fn, name, **options):
    """``fn`` compiled under its own name (numba's on-disk cache keys kernels by qualified name
    and line, not by options: two compilations of one function must not share an entry)."""
    twin = types.FunctionType(fn.__code__, fn.__globals__, name, fn.__defaults__, fn.__closure__)
    twin.__qualname__ = name
    return njit(fastmath=True, error_model="numpy", **options)(twin)


# One source, two compilations: the rows over numba's threads (``prange`` over ``n_chunks``
# round-robin chunks of ``order``), and serial, releasing the GIL, for one block of rows
# per joblib task (``prange`` is ``range`` there; call it with ``n_chunks=1``).
_kernel = _compiled(_rows_kernel, "_kernel_prange", parallel=True)
_kernel_serial = _compiled(_rows_kernel, "_kernel_serial", nogil=True)


def _arguments(system, n_rows, k):
    """The kernel's arguments after ``order, n_chunks``, up to (not including) ``out``."""
    Y = np.ascontiguousarray(system.Y)
    diag = system.diag if system.diag is not None else np.zeros((n_rows, 1), Y.dtype)  # minimum norm
    use_extra = system.extra is not None
    use_shared = system.gram is not None
    return (
        16 if Y.dtype == np.float32 else 8,  # the SIMD tile's width
        gram_min(k),
        _index(system.indptr),
        _index(system.indices),
        _floats(system.targets),
        Y,
        np.ascontiguousarray(diag, dtype=Y.dtype),
        np.ascontiguousarray(system.extra, dtype=Y.dtype) if use_extra else np.zeros((1, k), Y.dtype),
        use_extra,
        np.ascontiguousarray(system.gram, dtype=np.float64) if use_shared else np.zeros((1, 1)),
        np.ascontiguousarray(system.rhs, dtype=np.float64) if use_shared else np.zeros(1),
        use_shared,
        float(system.scale),
    )


def solve(system, order, n_threads, out, sse):
    """Solve every row of ``system`` into ``out`` (and, when ``sse`` is an (n_rows, n_targets)
    array, each row's squared residuals against ``system.sse_targets``); returns the boolean
    mask of rows solved (the others are left for the reference). ``order``: :func:`row_order`."""
    n_rows, k = out.shape
    ok = np.ones(n_rows, dtype=bool)
    threads = max(1, min(int(n_threads), numba.config.NUMBA_NUM_THREADS, max(1, n_rows)))
    with _parallel_region(threads):
        _kernel(order, threads, *_arguments(system, n_rows, k), *_outputs(system, out, sse, ok))
    return ok


def solve_serial(system, rows, out, sse, ok, arguments=None):
    """Solve the rows ``rows`` of ``system`` on the calling thread, without the GIL: the
    same kernel as :func:`solve` (one source, compiled serially), for one block of a
    joblib-scheduled half-step. Writes ``out[rows]``, ``sse[rows]`` and ``ok[rows]`` (False
    where the reference must decide); other rows are untouched. ``arguments``:
    :func:`_arguments` once per half-step, shared by the blocks."""
    n_rows, k = out.shape
    if arguments is None:
        arguments = _arguments(system, n_rows, k)
    _kernel_serial(np.ascontiguousarray(rows, dtype=np.int64), 1, *arguments, *_outputs(system, out, sse, ok))
    return ok


def _outputs(system, out, sse, ok):
    """The kernel's last arguments: what it writes, and what the residuals are measured against."""
    return sse is not None, _floats(system.residual_targets()), out, sse if sse is not None else np.zeros((1, 1)), ok


def _floats(a):
    """``a`` itself when it is a contiguous float32/float64 array (no per-half-step copy)."""
    a = np.ascontiguousarray(a)
    return a if a.dtype in (np.float32, np.float64) else a.astype(np.float64)


def _index(a):
    a = np.ascontiguousarray(a)
    return a if a.dtype in (np.int32, np.int64) else a.astype(np.int64)
