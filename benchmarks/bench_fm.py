"""Seconds per SGD epoch / ALS iteration and hold-out RMSE of FactorizationMachine.

Problem: synthetic, shaped like MovieLens-1M — 6,040 users, 3,706 items, 1,000,209
ratings, every user >= 20 ratings, log-normal user activity and Zipf-like item
popularity — with planted ratings ``clip(round(3.6 + b_u + c_i + u·v + noise), 1, 5)``
(rank 8, noise sd 0.8). Design matrix: one-hot user + one-hot item (binary CSR, the
input fastFM's ``fit(X, y)`` takes). 10% of the ratings are held out.

Usage::

    python benchmarks/bench_fm.py                 # k = 16 and 64, float64 and float32
    python benchmarks/bench_fm.py --k 64 --dtype float32
    python benchmarks/bench_fm.py --quick         # a 10x smaller problem

Seconds per epoch/iteration = ``fit_seconds_ / n_iter_`` (the loop only: design-matrix
checks, group detection and the initial objective are excluded; they are reported
separately as "setup"). One warm-up fit precedes the timed ones. Hyperparameters are the
model's defaults (``reg=0.05`` per occurrence, ``learning_rate=0.03``) except the SGD
batch size, a speed knob: 4096 rows for k <= 32, 2048 above (``--batch-size`` overrides).

Reference (given to us, measured with fastFM 0.2.10's C core on this kind of machine,
same problem shape, one-hot user + item): SGD 0.26 s / epoch at k = 16 and 1.14 s at
k = 64; ALS 0.62 s / iteration at k = 16 and 2.1 s at k = 64. The machine's 1-minute load
average is printed because the numbers are wall-clock times on a shared 2-core box.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from socialals.fm import FactorizationMachine  # noqa: E402


def movielens_shaped(n_users=6040, n_items=3706, nnz=1_000_209, rank=8, noise=0.8, seed=0):
    """(user, item, rating) arrays of a planted problem with MovieLens-1M's shape."""
    rng = np.random.default_rng(seed)
    activity = np.exp(rng.normal(0.0, 1.0, n_users))
    counts = 20 + np.floor(activity / activity.sum() * (nnz - 20 * n_users)).astype(np.int64)
    counts = np.minimum(counts, n_items)
    deficit = nnz - int(counts.sum())
    for u in np.argsort(-counts):  # hand out the rounding remainder to the busiest users
        if deficit <= 0:
            break
        extra = min(deficit, n_items - int(counts[u]))
        counts[u] += extra
        deficit -= extra
    popularity = rng.permutation(1.0 / np.arange(1, n_items + 1) ** 0.85)
    log_pop = np.log(popularity)
    users, items = [], []
    for u in range(n_users):
        # Gumbel top-k: a popularity-weighted sample without replacement
        key = log_pop + rng.gumbel(size=n_items)
        chosen = np.argpartition(-key, counts[u] - 1)[: counts[u]]
        users.append(np.full(counts[u], u, dtype=np.int64))
        items.append(chosen.astype(np.int64))
    u = np.concatenate(users)
    i = np.concatenate(items)
    P = rng.normal(0.0, 1.0 / np.sqrt(rank), (n_users, rank))
    Q = rng.normal(0.0, 1.0, (n_items, rank))
    bu = rng.normal(0.0, 0.3, n_users)
    bi = rng.normal(0.0, 0.4, n_items)
    clean = 3.6 + bu[u] + bi[i] + np.einsum("ij,ij->i", P[u], Q[i])
    r = np.clip(np.round(clean + noise * rng.standard_normal(len(u))), 1, 5)
    return u, i, r, clean, n_users, n_items


def one_hot(u, i, n_users, n_items):
    n = len(u)
    idx = np.column_stack([u, n_users + i]).ravel()
    return sp.csr_matrix((np.ones(2 * n), idx, np.arange(0, 2 * n + 1, 2)), shape=(n, n_users + n_items))


