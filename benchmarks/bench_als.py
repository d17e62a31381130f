"""Seconds per iteration and peak memory of the three ALS classes.

Data sets:
* ``ml1m``: synthetic, shaped like MovieLens-1M (6,040 users, 3,706 items, 1,000,209
  ratings; every user >= 20 ratings, long-tailed user activity and item popularity),
  planted low-rank ratings in 1..5 and a random social graph (~10 links per user) for
  SocialALS.
* ``ciao``: the real Ciao ratings and trust graph from ``../shared/datasets/ciao``
  (7,375 users, 105,114 items, most items with one or two ratings).

Usage::

    python benchmarks/bench_als.py                       # everything
    python benchmarks/bench_als.py --data ml1m --k 64 --jobs 2
    python benchmarks/bench_als.py --dtype float32

Seconds per iteration = wall time of ``fit`` sweeps / iterations (after one warm-up fit),
the best and the median of ``--repeats`` fits (a shared VM's timings wander by 20 % or more
between runs; the best is the least disturbed), the three classes' fits interleaved; peak memory = tracemalloc's peak of
numpy/Python allocations during one sweep.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from socialals import ALS, RegularizedALS, SocialALS, load_ciao  # noqa: E402


def ml1m_like(seed: int = 0):
    rng = np.random.default_rng(seed)
    n_users, n_items, nnz, k = 6040, 3706, 1_000_209, 8
    act = np.exp(rng.normal(0, 1.1, n_users))
    counts = 20 + np.floor(act / act.sum() * (nnz - 20 * n_users)).astype(int)
    counts = np.minimum(counts, n_items)
    short = nnz - counts.sum()
    order = np.argsort(-counts)
    i = 0
    while short > 0:  # top up the busiest users until the total is exact
        u = order[i % n_users]
        if counts[u] < n_items:
            counts[u] += 1
            short -= 1
        i += 1
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.9
    pop = pop[rng.permutation(n_items)]
    logp = np.log(pop)
    users, items = [], []
    for u in range(n_users):
        g = logp - np.log(-np.log(rng.random(n_items)))  # Gumbel top-k = weighted sample w/o replacement
        chosen = np.argpartition(-g, counts[u] - 1)[: counts[u]]
        users.append(np.full(counts[u], u))
        items.append(chosen)
    u = np.concatenate(users)
    i = np.concatenate(items)
    U = rng.normal(size=(n_users, k)) / np.sqrt(k)
    V = rng.normal(size=(n_items, k))
    r = np.clip(np.round(3.6 + (U[u] * V[i]).sum(1) + 0.9 * rng.normal(size=len(u))), 1, 5)
    ratings = pd.DataFrame({"user": u, "item": i, "rating": r})
    a = rng.integers(0, n_users, 10 * n_users)
    b = rng.integers(0, n_users, 10 * n_users)
    social = pd.DataFrame({"user": a, "friend": b})
    social = social[a != b].drop_duplicates()
    return ratings, social


def make_model(name: str, k: int, jobs: int, dtype: str, iterations: int):
    common = dict(factors=k, iterations=iterations, n_jobs=jobs, random_state=0, dtype=dtype)
    if name == "ALS":
        return ALS(**common)
    if name == "RegularizedALS":
        return RegularizedALS(reg=0.1, **common)
    return SocialALS(reg=0.1, alpha=0.1, **common)


def run(data_name, ratings, social, ks, jobs_list, dtype, iterations, memory, repeats):
    """Time the three classes; their timed fits are interleaved (ALS, Reg, Social, ALS, ...),
    so a slow spell of a shared machine hits all three alike and the ratios stay fair."""
    names = ("ALS", "RegularizedALS", "SocialALS")
    rows = []
    for k in ks:
        for jobs in jobs_list:
            times = {name: [] for name in names}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for name in names:  # warm-up (and numba compilation)
                    make_model(name, k, jobs, dtype, 1).fit(ratings, social if name == "SocialALS" else None)
                for _ in range(repeats):
                    for name in names:
                        m = make_model(name, k, jobs, dtype, iterations).fit(
                            ratings, social if name == "SocialALS" else None
                        )
                        times[name].append(m.fit_seconds_ / m.n_iter_)
                for name in names:
                    per_iter, median = min(times[name]), float(np.median(times[name]))
                    peak = float("nan")
                    if memory:
                        tracemalloc.start()
                        make_model(name, k, jobs, dtype, 1).fit(ratings, social if name == "SocialALS" else None)
                        peak = tracemalloc.get_traced_memory()[1] / 2**20
                        tracemalloc.stop()
                    rows.append(
                        dict(data=data_name, model=name, k=k, n_jobs=jobs, dtype=dtype, s_per_iter=per_iter,
                             median_s_per_iter=median, peak_MiB=peak)
                    )
                    print(f"  {data_name:<5} {name:<15} k={k:<3} jobs={jobs} {per_iter:7.3f} s/iter "
                          f"(median {median:.3f})  peak {peak:7.1f} MiB", flush=True)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", default=["ml1m", "ciao"], choices=["ml1m", "ciao"])
    ap.add_argument("--k", nargs="+", type=int, default=[16, 64])
    ap.add_argument("--jobs", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3, help="timed fits per setting (best and median reported)")
    ap.add_argument("--no-memory", action="store_true", help="skip the tracemalloc run")
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "datasets"))
    args = ap.parse_args(argv)

    print(f"socialals ALS benchmark — {os.cpu_count()} cores, numpy {np.__version__}")
    rows = []
    for d in args.data:
        t0 = time.perf_counter()
        if d == "ml1m":
            ratings, social = ml1m_like()
        else:
            p = Path(args.shared) / "ciao"
            if not p.is_dir():
                print(f"  ciao: {p} not found, skipped")
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the loader's repair counts are documented in datasets/README.md
                ratings, social = load_ciao(path=p)
        print(f"{d}: {len(ratings):,} ratings, {ratings['user'].nunique():,} users, "
              f"{ratings['item'].nunique():,} items, {len(social):,} links (built in {time.perf_counter() - t0:.1f} s)")
        rows += run(d, ratings, social, args.k, args.jobs, args.dtype, args.iterations, not args.no_memory, args.repeats)
    table = pd.DataFrame(rows)
    if len(table):
        print()
        print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
        soc = table.pivot_table(index=["data", "k", "n_jobs"], columns="model", values="s_per_iter")
        soc["social/regularized"] = soc["SocialALS"] / soc["RegularizedALS"]
        med = table.pivot_table(index=["data", "k", "n_jobs"], columns="model", values="median_s_per_iter")
        soc["ratio of medians"] = med["SocialALS"] / med["RegularizedALS"]
        print()
        print(soc.to_string(float_format=lambda x: f"{x:.3f}"))


if __name__ == "__main__":
    main()
