"""Property tests of the ALS family over random small problems (Hypothesis).

Profiles (tests/conftest.py): "ci" by default; ``--hypothesis-profile=thorough`` searches
far longer.
"""

import warnings

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from socialals import ALS, RegularizedALS, SocialALS  # noqa: E402

from test_properties_persistence import problems  # noqa: E402


@st.composite
def als_models(draw, classes=(ALS, RegularizedALS, SocialALS)):
    cls = draw(st.sampled_from(classes))
    params = dict(factors=draw(st.integers(1, 8)), dtype=draw(st.sampled_from(["float64", "float32"])),
                  iterations=draw(st.integers(2, 6)), random_state=draw(st.integers(0, 2**16)))
    if cls is ALS:
        return cls(**params)
    params.update(
        reg=draw(st.sampled_from([0.0, 1e-12, 1e-8, 1e-4, 1e-2, 1.0, 10.0])),
        biases=draw(st.booleans()), weighted_reg=draw(st.booleans()),
        unobserved_weight=draw(st.sampled_from([0.0, 0.0, 0.1, 1.5])),
        unobserved_rating=draw(st.sampled_from([0.0, -1.0])),
    )
    if params["biases"]:
        params["bias_reg"] = draw(st.sampled_from([None, 0.0, 0.5]))
    if cls is SocialALS:
        params.update(alpha=draw(st.sampled_from([0.0, 0.1, 3.0])), similarity=draw(st.sampled_from([None, "vss", "pcc"])))
    return cls(**params)


def _fit(model, ratings, social):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(ratings, social)


@given(problem=problems(), model=als_models())
def test_loss_never_rises(problem, model):
    ratings, social = problem
    h = _fit(model, *problem).loss_history_
    assert np.isfinite(h).all()
    rounding = 1e-9 if model.dtype == "float64" else 1e-4  # relative; plus an absolute floor for exact fits
    assert (np.diff(h) <= rounding * np.abs(h[:-1]) + 1e-12 * np.abs(ratings["rating"]).max() ** 2).all(), h


@given(problem=problems(), model=als_models())
def test_n_jobs_does_not_change_results(problem, model):
    a = _fit(model.set_params(n_jobs=1), *problem)
    b = _fit(model.__class__(**{**a.get_params(), "n_jobs": 2}), *problem)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    np.testing.assert_array_equal(a.loss_history_, b.loss_history_)


@given(problem=problems(), model=als_models(classes=(RegularizedALS,)))
def test_social_alpha_zero_equals_regularized(problem, model):
    ratings, social = problem
    if model.unobserved_weight > 0:  # users known only socially are pairs of the missing-data term
        model.set_params(unobserved_weight=0.0)
    plain = _fit(model, ratings, None)
    params = plain.get_params()
    social_model = _fit(SocialALS(alpha=0.0, **params), ratings, social)
    n = len(plain.users_)
    assert list(social_model.users_[:n]) == list(plain.users_)
    np.testing.assert_array_equal(social_model.item_factors_, plain.item_factors_)
    np.testing.assert_array_equal(social_model.user_factors_[:n], plain.user_factors_)
