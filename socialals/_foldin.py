"""The data side of fold-in: new users' ratings and links in a fitted model's index space.

Used by :meth:`socialals.als._ALSFamily.fold_in` and
:meth:`socialals.fm.FactorizationMachine.fold_in`; the maths (each new row solves the
model's own user half-step, or the FM's row objective) lives with the models. Policies, as in :mod:`socialals.data`:
duplicate (user, item) pairs are merged into their mean, ratings of items the model does
not know and links to friends neither known nor new are dropped, each with one counted
:class:`~socialals.DataWarning`; the caller's frames are never modified.
"""

from __future__ import annotations

import copy
import functools
import warnings
from types import SimpleNamespace
from typing import Optional

import numpy as np
import pandas as pd
import scipy.sparse as sp
from joblib import effective_n_jobs

from . import _kernels
from ._config import one_blas_thread
from ._linalg import solve_rows
from .data import _check_labels, _check_numeric, _require_frame, stored_dtype
from .exceptions import DataWarning
from .social import edge_similarity, symmetric_weights

__all__ = ["FoldIn", "FoldInMixin", "factor_columns", "unique_links"]


class FoldIn:
    """New users of ``model``: ``labels`` (n of them), ``R`` (n x model items, CSR)."""

    def __init__(self, model, ratings: Optional[pd.DataFrame], social: Optional[pd.DataFrame]):
        self.model = model
        c = model.columns_
        empty = ratings is None or (isinstance(ratings, pd.DataFrame) and len(ratings) == 0)
        if empty and social is None:
            raise ValueError("fold_in: the ratings frame is empty and no social links were given: nothing to fold in.")
        users, items, values = np.zeros(0, object), np.zeros(0, np.int64), np.zeros(0)
        if not empty:
            _require_frame(ratings, "ratings", [c.user, c.item, c.rating])
            users = _check_labels(ratings, c.user, "ratings")
            values = _check_numeric(ratings, c.rating, "ratings")
            items = model.items_.get_indexer(_check_labels(ratings, c.item, "ratings"))
            unknown = items < 0
            if unknown.any():
                warnings.warn(f"fold_in: dropped {int(unknown.sum())} rating(s) of item(s) the model does not know.",
                              DataWarning, stacklevel=3)
            labels = pd.unique(users)  # every user of the frame is folded in, even if all items were dropped
            users, items, values = users[~unknown], items[~unknown], values[~unknown]
        else:
            labels = np.zeros(0, dtype=object)
        self.links = None
        if social is not None:
            labels = self._read_social(social, labels)
        if len(labels) == 0:
            raise ValueError("fold_in: no new user to fold in (every social link names a known user).")
        if getattr(labels, "dtype", None) == object:  # numbers held as objects become numbers on every pandas
            labels = pd.Series(labels, dtype=object).infer_objects().to_numpy()
        self.labels = pd.Index(labels)
        rows = self.labels.get_indexer(users)
        shape = (len(self.labels), len(model.items_))
        key = rows.astype(np.int64) * shape[1] + items
        order = np.argsort(key, kind="stable")
        ordered = key[order]
        if np.any(ordered[1:] == ordered[:-1]):  # repeated (user, item) pairs: their mean
            frame = pd.DataFrame({"u": rows, "i": items, "r": values})
            merged = frame.groupby(["u", "i"], sort=True)["r"].mean()
            warnings.warn(f"fold_in: merged {len(frame) - len(merged)} duplicate (user, item) rating(s) into their mean.",
                          DataWarning, stacklevel=3)
            u, i = merged.index.get_level_values(0).to_numpy(), merged.index.get_level_values(1).to_numpy()
            r = merged.to_numpy(np.float64)
        else:  # the common case, without a group-by: each row's items in order
            u, i, r = rows[order], items[order], np.asarray(values, dtype=np.float64)[order]
        self.R = sp.csr_matrix((r, (u, i)), shape=shape)
        self.R.sort_indices()

    @property
    def n(self) -> int:
        return len(self.labels)

    def _read_social(self, social, labels):
        """Keep the links that touch a new user; unknown ``user``s with links are new users."""
        c = self.model.columns_
        _require_frame(social, "social", [c.user, c.friend], allow_empty=True)
        if len(social) == 0:  # no links: as social=None
            return labels
        src = _check_labels(social, c.user, "social")
        dst = _check_labels(social, c.friend, "social")
        weight = _check_numeric(social, c.weight, "social", nonnegative=True) if c.weight in social else np.ones(len(src))
        known = self.model.users_
        rated = set(labels)
        src_known, dst_known = known.get_indexer(src) >= 0, known.get_indexer(dst) >= 0
        src_new = np.array([s in rated for s in src], dtype=bool) | ~src_known
        dst_new = np.array([d in rated for d in dst], dtype=bool)
        touching = src_new | dst_new
        loops = touching & (src == dst)
        dangling = touching & ~loops & ~(dst_new | dst_known)
        if dangling.any():
            warnings.warn(f"fold_in: dropped {int(dangling.sum())} link(s) to friend(s) neither known to the model nor new.",
                          DataWarning, stacklevel=4)
        if loops.any():
            warnings.warn(f"fold_in: dropped {int(loops.sum())} self-loop(s).", DataWarning, stacklevel=4)
        keep = touching & ~loops & ~dangling
        labels = pd.unique(np.concatenate([np.asarray(labels, dtype=object), src[keep & src_new].astype(object)]))
        self.links = (src[keep], dst[keep], weight[keep])
        return labels

    def social_rows(self, model) -> Optional[sp.csr_matrix]:
        """The new users' rows of ``W = (S + Sᵀ)/2`` over (known users, then new users),
        with the model's similarity applied; None without links."""
        if self.links is None or len(self.links[0]) == 0:
            return None
        src, dst, w = self.links
        n_known = len(model.users_)

        def pos(x):  # new users after the known ones; a new label wins over a known one
            mine = self.labels.get_indexer(x)
            return np.where(mine >= 0, n_known + mine, model.users_.get_indexer(x))

        a, b, w = unique_links(pos(src), pos(dst), w)
        if model.similarity is not None:
            R = sp.vstack([model._seen, self.R]).tocsr()
            w = w * edge_similarity(R, a, b, model.similarity, effective_n_jobs(model.n_jobs))
        W = symmetric_weights(n_known + self.n, a, b, w)
        return W[n_known:].tocsr()

    def grown_users(self) -> tuple[pd.Index, np.ndarray]:
        """The model's user labels with the new ones appended, and each new user's row in
        them (a label the model knows keeps its row)."""
        m = self.model
        pos = m.users_.get_indexer(self.labels)
        fresh = pos < 0
        where = np.where(fresh, len(m.users_) + np.cumsum(fresh) - 1, pos)
        return m.users_.append(self.labels[fresh]), where

    def grown_seen(self, n_users: int, where: np.ndarray) -> sp.csr_matrix:
        """The model's training matrix with the new users' rows (at ``where``) replaced by
        their fold-in ratings, ``n_users`` rows in all (a new matrix)."""
        m = self.model
        seen = m._seen.tocoo()
        replaced = np.isin(seen.row, where[where < m._seen.shape[0]])
        new = self.R.tocoo()
        rows = np.concatenate([seen.row[~replaced], where[new.row]])
        cols = np.concatenate([seen.col[~replaced], new.col])
        vals = np.concatenate([seen.data[~replaced].astype(np.float64), new.data])
        dtype = m._check_dtype() if "dtype" in m.get_params() else np.float64
        out = sp.csr_matrix((vals.astype(stored_dtype(vals, dtype)), (rows, cols)), shape=(n_users, len(m.items_)))
        out.sort_indices()
        return out

    def update_model(self, U_new: np.ndarray, b_new: Optional[np.ndarray]) -> None:
        """Add the new users to the model (replacing rows of labels it knows); new arrays
        throughout, never in place, so copies of the model stay as they were."""
        m = self.model
        n_before = len(m.users_)
        users, where = self.grown_users()
        n_fresh = len(users) - n_before
        U = np.vstack([m.user_factors_, np.zeros((n_fresh, U_new.shape[1]), m.user_factors_.dtype)])
        U[where] = U_new
        if b_new is not None:
            b = np.concatenate([m.user_bias_, np.zeros(n_fresh, m.user_bias_.dtype)])
            b[where] = b_new
            m.user_bias_ = b
        m._seen = self.grown_seen(len(users), where)
        W = getattr(m, "social_weights_", None)
        if W is not None:  # the graph the model was fitted with, grown to the new size (no new links)
            grown = sp.csr_matrix((W.data, W.indices, W.indptr), shape=(n_before, len(users)))
            W = sp.vstack([grown, sp.csr_matrix((len(users) - n_before, len(users)))]).tocsr()
            m.social_weights_ = W
        m.users_ = users
        m.user_factors_ = U


