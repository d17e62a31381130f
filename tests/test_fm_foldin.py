"""Fold-in for the factorization machine: a new user's own parameters (w_u, v_u) minimise
the FM's own objective over that user's terms with everything else held fixed.

The oracle is a brute-force FM written here: the dense design row of each of the user's
ratings built by hand (one-hot user, one-hot item, friends' normalised weights, side
features) and ŷ summed over all pairs of features, with no library code."""

import copy

import numpy as np
import pandas as pd
import pytest

from socialals import DataWarning, NotFittedError, load
from socialals.fm import FactorizationMachine
from socialals.fm import _foldin as fm_foldin

from conftest import planted_ratings, random_social, require_dataset


@pytest.fixture(scope="module")
def problem():
    ratings, _, _ = planted_ratings(n_users=40, n_items=30, k=3, density=0.3, noise=0.3, seed=6)
    social = random_social(40, 80, seed=2, weights=True)
    return ratings, social


def design_rows(m, items, friends=(), weights=(), features=None):
    """Dense design rows (one per rated item) of a NEW user of ``m`` (fitted, not updated),
    with one extra last column for the user's own one-hot feature."""
    p = m.n_features_in_
    X = np.zeros((len(items), p + 1))
    X[:, p] = 1.0
    X[np.arange(len(items)), m.feature_blocks_["item"][0] + m.items_.get_indexer(items)] = 1.0
    if len(friends):
        w = np.asarray(weights, float)
        X[:, m.feature_blocks_["social"][0] + m.users_.get_indexer(friends)] = w / w.sum()
    if features is not None:
        a, b = m.feature_blocks_["user_features"]
        X[:, a:b] = features
    return X


def brute_yhat(m, X, theta):
    """ŷ = w0 + Σ_l w_l x_l + Σ_{l<j} ⟨v_l, v_j⟩ x_l x_j with the user's θ = (w_u, v_u) last."""
    w = np.r_[m.w_.astype(float), theta[0]]
    V = np.vstack([m.V_.astype(float), theta[1:]])
    out = np.empty(len(X))
    for r, x in enumerate(X):
        nz = np.flatnonzero(x)
        s = m.w0_ + w[nz] @ x[nz]
        for a in range(len(nz)):
            for b in range(a + 1, len(nz)):
                s += V[nz[a]] @ V[nz[b]] * x[nz[a]] * x[nz[b]]
        out[r] = s
    return out


def row_objective(m, X, y, theta):
    """The user's terms of the written objective (y coded ±1 for the classification losses)."""
    yhat = brute_yhat(m, X, theta)
    if m.loss == "squared":
        loss = 0.5 * ((yhat - y) ** 2).sum()
    elif m.loss == "logistic":
        loss = np.logaddexp(0.0, -y * yhat).sum()
    else:
        loss = np.maximum(0.0, 1.0 - y * yhat).sum()
    reg_w = m.reg if m.reg_w is None else m.reg_w
    reg_V = m.reg if m.reg_V is None else m.reg_V
    c = len(X) if m.reg_scaling == "frequency" else 1.0
    return loss + 0.5 * c * (reg_w * theta[0] ** 2 + reg_V * theta[1:] @ theta[1:])


def theta_of(frame, label, k):
    row = frame.loc[label]
    return np.r_[row["bias"], row[[f"factor_{f}" for f in range(k)]].to_numpy()]


def new_user(m, labels=False, label="new"):
    items = list(m.items_[[0, 3, 7, 11, 12, 20, 25]])
    values = [1, 0, 1, 1, 0, 0, 1] if labels else [4.0, 2.0, 5.0, 1.0, 3.5, 2.5, 4.5]
    friends = list(m.users_[[1, 5, 9]])
    ratings = pd.DataFrame({"user": label, "item": items, "rating": values})
    links = pd.DataFrame({"user": label, "friend": friends, "weight": [1.0, 3.0, 0.5]})
    return ratings, links, items, friends, [1.0, 3.0, 0.5]


def fit_binary(problem, loss, **params):
    ratings, social = problem
    binary = ratings.assign(rating=(ratings["rating"] > 3.0).astype(int))
    return FactorizationMachine(factors=3, loss=loss, iterations=15, learning_rate=0.05, random_state=0,
                                **params).fit(binary, social)


