"""Fold-in: new users' rows solve the model's own user half-step with the items held fixed."""

import numpy as np
import pandas as pd
import pytest

from socialals import ALS, DataWarning, NotFittedError, RegularizedALS, SocialALS, clone, load

from conftest import planted_ratings, random_social


@pytest.fixture(scope="module")
def problem():
    ratings, _, _ = planted_ratings(n_users=40, n_items=30, k=3, density=0.3, noise=0.3, seed=6)
    social = random_social(40, 80, seed=2, weights=True)
    return ratings, social


MODELS = [
    RegularizedALS(factors=3, reg=0.3, biases=True, weighted_reg=True),
    RegularizedALS(factors=3, reg=0.5, unobserved_weight=0.2, unobserved_rating=-1.0),
    SocialALS(factors=3, reg=0.3, alpha=0.8, biases=True),
    SocialALS(factors=3, reg=0.3, alpha=0.8, similarity="pcc", unobserved_weight=0.1),
]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: repr(m)[:70])
def test_fold_in_of_a_training_user_reproduces_its_converged_factors(model, problem):
    ratings, social = problem
    m = clone(model).set_params(iterations=3000, tol=1e-13, random_state=0).fit(ratings, social)
    for u in (ratings["user"].iloc[0], ratings["user"].iloc[-1]):
        links = social[(social["user"] == u) | (social["friend"] == u)]
        got = m.fold_in(ratings[ratings["user"] == u], links)
        i = m.users_.get_loc(u)
        ref = m.user_factors_[i]
        np.testing.assert_allclose(got.iloc[0, :3].to_numpy(), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
        if m.biases:
            assert got["bias"].iloc[0] == pytest.approx(m.user_bias_[i], rel=1e-4, abs=1e-6)


def row_gradient(m, u_vec, b, items, r, friends, w):
    """Gradient of the row objective of a new user, computed densely (no library code)."""
    V = m.item_factors_.astype(float)
    c = m.item_bias_ if m.biases else np.zeros(len(V))
    mu = m.global_mean_ if m.biases else 0.0
    pred_all = V @ u_vec + mu + b + c
    observed = np.zeros(len(V), bool)
    observed[items] = True
    resid = np.zeros(len(V))
    resid[items] = r - pred_all[items]
    w0, r0 = m.unobserved_weight, m.unobserved_rating
    resid[~observed] = w0 * (r0 - pred_all[~observed])
    g = -V.T @ resid + m.reg * u_vec
    gb = -resid.sum() + (m.bias_reg if m.bias_reg is not None else m.reg) * b if m.biases else 0.0
    if isinstance(m, SocialALS) and len(friends):
        F = m.user_factors_[friends].astype(float)
        g += m.alpha * (w[:, None] * (u_vec - F)).sum(0)
    return g, gb


@pytest.mark.parametrize("model", MODELS[1:3], ids=lambda m: repr(m)[:70])
def test_new_user_row_satisfies_its_normal_equations(model, problem):
    ratings, social = problem
    m = clone(model).set_params(iterations=20, random_state=0).fit(ratings, social)
    items = list(m.items_[[0, 3, 7, 11]])
    new = pd.DataFrame({"user": "new", "item": items, "rating": [4.0, 2.0, 5.0, 1.0]})
    friends = list(m.users_[[1, 5]])
    links = pd.DataFrame({"user": ["new", "new"], "friend": friends, "weight": [1.0, 3.0]})
    got = m.fold_in(new, links)
    u_vec = got.iloc[0, :3].to_numpy()
    b = got["bias"].iloc[0] if m.biases else 0.0
    g, gb = row_gradient(m, u_vec, b, m.items_.get_indexer(items), new["rating"].to_numpy(),
                         m.users_.get_indexer(friends), np.array([0.5, 1.5]))  # W = (S + Sᵀ)/2
    assert np.abs(g).max() < 1e-9 and abs(gb) < 1e-9


def test_user_with_friends_and_no_ratings_gets_recommendations(problem):
    ratings, social = problem
    m = SocialALS(factors=3, reg=0.3, alpha=1.0, iterations=10, random_state=0).fit(ratings, social)
    friends = list(m.users_[[2, 4, 6]])
    links = pd.DataFrame({"user": "newbie", "friend": friends})
    got = m.fold_in(None, links)
    expect = 1.0 * 0.5 * m.user_factors_[m.users_.get_indexer(friends)].sum(0) / (0.3 + 1.0 * 0.5 * 3)
    np.testing.assert_allclose(got.loc["newbie"].to_numpy(), expect, rtol=1e-10)
    rec = m.recommend_new(None, links, n=5)
    assert list(rec["user"]) == ["newbie"] * 5 and rec["score"].is_monotonic_decreasing
    assert "newbie" not in m.users_  # recommend_new leaves the model as it was


def test_an_empty_links_frame_is_no_links(problem):
    """A new user without friends may come with an empty links frame: the same factors as
    without one, and no warning."""
    import warnings

    ratings, social = problem
    m = SocialALS(factors=3, reg=0.3, alpha=0.8, iterations=5, random_state=0).fit(ratings, social)
    new = ratings[ratings["user"] == ratings["user"].iloc[0]].assign(user="newcomer")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = m.fold_in(new, social.iloc[:0])
    pd.testing.assert_frame_equal(got, m.fold_in(new))


def test_links_among_new_users_are_solved_jointly(problem):
    ratings, social = problem
    m = SocialALS(factors=3, reg=0.3, alpha=1.0, iterations=10, random_state=0).fit(ratings, social)
    items = list(m.items_[:4])
    new = pd.DataFrame({"user": ["a", "a", "b", "b"], "item": items, "rating": [5.0, 1.0, 2.0, 4.0]})
    links = pd.DataFrame({"user": ["a", "b"], "friend": ["b", m.users_[0]]})
    got = m.fold_in(new, links)
    # each new row satisfies its own equations given the other's folded-in factors
    m2 = SocialALS(factors=3, reg=0.3, alpha=1.0, iterations=10, random_state=0).fit(ratings, social)
    m2.fold_in(new[new["user"] == "b"], links[links["user"] == "b"], update=True)
    m2.user_factors_[m2.users_.get_loc("b")] = got.loc["b"].to_numpy()
    alone = m2.fold_in(new[new["user"] == "a"], links[links["user"] == "a"])
    np.testing.assert_allclose(alone.loc["a"].to_numpy(), got.loc["a"].to_numpy(), rtol=1e-9, atol=1e-12)


def test_update_appends_users_and_round_trips(problem, tmp_path):
    ratings, social = problem
    m = RegularizedALS(factors=3, reg=0.3, biases=True, iterations=10, random_state=0).fit(ratings)
    before = m.predict(ratings)
    new = pd.DataFrame({"user": [1000, 1000, 1001], "item": list(m.items_[[0, 1, 2]]), "rating": [4.0, 3.0, 5.0]})
    got = m.fold_in(new, update=True)
    assert list(m.users_[-2:]) == [1000, 1001]
    np.testing.assert_allclose(m.user_factors_[-2:], got.iloc[:, :3].to_numpy())
    np.testing.assert_array_equal(m.predict(ratings), before)  # known users untouched
    rec = m.recommend([1000], n=3)
    assert not set(rec["item"]) & set(new.loc[new["user"] == 1000, "item"])  # seen items excluded
    loaded = load(m.save(tmp_path / "m.npz"))
    pd.testing.assert_frame_equal(loaded.recommend([1000, 1001], n=4), m.recommend([1000, 1001], n=4))


def test_plain_als_fold_in_is_minimum_norm(problem):
    ratings, _ = problem
    m = ALS(factors=3, iterations=5, random_state=0).fit(ratings)
    new = pd.DataFrame({"user": ["z"], "item": [m.items_[4]], "rating": [3.0]})
    v = m.item_factors_[4].astype(float)
    np.testing.assert_allclose(m.fold_in(new).loc["z"].to_numpy(), 3.0 * v / (v @ v), rtol=1e-10)


def test_fold_in_bad_input(problem):
    ratings, social = problem
    with pytest.raises(NotFittedError):
        RegularizedALS().fold_in(ratings)
    m = SocialALS(factors=3, iterations=3, random_state=0).fit(ratings, social)
    with pytest.raises(ValueError, match="empty"):
        m.fold_in(ratings.iloc[:0])
    new = pd.DataFrame({"user": ["q", "q"], "item": [m.items_[0], "no-such-item"], "rating": [4.0, 2.0]})
    with pytest.warns(DataWarning, match="dropped 1 rating"):
        m.fold_in(new)
    links = pd.DataFrame({"user": ["q"], "friend": ["stranger"]})
    with pytest.warns(DataWarning, match="dropped 1 link"):
        m.fold_in(new.iloc[:1], links)
    with pytest.raises(ValueError, match="missing column"):
        m.fold_in(new.rename(columns={"rating": "stars"}))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_update_keeps_the_folded_ratings_as_a_fit_would_store_them(dtype):
    """A float64 model fitted on half stars stores them in 4 bytes; a folded-in 3.7 must
    not be rounded to float32 in its training matrix (a float32 model rounds, as in fit)."""
    rng = np.random.default_rng(0)
    key = rng.choice(30 * 20, 200, replace=False)
    ratings = pd.DataFrame({"user": key // 20, "item": key % 20, "rating": rng.integers(1, 11, 200) / 2.0})
    half = RegularizedALS(factors=2, iterations=3, random_state=0, dtype=dtype).fit(ratings)
    assert half._seen.dtype == np.float32
    for value, stored in ((3.5, np.float32), (3.7, np.float32 if dtype == "float32" else np.float64)):
        m = clone(half).fit(ratings)
        m.fold_in(pd.DataFrame({"user": [100, 100], "item": [1, 2], "rating": [value, 4.0]}), update=True)
        assert m._seen.dtype == stored
        row = m._seen[m.users_.get_loc(100)]
        np.testing.assert_array_equal(row.indices, [m.items_.get_loc(1), m.items_.get_loc(2)])
        np.testing.assert_array_equal(row.data, np.array([value, 4.0], dtype=stored))
        np.testing.assert_array_equal(m._seen[: len(half.users_)].toarray(), half._seen.toarray())