@functools.lru_cache(maxsize=32)
def factor_columns(k: int, bias: bool) -> pd.Index:
    """A fold-in frame's columns, ``factor_0 … factor_{k-1}`` (and ``bias``): one Index per
    shape, as building it costs about as much as solving one user."""
    return pd.Index([f"factor_{a}" for a in range(k)] + (["bias"] if bias else []))


def unique_links(a: np.ndarray, b: np.ndarray, w: np.ndarray):
    """The links (a -> b, weight w) without repeats (the first kept, as in ``fit``), with a
    counted DataWarning when some were dropped."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    pairs = np.ones(len(a), dtype=bool)  # repeats of an earlier link
    if len(a):
        lo = min(int(a.min()), int(b.min()))
        span = max(int(a.max()), int(b.max())) - lo + 1
        pairs[np.unique((a - lo) * span + (b - lo), return_index=True)[1]] = False  # first occurrences
    if pairs.any():
        warnings.warn(f"fold_in: dropped {int(pairs.sum())} duplicate link(s).", DataWarning, stacklevel=5)
        a, b, w = a[~pairs], b[~pairs], w[~pairs]
    return a, b, w


class FoldInMixin:
    """``fold_in`` and ``recommend_new`` for the ALS family: the data side is :class:`FoldIn`,
    the maths each model's own ``_prepare``, ``_system`` and ``_fold_in_state``."""

    def fold_in(self, ratings: Optional[pd.DataFrame] = None, social: Optional[pd.DataFrame] = None, *,
                update: bool = False) -> pd.DataFrame:
        """Factors of new users, solved with the item factors held fixed.

        Each new user's row is exactly the model's own user half-step (the class
        docstring's system): ``ALS`` its minimum-norm rule, ``RegularizedALS`` its
        regularised (and biased, and missing-data) row, ``SocialALS`` with the new users'
        links (the social frame, columns as in ``fit``) to users the model knows and to
        one another. Links among new users are resolved by Jacobi sweeps, the same step
        as in ``fit``, until no factor moves by more than 1e-12 relative (at most 500).

        Parameters
        ----------
        ratings : DataFrame, optional
            The new users' ratings (the columns used in ``fit``). A label the model
            already knows is folded in afresh from these ratings. Ratings of items the
            model does not know are dropped with a :class:`~socialals.DataWarning`.
        social : DataFrame, optional
            Used by ``SocialALS`` only. Rows whose ``user`` is a new user (in ``ratings``
            or unknown to the model: a user with friends and no ratings yet) link it to
            its ``friend``; rows whose ``friend`` is new count too (as in ``fit``, links
            are symmetrised). Friends neither known nor new are dropped with a
            ``DataWarning``. Known users' factors are not changed.
        update : bool, default False
            Also add the new users to the model (or replace the rows of known labels), so
            that ``predict`` and ``recommend`` know them and ``save`` stores them.

        Returns
        -------
        DataFrame
            Indexed by the new users' labels; columns ``factor_0 … factor_{k-1}`` (and
            ``bias`` with biases).
        """
        self._check_fitted()
        if not isinstance(update, (bool, np.bool_)):
            raise ValueError(f"The 'update' parameter of fold_in must be a bool; got {update!r}.")
        new = FoldIn(self, ratings, social if self._include_social_users else None)
        fit = SimpleNamespace(
            data=SimpleNamespace(n_users=new.n, n_items=len(self.items_), n_rated_users=new.n, R=self._seen,
                                 has_social=False, mean_rating=lambda: self.global_mean_),
            k=int(self.user_factors_.shape[1]), dtype=self.user_factors_.dtype, n_jobs=self.n_jobs,
            U=np.zeros((new.n, self.user_factors_.shape[1]), self.user_factors_.dtype), V=self.item_factors_,
            rows={"user": new.R}, order={"user": _kernels.row_order(np.diff(new.R.indptr), self.user_factors_.shape[1])},
        )
        self._prepare(fit)
        self._fold_in_state(fit, new)
        limit = one_blas_thread()
        try:
            for _ in range(500):
                X, _sse = solve_rows(self._system(fit, "user"), fit.order["user"], n_jobs=self.n_jobs)
                if not self._fold_in_again(fit, X):
                    break
        finally:
            limit.restore_original_limits()
        k, biases = fit.k, self._uses_biases()
        frame = pd.DataFrame(np.asarray(X[:, : k + biases], dtype=np.float64),
                             index=pd.Index(new.labels, name=self.columns_.user), columns=factor_columns(k, biases))
        if update:
            new.update_model(np.ascontiguousarray(X[:, :k]), X[:, k].copy() if biases else None)
        return frame

    # keywords of recommend_new that go to fold_in rather than to recommend
    _fold_in_keywords: tuple = ()

    def recommend_new(self, ratings: Optional[pd.DataFrame] = None, social: Optional[pd.DataFrame] = None,
                      n: int = 10, **kwargs) -> pd.DataFrame:
        """Top-``n`` items for new users, folded in (:meth:`fold_in`) without changing the
        model; their rated items are excluded. Returns ``recommend``'s frame; further
        keywords go to :meth:`recommend` (``user_features`` of the factorization machine
        to its :meth:`fold_in`)."""
        self._check_fitted()
        fold_kwargs = {key: kwargs.pop(key) for key in self._fold_in_keywords if key in kwargs}
        tmp = copy.copy(self)
        labels = tmp.fold_in(ratings, social, update=True, **fold_kwargs).index
        return tmp.recommend(list(labels), n=n, **kwargs)
