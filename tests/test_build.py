"""The compiled data builders (socialals._build) against their references and plain maths.

The fit's data are the same bit for bit whether the compiled builders or the scipy/pandas
references build them; both are checked against an independent dense computation; and
the compiled build never holds much more than the finished rating pair.
"""

import tracemalloc
import warnings

import numpy as np
import pandas as pd
import pytest

from socialals import ALS, DataWarning, Popularity, RegularizedALS, SocialALS, _build, config_context
from socialals._config import numba_available
from socialals.data import build_dataset
from socialals.social import symmetric_weights

needs_numba = pytest.mark.skipif(not numba_available, reason="the compiled builders need numba")


def _labels(rng, kind, n, n_labels):
    codes = rng.integers(0, n_labels, n)
    if kind == "int32":
        return codes.astype(np.int32)
    if kind == "offset int64":
        return codes.astype(np.int64) * 3 - 10**12  # a compact range far from 0 (spread 3: empty slots)
    if kind == "uint16":
        return codes.astype(np.uint16)
    if kind == "wide int64":
        return codes.astype(np.int64) * 10**9  # too wide for a table: pandas codes them
    if kind == "str":
        return np.array([f"u{c}" for c in codes], dtype=object)
    return np.array([c if c % 2 else f"s{c}" for c in codes], dtype=object)  # mixed: first-seen order


def _dataset(ratings, social, dtype, compiled):
    with config_context(compiled=compiled), warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        d = build_dataset(ratings, social, include_social_users=social is not None, dtype=dtype)
    return d, [str(w.message) for w in record]


