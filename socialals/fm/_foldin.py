"""Fold-in for :class:`~socialals.fm.FactorizationMachine`: a new user's own parameters,
fitted by the FM's own objective with every other parameter held fixed.

A user's own parameters are ``θ_u = (w_u, v_u)``, the weight and factor row of its column
of the one-hot user block: the only parameters that occur in its design rows and in no
other user's. Its friend columns and side-feature columns are shared with other users (and
its own column of the social block occurs only in other users' rows), so they stay fixed;
its friend and side features enter its design rows exactly as in :meth:`fit`. With all
else fixed the model is affine in ``θ_u`` ::

    ŷ(u, i) = c_ui + θ_u · x_ui,     x_ui = (1, p_u + P_I[i]),
    c_ui = w0 + a_u + b_i + ⟨p_u, P_I[i]⟩

where ``a_u``, ``p_u`` are the user side's parts without its one-hot column (its friends'
and side features, :func:`~socialals.fm._design.side_parts`) and ``b_i``, ``P_I[i]`` the
item side's. The row objective is the part of the written objective that involves ``θ_u`` ::

    L_u(θ) = Σ_{i ∈ R(u)} ℓ(c_ui + θ · x_ui, y_ui) + ½ c_u (λ_w θ_0² + λ_V Σ_f θ_f²)

with the FM's own λ and penalty weight ``c_u = |R(u)|`` (``reg_scaling="frequency"``) or
1 (``"none"``). It is convex, and solved

* squared loss: exactly, from its normal equations ``(XᵀX + D) θ = Xᵀ(y − c)``, a
  (k+1) x (k+1) system per user (``D = c_u diag(λ_w, λ_V, …)``; with a zero penalty the
  minimum-norm solution);
* logistic loss: Newton's method (iteratively reweighted least squares) with an Armijo
  backtracking line search (full steps once the squared Newton decrement is below 1e-8
  of the objective), until that decrement is at rounding level (1e-20 of the objective;
  at most 100 steps, else a ConvergenceWarning);
* hinge loss: dual coordinate descent (Hsieh, Chang, Lin, Keerthi & Sundararajan, ICML
  2008, the L1-loss SVM solver of liblinear) on ``max_α Σ α_i (1 − y_i c_i) − ½ ‖Σ α_i
  y_i x_i‖²_{D⁻¹}``, ``0 ≤ α_i ≤ 1``, with ``θ = D⁻¹ Σ α_i y_i x_i``: cyclic exact
  one-variable steps until the largest projected gradient is at most 1e-10. Once it is
  below 1e-3 each sweep also tries an exact finish: with the ratings at α = 1 and the free
  ones (0 < α < 1, margin exactly 1) taken from the current α, the free α solve a small
  linear system, accepted only if every optimality condition then holds to 1e-10 (it
  usually does after a few sweeps: linear convergence alone took 100-500 sweeps on
  FilmTrust's heaviest users). At most 20,000 sweeps, else a ConvergenceWarning.

Users are solved independently, in batches of similar rating counts. A new user without
ratings keeps ``θ = 0`` (the penalty's minimiser, as a feature that never occurs in
training) and is scored from its friends' and side features.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.special import expit

from .._foldin import FoldIn, factor_columns, unique_links
from ..exceptions import ConvergenceWarning, DataWarning
from ._design import side_matrix, side_parts, social_rows

__all__ = ["fold_in"]

_NEWTON_STEPS = 100
_DCD_SWEEPS = 20_000
_DCD_TOL = 1e-10
_POLISH_FROM = 1e-3  # projected gradient below which the exact finish is tried
# padded (users x ratings x (k+1)) elements per batch
_BATCH_ELEMENTS = 1 << 21


def fold_in(model, ratings, social, *, update: bool, user_features) -> pd.DataFrame:
    """See :meth:`FactorizationMachine.fold_in`."""
    model._check_fitted()
    if not isinstance(update, (bool, np.bool_)):
        raise ValueError(f"The 'update' parameter of fold_in must be a bool; got {update!r}.")
    _check_layout(model)
    new = FoldIn(model, ratings, social if "social" in model.feature_blocks_ else None)
    y = _targets(model, new.R.data)
    users, where = new.grown_users()
    Z = _extra_rows(model, new, where, len(users), user_features)
    grown = _Grown(model, len(users) - len(model.users_))
    k = model.V_.shape[1]
    extra = slice(grown.u_start, grown.u_start + (0 if Z is None else Z.shape[1]))
    a0, p0 = side_parts(Z, np.zeros(new.n), np.zeros((new.n, k)), grown.w[extra].astype(np.float64),
                        grown.V[extra].astype(np.float64))
    theta = _solve_rows(model, new.R, y, a0, p0)
    frame = pd.DataFrame(np.column_stack([theta[:, 1:], theta[:, 0]]), index=pd.Index(new.labels, name=model.columns_.user),
                         columns=factor_columns(k, True))
    if update:
        grown.store(new, users, where, theta, Z)
    return frame


def _check_layout(model) -> None:
    """``feature_blocks_`` must describe the design fold-in extends (a loaded file's blocks
    are only checked to lie within the features)."""
    meta, blocks = model._entity_meta, getattr(model, "feature_blocks_", None)
    n, ni, u_start, i_start = meta["n_users"], meta["n_items"], meta["u_start"], meta["i_start"]
    expect = {"user": [0, n], "item": [n, n + ni]}
    pos = u_start
    for name, width in (("social", n), ("user_features", None)):
        if isinstance(blocks, dict) and name in blocks:
            width = blocks[name][1] - blocks[name][0] if width is None else width
            expect[name] = [pos, pos + width]
            pos += width
    if isinstance(blocks, dict) and "item_features" in blocks:
        expect["item_features"] = [i_start, model.n_features_in_]
    if blocks != expect or pos != i_start:
        raise ValueError("fold_in: the model's feature_blocks_ do not describe its design matrix "
                         f"(expected {expect}, got {blocks}); the model file is damaged.")


def _targets(model, values: np.ndarray) -> np.ndarray:
    """The fold-in ratings as the fit's targets (labels coded ±1 for classification)."""
    if model.loss == "squared":
        return values.astype(np.float64)
    classes = model.classes_
    bad = ~np.isin(values, classes)
    if bad.any():
        shown = ", ".join(f"{v:g}" for v in np.unique(values[bad])[:5])
        raise ValueError(
            f"fold_in: loss={model.loss!r} needs the {model.columns_.rating!r} column to hold the labels "
            f"{classes[0]} and {classes[1]} (the model's classes_); got {int(bad.sum())} other value(s): {shown} "
            "(a duplicate (user, item) pair with two labels is merged into their mean)."
        )
    return np.where(values == classes[1], 1.0, -1.0)


