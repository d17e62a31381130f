"""Fits on a Dask cluster through joblib: the same factors as the local fit, ratings sent
once per fit, lost workers survived or reported, clear errors without a client."""

import os
import signal
import subprocess
import sys

import warnings

import joblib
import numpy as np
import pandas as pd
import pytest

from socialals import ALS, RegularizedALS, SocialALS
from socialals._config import numba_available
from socialals.exceptions import DataWarning

distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed (pip install 'socialals[dask]')")
pytestmark = [
    pytest.mark.skipif(not numba_available, reason="the cluster runs the compiled kernel"),
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:ratings. 7 duplicate:socialals.exceptions.DataWarning"),
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



# ---------------------------------------------------------------------------- Dask frames
dd = pytest.importorskip("dask.dataframe", reason="dask is not installed (pip install 'socialals[dask]')")

FRAME_MODELS = {
    "ALS": MODELS["ALS"],
    "RegularizedALS": MODELS["RegularizedALS"],  # biases and the missing-data term
    "SocialALS": lambda: SocialALS(factors=5, iterations=3, random_state=0, alpha=0.5, similarity="pcc", biases=True),
}


@pytest.fixture(scope="module")
def frames():
    """Shuffled ratings with string user labels and 7 repeated pairs (merged into means),
    links with weights and users known only through them; index = row order."""
    from conftest import planted_ratings, random_social

    ratings, _, _ = planted_ratings()
    ratings["user"] = "u" + ratings["user"].astype(str)
    repeats = ratings.iloc[:7].assign(rating=lambda f: f["rating"] + 1.0)
    ratings = pd.concat([ratings, repeats]).sample(frac=1.0, random_state=1).reset_index(drop=True)
    social = random_social(60, 150, seed=1, extra_users=5, weights=True)
    social["user"] = "u" + social["user"].astype(str)
    social["friend"] = "u" + social["friend"].astype(str)
    return ratings, social


def fit_warnings(make, *args):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = make().fit(*args)
    return model, sorted(str(w.message) for w in caught if issubclass(w.category, DataWarning))


@pytest.mark.parametrize("name", sorted(FRAME_MODELS))
def test_dask_frame_fit_equals_pandas_fit(name, client, frames):
    ratings, social = frames
    local, local_warned = fit_warnings(FRAME_MODELS[name], ratings, social)
    remote, remote_warned = fit_warnings(FRAME_MODELS[name], dd.from_pandas(ratings, npartitions=3),
                                         dd.from_pandas(social, npartitions=2))
    same_fit(local, remote)
    assert local.users_.equals(remote.users_) and local.users_.dtype == remote.users_.dtype
    assert local.items_.equals(remote.items_) and local.items_.dtype == remote.items_.dtype
    assert local.rating_mean_ == remote.rating_mean_
    assert remote_warned == local_warned and any("7 duplicate" in m for m in local_warned)
    if name != "ALS":  # both with biases
        assert local.global_mean_ == remote.global_mean_
        assert np.array_equal(local.user_bias_, remote.user_bias_)
        assert np.array_equal(local.item_bias_, remote.item_bias_)
    if name == "SocialALS":
        assert len(local.users_) > local.user_factors_.shape[0] - 6  # the graph added users
        assert (local.social_weights_ != remote.social_weights_).nnz == 0


@pytest.mark.parametrize("name", ["ALS", "RegularizedALS"])
def test_blocks_stored_in_four_or_eight_bytes_fit_as_the_pandas_route(name, client, frames):
    """Half stars are stored in 4 bytes, a block holding a rating float32 cannot hold in 8:
    the cluster's mix of both gives the local fit bit for bit."""
    ratings, _ = frames
    ratings = ratings.assign(rating=np.round(ratings["rating"] * 2) / 2)
    odd = ratings["user"].isin(ratings["user"].unique()[:3])
    ratings.loc[odd, "rating"] += 0.1  # some users' rows (and their items') need 8 bytes
    local, _ = fit_warnings(FRAME_MODELS[name], ratings)
    remote, _ = fit_warnings(FRAME_MODELS[name], dd.from_pandas(ratings, npartitions=3))
    assert local._seen.dtype == np.float64  # one 8-byte rating makes the local pair 8 bytes
    same_fit(local, remote)
    half, _ = fit_warnings(FRAME_MODELS[name], ratings.assign(rating=np.round(ratings["rating"] * 2) / 2))
    assert half._seen.dtype == np.float32


@pytest.fixture(scope="module")
def links(frames):
    """The frames' links with self-links, repeated links (other weights) and users known only
    as a friend ("g1", "g2") or only through a self-link ("u70"); shuffled."""
    _, social = frames
    loops = pd.DataFrame({"user": ["u3", "u70", "u11"], "friend": ["u3", "u70", "u11"], "weight": [1.0, 0.5, 2.0]})
    repeats = social.iloc[[4, 9, 20, 33]].assign(weight=lambda f: f["weight"] * 2.0)
    friends_only = pd.DataFrame({"user": ["u1", "u8", "u2"], "friend": ["g2", "g1", "g2"], "weight": [0.3, 0.4, 0.5]})
    return pd.concat([social, loops, repeats, friends_only]).sample(frac=1.0, random_state=3).reset_index(drop=True)


def dask_links(links, npartitions=3):
    """``links`` as a Dask frame of ``npartitions`` partitions after an empty one."""
    return dd.concat([dd.from_pandas(links.iloc[:0], npartitions=1), dd.from_pandas(links, npartitions=npartitions)])


def test_dask_links_fit_equals_pandas_links_fit(client, frames, links):
    ratings, _ = frames
    local, local_warned = fit_warnings(FRAME_MODELS["SocialALS"], ratings, links)
    remote, remote_warned = fit_warnings(FRAME_MODELS["SocialALS"], dd.from_pandas(ratings, npartitions=3),
                                         dask_links(links))
    same_fit(local, remote)
    assert local.users_.equals(remote.users_) and local.users_.dtype == remote.users_.dtype
    assert list(local.users_[-8:]) == ["g1", "g2", "u60", "u61", "u62", "u63", "u64", "u70"]  # after the rated
    assert (local.social_weights_ != remote.social_weights_).nnz == 0
    assert remote_warned == local_warned
    assert any("dropped 3 self-loop(s) and 4 duplicate edge(s)" in m for m in local_warned)


@pytest.mark.parametrize("defect", ["missing column", "missing labels", "NaN weights", "negative weights",
                                    "text weights"])
def test_a_bad_dask_links_frame_gets_the_pandas_error_before_any_half_step(defect, client, frames, links,
                                                                           monkeypatch):
    from socialals import als

    ratings, _ = frames
    bad = links.copy()
    rows = bad.index[[3, 50, 51, 100, 120, 121, 150]]  # several partitions, more than the preview shows
    if defect == "missing column":
        bad = bad.drop(columns="friend")
    elif defect == "missing labels":
        bad.loc[rows, "friend"] = np.nan
        bad.loc[rows[[0, -1]], "user"] = np.nan  # the user column is reported first
    elif defect == "NaN weights":
        bad.loc[rows, "weight"] = -1.0
        bad.loc[rows[-2:], "weight"] = [np.nan, np.inf]  # NaN comes before negative
    elif defect == "negative weights":
        bad.loc[rows, "weight"] = -1.0
    else:
        bad["weight"] = bad["weight"].astype(str)
    frame = dask_links(bad, npartitions=4)
    half_steps = []
    monkeypatch.setattr(als, "solve_held", lambda *a, **k: half_steps.append(1))
    fit = SocialALS(factors=3, iterations=1, random_state=0).fit
    # the pandas route on the data the Dask frame holds (Dask's own text dtype)
    local = error_of(lambda data: fit(ratings, data), frame.compute())
    remote = error_of(lambda data: fit(dd.from_pandas(ratings, npartitions=3), data), frame)
    assert not half_steps
    assert remote == local
    counted = {"missing column": "missing column(s) ['friend']", "missing labels": "'user' of 'social' has 2 missing",
               "NaN weights": "has 2 NaN or infinite", "negative weights": "7 negative value(s)",
               "text weights": f"({len(bad)} non-numeric value(s))"}
    assert counted[defect] in local


class Received:
    """What the client receives through ``gather``, looked for inside lists, dicts and
    socialals' own objects: ``objects`` (every leaf), ``frame_rows`` (rows of frames),
    ``labels`` (values of text or object arrays and indexes) and ``rating_rows`` (rows of
    frames and of arrays at least ``n_ratings`` long)."""

    def __init__(self, client, monkeypatch, n_ratings=None):
        self.n_ratings = n_ratings
        self.objects = self.frame_rows = self.labels = self.rating_rows = 0
        gather = client.gather

        def recording(futures, *args, **kwargs):
            result = gather(futures, *args, **kwargs)
            self.look(result)
            return result

        monkeypatch.setattr(client, "gather", recording)

    def look(self, obj):
        if isinstance(obj, (list, tuple)):
            for o in obj:
                self.look(o)
        elif isinstance(obj, dict):
            self.look(list(obj.values()))
        elif type(obj).__module__.startswith("socialals") and hasattr(obj, "__dict__"):
            self.look(vars(obj))
        else:
            self.objects += 1
            if isinstance(obj, (pd.DataFrame, pd.Series)):
                self.frame_rows += len(obj)
                self.rating_rows += len(obj)
            elif isinstance(obj, (np.ndarray, pd.Index)):
                if pd.api.types.is_string_dtype(obj.dtype):  # object or text
                    self.labels += len(obj)
                if self.n_ratings is not None and obj.ndim and obj.shape[0] >= self.n_ratings:
                    self.rating_rows += obj.shape[0]


@pytest.mark.filterwarnings("ignore:social. dropped 3 self-loop:socialals.exceptions.DataWarning")
def test_the_client_never_receives_the_links_labels(client, frames, links, monkeypatch):
    from socialals import data

    ratings, _ = frames
    frame = dask_links(links)

    def no_compute(self, *args, **kwargs):
        raise AssertionError("the links frame was computed on the client")

    with monkeypatch.context() as m:  # the baseline: the links never on the cluster
        base = Received(client, m)
        FRAME_MODELS["SocialALS"]().set_params(iterations=1).fit(dd.from_pandas(ratings, npartitions=3), links)
    joined = []  # what the client's join of the chunks sees
    join = data._join_links

    def spying(chunks, users):
        joined.extend((ch.n, ch.src.dtype, ch.dst.dtype, len(ch.kinds)) for ch in chunks)
        return join(chunks, users)

    monkeypatch.setattr(data, "_join_links", spying)
    monkeypatch.setattr(type(frame), "compute", no_compute)
    received = Received(client, monkeypatch)
    model = FRAME_MODELS["SocialALS"]().set_params(iterations=1).fit(dd.from_pandas(ratings, npartitions=3), frame)
    graph_only = len(model.users_) - ratings["user"].nunique()
    assert graph_only == 8 and base.labels > 0  # u60..u64, u70, g1, g2; the ratings' labels do come
    assert received.frame_rows == base.frame_rows == 0
    # a partition's new users, once per column, and one label for the kind of its labels
    assert received.labels - base.labels <= frame.npartitions * (2 * graph_only + 1) < len(links)
    assert len(joined) == frame.npartitions and sum(n for n, *_ in joined) == len(links)
    assert all(k <= 1 and (n == 0 or s == d == np.int32) for n, s, d, k in joined)  # codes; a label's kind
    # the instrument sees what does come: the partitions gathered on purpose
    client.gather(client.compute(frame.to_delayed()))
    assert received.frame_rows == len(links)


def test_exact_mean_is_the_correctly_rounded_mean_for_any_blocks():
    from fractions import Fraction

    from socialals.data import exact_mean, exact_sum

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=999) * 10.0 ** rng.integers(-30, 30, 999), [5e-324, -1e300, 1e300]])
    truth = float(sum(Fraction(float(v)) for v in x) / len(x))
    assert exact_mean(exact_sum(x), len(x)) == truth
    cuts = [0, 1, 400, 401, 1002]
    assert exact_mean(sum(exact_sum(x[a:b]) for a, b in zip(cuts[:-1], cuts[1:])), len(x)) == truth


