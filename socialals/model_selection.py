"""Data splitting, evaluation, cross-validation and hyper-parameter search.

The models are scikit-learn estimators: ``get_params()`` / ``set_params(**params)``,
``fit(ratings, social=None)`` returning itself, ``predict(pairs)``, ``score(ratings)``
(minus the RMSE), ``recommend(users=None, n=10, exclude_seen=True)`` returning a long
table ``user, item, rank, score``, and, once fitted, ``users_`` and ``items_`` (pandas
Index objects). So scikit-learn's own model selection works on them directly, e.g. a
grid search on RMSE with the social graph passed whole to every fit::

    from sklearn.model_selection import GridSearchCV
    search = GridSearchCV(SocialALS(), {"alpha": [0.1, 1.0]},
                          cv=KFold(5, random_state=0)).fit(ratings, social=social)

What stays here is what is about recommendation: :func:`evaluate` (rating error per
cold-start group and top-N ranking metrics of one fit), :func:`cold_start_groups`,
:func:`cross_validate` over those metrics, the splits :func:`train_test_split`
(``stratify="user"``) and :func:`user_holdout_split` (whole users held out), and
:class:`GridSearch`, a search scored by any of :func:`evaluate`'s metrics
(``cold_start_rmse``, ``ndcg``, ...), which needs the training split of each fold and
so is not a scikit-learn scorer. :class:`KFold` is a scikit-learn splitter that shuffles
with a NumPy Generator (the folds of the published results). Models are never modified by
the search and cross-validation helpers: each fit uses an unfitted copy made by
``sklearn.base.clone``.

Randomness
----------
Every function that draws random numbers takes ``random_state``, which may
be an int seed (the same seed always gives the same split), ``None`` (fresh
operating-system entropy; the global NumPy random state is never used) or a
:class:`numpy.random.Generator` (used directly, so its state advances and
successive calls give different splits).
"""

from __future__ import annotations

import itertools
import math
import numbers
import time
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from sklearn.base import clone

from ._validation import check_bool, check_random_state, invalid
from .exceptions import InvalidParameterError
from .metrics import (
    _as_float_array,
    _check_frame,
    _check_int,
    _check_real,
    _relevant_pairs,
    _summarise,
    catalog_coverage,
    mae,
    ranking_metrics,
    rmse,
)

__all__ = [
    "GridSearch",
    "KFold",
    "cold_start_groups",
    "cross_validate",
    "evaluate",
    "grid_search",
    "train_test_split",
    "user_holdout_split",
]

RATING_COLUMNS = ("user", "item", "rating")

#: Labels returned by :func:`cold_start_groups`, in category order.
COLD_START_GROUPS = ("warm", "cold", "social_only", "unknown")

#: Group label -> prefix of its metrics in :func:`evaluate`.
_GROUP_PREFIXES = {
    "cold": "cold_start",
    "social_only": "social_only",
    "unknown": "unknown",
    "warm": "warm",
}

_RANKING_BASES = ("precision", "recall", "ndcg", "map", "hit_rate")

_EVALUATE_OPTIONS = ("k", "cold_start_threshold", "ranking", "relevance_threshold")


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------
def _check_n_jobs(n_jobs, func):
    if n_jobs is None:
        return None
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral) or n_jobs == 0:
        raise invalid("n_jobs", func, "None or a non-zero int (-1 means all processors)", n_jobs)
    return int(n_jobs)


def _check_model(model, func, methods=("get_params", "set_params", "fit", "predict")):
    missing = [m for m in methods if not callable(getattr(model, m, None))]
    if missing:
        raise InvalidParameterError(
            f"The 'model' parameter of {func} must follow the socialals estimator "
            f"protocol; {type(model).__name__} has no method(s) {missing}."
        )


def _check_ratings(ratings, name, func):
    _check_frame(ratings, name, func, RATING_COLUMNS)


def _check_test_size(test_size, func, name="test_size"):
    """A fraction in (0, 1) (returned as float) or a count >= 1 (returned as int)."""
    if isinstance(test_size, bool) or not isinstance(test_size, numbers.Real) or (
        test_size < 1 if isinstance(test_size, numbers.Integral) else not 0.0 < test_size < 1.0
    ):
        raise invalid(name, func, "a float in (0, 1) or an int >= 1", test_size)
    return int(test_size) if isinstance(test_size, numbers.Integral) else float(test_size)


def _split_positions(ratings, test_size, rng, stratify, func):
    """Boolean mask (True = test) for :func:`train_test_split`."""
    n = len(ratings)
    if stratify == "random":
        if isinstance(test_size, int):
            n_test = test_size
        else:
            n_test = math.ceil(test_size * n)
        if not 1 <= n_test <= n - 1:
            raise ValueError(
                f"{func}: test_size={test_size!r} puts {n_test} of {n} ratings in the "
                "test set; both the training and the test set must be non-empty."
            )
        mask = np.zeros(n, dtype=bool)
        mask[rng.choice(n, size=n_test, replace=False)] = True
        return mask

    codes, _ = pd.factorize(ratings["user"])
    if (codes < 0).any():
        raise ValueError(
            f"The 'ratings' parameter of {func} has {int((codes < 0).sum())} row(s) "
            "with a missing user label; stratify='user' needs every user."
        )
    counts = np.bincount(codes)
    if isinstance(test_size, int):
        wanted = np.full(counts.shape, test_size)
    else:
        wanted = np.floor(test_size * counts + 0.5).astype(np.int64)  # round half up
    # every user with >= 2 ratings gives at least one and keeps at least one
    per_user = np.where(counts >= 2, np.clip(wanted, 1, np.maximum(counts - 1, 1)), 0)
    # Rank each user's rows in a random order and send the first ones to test.
    order = np.lexsort((rng.random(n), codes))
    group_start = np.concatenate(([0], np.cumsum(counts)[:-1]))
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n) - group_start[codes[order]]
    mask = position < per_user[codes]
    if not mask.any():
        raise ValueError(
            f"{func}: no user has at least 2 ratings, so stratify='user' cannot "
            "hold anything out."
        )
    return mask


