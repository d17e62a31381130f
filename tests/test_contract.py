"""The contract every socialals model honours (one class, run for each model)."""

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import socialals
from socialals import ALS, DataWarning, NotFittedError, RegularizedALS, SocialALS, clone
from socialals.exceptions import InvalidParameterError

from conftest import planted_ratings, random_social


def _models():
    models = [
        ALS(factors=3, iterations=4, random_state=0),
        RegularizedALS(factors=3, reg=0.1, iterations=4, random_state=0),
        RegularizedALS(factors=3, reg=0.05, biases=True, weighted_reg=True, iterations=4, random_state=0),
        SocialALS(factors=3, reg=0.1, alpha=0.5, iterations=4, random_state=0),
        SocialALS(factors=3, reg=0.1, alpha=0.5, similarity="pcc", biases=True, iterations=4, random_state=0),
        SocialALS(factors=3, reg=0.1, bias_reg=0.01, alpha=0.5, biases=True, iterations=4, random_state=0),
        RegularizedALS(factors=3, reg=1.0, unobserved_weight=0.2, iterations=4, random_state=0),
        SocialALS(factors=3, reg=1.0, alpha=0.5, unobserved_weight=0.2, unobserved_rating=-1.0, biases=True,
                  iterations=4, random_state=0),
    ]
    fm = getattr(socialals, "FactorizationMachine", None)
    if fm is not None:
        models.append(fm(factors=3, iterations=4, random_state=0))
    return models


MODELS = _models()


@pytest.fixture
def data():
    ratings, _, _ = planted_ratings(n_users=50, n_items=30, seed=8)
    ratings = ratings.assign(user="u" + ratings["user"].astype(str))  # string user labels
    social = random_social(50, 120, seed=3, extra_users=4)
    social = social.assign(user="u" + social["user"].astype(str), friend="u" + social["friend"].astype(str))
    return ratings, social