def several_new_users(m, labels):
    """Three new users with 3, 7 and 12 ratings (solved in one batch) and their links."""
    rng = np.random.default_rng(3)
    frames, links, rows = [], [], {}
    for name, count, friends in (("n3", 3, [0, 8]), ("new", 7, [1, 5, 9]), ("n12", 12, [4])):
        items = list(m.items_[rng.choice(len(m.items_), count, replace=False)])
        values = rng.integers(0, 2, count) if labels else rng.uniform(1, 5, count)
        if labels:
            values[:2] = [0, 1]
        weights = rng.uniform(0.5, 3.0, len(friends))
        frames.append(pd.DataFrame({"user": name, "item": items, "rating": values}))
        links.append(pd.DataFrame({"user": name, "friend": m.users_[friends], "weight": weights}))
        y = np.where(values == 1, 1.0, -1.0) if labels else values.astype(float)
        rows[name] = (design_rows(m, items, m.users_[friends], weights), y)
    return pd.concat(frames, ignore_index=True), pd.concat(links, ignore_index=True), rows


@pytest.mark.filterwarnings("error::socialals.ConvergenceWarning")
@pytest.mark.parametrize("loss", ["squared", "logistic"])
@pytest.mark.parametrize("scaling", ["frequency", "none"])
def test_smooth_losses_zero_gradient_of_the_row_objective(problem, loss, scaling):
    ratings, social = problem
    if loss == "squared":
        m = FactorizationMachine(factors=3, solver="als", reg=0.2, reg_scaling=scaling, iterations=10,
                                 random_state=0).fit(ratings, social)
    else:
        m = fit_binary(problem, loss, reg=0.2, reg_scaling=scaling)
    new, links, rows = several_new_users(m, labels=loss != "squared")
    got = m.fold_in(new, links)
    h = 1e-5
    eye = np.eye(4)
    for name, (X, y) in rows.items():
        theta = theta_of(got, name, 3)

        def grad(t):
            return np.array([(row_objective(m, X, y, t + h * e) - row_objective(m, X, y, t - h * e)) / (2 * h)
                             for e in eye])

        scale = np.abs(grad(np.zeros(4))).max()  # the gradient at θ = 0, for scale
        g = grad(theta)
        assert np.abs(g).max() < 1e-7 * scale, name
        # the check has teeth: a small move away from the fold-in is seen
        assert np.abs(grad(theta + 1e-3 * eye[1])).max() > 1e3 * np.abs(g).max()


@pytest.mark.filterwarnings("error::socialals.ConvergenceWarning")
@pytest.mark.parametrize("finish", ["exact finish", "coordinate descent alone"])
def test_hinge_fold_in_is_optimal_in_every_direction(problem, finish, monkeypatch):
    if finish != "exact finish":
        monkeypatch.setattr(fm_foldin, "_POLISH_FROM", -1.0)
    m = fit_binary(problem, "hinge", reg=0.2)
    new, links, rows = several_new_users(m, labels=True)
    got = m.fold_in(new, links)
    assert_hinge_optimal(m, got, rows)


def assert_hinge_optimal(m, got, rows):
    """No direction descends from the fold-in (finite differences of the brute-force row
    objective), its subgradient holds 0 (KKT), and a point near it is seen not optimal."""
    k = m.V_.shape[1]
    rng = np.random.default_rng(0)
    directions = np.vstack([np.eye(k + 1), -np.eye(k + 1), rng.normal(size=(40, k + 1))])
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    eps = 1e-5
    n_on = 0
    for name, (X, y) in rows.items():
        theta = theta_of(got, name, k)
        f = row_objective(m, X, y, theta)
        slopes = np.array([(row_objective(m, X, y, theta + eps * d) - f) / eps for d in directions])
        assert slopes.min() > -1e-6, name  # convex: no descent direction means a minimum
        # KKT: D θ = Σ β_i y_i x_i with β = 1 inside the margin, 0 outside, in [0, 1] on it;
        # ∂ŷ/∂θ = (1, Σ_{l ≠ u} x_l v_l), the row's other features (the user's column has V = 0 here)
        margin = y * brute_yhat(m, X, theta)
        on = np.abs(margin - 1.0) < 1e-7
        n_on += int(on.sum())
        Xu = np.column_stack([np.ones(len(X)), X @ np.vstack([m.V_.astype(float), np.zeros((1, k))])])
        D = len(X) * np.full(k + 1, m.reg)
        rest = D * theta - ((margin < 1.0) & ~on) @ (y[:, None] * Xu)
        A = (y[on, None] * Xu[on]).T
        beta = np.linalg.lstsq(A, rest, rcond=None)[0] if on.any() else np.zeros(0)
        assert np.abs(A @ beta - rest).max() < 1e-7 * np.abs(D * theta).max(), name
        assert (beta > -1e-7).all() and (beta < 1 + 1e-7).all(), name
        # and a point near it is not optimal: some direction descends
        moved = theta + np.r_[0.0, 1e-3, -1e-3, np.zeros(k - 2)]
        f_m = row_objective(m, X, y, moved)
        assert min((row_objective(m, X, y, moved + eps * d) - f_m) / eps for d in directions) < -1e-4
    assert n_on  # the solutions sit on the hinge's kinks, where only the directional check applies