# ---------------------------------------------------------------------------
# splitting
# ---------------------------------------------------------------------------
def train_test_split(ratings, test_size=0.2, random_state=None, stratify="random"):
    """Split a rating table into a training and a test table.

    Parameters
    ----------
    ratings : pandas.DataFrame
        Columns ``user``, ``item`` and ``rating``; other columns are kept.
    test_size : float or int, default 0.2
        With ``stratify="random"``: the fraction of all rows in the test set
        (rounded up) or, as an int, their number.  With ``stratify="user"``:
        the fraction of each user's rows held out, rounded half up, or, as an
        int, the number of rows held out per user.
    random_state : int, None or numpy.random.Generator, default None
        Source of randomness (see the module docstring).
    stratify : {"random", "user"}, default "random"
        ``"random"`` draws the test rows uniformly from all rows, so some
        users may end up with all their ratings in the test set (useful for
        cold-start evaluation).  ``"user"`` holds out a share of every user's
        ratings: each user with at least two ratings keeps at least one in
        the training set and puts at least one in the test set; users with a
        single rating stay entirely in the training set.

    Returns
    -------
    train, test : pandas.DataFrame
        New frames (the input is never modified) whose rows keep their
        original index labels and their original relative order, so
        ``train.index`` and ``test.index`` partition ``ratings.index``.

    Raises
    ------
    ValueError
        If either part would be empty or a parameter is out of range.

    Examples
    --------
    >>> ratings = pd.DataFrame({"user": [1, 1, 1, 2, 2, 3],
    ...                         "item": [1, 2, 3, 1, 3, 2],
    ...                         "rating": [5, 3, 4, 2, 5, 1]})
    >>> train, test = train_test_split(ratings, test_size=0.3, random_state=0,
    ...                                stratify="user")
    >>> sorted(test["user"].tolist())  # one of user 1's and one of user 2's
    [1, 2]
    >>> len(train) + len(test) == len(ratings)
    True
    """
    func = "train_test_split"
    _check_ratings(ratings, "ratings", func)
    if stratify not in ("random", "user"):
        raise InvalidParameterError(
            f"The 'stratify' parameter of {func} must be 'random' or 'user'; "
            f"got {stratify!r}."
        )
    test_size = _check_test_size(test_size, func)
    rng = check_random_state(random_state, func)
    mask = _split_positions(ratings, test_size, rng, stratify, func)
    return ratings.iloc[np.flatnonzero(~mask)].copy(), ratings.iloc[np.flatnonzero(mask)].copy()


def user_holdout_split(ratings, n_users=0.1, test_size=0.2, users=None, random_state=None):
    """Hold out every rating of some users, plus a random share of the other ratings.

    The held-out users have no training rating at all, so the test set measures
    cold start the hard way: with ``users`` set to the users who have trust links,
    they are the "social cold start" group of :func:`cold_start_groups`, whom only a
    social model can personalise. The other users' ratings are split at random as in
    :func:`train_test_split`, so the same test set also scores warm and
    few-ratings users.

    Parameters
    ----------
    ratings : pandas.DataFrame
        Columns ``user``, ``item`` and ``rating``; other columns are kept.
    n_users : float or int, default 0.1
        How many users to hold out: a fraction in (0, 1) of the candidates (rounded
        up) or, as an int, their number.
    test_size : float or int, default 0.2
        Share (float in [0, 1)) or number (int >= 0) of the *remaining* ratings put in
        the test set at random; 0 puts only the held-out users in it.
    users : iterable, optional
        The candidates to draw held-out users from (for example every user with a
        trust link: ``pd.concat([social["user"], social["friend"]])``). Candidates
        without ratings are ignored. Default: every user of ``ratings``.
    random_state : int, None or numpy.random.Generator, default None
        Source of randomness (see the module docstring).

    Returns
    -------
    train, test : pandas.DataFrame
        New frames (the input is never modified) keeping the original index labels and
        relative order; ``train.index`` and ``test.index`` partition ``ratings.index``.
        The held-out users are ``np.setdiff1d(test["user"], train["user"])``.

    Raises
    ------
    ValueError
        If there are not enough candidates, or either part would be empty.

    Examples
    --------
    >>> ratings = pd.DataFrame({"user": [1, 1, 2, 2, 3, 3, 4],
    ...                         "item": [1, 2, 1, 3, 2, 3, 1],
    ...                         "rating": [5, 3, 4, 2, 5, 1, 4]})
    >>> train, test = user_holdout_split(ratings, n_users=1, test_size=0,
    ...                                  users=[2, 3], random_state=0)
    >>> held_out = set(test["user"]); len(held_out), held_out <= {2, 3}
    (1, True)
    >>> held_out & set(train["user"])
    set()
    """
    func = "user_holdout_split"
    _check_ratings(ratings, "ratings", func)
    rng = check_random_state(random_state, func)
    rated = pd.unique(ratings["user"])
    candidates = rated if users is None else pd.unique(pd.Series(list(users)))
    candidates = np.asarray(pd.Index(candidates).intersection(pd.Index(rated)).sort_values())
    n_users = _check_test_size(n_users, func, "n_users")
    n_out = n_users if isinstance(n_users, int) else math.ceil(n_users * len(candidates))
    if n_out > len(candidates):
        raise ValueError(
            f"{func}: n_users={n_users!r} asks for {n_out} held-out users but only "
            f"{len(candidates)} candidate user(s) have ratings."
        )
    if isinstance(test_size, bool) or not isinstance(test_size, numbers.Real) or test_size < 0 or (
        not isinstance(test_size, numbers.Integral) and test_size >= 1
    ):
        raise invalid("test_size", func, "a float in [0, 1) or an int >= 0", test_size)
    held = ratings["user"].isin(rng.choice(candidates, n_out, replace=False)).to_numpy()
    rest = np.flatnonzero(~held)
    n_rest = int(test_size) if isinstance(test_size, numbers.Integral) else math.ceil(test_size * len(rest))
    if len(rest) - n_rest < 1:
        raise ValueError(
            f"{func}: holding out {n_out} user(s) and {n_rest} more rating(s) leaves no training rating."
        )
    mask = held.copy()
    mask[rng.choice(rest, n_rest, replace=False)] = True
    return ratings.iloc[np.flatnonzero(~mask)].copy(), ratings.iloc[np.flatnonzero(mask)].copy()


