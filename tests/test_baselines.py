"""Popularity: the baseline every top-N number is compared with."""

import numpy as np
import pandas as pd
import pytest

from socialals import DataWarning, NotFittedError, Popularity, load

from conftest import planted_ratings, random_social


def test_recommends_most_rated_unseen_items_by_brute_force():
    ratings, _, _ = planted_ratings(n_users=40, n_items=25, density=0.3, seed=1)
    m = Popularity().fit(ratings)
    counts = ratings.groupby("item").size()
    rec = m.recommend(None, n=5)
    for user, got in rec.groupby("user"):
        seen = set(ratings.loc[ratings["user"] == user, "item"])
        unseen = counts[[i for i in counts.index if i not in seen]]
        got = got.sort_values("rank")
        # the 5 best counts among unseen items, each item's score its own count
        assert set(got["item"]) <= set(unseen.index)
        np.testing.assert_array_equal(got["score"], np.sort(unseen.to_numpy(float))[::-1][:5])
        np.testing.assert_array_equal(got["score"], counts[got["item"]].to_numpy(float))


def test_predicts_item_means_with_global_fallback():
    r = pd.DataFrame({"user": [1, 1, 2, 3], "item": ["a", "b", "a", "c"], "rating": [4.0, 2.0, 5.0, 3.0]})
    m = Popularity().fit(r)
    np.testing.assert_allclose(m.predict(pd.DataFrame({"user": [3, 9], "item": ["a", "c"]})), [4.5, 3.0])
    with pytest.warns(DataWarning, match="1 of 1 pair"):
        assert m.predict(pd.DataFrame({"user": [1], "item": ["zzz"]}))[0] == pytest.approx(3.5)


def test_not_fitted_social_ignored_and_round_trip(tmp_path):
    ratings, _, _ = planted_ratings(seed=2)
    with pytest.raises(NotFittedError):
        Popularity().recommend([0])
    social = random_social(60, 50, seed=1, extra_users=3)
    a = Popularity().fit(ratings, social)
    b = Popularity().fit(ratings)
    pd.testing.assert_frame_equal(a.recommend(None, n=4), b.recommend(None, n=4))
    loaded = load(a.save(tmp_path / "pop.npz"))
    pd.testing.assert_frame_equal(loaded.recommend(None, n=4), a.recommend(None, n=4))
    np.testing.assert_array_equal(loaded.predict(ratings), a.predict(ratings))