def test_the_client_never_holds_the_ratings(client, frames, monkeypatch):
    ratings, social = frames
    frame = dd.from_pandas(ratings, npartitions=4)

    def no_compute(self, *args, **kwargs):
        raise AssertionError("the ratings frame was computed on the client")

    monkeypatch.setattr(type(frame), "compute", no_compute)
    arrivals = Received(client, monkeypatch, len(ratings))
    model = FRAME_MODELS["SocialALS"]().fit(frame, social)
    assert arrivals.objects > 20  # labels, counts, block sums, similarities, rows of factors
    assert arrivals.rating_rows == 0
    assert model.user_factors_.shape[0] == len(model.users_)
    # the instrument sees rows that do come: the partitions gathered on purpose
    client.gather(client.compute(frame.to_delayed()))
    assert arrivals.rating_rows == len(ratings)
    with pytest.raises(AssertionError, match="computed on the client"):
        frame.compute()


def test_a_worker_killed_mid_fit_of_a_dask_frame_is_survived_with_the_same_factors(client, frames):
    # the blocks were computed by Dask (not scattered), so Dask recomputes the lost ones
    ratings, social = frames
    local = FRAME_MODELS["SocialALS"]().set_params(iterations=4).fit(ratings, social)
    killed = []

    def kill_one(model, iteration, loss):
        if iteration == 1:
            address, pid = sorted(client.run(os.getpid).items())[0]
            os.kill(pid, signal.SIGKILL)
            killed.append(address)
        return False

    remote = FRAME_MODELS["SocialALS"]().set_params(iterations=4, callback=kill_one).fit(
        dd.from_pandas(ratings, npartitions=3), social)
    assert killed
    same_fit(local, remote)
    client.wait_for_workers(2, timeout=60)


