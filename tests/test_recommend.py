"""Serving a fitted model: the top-n kernel, candidate filters, similar items and users."""

import copy
import warnings

import numpy as np
import pandas as pd
import pytest

import socialals
from socialals import DataWarning, FactorizationMachine, RegularizedALS, SocialALS
from socialals._topn import select_topn, select_topn_reference

from conftest import planted_ratings, random_social


# ---------------------------------------------------------------------------- the kernel
def _brute_topn(scores, n, rows, indptr, indices, cand, ban):
    """One row at a time in plain Python: sort the allowed columns by (-score, column)."""
    m, n_cols = scores.shape
    out = []
    for r in range(m):
        lo, hi = indptr[rows[r]], indptr[rows[r] + 1]
        banned = {int(c) for c in indices[lo:hi]} | {int(c) for c in ([] if ban is None else ban)}
        allowed = [j for j in (range(n_cols) if cand is None else cand)
                   if j not in banned and np.isfinite(scores[r, j])]
        allowed.sort(key=lambda j: (-float(scores[r, j]), j))
        out.append(allowed[:n])
    return out


def _random_case(rng, trial):
    m, n_cols = int(rng.integers(1, 15)), int(rng.integers(1, 30))
    dtype = np.float32 if trial % 2 else np.float64
    S = rng.integers(0, 4, (m, n_cols)).astype(dtype)  # many ties
    if trial % 3 == 0:
        S += rng.normal(size=S.shape).astype(dtype)
    if trial % 4 == 0:
        S[rng.random(S.shape) < 0.15] = np.nan
    if trial % 5 == 0:
        S[rng.random(S.shape) < 0.1] = rng.choice([np.inf, -np.inf])
    n_rows = m + 2
    lengths = rng.integers(0, n_cols + 1, n_rows)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    index_dtype = np.int32 if trial % 3 == 1 else np.int64
    indices = np.concatenate([rng.choice(n_cols, k, replace=False) for k in lengths]).astype(index_dtype)
    rows = rng.integers(0, n_rows, m)
    cand = None if trial % 2 == 0 else np.unique(rng.integers(0, n_cols, rng.integers(0, n_cols + 1)))
    n = int(rng.integers(1, n_cols + 3))
    ban = None if trial % 7 < 3 else rng.integers(0, n_cols, rng.integers(0, n_cols + 1))  # repeats allowed
    return S, n, rows, indptr, indices, cand, ban


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "reference"])
def test_topn_against_brute_force(compiled):
    rng = np.random.default_rng(0)
    with socialals.config_context(compiled=compiled):
        for trial in range(150):
            S, n, rows, indptr, indices, cand, ban = _random_case(rng, trial)
            index, value, count = select_topn(S, n, rows, indptr, indices, cand, ban)
            expected = _brute_topn(S, n, rows, indptr, indices, cand, ban)
            assert value.dtype == S.dtype
            for r, exp in enumerate(expected):
                assert count[r] == len(exp)
                assert index[r, : count[r]].tolist() == exp, (trial, r)
                np.testing.assert_array_equal(value[r, : count[r]], S[r, exp])  # copied bit for bit
                assert (index[r, count[r]:] == -1).all()


def test_topn_kernel_equals_reference():
    rng = np.random.default_rng(1)
    for trial in range(200):
        S, n, rows, indptr, indices, cand, ban = _random_case(rng, trial)
        a = select_topn(S, n, rows, indptr, indices, cand, ban)
        b = select_topn_reference(S, n, rows, indptr, indices, cand, ban)
        for x, y in zip(a, b):
            assert x.dtype == y.dtype
            np.testing.assert_array_equal(x, y)


