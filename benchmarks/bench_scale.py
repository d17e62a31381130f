"""SocialALS from 0.1 M to 10 M synthetic ratings: local threads, and a 2-worker Dask cluster.

Data: MovieLens-like synthetic sets (:func:`synthetic`): ``ratings / 165`` users with
log-normal activity (at least 20 ratings each, as in MovieLens), ``3706 * sqrt(ratings /
1 M)`` items with Zipf(0.9) popularity (1 M ratings is ML-1M's shape, 10 M close to
ML-10M's), ratings 1-5 from a rank-8 model plus noise; a social graph of ``5 x users``
random directed links (about 10 links per user once symmetrised).

Each measurement runs in a fresh process: it warms the kernels up on a tiny fit, reads the
data, resets the peak-RSS mark (``/proc/self/clear_refs``), fits, and reads ``VmHWM`` from
``/proc/self/status``:

* ``local``: ``SocialALS(factors=k, n_jobs=2)``, seconds per iteration and peak RSS next to
  the ratings' bytes (user, item, rating: 24 bytes a rating, the caller's int64/int64/float64
  frame) and the factors' bytes. The parent process writes each size's frames to .npy
  files once; the measured process reads them (as a user reads data from files), so the
  generator's own garbage is never in its RSS. RSS is read after ``gc.collect()`` and
  glibc's ``malloc_trim`` at two points: ``baseline`` after the warm-up fit, before the
  frames are read, and ``before_fit`` once they are. Ratios to (ratings + factors) bytes:

  - ``(peak - baseline)``: the caller's frames (the ratings frame *is* 1x the ratings'
    bytes) and the fit: the number the 2x target is read on;
  - ``leftovers``: ``before_fit - baseline - frames``, what reading the frames left
    besides them (about 0);
  - ``fit adds``: ``peak - before_fit``, the memory the fit itself takes.

  A fit keeps the ratings both ways with 32-bit indices and, since these ratings are whole
  stars, float32 values (8 bytes a rating each way: 0.67x the ratings' bytes; 12 bytes
  each way, 1x, for ratings float32 cannot hold exactly);
* ``cluster``: the same fit inside ``joblib.parallel_config(backend="dask")`` on
  ``LocalCluster(n_workers=2, threads_per_worker=1)``, beside a local fit of the same data
  in the same process; bytes shipped per iteration as Dask's scheduler reports them
  (``nbytes`` of the scattered blocks, the broadcast factors times their replicas, the
  social pull and the returned rows), set against the expected broadcast
  ``(users + items) x k x 8`` bytes per worker;
* ``frame``: the same data written to Parquet and fitted from ``dask.dataframe.read_parquet``
  on the same cluster (no pandas frame in the client process): seconds to build the
  blocks on the workers, seconds per iteration, the client's peak RSS during the fit, and
  whether the factors equal the local fit's (from the same Parquet files, read with pandas,
  after the measured fit).

Usage::

    python benchmarks/bench_scale.py                      # 0.1 M, 1 M, 10 M local; 10 M on the cluster
    python benchmarks/bench_scale.py --sizes 0.1 1 --cluster-size 1 --k 16 --iterations 3
    python benchmarks/bench_scale.py --sizes --cluster-size 0 --frame-size 1   # the Dask-frame row only
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def _sorted_unique(a):
    a = np.sort(a)
    return a[np.concatenate([[True], a[1:] != a[:-1]])] if len(a) else a


def synthetic(n_ratings: int, seed: int = 0):
    """A MovieLens-like ratings frame (about ``n_ratings`` rows after removing repeated
    pairs) and a social frame of ``5 x users`` directed links."""
    rng = np.random.default_rng(seed)
    n_users = max(20, int(round(n_ratings / 165)))
    n_items = max(50, int(round(3706 * np.sqrt(n_ratings / 1e6))))
    act = np.exp(rng.normal(0, 1.1, n_users))
    counts = 20 + np.floor(act / act.sum() * max(0, n_ratings - 20 * n_users)).astype(np.int64)
    counts = np.minimum(counts, n_items // 2)
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.9
    pop = pop[rng.permutation(n_items)]
    logp = np.log(pop)
    heavy = np.flatnonzero(counts > n_items // 20)
    parts = []
    for u in heavy:  # Gumbel top-k: a popularity-weighted sample without repeats
        g = logp - np.log(-np.log(rng.random(n_items)))
        parts.append(u * n_items + np.argpartition(-g, counts[u] - 1)[: counts[u]])
    key = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    short = counts.copy()
    short[heavy] = 0
    target = short.copy()
    for _ in range(10):  # the others: draw by popularity, drop repeated pairs, draw the shortfall again
        users = np.repeat(np.arange(n_users, dtype=np.int64), short)
        items = rng.choice(n_items, size=len(users), p=pop / pop.sum())
        key = _sorted_unique(np.concatenate([key, users * n_items + items]))
        have = np.bincount(key // n_items, minlength=n_users)
        short = np.where(target > 0, np.maximum(target - have, 0), 0)
        if short.sum() <= 0.001 * counts.sum():
            break
    users, items = key // n_items, key % n_items
    U = rng.normal(size=(n_users, 8)) / np.sqrt(8)
    V = rng.normal(size=(n_items, 8))
    r = np.clip(np.round(3.6 + np.einsum("ij,ij->i", U[users], V[items]) + 0.9 * rng.normal(size=len(users))), 1, 5)
    ratings = pd.DataFrame({"user": users, "item": items, "rating": r})
    a = rng.integers(0, n_users, 5 * n_users)
    b = rng.integers(0, n_users, 5 * n_users)
    social = pd.DataFrame({"user": a, "friend": b})[a != b].drop_duplicates().reset_index(drop=True)
    return ratings, social


def _frames_folder(n_ratings: int) -> Path:
    import hashlib
    import inspect
    import tempfile

    version = hashlib.sha256(inspect.getsource(synthetic).encode()).hexdigest()[:12]  # a changed generator: new files
    return Path(tempfile.gettempdir(), f"socialals_bench_scale_{n_ratings}_{version}")


def _write_frames(n_ratings: int) -> None:
    """The synthetic set as one .npy file a column, made once per size by the parent
    process, so that each measured process reads its frames as a user reads data from
    files, without the generator's own leftovers."""
    folder = _frames_folder(n_ratings)
    if (folder / "done").exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    ratings, social = synthetic(n_ratings)
    for frame, name in ((ratings, "ratings"), (social, "social")):
        for col in frame.columns:
            np.save(folder / f"{name}.{col}.npy", frame[col].to_numpy())
    (folder / "done").write_text("")


