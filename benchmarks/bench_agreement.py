"""Do two versions fit the same model? ``loss_history_`` of each, set against the problem's own sensitivity.

The core redesign promised unchanged results: ``loss_history_`` within 1e-10 relative in
float64. For a well-posed fit that is a fair bar. Plain unregularised ``ALS`` at a large k is
not well posed: rows with fewer ratings than factors get a minimum-norm solution of an
ill-conditioned system, and alternating such steps amplifies rounding from sweep to sweep.
So beside "new vs old" this script prints how far the *old* version moves when every rating
is multiplied by (1 + 1e-15), a change below the data's own precision. A difference between
versions of the same order as that column is rounding, not a change of the model.

Usage::

    python benchmarks/bench_agreement.py                  # old = df5e99b (before the core redesign)
    python benchmarks/bench_agreement.py --old HEAD~3 --iterations 30
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from bench_versions import ROOT, checkout

RUN = r"""
import json, sys, warnings
sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[1] + "/benchmarks")
warnings.simplefilter("ignore")
from pathlib import Path
from bench_als import ml1m_like
from socialals import ALS, RegularizedALS, SocialALS, load_ciao, load_filmtrust
eps, iterations, shared = float(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
loaders = {"ml1m": ml1m_like, "filmtrust": lambda: load_filmtrust(path=shared / "filmtrust"),
           "ciao": lambda: load_ciao(path=shared / "ciao")}
models = {"ALS": lambda k: ALS(factors=k), "RegularizedALS": lambda k: RegularizedALS(factors=k, reg=0.1),
          "SocialALS": lambda k: SocialALS(factors=k, reg=0.1, alpha=0.1)}
out = []
for name in sys.argv[5].split(","):
    ratings, social = loaders[name]()
    ratings = ratings.copy()
    ratings["rating"] = ratings["rating"] * (1 + eps)
    for k in (16, 64):
        for model, make in models.items():
            m = make(k).set_params(iterations=iterations, n_jobs=2, random_state=0).fit(ratings, social)
            out.append({"data": name, "model": model, "k": k, "loss": [float(x) for x in m.loss_history_]})
print(json.dumps(out))
"""


def losses(path, eps, args):
    done = subprocess.run([sys.executable, "-c", RUN, str(path), repr(eps), str(args.iterations), args.shared,
                           ",".join(args.data)], capture_output=True, text=True, check=True)
    return {(r["data"], r["model"], r["k"]): np.array(r["loss"]) for r in json.loads(done.stdout.splitlines()[-1])}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", default="df5e99b")
    ap.add_argument("--data", nargs="+", default=["ml1m", "filmtrust", "ciao"])
    ap.add_argument("--iterations", type=int, default=15)
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "datasets"))
    ap.add_argument("--output", default=None, help="also write the table here")
    args = ap.parse_args(argv)
    with checkout(args.old) as old:
        base, nudged = losses(old, 0.0, args), losses(old, 1e-15, args)
    new = losses(ROOT, 0.0, args)

    def rel(a, b):
        return float(np.max(np.abs(a - b) / np.abs(b)))

    rows = [{"data": d, "model": m, "k": k, "new vs old": rel(new[d, m, k], base[d, m, k]),
             "old vs old, ratings x (1+1e-15)": rel(nudged[d, m, k], base[d, m, k])} for (d, m, k) in base]
    table = pd.DataFrame(rows).set_index(["data", "model", "k"])
    text = (f"python benchmarks/bench_agreement.py --old {args.old} --iterations {args.iterations}\n"
            f"max relative difference of loss_history_ (float64, {args.iterations} iterations, 2 threads)\n\n"
            + table.to_string(float_format=lambda x: f"{x:.1e}"))
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")


if __name__ == "__main__":
    main()
