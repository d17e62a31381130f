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


# ---------------------------------------------------------------------------- non-numbers
_NON_NUMBERS = {
    "datetime": (pd.to_datetime(["2020-01-01", "2020-01-02"]), "datetime64"),
    "timedelta": (pd.to_timedelta([1, 2], unit="s"), "timedelta64"),
    "complex": (np.array([1 + 0j, 2 + 1j]), "complex128"),
    "bool": (np.array([True, False]), "bool"),
    "nullable-bool": (pd.array([True, False], dtype="boolean"), "boolean"),
    "numeric-strings": (["4", "3"], "(str|object)"),
    "object-strings": (pd.Series(["4", 3.0], dtype=object), "object"),
    "category": (pd.Categorical([4.0, 3.0]), "category"),
}


@pytest.mark.parametrize("values, dtype", list(_NON_NUMBERS.values()), ids=list(_NON_NUMBERS))
def test_non_numeric_ratings_are_refused_with_column_and_dtype(values, dtype):
    ratings = frame(user=[1, 2], item=[1, 2], stars=values)
    before = ratings.copy()
    with pytest.raises(ValueError, match=rf"Column 'stars' of 'ratings' must be numeric \(int or float\); got dtype {dtype}"):
        RegularizedALS(factors=1, iterations=1).fit(ratings, rating_col="stars")
    pd.testing.assert_frame_equal(ratings, before)  # the caller's frame is untouched


@pytest.mark.parametrize("values, dtype", list(_NON_NUMBERS.values()), ids=list(_NON_NUMBERS))
def test_non_numeric_social_weights_are_refused(values, dtype):
    social = frame(user=[1, 2], friend=[2, 1], weight=values)
    with pytest.raises(ValueError, match=rf"Column 'weight' of 'social' must be numeric \(int or float\); got dtype {dtype}"):
        SocialALS(factors=1, iterations=1).fit(GOOD, social)


@pytest.mark.parametrize(
    "values",
    [np.array([4, 3], dtype=np.int8), np.array([4, 3], dtype=np.uint16), np.array([4.0, 3.0], dtype=np.float32),
     pd.array([4, 3], dtype="Int64"), pd.array([4.0, 3.0], dtype="Float64"), pd.Series([4, 3.5], dtype=object)],
    ids=["int8", "uint16", "float32", "Int64", "Float64", "object-numbers"],
)
def test_integer_and_float_ratings_of_any_width_are_accepted(values):
    d = build_dataset(frame(user=[1, 2], item=[1, 2], rating=values))
    np.testing.assert_array_equal(d.R.data, np.asarray(values, dtype=np.float64))


def test_missing_value_in_a_nullable_column_is_named():
    with pytest.raises(ValueError, match="'rating' of 'ratings' has 1 NaN or infinite"):
        build_dataset(frame(user=[1, 2], item=[1, 2], rating=pd.array([4, None], dtype="Int64")))


@pytest.mark.parametrize("col", ["rating", "user", "item"])
def test_two_columns_of_one_name_are_a_clear_error(col):
    ratings = pd.DataFrame([[1, 2, 3.0]], columns=["user", "item", "rating"])
    ratings = pd.concat([ratings, ratings[[col]]], axis=1)
    with pytest.raises(ValueError, match=f"'ratings' has 2 columns named '{col}'; keep one"):
        RegularizedALS(factors=1, iterations=1).fit(ratings)


def test_two_weight_columns_in_social_are_a_clear_error():
    social = pd.DataFrame([[1, 2, 0.5, 0.7]], columns=["user", "friend", "weight", "weight"])
    with pytest.raises(ValueError, match="'social' has 2 columns named 'weight'"):
        SocialALS(factors=1, iterations=1).fit(GOOD, social)


def test_social_labels_of_another_type_warn_with_count():
    ratings = frame(user=[1, 2, 3], item=[1, 2, 2], rating=[1.0, 2.0, 3.0])
    social = frame(user=["1", "2"], friend=["2", "3"])
    with pytest.warns(DataWarning, match=r"labels are strings but the rating users are numbers, so 3 of 3 social user\(s\) match no rated user"):
        d = build_dataset(ratings, social, include_social_users=True)
    assert d.n_users == 6  # the warning tells the truth: three new users
    # the same labels with one type: no warning, nobody new
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = build_dataset(ratings, social.astype(int), include_social_users=True)
    assert d.n_users == 3


def test_users_known_only_socially_with_the_same_label_type_do_not_warn():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = build_dataset(GOOD, frame(user=[1, 7], friend=[2, 1]), include_social_users=True)
    assert list(d.users) == [1, 2, 7]


@pytest.mark.parametrize("seed", [-1, -(2**40), 1.5, "x", True])
def test_random_state_is_named(seed):
    with pytest.raises(ValueError, match=r"The 'random_state' parameter of RegularizedALS must be None, an int >= 0"):
        RegularizedALS(factors=1, iterations=1, random_state=seed).fit(GOOD)