def test_topn_ignores_out_of_range_exclusions():
    """A forged seen matrix (indices out of range, pointers past the end) must not be
    read out of bounds; both paths ignore what lies outside."""
    S = np.arange(12, dtype=np.float64).reshape(2, 6)
    indptr = np.array([0, 3, 99])
    indices = np.array([-1, 5, 2**31 - 1, 4])
    for compiled in (True, False):
        with socialals.config_context(compiled=compiled):
            index, value, count = select_topn(S, 3, np.array([0, 1]), indptr, indices)
        assert index.tolist() == [[4, 3, 2], [5, 3, 2]]
        assert count.tolist() == [3, 3]
    with pytest.raises(ValueError, match="candidates"):
        select_topn(S, 3, np.array([0, 1]), indptr, indices, np.array([0, 7]))


# ---------------------------------------------------------------------------- recommend
@pytest.fixture(scope="module")
def fitted():
    ratings, _, _ = planted_ratings(n_users=80, n_items=50, seed=4)
    ratings = ratings.assign(item="i" + ratings["item"].astype(str))
    model = RegularizedALS(factors=4, reg=0.1, biases=True, iterations=5, random_state=0).fit(ratings)
    return model, ratings


def _brute_recommend(model, ratings, user, n, items=None, exclude=(), exclude_seen=True):
    pool = list(model.items_) if items is None else [i for i in model.items_ if i in set(items)]
    seen = set(ratings.loc[ratings["user"] == user, "item"]) if exclude_seen else set()
    pool = [i for i in pool if i not in seen and i not in set(exclude)]
    scores = model.predict(pd.DataFrame({"user": user, "item": pool}))
    pos = model.items_.get_indexer(pool)
    order = np.lexsort((pos, -scores))[:n]
    return [pool[j] for j in order], scores[order]


@pytest.mark.parametrize("exclude_seen", [True, False])
def test_candidate_filters_against_brute_force(fitted, exclude_seen):
    model, ratings = fitted
    rng = np.random.default_rng(2)
    items = list(rng.choice(model.items_, 20, replace=False))
    exclude = list(rng.choice(model.items_, 10, replace=False))
    users = list(model.users_[:12])
    for kwargs in ({"items": items}, {"exclude": exclude}, {"items": items, "exclude": exclude}, {}):
        rec = model.recommend(users, n=6, exclude_seen=exclude_seen, **kwargs)
        for u in users:
            want_items, want_scores = _brute_recommend(model, ratings, u, 6, exclude_seen=exclude_seen,
                                                        items=kwargs.get("items"), exclude=kwargs.get("exclude", ()))
            got = rec[rec["user"] == u]
            assert got["item"].tolist() == want_items, (kwargs, u)
            assert got["rank"].tolist() == list(range(1, len(want_items) + 1))
            np.testing.assert_allclose(got["score"], want_scores, rtol=1e-12)


def test_candidate_filter_fewer_than_n(fitted):
    model, ratings = fitted
    user = model.users_[0]
    seen = set(ratings.loc[ratings["user"] == user, "item"])
    pool = [i for i in model.items_[:8]]
    rec = model.recommend(user, n=10, items=pool)
    assert rec["item"].tolist() == [i for i in rec["item"] if i in pool and i not in seen]
    assert len(rec) == len([i for i in pool if i not in seen])
    # exclude wins over items
    assert len(model.recommend(user, n=10, items=pool, exclude=pool)) == 0


