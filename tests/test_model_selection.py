"""Tests for socialals.model_selection with small deterministic stand-in models."""

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator

from socialals.exceptions import DataWarning, NotFittedError
from socialals.metrics import mae, mean_ranking_metrics, rmse
from socialals.model_selection import (
    GridSearch,
    KFold,
    cold_start_groups,
    cross_validate,
    evaluate,
    grid_search,
    train_test_split,
    user_holdout_split,
)

TIMING_COLUMNS = ["fit_seconds", "predict_seconds", "recommend_seconds"]

# Random splits leave some users/items unknown to the stand-in model, which
# warns about its fallback predictions; tests that care use pytest.warns.
pytestmark = pytest.mark.filterwarnings("ignore::socialals.exceptions.DataWarning")


# ---------------------------------------------------------------------------
# stand-in estimator following the socialals model protocol (a scikit-learn estimator)
# ---------------------------------------------------------------------------
class BiasBaseline(BaseEstimator):
    """Global mean + shrunk user bias + shrunk item bias.

    ``offset`` is added to every prediction (so any non-zero value hurts
    RMSE) and ``reverse`` ranks the items worst first (so it hurts ranking
    metrics without changing predictions).
    """

    def __init__(self, shrink=0.0, offset=0.0, reverse=False):
        self.shrink = shrink
        self.offset = offset
        self.reverse = reverse

    def fit(self, ratings, social=None):
        self.social_ = social
        self.n_fit_rows_ = len(ratings)
        self.mean_ = float(ratings["rating"].mean())
        residual = ratings["rating"] - self.mean_
        grouped = residual.groupby(ratings["user"])
        self.user_bias_ = grouped.sum() / (grouped.count() + self.shrink)
        residual = residual - ratings["user"].map(self.user_bias_)
        grouped = residual.groupby(ratings["item"])
        self.item_bias_ = grouped.sum() / (grouped.count() + self.shrink)
        self.users_ = pd.Index(self.user_bias_.index)
        self.items_ = pd.Index(self.item_bias_.index)
        self.seen_ = ratings.groupby("user")["item"].agg(set)
        self.recommended_for_ = []
        return self

    def predict(self, pairs):
        if not hasattr(self, "mean_"):
            raise NotFittedError("fit first")
        user_bias = pairs["user"].map(self.user_bias_)
        item_bias = pairs["item"].map(self.item_bias_)
        n_unknown = int(user_bias.isna().sum() + item_bias.isna().sum())
        if n_unknown:
            warnings.warn(f"{n_unknown} unknown labels got the fallback", DataWarning)
        return (
            self.mean_ + user_bias.fillna(0.0) + item_bias.fillna(0.0) + self.offset
        ).to_numpy(dtype=float)

    def recommend(self, users=None, n=10, exclude_seen=True):
        users = list(self.users_) if users is None else list(users)
        self.recommended_for_.extend(users)
        rows = []
        for user in users:
            if user not in self.user_bias_.index:
                raise KeyError(user)
            scores = self.mean_ + self.user_bias_[user] + self.item_bias_ + self.offset
            if exclude_seen:
                scores = scores.drop(list(self.seen_[user]))
            key = -scores if not self.reverse else scores
            order = np.argsort(key.to_numpy(), kind="stable")[:n]
            for rank, pos in enumerate(order, start=1):
                rows.append((user, scores.index[pos], rank, float(scores.iloc[pos])))
        return pd.DataFrame(rows, columns=["user", "item", "rank", "score"])


# ---------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------
def make_ratings(n_users=40, n_items=30, seed=0, prefix=None):
    """Synthetic ratings; popular items are rated more often and higher."""
    rng = np.random.default_rng(seed)
    item_effect = np.linspace(-1.5, 1.5, n_items)
    user_effect = rng.normal(0, 0.5, n_users)
    popularity = np.exp(1.5 * item_effect)
    popularity /= popularity.sum()
    rows = []
    for u in range(n_users):
        n_rated = 1 + (u * 7) % 15  # between 1 and 15 ratings
        items = rng.choice(n_items, size=n_rated, replace=False, p=popularity)
        for i in items:
            value = 3 + user_effect[u] + item_effect[i] + rng.normal(0, 0.3)
            rows.append((u, int(i), float(np.clip(np.round(value), 1, 5))))
    frame = pd.DataFrame(rows, columns=["user", "item", "rating"])
    if prefix is not None:
        frame["user"] = prefix + frame["user"].astype(str)
        frame["item"] = "i" + frame["item"].astype(str)
    return frame


