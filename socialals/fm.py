"""Factorization machines (Rendle, ICDM 2010): the degree-2 baseline.

The model
---------
For a feature vector ``x`` (n_features,) ::

    ŷ(x) = w0 + Σ_l w_l x_l + Σ_{l<m} ⟨v_l, v_m⟩ x_l x_m

computed in O(k · nnz(x)) as ``w0 + Σ_l w_l x_l + ½ Σ_f [(Σ_l v_lf x_l)² − Σ_l v_lf² x_l²]``.
Parameters: ``w0_`` (float), ``w_`` (n_features,), ``V_`` (n_features, k).

The objective
-------------
Both solvers minimise the same written objective over the n training rows ::

    L = Σ_i ℓ(ŷ(x_i), y_i) + ½ λ_0 c_0 w0² + ½ Σ_l c_l (λ_w w_l² + λ_V ‖v_l‖²)

with ``λ_w = reg_w`` (``reg`` when None), ``λ_V = reg_V`` (``reg`` when None),
``λ_0 = reg_w0``, the penalty weights

* ``reg_scaling="frequency"`` (default): ``c_l = n_l``, the number of training rows in
  which feature l is non-zero, and ``c_0 = n``. λ is a penalty *per occurrence*: what
  libFM's and fastFM's SGD apply at every visit of a feature, and for the factors the
  weighting of ALS-WR (Zhou et al., 2008). It measured clearly better than uniform
  weights on MovieLens-shaped data at k = 16 and 64 (``benchmarks/bench_fm.py``), and
  its λ does not need rescaling with the data size;
* ``reg_scaling="none"``: ``c_l = c_0 = 1``, one λ per parameter — the Gaussian-prior
  (MAP) form of libFM's ALS and MCMC;

and the losses

* ``"squared"``: ``ℓ = ½ (ŷ − y)²`` (ratings);
* ``"logistic"``: ``ℓ = log(1 + exp(−y ŷ))``, y in {−1, +1};
* ``"hinge"``: ``ℓ = max(0, 1 − y ŷ)``, y in {−1, +1}.

Labels given as {0, 1} are mapped to {−1, +1} internally; ``classes_`` keeps the caller's
coding. A feature that never occurs in the training rows keeps ``w_l = 0`` and
``v_l = 0`` (the minimiser of its penalty).

Solvers
-------
``solver="sgd"`` — stochastic gradient descent over mini-batches of rows. For a row,
``g = ∂ℓ/∂ŷ`` is ``ŷ − y`` (squared), ``−y (1 − σ(y ŷ))`` (logistic) or ``−y`` where
``y ŷ < 1`` else 0 (hinge), and ::

    ∂ŷ/∂w0 = 1,   ∂ŷ/∂w_l = x_l,   ∂ŷ/∂v_lf = x_l Σ_m v_mf x_m − v_lf x_l².

A batch is one pass of sparse products, no Python loop per row: ``XV = X_b V`` gives the
per-row factor sums, and the batch's gradient for the active features is
``X_bᵀ (g ∘ XV) − ((X_b∘X_b)ᵀ g) ∘ V`` (a scatter-add into the active rows only).
Gradients are **summed** over the batch, so ``learning_rate`` η is a per-sample step
whatever ``batch_size`` is (``batch_size=1`` is classic SGD; larger batches are much
faster here and converge about as well per epoch, measured).

*Damped step.* Summing c occurrences of a feature in one batch (``w0`` is in every row)
would multiply its step by c; every parameter block θ (``w0``, each ``w_l``, each vector
``v_l``) therefore takes the implicit-SGD-style step ::

    θ ← (θ (1 + ηκH) − η G) / (1 + ηκH + η λ m c_θ / n_θ)

where G is the batch's summed gradient, ``H = Σ_i ‖∂ŷ_i/∂θ‖²`` over the batch (for
``v_l`` its diagonal part ``Σ_i x_il² Σ_{m≠l} x_im² ‖v_m‖²``, exact for rows with two
features such as one-hot user + item), κ = 1 (squared, hinge) or ¼ (logistic) bounds
ℓ'', and m is θ's count in the batch. For one row and the squared loss this is exactly
the implicit (proximal) SGD step; for small ηH it is the plain step. Features that
occur in many rows of a batch cannot overshoot, so large batches are stable.

*Regularisation is applied to the features active in the batch, lazily and without
bias*: ``L`` is split over rows as ``Σ_i [ℓ_i + ½ Σ_{l ∈ x_i} λ c_l θ_l² / n_l]``, so an
occurrence of l carries ``c_l / n_l`` of its penalty (the last term of the denominator
above; ``m/n`` of it for ``w0``). Over an epoch every feature receives exactly its
penalty gradient ``λ c_l θ_l``, so SGD and ALS minimise the same ``L`` and the same
``reg`` means the same thing for both (tested). With ``reg_scaling="frequency"`` the
share is ``λ`` at every visit — libFM's SGD regularisation.

*Shuffling.* The rows are shuffled once at the start of ``fit`` and then, every epoch,
again in blocks of 32 consecutive rows (a new random block order from the model's
generator): every epoch visits the rows in a new order and batches mix different
blocks, at the cost of a block copy instead of a random gather of every row (which cost
as much as a whole epoch's arithmetic at k = 16).

*Compiled path.* With numba installed (a dependency), an epoch runs in one compiled
call (:mod:`socialals._fm_kernels`): per batch, one pass over its CSR rows computes
``ŷ``, ``g`` and each active feature's sums, then the damped steps above are applied
from the batch-start parameters — the same rows, batches, steps and divergence check as
the vectorised numpy kernel, which stays the reference and the fallback (the two agree
to floating-point summation order, tested for every loss). It runs on one thread, so
the fit does not depend on the number of threads; per-batch scipy overhead disappears
(about 2x faster per epoch on MovieLens-1M-shaped data, ``benchmarks/bench_fm.py``).

``loss_history_`` (SGD) is the progressive objective: the data term summed over the
epoch's batches as each is visited (before its own update), plus the penalty at the end
of the epoch — free to compute, slightly pessimistic. A non-finite value anywhere, or
an epoch objective above 100 times the initial one (estimated on a sample of rows),
raises :class:`~socialals.exceptions.DivergenceError` suggesting a lower
``learning_rate``. As for any SGD, the squared loss needs roughly η ‖x‖² < 1 per row;
the classification losses have bounded gradients and cannot explode.

``solver="als"`` — coordinate-wise alternating least squares for the squared loss
(Rendle, Gantner, Freudenthaler & Schmidt-Thieme, SIGIR 2011; libFM, Rendle 2012).
``ŷ`` is linear in every single parameter θ, ``ŷ_i = ŷ_i(θ=0) + θ h_i`` with
``h_i = ∂ŷ_i/∂θ``, so the optimum of ``L`` in θ alone is ::

    θ* = (θ Σ_i h_i² − Σ_i h_i e_i) / (Σ_i h_i² + λ_θ c_θ),      e_i = ŷ_i − y_i

after which ``e_i += (θ* − θ) h_i``. One iteration updates ``w0``, then every ``w_l``,
then for ``f = 1..k`` every ``v_lf`` (with the cache ``q_if = Σ_l v_lf x_il``, so
``h_i = x_il (q_if − v_lf x_il)`` and ``q_if += (θ* − θ) x_il``). Every step is an
exact minimisation, so ``L`` never rises (up to rounding; the residuals are recomputed
from scratch every 5 iterations so that rounding cannot accumulate).
``loss_history_`` is ``L`` after every iteration.

*Vectorisation*: features that never occur in the same row (a one-hot user block, a
one-hot item block) touch disjoint residuals, so updating all of them at once gives
exactly the sequential result. The columns are partitioned into such **groups** (pass
``groups`` to :meth:`FactorizationMachine.fit_matrix`, or they are detected: the
minimum partition into runs of adjacent columns, then runs that never share a row are
merged by greedy colouring of their co-occurrence graph); every group is one vectorised
step per factor. Features are visited group by group (groups ordered by their first
column, columns ascending within a group), which is column order whenever the groups
are contiguous blocks; a column that shares rows with its neighbours is a group of its
own, i.e. it is updated exactly and sequentially. The result equals scalar coordinate
descent in that order (tested against a one-parameter-at-a-time reference). Cost per
iteration: O(k · nnz) plus Python overhead per (factor, group); a group covering every
row sorted by its feature (the user block of rating data) uses ``repeat``/``reduceat``
instead of gathers and ``bincount``, and with exactly two such groups the cache q is not
needed at all (the "rest of q" of one group is the other group's part). With numba
installed, the factor step of a group that covers only some rows (the coloured groups of
friend columns of ``social_features=True``) runs compiled, in two fused passes over the
group's rows with the same sums and updates (about 2x faster per iteration with 10
friends per user on MovieLens-1M-shaped data); the numpy code is the reference and the
fallback (tests run both).

Two ways in
-----------
* :meth:`FactorizationMachine.fit_matrix` / :meth:`~FactorizationMachine.predict_matrix`
  on a design matrix (scipy sparse or dense), like any FM library.
* :meth:`FactorizationMachine.fit` on a rating DataFrame (the socialals contract): the
  design row of rating (u, i) is ``[one-hot u | one-hot i | social(u) | user features(u)
  | item features(i)]`` where ``social(u)`` puts ``w_uf / Σ_f' w_uf'`` on the column of
  each friend f of u (u's out-links in the social frame; 1/|F(u)| with unit weights),
  in a separate block of n_users columns (the FM way to use a trust graph, as implicit
  user features). Users known only through the graph are users of the model: their
  rows of the user block never occur in training (so their one-hot parameters are 0)
  and they are scored from their friends' columns. Because every feature belongs
  either to the user or to the item, the score decomposes as
  ``w0 + a_u + b_i + ⟨p_u, p_i⟩`` (``p_u`` the sum of the user-side ``x_l v_l``, ``a_u``
  the user side's linear and internal pairwise terms); :meth:`recommend` scores a block
  of users against all items with one matrix product and never builds a
  users x items design matrix. Social features multiply the design's non-zeros by about
  (2 + average out-degree) / 2, and the training time with them.
"""
from __future__ import annotations