def _read_frames(n_ratings: int):
    folder = _frames_folder(n_ratings)
    if not (folder / "done").exists():
        _write_frames(n_ratings)
    read = lambda name, cols: pd.DataFrame({c: np.load(folder / f"{name}.{c}.npy") for c in cols}, copy=False)
    return read("ratings", ["user", "item", "rating"]), read("social", ["user", "friend"])


def _peak_reset() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _release_freed() -> None:
    """Hand freed heap memory back to the system (glibc only) so RSS counts live data."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def one(kind: str, n_ratings: int, k: int, iterations: int) -> dict:
    sys.path.insert(0, str(ROOT))
    import warnings

    import joblib

    from socialals import SocialALS

    warnings.simplefilter("ignore")
    make = lambda it: SocialALS(factors=k, reg=0.1, alpha=0.1, iterations=it, n_jobs=2, random_state=0)
    tiny_r, tiny_s = synthetic(20_000, seed=1)
    make(1).fit(tiny_r, tiny_s)  # compile
    _release_freed()
    base_mb = _rss_mb()
    ratings, social = _read_frames(n_ratings)
    n_users = int(max(ratings.user.max(), social.values.max()) + 1)
    n_items = int(ratings.item.nunique())
    out = {"kind": kind, "ratings": len(ratings), "users": n_users, "items": n_items, "links": len(social), "k": k,
           "ratings_MB": len(ratings) * 24 / 2**20, "factors_MB": (n_users + n_items) * k * 8 / 2**20,
           "frames_MB": (ratings.memory_usage(index=False).sum() + social.memory_usage(index=False).sum()) / 2**20,
           "baseline_MB": base_mb}
    if kind == "frame":
        return _frame(out, ratings, social, make, tiny_r, tiny_s, iterations)
    if kind == "local":
        _release_freed()
        out["before_fit_MB"] = _rss_mb()
        out["peak_reset"] = _peak_reset()
        ends = []  # the fit's clock at the end of each iteration
        m = make(iterations).set_params(callback=lambda model, it, loss: ends.append(model.fit_seconds_))
        m.fit(ratings, social)
        out["s_per_iter"] = m.fit_seconds_ / m.n_iter_
        out["best_s_per_iter"] = float(np.min(np.diff([0.0] + ends)))
        out["peak_MB"] = _peak_mb()
        return out
    from distributed import Client, LocalCluster

    from socialals import _dask

    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster):
        with joblib.parallel_config(backend="dask"):
            make(1).fit(tiny_r, tiny_s)  # compile on the workers
        local = make(iterations).fit(ratings, social)
        _dask.METRICS = []
        with joblib.parallel_config(backend="dask"):
            m = make(iterations).fit(ratings, social)
        steps = _dask.METRICS
        _dask.METRICS = None
        out["identical_to_local"] = bool(np.array_equal(local.user_factors_, m.user_factors_)
                                         and np.array_equal(local.item_factors_, m.item_factors_))
        out["local_s_per_iter"] = local.fit_seconds_ / local.n_iter_
        out["s_per_iter"] = m.fit_seconds_ / m.n_iter_
        per_iter = [{key: steps[2 * i][key] + steps[2 * i + 1][key] for key in ("blocks", "extra", "broadcast", "results")}
                    for i in range(len(steps) // 2)]
        out["first_iter_bytes"] = per_iter[0]
        out["later_iter_bytes"] = per_iter[-1]
        out["n_workers"] = steps[0]["n_workers"]
        out["expected_broadcast_per_worker"] = (n_users + n_items) * k * 8
    return out


def _frame(out, ratings, social, make, tiny_r, tiny_s, iterations):
    import gc
    import tempfile
    import time

    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    with tempfile.TemporaryDirectory() as folder, LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster, \
            Client(cluster):
        step = max(1, len(ratings) // 8)
        for j, lo in enumerate(range(0, len(ratings), step)):  # about 8 files, in row order
            ratings.iloc[lo : lo + step].to_parquet(Path(folder, f"part-{j:03d}.parquet"))
        del ratings
        gc.collect()
        make(1).fit(dd.from_pandas(tiny_r, npartitions=2), tiny_s)  # compile on the workers
        out["peak_reset"] = _peak_reset()
        before = _peak_mb()
        t0 = time.perf_counter()
        m = make(iterations).fit(dd.read_parquet(folder), social)
        wall = time.perf_counter() - t0
        out["client_peak_MB"] = _peak_mb()
        out["client_peak_before_MB"] = before
        out["build_s"] = wall - m.fit_seconds_
        out["s_per_iter"] = m.fit_seconds_ / m.n_iter_
        local = make(iterations).fit(pd.read_parquet(folder), social)
        out["local_s_per_iter"] = local.fit_seconds_ / local.n_iter_
        out["identical_to_local"] = bool(np.array_equal(local.user_factors_, m.user_factors_)
                                         and np.array_equal(local.item_factors_, m.item_factors_)
                                         and np.array_equal(local.loss_history_, m.loss_history_))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="*", type=float, default=[0.1, 1, 10], help="millions of ratings, local")
    ap.add_argument("--cluster-size", type=float, default=10, help="millions of ratings on the cluster (0: skip)")
    ap.add_argument("--frame-size", type=float, default=10,
                    help="millions of ratings fitted from a Dask frame (read_parquet) on the cluster (0: skip)")
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=1,
                    help="fresh processes per local size, run in turn (1 M, 10 M, 1 M, 10 M, ...): the table "
                         "gives the median of their mean s/iteration and the fastest single iteration of all")
    ap.add_argument("--output", default=None, help="also write the tables here")
    ap.add_argument("--one", nargs=2, metavar=("KIND", "MILLIONS"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one[0], int(float(args.one[1]) * 1e6), args.k, args.iterations)))
        return
    runs = [("local", s) for _ in range(args.repeats) for s in args.sizes] + (
        [("cluster", args.cluster_size)] if args.cluster_size else []) + (
        [("frame", args.frame_size)] if args.frame_size else [])
    for kind, size in runs:
        if kind == "local":
            _write_frames(int(size * 1e6))
    rows = []
    for kind, size in runs:
        done = subprocess.run([sys.executable, __file__, "--one", kind, str(size), "--k", str(args.k),
                               "--iterations", str(args.iterations)], capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"{kind} {size} M failed:\n{done.stderr[-3000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"{kind} {size} M: done", flush=True)
    local = pd.DataFrame([r for r in rows if r["kind"] == "local"])
    lines = [f"python benchmarks/bench_scale.py --sizes {' '.join(map(str, args.sizes))} --cluster-size "
             f"{args.cluster_size} --frame-size {args.frame_size} --k {args.k} --iterations {args.iterations}"
             f" --repeats {args.repeats}",
             f"SocialALS(factors={args.k}, reg=0.1, alpha=0.1), float64, 2 threads; shared 2-core machine", ""]
    if len(local):
        local["peak / (ratings+factors)"] = local["peak_MB"] / (local["ratings_MB"] + local["factors_MB"])
        local["(peak - baseline) / (ratings+factors)"] = (local["peak_MB"] - local["baseline_MB"]) / (
            local["ratings_MB"] + local["factors_MB"])
        local["fit adds / (ratings+factors)"] = (local["peak_MB"] - local["before_fit_MB"]) / (
            local["ratings_MB"] + local["factors_MB"])
        local["leftovers / (ratings+factors)"] = (
            local["before_fit_MB"] - local["baseline_MB"] - local["frames_MB"]) / (local["ratings_MB"] + local["factors_MB"])
        # one row per size: the median of the runs' mean s/iteration, the fastest single
        # iteration of all runs, and the memory of the run that peaked highest
        worst = local.loc[local.groupby("ratings")["(peak - baseline) / (ratings+factors)"].idxmax()].set_index("ratings")
        worst["s_per_iter"] = local.groupby("ratings")["s_per_iter"].median()
        worst["best_s_per_iter"] = local.groupby("ratings")["best_s_per_iter"].min()
        worst["runs"] = local.groupby("ratings").size()
        local = worst.sort_index().reset_index()
        local["time x"] = local["s_per_iter"] / local["s_per_iter"].shift(1)
        local["best time x"] = local["best_s_per_iter"] / local["best_s_per_iter"].shift(1)
        local["ratings x"] = local["ratings"] / local["ratings"].shift(1)
        cols = ["ratings", "users", "items", "links", "runs", "s_per_iter", "best_s_per_iter", "ratings x", "time x",
                "best time x", "ratings_MB", "factors_MB",
                "frames_MB", "baseline_MB", "before_fit_MB", "peak_MB", "peak / (ratings+factors)",
                "(peak - baseline) / (ratings+factors)", "leftovers / (ratings+factors)",
                "fit adds / (ratings+factors)"]
        lines += ["local threads (MB are MiB; baseline: RSS after the warm-up fit, before the frames were read; "
                  "before_fit: RSS just before fit, the caller's frames_MB included; both after gc and malloc_trim; "
                  "leftovers: before_fit - baseline - frames_MB, what reading the frames left besides them; "
                  "memory columns from the run that peaked highest)",
                  local[cols].to_string(index=False, float_format=lambda x: f"{x:.3f}"), ""]
    for r in rows:
        if r["kind"] != "cluster":
            continue
        first, later = r["first_iter_bytes"], r["later_iter_bytes"]
        lines += [
            f"Dask LocalCluster, {r['n_workers']} workers x 1 thread, {r['ratings']} ratings "
            f"({r['users']} users, {r['items']} items, k={r['k']}); identical to the local fit: {r['identical_to_local']}",
            f"  s/iteration: cluster {r['s_per_iter']:.3f}, local threads (same process) {r['local_s_per_iter']:.3f},"
            f" cluster/local {r['s_per_iter'] / r['local_s_per_iter']:.2f}",
            f"  bytes per iteration (scheduler nbytes x replicas): first {json.dumps(first)}",
            f"                                                     later {json.dumps(later)}",
            f"  expected broadcast (users + items) x k x 8 = {r['expected_broadcast_per_worker']} bytes per worker, "
            f"x {r['n_workers']} workers = {r['expected_broadcast_per_worker'] * r['n_workers']}; measured "
            f"broadcast {later['broadcast']} ({later['broadcast'] / (r['expected_broadcast_per_worker'] * r['n_workers']):.3f}x)",
            "",
        ]
    for r in rows:
        if r["kind"] != "frame":
            continue
        lines += [
            f"Dask frame (read_parquet, about 8 files) on the same cluster, {r['ratings']} ratings ({r['users']} "
            f"users, {r['items']} items, k={r['k']}); identical to the local fit of the same files: "
            f"{r['identical_to_local']}",
            f"  blocks built on the workers in {r['build_s']:.2f} s; s/iteration {r['s_per_iter']:.3f} "
            f"(local threads {r['local_s_per_iter']:.3f})",
            f"  client peak RSS during the fit {r['client_peak_MB']:.0f} MB (before it {r['client_peak_before_MB']:.0f} MB"
            f"{'' if r['peak_reset'] else ', peak not resettable here'}); ratings {r['ratings_MB']:.1f} MB, "
            f"factors {r['factors_MB']:.1f} MB",
            "",
        ]
    text = "\n".join(lines)
    print("\n" + text)
    if args.output:
        Path(args.output).write_text(text + "\n")


if __name__ == "__main__":
    main()