def _extra_rows(model, new: FoldIn, where: np.ndarray, n_grown: int, user_features):
    """The new users' extra user-side columns (social block over the grown user list,
    then side features), as the fit builds them; None when the design has none."""
    blocks, dt = model.feature_blocks_, model.V_.dtype
    parts = []
    if "social" in blocks:
        parts.append(_new_social_rows(model, new, where, n_grown))
    if "user_features" in blocks:
        width = blocks["user_features"][1] - blocks["user_features"][0]
        if user_features is None:  # every new user without a row: zeros, counted
            user_features = pd.DataFrame(np.zeros((0, width)))
        F = side_matrix(user_features, new.labels, "fold_in: user_features", dt, "new user(s)")
        if F.shape[1] != width:
            raise ValueError(f"'user_features' has {F.shape[1]} column(s); the model was fitted with {width}.")
        parts.append(F)
    elif user_features is not None:
        raise ValueError("'user_features' given, but the model was fitted without user features.")
    return sp.hstack(parts, format="csr", dtype=dt) if parts else None


def _new_social_rows(model, new: FoldIn, where: np.ndarray, n_grown: int) -> sp.csr_matrix:
    """Each new user's out-links as in the fit: weights normalised to sum to 1, on the
    columns of its friends (known users, then the new ones, as in the grown model)."""
    S = sp.csr_matrix((new.n, n_grown), dtype=model.V_.dtype)
    if new.links is None or len(new.links[0]) == 0:
        return S
    src, dst, w = new.links
    row = new.labels.get_indexer(src)
    incoming = row < 0  # a known user's link to a new user: the known user's row stays as fitted
    if incoming.any():
        warnings.warn(
            f"fold_in: {int(incoming.sum())} link(s) from known users to new users are not used (the "
            "factorization machine's social features are a user's own out-links; known users are not changed).",
            DataWarning, stacklevel=4,
        )
    row, dst, w = row[~incoming], dst[~incoming], w[~incoming]
    mine = new.labels.get_indexer(dst)
    col = np.where(mine >= 0, where[np.maximum(mine, 0)], model.users_.get_indexer(dst))
    row, col, w = unique_links(row, col, w)
    return social_rows(sp.csr_matrix((w.astype(np.float64), (row, col)), shape=(new.n, n_grown)), model.V_.dtype)