@pytest.fixture
def ratings():
    frame = make_ratings()
    frame.index = frame.index * 10 + 7  # a non-default index to check it is kept
    return frame


@pytest.fixture
def social():
    return pd.DataFrame({"user": [0, 1, 2, 3, 99], "friend": [5, 6, 7, 8, 0], "weight": 1.0})


# ---------------------------------------------------------------------------
# train_test_split
# ---------------------------------------------------------------------------
def assert_partition(ratings, train, test):
    assert train.index.intersection(test.index).empty
    assert len(train) + len(test) == len(ratings)
    rebuilt = pd.concat([train, test]).loc[ratings.index]
    pd.testing.assert_frame_equal(rebuilt, ratings)
    # original relative order kept inside each part
    assert train.index.is_monotonic_increasing and test.index.is_monotonic_increasing


def test_random_split_partitions_exactly(ratings):
    copy = ratings.copy()
    train, test = train_test_split(ratings, test_size=0.2, random_state=1)
    assert_partition(ratings, train, test)
    assert len(test) == math.ceil(0.2 * len(ratings))
    pd.testing.assert_frame_equal(ratings, copy)
    train, test = train_test_split(ratings, test_size=13, random_state=1)
    assert len(test) == 13


def test_user_split_holds_out_a_share_of_each_user(ratings):
    copy = ratings.copy()
    train, test = train_test_split(ratings, test_size=0.25, random_state=3, stratify="user")
    assert_partition(ratings, train, test)
    pd.testing.assert_frame_equal(ratings, copy)
    counts = ratings["user"].value_counts()
    n_test = test["user"].value_counts().reindex(counts.index, fill_value=0)
    n_train = train["user"].value_counts().reindex(counts.index, fill_value=0)
    for user, n in counts.items():
        if n == 1:
            assert n_train[user] == 1 and n_test[user] == 0
        else:
            assert n_train[user] >= 1 and n_test[user] >= 1
            expected = min(max(math.floor(0.25 * n + 0.5), 1), n - 1)
            assert n_test[user] == expected, user
    assert (counts == 1).any() and (counts >= 8).any()  # the data covers both cases


def test_user_split_with_int_count(ratings):
    train, test = train_test_split(ratings, test_size=2, random_state=0, stratify="user")
    counts = ratings["user"].value_counts()
    n_test = test["user"].value_counts().reindex(counts.index, fill_value=0)
    np.testing.assert_array_equal(n_test.to_numpy(), np.minimum(2, counts.to_numpy() - 1))


def test_split_reproducible_and_seed_dependent(ratings):
    for stratify in ("random", "user"):
        a = train_test_split(ratings, random_state=11, stratify=stratify)[1]
        b = train_test_split(ratings, random_state=11, stratify=stratify)[1]
        c = train_test_split(ratings, random_state=12, stratify=stratify)[1]
        assert a.index.equals(b.index)
        assert not a.index.equals(c.index)
    # a Generator is consumed: successive calls differ, a same-seeded one replays them
    gen = np.random.default_rng(5)
    first = train_test_split(ratings, random_state=gen)[1].index
    second = train_test_split(ratings, random_state=gen)[1].index
    assert not first.equals(second)
    replay = np.random.default_rng(5)
    assert train_test_split(ratings, random_state=replay)[1].index.equals(first)


def test_global_numpy_rng_untouched(ratings):
    np.random.seed(123)
    state = np.random.get_state()[1].copy()
    train_test_split(ratings, random_state=None)
    train_test_split(ratings, random_state=4, stratify="user")
    list(KFold(3, random_state=None).split(ratings))
    np.testing.assert_array_equal(np.random.get_state()[1], state)


