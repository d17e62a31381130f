"""One ALS half-step as data (:class:`RowSystem`) and its solve: compiled, or the plain reference.

Every model of the ALS family reduces a half-step to one linear system per row ``i``
(a user, or an item) with observed columns ``J_i``, fixed factors ``Y`` and targets ``t_i``::

    (s Σ_{j ∈ J_i} y_j y_jᵀ + G0 + diag(d_i)) x_i = Σ_{j ∈ J_i} t_ij y_j + b0 + e_i      (1)

``diag(d_i)`` is the row's regulariser, ``e_i`` its own right-hand-side term (the social
pull), ``G0`` and ``b0`` a dense part shared by all rows (the missing-data term) and ``s``
the weight of the observed Gram matrix. ``d_i = None`` for all rows means *unregularised*:
each row gets the minimum-norm least-squares solution of ``A_i x ≈ t_i`` (plain ALS).

:func:`solve_rows` solves (1) with the compiled kernel (:mod:`socialals._kernels`) and
gives the rows it hands back, or all rows when the compiled path is off
(``socialals.config_context(compiled=False)``) or fails to compile, to
:func:`solve_reference`: a deliberately plain per-row solve, the oracle of the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from joblib import effective_n_jobs

from ._config import compiled_or_reference
from .exceptions import DivergenceError

__all__ = ["RowSystem", "solve_rows", "solve_reference", "check_finite"]


@dataclass
class RowSystem:
    """System (1) for every row of a CSR matrix (see the module docstring).

    ``indptr``/``indices`` give each row's observed columns of ``Y`` (n_other x kk, the
    computation's dtype), ``targets`` (float64, aligned with ``indices``) the ``t_ij``;
    ``diag`` is (n_rows, kk), (n_rows, 1) (one value for all kk columns) or None, ``extra``
    (n_rows, kk) or None; ``gram`` (kk x kk) and ``rhs`` (kk,)
    the shared ``G0``, ``b0`` or None; ``scale`` is ``s``. ``sse_targets`` (n_targets, nnz)
    are what the solved rows' residuals are measured against (``targets`` when None).
    """

    indptr: np.ndarray
    indices: np.ndarray
    targets: np.ndarray
    Y: np.ndarray
    diag: Optional[np.ndarray] = None
    extra: Optional[np.ndarray] = None
    gram: Optional[np.ndarray] = None
    rhs: Optional[np.ndarray] = None
    scale: float = 1.0
    sse_targets: Optional[np.ndarray] = None

    def residual_targets(self) -> np.ndarray:
        return self.targets[None] if self.sse_targets is None else self.sse_targets

    @property
    def n_rows(self) -> int:
        return len(self.indptr) - 1

    def row(self, i: int):
        """The dense matrix and right-hand side of row ``i`` (float64), and its ``A``, ``t``."""
        lo, hi = self.indptr[i], self.indptr[i + 1]
        A = self.Y[self.indices[lo:hi]].astype(np.float64)
        t = np.asarray(self.targets[lo:hi], dtype=np.float64)
        S = self.scale * (A.T @ A)
        b = A.T @ t
        if self.diag is not None:
            S[np.diag_indices_from(S)] += self.diag[i]
        if self.extra is not None:
            b += self.extra[i]
        if self.gram is not None:
            S += self.gram
            b += self.rhs
        return S, b, A, t


def solve_reference(system: RowSystem, rows: Optional[np.ndarray] = None, out=None, sse=None):
    """System (1) row by row with numpy: ``solve``; the minimum-norm solution (a
    pseudo-inverse) where the row is unregularised or its matrix singular."""
    k = system.Y.shape[1]
    rows = np.arange(system.n_rows) if rows is None else rows
    out = np.empty((system.n_rows, k), dtype=system.Y.dtype) if out is None else out
    goals = system.residual_targets()
    for i in rows:
        S, b, A, t = system.row(i)
        unregularised = (system.diag is None or not system.diag[i].any()) and system.extra is None and system.gram is None
        if unregularised and len(t) < k:  # minimum norm through the smaller Gram matrix A Aᵀ
            x = A.T @ (_pinv(A @ A.T) @ t)
        elif unregularised:
            x = _pinv(S) @ b
        else:
            try:
                x = np.linalg.solve(S, b)
            except np.linalg.LinAlgError:
                x = _pinv(S) @ b
        out[i] = x
        if sse is not None:
            pred = A @ x
            sse[i] = [float(np.sum((g[system.indptr[i] : system.indptr[i + 1]] - pred) ** 2)) for g in goals]
    return out


def _pinv(S):
    """Pseudo-inverse of a symmetric PSD matrix, dropping singular values below 1e-10 of the largest."""
    return np.linalg.pinv(S, rcond=1e-10, hermitian=True) if S.size else S


# systems this small run on the calling thread (:func:`solve_rows`)
_CALLING_THREAD_ROWS = 8
_CALLING_THREAD_RATINGS = 100_000


def solve_rows(system: RowSystem, order: np.ndarray, *, want_sse: bool = False, n_jobs=1, cache=None):
    """Solve (1) for every row: ``X`` (n_rows x kk, ``Y``'s dtype) and, when asked, each
    row's ``Σ_j (g_ij − y_jᵀ x_i)²`` (float64, n_rows x n_targets) for each row ``g`` of
    ``system.residual_targets()``. ``order`` is the rows' cost order
    (:func:`socialals._kernels.row_order`); results never depend on it, on ``n_jobs`` or
    on where the rows run (numba threads, joblib blocks, a Dask cluster: see
    :mod:`socialals._blocks`). ``cache``: a dict kept for one fit, where a cluster keeps
    what it has been sent (so ratings travel once per fit).

    Raises :class:`~socialals.DivergenceError` when a solution is not finite.
    """
    X = np.empty((system.n_rows, system.Y.shape[1]), dtype=system.Y.dtype)
    sse = np.zeros((system.n_rows, len(system.residual_targets()))) if want_sse else None

    def compiled():
        from . import _blocks, _kernels

        if system.n_rows <= _CALLING_THREAD_ROWS and len(system.indices) <= _CALLING_THREAD_RATINGS and cache is None:
            # a handful of rows (a fold-in): the calling thread, without asking joblib for a
            # backend and a thread count (results never depend on where rows run)
            ok = _kernels.solve_serial(system, order, X, sse, np.ones(system.n_rows, dtype=bool))
        else:
            route, backend = _blocks.active_route(n_jobs)
            if route == "prange":
                ok = _kernels.solve(system, order, effective_n_jobs(n_jobs), X, sse)
            else:
                ok = _blocks.solve_blocks(system, X, sse, n_jobs, route, backend, cache)
        if not ok.all():  # near-singular rows: the reference decides
            solve_reference(system, np.flatnonzero(~ok), X, sse)
        return X

    def reference():
        return solve_reference(system, None, X, sse)

    with np.errstate(all="ignore"):
        compiled_or_reference("als_half_step", compiled, reference)
    check_finite(X)
    return X, sse


def check_finite(X: np.ndarray, where: str = "") -> None:
    """:class:`~socialals.DivergenceError` when a half-step's solution ``X`` is not finite."""
    if not np.isfinite(X).all():
        bad = int((~np.isfinite(X).all(axis=1)).sum())
        raise DivergenceError(
            f"The ALS half-step produced non-finite factors for {bad} row(s){where}: the ratings or weights are "
            "too large for the chosen dtype, or the problem is badly scaled. Rescale the ratings, use "
            "dtype='float64' or a larger 'reg'.")