# ---------------------------------------------------------------------- the row solves
def _solve_rows(model, R: sp.csr_matrix, y: np.ndarray, a0: np.ndarray, p0: np.ndarray) -> np.ndarray:
    """``θ`` (n_new, k+1) = (w_u, v_u) minimising each new user's row objective."""
    reg_w0, reg_w, reg_V = model._regs()
    k = p0.shape[1]
    counts = np.diff(R.indptr)
    theta = np.zeros((R.shape[0], k + 1))
    if model.loss != "squared" and counts.any() and not (reg_w > 0 and reg_V > 0):
        raise ValueError(
            f"fold_in with loss={model.loss!r} needs reg_w > 0 and reg_V > 0 (reg when None): without a "
            "penalty a new user's row objective may have no minimiser."
        )
    lam = np.r_[reg_w, np.full(k, reg_V)]
    scale = counts.astype(np.float64) if model.reg_scaling == "frequency" else np.ones(len(counts))
    _, _, b, PI = model._parts
    w0 = float(model.w0_)
    solve = {"squared": _ridge, "logistic": _newton, "hinge": _dual_cd}[model.loss]
    for users in _batches(counts, k + 1):
        L = int(counts[users].max())
        pos = np.arange(L)
        mask = pos[None, :] < counts[users][:, None]
        at = np.where(mask, R.indptr[users][:, None] + pos[None, :], 0)
        items = R.indices[at]
        P = PI[items]  # (m, L, k)
        X = np.empty(P.shape[:2] + (k + 1,))
        X[..., 0] = 1.0
        X[..., 1:] = P + p0[users][:, None, :]
        X *= mask[..., None]
        C = w0 + a0[users][:, None] + b[items] + np.einsum("mlk,mk->ml", P, p0[users])
        Y = np.where(mask, y[at], 0.0)
        D = scale[users][:, None] * lam[None, :]
        theta[users] = solve(X, C, Y, mask, D)
    return theta


def _batches(counts: np.ndarray, d: int):
    """Users with ratings, in batches of similar counts (ascending) whose padded
    (users x ratings x d) arrays stay within ``_BATCH_ELEMENTS``."""
    order = np.argsort(counts, kind="stable")
    order = order[counts[order] > 0]
    start = 0
    while start < len(order):
        stop = start + 1
        while stop < len(order) and (stop + 1 - start) * counts[order[stop]] * d <= _BATCH_ELEMENTS:
            stop += 1
        yield order[start:stop]
        start = stop


def _ridge(X, C, Y, mask, D):
    """Squared loss: the normal equations, exactly (minimum norm where D is singular)."""
    A = np.einsum("mli,mlj->mij", X, X)
    idx = np.arange(X.shape[2])
    A[:, idx, idx] += D
    rhs = np.einsum("mli,ml->mi", X, (Y - C) * mask)
    out = np.zeros_like(rhs)
    ok = (D > 0).all(axis=1)
    if ok.any():
        out[ok] = np.linalg.solve(A[ok], rhs[ok][..., None])[..., 0]
    for j in np.flatnonzero(~ok):
        out[j] = np.linalg.lstsq(A[j], rhs[j], rcond=None)[0]
    return out


def _logistic_objective(X, C, Y, mask, D, theta):
    s = C + np.einsum("mld,md->ml", X, theta)
    return (mask * np.logaddexp(0.0, -Y * s)).sum(axis=1) + 0.5 * (D * theta * theta).sum(axis=1)