def test_split_string_labels():
    frame = make_ratings(prefix="u")
    train, test = train_test_split(frame, test_size=0.3, random_state=0, stratify="user")
    assert_partition(frame, train, test)
    assert set(test["user"]) <= set(train["user"])


def test_split_validation(ratings):
    with pytest.raises(ValueError, match="'test_size' parameter of train_test_split"):
        train_test_split(ratings, test_size=0.0)
    with pytest.raises(ValueError, match="'test_size'"):
        train_test_split(ratings, test_size=1.0)
    with pytest.raises(ValueError, match="both the training and the test set"):
        train_test_split(ratings, test_size=len(ratings))
    with pytest.raises(ValueError, match="'stratify' parameter"):
        train_test_split(ratings, stratify="item")
    with pytest.raises(TypeError, match="'random_state' parameter"):
        train_test_split(ratings, random_state="seed")
    with pytest.raises(TypeError, match="'random_state' parameter"):
        train_test_split(ratings, random_state=np.random.RandomState(0))
    with pytest.raises(ValueError, match=r"missing the column\(s\) \['rating'\]"):
        train_test_split(ratings.drop(columns="rating"))
    singles = pd.DataFrame({"user": [1, 2, 3], "item": [1, 1, 1], "rating": [3, 4, 5]})
    with pytest.raises(ValueError, match="no user has at least 2 ratings"):
        train_test_split(singles, stratify="user")


# ---------------------------------------------------------------------------
# KFold
# ---------------------------------------------------------------------------
def test_user_holdout_split_holds_out_whole_users(ratings):
    copy = ratings.copy()
    candidates = [0, 1, 2, 3, 4, 5, 6, 7, 1000]  # 1000 has no ratings: ignored
    train, test = user_holdout_split(ratings, n_users=4, test_size=0.1, users=candidates, random_state=2)
    assert_partition(ratings, train, test)
    pd.testing.assert_frame_equal(ratings, copy)
    held = np.setdiff1d(test["user"].unique(), train["user"].unique())
    # exactly four candidates lost every rating; the random part may empty others only by chance
    out = [u for u in candidates[:-1] if u not in set(train["user"])]
    assert len(out) == 4 and set(out) <= set(held)
    n_held_rows = int(ratings["user"].isin(out).sum())
    assert n_held_rows == int(test["user"].isin(out).sum())
    assert len(test) - n_held_rows == math.ceil(0.1 * (len(ratings) - n_held_rows))
    again = user_holdout_split(ratings, n_users=4, test_size=0.1, users=candidates, random_state=2)
    pd.testing.assert_frame_equal(again[1], test)


def test_user_holdout_split_fraction_and_only_held_out(ratings):
    train, test = user_holdout_split(ratings, n_users=0.25, test_size=0, random_state=0)
    n_users = ratings["user"].nunique()
    assert test["user"].nunique() == math.ceil(0.25 * n_users)
    assert not set(test["user"]) & set(train["user"])


def test_user_holdout_split_validation(ratings):
    with pytest.raises(ValueError, match="only 2 candidate"):
        user_holdout_split(ratings, n_users=3, users=[0, 1, 999], random_state=0)
    with pytest.raises(ValueError, match="n_users"):
        user_holdout_split(ratings, n_users=0, random_state=0)
    with pytest.raises(TypeError, match="n_users"):
        user_holdout_split(ratings, n_users="5", random_state=0)
    with pytest.raises(ValueError, match="test_size"):
        user_holdout_split(ratings, n_users=2, test_size=1.0, random_state=0)
    with pytest.raises(ValueError, match="no training rating"):
        user_holdout_split(ratings, n_users=2, test_size=len(ratings), random_state=0)


def test_kfold_tests_each_row_exactly_once():
    n = 23
    folds = list(KFold(n_splits=5, random_state=0).split(np.zeros(n)))
    assert len(folds) == 5
    all_test = np.concatenate([test for _, test in folds])
    np.testing.assert_array_equal(np.sort(all_test), np.arange(n))
    for train, test in folds:
        assert np.intersect1d(train, test).size == 0
        np.testing.assert_array_equal(np.union1d(train, test), np.arange(n))
    assert sorted(len(test) for _, test in folds) == [4, 4, 5, 5, 5]
    # shuffled: the first fold is not simply the first rows
    assert not np.array_equal(folds[0][1], np.arange(5))


