"""Fold-in latency: factors for users the model has not seen, without a refit.

Serving code folds a new user in while the user waits, so the time of one call matters
more than throughput. On FilmTrust (``../shared/datasets/filmtrust``; a MovieLens-like
synthetic set where it is absent) the last 100 users by label are held out, the model is
fitted on the others (k = 10, 10 iterations) and each held-out user is folded in from
their ratings and their links, as a serving call would:

* ``one user``: ``model.fold_in(ratings_of_u, links_of_u)``, the median and the 10th
  percentile over 300 calls (30 users, each 10 times);
* ``100 users``: one call with all 100, the median of 10 calls (milliseconds per user);
* the peer: implicit's ``ALS.recalculate_user`` (implicit's fold-in of one user from a
  sparse row, confidence = the ratings, same k), when implicit is installed; and a full
  refit of the same model (1 thread per fit, 10 iterations), what a fold-in saves.

Two versions of socialals run in turn, each round a fresh process (``--old``: a commit,
checked out into a temporary git worktree; the new version is this checkout), because
timings on a shared machine wander by 20-40 % between minutes.

Usage::

    python benchmarks/bench_foldin.py                   # old = 560f26c, 3 rounds
    python benchmarks/bench_foldin.py --old HEAD~3 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from bench_versions import checkout

ROOT = Path(__file__).resolve().parents[1]

ROUND = r"""
import json, sys, time, warnings
sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[1] + "/benchmarks")
warnings.simplefilter("ignore")
from pathlib import Path
import numpy as np
import scipy.sparse as sp
from socialals import RegularizedALS, SocialALS, load_filmtrust
folder = Path(sys.argv[2]) / "filmtrust"
if folder.exists():
    ratings, social, data = *load_filmtrust(path=folder), "FilmTrust"
else:
    from bench_als import ml1m_like
    ratings, social = ml1m_like()
    data = "MovieLens-like synthetic"
held = np.sort(ratings["user"].unique())[-100:]
train = ratings[~ratings["user"].isin(held)]
new = ratings[ratings["user"].isin(held)]
by_user = {u: f for u, f in new.groupby("user")}
touches = social["user"].isin(held) | social["friend"].isin(held)
links = social[touches]
out = []
for cls, params in ((RegularizedALS, dict(reg=0.1)), (SocialALS, dict(reg=0.1, alpha=0.5))):
    model = cls(factors=10, iterations=10, random_state=0, **params).fit(train, social[~touches])
    users = held[:30]
    mine = {u: links[(links["user"] == u) | (links["friend"] == u)] for u in users}
    mine = {u: f if len(f) else None for u, f in mine.items()}  # before 9240222 an empty frame was an error
    for u in users[:3]:
        model.fold_in(by_user[u], mine[u])  # warm up
    one = []
    for _ in range(10):
        for u in users:
            t0 = time.perf_counter()
            model.fold_in(by_user[u], mine[u])
            one.append(time.perf_counter() - t0)
    model.fold_in(new, links)  # warm up
    batch = []
    for _ in range(10):
        t0 = time.perf_counter()
        model.fold_in(new, links)
        batch.append((time.perf_counter() - t0) / len(held))
    batch = float(np.median(batch))
    t0 = time.perf_counter()
    cls(factors=10, iterations=10, random_state=0, n_jobs=1, **params).fit(train, social[~touches])
    refit = time.perf_counter() - t0
    out.append(dict(data=data, model=cls.__name__, one_median_ms=1e3 * float(np.median(one)),
                    one_p10_ms=1e3 * float(np.percentile(one, 10)), batch_ms_per_user=1e3 * batch, refit_s=refit))
try:
    from implicit.cpu.als import AlternatingLeastSquares
    codes = {u: i for i, u in enumerate(train["user"].unique())}
    items = {j: i for i, j in enumerate(train["item"].unique())}
    X = sp.csr_matrix((train["rating"].to_numpy(np.float32), ([codes[u] for u in train["user"]],
                       [items[j] for j in train["item"]])), shape=(len(codes), len(items)))
    peer = AlternatingLeastSquares(factors=10, iterations=10, random_state=0, num_threads=1)
    peer.fit(X, show_progress=False)
    rows = {}
    for u in held[:30]:
        f = by_user[u][by_user[u]["item"].isin(items)]
        rows[u] = sp.csr_matrix((f["rating"].to_numpy(np.float32), (np.zeros(len(f), int), [items[j] for j in f["item"]])),
                                shape=(1, len(items)))
    peer.recalculate_user(0, rows[held[0]])
    times = []
    for _ in range(10):
        for u in held[:30]:
            t0 = time.perf_counter()
            peer.recalculate_user(0, rows[u])
            times.append(time.perf_counter() - t0)
    out.append(dict(data=data, model="implicit ALS recalculate_user", one_median_ms=1e3 * float(np.median(times)),
                    one_p10_ms=1e3 * float(np.percentile(times, 10))))
except ImportError:
    pass
print(json.dumps(out))
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", default="560f26c", help="the commit to compare with")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "datasets"))
    ap.add_argument("--output", default=None, help="also write the table here")
    args = ap.parse_args(argv)
    rows = []
    with checkout(args.old) as old:
        for r in range(args.rounds):
            for version, path in (("old", old), ("new", ROOT)):
                done = subprocess.run([sys.executable, "-c", ROUND, str(path), args.shared],
                                      capture_output=True, text=True, check=True)
                for row in json.loads(done.stdout.strip().splitlines()[-1]):
                    rows.append({**row, "version": version if "implicit" not in row["model"] else "peer"})
                print(f"round {r + 1} {version}: done", flush=True)
    table = pd.DataFrame(rows)
    cols = ["one_median_ms", "one_p10_ms", "batch_ms_per_user", "refit_s"]
    best = table.groupby(["data", "model", "version"], sort=False)[[c for c in cols if c in table]].median()
    text = (f"python benchmarks/bench_foldin.py --old {args.old} --rounds {args.rounds}  (medians over the rounds; "
            "one user: 12-ish ratings and the user's links, 300 calls a round; refit: 1 thread)\n\n"
            + best.to_string(float_format=lambda x: f"{x:.3f}"))
    print("\n" + text)
    if args.output:
        Path(args.output).write_text(text + "\n")


if __name__ == "__main__":
    main()
