"""The coordinate-descent solver of :class:`~socialals.fm.FactorizationMachine`
(``solver="als"``), with the grouping of columns (graph colouring) that vectorises it.

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
"""

from __future__ import annotations

import time
from typing import Optional

import numpy as np
import scipy.sparse as sp

from .. import _config
from . import _kernels
from ._objective import _fm_decision, _penalty, _penalty_weights, _row_of_nnz

# greedy colouring of column runs is skipped when sum_rows nnz_row^2 exceeds this
_COLOR_BUDGET = 30_000_000
# ALS recomputes the residuals from scratch every this many iterations
_ALS_RESYNC = 5


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
    C = (B.T @ B).tocoo()
    off = C.row != C.col  # drop the diagonal (setdiag(0) would insert zeros where it is absent)
    C = sp.csr_matrix((C.data[off], (C.row[off], C.col[off])), shape=C.shape)
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


def fit_cd(model, X, y, w0, w, V, groups) -> None:
    """Run ``model.iterations`` sweeps of exact coordinate descent from ``(w0, w, V)``
    (updated in place) on the CSR matrix ``X``, with the column ``groups`` (columns of a
    group never share a row); the state goes to ``model._store`` after every sweep,
    ``model._after_iteration`` may stop early."""
    dt = V.dtype
    n = X.shape[0]
    k = V.shape[1]
    reg_w0, reg_w, reg_V = model._regs()
    c, c0 = _penalty_weights(X, model.reg_scaling)
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
    model._store(w0, w, V, history)
    t0 = time.perf_counter()
    for it in range(int(model.iterations)):
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
                        dq = _cd_factor_full(G, vf, r, e, buf, buf2, reg_V, dt)
                        if j < last:
                            q += dq
                    else:
                        _cd_factor_partial(G, vf, q, e, reg_V, dt, j < last)
                continue
            # every group covers every row: q_f = Σ_groups own_g, own_g = x v_f[loc]
            own = []
            for j, G in enumerate(grp):
                part = G.expand(vf[G.cols], vx[j])
                own.append(part if G.x is None else np.multiply(part, G.x, out=vx[j]))
            if len(grp) == 1:
                r.fill(0)
                _cd_factor_full(grp[0], vf, r, e, buf, buf2, reg_V, dt)
            elif len(grp) == 2:
                # the other group's part is all of q but the own part: no q needed
                dq = _cd_factor_full(grp[0], vf, own[1], e, buf, buf2, reg_V, dt)
                own[0] += dq
                _cd_factor_full(grp[1], vf, own[0], e, buf, buf2, reg_V, dt)
            else:
                np.add(own[0], own[1], out=q)
                for part in own[2:]:
                    q += part
                for j, G in enumerate(grp):
                    np.subtract(q, own[j], out=r)
                    dq = _cd_factor_full(G, vf, r, e, buf, buf2, reg_V, dt)
                    if j < last:
                        q += dq
        obj = 0.5 * float(np.dot(e.astype(np.float64), e)) + _penalty(w0, w, VT.T, reg_w0, reg_w, reg_V, c, c0)
        history.append(obj)
        model._store(w0, w, np.ascontiguousarray(VT.T), history)
        if model._after_iteration(it, history):
            break
    model._finish(t0, history)

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

def _cd_factor_partial(G, vf, q, e, reg_V, dt, update_q) -> None:
    """As :func:`_cd_factor_full` for a group that covers only ``G.rows``, with q: the
    compiled kernel (the same update in two fused passes over the rows) or, with the
    ``compiled`` switch off, :func:`_cd_factor_partial_reference`."""
    _config.compiled_or_reference(
        "fm.cd_factor_partial",
        lambda: _kernels.cd_factor_partial(G.rows, G.loc, G.x, G.cols, vf, q, e, G.lam_V, update_q),
        lambda: _cd_factor_partial_reference(G, vf, q, e, dt, update_q),
    )


def _cd_factor_partial_reference(G, vf, q, e, dt, update_q) -> None:
    """The numpy reference of :func:`_cd_factor_partial`."""
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