def test_kfold_without_shuffle_is_contiguous(ratings):
    folds = list(KFold(n_splits=3, shuffle=False).split(ratings.iloc[:10]))
    assert [test.tolist() for _, test in folds] == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]


def test_kfold_seeds(ratings):
    a = [t for _, t in KFold(4, random_state=8).split(ratings)]
    b = [t for _, t in KFold(4, random_state=8).split(ratings)]
    c = [t for _, t in KFold(4, random_state=9).split(ratings)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_kfold_seed_gives_the_folds_of_a_generator_permutation(ratings):
    """An int seed means numpy's Generator: the folds of the published results
    (KFold(5, shuffle=True, random_state=0)) are consecutive runs of default_rng(0)'s
    permutation, larger folds first, sorted."""
    n = len(ratings)
    perm = np.random.default_rng(0).permutation(n)
    sizes = [n // 5 + (f < n % 5) for f in range(5)]
    bounds = np.cumsum([0] + sizes)
    expected = [np.sort(perm[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    got = [test for _, test in KFold(5, shuffle=True, random_state=0).split(ratings)]
    assert len(got) == 5 and all(np.array_equal(g, e) for g, e in zip(got, expected))
    # and scikit-learn sees the same folds through its splitter protocol
    from sklearn.model_selection import check_cv

    cv = check_cv(KFold(5, shuffle=True, random_state=0))
    assert cv.get_n_splits(ratings) == 5
    assert all(np.array_equal(t, e) for (_, t), e in zip(cv.split(ratings, None, groups=None), expected))


def test_one_error_style_for_random_state(ratings):
    """random_state='x' is the same error, with the same message, everywhere."""
    from socialals import RegularizedALS, make_social_ratings
    from socialals.exceptions import InvalidParameterError

    calls = {
        "KFold": lambda: KFold(3, random_state="x"),
        "train_test_split": lambda: train_test_split(ratings, random_state="x"),
        "user_holdout_split": lambda: user_holdout_split(ratings, random_state="x"),
        "cross_validate": lambda: cross_validate(BiasBaseline(), ratings, cv=3, random_state="x"),
        "RegularizedALS": lambda: RegularizedALS(random_state="x").fit(ratings),
        "make_social_ratings": lambda: make_social_ratings(n_users=20, n_items=10, random_state="x"),
    }
    for owner, call in calls.items():
        with pytest.raises(InvalidParameterError) as err:
            call()
        assert str(err.value) == (
            f"The 'random_state' parameter of {owner} must be None, an int >= 0 or a numpy.random.Generator; got 'x'."
        )
        assert isinstance(err.value, ValueError) and isinstance(err.value, TypeError)


def test_kfold_validation():
    with pytest.raises(ValueError, match=r"^The 'n_splits' parameter of KFold must be an int >= 2; got 1\.$"):
        KFold(n_splits=1)
    with pytest.raises(TypeError, match="'n_splits'"):
        KFold(n_splits=2.0)
    with pytest.raises(ValueError, match="shuffle=False"):
        KFold(3, shuffle=False, random_state=0)
    with pytest.raises(ValueError, match="cannot make n_splits=5 folds from 3 rows"):
        list(KFold(5).split(np.zeros(3)))


# ---------------------------------------------------------------------------
# cold_start_groups
# ---------------------------------------------------------------------------
def test_cold_start_groups_hand_built():
    train = pd.DataFrame(
        {
            "user": ["warm"] * 5 + ["four"] * 4 + ["one"],
            "item": list(range(5)) + list(range(4)) + [0],
            "rating": 3.0,
        }
    )
    test = pd.DataFrame(
        {
            "user": ["warm", "four", "one", "fan", "leader", "self", "alone", "four"],
            "item": 9,
            "rating": 4.0,
        },
        index=[10, 11, 12, 13, 14, 15, 16, 17],
    )
    # "fan" only appears as a friend, "leader" only as a user; "self" only has a self-loop
    social = pd.DataFrame({"user": ["warm", "leader", "self"], "friend": ["fan", "ghost", "self"]})
    train_copy, test_copy, social_copy = train.copy(), test.copy(), social.copy()
    groups = cold_start_groups(train, test, social)
    expected = ["warm", "cold", "cold", "social_only", "social_only", "unknown", "unknown", "cold"]
    assert groups.tolist() == expected
    assert groups.index.tolist() == test.index.tolist()
    assert list(groups.cat.categories) == ["warm", "cold", "social_only", "unknown"]
    # a threshold of 4 makes the user with 4 ratings warm
    assert cold_start_groups(train, test, social, threshold=4).tolist()[1] == "warm"
    # without a social graph, friends do not count
    assert cold_start_groups(train, test).tolist()[3:5] == ["unknown", "unknown"]
    for frame, copy in ((train, train_copy), (test, test_copy), (social, social_copy)):
        pd.testing.assert_frame_equal(frame, copy)
    with pytest.raises(ValueError, match="'threshold' parameter of cold_start_groups"):
        cold_start_groups(train, test, threshold=0)
    with pytest.raises(ValueError, match=r"'social' .* \['friend'\]"):
        cold_start_groups(train, test, social.rename(columns={"friend": "other"}))


# ---------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------
def test_evaluate_matches_manual_computation(ratings, social):
    train, test = train_test_split(ratings, test_size=0.3, random_state=2)
    # add a test row for a user who is unknown but has a friend, and one without
    extra = pd.DataFrame({"user": [99, 1234], "item": [0, 1], "rating": [4.0, 2.0]})
    test = pd.concat([test, extra], ignore_index=True)
    train_copy, test_copy = train.copy(), test.copy()
    model = BiasBaseline(shrink=2.0)
    with pytest.warns(DataWarning):
        result = evaluate(model, train, test, social=social, k=5)
    pd.testing.assert_frame_equal(train, train_copy)
    pd.testing.assert_frame_equal(test, test_copy)

    with pytest.warns(DataWarning):
        pred = BiasBaseline(shrink=2.0).fit(train).predict(test)
    assert result["rmse"] == pytest.approx(rmse(test["rating"], pred))
    assert result["mae"] == pytest.approx(mae(test["rating"], pred))
    groups = cold_start_groups(train, test, social).to_numpy()
    for group, prefix in (("cold", "cold_start"), ("warm", "warm"),
                          ("social_only", "social_only"), ("unknown", "unknown")):
        mask = groups == group
        assert mask.any()
        assert result[f"n_{prefix}"] == mask.sum()
        assert result[f"{prefix}_rmse"] == pytest.approx(rmse(test["rating"][mask], pred[mask]))
        assert result[f"{prefix}_mae"] == pytest.approx(mae(test["rating"][mask], pred[mask]))
    assert result["n_train"] == len(train) and result["n_test"] == len(test)

    # ranking only for known test users, each recommended once
    known = sorted(set(test["user"]) & set(train["user"]))
    assert sorted(model.recommended_for_) == known
    assert result["n_ranking_users"] == len(known)
    recs = model.recommend(users=known, n=5)
    expected = mean_ranking_metrics(recs, test[test["user"].isin(known)], k=5)
    for key in ("ndcg_at_5", "precision_at_5", "recall_at_5", "map_at_5", "hit_rate_at_5"):
        assert result[key] == pytest.approx(expected[key])
    assert result["coverage"] == pytest.approx(recs["item"].nunique() / len(model.items_))
    for key in TIMING_COLUMNS:
        assert result[key] >= 0.0
    assert model.social_ is social  # the graph reaches fit unchanged


def test_evaluate_empty_groups_are_nan_and_ranking_optional(ratings):
    train, test = train_test_split(ratings, test_size=0.3, random_state=0, stratify="user")
    result = evaluate(BiasBaseline(), train, test, ranking=False, k=3)
    # a per-user split leaves no unknown user, and there is no social graph
    assert result["n_unknown"] == 0 and result["n_social_only"] == 0
    assert math.isnan(result["unknown_rmse"]) and math.isnan(result["social_only_mae"])
    assert not math.isnan(result["warm_rmse"]) and not math.isnan(result["cold_start_rmse"])
    assert "ndcg_at_3" not in result and "coverage" not in result


def test_evaluate_relevance_threshold_limits_ranked_users():
    train = pd.DataFrame({"user": [1, 1, 2, 2], "item": [1, 2, 1, 3], "rating": [5.0, 4, 3, 2]})
    test = pd.DataFrame({"user": [1, 2], "item": [3, 2], "rating": [5.0, 1.0]})
    model = BiasBaseline()
    result = evaluate(model, train, test, k=2, relevance_threshold=4)
    # only user 1 has a relevant test item, so only user 1 is asked for items
    assert model.recommended_for_ == [1]
    assert result["n_ranking_users"] == 1
    # user 1 has seen items 1 and 2, so item 3 is the only candidate: a hit at rank 1
    assert result["hit_rate_at_2"] == 1.0 and result["ndcg_at_2"] == pytest.approx(1.0)


def test_evaluate_rejects_bad_predictions(ratings):
    class NaNModel(BiasBaseline):
        def predict(self, pairs):
            out = super().predict(pairs).copy()
            out[0] = np.nan
            return out

    train, test = train_test_split(ratings, random_state=0, stratify="user")
    with pytest.raises(ValueError, match="1 non-finite prediction"):
        evaluate(NaNModel(), train, test)
    with pytest.raises(ValueError, match="'k' parameter of evaluate"):
        evaluate(BiasBaseline(), train, test, k=0)


# ---------------------------------------------------------------------------
# cross_validate
# ---------------------------------------------------------------------------
def test_cross_validate_shape_and_summary(ratings, social):
    ratings_copy, social_copy = ratings.copy(), social.copy()
    model = BiasBaseline(shrink=1.0)
    results = cross_validate(model, ratings, social=social, cv=5, random_state=0, k=5)
    assert list(results.index) == [f"fold_{i}" for i in range(5)] + ["mean", "std"]
    assert results.index.name == "fold"
    folds = results.iloc[:5]
    for column in ("rmse", "mae", "ndcg_at_5", "coverage", "n_test"):
        assert results.loc["mean", column] == pytest.approx(folds[column].mean())
        assert results.loc["std", column] == pytest.approx(np.std(folds[column].to_numpy()))
    assert folds["n_test"].sum() == len(ratings)  # every rating tested once
    assert (folds["n_train"] + folds["n_test"] == len(ratings)).all()
    assert not hasattr(model, "users_")  # the template is never fitted
    pd.testing.assert_frame_equal(ratings, ratings_copy)
    pd.testing.assert_frame_equal(social, social_copy)


def test_cross_validate_mean_skips_nan_groups(ratings):
    results = cross_validate(BiasBaseline(), ratings, cv=4, random_state=1, ranking=False)
    folds = results.iloc[:4]
    # no social graph: the social_only group is always empty
    assert folds["social_only_rmse"].isna().all()
    assert math.isnan(results.loc["mean", "social_only_rmse"])


def test_cross_validate_return_models_and_social(ratings, social):
    results, models = cross_validate(
        BiasBaseline(shrink=3.0), ratings, social=social, cv=3,
        random_state=4, return_models=True, ranking=False,
    )
    assert len(models) == 3
    assert len({id(m) for m in models}) == 3
    for model, n_train in zip(models, results["n_train"].iloc[:3]):
        assert model.social_ is social
        assert model.shrink == 3.0
        assert model.n_fit_rows_ == n_train


def test_cross_validate_identical_for_any_n_jobs(ratings, social):
    kwargs = dict(social=social, cv=3, random_state=7, k=5)
    serial = cross_validate(BiasBaseline(shrink=1.0), ratings, n_jobs=1, **kwargs)
    parallel = cross_validate(BiasBaseline(shrink=1.0), ratings, n_jobs=2, **kwargs)
    pd.testing.assert_frame_equal(
        serial.drop(columns=TIMING_COLUMNS), parallel.drop(columns=TIMING_COLUMNS)
    )


def test_cross_validate_cv_options(ratings):
    a = cross_validate(BiasBaseline(), ratings, cv=KFold(3, random_state=2), ranking=False)
    b = cross_validate(BiasBaseline(), ratings, cv=3, random_state=2, ranking=False)
    c = cross_validate(BiasBaseline(), ratings, cv=3, random_state=3, ranking=False)
    assert len(a) == 5
    np.testing.assert_allclose(a["rmse"], b["rmse"])
    assert not np.allclose(a["rmse"].iloc[:3], c["rmse"].iloc[:3])
    with pytest.raises(ValueError, match="only used when 'cv' is an int"):
        cross_validate(BiasBaseline(), ratings, cv=KFold(3, random_state=2), random_state=1)
    with pytest.raises(ValueError, match="'cv' parameter of cross_validate must be an int >= 2"):
        cross_validate(BiasBaseline(), ratings, cv=1)
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['n'\]"):
        cross_validate(BiasBaseline(), ratings, n=5)
    with pytest.raises(ValueError, match="'n_jobs'"):
        cross_validate(BiasBaseline(), ratings, n_jobs=0)


# ---------------------------------------------------------------------------
# grid search
# ---------------------------------------------------------------------------
def test_grid_search_picks_lowest_rmse(ratings):
    model = BiasBaseline(shrink=1.0)
    search = GridSearch(model, {"offset": [1.5, 0.0, -1.0]}, cv=3, random_state=0).fit(ratings)
    assert search.best_params_ == {"offset": 0.0}
    assert search.best_index_ == 1
    results = search.results_
    assert len(results) == 3
    assert results["param_offset"].tolist() == [1.5, 0.0, -1.0]
    split_columns = ["split0_score", "split1_score", "split2_score"]
    np.testing.assert_allclose(results["mean_score"], results[split_columns].mean(axis=1))
    np.testing.assert_allclose(results["std_score"], results[split_columns].std(axis=1, ddof=0))
    assert search.best_score_ == pytest.approx(results["mean_score"].min())
    assert results["rank_score"].tolist() == [3, 1, 2]
    # the winner is refitted on everything; the template is untouched
    assert search.best_estimator_.n_fit_rows_ == len(ratings)
    assert search.best_estimator_.offset == 0.0
    assert model.get_params() == {"shrink": 1.0, "offset": 0.0, "reverse": False}
    assert not hasattr(model, "users_")


def test_grid_search_higher_is_better_for_ranking(ratings):
    grid = {"reverse": [True, False]}
    search = grid_search(BiasBaseline(), grid, ratings, cv=3, scoring="ndcg", k=5, random_state=0)
    assert search.scoring_key_ == "ndcg_at_5" and search.higher_is_better_
    assert search.best_params_ == {"reverse": False}
    assert search.results_["mean_score"][1] > search.results_["mean_score"][0]
    # the same grid is a tie under RMSE (reverse does not change predictions):
    # ties go to the first candidate
    tie = grid_search(BiasBaseline(), grid, ratings, cv=3, random_state=0)
    assert tie.results_["mean_score"][0] == pytest.approx(tie.results_["mean_score"][1])
    assert tie.best_params_ == {"reverse": True}


def test_grid_search_product_and_validation_split(ratings, social):
    ratings_copy = ratings.copy()
    search = grid_search(
        BiasBaseline(), {"shrink": [0.0, 5.0], "offset": [0.0, 0.5]}, ratings,
        social=social, validation_size=0.25, random_state=1, scoring="mae",
    )
    assert len(search.results_) == 4
    assert search.results_["params"].tolist() == [
        {"shrink": 0.0, "offset": 0.0}, {"shrink": 0.0, "offset": 0.5},
        {"shrink": 5.0, "offset": 0.0}, {"shrink": 5.0, "offset": 0.5},
    ]
    assert search.n_splits_ == 1
    assert "split1_score" not in search.results_
    assert (search.results_["std_score"] == 0).all()
    assert search.best_params_["offset"] == 0.0
    assert search.best_estimator_.social_ is social
    pd.testing.assert_frame_equal(ratings, ratings_copy)


def test_grid_search_identical_for_any_n_jobs(ratings):
    grid = [{"shrink": [0.0, 10.0]}, {"offset": [0.3]}]
    serial = grid_search(BiasBaseline(), grid, ratings, cv=2, random_state=5, n_jobs=1)
    parallel = grid_search(BiasBaseline(), grid, ratings, cv=2, random_state=5, n_jobs=2)
    assert len(serial.results_) == 3  # union of the two grids
    assert math.isnan(serial.results_["param_shrink"][2])
    columns = ["split0_score", "split1_score", "mean_score", "rank_score"]
    pd.testing.assert_frame_equal(serial.results_[columns], parallel.results_[columns])
    assert serial.best_params_ == parallel.best_params_


def test_grid_search_validation(ratings):
    with pytest.raises(ValueError, match=r"Unknown parameter 'alpha' .* BiasBaseline"):
        grid_search(BiasBaseline(), {"alpha": [1, 2]}, ratings)
    with pytest.raises(ValueError, match=r"param_grid\['shrink'\] of GridSearch is empty"):
        grid_search(BiasBaseline(), {"shrink": []}, ratings)
    with pytest.raises(TypeError, match=r"param_grid\['shrink'\].* list of candidate values"):
        grid_search(BiasBaseline(), {"shrink": 1.0}, ratings)
    with pytest.raises(ValueError, match="'scoring' parameter"):
        grid_search(BiasBaseline(), {"shrink": [1.0]}, ratings, scoring="r2")
    with pytest.raises(ValueError, match="either 'cv' or 'validation_size'"):
        grid_search(BiasBaseline(), {"shrink": [1.0]}, ratings, cv=3, validation_size=0.2)
    with pytest.raises(TypeError, match="unexpected keyword"):
        grid_search(BiasBaseline(), {"shrink": [1.0]}, ratings, folds=3)
    with pytest.raises(ValueError, match="every candidate scored NaN on 'social_only_rmse'"):
        grid_search(BiasBaseline(), {"shrink": [1.0]}, ratings, scoring="social_only_rmse")


# ---------------------------------------------------------------------------
# string labels, unknown-only test users, cloning
# ---------------------------------------------------------------------------
def test_string_labels_end_to_end():
    frame = make_ratings(prefix="u")
    results = cross_validate(BiasBaseline(), frame, cv=3, random_state=0, k=5)
    assert results.loc["mean", "n_ranking_users"] > 0
    assert 0 < results.loc["mean", "ndcg_at_5"] <= 1
    assert not math.isnan(results.loc["mean", "cold_start_rmse"])


def test_evaluate_when_no_test_user_is_known():
    train = pd.DataFrame({"user": [1, 1, 2], "item": [1, 2, 1], "rating": [4.0, 3, 5]})
    test = pd.DataFrame({"user": [7, 8], "item": [1, 2], "rating": [4.0, 2.0]})
    model = BiasBaseline()
    result = evaluate(model, train, test, k=3)
    assert model.recommended_for_ == []  # recommend never called with unknown users
    assert result["n_ranking_users"] == 0 and result["n_unknown"] == 2
    assert math.isnan(result["ndcg_at_3"]) and math.isnan(result["coverage"])
    assert result["unknown_rmse"] == pytest.approx(result["rmse"])


def test_cross_validate_fits_clones_via_socialals_base(monkeypatch, ratings):
    import socialals.model_selection as ms

    calls = []

    def spy_clone(model):
        calls.append(model)
        return type(model)(**model.get_params())

    monkeypatch.setattr(ms, "clone", spy_clone)
    model = BiasBaseline(shrink=2.0)
    results = cross_validate(model, ratings, cv=2, random_state=0, ranking=False)
    assert len(results) == 4
    assert calls == [model, model]
    assert not hasattr(model, "users_") and model.get_params()["shrink"] == 2.0
