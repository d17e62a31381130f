"""The generic rating settings keep the rule of benchmarks/bench_generic_defaults.py.

The benchmark found no social setting that was no worse than generic RegularizedALS on
every tuned data set, so generic SocialALS ships with the social term off; then it must
predict exactly as generic RegularizedALS (rebuilt here from the two rows independently).
"""

import numpy as np
import pytest

from socialals import RegularizedALS, SocialALS, make_social_ratings
from socialals._defaults import defaults_for


@pytest.mark.filterwarnings("ignore::UserWarning")  # fallback predictions for unseen test items
def test_generic_social_als_predicts_as_generic_regularized_als():
    social_row = defaults_for("generic", "SocialALS")
    reg_row = defaults_for("generic", "RegularizedALS")
    # everything but the social term is the RegularizedALS row
    assert {k: v for k, v in social_row.items() if k not in ("alpha", "similarity")} == reg_row
    ratings, social = make_social_ratings(n_users=80, n_items=40, random_state=1)
    test = ratings.sample(40, random_state=0)
    train = ratings.drop(test.index)
    a = SocialALS(factors=4, random_state=0, **social_row).fit(train, social)
    b = RegularizedALS(factors=4, random_state=0, **reg_row).fit(train, social)
    pairs = test[["user", "item"]]
    np.testing.assert_allclose(a.predict(pairs), b.predict(pairs), rtol=1e-10, atol=1e-12)
