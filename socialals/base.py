"""The shared estimator: hyperparameters, fitted state, ``predict`` and ``recommend``.

Subclasses implement

* ``_fit(data: Dataset, rng: np.random.Generator)`` — learn from indexed data;
* ``_score_pairs(u, i)`` — predictions for known user and item indices;
* ``_score_users(u)`` — a dense (len(u), n_items) score block;
* ``_fallback(u, i)`` — predictions where the user or the item is unknown (index -1).

and declare ``_include_social_users`` (does the social frame add users?).
"""

from __future__ import annotations

import contextlib
import inspect
import numbers
import warnings
from typing import Any, Optional

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone

from . import _registry
from ._persistence import load_model, save_model
from . import _validation
from .data import Columns, Dataset, build_dataset
from .exceptions import DataWarning, NotFittedError

__all__ = ["BaseRecommender", "clone", "check_random_state"]


def check_random_state(seed, owner: str = "the model") -> np.random.Generator:
    """Turn ``None``, an int >= 0 or a Generator into a :class:`numpy.random.Generator`
    (see :func:`socialals._validation.check_random_state`)."""
    return _validation.check_random_state(seed, owner)


class BaseRecommender(BaseEstimator):
    """Base class of every socialals model: a scikit-learn estimator.

    The constructor only stores hyperparameters; they are validated at the start of
    :meth:`fit`. Learned state ends in ``_``. ``sklearn.base.clone`` (also
    ``socialals.clone``) makes an unfitted copy, and :meth:`score` lets scikit-learn's
    model selection (``GridSearchCV``, ``cross_val_score``) rank models on a rating
    DataFrame; the social graph is data, passed to ``fit`` as a fit parameter::

        GridSearchCV(SocialALS(), {"alpha": [0.1, 1.0]}, cv=3).fit(ratings, social=social)

    scikit-learn splits every fit parameter that has exactly as many rows as ``ratings``
    along with them; should a social frame have exactly ``len(ratings)`` rows, use
    :class:`socialals.model_selection.GridSearch`, which passes it whole.
    """

    _include_social_users = False

    def __init_subclass__(cls, **kwargs):
        # Public model classes of the package go into the registry that load() and the
        # command line read (see socialals._registry); no module needs to import them.
        super().__init_subclass__(**kwargs)
        _registry.register(cls)

    # ------------------------------------------------------------------ parameters
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values() if p.name != "self" and p.kind != p.VAR_KEYWORD]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Hyperparameters as a dict (scikit-learn compatible)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params) -> "BaseRecommender":
        """Set hyperparameters; unknown names raise ``ValueError``."""
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"Invalid parameter {name!r} for {type(self).__name__}; valid parameters: {valid}.")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def _validate_params(self) -> None:  # overridden
        pass

    def _check_params(self) -> None:
        """Every hyperparameter check ``fit`` makes (used as is by ``load``)."""
        self._validate_params()
        if "random_state" in self._param_names():
            check_random_state(self.random_state, type(self).__name__)

    def _bad_param(self, name: str, expected: str):
        return _validation.invalid(name, type(self).__name__, expected, getattr(self, name))

    def _check_int(self, name: str, low: int) -> None:
        v = getattr(self, name)
        if isinstance(v, bool) or not isinstance(v, (numbers.Integral, np.integer)) or v < low:
            raise self._bad_param(name, f"an int >= {low}")

    def _check_float(self, name: str, low: float = 0.0) -> None:
        v = getattr(self, name)
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not np.isfinite(v) or v < low:
            raise self._bad_param(name, f"a float >= {low:g}")

    def _check_bool(self, name: str) -> None:
        if not isinstance(getattr(self, name), (bool, np.bool_)):
            raise self._bad_param(name, "a bool")

    def _check_choice(self, name: str, choices) -> None:
        if getattr(self, name) not in choices:
            raise self._bad_param(name, f"one of {list(choices)}")

    def _check_n_jobs(self) -> None:
        v = self.n_jobs
        if v is not None and (isinstance(v, bool) or not isinstance(v, (numbers.Integral, np.integer)) or v == 0):
            raise self._bad_param("n_jobs", "None or a non-zero int")

    def _check_dtype(self) -> np.dtype:
        try:
            dt = np.dtype(self.dtype)
        except TypeError:
            raise self._bad_param("dtype", "float64 or float32") from None
        if dt not in (np.float64, np.float32):
            raise self._bad_param("dtype", "float64 or float32")
        return dt

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        ratings: pd.DataFrame,
        social: Optional[pd.DataFrame] = None,
        *,
        user_col: str = "user",
        item_col: str = "item",
        rating_col: str = "rating",
        friend_col: str = "friend",
        weight_col: str = "weight",
    ) -> "BaseRecommender":
        """Fit the model.

        Parameters
        ----------
        ratings : DataFrame
            One row per rating with columns ``user``, ``item``, ``rating``. Labels may be
            ints or strings. Duplicate (user, item) pairs are merged into their mean (with
            a :class:`~socialals.DataWarning`).
        social : DataFrame, optional
            Social links ``user, friend[, weight]`` (directed; weight 1 where absent).
            Models without a social term ignore it.
        user_col, item_col, rating_col, friend_col, weight_col : str
            Column names, remembered for :meth:`predict`.

        Returns
        -------
        self
        """
        cols = Columns(user_col, item_col, rating_col, friend_col, weight_col)
        return self._fit_frames(ratings, social, cols)

    def _fit_frames(self, ratings, social, cols: Columns, **fit_data) -> "BaseRecommender":
        """Validate, index the frames and learn; ``fit_data`` (e.g. side features) goes to
        ``_fit`` as keyword arguments."""
        self._check_params()
        data = build_dataset(ratings, social, columns=cols, include_social_users=self._include_social_users)
        rng = check_random_state(getattr(self, "random_state", None), type(self).__name__)
        with self._atomic_fit():
            self.columns_ = cols
            self.users_ = data.users
            self.items_ = data.items
            self.rating_mean_ = float(data.R.data.mean())
            self._seen = data.R
            self._fit(data, rng, **fit_data)
        return self

    # private fitted state beside the public ``name_`` attributes; subclasses extend it
    _private_fitted_attributes = ("_seen",)

    def _fitted_names(self) -> list:
        private = set(self._private_fitted_attributes)
        return [name for name in vars(self) if name.endswith("_") or name in private]

    @contextlib.contextmanager
    def _atomic_fit(self):
        """Atomic fit: the block starts from an unfitted model, and the fitted state of a
        previous fit (public ``name_`` and ``_private_fitted_attributes``) is restored if
        the block fails or is interrupted (a first fit that fails leaves the model unfitted)."""
        previous = {name: getattr(self, name) for name in self._fitted_names()}
        try:
            for name in previous:
                delattr(self, name)
            yield
        except BaseException:
            for name in self._fitted_names():
                delattr(self, name)
            vars(self).update(previous)
            raise

    def _fit(self, data: Dataset, rng: np.random.Generator, **fit_data) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ persistence
    def save(self, path):
        """Save the fitted model to one ``.npz`` file that loads without running code.

        Parameters
        ----------
        path : str or path-like
            File to write, exactly as named (``.npz`` is the usual suffix).

        Returns
        -------
        pathlib.Path
            The file written. See :mod:`socialals._persistence` for the format;
            parameters that cannot be stored (e.g. a callback) are saved as ``None``
            with a warning.
        """
        return save_model(self, path)

    @classmethod
    def load(cls, path) -> "BaseRecommender":
        """Load a model written by :meth:`save` (see :func:`socialals.load`).

        Called on a subclass (``SocialALS.load(path)``) it also checks that the file
        holds that class; a mismatch raises ``ValueError``.
        """
        return load_model(path, expected=None if cls is BaseRecommender else cls)

    def _check_fitted(self) -> None:
        if not hasattr(self, "users_"):
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet; call fit() first.")

    # ------------------------------------------------------------------ predicting
    def _pairs_to_labels(self, pairs):
        c = self.columns_
        if isinstance(pairs, pd.DataFrame):
            missing = [col for col in (c.user, c.item) if col not in pairs.columns]
            if missing:
                raise ValueError(f"'pairs' is missing column(s) {missing}; it has columns {list(pairs.columns)}.")
            return pairs[c.user].to_numpy(), pairs[c.item].to_numpy()
        arr = np.asarray(pairs, dtype=object)
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise ValueError(
                f"'pairs' must be a DataFrame with columns {c.user!r}, {c.item!r} or an (n, 2) array; got shape {arr.shape}."
            )
        return arr[:, 0], arr[:, 1]

    def predict(self, pairs) -> np.ndarray:
        """Predicted ratings for (user, item) pairs.

        Parameters
        ----------
        pairs : DataFrame with the user and item columns used in ``fit``, or an (n, 2) array

        Returns
        -------
        ndarray of float64, shape (n,)
            Pairs with an unknown user or item get the model's fallback (the training
            mean, plus whichever bias is known for models with biases), with one
            :class:`~socialals.DataWarning` that counts them.
        """
        self._check_fitted()
        users, items = self._pairs_to_labels(pairs)
        u = self.users_.get_indexer(users)
        i = self.items_.get_indexer(items)
        out = np.empty(len(u), dtype=np.float64)
        known = (u >= 0) & (i >= 0)
        if known.any():
            out[known] = self._score_pairs(u[known], i[known])
        if not known.all():
            unknown = ~known
            warnings.warn(
                f"predict: {int(unknown.sum())} of {len(u)} pair(s) have an unknown user or item "
                f"({int((u < 0).sum())} unknown user(s), {int((i < 0).sum())} unknown item(s)); "
                "they get the fallback prediction.",
                DataWarning,
                stacklevel=2,
            )
            out[unknown] = self._fallback(u[unknown], i[unknown])
        return out

    def _fallback(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        return np.full(len(u), self.rating_mean_)

    def score(self, ratings, y=None) -> float:
        """Minus the RMSE of :meth:`predict` on ``ratings`` (higher is better).

        The scikit-learn convention (``score`` of an estimator, higher is better), so that
        ``GridSearchCV`` and ``cross_val_score`` rank models by RMSE without a scorer.

        Parameters
        ----------
        ratings : DataFrame
            Rows with the user, item and rating columns used in ``fit``.
        y : array-like, optional
            True ratings, one per row; default: the rating column of ``ratings``.

        Returns
        -------
        float
            ``-sqrt(mean((predicted - true)²))``; unknown users or items get the fallback
            prediction (with a :class:`~socialals.DataWarning`), as in :meth:`predict`.
        """
        self._check_fitted()
        c = self.columns_
        if y is None:
            if not isinstance(ratings, pd.DataFrame) or c.rating not in ratings.columns:
                raise ValueError(
                    f"score needs the true ratings: a DataFrame with the {c.rating!r} column, or y; "
                    f"got {type(ratings).__name__}" + (f" with columns {list(ratings.columns)}" if isinstance(ratings, pd.DataFrame) else "") + "."
                )
            y = ratings[c.rating]
        truth = np.asarray(y, dtype=np.float64)
        pred = np.asarray(self.predict(ratings), dtype=np.float64)
        if truth.shape != pred.shape:
            raise ValueError(f"score: 'y' has shape {truth.shape}; expected one rating per pair, {pred.shape}.")
        if not len(truth):
            raise ValueError("score: 'ratings' is empty.")
        return -float(np.sqrt(np.mean((pred - truth) ** 2)))

    def recommend(
        self, users=None, n: int = 10, exclude_seen: bool = True, *, batch_size: int = 1024
    ) -> pd.DataFrame:
        """Top-``n`` items per user.

        Parameters
        ----------
        users : label, list of labels, or None
            ``None`` recommends to every user the model knows. An unknown label raises
            ``KeyError`` naming it.
        n : int
            Items per user (fewer if fewer unseen items remain).
        exclude_seen : bool
            Leave out the items each user rated in training.
        batch_size : int
            Users scored at once (memory ~ batch_size x n_items floats).

        Returns
        -------
        DataFrame with columns ``user, item, rank, score``, best first per user, in the
        order of ``users``.
        """
        self._check_fitted()
        if isinstance(n, bool) or not isinstance(n, (numbers.Integral, np.integer)) or n < 1:
            raise ValueError(f"The 'n' parameter of recommend must be an int >= 1; got {n!r}.")
        if users is None:
            uidx = np.arange(len(self.users_))
        else:
            if np.ndim(users) == 0 or isinstance(users, (str, tuple)):
                users = [users]
            labels = pd.Index(list(users)) if not isinstance(users, pd.Index) else users
            uidx = self.users_.get_indexer(labels)
            if (uidx < 0).any():
                missing = list(labels[uidx < 0][:5])
                raise KeyError(f"Unknown user(s) {missing} ({int((uidx < 0).sum())} in all); the model was not fitted on them.")
        n_items = len(self.items_)
        n_eff = min(int(n), n_items)
        seen = self._seen
        all_u, all_i, all_s, all_r = [], [], [], []
        for s in range(0, len(uidx), batch_size):
            ub = uidx[s : s + batch_size]
            scores = np.asarray(self._score_users(ub), dtype=np.float64)
            if exclude_seen:
                block = seen[ub]
                rows = np.repeat(np.arange(len(ub)), np.diff(block.indptr))
                scores[rows, block.indices] = -np.inf
            if n_eff < n_items:
                top = np.argpartition(-scores, n_eff - 1, axis=1)[:, :n_eff]
            else:
                top = np.broadcast_to(np.arange(n_items), (len(ub), n_items)).copy()
            top_scores = np.take_along_axis(scores, top, axis=1)
            order = np.lexsort((top, -top_scores), axis=-1)  # best first, ties by item index
            top = np.take_along_axis(top, order, axis=1)
            top_scores = np.take_along_axis(top_scores, order, axis=1)
            valid = np.isfinite(top_scores)
            rank = np.broadcast_to(np.arange(1, n_eff + 1), top.shape)
            all_u.append(np.repeat(ub, valid.sum(axis=1)))
            all_i.append(top[valid])
            all_s.append(top_scores[valid])
            all_r.append(rank[valid])
        c = self.columns_
        u_cat = np.concatenate(all_u) if all_u else np.zeros(0, dtype=np.int64)
        i_cat = np.concatenate(all_i) if all_i else np.zeros(0, dtype=np.int64)
        return pd.DataFrame(
            {
                c.user: self.users_[u_cat],
                c.item: self.items_[i_cat],
                "rank": np.concatenate(all_r).astype(np.int64) if all_r else np.zeros(0, dtype=np.int64),
                "score": np.concatenate(all_s) if all_s else np.zeros(0),
            }
        )
