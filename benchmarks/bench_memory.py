"""Peak memory of a fit, measured as the operating system sees it (peak RSS).

The hardening issue's case: 5 M ratings, 100 k users, 20 k items, 1 M social links,
SocialALS with k = 32 in float32. Each setting runs in a fresh process that builds the
ratings (user and item ids int32, ratings float32: 12 bytes a rating) after compiling the
kernels on a tiny problem, resets the kernel's peak-RSS counter (``/proc/self/clear_refs``),
fits, and reads ``VmHWM``. Reported:

* ``raw MiB``: the ratings frame's own bytes;
* ``budget MiB``: 2 x (the ratings in the model's dtype with 32-bit indices, both ways,
  + the factors), the issue's target for what the fit may add;
* ``+ 2x W MiB``: the same budget with twice the symmetric social matrix W (12 bytes a
  stored link, both directions) added: the graph is data the fit must hold too;
* ``fit adds MiB``: peak RSS during the fit minus RSS before it.

Usage::

    python benchmarks/bench_memory.py                   # the issue's case
    python benchmarks/bench_memory.py --ratings 1000000 --users 20000 --items 5000 --links 200000
    python benchmarks/bench_memory.py --ratings 1000000 --users 20000 --items 5000 --links 200000 \
        --similarity pcc --models SocialALS --dtypes float32      # link similarities from co-rated items
    python benchmarks/bench_memory.py --tree ../other-checkout    # another version of the library
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, warnings
import numpy as np, pandas as pd
sys.path.insert(0, sys.argv[1])
from socialals import RegularizedALS, SocialALS
a = json.loads(sys.argv[2])
warnings.simplefilter("ignore")
def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024
rng = np.random.default_rng(0)
tiny = pd.DataFrame({"user": rng.integers(0, 50, 500).astype(np.int32), "item": rng.integers(0, 40, 500).astype(np.int32),
                     "rating": rng.integers(1, 6, 500).astype(np.float32)})
cls = SocialALS if a["model"] == "SocialALS" else RegularizedALS
extra = {"similarity": a["similarity"]} if cls is SocialALS else {}
make = lambda it: cls(factors=a["k"], iterations=it, dtype=a["dtype"], random_state=0, n_jobs=2, **extra)
make(1).fit(tiny, pd.DataFrame({"user": np.arange(10), "friend": np.arange(1, 11)}))  # compile first
key = rng.choice(a["users"] * a["items"], a["ratings"], replace=False)  # distinct pairs: no duplicate merge
ratings = pd.DataFrame({"user": (key // a["items"]).astype(np.int32), "item": (key % a["items"]).astype(np.int32),
                        "rating": rng.integers(1, 6, len(key)).astype(np.float32)})
del key
src = rng.integers(0, a["users"], a["links"]).astype(np.int32)
dst = rng.integers(0, a["users"], a["links"]).astype(np.int32)
keep = src != dst
social = pd.DataFrame({"user": src[keep], "friend": dst[keep]}).drop_duplicates()
raw = ratings.memory_usage(index=False).sum() / 2**20
open("/proc/self/clear_refs", "w").write("5")
before = rss("VmRSS")
m = make(a["iterations"]).fit(ratings, social)
peak = rss("VmHWM")
nnz = len(ratings)
item_bytes = 4 if a["dtype"] == "float32" else 8
budget = 2 * (2 * nnz * (item_bytes + 4) + (m.user_factors_.nbytes + m.item_factors_.nbytes)) / 2**20
links = 2 * 2 * len(social) * (8 + 4) / 2**20 if a["model"] == "SocialALS" else 0.0  # W = (S + S^T)/2, both ways
print(json.dumps(dict(ratings=nnz, raw_MiB=raw, budget_MiB=budget, links_MiB=links, rss_before_MiB=before,
                      fit_adds_MiB=peak - before)))
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ratings", type=int, default=5_000_000)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--links", type=int, default=1_000_000)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument("--models", nargs="+", default=["SocialALS", "RegularizedALS"])
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    ap.add_argument("--similarity", default=None, choices=["vss", "pcc"], help="SocialALS's similarity (default None)")
    ap.add_argument("--tree", default=str(ROOT), help="the checkout to measure (default: this one)")
    args = ap.parse_args(argv)
    print(f"{'model':15} {'dtype':8} {'ratings':>10} {'raw MiB':>8} {'budget MiB':>11} {'+ 2x W MiB':>11} "
          f"{'fit adds MiB':>13}")
    for model in args.models:
        for dtype in args.dtypes:
            spec = dict(vars(args), model=model, dtype=dtype)
            out = subprocess.run([sys.executable, "-c", CHILD, args.tree, json.dumps(spec)], capture_output=True,
                                 text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{model:15} {dtype:8} {r['ratings']:>10,} {r['raw_MiB']:>8.1f} {r['budget_MiB']:>11.1f} "
                  f"{r['budget_MiB'] + r['links_MiB']:>11.1f} {r['fit_adds_MiB']:>13.1f}", flush=True)


if __name__ == "__main__":
    main()
