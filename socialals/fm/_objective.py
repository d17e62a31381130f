"""The factorization machine's maths shared by its solvers: the losses, the prediction
ŷ(x) in O(k · nnz(x)), and the penalty of the written objective (see :mod:`socialals.fm`)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.special import expit

LOSSES = ("squared", "logistic", "hinge")
# rows per chunk when predicting (bounds the (rows x k) temporary)
_PREDICT_CHUNK = 1 << 16


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
    """The written objective L (see :mod:`socialals.fm`)."""
    X = sp.csr_matrix(X)
    c, c0 = _penalty_weights(X, scaling)
    yhat = _fm_decision(X, w0, w, V)
    return float(_loss_values(loss, yhat, y).sum()) + _penalty(w0, w, V, reg_w0, reg_w, reg_V, c, c0)


def _row_of_nnz(X: sp.csr_matrix) -> np.ndarray:
    return np.repeat(np.arange(X.shape[0], dtype=np.int64), np.diff(X.indptr))

