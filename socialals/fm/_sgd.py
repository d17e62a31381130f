"""The SGD solver of :class:`~socialals.fm.FactorizationMachine` (``solver="sgd"``).

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

*Compiled path.* An epoch runs in one compiled call (:mod:`socialals.fm._kernels`): per
batch, one pass over its CSR rows computes
``ŷ``, ``g`` and each active feature's sums, then the damped steps above are applied
from the batch-start parameters — the same rows, batches, steps and divergence check as
the numpy kernel, which stays the reference and the fallback (the two agree to
floating-point summation order, tested for every loss; ``socialals.config_context(compiled=False)``
selects the reference). It runs on one thread, so
the fit does not depend on the number of threads; per-batch scipy overhead disappears
(about 2x faster per epoch on MovieLens-1M-shaped data, ``benchmarks/bench_fm.py``).

``loss_history_`` (SGD) is the progressive objective: the data term summed over the
epoch's batches as each is visited (before its own update), plus the penalty at the end
of the epoch — free to compute, slightly pessimistic. A non-finite value anywhere, or
an epoch objective above 100 times the initial one (estimated on a sample of rows),
raises :class:`~socialals.exceptions.DivergenceError` suggesting a lower
``learning_rate``. As for any SGD, the squared loss needs roughly η ‖x‖² < 1 per row;
the classification losses have bounded gradients and cannot explode.

Code
----
:func:`fit_sgd` runs the epochs. An epoch runs in one compiled call
(:func:`socialals.fm._kernels.sgd_epoch`) or, with ``socialals.config_context(compiled=False)``
(or when that kernel fails to compile), in :func:`_numpy_epoch`: one :func:`_sgd_batch` per
batch, the plain reference the compiled epoch is tested against.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from .. import _config
from ..exceptions import DivergenceError
from . import _kernels
from ._objective import _fm_decision, _loss_derivative, _loss_values, _penalty, _penalty_weights, _row_of_nnz

# an SGD epoch whose objective exceeds this multiple of the initial one has diverged
_EXPLODE_FACTOR = 100.0
# SGD reshuffles the rows every epoch in blocks of this many (after one full shuffle)
_SHUFFLE_BLOCK = 32
# rows used to estimate the initial SGD objective (the divergence reference)
_L0_SAMPLE = 20_000


class _Step:
    """Constants of the SGD step (see the module notes). ``share[l]`` is the fraction of
    feature l's penalty weight carried by each of its occurrences, ``c_l / n_l``."""

    __slots__ = ("eta", "kappa", "reg_w", "reg_V", "share")

    def __init__(self, eta, kappa, reg_w, reg_V, share):
        self.eta, self.kappa, self.reg_w, self.reg_V, self.share = eta, kappa, reg_w, reg_V, share