@pytest.mark.filterwarnings("error::socialals.ConvergenceWarning")
@pytest.mark.filterwarnings("ignore::socialals.DataWarning")
@pytest.mark.slow
def test_heaviest_filmtrust_users_are_optimal_for_the_classification_losses():
    import socialals

    ratings, social = socialals.load_filmtrust(require_dataset("filmtrust"))
    binary = ratings.assign(rating=(ratings["rating"] >= 3).astype(int))
    heavy = binary["user"].value_counts().index[:3]
    for loss in ("hinge", "logistic"):
        m = FactorizationMachine(factors=4, loss=loss, reg=0.05, iterations=3, random_state=0).fit(binary, social)
        frame, rows = [], {}
        for j, u in enumerate(heavy):  # folded in as new users (labels unknown to the model)
            mine = binary[binary["user"] == u]
            friends = social.loc[social["user"] == u, "friend"]
            friends = friends[friends.isin(m.users_)].unique()[:3]
            label = 10**9 + j
            frame.append(mine.assign(user=label))
            rows[label] = (design_rows(m, list(mine["item"]), friends, np.ones(len(friends))),
                           np.where(mine["rating"] == 1, 1.0, -1.0), friends)
        links = pd.DataFrame({"user": [u for u in rows for _ in rows[u][2]],
                              "friend": np.concatenate([rows[u][2] for u in rows])})
        got = m.fold_in(pd.concat(frame), links)
        rows = {u: rows[u][:2] for u in rows}
        if loss == "hinge":
            assert_hinge_optimal(m, got, rows)
            continue
        for u, (X, y) in rows.items():
            theta, h = theta_of(got, u, 4), 1e-5
            g = [(row_objective(m, X, y, theta + h * e) - row_objective(m, X, y, theta - h * e)) / (2 * h)
                 for e in np.eye(5)]
            assert np.abs(g).max() < 1e-6 * len(X)


