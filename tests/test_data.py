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


def test_a_social_frame_without_rows_fits_without_links_and_says_so():
    """An empty links frame (e.g. after a filter) is no links, as ``social=None``, with a
    DataWarning; an empty ratings frame stays an error."""
    rng = np.random.default_rng(4)
    ratings = frame(user=rng.integers(0, 30, 300), item=rng.integers(0, 20, 300), rating=rng.integers(1, 6, 300) * 1.0)
    ratings = ratings.drop_duplicates(["user", "item"])
    empty = frame(user=np.zeros(0, np.int64), friend=np.zeros(0, np.int64))
    with pytest.warns(DataWarning, match="social has no rows"):
        m = SocialALS(factors=2, alpha=2.0, iterations=3, random_state=0).fit(ratings, empty)
    ref = SocialALS(factors=2, alpha=2.0, iterations=3, random_state=0).fit(ratings)
    assert m.social_weights_ is None
    np.testing.assert_array_equal(m.user_factors_, ref.user_factors_)
    with pytest.raises(ValueError, match="'social'.*missing column"):
        SocialALS(factors=2, iterations=1).fit(ratings, frame(user=np.zeros(0, np.int64)))
    with pytest.raises(ValueError, match="'ratings' is empty"):
        SocialALS(factors=2, iterations=1).fit(ratings.iloc[:0], empty)


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


# ---------------------------------------------------------------------------- links in chunks
TS = pd.Timestamp("2020-01-01")


def links_result(make):
    """``make()``'s links (or its ValueError) and the DataWarnings it gave."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = make()
        except ValueError as exc:
            out = str(exc)
    return out, [str(w.message) for w in caught if issubclass(w.category, DataWarning)]


def joined_in_chunks(social, users, cuts):
    """The Dask route's steps on pandas chunks: each chunk as a worker ships it, then the join."""
    from socialals.data import _join_links, _link_chunk

    return _join_links([_link_chunk(social.iloc[a:b], users, Columns()).shipped()
                        for a, b in zip(cuts[:-1], cuts[1:])], users)


LINK_USERS = {"numbers": pd.Index([1, 2, 3, 5]), "mixed": pd.Index([1, "a", TS], dtype=object)}
LINKS = {
    # labels no order sorts: the new users keep their first-seen order, users' column first
    "mixed": ("mixed", frame(user=pd.Series([1, "zz", 7, "a", "zz", "q", 1, 7], dtype=object),
                             friend=pd.Series(["a", 9, "b", TS, pd.Timestamp("2021"), 1, 1, "b"], dtype=object),
                             weight=[1.0, 2, 3, 4, 5, 6, 7, 8])),
    # text labels beside number users: the warning counts new and all social users over every chunk
    "kinds": ("numbers", frame(user=["1", "2", "9", "1"], friend=["2", "3", "1", "2"])),
    "sorted": ("numbers", frame(user=[9, 1, 2, 2, 8, 1, 9], friend=[1, 2, 2, 3, 11, 2, 1],
                                weight=np.array([1, 2, 3, 4, 5, 6, 7], dtype=np.float32))),
    # the user column's missing labels are reported first, counted over the chunks
    "labels": ("numbers", frame(user=[1, 2, np.nan, 3, np.nan, 1, np.nan, 1], friend=[2, np.nan, 1, 2, 1, 3, 5, 2])),
    # NaN beats negative wherever it is; more bad rows than the preview shows
    "finite": ("numbers", frame(user=[1] * 8, friend=[2] * 8, weight=[-1.0, -2, 1, np.nan, -3, np.inf, -4, -5])),
    "negative": ("numbers", frame(user=[1] * 8, friend=[2] * 8, weight=[-1.0, -2, 1, -6, -3, 2, -4, -5])),
}


@pytest.mark.parametrize("cuts", [[0, 3, 3, 8], [0, 1, 2, 3, 4, 5, 6, 7, 8], [0, 5, 8]])
@pytest.mark.parametrize("case", sorted(LINKS))
def test_links_joined_from_chunks_equal_the_whole_frames_links(case, cuts):
    from socialals.data import _social_edges

    kind, social = LINKS[case]
    users = LINK_USERS[kind]
    whole, warned = links_result(lambda: _social_edges(social, users, Columns()))
    chunked, chunk_warned = links_result(lambda: joined_in_chunks(social, users, [min(c, len(social)) for c in cuts]))
    assert chunk_warned == warned
    if isinstance(whole, str):
        assert chunked == whole and case in ("labels", "finite", "negative")
        return
    for a, b in zip(whole[:3], chunked[:3]):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert whole[3].equals(chunked[3]) and whole[3].dtype == chunked[3].dtype


def test_the_links_steps_code_count_and_order_what_the_frame_says():
    # the expected values written from the frame by hand
    _, social = LINKS["mixed"]
    (src, dst, w, users), warned = links_result(
        lambda: joined_in_chunks(social, LINK_USERS["mixed"], [0, 2, 5, 8]))
    assert list(users) == [1, "a", TS, "zz", 7, "q", 9, "b", pd.Timestamp("2021")]
    pairs = [(users[s], users[d], x) for s, d, x in zip(src, dst, w)]
    assert pairs == [(1, "a", 1.0), ("zz", 9, 2.0), (7, "b", 3.0), ("a", TS, 4.0), ("zz", pd.Timestamp("2021"), 5.0),
                     ("q", 1, 6.0)]  # (1, 1) a self-link, (7, "b") again a duplicate
    assert warned == ["social: dropped 1 self-loop(s) and 1 duplicate edge(s) (kept the first of each duplicate); "
                      "6 edge(s) remain."]
    _, warned = links_result(lambda: joined_in_chunks(LINKS["kinds"][1], LINK_USERS["numbers"], [0, 1, 3, 4]))
    assert "so 4 of 4 social user(s) match no rated user" in warned[0]
    error, _ = links_result(lambda: joined_in_chunks(LINKS["labels"][1], LINK_USERS["numbers"], [0, 2, 8]))
    assert error.startswith("Column 'user' of 'social' has 3 missing label(s)")
    error, _ = links_result(lambda: joined_in_chunks(LINKS["negative"][1], LINK_USERS["numbers"], [0, 4, 8]))
    assert "6 negative value(s)" in error and len(error.splitlines()) == 2 + 5  # message, header, five rows
