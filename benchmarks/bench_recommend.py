"""Seconds to recommend the top 10 items to every user: socialals against implicit and
against socialals' previous ``recommend``.

Data sets:

* ``ml1m``: synthetic, shaped like MovieLens-1M (6,040 users x 3,706 items, 1,000,209
  ratings; built by ``bench_als.ml1m_like``), a float32 ``RegularizedALS`` with k = 64.
  Contenders on the same factors and the same seen items:

  - ``socialals``: ``model.recommend(users=None, n=10)`` (seen items excluded);
  - ``implicit``: implicit's ``AlternatingLeastSquares.recommend`` with
    ``filter_already_liked_items=True`` over all user ids at once, once with the BLAS
    threads as they are (implicit warns about this) and once with BLAS pinned to one
    thread (what implicit recommends); the faster of the two is the reference;
  - the same two with a candidate filter of a random 10 % of the catalogue
    (``recommend(items=...)``, implicit's ``items=``), and socialals with a 10 %
    ``exclude=`` list.

* ``ciao``: the real Ciao ratings from ``../shared/datasets/ciao`` (7,375 users x
  105,114 items; synthetic with the same shape when the folder is absent), a
  ``RegularizedALS`` with k = 10 in float64 (the default) and float32, against the
  previous ``recommend`` (float64 scores, ``np.argpartition`` of every row, copied below
  as ``old_recommend``).

Every contender runs once to warm up (numba compilation, caches), then the timed runs are
interleaved (A, B, C, A, B, C, ...), so a slow spell of the shared machine hits all alike;
best and median of ``--repeats`` are printed and the ratios are of medians. The script
also checks that the contenders return the same lists.

Usage::

    python benchmarks/bench_recommend.py                 # both data sets
    python benchmarks/bench_recommend.py --data ml1m --repeats 7
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_als import ml1m_like  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from socialals import RegularizedALS, load_ciao  # noqa: E402


def old_recommend(model, users=None, n=10, batch_size=1024):
    """socialals' recommend before the compiled top-n (float64 scores, argpartition)."""
    uidx = np.arange(len(model.users_)) if users is None else model.users_.get_indexer(users)
    n_items = len(model.items_)
    n_eff = min(int(n), n_items)
    seen = model._seen
    all_u, all_i, all_s, all_r = [], [], [], []
    for s in range(0, len(uidx), batch_size):
        ub = uidx[s : s + batch_size]
        scores = np.asarray(model._score_users(ub), dtype=np.float64)
        block = seen[ub]
        rows = np.repeat(np.arange(len(ub)), np.diff(block.indptr))
        scores[rows, block.indices] = -np.inf
        top = np.argpartition(-scores, n_eff - 1, axis=1)[:, :n_eff]
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.lexsort((top, -top_scores), axis=-1)
        top = np.take_along_axis(top, order, axis=1)
        top_scores = np.take_along_axis(top_scores, order, axis=1)
        valid = np.isfinite(top_scores)
        rank = np.broadcast_to(np.arange(1, n_eff + 1), top.shape)
        all_u.append(np.repeat(ub, valid.sum(axis=1)))
        all_i.append(top[valid])
        all_s.append(top_scores[valid])
        all_r.append(rank[valid])
    return pd.DataFrame({"user": model.users_[np.concatenate(all_u)], "item": model.items_[np.concatenate(all_i)],
                         "rank": np.concatenate(all_r), "score": np.concatenate(all_s)})


def ciao_like(seed=0):
    """Ciao's shape when the real files are absent: 7,375 users, 105,114 items, ~282 k ratings
    (long-tailed item popularity, most items rated once or twice)."""
    rng = np.random.default_rng(seed)
    n_users, n_items, nnz = 7375, 105114, 282_000
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.6
    u = rng.integers(0, n_users, nnz)
    i = rng.permutation(n_items)[rng.choice(n_items, nnz, p=pop / pop.sum())]
    r = rng.integers(1, 6, nnz).astype(float)
    return pd.DataFrame({"user": u, "item": i, "rating": r}).drop_duplicates(["user", "item"])


def interleave(contenders, repeats):
    """contenders: dict name -> callable. Returns dict name -> list of seconds."""
    times = {name: [] for name in contenders}
    for fn in contenders.values():  # warm-up
        fn()
    for _ in range(repeats):
        for name, fn in contenders.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return times


def report(data_name, times, reference, rows):
    ref = float(np.median(times[reference]))
    for name, ts in times.items():
        med = float(np.median(ts))
        rows.append(dict(data=data_name, contender=name, best_s=min(ts), median_s=med, ratio=med / ref))
        print(f"  {data_name:<5} {name:<46} best {min(ts):7.3f} s  median {med:7.3f} s  "
              f"{med / ref:5.2f} x {reference}", flush=True)


def same_lists(a_items, b_items):
    """Fraction of users whose top-n item lists agree exactly."""
    return float(np.mean([np.array_equal(x, y) for x, y in zip(a_items, b_items)]))