import numbers
import time
import warnings
from typing import Callable, Optional

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.special import expit

from . import _fm_kernels
from .base import BaseRecommender, check_random_state
from .data import Dataset
from .exceptions import ConvergenceWarning, DataWarning, DivergenceError, NotFittedError

__all__ = ["FactorizationMachine"]

_LOSSES = ("squared", "logistic", "hinge")
_SOLVERS = ("sgd", "als")
_SCHEDULES = ("constant", "invscaling")
_REG_SCALINGS = ("frequency", "none")
# rows per chunk when predicting (bounds the (rows x k) temporary)
_PREDICT_CHUNK = 1 << 16
# greedy colouring of column runs is skipped when sum_rows nnz_row^2 exceeds this
_COLOR_BUDGET = 30_000_000
# an SGD epoch whose objective exceeds this multiple of the initial one has diverged
_EXPLODE_FACTOR = 100.0
# ALS recomputes the residuals from scratch every this many iterations
_ALS_RESYNC = 5
# SGD reshuffles the rows every epoch in blocks of this many (after one full shuffle)
_SHUFFLE_BLOCK = 32
# rows used to estimate the initial SGD objective (the divergence reference)
_L0_SAMPLE = 20_000
# Run SGD epochs with the compiled kernel (socialals._fm_kernels) when numba is installed.
# Tests switch it off to check that the numpy kernel (the reference) gives the same fit.
USE_COMPILED = _fm_kernels.AVAILABLE


# ====================================================================== losses
def _loss_values(loss: str, yhat: np.ndarray, y: np.ndarray) -> np.ndarray:
    """ℓ(ŷ, y) per row (y in {-1, +1} for the classification losses)."""
    if loss == "squared":
        d = yhat - y
        return 0.5 * d * d
    m = y * yhat
    if loss == "logistic":
        return np.logaddexp(0.0, -m)
    return np.maximum(0.0, 1.0 - m)


def _loss_derivative(loss: str, yhat: np.ndarray, y: np.ndarray) -> np.ndarray:
    """∂ℓ/∂ŷ per row."""
    if loss == "squared":
        return yhat - y
    m = y * yhat
    if loss == "logistic":
        return -y * expit(-m)
    return np.where(m < 1.0, -y, 0.0).astype(yhat.dtype, copy=False)


# ====================================================================== prediction
def _fm_decision(X: sp.csr_matrix, w0: float, w: np.ndarray, V: np.ndarray, chunk: int = _PREDICT_CHUNK) -> np.ndarray:
    """ŷ for every row of ``X`` in O(k · nnz), in chunks of rows."""
    n = X.shape[0]
    out = np.empty(n, dtype=np.float64)
    if V.shape[1]:
        vsq = np.einsum("ij,ij->i", V, V)
    for s in range(0, n, chunk):
        Xc = X[s : s + chunk]
        yc = Xc @ w + w0
        if V.shape[1]:
            XV = Xc @ V
            Xc2 = Xc.copy()
            Xc2.data = Xc2.data * Xc2.data
            yc = yc + 0.5 * (np.einsum("ij,ij->i", XV, XV) - Xc2 @ vsq)
        out[s : s + chunk] = yc
    return out


# ====================================================================== SGD kernel
try:  # scipy's C kernels for "sparse times dense", called without building matrix objects
    from scipy.sparse._sparsetools import csc_matvecs as _csc_matvecs
    from scipy.sparse._sparsetools import csr_matvecs as _csr_matvecs
except ImportError:  # pragma: no cover - depends on the scipy build
    _csr_matvecs = _csc_matvecs = None


