import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def planted_ratings(n_users=60, n_items=40, k=3, density=0.3, noise=0.1, seed=0):
    """A small planted low-rank problem as a DataFrame plus the true factors."""
    rng = np.random.default_rng(seed)
    U = rng.normal(size=(n_users, k))
    V = rng.normal(size=(n_items, k))
    mask = rng.random((n_users, n_items)) < density
    mask[np.arange(n_users), rng.integers(0, n_items, n_users)] = True  # every user rates
    mask[rng.integers(0, n_users, n_items), np.arange(n_items)] = True  # every item rated
    u, i = np.nonzero(mask)
    r = 3.0 + (U[u] * V[i]).sum(1) + noise * rng.normal(size=len(u))
    return pd.DataFrame({"user": u, "item": i, "rating": r}), U, V


def random_social(n_users, n_edges, seed=0, extra_users=0, weights=False):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, n_users + extra_users, n_edges)
    b = rng.integers(0, n_users, n_edges)
    keep = a != b
    df = pd.DataFrame({"user": a[keep], "friend": b[keep]}).drop_duplicates()
    if weights:
        df["weight"] = rng.uniform(0.2, 1.5, len(df))
    return df.reset_index(drop=True)


@pytest.fixture
def small_problem():
    ratings, _, _ = planted_ratings()
    social = random_social(60, 150, seed=1)
    return ratings, social


@pytest.fixture
def shared_datasets():
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"shared data sets not found at {SHARED_DATASETS}")
    return SHARED_DATASETS


# ---------------------------------------------------------------------------- Hypothesis
# Profiles for the property tests: "ci" (the default) is small, derandomised and fast;
# run `python -m pytest --hypothesis-profile=thorough` for a long search.
try:
    from hypothesis import HealthCheck, settings
except ImportError:  # the property tests skip themselves
    settings = None
else:
    settings.register_profile(
        "ci",
        max_examples=20,
        deadline=None,
        derandomize=True,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    settings.register_profile(
        "thorough",
        max_examples=1000,
        deadline=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def pytest_configure(config):
    if settings is not None and not config.getoption("hypothesis_profile", default=None):
        settings.load_profile("ci")
