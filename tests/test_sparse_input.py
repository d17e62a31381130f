"""fit() on scipy.sparse ratings and social matrices: the same data as the DataFrame route."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from socialals import RegularizedALS, SocialALS
from socialals.data import build_dataset, ratings_from_sparse, social_from_sparse

from conftest import planted_ratings, random_social


def _matrices(ratings, social, users, items):
    u = users.get_indexer(ratings["user"])
    i = items.get_indexer(ratings["item"])
    R = sp.coo_matrix((ratings["rating"].to_numpy(), (u, i)), shape=(len(users), len(items)))
    a, b = users.get_indexer(social["user"]), users.get_indexer(social["friend"])
    w = social["weight"].to_numpy() if "weight" in social else np.ones(len(social))
    S = sp.csr_matrix((w, (a, b)), shape=(len(users), len(users)))
    return R, S


@pytest.fixture
def problem():
    ratings, _, _ = planted_ratings(n_users=30, n_items=20, seed=3)
    ratings = ratings.assign(user="u" + ratings["user"].astype(str), item="i" + ratings["item"].astype(str))
    social = random_social(30, 60, seed=4, extra_users=3, weights=True)
    social = social.assign(user="u" + social["user"].astype(str), friend="u" + social["friend"].astype(str))
    # labels in an order of our own (not sorted), with a user who only has links and an
    # item and a user with no entry at all (they must not exist after fit, as with a frame)
    users = pd.Index(sorted(set(ratings["user"]) | set(social["user"]) | set(social["friend"]), reverse=True)
                     + ["nobody"])
    items = pd.Index(list(np.random.default_rng(0).permutation(sorted(set(ratings["item"])))) + ["unrated"])
    return ratings, social, users, items


def test_dataset_identical_to_frame_route(problem):
    ratings, social, users, items = problem
    R, S = _matrices(ratings, social, users, items)
    a = build_dataset(ratings, social, include_social_users=True)
    b = build_dataset(R, S, include_social_users=True, user_labels=users, item_labels=items)
    assert a.users.equals(b.users) and a.items.equals(b.items)
    assert "nobody" not in b.users and "unrated" not in b.items
    for x, y in ((a.R, b.R), (a.Rt, b.Rt)):
        np.testing.assert_array_equal(x.indptr, y.indptr)
        np.testing.assert_array_equal(x.indices, y.indices)
        np.testing.assert_array_equal(x.data, y.data)
    np.testing.assert_array_equal(a.social_matrix().toarray(), b.social_matrix().toarray())


def test_fit_identical_and_labels_default(problem):
    ratings, social, users, items = problem
    R, S = _matrices(ratings, social, users, items)
    m1 = SocialALS(factors=3, alpha=0.5, iterations=3, random_state=0).fit(ratings, social)
    m2 = SocialALS(factors=3, alpha=0.5, iterations=3, random_state=0).fit(
        R.tocsc(), S.tocoo(), user_labels=list(users), item_labels=np.asarray(items)
    )
    np.testing.assert_array_equal(m1.user_factors_, m2.user_factors_)
    pd.testing.assert_frame_equal(m1.recommend(n=3), m2.recommend(n=3))
    # no labels: rows and columns are 0..n-1
    m3 = RegularizedALS(factors=2, iterations=2, random_state=0).fit(sp.csr_array(R))
    Rc = R.tocsr()
    assert list(m3.users_) == list(np.flatnonzero(Rc.getnnz(axis=1)))
    assert list(m3.items_) == list(np.flatnonzero(Rc.getnnz(axis=0)))


def test_caller_matrix_untouched_and_duplicates_summed():
    R = sp.coo_matrix((np.array([1.0, 2.0, 4.0]), (np.array([0, 0, 1]), np.array([1, 1, 0]))), shape=(2, 2))
    before = (R.row.copy(), R.col.copy(), R.data.copy())
    frame = ratings_from_sparse(R, ["a", "b"], ["x", "y"])
    assert sorted(map(tuple, frame.to_numpy().tolist())) == [("a", "y", 3.0), ("b", "x", 4.0)]
    for x, y in zip(before, (R.row, R.col, R.data)):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: ratings_from_sparse(sp.csr_matrix(([1.0, 0.0], ([0, 1], [0, 1])), shape=(2, 2))),
         r"'ratings' stores 1 explicit zero\(s\) \(row, column: \(1, 1\)\).*eliminate_zeros"),
        (lambda: social_from_sparse(sp.csr_matrix(([0.0], ([0], [1])), shape=(2, 2))), r"'social' stores 1 explicit zero"),
        (lambda: ratings_from_sparse(sp.csr_matrix(np.eye(2)), user_labels=["a"]), r"'user_labels' has 1 label\(s\) but"),
        (lambda: ratings_from_sparse(sp.csr_matrix(np.eye(2)), item_labels=["a", "a"]), r"'item_labels' has duplicate label\(s\) \['a'\]"),
        (lambda: ratings_from_sparse(sp.csr_matrix(np.eye(2)), user_labels=[None, "b"]), r"'user_labels' has 1 missing"),
        (lambda: ratings_from_sparse(sp.csr_matrix(np.eye(2, dtype=bool))), r"integer or float values; got dtype bool"),
        (lambda: ratings_from_sparse(sp.csr_matrix(np.eye(2, dtype=complex))), r"got dtype complex128"),
        (lambda: social_from_sparse(sp.csr_matrix((2, 3))), r"must be square"),
        (lambda: build_dataset(sp.csr_matrix(np.eye(2)), sp.csr_matrix(np.eye(3)), include_social_users=True),
         r"\(n_users, n_users\) = \(2, 2\)"),
        (lambda: build_dataset(pd.DataFrame({"user": [1], "item": [1], "rating": [1.0]}), item_labels=[1]),
         r"'item_labels' labels the columns of a sparse ratings matrix"),
        (lambda: build_dataset(sp.csr_matrix(([np.nan], ([0], [0])), shape=(1, 1))), r"Column 'rating' of 'ratings' has 1 NaN"),
        (lambda: build_dataset(sp.csr_matrix((3, 3))), r"'ratings' is empty"),
    ],
)
def test_bad_sparse_input_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_negative_social_weight_rejected_downstream():
    R = sp.csr_matrix(np.eye(3))
    S = sp.csr_matrix(([-1.0], ([0], [1])), shape=(3, 3))
    with pytest.raises(ValueError, match="must be >= 0"):
        SocialALS(factors=2, iterations=1).fit(R, S)


def test_sparse_social_with_frame_ratings(problem):
    ratings, social, users, items = problem
    _, S = _matrices(ratings, social, users, items)
    a = SocialALS(factors=2, iterations=2, random_state=0).fit(ratings, social)
    b = SocialALS(factors=2, iterations=2, random_state=0).fit(ratings, S, user_labels=users)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