@pytest.mark.parametrize("model", MODELS, ids=lambda m: repr(m)[:60])
class TestModelContract:
    def test_not_fitted(self, model, data):
        m = clone(model)
        with pytest.raises(NotFittedError, match="not fitted"):
            m.predict(data[0][["user", "item"]])
        with pytest.raises(NotFittedError):
            m.recommend(["u1"])

    def test_fit_returns_self_and_params_untouched(self, model, data):
        m = clone(model)
        before = m.get_params()
        assert m.fit(*data) is m
        after = m.get_params()
        assert before.keys() == after.keys()
        for k in before:
            assert after[k] is before[k] or after[k] == before[k], k

    def test_inputs_not_mutated(self, model, data):
        ratings, social = data
        r0, s0 = ratings.copy(deep=True), social.copy(deep=True)
        clone(model).fit(ratings, social)
        pd.testing.assert_frame_equal(ratings, r0)
        pd.testing.assert_frame_equal(social, s0)

    def test_seeded_refit_identical(self, model, data):
        a = clone(model).fit(*data).predict(data[0])
        b = clone(model).fit(*data).predict(data[0])
        np.testing.assert_array_equal(a, b)
        c = clone(model).set_params(random_state=1).fit(*data).predict(data[0])
        assert not np.array_equal(a, c)

    def test_predict_shape_and_finite(self, model, data):
        m = clone(model).fit(*data)
        p = m.predict(data[0][["user", "item"]])
        assert p.shape == (len(data[0]),) and np.isfinite(p).all()
        # the array form gives the same answer
        np.testing.assert_array_equal(p, m.predict(data[0][["user", "item"]].to_numpy()))

    def test_batch_recommend_equals_one_by_one(self, model, data):
        m = clone(model).fit(*data)
        users = list(m.users_[:7])
        batch = m.recommend(users, n=5)
        single = pd.concat([m.recommend(u, n=5) for u in users], ignore_index=True)
        pd.testing.assert_frame_equal(batch[["user", "item", "rank"]], single[["user", "item", "rank"]])
        np.testing.assert_allclose(batch["score"], single["score"], rtol=1e-12)
        small = m.recommend(users, n=5, batch_size=2)
        pd.testing.assert_frame_equal(batch, small)

    def test_recommend_frame_and_scores_match_predict(self, model, data):
        m = clone(model).fit(*data)
        rec = m.recommend(["u3", "u4"], n=4)
        assert list(rec.columns) == ["user", "item", "rank", "score"]
        assert (rec.groupby("user")["rank"].apply(list) == pd.Series({"u3": [1, 2, 3, 4], "u4": [1, 2, 3, 4]})).all()
        assert (rec.groupby("user")["score"].apply(lambda s: bool(np.all(np.diff(s) <= 0)))).all()
        np.testing.assert_allclose(rec["score"], m.predict(rec[["user", "item"]]), rtol=1e-6, atol=1e-8)
        # top-n really is the best n of all unseen items
        seen = set(data[0].loc[data[0]["user"] == "u3", "item"])
        unseen = [i for i in m.items_ if i not in seen]
        all_scores = m.predict(pd.DataFrame({"user": "u3", "item": unseen}))
        assert rec.loc[rec["user"] == "u3", "score"].iloc[0] == pytest.approx(all_scores.max())

    def test_seen_items_excluded(self, model, data):
        ratings = data[0]
        m = clone(model).fit(*data)
        rec = m.recommend(None, n=len(m.items_))
        merged = rec.merge(ratings, on=["user", "item"], how="inner")
        assert len(merged) == 0
        # every known user gets exactly the items they did not rate
        n_seen = ratings.groupby("user")["item"].nunique().reindex(m.users_, fill_value=0)
        per_user = rec.groupby("user").size().reindex(m.users_, fill_value=0)
        pd.testing.assert_series_equal(per_user, len(m.items_) - n_seen, check_names=False)
        with_seen = m.recommend(["u3"], n=len(m.items_), exclude_seen=False)
        assert len(with_seen) == len(m.items_)

    def test_unknown_user_policy(self, model, data):
        m = clone(model).fit(*data)
        with pytest.raises(KeyError, match="nobody"):
            m.recommend(["u1", "nobody"])
        pairs = pd.DataFrame({"user": ["nobody", "u1"], "item": [data[0]["item"].iloc[0], "no-item"]})
        with pytest.warns(DataWarning, match="2 of 2 pair"):
            p = m.predict(pairs)
        assert np.isfinite(p).all()

    def test_candidate_filters(self, model, data):
        ratings = data[0]
        m = clone(model).fit(*data)
        pool = list(m.items_[::2])
        banned = list(m.items_[:6])
        rec = m.recommend(["u3", "u4"], n=5, items=pool, exclude=banned)
        assert set(rec["item"]) <= set(pool) - set(banned)
        assert len(rec.merge(ratings, on=["user", "item"])) == 0  # still excludes seen items
        # the filtered list is the unfiltered ranking restricted to the allowed items
        full = m.recommend(["u3", "u4"], n=len(m.items_))
        allowed = full[full["item"].isin(set(pool) - set(banned))]
        expected = allowed.groupby("user").head(5)
        assert rec["item"].tolist() == expected["item"].tolist()
        with pytest.warns(DataWarning, match="not items of the model"):
            m.recommend(["u3"], n=5, items=pool + ["no-such-item"])
        with pytest.raises(ValueError, match="'exclude_seen'"):
            m.recommend(["u3"], exclude_seen="no")
        with pytest.raises(ValueError, match="'batch_size'"):
            m.recommend(["u3"], batch_size=0)

    def test_similar_items_and_users(self, model, data):
        m = clone(model).fit(*data)
        for method, vocab, col in ((m.similar_items, m.items_, "item"), (m.similar_users, m.users_, "user")):
            q = list(vocab[:3])
            sim = method(q, n=4)
            assert list(sim.columns) == [col, f"similar_{col}", "rank", "score"]
            assert sim[col].tolist() == [x for x in q for _ in range(4)]
            assert (sim[col] != sim[f"similar_{col}"]).all()
            assert np.isfinite(sim["score"]).all() and (sim["score"].abs() <= 1 + 1e-6).all()
            assert (sim.groupby(col)["score"].apply(lambda s: bool(np.all(np.diff(s) <= 0)))).all()
            with pytest.raises(KeyError, match="not-a-label"):
                method(["not-a-label"])

    def test_sparse_input_same_fit(self, model, data):
        ratings, social = data
        users = pd.Index(sorted(set(ratings["user"]) | set(social["user"]) | set(social["friend"])))
        items = pd.Index(sorted(set(ratings["item"])))
        R = sp.csr_matrix(
            (ratings["rating"], (users.get_indexer(ratings["user"]), items.get_indexer(ratings["item"]))),
            shape=(len(users), len(items)),
        )
        S = sp.csr_matrix(
            (np.ones(len(social)), (users.get_indexer(social["user"]), users.get_indexer(social["friend"]))),
            shape=(len(users), len(users)),
        )
        a = clone(model).fit(ratings, social)
        b = clone(model).fit(R, S, user_labels=users, item_labels=items)
        assert a.users_.equals(b.users_) and a.items_.equals(b.items_)
        np.testing.assert_array_equal(a.predict(ratings), b.predict(ratings))
        pd.testing.assert_frame_equal(a.recommend(n=3), b.recommend(n=3))

    def test_bad_hyperparameter_named(self, model, data):
        m = clone(model).set_params(factors=0)
        with pytest.raises(ValueError, match=r"The 'factors' parameter of \w+ must be an int >= 1; got 0"):
            m.fit(*data)
        with pytest.raises(ValueError, match="Invalid parameter"):
            clone(model).set_params(nonsense=1)

    def test_random_state_checked_like_everywhere_else(self, model, data):
        m = clone(model).set_params(random_state="x")
        with pytest.raises(InvalidParameterError) as err:
            m.fit(*data)
        expected = f"The 'random_state' parameter of {type(model).__name__} must be None, an int >= 0 or a numpy.random.Generator; got 'x'."
        assert str(err.value) == expected
        assert isinstance(err.value, ValueError) and isinstance(err.value, TypeError)

    def test_scikit_learn_clone_not_fitted_and_score(self, model, data):
        from sklearn.base import clone as sk_clone
        from sklearn.exceptions import NotFittedError as SkNotFittedError

        fitted = clone(model).fit(*data)
        copy = sk_clone(fitted)
        assert type(copy) is type(model) and copy.get_params() == model.get_params()
        assert not hasattr(copy, "users_")  # unfitted
        with pytest.raises(SkNotFittedError):
            copy.predict(data[0])
        with pytest.raises(SkNotFittedError):
            copy.score(data[0])
        ratings = data[0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)
            pred = fitted.predict(ratings)
            expected = -np.sqrt(np.mean((pred - ratings["rating"].to_numpy()) ** 2))
            assert fitted.score(ratings) == pytest.approx(expected, rel=1e-12)
            # y given separately: the same number; a frame without ratings needs y
            assert fitted.score(ratings[["user", "item"]], ratings["rating"]) == pytest.approx(expected, rel=1e-12)
        with pytest.raises(ValueError, match="'rating' column, or y"):
            fitted.score(ratings[["user", "item"]])