def _newton(X, C, Y, mask, D):
    """Logistic loss: damped Newton (IRLS) steps to convergence."""
    m, _, d = X.shape
    theta = np.zeros((m, d))
    idx = np.arange(d)
    live = np.ones(m, dtype=bool)
    for _ in range(_NEWTON_STEPS):
        if not live.any():
            return theta
        Xl, Cl, Yl, Ml, Dl, th = X[live], C[live], Y[live], mask[live], D[live], theta[live]
        s = Cl + np.einsum("mld,md->ml", Xl, th)
        g = np.einsum("mld,ml->md", Xl, Ml * -Yl * expit(-Yl * s)) + Dl * th
        H = np.einsum("mli,ml,mlj->mij", Xl, Ml * expit(s) * expit(-s), Xl)
        H[:, idx, idx] += Dl
        step = np.linalg.solve(H, g[..., None])[..., 0]
        dec = np.einsum("md,md->m", g, step)  # squared Newton decrement
        f = _logistic_objective(Xl, Cl, Yl, Ml, Dl, th)
        size = np.maximum(1.0, np.abs(f))
        done = dec <= 1e-20 * size  # at rounding level: a last full step, stop
        t = np.ones(len(th))
        todo = dec > 1e-8 * size  # beyond that the quadratic model is exact enough for full steps
        for _ in range(60):  # Armijo backtracking for the others
            if not todo.any():
                break
            f_try = _logistic_objective(Xl[todo], Cl[todo], Yl[todo], Ml[todo], Dl[todo],
                                        th[todo] - t[todo, None] * step[todo])
            fine = f_try <= f[todo] - 1e-4 * t[todo] * dec[todo]
            sub = np.flatnonzero(todo)
            t[sub[~fine]] *= 0.5
            todo[sub[fine]] = False
        theta[live] = th - t[:, None] * step
        live[np.flatnonzero(live)[done]] = False
    if live.any():
        warnings.warn(f"fold_in: Newton's method did not converge for {int(live.sum())} new user(s) in "
                      f"{_NEWTON_STEPS} steps.", ConvergenceWarning, stacklevel=5)
    return theta


def _dual_cd(X, C, Y, mask, D):
    """Hinge loss: dual coordinate descent, each user until its largest projected gradient
    is at most ``_DCD_TOL``, or until :func:`_polish` finds its exact solution. The batch
    is sorted by rating count, so the users with an l-th rating are a suffix of it."""
    m, _, d = X.shape
    Dinv = 1.0 / D
    Q = np.einsum("mld,md->ml", X * X, Dinv)
    alpha = np.zeros(mask.shape)
    out = np.zeros((m, d))
    act = np.arange(m)  # users still iterating
    for _ in range(_DCD_SWEEPS):
        Xa, Ca, Ya, Ma, Qa, Di = X[act], C[act], Y[act], mask[act], Q[act], Dinv[act]
        al, th = alpha[act], out[act]
        n = len(act)
        first = np.argmax(Ma, axis=0)
        for l in np.flatnonzero(Ma.any(axis=0)):
            s = slice(int(first[l]), n)
            x = Xa[s, l]
            G = Ya[s, l] * (Ca[s, l] + np.einsum("md,md->m", x, th[s])) - 1.0
            old = al[s, l].copy()
            new = np.clip(old - G / Qa[s, l], 0.0, 1.0)
            al[s, l] = new
            th[s] += ((new - old) * Ya[s, l])[:, None] * Di[s] * x
        th = Di * np.einsum("mld,ml->md", Xa, al * Ya)  # exact, so rounding cannot pile up
        G = Ya * (Ca + np.einsum("mld,md->ml", Xa, th)) - 1.0
        PG = np.where(al <= 0.0, np.minimum(G, 0.0), np.where(al >= 1.0, np.maximum(G, 0.0), G))
        worst = np.abs(PG * Ma).max(axis=1)
        finished = worst <= _DCD_TOL
        for j in np.flatnonzero(~finished & (worst <= _POLISH_FROM)):
            exact = _polish(Xa[j], Ca[j], Ya[j], Ma[j], Di[j], al[j])
            if exact is not None:
                th[j], finished[j] = exact, True
        alpha[act], out[act] = al, th
        act = act[~finished]
        if not len(act):
            return out
    warnings.warn(f"fold_in: dual coordinate descent did not reach a projected gradient of {_DCD_TOL:g} for "
                  f"{len(act)} new user(s) in {_DCD_SWEEPS} sweeps (worst {worst.max():.3g}).",
                  ConvergenceWarning, stacklevel=5)
    return out