def _spmm(n_row: int, n_col: int, indptr, indices, data, D: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out = A @ D`` for the CSR matrix ``A = (data, indices, indptr)`` of shape (n_row, n_col).

    ``D`` and ``out`` are C-contiguous and of ``data``'s dtype; ``out`` is overwritten.
    """
    if _csr_matvecs is not None:
        out.fill(0)
        _csr_matvecs(n_row, n_col, D.shape[1], indptr, indices, data, D.ravel(), out.ravel())
    else:  # pragma: no cover
        out[...] = sp.csr_matrix((data, indices, indptr), shape=(n_row, n_col)) @ D
    return out


def _spmm_t(n_row: int, n_col: int, indptr, indices, data, D: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out += Aᵀ @ D`` for the CSR matrix ``A = (data, indices, indptr)`` of shape
    (n_col, n_row) — the same arrays read as the CSC form of ``Aᵀ`` (a scatter-add)."""
    if _csc_matvecs is not None:
        _csc_matvecs(n_row, n_col, D.shape[1], indptr, indices, data, D.ravel(), out.ravel())
    else:  # pragma: no cover
        out += sp.csr_matrix((data, indices, indptr), shape=(n_col, n_row)).T @ D
    return out


class _Workspace:
    """Buffers of one SGD batch (sized for the largest batch), reused across batches."""

    def __init__(self, max_rows: int, max_nnz: int, n_features: int, k: int, dtype, itype):
        self.k = k
        self.XVe = np.empty((max_rows, k + 2), dtype=dtype)  # [XV | lin | Σx²‖v‖²]
        self.S = np.empty((max_nnz, k + 2), dtype=dtype)  # per active feature, see _sgd_batch
        self.ones = np.ones(max_nnz, dtype=dtype)
        self.arange = np.arange(max_nnz, dtype=itype)
        self.stamp = np.zeros(n_features, dtype=itype)  # scratch: never needs resetting
        self.local = np.zeros(n_features, dtype=itype)


class _Step:
    """Constants of the SGD step (see the module notes). ``share[l]`` is the fraction of
    feature l's penalty weight carried by each of its occurrences, ``c_l / n_l``."""

    __slots__ = ("eta", "kappa", "reg_w", "reg_V", "share")

    def __init__(self, eta, kappa, reg_w, reg_V, share):
        self.eta, self.kappa, self.reg_w, self.reg_V, self.share = eta, kappa, reg_w, reg_V, share


def _sgd_batch(ws: _Workspace, indptr, idx, val, rown, y, w0: float, P: np.ndarray, loss: str, step=None):
    """Forward and backward pass over one batch of rows — the SGD kernel.

    ``P`` is the (n_features, k + 2) parameter matrix ``[V | w | ‖v_l‖²]`` (the last
    column a cache). The batch is CSR (``indptr`` local to the batch and of ``idx``'s
    integer type, ``val`` None when every value is 1, ``rown`` the batch row of each
    non-zero).

    For every active feature l (``uq``, in order of last occurrence in the batch) let
    ``c_l`` be its count in the batch, ``gw_l = Σ_i g_i x_il``, ``gx2_l = Σ_i g_i
    x_il²`` and ``S1_l = Σ_i g_i x_il XV_i`` (sums over the batch rows i, ``g_i =
    ∂ℓ/∂ŷ_i``), so that the gradients of the batch's summed loss are ``∂/∂w_l = gw_l``
    and ``∂/∂v_l = S1_l − gx2_l v_l``; and the damping curvatures ``Hw_l = Σ_i x_il²``
    and ``HV_l = Σ_i x_il² Σ_{m≠l} x_im² ‖v_m‖²`` (the diagonal part of
    ``Σ_i ‖∂ŷ_i/∂v_l‖² = Σ_i x_il² ‖XV_i − x_il v_l‖²``, equal to it for rows with two
    non-zeros).

    * ``step=None``: returns ``(yhat, g, uq, gw, gV)`` with ``gV = S1 − gx2 v`` (for
      tests and :func:`_fm_gradient`).
    * ``step=_Step(...)``: applies, for every active θ (w_l, and v_l as a block), the
      damped step ``θ ← (θ (1 + ηκH) − η G) / (1 + ηκH + η λ m_l c_l / n_l)`` (m_l the
      count in the batch, c_l the penalty weight, n_l the count in the data) to ``P`` in
      place and returns ``(yhat, g)``. For ``v_l`` this is ``α_l v_l − β_l S1_l`` with
      ``α = (1 + ηκH + η gx2)/den`` and ``β = η/den``; the product that forms ``S1``
      starts from ``α v`` and carries ``−β`` in its values, so it yields the new rows.
    """
    k = ws.k
    B = len(indptr) - 1
    m = len(idx)
    n_feat = P.shape[0]
    dt = P.dtype
    x = ws.ones[:m] if val is None else val
    # ---- forward: one product gives XV, the linear term and (binary) Σ x² ‖v‖²
    XVe = _spmm(B, n_feat, indptr, idx, x, P, ws.XVe[:B])
    XV = XVe[:, :k]
    lin = XVe[:, k]
    if val is None:
        sq = XVe[:, k + 1]
    else:
        x2 = val * val
        sq = np.bincount(rown, x2 * P[idx, k + 1], minlength=B).astype(dt)
    xx = np.einsum("ij,ij->i", XV, XV)
    yhat = w0 + lin + 0.5 * (xx - sq)
    g = _loss_derivative(loss, yhat, y).astype(dt, copy=False)

    # ---- active features without sorting: the last write of stamp[l] marks one
    # representative non-zero per feature; local[] numbers the representatives
    pos = ws.arange[:m]
    ws.stamp[idx] = pos
    rep = np.flatnonzero(ws.stamp[idx] == pos)
    uq = idx[rep]
    na = len(uq)
    ws.local[uq] = ws.arange[:na]
    inv = ws.local[idx]

    gx = g[rown] if val is None else g[rown] * val
    gw = np.bincount(inv, gx, minlength=na)
    gx2 = gw if val is None else np.bincount(inv, gx * val, minlength=na)
    S = ws.S[:na]
    if step is None:
        S.fill(0)
        _spmm_t(na, B, indptr, inv, gx, XVe, S)
        gV = S[:, :k] - gx2[:, None] * P[uq, :k]
        return yhat, g, uq, gw, gV

    cnt = np.bincount(inv, minlength=na)
    Pu = np.take(P, uq, axis=0)
    # H_V,l = Σ_i x_il² (sq_i − x_il² ‖v_l‖²), sq_i = Σ_m x_im² ‖v_m‖²
    sq_nz = sq[rown]
    if val is None:
        Hw = cnt
        HV = np.bincount(inv, sq_nz, minlength=na) - cnt * Pu[:, k + 1]
    else:
        Hw = np.bincount(inv, x2, minlength=na)
        HV = np.bincount(inv, x2 * sq_nz, minlength=na) - np.bincount(inv, x2 * x2, minlength=na) * Pu[:, k + 1]
    np.maximum(HV, 0.0, out=HV)
    eta, ek = step.eta, step.eta * step.kappa
    frac = cnt * step.share[uq]
    # w: (w (1 + ηκ Hw) − η gw) / (1 + ηκ Hw + η λ_w c / n)
    dw = 1.0 + ek * Hw
    w_new = (Pu[:, k] * dw - eta * gw) / (dw + (eta * step.reg_w) * frac)
    # V: α v − β S1, formed by one scatter-add starting from α v
    dv = 1.0 + ek * HV
    den = dv + (eta * step.reg_V) * frac
    alpha = ((dv + eta * gx2) / den).astype(dt)
    beta = (eta / den).astype(dt)
    np.multiply(Pu, alpha[:, None], out=S)
    _spmm_t(na, B, indptr, inv, -(gx * beta[inv]), XVe, S)
    S[:, k] = w_new
    S[:, k + 1] = np.einsum("ij,ij->i", S[:, :k], S[:, :k])
    _as_records(P)[uq] = _as_records(S)  # row scatter, each row copied as one record
    return yhat, g


def _as_records(a: np.ndarray) -> np.ndarray:
    """A C-contiguous 2-D array seen as a 1-D array of row records (fast row scatter)."""
    return a.view(np.dtype((np.void, a.dtype.itemsize * a.shape[1]))).ravel()


def _param_matrix(w: np.ndarray, V: np.ndarray) -> np.ndarray:
    """``[V | w | ‖v_l‖²]`` as one C-contiguous (n_features, k + 2) array."""
    k = V.shape[1]
    P = np.empty((V.shape[0], k + 2), dtype=V.dtype)
    P[:, :k] = V
    P[:, k] = w
    P[:, k + 1] = np.einsum("ij,ij->i", V, V)
    return P


def _penalty_weights(X: sp.csr_matrix, scaling: str) -> tuple[np.ndarray, float]:
    """``(c, c0)``: the penalty is ``½ (λ_0 c0 w0² + Σ_l c_l (λ_w w_l² + λ_V ‖v_l‖²))``.

    ``"none"``: c = 1, c0 = 1. ``"frequency"``: c_l = n_l, the number of rows in which
    feature l is non-zero, and c0 = n (every row has the intercept).
    """
    if scaling == "frequency":
        return np.bincount(X.indices, minlength=X.shape[1]).astype(np.float64), float(X.shape[0])
    return np.ones(X.shape[1]), 1.0


def _penalty(w0, w, V, reg_w0, reg_w, reg_V, c, c0) -> float:
    """The penalty of the written objective (V as (n_features, k))."""
    w64 = w.astype(np.float64)
    vsq = np.einsum("ij,ij->i", V, V, dtype=np.float64)
    return 0.5 * (reg_w0 * c0 * float(w0) ** 2 + reg_w * float(c @ (w64 * w64)) + reg_V * float(c @ vsq))


def _fm_objective(X, y, w0, w, V, loss, reg_w0, reg_w, reg_V, scaling="none") -> float:
    """The written objective L (see the module docstring)."""
    X = sp.csr_matrix(X)
    c, c0 = _penalty_weights(X, scaling)
    yhat = _fm_decision(X, w0, w, V)
    return float(_loss_values(loss, yhat, y).sum()) + _penalty(w0, w, V, reg_w0, reg_w, reg_V, c, c0)


def _fm_gradient(X, y, w0, w, V, loss, reg_w0, reg_w, reg_V, scaling="none"):
    """∇L as ``(d w0, d w, d V)``; the data part by the SGD kernel on all rows as one batch."""
    X = sp.csr_matrix(X, dtype=V.dtype)
    X.sort_indices()
    n = X.shape[0]
    k = V.shape[1]
    c, c0 = _penalty_weights(X, scaling)
    binary = bool((X.data == 1).all())
    ws = _Workspace(n, max(X.nnz, 1), X.shape[1], k, V.dtype, np.int64)
    P = _param_matrix(w, V)
    _, g, uq, gw, gV = _sgd_batch(
        ws, X.indptr.astype(np.int64), X.indices.astype(np.int64), None if binary else X.data, _row_of_nnz(X), y, w0, P, loss
    )
    dw = reg_w * c * w.astype(np.float64)
    dw[uq] += gw
    dV = reg_V * c[:, None] * V.astype(np.float64)
    dV[uq] += gV
    return float(g.sum()) + reg_w0 * c0 * w0, dw, dV


# ====================================================================== groups
def _row_of_nnz(X: sp.csr_matrix) -> np.ndarray:
    return np.repeat(np.arange(X.shape[0], dtype=np.int64), np.diff(X.indptr))


def _contiguous_runs(X: sp.csr_matrix, n_features: int) -> np.ndarray:
    """Run id per column: the fewest runs of adjacent columns no row has twice."""
    idx = X.indices.astype(np.int64)
    row = _row_of_nnz(X)
    same = row[1:] == row[:-1]
    left, right = idx[:-1][same], idx[1:][same]  # consecutive non-zeros of a row
    cut = np.zeros(n_features, dtype=bool)
    if len(right):
        # for each right end r, the largest left end l: a cut is needed in (l, r]
        need = np.full(n_features, -1, dtype=np.int64)
        np.maximum.at(need, right, left)
        rs = np.flatnonzero(need >= 0)
        # greedy interval stabbing by right end gives the minimum number of cuts
        last_cut = 0
        for r, l in zip(rs.tolist(), need[rs].tolist()):
            if l >= last_cut:
                cut[r] = True
                last_cut = r
    return np.cumsum(cut).astype(np.int64)


def _greedy_colouring(C: sp.csr_matrix) -> np.ndarray:
    """Smallest-free-colour greedy colouring of the nodes of a symmetric pattern ``C``."""
    n = C.shape[0]
    colour = np.full(n, -1, dtype=np.int64)
    indptr, indices = C.indptr, C.indices
    for j in range(n):
        used = colour[indices[indptr[j] : indptr[j + 1]]]
        cap = len(used)  # with d neighbours one of the colours 0..d is free
        free = np.ones(cap + 1, dtype=bool)
        free[used[(used >= 0) & (used <= cap)]] = False
        colour[j] = int(np.argmax(free))
    return colour


def _colour_columns(P: sp.csr_matrix) -> Optional[np.ndarray]:
    """Colour the columns of a row pattern ``P`` so that no row has two columns of a
    colour, or None when the co-occurrence product would be too expensive."""
    P = sp.csr_matrix(P)
    nnz_row = np.diff(P.indptr).astype(np.int64)
    if int((nnz_row * nnz_row).sum()) > _COLOR_BUDGET:
        return None
    B = sp.csr_matrix((np.ones(P.nnz, dtype=np.float32), P.indices, P.indptr), shape=P.shape)
    C = (B.T @ B).tocsr()
    C.setdiag(0)
    C.eliminate_zeros()
    C.sort_indices()
    return _greedy_colouring(C)


def _detect_groups(X: sp.csr_matrix) -> np.ndarray:
    """Group id per column; columns of a group never share a row."""
    n_features = X.shape[1]
    runs = _contiguous_runs(X, n_features)
    n_runs = int(runs[-1]) + 1 if n_features else 0
    if n_runs <= 1:
        return runs
    row = _row_of_nnz(X)
    P = sp.csr_matrix((np.ones(X.nnz, dtype=np.float32), (row, runs[X.indices])), shape=(X.shape[0], n_runs))
    colour = _colour_columns(P)
    if colour is None:
        return runs
    return colour[runs]


def _check_groups(X: sp.csr_matrix, groups) -> np.ndarray:
    n_features = X.shape[1]
    g = np.asarray(groups)
    if g.shape != (n_features,) or not (np.issubdtype(g.dtype, np.integer) or g.dtype == bool) or (g.size and g.min() < 0):
        raise ValueError(
            f"'groups' must be an array of {n_features} non-negative ints (one group id per column of X); "
            f"got shape {g.shape} and dtype {g.dtype}."
        )
    g = g.astype(np.int64)
    if X.nnz:
        row = _row_of_nnz(X)
        key = row * (int(g.max()) + 1) + g[X.indices]
        order = np.argsort(key, kind="stable")
        dup = np.flatnonzero(key[order][1:] == key[order][:-1])
        if len(dup):
            a, b = order[dup[0]], order[dup[0] + 1]
            raise ValueError(
                f"'groups': group {int(g[X.indices[a]])} has two columns ({int(X.indices[a])} and "
                f"{int(X.indices[b])}) that are both non-zero in row {int(row[a])}; the columns of a group "
                f"must never share a row (in {len(dup)} place(s)). Split the group or pass groups=None."
            )
    return g


class _Group:
    """One vectorised ALS step: features that never share a row."""

    __slots__ = ("cols", "rows", "loc", "x", "x2sum", "starts", "counts", "n", "lam_w", "lam_V")

    def __init__(self, cols, rows, loc, x, x2sum, starts, counts):
        self.cols = cols  # feature indices (n,)
        self.rows = rows  # rows with a non-zero in the group (ascending), None = every row
        self.loc = loc  # local feature index per such row
        self.x = x  # value per such row, None when all are 1
        self.x2sum = x2sum  # Σ_i x_il² per feature (float64)
        self.starts = starts  # segment starts when loc is sorted, else None
        self.counts = counts  # rows per feature
        self.n = len(cols)

    def segsum(self, values: np.ndarray) -> np.ndarray:
        """Σ of ``values`` over each feature's rows (float64)."""
        if self.starts is not None:
            return np.add.reduceat(values, self.starts, dtype=np.float64)
        return np.bincount(self.loc, values, minlength=self.n)

    def expand(self, values: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
        """``values[loc]``: one value per row of the group (into ``out`` when it is used)."""
        if self.starts is not None:
            return np.repeat(values, self.counts)
        return np.take(values, self.loc, out=out)


def _build_groups(X: sp.csr_matrix, groups: np.ndarray) -> list:
    n = X.shape[0]
    p = X.shape[1]
    if X.nnz == 0:
        return []
    row = _row_of_nnz(X)
    col = X.indices.astype(np.intp)
    g_nnz = groups[col]
    small = np.int16 if int(groups.max(initial=0)) < 2**15 else np.int64  # radix sort for small ids
    order = np.argsort(g_nnz.astype(small), kind="stable")  # rows stay ascending within a group
    g_sorted = g_nnz[order]
    bounds = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1], True])
    out = []
    present = np.zeros(p, dtype=bool)
    for a, b in zip(bounds[:-1], bounds[1:]):
        sel = order[a:b]
        rows = row[sel]
        cols_nz = col[sel]
        x = X.data[sel]
        present[:] = False
        present[cols_nz] = True
        cols = np.flatnonzero(present)
        loc = (np.cumsum(present) - 1)[cols_nz].astype(np.intp)
        x2sum = np.bincount(loc, x.astype(np.float64) ** 2, minlength=len(cols))
        full = len(rows) == n
        starts = None
        if len(loc) and (np.diff(loc) >= 0).all():
            starts = np.flatnonzero(np.r_[True, loc[1:] != loc[:-1]])
        out.append(
            _Group(
                cols=cols,
                rows=None if full else rows,
                loc=loc,
                x=None if (x == 1).all() else x,
                x2sum=x2sum,
                starts=starts,
                counts=np.bincount(loc, minlength=len(cols)),
            )
        )
    out.sort(key=lambda grp: int(grp.cols[0]))
    return out


