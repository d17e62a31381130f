import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The CI copy of the real data sets: ``../shared/datasets`` beside the checkout, or the
#: folder named by ``$SOCIALALS_SHARED_DATASETS`` (a checkout elsewhere, e.g. a worktree).
SHARED_DATASETS = Path(os.environ.get("SOCIALALS_SHARED_DATASETS") or REPO_ROOT.parent / "shared" / "datasets")
#: The user's download cache as it was before the suite redirected it (read, never written).
USER_DATA_HOME = Path(os.environ.get("SOCIALALS_DATA") or Path("~", "socialals_data")).expanduser()


def pytest_configure(config):
    """Send every download of the suite (and of the notebooks' kernels) to a temporary folder.

    Tests never write into the user's ``~/socialals_data``; tests that need a real data
    set read it from :data:`SHARED_DATASETS` or the user's cache (see
    :func:`find_dataset`) and skip with a reason when it is in neither.
    """
    import tempfile

    folder = tempfile.mkdtemp(prefix="socialals-test-data-")
    config._socialals_data = folder
    os.environ["SOCIALALS_DATA"] = folder
    _load_hypothesis_profile(config)


def pytest_unconfigure(config):
    import shutil

    folder = getattr(config, "_socialals_data", None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


def find_dataset(name):
    """Folder of the real data set ``name`` (``filmtrust``, ``ciao``) or None.

    Looked up in :data:`SHARED_DATASETS`, then among the user's extracted downloads.
    """
    for folder in (SHARED_DATASETS / name, USER_DATA_HOME / name):
        if folder.is_dir():
            return folder
    return None


def require_dataset(name):
    """Like :func:`find_dataset`, but skip the calling test with a reason when it is absent."""
    folder = find_dataset(name)
    if folder is None:
        pytest.skip(
            f"the {name} data set is neither in {SHARED_DATASETS / name} nor in the download cache "
            f"{USER_DATA_HOME / name} (socialals.datasets downloads it there)"
        )
    return folder


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
def filmtrust_folder():
    return require_dataset("filmtrust")


@pytest.fixture
def ciao_folder():
    return require_dataset("ciao")


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


def _load_hypothesis_profile(config):
    if settings is not None and not config.getoption("hypothesis_profile", default=None):
        settings.load_profile("ci")
