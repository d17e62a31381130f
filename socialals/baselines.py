"""Baselines every reported number is compared with.

:class:`Popularity` recommends the most-rated items a user has not seen and predicts each
item's mean rating: the simplest honest baseline for top-N (Cremonesi, Koren & Turrin,
RecSys 2010) and, through its item means, for rating prediction.
"""

from __future__ import annotations

import numpy as np

from .base import BaseRecommender
from .data import Dataset

__all__ = ["Popularity"]


class Popularity(BaseRecommender):
    """Most-rated unseen items; item-mean rating predictions.

    ``recommend`` ranks items by their number of training ratings (ties by item order of
    first appearance), best first, the user's own items excluded. ``predict`` returns the
    item's mean training rating, also for unknown users; pairs with an unknown item get the
    training mean (with the usual :class:`~socialals.DataWarning`). It has no hyperparameters; the social
    frame is accepted and ignored.

    Attributes
    ----------
    users_, items_ : pandas.Index
    item_counts_ : ndarray of int64
        Training ratings per item.
    item_means_ : ndarray of float64
        Mean training rating per item.

    Examples
    --------
    >>> import pandas as pd
    >>> from socialals import Popularity
    >>> r = pd.DataFrame({"user": [1, 1, 2, 3], "item": ["a", "b", "a", "c"], "rating": [4., 2., 5., 3.]})
    >>> Popularity().fit(r).recommend(3, n=2)["item"].tolist()
    ['a', 'b']
    """

    def __init__(self):
        pass

    def _fit(self, data: Dataset, rng: np.random.Generator) -> None:
        Rt = data.Rt
        self.item_counts_ = np.diff(Rt.indptr).astype(np.int64)
        sums = np.add.reduceat(Rt.data, Rt.indptr[:-1], dtype=np.float64) if Rt.nnz else np.zeros(data.n_items)
        self.item_means_ = np.divide(sums, self.item_counts_, out=np.full(data.n_items, self.rating_mean_),
                                     where=self.item_counts_ > 0)

    def _score_pairs(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        return self.item_means_[i].astype(np.float64)

    def _fallback(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        # the item's mean needs no user: only an unknown item falls back to the training mean
        return np.where(i >= 0, self.item_means_[np.maximum(i, 0)], self.rating_mean_)

    def _score_users(self, u: np.ndarray) -> np.ndarray:
        return np.tile(self.item_counts_.astype(np.float64), (len(u), 1))