def test_a_dask_fitted_model_says_what_it_cannot_do(client, frames, tmp_path):
    ratings, _ = frames
    with_an_empty_partition = dd.concat([dd.from_pandas(ratings.iloc[:0], npartitions=1),
                                         dd.from_pandas(ratings, npartitions=2)])
    model = ALS(factors=3, iterations=1, random_state=0).fit(with_an_empty_partition)
    local = ALS(factors=3, iterations=1, random_state=0).fit(ratings)
    same_fit(local, model)
    users = list(model.users_[:3])
    with pytest.raises(ValueError, match="fitted from a Dask DataFrame.*exclude_seen=False"):
        model.recommend(users, n=3)
    with pytest.raises(ValueError, match="fitted from a Dask DataFrame"):
        model.save(tmp_path / "model.npz")
    assert not (tmp_path / "model.npz").exists()
    pd.testing.assert_frame_equal(model.recommend(users, n=3, exclude_seen=False),
                                  local.recommend(users, n=3, exclude_seen=False))
    from socialals.baselines import Popularity

    with pytest.raises(TypeError, match="only the ALS models"):
        Popularity().fit(dd.from_pandas(ratings, npartitions=2))


def error_of(fit, data):
    with pytest.raises(ValueError) as caught:
        fit(data)
    return str(caught.value)


