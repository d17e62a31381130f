"""Fits on a Dask cluster through joblib: the same factors as the local fit, ratings sent
once per fit, lost workers survived or reported, clear errors without a client."""

import os
import signal
import subprocess
import sys

import joblib
import numpy as np
import pytest

from socialals import ALS, RegularizedALS, SocialALS
from socialals._config import numba_available

distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed (pip install 'socialals[dask]')")
pytestmark = [
    pytest.mark.skipif(not numba_available, reason="the cluster runs the compiled kernel"),
    pytest.mark.slow,
]

MODELS = {
    "ALS": lambda: ALS(factors=5, iterations=3, random_state=0),
    "RegularizedALS": lambda: RegularizedALS(factors=5, iterations=3, random_state=0, biases=True,
                                             unobserved_weight=0.1),
    "SocialALS": lambda: SocialALS(factors=5, iterations=3, random_state=0, alpha=0.5, similarity="pcc"),
}


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                                       dashboard_address=None)
    c = distributed.Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


def same_fit(a, b):
    assert np.array_equal(a.user_factors_, b.user_factors_)
    assert np.array_equal(a.item_factors_, b.item_factors_)
    assert np.array_equal(a.loss_history_, b.loss_history_)
    assert list(a.users_) == list(b.users_) and list(a.items_) == list(b.items_)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_cluster_fit_equals_local_fit(name, client, small_problem):
    ratings, social = small_problem
    local = MODELS[name]().fit(ratings, social)
    with joblib.parallel_config(backend="dask"):
        remote = MODELS[name]().fit(ratings, social)
    same_fit(local, remote)


def test_ratings_travel_once_per_fit_and_factors_once_per_half_step(client, small_problem, monkeypatch):
    ratings, social = small_problem
    sent = []
    scatter = client.scatter

    def counting(data, *args, **kwargs):
        sent.append((kwargs.get("broadcast", False), len(data) if isinstance(data, list) else 1))
        return scatter(data, *args, **kwargs)

    monkeypatch.setattr(client, "scatter", counting)
    iterations = 4
    with joblib.parallel_config(backend="dask"):
        RegularizedALS(factors=4, iterations=iterations, random_state=0).fit(ratings)
    broadcasts = [n for b, n in sent if b]
    blocks = [n for b, n in sent if not b]
    assert broadcasts == [1] * (2 * iterations)  # Y, once per half-step
    # per side: row pointers, columns, ratings, regulariser rows; sent in the first sweep only
    assert len(blocks) == 2 * 4


def test_a_worker_killed_mid_fit_is_survived_with_the_same_factors(client, small_problem, monkeypatch):
    from socialals import _dask

    ratings, social = small_problem
    losses = []
    is_lost = _dask._is_lost

    def recording(exc, distributed):
        losses.append(type(exc).__name__)
        return is_lost(exc, distributed)

    monkeypatch.setattr(_dask, "_is_lost", recording)
    local = MODELS["SocialALS"]().set_params(iterations=4).fit(ratings, social)
    killed = []

    def kill_one(model, iteration, loss):
        if iteration == 1:  # between sweeps: the blocks that worker held are gone
            pids = client.run(os.getpid)
            address, pid = sorted(pids.items())[0]
            os.kill(pid, signal.SIGKILL)
            killed.append(address)
        return False

    with joblib.parallel_config(backend="dask"):
        remote = MODELS["SocialALS"]().set_params(iterations=4, callback=kill_one).fit(ratings, social)
    assert killed
    assert losses  # the lost blocks were noticed and sent again
    same_fit(local, remote)
    client.wait_for_workers(2, timeout=60)  # the nanny restarts it for the next tests


def test_losing_workers_every_time_ends_in_a_clear_error(client, small_problem, monkeypatch):
    from concurrent.futures import CancelledError

    from socialals import _dask

    ratings, _ = small_problem

    def lost(*args, **kwargs):
        raise CancelledError("lost")

    monkeypatch.setattr(client, "gather", lost)
    model = RegularizedALS(factors=3, iterations=2, random_state=0)
    with joblib.parallel_config(backend="dask"), pytest.raises(RuntimeError, match="lost the workers"):
        model.fit(ratings)
    assert not hasattr(model, "user_factors_")  # never a half-fitted model
    assert _dask._RETRIES == 2


def test_dask_backend_without_a_client_is_a_clear_error():
    # a fresh process (this module's cluster is the default client here): joblib raises when
    # the backend is chosen, before any half-step, naming what to start
    code = (
        "import joblib\n"
        "try:\n"
        "    with joblib.parallel_config(backend='dask'):\n"
        "        pass\n"
        "except ValueError as e:\n"
        "    print('ValueError:', e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "ValueError:" in done.stdout and "Client" in done.stdout, done.stdout + done.stderr


def test_closed_client_is_a_clear_error(small_problem):
    ratings, _ = small_problem
    cluster = distributed.LocalCluster(n_workers=1, processes=False, threads_per_worker=1, dashboard_address=None)
    c = distributed.Client(cluster, set_as_default=False)
    try:
        with joblib.parallel_config(backend="dask", client=c):
            c.close()
            with pytest.raises(RuntimeError, match="start a dask.distributed.Client"):
                RegularizedALS(factors=3, iterations=1, random_state=0).fit(ratings)
    finally:
        c.close()
        cluster.close()