def test_social_only_users_are_recommended_to(data):
    ratings, social = data
    m = SocialALS(factors=3, reg=0.1, alpha=1.0, iterations=5, random_state=0).fit(ratings, social)
    social_only = [u for u in m.users_ if u not in set(ratings["user"])]
    assert social_only, "fixture should contain users known only through the graph"
    rec = m.recommend(social_only, n=3)
    assert set(rec["user"]) == set(social_only) and len(rec) == 3 * len(social_only)
    # plain models do not know them
    with pytest.raises(KeyError):
        RegularizedALS(factors=3, iterations=2).fit(ratings, social).recommend(social_only)


# ---------------------------------------------------------------------- scikit-learn model selection
def _sk_models():
    return [
        (RegularizedALS(factors=3, iterations=3, random_state=0), "reg", [0.01, 10.0]),
        (SocialALS(factors=3, reg=0.1, iterations=3, random_state=0), "alpha", [0.0, 5.0]),
        (socialals.FactorizationMachine(factors=3, solver="als", iterations=3, random_state=0), "reg", [0.01, 10.0]),
    ]


@pytest.mark.parametrize("model,name,values", _sk_models(), ids=lambda x: type(x).__name__ if hasattr(x, "fit") else None)
def test_grid_search_cv_of_scikit_learn(model, name, values, data):
    """GridSearchCV over our KFold: its mean test score of every candidate is minus the mean
    RMSE of that candidate refitted by hand on the same folds; the social frame goes to fit
    whole as a fit parameter, and the best candidate is refitted on everything."""
    from sklearn.model_selection import GridSearchCV

    ratings, social = data
    assert len(social) != len(ratings)  # else scikit-learn would split it with the ratings
    cv = socialals.KFold(3, shuffle=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        search = GridSearchCV(model, {name: values}, cv=cv).fit(ratings, social=social)
        by_hand = []
        for value in values:
            rmses = []
            for train, test in cv.split(ratings):
                m = clone(model).set_params(**{name: value}).fit(ratings.iloc[train], social)
                err = m.predict(ratings.iloc[test]) - ratings["rating"].to_numpy()[test]
                rmses.append(np.sqrt(np.mean(err**2)))
            by_hand.append(-np.mean(rmses))
    np.testing.assert_allclose(search.cv_results_["mean_test_score"], by_hand, rtol=1e-12)
    best = int(np.argmax(by_hand))
    assert search.best_params_ == {name: values[best]}
    assert isinstance(search.best_estimator_, type(model))
    refit = clone(model).set_params(**{name: values[best]}).fit(ratings, social)
    np.testing.assert_array_equal(search.best_estimator_.predict(ratings), refit.predict(ratings))
    assert not hasattr(model, "users_")  # the template itself is never fitted


def test_social_frame_reaches_fit_whole_through_grid_search_cv(data):
    """SocialALS with alpha > 0 uses the graph: the search's fold fits differ from fits without it."""
    from sklearn.model_selection import cross_val_score

    ratings, social = data
    model = SocialALS(factors=3, reg=0.1, alpha=5.0, iterations=3, random_state=0)
    cv = socialals.KFold(3, shuffle=True, random_state=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        with_graph = cross_val_score(model, ratings, cv=cv, params={"social": social})
        without = cross_val_score(model, ratings, cv=cv)
        train, test = next(cv.split(ratings))
        first = clone(model).fit(ratings.iloc[train], social).score(ratings.iloc[test])
    assert with_graph[0] == pytest.approx(first, rel=1e-12)
    assert not np.allclose(with_graph, without)


def test_cli_technical_parameters_are_real_parameters():
    """The command line hides these from its model descriptions: each must be a parameter of
    some model (a stale name is dead code)."""
    from socialals import cli

    params = set()
    for cls in (ALS, RegularizedALS, SocialALS, socialals.FactorizationMachine):
        params |= set(cls().get_params())
    assert set(cli._TECHNICAL) <= params, set(cli._TECHNICAL) - params