@pytest.mark.parametrize("defect", ["missing column", "missing labels", "NaN ratings", "text ratings"])
def test_a_bad_dask_frame_gets_the_pandas_error_before_any_half_step(defect, client, frames, monkeypatch):
    from socialals import als

    ratings, _ = frames
    bad = ratings.copy()
    rows = bad.index[[3, 250, 251, 600, 700, 701, 702]]  # several partitions, more than the preview shows
    if defect == "missing column":
        bad = bad.drop(columns="rating")
    elif defect == "missing labels":
        bad["item"] = bad["item"].astype(float)
        bad.loc[rows, "item"] = np.nan
    elif defect == "NaN ratings":
        bad.loc[rows, "rating"] = np.nan
        bad.loc[rows[-1], "rating"] = np.inf
    else:
        bad["rating"] = bad["rating"].astype(str)
    half_steps = []
    monkeypatch.setattr(als, "solve_held", lambda *a, **k: half_steps.append(1))
    fit = RegularizedALS(factors=3, iterations=1, random_state=0).fit
    local = error_of(fit, bad)
    remote = error_of(fit, dd.from_pandas(bad, npartitions=4))
    assert not half_steps
    if defect == "text ratings":  # pandas' str dtype is Dask's string[pyarrow]: only the dtype's name differs
        assert "got dtype str " in local and "got dtype string " in remote
        remote = remote.replace("got dtype string ", "got dtype str ")
    assert remote == local
    counted = {"missing column": "missing column(s) ['rating']", "missing labels": "has 7 missing label(s)",
               "NaN ratings": "has 7 NaN or infinite", "text ratings": f"({len(bad)} non-numeric value(s))"}
    assert counted[defect] in local


def test_a_dask_frame_without_distributed_or_a_client_is_a_clear_error():
    # a fresh process (this module's cluster is the default client here): first as if
    # dask.distributed were not installed, then installed but with no client started
    code = (
        "import sys\n"
        "import pandas as pd, dask.dataframe as dd\n"
        "from socialals import ALS\n"
        "frame = dd.from_pandas(pd.DataFrame({'user': [1, 2], 'item': [1, 1], 'rating': [1.0, 2.0]}), npartitions=1)\n"
        "for absent in (True, False):\n"
        "    sys.modules.pop('distributed', None)\n"
        "    if absent:\n"
        "        sys.modules['distributed'] = None\n"
        "    try:\n"
        "        ALS(factors=1, iterations=1).fit(frame)\n"
        "    except Exception as e:\n"
        "        print(type(e).__name__, e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    absent, no_client = (done.stdout.splitlines() + ["", ""])[:2]
    assert absent.startswith("ImportError") and "pip install 'socialals[dask]'" in absent, done.stdout + done.stderr
    assert no_client.startswith("RuntimeError") and "Client()" in no_client and "start one before fit" in no_client, \
        done.stdout + done.stderr
