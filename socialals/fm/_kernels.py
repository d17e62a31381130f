"""Compiled (numba) kernels of :class:`socialals.fm.FactorizationMachine`: the SGD epoch,
and ALS's factor update of a group of features that covers only some rows (below).

One call runs a whole epoch: every mini-batch's forward pass, its per-feature sums and
its damped step, and the intercept's step, with no Python (and no scipy) work per batch.
It computes exactly the update of the vectorised numpy kernel
(:func:`socialals.fm._sgd._sgd_batch` with a step): the same rows in the same order, the
same batches, every update of a batch computed from the parameters at the start of the
batch, the same divergence check. Only floating-point rounding can differ: per-feature
sums run over the batch's rows in order (as numpy's ``bincount``), sums over the k
factors may be reassociated (vectorised) and multiply-adds fused. It runs on one thread,
so results never depend on the number of threads (a version parallel over the rows of a
batch measured many times slower on a loaded 2-core machine: two barriers per batch).
The numpy kernels remain the reference and the fallback: ``socialals.config_context(
compiled=False)`` selects them, and a kernel that fails to compile warns once and hands
over to them (:func:`socialals._config.compiled_or_reference`; tests run both).
"""

from __future__ import annotations

import math

import numpy as np

from .._config import njit

__all__ = ["LOSS_CODES", "sgd_epoch", "cd_factor_partial"]

LOSS_CODES = {"squared": 0, "logistic": 1, "hinge": 2}


@njit(nogil=True, error_model="numpy")
def _loss_and_derivative(code, yhat, y):  # pragma: no cover - compiled
    """(ℓ(ŷ, y), ∂ℓ/∂ŷ) as in socialals.fm._objective._loss_values / _loss_derivative."""
    if code == 0:
        d = yhat - y
        return 0.5 * d * d, d
    m = y * yhat
    if code == 1:
        # log(1 + exp(-m)) and -y σ(-m), both without overflow
        if m >= 0:
            e = math.exp(-m)
            return math.log1p(e), -y * (e / (1.0 + e))
        e = math.exp(m)
        return -m + math.log1p(e), -y / (1.0 + e)
    if m < 1.0:
        return 1.0 - m, -y
    return 0.0, 0.0 * y


# reassociation (vectorised sums) and fused multiply-adds; no "nnan"/"ninf", so that
# non-finite values are still seen by the divergence check
_FASTMATH = {"contract", "reassoc", "nsz"}


@njit(nogil=True, error_model="numpy", fastmath=_FASTMATH)
def _epoch(
    indptr, indices, data, binary, y, block_order, sblock, batch, P, w0, code,
    eta, kappa, reg_w0, c0, reg_w, reg_V, share, rows, S, acc, slot, active,
):  # pragma: no cover - compiled
    n = y.shape[0]
    k = P.shape[1] - 2
    n_head = block_order.shape[0] * sblock
    ek = eta * kappa
    data_loss = 0.0
    xv = np.zeros(k, dtype=P.dtype)
    for s in range(0, n, batch):
        e = min(s + batch, n)
        nb = e - s
        # ---- the batch's rows: epoch position pos -> row block_order[pos // sblock] *
        # sblock + pos % sblock of the pre-shuffled matrix (past n_head: row pos)
        blk = s // sblock
        off = s - blk * sblock
        for t in range(nb):
            if s + t < n_head:
                rows[t] = block_order[blk] * sblock + off
                off += 1
                if off == sblock:
                    off = 0
                    blk += 1
            else:
                rows[t] = s + t
        gsum = 0.0
        bl = 0.0
        na = 0
        for t in range(nb):
            r = rows[t]
            p0 = indptr[r]
            p1 = indptr[r + 1]
            # ---- forward (P is not written before the end of the batch): xv = Σ x v,
            # lin = Σ x w, sq = Σ x² ‖v‖², then ŷ and g = ∂ℓ/∂ŷ
            for f in range(k):
                xv[f] = 0.0
            lin = 0.0
            sq = 0.0
            if binary:
                for p in range(p0, p1):
                    l = indices[p]
                    for f in range(k):
                        xv[f] += P[l, f]
                    lin += P[l, k]
                    sq += P[l, k + 1]
            else:
                for p in range(p0, p1):
                    l = indices[p]
                    x = data[p]
                    for f in range(k):
                        xv[f] += x * P[l, f]
                    lin += x * P[l, k]
                    sq += x * x * P[l, k + 1]
            xx = 0.0
            for f in range(k):
                xx += xv[f] * xv[f]
            lv, g = _loss_and_derivative(code, w0 + lin + 0.5 * (xx - sq), np.float64(y[r]))
            gsum += g
            bl += lv
            # ---- this row's share of its features' sums over the batch (in row
            # order). Feature l has row a = slot[l] (-1: not yet seen in the batch) of
            # acc = [count, Σ g x, Σ g x², Σ x², Σ x² sq, Σ x⁴] and of S = Σ g x xv;
            # for binary rows only count, Σ g x and Σ x² sq = Σ sq are kept (the
            # others equal them)
            for p in range(p0, p1):
                l = indices[p]
                a = slot[l]
                if a < 0:
                    a = na
                    slot[l] = a
                    active[a] = l
                    for f in range(k):
                        S[a, f] = 0.0
                    for j in range(6):
                        acc[a, j] = 0.0
                    na += 1
                if binary:
                    acc[a, 0] += 1.0
                    acc[a, 1] += g
                    acc[a, 4] += sq
                    for f in range(k):
                        S[a, f] += g * xv[f]
                else:
                    x = np.float64(data[p])
                    gx = g * x
                    x2 = x * x
                    acc[a, 0] += 1.0
                    acc[a, 1] += gx
                    acc[a, 2] += gx * x
                    acc[a, 3] += x2
                    acc[a, 4] += x2 * sq
                    acc[a, 5] += x2 * x2
                    for f in range(k):
                        S[a, f] += gx * xv[f]
        if not math.isfinite(bl):
            for a in range(na):
                slot[active[a]] = -1
            return w0, data_loss, True, bl
        data_loss += bl
        # ---- the damped step of every active feature, from the batch-start values
        for a in range(na):
            l = active[a]
            slot[l] = -1
            cnt = acc[a, 0]
            gw = acc[a, 1]
            if binary:
                gx2 = gw
                Hw = cnt
                HV = acc[a, 4] - cnt * P[l, k + 1]
            else:
                gx2 = acc[a, 2]
                Hw = acc[a, 3]
                HV = acc[a, 4] - acc[a, 5] * P[l, k + 1]
            if HV < 0.0:
                HV = 0.0
            frac = cnt * share[l]
            dw = 1.0 + ek * Hw
            P[l, k] = (P[l, k] * dw - eta * gw) / (dw + eta * reg_w * frac)
            dv = 1.0 + ek * HV
            den = dv + eta * reg_V * frac
            alpha = (dv + eta * gx2) / den
            beta = eta / den
            nsq = 0.0
            for f in range(k):
                v = alpha * P[l, f] - beta * S[a, f]
                P[l, f] = v
                nsq += v * v
            P[l, k + 1] = nsq
        d0 = 1.0 + ek * nb
        w0 = (w0 * d0 - eta * gsum) / (d0 + eta * reg_w0 * c0 * nb / n)
    return w0, data_loss, False, 0.0