def _cd_value(old: np.ndarray, A: np.ndarray, Bsum: np.ndarray, lam) -> np.ndarray:
    """The coordinate optimum (old·A − B)/(A + λ), 0 where A + λ = 0 (λ scalar or per feature)."""
    den = A + lam
    num = old * A - Bsum
    out = np.zeros_like(num)
    np.divide(num, den, out=out, where=den > 0)
    return out


# ====================================================================== the estimator
class FactorizationMachine(BaseRecommender):
    """Degree-2 factorization machine with SGD or coordinate-wise ALS.

    See the module docstring (:mod:`socialals.fm`) for the model, the exact objective
    and the solvers. With numba installed, SGD epochs run in a compiled single-threaded
    kernel that makes exactly the updates of the numpy kernel (the fallback without
    numba), so results do not depend on which is used beyond floating-point rounding.

    Parameters
    ----------
    factors : int, default 8
        Latent dimension k of the pairwise interactions.
    loss : {"squared", "logistic", "hinge"}, default "squared"
        ``"squared"`` for ratings; the others for binary labels ({-1, +1} or {0, 1}).
    solver : {"sgd", "als"}, default "sgd"
        ``"als"`` supports the squared loss only.
    iterations : int, default 30
        Epochs (SGD) or sweeps over all parameters (ALS).
    learning_rate : float, default 0.03
        Per-sample SGD step η (gradients are summed over a batch, with damping).
    batch_size : int, default 1024
        Rows per SGD step; 1 is classic SGD. A speed knob more than a statistical one
        (about 1024-2048 is fastest at k = 64, 4096 at k = 16 on 1M rows with the numpy
        kernel; the compiled kernel, used when numba is installed, is nearly insensitive
        to it).
    schedule : {"constant", "invscaling"}, default "constant"
        ``"invscaling"`` uses ``η / (1 + epoch)**power_t`` in epoch ``epoch`` (0-based).
    power_t : float, default 0.5
        Exponent of ``"invscaling"``.
    reg : float, default 0.05
        λ of the penalty on ``w`` and ``V`` (per occurrence with the default
        ``reg_scaling``; see the module notes).
    reg_w, reg_V : float or None, default None
        Separate λ for ``w`` and ``V``; None uses ``reg``.
    reg_w0 : float, default 0
        λ on the global bias ``w0``.
    reg_scaling : {"frequency", "none"}, default "frequency"
        Penalty weight of a parameter: the number of training rows its feature occurs
        in (λ per occurrence, libFM-SGD / ALS-WR style), or 1 (λ per parameter, libFM
        ALS / MCMC style).
    social_features : bool, default True
        In :meth:`fit`, add each user's friends (out-links, weights normalised to sum
        to 1) as a block of n_users features when a social frame is given.
    tol : float, default 0
        Stop when an epoch / iteration lowers the objective by at most ``tol`` times
        its previous value; 0 runs every iteration.
    random_state : None, int or numpy.random.Generator
        Seeds the initial ``V`` (normal, standard deviation ``init_scale``) and the SGD
        shuffles.
    dtype : {"float64", "float32"}, default "float64"
        Precision of the parameters and of the arithmetic (float32 is faster, and
        ALS's monotonicity then only holds to float32 rounding).
    init_scale : float, default 0.1
        Standard deviation of the initial ``V``. ``w`` starts at 0 and ``w0`` at the
        loss-optimal constant (the mean target for the squared loss, the log-odds of
        the positive rate for the logistic loss, 0 for the hinge loss).
    callback : callable(model, iteration, loss) -> bool or None, optional
        Called after every epoch / iteration with the fitted state so far (``predict``
        works inside it); returning True stops.

    Attributes
    ----------
    w0_ : float
    w_ : ndarray (n_features,)
    V_ : ndarray (n_features, factors)
    n_features_in_ : int
    classes_ : ndarray of 2 labels
        Classification losses only: the caller's (negative, positive) label coding.
    loss_history_ : ndarray
        The objective after every epoch / iteration.
    n_iter_ : int
    fit_seconds_ : float
        Wall time of the epochs / iterations.
    groups_ : ndarray (n_features,)
        ALS only: the group of every column (columns of a group never share a row).
    users_, items_ : pandas.Index
        After :meth:`fit` only, as for every socialals model.
    feature_blocks_ : dict of str -> [start, stop]
        After :meth:`fit` only: the column range of each design block (``"user"``,
        ``"item"``, and when present ``"social"``, ``"user_features"``,
        ``"item_features"``).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from socialals.fm import FactorizationMachine
    >>> X = sp.csr_matrix(np.array([[1, 0, 1, 0], [1, 0, 0, 1], [0, 1, 1, 0], [0, 1, 0, 1]], float))
    >>> y = np.array([5.0, 3.0, 4.0, 1.0])
    >>> fm = FactorizationMachine(factors=2, solver="als", reg=0.001, iterations=50, random_state=0)
    >>> fm.fit_matrix(X, y).predict_matrix(X).round(1).tolist()
    [5.0, 3.0, 4.0, 1.0]
    """

    _include_social_users = True
    # what save() must keep besides the public learned attributes (see _persistence)
    _saved_private_attributes = ("_entity_ZU", "_entity_ZI", "_entity_meta")

    def __init__(
        self,
        factors: int = 8,
        loss: str = "squared",
        solver: str = "sgd",
        iterations: int = 30,
        learning_rate: float = 0.03,
        batch_size: int = 1024,
        schedule: str = "constant",
        power_t: float = 0.5,
        reg: float = 0.05,
        reg_w: Optional[float] = None,
        reg_V: Optional[float] = None,
        reg_w0: float = 0.0,
        reg_scaling: str = "frequency",
        social_features: bool = True,
        tol: float = 0.0,
        random_state=None,
        dtype: str = "float64",
        init_scale: float = 0.1,
        callback: Optional[Callable] = None,
    ):
        self.factors = factors
        self.loss = loss
        self.solver = solver
        self.iterations = iterations
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.schedule = schedule
        self.power_t = power_t
        self.reg = reg
        self.reg_w = reg_w
        self.reg_V = reg_V
        self.reg_w0 = reg_w0
        self.reg_scaling = reg_scaling
        self.social_features = social_features
        self.tol = tol
        self.random_state = random_state
        self.dtype = dtype
        self.init_scale = init_scale
        self.callback = callback

    # ------------------------------------------------------------------ validation
    def _validate_params(self) -> None:
        self._check_int("factors", 1)
        self._check_choice("loss", _LOSSES)
        self._check_choice("solver", _SOLVERS)
        self._check_int("iterations", 1)
        lr = self.learning_rate
        if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not np.isfinite(lr) or lr <= 0:
            raise self._bad_param("learning_rate", "a float > 0")
        self._check_int("batch_size", 1)
        self._check_choice("schedule", _SCHEDULES)
        self._check_float("power_t", 0.0)
        self._check_float("reg", 0.0)
        for name in ("reg_w", "reg_V"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Real) or not np.isfinite(v) or v < 0):
                raise self._bad_param(name, "None or a float >= 0")
        self._check_float("reg_w0", 0.0)
        self._check_choice("reg_scaling", _REG_SCALINGS)
        self._check_bool("social_features")
        self._check_float("tol", 0.0)
        self._check_dtype()
        self._check_float("init_scale", 0.0)
        if self.callback is not None and not callable(self.callback):
            raise self._bad_param("callback", "None or a callable(model, iteration, loss)")
        if self.solver == "als" and self.loss != "squared":
            raise ValueError(
                f"solver='als' of FactorizationMachine minimises the squared loss only; got loss={self.loss!r}. "
                "Use solver='sgd' for the hinge and logistic losses."
            )
        check_random_state(self.random_state)

    def _regs(self) -> tuple[float, float, float]:
        reg = float(self.reg)
        rw = reg if self.reg_w is None else float(self.reg_w)
        rv = reg if self.reg_V is None else float(self.reg_V)
        return float(self.reg_w0), rw, rv

    # ------------------------------------------------------------------ targets
    def _encode_target(self, y: np.ndarray) -> np.ndarray:
        if self.loss == "squared":
            self.__dict__.pop("classes_", None)
            return y.astype(np.float64)
        vals = np.unique(y)
        if len(vals) == 2 and set(vals.tolist()) == {-1.0, 1.0}:
            classes = np.array([-1, 1])
        elif len(vals) == 2 and set(vals.tolist()) == {0.0, 1.0}:
            classes = np.array([0, 1])
        else:
            shown = ", ".join(f"{v:g}" for v in vals[:6]) + (", ..." if len(vals) > 6 else "")
            raise ValueError(
                f"loss={self.loss!r} needs binary labels, coded {{-1, +1}} or {{0, 1}} with both classes "
                f"present; got {len(vals)} distinct value(s): {shown}."
            )
        self.classes_ = classes
        return np.where(y == classes[1], 1.0, -1.0)

    def _initial_w0(self, y: np.ndarray) -> float:
        if self.loss == "squared":
            return float(y.mean())
        if self.loss == "logistic":
            p = float(np.clip((y > 0).mean(), 1e-3, 1 - 1e-3))
            return float(np.log(p / (1 - p)))
        return 0.0

    # ------------------------------------------------------------------ matrix API
    def fit_matrix(self, X, y, *, groups=None) -> "FactorizationMachine":
        """Fit on a design matrix.

        Parameters
        ----------
        X : scipy sparse matrix or array-like, shape (n_samples, n_features)
            Feature values (converted to CSR of ``dtype``); every value finite.
        y : array-like, shape (n_samples,)
            Targets: ratings for the squared loss, labels {-1, +1} or {0, 1} otherwise.
        groups : array-like of int, shape (n_features,), optional
            ALS only: a group id per column; the columns of a group must never be
            non-zero in the same row (one-hot blocks), and each group is updated as one
            vectorised step. None detects groups (see the module docstring).

        Returns
        -------
        self
        """
        self._validate_params()
        dt = self._check_dtype()
        X = self._check_X(X, dt, "X")
        y = self._check_y(y, X.shape[0])
        if groups is not None:
            groups = _check_groups(X, groups)
        for attr in ("users_", "items_", "columns_", "rating_mean_", "_seen", "feature_blocks_", "_parts") + self._saved_private_attributes:
            self.__dict__.pop(attr, None)
        rng = check_random_state(self.random_state)
        self._train(X, self._encode_target(y), groups, rng)
        return self

    @staticmethod
    def _check_X(X, dt, name: str) -> sp.csr_matrix:
        if sp.issparse(X):
            X = sp.csr_matrix(X, dtype=dt)
            data = X.data
        else:
            try:
                arr = np.asarray(X, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"'{name}' must be a numeric 2-D array or scipy sparse matrix: {exc}") from None
            if arr.ndim != 2:
                raise ValueError(f"'{name}' must be 2-D (n_samples, n_features); got shape {arr.shape}.")
            data = arr
            X = sp.csr_matrix(arr, dtype=dt)
        if X.ndim != 2:
            raise ValueError(f"'{name}' must be 2-D (n_samples, n_features); got shape {X.shape}.")
        if not np.isfinite(data).all():
            raise ValueError(f"'{name}' has {int((~np.isfinite(data)).sum())} NaN or infinite value(s).")
        if X.shape[0] == 0 or X.shape[1] == 0:
            raise ValueError(f"'{name}' is empty (shape {X.shape}); at least one row and one column are needed.")
        X.sum_duplicates()
        X.eliminate_zeros()
        X.sort_indices()
        return X

    @staticmethod
    def _check_y(y, n: int) -> np.ndarray:
        try:
            y = np.asarray(y, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"'y' must be numeric: {exc}") from None
        if y.ndim != 1 or len(y) != n:
            raise ValueError(f"'y' must be 1-D with one value per row of X ({n}); got shape {y.shape}.")
        if not np.isfinite(y).all():
            raise ValueError(f"'y' has {int((~np.isfinite(y)).sum())} NaN or infinite value(s).")
        return y

    def _check_matrix_fitted(self) -> None:
        if not hasattr(self, "V_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet; call fit() or fit_matrix() first."
            )

    def decision_function_matrix(self, X) -> np.ndarray:
        """Raw model output ŷ for every row of a design matrix (float64)."""
        self._check_matrix_fitted()
        X = self._check_X(X, self.V_.dtype, "X")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"'X' has {X.shape[1]} columns; the model was fitted on {self.n_features_in_}.")
        return _fm_decision(X, self.w0_, self.w_, self.V_)

    def predict_matrix(self, X) -> np.ndarray:
        """Predictions for a design matrix: ŷ (squared loss) or labels in ``classes_``."""
        return self._to_labels(self.decision_function_matrix(X))

    def predict_proba_matrix(self, X) -> np.ndarray:
        """Logistic loss only: (n, 2) probabilities of ``classes_``."""
        self._require_logistic()
        return self._proba(self.decision_function_matrix(X))

    def _to_labels(self, s: np.ndarray) -> np.ndarray:
        if self.loss == "squared" or not hasattr(self, "classes_"):
            return s
        return np.where(s >= 0, self.classes_[1], self.classes_[0])

    def _require_logistic(self) -> None:
        if self.loss != "logistic":
            raise AttributeError(f"predict_proba needs loss='logistic'; this model has loss={self.loss!r}.")

    @staticmethod
    def _proba(s: np.ndarray) -> np.ndarray:
        p = expit(s)
        return np.column_stack([1.0 - p, p])

    # ------------------------------------------------------------------ DataFrame API
    def fit(
        self,
        ratings,
        social=None,
        *,
        user_features: Optional[pd.DataFrame] = None,
        item_features: Optional[pd.DataFrame] = None,
        user_labels=None,
        item_labels=None,
        user_col: str = "user",
        item_col: str = "item",
        rating_col: str = "rating",
        friend_col: str = "friend",
        weight_col: str = "weight",
    ) -> "FactorizationMachine":
        """Fit on a rating (or label) DataFrame.

        Parameters
        ----------
        ratings : DataFrame or scipy.sparse matrix
            ``user, item, rating`` rows (for the classification losses the rating column
            holds the labels), or a sparse user x item matrix (see
            :meth:`BaseRecommender.fit`).
        social : DataFrame, optional
            ``user, friend[, weight]`` links. With ``social_features=True`` each user's
            out-links become a normalised block of features; users known only through
            the graph are users of the model (scored from their friends' features).
        user_features, item_features : DataFrame, optional
            Numeric side features indexed by user / item label (one row per label).
            Known users or items without a row get zeros (with a DataWarning).
        user_labels, item_labels : array-like, optional
            Labels of the rows and columns of a sparse ``ratings`` (and of a sparse
            ``social``), as in :meth:`BaseRecommender.fit`.
        user_col, item_col, rating_col, friend_col, weight_col : str
            Column names, remembered for :meth:`predict`.

        Returns
        -------
        self
        """
        self._side = (user_features, item_features)
        try:
            super().fit(
                ratings,
                social,
                user_labels=user_labels,
                item_labels=item_labels,
                user_col=user_col,
                item_col=item_col,
                rating_col=rating_col,
                friend_col=friend_col,
                weight_col=weight_col,
            )
        finally:
            self.__dict__.pop("_side", None)
        return self

    def _fit(self, data: Dataset, rng: np.random.Generator) -> None:
        dt = self._check_dtype()
        user_features, item_features = self._side
        n_users, n_items = data.n_users, data.n_items
        blocks = {"user": slice(0, n_users), "item": slice(n_users, n_users + n_items)}
        pos = n_users + n_items
        u_extra, i_extra = [], []
        if self.social_features and data.has_social:
            S = sp.csr_matrix(
                (data.social_weight, (data.social_src, data.social_dst)), shape=(n_users, n_users)
            )
            deg = np.asarray(S.sum(axis=1)).ravel()
            inv = np.divide(1.0, deg, out=np.zeros_like(deg), where=deg > 0)
            S = sp.csr_matrix(sp.diags(inv) @ S, dtype=dt)
            S.eliminate_zeros()
            u_extra.append(S)
            blocks["social"] = slice(pos, pos + n_users)
            pos += n_users
        if user_features is not None:
            F = self._side_matrix(user_features, data.users, "user_features", dt)
            u_extra.append(F)
            blocks["user_features"] = slice(pos, pos + F.shape[1])
            pos += F.shape[1]
        if item_features is not None:
            F = self._side_matrix(item_features, data.items, "item_features", dt)
            i_extra.append(F)
            blocks["item_features"] = slice(pos, pos + F.shape[1])
            pos += F.shape[1]
        ZUx = sp.hstack(u_extra, format="csr", dtype=dt) if u_extra else None
        ZIx = sp.hstack(i_extra, format="csr", dtype=dt) if i_extra else None
        u_start = n_users + n_items
        i_start = u_start + (ZUx.shape[1] if ZUx is not None else 0)

        R = data.R
        row_u = _row_of_nnz(R)
        col_i = R.indices.astype(np.int64)
        X = self._design(row_u, col_i, n_users, n_items, ZUx, ZIx, dt)

        # Groups: the two one-hot blocks, then the extra user-side (item-side) columns
        # coloured by co-occurrence among rated users (rated items): two such columns
        # share a design row iff some rated user (item) has both non-zero.
        groups = np.zeros(X.shape[1], dtype=np.int64)
        groups[blocks["item"]] = 1
        next_id = 2
        sides = (
            (ZUx, u_start, np.flatnonzero(np.diff(R.indptr) > 0)),
            (ZIx, i_start, np.flatnonzero(np.diff(data.Rt.indptr) > 0)),
        )
        for Z, start, rated in sides:
            if Z is None:
                continue
            colour = _colour_columns(Z[rated])
            if colour is None:  # too dense to colour cheaply: one column per group
                colour = np.arange(Z.shape[1])
            groups[start : start + Z.shape[1]] = next_id + colour
            next_id += int(colour.max()) + 1

        self.feature_blocks_ = {name: [int(b.start), int(b.stop)] for name, b in blocks.items()}
        self._entity_ZU, self._entity_ZI = ZUx, ZIx
        self._entity_meta = {"n_users": int(n_users), "n_items": int(n_items), "u_start": int(u_start), "i_start": int(i_start)}
        y = self._encode_target(R.data.astype(np.float64))
        self._train(X, y, groups, rng)

    @staticmethod
    def _design(row_u, col_i, n_users, n_items, ZUx, ZIx, dt) -> sp.csr_matrix:
        n = len(row_u)
        onehot = sp.csr_matrix(
            (np.ones(2 * n, dtype=dt), np.column_stack([row_u, n_users + col_i]).ravel(), np.arange(0, 2 * n + 1, 2)),
            shape=(n, n_users + n_items),
        )
        parts = [onehot]
        if ZUx is not None:
            parts.append(ZUx[row_u])
        if ZIx is not None:
            parts.append(ZIx[col_i])
        X = sp.hstack(parts, format="csr", dtype=dt) if len(parts) > 1 else onehot
        X.sort_indices()
        return X

    @staticmethod
    def _side_matrix(frame, labels: pd.Index, name: str, dt) -> sp.csr_matrix:
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"'{name}' must be a pandas DataFrame indexed by label; got {type(frame).__name__}.")
        if frame.shape[1] == 0:
            raise ValueError(f"'{name}' has no columns.")
        if not frame.index.is_unique:
            dup = frame.index[frame.index.duplicated()].unique()[:5].tolist()
            raise ValueError(f"'{name}' has duplicate index label(s) {dup}; one row per label is needed.")
        bad_cols = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
        if bad_cols:
            raise ValueError(f"'{name}' column(s) {bad_cols[:5]} are not numeric.")
        values = frame.to_numpy(dtype=np.float64)
        if not np.isfinite(values).all():
            raise ValueError(f"'{name}' has {int((~np.isfinite(values)).sum())} NaN or infinite value(s).")
        pos = frame.index.get_indexer(labels)
        missing = int((pos < 0).sum())
        if missing:
            warnings.warn(
                f"{name}: {missing} of {len(labels)} known label(s) have no row; their features are 0.",
                DataWarning,
                stacklevel=4,
            )
        M = np.zeros((len(labels), values.shape[1]), dtype=np.float64)
        M[pos >= 0] = values[pos[pos >= 0]]
        return sp.csr_matrix(M, dtype=dt)

    # ------------------------------------------------------------------ scoring (DataFrame API)
    def _entity_parts(self):
        """(a, P_U, b, P_I) with ŷ(u, i) = w0 + a_u + b_i + ⟨P_U[u], P_I[i]⟩.

        ``P_U[u]`` is the sum of ``x_l v_l`` over u's design features (one-hot, social,
        side) and ``a_u`` their linear terms plus all their pairwise interactions among
        themselves; likewise for items. The cross terms are exactly ⟨P_U[u], P_I[i]⟩.
        """
        ent = self._entity
        w, V = self.w_.astype(np.float64), self.V_.astype(np.float64)
        out = []
        for Zx, lo, n, start in (
            (ent["ZU"], 0, ent["n_users"], ent["u_start"]),
            (ent["ZI"], ent["n_users"], ent["n_items"], ent["i_start"]),
        ):
            a = w[lo : lo + n].copy()
            P = V[lo : lo + n].copy()
            if Zx is not None:
                m = Zx.shape[1]
                Ve, we = V[start : start + m], w[start : start + m]
                Z = Zx.astype(np.float64)
                Pe = Z @ Ve
                Z2 = Z.multiply(Z).tocsr()
                a += Z @ we + np.einsum("ij,ij->i", P, Pe)  # linear + (one-hot x extras)
                a += 0.5 * (np.einsum("ij,ij->i", Pe, Pe) - Z2 @ np.einsum("ij,ij->i", Ve, Ve))  # extras x extras
                P += Pe
            out.extend([a, P])
        return out

    @property
    def _entity(self):
        """The DataFrame design's entity blocks (None after ``fit_matrix``)."""
        meta = self.__dict__.get("_entity_meta")
        if meta is None:
            return None
        return {"ZU": self._entity_ZU, "ZI": self._entity_ZI, **meta}

    def _after_load(self) -> None:
        self._refresh_parts()

    def _refresh_parts(self) -> None:
        if getattr(self, "_entity", None) is not None:
            self._parts = self._entity_parts()

    def _score_pairs(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        a, PU, b, PI = self._parts
        return self.w0_ + a[u] + b[i] + np.einsum("ij,ij->i", PU[u], PI[i])

    def _score_users(self, u: np.ndarray) -> np.ndarray:
        a, PU, b, PI = self._parts
        return PU[u] @ PI.T + (self.w0_ + a[u])[:, None] + b[None, :]

    def _user_vectors(self) -> np.ndarray:
        return self._parts[1]  # P_U: a user's whole embedding (one-hot, social, side features)

    def _item_vectors(self) -> np.ndarray:
        return self._parts[3]  # P_I

    def _fallback(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        # unknown user or item: leave its features out of the design row
        a, PU, b, PI = self._parts
        ku, ki = u >= 0, i >= 0
        uu, ii = np.maximum(u, 0), np.maximum(i, 0)
        out = np.full(len(u), self.w0_, dtype=np.float64)
        out += np.where(ku, a[uu], 0.0) + np.where(ki, b[ii], 0.0)
        both = ku & ki
        if both.any():
            out[both] += np.einsum("ij,ij->i", PU[uu[both]], PI[ii[both]])
        return out

    def design_matrix(self, pairs) -> sp.csr_matrix:
        """The FM design rows of (user, item) pairs, as built by :meth:`fit`.

        Columns follow ``feature_blocks_``. An unknown user or item contributes no
        feature (the row then holds only the known side), which is exactly how
        :meth:`predict` scores it, so ``decision_function_matrix(design_matrix(pairs))``
        equals ``decision_function(pairs)``.
        """
        self._check_fitted()
        users, items = self._pairs_to_labels(pairs)
        u = self.users_.get_indexer(users)
        i = self.items_.get_indexer(items)
        ent = self._entity
        n_users, n_items = ent["n_users"], ent["n_items"]
        dt = self.V_.dtype
        n = len(u)
        rows = np.arange(n)
        ku, ki = u >= 0, i >= 0
        parts = [
            sp.csr_matrix((np.ones(int(ku.sum()), dtype=dt), (rows[ku], u[ku])), shape=(n, n_users)),
            sp.csr_matrix((np.ones(int(ki.sum()), dtype=dt), (rows[ki], i[ki])), shape=(n, n_items)),
        ]
        for Z, idx, known in ((ent["ZU"], u, ku), (ent["ZI"], i, ki)):
            if Z is not None:
                sel = sp.csr_matrix((known.astype(dt), (rows, np.maximum(idx, 0))), shape=(n, Z.shape[0]))
                parts.append((sel @ Z).tocsr())
        X = sp.hstack(parts, format="csr", dtype=dt)
        X.sort_indices()
        return X

    def decision_function(self, pairs) -> np.ndarray:
        """Raw model output ŷ for (user, item) pairs (as :meth:`predict` of the ALS models)."""
        return BaseRecommender.predict(self, pairs)

    def predict(self, pairs) -> np.ndarray:
        """Predicted ratings (squared loss) or labels in ``classes_`` for (user, item) pairs.

        Unknown users or items are scored without their features (with a DataWarning).
        """
        return self._to_labels(BaseRecommender.predict(self, pairs))

    def predict_proba(self, pairs) -> np.ndarray:
        """Logistic loss only: (n, 2) probabilities of ``classes_`` for (user, item) pairs."""
        self._require_logistic()
        return self._proba(BaseRecommender.predict(self, pairs))

    # ------------------------------------------------------------------ training
    def _train(self, X: sp.csr_matrix, y: np.ndarray, groups: Optional[np.ndarray], rng: np.random.Generator) -> None:
        dt = self._check_dtype()
        n, p = X.shape
        k = int(self.factors)
        present = np.bincount(X.indices, minlength=p) > 0
        V = (rng.standard_normal((p, k)) * self.init_scale).astype(dt)
        V[~present] = 0
        w = np.zeros(p, dtype=dt)
        w0 = self._initial_w0(y)
        self.n_features_in_ = p
        if self.solver == "als":
            if groups is None:
                groups = _detect_groups(X)
            self.groups_ = groups
            self._als(X, y, w0, w, V, groups)
        else:
            self.__dict__.pop("groups_", None)
            self._sgd(X, y, w0, w, V, rng)

    def _store(self, w0, w, V, history) -> None:
        self.w0_ = float(w0)
        self.w_ = w
        self.V_ = V
        self.loss_history_ = np.asarray(history, dtype=np.float64)
        self.n_iter_ = len(history)
        self._refresh_parts()

    def _after_iteration(self, it: int, history: list) -> bool:
        """Callback and tolerance; True stops."""
        loss = history[-1]
        if self.callback is not None and self.callback(self, it, loss):
            return True
        if self.tol > 0 and it > 0 and history[-2] - loss <= self.tol * abs(history[-2]):
            self._converged = True
            return True
        return False

    def _finish(self, t0: float, history: list) -> None:
        self.fit_seconds_ = time.perf_counter() - t0
        converged = self.__dict__.pop("_converged", False)
        if self.tol > 0 and not converged and len(history) == int(self.iterations):
            last = (history[-2] - history[-1]) / abs(history[-2]) if len(history) > 1 else float("nan")
            warnings.warn(
                f"{type(self).__name__} did not reach tol={self.tol} in {self.iterations} iterations "
                f"(last relative decrease {last:.3g}).",
                ConvergenceWarning,
                stacklevel=4,
            )

    # ---- SGD
    def _sgd(self, X, y, w0, w, V, rng) -> None:
        dt = V.dtype
        n, n_feat = X.shape
        k = V.shape[1]
        loss = self.loss
        reg_w0, reg_w, reg_V = self._regs()
        c, c0 = _penalty_weights(X, self.reg_scaling)
        n_l = np.bincount(X.indices, minlength=n_feat).astype(np.float64)
        share = c / np.maximum(n_l, 1.0)  # penalty weight carried by one occurrence
        B = min(int(self.batch_size), n)
        eta0 = float(self.learning_rate)
        kappa = 0.25 if loss == "logistic" else 1.0  # bound on ℓ'' used for damping
        itype = np.int32 if max(n_feat, X.nnz, n) < 2**31 - 1 else np.int64
        counts = np.diff(X.indptr)
        binary = bool(X.nnz) and bool((X.data == 1).all())
        fixed_p = int(counts[0]) if (counts == counts[0]).all() and counts[0] > 0 else None
        # rows are shuffled once here, then every epoch in blocks of _SHUFFLE_BLOCK rows
        perm0 = rng.permutation(n)
        yd = y.astype(dt)[perm0]
        compiled = USE_COMPILED
        if compiled:
            X0 = X[perm0]
            c_indptr = X0.indptr.astype(np.int64)
            c_indices = X0.indices.astype(itype)
            c_data = None if binary else X0.data.astype(dt, copy=False)
            max_nnz = int(np.sort(counts)[-B:].sum())
            cws = _fm_kernels.EpochWorkspace(B, min(max_nnz, n_feat), n_feat, k, dt)
            ws = None
        elif fixed_p is not None:
            I_all = X.indices.astype(itype).reshape(n, fixed_p)[perm0]
            D_all = None if binary else X.data.reshape(n, fixed_p)[perm0]
            indptr_full = np.arange(0, B * fixed_p + 1, fixed_p, dtype=itype)
            rown_full = np.repeat(np.arange(B, dtype=itype), fixed_p)
            max_nnz = B * fixed_p
        else:
            X0 = X[perm0]
            max_nnz = int(np.sort(counts)[-B:].sum())
        if not compiled:
            ws = _Workspace(B, max(max_nnz, 1), n_feat, k, dt, itype)
        P = _param_matrix(w, V)
        n_blocks = n // _SHUFFLE_BLOCK  # full blocks; the < _SHUFFLE_BLOCK left-over rows go last
        n_head = n_blocks * _SHUFFLE_BLOCK

        def reshuffle(a: np.ndarray) -> np.ndarray:
            """``a``'s rows with the full blocks in the order ``block_order`` (a block copy)."""
            head = a[:n_head].reshape((n_blocks, _SHUFFLE_BLOCK) + a.shape[1:])[block_order]
            return np.concatenate([head.reshape((n_head,) + a.shape[1:]), a[n_head:]])

        # the reference for "exploding": the initial objective, estimated on a sample of rows
        sample = np.sort(perm0[:_L0_SAMPLE])
        L0 = float(_loss_values(loss, _fm_decision(X[sample], w0, w, V), y[sample]).sum()) * (n / len(sample))
        L0 += _penalty(w0, w, V, reg_w0, reg_w, reg_V, c, c0)
        history: list[float] = []
        self._store(w0, w, V, history)
        t0 = time.perf_counter()
        with np.errstate(over="ignore", invalid="ignore"):
            for epoch in range(int(self.iterations)):
                eta = eta0 if self.schedule == "constant" else eta0 / (1.0 + epoch) ** float(self.power_t)
                step = _Step(eta, kappa, reg_w, reg_V, share)
                block_order = rng.permutation(n_blocks)
                if compiled:
                    w0, data_loss, bad, value = _fm_kernels.sgd_epoch(
                        cws, c_indptr, c_indices, c_data, yd, block_order, _SHUFFLE_BLOCK, B, P, w0, loss,
                        eta, kappa, reg_w0, c0, reg_w, reg_V, share,
                    )
                    if bad:
                        self._diverged(epoch, value, L0)
                else:  # the numpy kernel, batch by batch
                    if fixed_p is not None:
                        I = reshuffle(I_all)
                        D = None if binary else reshuffle(D_all)
                    else:
                        order = reshuffle(np.arange(n))
                        Xp = X0[order]
                        Xp_indptr = Xp.indptr.astype(np.int64)
                        Xp_idx = Xp.indices.astype(itype)
                        Xp_val = None if binary else Xp.data
                        Xp_row = _row_of_nnz(Xp).astype(itype)
                    yp = reshuffle(yd)
                    data_loss = 0.0
                    for s in range(0, n, B):
                        e = min(s + B, n)
                        nb = e - s
                        if fixed_p is not None:
                            full = nb == B
                            indptr = indptr_full if full else indptr_full[: nb + 1]
                            idx = I[s:e].ravel()
                            val = None if binary else D[s:e].ravel()
                            rown = rown_full if full else rown_full[: nb * fixed_p]
                        else:
                            a, b = Xp_indptr[s], Xp_indptr[e]
                            indptr = (Xp_indptr[s : e + 1] - a).astype(itype)
                            idx = Xp_idx[a:b]
                            val = None if binary else Xp_val[a:b]
                            rown = Xp_row[a:b] - itype(s)
                        yb = yp[s:e]
                        if len(idx) == 0:  # rows without features: only w0 learns
                            yhat = np.full(nb, w0, dtype=dt)
                            g = _loss_derivative(loss, yhat, yb)
                        else:
                            yhat, g = _sgd_batch(ws, indptr, idx, val, rown, yb, w0, P, loss, step)
                        bl = float(_loss_values(loss, yhat, yb).sum())
                        if not np.isfinite(bl):
                            self._diverged(epoch, bl, L0)
                        data_loss += bl
                        d0 = 1.0 + eta * kappa * nb
                        w0 = (w0 * d0 - eta * float(g.sum())) / (d0 + eta * reg_w0 * c0 * nb / n)
                w_cur, V_cur = P[:, k].copy(), np.ascontiguousarray(P[:, :k])
                obj = data_loss + _penalty(w0, w_cur, V_cur, reg_w0, reg_w, reg_V, c, c0)
                if not np.isfinite(obj) or obj > _EXPLODE_FACTOR * max(L0, 1e-12):
                    self._diverged(epoch, obj, L0)
                history.append(obj)
                self._store(w0, w_cur, V_cur, history)
                if self._after_iteration(epoch, history):
                    break
        self._finish(t0, history)

    def _diverged(self, epoch: int, value: float, L0: float):
        raise DivergenceError(
            f"{type(self).__name__}: SGD diverged in epoch {epoch} (objective {value:.3g}, initially {L0:.3g}). "
            f"learning_rate={self.learning_rate!r} is too high for this data; try a lower learning_rate "
            f"(e.g. {float(self.learning_rate) / 10:g}) or a larger reg."
        )

    # ---- ALS (coordinate descent)
    def _als(self, X, y, w0, w, V, groups) -> None:
        dt = V.dtype
        n = X.shape[0]
        k = V.shape[1]
        reg_w0, reg_w, reg_V = self._regs()
        c, c0 = _penalty_weights(X, self.reg_scaling)
        grp = _build_groups(X, groups)
        for G in grp:  # per-feature λ of the coordinate updates
            G.lam_w = reg_w * c[G.cols]
            G.lam_V = reg_V * c[G.cols]
        all_full = bool(grp) and all(G.rows is None for G in grp)
        VT = np.ascontiguousarray(V.T)  # (k, n_features): factor f contiguous
        yd = y.astype(dt)
        e = np.empty(n, dtype=dt)
        q = np.empty(n, dtype=dt)
        buf = np.empty(n, dtype=dt)
        buf2 = np.empty(n, dtype=dt)
        r = np.empty(n, dtype=dt)
        vx = [np.empty(n, dtype=dt) for _ in grp] if all_full else None
        history: list[float] = []
        self._store(w0, w, V, history)
        t0 = time.perf_counter()
        for it in range(int(self.iterations)):
            if it % _ALS_RESYNC == 0:
                # exact residuals, so that rounding in the incremental updates cannot pile up
                e[:] = _fm_decision(X, w0, w, VT.T)
                e -= yd
            # w0
            w0_new = (w0 * n - float(e.sum(dtype=np.float64))) / (n + reg_w0 * c0)
            e += dt.type(w0_new - w0)
            w0 = w0_new
            # w, one group at a time (h = x)
            for G in grp:
                eg = e if G.rows is None else e[G.rows]
                hx = eg if G.x is None else eg * G.x
                old = w[G.cols].astype(np.float64)
                new = _cd_value(old, G.x2sum, G.segsum(hx), G.lam_w)
                w[G.cols] = new
                d = G.expand((new - old).astype(dt), buf if G.rows is None else None)
                if G.x is not None:
                    d = d * G.x
                if G.rows is None:
                    e += d
                else:
                    e[G.rows] += d
            # V, factor by factor, one group at a time
            last = len(grp) - 1
            for f in range(k):
                vf = VT[f]
                if not all_full:
                    q[:] = X @ vf
                    for j, G in enumerate(grp):
                        if G.rows is None:
                            own = G.expand(vf[G.cols], buf2)
                            np.subtract(q, own if G.x is None else own * G.x, out=r)
                            dq = self._cd_factor_full(G, vf, r, e, buf, buf2, reg_V, dt)
                            if j < last:
                                q += dq
                        else:
                            self._cd_factor_partial(G, vf, q, e, reg_V, dt, j < last)
                    continue
                # every group covers every row: q_f = Σ_groups own_g, own_g = x v_f[loc]
                own = []
                for j, G in enumerate(grp):
                    part = G.expand(vf[G.cols], vx[j])
                    own.append(part if G.x is None else np.multiply(part, G.x, out=vx[j]))
                if len(grp) == 1:
                    r.fill(0)
                    self._cd_factor_full(grp[0], vf, r, e, buf, buf2, reg_V, dt)
                elif len(grp) == 2:
                    # the other group's part is all of q but the own part: no q needed
                    dq = self._cd_factor_full(grp[0], vf, own[1], e, buf, buf2, reg_V, dt)
                    own[0] += dq
                    self._cd_factor_full(grp[1], vf, own[0], e, buf, buf2, reg_V, dt)
                else:
                    np.add(own[0], own[1], out=q)
                    for part in own[2:]:
                        q += part
                    for j, G in enumerate(grp):
                        np.subtract(q, own[j], out=r)
                        dq = self._cd_factor_full(G, vf, r, e, buf, buf2, reg_V, dt)
                        if j < last:
                            q += dq
            obj = 0.5 * float(np.dot(e.astype(np.float64), e)) + _penalty(w0, w, VT.T, reg_w0, reg_w, reg_V, c, c0)
            history.append(obj)
            self._store(w0, w, np.ascontiguousarray(VT.T), history)
            if self._after_iteration(it, history):
                break
        self._finish(t0, history)

    @staticmethod
    def _cd_factor_full(G, vf, r, e, buf, buf2, reg_V, dt) -> np.ndarray:
        """Exact update of v_{l,f} for every feature l of a group that covers every row.

        ``r`` is q_f minus the group's own part (left unchanged), so ``h = x r``. Updates
        ``vf`` and ``e``; returns the change of q_f, ``x δ[loc]``.
        """
        v = vf[G.cols]
        h = r if G.x is None else r * G.x
        np.multiply(h, h, out=buf)
        A = G.segsum(buf)
        np.multiply(h, e, out=buf)
        Bs = G.segsum(buf)
        new = _cd_value(v.astype(np.float64), A, Bs, G.lam_V)
        delta = (new - v).astype(dt)
        vf[G.cols] = new
        d = G.expand(delta, buf2)
        np.multiply(d, h, out=buf)  # δ h
        e += buf
        return d if G.x is None else np.multiply(d, G.x, out=buf2)

    @staticmethod
    def _cd_factor_partial(G, vf, q, e, reg_V, dt, update_q) -> None:
        """As :meth:`_cd_factor_full` for a group that covers only ``G.rows``, with q."""
        if USE_COMPILED:  # the same update as below in two fused passes over the rows
            _fm_kernels.cd_factor_partial(G.rows, G.loc, G.x, G.cols, vf, q, e, G.lam_V, update_q)
            return
        rows = G.rows
        v = vf[G.cols]
        vx = G.expand(v)
        if G.x is not None:
            vx = vx * G.x
        h = q[rows] - vx
        if G.x is not None:
            h *= G.x
        A = G.segsum(h * h)
        Bs = G.segsum(h * e[rows])
        new = _cd_value(v.astype(np.float64), A, Bs, G.lam_V)
        delta = (new - v).astype(dt)
        vf[G.cols] = new
        d = G.expand(delta)
        e[rows] += d * h
        if update_q:
            q[rows] += d if G.x is None else d * G.x