def test_unknown_candidate_labels_are_counted(fitted):
    model, _ = fitted
    with pytest.warns(DataWarning, match=r"2 of 4 label\(s\) in 'items' are not items"):
        rec = model.recommend(model.users_[:3], n=5, items=["i1", "i2", "nope", "gone"])
    assert set(rec["item"]) <= {"i1", "i2"}
    with pytest.warns(DataWarning, match=r"1 of 2 label\(s\) in 'exclude'"):
        rec2 = model.recommend(model.users_[:3], n=5, exclude=["i1", "nope"])
    assert "i1" not in set(rec2["item"])
    with pytest.warns(DataWarning, match="'items'"):
        empty = model.recommend(model.users_[:3], n=5, items=["nope"])
    assert len(empty) == 0 and list(empty.columns) == ["user", "item", "rank", "score"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.recommend(model.users_[:3], n=5, items="i3", exclude={"i4"})  # scalar and set accepted


def test_recommend_same_for_threads_batches_and_reference(fitted):
    model, _ = fitted
    base = model.recommend(n=7)
    for batch_size in (1, 13):  # several blocks, so n_jobs=2 really runs two threads
        frames = []
        for n_jobs in (1, 2):
            m = copy.copy(model)
            m.n_jobs = n_jobs
            frames.append(m.recommend(n=7, batch_size=batch_size))
        pd.testing.assert_frame_equal(frames[0], frames[1])  # bit-identical for any thread count
        # other blocks: the same lists, scores equal up to the rounding of the BLAS product
        pd.testing.assert_frame_equal(frames[0][["user", "item", "rank"]], base[["user", "item", "rank"]])
        np.testing.assert_allclose(frames[0]["score"], base["score"], rtol=1e-12)
    sliced = list(model.items_[::3])
    for kwargs in ({}, {"items": sliced}, {"exclude": sliced}):
        pd.testing.assert_frame_equal(_with_reference(lambda: model.recommend(n=7, **kwargs)),
                                      model.recommend(n=7, **kwargs))


def test_recommend_thread_count_invariant_float32_k64():
    rng = np.random.default_rng(9)
    u, i = rng.integers(0, 300, 20000), rng.integers(0, 500, 20000)
    ratings = pd.DataFrame({"user": u, "item": i, "rating": rng.integers(1, 6, len(u)).astype(float)})
    ratings = ratings.drop_duplicates(["user", "item"])
    model = RegularizedALS(factors=64, iterations=2, dtype="float32", random_state=0, n_jobs=1).fit(ratings)
    one = model.recommend(n=10, batch_size=37)
    model.n_jobs = 2
    pd.testing.assert_frame_equal(model.recommend(n=10, batch_size=37), one)
    pd.testing.assert_frame_equal(model.similar_items(n=5, batch_size=37),
                                  copy.copy(model).set_params(n_jobs=1).similar_items(n=5, batch_size=37))


def _with_reference(fn):
    with socialals.config_context(compiled=False):
        return fn()


def test_float32_model_scores_in_float32():
    ratings, _, _ = planted_ratings(n_users=40, n_items=30, seed=5)
    m = RegularizedALS(factors=3, iterations=3, dtype="float32", random_state=0).fit(ratings)
    assert m.user_factors_.dtype == np.float32
    rec = m.recommend(m.users_[:5], n=4)
    u = m.users_.get_indexer(rec["user"])
    i = m.items_.get_indexer(rec["item"])
    full = m.user_factors_[m.users_.get_indexer(m.users_[:5])] @ m.item_factors_.T  # float32 product
    want = full[np.repeat(np.arange(5), 4), i].astype(np.float64)
    np.testing.assert_array_equal(rec["score"].to_numpy(), want)
    assert rec["score"].dtype == np.float64 and u.min() >= 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"batch_size": -1}, r"'batch_size' parameter of recommend must be an int >= 1; got -1"),
        ({"batch_size": 0}, r"'batch_size' parameter of recommend must be an int >= 1; got 0"),
        ({"batch_size": 2.5}, r"'batch_size'"),
        ({"batch_size": True}, r"'batch_size'"),
        ({"exclude_seen": "no"}, r"'exclude_seen' parameter of recommend must be a bool; got 'no'"),
        ({"exclude_seen": 0}, r"'exclude_seen'"),
        ({"n": 0}, r"'n' parameter of recommend must be an int >= 1; got 0"),
    ],
)
def test_recommend_bad_arguments_named(fitted, kwargs, match):
    model, _ = fitted
    with pytest.raises(ValueError, match=match):
        model.recommend(model.users_[:2], **kwargs)


# ---------------------------------------------------------------------------- similar_*
def _brute_cosine(V, q, n):
    V = np.asarray(V, dtype=np.float64)
    norms = np.linalg.norm(V, axis=1)
    cos = (V @ V.T) / np.outer(np.where(norms > 0, norms, 1), np.where(norms > 0, norms, 1))
    out = []
    for a in q:
        others = np.array([j for j in range(len(V)) if j != a])
        order = np.lexsort((others, -cos[a, others]))[:n]
        out.append((others[order], cos[a, others[order]]))
    return out