def test_a_training_user_is_reproduced_by_a_converged_fit(problem):
    ratings, social = problem
    m = FactorizationMachine(factors=3, solver="als", reg=0.1, iterations=5000, tol=1e-14,
                             random_state=0).fit(ratings, social)
    assert m.n_iter_ < 5000
    for u in social["user"].value_counts().index[:3]:  # the users with the most friends
        out_links = social[social["user"] == u]
        got = m.fold_in(ratings[ratings["user"] == u], out_links)
        i = m.users_.get_loc(u)
        ref = np.r_[m.w_[i], m.V_[i]]
        np.testing.assert_allclose(theta_of(got, u, 3), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
        # without its links the same ratings give other parameters: the friend features entered
        alone = theta_of(m.fold_in(ratings[ratings["user"] == u]), u, 3)
        assert np.abs(alone - ref).max() > 1e-3 * np.abs(ref).max()


def test_friend_only_user_is_scored_from_its_friends(problem):
    ratings, social = problem
    m = FactorizationMachine(factors=3, solver="als", reg=0.2, iterations=10, random_state=0).fit(ratings, social)
    friends = list(m.users_[[2, 4, 6]])
    links = pd.DataFrame({"user": "newbie", "friend": friends, "weight": [2.0, 1.0, 1.0]})
    got = m.fold_in(None, links)
    np.testing.assert_array_equal(got.loc["newbie"].to_numpy(), np.zeros(4))  # no ratings: θ = 0
    rec = m.recommend_new(None, links, n=len(m.items_), exclude_seen=False)
    X = design_rows(m, list(rec["item"]), friends, [2.0, 1.0, 1.0])
    np.testing.assert_allclose(rec["score"].to_numpy(), brute_yhat(m, X, np.zeros(4)), rtol=1e-10)
    assert "newbie" not in m.users_  # the model is unchanged


def test_user_features_enter_the_design_row(problem):
    ratings, social = problem
    feats = pd.DataFrame(np.random.default_rng(1).normal(size=(40, 2)), index=range(40), columns=["a", "b"])
    m = FactorizationMachine(factors=3, solver="als", reg=0.2, iterations=10, random_state=0).fit(
        ratings, social, user_features=feats)
    new, links, items, friends, weights = new_user(m)
    mine = pd.DataFrame({"a": [0.7], "b": [-1.2]}, index=["new"])
    theta = theta_of(m.fold_in(new, links, user_features=mine), "new", 3)
    X = design_rows(m, items, friends, weights, features=[0.7, -1.2])
    y = new["rating"].to_numpy(float)
    # the squared row objective is quadratic: its exact minimiser by a dense solve of its gradient
    h = 1.0
    g0 = np.array([(row_objective(m, X, y, h * e) - row_objective(m, X, y, -h * e)) / (2 * h) for e in np.eye(4)])
    H = np.array([[(row_objective(m, X, y, h * (a + b)) - row_objective(m, X, y, h * (a - b))
                    - row_objective(m, X, y, h * (b - a)) + row_objective(m, X, y, -h * (a + b))) / (4 * h * h)
                   for b in np.eye(4)] for a in np.eye(4)])
    np.testing.assert_allclose(theta, np.linalg.solve(H, -g0), rtol=1e-8, atol=1e-10)
    with pytest.warns(DataWarning, match="1 of 1 new user"):
        m.fold_in(new, links)  # no row: zeros, counted
    with pytest.raises(ValueError, match="2"):
        m.fold_in(new, links, user_features=mine[["a"]])


def test_update_appends_users_and_round_trips(problem, tmp_path):
    ratings, social = problem
    m = FactorizationMachine(factors=3, solver="als", reg=0.2, iterations=10, random_state=0).fit(ratings, social)
    pre = copy.deepcopy(m)
    before = m.predict(ratings)
    new, links, items, friends, weights = new_user(m, label=1000)
    second = pd.DataFrame({"user": [1001] * 2, "item": list(m.items_[[1, 2]]), "rating": [3.0, 4.0]})
    links2 = pd.concat([links, pd.DataFrame({"user": [1001, 1001], "friend": [1000, m.users_[0]],
                                             "weight": [1.0, 1.0]})], ignore_index=True)
    X = design_rows(pre, items, friends, weights)
    ref = m.fold_in(pd.concat([new, second]), links2)
    got = m.fold_in(pd.concat([new, second]), links2, update=True)
    pd.testing.assert_frame_equal(got, ref)
    assert list(m.users_[-2:]) == [1000, 1001]
    assert m.n_features_in_ == len(m.w_) == len(m.V_) == len(m.groups_) == len(pre.w_) + 4
    np.testing.assert_allclose(m.predict(ratings), before, rtol=1e-12)  # known users unchanged
    # the new user's predictions are the brute-force FM with its folded-in parameters
    pairs = pd.DataFrame({"user": 1000, "item": items})
    np.testing.assert_allclose(m.predict(pairs), brute_yhat(pre, X, theta_of(got, 1000, 3)), rtol=1e-10)
    np.testing.assert_allclose(m.decision_function_matrix(m.design_matrix(pairs)), m.predict(pairs), rtol=1e-12)
    # 1001 follows 1000 (weight 1/2, whose friend column has no parameters) and a known user
    X2 = design_rows(pre, list(second["item"]), [pre.users_[0]], [1.0])
    X2[:, pre.feature_blocks_["social"][0] + 0] = 0.5
    np.testing.assert_allclose(m.predict(second), brute_yhat(pre, X2, theta_of(got, 1001, 3)), rtol=1e-10)
    rec = m.recommend([1000], n=5)
    assert not set(rec["item"]) & set(items)  # its ratings are seen items
    loaded = load(m.save(tmp_path / "fm.npz"))
    everyone = pd.concat([ratings[["user", "item"]], pairs, second[["user", "item"]]])
    np.testing.assert_array_equal(loaded.predict(everyone), m.predict(everyone))
    pd.testing.assert_frame_equal(loaded.recommend([1000, 1001, 3], n=4), m.recommend([1000, 1001, 3], n=4))
    # folding a known label in again replaces its row and parameters
    again = loaded.fold_in(new.assign(rating=5.0), links, update=True)
    assert list(loaded.users_[-2:]) == [1000, 1001] and len(loaded.w_) == len(m.w_)
    np.testing.assert_allclose(loaded.predict(pairs), brute_yhat(pre, X, theta_of(again, 1000, 3)), rtol=1e-10)


@pytest.mark.parametrize("loss", ["logistic", "hinge"])
def test_classification_update_round_trip(problem, loss, tmp_path):
    m = fit_binary(problem, loss, reg=0.2)
    new, links, *_ = new_user(m, labels=True, label=1000)
    m.fold_in(new, links, update=True)
    pairs = pd.DataFrame({"user": 1000, "item": list(m.items_[:10])})
    loaded = load(m.save(tmp_path / "fm.npz"))
    np.testing.assert_array_equal(loaded.decision_function(pairs), m.decision_function(pairs))
    assert set(np.unique(loaded.predict(pairs))) <= {0, 1}
    with pytest.raises(ValueError, match="labels 0 and 1"):
        m.fold_in(new.assign(rating=3.0))


def test_fold_in_bad_input(problem):
    ratings, social = problem
    with pytest.raises(NotFittedError):
        FactorizationMachine().fold_in(ratings)
    m = FactorizationMachine(factors=3, iterations=3, random_state=0).fit(ratings, social)
    with pytest.raises(ValueError, match="empty"):
        m.fold_in(ratings.iloc[:0])
    new = pd.DataFrame({"user": ["q", "q"], "item": [m.items_[0], "no-such-item"], "rating": [4.0, 2.0]})
    with pytest.warns(DataWarning, match="dropped 1 rating"):
        m.fold_in(new)
    links = pd.DataFrame({"user": ["q", "q"], "friend": ["stranger", m.users_[0]]})
    with pytest.warns(DataWarning, match="dropped 1 link"):
        m.fold_in(new.iloc[:1], links)
    inbound = pd.DataFrame({"user": [m.users_[3]], "friend": ["q"]})
    with pytest.warns(DataWarning, match="1 link.*not used"):
        m.fold_in(new.iloc[:1], inbound)
    with pytest.raises(ValueError, match="missing column"):
        m.fold_in(new.rename(columns={"rating": "stars"}))
    with pytest.raises(ValueError, match="update"):
        m.fold_in(new.iloc[:1], update="yes")
    with pytest.raises(ValueError, match="without user features"):
        m.fold_in(new.iloc[:1], user_features=pd.DataFrame({"a": [1.0]}, index=["q"]))
    damaged = copy.deepcopy(m)
    damaged.feature_blocks_ = {"user": [0, 40], "item": [40, 70]}  # the social block left out
    with pytest.raises(ValueError, match="feature_blocks_"):
        damaged.fold_in(new.iloc[:1])
    hinge = fit_binary(problem, "hinge", reg=0.0)
    with pytest.raises(ValueError, match="reg_w > 0"):
        hinge.fold_in(pd.DataFrame({"user": ["q"], "item": [m.items_[0]], "rating": [1]}))


def test_update_with_every_block_round_trips(problem, tmp_path):
    ratings, social = problem
    rng = np.random.default_rng(5)
    uf = pd.DataFrame(rng.normal(size=(40, 2)), index=range(40))
    itf = pd.DataFrame(rng.normal(size=(30, 3)), index=range(30))
    m = FactorizationMachine(factors=3, reg=0.1, iterations=5, random_state=0).fit(
        ratings, social, user_features=uf, item_features=itf)
    pre = copy.deepcopy(m)
    before = m.predict(ratings)
    new, links, items, friends, weights = new_user(m, label=1000)
    feats = pd.DataFrame([[0.5, -0.5]], index=[1000])
    got = m.fold_in(new, links, update=True, user_features=feats)
    np.testing.assert_allclose(m.predict(ratings), before, rtol=1e-12)
    # brute force on the pre-update model: the item features are part of each row
    X = design_rows(pre, items, friends, weights, features=[0.5, -0.5])
    a, b = pre.feature_blocks_["item_features"]
    X[:, a:b] = itf.loc[items].to_numpy()
    pairs = pd.DataFrame({"user": 1000, "item": items})
    np.testing.assert_allclose(m.predict(pairs), brute_yhat(pre, X, theta_of(got, 1000, 3)), rtol=1e-10)
    assert m.feature_blocks_["item_features"] == [a + 2, b + 2]  # a user column and a social column more
    loaded = load(m.save(tmp_path / "fm.npz"))
    np.testing.assert_array_equal(loaded.predict(pairs), m.predict(pairs))
    np.testing.assert_array_equal(loaded.predict(ratings), m.predict(ratings))