def _assert_same_csr(a, b):
    assert a.shape == b.shape
    for name in ("indptr", "indices", "data"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(np.signbit(x), np.signbit(y))


@needs_numba
@pytest.mark.parametrize("kind", ["int32", "offset int64", "uint16", "wide int64", "str", "mixed"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_compiled_build_equals_the_reference_and_dense_means(kind, dtype):
    rng = np.random.default_rng(len(kind))
    n = 700
    ratings = pd.DataFrame({"user": _labels(rng, kind, n, 40), "item": _labels(rng, "int32", n, 25),
                            "rating": rng.integers(1, 6, n) + rng.choice([0.0, 0.1, 0.3], n)})
    if dtype == np.float32:
        ratings["rating"] = ratings["rating"].astype(np.float32)
    social = pd.DataFrame({"user": _labels(rng, kind, 200, 50), "friend": _labels(rng, kind, 200, 50),
                           "weight": rng.choice([0.0, 0.5, 1.0, 2.5], 200)})
    got, got_warnings = _dataset(ratings, social, dtype, True)
    ref, ref_warnings = _dataset(ratings, social, dtype, False)
    assert got_warnings == ref_warnings and any("duplicate (user, item)" in w for w in got_warnings)
    pd.testing.assert_index_equal(got.users, ref.users, exact=True)
    pd.testing.assert_index_equal(got.items, ref.items, exact=True)
    _assert_same_csr(got.R, ref.R)
    _assert_same_csr(got.Rt, ref.Rt)
    assert got.R.has_sorted_indices and got.Rt.has_sorted_indices
    np.testing.assert_array_equal(got.social_src, ref.social_src)
    np.testing.assert_array_equal(got.social_dst, ref.social_dst)
    # independent: pandas' mean of each pair's ratings, placed by label
    means = ratings.assign(rating=ratings["rating"].astype(np.float64)).groupby(["user", "item"])["rating"].mean()
    dense = np.zeros(got.R.shape)
    dense[got.users.get_indexer(means.index.get_level_values(0)), got.items.get_indexer(means.index.get_level_values(1))] = \
        means.to_numpy().astype(dtype)
    tol = 1e-6 if dtype == np.float32 else 1e-14  # pandas sums in its own order
    np.testing.assert_allclose(got.R.toarray(), dense, rtol=tol, atol=0)
    np.testing.assert_array_equal(got.Rt.toarray(), got.R.toarray().T)


@needs_numba
def test_strided_and_integer_rating_columns_build_the_same():
    rng = np.random.default_rng(5)
    block = rng.integers(0, 30, size=(400, 3))  # one 2-D block: the columns are strided views
    block[:, 2] = rng.integers(1, 6, 400)
    ratings = pd.DataFrame(block, columns=["user", "item", "rating"])
    for dtype in (np.float64, np.float32):
        got, w1 = _dataset(ratings, None, dtype, True)
        ref, w2 = _dataset(ratings, None, dtype, False)
        assert w1 == w2
        _assert_same_csr(got.R, ref.R)
        _assert_same_csr(got.Rt, ref.Rt)


@needs_numba
def test_symmetric_weights_equal_the_reference_and_the_dense_formula():
    from socialals.social import _symmetric_weights

    rng = np.random.default_rng(2)
    for trial in range(20):
        n = int(rng.integers(2, 40))
        src, dst = rng.integers(0, n, 150), rng.integers(0, n, 150)
        keep = (src != dst) & ~pd.Index(src * n + dst).duplicated()
        src, dst = src[keep].astype(np.int32), dst[keep].astype(np.int32)
        w = rng.choice([0.0, 0.25, 1.0, 3.0], len(src)) * rng.random(len(src))
        with config_context(compiled=True):
            W = symmetric_weights(n, src, dst, w)
        _assert_same_csr(W, _symmetric_weights(n, src, dst, w))
        S = np.zeros((n, n))
        S[src, dst] = w
        np.testing.assert_array_equal(W.toarray(), (S + S.T) / 2)
        assert W.has_sorted_indices and not (W.data == 0).any()


def test_symmetric_weights_out_of_range_is_the_reference_error():
    with pytest.raises(ValueError):
        symmetric_weights(3, np.array([0, 5]), np.array([1, 2]), np.ones(2))


@needs_numba
def test_a_builder_that_fails_to_compile_falls_back_with_the_same_data(monkeypatch):
    from socialals import _build as builders, _config

    rng = np.random.default_rng(8)
    ratings = pd.DataFrame({"user": rng.integers(0, 20, 300), "item": rng.integers(0, 15, 300),
                            "rating": rng.integers(1, 6, 300).astype(float)})
    expect, expect_warnings = _dataset(ratings, None, np.float64, False)

    def broken(*args, **kwargs):
        raise _config._ForcedCompileFailure("forced for the test")

    monkeypatch.setattr(builders, "_gather", broken)  # a kernel run after the codes' first pass
    _config._forget_failures()
    try:
        got, got_warnings = _dataset(ratings, None, np.float64, True)
    finally:
        _config._forget_failures()
    assert any("'rating_matrix' failed to compile" in w for w in got_warnings)
    assert [w for w in got_warnings if "duplicate" in w] == expect_warnings
    _assert_same_csr(got.R, expect.R)
    _assert_same_csr(got.Rt, expect.Rt)


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_build_holds_little_more_than_the_finished_pair(dtype):
    """Traced peak of build_dataset over the bytes of R and Rt: the codes, both sorts and
    the values never sit beside a second copy (the scipy route peaked at 1.4-2.1x)."""
    rng = np.random.default_rng(0)
    n = 200_000
    key = rng.choice(20_000 * 3_000, n, replace=False)
    ratings = pd.DataFrame({"user": (key // 3000).astype(np.int32), "item": (key % 3000).astype(np.int32),
                            "rating": rng.integers(1, 6, n).astype(np.float32)})
    build_dataset(ratings.iloc[:50], dtype=dtype)  # compile outside the trace
    tracemalloc.start()
    try:
        data = build_dataset(ratings, dtype=dtype)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    pair = sum(a.nbytes for M in (data.R, data.Rt) for a in (M.data, M.indices, M.indptr))
    assert peak <= pair + 3 * n  # the validation's boolean masks, a byte a rating each


def test_socialals_drops_the_edge_arrays_once_w_exists():
    rng = np.random.default_rng(1)
    ratings = pd.DataFrame({"user": rng.integers(0, 30, 200), "item": rng.integers(0, 20, 200),
                            "rating": rng.integers(1, 6, 200).astype(float)})
    social = pd.DataFrame({"user": rng.integers(0, 35, 60), "friend": rng.integers(0, 35, 60)})
    seen = {}
    model = SocialALS(factors=2, iterations=1, random_state=0)
    original = model._prepare

    def spy(fit):
        original(fit)
        seen["edges"] = fit.data.social_src
        seen["W"] = fit.W

    model._prepare = spy
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        model.fit(ratings, social)
    assert seen["edges"] is None and seen["W"].nnz > 0


@needs_numba
def test_exact_sum_in_one_pass_equals_the_reference_and_fractions():
    from fractions import Fraction

    from socialals.data import _EXACT_SHIFT, _exact_sum, exact_sum

    rng = np.random.default_rng(4)
    cases = [rng.normal(size=2000) * 10.0 ** rng.integers(-300, 300, 2000),
             rng.integers(1, 6, 3000).astype(np.float32),
             np.array([5e-324, -5e-324, 1e308, 1e308, -2.5, 0.0, -0.0]),
             np.array([]),
             rng.normal(size=(20, 9))[:, ::2]]
    for values in cases:
        with config_context(compiled=True):
            got = exact_sum(values)
        assert got == _exact_sum(values)
        assert Fraction(got, 2**_EXACT_SHIFT) == sum((Fraction(float(v)) for v in np.ravel(values)), Fraction(0))


@pytest.mark.parametrize("compiled", [True, False] if numba_available else [False])
def test_float64_ratings_float32_holds_are_stored_in_four_bytes(compiled):
    rng = np.random.default_rng(3)
    key = rng.choice(60 * 40, 500, replace=False)
    stars = pd.DataFrame({"user": key // 40, "item": key % 40, "rating": rng.integers(1, 11, 500) / 2.0})
    cases = {
        "half stars": (stars, np.float32),
        "a tenth": (stars.assign(rating=stars["rating"] + 0.1), np.float64),
        # repeated pairs: the mean of 1 and 2 is a float32 number, the mean of 1, 2, 2 is not
        "merged 1.5": (pd.concat([stars, pd.DataFrame({"user": [0, 0], "item": [99, 99], "rating": [1.0, 2.0]})]),
                       np.float32),
        "merged 5/3": (pd.concat([stars, pd.DataFrame({"user": [0] * 3, "item": [99] * 3, "rating": [1.0, 2.0, 2.0]})]),
                       np.float64),
    }
    for name, (frame, stored) in cases.items():
        data, _ = _dataset(frame, None, np.float64, compiled)
        assert data.R.dtype == stored and data.Rt.dtype == stored, name
        means = frame.groupby(["user", "item"])["rating"].mean()  # independent: pandas in float64
        got = data.R.toarray()[data.users.get_indexer(means.index.get_level_values(0)),
                               data.items.get_indexer(means.index.get_level_values(1))]
        np.testing.assert_array_equal(got, means.to_numpy(), err_msg=name)


MODELS = {
    "ALS": lambda: ALS(factors=6, iterations=3, random_state=0),
    "RegularizedALS": lambda: RegularizedALS(factors=6, iterations=3, random_state=0, biases=False),
    "RegularizedALS biases": lambda: RegularizedALS(factors=6, iterations=3, random_state=0, biases=True),
    "RegularizedALS ranking": lambda: RegularizedALS(factors=6, iterations=3, random_state=0, unobserved_weight=0.1,
                                                     unobserved_rating=-1.0, biases=True),
    "SocialALS": lambda: SocialALS(factors=20, iterations=3, random_state=0, alpha=2.0, n_jobs=2),
    "Popularity": lambda: Popularity(),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_four_byte_storage_changes_no_fit_by_a_bit(name, monkeypatch):
    """The same fit whether the half stars are stored in 4 bytes or (switched off) in 8."""
    rng = np.random.default_rng(4)
    key = rng.choice(120 * 90, 1500, replace=False)
    ratings = pd.DataFrame({"user": key // 90, "item": key % 90, "rating": rng.integers(1, 11, 1500) / 2.0})
    social = pd.DataFrame({"user": rng.integers(0, 130, 300), "friend": rng.integers(0, 130, 300)})
    social = social[social.user != social.friend].drop_duplicates()

    def fit():
        model = MODELS[name]()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)
            return model.fit(ratings, social) if isinstance(model, SocialALS) else model.fit(ratings)

    four = fit()
    monkeypatch.setattr(_build, "fits_float32", lambda values, chunk=0: False)
    eight = fit()
    assert four._seen.dtype == np.float32 and eight._seen.dtype == np.float64
    assert hasattr(four, "user_bias_") == ("biases" in name or "ranking" in name)
    for attr in ("user_factors_", "item_factors_", "loss_history_", "user_bias_", "item_bias_", "item_means_"):
        if hasattr(four, attr):
            np.testing.assert_array_equal(getattr(four, attr), getattr(eight, attr), err_msg=attr)
    pairs = ratings.sample(200, random_state=0)
    np.testing.assert_array_equal(four.predict(pairs), eight.predict(pairs))