@njit(nogil=True, error_model="numpy")
def _cd_partial(rows, loc, x, has_x, cols, vf, q, e, lam, update_q):  # pragma: no cover - compiled
    n_g = cols.shape[0]
    A = np.zeros(n_g)
    B = np.zeros(n_g)
    old = np.empty(n_g, dtype=vf.dtype)
    delta = np.empty(n_g, dtype=vf.dtype)
    for c in range(n_g):
        old[c] = vf[cols[c]]
    # Σ h² and Σ h e per feature, h = x (q − v x) (q_f includes the feature's own part)
    for j in range(rows.shape[0]):
        i = rows[j]
        c = loc[j]
        if has_x:
            h = (q[i] - old[c] * x[j]) * x[j]
        else:
            h = q[i] - old[c]
        A[c] += h * h
        B[c] += h * e[i]
    for c in range(n_g):
        den = A[c] + lam[c]
        new = (np.float64(old[c]) * A[c] - B[c]) / den if den > 0 else 0.0
        delta[c] = new - old[c]
        vf[cols[c]] = new
    # e += δ h and q += δ x, with h from the old values
    for j in range(rows.shape[0]):
        i = rows[j]
        c = loc[j]
        if has_x:
            h = (q[i] - old[c] * x[j]) * x[j]
            e[i] += delta[c] * h
            if update_q:
                q[i] += delta[c] * x[j]
        else:
            h = q[i] - old[c]
            e[i] += delta[c] * h
            if update_q:
                q[i] += delta[c]


def cd_factor_partial(rows, loc, x, cols, vf, q, e, lam, update_q):
    """The exact coordinate-descent update of ``v_{l,f}`` for every feature l of an ALS
    group that covers only ``rows`` (features that never share a row), in place: the
    compiled form of :func:`socialals.fm._cd._cd_factor_partial` (same
    sums, in row order, in float64; same update of ``vf``, ``e`` and, when ``update_q``,
    ``q``). ``x`` is None when every value is 1; ``lam`` is the per-feature λ."""
    has_x = x is not None
    _cd_partial(rows, loc, x if has_x else np.zeros(1, dtype=vf.dtype), has_x, cols, vf, q, e, lam, bool(update_q))


class EpochWorkspace:
    """Buffers of :func:`sgd_epoch`, allocated once per fit."""

    def __init__(self, batch: int, max_active: int, n_features: int, k: int, dtype):
        self.rows = np.zeros(batch, dtype=np.int64)
        self.S = np.zeros((max(max_active, 1), k), dtype=dtype)
        self.acc = np.zeros((max(max_active, 1), 8), dtype=np.float64)
        self.slot = np.full(n_features, -1, dtype=np.int64)
        self.active = np.zeros(max(max_active, 1), dtype=np.int64)


def sgd_epoch(ws, indptr, indices, data, y, block_order, sblock, batch, P, w0, loss, eta, kappa, reg_w0, c0, reg_w, reg_V, share):
    """One SGD epoch over the rows of the CSR matrix ``(data, indices, indptr)``.

    Epoch position t visits row ``block_order[t // sblock] * sblock + t % sblock`` (rows
    past the last full block in order), ``batch`` rows per step. ``data`` is None when
    every value is 1. ``P`` = ``[V | w | ‖v‖²]`` is updated in place. Returns ``(w0,
    data_loss, diverged, bad_value)``: the new intercept, the progressive data loss, and
    whether (and with which value) a batch's loss was not finite (the epoch then stops).
    """
    binary = data is None
    dat = np.zeros(1, dtype=P.dtype) if binary else data
    w0, data_loss, bad, value = _epoch(
        indptr, indices, dat, binary, y, block_order, int(sblock), int(batch), P, float(w0), LOSS_CODES[loss],
        float(eta), float(kappa), float(reg_w0), float(c0), float(reg_w), float(reg_V), share,
        ws.rows, ws.S, ws.acc, ws.slot, ws.active,
    )
    return float(w0), float(data_loss), bool(bad), float(value)