@pytest.mark.parametrize(
    "model",
    [
        RegularizedALS(factors=4, reg=0.1, iterations=4, random_state=0),
        SocialALS(factors=4, reg=0.1, alpha=0.5, biases=True, iterations=4, random_state=0),
        FactorizationMachine(factors=4, iterations=4, random_state=0),
    ],
    ids=lambda m: type(m).__name__,
)
def test_similar_against_brute_force_cosine(model):
    ratings, _, _ = planted_ratings(n_users=40, n_items=25, seed=6)
    social = random_social(40, 80, seed=2)
    model = socialals.clone(model).fit(ratings, social)
    for side, vocab, vectors, method in (
        ("item", model.items_, model._item_vectors(), model.similar_items),
        ("user", model.users_, model._user_vectors(), model.similar_users),
    ):
        q = [3, 0, 7]
        got = method(list(vocab[q]), n=5)
        assert list(got.columns) == [side, f"similar_{side}", "rank", "score"]
        for a, (idx, cos) in zip(q, _brute_cosine(vectors, q, 5)):
            part = got[got[side] == vocab[a]]
            assert part[f"similar_{side}"].tolist() == list(vocab[idx])
            assert part["rank"].tolist() == [1, 2, 3, 4, 5]
            np.testing.assert_allclose(part["score"], cos, rtol=1e-10, atol=1e-12)
            assert vocab[a] not in set(part[f"similar_{side}"])
    # every item by default, n capped by the others
    everything = model.similar_items(n=100)
    assert len(everything) == len(model.items_) * (len(model.items_) - 1)


def test_similar_unknown_label_and_zero_vector():
    ratings, _, _ = planted_ratings(n_users=30, n_items=20, seed=7)
    model = RegularizedALS(factors=3, iterations=3, random_state=0).fit(ratings)
    with pytest.raises(KeyError, match="nope"):
        model.similar_items([1, "nope"])
    with pytest.raises(KeyError, match="ghost"):
        model.similar_users("ghost")
    with pytest.raises(ValueError, match="'n' parameter of similar_items"):
        model.similar_items([1], n=0)
    model.item_factors_ = model.item_factors_.copy()
    model.item_factors_[4] = 0.0  # a zero vector: similarity 0 to everything, never NaN
    sims = model.similar_items([4], n=19)
    assert (sims["score"] == 0).all() and sims["similar_item"].tolist() == [j for j in range(20) if j != 4]
    others = model.similar_items([0], n=19)
    assert others.loc[others["similar_item"] == 4, "score"].item() == 0.0


# ---------------------------------------------------------------------------- README
def test_readme_serving_snippet(tmp_path, monkeypatch):
    """The README's Serving section runs as written and says what it claims."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = text.split("## Serving", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)
    env = {}
    exec(compile(blocks[0], "README.md#serving", "exec"), env)
    model, same = env["model"], env["same"]
    np.testing.assert_array_equal(model.user_factors_, same.user_factors_)
    sliced = model.recommend([0, 42], n=5, items=range(100))
    assert set(sliced["item"]) <= set(range(100)) and len(sliced) == 10


def test_popularity_baseline_filters_and_no_similar():
    from socialals import Popularity

    ratings = pd.DataFrame({"user": [1, 1, 2, 3, 3, 4], "item": ["a", "b", "a", "c", "a", "b"],
                            "rating": [4.0, 2.0, 5.0, 3.0, 1.0, 2.0]})
    m = Popularity().fit(ratings)
    assert m.recommend(2, n=3)["item"].tolist() == ["b", "c"]  # counts 2, 1; "a" seen
    assert m.recommend(2, n=3, exclude=["b"])["item"].tolist() == ["c"]
    assert m.recommend(2, n=3, items=["c", "a"], exclude_seen=False)["item"].tolist() == ["a", "c"]
    with pytest.raises(NotImplementedError, match="Popularity has no latent factors; similar_items"):
        m.similar_items("a")
