"""Evaluation metrics for rating prediction and top-k recommendation.

Two families of metrics live here, both as plain functions that never touch a
model:

* **Rating-prediction errors** -- :func:`rmse` and :func:`mae` compare two
  aligned one-dimensional arrays of true and predicted ratings.
* **Top-k ranking metrics** -- :func:`ranking_metrics` compares a long table
  of recommendations (columns ``user, item, rank[, score]``, as returned by a
  model's ``recommend(n=k)``) with a table of held-out test ratings
  (``user, item, rating``).  The ranking is assumed to be the *full* ranking
  of every item the user has not rated in training, cut at ``k``.

Conventions shared by all ranking metrics
-----------------------------------------
For a test user :math:`u` let :math:`R_u` be the set of relevant test items
(every test item when ``relevance_threshold`` is None, otherwise the test
items rated at least ``relevance_threshold``), and let
:math:`L_u = (i_1, i_2, \\dots)` be the user's recommendations sorted by
``rank`` (best first) and cut to the first :math:`k` entries.  Write
:math:`rel_j = 1` if :math:`i_j \\in R_u` and 0 otherwise.

* Only users with :math:`|R_u| \\ge 1` are scored; users with no relevant
  test item are left out, because recall, AP and NDCG are undefined for them.
* A scored user missing from ``recommendations`` (or with fewer than ``k``
  recommendations) simply has fewer hits: absent positions count as misses,
  so such a user scores 0 on every metric when nothing was recommended.
* Recommended users that have no relevant test item are ignored.
* Means are unweighted averages over the scored users.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ._validation import check_frame, check_int, check_real

__all__ = [
    "average_precision_at_k",
    "catalog_coverage",
    "hit_rate_at_k",
    "mae",
    "mean_ranking_metrics",
    "ndcg_at_k",
    "precision_at_k",
    "ranking_metrics",
    "recall_at_k",
    "rmse",
    "roc_auc",
]

#: Per-user metric columns of :func:`ranking_metrics`, mapped to the prefix
#: used for their mean in :func:`mean_ranking_metrics` (``<prefix>_at_<k>``).
_MEAN_NAMES = {
    "precision": "precision",
    "recall": "recall",
    "ndcg": "ndcg",
    "average_precision": "map",
    "hit_rate": "hit_rate",
}


# ---------------------------------------------------------------------------
# validation helpers (shared with socialals.model_selection)
# ---------------------------------------------------------------------------
def _check_int(value, name, func, min_value):
    """Return ``value`` as an int, or raise if it is not an int >= min_value."""
    return check_int(value, name, func, min_value)


def _check_real(value, name, func):
    """Return ``value`` as a finite float, or raise naming the parameter."""
    return check_real(value, name, func, "a finite real number or None")


def _check_frame(frame, name, func, columns):
    """Check that ``frame`` is a DataFrame holding every column in ``columns``."""
    check_frame(frame, name, func, columns)


def _as_float_array(values, name, func):
    """Convert a 1-D array-like to a float ndarray (missing values -> NaN)."""
    try:
        if isinstance(values, (pd.Series, pd.Index)):
            array = values.to_numpy(dtype=float, na_value=np.nan)
        else:
            array = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"The '{name}' parameter of {func} must be a 1-D array of numbers; "
            f"conversion to float failed: {exc}"
        ) from None
    if array.ndim != 1:
        raise ValueError(
            f"The '{name}' parameter of {func} must be one-dimensional; "
            f"got an array of shape {array.shape}."
        )
    return array


def _check_targets(y_true, y_pred, func):
    true = _as_float_array(y_true, "y_true", func)
    pred = _as_float_array(y_pred, "y_pred", func)
    if true.shape[0] != pred.shape[0]:
        raise ValueError(
            f"The 'y_true' and 'y_pred' parameters of {func} must have the same "
            f"length; got {true.shape[0]} and {pred.shape[0]}."
        )
    if true.shape[0] == 0:
        raise ValueError(
            f"The 'y_true' and 'y_pred' parameters of {func} are empty; "
            "at least one rating is needed."
        )
    for name, array in (("y_true", true), ("y_pred", pred)):
        bad = ~np.isfinite(array)
        if bad.any():
            raise ValueError(
                f"The '{name}' parameter of {func} contains {int(bad.sum())} "
                f"non-finite value(s) (NaN or inf), the first at position "
                f"{int(np.flatnonzero(bad)[0])}."
            )
    return true, pred


# ---------------------------------------------------------------------------
# rating-prediction errors
# ---------------------------------------------------------------------------
def rmse(y_true, y_pred):
    """Root mean squared error between true and predicted ratings.

    .. math::

        \\mathrm{RMSE} = \\sqrt{\\frac{1}{n} \\sum_{j=1}^{n} (y_j - \\hat y_j)^2}

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,)
        True and predicted ratings, matched by position (pandas indexes are
        ignored, not aligned).

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If the inputs are empty, differ in length, are not one-dimensional or
        contain NaN or infinite values.

    Examples
    --------
    >>> rmse([3, 4, 5], [3, 4, 2])
    1.7320508075688772
    """
    true, pred = _check_targets(y_true, y_pred, "rmse")
    return float(np.sqrt(np.mean((true - pred) ** 2)))


def roc_auc(y_true, score):
    """Area under the ROC curve of scores for binary labels (ties count one half).

    The probability that a randomly drawn positive scores higher than a randomly drawn
    negative, computed from average ranks (the Mann-Whitney statistic), so tied scores
    are handled exactly and the cost is one sort:

    .. math::

        \\mathrm{AUC} = \\frac{\\sum_{j: y_j = 1} \\mathrm{rank}(s_j) - n_+ (n_+ + 1) / 2}{n_+ n_-}

    Parameters
    ----------
    y_true : array-like of shape (n,)
        Labels in {0, 1} or {-1, +1} (the larger value is the positive class).
    score : array-like of shape (n,)
        Higher means more likely positive, e.g. ``FactorizationMachine.decision_function``.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If the inputs are empty, differ in length, contain NaN or infinite values, the
        labels are not binary, or only one class is present (the AUC is undefined).

    Examples
    --------
    >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    >>> roc_auc([-1, 1, 1], [0.5, 0.5, 0.9])  # a tie counts one half
    0.75
    """
    y, s = _check_targets(y_true, score, "roc_auc")
    labels = np.unique(y)
    if not (np.array_equal(labels, [0.0, 1.0]) or np.array_equal(labels, [-1.0, 1.0])):
        if len(labels) == 1 and labels[0] in (-1.0, 0.0, 1.0):
            raise ValueError(f"roc_auc: every label is {labels[0]:g}; the AUC needs both classes.")
        raise ValueError(f"roc_auc: labels must be {{0, 1}} or {{-1, +1}}; got values {labels[:5].tolist()}.")
    positive = y == labels[-1]
    ranks = pd.Series(s).rank(method="average").to_numpy()
    n_pos = int(positive.sum())
    n_neg = len(y) - n_pos
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def mae(y_true, y_pred):
    """Mean absolute error between true and predicted ratings.

    .. math::

        \\mathrm{MAE} = \\frac{1}{n} \\sum_{j=1}^{n} |y_j - \\hat y_j|

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,)
        True and predicted ratings, matched by position.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If the inputs are empty, differ in length, are not one-dimensional or
        contain NaN or infinite values.

    Examples
    --------
    >>> mae([3, 4, 5], [3, 5, 2])
    1.3333333333333333
    """
    true, pred = _check_targets(y_true, y_pred, "mae")
    return float(np.mean(np.abs(true - pred)))


# ---------------------------------------------------------------------------
# ranking metrics
# ---------------------------------------------------------------------------
def _relevant_pairs(test, relevance_threshold, func):
    """Distinct relevant (user, item) pairs of ``test``."""
    if relevance_threshold is None:
        _check_frame(test, "test", func, ("user", "item"))
        pairs = test[["user", "item"]]
    else:
        _check_frame(test, "test", func, ("user", "item", "rating"))
        threshold = _check_real(relevance_threshold, "relevance_threshold", func)
        ratings = _as_float_array(test["rating"], "test['rating']", func)
        # NaN ratings compare False, so they are never relevant.
        pairs = test.loc[ratings >= threshold, ["user", "item"]]
    return pairs.dropna().drop_duplicates()


def _top_k(recommendations, k, func):
    """Recommendations sorted by rank within user and cut to k per user.

    Returns the cut table (``user, item``) and the 1-based position of each
    row in its user's list.  Ties in ``rank`` keep their row order.
    """
    _check_frame(recommendations, "recommendations", func, ("user", "item", "rank"))
    recs = recommendations[["user", "item", "rank"]]
    rank = pd.to_numeric(recs["rank"], errors="coerce")
    if rank.isna().any():
        raise ValueError(
            f"The 'rank' column of the 'recommendations' parameter of {func} must "
            f"be numeric without missing values; {int(rank.isna().sum())} "
            "value(s) are missing or not numbers."
        )
    duplicated = recs.duplicated(["user", "item"])
    if duplicated.any():
        first = recs.loc[duplicated].iloc[0]
        raise ValueError(
            f"The 'recommendations' parameter of {func} contains "
            f"{int(duplicated.sum())} duplicated (user, item) pair(s), e.g. "
            f"({first['user']!r}, {first['item']!r}); an item may be "
            "recommended at most once per user."
        )
    order = np.argsort(rank.to_numpy(), kind="stable")
    recs = recs.iloc[order][["user", "item"]].reset_index(drop=True)
    position = recs.groupby("user", sort=False).cumcount().to_numpy() + 1
    keep = position <= k
    return recs.loc[keep].reset_index(drop=True), position[keep]


def ranking_metrics(recommendations, test, k=10, relevance_threshold=None):
    """Per-user top-k ranking metrics.

    For each test user :math:`u` with relevant set :math:`R_u` and top-k list
    :math:`(i_1, \\dots, i_k)` (see the module docstring), with
    :math:`rel_j = [i_j \\in R_u]` and :math:`h_u = \\sum_{j \\le k} rel_j`:

    * ``precision`` :math:`= h_u / k` (the denominator is always ``k``, even
      if fewer than ``k`` items were recommended);
    * ``recall`` :math:`= h_u / |R_u|`;
    * ``ndcg`` :math:`= \\mathrm{DCG}/\\mathrm{IDCG}` with binary gains,
      :math:`\\mathrm{DCG} = \\sum_{j \\le k} rel_j / \\log_2(j + 1)` and
      :math:`\\mathrm{IDCG} = \\sum_{j=1}^{\\min(k, |R_u|)} 1 / \\log_2(j + 1)`;
    * ``average_precision`` :math:`= \\frac{1}{\\min(k, |R_u|)}
      \\sum_{j \\le k} rel_j \\, P@j` where :math:`P@j` is the precision of the
      first :math:`j` items (its mean over users is MAP@k);
    * ``hit_rate`` :math:`= [h_u \\ge 1]`.

    Parameters
    ----------
    recommendations : pandas.DataFrame
        Columns ``user``, ``item`` and ``rank`` (smaller is better; other
        columns such as ``score`` are ignored).  Rows are sorted by ``rank``
        within each user (ties keep their row order) and only the first ``k``
        rows per user are used.  A (user, item) pair may appear only once.
    test : pandas.DataFrame
        Held-out ratings with columns ``user`` and ``item`` (and ``rating``
        when ``relevance_threshold`` is given).  Duplicated pairs count once;
        rows with a missing user or item are ignored.
    k : int, default 10
        Cut-off of the ranking.
    relevance_threshold : float or None, default None
        None makes every test item relevant; a number makes an item relevant
        when its test rating is ``>= relevance_threshold``.

    Returns
    -------
    pandas.DataFrame
        One row per test user with at least one relevant item, in order of
        first appearance in ``test``, with columns ``user``, ``n_relevant``,
        ``n_recommended`` (items in the top-k list, at most ``k``),
        ``n_hits``, ``precision``, ``recall``, ``ndcg``,
        ``average_precision`` and ``hit_rate``.  ``result.attrs["k"]`` holds
        ``k``.  The frame is empty when no test item is relevant.

    Raises
    ------
    ValueError
        If ``k`` < 1, a required column is missing, ``rank`` is not numeric or
        a (user, item) pair is recommended twice.

    See Also
    --------
    mean_ranking_metrics : the means of these columns as a dict.

    Examples
    --------
    >>> recs = pd.DataFrame({"user": ["u", "u", "u"], "item": ["a", "b", "c"],
    ...                      "rank": [1, 2, 3]})
    >>> test = pd.DataFrame({"user": ["u", "u"], "item": ["a", "c"],
    ...                      "rating": [5.0, 4.0]})
    >>> table = ranking_metrics(recs, test, k=3)
    >>> table[["user", "n_hits", "precision", "recall"]]
      user  n_hits  precision  recall
    0    u       2   0.666667     1.0
    """
    func = "ranking_metrics"
    k = _check_int(k, "k", func, 1)
    relevant = _relevant_pairs(test, relevance_threshold, func)
    top, position = _top_k(recommendations, k, func)

    n_relevant = relevant.groupby("user", sort=False).size()
    if len(n_relevant) == 0:
        empty = pd.DataFrame(
            {
                "user": pd.Series([], dtype=test["user"].dtype),
                "n_relevant": pd.Series([], dtype=np.int64),
                "n_recommended": pd.Series([], dtype=np.int64),
                "n_hits": pd.Series([], dtype=np.int64),
                **{name: pd.Series([], dtype=float) for name in _MEAN_NAMES},
            }
        )
        empty.attrs["k"] = k
        return empty

    # Only users that are scored matter; drop the others before joining.
    top_mask = top["user"].isin(n_relevant.index).to_numpy()
    if len(top) and not top_mask.any():
        warnings.warn(
            f"{func}: no user of 'recommendations' has a relevant item in "
            "'test', so every scored user gets 0; check that both tables use "
            "the same user labels (e.g. int vs str).",
            UserWarning,
            stacklevel=2,
        )
    top = top.loc[top_mask].reset_index(drop=True)
    position = position[top_mask]
    # A left merge keeps the row order of ``top`` (rank order within user).
    flagged = top.merge(relevant.assign(_relevant=1), on=["user", "item"], how="left")
    hit = flagged["_relevant"].notna().to_numpy()
    hit_float = hit.astype(float)
    hits_so_far = (
        pd.Series(hit_float).groupby(flagged["user"], sort=False).cumsum().to_numpy()
    )
    per_row = pd.DataFrame(
        {
            "user": flagged["user"],
            "n_recommended": np.ones(len(flagged), dtype=np.int64),
            "n_hits": hit.astype(np.int64),
            "dcg": hit_float / np.log2(position + 1.0),
            "ap_sum": np.where(hit, hits_so_far / position, 0.0),
        }
    )
    sums = per_row.groupby("user", sort=False).sum().reindex(n_relevant.index)
    sums = sums.fillna(0.0)

    n_rel = n_relevant.to_numpy().astype(np.int64)
    n_hits = sums["n_hits"].to_numpy().astype(np.int64)
    ideal_length = np.minimum(n_rel, k)
    ideal_dcg = np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))[ideal_length - 1]

    table = pd.DataFrame(
        {
            "user": n_relevant.index.to_numpy(),
            "n_relevant": n_rel,
            "n_recommended": sums["n_recommended"].to_numpy().astype(np.int64),
            "n_hits": n_hits,
            "precision": n_hits / k,
            "recall": n_hits / n_rel,
            "ndcg": sums["dcg"].to_numpy() / ideal_dcg,
            "average_precision": sums["ap_sum"].to_numpy() / ideal_length,
            "hit_rate": (n_hits > 0).astype(float),
        }
    )
    table.attrs["k"] = k
    return table


def _summarise(table, k):
    """Means of the per-user metric columns, keyed ``<name>_at_<k>``."""
    return {
        f"{prefix}_at_{k}": (float(table[column].mean()) if len(table) else float("nan"))
        for column, prefix in _MEAN_NAMES.items()
    }


def mean_ranking_metrics(recommendations, test, k=10, relevance_threshold=None):
    """Mean top-k ranking metrics over the scored test users.

    Parameters
    ----------
    recommendations, test, k, relevance_threshold
        As in :func:`ranking_metrics`.

    Returns
    -------
    dict
        Keys ``precision_at_<k>``, ``recall_at_<k>``, ``ndcg_at_<k>``,
        ``map_at_<k>`` (mean average precision) and ``hit_rate_at_<k>``;
        each value is the unweighted mean of the corresponding column of
        :func:`ranking_metrics`, or NaN when no test user has a relevant item.

    Examples
    --------
    >>> recs = pd.DataFrame({"user": [1, 1, 2, 2], "item": [10, 11, 10, 12],
    ...                      "rank": [1, 2, 1, 2]})
    >>> test = pd.DataFrame({"user": [1, 2], "item": [11, 13], "rating": [4, 5]})
    >>> mean_ranking_metrics(recs, test, k=2)["hit_rate_at_2"]
    0.5
    """
    table = ranking_metrics(recommendations, test, k=k, relevance_threshold=relevance_threshold)
    return _summarise(table, table.attrs["k"])


def _mean_of(column, recommendations, test, k, relevance_threshold):
    table = ranking_metrics(recommendations, test, k=k, relevance_threshold=relevance_threshold)
    return float(table[column].mean()) if len(table) else float("nan")


def precision_at_k(recommendations, test, k=10, relevance_threshold=None):
    """Mean precision@k, :math:`\\frac{1}{|U|}\\sum_u h_u / k`.

    Parameters are as in :func:`ranking_metrics`; the result is the mean of
    its ``precision`` column (NaN when no test user has a relevant item).

    Examples
    --------
    >>> recs = pd.DataFrame({"user": [1, 1], "item": [10, 11], "rank": [1, 2]})
    >>> test = pd.DataFrame({"user": [1], "item": [11], "rating": [4]})
    >>> precision_at_k(recs, test, k=2)
    0.5
    """
    return _mean_of("precision", recommendations, test, k, relevance_threshold)


def recall_at_k(recommendations, test, k=10, relevance_threshold=None):
    """Mean recall@k, :math:`\\frac{1}{|U|}\\sum_u h_u / |R_u|`.

    Parameters are as in :func:`ranking_metrics`; the result is the mean of
    its ``recall`` column (NaN when no test user has a relevant item).

    Examples
    --------
    >>> recs = pd.DataFrame({"user": [1, 1], "item": [10, 11], "rank": [1, 2]})
    >>> test = pd.DataFrame({"user": [1, 1], "item": [11, 12], "rating": [4, 3]})
    >>> recall_at_k(recs, test, k=2)
    0.5
    """
    return _mean_of("recall", recommendations, test, k, relevance_threshold)


def ndcg_at_k(recommendations, test, k=10, relevance_threshold=None):
    """Mean NDCG@k with binary gains and a :math:`\\log_2(j+1)` discount.

    The ideal DCG of user :math:`u` places :math:`\\min(k, |R_u|)` relevant
    items at the top.  Parameters are as in :func:`ranking_metrics`; the
    result is the mean of its ``ndcg`` column (NaN when no user is scored).

    Examples
    --------
    >>> recs = pd.DataFrame({"user": [1, 1], "item": [10, 11], "rank": [1, 2]})
    >>> test = pd.DataFrame({"user": [1], "item": [11], "rating": [4]})
    >>> round(ndcg_at_k(recs, test, k=2), 6)  # (1/log2(3)) / 1
    0.63093
    """
    return _mean_of("ndcg", recommendations, test, k, relevance_threshold)


def average_precision_at_k(recommendations, test, k=10, relevance_threshold=None):
    """Mean average precision at k (MAP@k).

    .. math::

        \\mathrm{AP@k}(u) = \\frac{1}{\\min(k, |R_u|)}
        \\sum_{j=1}^{k} rel_j \\, \\frac{\\sum_{l \\le j} rel_l}{j}

    Parameters are as in :func:`ranking_metrics`; the result is the mean of
    its ``average_precision`` column (NaN when no user is scored).

    Examples
    --------
    >>> recs = pd.DataFrame({"user": [1, 1], "item": [10, 11], "rank": [1, 2]})
    >>> test = pd.DataFrame({"user": [1], "item": [11], "rating": [4]})
    >>> average_precision_at_k(recs, test, k=2)  # (1/2) / min(2, 1)
    0.5
    """
    return _mean_of("average_precision", recommendations, test, k, relevance_threshold)


def hit_rate_at_k(recommendations, test, k=10, relevance_threshold=None):
    """Fraction of scored users with at least one relevant item in the top k.

    Parameters are as in :func:`ranking_metrics`; the result is the mean of
    its ``hit_rate`` column (NaN when no user is scored).

    Examples
    --------
    >>> recs = pd.DataFrame({"user": [1, 2], "item": [10, 10], "rank": [1, 1]})
    >>> test = pd.DataFrame({"user": [1, 2], "item": [10, 11], "rating": [4, 4]})
    >>> hit_rate_at_k(recs, test, k=1)
    0.5
    """
    return _mean_of("hit_rate", recommendations, test, k, relevance_threshold)


def catalog_coverage(recommendations, n_items, k=None):
    """Share of the catalogue that appears in at least one recommendation list.

    .. math::

        \\mathrm{coverage} = \\frac{|\\bigcup_u L_u|}{n_{\\mathrm{items}}}

    Parameters
    ----------
    recommendations : pandas.DataFrame
        Must have an ``item`` column (and ``user`` and ``rank`` when ``k`` is
        given).
    n_items : int
        Size of the catalogue, e.g. ``len(model.items_)``.
    k : int or None, default None
        If given, only the first ``k`` items of each user's list (by
        ``rank``) count; otherwise every row counts.

    Returns
    -------
    float
        Between 0 and 1.

    Raises
    ------
    ValueError
        If ``n_items`` < 1 or more than ``n_items`` distinct items are
        recommended.

    Examples
    --------
    >>> recs = pd.DataFrame({"user": [1, 1, 2, 2], "item": [10, 11, 10, 12],
    ...                      "rank": [1, 2, 1, 2]})
    >>> catalog_coverage(recs, n_items=6)
    0.5
    >>> catalog_coverage(recs, n_items=6, k=1)
    0.16666666666666666
    """
    func = "catalog_coverage"
    n_items = _check_int(n_items, "n_items", func, 1)
    if k is None:
        _check_frame(recommendations, "recommendations", func, ("item",))
        items = recommendations["item"]
    else:
        k = _check_int(k, "k", func, 1)
        items = _top_k(recommendations, k, func)[0]["item"]
    n_distinct = int(items.nunique(dropna=True))
    if n_distinct > n_items:
        raise ValueError(
            f"The 'recommendations' parameter of {func} contains {n_distinct} "
            f"distinct items, more than n_items={n_items}."
        )
    return n_distinct / n_items