def _polish(x, c, y, mask, dinv, alpha):
    """The exact solution of one user's hinge problem if the current ``alpha`` has found
    its bounds: with the ratings at α = 1 and the free ones (0 < α < 1, whose margin
    must be exactly 1) fixed, the free α solve a small linear system. Returns θ when the
    result satisfies every optimality condition (to ``_DCD_TOL``), else None."""
    x, c, y, alpha = x[mask], c[mask], y[mask], alpha[mask]
    upper, free = alpha >= 1.0, (alpha > 0.0) & (alpha < 1.0)
    g = (y[upper, None] * x[upper]).sum(axis=0)
    Xf = y[free, None] * x[free]
    af = np.linalg.lstsq((Xf * dinv) @ Xf.T, 1.0 - y[free] * c[free] - (Xf * dinv) @ g, rcond=None)[0]
    if (af < -_DCD_TOL).any() or (af > 1.0 + _DCD_TOL).any():
        return None
    theta = dinv * (g + Xf.T @ np.clip(af, 0.0, 1.0))
    G = y * (c + x @ theta) - 1.0
    lower = ~upper & ~free
    if (G[lower] < -_DCD_TOL).any() or (G[upper] > _DCD_TOL).any() or (np.abs(G[free]) > _DCD_TOL).any():
        return None
    return theta


# ---------------------------------------------------------------------- update=True
class _Grown:
    """The model's parameters and layout with ``fresh`` more users: a column each in the
    one-hot user block and, where the design has one, in the social block (their own
    friend columns, with zero parameters: they occur in no training row)."""

    def __init__(self, model, fresh: int):
        self.model = model
        meta = model._entity_meta
        self.n, self.fresh = meta["n_users"], fresh
        self.social = "social" in model.feature_blocks_
        grow_social = fresh if self.social else 0
        p = model.n_features_in_
        col = np.arange(p)
        old_u_start = meta["u_start"]
        # every old column's new position: after the user block +fresh, after the social block +fresh again
        self.moved = col + np.where(col < self.n, 0,
                                    np.where(col < old_u_start + (self.n if self.social else 0), fresh, fresh + grow_social))
        self.w = np.zeros(p + fresh + grow_social, model.w_.dtype)
        self.V = np.zeros((p + fresh + grow_social, model.V_.shape[1]), model.V_.dtype)
        self.w[self.moved], self.V[self.moved] = model.w_, model.V_
        self.u_start = old_u_start + fresh
        self.blocks = {}
        for name, (a, b) in model.feature_blocks_.items():
            if name == "user":
                self.blocks[name] = [0, self.n + fresh]
            elif name == "social":
                self.blocks[name] = [a + fresh, a + fresh + self.n + fresh]
            else:
                shift = fresh if a < old_u_start else fresh + grow_social
                self.blocks[name] = [a + shift, b + shift]

    def store(self, new: FoldIn, users: pd.Index, where: np.ndarray, theta: np.ndarray, Z) -> None:
        """Add the new users to the model: their columns, extra rows, ratings and
        parameters ``theta``. New arrays throughout, never in place, so copies of the model
        stay as they were."""
        m, n, fresh, n_grown = self.model, self.n, self.fresh, len(users)
        dt = m.V_.dtype
        w, V = self.w, self.V
        w[where], V[where] = theta[:, 0], theta[:, 1:]
        ZU = m._entity_ZU
        if ZU is not None:
            old = ZU.tocoo()
            keep = ~np.isin(old.row, where[where < n])  # known labels folded in again: their new row
            s_width = n if self.social else 0
            ocol = np.where(old.col >= s_width, old.col + (fresh if self.social else 0), old.col)
            add = Z.tocoo()
            ZU = sp.csr_matrix(
                (np.concatenate([old.data[keep], add.data.astype(dt)]),
                 (np.concatenate([old.row[keep], where[add.row]]), np.concatenate([ocol[keep], add.col]))),
                shape=(n_grown, Z.shape[1]), dtype=dt,
            )
            ZU.sort_indices()
        groups = getattr(m, "groups_", None)
        if groups is not None:  # the new columns occur in no training row: the user block's group, a new one
            grown = np.zeros(len(w), groups.dtype)
            grown[self.moved] = groups
            grown[n:n_grown] = groups[0] if n else 0
            if self.social:
                grown[self.blocks["social"][0] + n : self.blocks["social"][1]] = groups.max(initial=0) + 1
            m.groups_ = grown
        m._seen = new.grown_seen(n_grown, where)
        m.users_ = users
        m._entity_ZU = ZU
        m._entity_meta = {"n_users": n_grown, "n_items": m._entity_meta["n_items"], "u_start": self.u_start,
                          "i_start": self.u_start + (0 if ZU is None else ZU.shape[1])}
        m.feature_blocks_ = self.blocks
        m.n_features_in_ = len(w)
        m.w_, m.V_ = w, V
        m._refresh_parts()