def bench_ml1m(repeats, rows):
    ratings, _ = ml1m_like()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = RegularizedALS(factors=64, reg=0.1, iterations=2, dtype="float32", random_state=0).fit(ratings)
    rng = np.random.default_rng(1)
    n_items = len(model.items_)
    slice10 = np.sort(rng.choice(n_items, n_items // 10, replace=False))
    slice_labels = model.items_[slice10]
    contenders = {
        "socialals recommend": lambda: model.recommend(n=10),
        "socialals recommend(items=10% slice)": lambda: model.recommend(n=10, items=slice_labels),
        "socialals recommend(exclude=10% slice)": lambda: model.recommend(n=10, exclude=slice_labels),
    }
    print(f"ml1m: {len(ratings):,} ratings, {len(model.users_):,} users x {n_items:,} items, k = 64, float32, "
          f"{os.cpu_count()} cores")
    ours = model.recommend(n=10)
    try:
        from implicit.cpu.als import AlternatingLeastSquares
    except ImportError as exc:  # benchmark-only peer
        print(f"  implicit not installed ({exc}); pip install implicit to compare")
        AlternatingLeastSquares = None
    if AlternatingLeastSquares is not None:
        import implicit

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            peer = AlternatingLeastSquares(factors=64)
        peer.user_factors = np.ascontiguousarray(model.user_factors_, dtype=np.float32)
        peer.item_factors = np.ascontiguousarray(model.item_factors_, dtype=np.float32)
        user_items = sp.csr_matrix(model._seen, dtype=np.float32)
        ids = np.arange(len(model.users_))

        def implicit_rec(items=None, blas1=False):
            def go():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    return peer.recommend(ids, user_items, N=10, filter_already_liked_items=True, items=items)
            if blas1:
                with threadpool_limits(limits=1, user_api="blas"):
                    return go()
            return go()

        contenders["implicit recommend (BLAS threads as they are)"] = lambda: implicit_rec()
        contenders["implicit recommend (BLAS 1 thread)"] = lambda: implicit_rec(blas1=True)
        contenders["implicit recommend(items=10% slice, BLAS 1)"] = lambda: implicit_rec(slice10, True)
        theirs, _ = implicit_rec(blas1=True)
        ours_items = ours["item"].to_numpy().reshape(-1, 10)
        agree = same_lists(model.items_.get_indexer(ours_items.ravel()).reshape(-1, 10), theirs)
        print(f"  implicit {implicit.__version__}: identical top-10 lists for {100 * agree:.2f} % of users"
              + ("" if agree == 1 else " (the rest: float32 near-ties, summed in another order)"))
        sliced = model.recommend(n=10, items=slice_labels)["item"].to_numpy().reshape(-1, 10)
        agree = same_lists(model.items_.get_indexer(sliced.ravel()).reshape(-1, 10), implicit_rec(slice10, True)[0])
        print(f"  with the 10 % candidate slice: identical for {100 * agree:.2f} % of users")
    times = interleave(contenders, repeats)
    if AlternatingLeastSquares is not None:
        ref = min(("implicit recommend (BLAS threads as they are)", "implicit recommend (BLAS 1 thread)"),
                  key=lambda k: np.median(times[k]))
    else:
        ref = "socialals recommend"
    report("ml1m", times, ref, rows)


def bench_ciao(repeats, rows, shared):
    p = Path(shared) / "ciao"
    if p.is_dir():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ratings, _ = load_ciao(path=p)
        source = "real Ciao"
    else:
        ratings = ciao_like()
        source = f"synthetic ({p} not found)"
    for dtype in ("float64", "float32"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = RegularizedALS(factors=10, reg=0.1, iterations=2, dtype=dtype, random_state=0).fit(ratings)
        print(f"ciao ({source}): {len(ratings):,} ratings, {len(model.users_):,} users x {len(model.items_):,} "
              f"items, k = 10, {dtype}")
        new, old = model.recommend(n=10), old_recommend(model, n=10)
        agree = same_lists(new["item"].to_numpy().reshape(-1, 10), old["item"].to_numpy().reshape(-1, 10))
        print(f"  identical top-10 lists for {100 * agree:.2f} % of users")
        times = interleave({"old recommend": lambda: old_recommend(model, n=10),
                            "new recommend": lambda: model.recommend(n=10)}, repeats)
        report("ciao", {f"{k} ({dtype})": v for k, v in times.items()}, f"old recommend ({dtype})", rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", default=["ml1m", "ciao"], choices=["ml1m", "ciao"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "datasets"),
                    help="folder holding ciao/ (default: ../shared/datasets next to the repository)")
    args = ap.parse_args(argv)
    print(f"socialals recommend benchmark — {os.cpu_count()} cores, numpy {np.__version__}")
    rows = []
    if "ml1m" in args.data:
        bench_ml1m(args.repeats, rows)
    if "ciao" in args.data:
        bench_ciao(args.repeats, rows, args.shared)
    print()
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda x: f"{x:.3f}"))


if __name__ == "__main__":
    main()
