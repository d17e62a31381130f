"""The one duplicate and self-loop policy (socialals.data): frame-level helpers agree with
an independent pandas computation and with what build_dataset does at fit time."""

import warnings

import numpy as np
import pandas as pd
import pytest

from socialals.data import build_dataset, clean_social, merge_duplicate_ratings
from socialals.exceptions import DataWarning


def _random_ratings(seed=0, n=300):
    rng = np.random.default_rng(seed)
    users = np.array([f"u{i}" for i in rng.integers(0, 25, n)], dtype=object)
    return pd.DataFrame({"user": users, "item": rng.integers(0, 15, n), "rating": rng.integers(1, 6, n) * 1.0})


def test_merge_duplicate_ratings_against_groupby_and_build_dataset():
    ratings = _random_ratings()
    before = ratings.copy()
    with pytest.warns(DataWarning) as record:
        merged = merge_duplicate_ratings(ratings, source="toy")
    pd.testing.assert_frame_equal(ratings, before)  # the caller's frame is untouched

    grouped = ratings.groupby(["user", "item"], sort=False)["rating"]
    expected = grouped.mean()
    pd.testing.assert_series_equal(merged.set_index(["user", "item"])["rating"], expected, check_names=False)
    n_pairs = int((grouped.size() > 1).sum())
    n_extra = int(len(ratings) - grouped.ngroups)
    n_disagree = int((grouped.nunique() > 1).sum())
    assert [str(w.message) for w in record] == [
        f"toy: {n_pairs} duplicate (user, item) pair(s) ({n_extra} extra row(s)) merged into their mean rating; "
        f"{n_disagree} of them had different ratings."
    ]

    # The same numbers build_dataset stores when it merges at fit time.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        data = build_dataset(ratings)
    clean = build_dataset(merged)
    assert (data.R != clean.R).nnz == 0 and list(data.users) == list(clean.users)


def test_merge_without_duplicates_is_silent_and_keeps_rows():
    ratings = _random_ratings().drop_duplicates(["user", "item"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        merged = merge_duplicate_ratings(ratings)
    pd.testing.assert_frame_equal(merged, ratings.reset_index(drop=True))


def test_clean_social_against_pandas():
    rng = np.random.default_rng(1)
    social = pd.DataFrame({"user": rng.integers(0, 12, 200), "friend": rng.integers(0, 12, 200),
                           "weight": rng.random(200)})
    with pytest.warns(DataWarning, match="^net: dropped") as record:
        cleaned = clean_social(social, source="net")
    no_loops = social[social["user"] != social["friend"]]
    expected = no_loops.drop_duplicates(["user", "friend"], keep="first").reset_index(drop=True)
    pd.testing.assert_frame_equal(cleaned, expected)
    n_loops = int((social["user"] == social["friend"]).sum())
    n_dup = len(no_loops) - len(expected)
    assert f"dropped {n_loops} self-loop(s) and {n_dup} duplicate edge(s)" in str(record[0].message)
    assert len(record) == 1