def _scatter_rows(out: np.ndarray, target: np.ndarray, coef: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``out[target[p]] += coef[p] * rows[p]`` for every p, in order of p."""
    width = out.shape[1]
    flat = (target[:, None] * width + np.arange(width)).ravel()  # (1-D ufunc.at is the fast one)
    np.add.at(out.reshape(-1), flat, (coef[:, None] * rows).ravel())
    return out


def _sgd_batch(indptr, idx, val, rown, y, w0: float, P: np.ndarray, loss: str, step=None):
    """Forward and backward pass over one batch of rows — the SGD kernel (numpy reference).

    ``P`` is the (n_features, k + 2) parameter matrix ``[V | w | ‖v_l‖²]`` (the last
    column a cache). The batch is CSR (``indptr`` local to the batch, ``val`` None when
    every value is 1, ``rown`` the batch row of each non-zero).

    For every active feature l (``uq``, ascending) let ``c_l`` be its count in the batch,
    ``gw_l = Σ_i g_i x_il``, ``gx2_l = Σ_i g_i x_il²`` and ``S1_l = Σ_i g_i x_il XV_i``
    (sums over the batch rows i, ``g_i = ∂ℓ/∂ŷ_i``), so that the gradients of the batch's
    summed loss are ``∂/∂w_l = gw_l`` and ``∂/∂v_l = S1_l − gx2_l v_l``; and the damping
    curvatures ``Hw_l = Σ_i x_il²`` and ``HV_l = Σ_i x_il² Σ_{m≠l} x_im² ‖v_m‖²`` (the
    diagonal part of ``Σ_i ‖∂ŷ_i/∂v_l‖² = Σ_i x_il² ‖XV_i − x_il v_l‖²``, equal to it for
    rows with two non-zeros).

    * ``step=None``: returns ``(yhat, g, uq, gw, gV)`` with ``gV = S1 − gx2 v`` (for
      tests and :func:`_fm_gradient`).
    * ``step=_Step(...)``: applies, for every active θ (w_l, and v_l as a block), the
      damped step ``θ ← (θ (1 + ηκH) − η G) / (1 + ηκH + η λ m_l c_l / n_l)`` (m_l the
      count in the batch, c_l the penalty weight, n_l the count in the data) to ``P`` in
      place and returns ``(yhat, g)``. For ``v_l`` this is ``α_l v_l − β_l S1_l`` with
      ``α = (1 + ηκH + η gx2)/den`` and ``β = η/den``, summed row by row onto ``α v``.
    """
    k = P.shape[1] - 2
    B = len(indptr) - 1
    dt = P.dtype
    x = np.ones(len(idx), dtype=dt) if val is None else val
    # ---- forward: one product gives XV, the linear term and (binary) Σ x² ‖v‖²
    XVe = sp.csr_matrix((x, idx, indptr), shape=(B, P.shape[0])) @ P
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

    uq, inv = np.unique(idx, return_inverse=True)  # the active features; inv numbers them
    na = len(uq)
    gx = g[rown] if val is None else g[rown] * val
    gw = np.bincount(inv, gx, minlength=na)
    gx2 = gw if val is None else np.bincount(inv, gx * val, minlength=na)
    XV_nz = XVe[rown]  # each non-zero's row of [XV | lin | sq]
    if step is None:
        S = _scatter_rows(np.zeros((na, k + 2), dtype=dt), inv, gx, XV_nz)
        gV = S[:, :k] - gx2[:, None] * P[uq, :k]
        return yhat, g, uq, gw, gV

    cnt = np.bincount(inv, minlength=na)
    Pu = P[uq]
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
    # V: α v − β S1, the terms of −β S1 added onto α v one non-zero at a time
    dv = 1.0 + ek * HV
    den = dv + (eta * step.reg_V) * frac
    alpha = ((dv + eta * gx2) / den).astype(dt)
    beta = (eta / den).astype(dt)
    S = _scatter_rows(Pu * alpha[:, None], inv, -(gx * beta[inv]), XV_nz)
    S[:, k] = w_new
    S[:, k + 1] = np.einsum("ij,ij->i", S[:, :k], S[:, :k])
    P[uq] = S
    return yhat, g


def _param_matrix(w: np.ndarray, V: np.ndarray) -> np.ndarray:
    """``[V | w | ‖v_l‖²]`` as one C-contiguous (n_features, k + 2) array."""
    k = V.shape[1]
    P = np.empty((V.shape[0], k + 2), dtype=V.dtype)
    P[:, :k] = V
    P[:, k] = w
    P[:, k + 1] = np.einsum("ij,ij->i", V, V)
    return P


def _fm_gradient(X, y, w0, w, V, loss, reg_w0, reg_w, reg_V, scaling="none"):
    """∇L as ``(d w0, d w, d V)``; the data part by the SGD kernel on all rows as one batch."""
    X = sp.csr_matrix(X, dtype=V.dtype)
    X.sort_indices()
    c, c0 = _penalty_weights(X, scaling)
    binary = bool((X.data == 1).all())
    P = _param_matrix(w, V)
    _, g, uq, gw, gV = _sgd_batch(
        X.indptr.astype(np.int64), X.indices.astype(np.int64), None if binary else X.data, _row_of_nnz(X), y, w0, P, loss
    )
    dw = reg_w * c * w.astype(np.float64)
    dw[uq] += gw
    dV = reg_V * c[:, None] * V.astype(np.float64)
    dV[uq] += gV
    return float(g.sum()) + reg_w0 * c0 * w0, dw, dV


def _block_order_rows(n: int, block_order: np.ndarray) -> np.ndarray:
    """The epoch's row order: the full blocks of ``_SHUFFLE_BLOCK`` rows in ``block_order``,
    then the left-over rows in order."""
    n_head = len(block_order) * _SHUFFLE_BLOCK
    head = (block_order[:, None] * _SHUFFLE_BLOCK + np.arange(_SHUFFLE_BLOCK)).ravel()
    return np.concatenate([head, np.arange(n_head, n)])


def _numpy_epoch(X0, yd, block_order, batch, P, w0, loss, step, reg_w0, c0, diverged):
    """One epoch, batch by batch, with :func:`_sgd_batch` — the reference of
    :func:`socialals.fm._kernels.sgd_epoch` (same rows, batches, steps and checks).

    ``X0``/``yd`` are the rows after the initial shuffle; returns ``(w0, data_loss)``."""
    n = X0.shape[0]
    Xp = X0[_block_order_rows(n, block_order)]
    yp = yd[_block_order_rows(n, block_order)]
    binary = bool(Xp.nnz) and bool((Xp.data == 1).all())
    row = _row_of_nnz(Xp)
    data_loss = 0.0
    for s in range(0, n, batch):
        e = min(s + batch, n)
        a, b = Xp.indptr[s], Xp.indptr[e]
        yb = yp[s:e]
        if a == b:  # rows without features: only w0 learns
            yhat = np.full(e - s, w0, dtype=P.dtype)
            g = _loss_derivative(loss, yhat, yb)
        else:
            indptr = Xp.indptr[s : e + 1] - a
            yhat, g = _sgd_batch(
                indptr, Xp.indices[a:b], None if binary else Xp.data[a:b], row[a:b] - s, yb, w0, P, loss, step
            )
        batch_loss = float(_loss_values(loss, yhat, yb).sum())
        if not np.isfinite(batch_loss):
            diverged(batch_loss)
        data_loss += batch_loss
        d0 = 1.0 + step.eta * step.kappa * (e - s)
        w0 = (w0 * d0 - step.eta * float(g.sum())) / (d0 + step.eta * reg_w0 * c0 * (e - s) / n)
    return w0, data_loss


def fit_sgd(model, X, y, w0, w, V, rng) -> None:
    """Run ``model.iterations`` SGD epochs from ``(w0, w, V)`` on the CSR matrix ``X``
    (sorted indices, dtype of ``V``); the state goes to ``model._store`` after every
    epoch, ``model._after_iteration`` may stop early."""
    dt = V.dtype
    n, n_feat = X.shape
    k = V.shape[1]
    loss = model.loss
    reg_w0, reg_w, reg_V = model._regs()
    c, c0 = _penalty_weights(X, model.reg_scaling)
    n_l = np.bincount(X.indices, minlength=n_feat).astype(np.float64)
    share = c / np.maximum(n_l, 1.0)  # penalty weight carried by one occurrence
    B = min(int(model.batch_size), n)
    eta0 = float(model.learning_rate)
    kappa = 0.25 if loss == "logistic" else 1.0  # bound on ℓ'' used for damping
    # rows are shuffled once here, then every epoch in blocks of _SHUFFLE_BLOCK rows
    perm0 = rng.permutation(n)
    X0 = X[perm0]
    yd = y.astype(dt)[perm0]
    P = _param_matrix(w, V)
    n_blocks = n // _SHUFFLE_BLOCK  # full blocks; the < _SHUFFLE_BLOCK left-over rows go last
    compiled_args = []  # built on the first compiled epoch

    def compiled_epoch(block_order, step):
        if not compiled_args:
            itype = np.int32 if max(n_feat, X.nnz, n) < 2**31 - 1 else np.int64
            binary = bool(X.nnz) and bool((X.data == 1).all())
            max_nnz = int(np.sort(np.diff(X.indptr))[-B:].sum())
            compiled_args.extend([
                _kernels.EpochWorkspace(B, min(max_nnz, n_feat), n_feat, k, dt),
                X0.indptr.astype(np.int64), X0.indices.astype(itype), None if binary else X0.data.astype(dt, copy=False),
            ])
        w0_new, data_loss, bad, value = _kernels.sgd_epoch(
            *compiled_args, yd, block_order, _SHUFFLE_BLOCK, B, P, w0, loss,
            step.eta, kappa, reg_w0, c0, reg_w, reg_V, share,
        )
        if bad:
            diverged(value)
        return w0_new, data_loss

    # the reference for "exploding": the initial objective, estimated on a sample of rows
    sample = np.sort(perm0[:_L0_SAMPLE])
    L0 = float(_loss_values(loss, _fm_decision(X[sample], w0, w, V), y[sample]).sum()) * (n / len(sample))
    L0 += _penalty(w0, w, V, reg_w0, reg_w, reg_V, c, c0)
    history: list[float] = []
    model._store(w0, w, V, history)
    t0 = time.perf_counter()
    with np.errstate(over="ignore", invalid="ignore"):
        for epoch in range(int(model.iterations)):

            def diverged(value, epoch=epoch):
                raise DivergenceError(
                    f"{type(model).__name__}: SGD diverged in epoch {epoch} (objective {value:.3g}, initially "
                    f"{L0:.3g}). learning_rate={model.learning_rate!r} is too high for this data; try a lower "
                    f"learning_rate (e.g. {float(model.learning_rate) / 10:g}) or a larger reg."
                )

            eta = eta0 if model.schedule == "constant" else eta0 / (1.0 + epoch) ** float(model.power_t)
            step = _Step(eta, kappa, reg_w, reg_V, share)
            block_order = rng.permutation(n_blocks)
            w0, data_loss = _config.compiled_or_reference(
                "fm.sgd_epoch",
                lambda: compiled_epoch(block_order, step),
                lambda: _numpy_epoch(X0, yd, block_order, B, P, w0, loss, step, reg_w0, c0, diverged),
            )
            w_cur, V_cur = P[:, k].copy(), np.ascontiguousarray(P[:, :k])
            obj = data_loss + _penalty(w0, w_cur, V_cur, reg_w0, reg_w, reg_V, c, c0)
            if not np.isfinite(obj) or obj > _EXPLODE_FACTOR * max(L0, 1e-12):
                diverged(obj)
            history.append(obj)
            model._store(w0, w_cur, V_cur, history)
            if model._after_iteration(epoch, history):
                break
    model._finish(t0, history)
