"""The heavy maths of one ALS half-step: batched Gram assembly and batched solves.

For every row ``i`` of a sparse matrix (a user, or an item) with observed columns
``J_i`` (``n_i`` of them), fixed factors ``Y`` (n_other x k) and targets ``t_i`` this solves

    (A_i^T A_i + diag(d_i)) x_i = A_i^T t_i + e_i,        A_i = Y[J_i]          (1)

where ``d_i >= 0`` is the row's diagonal regulariser and ``e_i`` an extra right-hand side
(the social term). Rows are grouped so that numpy/LAPACK do the inner loops:

* ``n_i = 0``: ``x_i = e_i / d_i`` (0 where ``d_i = 0``).
* ``0 < n_i < k`` and ``d_i > 0``: the Woodbury form, an ``n_i x n_i`` system instead of
  ``k x k``:  ``x = g - D^-1 A^T (I + A D^-1 A^T)^-1 A g`` with ``g = D^-1 (A^T t + e)``.
  Rows of equal ``n_i`` are solved as one batch.
* otherwise the Gram path: rows are padded (with a zero factor row) to a length class
  ``L(n_i)`` from a fixed geometric grid, Gram matrices of a batch are built by one
  stacked ``matmul`` and solved by batched LU (``numpy.linalg.solve``; on 64 x 64 SPD
  systems it measured faster here than batched Cholesky followed by triangular solves,
  which numpy cannot batch).
* with numba installed, every row with ``d_i > 0`` is solved instead by a compiled
  kernel (:mod:`socialals._fused`): the same three cases (closed form, Woodbury, Gram)
  per row, with the Gram matrix summed by a register-blocked micro-kernel and a blocked
  in-place Cholesky, in parallel over rows and without joblib (3-4x faster on
  MovieLens-like data). A row whose Cholesky meets a non-positive pivot in rounding is
  handed back and solved here, robustly. Unregularised rows with ``n_i >= k`` go there
  too; the kernel hands back every one whose squared pivot falls below the singularity
  test used here (1e-12 of the largest diagonal entry).
* unregularised rows (``d_i = 0``, plain ALS) get the minimum-norm least-squares solution:
  ``pinv(A_i) t_i`` when ``n_i < k``, and a pseudo-inverse of the Gram matrix when a
  Cholesky test shows it singular. Never an exception, never NaN.

Every row's arithmetic depends only on its own data and its length class, never on which
batch or worker handled it, so results are bit-identical for any ``n_jobs``, batch size or
joblib backend.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs

from . import _fused
from .exceptions import DivergenceError

__all__ = ["solve_rows", "length_class"]

# Gram-path batches hold at most this many gathered factor entries (B * L * k).
_BATCH_ELEMENTS = 1 << 19
_PINV_RCOND = 1e-10
# Use the compiled per-row kernel (socialals._fused) when numba is
# installed. Tests switch it off to check the numpy path against the same references.
USE_COMPILED = _fused.AVAILABLE


def length_class(n: np.ndarray, k: int) -> np.ndarray:
    """Padded length for rows of ``n`` ratings: ``n`` rounded up on a ~12% geometric grid."""
    n = np.asarray(n, dtype=np.int64)
    out = np.maximum(n, k)
    big = out > 16
    # ceil to the grid 16 * 1.125**m, then to a multiple of 4
    m = np.ceil(np.log(out[big] / 16.0) / np.log(1.125) - 1e-9)
    grid = np.ceil(16.0 * 1.125**m / 4.0) * 4.0
    out[big] = np.maximum(grid.astype(np.int64), out[big])
    return out


def _gather(indptr, indices, targets, rows, L, pad_index):
    """Padded column indices (B, L) and targets (B, L) of ``rows``."""
    starts = indptr[rows]
    counts = indptr[rows + 1] - starts
    pos = np.arange(L)
    valid = pos[None, :] < counts[:, None]
    flat = np.where(valid, starts[:, None] + pos[None, :], 0)
    idx = np.where(valid, indices[flat], pad_index)
    t = np.where(valid, targets[flat], 0.0)
    return idx, t


def _task_zero(rows, diag, extra, k, dtype):
    if extra is None:
        x = np.zeros((len(rows), k), dtype=dtype)
    else:
        d = diag[rows]
        x = np.divide(extra[rows], d, out=np.zeros((len(rows), k), dtype=dtype), where=d > 0)
    return rows, x, np.zeros(len(rows))


def _task_woodbury(rows, n, indptr, indices, targets, Yx, diag, extra, want_sse):
    idx, t = _gather(indptr, indices, targets, rows, n, Yx.shape[0] - 1)
    A = Yx[idx]  # (B, n, k)
    t = t.astype(Yx.dtype)
    dinv = 1.0 / diag[rows]  # (B, k)
    h = _tmul(t, A)
    if extra is not None:
        h += extra[rows]
    g = dinv * h
    AD = A * dinv[:, None, :]  # A D^-1
    if n == 1:  # Sherman-Morrison, no LAPACK call per row
        a, ad = A[:, 0], AD[:, 0]
        z = np.einsum("bk,bk->b", a, g) / (1.0 + np.einsum("bk,bk->b", ad, a))
        x = g - ad * z[:, None]
    else:
        # tiny n: einsum beats one BLAS call per row; larger n: stacked matmul
        M = np.einsum("bik,bjk->bij", AD, A) if n < 8 else np.matmul(AD, A.transpose(0, 2, 1))
        M[:, np.arange(n), np.arange(n)] += 1.0
        rhs = np.einsum("bnk,bk->bn", A, g)
        z = _solve(M, rhs)
        x = g - _tmul(z, AD)
    sse = _sse(A, t, x) if want_sse else None
    return rows, x, sse


def _tmul(t, A):
    """``A_b^T t_b`` for every b: (B, n), (B, n, k) -> (B, k). (einsum is slow here for small n.)"""
    return np.matmul(t[:, None, :], A)[:, 0]


def _solve(M, rhs):
    """Batched solve; float32 systems are solved in float64 (faster and safer in LAPACK here)."""
    if M.dtype == np.float32:
        return np.linalg.solve(M.astype(np.float64), rhs.astype(np.float64)[..., None])[..., 0].astype(np.float32)
    return np.linalg.solve(M, rhs[..., None])[..., 0]


def _task_pinv_small(rows, n, indptr, indices, targets, Yx, want_sse):
    """Minimum-norm least squares for n < k: x = A^T (A A^T)^+ t."""
    idx, t = _gather(indptr, indices, targets, rows, n, Yx.shape[0] - 1)
    A = Yx[idx]
    t = t.astype(Yx.dtype)
    if n == 1:
        a = A[:, 0]
        nrm = np.einsum("bk,bk->b", a, a)
        scale = np.divide(t[:, 0], nrm, out=np.zeros_like(nrm), where=nrm > 0)
        x = a * scale[:, None]
    else:
        M = np.einsum("bik,bjk->bij", A, A) if n < 8 else np.matmul(A, A.transpose(0, 2, 1))
        x = _tmul(_robust_solve(M, t), A)
    sse = _sse(A, t, x) if want_sse else None
    return rows, x, sse


def _robust_solve(M, rhs):
    """Solve SPD systems; a singular or nearly singular one gets the pseudo-inverse solution.

    The decision is made per matrix (a Cholesky factor that fails or has a pivot below
    1e-12 of the largest diagonal entry), so it never depends on batch composition.
    """
    chol = getattr(getattr(np.linalg, "_umath_linalg", None), "cholesky_lo", None)
    ok = np.zeros(len(M), dtype=bool)
    if chol is not None:
        with np.errstate(all="ignore"):
            Lf = chol(M.astype(np.float64))
        d = np.diagonal(Lf, axis1=1, axis2=2) ** 2
        scale = np.diagonal(M, axis1=1, axis2=2).max(axis=1)
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(d).all(axis=1) & (d.min(axis=1) > 1e-12 * scale)
    x = np.empty(rhs.shape, dtype=rhs.dtype)
    if ok.any():
        x[ok] = _solve(M[ok], rhs[ok])
    bad = ~ok
    if bad.any():
        P = np.linalg.pinv(M[bad].astype(np.float64), _PINV_RCOND, hermitian=True)
        x[bad] = np.matmul(P, rhs[bad].astype(np.float64)[..., None])[..., 0]
    return x


def _task_gram(rows, L, indptr, indices, targets, Yx, diag, extra, want_sse, robust):
    idx, t = _gather(indptr, indices, targets, rows, L, Yx.shape[0] - 1)
    A = Yx[idx]  # (B, L, k), padded rows are zero
    t = t.astype(Yx.dtype)
    At = A.transpose(0, 2, 1)
    G = np.matmul(At, A)
    k = G.shape[-1]
    if diag is not None:
        G[:, np.arange(k), np.arange(k)] += diag[rows]
    b = _tmul(t, A)
    if extra is not None:
        b += extra[rows]
    x = _robust_solve(G, b) if robust else _solve(G, b)
    sse = _sse(A, t, x) if want_sse else None
    return rows, x, sse


def _sse(A, t, x):
    r = t - np.einsum("blk,bk->bl", A, x)
    return np.einsum("bl,bl->b", r, r, dtype=np.float64)


def _chunks(rows, per_row):
    """Split ``rows`` into consecutive chunks of at most ``_BATCH_ELEMENTS`` entries."""
    size = max(1, _BATCH_ELEMENTS // max(1, per_row))
    for s in range(0, len(rows), size):
        yield rows[s : s + size]


def solve_rows(
    indptr: np.ndarray,
    indices: np.ndarray,
    targets: np.ndarray,
    Y: np.ndarray,
    diag: Optional[np.ndarray] = None,
    extra: Optional[np.ndarray] = None,
    *,
    want_sse: bool = False,
    n_jobs: Optional[int] = 1,
):
    """Solve system (1) for every row of a CSR matrix.

    Parameters
    ----------
    indptr, indices : CSR structure (n_rows + 1,), (nnz,)
        Row ``i`` observes columns ``indices[indptr[i]:indptr[i+1]]`` of ``Y``.
    targets : ndarray (nnz,)
        ``t_i`` aligned with ``indices``.
    Y : ndarray (n_other, k)
        Fixed factors; its dtype is the computation's dtype.
    diag : ndarray (n_rows, k) or None
        Diagonal regulariser ``d_i >= 0``. ``None`` means unregularised (plain ALS):
        minimum-norm least squares.
    extra : ndarray (n_rows, k) or None
        Extra right-hand side ``e_i``.
    want_sse : bool
        Also return ``||t_i - A_i x_i||^2`` per row (float64).
    n_jobs : int or None
        joblib workers (threads preferred); results do not depend on it.

    Returns
    -------
    X : ndarray (n_rows, k)
    sse : ndarray (n_rows,) or None
    """
    n_rows = len(indptr) - 1
    n_other, k = Y.shape
    dtype = Y.dtype
    if diag is not None:
        diag = np.asarray(diag, dtype=dtype)
    if extra is not None:
        extra = np.asarray(extra, dtype=dtype)
    counts = np.diff(indptr)
    X = np.empty((n_rows, k), dtype=dtype)
    sse = np.zeros(n_rows) if want_sse else None
    # Rows with a positive regulariser: the compiled kernel (socialals._fused) when numba is
    # installed; it hands back the rows it could not factorise (see its module doc).
    # Unregularised rows with at least k observations go there too, with the numpy path's
    # test for a singular system (a squared pivot below 1e-12 of the largest diagonal entry):
    # those rows come back and get the minimum-norm solution below.
    compiled = np.zeros(n_rows, dtype=bool)
    if USE_COMPILED:
        compiled = (diag > 0).all(axis=1) if diag is not None else counts >= k
        if compiled.any():
            rows = np.flatnonzero(compiled)
            done = _fused.solve_rows_fused(
                rows, indptr, indices, targets, Y, diag if diag is not None else np.zeros((n_rows, k), dtype),
                extra, want_sse, effective_n_jobs(n_jobs), X, sse, pivot_tol=0.0 if diag is not None else 1e-12,
            )
            compiled[rows[~done]] = False
            if compiled.all():
                _check_finite(X)
                return X, sse

    Yx = np.zeros((n_other + 1, k), dtype=dtype)  # a zero factor row pads the gathers
    Yx[:n_other] = Y
    tasks = []
    zero = np.flatnonzero((counts == 0) & ~compiled)
    if len(zero):
        tasks.append(delayed(_task_zero)(zero, diag, extra, k, dtype))
    nz = counts > 0
    if diag is None:
        small = nz & (counts < k)
        robust_rows = np.flatnonzero((counts >= k) & ~compiled)
        for n in np.unique(counts[small]):
            rows = np.flatnonzero(small & (counts == n))
            for chunk in _chunks(rows, int(n) * k):
                tasks.append(delayed(_task_pinv_small)(chunk, int(n), indptr, indices, targets, Yx, want_sse))
        gram_rows, robust = robust_rows, True
    else:
        positive = (diag > 0).all(axis=1)
        small = nz & (counts < k) & positive & ~compiled
        for n in np.unique(counts[small]):
            rows = np.flatnonzero(small & (counts == n))
            for chunk in _chunks(rows, int(n) * k):
                tasks.append(
                    delayed(_task_woodbury)(chunk, int(n), indptr, indices, targets, Yx, diag, extra, want_sse)
                )
        gram_rows = np.flatnonzero(nz & ~small & ~compiled)
        # rows handed back by the compiled kernel are near-singular in rounding: robust
        robust = not positive[gram_rows].all() or (USE_COMPILED and len(gram_rows) > 0)
    if len(gram_rows):
        cls = length_class(counts[gram_rows], k)
        order = np.argsort(cls, kind="stable")
        gram_rows, cls = gram_rows[order], cls[order]
        bounds = np.flatnonzero(np.diff(cls)) + 1
        for rows, L in zip(np.split(gram_rows, bounds), cls[np.r_[0, bounds]]):
            for chunk in _chunks(rows, int(L) * k):
                tasks.append(
                    delayed(_task_gram)(chunk, int(L), indptr, indices, targets, Yx, diag, extra, want_sse, robust)
                )

    if n_jobs in (None, 1) or len(tasks) <= 1:
        results = (fn(*args, **kw) for fn, args, kw in tasks)
    else:
        results = Parallel(n_jobs=n_jobs, prefer="threads")(tasks)
    for rows, x, s in results:
        X[rows] = x
        if want_sse and s is not None:
            sse[rows] = s
    _check_finite(X)
    return X, sse


def _check_finite(X):
    if not np.isfinite(X).all():
        bad = int((~np.isfinite(X).all(axis=1)).sum())
        raise DivergenceError(
            f"The ALS half-step produced non-finite factors for {bad} row(s); the ratings or "
            "weights are too large for the chosen dtype, or the problem is badly scaled."
        )
