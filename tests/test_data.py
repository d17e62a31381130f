"""Input validation and the data policies of build_dataset."""

import numpy as np
import pandas as pd
import pytest

from socialals import DataWarning, RegularizedALS, SocialALS
from socialals.data import Columns, build_dataset


def frame(**cols):
    return pd.DataFrame(cols)


GOOD = frame(user=[1, 1, 2], item=["a", "b", "a"], rating=[4.0, 3.0, 5.0])


@pytest.mark.parametrize(
    "ratings,match",
    [
        (frame(user=[1], item=[2]), r"missing column\(s\) \['rating'\]"),
        (GOOD.iloc[:0], "empty"),
        (frame(user=[1, 2], item=[1, 2], rating=["good", 3]), "'rating' .* must be numeric"),
        (frame(user=[1, 2], item=[1, 2], rating=[np.nan, 3.0]), "NaN or infinite"),
        (frame(user=[1, 2], item=[1, 2], rating=[np.inf, 3.0]), "NaN or infinite"),
        (frame(user=[1, None], item=[1, 2], rating=[1.0, 3.0]), "missing label"),
    ],
)
def test_bad_ratings_are_named(ratings, match):
    with pytest.raises(ValueError, match=match):
        RegularizedALS(factors=2, iterations=1).fit(ratings)


def test_not_a_dataframe():
    with pytest.raises(TypeError, match="must be a pandas DataFrame"):
        RegularizedALS().fit([(1, 2, 3.0)])


@pytest.mark.parametrize(
    "social,match",
    [
        (frame(user=[1], friend=[2], weight=[-1.0]), "must be >= 0"),
        (frame(user=[1], friend=[2], weight=[np.nan]), "NaN or infinite"),
        (frame(user=[1], friend=[2], weight=["x"]), "must be numeric"),
        (frame(user=[1], buddy=[2]), r"missing column\(s\) \['friend'\]"),
    ],
)
def test_bad_social_is_named(social, match):
    with pytest.raises(ValueError, match=match):
        SocialALS(factors=2, iterations=1).fit(GOOD, social)


def test_duplicates_merged_into_mean_with_count():
    r = frame(user=[1, 1, 1, 2, 2], item=["a", "a", "b", "c", "c"], rating=[4.0, 2.0, 1.0, 5.0, 5.0])
    with pytest.warns(DataWarning, match=r"2 duplicate \(user, item\) pair\(s\).*1 of them had different ratings"):
        d = build_dataset(r)
    assert d.nnz == 3
    R = pd.DataFrame(d.R.toarray(), index=d.users, columns=d.items)
    assert R.loc[1, "a"] == 3.0 and R.loc[1, "b"] == 1.0 and R.loc[2, "c"] == 5.0


def test_self_loops_and_duplicate_edges_dropped_with_count():
    s = frame(user=[1, 1, 1, 2, 9], friend=[1, 2, 2, 1, 1])
    with pytest.warns(DataWarning, match=r"dropped 1 self-loop\(s\) and 1 duplicate edge\(s\).*3 edge\(s\) remain"):
        d = build_dataset(GOOD, s, include_social_users=True)
    assert list(d.users) == [1, 2, 9]  # 9 is known only through the graph
    assert d.n_rated_users == 2 and d.R.shape == (3, 2) and d.R[2].nnz == 0
    assert len(d.social_src) == 3


def test_custom_columns_and_string_labels():
    r = frame(uid=["x", "y", "x"], iid=[10, 10, 11], stars=[1, 2, 3])
    s = frame(uid=["x"], fid=["z"], strength=[0.5])
    m = SocialALS(factors=2, iterations=2, random_state=0).fit(
        r, s, user_col="uid", item_col="iid", rating_col="stars", friend_col="fid", weight_col="strength"
    )
    assert list(m.users_) == ["x", "y", "z"] and list(m.items_) == [10, 11]
    assert m.social_weights_[m.users_.get_loc("x"), m.users_.get_loc("z")] == pytest.approx(0.25)
    p = m.predict(pd.DataFrame({"uid": ["x"], "iid": [11]}))
    assert p.shape == (1,)
    rec = m.recommend("z", n=2)
    assert list(rec.columns) == ["uid", "iid", "rank", "score"]


@pytest.mark.parametrize(
    "params,match",
    [
        (dict(reg=-1), r"The 'reg' parameter of SocialALS must be a float >= 0; got -1"),
        (dict(alpha=-1), r"The 'alpha' parameter of SocialALS must be a float >= 0; got -1"),
        (dict(similarity="cosine"), r"The 'similarity' parameter of SocialALS must be one of"),
        (dict(iterations=0), r"The 'iterations' parameter"),
        (dict(dtype="int32"), r"The 'dtype' parameter"),
        (dict(n_jobs=0), r"The 'n_jobs' parameter"),
        (dict(biases="yes"), r"The 'biases' parameter of SocialALS must be a bool"),
        (dict(random_state="seed"), r"The 'random_state' parameter of SocialALS must be None, an int >= 0 or a numpy.random.Generator; got 'seed'"),
    ],
)
def test_bad_hyperparameters(params, match):
    with pytest.raises(ValueError, match=match):
        SocialALS(**params).fit(GOOD)


def test_mixed_label_types_are_kept():
    r = frame(user=[1, "b", 1], item=["a", 2, 2], rating=[1.0, 2.0, 3.0])
    d = build_dataset(r)
    assert set(d.users) == {1, "b"} and set(d.items) == {"a", 2}


def test_columns_dataclass_defaults():
    assert Columns() == Columns("user", "item", "rating", "friend", "weight")
