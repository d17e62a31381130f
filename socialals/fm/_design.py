"""The DataFrame side of :class:`~socialals.fm.FactorizationMachine`: the design matrix
built from ratings, the social graph and side features, and the per-entity blocks that
score any (user, item) pair without building its design row.

See :mod:`socialals.fm` ("Two ways in") for the design and the decomposition.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple, Optional

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..data import Dataset
from ..exceptions import DataWarning
from ._cd import _colour_columns
from ._objective import _row_of_nnz


class Design(NamedTuple):
    """What :func:`build_design` returns."""

    X: sp.csr_matrix  # one row per rating
    groups: np.ndarray  # column group ids for coordinate descent
    blocks: dict  # block name -> [start, stop] column range
    ZU: Optional[sp.csr_matrix]  # extra user-side columns per user (social, user features)
    ZI: Optional[sp.csr_matrix]  # extra item-side columns per item
    meta: dict  # n_users, n_items and the first column of ZU / ZI


def build_design(data: Dataset, social_features: bool, user_features, item_features, dt) -> Design:
    """The design matrix of the rated pairs of ``data`` (see :mod:`socialals.fm`), its column
    groups for coordinate descent, and the entity blocks that score any pair later."""
    n_users, n_items = data.n_users, data.n_items
    blocks = {"user": slice(0, n_users), "item": slice(n_users, n_users + n_items)}
    pos = n_users + n_items
    u_extra, i_extra = [], []
    if social_features and data.has_social:
        u_extra.append(social_rows(data.social_matrix(), dt))
        blocks["social"] = slice(pos, pos + n_users)
        pos += n_users
    if user_features is not None:
        F = side_matrix(user_features, data.users, "user_features", dt)
        u_extra.append(F)
        blocks["user_features"] = slice(pos, pos + F.shape[1])
        pos += F.shape[1]
    if item_features is not None:
        F = side_matrix(item_features, data.items, "item_features", dt)
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
    X = _rating_rows(row_u, col_i, n_users, n_items, ZUx, ZIx, dt)

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

    return Design(
        X=X,
        groups=groups,
        blocks={name: [int(b.start), int(b.stop)] for name, b in blocks.items()},
        ZU=ZUx,
        ZI=ZIx,
        meta={"n_users": int(n_users), "n_items": int(n_items), "u_start": int(u_start), "i_start": int(i_start)},
    )


def social_rows(S: sp.csr_matrix, dt) -> sp.csr_matrix:
    """The social block: each row of link weights ``S`` normalised to sum to 1 (rows
    without links stay empty)."""
    deg = np.asarray(S.sum(axis=1)).ravel()
    inv = np.divide(1.0, deg, out=np.zeros_like(deg), where=deg > 0)
    out = sp.csr_matrix(sp.diags(inv) @ S, dtype=dt)
    out.eliminate_zeros()
    return out


def _rating_rows(row_u, col_i, n_users, n_items, ZUx, ZIx, dt) -> sp.csr_matrix:
    """The design rows ``[one-hot u | one-hot i | ZU[u] | ZI[i]]`` of the rated pairs."""
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


def side_matrix(frame, labels: pd.Index, name: str, dt, what: str = "known label(s)") -> sp.csr_matrix:
    """A side-feature frame indexed by label as a (len(labels), n_columns) matrix; labels
    without a row get zeros (with a DataWarning that counts them)."""
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
            f"{name}: {missing} of {len(labels)} {what} have no row; their features are 0.",
            DataWarning,
            stacklevel=5,
        )
    M = np.zeros((len(labels), values.shape[1]), dtype=np.float64)
    M[pos >= 0] = values[pos[pos >= 0]]
    return sp.csr_matrix(M, dtype=dt)


def entity_parts(ent: dict, w: np.ndarray, V: np.ndarray) -> list:
    """(a, P_U, b, P_I) with ŷ(u, i) = w0 + a_u + b_i + ⟨P_U[u], P_I[i]⟩.

    ``P_U[u]`` is the sum of ``x_l v_l`` over u's design features (one-hot, social,
    side) and ``a_u`` their linear terms plus all their pairwise interactions among
    themselves; likewise for items. The cross terms are exactly ⟨P_U[u], P_I[i]⟩.
    """
    w, V = w.astype(np.float64), V.astype(np.float64)
    out = []
    for Zx, lo, n, start in (
        (ent["ZU"], 0, ent["n_users"], ent["u_start"]),
        (ent["ZI"], ent["n_users"], ent["n_items"], ent["i_start"]),
    ):
        m = 0 if Zx is None else Zx.shape[1]
        out.extend(side_parts(Zx, w[lo : lo + n], V[lo : lo + n], w[start : start + m], V[start : start + m]))
    return out


def side_parts(Zx, w1: np.ndarray, V1: np.ndarray, we: np.ndarray, Ve: np.ndarray) -> tuple:
    """``(a, P)`` of one side's entities: one-hot parameters ``w1`` (n,), ``V1`` (n, k) and
    extra columns ``Zx`` (n, m; None for none) with parameters ``we``, ``Ve`` (float64)."""
    a, P = w1.copy(), V1.copy()
    if Zx is not None:
        Z = Zx.astype(np.float64)
        Pe = Z @ Ve
        Z2 = Z.multiply(Z).tocsr()
        a += Z @ we + np.einsum("ij,ij->i", P, Pe)  # linear + (one-hot x extras)
        a += 0.5 * (np.einsum("ij,ij->i", Pe, Pe) - Z2 @ np.einsum("ij,ij->i", Ve, Ve))  # extras x extras
        P += Pe
    return a, P


def pair_rows(ent: dict, u: np.ndarray, i: np.ndarray, dt) -> sp.csr_matrix:
    """Design rows of the index pairs (u, i) (-1 = unknown: that side contributes no
    feature), columns as in :func:`build_design`."""
    n_users, n_items = ent["n_users"], ent["n_items"]
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