class KFold:
    """K-fold cross-validation over the rows of a rating table.

    The rows are (optionally shuffled and) cut into ``n_splits`` folds of
    sizes differing by at most one; each fold is the test set once, and
    the remaining rows form the training set.  This is the usual 5-fold
    protocol of rating-prediction papers, which splits ratings rather than
    users.

    It is a scikit-learn CV splitter (``split(X, y=None, groups=None)``,
    ``get_n_splits``), so it serves as ``cv`` of ``sklearn.model_selection.GridSearchCV``
    or ``cross_val_score``. It is not ``sklearn.model_selection.KFold`` because it
    shuffles with a :class:`numpy.random.Generator`: the seeds of the published
    results (``KFold(5, shuffle=True, random_state=0)``) keep giving the same folds,
    and a Generator is accepted as ``random_state``.

    Parameters
    ----------
    n_splits : int, default 5
        Number of folds, at least 2.
    shuffle : bool, default True
        Shuffle the rows before cutting them into folds.  Without shuffling
        the folds are contiguous blocks of rows.
    random_state : int, None or numpy.random.Generator, default None
        Source of the shuffle (see the module docstring).  With an int every
        call to :meth:`split` gives the same folds.  Must be None when
        ``shuffle`` is False.

    Examples
    --------
    >>> ratings = pd.DataFrame({"user": [1, 1, 2, 2, 3], "item": [1, 2, 1, 3, 2],
    ...                         "rating": [4, 5, 3, 2, 1]})
    >>> [test.tolist() for _, test in KFold(n_splits=2, shuffle=False).split(ratings)]
    [[0, 1, 2], [3, 4]]
    """

    def __init__(self, n_splits=5, shuffle=True, random_state=None):
        self.n_splits = _check_int(n_splits, "n_splits", "KFold", 2)
        self.shuffle = check_bool(shuffle, "shuffle", "KFold")
        if not self.shuffle and random_state is not None:
            raise InvalidParameterError(
                "The 'random_state' parameter of KFold has no effect when "
                "shuffle=False; leave it as None."
            )
        check_random_state(0 if random_state is None else random_state, "KFold")
        self.random_state = random_state

    def __repr__(self):
        return (
            f"KFold(n_splits={self.n_splits}, shuffle={self.shuffle}, "
            f"random_state={self.random_state!r})"
        )

    def get_n_splits(self, X=None, y=None, groups=None):
        """Number of folds, ``n_splits``."""
        return self.n_splits

    def split(self, X, y=None, groups=None):
        """Yield ``(train_idx, test_idx)`` for each fold.

        Parameters
        ----------
        X : pandas.DataFrame or sized object
            The ratings; only their number is used.
        y, groups : ignored
            For scikit-learn's splitter signature.

        Yields
        ------
        train_idx, test_idx : numpy.ndarray of int
            Sorted positional indices (use with ``ratings.iloc``).  Over the
            folds every row is in exactly one ``test_idx``.

        Raises
        ------
        ValueError
            If there are fewer rows than folds.
        """
        n = len(X)
        if self.n_splits > n:
            raise ValueError(
                f"KFold: cannot make n_splits={self.n_splits} folds from {n} rows; "
                "each fold needs at least one row."
            )
        if self.shuffle:
            rows = check_random_state(self.random_state, "KFold").permutation(n)
        else:
            rows = np.arange(n)
        sizes = np.full(self.n_splits, n // self.n_splits)
        sizes[: n % self.n_splits] += 1
        bounds = np.concatenate(([0], np.cumsum(sizes)))
        for start, stop in zip(bounds[:-1], bounds[1:]):
            in_test = np.zeros(n, dtype=bool)
            in_test[rows[start:stop]] = True
            yield np.flatnonzero(~in_test), np.flatnonzero(in_test)


def _resolve_splits(cv, ratings, random_state, func):
    """List of (train_idx, test_idx) from an int or a splitter object."""
    if isinstance(cv, numbers.Integral) and not isinstance(cv, bool):
        n_splits = _check_int(cv, "cv", func, 2)
        check_random_state(random_state, func)  # named after the caller, not KFold
        splitter = KFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    elif callable(getattr(cv, "split", None)):
        if random_state is not None:
            raise InvalidParameterError(
                f"The 'random_state' parameter of {func} is only used when 'cv' is "
                "an int; set the random state on the splitter instead."
            )
        splitter = cv
    else:
        raise InvalidParameterError(
            f"The 'cv' parameter of {func} must be an int >= 2 or an object with a "
            f"split(ratings) method such as KFold; got {cv!r}."
        )
    splits = [
        (np.asarray(train, dtype=np.intp), np.asarray(test, dtype=np.intp))
        for train, test in splitter.split(ratings)
    ]
    if not splits:
        raise ValueError(f"The 'cv' splitter passed to {func} produced no split.")
    return splits


# ---------------------------------------------------------------------------
# cold start
# ---------------------------------------------------------------------------
def cold_start_groups(train, test, social=None, threshold=5):
    """Label each test row by how much its user is known at training time.

    For the user :math:`u` of a test row, with :math:`n_u` training ratings:

    * ``"warm"``: :math:`n_u \\ge` ``threshold``;
    * ``"cold"``: :math:`1 \\le n_u <` ``threshold`` (with the default 5 this
      is the "fewer than 5 training ratings" cold-start convention of
      TrustSVD and LibRec);
    * ``"social_only"``: :math:`n_u = 0` but :math:`u` has at least one
      friend in ``social``, in either direction (``u`` in the ``user`` or in
      the ``friend`` column; self-loops and edge weights are ignored);
    * ``"unknown"``: :math:`n_u = 0` and no friend.

    Parameters
    ----------
    train : pandas.DataFrame
        Training ratings; only the ``user`` column is used.
    test : pandas.DataFrame
        Test ratings; only the ``user`` column is used.
    social : pandas.DataFrame or None, default None
        Columns ``user`` and ``friend`` (an optional ``weight`` is ignored).
    threshold : int, default 5
        Minimum number of training ratings of a warm user, at least 1.

    Returns
    -------
    pandas.Series
        Categorical with categories ``warm, cold, social_only, unknown``,
        indexed like ``test`` and named ``"group"``.

    Examples
    --------
    >>> train = pd.DataFrame({"user": ["a"] * 5 + ["b"], "item": range(6),
    ...                       "rating": 4.0})
    >>> test = pd.DataFrame({"user": ["a", "b", "c", "d"], "item": [9] * 4,
    ...                      "rating": 3.0})
    >>> social = pd.DataFrame({"user": ["a"], "friend": ["c"]})
    >>> cold_start_groups(train, test, social).tolist()
    ['warm', 'cold', 'social_only', 'unknown']
    """
    func = "cold_start_groups"
    _check_frame(train, "train", func, ("user",))
    _check_frame(test, "test", func, ("user",))
    threshold = _check_int(threshold, "threshold", func, 1)

    counts = train["user"].value_counts(dropna=True)
    n_train = test["user"].map(counts).fillna(0).to_numpy(dtype=np.int64)
    if social is None:
        has_friend = np.zeros(len(test), dtype=bool)
    else:
        _check_frame(social, "social", func, ("user", "friend"))
        edges = social[["user", "friend"]].dropna()
        edges = edges[edges["user"] != edges["friend"]]
        connected = pd.concat([edges["user"], edges["friend"]], ignore_index=True).unique()
        has_friend = test["user"].isin(connected).to_numpy()

    labels = np.where(
        n_train >= threshold,
        "warm",
        np.where(n_train >= 1, "cold", np.where(has_friend, "social_only", "unknown")),
    )
    return pd.Series(
        pd.Categorical(labels, categories=COLD_START_GROUPS),
        index=test.index,
        name="group",
    )


# ---------------------------------------------------------------------------
# evaluation
# ---------------------------------------------------------------------------
def evaluate(
    model,
    train,
    test,
    social=None,
    k=10,
    cold_start_threshold=5,
    ranking=True,
    relevance_threshold=None,
):
    """Fit a model on ``train`` and measure it on ``test``.

    The model itself is fitted (in place, as with ``model.fit``); pass a
    clone if the original must stay untouched.

    Rating prediction is measured on every test row, overall and per
    cold-start group (see :func:`cold_start_groups`).  Ranking is measured
    for the test users that the fitted model knows (``model.users_``) and
    that have at least one relevant test item: each of them receives
    ``model.recommend(n=k, exclude_seen=True)`` and is scored with
    :func:`socialals.metrics.ranking_metrics` against their own test rows.
    Users unknown to the model cannot be ranked and are left out of the
    ranking metrics rather than scored 0; ``n_ranking_users`` reports how
    many users were ranked.  Warnings the model emits (e.g. for fallback
    predictions of unknown users) are passed through.

    Parameters
    ----------
    model : estimator
        Any socialals model; it is fitted with ``model.fit(train, social=social)``.
    train, test : pandas.DataFrame
        Ratings with columns ``user``, ``item``, ``rating``.
    social : pandas.DataFrame or None, default None
        Social graph passed unchanged to ``fit`` and used for the
        ``social_only`` group.
    k : int, default 10
        Length of the recommendation lists.
    cold_start_threshold : int, default 5
        Users with fewer training ratings than this (but at least one) are
        cold-start users.
    ranking : bool, default True
        Compute the ranking metrics; if False their keys are absent.
    relevance_threshold : float or None, default None
        Which test items count as relevant (see
        :func:`socialals.metrics.ranking_metrics`).

    Returns
    -------
    dict
        ``rmse``, ``mae``; ``<group>_rmse`` and ``<group>_mae`` for the groups
        ``cold_start``, ``social_only``, ``unknown`` and ``warm`` (NaN when the
        group has no test row); if ``ranking``: ``precision_at_<k>``,
        ``recall_at_<k>``, ``ndcg_at_<k>``, ``map_at_<k>``,
        ``hit_rate_at_<k>`` and ``coverage`` (distinct recommended items over
        ``len(model.items_)``), all NaN when no test user can be ranked, and the
        same metrics over the ranked users of the ``cold_start`` and ``social_only``
        groups (``cold_start_ndcg_at_<k>``, ...; NaN for an empty group); the
        counts ``n_train``, ``n_test``, ``n_<group>`` (test rows per group)
        and ``n_ranking_users``; and the wall-clock times ``fit_seconds``,
        ``predict_seconds`` (predicting every test row) and, if ``ranking``,
        ``recommend_seconds``.

    Raises
    ------
    ValueError
        If ``test`` is empty or the model returns predictions of the wrong
        shape or non-finite predictions.

    Examples
    --------
    >>> scores = evaluate(model, train, test, k=10)  # doctest: +SKIP
    >>> scores["rmse"], scores["cold_start_rmse"], scores["ndcg_at_10"]  # doctest: +SKIP
    """
    func = "evaluate"
    _check_model(model, func)
    _check_ratings(train, "train", func)
    _check_ratings(test, "test", func)
    if len(test) == 0:
        raise ValueError(f"The 'test' parameter of {func} is empty.")
    k = _check_int(k, "k", func, 1)
    cold_start_threshold = _check_int(cold_start_threshold, "cold_start_threshold", func, 1)
    ranking = check_bool(ranking, "ranking", func)
    if ranking:
        _check_model(model, func, methods=("recommend",))
    if relevance_threshold is not None:
        relevance_threshold = _check_real(relevance_threshold, "relevance_threshold", func)
    groups = cold_start_groups(train, test, social=social, threshold=cold_start_threshold)
    y_true = _as_float_array(test["rating"], "test['rating']", func)

    start = time.perf_counter()
    model.fit(train, social=social)
    fit_seconds = time.perf_counter() - start

    start = time.perf_counter()
    y_pred = np.asarray(model.predict(test[["user", "item"]]), dtype=float)
    predict_seconds = time.perf_counter() - start
    if y_pred.shape != (len(test),):
        raise ValueError(
            f"{func}: {type(model).__name__}.predict returned an array of shape "
            f"{y_pred.shape} for {len(test)} test rows; expected ({len(test)},)."
        )
    if not np.isfinite(y_pred).all():
        raise ValueError(
            f"{func}: {type(model).__name__}.predict returned "
            f"{int((~np.isfinite(y_pred)).sum())} non-finite prediction(s)."
        )

    scores = {"rmse": rmse(y_true, y_pred), "mae": mae(y_true, y_pred)}
    counts = {"n_train": len(train), "n_test": len(test)}
    group_labels = groups.to_numpy()
    for group, prefix in _GROUP_PREFIXES.items():
        in_group = group_labels == group
        if in_group.any():
            scores[f"{prefix}_rmse"] = rmse(y_true[in_group], y_pred[in_group])
            scores[f"{prefix}_mae"] = mae(y_true[in_group], y_pred[in_group])
        else:
            scores[f"{prefix}_rmse"] = scores[f"{prefix}_mae"] = float("nan")
        counts[f"n_{prefix}"] = int(in_group.sum())

    timings = {"fit_seconds": fit_seconds, "predict_seconds": predict_seconds}
    if ranking:
        relevant_users = pd.Index(pd.unique(_relevant_pairs(test, relevance_threshold, func)["user"]))
        known_users = relevant_users[relevant_users.isin(model.users_)]
        if len(known_users):
            start = time.perf_counter()
            recs = model.recommend(users=list(known_users), n=k, exclude_seen=True)
            timings["recommend_seconds"] = time.perf_counter() - start
            table = ranking_metrics(
                recs,
                test[test["user"].isin(known_users)],
                k=k,
                relevance_threshold=relevance_threshold,
            )
            scores.update(_summarise(table, k))
            # the same lists, scored over the test users of each group (cold start: 1 to
            # threshold - 1 training ratings; social only: known only through friends)
            for group, prefix in (("cold", "cold_start"), ("social_only", "social_only")):
                members = pd.unique(test["user"].to_numpy()[group_labels == group])
                sub = table[table["user"].isin(members)]
                for name, value in _summarise(sub, k).items():
                    scores[f"{prefix}_{name}"] = value
            scores["coverage"] = catalog_coverage(recs, len(model.items_), k=k)
            counts["n_ranking_users"] = len(table)
        else:
            scores.update({f"{pre}{base}_at_{k}": float("nan") for base in _RANKING_BASES
                           for pre in ("", "cold_start_", "social_only_")})
            scores["coverage"] = float("nan")
            counts["n_ranking_users"] = 0
            timings["recommend_seconds"] = 0.0
    return {**scores, **counts, **timings}


def _check_evaluate_options(options, func):
    unknown = sorted(set(options) - set(_EVALUATE_OPTIONS))
    if unknown:
        raise TypeError(
            f"{func} got unexpected keyword argument(s) {unknown}; the evaluation "
            f"options are {list(_EVALUATE_OPTIONS)}."
        )


def _evaluate_fold(model, train, test, social, options, keep_model):
    scores = evaluate(model, train, test, social=social, **options)
    return scores, (model if keep_model else None)


def cross_validate(
    model,
    ratings,
    social=None,
    cv=5,
    random_state=None,
    n_jobs=1,
    return_models=False,
    **evaluate_kwargs,
):
    """Cross-validated :func:`evaluate` scores, one row per fold.

    Each fold fits a fresh ``clone(model)`` on the training rows and
    evaluates it on the held-out rows; the same ``social`` graph is passed
    unchanged to every fit.  The folds are drawn in the calling process
    before any work is dispatched, so the scores are identical for every
    ``n_jobs`` (only the timing columns vary).

    Parameters
    ----------
    model : estimator
        Template model; it is cloned and never fitted itself.
    ratings : pandas.DataFrame
        Columns ``user``, ``item``, ``rating``.
    social : pandas.DataFrame or None, default None
        Social graph given to every fit.
    cv : int or splitter, default 5
        Number of folds of a shuffled :class:`KFold`, or any object with a
        ``split(ratings)`` method yielding positional ``(train, test)``
        indices.
    random_state : int, None or numpy.random.Generator, default None
        Shuffle of the folds when ``cv`` is an int (must be None otherwise).
    n_jobs : int or None, default 1
        Number of folds run in parallel by joblib (-1 = all processors).
    return_models : bool, default False
        Also return the fitted model of each fold.
    **evaluate_kwargs
        ``k``, ``cold_start_threshold``, ``ranking`` and
        ``relevance_threshold``, passed to :func:`evaluate`.

    Returns
    -------
    results : pandas.DataFrame
        Index ``fold_0 ... fold_<n-1>``, ``mean``, ``std`` (index name
        ``"fold"``), columns as the keys of :func:`evaluate`.  ``mean`` and
        ``std`` are taken over the fold rows, skipping NaN (e.g. a fold
        without cold-start users); ``std`` is the population standard
        deviation (``ddof=0``), as in NumPy and scikit-learn.
    models : list
        Only if ``return_models``: the fitted model of each fold, in order.

    Examples
    --------
    >>> results = cross_validate(model, ratings, cv=5, random_state=0)  # doctest: +SKIP
    >>> results.loc["mean", ["rmse", "ndcg_at_10"]]  # doctest: +SKIP
    """
    func = "cross_validate"
    _check_model(model, func)
    _check_ratings(ratings, "ratings", func)
    _check_evaluate_options(evaluate_kwargs, func)
    n_jobs = _check_n_jobs(n_jobs, func)
    return_models = check_bool(return_models, "return_models", func)
    splits = _resolve_splits(cv, ratings, random_state, func)

    outputs = Parallel(n_jobs=n_jobs)(
        delayed(_evaluate_fold)(
            clone(model),
            ratings.iloc[train_idx],
            ratings.iloc[test_idx],
            social,
            evaluate_kwargs,
            return_models,
        )
        for train_idx, test_idx in splits
    )
    folds = pd.DataFrame(
        [scores for scores, _ in outputs],
        index=[f"fold_{i}" for i in range(len(outputs))],
    )
    summary = pd.DataFrame(
        [folds.mean(axis=0, skipna=True), folds.std(axis=0, ddof=0, skipna=True)],
        index=["mean", "std"],
    )
    results = pd.concat([folds, summary])
    results.index.name = "fold"
    if return_models:
        return results, [fitted for _, fitted in outputs]
    return results


# ---------------------------------------------------------------------------
# hyper-parameter search
# ---------------------------------------------------------------------------
def _expand_grid(param_grid, model, func):
    """List of parameter dicts from a grid (or list of grids)."""
    if isinstance(param_grid, Mapping):
        grids = [param_grid]
    elif isinstance(param_grid, Iterable) and not isinstance(param_grid, (str, bytes)):
        grids = list(param_grid)
        if not grids or not all(isinstance(g, Mapping) for g in grids):
            raise InvalidParameterError(
                f"The 'param_grid' parameter of {func} must be a dict of "
                "{name: list of values} or a non-empty list of such dicts."
            )
    else:
        raise InvalidParameterError(
            f"The 'param_grid' parameter of {func} must be a dict of "
            f"{{name: list of values}} or a list of such dicts; got {param_grid!r}."
        )
    valid = model.get_params()
    candidates = []
    for grid in grids:
        names, value_lists = [], []
        for name, values in grid.items():
            if name not in valid:
                raise InvalidParameterError(
                    f"Unknown parameter {name!r} in the 'param_grid' of {func} for "
                    f"{type(model).__name__}; valid parameters are {sorted(valid)}."
                )
            if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
                raise InvalidParameterError(
                    f"param_grid[{name!r}] of {func} must be a list of candidate "
                    f"values; got {values!r}."
                )
            values = list(values)
            if not values:
                raise ValueError(f"param_grid[{name!r}] of {func} is empty.")
            names.append(name)
            value_lists.append(values)
        candidates.extend(dict(zip(names, combo)) for combo in itertools.product(*value_lists))
    return candidates


def _resolve_scoring(scoring, k, func):
    """Return (result key, lower_is_better, needs_ranking) for ``scoring``."""
    error_keys = ["rmse", "mae"] + [
        f"{prefix}_{m}" for prefix in _GROUP_PREFIXES.values() for m in ("rmse", "mae")
    ]
    if scoring in error_keys:
        return scoring, True, False
    if scoring in _RANKING_BASES:
        return f"{scoring}_at_{k}", False, True
    if scoring in [f"{base}_at_{k}" for base in _RANKING_BASES] + ["coverage"]:
        return scoring, False, True
    raise InvalidParameterError(
        f"The 'scoring' parameter of {func} must be one of {error_keys + list(_RANKING_BASES)}"
        f" or 'coverage' (ranking names may carry the cut-off, e.g. 'ndcg_at_{k}' "
        f"for k={k}); got {scoring!r}."
    )


def _fit_and_score(model, params, train, test, social, options, key):
    model.set_params(**params)
    scores = evaluate(model, train, test, social=social, **options)
    return scores[key], scores["fit_seconds"]


class GridSearch:
    """Exhaustive search over a parameter grid.

    Every candidate is fitted on the same splits -- either ``cv``
    cross-validation folds or one hold-out split of ``validation_size`` --
    and scored with :func:`evaluate`.  The best mean score wins (lower is
    better for the ``rmse``/``mae`` family, higher for the ranking metrics
    and ``coverage``); ties go to the candidate listed first in the grid.

    Parameters
    ----------
    model : estimator
        Template model; it is cloned for every fit and never modified.
    param_grid : dict or list of dict
        ``{parameter name: list of values}``; every combination is tried.
        A list of such dicts searches the union of their grids.  Names must
        be keys of ``model.get_params()``.
    cv : int, splitter or None, default None
        Number of shuffled :class:`KFold` folds (3 when neither ``cv`` nor
        ``validation_size`` is given) or a splitter object.
    validation_size : float, int or None, default None
        Instead of ``cv``: hold out this share of the ratings once (see
        :func:`train_test_split`).
    scoring : str, default "rmse"
        ``"rmse"``, ``"mae"``, a group error such as ``"cold_start_rmse"``,
        a ranking metric ``"ndcg"``, ``"precision"``, ``"recall"``,
        ``"map"``, ``"hit_rate"`` (at ``k``), or ``"coverage"``.
    random_state : int, None or numpy.random.Generator, default None
        Source of the splits.
    n_jobs : int or None, default 1
        Number of fits run in parallel by joblib; results do not depend on it.
    refit : bool, default True
        Refit the best setting on all the ratings as ``best_estimator_``.
    k, relevance_threshold, cold_start_threshold
        Passed to :func:`evaluate`.
    stratify : {"random", "user"}, default "random"
        How the ``validation_size`` hold-out is drawn.

    Attributes
    ----------
    best_params_ : dict
        The winning parameter setting.
    best_score_ : float
        Its mean score over the splits.
    best_index_ : int
        Its row in ``results_``.
    best_estimator_ : estimator or None
        Clone of ``model`` with ``best_params_``, fitted on all the ratings
        (None when ``refit=False``).
    results_ : pandas.DataFrame
        One row per candidate, in grid order: ``params`` (dict), one
        ``param_<name>`` column per searched parameter, ``split<j>_score``,
        ``mean_score``, ``std_score`` (over splits, ``ddof=0``, NaN skipped),
        ``rank_score`` (1 = best) and ``mean_fit_seconds``.
    scoring_key_ : str
        Name of the :func:`evaluate` key used as score, e.g. ``"ndcg_at_10"``.
    higher_is_better_ : bool

    Examples
    --------
    >>> search = GridSearch(model, {"reg": [0.01, 0.1, 1.0]}, cv=3,
    ...                     random_state=0).fit(ratings)  # doctest: +SKIP
    >>> search.best_params_, search.best_score_  # doctest: +SKIP
    """

    def __init__(
        self,
        model,
        param_grid,
        cv=None,
        validation_size=None,
        scoring="rmse",
        random_state=None,
        n_jobs=1,
        refit=True,
        k=10,
        relevance_threshold=None,
        cold_start_threshold=5,
        stratify="random",
    ):
        self.model = model
        self.param_grid = param_grid
        self.cv = cv
        self.validation_size = validation_size
        self.scoring = scoring
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.refit = refit
        self.k = k
        self.relevance_threshold = relevance_threshold
        self.cold_start_threshold = cold_start_threshold
        self.stratify = stratify

    def __repr__(self):
        return (
            f"GridSearch(model={self.model!r}, param_grid={self.param_grid!r}, "
            f"scoring={self.scoring!r})"
        )

    def _splits(self, ratings, func):
        if self.cv is not None and self.validation_size is not None:
            raise InvalidParameterError(
                f"{func}: give either 'cv' or 'validation_size', not both."
            )
        if self.validation_size is None:
            cv = 3 if self.cv is None else self.cv
            return _resolve_splits(cv, ratings, self.random_state, func)
        if self.stratify not in ("random", "user"):
            raise InvalidParameterError(
                f"The 'stratify' parameter of {func} must be 'random' or 'user'; "
                f"got {self.stratify!r}."
            )
        size = _check_test_size(self.validation_size, func)
        rng = check_random_state(self.random_state, func)
        in_test = _split_positions(ratings, size, rng, self.stratify, func)
        return [(np.flatnonzero(~in_test), np.flatnonzero(in_test))]

    def fit(self, ratings, social=None):
        """Run the search on ``ratings`` (and ``social``); return self."""
        func = "GridSearch"
        _check_model(self.model, func)
        _check_ratings(ratings, "ratings", func)
        k = _check_int(self.k, "k", func, 1)
        n_jobs = _check_n_jobs(self.n_jobs, func)
        refit = check_bool(self.refit, "refit", func)
        candidates = _expand_grid(self.param_grid, self.model, func)
        key, lower, needs_ranking = _resolve_scoring(self.scoring, k, func)
        options = {
            "k": k,
            "cold_start_threshold": self.cold_start_threshold,
            "ranking": needs_ranking,
            "relevance_threshold": self.relevance_threshold,
        }
        splits = self._splits(ratings, func)

        parts = [(ratings.iloc[tr], ratings.iloc[te]) for tr, te in splits]
        outputs = Parallel(n_jobs=n_jobs)(
            delayed(_fit_and_score)(clone(self.model), params, train, test, social, options, key)
            for params in candidates
            for train, test in parts
        )
        scores = np.array([s for s, _ in outputs], dtype=float).reshape(len(candidates), len(parts))
        fit_seconds = np.array([t for _, t in outputs]).reshape(len(candidates), len(parts))

        valid = ~np.isnan(scores)
        n_valid = valid.sum(axis=1)
        if not n_valid.any():
            raise ValueError(
                f"{func}: every candidate scored NaN on {key!r} (for example the "
                "group it measures is empty in every split)."
            )
        filled = np.where(valid, scores, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = filled.sum(axis=1) / n_valid
            std = np.sqrt(np.where(valid, (scores - mean[:, None]) ** 2, 0.0).sum(axis=1) / n_valid)
        signed = np.where(np.isnan(mean), np.inf, mean if lower else -mean)
        best = int(np.argmin(signed))  # first candidate among ties

        names = list(dict.fromkeys(name for params in candidates for name in params))
        table = pd.DataFrame({"params": candidates})
        for name in names:
            table[f"param_{name}"] = [params.get(name, np.nan) for params in candidates]
        for j in range(len(parts)):
            table[f"split{j}_score"] = scores[:, j]
        table["mean_score"] = mean
        table["std_score"] = std
        table["rank_score"] = (
            pd.Series(signed).rank(method="min").astype(np.int64).to_numpy()
        )
        table["mean_fit_seconds"] = fit_seconds.mean(axis=1)

        self.results_ = table
        self.best_index_ = best
        self.best_params_ = dict(candidates[best])
        self.best_score_ = float(mean[best])
        self.scoring_key_ = key
        self.higher_is_better_ = not lower
        self.n_splits_ = len(parts)
        self.best_estimator_ = None
        if refit:
            estimator = clone(self.model)
            estimator.set_params(**self.best_params_)
            estimator.fit(ratings, social=social)
            self.best_estimator_ = estimator
        return self


def grid_search(
    model,
    param_grid,
    ratings,
    social=None,
    cv=None,
    validation_size=None,
    scoring="rmse",
    random_state=None,
    n_jobs=1,
    **options,
):
    """Functional form of :class:`GridSearch`: build it and fit it.

    Parameters
    ----------
    model, param_grid, cv, validation_size, scoring, random_state, n_jobs
        As in :class:`GridSearch`.
    ratings, social
        Passed to :meth:`GridSearch.fit`.
    **options
        ``refit``, ``k``, ``relevance_threshold``, ``cold_start_threshold``,
        ``stratify``.

    Returns
    -------
    GridSearch
        Fitted; read ``best_params_``, ``best_score_``, ``results_`` and
        ``best_estimator_``.

    Examples
    --------
    >>> search = grid_search(model, {"reg": [0.01, 0.1]}, ratings,
    ...                      validation_size=0.2, random_state=0)  # doctest: +SKIP
    >>> search.best_params_  # doctest: +SKIP
    """
    allowed = ("refit", "k", "relevance_threshold", "cold_start_threshold", "stratify")
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(
            f"grid_search got unexpected keyword argument(s) {unknown}; the extra "
            f"options are {list(allowed)}."
        )
    search = GridSearch(
        model,
        param_grid,
        cv=cv,
        validation_size=validation_size,
        scoring=scoring,
        random_state=random_state,
        n_jobs=n_jobs,
        **options,
    )
    return search.fit(ratings, social=social)