def rmse(a, b):
    return float(np.sqrt(np.mean((a - b) ** 2)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a 10x smaller problem")
    ap.add_argument("--k", type=int, nargs="*", default=[16, 64], help="factor counts")
    ap.add_argument("--dtype", nargs="*", default=["float64", "float32"])
    ap.add_argument("--solver", nargs="*", default=["sgd", "als"])
    ap.add_argument("--sgd-epochs", type=int, default=20)
    ap.add_argument("--als-iterations", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=None, help="SGD batch size (default: 4096 for k <= 32, else 2048)")
    ap.add_argument("--learning-rate", type=float, default=None, help="SGD learning rate (default: the model's)")
    ap.add_argument("--reg", type=float, default=None, help="λ (default: the model's)")
    ap.add_argument(
        "--reg-scaling", choices=["frequency", "none"], default=None,
        help="penalty weights (default: the model's, 'frequency'); 'none' is libFM/fastFM ALS's objective",
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    if args.quick:
        u, i, r, clean, nu, ni = movielens_shaped(n_users=1500, n_items=900, nnz=100_000, seed=args.seed)
    else:
        u, i, r, clean, nu, ni = movielens_shaped(seed=args.seed)
    rng = np.random.default_rng(args.seed + 1)
    test = rng.random(len(r)) < 0.1
    Xtr, ytr = one_hot(u[~test], i[~test], nu, ni), r[~test]
    Xte, yte = one_hot(u[test], i[test], nu, ni), r[test]
    print(f"data: {nu} users, {ni} items, {len(r):,} ratings ({int((~test).sum()):,} train, {int(test.sum()):,} test)")
    print(
        f"test RMSE of the training mean {rmse(ytr.mean(), yte):.4f}; noise floor (the planted "
        f"ratings before noise and rounding) {rmse(np.clip(clean[test], 1, 5), yte):.4f}"
    )

    extra = {}
    if args.learning_rate is not None:
        extra["learning_rate"] = args.learning_rate
    if args.reg is not None:
        extra["reg"] = args.reg
    if args.reg_scaling is not None:
        extra["reg_scaling"] = args.reg_scaling

    rows = []
    for solver in args.solver:
        iters = args.sgd_epochs if solver == "sgd" else args.als_iterations
        for k in args.k:
            for dtype in args.dtype:
                params = dict(factors=k, solver=solver, iterations=iters, dtype=dtype, random_state=0, **extra)
                if solver == "sgd":
                    params["batch_size"] = args.batch_size or (4096 if k <= 32 else 2048)
                FactorizationMachine(**{**params, "iterations": 1}).fit_matrix(Xtr[:50_000], ytr[:50_000])  # warm-up
                t0 = time.perf_counter()
                m = FactorizationMachine(**params).fit_matrix(Xtr, ytr)
                total = time.perf_counter() - t0
                per = m.fit_seconds_ / m.n_iter_
                err = rmse(m.predict_matrix(Xte), yte)
                rows.append((solver, k, dtype, m.n_iter_, per, total - m.fit_seconds_, err))
                print(
                    f"  {solver:<4} k={k:<3} {dtype:<8} {m.n_iter_:>3} it  {per:7.3f} s/it  "
                    f"setup {total - m.fit_seconds_:6.2f} s  test RMSE {err:.4f}",
                    flush=True,
                )

    fastfm = {("sgd", 16): 0.26, ("sgd", 64): 1.14, ("als", 16): 0.62, ("als", 64): 2.1}
    print()
    print(f"1-minute load average at the end: {os.getloadavg()[0]:.2f} (2 cores)")
    print("| solver | k | dtype | iterations | s / epoch or iteration | fastFM ref. | ratio | setup s | test RMSE |")
    print("|---|---|---|---|---|---|---|---|---|")
    for solver, k, dtype, it, per, setup, err in rows:
        ref = None if args.quick else fastfm.get((solver, k))  # the reference is for the full problem
        ratio = f"{per / ref:.2f}" if ref else "-"
        print(f"| {solver} | {k} | {dtype} | {it} | {per:.3f} | {ref if ref else '-'} | {ratio} | {setup:.2f} | {err:.4f} |")


if __name__ == "__main__":
    main()
